"""Caption metrics against coco-caption (pycocoevalcap 1.2) and hand-computed cases.

pycocoevalcap's Bleu, Rouge and Cider classes are pure Python, so parity with them runs
everywhere; its PTBTokenizer (and METEOR) need Java and are compared only where ``java`` exists.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import random
import shutil
from collections import Counter

import numpy as np
import pytest
import torch

from polyvision.errors import ConfigError
from polyvision.metrics import captioning
from polyvision.metrics.captioning import CaptionMetrics, CiderD, bleu, cider_d, rouge_l, tokenize

pycocoevalcap = pytest.importorskip("pycocoevalcap")
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

HAS_JAVA = shutil.which("java") is not None

# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

# (caption, coco-caption's tokens), checked against CoreNLP 3.4.1 + the punctuation filter.
TOKENIZER_CASES = [
    ("A man riding a wave on top of a surfboard.", "a man riding a wave on top of a surfboard"),
    ("A man's dog isn't running; it's \"happy\" (maybe).",
     "a man 's dog is n't running it 's happy -lrb- maybe -rrb-"),
    ("Two dogs' toys and/or a cat * star.", "two dogs toys and/or a cat * star"),
    ("It costs $5.50 or 1,000.5 dollars at 3:30 p.m. Mr. Smith's U.S. car.",
     "it costs $ 5.50 or 1,000.5 dollars at 3:30 p.m. mr. smith 's u.s. car"),
    ("He cannot, won't, gonna, wanna go -- now... really?!", "he can not wo n't gon na wan na go now really ?!"),
    ("\u201cQuoted\u201d \u2018single\u2019 text \u2014 em dash \u2013 en dash \u2026 ellipsis",
     "quoted single text em dash en dash ellipsis"),
    ("A black-and-white photo of a 2-year-old child's T-shirt.", "a black-and-white photo of a 2-year-old child 's t-shirt"),
    ("  multiple    spaces\ttab here  ", "multiple spaces tab here"),
    ("A person with an umbrella & a hat @ the park #1 100% 50/50.",
     "a person with an umbrella & a hat @ the park # 1 100 % 50/50"),
    ("it\u2019s a dog\u2019s life, don\u2019t", "it 's a dog 's life do n't"),
    ("a sign [in red] {braces}", "a sign -lsb- in red -rsb- -lcb- braces -rcb-"),
    ("the 90's and '90s, rock 'n' roll at 5 o'clock, ma'am", "the 90 's and '90s rock 'n' roll at 5 o'clock ma'am"),
    ("shouldn't've I'M CAN'T", "should n't 've i 'm ca n't"),
    ("the sat. thing, no. way, No. 5 and etc. and 5.", "the sat thing no way no. 5 and etc. and 5"),
    ("AT&T rock&roll e-mail www.site.com a.k.a", "at&t rock & roll e-mail www.site.com a.k.a"),
    ("wow?! ok.. yes....", "wow ?! ok yes"),
    ("the children's.The men's-hats, 10.Red dog.cat", "the children 's the men 's hats 10 red dog.cat"),
    ("a U.S.-made 1,000-pound 1 1/2 inch bolt", "a u.s.-made 1,000-pound 1\u00a01/2 inch bolt"),
    ("A man &amp; a woman w/ a 4x4, 1980's style, 12:30pm", "a man & a woman w / a 4x4 1980 's style 12:30 pm"),
    ("", ""),
    ("...", ""),
]


@pytest.mark.parametrize("caption, expected", TOKENIZER_CASES)
def test_tokenizer_hand_cases(caption, expected):
    assert tokenize(caption) == (expected.split(" ") if expected else [])


_WORDS = ("a man woman dog cat dogs people person sitting standing next to the on in of with and is are riding "
          "red blue white black large small two three skateboard surfboard table kitchen street while his her "
          "their it its an at near holding").split()
_SPECIAL = ["isn't", "can't", "won't", "don't", "it's", "man's", "dogs'", "boss's", "they're", "we've", "I'm",
            "he'll", "she'd", "cannot", "gonna", "o'clock", "ma'am", "'90s", "rock 'n' roll", "y'all",
            "black-and-white", "2-year-old", "t-shirt", "x-ray", "e-mail", "1,000", "3.5", "10:30", "50/50",
            "$5", "100%", "#1", "and/or", "p.m.", "a.m.", "Mr.", "Dr.", "St.", "etc.", "U.S.", "vs.", "No.",
            "Jan.", "(small)", "[red]", "{x}", '"stop"', "'hello'", "\u201cquoted\u201d", "\u2018it\u2019s\u2019",
            "don\u2019t", "\u2014", "\u2013", "\u2026", "--", "-", "...", "?!", "!!", "&", "AT&T", "rock&roll",
            "5.", "+5", "-5", "1/2", "3d", "21st", "www.site.com", "Wash.", "wash.", "B.", "c", "TV's",
            "ph.d.", "co-worker", "well-known,", "dog,cat", "it;", "here:", "a.k.a", "he said\"hi\"", "Tom's,",
            "can't.", "shouldn't've", "GOING", "Cafe", "caf\u00e9", "na\u00efve", "dog.", "What?", "Wow!"]
_ENDINGS = ["", ".", " .", "..", "...", "!", "?", " ", "  ", ". ", "\u2026"]


def random_caption(rng: random.Random) -> str:
    """A caption as people type them: common words mixed with clitics, numbers, abbreviations,
    brackets, quotes, unicode punctuation, odd spacing and endings."""
    words = []
    for _ in range(rng.randint(1, 14)):
        word = rng.choice(_SPECIAL) if rng.random() < 0.3 else rng.choice(_WORDS)
        if rng.random() < 0.1:
            word = word.capitalize()
        if rng.random() < 0.08:
            word += rng.choice([",", ";", ":", "."])
        words.append(word)
    text = ("  " if rng.random() < 0.1 else " ").join(words) + rng.choice(_ENDINGS)
    return text[0].upper() + text[1:] if rng.random() < 0.3 else text


@pytest.mark.skipif(not HAS_JAVA, reason="needs `java` to run coco-caption's own PTBTokenizer")
def test_tokenizer_matches_coco_caption_ptb_tokenizer():
    from pycocoevalcap.tokenizer import ptbtokenizer

    if not os.access(os.path.dirname(ptbtokenizer.__file__), os.W_OK):
        pytest.skip("pycocoevalcap's PTBTokenizer writes its input next to its jar, here read-only")
    tokenizer = ptbtokenizer.PTBTokenizer()
    rng = random.Random(12)
    captions = [random_caption(rng) for _ in range(400)] + [c for c, _ in TOKENIZER_CASES if c.strip()]
    # Java reads the file in its default charset: compare non-ASCII captions only where that is UTF-8.
    if tokenizer.tokenize({0: [{"caption": "\u201cna\u00efve\u201d"}]})[0] != ["na\u00efve"]:
        captions = [c for c in captions if c.isascii()]
    java = tokenizer.tokenize({i: [{"caption": c}] for i, c in enumerate(captions)})
    mismatches = [(c, java[i][0], " ".join(tokenize(c))) for i, c in enumerate(captions)
                  if java[i][0] != " ".join(tokenize(c))]
    assert not mismatches, f"{len(mismatches)} of {len(captions)} differ, e.g. {mismatches[:3]}"


# --------------------------------------------------------------------------------------------
# Parity with pycocoevalcap's scorers
# --------------------------------------------------------------------------------------------

_VOCAB = "a dog cat man on the red blue ball sits runs".split()


def _sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(_VOCAB) for _ in range(rng.randint(low, high)))


def generated_caption_sets(count: int = 300):
    """Seeded caption sets with the edge cases coco-caption must agree on."""
    for seed in range(count):
        rng = random.Random(seed)
        kind = seed % 6
        num_images = 1 if kind == 0 else rng.randint(2, 6)
        refs, hyps = {}, {}
        for image in range(num_images):
            num_refs = 1 if kind == 1 else rng.randint(1, 5)
            refs[image] = [_sentence(rng, 1, 10) for _ in range(num_refs)]
            if kind == 2 and image == 0:
                hyp = ""  # empty hypothesis
            elif kind == 3:
                hyp = " ".join([rng.choice(_VOCAB)] * rng.randint(1, 8))  # repeated words
            elif kind == 4:
                hyp = _sentence(rng, 12, 18)  # longer than every reference
            elif kind == 5 and image % 2 == 0:
                hyp = rng.choice(refs[image])  # identical to a reference
            else:
                hyp = _sentence(rng, 0, 12)
            hyps[image] = [hyp]
        yield hyps, refs


def _coco_scores(hyps, refs):
    with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its statistics
        bleu_scores, _ = Bleu(4).compute_score(refs, hyps)
    rouge_score, _ = Rouge().compute_score(refs, hyps)
    cider_score, cider_per_image = Cider().compute_score(refs, hyps)
    return bleu_scores, rouge_score, cider_score, cider_per_image


def test_parity_with_pycocoevalcap_on_generated_sets():
    worst = {"bleu": 0.0, "rouge_l": 0.0, "cider_d": 0.0, "reward": 0.0}
    for hyps, refs in generated_caption_sets():
        bleu_ref, rouge_ref, cider_ref, cider_per_image = _coco_scores(hyps, refs)
        ours = bleu(hyps, refs, tokenized=True)
        worst["bleu"] = max(worst["bleu"], max(abs(a - b) for a, b in zip(ours, bleu_ref)))
        worst["rouge_l"] = max(worst["rouge_l"], abs(rouge_l(hyps, refs, tokenized=True) - rouge_ref))
        worst["cider_d"] = max(worst["cider_d"], abs(cider_d(hyps, refs, tokenized=True) - cider_ref))
        # With the evaluated references as its corpus, the reward scorer gives coco's per-image CIDEr-D.
        keys = list(refs)
        ref_tokens = [[r.split() for r in refs[k]] for k in keys]
        rewards = CiderD(ref_tokens).scores([hyps[k][0].split() for k in keys], ref_tokens)
        worst["reward"] = max(worst["reward"], float(np.max(np.abs(rewards - cider_per_image))))
    assert max(worst.values()) < 1e-6, worst


def test_raw_captions_are_tokenized_first():
    hyps = {1: ["A Dog, running on the BEACH."], 2: ["Two cats' toys (red)."]}
    refs = {1: ["a dog runs on the beach", "The dog is running."], 2: ["Toys of two cats.", "red toys"]}
    tokenized_hyps = {k: [" ".join(tokenize(v[0]))] for k, v in hyps.items()}
    tokenized_refs = {k: [" ".join(tokenize(r)) for r in v] for k, v in refs.items()}
    bleu_ref, rouge_ref, cider_ref, _ = _coco_scores(tokenized_hyps, tokenized_refs)
    assert bleu(hyps, refs) == pytest.approx(bleu_ref, abs=1e-12)
    assert rouge_l(hyps, refs) == pytest.approx(rouge_ref, abs=1e-12)
    assert cider_d(hyps, refs) == pytest.approx(cider_ref, abs=1e-12)
    assert tokenized_hyps[2] == ["two cats toys -lrb- red -rrb-"]  # coco keeps -lrb-: its filter is upper-case


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="same keys"):
        bleu({1: ["a"]}, {2: ["a"]})
    with pytest.raises(ValueError, match="exactly one hypothesis"):
        rouge_l({1: ["a", "b"]}, {1: ["a"]})
    with pytest.raises(ValueError, match="non-empty list"):
        cider_d({1: ["a"]}, {1: []})


# --------------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------------

def test_bleu_hand_computed():
    # hyp "the cat sat on the mat" (c = 6); refs "the cat is on the mat" (6), "there is a cat on the mat" (7)
    #   1-grams: the x2 (max ref count 2) cat on mat match, sat does not: 5 / 6
    #   2-grams: "the cat" "on the" "the mat" match, "cat sat" "sat on" do not: 3 / 5
    #   3-grams: only "on the mat": 1 / 4;  4-grams: 0 / 3
    #   closest reference length 6 = c, so no brevity penalty (up to coco's 1e-15 / 1e-9 smoothing)
    hyps, refs = {0: ["the cat sat on the mat"]}, {0: ["the cat is on the mat", "there is a cat on the mat"]}
    b1, b2, b3, b4 = bleu(hyps, refs, tokenized=True)
    assert b1 == pytest.approx(5 / 6, rel=1e-8)
    assert b2 == pytest.approx(math.sqrt(5 / 6 * 3 / 5), rel=1e-8)
    assert b3 == pytest.approx(0.5, rel=1e-8)
    assert b4 == pytest.approx((5 / 6 * 3 / 5 * 1 / 4 * 1e-15 / 3) ** 0.25, rel=1e-6)  # 0 matches -> tiny, not 0


def test_bleu_closest_length_tie_goes_to_the_shorter_reference():
    # c = 3, references of length 2 and 4 are equally close: coco takes 2 (c > r, no penalty);
    # taking 4 would multiply by exp(1 - 4/3) = 0.717. Every n-gram of "a b c" is in "a b c d".
    b1, b2, b3, _ = bleu({0: ["a b c"]}, {0: ["a b c d", "a b"]}, tokenized=True)
    assert (b1, b2, b3) == pytest.approx((1.0, 1.0, 1.0), abs=1e-9)
    # Corpus level: one brevity penalty from summed lengths, c = 2, r = 4 -> exp(1 - 4/2) = e^-1.
    b1, *_ = bleu({0: ["a b"]}, {0: ["a b c d"]}, tokenized=True)
    assert b1 == pytest.approx(math.exp(-1.0), rel=1e-8)


def test_rouge_l_hand_computed():
    # hyp "a cat sits on the mat" (6 tokens)
    #   ref "the cat sat on the mat": LCS "cat on the mat" = 4 -> P 4/6, R 4/6
    #   ref "a cat":                  LCS 2                -> P 2/6, R 2/2
    # precision and recall are maximised independently: P = 2/3, R = 1
    # F = (1 + 1.2^2) P R / (R + 1.2^2 P)
    value = rouge_l({0: ["a cat sits on the mat"]}, {0: ["the cat sat on the mat", "a cat"]}, tokenized=True)
    p, r = 2 / 3, 1.0
    assert value == pytest.approx((1 + 1.44) * p * r / (r + 1.44 * p), rel=1e-12)
    assert value == pytest.approx(0.8299319727891157, rel=1e-12)


def test_cider_d_hand_computed():
    # Two images, so log N = ln 2 and every n-gram (each in one image's references) has idf ln 2.
    #   image 0: hyp "a b", ref "a b": identical vectors, unigram and bigram cosine 1, no 3/4-grams,
    #            same length -> (1 + 1 + 0 + 0) / 4 * 10 = 5
    #   image 1: hyp "c", ref "c d": unigram cosine ln2^2 / (ln2 * sqrt(2) ln2) = 1/sqrt(2), nothing
    #            else; lengths (bigram counts) 0 and 1 -> penalty exp(-1 / (2 * 6^2))
    #            -> (1/sqrt(2) * exp(-1/72)) / 4 * 10
    image1 = 10 / 4 / math.sqrt(2) * math.exp(-1 / 72)
    value = cider_d({0: ["a b"], 1: ["c"]}, {0: ["a b"], 1: ["c d"]}, tokenized=True)
    assert value == pytest.approx((5.0 + image1) / 2, rel=1e-12)
    # One image: log N = 0, every weight is 0, so CIDEr-D is 0 (as in coco-caption).
    assert cider_d({0: ["a b"]}, {0: ["a b"]}, tokenized=True) == 0.0


# --------------------------------------------------------------------------------------------
# CiderD reward scorer
# --------------------------------------------------------------------------------------------

def _naive_cider_d(hyp, refs, corpus, sigma=6.0):
    """CIDEr-D of one token list against references, df and N from ``corpus``, written out plainly."""
    def grams(words):
        return Counter(tuple(words[i:i + n]) for n in range(1, 5) for i in range(len(words) - n + 1))

    df = Counter()
    for image_refs in corpus:
        df.update(set().union(*(grams(r) for r in image_refs)))
    log_n = math.log(len(corpus))

    def weights(words):
        return {g: c * (log_n - math.log(max(1, df[g]))) for g, c in grams(words).items()}

    h = weights(hyp)
    total = 0.0
    for ref in refs:
        r = weights(ref)
        penalty = math.exp(-((max(len(hyp) - 1, 0) - max(len(ref) - 1, 0)) ** 2) / (2 * sigma ** 2))
        for n in range(1, 5):
            hn = {g: w for g, w in h.items() if len(g) == n}
            rn = {g: w for g, w in r.items() if len(g) == n}
            dot = sum(min(w, rn[g]) * rn[g] for g, w in hn.items() if g in rn)
            norms = math.sqrt(sum(w * w for w in hn.values())) * math.sqrt(sum(w * w for w in rn.values()))
            total += (dot / norms if norms else dot) * penalty
    return total / 4 / len(refs) * 10


def test_cider_d_reward_matches_a_plain_computation():
    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(30)]

    def caption(low=3, high=12):
        return [rng.choice(vocab) for _ in range(rng.randint(low, high))] + ["0"]  # "0": the release's EOS id

    corpus = [[caption() for _ in range(5)] for _ in range(40)]
    scorer = CiderD({image_id: refs for image_id, refs in enumerate(corpus)})
    # A batch: 4 corpus images with 5 samples each, plus one image outside the corpus and an empty sample.
    refs = [corpus[i] for i in (0, 3, 7, 39) for _ in range(5)] + [[caption(), caption()]] * 2
    hyps = [caption(0, 16) for _ in range(len(refs) - 1)] + [[]]
    hyps[0] = list(refs[0][0])  # identical to a reference
    hyps[-2] = list(refs[-2][0]) + ["new", "words"]  # n-grams only an out-of-corpus reference has
    expected = [_naive_cider_d(h, r, corpus) for h, r in zip(hyps, refs)]
    assert scorer.scores(hyps, refs) == pytest.approx(expected, abs=1e-9)
    assert scorer.scores(hyps, refs) == pytest.approx(expected, abs=1e-9)  # cached reference vectors
    assert scorer.scores(hyps[:1], refs[:1])[0] == pytest.approx(expected[0], abs=1e-9)
    assert scorer.scores(hyps, refs)[-1] == 0.0
    assert scorer.scores([], []).shape == (0,)
    # Raw strings in the corpus are tokenised like the evaluation captions.
    assert CiderD([["A dog."], ["a cat"]]).scores([["a", "dog"]], [[["a", "dog"]]])[0] == pytest.approx(
        CiderD([[["a", "dog"]], [["a", "cat"]]]).scores([["a", "dog"]], [[["a", "dog"]]])[0])
    with pytest.raises(ValueError, match="non-empty"):
        CiderD([])
    with pytest.raises(ValueError, match="no references"):
        scorer.scores([["w1"]], [[]])


# --------------------------------------------------------------------------------------------
# CaptionMetrics (torchmetrics)
# --------------------------------------------------------------------------------------------

_PREDICTIONS = ["A dog runs on the beach.", "two cats on a red sofa", "a man riding a horse", "", "a bus"]
_REFERENCES = [["A dog is running on the beach.", "The dog runs along the shore."],
               ["Two cats sleep on a red couch.", "Cats on a sofa."],
               ["A man rides a brown horse.", "A person on a horse.", "Man riding a horse in a field."],
               ["An empty street at night."],
               ["A red bus on the road.", "A double-decker bus."]]


def _functional(predictions, references):
    hyps = {i: [p] for i, p in enumerate(predictions)}
    refs = {i: list(r) for i, r in enumerate(references)}
    values = dict(zip([f"bleu_{k}" for k in range(1, 5)], bleu(hyps, refs)))
    values.update(rouge_l=rouge_l(hyps, refs), cider_d=cider_d(hyps, refs))
    return values


def _as_floats(values):
    return {k: v.item() for k, v in values.items()}


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
def test_caption_metrics_update_compute_reset():
    metric = CaptionMetrics()
    metric.update(_PREDICTIONS[:2], _REFERENCES[:2])
    metric.update(_PREDICTIONS[2:], _REFERENCES[2:])
    values = _as_floats(metric.compute())
    assert set(values) == {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d"}
    assert values == pytest.approx(_functional(_PREDICTIONS, _REFERENCES), abs=1e-12)
    assert values["cider_d"] > 0
    metric.reset()
    assert all(math.isnan(v) for v in _as_floats(metric.compute()).values())
    metric.update(_PREDICTIONS[:3], _REFERENCES[:3])
    assert _as_floats(metric.compute()) == pytest.approx(_functional(_PREDICTIONS[:3], _REFERENCES[:3]), abs=1e-12)
    with pytest.raises(ValueError, match="one prediction per reference list"):
        metric.update(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="non-empty list"):
        metric.update(["a"], [[]])


def test_caption_metrics_merge_and_repeated_image_ids():
    rank0, rank1 = CaptionMetrics(), CaptionMetrics()
    rank0.update(_PREDICTIONS[:3], _REFERENCES[:3], image_ids=[10, 11, 12])
    # A distributed sampler pads the last batch with a repeat (image 10): it must count once.
    rank1.update(_PREDICTIONS[3:] + _PREDICTIONS[:1], _REFERENCES[3:] + _REFERENCES[:1], image_ids=[13, 14, 10])
    rank0.merge_state(rank1)
    assert _as_floats(rank0.compute()) == pytest.approx(_functional(_PREDICTIONS, _REFERENCES), abs=1e-12)


def _synced_compute(rank0_updates, rank1_updates, **options):
    """compute() on "rank 0" through torchmetrics' own sync path, with a fake all_gather that
    returns rank 0's and rank 1's concatenated states (empty float tensors for an empty rank).
    ``options``: CaptionMetrics' constructor options, the same on both ranks."""
    other = CaptionMetrics(**options)
    for update in rank1_updates:
        other.update(*update)
    states = [torch.cat(getattr(other, name)) if getattr(other, name) else torch.tensor([])
              for name in other._defaults]
    queue = iter(states)

    def fake_gather(tensor, group=None):
        return [tensor, next(queue)]

    metric = CaptionMetrics(dist_sync_fn=fake_gather, distributed_available_fn=lambda: True, **options)
    for update in rank0_updates:
        metric.update(*update)
    return _as_floats(metric.compute())


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
def test_caption_metrics_ddp_sync():
    expected = _functional(_PREDICTIONS, _REFERENCES)
    split = _synced_compute([(_PREDICTIONS[:2], _REFERENCES[:2])], [(_PREDICTIONS[2:], _REFERENCES[2:])])
    assert split == pytest.approx(expected, abs=1e-12)
    assert _synced_compute([(_PREDICTIONS, _REFERENCES)], []) == pytest.approx(expected, abs=1e-12)
    assert _synced_compute([], [(_PREDICTIONS, _REFERENCES)]) == pytest.approx(expected, abs=1e-12)


def test_java_metrics_are_skipped_with_one_log_line(monkeypatch, caplog):
    monkeypatch.setattr(captioning.shutil, "which", lambda name: None)
    monkeypatch.setattr(captioning, "_LOGGED", set())
    metric = CaptionMetrics(java_metrics=True)
    metric.update(_PREDICTIONS, _REFERENCES)
    with caplog.at_level(logging.WARNING, logger=captioning.__name__):
        values = metric.compute()
        metric.compute()
    assert "meteor" not in values and "spice" not in values
    lines = [r.getMessage() for r in caplog.records if r.name == captioning.__name__]
    assert lines == ["METEOR skipped: no `java` on PATH", "SPICE skipped: no `java` on PATH"]


def test_spice_without_corenlp_models_is_skipped_not_downloaded(monkeypatch, tmp_path):
    # pycocoevalcap's Spice() downloads CoreNLP when its jars are absent: we must never call it then.
    monkeypatch.setattr(captioning.shutil, "which", lambda name: "/usr/bin/java")
    monkeypatch.setattr(captioning, "_pycocoevalcap_dir", lambda: str(tmp_path))
    status = captioning.java_metrics_status()
    assert "stanford-corenlp-3.6.0.jar" in status["spice"] and "meteor-1.5.jar" in status["meteor"]


@pytest.mark.slow
@pytest.mark.skipif(captioning.java_metrics_status()["meteor"] is not None,
                    reason=f"METEOR cannot run: {captioning.java_metrics_status()['meteor']}")
def test_meteor_through_pycocoevalcap():
    # METEOR 1.5 (Java, about 20 s to load its paraphrase table). The value is pycocoevalcap's own
    # Meteor().compute_score on these tokenised captions, recorded once.
    metric = CaptionMetrics(java_metrics=True)
    metric.update(["a man on a horse", "a cat"], [["a man riding a horse", "a person on a horse"], ["a dog"]])
    values = metric.compute()
    assert values["meteor"].item() == pytest.approx(0.3930917548373894, abs=1e-6)


# --------------------------------------------------------------------------------------------
# V2C protocol: pycocoevalcap's scorers on raw strings, hypothesis with list_to_sentence's space
# --------------------------------------------------------------------------------------------

def _list_to_sentence(words):
    """V2C's and HybridNet's ``utils.list_to_sentence``: a space before every word."""
    sentence = ""
    for word in words:
        sentence += " " + word
    return sentence


def v2c_caption_sets(count: int = 300):
    """Seeded (decoded word lists, raw reference strings) sets: references as annotators typed
    them (capitals, punctuation, odd spacing), predictions as decoded words, some empty."""
    for seed in range(count):
        rng = random.Random(1000 + seed)
        num_images = 1 if seed % 7 == 0 else rng.randint(2, 6)
        words, refs = [], []
        for image in range(num_images):
            references = [random_caption(rng) if rng.random() < 0.5 else _sentence(rng, 1, 10)
                          for _ in range(rng.randint(1, 5))]
            if seed % 5 == 1 and image == 0:
                decoded = []  # nothing decoded before EOS
            elif seed % 5 == 2:
                decoded = rng.choice(references).split()  # a reference, re-spaced
            else:
                decoded = [rng.choice(_VOCAB + [".", ",", "Dog"]) for _ in range(rng.randint(1, 12))]
            words.append(decoded)
            refs.append(references)
        yield words, refs


def _v2c_metric_values(predictions, references, **options):
    metric = CaptionMetrics(protocol="v2c", **options)
    metric.update(predictions, references)
    return _as_floats(metric.compute())


def test_v2c_protocol_matches_pycocoevalcap_called_directly_on_raw_strings():
    # V2C test.py / HybridNet test_cms.py: res[i] = [list_to_sentence(words)], gts[i] = raw strings,
    # then Bleu(4), Cider(), Rouge() with no PTBTokenizer.
    worst = {"bleu": 0.0, "rouge_l": 0.0, "cider_d": 0.0, "no_space_rouge_l": 0.0}
    sets = 0
    for words, references in v2c_caption_sets():
        gts = {i: list(r) for i, r in enumerate(references)}
        res = {i: [_list_to_sentence(w)] for i, w in enumerate(words)}
        bleu_ref, rouge_ref, cider_ref, _ = _coco_scores(res, gts)
        ours = _v2c_metric_values([" ".join(w) for w in words], references)
        worst["bleu"] = max(worst["bleu"], max(abs(ours[f"bleu_{k + 1}"] - bleu_ref[k]) for k in range(4)))
        worst["rouge_l"] = max(worst["rouge_l"], abs(ours["rouge_l"] - rouge_ref))
        worst["cider_d"] = max(worst["cider_d"], abs(ours["cider_d"] - cider_ref))
        # leading_space=False: the prediction exactly as given
        plain = {i: [" ".join(w)] for i, w in enumerate(words)}
        _, rouge_plain, _, _ = _coco_scores(plain, gts)
        no_space = _v2c_metric_values([" ".join(w) for w in words], references, leading_space=False)
        worst["no_space_rouge_l"] = max(worst["no_space_rouge_l"], abs(no_space["rouge_l"] - rouge_plain))
        sets += 1
    print(f"v2c parity over {sets} caption sets, worst gaps: {worst}")
    assert sets == 300 and max(worst.values()) < 1e-6, worst


def test_v2c_leading_space_lowers_rouge_l_by_hand():
    # hyp "a b", ref "a b": coco protocol -> identical tokens, ROUGE-L 1.
    # v2c protocol: the hypothesis " a b" splits on " " into ["", "a", "b"]: LCS 2,
    # P = 2/3, R = 2/2 = 1, F = (1 + 1.2^2) P R / (R + 1.2^2 P) = 2.44 * 2/3 / (1 + 0.96) = 0.82993...
    p, r = 2 / 3, 1.0
    expected = (1 + 1.44) * p * r / (r + 1.44 * p)
    assert expected == pytest.approx(1.62666666666666 / 1.96, rel=1e-12)
    coco = CaptionMetrics()
    coco.update(["a b"], [["a b"]])
    assert coco.compute()["rouge_l"].item() == 1.0
    assert _v2c_metric_values(["a b"], [["a b"]])["rouge_l"] == pytest.approx(expected, rel=1e-12)
    assert _v2c_metric_values(["a b"], [["a b"]], leading_space=False)["rouge_l"] == 1.0
    # BLEU and CIDEr split on any whitespace: the space changes neither (two images: CIDEr-D is not 0).
    predictions, references = ["a b", "c"], [["a b"], ["c d"]]
    with_space = _v2c_metric_values(predictions, references)
    without = _v2c_metric_values(predictions, references, leading_space=False)
    for key in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "cider_d"):
        assert with_space[key] == without[key]
    assert with_space["cider_d"] == pytest.approx((5.0 + 10 / 4 / math.sqrt(2) * math.exp(-1 / 72)) / 2, rel=1e-12)
    # No tokenisation under v2c: case and punctuation count (coco's tokenizer would make these equal).
    assert _v2c_metric_values(["A dog."], [["a dog"]])["rouge_l"] == 0.0
    coco = CaptionMetrics()
    coco.update(["A dog."], [["a dog"]])
    assert coco.compute()["rouge_l"].item() == 1.0


def test_coco_protocol_is_the_default_and_unchanged():
    default, explicit = CaptionMetrics(), CaptionMetrics(protocol="coco", leading_space=False)
    for metric in (default, explicit):
        metric.update(_PREDICTIONS, _REFERENCES)
    expected = _functional(_PREDICTIONS, _REFERENCES)
    assert _as_floats(default.compute()) == expected  # bit for bit: the same computation as the functions
    assert _as_floats(explicit.compute()) == expected  # leading_space is ignored outside v2c
    assert default.protocol == "coco" and default.leading_space is True


def test_unknown_protocol_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"^CaptionMetrics: unknown protocol 'V2C' \(known: coco, v2c\)$"):
        CaptionMetrics(protocol="V2C")


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
def test_v2c_protocol_survives_ddp_gathering_and_merging():
    expected = _v2c_metric_values(_PREDICTIONS, _REFERENCES)
    assert expected != _functional(_PREDICTIONS, _REFERENCES)
    split = _synced_compute([(_PREDICTIONS[:2], _REFERENCES[:2])], [(_PREDICTIONS[2:], _REFERENCES[2:])],
                            protocol="v2c")
    assert split == pytest.approx(expected, abs=1e-12)
    rank0, rank1 = CaptionMetrics(protocol="v2c"), CaptionMetrics(protocol="v2c")
    rank0.update(_PREDICTIONS[:3], _REFERENCES[:3], image_ids=[0, 1, 2])
    rank1.update(_PREDICTIONS[3:] + _PREDICTIONS[:1], _REFERENCES[3:] + _REFERENCES[:1], image_ids=[3, 4, 0])
    rank0.merge_state(rank1)
    assert _as_floats(rank0.compute()) == pytest.approx(expected, abs=1e-12)


def test_v2c_java_metrics_get_the_same_raw_strings(monkeypatch):
    seen = []
    monkeypatch.setattr(captioning, "_java_scores", lambda hyps, refs: seen.append((hyps, refs)) or {"meteor": 0.5})
    metric = CaptionMetrics(java_metrics=True, protocol="v2c")
    metric.update(["to go home", ""], [["To go home.", "to rest"], ["happy"]])
    assert metric.compute()["meteor"].item() == 0.5
    assert seen == [([" to go home", ""], [["To go home.", "to rest"], ["happy"]])]


@pytest.mark.slow
@pytest.mark.skipif(captioning.java_metrics_status()["meteor"] is not None,
                    reason=f"METEOR cannot run: {captioning.java_metrics_status()['meteor']}")
def test_v2c_meteor_matches_pycocoevalcap_meteor_called_directly():
    from pycocoevalcap.meteor.meteor import Meteor

    predictions = ["to go home", "", "to be happy now"]
    references = [["To go home.", "to rest"], ["happy"], ["to be happy", "To feel good"]]
    metric = CaptionMetrics(java_metrics=True, protocol="v2c")
    metric.update(predictions, references)
    gts = {i: list(r) for i, r in enumerate(references)}
    res = {i: [_list_to_sentence(p.split())] for i, p in enumerate(predictions)}
    expected, _ = Meteor().compute_score(gts, res)
    assert metric.compute()["meteor"].item() == pytest.approx(expected, abs=1e-6)
