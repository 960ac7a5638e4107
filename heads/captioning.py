"""Caption heads: a decoder-agnostic :class:`CaptionHead` base and CVLNM's :class:`CVLNMHead`.

**CaptionHead** owns what every caption decoder shares (an LSTM like CVLNM's, a transformer
like HybridNet's): teacher-forced cross-entropy over the ``K`` captions of each image,
decoding through :mod:`polyvision.models.layers.decoding` (beam search, greedy, sampling),
self-critical sequence training (Rennie et al. 2017, as the CVLNM release's ``misc/rewards.py``:
``scst_samples`` multinomial samples per image, the greedy caption as baseline, reward =
CIDEr-D with training-set document frequencies), ``predict`` and the coco-caption metrics. A
subclass implements three methods: :meth:`~CaptionHead.decoder_inputs` (initial ``state`` and
fixed ``context`` of a batch), :meth:`~CaptionHead.step` (one word) and, optionally,
:meth:`~CaptionHead.step_extras` (per-step tensors its own losses need). A transformer decoder
may also override :meth:`~CaptionHead.teacher_forced` to run all positions at once.

Token convention (cocotalk): word id ``i + 1`` is ``vocabulary[i]``; id 0 is padding, the BOS
input and EOS. ``batch["captions"]`` is ``(B, K, L)`` word ids (0-padded; an all-zero row is a
missing caption and is ignored); the decoder reads ``[0, w1..wL]`` and is trained to answer
``[w1..wL, 0]``, the words and the first EOS counted.

**CVLNMHead** is the decoder of CVLNM (Yang et al., "Learning to Collocate Visual-Linguistic
Neural Modules for Image Captioning", IJCV 2022; official code github.com/GCYZSL/CVLMN,
``models/AttModel.py``): three visual modules (noun, adjective, verb) attending over the
regions, the verb module after a 2-layer pre-LN transformer on the raw region features, a
function-word module on the language LSTM's cell state, a multi-head module controller over the
history of its soft module embeddings, the Up-Down two-LSTM decoder and a learned linguistic
memory read by the language LSTM, plus the part-of-speech syntax loss on the controller.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection

from polyvision.errors import ConfigError
from polyvision.heads.base import Head
from polyvision.models.layers.decoding import EOS, beam_search, caption_mask, greedy, map_state, repeat_state, sample

# The token that closes every caption in the self-critical reward's n-grams, as the release's
# word-id strings end with the EOS id 0 (``misc/rewards.py`` ``array_to_str``, ``prepro_ngrams.py``).
REWARD_END = "<eos>"
# The controller's module order, as the release's ``Mod_Cont`` (and the data's ``tags``) use it.
MODULE_NAMES = ("function", "noun", "verb", "adjective")


def words_of(tokens: list[int], vocabulary: list[str] | None) -> list[str]:
    """Words of one caption's ids up to its first EOS (ids as strings without a vocabulary)."""
    words = []
    for token in tokens:
        if token == EOS:
            break
        words.append(vocabulary[token - 1] if vocabulary is not None and 0 < token <= len(vocabulary) else str(token))
    return words


class CaptionHead(Head):
    """Base of autoregressive caption heads (see the module docstring).

    Args:
        vocabulary_size: number of words (ids 1..V; the output has V + 1 classes with EOS).
            Checked against the data's vocabulary when the model is set up.
        max_length: words decoded at most (16: the Karpathy preprocessing's caption cap).
        beam_size: beams of ``generate``; 1 decodes greedily.
        length_penalty: GNMT length-penalty exponent of beam search (0: sum of log-probs, as
            the CVLNM release).
        scst_samples: captions sampled per image in self-critical training (release: 5).
        scst_temperature: sampling temperature in self-critical training.
        suppress_unk: never generate the vocabulary's ``UNK`` word (the CVLNM release's beam
            search gives it log-prob -1000; self-critical.pytorch ``suppress_UNK``).
    """

    def __init__(self, vocabulary_size: int, max_length: int = 16, beam_size: int = 5, length_penalty: float = 0.0,
                 scst_samples: int = 5, scst_temperature: float = 1.0, suppress_unk: bool = True):
        super().__init__()
        if int(vocabulary_size) < 1:
            raise ConfigError(f"{type(self).__name__}: vocabulary_size must be positive, got {vocabulary_size}")
        self.vocabulary_size = int(vocabulary_size)
        self.max_length = int(max_length)
        self.beam_size = int(beam_size)
        self.length_penalty = float(length_penalty)
        self.scst_samples = int(scst_samples)
        self.scst_temperature = float(scst_temperature)
        self.suppress_unk = bool(suppress_unk)
        # Switched by the owning model per epoch (CVLNM: ``self_critical_after``).
        self.self_critical = False
        self.vocabulary: list[str] | None = None  # the data's words, given by the model
        self.reward_scorer = None  # CIDEr-D with fixed document frequencies, given by the model
        self.last_reward: dict[str, float] = {}
        self.unk_id: int | None = None

    # ------------------------------------------------------------------ what a decoder implements
    def decoder_inputs(self, features: dict[str, Any], batch: dict[str, Any]) -> tuple[Any, Any]:
        """``(state, context)`` of the batch's images, batch axis first (see ``decoding``)."""
        raise NotImplementedError

    def step(self, tokens: Tensor, state: Any, context: Any) -> tuple[Tensor, Any]:
        """One word: ``(log_probs (R, V+1), next state)`` for the previous tokens ``(R,)``."""
        raise NotImplementedError

    def step_extras(self, state: Any) -> dict[str, Tensor]:
        """Per-step tensors (R, ...) that teacher forcing stacks into ``(R, T, ...)`` outputs."""
        return {}

    # ------------------------------------------------------------------ vocabulary
    def set_vocabulary(self, words: list[str] | None, where: str = "the data") -> None:
        """The words of ids 1..V; a vocabulary of another size is one clear error."""
        if words is None:
            return
        if len(words) != self.vocabulary_size:
            raise ConfigError(f"{type(self).__name__}: vocabulary_size is {self.vocabulary_size} but {where} has "
                              f"{len(words)} words (set the head's vocabulary_size to {len(words)})")
        self.vocabulary = list(words)
        self.unk_id = self.vocabulary.index("UNK") + 1 if "UNK" in self.vocabulary else None

    def decoding_step(self, tokens: Tensor, state: Any, context: Any) -> tuple[Tensor, Any]:
        """:meth:`step` as decoding uses it: without ``UNK`` when ``suppress_unk``."""
        log_probs, state = self.step(tokens, state, context)
        if self.suppress_unk and self.unk_id is not None:
            log_probs = log_probs.index_fill(1, torch.tensor([self.unk_id], device=log_probs.device), float("-inf"))
        return log_probs, state

    def decode_words(self, tokens: Tensor) -> list[str]:
        return [" ".join(words_of(row, self.vocabulary)) for row in tokens.tolist()]

    # ------------------------------------------------------------------ teacher forcing
    @staticmethod
    def caption_rows(batch: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
        """``(inputs, targets, mask)`` of every caption row, (B*K, L+1) each."""
        captions = batch["captions"].long()
        rows = captions.reshape(-1, captions.shape[-1])
        zeros = rows.new_zeros(rows.shape[0], 1)
        inputs, targets = torch.cat([zeros, rows], 1), torch.cat([rows, zeros], 1)
        mask = caption_mask(targets) & (rows[:, :1] != EOS)  # an all-zero row is no caption
        return inputs, targets, mask

    def teacher_forced(self, state: Any, context: Any, inputs: Tensor) -> dict[str, Tensor]:
        """``log_probs`` (R, T, V+1) and the stacked ``step_extras`` of reading ``inputs``."""
        log_probs, extras = [], []
        for t in range(inputs.shape[1]):
            step_log_probs, state = self.step(inputs[:, t], state, context)
            log_probs.append(step_log_probs)
            extras.append(self.step_extras(state))
        outputs = {"log_probs": torch.stack(log_probs, 1)}
        for key in extras[0]:
            outputs[key] = torch.stack([extra[key] for extra in extras], 1)
        return outputs

    def forward(self, features: dict[str, Any], batch: dict[str, Any]) -> dict[str, Tensor]:
        if not isinstance(batch.get("captions"), Tensor):
            return {}
        state, context = self.decoder_inputs(features, batch)
        per_image = batch["captions"].shape[1]
        inputs, _, _ = self.caption_rows(batch)
        return self.teacher_forced(repeat_state(state, per_image), repeat_state(context, per_image), inputs)

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        """Cross-entropy of the words and the EOS of every caption, mean over counted tokens."""
        if "log_probs" not in outputs:
            return {}
        _, targets, mask = self.caption_rows(batch)
        nll = -outputs["log_probs"].gather(2, targets[..., None]).squeeze(2)
        return {"caption": (nll * mask).sum() / mask.sum().clamp(min=1)}

    # ------------------------------------------------------------------ decoding
    def generate(self, features: dict[str, Any], batch: dict[str, Any]) -> dict[str, Tensor]:
        state, context = self.decoder_inputs(features, batch)
        size = _rows(context)
        if self.beam_size > 1:
            decoded = beam_search(self.decoding_step, state, context, size, beam_size=self.beam_size,
                                  max_length=self.max_length, length_penalty_alpha=self.length_penalty)
        else:
            decoded = greedy(self.decoding_step, state, context, size, max_length=self.max_length)
        return {"tokens": decoded.tokens, "scores": decoded.scores, **self.generation_extras(decoded.state)}

    def generation_extras(self, state: Any) -> dict[str, Tensor]:
        """Tensors of the chosen captions' final decoder state worth reporting (attention)."""
        return {}

    def predict(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> list[dict[str, Any]]:
        tokens = outputs["tokens"].tolist()
        scores = outputs["scores"].tolist()
        records = []
        for row, score in zip(tokens, scores):
            words = words_of(row, self.vocabulary)
            records.append({"caption": " ".join(words), "tokens": row[:len(words)], "score": float(score)})
        return records

    def metrics(self) -> MetricCollection:
        from polyvision.metrics.captioning import CaptionMetrics

        return MetricCollection({"captions": CaptionMetrics()})

    def metric_inputs(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> tuple | None:
        meta = batch.get("meta") or []
        if "tokens" not in outputs or not meta or not all(isinstance(m, dict) and m.get("references") for m in meta):
            return None
        return self.decode_words(outputs["tokens"]), [list(m["references"]) for m in meta]

    # ------------------------------------------------------------------ self-critical training
    def training_loss(self, features: dict[str, Any], batch: dict[str, Any]) -> dict[str, Tensor]:
        if self.self_critical:
            return self.self_critical_loss(features, batch)
        return self.loss(self(features, batch), batch)

    def set_reward_corpus(self, references: dict[Any, list[str]] | list[list[str]]) -> None:
        """Fix the CIDEr-D reward's document frequencies from a corpus of raw references (the
        training split's, as the release's ``prepro_ngrams.py`` cache)."""
        from polyvision.metrics.captioning import CiderD

        captions = list(references.values()) if isinstance(references, dict) else list(references)
        self.reward_scorer = CiderD([self.reward_references(image) for image in captions])

    @staticmethod
    def reward_references(captions: list[str]) -> list[list[str]]:
        """Tokenised references of one image, each closed by :data:`REWARD_END`."""
        from polyvision.metrics.captioning import tokenize

        return [tokenize(caption) + [REWARD_END] for caption in captions]

    def rewards(self, tokens: Tensor, references: list[list[list[str]]], per_image: int) -> Tensor:
        """Per-caption CIDEr-D of decoded ``tokens`` (rows of one image together) against the
        references of their image (:meth:`reward_references`); a caption that ended within
        ``max_length`` is closed by :data:`REWARD_END` too."""
        from polyvision.metrics.captioning import CiderD

        scorer = self.reward_scorer
        if scorer is None:  # no training corpus given: the batch's references (the release's "corpus" mode)
            scorer = CiderD(references)
        hypotheses = [words_of(row, self.vocabulary) + ([REWARD_END] if EOS in row else []) for row in tokens.tolist()]
        expanded = [references[index // per_image] for index in range(len(hypotheses))]
        return torch.as_tensor(np.asarray(scorer.scores(hypotheses, expanded), dtype=np.float32), device=tokens.device)

    def self_critical_loss(self, features: dict[str, Any], batch: dict[str, Any]) -> dict[str, Tensor]:
        """``-mean(log p(w) * (r(sample) - r(greedy)))`` over the sampled words and their EOS:
        ``scst_samples`` captions per image, the image's greedy caption (decoded in eval mode,
        without gradient) as the baseline."""
        references = [self.reward_references(m["references"]) for m in batch["meta"]]
        was_training = self.training
        self.eval()
        with torch.no_grad():
            state, context = self.decoder_inputs(features, batch)
            baseline = greedy(self.decoding_step, state, context, _rows(context), max_length=self.max_length)
        self.train(was_training)
        state, context = self.decoder_inputs(features, batch)
        size = _rows(context)
        drawn = sample(self.decoding_step, state, context, size, max_length=self.max_length, n=self.scst_samples,
                       temperature=self.scst_temperature)
        sampled_reward = self.rewards(drawn.tokens, references, self.scst_samples)
        baseline_reward = self.rewards(baseline.tokens, references, 1)
        advantage = sampled_reward - baseline_reward.repeat_interleave(self.scst_samples)
        mask = caption_mask(drawn.tokens).float()
        loss = -(drawn.log_probs * advantage[:, None] * mask).sum() / mask.sum().clamp(min=1)
        self.last_reward = {"sample": float(sampled_reward.mean()), "greedy": float(baseline_reward.mean())}
        return {"self_critical": loss}


def _rows(context: Any) -> int:
    """The batch size of a decoder context."""
    sizes: list[int] = []
    map_state(context, lambda tensor: sizes.append(tensor.shape[0]) or tensor)
    return sizes[0]


# =============================================================================== CVLNM


class VisualModule(nn.Module):
    """One visual module: region embedding (Linear, LeakyReLU 0.1, dropout) and Up-Down additive
    attention queried by the attention LSTM (release: ``obj_embed`` + ``attention_obj``)."""

    def __init__(self, in_channels: int, rnn_size: int, attention_hidden: int, dropout: float):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_channels, rnn_size), nn.LeakyReLU(0.1), nn.Dropout(dropout))
        self.keys = nn.Linear(rnn_size, attention_hidden)  # precomputed once per image ("ctx2att")
        self.query = nn.Linear(rnn_size, attention_hidden)  # "h2att"
        self.score = nn.Linear(attention_hidden, 1)  # "alpha_net"

    def prepare(self, regions: Tensor) -> tuple[Tensor, Tensor]:
        values = self.embed(regions)
        return values, self.keys(values)

    def forward(self, query: Tensor, values: Tensor, keys: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.score(torch.tanh(keys + self.query(query)[:, None])).squeeze(-1)
        weights = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
        return torch.bmm(weights[:, None], values).squeeze(1), weights


class ModuleController(nn.Module):
    """The module controller (release ``Mod_Cont``): one multi-head attention from a query of
    the attention-LSTM input over the history of soft module embeddings, a position-wise
    feed-forward layer (no residual, no norm, as released), then 4 module logits. The step's
    soft embedding ``softmax(logits) @ module_embeddings`` joins the history."""

    def __init__(self, query_channels: int, width: int, heads: int, num_modules: int = 4, dropout: float = 0.1):
        super().__init__()
        self.module_embeddings = nn.Parameter(torch.randn(num_modules, width) * 0.02)
        self.query = nn.Linear(query_channels, width)
        self.attention = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.feed_forward = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout),
                                          nn.Linear(width, width))
        self.classify = nn.Linear(width, num_modules)

    def forward(self, query_input: Tensor, history: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits (R, 4), soft module embedding (R, width))``."""
        query = self.query(query_input)[:, None]
        attended, _ = self.attention(query, history, history, need_weights=False)
        logits = self.classify(self.feed_forward(attended.squeeze(1)))
        return logits, torch.softmax(logits, dim=-1) @ self.module_embeddings


class CVLNMHead(CaptionHead):
    """CVLNM's decoder (module docstring; sizes of the release's README command as defaults).

    Args:
        vocabulary_size, max_length, beam_size, length_penalty, scst_samples, scst_temperature,
            suppress_unk: as :class:`CaptionHead`.
        rnn_size: width of both LSTMs, the module outputs, the controller and the memory rows (1000).
        word_size: word-embedding width (1000).
        attention_hidden: hidden width of the additive attentions (512).
        memory_size: rows of the linguistic memory (1000).
        memory_init: optional ``.npz`` with key ``memory_cell`` (memory_size × rnn_size), e.g. the
            release's ``kg/kg.npz``; otherwise uniform in [0, 0.01) as the release.
        controller_heads: heads of the controller's attention (8).
        verb_layers, verb_heads, verb_feedforward: the verb module's pre-LN transformer on the
            raw regions (2 layers, 8 heads, feed-forward width = the region width by default).
        fusion: ``concat`` (release ``--combine_att concat``) or ``add`` the weighted modules.
        residual: add the attention LSTM's state to the language LSTM's (``--topdown_res 1``).
        dropout: the language-model dropout (0.5); transformer blocks use 0.1.
        syntax_weight: weight of the syntax loss (0.1, ``sim_lambda``); the model turns the loss
            off after its syntax epochs.
        release_activations: LeakyReLU(0.1) after the global embedding and LeakyReLU + dropout
            after the memory query, as the release (``--relu_mod leaky_relu``, ``mem_fc``); false:
            ReLU there and a plain Linear memory query (the small synthetic config: on its data
            the release's activations cost CIDEr-D and self-critical training then lowers it).
    """

    def __init__(self, vocabulary_size: int = 9487, max_length: int = 16, beam_size: int = 5,
                 length_penalty: float = 0.0, scst_samples: int = 5, scst_temperature: float = 1.0,
                 rnn_size: int = 1000, word_size: int = 1000, attention_hidden: int = 512, memory_size: int = 1000,
                 memory_init: str | None = None, controller_heads: int = 8, verb_layers: int = 2,
                 verb_heads: int = 8, verb_feedforward: int | None = None, fusion: str = "concat",
                 residual: bool = True, dropout: float = 0.5, syntax_weight: float = 0.1, suppress_unk: bool = True,
                 release_activations: bool = True):
        super().__init__(vocabulary_size, max_length=max_length, beam_size=beam_size, length_penalty=length_penalty,
                         scst_samples=scst_samples, scst_temperature=scst_temperature, suppress_unk=suppress_unk)
        if fusion not in ("concat", "add"):
            raise ConfigError(f"CVLNMHead: fusion is 'concat' or 'add', got {fusion!r}")
        self.rnn_size, self.word_size, self.attention_hidden = int(rnn_size), int(word_size), int(attention_hidden)
        self.memory_size, self.memory_init = int(memory_size), memory_init
        self.controller_heads, self.verb_layers, self.verb_heads = int(controller_heads), int(verb_layers), int(verb_heads)
        self.verb_feedforward = verb_feedforward
        self.fusion, self.residual, self.dropout = fusion, bool(residual), float(dropout)
        self.release_activations = bool(release_activations)
        self.syntax_weight = float(syntax_weight)
        self.syntax_active = True  # switched off by the model after its syntax epochs

    def bind(self, feature_channels: list[int], feature_strides: list[int], latent_channels: int | None) -> None:
        channels, rnn, dropout = int(feature_channels[-1]), self.rnn_size, self.dropout
        if channels % self.verb_heads:
            raise ConfigError(f"CVLNMHead: verb_heads ({self.verb_heads}) must divide the feature width ({channels})")
        self.in_channels = channels
        self.word_embed = nn.Sequential(nn.Embedding(self.vocabulary_size + 1, self.word_size), nn.LeakyReLU(0.1),
                                        nn.Dropout(dropout))
        layer = nn.TransformerEncoderLayer(channels, self.verb_heads, dim_feedforward=self.verb_feedforward or channels,
                                           dropout=0.1, batch_first=True, norm_first=True)
        self.verb_encoder = nn.TransformerEncoder(layer, self.verb_layers, norm=nn.LayerNorm(channels),
                                                  enable_nested_tensor=False)
        self.noun = VisualModule(channels, rnn, self.attention_hidden, dropout)
        self.adjective = VisualModule(channels, rnn, self.attention_hidden, dropout)
        self.verb = VisualModule(channels, rnn, self.attention_hidden, dropout)
        self.function_word = nn.Sequential(nn.Linear(rnn, rnn), nn.LeakyReLU(0.1), nn.Dropout(dropout))
        release = self.release_activations
        self.global_embed = nn.Sequential(nn.Linear(3 * rnn, rnn), nn.LeakyReLU(0.1) if release else nn.ReLU(),
                                          nn.Dropout(dropout))
        step_input = rnn + rnn + self.word_size  # [h_language, global feature, word]
        self.attention_lstm = nn.LSTMCell(step_input, rnn)
        self.controller = ModuleController(step_input, rnn, self.controller_heads)
        fused = 4 * rnn if self.fusion == "concat" else rnn
        # release ``mem_fc``: Linear, LeakyReLU(0.1), dropout (``TopDownCore``); else the Linear alone
        self.memory_query = nn.Sequential(nn.Linear(fused + rnn, rnn), nn.LeakyReLU(0.1) if release else nn.Identity(),
                                          nn.Dropout(dropout if release else 0.0))
        self.memory_cell = nn.Parameter(self._initial_memory())
        self.language_lstm = nn.LSTMCell(fused + rnn + rnn, rnn)
        self.output_dropout = nn.Dropout(dropout)
        self.logit = nn.Linear(rnn, self.vocabulary_size + 1)

    def _initial_memory(self) -> Tensor:
        shape = (self.memory_size, self.rnn_size)
        if not self.memory_init:
            return torch.rand(shape) * 0.01
        try:
            with np.load(self.memory_init) as archive:
                if "memory_cell" not in archive:
                    raise ConfigError(f"{self.memory_init}: no 'memory_cell' array (has {', '.join(archive.files)})")
                cell = np.asarray(archive["memory_cell"], dtype=np.float32)
        except (OSError, ValueError) as error:
            raise ConfigError(f"{self.memory_init}: cannot read the memory init file ({error})") from None
        if cell.shape != shape:
            raise ConfigError(f"{self.memory_init}: memory_cell is {cell.shape[0]}x{cell.shape[1]}, the head needs "
                              f"{shape[0]}x{shape[1]} (memory_size x rnn_size)")
        return torch.from_numpy(cell.copy())

    # ------------------------------------------------------------------ decoding interface
    @staticmethod
    def regions_of(features: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """``(regions (B, N, C), mask (B, N))``: region tokens, or a feature map's cells."""
        if "memory" in features:
            return features["memory"], features["memory_mask"]
        grid = features["maps"][-1]  # (B, C, H, W): grid features, every cell real
        regions = grid.flatten(2).transpose(1, 2)
        return regions, torch.ones(regions.shape[:2], dtype=torch.bool, device=regions.device)

    def decoder_inputs(self, features: dict[str, Any], batch: dict[str, Any]) -> tuple[dict, dict]:
        regions, mask = self.regions_of(features)
        regions = regions.float()
        # A row without any real region would make every attention undefined: let it see all.
        mask = mask | ~mask.any(dim=1, keepdim=True)
        relations = self.verb_encoder(regions, src_key_padding_mask=~mask)
        noun_values, noun_keys = self.noun.prepare(regions)
        adjective_values, adjective_keys = self.adjective.prepare(regions)
        verb_values, verb_keys = self.verb.prepare(relations)
        weights = mask.float()[..., None] / mask.float().sum(1)[:, None, None]
        pooled = torch.cat([(values * weights).sum(1) for values in (noun_values, verb_values, adjective_values)], 1)
        context = {"noun": (noun_values, noun_keys), "adjective": (adjective_values, adjective_keys),
                   "verb": (verb_values, verb_keys), "mask": mask, "global": self.global_embed(pooled)}
        size, rnn = regions.shape[0], self.rnn_size
        zeros = regions.new_zeros(size, rnn)
        state = {"attention": (zeros, zeros), "language": (zeros, zeros),
                 "history": regions.new_zeros(size, 1, rnn),  # starts from one zero embedding
                 "module_weights": regions.new_zeros(size, 0, 4),
                 "region_attention": regions.new_zeros(size, 0, 3, regions.shape[1]),
                 "controller_logits": regions.new_zeros(size, 4)}
        return state, context

    def step(self, tokens: Tensor, state: dict, context: dict) -> tuple[Tensor, dict]:
        h_language, c_language = state["language"]
        step_input = torch.cat([h_language, context["global"], self.word_embed(tokens)], 1)
        controller_logits, module_embedding = self.controller(step_input, state["history"])
        module_weights = torch.softmax(controller_logits, dim=1)
        h_attention, c_attention = self.attention_lstm(step_input, state["attention"])
        mask = context["mask"]
        noun, noun_attention = self.noun(h_attention, *context["noun"], mask)
        verb, verb_attention = self.verb(h_attention, *context["verb"], mask)
        adjective, adjective_attention = self.adjective(h_attention, *context["adjective"], mask)
        modules = [self.function_word(c_language), noun, verb, adjective]  # MODULE_NAMES order
        weighted = [module_weights[:, k:k + 1] * vector for k, vector in enumerate(modules)]
        fused = torch.cat(weighted, 1) if self.fusion == "concat" else sum(weighted)
        query = self.memory_query(torch.cat([fused, h_attention], 1))
        read = torch.softmax(query @ self.memory_cell.t(), dim=1) @ self.memory_cell
        h_language, c_language = self.language_lstm(torch.cat([fused, h_attention, read], 1), (h_language, c_language))
        if self.residual:
            h_language, c_language = h_language + h_attention, c_language + c_attention
        log_probs = F.log_softmax(self.logit(self.output_dropout(h_language)), dim=1)
        attention = torch.stack([noun_attention, verb_attention, adjective_attention], 1)
        next_state = {"attention": (h_attention, c_attention), "language": (h_language, c_language),
                      "history": torch.cat([state["history"], module_embedding[:, None]], 1),
                      "module_weights": torch.cat([state["module_weights"], module_weights[:, None]], 1),
                      "region_attention": torch.cat([state["region_attention"], attention[:, None]], 1),
                      "controller_logits": controller_logits}
        return log_probs, next_state

    def step_extras(self, state: dict) -> dict[str, Tensor]:
        return {"controller_logits": state["controller_logits"]}

    def generation_extras(self, state: dict) -> dict[str, Tensor]:
        return {"module_weights": state["module_weights"], "region_attention": state["region_attention"]}

    # ------------------------------------------------------------------ losses and outputs
    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        losses = super().loss(outputs, batch)
        if losses and isinstance(batch.get("tags"), Tensor) and "controller_logits" in outputs:
            losses["syntax"] = (self.syntax_weight if self.syntax_active else 0.0) * self.syntax_loss(
                outputs["controller_logits"], batch)
        return losses

    def syntax_loss(self, controller_logits: Tensor, batch: dict[str, Any]) -> Tensor:
        """NLL of the controller's module choice against each target token's part-of-speech
        class (``tags``; -1 ignored), the EOS step counted as a function word (the release
        pads its ``tags`` with class 0 and masks words + EOS)."""
        _, targets, mask = self.caption_rows(batch)
        tags = batch["tags"].long().reshape(targets.shape[0], -1)
        tags = torch.cat([tags, tags.new_full((tags.shape[0], 1), -1)], 1)
        tags = torch.where((targets == EOS) & mask, torch.zeros_like(tags), tags)
        counted = mask & (tags >= 0)
        nll = -F.log_softmax(controller_logits, dim=-1).gather(2, tags.clamp(min=0)[..., None]).squeeze(2)
        return (nll * counted).sum() / counted.sum().clamp(min=1)

    def predict(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Each caption with, per word, the module the controller weighted most (``modules``)
        and the region attention of the visual module weighted most (``region_attention``: one
        list per word over the image's real regions, or over the grid cells row by row)."""
        records = super().predict(outputs, batch)
        if "module_weights" not in outputs:
            return records
        weights = outputs["module_weights"]
        chosen = weights.argmax(-1).tolist()
        visual = weights[..., 1:].argmax(-1)  # noun, verb, adjective
        attention = outputs["region_attention"].gather(
            2, visual[..., None, None].expand(-1, -1, 1, outputs["region_attention"].shape[-1])).squeeze(2)
        region_mask = batch.get("region_mask")
        for index, (record, modules) in enumerate(zip(records, chosen)):
            words = len(record["tokens"])
            record["modules"] = [MODULE_NAMES[k] for k in modules[:words]]
            maps = attention[index, :words]
            if isinstance(region_mask, Tensor):
                maps = maps[:, region_mask[index].bool()]
            record["region_attention"] = [[round(float(v), 5) for v in row] for row in maps.tolist()]
        return records


__all__ = ["CaptionHead", "CVLNMHead", "MODULE_NAMES", "REWARD_END", "ModuleController", "VisualModule", "words_of"]
