"""FreiHAND v2 (Zimmermann et al., "FreiHAND: A Dataset for Markerless Capture of Hand Pose and
Shape from Single RGB Images", ICCV 2019; repo lmb-freiburg/freihand) as hand sample dicts
(``annotations`` module). Right hands only, 224 x 224 RGB images.

Layout::

    <root>/training/rgb/%08d.jpg        32,560 samples x 4 versions: image id = idx + 32560 * v,
                                        versions (gs, hom, sample, auto) = v 0..3
    <root>/training/mask/%08d.jpg       (not read)
    <root>/evaluation/rgb/%08d.jpg      3,960 samples
    <root>/{training,evaluation}_K.json      list of 3 x 3 intrinsics, one per sample
    <root>/{training,evaluation}_xyz.json    list of 21 x 3 joints, camera space, metres, FreiHAND order
    <root>/{training,evaluation}_mano.json   list of 1 x 61: pose 48 (global + 45 fingers, relative
                                             to hands_mean), shape 10, uv_root 2, scale 1 (optional)
    <root>/{training,evaluation}_verts.json, _scale.json   (not read)

The MANO translation is not stored. It is recovered so that the MANO joints match ``xyz``:
``trans = xyz[9] - MANO(pose, shape).joints[9]`` (joint 9, the middle-finger MCP, a
skinned joint, so it does not depend on which vertices are taken as fingertips).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from polyvision.datamodules.hands.annotations import (
    HandDataset,
    HandRecord,
    as_array,
    load_json,
)
from polyvision.errors import ConfigError, DataError

__all__ = ["FREIHAND_SPLITS", "FREIHAND_VERSIONS", "FreiHANDDataset"]

FREIHAND_VERSIONS = ("gs", "hom", "sample", "auto")
FREIHAND_SPLITS = ("training", "evaluation")


class FreiHANDDataset(HandDataset):
    """FreiHAND v2 images as hand sample dicts (right hand in slot 0; see the module docstring).

    Args:
        root: the folder holding ``training/``, ``evaluation/`` and the JSON files.
        split: ``training`` or ``evaluation``.
        versions: training image versions to use (``gs``, ``hom``, ``sample``, ``auto``);
            the evaluation split has one version.
        input_size: side ``S`` of the model input (the 224 x 224 image is resized to it).
        augment: the random training augmentation (``augment`` module).
        mano_dir: folder with ``MANO_RIGHT.pkl`` and ``MANO_LEFT.pkl``.
        crop: ``full`` (the whole image, the default: FreiHAND images are hand crops) or ``hands``.
        enlarge: box size over the hand's extent with ``crop="hands"``.
        augmenter: a :class:`~polyvision.datamodules.hands.augment.HandAugment` to use
            instead of the default one.
        part_segmentation: add ACR's part-segmentation target to each sample
            (``part_segmentation`` (S/2, S/2) int64, right-hand labels 1-16, and
            ``part_segmentation_valid``; see the ``annotations`` module).
    """

    dataset_name = "freihand"

    def __init__(self, root: str | os.PathLike, split: str = "training", versions: Sequence[str] = FREIHAND_VERSIONS,
                 input_size: int = 224, augment: bool = False, mano_dir: str | os.PathLike | None = None,
                 crop: str = "full", enlarge: float = 1.75, augmenter: Any = None, part_segmentation: bool = False):
        if split not in FREIHAND_SPLITS:
            raise ConfigError(f"FreiHAND split must be 'training' or 'evaluation', got {split!r}")
        unknown = [v for v in versions if v not in FREIHAND_VERSIONS]
        if unknown or not versions:
            raise ConfigError(f"FreiHAND versions must be some of {', '.join(FREIHAND_VERSIONS)}, got {list(versions)}")
        super().__init__(input_size, augment, mano_dir, crop=crop, enlarge=enlarge, augmenter=augmenter,
                         part_segmentation=part_segmentation)
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(self.root, "FreiHAND folder not found")
        self.split = split
        self.versions = tuple(versions) if split == "training" else ("gs",)
        self.paths = {kind: self.root / f"{split}_{kind}.json" for kind in ("K", "xyz", "mano")}
        self.intrinsics = self._list("K")
        self.xyz = self._list("xyz")
        self.fits = self._list("mano") if self.paths["mano"].exists() else None
        self.num_unique = len(self.intrinsics)
        self.items = [(idx, FREIHAND_VERSIONS.index(v)) for v in self.versions for idx in range(self.num_unique)]

    def _list(self, kind: str) -> list:
        found = load_json(self.paths[kind])
        if not isinstance(found, list):
            raise DataError(self.paths[kind], "expected a JSON list with one entry per sample")
        if kind != "K" and len(found) != len(self.intrinsics):
            raise DataError(self.paths[kind], f"{len(found)} entries, but {self.paths['K'].name} has "
                            f"{len(self.intrinsics)}")
        return found

    def __len__(self) -> int:
        return len(self.items)

    def record(self, index: int) -> HandRecord:
        idx, version = self.items[index]
        image_id = idx + self.num_unique * version
        intrinsics = as_array(self.intrinsics[idx], (3, 3), self.paths["K"], f"entry {idx}")
        xyz = as_array(self.xyz[idx], (21, 3), self.paths["xyz"], f"entry {idx}")
        record = HandRecord(
            image_path=str(self.root / self.split / "rgb" / f"{image_id:08d}.jpg"),
            dataset="freihand",
            sample_id=f"{self.split}/{image_id:08d}",
            camera=intrinsics,
            joints_3d=np.stack([xyz, np.zeros((21, 3))]),
            joints_valid=np.array([[True] * 21, [False] * 21]),
            hand_present=np.array([True, False]),
            hand_type="right",
        )
        if self.fits is not None:
            theta = as_array(self.fits[idx], (61,), self.paths["mano"], f"entry {idx}")
            pose, shape = theta[:48], theta[48:58]
            record.mano_pose[0] = pose
            record.mano_shape[0] = shape
            record.mano_trans[0] = xyz[9] - self.mano.joints(0, pose, shape)[9]
            record.mano_root[0] = self.mano.root(0, shape)
            record.mano_valid[0] = True
        return record
