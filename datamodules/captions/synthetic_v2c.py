"""A synthetic V2C over MSR-VTT-layout videos, so every HybridNet command runs offline.

``write_synthetic_v2c(root)`` writes ``root/v2c/`` in the layout that
``V2CDataModule(dataset="v2c", root=root/"v2c")`` reads (the real V2C release's file names,
Fang et al., "Video2Commonsense", EMNLP 2020; HybridNet's paths, github.com/yuweijiang/HybridNet):

- ``V2C_MSR-VTT_caption.json``, ``train_cvpr_humanRank_V2C_caption.json`` (every video with
  its first two entries), ``v2c_info.json`` (commonsense vocabulary + ``videos``
  {train, val, test} integer ids), ``msrvtt_new_info.json`` (caption vocabulary);
- ``videos/video<N>.mp4``: 64 x 64 H.264 clips of 16-24 frames (MSR-VTT names, ids from 0);
- ``feats/resnet152/video<N>.npy`` (40, 2048) appearance, ``i3d_features/msr_vtt-I3D-
  RGBFeatures-video<N>.npy`` (T, 1024) motion (T 6-16) and ``audio_features/video<N>.mp3.
  soundnet.h5`` (dataset ``layer24``, (1024, T), T 4-12) audio.

What happens: on a dark noisy background a *mover* (one of 5 shapes in one of 6 colours) slides
left, right, up or down, ``slow`` or ``fast``, ``towards`` or ``away`` from a static *target*
shape of another colour. Captions say it ("a red circle moves to the left towards a blue
square"); the commonsense fields follow from it: intention from the mode ("to reach the blue
square" / "to get away from the blue square"), effect from mode and speed (a fast approach
"touches" the target, a slow one "gets closer", ...), attribute from the speed ("fast",
"quick" / "slow", "calm"). Each video has 3 caption entries (paraphrases), each with 2
strings per commonsense type.

Features are fixed random projections (seeded) of what happens plus noise 0.05: appearance row
t codes both shapes' identities and positions at time t/40 of the clip; motion rows the
direction, speed and mode; audio rows speed and mode. The pixel path sees the same events.

Written atomically with a ``COMPLETE`` marker of its settings (``datamodules/synthetic.py``);
the output is a deterministic function of the settings.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np
from polyvision.datamodules.captions.v2c import (
    CAPTION_FILE,
    HUMAN_RANKED_FILE,
    INFO_FILE,
    VOCAB_FILE,
)
from polyvision.datamodules.forgery.synthetic_videos import _write_mp4
from polyvision.datamodules.synthetic import marker_matches, split_counts, write_atomically
from polyvision.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["APPEARANCE_DIR", "AUDIO_DIR", "AUDIO_PATTERN", "MOTION_DIR", "MOTION_PATTERN", "SYNTHETIC_WRITERS",
           "V2C_DIRNAME", "VIDEOS_DIR", "synthetic_v2c_is_complete", "synthetic_v2c_settings", "write_synthetic_v2c"]

V2C_DIRNAME = "v2c"
APPEARANCE_DIR = "feats/resnet152"
MOTION_DIR = "i3d_features"
AUDIO_DIR = "audio_features"
VIDEOS_DIR = "videos"
APPEARANCE_PATTERN = "video{id}.npy"
MOTION_PATTERN = "msr_vtt-I3D-RGBFeatures-video{id}.npy"
AUDIO_PATTERN = "video{id}.mp3.soundnet.h5"
GENERATOR_VERSION = 1
SPLITS = ("train", "val", "test")
DEFAULT_COUNTS = {"train": 120, "val": 20, "test": 20}
APPEARANCE_DIM, MOTION_DIM, AUDIO_DIM = 2048, 1024, 1024
APPEARANCE_FRAMES = 40
NOISE = 0.05
FPS = 25

COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 80, 230), "yellow": (235, 220, 50),
           "purple": (150, 60, 190), "white": (240, 240, 240)}  # RGB
SHAPES = ("circle", "square", "triangle", "diamond", "star")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
SPEEDS = ("slow", "fast")
MODES = ("towards", "away")
SPECIAL = ("<pad>", "<sos>", "<eos>", "<unk>")


# ----------------------------------------------------------------------------------------
# Events and their words
# ----------------------------------------------------------------------------------------
def _event(rng: np.random.Generator, size: int) -> dict[str, Any]:
    colours = rng.choice(len(COLOURS), size=2, replace=False)
    names = list(COLOURS)
    direction = list(DIRECTIONS)[int(rng.integers(4))]
    speed, mode = SPEEDS[int(rng.integers(2))], MODES[int(rng.integers(2))]
    dx, dy = DIRECTIONS[direction]
    margin, r = size // 8, size // 10
    far = size - 1 - margin - r
    near = margin + r
    travel = (0.7 if speed == "fast" else 0.3) * (far - near)
    # along the motion axis: target at the end the mover heads to (towards) or comes from (away)
    sign = dx + dy  # -1: towards smaller coordinates
    if mode == "towards":
        target_pos = near if sign < 0 else far
        start = far if sign < 0 else near
    else:
        target_pos = far if sign < 0 else near
        start = target_pos - sign * (2 * r + 3)
    across = float(rng.uniform(near, far))
    return {"mover": {"colour": names[colours[0]], "shape": SHAPES[int(rng.integers(len(SHAPES)))]},
            "target": {"colour": names[colours[1]], "shape": SHAPES[int(rng.integers(len(SHAPES)))]},
            "direction": direction, "speed": speed, "mode": mode, "radius": r,
            "start": float(start), "travel": float(sign * travel), "target_pos": float(target_pos),
            "across": across, "horizontal": dx != 0}


def _positions(event: dict[str, Any], fraction: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """(mover, target) centres (x, y) at ``fraction`` of the clip."""
    along = event["start"] + event["travel"] * fraction
    if event["horizontal"]:
        return (along, event["across"]), (event["target_pos"], event["across"])
    return (event["across"], along), (event["across"], event["target_pos"])


def _np(shape: dict) -> str:
    return f"{shape['colour']} {shape['shape']}"


def _captions(e: dict[str, Any]) -> list[str]:
    m, t, d = _np(e["mover"]), _np(e["target"]), e["direction"]
    rel = "towards" if e["mode"] == "towards" else "away from"
    adverb = "quickly" if e["speed"] == "fast" else "slowly"
    where = f"to the {d}" if d in ("left", "right") else d
    return [f"a {m} moves {where} {rel} a {t}",
            f"a {m} is moving {adverb} {d}",
            f"the {m} goes {d} {rel} the {t}"]


def _commonsense(e: dict[str, Any]) -> dict[str, list[str]]:
    t = _np(e["target"])
    if e["mode"] == "towards":
        intention = [f"to reach the {t}", f"to get to the {t}"]
        effect = ([f"it touches the {t}", f"it hits the {t}"] if e["speed"] == "fast"
                  else [f"it gets closer to the {t}", f"it is near the {t}"])
    else:
        intention = [f"to get away from the {t}", f"to escape the {t}"]
        effect = ([f"it is far from the {t}", f"it leaves the {t} behind"] if e["speed"] == "fast"
                  else [f"it is a little further from the {t}", f"it moves off the {t}"])
    attribute = ["fast", "quick"] if e["speed"] == "fast" else ["slow", "calm"]
    return {"intention": intention, "effect": effect, "attribute": attribute}


def _tokens(text: str) -> list[str]:
    return ["<sos>", *text.split(), "<eos>"]


def _entries(e: dict[str, Any]) -> list[dict[str, Any]]:
    cms = _commonsense(e)
    entries = []
    for k, caption in enumerate(_captions(e)):
        entry: dict[str, Any] = {"final_caption": _tokens(caption)}
        for kind, texts in cms.items():  # each entry lists its strings in a rotated order
            order = texts[k % len(texts):] + texts[:k % len(texts)]
            entry[kind] = [[text, _tokens(text)] for text in order]
        entries.append(entry)
    return entries


def _info(words: set[str]) -> dict[str, Any]:
    ordered = [*SPECIAL, *sorted(words)]
    return {"ix_to_word": {str(i): w for i, w in enumerate(ordered)}, "word_to_ix": {w: i for i, w in enumerate(ordered)}}


# ----------------------------------------------------------------------------------------
# Pixels and features
# ----------------------------------------------------------------------------------------
def _draw(canvas: np.ndarray, shape: dict, centre: tuple[float, float], r: int) -> None:
    colour = tuple(int(c) for c in COLOURS[shape["colour"]])
    x, y = int(np.rint(centre[0])), int(np.rint(centre[1]))
    kind = shape["shape"]
    if kind == "circle":
        cv2.circle(canvas, (x, y), r, colour, -1, cv2.LINE_AA)
    elif kind == "square":
        cv2.rectangle(canvas, (x - r, y - r), (x + r, y + r), colour, -1)
    else:
        if kind == "triangle":
            points = [(x, y - r), (x + r, y + r), (x - r, y + r)]
        elif kind == "diamond":
            points = [(x, y - r), (x + r, y), (x, y + r), (x - r, y)]
        else:  # star
            angles = np.pi / 2 + np.arange(10) * np.pi / 5
            radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
            points = [(x + rr * np.cos(a), y - rr * np.sin(a)) for a, rr in zip(angles, radii)]
        cv2.fillPoly(canvas, [np.round(np.asarray(points)).astype(np.int32)], colour, cv2.LINE_AA)


def _render(e: dict[str, Any], size: int, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    background = rng.integers(10, 40, size=(size, size, 3)).astype(np.uint8)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for f in range(num_frames):
        canvas = background.copy()
        mover, target = _positions(e, f / max(num_frames - 1, 1))
        _draw(canvas, e["target"], target, e["radius"])
        _draw(canvas, e["mover"], mover, e["radius"])
        frames[f] = canvas
    return frames


def _projections(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, 2021])
    codes = {"appearance": 2 * len(COLOURS) + 2 * len(SHAPES) + 4, "motion": 4 + 2 + 2 + 1, "audio": 2 + 2 + 1}
    dims = {"appearance": APPEARANCE_DIM, "motion": MOTION_DIM, "audio": AUDIO_DIM}
    return {k: (rng.standard_normal((codes[k], dims[k])) / np.sqrt(codes[k])).astype(np.float32) for k in codes}


def _one_hot(index: int, size: int) -> np.ndarray:
    out = np.zeros(size, np.float32)
    out[index] = 1.0
    return out


def _features(e: dict[str, Any], size: int, projections: dict[str, np.ndarray],
              rng: np.random.Generator) -> dict[str, np.ndarray]:
    colours, shapes = list(COLOURS), list(SHAPES)
    identity = np.concatenate([_one_hot(colours.index(e["mover"]["colour"]), len(colours)),
                               _one_hot(shapes.index(e["mover"]["shape"]), len(shapes)),
                               _one_hot(colours.index(e["target"]["colour"]), len(colours)),
                               _one_hot(shapes.index(e["target"]["shape"]), len(shapes))])
    rows = []
    for t in range(APPEARANCE_FRAMES):
        mover, target = _positions(e, t / (APPEARANCE_FRAMES - 1))
        rows.append(np.concatenate([identity, np.asarray([*mover, *target], np.float32) / size]))
    appearance = np.stack(rows) @ projections["appearance"]
    kind = np.concatenate([_one_hot(list(SPEEDS).index(e["speed"]), 2), _one_hot(list(MODES).index(e["mode"]), 2)])
    motion_code = np.concatenate([_one_hot(list(DIRECTIONS).index(e["direction"]), 4), kind])
    t_motion, t_audio = int(rng.integers(6, 17)), int(rng.integers(4, 13))
    motion = np.stack([np.append(motion_code, t / t_motion) for t in range(t_motion)]) @ projections["motion"]
    audio = np.stack([np.append(kind, t / t_audio) for t in range(t_audio)]) @ projections["audio"]
    out = {}
    for name, array in (("appearance", appearance), ("motion", motion), ("audio", audio)):
        out[name] = (array + NOISE * rng.standard_normal(array.shape)).astype(np.float32)
    return out


# ----------------------------------------------------------------------------------------
# Writer
# ----------------------------------------------------------------------------------------
def synthetic_v2c_settings(num_videos_per_split: int | Mapping[str, int] | None = None, frame_size: int = 64,
                           min_frames: int = 16, max_frames: int = 24, seed: int = 0) -> dict[str, Any]:
    """The settings recorded in (and compared against) the ``COMPLETE`` marker."""
    return {"generator": "polyvision.synthetic_v2c", "version": GENERATOR_VERSION,
            "num_videos_per_split": split_counts(num_videos_per_split, DEFAULT_COUNTS, "num_videos_per_split"),
            "frame_size": int(frame_size),
            "min_frames": int(min_frames), "max_frames": int(max_frames), "seed": int(seed)}


def synthetic_v2c_is_complete(root: str | os.PathLike, **settings: Any) -> bool:
    """True when ``root/v2c`` is a complete synthetic V2C written with ``settings``."""
    return marker_matches(Path(root).expanduser() / V2C_DIRNAME, synthetic_v2c_settings(**settings))


def _write_tree(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    counts, size, seed = settings["num_videos_per_split"], settings["frame_size"], settings["seed"]
    projections = _projections(seed)
    for folder in (APPEARANCE_DIR, MOTION_DIR, AUDIO_DIR, VIDEOS_DIR):
        (out / folder).mkdir(parents=True)
    captions, splits = {}, {}
    caption_words: set[str] = set()
    cms_words: set[str] = set()
    next_id = 0
    for split in SPLITS:
        splits[split] = list(range(next_id, next_id + counts[split]))
        next_id += counts[split]
    for split in SPLITS:
        for video_id in splits[split]:
            rng = np.random.default_rng([seed, video_id])
            event = _event(rng, size)
            entries = _entries(event)
            captions[f"video{video_id}"] = entries
            for entry in entries:
                caption_words.update(entry["final_caption"][1:-1])
                for kind in ("intention", "effect", "attribute"):
                    for _, tokens in entry[kind]:
                        cms_words.update(tokens[1:-1])
            num_frames = int(rng.integers(settings["min_frames"], settings["max_frames"] + 1))
            _write_mp4(out / VIDEOS_DIR / f"video{video_id}.mp4", _render(event, size, num_frames, rng), fps=FPS)
            features = _features(event, size, projections, rng)
            np.save(out / APPEARANCE_DIR / APPEARANCE_PATTERN.format(id=video_id), features["appearance"])
            np.save(out / MOTION_DIR / MOTION_PATTERN.format(id=video_id), features["motion"])
            with h5py.File(out / AUDIO_DIR / AUDIO_PATTERN.format(id=video_id), "w") as handle:
                handle.create_dataset("layer24", data=features["audio"].T)
    human = {name: entries[:2] for name, entries in captions.items()}
    (out / CAPTION_FILE).write_text(json.dumps(captions))
    (out / HUMAN_RANKED_FILE).write_text(json.dumps(human))
    (out / INFO_FILE).write_text(json.dumps({**_info(cms_words), "videos": splits}))
    (out / VOCAB_FILE).write_text(json.dumps(_info(caption_words)))
    return {"caption_words": len(caption_words), "cms_words": len(cms_words)}


def write_synthetic_v2c(root: str | os.PathLike, num_videos_per_split: int | Mapping[str, int] | None = None,
                        frame_size: int = 64, min_frames: int = 16, max_frames: int = 24, seed: int = 0) -> Path:
    """Write a synthetic V2C in the real layout to ``root/v2c`` (module docstring); return ``root``.

    Args:
        num_videos_per_split: videos per split, an int for all or a dict (default
            ``{"train": 120, "val": 20, "test": 20}``, about 2 s to write).
        frame_size: square frame side (at least 32).
        min_frames, max_frames: the frame count of each clip is drawn from this range.
        seed: the output is a deterministic function of all the settings.
    """
    settings = synthetic_v2c_settings(num_videos_per_split, frame_size, min_frames, max_frames, seed)
    if settings["frame_size"] < 32:
        raise ConfigError(f"frame_size must be at least 32, got {frame_size}")
    if not 2 <= settings["min_frames"] <= settings["max_frames"]:
        raise ConfigError(f"need 2 <= min_frames <= max_frames, got {min_frames}, {max_frames}")
    log.info("writing synthetic V2C (%s videos) to %s", settings["num_videos_per_split"], Path(root) / V2C_DIRNAME)
    return write_atomically(root, V2C_DIRNAME, settings, lambda out: _write_tree(out, settings))


SYNTHETIC_WRITERS: dict[str, Callable[..., Path]] = {"v2c": write_synthetic_v2c}
