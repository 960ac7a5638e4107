"""WildDeepfake (Zi et al., ACM MM 2020): video classification from OmniFD annotations, or from the
frame folders ``{real,fake}_{train,test}/**/`` when there is no annotation file."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Sequence

from polyvision.datamodules.forgery.annotations import (
    VideoRecord,
    _resolve,
    load_video_annotations,
)
from polyvision.datamodules.forgery.clips import (
    ForgeryVideoDataModule,
    _nonempty,
    _SyntheticMixin,
)
from polyvision.datamodules.video.backends import IMAGE_SUFFIXES
from polyvision.errors import DataError
from pytorch_lightning.utilities import rank_zero_warn


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
        cache_dir: str | None = None,
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
