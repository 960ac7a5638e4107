"""Face-forgery classification metrics against sklearn and hand-computed cases."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score
from torchmetrics import MetricCollection

from polyvision.metrics import BalancedAccuracy, ForgeryAUC, Top1Accuracy


def _batches(seed: int, sizes=(37, 200, 1, 64, 150), decimals: int = 1):
    """Random p(fake) rounded to few decimals (many ties, many exact 0.5) with labels."""
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        target = rng.integers(0, 2, n)
        # Nudged towards the label so the metrics are far from chance and errors show up.
        p = np.clip(rng.random(n) * 0.8 + 0.2 * target, 0, 1).round(decimals).astype(np.float32)
        out.append((p, target))
    return out


def _feed(metric, batches):
    for p, t in batches:
        metric.update(torch.from_numpy(p), torch.from_numpy(t))
    return metric.compute()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn_with_ties(seed):
    batches = _batches(seed)
    p = np.concatenate([b[0] for b in batches])
    t = np.concatenate([b[1] for b in batches])
    assert (p == 0.5).any()  # the tie rule is exercised
    pred = (p > 0.5).astype(int)

    assert _feed(Top1Accuracy(), batches).item() == pytest.approx(accuracy_score(t, pred), abs=1e-6)
    assert _feed(BalancedAccuracy(), batches).item() == pytest.approx(balanced_accuracy_score(t, pred), abs=1e-6)
    assert _feed(ForgeryAUC(), batches).item() == pytest.approx(roc_auc_score(t, p), abs=1e-6)


def test_auc_coarse_ties_and_imbalance():
    # Two decimal levels only and 1:9 imbalance: ties dominate the ROC curve.
    rng = np.random.default_rng(7)
    t = (rng.random(500) < 0.1).astype(int)
    t[:2] = [0, 1]
    p = rng.choice([0.0, 0.5, 1.0], size=500).astype(np.float32)
    metric = ForgeryAUC()
    for chunk in np.array_split(np.arange(500), 4):
        metric.update(torch.from_numpy(p[chunk]), torch.from_numpy(t[chunk]))
    assert metric.compute().item() == pytest.approx(roc_auc_score(t, p), abs=1e-7)


def test_hand_computed_case():
    # preds  0.9  0.2  0.5  0.7  0.5
    # target   1    0    1    1    0
    # class    1    0    0    1    0   (0.5 -> real)
    # right    y    y    n    y    y   -> top-1 = 4/5
    # recall fake = 2/3 (idx 0,3 of 0,2,3), recall real = 2/2 -> balanced = (2/3 + 1)/2 = 5/6
    # AUC over 3x2 (fake, real) pairs: (.9,.2)=1 (.9,.5)=1 (.5,.2)=1 (.5,.5)=1/2 (.7,.2)=1 (.7,.5)=1
    #   -> 5.5/6 = 11/12
    preds = torch.tensor([0.9, 0.2, 0.5, 0.7, 0.5])
    target = torch.tensor([1, 0, 1, 1, 0])
    top1, bacc, auc = Top1Accuracy(), BalancedAccuracy(), ForgeryAUC()
    for m in (top1, bacc, auc):
        m.update(preds, target)
    assert top1.compute().item() == pytest.approx(4 / 5)
    assert bacc.compute().item() == pytest.approx(5 / 6)
    assert auc.compute().item() == pytest.approx(11 / 12)
    for m in (top1, bacc, auc):
        assert m.compute().dtype == torch.float32


def test_half_is_real():
    top1 = Top1Accuracy()
    top1.update(torch.tensor([0.5, 0.5]), torch.tensor([0, 1]))
    assert top1.compute().item() == pytest.approx(0.5)
    real, fake = Top1Accuracy(), Top1Accuracy()
    real.update(torch.tensor([0.5]), torch.tensor([0]))
    fake.update(torch.tensor([0.5]), torch.tensor([1]))
    assert real.compute().item() == 1.0
    assert fake.compute().item() == 0.0
    # Just above the threshold flips to fake.
    fake.update(torch.tensor([0.5001]), torch.tensor([1]))
    assert fake.compute().item() == pytest.approx(0.5)


def test_balanced_accuracy_single_class_in_target():
    # Only fakes: the mean runs over the present class alone (as sklearn), not over {0, 1}.
    bacc = BalancedAccuracy()
    bacc.update(torch.tensor([0.9, 0.1, 0.8, 0.7]), torch.tensor([1, 1, 1, 1]))
    assert bacc.compute().item() == pytest.approx(3 / 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns that y_pred has a class absent from y_true
        assert balanced_accuracy_score([1, 1, 1, 1], [1, 0, 1, 1]) == pytest.approx(3 / 4)


@pytest.mark.parametrize("label", [0, 1])
def test_auc_single_class_is_nan_with_warning(label):
    auc = ForgeryAUC()
    auc.update(torch.tensor([0.1, 0.7, 0.4]), torch.full((3,), label))
    with pytest.warns(UserWarning, match="only (real|fake) samples"):
        value = auc.compute()
    assert math.isnan(value.item())


def test_auc_without_samples_is_nan_with_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert math.isnan(ForgeryAUC().compute().item())
    assert any("AUC is undefined" in str(w.message) for w in caught)


def test_merged_states_equal_single_pass():
    # merge_state applies each state's dist_reduce_fx, i.e. what DDP sync does across ranks.
    batches = _batches(3)
    p = np.concatenate([b[0] for b in batches])
    t = np.concatenate([b[1] for b in batches])
    for cls in (Top1Accuracy, BalancedAccuracy, ForgeryAUC):
        rank0, rank1 = cls(), cls()
        rank0.update(torch.from_numpy(p[:100]), torch.from_numpy(t[:100]))
        rank1.update(torch.from_numpy(p[100:]), torch.from_numpy(t[100:]))
        rank0.merge_state(rank1)
        whole = cls()
        whole.update(torch.from_numpy(p), torch.from_numpy(t))
        assert rank0.compute().item() == pytest.approx(whole.compute().item(), abs=1e-7), cls.__name__


def test_in_metric_collection():
    batches = _batches(4)
    p = np.concatenate([b[0] for b in batches])
    t = np.concatenate([b[1] for b in batches])
    coll = MetricCollection([Top1Accuracy(), BalancedAccuracy(), ForgeryAUC()], prefix="test/")
    val = coll.clone(prefix="val/")
    for pb, tb in batches:
        coll.update(torch.from_numpy(pb), torch.from_numpy(tb))
    out = coll.compute()
    assert set(out) == {"test/Top1Accuracy", "test/BalancedAccuracy", "test/ForgeryAUC"}
    pred = (p > 0.5).astype(int)
    assert out["test/Top1Accuracy"].item() == pytest.approx(accuracy_score(t, pred), abs=1e-6)
    assert out["test/BalancedAccuracy"].item() == pytest.approx(balanced_accuracy_score(t, pred), abs=1e-6)
    assert out["test/ForgeryAUC"].item() == pytest.approx(roc_auc_score(t, p), abs=1e-6)
    # The clone kept its own (empty) state.
    val.update(torch.tensor([0.9, 0.1]), torch.tensor([1, 1]))
    with pytest.warns(UserWarning, match="only fake"):
        assert val.compute()["val/Top1Accuracy"].item() == pytest.approx(0.5)


def test_input_errors():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        Top1Accuracy().update(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="probabilities"):
        ForgeryAUC().update(torch.tensor([-2.0, 3.0]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="target"):
        BalancedAccuracy().update(torch.tensor([0.2, 0.3]), torch.tensor([0, 2]))


def test_auc_computes_from_synchronised_tensor_states():
    """Under DDP the list states are concatenated into tensors before compute()."""
    from polyvision.metrics.classification import ForgeryAUC

    metric = ForgeryAUC()
    metric.update(torch.tensor([0.1, 0.9, 0.4]), torch.tensor([0, 1, 1]))
    metric.auc_preds = torch.cat(metric.auc_preds)
    metric.auc_target = torch.cat(metric.auc_target)
    assert float(metric.compute()) == pytest.approx(1.0)
