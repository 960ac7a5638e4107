"""Shared pieces of every datamodule: collation into the documented batch dict and
bad-sample skipping.

A sample is a dict of tensors plus ``meta`` (a JSON-able dict). ``collate_samples`` stacks
tensors, keeps ``meta`` as a list, and drops samples that a dataset returned as ``None``
(only done when ``skip_bad_samples`` is on), counting them in ``num_skipped``.
"""
from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import Any, Callable, Sequence

import torch
from polyvision.datamodules.seeding import seed_sample, training_sampler
from polyvision.errors import DataError
from torch import Tensor
from torch.utils.data import DataLoader, Dataset


def collate_samples(samples: list[dict[str, Any] | None], source: str | None = None) -> dict[str, Any]:
    kept = [s for s in samples if s is not None]
    batch: dict[str, Any] = {"num_skipped": torch.tensor(len(samples) - len(kept))}
    if source is not None:
        batch["source"] = source
    if not kept:
        batch["meta"] = []
        return batch
    for key in kept[0]:
        values = [s[key] for s in kept]
        if key == "meta":
            batch["meta"] = values
        elif isinstance(values[0], Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], (int, float, bool)):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch


class SourceCollate:
    """A picklable collate_fn that tags each sub-batch with its source name."""

    def __init__(self, source: str):
        self.source = source

    def __call__(self, samples):
        return collate_samples(samples, self.source)


def sample_loader(dataset: Dataset, *, batch_size: int, shuffle: bool, num_workers: int, skip_bad_samples: bool,
                  source: str, trainer: object | None, collate: Callable[[list], dict] | None = None) -> DataLoader:
    """The loader of a map-style dataset of samples: bad samples skipped on request, training
    order and augmentation seeded from (run seed, epoch, index) (``datamodules.seeding``),
    workers kept across epochs, sub-batches tagged with ``source`` (``collate``: a picklable
    replacement for ``SourceCollate(source)``, e.g. one that pads variable-length inputs)."""
    return DataLoader(
        SkippingDataset(dataset, skip_bad_samples),
        batch_size=batch_size,
        sampler=training_sampler(len(dataset), trainer) if shuffle else None,  # type: ignore[arg-type]
        drop_last=False,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        collate_fn=collate if collate is not None else SourceCollate(source),
    )


class SplitLoaders:
    """The loaders of a datamodule whose ``_dataset(split)`` gives each split's samples and whose
    hyper-parameters hold ``batch_size``, ``num_workers``, ``skip_bad_samples`` and ``source``
    (only training shuffles); ``loader_dataset`` may resample a split (class balancing)."""

    hparams: Any
    trainer: Any
    STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",),
                    None: ("train", "val", "test")}

    def _dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Read (and check) the annotations of the splits the stage needs: fit: train and val,
        validate: val, test: test, predict: predict; None: train, val and test."""
        splits = self.STAGE_SPLITS.get(stage)
        if splits is None:
            raise ValueError(f"unknown stage {stage!r}")
        for split in splits:
            self._dataset(split)

    def collate(self) -> Callable[[list], dict] | None:
        """The loaders' collate function; None: ``SourceCollate`` (stack, tag the source)."""
        return None

    def loader_dataset(self, split: str) -> Dataset:
        return self._dataset(split)

    @property
    def num_train_samples(self) -> int:
        """Number of training samples (loads the training annotation if needed)."""
        return len(self._dataset("train"))  # type: ignore[arg-type]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        hp = self.hparams
        return sample_loader(self.loader_dataset(split), batch_size=hp.batch_size, shuffle=shuffle,
                             num_workers=hp.num_workers, skip_bad_samples=hp.skip_bad_samples, source=hp.source,
                             trainer=self.trainer, collate=self.collate())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", shuffle=False)


class SkippingDataset(Dataset):
    """Wraps a dataset so that a ``DataError`` for one sample yields ``None`` (then dropped
    by ``collate_samples``) with a warning naming the file, instead of ending the run."""

    def __init__(self, dataset: Dataset, skip_bad_samples: bool):
        self.dataset = dataset
        self.skip_bad_samples = skip_bad_samples

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int | tuple[int, int]):
        if isinstance(index, tuple):  # a SampleKey: (index, seed of this sample's randomness)
            index, seed = index
            seed_sample(self.dataset, seed)
        if not self.skip_bad_samples:
            return self.dataset[index]
        try:
            return self.dataset[index]
        except DataError as error:
            warnings.warn(f"skipping bad sample: {error}", stacklevel=2)
            return None

    def __getattr__(self, name: str):
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def class_balanced_indices(labels: Sequence[int], oversample_thr: float = 0.5) -> list[int]:
    """Dataset indices with the samples of rare classes repeated, OmniFD's
    ``FixedClassBalancedDataset`` (official code: github.com/haotianll/OmniFD,
    ``mmpretrain/datasets/dataset_wrappers.py``): a class whose frequency f is below
    ``oversample_thr`` is repeated ``ceil(max_f / f)`` times (linear, not mmengine's square
    root), the others once. FF++ with 20 % reals: every real image appears 4 times."""
    if not labels:
        return []
    counts = Counter(int(label) for label in labels)
    total = len(labels)
    most = max(counts.values()) / total
    repeats = {label: (math.ceil(most / (count / total) - 1e-9) if count / total < oversample_thr else 1)
               for label, count in counts.items()}
    return [index for index, label in enumerate(labels) for _ in range(repeats[int(label)])]
