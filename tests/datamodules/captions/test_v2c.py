"""V2C data for HybridNet: the synthetic writer's real layout, the reader, the feature
selection (20 of 40 appearance rows, 10-row motion/audio), the datamodule's batches on both
feature paths, bad input, and ``polyvision synth v2c DIR``."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli
from polyvision.datamodules.captions.synthetic_v2c import (
    APPEARANCE_DIR,
    MOTION_DIR,
    MOTION_PATTERN,
    V2C_DIRNAME,
    synthetic_v2c_is_complete,
    write_synthetic_v2c,
)
from polyvision.datamodules.captions.v2c import CAPTION_FILE, CMS_TYPES, read_v2c
from polyvision.datamodules.captions.v2c_datamodule import V2CDataModule
from polyvision.datamodules.captions.v2c_features import reduce_rows, select_appearance
from polyvision.datamodules.seeding import seed_sample
from polyvision.errors import DataError

COUNTS = {"train": 6, "val": 2, "test": 3}
OPTIONS = {"num_videos_per_split": COUNTS, "seed": 0}


@pytest.fixture(scope="module")
def v2c_root(tmp_path_factory) -> Path:
    """A folder holding a small synthetic V2C in ``v2c/`` (do not modify it)."""
    root = tmp_path_factory.mktemp("v2c")
    write_synthetic_v2c(root, **OPTIONS)
    return root


@pytest.fixture()
def v2c_copy(v2c_root, tmp_path) -> Path:
    return Path(shutil.copytree(v2c_root / V2C_DIRNAME, tmp_path / V2C_DIRNAME))


def _module(root: Path, **kwargs) -> V2CDataModule:
    kwargs.setdefault("batch_size", 4)
    kwargs.setdefault("num_workers", 0)
    return V2CDataModule(dataset="v2c", root=str(root), **kwargs)


def test_synthetic_layout_and_reader(v2c_root):
    folder = v2c_root / V2C_DIRNAME
    assert synthetic_v2c_is_complete(v2c_root, **OPTIONS)
    data = read_v2c(folder)
    assert {s: len(v) for s, v in data.videos.items()} == COUNTS
    info = json.loads((folder / "v2c_info.json").read_text())
    assert all(isinstance(i, int) for ids in info["videos"].values() for i in ids)
    raw = json.loads((folder / CAPTION_FILE).read_text())
    first = raw["video0"][0]
    assert first["final_caption"][0] == "<sos>" and first["final_caption"][-1] == "<eos>"
    assert all(isinstance(p[0], str) and p[1][0] == "<sos>" for k in CMS_TYPES for p in first[k])
    video = data.videos["train"][0]
    entry = video.entries[0]
    assert entry.caption_raw == " ".join(first["final_caption"][1:-1])
    assert entry.raws["intention"][0] == first["intention"][0][0]
    # the commonsense follows from the caption: same target, speed words agree
    target = " ".join(entry.caption[-2:])
    assert all(text.endswith(target) for text in entry.raws["intention"] + entry.raws["effect"])
    fast = "quickly" in video.entries[1].caption_raw
    assert set(entry.raws["attribute"]) == ({"fast", "quick"} if fast else {"slow", "calm"})
    assert "<sos>" not in data.caption_vocabulary and "UNK" in data.cms_vocabulary
    assert data.caption_vocabulary.decode(data.caption_vocabulary.encode(entry.caption)) == entry.caption_raw
    human = read_v2c(folder, human_ranked=True)
    assert all(len(v.entries) == 2 for v in human.videos["train"])
    for kind, shape in (("appearance", (40, 2048)), ("motion", None)):
        name = "video0.npy" if kind == "appearance" else MOTION_PATTERN.format(id=0)
        array = np.load(folder / (APPEARANCE_DIR if kind == "appearance" else MOTION_DIR) / name)
        assert array.shape == shape if shape else (array.ndim == 2 and array.shape[1] == 1024)
    assert (folder / "videos" / "video10.mp4").is_file()


def test_precomputed_batches(v2c_root):
    dm = _module(v2c_root / V2C_DIRNAME, cms_per_caption=3)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["appearance"].shape == (4, 20, 2048) and batch["appearance"].dtype == torch.float32
    assert batch["motion"].shape == (4, 10, 1024) and batch["audio"].shape == (4, 10, 1024)
    assert batch["captions"].shape == (4, 1, 20) and batch["captions"].dtype == torch.int64
    for kind in CMS_TYPES:
        assert batch[kind].shape == (4, 3, 20) and batch[kind].dtype == torch.int64
        mask = batch[f"{kind}_mask"]
        assert mask.dtype == torch.bool and mask[:, :2].all() and not mask[:, 2].any()  # 2 strings per entry
        assert (batch[kind][:, 2] == 0).all() and (batch[kind][:, :2, 0] > 0).all()
    meta = batch["meta"][0]
    references = meta["references"]
    assert set(references) == {"caption", *CMS_TYPES, *(f"generation_{kind}" for kind in CMS_TYPES)}
    assert len(references["caption"]) == 3
    for kind in CMS_TYPES:  # V2C-Generation: every caption + string pair of the video
        assert references[f"generation_{kind}"][0] == f"{references['caption'][0]} {references[kind][0]}" or \
            references[f"generation_{kind}"][0].startswith(references["caption"][0] + " ")
        assert len(references[f"generation_{kind}"]) == 3 * 2  # 3 entries x 2 strings
    assert dm.vocabulary.decode(batch["captions"][0, 0]) in meta["references"]["caption"]
    assert batch["source"] == "v2c" and int(batch["num_skipped"]) == 0
    assert len(dm.train_dataloader().dataset) == 3 * COUNTS["train"]  # one sample per caption entry
    refs = dm.references("test")
    assert len(refs) == COUNTS["test"] and all(len(r["effect"]) == len(r["caption"]) for r in refs.values())
    geometry = dm.input_geometry()["v2c"]
    assert geometry["feature_dims"] == {"appearance": 2048, "motion": 1024, "audio": 1024}
    only = _module(v2c_root / V2C_DIRNAME, use_motion=False, use_audio=False)
    only.setup("test")
    batch = next(iter(only.test_dataloader()))
    assert "appearance" in batch and "motion" not in batch and "audio" not in batch


def test_training_jitter_is_seeded(v2c_root):
    dm = _module(v2c_root / V2C_DIRNAME)
    dataset = dm._dataset("train")
    seed_sample(dataset, 7)
    a = dataset[0]["appearance"]
    seed_sample(dataset, 7)
    assert torch.equal(a, dataset[0]["appearance"])
    val = dm._dataset("val")
    assert torch.equal(val[0]["appearance"], val[0]["appearance"])


def test_appearance_stride_and_jitter():
    rows = np.arange(40, dtype=np.float32)[:, None].repeat(3, 1)
    assert select_appearance(rows)[:, 0].tolist() == list(range(0, 40, 2))
    picks = [select_appearance(rows, train=True, rng=np.random.default_rng(s))[:, 0] for s in range(5)]
    for picked in picks:
        assert picked.shape == (20,) and all(v // 2 == i for i, v in enumerate(picked.astype(int)))
    assert any(not np.array_equal(picks[0], p) for p in picks[1:])
    assert np.array_equal(select_appearance(rows, train=True, rng=np.random.default_rng(3)),
                          select_appearance(rows, train=True, rng=np.random.default_rng(3)))
    assert select_appearance(rows[:5])[:, 0].tolist() == [0, 1, 2, 3, 4] + [4] * 15


def test_reduce_to_ten_rows():
    rows = np.arange(30, dtype=np.float32)[:, None]
    fixed = reduce_rows(rows)[:, 0].astype(int)
    assert fixed.tolist() == np.linspace(0, 29, 10).round().astype(int).tolist()
    for seed in range(5):
        picked = reduce_rows(rows, train=True, rng=np.random.default_rng(seed))[:, 0].astype(int)
        assert len(picked) == 10 and (np.diff(picked) > 0).all()
        assert [(picked < 10).sum(), ((picked >= 10) & (picked < 20)).sum(), (picked >= 20).sum()] == [3, 3, 4]
    short = reduce_rows(rows[:4], train=True)[:, 0].tolist()
    assert short == [0, 1, 2, 3, 3, 3, 3, 3, 3, 3]


def test_bad_feature_files(v2c_copy):
    bad = v2c_copy / APPEARANCE_DIR / "video0.npy"
    np.save(bad, np.zeros((40, 100), np.float32))
    missing = v2c_copy / MOTION_DIR / MOTION_PATTERN.format(id=1)
    missing.unlink()
    dm = _module(v2c_copy)
    dataset = dm._dataset("train")
    index = {video.video_id: i for i, (video, k) in reversed(list(enumerate(dataset.items)))}
    with pytest.raises(DataError) as error:
        dataset[index[0]]
    assert str(bad) in str(error.value) and "(40, 100)" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(DataError, match="feature file not found") as error:
        dataset[index[1]]
    assert str(missing) in str(error.value)
    lenient = _module(v2c_copy, skip_bad_samples=True, batch_size=64)
    lenient.setup("fit")
    with pytest.warns(UserWarning, match="skipping bad sample"):
        batch = next(iter(lenient.train_dataloader()))
    assert int(batch["num_skipped"]) == 6 and batch["appearance"].shape[0] == 3 * COUNTS["train"] - 6


def test_bad_annotations(v2c_copy):
    path = v2c_copy / CAPTION_FILE
    captions = json.loads(path.read_text())
    del captions["video0"][1]["final_caption"]
    del captions["video7"]  # a val id with no annotation
    path.write_text(json.dumps(captions))
    with pytest.raises(DataError, match="final_caption") as error:
        _module(v2c_copy).setup("fit")
    assert str(path) in str(error.value)
    lenient = _module(v2c_copy, skip_bad_samples=True, batch_size=64)
    with pytest.warns(UserWarning, match="2 V2C videos"):
        lenient.setup("fit")
    assert 0 not in lenient.references("train") and 7 not in lenient.references("val")
    with pytest.warns(UserWarning, match="has no annotation"):
        batch = next(iter(lenient.val_dataloader()))
    assert int(batch["num_skipped"]) == 1


def test_pixel_path(v2c_root):
    dm = _module(v2c_root / V2C_DIRNAME, features="pixels", clip_len=8, frame_interval=2, size=32)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (4, 3, 8, 32, 32) and batch["video"].dtype == torch.uint8
    assert "appearance" not in batch and batch["captions"].shape == (4, 1, 20)
    assert batch["video"].float().std() > 5  # real pixels, not padding
    geometry = dm.input_geometry()["v2c"]
    assert geometry["input"] == "video" and geometry["clip_len"] == 8 and geometry["frame_interval"] == 2
    assert geometry["size"] == [32, 32] and geometry["vocabulary"] == list(dm.vocabulary.words)
    val = dm._dataset("val")
    assert torch.equal(val[0]["video"], val[0]["video"])


def test_synth_v2c_command(tmp_path):
    result = run_cli("synth", "v2c", str(tmp_path), "--seed", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"wrote synthetic v2c dataset to {tmp_path}" in result.stdout
    marker = json.loads((tmp_path / V2C_DIRNAME / "COMPLETE").read_text())
    assert marker["seed"] == 1 and marker["num_videos_per_split"] == {"train": 120, "val": 20, "test": 20}
    assert len(list((tmp_path / V2C_DIRNAME / "videos").glob("video*.mp4"))) == 160


def test_synthetic_dataset_on_first_use_and_config_errors(tmp_path):
    from polyvision.errors import ConfigError

    options = {"num_videos_per_split": {"train": 2, "val": 1, "test": 1}, "min_frames": 4, "max_frames": 6}
    dm = V2CDataModule(root=str(tmp_path), synthetic_options=options, batch_size=2, num_workers=0)
    with pytest.raises(DataError, match="not prepared"):
        dm.setup("test")
    dm.prepare_data()
    dm.setup("test")
    assert next(iter(dm.test_dataloader()))["appearance"].shape == (2, 20, 2048)
    assert synthetic_v2c_is_complete(tmp_path, **options)
    with pytest.raises(ConfigError, match="features"):
        V2CDataModule(features="frames")
    with pytest.raises(ConfigError, match="num_workers: 0"):
        V2CDataModule(features="pixels", decode_device="cuda", num_workers=2)
    with pytest.raises(ConfigError, match="at least one"):
        V2CDataModule(use_appearance=False, use_motion=False, use_audio=False)


def test_missing_video(v2c_copy):
    missing = v2c_copy / "videos" / "video0.mp4"
    missing.unlink()
    dataset = _module(v2c_copy, features="pixels", clip_len=4, size=32)._dataset("train")
    with pytest.raises(DataError, match="video file not found") as error:
        dataset[0]
    assert str(missing) in str(error.value)
