"""FrameAUROC (micro and macro) against scikit-learn on generated scores."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d
from sklearn.metrics import roc_auc_score

from polyvision.metrics import FrameAUROC


def generated_videos(seed: int = 0, videos: int = 5, frames: int = 40, objects: int = 3):
    """Per-object rows (score, frame label, video, frame) with ties and an anomalous stretch
    per video; returns the rows and the reference per-frame (max over objects) arrays."""
    rng = np.random.default_rng(seed)
    rows, reference = [], []
    for v in range(videos):
        labels = np.zeros(frames, int)
        start = rng.integers(5, frames - 10)
        labels[start:start + rng.integers(3, 10)] = 1
        for f in range(frames):
            count = rng.integers(1, objects + 1)
            scores = np.round(rng.normal(labels[f] * 1.0, 1.0, count), 1)  # rounding makes ties
            rows += [(s, labels[f], v, f) for s in scores]
            reference.append((scores.max(), labels[f], v, f))
    order = rng.permutation(len(rows))  # the metric must not depend on the order rows arrive in
    rows = np.array(rows)[order]
    return rows, np.array(reference)


def tensors(rows: np.ndarray):
    return (torch.tensor(rows[:, 0], dtype=torch.float32), torch.tensor(rows[:, 1]).long(),
            torch.tensor(rows[:, 2]).long(), torch.tensor(rows[:, 3]).long())


def sklearn_macro(reference: np.ndarray) -> float:
    return float(np.mean([roc_auc_score(reference[reference[:, 2] == v, 1], reference[reference[:, 2] == v, 0])
                          for v in np.unique(reference[:, 2])]))


def test_micro_and_macro_match_sklearn_with_max_over_objects():
    rows, reference = generated_videos()
    metric = FrameAUROC()
    for chunk in np.array_split(rows, 7):  # several updates, as batches
        metric.update(*tensors(chunk))
    result = metric.compute()
    assert result["micro"].item() == pytest.approx(roc_auc_score(reference[:, 1], reference[:, 0]), abs=1e-6)
    assert result["macro"].item() == pytest.approx(sklearn_macro(reference), abs=1e-6)


def test_single_class_videos_are_padded_with_the_missing_class_at_the_extreme():
    rows, reference = generated_videos(seed=1, videos=3)
    # video 0 becomes all anomalous, video 1 all normal
    rows[rows[:, 2] == 0, 1] = 1
    rows[rows[:, 2] == 1, 1] = 0
    reference[reference[:, 2] == 0, 1] = 1
    reference[reference[:, 2] == 1, 1] = 0
    metric = FrameAUROC()
    metric.update(*tensors(rows))
    result = metric.compute()
    expected = []
    for v in range(3):
        scores, labels = reference[reference[:, 2] == v, 0], reference[reference[:, 2] == v, 1]
        if labels.all():
            scores, labels = np.append(scores, scores.min()), np.append(labels, 0)
        elif not labels.any():
            scores, labels = np.append(scores, scores.max()), np.append(labels, 1)
        expected.append(roc_auc_score(labels, scores))
    assert result["macro"].item() == pytest.approx(np.mean(expected), abs=1e-6)
    assert result["micro"].item() == pytest.approx(roc_auc_score(reference[:, 1], reference[:, 0]), abs=1e-6)

    skipping = FrameAUROC(single_class_videos="skip")
    skipping.update(*tensors(rows))
    only_mixed = reference[reference[:, 2] == 2]
    assert skipping.compute()["macro"].item() == pytest.approx(roc_auc_score(only_mixed[:, 1], only_mixed[:, 0]), abs=1e-6)


def test_gaussian_smoothing_per_video_in_frame_order():
    rows, reference = generated_videos(seed=2)
    metric = FrameAUROC(smoothing_sigma=3.0)
    metric.update(*tensors(rows))
    result = metric.compute()
    smoothed = reference.copy()
    for v in np.unique(reference[:, 2]):
        part = reference[:, 2] == v
        order = np.argsort(reference[part, 3])
        smoothed[np.flatnonzero(part)[order], 0] = gaussian_filter1d(reference[part, 0][order], 3.0, mode="reflect")
    assert result["micro"].item() == pytest.approx(roc_auc_score(smoothed[:, 1], smoothed[:, 0]), abs=1e-6)
    assert result["macro"].item() == pytest.approx(sklearn_macro(smoothed), abs=1e-6)
    assert FrameAUROC().smoothing_sigma == 0.0  # off by default, as STATE


def test_states_after_a_distributed_sync_are_one_tensor():
    rows, reference = generated_videos(seed=3)
    metric = FrameAUROC()
    half = len(rows) // 2
    metric.update(*tensors(rows[:half]))
    metric.update(*tensors(rows[half:]))
    # what torchmetrics leaves after gathering "cat" states across ranks (duplicates included,
    # as a DistributedSampler pads): one concatenated tensor per state
    for name in ("frame_auroc_preds", "frame_auroc_target", "frame_auroc_video", "frame_auroc_frame"):
        values = torch.cat(getattr(metric, name))
        setattr(metric, name, torch.cat([values, values[:5]]))
    assert metric.compute()["micro"].item() == pytest.approx(roc_auc_score(reference[:, 1], reference[:, 0]), abs=1e-6)


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_undefined_cases_and_bad_inputs():
    metric = FrameAUROC()
    with pytest.warns(UserWarning, match="no frames"):
        assert torch.isnan(metric.compute()["micro"])
    metric.update(torch.rand(4), torch.zeros(4, dtype=torch.long), torch.zeros(4), torch.arange(4))
    with pytest.warns(UserWarning, match="normal"):
        assert torch.isnan(metric.compute()["macro"])
    with pytest.raises(ValueError, match="same number"):
        metric.update(torch.rand(4), torch.zeros(3), torch.zeros(4), torch.arange(4))
    with pytest.raises(ValueError, match="only 0"):
        metric.update(torch.rand(2), torch.tensor([0, 2]), torch.zeros(2), torch.arange(2))
    with pytest.raises(ValueError):
        FrameAUROC(single_class_videos="drop")
