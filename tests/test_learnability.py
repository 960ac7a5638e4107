"""Learnability: the demo's config (unified image + clip training of all four OmniFD heads)
learns its synthetic data (slow: about three minutes on 2 cores)."""
from __future__ import annotations

import json

import pytest

from helpers import SYNTHETIC_CONFIG, fit_then_test


@pytest.mark.slow
def test_synthetic_omnifd_learns_all_four_tasks(tmp_path):
    common = ["--config", str(SYNTHETIC_CONFIG), "--trainer.default_root_dir", str(tmp_path / "runs"),
              "--trainer.enable_progress_bar", "false"]
    for source in ("image", "video"):
        common += [f"--data.init_args.sources.{source}.init_args.cache_dir", str(tmp_path / "data")]
    _, _, metrics = fit_then_test(tmp_path, *common, timeout=1800)
    print(json.dumps(metrics, indent=1))
    assert metrics["test/image/auc"] >= 0.9
    assert metrics["test/image/balanced_acc"] >= 0.85
    assert metrics["test/spatial/soft_iou"] >= 0.5
    assert metrics["test/spatial/pbca"] >= 0.8
    for protocol in ("", "_full"):  # first window (the paper's protocol) and full video
        assert metrics[f"test/video{protocol}/auc"] >= 0.9
        assert metrics[f"test/temporal{protocol}/ap@0.5"] >= 0.5
