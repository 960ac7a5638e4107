"""torch.compile sees the video Swin backbone (with its fused window attention) and OmniFD's
interaction neck as one graph each: ``torch._dynamo.explain`` reports no graph break, so
``polyvision benchmark --compile`` compiles them whole."""
from __future__ import annotations

import pytest
import torch

import polyvision
from polyvision.models.backbones import VideoSwinBackbone

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_video_swin_backbone_compiles_without_graph_breaks():
    backbone = VideoSwinBackbone("swin3d_t", embed_dim=24, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4]).eval()
    explanation = torch._dynamo.explain(backbone)(torch.randn(1, 3, 8, 64, 64))
    assert explanation.graph_break_count == 0, [str(reason.reason) for reason in explanation.break_reasons]
    assert explanation.graph_count == 1


def test_omnifd_neck_compiles_without_graph_breaks():
    model = polyvision.create_model("omnifd_synthetic").eval()
    clip = torch.randint(0, 255, (2, 3, 16, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        maps = model.backbone(model.normalize(clip))
    batch = {"video": clip, "frame_mask": torch.ones(2, 16, dtype=torch.bool), "source": "video"}
    explanation = torch._dynamo.explain(model.neck)(maps, batch)
    assert explanation.graph_break_count == 0, [str(reason.reason) for reason in explanation.break_reasons]
