"""Reading local weight files. Nothing is ever downloaded: a missing file is a clear
``WeightsError`` that says so."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from polyvision.errors import WeightsError

__all__ = ["check_weights_file", "load_state_dict_file"]


def check_weights_file(path: str | Path) -> Path:
    """``path`` as an existing file (``~`` expanded), or a WeightsError."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"{path}: pretrained weights file not found (weights are never downloaded; "
                           "give a local file or set pretrained: null to train from scratch)")
    return path


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """The state dict in a ``.safetensors`` or torch file, read with ``weights_only`` so the
    file cannot run code. Training checkpoints and Omnivore trunks wrap it in ``state_dict``,
    ``model`` or ``trunk``; those wrappers are removed."""
    path = check_weights_file(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure here is a bad file
        raise WeightsError(f"{path}: cannot read weights ({type(error).__name__}: {str(error).splitlines()[0]})") from None
    for key in ("state_dict", "model", "trunk"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state
