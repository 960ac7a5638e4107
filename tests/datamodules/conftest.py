"""Generated test videos whose frames encode their own index.

Each frame carries its index as a 16-bit code of black/white 8x8 blocks in its top 16 rows
(so exact frame identity survives lossy coding) and a smoothly moving colour pattern below
(so backends' colour conversion can be compared).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

BLOCK = 8
BITS = 16


def frame_image(index: int, height: int = 48, width: int = 64, offset: int = 0) -> np.ndarray:
    """RGB uint8 (H, W, 3) frame that encodes ``index + offset``."""
    value = index + offset
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.empty((height, width, 3), np.float32)
    img[..., 0] = 128 + 100 * np.sin((x + 2 * index) / 9.0)
    img[..., 1] = 128 + 100 * np.cos((y + index) / 7.0)
    img[..., 2] = 128 + 80 * np.sin((x + y - 3 * index) / 11.0)
    img = img.clip(0, 255).astype(np.uint8)
    per_row = width // BLOCK
    for bit in range(BITS):
        r, c = divmod(bit, per_row)
        on = (value >> bit) & 1
        img[r * BLOCK:(r + 1) * BLOCK, c * BLOCK:(c + 1) * BLOCK] = 255 if on else 0
    return img


def read_index(frame) -> int:
    """The index encoded in a decoded (H, W, 3) frame (numpy array or tensor)."""
    frame = np.asarray(frame.cpu() if hasattr(frame, "cpu") else frame).astype(np.float32)
    per_row = frame.shape[1] // BLOCK
    value = 0
    for bit in range(BITS):
        r, c = divmod(bit, per_row)
        block = frame[r * BLOCK + 2:(r + 1) * BLOCK - 2, c * BLOCK + 2:(c + 1) * BLOCK - 2]
        if block.mean() > 128:
            value |= 1 << bit
    return value


def write_video(
    path,
    num_frames: int = 60,
    height: int = 48,
    width: int = 64,
    fps: int = 30,
    gop: int = 10,
    bframes: int = 0,
    codec: str = "libx264",
    second_stream: tuple[int, int] | None = None,
) -> Path:
    """Write a test video with PyAV. ``second_stream=(h, w)`` adds a second video stream whose
    frames encode ``index + 1000``."""
    import av

    path = Path(path)
    with av.open(str(path), "w") as container:
        specs = [(height, width, 0)] + ([(*second_stream, 1000)] if second_stream else [])
        streams = []
        for h, w, offset in specs:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.codec_context.gop_size = gop
            if codec == "libx264":
                stream.codec_context.max_b_frames = bframes
                stream.options = {
                    "crf": "12", "preset": "fast" if bframes else "ultrafast", "bf": str(bframes),
                    "keyint": str(gop), "min-keyint": str(gop), "scenecut": "0",
                }
            streams.append((stream, h, w, offset))
        for i in range(num_frames):
            for stream, h, w, offset in streams:
                frame = av.VideoFrame.from_ndarray(frame_image(i, h, w, offset), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
        for stream, *_ in streams:
            for packet in stream.encode():
                container.mux(packet)
    return path


def write_frame_folder(folder, num_frames: int = 20, height: int = 48, width: int = 64, suffix: str = ".png",
                       digits: int = 3) -> Path:
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num_frames):
        name = f"{i:0{digits}d}{suffix}" if digits else f"{i}{suffix}"
        Image.fromarray(frame_image(i, height, width)).save(folder / name)
    return folder


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def h264_video(video_dir) -> Path:
    """60 frames, 64x48, 30 fps, key frame every 10 frames, no B-frames."""
    return write_video(video_dir / "gop10.mp4")


@pytest.fixture(scope="session")
def h264_bframes_video(video_dir) -> Path:
    """Same content with 3 B-frames between references, in Matroska (no frame count in the header)."""
    return write_video(video_dir / "gop10_b3.mkv", bframes=3)


@pytest.fixture(scope="session")
def h264_bframes_mp4(video_dir) -> Path:
    """B-frames in MP4 (an edit list shifts the first frame's timestamps)."""
    return write_video(video_dir / "gop10_b3.mp4", bframes=3)


@pytest.fixture(scope="session")
def vt():
    """The helpers above, for test modules (which cannot import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(frame_image=frame_image, read_index=read_index, write_video=write_video,
                           write_frame_folder=write_frame_folder)
