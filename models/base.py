"""``MultiTaskModule``: a backbone, an optional neck and a dict of task heads.

A training batch is a dict ``source -> sub-batch`` (what Lightning's ``CombinedLoader``
yields for mixed image/video training) or a single sub-batch carrying its ``source`` key.
``sources`` maps each source to the heads that read it; the backbone runs once per
sub-batch, the weighted head losses are summed, every term is logged, and each head's
metrics are updated in validation and test. Systems whose structure differs (STATE's
test-time perturbation, captioning's decoding) override the step methods they need.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from polyvision.errors import ConfigError
from polyvision.heads.base import Head, module_spec, remember_init_args, update_metrics
from polyvision.models.backbones import build_backbone
from polyvision.models.layers import IMAGENET_MEAN, IMAGENET_STD

# Parameter-name fragments that get no weight decay besides norms and biases (OmniFD §1.7).
NO_DECAY_KEYS = ("pos_embed", "absolute_pos_embed", "relative_position_bias_table", "position_embedding")


def select_samples(inputs: tuple | dict[str, tuple], indices: list[int]) -> tuple | dict[str, tuple]:
    """Keep the samples ``indices`` of metric inputs (tensors batched on dim 0, or per-sample lists)."""
    if isinstance(inputs, dict):
        return {name: ([args[i] for i in indices] if isinstance(args, list) else select_samples(args, indices))
                for name, args in inputs.items()}
    picked = []
    for item in inputs:
        if isinstance(item, Tensor):
            picked.append(item[torch.as_tensor(indices, device=item.device)])
        else:
            picked.append([item[i] for i in indices])
    return tuple(picked)


class Neck(nn.Module):
    """Reads the backbone's maps and returns latent tokens ``(B, D, L)`` that heads share."""

    latent_channels: int

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        remember_init_args(cls)

    def bind(self, feature_channels: list[int], feature_strides: list[int]) -> None:
        raise NotImplementedError

    def forward(self, maps: list[Tensor], batch: dict[str, Any]) -> Tensor:
        raise NotImplementedError


class MultiTaskModule(pl.LightningModule):
    """Backbone + optional neck + task heads, trained with a weighted sum of head losses.

    Args:
        heads: task name -> head (``class_path``/``init_args`` in YAML).
        backbone: what ``build_backbone`` builds: ``swin3d_t``, ``swin3d_s``, a timm name, or a
            ``{class_path, init_args}`` spec of a backbone class (e.g. STATE's ``STATEEncoder``).
        backbone_kwargs: extra backbone settings (e.g. a smaller ``embed_dim`` for tests), merged
            over a spec's ``init_args``.
        pretrained: local weights file for the backbone; ``null`` trains from scratch.
        neck: optional module turning the backbone maps into shared latent tokens.
        sources: sub-batch source -> the heads it feeds; by default every head reads every
            sub-batch whose source has the head's name, or all heads for a lone source.
        eval_sources: the same for validation and test, where it differs from ``sources``
            (e.g. OmniFD's ForgeryNet test reads video classification from 32-snippet clips
            and temporal localization from separate 64-snippet clips); sources it does not
            name follow ``sources``.
        loss_weights: task name -> weight of its loss (default 1).
        image_size: input side length the model is trained at; inference resizes images and
            clip frames to it.
        clip_len, frame_interval: the clip geometry ``polyvision infer`` cuts videos into
            (match the datamodule's).
        lr, weight_decay, warmup_steps, min_lr: AdamW with linear warm-up then cosine decay
            to ``min_lr`` over the run; no weight decay on norms, biases and position tables.
        mean, std: input normalisation (uint8 inputs are scaled to [0, 1] first).
    """

    def __init__(
        self,
        heads: dict[str, Head],
        backbone: str | dict[str, Any] = "swin_tiny_patch4_window7_224",
        backbone_kwargs: dict[str, Any] | None = None,
        pretrained: str | None = None,
        neck: Neck | None = None,
        sources: dict[str, list[str]] | None = None,
        eval_sources: dict[str, list[str]] | None = None,
        loss_weights: dict[str, float] | None = None,
        image_size: int = 224,
        clip_len: int = 32,
        frame_interval: int = 1,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        warmup_steps: int = 0,
        min_lr: float = 1e-6,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ):
        super().__init__()
        # Heads and neck are saved as class_path/init_args specs, never pickled modules, so a
        # checkpoint holds plain data whether the model came from YAML or from Python.
        self.save_hyperparameters(ignore=["heads", "neck"])
        self.hparams["heads"] = {name: module_spec(head) for name, head in heads.items()}
        self.hparams["neck"] = module_spec(neck) if neck is not None else None
        if not heads:
            raise ConfigError("model.heads: at least one head is needed")
        for name, head in heads.items():
            if not isinstance(head, Head):
                raise ConfigError(f"model.heads.{name}: {type(head).__name__} is not a polyvision Head")
        self.backbone = build_backbone(backbone, pretrained=pretrained, **(backbone_kwargs or {}))
        channels, strides = list(self.backbone.out_channels), list(self.backbone.strides)
        self.neck = neck
        latent_channels = None
        if neck is not None:
            neck.bind(channels, strides)
            latent_channels = neck.latent_channels
        self.heads = nn.ModuleDict(heads)
        for head in heads.values():
            head.bind(channels, strides, latent_channels)
        self.sources = {k: list(v) for k, v in (sources or {}).items()}
        self.eval_sources = {k: list(v) for k, v in (eval_sources or {}).items()}
        for field, routing in (("sources", self.sources), ("eval_sources", self.eval_sources)):
            for source, names in routing.items():
                unknown = [n for n in names if n not in heads]
                if unknown:
                    raise ConfigError(f"model.{field}.{source}: unknown head '{unknown[0]}' (heads: {', '.join(heads)})")
        self.loss_weights = {name: float((loss_weights or {}).get(name, 1.0)) for name in heads}
        self.image_size = image_size
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.val_metrics = nn.ModuleDict({n: h.metrics().clone(prefix=f"val/{n}/") for n, h in heads.items()})
        self.test_metrics = nn.ModuleDict({n: h.metrics().clone(prefix=f"test/{n}/") for n, h in heads.items()})
        self.skipped_samples = {"train": 0, "val": 0, "test": 0, "predict": 0}
        self.window_buffer: dict[str, dict] = {"val": {}, "test": {}}

    # ----------------------------------------------------------------- forward
    def heads_for(self, source: str | None, evaluation: bool = False) -> list[str]:
        """The heads a sub-batch from ``source`` feeds: its ``eval_sources`` entry when
        ``evaluation`` (validation/test metrics), else its ``sources`` entry, else the head of
        that name, else every head when no ``sources`` are configured (a lone source)."""
        if evaluation and source in self.eval_sources:
            return self.eval_sources[source]
        if source in self.sources:
            return self.sources[source]
        if source in self.heads:
            return [source]
        return [] if self.sources else list(self.heads)

    def normalize(self, x: Tensor) -> Tensor:
        """uint8 (B,3,H,W) or (B,3,T,H,W) -> normalised float; float input is taken as already normalised."""
        if x.dtype != torch.uint8:
            return x
        mean, std = self.pixel_mean, self.pixel_std
        if x.dim() == 5:
            mean, std = mean.unsqueeze(2), std.unsqueeze(2)
        return (x.float() / 255.0 - mean) / std

    def extract_features(self, batch: dict[str, Any]) -> dict[str, Any]:
        key = "video" if "video" in batch else "image"
        if key not in batch:
            raise ValueError("a sub-batch needs an 'image' or a 'video' tensor")
        maps = self.backbone(self.normalize(batch[key]))
        features: dict[str, Any] = {"maps": maps}
        if self.neck is not None:
            features["latents"] = self.neck(maps, batch)
        return features

    def forward(self, batch: dict[str, Any], heads: list[str] | None = None) -> dict[str, dict[str, Tensor]]:
        """One sub-batch -> ``{head name: head outputs}`` for ``heads`` (default: the heads its
        source feeds)."""
        features = self.extract_features(batch)
        names = self.heads_for(batch.get("source")) if heads is None else heads
        return {name: self.heads[name](features, batch) for name in names}

    @staticmethod
    def sub_batches(batch: dict[str, Any]) -> Iterator[tuple[str | None, dict[str, Any]]]:
        # Sources are often named after their input ("image"), so tell a lone sub-batch by its values.
        if isinstance(batch.get("source"), str) or any(isinstance(batch.get(k), Tensor) for k in ("image", "video")):
            yield batch.get("source"), batch
            return
        for source, sub_batch in batch.items():
            if isinstance(sub_batch, dict):
                sub_batch["source"] = source  # CombinedLoader's key names the source
                yield source, sub_batch

    @staticmethod
    def batch_size_of(sub_batch: dict[str, Any]) -> int:
        for key in ("image", "video"):
            if key in sub_batch:
                return int(sub_batch[key].shape[0])
        return len(sub_batch.get("meta", [])) or 1

    def count_skipped(self, stage: str, sub_batch: dict[str, Any]) -> None:
        skipped = sub_batch.get("num_skipped")
        if isinstance(skipped, Tensor):
            self.skipped_samples[stage] += int(skipped.sum())

    # ----------------------------------------------------------------- steps
    def compute_losses(self, outputs: dict[str, dict[str, Tensor]], sub_batch: dict[str, Any]) -> dict[str, Tensor]:
        losses: dict[str, Tensor] = {}
        for name, head_outputs in outputs.items():
            for term, value in self.heads[name].loss(head_outputs, sub_batch).items():
                losses[f"{name}/{term}"] = value
        return losses

    def weighted_total(self, losses: dict[str, Tensor]) -> Tensor:
        return sum(self.loss_weights[key.split("/", 1)[0]] * value for key, value in losses.items())

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        total: Tensor | None = None
        for _, sub_batch in self.sub_batches(batch):
            self.count_skipped("train", sub_batch)
            if not sub_batch.get("meta"):
                continue
            losses = self.compute_losses(self(sub_batch), sub_batch)
            if not losses:
                continue
            batch_size = self.batch_size_of(sub_batch)
            for key, value in losses.items():
                self.log(f"train/{key}", value, batch_size=batch_size)
            part = self.weighted_total(losses)
            total = part if total is None else total + part
        if total is None:
            return None
        self.log("train/loss", total, prog_bar=True)
        return total

    def evaluation_step(self, stage: str, batch: dict[str, Any]) -> None:
        collections = self.val_metrics if stage == "val" else self.test_metrics
        for source, sub_batch in self.sub_batches(batch):
            self.count_skipped(stage, sub_batch)
            if not sub_batch.get("meta"):
                continue
            outputs = self(sub_batch, heads=self.heads_for(source, evaluation=True))
            losses = self.compute_losses(outputs, sub_batch)
            batch_size = self.batch_size_of(sub_batch)
            if losses:
                name = f"{stage}/loss" if len(self.sources) <= 1 else f"{stage}/{source}/loss"
                self.log(name, self.weighted_total(losses), batch_size=batch_size,
                         sync_dist=True, add_dataloader_idx=False)
            windows = self.window_info(sub_batch)
            for name, head_outputs in outputs.items():
                inputs = self.heads[name].metric_inputs(head_outputs, sub_batch)
                if inputs is None:
                    continue
                if windows is None:
                    update_metrics(collections[name], inputs)
                    continue
                # Clips cut from longer videos: the standard metrics follow the released code's
                # protocol (the first window of each video); every window is kept for the
                # full-video metrics computed at the end of the epoch.
                first = [i for i, (_, window) in enumerate(windows) if window == 0]
                if first:
                    update_metrics(collections[name], select_samples(inputs, first))
                predictions = self.heads[name].predict(head_outputs, sub_batch)
                labels = sub_batch.get("label")
                for index, (video_id, window) in enumerate(windows):
                    target = dict(sub_batch["meta"][index])
                    if isinstance(labels, Tensor):
                        target["label"] = int(labels[index])
                    entry = self.window_buffer[stage].setdefault((name, video_id), {"target": target, "windows": {}})
                    entry["windows"][window] = predictions[index]

    @staticmethod
    def window_info(sub_batch: dict[str, Any]) -> list[tuple[str, int]] | None:
        """``(video_id, window)`` per sample when the sub-batch holds windows of longer videos."""
        meta = sub_batch.get("meta") or []
        if not meta or not all(isinstance(m, dict) and "video_id" in m and "window" in m for m in meta):
            return None
        return [(str(m["video_id"]), int(m["window"])) for m in meta]

    def log_full_video_metrics(self, stage: str) -> None:
        """Merge each video's windows (each head's ``merge_windows``) and log
        ``<stage>/<head>_full/<metric>``: the whole-video protocol."""
        buffer = self.window_buffer[stage]
        if self._trainer is not None and self.trainer.world_size > 1:
            gathered: list[dict] = [None] * self.trainer.world_size  # type: ignore[list-item]
            torch.distributed.all_gather_object(gathered, buffer)
            buffer = {}
            for part in gathered:
                for key, entry in part.items():
                    merged = buffer.setdefault(key, {"target": entry["target"], "windows": {}})
                    merged["windows"].update(entry["windows"])
        by_head: dict[str, list[dict]] = {}
        for (name, _), entry in sorted(buffer.items()):
            by_head.setdefault(name, []).append(entry)
        for name, entries in by_head.items():
            head = self.heads[name]
            merged = [head.merge_windows([e["windows"][w] for w in sorted(e["windows"])]) for e in entries]
            inputs = head.metric_inputs_from_predictions(merged, [e["target"] for e in entries])
            if inputs is None:
                continue
            collection = head.metrics().clone(prefix=f"{stage}/{name}_full/").to(self.device)
            for metric in collection.values():
                metric.sync_on_compute = False  # every rank already holds every video
            update_metrics(collection, inputs)
            self.log_dict(collection.compute(), sync_dist=False)
        self.window_buffer[stage] = {}

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.evaluation_step("val", batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.evaluation_step("test", batch)

    def log_metrics(self, collections: nn.ModuleDict) -> None:
        for collection in collections.values():
            if not any(metric.update_count for metric in collection.values()):
                continue
            self.log_dict(collection.compute(), sync_dist=False)  # compute() already synchronised across ranks
            collection.reset()

    def on_validation_epoch_end(self) -> None:
        if self._trainer is not None and self.trainer.sanity_checking:
            # Lightning discards what the sanity check logs; two batches would only warn about
            # metrics undefined on them (one class seen, no segment).
            for collection in self.val_metrics.values():
                collection.reset()
            self.window_buffer["val"] = {}
            return
        self.log_metrics(self.val_metrics)
        self.log_full_video_metrics("val")

    def on_test_epoch_end(self) -> None:
        self.log_metrics(self.test_metrics)
        self.log_full_video_metrics("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for _, sub_batch in self.sub_batches(batch):
            self.count_skipped("predict", sub_batch)
            if not sub_batch.get("meta"):
                continue
            outputs = self(sub_batch)
            per_head = {name: self.heads[name].predict(out, sub_batch) for name, out in outputs.items()}
            for index, meta in enumerate(sub_batch["meta"]):
                record: dict[str, Any] = {"path": meta.get("path")} if isinstance(meta, dict) else {}
                record.update({name: predictions[index] for name, predictions in per_head.items()})
                results.append(record)
        return results

    def total_skipped(self, stage: str) -> int:
        count = torch.tensor(float(self.skipped_samples[stage]), device=self.device)
        if self._trainer is not None and self.trainer.world_size > 1:
            count = self.trainer.strategy.reduce(count, reduce_op="sum")
        return int(count.item())

    # ----------------------------------------------------------------- optimisation
    def parameter_groups(self) -> list[dict[str, Any]]:
        decay, no_decay = [], []
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            if parameter.ndim <= 1 or name.endswith(".bias") or any(key in name for key in NO_DECAY_KEYS):
                no_decay.append(parameter)
            else:
                decay.append(parameter)
        return [{"params": decay, "weight_decay": self.hparams.weight_decay},
                {"params": no_decay, "weight_decay": 0.0}]

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameter_groups(), lr=self.hparams.lr)
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(self.hparams.warmup_steps, total_steps)
        floor = self.hparams.min_lr / self.hparams.lr

        def factor(step: int) -> float:
            if step < warmup:  # linear warm-up from 1e-3 of the rate, as OmniFD's LinearLR
                return 1e-3 + (1 - 1e-3) * step / warmup
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": LambdaLR(optimizer, factor), "interval": "step"}}

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from polyvision import __version__

        cls = type(self)
        checkpoint["polyvision"] = {"class_path": f"{cls.__module__}.{cls.__qualname__}", "version": __version__}
