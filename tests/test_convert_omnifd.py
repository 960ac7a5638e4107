"""``polyvision convert omnifd``: OmniFD's released names and shapes -> a polyvision checkpoint.

The released file (``omnifd_swin-s_50k_forgerynet.pth``, OmniFD's model zoo, github.com/haotianll/OmniFD)
is not available here, so :func:`released_omnifd_shapes` writes the names and shapes of its state
dict from the module attributes of the official code (``mmpretrain/models/omnifd/``:
``backbone/swin_omni.py`` ``SwinTransformer3D``, ``module.py`` ``Interaction``, ``head/cls.py``,
``head/spatial.py`` ``SpatialHead``, ``head/temporal.py`` + ``head/temporal_helper.py``
``TemporalHead``), spelled out key by key below (the trunk's first block, the neck and every
head), independently of our module names. The converted model is compared with the same
weights loaded by hand into our modules (:func:`load_by_hand`, written module by module, not
through the converter's rules).

Small models (``configs/omnifd/synthetic*.yaml``: a Swin with embed 32 and depths [1,1,2,1])
keep the test fast; the mapping is per block, and ``test_paper_swin_s_key_set_is_covered``
checks the paper Swin-S config's full key set on meta tensors (shapes only).
"""
from __future__ import annotations

import contextlib
import io
import math
import re
from pathlib import Path

import pytest
import torch
import yaml

from helpers import assert_one_line_error, run_cli
from polyvision import cli

CONFIGS = Path(cli.__file__).resolve().parent / "configs" / "omnifd"
T = "backbone.trunk"
H = "head.decoder_modules"

# The architecture of each generated release (sizes of our config of the same name).
SMALL = dict(embed=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8], window=(2, 4, 4), latent=128, num_latents=16,
             neck_depth=1, neck_heads=4, neck_dim_head=32, neck_ff=2, spatial=64, temporal=64, fuse_heads=4,
             fuse_dim_head=16, fuse_ff=2)
PAPER_SWIN_S = dict(embed=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24], window=(8, 7, 7), latent=512,
                    num_latents=64, neck_depth=3, neck_heads=8, neck_dim_head=64, neck_ff=4, spatial=256, temporal=512,
                    fuse_heads=8, fuse_dim_head=64, fuse_ff=4)
ALL_HEADS = ("image", "video", "spatial", "temporal")
LEVELS = 6


def first_block_table(c: int, heads: int, window: tuple[int, int, int]) -> list[tuple[str, tuple[int, ...]]]:
    """Video-Swin's ``SwinTransformerBlock3D`` (qkv_bias=True, mlp_ratio 4) of stage 0, block 0."""
    table_rows = (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1)
    tokens = window[0] * window[1] * window[2]
    return [
        ("backbone.trunk.layers.0.blocks.0.norm1.weight", (c,)),
        ("backbone.trunk.layers.0.blocks.0.norm1.bias", (c,)),
        ("backbone.trunk.layers.0.blocks.0.attn.relative_position_bias_table", (table_rows, heads)),
        ("backbone.trunk.layers.0.blocks.0.attn.relative_position_index", (tokens, tokens)),
        ("backbone.trunk.layers.0.blocks.0.attn.qkv.weight", (3 * c, c)),
        ("backbone.trunk.layers.0.blocks.0.attn.qkv.bias", (3 * c,)),
        ("backbone.trunk.layers.0.blocks.0.attn.proj.weight", (c, c)),
        ("backbone.trunk.layers.0.blocks.0.attn.proj.bias", (c,)),
        ("backbone.trunk.layers.0.blocks.0.norm2.weight", (c,)),
        ("backbone.trunk.layers.0.blocks.0.norm2.bias", (c,)),
        ("backbone.trunk.layers.0.blocks.0.mlp.fc1.weight", (4 * c, c)),
        ("backbone.trunk.layers.0.blocks.0.mlp.fc1.bias", (4 * c,)),
        ("backbone.trunk.layers.0.blocks.0.mlp.fc2.weight", (c, 4 * c)),
        ("backbone.trunk.layers.0.blocks.0.mlp.fc2.bias", (c,)),
    ]


def released_omnifd_shapes(arch: dict, heads: tuple[str, ...] = ALL_HEADS) -> dict[str, tuple[int, ...]]:
    """The names and shapes of an OmniFD release of architecture ``arch`` with decoders ``heads``."""
    c, window = arch["embed"], arch["window"]
    shapes: dict[str, tuple[int, ...]] = {
        "backbone.trunk.patch_embed.proj.weight": (c, 3, 2, 4, 4),
        "backbone.trunk.patch_embed.proj.bias": (c,),
        "backbone.trunk.patch_embed.norm.weight": (c,),
        "backbone.trunk.patch_embed.norm.bias": (c,),
    }
    for stage, depth in enumerate(arch["depths"]):
        dim = c * 2 ** stage
        for block in range(depth):
            for key, shape in first_block_table(dim, arch["num_heads"][stage], window):
                shapes[key.replace("layers.0.blocks.0.", f"layers.{stage}.blocks.{block}.")] = shape
        if stage < 3:  # PatchMerging(dim): Linear(4 dim, 2 dim, bias=False) after LayerNorm(4 dim)
            shapes[f"{T}.layers.{stage}.downsample.reduction.weight"] = (2 * dim, 4 * dim)
            shapes[f"{T}.layers.{stage}.downsample.norm.weight"] = (4 * dim,)
            shapes[f"{T}.layers.{stage}.downsample.norm.bias"] = (4 * dim,)
    shapes[f"{T}.norm.weight"] = shapes[f"{T}.norm.bias"] = (8 * c,)

    # Interaction(latent_channels=D, feat_channels=[2C, 4C, 8C, 8C]): feat_channels reversed, so proj.0 is stage 3.
    d, latents = arch["latent"], arch["num_latents"]
    inner, ff = arch["neck_heads"] * arch["neck_dim_head"], d * arch["neck_ff"]
    shapes["neck.module.latents"] = (latents, d)
    for layer in range(arch["neck_depth"]):
        shapes.update({
            f"neck.module.layers.{layer}.0.norm_media.weight": (d,), f"neck.module.layers.{layer}.0.norm_media.bias": (d,),
            f"neck.module.layers.{layer}.0.norm_latents.weight": (d,), f"neck.module.layers.{layer}.0.norm_latents.bias": (d,),
            f"neck.module.layers.{layer}.0.to_q.weight": (inner, d),
            f"neck.module.layers.{layer}.0.to_kv.weight": (2 * inner, d),
            f"neck.module.layers.{layer}.0.to_out.weight": (d, inner),
            f"neck.module.layers.{layer}.1.0.weight": (d,), f"neck.module.layers.{layer}.1.0.bias": (d,),
            f"neck.module.layers.{layer}.1.1.weight": (ff, d),
            f"neck.module.layers.{layer}.1.3.weight": (d, ff),
        })
    shapes["neck.module.norm.weight"] = shapes["neck.module.norm.bias"] = (d,)
    shapes["neck.stage_embed"] = (4, 1, d, 1, 1, 1)
    for index, channels in enumerate([8 * c, 8 * c, 4 * c, 2 * c]):
        shapes[f"neck.proj.{index}.0.weight"], shapes[f"neck.proj.{index}.0.bias"] = (d, channels), (d,)
        shapes[f"neck.proj.{index}.1.weight"] = shapes[f"neck.proj.{index}.1.bias"] = (d,)

    for name in ("image", "video"):  # ImageClsHead / VideoClsHead: fc = Linear(D, 2)
        if name in heads:
            shapes[f"{H}.{name}.fc.weight"], shapes[f"{H}.{name}.fc.bias"] = (2, d), (2,)
    if "spatial" in heads:  # SpatialHead(channels=S, num_latents=L): FCNHead convs, proj, conv_seg = Linear(L, 1)
        s = arch["spatial"]
        shapes.update({
            f"{H}.spatial.convs.0.conv.weight": (s, 22 * c, 3, 3), f"{H}.spatial.convs.0.conv.bias": (s,),
            f"{H}.spatial.convs.1.conv.weight": (s, s, 3, 3), f"{H}.spatial.convs.1.conv.bias": (s,),
            f"{H}.spatial.proj.0.weight": (s, d), f"{H}.spatial.proj.0.bias": (s,),
            f"{H}.spatial.proj.1.weight": (s,), f"{H}.spatial.proj.1.bias": (s,),
            f"{H}.spatial.conv_seg.weight": (1, latents), f"{H}.spatial.conv_seg.bias": (1,),
        })
    if "temporal" in heads:
        shapes.update(released_temporal_shapes(arch))
    return shapes


def released_temporal_shapes(arch: dict) -> dict[str, tuple[int, ...]]:
    """TemporalHead: TemporalProj(8C -> E, arch (1, 1, 5)), TemporalFPN(E), TemporalRPNHead(E, latents D)."""
    e, d, c = arch["temporal"], arch["latent"], arch["embed"]
    p, rpn = f"{H}.temporal.projection", f"{H}.temporal.rpn_head"
    shapes = {f"{p}.embed.0.conv.weight": (e, 8 * c, 3), f"{p}.embed.0.norm.weight": (e,), f"{p}.embed.0.norm.bias": (e,)}
    for block in (f"{p}.stem.0", f"{p}.branch"):  # TransformerBlock; the stride-2 branch's kernels are 3 too
        shapes.update({
            f"{block}.ln1.weight": (e,), f"{block}.ln1.bias": (e,), f"{block}.ln2.weight": (e,), f"{block}.ln2.bias": (e,),
            f"{block}.attn.query_conv.conv.weight": (e, 1, 3), f"{block}.attn.key_conv.conv.weight": (e, 1, 3),
            f"{block}.attn.value_conv.conv.weight": (e, 1, 3),
            f"{block}.attn.query_norm.weight": (e,), f"{block}.attn.query_norm.bias": (e,),
            f"{block}.attn.key_norm.weight": (e,), f"{block}.attn.key_norm.bias": (e,),
            f"{block}.attn.value_norm.weight": (e,), f"{block}.attn.value_norm.bias": (e,),
            f"{block}.attn.key.weight": (e, e, 1), f"{block}.attn.key.bias": (e,),
            f"{block}.attn.query.weight": (e, e, 1), f"{block}.attn.query.bias": (e,),
            f"{block}.attn.value.weight": (e, e, 1), f"{block}.attn.value.bias": (e,),
            f"{block}.attn.proj.weight": (e, e, 1), f"{block}.attn.proj.bias": (e,),
            f"{block}.mlp.0.weight": (4 * e, e, 1), f"{block}.mlp.0.bias": (4 * e,),
            f"{block}.mlp.3.weight": (e, 4 * e, 1), f"{block}.mlp.3.bias": (e,),
            f"{block}.drop_path_attn.scale": (1, e, 1), f"{block}.drop_path_mlp.scale": (1, e, 1),
        })
    for level in range(LEVELS):
        shapes[f"{H}.temporal.neck.fpn_norms.{level}.weight"] = shapes[f"{H}.temporal.neck.fpn_norms.{level}.bias"] = (e,)
    for branch in ("cls_convs", "reg_convs"):
        for index in range(2):  # ConvModule(E, E, 3) with LN: no conv bias
            shapes[f"{rpn}.{branch}.{index}.conv.weight"] = (e, e, 3)
            shapes[f"{rpn}.{branch}.{index}.norm.weight"] = shapes[f"{rpn}.{branch}.{index}.norm.bias"] = (e,)
    inner, ff = arch["fuse_heads"] * arch["fuse_dim_head"], e * arch["fuse_ff"]
    shapes.update({
        f"{rpn}.cls_head.weight": (1, e, 3), f"{rpn}.cls_head.bias": (1,),
        f"{rpn}.reg_head.weight": (2, e, 3), f"{rpn}.reg_head.bias": (2,),
        **{f"{rpn}.scale.{level}.scale": () for level in range(LEVELS)},
        f"{rpn}.sample_proj.0.weight": (e, d), f"{rpn}.sample_proj.0.bias": (e,),
        f"{rpn}.sample_proj.1.weight": (e,), f"{rpn}.sample_proj.1.bias": (e,),
        f"{rpn}.fuse_block.layers.0.0.norm_media.weight": (e,), f"{rpn}.fuse_block.layers.0.0.norm_media.bias": (e,),
        f"{rpn}.fuse_block.layers.0.0.norm_latents.weight": (e,), f"{rpn}.fuse_block.layers.0.0.norm_latents.bias": (e,),
        f"{rpn}.fuse_block.layers.0.0.to_q.weight": (inner, e),
        f"{rpn}.fuse_block.layers.0.0.to_kv.weight": (2 * inner, e),
        f"{rpn}.fuse_block.layers.0.0.to_out.weight": (e, inner),
        f"{rpn}.fuse_block.layers.0.1.0.weight": (e,), f"{rpn}.fuse_block.layers.0.1.0.bias": (e,),
        f"{rpn}.fuse_block.layers.0.1.1.weight": (ff, e), f"{rpn}.fuse_block.layers.0.1.3.weight": (e, ff),
        f"{rpn}.fuse_block.norm.weight": (e,), f"{rpn}.fuse_block.norm.bias": (e,),
        f"{rpn}.loss_normalizer": (),
    })
    return shapes


def video_swin_position_index(window: tuple[int, int, int]) -> torch.Tensor:
    """Video-Swin's ``WindowAttention3D.relative_position_index`` for ``window`` (Wd, Wh, Ww)."""
    coords = torch.stack(torch.meshgrid(*[torch.arange(size) for size in window], indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    for axis in range(3):
        relative[:, :, axis] += window[axis] - 1
    relative[:, :, 0] *= (2 * window[1] - 1) * (2 * window[2] - 1)
    relative[:, :, 1] *= 2 * window[2] - 1
    return relative.sum(-1)


def released_omnifd_state_dict(arch: dict, heads: tuple[str, ...] = ALL_HEADS, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors of the release's names and shapes (distinct values per key)."""
    generator = torch.Generator().manual_seed(seed)
    shapes = released_omnifd_shapes(arch, heads)
    pool_size = 1 << 20
    pool = torch.randn(pool_size, generator=generator) * 0.2
    state = {}
    for key, shape in shapes.items():
        if key.endswith("relative_position_index"):
            state[key] = video_swin_position_index(arch["window"])
        elif key.endswith("loss_normalizer"):
            state[key] = torch.tensor(37.5)
        else:
            numel = math.prod(shape)
            offset = int(torch.randint(0, pool_size - numel, (1,), generator=generator))
            state[key] = pool[offset:offset + numel].view(shape)
            if key.endswith(".scale") and ".scale." in key:  # rpn Scale: positive like a trained one
                state[key] = state[key].abs() + 0.5
    return state


# --------------------------------------------------------------------------- by hand
def load_by_hand(model, state: dict[str, torch.Tensor], heads: tuple[str, ...]) -> set[str]:
    """Copy the release tensors into our modules one module at a time; returns the keys used."""
    used: set[str] = set()

    def put(parameter: torch.Tensor, key: str, value: torch.Tensor | None = None) -> None:
        with torch.no_grad():
            parameter.copy_(state[key] if value is None else value)
        used.add(key)

    def affine(module, prefix: str) -> None:  # Linear / Conv / LayerNorm: weight and optional bias
        put(module.weight, f"{prefix}.weight")
        if getattr(module, "bias", None) is not None:
            put(module.bias, f"{prefix}.bias")

    backbone = model.backbone
    affine(backbone.patch_embed.proj, f"{T}.patch_embed.proj")
    affine(backbone.patch_embed.norm, f"{T}.patch_embed.norm")
    for stage in range(4):
        for index, block in enumerate(backbone.features[2 * stage]):
            prefix = f"{T}.layers.{stage}.blocks.{index}"
            affine(block.norm1, f"{prefix}.norm1")
            affine(block.attn.qkv, f"{prefix}.attn.qkv")
            affine(block.attn.proj, f"{prefix}.attn.proj")
            put(block.attn.relative_position_bias_table, f"{prefix}.attn.relative_position_bias_table")
            put(block.attn.relative_position_index, f"{prefix}.attn.relative_position_index")
            affine(block.norm2, f"{prefix}.norm2")
            affine(block.mlp[0], f"{prefix}.mlp.fc1")
            affine(block.mlp[3], f"{prefix}.mlp.fc2")
        if stage < 3:
            merge = backbone.features[2 * stage + 1]
            affine(merge.reduction, f"{T}.layers.{stage}.downsample.reduction")
            affine(merge.norm, f"{T}.layers.{stage}.downsample.norm")
    affine(backbone.norm, f"{T}.norm")

    neck = model.neck
    put(neck.latents, "neck.module.latents")
    for index, (attention, feed_forward) in enumerate(neck.layers):
        prefix = f"neck.module.layers.{index}"
        affine(attention.norm_tokens, f"{prefix}.0.norm_media")
        affine(attention.norm_latents, f"{prefix}.0.norm_latents")
        for name in ("to_q", "to_kv", "to_out"):
            affine(getattr(attention, name), f"{prefix}.0.{name}")
        for position in (0, 1, 3):
            affine(feed_forward[position], f"{prefix}.1.{position}")
    affine(neck.norm, "neck.module.norm")
    for stage in range(4):  # the release's proj.i and stage_embed[i] belong to stage 3 - i
        affine(neck.proj[stage][0], f"neck.proj.{3 - stage}.0")
        affine(neck.proj[stage][1], f"neck.proj.{3 - stage}.1")
        with torch.no_grad():
            neck.stage_embed[stage].copy_(state["neck.stage_embed"][3 - stage, 0, :, 0, 0, 0])
    used.add("neck.stage_embed")

    for name in ("image", "video"):
        if name in heads:
            affine(model.heads[name].fc, f"{H}.{name}.fc")
    if "spatial" in heads:
        spatial = model.heads["spatial"]
        affine(spatial.convs[0], f"{H}.spatial.convs.0.conv")
        affine(spatial.convs[2], f"{H}.spatial.convs.1.conv")
        affine(spatial.kernel_proj[0], f"{H}.spatial.proj.0")
        affine(spatial.kernel_proj[1], f"{H}.spatial.proj.1")
        affine(spatial.kernel_pool, f"{H}.spatial.conv_seg")
    if "temporal" in heads:
        load_temporal_by_hand(model.heads["temporal"], affine, put)
    return used


def load_temporal_by_hand(head, affine, put) -> None:
    p, rpn = f"{H}.temporal.projection", f"{H}.temporal.rpn_head"
    affine(head.proj.embed, f"{p}.embed.0.conv")
    affine(head.proj.embed_norm.norm, f"{p}.embed.0.norm")
    for block, prefix in ((head.proj.stem, f"{p}.stem.0"), (head.proj.branch[0], f"{p}.branch")):
        affine(block.norm1.norm, f"{prefix}.ln1")
        affine(block.norm2.norm, f"{prefix}.ln2")
        for ours, theirs in (("q", "query"), ("k", "key"), ("v", "value")):
            affine(getattr(block.attn, f"{ours}_conv"), f"{prefix}.attn.{theirs}_conv.conv")
            affine(getattr(block.attn, f"{ours}_norm").norm, f"{prefix}.attn.{theirs}_norm")
            affine(getattr(block.attn, theirs), f"{prefix}.attn.{theirs}")
        affine(block.attn.proj, f"{prefix}.attn.proj")
        affine(block.mlp[0], f"{prefix}.mlp.0")
        affine(block.mlp[2], f"{prefix}.mlp.3")
        put(block.drop_path_attn.scale, f"{prefix}.drop_path_attn.scale")
        put(block.drop_path_mlp.scale, f"{prefix}.drop_path_mlp.scale")
    for level, norm in enumerate(head.fpn.norms):
        affine(norm.norm, f"{H}.temporal.neck.fpn_norms.{level}")
    for branch in ("cls_convs", "reg_convs"):
        for index, (conv, norm) in enumerate(getattr(head.rpn, branch)):
            affine(conv, f"{rpn}.{branch}.{index}.conv")
            affine(norm.norm, f"{rpn}.{branch}.{index}.norm")
    affine(head.rpn.cls_head, f"{rpn}.cls_head")
    affine(head.rpn.reg_head, f"{rpn}.reg_head")
    for level in range(LEVELS):  # one Scale module per level in the release, one vector here
        put(head.rpn.scales[level], f"{rpn}.scale.{level}.scale")
    fuse = head.rpn.fuse
    affine(fuse.latent_proj[0], f"{rpn}.sample_proj.0")
    affine(fuse.latent_proj[1], f"{rpn}.sample_proj.1")
    affine(fuse.attn.norm_tokens, f"{rpn}.fuse_block.layers.0.0.norm_media")
    affine(fuse.attn.norm_latents, f"{rpn}.fuse_block.layers.0.0.norm_latents")
    for name in ("to_q", "to_kv", "to_out"):
        affine(getattr(fuse.attn, name), f"{rpn}.fuse_block.layers.0.0.{name}")
    for position in (0, 1, 3):
        affine(fuse.ff[position], f"{rpn}.fuse_block.layers.0.1.{position}")
    put(head.loss_normalizer, f"{rpn}.loss_normalizer")



# --------------------------------------------------------------------------- fixtures
pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")


def run_convert(*args: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(["convert", "omnifd", *args])
    return code, stdout.getvalue(), stderr.getvalue()


def summary(stdout: str) -> dict[str, int]:
    found = re.search(r"(\d+) keys mapped \((\d+) renamed, (\d+) reshaped, (\d+) folded(?:, (\d+) stacked)?\), "
                      r"(\d+) dropped, (\d+) missing in the file", " ".join(stdout.split()))
    assert found, stdout[-3000:]
    names = ("mapped", "renamed", "reshaped", "folded", "stacked", "dropped", "missing")
    return {name: int(value or 0) for name, value in zip(names, found.groups())}


@pytest.fixture(scope="module")
def release_state() -> dict[str, torch.Tensor]:
    return released_omnifd_state_dict(SMALL)


@pytest.fixture(scope="module")
def converted(release_state, tmp_path_factory) -> dict:
    """The unified small config, from an MMEngine-style file with DataParallel names."""
    from polyvision.models.factory import load_model

    root = tmp_path_factory.mktemp("omnifd_convert")
    source = root / "omnifd_small.pth"
    torch.save({"meta": {"mmengine_version": "0.10.4", "iter": 50000},
                "state_dict": {f"module.{key}": value for key, value in release_state.items()}}, source)
    out = root / "omnifd_small.ckpt"
    code, stdout, stderr = run_convert(str(source), str(out), "--config", str(CONFIGS / "synthetic.yaml"))
    assert code == 0, stderr[-3000:]
    return {"out": out, "stdout": stdout, "model": load_model(out)}


# --------------------------------------------------------------------------- tests
def test_every_released_key_is_mapped_or_dropped(converted, release_state):
    counts, stdout = summary(converted["stdout"]), converted["stdout"]
    assert counts["mapped"] + counts["dropped"] == len(release_state)
    # fuse_block.norm.{weight,bias}: the small config's FuseBlock has no final norm (fuse_norm: false)
    assert counts["dropped"] == 2 and "FuseBlock's final LayerNorm" in stdout
    assert counts["reshaped"] == 1 and counts["stacked"] == LEVELS and counts["missing"] == 0
    assert len(converted["model"].state_dict()) == counts["mapped"] - LEVELS + 1  # 6 scalars -> one vector


def test_converted_outputs_equal_the_hand_loaded_model(converted, release_state):
    from polyvision.models.factory import create_model

    by_hand = create_model("omnifd_synthetic")
    used = load_by_hand(by_hand, release_state, ALL_HEADS)
    assert set(release_state) - used == {f"{H}.temporal.rpn_head.fuse_block.norm.weight",
                                         f"{H}.temporal.rpn_head.fuse_block.norm.bias"}
    by_hand.eval()
    model = converted["model"]
    generator = torch.Generator().manual_seed(3)
    image = torch.randn(2, 3, 64, 64, generator=generator)
    clip = {"video": torch.randn(2, 3, 16, 64, 64, generator=generator),
            "frame_mask": torch.tensor([[True] * 16, [True] * 12 + [False] * 4]), "source": "video"}
    with torch.no_grad():
        for batch, names in (({"image": image, "source": "image"}, ["image", "spatial"]), (clip, ["video", "temporal"])):
            ours, expected = model(batch, names), by_hand(batch, names)
            for name in names:
                for key, value in expected[name].items():
                    torch.testing.assert_close(ours[name][key], value, rtol=0, atol=0, msg=f"{name} {key}")
    for key, value in by_hand.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_checkpoint_records_release_config_and_geometry(converted):
    checkpoint = torch.load(converted["out"], map_location="cpu", weights_only=True)
    assert checkpoint["polyvision"]["class_path"] == "polyvision.models.omnifd.OmniFD"
    assert checkpoint["polyvision"]["converted_from"] == {
        "system": "omnifd", "file": "omnifd_small.pth", "release": "github.com/haotianll/OmniFD",
        "config": "configs/omnifd/synthetic.yaml"}
    geometry = checkpoint["hyper_parameters"]["input_geometry"]
    assert geometry["image"]["input"] == "image" and geometry["video"]["clip_len"] == 16


def test_single_task_config_takes_its_heads_from_a_bare_state_dict(release_state, tmp_path):
    source = tmp_path / "bare.pth"
    torch.save(dict(release_state), source)  # stripped: no wrapper, no prefix
    out = tmp_path / "ffpp.ckpt"
    code, stdout, stderr = run_convert(str(source), str(out), "--config", str(CONFIGS / "synthetic_ffpp.yaml"))
    assert code == 0, stderr[-3000:]
    counts = summary(stdout)
    video_and_temporal = [k for k in release_state if k.startswith((f"{H}.video.", f"{H}.temporal."))]
    assert counts["dropped"] == len(video_and_temporal) and counts["mapped"] + counts["dropped"] == len(release_state)
    assert "not in this config (configs/omnifd/synthetic_ffpp.yaml)" in " ".join(stdout.split())
    from polyvision.models.factory import load_model

    model = load_model(out)
    assert sorted(model.heads) == ["image", "spatial"]
    assert torch.equal(model.heads["spatial"].kernel_pool.weight, release_state[f"{H}.spatial.conv_seg.weight"])


def test_paper_swin_s_key_set_is_covered():
    """The unified Swin-S paper config: every release key mapped (or the one known drop), every
    weight of ours given, shapes only (meta tensors, no forward)."""
    from polyvision.models.factory import build_from_spec
    from polyvision.scripts.convert_omnifd import map_omnifd, model_heads

    spec = yaml.safe_load((CONFIGS / "forgerynet_swin_s.yaml").read_text())["model"]
    with torch.device("meta"):
        model = build_from_spec(spec, "forgerynet_swin_s.yaml")
    ours = model.state_dict()
    shapes = released_omnifd_shapes(PAPER_SWIN_S)
    state = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
    mapping = map_omnifd(state, ours, model_heads(model), "configs/omnifd/forgerynet_swin_s.yaml", Path("swin_s.pth"))
    assert set(mapping.weights) == set(ours) and not mapping.missing
    for key, value in mapping.weights.items():
        assert value.shape == ours[key].shape, key
    dropped = [key for rule, keys in mapping.used.items() if rule.action == "dropped" for key in keys]
    assert dropped == []  # the paper config's FuseBlock ends with the release's LayerNorm (fuse_norm: true)
    assert mapping.weights["heads.temporal.rpn.fuse.norm.weight"].shape == ours["heads.temporal.rpn.fuse.norm.weight"].shape
    assert sum(1 for key in shapes if ".blocks." in key and key.endswith("qkv.weight")) == 24


def test_swin_position_index_is_torchvisions():
    """A release stripped of the index buffers keeps ours: the same formula."""
    from polyvision.models.backbones import VideoSwinBackbone

    backbone = VideoSwinBackbone("swin3d_t", embed_dim=32, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1])
    assert torch.equal(backbone.features[0][0].attn.relative_position_index, video_swin_position_index((8, 7, 7)))


def assert_one_line(code: int, err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("case", ["unknown key", "wrong shape", "needs code", "missing weight", "deeper trunk"])
def test_refusals_are_one_line_and_write_nothing(release_state, tmp_path, case):
    state = dict(release_state)
    source = tmp_path / "release.pth"
    if case == "unknown key":
        state[f"{H}.image.extra.weight"] = torch.zeros(3)
        fragments = ("match no rule", f"{H}.image.extra.weight")
    elif case == "wrong shape":
        state[f"{H}.video.fc.weight"] = torch.zeros(3, SMALL["latent"])
        fragments = (f"{H}.video.fc.weight", "(3, 128)", "(2, 128)")
    elif case == "missing weight":
        del state[f"{H}.temporal.rpn_head.scale.3.scale"]
        fragments = ("row 3", "heads.temporal.rpn.scales", "not in the file")
    elif case == "deeper trunk":
        state[f"{T}.layers.0.blocks.1.norm1.weight"] = torch.zeros(SMALL["embed"])
        fragments = ("backbone.features.0.1.norm1.weight", "does not have")
    if case == "needs code":
        torch.save({"state_dict": state, "message_hub": Path("x")}, source)  # a pickled class
        fragments = ("release.pth", "refused", "run code", "state_dict")
    else:
        torch.save({"meta": {}, "state_dict": state}, source)
    code, _, err = run_convert(str(source), str(tmp_path / "out.ckpt"), "--config", str(CONFIGS / "synthetic.yaml"))
    assert_one_line(code, err, *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release.pth"]


def test_config_errors_are_one_line(tmp_path):
    source = tmp_path / "x.pth"
    torch.save({"a": torch.zeros(1)}, source)
    code, _, err = run_convert(str(source), str(tmp_path / "o.ckpt"), "--config", "nope.yaml")
    assert_one_line(code, err, "nope.yaml", "no such file")
    code, _, err = run_convert(str(source), str(tmp_path / "o.ckpt"), "--config", "configs/acr/synthetic.yaml")
    assert_one_line(code, err, "not an OmniFD config")


def test_cli_subprocess_error_is_one_line(tmp_path):
    result = run_cli("convert", "omnifd", str(tmp_path / "absent.pth"), str(tmp_path / "a.ckpt"))
    assert_one_line_error(result, "absent.pth", "not found")
