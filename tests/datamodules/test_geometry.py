"""Input geometry: what the data cuts is what inference cuts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from polyvision.datamodules.forgery.annotations import ImageRecord, VideoRecord
from polyvision.datamodules.forgery.clips import ForgeryVideoDataModule
from polyvision.datamodules.forgery.images import ForgeryImageDataset
from polyvision.datamodules.geometry import (
    clip_geometry,
    image_geometry,
    prepare_clip,
    prepare_image,
    source_for_input,
    video_windows,
)
from polyvision.datamodules.multisource import MultiSourceDataModule
from polyvision.datamodules.video.reader import VideoReader
from polyvision.errors import ConfigError


@pytest.fixture
def odd_video(tmp_path, vt):
    return vt.write_video(tmp_path / "odd.mp4", num_frames=61, codec="libx264", height=48, width=64)


@pytest.mark.parametrize("clip_len, interval, step", [(8, 2, None), (8, 2, 5), (16, 1, None), (4, 4, 3)])
def test_inference_windows_are_the_full_video_test_windows(odd_video, clip_len, interval, step):
    record = VideoRecord(str(odd_video), 1, video_id="v")
    data = ForgeryVideoDataModule(test_records=[record], clip_len=clip_len, frame_interval=interval,
                                  clip_size=(24, 32), window_step=step, eval_protocol="full_video", batch_size=64)
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    geometry = data.input_geometry()["video"]
    assert geometry == clip_geometry(clip_len, interval, (24, 32), None, step)
    windows = video_windows(61, geometry)
    assert [indices for indices, _ in windows] == [m["frame_indices"] for m in batch["meta"]]
    assert [[i < valid for i in range(clip_len)] for _, valid in windows] == batch["frame_mask"].tolist()
    # and the pixels: the same resize as the dataset's
    reader = VideoReader(odd_video)
    for (indices, _), clip in zip(windows, batch["video"]):
        assert torch.equal(prepare_clip(reader.get_frames(indices), geometry), clip)


def test_inference_images_are_the_evaluation_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    path = tmp_path / "face.png"
    Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)).save(path)
    dataset = ForgeryImageDataset([ImageRecord(str(path), 0)], image_size=24, train=False)
    expected = dataset[0]["image"]
    actual = prepare_image(np.asarray(Image.open(path).convert("RGB")), image_geometry(24))
    assert actual.dtype == expected.dtype and torch.equal(actual, expected)


def test_multi_source_geometry_and_lookup(tmp_path, odd_video):
    record = VideoRecord(str(odd_video), 1)
    clips = ForgeryVideoDataModule(test_records=[record], clip_len=8, frame_interval=2, clip_size=32)
    temporal = ForgeryVideoDataModule(test_records=[record], clip_len=16, frame_interval=2, clip_size=32,
                                      source="temporal")
    data = MultiSourceDataModule({"video": clips, "temporal": temporal}, eval_only=["temporal"])
    geometry = data.input_geometry()
    assert geometry["video"]["clip_len"] == 8 and geometry["temporal"]["clip_len"] == 16
    assert source_for_input(geometry, "video", "m") == ("video", geometry["video"])
    with pytest.raises(ConfigError, match="trained on video inputs, not image"):
        source_for_input(geometry, "image", "m")
    with pytest.raises(ConfigError, match="records no input geometry"):
        source_for_input(None, "image", "m")
