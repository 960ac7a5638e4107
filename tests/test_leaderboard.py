"""The leaderboard's tables from given test results (no model is run): one table per
benchmark, ranked by its headline metric, its standard columns only, in the field's units,
the papers' reported numbers as rows with our gaps to them, and the packaged reported data."""
from __future__ import annotations

import configparser
import csv
import io
from pathlib import Path

import pytest
import yaml

from polyvision.errors import DataError
from polyvision.scripts.leaderboard import (BENCHMARKS, REPORTED_NUMBERS, SORT_SCRIPT, Entry, Reported,
                                            build_tables, cell, convert, load_reported, read_entries, to_csv,
                                            to_html, to_markdown, write_leaderboard)

ROOT = Path(__file__).resolve().parents[1]


def entry(name: str, benchmark: str | None, config: str = "c.yaml") -> Entry:
    return Entry(name=name, checkpoint=Path("x.ckpt"), config=Path(config), benchmark=benchmark)


def by_name(table) -> dict:
    return {row.system: row for row in table.rows}


VEC = Reported("VEC", "ped2", "frame_auroc_micro", 97.3, "%", "VEC_VAD README")
BATFD = [Reported("BA-TFD+", "lavdf", "ap@0.5", 96.30, "%", "LAV-DF README"),
         Reported("BA-TFD+", "lavdf", "ar@10", 78.75, "%", "LAV-DF README")]


def test_rows_ranked_by_the_headline_reported_rows_included_missing_headline_last():
    entries = [entry("a", "ped2"), entry("b", "ped2"), entry("c", "ped2")]
    results = [{"test/frame_auroc_micro": 0.95, "test/frame_auroc_macro": 0.99},
               {"frame_auroc_micro": 0.981}, {"frame_auroc_macro": 0.5}]
    [table] = build_tables(entries, results, [VEC])
    assert [(r.rank, r.system, r.kind) for r in table.rows] == [
        (1, "b", "ours"), (2, "VEC", "reported"), (3, "a", "ours"), (None, "c", "ours")]
    assert table.ranked_by == "Ranked by frame AUROC (micro), % (higher is better)"


def test_headline_is_the_first_standard_metric_the_rows_hold():
    # FF++ ranks by image AUC; a table of video-only models ranks by video AUC
    entries = [entry("v1", "ffpp"), entry("v2", "ffpp")]
    [table] = build_tables(entries, [{"video/auc": 0.8, "video/acc": 0.9}, {"video/auc": 0.85}], [])
    assert table.headline.id == "video_auc" and [r.system for r in table.rows] == ["v2", "v1"]
    [table] = build_tables(entries, [{"video/auc": 0.8}, {"image/auc": 0.7}], [])
    assert table.headline.id == "image_auc" and [(r.rank, r.system) for r in table.rows] == [(1, "v2"), (None, "v1")]


def test_lower_is_better_headline_ranks_ascending():
    # InterHand2.6M: MPJPE in mm, lower is better; IntagHand reports only the interacting split.
    reported = [Reported("ACR", "interhand26m", "mpjpe", 8.09, "mm", "s"),
                Reported("IntagHand", "interhand26m", "mpjpe_ih", 8.80, "mm", "t")]
    [table] = build_tables([entry("ours", "interhand26m")], [{"mpjpe": 8.5, "mpjpe_ih": 8.7}], reported)
    assert [(r.rank, r.system) for r in table.rows] == [(1, "ACR"), (2, "ours"), (None, "IntagHand")]
    ours = by_name(table)["ours"]
    assert ours.gaps == {"mpjpe": pytest.approx(0.41), "mpjpe_ih": pytest.approx(-0.10)}
    assert cell(ours, table.columns[0]) == "8.50 (+0.41)"


def test_columns_are_the_benchmarks_standard_metrics_without_diagnostics():
    results = [{"frame_auroc_micro": 0.9, "frame_auroc_macro": 0.8, "sse_clean": 3.0, "sse_perturbed": 4.0, "loss": 1.0}]
    [table] = build_tables([entry("s", "avenue")], results, [])
    assert [m.id for m in table.columns] == ["frame_auroc_micro", "frame_auroc_macro"]
    ffpp = {"image/auc": 0.9, "image/acc": 0.8, "image/balanced_acc": 0.7, "spatial/pbca": 0.9, "spatial/iinc": 0.2,
            "spatial/soft_iou": 0.5, "loss": 0.3, "image/loss": 0.2}
    [table] = build_tables([entry("f", "ffpp")], [ffpp], [])
    assert [m.header for m in table.columns] == ["image AUC, % ↑", "image ACC, % ↑", "PBCA ↑", "IINC ↓", "soft IoU ↑"]
    # without a benchmark: grouped by config, every logged metric but the diagnostics
    tables = build_tables([entry("x", None, "one.yaml"), entry("y", None, "two.yaml"), entry("z", None, "one.yaml")],
                          [{"frame_auroc_micro": 0.7, "sse_clean": 1.0, "loss": 2.0}, {"image/auc": 0.5},
                           {"frame_auroc_micro": 0.8, "frame_auroc_macro": 0.6}], [])
    assert [t.key for t in tables] == ["config:one.yaml", "config:two.yaml"]
    assert [m.id for m in tables[0].columns] == ["frame_auroc_micro", "frame_auroc_macro"]
    assert [r.system for r in tables[0].rows] == ["z", "x"]


def test_unit_conversion():
    assert convert(0.9512, "fraction", "%") == pytest.approx(95.12)
    assert convert(129.5, "x100", "fraction") == pytest.approx(1.295)
    assert convert(0.00809, "m", "mm") == pytest.approx(8.09)
    with pytest.raises(ValueError):
        convert(1.0, "%", "mm")
    # our fractions shown in % with the column's decimals (AP: two, as LAV-DF prints; AUROC: one)
    [lavdf] = build_tables([entry("l", "lavdf")], [{"temporal/ap@0.5": 0.95123}], [])
    assert cell(lavdf.rows[0], lavdf.columns[0]) == "95.12"
    [ped2] = build_tables([entry("p", "ped2")], [{"frame_auroc_micro": 0.95123}], [])
    assert cell(ped2.rows[0], ped2.columns[0]) == "95.1"


def test_reported_rows_and_gaps_hand_computed():
    results = [{"temporal/ap@0.5": 0.9512, "temporal/ap@0.75": 0.5, "temporal/ar@10": 0.8}]
    [table] = build_tables([entry("ours", "lavdf")], results, BATFD)
    ours, paper = by_name(table)["ours"], by_name(table)["BA-TFD+"]
    assert paper.kind == "reported" and paper.values == {"ap@0.5": 96.30, "ar@10": 78.75}
    # 95.12 - 96.30 = -1.18; 80.00 - 78.75 = +1.25; no reported AP@0.75, no gap
    assert ours.gaps == {"ap@0.5": pytest.approx(-1.18), "ar@10": pytest.approx(1.25)}
    assert [cell(ours, m) for m in table.columns] == ["95.12 (−1.18)", "50.00", "80.00 (+1.25)"]
    assert [m.id for m in table.columns] == ["ap@0.5", "ap@0.75", "ar@10"]  # empty columns dropped
    markdown = to_markdown([table])
    assert "| 1 | BA-TFD+ (reported) | 96.30 |  | 78.75 |" in markdown
    assert "| 2 | ours | 95.12 (−1.18) | 50.00 | 80.00 (+1.25) |" in markdown
    assert "Reported numbers: BA-TFD+: LAV-DF README." in markdown
    # the gap is to the best reported value of the column
    better = Reported("Other", "lavdf", "ap@0.5", 97.0, "%", "x")
    [table] = build_tables([entry("ours", "lavdf")], results, [*BATFD, better])
    assert by_name(table)["ours"].gaps["ap@0.5"] == pytest.approx(-1.88)


def test_csv_is_long_format():
    [table] = build_tables([entry("ours", "lavdf")], [{"temporal/ap@0.5": 0.9512}], BATFD)
    rows = list(csv.DictReader(io.StringIO(to_csv([table]))))
    assert rows == [
        {"benchmark": "lavdf", "rank": "1", "system": "BA-TFD+", "kind": "reported", "metric": "ap@0.5", "label": "AP@0.5",
         "unit": "%", "value": "96.30", "reported": "", "gap": "", "source": "LAV-DF README"},
        {"benchmark": "lavdf", "rank": "1", "system": "BA-TFD+", "kind": "reported", "metric": "ar@10", "label": "AR@10",
         "unit": "%", "value": "78.75", "reported": "", "gap": "", "source": "LAV-DF README"},
        {"benchmark": "lavdf", "rank": "2", "system": "ours", "kind": "ours", "metric": "ap@0.5", "label": "AP@0.5",
         "unit": "%", "value": "95.12", "reported": "96.30", "gap": "-1.18", "source": ""},
    ]


def test_html_one_sortable_table_per_benchmark(tmp_path):
    entries = [entry("a", "ped2"), entry("b", "lavdf"), entry("c", "ped2"), entry("d", None)]
    results = [{"frame_auroc_micro": 0.9}, {"temporal/ap@0.5": 0.9}, {"frame_auroc_micro": 0.8}, {"image/auc": 0.5}]
    paths = write_leaderboard(entries, results, tmp_path, [VEC, *BATFD])
    page = paths["html"].read_text()
    assert page.count("<table class='board'") == 3 and SORT_SCRIPT in page and "addEventListener" in page
    assert "http" not in page.replace("<!doctype html>", "")  # nothing fetched
    assert "data-v='97.3'" in page and "Ranked by frame AUROC (micro), %" in page
    markdown = paths["md"].read_text()
    assert [line for line in markdown.splitlines() if line.startswith("## ")] == [
        "## UCSD Ped2 (`ped2`)", "## LAV-DF (temporal forgery localization) (`lavdf`)",
        "## entries without a benchmark, config `c.yaml`"]


def test_packaged_reported_numbers_load_and_each_has_a_source():
    records = load_reported()
    assert REPORTED_NUMBERS.parent == ROOT / "scripts" and len(records) > 20
    for record in records:
        assert record.source.strip() and record.benchmark in BENCHMARKS
        assert BENCHMARKS[record.benchmark].metric(record.metric) is not None
    assert not any(r.value == 7.41 for r in records)  # the conflicting aggregator figure is dropped
    assert {(r.system, r.metric, r.value) for r in records if r.benchmark == "ped2"} == {
        ("VEC (STATE's baseline)", "frame_auroc_micro", 97.3)}
    # shipped in the wheel: setup.cfg's package data names the file
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert REPORTED_NUMBERS.name in setup["options.package_data"]["polyvision.scripts"]


def test_reported_numbers_are_checked(tmp_path):
    path = tmp_path / "reported.yaml"
    record = {"system": "s", "benchmark": "lavdf", "metric": "ap@0.5", "value": 1.0, "unit": "%", "source": "t"}
    for change, message in [({"source": ""}, "missing field 'source'"), ({"metric": "auc"}, "has no metric 'auc'"),
                            ({"benchmark": "nope"}, "unknown benchmark 'nope'"), ({"unit": "mm"}, "cannot convert")]:
        path.write_text(yaml.safe_dump({"records": [{**record, **change}]}))
        with pytest.raises(DataError, match=message):
            load_reported(path)


def test_entries_file_format_unchanged(tmp_path):
    path = tmp_path / "entries.yaml"
    path.write_text(yaml.safe_dump({"entries": [
        {"name": "a", "checkpoint": "a.ckpt", "config": "c.yaml", "benchmark": "ffpp", "data": {"root": "/d"}},
        {"name": "b", "checkpoint": "/abs/b.ckpt", "config": "c.yaml"}]}))
    a, b = read_entries(path)
    assert (a.name, a.checkpoint, a.benchmark, a.data) == ("a", tmp_path / "a.ckpt", "ffpp", {"root": "/d"})
    assert (b.checkpoint, b.benchmark, b.data) == (Path("/abs/b.ckpt"), None, {})


def test_acr_interhand_table_ranks_ascending_by_intaghand_mpjpe_and_gaps_favour_lower():
    # ACR's table ranks by MPJPE (IntagHand protocol) from our logged name; lower is better, so
    # the best reported value is the smallest and a gap below zero means we beat it.
    reported = [Reported("ACR", "interhand26m", "intaghand_mpjpe", 7.41, "mm", "s"),
                Reported("IntagHand", "interhand26m", "intaghand_mpjpe", 8.79, "mm", "t"),
                Reported("IntagHand", "interhand26m", "intaghand_mpvpe", 9.03, "mm", "t")]
    entries = [entry("worse", "interhand26m"), entry("better", "interhand26m")]
    results = [{"test/hands/intaghand_mpjpe": 9.5, "test/hands/intaghand_mpvpe": 9.9, "test/hands/internet_mrrpe": 30.0},
               {"test/hands/intaghand_mpjpe": 7.0, "test/hands/intaghand_mpvpe": 8.0}]
    [table] = build_tables(entries, results, reported)
    assert table.headline.id == "intaghand_mpjpe" and not table.headline.higher_is_better
    assert [(r.rank, r.system) for r in table.rows] == [(1, "better"), (2, "ACR"), (3, "IntagHand"), (4, "worse")]
    assert table.ranked_by == "Ranked by MPJPE (IntagHand protocol), mm (lower is better)"
    rows = by_name(table)
    assert table.reference(table.headline) == pytest.approx(7.41)  # the lowest reported, not the highest
    assert rows["better"].gaps["intaghand_mpjpe"] == pytest.approx(-0.41)
    assert rows["worse"].gaps["intaghand_mpjpe"] == pytest.approx(2.09)
    assert rows["better"].gaps["intaghand_mpvpe"] == pytest.approx(-1.03)
    assert cell(rows["better"], table.headline) == "7.00 (\u22120.41)"
    assert rows["worse"].values["mrrpe"] == pytest.approx(30.0) and "mrrpe" not in rows["worse"].gaps
    assert table.columns[0].header.endswith("↓")
    assert "MPJPE (IntagHand protocol)" in to_html([table]) and "MPJPE (IntagHand protocol)" in to_markdown([table])


def test_freihand_columns_from_logged_names_pa_mpjpe_headline_f_scores_higher_is_better():
    entries = [entry("a", "freihand"), entry("b", "freihand")]
    results = [{"hands/procrustes_pa_mpjpe": 6.5, "hands/procrustes_pa_mpvpe": 6.8, "hands/procrustes_f5": 0.72,
                "hands/procrustes_f15": 0.98, "hands/procrustes_mpjpe": 40.0},
               {"hands/procrustes_pa_mpjpe": 5.9, "hands/procrustes_f5": 0.70}]
    [table] = build_tables(entries, results, [])
    assert [m.id for m in table.columns] == ["pa_mpjpe", "pa_mpvpe", "f5", "f15"]
    assert [(r.rank, r.system) for r in table.rows] == [(1, "b"), (2, "a")]
    f5 = BENCHMARKS["freihand"].metric("f5")
    assert f5.higher_is_better and f5.unit == "fraction" and not BENCHMARKS["freihand"].headline.higher_is_better
    assert by_name(table)["a"].values["f5"] == pytest.approx(0.72)


def test_packaged_acr_numbers_on_their_columns():
    records = {(r.system, r.benchmark, r.metric): r for r in load_reported()}
    intaghand = records[("IntagHand (ACR's baseline)", "interhand26m", "intaghand_mpjpe")]
    assert intaghand.value == 8.80 and "README" in intaghand.source
    assert records[("IntagHand (ACR's baseline)", "interhand26m", "intaghand_mpvpe")].value == 9.03
    assert records[("ACR", "interhand26m", "mpjpe")].value == 8.09
    assert all(not BENCHMARKS[r.benchmark].metric(r.metric).higher_is_better
               for r in records.values() if r.benchmark in ("interhand26m", "freihand"))


def test_table_without_a_benchmark_keeps_hand_errors_lower_is_better():
    # the demo's ACR entry has no benchmark: its logged errors are still mm, ranked ascending
    entries = [entry("a", None, "acr.yaml"), entry("b", None, "acr.yaml")]
    results = [{"hands/intaghand_mpjpe": 30.0, "hands/internet_mpjpe_all": 40.0, "hands/procrustes_f5": 0.2,
                "hands/intaghand_mpjpe_right": 31.0},
               {"hands/intaghand_mpjpe": 20.0, "hands/internet_mpjpe_all": 45.0, "hands/procrustes_f5": 0.3,
                "hands/intaghand_mpjpe_right": 21.0}]
    [table] = build_tables(entries, results, [])
    columns = {m.id: m for m in table.columns}
    assert table.headline.id == "hands/intaghand_mpjpe" and [r.system for r in table.rows] == ["b", "a"]
    assert not columns["hands/internet_mpjpe_all"].higher_is_better and columns["hands/internet_mpjpe_all"].unit == "mm"
    assert not columns["hands/intaghand_mpjpe_right"].higher_is_better
    assert columns["hands/procrustes_f5"].higher_is_better
    assert table.ranked_by == "Ranked by hands/intaghand_mpjpe, mm (lower is better)"


def test_coco_karpathy_table_from_logged_caption_metrics_x100_with_cvlnm_and_cnm_reported(tmp_path):
    # CaptionMetrics logs fractions under the head (captions/cider_d ...): shown ×100 as papers print them.
    logged = {"test/captions/cider_d": 1.2, "test/captions/bleu_1": 0.75, "test/captions/bleu_4": 0.3,
              "test/captions/rouge_l": 0.55, "test/captions/loss": 2.0}
    [table] = build_tables([entry("ours", "coco-karpathy")], [logged])
    assert [m.id for m in table.columns] == ["cider", "bleu1", "bleu4", "rouge_l"]
    assert table.headline.label == "CIDEr-D" and table.headline.header == "CIDEr-D, ×100 ↑"
    rows = by_name(table)
    assert rows["CVLNM"].values == {"cider": 129.5} and rows["CNM (CVLNM's predecessor)"].values == {"cider": 127.9}
    assert [(r.rank, r.system) for r in table.rows] == [(1, "CVLNM"), (2, "CNM (CVLNM's predecessor)"), (3, "ours")]
    ours = rows["ours"]
    assert ours.values == pytest.approx({"cider": 120.0, "bleu1": 75.0, "bleu4": 30.0, "rouge_l": 55.0})
    assert ours.gaps == {"cider": -9.5} and cell(ours, table.headline) == "120.0 (−9.5)"
    # an entries file may spell the key with underscores
    (tmp_path / "e.yaml").write_text("entries: [{name: a, checkpoint: a.ckpt, config: c.yaml, benchmark: coco_karpathy}]")
    assert read_entries(tmp_path / "e.yaml")[0].benchmark == "coco-karpathy"


def test_caption_table_without_a_benchmark_ranks_by_cider_d():
    entries = [entry("a", None, "cvlnm.yaml"), entry("b", None, "cvlnm.yaml")]
    results = [{"captions/cider_d": 1.1, "captions/bleu_4": 0.4}, {"captions/cider_d": 1.4, "captions/bleu_4": 0.3}]
    [table] = build_tables(entries, results, [])
    assert table.headline.id == "captions/cider_d" and [r.system for r in table.rows] == ["b", "a"]
    assert by_name(table)["b"].values["captions/cider_d"] == pytest.approx(140.0)  # ×100, as the benchmark column


V2C_KEYS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d", "meteor")
V2C_COLUMNS = {"bleu_1": "bleu1", "bleu_2": "bleu2", "bleu_3": "bleu3", "bleu_4": "bleu4", "rouge_l": "rouge_l",
               "cider_d": "cider", "meteor": "meteor"}


def _hybridnet_results() -> dict[str, float]:
    """HybridNet's test metrics: every (task, type, key) a distinct fraction, plus the caption's
    own scores, which must never fill a V2C cell."""
    results = {f"test/v2c/caption/{key}": 0.99 for key in V2C_KEYS}
    for t, task in enumerate(("completion", "generation")):
        for k, kind in enumerate(("intention", "effect", "attribute")):
            for m, key in enumerate(V2C_KEYS):
                results[f"test/v2c/{task}_{kind}/{key}"] = 0.1 * (t + 1) + 0.01 * (k + 1) + 0.001 * (m + 1)
    return results


def test_v2c_tables_read_hybridnets_task_type_keys_exactly_x100():
    results = _hybridnet_results()
    for task in ("completion", "generation"):
        for kind in ("intention", "effect", "attribute"):
            key = f"v2c-{task}-{kind}"
            [table] = build_tables([entry("ours", key)], [results], [])
            ours = by_name(table)["ours"]
            ids = ["bleu1"] if (task, kind) == ("completion", "attribute") else [
                "cider", "bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l"]
            assert [m.id for m in table.columns] == ids and table.headline.id == ids[0]
            expected = {V2C_COLUMNS[k]: 100 * results[f"test/v2c/{task}_{kind}/{k}"] for k in V2C_KEYS
                        if V2C_COLUMNS[k] in ids}
            assert ours.values == pytest.approx(expected, abs=1e-9), key
            assert [m.keys for m in table.columns] == [(f"v2c/{task}_{kind}/{k}",) for k in
                                                       ("cider_d", "bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor",
                                                        "rouge_l") if V2C_COLUMNS[k] in ids]
    # no fallback to another head: with only the caption's scores (or bare keys) the cells stay empty
    [table] = build_tables([entry("ours", "v2c-completion-intention")],
                           [{"v2c/caption/cider_d": 0.5, "cider_d": 0.4, "v2c/completion_effect/cider_d": 0.3,
                             "completion_intention/cider_d": 0.2}], [])
    assert by_name(table)["ours"].values == {}
    # a cell as printed: CIDEr-D 0.116 (completion, intention) -> 11.6 x100, one decimal
    [table] = build_tables([entry("ours", "v2c-completion-intention")], [results], [])
    assert cell(by_name(table)["ours"], table.headline) == "11.6"


def test_v2c_tables_hold_hybridnet_and_v2c_readme_baselines_as_reported_rows():
    results = _hybridnet_results()
    tables = {t.key: t for t in build_tables([entry("ours", k) for k in BENCHMARKS if k.startswith("v2c-")],
                                             [results] * 6)}
    source = "V2C official repository (jacobswan1/Video2Commonsense) README, V2C-completion results (04/2021)"
    baselines = ["Attention+Video2Text (V2C baseline)", "Transformer Enc+Dec (V2C baseline)", "V2C-Transformer"]
    effect = by_name(tables["v2c-completion-effect"])
    assert effect["Attention+Video2Text (V2C baseline)"].values == pytest.approx({
        "cider": 18.5, "bleu1": 27.7, "bleu2": 16.9, "bleu3": 13.3, "bleu4": 11.5, "meteor": 16.0, "rouge_l": 23.9})
    assert effect["Transformer Enc+Dec (V2C baseline)"].values == pytest.approx({
        "cider": 37.7, "bleu1": 35.3, "bleu2": 26.6, "bleu3": 23.2, "bleu4": 21.0, "meteor": 21.4, "rouge_l": 31.1})
    assert effect["V2C-Transformer"].values == pytest.approx({
        "cider": 40.8, "bleu1": 36.5, "bleu2": 28.1, "bleu3": 24.6, "bleu4": 22.4, "meteor": 22.2, "rouge_l": 32.3})
    intention = by_name(tables["v2c-completion-intention"])
    assert intention["Attention+Video2Text (V2C baseline)"].values == pytest.approx({
        "cider": 23.2, "bleu1": 54.3, "bleu2": 40.0, "bleu3": 27.4, "bleu4": 24.7, "meteor": 19.4, "rouge_l": 45.6})
    assert intention["Transformer Enc+Dec (V2C baseline)"].values == pytest.approx({
        "cider": 57.4, "bleu1": 58.3, "bleu2": 45.7, "bleu3": 36.3, "bleu4": 31.1, "meteor": 27.4, "rouge_l": 53.2})
    assert intention["V2C-Transformer"].values == pytest.approx({
        "cider": 62.0, "bleu1": 60.8, "bleu2": 48.4, "bleu3": 39.1, "bleu4": 34.1, "meteor": 28.5, "rouge_l": 54.6})
    attribute = by_name(tables["v2c-completion-attribute"])
    assert [attribute[name].values for name in baselines] == [
        pytest.approx({"bleu1": 36.5}), pytest.approx({"bleu1": 40.7}), pytest.approx({"bleu1": 47.3})]
    for key in ("v2c-completion-intention", "v2c-completion-effect", "v2c-completion-attribute"):
        rows = by_name(tables[key])
        assert {r.system for r in tables[key].rows} == {"ours", "HybridNet", *baselines}
        for name in baselines:
            assert rows[name].kind == "reported" and set(rows[name].sources.values()) == {source}
    # HybridNet (best reported) is what our gaps are measured against: intention CIDEr-D 92.6
    ours = by_name(tables["v2c-completion-intention"])["ours"]
    assert ours.gaps["cider"] == pytest.approx(-81.0)
    assert [r.system for r in tables["v2c-completion-intention"].rows] == [
        "HybridNet", "V2C-Transformer", "Transformer Enc+Dec (V2C baseline)", "Attention+Video2Text (V2C baseline)",
        "ours"]
    # generation tables: HybridNet only (V2C's README reports completion)
    for key in ("v2c-generation-intention", "v2c-generation-effect", "v2c-generation-attribute"):
        assert {r.system for r in tables[key].rows} == {"ours", "HybridNet"}
    markdown = to_markdown(list(tables.values()))
    assert "| 3 | Transformer Enc+Dec (V2C baseline) (reported) | 57.4 |" in markdown
