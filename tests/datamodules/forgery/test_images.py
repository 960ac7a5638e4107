"""Face-forgery image data: synthetic writer -> readers -> Dataset -> DataModule."""
from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from polyvision.datamodules.base import (
    SkippingDataset,
    SourceCollate,
    class_balanced_indices,
)
from polyvision.datamodules.forgery.annotations import ImageRecord, load_annotations
from polyvision.datamodules.forgery.ffpp import FaceForensicsDataModule
from polyvision.datamodules.forgery.images import ForgeryImageDataset
from polyvision.datamodules.forgery.synthetic_images import (
    FFPP_DIRNAME,
    FFPP_METHODS,
    SYNTHETIC_WRITERS,
    synthetic_ffpp_is_complete,
    write_synthetic_ffpp,
)
from polyvision.datamodules.synthetic import MARKER_NAME
from polyvision.errors import DataError
from torch.utils.data import DataLoader

NUM_VIDEOS, FRAMES = 14, 4
ANN = "FaceForensics++/annotations"
SUB_LABELS = {"Deepfakes": "FF-DF", "Face2Face": "FF-F2F", "FaceSwap": "FF-FS", "NeuralTextures": "FF-NT"}


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ffpp")
    write_synthetic_ffpp(root, num_videos=NUM_VIDEOS, frames_per_video=FRAMES, image_size=64, seed=3, progress=False)
    return root


@pytest.fixture()
def synth_copy(synth_root, tmp_path) -> Path:
    """A private copy that a test may damage."""
    shutil.copytree(synth_root, tmp_path / "data")
    return tmp_path / "data"


def _video_of(record: ImageRecord) -> str:
    return Path(record.image_path).parent.name


def test_writer_layout_and_round_trip(synth_root):
    ds_dir = synth_root / "FaceForensics++"
    assert (ds_dir / "original_sequences/youtube/c23/frames").is_dir()
    for method in FFPP_METHODS:
        assert (ds_dir / "manipulated_sequences" / method / "c23/frames").is_dir()
        assert (ds_dir / "manipulated_sequences" / method / "c23/masks").is_dir()
    assert SYNTHETIC_WRITERS["ffpp"] is write_synthetic_ffpp

    splits = {}
    for split in ("train", "val", "test"):
        raw = json.loads((synth_root / ANN / f"{split}.json").read_text())
        assert set(raw) == {"metainfo", "data_list"}
        assert all(not os.path.isabs(r["img_path"]) and r["img_path"].startswith("FaceForensics++/")
                   for r in raw["data_list"])
        splits[split] = load_annotations(synth_root / ANN / f"{split}.json", synth_root)
        labels = [r.label for r in splits[split]]
        assert 0 in labels and 1 in labels, split
    assert sum(len(r) for r in splits.values()) == NUM_VIDEOS * FRAMES
    assert len(splits["train"]) > len(splits["val"])
    # disjoint by video folder, and by identity (fakes are made on the same split's identities)
    folders = {s: {str(Path(r.image_path).parent) for r in recs} for s, recs in splits.items()}
    idents = {s: {_video_of(r)[:3] for r in recs} for s, recs in splits.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not folders[a] & folders[b]
        assert not idents[a] & idents[b]
    all_labels = [r.label for recs in splits.values() for r in recs]
    assert abs(sum(all_labels) - len(all_labels) / 2) <= FRAMES  # balanced real/fake

    ds = ForgeryImageDataset(splits["train"], image_size=48, train=False, augment=False)
    saw_soft = False
    for i in range(len(ds)):
        sample = ds[i]
        assert set(sample) == {"image", "label", "mask", "has_mask", "has_mask_file", "meta"}
        assert sample["image"].shape == (3, 48, 48) and sample["image"].dtype == torch.uint8
        assert sample["label"].shape == () and sample["label"].dtype == torch.int64
        assert sample["mask"].shape == (1, 48, 48) and sample["mask"].dtype == torch.float32
        assert sample["has_mask"].shape == () and sample["has_mask"].dtype == torch.bool
        assert bool(sample["has_mask"])
        assert bool(sample["has_mask_file"]) == (sample["label"].item() == 1)
        meta = sample["meta"]
        assert meta["path"] == splits["train"][i].image_path and meta["original_size"] == [64, 64]
        assert meta["index"] == i
        json.dumps(meta)
        mask = sample["mask"]
        assert 0.0 <= float(mask.min()) and float(mask.max()) <= 1.0
        if int(sample["label"]) == 1:
            assert float(mask.sum()) > 0
            saw_soft |= bool(((mask > 0.05) & (mask < 0.95)).any())
        else:
            assert float(mask.abs().sum()) == 0.0
    assert saw_soft


def test_writer_is_deterministic(synth_root, tmp_path):
    write_synthetic_ffpp(tmp_path, num_videos=NUM_VIDEOS, frames_per_video=FRAMES, image_size=64, seed=3, progress=False)
    for rel in ("FaceForensics++/annotations/train.json",
                "FaceForensics++/manipulated_sequences/Deepfakes/c23/masks/000_001/002.png",
                "FaceForensics++/original_sequences/youtube/c23/frames/003/001.png"):
        assert (tmp_path / rel).read_bytes() == (synth_root / rel).read_bytes(), rel
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_forged_area_fraction(synth_root):
    recs = load_annotations(synth_root / ANN / "train.json", synth_root)
    cover = [np.asarray(Image.open(r.mask_path)).mean() / 255 for r in recs if r.label == 1]
    assert cover and 0.08 < min(cover) and max(cover) < 0.4


def _nested(records: list[ImageRecord], root: Path, split: str, compression: bool, masks: bool) -> dict:
    out: dict = defaultdict(lambda: defaultdict(dict))
    for r in records:
        rel = Path(r.image_path).relative_to(root)
        parts = rel.parts
        sub = "FF-real" if parts[1] == "original_sequences" else SUB_LABELS[parts[2]]
        videos = out[sub].setdefault(split, {})
        if compression:
            videos = videos.setdefault("c23", {})
        entry = videos.setdefault(f"{sub}/{_video_of(r)}", {"label": sub, "frames": []})
        entry["frames"].append(rel.as_posix())
        if masks and r.mask_path:
            entry.setdefault("masks", []).append(Path(r.mask_path).relative_to(root).as_posix())
    return {"FaceForensics++": out}


@pytest.mark.parametrize("compression,masks", [(True, True), (False, False)])
def test_deepfakebench_nested_json_matches(synth_root, tmp_path, compression, masks):
    omnifd = load_annotations(synth_root / ANN / "val.json", synth_root)
    nested = _nested(omnifd, synth_root, "val", compression, masks)
    # another split in the same file must be filtered out
    nested["FaceForensics++"]["FF-real"]["train"] = {"x": {"label": "FF-real", "frames": ["does/not/exist.png"]}}
    path = tmp_path / "FaceForensics++.json"
    path.write_text(json.dumps(nested))
    dfb = load_annotations(path, synth_root, split="val")  # masks derived from frame paths when absent
    key = lambda r: (r.image_path, r.label, r.mask_path)  # noqa: E731
    assert sorted(map(key, dfb)) == sorted(map(key, omnifd))
    assert {r.extra["split"] for r in dfb} == {"val"}

    with pytest.raises(DataError, match=r"label 'FF-(DF|F2F|FS|NT)' is not in label_dict"):
        load_annotations(path, synth_root, split="val", label_dict={"FF-real": 0})
    with pytest.raises(DataError, match=r"split 'nope' not found"):
        load_annotations(path, synth_root, split="nope")


def _write(tmp_path: Path, content) -> Path:
    path = tmp_path / "annotations" / "train.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize(
    "content,pattern",
    [
        ('{"metainfo": {}, "data_list": [', r"malformed JSON"),
        ({"metainfo": {}}, r"missing key 'data_list'"),
        ({"data_list": []}, r"missing key 'metainfo'"),
        ({"metainfo": {}, "data_list": [{"img_path": "a.png", "gt_label": 0}, {"img_path": "a.png"}]},
         r"data_list\[1\]: missing field 'gt_label'"),
        ({"metainfo": {}, "data_list": [{"gt_label": 1}]}, r"data_list\[0\]: missing field 'img_path'"),
        ({"metainfo": {}, "data_list": [{"img_path": "a.png", "gt_label": 2}]},
         r"data_list\[0\]: field 'gt_label' must be 0 or 1, got 2"),
        ({"metainfo": {}, "data_list": [{"img_path": "a.png", "gt_label": 0}, {"img_path": "b.png", "gt_label": 1}]},
         r"data_list\[1\]: image file not found: .*b\.png"),
        ([1, 2], r"expected a JSON object"),
        ({"foo": [1]}, r"unrecognised annotation format"),
    ],
)
def test_bad_annotations_raise_data_error(tmp_path, content, pattern):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    path = _write(tmp_path, content)
    with pytest.raises(DataError, match=pattern) as info:
        load_annotations(path, tmp_path)
    assert str(info.value).startswith(str(path) + ": ")
    assert "annotations/train.json" in str(info.value)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(DataError, match="annotation file not found"):
        load_annotations(tmp_path / "nope.json", tmp_path)


def test_missing_mask_file_is_unknown_mask(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    path = _write(tmp_path, {"metainfo": {}, "data_list": [
        {"img_path": "a.png", "gt_label": 1, "seg_map_path": "missing.png"}]})
    with pytest.warns(UserWarning, match="1 mask file"):
        recs = load_annotations(path, tmp_path)
    assert recs[0].mask_path is None
    sample = ForgeryImageDataset(recs, 8)[0]
    assert not bool(sample["has_mask"]) and not bool(sample["has_mask_file"]) and float(sample["mask"].sum()) == 0


def test_corrupt_image_and_bad_mask_raise_at_getitem(tmp_path):
    Image.new("RGB", (128, 128)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage, not an image")
    Image.new("L", (64, 64)).save(tmp_path / "small_mask.png")
    path = _write(tmp_path, {"metainfo": {}, "data_list": [
        {"img_path": "bad.png", "gt_label": 0},
        {"img_path": "ok.png", "gt_label": 1, "seg_map_path": "small_mask.png"},
    ]})
    ds = ForgeryImageDataset(load_annotations(path, tmp_path), 32, train=True, augment=True)
    with pytest.raises(DataError, match=r"bad\.png: cannot decode image \("):
        ds[0]
    with pytest.raises(DataError, match=r"small_mask\.png: mask is 64x64 but image is 128x128"):
        ds[1]


def test_skip_bad_samples_in_datamodule(synth_copy):
    test_ann = synth_copy / ANN / "test.json"
    first = json.loads(test_ann.read_text())["data_list"][0]["img_path"]
    (synth_copy / first).write_bytes(b"not a png")
    n = len(json.loads(test_ann.read_text())["data_list"])

    dm = FaceForensicsDataModule(root=str(synth_copy), image_size=32, batch_size=5, num_workers=0,
                                 skip_bad_samples=True)
    dm.setup("test")
    total = skipped = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for batch in dm.test_dataloader():
            assert batch["source"] == "image"
            total += batch["image"].shape[0]
            skipped += int(batch["num_skipped"])
    assert (total, skipped) == (n - 1, 1)
    assert any("skipping bad sample" in str(w.message) and "cannot decode image" in str(w.message) for w in caught)

    strict = FaceForensicsDataModule(root=str(synth_copy), image_size=32, batch_size=5, num_workers=0)
    strict.setup("test")
    with pytest.raises(DataError, match="cannot decode image"):
        next(iter(strict.test_dataloader()))


def test_skipping_dataset_direct(synth_root, tmp_path):
    recs = load_annotations(synth_root / ANN / "val.json", synth_root)[:6]
    (tmp_path / "bad.png").write_bytes(b"garbage")
    recs[2] = ImageRecord(str(tmp_path / "bad.png"), 0)
    loader = DataLoader(SkippingDataset(ForgeryImageDataset(recs, 32), True), batch_size=4,
                        collate_fn=SourceCollate("image"))
    with pytest.warns(UserWarning, match="skipping bad sample"):
        batches = list(loader)
    assert sum(b["image"].shape[0] for b in batches) == 5
    assert sum(int(b["num_skipped"]) for b in batches) == 1


def test_augmentation_is_seeded(synth_root):
    recs = load_annotations(synth_root / ANN / "train.json", synth_root)[-8:]

    def run():
        torch.manual_seed(7)
        ds = ForgeryImageDataset(recs, 56, train=True, augment=True)
        return torch.stack([ds[i]["image"] for i in range(len(ds))])

    a, b = run(), run()
    assert torch.equal(a, b)
    plain = torch.stack([ForgeryImageDataset(recs, 56, train=False)[i]["image"] for i in range(len(recs))])
    assert not torch.equal(a, plain)


def test_val_falls_back_to_test(synth_copy):
    (synth_copy / ANN / "val.json").unlink()
    dm = FaceForensicsDataModule(root=str(synth_copy), image_size=32, batch_size=4, num_workers=0)
    with pytest.warns(UserWarning, match="validating on the test split"):
        dm.setup("validate")
    assert [r.image_path for r in dm.datasets["val"].records] == \
        [r.image_path for r in load_annotations(synth_copy / ANN / "test.json", synth_copy)]


def test_class_balanced_indices_repeat_rare_classes_linearly():
    labels = [1, 1, 1, 1, 0, 1, 1, 1, 1, 0]  # 20 % real: max_f / f = 0.8 / 0.2 = 4
    indices = class_balanced_indices(labels)
    assert indices == [0, 1, 2, 3, 4, 4, 4, 4, 5, 6, 7, 8, 9, 9, 9, 9]
    assert class_balanced_indices([0, 1, 1]) == [0, 0, 1, 2]  # f = 1/3: ceil(2) = 2
    assert class_balanced_indices([0, 1, 0, 1]) == [0, 1, 2, 3]  # balanced: untouched
    assert class_balanced_indices([0, 1, 1], oversample_thr=0.3) == [0, 1, 2]  # 1/3 is not rare enough


def test_class_balance_option_oversamples_reals_in_training_only(synth_copy):
    train_json = synth_copy / ANN / "train.json"
    data = json.loads(train_json.read_text())
    reals = [r for r in data["data_list"] if r["gt_label"] == 0]
    data["data_list"] = [r for r in data["data_list"] if r["gt_label"] == 1] + reals[:3]  # FF++-like imbalance
    train_json.write_text(json.dumps(data))
    dm = FaceForensicsDataModule(root=str(synth_copy), image_size=32, batch_size=4, num_workers=0, class_balance=True)
    dm.setup("fit")
    labels = dm.datasets["train"].labels
    reals, fakes = labels.count(0), labels.count(1)
    assert fakes > reals > 0
    train = dm.train_dataloader().dataset
    balanced = [labels[i] for i in train.dataset.indices]
    assert balanced.count(1) == fakes and balanced.count(0) == reals * math.ceil(fakes / reals - 1e-9)
    assert len(dm.val_dataloader().dataset) == len(dm.datasets["val"])


def test_synthetic_datamodule(tmp_path):
    cache = tmp_path / "cache"
    dm = FaceForensicsDataModule(synthetic=True, cache_dir=str(cache), image_size=64, batch_size=8,
                                 num_workers=0, synthetic_samples=60)
    dm.prepare_data()
    marker = cache / FFPP_DIRNAME / MARKER_NAME
    assert marker.is_file()
    assert synthetic_ffpp_is_complete(cache, **dm.synthetic_settings)
    mtime = marker.stat().st_mtime_ns
    dm.prepare_data()  # already complete: no regeneration
    assert marker.stat().st_mtime_ns == mtime
    FaceForensicsDataModule(synthetic=True, cache_dir=str(cache), num_workers=0, synthetic_samples=60).prepare_data()
    assert marker.stat().st_mtime_ns == mtime

    dm.setup("fit")
    assert dm.num_train_samples == len(dm.datasets["train"]) > 0
    batch = next(iter(dm.train_dataloader()))
    assert batch["source"] == "image"
    assert {"image", "label", "mask", "has_mask", "has_mask_file", "meta", "source", "num_skipped"} <= set(batch)
    assert batch["image"].shape == (8, 3, 64, 64) and batch["image"].dtype == torch.uint8
    assert batch["label"].shape == (8,) and batch["label"].dtype == torch.int64
    assert batch["mask"].shape == (8, 1, 64, 64) and batch["mask"].dtype == torch.float32
    assert batch["has_mask"].shape == (8,) and batch["has_mask"].dtype == torch.bool
    assert len(batch["meta"]) == 8 and int(batch["num_skipped"]) == 0
    val = next(iter(dm.val_dataloader()))
    assert val["source"] == "image"
    assert dm.hparams.synthetic_samples == 60

    # different settings regenerate in place
    bigger = FaceForensicsDataModule(synthetic=True, cache_dir=str(cache), num_workers=0, synthetic_samples=80)
    bigger.prepare_data()
    assert json.loads(marker.read_text())["num_videos"] == bigger.synthetic_settings["num_videos"] == 16
    bigger.setup("test")
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]


def test_synthetic_writer_refuses_foreign_directory(tmp_path):
    (tmp_path / "FaceForensics++").mkdir()
    (tmp_path / "FaceForensics++" / "precious.txt").write_text("user data")
    with pytest.raises(DataError, match="not a synthetic dataset"):
        write_synthetic_ffpp(tmp_path, num_videos=6, frames_per_video=1, progress=False)
    assert (tmp_path / "FaceForensics++" / "precious.txt").exists()


def test_real_data_requires_root():
    from polyvision.errors import ConfigError

    with pytest.raises(ConfigError, match="root"):
        FaceForensicsDataModule()
