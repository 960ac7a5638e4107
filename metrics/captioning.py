"""Image-captioning metrics with coco-caption's numbers and no Java: BLEU-1..4, ROUGE-L, CIDEr-D.

The reference is coco-caption (Chen et al., "Microsoft COCO Captions", arXiv 1504.00325;
github.com/tylin/coco-caption, pip release pycocoevalcap 1.2). Its ``COCOEvalCap`` tokenises
hypotheses and references with the Stanford PTB tokenizer plus punctuation removal
(:func:`tokenize`, in pure Python here) and then scores:

- **BLEU-1..4** (``bleu/bleu_scorer.py``; Papineni et al., ACL 2002), at corpus level: per image
  the hypothesis n-gram counts are clipped by the largest count of that n-gram in any *single*
  reference, the reference length is the "closest" one (ties go to the shorter reference), and
  clipped matches, hypothesis n-grams and lengths are summed over the corpus before
  ``BLEU-k = (prod_{i<=k} (correct_i + 1e-15) / (guess_i + 1e-9))^(1/k)`` and one brevity
  penalty ``exp(1 - r/c)`` (when c < r) shared by the four orders.
- **ROUGE-L** (``rouge/rouge.py``; Lin, 2004): per image, with L the longest common subsequence,
  ``P = max_r L/|c|`` and ``R = max_r L/|r|`` maximised independently over the references,
  ``F = (1 + b^2) P R / (R + b^2 P)`` with ``b = 1.2``; the corpus value is the mean over images.
- **CIDEr-D** (``cider/cider_scorer.py``, which *is* CIDEr-D, Vedantam et al., CVPR 2015, sec. 5):
  tf-idf n-gram vectors (n = 1..4) with ``idf = log(#images) - log(max(1, df))``, df counted over
  the references of the evaluated images; per reference and order the cosine similarity with the
  hypothesis counts clipped to the reference's (``sum min(h, r) * r / (|h| |r|)``) times a
  Gaussian length penalty with sigma 6; mean over orders and references, times 10, then the mean
  over images. Quirk kept: coco-caption's "length" counts the *bigrams* of a sentence, so the
  penalty uses ``len - 1`` (the same difference, except for an empty sentence). With a single
  image every idf is 0 and CIDEr-D is 0, as in coco-caption.

:class:`CiderD` is the self-critical reward (``pyciderevalcap/ciderD/ciderD_scorer.py`` of
github.com/ruotianluo/self-critical.pytorch, used by CVLNM): the same per-sentence score with the
document frequencies fixed once from a training corpus (the ``coco-train-idxs`` cache that
``scripts/prepro_ngrams.py`` writes) instead of the evaluated batch.

:class:`CaptionMetrics` gathers predictions and references (as UTF-8 bytes, so DDP can gather
them) and computes everything above at the end, plus METEOR 1.5 and SPICE through pycocoevalcap
when ``java_metrics=True`` and Java and their files are present (otherwise one log line says what
is missing and the keys are absent). Values are fractions as coco-caption prints them (papers
print x100: CIDEr-D 1.295 is reported as 129.5).

Two scoring protocols (``CaptionMetrics(protocol=...)``):

- ``"coco"`` (default): ``COCOEvalCap``'s, as above: hypotheses and references tokenised first.
- ``"v2c"``: the Video2Commonsense evaluation (V2C ``test.py``, github.com/jacobswan1/Video2Commonsense;
  HybridNet's ``test_cms.py`` and ``test_cap2cms.py``, github.com/yuweijiang/HybridNet), which calls
  pycocoevalcap's ``Bleu(4)``, ``Cider()``, ``Rouge()`` and ``Meteor()`` directly, **without the PTB
  tokenizer**: references are the raw annotation strings, and the hypothesis is built by
  ``list_to_sentence``, which prepends a space to every word, so it starts with a space. BLEU and
  CIDEr split on any whitespace and do not see it; coco's ROUGE-L splits on a single space, so the
  hypothesis gains an empty first token, which lowers its precision (hyp ``" a b"`` against ref
  ``"a b"``: P = 2/3, R = 1, F = 2.44 P R / (R + 1.44 P) = 0.8299 instead of 1).
  ``leading_space=True`` (default) reproduces this quirk; ``False`` scores the prediction as
  given. An empty prediction gets no space, as ``list_to_sentence([])`` is ``""``.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from ..errors import ConfigError
from .caption_tokenizer import PUNCTUATIONS, tokenize

__all__ = ["PROTOCOLS", "PUNCTUATIONS", "CaptionMetrics", "CiderD", "bleu", "cider_d", "java_metrics_status",
           "rouge_l", "tokenize"]

log = logging.getLogger(__name__)

MAX_ORDER = 4
CIDER_SIGMA = 6.0
ROUGE_BETA = 1.2
_BLEU_TINY, _BLEU_SMALL = 1e-15, 1e-9  # coco-caption's smoothing constants
PROTOCOLS = ("coco", "v2c")  # CaptionMetrics' scoring protocols (module docstring)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

def _tokenized_corpus(hyps: Mapping[Any, Sequence[str]], refs: Mapping[Any, Sequence[str]],
                      tokenized: bool) -> tuple[list[str], list[list[str]]]:
    """Hypothesis and reference strings (space-joined tokens) in the references' key order."""
    if set(hyps) != set(refs):
        missing, extra = set(refs) - set(hyps), set(hyps) - set(refs)
        raise ValueError(f"hypotheses and references must have the same keys; without hypothesis: "
                         f"{sorted(map(str, missing))[:5]}, without references: {sorted(map(str, extra))[:5]}")
    if not refs:
        raise ValueError("no captions to score")
    prepare = (lambda caption: caption) if tokenized else (lambda caption: " ".join(tokenize(caption)))
    hyp_strings, ref_strings = [], []
    for key, references in refs.items():
        hypothesis = hyps[key]
        if isinstance(hypothesis, str) or len(hypothesis) != 1:
            raise ValueError(f"key {key!r}: expected exactly one hypothesis in a list, got {hypothesis!r}")
        if isinstance(references, str) or len(references) == 0:
            raise ValueError(f"key {key!r}: expected a non-empty list of references, got {references!r}")
        hyp_strings.append(prepare(hypothesis[0]))
        ref_strings.append([prepare(reference) for reference in references])
    return hyp_strings, ref_strings


def _ngrams(words: Sequence[str], max_order: int = MAX_ORDER) -> Counter:
    """Counts of the 1..max_order-grams of ``words`` (tuples)."""
    counts: Counter = Counter()
    for order in range(1, max_order + 1):
        counts.update(zip(*(words[start:] for start in range(order))))
    return counts


def _ngram_set(captions: Iterable[Sequence[str]], max_order: int = MAX_ORDER) -> set:
    """The distinct 1..max_order-grams of several token lists (one image's references)."""
    ngrams: set = set()
    for words in captions:
        for order in range(1, max_order + 1):
            ngrams.update(zip(*(words[start:] for start in range(order))))
    return ngrams


# --------------------------------------------------------------------------------------------
# BLEU
# --------------------------------------------------------------------------------------------

def _bleu_statistics(hypothesis: str, references: Sequence[str], max_order: int) -> tuple[int, int, list, list]:
    """(hypothesis length, closest reference length, clipped matches, n-gram counts) per order."""
    words = hypothesis.split()
    max_ref_counts: dict[tuple, int] = {}
    ref_lengths = []
    for reference in references:
        ref_words = reference.split()
        ref_lengths.append(len(ref_words))
        for ngram, count in _ngrams(ref_words, max_order).items():
            if count > max_ref_counts.get(ngram, 0):
                max_ref_counts[ngram] = count
    length = len(words)
    closest = min(ref_lengths, key=lambda ref_length: (abs(ref_length - length), ref_length))
    correct = [0] * max_order
    for ngram, count in _ngrams(words, max_order).items():
        correct[len(ngram) - 1] += min(count, max_ref_counts.get(ngram, 0))
    guess = [max(0, length - order + 1) for order in range(1, max_order + 1)]
    return length, closest, correct, guess


def _bleu_from_strings(hyp_strings: Sequence[str], ref_strings: Sequence[Sequence[str]],
                       max_order: int = MAX_ORDER) -> list[float]:
    test_length = ref_length = 0
    correct_total, guess_total = [0] * max_order, [0] * max_order
    for hypothesis, references in zip(hyp_strings, ref_strings):
        length, closest, correct, guess = _bleu_statistics(hypothesis, references, max_order)
        test_length += length
        ref_length += closest
        for i in range(max_order):
            correct_total[i] += correct[i]
            guess_total[i] += guess[i]
    scores, product = [], 1.0
    for i in range(max_order):
        product *= (correct_total[i] + _BLEU_TINY) / (guess_total[i] + _BLEU_SMALL)
        scores.append(product ** (1.0 / (i + 1)))
    ratio = (test_length + _BLEU_TINY) / (ref_length + _BLEU_SMALL)
    if ratio < 1:
        brevity_penalty = math.exp(1 - 1 / ratio)
        scores = [score * brevity_penalty for score in scores]
    return scores


def bleu(hyps: Mapping[Any, Sequence[str]], refs: Mapping[Any, Sequence[str]], tokenized: bool = False,
         max_order: int = MAX_ORDER) -> list[float]:
    """Corpus BLEU-1..``max_order`` as coco-caption's ``Bleu(4)`` computes it.

    ``hyps`` maps a key (image id) to a list with exactly one caption, ``refs`` the same keys to
    their reference captions. Captions are raw strings, tokenised with :func:`tokenize` unless
    ``tokenized=True`` (then they are space-separated tokens, as pycocoevalcap's scorers take).
    """
    return _bleu_from_strings(*_tokenized_corpus(hyps, refs, tokenized), max_order=max_order)


# --------------------------------------------------------------------------------------------
# ROUGE-L
# --------------------------------------------------------------------------------------------

def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (one DP row at a time)."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for item in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if item == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def _rouge_l_image(hypothesis: str, references: Sequence[str], beta: float = ROUGE_BETA) -> float:
    # split(" ") as coco-caption: an empty caption is one empty token, not zero tokens.
    words = hypothesis.split(" ")
    precision = recall = 0.0
    for reference in references:
        ref_words = reference.split(" ")
        common = _lcs_length(ref_words, words)
        precision = max(precision, common / len(words))
        recall = max(recall, common / len(ref_words))
    if precision == 0 or recall == 0:
        return 0.0
    return (1 + beta ** 2) * precision * recall / (recall + beta ** 2 * precision)


def rouge_l(hyps: Mapping[Any, Sequence[str]], refs: Mapping[Any, Sequence[str]], tokenized: bool = False) -> float:
    """coco-caption's ROUGE-L (beta 1.2, independent max precision and recall), mean over images.
    Inputs as in :func:`bleu`."""
    hyp_strings, ref_strings = _tokenized_corpus(hyps, refs, tokenized)
    return float(np.mean([_rouge_l_image(h, r) for h, r in zip(hyp_strings, ref_strings)]))


# --------------------------------------------------------------------------------------------
# CIDEr-D
# --------------------------------------------------------------------------------------------

def _document_frequency(ref_ngram_sets: Iterable[Iterable[Counter]]) -> Counter:
    """Number of images whose reference set contains each n-gram."""
    frequency: Counter = Counter()
    for image_refs in ref_ngram_sets:
        frequency.update(set().union(*image_refs) if image_refs else set())
    return frequency


def _tfidf(counts: Counter, document_frequency: Mapping, log_num_docs: float, max_order: int):
    """Per-order tf-idf dicts, their L2 norms and coco-caption's length (the bigram count)."""
    vectors: list[dict] = [{} for _ in range(max_order)]
    squares = [0.0] * max_order
    for ngram, term_frequency in counts.items():
        order = len(ngram) - 1
        weight = term_frequency * (log_num_docs - math.log(max(1.0, document_frequency.get(ngram, 0.0))))
        vectors[order][ngram] = weight
        squares[order] += weight * weight
    # coco-caption adds the term frequency when the 0-based order is 1, i.e. counts bigrams.
    length = sum(count for ngram, count in counts.items() if len(ngram) == 2)
    return vectors, [math.sqrt(square) for square in squares], length


def _cider_similarity(hyp, ref, max_order: int, sigma: float) -> float:
    """Sum over orders of the clipped, length-penalised cosine similarity of two tf-idf vectors."""
    (hyp_vectors, hyp_norms, hyp_length), (ref_vectors, ref_norms, ref_length) = hyp, ref
    penalty = math.exp(-((hyp_length - ref_length) ** 2) / (2 * sigma ** 2))
    total = 0.0
    for order in range(max_order):
        ref_vector = ref_vectors[order]
        value = sum(min(weight, ref_vector[ngram]) * ref_vector[ngram]
                    for ngram, weight in hyp_vectors[order].items() if ngram in ref_vector)
        if hyp_norms[order] != 0 and ref_norms[order] != 0:
            value /= hyp_norms[order] * ref_norms[order]
        total += value * penalty
    return total


def _cider_d_scores(hyp_strings: Sequence[str], ref_strings: Sequence[Sequence[str]], max_order: int = MAX_ORDER,
                    sigma: float = CIDER_SIGMA) -> np.ndarray:
    hyp_counts = [_ngrams(h.split(), max_order) for h in hyp_strings]
    ref_counts = [[_ngrams(r.split(), max_order) for r in refs] for refs in ref_strings]
    document_frequency = _document_frequency(ref_counts)
    log_num_docs = math.log(float(len(ref_counts)))
    scores = np.zeros(len(hyp_counts))
    for i, (counts, references) in enumerate(zip(hyp_counts, ref_counts)):
        hyp = _tfidf(counts, document_frequency, log_num_docs, max_order)
        total = sum(_cider_similarity(hyp, _tfidf(ref, document_frequency, log_num_docs, max_order), max_order, sigma)
                    for ref in references)
        scores[i] = total / max_order / len(references) * 10.0
    return scores


def cider_d(hyps: Mapping[Any, Sequence[str]], refs: Mapping[Any, Sequence[str]], tokenized: bool = False,
            sigma: float = CIDER_SIGMA) -> float:
    """coco-caption's "CIDEr" (= CIDEr-D): document frequencies from these references, mean over
    images of the per-image score. Inputs as in :func:`bleu`."""
    return float(np.mean(_cider_d_scores(*_tokenized_corpus(hyps, refs, tokenized), sigma=sigma)))


class CiderD:
    """Per-sample CIDEr-D with document frequencies fixed from a corpus: the self-critical reward.

    Source: ``pyciderevalcap/ciderD/ciderD_scorer.py`` (github.com/ruotianluo/self-critical.pytorch,
    ``df_mode='coco-train-idxs'``), which CVLNM's SCST uses: df and the document count come from
    the training references (``scripts/prepro_ngrams.py``), the formula is coco-caption's CIDEr-D.

    ``refs_corpus``: the reference captions of every corpus image, as a mapping (image id ->
    captions; its values are used) or a sequence of per-image caption lists. A caption is a list
    of tokens (words, or word ids as Python ints from ``tensor.tolist()``: any hashable tokens,
    used consistently), or a string that is tokenised with :func:`tokenize`. No token is added: to
    reproduce the release exactly, append the end token (its id ``"0"`` or a word such as
    ``"<eos>"``) to every corpus reference and to the references and hypotheses passed to
    :meth:`scores` that ended with it, as the release's ``array_to_str`` does.

    :meth:`scores` is meant to run every training step: reference tf-idf vectors are cached by
    token sequence (corpus references never change their weights), and the clipped dot products
    of all (hypothesis, reference) pairs are computed in one vectorised pass.
    """

    def __init__(self, refs_corpus: Mapping[Any, Sequence] | Sequence[Sequence], sigma: float = CIDER_SIGMA,
                 max_order: int = MAX_ORDER, cache_size: int = 200_000) -> None:
        images = list(refs_corpus.values()) if isinstance(refs_corpus, Mapping) else list(refs_corpus)
        if not images:
            raise ValueError("CiderD needs a non-empty reference corpus to fix its document frequencies")
        self.sigma, self.max_order, self.cache_size = float(sigma), int(max_order), int(cache_size)
        self.num_documents = len(images)
        self.log_num_documents = math.log(float(self.num_documents))
        document_frequency: Counter = Counter()
        for captions in images:
            document_frequency.update(_ngram_set([self._tokens(c) for c in captions], self.max_order))
        # Every n-gram gets an integer id; idf per id. Hypothesis n-grams unknown here can match
        # no reference, so they only need their weight, never an id.
        self._ids: dict[tuple, int] = dict(zip(document_frequency, range(len(document_frequency))))
        frequencies = np.fromiter(document_frequency.values(), dtype=np.float64, count=len(document_frequency))
        self._idf: list[float] = (self.log_num_documents - np.log(np.maximum(frequencies, 1.0))).tolist()
        self._ref_cache: dict[tuple, tuple] = {}

    @staticmethod
    def _tokens(caption: str | Sequence[str]) -> list[str]:
        return tokenize(caption) if isinstance(caption, str) else list(caption)

    def _vector(self, tokens: Sequence[str], intern: bool):
        """(ids, weights, orders, norms (max_order,), length) of a sentence; unknown n-grams get id
        -1 (hypotheses) or a new id with idf log(N) (references outside the corpus)."""
        counts = _ngrams(tokens, self.max_order)
        ids, weights, orders = [], [], []
        norms = [0.0] * self.max_order
        for ngram, term_frequency in counts.items():
            index = self._ids.get(ngram, -1)
            if index < 0 and intern:
                index = self._ids[ngram] = len(self._idf)
                self._idf.append(self.log_num_documents)
            idf = self._idf[index] if index >= 0 else self.log_num_documents
            weight = term_frequency * idf
            order = len(ngram) - 1
            ids.append(index)
            weights.append(weight)
            orders.append(order)
            norms[order] += weight * weight
        length = max(len(tokens) - 1, 0)  # coco-caption's bigram count
        return (np.asarray(ids, dtype=np.int64), np.asarray(weights, dtype=np.float64),
                np.asarray(orders, dtype=np.int64), np.sqrt(np.asarray(norms)), length)

    def _reference_vector(self, tokens: Sequence[str]):
        key = tuple(tokens)
        vector = self._ref_cache.get(key)
        if vector is None:
            if len(self._ref_cache) >= self.cache_size:
                self._ref_cache.clear()
            vector = self._ref_cache[key] = self._vector(key, intern=True)
        return vector

    def scores(self, hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[Sequence[str]]]) -> np.ndarray:
        """CIDEr-D of each hypothesis (a token list) against its references (token lists), float64."""
        if len(hyps) != len(refs):
            raise ValueError(f"CiderD.scores: {len(hyps)} hypotheses but {len(refs)} reference lists")
        if not hyps:
            return np.zeros(0)
        num_orders = self.max_order
        pair_sample, pair_ref, ref_vectors, ref_index = [], [], [], {}
        for sample, references in enumerate(refs):
            if len(references) == 0:
                raise ValueError(f"CiderD.scores: sample {sample} has no references")
            for reference in references:
                key = tuple(reference)
                if key not in ref_index:
                    ref_index[key] = len(ref_vectors)
                    ref_vectors.append(self._reference_vector(key))
                pair_sample.append(sample)
                pair_ref.append(ref_index[key])
        # After the references: their new n-grams (outside the corpus) must have ids by now.
        hyp_vectors = [self._vector(list(tokens), intern=False) for tokens in hyps]
        pair_sample_arr = np.asarray(pair_sample, dtype=np.int64)
        pair_ref_arr = np.asarray(pair_ref, dtype=np.int64)
        num_pairs = len(pair_sample)
        stride = len(self._idf) + 1

        # Reference entries of every pair, keyed by (pair, n-gram id), sorted for lookup.
        ref_sizes = np.array([len(v[0]) for v in ref_vectors], dtype=np.int64)
        ref_offsets = np.concatenate([[0], np.cumsum(ref_sizes)])
        all_ref_ids = np.concatenate([v[0] for v in ref_vectors]) if ref_vectors else np.zeros(0, np.int64)
        all_ref_weights = np.concatenate([v[1] for v in ref_vectors]) if ref_vectors else np.zeros(0)
        pair_ref_sizes = ref_sizes[pair_ref_arr]
        gather = _ranges(ref_offsets[pair_ref_arr], pair_ref_sizes)
        ref_keys = np.repeat(np.arange(num_pairs), pair_ref_sizes) * stride + all_ref_ids[gather]
        order_of_keys = np.argsort(ref_keys, kind="stable")
        ref_keys, ref_pair_weights = ref_keys[order_of_keys], all_ref_weights[gather][order_of_keys]

        # Hypothesis entries of every pair (each hypothesis once per reference of its sample).
        hyp_sizes = np.array([len(v[0]) for v in hyp_vectors], dtype=np.int64)
        hyp_offsets = np.concatenate([[0], np.cumsum(hyp_sizes)])
        all_hyp_ids = np.concatenate([v[0] for v in hyp_vectors]) if hyp_vectors else np.zeros(0, np.int64)
        all_hyp_weights = np.concatenate([v[1] for v in hyp_vectors]) if hyp_vectors else np.zeros(0)
        all_hyp_orders = np.concatenate([v[2] for v in hyp_vectors]) if hyp_vectors else np.zeros(0, np.int64)
        pair_hyp_sizes = hyp_sizes[pair_sample_arr]
        hyp_gather = _ranges(hyp_offsets[pair_sample_arr], pair_hyp_sizes)
        entry_pair = np.repeat(np.arange(num_pairs), pair_hyp_sizes)
        entry_ids = all_hyp_ids[hyp_gather]
        known = entry_ids >= 0
        entry_pair, entry_ids = entry_pair[known], entry_ids[known]
        entry_weights, entry_orders = all_hyp_weights[hyp_gather][known], all_hyp_orders[hyp_gather][known]
        keys = entry_pair * stride + entry_ids
        position = np.searchsorted(ref_keys, keys)
        position_clipped = np.minimum(position, max(len(ref_keys) - 1, 0))
        matched = (position < len(ref_keys)) & (ref_keys[position_clipped] == keys) if len(ref_keys) else np.zeros(len(keys), bool)
        ref_weights = np.where(matched, ref_pair_weights[position_clipped] if len(ref_keys) else 0.0, 0.0)
        # Clipping in the numerator only, as coco-caption: min(h, r) * r.
        contribution = np.minimum(entry_weights, ref_weights) * ref_weights
        numerator = np.bincount(entry_pair * num_orders + entry_orders, weights=contribution,
                                minlength=num_pairs * num_orders).reshape(num_pairs, num_orders)

        hyp_norms = np.stack([v[3] for v in hyp_vectors])[pair_sample_arr]
        ref_norms = np.stack([v[3] for v in ref_vectors])[pair_ref_arr]
        denominator = hyp_norms * ref_norms
        similarity = np.where(denominator != 0, numerator / np.where(denominator != 0, denominator, 1.0), numerator)
        hyp_lengths = np.array([v[4] for v in hyp_vectors], dtype=np.float64)[pair_sample_arr]
        ref_lengths = np.array([v[4] for v in ref_vectors], dtype=np.float64)[pair_ref_arr]
        penalty = np.exp(-((hyp_lengths - ref_lengths) ** 2) / (2 * self.sigma ** 2))
        pair_scores = (similarity * penalty[:, None]).sum(axis=1)
        totals = np.bincount(pair_sample_arr, weights=pair_scores, minlength=len(hyps))
        counts = np.array([len(r) for r in refs], dtype=np.float64)
        return totals / num_orders / counts * 10.0


def _ranges(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(start, start + size)`` for every (start, size), vectorised."""
    total = int(sizes.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(sizes)
    offsets = np.repeat(starts - (ends - sizes), sizes)
    return np.arange(total, dtype=np.int64) + offsets


# --------------------------------------------------------------------------------------------
# METEOR and SPICE through pycocoevalcap (Java), when everything they need is already here
# --------------------------------------------------------------------------------------------

_LOGGED: set[str] = set()


def _log_once(message: str) -> None:
    if message not in _LOGGED:
        _LOGGED.add(message)
        log.warning(message)


def _pycocoevalcap_dir() -> str | None:
    try:
        import pycocoevalcap  # optional (test and evaluation extra)
    except ImportError:
        return None
    return next(iter(pycocoevalcap.__path__))


def java_metrics_status() -> dict[str, str | None]:
    """``{"meteor": reason or None, "spice": reason or None}``: None when the metric can run.

    METEOR needs ``java``, pycocoevalcap and its ``meteor-1.5.jar`` and paraphrase table. SPICE
    also needs the Stanford CoreNLP 3.6.0 jars in ``pycocoevalcap/spice/lib``, which pycocoevalcap
    downloads on first use; we never download, so SPICE is skipped unless they are already there
    (and SPICE 1.0 itself is known to fail on Java > 11)."""
    status: dict[str, str | None] = {}
    root = _pycocoevalcap_dir()
    if shutil.which("java") is None:
        missing = "no `java` on PATH"
        return {"meteor": missing, "spice": missing}
    if root is None:
        missing = "pycocoevalcap is not installed"
        return {"meteor": missing, "spice": missing}
    needed = {"meteor": ["meteor/meteor-1.5.jar", "meteor/data/paraphrase-en.gz"],
              "spice": ["spice/spice-1.0.jar", "spice/lib/stanford-corenlp-3.6.0.jar",
                        "spice/lib/stanford-corenlp-3.6.0-models.jar"]}
    for name, files in needed.items():
        absent = [f for f in files if not os.path.exists(os.path.join(root, f))]
        status[name] = f"missing {', '.join(os.path.join(root, f) for f in absent)}" if absent else None
    return status


@functools.lru_cache(maxsize=1)
def _meteor_scorer():
    """One METEOR 1.5 Java process per Python process: starting it loads a 62 MB paraphrase table
    (about 20 s), which every validation epoch would otherwise pay again."""
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def _java_scores(hyp_strings: Sequence[str], ref_strings: Sequence[Sequence[str]]) -> dict[str, float]:
    """METEOR and SPICE of tokenised captions where they can run; one log line per skipped metric."""
    results: dict[str, float] = {}
    status = java_metrics_status()
    gts = {i: list(refs) for i, refs in enumerate(ref_strings)}
    res = {i: [hyp] for i, hyp in enumerate(hyp_strings)}
    for name in ("meteor", "spice"):
        if status[name] is not None:
            _log_once(f"{name.upper()} skipped: {status[name]}")
            continue
        try:
            if name == "meteor":
                scorer = _meteor_scorer()
            else:
                from pycocoevalcap.spice.spice import Spice
                scorer = Spice()
            score, _ = scorer.compute_score(gts, res)
            results[name] = float(score)
        except Exception as error:  # noqa: BLE001 - a broken Java set-up must never end an evaluation
            if name == "meteor":
                _meteor_scorer.cache_clear()  # its Java process may be dead: start a new one next time
            _log_once(f"{name.upper()} skipped: pycocoevalcap failed ({type(error).__name__}: {error})")
    return results


# --------------------------------------------------------------------------------------------
# torchmetrics wrapper
# --------------------------------------------------------------------------------------------

class CaptionMetrics(Metric):
    """coco-caption's caption metrics as one torchmetrics ``Metric``.

    ``update(predictions, references, image_ids=None)``: one predicted caption (raw string) per
    image and the list of that image's raw reference captions. ``compute()`` returns float64
    tensors ``bleu_1`` .. ``bleu_4``, ``rouge_l`` and ``cider_d`` (and ``meteor``, ``spice`` when
    ``java_metrics=True`` and :func:`java_metrics_status` says they can run), computed on the
    whole set at once as coco-caption does (CIDEr-D's document frequencies come from all
    references seen). Captions are tokenised with :func:`tokenize`.

    ``image_ids`` (optional) makes repeated images count once, keeping the first: a distributed
    sampler pads the last batch with repeated samples, and coco-caption scores a dict keyed by
    image id.

    Distributed evaluation: every image is stored as the UTF-8 bytes of ``[id, prediction,
    references]`` (JSON) in a uint8 state plus its byte length in an int64 state, both reduced
    with ``"cat"``, so ``compute()`` on any rank sees every rank's captions. Empty: nan values.

    ``protocol``: ``"coco"`` (the above) or ``"v2c"``: no tokenisation, references scored as
    given and the hypothesis ``" " + prediction`` when ``leading_space`` (the V2C / HybridNet
    evaluation and its whitespace quirk, see the module docstring; METEOR gets the same strings).
    ``leading_space`` is used by ``"v2c"`` only. Both are constructor options, not state.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, java_metrics: bool = False, protocol: str = "coco", leading_space: bool = True,
                 **kwargs: Any) -> None:
        if protocol not in PROTOCOLS:
            raise ConfigError(f"CaptionMetrics: unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
        super().__init__(**kwargs)
        self.java_metrics = bool(java_metrics)
        self.protocol = protocol
        self.leading_space = bool(leading_space)
        self.add_state("caption_bytes", default=[], dist_reduce_fx="cat")
        self.add_state("caption_byte_lengths", default=[], dist_reduce_fx="cat")

    def update(self, predictions: Sequence[str], references: Sequence[Sequence[str]],
               image_ids: Sequence[int] | None = None) -> None:
        if isinstance(predictions, str) or len(predictions) != len(references):
            raise ValueError(f"CaptionMetrics.update: expected one prediction per reference list, got "
                             f"{len(predictions)} predictions and {len(references)} reference lists")
        if image_ids is not None and len(image_ids) != len(predictions):
            raise ValueError("CaptionMetrics.update: image_ids must have one id per prediction")
        lengths = []
        for i, (prediction, refs) in enumerate(zip(predictions, references)):
            if isinstance(refs, str) or len(refs) == 0:
                raise ValueError(f"CaptionMetrics.update: sample {i} needs a non-empty list of references")
            key = int(image_ids[i]) if image_ids is not None else None
            encoded = json.dumps([key, str(prediction), [str(r) for r in refs]]).encode("utf-8")
            self.caption_bytes.append(torch.frombuffer(bytearray(encoded), dtype=torch.uint8).to(self.device))
            lengths.append(len(encoded))
        if lengths:
            self.caption_byte_lengths.append(torch.tensor(lengths, dtype=torch.long, device=self.device))

    def _records(self) -> list[tuple]:
        """(image id or None, prediction, references) per stored image, in update order."""
        data, lengths = self.caption_bytes, self.caption_byte_lengths
        # After a DDP sync the lists may be single (possibly float, when a rank was empty) tensors.
        data = torch.cat([d.reshape(-1) for d in data]) if isinstance(data, list) and data else data
        lengths = torch.cat([d.reshape(-1) for d in lengths]) if isinstance(lengths, list) and lengths else lengths
        if isinstance(data, list) or isinstance(lengths, list) or lengths.numel() == 0:
            return []
        raw = data.to(torch.uint8).cpu().numpy().tobytes()
        records, offset = [], 0
        for length in lengths.to(torch.long).cpu().tolist():
            records.append(tuple(json.loads(raw[offset:offset + length].decode("utf-8"))))
            offset += length
        return records

    def compute(self) -> dict[str, Tensor]:
        records, seen = [], set()
        for key, prediction, refs in self._records():
            if key is not None:
                if key in seen:
                    continue
                seen.add(key)
            records.append((prediction, refs))
        names = [f"bleu_{k}" for k in range(1, MAX_ORDER + 1)] + ["rouge_l", "cider_d"]
        if not records:
            return {name: torch.tensor(float("nan"), dtype=torch.float64) for name in names}
        hyp_strings, ref_strings = self._scored_strings(records)
        values = dict(zip(names[:MAX_ORDER], _bleu_from_strings(hyp_strings, ref_strings)))
        values["rouge_l"] = float(np.mean([_rouge_l_image(h, r) for h, r in zip(hyp_strings, ref_strings)]))
        values["cider_d"] = float(np.mean(_cider_d_scores(hyp_strings, ref_strings)))
        if self.java_metrics:
            values.update(_java_scores(hyp_strings, ref_strings))
        return {name: torch.tensor(value, dtype=torch.float64) for name, value in values.items()}

    def _scored_strings(self, records: Sequence[tuple[str, Sequence[str]]]) -> tuple[list[str], list[list[str]]]:
        """The strings the scorers see under this metric's protocol."""
        if self.protocol == "coco":
            return ([" ".join(tokenize(prediction)) for prediction, _ in records],
                    [[" ".join(tokenize(r)) for r in refs] for _, refs in records])
        # "v2c": raw strings; list_to_sentence's leading space (none for an empty word list)
        space = " " if self.leading_space else ""
        return ([space + prediction if prediction else prediction for prediction, _ in records],
                [list(refs) for _, refs in records])
