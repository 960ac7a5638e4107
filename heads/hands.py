"""ACR's two-hand head: part segmentation, per-hand centre / camera / MANO-parameter / cross-hand
prior maps, PARE-style part attention, MANO meshes and their weak-perspective projection.

ACR ("ACR: Attention Collaboration-based Regressor for Arbitrary Two-Hand Reconstruction",
Yu et al., CVPR 2023; official code github.com/ZhengdiYu/Arbitrary-Hands-3D-Reconstruction,
``acr/model.py``, ``acr/result_parser.py``) reads one stride-4 feature map (HRNet-W32: 32
channels, 128² for a 512² input). Everything below follows the release's architecture; the
release has no training code, so the losses are ours (named in the README).

Layout of one hand's 109 parameters (``acr/result_parser.py``): camera ``(s, tx, ty)`` (3, the
scale through ``1.1 ** x``), global orientation in 6D (6), 15 joint rotations in 6D (90), MANO
shape (10). Rotations use ACR's 6D convention (two columns, :func:`rot6d_to_rotmat`) and are
offsets from MANO's mean pose (``flat_hand_mean=False``).

Hands are two slots everywhere: 0 = right, 1 = left (the datamodules' convention). The
33-channel segmentation is 0 background, 1–16 right-hand parts, 17–32 left-hand parts.

A file too long for one screen stays one file because every piece feeds the next inside one
forward pass (segmentation -> part attention -> fused parameters -> sampled at centres ->
MANO -> projection) and none is useful alone.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection

from polyvision.errors import ConfigError
from polyvision.heads.base import Head, detach_to_list, has_key
from polyvision.metrics.hands import IntagHandError, InterHandJointError, ProcrustesError
from polyvision.models.layers.mano import (
    MANOModel,
    ROOT_JOINT_21,
    apply_left_shapedirs_fix,
    axis_angle_to_rotmat,
    pose_from_rot6d,
    rot6d_to_rotmat,
)

SIDES = ("right", "left")  # hand slots
NUM_PARTS = 16  # MANO joints, one part each
NUM_SEGMENTATION_CLASSES = 1 + 2 * NUM_PARTS
NUM_MANO_PARAMETERS = 6 + 15 * 6 + 10  # 106: global orientation, joint rotations, shape
NUM_HAND_PARAMETERS = 3 + NUM_MANO_PARAMETERS  # 109: camera first
GENERATED_HAND_MODEL = "generated"  # mano_dir value selecting the generated hand-like model (not MANO)
# ROMP's loss weights (ROMP configs/v1.yml), where the ACR release is silent: MPJPE 200, P_KP2D 400,
# Pose 80, Shape 6. ROMP's CenterMap 160 weighs an MSE heatmap loss; the focal loss here is
# normalised per hand, as CenterNet's, and weighs 1. Part segmentation: 1 (the release does not say).
DEFAULT_TERM_WEIGHTS = {"center": 1.0, "joints_3d": 200.0, "joints_2d": 400.0, "pose": 80.0, "shape": 6.0,
                        "segmentation": 1.0}


def load_hand_models(mano_dir: str | Path | None, fingertips: str = "ih26m") -> nn.ModuleList:
    """``[right, left]`` MANO layers from the user's folder, or the generated hand-like model
    (``mano_dir="generated"``, what the synthetic datasets are rendered with)."""
    if str(mano_dir) == GENERATED_HAND_MODEL:
        from polyvision.models.layers.generated_hand import synthetic_mano_arrays

        right, left = synthetic_mano_arrays(0)
        left = apply_left_shapedirs_fix(left, right)
        return nn.ModuleList([MANOModel(right, "right", fingertips=fingertips), MANOModel(left, "left", fingertips=fingertips)])
    return nn.ModuleList([MANOModel.from_dir(mano_dir, side, fingertips=fingertips) for side in SIDES])


class BasicBlock(nn.Module):
    """The ResNet basic block (He et al., CVPR 2016) ACR's map heads stack twice."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(out)) + x, inplace=True)


def map_head(in_channels: int, out_channels: int, width: int = 64) -> nn.Sequential:
    """One of ACR's map heads (``_make_head_layers``): a stride-2 3×3 conv, two basic blocks, a
    1×1 conv to the map's channels."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width, momentum=0.1),
        nn.ReLU(inplace=True), BasicBlock(width), BasicBlock(width), nn.Conv2d(width, out_channels, 1))


class SegmentationBranch(nn.Sequential):
    """ACR's ``SegmNet``: ×2 bilinear upsampling of the raw stride-4 map, a double conv
    (``in -> 16 -> 64``) and two 3×3 convs to 33 part logits at stride 2."""

    def __init__(self, in_channels: int, width: int = 64, middle: int = 16):
        super().__init__(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),  # as acr/model.py Up
            nn.Conv2d(in_channels, middle, 3, padding=1), nn.BatchNorm2d(middle), nn.ReLU(inplace=True),
            nn.Conv2d(middle, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, NUM_SEGMENTATION_CLASSES, 3, padding=1), nn.BatchNorm2d(NUM_SEGMENTATION_CLASSES),
            nn.ReLU(inplace=True), nn.Conv2d(NUM_SEGMENTATION_CLASSES, NUM_SEGMENTATION_CLASSES, 3, padding=1))


class PartRegressor(nn.Module):
    """Per-part linear maps (PARE's ``LocallyConnected2d`` with a 1×1 kernel): part ``p`` of
    ``(B, C, P)`` features gets its own ``C -> out`` weights."""

    def __init__(self, in_channels: int, out_channels: int, parts: int = NUM_PARTS):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(parts, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(parts, out_channels))
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(in_channels))

    def forward(self, features: Tensor) -> Tensor:
        return torch.einsum("bcp,pco->bpo", features, self.weight) + self.bias


def coordinate_maps(batch: int, height: int, width: int, like: Tensor) -> Tensor:
    """CoordConv's two channels: x and y in [-1, 1]."""
    ys = torch.linspace(-1.0, 1.0, height, device=like.device, dtype=like.dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=like.device, dtype=like.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).expand(batch, 2, height, width)


def cell_centres(height: int, width: int, like: Tensor) -> Tensor:
    """``(1, 2, height, width)``: each grid cell's centre (x, y) in normalised [-1, 1] units."""
    ys = (torch.arange(height, device=like.device, dtype=like.dtype) + 0.5) / height * 2 - 1
    xs = (torch.arange(width, device=like.device, dtype=like.dtype) + 0.5) / width * 2 - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y])[None]


def centre_cells(centres: Tensor, size: int) -> Tensor:
    """Normalised centres ``(..., 2)`` in [-1, 1] (x, y) -> flat indices on a ``size``² grid."""
    cells = ((centres + 1.0) * 0.5 * size).floor().long().clamp(0, size - 1)
    return cells[..., 1] * size + cells[..., 0]


def gaussian_heatmaps(centres: Tensor, valid: Tensor, size: int, sigma: float) -> Tensor:
    """``(B, H, size, size)`` Gaussians (peak 1) at each valid hand's centre cell."""
    cells = centre_cells(centres, size)
    grid = torch.arange(size, device=centres.device, dtype=torch.float32)
    cx, cy = (cells % size).float(), torch.div(cells, size, rounding_mode="floor").float()
    gx = torch.exp(-((grid[None, None] - cx[..., None]) ** 2) / (2 * sigma**2))
    gy = torch.exp(-((grid[None, None] - cy[..., None]) ** 2) / (2 * sigma**2))
    return gy[..., :, None] * gx[..., None, :] * valid[..., None, None].float()


def focal_loss(logits: Tensor, target: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """CenterNet's penalty-reduced focal loss (Zhou et al., "Objects as Points", 2019) on
    heatmap logits, normalised by the number of peaks (at least one)."""
    probability = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    peaks = target.eq(1.0).float()
    positive = -torch.log(probability) * (1 - probability) ** alpha * peaks
    negative = -torch.log(1 - probability) * probability**alpha * (1 - target) ** beta * (1 - peaks)
    return (positive.sum() + negative.sum()) / peaks.sum().clamp(min=1.0)


def solve_translation(joints: Tensor, pixels: Tensor, camera: Tensor) -> Tensor:
    """The camera-space translation ``t`` that best projects root-relative ``joints`` ``(B, J, 3)``
    through intrinsics ``camera`` ``(B, 3, 3)`` onto ``pixels`` ``(B, J, 2)`` (linear least
    squares of the perspective equations; what ACR's PnP step gives a weak-perspective
    prediction, used for metric hand positions such as MRRPE)."""
    fx, fy = camera[:, 0, 0, None], camera[:, 1, 1, None]
    cx, cy = camera[:, 0, 2, None], camera[:, 1, 2, None]
    x, y, z = joints.unbind(-1)
    u, v = pixels.unbind(-1)
    zeros = torch.zeros_like(u)
    # fx (x + tx) + cx (z + tz) = u (z + tz)  ->  fx tx + (cx - u) tz = (u - cx) z - fx x
    rows_u = torch.stack([fx.expand_as(u), zeros, cx - u], -1)
    rows_v = torch.stack([zeros, fy.expand_as(v), cy - v], -1)
    system = torch.cat([rows_u, rows_v], 1).double()
    rhs = torch.cat([(u - cx) * z - fx * x, (v - cy) * z - fy * y], 1).double()
    solution = torch.linalg.lstsq(system, rhs[..., None]).solution[..., 0]
    return solution.to(joints.dtype)


class TwoHandHead(Head):
    """ACR's head on any backbone; see the module docstring.

    Args:
        mano_dir: folder with ``MANO_RIGHT.pkl`` and ``MANO_LEFT.pkl`` (MANO v1.2, from
            https://mano.is.tue.mpg.de after registration; never shipped here), or
            ``"generated"`` for the generated hand-like model of the synthetic datasets.
        fingertips: fingertip vertex convention of the 21 joints (``ih26m``, ``freihand``,
            ``smplx``; see ``polyvision.models.layers.mano.FINGERTIP_IDS``).
        feature_channels: width the backbone's maps are fused to when it gives several (a
            single stride-4 map, HRNet-W32's, is used as it is).
        head_width: channels of each map head's blocks (ACR: 64).
        part_feature_channels: channels of the pose features the part attention pools (ACR: 256;
            the shape features are a quarter of it).
        part_attention: ACR's part-attention refinement (off: the parameter maps alone).
        cross_hand_prior: add each hand's prior read at the other hand's centre.
        detection_threshold: centre-map probability above which a hand is reported (ACR: 0.35).
        prior_distance: test-time cut-off (grid cells of the centre map) beyond which the two
            hands' priors are not added (ACR: 32).
        center_sigma: Gaussian width (centre-map cells) of the centre targets.
        supervise_global_rotation: include the global orientation in the pose loss (ACR's
            release: off, ``supervise_global_rot False``; the joints supervise it).
        camera_scale_init: the weak-perspective scale the camera maps start from (normalised
            image units per metre; a 20 cm hand spanning a third of the input is about 3.3).
            The scale is ``1.1 ** x``: starting at 1 it would take thousands of steps to reach
            a hand's scale, while a body (ROMP, where this camera comes from) starts about right.
        relative_translation: predict the camera's ``(tx, ty)`` relative to the centre of the
            grid cell it is read at (CenterNet's offsets) instead of absolutely through CoordConv
            (ACR): the same outputs, learned in hundreds of steps instead of thousands. Off in the
            paper configs, so the release's weights convert unchanged.
        term_weights: loss term -> weight (default ``DEFAULT_TERM_WEIGHTS``: ROMP's values).
    """

    def __init__(self, mano_dir: str | None = None, fingertips: str = "ih26m", feature_channels: int = 64,
                 head_width: int = 64, part_feature_channels: int = 256, part_attention: bool = True, cross_hand_prior: bool = True, detection_threshold: float = 0.35,
                 prior_distance: float = 32.0, center_sigma: float = 2.0, supervise_global_rotation: bool = False,
                 camera_scale_init: float = 4.0, relative_translation: bool = False,
                 term_weights: dict[str, float] | None = None):
        super().__init__()
        if not mano_dir:
            raise ConfigError("model: ACR needs the MANO hand model: put MANO_RIGHT.pkl and MANO_LEFT.pkl (MANO v1.2, "
                              "https://mano.is.tue.mpg.de, registration required) in a folder and pass it as "
                              "--model.init_args.mano_dir and --data.init_args.mano_dir ('generated' selects the "
                              "synthetic data's hand-like model, which is not MANO)")
        self.mano = load_hand_models(mano_dir, fingertips)
        for model in self.mano:  # the MANO model is the user's licensed file: never saved in checkpoints
            for name in list(model._buffers):
                model._non_persistent_buffers_set.add(name)
        self.feature_channels = int(feature_channels)
        self.head_width = int(head_width)
        self.part_feature_channels = int(part_feature_channels)
        self.part_attention = bool(part_attention)
        self.cross_hand_prior = bool(cross_hand_prior)
        self.detection_threshold = float(detection_threshold)
        self.prior_distance = float(prior_distance)
        self.center_sigma = float(center_sigma)
        self.supervise_global_rotation = bool(supervise_global_rotation)
        self.camera_scale_init = float(camera_scale_init)
        self.relative_translation = bool(relative_translation)
        unknown = sorted(set(term_weights or {}) - set(DEFAULT_TERM_WEIGHTS))
        if unknown:
            raise ConfigError(f"model.heads: unknown loss term '{unknown[0]}' (terms: {', '.join(DEFAULT_TERM_WEIGHTS)})")
        self.term_weights = {**DEFAULT_TERM_WEIGHTS, **(term_weights or {})}

    def bind(self, feature_channels: list[int], feature_strides: list[int], latent_channels: int | None) -> None:
        if 4 not in feature_strides:
            raise ConfigError(f"model.heads: ACR's head reads a stride-4 map; this backbone gives strides {feature_strides}")
        self.base_index = feature_strides.index(4)
        if len(feature_channels) == 1:
            self.fuse = None
            channels = feature_channels[0]
        else:  # several scales (a Swin or ResNet): project each, upsample to stride 4, sum
            self.fuse = nn.ModuleList(nn.Conv2d(c, self.feature_channels, 1) for c in feature_channels)
            self.fuse_strides = [s // 4 for s in feature_strides]
            channels = self.feature_channels
        self.segmentation = SegmentationBranch(channels)
        with_coords = channels + 2
        width = self.head_width
        self.parameter_maps = nn.ModuleList(map_head(with_coords, NUM_MANO_PARAMETERS, width) for _ in SIDES)
        self.center_maps = nn.ModuleList(map_head(with_coords, 1, width) for _ in SIDES)
        self.camera_maps = nn.ModuleList(map_head(with_coords, 3, width) for _ in SIDES)
        for camera in self.camera_maps:
            with torch.no_grad():
                camera[-1].bias[0] = math.log(self.camera_scale_init) / math.log(1.1)
        self.prior_maps = nn.ModuleList(map_head(with_coords, NUM_MANO_PARAMETERS, width) for _ in SIDES)
        if self.part_attention:
            pose_channels, shape_channels = self.part_feature_channels, self.part_feature_channels // 4
            self.pose_features = nn.Sequential(nn.Conv2d(with_coords, pose_channels, 3, padding=1, bias=False),
                                               nn.BatchNorm2d(pose_channels), nn.ReLU(inplace=True))
            self.shape_features = nn.Conv2d(pose_channels, shape_channels, 1)
            self.pose_regressors = nn.ModuleList(PartRegressor(pose_channels, 6) for _ in SIDES)
            self.shape_regressors = nn.ModuleList(nn.Linear(shape_channels * NUM_PARTS, 10) for _ in SIDES)
            self.fusion = nn.ModuleList(nn.Conv2d(2 * NUM_HAND_PARAMETERS, NUM_HAND_PARAMETERS, 1) for _ in SIDES)
        self.start_at_rest()

    @torch.no_grad()
    def start_at_rest(self) -> None:
        """Start every regressed rotation at the identity (the MANO mean pose, rotated by
        nothing) and the part fusion as the mean of its two inputs, as HMR and SPIN start from a
        mean pose. From zero outputs the 6D rotations would be arbitrary rotations whose
        Gram-Schmidt step amplifies any change, and a random fusion would scramble the camera
        the parameter maps start from. Loaded weights replace all of this."""
        identity = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])  # rot6d_to_rotmat(identity) = I
        for head in self.parameter_maps:
            head[-1].bias[:NUM_PARTS * 6] = identity.repeat(NUM_PARTS)
        if self.part_attention:
            for regressor in self.pose_regressors:
                regressor.bias.copy_(identity.expand_as(regressor.bias))
            eye = torch.eye(NUM_HAND_PARAMETERS)
            for fusion in self.fusion:
                fusion.weight.copy_(0.5 * torch.cat([eye, eye], 1)[..., None, None])
                fusion.bias.zero_()

    # ------------------------------------------------------------------ maps
    def base_map(self, maps: list[Tensor]) -> Tensor:
        if self.fuse is None:
            return maps[self.base_index]
        base = maps[self.base_index]
        fused = 0
        for feature_map, project in zip(maps, self.fuse):
            projected = project(feature_map)
            if projected.shape[-2:] != base.shape[-2:]:
                projected = F.interpolate(projected, size=base.shape[-2:], mode="bilinear", align_corners=False)
            fused = fused + projected
        return fused

    def forward(self, features: dict[str, Any], batch: dict[str, Any]) -> dict[str, Tensor]:
        """All maps: ``segmentation`` (B, 33, H/2, W/2) logits, ``centers`` (B, 2, h, w) logits,
        ``parameters`` (B, 2, 109, h, w) (part-refined), ``priors`` (B, 2, 106, h, w)."""
        base = self.base_map(features["maps"])
        segmentation = self.segmentation(base)
        b, _, height, width = base.shape
        x = torch.cat([base, coordinate_maps(b, height, width, base)], 1)
        centers = torch.cat([head(x) for head in self.center_maps], 1)
        parameters = []
        for side in range(2):
            camera = self.camera_maps[side](x)
            translation = camera[:, 1:]
            if self.relative_translation:
                translation = translation + cell_centres(*translation.shape[-2:], translation)
            camera = torch.cat([1.1 ** camera[:, :1], translation], 1)  # a positive scale
            parameters.append(torch.cat([camera, self.parameter_maps[side](x)], 1))
        if self.part_attention:
            parameters = self.refine_with_parts(x, segmentation, parameters)
        priors = torch.stack([head(x) for head in self.prior_maps], 1)
        return {"segmentation": segmentation, "centers": centers, "parameters": torch.stack(parameters, 1),
                "priors": priors}

    def refine_with_parts(self, x: Tensor, segmentation: Tensor, parameters: list[Tensor]) -> list[Tensor]:
        """ACR's ``part_forward``: each part's softmax attention over the stride-4 grid pools pose
        and shape features; per-part regressors give 16 rotations and the shape, broadcast over
        the parameter grid and fused with the parameter maps (218 -> 109 channels)."""
        attention = F.interpolate(segmentation, size=x.shape[-2:], mode="nearest")[:, 1:]  # (B, 32, H, W)
        weights = attention.flatten(2).softmax(-1)  # over positions, per part
        pose_maps = self.pose_features(x)
        pose = torch.einsum("bch,bph->bcp", pose_maps.flatten(2), weights)  # (B, 256, 32) in ACR
        shape = torch.einsum("bch,bph->bcp", self.shape_features(pose_maps).flatten(2), weights)  # (B, 64, 32)
        refined = []
        for side in range(2):
            parts = slice(side * NUM_PARTS, (side + 1) * NUM_PARTS)
            rotations = self.pose_regressors[side](pose[..., parts]).flatten(1)  # (B, 96)
            betas = self.shape_regressors[side](shape[..., parts].flatten(1))  # (B, 10)
            grid = parameters[side]
            part_prediction = torch.cat([grid[:, :3], torch.cat([rotations, betas], 1)[..., None, None].expand(
                -1, -1, *grid.shape[-2:])], 1)
            refined.append(self.fusion[side](torch.cat([part_prediction, grid], 1)))
        return refined

    # ------------------------------------------------------------------ hands at centres
    def sample_hands(self, outputs: dict[str, Tensor], cells: Tensor, present: Tensor, prior_ok: Tensor) -> dict[str, Tensor]:
        """Each hand's 109 parameters read at its centre cell ``cells`` (B, 2), the other hand's
        prior added where both are ``present`` and ``prior_ok``; then MANO and projection."""
        parameters, priors = outputs["parameters"], outputs["priors"]
        b = parameters.shape[0]
        flat = parameters.flatten(3)  # (B, 2, 109, h*w)
        sampled = torch.gather(flat, 3, cells[:, :, None, None].expand(-1, -1, flat.shape[2], 1))[..., 0]
        if self.cross_hand_prior:
            other = cells.flip(1)  # right reads its prior at the left centre and vice versa
            prior_flat = priors.flatten(3)
            prior = torch.gather(prior_flat, 3, other[:, :, None, None].expand(-1, -1, prior_flat.shape[2], 1))[..., 0]
            use = (present.all(1) & prior_ok).float()[:, None, None]
            sampled = torch.cat([sampled[:, :, :3], sampled[:, :, 3:] + prior * use], 2)
        hands = self.decode(sampled.reshape(b * 2, NUM_HAND_PARAMETERS))
        return {key: value.reshape(b, 2, *value.shape[1:]) for key, value in hands.items()}

    def decode(self, parameters: Tensor) -> dict[str, Tensor]:
        """``(2B, 109)`` parameters (right, left alternating) -> rotations, MANO pose and shape,
        joints and vertices (metres, relative to joint 9) and 2D joints (normalised [-1, 1])."""
        camera, rot6d, betas = parameters[:, :3], parameters[:, 3:99], parameters[:, 99:]
        pose = pose_from_rot6d(rot6d)  # (2B, 48) axis-angle offsets from the mean pose
        vertices, joints = [], []
        for side, model in enumerate(self.mano):
            output = model(pose[side::2], betas[side::2])
            root = output.joints[:, ROOT_JOINT_21:ROOT_JOINT_21 + 1]
            vertices.append(output.vertices - root)
            joints.append(output.joints - root)
        vertices = torch.stack(vertices, 1).flatten(0, 1)
        joints = torch.stack(joints, 1).flatten(0, 1)
        projected = camera[:, None, :1] * joints[..., :2] + camera[:, None, 1:]
        return {"camera": camera, "rotations": rot6d_to_rotmat(rot6d.reshape(-1, 16, 6)), "pose": pose, "betas": betas,
                "joints_3d": joints, "vertices": vertices, "joints_2d": projected}

    def detect(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Per image and side the best centre after 5×5 max-pool suppression: cells (B, 2),
        scores (B, 2) and whether it passes the threshold."""
        heat = torch.sigmoid(outputs["centers"])
        peaks = heat * (F.max_pool2d(heat, 5, stride=1, padding=2) == heat)
        scores, cells = peaks.flatten(2).max(-1)
        return cells, scores, scores > self.detection_threshold

    def close_enough(self, cells: Tensor, size: int) -> Tensor:
        xy = torch.stack([cells % size, torch.div(cells, size, rounding_mode="floor")], -1).float()
        return (xy[:, 0] - xy[:, 1]).norm(dim=-1) <= self.prior_distance

    def generate(self, features: dict[str, Any], batch: dict[str, Any]) -> dict[str, Tensor]:
        """Detected hands: the maps, plus ``cells``, ``scores``, ``detected`` (B, 2) and each
        side's decoded hand (read whether or not it passed the threshold)."""
        outputs = self(features, batch)
        size = outputs["centers"].shape[-1]
        cells, scores, detected = self.detect(outputs)
        hands = self.sample_hands(outputs, cells, detected, self.close_enough(cells, size))
        return {**outputs, **hands, "cells": cells, "scores": scores, "detected": detected}

    def at_ground_truth(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        """Hands read at the ground-truth centres (ACR's matching of predictions to ground truth)."""
        size = outputs["centers"].shape[-1]
        cells = centre_cells(batch["center"], size)
        present = batch["hand_valid"].bool()
        return self.sample_hands(outputs, cells, present, torch.ones_like(present[:, 0]))

    # ------------------------------------------------------------------ losses
    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        if not has_key(batch, "hand_valid"):
            return {}
        present = batch["hand_valid"].bool()
        size = outputs["centers"].shape[-1]
        heatmaps = gaussian_heatmaps(batch["center"], present, size, self.center_sigma)
        terms = {"center": focal_loss(outputs["centers"], heatmaps)}
        hands = self.at_ground_truth(outputs, batch)
        zero = outputs["centers"].sum() * 0
        mano_valid = batch["mano_valid"].bool() & present if has_key(batch, "mano_valid") else present & False
        if mano_valid.any():
            target_rotations = axis_angle_to_rotmat(batch["mano_pose"].reshape(*mano_valid.shape, 16, 3))
            first = 0 if self.supervise_global_rotation else 1  # ACR: the joints supervise the global rotation
            difference = hands["rotations"][:, :, first:] - target_rotations[:, :, first:]
            terms["pose"] = difference.pow(2).mean(dim=(2, 3, 4))[mano_valid].mean()
            terms["shape"] = (hands["betas"] - batch["mano_shape"]).pow(2).mean(-1)[mano_valid].mean()
        else:
            terms["pose"] = terms["shape"] = zero
        if has_key(batch, "joints_3d"):
            target = batch["joints_3d"]
            valid = batch["joints_3d_valid"].bool() & present[..., None]
            valid = valid & valid[..., ROOT_JOINT_21:ROOT_JOINT_21 + 1]
            target = target - target[:, :, ROOT_JOINT_21:ROOT_JOINT_21 + 1]
            distance = (hands["joints_3d"] - target).norm(dim=-1)
            terms["joints_3d"] = distance[valid].mean() if valid.any() else zero
        if has_key(batch, "joints_2d"):
            valid = batch["joints_2d_valid"].bool() & present[..., None]
            distance = (hands["joints_2d"] - batch["joints_2d"]).norm(dim=-1)
            terms["joints_2d"] = distance[valid].mean() if valid.any() else zero
        if has_key(batch, "part_segmentation"):
            rendered = batch.get("part_segmentation_valid")
            keep = rendered.bool() if isinstance(rendered, Tensor) else torch.ones(present.shape[0], dtype=torch.bool,
                                                                                  device=present.device)
            if keep.any():
                terms["segmentation"] = F.cross_entropy(outputs["segmentation"][keep], batch["part_segmentation"][keep].long())
        return {name: value * self.term_weights[name] for name, value in terms.items()}

    # ------------------------------------------------------------------ evaluation
    def metrics(self) -> MetricCollection:
        return MetricCollection({"intaghand": IntagHandError(), "internet": InterHandJointError(),
                                 "procrustes": ProcrustesError()})

    def metric_inputs(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, tuple] | None:
        """Meshes read at the ground-truth centres (the benchmark protocols score the annotated
        hands; detection is scored apart) against the ground-truth meshes."""
        if not has_key(batch, "hand_valid") or not has_key(batch, "mano_valid"):
            return None
        hands = self.at_ground_truth(outputs, batch)
        present = batch["hand_valid"].bool() & batch["mano_valid"].bool()
        target = self.ground_truth_meshes(batch)
        pixels = (hands["joints_2d"] + 1) * 0.5 * batch["image"].shape[-1]
        b = present.shape[0]
        camera = batch["camera"][:, None].expand(-1, 2, 3, 3).reshape(b * 2, 3, 3)
        translation = solve_translation(hands["joints_3d"].flatten(0, 1), pixels.flatten(0, 1), camera)
        camera_space = hands["joints_3d"] + translation.reshape(b, 2, 1, 3)
        joint_valid = batch["joints_3d_valid"].bool() & present[..., None]
        return {
            "intaghand": (hands["joints_3d"], target["joints_3d"], hands["vertices"], target["vertices"], present),
            "internet": (camera_space, batch["joints_3d"], joint_valid, batch["interacting"].bool()),
            "procrustes": (hands["joints_3d"], target["joints_3d"], hands["vertices"], target["vertices"], present),
        }

    def ground_truth_meshes(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Ground-truth vertices and mesh joints (relative to joint 9) from the MANO annotations."""
        pose, shape = batch["mano_pose"], batch["mano_shape"]
        vertices, joints = [], []
        for side, model in enumerate(self.mano):
            output = model(pose[:, side], shape[:, side])
            root = output.joints[:, ROOT_JOINT_21:ROOT_JOINT_21 + 1]
            vertices.append(output.vertices - root)
            joints.append(output.joints - root)
        return {"vertices": torch.stack(vertices, 1), "joints_3d": torch.stack(joints, 1)}

    def predict(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Per image, one record per detected hand: side, score, 21 joints (metres, relative to
        joint 9) and their 2D positions in the input square (normalised [-1, 1]), the 778
        vertices, MANO pose (48, axis-angle offsets from the mean pose) and shape, camera."""
        results = []
        for index in range(outputs["detected"].shape[0]):
            hands = []
            for side in range(2):
                if not bool(outputs["detected"][index, side]):
                    continue
                hands.append({
                    "side": SIDES[side], "score": float(outputs["scores"][index, side].detach()),
                    "joints_3d": detach_to_list(outputs["joints_3d"][index, side]),
                    "joints_2d": detach_to_list(outputs["joints_2d"][index, side]),
                    "vertices": detach_to_list(outputs["vertices"][index, side]),
                    "pose": detach_to_list(outputs["pose"][index, side]),
                    "shape": detach_to_list(outputs["betas"][index, side]),
                    "camera": detach_to_list(outputs["camera"][index, side]),
                })
            results.append({"hands": hands})
        return results
