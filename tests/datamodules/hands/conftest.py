"""Fixtures of the hand dataset tests: the generated MANO model, small synthetic InterHand2.6M
and FreiHAND trees (written once per session), and tiny hand-written InterHand2.6M / FreiHAND
annotation trees whose numbers the tests know."""
from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from polyvision.datamodules.hands.annotations import (
    IH_FROM_FREIHAND,
    SAMPLE_KEYS,
    project,
)

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

IH_COUNTS = {"train": 12, "val": 4, "test": 4}
FH_COUNTS = {"training": 4, "evaluation": 4}
IH_SIZE = 128
FH_SIZE = 128


@pytest.fixture(scope="session")
def synthetic_options() -> dict:
    """The writer settings of :func:`synthetic_root` per dataset (``synthetic_options`` of
    the datamodule, so that it finds the written datasets complete)."""
    return {"interhand": {"num_images_per_split": IH_COUNTS, "image_size": IH_SIZE, "seed": 0},
            "freihand": {"num_images_per_split": FH_COUNTS, "image_size": FH_SIZE, "seed": 0}}


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """One folder with the generated MANO model, a synthetic InterHand2.6M and a FreiHAND."""
    from polyvision.datamodules.hands.synthetic import (
        write_synthetic_freihand,
        write_synthetic_interhand,
    )

    root = tmp_path_factory.mktemp("hands")
    write_synthetic_interhand(root, IH_COUNTS, image_size=IH_SIZE, seed=0, progress=False)
    write_synthetic_freihand(root, FH_COUNTS, image_size=FH_SIZE, seed=0, progress=False)
    return root


@pytest.fixture(scope="session")
def mano_dir(synthetic_root) -> Path:
    return synthetic_root / "mano"


@pytest.fixture(scope="session")
def mano(mano_dir):
    from polyvision.datamodules.hands.annotations import ManoPair

    return ManoPair(mano_dir)


def write_image(path: Path, width: int, height: int, value: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((height, width, 3), value, np.uint8)
    image[::7] = 200
    assert cv2.imwrite(str(path), image)


def look_rotation(yaw: float) -> np.ndarray:
    """A world -> camera rotation turning about the world y axis by ``yaw``."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])


TINY_CAMERA = {
    "campos": np.array([120.0, -40.0, -650.0]),  # mm
    "camrot": look_rotation(0.3),
    "focal": np.array([300.0, 310.0]),
    "princpt": np.array([40.0, 62.0]),
}


@pytest.fixture()
def tiny_interhand(tmp_path, mano, mano_dir) -> dict:
    """A hand-written InterHand2.6M 'train' split: capture 3, camera 400262, two frames.

    Frame 10: interacting, both MANO fits; frame 11: right hand only, left fit null.
    Returns the root and the ground truth the reader must reproduce."""
    root = tmp_path / "ih"
    rng = np.random.default_rng(5)
    cam = TINY_CAMERA
    truth: dict = {"root": root, "camera": cam, "frames": {}, "mano_dir": mano_dir}
    joints_json, fits_json, images, annotations = {}, {}, [], []
    for image_id, (frame, hand_type) in enumerate(((10, "interacting"), (11, "right"))):
        world = np.zeros((42, 3))
        valid = np.zeros(42)
        fits: dict = {"right": None, "left": None}
        hands = {}
        for slot, side in enumerate(("right", "left")):
            if hand_type == "right" and side == "left":
                continue
            pose = np.concatenate([rng.normal(0, 1.0, 3), rng.normal(0, 0.2, 45)])
            shape = rng.normal(0, 0.5, 10)
            # world position near the origin, in metres (the camera looks at it from 650 mm)
            trans = np.array([-0.05 if slot == 0 else 0.05, 0.0, 0.05]) + rng.normal(0, 0.01, 3)
            out = mano.forward(slot, pose, shape, trans)
            joints_fh = out.joints[0].double().numpy() * 1000.0
            world[21 * slot:21 * slot + 21] = joints_fh[IH_FROM_FREIHAND]
            valid[21 * slot:21 * slot + 21] = 1
            fits[side] = {"pose": pose.tolist(), "shape": shape.tolist(), "trans": trans.tolist()}
            hands[slot] = {"pose": pose, "shape": shape, "trans": trans,
                           "vertices": out.vertices[0].double().numpy(), "joints_fh": joints_fh}
        valid[5] = 0  # one invalid joint: IH 5, the right index3 (FreiHAND joint 7)
        joints_json[str(frame)] = {"world_coord": world.tolist(), "joint_valid": valid.tolist(),
                                   "hand_type": hand_type, "hand_type_valid": 1}
        fits_json[str(frame)] = fits
        file_name = f"Capture3/ROM01_test/cam400262/image{frame}.jpg"
        write_image(root / "images" / "train" / file_name, 80, 124)
        images.append({"id": image_id, "file_name": file_name, "width": 80, "height": 124, "capture": 3,
                       "subject": 1, "seq_name": "ROM01_test", "camera": "400262", "frame_idx": frame})
        annotations.append({"id": 100 + image_id, "image_id": image_id, "bbox": [10, 20, 50, 60],
                            "joint_valid": [[v] for v in valid.tolist()], "hand_type": hand_type,
                            "hand_type_valid": 1})
        truth["frames"][frame] = {"world": world, "valid": valid, "hands": hands, "hand_type": hand_type}
    folder = root / "annotations" / "train"
    folder.mkdir(parents=True)
    dump = {
        "data": {"images": images, "annotations": annotations},
        "camera": {"3": {key: {"400262": np.asarray(value).tolist()} for key, value in cam.items()}},
        "joint_3d": {"3": joints_json},
        "MANO_NeuralAnnot": {"3": fits_json},
    }
    for kind, value in dump.items():
        (folder / f"InterHand2.6M_train_{kind}.json").write_text(json.dumps(value))
    return truth


@pytest.fixture()
def tiny_freihand(tmp_path, mano, mano_dir) -> dict:
    """A hand-written FreiHAND: 3 training samples x 4 versions, 2 evaluation samples (no
    evaluation_mano.json). Returns the root and the ground truth."""
    root = tmp_path / "fh"
    rng = np.random.default_rng(9)
    truth: dict = {"root": root, "trans": [], "mano_dir": mano_dir}
    for split, count in (("training", 3), ("evaluation", 2)):
        tables: dict = {"K": [], "xyz": [], "mano": []}
        for idx in range(count):
            pose = np.concatenate([rng.normal(0, 1.0, 3), rng.normal(0, 0.2, 45)])
            shape = rng.normal(0, 0.5, 10)
            trans = np.array([0.0, 0.0, 0.6]) + rng.normal(0, 0.02, 3)
            joints = mano.forward(0, pose, shape, trans).joints[0].double().numpy()
            K = np.array([[480.0 + idx, 0.0, 112.0], [0.0, 481.0, 110.0], [0.0, 0.0, 1.0]])
            tables["K"].append(K.tolist())
            tables["xyz"].append(joints.tolist())
            uv = K @ joints[9] / joints[9, 2]
            tables["mano"].append([[*pose.tolist(), *shape.tolist(), *uv[:2].tolist(), 0.03]])
            if split == "training":
                truth["trans"].append(trans)
            for version in range(4 if split == "training" else 1):
                write_image(root / split / "rgb" / f"{idx + count * version:08d}.jpg", 224, 224, 40 * version + 20)
        for kind, values in tables.items():
            if split == "evaluation" and kind == "mano":
                continue
            (root / f"{split}_{kind}.json").write_text(json.dumps(values))
    return truth


# ----------------------------------------------------------------------------------------
# Checks shared by the test modules (pytest's importlib mode: reached through a fixture)
# ----------------------------------------------------------------------------------------
FLOAT_KEYS = {"image": (3, 64, 64), "mano_pose": (2, 48), "mano_shape": (2, 10), "mano_trans": (2, 3),
              "joints_3d": (2, 21, 3), "joints_2d": (2, 21, 2), "center": (2, 2), "camera": (3, 3)}
BOOL_KEYS = {"hand_valid": (2,), "mano_valid": (2,), "joints_3d_valid": (2, 21), "joints_2d_valid": (2, 21),
             "interacting": ()}


def check_contract(sample: dict, size: int) -> None:
    assert tuple(sample) == SAMPLE_KEYS
    for key, shape in FLOAT_KEYS.items():
        expected = (3, size, size) if key == "image" else shape
        assert sample[key].dtype == torch.float32 and tuple(sample[key].shape) == expected, key
    for key, shape in BOOL_KEYS.items():
        assert sample[key].dtype == torch.bool and tuple(sample[key].shape) == shape, key
    assert -1.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
    json.dumps(sample["meta"])
    assert set(sample["meta"]) == {"path", "dataset", "sample_id", "to_input", "hand_type"}


def projection_error(sample: dict, size: int) -> float:
    """Largest distance (input pixels) between ``camera`` applied to joints_3d and joints_2d."""
    worst = 0.0
    for slot in range(2):
        valid = sample["joints_2d_valid"][slot].numpy()
        if valid.any():
            pixels, _ = project(sample["joints_3d"][slot].double().numpy(), sample["camera"].double().numpy())
            target = (sample["joints_2d"][slot].double().numpy() + 1.0) / 2.0 * size
            worst = max(worst, float(np.abs(pixels[valid] - target[valid]).max()))
    return worst



@pytest.fixture()
def checks() -> SimpleNamespace:
    """``checks.contract(sample, size)`` and ``checks.projection_error(sample, size)``."""
    return SimpleNamespace(contract=check_contract, projection_error=projection_error)
