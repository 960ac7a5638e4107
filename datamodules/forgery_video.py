"""Face-forgery *video* data: annotation readers, the clip Dataset and the datamodules of
OmniFD's video tasks (video classification and temporal forgery localization).

Readers (all validate eagerly, in ``setup``, raising a one-line :class:`DataError` that names
the annotation file and the record/field, e.g. ``video_train.json: data_list[3]: missing
field 'gt_label'``):

=============================  =================================================================
``load_video_annotations``     OmniFD/MMEngine ``{"metainfo", "data_list"}`` video records:
                               ``video_path`` (an mp4 file, ``.mp4`` appended when the path has
                               no extension and is not a folder; or a frame folder),
                               ``gt_label`` 0/1, ``gt_segments`` ``[{"frame": [s, e], "label":
                               0|1}]`` (label-0, i.e. real, segments are dropped), ``duration``
                               (s), ``face_data`` (one ``[x1, y1, x2, y2]`` per original frame),
                               ``frames_list`` (frame folders). ForgeryNet, FF++ and WildDeepfake.
``load_lavdf_metadata``        LAV-DF's native ``metadata.json`` (a list of ``{file, n_fakes,
                               fake_periods (s), duration, original, modify_video, modify_audio,
                               split, video_frames, ...}``), visual track only.
``scan_wilddeepfake``          WildDeepfake frame folders ``{real,fake}_{train,test}/**/`` when
                               there is no annotation file.
``load_forgerynet_image_annotations``  ForgeryNet image records (``img_path``, ``gt_label``,
                               ``seg_map_path``, ``face_data``) with per-split image/mask folders.
=============================  =================================================================

Frame units. A segment ``[s, e)`` in frames covers the continuous span from the start of frame
``s`` to the start of frame ``e`` (frame ``f`` spans ``[f, f+1)``), so seconds are frames /
fps both ways (LAV-DF's ``fake_periods`` become frames as ``period * fps``). A clip of
``clip_len`` frames taken every ``frame_interval`` frames from ``start`` maps original position
``x`` to clip position ``(x - start) / frame_interval`` (the inverse of
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
                                            decode_indices on the GPU-decoding path
    source, num_skipped                     as every polyvision batch

``segments`` only carries information where the dataset has temporal annotation (ForgeryNet,
LAV-DF); FF++ and WildDeepfake fake videos have no segments (``num_segments`` 0).
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn  # noqa: E402
from torch import Tensor  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from polyvision.datamodules.base import collate_samples  # noqa: E402
from polyvision.datamodules.forgery import (  # noqa: E402
    FaceForensicsDataModule,
    ForgeryImageDataset,
    ImageRecord,
    _check_label,
    check_record,
    read_json,
)
from polyvision.datamodules.synthetic_forgery_video import (  # noqa: E402
    SYNTHETIC_DEFAULTS,
    SYNTHETIC_WRITERS,
    synthetic_video_is_complete,
)
from polyvision.datamodules.video import (  # noqa: E402
    IMAGE_SUFFIXES,
    DecoderCache,
    VideoDecodeError,
    VideoReader,
    list_frame_files,
)
from polyvision.datamodules.video_datamodule import (  # noqa: E402
    VideoDataModule,
    as_clip_augment,
    resize,
)
from polyvision.errors import ConfigError, DataError  # noqa: E402

__all__ = [
    "EVAL_PROTOCOLS",
    "FaceForensicsVideoDataModule",
    "ForgeryNetImageDataModule",
    "ForgeryNetImageDataset",
    "ForgeryNetVideoDataModule",
    "ForgeryVideoCollate",
    "ForgeryVideoDataModule",
    "ForgeryVideoDataset",
    "LAVDFDataModule",
    "VideoRecord",
    "WildDeepfakeDataModule",
    "clip_segments",
    "crop_faces",
    "load_forgerynet_image_annotations",
    "load_lavdf_metadata",
    "load_video_annotations",
    "scan_wilddeepfake",
    "window_starts",
]

EVAL_PROTOCOLS = ("first_window", "center_window", "full_video")
#: Seconds by which a LAV-DF fake period may run past the video's duration (rounding).
DURATION_TOLERANCE = 0.05


def _box_tolerance(num_frames: int) -> int:
    """How many frames ``face_data`` may fall short of the decoded frame count (decoders
    disagree by a frame or two at the end); the last box is reused for those frames."""
    return max(2, num_frames // 100)


# ----------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------
@dataclass
class VideoRecord:
    """One annotated video (a file or a frame folder).

    Attributes:
        path: absolute path of the mp4 file or frame folder.
        label: 0 real, 1 fake (video level).
        segments: fake segments ``[start, end)`` in original frames (floats allowed), or None
            (then derived from ``segments_seconds`` with the video's fps).
        segments_seconds: the same in seconds, or None (derived from ``segments``). With
            neither, the video has no fake segments.
        duration: seconds (None: frames / fps of the decoded video).
        fps: frame rate (None: the decoder's; frame folders: the datamodule's ``fps``).
        num_frames: frame count if known without decoding (LAV-DF ``video_frames``); used to
            enumerate ``full_video`` windows without opening every video.
        face_boxes: ``[x1, y1, x2, y2]`` per original frame (``[]``/None: whole frame), or None.
        frames: frame-folder videos: the frame file names in order (``frames_list``); None:
            every image file of the folder in natural order.
        video_id: stable id (the annotation's relative path); defaults to ``path``.
        extra: ``annotation`` (file) and ``record`` (``data_list[3]``) for error messages,
            plus the record's other fields.
    """

    path: str
    label: int
    segments: list[tuple[float, float]] | None = None
    segments_seconds: list[tuple[float, float]] | None = None
    duration: float | None = None
    fps: float | None = None
    num_frames: int | None = None
    face_boxes: list[list[float]] | None = None
    frames: list[str] | None = None
    video_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.video_id is None:
            self.video_id = str(self.path)

    @classmethod
    def from_any(cls, item: Any) -> "VideoRecord":
        """A ``VideoRecord``, a dict of its fields, or ``(path, label)``."""
        if isinstance(item, VideoRecord):
            return item
        if isinstance(item, dict):
            unknown = set(item) - set(cls.__dataclass_fields__)
            if unknown:
                raise ConfigError(f"video record {item.get('path')!r}: unknown field(s) {sorted(unknown)}")
            return cls(**item)
        if isinstance(item, (tuple, list)) and len(item) == 2:
            return cls(str(item[0]), item[1])
        raise ConfigError(f"cannot make a video record of {item!r}")

    @property
    def where(self) -> str:
        return self.extra.get("record", "record")

    @property
    def source_file(self) -> str:
        """The annotation file the record came from (or the video itself)."""
        return self.extra.get("annotation", self.path)


# ----------------------------------------------------------------------------------------
# Annotation readers
# ----------------------------------------------------------------------------------------
def _data_list(path: Path) -> list[Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(path, f"expected a JSON object with 'metainfo' and 'data_list', got {type(data).__name__}")
    for key in ("metainfo", "data_list"):
        if key not in data:
            raise DataError(path, f"missing key '{key}' (an OmniFD annotation needs 'metainfo' and 'data_list')")
    items = data["data_list"]
    if not isinstance(items, list):
        raise DataError(path, f"'data_list' must be a list, got {type(items).__name__}")
    return items


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _resolve(path: str, root: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


def _check_box(box: Any) -> bool:
    """``[]``/None (no box) or 4 numbers with x2 > x1 and y2 > y1."""
    if box is None or (isinstance(box, (list, tuple)) and len(box) == 0):
        return True
    return (isinstance(box, (list, tuple)) and len(box) == 4 and all(_is_number(v) for v in box)
            and box[2] > box[0] and box[3] > box[1])


def _check_face_data(path: Path, where: str, boxes: Any, per_frame: bool) -> None:
    if per_frame:
        if not isinstance(boxes, list):
            raise DataError(path, f"{where}: field 'face_data' must be a list of [x1, y1, x2, y2] boxes, "
                            f"one per frame, got {type(boxes).__name__}")
        for k, box in enumerate(boxes):
            if not _check_box(box):
                raise DataError(path, f"{where}: face_data[{k}] must be [x1, y1, x2, y2] with x2 > x1 and "
                                f"y2 > y1 (or []), got {box!r}")
    elif not _check_box(boxes):
        raise DataError(path, f"{where}: field 'face_data' must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1 "
                        f"(or []), got {boxes!r}")


def _video_file(raw: str, root: Path) -> Path:
    """OmniFD's rule: an mp4 file, ``.mp4`` appended when the path has no extension (and is
    not a frame folder)."""
    path = _resolve(raw, root)
    if not path.suffix and not path.is_dir():
        path = path.with_name(path.name + ".mp4")
    return path


def _parse_gt_segments(path: Path, where: str, value: Any, label: int,
                       num_boxes: int | None) -> list[tuple[float, float]]:
    if not isinstance(value, list):
        raise DataError(path, f"{where}: field 'gt_segments' must be a list, got {type(value).__name__}")
    fakes = []
    for k, seg in enumerate(value):
        at = f"{where}: gt_segments[{k}]"
        if not isinstance(seg, dict) or "frame" not in seg:
            raise DataError(path, f"{at}: expected {{'frame': [start, end], 'label': 0|1}}, got {seg!r}")
        frame = seg["frame"]
        if not (isinstance(frame, (list, tuple)) and len(frame) == 2 and all(_is_number(v) for v in frame)):
            raise DataError(path, f"{at}: 'frame' must be [start, end] frame numbers, got {frame!r}")
        seg_label = _check_label(seg.get("label", 1))
        if seg_label is None:
            raise DataError(path, f"{at}: 'label' must be 0 (real) or 1 (fake), got {seg.get('label')!r}")
        start, end = float(frame[0]), float(frame[1])
        if start < 0 or end < start:
            raise DataError(path, f"{at}: 'frame' [{frame[0]}, {frame[1]}] must satisfy 0 <= start <= end")
        if num_boxes and end > num_boxes + _box_tolerance(num_boxes):
            raise DataError(path, f"{at}: ends at frame {frame[1]} but 'face_data' has boxes for "
                            f"{num_boxes} frames")
        if seg_label == 1 and end > start:
            fakes.append((start, end))
    if fakes and label == 0:
        raise DataError(path, f"{where}: 'gt_label' is 0 (real) but 'gt_segments' holds fake segments")
    return fakes


def load_video_annotations(
    path: str | os.PathLike,
    video_root: str | os.PathLike,
    *,
    require_face_data: bool = False,
) -> list[VideoRecord]:
    """Read and validate an OmniFD (MMEngine ``data_list``) video annotation file.

    Args:
        path: the JSON file.
        video_root: the folder ``video_path`` is relative to (OmniFD's ``data_prefix``);
            absolute ``video_path`` values are kept.
        require_face_data: every record needs ``face_data`` (ForgeryNet with face crops).

    Returns:
        One :class:`VideoRecord` per record, in file order; ``segments`` holds the fake
        (label 1) ``gt_segments`` in frames, ``video_id`` the ``video_path`` as written.

    Raises:
        DataError: unreadable/malformed JSON, a missing or malformed field, a segment out of
            order or past the face boxes, fake segments on a real video, a missing video file
            or frame folder, or a ``frames_list`` entry that is not in the folder.
    """
    path = Path(path).expanduser()
    root = Path(video_root).expanduser()
    records = []
    for index, item in enumerate(_data_list(path)):
        where = f"data_list[{index}]"
        raw, label = check_record(path, where, item, "video_path", ("face_data",) if require_face_data else ())
        boxes = item.get("face_data")
        if boxes is not None:
            _check_face_data(path, where, boxes, per_frame=True)
            boxes = boxes or None
        duration = item.get("duration")
        if duration is not None and (not _is_number(duration) or duration <= 0):
            raise DataError(path, f"{where}: field 'duration' must be a positive number of seconds, got {duration!r}")
        segments = _parse_gt_segments(path, where, item.get("gt_segments", []), label,
                                      len(boxes) if boxes else None)
        video = _video_file(raw, root)
        frames = item.get("frames_list")
        if video.is_dir():
            names = set(os.listdir(video))
            if frames is not None:
                if not isinstance(frames, list) or not frames or not all(isinstance(f, str) and f for f in frames):
                    raise DataError(path, f"{where}: field 'frames_list' must be a non-empty list of file names")
                frames = [Path(f).name for f in frames]
                missing = [f for f in frames if f not in names]
                if missing:
                    raise DataError(path, f"{where}: frames_list names {len(missing)} file(s) not in {video} "
                                    f"(e.g. {missing[0]})")
                bad = [f for f in frames if Path(f).suffix.lower() not in IMAGE_SUFFIXES]
                if bad:
                    raise DataError(path, f"{where}: frames_list entry {bad[0]!r} is not an image "
                                    f"({', '.join(IMAGE_SUFFIXES)})")
            elif not any(Path(n).suffix.lower() in IMAGE_SUFFIXES for n in names):
                raise DataError(path, f"{where}: frame folder has no image frames: {video}")
        elif not video.is_file():
            raise DataError(path, f"{where}: video file not found: {video}")
        elif frames is not None:
            frames = None  # frames_list only applies to frame folders
        extra = {k: v for k, v in item.items()
                 if k not in ("video_path", "gt_label", "gt_segments", "duration", "face_data", "frames_list")}
        extra.update(annotation=str(path), record=where)
        # the frame count: frames_list, else (a hint for enumerating full-video windows) the boxes
        count = len(frames) if frames else len(boxes) if boxes else None
        records.append(VideoRecord(str(video), label, segments=segments, duration=duration, face_boxes=boxes,
                                   frames=frames, num_frames=count, video_id=raw, extra=extra))
    return records


def load_lavdf_metadata(
    path: str | os.PathLike,
    dataset_dir: str | os.PathLike | None = None,
    split: str | Sequence[str] | None = None,
    fake_modality: Literal["any", "visual"] = "any",
) -> list[VideoRecord]:
    """Read and validate LAV-DF's native ``metadata.json``.

    Args:
        path: the metadata file (a JSON list of records).
        dataset_dir: the folder ``file`` is relative to (default: the metadata's folder, i.e.
            ``<root>/LAV-DF``; files live in its ``train``/``dev``/``test`` subfolders).
        split: keep records whose ``split`` is this (or one of these); None keeps all.
        fake_modality: ``"any"``: every fake period counts, whichever track was modified
            (LAV-DF's protocol, and what OmniFD's metric reads); ``"visual"``: only videos
            whose visual track was modified (``modify_video``) are fake, audio-only fakes are
            treated as real with no segments (a visual-only model cannot see them).

    Returns:
        One record per video with ``segments_seconds`` (the ``fake_periods``), ``duration``,
        ``num_frames`` (``video_frames`` when present) and ``video_id`` (``file``); frames are
        derived at read time with the video's fps.

    Raises:
        DataError: malformed JSON or record, a fake period outside ``[0, duration]`` (with
            ``DURATION_TOLERANCE``), an unknown split, or a missing video file.
    """
    if fake_modality not in ("any", "visual"):
        raise ConfigError(f"fake_modality must be 'any' or 'visual', got {fake_modality!r}")
    path = Path(path).expanduser()
    root = Path(dataset_dir).expanduser() if dataset_dir is not None else path.parent
    wanted = None if split is None else {split} if isinstance(split, str) else set(split)
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(path, "expected a JSON list of video records (LAV-DF metadata.json), "
                        f"got {type(data).__name__}")
    records, seen = [], set()
    for index, item in enumerate(data):
        where = f"metadata[{index}]"
        if not isinstance(item, dict):
            raise DataError(path, f"{where}: expected an object, got {type(item).__name__}")
        required = ("file", "fake_periods", "duration", "split")
        if fake_modality == "visual":
            required += ("modify_video",)
        for key in required:
            if key not in item:
                raise DataError(path, f"{where}: missing field '{key}'")
        file = item["file"]
        if not isinstance(file, str) or not file:
            raise DataError(path, f"{where}: field 'file' must be a non-empty string, got {file!r}")
        where = f"{where} ({file})"
        seen.add(item["split"])
        if wanted is not None and item["split"] not in wanted:
            continue
        duration = item["duration"]
        if not _is_number(duration) or duration <= 0:
            raise DataError(path, f"{where}: field 'duration' must be a positive number of seconds, got {duration!r}")
        periods = item["fake_periods"]
        if not isinstance(periods, list):
            raise DataError(path, f"{where}: field 'fake_periods' must be a list of [start, end] seconds")
        segments = []
        for k, period in enumerate(periods):
            if not (isinstance(period, (list, tuple)) and len(period) == 2 and all(_is_number(v) for v in period)):
                raise DataError(path, f"{where}: fake_periods[{k}] must be [start, end] in seconds, got {period!r}")
            start, end = float(period[0]), float(period[1])
            if not (0 <= start < end <= duration + DURATION_TOLERANCE):
                raise DataError(path, f"{where}: fake_periods[{k}] [{period[0]}, {period[1]}] is outside the "
                                f"video (duration {duration} s) or empty")
            segments.append((start, min(end, float(duration))))
        frames = item.get("video_frames")
        if frames is not None and (not isinstance(frames, int) or isinstance(frames, bool) or frames < 1):
            raise DataError(path, f"{where}: field 'video_frames' must be a positive integer, got {frames!r}")
        if fake_modality == "visual" and not item["modify_video"]:
            segments = []
        video = _resolve(file, root)
        if not video.is_file():
            raise DataError(path, f"{where}: video file not found: {video}")
        extra = {k: v for k, v in item.items() if k not in ("file", "fake_periods", "duration", "video_frames")}
        extra.update(annotation=str(path), record=where)
        records.append(VideoRecord(str(video), int(bool(segments)), segments_seconds=segments,
                                   duration=float(duration), num_frames=frames, video_id=file, extra=extra))
    if wanted is not None and not wanted & seen:
        raise DataError(path, f"split {sorted(wanted)} not found (have {sorted(map(str, seen))})")
    return records


def scan_wilddeepfake(dataset_dir: str | os.PathLike, split: str) -> list[VideoRecord]:
    """WildDeepfake without an annotation file: every folder under ``real_<split>`` and
    ``fake_<split>`` (at any depth) that directly holds image frames is one video, labelled by
    its top folder. ``video_id`` is the folder relative to ``dataset_dir``."""
    base = Path(dataset_dir).expanduser()
    records = []
    for label, top in ((0, f"real_{split}"), (1, f"fake_{split}")):
        folder = base / top
        if not folder.is_dir():
            raise DataError(folder, f"WildDeepfake folder not found (expected {{real,fake}}_{split} under {base})")
        for current, _, files in sorted(os.walk(folder)):
            if any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in files):
                rel = Path(current).relative_to(base).as_posix()
                records.append(VideoRecord(current, label, video_id=rel,
                                           extra={"annotation": str(folder), "record": rel}))
    if not records:
        raise DataError(base, f"no frame folders under real_{split} / fake_{split}")
    return records


def load_forgerynet_image_annotations(
    path: str | os.PathLike,
    image_root: str | os.PathLike,
    mask_root: str | os.PathLike,
    *,
    require_face_data: bool = True,
) -> list[ImageRecord]:
    """Read and validate ForgeryNet image records (``img_path`` relative to ``image_root``,
    ``seg_map_path`` relative to ``mask_root``, ``gt_label``, ``face_data`` one box or ``[]``).
    The box is kept in ``ImageRecord.extra["face_box"]`` (None for ``[]``). A referenced mask
    file that does not exist counts as no mask (one warning), as in OmniFD."""
    path = Path(path).expanduser()
    images, masks = Path(image_root).expanduser(), Path(mask_root).expanduser()
    records, missing_masks = [], []
    for index, item in enumerate(_data_list(path)):
        where = f"data_list[{index}]"
        img, label = check_record(path, where, item, "img_path", ("face_data",) if require_face_data else ())
        seg = item.get("seg_map_path")
        if seg is not None and (not isinstance(seg, str) or not seg):
            raise DataError(path, f"{where}: field 'seg_map_path' must be a non-empty string, got {seg!r}")
        box = item.get("face_data")
        _check_face_data(path, where, box, per_frame=False)
        image = _resolve(img, images)
        if not image.is_file():
            raise DataError(path, f"{where}: image file not found: {image}")
        mask = _resolve(seg, masks) if seg else None
        if mask is not None and not mask.is_file():
            missing_masks.append(str(mask))
            mask = None
        extra = {k: v for k, v in item.items() if k not in ("img_path", "gt_label", "seg_map_path", "face_data")}
        extra.update(record=where, face_box=list(box) if box else None)
        records.append(ImageRecord(str(image), label, str(mask) if mask else None, extra))
    if missing_masks:
        warnings.warn(f"{path}: {len(missing_masks)} mask file(s) do not exist (e.g. {missing_masks[0]}); "
                      "those images are treated as having no ground-truth mask", stacklevel=2)
    return records


# ----------------------------------------------------------------------------------------
# Windows, segments, face crops
# ----------------------------------------------------------------------------------------
def window_starts(num_frames: int, clip_len: int, frame_interval: int = 1,
                  protocol: str = "full_video", step: int | None = None) -> list[int]:
    """Start frames of the evaluation windows of a video (see the module docstring)."""
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    span = (clip_len - 1) * frame_interval + 1  # first to last sampled frame
    limit = max(0, num_frames - span)  # the last start that keeps every sampled frame inside
    if protocol == "first_window":
        return [0]
    if protocol == "center_window":
        return [limit // 2]
    if protocol != "full_video":
        raise ConfigError(f"eval_protocol must be one of {', '.join(EVAL_PROTOCOLS)}, got {protocol!r}")
    length = clip_len * frame_interval  # frames a window covers
    starts = list(range(0, limit + 1, step or length))
    if starts[-1] + length < num_frames:
        starts.append(limit)
    return starts


def clip_indices(start: int, clip_len: int, frame_interval: int, num_frames: int) -> tuple[list[int], int]:
    """Original frame indices of a window (the last real frame repeated past the end) and the
    number of real frames."""
    raw = [start + k * frame_interval for k in range(clip_len)]
    valid = sum(i < num_frames for i in raw)
    last = raw[valid - 1]
    return [i if i < num_frames else last for i in raw], valid


def clip_segments(segments: Sequence[Sequence[float]], start: int, frame_interval: int,
                  valid: int) -> list[tuple[float, float]]:
    """Original-frame segments ``[s, e)`` as clip-frame segments of the window starting at
    ``start``: ``(x - start) / frame_interval``, clipped to ``[0, valid]``; empty ones dropped."""
    out = []
    for s, e in segments:
        a = min(max((float(s) - start) / frame_interval, 0.0), float(valid))
        b = min(max((float(e) - start) / frame_interval, 0.0), float(valid))
        if b - a > 1e-6:
            out.append((a, b))
    return out


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

    default_clip_len = 32
    default_frame_interval = 1

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

    def _init_root(self, root: str | None, synthetic: bool, cache_dir: str,
                   synthetic_options: dict[str, Any] | None = None) -> None:
        if root is None and not synthetic:
            raise ConfigError(f"{type(self).__name__}: set root to the data directory, or synthetic=True")
        self.root = Path(root if root is not None else cache_dir).expanduser()
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


class ForgeryNetVideoDataModule(_SyntheticMixin, ForgeryVideoDataModule):
    """ForgeryNet videos (OmniFD's unified setting): video classification + temporal
    localization, with per-frame face crops.

    Layout (``root``): ``ForgeryNet/annotations/video_{train,val}.json``, videos under
    ``ForgeryNet/Training/video`` (train) and ``ForgeryNet/Validation/video`` (val and test:
    ForgeryNet's Validation split is OmniFD's test set). Defaults follow OmniFD: 32 frames
    every 4th (a window spans 128 frames), 224 px, first-window evaluation.

    Args:
        root: data root (required unless ``synthetic``).
        synthetic: write (``prepare_data``) and read a synthetic ForgeryNet under ``root`` or
            ``cache_dir``.
        train_annotation, val_annotation, test_annotation, predict_annotation: relative to
            ``root`` (or absolute); predict defaults to test.
        train_video_dir, eval_video_dir: the folders ``video_path`` is relative to.
        Other arguments: see :class:`ForgeryVideoDataModule`.
    """

    synthetic_kind = "forgerynet"

    def __init__(
        self,
        root: str | None = None,
        synthetic: bool = False,
        cache_dir: str = "~/.cache/polyvision/synthetic/forgerynet",
        synthetic_options: dict[str, Any] | None = None,
        train_annotation: str = "ForgeryNet/annotations/video_train.json",
        val_annotation: str = "ForgeryNet/annotations/video_val.json",
        test_annotation: str = "ForgeryNet/annotations/video_val.json",
        predict_annotation: str | None = None,
        train_video_dir: str = "ForgeryNet/Training/video",
        eval_video_dir: str = "ForgeryNet/Validation/video",
        *,
        clip_len: int = 32,
        frame_interval: int = 4,
        clip_size: int | Sequence[int] | None = 224,
        eval_protocol: Literal["first_window", "center_window", "full_video"] = "first_window",
        window_step: int | None = None,
        face_crop: bool = True,
        **kwargs: Any,
    ):
        super().__init__(clip_len=clip_len, frame_interval=frame_interval, clip_size=clip_size,
                         eval_protocol=eval_protocol, window_step=window_step, face_crop=face_crop, **kwargs)
        self._init_root(root, synthetic, cache_dir, synthetic_options)
        self.annotations = {"train": train_annotation, "val": val_annotation, "test": test_annotation,
                            "predict": predict_annotation or test_annotation}
        self.video_dirs = {"train": train_video_dir, "val": eval_video_dir, "test": eval_video_dir,
                           "predict": eval_video_dir}

    def records(self, split: str) -> list[VideoRecord]:
        self._check_prepared()
        path = _resolve(self.annotations[split], self.root)
        records = load_video_annotations(path, _resolve(self.video_dirs[split], self.root),
                                         require_face_data=self.face_crop)
        return _nonempty(records, path)


class FaceForensicsVideoDataModule(_SyntheticMixin, ForgeryVideoDataModule):
    """FaceForensics++ video classification (OmniFD): frame folders in the DeepfakeBench
    layout with ``FaceForensics++/annotations/{train,val,test}_video.json`` (``video_path``
    relative to ``root``, ``frames_list``, ``gt_label``). 32 consecutive frames; the centre
    clip at test (OmniFD's protocol). A missing val annotation falls back to test, with a
    warning (FF++ in OmniFD ships no val). Frames are already face crops (no ``face_data``).
    """

    synthetic_kind = "ffpp_video"

    def __init__(
        self,
        root: str | None = None,
        synthetic: bool = False,
        cache_dir: str = "~/.cache/polyvision/synthetic/ffpp_video",
        synthetic_options: dict[str, Any] | None = None,
        train_annotation: str = "FaceForensics++/annotations/train_video.json",
        val_annotation: str = "FaceForensics++/annotations/val_video.json",
        test_annotation: str = "FaceForensics++/annotations/test_video.json",
        predict_annotation: str | None = None,
        *,
        clip_len: int = 32,
        frame_interval: int = 1,
        clip_size: int | Sequence[int] | None = 224,
        eval_protocol: Literal["first_window", "center_window", "full_video"] = "center_window",
        window_step: int | None = None,
        face_crop: bool = True,
        **kwargs: Any,
    ):
        super().__init__(clip_len=clip_len, frame_interval=frame_interval, clip_size=clip_size,
                         eval_protocol=eval_protocol, window_step=window_step, face_crop=face_crop, **kwargs)
        self._init_root(root, synthetic, cache_dir, synthetic_options)
        self.annotations = {"train": train_annotation, "val": val_annotation, "test": test_annotation,
                            "predict": predict_annotation or test_annotation}

    def records(self, split: str) -> list[VideoRecord]:
        self._check_prepared()
        if split == "val":
            path = self._annotation_or_test(self.annotations["val"], self.annotations["test"])
        else:
            path = _resolve(self.annotations[split], self.root)
        return _nonempty(load_video_annotations(path, self.root), path)


class LAVDFDataModule(_SyntheticMixin, ForgeryVideoDataModule):
    """LAV-DF temporal forgery localization from its native ``metadata.json`` (visual track).

    Layout: ``<root>/LAV-DF/metadata.json`` and ``<root>/LAV-DF/{train,dev,test}/*.mp4``.
    Defaults follow OmniFD: 512-frame windows at stride 1, 96x96 full frames, first-window
    evaluation; val reads the ``dev`` split. Fake periods (seconds) become frames with each
    video's fps.

    Args:
        metadata: the metadata file, relative to ``root``.
        dataset_dir: the folder ``file`` paths are relative to.
        train_split, val_split, test_split, predict_split: ``split`` values per stage.
        fake_modality: ``"any"`` or ``"visual"``, see :func:`load_lavdf_metadata`.
        annotations: instead of ``metadata.json``, OmniFD's converted annotation files per
            split (``{train: LAV-DF/annotations/train.json, test: LAV-DF/annotations/test.json}``,
            relative to ``root``): MMEngine ``data_list`` video records with ``gt_segments`` in
            frames and ``video_path`` relative to ``dataset_dir``, read as ForgeryNet's
            (:func:`load_video_annotations`). A split without a file (OmniFD ships no
            validation split) falls back to ``test``, with a warning.
        Other arguments: see :class:`ForgeryVideoDataModule` (``face_crop`` has no effect:
        LAV-DF uses full frames).
    """

    synthetic_kind = "lavdf"

    def __init__(
        self,
        root: str | None = None,
        synthetic: bool = False,
        cache_dir: str = "~/.cache/polyvision/synthetic/lavdf",
        synthetic_options: dict[str, Any] | None = None,
        metadata: str = "LAV-DF/metadata.json",
        dataset_dir: str = "LAV-DF",
        train_split: str = "train",
        val_split: str = "dev",
        test_split: str = "test",
        predict_split: str | None = None,
        fake_modality: Literal["any", "visual"] = "any",
        annotations: dict[str, str] | None = None,
        *,
        clip_len: int = 512,
        frame_interval: int = 1,
        clip_size: int | Sequence[int] | None = 96,
        eval_protocol: Literal["first_window", "center_window", "full_video"] = "first_window",
        window_step: int | None = None,
        face_crop: bool = False,
        **kwargs: Any,
    ):
        super().__init__(clip_len=clip_len, frame_interval=frame_interval, clip_size=clip_size,
                         eval_protocol=eval_protocol, window_step=window_step, face_crop=face_crop, **kwargs)
        if fake_modality not in ("any", "visual"):
            raise ConfigError(f"fake_modality must be 'any' or 'visual', got {fake_modality!r}")
        self._init_root(root, synthetic, cache_dir, synthetic_options)
        self.metadata, self.dataset_dir = metadata, dataset_dir
        self.splits = {"train": train_split, "val": val_split, "test": test_split,
                       "predict": predict_split or test_split}
        self.fake_modality = fake_modality
        self.annotations = dict(annotations or {})
        unknown = set(self.annotations) - {"train", "val", "test", "predict"}
        if unknown:
            raise ConfigError(f"annotations: unknown split(s) {sorted(unknown)}; use train, val, test, predict")
        if self.annotations and "test" not in self.annotations:
            raise ConfigError("annotations: give at least the test split's file")

    def records(self, split: str) -> list[VideoRecord]:
        self._check_prepared()
        if self.annotations:
            if split not in self.annotations:
                if split != "predict":
                    rank_zero_warn(f"LAV-DF: no {split} annotation given; using the test split's "
                                   f"({self.annotations['test']}) for {split}")
                split = "test"
            path = _resolve(self.annotations[split], self.root)
            return _nonempty(load_video_annotations(path, _resolve(self.dataset_dir, self.root)), path)
        path = _resolve(self.metadata, self.root)
        return load_lavdf_metadata(path, _resolve(self.dataset_dir, self.root), self.splits[split],
                                   self.fake_modality)


class WildDeepfakeDataModule(_SyntheticMixin, ForgeryVideoDataModule):
    """WildDeepfake video classification: frame folders under
    ``<root>/WildDeepFake/{real_train,real_test,fake_train,fake_test}``, read through
    ``WildDeepFake/annotations/{train,test}.json`` (``video_path`` relative to
    ``WildDeepFake/``) when the annotation exists, else by scanning the folders. 32 frames at
    interval 4, centre clip at test (OmniFD). WildDeepfake has no validation split: val falls
    back to test with a warning unless ``val_annotation`` exists."""

    synthetic_kind = "wilddeepfake"

    def __init__(
        self,
        root: str | None = None,
        synthetic: bool = False,
        cache_dir: str = "~/.cache/polyvision/synthetic/wilddeepfake",
        synthetic_options: dict[str, Any] | None = None,
        dataset_dir: str = "WildDeepFake",
        train_annotation: str | None = "WildDeepFake/annotations/train.json",
        val_annotation: str | None = "WildDeepFake/annotations/val.json",
        test_annotation: str | None = "WildDeepFake/annotations/test.json",
        *,
        clip_len: int = 32,
        frame_interval: int = 4,
        clip_size: int | Sequence[int] | None = 224,
        eval_protocol: Literal["first_window", "center_window", "full_video"] = "center_window",
        window_step: int | None = None,
        face_crop: bool = True,
        **kwargs: Any,
    ):
        super().__init__(clip_len=clip_len, frame_interval=frame_interval, clip_size=clip_size,
                         eval_protocol=eval_protocol, window_step=window_step, face_crop=face_crop, **kwargs)
        self._init_root(root, synthetic, cache_dir, synthetic_options)
        self.dataset_dir = dataset_dir
        self.annotations = {"train": train_annotation, "val": val_annotation, "test": test_annotation}

    def _split_records(self, split: str) -> list[VideoRecord]:
        base = _resolve(self.dataset_dir, self.root)
        annotation = self.annotations[split]
        if annotation is not None and _resolve(annotation, self.root).exists():
            path = _resolve(annotation, self.root)
            return _nonempty(load_video_annotations(path, base), path)
        return scan_wilddeepfake(base, split)

    def records(self, split: str) -> list[VideoRecord]:
        self._check_prepared()
        if split == "train":
            return self._split_records("train")
        if split == "val":
            val = self.annotations["val"]
            if val is not None and _resolve(val, self.root).exists():
                return self._split_records("val")
            rank_zero_warn(f"{self.root / self.dataset_dir}: WildDeepfake has no validation split; validating on "
                           "the test split. Model selection on test data inflates test scores.")
        return self._split_records("test")


# ----------------------------------------------------------------------------------------
# ForgeryNet images (face crops)
# ----------------------------------------------------------------------------------------
class ForgeryNetImageDataset(ForgeryImageDataset):
    """``ForgeryImageDataset`` that first cuts the image and its mask to the record's face
    box (``extra["face_box"]``; the whole image when there is none), as OmniFD's ``FaceCrop``.
    ``meta`` adds ``face_box`` (the integer box used, ``[x1, y1, x2, y2]`` in the original
    image) so that predictions can be pasted back for full-resolution metrics;
    ``original_size`` is the full image's."""

    def __init__(self, records: list[ImageRecord], image_size: int, train: bool = False, augment: bool = True,
                 face_crop: bool = True, full_resolution_masks: bool = False, photometric: str = "mild"):
        super().__init__(records, image_size, train=train, augment=augment, photometric=photometric,
                         full_resolution_masks=full_resolution_masks)
        self.face_crop = bool(face_crop)

    def crop(self, record: ImageRecord, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """Crop image and mask to the record's face box (``meta["face_box"]``)."""
        height, width = image.shape[:2]
        x1, y1, x2, y2 = _int_box(record.extra.get("face_box") if self.face_crop else None, height, width)
        return image[y1:y2, x1:x2], mask[y1:y2, x1:x2], {"face_box": [x1, y1, x2, y2]}



class ForgeryNetImageDataModule(FaceForensicsDataModule):
    """ForgeryNet images (classification + spatial localization) with face crops; batches
    as ``FaceForensicsDataModule`` (``meta`` adds ``face_box``).

    Layout: ``ForgeryNet/annotations/image_{train,val}.json``; images under
    ``ForgeryNet/{Training,Validation}/image``, masks under
    ``ForgeryNet/{Training,Validation}/spatial_localize`` (val and test read Validation).
    ``synthetic=True`` shares the synthetic ForgeryNet of :class:`ForgeryNetVideoDataModule`
    (same writer, same default ``cache_dir``), so unified image + video training reads one
    dataset.

    ``full_resolution_eval`` (default on): validation/test/predict batches carry each image's
    original mask (``full_mask``), so the spatial head scores its prediction pasted back into
    the face box of the full image (research/omnifd.md §3.2).
    """

    def __init__(
        self,
        root: str | None = None,
        synthetic: bool = False,
        cache_dir: str = "~/.cache/polyvision/synthetic/forgerynet",
        synthetic_options: dict[str, Any] | None = None,
        train_annotation: str = "ForgeryNet/annotations/image_train.json",
        val_annotation: str = "ForgeryNet/annotations/image_val.json",
        test_annotation: str = "ForgeryNet/annotations/image_val.json",
        predict_annotation: str | None = None,
        train_image_dir: str = "ForgeryNet/Training/image",
        train_mask_dir: str = "ForgeryNet/Training/spatial_localize",
        eval_image_dir: str = "ForgeryNet/Validation/image",
        eval_mask_dir: str = "ForgeryNet/Validation/spatial_localize",
        face_crop: bool = True,
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int = 2,
        augment: bool = True,
        skip_bad_samples: bool = False,
        source: str = "image",
        full_resolution_eval: bool = True,
        photometric: Literal["mild", "omnifd"] = "mild",
    ):
        super().__init__(root=root, synthetic=synthetic, cache_dir=cache_dir, train_annotation=train_annotation,
                         val_annotation=val_annotation, test_annotation=test_annotation,
                         predict_annotation=predict_annotation, image_size=image_size, batch_size=batch_size,
                         num_workers=num_workers, augment=augment, skip_bad_samples=skip_bad_samples,
                         source=source, photometric=photometric, full_resolution_eval=full_resolution_eval)
        self.synthetic_options = dict(synthetic_options or {})

    @property
    def synthetic_settings(self) -> dict[str, int]:
        """The synthetic ForgeryNet writer's defaults updated with ``synthetic_options``;
        give both ForgeryNet datamodules the same options so they share one dataset."""
        return {**SYNTHETIC_DEFAULTS["forgerynet"], **self.synthetic_options}

    def prepare_data(self) -> None:
        if not self.hparams.synthetic:
            return
        if synthetic_video_is_complete("forgerynet", self.root, **self.synthetic_settings):
            return
        rank_zero_info(f"writing synthetic ForgeryNet to {self.root}")
        SYNTHETIC_WRITERS["forgerynet"](self.root, **self.synthetic_settings)

    def _dataset(self, split: str) -> ForgeryImageDataset:
        if split not in self.datasets:
            hp = self.hparams
            if hp.synthetic and not synthetic_video_is_complete("forgerynet", self.root, **self.synthetic_settings):
                raise DataError(self.root, "synthetic dataset not prepared; call prepare_data() first")
            annotation = self._split_annotation(split)
            train = split == "train"
            records = load_forgerynet_image_annotations(
                annotation,
                _resolve(hp.train_image_dir if train else hp.eval_image_dir, self.root),
                _resolve(hp.train_mask_dir if train else hp.eval_mask_dir, self.root),
                require_face_data=hp.face_crop,
            )
            if not records:
                raise DataError(annotation, "annotation holds no images")
            self.datasets[split] = ForgeryNetImageDataset(records, hp.image_size, train=train, augment=hp.augment,
                                                          face_crop=hp.face_crop,
                                                          full_resolution_masks=hp.full_resolution_eval and not train,
                                                          photometric=hp.photometric)
        return self.datasets[split]
