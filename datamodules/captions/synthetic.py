"""A synthetic COCO in Karpathy's layout, so every captioning command runs offline.

``write_synthetic_coco(root)`` writes ``root/coco/``:

- ``dataset_coco.json``: Karpathy's split file (``images`` with ``filepath``, ``filename``,
  ``cocoid``, ``imgid``, ``split``, ``sentids``, ``sentences`` of ``tokens``/``raw``), every
  10th training image in ``restval`` as in the real file; each sentence also carries ``tags``,
  the TRUE module class of each token (0 function word, 1 noun, 2 verb, 3 adjective), known
  from the grammar that generated it (readers of the real format ignore the field);
- ``train2014/`` and ``val2014/``: the JPEG images (``COCO_<folder>_<cocoid:012d>.jpg``;
  val, test and restval images in ``val2014`` as in COCO);
- ``cocobu_att/<cocoid>.npz``: region features, key ``feat`` (N, 2048).

A scene holds 1-3 shapes (circle, square, triangle, star, diamond) in one of 7 colours and 2
sizes on a dark noisy background: one shape in a grid cell, two one above the other or side by
side, three in a row. Each image gets 5 captions (every 7th image 6, as some COCO images
have) drawn from templates that describe the same scene in varied but predictable words
("a large red circle is above a small blue square", "a blue square is sitting under a red
circle", "there is a red circle next to a green triangle"), with nouns, adjectives, verbs and
function words. The region features hold one row per shape and 2-4 background rows (so N
varies), each a fixed random projection to 2048-d of one-hot colour/shape/size codes and the
shape's position (plus a background flag), with small noise: the captions are a function of
the regions, and of the image, so both the region and the grid path can learn them.

The dataset is written atomically with a ``COMPLETE`` marker of its settings
(``datamodules/synthetic.py``); the output is a deterministic function of the settings.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from polyvision.datamodules.synthetic import marker_matches, split_counts, write_atomically
from polyvision.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["COCO_DIRNAME", "FEATURE_DIRNAME", "SYNTHETIC_WRITERS", "synthetic_coco_is_complete",
           "synthetic_coco_settings", "write_synthetic_coco"]

COCO_DIRNAME = "coco"
FEATURE_DIRNAME = "cocobu_att"
GENERATOR_VERSION = 1
SPLITS = ("train", "val", "test")
DEFAULT_COUNTS = {"train": 400, "val": 50, "test": 50}
FEATURE_DIM = 2048
FEATURE_NOISE = 0.05
JPEG_QUALITY = 90

COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 80, 230), "yellow": (235, 220, 50),
           "purple": (150, 60, 190), "orange": (245, 140, 30), "white": (240, 240, 240)}  # RGB
SHAPES = ("circle", "square", "triangle", "star", "diamond")
SIZES = ("small", "large")
F, N, V, A = 0, 1, 2, 3  # module classes: function word, noun, verb, adjective


# ----------------------------------------------------------------------------------------
# Captions: word/tag pairs from a small grammar
# ----------------------------------------------------------------------------------------
def _noun_phrase(shape: dict, with_size: bool, article: str = "a") -> list[tuple[str, int]]:
    words = ([(shape["size"], A)] if with_size else []) + [(shape["colour"], A), (shape["shape"], N)]
    if article == "a" and words[0][0][0] in "aeiou":
        article = "an"
    return [(article, F), *words]


def _w(text: str, tag: int) -> list[tuple[str, int]]:
    return [(word, tag) for word in text.split()]


def _single_templates(s: dict, sz: Callable[[], bool]) -> list[list[tuple[str, int]]]:
    return [
        [*_noun_phrase(s, True), *_w("in the", F), ("middle", N), *_w("of the", F), ("picture", N)],
        [*_w("there is", F), *_noun_phrase(s, sz()), *_w("on a", F), ("dark", A), ("background", N)],
        [("a", F), ("picture", N), ("showing", V), *_noun_phrase(s, sz())],
        [*_noun_phrase(s, sz()), ("is", F), ("drawn", V), *_w("on a", F), ("plain", A), ("background", N)],
        [("a", F), ("single", A), *_noun_phrase(s, True)[1:]],
        [*_noun_phrase(s, sz()), ("sits", V), *_w("on a", F), ("dark", A), ("background", N)],
    ]


def _pair_templates(a: dict, b: dict, vertical: bool, sz: Callable[[], bool]) -> list[list[tuple[str, int]]]:
    """Captions of shape ``a`` above (or left of) shape ``b``."""
    if vertical:
        return [
            [*_noun_phrase(a, True), ("is", F), ("above", F), *_noun_phrase(b, True)],
            [*_noun_phrase(b, sz()), ("is", F), ("below", F), *_noun_phrase(a, sz())],
            [*_noun_phrase(a, sz()), ("floats", V), ("over", F), *_noun_phrase(b, sz())],
            [*_noun_phrase(b, sz()), ("is", F), ("sitting", V), ("under", F), *_noun_phrase(a, sz())],
            [*_w("there is", F), *_noun_phrase(a, sz()), ("and", F), *_noun_phrase(b, sz()), ("under", F), ("it", F)],
            [("two", F), ("shapes", N), *_noun_phrase(a, sz()), ("rests", V), ("on", F), ("top", N), ("of", F),
             *_noun_phrase(b, sz())],
        ]
    return [
        [*_noun_phrase(a, True), *_w("is to the", F), ("left", N), ("of", F), *_noun_phrase(b, True)],
        [*_noun_phrase(b, sz()), *_w("is on the", F), ("right", N), ("of", F), *_noun_phrase(a, sz())],
        [*_w("there is", F), *_noun_phrase(a, sz()), *_w("next to", F), *_noun_phrase(b, sz())],
        [*_noun_phrase(a, sz()), ("and", F), *_noun_phrase(b, sz()), ("are", F), ("placed", V), ("side", N),
         ("by", F), ("side", N)],
        [*_noun_phrase(b, sz()), ("is", F), ("lying", V), ("beside", F), *_noun_phrase(a, sz())],
        [("two", F), ("shapes", N), *_noun_phrase(a, sz()), ("sits", V), *_w("next to", F), *_noun_phrase(b, sz())],
    ]


def _triple_templates(a: dict, b: dict, c: dict, sz: Callable[[], bool]) -> list[list[tuple[str, int]]]:
    """Captions of shapes ``a``, ``b``, ``c`` in a row from left to right."""
    return [
        [*_noun_phrase(a, sz()), *_noun_phrase(b, sz()), ("and", F), *_noun_phrase(c, sz()), *_w("in a", F), ("row", N)],
        [*_noun_phrase(b, sz()), ("is", F), ("between", F), *_noun_phrase(a, sz()), ("and", F), *_noun_phrase(c, sz())],
        [("three", F), ("shapes", N), ("are", F), ("shown", V), *_w("in a", F), ("row", N)],
        [*_noun_phrase(a, True), *_w("is on the", F), ("left", N), *_w("of", F), ("three", F), ("shapes", N)],
        [*_noun_phrase(c, sz()), *_w("is on the", F), ("right", N), ("next", F), ("to", F), *_noun_phrase(b, sz())],
        [("a", F), ("row", N), ("of", F), ("three", F), ("shapes", N), ("with", F), *_noun_phrase(a, sz()),
         *_w("on the", F), ("left", N)],
    ]


def scene_captions(shapes: list[dict], vertical: bool, rng: np.random.Generator,
                   count: int = 5) -> list[tuple[list[str], list[int]]]:
    """``count`` distinct captions of a scene as (tokens, true tags)."""
    sz = lambda: bool(rng.random() < 0.5)
    if len(shapes) == 1:
        templates = _single_templates(shapes[0], sz)
    elif len(shapes) == 2:
        templates = _pair_templates(shapes[0], shapes[1], vertical, sz)
    else:
        templates = _triple_templates(*shapes, sz)
    chosen = rng.choice(len(templates), size=min(count, len(templates)), replace=False)
    captions = [templates[i] for i in chosen]
    return [([word for word, _ in caption], [tag for _, tag in caption]) for caption in captions]


def _raw(tokens: list[str]) -> str:
    return tokens[0].capitalize() + (" " + " ".join(tokens[1:]) if len(tokens) > 1 else "") + "."


# ----------------------------------------------------------------------------------------
# Scenes, images and region features
# ----------------------------------------------------------------------------------------
def random_scene(rng: np.random.Generator) -> tuple[list[dict], bool]:
    """1-3 distinct shapes with positions (cell centres in [0, 1]) and whether a pair is vertical."""
    count = int(rng.integers(1, 4))
    kinds: list[tuple[str, str]] = []
    while len(kinds) < count:
        kind = (str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES)))
        if kind not in kinds:
            kinds.append(kind)
    vertical = bool(rng.random() < 0.5)
    if count == 1:
        centres = [(float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.35, 0.65)))]
    elif count == 2:
        offset = float(rng.uniform(-0.08, 0.08))
        centres = [(0.5 + offset, 0.27), (0.5 - offset, 0.73)] if vertical else [(0.27, 0.5 + offset), (0.73, 0.5 - offset)]
    else:
        centres = [(0.18, 0.5), (0.5, 0.5), (0.82, 0.5)]
    shapes = [{"colour": colour, "shape": shape, "size": str(rng.choice(SIZES)), "x": x, "y": y}
              for (colour, shape), (x, y) in zip(kinds, centres)]
    return shapes, vertical


def _polygon(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    if shape == "triangle":
        angles = np.deg2rad([-90, 30, 150])
        radii = np.full(3, r)
    elif shape == "diamond":
        angles = np.deg2rad([-90, 0, 90, 180])
        radii = np.array([r, 0.7 * r, r, 0.7 * r])
    else:  # star
        angles = np.deg2rad(-90 + 36 * np.arange(10))
        radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).round().astype(np.int32)


def render_scene(shapes: list[dict], size: int, rng: np.random.Generator) -> np.ndarray:
    """The scene as an RGB uint8 (size, size, 3) image."""
    image = np.clip(rng.normal(45, 8, (size, size, 3)), 0, 255).astype(np.uint8)
    for shape in shapes:
        cx, cy = shape["x"] * size, shape["y"] * size
        r = size * (0.16 if shape["size"] == "large" else 0.08)
        colour = tuple(int(v) for v in COLOURS[shape["colour"]])
        if shape["shape"] == "circle":
            cv2.circle(image, (round(cx), round(cy)), round(r), colour, -1, cv2.LINE_AA)
        elif shape["shape"] == "square":
            h = r * 0.85
            cv2.rectangle(image, (round(cx - h), round(cy - h)), (round(cx + h), round(cy + h)), colour, -1)
        else:
            cv2.fillPoly(image, [_polygon(shape["shape"], cx, cy, r)], colour, cv2.LINE_AA)
    return image


def _projection(seed: int) -> np.ndarray:
    """The fixed random projection of region codes to 2048-d features."""
    code_dim = len(COLOURS) + len(SHAPES) + len(SIZES) + 3  # + x, y, background flag
    return np.random.default_rng([seed, 2048]).normal(0, 1, (code_dim, FEATURE_DIM)).astype(np.float32)


def region_features(shapes: list[dict], projection: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 2048) float32: one row per shape and 2-4 background rows, in random order."""
    codes = []
    for shape in shapes:
        code = np.zeros(projection.shape[0], np.float32)
        code[list(COLOURS).index(shape["colour"])] = 1
        code[len(COLOURS) + SHAPES.index(shape["shape"])] = 1
        code[len(COLOURS) + len(SHAPES) + SIZES.index(shape["size"])] = 1
        code[-3:-1] = (shape["x"] * 2 - 1, shape["y"] * 2 - 1)
        codes.append(code)
    for _ in range(int(rng.integers(2, 5))):
        code = np.zeros(projection.shape[0], np.float32)
        code[-3:-1] = rng.uniform(-1, 1, 2)
        code[-1] = 1
        codes.append(code)
    features = np.stack(codes) @ projection / np.sqrt(projection.shape[0])
    features += rng.normal(0, FEATURE_NOISE, features.shape).astype(np.float32)
    return features[rng.permutation(len(features))].astype(np.float32)


# ----------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------
def synthetic_coco_settings(num_images_per_split: int | Mapping[str, int] | None = None, image_size: int = 128,
                            seed: int = 0) -> dict[str, Any]:
    """The settings recorded in (and compared against) the ``COMPLETE`` marker."""
    return {"generator": "polyvision.synthetic_coco", "version": GENERATOR_VERSION,
            "num_images_per_split": split_counts(num_images_per_split, DEFAULT_COUNTS),
            "image_size": int(image_size), "seed": int(seed)}


def synthetic_coco_is_complete(root: str | os.PathLike, **settings: Any) -> bool:
    """True when ``root/coco`` is a complete synthetic COCO written with ``settings``."""
    return marker_matches(Path(root).expanduser() / COCO_DIRNAME, synthetic_coco_settings(**settings))


def _write_tree(out: Path, counts: dict[str, int], image_size: int, seed: int, progress: bool) -> dict[str, Any]:
    projection = _projection(seed)
    (out / FEATURE_DIRNAME).mkdir()
    images, sentence_id = [], 0
    items = [(split, index) for split in SPLITS for index in range(counts[split])]
    if progress:
        try:
            from tqdm.auto import tqdm

            items = tqdm(items, desc="synthetic COCO", leave=False)
        except ImportError:  # pragma: no cover - tqdm ships with pytorch-lightning
            pass
    for image_index, (split, index) in enumerate(items):
        rng = np.random.default_rng([seed, SPLITS.index(split), index])
        karpathy_split = "restval" if split == "train" and index % 10 == 9 else split
        folder = "train2014" if karpathy_split == "train" else "val2014"
        cocoid = 100000 * (1 + SPLITS.index(split)) + index
        filename = f"COCO_{folder}_{cocoid:012d}.jpg"
        shapes, vertical = random_scene(rng)
        captions = scene_captions(shapes, vertical, rng, count=6 if index % 7 == 6 else 5)
        image = render_scene(shapes, image_size, rng)
        (out / folder).mkdir(exist_ok=True)
        if not cv2.imwrite(str(out / folder / filename), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError(f"could not write {out / folder / filename}")
        np.savez(out / FEATURE_DIRNAME / f"{cocoid}.npz", feat=region_features(shapes, projection, rng))
        sentences = []
        for tokens, tags in captions:
            sentences.append({"tokens": tokens, "raw": _raw(tokens), "imgid": image_index, "sentid": sentence_id,
                              "tags": tags})
            sentence_id += 1
        images.append({"filepath": folder, "filename": filename, "cocoid": cocoid, "imgid": image_index,
                       "split": karpathy_split, "sentids": [s["sentid"] for s in sentences], "sentences": sentences})
    (out / "dataset_coco.json").write_text(json.dumps({"images": images, "dataset": "coco"}))
    return {f"{split}_images": counts[split] for split in SPLITS}


def write_synthetic_coco(root: str | os.PathLike, num_images_per_split: int | Mapping[str, int] | None = None,
                         image_size: int = 128, seed: int = 0, progress: bool = True) -> Path:
    """Write a synthetic COCO in Karpathy's layout to ``root/coco``; return ``root``.

    Args:
        root: output folder.
        num_images_per_split: images per split, an int for all or a dict (default
            ``{"train": 400, "val": 50, "test": 50}``; about 2 s to write).
        image_size: square image side in pixels (at least 32).
        seed: the output is a deterministic function of all the settings.
        progress: show a progress bar.
    """
    settings = synthetic_coco_settings(num_images_per_split, image_size, seed)
    if settings["image_size"] < 32:
        raise ConfigError(f"image_size must be at least 32, got {image_size}")
    log.info("writing synthetic COCO (%s images) to %s", settings["num_images_per_split"], Path(root) / COCO_DIRNAME)
    return write_atomically(root, COCO_DIRNAME, settings,
                            lambda out: _write_tree(out, settings["num_images_per_split"], settings["image_size"],
                                                    settings["seed"], progress))


SYNTHETIC_WRITERS: dict[str, Callable[..., Path]] = {"coco": write_synthetic_coco}
