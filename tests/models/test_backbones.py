from __future__ import annotations

import pytest
import torch

from polyvision.errors import ConfigError, WeightsError
from polyvision.models.backbones import build_backbone

SMALL_TIMM_SWIN = dict(img_size=64, window_size=4, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4))
SMALL_VIDEO_SWIN = dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4], window_size=[2, 4, 4])


@pytest.mark.parametrize("name,kwargs", [
    ("swin_tiny_patch4_window7_224", SMALL_TIMM_SWIN),
    ("resnet18", {}),
    ("swin3d_t", SMALL_VIDEO_SWIN),
])
def test_image_features_are_nchw_with_declared_channels_and_strides(name, kwargs):
    backbone = build_backbone(name, **kwargs)
    maps = backbone(torch.randn(2, 3, 64, 64))
    assert len(maps) == len(backbone.out_channels) == len(backbone.strides)
    for feature_map, channels, stride in zip(maps, backbone.out_channels, backbone.strides):
        assert feature_map.shape == (2, channels, 64 // stride, 64 // stride)


def test_video_swin_returns_post_merge_stages_for_clips_and_images():
    backbone = build_backbone("swin3d_t", **SMALL_VIDEO_SWIN).eval()  # eval: no stochastic depth
    assert backbone.out_channels == [32, 64, 128, 128] and backbone.strides == [8, 16, 32, 32]
    clip_maps = backbone(torch.randn(1, 3, 8, 64, 64))
    assert [m.shape for m in clip_maps] == [(1, 32, 4, 8, 8), (1, 64, 4, 4, 4), (1, 128, 4, 2, 2), (1, 128, 4, 2, 2)]
    image = torch.randn(1, 3, 64, 64)
    one_frame = backbone(image.unsqueeze(2))
    for image_map, clip_map in zip(backbone(image), one_frame):
        torch.testing.assert_close(image_map, clip_map.squeeze(2))


def test_gradient_checkpointing_gives_the_same_outputs_and_gradients(monkeypatch):
    """OmniFD's with_cp: activations are recomputed in backward, results are unchanged (stochastic
    depth included: the recomputation replays the same random draws)."""
    torch.manual_seed(0)
    plain = build_backbone("swin3d_t", **SMALL_VIDEO_SWIN, drop_path_rate=0.2).train()
    checkpointed = build_backbone("swin3d_t", **SMALL_VIDEO_SWIN, drop_path_rate=0.2, grad_checkpointing=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    clip = torch.randn(2, 3, 4, 32, 32)
    calls = []
    original = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda *a, **k: calls.append(1) or original(*a, **k))
    results = []
    for model in (plain, checkpointed):
        torch.manual_seed(1)
        maps = model(clip)
        sum(m.square().mean() for m in maps).backward()
        results.append(([m.detach() for m in maps], {n: p.grad.clone() for n, p in model.named_parameters()}))
    for a, b in zip(results[0][0], results[1][0]):
        torch.testing.assert_close(a, b)
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, msg=name)
    assert len(calls) == 4  # one per Swin block (depths [1, 1, 1, 1]), only in the checkpointed model
    with torch.no_grad():
        checkpointed(clip)
    assert len(calls) == 4  # nothing to save memory for without gradients


def test_paper_video_swin_sizes():
    counts = {name: sum(p.numel() for p in build_backbone(name).parameters()) for name in ("swin3d_t", "swin3d_s")}
    print(f"video Swin trunks: {counts}")
    # ≈27.9 M (Swin-T) and ≈49.5 M (Swin-S) without a classifier, estimated from the module
    # shapes of OmniFD's official code (torchvision lists 28.16 M for swin3d_t with its head).
    assert counts["swin3d_t"] == pytest.approx(27.9e6, rel=0.01)
    assert counts["swin3d_s"] == pytest.approx(49.5e6, rel=0.01)
    assert build_backbone("swin3d_t").out_channels == [192, 384, 768, 768]


def test_hrnet_w32_builds_multiscale():
    backbone = build_backbone("hrnet_w32")
    maps = backbone(torch.randn(1, 3, 64, 64))
    assert [m.shape[1] for m in maps] == backbone.out_channels


@pytest.mark.parametrize("name,kwargs", [("swin_tiny_patch4_window7_224", SMALL_TIMM_SWIN), ("swin3d_t", SMALL_VIDEO_SWIN)])
def test_pretrained_loads_a_local_state_dict(tmp_path, name, kwargs):
    source = build_backbone(name, **kwargs)
    path = tmp_path / "weights.pth"
    if name.startswith("swin3d"):  # a DDP-saved torchvision-style state dict
        torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    else:  # timm files hold the whole classifier, as released weights do
        import timm

        classifier = timm.create_model(name, **kwargs)
        torch.save(classifier.state_dict(), path)
        source = build_backbone(name, pretrained=str(path), **kwargs)
    loaded = build_backbone(name, pretrained=str(path), **kwargs)
    x = torch.randn(1, 3, 64, 64)
    source.eval(), loaded.eval()
    for a, b in zip(source(x), loaded(x)):
        torch.testing.assert_close(a, b)


def test_timm_weights_change_the_features(tmp_path):
    import timm

    path = tmp_path / "swin.pth"
    torch.save(timm.create_model("swin_tiny_patch4_window7_224", **SMALL_TIMM_SWIN).state_dict(), path)
    torch.manual_seed(1)
    random_init = build_backbone("swin_tiny_patch4_window7_224", **SMALL_TIMM_SWIN).eval()
    torch.manual_seed(2)
    from_file = build_backbone("swin_tiny_patch4_window7_224", pretrained=str(path), **SMALL_TIMM_SWIN).eval()
    torch.manual_seed(3)
    again = build_backbone("swin_tiny_patch4_window7_224", pretrained=str(path), **SMALL_TIMM_SWIN).eval()
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(from_file(x)[-1], again(x)[-1])
    assert not torch.allclose(random_init(x)[-1], from_file(x)[-1])


def test_missing_or_wrong_weights_are_clear(tmp_path):
    with pytest.raises(WeightsError, match="nope.pth: pretrained weights file not found"):
        build_backbone("swin3d_t", pretrained=str(tmp_path / "nope.pth"), **SMALL_VIDEO_SWIN)
    other = tmp_path / "other.pth"
    torch.save(build_backbone("resnet18").state_dict(), other)
    with pytest.raises(WeightsError, match="other.pth"):
        build_backbone("swin3d_t", pretrained=str(other), **SMALL_VIDEO_SWIN)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="garbage.pth: cannot read weights"):
        build_backbone("swin3d_t", pretrained=str(garbage), **SMALL_VIDEO_SWIN)


def test_unknown_backbone_names_the_field():
    with pytest.raises(ConfigError, match="model.backbone: unknown backbone 'nosuchnet'"):
        build_backbone("nosuchnet")


def torchvision_to_omnivore(state: dict) -> dict:
    """The inverse renaming, written independently: Omnivore's own key names."""
    import re

    renamed = {}
    for key, value in state.items():
        block = re.match(r"features\.(\d+)\.(\d+)\.(.+)", key)
        merge = re.match(r"features\.(\d+)\.(norm|reduction)\.(.+)", key)
        if merge and int(merge.group(1)) % 2 == 1:
            key = f"layers.{int(merge.group(1)) // 2}.downsample.{merge.group(2)}.{merge.group(3)}"
        elif block:
            rest = block.group(3).replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.")
            key = f"layers.{int(block.group(1)) // 2}.blocks.{block.group(2)}.{rest}"
        renamed[key] = value
    renamed["depth_patch_embed.proj.weight"] = torch.zeros(16, 1, 2, 4, 4)  # RGB-D stem Omnivore also ships
    return renamed


def test_omnivore_trunk_loads_through_the_key_remap(tmp_path):
    source = build_backbone("swin3d_t", **SMALL_VIDEO_SWIN).eval()
    omnivore = torchvision_to_omnivore(source.state_dict())
    assert any(k.startswith("layers.0.blocks.0.mlp.fc1") for k in omnivore)
    assert any(k.startswith("layers.2.downsample.reduction") for k in omnivore)
    path = tmp_path / "swinT_checkpoint.torch"
    torch.save({"trunk": omnivore, "heads": {"image": torch.zeros(2)}}, path)
    loaded = build_backbone("swin3d_t", pretrained=str(path), **SMALL_VIDEO_SWIN).eval()
    clip = torch.randn(1, 3, 4, 64, 64)
    for a, b in zip(source(clip), loaded(clip)):
        torch.testing.assert_close(a, b)


STATE_ENCODER = "polyvision.models.state.STATEEncoder"
TINY_STATE = dict(widths=[4, 8], num_layers=1, num_heads=2)


def test_class_path_spec_builds_the_class_with_kwargs_over_init_args():
    backbone = build_backbone({"class_path": STATE_ENCODER, "init_args": dict(TINY_STATE)}, num_layers=0)
    assert type(backbone).__name__ == "STATEEncoder"
    assert backbone.out_channels == [8, 8] and backbone.strides == [2, 2]
    assert len(backbone.branches["raw"].temporal.layers) == 0  # the keyword argument won
    maps = backbone(torch.randn(2, 3, 3, 16, 16))
    assert [tuple(m.shape) for m in maps] == [(2, 8, 3, 8, 8)] * 2


def test_class_path_spec_without_a_pretrained_argument_loads_the_file(tmp_path):
    spec = {"class_path": STATE_ENCODER, "init_args": dict(TINY_STATE)}
    source = build_backbone(spec)
    path = tmp_path / "encoder.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    loaded = build_backbone(spec, pretrained=str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    other = tmp_path / "other.pth"
    torch.save(build_backbone(spec, widths=[4, 16]).state_dict(), other)
    with pytest.raises(WeightsError, match="other.pth: shape mismatch"):
        build_backbone(spec, pretrained=str(other))


@pytest.mark.parametrize("spec,message", [
    ({"class_path": "polyvision.models.state.NoSuchEncoder"}, "unknown class 'polyvision.models.state.NoSuchEncoder'"),
    ({"class_path": "os.system"}, "refuses to import 'os.system'"),
    ({"class_path": "polyvision.errors.ConfigError"}, "ConfigError is not a torch nn.Module"),
    ({"class_path": "torch.nn.Identity"}, "torch.nn.Identity has no out_channels and no strides"),
    ({"class_path": STATE_ENCODER, "init_args": {"depth": 3}}, "STATEEncoder: got an unexpected keyword argument 'depth'"),
    ({"class_path": STATE_ENCODER, "init_arg": {}}, "class_path and init_args only"),
    ({"init_args": {}}, "class_path and init_args only"),
])
def test_bad_class_path_specs_are_one_line_config_errors(spec, message):
    with pytest.raises(ConfigError, match=f"^model.backbone: .*{message}") as error:
        build_backbone(spec)
    assert "\n" not in str(error.value)
