"""Reader of Karpathy's COCO split file ``dataset_coco.json`` (cs.stanford.edu/people/karpathy/
deepimagesent, the split every COCO captioning paper reports on since 2015).

The file holds ``{"images": [...], "dataset": "coco"}``; each image has ``filepath``
(``train2014`` or ``val2014``), ``filename``, ``cocoid``, ``split`` (``train``, ``restval``,
``val`` or ``test``) and ``sentences``, each with ``tokens`` (lower case, punctuation removed)
and ``raw``. Splits as the captioning code uses them: ``restval`` joins ``train`` (113,287
training images), ``val`` and ``test`` hold 5,000 each.

CVLNM's release (github.com/GCYZSL/CVLMN, ``dataloader.py``) also adds the ``val`` images to
training. ``train_on_val`` does the same, but is off by default: we select checkpoints on
``val``, and a model selected on images it trained on is selected on its training loss.
A sentence may carry an extra ``tags`` list (the module class of each token, as our synthetic
writer stores); readers of the real file find none and tag offline.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from polyvision.datamodules.captions.records import CaptionRecord
from polyvision.datamodules.captions.vocabulary import tokenize_caption
from polyvision.errors import DataError

__all__ = ["KARPATHY_FILE", "KARPATHY_SPLITS", "read_karpathy", "used_split"]

KARPATHY_FILE = "dataset_coco.json"
KARPATHY_SPLITS = ("train", "restval", "val", "test")


def used_split(split: str, train_on_val: bool = False) -> str:
    """The split an image of Karpathy split ``split`` is used in."""
    if split == "restval" or (train_on_val and split == "val"):
        return "train"
    return split


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (OSError, ValueError) as error:
        raise DataError(path, f"not readable as JSON ({error})") from None


def _sentence(raw_sentence: Any, path: Path, image_id: Any) -> tuple[list[str], str, list[int] | None]:
    """Tokens, raw string and optional tags of one entry of ``sentences``."""
    if not isinstance(raw_sentence, dict):
        raise DataError(path, f"image {image_id}: each sentence must be an object with tokens and raw")
    raw = str(raw_sentence.get("raw", ""))
    tokens = raw_sentence.get("tokens")
    if tokens is None:
        tokens = tokenize_caption(raw)
    tokens = [str(token) for token in tokens]
    if not tokens:
        raise DataError(path, f"image {image_id}: empty caption (sentence {raw_sentence.get('sentid', '?')})")
    tags = raw_sentence.get("tags")
    if tags is not None:
        if len(tags) != len(tokens):
            raise DataError(path, f"image {image_id}: {len(tags)} tags for {len(tokens)} tokens")
        tags = [int(tag) for tag in tags]
    return tokens, raw or " ".join(tokens), tags


def read_karpathy(path: str | os.PathLike, train_on_val: bool = False, strict: bool = True) -> list[CaptionRecord]:
    """All images of a ``dataset_coco.json`` as records (``split`` the used split).

    With ``strict`` an unusable image (no ``sentences``, an empty caption, a missing field)
    raises a ``DataError`` naming the file and the image; otherwise its record carries the
    reason in ``problem`` and reading goes on.
    """
    path = Path(path).expanduser()
    data = _load_json(path)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise DataError(path, "expected a Karpathy split file: an object with an 'images' list")
    records = []
    for index, image in enumerate(images):
        if not isinstance(image, dict):
            raise DataError(path, f"images[{index}] is not an object")
        image_id = image.get("cocoid", image.get("id", f"at index {index}"))
        missing = [key for key in ("filepath", "filename", "split") if key not in image]
        if "cocoid" not in image and "id" not in image:
            missing.insert(0, "cocoid")
        if missing:
            raise DataError(path, f"image {image_id}: missing {', '.join(missing)}")
        if image["split"] not in KARPATHY_SPLITS:
            raise DataError(path, f"image {image_id}: unknown split {image['split']!r} "
                            f"(expected one of {', '.join(KARPATHY_SPLITS)})")
        record = CaptionRecord(item_id=int(image_id), file_path=f"{image['filepath']}/{image['filename']}",
                               split=used_split(image["split"], train_on_val), source=str(path))
        try:
            sentences = image.get("sentences")
            if not sentences:
                raise DataError(path, f"image {image_id}: no 'sentences' (captions)")
            parsed = [_sentence(sentence, path, image_id) for sentence in sentences]
        except DataError as error:
            if strict:
                raise
            record.problem = error.reason
        else:
            record.tokens = [tokens for tokens, _, _ in parsed]
            record.raws = [raw for _, raw, _ in parsed]
            tags = [tag for _, _, tag in parsed]
            record.tags = tags if all(tag is not None for tag in tags) else None  # type: ignore[assignment]
        records.append(record)
    return records
