"""Precomputed V2C/HybridNet video features, read and reduced as HybridNet's loader does
(Yu et al., "Hybrid Reasoning Network for Video-based Commonsense Captioning", ACM MM 2021,
section 4.1; official code github.com/yuweijiang/HybridNet, ``utils/dataloader.py`` and
``utils/prepro_feats.py``):

- **appearance**: ImageNet ResNet-152 pool features of 40 uniformly sampled frames,
  ``video<N>.npy`` (40, 2048). :func:`select_appearance` keeps 20: with stride 2, the first
  row of each pair at evaluation, a random one of each pair in training;
- **motion**: I3D RGB features, ``msr_vtt-I3D-RGBFeatures-video<N>.npy`` (T, 1024), T varying;
- **audio**: SoundNet ``layer24``, ``video<N>.mp3.soundnet.h5`` (dataset ``layer24`` of shape
  (1024, T), transposed here), or a ``.npy`` (T, 1024).

Motion and audio are reduced to 10 rows by :func:`reduce_rows`: in training 3 + 3 + 4 random
rows from the three thirds of T (in time order); at evaluation fixed, evenly spaced rows; when
T < 10 every row is kept and the last one repeated.

A missing file, an unreadable one or one of the wrong width raises one ``DataError`` naming
the file (``skip_bad_samples`` then skips and counts the video).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from polyvision.errors import DataError

__all__ = ["APPEARANCE_ROWS", "REDUCED_ROWS", "FeatureSpec", "load_feature", "reduce_rows", "select_appearance"]

APPEARANCE_ROWS = 20  # kept of the 40 sampled frames
REDUCED_ROWS = 10  # motion and audio rows


def select_appearance(features: np.ndarray, keep: int = APPEARANCE_ROWS, train: bool = False,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """``keep`` rows of ``features`` (T, D): stride ``T // keep`` (2 for the paper's 40 -> 20),
    the first row of each group at evaluation, a random row of each group in training (``rng``:
    the sample's seeded generator). Fewer than ``keep`` rows: all, the last one repeated."""
    total = len(features)
    if total < keep:
        index = np.minimum(np.arange(keep), total - 1)
        return features[index]
    stride = total // keep
    index = np.arange(keep) * stride
    if train and stride > 1:
        rng = rng if rng is not None else np.random.default_rng()
        index = index + rng.integers(0, stride, size=keep)
    return features[index]


def reduce_rows(features: np.ndarray, rows: int = REDUCED_ROWS, train: bool = False,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """``rows`` rows of ``features`` (T, D), as the module docstring says."""
    total = len(features)
    if total <= rows:
        return features[np.minimum(np.arange(rows), total - 1)]
    if not train:
        return features[np.linspace(0, total - 1, rows).round().astype(int)]
    rng = rng if rng is not None else np.random.default_rng()
    counts = [rows // 3, rows // 3, rows - 2 * (rows // 3)]  # 3 + 3 + 4
    bounds = [0, total // 3, 2 * total // 3, total]
    picked = []
    for count, low, high in zip(counts, bounds[:-1], bounds[1:]):
        span = high - low
        chosen = rng.choice(span, size=count, replace=span < count)
        picked.extend(sorted(low + chosen))
    return features[np.asarray(picked)]


class FeatureSpec:
    """Where one modality's files are and how wide their rows are.

    ``pattern`` names a video's file with ``{id}`` (e.g. ``video{id}.npy``); ``.h5`` files are
    read through ``h5_key`` and transposed when ``transpose``."""

    def __init__(self, name: str, directory: str | os.PathLike, pattern: str, dim: int,
                 h5_key: str = "layer24", transpose: bool = True):
        self.name = name
        self.directory = Path(directory)
        self.pattern = pattern
        self.dim = int(dim)
        self.h5_key = h5_key
        self.transpose = transpose

    def path(self, video_id: int) -> Path:
        return self.directory / self.pattern.format(id=video_id)

    def load(self, video_id: int) -> np.ndarray:
        return load_feature(self.path(video_id), self.dim, self.h5_key, self.transpose)


def load_feature(path: Path, dim: int, h5_key: str = "layer24", transpose: bool = True) -> np.ndarray:
    """The (T, dim) float32 rows of one feature file; ``DataError`` naming it otherwise."""
    if not path.is_file():
        raise DataError(path, "feature file not found")
    try:
        if path.suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as handle:
                if h5_key not in handle:
                    raise DataError(path, f"has no dataset {h5_key!r}")
                array = np.asarray(handle[h5_key])
            if transpose:
                array = array.T
        else:
            array = np.load(path, allow_pickle=False)
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - any unreadable file is one data error
        raise DataError(path, f"unreadable feature file ({type(error).__name__}: {error})") from None
    if array.ndim != 2 or array.shape[1] != dim or array.shape[0] < 1:
        raise DataError(path, f"features of shape {tuple(array.shape)}, expected (T, {dim})")
    return np.ascontiguousarray(array, dtype=np.float32)
