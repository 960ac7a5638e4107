"""STATE through the `polyvision` command, as a user runs it: fit -> test (with the
test-time perturbation, under the Trainer LightningCLI builds) -> infer on a video, one-line
errors for bad data and missing weights, and learnability of the synthetic config (slow)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import assert_one_line_error, fit_then_test, run_cli
from polyvision.models.factory import CONFIG_DIR

STATE_CONFIG = CONFIG_DIR / "state" / "synthetic.yaml"
TINY_DATA = '{"num_train": 3, "num_test": 3, "num_frames": 20}'


def common_args(tmp: Path, *extra: str) -> list[str]:
    return ["--config", str(STATE_CONFIG), "--data.init_args.root", str(tmp / "data"),
            "--data.init_args.cache_dir", str(tmp / "cache"), "--data.init_args.num_workers", "0",
            "--data.init_args.progress", "false", "--trainer.default_root_dir", str(tmp / "runs"),
            "--trainer.enable_progress_bar", "false", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("state")
    args = common_args(tmp, "--data.init_args.synthetic_options", TINY_DATA, "--trainer.max_epochs", "1",
                       "--trainer.limit_train_batches", "3")
    result = run_cli("fit", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"tmp": tmp, "args": args, "checkpoint": next(tmp.rglob("last.ckpt")), "fit": result}


def test_fit_generates_the_synthetic_dataset_and_its_cube_cache(trained):
    tmp = trained["tmp"]
    assert (tmp / "data" / "UCSDped2" / "COMPLETE").is_file()
    caches = sorted(p.name.rsplit("-", 1)[0] for p in (tmp / "cache").iterdir())
    assert caches == ["ped2-train"]  # fit without validation builds the training cubes only
    output = trained["fit"].stderr + trained["fit"].stdout
    assert "foreground boxes only" in output
    assert "across ranks is zero" not in output  # no validation is STATE's protocol, not a warning


def test_test_runs_the_perturbation_and_saves_both_aurocs(trained):
    result = run_cli("test", *trained["args"], "--ckpt_path", str(trained["checkpoint"]))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(trained["checkpoint"].with_suffix(".test-metrics.json").read_text())
    for key in ("test/frame_auroc_micro", "test/frame_auroc_macro"):
        assert key in result.stdout and 0.0 <= metrics[key] <= 1.0
    # The perturbation needs gradients; these are logged only when it ran, and the descent
    # step lowers the reconstruction error of the perturbed cubes.
    assert metrics["test/sse_perturbed"] < metrics["test/sse_clean"]


def test_infer_writes_frame_scores_and_a_score_curve(trained, tmp_path):
    frames_dir = trained["tmp"] / "data" / "UCSDped2" / "Test" / "Test002"
    masks_dir = frames_dir.with_name("Test002_gt")
    video = tmp_path / "Test002.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (144, 96))
    for path in sorted(frames_dir.iterdir()):
        writer.write(cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2BGR))
    writer.release()
    labels = np.array([int(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).max() > 0) for p in sorted(masks_dir.iterdir())])
    np.save(tmp_path / "Test002.npy", labels)  # per-frame labels beside the video
    out = tmp_path / "inference"
    result = run_cli("infer", "--checkpoint", str(trained["checkpoint"]), str(video), "--output-dir", str(out),
                     "--device", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "predictions.jsonl").read_text().splitlines()[0])
    assert record["num_frames"] == 20 and record["anomalous_frames"] == int(labels.sum())
    assert 0.0 <= record["frame_auroc"] <= 1.0
    assert Path(record["scores_png"]).is_file() and Path(record["scores_png"]).stat().st_size > 1000
    scores = json.loads(Path(record["scores_json"]).read_text())
    assert len(scores["frame_scores"]) == 20 and scores["ground_truth"] == labels.tolist()


def test_bad_data_and_missing_weights_are_one_line_errors(tmp_path):
    missing = run_cli("fit", *common_args(tmp_path, "--data.init_args.synthetic", "false",
                                          "--data.init_args.root", str(tmp_path / "nowhere")))
    assert_one_line_error(missing, "nowhere: dataset root not found")
    weights = run_cli("fit", *common_args(tmp_path, "--data.init_args.synthetic_options", TINY_DATA,
                                          "--data.init_args.pipeline", '{"patch_size": 16, "flow_size": null, '
                                          f'"detector_weights": "{tmp_path / "coco.pth"}"}}'))
    assert_one_line_error(weights, "coco.pth: detector weights file not found")


@pytest.mark.slow
def test_synthetic_state_config_learns_frame_anomalies(tmp_path):
    """The synthetic (Ped2-layout) config as shipped, on 2 CPU cores: frame AUROC micro >= 0.85."""
    _, _, metrics = fit_then_test(tmp_path, *common_args(tmp_path), timeout=1800)
    print(json.dumps(metrics, indent=1))
    assert metrics["test/frame_auroc_micro"] >= 0.85
    assert metrics["test/frame_auroc_macro"] >= 0.85
