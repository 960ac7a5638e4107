"""``polyvision benchmark train|test`` on ACR configs without their data: generated batches of
the config's shape (``--data synthetic``, chosen automatically for a paper config with no root)."""
from __future__ import annotations

import json

import pytest
import torch

from polyvision.models.factory import CONFIG_DIR
from polyvision.scripts import benchmark
from polyvision.scripts.benchmark_model import synthetic_hand_batch, synthetic_overrides, wants_synthetic

ACR = CONFIG_DIR / "acr"


def test_generated_hand_batch_has_the_datamodules_shapes():
    batch = synthetic_hand_batch(3, 64, seed=1, part_segmentation=True)
    assert batch["image"].shape == (3, 3, 64, 64) and batch["image"].dtype == torch.float32
    assert -1 <= batch["image"].min() and batch["image"].max() <= 1
    assert batch["mano_pose"].shape == (3, 2, 48) and batch["mano_shape"].shape == (3, 2, 10)
    assert batch["joints_3d"].shape == (3, 2, 21, 3) and batch["joints_2d"].shape == (3, 2, 21, 2)
    assert batch["camera"].shape == (3, 3, 3) and batch["center"].shape == (3, 2, 2)
    assert 0.35 < float(batch["joints_3d"][..., 2].mean()) < 0.65  # about half a metre from the camera
    assert batch["joints_2d"].abs().max() <= 1  # the hands project into the image
    assert batch["hand_valid"][:, 0].all() and batch["hand_valid"][:, 1].tolist() == [True, False, True]
    assert batch["interacting"].tolist() == [True, False, True]
    labels = batch["part_segmentation"]
    assert labels.shape == (3, 32, 32) and labels.dtype == torch.long and 0 <= labels.min() and labels.max() <= 32
    assert (labels[1] > 16).sum() == 0 and (labels[0] > 16).any()  # left-hand parts only where a left hand is
    assert "part_segmentation" not in synthetic_hand_batch(1, 64)
    assert torch.equal(synthetic_hand_batch(2, 32, seed=5)["image"], synthetic_hand_batch(2, 32, seed=5)["image"])


def test_auto_uses_generated_batches_only_for_a_hand_config_without_its_data():
    assert wants_synthetic(str(ACR / "interhand.yaml"), [])
    assert wants_synthetic(str(ACR / "freihand.yaml"), ["--model.init_args.mano_dir", "generated"])
    assert not wants_synthetic(str(ACR / "interhand.yaml"), ["--data.init_args.root", "/data/ih"])
    assert not wants_synthetic(str(ACR / "interhand.yaml"), ["--data.init_args.root=/data/ih"])
    assert not wants_synthetic(str(ACR / "synthetic.yaml"), [])
    assert not wants_synthetic(str(CONFIG_DIR / "omnifd" / "synthetic.yaml"), [])
    assert synthetic_overrides(str(ACR / "freihand.yaml"), ["--x", "1"])[:4] == [
        "--x", "1", "--data.init_args.dataset", "synthetic_freihand"]


@pytest.mark.parametrize("mode", ["train", "test"])
def test_benchmark_acr_on_generated_batches(tmp_path, mode):
    out = tmp_path / "bench.json"
    code = benchmark.main([mode, "--config", str(ACR / "synthetic.yaml"), "--data", "synthetic", "--steps", "2",
                           "--warmup", "0", "--device", "cpu", "--json", str(out),
                           "--data.init_args.batch_size", "2", "--data.init_args.input_size", "64"])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["data"] == "synthetic" and report["mode"] == mode
    model = report["results"]["model"]
    assert model["samples_per_step"] == 2 and model["samples_per_s"] > 0 and model["gflops_per_step"] > 0
    assert 0 < model["step_time_min_s"] <= model["step_time_median_s"] and model["peak_memory_gb"] > 0


def test_benchmark_rejects_generated_batches_for_a_config_without_a_generator(tmp_path):
    with pytest.raises(ValueError, match="HandDataModule"):
        benchmark.main(["test", "--config", str(CONFIG_DIR / "omnifd" / "synthetic.yaml"), "--data", "synthetic",
                        "--steps", "1", "--warmup", "0", "--device", "cpu"])
