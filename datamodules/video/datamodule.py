"""``VideoDataModule``: the clip-loading base of the video systems (OmniFD, STATE, HybridNet).

Where frames are decoded
    ``decode_device="cpu"`` (default): DataLoader workers decode each clip (``VideoClipDataset``
    with ``decode=True``), apply the CPU augmentation (albumentations, identical parameters
    for every frame of a clip) and resize to ``clip_size``; batches arrive with ``video``.

    ``decode_device="cuda"``: workers only return ``{label, meta}`` (path and frame indices,
    no pixels); ``on_after_batch_transfer`` decodes every clip in the main process on the
    batch's device (torchcodec/NVDEC, so frames never touch host memory), through a
    ``DecoderCache`` that keeps decoders open across batches. If the batch is on the CPU
    (a CPU trainer) the same path runs there with a CPU backend.

Device transforms (both paths, in ``on_after_batch_transfer``, on ``(B, 3, T, H, W)``):
    ``crop_size`` (random crop when training, centre crop otherwise), ``random_flip``
    (training only), and ``normalize`` (off by default: the model normalises uint8 input).
    The functions ``resize``, ``center_crop``, ``random_crop``, ``flip`` and ``normalize``
    take a clip ``(3, T, H, W)`` or a batch ``(B, 3, T, H, W)``.

Batches (``collate_samples`` + ``SourceCollate``): ``video`` uint8 ``(B, 3, T, H, W)``,
``label`` (when the videos have labels), ``meta`` (per sample: ``path``,
``frame_indices``, ``fps``, ``original_size`` as ``[H, W]``), ``source``, ``num_skipped``.

Subclasses provide their data by overriding ``videos(split)`` (a list of paths, or of
``(path, label)`` pairs / ``{"path", "label"}`` dicts) or ``build_dataset(split)``; the base
class also accepts such lists as ``train_videos=...`` etc.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from polyvision.datamodules.base import SkippingDataset, SourceCollate
from polyvision.datamodules.geometry import clip_geometry
from polyvision.datamodules.seeding import step_generator, training_sampler
from polyvision.datamodules.video.backends import VideoDecodeError
from polyvision.datamodules.video.reader import DecoderCache, VideoReader
from polyvision.datamodules.video.samplers import (
    ClipSampler,
    RandomClipSampler,
    SlidingWindowSampler,
)
from polyvision.datamodules.video.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipAugment,
    _pair,
    as_clip_augment,
    center_crop,
    flip,
    normalize,
    random_crop,
    resize,
)
from polyvision.errors import ConfigError, DataError
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

# --------------------------------------------------------------------------- dataset


def _normalise_items(videos: Sequence[Any]) -> list[dict[str, Any]]:
    items = []
    for entry in videos:
        if isinstance(entry, dict):
            item = {"path": str(entry["path"]), "label": entry.get("label")}
        elif isinstance(entry, (tuple, list)):
            item = {"path": str(entry[0]), "label": entry[1] if len(entry) > 1 else None}
        else:
            item = {"path": str(entry), "label": None}
        items.append(item)
    return items


SPLITS = ("train", "val", "test", "predict")


class VideoClipDataset(Dataset):
    """Clips of a list of videos (files or frame folders).

    With a deterministic sampler (``sampler.deterministic``: uniform, sliding windows,
    elastic windows for every frame) every (video, clip) pair is one item, in order: that is
    full-video evaluation. Otherwise each video gives ``sampler.num_clips`` items (default
    1), each drawing a fresh clip with a ``numpy`` generator seeded from torch's RNG.

    ``decode=True`` returns ``{"video": uint8 (3, T, H, W), "label", "meta"}``; ``decode=False``
    returns ``{"label", "meta"}`` for decoding later on the device. ``meta`` holds ``path``,
    ``frame_indices``, ``fps`` and ``original_size`` ([H, W]). ``num_frames`` (one per video)
    skips opening the videos to count their frames.
    """

    def __init__(
        self,
        videos: Sequence[Any],
        sampler: ClipSampler,
        *,
        decode: bool = True,
        backend: str = "auto",
        stream: int | None = None,
        num_threads: int = 0,
        fps: float | None = None,
        clip_size: int | Sequence[int] | None = None,
        augment: ClipAugment | Callable | None = None,
        cache_size: int = 4,
        num_frames: Sequence[int] | None = None,
    ):
        self.items = _normalise_items(videos)
        self.sampler = sampler
        self.decode = decode
        self.backend = backend
        self.stream = stream
        self.num_threads = num_threads
        self.fps = fps
        self.clip_size = None if clip_size is None else _pair(clip_size)
        self.augment = as_clip_augment(augment)  # called as augment(frames (T, H, W, 3) uint8 numpy, seed)
        self.cache = DecoderCache(max_open=cache_size)
        self._info: dict[int, tuple[int, float, list[int]]] = {}
        if num_frames is not None:
            if len(num_frames) != len(self.items):
                raise ValueError(f"num_frames has {len(num_frames)} entries for {len(self.items)} videos")
            for i, n in enumerate(num_frames):
                self._info[i] = (int(n), 0.0, [])
        self._clips: list[tuple[int, list[int] | None]] | None = None
        self._bad: dict[int, DataError] = {}

    # -- bookkeeping
    @property
    def labels(self) -> list[Any]:
        return [item["label"] for item in self.items]

    def _reader(self, video: int) -> VideoReader:
        return self.cache.get(self.items[video]["path"], self.backend, "cpu", self.stream,
                              num_threads=self.num_threads, fps=self.fps)

    def video_info(self, video: int) -> tuple[int, float, list[int]]:
        """(num_frames, fps, [H, W]) of video ``video``, opening it once if needed."""
        info = self._info.get(video)
        if info is None or not info[2]:
            reader = self._reader(video)
            info = (len(reader) if info is None else info[0], reader.fps, list(reader.size))
            self._info[video] = info
        return info

    def _num_frames(self, video: int) -> int:
        info = self._info.get(video)
        return info[0] if info is not None else self.video_info(video)[0]

    def _clip_index(self) -> list[tuple[int, list[int] | None]]:
        if self._clips is None:
            clips: list[tuple[int, list[int] | None]] = []
            for v in range(len(self.items)):
                try:
                    n = self._num_frames(v)
                except DataError as error:  # raised again by __getitem__, where it can be skipped
                    self._bad[v] = error
                    clips.append((v, None))
                    continue
                clips += [(v, c) for c in self.sampler(n)]
            self._clips = clips
        return self._clips

    def __len__(self) -> int:
        if self.sampler.deterministic:
            return len(self._clip_index())
        return len(self.items) * getattr(self.sampler, "num_clips", 1)

    def clip(self, index: int) -> tuple[int, list[int], int | None]:
        """(video, frame indices, seed) of item ``index``."""
        if self.sampler.deterministic:
            video, indices = self._clip_index()[index]
            if indices is None:
                raise self._bad[video]
            return video, list(indices), None
        per_video = getattr(self.sampler, "num_clips", 1)
        video, k = divmod(index, per_video)
        seed = int(torch.randint(0, 2**62, (1,)).item())
        clips = self.sampler(self._num_frames(video), np.random.default_rng(seed))
        return video, list(clips[k]), seed

    # -- items
    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        video, indices, seed = self.clip(index)
        item = self.items[video]
        sample: dict[str, Any] = {}
        if item["label"] is not None:
            sample["label"] = item["label"]
        meta = {"path": item["path"], "frame_indices": indices}
        if not self.decode:
            _, fps, size = self.video_info(video)
            meta.update(fps=fps, original_size=size)
            sample["meta"] = meta
            return sample
        reader = self._reader(video)
        frames = reader.get_frames(indices)
        meta.update(fps=reader.fps, original_size=[int(frames.shape[1]), int(frames.shape[2])])
        if self.augment is not None:
            if seed is None:
                seed = int(torch.randint(0, 2**62, (1,)).item())
            frames = torch.from_numpy(self.augment(frames.numpy(), seed))
        clip = frames.permute(3, 0, 1, 2)
        if self.clip_size is not None:
            clip = resize(clip, self.clip_size)
        sample["video"] = clip.contiguous()
        sample["meta"] = meta
        return sample

    def __getstate__(self):
        state = dict(self.__dict__)
        state["cache"] = DecoderCache(self.cache.max_open)
        return state


# --------------------------------------------------------------------------- datamodule


class VideoDataModule(pl.LightningDataModule):
    """Base LightningDataModule for clip datasets; see the module docstring.

    Args:
        train_videos, val_videos, test_videos, predict_videos: lists of paths, ``(path,
            label)`` pairs or ``{"path", "label"}`` dicts (or override ``videos(split)``).
        batch_size, eval_batch_size: eval defaults to ``batch_size``.
        num_workers: DataLoader workers (decoding happens there on the CPU path).
        backend: video backend name or ``"auto"`` (see ``polyvision.datamodules.video.reader``).
        decode_device: ``"cpu"`` (workers) or ``"cuda"`` (main process, on the batch's device).
        decode_threads: decoder threads per reader; ``None``: all cores in the main process,
            ``cores // num_workers`` in workers.
        train_sampler, eval_sampler: clip samplers (defaults: 16-frame random clips; dense
            16-frame sliding windows).
        clip_size: (H, W) every decoded clip is resized to (needed to batch videos of
            different sizes).
        crop_size: random crop (train) / centre crop (eval) on the device.
        random_flip: horizontal flip with p=0.5 on the device, training only.
        normalize: normalise on the device to float with ``mean``/``std`` (default off:
            the model receives uint8 and normalises).
        augment: albumentations transform(s) applied on the CPU to training clips (same
            parameters for every frame); only with ``decode_device="cpu"``.
        skip_bad_samples: drop clips whose video cannot be decoded (counted in
            ``num_skipped``) instead of failing.
        source: name put in every batch's ``source``.
        cache_size: open decoders kept per process.
        fps: frame rate of frame folders.
    """

    def __init__(
        self,
        train_videos: Sequence[Any] | None = None,
        val_videos: Sequence[Any] | None = None,
        test_videos: Sequence[Any] | None = None,
        predict_videos: Sequence[Any] | None = None,
        *,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        backend: str = "auto",
        decode_device: str = "cpu",
        decode_threads: int | None = None,
        train_sampler: ClipSampler | None = None,
        eval_sampler: ClipSampler | None = None,
        clip_size: int | Sequence[int] | None = None,
        crop_size: int | Sequence[int] | None = None,
        random_flip: bool = False,
        normalize: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        augment: Any = None,
        skip_bad_samples: bool = False,
        source: str = "video",
        cache_size: int = 8,
        fps: float | None = None,
        pin_memory: bool = False,
    ):
        super().__init__()
        if decode_device not in ("cpu",) and not str(decode_device).startswith("cuda"):
            raise ConfigError(f"decode_device must be 'cpu' or 'cuda', got {decode_device!r}")
        if augment is not None and decode_device != "cpu":
            raise ConfigError("augment (albumentations, CPU) needs decode_device='cpu'; use crop_size/random_flip on the GPU")
        self.save_hyperparameters(ignore=["train_sampler", "eval_sampler", "augment"])
        self._videos = {"train": train_videos, "val": val_videos, "test": test_videos, "predict": predict_videos}
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.backend = backend
        self.decode_device = str(decode_device)
        self.decode_threads = decode_threads
        self.train_sampler = train_sampler or RandomClipSampler(16)
        self.eval_sampler = eval_sampler or SlidingWindowSampler(16)
        self.clip_size = None if clip_size is None else _pair(clip_size)
        self.crop_size = None if crop_size is None else _pair(crop_size)
        self.random_flip = random_flip
        self.normalize = normalize
        self.mean, self.std = tuple(mean), tuple(std)
        self.augment = augment
        self.skip_bad_samples = skip_bad_samples
        self.source = source
        self.cache_size = cache_size
        self.fps = fps
        self.pin_memory = pin_memory
        self.datasets: dict[str, Dataset] = {}
        self._device_cache: DecoderCache | None = None
        self._warned_device = False

    # -- data definition (override in subclasses)
    def videos(self, split: str) -> Sequence[Any] | None:
        """The videos of ``split`` ("train", "val", "test", "predict"), or None."""
        return self._videos.get(split)

    def sampler(self, split: str) -> ClipSampler:
        return self.train_sampler if split == "train" else self.eval_sampler

    def build_dataset(self, split: str) -> Dataset | None:
        videos = self.videos(split)
        if videos is None:
            return None
        return VideoClipDataset(
            videos,
            self.sampler(split),
            decode=self.decode_device == "cpu",
            backend=self.backend,
            num_threads=self._worker_threads(),
            fps=self.fps,
            clip_size=self.clip_size,
            augment=self.augment if split == "train" else None,
            cache_size=self.cache_size,
        )

    def _worker_threads(self) -> int:
        if self.decode_threads is not None:
            return self.decode_threads
        if self.num_workers == 0:
            return 0
        return max(1, (os.cpu_count() or 1) // self.num_workers)

    # -- Lightning hooks
    def input_geometry(self) -> dict[str, dict[str, Any]]:
        """Evaluation clips: the evaluation sampler's length and stride at the model's input size."""
        stride = int(getattr(self.eval_sampler, "stride", 1))
        return {self.source: clip_geometry(self.eval_sampler.clip_len, stride, self.clip_size, self.crop_size)}

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}
        for split in splits.get(stage, SPLITS) if stage else SPLITS:
            if split not in self.datasets:
                dataset = self.build_dataset(split)
                if dataset is not None:
                    self.datasets[split] = dataset

    def collate_fn(self) -> Callable:
        """The DataLoader collate function (subclasses with extra batch keys override it)."""
        return SourceCollate(self.source)

    def _loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate"}.get(split, split))
        if split not in self.datasets:
            raise ConfigError(f"{type(self).__name__} has no {split} videos")
        train = split == "train"
        dataset = self.datasets[split]
        return DataLoader(
            SkippingDataset(dataset, self.skip_bad_samples),
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=training_sampler(len(dataset), self.trainer) if train else None,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn(),
            pin_memory=self.pin_memory and self.decode_device == "cpu",
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self):
        return self._loader("train")

    def val_dataloader(self):
        return self._loader("val")

    def test_dataloader(self):
        return self._loader("test")

    def predict_dataloader(self):
        return self._loader("predict")

    def on_after_batch_transfer(self, batch, dataloader_idx: int = 0):
        training = self.trainer is not None and self.trainer.training
        return self.process_batch(batch, training)

    # -- device-side work
    def process_batch(self, batch: dict[str, Any], training: bool = False) -> dict[str, Any]:
        """Decode (GPU path) and apply the device transforms to a collated batch. Nested
        dicts of sub-batches (``task -> batch``) are processed one by one."""
        if isinstance(batch, dict) and "meta" not in batch:
            return {k: self.process_batch(v, training) if isinstance(v, dict) else v for k, v in batch.items()}
        if "video" not in batch and batch.get("meta"):
            batch = self.decode_batch(batch)
        video = batch.get("video")
        if video is None:
            return batch
        # Device-side randomness from (run seed, step, rank): a resumed run crops and flips alike.
        generator = step_generator(self.trainer) if training else None
        if self.crop_size is not None:
            video = random_crop(video, self.crop_size, generator) if training else center_crop(video, self.crop_size)
        if self.random_flip and training:
            video = flip(video, generator=generator)
        if self.normalize:
            video = normalize(video, self.mean, self.std)
        batch["video"] = video
        return batch

    def _batch_device(self, batch: dict[str, Any]) -> torch.device:
        for value in batch.values():
            if isinstance(value, Tensor):
                return value.device
        if self.trainer is not None:
            return self.trainer.strategy.root_device
        return torch.device(self.decode_device if torch.cuda.is_available() else "cpu")

    def decode_indices(self, meta: dict[str, Any]) -> list[int]:
        """The frames to decode for one sample on the device path."""
        return meta["frame_indices"]

    def frames_to_clip(self, frames: Tensor, meta: dict[str, Any]) -> Tensor:
        """Decoded frames ``(T, H, W, 3)`` -> a clip ``(3, T, H, W)`` at ``clip_size``."""
        clip = frames.permute(3, 0, 1, 2)
        return clip if self.clip_size is None else resize(clip, self.clip_size)

    def decode_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Decode every sample's ``meta`` frames on the batch's device and add ``video``."""
        device = self._batch_device(batch)
        if device.type != "cuda" and self.decode_device != "cpu" and not self._warned_device:
            self._warned_device = True
            warnings.warn(f"decode_device={self.decode_device!r} but the batch is on {device}: decoding there",
                          stacklevel=2)
        if self._device_cache is None:
            self._device_cache = DecoderCache(max_open=self.cache_size)
        clips, keep = [], []
        for i, meta in enumerate(batch["meta"]):
            try:
                reader = self._device_cache.get(meta["path"], self.backend, device, fps=self.fps)
                frames = reader.get_frames(self.decode_indices(meta))
            except DataError as error:
                if not self.skip_bad_samples:
                    raise
                warnings.warn(f"skipping bad sample: {error}", stacklevel=2)
                continue
            clips.append(self.frames_to_clip(frames, meta))
            keep.append(i)
        size = len(batch["meta"])
        if len(keep) < size:
            batch = _select(batch, keep, size)
        if clips:
            shapes = {tuple(c.shape) for c in clips}
            if len(shapes) > 1:
                raise VideoDecodeError(batch["meta"][0]["path"],
                                       f"clips of different sizes {sorted(shapes)} in one batch; set clip_size")
            batch["video"] = torch.stack(clips)
        return batch

    def teardown(self, stage: str | None = None) -> None:
        if self._device_cache is not None:
            self._device_cache.close()
            self._device_cache = None


def _select(batch: dict[str, Any], keep: list[int], size: int) -> dict[str, Any]:
    """Keep samples ``keep`` of a collated batch of ``size`` samples; count the rest as skipped."""
    out: dict[str, Any] = {}
    index = None
    for key, value in batch.items():
        if key == "num_skipped":
            out[key] = value + (size - len(keep))
        elif isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == size:
            if index is None or index.device != value.device:
                index = torch.tensor(keep, dtype=torch.long, device=value.device)
            out[key] = value.index_select(0, index)
        elif isinstance(value, list) and len(value) == size:
            out[key] = [value[i] for i in keep]
        else:
            out[key] = value
    return out
