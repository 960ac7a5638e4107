"""Binary face-forgery classification metrics (class 0 = real, 1 = fake).

Protocols: FF++ and WildDeepfake report plain top-1 accuracy (:class:`Top1Accuracy`),
ForgeryNet reports balanced accuracy as "ACC" (:class:`BalancedAccuracy`), and all of them
report frame-level ROC AUC (:class:`ForgeryAUC`). Every metric takes ``preds`` = p(fake) in
[0, 1] with shape ``(N,)`` and an integer ``target`` in {0, 1} of the same shape, and returns
a fraction in [0, 1] as a float tensor.
"""
from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

__all__ = ["Top1Accuracy", "BalancedAccuracy", "ForgeryAUC", "binary_roc_auc"]


def _check_inputs(preds: Tensor, target: Tensor, validate_args: bool) -> tuple[Tensor, Tensor]:
    if preds.shape != target.shape:
        raise ValueError(
            f"preds and target must have the same shape, got preds {tuple(preds.shape)} "
            f"and target {tuple(target.shape)}"
        )
    if not preds.is_floating_point():
        raise ValueError(f"preds must be a float tensor of p(fake), got dtype {preds.dtype}")
    preds = preds.detach().reshape(-1).float()
    target = target.detach().reshape(-1)
    if validate_args and preds.numel():
        # Catches logits passed by mistake, which would silently skew every metric here.
        if bool(((preds < 0) | (preds > 1) | torch.isnan(preds)).any()):
            raise ValueError("preds must be probabilities p(fake) in [0, 1]; apply sigmoid/softmax first")
        if bool(((target != 0) & (target != 1)).any()):
            raise ValueError("target must contain only 0 (real) and 1 (fake)")
    return preds, target.long()


def _predicted_class(preds: Tensor) -> Tensor:
    # Strict ">": p == 0.5 is "real", as argmax([p_real, p_fake]) picks index 0 on a tie.
    return (preds > 0.5).long()


class Top1Accuracy(Metric):
    """Plain top-1 accuracy: fraction of samples whose class (fake iff p(fake) > 0.5) is right."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, validate_args: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validate_args = validate_args
        # State names are unique across this package's metrics so that MetricCollection's
        # compute groups never merge two different metrics whose states happen to coincide.
        self.add_state("top1_correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("top1_total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        preds, target = _check_inputs(preds, target, self.validate_args)
        self.top1_correct += (_predicted_class(preds) == target).sum()
        self.top1_total += target.numel()

    def compute(self) -> Tensor:
        """Accuracy in [0, 1]; nan when nothing was seen."""
        return self.top1_correct.float() / self.top1_total.float()


class BalancedAccuracy(Metric):
    """Mean per-class recall over the classes present in ``target`` (sklearn ``balanced_accuracy_score``)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, validate_args: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validate_args = validate_args
        self.add_state("bacc_correct", default=torch.zeros(2, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("bacc_total", default=torch.zeros(2, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        preds, target = _check_inputs(preds, target, self.validate_args)
        pred = _predicted_class(preds)
        # Masks rather than bincount: weighted CUDA bincount fails under deterministic mode.
        is_class = torch.stack([target == 0, target == 1])
        self.bacc_total += is_class.sum(dim=1)
        self.bacc_correct += (is_class & (pred == target)).sum(dim=1)

    def compute(self) -> Tensor:
        """Balanced accuracy in [0, 1]; nan when nothing was seen."""
        present = self.bacc_total > 0
        recall = self.bacc_correct[present].double() / self.bacc_total[present].double()
        return recall.mean().float()


def binary_roc_auc(preds: Tensor, target: Tensor) -> Tensor:
    """Exact ROC AUC (float64) via the Mann-Whitney U statistic with mid-ranks for ties.

    This equals the trapezoidal area over distinct thresholds that sklearn's
    ``roc_auc_score`` computes, tied scores included. The caller guarantees both classes
    are present.
    """
    preds = preds.reshape(-1).double()
    target = target.reshape(-1).bool()
    _, inverse, counts = torch.unique(preds, sorted=True, return_inverse=True, return_counts=True)
    upper = counts.cumsum(0).double()
    midrank = upper - (counts.double() - 1) / 2  # 1-based average rank of each tie group
    ranks = midrank[inverse]
    n_pos = target.sum().double()
    n_neg = target.numel() - n_pos
    u_stat = ranks[target].sum() - n_pos * (n_pos + 1) / 2
    return u_stat / (n_pos * n_neg)


class ForgeryAUC(Metric):
    """ROC AUC of p(fake) against the real/fake label, over all samples seen (kept in memory).

    With a single class in ``target`` the AUC is undefined: ``compute`` warns and returns nan
    instead of raising, so an evaluation over e.g. an all-fake subset still finishes.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, validate_args: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validate_args = validate_args
        self.add_state("auc_preds", default=[], dist_reduce_fx="cat")
        self.add_state("auc_target", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor) -> None:
        preds, target = _check_inputs(preds, target, self.validate_args)
        self.auc_preds.append(preds)
        self.auc_target.append(target)

    def compute(self) -> Tensor:
        """AUC in [0, 1] as float32; nan (with a warning) unless both classes are present."""
        # After a distributed sync the list states arrive as one concatenated tensor.
        if isinstance(self.auc_preds, list) and not self.auc_preds:
            warnings.warn("ForgeryAUC: no samples seen; AUC is undefined, returning nan", stacklevel=2)
            return torch.tensor(float("nan"), device=self.device)
        preds = dim_zero_cat(self.auc_preds)
        target = dim_zero_cat(self.auc_target)
        n_pos = int(target.sum())
        if n_pos == 0 or n_pos == target.numel():
            only = "fake" if n_pos else "real"
            warnings.warn(
                f"ForgeryAUC: target contains only {only} samples ({target.numel()}); AUC is undefined, returning nan",
                stacklevel=2,
            )
            return torch.tensor(float("nan"), device=preds.device)
        return binary_roc_auc(preds, target).float()
