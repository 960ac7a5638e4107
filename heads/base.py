"""The Head contract every task head implements.

A head turns backbone features into task outputs, and knows nothing about the system it
sits in. ``features`` is a dict with:

- ``"maps"``: the backbone's multi-scale feature maps, NCHW for images, NCTHW for clips;
- ``"latents"`` (optional): ``(B, D, L)`` latent tokens from a neck (OmniFD's interaction
  module, or a stand-in), the channel for cross-task exchange.

A sub-batch is a dict with the documented keys (``image`` or ``video``, ``label``,
``mask``, ``has_mask``, ``segments``, ``joints``, ``tokens``, ``meta``, ``source``); a head
reads only the keys it needs and skips the loss when its targets are absent.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any

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


def module_spec(module: nn.Module) -> dict[str, Any]:
    """``class_path``/``init_args`` of a head or neck, whether it came from YAML or Python."""
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
        raise NotImplementedError

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        """Named loss terms; an empty dict when this sub-batch carries no target."""
        raise NotImplementedError

    def predict(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> list[dict[str, Any]]:
        """User-facing, JSON-serialisable results, one dict per sample."""
        raise NotImplementedError

    def metrics(self) -> MetricCollection:
        """A fresh collection of this task's validation/test metrics."""
        return MetricCollection({})

    def metric_inputs(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> tuple | dict[str, tuple] | None:
        """``(preds, target)`` for ``metrics().update``, or a dict ``metric name -> (preds,
        target)`` (or a list of such pairs) when the collection's metrics read different
        inputs; ``None`` skips the sub-batch. Feed it to the collection with
        :func:`update_metrics`."""
        return None

    # Full-video evaluation: heads that read clips cut from longer videos merge the
    # predictions of a video's windows and score the merged prediction.
    def merge_windows(self, predictions: list[dict[str, Any]]) -> dict[str, Any]:
        """One prediction for a whole video from its windows' ``predict`` results, in order."""
        raise NotImplementedError(f"{type(self).__name__} does not merge video windows")

    def metric_inputs_from_predictions(self, predictions: list[dict[str, Any]],
                                       targets: list[dict[str, Any]]) -> tuple | None:
        """``(preds, target)`` from merged predictions and each video's ``meta`` (its
        ``label`` and ``segments_seconds``); ``None`` when the head has no whole-video metric."""
        return None


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


__all__ = ["Head", "has_key", "detach_to_list", "global_pool", "module_spec", "remember_init_args", "update_metrics"]
