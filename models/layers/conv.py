"""Convolution blocks shared by encoders and decoders."""
from __future__ import annotations

from torch import nn

__all__ = ["DoubleConv"]


class DoubleConv(nn.Sequential):
    """[Conv3×3 → BatchNorm → ReLU] × 2 (the U-Net block, Ronneberger et al., MICCAI 2015).
    STATE builds its spatial encoder and its decoders from it (``double_conv`` in
    ``state_model.py`` of github.com/wyzjack/MRMGA4VAD)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        )
