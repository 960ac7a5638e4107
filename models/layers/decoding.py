"""Autoregressive decoding shared by the caption decoders: greedy, sampling and batched beam search.

A decoder takes part by offering one step function::

    step(tokens (B*,), state, context) -> (log_probs (B*, V+1), state)

``tokens`` are the previous words (id 0 is the BOS input at the first step), ``state`` what the
decoder carries from step to step (LSTM states, a controller's history, a transformer's past
tokens or key/value cache) and ``context`` what stays fixed for a caption (region or video
memory, its mask, its precomputed attention keys). Both are a tensor, or a tuple, list or dict
of tensors (nested freely, ``None`` allowed) with the batch axis first. The search functions
repeat ``context`` and ``state`` per beam or sample once (rows ``b * k ... b * k + k - 1``
belong to image ``b``) and re-order only ``state`` when beams change origin: a beam never
leaves its image, so ``context`` never needs re-ordering.

Token convention (cocotalk, as self-critical.pytorch and the CVLNM release use it): id 0 is
padding, the BOS input and EOS. A caption ends at its first 0; a finished caption carries on
with EOS at no cost (log-prob 0), so it keeps its score and can still be ranked against the
others. Outputs are ``(B, max_length)`` word ids, 0 after the end.

Beam search is batched (no Python loop over images, one over time steps), ranks by the sum of
log-probs as the CVLNM release and self-critical.pytorch do by default, and optionally divides
by the GNMT length penalty ``((5 + length) / 6) ** alpha`` (Wu et al. 2016, eq. 14;
self-critical.pytorch ``captioning/utils/misc.py`` ``length_wu``), where ``length`` counts
the words and the EOS of a finished caption, the steps so far of an open one.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

EOS = 0

StepFunction = Callable[[Tensor, Any, Any], tuple[Tensor, Any]]


class Decoded(NamedTuple):
    """Decoding results: ``tokens`` (R, T) word ids, 0 after the end; ``log_probs`` (R, T) the
    log-prob of each chosen token (0 after the end; differentiable for sampling);
    ``scores`` (R,) the ranking score (sum of log-probs, length-penalised for beam search);
    ``state`` the decoder state of each returned row after the last step (for decoders that
    record per-step extras, e.g. attention weights, in their state). R = B for greedy and beam
    search (the best beam of each image), B * n for ``sample(n=...)``, rows of one image together."""

    tokens: Tensor
    log_probs: Tensor
    scores: Tensor
    state: Any


def map_state(state: Any, function: Callable[[Tensor], Tensor]) -> Any:
    """``function`` applied to every tensor of a nested state (tensor, tuple, list, dict, None)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return function(state)
    if isinstance(state, dict):
        return {key: map_state(value, function) for key, value in state.items()}
    if isinstance(state, (tuple, list)):
        return type(state)(map_state(value, function) for value in state)
    return state  # plain values (sizes, flags) pass unchanged


def reorder_state(state: Any, indices: Tensor) -> Any:
    """Rows ``indices`` (along the batch axis) of every tensor of a nested state."""
    return map_state(state, lambda tensor: tensor.index_select(0, indices))


def repeat_state(state: Any, times: int) -> Any:
    """Each row repeated ``times`` times in place (row b -> rows b*times .. b*times+times-1)."""
    if times == 1:
        return state
    return map_state(state, lambda tensor: tensor.repeat_interleave(times, dim=0))


def finished_log_probs(log_probs: Tensor, finished: Tensor) -> Tensor:
    """Rows of finished captions replaced by 'EOS at no cost': 0 for id 0, -inf elsewhere."""
    if not bool(finished.any()):
        return log_probs
    eos_only = torch.full_like(log_probs, float("-inf"))
    eos_only[:, EOS] = 0.0
    return torch.where(finished[:, None], eos_only, log_probs)


def length_penalty(lengths: Tensor, alpha: float) -> Tensor:
    """GNMT's ``((5 + length) / 6) ** alpha``; 1 when ``alpha`` is 0 (plain sum of log-probs)."""
    if alpha == 0:
        return torch.ones_like(lengths, dtype=torch.float)
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def _first_tokens(rows: int, device: torch.device) -> Tensor:
    return torch.full((rows,), EOS, dtype=torch.long, device=device)  # id 0 doubles as BOS


def _unroll(step: StepFunction, state: Any, context: Any, rows: int, max_length: int,
            choose: Callable[[Tensor], Tensor]) -> Decoded:
    """Greedy or sampled decoding of ``rows`` captions: ``choose`` picks each step's tokens."""
    device = _device_of(context, state)
    tokens = _first_tokens(rows, device)
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    chosen, chosen_log_probs = [], []
    for _ in range(max_length):
        log_probs, state = step(tokens, state, context)
        log_probs = finished_log_probs(log_probs, finished)
        tokens = torch.where(finished, torch.zeros_like(tokens), choose(log_probs.detach()))
        token_log_probs = log_probs.gather(1, tokens[:, None]).squeeze(1)
        chosen.append(tokens)
        chosen_log_probs.append(token_log_probs.masked_fill(finished, 0.0))
        finished = finished | (tokens == EOS)
        if bool(finished.all()):
            break
    out_tokens = torch.stack(chosen, 1)
    out_log_probs = torch.stack(chosen_log_probs, 1)
    pad = max_length - out_tokens.shape[1]
    if pad:
        out_tokens = torch.nn.functional.pad(out_tokens, (0, pad))
        out_log_probs = torch.nn.functional.pad(out_log_probs, (0, pad))
    return Decoded(out_tokens, out_log_probs, out_log_probs.sum(1), state)


def greedy(step: StepFunction, state: Any, context: Any, batch_size: int, max_length: int = 16) -> Decoded:
    """The most likely word at each step, for every image of the batch at once."""
    return _unroll(step, state, context, batch_size, max_length, lambda log_probs: log_probs.argmax(1))


def sample(step: StepFunction, state: Any, context: Any, batch_size: int, max_length: int = 16, n: int = 1,
           temperature: float = 1.0, generator: torch.Generator | None = None) -> Decoded:
    """``n`` captions per image drawn word by word from ``softmax(log_probs / temperature)``
    (self-critical training's multinomial samples). ``log_probs`` of the result are the model's
    own (untempered) log-probs of the drawn words, with their gradient."""
    state, context = repeat_state(state, n), repeat_state(context, n)

    def draw(log_probs: Tensor) -> Tensor:
        probs = torch.softmax(log_probs / temperature, dim=1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    return _unroll(step, state, context, batch_size * n, max_length, draw)


def beam_search(step: StepFunction, state: Any, context: Any, batch_size: int, beam_size: int = 5,
                max_length: int = 16, length_penalty_alpha: float = 0.0, return_all: bool = False) -> Decoded:
    """Batched beam search: ``beam_size`` beams per image, all images in one tensor per step.

    Each step every beam proposes every word; per image the ``beam_size`` best of the
    ``beam_size * (V+1)`` candidates survive (ranked by the sum of log-probs, divided by
    :func:`length_penalty` when ``length_penalty_alpha`` is set). At the first step all beams
    are the same empty caption, so only the first one proposes. Returns the best beam per
    image, or with ``return_all`` every beam ordered best first (rows ``b * beam_size + k``).
    """
    K = beam_size
    state, context = repeat_state(state, K), repeat_state(context, K)
    rows = batch_size * K
    device = _device_of(context, state)
    tokens = _first_tokens(rows, device)
    # Sum of log-probs per beam: -inf on all but the first beam, so the first step's K
    # identical beams yield K different captions.
    sums = torch.full((batch_size, K), float("-inf"), device=device)
    sums[:, 0] = 0.0
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    lengths = torch.zeros(rows, dtype=torch.long, device=device)  # words + EOS of a finished caption
    history = torch.zeros(rows, 0, dtype=torch.long, device=device)
    history_log_probs = torch.zeros(rows, 0, device=device)
    base = (torch.arange(batch_size, device=device) * K)[:, None]
    for t in range(max_length):
        log_probs, state = step(tokens, state, context)
        log_probs = finished_log_probs(log_probs.float(), finished)
        vocab = log_probs.shape[1]
        candidate_sums = (sums.reshape(rows, 1) + log_probs).reshape(batch_size, K * vocab)
        # Candidate lengths: a finished caption keeps its length; an open one grows by one word.
        candidate_lengths = (lengths + (~finished).long()).reshape(batch_size, K, 1).expand(-1, -1, vocab)
        rank = candidate_sums / length_penalty(candidate_lengths.reshape(batch_size, K * vocab), length_penalty_alpha)
        rank = rank.masked_fill(torch.isnan(rank), float("-inf"))
        _, best = rank.topk(K, dim=1)  # (B, K) indices into K * vocab
        origin = best // vocab
        tokens = (best % vocab).reshape(rows)
        sums = candidate_sums.gather(1, best)
        flat_origin = (base + origin).reshape(rows)
        state = reorder_state(state, flat_origin)
        was_finished = finished.index_select(0, flat_origin)
        lengths = lengths.index_select(0, flat_origin) + (~was_finished).long()
        history = torch.cat([history.index_select(0, flat_origin), tokens[:, None]], 1)
        chosen_log_probs = log_probs.index_select(0, flat_origin).gather(1, tokens[:, None])
        history_log_probs = torch.cat([history_log_probs.index_select(0, flat_origin), chosen_log_probs], 1)
        finished = was_finished | (tokens == EOS)
        if bool(finished.all()):
            break
    scores = sums.reshape(rows) / length_penalty(lengths, length_penalty_alpha)
    order = scores.reshape(batch_size, K).argsort(dim=1, descending=True)
    pick = (base + order).reshape(rows) if return_all else (base[:, 0] + order[:, 0])
    tokens_out, log_probs_out = history.index_select(0, pick), history_log_probs.index_select(0, pick)
    pad = max_length - tokens_out.shape[1]
    if pad:
        tokens_out = torch.nn.functional.pad(tokens_out, (0, pad))
        log_probs_out = torch.nn.functional.pad(log_probs_out, (0, pad))
    return Decoded(tokens_out, log_probs_out, scores.index_select(0, pick), reorder_state(state, pick))


def caption_mask(tokens: Tensor) -> Tensor:
    """(R, T) bool: the words of each caption and its first EOS (what a sequence loss counts)."""
    ended_before = torch.cumsum((tokens == EOS).long(), dim=1) - (tokens == EOS).long()
    return ended_before == 0


def _device_of(*trees: Any) -> torch.device:
    found: list[torch.device] = []
    for tree in trees:
        map_state(tree, lambda tensor: found.append(tensor.device) or tensor)
        if found:
            return found[0]
    return torch.device("cpu")


__all__ = ["Decoded", "EOS", "beam_search", "caption_mask", "finished_log_probs", "greedy", "length_penalty",
           "map_state", "reorder_state", "repeat_state", "sample"]
