"""Temporal forgery localization metrics, as LAV-DF's evaluation (and OmniFD's
``TemporalMetrics``) defines them (official code: github.com/haotianll/OmniFD,
``mmpretrain/evaluation/metrics/forgery.py``).

Both metrics take, per video, the predicted segments with their confidence and the
ground-truth fake segments, all in seconds:

``update(preds, target)`` with ``preds`` a list of ``(N_i, 3)`` tensors of rows
``[score, start, end]`` and ``target`` a list of ``(M_i, 2)`` tensors of rows
``[start, end]``, one entry per video (a single 2-D tensor is taken as one video). A video
may have no proposals (``N_i = 0``) and no ground truth (``M_i = 0``).

IoU of two segments is ``inter / (max(end) - min(start))``, LAV-DF's form (the hull equals
the union whenever the segments overlap, and the IoU is 0 otherwise).

:class:`TemporalAP` — for each IoU threshold t:

1. per video, proposals sorted by score (stable); for each GT in its given order, the first
   proposal in score order with IoU **strictly greater** than t that is not already used is
   a true positive (so a second proposal on the same GT is a false positive);
2. the proposals of all videos are pooled and sorted by score (stable), TPs are cumulated:
   ``precision_k = cumTP_k / k`` and ``recall_k = cumTP_k / #GT``;
3. the curve is read from the high-recall end, starting from the point (recall 1,
   precision 0), and ``AP = sum |delta recall| * running max of precision``.

LAV-DF's curve has no point at recall 0, so the recall step of the highest-scoring
proposal does not count (one perfect detection of the only GT scores AP 0; N perfect
detections of N GTs score (N-1)/N). ``lavdf_exact=True`` (default) reproduces this;
``lavdf_exact=False`` adds the step, which gives the usual interpolated AP. On benchmark-size
test sets the two differ by at most 1/#GT.

``compute()`` returns ``ap@t`` for the configured ``iou_thresholds`` and ``map``, the mean AP
over t in 0.50:0.05:0.95. Videos without GT add their proposals as false positives.

:class:`TemporalAR` — per video, the top-N proposals by score (zero-padded if fewer; the
padding never matches); for each GT the max IoU among them, a TP if it is **> t**;
``recall(t, N) = sum TP / sum (TP + FN)`` over all videos, and ``ar@N`` is its mean over t in
0.50:0.05:0.95. Videos without GT add nothing.

Values are fractions in [0, 1] (LAV-DF prints ×100). With no GT at all the metrics are
undefined and return nan (with a warning).

Inside ``MetricCollection({"ap": TemporalAP(), "ar": TemporalAR()}, prefix="test/temporal/")``
the dicts are flattened: ``test/temporal/ap@0.5``, ``ap@0.75``, ``ap@0.95``, ``map``,
``ar@10``, ``ar@20``, ``ar@50``, ``ar@100``.

Distributed evaluation: the states are flat 1-D float tensors (proposals, GT rows and per-video
``[#proposals, #GT]`` counts) reduced with ``"cat"``, so every rank's videos are recovered
from the counts after a sync, in rank order; after a sync a list state may already be one
concatenated tensor, which the metrics handle.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["TemporalAP", "TemporalAR", "LAVDF_IOU_THRESHOLDS", "segment_iou", "lavdf_average_precision",
           "lavdf_average_recall"]

#: LAV-DF's IoU thresholds 0.50:0.05:0.95 (mAP and AR average over these).
LAVDF_IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def segment_iou(proposals: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``(P, G)`` IoU of ``(P, 2)`` and ``(G, 2)`` ``[start, end]`` arrays (float64), LAV-DF's
    ``inter / hull``; 0 where the hull has zero length."""
    proposals = np.asarray(proposals, dtype=np.float64).reshape(-1, 2)
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, 2)
    p_start, p_end = proposals[:, :1], proposals[:, 1:]
    g_start, g_end = targets[None, :, 0], targets[None, :, 1]
    inter = np.clip(np.minimum(p_end, g_end) - np.maximum(p_start, g_start), 0.0, None)
    hull = np.maximum(p_end, g_end) - np.minimum(p_start, g_start)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(hull > 0, inter / np.where(hull > 0, hull, 1.0), 0.0)
    return iou


def _greedy_true_positives(candidates: np.ndarray) -> np.ndarray:
    """LAV-DF matching on a ``(P, G)`` boolean matrix (proposals in score order, IoU > t):
    each GT, in order, takes the first proposal not yet used."""
    used = np.zeros(candidates.shape[0], dtype=bool)
    for g in range(candidates.shape[1]):
        free = np.flatnonzero(candidates[:, g] & ~used)
        if free.size:
            used[free[0]] = True
    return used


def lavdf_average_precision(videos: Sequence[tuple[np.ndarray, np.ndarray]], thresholds: Sequence[float],
                            lavdf_exact: bool = True) -> np.ndarray:
    """AP per threshold (float64 array) for ``videos`` = ``[(preds (N,3) score-sorted, gt (M,2)), ...]``;
    nan for every threshold when there is no GT at all."""
    thresholds = [float(t) for t in thresholds]
    num_gt = sum(len(gt) for _, gt in videos)
    if num_gt == 0:
        return np.full(len(thresholds), np.nan)
    scores, hits = [], []
    for preds, gt in videos:
        if len(preds) == 0:
            continue
        scores.append(preds[:, 0])
        iou = segment_iou(preds[:, 1:3], gt)
        hits.append(np.stack([_greedy_true_positives(iou > t) for t in thresholds], axis=1))
    if not scores:
        return np.zeros(len(thresholds))
    scores_all = np.concatenate(scores)
    hits_all = np.concatenate(hits).astype(np.float64)  # (K, T)
    order = np.argsort(-scores_all, kind="stable")
    cum_tp = np.cumsum(hits_all[order], axis=0)
    rank = np.arange(1, len(order) + 1, dtype=np.float64)[:, None]
    precision, recall = cum_tp / rank, cum_tp / num_gt
    aps = np.empty(len(thresholds))
    for i in range(len(thresholds)):
        # From the high-recall end: (1, 0), then the proposals from last to first.
        x = np.concatenate([[1.0], recall[::-1, i]] + ([] if lavdf_exact else [[0.0]]))
        y = np.concatenate([[0.0], precision[::-1, i]] + ([] if lavdf_exact else [[0.0]]))
        y_max = np.maximum.accumulate(y)
        aps[i] = float((np.abs(np.diff(x)) * y_max[:-1]).sum())
    return aps


def lavdf_average_recall(videos: Sequence[tuple[np.ndarray, np.ndarray]], ns: Sequence[int],
                         thresholds: Sequence[float]) -> np.ndarray:
    """``(len(ns), len(thresholds))`` recall (float64) at top-N proposals per video; nan with no GT."""
    ns = [int(n) for n in ns]
    thresholds_arr = np.asarray([float(t) for t in thresholds])
    true_positives = np.zeros((len(ns), len(thresholds_arr)))
    num_gt = 0
    for preds, gt in videos:
        if len(gt) == 0:
            continue
        num_gt += len(gt)
        if len(preds) == 0:
            continue
        iou = segment_iou(preds[:, 1:3], gt)  # (P, G), proposals in score order
        best_so_far = np.maximum.accumulate(iou, axis=0)
        for i, n in enumerate(ns):
            if n <= 0:
                continue
            best = best_so_far[min(n, len(preds)) - 1]  # (G,) max IoU among the top-n
            true_positives[i] += (best[None, :] > thresholds_arr[:, None]).sum(axis=1)
    if num_gt == 0:
        return np.full((len(ns), len(thresholds_arr)), np.nan)
    return true_positives / num_gt


def _as_video_list(value: Any, columns: int, name: str) -> list[Tensor]:
    if isinstance(value, Tensor):
        if value.dim() != 2:
            raise ValueError(f"{name}: a single tensor must be one video's (N, {columns}) rows, "
                             f"got {tuple(value.shape)}")
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list of per-video tensors, got {type(value).__name__}")
    out = []
    for item in value:
        item = torch.as_tensor(item).detach()
        if item.numel() == 0:
            item = item.reshape(0, columns)
        if item.dim() != 2 or item.shape[1] != columns:
            raise ValueError(f"{name}: each video must be an (N, {columns}) tensor, got {tuple(item.shape)}")
        out.append(item.float().cpu())
    return out


def _flat(state: list[Tensor] | Tensor) -> Tensor:
    """A cat-reduced state as one flat tensor, whether still a list or already concatenated."""
    if isinstance(state, Tensor):
        return state.reshape(-1)
    if len(state) == 0:
        return torch.zeros(0)
    return torch.cat([s.reshape(-1) for s in state])


class _TemporalDetectionMetric(Metric):
    """Stores per-video proposals and GT as flat cat-reduced tensors (see module docstring)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    _state_prefix = "temporal"
    _keep_top: int | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Distinct names per metric so MetricCollection's compute groups never merge AP with AR.
        for suffix in ("preds", "target", "counts"):
            self.add_state(f"{self._state_prefix}_{suffix}", default=[], dist_reduce_fx="cat")

    def update(self, preds: list[Tensor] | Tensor, target: list[Tensor] | Tensor) -> None:
        """``preds``: per-video ``(N, 3)`` ``[score, start, end]``; ``target``: per-video ``(M, 2)``."""
        preds_list = _as_video_list(preds, 3, "preds")
        target_list = _as_video_list(target, 2, "target")
        if len(preds_list) != len(target_list):
            raise ValueError(f"preds has {len(preds_list)} videos but target has {len(target_list)}")
        if not preds_list:
            return
        kept, counts = [], []
        for video_preds, video_target in zip(preds_list, target_list):
            order = torch.argsort(video_preds[:, 0], descending=True, stable=True)
            video_preds = video_preds[order]
            if self._keep_top is not None:
                video_preds = video_preds[: self._keep_top]
            kept.append(video_preds.reshape(-1))
            counts.append(torch.tensor([len(video_preds), len(video_target)], dtype=torch.float32))
        dtype = self.dtype
        getattr(self, f"{self._state_prefix}_preds").append(torch.cat(kept).to(self.device, dtype))
        getattr(self, f"{self._state_prefix}_target").append(
            torch.cat([t.reshape(-1) for t in target_list]).to(self.device, dtype))
        getattr(self, f"{self._state_prefix}_counts").append(torch.cat(counts).to(self.device, dtype))

    def videos(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[(preds (N,3) score-sorted, gt (M,2)), ...]`` float64 arrays, one per video seen."""
        preds = _flat(getattr(self, f"{self._state_prefix}_preds")).double().cpu().numpy().reshape(-1, 3)
        target = _flat(getattr(self, f"{self._state_prefix}_target")).double().cpu().numpy().reshape(-1, 2)
        counts = np.rint(_flat(getattr(self, f"{self._state_prefix}_counts")).double().cpu().numpy()).astype(np.int64)
        counts = counts.reshape(-1, 2)
        if counts[:, 0].sum() != len(preds) or counts[:, 1].sum() != len(target):
            raise RuntimeError("temporal metric state is inconsistent: per-video counts do not match the rows")
        pred_splits = np.split(preds, np.cumsum(counts[:, 0])[:-1]) if len(counts) else []
        target_splits = np.split(target, np.cumsum(counts[:, 1])[:-1]) if len(counts) else []
        return list(zip(pred_splits, target_splits))


class TemporalAP(_TemporalDetectionMetric):
    """LAV-DF average precision (see module docstring).

    Args:
        iou_thresholds: thresholds reported as ``ap@t`` (LAV-DF: 0.5, 0.75, 0.95; ForgeryNet:
            0.5, 0.75, 0.9).
        map_thresholds: thresholds ``map`` averages over (0.50:0.05:0.95).
        lavdf_exact: leave out the first recall step as LAV-DF does (see module docstring).
    """

    _state_prefix = "tap"

    def __init__(self, iou_thresholds: Sequence[float] = (0.5, 0.75, 0.95),
                 map_thresholds: Sequence[float] = LAVDF_IOU_THRESHOLDS, lavdf_exact: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.iou_thresholds = tuple(float(t) for t in iou_thresholds)
        self.map_thresholds = tuple(float(t) for t in map_thresholds)
        self.lavdf_exact = lavdf_exact

    def compute(self) -> dict[str, Tensor]:
        videos = self.videos()
        if sum(len(gt) for _, gt in videos) == 0:
            warnings.warn("TemporalAP: no ground-truth segment seen; AP is undefined, returning nan", stacklevel=2)
        thresholds = list(dict.fromkeys(self.map_thresholds + self.iou_thresholds))
        aps = dict(zip(thresholds, lavdf_average_precision(videos, thresholds, self.lavdf_exact)))
        out = {f"ap@{t:g}": torch.tensor(aps[t], dtype=torch.float32) for t in self.iou_thresholds}
        out["map"] = torch.tensor(float(np.mean([aps[t] for t in self.map_thresholds])), dtype=torch.float32)
        return out


class TemporalAR(_TemporalDetectionMetric):
    """LAV-DF average recall at N proposals per video (see module docstring).

    Args:
        ns: the N of each reported ``ar@N`` (LAV-DF: 10, 20, 50, 100; ForgeryNet: 2, 5).
        iou_thresholds: thresholds each ``ar@N`` averages over (0.50:0.05:0.95).
    """

    _state_prefix = "tar"

    def __init__(self, ns: Sequence[int] = (10, 20, 50, 100), iou_thresholds: Sequence[float] = LAVDF_IOU_THRESHOLDS,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ns = tuple(int(n) for n in ns)
        if not self.ns or min(self.ns) < 1:
            raise ValueError(f"ns must be positive proposal counts, got {ns}")
        self._keep_top = max(self.ns)  # only the top max(N) proposals of a video can ever count
        self.iou_thresholds = tuple(float(t) for t in iou_thresholds)

    def compute(self) -> dict[str, Tensor]:
        videos = self.videos()
        if sum(len(gt) for _, gt in videos) == 0:
            warnings.warn("TemporalAR: no ground-truth segment seen; AR is undefined, returning nan", stacklevel=2)
        recall = lavdf_average_recall(videos, self.ns, self.iou_thresholds)
        return {f"ar@{n}": torch.tensor(float(recall[i].mean()), dtype=torch.float32) for i, n in enumerate(self.ns)}
