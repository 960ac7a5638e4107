"""3D hand pose and mesh metrics (ACR two-hand reconstruction and its benchmarks).

Three evaluation protocols, one class each; every error is returned in millimetres:

- :class:`InterHandJointError`: the InterNet protocol of InterHand2.6M (Moon et al., ECCV 2020;
  official repo ``data/InterHand2.6M/dataset.py``, ``evaluate``): wrist-relative MPJPE for
  single-hand, interacting and all samples, aggregated per joint first, and MRRPE.
- :class:`IntagHandError`: the protocol of IntagHand (Li et al., CVPR 2022,
  ``apps/eval_interhand.py``), which ACR's headline two-hand comparison uses: joints and
  vertices relative to the middle-finger MCP, prediction rescaled to the ground-truth bone
  length wrist -> middle MCP, MPJPE/MPVPE averaged per hand, then over the two hands.
- :class:`ProcrustesError`: the FreiHAND protocol (Zimmermann et al., ICCV 2019, ``eval.py`` and
  ``utils/eval_util.py``): PA-MPJPE / PA-MPVPE after a similarity alignment, unaligned
  MPJPE / MPVPE, F-scores on vertices and the AUC of the PCK curve over 0-50 mm.

Conventions shared by all classes:

- Joints follow the 21-joint FreiHAND/OpenPose order: 0 wrist, 1-4 thumb, 5-8 index,
  9-12 middle, 13-16 ring, 17-20 pinky (joint 9 is the middle MCP). InterHand2.6M stores its
  joints in another order (tips first, wrist last): reorder before calling ``update``.
- Meshes are MANO meshes with 778 vertices.
- Two-hand tensors have a hand axis of size 2 with slot 0 = right hand and slot 1 = left hand.
- Coordinates are in metres; ``scale_to_mm`` (default 1000) converts every error to millimetres
  (pass 1.0 for inputs already in millimetres).

States are only sums and counts reduced with ``"sum"`` (float64 sums, int64 counts), so
distributed evaluation and ``Metric.merge_state`` give exactly the numbers of one process
that saw every sample. ``compute()`` returns float32 scalars (accumulated in float64); a value
with no valid sample behind it is nan, and nothing raises.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = [
    "IntagHandError",
    "InterHandJointError",
    "ProcrustesError",
    "f_score",
    "mpjpe",
    "procrustes_align",
]

NUM_HAND_JOINTS = 21
NUM_MANO_VERTICES = 778
WRIST = 0
MIDDLE_MCP = 9


def _as_points(name: str, points: Tensor) -> Tensor:
    """``points`` as float64 ``(..., N, 3)``, detached (metrics never need gradients)."""
    if points.dim() < 2 or points.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (..., N, 3), got {tuple(points.shape)}")
    return points.detach().to(torch.float64)


def _check_same_shape(pred: Tensor, target: Tensor, what: str) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"{what}: prediction shape {tuple(pred.shape)} and target shape "
                         f"{tuple(target.shape)} differ")


def procrustes_align(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """``pred`` aligned to ``target`` by the similarity (rotation, isotropic scale, translation)
    that FreiHAND's ``align_w_scale`` (``utils/eval_util.py``) finds; shape ``(N, 3)`` or
    ``(B, N, 3)``, returned in ``pred``'s dtype.

    Per sample, with ``A = (pred - mean(pred)) / (||pred - mean(pred)||_F + eps)`` and ``B`` the
    same for ``target``: ``R = U V^T`` from the SVD ``A^T B = U diag(w) V^T`` minimises
    ``||A R - B||_F`` over orthogonal R, ``s = sum(w)``, and the result is
    ``(A R) * s * (||target - mean(target)||_F + eps) + mean(target)``.

    Like ``scipy.linalg.orthogonal_procrustes``, which FreiHAND calls, R is *not* corrected to
    a proper rotation: when a reflection fits better, R is a reflection (det R = -1). Matching
    scipy keeps the numbers identical to the published FreiHAND evaluation. ``eps`` (FreiHAND's
    1e-8, in the input's units) keeps degenerate inputs (all points equal) finite.
    Computed in float64.
    """
    pred64, target64 = _as_points("pred", pred), _as_points("target", target)
    _check_same_shape(pred64, target64, "procrustes_align")
    unbatched = pred64.dim() == 2
    if unbatched:
        pred64, target64 = pred64[None], target64[None]
    pred_mean = pred64.mean(dim=-2, keepdim=True)
    target_mean = target64.mean(dim=-2, keepdim=True)
    pred_centred, target_centred = pred64 - pred_mean, target64 - target_mean
    pred_norm = torch.linalg.norm(pred_centred, dim=(-2, -1), keepdim=True) + eps
    target_norm = torch.linalg.norm(target_centred, dim=(-2, -1), keepdim=True) + eps
    pred_normed, target_normed = pred_centred / pred_norm, target_centred / target_norm
    u, singular_values, vh = torch.linalg.svd(pred_normed.transpose(-2, -1) @ target_normed)
    rotation = u @ vh
    scale = singular_values.sum(dim=-1)[:, None, None]
    aligned = (pred_normed @ rotation) * scale * target_norm + target_mean
    if unbatched:
        aligned = aligned[0]
    return aligned.to(pred.dtype)


def _point_errors(pred: Tensor, target: Tensor) -> Tensor:
    """Euclidean distance per point, ``(..., N)``, float64."""
    return torch.linalg.norm(pred.to(torch.float64) - target.to(torch.float64), dim=-1)


def mpjpe(pred: Tensor, target: Tensor, valid: Tensor | None = None, scale_to_mm: float = 1000.0) -> Tensor:
    """Mean Euclidean distance (mm) between corresponding points of ``(..., N, 3)`` tensors,
    over the points where the boolean ``valid`` ``(..., N)`` is true (all when None).
    A float64 scalar; nan when no point is valid."""
    pred64, target64 = _as_points("pred", pred), _as_points("target", target)
    _check_same_shape(pred64, target64, "mpjpe")
    errors = _point_errors(pred64, target64) * scale_to_mm
    if valid is None:
        return errors.mean() if errors.numel() else errors.new_tensor(float("nan"))
    valid = valid.to(torch.bool).expand_as(errors)
    if not bool(valid.any()):
        return errors.new_tensor(float("nan"))
    return errors[valid].mean()


def _precision_recall(pred: Tensor, target: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """Precision and recall (``(B,)`` float64) of ``(B, P, 3)`` and ``(B, G, 3)`` point sets
    at ``threshold`` (same units as the points)."""
    distances = torch.cdist(pred, target)  # (B, P, G)
    pred_to_target = distances.min(dim=-1).values
    target_to_pred = distances.min(dim=-2).values
    # Strictly below the threshold, as FreiHAND's calculate_fscore counts.
    precision = (pred_to_target < threshold).to(torch.float64).mean(dim=-1)
    recall = (target_to_pred < threshold).to(torch.float64).mean(dim=-1)
    return precision, recall


def _f_from_precision_recall(precision: Tensor, recall: Tensor) -> Tensor:
    total = precision + recall
    return torch.where(total > 0, 2 * precision * recall / total.clamp_min(torch.finfo(total.dtype).tiny),
                       torch.zeros_like(total))


def f_score(pred_points: Tensor, target_points: Tensor, threshold: float, scale_to_mm: float = 1000.0) -> Tensor:
    """F-score of point sets ``(P, 3)`` / ``(G, 3)``, or batched ``(B, P, 3)`` / ``(B, G, 3)``
    (float64 scalar or ``(B,)``), at ``threshold`` millimetres; the points are in metres
    unless ``scale_to_mm`` says otherwise.

    precision = fraction of predicted points whose nearest ground-truth point is closer than
    ``threshold``; recall = fraction of ground-truth points whose nearest predicted point is
    closer than ``threshold``; F = 2PR / (P + R), and 0 when P + R = 0. The comparison is
    strict (``<``), as in FreiHAND's ``calculate_fscore`` (``utils/eval_util.py``), which names
    the two fractions the other way round; F is symmetric, so the values agree.
    """
    pred64, target64 = _as_points("pred_points", pred_points), _as_points("target_points", target_points)
    if pred64.dim() != target64.dim() or pred64.shape[:-2] != target64.shape[:-2]:
        raise ValueError(f"f_score: batch shapes differ, {tuple(pred64.shape)} and {tuple(target64.shape)}")
    unbatched = pred64.dim() == 2
    if unbatched:
        pred64, target64 = pred64[None], target64[None]
    precision, recall = _precision_recall(pred64 * scale_to_mm, target64 * scale_to_mm, float(threshold))
    score = _f_from_precision_recall(precision, recall)
    return score[0] if unbatched else score


def _two_hands(name: str, points: Tensor, num_points: int) -> Tensor:
    points = _as_points(name, points)
    if points.dim() != 4 or points.shape[1] != 2 or points.shape[2] != num_points:
        raise ValueError(f"{name} must have shape (B, 2, {num_points}, 3) (slot 0 right, 1 left), "
                         f"got {tuple(points.shape)}")
    return points


def _mean_over_present(sums: Tensor, counts: Tensor) -> Tensor:
    """Mean of ``sums / counts`` over the entries with a count (nan when none has one)."""
    present = counts > 0
    if not bool(present.any()):
        return sums.new_tensor(float("nan"))
    return (sums[present] / counts[present].to(sums.dtype)).mean()


class HandError(Metric):
    """Base of the hand metrics: errors in millimetres from inputs in ``1/scale_to_mm`` units
    (metres by default), sum and count states only."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, scale_to_mm: float = 1000.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale_to_mm = float(scale_to_mm)


class InterHandJointError(HandError):
    """InterHand2.6M's InterNet evaluation: wrist-relative MPJPE and MRRPE, in mm.

    Source: Moon et al., "InterHand2.6M", ECCV 2020, official repo
    ``data/InterHand2.6M/dataset.py``, ``evaluate``.

    ``update(preds, target, joint_valid, interacting)``:

    - ``preds``, ``target``: ``(B, 2, 21, 3)`` camera-space joints in metres, hand slot 0 = right,
      1 = left, joints in the FreiHAND order (wrist = joint 0);
    - ``joint_valid``: ``(B, 2, 21)`` bool; a hand whose wrist is invalid has all its joints
      treated as invalid (InterHand2.6M multiplies the joint validity by the root's);
    - ``interacting``: ``(B,)`` bool, True for interacting-hand samples, False for single-hand
      ones (whose absent hand is marked invalid in ``joint_valid``).

    Each hand is made relative to its own wrist; the Euclidean error of every valid joint is
    summed per joint slot (42 = 2 x 21) separately for single-hand and interacting samples.
    ``compute()`` returns:

    - ``mpjpe_single``, ``mpjpe_interacting``, ``mpjpe_all``: per joint slot the mean over its
      samples, then the mean over the slots that have any sample (the official order of
      averaging; ``all`` pools both sample kinds per slot);
    - ``mrrpe``: over interacting samples with both wrists valid, the mean of
      ``||(left_wrist - right_wrist)_pred - (left_wrist - right_wrist)_gt||`` in camera space.
    """

    def __init__(self, scale_to_mm: float = 1000.0, **kwargs: Any) -> None:
        super().__init__(scale_to_mm, **kwargs)
        slots = 2 * NUM_HAND_JOINTS
        # Prefixed names: MetricCollection compute groups must never merge unrelated metrics.
        for kind in ("single", "interacting"):
            self.add_state(f"ih_{kind}_error_sum", default=torch.zeros(slots, dtype=torch.float64),
                           dist_reduce_fx="sum")
            self.add_state(f"ih_{kind}_count", default=torch.zeros(slots, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("ih_mrrpe_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("ih_mrrpe_count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor, joint_valid: Tensor, interacting: Tensor) -> None:
        preds = _two_hands("preds", preds, NUM_HAND_JOINTS)
        target = _two_hands("target", target, NUM_HAND_JOINTS)
        _check_same_shape(preds, target, "InterHandJointError")
        batch = preds.shape[0]
        if tuple(joint_valid.shape) != (batch, 2, NUM_HAND_JOINTS):
            raise ValueError(f"joint_valid must have shape ({batch}, 2, {NUM_HAND_JOINTS}), "
                             f"got {tuple(joint_valid.shape)}")
        if tuple(interacting.shape) != (batch,):
            raise ValueError(f"interacting must have shape ({batch},), got {tuple(interacting.shape)}")
        joint_valid = joint_valid.to(torch.bool)
        interacting = interacting.to(torch.bool)
        wrist_valid = joint_valid[:, :, WRIST]
        valid = joint_valid & wrist_valid[:, :, None]

        errors = _point_errors(preds - preds[:, :, WRIST:WRIST + 1], target - target[:, :, WRIST:WRIST + 1])
        errors = (errors * self.scale_to_mm).flatten(1)
        single = valid.flatten(1) & ~interacting[:, None]
        interacting_joints = valid.flatten(1) & interacting[:, None]
        # where, not multiply: invalid joints may hold nan or garbage.
        self.ih_single_error_sum += torch.where(single, errors, 0.0).sum(0)
        self.ih_single_count += single.sum(0)
        self.ih_interacting_error_sum += torch.where(interacting_joints, errors, 0.0).sum(0)
        self.ih_interacting_count += interacting_joints.sum(0)

        both_wrists = interacting & wrist_valid.all(dim=1)
        relative_pred = preds[:, 1, WRIST] - preds[:, 0, WRIST]  # left minus right, camera space
        relative_target = target[:, 1, WRIST] - target[:, 0, WRIST]
        mrrpe = _point_errors(relative_pred, relative_target) * self.scale_to_mm
        self.ih_mrrpe_sum += torch.where(both_wrists, mrrpe, 0.0).sum()
        self.ih_mrrpe_count += both_wrists.sum()

    def compute(self) -> dict[str, Tensor]:
        return {
            "mpjpe_single": _mean_over_present(self.ih_single_error_sum, self.ih_single_count).float(),
            "mpjpe_interacting": _mean_over_present(self.ih_interacting_error_sum,
                                                    self.ih_interacting_count).float(),
            "mpjpe_all": _mean_over_present(self.ih_single_error_sum + self.ih_interacting_error_sum,
                                            self.ih_single_count + self.ih_interacting_count).float(),
            "mrrpe": (self.ih_mrrpe_sum / self.ih_mrrpe_count.to(torch.float64)).float(),
        }


class IntagHandError(HandError):
    """IntagHand's two-hand evaluation: scale-normalised MPJPE and MPVPE in mm.

    Source: Li et al., "Interacting Attention Graph for Single Image Two-Hand Reconstruction"
    (IntagHand), CVPR 2022, ``apps/eval_interhand.py``; ACR (CVPR 2023) reports its
    InterHand2.6M comparison under this protocol.

    ``update(pred_joints, target_joints, pred_vertices=None, target_vertices=None, hand_valid=None)``:
    joints ``(B, 2, 21, 3)`` (FreiHAND order; usually regressed from the meshes upstream),
    vertices ``(B, 2, 778, 3)``, hand slot 0 = right and 1 = left, metres; ``hand_valid``
    ``(B, 2)`` bool marks the hands that are present (default: both), so a single-hand sample
    only counts its hand.

    Per hand, prediction and ground truth are made relative to their own joint 9 (middle MCP),
    and the prediction, vertices included, is scaled about joint 9 by
    ``||j9 - j0||_gt / ||j9 - j0||_pred`` (ground-truth over predicted wrist-to-middle-MCP
    length). MPJPE (21 joints) and MPVPE (778 vertices) are means per hand, then means over
    the hands of each side. ``compute()`` returns ``mpjpe_right``, ``mpjpe_left``, ``mpjpe`` =
    (left + right) / 2 and, once vertices were given, ``mpvpe_right``, ``mpvpe_left``, ``mpvpe``.
    When only one side has hands, ``mpjpe``/``mpvpe`` are that side's mean (IntagHand's
    interacting-hand test set always has both, where this is the plain average).
    """

    def __init__(self, scale_to_mm: float = 1000.0, **kwargs: Any) -> None:
        super().__init__(scale_to_mm, **kwargs)
        # Index 0 = right, 1 = left: sums of per-hand means and hand counts.
        self.add_state("ig_joint_sum", default=torch.zeros(2, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("ig_joint_hands", default=torch.zeros(2, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("ig_vertex_sum", default=torch.zeros(2, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("ig_vertex_hands", default=torch.zeros(2, dtype=torch.long), dist_reduce_fx="sum")
        # Updates that brought vertices: the mpvpe keys exist (nan if no hand counted) once any did.
        self.add_state("ig_vertex_updates", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred_joints: Tensor, target_joints: Tensor, pred_vertices: Tensor | None = None,
               target_vertices: Tensor | None = None, hand_valid: Tensor | None = None) -> None:
        pred_joints = _two_hands("pred_joints", pred_joints, NUM_HAND_JOINTS)
        target_joints = _two_hands("target_joints", target_joints, NUM_HAND_JOINTS)
        _check_same_shape(pred_joints, target_joints, "IntagHandError joints")
        batch = pred_joints.shape[0]
        if (pred_vertices is None) != (target_vertices is None):
            raise ValueError("give both pred_vertices and target_vertices, or neither")
        if hand_valid is None:
            hand_valid = torch.ones(batch, 2, dtype=torch.bool, device=pred_joints.device)
        if tuple(hand_valid.shape) != (batch, 2):
            raise ValueError(f"hand_valid must have shape ({batch}, 2), got {tuple(hand_valid.shape)}")
        hand_valid = hand_valid.to(torch.bool)

        pred_root = pred_joints[:, :, MIDDLE_MCP:MIDDLE_MCP + 1]
        target_root = target_joints[:, :, MIDDLE_MCP:MIDDLE_MCP + 1]
        pred_length = _point_errors(pred_joints[:, :, MIDDLE_MCP], pred_joints[:, :, WRIST])
        target_length = _point_errors(target_joints[:, :, MIDDLE_MCP], target_joints[:, :, WRIST])
        # A collapsed predicted hand gets a huge but finite error instead of inf/nan.
        scale = (target_length / pred_length.clamp_min(torch.finfo(torch.float64).tiny))[:, :, None, None]

        def per_hand_mean(pred: Tensor, target: Tensor) -> Tensor:
            errors = _point_errors((pred - pred_root) * scale, target - target_root).mean(dim=-1)
            return torch.where(hand_valid, errors * self.scale_to_mm, 0.0).sum(0)

        self.ig_joint_sum += per_hand_mean(pred_joints, target_joints)
        self.ig_joint_hands += hand_valid.sum(0)
        if pred_vertices is not None:
            pred_vertices = _two_hands("pred_vertices", pred_vertices, NUM_MANO_VERTICES)
            target_vertices = _two_hands("target_vertices", target_vertices, NUM_MANO_VERTICES)
            _check_same_shape(pred_vertices, target_vertices, "IntagHandError vertices")
            if pred_vertices.shape[0] != batch:
                raise ValueError(f"vertices have {pred_vertices.shape[0]} samples but joints have {batch}")
            self.ig_vertex_sum += per_hand_mean(pred_vertices, target_vertices)
            self.ig_vertex_hands += hand_valid.sum(0)
            self.ig_vertex_updates += 1

    def compute(self) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        groups = [("mpjpe", self.ig_joint_sum, self.ig_joint_hands)]
        if bool(self.ig_vertex_updates > 0):
            groups.append(("mpvpe", self.ig_vertex_sum, self.ig_vertex_hands))
        for name, sums, hands in groups:
            per_side = sums / hands.to(torch.float64)  # nan for a side without hands
            out[name] = _mean_over_present(sums, hands)
            out[f"{name}_right"] = per_side[0]
            out[f"{name}_left"] = per_side[1]
        return {key: value.float() for key, value in out.items()}


class ProcrustesError(HandError):
    """FreiHAND's evaluation: Procrustes-aligned and unaligned errors, F-scores and PCK AUC.

    Source: Zimmermann et al., "FreiHAND", ICCV 2019, ``eval.py`` and ``utils/eval_util.py``.

    ``update(pred_joints, target_joints, pred_vertices=None, target_vertices=None, valid=None,
    joint_valid=None)``: joints ``(..., 21, 3)`` and vertices ``(..., 778, 3)`` in metres with the
    same leading shape, e.g. ``(B, 21, 3)`` for one hand per sample or ``(B, 2, 21, 3)`` for two;
    every hand is an independent sample. ``valid`` (the leading shape, bool) drops whole hands;
    ``joint_valid`` (``(..., 21)``, bool) drops single joints from the joint errors only (the
    alignment still uses every joint, as FreiHAND's ``EvalUtil.feed`` does with its visibility).

    Per hand, joints and vertices are aligned separately with :func:`procrustes_align`.
    Errors are accumulated per keypoint (joint or vertex); each error is the mean over samples
    per keypoint, then the mean over keypoints (FreiHAND's ``EvalUtil.get_measures``).
    ``compute()`` returns errors in mm and fractions in [0, 1]:

    - ``pa_mpjpe``, ``mpjpe``: aligned and unaligned (camera-space) joint errors;
    - ``auc_pa_joints``: per joint, the PCK of the aligned errors (fraction ``<=`` t) at
      ``auc_steps`` thresholds ``linspace(0, auc_max_mm, auc_steps)``, its trapezoidal area
      divided by the threshold range (a value in [0, 1]), then the mean over joints;
    - once vertices were given: ``pa_mpvpe``, ``mpvpe``, and per threshold t in
      ``f_thresholds_mm`` the mean over hands of the vertex F-score (:func:`f_score`) after
      alignment, ``f{t:g}`` (``f5``, ``f15`` by default), and without, ``f{t:g}_unaligned``.

    The PCK curve is kept as summed hit counts per joint and threshold, so the AUC is exact
    for the fixed thresholds and still merges by summation.
    """

    higher_is_better = None  # mixed: errors are lower-is-better, F-scores and AUC higher
    full_state_update = False

    def __init__(
        self,
        scale_to_mm: float = 1000.0,
        f_thresholds_mm: Sequence[float] = (5.0, 15.0),
        auc_max_mm: float = 50.0,
        auc_steps: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(scale_to_mm, **kwargs)
        if auc_max_mm <= 0 or auc_steps < 2:
            raise ValueError(f"need auc_max_mm > 0 and auc_steps >= 2, got {auc_max_mm} and {auc_steps}")
        self.f_thresholds_mm = tuple(float(t) for t in f_thresholds_mm)
        self.auc_max_mm = float(auc_max_mm)
        self.auc_steps = int(auc_steps)
        joints, vertices, thresholds = NUM_HAND_JOINTS, NUM_MANO_VERTICES, len(self.f_thresholds_mm)
        f64, i64 = torch.float64, torch.long
        self.add_state("pa_joint_error_sum", default=torch.zeros(joints, dtype=f64), dist_reduce_fx="sum")
        self.add_state("pa_joint_raw_error_sum", default=torch.zeros(joints, dtype=f64), dist_reduce_fx="sum")
        self.add_state("pa_joint_count", default=torch.zeros(joints, dtype=i64), dist_reduce_fx="sum")
        self.add_state("pa_joint_pck_hits", default=torch.zeros(joints, self.auc_steps, dtype=i64),
                       dist_reduce_fx="sum")
        self.add_state("pa_vertex_error_sum", default=torch.zeros(vertices, dtype=f64), dist_reduce_fx="sum")
        self.add_state("pa_vertex_raw_error_sum", default=torch.zeros(vertices, dtype=f64), dist_reduce_fx="sum")
        self.add_state("pa_f_sum", default=torch.zeros(thresholds, dtype=f64), dist_reduce_fx="sum")
        self.add_state("pa_f_raw_sum", default=torch.zeros(thresholds, dtype=f64), dist_reduce_fx="sum")
        self.add_state("pa_vertex_hands", default=torch.tensor(0, dtype=i64), dist_reduce_fx="sum")
        # Updates that brought vertices: the vertex keys exist (nan if no hand counted) once any did.
        self.add_state("pa_vertex_updates", default=torch.tensor(0, dtype=i64), dist_reduce_fx="sum")

    def _pck_thresholds(self, device: torch.device) -> Tensor:
        return torch.linspace(0.0, self.auc_max_mm, self.auc_steps, dtype=torch.float64, device=device)

    def update(self, pred_joints: Tensor, target_joints: Tensor, pred_vertices: Tensor | None = None,
               target_vertices: Tensor | None = None, valid: Tensor | None = None,
               joint_valid: Tensor | None = None) -> None:
        pred_joints, target_joints = _as_points("pred_joints", pred_joints), _as_points("target_joints", target_joints)
        _check_same_shape(pred_joints, target_joints, "ProcrustesError joints")
        if pred_joints.dim() < 3 or pred_joints.shape[-2] != NUM_HAND_JOINTS:
            raise ValueError(f"joints must have shape (..., {NUM_HAND_JOINTS}, 3), got {tuple(pred_joints.shape)}")
        leading = pred_joints.shape[:-2]
        if (pred_vertices is None) != (target_vertices is None):
            raise ValueError("give both pred_vertices and target_vertices, or neither")
        if valid is None:
            valid = torch.ones(leading, dtype=torch.bool, device=pred_joints.device)
        if valid.shape != leading:
            raise ValueError(f"valid must have shape {tuple(leading)}, got {tuple(valid.shape)}")
        hand_valid = valid.to(torch.bool).reshape(-1)
        if joint_valid is None:
            joint_valid = torch.ones(*leading, NUM_HAND_JOINTS, dtype=torch.bool, device=pred_joints.device)
        if joint_valid.shape != (*leading, NUM_HAND_JOINTS):
            raise ValueError(f"joint_valid must have shape {(*leading, NUM_HAND_JOINTS)}, "
                             f"got {tuple(joint_valid.shape)}")
        counted = joint_valid.to(torch.bool).reshape(-1, NUM_HAND_JOINTS) & hand_valid[:, None]

        pred_joints = pred_joints.reshape(-1, NUM_HAND_JOINTS, 3)[hand_valid]
        target_joints = target_joints.reshape(-1, NUM_HAND_JOINTS, 3)[hand_valid]
        counted = counted[hand_valid]
        if pred_joints.shape[0]:
            aligned_joints = procrustes_align(pred_joints, target_joints)
            pa_errors = _point_errors(aligned_joints, target_joints) * self.scale_to_mm
            raw_errors = _point_errors(pred_joints, target_joints) * self.scale_to_mm
            self.pa_joint_error_sum += torch.where(counted, pa_errors, 0.0).sum(0)
            self.pa_joint_raw_error_sum += torch.where(counted, raw_errors, 0.0).sum(0)
            self.pa_joint_count += counted.sum(0)
            hits = pa_errors[:, :, None] <= self._pck_thresholds(pa_errors.device)
            self.pa_joint_pck_hits += (hits & counted[:, :, None]).sum(0)

        if pred_vertices is None:
            return
        pred_vertices = _as_points("pred_vertices", pred_vertices)
        target_vertices = _as_points("target_vertices", target_vertices)
        _check_same_shape(pred_vertices, target_vertices, "ProcrustesError vertices")
        if pred_vertices.shape != (*leading, NUM_MANO_VERTICES, 3):
            raise ValueError(f"vertices must have shape {(*leading, NUM_MANO_VERTICES, 3)}, "
                             f"got {tuple(pred_vertices.shape)}")
        self.pa_vertex_updates += 1
        pred_vertices = pred_vertices.reshape(-1, NUM_MANO_VERTICES, 3)[hand_valid]
        target_vertices = target_vertices.reshape(-1, NUM_MANO_VERTICES, 3)[hand_valid]
        if not pred_vertices.shape[0]:
            return
        aligned_vertices = procrustes_align(pred_vertices, target_vertices)
        self.pa_vertex_error_sum += (_point_errors(aligned_vertices, target_vertices) * self.scale_to_mm).sum(0)
        self.pa_vertex_raw_error_sum += (_point_errors(pred_vertices, target_vertices) * self.scale_to_mm).sum(0)
        self.pa_vertex_hands += pred_vertices.shape[0]
        if self.f_thresholds_mm:
            self.pa_f_sum += torch.stack([f_score(aligned_vertices, target_vertices, t, self.scale_to_mm).sum()
                                          for t in self.f_thresholds_mm])
            self.pa_f_raw_sum += torch.stack([f_score(pred_vertices, target_vertices, t, self.scale_to_mm).sum()
                                              for t in self.f_thresholds_mm])

    def compute(self) -> dict[str, Tensor]:
        out = {
            "pa_mpjpe": _mean_over_present(self.pa_joint_error_sum, self.pa_joint_count),
            "mpjpe": _mean_over_present(self.pa_joint_raw_error_sum, self.pa_joint_count),
        }
        present = self.pa_joint_count > 0
        if bool(present.any()):
            thresholds = self._pck_thresholds(self.pa_joint_pck_hits.device)
            pck = self.pa_joint_pck_hits[present].to(torch.float64) / self.pa_joint_count[present, None]
            area = torch.trapezoid(pck, thresholds, dim=-1) / (thresholds[-1] - thresholds[0])
            out["auc_pa_joints"] = area.mean()
        else:
            out["auc_pa_joints"] = self.pa_joint_error_sum.new_tensor(float("nan"))
        if bool(self.pa_vertex_updates > 0):
            hands = self.pa_vertex_hands.to(torch.float64)  # 0 gives nan
            out["pa_mpvpe"] = (self.pa_vertex_error_sum / hands).mean()
            out["mpvpe"] = (self.pa_vertex_raw_error_sum / hands).mean()
            for i, t in enumerate(self.f_thresholds_mm):
                out[f"f{t:g}"] = self.pa_f_sum[i] / hands
                out[f"f{t:g}_unaligned"] = self.pa_f_raw_sum[i] / hands
        return {key: value.float() for key, value in out.items()}
