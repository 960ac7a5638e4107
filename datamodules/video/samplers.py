"""Clip samplers: which frame indices of a video make up each clip.

A sampler is called as ``sampler(num_frames, rng) -> list[list[int]]``: a list of clips,
each a list of ``sampler.clip_len`` frame indices in ``[0, num_frames)``. Samplers whose
``deterministic`` attribute is true ignore ``rng`` (use them for evaluation: a dataset
enumerates all their clips); the others draw from ``rng``, a ``numpy.random.Generator``,
and give the same clips for the same generator state.

Videos shorter than a clip's span repeat their last frame (``RandomClipSampler``,
``SlidingWindowSampler``, ``ElasticWindowSampler``) or repeat frames evenly
(``UniformSampler``), so every clip has exactly ``clip_len`` indices.

=========================  ===============================================================
``UniformSampler``         ``clip_len`` frames spread evenly over the whole video (segment
                           centres; ``jitter=True`` draws one frame per segment instead).
``RandomClipSampler``      ``num_clips`` clips of ``clip_len`` frames ``stride`` apart, at
                           random starts.
``SlidingWindowSampler``   windows ``step`` apart whose union covers every frame (full-video
                           evaluation); a window that would run past the end is shifted back.
``ElasticWindowSampler``   STATE's elastic borders: for each centre frame t, ``2*context+1``
                           frames ``stride`` apart around t; a window that would cross the
                           video's start or end is shifted to stay inside it. Window k belongs
                           to frame k (``num_clips=None``) or to random centres.
=========================  ===============================================================
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from polyvision.errors import ConfigError

__all__ = [
    "ClipSampler",
    "ElasticWindowSampler",
    "RandomClipSampler",
    "SAMPLERS",
    "SlidingWindowSampler",
    "UniformSampler",
    "build_sampler",
    "EVAL_PROTOCOLS",
    "clip_indices",
    "clip_segments",
    "window_starts",
]


def _positive(name: str, value: int) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_frames(num_frames: int) -> int:
    if int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"cannot sample clips from a video with {num_frames} frames")
    return int(num_frames)


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


class ClipSampler:
    """Base class. ``clip_len``: frames per clip; ``deterministic``: ignores ``rng``."""

    clip_len: int = 1
    deterministic: bool = True

    def __call__(self, num_frames: int, rng: np.random.Generator | int | None = None) -> list[list[int]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash(repr(self))


def _window(start: int, clip_len: int, stride: int, num_frames: int) -> list[int]:
    return [min(start + k * stride, num_frames - 1) for k in range(clip_len)]


class UniformSampler(ClipSampler):
    """One clip of ``clip_len`` frames, one per equal segment of the video: the segment's
    centre, or (``jitter=True``) a random frame of the segment."""

    def __init__(self, clip_len: int = 8, jitter: bool = False):
        self.clip_len = _positive("clip_len", clip_len)
        self.jitter = bool(jitter)
        self.deterministic = not self.jitter

    def __call__(self, num_frames, rng=None):
        n = _check_frames(num_frames)
        edges = np.linspace(0, n, self.clip_len + 1)
        if self.jitter:
            gen = _rng(rng)
            points = edges[:-1] + gen.random(self.clip_len) * (edges[1:] - edges[:-1])
        else:
            points = (edges[:-1] + edges[1:]) / 2
        return [[min(int(p), n - 1) for p in points]]


class RandomClipSampler(ClipSampler):
    """``num_clips`` clips of ``clip_len`` frames, ``stride`` apart, each at a start drawn
    uniformly from the starts that keep the clip inside the video."""

    deterministic = False

    def __init__(self, clip_len: int = 16, stride: int = 1, num_clips: int = 1):
        self.clip_len = _positive("clip_len", clip_len)
        self.stride = _positive("stride", stride)
        self.num_clips = _positive("num_clips", num_clips)

    @property
    def span(self) -> int:
        return (self.clip_len - 1) * self.stride + 1

    def __call__(self, num_frames, rng=None):
        n = _check_frames(num_frames)
        gen = _rng(rng)
        last_start = max(0, n - self.span)
        starts = gen.integers(0, last_start + 1, self.num_clips)
        return [_window(int(s), self.clip_len, self.stride, n) for s in starts]


class SlidingWindowSampler(ClipSampler):
    """Dense windows for full-video evaluation: starts ``0, step, 2*step, ...`` (``step``
    defaults to the window span ``(clip_len-1)*stride+1``, i.e. no overlap), then, for every
    frame not yet covered (the tail, or frames between strided samples), one more window
    containing it, shifted back to end inside the video. The union of the windows is every
    frame; windows come out sorted by start and without duplicates."""

    def __init__(self, clip_len: int = 16, stride: int = 1, step: int | None = None):
        self.clip_len = _positive("clip_len", clip_len)
        self.stride = _positive("stride", stride)
        self.step = None if step is None else _positive("step", step)

    @property
    def span(self) -> int:
        return (self.clip_len - 1) * self.stride + 1

    def __call__(self, num_frames, rng=None):
        n = _check_frames(num_frames)
        step = self.step or self.span
        limit = max(0, n - self.span)  # the last start that keeps a window inside the video
        starts = set(range(0, limit + 1, step))
        covered = np.zeros(n, bool)
        for s in starts:
            covered[_window(s, self.clip_len, self.stride, n)] = True
        for f in np.flatnonzero(~covered):
            f = int(f)
            if covered[f]:
                continue
            start = f - math.ceil(max(0, f - limit) / self.stride) * self.stride
            if start < 0:
                start = f % self.stride
            starts.add(start)
            covered[_window(start, self.clip_len, self.stride, n)] = True
        return [_window(s, self.clip_len, self.stride, n) for s in sorted(starts)]


class ElasticWindowSampler(ClipSampler):
    """STATE's temporal windows with elastic borders.

    For centre frame ``t`` the window is ``t - context*stride, ..., t + context*stride``
    (``clip_len = 2*context + 1``). A window that would cross the start or the end of the
    video is shifted, not padded, so that it lies inside the video: its first frame is
    ``clamp(t - context*stride, 0, num_frames - span)``, and frame t is then off-centre.
    With ``num_clips=None`` (evaluation) there is one window per frame, window k for frame
    k, so every frame gets a score; with ``num_clips=N`` (training) N centres are drawn at
    random. Videos shorter than the span repeat their last frame.
    """

    def __init__(self, context: int = 3, stride: int = 1, num_clips: int | None = None):
        if int(context) != context or context < 0:
            raise ValueError(f"context must be a non-negative integer, got {context!r}")
        self.context = int(context)
        self.stride = _positive("stride", stride)
        self.num_clips = None if num_clips is None else _positive("num_clips", num_clips)
        self.clip_len = 2 * self.context + 1
        self.deterministic = self.num_clips is None

    @property
    def span(self) -> int:
        return (self.clip_len - 1) * self.stride + 1

    def window(self, center: int, num_frames: int) -> list[int]:
        """The elastic window of frame ``center``."""
        n = _check_frames(num_frames)
        if not 0 <= center < n:
            raise IndexError(f"centre frame {center} is out of range 0..{n - 1}")
        start = min(max(center - self.context * self.stride, 0), max(0, n - self.span))
        return _window(start, self.clip_len, self.stride, n)

    def centers(self, num_frames: int, rng=None) -> list[int]:
        """The frames the windows belong to: all of them, or ``num_clips`` random ones."""
        n = _check_frames(num_frames)
        if self.num_clips is None:
            return list(range(n))
        return [int(c) for c in _rng(rng).integers(0, n, self.num_clips)]

    def __call__(self, num_frames, rng=None):
        return [self.window(c, num_frames) for c in self.centers(num_frames, rng)]


SAMPLERS = {
    "uniform": UniformSampler,
    "random": RandomClipSampler,
    "sliding": SlidingWindowSampler,
    "dense": SlidingWindowSampler,
    "elastic": ElasticWindowSampler,
}


def build_sampler(name: str, **kwargs) -> ClipSampler:
    """``build_sampler("random", clip_len=16, stride=2)``; names: ``SAMPLERS``."""
    try:
        cls = SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown clip sampler {name!r}; choose one of {', '.join(SAMPLERS)}") from None
    return cls(**kwargs)


# Evaluation windows of a whole video (OmniFD's protocols), shared by the clip datasets and
# by inference, so both cut a video the same way.
EVAL_PROTOCOLS = ("first_window", "center_window", "full_video")


def window_starts(num_frames: int, clip_len: int, frame_interval: int = 1,
                  protocol: str = "full_video", step: int | None = None) -> list[int]:
    """Start frames of the evaluation windows of a video (see the module docstring)."""
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    span = (clip_len - 1) * frame_interval + 1  # first to last sampled frame
    limit = max(0, num_frames - span)  # the last start that keeps every sampled frame inside
    if protocol == "first_window":
        return [0]
    if protocol == "center_window":
        return [limit // 2]
    if protocol != "full_video":
        raise ConfigError(f"eval_protocol must be one of {', '.join(EVAL_PROTOCOLS)}, got {protocol!r}")
    length = clip_len * frame_interval  # frames a window covers
    starts = list(range(0, limit + 1, step or length))
    if starts[-1] + length < num_frames:
        starts.append(limit)
    return starts


def clip_indices(start: int, clip_len: int, frame_interval: int, num_frames: int) -> tuple[list[int], int]:
    """Original frame indices of a window (the last real frame repeated past the end) and the
    number of real frames."""
    raw = [start + k * frame_interval for k in range(clip_len)]
    valid = sum(i < num_frames for i in raw)
    last = raw[valid - 1]
    return [i if i < num_frames else last for i in raw], valid


def clip_segments(segments: Sequence[Sequence[float]], start: int, frame_interval: int,
                  valid: int) -> list[tuple[float, float]]:
    """Original-frame segments ``[s, e)`` as clip-frame segments of the window starting at
    ``start``: ``(x - start) / frame_interval``, clipped to ``[0, valid]``; empty ones dropped."""
    out = []
    for s, e in segments:
        a = min(max((float(s) - start) / frame_interval, 0.0), float(valid))
        b = min(max((float(e) - start) / frame_interval, 0.0), float(valid))
        if b - a > 1e-6:
            out.append((a, b))
    return out

