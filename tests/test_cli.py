"""The `polyvision` command as a user runs it: fit -> test -> infer -> leaderboard, synth,
and one clear line (no traceback, non-zero exit) for each kind of bad input."""
from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml

from helpers import SYNTHETIC_CONFIG, SYNTHETIC_FFPP_CONFIG, assert_one_line_error, run_cli, tiny_fit_args


@pytest.fixture(scope="module")
def trained(tiny_ffpp, tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("runs")
    result = run_cli("fit", *tiny_fit_args(tiny_ffpp, run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = next(run_dir.rglob("last.ckpt"))
    return {"result": result, "checkpoint": checkpoint, "run_dir": run_dir, "data": tiny_ffpp}


def test_fit_writes_checkpoint_and_logs(trained):
    assert "checkpoint: " in trained["result"].stdout
    log_dir = trained["checkpoint"].parent.parent
    assert (log_dir / "csv" / "metrics.csv").is_file()
    assert list(log_dir.glob("events.out.tfevents.*")), "no TensorBoard events"
    assert (log_dir / "config.yaml").is_file()


def test_test_prints_and_saves_metrics_beside_the_checkpoint(trained, tmp_path):
    args = tiny_fit_args(trained["data"], tmp_path)
    result = run_cli("test", *args, "--ckpt_path", str(trained["checkpoint"]))
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads(trained["checkpoint"].with_suffix(".test-metrics.json").read_text())
    for key in ("test/image/acc", "test/image/balanced_acc", "test/image/auc", "test/spatial/pbca",
                "test/spatial/iinc", "test/spatial/soft_iou"):
        assert key in saved and key in result.stdout
        assert 0.0 <= saved[key] <= 1.0


def test_infer_from_the_checkpoint_alone(trained, tmp_path):
    images = sorted((trained["data"] / "FaceForensics++" / "manipulated_sequences").rglob("frames/*/000.png"))[:2]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "inference"
    result = run_cli("infer", "--checkpoint", str(trained["checkpoint"]), *map(str, images), str(corrupt),
                     str(tmp_path / "missing.jpg"), "--output-dir", str(out), cwd=tmp_path)
    assert result.returncode == 1  # two bad inputs, reported; the good ones still processed
    assert "Traceback" not in result.stderr
    assert "corrupt.png: cannot decode image" in result.stderr and "missing.jpg: file not found" in result.stderr
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["path"] for r in records] == [str(p) for p in images]
    for record in records:
        assert record["image"]["label"] in ("real", "fake") and 0 <= record["image"]["score"] <= 1
        assert Path(record["spatial"]["overlay_png"]).is_file() and Path(record["spatial"]["mask_png"]).is_file()
    stdout_records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert stdout_records == records


def test_leaderboard_writes_three_formats(trained, tmp_path):
    entries = tmp_path / "entries.yaml"
    entries.write_text(yaml.safe_dump({"entries": [
        {"name": "tiny", "checkpoint": str(trained["checkpoint"]), "config": str(SYNTHETIC_FFPP_CONFIG),
         "benchmark": "ffpp", "data": {"synthetic": False, "root": str(trained["data"]), "num_workers": 0}},
        {"name": "tiny again", "checkpoint": str(trained["checkpoint"]), "config": str(SYNTHETIC_FFPP_CONFIG),
         "benchmark": "lavdf", "data": {"synthetic": False, "root": str(trained["data"]), "num_workers": 0}},
    ]}))
    result = run_cli("leaderboard", str(entries), "--output-dir", str(tmp_path / "board"))
    assert result.returncode == 0, result.stderr[-3000:]
    markdown = (tmp_path / "board" / "leaderboard.md").read_text()  # one table per benchmark
    ffpp, lavdf = markdown.split("## FaceForensics++ (`ffpp`)")[1].split("## LAV-DF")
    assert "Ranked by image AUC, %" in ffpp and "soft IoU" in ffpp and "| 1 | tiny |" in ffpp
    assert "| tiny again |" in lavdf and "BA-TFD+ (LAV-DF baseline) (reported) | 96.30" in lavdf
    rows = list(csv.DictReader(io.StringIO((tmp_path / "board" / "leaderboard.csv").read_text())))
    assert {(r["benchmark"], r["system"]) for r in rows} >= {("ffpp", "tiny"), ("lavdf", "BA-TFD+ (LAV-DF baseline)")}
    page = (tmp_path / "board" / "leaderboard.html").read_text()
    assert page.count("<table class='board'") == 2 and "<script>" in page


def test_leaderboard_data_overrides_merge_into_nested_sources(tmp_path):
    from polyvision.scripts.leaderboard import build_datamodule

    datamodule = build_datamodule(SYNTHETIC_CONFIG, {"sources": {"video": {"init_args": {"cache_dir": str(tmp_path)}}}})
    video, image = datamodule.sources["video"], datamodule.sources["image"]
    assert Path(video.root) == tmp_path and video.hparams.clip_len == 16  # the rest of the config is kept
    from polyvision.datamodules.cache import cache_dir
    assert Path(image.root) == cache_dir("synthetic", "forgerynet")  # the default location


def test_demo_picks_test_images_and_videos_with_their_true_segments(tmp_path):
    from polyvision.scripts.demo import pick_test_inputs, true_segments_seconds
    from polyvision.scripts.leaderboard import build_datamodule

    options = {"num_videos": 12, "num_images": 12, "min_frames": 32, "max_frames": 32, "frame_size": 64, "face_size": 64}
    datamodule = build_datamodule(SYNTHETIC_CONFIG, {"sources": {
        name: {"init_args": {"cache_dir": str(tmp_path), "synthetic_options": options}} for name in ("image", "video")}})
    datamodule.prepare_data()
    paths, videos = pick_test_inputs(datamodule, images=4, videos=4)
    assert paths and all(p.is_file() for p in paths)
    assert {p.suffix for p in paths} == {".png", ".mp4"} and [Path(v.path) for v in videos] == paths[-len(videos):]
    test_videos = list(datamodule.sources["video"].records("test"))
    fakes = sum(v.label for v in test_videos)
    assert [v.label for v in videos].count(1) == min(3, fakes) and [v.label for v in videos].count(0) == 1
    fake = next(v for v in videos if v.label == 1)
    assert true_segments_seconds(fake) == [(s / 25, e / 25) for s, e in fake.segments] and fake.segments


def test_leaderboard_entries_errors(tmp_path):
    entries = tmp_path / "entries.yaml"
    entries.write_text(yaml.safe_dump({"entries": [{"name": "x", "config": "c.yaml"}]}))
    assert_one_line_error(run_cli("leaderboard", str(entries)), "entries.yaml: entries[0]: missing field 'checkpoint'")


def test_synth_writes_the_real_layout(tmp_path):
    result = run_cli("synth", "ffpp", str(tmp_path / "data"))
    assert result.returncode == 0, result.stderr[-2000:]
    for split in ("train", "val", "test"):
        assert (tmp_path / "data" / "FaceForensics++" / "annotations" / f"{split}.json").is_file()


def test_help_and_unknown_command():
    assert run_cli("--help").returncode == 0
    result = run_cli("nonsense")
    assert result.returncode == 2 and "unknown command 'nonsense'" in result.stderr


@pytest.mark.parametrize("override,fragments", [
    (["--model.init_args.backbone", "nosuchnet"], ["model.backbone: unknown backbone 'nosuchnet'"]),
    (["--model.init_args.heads.image.class_path", "polyvision.heads.nope.Head"],
     ["model.heads", "polyvision.heads.nope.Head"]),
    (["--model.init_args.pretrained", "/no/such/weights.pth"], ["/no/such/weights.pth: pretrained weights file not found"]),
])
def test_bad_model_settings(override, fragments, tiny_ffpp, tmp_path):
    assert_one_line_error(run_cli("fit", *tiny_fit_args(tiny_ffpp, tmp_path), *override), *fragments)


def copy_dataset(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_malformed_annotation_json(tiny_ffpp, tmp_path):
    root = copy_dataset(tiny_ffpp, tmp_path / "data")
    train = root / "FaceForensics++" / "annotations" / "train.json"
    train.write_text(train.read_text()[:-20])
    assert_one_line_error(run_cli("fit", *tiny_fit_args(root, tmp_path)), "train.json")


def test_incomplete_annotation_record(tiny_ffpp, tmp_path):
    root = copy_dataset(tiny_ffpp, tmp_path / "data")
    train = root / "FaceForensics++" / "annotations" / "train.json"
    document = json.loads(train.read_text())
    del document["data_list"][2]["gt_label"]
    train.write_text(json.dumps(document))
    assert_one_line_error(run_cli("fit", *tiny_fit_args(root, tmp_path)), "train.json", "data_list[2]", "gt_label")


def corrupt_first_training_image(root: Path) -> Path:
    train = json.loads((root / "FaceForensics++" / "annotations" / "train.json").read_text())
    image = root / train["data_list"][0]["img_path"]
    image.write_bytes(b"garbage")
    return image


def test_corrupt_image_stops_training_with_one_line(tiny_ffpp, tmp_path):
    root = copy_dataset(tiny_ffpp, tmp_path / "data")
    image = corrupt_first_training_image(root)
    # Through a DataLoader worker, which wraps the error in its own traceback text.
    result = run_cli("fit", *tiny_fit_args(root, tmp_path), "--data.init_args.num_workers", "1",
                     "--trainer.limit_train_batches", "20")
    assert_one_line_error(result, f"{image.name}: cannot decode image")


def test_skip_bad_samples_finishes_and_reports(tiny_ffpp, tmp_path):
    root = copy_dataset(tiny_ffpp, tmp_path / "data")
    corrupt_first_training_image(root)
    result = run_cli("fit", *tiny_fit_args(root, tmp_path), "--data.init_args.skip_bad_samples", "true",
                     "--trainer.limit_train_batches", "20")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped 1 bad samples during train" in result.stdout


def test_mask_of_the_wrong_size(tiny_ffpp, tmp_path):
    from PIL import Image

    root = copy_dataset(tiny_ffpp, tmp_path / "data")
    train = json.loads((root / "FaceForensics++" / "annotations" / "train.json").read_text())
    record = next(r for r in train["data_list"] if r.get("seg_map_path"))
    Image.new("L", (10, 10)).save(root / record["seg_map_path"])
    result = run_cli("fit", *tiny_fit_args(root, tmp_path), "--trainer.limit_train_batches", "20",
                     "--model.init_args.scheduler", "null")
    assert_one_line_error(result, Path(record["seg_map_path"]).name, "mask is 10x10")


def test_benchmark_train_and_test_report_throughput(tiny_ffpp, tmp_path):
    data = ["--data.init_args.synthetic", "false", "--data.init_args.root", str(tiny_ffpp),
            "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "4"]
    for mode in ("train", "test"):
        result = run_cli("benchmark", mode, "--config", str(SYNTHETIC_FFPP_CONFIG), "--steps", "2", "--warmup", "1", *data)
        assert result.returncode == 0, result.stderr[-3000:]
        for measure in ("step_time_median_s", "samples_per_s", "tflops_per_s", "peak_memory_gb"):
            assert measure in result.stdout
    # the bare torchvision swin3d_t, same run, same inputs (images as one-frame clips)
    report = tmp_path / "bench.json"
    result = run_cli("benchmark", "train", "--config", str(SYNTHETIC_FFPP_CONFIG), "--steps", "1", "--warmup", "0",
                     "--baseline", "swin3d_t", "--json", str(report), *data)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(report.read_text())["results"]
    assert set(results) == {"model", "bare swin3d_t"} and "bare swin3d_t" in result.stdout
    model, bare = results["model"], results["bare swin3d_t"]
    assert bare["samples_per_step"] == model["samples_per_step"] == 4
    # the full-size swin3d_t does far more work per sample than the small config's trunk
    assert bare["gflops_per_step"] > 5 * model["gflops_per_step"] > 0
