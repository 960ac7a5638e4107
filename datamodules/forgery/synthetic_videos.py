"""Synthetic face-forgery *videos* written in the exact on-disk layouts of the real datasets.

Writers (``SYNTHETIC_WRITERS``; each returns ``root``):

``write_synthetic_lavdf``        LAV-DF's native layout: ``<root>/LAV-DF/{train,dev,test}/NNNNNN.mp4``
                                 (H.264, 25 fps, full-frame faces, default 96x96) and
                                 ``<root>/LAV-DF/metadata.json``, a list of records with ``file``,
                                 ``n_fakes``, ``fake_periods`` (seconds), ``duration``,
                                 ``original``, ``modify_video``, ``modify_audio``, ``split``,
                                 ``video_frames``, ``audio_channels``, ``audio_frames``.
``write_synthetic_forgerynet``   ForgeryNet as OmniFD reads it: ``<root>/ForgeryNet/{Training,
                                 Validation}/{video,image,spatial_localize}/`` and
                                 ``annotations/{video,image}_{train,val}.json`` (MMEngine
                                 ``data_list``). Video records: ``video_path`` (half of them
                                 without the ``.mp4`` suffix, which readers append), ``gt_label``,
                                 ``gt_segments`` (``{"frame": [s, e], "label": 0|1}``: the fake
                                 segments *and* the real stretches between them, label 0),
                                 ``duration``, ``face_data`` (one ``[x1, y1, x2, y2]`` box per
                                 frame). Image records: ``img_path``, ``gt_label``,
                                 ``seg_map_path`` (fakes), ``face_data``. Frames are larger
                                 than the face (default 96x96 around a moving 64x64 face), so
                                 the face crop matters.
``write_synthetic_ffpp_video``   the synthetic FF++ frame folders of ``write_synthetic_ffpp``
                                 plus OmniFD's video annotations
                                 ``FaceForensics++/annotations/{train,val,test}_video.json``
                                 (``video_path`` = frame folder, ``frames_list``, ``gt_label``).
``write_synthetic_wilddeepfake`` ``<root>/WildDeepFake/{real_train,real_test,fake_train,
                                 fake_test}/<video>/NNN.png`` and ``annotations/{train,test}.json``.

Learnable signal: every frame shows a synthetic face rendered by the *image* writer's
renderer (``synthetic_forgery``), so image and video forgeries look alike, which is what
OmniFD's joint training relies on. A fake frame carries the image writer's blended forged
patch (a method-specific texture from another identity, feathered alpha); real frames are
clean. About half of the videos are fake. LAV-DF and ForgeryNet fakes are *partially* fake:
1-2 segments covering 20-50 % of the video, outside of which the frames are clean (temporal
localization); FF++ and WildDeepfake fakes are fake throughout (video classification).
Frame ``f`` is fake iff ``s <= f < e`` for a segment ``[s, e)``; in seconds a segment is
``[s / fps, e / fps]``.

Every writer is deterministic per seed, writes into a temporary folder inside ``root`` and
renames the finished dataset into place, with a ``COMPLETE`` marker (written last) holding
the settings; ``synthetic_video_is_complete(kind, root, **settings)`` compares them.
An existing dataset folder without a marker is never replaced (``DataError``).
"""
from __future__ import annotations

import json
import logging
import os
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

# The image writer's renderer (private helpers of synthetic_forgery, reused on purpose so that
# image and video forgeries look alike).
from polyvision.datamodules.forgery.synthetic_images import (
    FFPP_DIRNAME,
    FFPP_METHODS,
    _face,
    _forgery_alpha,
    _identity,
    _render_alpha,
    _texture,
    synthetic_ffpp_is_complete,
    write_synthetic_ffpp,
)
from polyvision.datamodules.synthetic import MARKER_NAME, read_marker, write_atomically
from polyvision.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "FPS",
    "FORGERYNET_DIRNAME",
    "LAVDF_DIRNAME",
    "MARKER_NAME",
    "SYNTHETIC_DEFAULTS",
    "SYNTHETIC_WRITERS",
    "WILDDEEPFAKE_DIRNAME",
    "fake_frame_mask",
    "fake_segments",
    "render_face_video",
    "synthetic_video_is_complete",
    "synthetic_video_settings",
    "write_synthetic_ffpp_video",
    "write_synthetic_forgerynet",
    "write_synthetic_lavdf",
    "write_synthetic_wilddeepfake",
]

FPS = 25
VIDEO_MARKER_NAME = "COMPLETE_video"  # FF++: marks the video annotations next to the image writer's tree
LAVDF_DIRNAME = "LAV-DF"
FORGERYNET_DIRNAME = "ForgeryNet"
WILDDEEPFAKE_DIRNAME = "WildDeepFake"
GENERATOR_VERSION = 1
_DIRNAMES = {"lavdf": LAVDF_DIRNAME, "forgerynet": FORGERYNET_DIRNAME, "wilddeepfake": WILDDEEPFAKE_DIRNAME,
             "ffpp_video": FFPP_DIRNAME}

#: Default settings of each writer (also what the datamodules' ``synthetic=True`` writes).
SYNTHETIC_DEFAULTS: dict[str, dict[str, Any]] = {
    "lavdf": {"num_videos": 24, "min_frames": 48, "max_frames": 96, "image_size": 96, "seed": 0},
    "forgerynet": {"num_videos": 24, "num_images": 48, "min_frames": 48, "max_frames": 96, "frame_size": 96,
                   "face_size": 64, "seed": 0},
    "ffpp_video": {"num_videos": 20, "frames_per_video": 40, "image_size": 64, "seed": 0},
    "wilddeepfake": {"num_videos": 16, "frames_per_video": 40, "image_size": 64, "seed": 0},
}


# ----------------------------------------------------------------------------------------
# Settings and markers
# ----------------------------------------------------------------------------------------
def synthetic_video_settings(kind: str, **settings: Any) -> dict[str, Any]:
    """The settings recorded in (and compared against) the ``COMPLETE`` marker of ``kind``
    (``lavdf``, ``forgerynet``, ``ffpp_video``, ``wilddeepfake``); defaults fill the rest."""
    if kind not in SYNTHETIC_DEFAULTS:
        raise ConfigError(f"unknown synthetic video dataset {kind!r}; choose one of {', '.join(SYNTHETIC_DEFAULTS)}")
    unknown = set(settings) - set(SYNTHETIC_DEFAULTS[kind])
    if unknown:
        raise ConfigError(f"unknown setting(s) {sorted(unknown)} for the synthetic {kind} writer")
    values = {**SYNTHETIC_DEFAULTS[kind], **settings}
    return {"generator": f"polyvision.synthetic_{kind}", "version": GENERATOR_VERSION,
            **{k: int(v) for k, v in values.items()}}


def _marker(kind: str, root: Path) -> Path:
    name = VIDEO_MARKER_NAME if kind == "ffpp_video" else MARKER_NAME
    return Path(root).expanduser() / _DIRNAMES[kind] / name


def synthetic_video_is_complete(kind: str, root: str | os.PathLike, **settings: Any) -> bool:
    """True when ``root`` holds a complete synthetic ``kind`` dataset written with ``settings``."""
    found = read_marker(_marker(kind, Path(root)).parent) if kind != "ffpp_video" else _read_video_marker(root)
    wanted = synthetic_video_settings(kind, **settings)
    return found is not None and all(found.get(k) == v for k, v in wanted.items())


def _read_video_marker(root: str | os.PathLike) -> dict[str, Any] | None:
    """FF++ video annotations are added beside the image tree, so they have a marker of their own."""
    try:
        found = json.loads(_marker("ffpp_video", Path(root)).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _check_counts(num_videos: int, min_frames: int, max_frames: int, size: int, what: str = "image_size") -> None:
    if num_videos < 6:
        raise ConfigError(f"num_videos must be at least 6 (3 splits x real+fake), got {num_videos}")
    if min_frames < 8 or max_frames < min_frames:
        raise ConfigError(f"need 8 <= min_frames <= max_frames, got {min_frames}, {max_frames}")
    if size < 32 or size % 2:
        raise ConfigError(f"{what} must be an even number >= 32 (H.264 4:2:0), got {size}")


# ----------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------
def _split_counts(n: int, fractions: tuple[float, ...]) -> list[int]:
    """Sizes of the splits (each at least 1, the first takes the rest)."""
    rest = [max(1, int(round(f * n))) for f in fractions[1:]]
    return [n - sum(rest)] + rest


def _plan(num_videos: int, seed: int, splits: tuple[str, ...], fractions: tuple[float, ...]):
    """Identities (one real video each) and fake videos made on them; split by identity.
    Returns ``[(kind, identity, method, source identity, split), ...]`` (reals first)."""
    n_ident = num_videos // 2
    n_fake = num_videos - n_ident
    order = np.random.default_rng([seed, 0]).permutation(n_ident)
    counts = _split_counts(n_ident, fractions)
    bounds = np.cumsum(counts)
    split_of = {int(ident): splits[int(np.searchsorted(bounds, rank, side="right"))]
                for rank, ident in enumerate(order)}
    plan = [("real", i, None, None, split_of[i]) for i in range(n_ident)]
    for j in range(n_fake):
        target = j % n_ident
        source = (target + 1 + j // n_ident) % n_ident if n_ident > 1 else target
        plan.append(("fake", target, FFPP_METHODS[j % len(FFPP_METHODS)], source, split_of[target]))
    return plan


def fake_segments(rng: np.random.Generator, num_frames: int) -> list[tuple[int, int]]:
    """1-2 disjoint fake segments ``[s, e)`` (frames) covering 20-50 % of the video."""
    k = 1 if rng.random() < 0.5 else 2
    total = int(round(rng.uniform(0.2, 0.5) * num_frames))
    total = min(max(total, 2 * k), num_frames - k)
    low = max(1, total // 4)  # neither of two segments is tiny
    first = int(rng.integers(low, total - low + 1)) if k == 2 else total
    lengths = [first, total - first] if k == 2 else [total]
    free = num_frames - total - (k - 1)  # at least one real frame between two segments
    gaps = rng.multinomial(free, np.ones(k + 1) / (k + 1))
    segments, position = [], int(gaps[0])
    for i, length in enumerate(lengths):
        segments.append((position, position + length))
        position += length + int(gaps[i + 1]) + 1
    return segments


def fake_frame_mask(num_frames: int, segments: list[tuple[int, int]]) -> np.ndarray:
    """Boolean (num_frames,): frame f is fake iff it lies in some ``[s, e)``."""
    mask = np.zeros(num_frames, bool)
    for s, e in segments:
        mask[s:e] = True
    return mask


def render_face_video(ident: dict[str, Any], size: int, num_frames: int, rng: np.random.Generator,
                      method: str | None = None, source_skin: np.ndarray | None = None,
                      fake: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render a face video with the image writer's renderer.

    ``fake`` (bool per frame; default: every frame when ``method`` is given) says which frames
    carry the blended forged patch of ``method``. Returns uint8 frames ``(N, size, size, 3)``
    and the float32 forgery alpha ``(N, size, size)`` in [0, 1] (zeros on clean frames)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    grid = (yy, xx)
    patches = texture = None
    if method is not None:
        patches = _forgery_alpha(rng, grid, ident)
        texture = _texture(method, rng, grid, ident["skin"] if source_skin is None else source_skin)
        if fake is None:
            fake = np.ones(num_frames, bool)
    drift = rng.normal(0, 0.8, (num_frames, 2)).cumsum(0).clip(-4, 4)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    alphas = np.zeros((num_frames, size, size), np.float32)
    for f in range(num_frames):
        dx, dy = float(drift[f, 0]), float(drift[f, 1])
        noise = rng.normal(0, 3.0, (size, size)).astype(np.float32)
        img = _face(ident, grid, dx, dy, noise)
        if patches is not None and fake is not None and fake[f]:
            alpha = _render_alpha(patches, grid, ident["cx"] + dx, ident["cy"] + dy)
            shifted = np.roll(texture, (int(round(dy)), int(round(dx))), axis=(0, 1))
            img = img * (1 - alpha[..., None]) + (shifted + noise[..., None]) * alpha[..., None]
            alphas[f] = alpha
        frames[f] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return frames, alphas


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth two-colour gradient (float32 (H, W, 3)) for full frames around a face."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    a, b = rng.uniform(30, 200, 3).astype(np.float32), rng.uniform(30, 200, 3).astype(np.float32)
    t = np.clip((xx + yy) / (height + width), 0, 1)[..., None]
    return a * (1 - t) + b * t


def _place_faces(faces: np.ndarray, alphas: np.ndarray, frame_size: int, rng: np.random.Generator):
    """Paste face canvases ``(N, s, s, 3)`` into ``frame_size`` frames at a slowly moving
    position. Returns frames (N, F, F, 3) uint8, full-frame alphas (N, F, F) and the boxes
    ``[x1, y1, x2, y2]`` (ints) per frame."""
    n, s = faces.shape[0], faces.shape[1]
    room = frame_size - s
    background = _background(rng, frame_size, frame_size)
    x0, y0 = rng.uniform(0.25 * room, 0.75 * room, 2)
    walk = rng.normal(0, 0.6, (n, 2)).cumsum(0)
    frames = np.empty((n, frame_size, frame_size, 3), np.uint8)
    full = np.zeros((n, frame_size, frame_size), np.float32)
    boxes = []
    for f in range(n):
        x = int(np.clip(round(x0 + walk[f, 0]), 0, room))
        y = int(np.clip(round(y0 + walk[f, 1]), 0, room))
        noise = rng.normal(0, 3.0, (frame_size, frame_size, 1)).astype(np.float32)
        canvas = np.clip(background + noise + 0.5, 0, 255).astype(np.uint8)
        canvas[y:y + s, x:x + s] = faces[f]
        frames[f] = canvas
        full[f, y:y + s, x:x + s] = alphas[f]
        boxes.append([x, y, x + s, y + s])
    return frames, full, boxes


def _write_mp4(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    """H.264 (yuv420p, CRF 12, no B-frames, a key frame every second) with PyAV."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = int(frames.shape[1]), int(frames.shape[2])
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1  # deterministic and polite on shared machines
        stream.options = {"crf": "12", "preset": "ultrafast", "bf": "0", "keyint": str(fps),
                          "min-keyint": str(fps), "scenecut": "0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, compress_level=1)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        json.dump(data, fh, indent=1)


def _seconds(frame: int, fps: int = FPS) -> float:
    return round(frame / fps, 6)


# ----------------------------------------------------------------------------------------
# LAV-DF
# ----------------------------------------------------------------------------------------
def write_synthetic_lavdf(root: str | os.PathLike, num_videos: int = 24, min_frames: int = 48,
                          max_frames: int = 96, image_size: int = 96, seed: int = 0,
                          progress: bool = False) -> Path:
    """Write a synthetic LAV-DF (visual track only) under ``root/LAV-DF`` and return ``root``.

    Half of the videos are real (one per identity), half fake (made on an identity of the
    same split, ``original`` naming its real video), each with 1-2 fake periods covering
    20-50 % of it. Splits by identity ~70/15/15 into ``train``/``dev``/``test``. Videos are
    ``image_size`` square, 25 fps, ``min_frames..max_frames`` frames; no audio track
    (``audio_channels`` 0, ``modify_audio`` false)."""
    _check_counts(num_videos, min_frames, max_frames, image_size)
    settings = synthetic_video_settings("lavdf", num_videos=num_videos, min_frames=min_frames,
                                        max_frames=max_frames, image_size=image_size, seed=seed)

    def write(out: Path) -> dict[str, Any]:
        plan = _plan(num_videos, seed, ("train", "dev", "test"), (0.7, 0.15, 0.15))
        identities = [_identity(np.random.default_rng([seed, 1, i]), image_size)
                      for i in range(num_videos // 2)]
        real_file = {p[1]: f"{p[4]}/{index:06d}.mp4" for index, p in enumerate(plan) if p[0] == "real"}
        metadata = []
        for index, (kind, ident, method, source, split) in enumerate(_progress(plan, progress, "LAV-DF")):
            rng = np.random.default_rng([seed, 2, index])
            n = int(rng.integers(min_frames, max_frames + 1))
            segments = fake_segments(rng, n) if kind == "fake" else []
            frames, _ = render_face_video(identities[ident], image_size, n, rng, method,
                                          None if source is None else identities[source]["skin"],
                                          fake_frame_mask(n, segments) if segments else None)
            name = f"{split}/{index:06d}.mp4"
            _write_mp4(out / name, frames)
            metadata.append({
                "file": name,
                "n_fakes": len(segments),
                "fake_periods": [[_seconds(s), _seconds(e)] for s, e in segments],
                "duration": _seconds(n),
                "original": real_file[ident] if kind == "fake" else None,
                "modify_video": kind == "fake",
                "modify_audio": False,
                "split": split,
                "video_frames": n,
                "audio_channels": 0,
                "audio_frames": 0,
            })
        _write_json(out / "metadata.json", metadata)
        return {"split_sizes": {s: sum(r["split"] == s for r in metadata) for s in ("train", "dev", "test")}}

    return write_atomically(root, LAVDF_DIRNAME, settings, write)


# ----------------------------------------------------------------------------------------
# ForgeryNet
# ----------------------------------------------------------------------------------------
def write_synthetic_forgerynet(root: str | os.PathLike, num_videos: int = 24, num_images: int = 48,
                               min_frames: int = 48, max_frames: int = 96, frame_size: int = 96,
                               face_size: int = 64, seed: int = 0, progress: bool = False) -> Path:
    """Write a synthetic ForgeryNet (videos with temporal annotations, images with masks,
    face boxes) under ``root/ForgeryNet`` and return ``root``.

    Split by identity ~75/25 into ``Training`` and ``Validation`` (ForgeryNet's test set).
    Videos: ``frame_size`` square frames with a ``face_size`` face moving inside; a fake video
    has 1-2 fake segments (20-50 %). Images: single frames, half fake, with a full-frame soft
    mask (``alpha * 255``) under ``spatial_localize``."""
    _check_counts(num_videos, min_frames, max_frames, frame_size, "frame_size")
    if num_images < 4:
        raise ConfigError(f"num_images must be at least 4, got {num_images}")
    if not 32 <= face_size <= frame_size:
        raise ConfigError(f"need 32 <= face_size <= frame_size, got face_size={face_size}, frame_size={frame_size}")
    settings = synthetic_video_settings("forgerynet", num_videos=num_videos, num_images=num_images,
                                        min_frames=min_frames, max_frames=max_frames, frame_size=frame_size,
                                        face_size=face_size, seed=seed)
    folders = {"train": "Training", "val": "Validation"}

    def write(out: Path) -> dict[str, Any]:
        n_ident = max(num_videos, num_images) // 2
        identities = [_identity(np.random.default_rng([seed, 1, i]), face_size) for i in range(n_ident)]
        lists: dict[str, list[dict[str, Any]]] = {f"{t}_{s}": [] for t in ("video", "image") for s in folders}
        video_plan = _plan(num_videos, seed, ("train", "val"), (0.75, 0.25))
        for index, (kind, ident, method, source, split) in enumerate(_progress(video_plan, progress, "ForgeryNet")):
            rng = np.random.default_rng([seed, 2, index])
            n = int(rng.integers(min_frames, max_frames + 1))
            segments = fake_segments(rng, n) if kind == "fake" else []
            fake = fake_frame_mask(n, segments)
            faces, alphas = render_face_video(identities[ident], face_size, n, rng, method,
                                              None if source is None else identities[source]["skin"],
                                              fake if segments else None)
            frames, _, boxes = _place_faces(faces, alphas, frame_size, rng)
            name = f"{kind}/{index:04d}.mp4"
            _write_mp4(out / folders[split] / "video" / name, frames)
            gt_segments, start = [], 0  # fake segments and the real stretches around them
            for s, e in segments + [(n, n)]:
                if s > start:
                    gt_segments.append({"frame": [start, s], "label": 0})
                if e > s:
                    gt_segments.append({"frame": [s, e], "label": 1})
                start = e
            lists[f"video_{split}"].append({
                "video_path": name if index % 2 == 0 else name[: -len(".mp4")],  # readers append .mp4
                "gt_label": int(kind == "fake"),
                "gt_segments": gt_segments,
                "duration": _seconds(n),
                "face_data": boxes,
            })
        image_plan = _plan(num_images, seed + 7919, ("train", "val"), (0.75, 0.25))
        for index, (kind, ident, method, source, split) in enumerate(image_plan):
            rng = np.random.default_rng([seed, 3, index])
            faces, alphas = render_face_video(identities[ident % n_ident], face_size, 1, rng, method,
                                              None if source is None else identities[source % n_ident]["skin"])
            frames, full, boxes = _place_faces(faces, alphas, frame_size, rng)
            name = f"{kind}/{index:04d}.png"
            _write_png(out / folders[split] / "image" / name, frames[0])
            record: dict[str, Any] = {"img_path": name, "gt_label": int(kind == "fake"), "face_data": boxes[0]}
            if kind == "fake":
                _write_png(out / folders[split] / "spatial_localize" / name,
                           np.clip(full[0] * 255.0 + 0.5, 0, 255).astype(np.uint8))
                record["seg_map_path"] = name
            lists[f"image_{split}"].append(record)
        for name, data_list in lists.items():
            metainfo = {"dataset": "ForgeryNet (synthetic, polyvision)", "classes": ["real", "fake"],
                        "generator": "polyvision.synthetic_forgerynet"}
            _write_json(out / "annotations" / f"{name}.json", {"metainfo": metainfo, "data_list": data_list})
        return {"split_sizes": {name: len(items) for name, items in lists.items()}}

    return write_atomically(root, FORGERYNET_DIRNAME, settings, write)


# ----------------------------------------------------------------------------------------
# FaceForensics++ (video annotations over the image writer's frame folders)
# ----------------------------------------------------------------------------------------
def write_synthetic_ffpp_video(root: str | os.PathLike, num_videos: int = 20, frames_per_video: int = 40,
                               image_size: int = 64, seed: int = 0, progress: bool = False) -> Path:
    """Write the synthetic FF++ of ``write_synthetic_ffpp`` (frame folders) and OmniFD's video
    annotations ``FaceForensics++/annotations/{train,val,test}_video.json``: one record per
    frame folder with ``video_path`` (relative to ``root``), ``frames_list`` (file names) and
    ``gt_label``. Each file is written to a temporary name and renamed; the marker
    ``FaceForensics++/COMPLETE_video`` is written last."""
    settings = synthetic_video_settings("ffpp_video", num_videos=num_videos, frames_per_video=frames_per_video,
                                        image_size=image_size, seed=seed)
    root = Path(root).expanduser()
    image_settings = {"num_videos": num_videos, "frames_per_video": frames_per_video, "image_size": image_size,
                      "seed": seed}
    if not synthetic_ffpp_is_complete(root, **image_settings):
        write_synthetic_ffpp(root, progress=progress, **image_settings)
    ann_dir = root / FFPP_DIRNAME / "annotations"
    sizes = {}
    for split in ("train", "val", "test"):
        with open(ann_dir / f"{split}.json") as fh:
            images = json.load(fh)["data_list"]
        videos: OrderedDict[str, dict[str, Any]] = OrderedDict()
        for record in images:
            folder, name = record["img_path"].rsplit("/", 1)
            entry = videos.setdefault(folder, {"video_path": folder, "gt_label": record["gt_label"],
                                               "frames_list": []})
            entry["frames_list"].append(name)
        data = {"metainfo": {"dataset": "FaceForensics++ (synthetic, polyvision)", "classes": ["real", "fake"],
                             "split": split, "generator": "polyvision.synthetic_ffpp_video"},
                "data_list": list(videos.values())}
        tmp = ann_dir / f".{split}_video.json.{uuid.uuid4().hex[:8]}"
        _write_json(tmp, data)
        os.replace(tmp, ann_dir / f"{split}_video.json")
        sizes[split] = len(videos)
    marker = _marker("ffpp_video", root)
    tmp = marker.with_name(f".{marker.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps({**settings, "split_sizes": sizes}, indent=1))
    os.replace(tmp, marker)
    return root


# ----------------------------------------------------------------------------------------
# WildDeepfake
# ----------------------------------------------------------------------------------------
def write_synthetic_wilddeepfake(root: str | os.PathLike, num_videos: int = 16, frames_per_video: int = 40,
                                 image_size: int = 64, seed: int = 0, progress: bool = False) -> Path:
    """Write a synthetic WildDeepfake under ``root/WildDeepFake``: frame folders
    ``{real,fake}_{train,test}/<video>/NNN.png`` (face crops, fakes fake throughout) and
    ``annotations/{train,test}.json`` (``video_path`` relative to ``WildDeepFake/``,
    ``frames_list``, ``gt_label``). Split by identity ~75/25."""
    _check_counts(num_videos, frames_per_video, frames_per_video, image_size)
    settings = synthetic_video_settings("wilddeepfake", num_videos=num_videos, frames_per_video=frames_per_video,
                                        image_size=image_size, seed=seed)

    def write(out: Path) -> dict[str, Any]:
        plan = _plan(num_videos, seed, ("train", "test"), (0.75, 0.25))
        identities = [_identity(np.random.default_rng([seed, 1, i]), image_size) for i in range(num_videos // 2)]
        lists: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
        for index, (kind, ident, method, source, split) in enumerate(_progress(plan, progress, "WildDeepfake")):
            rng = np.random.default_rng([seed, 2, index])
            frames, _ = render_face_video(identities[ident], image_size, frames_per_video, rng, method,
                                          None if source is None else identities[source]["skin"])
            folder = f"{kind}_{split}/{index:03d}"
            names = [f"{f:03d}.png" for f in range(frames_per_video)]
            for name, frame in zip(names, frames):
                _write_png(out / folder / name, frame)
            lists[split].append({"video_path": folder, "gt_label": int(kind == "fake"), "frames_list": names})
        for split, data_list in lists.items():
            _write_json(out / "annotations" / f"{split}.json",
                        {"metainfo": {"dataset": "WildDeepfake (synthetic, polyvision)", "classes": ["real", "fake"],
                                      "split": split}, "data_list": data_list})
        return {"split_sizes": {s: len(v) for s, v in lists.items()}}

    return write_atomically(root, WILDDEEPFAKE_DIRNAME, settings, write)


def _progress(items, enabled: bool, name: str):
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return items
    return tqdm(items, desc=f"synthetic {name} videos", unit="video", leave=False)


SYNTHETIC_WRITERS: dict[str, Callable[..., Path]] = {
    "lavdf": write_synthetic_lavdf,
    "forgerynet": write_synthetic_forgerynet,
    "ffpp_video": write_synthetic_ffpp_video,
    "wilddeepfake": write_synthetic_wilddeepfake,
}
