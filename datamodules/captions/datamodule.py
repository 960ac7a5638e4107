"""``CaptionDataModule``: COCO captions (Karpathy split, or the cocotalk JSON + H5 files) or
their synthetic look-alike, as batches of the shared caption contract (``datasets``), for
CVLNM (Yang et al., "Learning to Collocate Visual-Linguistic Neural Modules for Image
Captioning", IJCV 2022) and the captioning models after it."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
from polyvision.datamodules.base import SplitLoaders
from polyvision.datamodules.cache import resolve_cache_dir
from polyvision.datamodules.captions.cocotalk import (
    COCOTALK_H5,
    COCOTALK_JSON,
    read_cocotalk,
)
from polyvision.datamodules.captions.datasets import CaptionCollate, CaptionDataset
from polyvision.datamodules.captions.features import RegionFeatures
from polyvision.datamodules.captions.karpathy import KARPATHY_FILE, read_karpathy
from polyvision.datamodules.captions.records import CaptionRecord
from polyvision.datamodules.captions.synthetic import (
    COCO_DIRNAME,
    FEATURE_DIRNAME,
    synthetic_coco_is_complete,
    write_synthetic_coco,
)
from polyvision.datamodules.captions.vocabulary import (
    MAX_LENGTH,
    Vocabulary,
    build_vocabulary,
)
from polyvision.errors import ConfigError, DataError
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

__all__ = ["DATASETS", "CaptionDataModule"]

DATASETS = ("karpathy", "cocotalk", "synthetic_coco")
FEATURE_KINDS = ("regions", "image")
SPLITS = ("train", "val", "test")


class CaptionDataModule(SplitLoaders, pl.LightningDataModule):
    """Captioned images, 5 captions per image per step.

    Batches (B images): ``captions`` int64 (B, K, 16) word ids, 0-padded; ``tags`` int64
    (B, K, 16) module classes (0 function word, 1 noun, 2 verb, 3 adjective; -1 on padding),
    read from the data when it has them, else tagged offline (``pos``); either ``regions``
    float32 (B, N, D) zero-padded region features with ``region_mask`` bool (B, N), or
    ``image`` uint8 (B, 3, H, W); ``meta`` (per image ``image_id``, ``file_name``,
    ``references``: all raw captions, ``path``), ``source`` and ``num_skipped``.

    Args:
        dataset: ``karpathy`` (``root/dataset_coco.json``), ``cocotalk``
            (``root/cocotalk.json`` + ``root/cocotalk_label.h5``, e.g. the release's
            preprocessed files; raw references come from ``root/dataset_coco.json`` when it
            is there) or ``synthetic_coco`` (written on first use, ``synthetic.py``; a copy
            written by ``polyvision synth coco DIR`` is read as ``karpathy`` from ``DIR/coco``).
        root: the data folder; for ``synthetic_coco`` where to write it (default: polyvision's
            cache, ``synthetic/coco``, or ``cache_dir``), the dataset going to ``root/coco``.
        images_dir: the folder holding ``train2014/`` and ``val2014/`` (default ``root``).
        features: ``regions`` (precomputed bottom-up features, the paper's input) or
            ``image`` (the image itself, for a backbone computing grid features).
        feature_dir: the region-feature folder (default ``root/cocobu_att``).
        feature_dim: width of the region features (bottom-up: 2048).
        max_regions: keep at most this many regions per image.
        input_size: (H, W) or a side, the size images are resized to on the grid path.
        captions_per_image: K, captions per image per step (the release's ``seq_per_img``).
        batch_size: images per batch.
        num_workers: DataLoader worker processes.
        skip_bad_samples: skip images with unusable annotations, missing or malformed feature
            files or unreadable images (with a warning, counted in ``batch["num_skipped"]``)
            instead of stopping with a ``DataError``.
        train_on_val: also train on the ``val`` images, as CVLNM's release does; off, since
            validation then selects checkpoints on training images.
        min_word_count: words seen more often than this in training captions get an id.
        annotation_file, cocotalk_json, cocotalk_h5: file names other than the defaults.
        cache_dir: synthetic data location when ``root`` is not given.
        synthetic_options: keyword arguments of ``write_synthetic_coco``
            (``num_images_per_split``, ``image_size``, ``seed``).
        source: name put in ``batch["source"]`` and the key of :meth:`input_geometry`.
    """

    def __init__(
        self,
        dataset: Literal["karpathy", "cocotalk", "synthetic_coco"] = "synthetic_coco",
        root: str | None = None,
        images_dir: str | None = None,
        features: Literal["regions", "image"] = "regions",
        feature_dir: str | None = None,
        feature_dim: int = 2048,
        max_regions: int = 100,
        input_size: int | Sequence[int] = 224,
        captions_per_image: int = 5,
        batch_size: int = 50,
        num_workers: int = 2,
        skip_bad_samples: bool = False,
        train_on_val: bool = False,
        min_word_count: int = 5,
        annotation_file: str = KARPATHY_FILE,
        cocotalk_json: str = COCOTALK_JSON,
        cocotalk_h5: str = COCOTALK_H5,
        cache_dir: str | None = None,
        synthetic_options: dict[str, Any] | None = None,
        source: str = "captions",
    ):
        super().__init__()
        self.save_hyperparameters()
        if dataset not in DATASETS:
            raise ConfigError(f"CaptionDataModule: dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
        if features not in FEATURE_KINDS:
            raise ConfigError(f"CaptionDataModule: features must be one of {', '.join(FEATURE_KINDS)}, got {features!r}")
        size = [int(input_size)] * 2 if isinstance(input_size, int) else [int(v) for v in input_size]
        if len(size) != 2 or min(size) < 16:
            raise ConfigError(f"CaptionDataModule: input_size must be a side or [H, W] of at least 16, got {input_size}")
        if min(captions_per_image, batch_size, feature_dim, max_regions) < 1 or num_workers < 0:
            raise ConfigError("CaptionDataModule: captions_per_image, batch_size, feature_dim and max_regions "
                              "must be >= 1, num_workers >= 0")
        self.image_size = size
        self.synthetic = dataset == "synthetic_coco"
        if self.synthetic:
            self.synthetic_root = (Path(root).expanduser() if root is not None
                                   else resolve_cache_dir(cache_dir, "synthetic", "coco"))
            self.root = self.synthetic_root / COCO_DIRNAME
        elif root is None:
            raise ConfigError(f"CaptionDataModule: set root to the {dataset} data directory (or use dataset: synthetic_coco)")
        else:
            self.root = Path(root).expanduser()
        self.images_dir = Path(images_dir).expanduser() if images_dir else self.root
        self.feature_dir = Path(feature_dir).expanduser() if feature_dir else self.root / FEATURE_DIRNAME
        self.vocabulary: Vocabulary | None = None
        self.records: dict[str, list[CaptionRecord]] = {}
        self.datasets: dict[str, CaptionDataset] = {}

    # -- synthetic data -----------------------------------------------------------------
    def prepare_data(self) -> None:
        """Write the synthetic dataset unless a complete one with the same settings exists."""
        options = self.hparams.synthetic_options or {}
        if not self.synthetic or synthetic_coco_is_complete(self.synthetic_root, **options):
            return
        rank_zero_info(f"writing synthetic COCO to {self.synthetic_root}")
        write_synthetic_coco(self.synthetic_root, progress=False, **options)

    # -- annotations ----------------------------------------------------------------------
    def _load(self) -> None:
        """Read the annotations and fix the vocabulary (once)."""
        if self.vocabulary is not None:
            return
        hp = self.hparams
        strict = not hp.skip_bad_samples
        if self.synthetic and not synthetic_coco_is_complete(self.synthetic_root, **(hp.synthetic_options or {})):
            raise DataError(self.root, "synthetic dataset not prepared; call prepare_data() first")
        karpathy_file = self.root / hp.annotation_file
        if hp.dataset == "cocotalk":
            vocabulary, records = read_cocotalk(self.root / hp.cocotalk_json, self.root / hp.cocotalk_h5, strict)
            if karpathy_file.is_file():  # raw references for the metrics, instead of decoded word ids
                raws = {record.item_id: record.raws for record in read_karpathy(karpathy_file, strict=False)}
                for record in records:
                    record.raws = raws.get(record.item_id) or record.raws
        else:
            records = read_karpathy(karpathy_file, strict=strict)
        self.records = {split: [record for record in records if record.split == split] for split in SPLITS}
        if hp.train_on_val:  # the val images train too, and still validate
            self.records["train"] = self.records["train"] + self.records["val"]
        if hp.dataset != "cocotalk":
            vocabulary = build_vocabulary((tokens for record in self.records["train"] for tokens in record.tokens),
                                          min_count=hp.min_word_count)
        self.vocabulary = vocabulary
        if hp.train_on_val:
            rank_zero_warn("train_on_val: the val images are also trained on, so validation scores are "
                           "optimistic and select checkpoints on training data")

    def references(self, split: str) -> dict[int, list[str]]:
        """Image id -> all raw reference captions of the split's usable images (e.g. the
        training references that fix CIDEr-D's document frequencies for SCST rewards)."""
        self._load()
        split = "test" if split == "predict" else split
        if split not in self.records:
            raise ValueError(f"unknown split {split!r}")
        return {record.item_id: list(record.raws) for record in self.records[split] if record.problem is None}

    # -- datasets -----------------------------------------------------------------------
    def _dataset(self, split: str) -> CaptionDataset:
        if split in self.datasets:
            return self.datasets[split]
        self._load()
        hp = self.hparams
        name = "test" if split == "predict" else split
        records = self.records[name]
        if not records:
            raise DataError(self.root, f"the {name} split holds no images")
        regions = hp.features == "regions"
        if regions and not self.feature_dir.is_dir():
            raise DataError(self.feature_dir, "region feature folder not found (set feature_dir, or features: image)")
        assert self.vocabulary is not None
        dataset = CaptionDataset(records, self.vocabulary, train=split == "train",
                                 captions_per_image=hp.captions_per_image,
                                 features=RegionFeatures(self.feature_dir, hp.feature_dim, hp.max_regions) if regions else None,
                                 images_dir=self.images_dir, image_size=self.image_size, max_length=MAX_LENGTH)
        self.datasets[split] = dataset
        return dataset

    def collate(self) -> CaptionCollate:
        """Regions vary in number per image: padded per batch (base collation only stacks)."""
        return CaptionCollate(self.hparams.source)

    def input_geometry(self) -> dict[str, dict[str, Any]]:
        """The model input and the vocabulary its word ids mean (kept in checkpoints)."""
        self._load()
        hp = self.hparams
        assert self.vocabulary is not None
        words = list(self.vocabulary.words)
        if hp.features == "regions":
            return {hp.source: {"input": "regions", "feature_dim": int(hp.feature_dim), "max_length": MAX_LENGTH,
                                "vocabulary": words}}
        return {hp.source: {"input": "image", "size": list(self.image_size), "max_length": MAX_LENGTH,
                            "vocabulary": words}}
