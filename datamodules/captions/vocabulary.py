"""Caption vocabularies in the ``cocotalk`` convention of Karpathy's neuraltalk2 preprocessing
(``scripts/prepro_labels.py`` of github.com/ruotianluo/self-critical.pytorch, which CVLNM's
release reuses): a word list ``words`` where word id ``i + 1`` is ``words[i]`` and id 0 is
the padding, the BOS input and the EOS target at once.

``build_vocabulary`` keeps the words seen more than ``min_count`` times (5 for COCO, giving
9,487 words plus ``UNK``) and maps the rest to ``UNK``; words are counted over whole captions
as Karpathy's script does, and captions are cut to ``MAX_LENGTH`` = 16 words when encoded.
Unlike that script (which counts every split), the datamodules count the training split only,
so no validation or test word decides the vocabulary. Nothing here is specific to COCO: the video
caption data of V2C / MSR-VTT builds its vocabulary the same way.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from polyvision.errors import DataError
from polyvision.metrics.caption_tokenizer import tokenize

__all__ = ["MAX_LENGTH", "PAD_ID", "UNK", "Vocabulary", "build_vocabulary", "tokenize_caption"]

MAX_LENGTH = 16  # words per caption after Karpathy's preprocessing
PAD_ID = 0  # padding, BOS input and EOS target
UNK = "UNK"


def tokenize_caption(caption: str) -> list[str]:
    """The tokens of a raw caption: coco-caption's PTB tokenisation with punctuation removed,
    lower case (``polyvision.metrics.captioning.tokenize``), so vocabularies and metrics see
    the same words."""
    return tokenize(caption)


class Vocabulary:
    """Word ids of one caption corpus: ``words[i]`` has id ``i + 1``; id 0 is padding/BOS/EOS.

    ``encode`` maps unknown words to the id of ``UNK`` (when the vocabulary has one);
    ``decode`` stops at the first 0.
    """

    def __init__(self, words: Sequence[str]):
        self.words = [str(word) for word in words]
        if len(set(self.words)) != len(self.words):
            raise ValueError("Vocabulary: repeated words")
        self.index = {word: i + 1 for i, word in enumerate(self.words)}
        self.unk_id = self.index.get(UNK)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other.words == self.words

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words)"

    def encode(self, tokens: Iterable[str]) -> list[int]:
        ids = []
        for token in tokens:
            found = self.index.get(token, self.unk_id)
            if found is None:
                raise KeyError(f"{token!r} is not in the vocabulary and it has no {UNK}")
            ids.append(found)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        words = []
        for raw in ids:
            i = int(raw)
            if i == PAD_ID:
                break
            words.append(self.words[i - 1])
        return " ".join(words)

    # -- the cocotalk ``ix_to_word`` form and JSON ------------------------------------------
    def ix_to_word(self) -> dict[str, str]:
        return {str(i + 1): word for i, word in enumerate(self.words)}

    @classmethod
    def from_ix_to_word(cls, table: dict[str, str], source: Any = "ix_to_word") -> Vocabulary:
        try:
            ids = sorted(int(key) for key in table)
        except (TypeError, ValueError):
            raise DataError(source, "ix_to_word keys must be word ids 1..V") from None
        if ids != list(range(1, len(ids) + 1)):
            raise DataError(source, f"ix_to_word must number words 1..{len(ids)} without gaps")
        return cls([table[str(i)] for i in ids])

    def to_json(self) -> str:
        return json.dumps({"ix_to_word": self.ix_to_word()})

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        return cls.from_ix_to_word(json.loads(text)["ix_to_word"])


def build_vocabulary(tokenised_captions: Iterable[Sequence[str]], min_count: int = 5) -> Vocabulary:
    """The words of ``tokenised_captions`` seen more than ``min_count`` times, most frequent
    first (ties alphabetical, so the result does not depend on caption order), then ``UNK``
    (always present, so any later word encodes)."""
    counts: Counter[str] = Counter()
    for tokens in tokenised_captions:
        counts.update(tokens)
    kept = sorted((word for word, count in counts.items() if count > min_count and word != UNK),
                  key=lambda word: (-counts[word], word))
    return Vocabulary([*kept, UNK])
