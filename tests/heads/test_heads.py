"""The Head contract on the classification and spatial heads, with and without latents."""
from __future__ import annotations

import json

import pytest
import torch

from polyvision.heads.classification import ClassificationHead
from polyvision.heads.spatial import SpatialHead

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
    assert [p["label"] in ("real", "fake") for p in predictions] == [True] * 3
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
    preds, target = head.metric_inputs(outputs, batch())
    assert preds.shape == target.shape == (2, 64, 64)  # the sample without a known mask is left out
    with_files = dict(batch(), has_mask_file=torch.tensor([True, False, False]))
    assert head.metric_inputs(outputs, with_files)[0].shape == (1, 64, 64)  # only masks from files count
    metrics = head.metrics()
    metrics.update(preds, target)
    assert set(metrics.compute()) == {"pbca", "iinc", "soft_iou"}


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
