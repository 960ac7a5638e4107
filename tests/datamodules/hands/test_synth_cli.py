"""``polyvision synth interhand|freihand DIR``: listed by ``synth --help``, writes the real
InterHand2.6M layout with the generated hand model in ``DIR/mano`` (read back by the real
reader), and refuses a foreign folder with one line."""
from __future__ import annotations

import json

import pytest
from polyvision import cli
from polyvision.datamodules.hands.interhand import InterHandDataset

from helpers import run_cli

IH_KINDS = ("data", "camera", "joint_3d", "MANO_NeuralAnnot")


def test_synth_help_lists_the_hand_formats(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["synth", "--help"])
    assert exit_info.value.code == 0
    listed = capsys.readouterr().out
    assert "interhand" in listed and "freihand" in listed and "ffpp" in listed


def test_synth_interhand_writes_the_real_layout(tmp_path):
    root = tmp_path / "hands"
    result = run_cli("synth", "interhand", str(root), "--seed", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"wrote synthetic interhand dataset to {root}" in result.stdout
    for side in ("RIGHT", "LEFT"):
        assert (root / "mano" / f"MANO_{side}.pkl").is_file()
    dataset = root / "InterHand2.6M"
    assert json.loads((dataset / "COMPLETE").read_text())["seed"] == 3
    counts = {}
    for split in ("train", "val", "test"):
        for kind in IH_KINDS:
            assert (dataset / "annotations" / split / f"InterHand2.6M_{split}_{kind}.json").is_file(), (split, kind)
        data = json.loads((dataset / "annotations" / split / f"InterHand2.6M_{split}_data.json").read_text())
        names = [image["file_name"] for image in data["images"]]
        assert names and all((dataset / "images" / split / name).is_file() for name in names)
        counts[split] = len(names)
    assert counts == {"train": 48, "val": 16, "test": 16}  # the writer's defaults
    # the real reader with the generated model reads it
    val = InterHandDataset(dataset, "val", input_size=64, mano_dir=root / "mano")
    assert len(val) == 16 and val[0]["mano_valid"].any()


def test_synth_refuses_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "FreiHAND").mkdir()
    (tmp_path / "FreiHAND" / "mine.txt").write_text("not synthetic")
    assert cli.main(["synth", "freihand", str(tmp_path)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "FreiHAND" in error and "COMPLETE" in error and "\n" not in error
    assert (tmp_path / "FreiHAND" / "mine.txt").read_text() == "not synthetic"
