"""The One-Euro filter: smooth at rest, little lag in motion."""
from __future__ import annotations

import numpy as np
import pytest
from polyvision.datamodules.hands.smoothing import (
    OneEuroFilter,
    smooth_sequence,
    smoothing_factor,
)

FPS = 30.0


def test_smoothing_factor_is_the_first_order_low_pass_weight():
    period, cutoff = 1 / 30, 2.0
    assert smoothing_factor(period, cutoff) == pytest.approx(1 / (1 + 1 / (2 * np.pi * cutoff) / period))


def test_a_constant_signal_passes_unchanged():
    signal = np.broadcast_to(np.array([[0.5, -2.0, 7.0]]), (50, 2, 3))
    np.testing.assert_allclose(smooth_sequence(signal, FPS, min_cutoff=0.5, beta=1.0), signal, rtol=0, atol=1e-12)


def test_noise_on_a_constant_is_reduced():
    noisy = 3.0 + np.random.default_rng(0).normal(0.0, 0.1, size=(300, 4))
    smoothed = smooth_sequence(noisy, FPS, min_cutoff=1.0, beta=0.0)
    assert smoothed.shape == noisy.shape
    assert smoothed[30:].var(axis=0).max() < 0.2 * noisy[30:].var(axis=0).min()
    assert abs(smoothed[30:].mean() - 3.0) < 0.02


def test_speed_adaptation_cuts_the_lag_on_a_ramp():
    ramp = np.arange(120, dtype=np.float64) * 0.5  # 15 units per second
    lag = {beta: np.abs(ramp - smooth_sequence(ramp, FPS, min_cutoff=0.5, beta=beta))[60:].mean()
           for beta in (0.0, 1.0)}
    assert lag[0.0] > 1.0  # a plain exponential smoother trails well behind
    assert lag[1.0] < 0.5 * lag[0.0]


def test_timestamps_match_the_fixed_frequency_and_must_increase():
    samples = np.random.default_rng(1).normal(size=(10, 3))
    by_frequency, by_time = OneEuroFilter(beta=0.3, frequency=FPS), OneEuroFilter(beta=0.3)
    for index, sample in enumerate(samples):
        np.testing.assert_allclose(by_frequency(sample), by_time(sample, t=index / FPS))
    with pytest.raises(ValueError, match="increase"):
        by_time(samples[0], t=0.0)


def test_reset_starts_a_new_signal_and_shapes_are_checked():
    one_euro = OneEuroFilter()
    one_euro(np.zeros(3))
    assert one_euro(np.ones(3))[0] < 1.0  # smoothed towards the past
    with pytest.raises(ValueError, match="shape"):
        one_euro(np.ones(4))
    one_euro.reset()
    np.testing.assert_array_equal(one_euro(np.ones(4)), np.ones(4))  # the first sample passes as is


def test_float32_input_stays_float32():
    assert smooth_sequence(np.ones((5, 2), dtype=np.float32), FPS).dtype == np.float32
    assert smooth_sequence(np.ones((5, 2), dtype=np.int64), FPS).dtype == np.float64
