"""The synthetic COCO: Karpathy's layout with images and region features for every image,
true tags per sentence, deterministic in its settings, and ``polyvision synth coco DIR``."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from helpers import run_cli
from polyvision.datamodules.captions.karpathy import read_karpathy
from polyvision.datamodules.captions.synthetic import (
    COLOURS,
    SHAPES,
    SIZES,
    _projection,
    synthetic_coco_is_complete,
    write_synthetic_coco,
)
from polyvision.errors import ConfigError


def test_layout_images_and_features(coco_root, synthetic_options):
    folder = coco_root / "coco"
    assert synthetic_coco_is_complete(coco_root, **synthetic_options)
    images = json.loads((folder / "dataset_coco.json").read_text())["images"]
    regions = []
    for image in images:
        picture = cv2.imread(str(folder / image["filepath"] / image["filename"]))
        assert picture.shape == (64, 64, 3)
        assert image["filepath"] == ("train2014" if image["split"] == "train" else "val2014")
        feat = np.load(folder / "cocobu_att" / f"{image['cocoid']}.npz")["feat"]
        assert feat.dtype == np.float32 and feat.shape[1] == 2048
        regions.append(len(feat))
        assert len(image["sentences"]) in (5, 6) and image["sentids"] == [s["sentid"] for s in image["sentences"]]
        for sentence in image["sentences"]:
            assert len(sentence["tags"]) == len(sentence["tokens"]) <= 16
            assert set(sentence["tags"]) >= {0, 1}  # every caption has function words and nouns
            assert sentence["raw"].lower().rstrip(".") == " ".join(sentence["tokens"])
    assert min(regions) >= 3 and max(regions) <= 7 and len(set(regions)) > 2  # 1-3 shapes + 2-4 background rows
    every_tag = {tag for image in images for s in image["sentences"] for tag in s["tags"]}
    assert every_tag == {0, 1, 2, 3}


def test_captions_name_what_the_features_encode(coco_root, synthetic_options):
    """Undoing the writer's fixed projection, each shape row of the region features decodes to
    a (size, colour, shape) that the captions name, and every shape the captions name has a row."""
    projection = _projection(synthetic_options["seed"])
    unproject = np.linalg.pinv(projection) * np.sqrt(projection.shape[0])
    colours, shapes = list(COLOURS), list(SHAPES)
    for record in read_karpathy(coco_root / "coco" / "dataset_coco.json"):
        codes = np.load(coco_root / "coco" / "cocobu_att" / f"{record.item_id}.npz")["feat"] @ unproject
        shape_rows = codes[codes[:, -1] < 0.5]  # background rows carry the flag
        decoded = {(SIZES[int(np.argmax(row[12:14]))], colours[int(np.argmax(row[:7]))],
                    shapes[int(np.argmax(row[7:12]))]) for row in shape_rows}
        named, sized = set(), set()
        for tokens in record.tokens:
            for i in range(1, len(tokens)):
                if tokens[i] in SHAPES and tokens[i - 1] in COLOURS:
                    named.add((tokens[i - 1], tokens[i]))
                    if i > 1 and tokens[i - 2] in SIZES:
                        sized.add((tokens[i - 2], tokens[i - 1], tokens[i]))
        assert {(colour, shape) for _, colour, shape in decoded} == named, record.item_id
        assert sized <= decoded, record.item_id


def test_deterministic_in_its_settings(tmp_path):
    options = {"num_images_per_split": 3, "image_size": 32}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        write_synthetic_coco(tmp_path / name, seed=seed, progress=False, **options)
    read = lambda name: (tmp_path / name / "coco" / "dataset_coco.json").read_text()
    assert read("a") == read("b") and read("a") != read("c")
    image_id = json.loads(read("a"))["images"][0]["cocoid"]
    feats = [np.load(tmp_path / name / "coco" / "cocobu_att" / f"{image_id}.npz")["feat"] for name in "ab"]
    assert np.array_equal(*feats)
    with pytest.raises(ConfigError):
        write_synthetic_coco(tmp_path / "d", num_images_per_split={"training": 3}, progress=False)


def test_synth_coco_command(tmp_path):
    result = run_cli("synth", "coco", str(tmp_path), "--seed", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"wrote synthetic coco dataset to {tmp_path}" in result.stdout
    marker = json.loads((tmp_path / "coco" / "COMPLETE").read_text())
    assert marker["seed"] == 2 and marker["num_images_per_split"] == {"train": 400, "val": 50, "test": 50}
    records = read_karpathy(tmp_path / "coco" / "dataset_coco.json")
    assert len(records) == 500 and all((tmp_path / "coco" / r.file_path).is_file() for r in records)
