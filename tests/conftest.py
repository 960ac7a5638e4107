"""Session fixtures: a tiny synthetic FF++ dataset, written once."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_ffpp(tmp_path_factory) -> Path:
    """A synthetic FaceForensics++ tree (12 videos of 6 identities × 4 frames, 64 px)."""
    from polyvision.datamodules.forgery.synthetic_images import write_synthetic_ffpp

    root = tmp_path_factory.mktemp("ffpp")
    write_synthetic_ffpp(root, num_videos=12, frames_per_video=4, image_size=64, seed=1, progress=False)
    return root


