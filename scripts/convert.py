"""``polyvision convert SYSTEM SRC OUT``: turn a system's released weights into a polyvision
checkpoint that ``polyvision.load_model`` and ``polyvision infer`` read.

Systems (``CONVERTERS``):

- ``acr``: the official ACR release (Yu et al., CVPR 2023,
  github.com/ZhengdiYu/Arbitrary-Hands-3D-Reconstruction, ``checkpoints/wild.pkl``) onto
  ``polyvision.models.acr.ACR`` (``create_model("acr_hrnet_w32")``). Module names and shapes
  are those of the release's ``acr/model.py`` (``ACR._build_head``, ``HigherResolutionNet``,
  ``SegmNet``/``SegmHead``/``Up``/``DoubleConv``, PARE's ``LocallyConnected2d``); the HRNet
  trunk uses the official HRNet code's names (github.com/HRNet/HigherHRNet-Human-Pose-Estimation
  ``lib/models/pose_higher_hrnet.py``), which timm's ``hrnet_w32`` keeps.

The mapping is data: ``ACR_RULES`` pairs a release module (or key) prefix with ours and says
what happens to the tensor. If the real file names a module differently, correct the one rule
concerned; the converter refuses a file with any key that matches no rule, any tensor whose
shape contradicts the model, or any weight of ours it does not provide (except the ones listed
in ``ACR_NOT_IN_RELEASE`` with their reason), so a wrong table cannot pass silently.

Files are read with ``torch.load(weights_only=True)``: one that needs code execution to load is
refused. The output is written to a temporary file next to ``OUT`` and renamed into place, so a
failed conversion leaves nothing behind.
"""
from __future__ import annotations

import argparse
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyvision.errors import ConfigError, WeightsError

RELEASE_URL = "github.com/ZhengdiYu/Arbitrary-Hands-3D-Reconstruction"
RIGHT, LEFT = 0, 1  # our hand slots (heads/hands.py)
# The input the release's demo feeds: a white-padded 512² square, x/255·2−1 (acr/model.py
# HigherResolutionNet.forward); what HandDataModule.input_geometry() records.
ACR_INPUT_GEOMETRY = {"hands": {"input": "image", "size": [512, 512], "pad": "white", "normalize": "minus_one_to_one"}}
WRAPPER_KEYS = ("model_state_dict", "state_dict")  # unwrapped in this order when present
PARALLEL_PREFIX = "module."  # DataParallel


# --------------------------------------------------------------------------- rule machinery
@dataclass(frozen=True)
class Rule:
    """One release module (or single key) ``source`` and what becomes of its tensors.

    ``action``: ``renamed`` (``source`` prefix -> ``target`` prefix, tensor as it is),
    ``reshaped`` (single key, ``transform`` applied; ``source_shape`` gives the release shape
    from ours), ``folded`` (a conv bias our layer does not have, subtracted from the following
    BatchNorm's ``running_mean`` key ``target``: ``BN(Wx + b)`` with mean ``μ`` equals ``BN(Wx)``
    with mean ``μ - b``, in eval and train mode alike) or ``dropped`` (``target`` None).
    """

    source: str
    target: str | None
    action: str
    why: str = ""
    transform: Callable[[Any], Any] | None = None
    source_shape: Callable[[tuple[int, ...]], tuple[int, ...]] | None = None

    def matches(self, key: str) -> bool:
        return key == self.source or key.startswith(self.source + ".")

    def target_key(self, key: str) -> str:
        return self.target + key[len(self.source):]


def locally_connected_to_part_regressor(weight):
    """PARE's ``LocallyConnected2d`` weight ``(1, out, in, parts, 1, k²=1)`` (output[b, o, p] =
    Σ_c x[b, c, p]·W[0, o, c, p, 0, 0]) -> our ``PartRegressor`` weight ``(parts, in, out)``
    (output[b, p, o] = Σ_c x[b, c, p]·w[p, c, o]). The release then reads its ``(B, 6, 16, 1)``
    output as ``(B, 16, 6)``, joint-major, as ours does."""
    return weight[0, :, :, :, 0, 0].permute(2, 1, 0).contiguous()


def part_regressor_source_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    parts, channels, out = shape
    return (1, out, channels, parts, 1, 1)


def swap_fusion_inputs(weight):
    """The release fuses ``cat(parameter maps, part prediction)`` (``contact_layers[4|5]``),
    ours ``cat(part prediction, parameter maps)``: swap the two 109-channel input halves."""
    half = weight.shape[1] // 2
    return weight[:, list(range(half, 2 * half)) + list(range(half))].contiguous()


def acr_rules() -> list[Rule]:
    """The release -> polyvision mapping of ACR (see the module docstring)."""
    rules: list[Rule] = []
    # HRNet-W32 trunk: timm's hrnet_w32 keeps the official HRNet module names.
    for module in ("conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "transition2", "transition3",
                   "stage2", "stage3", "stage4"):
        rules.append(Rule(f"backbone.{module}", f"backbone.model.{module}", "renamed",
                          "HRNet-W32 trunk: timm keeps the official HRNet names"))
    # Part segmentation (acr/model.py SegmNet -> SegmHead): Up(32, 64) = bilinear ×2 + DoubleConv(32, 64,
    # mid 16); segm_net = DoubleConv(64, 33) cut to conv, BN, ReLU, conv. Ours: SegmentationBranch indices.
    segm = "backbone.hand_segm.segm_head"
    for release, ours in (("upsampler.up1.conv.double_conv.0", 1), ("upsampler.up1.conv.double_conv.1", 2),
                          ("upsampler.up1.conv.double_conv.3", 4), ("upsampler.up1.conv.double_conv.4", 5),
                          ("segm_net.double_conv.0", 7), ("segm_net.double_conv.1", 8), ("segm_net.double_conv.3", 10)):
        rules.append(Rule(f"{segm}.{release}", f"heads.hands.segmentation.{ours}", "renamed", "part segmentation"))
    # Map heads (ACR._make_final_layers / _make_head_layers): [None, params, center, cam, prior], each
    # Sequential(Sequential(conv3×3 s2 with bias, BN, ReLU), Sequential(Sequential(BasicBlock) ×2), conv1×1).
    for prefix, side in (("r", RIGHT), ("l", LEFT)):
        for index, name in ((1, "parameter_maps"), (2, "center_maps"), (3, "camera_maps"), (4, "prior_maps")):
            source, ours = f"{prefix}_final_layers.{index}", f"heads.hands.{name}.{side}"
            rules += [
                Rule(f"{source}.0.0", f"{ours}.0", "renamed", "map heads' stride-2 conv (l_* -> slot 1 left, r_* -> slot 0 right)"),
                Rule(f"{source}.0.0.bias", f"{ours}.1.running_mean", "folded",
                     "conv bias (ours has none) folded into the next BatchNorm's mean"),
                Rule(f"{source}.0.1", f"{ours}.1", "renamed", "map heads' BN"),
                Rule(f"{source}.1.0.0", f"{ours}.3", "renamed", "map heads' BasicBlock 1"),
                Rule(f"{source}.1.1.0", f"{ours}.4", "renamed", "map heads' BasicBlock 2"),
                Rule(f"{source}.2", f"{ours}.5", "renamed", "map heads' 1×1 output conv"),
            ]
    # Part attention (ACR._make_contact_layers / _make_cam_shape_layers, used in part_forward):
    # contact_layers [None, pose features, LC2d left, LC2d right, fusion left, fusion right],
    # cam_shape_layers [None, shape features, Linear left, Linear right].
    rules += [
        Rule("contact_layers.1.0", "heads.hands.pose_features.0", "renamed", "pose features conv"),
        Rule("contact_layers.1.0.bias", "heads.hands.pose_features.1.running_mean", "folded",
             "conv bias (ours has none) folded into the next BatchNorm's mean"),
        Rule("contact_layers.1.1", "heads.hands.pose_features.1", "renamed", "pose features BN"),
        Rule("cam_shape_layers.1.0", "heads.hands.shape_features", "renamed", "shape features 1×1 conv"),
    ]
    for index, side in ((2, LEFT), (3, RIGHT)):
        rules.append(Rule(f"contact_layers.{index}.weight", f"heads.hands.pose_regressors.{side}.weight", "reshaped",
                          "LocallyConnected2d (1,6,256,16,1,1) -> (16,256,6); [2] left, [3] right",
                          locally_connected_to_part_regressor, part_regressor_source_shape))
        rules.append(Rule(f"cam_shape_layers.{index}", f"heads.hands.shape_regressors.{side}", "renamed",
                          "shape regressor Linear(1024, 10); [2] left, [3] right"))
    for index, side in ((4, LEFT), (5, RIGHT)):
        rules.append(Rule(f"contact_layers.{index}.weight", f"heads.hands.fusion.{side}.weight", "reshaped",
                          "218->109 fusion, input halves swapped; [4] left, [5] right", swap_fusion_inputs))
        rules.append(Rule(f"contact_layers.{index}.bias", f"heads.hands.fusion.{side}.bias", "renamed", "218->109 fusion"))
    rules += [
        Rule("segmentation_layers", None, "dropped", "built by the release but never used in its forward"),
        Rule("_result_parser", None, "dropped", "MANO layer buffers: polyvision reads the user's MANO files"),
    ]
    return rules


ACR_RULES = acr_rules()

# Our weights the release does not have: regex -> why; they keep the model's own values.
ACR_NOT_IN_RELEASE = {
    r"backbone\.model\.stage4\.2\.fuse_layers\.[123]\.": "not in the release (unused by ACR): its stage 4 ends with "
                                                          "branch 0's fuse layers only; timm builds all four",
    r"heads\.hands\.pose_regressors\.[01]\.bias": "set to zero: the release's LocallyConnected2d has no bias",
    r"\.num_batches_tracked$": "not in files saved by PyTorch < 0.4.1; unused at inference",
}
ACR_ZEROED = (r"heads\.hands\.pose_regressors\.[01]\.bias",)


# --------------------------------------------------------------------------- reading
def read_release_state_dict(path: Path) -> dict[str, Any]:
    """The plain ``name -> tensor`` dict of a released file: safe loading, wrapper unwrapped,
    the DataParallel prefix stripped."""
    import torch

    from polyvision.models.factory import read_checkpoint

    loaded = read_checkpoint(path)  # weights_only=True; refuses pickled code in one line
    if isinstance(loaded, dict):
        for key in WRAPPER_KEYS:
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded:
        raise WeightsError(f"{path}: not a state dict (holds {type(loaded).__name__}{' (empty)' if loaded == {} else ''})")
    state = {}
    for key, value in loaded.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{path}: not a state dict: '{key}' holds a {type(value).__name__}, not a tensor")
        name = str(key)
        state[name[len(PARALLEL_PREFIX):] if name.startswith(PARALLEL_PREFIX) else name] = value
    return state


# --------------------------------------------------------------------------- mapping
@dataclass
class Mapping:
    """What a conversion did: ``weights`` (our key -> tensor), per rule the keys it took,
    and ``missing`` (our keys not in the file, with why)."""

    weights: dict[str, Any]
    used: dict[Rule, list[str]]
    missing: dict[str, list[str]]


def match_rules(state: dict[str, Any], rules: list[Rule], path: Path) -> dict[str, Rule]:
    """Each key's rule (the longest matching source); refuses keys no rule matches."""
    chosen, unmatched = {}, []
    for key in state:
        candidates = [rule for rule in rules if rule.matches(key)]
        if not candidates:
            unmatched.append(key)
            continue
        chosen[key] = max(candidates, key=lambda rule: len(rule.source))
    if unmatched:
        first = unmatched[0]
        raise WeightsError(f"{path}: {len(unmatched)} keys match no rule of the ACR mapping (first: '{first}' "
                           f"{tuple(state[first].shape)}); not the ACR release, or correct ACR_RULES in "
                           f"polyvision/scripts/convert.py")
    return chosen


def map_state_dict(state: dict[str, Any], ours: dict[str, Any], rules: list[Rule], not_in_release: dict[str, str],
                   zeroed: tuple[str, ...], path: Path) -> Mapping:
    """Apply ``rules`` to the release ``state`` against our model's ``ours`` state dict."""
    import torch

    chosen = match_rules(state, rules, path)
    weights: dict[str, Any] = {}
    used: dict[Rule, list[str]] = {}
    folds: list[tuple[str, str]] = []
    for key, rule in chosen.items():
        used.setdefault(rule, []).append(key)
        if rule.action == "dropped":
            continue
        target = rule.target if rule.action in ("reshaped", "folded") else rule.target_key(key)
        if target not in ours:
            raise WeightsError(f"{path}: '{key}' maps to '{target}', which ACR does not have (correct ACR_RULES)")
        tensor, expected = state[key], tuple(ours[target].shape)
        need = rule.source_shape(expected) if rule.source_shape else expected
        if tuple(tensor.shape) != need:
            raise WeightsError(f"{path}: '{key}' has shape {tuple(tensor.shape)}, but ACR's '{target}' needs {need}: "
                               f"not the weights of this model")
        if rule.action == "folded":
            folds.append((key, target))
            continue
        if target in weights:
            raise WeightsError(f"{path}: '{key}' and another key both map to '{target}' (correct ACR_RULES)")
        value = rule.transform(tensor) if rule.transform else tensor
        weights[target] = value.to(ours[target].dtype)  # load_state_dict copies it
    for key, target in folds:
        if target not in weights:
            raise WeightsError(f"{path}: '{key}' is a conv bias folded into '{target}', which the file does not give")
        weights[target] = weights[target] - state[key].to(weights[target].dtype)
    missing: dict[str, list[str]] = {}
    for key in ours:
        if key in weights:
            continue
        why = next((reason for pattern, reason in not_in_release.items() if re.search(pattern, key)), None)
        if why is None:
            absent = [k for k in ours if k not in weights and not any(re.search(p, k) for p in not_in_release)]
            raise WeightsError(f"{path}: {len(absent)} weights of ACR are not in the file (first: '{absent[0]}'); "
                               f"not the ACR release, or correct ACR_RULES")
        missing.setdefault(why, []).append(key)
        weights[key] = torch.zeros_like(ours[key]) if any(re.search(p, key) for p in zeroed) else ours[key]
    return Mapping(weights, used, missing)


# --------------------------------------------------------------------------- output
def save_atomically(checkpoint: dict[str, Any], out: Path) -> None:
    import torch

    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(handle)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 -> what open() would have given
        torch.save(checkpoint, temporary)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def print_report(mapping: Mapping, source: Path, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{source.name} -> {out.name}")
    for column in ("release", "polyvision", "keys", "action", "why"):
        table.add_column(column, justify="right" if column == "keys" else "left")
    groups: dict[tuple[str, str], list[tuple[Rule, list[str]]]] = {}
    for rule, keys in mapping.used.items():  # one row per (action, why): the first rule and how many like it
        groups.setdefault((rule.action, rule.why), []).append((rule, keys))
    for (action, why), members in groups.items():
        first = members[0][0]
        more = f" (+{len(members) - 1} like it)" if len(members) > 1 else ""
        table.add_row(first.source + more, first.target or "-", str(sum(len(keys) for _, keys in members)), action, why)
    for why, keys in mapping.missing.items():
        common = os.path.commonprefix(keys).rstrip(".") or keys[0]
        table.add_row("-", f"{common}…" if len(keys) > 1 else keys[0], str(len(keys)), "missing in the file", why)
    console = Console(width=200)
    console.print(table)
    counts = {action: sum(len(k) for r, k in mapping.used.items() if r.action == action)
              for action in ("renamed", "reshaped", "folded", "dropped")}
    mapped = counts["renamed"] + counts["reshaped"] + counts["folded"]
    console.print(f"{mapped} keys mapped ({counts['renamed']} renamed, {counts['reshaped']} reshaped, "
                  f"{counts['folded']} folded), {counts['dropped']} dropped, "
                  f"{sum(len(k) for k in mapping.missing.values())} missing in the file; wrote {out}")


# --------------------------------------------------------------------------- systems
def convert_acr(source: Path, out: Path, mano_dir: str | None) -> Mapping:
    """The ACR release -> a polyvision ``ACR`` checkpoint (returns what was mapped)."""
    if not mano_dir:
        raise ConfigError("convert acr: --mano-dir DIR is needed (the folder of MANO_RIGHT.pkl and MANO_LEFT.pkl; "
                          "the checkpoint records it for inference)")
    if str(mano_dir) != "generated" and not Path(mano_dir).expanduser().is_dir():
        raise ConfigError(f"convert acr: --mano-dir {mano_dir}: no such folder (it holds MANO_RIGHT.pkl and "
                          f"MANO_LEFT.pkl, MANO v1.2 from https://mano.is.tue.mpg.de)")
    state = read_release_state_dict(source)
    match_rules(state, ACR_RULES, source)  # names first: a foreign file fails before the model is built

    from polyvision.models.factory import create_model

    model = create_model("acr_hrnet_w32", mano_dir=str(mano_dir))
    ours = model.state_dict()
    mapping = map_state_dict(state, ours, ACR_RULES, ACR_NOT_IN_RELEASE, ACR_ZEROED, source)
    model.load_state_dict(mapping.weights, strict=True)
    model.hparams["input_geometry"] = {name: dict(geometry) for name, geometry in ACR_INPUT_GEOMETRY.items()}
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    checkpoint["polyvision"]["converted_from"] = {"system": "acr", "file": source.name, "release": RELEASE_URL}
    save_atomically(checkpoint, out)
    return mapping


CONVERTERS: dict[str, Callable[[Path, Path, str | None], Mapping]] = {"acr": convert_acr}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polyvision convert",
                                     description="Convert a system's released weights into a polyvision checkpoint.")
    parser.add_argument("system", help=f"the system whose release SRC is ({', '.join(sorted(CONVERTERS))})")
    parser.add_argument("source", type=Path, help="the released weights file")
    parser.add_argument("out", type=Path, help="the polyvision checkpoint to write")
    parser.add_argument("--mano-dir", default=None,
                        help="acr: folder of MANO_RIGHT.pkl and MANO_LEFT.pkl, recorded in the checkpoint")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)
    if args.system not in CONVERTERS:
        raise ConfigError(f"convert: unknown system '{args.system}' (known: {', '.join(sorted(CONVERTERS))})")
    source, out = args.source.expanduser(), args.out.expanduser()
    if not source.is_file():
        raise WeightsError(f"{source}: file not found")
    if not out.parent.is_dir():
        raise WeightsError(f"{out}: its folder {out.parent} does not exist")
    if out.exists() and not args.force:
        raise WeightsError(f"{out}: exists (pass --force to replace it)")
    mapping = CONVERTERS[args.system](source, out, args.mano_dir)
    print_report(mapping, source, out)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
