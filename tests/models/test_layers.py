"""Shared layers (``polyvision.models.layers``)."""
from __future__ import annotations

import math

import pytest
import torch

from polyvision.models.layers import sinusoidal_table


def omnifd_table_0_1_0(length: int, dim: int) -> torch.Tensor:
    """``models/omnifd.py::sinusoidal_embedding`` of polyvision 0.1.0, verbatim."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


def state_table_0_1_0(length: int, dim: int) -> torch.Tensor:
    """``models/state.py::sine_positions`` of polyvision 0.1.0, verbatim."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : dim // 2]
    return 0.5 * table


@pytest.mark.parametrize("length,dim", [(1, 32), (16, 32), (4, 512), (7, 64)])
def test_one_table_reproduces_omnifd_neck_exactly(length, dim):
    assert torch.equal(sinusoidal_table(length, dim), omnifd_table_0_1_0(length, dim))


@pytest.mark.parametrize("length,dim", [(7, 32), (7, 16), (10, 5), (3, 1)])  # STATE's head width, and odd widths
def test_one_table_reproduces_state_sine_positions_exactly(length, dim):
    assert torch.equal(sinusoidal_table(length, dim, scale=0.5), state_table_0_1_0(length, dim))


def test_table_is_the_transformer_formula():
    length, dim = 6, 10
    table = sinusoidal_table(length, dim)
    for p in range(length):
        for i in range(dim // 2):
            angle = p / 10000 ** (2 * i / dim)
            assert table[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_state_sine_option_reads_the_scaled_table():
    from polyvision.models.state import ConvTransformerEncoder

    encoder = ConvTransformerEncoder(dim=128, num_layers=1, num_heads=4, positional="sine")
    assert torch.equal(encoder.positions(7, torch.device("cpu")), state_table_0_1_0(7, 32))
