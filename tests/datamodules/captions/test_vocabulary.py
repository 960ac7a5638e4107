"""Vocabulary: the count > min_count threshold, UNK, the cocotalk id convention, encode/decode
and its JSON form."""
from __future__ import annotations

import json

import pytest
from polyvision.datamodules.captions.vocabulary import (
    UNK,
    Vocabulary,
    build_vocabulary,
    tokenize_caption,
)
from polyvision.errors import DataError


def test_threshold_keeps_words_seen_more_than_min_count():
    captions = [["a", "dog"]] * 6 + [["a", "cat"]] * 5 + [["a", "bird", "flies"]]
    vocabulary = build_vocabulary(captions, min_count=5)
    # "a" 12 times, "dog" 6 (> 5): kept; "cat" exactly 5: dropped; "bird" once: dropped
    assert vocabulary.words == ["a", "dog", UNK]
    assert build_vocabulary(captions, min_count=4).words == ["a", "dog", "cat", UNK]
    assert build_vocabulary(captions, min_count=0).words == ["a", "dog", "cat", "bird", "flies", UNK]


def test_word_order_does_not_depend_on_caption_order():
    captions = [["b", "a"]] * 3 + [["c"]] * 3
    assert build_vocabulary(captions, 0).words == build_vocabulary(captions[::-1], 0).words == ["a", "b", "c", UNK]


def test_ids_follow_cocotalk_and_unknown_words_map_to_unk():
    vocabulary = Vocabulary(["a", "dog", UNK])
    assert len(vocabulary) == 3
    assert vocabulary.encode(["a", "dog", "zebra"]) == [1, 2, 3]
    assert vocabulary.decode([1, 2, 0, 2]) == "a dog"  # stops at the first 0 (EOS)
    assert vocabulary.ix_to_word() == {"1": "a", "2": "dog", "3": UNK}
    assert Vocabulary.from_json(vocabulary.to_json()) == vocabulary
    with pytest.raises(KeyError):
        Vocabulary(["a"]).encode(["b"])


def test_a_gapped_ix_to_word_is_a_data_error():
    with pytest.raises(DataError, match="without gaps"):
        Vocabulary.from_json(json.dumps({"ix_to_word": {"1": "a", "3": "b"}}))


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize_caption("A Dog, running on the beach.") == ["a", "dog", "running", "on", "the", "beach"]
