"""DDP on CPU: two gloo processes train, validate and test through the CLI."""
from __future__ import annotations

import json

from helpers import run_cli, tiny_fit_args


def test_fit_and_test_with_two_cpu_processes(tiny_ffpp, tmp_path):
    ddp = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    result = run_cli("fit", *tiny_fit_args(tiny_ffpp, tmp_path), *ddp)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr + result.stdout
    checkpoint = next(tmp_path.rglob("last.ckpt"))
    result = run_cli("test", *tiny_fit_args(tiny_ffpp, tmp_path), *ddp, "--ckpt_path", str(checkpoint))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(checkpoint.with_suffix(".test-metrics.json").read_text())
    assert 0.0 <= metrics["test/image/auc"] <= 1.0 and 0.0 <= metrics["test/spatial/soft_iou"] <= 1.0
