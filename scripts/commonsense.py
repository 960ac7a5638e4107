"""What the user-facing commands do for video commonsense models (HybridNet).

- ``polyvision test``: :func:`commonsense_tables` turns the V2C metrics
  (``test/<head>/<task>_<type>/<key>`` and ``test/<head>/caption/<key>``) into one table per
  task, as papers print them (x100, one decimal); :class:`CommonsenseResults` keeps every test
  entry's generated caption and sentences, written by :func:`write_commonsense_results` as
  ``<stem>.test-commonsense.json`` beside the test metrics;
- ``polyvision infer``: :func:`commonsense_geometry` says what the checkpoint reads (decoded
  clips, or precomputed V2C features), :func:`clip_of` cuts a video's clip as the V2C
  datamodule's evaluation does, :func:`video_features` reads a video's feature files from the
  V2C folder (``--features DIR``) as its test split does, and :func:`contact_sheet` draws
  frames sampled from the video with the caption and the three sentences under them.
"""
from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch
from polyvision.errors import DataError
from polyvision.scripts.caption_pictures import GatheredResults

CMS_TYPES = ("intention", "effect", "attribute")
TASKS = ("completion", "generation")
# Table columns: (metric key, header), in the papers' order; METEOR only when it was computed.
COLUMNS = (("cider_d", "CIDEr-D"), ("bleu_1", "BLEU-1"), ("bleu_2", "BLEU-2"), ("bleu_3", "BLEU-3"),
           ("bleu_4", "BLEU-4"), ("meteor", "METEOR"), ("rouge_l", "ROUGE-L"))
OPTIONAL_COLUMNS = ("meteor",)
SHEET_FRAMES, SHEET_COLUMNS = 8, 4


def is_commonsense(model: Any) -> bool:
    """Whether ``model`` has HybridNet heads (a caption and commonsense sentences per video)."""
    heads = getattr(model, "heads", None)
    if heads is None:
        return False
    from polyvision.heads.commonsense import HybridNetHead

    return any(isinstance(head, HybridNetHead) for head in heads.values())


# ------------------------------------------------------------------ test: tables
def commonsense_tables(metrics: dict[str, float], stage: str = "test"
                       ) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """``(tables, rest)``: per head with V2C keys, a ``V2C completion`` table (rows intention,
    effect, attribute) and a ``V2C generation`` table (rows caption, ``<type> + caption``);
    each ``{"title", "columns": [header, ...], "rows": [[label, "12.3" or "-", ...], ...]}``,
    values x100 with one decimal. ``rest``: every metric no table shows (loss, skipped
    counts, other scores), for the flat table."""
    pattern = re.compile(rf"^{re.escape(stage)}/([^/]+)/((?:{'|'.join(TASKS)})_(?:{'|'.join(CMS_TYPES)})|caption)/([^/]+)$")
    found: dict[str, dict[str, dict[str, float]]] = {}  # head -> output -> key -> value
    for key, value in metrics.items():
        match = pattern.match(key)
        if match:
            head, output, name = match.groups()
            found.setdefault(head, {}).setdefault(output, {})[name] = float(value)
    # a head's caption scores belong to the generation table only when it has V2C task scores
    heads = [head for head, outputs in found.items() if any(output != "caption" for output in outputs)]
    shown_keys = {key for key, _ in COLUMNS}
    tables: list[dict[str, Any]] = []
    shown: set[str] = set()
    for head in heads:
        outputs = found[head]
        present = {name for scores in outputs.values() for name in scores}
        columns = [(key, header) for key, header in COLUMNS if key not in OPTIONAL_COLUMNS or key in present]
        suffix = f" ({head})" if len(heads) > 1 else ""
        layouts = (("completion", [(kind, f"completion_{kind}") for kind in CMS_TYPES]),
                   ("generation", [("caption", "caption")] + [(f"{kind} + caption", f"generation_{kind}")
                                                              for kind in CMS_TYPES]))
        for task, rows in layouts:
            rows = [(label, output) for label, output in rows if output in outputs]
            if not any(output != "caption" for _, output in rows):
                continue
            table_rows = []
            for label, output in rows:
                scores = outputs[output]
                table_rows.append([label] + [f"{100 * scores[key]:.1f}" if key in scores else "-" for key, _ in columns])
                shown.update(f"{stage}/{head}/{output}/{key}" for key in scores if key in shown_keys)
            tables.append({"title": f"V2C {task}{suffix}", "columns": [header for _, header in columns],
                           "rows": table_rows})
    rest = {key: value for key, value in metrics.items() if key not in shown}
    return tables, rest


def print_commonsense_tables(tables: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for spec in tables:
        table = Table(title=spec["title"])
        table.add_column("")
        for header in spec["columns"]:
            table.add_column(header, justify="right")
        for row in spec["rows"]:
            table.add_row(*row)
        console.print(table)


# ------------------------------------------------------------------ test: predictions JSON
class CommonsenseResults(GatheredResults):
    """Collects the HybridNet heads' decoded sentences per stage and test entry (attached by
    ``polyvision test``); one per (head, video, caption entry)."""

    def update(self, stage: str, name: str, head, outputs: dict[str, torch.Tensor], sub_batch: dict[str, Any]) -> None:
        from polyvision.heads.commonsense import HybridNetHead

        if not isinstance(head, HybridNetHead) or not outputs:
            return
        buffer = self.buffers.setdefault(stage, [])
        for meta, prediction in zip(sub_batch.get("meta") or [], head.predict(outputs, sub_batch)):
            meta = meta if isinstance(meta, dict) else {}
            video_id, index = meta.get("video_id"), meta.get("caption_index")
            buffer.append({"head": name,
                           "video_id": int(video_id) if isinstance(video_id, (int, np.integer)) else video_id,
                           "caption_index": int(index) if isinstance(index, (int, np.integer)) else index,
                           **{key: prediction[key] for key in ("caption", *CMS_TYPES, "completion") if key in prediction}})

    def key(self, item: dict[str, Any]) -> tuple:
        return item["head"], item["video_id"], item["caption_index"]

    def order(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(items, key=lambda item: (item["head"], str(item["video_id"]).zfill(12),
                                               str(item["caption_index"]).zfill(6)))


def attach_commonsense_results(model: Any) -> CommonsenseResults | None:
    """Add a :class:`CommonsenseResults` to a HybridNet model's evaluation protocols (not saved
    in its hyperparameters); None for other models."""
    if not is_commonsense(model) or not hasattr(model, "evaluation_protocols"):
        return None
    collector = CommonsenseResults()
    model.evaluation_protocols.append(collector)
    return collector


def write_commonsense_results(collector: CommonsenseResults, metrics_path: Path, stage: str = "test") -> list[Path]:
    """The test entries' predictions beside ``<stem>.test-metrics.json``:
    ``<stem>.test-commonsense.json`` (``<stem>.test-commonsense-<head>.json`` per head when a
    model has several; ``-2``, ``-3``, ... when the file exists: never overwritten), a list of
    ``{"video_id", "caption_index", "caption", "intention", "effect", "attribute",
    "completion": {type: sentence}}``."""
    from polyvision.scripts.files import unique_file

    results = collector.results.get(stage) or []
    heads = list(dict.fromkeys(item["head"] for item in results))
    stem = metrics_path.name.split(".test-metrics")[0]
    written = []
    for head in heads:
        name = f"{stem}.test-commonsense.json" if len(heads) == 1 else f"{stem}.test-commonsense-{head}.json"
        target = unique_file(metrics_path.with_name(name))
        items = [{key: value for key, value in item.items() if key != "head"} for item in results if item["head"] == head]
        target.write_text(json.dumps(items, indent=1) + "\n")
        written.append(target)
    return written


# ------------------------------------------------------------------ infer: inputs
def commonsense_geometry(model: Any) -> tuple[str, dict[str, Any]] | None:
    """``(source, geometry)`` of the first source a HybridNet model reads: decoded clips
    (``input: video``) or precomputed features (``input: features``); None when unrecorded."""
    for source, entry in (getattr(model, "input_geometry", None) or {}).items():
        if isinstance(entry, dict) and entry.get("input") in ("video", "features"):
            return source, entry
    return None


def clip_of(reader, geometry: dict[str, Any]) -> torch.Tensor:
    """The clip the V2C datamodule's evaluation cuts from a video (its centre window):
    ``(3, T, h, w)`` uint8."""
    from polyvision.datamodules.geometry import prepare_clip
    from polyvision.datamodules.video.samplers import clip_indices, window_starts

    clip_len, interval = int(geometry["clip_len"]), int(geometry["frame_interval"])
    total = reader.num_frames
    start = window_starts(total, clip_len, interval, "center_window")[0]
    indices, _ = clip_indices(start, clip_len, interval, total)
    return prepare_clip(reader.get_frames(indices).cpu(), geometry)


def feature_files(features_dir: Path, stem: str) -> dict[str, Path]:
    """Per modality the feature file of the video ``stem`` in the V2C folder ``features_dir``
    (the V2C layout: ``feats/resnet152/<stem>.npy``, ``i3d_features/msr_vtt-I3D-RGBFeatures-
    <stem>.npy``, ``audio_features/<stem>.mp3.soundnet.h5``)."""
    from polyvision.datamodules.captions.synthetic_v2c import (
        APPEARANCE_DIR,
        APPEARANCE_PATTERN,
        AUDIO_DIR,
        AUDIO_PATTERN,
        MOTION_DIR,
        MOTION_PATTERN,
    )

    layout = {"appearance": (APPEARANCE_DIR, APPEARANCE_PATTERN), "motion": (MOTION_DIR, MOTION_PATTERN),
              "audio": (AUDIO_DIR, AUDIO_PATTERN)}
    return {name: features_dir / folder / pattern.replace("video{id}", stem) for name, (folder, pattern) in layout.items()}


def video_features(features_dir: Path, stem: str, geometry: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The modalities the checkpoint reads (``geometry["feature_dims"]``) of the video ``stem``,
    each ``(rows, dim)`` float32, selected as the V2C datamodule's test split selects them;
    a ``DataError`` naming a missing or malformed file."""
    from polyvision.datamodules.captions.v2c_features import (
        APPEARANCE_ROWS,
        REDUCED_ROWS,
        load_feature,
        reduce_rows,
        select_appearance,
    )

    files = feature_files(features_dir, stem)
    rows = geometry.get("rows") or {}
    loaded = {}
    for name, dim in (geometry.get("feature_dims") or {}).items():
        if name not in files:
            raise DataError(features_dir, f"the checkpoint reads a feature '{name}' this command does not know")
        array = load_feature(files[name], int(dim))
        if name == "appearance":
            array = select_appearance(array, int(rows.get(name, APPEARANCE_ROWS)), train=False)
        else:
            array = reduce_rows(array, int(rows.get(name, REDUCED_ROWS)), train=False)
        loaded[name] = torch.from_numpy(np.ascontiguousarray(array))
    return loaded


def sheet_frames(reader, count: int = SHEET_FRAMES) -> tuple[list[int], list[np.ndarray]]:
    """``(indices, frames)``: ``count`` frames evenly spaced over the video (RGB uint8 arrays)
    and their frame numbers."""
    total = reader.num_frames
    indices = np.linspace(0, max(total - 1, 0), count).round().astype(int).tolist()
    frames = reader.get_frames(indices).cpu().numpy()
    return indices, [frames[i] for i in range(len(indices))]


# ------------------------------------------------------------------ infer: output
def commonsense_of(record: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(head name, prediction)`` of the first commonsense prediction in an infer record."""
    for name, value in record.items():
        if isinstance(value, dict) and "caption" in value and any(kind in value for kind in CMS_TYPES):
            return name, value
    return None


def text_lines(prediction: dict[str, Any]) -> list[tuple[str, str]]:
    """``(label, sentence)`` pairs: the caption, then each commonsense type."""
    return [("caption", prediction.get("caption", ""))] + [(kind, prediction[kind]) for kind in CMS_TYPES
                                                           if kind in prediction]


def contact_sheet(frames: list[np.ndarray], prediction: dict[str, Any], path: Path,
                  indices: list[int] | None = None, columns: int = SHEET_COLUMNS, cell_width: int = 240) -> Path:
    """Save ``frames`` as a grid (``columns`` per row, each ``cell_width`` wide, the frame
    number from ``indices`` in its corner) with the caption and the three commonsense
    sentences written under it (a headless PIL drawing)."""
    from PIL import Image, ImageDraw, ImageFont

    if not frames:
        raise ValueError("contact_sheet: no frames")
    height, width = frames[0].shape[:2]
    cell_height = max(1, round(cell_width * height / max(width, 1)))
    rows = -(-len(frames) // columns)
    gap, margin = 4, 12
    sheet_width = columns * cell_width + (columns + 1) * gap

    def font(size: int):
        try:
            return ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1: one bitmap size
            return ImageFont.load_default()

    text_font, label_font, index_font = font(18), font(18), font(12)
    characters = max(20, int((sheet_width - 2 * margin - 110) / 10))
    wrapped = [(label, textwrap.wrap(sentence or "(empty)", characters) or [""]) for label, sentence in text_lines(prediction)]
    line_height = 24
    text_height = margin + sum(len(lines) for _, lines in wrapped) * line_height + 2 * margin
    sheet = Image.new("RGB", (sheet_width, rows * (cell_height + gap) + gap + text_height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for index, frame in enumerate(frames):
        cell = Image.fromarray(np.ascontiguousarray(frame)).convert("RGB").resize((cell_width, cell_height),
                                                                                Image.Resampling.BILINEAR)
        x = gap + (index % columns) * (cell_width + gap)
        y = gap + (index // columns) * (cell_height + gap)
        sheet.paste(cell, (x, y))
        draw.text((x + 4, y + 2), f"frame {indices[index] if indices else index}", fill=(255, 255, 255), font=index_font, stroke_width=2,
                  stroke_fill=(0, 0, 0))
    y = rows * (cell_height + gap) + gap + margin
    for label, lines in wrapped:
        draw.text((margin, y), f"{label}:", fill=(90, 90, 90), font=label_font)
        for line in lines:
            draw.text((margin + 110, y), line, fill=(0, 0, 0) if label != "caption" else (20, 40, 140), font=text_font)
            y += line_height
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


__all__ = ["CommonsenseResults", "attach_commonsense_results", "clip_of", "commonsense_geometry", "commonsense_of",
           "commonsense_tables", "contact_sheet", "feature_files", "is_commonsense", "print_commonsense_tables",
           "sheet_frames", "text_lines", "video_features", "write_commonsense_results"]
