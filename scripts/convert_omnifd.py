"""``polyvision convert omnifd SRC OUT.ckpt [--config CONFIG]``: OmniFD's released weights onto
the OmniFD model of one of our paper configs.

The release (github.com/haotianll/OmniFD, README model zoo, e.g.
``omnifd_swin-s_50k_forgerynet.pth``) is an MMEngine checkpoint: ``{"meta", "state_dict", ...}``
or a bare state dict, possibly with DataParallel's ``module.`` prefix. Its key names follow the
module attributes of the official code:

- ``backbone.trunk.*``: ``SwinTransformerOmni.trunk``, a Video-Swin ``SwinTransformer3D``
  (``mmpretrain/models/omnifd/backbone/swin_omni.py``): ``patch_embed.{proj,norm}``,
  ``layers.{s}.blocks.{b}.{norm1,attn.{qkv,proj,relative_position_bias_table,
  relative_position_index},norm2,mlp.{fc1,fc2}}``, ``layers.{s}.downsample.{norm,reduction}``,
  ``norm``. Ours keeps torchvision's ``swin3d`` names (``models/backbones.py``
  ``VideoSwinBackbone``): ``features.{2s}.{b}.*`` with ``mlp.{0,3}``, ``features.{2s+1}.*``
  for the patch merging after stage ``s``; the tensors are the same (same qkv layout,
  same merging order, same relative-position index formula).
- ``neck.*``: ``Interaction`` (``mmpretrain/models/omnifd/module.py``): ``module.latents``,
  ``module.layers.{l}.{0: Attention (norm_media, norm_latents, to_q, to_kv, to_out),
  1: FeedForward (0, 1, 3)}``, ``module.norm``, ``stage_embed`` ``(4, 1, D, 1, 1, 1)`` and
  ``proj.{i}.{0,1}``. The release indexes stages from the LAST (it reverses
  ``feat_channels``: ``proj.0`` reads stage 3); ours from the first, so ``proj.{i}`` becomes
  ``proj.{3-i}`` and ``stage_embed`` is flipped to ``(4, D)``.
- ``head.decoder_modules.{image,video}.fc``: ``ImageClsHead``/``VideoClsHead``
  (``head/cls.py``).
- ``head.decoder_modules.spatial.*``: ``SpatialHead`` (``head/spatial.py``):
  ``convs.{0,1}.conv`` (ConvModule without norm), ``proj.{0,1}`` (latents -> kernel) and
  ``conv_seg`` (``Linear(num_latents, 1)`` across the latent axis) -> ours ``convs.{0,2}``,
  ``kernel_proj``, ``kernel_pool``.
- ``head.decoder_modules.temporal.*``: ``TemporalHead`` (``head/temporal.py``,
  ``head/temporal_helper.py``): ``projection.{embed.0.{conv,norm},stem.0,branch}`` (transformer
  blocks ``ln1, ln2, attn.{query,key,value}_conv.conv, attn.{query,key,value}_norm,
  attn.{query,key,value,proj}, mlp.{0,3}, drop_path_{attn,mlp}.scale``),
  ``neck.fpn_norms.{l}``, ``rpn_head.{cls_convs,reg_convs}.{i}.{conv,norm}``,
  ``rpn_head.{cls_head,reg_head}``, ``rpn_head.scale.{l}.scale`` (one scalar per level; ours
  is one vector ``rpn.scales``), ``rpn_head.sample_proj`` and ``rpn_head.fuse_block`` (ours
  ``rpn.fuse.latent_proj``/``attn``/``ff``) and the ``loss_normalizer`` buffer.

A single-task config (``ffpp_video.yaml``, ``lavdf.yaml``, ...) takes the heads it has, as the
release's runner loads a unified checkpoint non-strictly into a single-task model; the other
heads are reported as dropped ("not in this config").

Known differences, reported in the table: the release's temporal ``FuseBlock`` ends with a
LayerNorm (``fuse_block.norm``) that ours lacks, so it is dropped and the temporal head's
scores are not the release's; see README "Pretrained weights" for the rest.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from polyvision.errors import ConfigError, WeightsError
from polyvision.scripts.convert_rules import (Mapping, Rule, map_state_dict, match_rules, read_release_state_dict,
                                               save_atomically)

RELEASE_URL = "github.com/haotianll/OmniFD"
DEFAULT_CONFIG = "omnifd/forgerynet_swin_s.yaml"  # under polyvision/configs/
NAMES = {"system": "OmniFD", "table": "omnifd_rules() in polyvision/scripts/convert_omnifd.py"}

# The release's architecture (configs_omnifd/unified/omnifd_swin-s_50k_forgerynet.py): the rules
# cover every block a release can have; a config with fewer takes a release with fewer.
RELEASE_DEPTHS = (2, 2, 18, 2)  # Swin-S (Swin-T's [2, 2, 6, 2] is a subset)
RELEASE_NECK_DEPTH = 3  # InteractionModule(depth=3)
RELEASE_STAGES = 4  # Interaction(feat_channels=[192, 384, 768, 768])
RELEASE_LEVELS = 6  # TemporalProj(arch=(1, 1, 5)): stem + 5 applications of the shared branch
RELEASE_HEAD_CONVS = 2  # AnchorFreeHead(num_convs=2)
RELEASE_HEADS = {  # release decoder name -> the class our config must give the head of that name
    "image": "ClassificationHead", "video": "ClassificationHead", "spatial": "SpatialHead",
    "temporal": "TemporalLocalizationHead"}

# Video-Swin block names -> torchvision swin3d block names (only the ones that differ).
SWIN_BLOCK_RENAMES = {"mlp.fc1": "mlp.0", "mlp.fc2": "mlp.3"}
# ActionFormer-style transformer block (temporal_helper.TransformerBlock) -> ours (TemporalTransformerBlock).
TEMPORAL_BLOCK_RENAMES = {
    "ln1": "norm1.norm", "ln2": "norm2.norm", "mlp.3": "mlp.2",
    "attn.query_conv.conv": "attn.q_conv", "attn.key_conv.conv": "attn.k_conv", "attn.value_conv.conv": "attn.v_conv",
    "attn.query_norm": "attn.q_norm.norm", "attn.key_norm": "attn.k_norm.norm", "attn.value_norm": "attn.v_norm.norm",
}

# Our weights the release may not have: regex -> why; they keep the model's own values.
OMNIFD_NOT_IN_RELEASE = {
    r"\.relative_position_index$": "a buffer computed from the window size (same formula as the release's); "
                                   "kept from our model when the file leaves it out",
}


def stage_embed_to_ours(weight):
    """The release's ``(stages, 1, D, 1, 1, 1)`` stage embedding, indexed from the last stage,
    -> ours ``(stages, D)`` indexed from the first."""
    return weight.flatten(1).flip(0).contiguous()


def stage_embed_source_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    stages, dim = shape
    return (stages, 1, dim, 1, 1, 1)


def omnifd_rules(heads: dict[str, str], config: str, fuse_norm: bool = True) -> list[Rule]:
    """The release -> polyvision mapping of OmniFD for a model whose heads are ``heads`` (our
    head name -> class name); release heads our config does not have are dropped."""
    rules: list[Rule] = []
    trunk = "backbone.trunk"
    rules += [
        Rule(f"{trunk}.patch_embed", "backbone.patch_embed", "renamed", "patch embedding (Conv3d + LayerNorm)"),
        Rule(f"{trunk}.norm", "backbone.norm", "renamed", "the trunk's final LayerNorm (last stage)"),
    ]
    for stage, depth in enumerate(RELEASE_DEPTHS):
        for block in range(depth):
            source, ours = f"{trunk}.layers.{stage}.blocks.{block}", f"backbone.features.{2 * stage}.{block}"
            rules.append(Rule(source, ours, "renamed", "Swin block: layers.s.blocks.b -> features.2s.b (torchvision swin3d)"))
            rules += [Rule(f"{source}.{theirs}", f"{ours}.{mine}", "renamed", "Swin MLP: fc1/fc2 -> mlp.0/mlp.3")
                      for theirs, mine in SWIN_BLOCK_RENAMES.items()]
        if stage < len(RELEASE_DEPTHS) - 1:
            rules.append(Rule(f"{trunk}.layers.{stage}.downsample", f"backbone.features.{2 * stage + 1}", "renamed",
                              "patch merging after stage s -> features.2s+1 (same concatenation order)"))
    # Interaction neck: the Perceiver layers keep their names but norm_media; stages are reversed.
    rules += [
        Rule("neck.module.latents", "neck.latents", "renamed", "interaction latents"),
        Rule("neck.module.layers", "neck.layers", "renamed", "interaction layers (attention, feed-forward)"),
        Rule("neck.module.norm", "neck.norm", "renamed", "interaction output LayerNorm"),
        Rule("neck.stage_embed", "neck.stage_embed", "reshaped",
             "(4,1,D,1,1,1) from the last stage -> (4,D) from the first", stage_embed_to_ours, stage_embed_source_shape),
    ]
    rules += [Rule(f"neck.module.layers.{layer}.0.norm_media", f"neck.layers.{layer}.0.norm_tokens", "renamed",
                   "attention's token LayerNorm: norm_media -> norm_tokens") for layer in range(RELEASE_NECK_DEPTH)]
    rules += [Rule(f"neck.proj.{index}", f"neck.proj.{RELEASE_STAGES - 1 - index}", "renamed",
                   "stage projections: the release's proj.i reads stage 3-i") for index in range(RELEASE_STAGES)]
    release = "head.decoder_modules"
    for name in RELEASE_HEADS:
        source, ours = f"{release}.{name}", f"heads.{name}"
        if name not in heads:
            rules.append(Rule(source, None, "dropped", f"not in this config ({config})"))
            continue
        if name in ("image", "video"):
            rules.append(Rule(f"{source}.fc", f"{ours}.fc", "renamed", "classifier on the mean latent"))
        elif name == "spatial":
            rules += [
                Rule(f"{source}.convs.0.conv", f"{ours}.convs.0", "renamed", "spatial 3x3 convs (ReLU between)"),
                Rule(f"{source}.convs.1.conv", f"{ours}.convs.2", "renamed", "spatial 3x3 convs (ReLU between)"),
                Rule(f"{source}.proj", f"{ours}.kernel_proj", "renamed", "latents -> dynamic kernel (Linear + LayerNorm)"),
                Rule(f"{source}.conv_seg", f"{ours}.kernel_pool", "renamed", "Linear across the latents (replaces conv_seg)"),
            ]
        else:
            rules += temporal_rules(source, ours, fuse_norm)
    rules.append(Rule("data_preprocessor", None, "dropped", "input normalisation constants (ours: the config's data)"))
    return rules


def temporal_rules(source: str, ours: str, fuse_norm: bool = True) -> list[Rule]:
    rules = [
        Rule(f"{source}.projection.embed.0.conv", f"{ours}.proj.embed", "renamed", "temporal embedding conv"),
        Rule(f"{source}.projection.embed.0.norm", f"{ours}.proj.embed_norm.norm", "renamed", "temporal embedding LayerNorm"),
    ]
    for theirs, mine in ((f"{source}.projection.stem.0", f"{ours}.proj.stem"),
                         (f"{source}.projection.branch", f"{ours}.proj.branch.0")):
        rules.append(Rule(theirs, mine, "renamed", "temporal transformer blocks (stem; the one shared stride-2 branch)"))
        rules += [Rule(f"{theirs}.{a}", f"{mine}.{b}", "renamed", "temporal block: ln1/ln2, q/k/v conv + norm, mlp.3")
                  for a, b in TEMPORAL_BLOCK_RENAMES.items()]
    rules += [Rule(f"{source}.neck.fpn_norms.{level}", f"{ours}.fpn.norms.{level}.norm", "renamed",
                   "per-level FPN LayerNorm") for level in range(RELEASE_LEVELS)]
    rpn, mine = f"{source}.rpn_head", f"{ours}.rpn"
    for branch in ("cls_convs", "reg_convs"):
        for index in range(RELEASE_HEAD_CONVS):
            rules += [
                Rule(f"{rpn}.{branch}.{index}.conv", f"{mine}.{branch}.{index}.0", "renamed", "RPN branch conv + LayerNorm"),
                Rule(f"{rpn}.{branch}.{index}.norm", f"{mine}.{branch}.{index}.1.norm", "renamed", "RPN branch conv + LayerNorm"),
            ]
    rules += [
        Rule(f"{rpn}.cls_head", f"{mine}.cls_head", "renamed", "RPN output convs"),
        Rule(f"{rpn}.reg_head", f"{mine}.reg_head", "renamed", "RPN output convs"),
        Rule(f"{rpn}.sample_proj", f"{mine}.fuse.latent_proj", "renamed", "FuseBlock: latents projection"),
        Rule(f"{rpn}.fuse_block.layers.0.0", f"{mine}.fuse.attn", "renamed", "FuseBlock: cross-attention and feed-forward"),
        Rule(f"{rpn}.fuse_block.layers.0.0.norm_media", f"{mine}.fuse.attn.norm_tokens", "renamed",
             "FuseBlock: cross-attention and feed-forward"),
        Rule(f"{rpn}.fuse_block.layers.0.1", f"{mine}.fuse.ff", "renamed", "FuseBlock: cross-attention and feed-forward"),
        Rule(f"{rpn}.fuse_block.norm", f"{mine}.fuse.norm", "renamed", "FuseBlock's final LayerNorm")
        if fuse_norm else
        Rule(f"{rpn}.fuse_block.norm", None, "dropped", "FuseBlock's final LayerNorm: this config's temporal head has "
             "none (fuse_norm: false), so its temporal scores differ from the release"),
        Rule(f"{rpn}.loss_normalizer", f"{ours}.loss_normalizer", "renamed", "running normaliser of the temporal losses"),
    ]
    rules += [Rule(f"{rpn}.scale.{level}.scale", f"{mine}.scales", "stacked", "per-level Scale scalars -> one vector",
                   index=level) for level in range(RELEASE_LEVELS)]
    return rules


# --------------------------------------------------------------------------- config
def resolve_config(config: str | None) -> Path:
    """``--config`` as given, else under the package's ``configs/`` (``omnifd/lavdf.yaml`` or
    ``configs/omnifd/lavdf.yaml``); default the unified Swin-S config."""
    from polyvision.models.factory import CONFIG_DIR

    if not config:
        return CONFIG_DIR / DEFAULT_CONFIG
    given = Path(config).expanduser()
    for candidate in (given, CONFIG_DIR / given, CONFIG_DIR.parent / given):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"convert omnifd: --config {config}: no such file (the OmniFD paper configs are in "
                      f"{CONFIG_DIR / 'omnifd'})")


def read_config(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    model = (config or {}).get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict) or not str(model.get("class_path", "")).endswith("omnifd.OmniFD"):
        raise ConfigError(f"{path}: not an OmniFD config (its model is not polyvision.models.omnifd.OmniFD)")
    return config


def config_input_geometry(data: dict[str, Any] | None, path: Path) -> dict[str, dict[str, Any]]:
    """How the config's data cuts images and clips (what ``polyvision infer`` reads from the
    checkpoint): its datamodule's ``input_geometry()``, each source of a multi-source one."""
    from pytorch_lightning.cli import instantiate_class

    from polyvision.datamodules.geometry import geometry_of
    from polyvision.models.layers import check_trusted

    if not isinstance(data, dict) or "class_path" not in data:
        return {}
    try:
        check_trusted(data, f"{path}: data")
        init = dict(data.get("init_args") or {})
        sources = init.get("sources")
        if isinstance(sources, dict) and all(isinstance(spec, dict) and "class_path" in spec for spec in sources.values()):
            for spec in sources.values():
                check_trusted(spec, f"{path}: data.sources")
            init["sources"] = {name: instantiate_class((), spec) for name, spec in sources.items()}
        datamodule = instantiate_class((), {"class_path": data["class_path"], "init_args": init})
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - a data section that cannot be built here
        raise ConfigError(f"{path}: its data section does not build ({type(error).__name__}: "
                          f"{str(error).splitlines()[0][:160]}), so the input geometry is unknown") from None
    return geometry_of(datamodule) or {}


def config_label(path: Path) -> str:
    from polyvision.models.factory import CONFIG_DIR

    try:
        return str(path.resolve().relative_to(CONFIG_DIR.parent.resolve()))
    except ValueError:
        return path.name


# --------------------------------------------------------------------------- conversion
def model_heads(model: Any) -> dict[str, str]:
    """Our head name -> class name; a head named like a release head must be of its class."""
    heads = {name: type(head).__name__ for name, head in model.heads.items()}
    for name, cls in heads.items():
        if name in RELEASE_HEADS and cls != RELEASE_HEADS[name]:
            raise ConfigError(f"convert omnifd: the config's head '{name}' is a {cls}; the release's '{name}' "
                              f"decoder is a {RELEASE_HEADS[name]}")
    return heads


def map_omnifd(state: dict[str, Any], ours: dict[str, Any], heads: dict[str, str], config: str, path: Path) -> Mapping:
    """The release ``state`` onto our model's state dict ``ours`` (tensors or meta tensors)."""
    rules = omnifd_rules(heads, config, fuse_norm=any(key.endswith("rpn.fuse.norm.weight") for key in ours))
    return map_state_dict(state, ours, rules, OMNIFD_NOT_IN_RELEASE, (), path, **NAMES,
                          model=f"the OmniFD model of {config}")


def read_release(source: Path) -> dict[str, Any]:
    try:
        return read_release_state_dict(source)
    except WeightsError as error:
        if "refused" not in str(error):
            raise
        raise WeightsError(f"{error}; a full MMEngine checkpoint pickles training state (message_hub): if you trust "
                           f"it, keep only its weights where mmengine is installed: torch.save(torch.load(SRC, "
                           f"weights_only=False)['state_dict'], 'stripped.pth')") from None


def convert(source: Path, out: Path, config: str | None) -> Mapping:
    """OmniFD's release -> a polyvision ``OmniFD`` checkpoint of ``config`` (returns what was mapped)."""
    from polyvision.models.factory import build_from_spec

    config_path = resolve_config(config)
    spec = read_config(config_path)
    label = config_label(config_path)
    state = read_release(source)
    # Names first: a foreign file fails before the model is built (head rules: the release's all four).
    match_rules(state, omnifd_rules(RELEASE_HEADS, label), source, **NAMES)
    geometry = config_input_geometry(spec.get("data"), config_path)
    model = build_from_spec(spec["model"], str(config_path), pretrained=None)
    ours = model.state_dict()
    mapping = map_omnifd(state, ours, model_heads(model), label, source)
    model.load_state_dict(mapping.weights, strict=True)
    if geometry:
        model.hparams["input_geometry"] = geometry
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    checkpoint["polyvision"]["converted_from"] = {"system": "omnifd", "file": source.name, "release": RELEASE_URL,
                                                  "config": label}
    save_atomically(checkpoint, out)
    return mapping
