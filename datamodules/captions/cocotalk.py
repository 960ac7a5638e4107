"""The ``cocotalk`` caption format: ``cocotalk.json`` + ``cocotalk_label.h5``, as written by
``scripts/prepro_labels.py`` of github.com/ruotianluo/self-critical.pytorch (CVLNM's release
names them ``cocobu.json`` / ``cocobu_label.h5`` and adds ``tags``).

- JSON: ``ix_to_word`` ({"1": "a", ...}; id 0 is padding/BOS/EOS) and ``images``, a list
  aligned with the H5 image rows, each ``{"split", "file_path", "id"}``.
- H5: ``labels`` (M, 16) uint32 word ids, zero-padded; ``label_start_ix`` and
  ``label_end_ix`` (N,) the 1-based, inclusive caption rows of each image; ``label_length``
  (M,); and CVLNM's ``tags`` (M, 16), the module class of each token (0 function word, 1 noun,
  2 verb, 3 adjective; 0 on padding).

A user brings the release's preprocessed files, or has ours written from a Karpathy JSON:
``write_cocotalk_from_karpathy`` (also ``python -m polyvision.datamodules.captions.cocotalk
dataset_coco.json OUT_DIR``) builds the vocabulary on the training split (count > 5), cuts
captions to 16 words, tags them (the data's tags, else ``pos.tag_tokens``) and writes both
files. The files hold word ids only, so references read back from them are the decoded words
(with ``UNK``); the datamodule takes raw references from the Karpathy JSON when it is there.
"""
from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from polyvision.datamodules.captions.karpathy import read_karpathy
from polyvision.datamodules.captions.pos import tag_tokens
from polyvision.datamodules.captions.records import CaptionRecord
from polyvision.datamodules.captions.vocabulary import (
    MAX_LENGTH,
    Vocabulary,
    build_vocabulary,
)
from polyvision.errors import DataError

__all__ = ["COCOTALK_H5", "COCOTALK_JSON", "read_cocotalk", "write_cocotalk", "write_cocotalk_from_karpathy"]

COCOTALK_JSON = "cocotalk.json"
COCOTALK_H5 = "cocotalk_label.h5"
H5_KEYS = ("labels", "label_start_ix", "label_end_ix", "label_length")


def write_cocotalk(records: Sequence[CaptionRecord], vocabulary: Vocabulary, json_path: str | os.PathLike,
                   h5_path: str | os.PathLike, max_length: int = MAX_LENGTH) -> None:
    """Write ``records`` (usable ones, in order) as a cocotalk JSON + H5 pair."""
    import h5py

    labels, tags, lengths, starts, ends, images = [], [], [], [], [], []
    for record in records:
        if record.problem is not None:
            continue
        record_tags = record.tags if record.tags is not None else [tag_tokens(tokens) for tokens in record.tokens]
        starts.append(len(labels) + 1)
        for tokens, caption_tags in zip(record.tokens, record_tags):
            ids = vocabulary.encode(tokens[:max_length])
            row = np.zeros(max_length, np.uint32)
            row[: len(ids)] = ids
            tag_row = np.zeros(max_length, np.int32)
            tag_row[: len(ids)] = caption_tags[: len(ids)]
            labels.append(row)
            tags.append(tag_row)
            lengths.append(len(ids))
        ends.append(len(labels))
        images.append({"split": record.split, "file_path": record.file_path, "id": int(record.item_id)})
    Path(json_path).write_text(json.dumps({"ix_to_word": vocabulary.ix_to_word(), "images": images}))
    with h5py.File(h5_path, "w") as h5:
        h5.create_dataset("labels", data=np.stack(labels) if labels else np.zeros((0, max_length), np.uint32))
        h5.create_dataset("tags", data=np.stack(tags) if tags else np.zeros((0, max_length), np.int32))
        h5.create_dataset("label_start_ix", data=np.asarray(starts, np.int64))
        h5.create_dataset("label_end_ix", data=np.asarray(ends, np.int64))
        h5.create_dataset("label_length", data=np.asarray(lengths, np.int64))


def write_cocotalk_from_karpathy(karpathy_json: str | os.PathLike, out_dir: str | os.PathLike, min_count: int = 5,
                                 train_on_val: bool = False) -> Vocabulary:
    """The vocabulary-building step: read ``dataset_coco.json``, build the vocabulary on the
    training images, write ``out_dir/cocotalk.json`` and ``out_dir/cocotalk_label.h5``."""
    records = read_karpathy(karpathy_json, train_on_val=train_on_val)
    vocabulary = build_vocabulary((tokens for record in records if record.split == "train" for tokens in record.tokens),
                                  min_count=min_count)
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    write_cocotalk(records, vocabulary, out / COCOTALK_JSON, out / COCOTALK_H5)
    return vocabulary


def read_cocotalk(json_path: str | os.PathLike, h5_path: str | os.PathLike,
                  strict: bool = True) -> tuple[Vocabulary, list[CaptionRecord]]:
    """The vocabulary and the images of a cocotalk pair. ``restval`` images are used in
    training. An image without captions (or with an empty one) raises a ``DataError``
    naming the file and the image, or, without ``strict``, carries it in ``problem``."""
    import h5py

    json_path, h5_path = Path(json_path).expanduser(), Path(h5_path).expanduser()
    try:
        info = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise DataError(json_path, "file not found") from None
    except (OSError, ValueError) as error:
        raise DataError(json_path, f"not readable as JSON ({error})") from None
    if not isinstance(info, dict) or "ix_to_word" not in info or not isinstance(info.get("images"), list):
        raise DataError(json_path, "expected a cocotalk JSON with 'ix_to_word' and an 'images' list")
    vocabulary = Vocabulary.from_ix_to_word(info["ix_to_word"], json_path)
    if not h5_path.is_file():
        raise DataError(h5_path, "file not found")
    try:
        with h5py.File(h5_path, "r") as h5:
            missing = [key for key in H5_KEYS if key not in h5]
            if missing:
                raise DataError(h5_path, f"missing dataset(s) {', '.join(missing)}")
            labels = h5["labels"][()]
            starts, ends = h5["label_start_ix"][()], h5["label_end_ix"][()]
            lengths = h5["label_length"][()]
            tags = h5["tags"][()] if "tags" in h5 else None
    except OSError as error:
        raise DataError(h5_path, f"not readable as HDF5 ({error})") from None
    images = info["images"]
    if len(starts) != len(images) or len(ends) != len(images):
        raise DataError(h5_path, f"{len(starts)} label ranges for {len(images)} images in {json_path.name}")
    if tags is not None and tags.shape != labels.shape:
        raise DataError(h5_path, f"tags of shape {tags.shape} differ from labels {labels.shape}")
    if labels.size and int(labels.max()) > len(vocabulary):
        raise DataError(h5_path, f"word id {int(labels.max())} beyond the {len(vocabulary)} words of {json_path.name}")
    records = []
    for index, image in enumerate(images):
        image_id = image.get("id", index)
        split = image.get("split", "train")
        record = CaptionRecord(item_id=int(image_id), file_path=str(image.get("file_path", "")),
                               split="train" if split == "restval" else split, source=str(h5_path))
        start, end = int(starts[index]), int(ends[index])
        rows = range(start - 1, end)  # 1-based inclusive -> 0-based rows
        problem = None
        if start < 1 or end < start or end > len(labels):
            problem = f"image {image_id}: no captions (label rows {start}..{end})"
        elif any(int(lengths[row]) == 0 for row in rows):
            problem = f"image {image_id}: empty caption"
        if problem is not None:
            if strict:
                raise DataError(h5_path, problem)
            record.problem = problem
        else:
            record.tokens = [vocabulary.decode(labels[row]).split() for row in rows]
            record.raws = [" ".join(tokens) for tokens in record.tokens]
            if tags is not None:
                record.tags = [[int(tag) for tag in tags[row][: len(tokens)]] for row, tokens in zip(rows, record.tokens)]
        records.append(record)
    return vocabulary, records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polyvision.datamodules.captions.cocotalk",
                                     description="Write cocotalk.json + cocotalk_label.h5 from a Karpathy dataset_coco.json.")
    parser.add_argument("karpathy_json", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--min-count", type=int, default=5, help="keep words seen more than this many times")
    args = parser.parse_args(argv)
    vocabulary = write_cocotalk_from_karpathy(args.karpathy_json, args.out_dir, args.min_count)
    print(f"wrote {args.out_dir / COCOTALK_JSON} and {args.out_dir / COCOTALK_H5} ({len(vocabulary)} words)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
