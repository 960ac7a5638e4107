"""Backbone factory: every backbone returns a list of feature maps and exposes
``out_channels`` and ``strides`` (spatial strides relative to the input).

A backbone is named by a string (``swin3d_t``/``swin3d_s`` or a timm model) or by a
``{"class_path": ..., "init_args": {...}}`` spec naming any ``nn.Module`` class under
``polyvision.`` or ``torch.nn.`` that honours this contract (STATE's ``STATEEncoder``), so a
system brings its own trunk without this file knowing it.

Images are ``(B, 3, H, W)`` and give NCHW maps; clips are ``(B, 3, T, H, W)`` and give
NCTHW maps. The video Swin treats an image as a one-frame clip and returns NCHW maps for
it, so 2D heads work on either kind of backbone.

Pretrained weights are local files only; nothing is downloaded.
"""
from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any

import timm
import torch
import torch.utils.checkpoint
from torch import Tensor, nn
from torchvision.models.video import swin_transformer as tv_swin3d

from polyvision.errors import ConfigError, WeightsError
from polyvision.models.layers import check_weights_file, import_class, load_state_dict_file
from polyvision.models.layers.window_attention import SDPAWindowAttention3d

# torchvision's video Swin presets, at the geometry OmniFD uses (embed 96, patch (2,4,4),
# window (8,7,7): configs_omnifd/unified/omnifd_swin-{t,s}_50k_forgerynet.py in
# github.com/haotianll/OmniFD).
# The video Swin's window attention: a fused kernel (default) or torchvision's reference.
WINDOW_ATTENTION = {"sdpa": SDPAWindowAttention3d, "torchvision": tv_swin3d.ShiftedWindowAttention3d}
VIDEO_SWIN_PRESETS: dict[str, dict[str, Any]] = {
    "swin3d_t": dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], stochastic_depth_prob=0.2),
    "swin3d_s": dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24], stochastic_depth_prob=0.3),
}


class TimmBackbone(nn.Module):
    """A timm 2D model (Swin, HRNet, ResNet, ...) as a multi-scale NCHW feature extractor."""

    def __init__(self, name: str, pretrained: str | None = None, out_indices: tuple[int, ...] | None = None, **kwargs: Any):
        super().__init__()
        if not timm.is_model(name):
            raise ConfigError(f"model.backbone: unknown backbone '{name}' (known: {', '.join(known_backbones())})")
        options: dict[str, Any] = dict(features_only=True, **kwargs)
        if out_indices is not None:
            options["out_indices"] = tuple(out_indices)
        if name.startswith("swin"):
            # timm returns NHWC for Swin unless features come from forward_intermediates.
            options.setdefault("feature_cls", "getter")
        if pretrained:
            # timm adapts a classifier checkpoint to the feature extractor itself.
            path = check_weights_file(pretrained)
            try:
                self.model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **options)
            except Exception as error:  # noqa: BLE001 - a file that does not fit this model
                raise WeightsError(f"{path}: does not fit {name} ({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None
        else:
            self.model = timm.create_model(name, pretrained=False, **options)
        self.out_channels: list[int] = list(self.model.feature_info.channels())
        self.strides: list[int] = list(self.model.feature_info.reduction())

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.dim() == 5:
            raise ValueError("a 2D backbone takes images (B,3,H,W); use swin3d_t/swin3d_s for clips")
        return list(self.model(x))


class VideoSwinBackbone(nn.Module):
    """torchvision's video Swin, returning each stage's output after its patch merging:
    channels [2C, 4C, 8C, 8C] at spatial strides [8, 16, 32, 32], the last one normalised,
    as OmniFD's trunk does. The temporal stride is 2 (patch T = 2, no temporal merging).

    ``attention``: ``"sdpa"`` (default) runs each window's attention through PyTorch's fused
    ``scaled_dot_product_attention`` (``models/layers/window_attention.py``), ``"torchvision"``
    through torchvision's own; the weights are the same and so are the outputs, to rounding.

    ``grad_checkpointing=True`` recomputes each Swin block's activations in the backward pass
    instead of storing them (OmniFD's ``with_cp``, on in its single-task configs): less memory
    for long clips, about a third more compute per training step. Results are unchanged."""

    def __init__(self, name: str = "swin3d_t", pretrained: str | None = None, grad_checkpointing: bool = False,
                 attention: str = "sdpa", **overrides: Any):
        super().__init__()
        self.grad_checkpointing = bool(grad_checkpointing)
        if attention not in WINDOW_ATTENTION:
            raise ConfigError(f"model.backbone_kwargs.attention: unknown '{attention}' (known: {', '.join(WINDOW_ATTENTION)})")
        if name not in VIDEO_SWIN_PRESETS:
            raise ConfigError(f"model.backbone: unknown video backbone '{name}' (known: {', '.join(VIDEO_SWIN_PRESETS)})")
        settings = dict(VIDEO_SWIN_PRESETS[name])
        if "drop_path_rate" in overrides:
            overrides["stochastic_depth_prob"] = overrides.pop("drop_path_rate")
        settings.update(overrides)
        settings.setdefault("patch_size", [2, 4, 4])
        settings.setdefault("window_size", [8, 7, 7])
        block = functools.partial(tv_swin3d.SwinTransformerBlock, attn_layer=WINDOW_ATTENTION[attention])
        trunk = tv_swin3d.SwinTransformer3d(num_classes=1, block=block, **settings)
        self.patch_embed = trunk.patch_embed
        self.pos_drop = trunk.pos_drop
        self.features = trunk.features
        self.norm = trunk.norm
        embed_dim = settings["embed_dim"]
        self.out_channels = [2 * embed_dim, 4 * embed_dim, 8 * embed_dim, 8 * embed_dim]
        self.strides = [8, 16, 32, 32]
        if pretrained:
            state = load_state_dict_file(pretrained)  # unwraps Omnivore's {"trunk": ...}
            if any(key.startswith("layers.") for key in state):
                state = omnivore_to_torchvision(state)
            load_filtered(self, state, pretrained)

    def forward(self, x: Tensor) -> list[Tensor]:
        is_image = x.dim() == 4
        if is_image:
            x = x.unsqueeze(2)
        x = self.pos_drop(self.patch_embed(x))  # (B, T', H', W', C)
        outputs = []
        # features = [stage0, merge0, stage1, merge1, stage2, merge2, stage3]: keep the output
        # after every merge, and the normalised last stage.
        checkpointing = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for index, layer in enumerate(self.features):
            if checkpointing and isinstance(layer, nn.Sequential):  # a stage's blocks, one at a time
                for block in layer:
                    x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = layer(x)
            if index in (1, 3, 5):
                outputs.append(x)
        outputs.append(self.norm(x))
        maps = [o.permute(0, 4, 1, 2, 3).contiguous() for o in outputs]  # NCTHW
        if is_image:
            maps = [m.mean(dim=2) if m.shape[2] > 1 else m.squeeze(2) for m in maps]
        return maps


def omnivore_to_torchvision(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename an Omnivore / Video-Swin trunk state dict to torchvision's ``swin3d`` names.

    ``layers.{s}.blocks.{b}.*`` -> ``features.{2s}.{b}.*`` (``mlp.fc1/fc2`` -> ``mlp.0/3``),
    ``layers.{s}.downsample.*`` -> ``features.{2s+1}.*``; ``patch_embed.*`` and ``norm.*`` keep
    their names. Omnivore's RGB-D ``depth_patch_embed.*`` and the (recomputed)
    ``relative_position_index`` buffers are dropped. The patch-merging concatenation order is
    the same in both implementations, so the weights carry over unchanged.
    """
    import re

    renamed: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("depth_patch_embed.") or key.endswith("relative_position_index"):
            continue
        block = re.match(r"layers\.(\d+)\.blocks\.(\d+)\.(.+)", key)
        merge = re.match(r"layers\.(\d+)\.downsample\.(.+)", key)
        if block:
            stage, index, rest = int(block.group(1)), block.group(2), block.group(3)
            rest = rest.replace("mlp.fc1.", "mlp.0.").replace("mlp.fc2.", "mlp.3.")
            key = f"features.{2 * stage}.{index}.{rest}"
        elif merge:
            key = f"features.{2 * int(merge.group(1)) + 1}.{merge.group(2)}"
        renamed[key] = value
    return renamed


def load_filtered(module: nn.Module, state: dict[str, Tensor], path: str | Path) -> tuple[list[str], list[str]]:
    """Load matching keys (classifier heads of the source are ignored); fail clearly when
    nothing or something essential does not fit."""
    own = module.state_dict()
    state = {k.removeprefix("module.").removeprefix("model."): v for k, v in state.items()}
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if not usable:
        raise WeightsError(f"{path}: no parameter of this file fits the backbone (first keys: {list(state)[:3]})")
    if mismatched:
        raise WeightsError(f"{path}: shape mismatch for {mismatched[0]} "
                           f"(file {tuple(state[mismatched[0]].shape)}, model {tuple(own[mismatched[0]].shape)})")
    result = module.load_state_dict(usable, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("relative_position_index")]
    if missing:
        raise WeightsError(f"{path}: {len(missing)} backbone parameters missing from the file (first: {missing[0]})")
    return list(result.missing_keys), list(result.unexpected_keys)


def known_backbones() -> list[str]:
    return sorted(VIDEO_SWIN_PRESETS) + ["any timm model, e.g. swin_tiny_patch4_window7_224, swin_small_patch4_window7_224, hrnet_w32, resnet50",
                                         "a {class_path, init_args} spec, e.g. polyvision.models.state.STATEEncoder"]


class PrecomputedFeatures(nn.Module):
    """The 'backbone' of features computed offline (bottom-up regions, per-frame CNN features):
    returns them ``(B, N, C)`` as one token set, optionally through a learned projection.

    Args:
        channels: the width of the features (2048 for bottom-up regions and ResNet-152 frames).
        projection: optional width of a learned linear projection (small test models only; the
            paper models read the raw features).
    """

    what = "features"  # what the features are, in messages

    def __init__(self, channels: int = 2048, projection: int | None = None):
        super().__init__()
        self.channels = int(channels)
        self.projection = nn.Linear(self.channels, int(projection)) if projection else None
        self.out_channels = [int(projection) if projection else self.channels]
        self.strides = [1]

    def forward(self, features: Tensor, mask: Tensor | None = None) -> list[Tensor]:
        if features.shape[-1] != self.channels:
            raise ConfigError(f"{type(self).__name__}: the {self.what} are {features.shape[-1]}-d, the model reads "
                              f"{self.channels}-d features (set the backbone's channels)")
        features = features.float()
        return [self.projection(features) if self.projection is not None else features]


def build_backbone(name: str | dict[str, Any], pretrained: str | None = None, **kwargs: Any) -> nn.Module:
    """Build a backbone: ``swin3d_t``/``swin3d_s`` (torchvision video Swin), any timm model
    name (Swin, HRNet, ResNet, ...), or a ``{"class_path", "init_args"}`` spec, whose
    ``init_args`` ``kwargs`` update. ``pretrained`` is a local weights file."""
    if isinstance(name, dict):
        return build_backbone_from_spec(name, pretrained, **kwargs)
    if name in VIDEO_SWIN_PRESETS:
        return VideoSwinBackbone(name, pretrained=pretrained, **kwargs)
    return TimmBackbone(name, pretrained=pretrained, **kwargs)


def build_backbone_from_spec(spec: dict[str, Any], pretrained: str | None = None, **kwargs: Any) -> nn.Module:
    """Instantiate the class a spec names with ``{**init_args, **kwargs}``. A class that takes
    no ``pretrained`` argument gets the file's matching parameters loaded after construction
    (every parameter of the module must be in the file)."""
    where = "model.backbone"
    unknown = sorted(set(spec) - {"class_path", "init_args"})
    if "class_path" not in spec or unknown:
        raise ConfigError(f"{where}: a backbone spec has class_path and init_args only, got {sorted(spec)}")
    cls = import_class(spec["class_path"], where)
    if not issubclass(cls, nn.Module):
        raise ConfigError(f"{where}: {spec['class_path']} is not a torch nn.Module")
    init_args = {**(spec.get("init_args") or {}), **kwargs}
    signature = inspect.signature(cls)
    takes_pretrained = "pretrained" in signature.parameters
    if takes_pretrained:
        init_args["pretrained"] = pretrained
    try:
        signature.bind(**init_args)
    except TypeError as error:  # a misspelt or missing argument
        raise ConfigError(f"{where}: {spec['class_path']}: {error}") from None
    backbone = cls(**init_args)
    missing = [attribute for attribute in ("out_channels", "strides") if not hasattr(backbone, attribute)]
    if missing:
        raise ConfigError(f"{where}: {spec['class_path']} has no {' and no '.join(missing)}; a backbone "
                          "exposes the channels and strides of the feature maps it returns")
    if pretrained and not takes_pretrained:
        load_filtered(backbone, load_state_dict_file(pretrained), pretrained)
    return backbone
