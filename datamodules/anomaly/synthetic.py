"""Synthetic video anomaly datasets in the exact on-disk layouts of UCSD Ped2, CUHK Avenue
and ShanghaiTech (as STATE's official ``vad_datasets.py`` reads them,
github.com/wyzjack/MRMGA4VAD), so that every code path of the readers runs.

Scenes: a fixed, textured background (one scene per camera; ShanghaiTech has several) with
"pedestrians" walking along a walkway: upright ellipses covered in a blocky texture (so
frame differences light up their whole body, as legs and clothes do in real footage),
moving horizontally at a normal speed and re-entering when they leave the frame.

Training videos hold only such scenes. Every test video adds one anomalous event, cycling
through three kinds, while the anomalous object is in view:

- ``speed``: a walker moving about four times faster than anyone in training (a cyclist);
- ``direction``: a walker crossing the walkway vertically;
- ``object``: an object type never seen in training (a wide, checkered cart) at walking speed.

Ground truth is written in each dataset's own format: per-frame BMP masks (Ped2), ``volLabel``
MAT files (Avenue), per-video 0/1 ``.npy`` frame labels (ShanghaiTech); a frame is anomalous
when the anomalous object covers at least one of its pixels.

Layouts written (``root`` is the folder passed to the writer)::

    root/UCSDped2/{Train/Train001/001.tif, Test/Test001/001.tif, Test/Test001_gt/001.bmp}
    root/avenue/{training_videos/01.avi, testing_videos/01.avi,
                 ground_truth_demo/testing_label_mask/1_label.mat}     (layout="avi", CUHK's)
    root/avenue/{training/frames/01/0000.jpg, testing/frames/01/0000.jpg, ground_truth_demo/...}
                                                                        (layout="frames", VEC's)
    root/ShanghaiTech/{training/videosFrame/01_001/000.jpg, testing/frames/01_0001/000.jpg,
                       testing/test_frame_mask/01_0001.npy}

Output is a deterministic function of the settings (``COMPLETE`` records them). The dataset
is written to a temporary folder and renamed into place, so a reader never sees half of one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from PIL import Image
from polyvision.datamodules.synthetic import read_marker, write_atomically
from polyvision.errors import ConfigError, DataError

__all__ = [
    "ANOMALY_KINDS",
    "SYNTHETIC_WRITERS",
    "synthetic_anomaly_is_complete",
    "write_synthetic_anomaly",
    "write_synthetic_avenue",
    "write_synthetic_ped2",
    "write_synthetic_shanghaitech",
]

GENERATOR_NAME = "polyvision.synthetic_anomaly"
GENERATOR_VERSION = 1
ANOMALY_KINDS = ("speed", "direction", "object")


@dataclass(frozen=True)
class Layout:
    folder: str
    height: int
    width: int
    colour: bool
    person: tuple[int, int]  # (height, width) in pixels
    speed: tuple[float, float]  # normal walking speed range, px/frame
    walkers: tuple[int, int]  # normal walkers per video (min, max)


LAYOUTS: dict[str, Layout] = {
    "ped2": Layout("UCSDped2", 96, 144, False, (24, 11), (0.8, 1.4), (2, 4)),
    "avenue": Layout("avenue", 180, 320, True, (66, 28), (1.5, 2.5), (2, 3)),
    "shanghaitech": Layout("ShanghaiTech", 96, 176, True, (26, 12), (0.8, 1.4), (2, 4)),
}


@dataclass
class Mover:
    x: float
    y: float
    vx: float
    vy: float
    height: int
    width: int
    texture: np.ndarray  # (height, width, 3) float offsets, in object coordinates
    colour: np.ndarray  # (3,)
    shape: str  # "person" or "cart"
    wraps: bool  # re-enters the frame when it leaves (normal walkers)
    start: int = 0
    stop: int = 1 << 30


# --------------------------------------------------------------------------- rendering


def _background(rng: np.random.Generator, layout: Layout) -> np.ndarray:
    h, w = layout.height, layout.width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 150 + 25 * (yy / h) + 10 * np.sin(xx / w * 2 * np.pi * rng.uniform(0.5, 1.5))
    texture = cv2.GaussianBlur(rng.normal(0, 12, (h, w)).astype(np.float32), (0, 0), 2.0)
    grey = base + texture
    # a walkway band with edges, as a fixed camera would see
    top, bottom = int(0.3 * h), int(0.92 * h)
    grey[top:bottom] += 12
    tint = rng.uniform(0.85, 1.15, 3) if layout.colour else np.ones(3)
    return np.clip(grey[..., None] * tint, 0, 255).astype(np.float32)


def _blocky_texture(rng: np.random.Generator, height: int, width: int, block: int, amplitude: float,
                    colour: bool) -> np.ndarray:
    rows, cols = -(-height // block), -(-width // block)
    channels = 3 if colour else 1
    blocks = rng.uniform(-amplitude, amplitude, (rows, cols, channels)).astype(np.float32)
    texture = np.repeat(np.repeat(blocks, block, axis=0), block, axis=1)[:height, :width]
    return np.broadcast_to(texture, (height, width, 3)).copy()


def _checker(height: int, width: int, cell: int, amplitude: float) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    board = np.where(((yy // cell) + (xx // cell)) % 2 == 0, amplitude, -amplitude).astype(np.float32)
    return np.repeat(board[..., None], 3, axis=2)


def _walker(rng: np.random.Generator, layout: Layout, speed: float | None = None, vertical: bool = False,
            wraps: bool = True) -> Mover:
    ph, pw = layout.person
    height = int(round(ph * rng.uniform(0.9, 1.1)))
    width = int(round(pw * rng.uniform(0.9, 1.1)))
    speed = rng.uniform(*layout.speed) if speed is None else speed
    direction = rng.choice([-1.0, 1.0])
    top, bottom = 0.3 * layout.height + height / 2, 0.92 * layout.height - height / 2
    colour = rng.uniform(45, 95, 3) if layout.colour else np.full(3, rng.uniform(45, 95))
    texture = _blocky_texture(rng, height, width, 3, 35.0, layout.colour)
    if vertical:
        return Mover(rng.uniform(0.2, 0.8) * layout.width, 0.0, 0.0, speed, height, width, texture, colour, "person", wraps)
    return Mover(rng.uniform(0, layout.width), rng.uniform(top, bottom), direction * speed, rng.normal(0, 0.05),
                 height, width, texture, colour, "person", wraps)


def _cart(rng: np.random.Generator, layout: Layout) -> Mover:
    ph, pw = layout.person
    height, width = int(round(0.6 * ph)), int(round(2.4 * pw))
    colour = rng.uniform(200, 235, 3) if layout.colour else np.full(3, rng.uniform(200, 235))
    y = rng.uniform(0.45, 0.8) * layout.height
    texture = _checker(height, width, 3, 30.0)
    return Mover(0.0, y, rng.uniform(*layout.speed), 0.0, height, width, texture, colour, "cart", False)


def _anomaly(rng: np.random.Generator, layout: Layout, kind: str, num_frames: int) -> Mover:
    """The anomalous mover of a test video, entering the frame about a third of the way in."""
    start = int(num_frames * rng.uniform(0.25, 0.4))
    if kind == "speed":
        mover = _walker(rng, layout, speed=4.0 * layout.speed[1], wraps=False)
    elif kind == "direction":
        mover = _walker(rng, layout, vertical=True, wraps=False)
    else:
        mover = _cart(rng, layout)
    mover.start = start
    # enter from the side the motion comes from
    if abs(mover.vy) > abs(mover.vx):
        mover.y = -mover.height / 2
    elif mover.vx > 0:
        mover.x = -mover.width / 2
    else:
        mover.x = layout.width + mover.width / 2
    return mover


def _position(mover: Mover, t: int, layout: Layout) -> tuple[float, float]:
    steps = t - mover.start
    x, y = mover.x + mover.vx * steps, mover.y + mover.vy * steps
    if mover.wraps:
        span = layout.width + mover.width
        x = (x + mover.width / 2) % span - mover.width / 2
    return x, y


def _draw(frame: np.ndarray, mask: np.ndarray | None, mover: Mover, t: int, layout: Layout) -> None:
    if not mover.start <= t < mover.stop:
        return
    cx, cy = _position(mover, t, layout)
    x0, y0 = int(np.floor(cx - mover.width / 2)), int(np.floor(cy - mover.height / 2))
    ys, xs = slice(max(0, y0), min(layout.height, y0 + mover.height)), slice(max(0, x0), min(layout.width, x0 + mover.width))
    if ys.start >= ys.stop or xs.start >= xs.stop:
        return
    yy, xx = np.mgrid[ys, xs].astype(np.float32)
    if mover.shape == "person":
        inside = ((xx + 0.5 - cx) / (mover.width / 2)) ** 2 + ((yy + 0.5 - cy) / (mover.height / 2)) ** 2 <= 1.0
    else:
        inside = np.ones_like(xx, dtype=bool)
    texture = mover.texture[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    region = frame[ys, xs]
    region[inside] = (mover.colour + texture)[inside]
    if mask is not None:
        mask[ys, xs] |= inside


def render_video(rng: np.random.Generator, layout: Layout, num_frames: int, anomaly: str | None,
                 background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T, H, W, 3) uint8 and anomaly masks (T, H, W) bool of one video."""
    movers = [_walker(rng, layout) for _ in range(int(rng.integers(layout.walkers[0], layout.walkers[1] + 1)))]
    special = _anomaly(rng, layout, anomaly, num_frames) if anomaly else None
    frames = np.empty((num_frames, layout.height, layout.width, 3), np.uint8)
    masks = np.zeros((num_frames, layout.height, layout.width), bool)
    for t in range(num_frames):
        frame = background.copy()
        for mover in movers:
            _draw(frame, None, mover, t, layout)
        if special is not None:
            _draw(frame, masks[t], special, t, layout)
        frame += rng.normal(0, 2.0, frame.shape[:2])[..., None].astype(np.float32)
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames, masks


# --------------------------------------------------------------------------- writers per layout


def _save_image(array: np.ndarray, path: Path, grey: bool = False) -> None:
    image = Image.fromarray(array[..., 0] if grey else array, mode="L" if grey else "RGB")
    image.save(path, quality=95) if path.suffix == ".jpg" else image.save(path)


def _save_frames(frames: np.ndarray, folder: Path, pattern: str, grey: bool = False, first: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames, start=first):
        _save_image(frame, folder / pattern.format(index), grey)


def _save_avi(frames: np.ndarray, path: Path, fps: float = 25.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames.shape[2], frames.shape[1]))
    if not writer.isOpened():
        raise DataError(path, "OpenCV cannot write MJPG AVI files here")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def _plan(num_test: int) -> list[str]:
    return [ANOMALY_KINDS[i % len(ANOMALY_KINDS)] for i in range(num_test)]


def _write_ped2(out: Path, layout: Layout, rng: np.random.Generator, num_train: int, num_test: int, num_frames: int,
                bar) -> None:
    background = _background(rng, layout)
    # UCSD numbers frames and masks from 001
    for i in range(num_train):
        frames, _ = render_video(rng, layout, num_frames, None, background)
        _save_frames(frames, out / "Train" / f"Train{i + 1:03d}", "{0:03d}.tif", grey=True, first=1)
        bar(1)
    for i, kind in enumerate(_plan(num_test)):
        frames, masks = render_video(rng, layout, num_frames, kind, background)
        name = f"Test{i + 1:03d}"
        _save_frames(frames, out / "Test" / name, "{0:03d}.tif", grey=True, first=1)
        mask_images = np.repeat((masks * 255).astype(np.uint8)[..., None], 3, axis=3)
        _save_frames(mask_images, out / "Test" / f"{name}_gt", "{0:03d}.bmp", grey=True, first=1)
        bar(1)


def _write_avenue(out: Path, layout: Layout, rng: np.random.Generator, num_train: int, num_test: int, num_frames: int,
                  bar, video_layout: str) -> None:
    from scipy.io import savemat

    background = _background(rng, layout)
    for split, count in (("training", num_train), ("testing", num_test)):
        plan = [None] * count if split == "training" else _plan(count)
        for i, kind in enumerate(plan):
            frames, masks = render_video(rng, layout, num_frames, kind, background)
            name = f"{i + 1:02d}"
            if video_layout == "avi":
                _save_avi(frames, out / f"{split}_videos" / f"{name}.avi")
            else:
                _save_frames(frames, out / split / "frames" / name, "{0:04d}.jpg")
            if split == "testing":
                cells = np.empty((1, num_frames), dtype=object)
                for t in range(num_frames):
                    cells[0, t] = masks[t].astype(np.uint8)
                target = out / "ground_truth_demo" / "testing_label_mask" / f"{i + 1}_label.mat"
                target.parent.mkdir(parents=True, exist_ok=True)
                savemat(str(target), {"volLabel": cells})
            bar(1)


def _write_shanghaitech(out: Path, layout: Layout, rng: np.random.Generator, num_train: int, num_test: int,
                        num_frames: int, bar, num_scenes: int) -> None:
    backgrounds = [_background(rng, layout) for _ in range(num_scenes)]
    for i in range(num_train):
        scene = i % num_scenes
        frames, _ = render_video(rng, layout, num_frames, None, backgrounds[scene])
        _save_frames(frames, out / "training" / "videosFrame" / f"{scene + 1:02d}_{i // num_scenes + 1:03d}", "{0:03d}.jpg")
        bar(1)
    labels_dir = out / "testing" / "test_frame_mask"
    labels_dir.mkdir(parents=True, exist_ok=True)
    for i, kind in enumerate(_plan(num_test)):
        scene = i % num_scenes
        frames, masks = render_video(rng, layout, num_frames, kind, backgrounds[scene])
        name = f"{scene + 1:02d}_{i // num_scenes + 1:04d}"
        _save_frames(frames, out / "testing" / "frames" / name, "{0:03d}.jpg")
        np.save(labels_dir / f"{name}.npy", masks.any(axis=(1, 2)).astype(np.int64))
        bar(1)


# --------------------------------------------------------------------------- public API


def synthetic_settings(dataset: str, num_train: int, num_test: int, num_frames: int, seed: int,
                       **extra: Any) -> dict[str, Any]:
    return {"generator": GENERATOR_NAME, "version": GENERATOR_VERSION, "dataset": dataset, "num_train": int(num_train),
            "num_test": int(num_test), "num_frames": int(num_frames), "seed": int(seed), **extra}


DEFAULTS: dict[str, dict[str, Any]] = {
    "ped2": dict(num_train=8, num_test=6, num_frames=60),
    "avenue": dict(num_train=4, num_test=3, num_frames=48, layout="avi"),
    "shanghaitech": dict(num_train=6, num_test=4, num_frames=48, num_scenes=2),
}


def _options(dataset: str, options: dict[str, Any]) -> dict[str, Any]:
    if dataset not in LAYOUTS:
        raise ConfigError(f"unknown synthetic anomaly dataset '{dataset}' (known: {', '.join(LAYOUTS)})")
    merged = {**DEFAULTS[dataset], "seed": 0, **options}
    unknown = sorted(set(merged) - set(DEFAULTS[dataset]) - {"seed"})
    if unknown:
        known = ", ".join(sorted(DEFAULTS[dataset]))
        raise ConfigError(f"synthetic {dataset}: unknown option '{unknown[0]}' (known: {known}, seed)")
    if merged["num_train"] < 1 or merged["num_test"] < 1 or merged["num_frames"] < 8:
        raise ConfigError(f"synthetic {dataset}: need num_train >= 1, num_test >= 1 and num_frames >= 8")
    if dataset == "avenue" and merged["layout"] not in ("avi", "frames"):
        raise ConfigError(f"synthetic avenue: layout must be avi or frames, got {merged['layout']!r}")
    return merged


def synthetic_anomaly_is_complete(root: str | os.PathLike, dataset: str, **options: Any) -> bool:
    """Whether ``root`` holds a finished synthetic ``dataset`` written with these options."""
    merged = _options(dataset, options)
    return read_marker(Path(root).expanduser() / LAYOUTS[dataset].folder) == synthetic_settings(dataset, **merged)


def write_synthetic_anomaly(dataset: str, root: str | os.PathLike, progress: bool = False, **options: Any) -> Path:
    """Write a synthetic ``dataset`` (``ped2``, ``avenue``, ``shanghaitech``) under ``root``
    (into ``root/<UCSDped2|avenue|ShanghaiTech>``) and return ``root``.

    Options (defaults in ``DEFAULTS``): ``num_train``/``num_test`` videos, ``num_frames`` per
    video, ``seed``; Avenue ``layout`` (``avi`` or ``frames``); ShanghaiTech ``num_scenes``.
    An existing target folder is replaced only if it is an earlier synthetic dataset.
    """
    merged = _options(dataset, options)
    layout = LAYOUTS[dataset]
    bar_object = None
    if progress:
        from tqdm.auto import tqdm

        bar_object = tqdm(total=merged["num_train"] + merged["num_test"], desc=f"synthetic {dataset}", unit="video")
    bar: Callable[[int], Any] = bar_object.update if bar_object is not None else (lambda n: None)

    def write(out: Path) -> None:
        rng = np.random.default_rng([merged["seed"], sum(map(ord, dataset))])
        common = (out, layout, rng, merged["num_train"], merged["num_test"], merged["num_frames"], bar)
        if dataset == "ped2":
            _write_ped2(*common)
        elif dataset == "avenue":
            _write_avenue(*common, video_layout=merged["layout"])
        else:
            _write_shanghaitech(*common, num_scenes=merged["num_scenes"])

    try:
        return write_atomically(root, layout.folder, synthetic_settings(dataset, **merged), write)
    finally:
        if bar_object is not None:
            bar_object.close()


def write_synthetic_ped2(root: str | os.PathLike, seed: int = 0, **options: Any) -> Path:
    """Synthetic UCSD Ped2 (grey tif frames, bmp masks) under ``root/UCSDped2``."""
    return write_synthetic_anomaly("ped2", root, seed=seed, **options)


def write_synthetic_avenue(root: str | os.PathLike, seed: int = 0, **options: Any) -> Path:
    """Synthetic CUHK Avenue (``.avi`` videos or frame folders, ``volLabel`` MAT masks) under ``root/avenue``."""
    return write_synthetic_anomaly("avenue", root, seed=seed, **options)


def write_synthetic_shanghaitech(root: str | os.PathLike, seed: int = 0, **options: Any) -> Path:
    """Synthetic ShanghaiTech (jpg frame folders, per-video ``.npy`` frame labels) under ``root/ShanghaiTech``."""
    return write_synthetic_anomaly("shanghaitech", root, seed=seed, **options)


SYNTHETIC_WRITERS: dict[str, Callable[..., Path]] = {
    "ped2": write_synthetic_ped2,
    "avenue": write_synthetic_avenue,
    "shanghaitech": write_synthetic_shanghaitech,
}
