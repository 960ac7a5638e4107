"""``polyvision test`` and ``polyvision infer`` on HybridNet checkpoints: the per-task V2C
tables built from a metrics dict, the test predictions JSON (never overwritten), and one fit +
test + infer of the synthetic config (a tiny data set, one training batch) in process: both
tables printed, the predictions JSON, infer's JSON records and contact sheets, and the
one-line errors of a features checkpoint without ``--features`` or with a feature file missing; a
tiny pixels checkpoint (video Swin) reading clips of its recorded geometry."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from PIL import Image
from polyvision.scripts.commonsense import (
    CommonsenseResults,
    commonsense_tables,
    feature_files,
    write_commonsense_results,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
KEYS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d")
TYPES = ("intention", "effect", "attribute")


def v2c_metrics(meteor: bool) -> dict[str, float]:
    metrics = {"test/loss": 4.25, "test/v2c/caption/spice": 0.5}
    for output in ("caption", *(f"{task}_{kind}" for task in ("completion", "generation") for kind in TYPES)):
        for index, key in enumerate(KEYS + (("meteor",) if meteor else ())):
            metrics[f"test/v2c/{output}/{key}"] = 0.1 * index + 0.01234
    return metrics


def test_tables_one_per_task_rows_columns_and_the_rest():
    tables, rest = commonsense_tables(v2c_metrics(meteor=False))
    assert [t["title"] for t in tables] == ["V2C completion", "V2C generation"]
    completion, generation = tables
    assert completion["columns"] == ["CIDEr-D", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L"]
    assert [row[0] for row in completion["rows"]] == ["intention", "effect", "attribute"]
    assert [row[0] for row in generation["rows"]] == ["caption", "intention + caption", "effect + caption",
                                                      "attribute + caption"]
    # x100, one decimal: cider_d is KEYS[5] -> 0.51234 -> 51.2; bleu_1 -> 1.2
    assert completion["rows"][0][1:] == ["51.2", "1.2", "11.2", "21.2", "31.2", "41.2"]
    assert rest == {"test/loss": 4.25, "test/v2c/caption/spice": 0.5}  # what no table shows stays flat

    tables, _ = commonsense_tables(v2c_metrics(meteor=True))
    assert tables[0]["columns"][5] == "METEOR" and tables[1]["rows"][0][6] == "61.2"

    # a model without V2C keys (a captioner): no tables, every metric flat
    plain = {"test/captions/bleu_1": 0.7, "test/captions/cider_d": 1.1, "test/loss": 2.0}
    assert commonsense_tables(plain) == ([], plain)
    # completion only: one table, missing scores shown as '-'
    partial = {"test/v2c/completion_intention/cider_d": 0.5}
    tables, rest = commonsense_tables(partial)
    assert [t["title"] for t in tables] == ["V2C completion"] and rest == {}
    assert tables[0]["rows"] == [["intention", "50.0", "-", "-", "-", "-", "-"]]


def test_predictions_json_beside_metrics_never_overwritten(tmp_path):
    from polyvision.heads.commonsense import HybridNetHead

    head = HybridNetHead()
    head.vocabulary, head.cms_vocabulary = ["a", "circle", "moves"], ["to", "reach", "it", "calm"]
    outputs = {"caption": torch.tensor([[1, 2, 3, 0], [1, 2, 0, 0]]),
               **{f"generation_{kind}": torch.tensor([[1, 2, 0], [4, 0, 0]]) for kind in TYPES},
               **{f"completion_{kind}": torch.tensor([[3, 0, 0], [4, 0, 0]]) for kind in TYPES}}
    batch = {"meta": [{"video_id": 7, "caption_index": 1}, {"video_id": 3, "caption_index": 0}]}
    collector = CommonsenseResults()
    collector.update("test", "v2c", head, outputs, batch)
    collector.update("test", "v2c", head, outputs, batch)  # a repeated sample (DDP padding) is kept once
    collector.update("test", "other", object(), outputs, batch)  # not a HybridNet head: ignored
    assert collector.compute("test", None) == {}
    first = write_commonsense_results(collector, tmp_path / "last.test-metrics.json")
    second = write_commonsense_results(collector, tmp_path / "last.test-metrics-2.json")
    assert [p.name for p in first + second] == ["last.test-commonsense.json", "last.test-commonsense-2.json"]
    items = json.loads(first[0].read_text())
    assert items[0] == {"video_id": 3, "caption_index": 0, "caption": "a circle", "intention": "calm",
                        "effect": "calm", "attribute": "calm",
                        "completion": {"intention": "calm", "effect": "calm", "attribute": "calm"}}
    assert [(i["video_id"], i["caption"], i["intention"]) for i in items] == [(3, "a circle", "calm"),
                                                                              (7, "a circle moves", "to reach")]


def test_synthetic_fit_test_tables_and_infer(tmp_path, capsys, monkeypatch):
    """The synthetic config on 6/3/3 videos, one training batch, through the CLI code in
    process; then infer on two test videos with their V2C feature folder."""
    from polyvision.cli import main as cli_main
    from polyvision.models.factory import CONFIG_DIR
    from polyvision.scripts.lightning_cli import PolyvisionCLI

    monkeypatch.setattr(sys, "argv", sys.argv[:1])
    config = str(CONFIG_DIR / "hybridnet" / "synthetic.yaml")
    data = tmp_path / "data"
    small = ["--data.init_args.root", str(data), "--data.init_args.num_workers", "0",
             "--data.init_args.batch_size", "12", "--data.init_args.synthetic_options",
             "{num_videos_per_split: {train: 6, val: 3, test: 3}, max_frames: 16}",
             "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
             "--trainer.log_every_n_steps", "1"]
    fit = PolyvisionCLI(["fit", "--config", config, *small, "--trainer.default_root_dir", str(tmp_path / "runs"),
                         "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
                         "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0"])
    checkpoint = Path(fit.trainer.checkpoint_callback.last_model_path)
    capsys.readouterr()
    PolyvisionCLI(["test", "--config", config, *small, "--ckpt_path", str(checkpoint)])
    printed = capsys.readouterr().out
    assert "V2C completion" in printed and "V2C generation" in printed
    assert "attribute + caption" in printed and "CIDEr-D" in printed and "test/loss" in printed
    assert "test/v2c/completion_intention/cider_d" not in printed  # in a table, not flat
    metrics = json.loads(checkpoint.with_name("last.test-metrics.json").read_text())
    assert "test/v2c/completion_intention/cider_d" in metrics  # the JSON keeps every key
    predictions = checkpoint.with_name("last.test-commonsense.json")
    assert f"predictions: {predictions}" in printed
    items = json.loads(predictions.read_text())
    assert len(items) == 9  # 3 test videos x 3 caption entries
    for item in items:
        assert set(item) == {"video_id", "caption_index", "caption", "intention", "effect", "attribute", "completion"}
        assert isinstance(item["video_id"], int) and set(item["completion"]) == set(TYPES)

    v2c = data / "v2c"
    test_ids = json.loads((v2c / "v2c_info.json").read_text())["videos"]["test"][:2]
    videos = [v2c / "videos" / f"video{i}.mp4" for i in test_ids]
    out = tmp_path / "inference"
    assert cli_main(["infer", "--checkpoint", str(checkpoint), *map(str, videos), "--features", str(v2c),
                     "--output-dir", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [Path(r["path"]).name for r in records] == [v.name for v in videos]
    for record, video in zip(records, videos):
        prediction = record["v2c"]
        assert set(prediction) == {"caption", *TYPES, "commonsense_png"}
        picture = Path(prediction["commonsense_png"])
        assert picture.name == f"{video.stem}.commonsense.png" and Image.open(picture).size[0] > 900
        assert f"{video}:\n  caption:   {prediction['caption']}\n" in printed
        assert f"  attribute: {prediction['attribute']}\n" in printed

    # a features checkpoint without --features: one line saying what to pass, non-zero exit
    assert cli_main(["infer", "--checkpoint", str(checkpoint), str(videos[0]), "--output-dir", str(out)]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "add --features DIR" in error and "feats/resnet152/<stem>.npy" in error

    # a missing feature file: one line naming it, the other video still captioned
    partial = tmp_path / "partial"
    for name, path in feature_files(v2c, videos[0].stem).items():
        target = partial / path.relative_to(v2c)
        target.parent.mkdir(parents=True, exist_ok=True)
        if name != "motion":
            shutil.copy(path, target)
    for path in feature_files(v2c, videos[1].stem).values():
        shutil.copy(path, partial / path.relative_to(v2c))
    assert cli_main(["infer", "--checkpoint", str(checkpoint), *map(str, videos), "--features", str(partial),
                     "--output-dir", str(out), "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    missing = feature_files(partial, videos[0].stem)["motion"]
    errors = [line for line in captured.err.splitlines() if line.startswith("error")]
    assert errors == [f"error: {missing}: feature file not found"]
    assert f"{videos[1]}:\n  caption:" in captured.out and (out / "predictions-2.jsonl").is_file()


def test_pixels_checkpoint_reads_one_clip_of_the_recorded_geometry(tmp_path, capsys):
    """A checkpoint on decoded clips (a tiny video Swin): infer cuts the clip the geometry
    records, needs no --features, and writes the records and contact sheets."""
    from polyvision.datamodules.captions.synthetic_v2c import write_synthetic_v2c
    from polyvision.datamodules.geometry import clip_geometry
    from polyvision.heads.commonsense import HybridNetHead
    from polyvision.models.hybridnet import HybridNet, VideoModalityEncoder
    from polyvision.scripts import infer

    torch.manual_seed(0)
    words = {"vocabulary": ["a", "red", "circle", "moves"], "cms_vocabulary": ["to", "reach", "it", "fast"]}
    geometry = {"v2c": {**clip_geometry(4, 2, 32), **words}}
    head = HybridNetHead(dim=16, layers=1, heads=2, head_dim=8, inner=32, beam_size=1,
                         max_lengths={"caption": 5, "intention": 4, "effect": 4, "attribute": 3})
    model = HybridNet(heads={"v2c": head}, backbone="swin3d_t", pretrained=None,
                      backbone_kwargs={"embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]},
                      neck=VideoModalityEncoder(dim=16, modalities=["appearance"]), input_keys=["video"],
                      input_geometry=geometry)
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "pixels.ckpt")
    seen = []  # the clips the model reads
    write_synthetic_v2c(tmp_path / "data", num_videos_per_split={"train": 1, "val": 1, "test": 2}, max_frames=16)
    videos = tmp_path / "data" / "v2c" / "videos"
    forward = model.__class__.extract_features

    def spy(self, batch):
        seen.append(tuple(batch["video"].shape))
        return forward(self, batch)

    with mock.patch.object(HybridNet, "extract_features", spy):
        results, errors = infer.run(tmp_path / "pixels.ckpt", [videos], tmp_path / "out", "cpu", 8)
    assert errors == [] and len(results) == 4  # the folder's videos
    assert seen and all(shape[1:] == (3, 4, 32, 32) for shape in seen)  # (B, 3, clip_len, size, size)
    for record in results:
        assert set(record["v2c"]) == {"caption", *TYPES, "commonsense_png"}
        assert Path(record["v2c"]["commonsense_png"]).is_file()
    assert "caption:" in capsys.readouterr().out
