"""HybridNet: video-based commonsense captioning (Yu et al., "Hybrid Reasoning Network for
Video-based Commonsense Captioning", ACM MM 2021, arXiv 2108.02365; official code
github.com/yuweijiang/HybridNet).

``HybridNet`` is a ``MultiTaskModule`` of three parts:

- a **backbone** for the appearance stream: :class:`~polyvision.models.backbones.PrecomputedFeatures`
  over the paper's ResNet-152 frame features (``appearance``, 20 x 2048 per video), or any
  library backbone over decoded clips (``video``; e.g. the video Swin, whose last map is pooled
  over space into one token per temporal position);
- the **neck** :class:`VideoModalityEncoder` (release ``Encoder_video``): per modality a linear
  projection to 512 with dropout, a one-layer GRU and a learned modality embedding; appearance,
  I3D motion and SoundNet audio tokens (20 + 10 + 10 in the paper) concatenated;
- one :class:`~polyvision.heads.commonsense.HybridNetHead` (``v2c``): the caption decoder and the
  three commonsense decoders with relational memory and memory-routed attention.

Training follows the release (``train.py``, ``model/transformer/Optim.py``): the four
label-smoothed cross-entropies summed, Adam (betas 0.9 / 0.98, eps 1e-9) under
:class:`~polyvision.models.schedules.NoamDecay` (512, 5000 warm-up steps, exponent 0.8), and
gradient-norm clipping at 1 that applies (the trainer's ``gradient_clip_val``; the release calls
its clipping after ``optimizer.step``, where it has no effect).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polyvision.errors import ConfigError
from polyvision.heads.base import Head
from polyvision.heads.commonsense import HybridNetHead
from polyvision.models.base import MultiTaskModule, Neck

MODALITIES = ("appearance", "motion", "audio")  # the release's modality-embedding ids 0, 1, 2
HYBRIDNET_OPTIMIZER = {"class_path": "torch.optim.Adam",
                       "init_args": {"lr": 1.0, "betas": [0.9, 0.98], "eps": 1e-9, "weight_decay": 0.0}}
HYBRIDNET_SCHEDULE = {"class_path": "polyvision.models.schedules.NoamDecay",
                      "init_args": {"dim": 512, "warmup_steps": 5000, "exponent": 0.8}, "interval": "step"}
APPEARANCE_BACKBONE = {"class_path": "polyvision.models.backbones.PrecomputedFeatures", "init_args": {"channels": 2048}}


def appearance_tokens(feature_map: Tensor) -> Tensor:
    """The backbone's last output as ``(B, T, C)`` tokens: a token set as it is, a clip map
    ``(B, C, T, H, W)`` averaged over space (one token per temporal position), an image map
    ``(B, C, H, W)`` as its cells."""
    if feature_map.dim() == 3:
        return feature_map
    if feature_map.dim() == 5:
        return feature_map.mean(dim=(-2, -1)).transpose(1, 2)
    if feature_map.dim() == 4:
        return feature_map.flatten(2).transpose(1, 2)
    raise ConfigError(f"VideoModalityEncoder: cannot read a backbone output of shape {tuple(feature_map.shape)}")


class VideoModalityEncoder(Neck):
    """HybridNet's video encoder (module docstring): ``(B, dim, N)`` latent tokens, the
    modalities' tokens in :data:`MODALITIES` order.

    Args:
        dim: token width (512).
        modalities: which streams are encoded; ``appearance`` comes from the backbone, the
            others from the batch keys of the same name.
        motion_dim, audio_dim: widths of the I3D and SoundNet features (1024 each).
        dropout: dropout after each projection (0.1).
    """

    def __init__(self, dim: int = 512, modalities: Sequence[str] = MODALITIES, motion_dim: int = 1024,
                 audio_dim: int = 1024, dropout: float = 0.1):
        super().__init__()
        unknown = [name for name in modalities if name not in MODALITIES]
        if unknown or not modalities:
            raise ConfigError(f"VideoModalityEncoder: modalities are some of {', '.join(MODALITIES)}, got "
                              f"{list(modalities)}")
        self.dim, self.dropout = int(dim), float(dropout)
        self.modalities = [name for name in MODALITIES if name in modalities]
        self.widths = {"motion": int(motion_dim), "audio": int(audio_dim)}
        self.latent_channels = self.dim

    def bind(self, feature_channels: list[int], feature_strides: list[int]) -> None:
        widths = {**self.widths, "appearance": int(feature_channels[-1])}
        self.projections = nn.ModuleDict({name: nn.Sequential(nn.Linear(widths[name], self.dim), nn.Dropout(self.dropout))
                                          for name in self.modalities})
        self.recurrent = nn.ModuleDict({name: nn.GRU(self.dim, self.dim, batch_first=True) for name in self.modalities})
        self.modality_embedding = nn.Embedding(len(MODALITIES), self.dim)

    def forward(self, maps: list[Tensor], batch: dict[str, Any]) -> Tensor:
        tokens = []
        for name in self.modalities:
            stream = appearance_tokens(maps[-1]) if name == "appearance" else batch.get(name)
            if not isinstance(stream, Tensor):
                raise ConfigError(f"VideoModalityEncoder encodes {name} but the batch has no '{name}' features "
                                  f"(set the data's use_{name}: true, or drop {name} from the neck's modalities)")
            encoded, _ = self.recurrent[name](self.projections[name](stream.float()))
            index = torch.full(encoded.shape[:2], MODALITIES.index(name), dtype=torch.long, device=encoded.device)
            tokens.append(encoded + self.modality_embedding(index))
        return torch.cat(tokens, 1).transpose(1, 2)


class HybridNet(MultiTaskModule):
    """HybridNet with the release's training recipe (module docstring).

    Args:
        heads: default one ``v2c`` :class:`HybridNetHead` with the given vocabulary sizes.
        vocabulary_size, cms_vocabulary_size: the default head's vocabularies; ``None`` (default)
            takes the data's (V2C's ``msrvtt_new_info.json`` and ``v2c_info.json``) at setup.
        backbone: default :class:`PrecomputedFeatures` of 2048-d ResNet-152 frame features.
        neck: default :class:`VideoModalityEncoder` of the three modalities.
        input_keys: the batch keys read, first present wins (``appearance``, then ``video``).
        optimizer, scheduler: default Adam (0.9, 0.98, eps 1e-9) under ``NoamDecay``.
        heads, backbone_kwargs, ...: as ``MultiTaskModule``.
    """

    def __init__(self, heads: dict[str, Head] | None = None, vocabulary_size: int | None = None,
                 cms_vocabulary_size: int | None = None, backbone: str | dict[str, Any] | None = None,
                 neck: Neck | None = None, optimizer: dict[str, Any] | None = None,
                 scheduler: dict[str, Any] | None = None, input_keys: Sequence[str] = ("appearance", "video"),
                 **kwargs: Any):
        if heads is None:
            heads = {"v2c": HybridNetHead(vocabulary_size=vocabulary_size, cms_vocabulary_size=cms_vocabulary_size)}
        super().__init__(heads=heads, backbone=backbone or APPEARANCE_BACKBONE,
                         neck=neck if neck is not None else VideoModalityEncoder(),
                         optimizer=optimizer or HYBRIDNET_OPTIMIZER,
                         scheduler=scheduler if scheduler is not None else HYBRIDNET_SCHEDULE,
                         input_keys=input_keys, **kwargs)
        for key in ("vocabulary_size", "cms_vocabulary_size"):
            self.hparams.pop(key, None)  # the head's spec records them
        self.give_vocabularies(self.input_geometry, "the checkpoint's input geometry")

    def commonsense_heads(self) -> dict[str, HybridNetHead]:
        return {name: head for name, head in self.heads.items() if isinstance(head, HybridNetHead)}

    def give_vocabularies(self, geometry: dict[str, dict[str, Any]] | None, where: str) -> None:
        """Hand the data's words (``input_geometry[source]["vocabulary"]`` and
        ``["cms_vocabulary"]``) to the heads."""
        for source, entry in (geometry or {}).items():
            if isinstance(entry, dict) and entry.get("vocabulary") is not None:
                for head in self.commonsense_heads().values():
                    head.set_vocabularies(entry["vocabulary"], entry.get("cms_vocabulary"), f"{where} ({source})")

    def setup(self, stage: str) -> None:
        super().setup(stage)
        self.give_vocabularies(self.input_geometry, "the datamodule's vocabularies")

    def log_metrics(self, collections: nn.ModuleDict) -> None:
        """Each output's scores as ``<stage>/<head>/<output>/<key>`` (e.g.
        ``test/v2c/completion_intention/cider_d``; a collection of several caption scorers
        would name them ``..._cider_d``), the keys the leaderboard's V2C tables read."""
        for head_name, collection in collections.items():
            if not any(metric.update_count for metric in collection.values()):
                continue
            values = collection.compute()
            renamed = {}
            for key, value in values.items():
                for output in collection.keys(keep_base=True):
                    stem = f"{collection.prefix}{output}_"
                    if key.startswith(stem):
                        key = f"{collection.prefix}{output}/{key[len(stem):]}"
                        break
                renamed[key] = value
            self.log_dict(renamed, sync_dist=False)  # compute() already synchronised across ranks
            collection.reset()


__all__ = ["HybridNet", "VideoModalityEncoder", "appearance_tokens"]
