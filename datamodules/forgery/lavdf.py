"""LAV-DF (Cai et al., DICTA 2022): temporal forgery localization on the visual track, from
LAV-DF's native ``metadata.json`` or OmniFD's converted annotations."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Sequence

from polyvision.datamodules.forgery.annotations import (
    VideoRecord,
    _is_number,
    _resolve,
    load_video_annotations,
    read_json,
)
from polyvision.datamodules.forgery.clips import (
    ForgeryVideoDataModule,
    _nonempty,
    _SyntheticMixin,
)
from polyvision.errors import ConfigError, DataError
from pytorch_lightning.utilities import rank_zero_warn

#: Seconds by which a LAV-DF fake period may run past the video's duration (rounding).
DURATION_TOLERANCE = 0.05


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
        cache_dir: str | None = None,
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
