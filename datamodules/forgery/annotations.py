"""Face-forgery annotation formats: image and video records, read and validated eagerly.

Two annotation formats are read, detected from the JSON's top-level keys:

* **OmniFD / MMEngine** (``{"metainfo": {...}, "data_list": [...]}``). Every record has
  ``img_path`` (str), ``gt_label`` (0 real / 1 fake) and optionally ``seg_map_path`` (a
  grayscale PNG mask, 0-255, used as a soft target ``mask / 255``). Paths are relative to the
  data root (OmniFD's ``data_prefix=''``) or absolute. Any other field is kept in
  ``ImageRecord.extra``.
* **DeepfakeBench** (``{dataset: {sub_label: {split: {[compression:] {video: {"label":
  sub_label, "frames": [...], "masks": [...]?}}}}}}``). One record per frame; the sub-label
  is mapped to 0/1 through ``label_dict`` (default: :data:`DEFAULT_LABEL_DICT`). When a video
  has no ``masks`` list, the mask of a frame is looked up at DeepfakeBench's derived path
  (``frames`` replaced by ``masks``) and used if that file exists.

Annotations are validated eagerly (in ``setup``, in the main process): a malformed file or
record, a label other than 0/1 or a missing image file raises :class:`DataError` naming the
annotation file and the record. Image decoding errors and mask/image size mismatches are
found lazily, in ``__getitem__``, and also raise :class:`DataError` (skippable through

Video records (``load_video_annotations``): OmniFD/MMEngine ``{"metainfo", "data_list"}`` with
``video_path`` (an mp4 file, ``.mp4`` appended when the path has no extension and is not a
folder; or a frame folder), ``gt_label`` 0/1, ``gt_segments`` ``[{"frame": [s, e], "label": 0|1}]``
(label-0, i.e. real, segments are dropped), ``duration`` (s), ``face_data`` (one ``[x1, y1, x2,
y2]`` per original frame), ``frames_list`` (frame folders): ForgeryNet, FF++ and WildDeepfake.
Dataset-specific readers live beside their datamodules (``lavdf``, ``wilddeepfake``, ``forgerynet``).


Frame units. A segment ``[s, e)`` in frames covers the continuous span from the start of frame
``s`` to the start of frame ``e`` (frame ``f`` spans ``[f, f+1)``), so seconds are frames /
fps both ways (LAV-DF's ``fake_periods`` become frames as ``period * fps``). A clip of
``clip_len`` frames taken every ``frame_interval`` frames from ``start`` maps original position
``x`` to clip position ``(x - start) / frame_interval`` (the inverse of
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyvision.datamodules.video.backends import IMAGE_SUFFIXES
from polyvision.errors import ConfigError, DataError

DEFAULT_LABEL_DICT: dict[str, int] = {
    "FF-real": 0,
    "FF-DF": 1,
    "FF-F2F": 1,
    "FF-FS": 1,
    "FF-NT": 1,
    "FF-FH": 1,  # FaceShifter, sometimes shipped with FF++
}

#: Synthetic-data settings used by ``FaceForensicsDataModule(synthetic=True)``.


_COMPRESSIONS = ("c23", "c40", "raw", "c0")


@dataclass
class ImageRecord:
    """One annotated image.

    Attributes:
        image_path: absolute (resolved against the data root) path of the image.
        label: 0 real, 1 fake.
        mask_path: path of the grayscale forgery mask, or ``None`` when there is none.
        extra: other fields of the record (OmniFD), or ``dataset``/``sub_label``/``split``/
            ``compression``/``video`` (DeepfakeBench); plus ``record``, where the record sits
            in the file (``data_list[3]``), for error messages.
    """

    image_path: str
    label: int
    mask_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------
# Annotation reading
# ----------------------------------------------------------------------------------------
def _resolve(path: str, root: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


def _check_label(value: Any) -> int | None:
    """The label as int if it is 0 or 1 (int, or an integral float), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value in (0, 1):
        return value
    if isinstance(value, float) and value in (0.0, 1.0):
        return int(value)
    return None


def read_json(path: Path) -> Any:
    """An annotation file's JSON, or one DataError saying why it cannot be read."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DataError(path, "annotation file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(path, f"cannot read annotation file ({error})") from None
    except json.JSONDecodeError as error:
        raise DataError(path, f"malformed JSON ({error})") from None


def check_record(path: Path, where: str, item: Any, path_field: str, required: tuple[str, ...] = ()) -> tuple[str, int]:
    """The checks every OmniFD ``data_list`` record gets: an object, with ``path_field`` (a
    non-empty string), ``gt_label`` (0 or 1) and the ``required`` fields. Returns the path
    field's value and the label; raises a ``DataError`` naming the file, record and field."""
    if not isinstance(item, dict):
        raise DataError(path, f"{where}: expected an object, got {type(item).__name__}")
    for key in (path_field, "gt_label", *required):
        if key not in item:
            raise DataError(path, f"{where}: missing field '{key}'")
    value = item[path_field]
    if not isinstance(value, str) or not value:
        raise DataError(path, f"{where}: field '{path_field}' must be a non-empty string, got {value!r}")
    label = _check_label(item["gt_label"])
    if label is None:
        raise DataError(path, f"{where}: field 'gt_label' must be 0 or 1, got {item['gt_label']!r}")
    return value, label


def load_annotations(
    path: str | os.PathLike,
    root: str | os.PathLike | None,
    split: str | None = None,
    label_dict: dict[str, int] | None = None,
    compression: str | None = "c23",
) -> list[ImageRecord]:
    """Read and validate an OmniFD (``data_list``) or DeepfakeBench (nested) annotation file.

    Args:
        path: the JSON file.
        root: data root that relative image/mask paths are joined onto (``None``: the
            current directory).
        split: DeepfakeBench format only: keep this split (``train``/``val``/``test``);
            ``None`` keeps all. OmniFD files hold one split each, so it is ignored there.
        label_dict: DeepfakeBench format only: sub-label -> 0/1. Defaults to
            :data:`DEFAULT_LABEL_DICT`.
        compression: DeepfakeBench format only: the compression level to read where the file
            has one (FF++ family); ``None`` reads every level.

    Returns:
        The records, in file order, with absolute image/mask paths.

    Raises:
        DataError: unreadable or malformed JSON, a malformed record, a label not 0/1, an
            unknown sub-label, or an image file that does not exist. The message names the
            annotation file and the record (``data_list[3]: missing field 'gt_label'``).
    """
    path = Path(path).expanduser()
    root_path = Path(root).expanduser() if root is not None else Path.cwd()
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(path, f"expected a JSON object at the top level, got {type(data).__name__}")

    if "data_list" in data or "metainfo" in data:
        records = _parse_omnifd(data, path, root_path)
    elif data and all(isinstance(v, dict) for v in data.values()):
        records = _parse_deepfakebench(data, path, root_path, split, label_dict, compression)
    else:
        raise DataError(
            path,
            "unrecognised annotation format: expected {'metainfo': ..., 'data_list': [...]} (OmniFD) or "
            "{dataset: {sub_label: {split: {video: {'label', 'frames'}}}}} (DeepfakeBench)",
        )
    _check_files(records, path)
    return records


def _parse_omnifd(data: dict[str, Any], path: Path, root: Path) -> list[ImageRecord]:
    items = _checked_data_list(data, path)
    records = []
    for index, item in enumerate(items):
        where = f"data_list[{index}]"
        img, label = check_record(path, where, item, "img_path")
        seg = item.get("seg_map_path")
        if seg is not None and (not isinstance(seg, str) or not seg):
            raise DataError(path, f"{where}: field 'seg_map_path' must be a non-empty string, got {seg!r}")
        extra = {k: v for k, v in item.items() if k not in ("img_path", "gt_label", "seg_map_path")}
        extra["record"] = where
        records.append(ImageRecord(str(_resolve(img, root)), label,
                                   str(_resolve(seg, root)) if seg else None, extra))
    return records


def _is_video_entry(value: Any) -> bool:
    return isinstance(value, dict) and "frames" in value


def _parse_deepfakebench(
    data: dict[str, Any],
    path: Path,
    root: Path,
    split: str | None,
    label_dict: dict[str, int] | None,
    compression: str | None,
) -> list[ImageRecord]:
    labels = DEFAULT_LABEL_DICT if label_dict is None else label_dict
    records: list[ImageRecord] = []
    seen_splits: set[str] = set()
    for dataset, sub_labels in data.items():
        for sub_label, splits in sub_labels.items():
            if not isinstance(splits, dict):
                raise DataError(path, f"{dataset}/{sub_label}: expected an object of splits")
            for split_name, content in splits.items():
                seen_splits.add(split_name)
                if split is not None and split_name != split:
                    continue
                where = f"{dataset}/{sub_label}/{split_name}"
                if not isinstance(content, dict):
                    raise DataError(path, f"{where}: expected an object of videos")
                # [compression:] level: present when the values are not video entries
                if content and not all(_is_video_entry(v) for v in content.values()):
                    levels = {k: v for k, v in content.items() if isinstance(v, dict)}
                    if len(levels) != len(content):
                        raise DataError(path, f"{where}: expected video entries with 'frames', "
                                        f"or compression levels {list(_COMPRESSIONS)}")
                    if compression is not None:
                        if compression not in levels:
                            raise DataError(path, f"{where}: compression '{compression}' not found "
                                            f"(have {sorted(levels)})")
                        groups = [(compression, levels[compression])]
                    else:
                        groups = list(levels.items())
                else:
                    groups = [(None, content)]
                for level, videos in groups:
                    vwhere = where if level is None else f"{where}/{level}"
                    for video, entry in videos.items():
                        records.extend(_parse_dfb_video(path, root, f"{vwhere}/{video}", entry, labels,
                                                        {"dataset": dataset, "sub_label": sub_label,
                                                         "split": split_name, "compression": level,
                                                         "video": video}))
    if split is not None and split not in seen_splits:
        raise DataError(path, f"split '{split}' not found (have {sorted(seen_splits)})")
    return records


def _parse_dfb_video(path: Path, root: Path, where: str, entry: Any, labels: dict[str, int],
                     extra: dict[str, Any]) -> list[ImageRecord]:
    if not _is_video_entry(entry):
        raise DataError(path, f"{where}: missing field 'frames'")
    name = entry.get("label", extra["sub_label"])
    if not isinstance(name, str) and _check_label(name) is not None:
        label = int(name)
    elif isinstance(name, str) and name in labels:
        label = labels[name]
    else:
        raise DataError(path, f"{where}: label {name!r} is not in label_dict ({sorted(labels)}); "
                        "pass label_dict to map it to 0/1")
    if label not in (0, 1):
        raise DataError(path, f"{where}: label_dict maps {name!r} to {label!r}, expected 0 or 1")
    frames, masks = entry["frames"], entry.get("masks")
    if not isinstance(frames, list) or not all(isinstance(f, str) and f for f in frames):
        raise DataError(path, f"{where}: field 'frames' must be a list of paths")
    if masks is not None and (not isinstance(masks, list) or len(masks) != len(frames)
                              or not all(isinstance(m, str) and m for m in masks)):
        raise DataError(path, f"{where}: field 'masks' must be a list of paths as long as 'frames'")
    records = []
    for i, frame in enumerate(frames):
        image = _resolve(frame, root)
        if masks is not None:
            mask: str | None = str(_resolve(masks[i], root))
        else:  # DeepfakeBench derives the mask path from the frame path
            derived = Path(str(image).replace("frames", "masks"))
            mask = str(derived) if derived != image and derived.is_file() else None
        records.append(ImageRecord(str(image), label, mask, dict(extra, record=f"{where}/frames[{i}]")))
    return records


def _check_files(records: list[ImageRecord], path: Path) -> None:
    """Every image must exist; a referenced mask that does not exist is treated as unknown
    (as OmniFD does: zeros in training) with one warning per annotation file."""
    missing_masks = 0
    for record in records:
        if not os.path.isfile(record.image_path):
            raise DataError(path, f"{record.extra.get('record', 'record')}: image file not found: {record.image_path}")
        if record.mask_path is not None and not os.path.isfile(record.mask_path):
            missing_masks += 1
            example = record.mask_path
            record.mask_path = None
    if missing_masks:
        warnings.warn(f"{path}: {missing_masks} mask file(s) do not exist (e.g. {example}); "
                      "those images are treated as having no ground-truth mask", stacklevel=3)




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


def _data_list(path: Path) -> list[Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(path, f"expected a JSON object with 'metainfo' and 'data_list', got {type(data).__name__}")
    return _checked_data_list(data, path)


def _checked_data_list(data: dict[str, Any], path: Path) -> list[Any]:
    """The ``data_list`` of an OmniFD/MMEngine annotation, or one DataError saying what is missing."""
    for key in ("metainfo", "data_list"):
        if key not in data:
            raise DataError(path, f"missing key '{key}' (an OmniFD annotation needs 'metainfo' and 'data_list')")
    items = data["data_list"]
    if not isinstance(items, list):
        raise DataError(path, f"'data_list' must be a list, got {type(items).__name__}")
    return items


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
