"""The video Swin's window attention through scaled_dot_product_attention equals torchvision's
(same weights, same outputs to float rounding), for shifted and plain windows, inputs smaller
than a window and inputs that need padding, and inside the whole backbone."""
from __future__ import annotations

import pytest
import torch
from torchvision.models.video import swin_transformer as tv_swin3d

from polyvision.errors import ConfigError
from polyvision.models.backbones import VideoSwinBackbone
from polyvision.models.layers.window_attention import SDPAWindowAttention3d


@pytest.mark.parametrize("shape, shift", [
    ((2, 8, 14, 14, 48), [4, 3, 3]),  # whole windows, shifted
    ((2, 8, 14, 14, 48), [0, 0, 0]),  # whole windows, not shifted
    ((1, 5, 9, 11, 48), [4, 3, 3]),  # padded to whole windows
    ((1, 2, 4, 4, 48), [4, 3, 3]),  # smaller than a window: it shrinks and the shift goes
])
def test_window_attention_equals_torchvision(shape, shift):
    torch.manual_seed(0)
    reference = tv_swin3d.ShiftedWindowAttention3d(48, [8, 7, 7], shift, 3).eval()
    torch.nn.init.normal_(reference.relative_position_bias_table, std=0.5)  # a bias that matters
    ours = SDPAWindowAttention3d(48, [8, 7, 7], shift, 3).eval()
    ours.load_state_dict(reference.state_dict())  # the same names and shapes
    x = torch.randn(*shape, requires_grad=True)
    expected, got = reference(x), ours(x)
    assert (expected - got).abs().max() < 1e-5
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
    (got_grad,) = torch.autograd.grad(got.square().sum(), x)
    assert (expected_grad - got_grad).abs().max() < 1e-4


def test_backbone_attention_choices_share_weights_and_outputs():
    torch.manual_seed(0)
    small = dict(embed_dim=24, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], stochastic_depth_prob=0.0)
    fused = VideoSwinBackbone("swin3d_t", **small).eval()
    reference = VideoSwinBackbone("swin3d_t", attention="torchvision", **small).eval()
    reference.load_state_dict(fused.state_dict())
    clip = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        for a, b in zip(fused(clip), reference(clip)):
            assert (a - b).abs().max() < 1e-4
    with pytest.raises(ConfigError, match="attention"):
        VideoSwinBackbone("swin3d_t", attention="flash", **small)
