"""Spatial (mask) localization head, OmniFD's ``SpatialHead`` (§1.5 of research/omnifd.md).

All stage maps are resized to 1/8 of the input and concatenated, two 3×3 convolutions
(ReLU, no norm) bring them to ``channels``, and a 1×1 kernel computed per sample from the
latent tokens (Linear D→channels + LayerNorm, then a Linear across the latent axis) turns
them into one logit map at 1/8 resolution. Without a neck, a learned static 1×1 kernel
takes the dynamic kernel's place. Loss: BCE-with-logits against the soft mask (mask/255),
the logits upsampled bilinearly to the mask size.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection

from polyvision.heads.base import Head, has_key

OUTPUT_STRIDE = 8


class SpatialHead(Head):
    """Args:
        channels: width of the two 3×3 convolutions (OmniFD: 256).
        num_latents: number of latent tokens the dynamic kernel is pooled from (OmniFD: 64).
        threshold: probability above which a pixel counts as forged in the predicted mask.
    """

    def __init__(self, channels: int = 256, num_latents: int = 64, threshold: float = 0.5):
        super().__init__()
        self.channels = channels
        self.num_latents = num_latents
        self.threshold = threshold
        self.convs: nn.Module = nn.Identity()
        self.kernel_proj: nn.Module | None = None
        self.kernel_pool: nn.Module | None = None
        self.static_kernel: nn.Module | None = None

    def bind(self, feature_channels: list[int], feature_strides: list[int], latent_channels: int | None) -> None:
        self.convs = nn.Sequential(
            nn.Conv2d(sum(feature_channels), self.channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(self.channels, self.channels, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.first_stride = feature_strides[0]
        if latent_channels is not None:
            self.kernel_proj = nn.Sequential(nn.Linear(latent_channels, self.channels), nn.LayerNorm(self.channels))
            self.kernel_pool = nn.Linear(self.num_latents, 1)
        else:
            self.static_kernel = nn.Conv2d(self.channels, 1, 1)

    def forward(self, features: dict[str, Any], batch: dict[str, Any]) -> dict[str, Tensor]:
        maps = features["maps"]
        if maps[0].dim() != 4:
            raise ValueError("SpatialHead takes image features (B,C,H,W); clips go to a temporal head")
        scale = self.first_stride / OUTPUT_STRIDE
        size = (round(maps[0].shape[-2] * scale), round(maps[0].shape[-1] * scale))
        stacked = torch.cat([F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps], dim=1)
        x = self.convs(stacked)
        latents = features.get("latents")
        if self.kernel_proj is not None and latents is not None:
            tokens = self.kernel_proj(latents.transpose(1, 2))  # (B, L, C)
            kernel = self.kernel_pool(tokens.transpose(1, 2))  # (B, C, 1)
            logits = torch.einsum("bchw,bck->bkhw", x, kernel)
        else:
            logits = self.static_kernel(x)
        return {"mask_logits": logits}

    def _upsampled(self, outputs: dict[str, Tensor], size: tuple[int, int]) -> Tensor:
        return F.interpolate(outputs["mask_logits"].float(), size=size, mode="bilinear", align_corners=False)

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        if not has_key(batch, "mask"):
            return {}
        target = batch["mask"].float()
        logits = self._upsampled(outputs, target.shape[-2:])
        known = batch["has_mask"].float() if has_key(batch, "has_mask") else torch.ones(len(target), device=target.device)
        per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        # Always a term (zero when no mask is known) so every rank's graph has the same parameters.
        per_sample = per_pixel.flatten(1).mean(dim=1)
        return {"bce": (per_sample * known).sum() / known.sum().clamp(min=1.0)}

    def predict(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> list[dict[str, Any]]:
        probabilities = outputs["mask_logits"].detach().float().sigmoid()[:, 0]
        results = []
        for mask in probabilities.cpu():
            results.append({
                "forged_fraction": round(float((mask > self.threshold).float().mean()), 6),
                "max_probability": round(float(mask.max()), 6),
                # 1/8 of the input resolution; `polyvision infer` upsamples it to the image.
                "mask": [[round(v, 3) for v in row] for row in mask.tolist()],
            })
        return results

    def metrics(self) -> MetricCollection:
        from polyvision.metrics.spatial import SpatialLocalizationMetrics

        # A dict-valued metric: the collection names its values <prefix>pbca, iinc, soft_iou.
        return MetricCollection({"localization": SpatialLocalizationMetrics()})

    def metric_inputs(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> tuple[Tensor, Tensor] | None:
        if not has_key(batch, "mask"):
            return None
        # Pixel metrics cover images that have a mask file (OmniFD's protocol); reals trained
        # with an all-zero target are left out when the batch says which masks came from files.
        known = next((key for key in ("has_mask_file", "has_mask") if has_key(batch, key)), None)
        keep = batch[known].bool() if known else torch.ones(len(batch["mask"]), dtype=torch.bool, device=batch["mask"].device)
        if not bool(keep.any()):
            return None
        target = batch["mask"].float()[keep]
        preds = self._upsampled({"mask_logits": outputs["mask_logits"].detach()[keep]}, target.shape[-2:]).sigmoid()
        return preds[:, 0], target[:, 0]
