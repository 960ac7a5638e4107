"""FaceForensics++ (Rössler et al., ICCV 2019): image classification + spatial localization
(``FaceForensicsDataModule``) and video classification (``FaceForensicsVideoDataModule``)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Sequence

import pytorch_lightning as pl
from polyvision.datamodules.base import SplitLoaders, class_balanced_indices
from polyvision.datamodules.forgery.annotations import (
    VideoRecord,
    _resolve,
    load_annotations,
    load_video_annotations,
)
from polyvision.datamodules.forgery.clips import (
    ForgeryVideoDataModule,
    _nonempty,
    _SyntheticMixin,
)
from polyvision.datamodules.forgery.images import ForgeryImageDataset
from polyvision.datamodules.forgery.synthetic_images import (
    synthetic_ffpp_is_complete,
    write_synthetic_ffpp,
)
from polyvision.datamodules.geometry import image_geometry
from polyvision.datamodules.cache import resolve_cache_dir
from polyvision.errors import ConfigError, DataError
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import Dataset, Subset

SYNTHETIC_FRAMES_PER_VIDEO = 5
SYNTHETIC_IMAGE_SIZE = 64
SYNTHETIC_SEED = 0


class FaceForensicsDataModule(SplitLoaders, pl.LightningDataModule):
    """FaceForensics++ face-forgery images (classification + soft forgery masks).

    Reads FF++ in the DeepfakeBench layout with OmniFD ``data_list`` annotations (or
    DeepfakeBench's nested JSON), or writes and reads a small synthetic look-alike.

    Batches are dicts: ``image`` uint8 (B, 3, S, S) RGB, ``label`` int64 (B,), ``mask``
    float32 (B, 1, S, S) in [0, 1], ``has_mask`` and ``has_mask_file`` bool (B,), ``meta`` (list of dicts),
    ``source`` (str) and ``num_skipped`` (int64 scalar).

    Args:
        root: data root holding ``FaceForensics++/``; annotation and image paths are relative
            to it. Required unless ``synthetic`` is set.
        synthetic: use a synthetic FF++ (written by ``prepare_data`` under ``root``, or under
            ``cache_dir`` when ``root`` is not given) instead of the real data.
        cache_dir: where the synthetic dataset is cached (``~`` is expanded; None:
            ``<polyvision cache>/synthetic/ffpp``, see ``polyvision.datamodules.cache``).
        train_annotation: training annotation JSON, relative to ``root`` or absolute.
        val_annotation: validation annotation JSON. If the file does not exist, the test
            annotation is used for validation, with a warning (FF++ in OmniFD ships no val).
        test_annotation: test annotation JSON.
        predict_annotation: annotation JSON for ``predict``; defaults to the test annotation.
        image_size: side of the square images fed to the model.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes (0: load in the main process).
        augment: random resize/crop/flip and mild photometric augmentation in training.
        skip_bad_samples: drop undecodable images and bad masks with a warning (counted in
            ``batch["num_skipped"]``) instead of stopping with a ``DataError``.
        label_dict: DeepfakeBench-format annotations only: sub-label -> 0/1 mapping (default:
            FF-real -> 0, FF-DF/FF-F2F/FF-FS/FF-NT/FF-FH -> 1).
        synthetic_samples: approximate number of synthetic frames (5 per video, at least 6
            videos); written at 64x64 px.
        source: name put in ``batch["source"]`` (used to route mixed image/video batches).
        photometric: training noise after the geometric augmentation: ``"mild"`` (default) or
            ``"omnifd"``, the released code's heavy pipeline (``datamodules/augment.py``).
        full_resolution_eval: validation/test/predict batches carry each image's original mask
            (``full_mask``), so spatial metrics are computed at the original resolution, as
            OmniFD's evaluation does (official code: github.com/haotianll/OmniFD,
            ``mmpretrain/evaluation/metrics/forgery.py``).
        class_balance: oversample rare classes in training as OmniFD's FF++ configs do
            (``FixedClassBalancedDataset``, threshold 0.5: each image of a class with frequency
            f < 0.5 appears ``ceil(max_f / f)`` times per epoch).
    """

    synthetic_cache_name = "ffpp"  # synthetic default root: <polyvision cache>/synthetic/<this>

    def __init__(
        self,
        root: str | None = None,
        synthetic: bool = False,
        cache_dir: str | None = None,
        train_annotation: str = "FaceForensics++/annotations/train.json",
        val_annotation: str = "FaceForensics++/annotations/val.json",
        test_annotation: str = "FaceForensics++/annotations/test.json",
        predict_annotation: str | None = None,
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int = 2,
        augment: bool = True,
        skip_bad_samples: bool = False,
        label_dict: dict[str, int] | None = None,
        synthetic_samples: int = 400,
        source: str = "image",
        class_balance: bool = False,
        photometric: Literal["mild", "omnifd"] = "mild",
        full_resolution_eval: bool = True,
    ):
        super().__init__()
        self.save_hyperparameters()
        if root is None and not synthetic:
            raise ConfigError("FaceForensicsDataModule: set root to the data directory, or synthetic=True")
        if image_size < 1 or batch_size < 1 or num_workers < 0:
            raise ConfigError("FaceForensicsDataModule: image_size and batch_size must be >= 1, num_workers >= 0")
        self.root = (Path(root).expanduser() if root is not None
                     else resolve_cache_dir(cache_dir, "synthetic", self.synthetic_cache_name))
        self.datasets: dict[str, ForgeryImageDataset] = {}

    # -- synthetic data -----------------------------------------------------------------
    @property
    def synthetic_settings(self) -> dict[str, int]:
        """Arguments of ``write_synthetic_ffpp`` used when ``synthetic`` is set."""
        videos = max(6, math.ceil(self.hparams.synthetic_samples / SYNTHETIC_FRAMES_PER_VIDEO))
        return {"num_videos": videos, "frames_per_video": SYNTHETIC_FRAMES_PER_VIDEO,
                "image_size": SYNTHETIC_IMAGE_SIZE, "seed": SYNTHETIC_SEED}

    def prepare_data(self) -> None:
        """Write the synthetic dataset unless a complete one with the same settings exists
        (runs on one process per node; the writer renames a finished tree into place)."""
        if not self.hparams.synthetic:
            return
        settings = self.synthetic_settings
        if synthetic_ffpp_is_complete(self.root, **settings):
            return
        rank_zero_info(f"writing synthetic FaceForensics++ ({settings['num_videos']} videos x "
                       f"{settings['frames_per_video']} frames) to {self.root}")
        write_synthetic_ffpp(self.root, progress=True, **settings)

    # -- annotations --------------------------------------------------------------------
    def _annotation_path(self, name: str) -> Path:
        return _resolve(name, self.root)

    def _split_annotation(self, split: str) -> Path:
        hp = self.hparams
        if split == "train":
            return self._annotation_path(hp.train_annotation)
        if split == "val":
            val = self._annotation_path(hp.val_annotation)
            if not val.exists():
                test = self._annotation_path(hp.test_annotation)
                rank_zero_warn(f"{val}: validation annotation not found; validating on the test split "
                               f"({test}). Model selection on test data inflates test scores.")
                return test
            return val
        if split == "test":
            return self._annotation_path(hp.test_annotation)
        if split == "predict":
            return self._annotation_path(hp.predict_annotation or hp.test_annotation)
        raise ValueError(split)

    def _dataset(self, split: str) -> ForgeryImageDataset:
        if split not in self.datasets:
            if self.hparams.synthetic and not synthetic_ffpp_is_complete(self.root, **self.synthetic_settings):
                raise DataError(self.root, "synthetic dataset not prepared; call prepare_data() first")
            annotation = self._split_annotation(split)
            records = load_annotations(annotation, self.root, label_dict=self.hparams.label_dict)
            if not records:
                raise DataError(annotation, "annotation holds no images")
            self.datasets[split] = ForgeryImageDataset(
                records, self.hparams.image_size, train=split == "train", augment=self.hparams.augment,
                photometric=self.hparams.get("photometric", "mild"),
                full_resolution_masks=self.hparams.get("full_resolution_eval", True) and split != "train")
        return self.datasets[split]

    def input_geometry(self) -> dict[str, dict[str, Any]]:
        """Images are resized to ``image_size`` (see ``polyvision.datamodules.geometry``)."""
        return {self.hparams.source: image_geometry(self.hparams.image_size)}

    # -- loaders ------------------------------------------------------------------------
    def loader_dataset(self, split: str) -> Dataset:
        dataset = self._dataset(split)
        if split == "train" and self.hparams.get("class_balance"):
            dataset = Subset(dataset, class_balanced_indices(dataset.labels))
        return dataset


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
        cache_dir: str | None = None,
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
