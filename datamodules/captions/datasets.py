"""``CaptionDataset``: caption records as samples of the shared caption batch contract, and
``CaptionCollate``, which pads the variable number of regions.

A sample (one image) holds ``captions`` int64 (K, L) word ids (0-padded), ``tags`` int64 (K, L)
module classes (-1 on padding), ``meta`` (``image_id``, ``file_name``, ``references``: every
raw caption of the image, ``path``) and either ``regions`` float32 (N, D) (region path) or
``image`` uint8 (3, H, W) (grid path). K is ``captions_per_image``: in training K captions are
drawn at random when the image has more (seeded through ``set_sample_seed``, so a resumed run
draws the same ones) and cycled when it has fewer; in evaluation the first K, cycled.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from polyvision.datamodules.base import collate_samples
from polyvision.datamodules.captions.features import RegionFeatures
from polyvision.datamodules.captions.pos import tag_tokens
from polyvision.datamodules.captions.records import CaptionRecord
from polyvision.datamodules.captions.vocabulary import MAX_LENGTH, Vocabulary
from polyvision.errors import DataError
from torch.utils.data import Dataset

__all__ = ["CaptionCollate", "CaptionDataset", "load_image"]


def load_image(path: Path, size: Sequence[int]) -> torch.Tensor:
    """An image file as uint8 (3, H, W), resized to ``size`` = (H, W)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((int(size[1]), int(size[0])), Image.BILINEAR)
    except FileNotFoundError:
        raise DataError(path, "image not found") from None
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(path, f"unreadable image ({error})") from None
    # CHW copy in NumPy: torch's uint8 permute-copy is ~100x slower on CPU
    return torch.from_numpy(np.ascontiguousarray(np.asarray(rgb, np.uint8).transpose(2, 0, 1)))


class CaptionDataset(Dataset):
    """The images of one split with their captions.

    Args:
        records: the split's records (``records.CaptionRecord``).
        vocabulary: word ids.
        train: draw captions at random (training) or take the first ones (evaluation).
        captions_per_image: K.
        features: region features (region path), or ``None`` for the grid path.
        images_dir: the folder the records' ``file_path`` is relative to.
        image_size: (H, W) of the grid path's images.
        max_length: words per caption (longer ones are cut).
    """

    def __init__(self, records: Sequence[CaptionRecord], vocabulary: Vocabulary, train: bool,
                 captions_per_image: int = 5, features: RegionFeatures | None = None,
                 images_dir: str | os.PathLike | None = None, image_size: Sequence[int] | None = None,
                 max_length: int = MAX_LENGTH):
        if features is None and (images_dir is None or image_size is None):
            raise ValueError("CaptionDataset: give region features or images_dir and image_size")
        self.records = list(records)
        self.vocabulary = vocabulary
        self.train = train
        self.captions_per_image = int(captions_per_image)
        self.features = features
        self.images_dir = Path(images_dir).expanduser() if images_dir is not None else None
        self.image_size = list(image_size) if image_size is not None else None
        self.max_length = int(max_length)
        self.rng = np.random.default_rng(0)

    def set_sample_seed(self, seed: int) -> None:
        """Called before each training sample is read (``datamodules.seeding``)."""
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.records)

    def choose(self, count: int) -> list[int]:
        """Which of an image's ``count`` captions fill the K slots."""
        k = self.captions_per_image
        if self.train and count > k:
            return sorted(self.rng.choice(count, size=k, replace=False).tolist())
        return [i % count for i in range(k)]

    def _encode(self, record: CaptionRecord, chosen: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        captions = torch.zeros(len(chosen), self.max_length, dtype=torch.int64)
        tags = torch.full((len(chosen), self.max_length), -1, dtype=torch.int64)
        for row, index in enumerate(chosen):
            tokens = record.tokens[index][: self.max_length]
            if not tokens:
                raise DataError(record.source, f"image {record.item_id}: empty caption")
            token_tags = record.tags[index] if record.tags is not None else tag_tokens(record.tokens[index])
            captions[row, : len(tokens)] = torch.tensor(self.vocabulary.encode(tokens))
            tags[row, : len(tokens)] = torch.tensor(token_tags[: len(tokens)])
        return captions, tags

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        if record.problem is not None:
            raise DataError(record.source, record.problem)
        captions, tags = self._encode(record, self.choose(len(record.tokens)))
        path = self.images_dir / record.file_path if self.images_dir is not None else Path(record.file_path)
        sample: dict[str, Any] = {"captions": captions, "tags": tags}
        if self.features is not None:
            sample["regions"] = torch.from_numpy(self.features.load(record.item_id))
        else:
            sample["image"] = load_image(path, self.image_size)  # type: ignore[arg-type]
        sample["meta"] = {"image_id": int(record.item_id), "file_name": Path(record.file_path).name,
                          "references": list(record.raws), "path": str(path)}
        return sample


class CaptionCollate:
    """Collates caption samples (``base.collate_samples``) after zero-padding ``regions`` to
    the most regions in the batch, with ``region_mask`` True on real regions. Picklable."""

    def __init__(self, source: str):
        self.source = source

    def __call__(self, samples: list[dict[str, Any] | None]) -> dict[str, Any]:
        kept = [sample for sample in samples if sample is not None]
        if kept and "regions" in kept[0]:
            most = max(sample["regions"].shape[0] for sample in kept)
            padded = []
            for sample in kept:
                regions = sample["regions"]
                mask = torch.zeros(most, dtype=torch.bool)
                mask[: regions.shape[0]] = True
                full = regions.new_zeros(most, regions.shape[1])
                full[: regions.shape[0]] = regions
                padded.append({**sample, "regions": full, "region_mask": mask})
            kept = padded
        batch = collate_samples(kept + [None] * (len(samples) - len(kept)), self.source)
        return batch
