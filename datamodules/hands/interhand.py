"""InterHand2.6M v1.0 (Moon et al., "InterHand2.6M: A Dataset and Baseline for 3D Interacting
Hand Pose Estimation from a Single RGB Image", ECCV 2020; https://mks0601.github.io/InterHand2.6M/,
repo facebookresearch/InterHand2.6M) as hand sample dicts (``annotations`` module).

Layout (the 5 fps and the 30 fps releases share it; ``root`` points at either)::

    <root>/images/{train,val,test}/Capture{N}/{seq_name}/cam{cam_id}/image{frame_idx}.jpg
    <root>/annotations/{split}/InterHand2.6M_{split}_data.json         COCO-style images/annotations
    <root>/annotations/{split}/InterHand2.6M_{split}_camera.json       per capture and camera
    <root>/annotations/{split}/InterHand2.6M_{split}_joint_3d.json     per capture and frame, mm
    <root>/annotations/{split}/InterHand2.6M_{split}_MANO_NeuralAnnot.json   per capture and frame

When ``root`` itself holds no ``annotations`` folder, the one sub-folder that does is used
(e.g. ``InterHand2.6M_5fps_batch1``), or the one named by ``frame_rate_folder``.

One sample per annotation of ``_data.json`` (one image, one or two hands). Facts used:

- camera: world -> camera ``X_cam = R (X_world - campos)`` in mm (``camrot`` R,
  ``campos``), pixels ``x = X/Z fx + cx``, ``y = Y/Z fy + cy``; joints are stored in metres;
- ``world_coord`` holds 42 joints in InterHand order (right 0-20, left 21-41), reordered to
  FreiHAND order per hand; ``joint_valid`` of the annotation (or of ``_joint_3d.json``);
- hands present: ``hand_type`` right / left / interacting (a hand with no valid joint is absent);
- MANO NeuralAnnot fits (world space, metres; ``pose`` 48 axis-angle with fingers relative
  to hands_mean, ``shape`` 10, ``trans`` 3; ``null`` when a hand has no fit) are moved to the
  camera: MANO rotates about its root joint ``J0`` (joint 0 of ``J_regressor (v_template +
  shapedirs beta)``, pose-independent), so ``global_orient_cam = R R_world`` and
  ``trans_cam = R (J0 + trans - campos / 1000) - J0``; that is why the reader needs the MANO
  model files (``mano_dir``).

Subsets: ``all``; ``interacting`` (the interacting-hands subset of IntagHand, Li et al.
CVPR 2022, used in ACR's InterHand2.6M table: ``hand_type == 'interacting'``, a valid hand
type, and NeuralAnnot fits for both hands); ``single`` (``hand_type`` right or left).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from polyvision.datamodules.hands.annotations import (
    HandDataset,
    HandRecord,
    as_array,
    ih_to_freihand,
    load_json,
    require_key,
)
from polyvision.errors import ConfigError, DataError

__all__ = ["SUBSETS", "InterHandDataset", "interhand_annotation_path", "resolve_interhand_root"]

SUBSETS = ("all", "interacting", "single")
ANNOTATION_KINDS = ("data", "camera", "joint_3d", "MANO_NeuralAnnot")


def interhand_annotation_path(root: str | os.PathLike, split: str, kind: str) -> Path:
    """``<root>/annotations/<split>/InterHand2.6M_<split>_<kind>.json``."""
    return Path(root) / "annotations" / split / f"InterHand2.6M_{split}_{kind}.json"


def resolve_interhand_root(root: str | os.PathLike, frame_rate_folder: str | None = None) -> Path:
    """The folder holding ``images/`` and ``annotations/``: ``root`` (or ``root /
    frame_rate_folder``), or the one sub-folder of ``root`` that holds ``annotations/``."""
    root = Path(root).expanduser()
    if frame_rate_folder:
        root = root / frame_rate_folder
    if (root / "annotations").is_dir():
        return root
    if not root.is_dir():
        raise DataError(root, "InterHand2.6M folder not found")
    candidates = sorted(d for d in root.iterdir() if (d / "annotations").is_dir()) if not frame_rate_folder else []
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        names = ", ".join(d.name for d in candidates)
        raise DataError(root, f"several InterHand2.6M releases ({names}); choose one with frame_rate_folder")
    raise DataError(root, "no annotations/ folder: point root at the InterHand2.6M release (5 fps or 30 fps) "
                    "holding images/ and annotations/")


def _flag(value: Any) -> bool:
    """IH's 0/1 flags (a number, a bool or a one-element list) as a bool."""
    try:
        array = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return False
    return bool(array.size and (array > 0).all())


class InterHandDataset(HandDataset):
    """InterHand2.6M v1.0 images as hand sample dicts (see the module docstring).

    Args:
        root: the release folder (5 fps or 30 fps) or its parent (see :func:`resolve_interhand_root`).
        split: ``train``, ``val`` or ``test``.
        subset: ``all``, ``interacting`` or ``single``.
        input_size: side ``S`` of the square input (ACR: 512).
        augment: the random training augmentation (``augment`` module).
        mano_dir: folder with ``MANO_RIGHT.pkl`` and ``MANO_LEFT.pkl``.
        frame_rate_folder: sub-folder of ``root`` to read (e.g. ``InterHand2.6M_5fps_batch1``).
        crop: ``hands`` (a square box around both hands, ``enlarge`` times their extent) or
            ``full`` (the whole image padded to a square).
        enlarge: box size over the hands' extent.
        augmenter: a :class:`~polyvision.datamodules.hands.augment.HandAugment` to use
            instead of the default one.
        part_segmentation: add ACR's part-segmentation target to each sample
            (``part_segmentation`` (S/2, S/2) int64 and ``part_segmentation_valid``; see the
            ``annotations`` module).
    """

    dataset_name = "interhand"

    def __init__(self, root: str | os.PathLike, split: str = "train", subset: str = "all", input_size: int = 512,
                 augment: bool = False, mano_dir: str | os.PathLike | None = None,
                 frame_rate_folder: str | None = None, crop: str = "hands", enlarge: float = 1.75,
                 augmenter: Any = None, part_segmentation: bool = False):
        if subset not in SUBSETS:
            raise ConfigError(f"InterHand2.6M subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
        super().__init__(input_size, augment, mano_dir, crop=crop, enlarge=enlarge, augmenter=augmenter,
                         part_segmentation=part_segmentation)
        self.root = resolve_interhand_root(root, frame_rate_folder)
        self.split = split
        self.subset = subset
        self.paths = {kind: interhand_annotation_path(self.root, split, kind) for kind in ANNOTATION_KINDS}
        data = load_json(self.paths["data"])
        self.cameras = self._mapping("camera")
        self.joints = self._mapping("joint_3d")
        self.fits = self._mapping("MANO_NeuralAnnot")
        self.items = self._index(data)

    def _mapping(self, kind: str) -> dict:
        found = load_json(self.paths[kind])
        if not isinstance(found, dict):
            raise DataError(self.paths[kind], "expected a JSON object keyed by capture id")
        return found

    def _index(self, data: Any) -> list[tuple]:
        path = self.paths["data"]
        if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
                or not isinstance(data.get("annotations"), list):
            raise DataError(path, "expected a COCO-style object with 'images' and 'annotations' lists")
        images: dict[Any, dict] = {}
        for image in data["images"]:
            if not isinstance(image, dict) or "id" not in image:
                raise DataError(path, "an entry of 'images' has no 'id'")
            images[image["id"]] = image
        items = []
        for ann in data["annotations"]:
            if not isinstance(ann, dict) or "image_id" not in ann:
                raise DataError(path, "an entry of 'annotations' has no 'image_id'")
            image = images.get(ann["image_id"])
            if image is None:
                raise DataError(path, f"annotation {ann.get('id')} refers to image {ann['image_id']}, "
                                "which is not in 'images'")
            for key in ("file_name", "capture", "camera", "frame_idx"):
                if key not in image:
                    raise DataError(path, f"image {image['id']} has no '{key}'")
            capture, frame = str(image["capture"]), str(image["frame_idx"])
            hand_type = str(ann.get("hand_type", ""))
            type_valid = _flag(ann.get("hand_type_valid", 1))
            if self.subset == "interacting":
                fits = self._fits_of(capture, frame)
                if not (hand_type == "interacting" and type_valid and fits.get("right") and fits.get("left")):
                    continue
            elif self.subset == "single" and hand_type not in ("right", "left"):
                continue
            items.append((str(image["file_name"]), capture, str(image["camera"]), frame, hand_type, type_valid,
                          ann.get("joint_valid"), ann.get("bbox"), ann.get("id")))
        return items

    def __len__(self) -> int:
        return len(self.items)

    def _fits_of(self, capture: str, frame: str) -> dict:
        """The NeuralAnnot entry ``{right, left}`` of a frame (empty when it has none)."""
        frames = self.fits.get(capture) or {}
        fits = frames.get(frame) if isinstance(frames, dict) else None
        if fits is not None and not isinstance(fits, dict):
            raise DataError(self.paths["MANO_NeuralAnnot"], f"capture {capture} frame {frame} is not an object")
        return fits or {}

    def camera(self, capture: str, cam: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(K (3, 3), R (3, 3), campos (3,) mm)`` of one camera, or ``DataError`` naming
        ``_camera.json`` and what is missing."""
        path = self.paths["camera"]
        entry = require_key(self.cameras, capture, path, f"no capture {capture}")
        values = {}
        for key, shape in (("campos", (3,)), ("camrot", (3, 3)), ("focal", (2,)), ("princpt", (2,))):
            table = require_key(entry, key, path, f"capture {capture} has no '{key}'")
            values[key] = as_array(require_key(table, cam, path, f"capture {capture} has no camera {cam}"),
                                   shape, path, f"capture {capture} camera {cam} {key}")
        (fx, fy), (cx, cy) = values["focal"], values["princpt"]
        intrinsics = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        return intrinsics, values["camrot"], values["campos"]

    def record(self, index: int) -> HandRecord:
        file_name, capture, cam, frame, hand_type, type_valid, ann_valid, bbox, ann_id = self.items[index]
        intrinsics, rotation, campos = self.camera(capture, cam)
        path = self.paths["joint_3d"]
        frames = require_key(self.joints, capture, path, f"no capture {capture}")
        entry = require_key(frames, frame, path, f"capture {capture} has no frame {frame}")
        world = as_array(require_key(entry, "world_coord", path, f"capture {capture} frame {frame} has no 'world_coord'"),
                         (42, 3), path, f"capture {capture} frame {frame} world_coord")
        if ann_valid is not None:
            valid = as_array(ann_valid, (42,), self.paths["data"], f"annotation {ann_id} joint_valid") > 0
        else:
            valid = as_array(require_key(entry, "joint_valid", path, f"capture {capture} frame {frame} has no "
                                         "'joint_valid'"), (42,), path, f"capture {capture} frame {frame} joint_valid") > 0
        cam_coord = (world - campos) @ rotation.T / 1000.0
        joints, joints_valid = ih_to_freihand(cam_coord), ih_to_freihand(valid)
        wanted = {"right": [True, False], "left": [False, True], "interacting": [True, True]}.get(hand_type, [True, True])
        present = np.asarray(wanted) & joints_valid.any(axis=1)

        record = HandRecord(
            image_path=str(self.root / "images" / self.split / file_name),
            dataset="interhand",
            sample_id=str(Path(file_name).with_suffix("")),
            camera=intrinsics,
            joints_3d=joints,
            joints_valid=joints_valid,
            hand_present=present,
            interacting=hand_type == "interacting" and type_valid,
            hand_type=hand_type,
            bbox=None if bbox is None else as_array(bbox, (4,), self.paths["data"], f"annotation {ann_id} bbox"),
        )
        self._add_mano(record, capture, frame, rotation, campos)
        return record

    def _add_mano(self, record: HandRecord, capture: str, frame: str, rotation: np.ndarray, campos: np.ndarray) -> None:
        """NeuralAnnot fits of both hands, moved from world to camera space."""
        path = self.paths["MANO_NeuralAnnot"]
        fits = self._fits_of(capture, frame)
        for slot, side in enumerate(("right", "left")):
            params = fits.get(side)
            if not params:
                continue
            what = f"capture {capture} frame {frame} {side}"
            pose = as_array(require_key(params, "pose", path, f"{what} has no 'pose'"), (48,), path, f"{what} pose")
            shape = as_array(require_key(params, "shape", path, f"{what} has no 'shape'"), (10,), path, f"{what} shape")
            trans = as_array(require_key(params, "trans", path, f"{what} has no 'trans'"), (3,), path, f"{what} trans")
            world_orient, _ = cv2.Rodrigues(pose[:3].reshape(3, 1))
            camera_orient, _ = cv2.Rodrigues(rotation @ world_orient)
            pose = pose.copy()
            pose[:3] = camera_orient.reshape(3)
            root = self.mano.root(slot, shape)
            record.mano_pose[slot] = pose
            record.mano_shape[slot] = shape
            record.mano_trans[slot] = rotation @ (root + trans - campos / 1000.0) - root
            record.mano_root[slot] = root
            record.mano_valid[slot] = True
