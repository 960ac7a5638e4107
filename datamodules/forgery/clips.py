"""Face-forgery clips: the clip Dataset, its collate and the base datamodule of
OmniFD's video tasks (video classification and temporal forgery localization).
``heads.temporal.clip_to_video_frames``); clip segments are clipped to ``[0, valid frames]``.

Windows (``clip_len`` frames, ``frame_interval`` apart; a window spans ``clip_len *
frame_interval`` original frames):

* training: one window per video and epoch at a uniformly random start that keeps every
  sampled frame inside the video (start 0 when the video is shorter);
* ``eval_protocol="first_window"``: only the first window of each video, the released
  OmniFD code's evaluation (``VideoSlidingWindow`` with ``is_eval``: ForgeryNet video sees the
  first 32 snippets = 128 frames, LAV-DF the first 512 frames);
* ``eval_protocol="center_window"``: one window in the middle of the video, OmniFD's FF++ and
  WildDeepfake video protocol ("centre clip at test");
* ``eval_protocol="full_video"``: windows at starts ``0, step, 2*step, ...`` (``window_step``,
  default the window span, i.e. no overlap) plus, if the tail is not yet covered, one last
  window shifted back to end at the video's end; the windows' spans cover every frame. The
  model aggregates the windows of a video through ``meta["video_id"]`` / ``window`` /
  ``num_windows``. Scores of these two protocols are not comparable with the paper's.

A video shorter than the window is padded by repeating its last frame; ``frame_mask`` marks the
padding False.

Batches (``ForgeryVideoCollate``)::

    video          uint8 (B, 3, T, H, W)   RGB, T = clip_len, (H, W) = clip_size (after the
                                            face crop, when the records have face boxes)
    label          int64 (B,)              0 real / 1 fake (video level)
    segments       float32 (B, S, 2)       fake segments [start, end) in clip-frame units
                                            (0..T), clipped to the window, zero-padded to the
                                            batch's largest S (at least 1)
    num_segments   int64 (B,)              real rows of ``segments``
    frame_mask     bool (B, T)             False on padding frames
    meta           list of dicts           path, frame_indices (original index of each clip
                                            frame, padding repeats the last), fps, duration
                                            (s), original_size [H, W], video_id, window,
                                            num_windows, segments_seconds (the whole video's
                                            fake segments in seconds), num_frames; face_boxes
                                            (the box used per clip frame) when cropping;
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from polyvision.datamodules.base import collate_samples
from polyvision.datamodules.cache import resolve_cache_dir
from polyvision.datamodules.forgery.annotations import (
    VideoRecord,
    _box_tolerance,
    _check_label,
    _resolve,
)
from polyvision.datamodules.forgery.synthetic_videos import (
    SYNTHETIC_DEFAULTS,
    SYNTHETIC_WRITERS,
    synthetic_video_is_complete,
)
from polyvision.datamodules.geometry import clip_geometry
from polyvision.datamodules.video.backends import VideoDecodeError, list_frame_files
from polyvision.datamodules.video.datamodule import VideoDataModule
from polyvision.datamodules.video.reader import DecoderCache, VideoReader
from polyvision.datamodules.video.samplers import (
    EVAL_PROTOCOLS,
    clip_indices,
    clip_segments,
    window_starts,
)
from polyvision.datamodules.video.transforms import as_clip_augment, resize
from polyvision.errors import ConfigError, DataError
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from torch.utils.data import Dataset


def _int_box(box: Sequence[float] | None, height: int, width: int) -> tuple[int, int, int, int]:
    if not box:
        return 0, 0, width, height
    x1 = int(math.floor(min(max(box[0], 0), width)))
    y1 = int(math.floor(min(max(box[1], 0), height)))
    x2 = int(math.ceil(min(max(box[2], 0), width)))
    y2 = int(math.ceil(min(max(box[3], 0), height)))
    if x2 - x1 < 2 or y2 - y1 < 2:  # the box lies outside the frame: keep the frame
        return 0, 0, width, height
    return x1, y1, x2, y2


def crop_faces(frames: Tensor, boxes: Sequence[Sequence[float] | None], size: int | Sequence[int]) -> Tensor:
    """Cut every frame to its box and resize it to ``size`` (bilinear, antialiased).

    ``frames`` uint8 ``(T, H, W, 3)`` on any device, ``boxes`` one ``[x1, y1, x2, y2]`` (or
    None/``[]``: the whole frame) per frame, clamped to the frame. Returns uint8 ``(3, T, h, w)``.
    Frames sharing a box are resized together."""
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    t_len, height, width, _ = frames.shape
    if len(boxes) != t_len:
        raise ValueError(f"{len(boxes)} boxes for {t_len} frames")
    out = torch.empty((3, t_len, h, w), dtype=torch.uint8, device=frames.device)
    groups: dict[tuple[int, int, int, int], list[int]] = {}
    for t, box in enumerate(boxes):
        groups.setdefault(_int_box(box, height, width), []).append(t)
    for (x1, y1, x2, y2), ts in groups.items():
        index = torch.tensor(ts, device=frames.device)
        crop = frames.index_select(0, index)[:, y1:y2, x1:x2].permute(0, 3, 1, 2).float()
        if crop.shape[-2:] != (h, w):
            crop = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        out[:, index] = crop.round_().clamp_(0, 255).to(torch.uint8).permute(1, 0, 2, 3)
    return out


# ----------------------------------------------------------------------------------------
# Dataset and collate
# ----------------------------------------------------------------------------------------
class ForgeryVideoDataset(Dataset):
    """Clips of annotated forgery videos (see the module docstring for windows and keys).

    Args:
        records: :class:`VideoRecord` s (or dicts of their fields).
        clip_len, frame_interval: frames per clip and the step between them.
        mode: ``"train"`` (a random window per video), or an evaluation protocol
            (``first_window``, ``center_window``, ``full_video``).
        window_step: ``full_video`` only: frames between window starts (default: the span).
        clip_size: (H, W) of the output frames (needed with face crops).
        face_crop: cut each frame to its record's per-frame face box.
        decode: decode here (CPU path); False returns everything but ``video`` and puts the
            decoder's frame numbers in ``meta["decode_indices"]`` for device decoding.
        backend, num_threads, fps, cache_size: see ``VideoReader`` / ``DecoderCache``.
        augment: ``ClipAugment`` (or albumentations transforms), training, CPU path only.
    """

    def __init__(
        self,
        records: Sequence[Any],
        *,
        clip_len: int = 32,
        frame_interval: int = 1,
        mode: str = "train",
        window_step: int | None = None,
        clip_size: int | Sequence[int] | None = 224,
        face_crop: bool = True,
        decode: bool = True,
        backend: str = "auto",
        num_threads: int = 0,
        fps: float | None = None,
        augment: Any = None,
        cache_size: int = 4,
    ):
        if mode != "train" and mode not in EVAL_PROTOCOLS:
            raise ConfigError(f"mode must be 'train' or one of {', '.join(EVAL_PROTOCOLS)}, got {mode!r}")
        if int(clip_len) < 1 or int(frame_interval) < 1:
            raise ConfigError(f"clip_len and frame_interval must be >= 1, got {clip_len}, {frame_interval}")
        self.records = [VideoRecord.from_any(r) for r in records]
        self.clip_len, self.frame_interval = int(clip_len), int(frame_interval)
        self.mode = mode
        if window_step is not None and not 1 <= int(window_step) <= self.clip_len * self.frame_interval:
            raise ConfigError(f"window_step must be in 1..{self.clip_len * self.frame_interval} (clip_len * "
                              f"frame_interval) so that the windows cover every frame, got {window_step}")
        self.window_step = None if window_step is None else int(window_step)
        self.clip_size = None if clip_size is None else (
            (int(clip_size), int(clip_size)) if isinstance(clip_size, int) else tuple(int(v) for v in clip_size))
        self.face_crop = bool(face_crop)
        if self.face_crop and self.clip_size is None and any(r.face_boxes for r in self.records):
            raise ConfigError("face_crop needs clip_size (face boxes differ in size from frame to frame)")
        self.decode = decode
        self.backend, self.num_threads, self.fps = backend, num_threads, fps
        self.augment = as_clip_augment(augment)
        self.cache = DecoderCache(max_open=cache_size)
        self._frame_maps: dict[int, list[int]] = {}
        self._items: list[tuple[int, int]] | None = None
        self._window_counts: dict[int, int] = {}
        self._counts: dict[int, int] = {}
        self._check_ids()

    def _check_ids(self) -> None:
        seen: dict[str, int] = {}
        for record in self.records:
            key = str(record.video_id)
            if key in seen:
                seen[key] += 1
                record.video_id = f"{key}#{seen[key]}"
                warnings.warn(f"{record.source_file}: {record.where}: video_id {key!r} appears more than once; "
                              f"renamed to {record.video_id!r}", stacklevel=3)
            else:
                seen[key] = 0

    # -- bookkeeping
    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    def _reader(self, video: int) -> VideoReader:
        return self.cache.get(self.records[video].path, self.backend, "cpu", num_threads=self.num_threads,
                              fps=self.fps)

    def num_frames(self, video: int) -> int:
        """Frames of video ``video``: ``frames_list``, the record's count, else the decoder's."""
        if video not in self._counts:
            record = self.records[video]
            self._counts[video] = len(record.frames) if record.frames else (
                record.num_frames or len(self._reader(video)))
        return self._counts[video]

    def _index(self) -> list[tuple[int, int]]:
        """(video, window) items; eval protocols other than full_video have one per video."""
        if self._items is None:
            if self.mode == "full_video":
                items = []
                for v in range(len(self.records)):
                    try:
                        n = self.num_frames(v)
                    except DataError:  # raised again in __getitem__, where it can be skipped
                        n = 1
                    count = len(window_starts(n, self.clip_len, self.frame_interval, "full_video", self.window_step))
                    self._window_counts[v] = count
                    items += [(v, w) for w in range(count)]
            else:
                items = [(v, 0) for v in range(len(self.records))]
            self._items = items
        return self._items

    def __len__(self) -> int:
        return len(self._index())

    def _decode_map(self, video: int) -> list[int] | None:
        """Decoder frame number of each ``frames_list`` entry (None: identity)."""
        record = self.records[video]
        if not record.frames:
            return None
        if video not in self._frame_maps:
            position = {p.name: i for i, p in enumerate(list_frame_files(record.path))}
            try:
                self._frame_maps[video] = [position[name] for name in record.frames]
            except KeyError as error:
                raise DataError(record.source_file, f"{record.where}: frame {error.args[0]!r} is no longer in "
                                f"{record.path}") from None
        return self._frame_maps[video]

    def _boxes(self, record: VideoRecord, indices: list[int], num_frames: int) -> list[Any]:
        boxes = record.face_boxes or []
        if len(boxes) + _box_tolerance(num_frames) < num_frames:
            raise DataError(record.source_file, f"{record.where}: 'face_data' has {len(boxes)} boxes but the "
                            f"video has {num_frames} frames ({record.path})")
        return [boxes[min(i, len(boxes) - 1)] for i in indices]

    # -- items
    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        video, window = self._index()[index]
        record = self.records[video]
        reader = self._reader(video)
        n = len(record.frames) if record.frames else len(reader)
        fps = float(record.fps or reader.fps or 0.0)
        if fps <= 0:
            raise VideoDecodeError(record.path, "unknown frame rate")
        span = (self.clip_len - 1) * self.frame_interval + 1
        if self.mode == "train":
            start = int(torch.randint(0, max(0, n - span) + 1, (1,)).item())
            num_windows = 1
        else:
            starts = window_starts(n, self.clip_len, self.frame_interval, self.mode, self.window_step)
            # (the frame count the windows were enumerated with may have been off: stay inside)
            start = starts[min(window, len(starts) - 1)]
            num_windows = self._window_counts.get(video, 1) if self.mode == "full_video" else 1
        indices, valid = clip_indices(start, self.clip_len, self.frame_interval, n)
        mapping = self._decode_map(video)
        decode_indices = [mapping[i] for i in indices] if mapping is not None else list(indices)

        if record.segments is not None:
            seg_frames = [(float(s), float(e)) for s, e in record.segments]
        else:
            seg_frames = [(s * fps, e * fps) for s, e in (record.segments_seconds or [])]
        if record.segments_seconds is not None:
            seg_seconds = [[float(s), float(e)] for s, e in record.segments_seconds]
        else:
            seg_seconds = [[s / fps, e / fps] for s, e in seg_frames]
        in_clip = clip_segments(seg_frames, start, self.frame_interval, valid)
        boxes = self._boxes(record, indices, n) if self.face_crop and record.face_boxes else None

        height, width = reader.size
        meta: dict[str, Any] = {
            "path": record.path,
            "frame_indices": indices,
            "fps": fps,
            "duration": float(record.duration) if record.duration else n / fps,
            "original_size": [int(height), int(width)],
            "video_id": str(record.video_id),
            "window": int(window) if self.mode == "full_video" else 0,
            "num_windows": int(num_windows),
            "segments_seconds": seg_seconds,
            "num_frames": int(n),
        }
        if boxes is not None:
            meta["face_boxes"] = [[int(v) for v in _int_box(b, height, width)] for b in boxes]
        sample: dict[str, Any] = {
            "label": torch.tensor(record.label, dtype=torch.int64),
            "segments": torch.tensor(in_clip, dtype=torch.float32).reshape(-1, 2),
            "frame_mask": torch.arange(self.clip_len) < valid,
        }
        if not self.decode:
            meta["decode_indices"] = decode_indices
            sample["meta"] = meta
            return sample
        frames = reader.get_frames(decode_indices)
        meta["original_size"] = [int(frames.shape[1]), int(frames.shape[2])]
        sample["video"] = _frames_to_clip(frames, meta.get("face_boxes"), self.clip_size)
        if self.augment is not None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
            out = self.augment(sample["video"].permute(1, 2, 3, 0).numpy(), seed)
            sample["video"] = torch.from_numpy(np.ascontiguousarray(out)).permute(3, 0, 1, 2).contiguous()
        sample["meta"] = meta
        return sample

    def __getstate__(self):
        state = dict(self.__dict__)
        state["cache"] = DecoderCache(self.cache.max_open)
        return state


def _frames_to_clip(frames: Tensor, boxes: list | None, clip_size: tuple[int, int] | None) -> Tensor:
    """uint8 (T, H, W, 3) -> (3, T, h, w): face crop (with boxes) or a resize to clip_size."""
    if boxes is not None:
        return crop_faces(frames, boxes, clip_size)  # type: ignore[arg-type]
    clip = frames.permute(3, 0, 1, 2)
    if clip_size is not None:
        clip = resize(clip, clip_size)
    return clip.contiguous()


class ForgeryVideoCollate:
    """A picklable collate_fn: ``collate_samples`` plus zero-padding of the per-sample
    ``segments`` (S_i, 2) to ``(B, max(1, max S_i), 2)`` and their counts ``num_segments``."""

    def __init__(self, source: str):
        self.source = source

    def __call__(self, samples: list[dict[str, Any] | None]) -> dict[str, Any]:
        segments = []
        stripped: list[dict[str, Any] | None] = []
        for sample in samples:
            if sample is None:
                stripped.append(None)
                continue
            sample = dict(sample)
            segments.append(sample.pop("segments", torch.zeros(0, 2)))
            stripped.append(sample)
        batch = collate_samples(stripped, self.source)
        if segments:
            width = max(1, max(int(s.shape[0]) for s in segments))
            padded = torch.zeros(len(segments), width, 2, dtype=torch.float32)
            for i, s in enumerate(segments):
                padded[i, : s.shape[0]] = s
            batch["segments"] = padded
            batch["num_segments"] = torch.tensor([int(s.shape[0]) for s in segments], dtype=torch.int64)
        return batch


# ----------------------------------------------------------------------------------------
# The generic datamodule
# ----------------------------------------------------------------------------------------
class ForgeryVideoDataModule(VideoDataModule):
    """Forgery-video clips for video classification and temporal localization.

    Generic over lists of :class:`VideoRecord` (or dicts of its fields) given as
    ``train_records`` etc., or provided by a subclass's ``records(split)`` (the dataset
    readers below). Batches: see the module docstring.

    Args:
        train_records, val_records, test_records, predict_records: the videos per split.
        clip_len: frames per clip (OmniFD: 32; LAV-DF: 512).
        frame_interval: step between clip frames (1 for FF++ and LAV-DF, 4 for ForgeryNet and
            WildDeepfake).
        clip_size: (H, W) (or an int) every clip frame is resized to, after the face crop.
        eval_protocol: windows for val/test/predict: ``"first_window"`` (the released OmniFD
            code: only the first window of every video), ``"center_window"`` (OmniFD's FF++ /
            WildDeepfake centre clip) or ``"full_video"`` (windows covering every frame; the
            model aggregates them per ``meta["video_id"]``). Training always draws one random
            window per video.
        window_step: ``full_video``: frames between window starts (default: the window's span
            ``clip_len * frame_interval``, no overlap; smaller values overlap).
        face_crop: cut frames to the records' per-frame face boxes (ForgeryNet), on the CPU in
            the workers or on the device with ``decode_device="cuda"``.
        **kwargs: ``VideoDataModule`` options: ``batch_size``, ``eval_batch_size``,
            ``num_workers``, ``backend``, ``decode_device``, ``decode_threads``, ``crop_size``,
            ``random_flip``, ``normalize``, ``mean``, ``std``, ``augment``,
            ``skip_bad_samples``, ``source`` (default ``"video"``), ``cache_size``, ``fps``
            (frame folders), ``pin_memory``.
    """

    def __init__(
        self,
        train_records: Sequence[Any] | None = None,
        val_records: Sequence[Any] | None = None,
        test_records: Sequence[Any] | None = None,
        predict_records: Sequence[Any] | None = None,
        *,
        clip_len: int = 32,
        frame_interval: int = 1,
        clip_size: int | Sequence[int] | None = 224,
        eval_protocol: Literal["first_window", "center_window", "full_video"] = "first_window",
        window_step: int | None = None,
        face_crop: bool = True,
        **kwargs: Any,
    ):
        if eval_protocol not in EVAL_PROTOCOLS:
            raise ConfigError(f"eval_protocol must be one of {', '.join(EVAL_PROTOCOLS)}, got {eval_protocol!r}")
        if int(clip_len) < 1 or int(frame_interval) < 1:
            raise ConfigError(f"clip_len and frame_interval must be >= 1, got {clip_len}, {frame_interval}")
        if window_step is not None and not 1 <= int(window_step) <= int(clip_len) * int(frame_interval):
            raise ConfigError(f"window_step must be in 1..clip_len*frame_interval "
                              f"({int(clip_len) * int(frame_interval)}) so that the windows cover every frame, "
                              f"got {window_step}")
        for name in ("train_videos", "val_videos", "test_videos", "predict_videos", "train_sampler", "eval_sampler"):
            if kwargs.pop(name, None) is not None:
                raise ConfigError(f"{type(self).__name__}: use *_records and clip_len/frame_interval/eval_protocol, "
                                  f"not {name}")
        super().__init__(clip_size=clip_size, **kwargs)
        self.save_hyperparameters(ignore=["train_records", "val_records", "test_records", "predict_records",
                                          "augment"])
        self._records = {"train": train_records, "val": val_records, "test": test_records,
                         "predict": predict_records}
        self.clip_len, self.frame_interval = int(clip_len), int(frame_interval)
        self.eval_protocol = eval_protocol
        self.window_step = window_step
        self.face_crop = face_crop

    def input_geometry(self) -> dict[str, dict[str, Any]]:
        """Windows of ``clip_len`` frames ``frame_interval`` apart, ``window_step`` apart over a whole video."""
        return {self.source: clip_geometry(self.clip_len, self.frame_interval, self.clip_size, self.crop_size,
                                           self.window_step)}

    # -- data definition (override in readers)
    def records(self, split: str) -> Sequence[Any] | None:
        """The videos of ``split`` ("train", "val", "test", "predict"), or None."""
        return self._records.get(split)

    def videos(self, split: str):  # the base class's hook; records() replaces it here
        return self.records(split)

    def build_dataset(self, split: str) -> ForgeryVideoDataset | None:
        records = self.records(split)
        if records is None:
            return None
        records = [VideoRecord.from_any(r) for r in records]
        for record in records:
            if _check_label(record.label) is None:
                raise DataError(record.source_file, f"{record.where}: label must be 0 or 1, got {record.label!r}")
            if not os.path.exists(record.path):
                raise DataError(record.source_file, f"{record.where}: video file not found: {record.path}")
        return ForgeryVideoDataset(
            records,
            clip_len=self.clip_len,
            frame_interval=self.frame_interval,
            mode="train" if split == "train" else self.eval_protocol,
            window_step=self.window_step,
            clip_size=self.clip_size,
            face_crop=self.face_crop,
            decode=self.decode_device == "cpu",
            backend=self.backend,
            num_threads=self._worker_threads(),
            fps=self.fps,
            augment=self.augment if split == "train" else None,
            cache_size=self.cache_size,
        )

    def collate_fn(self) -> ForgeryVideoCollate:
        """Pads ``segments`` to the batch's largest count."""
        return ForgeryVideoCollate(self.source)

    # -- device decoding (decode_device="cuda"): decode_indices and face crops on the device
    def decode_indices(self, meta: dict[str, Any]) -> list[int]:
        return meta.get("decode_indices", meta["frame_indices"])

    def frames_to_clip(self, frames: Tensor, meta: dict[str, Any]) -> Tensor:
        """Face crop (per-frame boxes) before resizing to ``clip_size``."""
        return _frames_to_clip(frames, meta.get("face_boxes"), self.clip_size)


# ----------------------------------------------------------------------------------------
# Dataset readers
# ----------------------------------------------------------------------------------------
class _SyntheticMixin:
    """``root`` / ``synthetic`` / ``cache_dir`` handling shared by the readers."""

    synthetic_kind = ""

    def _init_root(self, root: str | None, synthetic: bool, cache_dir: str | None,
                   synthetic_options: dict[str, Any] | None = None) -> None:
        if root is None and not synthetic:
            raise ConfigError(f"{type(self).__name__}: set root to the data directory, or synthetic=True")
        # cache_dir None: polyvision's cache folder (datamodules/cache.py), synthetic/<kind>
        self.root = (Path(root).expanduser() if root is not None
                     else resolve_cache_dir(cache_dir, "synthetic", self.synthetic_kind))
        self.synthetic = synthetic
        self.synthetic_options = dict(synthetic_options or {})

    @property
    def synthetic_settings(self) -> dict[str, int]:
        """Keyword arguments of the synthetic writer used when ``synthetic`` is set: its
        defaults, updated with ``synthetic_options`` (e.g. ``num_videos``)."""
        return {**SYNTHETIC_DEFAULTS[self.synthetic_kind], **self.synthetic_options}

    def prepare_data(self) -> None:
        """Write the synthetic dataset unless a complete one with the same settings exists."""
        if not self.synthetic:
            return
        if synthetic_video_is_complete(self.synthetic_kind, self.root, **self.synthetic_settings):
            return
        rank_zero_info(f"writing synthetic {self.synthetic_kind} videos to {self.root}")
        SYNTHETIC_WRITERS[self.synthetic_kind](self.root, **self.synthetic_settings)

    def _check_prepared(self) -> None:
        if self.synthetic and not synthetic_video_is_complete(self.synthetic_kind, self.root,
                                                              **self.synthetic_settings):
            raise DataError(self.root, "synthetic dataset not prepared; call prepare_data() first")

    def _annotation_or_test(self, val: str, test: str) -> Path:
        path = _resolve(val, self.root)
        if not path.exists():
            fallback = _resolve(test, self.root)
            rank_zero_warn(f"{path}: validation annotation not found; validating on the test split ({fallback}). "
                           "Model selection on test data inflates test scores.")
            return fallback
        return path


def _nonempty(records: list[VideoRecord], source: Path | str) -> list[VideoRecord]:
    if not records:
        raise DataError(source, "annotation holds no videos")
    return records
