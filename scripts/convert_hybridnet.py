"""Convert the official HybridNet release (Yu et al., ACM MM 2021, github.com/yuweijiang/HybridNet)
into a polyvision checkpoint of ``configs/hybridnet/v2c.yaml`` (``create_model("hybridnet")``).

**Input**: the release's model-zoo file, ``torch.save(model.state_dict(), path)`` of
``HybirdNet`` (``train.py``: no DataParallel, but a ``module.`` prefix is stripped all the same),
and the two vocabulary files the release trained with, ``msrvtt_new_info.json`` (caption words)
and ``v2c_info.json`` (commonsense words), read from ``--v2c-dir``. Module names and shapes are
those of the release's ``model/Model.py`` (``HybirdNet``), ``model/Decoder.py`` (``Decoder``,
``RelationalMemory``, ``MultiHeadedAttention``), ``model/transformer/Transformers.py``
(``Encoder_video``), ``model/transformer/Layers.py`` (``DecoderLayer``),
``model/transformer/SubLayers.py`` (``MultiHeadAttention_rmatt_ev_cnn``,
``PositionwiseFeedForward``) and ``model/transformer/Modules.py``
(``ScaledDotProductAttention_rmatt_ev_cnn``); the release is trained with
``tgt_emb_prj_weight_sharing=False`` (``train.py``), so every word layer is its own tensor and
the logits are not scaled.

**The mapping is data** (:func:`hybridnet_rules`): each rule pairs a release module (or key)
with ours and says what happens to the tensor:

- ``renamed``: the tensor as it is (prefix -> prefix);
- ``squeezed``: the feed-forward ``Conv1d(k=1)`` weight ``(out, in, 1)`` -> ``Linear`` ``(out, in)``;
- ``stacked``: the relational memory's attention ``linears.0/1/2`` (query, key, value
  ``Linear(d, d)``) -> the thirds of ``nn.MultiheadAttention.in_proj_weight``/``in_proj_bias``
  (``linears.3`` is ``out_proj``, renamed);
- ``words``: a word embedding or output layer, its rows permuted to our word ids (below);
- ``checked``: the decoders' frozen sinusoid tables (``position_enc.weight``): compared with the
  release's formula, then left out (ours computes its own); their row counts give the release's
  maximum lengths.

A key that matches no rule, a tensor whose shape contradicts the model, or a weight of ours the
file does not give is refused with the key named. The mapping then checks
:data:`KNOWN_DIFFERENCES`: where our architecture or decoding computes something other than
the release's, conversion is refused unless those differences are accepted
(``accept_differences``; ``--accept-differences``); accepted ones are printed and recorded in the
checkpoint (``polyvision.converted_from.differences``).

**Word ids.** The release numbers words as its info files' ``ix_to_word`` (``Constants.py``:
PAD 0, UNK 1, BOS 2, EOS 3; the files' ``<pad>``/``<unk>``/``<sos>``/``<eos>``); release row ``r``
of an embedding or output layer is the word ``ix_to_word[str(r)]``. Ours
(``datamodules/captions/v2c.py`` ``read_v2c_vocabulary``, ``vocabulary.py``): the files' words in
id order without ``<pad>``/``<sos>``/``<eos>``, ``<unk>`` renamed ``UNK`` (appended when the file
has none), a repeated word kept once; word ``i`` (0-based) has id ``i + 1``; id 0 is padding, BOS
input and EOS target at once. So:

- embedding (``tgt_word_emb``, input side): our row 0 <- the release's ``<sos>`` row (our 0 is
  only ever read as the BOS input); our row ``i + 1`` <- the release row of word ``i``;
- output layer (``cap_word_prj``/``cms_word_prj``): our row 0 <- the release's ``<eos>`` row
  (our 0 is the EOS answer); our row ``i + 1`` <- the release row of word ``i``;
- release rows left out: ``<pad>`` (both sides), ``<eos>`` on the input side (we never feed
  EOS), ``<sos>`` on the output side (never a target), a repeated word's later rows; the
  report counts them. An ``UNK`` the file lacks has no release row: its rows are zero and the
  ``unk_without_row`` difference applies.
"""
from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyvision.errors import ConfigError, WeightsError
from polyvision.scripts.convert_rules import (
    Difference,
    accepted_differences,
    add_difference_arguments,
    always_applies,
    check_differences,
    conversion_paths,
    difference_lines,
    read_release_state_dict,
    save_atomically,
    strip_parallel_prefix,
)
from polyvision.scripts.convert_rules import match_rules as shared_match_rules

RELEASE_URL = "github.com/yuweijiang/HybridNet"
SYSTEM = "hybridnet"
CAPTION_INFO, CMS_INFO = "msrvtt_new_info.json", "v2c_info.json"  # the release's opts.py defaults
# release decoder -> (our output, our decoder module under the head)
DECODERS = {"decoder": ("caption", "caption_decoder"), "cms_decoder_int": ("intention", "cms_decoders.intention"),
            "cms_decoder_eff": ("effect", "cms_decoders.effect"), "cms_decoder_att": ("attribute", "cms_decoders.attribute")}
RELEASE_MEMORY_HEADS = 8  # model/Decoder.py: RelationalMemory(num_slots=3, d_model=512, num_heads=8), hard-coded
RELEASE_MEMORY_SLOTS = 3
RELEASE_CONSTANTS = {"<pad>": 0, "<unk>": 1, "<sos>": 2, "<eos>": 3}  # model/transformer/Constants.py
RELEASE_ROWS = {"appearance": 20, "motion": 10, "audio": 10}  # Encoder_video's hard-coded token counts


# --------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Rule:
    """One release module (or key) ``source`` and what becomes of its tensors (module docstring).

    ``part``: for ``stacked``, which third of the target's ``in_proj``; ``words``: for ``words``,
    ``(vocabulary, side)`` with vocabulary ``caption``/``cms`` and side ``input``/``output``."""

    source: str
    target: str | None
    action: str
    why: str = ""
    part: int = 0
    words: tuple[str, str] = ("", "")

    def matches(self, key: str) -> bool:
        return key == self.source or key.startswith(self.source + ".")

    def target_key(self, key: str) -> str:
        assert self.target is not None
        if self.action == "stacked":  # linears.0.weight -> attention.in_proj_weight
            return f"{self.target}_{key.rsplit('.', 1)[1]}"
        return self.target + key[len(self.source):]


def hybridnet_rules(layers: int = 6, head: str = "v2c") -> list[Rule]:
    """The release -> polyvision mapping for decoders of ``layers`` layers (the release: 6,
    ``opts.py --num_layer``); a release layer beyond ``layers`` matches no rule."""
    h = f"heads.{head}"
    rules = [
        # Encoder_video (Transformers.py): per modality Linear + Dropout(0.1), a 1-layer GRU, a
        # modality embedding (its "position_enc", ids 0/1/2 = appearance/I3D/audio).
        Rule("encoder.vih", "neck.projections.appearance.0", "renamed", "appearance projection (ResNet-152 -> d)"),
        Rule("encoder.d2h", "neck.projections.motion.0", "renamed", "motion projection (I3D -> d)"),
        Rule("encoder.a2h", "neck.projections.audio.0", "renamed", "audio projection (SoundNet -> d)"),
        Rule("encoder.rnn_vis", "neck.recurrent.appearance", "renamed", "appearance GRU"),
        Rule("encoder.rnn_i3d", "neck.recurrent.motion", "renamed", "motion GRU"),
        Rule("encoder.rnn_aud", "neck.recurrent.audio", "renamed", "audio GRU"),
        Rule("encoder.position_enc", "neck.modality_embedding", "renamed", "modality embedding (rows 0/1/2)"),
        Rule("cap_word_prj.weight", f"{h}.caption_projection.weight", "words", "caption output layer, rows to our ids",
             words=("caption", "output")),
        Rule("cms_word_prj.weight", f"{h}.cms_projection.weight", "words", "shared commonsense output layer, rows "
             "to our ids", words=("cms", "output")),
    ]
    for release, (output, module) in DECODERS.items():
        ours = f"{h}.{module}"
        vocabulary = "caption" if output == "caption" else "cms"
        embedding = f"{h}.caption_embedding" if output == "caption" else f"{h}.cms_embeddings.{output}"
        rules += [
            Rule(f"{release}.tgt_word_emb.weight", f"{embedding}.weight", "words", "word embedding, rows to our ids",
                 words=(vocabulary, "input")),
            Rule(f"{release}.position_enc.weight", None, "checked",
                 "frozen sinusoid table (row 0 zero): checked, ours computes it"),
            *[Rule(f"{release}.cm_cap.attn.linears.{i}", f"{ours}.memory.attention.in_proj", "stacked",
                   "relational memory attention q/k/v -> in_proj thirds", part=i) for i in range(3)],
            Rule(f"{release}.cm_cap.attn.linears.3", f"{ours}.memory.attention.out_proj", "renamed",
                 "relational memory attention output"),
            Rule(f"{release}.cm_cap.mlp", f"{ours}.memory.mlp", "renamed", "relational memory MLP (Linear, ReLU) x 2"),
            Rule(f"{release}.cm_cap.W", f"{ours}.memory.input_gates", "renamed", "memory gates from the word (W)"),
            Rule(f"{release}.cm_cap.U", f"{ours}.memory.memory_gates", "renamed", "memory gates from tanh(memory) (U)"),
        ]
        for layer in range(layers):
            source, target = f"{release}.layer_stack.{layer}", f"{ours}.layers.{layer}"
            for attention, our_attention in (("slf_attn", "self_attention"), ("enc_attn", "cross_attention")):
                for name, our_name in (("w_qs", "query"), ("w_ks", "key"), ("w_vs", "value"),
                                       ("w_qs_att", "memory_query"), ("attention.att_conv", "route"),
                                       ("fc", "output"), ("norm", "norm")):
                    rules.append(Rule(f"{source}.{attention}.{name}", f"{target}.{our_attention}.{our_name}", "renamed",
                                      "MMHA (MultiHeadAttention_rmatt_ev_cnn)"))
            rules += [
                Rule(f"{source}.pos_ffn.w_1.weight", f"{target}.feed_forward.0.weight", "squeezed",
                     "feed-forward Conv1d(k=1) -> Linear"),
                Rule(f"{source}.pos_ffn.w_2.weight", f"{target}.feed_forward.2.weight", "squeezed",
                     "feed-forward Conv1d(k=1) -> Linear"),
                Rule(f"{source}.pos_ffn.w_1.bias", f"{target}.feed_forward.0.bias", "renamed", "feed-forward bias"),
                Rule(f"{source}.pos_ffn.w_2.bias", f"{target}.feed_forward.2.bias", "renamed", "feed-forward bias"),
                Rule(f"{source}.pos_ffn.norm", f"{target}.norm", "renamed", "feed-forward post-LayerNorm"),
            ]
    return rules


HYBRIDNET_RULES = hybridnet_rules()  # the paper's 6 layers


# --------------------------------------------------------------------------- word ids
@dataclass
class WordRows:
    """One vocabulary: our ``words`` (id ``i + 1``) and, per our id, the release row it takes on
    each side (``None``: no release row)."""

    words: list[str]
    input_rows: list[int | None]
    output_rows: list[int | None]
    release_size: int
    specials: dict[str, int]

    def left_out(self, side: str) -> list[int]:
        taken = set(self.input_rows if side == "input" else self.output_rows)
        return [row for row in range(self.release_size) if row not in taken]


def word_rows(table: Mapping[Any, Any], where: str) -> WordRows:
    """Our words and the release rows of a release ``ix_to_word`` table (module docstring; the
    same reading as ``read_v2c_vocabulary``)."""
    from polyvision.datamodules.captions.v2c import SPECIAL, UNK_NAMES
    from polyvision.datamodules.captions.vocabulary import UNK

    try:
        rows = {int(key): str(word) for key, word in table.items()}
    except (TypeError, ValueError):
        raise WeightsError(f"{where}: ix_to_word keys must be integer word ids") from None
    if sorted(rows) != list(range(len(rows))):
        raise WeightsError(f"{where}: ix_to_word must number rows 0..{len(rows) - 1} without gaps (the release's "
                           f"embedding rows), got {min(rows, default=None)}..{max(rows, default=None)}")
    words: list[str] = []
    first: dict[str, int] = {}
    specials: dict[str, int] = {}
    for row in range(len(rows)):
        raw = rows[row]
        if raw in SPECIAL:
            specials.setdefault(raw, row)
        word = UNK if raw in UNK_NAMES else raw
        if word in SPECIAL or word in first:
            continue
        first[word] = row
        words.append(word)
    if UNK not in first:
        words.append(UNK)
    for name in ("<sos>", "<eos>"):
        if name not in specials:
            raise WeightsError(f"{where}: ix_to_word has no {name}: the release row of our id 0 "
                               f"({'BOS input' if name == '<sos>' else 'EOS answer'}) is unknown")
    ours = [first.get(word) for word in words]
    return WordRows(words, [specials["<sos>"], *ours], [specials["<eos>"], *ours], len(rows), specials)


def read_ix_to_word(path: Path) -> dict[str, str]:
    import json

    if not path.is_file():
        raise WeightsError(f"{path}: not found (the release's vocabulary file)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise WeightsError(f"{path}: not readable JSON ({error})") from None
    table = data.get("ix_to_word") if isinstance(data, dict) else None
    if not isinstance(table, dict) or not table:
        raise WeightsError(f"{path}: has no ix_to_word table")
    return table


def permute_rows(tensor, rows: list[int | None]):
    out = tensor.new_zeros((len(rows), *tensor.shape[1:]))
    for ours, release in enumerate(rows):
        if release is not None:
            out[ours] = tensor[release]
    return out


def release_sinusoid_table(rows: int, dim: int):
    """``get_sinusoid_encoding_table(rows, dim, padding_idx=0)`` of the release's ``Decoder.py``
    (row p: sin/cos of p / 10000^(2 (j // 2) / dim), interleaved; row 0 zero), in float64."""
    import torch

    position = torch.arange(rows, dtype=torch.float64)[:, None]
    exponent = 2 * (torch.arange(dim, dtype=torch.float64) // 2) / dim
    angle = position / torch.pow(torch.tensor(10000.0, dtype=torch.float64), exponent)
    table = torch.where(torch.arange(dim) % 2 == 0, torch.sin(angle), torch.cos(angle))
    table[0] = 0.0
    return table


# --------------------------------------------------------------------------- differences
KNOWN_DIFFERENCES: list[Difference] = [
    Difference("commonsense_context", "the commonsense decoders attend to the video tokens and the caption decoder's "
               "states at BOS + caption words only (caption EOS input and padding masked)",
               "they attend to all cap_max_len - 1 = 27 caption positions unmasked: BOS, words, the EOS input and "
               "the padding positions, whose states non_pad_mask zeroed (key = w_ks bias, value = w_vs bias)",
               "model/Model.py:71, 81; model/Decoder.py:104-105 (src_tmp ones: no key mask); "
               "model/transformer/Layers.py:39, 43, 46 (non_pad_mask); model/transformer/Translator.py:128, 133",
               always_applies),
    Difference("routing_batch", "the 3x3 routing convolution mixes the heads of one row",
               "q/k are stacked head-major (index h * B + b, permute(2, 0, 1, 3)) and the routing reshapes them as "
               "view(-1, n_head, Lq, Lk), so its 8 'channels' are 8 consecutive head-major entries: the same head of "
               "8 different batch rows (beams, captions) when B >= 8; equal to ours only at B = 1",
               "model/transformer/SubLayers.py:147-150, 153; model/transformer/Modules.py:102, 108", always_applies),
    Difference("special_outputs", "softmax over our V + 1 classes (EOS + words)",
               "softmax over the release's rows incl. <pad> and <sos> (left out here): log-probabilities and beam "
               "scores differ by their mass; the release can emit PAD (its test skips it)",
               "model/Model.py:48-49 (n_cap_vocab, n_cms_vocab = len(ix_to_word)); model/transformer/Beam.py:59",
               lambda head, facts: facts["left_out_outputs"] > 0),
    Difference("beam_search", "polyvision.models.layers.decoding.beam_search",
               "Beam.py: stops when the top beam ends in EOS, the second beam starts from PAD and the first step "
               "expands beam 0 only, no finished-hypothesis pool; the decoder runs the K captions of a video x 2 "
               "beams as one batch (which the routing mixes: routing_batch)",
               "model/transformer/Beam.py:29-30, 55, 59, 72; model/transformer/Translator.py:138",
               lambda head, facts: head.beam_size > 1),
    Difference("max_lengths", "tokens decoded per output (head max_lengths)",
               "caption 28 (range(1, 28 + 1)), commonsense len_max_seq - 2 (range(1, len - 1)): 19 / 24 / 6",
               "model/transformer/Translator.py:157 (translate_batch_cap2cms), translate_batch_cap",
               lambda head, facts: dict(head.max_lengths) != facts["release_max_lengths"]),
    Difference("suppress_unk", "UNK never decoded (suppress_unk)", "UNK decodable",
               "model/transformer/Beam.py:59 (topk over all words)", lambda head, facts: bool(head.suppress_unk)),
    Difference("previous_attention", "previous layer's map mixed in as configured (head previous_attention)",
               "the previous layer's probabilities after dropout (attn_pre = returned attn)",
               "model/transformer/Modules.py:117, 125; model/Decoder.py:123-124",
               lambda head, facts: head.previous_attention != "probabilities"),
    Difference("memory_heads", "relational-memory attention with the decoder's head count",
               "8 heads, d_model 512, 3 slots hard-coded", "model/Decoder.py:87",
               lambda head, facts: head.heads != RELEASE_MEMORY_HEADS),
    Difference("unk_without_row", "UNK rows zero (the info file has no <unk>; read_v2c_vocabulary appends UNK)",
               "no UNK row", "the info files' ix_to_word", lambda head, facts: facts["unk_without_row"]),
]
DIFFERENCE_NAMES = tuple(difference.name for difference in KNOWN_DIFFERENCES)


# --------------------------------------------------------------------------- conversion
@dataclass
class Conversion:
    """What a conversion did: the loaded ``model``, per rule the keys it took, our weights the
    file lacks (why -> keys), the word ids, the checked tables and the differences accepted."""

    model: Any
    used: dict[Rule, list[str]]
    missing: dict[str, list[str]]
    vocabularies: dict[str, WordRows]
    release_max_lengths: dict[str, int]
    differences: list[Difference] = field(default_factory=list)


def match_rules(state: Mapping[str, Any], rules: list[Any], where: str) -> dict[str, Any]:
    """Each key's rule (the longest matching source); refuses keys no rule matches."""
    return shared_match_rules(state, rules, where, system="HybridNet",
                              not_release="not the HybridNet release (or not of this model's size)",
                              table="hybridnet_rules in polyvision/scripts/convert_hybridnet.py")


def release_geometry(state: Mapping[str, Any], vocabularies: dict[str, WordRows]) -> dict[str, dict[str, Any]]:
    """Our ``input_geometry`` for the release: its feature widths, the V2C datamodule's rows and
    lengths (config ``v2c.yaml``: the release's maximum lengths less <sos> and <eos>)."""
    dims = {name: int(state[f"encoder.{key}.weight"].shape[1])
            for name, key in (("appearance", "vih"), ("motion", "d2h"), ("audio", "a2h")) if f"encoder.{key}.weight" in state}
    lengths = {output: int(state[f"{release}.position_enc.weight"].shape[0]) - 1
               for release, (output, _) in DECODERS.items() if f"{release}.position_enc.weight" in state}
    cms = [lengths[kind] for kind in ("intention", "effect", "attribute") if kind in lengths]
    return {"v2c": {"input": "features", "feature_dims": dims, "rows": {name: RELEASE_ROWS[name] for name in dims},
                    "vocabulary": list(vocabularies["caption"].words), "cms_vocabulary": list(vocabularies["cms"].words),
                    "max_caption_length": lengths.get("caption", 28) - 2,
                    "max_cms_length": (max(cms) if cms else 26) - 2}}


def paper_model(geometry: dict[str, dict[str, Any]]):
    from polyvision.models.factory import create_model

    return create_model("hybridnet", input_geometry=geometry)


def convert_hybridnet(state_dict: Mapping[str, Any], caption_ix_to_word: Mapping[Any, Any],
                      cms_ix_to_word: Mapping[Any, Any], *, build_model: Callable[[dict], Any] | None = None,
                      accept_differences: bool | Collection[str] = False, head: str = "v2c",
                      where: str = "the HybridNet release") -> Conversion:
    """The release's ``state_dict`` (names as ``model.state_dict()`` of ``HybirdNet``, ``module.``
    stripped) and its two ``ix_to_word`` tables -> a ``HybridNet`` with those weights.

    ``build_model(input_geometry)`` builds our model (default: ``create_model("hybridnet")``, the
    paper config) with the vocabularies the geometry names. ``accept_differences``: ``True``, or
    the names in :data:`DIFFERENCE_NAMES` the caller accepts; any other difference that applies
    refuses the conversion (module docstring)."""
    import torch

    state = strip_parallel_prefix(state_dict)  # a state dict given in Python may still carry it
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{where}: not a state dict: '{key}' holds a {type(value).__name__}, not a tensor")
    vocabularies = {"caption": word_rows(caption_ix_to_word, f"{where}: caption ix_to_word ({CAPTION_INFO})"),
                    "cms": word_rows(cms_ix_to_word, f"{where}: commonsense ix_to_word ({CMS_INFO})")}
    match_rules(state, hybridnet_rules(max_layers(state), head), where)  # names first: a foreign file fails early
    model = (build_model or paper_model)(release_geometry(state, vocabularies))
    our_head = model.heads[head]
    rules = hybridnet_rules(our_head.layers, head)
    chosen = match_rules(state, rules, where)
    ours = model.state_dict()
    weights: dict[str, Any] = {}
    used: dict[Rule, list[str]] = {}
    stacked: dict[str, Any] = {}
    release_max_lengths: dict[str, int] = {}
    for key, rule in chosen.items():
        used.setdefault(rule, []).append(key)
        tensor = state[key]
        if rule.action == "checked":
            output = DECODERS[key.split(".")[0]][0]
            rows = tensor.shape[0]
            if tensor.dim() != 2 or tensor.shape[1] != our_head.dim:
                raise WeightsError(f"{where}: '{key}' has shape {tuple(tensor.shape)}, not (rows, {our_head.dim})")
            if not torch.allclose(tensor.double(), release_sinusoid_table(rows, tensor.shape[1]), atol=1e-5):
                raise WeightsError(f"{where}: '{key}' is not the release's sinusoid table (padding row 0 zero): "
                                   f"this decoder's positions would differ")
            # Translator.py decodes the caption for 28 steps, a commonsense type for len_max_seq - 2.
            release_max_lengths[output] = rows - 1 if output == "caption" else rows - 3
            continue
        target = rule.target_key(key)
        if target not in ours:
            raise WeightsError(f"{where}: '{key}' maps to '{target}', which our HybridNet does not have "
                               f"(a different configuration, or correct hybridnet_rules)")
        expected = tuple(ours[target].shape)
        if rule.action == "squeezed":
            need = (*expected, 1)
        elif rule.action == "stacked":
            need = (expected[0] // 3, *expected[1:])
        elif rule.action == "words":
            need = (vocabularies[rule.words[0]].release_size, *expected[1:])
        else:
            need = expected
        if tuple(tensor.shape) != need:
            raise WeightsError(f"{where}: '{key}' has shape {tuple(tensor.shape)}, but our '{target}' needs {need}"
                               f"{' (rows: the ix_to_word entries)' if rule.action == 'words' else ''}: "
                               f"not the weights of this model")
        if rule.action == "stacked":
            stacked.setdefault(target, [None] * 3)[rule.part] = tensor
            continue
        if target in weights:
            raise WeightsError(f"{where}: '{key}' and another key both map to '{target}' (correct hybridnet_rules)")
        if rule.action == "squeezed":
            value = tensor[..., 0]
        elif rule.action == "words":
            table = vocabularies[rule.words[0]]
            value = permute_rows(tensor, table.input_rows if rule.words[1] == "input" else table.output_rows)
        else:
            value = tensor
        weights[target] = value.to(ours[target].dtype).clone()
    for target, parts in stacked.items():
        if any(part is None for part in parts):
            raise WeightsError(f"{where}: '{target}' needs the query, key and value Linear of the relational memory's "
                               f"attention (linears.0/1/2); the file gives {sum(p is not None for p in parts)} of 3")
        weights[target] = torch.cat(parts, 0).to(ours[target].dtype)
    absent = [key for key in ours if key not in weights]
    if absent:
        raise WeightsError(f"{where}: {len(absent)} weights of our HybridNet are not in the file (first: '{absent[0]}'"
                           f"); not the HybridNet release, or a configuration the release does not have")
    missing: dict[str, list[str]] = {}
    for name, table in vocabularies.items():
        for side, rows in (("input", table.input_rows), ("output", table.output_rows)):
            for ours_id, release in enumerate(rows):
                if release is None:
                    missing.setdefault("UNK has no release row (zero)", []).append(f"{name} {side} row {ours_id}")
    facts = {"left_out_outputs": sum(len(t.left_out("output")) for t in vocabularies.values()),
             "unk_without_row": bool(missing), "release_max_lengths": release_max_lengths}
    applying = check_differences(KNOWN_DIFFERENCES, our_head, facts, accept_differences, system="HybridNet",
                                 where=where)
    model.load_state_dict(weights, strict=True)
    return Conversion(model.eval(), used, missing, vocabularies, release_max_lengths, applying)


def max_layers(state: Mapping[str, Any]) -> int:
    """The largest ``layer_stack`` index in the file, plus one (for the name check)."""
    found = [int(match.group(1)) for key in state for match in [re.search(r"\.layer_stack\.(\d+)\.", key)] if match]
    return max(found, default=-1) + 1


def release_parameter_count(caption_rows: int, cms_rows: int, dim: int = 512, inner: int = 1024, layers: int = 6,
                            heads: int = 8, head_dim: int = 64, slots: int = 3, visual: int = 2048, motion: int = 1024,
                            audio: int = 1024) -> int:
    """The release's learnable parameters (``train.py``: requires_grad only, so the four frozen
    sinusoid tables are not counted) for ``ix_to_word`` tables of ``caption_rows`` and
    ``cms_rows`` entries, counted from the release's layer shapes."""
    def linear(i: int, o: int, bias: bool = True) -> int:
        return i * o + (o if bias else 0)

    inner_width = heads * head_dim
    gru = 3 * (2 * dim * dim + 2 * dim)
    encoder = linear(visual, dim) + linear(motion, dim) + linear(audio, dim) + 3 * dim + 3 * gru
    memory = 4 * linear(dim, dim) + 2 * linear(dim, dim) + 2 * linear(dim, 2 * dim)
    mmha = 3 * linear(dim, inner_width) + linear(slots * dim, inner_width) + heads * heads * 9 + 2 * dim \
        + linear(inner_width, dim)
    ffn = (dim * inner + inner) + (inner * dim + dim) + 2 * dim
    decoder = memory + layers * (2 * mmha + ffn)
    return encoder + 4 * decoder + dim * (2 * caption_rows + 4 * cms_rows)


# --------------------------------------------------------------------------- files

def checkpoint_of(conversion: Conversion, source_name: str) -> dict[str, Any]:
    model = conversion.model
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    checkpoint["polyvision"]["converted_from"] = {
        "system": SYSTEM, "file": source_name, "release": RELEASE_URL,
        "differences": [difference.name for difference in conversion.differences],
        "word_rows": {name: {"bos_input_row": table.input_rows[0], "eos_output_row": table.output_rows[0],
                             "release_rows": table.release_size, "our_ids": len(table.words) + 1}
                      for name, table in conversion.vocabularies.items()}}
    return checkpoint


def convert_hybridnet_file(source: Path, out: Path, v2c_dir: str | None,
                           accept_differences: bool | Collection[str] = False,
                           build_model: Callable[[dict], Any] | None = None) -> Conversion:
    """``main``-style entry (``CONVERTERS``' ``(source, out, option)``): the release file
    ``source`` and the info files in ``v2c_dir`` -> the checkpoint ``out`` (written atomically)."""
    from polyvision.datamodules.captions.v2c import read_v2c_vocabulary

    if not v2c_dir:
        raise ConfigError(f"convert hybridnet: --v2c-dir DIR is needed (the folder of the release's {CAPTION_INFO} and "
                          f"{CMS_INFO}: their ix_to_word numbers the released word rows)")
    folder = Path(v2c_dir).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"convert hybridnet: --v2c-dir {v2c_dir}: no such folder")
    tables = {name: read_ix_to_word(folder / file) for name, file in (("caption", CAPTION_INFO), ("cms", CMS_INFO))}
    state = read_release_state_dict(source)
    conversion = convert_hybridnet(state, tables["caption"], tables["cms"], build_model=build_model,
                                   accept_differences=accept_differences, where=str(source))
    for name, file in (("caption", CAPTION_INFO), ("cms", CMS_INFO)):  # the datamodule will read the same words
        if read_v2c_vocabulary(folder / file).words != conversion.vocabularies[name].words:
            raise WeightsError(f"{folder / file}: read_v2c_vocabulary reads other words than the converter "
                               f"(correct word_rows in polyvision/scripts/convert_hybridnet.py)")
    save_atomically(checkpoint_of(conversion, source.name), out)
    return conversion


def report_lines(conversion: Conversion) -> list[str]:
    counts: dict[str, int] = {}
    for rule, keys in conversion.used.items():
        counts[rule.action] = counts.get(rule.action, 0) + len(keys)
    lines = [f"{sum(counts.values())} release keys: " + ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))]
    for name, table in conversion.vocabularies.items():
        lines.append(f"{name} words: {len(table.words)} (our ids 1..{len(table.words)}), release rows "
                     f"{table.release_size}; our id 0 <- release row {table.input_rows[0]} (<sos>) in the embeddings, "
                     f"row {table.output_rows[0]} (<eos>) in the output layer; left out: input rows "
                     f"{table.left_out('input')}, output rows {table.left_out('output')}")
    for why, keys in conversion.missing.items():
        lines.append(f"not in the file ({why}): {', '.join(keys)}")
    return lines + difference_lines(conversion.differences)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polyvision convert hybridnet",
                                     description="Convert the HybridNet release's weights into a polyvision checkpoint.")
    parser.add_argument("source", type=Path, help="the released state dict (torch.save(model.state_dict()))")
    parser.add_argument("out", type=Path, help="the polyvision checkpoint to write")
    parser.add_argument("--v2c-dir", default=None, help=f"folder of the release's {CAPTION_INFO} and {CMS_INFO}")
    add_difference_arguments(parser, DIFFERENCE_NAMES)
    args = parser.parse_args(argv)
    source, out = conversion_paths(args.source, args.out, args.force)
    accept = accepted_differences(args)
    conversion = convert_hybridnet_file(source, out, args.v2c_dir, accept)
    for line in report_lines(conversion):
        print(line)
    print(f"wrote {out}")
    return 0


__all__ = ["DIFFERENCE_NAMES", "HYBRIDNET_RULES", "KNOWN_DIFFERENCES", "Conversion", "Difference", "Rule", "WordRows",
           "convert_hybridnet", "convert_hybridnet_file", "hybridnet_rules", "main", "release_parameter_count",
           "word_rows"]

if __name__ == "__main__":
    import sys

    sys.exit(main())
