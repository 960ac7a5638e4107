"""Frame-level video anomaly detection metrics (STATE's protocol: official code
github.com/wyzjack/MRMGA4VAD, ``test.py`` and ``utils.py``).

:class:`FrameAUROC` takes anomaly scores of frames, or of objects within frames, with each
one's frame label, video index and frame index. Several scores for the same (video, frame)
are reduced to their maximum, which is STATE's frame score (the max over the frame's
objects, as in the official ``test.py``); this also makes the result independent of how
samples were split across batches and ranks (a DistributedSampler's padded duplicates change nothing).

``compute()`` returns both protocols (micro vs macro: see
github.com/fjchange/awesome-video-anomaly-detection issue #12):

- ``micro``: ROC AUC over all frames of all videos pooled (STATE, anomalib, most papers);
- ``macro``: the mean over videos of each video's ROC AUC. A video whose frames are all one
  class has no AUC of its own; with ``single_class_videos="pad"`` (default) it gets one
  extra frame of the missing class, scored like a 0 (normal) or 1 (anomalous) after per-video
  min-max scaling, i.e. the video's minimum or maximum score. This is the padding used by
  the macro-AUC papers for Avenue's all-anomalous test videos 8 and 18
  (github.com/lilygeorgescu/AED-SSMTL issue #11, github.com/ristea/sspcab issue #8).
  ``"skip"`` leaves such videos out of the mean instead.

Optional temporal smoothing: ``smoothing_sigma > 0`` filters each video's frame scores, in
frame order, with a Gaussian (``scipy.ndimage.gaussian_filter1d``, reflect borders) before
both AUROCs. STATE uses none, so it is off by default.
"""
from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from polyvision.metrics.classification import binary_roc_auc

__all__ = ["FrameAUROC", "frame_scores", "macro_auroc"]

SINGLE_CLASS_RULES = ("pad", "skip")


def frame_scores(preds: Tensor, target: Tensor, video: Tensor, frame: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Reduce per-object rows to one row per (video, frame): the maximum score, and the
    frame is anomalous if any row says so. Rows come back sorted by video, then frame."""
    key = torch.stack([video.long(), frame.long()], dim=1)
    unique, inverse = torch.unique(key, dim=0, return_inverse=True)  # sorted lexicographically
    scores = torch.full((len(unique),), float("-inf"), dtype=torch.float64, device=preds.device)
    scores = scores.scatter_reduce(0, inverse, preds.double(), reduce="amax")
    labels = torch.zeros(len(unique), dtype=torch.long, device=preds.device)
    labels = labels.scatter_reduce(0, inverse, target.long(), reduce="amax")
    return scores, labels, unique[:, 0], unique[:, 1]


def smooth(scores: Tensor, videos: Tensor, sigma: float) -> Tensor:
    """Gaussian-filter each video's scores (already in frame order) along time."""
    if sigma <= 0:
        return scores
    from scipy.ndimage import gaussian_filter1d

    out = scores.clone()
    for video in torch.unique(videos):
        rows = (videos == video).nonzero().flatten()
        filtered = gaussian_filter1d(scores[rows].cpu().numpy(), sigma=sigma, mode="reflect")
        out[rows] = torch.from_numpy(filtered).to(out)
    return out


def macro_auroc(scores: Tensor, labels: Tensor, videos: Tensor, single_class_videos: str = "pad") -> Tensor:
    """Mean over videos of the per-video ROC AUC (see the module docstring for one-class videos)."""
    values = []
    for video in torch.unique(videos):
        rows = videos == video
        s, y = scores[rows], labels[rows]
        positives = int(y.sum())
        if positives in (0, len(y)):
            if single_class_videos == "skip":
                continue
            # The missing class enters as the video's extreme score: a normal frame at the
            # minimum (score 0 after min-max scaling) or an anomalous one at the maximum (1).
            pad_label = 0 if positives else 1
            pad_score = s.min() if positives else s.max()
            s = torch.cat([s, pad_score.view(1)])
            y = torch.cat([y, y.new_tensor([pad_label])])
        values.append(binary_roc_auc(s, y))
    if not values:
        return torch.tensor(float("nan"), dtype=torch.float64)
    return torch.stack(values).mean()


class FrameAUROC(Metric):
    """Frame-level ROC AUC, micro and macro (see the module docstring).

    ``update(preds, target, video, frame)``: float scores ``(N,)`` (higher = more anomalous),
    0/1 frame labels ``(N,)``, integer video indices ``(N,)`` and frame indices ``(N,)``.
    ``compute()`` returns ``{"micro": ..., "macro": ...}`` as float32 tensors; nan (with a
    warning) when the pooled frames hold only one class or nothing was seen.

    Args:
        smoothing_sigma: Gaussian smoothing of each video's scores along time, in frames (0: off).
        single_class_videos: ``"pad"`` or ``"skip"``: macro AUROC of videos whose frames are all
            one class.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, smoothing_sigma: float = 0.0, single_class_videos: str = "pad", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if smoothing_sigma < 0:
            raise ValueError(f"smoothing_sigma must be >= 0, got {smoothing_sigma}")
        if single_class_videos not in SINGLE_CLASS_RULES:
            raise ValueError(f"single_class_videos must be one of {SINGLE_CLASS_RULES}, got {single_class_videos!r}")
        self.smoothing_sigma = float(smoothing_sigma)
        self.single_class_videos = single_class_videos
        # Unique state names: MetricCollection's compute groups must never merge this with another metric.
        self.add_state("frame_auroc_preds", default=[], dist_reduce_fx="cat")
        self.add_state("frame_auroc_target", default=[], dist_reduce_fx="cat")
        self.add_state("frame_auroc_video", default=[], dist_reduce_fx="cat")
        self.add_state("frame_auroc_frame", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor, video: Tensor, frame: Tensor) -> None:
        preds = preds.detach().reshape(-1).float()
        tensors = [t.detach().reshape(-1) for t in (target, video, frame)]
        if any(len(t) != len(preds) for t in tensors):
            raise ValueError("preds, target, video and frame must have the same number of elements, got "
                             f"{[len(preds)] + [len(t) for t in tensors]}")
        if bool(torch.isnan(preds).any()):
            raise ValueError("preds contain nan")
        target, video, frame = (t.long() for t in tensors)
        if bool(((target != 0) & (target != 1)).any()):
            raise ValueError("target must contain only 0 (normal) and 1 (anomalous)")
        self.frame_auroc_preds.append(preds)
        self.frame_auroc_target.append(target)
        self.frame_auroc_video.append(video)
        self.frame_auroc_frame.append(frame)

    def frames(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The per-frame (score, label, video, frame) rows the AUROCs are computed on, smoothed."""
        # After a distributed sync the list states arrive as one concatenated tensor.
        if isinstance(self.frame_auroc_preds, list) and not self.frame_auroc_preds:
            empty = torch.zeros(0, dtype=torch.long, device=self.device)
            return empty.double(), empty, empty, empty
        scores, labels, videos, frames = frame_scores(
            dim_zero_cat(self.frame_auroc_preds), dim_zero_cat(self.frame_auroc_target),
            dim_zero_cat(self.frame_auroc_video), dim_zero_cat(self.frame_auroc_frame))
        return smooth(scores, videos, self.smoothing_sigma), labels, videos, frames

    def compute(self) -> dict[str, Tensor]:
        scores, labels, videos, _ = self.frames()
        nan = torch.tensor(float("nan"), device=self.device)
        positives = int(labels.sum())
        if positives in (0, len(labels)):
            kind = "anomalous" if positives else "normal"
            what = f"all {len(labels)} frames are {kind}" if len(labels) else "no frames seen"
            warnings.warn(f"FrameAUROC: {what}; AUROC is undefined, returning nan", stacklevel=2)
            return {"micro": nan, "macro": nan}
        micro = binary_roc_auc(scores, labels).float()
        macro = macro_auroc(scores, labels, videos, self.single_class_videos).float().to(micro.device)
        return {"micro": micro, "macro": macro}
