"""Fixtures of the caption data tests: a small synthetic COCO written once per session, and a
helper that copies it so a test can damage its copy."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

COUNTS = {"train": 40, "val": 10, "test": 10}
IMAGE_SIZE = 64


@pytest.fixture(scope="session")
def synthetic_options() -> dict:
    """The writer settings of :func:`coco_root` (the datamodule's ``synthetic_options``)."""
    return {"num_images_per_split": COUNTS, "image_size": IMAGE_SIZE, "seed": 0}


@pytest.fixture(scope="session")
def coco_root(tmp_path_factory, synthetic_options) -> Path:
    """A folder holding a small synthetic COCO in ``coco/`` (do not modify it)."""
    from polyvision.datamodules.captions.synthetic import write_synthetic_coco

    root = tmp_path_factory.mktemp("captions")
    write_synthetic_coco(root, progress=False, **synthetic_options)
    return root


@pytest.fixture()
def coco_copy(coco_root, tmp_path) -> Path:
    """A private copy of the synthetic ``coco/`` folder (the dataset folder itself)."""
    return Path(shutil.copytree(coco_root / "coco", tmp_path / "coco"))
