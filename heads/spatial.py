"""Spatial (mask) localization head, OmniFD's ``SpatialHead`` (official code:
github.com/haotianll/OmniFD, ``mmpretrain/models/omnifd/head/spatial.py``).

All stage maps are resized to 1/8 of the input and concatenated, two 3×3 convolutions
(ReLU, no norm) bring them to ``channels``, and a 1×1 kernel computed per sample from the
latent tokens (Linear D→channels + LayerNorm, then a Linear across the latent axis) turns
them into one logit map at 1/8 resolution. Without a neck, a learned static 1×1 kernel
takes the dynamic kernel's place. Loss: BCE-with-logits against the soft mask (mask/255),
the logits upsampled bilinearly to the mask size.

Metrics (as in OmniFD's ``mmpretrain/evaluation/metrics/forgery.py``), chosen with
``protocols``:

- ``"ffpp"`` (FF++, FMLD): PBCA, IINC and soft IoU per image, averaged;
- ``"forgerynet"``: ``iou@0.1/0.2``, ``iou_diff@0.01/0.05/0.1`` and ``l1`` pooled over all
  pixels.

Both are computed at the original image resolution, as OmniFD does: the probability map is
resized to the face box (the whole image without one), pasted into a zero canvas of the image's size and
compared with the original mask. This needs the batch's ``full_mask`` (a list with a uint8
(H, W) array or tensor, or None, per sample) and, for face crops, ``meta[i]["face_box"]``; the
image datamodules supply both in evaluation (``full_resolution_eval``). A sample without
``full_mask`` is scored at the model's input size.

Only images with a mask file are scored (OmniFD's protocol).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection

from polyvision.errors import ConfigError
from polyvision.heads.base import Head, has_key

OUTPUT_STRIDE = 8


class SpatialHead(Head):
    """Args:
        channels: width of the two 3×3 convolutions (OmniFD: 256).
        num_latents: number of latent tokens the dynamic kernel is pooled from (OmniFD: 64).
        threshold: probability above which a pixel counts as forged in the predicted mask.
        protocols: which metrics to report: ``"ffpp"`` and/or ``"forgerynet"`` (module docstring).
    """

    def __init__(self, channels: int = 256, num_latents: int = 64, threshold: float = 0.5,
                 protocols: Sequence[str] = ("ffpp",)):
        super().__init__()
        self.protocols = tuple(protocols)
        unknown = set(self.protocols) - {"ffpp", "forgerynet"}
        if unknown or not self.protocols:
            raise ConfigError(f"protocols must name 'ffpp' and/or 'forgerynet', got {list(protocols)}")
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
        size = (round(int(maps[0].shape[-2]) * scale), round(int(maps[0].shape[-1]) * scale))  # int(): static under tracing
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
        from polyvision.metrics.spatial import ForgeryNetPixelMetrics, SpatialLocalizationMetrics

        # Dict-valued metrics: the collection names their values <prefix>pbca, ..., <prefix>iou@0.1, ...
        metrics = {}
        if "ffpp" in self.protocols:
            metrics["localization"] = SpatialLocalizationMetrics()
        if "forgerynet" in self.protocols:
            metrics["pixels"] = ForgeryNetPixelMetrics()
        return MetricCollection(metrics, compute_groups=False)  # updated one by one (update_metrics)

    def metric_inputs(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Any] | None:
        if not has_key(batch, "mask"):
            return None
        # Pixel metrics cover images that have a mask file (OmniFD's protocol); reals trained
        # with an all-zero target are left out when the batch says which masks came from files.
        known = next((key for key in ("has_mask_file", "has_mask") if has_key(batch, key)), None)
        keep = batch[known].bool() if known else torch.ones(len(batch["mask"]), dtype=torch.bool, device=batch["mask"].device)
        if not bool(keep.any()):
            return None
        logits = outputs["mask_logits"].detach()
        pairs = [self._original_resolution(logits, batch, index) for index in torch.nonzero(keep).flatten().tolist()]
        inputs: dict[str, Any] = {}
        if "ffpp" in self.protocols:
            # per image, each at its own size
            inputs["localization"] = [(pred[None], target[None]) for pred, target in pairs]
        if "forgerynet" in self.protocols:
            # pooled over pixels, so images of different sizes are joined into one (1, 1, pixels) pair
            inputs["pixels"] = (torch.cat([p.flatten() for p, _ in pairs])[None, None],
                                torch.cat([t.flatten() for _, t in pairs])[None, None])
        return inputs

    def _original_resolution(self, logits: Tensor, batch: dict[str, Any], index: int) -> tuple[Tensor, Tensor]:
        """Sample ``index``'s probabilities and soft target over its original image, when the
        batch carries the original mask (``full_mask``): the prediction is resized to the face
        box (``meta["face_box"]``, the whole image without one) and pasted into a zero canvas.
        Otherwise both at the model's input size."""
        fulls = batch.get("full_mask") or [None] * len(logits)
        full = fulls[index]
        if full is None:
            crop = batch["mask"][index, 0].float()
            return self._upsampled({"mask_logits": logits[index:index + 1]}, crop.shape)[0, 0].sigmoid(), crop
        target = torch.as_tensor(full).to(logits.device).float() / 255.0
        height, width = target.shape
        metas = batch.get("meta") or [{}] * len(logits)
        x1, y1, x2, y2 = (int(v) for v in (metas[index].get("face_box") or (0, 0, width, height)))
        canvas = torch.zeros_like(target)
        if x2 > x1 and y2 > y1:
            canvas[y1:y2, x1:x2] = self._upsampled({"mask_logits": logits[index:index + 1]}, (y2 - y1, x2 - x1))[0, 0].sigmoid()
        return canvas, target
