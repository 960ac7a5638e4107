"""The decoding backends behind ``VideoReader`` (see ``polyvision.datamodules.video.reader``).

One class per library (PyAV, decord, torchcodec, PyNvVideoCodec) and one for folders of frame
images, each answering ``get_frames(indices)`` for one file; ``backend_status`` and
``available_backends`` say which of them can run here and why not.
"""
from __future__ import annotations

import bisect
import functools
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from polyvision.errors import ConfigError, DataError
from torch import Tensor

BACKENDS = ("torchcodec", "decord", "nvdec", "pyav")
# Preference of ``backend="auto"`` per device type, from `polyvision benchmark decode` on a
# 1080p H.264 file (10 s, 30 fps, key frame every 2 s) on 2 busy CPU cores, repeats
# interleaved: PyAV (key-frame seeking, one shared swscale context) was fastest for
# sequential reads (~1.2x torchcodec, ~2x decord), random 16-frame clips (~1.15x
# torchcodec, ~1.8x decord, also with one decoder thread) and 8 frames spread over the
# video (all within 15%). It also decodes the most codecs and needs no system FFmpeg.
# On the GPU, torchcodec's NVDEC path beat PyNvVideoCodec in a decode benchmark on an H200
# (torchcodec 0.17, PyNvVideoCodec 2.2.4).
AUTO_ORDER = {
    "cpu": ("pyav", "torchcodec", "decord"),
    "cuda": ("torchcodec", "nvdec"),
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
DEFAULT_FOLDER_FPS = 25.0

FFMPEG_INSTALL_HINT = (
    "torchcodec needs FFmpeg 4-9 shared libraries (libavcodec, libavformat, libavutil, "
    "libswscale...): install them with `apt-get install ffmpeg` (Debian/Ubuntu), "
    "`conda install -c conda-forge 'ffmpeg<10'` or `brew install ffmpeg`, or use "
    "backend='pyav', which bundles its own FFmpeg"
)


class VideoDecodeError(DataError):
    """A video (or frame folder) is missing or cannot be decoded. ``str()`` starts with the path."""


class _StreamChoiceUnsupported(Exception):
    """A backend that cannot select a stream met a file with several video streams."""


class VideoBackendFallbackWarning(UserWarning):
    """``backend="auto"`` could not use its first choice for a file and used another one."""


# --------------------------------------------------------------------------- availability


@functools.lru_cache(maxsize=None)
def torchcodec_status() -> tuple[bool, str]:
    """``(True, "FFmpeg N")`` when torchcodec and its FFmpeg libraries load, else ``(False, why)``."""
    try:
        import torchcodec  # noqa: F401
    except Exception as error:  # ImportError, or OSError next to a CPU-only torch build
        return False, f"torchcodec cannot be imported ({type(error).__name__}: {error}); pip install torchcodec"
    version = getattr(torchcodec, "ffmpeg_major_version", None)
    if version is None:
        return False, f"FFmpeg shared libraries not found. {FFMPEG_INSTALL_HINT}"
    return True, f"FFmpeg {version}"


@functools.lru_cache(maxsize=None)
def _module_status(module: str) -> tuple[bool, str]:
    try:
        with warnings.catch_warnings():  # e.g. PyNvVideoCodec's own DeprecationWarning on import
            warnings.simplefilter("ignore")
            __import__(module)
    except Exception as error:
        return False, f"{module} cannot be imported ({type(error).__name__}: {error})"
    return True, "ok"


def backend_status(name: str, device: str | torch.device = "cpu") -> tuple[bool, str]:
    """Whether backend ``name`` can decode *on* ``device`` here, and why not."""
    dev = torch.device(device)
    if name not in BACKENDS:
        raise ConfigError(f"unknown video backend {name!r}; choose one of {', '.join(BACKENDS)} or 'auto'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        return False, "CUDA is not available"
    if name == "torchcodec":
        return torchcodec_status()
    if name == "pyav":
        return (True, "ok") if dev.type == "cpu" else (False, "pyav decodes on the CPU only")
    if name == "decord":
        if dev.type != "cpu":
            return False, "the PyPI decord wheel decodes on the CPU only"
        return _module_status("decord")
    if dev.type != "cuda":  # nvdec
        return False, "nvdec (PyNvVideoCodec) decodes on NVIDIA GPUs only"
    ok, why = _module_status("PyNvVideoCodec")
    return (ok, why if ok else f"{why}; pip install pynvvideocodec")


def available_backends(device: str | torch.device = "cpu") -> list[str]:
    """Backends that decode on ``device`` here, in ``auto``'s order of preference."""
    dev = torch.device(device)
    order = AUTO_ORDER.get(dev.type, ())
    return [name for name in order if backend_status(name, dev)[0]]


def _auto_candidates(device: torch.device) -> list[str]:
    names = available_backends(device)
    if device.type != "cpu":  # CPU backends decode on the host and copy to the device
        names += [n for n in available_backends("cpu") if n not in names]
    return names


# --------------------------------------------------------------------------- frame folders


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_frame_files(folder: str | Path) -> list[Path]:
    """Image files of a frame folder in natural order (``2.jpg`` before ``10.jpg``)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: _natural_key(p.name))


# --------------------------------------------------------------------------- backends
# Each backend decodes *sorted, unique, valid* indices into a uint8 (m, H, W, 3) tensor;
# VideoReader validates indices, re-orders and repeats frames, and moves them to its device.


class _Backend:
    name = ""
    num_frames = 0
    fps = 0.0
    size = (0, 0)  # (height, width)
    device = torch.device("cpu")

    def decode(self, indices: list[int]) -> Tensor:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _PyAVBackend(_Backend):
    """PyAV with an exact frame index built by demuxing (no decoding) at open time.

    Requested frames are grouped into runs: a run starts by seeking to the key frame at or
    before its first frame and decodes forward; the next requested frame continues the run
    unless a key frame lies between the decoder's position and it, in which case seeking
    is cheaper. Decoding stays open between calls, so consecutive windows never re-seek.
    """

    name = "pyav"

    def __init__(self, path: Path, stream: int | None, num_threads: int, seek: bool = True):
        import av
        import av.video.reformatter

        self._seek_enabled = seek  # False: decode from the start every time (benchmark baseline)

        self.path = path
        self._iter: Iterable | None = None
        self._threads = num_threads if num_threads > 0 else (os.cpu_count() or 1)
        # one RGB converter for all frames (a frame's own to_ndarray() builds a new swscale
        # context every time, which cost more than decoding at 1080p)
        self._reformatter = av.video.reformatter.VideoReformatter()
        self._container = av.open(str(path))
        try:
            self._stream = _pick_av_stream(self._container, path, stream)
            self.video_streams = [s.index for s in self._container.streams.video]
            self.best_stream = self._container.streams.best("video").index
            self._stream.thread_type = "AUTO"
            self._stream.codec_context.thread_count = self._threads
            self._build_index()
            rate = self._stream.average_rate or self._stream.guessed_rate
            if rate:
                self.fps = float(rate)
            elif self.num_frames > 1 and self._stream.time_base:
                span = float((self._pts[-1] - self._pts[0]) * self._stream.time_base)
                self.fps = (self.num_frames - 1) / span if span > 0 else 0.0
            self.size = (self._stream.codec_context.height, self._stream.codec_context.width)
        except BaseException:
            self._container.close()
            raise
        self._pos: int | None = None  # index of the next frame the decoder will output
        self._seek_from: dict[int, int] = {}  # key frame -> earlier key frame to use (seek overshoot)

    def _build_index(self) -> None:
        pts, keys = [], {}
        for packet in self._container.demux(self._stream):
            if packet.size == 0 or getattr(packet, "is_discard", False):
                continue
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:
                raise VideoDecodeError(self.path, "pyav: packets carry no timestamps")
            pts.append(ts)
            if packet.is_keyframe:
                keys[ts] = ts
        pts.sort()
        if not pts:
            raise VideoDecodeError(self.path, "pyav: the video stream has no frames")
        self._pts = pts
        self._index_of = {p: i for i, p in enumerate(pts)}
        if len(self._index_of) != len(pts):
            raise VideoDecodeError(self.path, "pyav: duplicate frame timestamps")
        self.num_frames = len(pts)
        key_index = sorted((self._index_of[p], ts) for p, ts in keys.items())
        if not key_index or key_index[0][0] != 0:  # decode from the very start for early frames
            key_index.insert(0, (0, None))
        self._key_frames = [k for k, _ in key_index]
        self._key_seek = [ts for _, ts in key_index]

    def _key_before(self, index: int) -> int:
        if not self._seek_enabled:
            return 0
        k = bisect.bisect_right(self._key_frames, index) - 1
        while k in self._seek_from:
            k = self._seek_from[k]
        return k

    def _seek(self, k: int) -> None:
        ts = self._key_seek[k]
        self._close_iter()
        if ts is None:
            self._container.seek(0, backward=True, any_frame=False)  # container start
        else:
            self._container.seek(ts, stream=self._stream, backward=True, any_frame=False)
        # a plain function, not a method: the generator must not reference self, so that a
        # dropped backend is freed at once rather than by the cyclic GC (maybe in a fork)
        self._iter = _indexed_frames(self._container, self._stream, self._index_of)
        self._pos = None

    def _close_iter(self) -> None:
        if self._iter is not None:
            self._iter.close()  # type: ignore[attr-defined]
            self._iter = None

    def _to_rgb(self, frame) -> np.ndarray:
        rgb = self._reformatter.reformat(frame, format="rgb24", threads=self._threads)
        plane = rgb.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(rgb.height, plane.line_size)
        return rows[:, : rgb.width * 3].reshape(rgb.height, rgb.width, 3)

    def decode(self, indices: list[int]) -> Tensor:
        out: list[np.ndarray | None] = [None]  # the (m, H, W, 3) result, allocated at the first frame
        j = 0
        try:
            while j < len(indices):
                target = indices[j]
                k = self._key_before(target)
                if self._pos is None or target < self._pos or self._key_frames[k] > self._pos:
                    self._seek(k)
                    first = True
                else:
                    first = False
                j = self._run(indices, j, out, k, first)
        except BaseException:
            self._pos = None  # the decoder's state is unknown: seek next time
            raise
        return torch.from_numpy(out[0])  # type: ignore[arg-type]

    def _run(self, indices: list[int], j: int, out: list, k: int, first: bool) -> int:
        assert self._iter is not None
        for index, frame in self._iter:
            target = indices[j]
            if index > target:  # the seek landed after the target: use an earlier key frame
                if not first or k == 0:
                    raise VideoDecodeError(self.path, f"pyav: frame {target} could not be decoded")
                self._seek_from[k] = k - 1
                self._pos = None
                return j
            first = False
            self._pos = index + 1
            if index == target:
                rgb = self._to_rgb(frame)
                if out[0] is None:
                    out[0] = np.empty((len(indices), *rgb.shape), dtype=np.uint8)
                elif out[0].shape[1:] != rgb.shape:
                    raise VideoDecodeError(self.path, f"pyav: the frame size changes at frame {index}")
                # numpy, not torch: torch's multi-threaded CPU copy was 15x slower on a busy 2-core machine
                np.copyto(out[0][j], rgb)
                j += 1
                if j == len(indices):
                    return j
                if self._key_frames[self._key_before(indices[j])] > self._pos:
                    return j  # a key frame closer to the next target: seek there
        self._pos = None
        raise VideoDecodeError(self.path, f"pyav: the stream ended before frame {indices[j]}")

    def close(self) -> None:
        self._close_iter()
        self._container.close()


def _indexed_frames(container, stream, index_of: dict[int, int]):
    """(frame index, frame) of the decoded frames from the container's current position."""
    for packet in container.demux(stream):
        for frame in packet.decode():
            ts = frame.pts if frame.pts is not None else getattr(frame, "dts", None)
            index = index_of.get(ts)
            if index is not None:
                yield index, frame


def _pick_av_stream(container, path: Path, stream: int | None):
    videos = list(container.streams.video)
    if not videos:
        raise VideoDecodeError(path, "no video stream in this file")
    if stream is None:
        return container.streams.best("video")
    for s in videos:
        if s.index == stream:
            return s
    raise ValueError(f"{path}: stream {stream} is not a video stream; video streams: {[s.index for s in videos]}")


def _probe_streams(path: Path) -> tuple[int, list[int]]:
    """(best video stream index, all video stream indices) read with PyAV from the header."""
    import av

    with av.open(str(path)) as container:
        videos = [s.index for s in container.streams.video]
        if not videos:
            raise VideoDecodeError(path, "no video stream in this file")
        return container.streams.best("video").index, videos


class _DecordBackend(_Backend):
    name = "decord"

    def __init__(self, path: Path, num_threads: int):
        import decord

        self.path = path
        self._vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=max(0, num_threads))
        self.num_frames = len(self._vr)
        self.fps = float(self._vr.get_avg_fps())
        self._size: tuple[int, int] | None = None

    @property
    def size(self):  # type: ignore[override]
        if self._size is None:
            shape = self._vr.get_batch([0]).shape
            self._size = (int(shape[1]), int(shape[2]))
        return self._size

    def decode(self, indices: list[int]) -> Tensor:
        frames = torch.from_numpy(self._vr.get_batch(indices).asnumpy())
        self._size = (frames.shape[1], frames.shape[2])
        return frames

    def close(self) -> None:
        del self._vr


class _TorchCodecBackend(_Backend):
    name = "torchcodec"

    def __init__(self, path: Path, device: torch.device, stream: int | None, num_threads: int):
        ok, why = torchcodec_status()
        if not ok:
            raise RuntimeError(why)
        from torchcodec.decoders import VideoDecoder

        self.device = device
        self._decoder = VideoDecoder(
            str(path),
            stream_index=stream,
            dimension_order="NHWC",
            num_ffmpeg_threads=max(0, num_threads),
            device=str(device),
            seek_mode="exact",
        )
        self.stream_index = self._decoder.stream_index
        self.video_streams: list[int] | None
        try:  # private API: when it moves, VideoReader asks PyAV instead
            from torchcodec._core import VideoStreamMetadata, get_container_metadata

            streams = get_container_metadata(self._decoder._decoder).streams
            self.video_streams = [m.stream_index for m in streams if isinstance(m, VideoStreamMetadata)]
        except Exception:
            self.video_streams = None
        meta = self._decoder.metadata
        self.num_frames = len(self._decoder)
        self.fps = float(meta.average_fps_from_header or meta.average_fps or 0.0)
        self.size = (int(meta.height), int(meta.width))

    def decode(self, indices: list[int]) -> Tensor:
        return self._decoder.get_frames_at(indices=indices).data

    def close(self) -> None:
        del self._decoder


# PyNvVideoCodec decoders cost ~280 ms to create: closed ones wait here, per GPU, and are
# re-pointed at the next file with reconfigure_decoder().
_NVDEC_POOL: dict[int, list[Any]] = {}
_NVDEC_POOL_SIZE = 4


class _NvdecBackend(_Backend):
    name = "nvdec"

    def __init__(self, path: Path, device: torch.device):
        import PyNvVideoCodec as nvc

        self.device = device
        self._gpu = device.index if device.index is not None else torch.cuda.current_device()
        self._decoder = None
        pool = _NVDEC_POOL.setdefault(self._gpu, [])
        while pool and self._decoder is None:
            decoder = pool.pop()
            try:
                decoder.reconfigure_decoder(str(path))
                if len(decoder) > 0:
                    self._decoder = decoder
            except Exception:
                pass
        if self._decoder is None:
            self._decoder = nvc.SimpleDecoder(
                str(path), gpu_id=self._gpu, use_device_memory=True, output_color_type=nvc.OutputColorType.RGB
            )
        meta = self._decoder.get_stream_metadata()
        self.num_frames = len(self._decoder)
        if self.num_frames <= 0:
            raise RuntimeError("PyNvVideoCodec found no frames (no frame count in the header?)")
        fps = float(getattr(meta, "average_fps", 0.0) or 0.0)
        duration = float(getattr(meta, "duration", 0.0) or 0.0)
        self.fps = fps if fps > 0 else (self.num_frames / duration if duration > 0 else 0.0)
        height, width = getattr(meta, "height", 0), getattr(meta, "width", 0)
        self.size = (int(height), int(width)) if height and width else tuple(self.decode([0]).shape[1:3])

    def decode(self, indices: list[int]) -> Tensor:
        # SimpleDecoder drops duplicates and bad indices: VideoReader only sends sorted unique valid ones
        frames = self._decoder.get_batch_frames_by_index(indices)
        if len(frames) != len(indices):
            raise RuntimeError(f"PyNvVideoCodec returned {len(frames)} frames for {len(indices)} indices")
        with torch.cuda.device(self._gpu):
            tensors = []
            for frame in frames:
                try:
                    tensors.append(torch.from_dlpack(frame))
                except Exception:  # older releases: CUDA array interface
                    tensors.append(torch.as_tensor(frame, device=self.device))
            return torch.stack(tensors)  # copies out of the decoder's surfaces

    def close(self) -> None:
        if self._decoder is not None:
            pool = _NVDEC_POOL.setdefault(self._gpu, [])
            if len(pool) < _NVDEC_POOL_SIZE:
                pool.append(self._decoder)
            self._decoder = None


class _FrameFolderBackend(_Backend):
    name = "frames"

    def __init__(self, path: Path, device: torch.device, fps: float | None):
        self.path = path
        self.files = list_frame_files(path)
        if not self.files:
            raise VideoDecodeError(path, f"no image frames ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        self.num_frames = len(self.files)
        self.fps = float(fps) if fps else DEFAULT_FOLDER_FPS
        self._size: tuple[int, int] | None = None
        self._target = device
        self._gpu_jpeg = device.type == "cuda" and all(p.suffix.lower() in (".jpg", ".jpeg") for p in self.files)
        if self._gpu_jpeg:
            self.device = device

    @property
    def size(self):  # type: ignore[override]
        if self._size is None:
            from PIL import Image

            try:
                with Image.open(self.files[0]) as image:
                    self._size = (image.height, image.width)
            except Exception as error:
                raise VideoDecodeError(self.files[0], f"cannot read image: {error}") from error
        return self._size

    def _read(self, path: Path) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"))
        except Exception as error:
            raise VideoDecodeError(path, f"cannot read image: {error}") from error

    def decode(self, indices: list[int]) -> Tensor:
        if self._gpu_jpeg:  # nvJPEG: the pixels never touch host memory
            from torchvision.io import ImageReadMode, decode_jpeg

            data = [torch.frombuffer(bytearray(self.files[i].read_bytes()), dtype=torch.uint8) for i in indices]
            images = decode_jpeg(data, mode=ImageReadMode.RGB, device=self._target)
            return torch.stack([img.permute(1, 2, 0) for img in images])
        frames = [self._read(self.files[i]) for i in indices]
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise VideoDecodeError(self.path, f"frames differ in size: {sorted(shapes)}")
        self._size = frames[0].shape[:2]
        return torch.from_numpy(np.stack(frames))
