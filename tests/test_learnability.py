"""Learnability: the demo's config learns its synthetic data (slow: about two minutes on 2 cores)."""
from __future__ import annotations

import json

import pytest

from helpers import SYNTHETIC_CONFIG, run_cli


@pytest.mark.slow
def test_synthetic_omnifd_learns_classification_and_masks(tmp_path):
    common = ["--config", str(SYNTHETIC_CONFIG), "--data.init_args.cache_dir", str(tmp_path / "cache"),
              "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false"]
    fit = run_cli("fit", *common, timeout=1200)
    assert fit.returncode == 0, fit.stderr[-3000:]
    checkpoint = next(tmp_path.rglob("last.ckpt"))
    test = run_cli("test", *common, "--ckpt_path", str(checkpoint))
    assert test.returncode == 0, test.stderr[-3000:]
    metrics = json.loads(checkpoint.with_suffix(".test-metrics.json").read_text())
    print(json.dumps(metrics, indent=1))
    assert metrics["test/image/auc"] >= 0.9
    assert metrics["test/image/balanced_acc"] >= 0.85
    assert metrics["test/spatial/soft_iou"] >= 0.5
    assert metrics["test/spatial/pbca"] >= 0.8
