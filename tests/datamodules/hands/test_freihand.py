"""FreiHAND reader: versions and image ids, MANO translation recovery, the sample contract,
full-image input camera, augmentation geometry and DataErrors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from polyvision.datamodules.hands.freihand import FreiHANDDataset
from polyvision.errors import ConfigError, DataError


def test_versions_image_ids_and_mano_translation(tiny_freihand, checks):
    truth = tiny_freihand
    ds = FreiHANDDataset(truth["root"], "training", input_size=64, mano_dir=truth["mano_dir"])
    assert len(ds) == 12 and ds.num_unique == 3
    assert ds.record(5).image_path.endswith("training/rgb/00000005.jpg")  # idx 2, version 1 (hom)
    assert ds.record(5).sample_id == "training/00000005"
    only = FreiHANDDataset(truth["root"], "training", versions=("sample",), mano_dir=truth["mano_dir"])
    assert len(only) == 3 and only.record(1).image_path.endswith("00000007.jpg")  # 1 + 3 * 2
    for idx in range(3):
        record = ds.record(idx)
        assert np.allclose(record.mano_trans[0], truth["trans"][idx], atol=1e-6)
        assert record.mano_valid.tolist() == [True, False]
        sample = ds[idx]
        checks.contract(sample, 64)
        assert sample["hand_valid"].tolist() == [True, False] and not bool(sample["interacting"])
        assert sample["meta"]["hand_type"] == "right" and sample["meta"]["dataset"] == "freihand"
        joints = ds.mano.forward(0, sample["mano_pose"][0].numpy(), sample["mano_shape"][0].numpy(),
                                 sample["mano_trans"][0].numpy()).joints[0]
        assert torch.allclose(joints, sample["joints_3d"][0], atol=1e-5)
        # the whole 224 image scaled to 64: the camera is K scaled by 64 / 224
        K = np.array(json.loads((truth["root"] / "training_K.json").read_text())[idx])
        assert np.allclose(sample["camera"].numpy(), np.diag([64 / 224, 64 / 224, 1]) @ K, atol=1e-4)
        assert checks.projection_error(sample, 64) < 1e-3
    evaluation = FreiHANDDataset(truth["root"], "evaluation", versions=("gs", "hom"), mano_dir=truth["mano_dir"])
    assert len(evaluation) == 2  # one version; no evaluation_mano.json: no MANO
    assert evaluation[1]["mano_valid"].tolist() == [False, False]
    assert evaluation[1]["joints_3d_valid"][0].all()


def test_bad_files_raise_data_errors(tiny_freihand):
    truth = tiny_freihand
    root, mano_dir = truth["root"], truth["mano_dir"]
    with pytest.raises(ConfigError, match="versions"):
        FreiHANDDataset(root, "training", versions=("green",), mano_dir=mano_dir)
    xyz = root / "training_xyz.json"
    values = json.loads(xyz.read_text())
    xyz.write_text(json.dumps(values[:2]))
    with pytest.raises(DataError, match="training_xyz.json: 2 entries, but training_K.json has 3"):
        FreiHANDDataset(root, "training", mano_dir=mano_dir)
    values[1] = values[1][:20]
    xyz.write_text(json.dumps(values))
    ds = FreiHANDDataset(root, "training", mano_dir=mano_dir)
    with pytest.raises(DataError, match=r"training_xyz.json: entry 1 has shape \[20, 3\], expected \[21, 3\]"):
        ds[1]
    (root / "training_K.json").unlink()
    with pytest.raises(DataError, match="training_K.json: file not found"):
        FreiHANDDataset(root, "training", mano_dir=mano_dir)


def test_synthetic_freihand_with_augmentation(synthetic_root, checks):
    ds = FreiHANDDataset(synthetic_root / "FreiHAND", "training", input_size=80, augment=True,
                         mano_dir=synthetic_root / "mano")
    assert len(ds) == 16
    rotated = 0
    for index in range(0, 16, 3):
        ds.set_sample_seed(1000 + index)
        sample = ds[index]
        checks.contract(sample, 80)
        assert checks.projection_error(sample, 80) < 0.5
        assert sample["joints_2d_valid"][0].sum() > 10
        joints = ds.mano.forward(0, sample["mano_pose"][0].numpy(), sample["mano_shape"][0].numpy(),
                                 sample["mano_trans"][0].numpy()).joints[0]
        assert torch.allclose(joints, sample["joints_3d"][0], atol=1e-5)
        rotated += abs(sample["meta"]["to_input"][1][0]) > 1e-9
    plain = FreiHANDDataset(synthetic_root / "FreiHAND", "evaluation", input_size=128, mano_dir=synthetic_root / "mano")
    sample = plain[0]
    # no augmentation, input size = image size: the input is the image (up to JPEG decoding)
    assert np.allclose(sample["meta"]["to_input"], [[1, 0, 0], [0, 1, 0]])
    assert checks.projection_error(sample, 128) < 1e-3
