"""Classification head: OmniFD's image and video heads (official code:
github.com/haotianll/OmniFD, ``mmpretrain/models/omnifd/head/cls.py``).

With a neck, it reads the mean of the latent tokens; without one, the global average of
the last feature map, so the same head works on any backbone. The last class is the
positive one: its probability is each prediction's ``score`` (OmniFD: class 1, "fake").
"""
from __future__ import annotations

from typing import Any, Literal

import torch.nn.functional as F
import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection

from polyvision.errors import ConfigError
from polyvision.heads.base import Head, detach_to_list, global_pool, has_key


class ClassificationHead(Head):
    """Linear classifier over pooled features.

    Args:
        class_names: names of the classes in index order, used in predictions (OmniFD's
            configs: ``[real, fake]``); default ``"0"``, ``"1"``, ... for ``num_classes`` classes.
        num_classes: number of classes when ``class_names`` is not given (default 2).
        dropout: dropout before the linear layer (OmniFD: 0).
        window_merge: how full-video evaluation and ``infer`` combine the windows of a video:
            ``"mean"`` of the class probabilities (default), or ``"max"``: the probabilities of
            the window with the highest last-class (positive) probability, so a video is as
            fake as its most fake window (partially fake videos, e.g. ForgeryNet's, are not
            diluted by their clean stretches).
    """

    def __init__(self, class_names: list[str] | None = None, num_classes: int = 2, dropout: float = 0.0,
                 window_merge: Literal["mean", "max"] = "mean"):
        super().__init__()
        if window_merge not in ("mean", "max"):
            raise ConfigError(f"window_merge must be 'mean' or 'max', got {window_merge!r}")
        if class_names is None and num_classes < 2:
            raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
        if class_names is not None and len(class_names) < 2:
            raise ConfigError(f"class_names needs at least two classes, got {list(class_names)}")
        self.window_merge = window_merge
        self.class_names = [str(name) for name in class_names] if class_names is not None \
            else [str(index) for index in range(num_classes)]
        self.dropout = nn.Dropout(dropout)
        self.fc: nn.Module = nn.Identity()
        self.reads_latents = False

    def bind(self, feature_channels: list[int], feature_strides: list[int], latent_channels: int | None) -> None:
        self.reads_latents = latent_channels is not None
        in_channels = latent_channels if latent_channels is not None else feature_channels[-1]
        self.fc = nn.Linear(in_channels, len(self.class_names))

    def forward(self, features: dict[str, Any], batch: dict[str, Any]) -> dict[str, Tensor]:
        if self.reads_latents:
            pooled = features["latents"].mean(dim=2)  # (B, D, L) -> (B, D)
        else:
            pooled = global_pool(features["maps"][-1])
        return {"logits": self.fc(self.dropout(pooled))}

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        if not has_key(batch, "label"):
            return {}
        return {"ce": F.cross_entropy(outputs["logits"].float(), batch["label"].long())}

    def predict(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> list[dict[str, Any]]:
        probabilities = outputs["logits"].float().softmax(dim=1)
        results = []
        for row in detach_to_list(probabilities):
            best = max(range(len(row)), key=row.__getitem__)
            results.append({
                "label": self.class_names[best],
                "score": round(row[-1], 6),
                "probabilities": {name: round(p, 6) for name, p in zip(self.class_names, row)},
            })
        return results

    def metrics(self) -> MetricCollection:
        if len(self.class_names) != 2:
            from torchmetrics.classification import MulticlassAccuracy

            return MetricCollection({"acc": MulticlassAccuracy(len(self.class_names), average="micro")})
        from polyvision.metrics.classification import BalancedAccuracy, ForgeryAUC, Top1Accuracy

        return MetricCollection({"acc": Top1Accuracy(), "balanced_acc": BalancedAccuracy(), "auc": ForgeryAUC()})

    def metric_inputs(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> tuple[Tensor, Tensor] | None:
        if not has_key(batch, "label"):
            return None
        probabilities = outputs["logits"].detach().float().softmax(dim=1)
        preds = probabilities[:, 1] if len(self.class_names) == 2 else probabilities
        return preds, batch["label"].long()

    def merge_windows(self, predictions: list[dict[str, Any]]) -> dict[str, Any]:
        """A video's class probabilities: the mean over its windows, or (``window_merge="max"``)
        those of the window most confident in the positive (last) class."""
        if self.window_merge == "max":
            top = max(predictions, key=lambda p: p["probabilities"][self.class_names[-1]])
            merged = {name: top["probabilities"][name] for name in self.class_names}
        else:
            merged = {name: sum(p["probabilities"][name] for p in predictions) / len(predictions)
                      for name in self.class_names}
        best = max(self.class_names, key=merged.__getitem__)
        return {"label": best, "score": round(merged[self.class_names[-1]], 6),
                "probabilities": {name: round(value, 6) for name, value in merged.items()}, "windows": len(predictions)}

    def metric_inputs_from_predictions(self, predictions: list[dict[str, Any]],
                                       targets: list[dict[str, Any]]) -> tuple[Tensor, Tensor] | None:
        labels = [t.get("label") for t in targets]
        if len(self.class_names) != 2 or any(label is None for label in labels):
            return None
        scores = torch.tensor([p["score"] for p in predictions], dtype=torch.float32)
        return scores, torch.tensor([int(label) for label in labels])
