"""The GPU session's prepared run (``polyvision benchmark gpu``): its dry run on the CPU runs
every step of the plan at toy sizes and leaves a JSON record per step and a summary."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from polyvision.scripts.gpu_check import data_wait_fraction, plan

PROFILER_TABLE = """
|  Action  |  Mean duration (s)  |  Num calls  |  Total time (s)  |  Percentage %  |
|  [_TrainingEpochLoop].train_dataloader_next  |  0.05  |  10  |  0.5  |  5.0  |
|  run_training_batch  |  0.45  |  10  |  4.5  |  45.0  |
"""


def test_data_wait_is_read_from_the_simple_profiler():
    assert abs(data_wait_fraction(PROFILER_TABLE) - 0.1) < 1e-9
    assert data_wait_fraction("no profiler output") is None


def test_the_real_plan_covers_every_cuda_path(tmp_path):
    names = [step.name for step in plan(tmp_path, dry_run=False)]
    for expected in ("cuda_tests", "decode_torchcodec_8", "decode_nvdec_4", "train_omnifd_swin_t_bf16_compile",
                     "test_state_ped2", "train_acr_hrnet_w32", "test_cvlnm", "fit_cuda_decode"):
        assert expected in names
    fit = next(step for step in plan(tmp_path, dry_run=False) if step.name == "fit_cuda_decode")
    assert "cuda" in fit.argv and "--trainer.profiler" in fit.argv


def test_dry_run_runs_every_step_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "POLYVISION_CACHE": str(tmp_path / "cache"), "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run([sys.executable, "-m", "polyvision.cli", "benchmark", "gpu", "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, env=env)
    summary = json.loads((out / "summary.json").read_text())
    steps = {record["step"]: record for record in summary["steps"]}
    assert summary["dry_run"] is True
    assert set(steps) == {step.name for step in plan(out, dry_run=True)}
    failed = {name: json.loads((out / f"{name}.step.json").read_text())["output_tail"][-1500:]
              for name, record in steps.items() if record["returncode"] != 0}
    assert not failed, failed
    assert done.returncode == 0
    assert steps["decode_pyav_2"]["measured"]["frames"] > 0
    assert steps["train_omnifd"]["measured"]
    assert steps["fit_cuda_decode"]["data_wait_fraction"] is not None
