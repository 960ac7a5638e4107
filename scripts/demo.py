"""``polyvision demo``: the main job end to end on built-in synthetic data.

Trains the small OmniFD config (``configs/omnifd/synthetic.yaml``) on synthetic
FaceForensics++-layout data generated on first use, tests it, runs ``infer`` on a few test
images (mask overlays) and writes a leaderboard; then prints where everything is.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import yaml

from polyvision.models.factory import CONFIG_DIR

DEMO_CONFIG = CONFIG_DIR / "omnifd" / "synthetic.yaml"


def pick_test_images(datamodule, count: int = 4) -> list[Path]:
    """A few real and fake images from the test split."""
    from polyvision.datamodules.forgery import load_annotations

    records = load_annotations(datamodule._split_annotation("test"), datamodule.root)
    fakes = [r for r in records if r.label == 1]
    reals = [r for r in records if r.label == 0]
    chooser = random.Random(0)
    chosen = chooser.sample(fakes, min(len(fakes), count - count // 4)) + chooser.sample(reals, min(len(reals), count // 4))
    return [Path(r.image_path) for r in chosen]


def main(argv: list[str] | None = None) -> int:
    from polyvision.scripts.infer import run as run_infer
    from polyvision.scripts.leaderboard import Entry, evaluate, write_leaderboard
    from polyvision.scripts.lightning_cli import PolyvisionCLI

    parser = argparse.ArgumentParser(prog="polyvision demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("demo_outputs"))
    parser.add_argument("--max-epochs", type=int, default=None, help="override the config's epochs (quick runs)")
    args, extra = parser.parse_known_args(argv)
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

    print("[3/4] infer on test images")
    images = pick_test_images(fit.datamodule)
    run_infer(checkpoint, images, out / "inference", device="cpu", batch_size=8)

    print("[4/4] leaderboard")
    entries = [Entry(name="OmniFD small (synthetic)", checkpoint=checkpoint, config=DEMO_CONFIG, benchmark=None,
                     data={"cache_dir": str(fit.datamodule.root)})]
    entries_file = out / "leaderboard_entries.yaml"
    entries_file.write_text(yaml.safe_dump({"entries": [{"name": e.name, "checkpoint": str(e.checkpoint),
                                                         "config": str(e.config), "data": e.data} for e in entries]}))
    results = [evaluate(entry, accelerator="cpu") for entry in entries]
    paths = write_leaderboard(entries, results, out)

    print("\nDemo finished. Outputs:")
    print(f"  checkpoint   {checkpoint}")
    print(f"  metrics      {metrics_path}  {json.dumps({k: round(v, 3) for k, v in json.loads(metrics_path.read_text()).items()})}")
    print(f"  logs         {fit.trainer.log_dir}  (tensorboard --logdir {out / 'runs'})")
    print(f"  pictures     {out / 'inference'}  (*.overlay.png, *.mask.png, predictions.jsonl)")
    print(f"  leaderboard  {paths['md']}  (.csv, .html beside it)")
    return 0
