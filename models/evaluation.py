"""Evaluation protocols: what a ``MultiTaskModule`` measures in validation and test besides
each head's standard metrics.

A protocol is a configured component of the module (its ``evaluation`` argument, or the
system's default), called through four methods:

- ``standard_samples(sub_batch)``: which samples of a sub-batch the heads' standard metrics
  score (``None``: all of them);
- ``update(stage, name, head, outputs, sub_batch)``: once per head and sub-batch the head
  can score (its ``metric_inputs`` are not None), with the head's ``generate`` outputs;
- ``compute(stage, module)``: at the end of the epoch, the values to log, gathered across
  ranks;
- ``reset(stage)``: forget the epoch.

``FullVideoEvaluation`` is OmniFD's: clips cut from longer videos are scored per window and
per whole video.
"""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from polyvision.heads.base import (
    Head,
    WindowMergingHead,
    remember_init_args,
    update_metrics,
)
from torch import Tensor

__all__ = ["EvaluationProtocol", "FullVideoEvaluation", "select_samples", "windows_of"]


def select_samples(inputs: tuple | dict[str, tuple], indices: list[int]) -> tuple | dict[str, tuple]:
    """Keep the samples ``indices`` of metric inputs (tensors batched on dim 0, or per-sample lists)."""
    if isinstance(inputs, dict):
        return {name: ([args[i] for i in indices] if isinstance(args, list) else select_samples(args, indices))
                for name, args in inputs.items()}
    picked = []
    for item in inputs:
        if isinstance(item, Tensor):
            picked.append(item[torch.as_tensor(indices, device=item.device)])
        else:
            picked.append([item[i] for i in indices])
    return tuple(picked)


def windows_of(sub_batch: dict[str, Any]) -> list[tuple[str, int]] | None:
    """``(video_id, window)`` per sample when the sub-batch holds windows of longer videos
    (every ``meta`` has ``video_id`` and ``window``), else None."""
    meta = sub_batch.get("meta") or []
    if not meta or not all(isinstance(m, dict) and "video_id" in m and "window" in m for m in meta):
        return None
    return [(str(m["video_id"]), int(m["window"])) for m in meta]


class EvaluationProtocol:
    """Base class of evaluation protocols (module docstring). Subclasses remember their
    constructor arguments, so a model saves them as plain ``class_path``/``init_args``."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        remember_init_args(cls)

    def standard_samples(self, sub_batch: dict[str, Any]) -> list[int] | None:
        return None

    def update(self, stage: str, name: str, head: Head, outputs: dict[str, Tensor], sub_batch: dict[str, Any]) -> None:
        raise NotImplementedError

    def compute(self, stage: str, module: "pl.LightningModule") -> dict[str, Tensor]:
        raise NotImplementedError

    def reset(self, stage: str) -> None:
        raise NotImplementedError


class FullVideoEvaluation(EvaluationProtocol):
    """Clips cut from longer videos (``meta`` with ``video_id`` and ``window``), scored twice:

    - the heads' standard metrics ``<stage>/<head>/<metric>`` read the first window of each
      video, the protocol of OmniFD's released test pipelines;
    - every window's ``predict`` result is kept for heads that merge windows
      (``WindowMergingHead``); at the end of the epoch each video's windows are merged and
      scored as ``<stage>/<head>_full/<metric>``, the whole-video protocol. Under DDP every
      rank gathers every video before merging, so a video split across ranks is whole.
    """

    def __init__(self):
        self.buffers: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}

    def standard_samples(self, sub_batch: dict[str, Any]) -> list[int] | None:
        windows = windows_of(sub_batch)
        if windows is None:
            return None
        return [index for index, (_, window) in enumerate(windows) if window == 0]

    def update(self, stage: str, name: str, head: Head, outputs: dict[str, Tensor], sub_batch: dict[str, Any]) -> None:
        windows = windows_of(sub_batch)
        if windows is None or not isinstance(head, WindowMergingHead):
            return
        predictions = head.predict(outputs, sub_batch)
        labels = sub_batch.get("label")
        buffer = self.buffers.setdefault(stage, {})
        for index, (video_id, window) in enumerate(windows):
            target = dict(sub_batch["meta"][index])
            if isinstance(labels, Tensor):
                target["label"] = int(labels[index])
            entry = buffer.setdefault((name, video_id), {"target": target, "windows": {}})
            entry["windows"][window] = predictions[index]

    def gathered(self, stage: str, module: "pl.LightningModule") -> dict[tuple[str, str], dict[str, Any]]:
        """This stage's windows from every rank."""
        buffer = self.buffers.get(stage, {})
        if module._trainer is None or module.trainer.world_size <= 1:
            return buffer
        parts: list[dict] = [None] * module.trainer.world_size  # type: ignore[list-item]
        torch.distributed.all_gather_object(parts, buffer)
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for part in parts:
            for key, entry in part.items():
                merged.setdefault(key, {"target": entry["target"], "windows": {}})["windows"].update(entry["windows"])
        return merged

    def compute(self, stage: str, module: "pl.LightningModule") -> dict[str, Tensor]:
        by_head: dict[str, list[dict[str, Any]]] = {}
        for (name, _), entry in sorted(self.gathered(stage, module).items()):
            by_head.setdefault(name, []).append(entry)
        values: dict[str, Tensor] = {}
        for name, entries in by_head.items():
            head = module.heads[name]
            merged = [head.merge_windows([e["windows"][w] for w in sorted(e["windows"])]) for e in entries]
            inputs = head.metric_inputs_from_predictions(merged, [e["target"] for e in entries])
            if inputs is None:
                continue
            collection = head.metrics().clone(prefix=f"{stage}/{name}_full/").to(module.device)
            for metric in collection.values():
                metric.sync_on_compute = False  # every rank already holds every video
            update_metrics(collection, inputs)
            values.update(collection.compute())
        return values

    def reset(self, stage: str) -> None:
        self.buffers.pop(stage, None)
