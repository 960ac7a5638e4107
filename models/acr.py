"""ACR: two-hand 3D reconstruction from one image (Yu et al., "ACR: Attention Collaboration-based
Regressor for Arbitrary Two-Hand Reconstruction", CVPR 2023; official code
github.com/ZhengdiYu/Arbitrary-Hands-3D-Reconstruction, inference only).

``ACR`` is a ``MultiTaskModule`` whose defaults are the release's: an HRNet-W32 trunk (timm
``hrnet_w32``, its stride-4, 32-channel branch; ``acr/model.py`` ``HigherResolutionNet``) read
by one :class:`~polyvision.heads.hands.TwoHandHead`, inputs scaled as ``x/255·2−1`` (the
release's normalisation, not ImageNet's), Adam at 3e-4 with weight decay 1e-6 (``acr/config.py``,
ROMP's defaults). Any library backbone works by config (``configs/acr/interhand_swin_t.yaml``).

Inference (``polyvision infer``): images are padded to a square with white (centred) and
resized bicubically as the hand datamodule's ``crop="full"`` does (the ``pad: white`` input
geometry); :meth:`ACR.image_record` maps each hand's 2D joints back to the original image
(``joints_2d_pixels``) and draws both meshes over it (``<stem>.hands.png``);
:meth:`ACR.predict_video` does the same per frame of a video, optionally with a One-Euro
filter over each hand's pose, shape and camera (``--smooth``), writing ``<stem>.hands.jsonl``
(one record per frame) and ``<stem>.hands.mp4`` (the overlay).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyvision.heads.base import Head
from polyvision.heads.hands import TwoHandHead
from polyvision.models.base import MultiTaskModule
from polyvision.models.layers.mano import ROOT_JOINT_21

# ACR's normalisation, x/255*2-1, written as a mean and std over [0, 1] pixels.
MINUS_ONE_TO_ONE = (0.5, 0.5, 0.5)
HRNET_STRIDE_4 = {"out_indices": [1], "feature_location": ""}  # timm: the raw 32-channel branch at stride 4
ACR_OPTIMIZER = {"class_path": "torch.optim.Adam", "init_args": {"lr": 3e-4, "weight_decay": 1e-6}}
# One-Euro settings of ``--smooth`` (pose in radians, shape and camera unitless): smoothing at rest
# with a 1 Hz cutoff, rising with speed so fast motion does not lag.
SMOOTHING = {"min_cutoff": 1.0, "beta": 0.5, "d_cutoff": 1.0}
SMOOTHED_KEYS = ("pose", "shape", "camera")


class ACR(MultiTaskModule):
    """ACR with its paper defaults; ``heads`` defaults to one ``hands`` head on ``mano_dir``.

    Args:
        mano_dir: folder with MANO_RIGHT.pkl and MANO_LEFT.pkl (or ``generated``), used when
            ``heads`` is not given.
        cross_hand_prior: the default head's cross-hand prior (off for single-hand data).
        heads, backbone, backbone_kwargs, ...: as ``MultiTaskModule``.
    """

    def __init__(self, heads: dict[str, Head] | None = None, mano_dir: str | None = None, cross_hand_prior: bool = True,
                 backbone: str | dict[str, Any] = "hrnet_w32", backbone_kwargs: dict[str, Any] | None = None,
                 optimizer: dict[str, Any] | None = None, **kwargs: Any):
        if heads is None:
            heads = {"hands": TwoHandHead(mano_dir=mano_dir, cross_hand_prior=cross_hand_prior)}
        if backbone_kwargs is None and backbone == "hrnet_w32":
            backbone_kwargs = dict(HRNET_STRIDE_4)
        kwargs.setdefault("input_keys", ("image",))
        kwargs.setdefault("mean", MINUS_ONE_TO_ONE)
        kwargs.setdefault("std", MINUS_ONE_TO_ONE)
        super().__init__(heads=heads, backbone=backbone, backbone_kwargs=backbone_kwargs,
                         optimizer=optimizer or ACR_OPTIMIZER, **kwargs)
        for key in ("mano_dir", "cross_hand_prior"):  # the head's spec records them
            self.hparams.pop(key, None)

    # ------------------------------------------------------------------ inference
    def hand_heads(self) -> list[str]:
        return [name for name, head in self.heads.items() if isinstance(head, TwoHandHead)]

    def configure_inference(self, threshold: float | None = None, smooth: bool = False, skeleton: bool = False) -> None:
        """``polyvision infer``'s options: the centre-map ``threshold`` of every hand head (None:
        the checkpoint's ``detection_threshold``), One-Euro ``smooth``ing of videos and whether
        pictures also show the 21-joint ``skeleton``."""
        if threshold is not None:
            for name in self.hand_heads():
                self.heads[name].detection_threshold = float(threshold)
        self.inference_options = {"smooth": bool(smooth), "skeleton": bool(skeleton)}

    def _option(self, key: str) -> bool:
        return bool(getattr(self, "inference_options", {}).get(key, False))

    def _hands_in_original(self, hands: list[dict[str, Any]], to_input: np.ndarray, input_size: tuple[int, int],
                           ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Adds ``joints_2d_pixels`` (original image pixels) to each hand; returns per hand
        ``(vertices_px (778, 3) with depth, faces, joints_px (21, 2))`` in the original image."""
        from polyvision.datamodules.geometry import apply_affine, invert_affine

        to_original = invert_affine(to_input)
        depth_scale = float(np.sqrt(abs(np.linalg.det(to_original[:, :2]))))
        height, width = input_size
        half = np.array([width / 2.0, height / 2.0])
        drawn = []
        for hand in hands:
            joints_input = (np.asarray(hand["joints_2d"], np.float64) + 1.0) * half
            joints_px = apply_affine(to_original, joints_input)
            hand["joints_2d_pixels"] = joints_px.round(3).tolist()
            vertices = np.asarray(hand["vertices"], np.float64)
            scale, tx, ty = (float(v) for v in hand["camera"])
            projected = (scale * vertices[:, :2] + np.array([tx, ty]) + 1.0) * half  # weak perspective, input pixels
            depth = scale * vertices[:, 2] * half.mean() * depth_scale  # in pixel units (shading), nearer = smaller
            vertices_px = np.concatenate([apply_affine(to_original, projected), depth[:, None]], 1)
            head = self.heads[self.hand_heads()[0]]
            faces = head.mano[0 if hand["side"] == "right" else 1].faces.cpu().numpy()
            drawn.append((vertices_px, faces, joints_px))
        return drawn

    def overlay(self, rgb: np.ndarray, hands: list[dict[str, Any]], to_input: np.ndarray,
                input_size: tuple[int, int]) -> np.ndarray:
        """Both hands' meshes over ``rgb`` (left/right in ACR's colours; the skeleton too with
        the ``skeleton`` option); sets each hand's ``joints_2d_pixels``."""
        from polyvision.datamodules.hands.render import LEFT_HAND_RGB, RIGHT_HAND_RGB, draw_meshes, draw_skeleton

        drawn = self._hands_in_original(hands, to_input, input_size)
        colours = [RIGHT_HAND_RGB if hand["side"] == "right" else LEFT_HAND_RGB for hand in hands]
        picture = draw_meshes(np.ascontiguousarray(rgb), [(v, f, c) for (v, f, _), c in zip(drawn, colours)])
        if self._option("skeleton"):
            for (_, _, joints), colour in zip(drawn, colours):
                picture = draw_skeleton(picture, joints, colour=tuple(0.6 * c for c in colour))
        return picture

    def image_record(self, record: dict[str, Any], rgb: np.ndarray, to_input: np.ndarray, output_dir: Path,
                     stem: str) -> dict[str, Any]:
        """One image's ``predict_step`` record made final for ``polyvision infer``: each hand
        head's list of hands (``record[name] = [hand, ...]``, with ``joints_2d_pixels`` in the
        original image) and ``hands_png``, the meshes drawn over the original image."""
        from PIL import Image

        geometry_size = self._input_size()
        record = dict(record)
        hands: list[dict[str, Any]] = []
        for name in self.hand_heads():
            record[name] = list(record.get(name, {}).get("hands", []))
            hands.extend(record[name])
        record["image_size"] = [int(rgb.shape[0]), int(rgb.shape[1])]
        picture = self.overlay(rgb, hands, to_input, geometry_size)
        path = Path(output_dir) / f"{stem}.hands.png"
        Image.fromarray(picture).save(path)
        record["hands_png"] = str(path)
        if not hands:
            print(f"note: {record.get('path')}: no hand detected", file=sys.stderr)
        return record

    def _input_size(self) -> tuple[int, int]:
        from polyvision.datamodules.geometry import source_for_input

        _, geometry = source_for_input(self.input_geometry, "image", "model")
        return int(geometry["size"][0]), int(geometry["size"][1])

    def _smoothed(self, name: str, hands: list[dict[str, Any]], filters: dict[tuple[str, str], dict[str, Any]],
                  time: float, fps: float) -> list[dict[str, Any]]:
        """``hands`` of one frame with pose, shape and camera through each side's One-Euro
        filters (started fresh when the side was absent in the previous frame), joints,
        vertices and 2D joints recomputed from them."""
        from polyvision.datamodules.hands.smoothing import OneEuroFilter

        head = self.heads[name]
        seen = {hand["side"] for hand in hands}
        for key in [k for k in filters if k[0] == name and k[1] not in seen]:
            del filters[key]  # the hand disappeared: its filter restarts when it is back
        smoothed = []
        for hand in hands:
            side = hand["side"]
            per_key = filters.setdefault((name, side), {
                key: OneEuroFilter(frequency=fps, **SMOOTHING) for key in SMOOTHED_KEYS})
            values = {key: per_key[key](np.asarray(hand[key], np.float64), time) for key in SMOOTHED_KEYS}
            model = head.mano[0 if side == "right" else 1]
            device = next(model.buffers()).device
            pose = torch.as_tensor(values["pose"], dtype=torch.float32, device=device)[None]
            betas = torch.as_tensor(values["shape"], dtype=torch.float32, device=device)[None]
            with torch.no_grad():
                output = model(pose, betas)
            root = output.joints[0, ROOT_JOINT_21:ROOT_JOINT_21 + 1]  # as the head's decode
            joints = (output.joints[0] - root).cpu().numpy().astype(np.float64)
            vertices = (output.vertices[0] - root).cpu().numpy().astype(np.float64)
            camera = values["camera"]
            joints_2d = camera[0] * joints[:, :2] + camera[1:]
            smoothed.append({**hand, "pose": values["pose"].tolist(), "shape": values["shape"].tolist(),
                             "camera": camera.tolist(), "joints_3d": joints.tolist(), "vertices": vertices.tolist(),
                             "joints_2d": joints_2d.tolist()})
        return smoothed

    def predict_video(self, path: str | Path, output_dir: Path, stem: str, batch_size: int = 8) -> dict[str, Any]:
        """Hands in every frame of a video (file or frame folder), read on the CPU, cut as the
        training images were (the ``image`` geometry in the checkpoint). Writes
        ``<stem>.hands.jsonl``, one record per frame (``frame``, ``time`` in seconds, ``hands``
        as for an image, with ``joints_2d_pixels`` in the frame) and ``<stem>.hands.mp4``, the
        meshes drawn over the frames; with the ``smooth`` option each side's pose, shape and
        camera pass a One-Euro filter (:data:`SMOOTHING`) across frames, restarted whenever that
        hand is missing in a frame. Returns a summary record naming both files. Nothing is
        left behind when the video cannot be read."""
        from polyvision.datamodules.geometry import prepare_image, source_for_input
        from polyvision.datamodules.video.reader import VideoReader
        from polyvision.errors import ConfigError, DataError

        try:
            source, geometry = source_for_input(self.input_geometry, "image", f"{path}")
        except ConfigError as error:
            raise DataError(path, str(error).split(": ", 1)[1]) from None
        input_size = (int(geometry["size"][0]), int(geometry["size"][1]))
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        jsonl_path, mp4_path = output_dir / f"{stem}.hands.jsonl", output_dir / f"{stem}.hands.mp4"
        partial = [output_dir / f".{stem}.hands.jsonl.partial", output_dir / f".{stem}.hands.mp4.partial"]
        smooth = self._option("smooth")
        names = self.hand_heads()
        filters: dict[tuple[str, str], dict[str, Any]] = {}
        counts = {"frames": 0, "with_hands": 0}
        self.eval()
        try:
            with VideoReader(path, device="cpu") as reader:
                total, fps = len(reader), float(reader.fps or 25.0)
                if total == 0:
                    raise DataError(path, "the video has no frames")
                height, width = (int(v) for v in reader.size)
                with partial[0].open("w") as jsonl, VideoWriter(partial[1], width, height, fps) as writer, \
                        progress(total, f"ACR {Path(path).name}") as bar:
                    for first in range(0, total, batch_size):
                        indices = list(range(first, min(first + batch_size, total)))
                        frames = reader.get_frames(indices).numpy()
                        prepared = [prepare_image(frame, geometry, return_affine=True) for frame in frames]
                        batch = {"image": torch.stack([image for image, _ in prepared]).to(self.device),
                                 "meta": [{"path": str(path), "frame": i} for i in indices], "source": source}
                        with torch.no_grad():
                            records = self.predict_step(batch, 0)
                        for index, frame, (_, affine), record in zip(indices, frames, prepared, records):
                            time = index / fps
                            hands: list[dict[str, Any]] = []
                            entry: dict[str, Any] = {"frame": index, "time": round(time, 6)}
                            for name in names:
                                found = list(record.get(name, {}).get("hands", []))
                                if smooth:
                                    found = self._smoothed(name, found, filters, time, fps)
                                entry[name] = found
                                hands.extend(found)
                            writer.write(self.overlay(frame, hands, affine, input_size))
                            jsonl.write(json.dumps(entry, sort_keys=True) + "\n")
                            counts["frames"] += 1
                            counts["with_hands"] += bool(hands)
                        bar.update(len(indices))
        except BaseException:
            for file in partial:
                file.unlink(missing_ok=True)
            raise
        os.replace(partial[0], jsonl_path)
        os.replace(partial[1], mp4_path)
        if counts["with_hands"] == 0:
            print(f"note: {path}: no hand detected in any frame", file=sys.stderr)
        return {"frames_jsonl": str(jsonl_path), "hands_mp4": str(mp4_path), "num_frames": counts["frames"],
                "frames_with_hands": counts["with_hands"], "fps": round(fps, 6), "smoothed": smooth,
                "image_size": [height, width]}


class VideoWriter:
    """H.264 mp4 through PyAV (as the repo's synthetic videos are written); frames of odd size
    are padded by one edge pixel (yuv420p needs even sides)."""

    def __init__(self, path: Path, width: int, height: int, fps: float):
        import av
        from fractions import Fraction

        self.container = av.open(str(path), "w", format="mp4")
        self.stream = self.container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self.width, self.height = width + width % 2, height + height % 2
        self.stream.width, self.stream.height, self.stream.pix_fmt = self.width, self.height, "yuv420p"
        self.stream.options = {"crf": "20", "preset": "veryfast"}

    def write(self, rgb: np.ndarray) -> None:
        import av

        if rgb.shape[:2] != (self.height, self.width):
            rgb = np.pad(rgb, ((0, self.height - rgb.shape[0]), (0, self.width - rgb.shape[1]), (0, 0)), mode="edge")
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
            self.container.mux(packet)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if exc[0] is None:
                for packet in self.stream.encode():
                    self.container.mux(packet)
        finally:
            self.container.close()


def progress(total: int, desc: str):
    """A tqdm bar on stderr for videos of 100 frames or more (and on a terminal)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="frame", leave=False, disable=True if total < 100 else None)
