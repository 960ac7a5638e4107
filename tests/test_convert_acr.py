"""``polyvision convert acr``: the ACR release's names and shapes -> a polyvision checkpoint.

The released file (``checkpoints/wild.pkl`` of github.com/ZhengdiYu/Arbitrary-Hands-3D-Reconstruction)
is not available here, so :func:`released_acr_state_dict` writes one with the release's module
names and shapes, built from the structure of ``acr/model.py`` (``HigherResolutionNet`` with the
official HRNet naming, github.com/HRNet/HigherHRNet-Human-Pose-Estimation
``lib/models/pose_higher_hrnet.py``; ``SegmNet``; ``ACR._build_head``), independently of timm's
and our module names. Converted layers are checked by what they compute, against the release's
layer formulas applied to the generated tensors.
"""
from __future__ import annotations

import contextlib
import io
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import assert_one_line_error, run_cli
from polyvision import cli

BN_EPS = 1e-5
HRNET_W32_STAGES = {  # stage: (modules, branch channels); 4 BasicBlocks per branch
    "stage2": (1, [32, 64]), "stage3": (4, [32, 64, 128]), "stage4": (3, [32, 64, 128, 256])}
MAP_HEADS = {1: 106, 2: 1, 3: 3, 4: 106}  # ACR _make_final_layers: [None, params, center, cam, prior]


def released_acr_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the names and shapes of ACR's release (without ``module.``)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, out: int, inp: int, kernel: int, bias: bool = False) -> None:
        shapes[f"{name}.weight"] = (out, inp, kernel, kernel)
        if bias:
            shapes[f"{name}.bias"] = (out,)

    def bn(name: str, channels: int) -> None:
        for field in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{field}"] = (channels,)
        shapes[f"{name}.num_batches_tracked"] = ()

    # HRNet-W32 (official names): stem, layer1 of 4 Bottlenecks, transitions, stages 2-4.
    conv("backbone.conv1", 64, 3, 3), bn("backbone.bn1", 64), conv("backbone.conv2", 64, 64, 3), bn("backbone.bn2", 64)
    for block in range(4):
        name = f"backbone.layer1.{block}"
        conv(f"{name}.conv1", 64, 256 if block else 64, 1), bn(f"{name}.bn1", 64)
        conv(f"{name}.conv2", 64, 64, 3), bn(f"{name}.bn2", 64)
        conv(f"{name}.conv3", 256, 64, 1), bn(f"{name}.bn3", 256)
        if block == 0:
            conv(f"{name}.downsample.0", 256, 64, 1), bn(f"{name}.downsample.1", 256)
    previous = [256]
    for number, (stage, (modules, channels)) in enumerate(HRNET_W32_STAGES.items(), start=1):
        transition = f"backbone.transition{number}"
        for i, width in enumerate(channels):
            if i < len(previous):
                if width != previous[i]:
                    conv(f"{transition}.{i}.0", width, previous[i], 3), bn(f"{transition}.{i}.1", width)
                continue
            for j in range(i + 1 - len(previous)):
                out = width if j == i - len(previous) else previous[-1]
                conv(f"{transition}.{i}.{j}.0", out, previous[-1], 3), bn(f"{transition}.{i}.{j}.1", out)
        for module in range(modules):
            name = f"backbone.{stage}.{module}"
            for branch, width in enumerate(channels):
                for block in range(4):
                    prefix = f"{name}.branches.{branch}.{block}"
                    conv(f"{prefix}.conv1", width, width, 3), bn(f"{prefix}.bn1", width)
                    conv(f"{prefix}.conv2", width, width, 3), bn(f"{prefix}.bn2", width)
            multi_scale = not (stage == "stage4" and module == modules - 1)  # multi_scale_output=False
            for i in range(len(channels) if multi_scale else 1):
                for j in range(len(channels)):
                    if j > i:
                        conv(f"{name}.fuse_layers.{i}.{j}.0", channels[i], channels[j], 1)
                        bn(f"{name}.fuse_layers.{i}.{j}.1", channels[i])
                    for k in range(i - j):
                        out = channels[i] if k == i - j - 1 else channels[j]
                        conv(f"{name}.fuse_layers.{i}.{j}.{k}.0", out, channels[j], 3)
                        bn(f"{name}.fuse_layers.{i}.{j}.{k}.1", out)
        previous = channels
    # Part segmentation: Up(32, 64) = DoubleConv(32, 64, mid 16); segm_net = DoubleConv(64, 33)[:4].
    segm = "backbone.hand_segm.segm_head"
    conv(f"{segm}.upsampler.up1.conv.double_conv.0", 16, 32, 3, bias=True), bn(f"{segm}.upsampler.up1.conv.double_conv.1", 16)
    conv(f"{segm}.upsampler.up1.conv.double_conv.3", 64, 16, 3, bias=True), bn(f"{segm}.upsampler.up1.conv.double_conv.4", 64)
    conv(f"{segm}.segm_net.double_conv.0", 33, 64, 3, bias=True), bn(f"{segm}.segm_net.double_conv.1", 33)
    conv(f"{segm}.segm_net.double_conv.3", 33, 33, 3, bias=True)
    # Map heads: Sequential(Sequential(conv s2 + bias, BN, ReLU), Sequential(Sequential(BasicBlock) x2), conv1x1).
    for side in ("l", "r"):
        for index, outputs in MAP_HEADS.items():
            head = f"{side}_final_layers.{index}"
            conv(f"{head}.0.0", 64, 34, 3, bias=True), bn(f"{head}.0.1", 64)
            for block in range(2):
                conv(f"{head}.1.{block}.0.conv1", 64, 64, 3), bn(f"{head}.1.{block}.0.bn1", 64)
                conv(f"{head}.1.{block}.0.conv2", 64, 64, 3), bn(f"{head}.1.{block}.0.bn2", 64)
            conv(f"{head}.2", outputs, 64, 1, bias=True)
    # Part attention: contact_layers [None, conv+BN+ReLU, LC2d left, LC2d right, fusion left, fusion right].
    conv("contact_layers.1.0", 256, 34, 3, bias=True), bn("contact_layers.1.1", 256)
    shapes["contact_layers.2.weight"] = shapes["contact_layers.3.weight"] = (1, 6, 256, 16, 1, 1)
    conv("contact_layers.4", 109, 218, 1, bias=True), conv("contact_layers.5", 109, 218, 1, bias=True)
    conv("cam_shape_layers.1.0", 64, 256, 1, bias=True)
    for index in (2, 3):
        shapes[f"cam_shape_layers.{index}.weight"], shapes[f"cam_shape_layers.{index}.bias"] = (10, 1024), (10,)
    conv("segmentation_layers.1.0", 256, 34, 3, bias=True), bn("segmentation_layers.1.1", 256)
    conv("segmentation_layers.2.0", 33, 256, 1, bias=True)

    # Every tensor is a view of one random pool at its own offset: distinct values per key (a
    # swapped side or layer shows), while the file stays a few MB (torch.save stores a shared
    # storage once), which keeps the test fast.
    generator = torch.Generator().manual_seed(seed)
    pool_size = 1 << 21
    pool = torch.randn(pool_size, generator=generator) * 0.1
    offsets = torch.randint(0, pool_size - 600_000, (len(shapes),), generator=generator).tolist()
    variances = pool.abs() * 5 + 0.5
    state = {}
    for (key, shape), offset in zip(shapes.items(), offsets):
        numel = math.prod(shape)
        source = variances if key.endswith("running_var") else pool
        state[key] = (torch.tensor(1000) if key.endswith("num_batches_tracked")
                      else source[offset:offset + numel].view(shape))
    return state


def write_release(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """As the release stores it: DataParallel names inside a ``state_dict`` wrapper."""
    torch.save({"state_dict": {f"module.{key}": value for key, value in state.items()}}, path)
    return path


pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")


@pytest.fixture(scope="module")
def release_state() -> dict[str, torch.Tensor]:
    return released_acr_state_dict(seed=0)


@pytest.fixture(scope="module")
def converted(release_state, tmp_path_factory) -> dict:
    """``polyvision convert acr`` run in this process (the subprocess test checks the console
    script separately: a second full conversion would double the HRNet import and build time)."""
    root = tmp_path_factory.mktemp("acr_convert")
    source = write_release(root / "wild.pkl", release_state)
    out = root / "acr_wild.ckpt"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(["convert", "acr", str(source), str(out), "--mano-dir", "generated"])
    assert code == 0, stderr.getvalue()[-3000:]
    from polyvision.models.factory import load_model

    return {"state": release_state, "source": source, "out": out, "stdout": stdout.getvalue(), "model": load_model(out)}


# --------------------------------------------------------------------------- the release's layer formulas
def batch_norm(x, state, name):
    return F.batch_norm(x, state[f"{name}.running_mean"], state[f"{name}.running_var"], state[f"{name}.weight"],
                        state[f"{name}.bias"], training=False, eps=BN_EPS)


def release_basic_block(x, state, name):
    out = F.relu(batch_norm(F.conv2d(x, state[f"{name}.conv1.weight"], padding=1), state, f"{name}.bn1"))
    return F.relu(batch_norm(F.conv2d(out, state[f"{name}.conv2.weight"], padding=1), state, f"{name}.bn2") + x)


def release_map_head(x, state, head):
    out = F.conv2d(x, state[f"{head}.0.0.weight"], state[f"{head}.0.0.bias"], stride=2, padding=1)
    out = F.relu(batch_norm(out, state, f"{head}.0.1"))
    out = release_basic_block(release_basic_block(out, state, f"{head}.1.0.0"), state, f"{head}.1.1.0")
    return F.conv2d(out, state[f"{head}.2.weight"], state[f"{head}.2.bias"])


def release_locally_connected(x, weight):
    """PARE's LocallyConnected2d (kernel 1, no bias) on (B, C, 16, 1), read as ACR does: (B, 96)."""
    out = (x.unfold(2, 1, 1).unfold(3, 1, 1).flatten(-2).unsqueeze(1) * weight).sum([2, -1])  # (B, 6, 16, 1)
    return out.squeeze(-1).transpose(2, 1).reshape(x.shape[0], -1)


# --------------------------------------------------------------------------- tests
def test_every_released_key_is_mapped_or_dropped(converted):
    stdout, state = converted["stdout"], converted["state"]
    summary = re.search(r"(\d+) keys mapped \((\d+) renamed, (\d+) reshaped, (\d+) folded\), (\d+) dropped, "
                        r"(\d+) missing in the file", stdout.replace("\n", " "))
    assert summary, stdout[-3000:]
    mapped, renamed, reshaped, folded, dropped, missing = map(int, summary.groups())
    assert mapped + dropped == len(state)
    assert dropped == sum(key.startswith("segmentation_layers.") for key in state) == 9
    assert reshaped == 4 and folded == 9  # 2 LC2d, 2 fusions; 8 map-head convs + the pose-feature conv
    model_state = converted["model"].state_dict()
    extra_fuse = [key for key in model_state if re.match(r"backbone\.model\.stage4\.2\.fuse_layers\.[123]\.", key)]
    assert extra_fuse and missing == len(extra_fuse) + 2  # + the two pose regressor biases
    assert "not in the release (unused by ACR)" in stdout and "never used in its forward" in stdout


def test_backbone_weights_are_the_released_ones(converted):
    state, model_state = converted["state"], converted["model"].state_dict()
    backbone = [key for key in state if key.startswith("backbone.") and ".hand_segm." not in key]
    assert len(backbone) > 1500
    for key in backbone:  # the official HRNet names are timm's
        assert torch.equal(model_state[f"backbone.model.{key[len('backbone.'):]}"], state[key]), key


def test_converted_heads_compute_the_release_layers(converted):
    state, head = converted["state"], converted["model"].heads.hands
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 34, 8, 8, generator=generator)
    with torch.no_grad():
        for prefix, side in (("r", 0), ("l", 1)):  # ACR's r_* is our slot 0, l_* slot 1
            for index, name in zip(MAP_HEADS, ("parameter_maps", "center_maps", "camera_maps", "prior_maps")):
                expected = release_map_head(x, state, f"{prefix}_final_layers.{index}")
                torch.testing.assert_close(getattr(head, name)[side](x), expected, msg=f"{prefix} {name}")
        pose = F.relu(batch_norm(F.conv2d(x, state["contact_layers.1.0.weight"], state["contact_layers.1.0.bias"],
                                          padding=1), state, "contact_layers.1.1"))
        torch.testing.assert_close(head.pose_features(x), pose)
        torch.testing.assert_close(head.shape_features(pose), F.conv2d(pose, state["cam_shape_layers.1.0.weight"],
                                                                       state["cam_shape_layers.1.0.bias"]))
        parts = torch.randn(2, 256, 16, 1, generator=generator)
        shape_parts = torch.randn(2, 1024, generator=generator)
        grid, part_prediction = torch.randn(2, 109, 4, 4, generator=generator), torch.randn(2, 109, 4, 4, generator=generator)
        for lc2d, shape_layer, fusion, side in ((2, 2, 4, 1), (3, 3, 5, 0)):  # [2]/[4] left, [3]/[5] right
            expected = release_locally_connected(parts, state[f"contact_layers.{lc2d}.weight"])
            torch.testing.assert_close(head.pose_regressors[side](parts[..., 0]).flatten(1), expected)
            torch.testing.assert_close(head.shape_regressors[side](shape_parts), F.linear(
                shape_parts, state[f"cam_shape_layers.{shape_layer}.weight"], state[f"cam_shape_layers.{shape_layer}.bias"]))
            release_fused = F.conv2d(torch.cat([grid, part_prediction], 1), state[f"contact_layers.{fusion}.weight"],
                                     state[f"contact_layers.{fusion}.bias"])  # release: cat(params maps, part prediction)
            torch.testing.assert_close(head.fusion[side](torch.cat([part_prediction, grid], 1)), release_fused)
        # Part segmentation after the ×2 upsampling: DoubleConv(32, 64, mid 16), then conv, BN, ReLU, conv.
        up = torch.randn(2, 32, 8, 8, generator=generator)
        segm = "backbone.hand_segm.segm_head"
        out = up
        for conv, norm in (("upsampler.up1.conv.double_conv.0", "upsampler.up1.conv.double_conv.1"),
                           ("upsampler.up1.conv.double_conv.3", "upsampler.up1.conv.double_conv.4"),
                           ("segm_net.double_conv.0", "segm_net.double_conv.1")):
            out = F.conv2d(out, state[f"{segm}.{conv}.weight"], state[f"{segm}.{conv}.bias"], padding=1)
            out = F.relu(batch_norm(out, state, f"{segm}.{norm}"))
        out = F.conv2d(out, state[f"{segm}.segm_net.double_conv.3.weight"], state[f"{segm}.segm_net.double_conv.3.bias"],
                       padding=1)
        torch.testing.assert_close(torch.nn.Sequential(*list(head.segmentation)[1:])(up), out)


def test_converted_checkpoint_runs_and_records_its_input(converted):
    model = converted["model"]
    checkpoint = torch.load(converted["out"], map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["input_geometry"] == {
        "hands": {"input": "image", "size": [512, 512], "pad": "white", "normalize": "minus_one_to_one"}}
    assert checkpoint["polyvision"]["class_path"] == "polyvision.models.acr.ACR"
    assert checkpoint["polyvision"]["converted_from"]["system"] == "acr"
    assert model.heads.hands.pose_regressors[0].bias.abs().sum() == 0
    with torch.no_grad():
        outputs = model.generate({"image": torch.rand(1, 3, 128, 128), "source": "hands"})["hands"]
    assert outputs["vertices"].shape == (1, 2, 778, 3) and torch.isfinite(outputs["vertices"]).all()


def run_convert(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(["convert", *args])
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    assert "Traceback" not in err and "weights_only=False" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_wrong_shape_is_refused_and_nothing_is_written(release_state, tmp_path, capsys):
    state = dict(release_state)
    state["r_final_layers.1.2.weight"] = torch.zeros(100, 64, 1, 1)
    source = write_release(tmp_path / "wild.pkl", state)
    out = tmp_path / "out.ckpt"
    code, err = run_convert(capsys, "acr", str(source), str(out), "--mano-dir", "generated")
    assert_one_line(code, err, "wild.pkl", "r_final_layers.1.2.weight", "(100, 64, 1, 1)", "(106, 64, 1, 1)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wild.pkl"]  # no output, no temporary file


def test_a_missing_weight_is_refused(release_state, tmp_path, capsys):
    state = dict(release_state)
    del state["contact_layers.4.bias"]
    source = write_release(tmp_path / "wild.pkl", state)
    code, err = run_convert(capsys, "acr", str(source), str(tmp_path / "out.ckpt"), "--mano-dir", "generated")
    assert_one_line(code, err, "wild.pkl", "not in the file", "heads.hands.fusion.1.bias")
    assert not (tmp_path / "out.ckpt").exists()


def test_unreadable_foreign_and_unsafe_files_are_one_line(tmp_path, capsys):
    text = tmp_path / "notes.pkl"
    text.write_text("not weights\n")
    assert_one_line(*run_convert(capsys, "acr", str(text), str(tmp_path / "a.ckpt"), "--mano-dir", "generated"),
                    "notes.pkl", "not a readable checkpoint")
    foreign = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, foreign)
    assert_one_line(*run_convert(capsys, "acr", str(foreign), str(tmp_path / "a.ckpt"), "--mano-dir", "generated"),
                    "resnet.pth", "match no rule", "fc.weight")
    unsafe = tmp_path / "code.pkl"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "args": Path("x")}, unsafe)  # a pickled class
    assert_one_line(*run_convert(capsys, "acr", str(unsafe), str(tmp_path / "a.ckpt"), "--mano-dir", "generated"),
                    "code.pkl", "refused", "run code")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["code.pkl", "notes.pkl", "resnet.pth"]


def test_unknown_system_missing_mano_and_existing_output(tmp_path, capsys):
    source = tmp_path / "wild.pkl"
    source.write_bytes(b"")
    assert_one_line(*run_convert(capsys, "romp", str(source), str(tmp_path / "a.ckpt")), "unknown system 'romp'",
                    "known: acr")
    assert_one_line(*run_convert(capsys, "acr", str(source), str(tmp_path / "a.ckpt")), "--mano-dir")
    assert_one_line(*run_convert(capsys, "acr", str(source), str(tmp_path / "a.ckpt"), "--mano-dir",
                                 str(tmp_path / "nomano")), "nomano: no such folder")
    existing = tmp_path / "old.ckpt"
    existing.write_bytes(b"keep")
    assert_one_line(*run_convert(capsys, "acr", str(source), str(existing), "--mano-dir", "generated"), "--force")
    assert existing.read_bytes() == b"keep"


def test_cli_subprocess_error_is_one_line(tmp_path):
    result = run_cli("convert", "acr", str(tmp_path / "absent.pkl"), str(tmp_path / "a.ckpt"), "--mano-dir", "generated")
    assert_one_line_error(result, "absent.pkl", "not found")
