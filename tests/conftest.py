"""Session fixtures (a tiny synthetic FF++ dataset, written once) and the suite's scheduling.

``make test`` runs the suite in two pytest-xdist workers on two cores: most tests wait on
process start-up (CLI runs in subprocesses), so two at a time nearly halves the wall time.
Each worker, and every process a test starts, then uses one thread, so that two workers never
fight over the cores, and the ``slow`` learnability tests are handed out first, so that the
longest ones do not start last.
"""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    import torch

    torch.set_num_threads(1)

import pytest  # noqa: E402


def _torch_on_one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_torch_thread():
    """Torch on one thread during the test (restored after it)."""
    yield from _torch_on_one_thread()


@pytest.fixture(scope="module")
def one_torch_thread_per_module():
    """Torch on one thread for a whole module, its module-scoped fixtures included (name it in
    the module's ``pytestmark = pytest.mark.usefixtures(...)``; copying thousands of small
    tensors with several threads is many times slower on a busy CI core)."""
    yield from _torch_on_one_thread()


@pytest.fixture(scope="session")
def tiny_ffpp(tmp_path_factory) -> Path:
    """A synthetic FaceForensics++ tree (12 videos of 6 identities × 4 frames, 64 px)."""
    from polyvision.datamodules.forgery.synthetic_images import write_synthetic_ffpp

    root = tmp_path_factory.mktemp("ffpp")
    write_synthetic_ffpp(root, num_videos=12, frames_per_video=4, image_size=64, seed=1, progress=False)
    return root


def pytest_collection_modifyitems(session, config, items):
    """``slow`` tests first (stable otherwise)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
