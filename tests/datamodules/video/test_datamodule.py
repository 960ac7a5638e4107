from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from polyvision.datamodules.video.backends import VideoDecodeError
from polyvision.datamodules.video.datamodule import VideoClipDataset, VideoDataModule
from polyvision.datamodules.video.samplers import (
    ElasticWindowSampler,
    RandomClipSampler,
    SlidingWindowSampler,
    UniformSampler,
)
from polyvision.datamodules.video.transforms import (
    ClipAugment,
    center_crop,
    flip,
    normalize,
    random_crop,
    resize,
)
from polyvision.errors import ConfigError

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")


def _clip_indices(video, vt):
    """Frame indices encoded in a (3, T, H, W) clip."""
    return [vt.read_index(video[:, t].permute(1, 2, 0)) for t in range(video.shape[1])]


# --------------------------------------------------------------------------- device transforms


def _ramp(b=2, t=3, h=8, w=10):
    x = torch.arange(w, dtype=torch.uint8).expand(b, 3, t, h, w).clone()
    return x + torch.arange(t, dtype=torch.uint8).view(1, 1, t, 1, 1) * 20


def test_resize_keeps_layout_and_dtype():
    video = _ramp()
    out = resize(video, (4, 5))
    assert out.shape == (2, 3, 3, 4, 5) and out.dtype == torch.uint8
    assert resize(video[0], 6).shape == (3, 3, 6, 6)
    assert resize(video, (8, 10)) is video
    assert torch.all(out[:, :, 1] >= 20)  # frames stay frames (no mixing along T)
    with pytest.raises(ValueError, match="expected a clip"):
        resize(torch.zeros(3, 4, 4), 2)


def test_crops_and_flip_same_for_every_frame():
    video = _ramp()
    assert torch.equal(center_crop(video, (4, 4)), video[..., 2:6, 3:7])
    crops = random_crop(video, (4, 6), generator=torch.Generator().manual_seed(0))
    assert crops.shape == (2, 3, 3, 4, 6)
    for clip in crops:  # each clip cut at one place: the frame-to-frame offsets are preserved
        assert torch.equal(clip[:, 1] - clip[:, 0], torch.full_like(clip[:, 0], 20))
    with pytest.raises(ValueError, match="larger than the frames"):
        center_crop(video, 20)
    flipped = flip(video, p=1.0)
    assert torch.equal(flipped, video.flip(-1))
    assert torch.equal(flip(video, p=0.0), video)
    single = flip(video[0], p=1.0)
    assert single.shape == video[0].shape and torch.equal(single, video[0].flip(-1))


def test_normalize():
    video = torch.full((2, 3, 1, 2, 2), 255, dtype=torch.uint8)
    out = normalize(video, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))
    assert out.dtype == torch.float32
    assert torch.allclose(out[:, 0], torch.tensor(1.0)) and torch.allclose(out[:, 1], torch.tensor(2.0))
    assert torch.allclose(out[:, 2], torch.tensor(0.5))


def test_clip_augment_same_params_for_all_frames():
    import albumentations as A

    aug = ClipAugment([A.RandomResizedCrop(size=(24, 24), scale=(0.3, 1.0)), A.HorizontalFlip(p=0.5),
                       A.ColorJitter(p=1.0)])
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    clip = np.stack([frame] * 5)
    out = aug(clip, seed=7)
    assert out.shape == (5, 24, 24, 3) and out.dtype == np.uint8
    assert all(np.array_equal(out[0], out[i]) for i in range(5))
    assert np.array_equal(out, aug(clip, seed=7))
    assert not np.array_equal(out, aug(clip, seed=8))


# --------------------------------------------------------------------------- dataset


def test_dataset_enumerates_deterministic_clips(h264_video, h264_bframes_video, vt):
    dataset = VideoClipDataset([(h264_video, 0), (h264_bframes_video, 1)], SlidingWindowSampler(8), backend="pyav")
    per_video = len(SlidingWindowSampler(8)(60))
    assert len(dataset) == 2 * per_video
    seen = []
    for i in range(len(dataset)):
        sample = dataset[i]
        video, meta = sample["video"], sample["meta"]
        assert video.shape == (3, 8, 48, 64) and video.dtype == torch.uint8
        assert _clip_indices(video, vt) == meta["frame_indices"]
        assert meta["fps"] == pytest.approx(30.0) and meta["original_size"] == [48, 64]
        assert sample["label"] == (0 if meta["path"] == str(h264_video) else 1)
        seen.append((meta["path"], tuple(meta["frame_indices"])))
    assert len(set(seen)) == len(seen)
    assert len(dataset.cache) == 2  # one open reader per video, reused across windows
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_dataset_random_clips_follow_torch_seed(h264_video, vt):
    dataset = VideoClipDataset([h264_video], RandomClipSampler(6, stride=2, num_clips=3), backend="pyav",
                               clip_size=(24, 32))
    assert len(dataset) == 3
    torch.manual_seed(0)
    a = [dataset[i]["meta"]["frame_indices"] for i in range(3)]
    torch.manual_seed(0)
    b = [dataset[i]["meta"]["frame_indices"] for i in range(3)]
    assert a == b
    assert all(np.all(np.diff(c) == 2) for c in a)
    sample = dataset[0]
    assert sample["video"].shape == (3, 6, 24, 32)
    assert sample["meta"]["original_size"] == [48, 64]
    assert "label" not in sample


def test_dataset_with_augmentation_and_elastic_windows(h264_video, vt):
    import albumentations as A

    dataset = VideoClipDataset([h264_video], ElasticWindowSampler(context=2), backend="pyav",
                               augment=A.Compose([A.HorizontalFlip(p=1.0)]))
    assert len(dataset) == 60
    sample = dataset[0]
    assert sample["meta"]["frame_indices"] == [0, 1, 2, 3, 4]
    unflipped = sample["video"].flip(-1)  # flipped by the augmentation, identically on every frame
    assert _clip_indices(unflipped, vt) == [0, 1, 2, 3, 4]


def test_dataset_without_decoding(h264_video):
    dataset = VideoClipDataset([(h264_video, 3)], UniformSampler(4), decode=False, backend="pyav")
    sample = dataset[0]
    assert set(sample) == {"label", "meta"}
    assert sample["meta"] == {"path": str(h264_video), "frame_indices": [7, 22, 37, 52], "fps": 30.0,
                              "original_size": [48, 64]}


def test_frame_folder_dataset(tmp_path, vt):
    folder = vt.write_frame_folder(tmp_path / "frames", num_frames=10)
    dataset = VideoClipDataset([folder], ElasticWindowSampler(context=1), fps=10)
    assert len(dataset) == 10
    sample = dataset[9]
    assert sample["meta"]["frame_indices"] == [7, 8, 9] and sample["meta"]["fps"] == 10.0
    assert _clip_indices(sample["video"], vt) == [7, 8, 9]


# --------------------------------------------------------------------------- datamodule


def _module(videos, **kwargs):
    kwargs.setdefault("backend", "pyav")
    kwargs.setdefault("batch_size", 2)
    kwargs.setdefault("train_sampler", RandomClipSampler(4))
    kwargs.setdefault("eval_sampler", UniformSampler(4))
    return VideoDataModule(train_videos=videos, val_videos=videos, test_videos=videos, **kwargs)


def test_cpu_path_batches(h264_video, h264_bframes_video, vt):
    dm = _module([(h264_video, 0), (h264_bframes_video, 1)], clip_size=(32, 40), crop_size=(24, 24),
                 random_flip=True, source="toy")
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (2, 3, 4, 32, 40) and batch["video"].dtype == torch.uint8
    batch = dm.process_batch(batch, training=True)
    assert batch["video"].shape == (2, 3, 4, 24, 24) and batch["video"].dtype == torch.uint8
    assert batch["source"] == "toy" and int(batch["num_skipped"]) == 0
    assert sorted(batch["label"].tolist()) == [0, 1]
    assert {m["path"] for m in batch["meta"]} == {str(h264_video), str(h264_bframes_video)}
    val = dm.process_batch(next(iter(dm.val_dataloader())), training=False)
    assert val["video"].shape == (2, 3, 4, 24, 24)
    assert [m["frame_indices"] for m in val["meta"]] == [[7, 22, 37, 52]] * 2


def test_normalize_option(h264_video):
    dm = _module([h264_video], normalize=True, mean=(0.5,) * 3, std=(0.5,) * 3)
    batch = dm.process_batch(next(iter(dm.val_dataloader())))
    assert batch["video"].dtype == torch.float32
    assert batch["video"].min() >= -1.0 and batch["video"].max() <= 1.0


def test_workers_decode(h264_video, h264_bframes_video, vt):
    dm = _module([(h264_video, 0), (h264_bframes_video, 1)], num_workers=2)
    loader = dm.test_dataloader()
    batches = list(loader)
    assert sum(len(b["meta"]) for b in batches) == 2
    for batch in batches:
        for video, meta in zip(batch["video"], batch["meta"]):
            assert _clip_indices(video, vt) == meta["frame_indices"]


def test_workers_fork_after_the_parent_decoded(h264_video, vt):
    """Forked workers must not free decoders inherited from the parent (FFmpeg's threads do
    not survive a fork and freeing can hang): cached ones, and cyclic garbage."""
    from polyvision.datamodules.base import SourceCollate
    from polyvision.datamodules.video.reader import VideoReader
    from torch.utils.data import DataLoader

    dataset = VideoClipDataset([h264_video] * 4, UniformSampler(4), backend="pyav")
    assert _clip_indices(dataset[0]["video"], vt) == [7, 22, 37, 52]  # parent's cache holds a reader
    garbage = {"reader": VideoReader(h264_video, backend="pyav")}
    garbage["self"] = garbage
    garbage["reader"].get_frames([1, 30])
    del garbage
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=SourceCollate("x"), timeout=60)
    batches = list(loader)
    assert [len(b["meta"]) for b in batches] == [2, 2]


def test_decode_on_device_path(h264_video, h264_bframes_video, vt):
    """decode_device='cuda': workers send indices only; the main process decodes after the
    transfer (here the batch stays on the CPU, so it decodes there with a warning)."""
    cpu = _module([(h264_video, 0), (h264_bframes_video, 1)], clip_size=(24, 32))
    dm = _module([(h264_video, 0), (h264_bframes_video, 1)], decode_device="cuda", clip_size=(24, 32))
    raw = next(iter(dm.val_dataloader()))
    assert "video" not in raw and raw["meta"][0]["original_size"] == [48, 64]
    with pytest.warns(UserWarning, match="decoding there"):
        batch = dm.process_batch(raw)
    expected = cpu.process_batch(next(iter(cpu.val_dataloader())))
    assert torch.equal(batch["video"], expected["video"])
    assert batch["meta"] == expected["meta"]
    assert len(dm._device_cache) == 2
    dm.teardown()
    assert dm._device_cache is None


@pytest.mark.filterwarnings("ignore:decode_device")
def test_bad_samples_are_skipped_on_both_paths(h264_video, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    videos = [(h264_video, 0), (bad, 1), (h264_video, 2)]
    for decode_device in ("cpu", "cuda"):
        dm = _module(videos, batch_size=3, skip_bad_samples=True, decode_device=decode_device)
        with pytest.warns(UserWarning, match="broken.mp4"):
            batch = dm.process_batch(next(iter(dm.test_dataloader())))
        assert batch["video"].shape[0] == 2 and batch["label"].tolist() == [0, 2]
        assert int(batch["num_skipped"]) == 1 and len(batch["meta"]) == 2
    # a video that fails only when the main process decodes it
    dm = _module(videos, skip_bad_samples=True, decode_device="cuda")
    raw = {"label": torch.tensor([5, 6]), "num_skipped": torch.tensor(0), "source": "x",
           "meta": [{"path": str(bad), "frame_indices": [0]}, {"path": str(h264_video), "frame_indices": [1, 2]}]}
    with pytest.warns(UserWarning, match="broken.mp4"):
        batch = dm.process_batch(raw)
    assert batch["label"].tolist() == [6] and int(batch["num_skipped"]) == 1
    assert batch["video"].shape == (1, 3, 2, 48, 64) and batch["meta"][0]["path"] == str(h264_video)
    strict = _module(videos, batch_size=3)
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        next(iter(strict.test_dataloader()))


def test_config_errors():
    with pytest.raises(ConfigError, match="decode_device"):
        VideoDataModule(decode_device="tpu")
    with pytest.raises(ConfigError, match="augment"):
        VideoDataModule(decode_device="cuda", augment=[object()])
    with pytest.raises(ConfigError, match="no test videos"):
        VideoDataModule().test_dataloader()


def test_nested_sub_batches(h264_video):
    dm = _module([h264_video], crop_size=16)
    batch = next(iter(dm.val_dataloader()))
    out = dm.process_batch({"video_task": batch, "flag": 1})
    assert out["video_task"]["video"].shape[-2:] == (16, 16) and out["flag"] == 1


def test_on_after_batch_transfer_in_a_trainer(h264_video, h264_bframes_video):
    import pytorch_lightning as pl

    shapes = []

    class Probe(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            shapes.append((tuple(batch["video"].shape), batch["video"].dtype, batch["video"].device.type))
            return (self.w * batch["video"].float().mean()).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = _module([(h264_video, 0), (h264_bframes_video, 1)], decode_device="cuda", clip_size=(32, 32),
                 crop_size=(24, 24), random_flip=True)
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    with pytest.warns(UserWarning, match="decoding there"):
        trainer.fit(Probe(), datamodule=dm)
    assert shapes == [((2, 3, 4, 24, 24), torch.uint8, "cpu")]


@needs_cuda
@pytest.mark.gpu
def test_decode_on_gpu(h264_video, h264_bframes_video, vt):
    dm = _module([(h264_video, 0), (h264_bframes_video, 1)], decode_device="cuda", backend="auto",
                 clip_size=(32, 32))
    raw = next(iter(dm.val_dataloader()))
    raw = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in raw.items()}
    batch = dm.process_batch(raw)
    assert batch["video"].is_cuda and batch["video"].shape == (2, 3, 4, 32, 32)
    again = dm.process_batch({k: v for k, v in raw.items() if k != "video"})
    assert torch.equal(again["video"], batch["video"])  # decoders reused from the cache
    assert len(dm._device_cache) == 2
