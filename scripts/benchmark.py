"""``polyvision benchmark``: throughput measurements. Subcommands:

``train --config CONFIG`` / ``test --config CONFIG``
    model throughput on a config's data (``scripts/benchmark_model.py``).

``gpu [--dry-run]``
    every CUDA path once, each step bounded in time, JSON per step (``scripts/gpu_check.py``).

``decode VIDEO``
    frames/s of each video backend for three access patterns, with the minimum time and
    median over ``--repeats`` runs:

    * ``sequential``: every frame in order, 32 at a time, from one reader;
    * ``random16``: ``--clips`` random 16-frame clips (stride 1), each from a freshly
      opened reader (as a DataLoader worker meets a new video), so opening costs count;
    * ``uniform8``: 8 frames spread uniformly over the video, fresh reader each time.

    The ``pyav-from-start`` row is the baseline for ``random16``: the same PyAV pipeline
    (threads, RGB conversion) decoding sequentially from the first frame up to each clip,
    without seeking.
    ``--write-test-video PATH`` first writes a synthetic H.264 video (``make_test_video``)
    of ``--resolution`` and ``--seconds`` so the benchmark runs on a fresh machine.

    The patterns fit the video: shorter than 16 frames, ``random16`` reads clips of the whole
    length; shorter than 8, ``uniform8`` reads every frame (said under the table and in the
    JSON's ``notes``; each row carries its ``clip_len``). A backend that cannot read the file
    (decord with two video streams or AV1, say) is skipped, its reason in its row
    (``skipped``) instead of ending the run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

PATTERNS = ("sequential", "random16", "uniform8")
BASELINE = "pyav-from-start"


# --------------------------------------------------------------------------- test video


def make_test_video(
    path: str | Path,
    resolution: tuple[int, int] = (1920, 1080),
    seconds: float = 10.0,
    fps: int = 30,
    gop: int = 60,
    bframes: int = 2,
    crf: int = 23,
    preset: str = "veryfast",
    seed: int = 0,
) -> Path:
    """Write an H.264 (yuv420p) MP4 with PyAV: a textured background panning under a moving
    square, with the frame index written as 16 black/white blocks in the top-left corner.
    ``resolution`` is (width, height); a key frame every ``gop`` frames."""
    import av

    width, height = resolution
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    num_frames = int(round(seconds * fps))
    margin = 64
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height + 2 * margin, 0:width + 2 * margin].astype(np.float32)
    base = np.stack(
        [
            128 + 90 * np.sin(xx / 37.0) * np.cos(yy / 53.0),
            128 + 90 * np.sin((xx + yy) / 71.0),
            128 + 90 * np.cos(xx / 23.0 - yy / 41.0),
        ],
        axis=-1,
    )
    base += rng.normal(0, 12, base.shape[:2])[..., None]
    base = base.clip(0, 255).astype(np.uint8)
    block = max(8, height // 32)
    side = height // 6
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = bframes
        stream.options = {
            "crf": str(crf), "preset": preset, "keyint": str(gop), "min-keyint": str(gop),
            "scenecut": "0", "bf": str(bframes),
        }
        for i in range(num_frames):
            t = i / max(1, num_frames - 1)
            dx = int(margin + margin * np.sin(2 * np.pi * t))
            dy = int(margin + margin * np.cos(2 * np.pi * t))
            img = base[dy:dy + height, dx:dx + width].copy()
            x0 = int((width - side) * t)
            y0 = int((height - side) * (0.5 + 0.4 * np.sin(4 * np.pi * t)))
            img[y0:y0 + side, x0:x0 + side] = (230, 60, 40)
            for bit in range(16):
                img[:block, bit * block:(bit + 1) * block] = 255 if (i >> bit) & 1 else 0
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# --------------------------------------------------------------------------- decode benchmark


def pyav_decode_from_start(path: str | Path, indices: Sequence[int], num_threads: int = 0):
    """Baseline without seeking: the PyAV backend (same threads, same RGB conversion, same
    frame index) decoding from the first frame up to ``max(indices)`` for every request."""
    from polyvision.datamodules.video.backends import _PyAVBackend

    backend = _PyAVBackend(Path(path), None, num_threads, seek=False)
    try:
        return backend.decode(sorted({int(i) for i in indices}))
    finally:
        backend.close()


def fit_patterns(num_frames: int) -> tuple[dict[str, int], list[str]]:
    """Frames per access of each pattern for a video of ``num_frames`` frames (16-frame clips
    and 8 uniform frames, fewer for short videos) and the notes saying what was reduced."""
    lengths = {"sequential": 32, "random16": min(16, max(1, num_frames)), "uniform8": min(8, max(1, num_frames))}
    notes = []
    if lengths["random16"] < 16:
        notes.append(f"random16 reads clips of {lengths['random16']} frames (the video has {num_frames})")
    if lengths["uniform8"] < 8:
        notes.append(f"uniform8 reads {lengths['uniform8']} frames (the video has {num_frames})")
    return lengths, notes


def _clip_starts(num_frames: int, clips: int, seed: int, repeat: int, length: int = 16) -> list[int]:
    rng = np.random.default_rng([seed, repeat])
    return [int(s) for s in rng.integers(0, max(1, num_frames - length + 1), clips)]


def _run_pattern(backend: str, pattern: str, path: str, device: str, clips: int, seed: int, repeat: int,
                 threads: int, num_frames: int, length: int | None = None) -> int:
    """Runs one repeat of a pattern and returns the number of frames decoded. ``length``:
    frames per clip (random16) or per access (uniform8), from ``fit_patterns``."""
    from polyvision.datamodules.video.samplers import UniformSampler
    from polyvision.datamodules.video.reader import VideoReader

    if length is None:
        length = fit_patterns(num_frames)[0][pattern]
    if backend == BASELINE:
        if pattern != "random16":
            return 0
        for start in _clip_starts(num_frames, clips, seed, repeat, length):
            pyav_decode_from_start(path, range(start, start + length), threads)
        return length * clips
    if pattern == "sequential":
        with VideoReader(path, backend=backend, device=device, num_threads=threads) as reader:
            n = len(reader)
            for start in range(0, n, 32):
                reader.get_frames(range(start, min(n, start + 32)))
        _sync(device)
        return n
    if pattern == "random16":
        for start in _clip_starts(num_frames, clips, seed, repeat, length):
            with VideoReader(path, backend=backend, device=device, num_threads=threads) as reader:
                reader.get_frames(range(start, start + length))
        _sync(device)
        return length * clips
    indices = UniformSampler(length)(num_frames)[0]
    for _ in range(clips):
        with VideoReader(path, backend=backend, device=device, num_threads=threads) as reader:
            reader.get_frames(indices)
    _sync(device)
    return len(indices) * clips


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _reason(error: BaseException, path: str | None = None) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    for prefix in (f"{path}: ", f"{Path(path).name}: ") if path else ():
        text = text.removeprefix(prefix)
    return text if len(text) <= 200 else text[:197] + "..."


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _probe(backend: str, path: str, device: str, threads: int, num_frames: int) -> str | None:
    """Why ``backend`` cannot read the file (None if it opens it and reads its first and last frames)."""
    from polyvision.datamodules.video.reader import VideoReader

    if backend == BASELINE:
        backend = "pyav"
        device = "cpu"
    try:
        with VideoReader(path, backend=backend, device=device, num_threads=threads) as reader:
            reader.get_frames(sorted({0, max(0, min(num_frames, len(reader)) - 1)}))
    except Exception as error:  # noqa: BLE001 - any failure skips this backend, with its reason
        return _reason(error, path)
    return None


def bench_decode(path: str | Path, backends: Sequence[str] | None = None, repeats: int = 3, device: str = "cpu",
                 clips: int = 8, seed: int = 0, threads: int = 0,
                 log: Callable[[str], None] | None = None, notes: list[str] | None = None) -> list[dict]:
    """Measure every backend × pattern. Returns rows ``{backend, pattern, clip_len, frames,
    times_s, fps_median, fps_best}`` (``fps_best`` from the fastest repeat; ``clip_len``: frames
    per clip or access, fitted to the video by ``fit_patterns``). A backend that cannot read
    the file gets rows ``{backend, pattern, skipped: reason}`` instead. ``notes`` (a list) is
    extended with what was fitted or skipped."""
    from polyvision.datamodules.video.backends import VideoDecodeError, available_backends
    from polyvision.datamodules.video.reader import VideoReader

    path = str(path)
    names = list(backends) if backends else available_backends(device) + (
        [n for n in available_backends("cpu") if n not in available_backends(device)] if device != "cpu" else []
    )
    notes = notes if notes is not None else []
    with VideoReader(path, backend="pyav") as reader:
        num_frames = len(reader)
    if num_frames < 1:
        raise VideoDecodeError(path, "no frames to decode")
    lengths, fitted = fit_patterns(num_frames)
    notes.extend(fitted)
    if device == "cpu" and BASELINE not in names and (not backends or "pyav" in names):
        names.append(BASELINE)
    skipped: dict[str, str] = {}
    for name in names:
        reason = _probe(name, path, device, threads, num_frames)
        if reason is not None:
            skipped[name] = reason
            notes.append(f"{name} skipped: {reason}")
            if log:
                log(f"{name:>16}: skipped ({reason})")
    cases = [(b, p) for b in names for p in PATTERNS if (b != BASELINE or p == "random16") and b not in skipped]

    def attempt(case: tuple[str, str], count: int, repeat: int) -> int | None:
        try:
            return _run_pattern(case[0], case[1], path, device, count, seed, repeat, threads, num_frames,
                                lengths[case[1]])
        except Exception as error:  # noqa: BLE001 - a backend that fails mid-way is skipped, not fatal
            skipped[case[0]] = f"{case[1]}: {_reason(error, path)}"
            notes.append(f"{case[0]} skipped: {skipped[case[0]]}")
            if log:
                log(f"{case[0]:>16}: skipped ({skipped[case[0]]})")
            return None

    for case in cases:  # warm-up: imports, first open, page cache
        if case[0] not in skipped:
            attempt(case, 1, 10**6)
    times: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
    frames: dict[tuple[str, str], int] = {}
    for repeat in range(repeats):  # interleaved, so that load from other processes hits all alike
        for case in cases:
            if case[0] in skipped:
                continue
            start = time.perf_counter()
            count = attempt(case, clips, repeat)
            if count is not None:
                frames[case] = count
                times[case].append(time.perf_counter() - start)
    rows = []
    for name in names:
        if name in skipped:
            rows.extend({"backend": name, "pattern": pattern, "skipped": skipped[name]}
                        for pattern in PATTERNS if name != BASELINE or pattern == "random16")
            continue
        for case in ((name, p) for p in PATTERNS if (name, p) in times):
            t = times[case]
            row = {
                "backend": case[0], "pattern": case[1], "clip_len": lengths[case[1]], "frames": frames[case],
                "times_s": t, "fps_median": frames[case] / statistics.median(t), "fps_best": frames[case] / min(t),
            }
            rows.append(row)
            if log:
                log(f"{case[0]:>16} {case[1]:>10}: {row['fps_median']:8.1f} frames/s (median), "
                    f"{row['fps_best']:8.1f} (best)")
    return rows


def _print_decode_table(rows: list[dict], title: str, notes: Sequence[str] = ()) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("backend")
    for pattern in PATTERNS:
        table.add_column(f"{pattern}\nmedian / best fps", justify="right")
    table.add_column("note")
    for backend in dict.fromkeys(r["backend"] for r in rows):
        cells = []
        reason = next((r["skipped"] for r in rows if r["backend"] == backend and "skipped" in r), None)
        for pattern in PATTERNS:
            row = next((r for r in rows if r["backend"] == backend and r["pattern"] == pattern), None)
            if row is None or "skipped" in row:
                cells.append("-")
            else:
                cells.append(f"{row['fps_median']:.1f} / {row['fps_best']:.1f}")
        table.add_row(backend, *cells, f"skipped: {_short(reason)}" if reason else "")
    console = Console()
    console.print(table)
    for note in notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    seek = next((r for r in rows if r["backend"] == "pyav" and r["pattern"] == "random16" and "skipped" not in r), None)
    base = next((r for r in rows if r["backend"] == BASELINE and "skipped" not in r), None)
    if seek and base:
        console.print(
            f"random16: PyAV with key-frame seeking is {seek['fps_median'] / base['fps_median']:.2f}x "
            f"decoding from the start (median)"
        )


def _parse_resolution(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must look like 1920x1080, got {text!r}") from None
    return width, height


def _cmd_decode(args: argparse.Namespace) -> int:
    video = args.video
    if args.write_test_video:
        print(f"writing {args.write_test_video} ({args.resolution[0]}x{args.resolution[1]}, {args.seconds} s, "
              f"{args.fps} fps, key frame every {args.gop} frames)", file=sys.stderr)
        make_test_video(args.write_test_video, args.resolution, args.seconds, args.fps, args.gop)
        video = video or args.write_test_video
    if not video:
        print("polyvision benchmark decode: give VIDEO or --write-test-video PATH", file=sys.stderr)
        return 2
    if not Path(video).exists():
        print(f"{video}: no such file", file=sys.stderr)
        return 2
    from polyvision.datamodules.video.reader import VideoReader

    try:
        with VideoReader(video, backend="pyav") as reader:
            h, w = reader.size
            title = f"{Path(video).name}: {w}x{h}, {len(reader)} frames, {reader.fps:g} fps, device {args.device}"
    except Exception as error:  # noqa: BLE001 - the frame count comes from PyAV; without it, no benchmark
        print(f"{video}: PyAV cannot read it, so it cannot be benchmarked ({_reason(error)})", file=sys.stderr)
        return 2
    notes: list[str] = []
    rows = bench_decode(video, args.backends, args.repeats, args.device, args.clips, args.seed, args.threads,
                        log=lambda line: print(line, file=sys.stderr), notes=notes)
    _print_decode_table(rows, title, notes)
    if args.json:
        Path(args.json).write_text(json.dumps({"video": str(video), "title": title, "notes": notes, "rows": rows},
                                              indent=1))
    return 0 if any("skipped" not in r for r in rows) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polyvision benchmark", description="Throughput benchmarks.")
    sub = parser.add_subparsers(dest="command", required=True)
    decode = sub.add_parser("decode", help="video decoding speed per backend and access pattern")
    decode.add_argument("video", nargs="?", help="video file to decode")
    decode.add_argument("--backends", nargs="+", help="backends to measure (default: all available, plus the "
                        f"{BASELINE} baseline on CPU)")
    decode.add_argument("--repeats", type=int, default=3)
    decode.add_argument("--device", default="cpu", help="cpu or cuda")
    decode.add_argument("--clips", type=int, default=8, help="clips per repeat for random16 and uniform8")
    decode.add_argument("--threads", type=int, default=0, help="decoder threads (0: FFmpeg decides)")
    decode.add_argument("--seed", type=int, default=0)
    decode.add_argument("--json", help="also write the measurements to this JSON file")
    decode.add_argument("--write-test-video", metavar="PATH", help="first write a synthetic H.264 test video")
    decode.add_argument("--resolution", type=_parse_resolution, default=(1920, 1080), help="WIDTHxHEIGHT")
    decode.add_argument("--seconds", type=float, default=10.0)
    decode.add_argument("--fps", type=int, default=30)
    decode.add_argument("--gop", type=int, default=60, help="key-frame interval of the test video")
    decode.set_defaults(func=_cmd_decode)
    from polyvision.scripts import benchmark_model

    for mode, text in (("train", "training step time, samples/s, TFLOP/s and peak memory of a config"),
                       ("test", "evaluation step throughput of a config (test-time work included)")):
        command = sub.add_parser(mode, help=text)
        benchmark_model.add_arguments(command)
        command.set_defaults(func=lambda args, mode=mode: benchmark_model.main(mode, args))
    from polyvision.scripts import export

    command = sub.add_parser("export", help="eager PyTorch vs ONNX Runtime CPU latency of an OmniFD image model")
    export.add_benchmark_arguments(command)
    command.set_defaults(func=export.benchmark_main)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["gpu"]:  # the GPU session's prepared run: its own options (scripts/gpu_check.py)
        from polyvision.scripts import gpu_check

        return gpu_check.main(argv[1:])
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("train", "test"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra  # train/test: config overrides such as --data.init_args.batch_size 8
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
