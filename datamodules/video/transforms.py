"""Clip transforms.

Device transforms run in ``on_after_batch_transfer`` on a clip ``(3, T, H, W)`` or a batch
``(B, 3, T, H, W)``: ``resize``, ``center_crop``, ``random_crop``, ``flip``, ``normalize``.
CPU augmentation (``ClipAugment``) runs albumentations in the DataLoader workers with the
same random parameters for every frame of a clip.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- device transforms


def _batched(video: Tensor) -> tuple[Tensor, bool]:
    if video.ndim == 4:
        return video.unsqueeze(0), True
    if video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"expected a clip (3, T, H, W) or a batch (B, 3, T, H, W), got {tuple(video.shape)}")
    return video, False


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def resize(video: Tensor, size: int | Sequence[int], antialias: bool = True) -> Tensor:
    """Bilinear resize of every frame to ``size`` = (H, W) (an int: square). uint8 stays uint8."""
    batch, single = _batched(video)
    h, w = _pair(size)
    b, c, t, H, W = batch.shape
    if (H, W) == (h, w):
        return video
    frames = batch.permute(0, 2, 1, 3, 4).reshape(b * t, c, H, W)
    out = F.interpolate(frames.float(), size=(h, w), mode="bilinear", align_corners=False, antialias=antialias)
    if video.dtype == torch.uint8:
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    else:
        out = out.to(video.dtype)
    out = out.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4).contiguous()
    return out[0] if single else out


def _check_crop(shape, h: int, w: int) -> None:
    if h > shape[-2] or w > shape[-1]:
        raise ValueError(f"crop size {(h, w)} is larger than the frames {tuple(shape[-2:])}; resize first (clip_size)")


def center_crop(video: Tensor, size: int | Sequence[int]) -> Tensor:
    """The central (H, W) window of every frame."""
    h, w = _pair(size)
    _check_crop(video.shape, h, w)
    top = (video.shape[-2] - h) // 2
    left = (video.shape[-1] - w) // 2
    return video[..., top:top + h, left:left + w]


def random_crop(video: Tensor, size: int | Sequence[int], generator: torch.Generator | None = None) -> Tensor:
    """A random (H, W) window per clip, the same for all frames of that clip."""
    batch, single = _batched(video)
    h, w = _pair(size)
    _check_crop(batch.shape, h, w)
    b = batch.shape[0]
    tops = torch.randint(0, batch.shape[-2] - h + 1, (b,), generator=generator).tolist()
    lefts = torch.randint(0, batch.shape[-1] - w + 1, (b,), generator=generator).tolist()
    out = torch.stack([batch[i, ..., y:y + h, x:x + w] for i, (y, x) in enumerate(zip(tops, lefts))])
    return out[0] if single else out


def flip(video: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Horizontal flip of each clip with probability ``p`` (all frames of a clip alike)."""
    batch, single = _batched(video)
    mask = (torch.rand(batch.shape[0], generator=generator) < p).to(batch.device)
    out = torch.where(mask.view(-1, 1, 1, 1, 1), batch.flip(-1), batch)
    return out[0] if single else out


def normalize(video: Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
              scale: float = 255.0) -> Tensor:
    """``(video / scale - mean) / std`` per channel, as float32 (channel axis: dim -4)."""
    shape = (3, 1, 1, 1)
    m = torch.as_tensor(mean, dtype=torch.float32, device=video.device).view(shape)
    s = torch.as_tensor(std, dtype=torch.float32, device=video.device).view(shape)
    return (video.float() / scale - m) / s


# --------------------------------------------------------------------------- CPU augmentation


class ClipAugment:
    """Albumentations on a clip with the *same* random parameters for every frame.

    ``transform`` is an ``A.Compose``, one albumentations transform, or a list of them.
    ``clip_augment(frames, seed)`` takes and returns uint8 ``(T, H, W, 3)`` numpy arrays;
    ``seed`` makes the draw reproducible (the dataset derives it from torch's RNG, so it
    differs per worker and epoch and follows ``seed_everything``).
    """

    def __init__(self, transform):
        import albumentations as A

        if isinstance(transform, A.Compose):
            self.compose = transform
        else:
            items = list(transform) if isinstance(transform, (list, tuple)) else [transform]
            self.compose = A.Compose(items)

    def __call__(self, frames: np.ndarray, seed: int | None = None) -> np.ndarray:
        if seed is not None:
            self.compose.set_random_seed(int(seed) % 2**32)
        out = self.compose(images=np.ascontiguousarray(frames))["images"]
        return np.ascontiguousarray(np.asarray(out))

    def __repr__(self) -> str:
        return f"ClipAugment({self.compose!r})"


def as_clip_augment(augment: Any) -> Any:
    """Albumentations transforms (one, a list or an ``A.Compose``) as a ``ClipAugment``; a
    ``ClipAugment``, any other callable ``(frames, seed) -> frames`` or None as given."""
    if augment is not None and not isinstance(augment, ClipAugment) and (
        isinstance(augment, (list, tuple)) or type(augment).__module__.startswith("albumentations")
    ):
        return ClipAugment(augment)
    return augment
