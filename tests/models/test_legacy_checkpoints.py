"""Checkpoints saved by polyvision 0.1.0, before the redesign, still load.

The fixtures in ``tests/data`` were written by 0.1.0: ``legacy_omnifd_v0.1.0.ckpt`` is
``helpers.tiny_omnifd("swin3d_t")`` and ``legacy_omnifd_v0.1.0.outputs.pt`` its eval-mode
outputs on ``helpers.image_batch(2, seed=5)``; ``legacy_state_v0.1.0.ckpt`` is
``create_model("state_synthetic")``. ``polyvision.load_model`` rebuilds them through
``models.factory.upgrade_hyperparameters``.
"""
from __future__ import annotations

from pathlib import Path

import torch

import polyvision
from polyvision.models.factory import upgrade_hyperparameters
from helpers import image_batch

DATA = Path(__file__).resolve().parent.parent / "data"


def test_legacy_omnifd_reproduces_its_saved_outputs():
    model = polyvision.load_model(DATA / "legacy_omnifd_v0.1.0.ckpt")
    expected = torch.load(DATA / "legacy_omnifd_v0.1.0.outputs.pt", weights_only=True)
    with torch.no_grad():
        outputs = model(image_batch(2, seed=5))
    assert set(outputs) == set(expected)
    for head, tensors in expected.items():
        for key, value in tensors.items():
            torch.testing.assert_close(outputs[head][key], value, rtol=0, atol=0, msg=f"{head}.{key}")


def test_legacy_state_loads_with_its_weights():
    path = DATA / "legacy_state_v0.1.0.ckpt"
    model = polyvision.load_model(path)
    assert type(model.backbone).__name__ == "STATEEncoder"
    saved = torch.load(path, weights_only=True)["state_dict"]
    state = model.state_dict()
    assert set(state) == set(saved)
    for key, value in saved.items():
        assert torch.equal(state[key], value), key


def test_state_encoder_name_becomes_its_class_path_spec():
    old = {"backbone": "state_encoder", "backbone_kwargs": {"widths": [8, 16, 32], "num_layers": 1}, "epsilon": 0.01}
    new = upgrade_hyperparameters("polyvision.models.state.STATE", old)
    assert new["backbone"] == {"class_path": "polyvision.models.state.STATEEncoder",
                               "init_args": {"widths": [8, 16, 32], "num_layers": 1}}
    assert new["backbone_kwargs"] is None and new["epsilon"] == 0.01
    assert old["backbone"] == "state_encoder"  # the checkpoint's own dict is left as it was
    assert upgrade_hyperparameters("polyvision.models.state.STATE", new) == new  # today's form passes unchanged


def test_legacy_flat_optimizer_arguments_become_specs_with_the_same_numbers():
    omnifd = polyvision.load_model(DATA / "legacy_omnifd_v0.1.0.ckpt")
    assert omnifd.hparams.optimizer == {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3, "weight_decay": 1e-4}}
    assert omnifd.hparams.scheduler == {"class_path": "polyvision.models.schedules.WarmupCosine", "interval": "step",
                                        "init_args": {"warmup_steps": 0, "min_lr": 1e-6, "warmup_start_factor": 1e-3}}
    assert not {"lr", "weight_decay", "warmup_steps", "min_lr"} & set(omnifd.hparams)
    state = polyvision.load_model(DATA / "legacy_state_v0.1.0.ckpt")
    assert state.hparams.optimizer == {"class_path": "torch.optim.Adam",
                                       "init_args": {"lr": 1e-3, "eps": 1e-7, "weight_decay": 0.0}}
    assert not {"lr", "adam_eps", "weight_decay"} & set(state.hparams)


def test_legacy_classification_heads_keep_their_real_fake_names():
    """0.1.0's ClassificationHead said real/fake unless told otherwise; the default is now 0/1."""
    model = polyvision.load_model(DATA / "legacy_omnifd_v0.1.0.ckpt")
    assert model.heads["image"].class_names == ["real", "fake"]
    assert {record["image"]["label"] for record in model.predict_step(image_batch(2, seed=5), 0)} <= {"real", "fake"}
    # a checkpoint saved since (it has an optimizer) keeps the generic default
    today = {"optimizer": None, "input_geometry": None, "heads": {"image": {"class_path": "polyvision.heads.classification.ClassificationHead",
                                                     "init_args": {}}}}
    assert upgrade_hyperparameters("polyvision.models.omnifd.OmniFD", today) == today


def test_legacy_geometry_arguments_become_the_input_geometry():
    """0.1.0 kept image_size/clip_len/frame_interval (and STATE's object_pipeline) as model
    arguments; they become the input geometry inference reads."""
    from polyvision.datamodules.geometry import clip_geometry, image_geometry

    omnifd = polyvision.load_model(DATA / "legacy_omnifd_v0.1.0.ckpt")
    assert omnifd.input_geometry == {"image": image_geometry(64), "video": clip_geometry(32, 1, 64)}
    assert not {"image_size", "clip_len", "frame_interval"} & set(omnifd.hparams)
    state = polyvision.load_model(DATA / "legacy_state_v0.1.0.ckpt")
    assert state.input_geometry is None and "object_pipeline" not in state.hparams  # it was saved before any data
