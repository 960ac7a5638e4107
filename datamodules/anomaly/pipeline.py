"""STATE's object-level pipeline: boxes, optical flow and object cubes, cached per setting
(STATE, Wang et al., ICDM 2022; official code: github.com/wyzjack/MRMGA4VAD, its preprocessing
in ``fore_det/obj_det_with_motion.py``, ``calc_img_inputs.py`` and ``train.py``).

Object pipeline (``ObjectPipeline``, settings in ``PipelineSettings``)
    1. Boxes per frame: an optional torchvision detector (Faster/Mask R-CNN) loaded from a local
       weights file, class-agnostic, kept when score >= ``detector_score`` and
       (w+1)(h+1) >= ``detector_min_area`` (``getObBboxes``); then frame-difference foreground
       boxes (``getFgBboxes``):
       Gaussian-blurred colour frames t-1..t+1 (the edge frame repeated at a video's ends),
       summed absolute differences thresholded per channel (a pixel moves when any channel does),
       detected boxes (+2 px) blanked, external contours' bounding rectangles kept when
       (w+1)(h+1) > ``foreground_min_area`` and both aspect ratios < 10, enlarged by 2 px.
       Overlap removal (``delCoverBboxes``): smallest first, a box is dropped when its
       intersection with a larger box covers more than ``cover_threshold`` of its own area; run
       on the detector's boxes (as STATE) and once more on detector + foreground boxes.
    2. Flow per frame t between t and t+1 (t-1 and t for the last frame), at ``flow_size``
       (paper: 384×512, FlowNet2's input) and resized back to the frame without rescaling the
       vectors, as STATE does (``calc_img_inputs.py``). torchvision RAFT with local weights, or
       OpenCV Farneback when no flow weights are given.
    3. Cubes: for each box of frame t, the 2·context+1 frames of t's elastic window
       (``ElasticWindowSampler``: shifted, never padded, at video borders) cropped with t's box
       and resized to ``patch_size``²: RGB uint8 (3, T, P, P) and flow (2, T, P, P).

Cache
    ``prepare_data`` runs the pipeline once per split and stores the cubes under
    ``cache_dir/<dataset>-<split>-<key>/`` (raw cubes uint8, flow float16, index arrays, the
    settings as JSON), written to a temporary folder and renamed into place. ``key`` hashes
    every setting that changes the cubes (pipeline, weights files' size and time, the videos
    and their frame counts, the code version), so a changed setting builds a new cache and an
    unchanged one is reused.

Deviations from STATE, documented: torchvision detectors instead of mmdet's Cascade R-CNN
R101; RAFT or Farneback instead of FlowNet2 (Farneback, with no weights, is a classical
method and gives different magnitudes); RGB instead of OpenCV's BGR channel order; flow
cubes stored as float16; cubes read from memory-mapped files instead of ShanghaiTech's
40 000-frame segments.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import torch
from polyvision.datamodules.anomaly.readers import DATASETS, AnomalyVideo, check_dataset
from polyvision.datamodules.video.reader import VideoReader
from polyvision.datamodules.video.samplers import ElasticWindowSampler
from polyvision.errors import ConfigError, DataError, WeightsError
from pytorch_lightning.utilities import rank_zero_info

CACHE_VERSION = 2  # 2: motion boxes per colour channel with hard-border windows
NO_BOXES = np.zeros((0, 4), np.int64)


DETECTORS = ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2")
FLOW_MODELS = ("raft_large", "raft_small")


# --------------------------------------------------------------------------- settings


@dataclass
class PipelineSettings:
    """Everything that decides which cubes a video gives (defaults: Ped2, STATE's thresholds).

    Sizes are in pixels of the original frames; areas compare to (w+1)·(h+1).
    ``detector``/``detector_weights``: torchvision builder name and local weights file
    (``null``: foreground boxes only); ``detector_size``: [shorter, longer] side frames are
    resized to for it (STATE's test scale 800×1333). ``flow_model``/``flow_weights``: torchvision RAFT and its
    local weights (``null``: OpenCV Farneback). ``flow_size``: [H, W] the flow is computed at
    (``null``: the frame size). ``device``: where detector and RAFT run (``auto``: CUDA if available).
    """

    context: int = 3
    patch_size: int = 32
    foreground_min_area: int = 100
    foreground_threshold: int = 18
    foreground_kernel: int = 3
    foreground_context: int = 1
    max_aspect: float = 10.0
    box_margin: int = 2
    detector: str = "fasterrcnn_resnet50_fpn_v2"
    detector_weights: str | None = None
    detector_size: tuple[int, int] = (800, 1333)
    detector_score: float = 0.5
    detector_min_area: int = 100
    cover_threshold: float = 0.6
    flow_model: str = "raft_large"
    flow_weights: str | None = None
    flow_size: tuple[int, int] | None = (384, 512)
    chunk_frames: int = 32

    @classmethod
    def for_dataset(cls, dataset: str, overrides: dict[str, Any] | None = None) -> "PipelineSettings":
        preset = {k: v for k, v in DATASETS[check_dataset(dataset)].items() if k != "folders"}
        return cls.from_dict({**preset, **(overrides or {})})

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None, **defaults: Any) -> "PipelineSettings":
        values = {**defaults, **(values or {})}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"pipeline: unknown setting '{unknown[0]}' (known: {', '.join(sorted(names))})")
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.flow_size is not None:
            self.flow_size = (int(self.flow_size[0]), int(self.flow_size[1]))
        self.detector_size = (int(self.detector_size[0]), int(self.detector_size[1]))
        problems = []
        if self.context < 0 or self.patch_size < 4 or self.chunk_frames < 1:
            problems.append("context >= 0, patch_size >= 4 and chunk_frames >= 1")
        if self.foreground_kernel < 1 or self.foreground_kernel % 2 == 0:
            problems.append("foreground_kernel odd and positive")
        if not 0 <= self.cover_threshold <= 1:
            problems.append("cover_threshold in [0, 1]")
        if self.detector not in DETECTORS:
            problems.append(f"detector one of {', '.join(DETECTORS)}")
        if self.flow_model not in FLOW_MODELS:
            problems.append(f"flow_model one of {', '.join(FLOW_MODELS)}")
        if self.flow_size is not None and min(self.flow_size) < 8:
            problems.append("flow_size at least 8×8")
        if problems:
            raise ConfigError(f"pipeline: need {'; '.join(problems)}")

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["flow_size"] = list(self.flow_size) if self.flow_size is not None else None
        values["detector_size"] = list(self.detector_size)
        return values

    def cache_fields(self) -> dict[str, Any]:
        """The settings that change the cubes, with the identity of the weights files."""
        values = self.to_dict()
        values.pop("chunk_frames")
        for key in ("detector_weights", "flow_weights"):
            if values[key]:
                path = Path(values[key]).expanduser()
                stat = path.stat() if path.is_file() else None
                values[key] = {"path": str(path.resolve()), "size": stat.st_size if stat else None,
                               "mtime": int(stat.st_mtime) if stat else None}
        return values


# --------------------------------------------------------------------------- boxes (official fore_det/obj_det_with_motion.py)


def box_area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)


def remove_covered_boxes(boxes: np.ndarray, cover_threshold: float) -> np.ndarray:
    """STATE's overlap removal: smallest boxes first, drop a box when its intersection with
    any larger box divided by its own area exceeds ``cover_threshold``."""
    if len(boxes) < 2:
        return boxes
    areas = box_area(boxes).astype(np.float64)
    order = np.argsort(areas, kind="stable")
    keep = []
    for rank, i in enumerate(order):
        larger = order[rank + 1:]
        if len(larger):
            ix1 = np.maximum(boxes[i, 0], boxes[larger, 0])
            iy1 = np.maximum(boxes[i, 1], boxes[larger, 1])
            ix2 = np.minimum(boxes[i, 2], boxes[larger, 2])
            iy2 = np.minimum(boxes[i, 3], boxes[larger, 3])
            inter = np.clip(ix2 - ix1 + 1, 0, None) * np.clip(iy2 - iy1 + 1, 0, None)
            if (inter / areas[i] > cover_threshold).any():
                continue
        keep.append(i)
    return boxes[np.sort(np.array(keep, dtype=np.int64))]


def blurred_frame(frame: np.ndarray, kernel: int) -> np.ndarray:
    """The Gaussian-blurred colour frame, int16 (H, W, C) (grey frames get a channel axis)."""
    blurred = cv2.GaussianBlur(frame, (kernel, kernel), 0).astype(np.int16)
    return blurred[..., None] if blurred.ndim == 2 else blurred


def foreground_boxes(blurred: list[np.ndarray], detected: np.ndarray, settings: PipelineSettings) -> np.ndarray:
    """Frame-difference boxes of moving regions not covered by ``detected`` (STATE's ``getFgBboxes``).
    ``blurred``: the blurred colour frames of the window around the frame (``blurred_frame``).
    As STATE, the summed absolute differences are thresholded per colour channel and a pixel
    moves when any channel does."""
    height, width = blurred[0].shape[:2]
    motion = np.zeros(blurred[0].shape, np.int32)
    for previous, current in zip(blurred[:-1], blurred[1:]):
        motion += np.abs(current - previous)
    binary = (motion > settings.foreground_threshold).any(axis=2).astype(np.uint8)
    margin = settings.box_margin
    for x1, y1, x2, y2 in detected.astype(int):
        binary[max(0, y1 - margin):y2 + margin + 1, max(0, x1 - margin):x2 + margin + 1] = 0
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if (w + 1) * (h + 1) <= settings.foreground_min_area:
            continue
        if w / h >= settings.max_aspect or h / w >= settings.max_aspect:
            continue
        boxes.append([max(0, x - margin), max(0, y - margin),
                      min(width - 1, x + w + margin), min(height - 1, y + h + margin)])
    return np.array(boxes, dtype=np.int64).reshape(-1, 4)


class HardBorderWindows:
    """Frames ``t - context .. t + context``, the video's first or last frame repeated past its
    ends: STATE's ``border_mode='hard'`` for the motion boxes (cubes use elastic windows)."""

    def __init__(self, context: int = 1):
        self.context = int(context)

    def window(self, t: int, num_frames: int) -> list[int]:
        return [min(max(t + k, 0), num_frames - 1) for k in range(-self.context, self.context + 1)]


# --------------------------------------------------------------------------- the pipeline


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _require_weights(path: str | None, what: str) -> None:
    if path and not Path(path).expanduser().is_file():
        raise WeightsError(f"{Path(path).expanduser()}: {what} weights file not found (weights are never "
                           "downloaded; give a local file or set it to null)")


def _load_weights(path: str, what: str) -> dict[str, torch.Tensor]:
    from polyvision.models.layers.weights import load_state_dict_file

    _require_weights(path, what)
    return load_state_dict_file(Path(path).expanduser())


def _loaded(model: torch.nn.Module, state: dict, path: Any, name: str) -> torch.nn.Module:
    """``model`` in eval mode with ``state`` loaded, or one WeightsError naming the file."""
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise WeightsError(f"{path}: does not fit {name} ({_first_detail(error)})") from None
    return model.eval()


def _first_detail(error: Exception) -> str:
    """The informative line of a load_state_dict error (its second line names a key)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[1] if len(lines) > 1 else lines[0] if lines else type(error).__name__)[:160]


@dataclass
class VideoCubes:
    """The cubes of one video: ``raw`` uint8 (N, 3, T, P, P), ``flow`` float16 (N, 2, T, P, P),
    ``frame_of_cube`` (N,) frame index, ``boxes`` (N, 4) x1 y1 x2 y2 in frame pixels."""

    raw: np.ndarray
    flow: np.ndarray
    frame_of_cube: np.ndarray
    boxes: np.ndarray
    num_frames: int = 0
    fps: float = 0.0


class ObjectPipeline:
    """Boxes, flow and cubes of videos (see the module docstring); detector and RAFT are
    built on first use from their local weights files."""

    def __init__(self, settings: PipelineSettings, device: str | torch.device = "auto"):
        _require_weights(settings.detector_weights, "detector")
        _require_weights(settings.flow_weights, "RAFT")
        self.settings = settings
        self.device = resolve_device(device)
        self._detector: torch.nn.Module | None = None
        self._raft: torch.nn.Module | None = None

    # -- models
    @property
    def detector(self) -> torch.nn.Module | None:
        if self._detector is None and self.settings.detector_weights:
            import torchvision.models.detection as detection

            state = _load_weights(self.settings.detector_weights, "detector")
            classes = state.get("roi_heads.box_predictor.cls_score.weight")
            num_classes = int(classes.shape[0]) if classes is not None else 91
            low, high = self.settings.detector_size
            model = getattr(detection, self.settings.detector)(weights=None, weights_backbone=None, num_classes=num_classes,
                                                               min_size=low, max_size=high)
            self._detector = _loaded(model, state, self.settings.detector_weights, self.settings.detector).to(self.device)
        return self._detector

    @property
    def raft(self) -> torch.nn.Module | None:
        if self._raft is None and self.settings.flow_weights:
            from torchvision.models import optical_flow

            state = _load_weights(self.settings.flow_weights, "RAFT")
            model = getattr(optical_flow, self.settings.flow_model)(weights=None)
            self._raft = _loaded(model, state, self.settings.flow_weights, self.settings.flow_model).to(self.device)
        return self._raft

    # -- boxes
    @torch.no_grad()
    def detect(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Detector boxes per frame, class-agnostic, filtered by score and area (STATE's ``getObBboxes``)."""
        if self.detector is None:
            return [NO_BOXES for _ in frames]
        images = [torch.from_numpy(f).to(self.device).permute(2, 0, 1).float() / 255.0 for f in frames]
        results = []
        for output, frame in zip(self.detector(images), frames):
            boxes = output["boxes"][output["scores"] >= self.settings.detector_score].cpu().numpy()
            boxes = np.round(boxes).astype(np.int64)
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, frame.shape[1] - 1)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, frame.shape[0] - 1)
            valid = (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
            results.append(boxes[valid & (box_area(boxes) >= self.settings.detector_min_area)])
        return results

    # -- flow (STATE: calc_img_inputs.py)
    def _flow_frames(self, frame: np.ndarray) -> np.ndarray:
        if self.settings.flow_size is None:
            return frame
        height, width = self.settings.flow_size
        return cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)

    def _to_frame_size(self, flow: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        # Resized back without rescaling the vectors: magnitudes stay in flow_size pixels, as in STATE.
        if flow.shape[:2] == shape:
            return flow
        return cv2.resize(flow, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)

    @torch.no_grad()
    def flows(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Flow (H, W, 2) float32 from the first to the second frame of each pair."""
        if not pairs:
            return []
        shape = pairs[0][0].shape[:2]
        if self.raft is None:
            out = []
            for first, second in pairs:
                a = cv2.cvtColor(self._flow_frames(first), cv2.COLOR_RGB2GRAY)
                b = cv2.cvtColor(self._flow_frames(second), cv2.COLOR_RGB2GRAY)
                flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
                out.append(self._to_frame_size(flow, shape))
            return out
        first = torch.from_numpy(np.stack([self._flow_frames(a) for a, _ in pairs])).to(self.device)
        second = torch.from_numpy(np.stack([self._flow_frames(b) for _, b in pairs])).to(self.device)
        first, second = (t.permute(0, 3, 1, 2).float() / 127.5 - 1.0 for t in (first, second))
        height, width = first.shape[-2:]
        # RAFT needs sides divisible by 8 and at least 128 (its correlation pyramid)
        pad_h, pad_w = max(128, height + (-height) % 8) - height, max(128, width + (-width) % 8) - width
        if pad_h or pad_w:
            first = torch.nn.functional.pad(first, (0, pad_w, 0, pad_h), mode="replicate")
            second = torch.nn.functional.pad(second, (0, pad_w, 0, pad_h), mode="replicate")
        flow = self.raft(first, second)[-1][:, :, :height, :width]
        return [self._to_frame_size(f, shape) for f in flow.permute(0, 2, 3, 1).float().cpu().numpy()]

    # -- cubes
    def crop(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        x1, y1, x2, y2 = (int(v) for v in box)
        size = self.settings.patch_size
        return cv2.resize(image[y1:y2 + 1, x1:x2 + 1], (size, size), interpolation=cv2.INTER_LINEAR)

    def iter_video(self, path: str | Path) -> Iterator[tuple[VideoCubes, int]]:
        """Cubes of a video, chunk by chunk of centre frames; yields (cubes, frames done)."""
        s = self.settings
        path = Path(path)
        reader = VideoReader(path)
        try:
            num_frames = len(reader)
            if num_frames == 0:
                raise DataError(path, "video has no frames")
            windows = ElasticWindowSampler(context=s.context)
            motion_windows = HardBorderWindows(context=s.foreground_context)
            frames: dict[int, np.ndarray] = {}
            blurred: dict[int, np.ndarray] = {}
            flows: dict[int, np.ndarray] = {}

            def partner(i: int) -> tuple[int, int]:
                if i + 1 < num_frames:
                    return i, i + 1
                return (i - 1, i) if i > 0 else (i, i)

            for first in range(0, num_frames, s.chunk_frames):
                centres = range(first, min(num_frames, first + s.chunk_frames))
                low = min(windows.window(centres[0], num_frames)[0], motion_windows.window(centres[0], num_frames)[0])
                high = max(windows.window(centres[-1], num_frames)[-1], motion_windows.window(centres[-1], num_frames)[-1])
                needed_flows = range(low, high + 1)
                needed = sorted({j for i in needed_flows for j in partner(i)} | set(needed_flows))
                for cache in (frames, blurred, flows):
                    for old in [k for k in cache if k < needed[0]]:
                        del cache[old]
                missing = [i for i in needed if i not in frames]
                if missing:
                    decoded = reader.get_frames(missing).numpy()
                    for i, image in zip(missing, decoded):
                        frames[i] = np.ascontiguousarray(image)
                todo = [i for i in needed_flows if i not in flows]
                for i, flow in zip(todo, self.flows([(frames[partner(i)[0]], frames[partner(i)[1]]) for i in todo])):
                    flows[i] = flow
                detected = self.detect([frames[t] for t in centres])
                raw_cubes, flow_cubes, owners, all_boxes = [], [], [], []
                for t, det in zip(centres, detected):
                    det = remove_covered_boxes(det, s.cover_threshold)
                    window = motion_windows.window(t, num_frames)
                    for i in window:
                        if i not in blurred:
                            blurred[i] = blurred_frame(frames[i], s.foreground_kernel)
                    motion = NO_BOXES
                    if len(set(window)) > 1:  # a one-frame video has no motion
                        motion = foreground_boxes([blurred[i] for i in window], det, s)
                    # Foreground boxes never cover detected ones (blanked), but enlarged ones may
                    # cover each other; a second pass over the union drops such duplicates.
                    boxes = remove_covered_boxes(np.concatenate([det, motion]), s.cover_threshold)
                    if not len(boxes):
                        continue
                    cube_frames = windows.window(t, num_frames)
                    for box in boxes:
                        raw_cubes.append(np.stack([self.crop(frames[i], box) for i in cube_frames]).transpose(3, 0, 1, 2))
                        flow_cubes.append(np.stack([self.crop(flows[i], box) for i in cube_frames]).transpose(3, 0, 1, 2))
                        owners.append(t)
                        all_boxes.append(box)
                shape = (2 * s.context + 1, s.patch_size, s.patch_size)
                cubes = VideoCubes(
                    raw=np.stack(raw_cubes).astype(np.uint8) if raw_cubes else np.zeros((0, 3, *shape), np.uint8),
                    flow=np.stack(flow_cubes).astype(np.float16) if flow_cubes else np.zeros((0, 2, *shape), np.float16),
                    frame_of_cube=np.array(owners, dtype=np.int64),
                    boxes=np.array(all_boxes, dtype=np.int64).reshape(-1, 4),
                    num_frames=num_frames, fps=float(reader.fps or 0.0))
                yield cubes, len(centres)
        finally:
            reader.close()

    def extract_video(self, path: str | Path) -> VideoCubes:
        """All cubes of one video in memory."""
        parts = [cubes for cubes, _ in self.iter_video(path)]
        return VideoCubes(raw=np.concatenate([p.raw for p in parts]), flow=np.concatenate([p.flow for p in parts]),
                          frame_of_cube=np.concatenate([p.frame_of_cube for p in parts]),
                          boxes=np.concatenate([p.boxes for p in parts]), num_frames=parts[0].num_frames, fps=parts[0].fps)


# --------------------------------------------------------------------------- cache


def cache_key(dataset: str, split: str, videos: list[AnomalyVideo], settings: PipelineSettings) -> str:
    content = {"version": CACHE_VERSION, "dataset": dataset, "split": split, "settings": settings.cache_fields(),
               "videos": [[str(v.path.resolve()), v.num_frames] for v in videos]}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def build_cube_cache(videos: list[AnomalyVideo], settings: PipelineSettings, directory: Path, dataset: str,
                     split: str, device: str = "auto", progress: bool = True) -> Path:
    """Run the pipeline over ``videos`` and store their cubes in ``directory`` (atomic)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-tmp-", dir=directory.parent))
    pipeline = ObjectPipeline(settings, device=device)
    rank_zero_info(f"STATE {dataset}/{split}: building object cubes in {directory}")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(v.num_frames for v in videos), desc=f"STATE cubes {dataset}/{split}", unit="frame")
    try:
        counts = 0
        frame_offset = 0
        frame_of_cube, boxes = [], []
        with open(tmp / "raw.u8", "wb") as raw_file, open(tmp / "flow.f16", "wb") as flow_file:
            for video in videos:
                for cubes, done in pipeline.iter_video(video.path):
                    if cubes.num_frames != video.num_frames:
                        raise DataError(video.path, f"decoded {cubes.num_frames} frames, expected {video.num_frames}")
                    raw_file.write(np.ascontiguousarray(cubes.raw).tobytes())
                    flow_file.write(np.ascontiguousarray(cubes.flow).tobytes())
                    frame_of_cube.append(cubes.frame_of_cube + frame_offset)
                    boxes.append(cubes.boxes)
                    counts += len(cubes.raw)
                    if bar is not None:
                        bar.update(done)
                frame_offset += video.num_frames
        video_of_frame = np.concatenate([np.full(v.num_frames, i) for i, v in enumerate(videos)])
        frame_index = np.concatenate([np.arange(v.num_frames) for v in videos])
        labels = np.concatenate([v.labels if v.labels is not None else np.full(v.num_frames, -1) for v in videos])
        np.savez(tmp / "index.npz",
                 frame_of_cube=np.concatenate(frame_of_cube).astype(np.int64) if frame_of_cube else np.zeros(0, np.int64),
                 boxes=np.concatenate(boxes).astype(np.int64) if boxes else NO_BOXES,
                 video_of_frame=video_of_frame.astype(np.int64), frame_index=frame_index.astype(np.int64),
                 labels=labels.astype(np.int64))
        steps = 2 * settings.context + 1
        (tmp / "cache.json").write_text(json.dumps({
            "version": CACHE_VERSION, "dataset": dataset, "split": split, "num_cubes": counts,
            "cube_shape": [steps, settings.patch_size, settings.patch_size],
            "videos": [v.to_json() for v in videos], "settings": settings.cache_fields()}, indent=1))
        if directory.exists():  # another process finished the same cache first
            return directory
        os.replace(tmp, directory)
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


class CubeCache:
    """A built cache: memory-mapped cubes and the per-cube and per-frame index."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        try:
            self.info = json.loads((self.directory / "cache.json").read_text())
            index = np.load(self.directory / "index.npz")
        except (OSError, ValueError) as error:
            raise DataError(self.directory, f"unreadable cube cache ({error}); delete it to rebuild") from None
        self.frame_of_cube = index["frame_of_cube"]
        self.boxes = index["boxes"]
        self.video_of_frame = index["video_of_frame"]
        self.frame_index = index["frame_index"]
        self.labels = index["labels"]
        self.videos = self.info["videos"]
        self.num_cubes = int(self.info["num_cubes"])
        self.cube_shape = tuple(self.info["cube_shape"])
        self._raw: np.ndarray | None = None
        self._flow: np.ndarray | None = None

    def _map(self, name: str, dtype, channels: int) -> np.ndarray:
        shape = (self.num_cubes, channels, *self.cube_shape)
        if self.num_cubes == 0:
            return np.zeros(shape, dtype)
        return np.memmap(self.directory / name, dtype=dtype, mode="r", shape=shape)

    @property
    def raw(self) -> np.ndarray:
        if self._raw is None:
            self._raw = self._map("raw.u8", np.uint8, 3)
        return self._raw

    @property
    def flow(self) -> np.ndarray:
        if self._flow is None:
            self._flow = self._map("flow.f16", np.float16, 2)
        return self._flow

    @property
    def empty_frames(self) -> np.ndarray:
        """Global indices of frames without any cube."""
        has = np.zeros(len(self.video_of_frame), bool)
        has[self.frame_of_cube] = True
        return np.flatnonzero(~has)

    def __getstate__(self):  # DataLoader workers map the files themselves
        state = dict(self.__dict__)
        state["_raw"] = state["_flow"] = None
        return state
