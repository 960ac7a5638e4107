"""Greedy, sampling and batched beam search (``polyvision.models.layers.decoding``) on toy
Markov decoders whose best captions can be found by enumerating every caption."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from polyvision.models.layers.decoding import (beam_search, caption_mask, greedy, length_penalty, reorder_state,
                                               repeat_state, sample)


def markov_step(tokens, state, context):
    """log p(next | last) from each image's transition table; the state counts steps (to check
    that states follow their beams)."""
    table = context["table"]  # (R, V+1, V+1) log-probs
    log_probs = table[torch.arange(tokens.shape[0]), tokens]
    return log_probs, {"steps": state["steps"] + 1, "last": tokens[:, None].float()}


def tables(batch: int, vocab: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.log_softmax(2.0 * torch.randn(batch, vocab, vocab, generator=generator), dim=-1)


def start(batch: int):
    return {"steps": torch.zeros(batch, 1), "last": torch.zeros(batch, 1)}


def exhaustive(table: torch.Tensor, max_length: int, alpha: float = 0.0) -> tuple[list[int], float]:
    """The best caption of one image by enumeration: words until the first 0, scored as the
    beam search defines it (sum of log-probs / GNMT penalty of words + EOS)."""
    vocab = table.shape[0]
    best, best_score = None, -math.inf
    for sequence in itertools.product(range(vocab), repeat=max_length):
        if any(a == 0 and b != 0 for a, b in zip(sequence, sequence[1:])):
            continue  # nothing follows the end
        total, last, length = 0.0, 0, 0
        for token in sequence:
            if length and last == 0:
                break
            total += float(table[last, token])
            last, length = token, length + 1
        score = total / float(length_penalty(torch.tensor(length), alpha))
        if score > best_score:
            best, best_score = list(sequence), score
    return best, best_score


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_search_equals_exhaustive_search(alpha):
    vocab, length, batch = 3, 4, 4
    table = tables(batch, vocab, seed=1)
    # vocab ** (length - 1) beams hold every prefix until the last step: the search is exact.
    found = beam_search(markov_step, start(batch), {"table": table}, batch, beam_size=vocab ** (length - 1),
                        max_length=length, length_penalty_alpha=alpha)
    for image in range(batch):
        best, score = exhaustive(table[image], length, alpha)
        assert found.tokens[image].tolist() == best
        assert float(found.scores[image]) == pytest.approx(score, abs=1e-5)


def test_beam_one_equals_greedy():
    batch, vocab = 5, 7
    context = {"table": tables(batch, vocab, seed=2)}
    beam = beam_search(markov_step, start(batch), context, batch, beam_size=1, max_length=6)
    best = greedy(markov_step, start(batch), context, batch, max_length=6)
    assert torch.equal(beam.tokens, best.tokens)
    torch.testing.assert_close(beam.scores, best.scores)


def test_batched_beam_search_equals_per_image():
    batch, vocab = 6, 9
    table = tables(batch, vocab, seed=3)
    together = beam_search(markov_step, start(batch), {"table": table}, batch, beam_size=5, max_length=8)
    for image in range(batch):
        alone = beam_search(markov_step, start(1), {"table": table[image:image + 1]}, 1, beam_size=5, max_length=8)
        assert torch.equal(together.tokens[image], alone.tokens[0])
        torch.testing.assert_close(together.scores[image], alone.scores[0])


def test_states_follow_their_beams():
    batch, vocab = 3, 6
    found = beam_search(markov_step, start(batch), {"table": tables(batch, vocab, seed=4)}, batch, beam_size=4,
                        max_length=5)
    # "last" is the token a beam read at its last step: the previous one of the returned caption.
    steps = int(found.state["steps"][0])
    for image in range(batch):
        expected_last = found.tokens[image, steps - 2] if steps >= 2 else 0
        assert float(found.state["last"][image]) == float(expected_last)


def test_length_penalty_changes_ranking():
    """One short caption (EOS at once, log-prob log 0.4) against long ones whose words are
    each likely (0.9): without a penalty the short caption wins (log 0.4 > 4 log 0.9 + ...),
    with alpha = 1 the long caption's normalised score wins, as defined."""
    vocab = 3
    table = torch.full((vocab, vocab), 1e-6)
    table[0] = torch.tensor([0.4, 0.6 - 1e-6, 1e-6])  # from BOS: end (0.4) or word 1 (0.6)
    table[1] = torch.tensor([0.1, 0.9 - 1e-6, 1e-6])  # word 1 repeats with 0.9
    table[2] = torch.tensor([1.0 - 2e-6, 1e-6, 1e-6])
    table = torch.log(table / table.sum(1, keepdim=True))[None]
    plain = beam_search(markov_step, start(1), {"table": table}, 1, beam_size=3, max_length=6)
    penalised = beam_search(markov_step, start(1), {"table": table}, 1, beam_size=3, max_length=6,
                            length_penalty_alpha=1.0)
    assert plain.tokens[0].tolist() == [0, 0, 0, 0, 0, 0]
    assert penalised.tokens[0, 0].item() == 1
    assert exhaustive(table[0], 6, 1.0)[0] == penalised.tokens[0].tolist()


def test_finished_captions_carry_eos_at_no_cost():
    batch, vocab = 4, 5
    found = greedy(markov_step, start(batch), {"table": tables(batch, vocab, seed=5)}, batch, max_length=10)
    mask = caption_mask(found.tokens)
    assert torch.all(found.log_probs[~mask] == 0)
    for row in found.tokens.tolist():
        if 0 in row:
            assert all(token == 0 for token in row[row.index(0):])


def test_sampling_draws_n_per_image_with_gradients():
    batch, vocab, n = 3, 5, 4
    logits = torch.randn(batch, vocab, vocab, requires_grad=True)
    context = {"table": torch.log_softmax(logits, -1)}
    drawn = sample(markov_step, start(batch), context, batch, max_length=6, n=n,
                   generator=torch.Generator().manual_seed(0))
    assert drawn.tokens.shape == (batch * n, 6)
    drawn.log_probs.sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    # A near-zero temperature samples the greedy caption.
    cold = sample(markov_step, start(batch), {"table": context["table"].detach()}, batch, max_length=6, n=2,
                  temperature=1e-4, generator=torch.Generator().manual_seed(0))
    best = greedy(markov_step, start(batch), {"table": context["table"].detach()}, batch, max_length=6)
    assert torch.equal(cold.tokens, best.tokens.repeat_interleave(2, 0))


def test_nested_states_reorder_and_repeat():
    state = {"lstm": (torch.arange(3.0)[:, None], torch.arange(3.0)[:, None] * 10), "none": None, "size": 7}
    repeated = repeat_state(state, 2)
    assert repeated["lstm"][0].squeeze(1).tolist() == [0, 0, 1, 1, 2, 2]
    reordered = reorder_state(state, torch.tensor([2, 0]))
    assert reordered["lstm"][1].squeeze(1).tolist() == [20, 0]
    assert reordered["none"] is None and reordered["size"] == 7


def test_caption_mask_counts_words_and_the_first_eos():
    tokens = torch.tensor([[5, 6, 0, 0], [5, 6, 7, 8], [0, 0, 0, 0]])
    assert caption_mask(tokens).tolist() == [[True, True, True, False], [True] * 4, [True, False, False, False]]
