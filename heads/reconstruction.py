"""Reconstruction heads: STATE's per-frame spatial decoders (official code:
github.com/wyzjack/MRMGA4VAD, ``state_model.py``, ``Spatial_Decoder``).

Both heads read one clip feature map ``(B, C, T, h, w)`` (``feature_index`` picks it from
the backbone's list), decode every frame with the same ``SpatialDecoder`` and return
``{"prediction": (B, K, T, H, W), "target": ... | None}``:

- ``FrameReconstructionHead`` (K=3) reconstructs the clip the backbone was given. Its target
  is that very input (``features["inputs"]``, set by the model), not a copy from the batch:
  at test time STATE perturbs the input and scores the perturbed clip against itself, and
  the gradient of that score flows through the target too (official ``test.py``).
- ``FlowPredictionHead`` (K=2) predicts optical flow (pixels) from the RGB features; its
  target is ``batch["flow"]`` ``(B, 2, T, H, W)``.

The decoder has no skip connections and no output activation: each stage is a stride-2
``ConvTranspose2d`` (k3, p1, op1) then a double 3×3 conv halving the width, and a 1×1 conv
gives the K output channels. The number of stages follows from the backbone's stride
(32×32 patches at stride 4 → 2 stages, widths 128 → 64 → 32 as in the paper).

Loss: mean squared error (``mse``). ``errors`` gives the per-sample sum of squared errors
over (K, T, H, W), the quantity STATE z-normalises and fuses into anomaly scores
(official ``test.py``).
"""
from __future__ import annotations

import math
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from polyvision.heads.base import Head, detach_to_list, has_key
from polyvision.models.layers import DoubleConv


class SpatialDecoder(nn.Module):
    """Image decoder ``(N, C, h, w) -> (N, out_channels, h·2^stages, w·2^stages)``: ``stages``
    × [ConvTranspose2d(c→c, stride 2) + DoubleConv(c→c/2)], then a 1×1 conv."""

    def __init__(self, in_channels: int, stages: int, out_channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        for _ in range(stages):
            if width % 2:
                raise ValueError(f"decoder width {width} cannot be halved; use even encoder widths")
            layers += [nn.ConvTranspose2d(width, width, 3, stride=2, padding=1, output_padding=1),
                       DoubleConv(width, width // 2)]
            width //= 2
        self.up = nn.Sequential(*layers)
        self.out = nn.Conv2d(width, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.up(x))


class ReconstructionHead(Head):
    """Decodes a clip feature map frame by frame into ``out_channels`` maps per frame.

    Args:
        feature_index: which backbone map to decode (STATE: 0 = raw branch, 1 = flow branch).
    """

    out_channels = 3

    def __init__(self, feature_index: int = 0):
        super().__init__()
        self.feature_index = feature_index
        self.decoder: nn.Module = nn.Identity()

    def bind(self, feature_channels: list[int], feature_strides: list[int], latent_channels: int | None) -> None:
        if not -len(feature_channels) <= self.feature_index < len(feature_channels):
            raise ValueError(f"{type(self).__name__}: feature_index {self.feature_index} but the backbone "
                             f"gives {len(feature_channels)} maps")
        stride = feature_strides[self.feature_index]
        stages = round(math.log2(stride)) if stride >= 1 else -1
        if stages < 0 or 2 ** stages != stride:
            raise ValueError(f"{type(self).__name__}: backbone stride {stride} is not a power of two")
        self.decoder = SpatialDecoder(feature_channels[self.feature_index], stages, self.out_channels)

    def decode(self, features: dict[str, Any]) -> Tensor:
        feature_map = features["maps"][self.feature_index]
        if feature_map.dim() != 5:
            raise ValueError(f"{type(self).__name__} decodes clip features (B, C, T, h, w), got {tuple(feature_map.shape)}")
        b, c, t, h, w = feature_map.shape
        frames = feature_map.transpose(1, 2).reshape(b * t, c, h, w)
        decoded = self.decoder(frames)
        return decoded.reshape(b, t, *decoded.shape[1:]).transpose(1, 2)  # (B, K, T, H, W)

    def target(self, features: dict[str, Any], batch: dict[str, Any]) -> Tensor | None:
        raise NotImplementedError

    def forward(self, features: dict[str, Any], batch: dict[str, Any]) -> dict[str, Tensor]:
        prediction = self.decode(features)
        target = self.target(features, batch)
        if target is not None and target.shape != prediction.shape:
            raise ValueError(f"{type(self).__name__}: target {tuple(target.shape)} does not match the "
                             f"prediction {tuple(prediction.shape)}")
        return {"prediction": prediction, "target": target}

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        if outputs.get("target") is None:
            return {}
        return {"mse": F.mse_loss(outputs["prediction"].float(), outputs["target"].float())}

    def errors(self, outputs: dict[str, Tensor]) -> Tensor | None:
        """Per-sample sum of squared errors over (K, T, H, W), float32 ``(B,)``; None without a target."""
        if outputs.get("target") is None:
            return None
        difference = outputs["prediction"].float() - outputs["target"].float()
        return difference.pow(2).flatten(1).sum(dim=1)

    def predict(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> list[dict[str, Any]]:
        errors = self.errors(outputs)
        if errors is None:
            return [{} for _ in range(outputs["prediction"].shape[0])]
        return [{"sse": round(value, 6)} for value in detach_to_list(errors)]


class FrameReconstructionHead(ReconstructionHead):
    """Reconstructs the RGB clip the backbone saw (STATE's raw branch); target = that input."""

    out_channels = 3

    def target(self, features: dict[str, Any], batch: dict[str, Any]) -> Tensor | None:
        inputs = features.get("inputs")
        if inputs is None:
            raise ValueError("FrameReconstructionHead needs features['inputs'] (the clip the backbone saw); "
                             "use it in a model that exposes its inputs, such as STATE")
        return inputs


class FlowPredictionHead(ReconstructionHead):
    """Predicts the 2-channel optical flow of every frame from the RGB clip features (STATE's
    motion branch, "raw2flow"); target = ``batch["flow"]`` in pixels."""

    out_channels = 2

    def __init__(self, feature_index: int = 1):
        super().__init__(feature_index=feature_index)

    def target(self, features: dict[str, Any], batch: dict[str, Any]) -> Tensor | None:
        if not has_key(batch, "flow"):
            return None
        return batch["flow"].float()


__all__ = ["SpatialDecoder", "ReconstructionHead", "FrameReconstructionHead", "FlowPredictionHead"]
