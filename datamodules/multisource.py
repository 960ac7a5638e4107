"""``MultiSourceDataModule``: several datamodules trained together, one sub-batch each per step.

OmniFD's unified training takes an image sub-batch and a clip sub-batch in every step
(128 images + 8 clips per device in the paper). This module wraps one datamodule per
source; training batches are Lightning ``CombinedLoader`` dicts ``source -> sub-batch``
(``max_size_cycle``: the shorter sources restart until the longest is exhausted, or
``min_size``), and validation/test iterate the sources one after another. The
``MultiTaskModule`` routes each sub-batch to the heads its ``sources`` entry names.
"""
from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
from polyvision.datamodules.geometry import geometry_of
from polyvision.errors import ConfigError
from pytorch_lightning.utilities import CombinedLoader


class MultiSourceDataModule(pl.LightningDataModule):
    """Args:
        sources: source name -> datamodule (``class_path``/``init_args`` in YAML). Each
            datamodule's own ``source`` setting must equal its name here, since its batches
            carry that name.
        train_mode: ``max_size_cycle`` (every step has every source; an epoch ends with
            the longest) or ``min_size`` (an epoch ends with the shortest).
        eval_only: sources used for validation, test and predict but not for training (e.g.
            ForgeryNet's 64-snippet temporal test clips; route them with the model's
            ``eval_sources``).
    """

    def __init__(self, sources: dict[str, pl.LightningDataModule],
                 train_mode: Literal["max_size_cycle", "min_size"] = "max_size_cycle",
                 eval_only: list[str] | None = None):
        super().__init__()
        if not sources:
            raise ConfigError("data.sources: at least one datamodule is needed")
        for name, datamodule in sources.items():
            own = getattr(datamodule, "hparams", {}).get("source")
            if own is not None and own != name:
                raise ConfigError(f"data.sources.{name}: its datamodule tags batches as '{own}'; "
                                  f"set its source: {name}")
        self.sources = sources
        self.train_mode = train_mode
        self.eval_only = list(eval_only or [])
        unknown = [name for name in self.eval_only if name not in sources]
        if unknown:
            raise ConfigError(f"data.eval_only: '{unknown[0]}' is not one of the sources ({', '.join(sources)})")
        if len(self.eval_only) == len(sources):
            raise ConfigError("data.eval_only: at least one source must be trained on")

    def input_geometry(self) -> dict[str, dict[str, Any]]:
        """Every source's geometry, under its source name."""
        merged: dict[str, dict[str, Any]] = {}
        for name, datamodule in self.sources.items():
            for entry in (geometry_of(datamodule) or {}).values():
                merged[name] = entry
        return merged

    def prepare_data(self) -> None:
        for datamodule in self.sources.values():
            datamodule.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        for datamodule in self.sources.values():
            datamodule.trainer = self.trainer
            datamodule.setup(stage)

    def _combined(self, method: str, mode: str, names: list[str] | None = None) -> CombinedLoader:
        loaders = {name: getattr(self.sources[name], method)() for name in (names or self.sources)}
        return CombinedLoader({k: v for k, v in loaders.items() if v is not None}, mode=mode)

    def train_dataloader(self) -> CombinedLoader:
        return self._combined("train_dataloader", self.train_mode,
                              [name for name in self.sources if name not in self.eval_only])

    def val_dataloader(self) -> CombinedLoader:
        return self._combined("val_dataloader", "sequential")

    def test_dataloader(self) -> CombinedLoader:
        return self._combined("test_dataloader", "sequential")

    def predict_dataloader(self) -> CombinedLoader:
        return self._combined("predict_dataloader", "sequential")

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # Children may decode or augment on the device (video); route each sub-batch to its owner.
        if isinstance(batch, dict) and all(isinstance(v, dict) for v in batch.values()) and set(batch) <= set(self.sources):
            return {name: self.sources[name].on_after_batch_transfer(sub, dataloader_idx) for name, sub in batch.items()}
        source = batch.get("source") if isinstance(batch, dict) else None
        if source in self.sources:
            return self.sources[source].on_after_batch_transfer(batch, dataloader_idx)
        return batch
