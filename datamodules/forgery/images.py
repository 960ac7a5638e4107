"""Face-forgery images: the albumentations pipeline and the image Dataset (image, soft mask, label).

Image decoding errors and mask/image size mismatches are found lazily, in ``__getitem__``, and
raise :class:`DataError` (skippable through ``SkippingDataset(skip_bad_samples=True)``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image
from polyvision.datamodules.forgery.annotations import ImageRecord
from polyvision.datamodules.forgery.augment import (
    mild_photometric,
    omnifd_geometric,
    omnifd_photometric,
)
from polyvision.datamodules.seeding import derive_seed
from polyvision.errors import ConfigError, DataError
from torch.utils.data import Dataset


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

    Augmentation randomness comes from the seed of each sample (``set_sample_seed``, called
    with the seeds of :class:`~polyvision.datamodules.seeding.SeededSampler`), so a resumed
    run augments exactly as the uninterrupted one (albumentations keeps its own RNG); a sample
    read without one is seeded from torch's seed and its index.
    """

    def __init__(self, records: list[ImageRecord], image_size: int, train: bool = False, augment: bool = True,
                 photometric: str = "mild", full_resolution_masks: bool = False):
        self.full_resolution_masks = bool(full_resolution_masks)
        self.records = list(records)
        self.image_size = int(image_size)
        self.train = bool(train)
        self.augment = bool(augment)
        self.transform = build_transform(self.image_size, self.train, self.augment, photometric)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    def set_sample_seed(self, seed: int) -> None:
        """Seed the augmentation of the next sample read."""
        self.transform.set_random_seed(seed % 2**32)
        self._seed_given = True

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not getattr(self, "_seed_given", False):
            self.transform.set_random_seed(derive_seed(torch.initial_seed(), index) % 2**32)
        self._seed_given = False
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
