"""DDP on CPU: two gloo processes train, validate and test through the CLI."""
from __future__ import annotations

from helpers import fit_then_test, tiny_fit_args


def test_fit_and_test_with_two_cpu_processes(tiny_ffpp, tmp_path):
    ddp = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    fit, _, metrics = fit_then_test(tmp_path, *tiny_fit_args(tiny_ffpp, tmp_path), *ddp)
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in fit.stderr + fit.stdout
    assert 0.0 <= metrics["test/image/auc"] <= 1.0 and 0.0 <= metrics["test/spatial/soft_iou"] <= 1.0
