"""``polyvision demo``: the main job end to end on built-in synthetic data.

Trains the small OmniFD config (``configs/omnifd/synthetic.yaml``: unified image + clip
training of all four heads) on synthetic ForgeryNet-layout data generated on first use,
tests it (first-window and full-video protocols), runs ``infer`` on a few test images (mask
overlays) and test videos (fake segments in seconds, timeline PNGs), writes a leaderboard
and prints where everything is.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

import yaml

from polyvision.models.factory import CONFIG_DIR

DEMO_CONFIG = CONFIG_DIR / "omnifd" / "synthetic.yaml"


def _pick(records: list[Any], count: int, chooser: random.Random) -> list[Any]:
    """``count`` records, three quarters fake, sorted as listed."""
    fakes = [r for r in records if r.label == 1]
    reals = [r for r in records if r.label == 0]
    chosen = chooser.sample(fakes, min(len(fakes), count - count // 4)) + chooser.sample(reals, min(len(reals), count // 4))
    return sorted(chosen, key=records.index)


def pick_test_inputs(datamodule, images: int = 4, videos: int = 4) -> tuple[list[Path], list[Any]]:
    """A few test images and test videos of the demo's datamodule (a ``MultiSourceDataModule``
    with ``image`` and ``video`` sources, or a single image datamodule). Returns the paths
    and the chosen video records (for their true fake segments)."""
    sources = getattr(datamodule, "sources", {"image": datamodule})
    chooser = random.Random(0)
    paths: list[Path] = []
    video_records: list[Any] = []
    if "image" in sources:
        paths += [Path(r.image_path) for r in _pick(sources["image"]._dataset("test").records, images, chooser)]
    if "video" in sources:
        video_records = _pick(list(sources["video"].records("test")), videos, chooser)
        paths += [Path(r.path) for r in video_records]
    return paths, video_records


def _seconds(segments) -> str:
    return ", ".join(f"{s:.2f}-{e:.2f}s" for s, e in segments) or "none"


def true_segments_seconds(record) -> list[tuple[float, float]]:
    """A video record's fake segments in seconds (ForgeryNet annotates frames)."""
    if record.segments_seconds:
        return list(record.segments_seconds)
    from polyvision.datamodules.video.reader import VideoReader

    with VideoReader(record.path) as reader:
        fps = float(record.fps or reader.fps or 25.0)
    return [(s / fps, e / fps) for s, e in record.segments or []]


def main(argv: list[str] | None = None) -> int:
    from polyvision.scripts.infer import run as run_infer
    from polyvision.scripts.leaderboard import Entry, evaluate, write_leaderboard
    from polyvision.scripts.lightning_cli import PolyvisionCLI

    parser = argparse.ArgumentParser(prog="polyvision demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("demo_outputs"))
    parser.add_argument("--max-epochs", type=int, default=None, help="override the config's epochs (quick runs)")
    args, extra = parser.parse_known_args(argv)
    sys.argv = sys.argv[:1]  # parsed; the CLIs below get their arguments explicitly
    out = args.output_dir.resolve()
    overrides = ["--trainer.default_root_dir", str(out / "runs"), *extra]
    if args.max_epochs is not None:
        overrides += ["--trainer.max_epochs", str(args.max_epochs)]

    print(f"[1/4] fit {DEMO_CONFIG.relative_to(CONFIG_DIR.parent)}")
    fit = PolyvisionCLI(["fit", "--config", str(DEMO_CONFIG), *overrides])
    checkpoint = Path(fit.trainer.checkpoint_callback.last_model_path)

    print(f"[2/4] test {checkpoint}")
    PolyvisionCLI(["test", "--config", str(DEMO_CONFIG), "--ckpt_path", str(checkpoint), *overrides])
    metrics_path = checkpoint.with_suffix(".test-metrics.json")

    print("[3/4] infer on test images and videos")
    inputs, videos = pick_test_inputs(fit.datamodule)
    predictions, _ = run_infer(checkpoint, inputs, out / "inference", device="cpu", batch_size=8)
    by_path = {p["path"]: p for p in predictions if "path" in p}

    print("[4/4] leaderboard")
    sources = getattr(fit.datamodule, "sources", None)  # test on the data the demo trained on
    data = ({"sources": {name: {"init_args": {"cache_dir": str(dm.root)}} for name, dm in sources.items()}}
            if sources else {"cache_dir": str(fit.datamodule.root)})
    entries = [Entry(name="OmniFD small (synthetic)", checkpoint=checkpoint, config=DEMO_CONFIG, benchmark=None,
                     data=data)]
    entries_file = out / "leaderboard_entries.yaml"
    entries_file.write_text(yaml.safe_dump({"entries": [{"name": e.name, "checkpoint": str(e.checkpoint),
                                                         "config": str(e.config), "data": e.data} for e in entries]}))
    results = [evaluate(entry, accelerator="cpu") for entry in entries]
    paths = write_leaderboard(entries, results, out)

    print("\nDemo finished. Outputs:")
    print(f"  checkpoint   {checkpoint}")
    print(f"  metrics      {metrics_path}  {json.dumps({k: round(v, 3) for k, v in json.loads(metrics_path.read_text()).items()})}")
    print(f"  logs         {fit.trainer.log_dir}  (tensorboard --logdir {out / 'runs'})")
    print(f"  pictures     {out / 'inference'}  (*.overlay.png, *.mask.png, *.timeline.png, predictions.jsonl)")
    for record in videos:
        found = by_path.get(record.path, {})
        video, temporal = found.get("video", {}), found.get("temporal", {})
        segments = [seg for seg, score in zip(temporal.get("segments", []), temporal.get("scores", [])) if score >= 0.3]
        print(f"  video {Path(record.path).name}: {'fake' if record.label else 'real'}, true fake segments "
              f"{_seconds(true_segments_seconds(record))}; predicted p(fake) {video.get('score', float('nan')):.2f}, "
              f"segments (score >= 0.3) {_seconds(segments)}")
    print(f"  leaderboard  {paths['md']}  (.csv, .html beside it)")
    return 0
