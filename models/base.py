"""``MultiTaskModule``: a backbone, an optional neck and a dict of task heads.

A training batch is a dict ``source -> sub-batch`` (what Lightning's ``CombinedLoader``
yields for mixed image/video training) or a single sub-batch carrying its ``source`` key.
``sources`` maps each source to the heads that read it. Per sub-batch:

- **inputs**: the model reads the first of its declared ``input_keys`` the sub-batch holds
  (default ``image`` or ``video``; a region-feature captioner ``regions``, a token model
  ``tokens``). A uint8 picture is normalised on the device; anything else reaches the
  backbone as it is. A backbone whose ``forward`` takes a ``mask`` argument also gets the
  input's padding mask (``INPUT_MASK_KEYS``: ``region_mask`` for ``regions``, ...). A
  sub-batch with none of the declared inputs is a ``ConfigError`` naming both sides.
- **features**: the backbone (and the neck) run once; ``extract_features`` builds the
  ``features`` dict every head reads (keys and who fills them: ``polyvision.heads.base``).
- **training**: each head's ``training_loss(features, batch)`` (by default ``loss`` of
  ``forward``), weighted by ``loss_weights`` and summed; every term is logged.
- **validation and test**: the teacher-forced ``forward`` gives the logged loss, each
  head's ``generate`` feeds its metrics; the configured evaluation protocols
  (``polyvision.models.evaluation``, e.g. OmniFD's full-video evaluation) see the same
  outputs and log their own metrics at the end of the epoch.
- **prediction**: ``generate`` then ``predict``, one JSON-serialisable record per sample.

The optimiser and the learning-rate schedule are plain-data ``class_path``/``init_args``
specs, so checkpoints hold plain data. Systems whose structure differs (STATE's test-time
perturbation) override the step methods they need.
"""
from __future__ import annotations

import inspect
import os
from collections.abc import Iterator, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from polyvision.datamodules.geometry import geometry_of
from polyvision.datamodules.seeding import SEED_ENV, run_seed, seed_step
from polyvision.errors import ConfigError
from polyvision.heads.base import Head, module_spec, remember_init_args, update_metrics
from polyvision.models.backbones import build_backbone
from polyvision.models.evaluation import EvaluationProtocol, select_samples
from polyvision.version import __version__
from polyvision.models.layers import IMAGENET_MEAN, IMAGENET_STD, import_class

# The padding mask that goes with each input a model may declare: (B, T) or (B, N) bool, True
# on real frames, regions or tokens.
INPUT_MASK_KEYS = {"video": "frame_mask", "regions": "region_mask", "tokens": "token_mask"}

DEFAULT_OPTIMIZER = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-4, "weight_decay": 1e-4}}


def generates_differently(head: Head) -> bool:
    """Whether ``head`` decodes at inference differently from its teacher-forced ``forward``;
    when it does not, evaluation reuses the ``forward`` outputs instead of running it twice."""
    return type(head).generate is not Head.generate


def check_spec(spec: dict[str, Any], where: str, base: type, extra_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """A plain-data ``{"class_path", "init_args"}`` spec of a ``base`` subclass, checked at
    construction (so a bad config fails before training); returned as a plain dict."""
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ConfigError(f"{where}: a spec is {{class_path: ..., init_args: {{...}}}}, got {spec!r}")
    unknown = sorted(set(spec) - {"class_path", "init_args", *extra_keys})
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}' (a spec has class_path, init_args"
                          + "".join(f", {key}" for key in extra_keys) + ")")
    cls = import_class(spec["class_path"], where)
    if not issubclass(cls, base):
        raise ConfigError(f"{where}: {spec['class_path']} is not a {base.__module__}.{base.__qualname__}")
    return {**spec, "init_args": dict(spec.get("init_args") or {})}


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


def rebuild_train_loader_after_restore(trainer: pl.Trainer) -> None:
    """``estimated_stepping_batches`` builds the training loader and starts its iterator, and in
    a resumed fit that happens before the checkpoint's loop counters are restored: the sampler
    would draw epoch 0's order for the resumed epoch. Drop that loader; the fit loop builds it
    again once the counters are back (Lightning 2.6 internals, hence this one guarded place)."""
    fit_loop = getattr(trainer, "fit_loop", None)
    if getattr(trainer, "ckpt_path", None) is None or getattr(fit_loop, "_combined_loader", None) is None:
        return
    fetcher = getattr(fit_loop, "_data_fetcher", None)
    if fetcher is not None:
        fetcher.teardown()
    fit_loop._combined_loader = None


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
        input_geometry: how each source's inputs were cut (``{source: {"input": "image"|"video",
            "size": ..., "clip_len": ..., ...}}``, see ``polyvision.datamodules.geometry``). Not
            set by hand: the data config is its one source, copied in when a trainer sets the
            model up with a datamodule and saved in the checkpoint, so ``polyvision infer``
            cuts images and videos exactly as the test loop did.
        input_keys: the batch keys the backbone may read, first present wins (default
            ``image``, ``video``).
        optimizer: ``{"class_path": "torch.optim.<Optimizer>", "init_args": {...}}`` (default
            AdamW, lr 1e-4, weight decay 1e-4). Its weight decay applies to the parameters
            outside ``no_decay_keys``, norms and biases; those get none.
        scheduler: ``{"class_path": ..., "init_args": {...}, "interval": "step"|"epoch"}`` of a
            ``torch.optim.lr_scheduler`` class or ``polyvision.models.schedules.WarmupCosine``
            (see ``polyvision.models.schedules``); ``None`` keeps the rate constant.
        no_decay_keys: parameter-name fragments that get no weight decay besides norms and
            biases; ``None``: the system's own (``default_no_decay_keys``; OmniFD: position tables).
        evaluation: evaluation protocols run in validation and test besides the heads' metrics
            (``polyvision.models.evaluation``); ``None``: the system's own
            (``default_evaluation()``; OmniFD: ``FullVideoEvaluation``), ``[]``: none.
        mean, std: input normalisation (uint8 pictures are scaled to [0, 1] first).
    """

    # Parameter-name fragments that get no weight decay when ``no_decay_keys`` is None.
    default_no_decay_keys: tuple[str, ...] = ()

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
        input_geometry: dict[str, dict[str, Any]] | None = None,
        input_keys: Sequence[str] = ("image", "video"),
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        no_decay_keys: list[str] | None = None,
        evaluation: list[EvaluationProtocol] | None = None,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ):
        super().__init__()
        # Heads, neck and evaluation protocols are saved as class_path/init_args specs, never
        # pickled objects, so a checkpoint holds plain data whether the model came from YAML
        # or from Python.
        self.save_hyperparameters(ignore=["heads", "neck", "evaluation"])
        self.hparams["heads"] = {name: module_spec(head) for name, head in heads.items()}
        self.hparams["neck"] = module_spec(neck) if neck is not None else None
        self.hparams["evaluation"] = [module_spec(p) for p in evaluation] if evaluation is not None else None
        if not heads:
            raise ConfigError("model.heads: at least one head is needed")
        for name, head in heads.items():
            if not isinstance(head, Head):
                raise ConfigError(f"model.heads.{name}: {type(head).__name__} is not a polyvision Head")
        self.input_keys = tuple(input_keys)
        if not self.input_keys:
            raise ConfigError("model.input_keys: a model reads at least one batch key")
        self.optimizer_spec = check_spec(optimizer or DEFAULT_OPTIMIZER, "model.optimizer", torch.optim.Optimizer)
        self.scheduler_spec = (check_spec(scheduler, "model.scheduler", torch.optim.lr_scheduler.LRScheduler,
                                          extra_keys=("interval", "frequency"))
                               if scheduler is not None else None)
        self.no_decay_keys = tuple(no_decay_keys) if no_decay_keys is not None else self.default_no_decay_keys
        self.backbone = build_backbone(backbone, pretrained=pretrained, **(backbone_kwargs or {}))
        # Sequence and region encoders need the padding mask of their input.
        self.backbone_takes_mask = "mask" in inspect.signature(self.backbone.forward).parameters
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
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.val_metrics = nn.ModuleDict({n: h.metrics().clone(prefix=f"val/{n}/") for n, h in heads.items()})
        self.test_metrics = nn.ModuleDict({n: h.metrics().clone(prefix=f"test/{n}/") for n, h in heads.items()})
        self.skipped_samples = {"train": 0, "val": 0, "test": 0, "predict": 0}
        self.evaluation_protocols = list(evaluation) if evaluation is not None else self.default_evaluation()

    @property
    def input_geometry(self) -> dict[str, dict[str, Any]] | None:
        """The geometry of the data the model was last set up with (see the class docstring)."""
        return self.hparams.get("input_geometry")

    def setup(self, stage: str) -> None:
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        geometry = geometry_of(datamodule)
        if geometry is not None:
            self.hparams["input_geometry"] = geometry

    def default_evaluation(self) -> list[EvaluationProtocol]:
        """The evaluation protocols of this system when ``evaluation`` is None (none here)."""
        return []

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
        """uint8 (B,3,H,W) or (B,3,T,H,W) -> normalised float; anything else (float pictures,
        region features, token ids) is returned as it is."""
        if x.dtype != torch.uint8 or x.dim() not in (4, 5):
            return x
        mean, std = self.pixel_mean, self.pixel_std
        if x.dim() == 5:
            mean, std = mean.unsqueeze(2), std.unsqueeze(2)
        return (x.float() / 255.0 - mean) / std

    def model_input(self, batch: dict[str, Any]) -> tuple[str, Tensor]:
        """The first declared input the sub-batch holds, as ``(key, tensor)``."""
        for key in self.input_keys:
            if isinstance(batch.get(key), Tensor):
                return key, batch[key]
        reads = " or ".join(repr(key) for key in self.input_keys)
        has = ", ".join(repr(key) for key in batch) or "no keys"
        raise ConfigError(f"{type(self).__name__} reads {reads}; this batch has {has}")

    def extract_features(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The ``features`` dict of one sub-batch (its keys: ``polyvision.heads.base``)."""
        key, x = self.model_input(batch)
        inputs = self.normalize(x)
        mask = batch.get(INPUT_MASK_KEYS.get(key, ""))
        mask = mask.bool() if isinstance(mask, Tensor) else None
        maps = self.backbone(inputs, mask=mask) if self.backbone_takes_mask else self.backbone(inputs)
        features: dict[str, Any] = {"inputs": inputs, "maps": maps}
        if maps[-1].dim() == 3:  # a token set (B, N, C): what a decoder attends to
            memory = maps[-1]
            if mask is None:
                mask = torch.ones(memory.shape[:2], dtype=torch.bool, device=memory.device)
            elif mask.shape != memory.shape[:2]:
                raise ValueError(f"the '{key}' mask {tuple(mask.shape)} does not fit the backbone's tokens "
                                 f"{tuple(memory.shape)}")
            features["memory"], features["memory_mask"] = memory, mask
        if self.neck is not None:
            features["latents"] = self.neck(maps, batch)
        return features

    def forward(self, batch: dict[str, Any], heads: list[str] | None = None) -> dict[str, dict[str, Tensor]]:
        """One sub-batch -> ``{head name: head outputs}`` of the teacher-forced ``forward`` of
        ``heads`` (default: the heads its source feeds)."""
        features = self.extract_features(batch)
        names = self.heads_for(batch.get("source")) if heads is None else heads
        return {name: self.heads[name](features, batch) for name in names}

    def generate(self, batch: dict[str, Any], heads: list[str] | None = None) -> dict[str, dict[str, Tensor]]:
        """One sub-batch -> ``{head name: outputs of its generate}``: what ``predict`` reads."""
        features = self.extract_features(batch)
        names = self.heads_for(batch.get("source")) if heads is None else heads
        return {name: self.heads[name].generate(features, batch) for name in names}

    def sub_batches(self, batch: dict[str, Any]) -> Iterator[tuple[str | None, dict[str, Any]]]:
        """``(source, sub-batch)`` pairs of a batch: itself when it is one sub-batch, else the
        entries of a ``CombinedLoader`` dict (whose keys name the sources)."""
        # Sources are often named after their input ("image"), so tell a lone sub-batch by its
        # values: a source name, a declared input, or no sub-batch dicts at all.
        if (isinstance(batch.get("source"), str) or any(isinstance(batch.get(k), Tensor) for k in self.input_keys)
                or not any(isinstance(value, dict) for value in batch.values())):
            yield batch.get("source"), batch
            return
        for source, sub_batch in batch.items():
            if isinstance(sub_batch, dict):
                sub_batch["source"] = source  # CombinedLoader's key names the source
                yield source, sub_batch

    def batch_size_of(self, sub_batch: dict[str, Any]) -> int:
        for key in self.input_keys:
            if isinstance(sub_batch.get(key), Tensor):
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

    def training_losses(self, sub_batch: dict[str, Any]) -> dict[str, Tensor]:
        """``{"<head>/<term>": loss}`` over the heads the sub-batch feeds: each head's
        ``training_loss`` on features computed once."""
        names = self.heads_for(sub_batch.get("source"))
        if not names:
            return {}
        features = self.extract_features(sub_batch)
        losses: dict[str, Tensor] = {}
        for name in names:
            for term, value in self.heads[name].training_loss(features, sub_batch).items():
                losses[f"{name}/{term}"] = value
        return losses

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        total: Tensor | None = None
        for _, sub_batch in self.sub_batches(batch):
            self.count_skipped("train", sub_batch)
            if not sub_batch.get("meta"):
                continue
            losses = self.training_losses(sub_batch)
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

    def standard_samples(self, sub_batch: dict[str, Any]) -> list[int] | None:
        """The samples the heads' standard metrics score: those every evaluation protocol
        keeps (``None``: all)."""
        kept: list[int] | None = None
        for protocol in self.evaluation_protocols:
            chosen = protocol.standard_samples(sub_batch)
            if chosen is not None:
                kept = chosen if kept is None else [index for index in kept if index in chosen]
        return kept

    def evaluation_step(self, stage: str, batch: dict[str, Any]) -> None:
        collections = self.val_metrics if stage == "val" else self.test_metrics
        for source, sub_batch in self.sub_batches(batch):
            self.count_skipped(stage, sub_batch)
            names = self.heads_for(source, evaluation=True)
            if not sub_batch.get("meta") or not names:
                continue
            features = self.extract_features(sub_batch)
            outputs = {name: self.heads[name](features, sub_batch) for name in names}
            losses = self.compute_losses(outputs, sub_batch)
            if losses:
                name = f"{stage}/loss" if len(self.sources) <= 1 else f"{stage}/{source}/loss"
                self.log(name, self.weighted_total(losses), batch_size=self.batch_size_of(sub_batch),
                         sync_dist=True, add_dataloader_idx=False)
            kept = self.standard_samples(sub_batch)
            for name in names:
                head = self.heads[name]
                generated = head.generate(features, sub_batch) if generates_differently(head) else outputs[name]
                inputs = head.metric_inputs(generated, sub_batch)
                if inputs is None:
                    continue
                if kept is None:
                    update_metrics(collections[name], inputs)
                elif kept:
                    update_metrics(collections[name], select_samples(inputs, kept))
                for protocol in self.evaluation_protocols:
                    protocol.update(stage, name, head, generated, sub_batch)

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

    def log_evaluation(self, stage: str) -> None:
        """Log the epoch's standard metrics and each evaluation protocol's, then forget the epoch."""
        self.log_metrics(self.val_metrics if stage == "val" else self.test_metrics)
        for protocol in self.evaluation_protocols:
            values = protocol.compute(stage, self)
            if values:
                self.log_dict(values, sync_dist=False)  # protocols gather across ranks themselves
            protocol.reset(stage)

    def on_validation_epoch_end(self) -> None:
        if self._trainer is not None and self.trainer.sanity_checking:
            # Lightning discards what the sanity check logs; two batches would only warn about
            # metrics undefined on them (one class seen, no segment).
            for collection in self.val_metrics.values():
                collection.reset()
            for protocol in self.evaluation_protocols:
                protocol.reset("val")
            return
        self.log_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self.log_evaluation("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for _, sub_batch in self.sub_batches(batch):
            self.count_skipped("predict", sub_batch)
            if not sub_batch.get("meta"):
                continue
            outputs = self.generate(sub_batch)
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
        """Two groups: parameters with the optimiser's weight decay, and norms, biases and
        ``no_decay_keys`` parameters with none."""
        decay, no_decay = [], []
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            if parameter.ndim <= 1 or name.endswith(".bias") or any(key in name for key in self.no_decay_keys):
                no_decay.append(parameter)
            else:
                decay.append(parameter)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    def configure_optimizers(self):
        optimizer_class = import_class(self.optimizer_spec["class_path"], "model.optimizer")
        optimizer = optimizer_class(self.parameter_groups(), **self.optimizer_spec.get("init_args", {}))
        if self.scheduler_spec is None:
            return optimizer
        spec = self.scheduler_spec
        scheduler_class = import_class(spec["class_path"], "model.scheduler")
        init_args = dict(spec.get("init_args") or {})
        if "total_steps" in inspect.signature(scheduler_class).parameters:
            if "total_steps" not in init_args:
                init_args["total_steps"] = max(1, int(self.trainer.estimated_stepping_batches))
                rebuild_train_loader_after_restore(self.trainer)
        scheduler = {"scheduler": scheduler_class(optimizer, **init_args), "interval": spec.get("interval", "step")}
        if "frequency" in spec:
            scheduler["frequency"] = spec["frequency"]
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    # ----------------------------------------------------------------- checkpoints
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Dropout and drop-path draw from (run seed, step, rank), not from generator state a
        # checkpoint does not hold: a resumed run repeats the uninterrupted one.
        seed_step(self.trainer.global_step, self.trainer.global_rank)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        cls = type(self)
        checkpoint["polyvision"] = {"class_path": f"{cls.__module__}.{cls.__qualname__}", "version": __version__,
                                    "seed": run_seed()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Resuming a fit: continue with the seed the run began with (every random stream is
        # derived from it), whatever this start's seed_everything chose.
        trainer = self._trainer
        seed = (checkpoint.get("polyvision") or {}).get("seed")
        if seed is not None and trainer is not None and trainer.state.fn == "fit":
            os.environ[SEED_ENV] = str(int(seed))
