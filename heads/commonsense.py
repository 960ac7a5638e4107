"""HybridNet's decoders: a video caption and three commonsense sentences (intention, effect,
attribute) from one set of video tokens (Yu et al., "Hybrid Reasoning Network for Video-based
Commonsense Captioning", ACM MM 2021, arXiv 2108.02365, Sec. 3; official code
github.com/yuweijiang/HybridNet, ``model/Model.py``, ``model/Decoder.py``,
``model/transformer/{Layers,SubLayers,Modules}.py``).

**Multi-commonsense learning** (paper Sec. 3.2): four transformer decoders trained jointly, the
caption decoder over the video tokens and one decoder per commonsense type over the video
tokens *and* the caption decoder's hidden states (teacher-forced on the ground-truth caption in
training and in the completion task, on the decoded caption in the generation task). The
caption has its own vocabulary and bias-free output layer; the three commonsense decoders share
one vocabulary and one output layer (``cms_word_prj``), each with its own word embedding.

**Word-level reasoning** (paper Sec. 3.3), in each decoder:

- :class:`RelationalMemory`: three 512-d slots updated word by word from the history of input
  words (attention of the slots over [slots; word], an MLP, input and forget gates); its state
  after each word, flattened to 3 x 512, is that position's memory;
- :class:`MemoryRoutedAttention` (MMHA), for self- and cross-attention: the ordinary logits are
  mixed with logits queried from the memory, after a 3 x 3 convolution over those memory logits
  ("CNN routing") shifted one position so no query sees a later one, with the release's fixed
  weights (routing 0.1, memory 0.4, previous layer 0.1).

**The release's quirk, and what we do with it**: the release mixes the previous layer's
attention *probabilities* (after softmax and dropout) into the current layer's *logits*. The
paper describes mixing attention maps; probabilities and logits live on different scales, so
the mix mostly shrinks the current logits by 0.9. ``previous_attention`` chooses:
``probabilities`` (default, the release's computation, so released weights behave as trained),
``logits`` (the previous layer's pre-softmax logits, the paper's evident intent) or ``none``.

**Loss** (release ``utils/utils.py``): label-smoothed cross-entropy (epsilon 0.1 spread over
the other V - 1 classes) of each output, summed over its real tokens and divided by their
number; the four terms are added with equal weights.

Token convention: as :mod:`polyvision.models.layers.decoding` (id 0 is padding, the BOS input
and EOS; word ``i + 1`` is ``vocabulary[i]``); the release's PAD/UNK/BOS/EOS ids 0-3 are only a
different numbering of the same tokens.

Batch keys read (``V2CDataModule``): ``captions`` (B, 1, L) caption ids, ``intention`` /
``effect`` / ``attribute`` (B, K, L) commonsense ids with ``<type>_mask`` (B, K), and ``meta``
with ``video_id`` and ``references`` for the metrics.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection

from polyvision.errors import ConfigError
from polyvision.heads.base import Head
from polyvision.heads.captioning import words_of
from polyvision.models.layers.decoding import EOS, beam_search, caption_mask, greedy, repeat_state
from polyvision.models.layers.positional import sinusoidal_table

CMS_TYPES = ("intention", "effect", "attribute")
OUTPUTS = ("caption", *CMS_TYPES)
TASKS = ("completion", "generation")
PREVIOUS_ATTENTION = ("probabilities", "logits", "none")
# The release's fixed mixing weights (``Modules.py``): routed vs plain memory logits, memory vs
# ordinary logits, previous layer vs this one.
ROUTING_WEIGHT, MEMORY_WEIGHT, PREVIOUS_WEIGHT = 0.1, 0.4, 0.1
# Tokens decoded at most per output: the release's decoding loops (``Translator.py``: the caption
# for 28 steps, a commonsense type for its maximum length less 2: 19, 24, 6).
RELEASE_MAX_LENGTHS = {"caption": 28, "intention": 19, "effect": 24, "attribute": 6}


def label_smoothed_loss(log_probs: Tensor, targets: Tensor, mask: Tensor, epsilon: float) -> Tensor:
    """Cross-entropy against ``1 - epsilon`` on the target and ``epsilon / (V - 1)`` on every
    other class, summed over the ``mask``ed tokens and divided by their number."""
    classes = log_probs.shape[-1]
    target_log_probs = log_probs.gather(-1, targets[..., None]).squeeze(-1)
    if epsilon > 0:
        other = (log_probs.sum(-1) - target_log_probs) / (classes - 1)
        nll = -(1.0 - epsilon) * target_log_probs - epsilon * other
    else:
        nll = -target_log_probs
    mask = mask.to(nll.dtype)
    return (nll * mask).sum() / mask.sum().clamp(min=1)


def shifted_rows(tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(inputs, targets, mask)`` of caption rows ``(R, L)``: the decoder reads
    ``[0, w1..wL]`` and answers ``[w1..wL, 0]``, the words and the first EOS counted; an
    all-zero row (a missing sentence) counts nothing."""
    zeros = tokens.new_zeros(tokens.shape[0], 1)
    inputs, targets = torch.cat([zeros, tokens], 1), torch.cat([tokens, zeros], 1)
    mask = caption_mask(targets) & (tokens[:, :1] != EOS)
    return inputs, targets, mask


class RelationalMemory(nn.Module):
    """The word-history memory (release ``RelationalMemory``; the R2Gen design, Chen et al.,
    EMNLP 2020): ``slots`` rows of ``dim``, starting as identity rows padded with zeros, and
    updated at every position t from the input x_t::

        M~ = M + MHA(M, [M; x_t]);  M~ = M~ + MLP(M~)
        i, f = sigmoid(W x_t + U tanh(M))          (input and forget gates)
        M <- i * tanh(M~) + f * M

    The output at t is the updated memory, flattened: ``(B, T, slots * dim)``."""

    def __init__(self, dim: int = 512, slots: int = 3, heads: int = 8, dropout: float = 0.1):
        super().__init__()
        self.dim, self.slots = int(dim), int(slots)
        self.attention = nn.MultiheadAttention(self.dim, heads, dropout=dropout, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(self.dim, self.dim), nn.ReLU(), nn.Linear(self.dim, self.dim), nn.ReLU())
        self.input_gates = nn.Linear(self.dim, 2 * self.dim)
        self.memory_gates = nn.Linear(self.dim, 2 * self.dim)
        initial = torch.zeros(self.slots, self.dim)
        initial[:, :self.slots] = torch.eye(self.slots)
        self.register_buffer("initial", initial, persistent=False)

    def forward(self, inputs: Tensor) -> Tensor:
        memory = self.initial.expand(inputs.shape[0], -1, -1)
        outputs = []
        for t in range(inputs.shape[1]):
            word = inputs[:, t:t + 1]
            keys = torch.cat([memory, word], 1)
            attended, _ = self.attention(memory, keys, keys, need_weights=False)
            candidate = memory + attended
            candidate = candidate + self.mlp(candidate)
            input_gate, forget_gate = (self.input_gates(word) + self.memory_gates(torch.tanh(memory))).chunk(2, -1)
            memory = torch.sigmoid(input_gate) * torch.tanh(candidate) + torch.sigmoid(forget_gate) * memory
            outputs.append(memory.reshape(memory.shape[0], -1))
        return torch.stack(outputs, 1)


class MemoryRoutedAttention(nn.Module):
    """MMHA (release ``MultiHeadAttention_rmatt_ev_cnn`` + ``ScaledDotProductAttention_rmatt_ev_cnn``):
    multi-head attention whose logits are mixed with memory-queried logits after CNN routing
    (module docstring), then softmax, dropout, the output projection, dropout, a residual and
    post-LayerNorm.

    Args:
        dim, heads, head_dim: model width, heads, per-head key/value width (512, 8, 64).
        memory_dim: width of the relational memory's output (3 x 512).
        causal_shift: ``True`` for self-attention (routed logits shifted down and right: query
            t reads routing of queries <= t and keys <= t), ``False`` for cross-attention
            (shifted down only).
        previous_attention: what of the previous layer is mixed in (module docstring).
    """

    def __init__(self, dim: int, heads: int, head_dim: int, memory_dim: int, causal_shift: bool,
                 dropout: float = 0.1, previous_attention: str = "probabilities"):
        super().__init__()
        self.heads, self.head_dim = int(heads), int(head_dim)
        self.causal_shift = bool(causal_shift)
        self.previous_attention = previous_attention
        inner = self.heads * self.head_dim
        self.query, self.key, self.value = nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(dim, inner)
        self.memory_query = nn.Linear(memory_dim, inner)  # release ``w_qs_att``
        self.route = nn.Conv2d(self.heads, self.heads, 3, padding=1, bias=False)
        self.output = nn.Linear(inner, dim)
        self.attention_dropout, self.output_dropout = nn.Dropout(dropout), nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        # The release's initialisation (``SubLayers.py``): projections N(0, 2 / (d + d_k)), output Xavier.
        for projection in (self.query, self.key, self.value):
            nn.init.normal_(projection.weight, std=math.sqrt(2.0 / (dim + self.head_dim)))
        nn.init.xavier_normal_(self.output.weight)

    def split(self, x: Tensor) -> Tensor:
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def routed(self, memory_logits: Tensor, mask: Tensor) -> Tensor:
        """The memory logits, CNN-routed and shifted; the first row (and column, for
        self-attention) keeps the unrouted value."""
        conv = F.relu(self.route(memory_logits.masked_fill(~mask, 0.0)))
        shifted = memory_logits.clone()
        if self.causal_shift:
            shifted[:, :, 1:, 1:] = conv[:, :, :-1, :-1]
        else:
            shifted[:, :, 1:, :] = conv[:, :, :-1, :]
        return shifted

    def forward(self, queries: Tensor, keys: Tensor, memory: Tensor, mask: Tensor,
                previous: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``queries`` (B, T, D), ``keys`` (B, S, D), ``memory`` (B, T, memory_dim), ``mask``
        (B or 1, 1, T, S) True where attention is allowed, ``previous`` the previous layer's
        map of the same kind. Returns ``(output (B, T, D), this layer's map for the next)``."""
        scale = 1.0 / math.sqrt(self.head_dim)
        q, k, v = self.split(self.query(queries)), self.split(self.key(keys)), self.split(self.value(keys))
        logits = q @ k.transpose(-1, -2) * scale
        memory_logits = self.split(self.memory_query(memory)) @ k.transpose(-1, -2) * scale
        mask = mask.expand(logits.shape[0], self.heads, -1, -1)
        routed = ROUTING_WEIGHT * self.routed(memory_logits, mask) + (1 - ROUTING_WEIGHT) * memory_logits
        logits = MEMORY_WEIGHT * routed + (1 - MEMORY_WEIGHT) * logits
        if previous is not None:
            logits = PREVIOUS_WEIGHT * previous + (1 - PREVIOUS_WEIGHT) * logits
        masked = logits.masked_fill(~mask, float("-inf"))
        weights = self.attention_dropout(torch.softmax(masked, dim=-1))
        attended = (weights @ v).transpose(1, 2).reshape(queries.shape[0], queries.shape[1], -1)
        output = self.norm(self.output_dropout(self.output(attended)) + queries)
        handed_on = weights if self.previous_attention == "probabilities" else logits
        return output, handed_on


class MemoryDecoderLayer(nn.Module):
    """Self-MMHA, cross-MMHA over the context, and the position-wise feed-forward block
    (release ``PositionwiseFeedForward``: 1 x 1 convolutions, i.e. Linear layers, ReLU, dropout,
    residual, post-LayerNorm)."""

    def __init__(self, dim: int, heads: int, head_dim: int, inner: int, memory_dim: int, dropout: float,
                 previous_attention: str):
        super().__init__()
        self.self_attention = MemoryRoutedAttention(dim, heads, head_dim, memory_dim, True, dropout, previous_attention)
        self.cross_attention = MemoryRoutedAttention(dim, heads, head_dim, memory_dim, False, dropout,
                                                     previous_attention)
        self.feed_forward = nn.Sequential(nn.Linear(dim, inner), nn.ReLU(), nn.Linear(inner, dim), nn.Dropout(dropout))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, context: Tensor, memory: Tensor, self_mask: Tensor, cross_mask: Tensor,
                previous: tuple[Tensor | None, Tensor | None]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        x, self_map = self.self_attention(x, x, memory, self_mask, previous[0])
        x, cross_map = self.cross_attention(x, context, memory, cross_mask, previous[1])
        return self.norm(self.feed_forward(x) + x), (self_map, cross_map)


class MemoryTransformerDecoder(nn.Module):
    """One HybridNet decoder (release ``Decoder`` with ``RelationalMemory``) after its word
    embedding: the sinusoidal position added (position t reads table row t + 1, as the
    release's, whose row 0 is its padding row), the relational memory over that history, and
    ``layers`` memory decoder layers. ``forward(words (R, T, D) embedded, context (R, S, D),
    context_mask (R, S))`` returns the hidden states ``(R, T, D)``; position t depends on
    words <= t only."""

    def __init__(self, dim: int = 512, layers: int = 6, heads: int = 8, head_dim: int = 64,
                 inner: int = 1024, memory_slots: int = 3, dropout: float = 0.1,
                 previous_attention: str = "probabilities", max_positions: int = 64):
        super().__init__()
        self.previous_attention = previous_attention
        self.register_buffer("positions", sinusoidal_table(max_positions + 1, dim)[1:], persistent=False)
        self.memory = RelationalMemory(dim, memory_slots, heads, dropout)
        self.layers = nn.ModuleList(MemoryDecoderLayer(dim, heads, head_dim, inner, memory_slots * dim, dropout,
                                                       previous_attention) for _ in range(layers))

    def forward(self, words: Tensor, context: Tensor, context_mask: Tensor) -> Tensor:
        length = words.shape[1]
        if length > self.positions.shape[0]:
            self.positions = sinusoidal_table(length + 1, self.positions.shape[1], device=words.device)[1:]
        x = words + self.positions[:length]
        memory = self.memory(x)
        self_mask = torch.ones(length, length, dtype=torch.bool, device=words.device).tril()[None, None]
        cross_mask = context_mask[:, None, None, :]
        previous: tuple[Tensor | None, Tensor | None] = (None, None)
        for layer in self.layers:
            x, maps = layer(x, context, memory, self_mask, cross_mask, previous)
            previous = maps if self.previous_attention != "none" else (None, None)
        return x


class HybridNetHead(Head):
    """HybridNet's four decoders (module docstring).

    Args:
        vocabulary_size: caption words (ids 1..V); ``None`` takes the data's vocabulary when the
            model is set up (or the checkpoint's), a number is checked against it.
        cms_vocabulary_size: commonsense words, shared by the three types; the same.
        dim, layers, heads, head_dim, inner, memory_slots, dropout: decoder sizes (release:
            512, 6, 8, 64, 1024, 3, 0.1).
        previous_attention: ``probabilities`` (release), ``logits`` or ``none`` (module docstring).
        label_smoothing: epsilon of the loss (0.1).
        beam_size: beams when decoding (2: V2C's protocol).
        max_lengths: tokens decoded per output, EOS included (release: caption 28, intention 19,
            effect 24, attribute 6).
        tasks: what evaluation decodes: ``completion`` (each commonsense type from the video and
            the ground-truth caption) and/or ``generation`` (the caption, then each type from it).
        protocol, leading_space: how the metrics score (``CaptionMetrics``; ``v2c`` is V2C's:
            raw strings, no PTB tokenizer, the hypothesis' leading space).
        suppress_unk: never generate the vocabularies' ``UNK`` word.
    """

    def __init__(self, vocabulary_size: int | None = None, cms_vocabulary_size: int | None = None, dim: int = 512, layers: int = 6,
                 heads: int = 8, head_dim: int = 64, inner: int = 1024, memory_slots: int = 3, dropout: float = 0.1,
                 previous_attention: str = "probabilities", label_smoothing: float = 0.1, beam_size: int = 2,
                 max_lengths: dict[str, int] | None = None, tasks: tuple[str, ...] | list[str] = TASKS,
                 protocol: str = "v2c", leading_space: bool = True, suppress_unk: bool = True):
        super().__init__()
        if previous_attention not in PREVIOUS_ATTENTION:
            raise ConfigError(f"HybridNetHead: previous_attention is one of {', '.join(PREVIOUS_ATTENTION)}, "
                              f"got {previous_attention!r}")
        unknown = [task for task in tasks if task not in TASKS]
        if unknown:
            raise ConfigError(f"HybridNetHead: tasks are {' and '.join(TASKS)}, got {unknown[0]!r}")
        lengths = {**RELEASE_MAX_LENGTHS, **(max_lengths or {})}
        if set(lengths) != set(OUTPUTS):
            raise ConfigError(f"HybridNetHead: max_lengths has keys {', '.join(OUTPUTS)}, got {sorted(lengths)}")
        sizes = [size for size in (vocabulary_size, cms_vocabulary_size) if size is not None]
        if any(int(size) < 1 for size in sizes):
            raise ConfigError("HybridNetHead: vocabulary sizes must be positive")
        self.vocabulary_size = None if vocabulary_size is None else int(vocabulary_size)
        self.cms_vocabulary_size = None if cms_vocabulary_size is None else int(cms_vocabulary_size)
        self.dim, self.layers, self.heads, self.head_dim = int(dim), int(layers), int(heads), int(head_dim)
        self.inner, self.memory_slots, self.dropout = int(inner), int(memory_slots), float(dropout)
        self.previous_attention = previous_attention
        self.label_smoothing = float(label_smoothing)
        self.beam_size = int(beam_size)
        self.max_lengths = {key: int(value) for key, value in lengths.items()}
        self.tasks = tuple(tasks)
        self.protocol, self.leading_space = protocol, bool(leading_space)
        self.suppress_unk = bool(suppress_unk)
        self.vocabulary: list[str] | None = None
        self.cms_vocabulary: list[str] | None = None
        self.unk_ids: dict[str, int | None] = {"caption": None, "cms": None}

    def bind(self, feature_channels: list[int], feature_strides: list[int], latent_channels: int | None) -> None:
        width = int(latent_channels or feature_channels[-1])
        self.context_projection = nn.Linear(width, self.dim) if width != self.dim else nn.Identity()
        positions = max(self.max_lengths.values()) + 64

        def decoder() -> MemoryTransformerDecoder:
            return MemoryTransformerDecoder(self.dim, self.layers, self.heads, self.head_dim, self.inner,
                                            self.memory_slots, self.dropout, self.previous_attention, positions)

        self.caption_decoder = decoder()
        self.cms_decoders = nn.ModuleDict({kind: decoder() for kind in CMS_TYPES})
        if self.vocabulary_size is not None:
            self.build_caption_words(self.vocabulary_size)
        if self.cms_vocabulary_size is not None:
            self.build_cms_words(self.cms_vocabulary_size)

    def build_caption_words(self, size: int) -> None:
        """The caption's word embedding and bias-free output layer (``cap_word_prj``, Xavier)."""
        self.vocabulary_size = int(size)
        self.caption_embedding = nn.Embedding(self.vocabulary_size + 1, self.dim)
        self.caption_projection = nn.Linear(self.dim, self.vocabulary_size + 1, bias=False)
        nn.init.xavier_normal_(self.caption_projection.weight)

    def build_cms_words(self, size: int) -> None:
        """One word embedding per commonsense type and the shared output layer (``cms_word_prj``)."""
        self.cms_vocabulary_size = int(size)
        self.cms_embeddings = nn.ModuleDict({kind: nn.Embedding(self.cms_vocabulary_size + 1, self.dim)
                                             for kind in CMS_TYPES})
        self.cms_projection = nn.Linear(self.dim, self.cms_vocabulary_size + 1, bias=False)
        nn.init.xavier_normal_(self.cms_projection.weight)

    def check_built(self) -> None:
        if self.vocabulary_size is None or self.cms_vocabulary_size is None:
            raise ConfigError("HybridNetHead: the vocabulary sizes are not known yet: set vocabulary_size and "
                              "cms_vocabulary_size, or run the model with a V2C datamodule (fit, test) or a "
                              "checkpoint that records the vocabularies")

    # ------------------------------------------------------------------ vocabularies
    def set_vocabularies(self, words: list[str] | None, cms_words: list[str] | None, where: str) -> None:
        """The data's caption and commonsense words: they size the head's word layers when it
        was built without sizes; a size other than the head's is one error."""
        if words is not None and self.vocabulary_size is None:
            self.build_caption_words(len(words))
        if cms_words is not None and self.cms_vocabulary_size is None:
            self.build_cms_words(len(cms_words))
        for name, given, size in (("vocabulary_size", words, self.vocabulary_size),
                                  ("cms_vocabulary_size", cms_words, self.cms_vocabulary_size)):
            if given is not None and len(given) != size:
                raise ConfigError(f"HybridNetHead: {name} is {size} but {where} has {len(given)} words "
                                  f"(set the head's {name} to {len(given)})")
        if words is not None:
            self.vocabulary = list(words)
            self.unk_ids["caption"] = self.vocabulary.index("UNK") + 1 if "UNK" in self.vocabulary else None
        if cms_words is not None:
            self.cms_vocabulary = list(cms_words)
            self.unk_ids["cms"] = self.cms_vocabulary.index("UNK") + 1 if "UNK" in self.cms_vocabulary else None

    # ------------------------------------------------------------------ the decoders
    def video_context(self, features: dict[str, Any]) -> Tensor:
        """The video tokens ``(B, S, dim)``: the neck's latents, else the backbone's token set."""
        self.check_built()
        if isinstance(features.get("latents"), Tensor):
            tokens = features["latents"].transpose(1, 2)
        elif isinstance(features.get("memory"), Tensor):
            tokens = features["memory"]
        else:
            raise ConfigError("HybridNetHead reads video tokens: give the model a neck (HybridNet's "
                              "VideoModalityEncoder) or a backbone that returns a token set (B, N, C)")
        return self.context_projection(tokens.float())

    def caption_log_probs(self, inputs: Tensor, video: Tensor, last: bool = False) -> tuple[Tensor, Tensor]:
        """Log-probs of every position (of the last one only with ``last``, as decoding needs)
        and the hidden states."""
        hidden = self.caption_decoder(self.caption_embedding(inputs), video,
                                      video.new_ones(video.shape[:2], dtype=torch.bool))
        return F.log_softmax(self.caption_projection(hidden[:, -1:] if last else hidden), -1), hidden

    def cms_log_probs(self, kind: str, inputs: Tensor, context: Tensor, context_mask: Tensor,
                      last: bool = False) -> Tensor:
        hidden = self.cms_decoders[kind](self.cms_embeddings[kind](inputs), context, context_mask)
        return F.log_softmax(self.cms_projection(hidden[:, -1:] if last else hidden), -1)

    @staticmethod
    def cms_context(video: Tensor, caption_hidden: Tensor, caption_real: Tensor) -> tuple[Tensor, Tensor]:
        """What a commonsense decoder attends to: the video tokens (never masked) and the
        caption decoder's states on the caption's real positions (BOS and words)."""
        mask = torch.cat([video.new_ones(video.shape[:2], dtype=torch.bool), caption_real], 1)
        return torch.cat([video, caption_hidden], 1), mask

    @staticmethod
    def cms_rows(batch: dict[str, Any], kind: str) -> Tensor:
        rows = batch[kind].long()
        mask = batch.get(f"{kind}_mask")
        if isinstance(mask, Tensor):
            rows = rows * mask.to(rows.device)[..., None].long()  # rows marked absent count nothing
        return rows

    # ------------------------------------------------------------------ teacher forcing
    def forward(self, features: dict[str, Any], batch: dict[str, Any]) -> dict[str, Tensor]:
        if not isinstance(batch.get("captions"), Tensor):
            return {}
        video = self.video_context(features)
        inputs, targets, mask = shifted_rows(batch["captions"][:, 0].long())
        caption, hidden = self.caption_log_probs(inputs, video)
        outputs = {"caption_log_probs": caption, "caption_targets": targets, "caption_mask": mask}
        context, context_mask = self.cms_context(video, hidden, mask)
        for kind in CMS_TYPES:
            if not isinstance(batch.get(kind), Tensor):
                continue
            rows = self.cms_rows(batch, kind)
            per_entry = rows.shape[1]
            kind_inputs, kind_targets, kind_mask = shifted_rows(rows.reshape(-1, rows.shape[-1]))
            outputs[f"{kind}_log_probs"] = self.cms_log_probs(
                kind, kind_inputs, repeat_state(context, per_entry), repeat_state(context_mask, per_entry))
            outputs[f"{kind}_targets"], outputs[f"{kind}_mask"] = kind_targets, kind_mask
        return outputs

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        return {name: label_smoothed_loss(outputs[f"{name}_log_probs"], outputs[f"{name}_targets"],
                                          outputs[f"{name}_mask"], self.label_smoothing)
                for name in OUTPUTS if f"{name}_log_probs" in outputs}

    # ------------------------------------------------------------------ decoding
    def _search(self, step, context: Any, rows: int, max_length: int) -> Tensor:
        if self.beam_size > 1:
            return beam_search(step, None, context, rows, beam_size=self.beam_size, max_length=max_length).tokens
        return greedy(step, None, context, rows, max_length=max_length).tokens

    def _step(self, log_probs_of, unk: int | None):
        """A ``decoding`` step that re-reads the whole prefix (the state is the tokens so far:
        the memory and MMHA's routing make position t a function of tokens <= t)."""

        def step(tokens: Tensor, state: Tensor | None, context: Any) -> tuple[Tensor, Tensor]:
            prefix = tokens[:, None] if state is None else torch.cat([state, tokens[:, None]], 1)
            log_probs = log_probs_of(prefix, context)[:, -1]
            if self.suppress_unk and unk is not None:
                log_probs = log_probs.index_fill(1, torch.tensor([unk], device=log_probs.device), float("-inf"))
            return log_probs, prefix

        return step

    def decode_caption(self, video: Tensor) -> Tensor:
        step = self._step(lambda prefix, context: self.caption_log_probs(prefix, context, last=True)[0],
                          self.unk_ids["caption"])
        return self._search(step, video, video.shape[0], self.max_lengths["caption"])

    def decode_cms(self, kind: str, video: Tensor, caption_tokens: Tensor) -> Tensor:
        """One ``kind`` sentence per row, conditioned on the video and ``caption_tokens``
        ``(B, L)`` (0 after the end)."""
        inputs, _, mask = shifted_rows(caption_tokens)
        _, hidden = self.caption_log_probs(inputs, video)
        context = self.cms_context(video, hidden, mask | (torch.arange(mask.shape[1], device=mask.device) == 0))
        step = self._step(lambda prefix, ctx: self.cms_log_probs(kind, prefix, ctx[0], ctx[1], last=True),
                          self.unk_ids["cms"])
        return self._search(step, context, video.shape[0], self.max_lengths[kind])

    def generate(self, features: dict[str, Any], batch: dict[str, Any]) -> dict[str, Tensor]:
        """``caption`` tokens decoded from the video; per type ``generation_<type>`` (from the
        decoded caption) and, when the batch has ground-truth captions and ``completion`` is
        a task, ``completion_<type>`` (from the ground-truth caption)."""
        video = self.video_context(features)
        outputs: dict[str, Tensor] = {}
        if "generation" in self.tasks or not isinstance(batch.get("captions"), Tensor):
            caption = self.decode_caption(video)
            outputs["caption"] = caption
            for kind in CMS_TYPES:
                outputs[f"generation_{kind}"] = self.decode_cms(kind, video, caption)
        if "completion" in self.tasks and isinstance(batch.get("captions"), Tensor):
            truth = batch["captions"][:, 0].long()
            for kind in CMS_TYPES:
                outputs[f"completion_{kind}"] = self.decode_cms(kind, video, truth)
        return outputs

    def words(self, tokens: Tensor, cms: bool) -> list[str]:
        vocabulary = self.cms_vocabulary if cms else self.vocabulary
        return [" ".join(words_of(row, vocabulary)) for row in tokens.tolist()]

    def predict(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Per sample ``caption`` and ``intention`` / ``effect`` / ``attribute`` (generation), and
        ``completion`` {type: sentence} when the ground-truth caption was given."""
        size = next(iter(outputs.values())).shape[0]
        records: list[dict[str, Any]] = [{} for _ in range(size)]
        if "caption" in outputs:
            for record, caption in zip(records, self.words(outputs["caption"], cms=False)):
                record["caption"] = caption
        for kind in CMS_TYPES:
            for task in TASKS:
                if f"{task}_{kind}" not in outputs:
                    continue
                for record, sentence in zip(records, self.words(outputs[f"{task}_{kind}"], cms=True)):
                    if task == "generation":
                        record[kind] = sentence
                    else:
                        record.setdefault("completion", {})[kind] = sentence
        return records

    # ------------------------------------------------------------------ metrics
    def metrics(self) -> MetricCollection:
        from polyvision.metrics.captioning import CaptionMetrics

        def scorer() -> CaptionMetrics:
            return CaptionMetrics(protocol=self.protocol, leading_space=self.leading_space)

        names = ["caption"] if "generation" in self.tasks else []
        names += [f"{task}_{kind}" for task in self.tasks for kind in CMS_TYPES]
        return MetricCollection({name: scorer() for name in names})

    def metric_inputs(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, tuple] | None:
        """Completion: one sentence per caption entry against that entry's references of the
        type. Generation: the decoded caption + sentence against every (caption + sentence)
        pair of the video, once per video (``video_id``); the caption alone against the
        video's captions, once per video."""
        meta = batch.get("meta") or []
        if not meta or not all(isinstance(m, dict) and m.get("references") for m in meta):
            return None
        videos = [int(m["video_id"]) for m in meta]
        inputs: dict[str, tuple] = {}
        captions = self.words(outputs["caption"], cms=False) if "caption" in outputs else None
        if captions is not None:
            inputs["caption"] = (captions, [list(m["references"]["caption"]) for m in meta], videos)
        for kind in CMS_TYPES:
            if f"completion_{kind}" in outputs:
                kept = [i for i, m in enumerate(meta) if m["references"].get(kind)]
                sentences = self.words(outputs[f"completion_{kind}"], cms=True)
                if kept:
                    inputs[f"completion_{kind}"] = ([sentences[i] for i in kept],
                                                    [list(meta[i]["references"][kind]) for i in kept])
            if f"generation_{kind}" in outputs and captions is not None:
                key = f"generation_{kind}"
                kept = [i for i, m in enumerate(meta) if m["references"].get(key)]
                sentences = self.words(outputs[key], cms=True)
                if kept:
                    inputs[key] = ([f"{captions[i]} {sentences[i]}" for i in kept],
                                   [list(meta[i]["references"][key]) for i in kept], [videos[i] for i in kept])
        return inputs


__all__ = ["CMS_TYPES", "HybridNetHead", "MemoryDecoderLayer", "MemoryRoutedAttention", "MemoryTransformerDecoder",
           "RelationalMemory", "label_smoothed_loss", "shifted_rows"]
