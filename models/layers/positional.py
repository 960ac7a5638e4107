"""The fixed sinusoidal position table of "Attention Is All You Need" (Vaswani et al.,
NeurIPS 2017, Sec. 3.5): PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(p / 10000^(2i/d)),
sines and cosines interleaved along the channels.

Two systems use it: OmniFD adds it over the trunk's temporal axis in its interaction module
(``mmpretrain/models/omnifd/module.py`` in github.com/haotianll/OmniFD), and STATE's ``sine``
positional option scales it by 0.5 (``positional_encoding`` in ``module_utils.py`` of
github.com/wyzjack/MRMGA4VAD).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["sinusoidal_table"]


def sinusoidal_table(length: int, dim: int, device: torch.device | str | None = None, scale: float = 1.0) -> Tensor:
    """Float32 table ``(length, dim)``: row p is position p's code times ``scale``. An odd
    ``dim`` ends with a sine column."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : dim // 2]
    return scale * table
