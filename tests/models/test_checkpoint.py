"""Checkpoints: any model rebuilds from its Lightning checkpoint alone; unsafe files are refused."""
from __future__ import annotations

import pickle

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

import polyvision
from polyvision.datamodules.base import SourceCollate
from polyvision.errors import WeightsError
from helpers import image_batch, tiny_omnifd


def samples(count: int = 8) -> list[dict]:
    batch = image_batch(count)
    return [{k: batch[k][i] for k in ("image", "label", "mask", "has_mask")} | {"meta": batch["meta"][i]}
            for i in range(count)]


def fit_one_step(model, tmp_path):
    loader = DataLoader(samples(), batch_size=4, collate_fn=SourceCollate("image"))
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, loader)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_python_built_model_round_trips_through_its_checkpoint(tmp_path):
    model = tiny_omnifd("swin3d_t")
    path = fit_one_step(model, tmp_path)
    loaded = polyvision.load_model(path)
    assert type(loaded) is type(model) and not loaded.training
    batch = image_batch(2, seed=5)
    model.eval()
    with torch.no_grad():
        expected, actual = model(batch), loaded(batch)
    for head in expected:
        for key in expected[head]:
            torch.testing.assert_close(actual[head][key], expected[head][key])
    # plain class_path/init_args, not pickled modules
    assert loaded.hparams.heads["spatial"]["class_path"] == "polyvision.heads.spatial.SpatialHead"
    assert loaded.hparams.heads["spatial"]["init_args"]["channels"] == 16


def test_named_model_round_trips(tmp_path):
    model = polyvision.create_model("omnifd_synthetic")
    path = fit_one_step(model, tmp_path)
    loaded = polyvision.load_model(path)
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in model.parameters())
    for (name, a), (_, b) in zip(sorted(model.state_dict().items()), sorted(loaded.state_dict().items())):
        torch.testing.assert_close(a, b, msg=name)


class Payload:
    def __reduce__(self):  # what a malicious checkpoint would carry
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(MARKER),))


MARKER = ""


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    global MARKER
    MARKER = str(tmp_path / "code-ran")
    model = tiny_omnifd("swin3d_t")
    path = fit_one_step(model, tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["evil"] = Payload()
    evil = tmp_path / "evil.ckpt"
    with evil.open("wb") as handle:
        pickle.dump(checkpoint, handle)
    with pytest.raises(WeightsError, match="evil.ckpt: refused: the file holds pickled objects"):
        polyvision.load_model(evil)
    assert not (tmp_path / "code-ran").exists()


def test_checkpoint_naming_foreign_classes_is_refused(tmp_path):
    path = fit_one_step(tiny_omnifd("swin3d_t"), tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["heads"]["image"]["class_path"] = "os.system"
    torch.save(checkpoint, tmp_path / "foreign.ckpt")
    with pytest.raises(WeightsError, match="refuses to build 'os.system'"):
        polyvision.load_model(tmp_path / "foreign.ckpt")


def test_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(WeightsError, match="nope.ckpt: checkpoint not found"):
        polyvision.load_model(tmp_path / "nope.ckpt")
    path = fit_one_step(tiny_omnifd("swin3d_t"), tmp_path)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="truncated.ckpt: not a readable checkpoint"):
        polyvision.load_model(truncated)
    noise = tmp_path / "noise.ckpt"
    noise.write_bytes(bytes(range(256)) * 16)  # not a pickle at all: no talk of code it could run
    with pytest.raises(WeightsError, match=r"noise.ckpt: not a readable checkpoint \(not a PyTorch file\)"):
        polyvision.load_model(noise)
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(WeightsError, match="plain.ckpt: not a polyvision checkpoint"):
        polyvision.load_model(tmp_path / "plain.ckpt")
