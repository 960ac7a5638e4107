"""The atomic synthetic writer every synthetic dataset goes through."""
from __future__ import annotations

import json

import pytest

from polyvision.datamodules.synthetic import MARKER_NAME, marker_matches, read_marker, write_atomically
from polyvision.errors import DataError


def test_writes_then_marks_then_renames(tmp_path):
    seen = []

    def write(folder):
        seen.append(folder)
        assert folder.name == "Set" and folder.parent != tmp_path  # built out of sight
        (folder / "a.txt").write_text("x")
        return {"count": 1}

    assert write_atomically(tmp_path, "Set", {"seed": 3}, write) == tmp_path
    assert (tmp_path / "Set" / "a.txt").read_text() == "x"
    assert read_marker(tmp_path / "Set") == {"seed": 3, "count": 1}
    assert marker_matches(tmp_path / "Set", {"seed": 3}) and not marker_matches(tmp_path / "Set", {"seed": 4})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Set"]  # no temporary folder left


def test_a_failed_write_leaves_nothing_and_keeps_the_previous_dataset(tmp_path):
    write_atomically(tmp_path, "Set", {"seed": 1}, lambda folder: (folder / "old.txt").write_text("old") and None)

    def broken(folder):
        (folder / "half.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomically(tmp_path, "Set", {"seed": 2}, broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Set"]
    assert (tmp_path / "Set" / "old.txt").exists() and read_marker(tmp_path / "Set") == {"seed": 1}


def test_a_different_synthetic_dataset_is_replaced_but_user_data_never(tmp_path):
    write_atomically(tmp_path, "Set", {"seed": 1}, lambda folder: None)
    write_atomically(tmp_path, "Set", {"seed": 2}, lambda folder: None)
    assert json.loads((tmp_path / "Set" / MARKER_NAME).read_text()) == {"seed": 2}
    user = tmp_path / "Mine"
    user.mkdir()
    (user / "precious.mp4").write_bytes(b"1")
    with pytest.raises(DataError, match="not a synthetic dataset"):
        write_atomically(tmp_path, "Mine", {"seed": 1}, lambda folder: None)
    assert (user / "precious.mp4").exists()


def test_an_identical_dataset_finished_first_by_another_process_is_kept(tmp_path):
    def racing(folder):
        # another writer completes the same dataset while this one is still writing
        write_atomically(tmp_path, "Set", {"seed": 5}, lambda other: (other / "first.txt").write_text("1") and None)
        (folder / "second.txt").write_text("2")

    write_atomically(tmp_path, "Set", {"seed": 5}, racing)
    assert (tmp_path / "Set" / "first.txt").exists() and not (tmp_path / "Set" / "second.txt").exists()
