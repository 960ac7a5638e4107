"""InterHand2.6M reader: joint order, world -> camera conversion (joints and MANO), subsets,
release folders, the sample contract, augmentation geometry, determinism and DataErrors."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from polyvision.datamodules.base import SkippingDataset
from polyvision.datamodules.hands.annotations import (
    FREIHAND_FROM_IH,
    IH_FROM_FREIHAND,
    freihand_to_ih,
    ih_to_freihand,
)
from polyvision.datamodules.hands.augment import HandAugment
from polyvision.datamodules.hands.interhand import InterHandDataset
from polyvision.errors import DataError


def test_joint_orders_are_inverse_and_match_the_layouts():
    assert sorted(IH_FROM_FREIHAND) == list(range(21))
    assert [IH_FROM_FREIHAND[j] for j in FREIHAND_FROM_IH] == list(range(21))
    ih = np.arange(42)
    fh = ih_to_freihand(ih)
    assert fh[0, 0] == 20 and fh[1, 0] == 41  # wrists
    assert list(fh[0, 1:5]) == [3, 2, 1, 0]  # thumb base .. tip
    assert list(fh[0, 17:21]) == [19, 18, 17, 16]  # pinky base .. tip
    assert list(fh[1, 5:9]) == [28, 27, 26, 25]  # left index base .. tip
    assert np.array_equal(freihand_to_ih(fh), ih)


def test_world_to_camera_joints_and_mano(tiny_interhand, checks):
    truth = tiny_interhand
    ds = InterHandDataset(truth["root"], "train", input_size=64, augment=False, mano_dir=truth["mano_dir"])
    assert len(ds) == 2
    cam = truth["camera"]
    rotation, campos = cam["camrot"], cam["campos"]
    for index, frame in enumerate((10, 11)):
        record = ds.record(index)
        expected = (truth["frames"][frame]["world"] - campos) @ rotation.T / 1000.0
        assert np.allclose(record.joints_3d, ih_to_freihand(expected))
        fx, fy = cam["focal"]
        assert np.allclose(record.camera, [[fx, 0, cam["princpt"][0]], [0, fy, cam["princpt"][1]], [0, 0, 1]])
        for slot, hand in truth["frames"][frame]["hands"].items():
            # MANO with the camera-space parameters is the world mesh seen from the camera
            out = ds.mano.forward(slot, record.mano_pose[slot], record.mano_shape[slot], record.mano_trans[slot])
            seen = (hand["vertices"] - campos / 1000.0) @ rotation.T
            assert np.abs(out.vertices[0].double().numpy() - seen).max() < 1e-5
            assert np.allclose(record.mano_pose[slot, 3:], hand["pose"][3:])  # fingers unchanged
        sample = ds[index]
        checks.contract(sample, 64)
        assert checks.projection_error(sample, 64) < 1e-3
    first, second = ds[0], ds[1]
    assert first["hand_valid"].tolist() == [True, True] and bool(first["interacting"])
    assert second["hand_valid"].tolist() == [True, False] and not bool(second["interacting"])
    assert second["mano_valid"].tolist() == [True, False]
    assert not first["joints_3d_valid"][0, 7] and first["joints_3d_valid"][0, 8]  # IH 5 = FreiHAND 7
    assert torch.all(second["joints_3d"][1] == 0) and torch.all(second["mano_pose"][1] == 0)
    assert first["meta"]["sample_id"] == "Capture3/ROM01_test/cam400262/image10"
    assert first["meta"]["hand_type"] == "interacting"


def test_subsets(tiny_interhand):
    truth = tiny_interhand
    for subset, expected in (("all", ["interacting", "right"]), ("interacting", ["interacting"]), ("single", ["right"])):
        ds = InterHandDataset(truth["root"], "train", subset=subset, input_size=32, mano_dir=truth["mano_dir"])
        assert [item[4] for item in ds.items] == expected, subset
    # an interacting frame without both NeuralAnnot fits leaves the interacting subset
    path = truth["root"] / "annotations/train/InterHand2.6M_train_MANO_NeuralAnnot.json"
    fits = json.loads(path.read_text())
    fits["3"]["10"]["left"] = None
    path.write_text(json.dumps(fits))
    assert len(InterHandDataset(truth["root"], "train", subset="interacting", mano_dir=truth["mano_dir"])) == 0


def test_release_folder_is_found(tiny_interhand, tmp_path):
    truth = tiny_interhand
    parent = tmp_path / "parent"
    parent.mkdir()
    shutil.copytree(truth["root"], parent / "InterHand2.6M_5fps_batch1")
    assert len(InterHandDataset(parent, "train", mano_dir=truth["mano_dir"])) == 2
    shutil.copytree(truth["root"], parent / "InterHand2.6M_30fps_batch1")
    with pytest.raises(DataError, match="frame_rate_folder"):
        InterHandDataset(parent, "train", mano_dir=truth["mano_dir"])
    ds = InterHandDataset(parent, "train", mano_dir=truth["mano_dir"], frame_rate_folder="InterHand2.6M_30fps_batch1")
    assert ds.root.name == "InterHand2.6M_30fps_batch1"


def _edit(path, change):
    value = json.loads(path.read_text())
    change(value)
    path.write_text(json.dumps(value))


def test_bad_annotations_raise_data_errors_naming_the_file(tiny_interhand):
    truth = tiny_interhand
    folder = truth["root"] / "annotations" / "train"
    mano_dir = truth["mano_dir"]

    camera = folder / "InterHand2.6M_train_camera.json"
    original = camera.read_text()
    _edit(camera, lambda v: v["3"]["focal"].pop("400262"))
    ds = InterHandDataset(truth["root"], "train", mano_dir=mano_dir)
    with pytest.raises(DataError, match="_camera.json: capture 3 has no camera 400262") as error:
        ds[0]
    assert str(error.value).startswith(str(camera)) and "\n" not in str(error.value)
    with pytest.warns(UserWarning, match="skipping bad sample: .*_camera.json"):
        assert SkippingDataset(ds, skip_bad_samples=True)[0] is None
    camera.write_text(original)

    joints = folder / "InterHand2.6M_train_joint_3d.json"
    _edit(joints, lambda v: v["3"]["10"].update(world_coord=[[0.0, 0.0, 0.0]] * 41))
    with pytest.raises(DataError, match=r"_joint_3d.json: capture 3 frame 10 world_coord has shape \[41, 3\]"):
        InterHandDataset(truth["root"], "train", mano_dir=mano_dir).record(0)
    _edit(joints, lambda v: v["3"].pop("11"))
    with pytest.raises(DataError, match="_joint_3d.json: capture 3 has no frame 11"):
        InterHandDataset(truth["root"], "train", mano_dir=mano_dir).record(1)

    data = folder / "InterHand2.6M_train_data.json"
    data.write_text("{not json")
    with pytest.raises(DataError, match="_data.json: not valid JSON"):
        InterHandDataset(truth["root"], "train", mano_dir=mano_dir)
    data.unlink()
    with pytest.raises(DataError, match="_data.json: file not found"):
        InterHandDataset(truth["root"], "train", mano_dir=mano_dir)


def test_unreadable_image_is_a_data_error(tiny_interhand):
    truth = tiny_interhand
    ds = InterHandDataset(truth["root"], "train", mano_dir=truth["mano_dir"])
    image = truth["root"] / "images/train/Capture3/ROM01_test/cam400262/image11.jpg"
    image.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="image11.jpg: cannot decode image"):
        ds[1]
    image.unlink()
    with pytest.raises(DataError, match="image11.jpg: image not found"):
        ds[1]


def test_synthetic_interhand_samples(synthetic_root, checks):
    ds = InterHandDataset(synthetic_root / "InterHand2.6M", "train", input_size=64, mano_dir=synthetic_root / "mano")
    assert len(ds) == 12
    types = set()
    for index in range(len(ds)):
        sample = ds[index]
        checks.contract(sample, 64)
        assert checks.projection_error(sample, 64) < 1e-3
        types.add(sample["meta"]["hand_type"])
        hand_type = sample["meta"]["hand_type"]
        expected = {"interacting": [True, True], "right": [True, False], "left": [False, True]}[hand_type]
        assert sample["hand_valid"].tolist() == expected == sample["mano_valid"].tolist()
        assert bool(sample["interacting"]) == (hand_type == "interacting")
        for slot in np.flatnonzero(expected):  # exact annotations: MANO joints are the 3D joints
            joints = ds.mano.forward(slot, sample["mano_pose"][slot].numpy(), sample["mano_shape"][slot].numpy(),
                                     sample["mano_trans"][slot].numpy()).joints[0]
            assert torch.allclose(joints, sample["joints_3d"][slot], atol=1e-5)
            box = sample["joints_2d"][slot][sample["joints_2d_valid"][slot]]
            assert torch.allclose(sample["center"][slot], (box.min(0).values + box.max(0).values) / 2)
    assert types == {"interacting", "right", "left"}


def test_augmentation_keeps_projection_and_mano_consistent(synthetic_root, checks):
    augmenter = HandAugment(rotation_prob=1.0)
    ds = InterHandDataset(synthetic_root / "InterHand2.6M", "train", input_size=96, augment=True,
                          mano_dir=synthetic_root / "mano", augmenter=augmenter)
    plain = InterHandDataset(synthetic_root / "InterHand2.6M", "train", input_size=96, augment=False,
                             mano_dir=synthetic_root / "mano")
    for index in range(4):
        sample = ds[index]
        assert checks.projection_error(sample, 96) < 0.5
        reference = plain[index]
        to_input = np.array(sample["meta"]["to_input"])
        angle = np.arctan2(to_input[1, 0], to_input[0, 0])
        assert abs(angle) > 1e-6  # rotated (rotation_prob 1)
        c, s = np.cos(angle), np.sin(angle)
        roll = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float32)
        valid = reference["joints_3d_valid"]
        assert torch.allclose(sample["joints_3d"][valid], reference["joints_3d"][valid] @ roll.T, atol=1e-5)
        for slot in np.flatnonzero(sample["mano_valid"].numpy()):
            joints = ds.mano.forward(slot, sample["mano_pose"][slot].numpy(), sample["mano_shape"][slot].numpy(),
                                     sample["mano_trans"][slot].numpy()).joints[0]
            assert torch.allclose(joints, sample["joints_3d"][slot], atol=1e-5)


def test_sample_randomness_comes_from_the_seed(synthetic_root):
    ds = InterHandDataset(synthetic_root / "InterHand2.6M", "train", input_size=48, augment=True,
                          mano_dir=synthetic_root / "mano")

    def seeded(seed, index=2):
        ds.set_sample_seed(seed)
        return ds[index]

    first, again, other = seeded(7), seeded(7), seeded(8)
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["camera"], again["camera"])
    assert not torch.equal(first["image"], other["image"])
    assert torch.equal(ds[2]["image"], ds[2]["image"])  # no seed given: seeded by the index
    assert torch.equal(ds[2]["image"], seeded(2)["image"])
