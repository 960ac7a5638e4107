"""``polyvision benchmark train|test`` on HybridNet configs: generated V2C batches of the paper's
shapes (``--data auto`` picks them for a paper config with no root, the vocabularies sized by the
benchmark and reported), training videos/s, test videos/s of the test step and of decoding alone
(``generate``), and on the pixel path, with ``--decode-videos``, decoding the synthetic V2C's mp4
files through the datamodule, alone and followed by the model step. Shrunk by config overrides
(a narrow one-layer decoder, short sentences, tiny clips) so each run takes seconds."""
from __future__ import annotations

import json

import pytest
import torch
from polyvision.models.factory import CONFIG_DIR
from polyvision.scripts import benchmark
from polyvision.scripts.benchmark_model import (
    V2C_BENCH_VOCABULARY,
    synthetic_overrides,
    synthetic_v2c_batch,
    wants_synthetic,
)

HYBRIDNET = CONFIG_DIR / "hybridnet"
HEAD = "--model.init_args.heads.v2c.init_args."
SMALL = ["--model.init_args.neck.init_args.dim", "16",
         *[arg for key, value in dict(dim=16, layers=1, heads=2, head_dim=8, inner=16).items()
           for arg in (f"{HEAD}{key}", str(value))],
         f"{HEAD}max_lengths", '{"caption": 4, "intention": 3, "effect": 3, "attribute": 2}',
         "--data.init_args.batch_size", "2"]

# Decoders run many small operations: one thread is faster than two on shared cores.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_generated_v2c_batch_has_the_datamodules_shapes():
    paper = {"appearance": (20, 2048), "motion": (10, 1024), "audio": (10, 1024)}
    batch = synthetic_v2c_batch(3, 50, 40, paper, cms_per_caption=2, seed=1)
    assert {k: tuple(batch[k].shape) for k in paper} == {"appearance": (3, 20, 2048), "motion": (3, 10, 1024),
                                                         "audio": (3, 10, 1024)}
    captions = batch["captions"]
    assert captions.shape == (3, 1, 26) and 0 <= int(captions.min()) and int(captions.max()) <= 50
    assert 8 <= int((captions > 0).sum(-1).min()) and int((captions > 0).sum(-1).max()) <= 13
    for kind in ("intention", "effect", "attribute"):
        assert batch[kind].shape == (3, 2, 24) and int(batch[kind].max()) <= 40
        assert batch[f"{kind}_mask"].shape == (3, 2) and bool(batch[f"{kind}_mask"].all())
    meta = batch["meta"]
    assert len({m["video_id"] for m in meta}) == 3
    references = meta[0]["references"]
    assert len(references["caption"]) == 1 and len(references["intention"]) == 2
    assert references["generation_effect"][1] == f"{references['caption'][0]} {references['effect'][1]}"
    clips = synthetic_v2c_batch(2, 9, 9, clip=[16, 224, 224])
    assert clips["video"].shape == (2, 3, 16, 224, 224) and clips["video"].dtype == torch.uint8
    assert "appearance" not in clips


def test_auto_uses_generated_batches_for_paper_v2c_configs_without_data():
    assert wants_synthetic(str(HYBRIDNET / "v2c.yaml"), []) and wants_synthetic(str(HYBRIDNET / "v2c_swin.yaml"), [])
    assert not wants_synthetic(str(HYBRIDNET / "v2c.yaml"), ["--data.init_args.root", "/data/v2c"])
    assert not wants_synthetic(str(HYBRIDNET / "synthetic.yaml"), [])
    assert synthetic_overrides(str(HYBRIDNET / "v2c.yaml"), []) == [
        "--data.init_args.dataset", "synthetic_v2c", "--data.init_args.root", "null"]


@pytest.mark.parametrize("mode", ["train", "test"])
def test_benchmark_hybridnet_paper_config_on_generated_batches(tmp_path, capsys, mode):
    out = tmp_path / "bench.json"
    argv = [mode, "--config", str(HYBRIDNET / "v2c.yaml"), "--steps", "2", "--warmup", "0", "--device", "cpu",
            "--json", str(out), *SMALL]
    assert benchmark.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["data"] == "synthetic" and report["mode"] == mode
    model = report["results"]["model"]
    assert model["samples_per_step"] == 2 and model["videos_per_s"] == model["samples_per_s"] > 0
    assert model["peak_memory_gb"] > 0 and model["gflops_per_step"] > 0
    assert (model["caption_vocabulary"], model["cms_vocabulary"]) == tuple(V2C_BENCH_VOCABULARY.values())
    printed = capsys.readouterr().out
    assert "vocabularies: 10000 caption and 10000 commonsense words" in printed
    if mode == "test":
        generate = report["results"]["generate"]
        assert model["beam_size"] == generate["beam_size"] == 2 and generate["videos_per_s"] > 0
    else:
        assert set(report["results"]) == {"model"}


def test_benchmark_hybridnet_sizes_given_and_pixels_with_decoding(tmp_path):
    """The pixel config through a (full-width) video Swin on tiny clips, explicit vocabulary
    sizes, and the synthetic V2C's mp4 files decoded through its datamodule."""
    out = tmp_path / "bench.json"
    argv = ["train", "--config", str(HYBRIDNET / "v2c_swin.yaml"), "--steps", "1", "--warmup", "0", "--device", "cpu",
            "--json", str(out), *SMALL, "--data.init_args.clip_len", "2", "--data.init_args.size", "32",
            f"{HEAD}vocabulary_size", "30", f"{HEAD}cms_vocabulary_size", "40", "--decode-videos", "synthetic"]
    assert benchmark.main(argv) == 0
    results = json.loads(out.read_text())["results"]
    assert (results["model"]["caption_vocabulary"], results["model"]["cms_vocabulary"]) == (30, 40)
    assert set(results) == {"model", "decode", "decode + model"}
    decode, both = results["decode"], results["decode + model"]
    assert decode["samples_per_step"] == both["samples_per_step"] == 2
    assert decode["videos_per_s"] > both["videos_per_s"] > 0
    assert both["step_time_median_s"] > decode["step_time_median_s"]
