"""Input normalisation constants."""
from __future__ import annotations

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD"]

# Per-channel RGB mean and std of ImageNet on the [0, 1] scale, the normalisation timm and
# torchvision pretrained weights expect (timm.data.constants.IMAGENET_DEFAULT_MEAN/STD).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
