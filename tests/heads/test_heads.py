"""The Head contract on the classification and spatial heads, with and without latents."""
from __future__ import annotations

import json

import pytest
import torch

from polyvision.heads.classification import ClassificationHead
from polyvision.heads.spatial import SpatialHead
from polyvision.heads.base import update_metrics
from polyvision.errors import ConfigError

CHANNELS, STRIDES = [8, 16, 32, 32], [8, 16, 32, 32]


def features(batch_size: int = 3, latents: bool = True) -> dict:
    maps = [torch.randn(batch_size, c, 64 // s, 64 // s) for c, s in zip(CHANNELS, STRIDES)]
    out = {"maps": maps}
    if latents:
        out["latents"] = torch.randn(batch_size, 12, 5)
    return out


def batch(batch_size: int = 3) -> dict:
    mask = torch.zeros(batch_size, 1, 64, 64)
    mask[0, :, :32, :32] = 1
    return {"label": torch.tensor([1, 0, 1])[:batch_size], "mask": mask,
            "has_mask": torch.tensor([True, True, False])[:batch_size]}


@pytest.mark.parametrize("with_latents", [True, False])
def test_classification_head_contract(with_latents):
    head = ClassificationHead()
    head.bind(CHANNELS, STRIDES, 12 if with_latents else None)
    outputs = head(features(latents=with_latents), batch())
    assert outputs["logits"].shape == (3, 2)
    losses = head.loss(outputs, batch())
    assert set(losses) == {"ce"} and losses["ce"].requires_grad
    predictions = head.predict(outputs, batch())
    json.dumps(predictions)
    assert [p["label"] in ("0", "1") for p in predictions] == [True] * 3  # generic names by default
    assert set(predictions[0]["probabilities"]) == {"0", "1"}
    probabilities = outputs["logits"].softmax(1)[:, 1]
    assert [p["score"] for p in predictions] == pytest.approx(probabilities.tolist(), abs=1e-5)
    metrics = head.metrics()
    metrics.update(*head.metric_inputs(outputs, batch()))
    assert set(metrics.compute()) == {"acc", "balanced_acc", "auc"}
    assert head.loss(outputs, {}) == {} and head.metric_inputs(outputs, {}) is None


def test_classification_head_reads_latents_not_maps():
    head = ClassificationHead()
    head.bind(CHANNELS, STRIDES, 12)
    x = features()
    changed = dict(x, maps=[torch.randn_like(m) for m in x["maps"]])
    torch.testing.assert_close(head(x, {})["logits"], head(changed, {})["logits"])


@pytest.mark.parametrize("with_latents", [True, False])
def test_spatial_head_contract(with_latents):
    head = SpatialHead(channels=16, num_latents=5)
    head.bind(CHANNELS, STRIDES, 12 if with_latents else None)
    outputs = head(features(latents=with_latents), batch())
    assert outputs["mask_logits"].shape == (3, 1, 8, 8)  # 1/8 of the 64-pixel input
    losses = head.loss(outputs, batch())
    assert set(losses) == {"bce"} and losses["bce"].requires_grad
    predictions = head.predict(outputs, batch())
    json.dumps(predictions)
    assert len(predictions[0]["mask"]) == 8 and 0 <= predictions[0]["forged_fraction"] <= 1
    inputs = head.metric_inputs(outputs, batch())
    pairs = inputs["localization"]  # one (preds, target) per image, at the input size without full masks
    assert [(p.shape, t.shape) for p, t in pairs] == [((1, 64, 64), (1, 64, 64))] * 2  # no known mask: left out
    with_files = dict(batch(), has_mask_file=torch.tensor([True, False, False]))
    assert len(head.metric_inputs(outputs, with_files)["localization"]) == 1  # only masks from files
    metrics = head.metrics()
    update_metrics(metrics, inputs)
    assert set(metrics.compute()) == {"pbca", "iinc", "soft_iou"}


def test_spatial_forgerynet_protocol_scores_the_pasted_back_prediction_at_full_resolution():
    """OmniFD's ForgeryNet protocol: the prediction is resized to the face box and pasted into a
    zero canvas of the original image; pixels are pooled over images. Hand-computed on a
    constant prediction."""
    head = SpatialHead(channels=4, num_latents=5, protocols=["ffpp", "forgerynet"])
    head.bind(CHANNELS, STRIDES, 12)
    logits = torch.zeros(2, 1, 8, 8)  # p = 0.5 everywhere in the crop
    full_a = torch.zeros(10, 20, dtype=torch.uint8)
    full_a[2:6, 4:12] = 255  # the forged region fills the face box [4, 2, 12, 6] (x1, y1, x2, y2)
    full_a[8:10, 0:5] = 51  # and 10 pixels outside it hold 0.2
    crop_b = torch.zeros(1, 64, 64)  # sample 2 has no full mask: scored on its 64x64 crop
    batch = {"mask": torch.stack([torch.zeros(1, 64, 64), crop_b]), "has_mask_file": torch.tensor([True, True]),
             "full_mask": [full_a.numpy(), None], "meta": [{"face_box": [4, 2, 12, 6]}, {}]}
    inputs = head.metric_inputs({"mask_logits": logits}, batch)
    assert inputs["pixels"][0].shape == (1, 1, 200 + 64 * 64)
    metrics = head.metrics()
    update_metrics(metrics, inputs)
    values = {k: float(v) for k, v in metrics.compute().items()}
    pixels = 200 + 4096
    # image a: 32 box pixels p=0.5 vs y=1; 10 pixels p=0 vs y=0.2; 158 pixels p=0 vs y=0.
    # image b: 4096 pixels p=0.5 vs y=0.
    assert values["l1"] == pytest.approx((32 * 0.5 + 10 * 0.2 + 4096 * 0.5) / pixels)
    # iou@0.1: agree where (p >= 0.1) == (y >= 0.1): the box (both) and the 158 clean pixels
    assert values["iou@0.1"] == pytest.approx((32 + 158) / pixels)
    # iou_diff@0.1: |p - y| <= 0.1 only on the 158 clean pixels of image a
    assert values["iou_diff@0.1"] == pytest.approx(158 / pixels)
    # FF++ protocol, per image at the original size too: g = (mask > 0) holds the 32 box pixels and
    # the 10 faint ones; soft IoU = sum(p g) / (sum p + sum g - sum(p g)) = 16 / (16 + 42 - 16);
    # image b (empty mask, p = 0.5 everywhere) scores 0.
    assert values["soft_iou"] == pytest.approx((16 / 42 + 0.0) / 2)
    with pytest.raises(ConfigError, match="protocols must name"):
        SpatialHead(protocols=["dice"])


def test_spatial_loss_ignores_samples_without_a_known_mask():
    head = SpatialHead(channels=16, num_latents=5)
    head.bind(CHANNELS, STRIDES, 12)
    outputs = head(features(), batch())
    full = batch()
    only_first_two = {k: v[:2] for k, v in full.items()}
    first_two_outputs = {"mask_logits": outputs["mask_logits"][:2]}
    torch.testing.assert_close(head.loss(outputs, full)["bce"], head.loss(first_two_outputs, only_first_two)["bce"])
    none_known = dict(full, has_mask=torch.zeros(3, dtype=torch.bool))
    assert float(head.loss(outputs, none_known)["bce"].detach()) == 0.0


def test_spatial_head_uses_the_latent_kernel():
    head = SpatialHead(channels=16, num_latents=5)
    head.bind(CHANNELS, STRIDES, 12)
    x = features()
    other = dict(x, latents=torch.randn_like(x["latents"]))
    assert not torch.allclose(head(x, {})["mask_logits"], head(other, {})["mask_logits"])
