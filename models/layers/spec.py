"""``class_path`` specs: ``{"class_path": "package.module.Class", "init_args": {...}}``, the
form LightningCLI (jsonargparse) gives to configurable classes in YAML and the form
checkpoints save heads, necks and backbones in.

Loading a checkpoint or a config imports the modules its specs name, and importing a module
runs its code. So only classes under ``TRUSTED_PREFIXES`` may be named.
"""
from __future__ import annotations

import importlib
from typing import Any

from polyvision.errors import ConfigError, WeightsError

__all__ = ["TRUSTED_PREFIXES", "check_trusted", "import_class"]

# torch.optim: models name their optimiser and learning-rate scheduler classes.
TRUSTED_PREFIXES = ("polyvision.", "torch.nn.", "torch.optim.")


def check_trusted(spec: Any, where: str) -> None:
    """Refuse (WeightsError) any ``class_path`` outside ``TRUSTED_PREFIXES`` anywhere in a
    saved spec, before anything is imported."""
    if isinstance(spec, dict):
        for key, value in spec.items():
            if key in ("class_path", "_class_path") and isinstance(value, str) and not value.startswith(TRUSTED_PREFIXES):
                raise WeightsError(f"{where}: refuses to build '{value}': checkpoints may only name polyvision classes")
            check_trusted(value, where)
    elif isinstance(spec, (list, tuple)):
        for value in spec:
            check_trusted(value, where)


def import_class(class_path: str, where: str) -> type:
    """The class ``class_path`` names; a ConfigError if it is outside ``TRUSTED_PREFIXES``,
    cannot be imported or is not a class."""
    if not class_path.startswith(TRUSTED_PREFIXES):
        raise ConfigError(f"{where}: refuses to import '{class_path}': only classes under "
                          f"{' or '.join(TRUSTED_PREFIXES)} may be named")
    module_name, _, class_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"{where}: unknown class '{class_path}'") from None
    if not isinstance(cls, type):
        raise ConfigError(f"{where}: '{class_path}' is not a class")
    return cls
