"""Face-forgery image data: annotation readers, the image Dataset and the FF++ DataModule.

Two annotation formats are read, detected from the JSON's top-level keys:

* **OmniFD / MMEngine** (``{"metainfo": {...}, "data_list": [...]}``). Every record has
  ``img_path`` (str), ``gt_label`` (0 real / 1 fake) and optionally ``seg_map_path`` (a
  grayscale PNG mask, 0-255, used as a soft target ``mask / 255``). Paths are relative to the
  data root (OmniFD's ``data_prefix=''``) or absolute. Any other field is kept in
  ``ImageRecord.extra``.
* **DeepfakeBench** (``{dataset: {sub_label: {split: {[compression:] {video: {"label":
  sub_label, "frames": [...], "masks": [...]?}}}}}}``). One record per frame; the sub-label
  is mapped to 0/1 through ``label_dict`` (default: :data:`DEFAULT_LABEL_DICT`). When a video
  has no ``masks`` list, the mask of a frame is looked up at DeepfakeBench's derived path
  (``frames`` replaced by ``masks``) and used if that file exists.

Annotations are validated eagerly (in ``setup``, in the main process): a malformed file or
record, a label other than 0/1 or a missing image file raises :class:`DataError` naming the
annotation file and the record. Image decoding errors and mask/image size mismatches are
found lazily, in ``__getitem__``, and also raise :class:`DataError` (skippable through
``SkippingDataset(skip_bad_samples=True)``).
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn  # noqa: E402
from torch.utils.data import DataLoader, Dataset, Subset  # noqa: E402

from polyvision.datamodules.augment import mild_photometric, omnifd_geometric, omnifd_photometric  # noqa: E402
from polyvision.datamodules.base import SkippingDataset, SourceCollate, class_balanced_indices  # noqa: E402
from polyvision.datamodules.synthetic_forgery import (  # noqa: E402
    synthetic_ffpp_is_complete,
    write_synthetic_ffpp,
)
from polyvision.errors import ConfigError, DataError  # noqa: E402

__all__ = [
    "DEFAULT_LABEL_DICT",
    "ImageRecord",
    "load_annotations",
    "build_transform",
    "ForgeryImageDataset",
    "FaceForensicsDataModule",
]

#: DeepfakeBench sub-label -> binary label (0 real, 1 fake) for the FF++ family.
DEFAULT_LABEL_DICT: dict[str, int] = {
    "FF-real": 0,
    "FF-DF": 1,
    "FF-F2F": 1,
    "FF-FS": 1,
    "FF-NT": 1,
    "FF-FH": 1,  # FaceShifter, sometimes shipped with FF++
}

#: Synthetic-data settings used by ``FaceForensicsDataModule(synthetic=True)``.
SYNTHETIC_FRAMES_PER_VIDEO = 5
SYNTHETIC_IMAGE_SIZE = 64
SYNTHETIC_SEED = 0

_COMPRESSIONS = ("c23", "c40", "raw", "c0")


@dataclass
class ImageRecord:
    """One annotated image.

    Attributes:
        image_path: absolute (resolved against the data root) path of the image.
        label: 0 real, 1 fake.
        mask_path: path of the grayscale forgery mask, or ``None`` when there is none.
        extra: other fields of the record (OmniFD), or ``dataset``/``sub_label``/``split``/
            ``compression``/``video`` (DeepfakeBench); plus ``record``, where the record sits
            in the file (``data_list[3]``), for error messages.
    """

    image_path: str
    label: int
    mask_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------
# Annotation reading
# ----------------------------------------------------------------------------------------
def _resolve(path: str, root: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


def _check_label(value: Any) -> int | None:
    """The label as int if it is 0 or 1 (int, or an integral float), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value in (0, 1):
        return value
    if isinstance(value, float) and value in (0.0, 1.0):
        return int(value)
    return None


def read_json(path: Path) -> Any:
    """An annotation file's JSON, or one DataError saying why it cannot be read."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DataError(path, "annotation file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(path, f"cannot read annotation file ({error})") from None
    except json.JSONDecodeError as error:
        raise DataError(path, f"malformed JSON ({error})") from None


def check_record(path: Path, where: str, item: Any, path_field: str, required: tuple[str, ...] = ()) -> tuple[str, int]:
    """The checks every OmniFD ``data_list`` record gets: an object, with ``path_field`` (a
    non-empty string), ``gt_label`` (0 or 1) and the ``required`` fields. Returns the path
    field's value and the label; raises a ``DataError`` naming the file, record and field."""
    if not isinstance(item, dict):
        raise DataError(path, f"{where}: expected an object, got {type(item).__name__}")
    for key in (path_field, "gt_label", *required):
        if key not in item:
            raise DataError(path, f"{where}: missing field '{key}'")
    value = item[path_field]
    if not isinstance(value, str) or not value:
        raise DataError(path, f"{where}: field '{path_field}' must be a non-empty string, got {value!r}")
    label = _check_label(item["gt_label"])
    if label is None:
        raise DataError(path, f"{where}: field 'gt_label' must be 0 or 1, got {item['gt_label']!r}")
    return value, label


def load_annotations(
    path: str | os.PathLike,
    root: str | os.PathLike | None,
    split: str | None = None,
    label_dict: dict[str, int] | None = None,
    compression: str | None = "c23",
) -> list[ImageRecord]:
    """Read and validate an OmniFD (``data_list``) or DeepfakeBench (nested) annotation file.

    Args:
        path: the JSON file.
        root: data root that relative image/mask paths are joined onto (``None``: the
            current directory).
        split: DeepfakeBench format only: keep this split (``train``/``val``/``test``);
            ``None`` keeps all. OmniFD files hold one split each, so it is ignored there.
        label_dict: DeepfakeBench format only: sub-label -> 0/1. Defaults to
            :data:`DEFAULT_LABEL_DICT`.
        compression: DeepfakeBench format only: the compression level to read where the file
            has one (FF++ family); ``None`` reads every level.

    Returns:
        The records, in file order, with absolute image/mask paths.

    Raises:
        DataError: unreadable or malformed JSON, a malformed record, a label not 0/1, an
            unknown sub-label, or an image file that does not exist. The message names the
            annotation file and the record (``data_list[3]: missing field 'gt_label'``).
    """
    path = Path(path).expanduser()
    root_path = Path(root).expanduser() if root is not None else Path.cwd()
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(path, f"expected a JSON object at the top level, got {type(data).__name__}")

    if "data_list" in data or "metainfo" in data:
        records = _parse_omnifd(data, path, root_path)
    elif data and all(isinstance(v, dict) for v in data.values()):
        records = _parse_deepfakebench(data, path, root_path, split, label_dict, compression)
    else:
        raise DataError(
            path,
            "unrecognised annotation format: expected {'metainfo': ..., 'data_list': [...]} (OmniFD) or "
            "{dataset: {sub_label: {split: {video: {'label', 'frames'}}}}} (DeepfakeBench)",
        )
    _check_files(records, path)
    return records


def _parse_omnifd(data: dict[str, Any], path: Path, root: Path) -> list[ImageRecord]:
    for key in ("metainfo", "data_list"):
        if key not in data:
            raise DataError(path, f"missing key '{key}' (an OmniFD annotation needs 'metainfo' and 'data_list')")
    items = data["data_list"]
    if not isinstance(items, list):
        raise DataError(path, f"'data_list' must be a list, got {type(items).__name__}")
    records = []
    for index, item in enumerate(items):
        where = f"data_list[{index}]"
        img, label = check_record(path, where, item, "img_path")
        seg = item.get("seg_map_path")
        if seg is not None and (not isinstance(seg, str) or not seg):
            raise DataError(path, f"{where}: field 'seg_map_path' must be a non-empty string, got {seg!r}")
        extra = {k: v for k, v in item.items() if k not in ("img_path", "gt_label", "seg_map_path")}
        extra["record"] = where
        records.append(ImageRecord(str(_resolve(img, root)), label,
                                   str(_resolve(seg, root)) if seg else None, extra))
    return records


def _is_video_entry(value: Any) -> bool:
    return isinstance(value, dict) and "frames" in value


def _parse_deepfakebench(
    data: dict[str, Any],
    path: Path,
    root: Path,
    split: str | None,
    label_dict: dict[str, int] | None,
    compression: str | None,
) -> list[ImageRecord]:
    labels = DEFAULT_LABEL_DICT if label_dict is None else label_dict
    records: list[ImageRecord] = []
    seen_splits: set[str] = set()
    for dataset, sub_labels in data.items():
        for sub_label, splits in sub_labels.items():
            if not isinstance(splits, dict):
                raise DataError(path, f"{dataset}/{sub_label}: expected an object of splits")
            for split_name, content in splits.items():
                seen_splits.add(split_name)
                if split is not None and split_name != split:
                    continue
                where = f"{dataset}/{sub_label}/{split_name}"
                if not isinstance(content, dict):
                    raise DataError(path, f"{where}: expected an object of videos")
                # [compression:] level: present when the values are not video entries
                if content and not all(_is_video_entry(v) for v in content.values()):
                    levels = {k: v for k, v in content.items() if isinstance(v, dict)}
                    if len(levels) != len(content):
                        raise DataError(path, f"{where}: expected video entries with 'frames', "
                                        f"or compression levels {list(_COMPRESSIONS)}")
                    if compression is not None:
                        if compression not in levels:
                            raise DataError(path, f"{where}: compression '{compression}' not found "
                                            f"(have {sorted(levels)})")
                        groups = [(compression, levels[compression])]
                    else:
                        groups = list(levels.items())
                else:
                    groups = [(None, content)]
                for level, videos in groups:
                    vwhere = where if level is None else f"{where}/{level}"
                    for video, entry in videos.items():
                        records.extend(_parse_dfb_video(path, root, f"{vwhere}/{video}", entry, labels,
                                                        {"dataset": dataset, "sub_label": sub_label,
                                                         "split": split_name, "compression": level,
                                                         "video": video}))
    if split is not None and split not in seen_splits:
        raise DataError(path, f"split '{split}' not found (have {sorted(seen_splits)})")
    return records


def _parse_dfb_video(path: Path, root: Path, where: str, entry: Any, labels: dict[str, int],
                     extra: dict[str, Any]) -> list[ImageRecord]:
    if not _is_video_entry(entry):
        raise DataError(path, f"{where}: missing field 'frames'")
    name = entry.get("label", extra["sub_label"])
    if not isinstance(name, str) and _check_label(name) is not None:
        label = int(name)
    elif isinstance(name, str) and name in labels:
        label = labels[name]
    else:
        raise DataError(path, f"{where}: label {name!r} is not in label_dict ({sorted(labels)}); "
                        "pass label_dict to map it to 0/1")
    if label not in (0, 1):
        raise DataError(path, f"{where}: label_dict maps {name!r} to {label!r}, expected 0 or 1")
    frames, masks = entry["frames"], entry.get("masks")
    if not isinstance(frames, list) or not all(isinstance(f, str) and f for f in frames):
        raise DataError(path, f"{where}: field 'frames' must be a list of paths")
    if masks is not None and (not isinstance(masks, list) or len(masks) != len(frames)
                              or not all(isinstance(m, str) and m for m in masks)):
        raise DataError(path, f"{where}: field 'masks' must be a list of paths as long as 'frames'")
    records = []
    for i, frame in enumerate(frames):
        image = _resolve(frame, root)
        if masks is not None:
            mask: str | None = str(_resolve(masks[i], root))
        else:  # DeepfakeBench derives the mask path from the frame path
            derived = Path(str(image).replace("frames", "masks"))
            mask = str(derived) if derived != image and derived.is_file() else None
        records.append(ImageRecord(str(image), label, mask, dict(extra, record=f"{where}/frames[{i}]")))
    return records


def _check_files(records: list[ImageRecord], path: Path) -> None:
    """Every image must exist; a referenced mask that does not exist is treated as unknown
    (as OmniFD does: zeros in training) with one warning per annotation file."""
    missing_masks = 0
    for record in records:
        if not os.path.isfile(record.image_path):
            raise DataError(path, f"{record.extra.get('record', 'record')}: image file not found: {record.image_path}")
        if record.mask_path is not None and not os.path.isfile(record.mask_path):
            missing_masks += 1
            example = record.mask_path
            record.mask_path = None
    if missing_masks:
        warnings.warn(f"{path}: {missing_masks} mask file(s) do not exist (e.g. {example}); "
                      "those images are treated as having no ground-truth mask", stacklevel=3)


# ----------------------------------------------------------------------------------------
# Transforms and the Dataset
# ----------------------------------------------------------------------------------------
def build_transform(image_size: int, train: bool, augment: bool, photometric: str = "mild") -> A.Compose:
    """The albumentations pipeline. Geometric ops move the mask with the image (bilinear).

    Train with augment (as OmniFD, ``datamodules/augment.py``): resize the short side to
    ``S * r``, ``r`` in ``[1, 8/7]``, random ``S x S`` crop, horizontal flip (p 0.5), then
    photometric noise: ``"mild"`` (polyvision's default: brightness/contrast p 0.5, JPEG
    quality 70-100 p 0.3, light Gaussian blur p 0.15) or ``"omnifd"`` (the released code's
    heavy pipeline). Otherwise: a plain resize to ``S x S``.
    """
    s = int(image_size)
    if photometric not in ("mild", "omnifd"):
        raise ConfigError(f"photometric must be 'mild' or 'omnifd', got {photometric!r}")
    if train and augment:
        noise = omnifd_photometric() if photometric == "omnifd" else mild_photometric()
        return A.Compose(omnifd_geometric(s) + noise)
    return A.Compose([A.Resize(s, s, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_LINEAR)])


def _decode(path: str, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert(mode))
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        raise DataError(path, f"cannot decode image ({type(error).__name__}: {error})") from None


class ForgeryImageDataset(Dataset):
    """Face-forgery images as sample dicts.

    Each sample is::

        image     uint8 (3, S, S) RGB, not normalised (that happens on the device)
        label     int64 scalar, 0 real / 1 fake
        mask      float32 (1, S, S) in [0, 1]: mask/255 resized with the image; zeros if none
        has_mask  bool scalar: the mask is ground truth for training (a mask file, or a
                  real image, whose forged region is empty). A fake without a mask file is
                  left out of the spatial loss; the released OmniFD code trains it against
                  an all-zero mask, which teaches "no forgery here" on a forged face
                  (a deliberate deviation)
        has_mask_file  bool scalar: a mask file exists; only these images count in the
                  pixel metrics, as in OmniFD's evaluation
        meta      {"path", "original_size": [H, W], "index", "video"}
        full_mask (with ``full_resolution_masks``) the original uint8 mask (H, W), numpy, or
                  None without a mask file: spatial metrics at the original resolution

    Args:
        records: from :func:`load_annotations`.
        image_size: output side ``S``.
        train: training mode (random augmentation when ``augment``).
        augment: enable the training augmentation (see :func:`build_transform`).

    Augmentation randomness is reseeded from ``torch.initial_seed()`` in every DataLoader
    worker (albumentations keeps its own RNG), so workers differ and runs under
    ``seed_everything`` repeat.
    """

    def __init__(self, records: list[ImageRecord], image_size: int, train: bool = False, augment: bool = True,
                 photometric: str = "mild", full_resolution_masks: bool = False):
        self.full_resolution_masks = bool(full_resolution_masks)
        self.records = list(records)
        self.image_size = int(image_size)
        self.train = bool(train)
        self.augment = bool(augment)
        self.transform = build_transform(self.image_size, self.train, self.augment, photometric)
        self._seeded_for: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    def _reseed(self) -> None:
        key = (os.getpid(), torch.initial_seed())
        if key != self._seeded_for:
            self.transform.set_random_seed(torch.initial_seed() % 2**32)
            self._seeded_for = key

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        image = _decode(record.image_path, "RGB")
        height, width = image.shape[:2]
        if record.mask_path is not None:
            mask = _decode(record.mask_path, "L")
            if mask.shape != (height, width):
                raise DataError(record.mask_path, f"mask is {mask.shape[1]}x{mask.shape[0]} "
                                f"but image is {width}x{height}")
        else:
            mask = np.zeros((height, width), np.uint8)
        extras = self.sample_extras(record, mask)
        image, mask, crop_meta = self.crop(record, image, mask)
        if self.train and self.augment:
            self._reseed()
        out = self.transform(image=np.ascontiguousarray(image), mask=np.ascontiguousarray(mask))
        image, mask = out["image"], out["mask"]
        image_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        mask_f = mask.astype(np.float32)  # a fresh, writable array
        mask_f *= 1.0 / 255.0
        mask_t = torch.from_numpy(mask_f).unsqueeze(0)
        return {
            "image": image_t,
            "label": torch.tensor(record.label, dtype=torch.int64),
            "mask": mask_t,
            "has_mask": torch.tensor(record.mask_path is not None or record.label == 0),
            "has_mask_file": torch.tensor(record.mask_path is not None),
            "meta": {
                "path": record.image_path,
                "original_size": [int(height), int(width)],
                **crop_meta,
                "index": int(index),
                "video": str(Path(record.image_path).parent),
            },
            **extras,
        }

    def sample_extras(self, record: ImageRecord, mask: np.ndarray) -> dict[str, Any]:
        """Fields to add to the sample, given the full-size mask before cropping: with
        ``full_resolution_masks``, ``full_mask`` (the original uint8 mask, or None without a
        mask file) for metrics at the original resolution."""
        if not self.full_resolution_masks:
            return {}
        return {"full_mask": mask.copy() if record.mask_path is not None else None}

    def crop(self, record: ImageRecord, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """The region the model sees, before augmentation, and what to record of it in
        ``meta`` (the whole image here; ForgeryNet crops to the face box)."""
        return image, mask, {}


# ----------------------------------------------------------------------------------------
# LightningDataModule
# ----------------------------------------------------------------------------------------
class FaceForensicsDataModule(pl.LightningDataModule):
    """FaceForensics++ face-forgery images (classification + soft forgery masks).

    Reads FF++ in the DeepfakeBench layout with OmniFD ``data_list`` annotations (or
    DeepfakeBench's nested JSON), or writes and reads a small synthetic look-alike.

    Batches are dicts: ``image`` uint8 (B, 3, S, S) RGB, ``label`` int64 (B,), ``mask``
    float32 (B, 1, S, S) in [0, 1], ``has_mask`` and ``has_mask_file`` bool (B,), ``meta`` (list of dicts),
    ``source`` (str) and ``num_skipped`` (int64 scalar).

    Args:
        root: data root holding ``FaceForensics++/``; annotation and image paths are relative
            to it. Required unless ``synthetic`` is set.
        synthetic: use a synthetic FF++ (written by ``prepare_data`` under ``root``, or under
            ``cache_dir`` when ``root`` is not given) instead of the real data.
        cache_dir: where the synthetic dataset is cached (``~`` is expanded).
        train_annotation: training annotation JSON, relative to ``root`` or absolute.
        val_annotation: validation annotation JSON. If the file does not exist, the test
            annotation is used for validation, with a warning (FF++ in OmniFD ships no val).
        test_annotation: test annotation JSON.
        predict_annotation: annotation JSON for ``predict``; defaults to the test annotation.
        image_size: side of the square images fed to the model.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes (0: load in the main process).
        augment: random resize/crop/flip and mild photometric augmentation in training.
        skip_bad_samples: drop undecodable images and bad masks with a warning (counted in
            ``batch["num_skipped"]``) instead of stopping with a ``DataError``.
        label_dict: DeepfakeBench-format annotations only: sub-label -> 0/1 mapping (default:
            FF-real -> 0, FF-DF/FF-F2F/FF-FS/FF-NT/FF-FH -> 1).
        synthetic_samples: approximate number of synthetic frames (5 per video, at least 6
            videos); written at 64x64 px.
        source: name put in ``batch["source"]`` (used to route mixed image/video batches).
        photometric: training noise after the geometric augmentation: ``"mild"`` (default) or
            ``"omnifd"``, the released code's heavy pipeline (``datamodules/augment.py``).
        full_resolution_eval: validation/test/predict batches carry each image's original mask
            (``full_mask``), so spatial metrics are computed at the original resolution, as
            OmniFD's evaluation does (research/omnifd.md §3.2).
        class_balance: oversample rare classes in training as OmniFD's FF++ configs do
            (``FixedClassBalancedDataset``, threshold 0.5: each image of a class with frequency
            f < 0.5 appears ``ceil(max_f / f)`` times per epoch).
    """

    def __init__(
        self,
        root: str | None = None,
        synthetic: bool = False,
        cache_dir: str = "~/.cache/polyvision/synthetic/ffpp",
        train_annotation: str = "FaceForensics++/annotations/train.json",
        val_annotation: str = "FaceForensics++/annotations/val.json",
        test_annotation: str = "FaceForensics++/annotations/test.json",
        predict_annotation: str | None = None,
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int = 2,
        augment: bool = True,
        skip_bad_samples: bool = False,
        label_dict: dict[str, int] | None = None,
        synthetic_samples: int = 400,
        source: str = "image",
        class_balance: bool = False,
        photometric: Literal["mild", "omnifd"] = "mild",
        full_resolution_eval: bool = True,
    ):
        super().__init__()
        self.save_hyperparameters()
        if root is None and not synthetic:
            raise ConfigError("FaceForensicsDataModule: set root to the data directory, or synthetic=True")
        if image_size < 1 or batch_size < 1 or num_workers < 0:
            raise ConfigError("FaceForensicsDataModule: image_size and batch_size must be >= 1, num_workers >= 0")
        self.root = Path(root if root is not None else cache_dir).expanduser()
        self.datasets: dict[str, ForgeryImageDataset] = {}

    # -- synthetic data -----------------------------------------------------------------
    @property
    def synthetic_settings(self) -> dict[str, int]:
        """Arguments of ``write_synthetic_ffpp`` used when ``synthetic`` is set."""
        videos = max(6, math.ceil(self.hparams.synthetic_samples / SYNTHETIC_FRAMES_PER_VIDEO))
        return {"num_videos": videos, "frames_per_video": SYNTHETIC_FRAMES_PER_VIDEO,
                "image_size": SYNTHETIC_IMAGE_SIZE, "seed": SYNTHETIC_SEED}

    def prepare_data(self) -> None:
        """Write the synthetic dataset unless a complete one with the same settings exists
        (runs on one process per node; the writer renames a finished tree into place)."""
        if not self.hparams.synthetic:
            return
        settings = self.synthetic_settings
        if synthetic_ffpp_is_complete(self.root, **settings):
            return
        rank_zero_info(f"writing synthetic FaceForensics++ ({settings['num_videos']} videos x "
                       f"{settings['frames_per_video']} frames) to {self.root}")
        write_synthetic_ffpp(self.root, progress=True, **settings)

    # -- annotations --------------------------------------------------------------------
    def _annotation_path(self, name: str) -> Path:
        return _resolve(name, self.root)

    def _split_annotation(self, split: str) -> Path:
        hp = self.hparams
        if split == "train":
            return self._annotation_path(hp.train_annotation)
        if split == "val":
            val = self._annotation_path(hp.val_annotation)
            if not val.exists():
                test = self._annotation_path(hp.test_annotation)
                rank_zero_warn(f"{val}: validation annotation not found; validating on the test split "
                               f"({test}). Model selection on test data inflates test scores.")
                return test
            return val
        if split == "test":
            return self._annotation_path(hp.test_annotation)
        if split == "predict":
            return self._annotation_path(hp.predict_annotation or hp.test_annotation)
        raise ValueError(split)

    def _dataset(self, split: str) -> ForgeryImageDataset:
        if split not in self.datasets:
            if self.hparams.synthetic and not synthetic_ffpp_is_complete(self.root, **self.synthetic_settings):
                raise DataError(self.root, "synthetic dataset not prepared; call prepare_data() first")
            annotation = self._split_annotation(split)
            records = load_annotations(annotation, self.root, label_dict=self.hparams.label_dict)
            if not records:
                raise DataError(annotation, "annotation holds no images")
            self.datasets[split] = ForgeryImageDataset(
                records, self.hparams.image_size, train=split == "train", augment=self.hparams.augment,
                photometric=self.hparams.get("photometric", "mild"),
                full_resolution_masks=self.hparams.get("full_resolution_eval", True) and split != "train")
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        """Load and validate the annotations the stage needs (fit: train+val, validate: val,
        test: test, predict: predict; None: train, val and test)."""
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",),
                  "predict": ("predict",), None: ("train", "val", "test")}.get(stage)
        if splits is None:
            raise ValueError(f"unknown stage {stage!r}")
        for split in splits:
            self._dataset(split)

    @property
    def num_train_samples(self) -> int:
        """Number of training images (loads the training annotation if needed)."""
        return len(self._dataset("train"))

    # -- loaders ------------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        hp = self.hparams
        dataset = self._dataset(split)
        if split == "train" and hp.get("class_balance"):
            dataset = Subset(dataset, class_balanced_indices(dataset.labels))
        return DataLoader(
            SkippingDataset(dataset, hp.skip_bad_samples),
            batch_size=hp.batch_size,
            shuffle=shuffle,
            drop_last=False,
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=SourceCollate(hp.source),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", shuffle=False)
