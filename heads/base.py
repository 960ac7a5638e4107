"""The Head contract every task head implements.

A head turns features into task outputs and knows nothing about the system it sits in.

``features`` is the dict ``MultiTaskModule.extract_features`` builds once per sub-batch; every
head of the sub-batch reads it. Its keys, and who fills them:

- ``"inputs"``: the tensor the backbone read (the model's declared input, normalised when it
  is a uint8 picture); filled by the module. Reconstruction heads use it as their target.
- ``"maps"``: the backbone's outputs, a list: multi-scale NCHW maps for images, NCTHW for
  clips, or ``(B, N, C)`` token sets for sequence and region encoders; filled by the module
  from the backbone.
- ``"latents"`` (with a neck): ``(B, D, L)`` latent tokens from the neck (OmniFD's interaction
  module), the channel for cross-task exchange; filled by the module from the neck.
- ``"memory"``, ``"memory_mask"`` (sequence encoders): ``(B, N, D)`` tokens that decoders
  attend to and a ``(B, N)`` bool mask, True on real tokens; filled by the module when the
  backbone's last output is a token set: ``memory`` is that output and ``memory_mask`` the
  input's padding mask (all True when the batch has none).

A sub-batch is a dict with the documented keys (``image``, ``video``, ``regions`` +
``region_mask``, ``tokens`` + ``token_mask``, ``label``, ``mask``, ``has_mask``,
``segments``, ``joints``, ``meta``, ``source``); a head reads only the keys it needs and
skips the loss when its targets are absent.

The methods, and who calls them:

- ``forward(features, batch) -> outputs``: the training-time pass (teacher forcing for
  autoregressive heads); its outputs feed ``loss`` in validation and test.
- ``training_loss(features, batch) -> {term: loss}``: what a training step minimises; by
  default ``loss(forward(...))``. A head trained on its own samples (self-critical sequence
  training) overrides it alone.
- ``generate(features, batch) -> outputs``: the inference-time pass (greedy or beam
  decoding); by default ``forward``. ``predict`` and ``metric_inputs`` read its outputs.
- ``loss``, ``predict``, ``metrics``, ``metric_inputs``: below.

Heads that score clips cut from longer videos also implement ``WindowMergingHead``, the
protocol the full-video evaluation (``polyvision.models.evaluation``) recognises them by.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn
from torchmetrics import MetricCollection


def remember_init_args(cls: type) -> None:
    """Make instances of ``cls`` remember their constructor arguments, so a model built in
    Python saves plain ``class_path``/``init_args`` in its checkpoint, as one built from YAML does."""
    original = cls.__dict__.get("__init__")
    if original is None or getattr(original, "_remembers", False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def init(self, *args, **kwargs):
        if "_init_args" not in self.__dict__:  # the outermost constructor records the arguments
            bound = signature.bind(self, *args, **kwargs)
            self.__dict__["_init_args"] = {k: v for k, v in bound.arguments.items() if k != "self"}
        original(self, *args, **kwargs)

    init._remembers = True  # type: ignore[attr-defined]
    cls.__init__ = init


def module_spec(module: Any) -> dict[str, Any]:
    """``class_path``/``init_args`` of a head, a neck or an evaluation protocol, whether it came
    from YAML or Python."""
    cls = type(module)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": dict(module.__dict__.get("_init_args", {}))}


class Head(nn.Module):
    """Base class of all task heads (see module docstring for the contract)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        remember_init_args(cls)

    def bind(self, feature_channels: list[int], feature_strides: list[int], latent_channels: int | None) -> None:
        """Build the layers that depend on the backbone: called once by the module that owns
        the head, with the backbone's channels and strides and the neck's latent width
        (``None`` without a neck). This is what lets a config swap backbones freely."""

    def forward(self, features: dict[str, Any], batch: dict[str, Any]) -> dict[str, Tensor]:
        """Training-time outputs (teacher forcing for an autoregressive head)."""
        raise NotImplementedError

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        """Named loss terms of ``forward``'s outputs; an empty dict when this sub-batch
        carries no target."""
        raise NotImplementedError

    def training_loss(self, features: dict[str, Any], batch: dict[str, Any]) -> dict[str, Tensor]:
        """The loss terms a training step minimises. A head whose training needs more than
        ``forward`` then ``loss`` (sampling, a reward, a baseline) overrides this alone."""
        return self.loss(self(features, batch), batch)

    def generate(self, features: dict[str, Any], batch: dict[str, Any]) -> dict[str, Tensor]:
        """Inference-time outputs, read by ``predict`` and ``metric_inputs``: what the head
        answers without targets (an autoregressive head decodes here, greedy or beam)."""
        return self(features, batch)

    def predict(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> list[dict[str, Any]]:
        """User-facing, JSON-serialisable results of ``generate``'s outputs, one dict per sample."""
        raise NotImplementedError

    def metrics(self) -> MetricCollection:
        """A fresh collection of this task's validation/test metrics."""
        return MetricCollection({})

    def metric_inputs(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> tuple | dict[str, tuple] | None:
        """``(preds, target)`` for ``metrics().update`` from ``generate``'s outputs, or a dict
        ``metric name -> (preds, target)`` (or a list of such pairs) when the collection's
        metrics read different inputs; ``None`` skips the sub-batch. Feed it to the
        collection with :func:`update_metrics`."""
        return None


@runtime_checkable
class WindowMergingHead(Protocol):
    """A head whose clips may be windows cut from longer videos: it merges a video's window
    predictions into one and scores the merged predictions (full-video evaluation and
    ``polyvision infer`` on videos)."""

    def predict(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> list[dict[str, Any]]: ...

    def merge_windows(self, predictions: list[dict[str, Any]]) -> dict[str, Any]:
        """One prediction for a whole video from its windows' ``predict`` results, in order."""

    def metric_inputs_from_predictions(self, predictions: list[dict[str, Any]],
                                       targets: list[dict[str, Any]]) -> tuple | None:
        """``(preds, target)`` for ``metrics().update`` from merged predictions and each video's
        ``meta`` (with its ``label``); ``None`` when the head has no whole-video metric."""

    def metrics(self) -> MetricCollection: ...


def update_metrics(collection: MetricCollection, inputs: tuple | dict[str, tuple | list[tuple]]) -> None:
    """Update ``collection`` with a head's ``metric_inputs``: one ``(preds, target)`` for all
    its metrics, or per metric name one pair or a list of pairs (e.g. images of different
    sizes, one update each)."""
    if not isinstance(inputs, dict):
        collection.update(*inputs)
        return
    for name, args in inputs.items():
        for pair in (args if isinstance(args, list) else [args]):
            collection[name].update(*pair)


def has_key(batch: dict[str, Any], key: str) -> bool:
    value = batch.get(key)
    return isinstance(value, Tensor) and value.numel() > 0


def detach_to_list(tensor: Tensor) -> list:
    return tensor.detach().float().cpu().tolist()


def global_pool(feature_map: Tensor) -> Tensor:
    """Mean over every axis after the channel axis: (B, C, ...) -> (B, C)."""
    return feature_map.flatten(2).mean(dim=2) if feature_map.dim() > 2 else feature_map


__all__ = ["Head", "WindowMergingHead", "has_key", "detach_to_list", "global_pool", "module_spec", "remember_init_args", "update_metrics"]
