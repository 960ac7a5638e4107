from __future__ import annotations

import numpy as np
import pytest
from polyvision.datamodules.video.samplers import (
    ElasticWindowSampler,
    RandomClipSampler,
    SlidingWindowSampler,
    UniformSampler,
    build_sampler,
)


def _valid(clips, n, clip_len):
    assert clips and all(len(c) == clip_len for c in clips)
    assert all(0 <= i < n for c in clips for i in c)


def test_uniform_centres_and_short_videos():
    sampler = UniformSampler(4)
    assert sampler.deterministic
    assert sampler(40) == [[5, 15, 25, 35]]
    assert sampler(4) == [[0, 1, 2, 3]]
    assert sampler(2) == [[0, 0, 1, 1]]  # short video: frames repeat evenly
    assert sampler(1) == [[0, 0, 0, 0]]


def test_uniform_jitter_one_frame_per_segment():
    sampler = UniformSampler(5, jitter=True)
    assert not sampler.deterministic
    a = sampler(100, np.random.default_rng(1))
    assert a == sampler(100, np.random.default_rng(1))
    assert a != sampler(100, np.random.default_rng(2))
    assert all(20 * k <= i < 20 * (k + 1) for k, i in enumerate(a[0]))


def test_random_clip_bounds_stride_and_determinism():
    sampler = RandomClipSampler(clip_len=8, stride=3, num_clips=50)
    clips = sampler(100, np.random.default_rng(0))
    _valid(clips, 100, 8)
    assert all(np.all(np.diff(c) == 3) for c in clips)  # never clamped: every clip fits
    assert clips == sampler(100, np.random.default_rng(0))
    starts = {c[0] for c in RandomClipSampler(4, num_clips=500)(10, np.random.default_rng(0))}
    assert starts == set(range(7))  # every start that keeps the clip inside is drawn


def test_random_clip_short_video_repeats_last_frame():
    assert RandomClipSampler(5, stride=2)(4, np.random.default_rng(0)) == [[0, 2, 3, 3, 3]]


@pytest.mark.parametrize("n", [1, 2, 7, 16, 17, 33, 100])
@pytest.mark.parametrize("clip_len,stride,step", [(16, 1, None), (4, 1, 2), (5, 3, None), (3, 2, 1), (8, 4, 5)])
def test_sliding_windows_cover_every_frame(n, clip_len, stride, step):
    sampler = SlidingWindowSampler(clip_len, stride, step)
    assert sampler.deterministic
    clips = sampler(n)
    _valid(clips, n, clip_len)
    assert set().union(*map(set, clips)) == set(range(n))
    starts = [c[0] for c in clips]
    assert starts == sorted(set(starts))
    assert clips == sampler(n, np.random.default_rng(5))  # rng is ignored


def test_sliding_windows_layout():
    assert SlidingWindowSampler(4)(10) == [[0, 1, 2, 3], [4, 5, 6, 7], [6, 7, 8, 9]]  # last one shifted back
    assert SlidingWindowSampler(4, step=2)(8) == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]
    assert SlidingWindowSampler(2, stride=2)(4) == [[0, 2], [1, 3]]
    assert SlidingWindowSampler(4)(3) == [[0, 1, 2, 2]]


def test_elastic_windows_shift_at_borders():
    sampler = ElasticWindowSampler(context=3)
    assert sampler.clip_len == 7 and sampler.deterministic
    clips = sampler(20)
    assert len(clips) == 20  # one window per frame
    assert clips[0] == clips[1] == clips[3] == list(range(0, 7))  # shifted right at the start
    assert clips[10] == list(range(7, 14))  # centred inside
    assert clips[19] == clips[16] == list(range(13, 20))  # shifted left at the end
    for t, clip in enumerate(clips):
        assert t in clip and clip == list(range(clip[0], clip[0] + 7))


def test_elastic_stride_short_video_and_random_centres():
    assert ElasticWindowSampler(context=2, stride=2).window(5, 20) == [1, 3, 5, 7, 9]
    assert ElasticWindowSampler(context=2, stride=2).window(0, 20) == [0, 2, 4, 6, 8]
    assert ElasticWindowSampler(context=3)(4)[2] == [0, 1, 2, 3, 3, 3, 3]  # too short: repeat the last frame
    sampler = ElasticWindowSampler(context=1, num_clips=6)
    assert not sampler.deterministic
    clips = sampler(50, np.random.default_rng(3))
    assert len(clips) == 6 and clips == sampler(50, np.random.default_rng(3))
    centres = sampler.centers(50, np.random.default_rng(3))
    assert [sampler.window(c, 50) for c in centres] == clips
    with pytest.raises(IndexError):
        sampler.window(50, 50)


@pytest.mark.parametrize("factory", [
    lambda: UniformSampler(0), lambda: RandomClipSampler(4, stride=0), lambda: SlidingWindowSampler(4, step=0),
    lambda: ElasticWindowSampler(-1), lambda: RandomClipSampler(2.5),
])
def test_invalid_arguments(factory):
    with pytest.raises(ValueError):
        factory()


def test_empty_video_and_registry():
    for sampler in (UniformSampler(), RandomClipSampler(), SlidingWindowSampler(), ElasticWindowSampler()):
        with pytest.raises(ValueError, match="0 frames"):
            sampler(0, np.random.default_rng(0))
    assert build_sampler("random", clip_len=4, stride=2) == RandomClipSampler(4, 2)
    assert build_sampler("elastic").clip_len == 7
    assert "RandomClipSampler(clip_len=4" in repr(RandomClipSampler(4))
    with pytest.raises(ValueError, match="unknown clip sampler"):
        build_sampler("nope")
