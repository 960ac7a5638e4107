"""``polyvision benchmark train|test --config CONFIG``: model throughput on a config's data.

Builds the model and datamodule exactly as ``polyvision fit`` would, loads ``--steps``
batches first (so data loading is not timed), then times training steps (forward,
backward, optimizer) or evaluation steps (``test_step``, including anything the system does
at test time, such as STATE's perturbation). Prints step time (min/median), samples/s,
model FLOPs per step and TFLOP/s (from PyTorch's FLOP counter), and peak memory.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time
import warnings
from typing import Any

import torch


def build(config: str, overrides: list[str]):
    from polyvision.scripts.lightning_cli import PolyvisionCLI

    warnings.filterwarnings("ignore", message=".*self.log.*")
    cli = PolyvisionCLI(["--config", config, "--trainer.logger", "false", *overrides], run=False)
    return cli.model, cli.datamodule


def sample_count(batch: Any) -> int:
    from polyvision.models.base import MultiTaskModule

    return sum(MultiTaskModule.batch_size_of(sub) for _, sub in MultiTaskModule.sub_batches(batch))


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


def run(args: argparse.Namespace, mode: str) -> dict[str, float]:
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
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")
    if mode == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(batch):
            with autocast:
                loss = model.training_step(batch, 0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    else:
        model.eval()

        def step(batch):
            with autocast:
                model.test_step(batch, 0)

    batches = [to_device(b, device) for b in batches]
    if hasattr(datamodule, "on_after_batch_transfer"):
        batches = [datamodule.on_after_batch_transfer(b, 0) for b in batches]
    flops = count_flops(step, batches[0])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for index, batch in enumerate(batches):
        synchronize(device)
        start = time.perf_counter()
        step(batch)
        synchronize(device)
        if index >= args.warmup:
            times.append(time.perf_counter() - start)
    samples = statistics.mean(sample_count(b) for b in batches)
    median = statistics.median(times)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"step_time_min_s": min(times), "step_time_median_s": median, "samples_per_step": samples,
            "samples_per_s": samples / median, "gflops_per_step": flops / 1e9, "tflops_per_s": flops / median / 1e12,
            "peak_memory_gb": peak / 2**30}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``benchmark train|test``; anything else on the line is a config override
    (e.g. ``--data.init_args.batch_size 8``)."""
    parser.add_argument("--config", required=True, help="a LightningCLI config (model + data)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed"], default="32-true")


def main(mode: str, args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    result = run(args, mode)
    table = Table(title=f"benchmark {mode} on {args.device} ({args.precision})", caption=str(args.config))
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:.4g}")
    Console().print(table)
    return 0
