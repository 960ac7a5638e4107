"""Input geometry: how a datamodule cuts its inputs, recorded so that inference cuts them the same way.

The data config is the one source of truth. Every datamodule that feeds a model answers
``input_geometry()`` with ``{source name: geometry}``; the model copies it into its
hyper-parameters when a trainer sets it up with that datamodule (``MultiTaskModule.setup``),
so the checkpoint carries it and ``polyvision infer`` reads images and videos exactly as the
test loop did. A geometry is plain data (it is saved in checkpoints):

- images: ``{"input": "image", "size": [H, W]}``, optionally ``"pad": "white"`` (the image is
  first padded to the aspect of ``size`` with white, centred, then resized bicubically: the
  hand datamodule's ``crop="full"``) and ``"normalize"`` (recorded for the reader; the model's
  own ``normalize`` scales uint8 pictures). :func:`input_affine` gives the 2 x 3 affine from
  original pixels to input pixels, so predictions in the input can be mapped back;
- clips: ``{"input": "video", "size": [H, W] or None (frames resized to it), "crop": [H, W] or
  None (then centre-cropped to it), "clip_len": T, "frame_interval": k, "window_step": s or
  None}``; a whole video is cut into the windows of
  :func:`video_windows` (those of the ``full_video`` evaluation protocol);
- anything else a system needs (STATE's object pipeline settings) under its own keys.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import cv2
import numpy as np
import torch
from torch import Tensor

from polyvision.datamodules.video.samplers import clip_indices, window_starts
from polyvision.datamodules.video.transforms import center_crop, resize
from polyvision.errors import ConfigError


@runtime_checkable
class DescribesInputs(Protocol):
    def input_geometry(self) -> dict[str, dict[str, Any]]: ...


def as_size(size: int | Sequence[int] | None) -> list[int] | None:
    if size is None:
        return None
    return [int(size), int(size)] if isinstance(size, int) else [int(v) for v in size]


def image_geometry(size: int | Sequence[int]) -> dict[str, Any]:
    return {"input": "image", "size": as_size(size)}


def clip_geometry(clip_len: int, frame_interval: int, size: int | Sequence[int] | None,
                  crop: int | Sequence[int] | None = None, window_step: int | None = None) -> dict[str, Any]:
    return {"input": "video", "size": as_size(size), "crop": as_size(crop), "clip_len": int(clip_len),
            "frame_interval": int(frame_interval), "window_step": None if window_step is None else int(window_step)}


def video_windows(num_frames: int, geometry: dict[str, Any]) -> list[tuple[list[int], int]]:
    """The windows a whole video of ``num_frames`` frames is cut into: per window, the frame
    index of every clip frame (the last real frame repeated past the video's end) and the
    number of real frames. The same windows as a clip datamodule's ``full_video`` protocol."""
    clip_len, interval = int(geometry["clip_len"]), int(geometry["frame_interval"])
    starts = window_starts(num_frames, clip_len, interval, "full_video", geometry.get("window_step"))
    return [clip_indices(start, clip_len, interval, num_frames) for start in starts]


def input_affine(original_size: Sequence[int], geometry: dict[str, Any]) -> np.ndarray:
    """The 2 x 3 affine (float64) from original image pixels to model input pixels for an
    image of ``original_size = (H, W)``, in the pixel-square convention of the hand data
    (``datamodules/hands/render.py``: pixel ``(i, j)`` is the square ``[j, j+1) x [i, i+1)``,
    an image of width W spans ``0..W``). Without ``pad`` it is the plain resize (separate x and
    y scales); with ``pad: white`` one scale ``min(h/H, w/W)`` and the image centred in the
    input, white around it (for a square input: the hand datamodule's ``crop="full"`` box,
    ``crop_affine((W/2, H/2), max(H, W), S)``). Invert with :func:`invert_affine`."""
    height, width = (float(v) for v in original_size[:2])
    out_h, out_w = (float(v) for v in geometry["size"])
    pad = geometry.get("pad")
    if pad is None:
        return np.array([[out_w / width, 0.0, 0.0], [0.0, out_h / height, 0.0]])
    if pad != "white":
        raise ConfigError(f"input geometry: unknown pad '{pad}' (known: white)")
    scale = min(out_h / height, out_w / width)
    return np.array([[scale, 0.0, out_w / 2.0 - scale * width / 2.0],
                     [0.0, scale, out_h / 2.0 - scale * height / 2.0]])


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """The inverse of a 2 x 3 affine (input pixels -> original pixels for :func:`input_affine`)."""
    full = np.vstack([np.asarray(affine, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(..., 2)`` points through a 2 x 3 affine."""
    points = np.asarray(points, dtype=np.float64)
    return points @ np.asarray(affine)[:, :2].T + np.asarray(affine)[:, 2]


def prepare_image(rgb: np.ndarray, geometry: dict[str, Any], return_affine: bool = False) -> Tensor | tuple[Tensor, np.ndarray]:
    """An RGB uint8 ``(H, W, 3)`` image as the evaluation pipeline gives it: ``(3, h, w)`` uint8.

    Without ``pad``: resized with OpenCV's bilinear filter (albumentations' ``Resize`` of the
    image datamodules). With ``pad: white``: padded (centred) and resized in one bicubic warp
    with white borders, exactly as the hand datamodule's ``crop="full"`` sample is cut (its
    values are then scaled by the model, not here: the output stays uint8).
    ``return_affine``: also return :func:`input_affine` (original -> input pixels)."""
    height, width = geometry["size"]
    affine = input_affine(rgb.shape[:2], geometry)
    if geometry.get("pad") is None:
        resized = cv2.resize(np.ascontiguousarray(rgb), (int(width), int(height)), interpolation=cv2.INTER_LINEAR)
    else:
        # OpenCV samples pixel centres at integers; ours are at +0.5: shift in and out (as make_sample).
        cv_affine = affine.copy()
        cv_affine[:, 2] += affine[:, :2] @ np.array([0.5, 0.5]) - 0.5
        resized = cv2.warpAffine(np.ascontiguousarray(rgb), cv_affine, (int(width), int(height)),
                                 flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT,
                                 borderValue=(255, 255, 255))
    tensor = torch.from_numpy(resized).permute(2, 0, 1).contiguous()
    return (tensor, affine) if return_affine else tensor


def prepare_clip(frames: Tensor, geometry: dict[str, Any]) -> Tensor:
    """Decoded frames ``(T, H, W, 3)`` uint8 as the clip datamodules give them: ``(3, T, h, w)``,
    resized to ``size`` (antialiased bilinear) and centre-cropped to ``crop``."""
    clip = frames.permute(3, 0, 1, 2)
    if geometry.get("size"):
        clip = resize(clip, geometry["size"])
    if geometry.get("crop"):
        clip = center_crop(clip, geometry["crop"])
    return clip.contiguous()


def geometry_of(datamodule: Any) -> dict[str, dict[str, Any]] | None:
    """``datamodule.input_geometry()``, or None for a datamodule that does not describe its inputs."""
    return datamodule.input_geometry() if isinstance(datamodule, DescribesInputs) else None


def source_for_input(geometry: dict[str, dict[str, Any]] | None, input_kind: str, where: str) -> tuple[str, dict[str, Any]]:
    """The first source whose geometry reads ``input_kind`` (``image`` or ``video``), or one
    clear error naming what the model was trained on."""
    for source, entry in (geometry or {}).items():
        if entry.get("input") == input_kind:
            return source, entry
    if not geometry:
        raise ConfigError(f"{where}: the checkpoint records no input geometry (it was saved without a datamodule), "
                          f"so it cannot say how to cut a {input_kind} input")
    kinds = sorted({str(entry.get("input")) for entry in geometry.values()})
    raise ConfigError(f"{where}: this model was trained on {' and '.join(kinds)} inputs, not {input_kind}")
