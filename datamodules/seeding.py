"""Randomness that a resumed run repeats exactly.

A run killed at any moment and resumed from its last checkpoint must end where the
uninterrupted run ends. Lightning restores weights, optimiser, schedulers and loop counters,
but not random generator states, and DataLoader workers reseed from the main process's RNG
whenever they start. So no random stream here depends on generator state carried across
steps; each is derived from the run seed and a position:

- the training order from ``(seed, epoch)`` (:class:`SeededSampler`, ``set_epoch`` is
  called by Lightning at every epoch start, also through its DDP sampler wrapper);
- every training sample's augmentation from ``(seed, epoch, index)``: the sampler yields
  ``(index, seed)`` keys, and :func:`seed_sample` reseeds Python's, NumPy's and torch's global
  generators and the dataset's own (``set_sample_seed``) before the sample is read, in
  whichever worker reads it (so results do not depend on ``num_workers`` either);
- the model's randomness (dropout, drop-path) and device-side augmentation from
  ``(seed, global step, rank)`` (``MultiTaskModule.on_train_batch_start``,
  :func:`step_generator`).

The run seed is ``seed_everything``'s (``PL_GLOBAL_SEED``); checkpoints record it, and
resuming restores it, so a config with ``seed_everything: true`` (a fresh random seed per
start) resumes with the seed its run began with.
"""
from __future__ import annotations

import os
import random
from typing import Iterator, NamedTuple

import numpy as np
import torch
from torch.utils.data import Sampler

SEED_ENV = "PL_GLOBAL_SEED"  # where Lightning's seed_everything records the run seed


def run_seed() -> int:
    """The run seed set by ``seed_everything`` (0 when none was set)."""
    try:
        return int(os.environ.get(SEED_ENV, "0"))
    except ValueError:
        return 0


def derive_seed(*keys: int | str) -> int:
    """A 63-bit seed mixed from ``keys`` (integers or short names) by NumPy's SeedSequence:
    nearby keys give unrelated streams, and the result is the same on every machine."""
    words = [k if isinstance(k, int) else int.from_bytes(k.encode(), "little") for k in keys]
    low, high = np.random.SeedSequence([w & 0xFFFFFFFFFFFFFFFF for w in words]).generate_state(2, np.uint32)
    return int((int(high) << 32 | int(low)) & 0x7FFFFFFFFFFFFFFF)


class SampleKey(NamedTuple):
    """What :class:`SeededSampler` yields: a dataset index and the seed of that sample's
    randomness in this epoch."""

    index: int
    seed: int


class SeededSampler(Sampler[SampleKey]):
    """Indices in an order derived from ``(seed, epoch)`` (shuffled, or in order), each with
    its sample seed. ``seed=None`` reads the run seed when an epoch starts. With a ``trainer``
    the epoch is the trainer's when iteration starts (a resumed run may start its first epoch
    before Lightning calls ``set_epoch``); without one, the last ``set_epoch``."""

    def __init__(self, num_samples: int, shuffle: bool = True, seed: int | None = None, trainer: object | None = None):
        self.num_samples = int(num_samples)
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.trainer = trainer
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def current_epoch(self) -> int:
        if self.trainer is None:
            return self.epoch
        # Lightning's own epoch for samplers: right after a restore ``current_epoch`` lags it.
        progress = getattr(getattr(self.trainer, "fit_loop", None), "epoch_progress", None)
        return int(progress.current.processed) if progress is not None else int(self.trainer.current_epoch)

    def __iter__(self) -> Iterator[SampleKey]:
        seed = run_seed() if self.seed is None else int(self.seed)
        epoch = self.current_epoch()
        if self.shuffle:
            generator = torch.Generator().manual_seed(derive_seed(seed, "order", epoch))
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = range(self.num_samples)
        for index in order:
            yield SampleKey(int(index), derive_seed(seed, "sample", epoch, int(index)))


def training_sampler(num_samples: int, trainer: object | None) -> SeededSampler:
    """The shuffling sampler of a training loader, following ``trainer``'s epoch."""
    return SeededSampler(num_samples, shuffle=True, trainer=trainer)


def seed_sample(dataset: object, seed: int) -> None:
    """Reseed every generator a sample may draw from: Python's, NumPy's and torch's global ones
    and the dataset's own (``set_sample_seed``, e.g. an albumentations pipeline), looking
    through wrappers (``Subset``, ``SkippingDataset``) that keep theirs in ``.dataset``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    # Samples are read on the CPU: its generator alone (torch.manual_seed also reseeds every
    # CUDA device, costly once per sample).
    torch.random.default_generator.manual_seed(seed)
    seen: set[int] = set()
    while dataset is not None and id(dataset) not in seen:
        seen.add(id(dataset))
        hook = getattr(type(dataset), "set_sample_seed", None)
        if callable(hook):
            hook(dataset, seed)
        dataset = vars(dataset).get("dataset") if hasattr(dataset, "__dict__") else None


def seed_step(step: int, rank: int = 0) -> None:
    """Reseed the global generators for training step ``step`` on rank ``rank``."""
    seed = derive_seed(run_seed(), "step", int(step), int(rank))
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_generator(trainer: object | None, device: torch.device | str = "cpu") -> torch.Generator | None:
    """A generator for device-side augmentation of the current training batch, derived from
    the run seed, the trainer's global step and rank (None without a trainer)."""
    if trainer is None:
        return None
    step, rank = int(getattr(trainer, "global_step", 0)), int(getattr(trainer, "global_rank", 0))
    return torch.Generator(device=device).manual_seed(derive_seed(run_seed(), "device", step, rank))
