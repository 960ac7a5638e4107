"""Helpers shared by the tests (importable as ``helpers``: pytest puts tests/ on the path)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from polyvision.datamodules.geometry import clip_geometry, image_geometry
from polyvision.models.factory import CONFIG_DIR

SYNTHETIC_CONFIG = CONFIG_DIR / "omnifd" / "synthetic.yaml"  # unified image + clip training (the demo's)
SYNTHETIC_FFPP_CONFIG = CONFIG_DIR / "omnifd" / "synthetic_ffpp.yaml"  # image tasks on FF++-layout data
SMALL_VIDEO_SWIN = dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4], window_size=[2, 4, 4])
# AdamW at a rate small models learn at in a few steps, no schedule.
FAST_ADAMW = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3, "weight_decay": 1e-4}}
FORGERY_CLASSES = ["real", "fake"]


def tiny_omnifd(backbone: str = "swin3d_t", with_neck: bool = True, **kwargs):
    from polyvision.heads.classification import ClassificationHead
    from polyvision.heads.spatial import SpatialHead
    from polyvision.models.omnifd import InteractionNeck, OmniFD

    backbone_kwargs = dict(SMALL_VIDEO_SWIN) if backbone.startswith("swin3d") else kwargs.pop("backbone_kwargs", {})
    neck = InteractionNeck(latent_channels=32, num_latents=8, depth=1, heads=2, dim_head=16, ff_mult=2) if with_neck else None
    return OmniFD(heads={"image": ClassificationHead(FORGERY_CLASSES), "spatial": SpatialHead(channels=16, num_latents=8)},
                  backbone=backbone, backbone_kwargs=backbone_kwargs, neck=neck,
                  sources={"image": ["image", "spatial"]}, optimizer=FAST_ADAMW,
                  **{"input_geometry": {"image": image_geometry(64)}, **kwargs})


def image_batch(size: int = 4, side: int = 64, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    label = torch.arange(size) % 2
    mask = torch.zeros(size, 1, side, side)
    mask[label == 1, :, side // 4: side // 2, side // 4: side // 2] = 1.0
    image = torch.randint(0, 255, (size, 3, side, side), dtype=torch.uint8, generator=generator)
    image[label == 1, :, side // 4: side // 2, side // 4: side // 2] = 255  # a visible "forgery"
    return {"image": image, "label": label, "mask": mask, "has_mask": torch.ones(size, dtype=torch.bool),
            "meta": [{"path": f"sample{i}.png"} for i in range(size)], "source": "image",
            "num_skipped": torch.tensor(0)}


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``polyvision`` in a subprocess, as a user would."""
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "polyvision.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def fit_then_test(root: Path, *args: str, fit_args: tuple[str, ...] = (), timeout: int = 600):
    """``polyvision fit`` and then ``polyvision test`` on its last checkpoint (found under
    ``root``), as a user runs them. Returns the fit's process, the checkpoint and the saved
    test metrics."""
    fit = run_cli("fit", *args, *fit_args, timeout=timeout)
    assert fit.returncode == 0, fit.stderr[-3000:]
    checkpoint = next(Path(root).rglob("last.ckpt"))
    test = run_cli("test", *args, "--ckpt_path", str(checkpoint), timeout=timeout)
    assert test.returncode == 0, test.stderr[-3000:]
    return fit, checkpoint, json.loads(checkpoint.with_suffix(".test-metrics.json").read_text())


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """A user error: non-zero exit, no traceback, exactly one ``error:`` line holding ``fragments``."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def tiny_fit_args(data_root: Path, run_dir: Path) -> list[str]:
    """Overrides that make the synthetic FF++ config train for a few steps on the tiny dataset."""
    return ["--config", str(SYNTHETIC_FFPP_CONFIG), "--data.init_args.synthetic", "false",
            "--data.init_args.root", str(data_root), "--data.init_args.num_workers", "0",
            "--data.init_args.batch_size", "8", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
            "--trainer.limit_val_batches", "2", "--trainer.default_root_dir", str(run_dir),
            "--trainer.enable_progress_bar", "false"]


TINY_TEMPORAL = dict(embed_dim=32, num_heads=4, fuse_heads=2, fuse_dim_head=16, fuse_ff_mult=2, window_size=32)


def tiny_unified_omnifd(**kwargs):
    """Image (classification + spatial) and video (classification + temporal) heads on a tiny trunk."""
    from polyvision.heads.classification import ClassificationHead
    from polyvision.heads.spatial import SpatialHead
    from polyvision.heads.temporal import TemporalLocalizationHead
    from polyvision.models.omnifd import InteractionNeck, OmniFD

    heads = {"image": ClassificationHead(FORGERY_CLASSES), "spatial": SpatialHead(channels=16, num_latents=8),
             "video": ClassificationHead(FORGERY_CLASSES), "temporal": TemporalLocalizationHead(**TINY_TEMPORAL)}
    return OmniFD(heads=heads, backbone="swin3d_t", backbone_kwargs=dict(SMALL_VIDEO_SWIN),
                  neck=InteractionNeck(latent_channels=32, num_latents=8, depth=1, heads=2, dim_head=16, ff_mult=2),
                  sources={"image": ["image", "spatial"], "video": ["video", "temporal"]},
                  loss_weights={"image": 1.0, "spatial": 1.0, "video": 0.25, "temporal": 0.25},
                  optimizer=FAST_ADAMW,
                  **{"input_geometry": {"image": image_geometry(64), "video": clip_geometry(8, 1, 64)}, **kwargs})


def window_batch(video_ids: list[str], windows: list[int], frames: int = 8, side: int = 32, fps: float = 10.0,
                 seed: int = 0) -> dict:
    """Video sub-batch of clips cut from longer videos (windows of ``frames`` frames, stride ``frames``)."""
    generator = torch.Generator().manual_seed(seed)
    size = len(video_ids)
    segments = torch.zeros(size, 1, 2)
    segments[:, 0] = torch.tensor([2.0, 6.0])
    meta = [{"path": f"{v}.mp4", "video_id": v, "window": w, "num_windows": 2, "fps": fps, "duration": 2 * frames / fps,
             "frame_indices": list(range(w * frames, (w + 1) * frames)), "original_size": [side, side],
             "segments_seconds": [[(2.0) / fps, (6.0) / fps], [(frames + 2.0) / fps, (frames + 6.0) / fps]]}
            for v, w in zip(video_ids, windows)]
    return {"video": torch.randint(0, 255, (size, 3, frames, side, side), dtype=torch.uint8, generator=generator),
            "label": torch.ones(size, dtype=torch.long), "segments": segments,
            "num_segments": torch.ones(size, dtype=torch.long), "meta": meta, "source": "video",
            "num_skipped": torch.tensor(0)}


def hand_batch(size: int = 2, side: int = 64, seed: int = 0) -> dict:
    """A batch as ``HandDataModule`` gives it (slot 0 right, slot 1 left): the first sample
    with both hands, the others with the right hand only; plausible MANO parameters, joints
    from the generated hand model, a camera looking at them."""
    from polyvision.heads.hands import load_hand_models

    generator = torch.Generator().manual_seed(seed)
    hand_valid = torch.zeros(size, 2, dtype=torch.bool)
    hand_valid[:, 0] = True
    hand_valid[0, 1] = True
    pose = 0.2 * torch.randn(size, 2, 48, generator=generator)
    shape = 0.5 * torch.randn(size, 2, 10, generator=generator)
    models = load_hand_models("generated")
    with torch.no_grad():
        joints = torch.stack([models[s](pose[:, s], shape[:, s]).joints for s in range(2)], 1)
    joints = joints + torch.tensor([[0.06, 0.0, 0.5], [-0.06, 0.0, 0.5]])[None, :, None]
    focal = 2.0 * side
    camera = torch.tensor([[focal, 0.0, side / 2], [0.0, focal, side / 2], [0.0, 0.0, 1.0]]).expand(size, 3, 3).clone()
    pixels = (joints[..., :2] / joints[..., 2:]) * focal + side / 2
    joints_2d = pixels / side * 2 - 1
    center = (joints_2d.amin(2) + joints_2d.amax(2)) / 2
    valid_joints = hand_valid[..., None].expand(size, 2, 21).clone()
    return {"image": torch.rand(size, 3, side, side, generator=generator) * 2 - 1, "hand_valid": hand_valid,
            "mano_pose": pose, "mano_shape": shape, "mano_valid": hand_valid.clone(), "joints_3d": joints,
            "joints_3d_valid": valid_joints, "joints_2d": joints_2d, "joints_2d_valid": valid_joints.clone(),
            "center": center, "camera": camera, "interacting": hand_valid.all(1),
            "meta": [{"path": f"hands{i}.png"} for i in range(size)], "source": "hands", "num_skipped": torch.tensor(0)}
