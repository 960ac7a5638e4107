"""Synthetic InterHand2.6M and FreiHAND writers: the real layouts and JSON formats, exact
annotations, determinism, and nothing half-written."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from polyvision.datamodules.hands import synthetic
from polyvision.datamodules.hands.annotations import FREIHAND_FROM_IH
from polyvision.errors import DataError


def test_interhand_layout_and_exact_annotations(synthetic_root, mano):
    root = synthetic_root / "InterHand2.6M"
    for split, count in (("train", 12), ("val", 4), ("test", 4)):
        folder = root / "annotations" / split
        data = json.loads((folder / f"InterHand2.6M_{split}_data.json").read_text())
        assert len(data["images"]) == len(data["annotations"]) == count
        image = data["images"][0]
        assert set(image) == {"id", "file_name", "width", "height", "capture", "subject", "seq_name", "camera",
                              "frame_idx"}
        assert set(data["annotations"][0]) >= {"id", "image_id", "bbox", "joint_valid", "hand_type", "hand_type_valid"}
        decoded = cv2.imread(str(root / "images" / split / image["file_name"]))
        assert decoded.shape == (image["height"], image["width"], 3) == (128, 84, 3)
    cameras = json.loads((root / "annotations/train/InterHand2.6M_train_camera.json").read_text())
    assert set(cameras["0"]) == {"campos", "camrot", "focal", "princpt"} and len(cameras["0"]["camrot"]) == 4
    joints = json.loads((root / "annotations/train/InterHand2.6M_train_joint_3d.json").read_text())["0"]
    fits = json.loads((root / "annotations/train/InterHand2.6M_train_MANO_NeuralAnnot.json").read_text())["0"]
    kinds = set()
    for frame, entry in joints.items():
        kinds.add(entry["hand_type"])
        world = np.array(entry["world_coord"])
        assert world.shape == (42, 3)
        for slot, side in enumerate(("right", "left")):
            fit = fits[frame][side]
            assert (fit is None) == (entry["hand_type"] not in ("interacting", side))
            if fit is not None:  # world_coord (mm) is the MANO fit's joints (m), InterHand order
                out = mano.forward(slot, np.array(fit["pose"]), np.array(fit["shape"]), np.array(fit["trans"]))
                expected = out.joints[0].double().numpy() * 1000.0
                assert np.abs(world[21 * slot:21 * slot + 21][FREIHAND_FROM_IH] - expected).max() < 1e-2
    assert kinds == {"interacting", "right", "left"}


def test_freihand_layout_and_formats(synthetic_root, mano):
    root = synthetic_root / "FreiHAND"
    assert len(list((root / "training" / "rgb").glob("*.jpg"))) == 16
    assert len(list((root / "training" / "mask").glob("*.jpg"))) == 4
    assert len(list((root / "evaluation" / "rgb").glob("*.jpg"))) == 4
    K = np.array(json.loads((root / "training_K.json").read_text()))
    xyz = np.array(json.loads((root / "training_xyz.json").read_text()))
    theta = np.array(json.loads((root / "training_mano.json").read_text()))
    verts = np.array(json.loads((root / "training_verts.json").read_text()))
    scale = np.array(json.loads((root / "training_scale.json").read_text()))
    assert K.shape == (4, 3, 3) and xyz.shape == (4, 21, 3) and theta.shape == (4, 1, 61) and verts.shape == (4, 778, 3)
    for idx in range(4):
        uv = K[idx] @ xyz[idx, 9]
        assert np.allclose(theta[idx, 0, 58:60], uv[:2] / uv[2])  # uv_root
        assert np.isclose(theta[idx, 0, 60], np.linalg.norm(xyz[idx, 10] - xyz[idx, 9])) and scale[idx] == theta[idx, 0, 60]
        out = mano.forward(0, theta[idx, 0, :48], theta[idx, 0, 48:58])
        trans = xyz[idx, 9] - out.joints[0, 9].double().numpy()
        assert np.abs(out.vertices[0].double().numpy() + trans - verts[idx]).max() < 1e-5
    mask = cv2.imread(str(root / "training" / "mask" / "00000000.jpg"), cv2.IMREAD_GRAYSCALE)
    assert 0.02 < (mask > 127).mean() < 0.6


def test_writers_are_deterministic_and_marked(tmp_path, mano_dir):
    options = {"num_images_per_split": 2, "image_size": 64, "mano_dir": mano_dir, "progress": False}
    first = synthetic.write_synthetic_interhand(tmp_path / "a", seed=4, **options)
    second = synthetic.write_synthetic_interhand(tmp_path / "b", seed=4, **options)
    assert first == tmp_path / "a"
    for name in ("data", "camera", "joint_3d", "MANO_NeuralAnnot"):
        path = f"InterHand2.6M/annotations/val/InterHand2.6M_val_{name}.json"
        assert (first / path).read_bytes() == (second / path).read_bytes()
    assert synthetic.synthetic_interhand_is_complete(first, num_images_per_split=2, image_size=64, seed=4,
                                                     mano_dir=mano_dir)
    assert not synthetic.synthetic_interhand_is_complete(first, num_images_per_split=2, image_size=64, seed=5,
                                                         mano_dir=mano_dir)
    assert not (first / "mano").exists()
    foreign = tmp_path / "c" / "FreiHAND"
    foreign.mkdir(parents=True)
    (foreign / "mine.txt").write_text("user data")
    with pytest.raises(DataError, match="not a synthetic dataset written by polyvision"):
        synthetic.write_synthetic_freihand(tmp_path / "c", num_images_per_split=1, image_size=64, mano_dir=mano_dir,
                                           progress=False)
    assert set(synthetic.SYNTHETIC_WRITERS) == {"interhand", "freihand"}


def test_a_failed_write_leaves_nothing(tmp_path, mano_dir, monkeypatch):
    calls = []

    def failing_render(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("killed")
        return np.zeros((args[0], args[1], 3), np.uint8)

    monkeypatch.setattr(synthetic, "_render", failing_render)
    with pytest.raises(RuntimeError, match="killed"):
        synthetic.write_synthetic_interhand(tmp_path, num_images_per_split=4, image_size=64, mano_dir=mano_dir,
                                            progress=False)
    assert list(tmp_path.iterdir()) == []
