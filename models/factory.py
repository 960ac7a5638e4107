"""``create_model``, ``load_model`` and ``list_models``: the Python entry points.

Named models are the ``model:`` sections of the YAML configs shipped in ``configs/``, so a
name builds exactly what ``polyvision fit --config`` would. Checkpoints are read with
``weights_only`` loading and rebuilt from their saved hyper-parameters alone.
"""
from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from polyvision.errors import ConfigError, WeightsError
from polyvision.models.layers import check_trusted, import_class

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# name -> (config file under configs/, what it is)
MODELS: dict[str, tuple[str, str]] = {
    "omnifd_swin_t": ("omnifd/forgerynet_swin_t.yaml", "OmniFD unified (4 tasks), video Swin-T trunk, paper size"),
    "omnifd_swin_s": ("omnifd/forgerynet_swin_s.yaml", "OmniFD unified (4 tasks), video Swin-S trunk, paper size"),
    "omnifd_ffpp_swin_t": ("omnifd/ffpp_swin_t.yaml", "OmniFD image classification + spatial localization, Swin-T"),
    "omnifd_ffpp_swin_s": ("omnifd/ffpp_swin_s.yaml", "OmniFD image classification + spatial localization, Swin-S"),
    "omnifd_ffpp_video": ("omnifd/ffpp_video.yaml", "OmniFD video classification on FF++, Swin-S"),
    "omnifd_lavdf": ("omnifd/lavdf.yaml", "OmniFD temporal localization on LAV-DF, Swin-S"),
    "omnifd_wilddeepfake": ("omnifd/wilddeepfake.yaml", "OmniFD video classification on WildDeepfake, Swin-S"),
    "omnifd_fmld": ("omnifd/fmld.yaml", "OmniFD spatial localization on FMLD (299 px), Swin-S"),
    "omnifd_synthetic": ("omnifd/synthetic.yaml", "OmniFD, small Swin, all four heads; tests and the demo (not a paper configuration)"),
    "omnifd_synthetic_ffpp": ("omnifd/synthetic_ffpp.yaml", "OmniFD, small Swin, image heads only; tests (not a paper configuration)"),
    "state_ped2": ("state/ped2.yaml", "STATE, paper size (3 layers): UCSD Ped2, ε 0.01, fusion 1/1"),
    "state_avenue": ("state/avenue.yaml", "STATE, paper size (3 layers): CUHK Avenue, ε 0.002, fusion 0.3/1"),
    "state_shanghaitech": ("state/shanghaitech.yaml", "STATE, paper size (5 layers): ShanghaiTech, ε 0.005, fusion 1/1"),
    "state_synthetic": ("state/synthetic.yaml", "STATE, small model for tests and the demo (not a paper configuration)"),
    "acr_hrnet_w32": ("acr/interhand.yaml", "ACR two-hand reconstruction, HRNet-W32 at 512, paper size (needs mano_dir)"),
    "acr_swin_t": ("acr/interhand_swin_t.yaml", "ACR two-hand reconstruction on a Swin-T trunk at 512 (needs mano_dir)"),
    "acr_synthetic": ("acr/synthetic.yaml", "ACR, small model on the generated hand model; tests and the demo (not a paper configuration)"),
    "cvlnm": ("cvlnm/coco.yaml", "CVLNM captioner on 2048-d bottom-up regions, paper size (COCO vocabulary 9487)"),
    "cvlnm_swin_t": ("cvlnm/coco_swin_t.yaml", "CVLNM captioner on Swin-T grid features from images, paper decoder size"),
    "cvlnm_synthetic": ("cvlnm/synthetic.yaml", "CVLNM, small model on the synthetic COCO; tests and the demo (not a paper configuration)"),
    "hybridnet": ("hybridnet/v2c.yaml", "HybridNet video commonsense captioner on precomputed ResNet-152/I3D/SoundNet features, paper size (vocabularies from the data)"),
    "hybridnet_swin_t": ("hybridnet/v2c_swin.yaml", "HybridNet from pixels through a video Swin-T, paper decoder size (vocabularies from the data)"),
    "hybridnet_synthetic": ("hybridnet/synthetic.yaml", "HybridNet, small model on the synthetic V2C; tests and the demo (not a paper configuration)"),
}


def list_models() -> list[str]:
    """Names accepted by ``create_model``."""
    return sorted(MODELS)


def model_config(name: str) -> dict[str, Any]:
    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}' (known: {', '.join(list_models())})")
    path = CONFIG_DIR / MODELS[name][0]
    return yaml.safe_load(path.read_text())["model"]


def build_from_spec(spec: dict[str, Any], where: str, **overrides: Any):
    """Build a LightningModule from ``{"class_path": ..., "init_args": {...}}`` the way the
    CLI does, so it saves the same hyper-parameters."""
    from pytorch_lightning.cli import instantiate_module

    from polyvision.models.base import MultiTaskModule

    check_trusted(spec, where)
    cls = import_class(spec["class_path"], where)
    if not (isinstance(cls, type) and issubclass(cls, MultiTaskModule)):
        raise ConfigError(f"{where}: {spec['class_path']} is not a polyvision model")
    init_args = {**spec.get("init_args", {}), **overrides}
    try:
        return instantiate_module(cls, init_args)
    except Exception as error:  # jsonargparse reports config problems as generic errors
        if isinstance(error, (ConfigError, WeightsError)):
            raise
        raise ConfigError(f"{where}: {str(error).splitlines()[0]}") from error


def create_model(name: str, **overrides: Any):
    """Build a named model (``list_models()``), randomly initialised unless its config or
    ``overrides`` (e.g. ``pretrained="swin3d_t.pth"``) name local weights."""
    return build_from_spec(model_config(name), f"model '{name}'", **overrides)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        with path.open("rb") as handle:
            head = handle.read(2)
        # A zip (torch.save) or a pickle stream header; anything else is no checkpoint at all,
        # whatever opcode the unpickler tripped over.
        if not (head == b"PK" or (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5)):
            raise WeightsError(f"{path}: not a readable checkpoint (not a PyTorch file)") from None
        reason = str(error).splitlines()
        detail = next((line.strip() for line in reason if "GLOBAL" in line or "Unsupported" in line), reason[0])
        raise WeightsError(f"{path}: refused: the file holds pickled objects that could run code when loaded "
                           f"({detail[:160]})") from None
    except Exception as error:  # noqa: BLE001 - truncated or non-torch file
        first = (str(error).splitlines() or ["empty message"])[0]  # an empty file raises with no message
        raise WeightsError(f"{path}: not a readable checkpoint ({type(error).__name__}: {first[:160]})") from None


# --------------------------------------------------------------------------- legacy checkpoints
# A checkpoint is rebuilt from its saved hyper-parameters, so renaming or reshaping a model
# argument would orphan every checkpoint saved before. Each renaming adds here one small
# function ``(class_path, hparams) -> hparams`` that rewrites the old form into the new one
# and leaves any other hyper-parameters (including ones already in the new form) unchanged.


def state_encoder_by_class_path(class_path: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """0.1.0 named STATE's encoder ``backbone: state_encoder`` (a special case inside
    ``build_backbone``) and gave its settings in ``backbone_kwargs``; it is now the spec of
    the ``STATEEncoder`` class with those settings as ``init_args``."""
    if hparams.get("backbone") != "state_encoder":
        return hparams
    spec = {"class_path": "polyvision.models.state.STATEEncoder", "init_args": dict(hparams.get("backbone_kwargs") or {})}
    return {**hparams, "backbone": spec, "backbone_kwargs": None}


# The flat optimiser arguments of 0.1.0; no model takes them since.
LEGACY_OPTIMIZER_ARGUMENTS = ("lr", "weight_decay", "warmup_steps", "min_lr", "adam_eps")


def optimizer_specs_and_class_names(class_path: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """0.1.0 took the optimiser and schedule as flat arguments: ``lr``, ``weight_decay``,
    ``warmup_steps``, ``min_lr`` for AdamW with a linear warm-up from 1e-3 of the rate then a
    cosine (``MultiTaskModule``, OmniFD), and ``lr``, ``adam_eps``, ``weight_decay`` for Adam
    (STATE, the only model with ``adam_eps``). They are now ``optimizer`` and ``scheduler``
    specs with the same numbers. 0.1.0's ``ClassificationHead`` also named its classes
    ``real``/``fake`` unless told otherwise; the default is now ``"0"``, ``"1"``, so its heads
    get those names written out. A 0.1.0 checkpoint is one without ``optimizer``: every
    model saves it since."""
    if "optimizer" in hparams:
        return hparams
    old = {key: hparams[key] for key in LEGACY_OPTIMIZER_ARGUMENTS if key in hparams}
    upgraded = {key: value for key, value in hparams.items() if key not in LEGACY_OPTIMIZER_ARGUMENTS}
    if "adam_eps" in old:
        upgraded["optimizer"] = {"class_path": "torch.optim.Adam", "init_args": {
            "lr": old.get("lr", 1e-3), "eps": old["adam_eps"], "weight_decay": old.get("weight_decay", 0.0)}}
    else:
        upgraded["optimizer"] = {"class_path": "torch.optim.AdamW", "init_args": {
            "lr": old.get("lr", 1e-4), "weight_decay": old.get("weight_decay", 1e-4)}}
        upgraded["scheduler"] = {"class_path": "polyvision.models.schedules.WarmupCosine", "init_args": {
            "warmup_steps": old.get("warmup_steps", 0), "min_lr": old.get("min_lr", 1e-6),
            "warmup_start_factor": 1e-3}, "interval": "step"}
    heads = upgraded.get("heads")
    if isinstance(heads, dict):
        upgraded["heads"] = {name: with_legacy_class_names(spec) for name, spec in heads.items()}
    return upgraded


def with_legacy_class_names(spec: Any) -> Any:
    if not (isinstance(spec, dict) and spec.get("class_path") == "polyvision.heads.classification.ClassificationHead"):
        return spec
    init_args = dict(spec.get("init_args") or {})
    if not init_args.get("class_names"):  # 0.1.0: ``class_names or ["real", "fake"]``
        init_args["class_names"] = ["real", "fake"]
    return {**spec, "init_args": init_args}


def input_geometry_from_model_arguments(class_path: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """0.1.0 kept the input geometry in model arguments that could disagree with the data:
    ``image_size``, ``clip_len``, ``frame_interval`` (defaults 224, 32, 1) and STATE's
    ``object_pipeline``. It is now ``input_geometry``, copied from the datamodule; an old
    checkpoint keeps the geometry its arguments described."""
    if "input_geometry" in hparams:
        return hparams
    from polyvision.datamodules.geometry import clip_geometry, image_geometry

    upgraded = {k: v for k, v in hparams.items() if k not in ("image_size", "clip_len", "frame_interval", "object_pipeline")}
    if "object_pipeline" in hparams:  # STATE: object cubes, made by the recorded pipeline
        upgraded["input_geometry"] = ({"video": {"input": "video", "object_pipeline": hparams["object_pipeline"]}}
                                      if hparams["object_pipeline"] else None)
        return upgraded
    size = int(hparams.get("image_size", 224))
    upgraded["input_geometry"] = {"image": image_geometry(size),
                                  "video": clip_geometry(int(hparams.get("clip_len", 32)),
                                                         int(hparams.get("frame_interval", 1)), size)}
    return upgraded


HYPERPARAMETER_UPGRADES: list[Callable[[str, dict[str, Any]], dict[str, Any]]] = [
    state_encoder_by_class_path,
    optimizer_specs_and_class_names,
    input_geometry_from_model_arguments,
]


def upgrade_hyperparameters(class_path: str, hparams: dict[str, Any]) -> dict[str, Any]:
    """The saved hyper-parameters of model class ``class_path`` in today's form (every
    entry of ``HYPERPARAMETER_UPGRADES``, in order); ``hparams`` is not modified."""
    for upgrade in HYPERPARAMETER_UPGRADES:
        hparams = upgrade(class_path, hparams)
    return hparams


def load_model(path: str | Path, map_location: str = "cpu", strict: bool = True):
    """Rebuild a model from a Lightning checkpoint alone and load its weights (eval mode)."""
    checkpoint = read_checkpoint(path)
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    info = checkpoint.get("polyvision") or {}
    class_path = info.get("class_path") or hparams.get("_class_path")
    if not class_path or "state_dict" not in checkpoint:
        raise WeightsError(f"{path}: not a polyvision checkpoint (no model class or state_dict)")
    hparams = upgrade_hyperparameters(class_path, {k: v for k, v in hparams.items() if not k.startswith("_")})
    if hparams.get("pretrained"):  # the checkpoint's weights replace the backbone initialisation
        hparams["pretrained"] = None
    model = build_from_spec({"class_path": class_path, "init_args": hparams}, str(path))
    try:
        model.load_state_dict(checkpoint["state_dict"], strict=strict)
    except RuntimeError as error:
        raise WeightsError(f"{path}: weights do not fit the model they describe ({str(error).splitlines()[1].strip()[:200]})") from None
    return model.to(map_location).eval()
