"""STATE's user-facing scores: frames with no object are null in the JSON and gaps in the
plot (whose y-axis spans the real scores), while the AUROC keeps STATE's −1e5 ranking."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from polyvision.datamodules.anomaly import pipeline as pipeline_module
from polyvision.datamodules.anomaly.pipeline import VideoCubes
from polyvision.models.state import STATE, plot_scores

TINY = dict(widths=[4, 8, 16], num_layers=1, num_heads=2)
NUM_FRAMES = 12
OBJECT_FRAMES = np.array([2, 3, 3, 4, 7, 8, 9])  # frames 0, 1, 5, 6, 10, 11 have no object


@pytest.fixture
def fake_video(monkeypatch, tmp_path):
    generator = np.random.default_rng(0)
    cubes = VideoCubes(raw=generator.integers(0, 255, (len(OBJECT_FRAMES), 3, 7, 32, 32), dtype=np.uint8),
                       flow=generator.standard_normal((len(OBJECT_FRAMES), 2, 7, 32, 32)).astype(np.float16),
                       frame_of_cube=OBJECT_FRAMES, boxes=np.zeros((len(OBJECT_FRAMES), 4)),
                       num_frames=NUM_FRAMES, fps=10.0)
    monkeypatch.setattr(pipeline_module.ObjectPipeline, "extract_video", lambda self, path: cubes)
    path = tmp_path / "Test001.avi"
    path.write_bytes(b"")
    labels = np.zeros(NUM_FRAMES, dtype=np.int64)
    labels[7:10] = 1
    np.save(tmp_path / "Test001.npy", labels)  # per-frame labels beside the video
    return path, labels


def model() -> STATE:
    torch.manual_seed(0)
    state = STATE(backbone_kwargs=dict(TINY))
    state.statistics_ready.fill_(True)
    return state


def test_score_video_separates_ranking_and_display_scores(fake_video):
    result = model().score_video(fake_video[0])
    empty = np.setdiff1d(np.arange(NUM_FRAMES), OBJECT_FRAMES)
    assert (result["scores"][empty] == -1e5).all()  # STATE's ranking convention, for metrics
    assert np.isnan(result["display_scores"][empty]).all()
    assert np.isfinite(result["display_scores"][OBJECT_FRAMES]).all()
    assert result["has_object"].tolist() == [i in OBJECT_FRAMES for i in range(NUM_FRAMES)]


def test_json_has_null_for_frames_without_objects(fake_video, tmp_path, monkeypatch):
    from polyvision.datamodules.anomaly import readers

    path, labels = fake_video
    monkeypatch.setattr(readers, "find_ground_truth", lambda p, n: labels)
    out = tmp_path / "out"
    record = model().predict_video(path, out, "clip")
    saved = json.loads((out / "clip.scores.json").read_text())
    scores = saved["frame_scores"]
    assert len(scores) == NUM_FRAMES
    assert [s is None for s in scores] == [i not in OBJECT_FRAMES for i in range(NUM_FRAMES)]
    assert all(s > -1e4 for s in scores if s is not None)  # no −100000.0 reaches the user
    real = [s for s in scores if s is not None]
    assert saved["max_score"] == pytest.approx(max(real), abs=1e-5) and saved["peak_frame"] in OBJECT_FRAMES
    assert saved["frames_without_objects"] == NUM_FRAMES - len(set(OBJECT_FRAMES.tolist()))
    assert 0.0 <= record["frame_auroc"] <= 1.0
    assert (out / "clip.scores.png").stat().st_size > 1000


def test_frame_auroc_keeps_the_empty_score_ranking(fake_video, tmp_path, monkeypatch):
    from polyvision.datamodules.anomaly import readers
    from polyvision.metrics.classification import binary_roc_auc

    path, labels = fake_video
    monkeypatch.setattr(readers, "find_ground_truth", lambda p, n: labels)
    state = model()
    record = state.predict_video(path, tmp_path / "out", "clip")
    ranking = state.score_video(path)["scores"]
    assert record["frame_auroc"] == pytest.approx(float(binary_roc_auc(torch.from_numpy(ranking),
                                                                       torch.from_numpy(labels))))


def test_plot_axis_spans_the_real_scores(tmp_path, monkeypatch):
    import matplotlib.figure

    limits = {}
    original = matplotlib.figure.Figure.savefig

    def spy(figure, *args, **kwargs):
        limits["y"] = figure.axes[0].get_ylim()
        return original(figure, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    scores = np.array([np.nan, np.nan, 1.5, 2.0, 3.0, np.nan, 2.5, np.nan])
    plot_scores(scores, np.array([0, 0, 0, 1, 1, 0, 0, 0]), tmp_path / "curve.png", title="t", fps=10.0)
    low, high = limits["y"]
    assert 1.0 < low < 1.5 and 3.0 < high < 3.5
    plot_scores(np.full(5, np.nan), None, tmp_path / "empty.png", title="t", fps=0.0)  # no object anywhere
    assert (tmp_path / "empty.png").is_file()
