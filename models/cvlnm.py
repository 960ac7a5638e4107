"""CVLNM: image captioning with visual-linguistic neural modules (Yang, Zhang, Cai, "Learning to
Collocate Visual-Linguistic Neural Modules for Image Captioning", IJCV 2022, arXiv 2210.01338;
official code github.com/GCYZSL/CVLMN).

``CVLNM`` is a ``MultiTaskModule`` with one :class:`~polyvision.heads.captioning.CVLNMHead`
(``captions``) over bottom-up region features (:class:`RegionFeatures`, the ``regions`` input)
or over grid features of any library backbone computed from images (``image`` input). Its
training follows the release (``train.py``, ``opts.py``, README train command):

- cross-entropy with the part-of-speech syntax loss (weight 0.1) for epochs < ``syntax_epochs``
  (10), then cross-entropy alone;
- self-critical training from epoch ``self_critical_after`` (37): CIDEr-D reward with the
  training split's document frequencies (read from ``trainer.datamodule.references("train")``
  when the fit is set up), greedy baseline, 5 samples per image;
- Adam 5e-4 decayed ×0.8 every 5 epochs (:class:`~polyvision.models.schedules.EpochStepDecay`),
  the linguistic memory in its own group without weight decay and, as the release's separate
  memory optimiser, without rate decay; gradient value clipping at 0.1 is the trainer's
  (``gradient_clip_algorithm: value`` in the paper config).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from polyvision.heads.base import Head
from polyvision.heads.captioning import CaptionHead, CVLNMHead
from polyvision.models.backbones import PrecomputedFeatures
from polyvision.models.base import MultiTaskModule

CVLNM_OPTIMIZER = {"class_path": "torch.optim.Adam", "init_args": {"lr": 5e-4, "weight_decay": 0.0}}
CVLNM_SCHEDULE = {"class_path": "polyvision.models.schedules.EpochStepDecay",
                  "init_args": {"every": 5, "factor": 0.8}, "interval": "epoch"}
REGION_BACKBONE = {"class_path": "polyvision.models.cvlnm.RegionFeatures", "init_args": {"channels": 2048}}
MEMORY_PARAMETER = "memory_cell"


class RegionFeatures(PrecomputedFeatures):
    """The 'backbone' of precomputed region features: returns the regions ``(B, N, C)`` as the
    one token set heads attend to (``MultiTaskModule`` passes the ``region_mask``).

    Args:
        channels: the width of the region features (2048 for bottom-up features).
        projection: optional width of a learned linear projection of the regions (small test
            models only; the paper's modules read the raw features).
    """

    what = "regions"


class CVLNM(MultiTaskModule):
    """CVLNM with the release's training recipe (module docstring).

    Args:
        heads: default one ``captions`` :class:`CVLNMHead` of ``vocabulary_size`` words.
        vocabulary_size: the default head's vocabulary (9487: COCO Karpathy, count > 5).
        syntax_epochs: epochs trained with the syntax loss (release ``step2_train_after`` 10).
        self_critical_after: first self-critical epoch (release 37); ``None`` never.
        memory_lr_decay: whether the memory's learning rate follows the schedule (release: no).
        backbone: default :class:`RegionFeatures` of 2048-d bottom-up regions.
        input_keys: the batch keys read, first present wins (``regions``, then ``image``).
        heads, backbone_kwargs, optimizer, scheduler, ...: as ``MultiTaskModule``.
    """

    def __init__(self, heads: dict[str, Head] | None = None, vocabulary_size: int = 9487, syntax_epochs: int = 10,
                 self_critical_after: int | None = 37, memory_lr_decay: bool = False,
                 backbone: str | dict[str, Any] | None = None, optimizer: dict[str, Any] | None = None,
                 scheduler: dict[str, Any] | None = None, input_keys: Sequence[str] = ("regions", "image"),
                 **kwargs: Any):
        if heads is None:
            heads = {"captions": CVLNMHead(vocabulary_size=vocabulary_size)}
        super().__init__(heads=heads, backbone=backbone or REGION_BACKBONE, optimizer=optimizer or CVLNM_OPTIMIZER,
                         scheduler=scheduler if scheduler is not None else CVLNM_SCHEDULE, input_keys=input_keys,
                         **kwargs)
        self.hparams.pop("vocabulary_size", None)  # the head's spec records it
        self.syntax_epochs = int(syntax_epochs)
        self.self_critical_after = None if self_critical_after is None else int(self_critical_after)
        self.memory_lr_decay = bool(memory_lr_decay)
        self.give_vocabulary(self.input_geometry, "the checkpoint's input geometry")

    def caption_heads(self) -> dict[str, CaptionHead]:
        return {name: head for name, head in self.heads.items() if isinstance(head, CaptionHead)}

    def give_vocabulary(self, geometry: dict[str, dict[str, Any]] | None, where: str) -> None:
        """Hand the data's words (``input_geometry[source]["vocabulary"]``) to the caption heads."""
        for source, entry in (geometry or {}).items():
            if isinstance(entry, dict) and entry.get("vocabulary") is not None:
                for name, head in self.caption_heads().items():
                    head.set_vocabulary(entry["vocabulary"], f"{where} ({source})")

    # ------------------------------------------------------------------ training stages
    def setup(self, stage: str) -> None:
        super().setup(stage)
        self.give_vocabulary(self.input_geometry, "the datamodule's vocabulary")
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if stage == "fit" and self.self_critical_after is not None and hasattr(datamodule, "references"):
            corpus = datamodule.references("train")
            for head in self.caption_heads().values():
                head.set_reward_corpus(corpus)

    def set_epoch(self, epoch: int) -> None:
        """The stage of ``epoch``: syntax loss before ``syntax_epochs``, self-critical training
        from ``self_critical_after``."""
        for head in self.caption_heads().values():
            head.self_critical = self.self_critical_after is not None and epoch >= self.self_critical_after
            if isinstance(head, CVLNMHead):
                head.syntax_active = epoch < self.syntax_epochs

    def on_train_epoch_start(self) -> None:
        self.set_epoch(self.current_epoch)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        total = super().training_step(batch, batch_idx)
        for name, head in self.caption_heads().items():
            if head.self_critical and head.last_reward:
                for key, value in head.last_reward.items():
                    self.log(f"train/{name}/reward_{key}", value)
        return total

    # ------------------------------------------------------------------ optimisation
    def parameter_groups(self) -> list[dict[str, Any]]:
        """The usual two groups, and the linguistic memory alone: no weight decay and, unless
        ``memory_lr_decay``, a constant rate (the release trains it with its own optimiser)."""
        memory = [p for name, p in self.named_parameters() if name.endswith(MEMORY_PARAMETER) and p.requires_grad]
        groups = [{**group, "params": [p for p in group["params"] if all(p is not m for m in memory)]}
                  for group in super().parameter_groups()]
        if memory:
            groups.append({"params": memory, "weight_decay": 0.0, "scheduled": self.memory_lr_decay})
        return groups

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # The memory's init file is in the weights now: a checkpoint must load without it.
        hparams = checkpoint.get("hyper_parameters")
        if not isinstance(hparams, dict) or not isinstance(hparams.get("heads"), dict):
            return
        heads = {}
        for name, spec in hparams["heads"].items():
            if isinstance(spec, dict) and (spec.get("init_args") or {}).get("memory_init"):
                spec = {**spec, "init_args": {**spec["init_args"], "memory_init": None}}
            heads[name] = spec
        checkpoint["hyper_parameters"] = {**hparams, "heads": heads}


__all__ = ["CVLNM", "RegionFeatures"]
