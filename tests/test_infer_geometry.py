"""One source of truth for input geometry: a model trained on 16-frame clips taken every 2nd
frame (the synthetic config) is cut by ``polyvision infer`` into exactly the windows its test
loop sees, because the data config's geometry travels in the checkpoint."""
from __future__ import annotations

import json

import torch
import yaml

from helpers import SYNTHETIC_CONFIG, run_cli
from polyvision.datamodules.forgery.forgerynet import ForgeryNetVideoDataModule

SMALL_DATA = {"num_videos": 12, "num_images": 24, "min_frames": 40, "max_frames": 75, "frame_size": 64, "face_size": 64}


def test_infer_cuts_the_windows_the_test_loop_cuts(tmp_path):
    args = ["--config", str(SYNTHETIC_CONFIG), "--trainer.default_root_dir", str(tmp_path / "runs"),
            "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0"]
    for source in ("image", "video"):
        args += [f"--data.init_args.sources.{source}.init_args.cache_dir", str(tmp_path / "data"),
                 f"--data.init_args.sources.{source}.init_args.synthetic_options", json.dumps(SMALL_DATA)]
    fit = run_cli("fit", *args)
    assert fit.returncode == 0, fit.stderr[-3000:]
    checkpoint = next((tmp_path / "runs").rglob("last.ckpt"))

    video_config = yaml.safe_load(SYNTHETIC_CONFIG.read_text())["data"]["init_args"]["sources"]["video"]["init_args"]
    assert (video_config["clip_len"], video_config["frame_interval"]) == (16, 2)  # what this test is about
    data = ForgeryNetVideoDataModule(**{**video_config, "cache_dir": str(tmp_path / "data"),
                                        "synthetic_options": SMALL_DATA, "num_workers": 0})
    data.prepare_data()
    data.setup("test")
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"]["input_geometry"]
    assert saved["video"] == data.input_geometry()["video"]

    test_windows: dict[str, list[list[int]]] = {}
    for batch in data.test_dataloader():
        for meta, mask in zip(batch["meta"], batch["frame_mask"]):
            real = meta["frame_indices"][: int(mask.sum())]
            test_windows.setdefault(meta["path"], []).append([real[0], real[-1]])
    videos = sorted(test_windows, key=lambda p: -len(test_windows[p]))[:2]
    assert len(test_windows[videos[0]]) > 1  # a video longer than one window: the cut matters

    infer = run_cli("infer", "--checkpoint", str(checkpoint), "--output-dir", str(tmp_path / "out"), *videos)
    assert infer.returncode == 0, infer.stderr[-3000:]
    records = [json.loads(line) for line in infer.stdout.splitlines() if line.startswith("{")]
    assert {r["path"] for r in records} == set(videos)
    for record in records:
        assert record["window_frames"] == test_windows[record["path"]], record["path"]
