"""Forgery videos: synthetic writers -> readers -> ForgeryVideoDataset -> datamodule batches."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from polyvision.datamodules.forgery.annotations import (
    VideoRecord,
    load_video_annotations,
)
from polyvision.datamodules.forgery.clips import (
    ForgeryVideoCollate,
    ForgeryVideoDataModule,
)
from polyvision.datamodules.forgery.ffpp import FaceForensicsVideoDataModule
from polyvision.datamodules.forgery.forgerynet import (
    ForgeryNetImageDataModule,
    ForgeryNetVideoDataModule,
)
from polyvision.datamodules.forgery.lavdf import LAVDFDataModule, load_lavdf_metadata
from polyvision.datamodules.forgery.synthetic_videos import (
    SYNTHETIC_WRITERS,
    synthetic_video_is_complete,
    write_synthetic_ffpp_video,
    write_synthetic_forgerynet,
    write_synthetic_lavdf,
    write_synthetic_wilddeepfake,
)
from polyvision.datamodules.forgery.wilddeepfake import WildDeepfakeDataModule
from polyvision.datamodules.multisource import MultiSourceDataModule  # noqa: E402
from polyvision.datamodules.video.backends import VideoDecodeError
from polyvision.datamodules.video.reader import VideoReader
from polyvision.datamodules.video.samplers import clip_segments, window_starts
from polyvision.errors import ConfigError, DataError  # noqa: E402

LAVDF = {"num_videos": 6, "min_frames": 24, "max_frames": 40, "image_size": 64, "seed": 1}
FORGERYNET = {"num_videos": 6, "num_images": 4, "min_frames": 24, "max_frames": 40, "frame_size": 64,
              "face_size": 48, "seed": 1}
BATCH_KEYS = {"video", "label", "segments", "num_segments", "frame_mask", "meta", "source", "num_skipped"}
META_KEYS = {"path", "frame_indices", "fps", "duration", "original_size", "video_id", "window", "num_windows",
             "segments_seconds"}


@pytest.fixture(scope="module")
def lavdf_root(tmp_path_factory) -> Path:
    return write_synthetic_lavdf(tmp_path_factory.mktemp("lavdf"), **LAVDF)


@pytest.fixture(scope="module")
def forgerynet_root(tmp_path_factory) -> Path:
    return write_synthetic_forgerynet(tmp_path_factory.mktemp("forgerynet"), **FORGERYNET)


@pytest.fixture(scope="module")
def index_video(tmp_path_factory, vt) -> Path:
    """60 frames, 64x48, 30 fps; every frame encodes its own index."""
    return vt.write_video(tmp_path_factory.mktemp("index") / "v.mp4", num_frames=60)


def _metadata(root: Path) -> list[dict]:
    return json.loads((root / "LAV-DF/metadata.json").read_text())


def _lavdf(root, **kwargs) -> LAVDFDataModule:
    options = dict(root=str(root), clip_len=16, clip_size=32, batch_size=4, num_workers=0)
    options.update(kwargs)
    return LAVDFDataModule(**options)


def _check_batch(batch: dict, batch_size: int, clip_len: int, size: int | tuple[int, int]) -> None:
    """Every documented key with its dtype and shape."""
    assert BATCH_KEYS <= set(batch)
    video = batch["video"]
    h, w = (size, size) if isinstance(size, int) else size
    assert video.dtype == torch.uint8 and video.shape == (batch_size, 3, clip_len, h, w)
    assert batch["label"].dtype == torch.int64 and batch["label"].shape == (batch_size,)
    segments, counts = batch["segments"], batch["num_segments"]
    assert segments.dtype == torch.float32 and segments.ndim == 3 and segments.shape[::2] == (batch_size, 2)
    assert segments.shape[1] == max(1, int(counts.max()))
    assert counts.dtype == torch.int64 and counts.shape == (batch_size,)
    assert batch["frame_mask"].dtype == torch.bool and batch["frame_mask"].shape == (batch_size, clip_len)
    for i, meta in enumerate(batch["meta"]):
        assert META_KEYS <= set(meta)
        assert len(meta["frame_indices"]) == clip_len
        rows = segments[i, : counts[i]]
        assert torch.all(rows[:, 1] > rows[:, 0]) and torch.all(rows >= 0) and torch.all(rows <= clip_len)
        assert torch.all(segments[i, counts[i]:] == 0)


def _assert_segments(got, expected) -> None:
    got = np.asarray(got, dtype=np.float64).reshape(-1, 2)
    expected = np.asarray(expected, dtype=np.float64).reshape(-1, 2)
    assert got.shape == expected.shape and np.allclose(got, expected, atol=1e-4), (got, expected)


# --------------------------------------------------------------------------- writers


def test_lavdf_writer_layout_signal_and_determinism(lavdf_root, tmp_path):
    assert set(SYNTHETIC_WRITERS) >= {"lavdf", "forgerynet", "ffpp_video", "wilddeepfake"}
    assert synthetic_video_is_complete("lavdf", lavdf_root, **LAVDF)
    assert not synthetic_video_is_complete("lavdf", lavdf_root, **{**LAVDF, "seed": 2})
    records = _metadata(lavdf_root)
    assert len(records) == 6 and {r["split"] for r in records} == {"train", "dev", "test"}
    fakes = [r for r in records if r["n_fakes"]]
    assert len(fakes) == 3
    for r in records:
        assert (lavdf_root / "LAV-DF" / r["file"]).is_file() and r["file"].startswith(r["split"] + "/")
        assert {"file", "n_fakes", "fake_periods", "duration", "original", "modify_video", "modify_audio", "split",
                "video_frames", "audio_channels", "audio_frames"} <= set(r)
        assert math.isclose(r["duration"], r["video_frames"] / 25)
        assert r["n_fakes"] == len(r["fake_periods"]) and r["modify_video"] == bool(r["n_fakes"])
    # learnable signal, aligned with the periods through the codec: inside the fake periods the
    # frames depart from the clean face (median of the real frames) far more than real frames do
    for r in fakes:
        assert 1 <= r["n_fakes"] <= 2
        assert 0.2 - 0.05 <= sum(e - s for s, e in r["fake_periods"]) / r["duration"] <= 0.5 + 0.05
        with VideoReader(lavdf_root / "LAV-DF" / r["file"]) as reader:
            frames = reader.get_frames(range(len(reader))).float()
        fake = torch.zeros(len(frames), dtype=torch.bool)
        for s, e in r["fake_periods"]:
            fake[round(s * 25):round(e * 25)] = True
        distance = (frames - frames[~fake].median(0).values).abs().mean(dim=(1, 2, 3))
        assert distance[fake].min() > 1.3 * distance[~fake].max()
    # deterministic per seed
    again = write_synthetic_lavdf(tmp_path, **LAVDF)
    assert _metadata(again) == records
    first = records[-1]["file"]
    assert (again / "LAV-DF" / first).read_bytes() == (lavdf_root / "LAV-DF" / first).read_bytes()


def test_writer_refuses_foreign_folder(tmp_path):
    (tmp_path / "LAV-DF").mkdir()
    (tmp_path / "LAV-DF" / "mine.txt").write_text("x")
    with pytest.raises(DataError, match="not a synthetic dataset"):
        write_synthetic_lavdf(tmp_path, **LAVDF)


# --------------------------------------------------------------------------- windows


def test_window_starts_and_segment_mapping():
    # 60 frames, 8 frames every 2nd: span 15, a window covers 16 frames
    assert window_starts(60, 8, 2, "full_video") == [0, 16, 32, 45]
    assert window_starts(60, 8, 2, "full_video", step=8) == [0, 8, 16, 24, 32, 40, 45]
    assert window_starts(60, 8, 2, "first_window") == [0]
    assert window_starts(60, 8, 2, "center_window") == [22]
    assert window_starts(10, 8, 2, "full_video") == [0]  # shorter than a window: padded
    assert window_starts(48, 8, 2, "full_video") == [0, 16, 32]
    assert clip_segments([(10, 20)], 0, 2, 8) == [(5.0, 8.0)]
    assert clip_segments([(10, 20)], 16, 2, 8) == [(0.0, 2.0)]
    assert clip_segments([(10, 20)], 32, 2, 8) == []
    with pytest.raises(ConfigError, match="eval_protocol"):
        window_starts(60, 8, 2, "every_window")


def test_hand_checked_windows_and_frames(index_video, vt):
    record = VideoRecord(str(index_video), 1, segments=[(10, 20)], video_id="clip-a")
    data = ForgeryVideoDataModule(train_records=[record], test_records=[record], clip_len=8, frame_interval=2,
                                  clip_size=None, eval_protocol="full_video", batch_size=4)
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    _check_batch(batch, 4, 8, (48, 64))
    starts = [m["frame_indices"][0] for m in batch["meta"]]
    assert starts == [0, 16, 32, 45]
    assert [m["window"] for m in batch["meta"]] == [0, 1, 2, 3]
    assert {m["num_windows"] for m in batch["meta"]} == {4} and {m["video_id"] for m in batch["meta"]} == {"clip-a"}
    assert batch["num_segments"].tolist() == [1, 1, 0, 0]
    assert batch["segments"][0].tolist() == [[5.0, 8.0]] and batch["segments"][1].tolist() == [[0.0, 2.0]]
    meta = batch["meta"][0]
    assert meta["fps"] == 30.0 and math.isclose(meta["duration"], 2.0) and meta["original_size"] == [48, 64]
    assert np.allclose(meta["segments_seconds"], [[10 / 30, 20 / 30]])
    # the decoded frames are the frames named in frame_indices
    for clip, m in zip(batch["video"], batch["meta"]):
        assert [vt.read_index(clip[:, t].permute(1, 2, 0)) for t in range(8)] == m["frame_indices"]
    assert batch["frame_mask"].all()
    # training: one random window inside the video
    train = next(iter(data.train_dataloader()))
    indices = train["meta"][0]["frame_indices"]
    assert indices == list(range(indices[0], indices[0] + 16, 2)) and indices[-1] < 60


def test_short_video_is_padded_and_masked(tmp_path, vt):
    folder = vt.write_frame_folder(tmp_path / "short", num_frames=10)
    record = VideoRecord(str(folder), 1, segments=[(6, 12)])
    data = ForgeryVideoDataModule(test_records=[record], clip_len=8, frame_interval=2, clip_size=(24, 32),
                                  eval_protocol="first_window", batch_size=2)
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    _check_batch(batch, 1, 8, (24, 32))
    meta = batch["meta"][0]
    assert meta["frame_indices"] == [0, 2, 4, 6, 8, 8, 8, 8]
    assert batch["frame_mask"][0].tolist() == [True] * 5 + [False] * 3
    assert batch["segments"][0].tolist() == [[3.0, 5.0]]  # clipped to the 5 real frames
    video = batch["video"][0]
    assert video.shape == (3, 8, 24, 32)
    assert all(torch.equal(video[:, t], video[:, 4]) for t in range(5, 8))  # padding repeats the last frame
    assert meta["fps"] == 25.0 and math.isclose(meta["duration"], 0.4)


def test_frames_list_selects_and_orders_folder_frames(tmp_path, vt):
    folder = vt.write_frame_folder(tmp_path / "frames" / "v1", num_frames=12)
    names = [f"{i:03d}.png" for i in range(0, 12, 2)]  # every other frame of the folder
    path = _write(tmp_path, {"metainfo": {}, "data_list": [
        {"video_path": "frames/v1", "gt_label": 0, "frames_list": names}]}, "train_video.json")
    (record,) = load_video_annotations(path, tmp_path)
    assert record.frames == names and record.num_frames == 6 and record.video_id == "frames/v1"
    assert Path(record.path) == folder
    for decode_device in ("cpu", "cuda"):  # "cuda" decodes in process_batch (here on the CPU)
        data = ForgeryVideoDataModule(test_records=[record], clip_len=4, clip_size=None, batch_size=1,
                                      eval_protocol="center_window", decode_device=decode_device)
        data.setup("test")
        batch = data.process_batch(next(iter(data.test_dataloader())))
        assert batch["meta"][0]["frame_indices"] == [1, 2, 3, 4]  # positions in frames_list
        clip = batch["video"][0]
        assert [vt.read_index(clip[:, t].permute(1, 2, 0)) for t in range(4)] == [2, 4, 6, 8]


# --------------------------------------------------------------------------- LAV-DF


def test_lavdf_round_trip_batches(lavdf_root):
    data = _lavdf(lavdf_root, eval_protocol="first_window")
    data.setup("fit")
    records = {r["file"]: r for r in _metadata(lavdf_root)}
    assert len(data.datasets["train"]) == sum(r["split"] == "train" for r in records.values())
    assert len(data.datasets["val"]) == sum(r["split"] == "dev" for r in records.values())
    torch.manual_seed(0)
    for split in ("train", "val"):
        loader = data.train_dataloader() if split == "train" else data.val_dataloader()
        for batch in loader:
            n = batch["label"].shape[0]
            _check_batch(batch, n, 16, 32)
            assert batch["source"] == "video"
            for i, meta in enumerate(batch["meta"]):
                record = records[meta["video_id"]]
                assert batch["label"][i] == int(record["n_fakes"] > 0)
                assert meta["segments_seconds"] == record["fake_periods"]
                assert meta["duration"] == record["duration"] and meta["fps"] == 25.0
                start = meta["frame_indices"][0]
                if split == "val":
                    assert start == 0 and meta["window"] == 0 and meta["num_windows"] == 1
                frames = [(s * 25, e * 25) for s, e in record["fake_periods"]]
                expected = clip_segments(frames, start, 1, int(batch["frame_mask"][i].sum()))
                _assert_segments(batch["segments"][i, : batch["num_segments"][i]], expected)


def test_lavdf_reads_omnifd_converted_annotations(lavdf_root, tmp_path):
    """OmniFD's LAV-DF annotations: data_list records, gt_segments in frames (label-1 fake,
    label-0 real stretches), video_path relative to LAV-DF/; no validation file."""
    ann = tmp_path / "annotations"
    ann.mkdir()
    metadata = _metadata(lavdf_root)
    for split, name in (("train", "train"), ("test", "test")):
        data_list = [{"video_path": r["file"], "gt_label": int(r["n_fakes"] > 0), "duration": r["duration"],
                      "gt_segments": [{"frame": [round(s * 25), round(e * 25)], "label": 1} for s, e in r["fake_periods"]]
                      + [{"frame": [0, 1], "label": 0}]}
                     for r in metadata if r["split"] == split]
        (ann / f"{name}.json").write_text(json.dumps({"metainfo": {}, "data_list": data_list}))
    converted = _lavdf(lavdf_root, annotations={"train": str(ann / "train.json"), "test": str(ann / "test.json")})
    native = _lavdf(lavdf_root)
    for split in ("train", "test"):
        mine = {Path(r.path).name: r for r in converted.records(split)}
        theirs = {Path(r.path).name: r for r in native.records(split)}
        assert set(mine) == set(theirs)
        for name, record in mine.items():
            assert record.label == theirs[name].label
            expected = [[pytest.approx(s * 25), pytest.approx(e * 25)] for s, e in theirs[name].segments_seconds]
            assert [list(s) for s in record.segments] == expected
    with pytest.warns(UserWarning, match="no val annotation given; using the test split"):
        assert len(converted.records("val")) == len(converted.records("test"))
    with pytest.raises(ConfigError, match="give at least the test split"):
        _lavdf(lavdf_root, annotations={"train": str(ann / "train.json")})


def test_first_window_vs_full_video_counts(lavdf_root):
    records = [r for r in _metadata(lavdf_root) if r["split"] == "train"]
    first = _lavdf(lavdf_root, eval_protocol="first_window", val_split="train", clip_len=8)
    full = _lavdf(lavdf_root, eval_protocol="full_video", val_split="train", clip_len=8, window_step=6)
    first.setup("validate")
    full.setup("validate")
    assert len(first.datasets["val"]) == len(records)
    expected = {r["file"]: window_starts(r["video_frames"], 8, 1, "full_video", 6) for r in records}
    assert len(full.datasets["val"]) == sum(len(s) for s in expected.values())
    seen: dict[str, list[int]] = {}
    for batch in full.val_dataloader():
        for meta, mask in zip(batch["meta"], batch["frame_mask"]):
            assert meta["num_windows"] == len(expected[meta["video_id"]])
            seen.setdefault(meta["video_id"], []).append(meta["window"])
            assert meta["frame_indices"][0] == expected[meta["video_id"]][meta["window"]] and mask.all()
    assert {k: v for k, v in seen.items()} == {k: list(range(len(v))) for k, v in expected.items()}
    for r in records:  # the windows cover every frame
        covered = set()
        for s in expected[r["file"]]:
            covered |= set(range(s, s + 8))
        assert covered >= set(range(r["video_frames"]))


def test_lavdf_bad_metadata(lavdf_root, tmp_path):
    records = _metadata(lavdf_root)
    dataset_dir = lavdf_root / "LAV-DF"

    def load(data, name="metadata.json", **kwargs):
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        return load_lavdf_metadata(path, dataset_dir, **kwargs)

    with pytest.raises(DataError, match=r"metadata.json: malformed JSON"):
        load('[{"file": ')
    with pytest.raises(DataError, match=r"expected a JSON list"):
        load({"data_list": []})
    bad = [dict(r) for r in records]
    fake = next(i for i, r in enumerate(bad) if r["n_fakes"])
    bad[fake]["fake_periods"] = [[0.1, bad[fake]["duration"] + 1.0]]
    with pytest.raises(DataError, match=rf"metadata.json: metadata\[{fake}\] \({bad[fake]['file']}\): "
                                        r"fake_periods\[0\] .* outside the video"):
        load(bad)
    bad = [dict(r) for r in records]
    del bad[2]["duration"]
    with pytest.raises(DataError, match=r"metadata\[2\]: missing field 'duration'"):
        load(bad)
    bad = [dict(r) for r in records]
    bad[1]["file"] = bad[1]["split"] + "/missing.mp4"
    with pytest.raises(DataError, match=r"metadata\[1\] .*: video file not found: .*missing.mp4"):
        load(bad)
    with pytest.raises(DataError, match=r"split \['val'\] not found"):
        load(records, split="val")
    # visual-only labels: an audio-only fake is real with no segments
    audio = [dict(r) for r in records]
    audio[fake]["modify_video"] = False
    visual = {r.video_id: r for r in load(audio, fake_modality="visual")}
    assert visual[audio[fake]["file"]].label == 0 and visual[audio[fake]["file"]].segments_seconds == []
    assert {r.video_id: r.label for r in load(audio)}[audio[fake]["file"]] == 1


def test_undecodable_video_fails_at_read_time(lavdf_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(lavdf_root, root)
    victim = next(r["file"] for r in _metadata(root) if r["split"] == "test")
    (root / "LAV-DF" / victim).write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 8)
    data = _lavdf(root, batch_size=1)
    data.setup("test")  # validation only checks that files exist
    dataset = data.datasets["test"]
    index = next(i for i, r in enumerate(dataset.records) if r.video_id == victim)
    with pytest.raises(VideoDecodeError, match=re.escape(victim)):
        dataset[index]
    skipping = _lavdf(root, batch_size=8, skip_bad_samples=True)
    skipping.setup("test")
    with pytest.warns(UserWarning, match="skipping bad sample"):
        batch = next(iter(skipping.test_dataloader()))
    assert int(batch["num_skipped"]) == 1 and batch["video"].shape[0] == len(dataset) - 1
    assert batch["segments"].shape[0] == batch["num_segments"].shape[0] == len(dataset) - 1


# --------------------------------------------------------------------------- ForgeryNet


def test_forgerynet_video_round_trip_with_face_crops(forgerynet_root):
    annotation = forgerynet_root / "ForgeryNet/annotations/video_train.json"
    raw = {r["video_path"]: r for r in json.loads(annotation.read_text())["data_list"]}
    assert any(not p.endswith(".mp4") for p in raw)  # the reader appends .mp4
    data = ForgeryNetVideoDataModule(root=str(forgerynet_root), clip_len=8, frame_interval=4, clip_size=32,
                                     batch_size=8, eval_protocol="first_window")
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    n = len(data.datasets["train"])
    assert n == len(raw)
    _check_batch(batch, n, 8, 32)
    assert int(batch["num_segments"].sum()) > 0
    assert any(s["label"] == 0 for r in raw.values() for s in r["gt_segments"])  # real segments: dropped
    for i, meta in enumerate(batch["meta"]):
        record = raw[meta["video_id"]]
        assert meta["path"].endswith(".mp4") and batch["label"][i] == record["gt_label"]
        fakes = [s["frame"] for s in record["gt_segments"] if s["label"] == 1]
        _assert_segments(meta["segments_seconds"], [(s / 25, e / 25) for s, e in fakes])
        valid = int(batch["frame_mask"][i].sum())
        expected = clip_segments(fakes, meta["frame_indices"][0], 4, valid)
        _assert_segments(batch["segments"][i, : batch["num_segments"][i]], expected)
        assert meta["face_boxes"] == [record["face_data"][f] for f in meta["frame_indices"]]
        assert meta["original_size"] == [64, 64] and meta["duration"] == record["duration"]
    # GPU-path decoding (here on the CPU) gives the same clips as decoding in the workers
    options = dict(root=str(forgerynet_root), clip_len=8, frame_interval=4, clip_size=32, batch_size=8)
    cpu = ForgeryNetVideoDataModule(**options)
    device = ForgeryNetVideoDataModule(decode_device="cuda", **options)
    cpu.setup("validate")
    device.setup("validate")
    a, b = next(iter(cpu.val_dataloader())), next(iter(device.val_dataloader()))
    assert "video" not in b and "decode_indices" in b["meta"][0]
    b = device.process_batch(b)
    assert torch.equal(a["video"], b["video"]) and torch.equal(a["segments"], b["segments"])


def test_forgerynet_images_with_face_crops(forgerynet_root):
    data = ForgeryNetImageDataModule(root=str(forgerynet_root), image_size=32, batch_size=8, num_workers=0,
                                     augment=False)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    raw = json.loads((forgerynet_root / "ForgeryNet/annotations/image_train.json").read_text())["data_list"]
    assert batch["image"].shape == (len(raw), 3, 32, 32) and batch["mask"].shape == (len(raw), 1, 32, 32)
    boxes = {r["img_path"]: r["face_data"] for r in raw}
    for i, meta in enumerate(batch["meta"]):
        name = "/".join(Path(meta["path"]).parts[-2:])
        assert meta["face_box"] == boxes[name] and meta["original_size"] == [64, 64]
        assert bool(batch["has_mask_file"][i]) == bool(batch["label"][i])
        if batch["label"][i]:
            assert batch["mask"][i].max() > 0.9  # the forged patch sits inside the face box


def _write(tmp_path, data, name="video_train.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.pop("gt_label"), r"data_list\[0\]: missing field 'gt_label'"),
    (lambda r: r.pop("face_data"), r"data_list\[0\]: missing field 'face_data'"),
    (lambda r: r.update(video_path="fake/nope"), r"data_list\[0\]: video file not found: .*nope\.mp4"),
    (lambda r: r.update(gt_label=2), r"data_list\[0\]: field 'gt_label' must be 0 or 1"),
    (lambda r: r["face_data"].__setitem__(3, [5, 5, 1, 1]), r"data_list\[0\]: face_data\[3\] must be"),
    (lambda r: r.update(gt_segments=[{"frame": [4]}]), r"data_list\[0\]: gt_segments\[0\]: 'frame' must be"),
    (lambda r: r.update(gt_segments=[{"frame": [9, 4], "label": 1}]), r"gt_segments\[0\]: .*0 <= start <= end"),
    (lambda r: r.update(gt_segments=[{"frame": [0, 500], "label": 1}]), r"gt_segments\[0\]: ends at frame 500"),
    (lambda r: r.update(gt_label=0, gt_segments=[{"frame": [0, 5], "label": 1}]), r"'gt_label' is 0 .*fake segm"),
    (lambda r: r.update(duration=-1), r"data_list\[0\]: field 'duration' must be a positive"),
])
def test_forgerynet_bad_video_records(forgerynet_root, tmp_path, mutate, message):
    source = json.loads((forgerynet_root / "ForgeryNet/annotations/video_train.json").read_text())
    record = next(r for r in source["data_list"] if r["gt_label"] == 1)
    mutate(record)
    path = _write(tmp_path, {"metainfo": {}, "data_list": [record]})
    with pytest.raises(DataError, match=r"video_train\.json: " + message if message.startswith("data") else message):
        load_video_annotations(path, forgerynet_root / "ForgeryNet/Training/video", require_face_data=True)


def test_forgerynet_bad_files(forgerynet_root, tmp_path):
    video_root = forgerynet_root / "ForgeryNet/Training/video"
    with pytest.raises(DataError, match=r"video_train\.json: malformed JSON"):
        load_video_annotations(_write(tmp_path, '{"metainfo": {}, "data_list": [}'), video_root)
    with pytest.raises(DataError, match=r"missing key 'data_list'"):
        load_video_annotations(_write(tmp_path, {"metainfo": {}}), video_root)
    with pytest.raises(DataError, match=r"annotation file not found"):
        load_video_annotations(tmp_path / "absent.json", video_root)
    data = ForgeryNetVideoDataModule(root=str(tmp_path), clip_size=32)
    with pytest.raises(DataError, match=r"video_train\.json: annotation file not found"):
        data.setup("fit")


# --------------------------------------------------------------------------- FF++ and WildDeepfake


def test_ffpp_video_center_clip_and_frames_list(tmp_path):
    root = write_synthetic_ffpp_video(tmp_path, num_videos=6, frames_per_video=12, image_size=32, seed=2)
    assert synthetic_video_is_complete("ffpp_video", root, num_videos=6, frames_per_video=12, image_size=32, seed=2)
    data = FaceForensicsVideoDataModule(root=str(root), clip_len=4, clip_size=32, batch_size=8)
    assert data.eval_protocol == "center_window"
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    raw = json.loads((root / "FaceForensics++/annotations/test_video.json").read_text())["data_list"]
    assert [m["video_id"] for m in batch["meta"]] == [r["video_path"] for r in raw]
    assert batch["label"].tolist() == [r["gt_label"] for r in raw] and set(batch["label"].tolist()) == {0, 1}
    assert all(m["frame_indices"] == [4, 5, 6, 7] for m in batch["meta"])  # (12 - 4) // 2
    assert batch["num_segments"].tolist() == [0] * len(raw)
    _check_batch(batch, len(raw), 4, 32)
    # a frames_list naming a missing frame is an annotation error
    raw[0]["frames_list"][1] = "999.png"
    path = _write(tmp_path, {"metainfo": {}, "data_list": raw}, "test_video.json")
    with pytest.raises(DataError, match=r"test_video\.json: data_list\[0\]: frames_list names 1 file\(s\)"):
        load_video_annotations(path, root)


def test_wilddeepfake_annotation_and_scan_agree(tmp_path):
    root = write_synthetic_wilddeepfake(tmp_path, num_videos=6, frames_per_video=10, image_size=32, seed=3)
    options = dict(root=str(root), clip_len=4, clip_size=32, batch_size=16)
    with_json = WildDeepfakeDataModule(**options)
    with pytest.warns(UserWarning, match="no validation split"):
        with_json.setup("fit")
    shutil.rmtree(root / "WildDeepFake/annotations")
    scanned = WildDeepfakeDataModule(**options)
    with pytest.warns(UserWarning, match="no validation split"):
        scanned.setup("fit")
    for split in ("train", "val"):
        a = {(r.video_id, r.label) for r in with_json.datasets[split].records}
        b = {(r.video_id, r.label) for r in scanned.datasets[split].records}
        assert a == b and {label for _, label in a} == {0, 1}
    batch = next(iter(scanned.val_dataloader()))
    assert all(m["frame_indices"] == [0, 4, 8, 8] for m in batch["meta"])  # 10 frames < span 13: padded
    assert batch["frame_mask"][0].tolist() == [True, True, True, False]


# --------------------------------------------------------------------------- datamodule plumbing


def test_collate_pads_segments_and_counts_skipped():
    def sample(n):
        return {"video": torch.zeros(3, 2, 4, 4, dtype=torch.uint8), "label": torch.tensor(1),
                "segments": torch.arange(2 * n, dtype=torch.float32).reshape(n, 2),
                "frame_mask": torch.ones(2, dtype=torch.bool), "meta": {}}

    batch = ForgeryVideoCollate("video")([sample(0), None, sample(3)])
    assert batch["segments"].shape == (2, 3, 2) and batch["num_segments"].tolist() == [0, 3]
    assert torch.equal(batch["segments"][1], torch.arange(6.0).reshape(3, 2)) and not batch["segments"][0].any()
    assert int(batch["num_skipped"]) == 1
    assert ForgeryVideoCollate("video")([sample(0)])["segments"].shape == (1, 1, 2)


def test_config_errors_and_synthetic_preparation(tmp_path):
    with pytest.raises(ConfigError, match="eval_protocol"):
        ForgeryVideoDataModule(eval_protocol="all")
    with pytest.raises(ConfigError, match="window_step"):
        ForgeryVideoDataModule(clip_len=8, frame_interval=2, window_step=17)
    with pytest.raises(ConfigError, match="set root"):
        LAVDFDataModule()

    class Tiny(LAVDFDataModule):
        synthetic_settings = property(lambda self: dict(LAVDF))

    data = Tiny(synthetic=True, cache_dir=str(tmp_path), clip_len=8, clip_size=32, batch_size=2)
    with pytest.raises(DataError, match="not prepared"):
        data.setup("fit")
    data.prepare_data()
    marker = tmp_path / "LAV-DF/COMPLETE"
    stamp = marker.stat().st_mtime_ns
    data.prepare_data()  # complete: not rewritten
    assert marker.stat().st_mtime_ns == stamp
    data.setup("fit")
    assert len(data.datasets["train"]) > 0


def test_unified_image_and_video_sources(forgerynet_root):
    data = MultiSourceDataModule({
        "image": ForgeryNetImageDataModule(root=str(forgerynet_root), image_size=32, batch_size=2, num_workers=0),
        "video": ForgeryNetVideoDataModule(root=str(forgerynet_root), clip_len=4, clip_size=32, batch_size=2),
    })
    data.setup("fit")
    batch, _, _ = next(iter(data.train_dataloader()))
    assert batch["image"]["image"].shape == (2, 3, 32, 32) and batch["video"]["video"].shape == (2, 3, 4, 32, 32)
    assert batch["video"]["source"] == "video" and "segments" in batch["video"]
