"""Video decoding behind one interface: ``VideoReader(path).get_frames(indices)``.

``VideoReader(path, backend="auto", device="cpu", stream=None)`` opens a video file (or a
folder of frame images) and returns exactly the frames asked for, as a uint8 tensor of
shape ``(T, H, W, 3)`` (RGB) on ``device``.

Frame indices
    Index ``i`` is the i-th frame in presentation order. Indices may come in any order and
    may repeat; the result follows the request (``out[k]`` is frame ``indices[k]``).
    Negative or out-of-range indices raise ``IndexError`` naming the path and the valid
    range; non-integers raise ``TypeError``.

Streams
    ``stream=None`` (the default, identical for every backend) is the container's *best*
    video stream as FFmpeg's ``av_find_best_stream`` picks it, which for ordinary files
    (one video stream) is that stream. For files with several video streams the choice
    of PyAV's FFmpeg is authoritative: torchcodec (which may link another FFmpeg) is then
    pointed at PyAV's pick. ``stream=k`` selects the stream whose absolute index in the
    container is ``k`` (the index ``ffprobe`` prints, ``av.open(p).streams[k]``); it must be
    a video stream, else ``ValueError``. ``decord`` and ``nvdec`` cannot be told a stream
    and pick with their own FFmpeg (decord picked another stream than PyAV in our tests),
    so they only read files with a single video stream: ``auto`` skips them for other
    files and naming them explicitly raises ``ConfigError``.

Backends (``available_backends(device)`` lists those usable here)
    ``torchcodec``  PyTorch's decoder, CPU and CUDA (NVDEC); needs FFmpeg 4-9 shared
                    libraries (``apt-get install ffmpeg``; see ``torchcodec_status()``).
    ``decord``      CPU only; bundles FFmpeg 4.1, no AV1, no stream choice.
    ``nvdec``       PyNvVideoCodec, NVIDIA GPUs with only the driver; decoders are pooled
                    and re-pointed at new files with ``reconfigure_decoder``.
    ``pyav``        the reference: widest codec support; seeks to the key frame before each
                    run of requested frames and decodes forward with FFmpeg threads.
    ``auto`` tries, in order, ``AUTO_ORDER[device type]`` (chosen by measurement with
    ``polyvision benchmark decode``) and falls back, with a ``VideoBackendFallbackWarning``,
    when a backend cannot open or decode a file. CPU backends serve a CUDA device by
    decoding on the CPU and copying.

Frame folders (UCSD Ped2, Avenue, ShanghaiTech, FaceForensics++ frame dumps) are read by
the ``frames`` backend whatever ``backend`` says: the images (jpg, jpeg, png, tif, tiff,
bmp) in natural sort order are the frames; ``fps`` comes from the ``fps`` argument
(default ``DEFAULT_FOLDER_FPS``).

A file that no backend can read raises ``VideoDecodeError`` (a ``DataError``, so
``SkippingDataset`` can skip it) naming the path and the reason. ``DecoderCache`` keeps
readers open across calls (and across batches on the GPU path), one cache per process.
"""
from __future__ import annotations

import gc
import operator
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from polyvision.datamodules.video.backends import (
    BACKENDS,
    VideoBackendFallbackWarning,
    VideoDecodeError,
    _auto_candidates,
    _Backend,
    _DecordBackend,
    _FrameFolderBackend,
    _NvdecBackend,
    _probe_streams,
    _PyAVBackend,
    _StreamChoiceUnsupported,
    _TorchCodecBackend,
    backend_status,
)
from polyvision.errors import ConfigError
from torch import Tensor

# --------------------------------------------------------------------------- reader


def _decode_device(name: str, device: torch.device) -> torch.device:
    """Where backend ``name`` decodes for a reader on ``device``: GPU backends on the GPU,
    CPU backends on the CPU (their frames are then copied to ``device``)."""
    if device.type == "cuda" and name in ("torchcodec", "nvdec"):
        return device
    return torch.device("cpu")


def _as_index_list(indices) -> list[int]:
    if isinstance(indices, Tensor):
        if indices.dtype.is_floating_point or indices.dtype == torch.bool or indices.is_complex():
            raise TypeError(f"frame indices must be integers, got a {indices.dtype} tensor")
        return [int(i) for i in indices.reshape(-1).tolist()]
    if isinstance(indices, np.ndarray):
        if not np.issubdtype(indices.dtype, np.integer):
            raise TypeError(f"frame indices must be integers, got a {indices.dtype} array")
        return [int(i) for i in indices.reshape(-1).tolist()]
    if isinstance(indices, (int, np.integer)):
        raise TypeError("get_frames takes a sequence of frame indices; wrap a single index in a list")
    out = []
    for i in indices:
        if isinstance(i, bool):
            raise TypeError("frame indices must be integers, got a bool")
        try:
            out.append(operator.index(i))
        except TypeError:
            raise TypeError(f"frame indices must be integers, got {i!r}") from None
    return out


class VideoReader:
    """Random access to the frames of one video file or frame folder (see the module docstring).

    Args:
        path: a video file, or a folder of frame images.
        backend: ``"auto"`` or one of ``BACKENDS``.
        device: where ``get_frames`` returns frames (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        stream: absolute stream index; ``None`` is the best video stream (FFmpeg's choice).
        num_threads: decoder threads (0: FFmpeg decides). Use 1 in DataLoader workers that
            already fill the CPU cores.
        fps: frame rate of a frame folder (ignored for files).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        backend: str = "auto",
        device: str | torch.device = "cpu",
        stream: int | None = None,
        *,
        num_threads: int = 0,
        fps: float | None = None,
    ):
        self.path = Path(path)
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None and torch.cuda.is_available():
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.stream = stream
        self.num_threads = num_threads
        if backend != "auto" and backend not in BACKENDS:
            raise ConfigError(f"unknown video backend {backend!r}; choose one of {', '.join(BACKENDS)} or 'auto'")
        if not self.path.exists():
            raise VideoDecodeError(self.path, "no such file or directory")
        self._auto = backend == "auto"
        self._backend: _Backend
        if self.path.is_dir():
            if stream is not None:
                raise ValueError(f"{self.path}: a frame folder has no streams to select (stream={stream})")
            self._backend = _FrameFolderBackend(self.path, self.device, fps)
            self._candidates: list[str] = []
            self._errors: list[str] = []
            return
        # Streams (see the module docstring): PyAV is asked only when needed, since an
        # av.open() costs ~40 ms at 1080p (FFmpeg decodes a few frames to probe a stream).
        self._probe: tuple[int, list[int]] | None = None  # (best, video streams) per PyAV
        if stream is not None:
            best, videos = self._streams()
            if stream not in videos:
                raise ValueError(f"{self.path}: stream {stream} is not a video stream; video streams: {videos}")
        if self._auto:
            self._candidates = list(_auto_candidates(self.device))
            if not self._candidates:
                raise ConfigError(f"no video backend is available for device {self.device}")
        else:
            if self.device.type == "cuda" and not torch.cuda.is_available():
                raise ConfigError(f"{self.path}: device {self.device} requested but CUDA is not available")
            ok, why = backend_status(backend, _decode_device(backend, self.device))
            if not ok:
                raise ConfigError(f"video backend {backend!r} cannot decode on {self.device}: {why}")
            self._candidates = [backend]
        self._errors = []
        self._open_next()

    def _streams(self) -> tuple[int, list[int]]:
        """(best video stream, all video streams) as PyAV's FFmpeg sees them."""
        if self._probe is None:
            try:
                self._probe = _probe_streams(self.path)
            except VideoDecodeError:
                raise
            except Exception as error:
                raise VideoDecodeError(self.path, f"cannot read the container: {error}") from error
        return self._probe

    def _open(self, name: str) -> _Backend:
        decode_device = _decode_device(name, self.device)
        if name == "pyav":
            backend = _PyAVBackend(self.path, self.stream, self.num_threads)
            self._probe = (backend.best_stream, backend.video_streams)
            return backend
        if name == "torchcodec":
            backend = _TorchCodecBackend(self.path, decode_device, self.stream, self.num_threads)
            if self.stream is None and (backend.video_streams is None or len(backend.video_streams) > 1):
                try:  # several video streams: the default is the one PyAV's FFmpeg picks
                    best = self._streams()[0]
                except VideoDecodeError:
                    best = backend.stream_index
                if best != backend.stream_index:
                    backend.close()
                    backend = _TorchCodecBackend(self.path, decode_device, best, self.num_threads)
            return backend
        # decord and PyNvVideoCodec pick a stream with their own FFmpeg and cannot be told
        # which: use them only for files with a single video stream
        try:
            videos: list[int] | None = self._streams()[1]
        except VideoDecodeError:
            videos = None  # PyAV cannot parse it; maybe they can
        if videos is not None and len(videos) > 1:
            raise _StreamChoiceUnsupported(
                f"{self.path}: the {name} backend cannot choose among the video streams {videos} of this "
                "file; use backend='pyav' or 'torchcodec'"
            )
        if name == "decord":
            return _DecordBackend(self.path, self.num_threads)
        return _NvdecBackend(self.path, decode_device)

    def _open_next(self) -> None:
        while self._candidates:
            name = self._candidates.pop(0)
            try:
                self._backend = self._open(name)
            except _StreamChoiceUnsupported as error:
                if not self._auto:
                    raise ConfigError(str(error)) from None
                continue
            except Exception as error:
                reason = error.reason if isinstance(error, VideoDecodeError) else f"{type(error).__name__}: {error}"
                self._errors.append(f"{name}: {reason}")
                if not self._auto:
                    raise VideoDecodeError(self.path, f"{name} cannot open it ({reason})") from error
                continue
            if self._errors:
                warnings.warn(
                    f"{self.path}: {'; '.join(self._errors)}; using {name}", VideoBackendFallbackWarning, stacklevel=3
                )
            return
        raise VideoDecodeError(self.path, "no backend can read it (" + "; ".join(self._errors) + ")")

    # -- metadata
    @property
    def backend(self) -> str:
        """Name of the backend in use (``"frames"`` for a frame folder)."""
        return self._backend.name

    def __len__(self) -> int:
        return self._backend.num_frames

    @property
    def num_frames(self) -> int:
        return self._backend.num_frames

    @property
    def fps(self) -> float:
        """Average frame rate from the stream header (frames per second)."""
        return self._backend.fps

    @property
    def duration(self) -> float:
        """``len(self) / fps`` in seconds."""
        return self.num_frames / self.fps if self.fps else 0.0

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the frames."""
        return tuple(self._backend.size)  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"VideoReader({str(self.path)!r}, backend={self.backend!r}, device={str(self.device)!r}, frames={len(self)})"

    # -- frames
    def get_frames(self, indices: Sequence[int] | Tensor | np.ndarray) -> Tensor:
        """Frames ``indices`` (any order, repeats allowed) as uint8 ``(T, H, W, 3)`` on ``self.device``."""
        wanted = _as_index_list(indices)
        n = self.num_frames
        for i in wanted:
            if not 0 <= i < n:
                raise IndexError(
                    f"{self.path}: frame index {i} is out of range; valid indices are 0..{n - 1} ({n} frames)"
                )
        if not wanted:
            h, w = self.size
            return torch.empty((0, h, w, 3), dtype=torch.uint8, device=self.device)
        unique = sorted(set(wanted))
        frames = self._decode(unique)
        if frames.device != self.device:
            frames = frames.to(self.device)
        if unique != wanted:
            position = {v: k for k, v in enumerate(unique)}
            order = [position[i] for i in wanted]
            if frames.device.type == "cpu":  # numpy gathers without torch's thread pool
                frames = torch.from_numpy(frames.numpy()[order])
            else:
                frames = frames.index_select(0, torch.tensor(order, device=frames.device))
        return frames

    def _decode(self, unique: list[int]) -> Tensor:
        while True:
            try:
                frames = self._backend.decode(unique)
                if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[0] != len(unique) or frames.shape[3] != 3:
                    raise RuntimeError(f"got frames of shape {tuple(frames.shape)} and dtype {frames.dtype}")
                return frames
            except Exception as error:
                reason = error.reason if isinstance(error, VideoDecodeError) else f"{type(error).__name__}: {error}"
                self._errors.append(f"{self.backend} failed to decode frames: {reason}")
                if not self._auto or not self._candidates:
                    if isinstance(error, VideoDecodeError):
                        raise
                    raise VideoDecodeError(self.path, f"{self.backend} failed to decode frames ({reason})") from error
                self._backend.close()
                self._open_next()

    def get_frame(self, index: int) -> Tensor:
        """One frame, ``(H, W, 3)``."""
        return self.get_frames([index])[0]

    def close(self) -> None:
        backend = getattr(self, "_backend", None)
        if backend is not None:
            backend.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self):
        raise TypeError("VideoReader holds an open decoder and cannot be pickled; pass the path instead")


# --------------------------------------------------------------------------- cache and fork safety
# A forked process (a DataLoader worker) inherits its parent's open decoders but not their
# threads: freeing one there (FFmpeg destroys the condition variables of threads that do
# not exist in the child) can hang forever. So a child never frees inherited decoders
# (DecoderCache parks them here), and the parent collects cyclic garbage before forking,
# so that no dropped decoder is left for a child's garbage collector to free.
_INHERITED: list[Any] = []


def _collect_before_fork() -> None:
    gc.collect()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_collect_before_fork)


class DecoderCache:
    """An LRU of open ``VideoReader`` s keyed by (path, backend, device, stream, options).

    Reusing a reader avoids re-opening the file (torchcodec scans it, PyNvVideoCodec creates
    a hardware decoder) and lets PyAV continue decoding from where it stopped. A cache
    belongs to one process: after a fork it starts empty, and it pickles as empty (decoders
    must never be shared between DataLoader workers).
    """

    def __init__(self, max_open: int = 8):
        if max_open < 1:
            raise ValueError(f"max_open must be >= 1, got {max_open}")
        self.max_open = max_open
        self._readers: OrderedDict[tuple, VideoReader] = OrderedDict()
        self._pid = os.getpid()

    def get(
        self,
        path: str | os.PathLike,
        backend: str = "auto",
        device: str | torch.device = "cpu",
        stream: int | None = None,
        **options: Any,
    ) -> VideoReader:
        if os.getpid() != self._pid:  # forked: the parent's decoders are not ours
            _INHERITED.append(self._readers)
            self._readers = OrderedDict()
            self._pid = os.getpid()
        key = (str(path), backend, str(torch.device(device)), stream, tuple(sorted(options.items())))
        reader = self._readers.get(key)
        if reader is not None:
            self._readers.move_to_end(key)
            return reader
        reader = VideoReader(path, backend=backend, device=device, stream=stream, **options)
        self._readers[key] = reader
        while len(self._readers) > self.max_open:
            _, old = self._readers.popitem(last=False)
            old.close()
        return reader

    def __len__(self) -> int:
        return len(self._readers)

    def close(self) -> None:
        while self._readers:
            _, reader = self._readers.popitem()
            reader.close()

    def __getstate__(self):
        return {"max_open": self.max_open}

    def __setstate__(self, state):
        self.__init__(state["max_open"])
