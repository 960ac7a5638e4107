"""``polyvision leaderboard ENTRIES.yaml``: test checkpoints on their datasets and rank them.

ENTRIES.yaml::

    entries:
      - name: OmniFD Swin-T, FF++          # row label
        checkpoint: runs/.../last.ckpt     # the model is rebuilt from this alone
        config: configs/omnifd/ffpp_swin_t.yaml   # only its `data:` section is used
        benchmark: ffpp                    # optional: a key of BENCHMARKS (its table, columns, units
                                           # and the papers' reported numbers)
        data: {root: /data}                # optional: overrides of the data init_args, merged
                                           # key by key, e.g. {sources: {video: {init_args: {root: /data}}}}

Writes one table per benchmark (entries without one: one table per config), each ranked by
the benchmark's headline metric, with that benchmark's standard metrics only, in the units
the field reports (AUC, AP, AR and accuracy in %), into

- ``leaderboard.md``: a section per benchmark;
- ``leaderboard.csv``: long format, one line per (table, row, metric): ``benchmark, rank,
  system, kind (ours | reported), metric, label, unit, value, reported, gap, source``;
- ``leaderboard.html``: the same tables; a click on a header sorts by that column.

The numbers the papers (or official repositories) report are data, ``reported_numbers.yaml``
beside this module (system, benchmark, metric, value, unit, source per record). They appear
as "reported" rows in the same columns, and each of our values is followed by its gap to the
best reported value of its column (ours − reported, in the column's unit: points for %).
Nothing is shown where no number is known, never a guess.
"""
from __future__ import annotations

import argparse
import csv
import html
import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from polyvision.errors import ConfigError, DataError

REPORTED_NUMBERS = Path(__file__).with_name("reported_numbers.yaml")

# ------------------------------------------------------------------ units
# value in unit u == value * _UNITS[u][1] in the base unit of dimension _UNITS[u][0]
_UNITS: dict[str, tuple[str, float]] = {
    "fraction": ("ratio", 1.0), "%": ("ratio", 0.01), "x100": ("ratio", 0.01),
    "m": ("length", 1.0), "mm": ("length", 1e-3),
}


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit`` (fraction <-> % / x100, m <-> mm)."""
    if from_unit not in _UNITS or to_unit not in _UNITS:
        raise ValueError(f"unknown unit {from_unit!r} or {to_unit!r} (known: {', '.join(_UNITS)})")
    (dim_from, f_from), (dim_to, f_to) = _UNITS[from_unit], _UNITS[to_unit]
    if dim_from != dim_to:
        raise ValueError(f"cannot convert {from_unit} to {to_unit}")
    return value * f_from / f_to


# ------------------------------------------------------------------ benchmarks
@dataclass(frozen=True)
class Metric:
    """One column: ``id`` (what reported records name), its header ``label``, the display
    ``unit``, our test-metric ``keys`` that hold it (without ``test/``; the first one present
    wins), the unit polyvision logs it in, the decimals shown and its direction."""

    id: str
    label: str
    unit: str
    keys: tuple[str, ...]
    logged_unit: str = "fraction"
    decimals: int = 2
    higher_is_better: bool = True

    @property
    def header(self) -> str:
        unit = {"fraction": "", "x100": ", ×100"}.get(self.unit, f", {self.unit}")
        return f"{self.label}{unit} {'↑' if self.higher_is_better else '↓'}"

    def ours(self, result: dict[str, float]) -> float | None:
        """Our value in the display unit, or None when no key of this column was logged."""
        for key in self.keys:
            value = result.get(key)
            if value is not None and not math.isnan(float(value)):
                return convert(float(value), self.logged_unit, self.unit)
        return None


@dataclass(frozen=True)
class Benchmark:
    key: str
    title: str
    metrics: tuple[Metric, ...]  # in order of precedence: the first that a table's rows hold ranks it

    @property
    def headline(self) -> Metric:
        return self.metrics[0]

    def metric(self, metric_id: str) -> Metric | None:
        return next((m for m in self.metrics if m.id == metric_id), None)


def _pct(id: str, label: str, keys: Iterable[str], decimals: int = 2) -> Metric:
    return Metric(id, label, "%", tuple(keys), decimals=decimals)


def _frac(id: str, label: str, keys: Iterable[str], higher_is_better: bool = True) -> Metric:
    return Metric(id, label, "fraction", tuple(keys), decimals=3, higher_is_better=higher_is_better)


def _classification(head: str, what: str, balanced: bool = False) -> list[Metric]:
    """AUC and accuracy of a classification head; whole-video scores (``<head>_full``) get
    their own columns, since they follow another protocol than the first-window ones."""
    acc = "balanced_acc" if balanced else "acc"
    acc_label = f"{what} ACC" + (" (balanced)" if balanced else "")
    metrics = [_pct(f"{head}_auc", f"{what} AUC", [f"{head}/auc"]), _pct(f"{head}_acc", acc_label, [f"{head}/{acc}"])]
    if head == "video":
        metrics += [_pct("video_full_auc", "video AUC (whole video)", ["video_full/auc"]),
                    _pct("video_full_acc", acc_label + " (whole video)", [f"video_full/{acc}"])]
    return metrics


def _temporal(ap: Iterable[str], ar: Iterable[int]) -> list[Metric]:
    """AP@tIoU and AR@N of the temporal head; whole-video values (``temporal_full``) first."""
    return ([_pct(f"ap@{t}", f"AP@{t}", [f"temporal_full/ap@{t}", f"temporal/ap@{t}"]) for t in ap]
            + [_pct(f"ar@{n}", f"AR@{n}", [f"temporal_full/ar@{n}", f"temporal/ar@{n}"]) for n in ar])


def _anomaly() -> tuple[Metric, ...]:
    return (_pct("frame_auroc_micro", "frame AUROC (micro)", ["frame_auroc_micro"], decimals=1),
            _pct("frame_auroc_macro", "frame AUROC (macro)", ["frame_auroc_macro"], decimals=1))


def _mm(id: str, label: str, keys: Iterable[str]) -> Metric:
    """An error in mm (lower is better); the hand head logs millimetres."""
    return Metric(id, label, "mm", tuple(keys), logged_unit="mm", decimals=2, higher_is_better=False)


def _interhand() -> tuple[Metric, ...]:
    """ACR's InterHand2.6M table: IntagHand's protocol (root-aligned, scale-normalised MPJPE and
    MPVPE on the interacting-hand 5 fps test set; ``hands/intaghand_*``) first, then InterNet's
    (``hands/internet_*``: MRRPE and root-relative MPJPE over all / single / interacting hands).
    The ``*_ih``/``*_sh`` MPVPE columns hold reported numbers only (we log no such split)."""
    return (_mm("intaghand_mpjpe", "MPJPE (IntagHand protocol)", ["hands/intaghand_mpjpe"]),
            _mm("intaghand_mpvpe", "MPVPE (IntagHand protocol)", ["hands/intaghand_mpvpe"]),
            _mm("mrrpe", "MRRPE", ["hands/internet_mrrpe"]),
            _mm("mpjpe", "MPJPE (all)", ["hands/internet_mpjpe_all", "hand/mpjpe", "mpjpe"]),
            _mm("mpvpe", "MPVPE (all)", ["hand/mpvpe", "mpvpe"]),
            _mm("mpjpe_ih", "MPJPE (interacting)", ["hands/internet_mpjpe_interacting", "hand/mpjpe_ih", "mpjpe_ih"]),
            _mm("mpvpe_ih", "MPVPE (interacting)", ["hand/mpvpe_ih", "mpvpe_ih"]),
            _mm("mpjpe_sh", "MPJPE (single)", ["hands/internet_mpjpe_single", "hand/mpjpe_sh", "mpjpe_sh"]),
            _mm("mpvpe_sh", "MPVPE (single)", ["hand/mpvpe_sh", "mpvpe_sh"]))


def _freihand() -> tuple[Metric, ...]:
    """FreiHAND's evaluation (``hands/procrustes_*``): Procrustes-aligned errors in mm and the
    aligned vertex F-scores at 5 and 15 mm as fractions, as the FreiHAND papers print them."""
    return (_mm("pa_mpjpe", "PA-MPJPE", ["hands/procrustes_pa_mpjpe"]),
            _mm("pa_mpvpe", "PA-MPVPE", ["hands/procrustes_pa_mpvpe"]),
            _frac("f5", "F@5 mm", ["hands/procrustes_f5"]),
            _frac("f15", "F@15 mm", ["hands/procrustes_f15"]))


CAPTION_METRICS = {  # metric id: (column label, the key CaptionMetrics logs under its head)
    "cider": ("CIDEr-D", "cider_d"), "bleu1": ("BLEU-1", "bleu_1"), "bleu2": ("BLEU-2", "bleu_2"),
    "bleu3": ("BLEU-3", "bleu_3"), "bleu4": ("BLEU-4", "bleu_4"), "meteor": ("METEOR", "meteor"),
    "rouge_l": ("ROUGE-L", "rouge_l"), "spice": ("SPICE", "spice")}


def _captions(metrics: Iterable[str] = ("cider", "bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l"),
              head: str = "captions", exact: bool = False) -> tuple[Metric, ...]:
    """coco-caption scores ×100, as captioning papers print them (CIDEr-D first: the headline);
    ours are ``<head>/<key>`` of ``CaptionMetrics`` (fractions, CIDEr-D unscaled), else the bare
    ``<key>`` unless ``exact`` (a model that logs several caption heads, e.g. HybridNet's
    ``completion_intention/cider_d`` and ``caption/cider_d``, must fill a column from one head only)."""
    return tuple(Metric(m, CAPTION_METRICS[m][0], "x100",
                        (f"{head}/{CAPTION_METRICS[m][1]}",) + (() if exact else (CAPTION_METRICS[m][1],)),
                        decimals=1) for m in metrics)


def _v2c(task: str, kind: str) -> Benchmark:
    """A V2C table: HybridNet logs ``test/v2c/<task>_<kind>/<key>`` (task completion | generation,
    kind intention | effect | attribute; keys of ``CaptionMetrics`` under V2C's protocol), read
    exactly. Attribute completion has a BLEU-1 column only, as V2C's and HybridNet's tables."""
    metrics = ["bleu1"] if (task, kind) == ("completion", "attribute") else \
        ["cider", "bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l"]
    return Benchmark(f"v2c-{task}-{kind}", f"V2C {task}, {kind}" + (" + caption" if task == "generation" else ""),
                     _captions(metrics, head=f"v2c/{task}_{kind}", exact=True))


def _synthetic_v2c() -> Benchmark:
    """HybridNet on the built-in synthetic V2C (``polyvision demo``): CIDEr-D ×100 of each
    output, completion intention first; no reported numbers (the data is ours)."""
    outputs = [f"{task}_{kind}" for task in ("completion", "generation") for kind in ("intention", "effect", "attribute")]
    return Benchmark("synthetic-v2c", "synthetic V2C (built-in), CIDEr-D per output", tuple(
        Metric(f"{output}_cider", f"CIDEr-D {output.replace('_', ' ')}", "x100", (f"v2c/{output}/cider_d",), decimals=1)
        for output in [*outputs, "caption"]))


BENCHMARKS: dict[str, Benchmark] = {b.key: b for b in [
    Benchmark("ffpp", "FaceForensics++", (
        *_classification("image", "image"), *_classification("video", "video"),
        _frac("pbca", "PBCA", ["spatial/pbca"]), _frac("iinc", "IINC", ["spatial/iinc"], higher_is_better=False),
        _frac("soft_iou", "soft IoU", ["spatial/soft_iou"]))),
    Benchmark("forgerynet", "ForgeryNet (validation split)", (
        *_classification("image", "image", balanced=True), *_classification("video", "video", balanced=True),
        *_temporal(["0.5", "0.75", "0.9"], [2, 5]),
        _frac("iou@0.1", "IoU@0.1", ["spatial/iou@0.1"]), _frac("iou@0.2", "IoU@0.2", ["spatial/iou@0.2"]),
        _frac("iou_diff@0.01", "IoU-diff@0.01", ["spatial/iou_diff@0.01"]),
        _frac("iou_diff@0.05", "IoU-diff@0.05", ["spatial/iou_diff@0.05"]),
        _frac("iou_diff@0.1", "IoU-diff@0.1", ["spatial/iou_diff@0.1"]),
        _frac("l1", "L1", ["spatial/l1"], higher_is_better=False))),
    Benchmark("lavdf", "LAV-DF (temporal forgery localization)",
              tuple(_temporal(["0.5", "0.75", "0.95"], [100, 50, 20, 10]))),
    Benchmark("ped2", "UCSD Ped2", _anomaly()),
    Benchmark("avenue", "CUHK Avenue", _anomaly()),
    Benchmark("shanghaitech", "ShanghaiTech Campus", _anomaly()),
    Benchmark("interhand26m", "InterHand2.6M (5 fps test)", _interhand()),
    Benchmark("freihand", "FreiHAND (evaluation set)", _freihand()),
    Benchmark("coco-karpathy", "MS-COCO captions, Karpathy test split (5000 images, coco-caption)",
              _captions(("cider", "bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "spice"))),
    Benchmark("coco-server-c40", "MS-COCO captions, official test server (c40)", _captions(["cider"])),
    *[_v2c(task, kind) for task in ("completion", "generation") for kind in ("intention", "effect", "attribute")],
    _synthetic_v2c(),
]}

# Test metrics that are diagnostics, not results: never a column of a table without a benchmark.
_DIAGNOSTIC = re.compile(r"(^|/)(loss|sse_clean|sse_perturbed)$|loss$|skipped")
# Headline guesses for a table without a benchmark, in order.
_GUESSED_HEADLINES = ("captions/cider_d", "hands/intaghand_mpjpe", "frame_auroc_micro", "image/auc", "video_full/auc", "video/auc", "temporal_full/ap@0.5",
                      "temporal/ap@0.5")


# ------------------------------------------------------------------ reported numbers
@dataclass(frozen=True)
class Reported:
    system: str
    benchmark: str
    metric: str
    value: float
    unit: str
    source: str


def load_reported(path: Path = REPORTED_NUMBERS) -> list[Reported]:
    """The reported numbers, each checked: known benchmark and metric, a unit convertible to
    the column's, a non-empty source."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise DataError(path, f"cannot read reported numbers ({str(error).splitlines()[0]})") from None
    items = document.get("records") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise DataError(path, "expected a 'records:' list")
    records = []
    for index, item in enumerate(items):
        where = f"records[{index}]"
        if not isinstance(item, dict):
            raise DataError(path, f"{where}: not a mapping")
        missing = [k for k in ("system", "benchmark", "metric", "value", "unit", "source") if not item.get(k) and item.get(k) != 0]
        if missing:
            raise DataError(path, f"{where}: missing field '{missing[0]}'")
        benchmark = BENCHMARKS.get(str(item["benchmark"]))
        if benchmark is None:
            raise DataError(path, f"{where}: unknown benchmark '{item['benchmark']}'")
        metric = benchmark.metric(str(item["metric"]))
        if metric is None:
            raise DataError(path, f"{where}: benchmark '{benchmark.key}' has no metric '{item['metric']}'")
        try:
            convert(float(item["value"]), str(item["unit"]), metric.unit)
        except (TypeError, ValueError) as error:
            raise DataError(path, f"{where}: {error}") from None
        records.append(Reported(str(item["system"]), benchmark.key, metric.id, float(item["value"]),
                                str(item["unit"]), str(item["source"]).strip()))
    return records


@dataclass
class Entry:
    name: str
    checkpoint: Path
    config: Path
    benchmark: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def read_entries(path: Path) -> list[Entry]:
    if not path.is_file():
        raise DataError(path, "leaderboard entries file not found")
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise DataError(path, f"not valid YAML ({str(error).splitlines()[0]})") from None
    items = document.get("entries") if isinstance(document, dict) else None
    if not isinstance(items, list) or not items:
        raise DataError(path, "expected a non-empty 'entries:' list")
    entries = []
    for index, item in enumerate(items):
        for key in ("name", "checkpoint", "config"):
            if not isinstance(item, dict) or key not in item:
                raise DataError(path, f"entries[{index}]: missing field '{key}'")
        base = path.parent
        entries.append(Entry(
            name=str(item["name"]),
            checkpoint=resolve(item["checkpoint"], base),
            config=resolve(item["config"], base),
            benchmark=benchmark_key(item.get("benchmark")),
            data=dict(item.get("data") or {}),
        ))
    return entries


def benchmark_key(name: Any) -> str | None:
    """A benchmark name as given, or the key it spells with underscores for hyphens
    (``coco_karpathy`` -> ``coco-karpathy``)."""
    if name is None:
        return None
    name = str(name)
    alias = name.replace("_", "-")
    return alias if name not in BENCHMARKS and alias in BENCHMARKS else name


def resolve(value: str, base: Path) -> Path:
    path = Path(str(value)).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return base / path


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``overrides``, nested dicts merged key by key (so an override can
    reach one source's ``init_args`` of a ``MultiSourceDataModule`` without restating it)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_overrides(merged[key], value)
        else:
            merged[key] = value
    return merged


def build_datamodule(config: Path, overrides: dict[str, Any]):
    from jsonargparse import ArgumentParser
    from pytorch_lightning import LightningDataModule

    from polyvision.models.factory import check_trusted

    if not config.is_file():
        raise DataError(config, "config not found")
    spec = (yaml.safe_load(config.read_text()) or {}).get("data")
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise DataError(config, "no 'data:' section with a class_path")
    check_trusted(spec, str(config))
    spec = {"class_path": spec["class_path"], "init_args": merge_overrides(spec.get("init_args") or {}, overrides)}
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data")
    try:
        return parser.instantiate_classes(parser.parse_object({"data": spec})).data
    except Exception as error:  # noqa: BLE001 - jsonargparse reports config problems generically
        if isinstance(error, (ConfigError, DataError)):
            raise
        raise ConfigError(f"{config}: data: {str(error).splitlines()[0]}") from error


def evaluate(entry: Entry, accelerator: str = "auto") -> dict[str, float]:
    import pytorch_lightning as pl

    from polyvision.models.factory import load_model

    model = load_model(entry.checkpoint)
    datamodule = build_datamodule(entry.config, entry.data)
    trainer = pl.Trainer(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                         enable_model_summary=False)
    results = trainer.test(model, datamodule=datamodule, verbose=False)
    metrics: dict[str, float] = {}
    for result in results:
        metrics.update({key.removeprefix("test/"): float(value) for key, value in result.items()})
    return metrics


# ------------------------------------------------------------------ tables
@dataclass
class Row:
    system: str
    kind: str  # "ours" or "reported"
    values: dict[str, float]  # metric id -> value in the column's unit
    gaps: dict[str, float] = field(default_factory=dict)  # metric id -> ours - best reported
    sources: dict[str, str] = field(default_factory=dict)  # metric id -> source (reported rows)
    rank: int | None = None


@dataclass
class Table:
    key: str  # the benchmark, or "config:<path>" for entries without one
    title: str
    columns: list[Metric]
    rows: list[Row]
    note: str = ""

    @property
    def headline(self) -> Metric:
        return self.columns[0]

    def reference(self, metric: Metric) -> float | None:
        """The best reported value of a column (what our gaps are measured against)."""
        values = [r.values[metric.id] for r in self.rows if r.kind == "reported" and metric.id in r.values]
        if not values:
            return None
        return max(values) if metric.higher_is_better else min(values)

    @property
    def ranked_by(self) -> str:
        m = self.headline
        unit = {"fraction": "", "x100": ", ×100"}.get(m.unit, f", {m.unit}")
        return f"Ranked by {m.label}{unit} ({'higher' if m.higher_is_better else 'lower'} is better)"


def rank(rows: list[Row], headline: Metric) -> list[Row]:
    """Rows with the headline value first, best first (ties keep their order), then the rest
    unranked in their order."""
    have = [r for r in rows if headline.id in r.values]
    rest = [r for r in rows if headline.id not in r.values]
    have.sort(key=lambda r: -r.values[headline.id] if headline.higher_is_better else r.values[headline.id])
    for position, row in enumerate(have, start=1):
        row.rank = position
    for row in rest:
        row.rank = None
    return have + rest


def _group_key(entry: Entry) -> str:
    return entry.benchmark if entry.benchmark else f"config:{entry.config}"


def _generic_columns(results: list[dict[str, float]]) -> list[Metric]:
    """Columns of a table without a benchmark: every logged metric except diagnostics, as
    logged (fractions, 4 decimals), the guessed headline first."""
    keys = sorted({k for r in results for k in r if not _DIAGNOSTIC.search(k)})
    headline = next((k for k in _GUESSED_HEADLINES if k in keys), keys[0] if keys else None)
    ordered = ([headline] if headline else []) + [k for k in keys if k != headline]
    return [_generic_metric(k) for k in ordered]


def _generic_metric(key: str) -> Metric:
    """A column named as logged; a key some benchmark knows keeps that metric's unit and
    direction (hand errors in mm, lower is better), any other is a fraction, higher is better."""
    for benchmark in BENCHMARKS.values():
        for metric in benchmark.metrics:
            if metric.keys and key == metric.keys[0]:
                return Metric(key, key, metric.unit, (key,), logged_unit=metric.logged_unit,
                              decimals=metric.decimals, higher_is_better=metric.higher_is_better)
    if key.startswith("hands/") and re.search(r"(mpjpe|mpvpe|mrrpe)", key):
        return Metric(key, key, "mm", (key,), logged_unit="mm", decimals=2, higher_is_better=False)
    return Metric(key, key, "fraction", (key,), decimals=4)


def build_tables(entries: list[Entry], results: list[dict[str, float]],
                 reported: list[Reported] | None = None) -> list[Table]:
    """One ranked table per benchmark (in order of first appearance), entries without one
    grouped by their config."""
    reported = load_reported() if reported is None else reported
    groups: dict[str, list[tuple[Entry, dict[str, float]]]] = {}
    for entry, result in zip(entries, results):
        result = {k.removeprefix("test/"): float(v) for k, v in result.items()}
        groups.setdefault(_group_key(entry), []).append((entry, result))
    tables = []
    for key, members in groups.items():
        benchmark = BENCHMARKS.get(key)
        if benchmark is not None:
            columns, title, note = list(benchmark.metrics), f"{benchmark.title} (`{key}`)", ""
        else:
            columns = _generic_columns([r for _, r in members])
            if key.startswith("config:"):
                title, note = f"entries without a benchmark, config `{key.removeprefix('config:')}`", ""
            else:
                title = f"`{key}`"
                note = f"no metric table for benchmark '{key}' (known: {', '.join(BENCHMARKS)}): metrics as logged"
            if not columns:
                columns = [Metric("none", "no metric", "fraction", ())]
        rows = [Row(entry.name, "ours", {m.id: v for m in columns if (v := m.ours(result)) is not None})
                for entry, result in members]
        by_system: dict[str, Row] = {}
        for record in reported:
            metric = benchmark.metric(record.metric) if benchmark is not None and record.benchmark == key else None
            if metric is None:
                continue
            row = by_system.setdefault(record.system, Row(record.system, "reported", {}))
            row.values[metric.id] = convert(record.value, record.unit, metric.unit)
            row.sources[metric.id] = record.source
        rows += by_system.values()
        # the standard columns that hold a number; the first of them is the headline (e.g. video
        # AUC on FF++ when no row has image AUC)
        columns = [m for m in columns if any(m.id in r.values for r in rows)] or columns[:1]
        table = Table(key, title, columns, rows, note)
        for row in rows:
            if row.kind == "ours":
                for metric in columns:
                    reference = table.reference(metric)
                    if reference is not None and metric.id in row.values:
                        row.gaps[metric.id] = round(row.values[metric.id] - reference, metric.decimals)
        table.rows = rank(rows, table.headline)
        tables.append(table)
    return tables


def _number(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _signed(value: float, decimals: int) -> str:
    text = f"{abs(value):.{decimals}f}"
    if float(text) == 0:
        return f"±{text}"
    return ("+" if value > 0 else "−") + text


def cell(row: Row, metric: Metric) -> str:
    """``96.10``, ``95.00 (−1.30)`` for ours with a reported reference, ``""`` when unknown."""
    if metric.id not in row.values:
        return ""
    text = _number(row.values[metric.id], metric.decimals)
    if metric.id in row.gaps:
        text += f" ({_signed(row.gaps[metric.id], metric.decimals)})"
    return text


def _system(row: Row) -> str:
    return f"{row.system} (reported)" if row.kind == "reported" else row.system


def _sources(table: Table) -> list[str]:
    lines = []
    for row in table.rows:
        if row.kind == "reported":
            for source in dict.fromkeys(row.sources.values()):
                lines.append(f"{row.system}: {source}")
    return lines


def _caption(table: Table) -> str:
    text = f"{table.ranked_by}. Units in the headers (↑ higher is better, ↓ lower)"
    if table.key not in BENCHMARKS:
        text += "; values as logged (fractions), diagnostics left out"
    if any(r.kind == "reported" for r in table.rows):
        text += "; (±x) after our value: ours − the best reported value of the column, in its unit (points for %)"
    elif table.key in BENCHMARKS:
        text += "; no reported number is known for this benchmark"
    return text + "."


def to_markdown(tables: list[Table]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"

    parts = ["# polyvision leaderboard\n"]
    for table in tables:
        parts.append(f"## {table.title}\n")
        if table.note:
            parts.append(f"{table.note}\n")
        parts.append(_caption(table) + "\n")
        header = ["#", "system", *(m.header for m in table.columns)]
        body = [[str(r.rank or "–"), _system(r), *(cell(r, m) for m in table.columns)] for r in table.rows]
        parts.append("\n".join([line(header), line(["---"] * len(header)), *map(line, body)]) + "\n")
        sources = _sources(table)
        if sources:
            parts.append("Reported numbers: " + "; ".join(sources) + ".\n")
    return "\n".join(parts)


CSV_FIELDS = ["benchmark", "rank", "system", "kind", "metric", "label", "unit", "value", "reported", "gap", "source"]


def to_csv(tables: list[Table]) -> str:
    """Long format: one line per (table, row, metric with a value); ``reported`` is the best
    reported value the ``gap`` is measured against (ours only)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for table in tables:
        for row in table.rows:
            for metric in table.columns:
                if metric.id not in row.values:
                    continue
                reference = table.reference(metric) if row.kind == "ours" else None
                writer.writerow([table.key, row.rank or "", row.system, row.kind, metric.id, metric.label, metric.unit,
                                 _number(row.values[metric.id], metric.decimals),
                                 "" if reference is None else _number(reference, metric.decimals),
                                 "" if metric.id not in row.gaps else _number(row.gaps[metric.id], metric.decimals),
                                 row.sources.get(metric.id, "")])
    return buffer.getvalue()


# Sorts a table by the clicked header: numbers by data-v (blank last), text otherwise; a
# second click reverses.
SORT_SCRIPT = """<script>
document.querySelectorAll("table.board th").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    var down = th.getAttribute("data-dir") !== "desc";
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("data-dir"); });
    th.setAttribute("data-dir", down ? "desc" : "asc");
    var rows = Array.prototype.slice.call(body.rows);
    function key(row) {
      var c = row.cells[col], v = c.getAttribute("data-v");
      return v === null ? c.textContent : (v === "" ? null : parseFloat(v));
    }
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === null || y === null) { return (x === null) - (y === null); }
      var d = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
      return down ? -d : d;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
</script>"""


def to_html(tables: list[Table]) -> str:
    sections = []
    for table in tables:
        head = "".join(f"<th title='click to sort'>{html.escape(h)}</th>"
                       for h in ["#", "system", *(m.header for m in table.columns)])
        body = []
        for row in table.rows:
            cells = [f"<td data-v='{row.rank or ''}'>{row.rank or '–'}</td>",
                     f"<td class='name'>{html.escape(_system(row))}</td>"]
            for metric in table.columns:
                value = row.values.get(metric.id)
                title = f" title='{html.escape(row.sources[metric.id], quote=True)}'" if metric.id in row.sources else ""
                cells.append(f"<td data-v='{'' if value is None else value!r}'{title}>{html.escape(cell(row, metric))}</td>")
            body.append(f"<tr class='{row.kind}'>" + "".join(cells) + "</tr>")
        sources = _sources(table)
        sections.append(
            f"<h2>{html.escape(table.title.replace('`', ''))}</h2>"
            + (f"<p>{html.escape(table.note)}</p>" if table.note else "")
            + f"<p>{html.escape(_caption(table))}</p>"
            + f"<table class='board' id='{html.escape(table.key, quote=True)}'><thead><tr>{head}</tr></thead>"
            + f"<tbody>{''.join(body)}</tbody></table>"
            + (f"<p class='src'>Reported numbers: {html.escape('; '.join(sources))}.</p>" if sources else ""))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>polyvision leaderboard</title><style>"
            "body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:.5em}"
            "td,th{border:1px solid #ccc;padding:4px 8px}th{cursor:pointer;background:#f4f4f4}"
            "td{text-align:right}td.name{text-align:left}tr.reported{color:#555;font-style:italic}"
            "th[data-dir=desc]::after{content:' ▼'}th[data-dir=asc]::after{content:' ▲'}.src{font-size:90%}"
            "</style></head><body><h1>polyvision leaderboard</h1>"
            + "".join(sections) + SORT_SCRIPT + "</body></html>\n")


def write_leaderboard(entries: list[Entry], results: list[dict[str, float]], output_dir: Path,
                      reported: list[Reported] | None = None) -> dict[str, Path]:
    tables = build_tables(entries, results, reported)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": output_dir / "leaderboard.md", "csv": output_dir / "leaderboard.csv", "html": output_dir / "leaderboard.html"}
    paths["md"].write_text(to_markdown(tables))
    paths["csv"].write_text(to_csv(tables))
    paths["html"].write_text(to_html(tables))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polyvision leaderboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("entries", type=Path, help="YAML file with an 'entries:' list (see module docs)")
    parser.add_argument("--output-dir", type=Path, default=Path("."), help="where leaderboard.md/.csv/.html go")
    parser.add_argument("--accelerator", default="auto")
    args = parser.parse_args(argv)
    entries = read_entries(args.entries)
    results = []
    for entry in entries:
        print(f"testing {entry.name}: {entry.checkpoint} on {entry.config}")
        results.append(evaluate(entry, args.accelerator))
    paths = write_leaderboard(entries, results, args.output_dir)
    print(paths["md"].read_text())
    print("leaderboard: " + ", ".join(str(p) for p in paths.values()))
    return 0
