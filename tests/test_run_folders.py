"""Run folders, checkpoints and outputs of the `polyvision` command: the checkpoint decides the
model of validate/test/predict, files that are no checkpoint are one-line errors, ``--ckpt_path
last`` resumes in the run's own folder, runs never share a folder or overwrite each other's
metrics or predictions, config errors name the file and the reason, and the output is quiet."""
from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch

from helpers import SYNTHETIC_CONFIG, assert_one_line_error, run_cli, tiny_fit_args
from polyvision.models.factory import CONFIG_DIR

STATE_CONFIG = CONFIG_DIR / "state" / "synthetic.yaml"
RUN_NAME = "omnifd-synthetic_ffpp"  # <config folder>-<config name>


def fast_args(data: Path, root: Path) -> list[str]:
    return [*tiny_fit_args(data, root), "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "0",
            "--trainer.limit_test_batches", "1"]


@pytest.fixture(scope="module")
def run(tiny_ffpp, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("runs")
    result = run_cli("fit", *fast_args(tiny_ffpp, root), "--trainer.enable_progress_bar", "true")
    assert result.returncode == 0, result.stderr[-3000:]
    return {"root": root, "data": tiny_ffpp, "result": result,
            "checkpoint": root / RUN_NAME / "version_0" / "checkpoints" / "last.ckpt"}


def versions(root: Path) -> list[str]:
    return sorted(p.name for p in (root / RUN_NAME).iterdir() if p.name.startswith("version_"))


def test_fit_keeps_logs_and_checkpoints_in_its_own_run_folder(run):
    folder = run["root"] / RUN_NAME / "version_0"
    assert run["checkpoint"].is_file() and (folder / "config.yaml").is_file()
    assert (folder / "csv").is_dir() and list(folder.glob("events.out.tfevents.*"))
    output = run["result"].stdout + run["result"].stderr
    assert "v_num" not in output and "FLOPs" not in output  # FLOPs are the benchmark's, not a 0 here
    assert "parameters" in output
    assert "--ckpt_path last" in run["result"].stdout


def test_run_folders_are_claimed_atomically(tmp_path):
    from polyvision.scripts.lightning_cli import claim_run_dir

    (tmp_path / "version_0").mkdir()  # an existing run
    claimed: list[Path] = []
    start = threading.Barrier(8)

    def claim():
        start.wait()
        claimed.append(claim_run_dir(tmp_path))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(p.name for p in claimed) == sorted(f"version_{n}" for n in range(1, 9))


def test_checkpoint_of_another_model_is_refused_before_any_data(run, tmp_path):
    data = tmp_path / "state-data"
    result = run_cli("test", "--config", str(STATE_CONFIG), "--ckpt_path", str(run["checkpoint"]),
                     "--data.init_args.root", str(data), "--data.init_args.cache_dir", str(tmp_path / "cache"),
                     "--trainer.default_root_dir", str(tmp_path / "runs"))
    assert_one_line_error(result, str(run["checkpoint"]), "OmniFD", "polyvision.models.state.STATE")
    assert not data.exists() and not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()
    assert not list(run["checkpoint"].parent.glob("*.test-metrics*.json"))


def test_checkpoint_with_other_heads_is_refused(run, tmp_path):
    result = run_cli("validate", "--config", str(SYNTHETIC_CONFIG), "--ckpt_path", str(run["checkpoint"]),
                     "--trainer.default_root_dir", str(tmp_path / "runs"))
    assert_one_line_error(result, str(run["checkpoint"]), "heads", "'spatial'", "'temporal'")


def test_the_checkpoint_settings_win_when_they_agree(run, tmp_path):
    # A config whose neck is smaller than the checkpoint's: the model is built as the checkpoint says.
    result = run_cli("predict", *fast_args(run["data"], tmp_path / "runs"), "--ckpt_path", str(run["checkpoint"]),
                     "--model.init_args.neck.init_args.num_latents", "4", "--trainer.limit_predict_batches", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "runs").exists()  # predict leaves no run folder


@pytest.mark.parametrize("command,content", [("fit", b"\x00\x13garbage" * 100), ("test", b"\x00\x13garbage" * 100),
                                             ("validate", b"not a checkpoint\n"), ("predict", b"not a checkpoint\n")],
                         ids=["fit-random-bytes", "test-random-bytes", "validate-text", "predict-text"])
def test_a_file_that_is_no_checkpoint_is_one_line(command, content, tmp_path):
    bogus = tmp_path / "model.ckpt"
    bogus.write_bytes(content)
    result = run_cli(command, "--config", str(STATE_CONFIG), "--ckpt_path", str(bogus),
                     "--data.init_args.root", str(tmp_path / "data"), "--trainer.default_root_dir", str(tmp_path / "runs"))
    assert_one_line_error(result, f"{bogus}: ")  # read_checkpoint's words: why it is no checkpoint
    assert "weights_only" not in result.stderr and not (tmp_path / "data").exists()


def test_ckpt_path_last_resumes_in_the_same_run_folder(run, tmp_path):
    root = tmp_path / "runs"
    assert run_cli("fit", *fast_args(run["data"], root)).returncode == 0
    last = root / RUN_NAME / "version_0" / "checkpoints" / "last.ckpt"
    before = torch.load(last, weights_only=True)["global_step"]
    result = run_cli("fit", *fast_args(run["data"], root), "--trainer.max_epochs", "2", "--ckpt_path", "last")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming from {last}" in result.stdout
    assert versions(root) == ["version_0"]  # the same run folder, no new version
    assert sorted(p.name for p in last.parent.iterdir() if p.name.startswith("last")) == ["last.ckpt"]
    assert torch.load(last, weights_only=True)["global_step"] > before
    assert "dirpath has changed" not in result.stderr + result.stdout


def test_ckpt_path_last_without_runs_is_one_line(tmp_path):
    result = run_cli("test", "--config", str(STATE_CONFIG), "--ckpt_path", "last",
                     "--trainer.default_root_dir", str(tmp_path / "runs"))
    assert_one_line_error(result, "--ckpt_path last", "no last.ckpt", str(tmp_path / "runs" / "state-synthetic"))


def test_test_is_quiet_leaves_no_folder_and_never_overwrites_metrics(run, tmp_path):
    checkpoint = tmp_path / "copy" / "last.ckpt"
    checkpoint.parent.mkdir()
    shutil.copy(run["checkpoint"], checkpoint)
    args = [*fast_args(run["data"], run["root"]), "--ckpt_path", str(checkpoint)]
    before = versions(run["root"])
    first, second = run_cli("test", *args), run_cli("test", *args)
    for result in (first, second):
        assert result.returncode == 0, result.stderr[-3000:]
        output = result.stdout + result.stderr
        assert result.stdout.count("test metrics") == 1 and "Test metric" not in output  # ours, not Lightning's
        assert "dirpath has changed" not in output and "v_num" not in output
    assert versions(run["root"]) == before  # test creates no version folder
    assert f"metrics: {checkpoint.with_suffix('.test-metrics.json')}" in first.stdout
    assert f"metrics: {checkpoint.parent / 'last.test-metrics-2.json'}" in second.stdout
    assert "test/image/auc" in json.loads((checkpoint.parent / "last.test-metrics-2.json").read_text())


def test_infer_never_overwrites_predictions(run, tmp_path):
    image = sorted((run["data"] / "FaceForensics++" / "manipulated_sequences").rglob("frames/*/000.png"))[0]
    out = tmp_path / "inference"
    out.mkdir()
    (out / "predictions.jsonl").write_text("earlier\n")
    (out / "000.overlay.png").write_bytes(b"an earlier run's picture")
    result = run_cli("infer", "--checkpoint", str(run["checkpoint"]), str(image), "--output-dir", str(out),
                     "--device", "cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "predictions.jsonl").read_text() == "earlier\n"
    record = json.loads((out / "predictions-2.jsonl").read_text())
    assert record["path"] == str(image)
    assert str(out / "predictions-2.jsonl") in result.stderr.splitlines()[-1]
    assert (out / "000.overlay.png").read_bytes() == b"an earlier run's picture"
    assert record["spatial"]["overlay_png"] == str(out / "000-2.overlay.png")
    assert Path(record["spatial"]["mask_png"]).is_file()


def test_broken_yaml_names_the_file_line_and_reason(tmp_path):
    config = tmp_path / "x.yaml"
    config.write_text("model:\n  class_path: a\n  init_args: {a: [1, 2}\n")
    result = run_cli("test", "--config", str(config))
    assert_one_line_error(result, f"{config}: invalid YAML at line 3, column", "expected")
    assert "config: config:" not in result.stderr and "unicode string" not in result.stderr


def test_help_and_argument_errors_answer_fast(tmp_path):
    for args, code in ((["--help"], 0), (["fit", "--nonsense", "1"], 1), (["infer"], 2), (["infer", "--help"], 0),
                       (["test", "--config", str(tmp_path / "missing.yaml")], 1)):
        started = time.perf_counter()
        result = run_cli(*args)
        elapsed = time.perf_counter() - started
        assert result.returncode == code, (args, result.stderr[-2000:])
        assert elapsed < 2.0, (args, elapsed)
    assert_one_line_error(run_cli("fit", "--nonsense", "1"), "--nonsense")
    assert_one_line_error(run_cli("test", "--config", str(tmp_path / "missing.yaml")), "missing.yaml: config file not found")
