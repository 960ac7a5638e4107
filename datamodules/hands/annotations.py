"""Shared pieces of the hand datasets: joint orders, strict JSON reading, camera geometry and
the one per-image sample dict every hand dataset yields (the contract the ACR model reads).

Joint orders
------------
InterHand2.6M (Moon et al., "InterHand2.6M: A Dataset and Baseline for 3D Interacting Hand
Pose Estimation from a Single RGB Image", ECCV 2020; https://mks0601.github.io/InterHand2.6M/,
repo facebookresearch/InterHand2.6M) stores 42 joints, the right hand (0-20) then the left
(21-41), each hand as thumb tip..thumb base, index tip..base, middle, ring, pinky, wrist last.
polyvision uses the FreiHAND / OpenPose order of 21 joints per hand (Zimmermann et al.,
"FreiHAND", ICCV 2019, repo lmb-freiburg/freihand): 0 wrist, 1-4 thumb, 5-8 index, 9-12
middle, 13-16 ring, 17-20 pinky, each from the palm outwards. ``IH_FROM_FREIHAND`` is the map
ACR uses for its output (``ih[k] = fh[IH_FROM_FREIHAND[k]]``); ``FREIHAND_FROM_IH`` is its
inverse (``fh[j] = ih[FREIHAND_FROM_IH[j]]``).

The sample dict
---------------
Every hand dataset returns, for one image and an input side ``S``::

    image            float32 (3, S, S)  RGB crop, padded to a square with white, resized
                                        (bicubic), normalised x / 255 * 2 - 1
    hand_valid       bool (2,)          slot 0 the RIGHT hand, slot 1 the LEFT hand
    mano_pose        float32 (2, 48)    axis-angle, camera space, fingers offset from hands_mean
    mano_shape       float32 (2, 10)
    mano_trans       float32 (2, 3)     metres, camera space: MANO(pose, shape) + mano_trans
                                        is the hand in the camera frame of ``camera``
    mano_valid       bool (2,)
    joints_3d        float32 (2, 21, 3) metres, camera space, FreiHAND order
    joints_3d_valid  bool (2, 21)
    joints_2d        float32 (2, 21, 2) normalised [-1, 1] in the S x S input, x right, y down
                                        (input pixel = (p + 1) / 2 * S)
    joints_2d_valid  bool (2, 21)       annotated, in front of the camera and inside the input
    center           float32 (2, 2)     normalised centre of the box of the valid 2D joints
    camera           float32 (3, 3)     intrinsics from camera space to input pixels:
                                        ``camera @ X / Z`` gives ``(p + 1) / 2 * S``
    interacting      bool ()            both hands visible and annotated as interacting
    meta             {"path", "dataset", "sample_id", "to_input" (2 x 3 affine, original
                      image pixels -> input pixels), "hand_type"}

Missing things are zeros with their valid flag False.

With ``part_segmentation=True`` (datasets and ``HandDataModule``) two more keys come before
``meta`` (:data:`PART_SEGMENTATION_KEYS`; absent otherwise, to keep batches small)::

    part_segmentation        int64 (S/2, S/2)  ACR's 33-class part labels at half the input
                                               resolution: 0 background, 1-16 the RIGHT hand's
                                               MANO parts, 17-32 the LEFT hand's
    part_segmentation_valid  bool ()           False (and the map all zeros) when a
                                               ``hand_valid`` hand has no MANO fit

The map is rendered (:func:`part_segmentation_target`, the z-buffer of ``render.py``) from
the ground-truth meshes of the ``mano_valid`` hands, ``MANO(mano_pose, mano_shape) +
mano_trans`` in the final (augmented) camera frame, projected with ``camera`` and scaled to
the label map (label pixel ``(i, j)`` covers input pixels ``[2j, 2j + 2) x [2i, 2i + 2)``),
nearest surface wins; each face carries its MANO part (:func:`render.mano_part_labels`, the
largest summed skinning weight).

Pixel coordinates follow the convention of ``datamodules/hands/render.py``: pixel ``(i, j)``
is the square ``[j, j+1) x [i, i+1)``, so an image of width ``W`` spans ``0..W`` and the
normalised coordinate maps exactly. The datasets' own projections (``x = X/Z fx + cx``) are
read in this convention; for real data the difference to OpenCV's (centres at integers) is
half a pixel of the original image, below the annotation noise.

The crop
--------
The input is one affine warp of the original image (``to_input``): a square box centred on
the hands (or the whole image) of side ``L``, rotated by ``theta`` about its centre, scaled to
``S``; outside the image it is white. The rotation is a camera roll: ``joints_3d`` and the MANO
global orientation (and translation) are rotated by ``R_z(theta)`` and
``camera = A K R_z(theta)^T`` with ``A`` the 3 x 3 form of ``to_input`` and ``K`` the original
intrinsics, so the perspective projection of ``joints_3d`` with ``camera`` reproduces
``joints_2d`` exactly, whatever the box and the principal point. With ``fx == fy`` (and
always without rotation) the new ``camera`` is again a plain pinhole matrix; a rotation with
``fx != fy`` makes its upper-left block ``s R diag(fx, fy) R^T``, slightly off-diagonal, so
use ``camera`` as a full 3 x 3 matrix.

A hand is ``hand_valid`` when it is annotated and at least one of its joints is visible in
the input (otherwise it has no centre); ``mano_valid`` needs only the annotation.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from polyvision.datamodules.hands.augment import CropJitter, HandAugment
from polyvision.errors import DataError
from torch.utils.data import Dataset

__all__ = [
    "FREIHAND_FROM_IH",
    "IH_FROM_FREIHAND",
    "SAMPLE_KEYS",
    "CropJitter",
    "HandDataset",
    "HandRecord",
    "ManoPair",
    "PART_SEGMENTATION_KEYS",
    "as_array",
    "crop_affine",
    "freihand_to_ih",
    "ih_to_freihand",
    "load_json",
    "make_sample",
    "part_segmentation_target",
    "project",
    "read_image",
    "require_key",
    "rotate_global_orient",
]

IH_FROM_FREIHAND: list[int] = [4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17, 0]
FREIHAND_FROM_IH: list[int] = [int(i) for i in np.argsort(IH_FROM_FREIHAND)]
SIDES = ("right", "left")  # slot 0, slot 1
SAMPLE_KEYS = ("image", "hand_valid", "mano_pose", "mano_shape", "mano_trans", "mano_valid", "joints_3d",
               "joints_3d_valid", "joints_2d", "joints_2d_valid", "center", "camera", "interacting", "meta")
PART_SEGMENTATION_KEYS = ("part_segmentation", "part_segmentation_valid")  # only with part_segmentation=True


# ----------------------------------------------------------------------------------------
# Joint orders
# ----------------------------------------------------------------------------------------
def ih_to_freihand(values: np.ndarray) -> np.ndarray:
    """42 InterHand2.6M joints ``(42, ...)`` -> ``(2, 21, ...)`` (right, left), FreiHAND order."""
    values = np.asarray(values)
    return np.stack([values[:21][FREIHAND_FROM_IH], values[21:42][FREIHAND_FROM_IH]])


def freihand_to_ih(values: np.ndarray) -> np.ndarray:
    """``(2, 21, ...)`` (right, left) in FreiHAND order -> 42 InterHand2.6M joints."""
    values = np.asarray(values)
    return np.concatenate([values[0][IH_FROM_FREIHAND], values[1][IH_FROM_FREIHAND]])


# ----------------------------------------------------------------------------------------
# Strict reading
# ----------------------------------------------------------------------------------------
def load_json(path: str | os.PathLike) -> Any:
    """A JSON file, or a one-line ``DataError`` naming it (missing, unreadable, not JSON)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except OSError as error:
        raise DataError(path, f"cannot read ({error.strerror or error})") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise DataError(path, f"not valid JSON ({error})") from None


def require_key(mapping: Any, key: Any, path: str | os.PathLike, what: str) -> Any:
    """``mapping[str(key)]`` or ``DataError(path, what)`` (``what`` says what is missing)."""
    if not isinstance(mapping, dict) or str(key) not in mapping:
        raise DataError(path, what)
    return mapping[str(key)]


def as_array(value: Any, shape: Sequence[int], path: str | os.PathLike, what: str,
             dtype: Any = np.float64) -> np.ndarray:
    """``value`` as a numpy array of ``shape`` (any nesting with that many numbers, e.g. IH's
    ``(42, 1)`` joint_valid for ``(42,)``), or ``DataError`` naming ``what`` and the shape."""
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise DataError(path, f"{what} is not a numeric array") from None
    if array.shape != tuple(shape):
        if array.size == int(np.prod(shape)) and array.size > 0:
            array = array.reshape(shape)
        else:
            raise DataError(path, f"{what} has shape {list(array.shape)}, expected {list(shape)}")
    if dtype is not bool and not np.isfinite(array).all():
        raise DataError(path, f"{what} holds non-finite values")
    return array


def read_image(path: str | os.PathLike) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)``, or ``DataError`` naming the file."""
    path = str(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(path, "image not found") from None
    except OSError as error:
        raise DataError(path, f"cannot read image ({error.strerror or error})") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DataError(path, "cannot decode image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------
def project(points: np.ndarray, camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Perspective projection ``camera @ X / Z`` of ``(..., 3)`` points: pixels ``(..., 2)``
    and depths ``(...)`` (points with ``Z <= 0`` get pixel 0)."""
    points = np.asarray(points, dtype=np.float64)
    homogeneous = points @ np.asarray(camera, dtype=np.float64).T
    depth = homogeneous[..., 2]
    safe = np.where(depth > 1e-9, depth, 1.0)
    pixels = np.where((depth > 1e-9)[..., None], homogeneous[..., :2] / safe[..., None], 0.0)
    return pixels, points[..., 2]


def rotz(theta: float) -> np.ndarray:
    """Rotation about the camera's optical axis by ``theta`` radians (x right, y down: a
    positive angle turns the image clockwise on screen, as ``R(theta)`` on pixels)."""
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotate_global_orient(pose: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """A copy of MANO ``pose (..., 48)`` with its global orientation (the first three
    axis-angle numbers, absolute: hands_mean only concerns the fingers) pre-multiplied by
    ``rotation`` (3 x 3)."""
    out = np.array(pose, dtype=np.float64, copy=True)
    flat = out.reshape(-1, out.shape[-1])
    for row in flat:
        matrix, _ = cv2.Rodrigues(np.ascontiguousarray(row[:3]).reshape(3, 1))
        vector, _ = cv2.Rodrigues(np.asarray(rotation, dtype=np.float64) @ matrix)
        row[:3] = vector.reshape(3)
    return flat.reshape(out.shape)


def crop_affine(center: Sequence[float], side: float, size: int, angle: float = 0.0) -> np.ndarray:
    """The 2 x 3 affine from original pixels to input pixels of the square box of ``side``
    around ``center``, rotated by ``angle`` about it, scaled to ``size``."""
    scale = size / float(side)
    c, s = np.cos(angle), np.sin(angle)
    linear = scale * np.array([[c, -s], [s, c]])
    offset = np.array([size / 2.0, size / 2.0]) - linear @ np.asarray(center, dtype=np.float64)
    return np.concatenate([linear, offset[:, None]], axis=1)


def _joint_box(pixels: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    if not valid.any():
        return None
    points = pixels[valid]
    return points.min(axis=0), points.max(axis=0)


# ----------------------------------------------------------------------------------------
# Records and MANO
# ----------------------------------------------------------------------------------------
@dataclass
class HandRecord:
    """One image's annotation in camera space, before cropping (right hand first)."""

    image_path: str
    dataset: str
    sample_id: str
    camera: np.ndarray  # (3, 3) original intrinsics
    joints_3d: np.ndarray = field(default_factory=lambda: np.zeros((2, 21, 3)))  # metres
    joints_valid: np.ndarray = field(default_factory=lambda: np.zeros((2, 21), bool))
    hand_present: np.ndarray = field(default_factory=lambda: np.zeros(2, bool))
    mano_pose: np.ndarray = field(default_factory=lambda: np.zeros((2, 48)))
    mano_shape: np.ndarray = field(default_factory=lambda: np.zeros((2, 10)))
    mano_trans: np.ndarray = field(default_factory=lambda: np.zeros((2, 3)))
    mano_root: np.ndarray = field(default_factory=lambda: np.zeros((2, 3)))  # MANO joint J0 of each hand's shape
    mano_valid: np.ndarray = field(default_factory=lambda: np.zeros(2, bool))
    interacting: bool = False
    hand_type: str = ""
    bbox: np.ndarray | None = None  # (x, y, w, h) in original pixels, used when no joint is valid


class ManoPair:
    """The right and left MANO layers (``flat_hand_mean=False``), for the few MANO facts a
    reader needs: the root joint ``J0`` of a shape (pose-independent; MANO rotates about it)
    and posed joints. CPU, no gradients."""

    def __init__(self, mano_dir: str | os.PathLike):
        from polyvision.models.layers.mano import MANOModel, require_mano_dir

        self.mano_dir = require_mano_dir(mano_dir, "both")
        self.models = [MANOModel.from_dir(self.mano_dir, side) for side in SIDES]

    @torch.no_grad()
    def forward(self, slot: int, pose: np.ndarray, shape: np.ndarray, transl: np.ndarray | None = None):
        model = self.models[slot]
        pose_t = torch.as_tensor(np.asarray(pose, np.float64).reshape(-1, 48), dtype=torch.float32)
        shape_t = torch.as_tensor(np.asarray(shape, np.float64).reshape(len(pose_t), -1), dtype=torch.float32)
        transl_t = None if transl is None else torch.as_tensor(np.asarray(transl, np.float64).reshape(-1, 3),
                                                              dtype=torch.float32)
        return model(pose_t, shape_t, transl_t)

    def root(self, slot: int, shape: np.ndarray) -> np.ndarray:
        """``J0`` (3,) of the ``slot`` hand (0 right, 1 left) with ``shape`` (10,), metres."""
        model = self.models[slot]
        betas = np.asarray(shape, np.float64).reshape(-1)
        template = getattr(model, "joint_template", None)
        directions = getattr(model, "joint_shapedirs", None)
        if template is None or directions is None:  # the layer's regressed joints, else a rest-pose forward
            return self.forward(slot, np.zeros(48), betas).joints16[0, 0].double().numpy()
        return (template[0].double().numpy()
                + directions[0, :, : len(betas)].double().numpy() @ betas)

    def joints(self, slot: int, pose: np.ndarray, shape: np.ndarray) -> np.ndarray:
        """The 21 joints (FreiHAND order) of a posed hand without translation, metres."""
        return self.forward(slot, pose, shape).joints[0].double().numpy()

    @property
    def faces(self) -> np.ndarray:
        return self.models[0].faces.numpy()

    def part_face_labels(self) -> list[np.ndarray]:
        """Per-face labels of ACR's two-hand segmentation, ``[right (F,), left (F,)]``: the
        MANO part of each face (``render.mano_part_labels`` of the skinning weights), the left
        hand's offset by 16. Computed once."""
        labels = getattr(self, "_part_face_labels", None)
        if labels is None:
            from polyvision.datamodules.hands.render import mano_part_labels, two_hand_face_labels

            right, left = (mano_part_labels(model.lbs_weights, model.faces) for model in self.models)
            labels = list(two_hand_face_labels(right, left))
            self._part_face_labels = labels
        return labels


# ----------------------------------------------------------------------------------------
# The sample
# ----------------------------------------------------------------------------------------
def make_sample(image: np.ndarray, record: HandRecord, input_size: int, *, crop: str = "hands",
                enlarge: float = 1.75, jitter: CropJitter | None = None,
                photometric: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
                ) -> dict[str, Any]:
    """The sample dict (module docstring) of one RGB uint8 image and its record.

    ``crop``: ``"hands"``, a square box around the projected valid joints of both hands (the
    annotated ``bbox`` when no joint is valid, the whole image without either), its longer
    side times ``enlarge``; ``"full"``: the whole image padded to a square. ``jitter``: the
    training augmentation's random box change. ``photometric(image, keypoints)``: colour
    augmentation of the warped ``S x S`` image, keypoints ``(42, 2)`` input pixels carried
    along (returned unchanged by colour-only transforms)."""
    size = int(input_size)
    height, width = image.shape[:2]
    joints = np.asarray(record.joints_3d, np.float64).copy()
    valid3 = np.asarray(record.joints_valid, bool) & np.asarray(record.hand_present, bool)[:, None]
    pixels, depth = project(joints, record.camera)
    valid3 &= depth > 1e-6

    if crop == "full":
        center, side = np.array([width / 2.0, height / 2.0]), float(max(width, height))
    elif crop == "hands":
        box = _joint_box(pixels, valid3)
        if box is None and record.bbox is not None:
            x, y, w, h = (float(v) for v in record.bbox)
            box = (np.array([x, y]), np.array([x + w, y + h]))
        if box is None:
            center, side = np.array([width / 2.0, height / 2.0]), float(max(width, height))
        else:
            low, high = box
            center = (low + high) / 2.0
            side = max(float((high - low).max()), 8.0) * float(enlarge)
    else:
        raise ValueError(f"crop must be 'hands' or 'full', got {crop!r}")
    angle = 0.0
    if jitter is not None:
        side *= float(jitter.scale)
        center = center + np.asarray(jitter.shift, np.float64) * side
        angle = float(jitter.angle)
    affine = crop_affine(center, side, size, angle)

    # OpenCV samples pixel centres at integers; ours are at +0.5: shift in and out.
    cv_affine = affine.copy()
    cv_affine[:, 2] += affine[:, :2] @ np.array([0.5, 0.5]) - 0.5
    warped = cv2.warpAffine(np.ascontiguousarray(image), cv_affine, (size, size), flags=cv2.INTER_CUBIC,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(255, 255, 255))

    # camera roll: 3D joints, MANO global orientation and translation turn with the image
    roll = rotz(angle)
    joints = joints @ roll.T
    a3 = np.vstack([affine, [0.0, 0.0, 1.0]])
    camera = a3 @ np.asarray(record.camera, np.float64) @ roll.T
    mano_pose = np.asarray(record.mano_pose, np.float64).copy()
    mano_trans = np.asarray(record.mano_trans, np.float64).copy()
    if angle != 0.0:
        mano_pose = rotate_global_orient(mano_pose, roll)
        root = np.asarray(record.mano_root, np.float64)
        mano_trans = (root + mano_trans) @ roll.T - root
    input_pixels = pixels @ affine[:, :2].T + affine[:, 2]

    if photometric is not None:
        warped, moved = photometric(warped, input_pixels.reshape(42, 2))
        input_pixels = np.asarray(moved, np.float64).reshape(2, 21, 2)

    inside = (input_pixels >= 0).all(-1) & (input_pixels < size).all(-1)
    valid2 = valid3 & inside
    hand_valid = np.asarray(record.hand_present, bool) & valid2.any(axis=1)
    joints_2d = np.where(valid2[..., None], input_pixels / size * 2.0 - 1.0, 0.0)
    center_2d = np.zeros((2, 2))
    for slot in range(2):
        box = _joint_box(joints_2d[slot], valid2[slot])
        if box is not None:
            center_2d[slot] = (box[0] + box[1]) / 2.0
    mano_valid = np.asarray(record.mano_valid, bool) & np.asarray(record.hand_present, bool)

    tensor = torch.from_numpy(np.ascontiguousarray(warped.transpose(2, 0, 1))).float()
    tensor = tensor.mul_(2.0 / 255.0).sub_(1.0)

    def f32(value: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))

    def flag(value: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(value, dtype=bool))

    return {
        "image": tensor,
        "hand_valid": flag(hand_valid),
        "mano_pose": f32(np.where(mano_valid[:, None], mano_pose, 0.0)),
        "mano_shape": f32(np.where(mano_valid[:, None], record.mano_shape, 0.0)),
        "mano_trans": f32(np.where(mano_valid[:, None], mano_trans, 0.0)),
        "mano_valid": flag(mano_valid),
        "joints_3d": f32(np.where(valid3[..., None], joints, 0.0)),
        "joints_3d_valid": flag(valid3),
        "joints_2d": f32(joints_2d),
        "joints_2d_valid": flag(valid2),
        "center": f32(center_2d),
        "camera": f32(camera),
        "interacting": torch.tensor(bool(record.interacting and hand_valid.all())),
        "meta": {
            "path": record.image_path,
            "dataset": record.dataset,
            "sample_id": record.sample_id,
            "to_input": affine.tolist(),
            "hand_type": record.hand_type,
        },
    }


# ----------------------------------------------------------------------------------------
# Part segmentation
# ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one CPU thread inside the block (restored after). A sample's tensors (the
    crop, MANO, the rasteriser's) are small: intra-op threads cost more than they give (tens
    of times more on a busy machine). DataLoader workers already run on one thread; this
    covers ``num_workers=0``."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def part_segmentation_target(mano: ManoPair, sample: dict[str, Any]) -> dict[str, torch.Tensor]:
    """ACR's part-segmentation target of a sample dict (see the module docstring):
    ``{"part_segmentation": int64 (S/2, S/2), "part_segmentation_valid": bool ()}``.

    The ``mano_valid`` hands are posed with the sample's (augmented) MANO parameters,
    projected with its ``camera`` (input pixels) and scaled by ``(S // 2) / S`` (one half for
    an even ``S``) to the label map; depth is the camera ``z``. Vertices at or behind the
    camera drop their faces. When a ``hand_valid`` hand has no MANO fit the target is not
    trustworthy (that hand would read as background): all zeros and ``valid`` False.
    Deterministic; CPU, one thread (:func:`one_torch_thread`), no gradients."""
    with one_torch_thread():
        return _part_segmentation_target(mano, sample)


def _part_segmentation_target(mano: ManoPair, sample: dict[str, Any]) -> dict[str, torch.Tensor]:
    size = int(sample["image"].shape[-1])
    label_size = size // 2
    label_map = torch.zeros((label_size, label_size), dtype=torch.long)
    hand_valid = sample["hand_valid"].numpy()
    mano_valid = sample["mano_valid"].numpy()
    if (hand_valid & ~mano_valid).any():
        return {"part_segmentation": label_map, "part_segmentation_valid": torch.tensor(False)}
    slots = [slot for slot in range(2) if mano_valid[slot]]
    if slots:
        camera = sample["camera"].double().numpy()
        face_labels = mano.part_face_labels()
        meshes, faces, labels = [], [], []
        for slot in slots:
            out = mano.forward(slot, sample["mano_pose"][slot].numpy(), sample["mano_shape"][slot].numpy(),
                               sample["mano_trans"][slot].numpy())
            vertices = out.vertices[0].double().numpy()
            pixels, depth = project(vertices, camera)
            pixels = np.where((depth > 1e-6)[:, None], pixels * (label_size / size), np.nan)  # NaN faces are skipped
            meshes.append(np.concatenate([pixels, depth[:, None]], axis=1))
            faces.append(mano.models[slot].faces)
            labels.append(face_labels[slot])
        from polyvision.datamodules.hands.render import rasterize_labels

        label_map = rasterize_labels(meshes, faces, labels, label_size, label_size)
    return {"part_segmentation": label_map, "part_segmentation_valid": torch.tensor(True)}


# ----------------------------------------------------------------------------------------
# The dataset base
# ----------------------------------------------------------------------------------------
class HandDataset(Dataset):
    """Common ``__getitem__`` of the hand datasets: read the image, build the record
    (subclasses: :meth:`__len__`, :meth:`record`), crop and augment, return the sample dict.

    Randomness: every random choice comes from the augmenter's ``numpy.random.Generator``
    and its albumentations ``Compose``, both reseeded before each sample: with the seed given
    by :meth:`set_sample_seed` (a wrapper calls it with a seed of (run seed, epoch, index)
    right before ``__getitem__``), else with the index, so a sample is a function of its seed.

    ``part_segmentation``: add ACR's part-segmentation target (:func:`part_segmentation_target`,
    keys :data:`PART_SEGMENTATION_KEYS`) to every sample.
    """

    dataset_name = "hands"

    def __init__(self, input_size: int, augment: bool, mano_dir: str | os.PathLike | None,
                 crop: str = "hands", enlarge: float = 1.75, augmenter: Any = None, part_segmentation: bool = False):
        if crop not in ("hands", "full"):
            raise ValueError(f"crop must be 'hands' or 'full', got {crop!r}")
        self.input_size = int(input_size)
        self.part_segmentation = bool(part_segmentation)
        self.augment = bool(augment)
        self.crop = crop
        self.enlarge = float(enlarge)
        self.mano = ManoPair(mano_dir)
        self.augmenter = (augmenter or HandAugment()) if self.augment else None
        self._next_seed: int | None = None

    def set_sample_seed(self, seed: int) -> None:
        """Seed the randomness of the next ``__getitem__`` (its albumentations ``Compose`` via
        ``set_random_seed`` and its numpy ``Generator``)."""
        self._next_seed = int(seed)

    def record(self, index: int) -> HandRecord:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        with one_torch_thread():  # small tensors: see one_torch_thread
            return self._sample(index)

    def _sample(self, index: int) -> dict[str, Any]:
        seed = self._next_seed if self._next_seed is not None else int(index)
        self._next_seed = None
        record = self.record(index)
        image = read_image(record.image_path)
        jitter = photometric = None
        if self.augmenter is not None:
            self.augmenter.set_seed(seed)
            jitter = self.augmenter.draw_jitter()
            photometric = self.augmenter.photometric
        sample = make_sample(image, record, self.input_size, crop=self.crop, enlarge=self.enlarge,
                             jitter=jitter, photometric=photometric)
        if self.part_segmentation:
            meta = sample.pop("meta")
            sample.update(part_segmentation_target(self.mano, sample))
            sample["meta"] = meta
        return sample
