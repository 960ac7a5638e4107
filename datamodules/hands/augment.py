"""Training augmentation of the hand datasets.

Geometric (drawn here, applied by :func:`~polyvision.datamodules.hands.annotations.make_sample`
as part of the one crop warp, so that ``camera`` stays exact):

- random scale of the crop box, uniform in ``[0.8, 1.2]``;
- translation jitter of its centre, uniform in ``+-0.1`` of its side on each axis;
- in-plane rotation about its centre with probability 0.2, uniform in ``+-30`` degrees,
  treated as a camera roll (3D joints and the MANO global orientation turn with it; see the
  annotations module).

Photometric: an albumentations ``Compose`` (colour jitter: brightness, contrast and
saturation ``+-0.2``) that carries the 2D joints as keypoints (``KeypointParams(format="xy",
remove_invisible=False)``), so a geometric albumentations transform added to it would move
them with the image. Geometric changes belong to the crop, though: a transform here would
not update ``camera`` or the 3D joints.

Deviation from ACR (Yu et al., CVPR 2023), whose training flips images with probability 0.5:
no flipping. A mirrored image turns a right hand into a left one, so the two hand slots
would swap and every MANO pose would have to be mirrored into the other hand's model.

Randomness: a ``numpy.random.Generator`` and the ``Compose``'s own generator, both reseeded
by :meth:`HandAugment.set_seed` before each sample (the dataset's ``set_sample_seed``).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import albumentations as A
import numpy as np

__all__ = ["CropJitter", "HandAugment"]


@dataclass
class CropJitter:
    """Random crop changes of the training augmentation: the box side times ``scale``, its
    centre moved by ``shift`` (fractions of the side), rotated by ``angle`` radians about it."""

    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0


class HandAugment:
    """The random crop changes and the colour jitter of one training sample.

    Args:
        scale: range of the crop-box scale factor.
        shift: largest centre shift, as a fraction of the box side (each axis).
        rotation_prob: probability of an in-plane rotation.
        rotation_deg: largest rotation, degrees.
        color_jitter: brightness/contrast/saturation jitter of albumentations' ``ColorJitter``.
        color_prob: probability of the colour jitter.
    """

    def __init__(self, scale: tuple[float, float] = (0.8, 1.2), shift: float = 0.1, rotation_prob: float = 0.2,
                 rotation_deg: float = 30.0, color_jitter: float = 0.2, color_prob: float = 1.0):
        self.scale = (float(scale[0]), float(scale[1]))
        self.shift = float(shift)
        self.rotation_prob = float(rotation_prob)
        self.rotation = math.radians(float(rotation_deg))
        with warnings.catch_warnings():  # colour-only transforms leave keypoints alone: expected
            warnings.filterwarnings("ignore", message=".*no transform to process it.*")
            self.transform = A.Compose(
                [A.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter, hue=0.0,
                               p=color_prob)],
                keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
            )
        self.rng = np.random.default_rng(0)

    def set_seed(self, seed: int) -> None:
        """Reseed the numpy generator and the albumentations ``Compose``."""
        seed = int(seed) % 2**32
        self.rng = np.random.default_rng(seed)
        self.transform.set_random_seed(seed)

    def draw_jitter(self) -> CropJitter:
        scale = float(self.rng.uniform(*self.scale))
        shift = tuple(float(v) for v in self.rng.uniform(-self.shift, self.shift, 2))
        rotate = self.rng.random() < self.rotation_prob
        angle = float(self.rng.uniform(-self.rotation, self.rotation))
        return CropJitter(scale=scale, shift=shift, angle=angle if rotate else 0.0)

    def photometric(self, image: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Colour-jitter ``image`` (uint8 ``S x S x 3``); ``keypoints (N, 2)`` ride along."""
        out = self.transform(image=image, keypoints=np.asarray(keypoints, np.float32))
        return out["image"], np.asarray(out["keypoints"], np.float64)[:, :2]
