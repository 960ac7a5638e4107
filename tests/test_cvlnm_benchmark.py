"""``polyvision benchmark train|test`` on CVLNM configs without their data: generated caption
batches of the config's shape (``--data auto`` picks them for a paper config with no root),
training captions/s (cross-entropy and, with ``--epoch``, self-critical), test images/s with
the head's beam. Shrunk by config overrides so each run takes seconds."""
from __future__ import annotations

import json

import pytest
import torch
from polyvision.models.factory import CONFIG_DIR
from polyvision.scripts import benchmark
from polyvision.scripts.benchmark_model import (
    synthetic_caption_batch,
    synthetic_overrides,
    wants_synthetic,
)

CVLNM = CONFIG_DIR / "cvlnm"
SMALL = ["--data.init_args.batch_size", "3", "--data.init_args.max_regions", "12",
         "--model.init_args.backbone",
         '{"class_path": "polyvision.models.cvlnm.RegionFeatures", "init_args": {"channels": 2048, "projection": 16}}',
         *[arg for key, value in dict(vocabulary_size=40, rnn_size=24, word_size=16, attention_hidden=16,
                                      memory_size=8, controller_heads=2, verb_heads=2, verb_feedforward=16).items()
           for arg in (f"--model.init_args.heads.captions.init_args.{key}", str(value))]]


# Decoders run many small operations: one thread is faster than two on shared cores.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_generated_caption_batch_has_the_datamodules_shapes():
    batch = synthetic_caption_batch(4, vocabulary_size=30, captions_per_image=5, feature_dim=64, seed=2)
    regions, mask = batch["regions"], batch["region_mask"]
    assert regions.shape[0] == 4 and regions.shape[2] == 64 and mask.shape == regions.shape[:2]
    assert 10 <= int(mask.sum(1).min()) and int(mask.sum(1).max()) == regions.shape[1] <= 100
    assert float(regions[~mask].abs().sum()) == 0  # zero-padded
    captions, tags = batch["captions"], batch["tags"]
    assert captions.shape == tags.shape == (4, 5, 16) and 0 <= int(captions.min()) and int(captions.max()) <= 30
    lengths = (captions > 0).sum(-1)
    assert 8 <= int(lengths.min()) and int(lengths.max()) <= 13
    assert bool(((tags >= 0) == (captions > 0)).all())
    assert [len(m["references"]) for m in batch["meta"]] == [5] * 4
    grid = synthetic_caption_batch(2, 30, image_size=[32, 48])
    assert grid["image"].shape == (2, 3, 32, 48) and grid["image"].dtype == torch.uint8 and "regions" not in grid
    assert torch.equal(synthetic_caption_batch(2, 9, seed=3)["captions"], synthetic_caption_batch(2, 9, seed=3)["captions"])


def test_auto_uses_generated_batches_for_paper_caption_configs_without_data():
    assert wants_synthetic(str(CVLNM / "coco.yaml"), []) and wants_synthetic(str(CVLNM / "coco_swin_t.yaml"), [])
    assert not wants_synthetic(str(CVLNM / "coco.yaml"), ["--data.init_args.root", "/data/coco"])
    assert not wants_synthetic(str(CVLNM / "synthetic.yaml"), [])
    assert synthetic_overrides(str(CVLNM / "coco.yaml"), []) == [
        "--data.init_args.dataset", "synthetic_coco", "--data.init_args.root", "null"]


@pytest.mark.parametrize("mode, epoch", [("train", None), ("train", 37), ("test", None)])
def test_benchmark_cvlnm_paper_config_on_generated_batches(tmp_path, mode, epoch):
    out = tmp_path / "bench.json"
    argv = [mode, "--config", str(CVLNM / "coco.yaml"), "--steps", "2", "--warmup", "0", "--device", "cpu",
            "--json", str(out), *SMALL]
    if epoch is not None:
        argv += ["--epoch", str(epoch)]
    assert benchmark.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["data"] == "synthetic" and report["mode"] == mode and report["epoch"] == epoch
    model = report["results"]["model"]
    assert model["samples_per_step"] == 3 and model["samples_per_s"] > 0 and model["peak_memory_gb"] > 0
    if mode == "train":
        assert model["captions_per_s"] == pytest.approx(5 * model["samples_per_s"])
    else:
        assert model["beam_size"] == 5 and "captions_per_s" not in model
