"""Every shipped config runs where it is: no hard-coded accelerator, device count or strategy
(the paper's 4-GPU DDP setup is a command-line override, stated in each config's comments)."""
from pathlib import Path

import pytest
import yaml

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


def trainer_section(path: Path) -> dict:
    return yaml.safe_load(path.read_text()).get("trainer", {})


def test_configs_found():
    assert len(CONFIGS) >= 14


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_trainer_section_has_no_hard_coded_devices(path):
    trainer = trainer_section(path)
    assert trainer.get("accelerator", "auto") == "auto"
    assert trainer.get("devices", "auto") == "auto"
    assert trainer.get("strategy", "auto") == "auto"
    assert "num_nodes" not in trainer


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_paper_setup_is_documented(path):
    text = path.read_text()
    if "paper: 4 GPUs" in text:
        assert "--trainer.devices 4 --trainer.strategy ddp" in text


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_trainer_builds_on_this_machine(path, tmp_path):
    import pytorch_lightning as pl

    kwargs = {k: v for k, v in trainer_section(path).items() if k not in ("logger", "callbacks")}
    trainer = pl.Trainer(**kwargs, logger=False, enable_checkpointing=False, default_root_dir=tmp_path,
                         enable_progress_bar=False)
    assert trainer.world_size == trainer.num_devices * trainer.num_nodes
