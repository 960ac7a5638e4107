"""``polyvision leaderboard ENTRIES.yaml``: test checkpoints on their datasets and rank them.

ENTRIES.yaml::

    entries:
      - name: OmniFD Swin-T, FF++          # row label
        checkpoint: runs/.../last.ckpt     # the model is rebuilt from this alone
        config: configs/omnifd/ffpp_swin_t.yaml   # only its `data:` section is used
        benchmark: ffpp                    # optional: key of the papers' reported numbers
        data: {root: /data}                # optional: overrides of the data init_args, merged
                                           # key by key, e.g. {sources: {video: {init_args: {root: /data}}}}

Writes ``leaderboard.md``, ``leaderboard.csv`` and ``leaderboard.html``: one row per entry,
one column per test metric, and the papers' reported number where one is known
(from the papers, official repositories or baselines' READMEs, each entry naming its source;
"n/a" otherwise, never a guess).
"""
from __future__ import annotations

import argparse
import csv
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from polyvision.errors import ConfigError, DataError

# benchmark -> what the papers report, verbatim with its source.
PAPER_NUMBERS: dict[str, str] = {
    "ffpp": "n/a (OmniFD's result tables were not reachable)",
    "forgerynet": "n/a (OmniFD's result tables were not reachable)",
    "lavdf": "BA-TFD+ baseline: AP@0.5/0.75/0.95 96.30/84.96/4.44; AR@100/50/20/10 81.62/80.48/79.40/78.75 (LAV-DF README)",
    "ped2": "VEC baseline: frame AUROC 97.3% micro (VEC_VAD README)",
    "avenue": "VEC baseline: frame AUROC 90.2% micro (VEC_VAD README)",
    "shanghaitech": "VEC baseline: frame AUROC 74.8% micro (VEC_VAD README)",
    "interhand26m": "ACR: MPJPE 7.41 mm (third-party aggregator, unverified)",
    "coco-karpathy": "CVLNM: CIDEr-D 129.5 (paper abstract)",
    "v2c": "n/a (HybridNet's tables were not reachable)",
}


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
            benchmark=item.get("benchmark"),
            data=dict(item.get("data") or {}),
        ))
    return entries


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


def table(entries: list[Entry], results: list[dict[str, float]]) -> tuple[list[str], list[list[str]]]:
    metric_names = sorted({key for result in results for key in result if not key.endswith("loss")})
    header = ["model", "benchmark", *metric_names, "paper (reported)"]
    rows = []
    for entry, result in zip(entries, results):
        values = [f"{result[m]:.4f}" if m in result else "" for m in metric_names]
        paper = PAPER_NUMBERS.get(entry.benchmark or "", "n/a")
        rows.append([entry.name, entry.benchmark or "", *values, paper])
    return header, rows


def to_markdown(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)]) + "\n"


def to_csv(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def to_html(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>polyvision leaderboard</title><style>"
            "body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
            "td{text-align:right}td:first-child,td:last-child{text-align:left}</style></head><body>"
            f"<h1>polyvision leaderboard</h1><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            "<p>Metrics are fractions in [0, 1] unless named otherwise; the paper column quotes the source.</p>"
            "</body></html>\n")


def write_leaderboard(entries: list[Entry], results: list[dict[str, float]], output_dir: Path) -> dict[str, Path]:
    header, rows = table(entries, results)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": output_dir / "leaderboard.md", "csv": output_dir / "leaderboard.csv", "html": output_dir / "leaderboard.html"}
    paths["md"].write_text(to_markdown(header, rows))
    paths["csv"].write_text(to_csv(header, rows))
    paths["html"].write_text(to_html(header, rows))
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
