"""``STATEDataModule``: object cubes of a video anomaly dataset, for STATE's training and its
perturbed frame-level evaluation."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from polyvision.datamodules.anomaly.pipeline import (
    CubeCache,
    PipelineSettings,
    _require_weights,
    build_cube_cache,
    cache_key,
)
from polyvision.datamodules.anomaly.readers import (
    AnomalyVideo,
    check_dataset,
    read_videos,
)
from polyvision.datamodules.base import SkippingDataset, SourceCollate
from polyvision.datamodules.cache import resolve_cache_dir
from polyvision.datamodules.seeding import training_sampler
from polyvision.errors import ConfigError, DataError
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset, Subset


class ObjectCubeDataset(Dataset):
    """Samples of a cube cache: one per cube, then (``include_empty_frames``) one per frame
    with no object (``has_object`` False, zero cubes), so that every frame is scored."""

    def __init__(self, cache: CubeCache, include_empty_frames: bool = False):
        self.cache = cache
        self.empty = cache.empty_frames if include_empty_frames else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return self.cache.num_cubes + len(self.empty)

    def __getitem__(self, index: int) -> dict[str, Any]:
        cache = self.cache
        if index < cache.num_cubes:
            frame = int(cache.frame_of_cube[index])
            video = torch.from_numpy(np.array(cache.raw[index]))
            flow = torch.from_numpy(np.array(cache.flow[index], dtype=np.float32))
            box = torch.from_numpy(cache.boxes[index].copy())
            present = True
        else:
            frame = int(self.empty[index - cache.num_cubes])
            video = torch.zeros((3, *cache.cube_shape), dtype=torch.uint8)
            flow = torch.zeros((2, *cache.cube_shape), dtype=torch.float32)
            box = torch.full((4,), -1, dtype=torch.int64)
            present = False
        video_index = int(cache.video_of_frame[frame])
        frame_index = int(cache.frame_index[frame])
        return {"video": video, "flow": flow, "box": box, "has_object": present,
                "label": max(0, int(cache.labels[frame])), "video_index": video_index, "frame_index": frame_index,
                "meta": {"video": cache.videos[video_index]["name"], "frame": frame_index}}


# --------------------------------------------------------------------------- datamodule


class STATEDataModule(pl.LightningDataModule):
    """Object cubes of a video anomaly dataset for STATE, built once and cached.

    Batches: ``video`` uint8 (B, 3, 7, 32, 32), ``flow`` float32 (B, 2, 7, 32, 32), ``box``
    (B, 4), ``has_object`` bool, ``label`` (frame label; 0 in training), ``video_index``,
    ``frame_index``, ``meta`` (video name, frame), ``source`` and ``num_skipped``.

    Args:
        dataset: ``ped2``, ``avenue`` or ``shanghaitech`` (layout and default thresholds).
        root: the dataset folder (or its parent). With ``synthetic``, where the synthetic
            dataset is written (default ``<polyvision cache>/synthetic/<dataset>``, see
            ``polyvision.datamodules.cache``).
        synthetic: write (once) and use a synthetic dataset in the same layout.
        synthetic_options: arguments of the synthetic writer (``num_train``, ``num_test``,
            ``num_frames``, ``seed``, ...).
        cache_dir: where the cube caches go (None: ``<polyvision cache>/state``).
        pipeline: overrides of the dataset's ``PipelineSettings`` (detector and RAFT weights,
            thresholds, ``flow_size``, ...).
        batch_size: training batch size (paper: 128); ``eval_batch_size`` for test and
            statistics (default: the same).
        num_workers: DataLoader workers.
        val_on_test: validate on the test split (STATE has no validation split; this only
            monitors the AUROC during training and reads test labels).
        device: where the detector and RAFT run while building caches (``auto``).
        progress: show a progress bar while building caches.
    """

    def __init__(
        self,
        dataset: str = "ped2",
        root: str | None = None,
        synthetic: bool = False,
        synthetic_options: dict[str, Any] | None = None,
        cache_dir: str | None = None,
        pipeline: dict[str, Any] | None = None,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        val_on_test: bool = False,
        device: str = "auto",
        progress: bool = True,
    ):
        super().__init__()
        self.save_hyperparameters()
        check_dataset(dataset)
        if root is None and not synthetic:
            raise ConfigError("data.root: set it to the dataset folder, or set data.synthetic: true")
        if batch_size < 1 or num_workers < 0 or (eval_batch_size is not None and eval_batch_size < 1):
            raise ConfigError("data: batch_size and eval_batch_size must be >= 1, num_workers >= 0")
        self.root = (Path(root).expanduser() if root is not None
                     else resolve_cache_dir(None, "synthetic", dataset))
        self.cache_root = resolve_cache_dir(cache_dir, "state")
        self.settings = PipelineSettings.for_dataset(dataset, pipeline)
        _require_weights(self.settings.detector_weights, "detector")
        _require_weights(self.settings.flow_weights, "RAFT")
        self.caches: dict[str, CubeCache] = {}

    def describe_pipeline(self) -> str:
        """How boxes and flow are made, said once per run (the swaps are deviations from STATE)."""
        s = self.settings
        boxes = (f"{s.detector} ({s.detector_weights}) + frame-difference foreground boxes" if s.detector_weights
                 else "frame-difference foreground boxes only: no detector weights given")
        flow = (f"{s.flow_model} ({s.flow_weights})" if s.flow_weights
                else "OpenCV Farneback: no RAFT weights given (STATE used FlowNet2)")
        return f"STATE {self.hparams.dataset} objects: {boxes}; flow: {flow}"

    def input_geometry(self) -> dict[str, dict[str, Any]]:
        """Object cubes of videos: the model stores the pipeline settings to make cubes the same way
        in ``score_video``."""
        return {"video": {"input": "video", "object_pipeline": self.settings.to_dict()}}

    # -- preparation
    def prepare_synthetic(self) -> None:
        if not self.hparams.synthetic:
            return
        from polyvision.datamodules.anomaly.synthetic import (
            synthetic_anomaly_is_complete,
            write_synthetic_anomaly,
        )

        options = dict(self.hparams.synthetic_options or {})
        if not synthetic_anomaly_is_complete(self.root, self.hparams.dataset, **options):
            rank_zero_info(f"writing synthetic {self.hparams.dataset} dataset to {self.root}")
            write_synthetic_anomaly(self.hparams.dataset, self.root, progress=self.hparams.progress, **options)

    def cache_directory(self, split: str) -> tuple[Path, list[AnomalyVideo]]:
        videos = read_videos(self.hparams.dataset, self.root, split)
        key = cache_key(self.hparams.dataset, split, videos, self.settings)
        return self.cache_root / f"{self.hparams.dataset}-{split}-{key}", videos

    def cache(self, split: str) -> CubeCache:
        """The split's cube cache, built first if needed."""
        if split not in self.caches:
            if not self.caches:
                rank_zero_info(self.describe_pipeline())
            self.prepare_synthetic()
            directory, videos = self.cache_directory(split)
            if not (directory / "cache.json").is_file():
                build_cube_cache(videos, self.settings, directory, self.hparams.dataset, split,
                                 device=self.hparams.device, progress=self.hparams.progress)
            self.caches[split] = CubeCache(directory)
        return self.caches[split]

    def splits_for(self, stage: str | None) -> tuple[str, ...]:
        fit = ("train", "test") if self.hparams.val_on_test else ("train",)
        splits = {"fit": fit, "validate": ("test",), "test": ("test",), "predict": ("test",)}
        return splits.get(stage or "", ("train", "test"))

    def prepare_data(self) -> None:
        """Write the synthetic data if asked, then build the caches the stage needs (once per node)."""
        trainer = self.trainer
        stage = trainer.state.fn.value if trainer is not None and trainer.state.fn is not None else None
        for split in self.splits_for(stage):
            self.cache(split)

    def setup(self, stage: str | None = None) -> None:
        for split in self.splits_for(stage):
            self.cache(split)

    # -- loaders
    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(SkippingDataset(dataset, False), batch_size=batch_size,
                          sampler=training_sampler(len(dataset), self.trainer) if shuffle else None, num_workers=workers,
                          persistent_workers=workers > 0 and shuffle, pin_memory=torch.cuda.is_available(),
                          collate_fn=SourceCollate("video"))

    @property
    def eval_batch_size(self) -> int:
        return self.hparams.eval_batch_size or self.hparams.batch_size

    def train_dataloader(self) -> DataLoader:
        dataset = ObjectCubeDataset(self.cache("train"))
        if len(dataset) == 0:
            raise DataError(self.root, "no objects found in the training videos (check the box thresholds)")
        return self._loader(dataset, self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        if not self.hparams.val_on_test:
            # STATE trains without validation (the paper's protocol); an empty list says so,
            # and Lightning's warning that it is empty is not news.
            warnings.filterwarnings("ignore", message=r"Total length of `list` across ranks is zero")
            return []
        return self.test_dataloader()

    def test_dataloader(self) -> DataLoader:
        return self._loader(ObjectCubeDataset(self.cache("test"), include_empty_frames=True), self.eval_batch_size, False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def statistics_dataloader(self, rank: int = 0, world_size: int = 1) -> DataLoader:
        """The training cubes in order, this rank's share, for the model's error statistics."""
        dataset = ObjectCubeDataset(self.cache("train"))
        return self._loader(Subset(dataset, range(rank, len(dataset), world_size)), self.eval_batch_size, False)


