"""What the user-facing commands do for caption models (CVLNM, and the captioners after it).

- ``polyvision test``: :class:`CaptionResults` keeps every test caption, written by
  :func:`write_caption_results` as coco-caption result JSON (``[{"image_id": int, "caption":
  str}, ...]``) beside the test metrics;
- ``polyvision infer``: :func:`load_regions` reads an image's region features for a
  region-feature checkpoint (``--features DIR``), :func:`region_batch` batches them as the
  caption datamodule does, :func:`words_line` prints each word with the module the controller
  weighted most, and :func:`caption_picture` draws the image with its caption under it and,
  per word, the attention of the chosen visual module: a heat map over the image (grid
  features), weighted boxes (region features with boxes), or one strip of region weights per
  word (region features without boxes: the image alone cannot say where a region is).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from polyvision.errors import DataError
from polyvision.models.evaluation import EvaluationProtocol

FEATURE_SUFFIXES = (".npz", ".npy")
BOX_KEYS = ("boxes", "bbox", "boxes_xyxy")
PANELS_PER_ROW = 6


def is_captioner(model: Any) -> bool:
    """Whether ``model`` writes captions (has caption heads)."""
    heads = getattr(model, "heads", None)
    if heads is None:
        return False
    from polyvision.heads.captioning import CaptionHead

    return any(isinstance(head, CaptionHead) for head in heads.values())


def caption_geometry(model: Any) -> tuple[str, dict[str, Any]] | None:
    """``(source, geometry)`` of the first source the caption model reads, or None."""
    for source, entry in (getattr(model, "input_geometry", None) or {}).items():
        if isinstance(entry, dict) and entry.get("input") in ("regions", "image"):
            return source, entry
    return None


# ------------------------------------------------------------------ test: result JSON
class GatheredResults(EvaluationProtocol):
    """Records a model's decoded outputs per stage (``update`` of a subclass appends dicts to
    ``buffers[stage]``); ``compute`` gathers every rank's under DDP, keeps the first record of
    each :meth:`key` (a distributed sampler repeats samples to even out the ranks), orders them
    (:meth:`order`) into ``results[stage]`` and logs nothing."""

    def __init__(self):
        self.buffers: dict[str, list[dict[str, Any]]] = {}
        self.results: dict[str, list[dict[str, Any]]] = {}

    def key(self, item: dict[str, Any]) -> tuple:
        raise NotImplementedError

    def order(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return items

    def compute(self, stage: str, module) -> dict[str, torch.Tensor]:
        gathered = list(self.buffers.get(stage, []))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            parts: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(parts, gathered)
            gathered = [item for part in parts for item in part]
        seen, unique = set(), []
        for item in gathered:
            if self.key(item) not in seen:
                seen.add(self.key(item))
                unique.append(item)
        self.results[stage] = self.order(unique)
        return {}

    def reset(self, stage: str) -> None:
        self.buffers.pop(stage, None)


class CaptionResults(GatheredResults):
    """Collects the caption heads' decoded captions per stage (attached by ``polyvision
    test``); one per (head, image)."""

    def key(self, item: dict[str, Any]) -> tuple:
        return item["head"], item["image_id"]

    def update(self, stage: str, name: str, head, outputs: dict[str, torch.Tensor], sub_batch: dict[str, Any]) -> None:
        if "tokens" not in outputs:
            return
        captions = head.decode_words(outputs["tokens"])
        buffer = self.buffers.setdefault(stage, [])
        for meta, caption in zip(sub_batch.get("meta") or [], captions):
            image_id = meta.get("image_id") if isinstance(meta, dict) else None
            buffer.append({"image_id": int(image_id) if isinstance(image_id, (int, np.integer)) or
                           (isinstance(image_id, str) and image_id.isdigit()) else image_id,
                           "caption": caption, "head": name})


def attach_caption_results(model: Any) -> CaptionResults | None:
    """Add a :class:`CaptionResults` to a caption model's evaluation protocols (not saved in
    its hyperparameters); None for other models."""
    if not is_captioner(model) or not hasattr(model, "evaluation_protocols"):
        return None
    collector = CaptionResults()
    model.evaluation_protocols.append(collector)
    return collector


def write_caption_results(collector: CaptionResults, metrics_path: Path, stage: str = "test") -> list[Path]:
    """The captions as coco-caption result JSON beside ``<stem>.test-metrics.json``:
    ``<stem>.test-captions.json`` (``<stem>.test-captions-<head>.json`` per head when a model
    has several; ``-2``, ``-3``, ... when the file exists: never overwritten)."""
    from polyvision.scripts.files import unique_file

    results = collector.results.get(stage) or []
    heads = list(dict.fromkeys(item["head"] for item in results))
    stem = metrics_path.name.split(".test-metrics")[0]
    written = []
    for head in heads:
        name = f"{stem}.test-captions.json" if len(heads) == 1 else f"{stem}.test-captions-{head}.json"
        target = unique_file(metrics_path.with_name(name))
        items = [{"image_id": item["image_id"], "caption": item["caption"]} for item in results if item["head"] == head]
        target.write_text(json.dumps(items, indent=0) + "\n")
        written.append(target)
    return written


# ------------------------------------------------------------------ infer: region features
def feature_file(features_dir: Path, image: Path) -> Path:
    """The feature file of ``image`` in ``features_dir``: ``<stem>.npz|.npy``, else
    ``<image id>.npz|.npy`` with the id the stem's trailing digits (``COCO_val2014_000000391895``
    -> ``391895``); a ``DataError`` naming what was looked for when neither exists."""
    names = [image.stem]
    digits = re.search(r"(\d+)$", image.stem)
    if digits and str(int(digits.group(1))) != image.stem:
        names.append(str(int(digits.group(1))))
    for name in names:
        for suffix in FEATURE_SUFFIXES:
            candidate = features_dir / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    raise DataError(image, f"no region features for this image in {features_dir} (looked for "
                    f"{', '.join(n + '.npz/.npy' for n in names)})")


def load_regions(features_dir: Path, image: Path, feature_dim: int, max_regions: int = 100
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """``(regions (N, feature_dim) float32, boxes (N, 4) x1 y1 x2 y2 in image pixels or None)``
    of ``image``: ``.npz`` key ``feat`` (boxes from key ``boxes``/``bbox`` when present) or a
    ``.npy`` array, as the caption datamodule reads them."""
    from polyvision.datamodules.captions.features import RegionFeatures

    path = feature_file(features_dir, image)
    regions = RegionFeatures(path.parent, feature_dim, max_regions).load(path.stem)  # type: ignore[arg-type]
    boxes = None
    if path.suffix == ".npz":
        with np.load(path) as archive:
            key = next((k for k in BOX_KEYS if k in archive.files), None)
            if key is not None:
                boxes = np.asarray(archive[key], dtype=np.float32)
    if boxes is not None and (boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) < len(regions)):
        raise DataError(path, f"boxes of shape {tuple(boxes.shape)}, expected ({len(regions)}, 4) x1 y1 x2 y2")
    return regions, None if boxes is None else boxes[: len(regions)]


def region_batch(regions: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded ``regions`` (B, N, D) and ``region_mask`` (B, N), as ``CaptionCollate``."""
    most = max(len(r) for r in regions)
    batch = torch.zeros(len(regions), most, regions[0].shape[1])
    mask = torch.zeros(len(regions), most, dtype=torch.bool)
    for index, array in enumerate(regions):
        batch[index, : len(array)] = torch.from_numpy(array)
        mask[index, : len(array)] = True
    return batch, mask


# ------------------------------------------------------------------ infer: output
def caption_of(record: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(head name, prediction)`` of the first caption prediction in an infer record."""
    for name, value in record.items():
        if isinstance(value, dict) and "caption" in value:
            return name, value
    return None


def words_line(prediction: dict[str, Any]) -> str:
    """``word/module`` pairs of a caption (``a/function red/adjective circle/noun``)."""
    words = prediction["caption"].split()
    modules = prediction.get("modules") or []
    return " ".join(f"{word}/{modules[i]}" if i < len(modules) else word for i, word in enumerate(words))


def grid_shape(cells: int, input_size: list[int] | None) -> tuple[int, int] | None:
    """(rows, columns) of ``cells`` grid cells read row by row from an input of ``input_size``
    (H, W), or None when no grid of that aspect has that many cells."""
    if not input_size or cells < 1:
        return None
    height, width = (float(v) for v in input_size)
    rows = max(1, round(math.sqrt(cells * height / width)))
    for candidate in (rows, rows - 1, rows + 1):
        if candidate > 0 and cells % candidate == 0:
            return candidate, cells // candidate
    return None


def caption_picture(image, prediction: dict[str, Any], path: Path, input_kind: str,
                    input_size: list[int] | None = None, boxes: np.ndarray | None = None) -> Path:
    """Save the image with its caption under it and, per word, the region attention of the
    visual module the controller weighted most (module docstring). ``image``: a PIL image."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib import patches

    pixels = np.asarray(image)
    height, width = pixels.shape[:2]
    words = prediction["caption"].split()
    modules = list(prediction.get("modules") or [])
    attention = [np.asarray(row, dtype=np.float32) for row in prediction.get("region_attention") or []]
    labels = [f"{w}\n({modules[i]})" if i < len(modules) else w for i, w in enumerate(words)]
    grid = grid_shape(len(attention[0]), input_size) if attention and input_kind == "image" else None
    panels = bool(attention) and (grid is not None or boxes is not None)
    strip = bool(attention) and not panels
    rows = math.ceil(len(attention) / PANELS_PER_ROW) if panels else 0
    aspect = height / max(width, 1)
    main_height = 4.0 * aspect + 0.8
    panel_height = 2.0 * aspect + 0.5
    strip_height = 0.6 + 0.25 * len(attention) if strip else 0.0
    figure = plt.figure(figsize=(8.0, main_height + rows * panel_height + strip_height), dpi=100)
    heights = [main_height] + [panel_height] * rows + ([strip_height] if strip else [])
    spec = figure.add_gridspec(len(heights), PANELS_PER_ROW, height_ratios=heights, hspace=0.3)
    main = figure.add_subplot(spec[0, :])
    main.imshow(pixels)
    main.set_axis_off()
    main.set_title(prediction["caption"] or "(empty caption)", y=-0.12, fontsize=12, wrap=True)
    if panels:
        for index, weights in enumerate(attention):
            axis = figure.add_subplot(spec[1 + index // PANELS_PER_ROW, index % PANELS_PER_ROW])
            axis.imshow(pixels)
            axis.set_axis_off()
            axis.set_title(labels[index] if index < len(labels) else "<eos>", fontsize=8)
            if grid is not None:
                heat = weights[: grid[0] * grid[1]].reshape(grid)
                axis.imshow(heat / max(float(heat.max()), 1e-8), cmap="jet", alpha=0.5, extent=(0, width, height, 0),
                            interpolation="bilinear", vmin=0, vmax=1)
            else:
                top = float(weights.max()) or 1.0
                for box, weight in zip(boxes, weights):
                    x1, y1, x2, y2 = (float(v) for v in box)
                    strength = float(weight) / top
                    if strength < 0.1:
                        continue
                    axis.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linewidth=0.5 + 2 * strength,
                                                     edgecolor=(1.0, 0.1, 0.1, strength)))
    if strip:
        axis = figure.add_subplot(spec[-1, :])
        matrix = np.stack(attention)
        axis.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest", vmin=0)
        axis.set_yticks(range(len(matrix)), [label.replace("\n", " ") for label in labels[: len(matrix)]], fontsize=7)
        axis.set_xticks(range(matrix.shape[1]), [str(i) for i in range(matrix.shape[1])], fontsize=6)
        axis.set_xlabel("region (feature file order); no boxes in the feature file, so weights per region", fontsize=8)
    figure.savefig(path, bbox_inches="tight")
    plt.close(figure)
    return path


__all__ = ["CaptionResults", "attach_caption_results", "caption_geometry", "caption_of", "caption_picture",
           "feature_file", "grid_shape", "is_captioner", "load_regions", "region_batch", "words_line",
           "write_caption_results"]
