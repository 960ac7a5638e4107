"""``polyvision demo``: the main jobs end to end on built-in synthetic data.

OmniFD: trains the small config (``configs/omnifd/synthetic.yaml``: unified image + clip
training of all four heads) on synthetic ForgeryNet-layout data generated on first use,
tests it (first-window and full-video protocols), runs ``infer`` on a few test images (mask
overlays) and test videos (fake segments in seconds, timeline PNGs).

ACR: trains the small two-hand config (``configs/acr/synthetic.yaml``, ``ACR_EPOCHS`` epochs)
on synthetic InterHand2.6M-layout data, tests it (hand errors in mm), runs ``infer`` on a few
test images (mesh pictures, hands JSON).

CVLNM: trains the small captioning config (``configs/cvlnm/synthetic.yaml``, ``CVLNM_EPOCHS``
epochs of cross-entropy with the syntax loss) on synthetic COCO (scenes of coloured shapes,
their captions and region features), tests it (BLEU-1..4, ROUGE-L, CIDEr-D and the captions
as coco-caption result JSON), runs ``infer`` on a few test images with their region features
(captions, each word's module, captioned pictures).

STATE: trains the small anomaly config (``configs/state/synthetic.yaml``, ``STATE_EPOCHS``
epochs) on synthetic UCSD Ped2-layout data (object cubes and optical flow cached on first use),
tests it (frame AUROC micro and macro, with the test-time perturbation).

HybridNet: trains the small video commonsense config (``configs/hybridnet/synthetic.yaml``,
``HYBRIDNET_EPOCHS`` epochs) on synthetic V2C (MSR-VTT-layout videos of moving shapes with their
captions, intentions, effects and attributes, and matching feature files), tests it (V2C
completion and generation tables), runs ``infer`` on two test videos with their features
(caption, the three commonsense sentences, a contact sheet per video).

Then writes one leaderboard of every system run (a row per system, from the metrics of its
test step; ``--retest`` tests each checkpoint again, as ``polyvision leaderboard
leaderboard_entries.yaml`` does) and prints where everything is. ``--system omnifd|acr|cvlnm|state|hybridnet`` runs one system alone (default: all).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from polyvision.models.factory import CONFIG_DIR

DEMO_CONFIG = CONFIG_DIR / "omnifd" / "synthetic.yaml"
ACR_CONFIG = CONFIG_DIR / "acr" / "synthetic.yaml"
# Epochs of the ACR part (fit + test + infer within about 2.5 minutes on 2 CPU cores; the
# config's 12 are what learning needs: --max-epochs 12 for a model that finds hands).
ACR_EPOCHS = 6
CVLNM_CONFIG = CONFIG_DIR / "cvlnm" / "synthetic.yaml"
# Epochs of the CVLNM part (the config's cross-entropy phase: fit + test + infer within about 90 s on 2 CPU
# cores; the config's 11, with self-critical training from epoch 8, are what the README's
# learnability numbers need: --max-epochs 11).
CVLNM_EPOCHS = 8
STATE_CONFIG = CONFIG_DIR / "state" / "synthetic.yaml"
# Epochs of the STATE part (fit + test within about a minute on 2 CPU cores; the config's 6 are
# what the README's AUROC needs: --max-epochs 6; 6 epochs in the demo measured 0.928 micro / 0.964 macro).
STATE_EPOCHS = 4
HYBRIDNET_CONFIG = CONFIG_DIR / "hybridnet" / "synthetic.yaml"
# Epochs of the HybridNet part (fit + test + infer within about a minute on 2 CPU cores; the config's 8
# are what the README's learnability numbers need: --max-epochs 8). The five parts together are
# about 8 minutes: see the README's demo timings.
HYBRIDNET_EPOCHS = 4
# The demo leaderboard's table for HybridNet on the synthetic V2C (scripts/leaderboard.py).
HYBRIDNET_BENCHMARK = "synthetic-v2c"
SYSTEMS = ("omnifd", "acr", "cvlnm", "state", "hybridnet")


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


def pick_hand_images(datamodule, count: int = 4) -> list[Path]:
    """The first ``count`` distinct test images of a ``HandDataModule`` (set up for test)."""
    dataset = datamodule._dataset("test")
    paths: list[Path] = []
    for index in range(len(dataset)):
        path = Path(dataset.record(index).image_path)
        if path not in paths:
            paths.append(path)
        if len(paths) == count:
            break
    return paths


def _metrics_line(metrics_path: Path, keys: tuple[str, ...] | None = None) -> str:
    metrics = json.loads(metrics_path.read_text())
    return json.dumps({k: round(v, 3) for k, v in metrics.items() if keys is None or k.removeprefix("test/") in keys})


def fit_and_test(system: str, config: Path, overrides: list[str], note: str = "",
                 steps: int = 3) -> tuple[Any, Path, Path]:
    """Steps 1 and 2 (of ``steps``) of a system's demo: fit ``config``, test its last
    checkpoint; returns the fit CLI, the checkpoint and the test metrics file."""
    from polyvision.scripts.lightning_cli import PolyvisionCLI

    print(f"[{system} 1/{steps}] fit {config.relative_to(CONFIG_DIR.parent)}{note}")
    fit = PolyvisionCLI(["fit", "--config", str(config), *overrides])
    checkpoint = Path(fit.trainer.checkpoint_callback.last_model_path)
    print(f"[{system} 2/{steps}] test {checkpoint}")
    PolyvisionCLI(["test", "--config", str(config), "--ckpt_path", str(checkpoint), *overrides])
    return fit, checkpoint, checkpoint.with_suffix(".test-metrics.json")


def run_omnifd(out: Path, overrides: list[str]) -> tuple[Any, list[str]]:
    """Fit, test and infer the OmniFD demo; returns its leaderboard entry and the lines to print."""
    from polyvision.scripts.infer import run as run_infer
    from polyvision.scripts.leaderboard import Entry

    fit, checkpoint, metrics_path = fit_and_test("omnifd", DEMO_CONFIG, overrides)

    print("[omnifd 3/3] infer on test images and videos")
    inputs, videos = pick_test_inputs(fit.datamodule)
    predictions, _ = run_infer(checkpoint, inputs, out / "inference", device="cpu", batch_size=8)
    by_path = {p["path"]: p for p in predictions if "path" in p}

    sources = getattr(fit.datamodule, "sources", None)  # test on the data the demo trained on
    data = ({"sources": {name: {"init_args": {"cache_dir": str(dm.root)}} for name, dm in sources.items()}}
            if sources else {"cache_dir": str(fit.datamodule.root)})
    entry = Entry(name="OmniFD small (synthetic)", checkpoint=checkpoint, config=DEMO_CONFIG, benchmark=None,
                  data=data)
    lines = [f"  OmniFD checkpoint   {checkpoint}",
             f"  OmniFD metrics      {metrics_path}  {_metrics_line(metrics_path)}",
             f"  OmniFD logs         {fit.trainer.log_dir}  (tensorboard --logdir {out / 'runs'})",
             f"  OmniFD pictures     {out / 'inference'}  (*.overlay.png, *.mask.png, *.timeline.png, "
             "predictions.jsonl)"]
    for record in videos:
        found = by_path.get(record.path, {})
        video, temporal = found.get("video", {}), found.get("temporal", {})
        segments = [seg for seg, score in zip(temporal.get("segments", []), temporal.get("scores", [])) if score >= 0.3]
        lines.append(f"  video {Path(record.path).name}: {'fake' if record.label else 'real'}, true fake segments "
                     f"{_seconds(true_segments_seconds(record))}; predicted p(fake) "
                     f"{video.get('score', float('nan')):.2f}, segments (score >= 0.3) {_seconds(segments)}")
    return entry, lines


ACR_SUMMARY = ("hands/intaghand_mpjpe", "hands/intaghand_mpvpe", "hands/internet_mrrpe", "hands/procrustes_pa_mpjpe")


def run_acr(out: Path, overrides: list[str], epochs: int) -> tuple[Any, list[str]]:
    """Fit, test and infer the ACR demo; returns its leaderboard entry and the lines to print.
    ``infer`` failing on ACR is reported and skipped, not fatal."""
    from polyvision.scripts.leaderboard import Entry

    overrides = ["--trainer.max_epochs", str(epochs), *overrides]  # a later --trainer.max_epochs wins
    fit, checkpoint, metrics_path = fit_and_test("acr", ACR_CONFIG, overrides, f" ({epochs} epochs)")

    print("[acr 3/3] infer on test images")
    pictures = out / "inference_acr"
    try:
        from polyvision.scripts.infer import run as run_infer

        fit.datamodule.setup("test")
        predictions, _ = run_infer(checkpoint, pick_hand_images(fit.datamodule), pictures, device="cpu",
                                   batch_size=8)
        hands = [len(p.get("hands", [])) for p in predictions if "path" in p]
        infer_line = (f"  ACR pictures        {pictures}  (*.hands.png, predictions.jsonl; hands found per image: "
                      f"{hands})")
    except Exception as error:  # noqa: BLE001 - the demo goes on without ACR pictures, saying why
        print(f"[acr 3/3] infer failed, skipped: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
        infer_line = f"  ACR pictures        none: infer failed ({type(error).__name__})"

    entry = Entry(name="ACR small (synthetic)", checkpoint=checkpoint, config=ACR_CONFIG, benchmark=None,
                  data={"root": str(fit.datamodule.synthetic_root)})
    lines = [f"  ACR checkpoint      {checkpoint}",
             f"  ACR metrics (mm)    {metrics_path}  {_metrics_line(metrics_path, ACR_SUMMARY)}",
             f"  ACR logs            {fit.trainer.log_dir}",
             infer_line]
    return entry, lines


@contextlib.contextmanager
def one_thread():
    """Torch on one thread inside: CVLNM's small decoder runs many tiny operations, one word at
    a time, so one thread is faster than two, and on cores shared with other work two threads
    wait on each other (a 40x slower training step was measured on 2 busy cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


CVLNM_SUMMARY = ("captions/bleu_1", "captions/bleu_4", "captions/rouge_l", "captions/cider_d")


def pick_caption_images(datamodule, count: int = 4) -> list[Path]:
    """The first ``count`` test images of a ``CaptionDataModule``."""
    datamodule.setup("test")
    return [Path(datamodule.images_dir) / record.file_path for record in datamodule.records["test"][:count]]


def run_cvlnm(out: Path, overrides: list[str], epochs: int) -> tuple[Any, list[str]]:
    """Fit, test and infer the CVLNM demo; returns its leaderboard entry and the lines to print.
    ``infer`` failing is reported and skipped, not fatal."""
    from polyvision.scripts.leaderboard import Entry

    overrides = ["--trainer.max_epochs", str(epochs), *overrides]  # a later --trainer.max_epochs wins
    with one_thread():
        fit, checkpoint, metrics_path = fit_and_test("cvlnm", CVLNM_CONFIG, overrides, f" ({epochs} epochs)")

        print("[cvlnm 3/3] infer on test images (caption, each word's module, captioned picture)")
        pictures = out / "inference_cvlnm"
        try:
            from polyvision.scripts.infer import run as run_infer

            predictions, _ = run_infer(checkpoint, pick_caption_images(fit.datamodule), pictures, device="cpu",
                                       batch_size=8, features=Path(fit.datamodule.feature_dir))
            infer_lines = [f"  CVLNM pictures      {pictures}  (*.caption.png, predictions.jsonl)"]
            for record in predictions[:2]:
                infer_lines.append(f"    {Path(record['path']).name}: {record['captions']['caption']}")
        except Exception as error:  # noqa: BLE001 - the demo goes on without CVLNM pictures, saying why
            print(f"[cvlnm 3/3] infer failed, skipped: {type(error).__name__}: "
                  f"{str(error).splitlines()[0] if str(error) else ''}")
            infer_lines = [f"  CVLNM pictures      none: infer failed ({type(error).__name__})"]

    captions = metrics_path.with_name(metrics_path.name.replace(".test-metrics", ".test-captions"))
    entry = Entry(name="CVLNM small (synthetic)", checkpoint=checkpoint, config=CVLNM_CONFIG, benchmark=None,
                  data={"root": str(fit.datamodule.synthetic_root)})
    lines = [f"  CVLNM checkpoint    {checkpoint}",
             f"  CVLNM metrics       {metrics_path}  {_metrics_line(metrics_path, CVLNM_SUMMARY)}",
             f"  CVLNM test captions {captions}  (coco-caption result JSON)",
             f"  CVLNM logs          {fit.trainer.log_dir}",
             *infer_lines]
    return entry, lines


STATE_SUMMARY = ("frame_auroc_micro", "frame_auroc_macro", "sse_clean", "sse_perturbed")


def run_state(out: Path, overrides: list[str], epochs: int) -> tuple[Any, list[str]]:
    """Fit and test the STATE demo; returns its leaderboard entry and the lines to print."""
    from polyvision.scripts.leaderboard import Entry

    overrides = ["--trainer.max_epochs", str(epochs), *overrides]  # a later --trainer.max_epochs wins
    fit, checkpoint, metrics_path = fit_and_test("state", STATE_CONFIG, overrides, f" ({epochs} epochs)", steps=2)
    datamodule = fit.datamodule
    entry = Entry(name="STATE small (synthetic)", checkpoint=checkpoint, config=STATE_CONFIG, benchmark=None,
                  data={"root": str(datamodule.root), "cache_dir": str(datamodule.cache_root)})
    lines = [f"  STATE checkpoint    {checkpoint}",
             f"  STATE metrics       {metrics_path}  {_metrics_line(metrics_path, STATE_SUMMARY)}",
             f"  STATE logs          {fit.trainer.log_dir}"]
    return entry, lines


HYBRIDNET_SUMMARY = ("v2c/caption/cider_d", *(f"v2c/{task}_{kind}/cider_d" for task in ("completion", "generation")
                                               for kind in ("intention", "effect", "attribute")))


def pick_v2c_videos(datamodule, count: int = 2) -> list[Path]:
    """The video files of the first ``count`` test videos of a ``V2CDataModule``."""
    datamodule.setup("test")
    dataset = datamodule._dataset("test")
    paths: list[Path] = []
    for video, _ in dataset.items:
        path = dataset.video_path(video)
        if path not in paths:
            paths.append(path)
        if len(paths) == count:
            break
    return paths


def run_hybridnet(out: Path, overrides: list[str], epochs: int) -> tuple[Any, list[str]]:
    """Fit, test and infer the HybridNet demo; returns its leaderboard entry and the lines to
    print. ``infer`` failing is reported and skipped, not fatal."""
    from polyvision.scripts.leaderboard import Entry

    overrides = ["--trainer.max_epochs", str(epochs), *overrides]  # a later --trainer.max_epochs wins
    with one_thread():
        fit, checkpoint, metrics_path = fit_and_test("hybridnet", HYBRIDNET_CONFIG, overrides, f" ({epochs} epochs)")

        print("[hybridnet 3/3] infer on two test videos (caption, intention, effect, attribute, contact sheet)")
        pictures = out / "inference_hybridnet"
        datamodule = fit.datamodule
        try:
            from polyvision.scripts.infer import run as run_infer

            predictions, _ = run_infer(checkpoint, pick_v2c_videos(datamodule), pictures, device="cpu", batch_size=2,
                                       features=Path(datamodule.root))
            infer_lines = [f"  HybridNet pictures  {pictures}  (*.commonsense.png, predictions.jsonl)"]
            for record in predictions[:2]:
                said = next((v for v in record.values() if isinstance(v, dict) and "caption" in v), record)  # per head
                infer_lines.append(f"    {Path(record['path']).name}: {said.get('caption')} | intention: "
                                   f"{said.get('intention')} | effect: {said.get('effect')} | attribute: "
                                   f"{said.get('attribute')}")
        except Exception as error:  # noqa: BLE001 - the demo goes on without HybridNet pictures, saying why
            print(f"[hybridnet 3/3] infer failed, skipped: {type(error).__name__}: "
                  f"{str(error).splitlines()[0] if str(error) else ''}")
            infer_lines = [f"  HybridNet pictures  none: infer failed ({type(error).__name__})"]

    results = sorted(metrics_path.parent.glob(metrics_path.name.replace(".test-metrics.json", ".test-commonsense*.json")))
    entry = Entry(name="HybridNet small (synthetic)", checkpoint=checkpoint, config=HYBRIDNET_CONFIG,
                  benchmark=HYBRIDNET_BENCHMARK, data={"root": str(datamodule.synthetic_root)})
    lines = [f"  HybridNet checkpoint {checkpoint}",
             f"  HybridNet metrics   {metrics_path}  {_metrics_line(metrics_path, HYBRIDNET_SUMMARY)}",
             f"  HybridNet test sentences {results[-1] if results else 'none written'}",
             f"  HybridNet logs      {fit.trainer.log_dir}",
             *infer_lines]
    return entry, lines


def test_metrics(checkpoint: Path) -> dict[str, float] | None:
    """The metrics ``polyvision test`` wrote for ``checkpoint`` (``<ckpt>.test-metrics.json``,
    newer than the checkpoint), or None: the leaderboard then tests the checkpoint itself."""
    path = Path(checkpoint).with_suffix(".test-metrics.json")
    try:
        if path.stat().st_mtime < Path(checkpoint).stat().st_mtime:
            return None
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return {str(k): float(v) for k, v in metrics.items()} if isinstance(metrics, dict) and metrics else None


def main(argv: list[str] | None = None) -> int:
    from polyvision.scripts.leaderboard import evaluate, write_leaderboard

    parser = argparse.ArgumentParser(prog="polyvision demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("demo_outputs"))
    parser.add_argument("--system", choices=[*SYSTEMS, "all"], default="all",
                        help="run one system alone (default: all)")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="override every system's epochs (quick runs; ACR's default is %d, CVLNM's %d, "
                             "STATE's %d, HybridNet's %d)" % (ACR_EPOCHS, CVLNM_EPOCHS, STATE_EPOCHS, HYBRIDNET_EPOCHS))
    parser.add_argument("--retest", action="store_true",
                        help="test every checkpoint again for the leaderboard (default: the metrics of its test step)")
    args, extra = parser.parse_known_args(argv)
    sys.argv = sys.argv[:1]  # parsed; the CLIs below get their arguments explicitly
    out = args.output_dir.resolve()
    overrides = ["--trainer.default_root_dir", str(out / "runs"), *extra]
    if args.max_epochs is not None:
        overrides += ["--trainer.max_epochs", str(args.max_epochs)]
    systems = SYSTEMS if args.system == "all" else (args.system,)

    entries, lines = [], []
    for system in systems:
        start = time.perf_counter()
        if system == "omnifd":
            entry, more = run_omnifd(out, overrides)
        elif system == "acr":
            entry, more = run_acr(out, overrides, args.max_epochs or ACR_EPOCHS)
        elif system == "cvlnm":
            entry, more = run_cvlnm(out, overrides, args.max_epochs or CVLNM_EPOCHS)
        elif system == "state":
            entry, more = run_state(out, overrides, args.max_epochs or STATE_EPOCHS)
        else:
            entry, more = run_hybridnet(out, overrides, args.max_epochs or HYBRIDNET_EPOCHS)
        entries.append(entry)
        what = "fit and test" if system == "state" else "fit, test and infer"
        lines += more + [f"  {entry.name}: {what} took {time.perf_counter() - start:.0f} s"]

    print("[leaderboard]")
    entries_file = out / "leaderboard_entries.yaml"
    entries_file.write_text(yaml.safe_dump({"entries": [
        {"name": e.name, "checkpoint": str(e.checkpoint), "config": str(e.config),
         **({"benchmark": e.benchmark} if e.benchmark else {}), "data": e.data} for e in entries]}, sort_keys=False))
    results = []
    for entry in entries:
        tested = test_metrics(entry.checkpoint)
        if tested is not None and not args.retest:  # step 2 tested this checkpoint on the same data
            results.append(tested)
            continue
        with one_thread() if entry.config in (CVLNM_CONFIG, HYBRIDNET_CONFIG) else contextlib.nullcontext():
            results.append(evaluate(entry, accelerator="cpu"))
    paths = write_leaderboard(entries, results, out)

    print("\nDemo finished. Outputs:")
    for line in lines:
        print(line)
    print(f"  leaderboard  {paths['md']}  (.csv, .html beside it; entries {entries_file})")
    return 0
