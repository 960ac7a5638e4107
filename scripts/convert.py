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
- ``omnifd``: OmniFD's released MMEngine checkpoints (github.com/haotianll/OmniFD, README
  model zoo, e.g. ``omnifd_swin-s_50k_forgerynet.pth``) onto the OmniFD model of a paper
  config (``--config``, default ``configs/omnifd/forgerynet_swin_s.yaml``); see
  ``polyvision/scripts/convert_omnifd.py``.
- ``hybridnet``: the HybridNet release's model-zoo state dict (github.com/yuweijiang/HybridNet,
  README MODEL_ZOO) with the release's vocabularies (``--v2c-dir``: ``msrvtt_new_info.json``,
  ``v2c_info.json``) onto ``configs/hybridnet/v2c.yaml``; its own options and its refusal of
  the known computation differences (``--accept-differences``): ``OWN_COMMANDS``,
  ``polyvision/scripts/convert_hybridnet.py``.

The mapping is data: a system's rules pair a release module (or key) prefix with ours and say
what happens to the tensor. If the real file names a module differently, correct the one rule
concerned; the converter refuses a file with any key that matches no rule, any tensor whose
shape contradicts the model, or any weight of ours it does not provide (except the ones listed
in the system's ``NOT_IN_RELEASE`` with their reason), so a wrong table cannot pass silently.
The rule engine (``Rule``, ``match_rules``, ``map_state_dict``, ``print_report``, ...) is
``polyvision/scripts/convert_rules.py``, shared by every system and importable from here too.

Adding a system: write ``convert_<system>(source, out, option) -> Mapping`` built on
``read_release_state_dict``, a list of ``Rule``, ``map_state_dict`` and ``save_atomically``;
register it in ``CONVERTERS``, its one command-line option (if any) in ``main``'s parser and
its ``dest`` in ``CONVERTER_OPTIONS``.

Files are read with ``torch.load(weights_only=True)``: one that needs code execution to load is
refused. The output is written to a temporary file next to ``OUT`` and renamed into place, so a
failed conversion leaves nothing behind.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from polyvision.errors import ConfigError
from polyvision.scripts.convert_rules import (  # noqa: F401 - the engine, importable from here too
    PARALLEL_PREFIX, WRAPPER_KEYS, Mapping, Rule, conversion_paths, map_state_dict, match_rules, print_report,
    read_release_state_dict, save_atomically)

RELEASE_URL = "github.com/ZhengdiYu/Arbitrary-Hands-3D-Reconstruction"
RIGHT, LEFT = 0, 1  # our hand slots (heads/hands.py)
# The input the release's demo feeds: a white-padded 512² square, x/255·2−1 (acr/model.py
# HigherResolutionNet.forward); what HandDataModule.input_geometry() records.
ACR_INPUT_GEOMETRY = {"hands": {"input": "image", "size": [512, 512], "pad": "white", "normalize": "minus_one_to_one"}}


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
ACR_NAMES = {"system": "ACR", "table": "ACR_RULES in polyvision/scripts/convert.py"}


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
    match_rules(state, ACR_RULES, source, **ACR_NAMES)  # names first: a foreign file fails before the model is built

    from polyvision.models.factory import create_model

    model = create_model("acr_hrnet_w32", mano_dir=str(mano_dir))
    ours = model.state_dict()
    mapping = map_state_dict(state, ours, ACR_RULES, ACR_NOT_IN_RELEASE, ACR_ZEROED, source, **ACR_NAMES)
    model.load_state_dict(mapping.weights, strict=True)
    model.hparams["input_geometry"] = {name: dict(geometry) for name, geometry in ACR_INPUT_GEOMETRY.items()}
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    checkpoint["polyvision"]["converted_from"] = {"system": "acr", "file": source.name, "release": RELEASE_URL}
    save_atomically(checkpoint, out)
    return mapping


def convert_omnifd(source: Path, out: Path, config: str | None) -> Mapping:
    """OmniFD's released MMEngine checkpoint -> a polyvision ``OmniFD`` checkpoint of the
    paper config ``config`` (default the unified Swin-S one; ``polyvision/scripts/convert_omnifd.py``)."""
    from polyvision.scripts.convert_omnifd import convert

    return convert(source, out, config)


# system -> converter(source, out, option) -> Mapping, where option is the value of the system's
# one command-line option named in CONVERTER_OPTIONS (None when not given).
CONVERTERS: dict[str, Callable[[Path, Path, str | None], Mapping]] = {"acr": convert_acr, "omnifd": convert_omnifd}
CONVERTER_OPTIONS: dict[str, str] = {"acr": "mano_dir", "omnifd": "config"}  # argparse dest in main()


# Systems whose conversion takes options of its own: their module's ``main`` parses the rest.
OWN_COMMANDS = {"hybridnet": "polyvision.scripts.convert_hybridnet", "cvlnm": "polyvision.scripts.convert_cvlnm"}


def main(argv: list[str] | None = None) -> int:
    import importlib
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in OWN_COMMANDS:
        return importlib.import_module(OWN_COMMANDS[argv[0]]).main(argv[1:])
    systems = ", ".join(sorted([*CONVERTERS, *OWN_COMMANDS]))
    parser = argparse.ArgumentParser(prog="polyvision convert",
                                     description="Convert a system's released weights into a polyvision checkpoint.")
    parser.add_argument("system", help=f"the system whose release SRC is ({systems}; "
                                       f"'polyvision convert hybridnet -h', '... cvlnm -h' for their options)")
    parser.add_argument("source", type=Path, help="the released weights file")
    parser.add_argument("out", type=Path, help="the polyvision checkpoint to write")
    parser.add_argument("--mano-dir", default=None,
                        help="acr: folder of MANO_RIGHT.pkl and MANO_LEFT.pkl, recorded in the checkpoint")
    parser.add_argument("--config", default=None,
                        help="omnifd: the paper config whose model receives the weights (default "
                             "configs/omnifd/forgerynet_swin_s.yaml, all four heads; a single-task config "
                             "takes the heads it has)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)
    if args.system not in CONVERTERS:
        raise ConfigError(f"convert: unknown system '{args.system}' (known: {systems})")
    source, out = conversion_paths(args.source, args.out, args.force)
    option = getattr(args, CONVERTER_OPTIONS[args.system], None) if args.system in CONVERTER_OPTIONS else None
    mapping = CONVERTERS[args.system](source, out, option)
    print_report(mapping, source, out)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
