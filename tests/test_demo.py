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
            entry = leaderboard.Entry(name=system, checkpoint=out / f"{system}.ckpt", config=Path(f"{system}.yaml"),
                                      benchmark=demo.HYBRIDNET_BENCHMARK if system == "hybridnet" else None)
            return entry, [f"  {system} line"]
        return run

    for system in demo.SYSTEMS:
        monkeypatch.setattr(demo, f"run_{system}", fake(system))
    monkeypatch.setattr(leaderboard, "evaluate", lambda entry, accelerator="auto": {"x": 1.0})
    written = {}

    def write(entries, results, out):
        written["names"] = [e.name for e in entries]
        return {"md": out / "leaderboard.md"}

    monkeypatch.setattr(leaderboard, "write_leaderboard", write)
    return ran, written


ALL = ["omnifd", "acr", "cvlnm", "state", "hybridnet"]


@pytest.mark.parametrize("system, expected", [("acr", ["acr"]), ("omnifd", ["omnifd"]), ("cvlnm", ["cvlnm"]),
                                              ("state", ["state"]), ("hybridnet", ["hybridnet"]),
                                              ("all", ALL), (None, ALL)])
def test_system_selects_what_runs_and_ranks(tmp_path, stubs, capsys, system, expected):
    ran, written = stubs
    argv = ["--output-dir", str(tmp_path)] + (["--system", system] if system else [])
    assert demo.main(argv) == 0
    assert ran == expected and written["names"] == expected
    entries = yaml.safe_load((tmp_path / "leaderboard_entries.yaml").read_text())["entries"]
    assert [e["name"] for e in entries] == expected
    # HybridNet's row goes to the synthetic V2C table; the others' to one table per config
    assert [e.get("benchmark") for e in entries] == [
        "synthetic-v2c" if name == "hybridnet" else None for name in expected]
    printed = capsys.readouterr().out
    assert all(f"  {name} line" in printed for name in expected)
    assert ("omnifd line" in printed) == ("omnifd" in expected)


def test_unknown_system_is_refused(tmp_path, stubs):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--output-dir", str(tmp_path), "--system", "omnivore"])
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


def test_synthetic_v2c_table_reads_hybridnets_cider_per_output(tmp_path):
    """The demo's HybridNet row: CIDEr-D x100 of each output from ``test/v2c/<output>/cider_d``,
    completion intention the headline, no reported rows (the data is the built-in synthetic V2C)."""
    outputs = [f"{task}_{kind}" for task in ("completion", "generation") for kind in ("intention", "effect", "attribute")]
    result = {f"test/v2c/{output}/cider_d": 0.1 * (i + 1) for i, output in enumerate([*outputs, "caption"])}
    result["test/v2c/completion_intention/bleu_1"] = 0.9
    entry = leaderboard.Entry(name="HybridNet small (synthetic)", checkpoint=tmp_path / "h.ckpt",
                              config=Path("synthetic.yaml"), benchmark=demo.HYBRIDNET_BENCHMARK)
    (table,) = leaderboard.build_tables([entry], [result])
    assert table.key == "synthetic-v2c" and table.headline.id == "completion_intention_cider"
    assert [r.kind for r in table.rows] == ["ours"]
    assert table.rows[0].values == pytest.approx({f"{o}_cider": 10.0 * (i + 1)
                                                  for i, o in enumerate([*outputs, "caption"])})


def test_leaderboard_reads_the_test_steps_metrics(tmp_path, stubs, monkeypatch):
    """A checkpoint with its ``.test-metrics.json`` (written after it) is not tested again;
    ``--retest`` tests it again, as does a missing or older metrics file."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "state.ckpt").write_text("weights")
    (out / "state.test-metrics.json").write_text('{"test/frame_auroc_micro": 0.9}')
    evaluated, ranked = [], {}
    monkeypatch.setattr(leaderboard, "evaluate", lambda entry, accelerator="auto": evaluated.append(entry.name) or {})
    monkeypatch.setattr(leaderboard, "write_leaderboard",
                        lambda entries, results, o: ranked.update(zip([e.name for e in entries], results))
                        or {"md": o / "leaderboard.md"})
    assert demo.main(["--output-dir", str(out), "--system", "state"]) == 0
    assert evaluated == [] and ranked == {"state": {"test/frame_auroc_micro": 0.9}}
    assert demo.main(["--output-dir", str(out), "--system", "state", "--retest"]) == 0
    assert evaluated == ["state"]
    assert demo.test_metrics(out / "acr.ckpt") is None
