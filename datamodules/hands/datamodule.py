"""``HandDataModule``: InterHand2.6M, FreiHAND or their synthetic look-alikes as batches of
the hand sample dict (``annotations`` module), for ACR (Yu et al., "ACR: Attention
Collaboration-based Regressor for Arbitrary Two-Hand Reconstruction", CVPR 2023)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
from polyvision.datamodules.base import SplitLoaders
from polyvision.datamodules.cache import resolve_cache_dir
from polyvision.datamodules.hands.annotations import HandDataset
from polyvision.datamodules.hands.freihand import FREIHAND_VERSIONS, FreiHANDDataset
from polyvision.datamodules.hands.interhand import SUBSETS, InterHandDataset
from polyvision.datamodules.hands.synthetic import (
    FREIHAND_DIRNAME,
    IH_DIRNAME,
    MANO_DIRNAME,
    synthetic_freihand_is_complete,
    synthetic_interhand_is_complete,
    write_synthetic_freihand,
    write_synthetic_interhand,
)
from polyvision.errors import ConfigError, DataError
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

__all__ = ["DATASETS", "HandDataModule"]

DATASETS = ("interhand", "freihand", "synthetic_interhand", "synthetic_freihand")
DEFAULT_SPLITS = {
    "interhand": {"train": "train", "val": "val", "test": "test"},
    "freihand": {"train": "training", "val": "evaluation", "test": "evaluation"},
}


class HandDataModule(SplitLoaders, pl.LightningDataModule):
    """Hand images with MANO and joint annotations, one or two hands per image.

    Batches are dicts of the sample fields stacked (``image`` float32 (B, 3, S, S) in
    [-1, 1], ``hand_valid`` (B, 2), ``mano_pose`` (B, 2, 48), ``mano_shape`` (B, 2, 10),
    ``mano_trans`` (B, 2, 3), ``mano_valid`` (B, 2), ``joints_3d`` (B, 2, 21, 3),
    ``joints_3d_valid`` (B, 2, 21), ``joints_2d`` (B, 2, 21, 2), ``joints_2d_valid``
    (B, 2, 21), ``center`` (B, 2, 2), ``camera`` (B, 3, 3), ``interacting`` (B,); slot 0
    is the right hand), plus ``meta`` (list of dicts), ``source`` and ``num_skipped``; with
    ``part_segmentation`` also ``part_segmentation`` int64 (B, S/2, S/2) (ACR's 33 classes:
    0 background, 1-16 right-hand parts, 17-32 left-hand parts) and
    ``part_segmentation_valid`` (B,).

    Args:
        dataset: ``interhand``, ``freihand``, ``synthetic_interhand`` or ``synthetic_freihand``.
        root: the dataset folder (InterHand2.6M release or its parent; FreiHAND folder). For
            the synthetic datasets: where to write them (default: polyvision's cache,
            ``synthetic/<dataset>``, or ``cache_dir``); they go to ``root/InterHand2.6M`` or
            ``root/FreiHAND`` with the generated MANO model in ``root/mano``.
        mano_dir: folder with ``MANO_RIGHT.pkl`` and ``MANO_LEFT.pkl`` (required for the
            real datasets; the synthetic ones default to their generated model).
        input_size: side of the square model input (ACR: 512).
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        subset: InterHand2.6M only: ``all``, ``interacting`` (IntagHand's subset, ACR's
            table) or ``single``.
        skip_bad_samples: drop unreadable images and malformed annotations with a warning
            (counted in ``batch["num_skipped"]``) instead of stopping with a ``DataError``.
        augment: random crop scale/shift/rotation and colour jitter in training (``augment``).
        train_split, val_split, test_split, predict_split: split names (InterHand2.6M:
            train / val / test; FreiHAND: training / evaluation / evaluation, with a warning
            that validation then runs on the test images; predict: the test split).
        crop: ``hands`` (a box around the hands) or ``full`` (the whole image, padded);
            default: ``hands`` for InterHand2.6M, ``full`` for FreiHAND.
        enlarge: box size over the hands' extent with ``crop="hands"``.
        versions: FreiHAND training image versions.
        frame_rate_folder: InterHand2.6M: the release sub-folder of ``root`` to read.
        cache_dir: synthetic data location when ``root`` is not given.
        synthetic_options: keyword arguments of the synthetic writer
            (``num_images_per_split``, ``image_size``, ``seed``).
        source: name put in ``batch["source"]`` and the key of :meth:`input_geometry`.
        part_segmentation: render ACR's part-segmentation target from the ground-truth MANO
            meshes for every sample (``annotations.part_segmentation_target``); off by
            default, so the batches carry no label maps.
    """

    def __init__(
        self,
        dataset: Literal["interhand", "freihand", "synthetic_interhand", "synthetic_freihand"] = "synthetic_interhand",
        root: str | None = None,
        mano_dir: str | None = None,
        input_size: int = 512,
        batch_size: int = 32,
        num_workers: int = 2,
        subset: Literal["all", "interacting", "single"] = "all",
        skip_bad_samples: bool = False,
        augment: bool = True,
        train_split: str | None = None,
        val_split: str | None = None,
        test_split: str | None = None,
        predict_split: str | None = None,
        crop: Literal["hands", "full"] | None = None,
        enlarge: float = 1.75,
        versions: Sequence[str] = FREIHAND_VERSIONS,
        frame_rate_folder: str | None = None,
        cache_dir: str | None = None,
        synthetic_options: dict[str, Any] | None = None,
        source: str = "hands",
        part_segmentation: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        if dataset not in DATASETS:
            raise ConfigError(f"HandDataModule: dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
        if subset not in SUBSETS:
            raise ConfigError(f"HandDataModule: subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
        if input_size < 16 or batch_size < 1 or num_workers < 0:
            raise ConfigError("HandDataModule: input_size must be >= 16, batch_size >= 1, num_workers >= 0")
        self.synthetic = dataset.startswith("synthetic_")
        self.kind = dataset.removeprefix("synthetic_")
        if self.synthetic:
            self.synthetic_root = (Path(root).expanduser() if root is not None
                                   else resolve_cache_dir(cache_dir, "synthetic", self.kind))
            self.root = self.synthetic_root / (IH_DIRNAME if self.kind == "interhand" else FREIHAND_DIRNAME)
            self.mano_dir = Path(mano_dir).expanduser() if mano_dir else self.synthetic_root / MANO_DIRNAME
        else:
            if root is None:
                raise ConfigError(f"HandDataModule: set root to the {self.kind} data directory "
                                  f"(or use dataset: synthetic_{self.kind})")
            from polyvision.models.layers.mano import require_mano_dir

            self.root = Path(root).expanduser()
            self.mano_dir = require_mano_dir(mano_dir)
        splits = DEFAULT_SPLITS[self.kind]
        self.splits = {"train": train_split or splits["train"], "val": val_split or splits["val"],
                       "test": test_split or splits["test"]}
        self.splits["predict"] = predict_split or self.splits["test"]
        self.datasets: dict[str, HandDataset] = {}

    # -- synthetic data -----------------------------------------------------------------
    @property
    def synthetic_settings(self) -> dict[str, Any]:
        """Keyword arguments of the synthetic writer (``synthetic_options`` plus ``mano_dir``
        when one was given)."""
        options = dict(self.hparams.synthetic_options or {})
        if self.hparams.mano_dir:
            options["mano_dir"] = self.hparams.mano_dir
        return options

    def _synthetic_complete(self) -> bool:
        check = synthetic_interhand_is_complete if self.kind == "interhand" else synthetic_freihand_is_complete
        return check(self.synthetic_root, **self.synthetic_settings)

    def prepare_data(self) -> None:
        """Write the synthetic dataset unless a complete one with the same settings exists."""
        if not self.synthetic or self._synthetic_complete():
            return
        rank_zero_info(f"writing synthetic {self.kind} to {self.synthetic_root}")
        writer = write_synthetic_interhand if self.kind == "interhand" else write_synthetic_freihand
        writer(self.synthetic_root, progress=False, **self.synthetic_settings)

    # -- datasets -----------------------------------------------------------------------
    def _dataset(self, split: str) -> HandDataset:
        if split in self.datasets:
            return self.datasets[split]
        hp = self.hparams
        if self.synthetic and not self._synthetic_complete():
            raise DataError(self.synthetic_root, "synthetic dataset not prepared; call prepare_data() first")
        name = self.splits[split]
        if split == "val" and name == self.splits["test"]:
            rank_zero_warn(f"{self.kind}: validating on the {name} split, which is also the test split; "
                           "model selection on test data inflates test scores")
        common = {"input_size": hp.input_size, "augment": hp.augment and split == "train", "mano_dir": self.mano_dir,
                  "enlarge": hp.enlarge, "part_segmentation": hp.part_segmentation}
        if self.kind == "interhand":
            dataset: HandDataset = InterHandDataset(self.root, name, subset=hp.subset, crop=hp.crop or "hands",
                                                    frame_rate_folder=hp.frame_rate_folder, **common)
        else:
            dataset = FreiHANDDataset(self.root, name, versions=hp.versions, crop=hp.crop or "full", **common)
        if len(dataset) == 0:
            raise DataError(self.root, f"the {name} split holds no samples"
                            + (f" of subset {hp.subset}" if self.kind == "interhand" else ""))
        self.datasets[split] = dataset
        return dataset

    def input_geometry(self) -> dict[str, dict[str, Any]]:
        """The model input: a square ``input_size`` crop padded with white, values in [-1, 1]."""
        size = int(self.hparams.input_size)
        return {self.hparams.source: {"input": "image", "size": [size, size], "pad": "white",
                                      "normalize": "minus_one_to_one"}}

