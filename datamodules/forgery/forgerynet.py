"""ForgeryNet (He et al., CVPR 2021): images with masks (``ForgeryNetImageDataModule``) and
videos with fake segments (``ForgeryNetVideoDataModule``), as OmniFD's released annotations give them."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from polyvision.datamodules.forgery.annotations import (
    ImageRecord,
    VideoRecord,
    _check_face_data,
    _data_list,
    _resolve,
    check_record,
    load_video_annotations,
)
from polyvision.datamodules.forgery.clips import (
    ForgeryVideoDataModule,
    _int_box,
    _nonempty,
    _SyntheticMixin,
)
from polyvision.datamodules.forgery.ffpp import FaceForensicsDataModule
from polyvision.datamodules.forgery.images import ForgeryImageDataset
from polyvision.datamodules.forgery.synthetic_videos import (
    SYNTHETIC_DEFAULTS,
    SYNTHETIC_WRITERS,
    synthetic_video_is_complete,
)
from polyvision.errors import DataError
from pytorch_lightning.utilities import rank_zero_info


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
        cache_dir: str | None = None,
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
    the face box of the full image, as OmniFD's evaluation does (official code:
    github.com/haotianll/OmniFD, ``mmpretrain/evaluation/metrics/forgery.py``).
    """

    synthetic_cache_name = "forgerynet"

    def __init__(
        self,
        root: str | None = None,
        synthetic: bool = False,
        cache_dir: str | None = None,
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
