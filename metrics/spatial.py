"""Pixel-level forgery localization metrics.

FF++ / FMLD (Kong et al., "Detect and Locate"): PBCA, IINC and soft IoU computed per image,
then averaged over images (:class:`SpatialLocalizationMetrics`). ForgeryNet: threshold
agreement ("IoU"), tolerance agreement ("IoU-diff") and L1 pooled over every pixel of every
image (:class:`ForgeryNetPixelMetrics`).

``preds`` are probabilities p = sigmoid(logit) and ``target`` the soft mask (mask / 255),
both in [0, 1] with shape ``(N, H, W)`` or ``(N, 1, H, W)``. Values are fractions in [0, 1].

Each class returns a dict from ``compute()``. Inside ``MetricCollection(..., prefix="test/")``
the dict is flattened, so the keys read ``test/pbca``, ``test/iinc``, ``test/soft_iou``,
``test/iou@0.1`` ...; ``.clone(prefix="val/")`` renames them the same way. Log the computed
dict (``self.log_dict(collection.compute())``), not the collection object: Lightning's
``log(name, metric)`` expects a Metric whose ``compute()`` is a scalar.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["SpatialLocalizationMetrics", "ForgeryNetPixelMetrics", "per_image_localization"]


def _flatten_maps(preds: Tensor, target: Tensor, validate_args: bool = True) -> tuple[Tensor, Tensor]:
    """Check shapes and return float32 ``(N, H*W)`` views of ``preds`` and ``target``."""
    if preds.shape != target.shape:
        raise ValueError(
            f"preds shape {tuple(preds.shape)} and target shape {tuple(target.shape)} differ; "
            "both must be (N, H, W) or (N, 1, H, W)"
        )
    if preds.dim() == 4 and preds.shape[1] == 1:
        preds, target = preds[:, 0], target[:, 0]
    elif preds.dim() != 3:
        raise ValueError(f"expected maps of shape (N, H, W) or (N, 1, H, W), got {tuple(preds.shape)}")
    preds = preds.detach().float().flatten(1)
    target = target.detach().float().flatten(1)
    if validate_args and preds.numel():
        # Logits or 0..255 masks would not fail anywhere else, only give wrong numbers.
        if bool(((preds < 0) | (preds > 1) | torch.isnan(preds)).any()):
            raise ValueError("preds must be probabilities in [0, 1]; apply sigmoid first")
        if bool(((target < 0) | (target > 1) | torch.isnan(target)).any()):
            raise ValueError("target must be a mask in [0, 1] (divide 8-bit masks by 255)")
    return preds, target


def per_image_localization(preds: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Per-image PBCA, IINC and soft IoU (float64, shape ``(N,)``) on ``(N, H*W)`` maps.

    With g = target > 0 and P = preds > 0.5:

    - ``pbca``: pixel accuracy of P against g;
    - ``iinc``: (2 - I/|P| - I/|g|) / (3 - U/#pix); 0 when P and g are both empty and
      1 / (3 - U/#pix) when exactly one is (lower is better);
    - ``soft_iou``: sum(p*g) / (sum(p) + sum(g) - sum(p*g)) on the unthresholded p; an
      image with an empty mask therefore scores 0 (numerator 0), and so does the one case
      where the denominator is 0 (p == 0 everywhere and g empty), as in the reference.
    """
    num_pixels = preds.shape[1]
    truth = target > 0
    pred = preds > 0.5
    inter = (pred & truth).sum(1).double()
    union = (pred | truth).sum(1).double()
    size_pred = pred.sum(1).double()
    size_truth = truth.sum(1).double()

    pbca = (pred == truth).sum(1).double() / num_pixels

    scale = 1.0 / (3.0 - union / num_pixels)
    pred_empty, truth_empty = size_pred == 0, size_truth == 0
    general = 2.0 - inter / size_pred.clamp_min(1) - inter / size_truth.clamp_min(1)
    iinc = torch.where(pred_empty & truth_empty, torch.zeros_like(scale),
                       torch.where(pred_empty ^ truth_empty, scale, general * scale))

    truth_f = truth.float()
    soft_inter = (preds * truth_f).sum(1).double()
    denom = preds.sum(1).double() + truth_f.sum(1).double() - soft_inter
    soft_iou = torch.where(denom > 0, soft_inter / denom.clamp_min(torch.finfo(torch.float64).tiny),
                           torch.zeros_like(denom))
    return {"pbca": pbca, "iinc": iinc, "soft_iou": soft_iou}


class SpatialLocalizationMetrics(Metric):
    """FF++/FMLD localization: mean over images of per-image PBCA, IINC and soft IoU.

    ``compute()`` returns ``{"pbca", "iinc", "soft_iou"}`` (float32 scalars; nan before any
    image). Higher is better for ``pbca`` and ``soft_iou``, lower for ``iinc``.
    """

    is_differentiable = False
    higher_is_better = None  # mixed: see the class docstring
    full_state_update = False

    def __init__(self, validate_args: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validate_args = validate_args
        # float64 running sums: per-image values over a whole test set would drift in float32.
        # Names are prefixed so MetricCollection's compute groups never merge unrelated metrics.
        for name in ("loc_pbca_sum", "loc_iinc_sum", "loc_soft_iou_sum"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("loc_images", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        preds, target = _flatten_maps(preds, target, self.validate_args)
        values = per_image_localization(preds, target)
        self.loc_pbca_sum += values["pbca"].sum()
        self.loc_iinc_sum += values["iinc"].sum()
        self.loc_soft_iou_sum += values["soft_iou"].sum()
        self.loc_images += preds.shape[0]

    def compute(self) -> dict[str, Tensor]:
        images = self.loc_images.double()
        return {
            "pbca": (self.loc_pbca_sum / images).float(),
            "iinc": (self.loc_iinc_sum / images).float(),
            "soft_iou": (self.loc_soft_iou_sum / images).float(),
        }


class ForgeryNetPixelMetrics(Metric):
    """ForgeryNet localization, pooled over all pixels of all images.

    ``compute()`` returns, with y the soft target:

    - ``iou@t`` for t in ``iou_thresholds``: fraction of pixels where (p >= t) == (y >= t);
    - ``iou_diff@t`` for t in ``diff_thresholds``: fraction of pixels where |p - y| <= t;
    - ``l1``: mean |p - y| (lower is better).

    Keys format thresholds with ``{:g}``: the defaults give ``iou@0.1``, ``iou@0.2``,
    ``iou_diff@0.01``, ``iou_diff@0.05``, ``iou_diff@0.1`` and ``l1``.
    """

    is_differentiable = False
    higher_is_better = None  # mixed: l1 is lower-is-better
    full_state_update = False

    def __init__(
        self,
        iou_thresholds: Sequence[float] = (0.1, 0.2),
        diff_thresholds: Sequence[float] = (0.01, 0.05, 0.1),
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.iou_thresholds = tuple(float(t) for t in iou_thresholds)
        self.diff_thresholds = tuple(float(t) for t in diff_thresholds)
        self.validate_args = validate_args
        # int64 counts: a test set easily holds more pixels than float32 counts exactly.
        self.add_state("fn_iou_hits", default=torch.zeros(len(self.iou_thresholds), dtype=torch.long),
                       dist_reduce_fx="sum")
        self.add_state("fn_diff_hits", default=torch.zeros(len(self.diff_thresholds), dtype=torch.long),
                       dist_reduce_fx="sum")
        self.add_state("fn_abs_err_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("fn_pixels", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        preds, target = _flatten_maps(preds, target, self.validate_args)
        abs_err = (preds - target).abs()
        if self.iou_thresholds:
            self.fn_iou_hits += torch.stack([((preds >= t) == (target >= t)).sum() for t in self.iou_thresholds])
        if self.diff_thresholds:
            self.fn_diff_hits += torch.stack([(abs_err <= t).sum() for t in self.diff_thresholds])
        self.fn_abs_err_sum += abs_err.double().sum()
        self.fn_pixels += preds.numel()

    def compute(self) -> dict[str, Tensor]:
        pixels = self.fn_pixels.double()
        out: dict[str, Tensor] = {}
        for i, t in enumerate(self.iou_thresholds):
            out[f"iou@{t:g}"] = (self.fn_iou_hits[i].double() / pixels).float()
        for i, t in enumerate(self.diff_thresholds):
            out[f"iou_diff@{t:g}"] = (self.fn_diff_hits[i].double() / pixels).float()
        out["l1"] = (self.fn_abs_err_sum / pixels).float()
        return out
