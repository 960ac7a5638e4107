"""Precomputed region features, read lazily, one file per image.

The bottom-up attention features (Anderson et al., "Bottom-Up and Top-Down Attention for Image
Captioning and VQA", CVPR 2018; the "10 to 100 features per image (adaptive)" release) that
CVLNM uses are converted by ``scripts/make_bu_data.py`` of github.com/ruotianluo/
self-critical.pytorch into ``cocobu_att/<cocoid>.npz`` with key ``feat`` of shape (N, 2048),
N varying from 10 to 100. A folder of ``<id>.npy`` arrays is read too (the same script's
``_fc`` layout, and what users often save).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from polyvision.errors import DataError

__all__ = ["RegionFeatures"]


class RegionFeatures:
    """The region features of a folder: ``load(item_id)`` returns float32 (N, feature_dim).

    Args:
        folder: the feature folder (``cocobu_att``).
        feature_dim: the width every file must have (2048 for bottom-up features).
        max_regions: keep at most this many regions (the first ones, the detector's order).
    """

    SUFFIXES = (".npz", ".npy")

    def __init__(self, folder: str | os.PathLike, feature_dim: int = 2048, max_regions: int = 100):
        self.folder = Path(folder).expanduser()
        self.feature_dim = int(feature_dim)
        self.max_regions = int(max_regions)

    def path(self, item_id: int) -> Path:
        """The file holding ``item_id``'s features (``.npz`` first); raises a ``DataError``
        naming the expected file when there is none."""
        for suffix in self.SUFFIXES:
            candidate = self.folder / f"{item_id}{suffix}"
            if candidate.is_file():
                return candidate
        raise DataError(self.folder / f"{item_id}.npz", f"no region features for image id {item_id} "
                        f"(neither .npz nor .npy in {self.folder})")

    def load(self, item_id: int) -> np.ndarray:
        path = self.path(item_id)
        try:
            if path.suffix == ".npz":
                with np.load(path) as archive:
                    key = "feat" if "feat" in archive.files else ("z" if "z" in archive.files else None)
                    if key is None:
                        raise DataError(path, f"no 'feat' array (found {', '.join(archive.files) or 'nothing'})")
                    array = archive[key]
            else:
                array = np.load(path)
        except DataError:
            raise
        except (OSError, ValueError) as error:
            raise DataError(path, f"unreadable feature file ({error})") from None
        if array.ndim == 1 and array.size % self.feature_dim == 0 and array.size:
            array = array.reshape(-1, self.feature_dim)  # a flat file, as the release reshapes to (-1, 2048)
        if array.ndim != 2 or array.shape[1] != self.feature_dim:
            raise DataError(path, f"region features of shape {tuple(array.shape)}, expected (N, {self.feature_dim}) "
                            "(set feature_dim to the width of your features)")
        if array.shape[0] == 0:
            raise DataError(path, "no regions")
        return np.ascontiguousarray(array[: self.max_regions], dtype=np.float32)
