"""The Karpathy reader and the cocotalk format: the synthetic Karpathy JSON read back, a
cocotalk JSON + H5 written from it and read back with identical captions and tags, split
handling (restval, train_on_val), and unusable annotations as one line naming the file."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from polyvision.datamodules.captions.cocotalk import (
    COCOTALK_H5,
    COCOTALK_JSON,
    main,
    read_cocotalk,
    write_cocotalk_from_karpathy,
)
from polyvision.datamodules.captions.karpathy import read_karpathy
from polyvision.datamodules.captions.vocabulary import UNK
from polyvision.errors import DataError


def test_karpathy_splits_fold_restval_into_train(coco_root, synthetic_options):
    COUNTS = synthetic_options["num_images_per_split"]
    path = coco_root / "coco" / "dataset_coco.json"
    raw = json.loads(path.read_text())["images"]
    assert {image["split"] for image in raw} == {"train", "restval", "val", "test"}
    records = read_karpathy(path)
    assert [sum(r.split == split for r in records) for split in ("train", "val", "test")] == \
        [COUNTS["train"], COUNTS["val"], COUNTS["test"]]
    with_val = read_karpathy(path, train_on_val=True)
    assert sum(r.split == "train" for r in with_val) == COUNTS["train"] + COUNTS["val"]
    first = records[0]
    assert first.file_path == f"{raw[0]['filepath']}/{raw[0]['filename']}" and first.item_id == raw[0]["cocoid"]
    assert first.raws == [s["raw"] for s in raw[0]["sentences"]] and first.tags is not None


def test_cocotalk_round_trip(coco_root, tmp_path):
    records = read_karpathy(coco_root / "coco" / "dataset_coco.json")
    # min_count 0: every word gets an id, so the captions must come back exactly
    vocabulary = write_cocotalk_from_karpathy(coco_root / "coco" / "dataset_coco.json", tmp_path, min_count=0)
    with h5py.File(tmp_path / COCOTALK_H5) as h5:
        labels, tags = h5["labels"][()], h5["tags"][()]
        starts, ends = h5["label_start_ix"][()], h5["label_end_ix"][()]
        assert labels.dtype == np.uint32 and labels.shape[1] == 16 and tags.shape == labels.shape
        assert starts[0] == 1 and ends[-1] == len(labels)  # 1-based, inclusive
        assert (starts[1:] == ends[:-1] + 1).all()
    read_vocabulary, read_records = read_cocotalk(tmp_path / COCOTALK_JSON, tmp_path / COCOTALK_H5)
    assert read_vocabulary == vocabulary and UNK in vocabulary
    assert [(r.item_id, r.split, r.file_path) for r in read_records] == \
        [(r.item_id, r.split, r.file_path) for r in records]
    for before, after in zip(records, read_records):
        assert after.tokens == before.tokens
        assert after.tags == before.tags


def test_cocotalk_command_and_rare_words(tmp_path, capsys):
    images = [{"filepath": "val2014", "filename": f"{i}.jpg", "cocoid": i, "split": "train",
               "sentences": [{"tokens": ["a", "dog"] + (["zebra"] if i == 0 else []), "raw": "A dog."}] * 3}
              for i in range(2)]
    source = tmp_path / "dataset_coco.json"
    source.write_text(json.dumps({"images": images}))
    assert main([str(source), str(tmp_path / "out"), "--min-count", "5"]) == 0
    assert "(3 words)" in capsys.readouterr().out  # a, dog, UNK
    vocabulary, records = read_cocotalk(tmp_path / "out" / COCOTALK_JSON, tmp_path / "out" / COCOTALK_H5)
    assert vocabulary.words == ["a", "dog", UNK]
    assert records[0].tokens[0] == ["a", "dog", UNK]  # "zebra" seen 3 times: not kept
    assert records[0].tags[0] == [0, 1, 1]  # computed by the tagger (the source had no tags)


def _one_line(error: pytest.ExceptionInfo, name: str) -> str:
    message = str(error.value)
    assert "\n" not in message and name in message
    return message


def test_missing_sentences_names_the_file_and_image(tmp_path):
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"images": [{"filepath": "val2014", "filename": "x.jpg", "cocoid": 42, "split": "val"}]}))
    with pytest.raises(DataError) as error:
        read_karpathy(path)
    assert "42" in _one_line(error, str(path)) and "sentences" in str(error.value)
    lenient = read_karpathy(path, strict=False)
    assert lenient[0].problem and not lenient[0].tokens


def test_empty_caption_names_the_file_and_image(tmp_path):
    path = tmp_path / "dataset_coco.json"
    sentences = [{"tokens": ["a", "cat"], "raw": "A cat."}, {"tokens": [], "raw": ""}]
    path.write_text(json.dumps({"images": [{"filepath": "val2014", "filename": "x.jpg", "cocoid": 7, "split": "test",
                                            "sentences": sentences}]}))
    with pytest.raises(DataError) as error:
        read_karpathy(path)
    assert "image 7: empty caption" in _one_line(error, str(path))


def test_cocotalk_ranges_that_do_not_match_the_json(coco_root, tmp_path):
    write_cocotalk_from_karpathy(coco_root / "coco" / "dataset_coco.json", tmp_path)
    info = json.loads((tmp_path / COCOTALK_JSON).read_text())
    info["images"].append({"split": "test", "file_path": "val2014/extra.jpg", "id": 1})
    (tmp_path / COCOTALK_JSON).write_text(json.dumps(info))
    with pytest.raises(DataError) as error:
        read_cocotalk(tmp_path / COCOTALK_JSON, tmp_path / COCOTALK_H5)
    _one_line(error, COCOTALK_H5)
