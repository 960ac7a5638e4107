"""The dataset-neutral form every caption reader returns: one ``CaptionRecord`` per image (or
video) with its captions as raw strings and token lists, optional per-token module tags, and
a ``problem`` when the annotation of that item is unusable (read leniently, so that
``skip_bad_samples`` can skip the item and count it instead of stopping the run)."""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CaptionRecord"]


@dataclass
class CaptionRecord:
    """One captioned item.

    Attributes:
        item_id: the image (COCO ``cocoid``) or video id; features are keyed by it.
        file_path: the image or video path relative to the media folder.
        split: ``train``, ``val`` or ``test`` (the split the item is used in).
        tokens: one token list per caption (lower case, no punctuation).
        raws: the raw caption strings, as references for the metrics.
        tags: per caption, the module class of each token (0 function word, 1 noun, 2 verb,
            3 adjective), when the data carries them; ``None`` to tag them offline.
        source: the annotation file, named in errors.
        problem: why this item cannot be used, or ``None``.
    """

    item_id: int
    file_path: str
    split: str
    tokens: list[list[str]] = field(default_factory=list)
    raws: list[str] = field(default_factory=list)
    tags: list[list[int]] | None = None
    source: str = ""
    problem: str | None = None
