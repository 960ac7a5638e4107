"""A run killed mid-epoch (SIGKILL) and resumed with ``--ckpt_path last`` ends exactly where the
uninterrupted run with the same seed ends: same weights, same validation metrics, same run
folder. Plus the pieces that make it so: seeded sampling and atomic checkpoint writes."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from polyvision.datamodules.base import SkippingDataset
from polyvision.datamodules.seeding import SampleKey, SeededSampler, derive_seed, seed_sample

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "omnifd" / "synthetic_ffpp.yaml"
ARGS = ["--config", str(CONFIG), "--data.init_args.synthetic_samples", "96", "--data.init_args.batch_size", "16",
        "--trainer.max_epochs", "2", "--trainer.devices", "1", "--trainer.enable_progress_bar", "false"]
KILL_STEP = 6  # 4 steps per epoch: the middle of the second (last) epoch


def fit(root: Path, *extra: str, env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "polyvision.cli", "fit", *ARGS, "--trainer.default_root_dir", str(root), *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=600)
    return process.returncode, output


def last_validation(run: Path) -> dict[str, str]:
    rows = [row for row in csv.DictReader((run / "csv" / "metrics.csv").open()) if row.get("val/loss")]
    return {k: v for k, v in rows[-1].items() if k.startswith("val/") and v}


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    env = {**os.environ, "POLYVISION_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "support"), os.environ.get("PYTHONPATH", "")])}
    killer = tmp_path / "kill.yaml"
    killer.write_text("trainer:\n  callbacks:\n    - class_path: kill_at_step.KillAtStep\n"
                      f"      init_args: {{step: {KILL_STEP}}}\n")
    code, output = finish(fit(tmp_path / "reference", env=env))
    assert code == 0, output[-2000:]
    killed_code, killed_output = finish(fit(tmp_path / "resumed", "--config", str(killer), env=env))
    assert killed_code == -9, killed_output[-2000:]
    code, output = finish(fit(tmp_path / "resumed", "--ckpt_path", "last", env=env))
    assert code == 0, output[-2000:]

    runs = sorted((tmp_path / "resumed" / "omnifd-synthetic_ffpp").iterdir())
    assert [r.name for r in runs] == ["version_0"], "the resumed run continues in its own folder"
    expected = torch.load(tmp_path / "reference/omnifd-synthetic_ffpp/version_0/checkpoints/last.ckpt",
                          weights_only=False)
    resumed = torch.load(runs[0] / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["global_step"] == expected["global_step"] == 8
    for name, value in expected["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], value, rtol=0, atol=1e-6, msg=name)
    assert last_validation(runs[0]) == last_validation(tmp_path / "reference/omnifd-synthetic_ffpp/version_0")


class _Trainer:
    class fit_loop:  # noqa: N801 - the attribute path Lightning uses
        class epoch_progress:  # noqa: N801
            class current:  # noqa: N801
                processed = 0


def test_sampler_order_and_seeds_follow_seed_and_epoch_only(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    sampler = SeededSampler(50)
    first, again = list(sampler), list(SeededSampler(50))
    assert first == again and sorted(k.index for k in first) == list(range(50))
    assert [k.index for k in first] != list(range(50))
    sampler.set_epoch(1)
    second = list(sampler)
    assert [k.index for k in second] != [k.index for k in first]
    assert {k.index: k.seed for k in second}[3] == derive_seed(7, "sample", 1, 3)
    trainer = _Trainer()
    trainer.fit_loop.epoch_progress.current.processed = 1
    assert list(SeededSampler(50, trainer=trainer)) == second  # the trainer's epoch, not set_epoch's
    monkeypatch.setenv("PL_GLOBAL_SEED", "8")
    assert list(SeededSampler(50)) != first
    assert list(SeededSampler(5, shuffle=False))[2].index == 2


class _Augmenting(torch.utils.data.Dataset):
    def __init__(self):
        self.own_seed = None

    def set_sample_seed(self, seed: int) -> None:
        self.own_seed = seed

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        return index, float(torch.rand(1)), self.own_seed


def test_a_sample_key_reseeds_the_dataset_and_the_global_generators():
    dataset = SkippingDataset(torch.utils.data.Subset(_Augmenting(), [0, 1, 2, 3]), skip_bad_samples=False)
    a, b = dataset[SampleKey(2, 123)], dataset[SampleKey(2, 123)]
    assert a == b and a[0] == 2 and a[2] == 123
    assert dataset[SampleKey(2, 124)][1] != a[1]
    seed_sample(dataset, 5)
    assert dataset.dataset.dataset.own_seed == 5


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    from polyvision.scripts.lightning_cli import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    target = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 1}, target)
    assert torch.load(target)["step"] == 1

    def dies_mid_write(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target)["step"] == 1  # the previous checkpoint, whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]  # no partial file left
