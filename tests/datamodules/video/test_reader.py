"""VideoReader correctness on generated videos: exact frame identity per backend (frames
encode their own index), parity with PyAV, streams, frame folders and every error case."""
from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
import torch
from polyvision.datamodules.video import backends as backends_module
from polyvision.datamodules.video import reader as reader_module
from polyvision.datamodules.video.backends import (
    VideoBackendFallbackWarning,
    VideoDecodeError,
    available_backends,
    backend_status,
    list_frame_files,
    torchcodec_status,
)
from polyvision.datamodules.video.reader import DecoderCache, VideoReader
from polyvision.errors import ConfigError, DataError


def _backend(name: str, device: str = "cpu"):
    ok, why = backend_status(name, device)
    return pytest.param(name, marks=pytest.mark.skipif(not ok, reason=f"{name}: {why}"), id=name)


CPU_BACKENDS = [_backend(n) for n in ("pyav", "decord", "torchcodec")]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")


def _indices(n: int, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(i) for i in rng.integers(0, n, 20)] + [n - 1, 0, 7, 7, n - 1, 3, 3, 3]


def _mad(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.cpu().float() - b.cpu().float()).abs().mean().item()


# --------------------------------------------------------------------------- backends vs PyAV


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("fixture", ["h264_video", "h264_bframes_video", "h264_bframes_mp4"])
def test_backend_matches_pyav(backend, fixture, request, vt):
    path = request.getfixturevalue(fixture)
    ref = VideoReader(path, backend="pyav")
    reader = VideoReader(path, backend=backend)
    assert reader.backend == backend
    assert len(reader) == len(ref) == 60
    assert reader.fps == pytest.approx(ref.fps) == pytest.approx(30.0)
    assert reader.duration == pytest.approx(2.0)
    assert reader.size == ref.size == (48, 64)

    wanted = _indices(len(reader))
    frames = reader.get_frames(wanted)
    assert frames.dtype == torch.uint8 and frames.shape == (len(wanted), 48, 64, 3)
    assert frames.device == torch.device("cpu")
    assert [vt.read_index(f) for f in frames] == wanted
    assert _mad(frames, ref.get_frames(wanted)) <= 2.0
    # and close to what was encoded
    assert _mad(frames[0], torch.from_numpy(vt.frame_image(wanted[0]))) <= 6.0


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_sequential_and_backward_seeks(backend, h264_bframes_video, vt):
    reader = VideoReader(h264_bframes_video, backend=backend)
    everything = reader.get_frames(range(len(reader)))
    assert [vt.read_index(f) for f in everything] == list(range(60))
    # last frame, then the first, then across a key frame (every 10 frames), then backwards
    for request in ([59], [0], [9, 10, 11], [58, 2, 31], [25], [24], list(range(40, 56))):
        frames = reader.get_frames(request)
        assert [vt.read_index(f) for f in frames] == request
        assert torch.equal(frames, everything[request])


def test_pyav_windows_continue_without_seeking(h264_video, monkeypatch, vt):
    reader = VideoReader(h264_video, backend="pyav")
    seeks = []
    backend = reader._backend
    original = backend._seek
    monkeypatch.setattr(backend, "_seek", lambda k: (seeks.append(k), original(k)))
    for start in range(0, 60, 4):  # consecutive windows: one seek for the whole video
        assert [vt.read_index(f) for f in reader.get_frames(range(start, start + 4))] == list(range(start, start + 4))
    assert seeks == [0]
    reader.get_frames([35])  # jumps over key frames 10, 20, 30: seeks to 30
    assert seeks[-1] == 3


def test_pyav_recovers_when_a_seek_overshoots(h264_video, vt):
    reader = VideoReader(h264_video, backend="pyav")
    backend = reader._backend
    assert backend._key_frames == [0, 10, 20, 30, 40, 50]
    backend._key_seek[3] = backend._key_seek[4]  # a seek "to frame 30" now lands on 40
    assert [vt.read_index(f) for f in reader.get_frames([35, 36])] == [35, 36]
    assert backend._seek_from == {3: 2}  # remembered: frames 30-39 are reached from key frame 20
    assert [vt.read_index(f) for f in reader.get_frames([31])] == [31]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_index_types_and_empty(backend, h264_video, vt):
    reader = VideoReader(h264_video, backend=backend)
    for request in (np.array([5, 1, 5]), torch.tensor([5, 1, 5]), (5, 1, 5), range(5, 0, -4)):
        frames = reader.get_frames(request)
        assert [vt.read_index(f) for f in frames] == [int(i) for i in request]
    empty = reader.get_frames([])
    assert empty.shape == (0, 48, 64, 3) and empty.dtype == torch.uint8
    assert vt.read_index(reader.get_frame(42)) == 42


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_bad_indices_raise(backend, h264_video):
    reader = VideoReader(h264_video, backend=backend)
    for bad in ([60], [-1], [0, 5, 1000]):
        with pytest.raises(IndexError, match=r"0\.\.59") as info:
            reader.get_frames(bad)
        assert str(h264_video) in str(info.value)
    for bad in ([1.5], [True], np.array([1.0]), torch.tensor([0.0]), 3):
        with pytest.raises(TypeError):
            reader.get_frames(bad)


def test_auto_picks_an_available_backend(h264_video, vt):
    reader = VideoReader(h264_video)
    assert reader.backend == available_backends("cpu")[0]
    assert "pyav" in available_backends("cpu")
    assert [vt.read_index(f) for f in reader.get_frames([3, 2, 1])] == [3, 2, 1]


def test_available_backends_and_status():
    assert backend_status("nvdec", "cpu")[0] is False
    assert backend_status("pyav", "cpu") == (True, "ok")
    if not torch.cuda.is_available():
        assert available_backends("cuda") == []
        assert backend_status("torchcodec", "cuda") == (False, "CUDA is not available")
    with pytest.raises(ConfigError, match="unknown video backend"):
        backend_status("opencv")


def test_torchcodec_status_explains_missing_ffmpeg(monkeypatch):
    fake = types.ModuleType("torchcodec")
    fake.ffmpeg_major_version = None
    monkeypatch.setitem(sys.modules, "torchcodec", fake)
    torchcodec_status.cache_clear()
    try:
        ok, why = torchcodec_status()
    finally:
        torchcodec_status.cache_clear()
    assert not ok
    assert "FFmpeg" in why and "apt-get install ffmpeg" in why and "pyav" in why


# --------------------------------------------------------------------------- streams


@pytest.fixture(scope="module")
def two_streams(video_dir, vt):
    # the second stream is bigger (higher bit rate): decord's own FFmpeg picks it by default
    return vt.write_video(video_dir / "two_streams.mp4", num_frames=30, second_stream=(96, 128))


@pytest.mark.parametrize("backend", [_backend("pyav"), _backend("torchcodec")])
def test_stream_selection(backend, two_streams, vt):
    import av

    with av.open(str(two_streams)) as container:
        best = container.streams.best("video").index
    default = VideoReader(two_streams, backend=backend)
    explicit = VideoReader(two_streams, backend=backend, stream=best)
    assert default.size == explicit.size
    assert [vt.read_index(f) for f in default.get_frames([4, 29])] == [vt.read_index(f) for f in explicit.get_frames([4, 29])]
    first = VideoReader(two_streams, backend=backend, stream=0)
    second = VideoReader(two_streams, backend=backend, stream=1)
    assert first.size == (48, 64) and second.size == (96, 128)
    assert [vt.read_index(f) for f in first.get_frames([4, 29])] == [4, 29]
    assert [vt.read_index(f) for f in second.get_frames([4, 29, 4])] == [1004, 1029, 1004]
    assert len(second) == 30


def test_default_stream_agrees_across_backends(two_streams, vt):
    auto = VideoReader(two_streams)
    assert auto.backend not in ("decord", "nvdec")  # they cannot be told which stream
    sizes = {VideoReader(two_streams, backend=b).size for b in ("pyav", "torchcodec") if backend_status(b)[0]}
    assert sizes == {auto.size}
    assert [vt.read_index(f) for f in VideoReader(two_streams, stream=1).get_frames([7])] == [1007]


@pytest.mark.skipif(not backend_status("torchcodec")[0], reason="torchcodec or FFmpeg missing")
def test_torchcodec_follows_pyavs_default_stream(two_streams, monkeypatch, vt):
    """With several video streams, PyAV's choice is the default for every backend."""
    monkeypatch.setattr(reader_module, "_probe_streams", lambda path: (1, [0, 1]))
    reader = VideoReader(two_streams, backend="torchcodec")
    assert reader.size == (96, 128) and vt.read_index(reader.get_frame(3)) == 1003


def test_stream_errors(two_streams, h264_video):
    with pytest.raises(ValueError, match="not a video stream"):
        VideoReader(two_streams, backend="pyav", stream=5)
    if backend_status("decord")[0]:
        with pytest.raises(ConfigError, match="decord"):
            VideoReader(two_streams, backend="decord")
        with pytest.raises(ConfigError, match="decord"):
            VideoReader(two_streams, backend="decord", stream=1)
        reader = VideoReader(h264_video, backend="decord", stream=0)  # the only stream is fine
        assert len(reader) == 60


# --------------------------------------------------------------------------- errors and fallback


def test_missing_file(tmp_path):
    path = tmp_path / "nope.mp4"
    with pytest.raises(VideoDecodeError, match="nope.mp4") as info:
        VideoReader(path)
    assert isinstance(info.value, DataError) and info.value.path == str(path)
    assert "no such file" in str(info.value)
    assert pickle.loads(pickle.dumps(info.value)).path == str(path)  # survives worker pickling


def test_unreadable_file(tmp_path):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoDecodeError, match="no backend can read it") as info:
        VideoReader(path)
    assert str(path) in str(info.value)
    for name in available_backends("cpu"):
        assert f"{name}:" in info.value.reason
        with pytest.raises(VideoDecodeError, match=f"{name} cannot open it"):
            VideoReader(path, backend=name)


def test_no_video_stream(tmp_path):
    import av

    path = tmp_path / "audio.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(VideoDecodeError, match="no video stream"):
        VideoReader(path)


def test_unknown_backend(h264_video):
    with pytest.raises(ConfigError, match="unknown video backend"):
        VideoReader(h264_video, backend="opencv")
    with pytest.raises(ConfigError, match="nvdec"):
        VideoReader(h264_video, backend="nvdec")  # GPU only
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            VideoReader(h264_video, backend="pyav", device="cuda")


@pytest.fixture(scope="module")
def av1_video(video_dir, vt):
    import av

    if "libsvtav1" not in av.codecs_available:
        pytest.skip("PyAV has no AV1 encoder (libsvtav1)")
    return vt.write_video(video_dir / "av1.mp4", num_frames=20, codec="libsvtav1")


def test_auto_falls_back_when_a_backend_cannot_open(av1_video, monkeypatch, vt):
    if not backend_status("decord")[0]:
        pytest.skip("decord is not installed")
    with pytest.raises(VideoDecodeError, match="decord cannot open it"):
        VideoReader(av1_video, backend="decord")  # decord's FFmpeg 4.1 has no AV1 decoder
    monkeypatch.setitem(backends_module.AUTO_ORDER, "cpu", ("decord", "pyav"))
    with pytest.warns(VideoBackendFallbackWarning, match="decord"):
        reader = VideoReader(av1_video)
    assert reader.backend == "pyav"
    assert [vt.read_index(f) for f in reader.get_frames([19, 0, 10])] == [19, 0, 10]


def test_auto_falls_back_when_decoding_fails(h264_video, monkeypatch, vt):
    monkeypatch.setitem(backends_module.AUTO_ORDER, "cpu", ("pyav", "torchcodec", "decord"))
    reader = VideoReader(h264_video)
    assert reader.backend == "pyav"

    def broken(indices):
        raise RuntimeError("corrupt packet")

    monkeypatch.setattr(reader._backend, "decode", broken)
    if len(available_backends("cpu")) > 1:
        with pytest.warns(VideoBackendFallbackWarning, match="corrupt packet"):
            frames = reader.get_frames([8, 9])
        assert reader.backend != "pyav"
        assert [vt.read_index(f) for f in frames] == [8, 9]
    explicit = VideoReader(h264_video, backend="pyav")
    monkeypatch.setattr(explicit._backend, "decode", broken)
    with pytest.raises(VideoDecodeError, match="pyav failed to decode frames .*corrupt packet"):
        explicit.get_frames([1])


def test_reader_is_not_picklable(h264_video):
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(VideoReader(h264_video, backend="pyav"))


# --------------------------------------------------------------------------- frame folders


def test_frame_folder_png_is_exact(tmp_path, vt):
    folder = vt.write_frame_folder(tmp_path / "clip", num_frames=12, suffix=".png", digits=0)  # 0.png .. 11.png
    assert [p.name for p in list_frame_files(folder)][:3] == ["0.png", "1.png", "2.png"]
    reader = VideoReader(folder)
    assert reader.backend == "frames"
    assert len(reader) == 12 and reader.size == (48, 64)
    assert reader.fps == backends_module.DEFAULT_FOLDER_FPS
    assert VideoReader(folder, fps=10).duration == pytest.approx(1.2)
    wanted = [11, 10, 2, 2, 0]
    frames = reader.get_frames(wanted)
    assert torch.equal(frames, torch.from_numpy(np.stack([vt.frame_image(i) for i in wanted])))
    with pytest.raises(IndexError, match=r"0\.\.11"):
        reader.get_frames([12])


def test_frame_folder_matches_the_video(tmp_path, h264_video):
    """A folder of frames dumped from a video reads like the video itself."""
    from PIL import Image

    video = VideoReader(h264_video, backend="pyav")
    folder = tmp_path / "dump"
    folder.mkdir()
    for i, frame in enumerate(video.get_frames(range(len(video)))):
        Image.fromarray(frame.numpy()).save(folder / f"{i:04d}.png")
    frames = VideoReader(folder)
    assert len(frames) == len(video)
    wanted = _indices(len(video), seed=3)
    assert torch.equal(frames.get_frames(wanted), video.get_frames(wanted))


def test_frame_folder_jpg_and_grey_tif(tmp_path, vt):
    from PIL import Image

    jpg = vt.write_frame_folder(tmp_path / "jpg", num_frames=6, suffix=".jpg")
    frames = VideoReader(jpg).get_frames([5, 0])
    assert [vt.read_index(f) for f in frames] == [5, 0]
    tif = tmp_path / "ped2"
    tif.mkdir()
    for i in range(3):  # UCSD Ped2 stores grey-level tif frames
        Image.fromarray(vt.frame_image(i)[..., 0]).save(tif / f"{i + 1:03d}.tif")
    out = VideoReader(tif).get_frames([2])
    assert out.shape == (1, 48, 64, 3)
    assert torch.equal(out[0, ..., 0], out[0, ..., 2])


def test_frame_folder_errors(tmp_path, vt):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no frames here")
    with pytest.raises(VideoDecodeError, match="no image frames"):
        VideoReader(empty)
    broken = vt.write_frame_folder(tmp_path / "broken", num_frames=3, suffix=".png")
    (broken / "001.png").write_bytes(b"not a png")
    reader = VideoReader(broken)
    assert vt.read_index(reader.get_frames([0])[0]) == 0
    with pytest.raises(VideoDecodeError, match="001.png"):
        reader.get_frames([1])
    with pytest.raises(ValueError, match="no streams"):
        VideoReader(broken, stream=0)


# --------------------------------------------------------------------------- decoder cache


def test_decoder_cache_reuses_and_evicts(h264_video, h264_bframes_video, tmp_path, monkeypatch, vt):
    cache = DecoderCache(max_open=2)
    a = cache.get(h264_video, "pyav")
    assert cache.get(h264_video, "pyav") is a
    b = cache.get(h264_bframes_video, "pyav")
    folder = vt.write_frame_folder(tmp_path / "f", num_frames=2)
    cache.get(folder)
    assert len(cache) == 2 and cache.get(h264_bframes_video, "pyav") is b
    assert cache.get(h264_video, "pyav") is not a  # evicted (and closed), reopened
    restored = pickle.loads(pickle.dumps(cache))
    assert len(restored) == 0 and restored.max_open == 2
    monkeypatch.setattr(backends_module.os, "getpid", lambda: -1)  # as in a forked worker
    assert cache.get(h264_video, "pyav") is not b and len(cache) == 1
    cache.close()
    assert len(cache) == 0


# --------------------------------------------------------------------------- GPU


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("backend", [_backend("torchcodec", "cuda"), _backend("nvdec", "cuda")])
def test_gpu_backend_exact_frames(backend, h264_video, h264_bframes_video, vt):
    for path in (h264_video, h264_bframes_video):
        ref = VideoReader(path, backend="pyav")
        try:
            reader = VideoReader(path, backend=backend, device="cuda")
        except VideoDecodeError:
            if backend == "nvdec" and "mkv" in str(path):
                continue  # PyNvVideoCodec needs a frame count in the header
            raise
        assert len(reader) == len(ref) and reader.fps == pytest.approx(ref.fps)
        wanted = _indices(len(reader))
        frames = reader.get_frames(wanted)
        assert frames.is_cuda and frames.dtype == torch.uint8 and frames.shape[1:] == (48, 64, 3)
        assert [vt.read_index(f) for f in frames] == wanted
        assert _mad(frames, ref.get_frames(wanted)) <= (2.0 if backend == "torchcodec" else 8.0)


@needs_cuda
@pytest.mark.gpu
def test_gpu_auto_and_cpu_backend_on_cuda(h264_video, tmp_path, vt):
    reader = VideoReader(h264_video, device="cuda")
    assert reader.get_frames([3, 1]).is_cuda
    copied = VideoReader(h264_video, backend="pyav", device="cuda").get_frames([3, 1])
    assert copied.is_cuda and [vt.read_index(f) for f in copied] == [3, 1]
    folder = vt.write_frame_folder(tmp_path / "jpg", num_frames=4, suffix=".jpg")
    frames = VideoReader(folder, device="cuda").get_frames([3, 0])
    assert frames.is_cuda and [vt.read_index(f) for f in frames] == [3, 0]


# --------------------------------------------------------------------------- benchmark CLI


def test_benchmark_decode_runs(tmp_path, capsys):
    from polyvision.scripts.benchmark import (
        main,
        make_test_video,
        pyav_decode_from_start,
    )

    path = make_test_video(tmp_path / "bench.mp4", resolution=(128, 72), seconds=1, fps=30, gop=10)
    reader = VideoReader(path, backend="pyav")
    assert len(reader) == 30 and reader.size == (72, 128)
    assert torch.equal(pyav_decode_from_start(path, [25, 3]), reader.get_frames([3, 25]))
    rc = main(["decode", str(path), "--repeats", "1", "--clips", "1", "--backends", "pyav", "pyav-from-start",
               "--json", str(tmp_path / "out.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "sequential" in out and "random16" in out and "pyav-from-start" in out
    import json

    rows = json.loads((tmp_path / "out.json").read_text())["rows"]
    assert {(r["backend"], r["pattern"]) for r in rows} >= {("pyav", "sequential"), ("pyav-from-start", "random16")}
    assert main(["decode", str(tmp_path / "missing.mp4")]) == 2
