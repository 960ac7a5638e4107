"""LAV-DF temporal AP / AR (as OmniFD's official ``mmpretrain/evaluation/metrics/forgery.py``
computes them) on hand-computed cases."""
from __future__ import annotations

import random
import warnings

import pytest
import torch
from torchmetrics import MetricCollection

from polyvision.metrics import TemporalAP, TemporalAR
from polyvision.metrics.temporal import LAVDF_IOU_THRESHOLDS

# Case A: 2 videos, 3 GTs, 5 proposals (score, start, end), all values exact in float32.
#   video 1: g1 = [0, 10], g2 = [20, 30]
#     p1 (0.9, 0, 10)  IoU(g1) = 1.0          -> TP at every t
#     p2 (0.8, 0, 10)  duplicate of p1 on g1  -> FP (g1 already used)
#     p3 (0.6, 20, 28) IoU(g2) = 8/10 = 0.8   -> TP for t < 0.8, FP at t = 0.8 (strict >)
#   video 2: g3 = [0, 4]
#     p4 (0.7, 0, 3)   IoU(g3) = 3/4 = 0.75   -> TP for t < 0.75, FP at t = 0.75 (strict >)
#     p5 (0.5, 10, 20) IoU 0                  -> FP
# Pooled by score: p1 p2 p4 p3 p5.
#  t in 0.50..0.70 (5 thresholds): TP 1 0 1 1 0, precision 1 1/2 2/3 3/4 3/5, recall 1/3 1/3 2/3 1 1.
#     LAV-DF curve from the high-recall end: x = 1, 1, 1, 2/3, 1/3, 1/3; y = 0, .6, .75, 2/3, .5, 1
#     running max 0, .6, .75, .75, .75, 1; |dx| = 0, 0, 1/3, 1/3, 0
#     AP = 1/3 * .75 + 1/3 * .75 = 0.5   (standard AP adds the first step 1/3 * 1: 5/6)
#  t = 0.75: TP 1 0 0 1 0, precision 1 .5 1/3 .5 .4, recall 1/3 1/3 1/3 2/3 2/3
#     x = 1, 2/3, 2/3, 1/3, 1/3, 1/3; y = 0, .4, .5, 1/3, .5, 1; running max 0 .4 .5 .5 .5 1
#     AP = 1/3 * 0 + 1/3 * .5 = 1/6      (standard: 1/6 + 1/3 = 1/2)
#  t = 0.80..0.95 (5 thresholds): only p1 is a TP; x = 1, then 1/3 five times
#     AP = 2/3 * 0 = 0                   (standard: 1/3)
#  mAP = (5 * 0.5 + 1/6 + 4 * 0) / 10 = 4/15; standard (5 * 5/6 + 1/2 + 4/3) / 10 = 0.6
# AR: top-N per video; each GT's max IoU among them, TP if > t.
#  N = 1 or 2: g1 IoU 1 (TP for all 10 t), g2 not reached (FN), g3 IoU .75 (TP for 5 t)
#     recall = (10 + 0 + 5) / 30 = 0.5
#  N >= 3: g2 gets IoU .8 (TP for t in 0.50..0.75: 6 t) -> (10 + 6 + 5) / 30 = 0.7
CASE_A_PREDS = [
    torch.tensor([[0.8, 0.0, 10.0], [0.9, 0.0, 10.0], [0.6, 20.0, 28.0]]),  # unsorted on purpose
    torch.tensor([[0.7, 0.0, 3.0], [0.5, 10.0, 20.0]]),
]
CASE_A_TARGET = [torch.tensor([[0.0, 10.0], [20.0, 30.0]]), torch.tensor([[0.0, 4.0]])]


def test_lavdf_thresholds():
    assert LAVDF_IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_ap_hand_computed_case():
    metric = TemporalAP(iou_thresholds=(0.5, 0.75, 0.8, 0.95))
    metric.update(CASE_A_PREDS, CASE_A_TARGET)
    values = metric.compute()
    assert set(values) == {"ap@0.5", "ap@0.75", "ap@0.8", "ap@0.95", "map"}
    assert values["ap@0.5"].item() == pytest.approx(0.5, abs=1e-6)
    assert values["ap@0.75"].item() == pytest.approx(1 / 6, abs=1e-6)  # p4 at IoU == 0.75 is a FP
    assert values["ap@0.8"].item() == pytest.approx(0.0, abs=1e-6)  # p3 at IoU == 0.8 is a FP
    assert values["ap@0.95"].item() == pytest.approx(0.0, abs=1e-6)
    assert values["map"].item() == pytest.approx(4 / 15, abs=1e-6)


def test_ap_standard_variant_adds_first_recall_step():
    metric = TemporalAP(iou_thresholds=(0.5, 0.75, 0.95), lavdf_exact=False)
    metric.update(CASE_A_PREDS, CASE_A_TARGET)
    values = metric.compute()
    assert values["ap@0.5"].item() == pytest.approx(5 / 6, abs=1e-6)
    assert values["ap@0.75"].item() == pytest.approx(0.5, abs=1e-6)
    assert values["ap@0.95"].item() == pytest.approx(1 / 3, abs=1e-6)
    assert values["map"].item() == pytest.approx(0.6, abs=1e-6)


def test_ar_hand_computed_case():
    metric = TemporalAR(ns=(1, 2, 3, 100))
    metric.update(CASE_A_PREDS, CASE_A_TARGET)
    values = metric.compute()
    assert list(values) == ["ar@1", "ar@2", "ar@3", "ar@100"]
    assert [round(v.item(), 6) for v in values.values()] == [0.5, 0.5, 0.7, 0.7]


def test_batches_accumulate_like_one_update():
    one, split = TemporalAP(), TemporalAP()
    one.update(CASE_A_PREDS, CASE_A_TARGET)
    split.update(CASE_A_PREDS[:1], CASE_A_TARGET[:1])
    split.update(CASE_A_PREDS[1], CASE_A_TARGET[1])  # a single 2-D tensor is one video
    assert {k: v.item() for k, v in one.compute().items()} == {k: v.item() for k, v in split.compute().items()}


def test_strict_threshold_at_equal_iou():
    # GT [0, 4]; proposal [0, 2] has IoU exactly 0.5 -> not a TP at t = 0.5; [0, 3] (0.75) is.
    target = [torch.tensor([[0.0, 4.0]])]
    ap, ar = TemporalAP(iou_thresholds=(0.5,), lavdf_exact=False), TemporalAR(ns=(1,))
    ap.update([torch.tensor([[0.9, 0.0, 2.0]])], target)
    ar.update([torch.tensor([[0.9, 0.0, 2.0]])], target)
    assert ap.compute()["ap@0.5"].item() == 0.0
    assert ar.compute()["ar@1"].item() == 0.0  # IoU 0.5 beats no threshold in 0.50:0.95
    ap, ar = TemporalAP(iou_thresholds=(0.5,), lavdf_exact=False), TemporalAR(ns=(1,))
    ap.update([torch.tensor([[0.9, 0.0, 3.0]])], target)
    ar.update([torch.tensor([[0.9, 0.0, 3.0]])], target)
    assert ap.compute()["ap@0.5"].item() == 1.0
    # IoU 0.75 > t for t in 0.50..0.70 (5 of 10 thresholds).
    assert ar.compute()["ar@1"].item() == pytest.approx(0.5)


def test_duplicates_one_gt():
    # Two identical proposals on one GT: the second is a FP.
    # Order: TP, FP -> precision 1, 1/2; recall 1/2, 1/2 (2 GTs, the second in another video is missed).
    # LAV-DF curve: x = 1, 1/2, 1/2 -> AP = 1/2 * 0 + 0 = 0; standard: + 1/2 * 1 = 1/2.
    preds = [torch.tensor([[0.9, 0.0, 10.0], [0.8, 0.0, 10.0]]), torch.zeros(0, 3)]
    target = [torch.tensor([[0.0, 10.0]]), torch.tensor([[5.0, 6.0]])]
    exact, standard = TemporalAP(iou_thresholds=(0.5,)), TemporalAP(iou_thresholds=(0.5,), lavdf_exact=False)
    for metric in (exact, standard):
        metric.update(preds, target)
    assert exact.compute()["ap@0.5"].item() == 0.0
    assert standard.compute()["ap@0.5"].item() == pytest.approx(0.5)
    ar = TemporalAR(ns=(1, 2))
    ar.update(preds, target)
    assert {k: round(v.item(), 6) for k, v in ar.compute().items()} == {"ar@1": 0.5, "ar@2": 0.5}


def test_empty_predictions():
    ap, ar = TemporalAP(), TemporalAR()
    target = [torch.tensor([[0.0, 10.0]]), torch.tensor([[1.0, 2.0], [3.0, 4.0]])]
    ap.update([torch.zeros(0, 3), torch.zeros(0, 3)], target)
    ar.update([torch.zeros(0, 3), torch.zeros(0, 3)], target)
    assert all(v.item() == 0.0 for v in ap.compute().values())
    assert all(v.item() == 0.0 for v in ar.compute().values())


def test_videos_without_gt():
    # Case A plus video 3 without GT holding the top-scoring proposal p6 (0.95, 0, 5): a FP.
    # t = 0.5: order p6 p1 p2 p4 p3 p5, TP 0 1 0 1 1 0, precision 0 .5 1/3 .5 .6 .5,
    #   recall 0 1/3 1/3 2/3 1 1. Curve x = 1, 1, 1, 2/3, 1/3, 1/3, 0; running max of
    #   y = 0, .5, .6, .5, 1/3, .5, 0 -> 0 .5 .6 .6 .6 .6; |dx| = 0 0 1/3 1/3 0 1/3
    #   AP = .6/3 * 3 = 0.6. (LAV-DF's curve: the leading FP now puts recall 0 on the curve,
    #   so p1's step counts and AP rises from 0.5 to 0.6.)
    # AR ignores video 3: still 0.7 at N = 100.
    preds = CASE_A_PREDS + [torch.tensor([[0.95, 0.0, 5.0]])]
    target = CASE_A_TARGET + [torch.zeros(0, 2)]
    ap, ar = TemporalAP(iou_thresholds=(0.5,)), TemporalAR(ns=(100,))
    ap.update(preds, target)
    ar.update(preds, target)
    assert ap.compute()["ap@0.5"].item() == pytest.approx(0.6, abs=1e-6)
    assert ar.compute()["ar@100"].item() == pytest.approx(0.7, abs=1e-6)


def test_no_gt_at_all_is_nan_with_warning():
    ap, ar = TemporalAP(), TemporalAR()
    ap.update([torch.tensor([[0.5, 0.0, 1.0]])], [torch.zeros(0, 2)])
    ar.update([torch.tensor([[0.5, 0.0, 1.0]])], [torch.zeros(0, 2)])
    with pytest.warns(UserWarning, match="no ground-truth"):
        assert torch.isnan(ap.compute()["map"])
    with pytest.warns(UserWarning, match="no ground-truth"):
        assert torch.isnan(ar.compute()["ar@10"])


def test_bad_inputs():
    with pytest.raises(ValueError, match="videos"):
        TemporalAP().update(CASE_A_PREDS, CASE_A_TARGET[:1])
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        TemporalAP().update([torch.zeros(2, 2)], [torch.zeros(1, 2)])


def _reference_ap(videos, t, exact=True):
    """Plain-Python restatement of the definition, for random cross-checks."""
    def iou(a, b):
        inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
        hull = max(a[1], b[1]) - min(a[0], b[0])
        return inter / hull if hull > 0 else 0.0

    rows, num_gt = [], 0
    for preds, gts in videos:
        preds = sorted(preds, key=lambda p: -p[0])
        num_gt += len(gts)
        used = [False] * len(preds)
        for g in gts:
            for j, p in enumerate(preds):
                if not used[j] and iou(p[1:], g) > t:
                    used[j] = True
                    break
        rows += [(p[0], used[j]) for j, p in enumerate(preds)]
    rows.sort(key=lambda r: -r[0])
    points, tp = [], 0
    for k, (_, hit) in enumerate(rows, 1):
        tp += hit
        points.append((tp / num_gt, tp / k))
    curve = [(1.0, 0.0)] + points[::-1] + ([] if exact else [(0.0, 0.0)])
    ap, best = 0.0, 0.0
    for (x0, y0), (x1, _) in zip(curve, curve[1:]):
        best = max(best, y0)
        ap += abs(x1 - x0) * best
    return ap


@pytest.mark.parametrize("exact", [True, False])
def test_random_cases_match_reference(exact):
    rng = random.Random(3)
    for _ in range(5):
        videos = []
        for _ in range(rng.randint(1, 6)):
            gts = [[s, s + rng.randint(1, 20)] for s in (rng.randint(0, 80) for _ in range(rng.randint(0, 3)))]
            starts = [rng.randint(0, 80) for _ in range(rng.randint(0, 8))]
            preds = [[rng.random(), s, s + rng.randint(1, 20)] for s in starts]
            videos.append((preds, gts))
        if not any(g for _, g in videos):
            continue
        metric = TemporalAP(iou_thresholds=(0.5, 0.7), lavdf_exact=exact)
        metric.update([torch.tensor(p, dtype=torch.float32).reshape(-1, 3) for p, _ in videos],
                      [torch.tensor(g, dtype=torch.float32).reshape(-1, 2) for _, g in videos])
        values = metric.compute()
        for t in (0.5, 0.7):
            assert values[f"ap@{t:g}"].item() == pytest.approx(_reference_ap(videos, t, exact), abs=1e-5)


def _synced_compute(metric_cls, rank0_updates, rank1_updates, **kwargs):
    """compute() on "rank 0" through torchmetrics' real sync path, with a fake all_gather
    that returns rank 0's and rank 1's (pre-concatenated) states."""
    other = metric_cls(**kwargs)
    for preds, target in rank1_updates:
        other.update(preds, target)
    other_states = []
    for name in other._defaults:
        state = getattr(other, name)
        other_states.append(torch.cat(state) if state else torch.tensor([]))  # torchmetrics' empty-rank fill
    queue = iter(other_states)

    def fake_gather(tensor, group=None):
        return [tensor, next(queue)]

    metric = metric_cls(dist_sync_fn=fake_gather, distributed_available_fn=lambda: True, **kwargs)
    for preds, target in rank0_updates:
        metric.update(preds, target)
    return {k: v.item() for k, v in metric.compute().items()}


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
@pytest.mark.parametrize("metric_cls", [TemporalAP, TemporalAR])
def test_ddp_like_sync(metric_cls):
    single = metric_cls()
    single.update(CASE_A_PREDS, CASE_A_TARGET)
    expected = {k: v.item() for k, v in single.compute().items()}
    split = _synced_compute(metric_cls, [(CASE_A_PREDS[:1], CASE_A_TARGET[:1])],
                            [(CASE_A_PREDS[1:], CASE_A_TARGET[1:])])
    assert split == pytest.approx(expected)
    # One rank saw nothing: its states arrive as empty float tensors.
    assert _synced_compute(metric_cls, [(CASE_A_PREDS, CASE_A_TARGET)], []) == pytest.approx(expected)
    assert _synced_compute(metric_cls, [], [(CASE_A_PREDS, CASE_A_TARGET)]) == pytest.approx(expected)


@pytest.mark.parametrize("metric_cls", [TemporalAP, TemporalAR])
def test_states_already_concatenated(metric_cls):
    # After a sync the list states may be single tensors (the bug that `if not state` hits).
    metric = metric_cls()
    metric.update(CASE_A_PREDS[:1], CASE_A_TARGET[:1])
    metric.update(CASE_A_PREDS[1:], CASE_A_TARGET[1:])
    expected = {k: v.item() for k, v in metric.compute().items()}
    for name in metric._defaults:
        setattr(metric, name, torch.cat(getattr(metric, name)))
    metric._computed = None
    assert {k: v.item() for k, v in metric.compute().items()} == pytest.approx(expected)


def test_collection_key_names():
    collection = MetricCollection({"ap": TemporalAP(), "ar": TemporalAR()}, prefix="test/temporal/")
    collection.update(CASE_A_PREDS, CASE_A_TARGET)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keys = set(collection.compute())
    assert keys == {"test/temporal/ap@0.5", "test/temporal/ap@0.75", "test/temporal/ap@0.95", "test/temporal/map",
                    "test/temporal/ar@10", "test/temporal/ar@20", "test/temporal/ar@50", "test/temporal/ar@100"}
    forgerynet = MetricCollection({"ap": TemporalAP(iou_thresholds=(0.5, 0.75, 0.9)), "ar": TemporalAR(ns=(2, 5))})
    forgerynet.update(CASE_A_PREDS, CASE_A_TARGET)
    assert set(forgerynet.compute()) == {"ap@0.5", "ap@0.75", "ap@0.9", "map", "ar@2", "ar@5"}
