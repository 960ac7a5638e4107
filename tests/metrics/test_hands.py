"""Hand pose and mesh metrics: hand-computed cases, numpy/scipy cross-checks, merging, empty input."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from polyvision.metrics import IntagHandError, InterHandJointError, ProcrustesError
from polyvision.metrics.hands import f_score, mpjpe, procrustes_align
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.distance import cdist
from torchmetrics.utilities import dim_zero_sum

JOINTS, VERTICES = 21, 778


def _rotation(axis: tuple[float, float, float], degrees: float) -> torch.Tensor:
    """Rodrigues' rotation matrix (float64)."""
    k = torch.tensor(axis, dtype=torch.float64)
    k = k / k.norm()
    cross = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], dtype=torch.float64)
    angle = math.radians(degrees)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def _grid(count: int, spacing: float) -> torch.Tensor:
    """``count`` points of a 10 x 10 x k grid ``spacing`` metres apart (float64)."""
    axis = torch.arange(10, dtype=torch.float64)
    points = torch.cartesian_prod(axis, axis, axis)[:count]
    return points * spacing


def _numpy_align_w_scale(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Independent reference: FreiHAND's align_w_scale semantics on one (N, 3) pair, via scipy."""
    target_mean, pred_mean = target.mean(0), pred.mean(0)
    target_c, pred_c = target - target_mean, pred - pred_mean
    target_norm = np.linalg.norm(target_c) + 1e-8
    pred_norm = np.linalg.norm(pred_c) + 1e-8
    rotation, scale = orthogonal_procrustes(target_c / target_norm, pred_c / pred_norm)
    return (pred_c / pred_norm) @ rotation.T * scale * target_norm + target_mean


def _values(metric) -> dict[str, float]:
    return {key: value.item() for key, value in metric.compute().items()}


def _assert_only_sum_states(metric) -> None:
    # The DDP contract: every state is a tensor reduced by summation.
    assert metric._reductions and all(fx is dim_zero_sum for fx in metric._reductions.values())


# --------------------------------------------------------------------------- functional helpers


def test_procrustes_matches_scipy_reference_on_random_data():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(6, JOINTS, 3)), rng.normal(size=(6, JOINTS, 3))
    aligned = procrustes_align(torch.from_numpy(pred), torch.from_numpy(target)).numpy()
    expected = np.stack([_numpy_align_w_scale(p, t) for p, t in zip(pred, target)])
    np.testing.assert_allclose(aligned, expected, atol=1e-6)
    # Unbatched input gives the same as the batched row.
    single = procrustes_align(torch.from_numpy(pred[2]), torch.from_numpy(target[2])).numpy()
    np.testing.assert_allclose(single, expected[2], atol=1e-6)


def test_procrustes_removes_a_known_similarity_on_a_three_point_toy():
    # Points in mm (scale_to_mm=1). pred = 2 * Rz(90 deg) gt + (0, 0, 3): Rz90 maps (x, y, z) -> (-y, x, z),
    # so pred = (0,0,3), (0,2,3), (-2,0,3). Unaligned errors: 3, |(-1,2,3)| = sqrt 14, |(-2,-1,3)| = sqrt 14.
    gt = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    pred = torch.tensor([[0.0, 0.0, 3.0], [0.0, 2.0, 3.0], [-2.0, 0.0, 3.0]], dtype=torch.float64)
    assert mpjpe(pred, gt, scale_to_mm=1.0).item() == pytest.approx((3 + 2 * math.sqrt(14)) / 3)
    assert mpjpe(procrustes_align(pred, gt), gt, scale_to_mm=1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_procrustes_keeps_reflections_like_scipy():
    # A mirrored hand aligns perfectly because, as in scipy/FreiHAND, det(R) = -1 is not corrected.
    rng = np.random.default_rng(1)
    gt = torch.from_numpy(rng.normal(size=(JOINTS, 3)))
    mirrored = gt * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    # (FreiHAND's eps = 1e-8 m in the norms leaves ~1e-6 mm here.)
    assert mpjpe(procrustes_align(mirrored, gt), gt).item() == pytest.approx(0.0, abs=1e-4)


def test_mpjpe_honours_validity_and_is_nan_without_valid_points():
    # Errors 3 mm (offset (0, 3, 0) mm) and 5 mm ((3, 4, 0) mm); only the second point counts.
    gt = torch.zeros(2, 3)
    pred = torch.tensor([[0.0, 0.003, 0.0], [0.003, 0.004, 0.0]])
    assert mpjpe(pred, gt).item() == pytest.approx(4.0)
    assert mpjpe(pred, gt, torch.tensor([False, True])).item() == pytest.approx(5.0)
    assert math.isnan(mpjpe(pred, gt, torch.tensor([False, False])).item())


def test_f_score_on_a_line_by_hand():
    # x coordinates in mm (scale_to_mm=1): pred 0, 1, 2, 3; gt 0, 1.5, 10.
    # pred -> nearest gt: 0, .5, .5, 1.5   gt -> nearest pred: 0, .5, 7
    pred = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [3.0, 0, 0]], dtype=torch.float64)
    gt = torch.tensor([[0.0, 0, 0], [1.5, 0, 0], [10.0, 0, 0]], dtype=torch.float64)
    # threshold 1: precision 3/4, recall 2/3 -> F = 2 * (1/2) / (17/12) = 12/17
    assert f_score(pred, gt, 1.0, scale_to_mm=1.0).item() == pytest.approx(12 / 17)
    # threshold .5 is strict: distances of exactly .5 miss -> precision 1/4, recall 1/3 -> F = 2/7
    assert f_score(pred, gt, 0.5, scale_to_mm=1.0).item() == pytest.approx(2 / 7)
    # Nothing within the threshold: P + R = 0 -> F = 0 rather than nan.
    assert f_score(pred + 100.0, gt, 1.0, scale_to_mm=1.0).item() == 0.0
    # Batched input gives one score per sample; metres by default.
    batched = f_score(torch.stack([pred, pred]) / 1000, torch.stack([gt, gt + 100.0]) / 1000, 1.0)
    assert batched.tolist() == pytest.approx([12 / 17, 0.0])


# --------------------------------------------------------------------------- InterHandJointError


def _two_hand_sample(seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(scale=0.05, size=(1, 2, JOINTS, 3)))


def test_interhand_constant_offset_is_zero_and_mrrpe_by_hand():
    gt = _two_hand_sample(2)
    pred = gt.clone()
    pred[:, 0] += torch.tensor([0.010, 0.0, 0.0], dtype=torch.float64)  # right hand shifted 10 mm
    pred[:, 1] += torch.tensor([0.0, 0.020, 0.0], dtype=torch.float64)  # left hand shifted 20 mm
    metric = InterHandJointError()
    metric.update(pred, gt, torch.ones(1, 2, JOINTS, dtype=torch.bool), torch.tensor([True]))
    out = _values(metric)
    assert out["mpjpe_interacting"] == pytest.approx(0.0, abs=1e-4)
    assert out["mpjpe_all"] == pytest.approx(0.0, abs=1e-4)
    assert math.isnan(out["mpjpe_single"])
    # (left - right)_pred - (left - right)_gt = (0, 20, 0) - (10, 0, 0) mm -> sqrt(100 + 400)
    assert out["mrrpe"] == pytest.approx(math.sqrt(500.0), rel=1e-5)


def test_interhand_averages_per_joint_first():
    zeros = torch.zeros(1, 2, JOINTS, 3, dtype=torch.float64)
    # Interacting sample: right joint 5 off by (3, 4, 0) mm -> 5 mm at that slot, 0 at the other 41.
    inter_pred = zeros.clone()
    inter_pred[0, 0, 5] = torch.tensor([0.003, 0.004, 0.0])
    # Single right hand: right joint 5 off by 6 mm; the left hand is absent (invalid, garbage values).
    single_pred = zeros.clone()
    single_pred[0, 0, 5] = torch.tensor([0.0, 0.0, 0.006])
    single_pred[0, 1] = float("nan")
    single_valid = torch.ones(1, 2, JOINTS, dtype=torch.bool)
    single_valid[0, 1] = False
    metric = InterHandJointError()
    metric.update(torch.cat([inter_pred, single_pred]), torch.cat([zeros, zeros]),
                  torch.cat([torch.ones(1, 2, JOINTS, dtype=torch.bool), single_valid]), torch.tensor([True, False]))
    out = _values(metric)
    assert out["mpjpe_interacting"] == pytest.approx(5 / 42)
    assert out["mpjpe_single"] == pytest.approx(6 / 21)  # only the 21 right-hand slots have samples
    # Slot (right, 5): (5 + 6) / 2; the 41 other slots average 0. A pooled mean would give 11 / 63.
    assert out["mpjpe_all"] == pytest.approx(5.5 / 42)
    assert out["mrrpe"] == pytest.approx(0.0)  # the single-hand sample does not count


def test_interhand_invalid_wrist_drops_the_hand_and_mrrpe():
    gt = _two_hand_sample(3)
    pred = gt.clone()
    pred[0, 1, 1:] += 0.5  # left fingers far off, but its wrist is invalid
    valid = torch.ones(1, 2, JOINTS, dtype=torch.bool)
    valid[0, 1, 0] = False
    metric = InterHandJointError()
    metric.update(pred, gt, valid, torch.tensor([True]))
    out = _values(metric)
    assert out["mpjpe_interacting"] == pytest.approx(0.0, abs=1e-4)
    assert int(metric.ih_interacting_count.sum()) == JOINTS
    assert math.isnan(out["mrrpe"])


def test_interhand_merge_equals_one_pass_and_empty_is_nan():
    rng = np.random.default_rng(4)
    pred, gt = (torch.from_numpy(rng.normal(scale=0.05, size=(8, 2, JOINTS, 3))) for _ in range(2))
    valid = torch.from_numpy(rng.random((8, 2, JOINTS)) > 0.2)
    interacting = torch.tensor([True, False] * 4)
    whole, first, second = InterHandJointError(), InterHandJointError(), InterHandJointError()
    _assert_only_sum_states(whole)
    whole.update(pred, gt, valid, interacting)
    first.update(pred[:5], gt[:5], valid[:5], interacting[:5])
    second.update(pred[5:], gt[5:], valid[5:], interacting[5:])
    first.merge_state(second)
    assert _values(first) == pytest.approx(_values(whole))

    empty = InterHandJointError()
    empty.update(pred, gt, torch.zeros_like(valid), interacting)
    assert all(math.isnan(v) for v in _values(empty).values())


# --------------------------------------------------------------------------- IntagHandError


def test_intaghand_scale_normalisation_gives_zero_for_a_scaled_prediction():
    rng = np.random.default_rng(5)
    joints = torch.from_numpy(rng.normal(scale=0.05, size=(3, 2, JOINTS, 3)))
    vertices = torch.from_numpy(rng.normal(scale=0.05, size=(3, 2, VERTICES, 3)))
    shift = torch.tensor([0.1, -0.2, 0.7], dtype=torch.float64)
    metric = IntagHandError()
    metric.update(2 * joints + shift, joints, 2 * vertices + shift, vertices)
    assert _values(metric) == pytest.approx(dict.fromkeys(
        ["mpjpe", "mpjpe_right", "mpjpe_left", "mpvpe", "mpvpe_right", "mpvpe_left"], 0.0), abs=1e-4)


def test_intaghand_by_hand_and_scale_applies_to_vertices():
    rng = np.random.default_rng(6)
    joints = torch.from_numpy(rng.normal(scale=0.05, size=(1, 2, JOINTS, 3)))
    vertices = torch.from_numpy(rng.normal(scale=0.05, size=(1, 2, VERTICES, 3)))
    pred_joints = 2 * joints
    pred_joints[0, 0, 4] += torch.tensor([0.006, 0.008, 0.0])  # right thumb tip: 10 mm before the 1/2 rescale
    # Every predicted vertex 2 mm off before rescaling about joint 9 -> 1 mm after.
    pred_vertices = 2 * vertices + torch.tensor([0.002, 0.0, 0.0], dtype=torch.float64)
    metric = IntagHandError()
    metric.update(pred_joints, joints, pred_vertices, vertices)
    out = _values(metric)
    assert out["mpjpe_right"] == pytest.approx(5 / 21, rel=1e-5)
    assert out["mpjpe_left"] == pytest.approx(0.0, abs=1e-4)
    assert out["mpjpe"] == pytest.approx(5 / 42, rel=1e-4)
    assert out["mpvpe_right"] == pytest.approx(1.0, rel=1e-5)
    assert out["mpvpe"] == pytest.approx(1.0, rel=1e-5)


def test_intaghand_single_hand_masking_and_joint_only_keys():
    rng = np.random.default_rng(7)
    joints = torch.from_numpy(rng.normal(scale=0.05, size=(2, 2, JOINTS, 3)))
    pred = joints.clone()
    pred[:, 0, 4] += torch.tensor([0.0, 0.003, 0.004])  # right thumb tip 5 mm off, scale unchanged
    pred[0, 1] = float("nan")  # sample 0 has no left hand
    metric = IntagHandError()
    metric.update(pred, joints, hand_valid=torch.tensor([[True, False], [True, True]]))
    out = _values(metric)
    assert set(out) == {"mpjpe", "mpjpe_right", "mpjpe_left"}
    assert out["mpjpe_right"] == pytest.approx(5 / 21, rel=1e-5)
    assert out["mpjpe_left"] == pytest.approx(0.0, abs=1e-4)
    assert int(metric.ig_joint_hands[1]) == 1

    right_only = IntagHandError()
    right_only.update(pred, joints, hand_valid=torch.tensor([[True, False], [True, False]]))
    out = _values(right_only)
    assert math.isnan(out["mpjpe_left"])
    assert out["mpjpe"] == pytest.approx(5 / 21, rel=1e-5)  # the side present, not nan


def test_intaghand_merge_equals_one_pass_and_empty_is_nan():
    rng = np.random.default_rng(8)
    pj, gj = (torch.from_numpy(rng.normal(scale=0.05, size=(6, 2, JOINTS, 3))) for _ in range(2))
    pv, gv = (torch.from_numpy(rng.normal(scale=0.05, size=(6, 2, VERTICES, 3))) for _ in range(2))
    hand_valid = torch.from_numpy(rng.random((6, 2)) > 0.3)
    whole, first, second = IntagHandError(), IntagHandError(), IntagHandError()
    _assert_only_sum_states(whole)
    whole.update(pj, gj, pv, gv, hand_valid)
    first.update(pj[:2], gj[:2], pv[:2], gv[:2], hand_valid[:2])
    second.update(pj[2:], gj[2:], pv[2:], gv[2:], hand_valid[2:])
    first.merge_state(second)
    assert _values(first) == pytest.approx(_values(whole))

    empty = IntagHandError()
    empty.update(pj, gj, pv, gv, torch.zeros_like(hand_valid))
    out = _values(empty)
    assert set(out) == {"mpjpe", "mpjpe_right", "mpjpe_left", "mpvpe", "mpvpe_right", "mpvpe_left"}
    assert all(math.isnan(v) for v in out.values())


# --------------------------------------------------------------------------- ProcrustesError


def test_procrustes_error_similarity_and_translation_by_hand():
    # Grid points 100 mm apart: a 20 mm shift moves no point within 15 mm of another one.
    joints, vertices = _grid(JOINTS, 0.1)[None], _grid(VERTICES, 0.1)[None]
    shift = torch.tensor([0.012, 0.016, 0.0], dtype=torch.float64)  # 20 mm
    metric = ProcrustesError()
    metric.update(joints + shift, joints, vertices + shift, vertices)
    out = _values(metric)
    assert out["mpjpe"] == pytest.approx(20.0) and out["mpvpe"] == pytest.approx(20.0)
    assert out["pa_mpjpe"] == pytest.approx(0.0, abs=1e-4) and out["pa_mpvpe"] == pytest.approx(0.0, abs=1e-4)
    assert (out["f5"], out["f15"], out["f5_unaligned"], out["f15_unaligned"]) == pytest.approx((1.0, 1.0, 0.0, 0.0))
    # Errors ~0: PCK is 1 from the second threshold on (the first, 0 mm, is hit only by exact zeros),
    # so the normalised area is 1 - (1/2)/99 or 1.
    assert 1 - 0.5 / 99 - 1e-6 <= out["auc_pa_joints"] <= 1.0

    rotation = _rotation((1.0, 2.0, 3.0), 40.0)
    rotated = ProcrustesError()
    rotated.update(1.5 * joints @ rotation.T + shift, joints, 1.5 * vertices @ rotation.T + shift, vertices)
    out = _values(rotated)
    assert out["pa_mpjpe"] == pytest.approx(0.0, abs=1e-4) and out["pa_mpvpe"] == pytest.approx(0.0, abs=1e-4)
    assert out["f5"] == pytest.approx(1.0) and out["mpjpe"] > 100.0


def test_procrustes_error_averages_per_keypoint():
    # Unaligned errors: hand 1 is 3 mm off at every joint, hand 2 is 6 mm off with only joint 0 counted.
    # Per joint: joint 0 (3 + 6) / 2 = 4.5, the other 20 joints 3 -> (4.5 + 60) / 21. A pooled mean
    # over the 22 counted errors would give 69 / 22.
    joints = _grid(JOINTS, 0.1).expand(2, JOINTS, 3)
    pred = joints + torch.tensor([[[0.003, 0.0, 0.0]], [[0.0, 0.006, 0.0]]], dtype=torch.float64)
    joint_valid = torch.ones(2, JOINTS, dtype=torch.bool)
    joint_valid[1, 1:] = False
    metric = ProcrustesError()
    metric.update(pred, joints, joint_valid=joint_valid)
    out = _values(metric)
    assert set(out) == {"pa_mpjpe", "mpjpe", "auc_pa_joints"}  # never given vertices
    assert out["mpjpe"] == pytest.approx(64.5 / 21)


def _freihand_reference(pred_j, gt_j, pred_v, gt_v, joint_valid) -> dict[str, float]:
    """Independent numpy version of FreiHAND's eval.py / EvalUtil on (B, N, 3) metres."""
    per_joint_pa: list[list[float]] = [[] for _ in range(JOINTS)]
    per_joint_raw: list[list[float]] = [[] for _ in range(JOINTS)]
    pa_v, raw_v, f_scores = [], [], {5: [], 15: [], "5u": [], "15u": []}
    for b in range(len(pred_j)):
        aligned = _numpy_align_w_scale(pred_j[b], gt_j[b])
        pa = np.linalg.norm(aligned - gt_j[b], axis=1) * 1000
        raw = np.linalg.norm(pred_j[b] - gt_j[b], axis=1) * 1000
        for k in range(JOINTS):
            if joint_valid[b, k]:
                per_joint_pa[k].append(pa[k])
                per_joint_raw[k].append(raw[k])
        aligned_v = _numpy_align_w_scale(pred_v[b], gt_v[b])
        pa_v.append(np.linalg.norm(aligned_v - gt_v[b], axis=1) * 1000)
        raw_v.append(np.linalg.norm(pred_v[b] - gt_v[b], axis=1) * 1000)
        for key, points in (("", aligned_v), ("u", pred_v[b])):
            distances = cdist(points, gt_v[b]) * 1000
            for t in (5, 15):
                precision = np.mean(distances.min(1) < t)
                recall = np.mean(distances.min(0) < t)
                f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
                f_scores[t if not key else f"{t}u"].append(f)
    thresholds = np.linspace(0, 50, 100)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz
    aucs = [trapezoid([np.mean(np.array(e) <= t) for t in thresholds], thresholds) / 50.0
            for e in per_joint_pa if e]
    return {
        "pa_mpjpe": np.mean([np.mean(e) for e in per_joint_pa if e]),
        "mpjpe": np.mean([np.mean(e) for e in per_joint_raw if e]),
        "auc_pa_joints": np.mean(aucs),
        "pa_mpvpe": np.mean(np.mean(pa_v, axis=0)),
        "mpvpe": np.mean(np.mean(raw_v, axis=0)),
        "f5": np.mean(f_scores[5]), "f15": np.mean(f_scores[15]),
        "f5_unaligned": np.mean(f_scores["5u"]), "f15_unaligned": np.mean(f_scores["15u"]),
    }


def test_procrustes_error_matches_numpy_freihand_reference_and_merges():
    rng = np.random.default_rng(9)
    gt_j = rng.normal(scale=0.04, size=(6, JOINTS, 3))
    gt_v = rng.normal(scale=0.04, size=(6, VERTICES, 3))
    # Predictions near a similarity transform of the truth, so errors spread over the 0-50 mm range.
    rotation = _rotation((0.0, 1.0, 1.0), 25.0).numpy()
    pred_j = 0.8 * gt_j @ rotation.T + 0.05 + rng.normal(scale=0.012, size=gt_j.shape)
    pred_v = 0.8 * gt_v @ rotation.T + 0.05 + rng.normal(scale=0.006, size=gt_v.shape)
    joint_valid = rng.random((6, JOINTS)) > 0.25
    expected = _freihand_reference(pred_j, gt_j, pred_v, gt_v, joint_valid)
    assert 0.1 < expected["auc_pa_joints"] < 0.9 and 0.0 < expected["f5"] < 1.0  # a non-trivial case

    as_tensors = [torch.from_numpy(a) for a in (pred_j, gt_j, pred_v, gt_v, joint_valid)]
    whole, first, second = ProcrustesError(), ProcrustesError(), ProcrustesError()
    _assert_only_sum_states(whole)
    pj, gj, pv, gv, jv = as_tensors
    whole.update(pj, gj, pv, gv, joint_valid=jv)
    first.update(pj[:4], gj[:4], pv[:4], gv[:4], joint_valid=jv[:4])
    second.update(pj[4:], gj[4:], pv[4:], gv[4:], joint_valid=jv[4:])
    first.merge_state(second)
    got = _values(whole)
    assert set(got) == set(expected)
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert _values(first) == pytest.approx(got)


def test_procrustes_error_two_hand_input_and_hand_mask():
    joints = _grid(JOINTS, 0.1).expand(3, 2, JOINTS, 3)
    pred = joints + 0.005  # every hand |(5, 5, 5)| mm off
    pred = pred.clone()
    pred[1, 1] = float("nan")  # an absent hand
    valid = torch.tensor([[True, True], [True, False], [False, False]])
    metric = ProcrustesError()
    metric.update(pred, joints, valid=valid)
    assert _values(metric)["mpjpe"] == pytest.approx(5 * math.sqrt(3), rel=1e-6)
    assert int(metric.pa_joint_count[0]) == 3


def test_procrustes_error_empty_is_nan():
    joints = _grid(JOINTS, 0.1)[None]
    vertices = _grid(VERTICES, 0.1)[None]
    metric = ProcrustesError()
    metric.update(joints, joints, vertices, vertices, valid=torch.tensor([False]))
    out = _values(metric)
    assert set(out) == {"pa_mpjpe", "mpjpe", "auc_pa_joints", "pa_mpvpe", "mpvpe", "f5", "f15", "f5_unaligned",
                        "f15_unaligned"}  # vertices were given, though no hand counted
    assert all(math.isnan(v) for v in out.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about compute() before update()
        assert all(math.isnan(v) for v in _values(ProcrustesError()).values())
        assert all(math.isnan(v) for v in _values(InterHandJointError()).values())


def test_shape_errors_are_reported():
    with pytest.raises(ValueError, match="2, 21, 3"):
        InterHandJointError().update(torch.zeros(1, 21, 3), torch.zeros(1, 21, 3),
                                     torch.ones(1, 21, dtype=torch.bool), torch.tensor([True]))
    with pytest.raises(ValueError, match="both"):
        IntagHandError().update(torch.zeros(1, 2, 21, 3), torch.zeros(1, 2, 21, 3), torch.zeros(1, 2, 778, 3))
    with pytest.raises(ValueError, match="778"):
        ProcrustesError().update(torch.zeros(1, 21, 3), torch.zeros(1, 21, 3), torch.zeros(1, 700, 3),
                                 torch.zeros(1, 700, 3))
