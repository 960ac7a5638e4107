"""Temporal forgery localization head, OmniFD's ``TemporalHead`` (official code:
github.com/haotianll/OmniFD, ``mmpretrain/models/omnifd/head/temporal.py``): an anchor-free,
ActionFormer-style detector of fake segments in a clip.

Pipeline (paper sizes are the defaults):

1. the last backbone map ``(B, C, T', h, w)`` is averaged over ``h, w`` and linearly
   resampled along time to ``window_size`` positions (32), then multiplied by the frame mask
   and zero-padded to a multiple of the coarsest stride;
2. :class:`TemporalProj`: conv1d k3 (C→512) + LayerNorm + ReLU, one stem
   :class:`TemporalTransformerBlock` (global masked multi-head convolutional self-attention,
   4 heads, MLP ×4, per-channel-scaled drop-path 0.1) and ONE stride-2 block applied
   ``num_levels - 1`` = 5 times with shared weights (OmniFD's quirk;
   ``share_branch_weights=False`` gives ActionFormer's separate blocks), so 6 levels of
   lengths W, W/2, ..., W/32;
3. :class:`TemporalFPN`: a LayerNorm per level;
4. :class:`TemporalRPNHead`, shared by all levels: cls and reg branches of 2× (conv1d k3 +
   LN + ReLU); the cls branch is fused with the neck's latents by a :class:`FuseBlock`
   (positions query ``[projected latents, positions]``, one Perceiver cross-attention + FF,
   residual); ``cls_head`` conv1d k3 → 1 logit (prior 0.01), ``reg_head`` conv1d k3 → 2
   distances through ReLU(per-level learnable scale).

Points sit at ``i * stride`` (strides 1, 2, ..., 32) in window units, where window position
``u`` is centred on clip time ``(u + 0.5) * T / W`` frames. Targets: ActionFormer's centre
sampling (radius 1.5 strides) and regression ranges ``[(0,4), (4,8), ..., (64, 1e4)]``; a
point inside several segments takes the shortest. Losses: sigmoid focal loss (α 0.25, γ 2,
summed over valid points) and 1-D DIoU loss (summed over positive points), both divided by
an EMA of the number of positives (buffer ``loss_normalizer``, init 100, momentum 0.9,
updated in training only).

Batch keys read:

- ``video`` (B, 3, T, H, W): only for the number of clip frames T (else ``frame_mask`` or the
  length of ``meta[i]["frame_indices"]``);
- ``segments`` float (B, S, 2): fake segments ``[start, end)`` in clip-frame units (0..T),
  zero-padded; ``num_segments`` long (B,): how many rows are real (without it, rows with
  ``end > start`` are). Without ``segments`` ``loss`` returns ``{}`` and ``metric_inputs`` None;
- ``frame_mask`` bool (B, T), optional: real (non-padding) frames;
- ``meta``: per-sample dicts with ``frame_indices`` (original frame number of each clip frame),
  ``fps`` and optionally ``duration`` (seconds) — used to report seconds.

Outputs of ``forward``: ``cls_logits`` (B, P), ``offsets`` (B, P, 2) (distances in stride
units), ``point_mask`` (B, P) bool, ``points`` (P, 4) ``[position, range_lo, range_hi, stride]``
over the levels concatenated, and the scalars ``window_size`` and ``num_frames``.

One file of about 700 lines on purpose: the pyramid, the label assignment, the loss with its
running normaliser, the decoding and the soft-NMS share the point layout above and are only
correct together (the official head is one module too).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection

from polyvision.heads.base import Head
from polyvision.models.layers import FeedForward, LatentCrossAttention

__all__ = [
    "TemporalLocalizationHead", "TemporalProj", "TemporalFPN", "TemporalRPNHead", "TemporalTransformerBlock",
    "MaskedMHCA", "FuseBlock", "ChannelLayerNorm", "AffineDropPath", "default_regression_ranges", "temporal_points",
    "assign_targets", "sigmoid_focal_loss", "diou_loss_1d", "soft_nms_1d", "clip_to_video_frames",
]


# ----------------------------------------------------------------------------- building blocks
class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a ``(B, C, T)`` tensor."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class AffineDropPath(nn.Module):
    """Per-channel learnable scale (init ``init_scale``) followed by per-sample stochastic depth."""

    def __init__(self, dim: int, drop_prob: float = 0.0, init_scale: float = 1e-4):
        super().__init__()
        self.scale = nn.Parameter(torch.full((1, dim, 1), float(init_scale)))
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        x = x * self.scale
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty(x.shape[0], 1, 1).bernoulli_(keep)
        return x * mask / keep


def _downsample_mask(mask: Tensor, stride: int) -> Tensor:
    return mask[:, ::stride] if stride > 1 else mask


class MaskedMHCA(nn.Module):
    """Global masked multi-head convolutional self-attention: queries, keys and values each
    go through a depthwise conv1d (k3, or k=stride+1 with ``stride``) + LayerNorm, then a
    1×1 projection; padded keys are masked out and padded outputs zeroed."""

    def __init__(self, dim: int, heads: int, stride: int = 1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"embed dim {dim} is not divisible by {heads} heads")
        self.heads, self.stride = heads, stride
        kernel = stride + 1 if stride > 1 else 3
        self.q_conv, self.k_conv, self.v_conv = (
            nn.Conv1d(dim, dim, kernel, stride, kernel // 2, groups=dim, bias=False) for _ in range(3))
        self.q_norm, self.k_norm, self.v_norm = (ChannelLayerNorm(dim) for _ in range(3))
        self.query, self.key, self.value = (nn.Conv1d(dim, dim, 1) for _ in range(3))
        self.proj = nn.Conv1d(dim, dim, 1)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        out_mask = _downsample_mask(mask, self.stride)
        m = out_mask[:, None].to(x.dtype)
        q = self.query(self.q_norm(self.q_conv(x) * m))
        k = self.key(self.k_norm(self.k_conv(x) * m))
        v = self.value(self.v_norm(self.v_conv(x) * m))
        batch, dim, length = q.shape

        def split(t: Tensor) -> Tensor:
            return t.view(batch, self.heads, dim // self.heads, length).transpose(2, 3)

        # A sample with no valid position attends everywhere (its output is zeroed anyway).
        keys = out_mask | ~out_mask.any(dim=1, keepdim=True)
        out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=keys[:, None, None, :])
        out = out.transpose(2, 3).reshape(batch, dim, length) * m
        return self.proj(out) * m, out_mask


class TemporalTransformerBlock(nn.Module):
    """Pre-norm transformer block on ``(B, C, T)``: masked MHCA and a ×``mlp_ratio`` MLP, each
    branch through an :class:`AffineDropPath`; with ``stride`` 2 it halves T (max-pool skip)."""

    def __init__(self, dim: int, heads: int, stride: int = 1, mlp_ratio: int = 4, drop_path: float = 0.1):
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim)
        self.attn = MaskedMHCA(dim, heads, stride)
        self.skip: nn.Module = (nn.MaxPool1d(stride + 1, stride, (stride + 1) // 2) if stride > 1 else nn.Identity())
        self.norm2 = ChannelLayerNorm(dim)
        self.mlp = nn.Sequential(nn.Conv1d(dim, dim * mlp_ratio, 1), nn.GELU(), nn.Conv1d(dim * mlp_ratio, dim, 1))
        self.drop_path_attn = AffineDropPath(dim, drop_path)
        self.drop_path_mlp = AffineDropPath(dim, drop_path)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        out, out_mask = self.attn(self.norm1(x), mask)
        m = out_mask[:, None].to(x.dtype)
        out = self.skip(x) * m + self.drop_path_attn(out)
        out = out + self.drop_path_mlp(self.mlp(self.norm2(out)) * m)
        return out, out_mask


class TemporalProj(nn.Module):
    """Embedding conv + stem block + stride-2 branch blocks → ``num_levels`` feature levels."""

    def __init__(self, in_channels: int, dim: int = 512, heads: int = 4, num_levels: int = 6, mlp_ratio: int = 4,
                 drop_path: float = 0.1, share_branch_weights: bool = True):
        super().__init__()
        self.embed = nn.Conv1d(in_channels, dim, 3, padding=1, bias=False)
        self.embed_norm = ChannelLayerNorm(dim)
        self.stem = TemporalTransformerBlock(dim, heads, 1, mlp_ratio, drop_path)
        self.num_levels = num_levels
        self.share_branch_weights = share_branch_weights
        num_branch = 0 if num_levels == 1 else (1 if share_branch_weights else num_levels - 1)
        self.branch = nn.ModuleList(TemporalTransformerBlock(dim, heads, 2, mlp_ratio, drop_path)
                                    for _ in range(num_branch))

    def forward(self, x: Tensor, mask: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        m = mask[:, None].to(x.dtype)
        x = F.relu(self.embed_norm(self.embed(x) * m))
        x, mask = self.stem(x, mask)
        levels, masks = [x], [mask]
        for level in range(1, self.num_levels):
            block = self.branch[0 if self.share_branch_weights else level - 1]
            x, mask = block(x, mask)
            levels.append(x)
            masks.append(mask)
        return levels, masks


class TemporalFPN(nn.Module):
    """OmniFD's "FPN": one LayerNorm per level."""

    def __init__(self, dim: int, num_levels: int):
        super().__init__()
        self.norms = nn.ModuleList(ChannelLayerNorm(dim) for _ in range(num_levels))

    def forward(self, levels: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
        return [norm(x) * m[:, None].to(x.dtype) for norm, x, m in zip(self.norms, levels, masks)]


class FuseBlock(nn.Module):
    """Temporal positions read the neck's latents: the latents are projected to ``dim``
    (Linear + LayerNorm) and positions query ``[projected latents, positions]`` through one
    Perceiver-style cross-attention (``LatentCrossAttention``) + feed-forward, both residual.
    Padded positions are zeroed but stay visible as keys (the reused attention masks only
    the token part). ``final_norm``: a LayerNorm after the feed-forward, as the release's
    ``FuseBlock.norm`` (``mmpretrain/models/omnifd/head/temporal.py``)."""

    def __init__(self, dim: int, latent_channels: int, heads: int = 8, dim_head: int = 64, ff_mult: int = 4,
                 final_norm: bool = False):
        super().__init__()
        self.latent_proj = nn.Sequential(nn.Linear(latent_channels, dim), nn.LayerNorm(dim))
        self.attn = LatentCrossAttention(dim, heads, dim_head)
        self.ff = FeedForward(dim, ff_mult)
        self.norm = nn.LayerNorm(dim) if final_norm else None

    def forward(self, x: Tensor, latents: Tensor, mask: Tensor) -> Tensor:
        tokens = self.latent_proj(latents.transpose(1, 2).to(x.dtype))  # (B, L, C)
        queries = x.transpose(1, 2)  # (B, T, C)
        queries = self.attn(tokens, queries) + queries
        queries = self.ff(queries) + queries
        if self.norm is not None:
            queries = self.norm(queries)
        return queries.transpose(1, 2) * mask[:, None].to(x.dtype)


class TemporalRPNHead(nn.Module):
    """Classification and regression branches shared by all levels (see module docstring)."""

    def __init__(self, dim: int, num_levels: int, num_convs: int = 2, latent_channels: int | None = None,
                 fuse_heads: int = 8, fuse_dim_head: int = 64, fuse_ff_mult: int = 4, prior_prob: float = 0.01,
                 fuse_norm: bool = False):
        super().__init__()

        def branch() -> nn.ModuleList:
            return nn.ModuleList(nn.ModuleList([nn.Conv1d(dim, dim, 3, padding=1, bias=False), ChannelLayerNorm(dim)])
                                 for _ in range(num_convs))

        self.cls_convs, self.reg_convs = branch(), branch()
        self.fuse = (FuseBlock(dim, latent_channels, fuse_heads, fuse_dim_head, fuse_ff_mult, fuse_norm)
                     if latent_channels is not None else None)
        self.cls_head = nn.Conv1d(dim, 1, 3, padding=1)
        self.reg_head = nn.Conv1d(dim, 2, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(num_levels))  # ActionFormer's per-level Scale
        nn.init.constant_(self.cls_head.bias, -math.log((1.0 - prior_prob) / prior_prob))
        nn.init.zeros_(self.reg_head.bias)

    @staticmethod
    def _run(convs: nn.ModuleList, x: Tensor, m: Tensor) -> Tensor:
        for conv, norm in convs:
            x = F.relu(norm(conv(x) * m))
        return x

    def forward(self, levels: list[Tensor], masks: list[Tensor], latents: Tensor | None) -> tuple[Tensor, Tensor]:
        logits, offsets = [], []
        for level, (x, mask) in enumerate(zip(levels, masks)):
            m = mask[:, None].to(x.dtype)
            cls = self._run(self.cls_convs, x, m)
            if self.fuse is not None and latents is not None:
                cls = self.fuse(cls, latents, mask)
            logits.append((self.cls_head(cls) * m)[:, 0])
            reg = self._run(self.reg_convs, x, m)
            offsets.append(F.relu(self.reg_head(reg) * self.scales[level]) * m)
        return torch.cat(logits, dim=1), torch.cat(offsets, dim=2).transpose(1, 2)


# ----------------------------------------------------------------------------- points and targets
def default_regression_ranges(num_levels: int) -> list[tuple[float, float]]:
    """``[(0,4), (4,8), (8,16), ..., (2**num_levels, 1e4)]``: OmniFD's ranges for 6 levels."""
    ranges = [(0.0 if level == 0 else float(2 ** (level + 1)), float(2 ** (level + 2))) for level in range(num_levels)]
    ranges[-1] = (ranges[-1][0], 1e4)
    return ranges


def temporal_points(length: int, num_levels: int, regression_ranges: list[tuple[float, float]],
                    device: torch.device | None = None) -> Tensor:
    """``(P, 4)`` rows ``[position, range_lo, range_hi, stride]``, level by level, for a padded
    window of ``length`` positions: level l has stride ``2**l`` and ``ceil(length / 2**l)`` points
    at ``i * 2**l``."""
    rows, level_length = [], length
    for level in range(num_levels):
        stride = 2 ** level
        positions = torch.arange(level_length, device=device, dtype=torch.float32) * stride
        lo, hi = regression_ranges[level]
        rows.append(torch.stack([positions, torch.full_like(positions, lo), torch.full_like(positions, hi),
                                 torch.full_like(positions, float(stride))], dim=1))
        level_length = (level_length + 1) // 2
    return torch.cat(rows)


def assign_targets(points: Tensor, segments: Tensor, center_radius: float = 1.5) -> tuple[Tensor, Tensor]:
    """Label the points of one sample against its segments ``(G, 2)`` (point-grid units).

    A point is positive for a segment when it lies inside the segment's centre region
    (``center ± center_radius * stride``, cut to the segment; the whole segment when the
    radius is 0) and its larger distance to the boundaries falls in the level's regression
    range (inclusive). Among several segments it takes the shortest. Returns ``cls`` (P,)
    in {0, 1} and ``reg`` (P, 2) = (left, right) distances divided by the stride (0 for
    negatives)."""
    num_points = points.shape[0]
    if segments.numel() == 0:
        return points.new_zeros(num_points), points.new_zeros(num_points, 2)
    position, lo, hi, stride = (points[:, i:i + 1] for i in range(4))
    start, end = segments[None, :, 0], segments[None, :, 1]
    left, right = position - start, end - position  # (P, G)
    if center_radius > 0:
        center = 0.5 * (start + end)
        inside = torch.minimum(position - torch.maximum(center - center_radius * stride, start),
                               torch.minimum(center + center_radius * stride, end) - position) > 0
    else:
        inside = torch.minimum(left, right) > 0
    farthest = torch.maximum(left, right)
    in_range = (farthest >= lo) & (farthest <= hi)
    lengths = (end - start).expand(num_points, -1)
    lengths = torch.where(inside & in_range, lengths, torch.full_like(lengths, float("inf")))
    shortest, index = lengths.min(dim=1)
    positive = torch.isfinite(shortest)
    rows = torch.arange(num_points, device=points.device)
    reg = torch.stack([left[rows, index], right[rows, index]], dim=1) / points[:, 3:4]
    reg = torch.where(positive[:, None], reg, torch.zeros_like(reg))
    return positive.to(points.dtype), reg


# ----------------------------------------------------------------------------- losses
def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Element-wise sigmoid focal loss (RetinaNet), unreduced."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


def diou_loss_1d(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """Element-wise 1-D DIoU loss on ``(N, 2)`` (left, right) distances from the same point:
    ``1 - IoU + (centre distance / enclosing length)**2``."""
    lp, rp = pred[:, 0], pred[:, 1]
    lg, rg = target[:, 0], target[:, 1]
    inter = torch.minimum(lp, lg) + torch.minimum(rp, rg)
    union = (lp + rp) + (lg + rg) - inter
    iou = inter / union.clamp(min=eps)
    enclosing = torch.maximum(lp, lg) + torch.maximum(rp, rg)
    center_distance = 0.5 * (rp - lp - rg + lg)
    return 1.0 - iou + (center_distance / enclosing.clamp(min=eps)) ** 2


# ----------------------------------------------------------------------------- post-processing
def _iou_one_to_many(segment: Tensor, segments: Tensor) -> Tensor:
    inter = (torch.minimum(segment[1], segments[:, 1]) - torch.maximum(segment[0], segments[:, 0])).clamp(min=0)
    union = (segment[1] - segment[0]) + (segments[:, 1] - segments[:, 0]) - inter
    return inter / union.clamp(min=1e-8)


def soft_nms_1d(segments: Tensor, scores: Tensor, sigma: float = 0.7, min_score: float = 1e-3,
                max_segments: int = 100) -> tuple[Tensor, Tensor]:
    """Gaussian soft-NMS on 1-D segments: repeatedly keep the highest-scoring segment and
    multiply every remaining score by ``exp(-IoU**2 / sigma)`` (Bodla et al.; the decay of
    ActionFormer's ``method=2``), dropping scores at or below ``min_score``; stops after
    ``max_segments``. Returns the kept segments and their decayed scores, by score."""
    scores = scores.detach().float().clone()
    segments = segments.detach().float()
    alive = scores > min_score
    kept: list[Tensor] = []
    while len(kept) < max_segments and bool(alive.any()):
        best = torch.where(alive, scores, torch.full_like(scores, -1.0)).argmax()
        kept.append(best)
        alive[best] = False
        decay = torch.exp(-_iou_one_to_many(segments[best], segments) ** 2 / sigma)
        scores = torch.where(alive, scores * decay, scores)
        alive &= scores > min_score
    if not kept:
        return segments.new_zeros(0, 2), scores.new_zeros(0)
    index = torch.stack(kept)
    return segments[index], scores[index]


def clip_to_video_frames(clip_frames: Tensor, frame_indices: list[int] | Tensor | None) -> Tensor:
    """Map clip-frame positions (continuous, clip frame k spans [k, k+1)) to original video
    frame numbers by linear interpolation of ``frame_indices`` (the original index of each
    clip frame), extrapolating with the first/last step outside [0, len - 1]; identity when
    ``frame_indices`` is empty or None."""
    if frame_indices is None or len(frame_indices) == 0:
        return clip_frames.double()
    table = torch.as_tensor(frame_indices, dtype=torch.float64, device=clip_frames.device).reshape(-1)
    n = table.numel()
    step = (table[-1] - table[0]) / (n - 1) if n > 1 else table.new_tensor(1.0)
    table = torch.cat([table, (table[-1] + step).reshape(1)])  # where the last clip frame ends
    position = clip_frames.double()
    index = position.floor().clamp(0, n - 1).long()
    fraction = position - index.double()
    return table[index] + fraction * (table[index + 1] - table[index])


def _union_length(segments: Tensor) -> float:
    if segments.numel() == 0:
        return 0.0
    ordered = segments[segments[:, 0].argsort()].tolist()
    total, (current_start, current_end) = 0.0, ordered[0]
    for start, end in ordered[1:]:
        if start > current_end:
            total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    return total + max(current_end - current_start, 0.0)


# ----------------------------------------------------------------------------- the head
class TemporalLocalizationHead(Head):
    """Anchor-free temporal localization of fake segments (see module docstring).

    Args:
        window_size: positions the clip is resampled to in training (OmniFD: 32; LAV-DF: 512).
        eval_window_size: positions at validation/test/predict (OmniFD ForgeryNet test: 64);
            ``None`` uses ``window_size``. Regression ranges are in window units either way.
        embed_dim: width of the temporal transformer and RPN head (512).
        num_heads: heads of the masked self-attention (4).
        mlp_ratio: transformer MLP expansion (4).
        drop_path: stochastic depth of the transformer blocks (0.1).
        num_levels: pyramid levels, strides ``2**l`` (6).
        share_branch_weights: one stride-2 block reused for every level (OmniFD) or one per
            level (ActionFormer).
        head_convs: conv + LN + ReLU layers per RPN branch (2).
        fuse_heads, fuse_dim_head, fuse_ff_mult: the FuseBlock's cross-attention (8 × 64) and
            feed-forward (×4).
        fuse_norm: end the FuseBlock with a LayerNorm, as the release does (true in the paper
            configs; false keeps checkpoints written before it was added loadable).
        regression_ranges: per-level ``[lo, hi]`` of the larger boundary distance (window
            units); default ``[(0,4), (4,8), ..., (64, 1e4)]``.
        center_sample_radius: centre sampling radius in strides (1.5; 0 disables it).
        focal_alpha, focal_gamma: focal loss (0.25, 2).
        normalizer_init, normalizer_momentum: EMA of the number of positives (100, 0.9).
        prior_prob: initial foreground probability of ``cls_head`` (0.01).
        nms_sigma: Gaussian soft-NMS sigma (0.7); max_segments: segments kept per clip (100);
        min_score: scores at or below are dropped (1e-3); pre_nms_topk: candidates per level;
        min_duration: candidates not longer than this (window units) are dropped before NMS
            (ActionFormer's 0.05; untrained heads otherwise emit zero-length segments).
        fake_threshold: score from which a segment counts towards ``fake_fraction`` (0.5).
        ap_thresholds: IoU thresholds reported as ``ap@t`` (LAV-DF 0.5/0.75/0.95; ForgeryNet 0.5/0.75/0.9).
        ar_ns: the N of ``ar@N`` (LAV-DF 10/20/50/100; ForgeryNet 2/5).
        lavdf_exact_ap: reproduce LAV-DF's AP curve exactly (see ``metrics.temporal``).
    """

    def __init__(
        self,
        window_size: int = 32,
        eval_window_size: int | None = None,
        embed_dim: int = 512,
        num_heads: int = 4,
        mlp_ratio: int = 4,
        drop_path: float = 0.1,
        num_levels: int = 6,
        share_branch_weights: bool = True,
        head_convs: int = 2,
        fuse_heads: int = 8,
        fuse_dim_head: int = 64,
        fuse_ff_mult: int = 4,
        fuse_norm: bool = False,
        regression_ranges: list[list[float]] | None = None,
        center_sample_radius: float = 1.5,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        normalizer_init: float = 100.0,
        normalizer_momentum: float = 0.9,
        prior_prob: float = 0.01,
        nms_sigma: float = 0.7,
        max_segments: int = 100,
        min_score: float = 1e-3,
        pre_nms_topk: int = 2000,
        min_duration: float = 0.05,
        fake_threshold: float = 0.5,
        ap_thresholds: list[float] | tuple[float, ...] = (0.5, 0.75, 0.95),
        ar_ns: list[int] | tuple[int, ...] = (10, 20, 50, 100),
        lavdf_exact_ap: bool = True,
    ):
        super().__init__()
        self.window_size = int(window_size)
        self.eval_window_size = int(eval_window_size) if eval_window_size else None
        self.embed_dim, self.num_heads, self.mlp_ratio, self.drop_path = embed_dim, num_heads, mlp_ratio, drop_path
        self.num_levels = int(num_levels)
        self.share_branch_weights = share_branch_weights
        self.head_convs = head_convs
        self.fuse_heads, self.fuse_dim_head, self.fuse_ff_mult = fuse_heads, fuse_dim_head, fuse_ff_mult
        self.fuse_norm = bool(fuse_norm)
        ranges = regression_ranges if regression_ranges is not None else default_regression_ranges(self.num_levels)
        self.regression_ranges = [(float(lo), float(hi)) for lo, hi in ranges]
        if len(self.regression_ranges) != self.num_levels:
            raise ValueError(f"{len(self.regression_ranges)} regression ranges for {self.num_levels} levels")
        self.center_sample_radius = float(center_sample_radius)
        self.focal_alpha, self.focal_gamma = float(focal_alpha), float(focal_gamma)
        self.normalizer_momentum = float(normalizer_momentum)
        self.prior_prob = prior_prob
        self.nms_sigma, self.max_segments, self.min_score = float(nms_sigma), int(max_segments), float(min_score)
        self.pre_nms_topk = int(pre_nms_topk)
        self.min_duration = float(min_duration)
        self.fake_threshold = float(fake_threshold)
        self.ap_thresholds = tuple(float(t) for t in ap_thresholds)
        self.ar_ns = tuple(int(n) for n in ar_ns)
        self.lavdf_exact_ap = lavdf_exact_ap
        self.register_buffer("loss_normalizer", torch.tensor(float(normalizer_init)))
        self.proj: nn.Module | None = None
        self.fpn: nn.Module | None = None
        self.rpn: nn.Module | None = None

    # -------------------------------------------------------------- construction
    def bind(self, feature_channels: list[int], feature_strides: list[int], latent_channels: int | None) -> None:
        self.proj = TemporalProj(feature_channels[-1], self.embed_dim, self.num_heads, self.num_levels,
                                 self.mlp_ratio, self.drop_path, self.share_branch_weights)
        self.fpn = TemporalFPN(self.embed_dim, self.num_levels)
        self.rpn = TemporalRPNHead(self.embed_dim, self.num_levels, self.head_convs, latent_channels, self.fuse_heads,
                                   self.fuse_dim_head, self.fuse_ff_mult, self.prior_prob, self.fuse_norm)

    @property
    def max_stride(self) -> int:
        return 2 ** (self.num_levels - 1)

    def current_window(self) -> int:
        return self.window_size if self.training or self.eval_window_size is None else self.eval_window_size

    def level_lengths(self, window: int) -> list[int]:
        """Points per level for a window of ``window`` positions (after padding)."""
        length = math.ceil(window / self.max_stride) * self.max_stride
        lengths = []
        for _ in range(self.num_levels):
            lengths.append(length)
            length = (length + 1) // 2
        return lengths

    @staticmethod
    def num_clip_frames(batch: dict[str, Any]) -> int:
        video = batch.get("video")
        if isinstance(video, Tensor) and video.dim() == 5:
            return int(video.shape[2])
        frame_mask = batch.get("frame_mask")
        if isinstance(frame_mask, Tensor) and frame_mask.dim() == 2:
            return int(frame_mask.shape[1])
        meta = batch.get("meta")
        if meta and isinstance(meta[0], dict) and meta[0].get("frame_indices") is not None:
            return len(meta[0]["frame_indices"])
        raise ValueError("TemporalLocalizationHead needs the clip length: batch['video'], 'frame_mask' or "
                         "meta['frame_indices']")

    # -------------------------------------------------------------- forward
    def forward(self, features: dict[str, Any], batch: dict[str, Any]) -> dict[str, Tensor]:
        if self.proj is None:
            raise RuntimeError("TemporalLocalizationHead.bind() was not called")
        feature_map = features["maps"][-1]
        if feature_map.dim() != 5:
            raise ValueError("TemporalLocalizationHead takes clip features (B,C,T,H,W); images go to other heads")
        num_frames = self.num_clip_frames(batch)
        window = self.current_window()
        x = feature_map.mean(dim=(3, 4))  # (B, C, T')
        x = F.interpolate(x, size=window, mode="linear", align_corners=False)
        frame_mask = batch.get("frame_mask")
        if isinstance(frame_mask, Tensor):
            mask = F.interpolate(frame_mask[:, None].float(), size=window, mode="nearest")[:, 0] > 0
        else:
            mask = torch.ones(x.shape[0], window, dtype=torch.bool, device=x.device)
        padded = math.ceil(window / self.max_stride) * self.max_stride
        if padded > window:
            x = F.pad(x, (0, padded - window))
            mask = F.pad(mask, (0, padded - window), value=False)
        x = x * mask[:, None].to(x.dtype)
        levels, masks = self.proj(x, mask)
        levels = self.fpn(levels, masks)
        logits, offsets = self.rpn(levels, masks, features.get("latents"))
        points = temporal_points(padded, self.num_levels, self.regression_ranges, device=x.device)
        return {"cls_logits": logits, "offsets": offsets, "point_mask": torch.cat(masks, dim=1), "points": points,
                "window_size": torch.tensor(window, device=x.device),
                "num_frames": torch.tensor(num_frames, device=x.device)}

    # -------------------------------------------------------------- loss
    @staticmethod
    def real_segments(batch: dict[str, Any], index: int) -> Tensor:
        """The real rows of ``batch['segments'][index]`` (clip-frame units)."""
        rows = batch["segments"][index].float().reshape(-1, 2)
        count = batch.get("num_segments")
        if isinstance(count, Tensor):
            return rows[: int(count[index])]
        return rows[rows[:, 1] > rows[:, 0]]

    def targets(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """``cls`` (B, P) and ``reg`` (B, P, 2) targets of a batch with ``segments``."""
        points = outputs["points"].float()
        window, num_frames = float(outputs["window_size"]), float(outputs["num_frames"])
        cls_targets, reg_targets = [], []
        for index in range(outputs["cls_logits"].shape[0]):
            segments = self.real_segments(batch, index).to(points.device).clamp(0, num_frames)
            segments = segments[segments[:, 1] > segments[:, 0]]
            grid = segments * (window / num_frames) - 0.5  # clip frames -> point grid
            cls, reg = assign_targets(points, grid, self.center_sample_radius)
            cls_targets.append(cls)
            reg_targets.append(reg)
        return torch.stack(cls_targets), torch.stack(reg_targets)

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        if not isinstance(batch.get("segments"), Tensor):
            return {}
        cls_targets, reg_targets = self.targets(outputs, batch)
        valid = outputs["point_mask"]
        positive = valid & (cls_targets > 0)
        num_positive = float(positive.sum())
        if self.training:
            self.loss_normalizer.mul_(self.normalizer_momentum).add_(
                (1 - self.normalizer_momentum) * max(num_positive, 1.0))
        normalizer = self.loss_normalizer.clamp(min=1e-6)
        logits, offsets = outputs["cls_logits"].float(), outputs["offsets"].float()
        focal = sigmoid_focal_loss(logits[valid], cls_targets[valid], self.focal_alpha, self.focal_gamma).sum()
        if num_positive > 0:
            diou = diou_loss_1d(offsets[positive], reg_targets[positive]).sum()
        else:
            diou = 0.0 * offsets.sum()  # keeps the regression branch in the graph (DDP)
        return {"focal": focal / normalizer, "diou": diou / normalizer}

    # -------------------------------------------------------------- decoding
    def decode(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Per sample: soft-NMS'd ``scores`` (K,), ``segments`` (K, 2) in seconds (or frames
        without fps), plus the clip's span in the same unit and the unit's name."""
        probabilities = outputs["cls_logits"].detach().float().sigmoid()
        offsets = outputs["offsets"].detach().float()
        valid = outputs["point_mask"]
        points = outputs["points"].float()
        window, num_frames = float(outputs["window_size"]), float(outputs["num_frames"])
        level_ids = torch.log2(points[:, 3]).round().long()
        frame_mask = batch.get("frame_mask")
        meta = batch.get("meta") or []
        results = []
        for index in range(probabilities.shape[0]):
            keep = valid[index] & (probabilities[index] > self.min_score)
            candidates = []
            for level in range(self.num_levels):
                ids = torch.nonzero(keep & (level_ids == level)).flatten()
                if ids.numel() > self.pre_nms_topk:
                    ids = ids[probabilities[index, ids].topk(self.pre_nms_topk).indices]
                candidates.append(ids)
            ids = torch.cat(candidates)
            position, stride = points[ids, 0], points[ids, 3]
            grid = torch.stack([position - offsets[index, ids, 0] * stride,
                                position + offsets[index, ids, 1] * stride], dim=1)
            long_enough = (grid[:, 1] - grid[:, 0]) > self.min_duration
            grid, ids = grid[long_enough], ids[long_enough]
            clip_segments = (grid + 0.5) * (num_frames / window)  # point grid -> clip frames
            clip_segments, scores = soft_nms_1d(clip_segments, probabilities[index, ids], self.nms_sigma,
                                                self.min_score, self.max_segments)
            valid_frames = num_frames
            if isinstance(frame_mask, Tensor):
                valid_frames = float(frame_mask[index].sum())
            clip_segments = clip_segments.clamp(0.0, valid_frames)
            info = meta[index] if index < len(meta) and isinstance(meta[index], dict) else {}
            frame_indices = info.get("frame_indices")
            if frame_indices is not None and valid_frames < len(frame_indices):
                frame_indices = list(frame_indices)[: max(int(valid_frames), 1)]
            fps = info.get("fps")
            scale = float(fps) if fps else 1.0
            segments = clip_to_video_frames(clip_segments, frame_indices) / scale
            span = clip_to_video_frames(torch.tensor([0.0, valid_frames]), frame_indices) / scale
            duration = info.get("duration") if fps else None
            if duration is not None:
                segments = segments.clamp(0.0, float(duration))
                span = span.clamp(0.0, float(duration))
            results.append({"scores": scores.cpu(), "segments": segments.float().cpu(), "span": span.float(),
                            "unit": "seconds" if fps else "frames", "frame_indices": frame_indices, "scale": scale})
        return results

    def predict(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Per sample ``{"segments": [[start, end], ...], "scores": [...], "fake_fraction", "unit"}``:
        segments in seconds of the original video (frames when ``fps`` is unknown), by score;
        ``fake_fraction`` is the fraction of the clip's span covered by segments scoring at
        least ``fake_threshold``."""
        results = []
        for decoded in self.decode(outputs, batch):
            start, end = (float(v) for v in decoded["span"])
            confident = decoded["segments"][decoded["scores"] >= self.fake_threshold].double()
            covered = _union_length(confident.clamp(start, end)) if end > start else 0.0
            results.append({
                "segments": [[round(float(s), 4), round(float(e), 4)] for s, e in decoded["segments"].tolist()],
                "scores": [round(float(s), 6) for s in decoded["scores"].tolist()],
                "fake_fraction": round(covered / (end - start), 6) if end > start else 0.0,
                "unit": decoded["unit"],
            })
        return results

    # -------------------------------------------------------------- whole videos
    def merge_windows(self, predictions: list[dict[str, Any]]) -> dict[str, Any]:
        """A video's segments: every window's segments (already in the video's seconds), then
        Gaussian soft-NMS across windows, so a segment seen by overlapping windows is kept once."""
        segments = [s for p in predictions for s in p["segments"]]
        scores = [v for p in predictions for v in p["scores"]]
        unit = predictions[0].get("unit", "seconds") if predictions else "seconds"
        if not segments:
            return {"segments": [], "scores": [], "unit": unit, "windows": len(predictions)}
        kept, kept_scores = soft_nms_1d(torch.tensor(segments, dtype=torch.float32), torch.tensor(scores),
                                        self.nms_sigma, self.min_score, self.max_segments)
        return {"segments": [[round(float(a), 4), round(float(b), 4)] for a, b in kept.tolist()],
                "scores": [round(float(v), 6) for v in kept_scores.tolist()], "unit": unit, "windows": len(predictions)}

    def metric_inputs_from_predictions(self, predictions: list[dict[str, Any]],
                                       targets: list[dict[str, Any]]) -> tuple[list[Tensor], list[Tensor]] | None:
        """Merged predictions against each video's whole ground truth (``segments_seconds``)."""
        if any("segments_seconds" not in t for t in targets):
            return None
        preds = [torch.tensor([[score, *segment] for segment, score in zip(p["segments"], p["scores"])],
                              dtype=torch.float32).reshape(-1, 3) for p in predictions]
        target = [torch.tensor(t["segments_seconds"], dtype=torch.float32).reshape(-1, 2) for t in targets]
        return preds, target

    # -------------------------------------------------------------- metrics
    def metrics(self) -> MetricCollection:
        from polyvision.metrics.temporal import TemporalAP, TemporalAR

        # Dict-valued metrics: the collection names its values <prefix>ap@0.5, ..., map, ar@10, ...
        return MetricCollection({"ap": TemporalAP(iou_thresholds=self.ap_thresholds, lavdf_exact=self.lavdf_exact_ap),
                                 "ar": TemporalAR(ns=self.ar_ns)})

    def metric_inputs(self, outputs: dict[str, Tensor],
                      batch: dict[str, Any]) -> tuple[list[Tensor], list[Tensor]] | None:
        """``(preds, target)``: per-video ``(N, 3)`` ``[score, start, end]`` and ``(M, 2)``
        ``[start, end]`` tensors, in seconds (frames without fps); see ``metrics.temporal``."""
        if not isinstance(batch.get("segments"), Tensor):
            return None
        preds, target = [], []
        for index, decoded in enumerate(self.decode(outputs, batch)):
            preds.append(torch.cat([decoded["scores"][:, None], decoded["segments"]], dim=1))
            segments = self.real_segments(batch, index).detach().cpu()
            target.append((clip_to_video_frames(segments, decoded["frame_indices"]) / decoded["scale"]).float())
        return preds, target
