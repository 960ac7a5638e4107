"""Temporal smoothing of per-frame predictions (hand poses, shapes, joints) for video.

The One-Euro filter of Casiez, Roussel and Vogel ("1€ Filter: A Simple Speed-based Low-pass
Filter for Noisy Input in Interactive Systems", CHI 2012): an exponential smoother whose
cutoff frequency rises with the signal's speed, so slow motion is smoothed strongly (little
jitter) and fast motion lightly (little lag). Two knobs: ``min_cutoff`` (Hz) sets the
smoothing at rest, ``beta`` how fast the cutoff grows with speed. ACR's video demo smooths
MANO poses and shapes with such a filter (its ``smooth_coeff`` setting); here the filter's
parameters are exposed directly.
"""
from __future__ import annotations

import math

import numpy as np


def smoothing_factor(period: float, cutoff: float | np.ndarray) -> float | np.ndarray:
    """The weight of the new sample in an exponential smoother equivalent to a first-order
    low-pass filter of ``cutoff`` Hz sampled every ``period`` seconds:
    ``1 / (1 + tau / period)`` with the time constant ``tau = 1 / (2 pi cutoff)``."""
    time_constant = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + time_constant / period)


class OneEuroFilter:
    """The One-Euro filter on arrays of any (fixed) shape, element by element.

    Args:
        min_cutoff: the cutoff frequency (Hz) of a signal at rest; lower = smoother, more lag.
        beta: the cutoff's growth per unit of speed (signal units per second); 0 makes a plain
            exponential smoother, larger values cut the lag on fast motion.
        d_cutoff: the cutoff (Hz) of the smoothing of the speed estimate itself.
        frequency: the sampling rate (Hz) assumed when a call gives no timestamp.

    Call with one sample at a time: ``filter(x)`` (the sample is ``1 / frequency`` seconds
    after the previous one) or ``filter(x, t)`` with a timestamp in seconds. The first sample
    passes unchanged. Each element has its own speed, and so its own cutoff. Returns a float
    array of the sample's shape (float64 unless the input is another float type).
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0,
                 frequency: float = 30.0):
        if min_cutoff <= 0 or d_cutoff <= 0 or frequency <= 0 or beta < 0:
            raise ValueError("min_cutoff, d_cutoff and frequency must be positive and beta non-negative; got "
                             f"{min_cutoff}, {d_cutoff}, {frequency}, {beta}")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.frequency = float(frequency)
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next sample starts a new signal."""
        self._previous: np.ndarray | None = None  # the last filtered value
        self._speed: np.ndarray | None = None  # the last filtered derivative
        self._time: float | None = None

    def __call__(self, x: np.ndarray | float, t: float | None = None) -> np.ndarray:
        sample = np.asarray(x)
        out_dtype = sample.dtype if np.issubdtype(sample.dtype, np.floating) else np.float64
        sample = sample.astype(np.float64)
        if self._previous is None:
            self._previous, self._speed = sample, np.zeros_like(sample)
            self._time = 0.0 if t is None else float(t)
            return sample.astype(out_dtype)
        if sample.shape != self._previous.shape:
            raise ValueError(f"sample shape {sample.shape} differs from the signal's {self._previous.shape}")

        time = self._time + 1.0 / self.frequency if t is None else float(t)
        period = time - self._time
        if not period > 0:
            raise ValueError(f"timestamps must increase: {t} after {self._time}")
        # The speed: the step from the previous filtered value (as in the paper's pseudocode),
        # low-passed itself, since the raw speed of a noisy signal would make the cutoff jitter.
        raw_speed = (sample - self._previous) / period
        speed = self._speed + smoothing_factor(period, self.d_cutoff) * (raw_speed - self._speed)
        cutoff = self.min_cutoff + self.beta * np.abs(speed)
        filtered = self._previous + smoothing_factor(period, cutoff) * (sample - self._previous)
        self._previous, self._speed, self._time = filtered, speed, time
        return filtered.astype(out_dtype)


def smooth_sequence(values: np.ndarray, fps: float, min_cutoff: float = 1.0, beta: float = 0.0,
                    d_cutoff: float = 1.0) -> np.ndarray:
    """A whole sequence ``(T, ...)`` sampled at ``fps`` through a fresh :class:`OneEuroFilter`,
    causally (frame ``t`` depends on frames ``<= t`` only, as in a live demo). Same shape."""
    values = np.asarray(values)
    one_euro = OneEuroFilter(min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff, frequency=fps)
    if len(values) == 0:
        return values.astype(np.float64)
    return np.stack([one_euro(frame) for frame in values])
