"""Convert the official CVLNM release (Yang, Zhang, Cai, IJCV 2022, github.com/GCYZSL/CVLMN) into
a polyvision checkpoint of ``configs/cvlnm/coco.yaml`` (``create_model("cvlnm")``).

**Input** (the release's ``train.py``):

- the model file, ``torch.save(model.state_dict(), 'model<id><NNNN>.pth')`` (or
  ``model-best.pth``) of ``Cap_Reason3_mem_new`` (``--caption_model mcap_rs3_mem_new``); a
  ``module.`` prefix is stripped. Names and shapes are those of ``models/AttModel.py``
  (``AttModel``, ``TopDownCore``, ``Attention``, ``Mod_Cont``, ``Rela_Mod``/``Encoder``/
  ``EncoderLayer``/``SublayerConnection``/``LayerNorm``, ``MultiHeadedAttention``,
  ``PositionwiseFeedForward``, ``Memory_cell2``);
- the linguistic memory, which is **not** in the state dict (``AttModel.memory_cell`` is a
  plain tensor, trained by its own optimiser): ``train.py`` writes it next to the model as
  ``memory_cell<id><NNNN>.npz`` (key ``memory_cell``), and ``eval_rs.py`` reads it back with
  ``--memory_cell_path``. Given with ``memory=`` (``--memory``), or found next to the model
  (``model<tag>.pth`` -> ``memory_cell<tag>.npz`` or ``memory_cellr<tag>.npz``). Note: the
  release's ``model-best.pth`` is the *first* checkpoint it saved (``current_score`` is fixed at
  0, so no later save is better): its memory is ``memory_cell<id>0001.npz``;
- the vocabulary (``ix_to_word``: cocotalk, id 0 = padding/BOS/EOS, words ``"1".."V"``), from
  either the ``cocotalk.json`` (``cocobu.json``) that ``prepro_labels.py`` writes, or the
  ``infos_<id>*.pkl`` pickle ``train.py`` dumps (``infos['vocab']``, ``infos['opt']``). The
  pickle is read with a restricted unpickler that builds only plain containers and
  ``argparse.Namespace`` (``opt``); any other object in it is refused without being built:
  pass the ``cocotalk.json`` instead. Only the pickle gives the release's options (``opt``:
  ``topdown_res``, ``combine_att``, ``relu_mod``, ...); without it the README's training command
  is assumed (``--topdown_res 1 --combine_att concat --cont_ver 1 --relu_mod leaky_relu``).

**The mapping is data** (:func:`cvlnm_rules`): each rule pairs a release module (or key) with
ours and says what happens to the tensor:

- ``renamed``: the tensor as it is;
- ``stacked``: the query/key/value ``Linear`` of the release's ``MultiHeadedAttention``
  (``linears.0/1/2``) -> the thirds of ``nn.MultiheadAttention.in_proj_weight``/``_bias``
  (``linears.3`` is ``out_proj``); the four module embeddings ``core.embed1..4`` (1 x 1000
  each) -> the rows of ``controller.module_embeddings`` (order: function, noun, verb,
  adjective = the release's ``cont_weights`` columns 0..3);
- ``columns``: a weight whose input is a concatenation the release orders differently from us,
  its column blocks reordered (:data:`COLUMN_ORDERS`): the global embedding (release
  ``fc_feats`` = [obj, attr, rela] means; ours [noun, verb, adjective]), the memory query and
  the language LSTM's input weights (release ``att`` = [obj, attr, rela, lang]; ours [function,
  noun, verb, adjective]);
- ``words``: the word embedding / output layer; the release's row ``r`` is word id ``r`` of
  ``ix_to_word`` and ours the same (:class:`~polyvision.datamodules.captions.vocabulary.Vocabulary`
  ``.from_ix_to_word``, as the caption datamodule reads ``cocotalk.json``): rows kept, their
  count checked against the table;
- ``unused``: ``core.ssg_mem.W`` (``Memory_cell2.W``, never called in ``forward``): checked and
  left out.

A key that matches no rule, a tensor whose shape contradicts the model, or a weight of ours the
file (and the memory file) does not give is refused with the key named. Then
:data:`KNOWN_DIFFERENCES`: where our architecture or decoding computes something other than the
release's, conversion is refused unless those differences are accepted (``accept_differences``;
``--accept-differences``); accepted ones are printed and recorded in the checkpoint
(``polyvision.converted_from.differences``).
"""
from __future__ import annotations

import argparse
import io
import json
import pickle
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

RELEASE_URL = "github.com/GCYZSL/CVLMN"
SYSTEM = "cvlnm"
HEAD = "captions"
RELEASE_HEADS = 8  # models/AttModel.py: Rela_Mod and Mod_Cont hard-code h = 8
MODULES = ("function", "noun", "verb", "adjective")  # ours (MODULE_NAMES) = release cont_weights columns 0..3
# The README's training command, assumed when the release's opt (infos pickle) is not given.
README_OPT = {"caption_model": "mcap_rs3_mem_new", "topdown_res": 1, "combine_att": "concat", "cont_ver": 1,
              "relu_mod": "leaky_relu", "leaky_relu_value": 0.1, "use_bn": 0, "logit_layers": 1, "rela_mod_index": 1}
# Column blocks (each ``rnn_size`` wide): our block k <- release block ORDER[k].
COLUMN_ORDERS = {
    # fc_feats = cat(mean obj, mean attr, mean rela) (AttModel.post_process); ours cat(noun, verb, adjective)
    "global": (0, 2, 1),
    # att = cat(att_obj, att_attr, att_rela, att_lang) then h_att (TopDownCore.forward); ours
    # cat(function, noun, verb, adjective) then h_attention
    "memory_query": (3, 0, 2, 1, 4),
    # lang_lstm input = cat(att, h_att, lang_mem); ours cat(fused, h_attention, read)
    "language_lstm": (3, 0, 2, 1, 4, 5),
}


# --------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Rule:
    """One release module (or key) ``source`` and what becomes of its tensors (module docstring).

    ``part``/``parts``: for ``stacked``, which slice of the target (rows ``part`` of ``parts``
    equal slices); ``order``: for ``columns``, the :data:`COLUMN_ORDERS` entry."""

    source: str
    target: str | None
    action: str
    why: str = ""
    part: int = 0
    parts: int = 1
    order: str = ""

    def matches(self, key: str) -> bool:
        return key == self.source or key.startswith(self.source + ".")

    def target_key(self, key: str) -> str:
        assert self.target is not None
        return self.target + key[len(self.source):]


def cvlnm_rules(verb_layers: int = 2, head: str = HEAD) -> list[Rule]:
    """The release -> polyvision mapping for a verb transformer of ``verb_layers`` layers (the
    release: 2, ``opts.py --rela_mod_layer``); a layer beyond matches no rule."""
    h = f"heads.{head}"
    rules = [
        Rule("embed.0.weight", f"{h}.word_embed.0.weight", "words", "word embedding (cocotalk rows)"),
        Rule("logit.weight", f"{h}.logit.weight", "words", "output layer (cocotalk rows)"),
        Rule("logit.bias", f"{h}.logit.bias", "words", "output bias (cocotalk rows)"),
        Rule("fc_embed.0.weight", f"{h}.global_embed.0.weight", "columns", "global embedding, [obj, attr, rela] -> "
             "[noun, verb, adjective]", order="global"),
        Rule("fc_embed.0.bias", f"{h}.global_embed.0.bias", "renamed", "global embedding bias"),
        Rule("core.att_lstm", f"{h}.attention_lstm", "renamed", "attention LSTM, input [h_lang, global, word] as ours"),
        Rule("core.lang_lstm.weight_ih", f"{h}.language_lstm.weight_ih", "columns", "language LSTM input weights, "
             "modules reordered", order="language_lstm"),
        Rule("core.lang_lstm.weight_hh", f"{h}.language_lstm.weight_hh", "renamed", "language LSTM"),
        Rule("core.lang_lstm.bias_ih", f"{h}.language_lstm.bias_ih", "renamed", "language LSTM"),
        Rule("core.lang_lstm.bias_hh", f"{h}.language_lstm.bias_hh", "renamed", "language LSTM"),
        Rule("core.mem_fc.0.weight", f"{h}.memory_query.0.weight", "columns", "memory query, modules reordered",
             order="memory_query"),
        Rule("core.mem_fc.0.bias", f"{h}.memory_query.0.bias", "renamed", "memory query bias"),
        Rule("core.lang_embed.0", f"{h}.function_word.0", "renamed", "function-word module (on c_lang)"),
        Rule("core.query_fc", f"{h}.controller.query", "renamed", "controller query (of the attention-LSTM input)"),
        Rule("core.controller.attn.linears.3", f"{h}.controller.attention.out_proj", "renamed",
             "controller attention output"),
        Rule("core.controller.ff.w_1", f"{h}.controller.feed_forward.0", "renamed", "controller feed-forward"),
        Rule("core.controller.ff.w_2", f"{h}.controller.feed_forward.3", "renamed", "controller feed-forward"),
        Rule("core.W_cont", f"{h}.controller.classify", "renamed", "controller classifier (4 modules)"),
        Rule("core.ssg_mem.W", None, "unused", "Memory_cell2.W: defined, never used in forward"),
        *[Rule(f"core.embed{k + 1}", f"{h}.controller.module_embeddings", "stacked",
               f"module embedding of the {name} module (cont_weights column {k})", part=k, parts=4)
          for k, name in enumerate(MODULES)],
        *[Rule(f"core.controller.attn.linears.{i}.{kind}", f"{h}.controller.attention.in_proj_{kind}", "stacked",
               "controller attention q/k/v -> in_proj thirds", part=i, parts=3)
          for i in range(3) for kind in ("weight", "bias")],
        Rule("rela_mod.model.norm.a_2", f"{h}.verb_encoder.norm.weight", "renamed", "verb transformer final norm"),
        Rule("rela_mod.model.norm.b_2", f"{h}.verb_encoder.norm.bias", "renamed", "verb transformer final norm"),
    ]
    for release, ours in (("obj", "noun"), ("attr", "adjective"), ("rela", "verb")):
        rules += [
            Rule(f"{release}_embed.0", f"{h}.{ours}.embed.0", "renamed", f"{ours} module region embedding"),
            Rule(f"ctx2att_{release}", f"{h}.{ours}.keys", "renamed", f"{ours} module attention keys (ctx2att)"),
            Rule(f"core.attention_{release}.h2att", f"{h}.{ours}.query", "renamed", f"{ours} module attention query"),
            Rule(f"core.attention_{release}.alpha_net", f"{h}.{ours}.score", "renamed", f"{ours} module attention score"),
        ]
    for layer in range(verb_layers):
        source, target = f"rela_mod.model.layers.{layer}", f"{h}.verb_encoder.layers.{layer}"
        rules += [
            *[Rule(f"{source}.self_attn.linears.{i}.{kind}", f"{target}.self_attn.in_proj_{kind}", "stacked",
                   "verb transformer self-attention q/k/v -> in_proj thirds", part=i, parts=3)
              for i in range(3) for kind in ("weight", "bias")],
            Rule(f"{source}.self_attn.linears.3", f"{target}.self_attn.out_proj", "renamed", "self-attention output"),
            Rule(f"{source}.feed_forward.w_1", f"{target}.linear1", "renamed", "verb transformer feed-forward"),
            Rule(f"{source}.feed_forward.w_2", f"{target}.linear2", "renamed", "verb transformer feed-forward"),
            *[Rule(f"{source}.sublayer.{i}.norm.{theirs}", f"{target}.norm{i + 1}.{mine}", "renamed",
                   "pre-LN norm (SublayerConnection)") for i in range(2)
              for theirs, mine in (("a_2", "weight"), ("b_2", "bias"))],
        ]
    return rules


CVLNM_RULES = cvlnm_rules()  # the paper's 2 verb layers


def reorder_columns(tensor, order: tuple[int, ...]):
    import torch

    width, rest = divmod(tensor.shape[1], len(order))
    if rest:
        raise ValueError(f"{tensor.shape[1]} columns are not {len(order)} equal blocks")
    return torch.cat([tensor[:, k * width:(k + 1) * width] for k in order], 1)


# --------------------------------------------------------------------------- vocabulary and options
class _ReleaseInfos(pickle.Unpickler):
    """Builds plain containers and ``argparse.Namespace`` only (``infos['opt']``); any other
    global the pickle names is refused before it is looked up."""

    ALLOWED = frozenset({("argparse", "Namespace"), ("copyreg", "_reconstructor"), ("copy_reg", "_reconstructor"),
                         ("builtins", "object"), ("__builtin__", "object"), ("collections", "OrderedDict")})

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise WeightsError(f"refused: the infos pickle holds a {module}.{name} object, which this converter does "
                               f"not build (it unpickles containers and argparse.Namespace only); pass the release's "
                               f"cocotalk.json (ix_to_word) instead")
        return super().find_class(module, name)


def read_infos(path: Path) -> dict[str, Any]:
    """``{'vocab': ix_to_word, 'opt': dict or None}`` of a release ``infos_*.pkl``."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise WeightsError(f"{path}: not readable ({error})") from None
    try:
        loaded = _ReleaseInfos(io.BytesIO(data), encoding="utf-8").load()
    except WeightsError as error:
        raise WeightsError(f"{path}: {error}") from None
    except Exception as error:  # noqa: BLE001 - truncated or foreign pickle
        raise WeightsError(f"{path}: not a readable infos pickle ({type(error).__name__}: {str(error)[:160]})") from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("vocab"), dict):
        raise WeightsError(f"{path}: no 'vocab' (ix_to_word) in the infos pickle")
    opt = loaded.get("opt")
    opt = vars(opt) if isinstance(opt, argparse.Namespace) else (opt if isinstance(opt, dict) else None)
    return {"vocab": loaded["vocab"], "opt": opt}


def read_vocabulary_source(path: Path) -> tuple[dict[str, str], dict[str, Any] | None, str]:
    """``(ix_to_word, release opt or None, kind)`` of a cocotalk JSON or an infos pickle."""
    if not path.is_file():
        raise WeightsError(f"{path}: not found (the release's cocotalk.json or infos_*.pkl)")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise WeightsError(f"{path}: not readable JSON ({error})") from None
        table = data.get("ix_to_word") if isinstance(data, dict) else None
        if not isinstance(table, dict) or not table:
            raise WeightsError(f"{path}: has no ix_to_word table")
        return table, None, "cocotalk.json"
    infos = read_infos(path)
    return infos["vocab"], infos["opt"], "infos pickle"


def release_words(table: Mapping[Any, Any], where: str) -> list[str]:
    """Our words (id ``i + 1`` = ``words[i]``) of a cocotalk ``ix_to_word``: the table's own
    order, as ``Vocabulary.from_ix_to_word`` reads it for the caption datamodule."""
    from polyvision.datamodules.captions.vocabulary import Vocabulary
    from polyvision.errors import DataError

    try:
        vocabulary = Vocabulary.from_ix_to_word({str(key): str(word) for key, word in table.items()}, where)
    except DataError as error:
        raise WeightsError(str(error)) from None
    except ValueError as error:  # repeated words
        raise WeightsError(f"{where}: {error}") from None
    return list(vocabulary.words)


def memory_next_to(source: Path) -> Path | None:
    """``memory_cell<tag>.npz`` (or the README's ``memory_cellr<tag>.npz``) next to ``model<tag>.pth``."""
    match = re.fullmatch(r"model(.*)\.pth", source.name)
    if not match or match.group(1) == "-best":
        return None
    for prefix in ("memory_cell", "memory_cellr"):
        candidate = source.with_name(f"{prefix}{match.group(1)}.npz")
        if candidate.is_file():
            return candidate
    return None


def read_memory(path: Path):
    import numpy as np
    import torch

    try:
        with np.load(path, allow_pickle=False) as archive:
            if "memory_cell" not in archive:
                raise WeightsError(f"{path}: no 'memory_cell' array (has {', '.join(archive.files)})")
            cell = np.asarray(archive["memory_cell"], dtype=np.float32)
    except (OSError, ValueError) as error:
        raise WeightsError(f"{path}: not a readable memory file ({error})") from None
    if cell.ndim != 2:
        raise WeightsError(f"{path}: memory_cell is {cell.ndim}-d, not (memory_size, rnn_size)")
    return torch.from_numpy(cell.copy())


# --------------------------------------------------------------------------- differences
KNOWN_DIFFERENCES: list[Difference] = [
    Difference("release_activations", "ReLU in the global embedding and a plain Linear memory query "
               "(head release_activations: false)",
               "fc_embed Linear + LeakyReLU(0.1) + dropout; mem_fc Linear + LeakyReLU(0.1) + Dropout(0.5)",
               "models/AttModel.py AttModel.__init__ (fc_embed), TopDownCore.__init__ (mem_fc)",
               lambda head, facts: not head.release_activations),
    Difference("verb_layer_norm", "nn.LayerNorm: (x - mean) / sqrt(biased var + 1e-5)",
               "LayerNorm: (x - mean) / (unbiased std + 1e-6) in every pre-LN sublayer and the final norm",
               "models/AttModel.py LayerNorm, SublayerConnection, Encoder", always_applies),
    Difference("activations", "LeakyReLU(0.1) in the word embedding, the region embeddings, the function-word "
               "module, the global embedding and the memory query", "ReLU there (--relu_mod relu)", "models/AttModel.py AttModel.__init__, TopDownCore.__init__",
               lambda head, facts: facts["opt"].get("relu_mod") != "leaky_relu"),
    Difference("beam_search", "batched beam search; the controller history follows each beam (the embeddings of "
               "the beam's own past module weights, as in teacher forcing and greedy decoding)",
               "one image at a time, finished beams set aside at -1000; the controller history is rebuilt each step "
               "from beam_tag_probs, whose forked entry is beam_tag_probs[q, 0] (time q, beam 0) and whose rows are "
               "overwritten one step late: the history is not the beam's own (the BOS step's entry is lost, the "
               "newest is stale)", "models/CaptionModel.py beam_search (beam_step candidates 'tp', "
               "rs_data['beam_cont_weights']); models/AttModel.py TopDownCore.forward (beam_search branch)",
               lambda head, facts: head.beam_size > 1),
    Difference("unk_suppression", "the word 'UNK' never decoded (suppress_unk: -inf, every decoding)",
               "beam search only: the LAST output row - 1000; greedy and sampling decode it",
               "models/CaptionModel.py beam_search ('suppress UNK tokens'); models/AttModel.py _sample",
               lambda head, facts: (bool(head.suppress_unk) and head.beam_size == 1) or
               (head.beam_size > 1 and (not head.suppress_unk or not facts["unk_last"]))),
]
DIFFERENCE_NAMES = tuple(difference.name for difference in KNOWN_DIFFERENCES)


# --------------------------------------------------------------------------- conversion
@dataclass
class Conversion:
    """What a conversion did: the loaded ``model``, per rule the keys it took, the words, the
    release options used and the differences accepted."""

    model: Any
    used: dict[Rule, list[str]]
    words: list[str]
    opt: dict[str, Any]
    opt_source: str
    memory_shape: tuple[int, ...]
    differences: list[Difference] = field(default_factory=list)


def match_rules(state: Mapping[str, Any], rules: list[Rule], where: str) -> dict[str, Rule]:
    """Each key's rule (the longest matching source); refuses keys no rule matches."""
    return shared_match_rules(state, rules, where, system="CVLNM", not_release="not the CVLNM release (mcap_rs3_mem_new, cont_ver 1, "
                              "use_bn 0, logit_layers 1)", table="cvlnm_rules in polyvision/scripts/convert_cvlnm.py")


def verb_layers_of(state: Mapping[str, Any]) -> int:
    found = [int(m.group(1)) for key in state for m in [re.match(r"rela_mod\.model\.layers\.(\d+)\.", key)] if m]
    return max(found, default=-1) + 1


def _shape(state: Mapping[str, Any], key: str, where: str) -> tuple[int, ...]:
    if key not in state:
        raise WeightsError(f"{where}: no '{key}': not the CVLNM release (mcap_rs3_mem_new)")
    return tuple(state[key].shape)


def release_sizes(state: Mapping[str, Any], memory_shape: tuple[int, ...], opt: dict[str, Any],
                  where: str) -> dict[str, Any]:
    """Our head's sizes read off the release's tensors (and ``opt`` for what no tensor shows)."""
    rows, word = _shape(state, "embed.0.weight", where)
    rnn, channels = _shape(state, "obj_embed.0.weight", where)
    hidden = _shape(state, "ctx2att_obj.weight", where)[0]
    lang_in = _shape(state, "core.lang_lstm.weight_ih", where)[1]
    if lang_in != 6 * rnn:
        raise WeightsError(f"{where}: core.lang_lstm takes {lang_in} inputs, not 6 x {rnn} (--combine_att concat); "
                           f"our CVLNM converts the concat release only")
    feedforward = _shape(state, "rela_mod.model.layers.0.feed_forward.w_1.weight", where)[0]
    if memory_shape[1:] != (rnn,):
        raise WeightsError(f"{where}: the memory is {memory_shape[0]}x{memory_shape[1]}, its rows must be rnn_size "
                           f"({rnn}) wide")
    return {"vocabulary_size": rows - 1, "rnn_size": rnn, "word_size": word, "attention_hidden": hidden,
            "memory_size": memory_shape[0], "controller_heads": RELEASE_HEADS, "verb_layers": verb_layers_of(state),
            "verb_heads": RELEASE_HEADS, "verb_feedforward": feedforward, "fusion": "concat",
            "residual": bool(int(opt.get("topdown_res", 1))), "channels": channels}


def paper_model(sizes: dict[str, Any], geometry: dict[str, dict[str, Any]]):
    """``configs/cvlnm/coco.yaml``'s model at the release's sizes (as the CLI builds it)."""
    import copy

    from polyvision.models.factory import build_from_spec, model_config

    spec = copy.deepcopy(model_config("cvlnm"))
    args = spec["init_args"]
    head = args["heads"][HEAD]["init_args"]
    head.update({k: v for k, v in sizes.items() if k != "channels"})
    head["memory_init"] = None
    args["vocabulary_size"] = sizes["vocabulary_size"]
    args["backbone"] = {"class_path": "polyvision.models.cvlnm.RegionFeatures",
                        "init_args": {"channels": sizes["channels"]}}
    args["input_geometry"] = geometry
    return build_from_spec(spec, "convert cvlnm")


def check_options(opt: dict[str, Any], where: str) -> None:
    """Release options our CVLNM has no counterpart for are refused (not differences: another model)."""
    wrong = {name: opt.get(name) for name, value in (("caption_model", "mcap_rs3_mem_new"), ("cont_ver", 1),
                                                      ("combine_att", "concat"), ("use_bn", 0), ("logit_layers", 1),
                                                      ("rela_mod_index", 1))
             if name in opt and opt[name] != value}
    if wrong:
        raise WeightsError(f"{where}: the release was trained with {wrong}; our CVLNM is the README's configuration "
                           f"(caption_model mcap_rs3_mem_new, cont_ver 1, combine_att concat, use_bn 0, logit_layers 1, "
                           f"rela_mod_index 1)")
    if opt.get("relu_mod") == "leaky_relu" and float(opt.get("leaky_relu_value", 0.1)) != 0.1:
        raise WeightsError(f"{where}: leaky_relu_value {opt['leaky_relu_value']}; ours is 0.1")


def convert_cvlnm(state_dict: Mapping[str, Any], ix_to_word: Mapping[Any, Any], memory, *,
                  opt: Mapping[str, Any] | None = None, build_model: Callable[[dict, dict], Any] | None = None,
                  accept_differences: bool | Collection[str] = False, head: str = HEAD,
                  where: str = "the CVLNM release") -> Conversion:
    """The release's ``state_dict`` (``module.`` stripped), its ``ix_to_word`` and its memory
    (``memory_size x rnn_size``) -> a ``CVLNM`` with those weights.

    ``opt``: the release's options (``infos['opt']``), or ``None`` for the README command.
    ``build_model(sizes, input_geometry)`` builds our model (default :func:`paper_model`).
    ``accept_differences``: ``True``, or names in :data:`DIFFERENCE_NAMES`; any other difference
    that applies refuses the conversion (module docstring)."""
    import torch

    state = strip_parallel_prefix(state_dict)
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{where}: not a state dict: '{key}' holds a {type(value).__name__}, not a tensor")
    opt_source = "infos pickle" if opt is not None else "README command (assumed)"
    opt = {**README_OPT, **dict(opt or {})}
    check_options(opt, where)
    words = release_words(ix_to_word, f"{where}: ix_to_word")
    match_rules(state, cvlnm_rules(verb_layers_of(state), head), where)  # names first: a foreign file fails early
    if not isinstance(memory, torch.Tensor):
        raise WeightsError(f"{where}: the release's memory (memory_cell*.npz) is needed: it is not in the state dict")
    sizes = release_sizes(state, tuple(memory.shape), opt, where)
    if sizes["vocabulary_size"] != len(words):
        raise WeightsError(f"{where}: embed.0.weight has {sizes['vocabulary_size'] + 1} rows but ix_to_word has "
                           f"{len(words)} words (+ id 0): not this vocabulary's weights")
    geometry = {head: {"input": "regions", "feature_dim": sizes["channels"], "max_length": 16, "vocabulary": words}}
    model = (build_model or paper_model)(sizes, geometry)
    our_head = model.heads[head]
    chosen = match_rules(state, cvlnm_rules(our_head.verb_layers, head), where)
    ours = model.state_dict()
    weights: dict[str, Any] = {}
    used: dict[Rule, list[str]] = {}
    stacked: dict[str, list[Any]] = {}
    for key, rule in chosen.items():
        used.setdefault(rule, []).append(key)
        tensor = state[key]
        if rule.action == "unused":
            if key.endswith("weight") and tensor.shape != (1, sizes["attention_hidden"]):
                raise WeightsError(f"{where}: '{key}' has shape {tuple(tensor.shape)}, not "
                                   f"(1, {sizes['attention_hidden']}) (Memory_cell2.W)")
            continue
        target = rule.target_key(key)
        if target not in ours:
            raise WeightsError(f"{where}: '{key}' maps to '{target}', which our CVLNM does not have "
                               f"(a different configuration, or correct cvlnm_rules)")
        expected = tuple(ours[target].shape)
        need = (expected[0] // rule.parts, *expected[1:]) if rule.action == "stacked" else expected
        if tuple(tensor.shape) != need:
            raise WeightsError(f"{where}: '{key}' has shape {tuple(tensor.shape)}, but our '{target}' needs {need}"
                               f"{' (rows: ix_to_word words + 1)' if rule.action == 'words' else ''}: "
                               f"not the weights of this model")
        if rule.action == "stacked":
            stacked.setdefault(target, [None] * rule.parts)[rule.part] = tensor
            continue
        if target in weights:
            raise WeightsError(f"{where}: '{key}' and another key both map to '{target}' (correct cvlnm_rules)")
        value = reorder_columns(tensor, COLUMN_ORDERS[rule.order]) if rule.action == "columns" else tensor
        weights[target] = value.to(ours[target].dtype).clone()
    for target, parts in stacked.items():
        if any(part is None for part in parts):
            raise WeightsError(f"{where}: '{target}' is stacked from {len(parts)} release tensors; the file gives "
                               f"{sum(p is not None for p in parts)} of {len(parts)}")
        weights[target] = torch.cat(parts, 0).to(ours[target].dtype)
    memory_key = f"heads.{head}.memory_cell"
    if tuple(ours[memory_key].shape) != tuple(memory.shape):
        raise WeightsError(f"{where}: the memory is {tuple(memory.shape)}, our '{memory_key}' needs "
                           f"{tuple(ours[memory_key].shape)}")
    weights[memory_key] = memory.to(ours[memory_key].dtype).clone()
    absent = [key for key in ours if key not in weights]
    if absent:
        raise WeightsError(f"{where}: {len(absent)} weights of our CVLNM are not in the file (first: '{absent[0]}'); "
                           f"not the CVLNM release, or a configuration the release does not have")
    facts = {"opt": opt, "unk_last": bool(words) and words[-1] == "UNK"}
    applying = check_differences(KNOWN_DIFFERENCES, our_head, facts, accept_differences, system="CVLNM",
                                 where=where)
    model.load_state_dict(weights, strict=True)
    return Conversion(model.eval(), used, words, opt, opt_source, tuple(memory.shape), applying)


def release_parameter_count(vocabulary: int, rnn: int = 1000, regions: int = 2048, hidden: int = 512,
                            memory: int = 1000, layers: int = 2, feedforward: int = 2048) -> int:
    """The release's learnable parameters for a vocabulary of ``vocabulary`` words, counted from
    its layer shapes (``models/AttModel.py``, README command: rnn = input encoding = 1000; the
    controller's 1000 is hard-coded): the state dict, plus the ``memory`` x ``rnn`` memory cell
    that ``train.py`` trains with its own optimiser (not in the state dict)."""
    def linear(i: int, o: int) -> int:
        return i * o + o

    def lstm(i: int, h: int) -> int:
        return 4 * h * (i + h) + 8 * h

    words = (vocabulary + 1) * rnn + linear(rnn, vocabulary + 1)  # embed, logit
    visual = 3 * (linear(regions, rnn) + linear(rnn, hidden) + linear(rnn, hidden) + linear(hidden, 1))
    encoder = layers * (4 * linear(regions, regions) + linear(regions, feedforward) + linear(feedforward, regions)
                        + 4 * regions) + 2 * regions
    controller = linear(3 * rnn, rnn) + 4 * linear(rnn, rnn) + 2 * linear(rnn, rnn) + linear(rnn, 4) + 4 * rnn
    core = lstm(3 * rnn, rnn) + lstm(6 * rnn, rnn) + linear(rnn, rnn) + linear(5 * rnn, rnn) + linear(hidden, 1)
    return words + linear(3 * rnn, rnn) + visual + encoder + controller + core + memory * rnn


# --------------------------------------------------------------------------- files
def checkpoint_of(conversion: Conversion, source_name: str, memory_name: str, vocabulary_kind: str) -> dict[str, Any]:
    model = conversion.model
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    checkpoint["polyvision"]["converted_from"] = {
        "system": SYSTEM, "file": source_name, "memory": memory_name, "release": RELEASE_URL,
        "vocabulary": vocabulary_kind, "options": conversion.opt_source,
        "differences": [difference.name for difference in conversion.differences],
        "word_rows": {"release_rows": len(conversion.words) + 1, "our_ids": len(conversion.words) + 1,
                      "mapping": "identity (cocotalk id = our id; 0 = BOS/EOS/padding)"}}
    return checkpoint


def convert_cvlnm_file(source: Path, out: Path, vocabulary: str | None,
                       accept_differences: bool | Collection[str] = False,
                       build_model: Callable[[dict, dict], Any] | None = None,
                       memory: str | Path | None = None) -> Conversion:
    """``main``-style entry (``CONVERTERS``' ``(source, out, option)``): the release file
    ``source``, its vocabulary ``vocabulary`` (``cocotalk.json`` or ``infos_*.pkl``) and its
    memory (``memory``, else found next to ``source``) -> the checkpoint ``out`` (written
    atomically)."""
    source = Path(source)
    if not vocabulary:
        raise ConfigError("convert cvlnm: --vocabulary FILE is needed: the release's cocotalk.json (ix_to_word), or "
                          "its infos_<id>*.pkl (read without building arbitrary objects)")
    table, opt, kind = read_vocabulary_source(Path(vocabulary).expanduser())
    memory_path = Path(memory).expanduser() if memory else memory_next_to(source)
    if memory_path is None:
        raise WeightsError(f"{source}: the release's memory is not in its state dict (train.py saves it as "
                           f"memory_cell<id><NNNN>.npz): pass --memory FILE (for model-best.pth: memory_cell<id>0001.npz)")
    if not memory_path.is_file():
        raise WeightsError(f"{memory_path}: memory file not found")
    state = read_release_state_dict(source)
    conversion = convert_cvlnm(state, table, read_memory(memory_path), opt=opt, build_model=build_model,
                               accept_differences=accept_differences, where=str(source))
    save_atomically(checkpoint_of(conversion, source.name, memory_path.name, kind), Path(out))
    return conversion


def report_lines(conversion: Conversion) -> list[str]:
    counts: dict[str, int] = {}
    for rule, keys in conversion.used.items():
        counts[rule.action] = counts.get(rule.action, 0) + len(keys)
    lines = [f"{sum(counts.values())} release keys: " + ", ".join(f"{n} {a}" for a, n in sorted(counts.items())),
             f"memory {conversion.memory_shape[0]}x{conversion.memory_shape[1]} from the memory file",
             f"words: {len(conversion.words)} (cocotalk ids 1..{len(conversion.words)} = our ids; id 0 BOS/EOS)",
             f"release options: {conversion.opt_source}"]
    return lines + difference_lines(conversion.differences)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polyvision convert cvlnm",
                                     description="Convert the CVLNM release's weights into a polyvision checkpoint.")
    parser.add_argument("source", type=Path, help="the released state dict (model<id><NNNN>.pth / model-best.pth)")
    parser.add_argument("out", type=Path, help="the polyvision checkpoint to write")
    parser.add_argument("--vocabulary", default=None,
                        help="the release's cocotalk.json (ix_to_word), or its infos_<id>*.pkl")
    parser.add_argument("--memory", default=None, help="the release's memory_cell<id><NNNN>.npz (default: next to "
                                                       "SOURCE)")
    add_difference_arguments(parser, DIFFERENCE_NAMES)
    args = parser.parse_args(argv)
    source, out = conversion_paths(args.source, args.out, args.force)
    accept = accepted_differences(args)
    conversion = convert_cvlnm_file(source, out, args.vocabulary, accept, memory=args.memory)
    for line in report_lines(conversion):
        print(line)
    print(f"wrote {out}")
    return 0


__all__ = ["CVLNM_RULES", "DIFFERENCE_NAMES", "KNOWN_DIFFERENCES", "Conversion", "Difference", "Rule", "convert_cvlnm",
           "convert_cvlnm_file", "cvlnm_rules", "main", "read_infos", "release_parameter_count"]

if __name__ == "__main__":
    import sys

    sys.exit(main())
