"""Video anomaly detection datasets: readers of the real layouts and their frame-level labels.

Dataset layouts (as STATE's official ``vad_datasets.py`` reads them, github.com/wyzjack/MRMGA4VAD;
``root`` is the dataset folder or its parent)
    ``ped2``          ``UCSDped2/Train/Train0XX/*.tif``, ``Test/Test0XX/*.tif``, per-frame masks
                      ``Test/Test0XX_gt/*.bmp``; a frame is anomalous when its mask has a pixel > 0.
    ``avenue``        frames ``avenue/{training,testing}/frames/<vid>/*.jpg`` or the CUHK videos
                      ``{training,testing}_videos/<vid>.avi``; masks
                      ``ground_truth_demo/testing_label_mask/<n>_label.mat`` (``volLabel``: a cell
                      array of per-frame masks; ``n`` = the video number, leading zeros dropped).
    ``shanghaitech``  ``ShanghaiTech/training/videosFrame/<vid>/*.jpg`` (or the official
                      ``training/videos/<vid>.avi`` when no frames were extracted),
                      ``testing/frames/<vid>/*.jpg``, per-video 0/1 frame labels
                      ``testing/test_frame_mask/<vid>.npy``.
    Videos and frames are taken in natural sort order; every frame of every test video is scored.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from polyvision.datamodules.video.backends import list_frame_files
from polyvision.datamodules.video.reader import VideoReader
from polyvision.errors import ConfigError, DataError

VIDEO_FILE_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v")


# Per-dataset thresholds of STATE's pipeline (official ``fore_det/obj_det_with_motion.py``):
# the folder names of the layouts above and the paper's box thresholds.
DATASETS: dict[str, dict[str, Any]] = {
    "ped2": dict(folders=("UCSDped2",), foreground_min_area=100, foreground_threshold=18, foreground_kernel=3,
                 detector_score=0.5, detector_min_area=100, cover_threshold=0.6),
    "avenue": dict(folders=("avenue", "Avenue", "Avenue Dataset"), foreground_min_area=1600, foreground_threshold=18,
                   foreground_kernel=5, detector_score=0.25, detector_min_area=1600, cover_threshold=0.6),
    "shanghaitech": dict(folders=("ShanghaiTech", "shanghaitech"), foreground_min_area=64, foreground_threshold=15,
                         foreground_kernel=5, detector_score=0.5, detector_min_area=64, cover_threshold=0.65),
}


def check_dataset(name: str) -> str:
    if name not in DATASETS:
        raise ConfigError(f"data.dataset: unknown dataset '{name}' (known: {', '.join(DATASETS)})")
    return name


# --------------------------------------------------------------------------- dataset readers


@dataclass
class AnomalyVideo:
    """One video of a split: a frame folder or a video file, and its frame labels (test)."""

    name: str
    path: Path
    num_frames: int
    labels: np.ndarray | None = None  # (num_frames,) int64 0/1; None when unknown

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "num_frames": self.num_frames}


def _natural(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _subdirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: _natural(p.name))


def dataset_root(dataset: str, root: str | Path) -> Path:
    """The dataset folder itself: ``root``, or its child named as in STATE's layouts (``UCSDped2``, ...)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(root, "dataset root not found")
    for name in DATASETS[check_dataset(dataset)]["folders"]:
        if (root / name).is_dir():
            return root / name
    return root


def _frame_count(folder: Path) -> int:
    count = len(list_frame_files(folder))
    if count == 0:
        raise DataError(folder, "no frame images in this folder")
    return count


def _video_files(folder: Path) -> list[Path]:
    files = (p for p in folder.iterdir() if p.suffix.lower() in VIDEO_FILE_SUFFIXES)
    return sorted(files, key=lambda p: _natural(p.name))


def _video_length(path: Path) -> int:
    with VideoReader(path) as reader:
        count = len(reader)
    if count == 0:
        raise DataError(path, "video has no frames")
    return count


def _check_labels(labels: np.ndarray, num_frames: int, label_path: Path, video: Path) -> np.ndarray:
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != num_frames:
        raise DataError(label_path, f"{len(labels)} frame labels for {num_frames} frames of {video}")
    return (labels > 0).astype(np.int64)


def read_ped2(root: Path, split: str) -> list[AnomalyVideo]:
    folder = root / ("Train" if split == "train" else "Test")
    if not folder.is_dir():
        raise DataError(folder, "UCSD Ped2 split folder not found (expected UCSDped2/Train and UCSDped2/Test)")
    videos = []
    for directory in _subdirs(folder):
        if "_gt" in directory.name or (split == "train" and "Train" not in directory.name):
            continue
        num_frames = _frame_count(directory)
        labels = None
        if split == "test":
            gt = directory.with_name(directory.name + "_gt")
            if not gt.is_dir():
                raise DataError(gt, f"ground-truth mask folder of {directory.name} not found")
            masks = [p for p in list_frame_files(gt) if p.suffix.lower() == ".bmp"]
            values = []
            for mask in masks:
                image = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)
                if image is None:
                    raise DataError(mask, "cannot read mask image")
                values.append(int(image.max() > 0))
            labels = _check_labels(np.array(values), num_frames, gt, directory)
        videos.append(AnomalyVideo(directory.name, directory, num_frames, labels))
    return videos


def _avenue_number(name: str, position: int) -> int:
    digits = re.sub(r"\D", "", name)
    return int(digits) if digits else position + 1


def read_avenue_mat(path: Path) -> np.ndarray:
    """Frame labels from an Avenue ``<n>_label.mat`` (``volLabel``, a cell array of masks)."""
    from scipy.io import loadmat

    if not path.is_file():
        raise DataError(path, "Avenue ground-truth file not found")
    try:
        content = loadmat(str(path))
    except Exception as error:  # noqa: BLE001 - any failure here is a bad file
        raise DataError(path, f"cannot read MAT file ({type(error).__name__}: {str(error).splitlines()[0][:160]})") from None
    if "volLabel" not in content:
        raise DataError(path, f"no 'volLabel' variable (found: {', '.join(k for k in content if not k.startswith('__'))})")
    cells = np.asarray(content["volLabel"]).reshape(-1)
    try:
        return np.array([int(np.asarray(mask).max() > 0) for mask in cells], dtype=np.int64)
    except (TypeError, ValueError) as error:
        raise DataError(path, f"volLabel is not a cell array of masks ({error})") from None


def read_avenue(root: Path, split: str) -> list[AnomalyVideo]:
    part = "training" if split == "train" else "testing"
    frames_dir, videos_dir = root / part / "frames", root / f"{part}_videos"
    if frames_dir.is_dir():
        entries = [(d.name, d, _frame_count(d)) for d in _subdirs(frames_dir)]
    elif videos_dir.is_dir():
        entries = [(p.stem, p, _video_length(p)) for p in _video_files(videos_dir)]
    else:
        raise DataError(root, f"no Avenue {part} data (expected {part}/frames/<video>/ or {part}_videos/*.avi)")
    videos = []
    for position, (name, path, num_frames) in enumerate(entries):
        labels = None
        if split == "test":
            mat = root / "ground_truth_demo" / "testing_label_mask" / f"{_avenue_number(name, position)}_label.mat"
            labels = _check_labels(read_avenue_mat(mat), num_frames, mat, path)
        videos.append(AnomalyVideo(name, path, num_frames, labels))
    return videos


def read_shanghaitech(root: Path, split: str) -> list[AnomalyVideo]:
    folder = root / ("training/videosFrame" if split == "train" else "testing/frames")
    if folder.is_dir():
        entries = [(d.name, d, _frame_count(d)) for d in _subdirs(folder)]
    elif split == "train" and (root / "training" / "videos").is_dir():
        # the official archive ships training videos; STATE/VEC extract them to videosFrame/
        entries = [(p.stem, p, _video_length(p)) for p in _video_files(root / "training" / "videos")]
    else:
        raise DataError(folder, "ShanghaiTech frame folder not found")
    videos = []
    for name, directory, num_frames in entries:
        labels = None
        if split == "test":
            label_file = root / "testing" / "test_frame_mask" / f"{name}.npy"
            if not label_file.is_file():
                raise DataError(label_file, f"frame labels of {name} not found")
            try:
                values = np.load(label_file, allow_pickle=False)
            except Exception as error:  # noqa: BLE001 - any failure here is a bad file
                raise DataError(label_file, f"cannot read labels ({type(error).__name__})") from None
            labels = _check_labels(values, num_frames, label_file, directory)
        videos.append(AnomalyVideo(name, directory, num_frames, labels))
    return videos


def read_videos(dataset: str, root: str | Path, split: str) -> list[AnomalyVideo]:
    """The videos of ``split`` (``train`` or ``test``) of a dataset in its own layout."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    folder = dataset_root(dataset, root)
    reader = {"ped2": read_ped2, "avenue": read_avenue, "shanghaitech": read_shanghaitech}[check_dataset(dataset)]
    videos = reader(folder, split)
    if not videos:
        raise DataError(folder, f"no {split} videos found in the {dataset} layout")
    return videos


def find_ground_truth(path: str | Path, num_frames: int) -> np.ndarray | None:
    """Frame labels of a single video if it sits in one of the layouts above (or has a
    ``<video>.npy`` 0/1 label file beside it); None when there are none or they do not fit."""
    path = Path(path)
    candidates: list[tuple[str, Path]] = [("npy", path.with_suffix(".npy"))] if path.is_file() else []
    if path.is_dir():
        candidates += [("ped2", path.with_name(path.name + "_gt")),
                       ("npy", path.parent.parent / "test_frame_mask" / f"{path.name}.npy"),
                       ("mat", path.parent.parent.parent / "ground_truth_demo" / "testing_label_mask"
                        / f"{_avenue_number(path.name, -1)}_label.mat")]
    else:
        candidates.append(("mat", path.parent.parent / "ground_truth_demo" / "testing_label_mask"
                           / f"{_avenue_number(path.stem, -1)}_label.mat"))
    for kind, candidate in candidates:
        if not candidate.exists():
            continue
        try:
            if kind == "ped2":
                masks = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in list_frame_files(candidate)]
                labels = np.array([int(m is not None and m.max() > 0) for m in masks])
            elif kind == "npy":
                labels = np.load(candidate, allow_pickle=False).reshape(-1)
            else:
                labels = read_avenue_mat(candidate)
        except (DataError, OSError, ValueError):
            continue
        if len(labels) == num_frames:
            return (np.asarray(labels) > 0).astype(np.int64)
        warnings.warn(f"{candidate}: {len(labels)} labels for {num_frames} frames; ground truth not shown", stacklevel=2)
    return None
