"""``polyvision demo --system``: which systems run, one leaderboard of those that ran (the
systems' fit/test/infer are replaced by stubs here; the real demo is ``make demo``)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from polyvision.scripts import demo, leaderboard


@pytest.fixture
def stubs(monkeypatch):
    ran: list[str] = []

    def fake(system):
        def run(out, overrides, *rest):
            ran.append(system)
            assert overrides[:2] == ["--trainer.default_root_dir", str(out / "runs")]
            entry = leaderboard.Entry(name=system, checkpoint=out / f"{system}.ckpt", config=Path(f"{system}.yaml"))
            return entry, [f"  {system} line"]
        return run

    monkeypatch.setattr(demo, "run_omnifd", fake("omnifd"))
    monkeypatch.setattr(demo, "run_acr", fake("acr"))
    monkeypatch.setattr(demo, "run_cvlnm", fake("cvlnm"))
    monkeypatch.setattr(leaderboard, "evaluate", lambda entry, accelerator="auto": {"x": 1.0})
    written = {}

    def write(entries, results, out):
        written["names"] = [e.name for e in entries]
        return {"md": out / "leaderboard.md"}

    monkeypatch.setattr(leaderboard, "write_leaderboard", write)
    return ran, written


@pytest.mark.parametrize("system, expected", [("acr", ["acr"]), ("omnifd", ["omnifd"]), ("cvlnm", ["cvlnm"]),
                                              ("all", ["omnifd", "acr", "cvlnm"]), (None, ["omnifd", "acr", "cvlnm"])])
def test_system_selects_what_runs_and_ranks(tmp_path, stubs, capsys, system, expected):
    ran, written = stubs
    argv = ["--output-dir", str(tmp_path)] + (["--system", system] if system else [])
    assert demo.main(argv) == 0
    assert ran == expected and written["names"] == expected
    entries = yaml.safe_load((tmp_path / "leaderboard_entries.yaml").read_text())["entries"]
    assert [e["name"] for e in entries] == expected
    printed = capsys.readouterr().out
    assert all(f"  {name} line" in printed for name in expected)
    assert ("omnifd line" in printed) == ("omnifd" in expected)


def test_unknown_system_is_refused(tmp_path, stubs):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--output-dir", str(tmp_path), "--system", "state"])
    assert exit_info.value.code == 2 and stubs[0] == []


def test_pick_hand_images_distinct_in_order():
    paths = ["a.jpg", "a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    dataset = SimpleNamespace(record=lambda i: SimpleNamespace(image_path=paths[i]))
    datamodule = SimpleNamespace(_dataset=lambda split: _Sized(dataset, len(paths)))
    assert demo.pick_hand_images(datamodule, 3) == [Path("a.jpg"), Path("b.jpg"), Path("c.jpg")]
    assert demo.pick_hand_images(datamodule, 10) == [Path(p) for p in ("a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg")]


class _Sized:
    def __init__(self, dataset, size):
        self.record, self.size = dataset.record, size

    def __len__(self):
        return self.size


def test_pick_caption_images_first_test_records(tmp_path):
    records = [SimpleNamespace(file_path=f"val2014/{i}.jpg") for i in range(6)]
    datamodule = SimpleNamespace(setup=lambda stage: None, images_dir=tmp_path, records={"test": records})
    assert demo.pick_caption_images(datamodule, 2) == [tmp_path / "val2014" / "0.jpg", tmp_path / "val2014" / "1.jpg"]
