"""``polyvision benchmark gpu [--dry-run] [--out DIR] [--only STEP ...]``: every CUDA path once, measured.

The prepared run of a GPU session (``scripts/gpu_check.sh`` sets up the machine and calls this):
each step runs in its own process under a time limit, and its result (exit status, seconds,
the tail of its output, what it measured) is written as JSON under ``--out`` (default
``$OUT``, else ``./gpu_check``) as soon as it ends, so a run cut short keeps what finished.
``summary.json`` lists every step. Steps:

- ``cuda_tests``: the tests marked ``gpu`` (NVDEC and CUDA decoding, ``decode_device: cuda``);
- ``decode_<backend>_<n>``: aggregate frames/s of ``n`` concurrent readers (1, 4, 8), each
  decoding the whole 1080p H.264 test video sequentially through ``VideoReader``, per backend
  (torchcodec and nvdec on CUDA; pyav on CPU for reference);
- ``train_*`` / ``test_*``: ``polyvision benchmark train|test`` of the paper configs (OmniFD
  Swin-T in bf16, eager and ``--compile``, beside the bare ``swin3d_t``; STATE; ACR; CVLNM);
- ``fit_cuda_decode``: a short ``polyvision fit`` of the synthetic OmniFD config with
  ``decode_device: cuda`` under Lightning's simple profiler; ``data_wait_fraction`` is the
  time spent fetching batches over fetching plus running them.

``--dry-run`` runs the same steps at toy sizes on the CPU (a small video, the synthetic
configs, two steps each), so the plan itself is tested where CI runs (``tests/test_gpu_check.py``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "polyvision.cli"]
STREAMS = (1, 4, 8)


@dataclass
class Step:
    name: str
    argv: list[str]
    timeout: int
    json_path: Path | None = None  # what the step measured, read back into its record
    extra: dict[str, Any] = field(default_factory=dict)


def plan(out: Path, dry_run: bool) -> list[Step]:
    """The steps of a run (real or dry) in order: cheap and most telling first."""
    device = "cpu" if dry_run else "cuda"
    video = out / "test_1080p.mp4"
    steps = [Step("cuda_tests", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu",
                                 "tests/datamodules/video"], 300)]
    size = ["--resolution", "320x180", "--seconds", "1"] if dry_run else ["--resolution", "1920x1080", "--seconds", "10"]
    steps.append(Step("decode_single", [*CLI, "benchmark", "decode", "--write-test-video", str(video), *size,
                                        "--repeats", "1", "--device", device, "--json", str(out / "decode_single.json")],
                      300, out / "decode_single.json"))
    backends = ["pyav"] if dry_run else ["torchcodec", "nvdec"]
    for backend in backends:
        for streams in (1, 2) if dry_run else STREAMS:
            name = f"decode_{backend}_{streams}"
            steps.append(Step(name, [sys.executable, "-m", "polyvision.scripts.gpu_check", "_streams", str(video), backend,
                                     device, str(streams), str(out / f"{name}.json")], 240, out / f"{name}.json"))
    bench = ["--steps", "2", "--warmup", "1", "--device", device] if dry_run else ["--steps", "10", "--warmup", "3"]
    if dry_run:
        models = [("train_omnifd", "train", "configs/omnifd/synthetic.yaml", []),
                  ("test_acr", "test", "configs/acr/synthetic.yaml", [])]
    else:
        swin_t = ["--precision", "bf16-mixed", "--baseline", "swin3d_t", "--trainer.devices", "1", "--trainer.strategy", "auto",
                  "--data.init_args.sources.image.init_args.synthetic", "true",
                  "--data.init_args.sources.video.init_args.synthetic", "true"]
        models = [("train_omnifd_swin_t_bf16", "train", "configs/omnifd/forgerynet_swin_t.yaml", swin_t),
                  ("train_omnifd_swin_t_bf16_compile", "train", "configs/omnifd/forgerynet_swin_t.yaml", [*swin_t, "--compile"]),
                  ("test_omnifd_swin_t_bf16", "test", "configs/omnifd/forgerynet_swin_t.yaml", swin_t),
                  ("test_state_ped2", "test", "configs/state/ped2.yaml", []),
                  ("train_acr_hrnet_w32", "train", "configs/acr/interhand.yaml", ["--model.init_args.mano_dir", "generated"]),
                  ("test_acr_hrnet_w32", "test", "configs/acr/interhand.yaml", ["--model.init_args.mano_dir", "generated"]),
                  ("train_cvlnm", "train", "configs/cvlnm/coco.yaml", []),
                  ("test_cvlnm", "test", "configs/cvlnm/coco.yaml", [])]
    for name, mode, config, options in models:
        steps.append(Step(name, [*CLI, "benchmark", mode, "--config", config, *bench, "--json", str(out / f"{name}.json"),
                                 *options], 300 if dry_run else 420, out / f"{name}.json"))
    fit = [*CLI, "fit", "--config", "configs/omnifd/synthetic.yaml", "--trainer.profiler", "simple",
           "--trainer.default_root_dir", str(out / "runs"), "--trainer.enable_progress_bar", "false",
           "--trainer.limit_val_batches", "0", "--trainer.max_epochs", "1"]
    if dry_run:
        fit += ["--trainer.limit_train_batches", "3", "--trainer.accelerator", "cpu"]
    else:
        fit += ["--trainer.limit_train_batches", "60", "--trainer.devices", "1",
                "--data.init_args.sources.video.init_args.decode_device", "cuda",
                "--data.init_args.sources.video.init_args.num_workers", "0"]
    steps.append(Step("fit_cuda_decode", fit, 300 if dry_run else 480))
    return steps


# ----------------------------------------------------------------------------------------
# Concurrent decoding
# ----------------------------------------------------------------------------------------
def concurrent_decode(video: str, backend: str, device: str, streams: int, chunk: int = 32) -> dict[str, Any]:
    """Aggregate frames/s of ``streams`` readers decoding the whole video at once, one thread
    each (decoders release the GIL); opening the readers is not timed."""
    from polyvision.datamodules.video.reader import VideoReader

    readers = [VideoReader(video, backend=backend, device=device) for _ in range(streams)]
    frames = [0] * streams
    errors: list[str] = []

    def decode(k: int) -> None:
        reader = readers[k]
        try:
            for start in range(0, len(reader), chunk):
                batch = reader.get_frames(range(start, min(start + chunk, len(reader))))
                frames[k] += int(batch.shape[0])
            if device.startswith("cuda"):
                import torch

                torch.cuda.synchronize()
        except Exception as error:  # noqa: BLE001 - reported in the step's JSON
            errors.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=decode, args=(k,)) for k in range(streams)]
    begin = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - begin
    return {"backend": backend, "device": device, "streams": streams, "frames": sum(frames), "seconds": seconds,
            "frames_per_s": sum(frames) / seconds if seconds > 0 else None, "errors": errors}


# ----------------------------------------------------------------------------------------
# Running and reading steps
# ----------------------------------------------------------------------------------------
def data_wait_fraction(output: str) -> float | None:
    """From Lightning's simple profiler table: fetching batches over fetching plus running them."""
    def total(action: str) -> float | None:
        match = re.search(re.escape(action) + r"[^|\n]*\|\s*[\d.e+-]+\s*\|\s*\d+\s*\|\s*([\d.e+-]+)", output)
        return float(match.group(1)) if match else None

    fetch, run = total("train_dataloader_next"), total("run_training_batch")
    if fetch is None or run is None or fetch + run <= 0:
        return None
    return fetch / (fetch + run)


def run_step(step: Step, out: Path, env: dict[str, str]) -> dict[str, Any]:
    begin = time.perf_counter()
    record: dict[str, Any] = {"step": step.name, "command": " ".join(step.argv), "timeout_s": step.timeout}
    try:
        done = subprocess.run(step.argv, capture_output=True, text=True, timeout=step.timeout, env=env)
        record["returncode"], output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as error:
        record["returncode"], record["timed_out"] = None, True
        output = (error.stdout or b"").decode(errors="replace") if isinstance(error.stdout, bytes) else (error.stdout or "")
    record["seconds"] = round(time.perf_counter() - begin, 2)
    record["output_tail"] = output[-3000:]
    if step.json_path is not None and step.json_path.exists():
        record["measured"] = json.loads(step.json_path.read_text())
    if step.name.startswith("fit"):
        record["data_wait_fraction"] = data_wait_fraction(output)
    (out / f"{step.name}.step.json").write_text(json.dumps(record, indent=1))
    return record


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_streams"]:  # one concurrent-decoding measurement, in its own process
        video, backend, device, streams, target = argv[1:6]
        Path(target).write_text(json.dumps(concurrent_decode(video, backend, device, int(streams)), indent=1))
        return 0
    parser = argparse.ArgumentParser(prog="polyvision benchmark gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="the same steps at toy sizes on the CPU")
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu_check", help="folder of the JSON results")
    parser.add_argument("--only", nargs="+", help="run only these steps (names as in summary.json)")
    args = parser.parse_args(argv)
    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    steps = plan(out, args.dry_run)
    if args.only:
        unknown = sorted(set(args.only) - {s.name for s in steps})
        if unknown:
            parser.error(f"unknown step(s) {', '.join(unknown)}; steps: {', '.join(s.name for s in steps)}")
        steps = [s for s in steps if s.name in args.only or s.name == "decode_single"]  # the others read its video
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    records = []
    for step in steps:
        print(f"[gpu_check] {step.name} ...", flush=True)
        record = run_step(step, out, env)
        records.append({k: v for k, v in record.items() if k != "output_tail"})
        status = "timed out" if record.get("timed_out") else f"exit {record['returncode']}"
        print(f"[gpu_check] {step.name}: {status} in {record['seconds']} s", flush=True)
        (out / "summary.json").write_text(json.dumps({"dry_run": args.dry_run, "steps": records}, indent=1))
    return 0 if all(r.get("returncode") == 0 for r in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
