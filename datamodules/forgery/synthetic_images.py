"""Synthetic face-forgery data written in the exact on-disk layout of the real datasets.

``write_synthetic_ffpp`` writes a small FaceForensics++ look-alike in the DeepfakeBench
layout with OmniFD-style annotation files, so that every code path of the real reader runs
on it::

    <root>/FaceForensics++/
        original_sequences/youtube/c23/frames/<vid>/NNN.png          real frames
        manipulated_sequences/<method>/c23/frames/<tgt>_<src>/NNN.png fake frames
        manipulated_sequences/<method>/c23/masks/<tgt>_<src>/NNN.png  soft masks (alpha*255)
        annotations/{train,val,test}.json                             OmniFD data_list format
        COMPLETE                                                       generator settings (JSON)

The content carries a learnable signal: every frame shows a synthetic "face" (a shaded
skin-toned ellipse with eye and mouth blobs, per-identity colour/position jitter, mild
noise). A fake frame is the *same identity's* face with one or two patches taken from a
different synthetic source (a method-specific high-frequency texture plus a colour shift)
blended in with a feathered alpha over the face region; the alpha, times 255, is the mask.
The forged region covers roughly 10-35 % of the frame.

Splits are by identity: the real video of an identity and the fake videos made on it always
land in the same split (as in the official FF++ pair lists), ~70/15/15.

The dataset is first written into a temporary folder next to ``<root>/FaceForensics++`` and
then renamed into place, so a crash never leaves a half-written dataset behind and a reader
never sees one. ``COMPLETE`` is written last, inside the temporary folder, and records the
generator settings; :func:`synthetic_ffpp_is_complete` compares them.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image
from polyvision.datamodules.synthetic import marker_matches, write_atomically
from polyvision.errors import ConfigError

log = logging.getLogger(__name__)

FFPP_DIRNAME = "FaceForensics++"
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
GENERATOR_NAME = "polyvision.synthetic_ffpp"
GENERATOR_VERSION = 1
SPLITS = ("train", "val", "test")
_FORGERY_TINT = np.array([10.0, 45.0, 70.0], np.float32)


# ----------------------------------------------------------------------------------------
# Marker helpers
# ----------------------------------------------------------------------------------------
def synthetic_ffpp_settings(
    num_videos: int = 40, frames_per_video: int = 10, image_size: int = 64, seed: int = 0
) -> dict[str, Any]:
    """The settings recorded in (and compared against) the ``COMPLETE`` marker."""
    return {
        "generator": GENERATOR_NAME,
        "version": GENERATOR_VERSION,
        "num_videos": int(num_videos),
        "frames_per_video": int(frames_per_video),
        "image_size": int(image_size),
        "seed": int(seed),
    }


def synthetic_ffpp_is_complete(root: str | os.PathLike, **settings: Any) -> bool:
    """True when ``root`` holds a complete synthetic FF++ written with exactly ``settings``
    (keyword arguments of :func:`synthetic_ffpp_settings`; defaults fill the rest)."""
    return marker_matches(Path(root).expanduser() / FFPP_DIRNAME, synthetic_ffpp_settings(**settings))


# ----------------------------------------------------------------------------------------
# Image synthesis (vectorised numpy, float32 in 0..255)
# ----------------------------------------------------------------------------------------
def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _identity(rng: np.random.Generator, size: int) -> dict[str, Any]:
    """Per-identity appearance: colours, face geometry, background."""
    skin = np.array([rng.uniform(150, 235), rng.uniform(105, 175), rng.uniform(80, 140)], np.float32)
    return {
        "skin": skin,
        "bg_a": rng.uniform(20, 200, 3).astype(np.float32),
        "bg_b": rng.uniform(20, 200, 3).astype(np.float32),
        "bg_angle": rng.uniform(0, 2 * np.pi),
        "cx": size * (0.5 + rng.uniform(-0.06, 0.06)),
        "cy": size * (0.52 + rng.uniform(-0.06, 0.06)),
        "rx": size * rng.uniform(0.27, 0.33),
        "ry": size * rng.uniform(0.34, 0.40),
        "light": rng.uniform(-1, 1, 2),
        "eye_dark": rng.uniform(20, 70),
        "mouth": np.array([rng.uniform(140, 200), rng.uniform(40, 80), rng.uniform(50, 90)], np.float32),
    }


def _face(ident: dict[str, Any], grid: tuple[np.ndarray, np.ndarray], dx: float, dy: float,
          noise: np.ndarray) -> np.ndarray:
    """Render one frame of an identity, shifted by (dx, dy) pixels. Returns (H, W, 3) float32."""
    yy, xx = grid
    size = xx.shape[1]
    t = (np.cos(ident["bg_angle"]) * xx + np.sin(ident["bg_angle"]) * yy) / size
    t = np.clip(t * 0.5 + 0.5, 0, 1)[..., None]
    img = ident["bg_a"] * (1 - t) + ident["bg_b"] * t

    cx, cy, rx, ry = ident["cx"] + dx, ident["cy"] + dy, ident["rx"], ident["ry"]
    u, v = (xx - cx) / rx, (yy - cy) / ry
    r = np.sqrt(u * u + v * v)
    face_alpha = _smoothstep((1.0 - r) / 0.08)[..., None]
    # smooth shading: a directional light term plus darkening towards the rim
    shade = 1.0 + 0.18 * (ident["light"][0] * u + ident["light"][1] * v) - 0.22 * np.clip(r, 0, 1) ** 2
    skin = ident["skin"] * shade[..., None]
    img = img * (1 - face_alpha) + skin * face_alpha

    def paint(base: np.ndarray, bx: float, by: float, ax: float, ay: float,
              colour: np.ndarray | float, strength: float) -> np.ndarray:
        d = np.sqrt(((xx - bx) / ax) ** 2 + ((yy - by) / ay) ** 2)
        a = (strength * _smoothstep((1.0 - d) / 0.35))[..., None]
        return base * (1 - a) + colour * a

    for side in (-1, 1):  # eyes
        img = paint(img, cx + side * 0.38 * rx, cy - 0.25 * ry, 0.16 * rx, 0.09 * ry, ident["eye_dark"], 0.95)
    img = paint(img, cx, cy + 0.45 * ry, 0.33 * rx, 0.08 * ry, ident["mouth"], 0.9)  # mouth
    img = paint(img, cx, cy + 0.08 * ry, 0.07 * rx, 0.16 * ry, ident["skin"] * 0.8, 0.5)  # nose shadow
    return img + noise[..., None]


def _texture(method: str, rng: np.random.Generator, grid: tuple[np.ndarray, np.ndarray],
             source_skin: np.ndarray) -> np.ndarray:
    """A method-specific 'foreign source' patch: another identity's skin colour with a
    distinctive high-frequency texture. Returns (H, W, 3) float32."""
    yy, xx = grid
    # another identity's skin pulled towards a common off-skin tint (less red, more blue),
    # plus a per-video colour shift
    base = 0.7 * source_skin + _FORGERY_TINT + rng.uniform(-15, 15, 3).astype(np.float32)
    amp = rng.uniform(40, 60)
    period = rng.uniform(3.0, 5.0)
    if method == "Deepfakes":  # axis-aligned stripes
        pattern = np.sin(2 * np.pi * (yy if rng.random() < 0.5 else xx) / period)
    elif method == "Face2Face":  # checkerboard
        cell = int(rng.integers(2, 4))
        pattern = ((xx // cell + yy // cell) % 2) * 2.0 - 1.0
    elif method == "FaceSwap":  # blocky colour noise (2 px blocks survive mild blur/resizing)
        h, w = xx.shape
        coarse = rng.uniform(-1, 1, ((h + 1) // 2, (w + 1) // 2, 3)).astype(np.float32)
        coarse = coarse.repeat(2, 0).repeat(2, 1)[:h, :w]
        return base + amp * coarse
    else:  # NeuralTextures: diagonal stripes
        pattern = np.sin(2 * np.pi * (xx + yy) / (period * 1.3))
    return base + amp * pattern.astype(np.float32)[..., None]


def _forgery_alpha(rng: np.random.Generator, grid: tuple[np.ndarray, np.ndarray],
                   ident: dict[str, Any]) -> list[tuple[float, float, float, float]]:
    """Choose 1-2 feathered ellipses (relative to the face centre) covering ~10-35 % of the
    frame. Returned as (offset_x, offset_y, axis_x, axis_y); they follow the face per frame."""
    size = grid[0].shape[0]
    n_patches = 1 if rng.random() < 0.6 else 2
    coverage = rng.uniform(0.14, 0.32)  # target fraction of the frame (before feathering loss)
    # a soft ellipse whose alpha ramps from 1 at r=0.6 to 0 at r=1 integrates to ~0.66 pi a b
    area_each = coverage * size * size / n_patches / 0.66
    patches = []
    for _ in range(n_patches):
        aspect = rng.uniform(0.7, 1.4)
        ax = np.sqrt(area_each / np.pi * aspect)
        ay = np.sqrt(area_each / np.pi / aspect)
        ox = rng.uniform(-0.45, 0.45) * ident["rx"]
        oy = rng.uniform(-0.45, 0.45) * ident["ry"]
        patches.append((ox, oy, ax, ay))
    return patches


def _render_alpha(patches, grid, cx: float, cy: float) -> np.ndarray:
    yy, xx = grid
    alpha = np.zeros(xx.shape, np.float32)
    for ox, oy, ax, ay in patches:
        d = np.sqrt(((xx - cx - ox) / ax) ** 2 + ((yy - cy - oy) / ay) ** 2)
        alpha = np.maximum(alpha, _smoothstep((1.0 - d) / 0.4))
    return alpha


def _to_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(array + 0.5, 0, 255).astype(np.uint8)).save(path, compress_level=1)


def _split_counts(n: int) -> tuple[int, int, int]:
    n_val = max(1, int(round(0.15 * n)))
    n_test = max(1, int(round(0.15 * n)))
    return n - n_val - n_test, n_val, n_test


def _write_tree(ds: Path, num_videos: int, frames_per_video: int, image_size: int, seed: int,
                progress: bool) -> dict[str, Any]:
    """Write the dataset folder ``ds`` (``FaceForensics++``); returns the counts for its marker."""
    n_ident = num_videos // 2            # one real video per identity ...
    n_fake = num_videos - n_ident        # ... and (about) one fake video made on each identity
    size = image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    grid = (yy, xx)

    master = np.random.default_rng(seed)
    order = master.permutation(n_ident)
    n_train, n_val, _ = _split_counts(n_ident)
    split_of = {}
    for rank, ident_idx in enumerate(order):
        split_of[int(ident_idx)] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"

    identities = [_identity(np.random.default_rng([seed, 1, i]), size) for i in range(n_ident)]

    # video plan: (kind, identity, method, source identity, folder name)
    plan: list[tuple[str, int, str | None, int | None, str]] = []
    for i in range(n_ident):
        plan.append(("real", i, None, None, f"{i:03d}"))
    for j in range(n_fake):
        target = j % n_ident
        source = (target + 1 + j // n_ident) % n_ident if n_ident > 1 else target
        method = FFPP_METHODS[j % len(FFPP_METHODS)]
        plan.append(("fake", target, method, source, f"{target:03d}_{source:03d}"))

    records: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    iterator: Any = plan
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(plan, desc="synthetic FF++ videos", unit="video", leave=False)
            iterator = bar
        except ImportError:  # pragma: no cover - tqdm ships with pytorch-lightning
            pass
    for video_idx, (kind, ident_idx, method, source_idx, name) in enumerate(iterator):
        rng = np.random.default_rng([seed, 2, video_idx])
        ident = identities[ident_idx]
        if kind == "real":
            frame_dir = ds / "original_sequences" / "youtube" / "c23" / "frames" / name
            mask_dir = None
            patches = None
            texture = None
        else:
            assert method is not None and source_idx is not None
            base = ds / "manipulated_sequences" / method / "c23"
            frame_dir, mask_dir = base / "frames" / name, base / "masks" / name
            patches = _forgery_alpha(rng, grid, ident)
            texture = _texture(method, rng, grid, identities[source_idx]["skin"])
        # a slow drift of the head over the video
        drift = rng.normal(0, 0.8, (frames_per_video, 2)).cumsum(0).clip(-4, 4)
        for f in range(frames_per_video):
            dx, dy = float(drift[f, 0]), float(drift[f, 1])
            noise = rng.normal(0, 3.0, (size, size)).astype(np.float32)
            img = _face(ident, grid, dx, dy, noise)
            rel_img = (frame_dir / f"{f:03d}.png").relative_to(ds.parent).as_posix()
            record: dict[str, Any] = {"img_path": rel_img, "gt_label": 0 if kind == "real" else 1}
            if patches is not None and texture is not None and mask_dir is not None:
                alpha = _render_alpha(patches, grid, ident["cx"] + dx, ident["cy"] + dy)
                shifted = np.roll(texture, (int(round(dy)), int(round(dx))), axis=(0, 1))
                img = img * (1 - alpha[..., None]) + (shifted + noise[..., None]) * alpha[..., None]
                mask_path = mask_dir / f"{f:03d}.png"
                _to_png(alpha * 255.0, mask_path)
                record["seg_map_path"] = mask_path.relative_to(ds.parent).as_posix()
            _to_png(img, frame_dir / f"{f:03d}.png")
            records[split_of[ident_idx]].append(record)
    if bar is not None:
        bar.close()

    ann_dir = ds / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        metainfo = {
            "dataset": "FaceForensics++ (synthetic, polyvision)",
            "classes": ["real", "fake"],
            "split": split,
            "generator": GENERATOR_NAME,
        }
        with open(ann_dir / f"{split}.json", "w") as fh:
            json.dump({"metainfo": metainfo, "data_list": records[split]}, fh, indent=1)
    return {"num_images": sum(len(r) for r in records.values()),
            "split_sizes": {s: len(r) for s, r in records.items()}}


def write_synthetic_ffpp(
    root: str | os.PathLike,
    num_videos: int = 40,
    frames_per_video: int = 10,
    image_size: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write a synthetic FaceForensics++ (DeepfakeBench layout, OmniFD annotations) under
    ``root`` and return ``root``.

    Args:
        root: data root; the dataset goes to ``root/FaceForensics++``. Annotation paths are
            relative to ``root``, as in OmniFD (``data_prefix=''``).
        num_videos: number of video folders, half real (one per identity) and half fake
            (spread over Deepfakes, Face2Face, FaceSwap and NeuralTextures). At least 6.
        frames_per_video: PNG frames per video folder.
        image_size: square frame size in pixels (at least 32).
        seed: the output is a deterministic function of all the settings.
        progress: show a tqdm progress bar.

    The tree is written into a temporary folder inside ``root`` and renamed into place. An
    existing ``root/FaceForensics++`` is replaced only when it is an earlier synthetic
    dataset (it has a ``COMPLETE`` marker); anything else raises ``DataError`` rather than
    delete data that the writer did not make.
    """
    if num_videos < 6:
        raise ConfigError(f"num_videos must be at least 6 (3 splits x real+fake), got {num_videos}")
    if frames_per_video < 1:
        raise ConfigError(f"frames_per_video must be at least 1, got {frames_per_video}")
    if image_size < 32:
        raise ConfigError(f"image_size must be at least 32, got {image_size}")
    log.info("writing synthetic FaceForensics++ (%d videos x %d frames, %dpx) to %s",
             num_videos, frames_per_video, image_size, Path(root).expanduser() / FFPP_DIRNAME)
    return write_atomically(root, FFPP_DIRNAME, synthetic_ffpp_settings(num_videos, frames_per_video, image_size, seed),
                            lambda ds: _write_tree(ds, num_videos, frames_per_video, image_size, seed, progress))


SYNTHETIC_WRITERS: dict[str, Callable[..., Path]] = {"ffpp": write_synthetic_ffpp}
