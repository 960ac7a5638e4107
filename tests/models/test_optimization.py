"""Optimiser and schedule as plain-data specs (0.1.0 checkpoints: test_legacy_checkpoints.py)."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch

from polyvision.errors import ConfigError
from polyvision.heads.classification import ClassificationHead
from polyvision.models.base import MultiTaskModule
from polyvision.models.schedules import WarmupCosine
from helpers import tiny_omnifd

OMNIFD_SCHEDULE = {"class_path": "polyvision.models.schedules.WarmupCosine",
                   "init_args": {"warmup_steps": 20, "min_lr": 1e-6, "warmup_start_factor": 1e-3}, "interval": "step"}


def rates(optimizer, scheduler, steps: int) -> list[float]:
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_omnifd_schedule_warms_up_from_a_thousandth_then_follows_a_cosine_to_min_lr(monkeypatch):
    model = tiny_omnifd(scheduler=OMNIFD_SCHEDULE)
    # the run's length is all configure_optimizers asks of the trainer
    monkeypatch.setattr(MultiTaskModule, "trainer", SimpleNamespace(estimated_stepping_batches=100))
    configuration = model.configure_optimizers()
    optimizer, scheduler = configuration["optimizer"], configuration["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.AdamW) and configuration["lr_scheduler"]["interval"] == "step"
    lr = rates(optimizer, scheduler, 101)
    assert lr[0] == pytest.approx(1e-3 * 1e-3)
    assert lr[10] == pytest.approx(1e-3 * (1e-3 + (1 - 1e-3) * 10 / 20))
    assert lr[20] == pytest.approx(1e-3)  # warm-up done: the full rate
    assert lr[60] == pytest.approx((1e-3 + 1e-6) / 2)  # half way down the cosine
    assert lr[100] == pytest.approx(1e-6)
    # every group follows the same factor; the no-decay group keeps no weight decay
    assert [group["weight_decay"] for group in optimizer.param_groups] == [1e-4, 0.0]


def test_warmup_cosine_scales_each_group_from_its_own_rate():
    weights = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": [weights[0]], "lr": 1.0}, {"params": [weights[1]], "lr": 0.1}])
    scheduler = WarmupCosine(optimizer, total_steps=10, warmup_steps=0, min_lr=0.01)
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.01, 0.01])


def test_without_a_scheduler_the_optimizer_comes_alone():
    model = tiny_omnifd()
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["lr"] == 1e-3


def test_state_adam_is_an_optimizer_spec():
    from polyvision.models.state import STATE

    model = STATE(backbone_kwargs={"widths": [4, 8, 16], "num_layers": 1, "num_heads": 2})
    optimizer = model.configure_optimizers()
    assert type(optimizer) is torch.optim.Adam
    assert (optimizer.defaults["lr"], optimizer.defaults["eps"], optimizer.defaults["weight_decay"]) == (1e-3, 1e-7, 0.0)
    assert sum(len(group["params"]) for group in optimizer.param_groups) == len(list(model.parameters()))


def test_no_decay_keys_default_to_the_system_and_can_be_given():
    base = MultiTaskModule(heads={"image": ClassificationHead()}, backbone="swin3d_t",
                           backbone_kwargs={"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 2, 4],
                                            "window_size": [2, 4, 4]})
    assert base.no_decay_keys == ()
    decay_names = {id(p) for p in base.parameter_groups()[0]["params"]}
    names = [n for n, p in base.named_parameters() if id(p) in decay_names]
    assert any("relative_position_bias_table" in n for n in names)  # a 2-D table: decayed unless named
    assert "relative_position_bias_table" in tiny_omnifd().no_decay_keys  # OmniFD's default
    assert tiny_omnifd(no_decay_keys=["latents"]).no_decay_keys == ("latents",)


@pytest.mark.parametrize("spec,message", [
    ({"class_path": "os.system"}, "model.optimizer: refuses to import 'os.system'"),
    ({"class_path": "torch.nn.Linear"}, "model.optimizer: torch.nn.Linear is not a torch.optim.optimizer.Optimizer"),
    ({"class_path": "torch.optim.AdamW", "init_arg": {}}, "model.optimizer: unknown key 'init_arg'"),
    ({"init_args": {"lr": 1.0}}, "model.optimizer: a spec is {class_path"),
])
def test_bad_optimizer_specs_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        MultiTaskModule(heads={"image": ClassificationHead()}, backbone="resnet18", optimizer=spec)


def test_bad_scheduler_spec_is_a_config_error():
    with pytest.raises(ConfigError, match=r"model\.scheduler: torch\.optim\.AdamW is not a"):
        MultiTaskModule(heads={"image": ClassificationHead()}, backbone="resnet18",
                        scheduler={"class_path": "torch.optim.AdamW"})
