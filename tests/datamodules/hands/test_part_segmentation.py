"""ACR's part-segmentation target (``part_segmentation=True``): the label map sits on the hands
drawn in the image (also after an augmentation with a camera roll), right parts 1-16 and left
parts 17-32, background far from the hands, the MANO joints on their own hand's labels,
``part_segmentation_valid`` False when a visible hand has no MANO fit, and no extra keys when
the option is off."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from polyvision.datamodules.hands.annotations import PART_SEGMENTATION_KEYS, SAMPLE_KEYS
from polyvision.datamodules.hands.augment import HandAugment
from polyvision.datamodules.hands.datamodule import HandDataModule
from polyvision.datamodules.hands.freihand import FreiHANDDataset
from polyvision.datamodules.hands.interhand import InterHandDataset

SIZE = 128  # input side: label maps are 64 x 64
RIGHT_LABELS = set(range(1, 17))
LEFT_LABELS = set(range(17, 33))


def interhand(synthetic_root, **options) -> InterHandDataset:
    return InterHandDataset(synthetic_root / "InterHand2.6M", "train", input_size=SIZE,
                            mano_dir=synthetic_root / "mano", **options)


def image_silhouette(sample: dict) -> np.ndarray:
    """Input pixels (S, S) that differ from the plain background of the synthetic image.

    The background is one colour plus noise: the median of the pixels that come from the
    image (not the white padding; found through ``meta.to_input``). A pixel is hand where its
    3 x 3 mean is more than 20 grey levels (RGB distance) from it."""
    image = (sample["image"].numpy().transpose(1, 2, 0) + 1.0) * 127.5
    to_original = np.linalg.inv(np.vstack([np.asarray(sample["meta"]["to_input"]), [0.0, 0.0, 1.0]]))
    rows, cols = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    original = np.stack([cols, rows, np.ones_like(cols)], axis=-1) @ to_original.T
    height, width = cv2.imread(sample["meta"]["path"]).shape[:2]
    region = ((original[..., 0] > 1) & (original[..., 0] < width - 1)
              & (original[..., 1] > 1) & (original[..., 1] < height - 1))
    background = np.median(image[region], axis=0)
    smooth = cv2.blur(image.astype(np.float32), (3, 3))
    return (np.linalg.norm(smooth - background, axis=-1) > 20) & region


def blocks(mask: np.ndarray) -> np.ndarray:
    """(S, S) -> (S/2, S/2, 4): the input pixels under each label pixel."""
    half = mask.shape[0] // 2
    return mask.reshape(half, 2, half, 2).transpose(0, 2, 1, 3).reshape(half, half, 4)


def check_on_the_hands(sample: dict) -> tuple[float, float]:
    """(precision, recall) of the label map's foreground against the image silhouette;
    asserts that no label lies far (over ~5 input pixels) from the drawn hands."""
    labels = sample["part_segmentation"].numpy()
    foreground = labels > 0
    hand = image_silhouette(sample)
    precision = float((blocks(hand).mean(-1) >= 0.5)[foreground].mean())
    core = cv2.erode(hand.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    recall = float(foreground[blocks(core).all(-1)].mean())
    near = cv2.dilate(hand.astype(np.uint8), np.ones((11, 11), np.uint8)).astype(bool)
    assert not (foreground & ~blocks(near).any(-1)).any(), "labels far from the hands"
    return precision, recall


@pytest.mark.parametrize("augment", [False, True])
def test_labels_lie_on_the_drawn_hands(synthetic_root, augment):
    augmenter = HandAugment(rotation_prob=1.0) if augment else None  # every sample rolled: camera and MANO turn
    ds = interhand(synthetic_root, part_segmentation=True, augment=augment, augmenter=augmenter)
    precisions, recalls, sides = [], [], set()
    for index in range(len(ds)):
        sample = ds[index]
        assert tuple(sample) == (*SAMPLE_KEYS[:-1], *PART_SEGMENTATION_KEYS, "meta")
        labels = sample["part_segmentation"]
        assert labels.dtype == torch.int64 and tuple(labels.shape) == (SIZE // 2, SIZE // 2)
        valid = sample["part_segmentation_valid"]
        assert valid.dtype == torch.bool and valid.shape == () and bool(valid)
        precision, recall = check_on_the_hands(sample)
        precisions.append(precision)
        recalls.append(recall)
        found = set(np.unique(labels.numpy()).tolist()) - {0}
        hand_type = sample["meta"]["hand_type"]
        sides.add(hand_type)
        assert len(found) >= 8, (index, found)  # many parts, not one label per hand
        if hand_type == "right":
            assert found <= RIGHT_LABELS, (index, found)
        elif hand_type == "left":
            assert found <= LEFT_LABELS, (index, found)
        else:
            assert found & RIGHT_LABELS and found & LEFT_LABELS, (index, found)
        assert labels[:2].eq(0).all() and labels[:, :2].eq(0).all()  # the crop's margin is background
    assert sides == {"right", "left", "interacting"}
    # Low-contrast images (skin on a skin-coloured background) blur the silhouette: a per-image
    # floor, and a tight mean.
    assert min(precisions) > 0.7 and np.mean(precisions) > 0.93, np.round(precisions, 2)
    assert min(recalls) > 0.75 and np.mean(recalls) > 0.85, np.round(recalls, 2)


def test_joints_fall_on_their_own_hand(synthetic_root):
    """The 2D joints (exact projections, independent of the rasteriser) scaled to the label map
    land on the labels of their hand in single-hand images (fingertips are mesh vertices,
    the other joints inside the mesh)."""
    ds = interhand(synthetic_root, part_segmentation=True, augment=True, augmenter=HandAugment(rotation_prob=1.0))
    hits = total = 0
    for index in range(len(ds)):
        sample = ds[index]
        hand_type = sample["meta"]["hand_type"]
        if hand_type not in ("right", "left"):
            continue
        slot = 0 if hand_type == "right" else 1
        wanted = RIGHT_LABELS if slot == 0 else LEFT_LABELS
        valid = sample["joints_2d_valid"][slot].numpy()
        pixels = (sample["joints_2d"][slot].numpy()[valid] + 1.0) / 2.0 * SIZE / 2.0  # label-map pixels
        labels = sample["part_segmentation"].numpy()
        for x, y in pixels:
            i, j = int(np.clip(y, 0, SIZE // 2 - 1)), int(np.clip(x, 0, SIZE // 2 - 1))
            window = labels[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
            hits += bool(np.isin(window, list(wanted)).any())
            total += 1
    assert total >= 80 and hits / total > 0.95, (hits, total)


def test_a_visible_hand_without_mano_makes_the_target_invalid(synthetic_root):
    ds = interhand(synthetic_root, part_segmentation=True)
    index = next(i for i in range(len(ds)) if ds.items[i][4] == "interacting")
    complete = ds[index]
    assert bool(complete["part_segmentation_valid"]) and complete["part_segmentation"].any()
    record = ds.record

    def without_left_fit(i):
        found = record(i)
        found.mano_valid[1] = False
        return found

    ds.record = without_left_fit
    sample = ds[index]
    assert sample["hand_valid"].tolist() == [True, True] and sample["mano_valid"].tolist() == [True, False]
    assert not bool(sample["part_segmentation_valid"])
    assert sample["part_segmentation"].shape == (SIZE // 2, SIZE // 2) and not sample["part_segmentation"].any()


def test_option_off_adds_nothing(synthetic_root, checks):
    sample = interhand(synthetic_root)[0]
    checks.contract(sample, SIZE)
    assert not set(PART_SEGMENTATION_KEYS) & set(sample)


def test_freihand_right_parts_and_odd_input_size(synthetic_root):
    ds = FreiHANDDataset(synthetic_root / "FreiHAND", "evaluation", input_size=97, mano_dir=synthetic_root / "mano",
                         part_segmentation=True)
    sample = ds[0]
    labels = sample["part_segmentation"]
    assert tuple(labels.shape) == (48, 48) and bool(sample["part_segmentation_valid"])
    found = set(np.unique(labels.numpy()).tolist()) - {0}
    assert len(found) >= 8 and found <= RIGHT_LABELS


def test_datamodule_batches(synthetic_root, synthetic_options):
    common = {"root": str(synthetic_root), "input_size": 64, "batch_size": 4, "num_workers": 0,
              "synthetic_options": synthetic_options["interhand"]}
    dm = HandDataModule("synthetic_interhand", part_segmentation=True, **common)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch["part_segmentation"].dtype == torch.int64 and tuple(batch["part_segmentation"].shape) == (4, 32, 32)
    assert batch["part_segmentation_valid"].dtype == torch.bool and batch["part_segmentation_valid"].all()
    assert int(batch["part_segmentation"].max()) > 0 and int(batch["part_segmentation"].max()) <= 32
    plain = HandDataModule("synthetic_interhand", **common)
    plain.setup("validate")
    assert not set(PART_SEGMENTATION_KEYS) & set(next(iter(plain.val_dataloader())))
