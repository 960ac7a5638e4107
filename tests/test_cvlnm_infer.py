"""``polyvision infer`` and ``polyvision test`` on CVLNM checkpoints: the printed caption with
each word's module, the JSON record, the captioned picture (region strip, boxes, grid heat
map), region features looked up by image stem or id, the one-line error of a region checkpoint
without ``--features``, and the coco-caption result JSON that ``test`` writes beside its
metrics. Tiny untrained models (in process), and one fit + test + infer of the synthetic config
for a single batch, in process too."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from polyvision.errors import DataError
from polyvision.scripts import infer
from polyvision.scripts.caption_pictures import (
    CaptionResults,
    feature_file,
    grid_shape,
    write_caption_results,
)

VOCABULARY = ["a", "red", "blue", "circle", "square", "left", "of", "above", "small", "big"]
WIDTH = 24
TINY_HEAD = dict(vocabulary_size=len(VOCABULARY), rnn_size=32, word_size=16, attention_hidden=16, memory_size=12,
                 controller_heads=4, verb_heads=4, verb_feedforward=32, beam_size=2, max_length=6)


# Decoders run many small operations: one thread is faster than two on shared cores.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def save_checkpoint(model, path: Path) -> Path:
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


def tiny_cvlnm(grid: bool):
    from polyvision.heads.captioning import CVLNMHead
    from polyvision.models.cvlnm import CVLNM

    torch.manual_seed(0)
    head = CVLNMHead(**TINY_HEAD)
    if grid:
        geometry = {"captions": {"input": "image", "size": [64, 96], "max_length": 16, "vocabulary": VOCABULARY}}
        model = CVLNM(heads={"captions": head}, backbone="resnet10t", backbone_kwargs={"out_indices": [2]},
                      pretrained=None, input_keys=["image"], input_geometry=geometry)
    else:
        geometry = {"captions": {"input": "regions", "feature_dim": WIDTH, "max_length": 16, "vocabulary": VOCABULARY}}
        model = CVLNM(heads={"captions": head}, backbone={"class_path": "polyvision.models.cvlnm.RegionFeatures",
                                                          "init_args": {"channels": WIDTH}}, input_geometry=geometry)
    with torch.no_grad():  # untrained, yet every caption runs to max_length: words to show
        head.logit.bias[0] = -30.0
    return model


def write_image(path: Path, size=(40, 60)) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def records_of(out: Path) -> dict[str, dict]:
    lines = (out / "predictions.jsonl").read_text().splitlines()
    return {Path(r["path"]).name: r for r in map(json.loads, lines)}


def test_region_checkpoint_captions_pictures_and_modules(tmp_path, capsys):
    checkpoint = save_checkpoint(tiny_cvlnm(grid=False), tmp_path / "regions.ckpt")
    images, features = tmp_path / "images", tmp_path / "features"
    images.mkdir(), features.mkdir()
    write_image(images / "scene.png")
    write_image(images / "COCO_val2014_000000000042.jpg")
    write_image(images / "orphan.png")
    rng = np.random.default_rng(1)
    boxes = np.array([[0, 0, 20, 20], [10, 5, 50, 35], [30, 10, 59, 39]], dtype=np.float32)
    np.savez(features / "scene.npz", feat=rng.normal(size=(3, WIDTH)).astype(np.float32), boxes=boxes)
    np.save(features / "42.npy", rng.normal(size=(5, WIDTH)).astype(np.float32))  # by image id, no boxes
    out = tmp_path / "out"

    code = infer.main(["--checkpoint", str(checkpoint), str(images), "--features", str(features),
                       "--output-dir", str(out), "--device", "cpu"])
    assert code == 1  # orphan.png has no features: reported, the others still captioned
    captured = capsys.readouterr()
    assert "orphan.png: no region features for this image" in captured.err
    records = records_of(out)
    assert sorted(records) == ["COCO_val2014_000000000042.jpg", "scene.png"]
    for name, regions in (("scene.png", 3), ("COCO_val2014_000000000042.jpg", 5)):
        prediction = records[name]["captions"]
        words = prediction["caption"].split()
        assert len(words) == TINY_HEAD["max_length"] and all(word in VOCABULARY for word in words) and len(prediction["tokens"]) == len(words)
        assert len(prediction["modules"]) == len(words)
        assert set(prediction["modules"]) <= {"function", "noun", "verb", "adjective"}
        assert [len(row) for row in prediction["region_attention"]] == [regions] * len(words)
        assert all(abs(sum(row) - 1) < 1e-3 for row in prediction["region_attention"])
        picture = Path(prediction["caption_png"])
        assert picture.name == Path(name).stem + ".caption.png" and Image.open(picture).size[0] > 300
        # printed: the caption, then each word with the module the controller weighted most
        pairs = " ".join(f"{w}/{m}" for w, m in zip(words, prediction["modules"]))
        assert f"{images / name}: {prediction['caption']}\n  {pairs}\n" in captured.out

    # the image alone has no regions: one clear error naming the checkpoint and the option
    with pytest.raises(DataError, match=r"regions.ckpt: .*--features DIR"):
        infer.run(checkpoint, [images / "scene.png"], tmp_path / "none", "cpu", 4)


def test_grid_checkpoint_heat_map_picture(tmp_path, capsys):
    checkpoint = save_checkpoint(tiny_cvlnm(grid=True), tmp_path / "grid.ckpt")
    image = write_image(tmp_path / "photo.jpg", size=(50, 80))
    results, errors = infer.run(checkpoint, [image], tmp_path / "out", "cpu", 4)
    assert errors == []
    prediction = results[0]["captions"]
    cells = {len(row) for row in prediction["region_attention"]}
    assert cells == {96} and grid_shape(96, [64, 96]) == (8, 12)  # resnet10t's stride 8 on the 64x96 input
    assert Path(prediction["caption_png"]).is_file()
    assert "photo.jpg: " in capsys.readouterr().out


def test_feature_lookup_by_stem_then_id(tmp_path):
    (tmp_path / "7.npz").write_bytes(b"")
    (tmp_path / "pic.npy").write_bytes(b"")
    assert feature_file(tmp_path, Path("COCO_train2014_000000000007.jpg")).name == "7.npz"
    assert feature_file(tmp_path, Path("x/pic.png")).name == "pic.npy"
    with pytest.raises(DataError, match="looked for other.npz/.npy"):
        feature_file(tmp_path, Path("other.png"))
    assert grid_shape(49, [224, 224]) == (7, 7) and grid_shape(7, [224, 224]) in ((1, 7), (7, 1), None)


def test_result_json_beside_metrics_never_overwritten(tmp_path):
    collector = CaptionResults()

    class Head:
        @staticmethod
        def decode_words(tokens):
            return [" ".join(VOCABULARY[t - 1] for t in row if t) for row in tokens.tolist()]

    batch = {"meta": [{"image_id": 5}, {"image_id": 9}]}
    collector.update("test", "captions", Head, {"tokens": torch.tensor([[1, 2, 4, 0], [1, 3, 5, 0]])}, batch)
    collector.update("test", "captions", Head, {"tokens": torch.tensor([[1, 2, 4, 0]])}, {"meta": [{"image_id": 5}]})
    assert collector.compute("test", None) == {}
    metrics = tmp_path / "last.test-metrics.json"
    first = write_caption_results(collector, metrics)
    second = write_caption_results(collector, tmp_path / "last.test-metrics-2.json")
    assert [p.name for p in first + second] == ["last.test-captions.json", "last.test-captions-2.json"]
    assert json.loads(first[0].read_text()) == [{"image_id": 5, "caption": "a red circle"},
                                                {"image_id": 9, "caption": "a blue square"}]


def test_synthetic_fit_test_writes_result_json_and_infer_reads_its_features(tmp_path, capsys, monkeypatch):
    """One batch of the demo's config through the CLI code in process: ``test`` prints the
    coco-caption scores and writes the result JSON; ``infer`` captions two test images."""
    from polyvision.models.factory import CONFIG_DIR
    from polyvision.scripts.lightning_cli import PolyvisionCLI

    monkeypatch.setattr(sys, "argv", sys.argv[:1])
    config = str(CONFIG_DIR / "cvlnm" / "synthetic.yaml")
    data = tmp_path / "data"
    small = ["--data.init_args.root", str(data), "--data.init_args.num_workers", "0",
             "--data.init_args.batch_size", "8", "--data.init_args.synthetic_options",
             "{num_images_per_split: {train: 16, val: 8, test: 8}}", "--trainer.enable_progress_bar", "false"]
    small += ["--model.init_args.heads.captions.init_args.vocabulary_size", str(len(synthetic_vocabulary(data)))]
    fit = PolyvisionCLI(["fit", "--config", config, *small, "--trainer.default_root_dir", str(tmp_path / "runs"),
                         "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
                         "--trainer.limit_val_batches", "1"])
    checkpoint = Path(fit.trainer.checkpoint_callback.last_model_path)
    PolyvisionCLI(["test", "--config", config, *small, "--ckpt_path", str(checkpoint)])
    printed = capsys.readouterr().out
    for name in ("bleu_1", "bleu_4", "rouge_l", "cider_d"):
        assert f"test/captions/{name}" in printed
    results = json.loads(checkpoint.with_name("last.test-captions.json").read_text())
    assert len(results) == 8 and all(set(r) == {"image_id", "caption"} and isinstance(r["image_id"], int)
                                     for r in results)
    assert f"captions: {checkpoint.with_name('last.test-captions.json')}" in printed

    coco = data / "coco"
    pictures = sorted((coco / "val2014").glob("COCO_val2014_0000003*.jpg"))[:2]  # test split ids 300000+
    results, errors = infer.run(checkpoint, pictures, tmp_path / "inference", "cpu", 8,
                                features=coco / "cocobu_att")
    assert errors == [] and len(results) == 2
    assert all(Path(r["captions"]["caption_png"]).is_file() for r in results)


def synthetic_vocabulary(root: Path) -> list[str]:
    """The synthetic data's vocabulary at the test's size (its word count sets the head)."""
    from polyvision.datamodules.captions.datamodule import CaptionDataModule

    options = {"num_images_per_split": {"train": 16, "val": 8, "test": 8}}
    datamodule = CaptionDataModule(root=str(root), synthetic_options=options, num_workers=0)
    datamodule.prepare_data()
    return datamodule.input_geometry()["captions"]["vocabulary"]
