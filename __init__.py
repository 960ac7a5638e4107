"""polyvision: five published vision systems behind one PyTorch Lightning API.

Public API: ``create_model``, ``load_model``, ``list_models``, ``__version__``.
"""
from __future__ import annotations

import os

# albumentations 2.0.8 checks PyPI for a newer version on import: no network calls at run time.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from polyvision.version import __version__

__all__ = ["__version__", "create_model", "load_model", "list_models"]


def __getattr__(name: str):
    # Lazy, so that `import polyvision` (and the CLI's --help) does not import torch.
    if name in ("create_model", "load_model", "list_models"):
        from polyvision.models import factory

        return getattr(factory, name)
    raise AttributeError(f"module 'polyvision' has no attribute '{name}'")
