"""HandDataModule: synthetic modes reuse a complete dataset, batch shapes, input geometry,
seeded training samples, one-line configuration errors."""
from __future__ import annotations

import pytest
import torch
from polyvision.datamodules.hands.datamodule import HandDataModule
from polyvision.errors import ConfigError, DataError

BATCH_SHAPES = {"image": (3, 64, 64), "hand_valid": (2,), "mano_pose": (2, 48), "mano_shape": (2, 10),
                "mano_trans": (2, 3), "mano_valid": (2,), "joints_3d": (2, 21, 3), "joints_3d_valid": (2, 21),
                "joints_2d": (2, 21, 2), "joints_2d_valid": (2, 21), "center": (2, 2), "camera": (3, 3),
                "interacting": ()}


def check_batch(batch: dict, size: int) -> None:
    for key, shape in BATCH_SHAPES.items():
        assert tuple(batch[key].shape) == (size, *shape), key
    assert batch["source"] == "hands" and int(batch["num_skipped"]) == 0 and len(batch["meta"]) == size


def test_synthetic_interhand_batches_and_seeded_training(synthetic_root, synthetic_options, monkeypatch):
    marker = synthetic_root / "InterHand2.6M" / "COMPLETE"
    written = marker.stat().st_mtime_ns
    dm = HandDataModule("synthetic_interhand", root=str(synthetic_root), input_size=64, batch_size=4, num_workers=0,
                        synthetic_options=synthetic_options["interhand"])
    dm.prepare_data()  # complete with these settings: nothing is rewritten
    assert marker.stat().st_mtime_ns == written
    assert dm.mano_dir == synthetic_root / "mano"
    dm.setup("fit")
    assert dm.input_geometry() == {"hands": {"input": "image", "size": [64, 64], "pad": "white",
                                             "normalize": "minus_one_to_one"}}
    assert dm.num_train_samples == 12
    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    loader = dm.train_dataloader()
    first = next(iter(loader))
    check_batch(first, 4)
    again = next(iter(loader))
    assert torch.equal(first["image"], again["image"])  # same run seed and epoch: the same samples
    loader.sampler.set_epoch(1)
    assert not torch.equal(first["image"], next(iter(loader))["image"])
    val = next(iter(dm.val_dataloader()))
    check_batch(val, 4)
    assert [m["sample_id"] for m in val["meta"]] == [dm.datasets["val"].record(i).sample_id for i in range(4)]

    interacting = HandDataModule("synthetic_interhand", root=str(synthetic_root), input_size=64, batch_size=8,
                                 num_workers=0, subset="interacting", synthetic_options=synthetic_options["interhand"])
    interacting.setup("test")
    batch = next(iter(interacting.test_dataloader()))
    assert batch["interacting"].all() and batch["hand_valid"].all() and batch["mano_valid"].all()


def test_synthetic_freihand_batches(synthetic_root, synthetic_options):
    dm = HandDataModule("synthetic_freihand", root=str(synthetic_root), input_size=64, batch_size=4, num_workers=0,
                        synthetic_options=synthetic_options["freihand"])
    dm.prepare_data()
    with pytest.warns(UserWarning, match="validating on the evaluation split"):
        dm.setup("fit")
    assert dm.num_train_samples == 16  # 4 samples x 4 versions
    batch = next(iter(dm.train_dataloader()))
    check_batch(batch, 4)
    assert batch["hand_valid"][:, 0].all() and not batch["hand_valid"][:, 1].any()
    assert not batch["joints_3d_valid"][:, 1].any() and torch.all(batch["joints_3d"][:, 1] == 0)


def test_prepare_data_writes_the_synthetic_dataset(tmp_path, mano_dir):
    options = {"num_images_per_split": {"training": 2, "evaluation": 1}, "image_size": 64}
    dm = HandDataModule("synthetic_freihand", root=str(tmp_path), mano_dir=str(mano_dir), input_size=32,
                        batch_size=8, num_workers=0, synthetic_options=options)
    with pytest.raises(DataError, match="call prepare_data"):
        dm.setup("test")
    dm.prepare_data()
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["image"].shape == (1, 3, 32, 32)
    assert not (tmp_path / "mano").exists()  # the given MANO model was used


def test_configuration_errors(tmp_path):
    with pytest.raises(ConfigError, match="MANO_RIGHT.pkl and MANO_LEFT.pkl") as error:
        HandDataModule("interhand", root=str(tmp_path))
    assert "\n" not in str(error.value)
    with pytest.raises(DataError, match="MANO model files not found"):
        HandDataModule("freihand", root=str(tmp_path), mano_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="set root"):
        HandDataModule("freihand", mano_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="dataset must be one of"):
        HandDataModule("hands2d", root=str(tmp_path))
    with pytest.raises(ConfigError, match="subset must be one of"):
        HandDataModule("synthetic_interhand", root=str(tmp_path), subset="both")
