"""OmniFD's training augmentation (official code: github.com/haotianll/OmniFD,
``configs_omnifd/_base_/datasets/``), for images and clips.

- Geometric: resize the short side to ``S * r`` with ``r`` uniform in ``[1, 8/7]``, random
  ``S x S`` crop, horizontal flip (p 0.5).
- Photometric (``omnifd_photometric``), with overall probability 0.99: 98 % of the time 2, 3
  or 4 (equally likely) distinct transforms out of Gaussian noise, sharpen, brightness/contrast
  ±0.5, JPEG quality 1-99, Gaussian blur 3-11, CLAHE, gamma 10-150, grey and channel shuffle,
  each applied once chosen. The released code pins albumentations 1.3.0; this is the same list
  in the albumentations 2.0.8 API (Gaussian noise: 1.3.0's default variance 10-50 on 0-255,
  i.e. a standard deviation of 1.2-2.8 % of the range).

A clip gets the same random parameters on every frame (:class:`OmniFDClipAugment`, through
``ClipAugment``), as OmniFD's ``additional_targets``.
"""
from __future__ import annotations

import math

import albumentations as A
import cv2
from polyvision.datamodules.video.transforms import ClipAugment

__all__ = ["omnifd_geometric", "omnifd_photometric", "mild_photometric", "OmniFDClipAugment"]


def omnifd_geometric(size: int) -> list[A.BasicTransform]:
    """Random resize (short side ``size``..``size * 8/7``), random ``size`` crop, flip. Masks
    follow the image (bilinear)."""
    s = int(size)
    lin = cv2.INTER_LINEAR
    return [
        A.SmallestMaxSize(max_size=list(range(s, int(math.floor(s * 8 / 7)) + 1)), interpolation=lin,
                          mask_interpolation=lin),
        A.RandomCrop(s, s, pad_if_needed=True),
        A.HorizontalFlip(p=0.5),
    ]


def omnifd_photometric() -> list[A.BasicTransform]:
    """The released code's heavy photometric augmentation (module docstring)."""
    def pool() -> list[A.BasicTransform]:
        return [
            A.GaussNoise(std_range=(0.012, 0.028), p=1.0),
            A.Sharpen(p=1.0),
            A.RandomBrightnessContrast(brightness_limit=0.5, contrast_limit=0.5, p=1.0),
            A.ImageCompression(quality_range=(1, 99), p=1.0),
            A.GaussianBlur(blur_limit=(3, 11), p=1.0),
            A.CLAHE(p=1.0),
            A.RandomGamma(gamma_limit=(10, 150), p=1.0),
            A.ToGray(p=1.0),
            A.ChannelShuffle(p=1.0),
        ]

    some_of = A.OneOf([A.SomeOf(pool(), n=n, replace=False, p=1.0) for n in (2, 3, 4)], p=0.98)
    return [A.Sequential([some_of], p=0.99)]


def mild_photometric() -> list[A.BasicTransform]:
    """polyvision's lighter default: brightness/contrast ±0.2 (p 0.5), JPEG 70-100 (p 0.3),
    light blur (p 0.15)."""
    return [
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
        A.ImageCompression(quality_range=(70, 100), p=0.3),
        A.GaussianBlur(blur_limit=(3, 3), sigma_limit=(0.2, 0.8), p=0.15),
    ]


class OmniFDClipAugment(ClipAugment):
    """OmniFD's clip augmentation, identical on every frame: the geometric part on ``size``
    frames (the datamodule's ``clip_size``) and, with ``photometric``, the heavy photometric
    part. In YAML: ``augment: {class_path: polyvision.datamodules.forgery.augment.OmniFDClipAugment,
    init_args: {size: 224}}``."""

    def __init__(self, size: int, photometric: bool = True):
        super().__init__(omnifd_geometric(size) + (omnifd_photometric() if photometric else []))
        self.size = int(size)
        self.photometric = bool(photometric)
