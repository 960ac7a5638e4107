"""``polyvision benchmark train|test --config CONFIG``: model throughput on a config's data.

Builds the model and datamodule exactly as ``polyvision fit`` would, loads ``--steps``
batches first (so data loading is not timed), then times training steps (forward,
backward, optimizer) or evaluation steps (``test_step``, including anything the system does
at test time, such as STATE's perturbation). Prints step time (min/median), samples/s,
model FLOPs per step and TFLOP/s (from PyTorch's FLOP counter), and peak memory.

``--baseline swin3d_t`` times, in the same run and on the same clips (the config's video
sub-batch, or its images as one-frame clips), a bare torchvision ``swin3d_t`` (full size, two
classes, cross-entropy) at the same precision, so the model's TFLOP/s can be read against
what the bare trunk reaches on that machine. ``--compile`` compiles the model's backbone
and neck (and the baseline) with ``torch.compile`` first.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import torch


def build(config: str, overrides: list[str]):
    from polyvision.scripts.lightning_cli import PolyvisionCLI

    warnings.filterwarnings("ignore", message=".*self.log.*")
    cli = PolyvisionCLI(["--config", config, "--trainer.logger", "false", *overrides], run=False)
    return cli.model, cli.datamodule


def sample_count(model, batch: Any) -> int:
    return sum(model.batch_size_of(sub) for _, sub in model.sub_batches(batch))


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list):
        return [to_device(v, device) for v in batch]
    return batch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(step, batch) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step(batch)
    return int(counter.get_total_flops())


def clips_of(model, batch: Any) -> torch.Tensor:
    """The clips (B, 3, T, H, W) of a batch: its video sub-batch, else its images as one-frame clips."""
    subs = [sub for _, sub in model.sub_batches(batch)]
    for key in ("video", "image"):
        for sub in subs:
            if isinstance(sub.get(key), torch.Tensor):
                x = sub[key]
                return x if x.dim() == 5 else x.unsqueeze(2)
    raise ValueError("the batch holds neither 'video' nor 'image' tensors")


def time_steps(step, batches: list[Any], warmup: int, device: torch.device) -> list[float]:
    times = []
    for index, batch in enumerate(batches):
        synchronize(device)
        start = time.perf_counter()
        step(batch)
        synchronize(device)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return times


def peak_memory_gb(device: torch.device) -> float:
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return peak / 2**30


def make_step(model: torch.nn.Module, mode: str, precision: str, device: torch.device, train_loss, evaluate):
    """One training step (``train_loss(batch)``, backward, AdamW) or evaluation step
    (``evaluate(batch)``) of ``model`` under the benchmark's precision."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    if mode == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(batch):
            with autocast:
                loss = train_loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    else:
        model.eval()

        def step(batch):
            with autocast:
                evaluate(batch)
    return step


def measure(step, batches: list[Any], samples_per_step: float, warmup: int, device: torch.device) -> dict[str, float]:
    flops = count_flops(step, batches[0])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = time_steps(step, batches, warmup, device)
    median = statistics.median(times)
    return {"step_time_min_s": min(times), "step_time_median_s": median, "samples_per_step": samples_per_step,
            "samples_per_s": samples_per_step / median, "gflops_per_step": flops / 1e9,
            "tflops_per_s": flops / median / 1e12, "peak_memory_gb": peak_memory_gb(device)}


def run_baseline(name: str, clips: list[torch.Tensor], args: argparse.Namespace, mode: str) -> dict[str, float]:
    """A bare torchvision video model (``swin3d_t``/``swin3d_s``) on the same clips."""
    import torchvision

    device = torch.device(args.device)
    model = getattr(torchvision.models.video, name)(num_classes=2).to(device)
    if args.compile:
        model.compile()
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1, 1)
    inputs = [((c.float() / 255.0 - mean) / std) if c.dtype == torch.uint8 else c.float() for c in clips]
    labels = torch.zeros(inputs[0].shape[0], dtype=torch.long, device=device)

    def evaluate(x):
        with torch.no_grad():
            model(x)

    step = make_step(model, mode, args.precision, device,
                     lambda x: torch.nn.functional.cross_entropy(model(x).float(), labels), evaluate)
    return measure(step, inputs, float(inputs[0].shape[0]), args.warmup, device)


def run(args: argparse.Namespace, mode: str) -> dict[str, dict[str, float]]:
    device = torch.device(args.device)
    model, datamodule = build(args.config, args.overrides)
    datamodule.prepare_data()
    datamodule.setup("fit" if mode == "train" else "test")
    loader = datamodule.train_dataloader() if mode == "train" else datamodule.test_dataloader()
    iterator = iter(loader)
    batches = []
    for _ in range(args.warmup + args.steps):
        try:
            item = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            item = next(iterator)
        batches.append(item[0] if isinstance(item, tuple) else item)
    model.to(device)
    if args.compile:
        for name in ("backbone", "neck"):
            if isinstance(getattr(model, name, None), torch.nn.Module):
                getattr(model, name).compile()
    # test_step runs without no_grad: a system may need gradients at test time (STATE's perturbation)
    step = make_step(model, mode, args.precision, device, partial(model.training_step, batch_idx=0),
                     partial(model.test_step, batch_idx=0))
    batches = [to_device(b, device) for b in batches]
    if hasattr(datamodule, "on_after_batch_transfer"):
        batches = [datamodule.on_after_batch_transfer(b, 0) for b in batches]
    result = measure(step, batches, statistics.mean(sample_count(model, b) for b in batches), args.warmup, device)
    if not args.baseline:
        return {"model": result}
    clips = [clips_of(model, b) for b in batches]
    del model, batches, step
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"model": result, f"bare {args.baseline}": run_baseline(args.baseline, clips, args, mode)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``benchmark train|test``; anything else on the line is a config override
    (e.g. ``--data.init_args.batch_size 8``)."""
    parser.add_argument("--config", required=True, help="a LightningCLI config (model + data)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed"], default="32-true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone and neck (and the baseline)")
    parser.add_argument("--baseline", choices=["swin3d_t", "swin3d_s"],
                        help="also time a bare torchvision video Swin on the same clips, in the same run")
    parser.add_argument("--json", help="also write the measurements to this JSON file")


def main(mode: str, args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    results = run(args, mode)
    compiled = ", compiled" if args.compile else ""
    table = Table(title=f"benchmark {mode} on {args.device} ({args.precision}{compiled})", caption=str(args.config))
    table.add_column("measure")
    for name in results:
        table.add_column(name, justify="right")
    for key in results["model"]:
        table.add_row(key, *(f"{r[key]:.4g}" if key in r else "" for r in results.values()))
    Console().print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"mode": mode, "config": str(args.config), "device": args.device,
                                               "precision": args.precision, "compile": args.compile,
                                               "results": results}, indent=1))
    return 0
