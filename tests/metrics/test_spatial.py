"""Pixel-level localization metrics: hand-computed cases, numpy cross-checks, collections."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics import MetricCollection

from polyvision.metrics import ForgeryNetPixelMetrics, SpatialLocalizationMetrics

LOC_KEYS = {"pbca", "iinc", "soft_iou"}
FN_KEYS = {"iou@0.1", "iou@0.2", "iou_diff@0.01", "iou_diff@0.05", "iou_diff@0.1", "l1"}


def _loc(preds, target) -> dict[str, float]:
    metric = SpatialLocalizationMetrics()
    metric.update(torch.tensor(preds, dtype=torch.float32)[None], torch.tensor(target, dtype=torch.float32)[None])
    return {k: v.item() for k, v in metric.compute().items()}


def test_general_case_by_hand():
    # p = .9 .6     P = 1 1     target = 1 0    g = 1 0   (soft mask, g = target > 0)
    #     .2 .1         0 0              .4 0       1 0
    # pbca: agree at (0,0) and (1,1) -> 2/4 = 0.5
    # I = 1, U = 3, u = 3/4, |P| = |g| = 2 -> IINC = (2 - 1/2 - 1/2) / (3 - 3/4) = 1/2.25 = 4/9
    # soft IoU: sum(p*g) = .9 + .2 = 1.1; sum(p) = 1.8; sum(g) = 2 -> 1.1 / (1.8 + 2 - 1.1) = 1.1/2.7 = 11/27
    out = _loc([[0.9, 0.6], [0.2, 0.1]], [[1.0, 0.0], [0.4, 0.0]])
    assert out["pbca"] == pytest.approx(0.5)
    assert out["iinc"] == pytest.approx(4 / 9)
    assert out["soft_iou"] == pytest.approx(11 / 27)


def test_perfect_prediction_by_hand():
    # P = g = one pixel: IINC = (2 - 1 - 1) / (3 - 1/4) = 0; soft IoU = .9 / (.9 + 1 - .9) = 0.9
    out = _loc([[0.9, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]])
    assert out == pytest.approx({"pbca": 1.0, "iinc": 0.0, "soft_iou": 0.9})


def test_both_empty_by_hand():
    # Real image, no pixel above 0.5: IINC = 0 by definition; soft IoU numerator 0 with
    # denominator sum(p) = 1.0 -> 0 (a real image never scores soft IoU 1).
    out = _loc([[0.1, 0.2], [0.3, 0.4]], [[0.0, 0.0], [0.0, 0.0]])
    assert out == pytest.approx({"pbca": 1.0, "iinc": 0.0, "soft_iou": 0.0})


def test_zero_denominator_soft_iou_is_zero():
    # p == 0 everywhere and empty mask: 0/0, defined as 0 (see per_image_localization).
    out = _loc([[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]])
    assert out == pytest.approx({"pbca": 1.0, "iinc": 0.0, "soft_iou": 0.0})


def test_only_prediction_empty_by_hand():
    # Mask only: P empty, g = 3 pixels, U = 3, u = 3/4 -> IINC = 1 / (3 - 3/4) = 4/9
    # pbca = 1/4 (only the unmasked pixel agrees); soft IoU = 0 / (0 + 3 - 0) = 0
    out = _loc([[0.0, 0.0], [0.0, 0.0]], [[1.0, 0.5], [0.2, 0.0]])
    assert out == pytest.approx({"pbca": 0.25, "iinc": 4 / 9, "soft_iou": 0.0})


def test_only_target_empty_by_hand():
    # Prediction only: P = 1 pixel, g empty, U = 1, u = 1/4 -> IINC = 1 / (3 - 1/4) = 4/11
    # pbca = 3/4; soft IoU = 0 / (1.1 + 0 - 0) = 0
    out = _loc([[0.8, 0.1], [0.1, 0.1]], [[0.0, 0.0], [0.0, 0.0]])
    assert out == pytest.approx({"pbca": 0.75, "iinc": 4 / 11, "soft_iou": 0.0})


def _two_images():
    # 3x3 images, #pix = 9, binary p so the numbers stay exact.
    # Image 1: g = all 9 pixels, P = all 9 -> pbca 1, IINC 0, soft IoU 9/9 = 1
    # Image 2: g = centre, P = top-left corner -> I = 0, U = 2, u = 2/9:
    #   pbca = 7/9, IINC = (2 - 0 - 0) / (3 - 2/9) = 18/25, soft IoU = 0 / (1 + 1 - 0) = 0
    # Mean over images: pbca 8/9, IINC 9/25, soft IoU 1/2.
    # (Pooled over pixels soft IoU would be 9 / (10 + 10 - 9) = 9/11, which must NOT come out.)
    p1, t1 = torch.ones(3, 3), torch.ones(3, 3)
    p2, t2 = torch.zeros(3, 3), torch.zeros(3, 3)
    p2[0, 0] = 1.0
    t2[1, 1] = 1.0
    return (p1, t1), (p2, t2)


def test_per_image_average_not_pooled():
    (p1, t1), (p2, t2) = _two_images()
    expected = {"pbca": 8 / 9, "iinc": 9 / 25, "soft_iou": 0.5}

    one_batch = SpatialLocalizationMetrics()
    one_batch.update(torch.stack([p1, p2]), torch.stack([t1, t2]))
    assert {k: v.item() for k, v in one_batch.compute().items()} == pytest.approx(expected)

    two_updates = SpatialLocalizationMetrics()
    two_updates.update(p1[None, None], t1[None, None])  # (N, 1, H, W) works as well
    two_updates.update(p2[None, None], t2[None, None])
    assert {k: v.item() for k, v in two_updates.compute().items()} == pytest.approx(expected)


def test_channel_dim_and_dtype():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(4, 8, 8, generator=g)
    t = (torch.rand(4, 8, 8, generator=g) > 0.6).float() * torch.rand(4, 8, 8, generator=g)
    a, b = SpatialLocalizationMetrics(), SpatialLocalizationMetrics()
    a.update(p, t)
    b.update(p[:, None].half(), t[:, None])
    out_a, out_b = a.compute(), b.compute()
    assert set(out_a) == LOC_KEYS
    for k in LOC_KEYS:
        assert out_a[k].dtype == torch.float32
        assert out_a[k].item() == pytest.approx(out_b[k].item(), abs=2e-3)  # half rounding of p only


def _numpy_forgerynet(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    p, y = p.ravel(), y.ravel()
    out = {f"iou@{t:g}": np.mean((p >= t) == (y >= t)) for t in (0.1, 0.2)}
    out.update({f"iou_diff@{t:g}": np.mean(np.abs(p - y) <= t) for t in (0.01, 0.05, 0.1)})
    out["l1"] = np.mean(np.abs(p.astype(np.float64) - y))
    return out


def test_forgerynet_pooled_against_numpy():
    rng = np.random.default_rng(0)
    metric = ForgeryNetPixelMetrics()
    ps, ys = [], []
    for n, size in ((3, 16), (1, 16), (5, 16)):
        y = (rng.random((n, 1, size, size)) * (rng.random((n, 1, size, size)) > 0.5)).astype(np.float32)
        # Predictions near the target so every tolerance bucket is populated.
        p = np.clip(y + rng.normal(0, 0.08, y.shape), 0, 1).astype(np.float32)
        metric.update(torch.from_numpy(p), torch.from_numpy(y))
        ps.append(p)
        ys.append(y)
    expected = _numpy_forgerynet(np.concatenate(ps), np.concatenate(ys))
    out = {k: v.item() for k, v in metric.compute().items()}
    assert set(out) == FN_KEYS
    assert out == pytest.approx(expected, abs=1e-6)
    assert len({round(v, 4) for v in expected.values()}) == len(expected)  # all distinct: no key mix-up passes


def test_forgerynet_by_hand_pools_over_images():
    # Image a: p = .32 .15   y = .3  0    |p-y| = .02 .15
    #              .6  0         1   0            .4  0
    # Image b: p = y = 0 everywhere, so its 4 pixels agree at every threshold.
    # Over 8 pixels: iou@0.1: a agrees at (.32,.3) (.6,1) (0,0) -> 3 + 4 = 7/8
    #                iou@0.2: a agrees everywhere -> 8/8
    #                diff<=.01: a has 1 -> 5/8; diff<=.05: a has 2 -> 6/8; diff<=.1: 6/8
    #                l1 = (.02 + .15 + .4) / 8 = .07125
    p = torch.tensor([[[0.32, 0.15], [0.6, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    y = torch.tensor([[[0.3, 0.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    metric = ForgeryNetPixelMetrics()
    metric.update(p, y)
    out = {k: v.item() for k, v in metric.compute().items()}
    assert out == pytest.approx({"iou@0.1": 7 / 8, "iou@0.2": 1.0, "iou_diff@0.01": 5 / 8,
                                 "iou_diff@0.05": 6 / 8, "iou_diff@0.1": 6 / 8, "l1": 0.07125}, abs=1e-6)


def test_forgerynet_thresholds_are_inclusive():
    # y = 0 everywhere, p sits exactly on each threshold (in float32, as the inputs are):
    #   p = .1 .2 .05 .01 -> p >= .1: T T F F, y >= .1: F F F F -> iou@0.1 = 2/4
    #                        p >= .2: F T F F                   -> iou@0.2 = 3/4
    #   |p - y| = p -> <= .01: 1, <= .05: 2, <= .1: 3 -> 1/4, 2/4, 3/4;  l1 = .36/4 = .09
    p = torch.tensor([[[0.1, 0.2], [0.05, 0.01]]])
    metric = ForgeryNetPixelMetrics()
    metric.update(p, torch.zeros_like(p))
    out = {k: v.item() for k, v in metric.compute().items()}
    assert out == pytest.approx({"iou@0.1": 0.5, "iou@0.2": 0.75, "iou_diff@0.01": 0.25,
                                 "iou_diff@0.05": 0.5, "iou_diff@0.1": 0.75, "l1": 0.09}, abs=1e-6)


@pytest.mark.parametrize("cls", [SpatialLocalizationMetrics, ForgeryNetPixelMetrics])
def test_shape_mismatch_names_both_shapes(cls):
    with pytest.raises(ValueError, match=r"\(2, 4, 4\).*\(2, 1, 4, 4\)"):
        cls().update(torch.rand(2, 4, 4), torch.rand(2, 1, 4, 4))


def test_out_of_range_inputs_rejected():
    with pytest.raises(ValueError, match="sigmoid"):
        SpatialLocalizationMetrics().update(torch.randn(1, 4, 4) * 5, torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="255"):
        ForgeryNetPixelMetrics().update(torch.rand(1, 4, 4), torch.full((1, 4, 4), 255.0))


def test_merged_states_equal_single_pass():
    # merge_state applies each state's dist_reduce_fx, i.e. what DDP sync does across ranks.
    (p1, t1), (p2, t2) = _two_images()
    for cls in (SpatialLocalizationMetrics, ForgeryNetPixelMetrics):
        rank0, rank1, whole = cls(), cls(), cls()
        rank0.update(p1[None], t1[None])
        rank1.update(p2[None], t2[None])
        rank0.merge_state(rank1)
        whole.update(torch.stack([p1, p2]), torch.stack([t1, t2]))
        merged, single = rank0.compute(), whole.compute()
        assert {k: v.item() for k, v in merged.items()} == pytest.approx({k: v.item() for k, v in single.items()})


def test_in_metric_collection_with_prefix_and_clone():
    (p1, t1), (p2, t2) = _two_images()
    preds, target = torch.stack([p1, p2]), torch.stack([t1, t2])
    coll = MetricCollection([SpatialLocalizationMetrics(), ForgeryNetPixelMetrics()], prefix="test/")
    val = coll.clone(prefix="val/")

    step = coll(preds, target)  # forward: batch values, also accumulated
    assert set(step) == {f"test/{k}" for k in LOC_KEYS | FN_KEYS}
    out = coll.compute()
    assert set(out) == {f"test/{k}" for k in LOC_KEYS | FN_KEYS}
    assert out["test/pbca"].item() == pytest.approx(8 / 9)
    assert out["test/iinc"].item() == pytest.approx(9 / 25)
    assert out["test/soft_iou"].item() == pytest.approx(0.5)
    fn = ForgeryNetPixelMetrics()
    fn.update(preds, target)
    for k, v in fn.compute().items():
        assert out[f"test/{k}"].item() == pytest.approx(v.item())

    # The clone is renamed and starts from empty state: only the perfect image goes in.
    val.update(p1[None], t1[None])
    val_out = val.compute()
    assert set(val_out) == {f"val/{k}" for k in LOC_KEYS | FN_KEYS}
    assert val_out["val/soft_iou"].item() == pytest.approx(1.0)
    assert val_out["val/iinc"].item() == pytest.approx(0.0)
    assert coll.compute()["test/soft_iou"].item() == pytest.approx(0.5)
