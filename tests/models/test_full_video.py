"""Evaluation of clips cut from longer videos: the first-window (released-code) protocol and
the full-video protocol (windows merged per video) are both reported."""
from __future__ import annotations

import pytest
import torch

import polyvision
from helpers import tiny_unified_omnifd, window_batch


def test_first_window_and_full_video_metrics(monkeypatch):
    torch.manual_seed(0)
    model = tiny_unified_omnifd().eval()
    logged: dict[str, float] = {}
    monkeypatch.setattr(model, "log", lambda name, value, **kw: logged.__setitem__(name, float(value)))
    monkeypatch.setattr(model, "log_dict", lambda values, **kw: logged.update({k: float(v) for k, v in values.items()}))
    batches = [window_batch(["a", "b"], [0, 0], seed=1), window_batch(["a", "b"], [1, 1], seed=2)]
    batches[0]["label"] = torch.tensor([1, 0])
    batches[1]["label"] = torch.tensor([1, 0])
    with torch.no_grad():
        for batch in batches:
            model.test_step(batch, 0)
        scores = {}
        for batch in batches:
            for meta, prediction in zip(batch["meta"], model.heads["video"].predict(model(batch)["video"], batch)):
                scores.setdefault(meta["video_id"], []).append(prediction["score"])
        full_video = model.evaluation_protocols[0]  # OmniFD's default: FullVideoEvaluation
        buffered = full_video.buffers["test"][("video", "a")]
        assert sorted(buffered["windows"]) == [0, 1] and buffered["target"]["label"] == 1
        merged = model.heads["video"].merge_windows([buffered["windows"][0], buffered["windows"][1]])
        assert merged["score"] == pytest.approx(sum(scores["a"]) / 2, abs=1e-5)
        model.on_test_epoch_end()
    for key in ("test/video/auc", "test/video_full/auc", "test/temporal/map", "test/temporal_full/map",
                "test/temporal_full/ar@10"):
        assert key in logged, sorted(logged)
    assert "test" not in full_video.buffers


def test_full_video_evaluation_is_a_configured_component(tmp_path):
    """OmniFD holds ``FullVideoEvaluation`` by default; ``evaluation: []`` scores every window
    with the standard metrics and logs no whole-video metric; the heads it merges are those
    implementing ``WindowMergingHead``."""
    from polyvision.heads.base import WindowMergingHead
    from polyvision.models.evaluation import FullVideoEvaluation

    model = tiny_unified_omnifd()
    assert [type(p) for p in model.evaluation_protocols] == [FullVideoEvaluation]
    assert {name for name, head in model.heads.items() if not isinstance(head, WindowMergingHead)} == {"spatial"}
    second_windows = window_batch(["a", "b"], [1, 1], seed=1)
    logged: dict[str, float] = {}
    for evaluation, first_window_only in ((None, True), ([], False)):
        model = tiny_unified_omnifd(evaluation=evaluation).eval()
        model.log = lambda *args, **kwargs: None
        model.log_dict = lambda values, **kwargs: logged.update(values)
        with torch.no_grad():
            model.test_step(second_windows, 0)
        assert model.test_metrics["video"]["auc"].update_count == (0 if first_window_only else 1)
        model.on_test_epoch_end()
        assert ("test/video_full/auc" in logged) is first_window_only
        logged.clear()
    explicit = tiny_unified_omnifd(evaluation=[FullVideoEvaluation()])
    assert explicit.hparams.evaluation == [{"class_path": "polyvision.models.evaluation.FullVideoEvaluation",
                                            "init_args": {}}]
    save_checkpoint(explicit, tmp_path / "explicit.ckpt")
    assert [type(p) for p in polyvision.load_model(tmp_path / "explicit.ckpt").evaluation_protocols] == [FullVideoEvaluation]


def test_eval_sources_route_validation_and_test_batches():
    """ForgeryNet's test reads video classification and temporal localization from separate
    clips: ``eval_sources`` routes them; training and inference keep ``sources``."""
    from polyvision.errors import ConfigError

    model = tiny_unified_omnifd(eval_sources={"video": ["video"], "temporal": ["temporal"]}).eval()
    assert model.heads_for("video") == ["video", "temporal"] and model.heads_for("video", evaluation=True) == ["video"]
    assert model.heads_for("temporal", evaluation=True) == ["temporal"]
    assert model.heads_for("image", evaluation=True) == ["image", "spatial"]  # not named: follows sources
    batch = window_batch(["a", "b"], [0, 0], seed=1)
    with torch.no_grad():
        assert set(model(batch)) == {"video", "temporal"}
        model.log = lambda *args, **kwargs: None
        model.test_step(batch, 0)
        assert model.test_metrics["video"]["auc"].update_count == 1
        assert all(m.update_count == 0 for m in model.test_metrics["temporal"].values())
        model.test_step(dict(window_batch(["c"], [0], seed=2), source="temporal"), 0)
        assert all(m.update_count == 1 for m in model.test_metrics["temporal"].values())
        assert model.test_metrics["video"]["auc"].update_count == 1
    with pytest.raises(ConfigError, match="model.eval_sources.video: unknown head 'nope'"):
        tiny_unified_omnifd(eval_sources={"video": ["nope"]})


def test_video_windows_merge_by_mean_or_most_fake_window():
    from polyvision.errors import ConfigError
    from polyvision.heads.classification import ClassificationHead

    windows = [{"probabilities": {"real": 0.9, "fake": 0.1}}, {"probabilities": {"real": 0.2, "fake": 0.8}},
               {"probabilities": {"real": 0.6, "fake": 0.4}}]
    mean = ClassificationHead(["real", "fake"]).merge_windows(windows)
    assert mean["score"] == pytest.approx(1.3 / 3) and mean["label"] == "real" and mean["windows"] == 3
    most_fake = ClassificationHead(["real", "fake"], window_merge="max").merge_windows(windows)
    assert most_fake["probabilities"] == {"real": 0.2, "fake": 0.8} and most_fake["label"] == "fake"
    with pytest.raises(ConfigError, match="window_merge must be 'mean' or 'max'"):
        ClassificationHead(window_merge="median")


def test_temporal_windows_merge_into_video_seconds():
    model = tiny_unified_omnifd()
    head = model.heads["temporal"]
    merged = head.merge_windows([
        {"segments": [[0.2, 0.6], [1.0, 1.2]], "scores": [0.9, 0.3], "unit": "seconds"},
        {"segments": [[0.2, 0.6], [1.0, 1.4]], "scores": [0.8, 0.7], "unit": "seconds"},
    ])
    assert merged["segments"][0] == [0.2, 0.6] and merged["scores"][0] == pytest.approx(0.9)
    # the duplicate of the best segment is decayed by exp(-1/0.7), not kept at 0.8
    duplicate = [s for seg, s in zip(merged["segments"], merged["scores"]) if seg == [0.2, 0.6]][1:]
    assert all(s == pytest.approx(0.8 * torch.exp(torch.tensor(-1 / 0.7)).item(), rel=1e-4) for s in duplicate)
    preds, target = head.metric_inputs_from_predictions([merged], [{"segments_seconds": [[0.2, 0.6]]}])
    assert preds[0].shape[1] == 3 and target[0].tolist() == [[pytest.approx(0.2), pytest.approx(0.6)]]


def test_unified_paper_parameter_counts():
    """≈58 M (Swin-T) and ≈80 M (Swin-S) unified, estimated from the module shapes of OmniFD's
    official code (github.com/haotianll/OmniFD)."""
    for name, expected in (("omnifd_swin_t", 58e6), ("omnifd_swin_s", 80e6)):
        model = polyvision.create_model(name)
        heads = {k: sum(p.numel() for p in h.parameters()) for k, h in model.heads.items()}
        total = sum(p.numel() for p in model.parameters())
        print(f"{name}: total {total / 1e6:.2f} M, heads " + ", ".join(f"{k} {v / 1e6:.3f} M" for k, v in heads.items()))
        assert set(heads) == {"image", "spatial", "video", "temporal"}
        assert heads["temporal"] == pytest.approx(14.1e6, rel=0.01)
        assert total == pytest.approx(expected, rel=0.01)


def write_video(path, frames: int = 20, side: int = 48, fps: int = 10):
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        for index in range(frames):
            image = np.full((side, side, 3), (index * 12) % 255, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def save_checkpoint(model, path):
    """What load_model needs from a Lightning checkpoint: hyper-parameters, weights, class."""
    import torch

    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)


def test_infer_on_a_video_gives_score_segments_and_timeline(tmp_path):
    import json

    from helpers import run_cli

    video = tmp_path / "clip.mp4"
    write_video(video)
    model = tiny_unified_omnifd()  # 8-frame clips, every frame
    result = model.predict_video(video, tmp_path, "clip")
    assert result["video"]["windows"] == 3  # 20 frames: windows at 0, 8 and one ending at frame 20
    assert 0.0 <= result["video"]["score"] <= 1.0
    assert all(0.0 <= a <= b <= 2.0 for a, b in result["temporal"]["segments"])
    assert (tmp_path / "clip.timeline.png").stat().st_size > 0
    save_checkpoint(model, tmp_path / "unified.ckpt")
    out = tmp_path / "out"
    cli = run_cli("infer", "--checkpoint", str(tmp_path / "unified.ckpt"), str(video), "--output-dir", str(out))
    assert cli.returncode == 0, cli.stderr[-2000:]
    record = json.loads((out / "predictions.jsonl").read_text())
    assert record["path"] == str(video) and {"video", "temporal", "timeline_png"} <= set(record)
    assert (out / "clip.timeline.png").is_file()


def test_image_only_checkpoint_refuses_a_video(tmp_path):
    from helpers import run_cli, tiny_omnifd

    video = tmp_path / "clip.mp4"
    write_video(video)
    save_checkpoint(tiny_omnifd("swin3d_t"), tmp_path / "image.ckpt")
    cli = run_cli("infer", "--checkpoint", str(tmp_path / "image.ckpt"), str(video), "--output-dir", str(tmp_path / "o"))
    assert cli.returncode == 1 and "clip.mp4: this model was trained on image inputs, not video" in cli.stderr


def test_unified_synthetic_config_trains_and_tests_through_the_cli(tmp_path):
    """Two steps of unified image + clip training, then the test reports both protocols."""
    from helpers import fit_then_test
    from polyvision.models.factory import CONFIG_DIR

    small = '{num_videos: 8, num_images: 8, min_frames: 24, max_frames: 40}'
    common = ["--config", str(CONFIG_DIR / "omnifd" / "synthetic.yaml"),
              "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false",
              "--trainer.limit_val_batches", "1"]
    for source, batch in (("image", "4"), ("video", "2")):
        prefix = f"--data.init_args.sources.{source}.init_args."
        common += [prefix + "cache_dir", str(tmp_path / "data"), prefix + "synthetic_options", small,
                   prefix + "batch_size", batch, prefix + "num_workers", "0"]
    _, _, metrics = fit_then_test(tmp_path, *common, fit_args=("--trainer.max_steps", "2"))
    for key in ("test/image/auc", "test/spatial/soft_iou", "test/spatial/iou@0.1", "test/spatial/l1",
                "test/video/auc", "test/video_full/auc",
                "test/temporal/ap@0.5", "test/temporal_full/ap@0.5"):
        assert key in metrics, sorted(metrics)


def test_eval_only_temporal_source_through_the_cli(tmp_path):
    """The ForgeryNet configs' test layout on the small model: video classification from the
    training clips, temporal localization from a longer eval-only clip source."""
    import copy

    import yaml

    from helpers import fit_then_test
    from polyvision.models.factory import CONFIG_DIR

    config = yaml.safe_load((CONFIG_DIR / "omnifd" / "synthetic.yaml").read_text())
    model, data = config["model"]["init_args"], config["data"]["init_args"]
    model["eval_sources"] = {"video": ["video"], "temporal": ["temporal"]}
    model["heads"]["temporal"]["init_args"]["eval_window_size"] = 64
    temporal = copy.deepcopy(data["sources"]["video"])
    temporal["init_args"].update(clip_len=32, source="temporal")
    data["sources"]["temporal"] = temporal
    data["eval_only"] = ["temporal"]
    small = {"num_videos": 8, "num_images": 16, "min_frames": 24, "max_frames": 80}
    for source in data["sources"].values():
        source["init_args"].update(cache_dir=str(tmp_path / "data"), num_workers=0, batch_size=2,
                                   synthetic_options=small)
    path = tmp_path / "eval_only.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    common = ["--config", str(path), "--trainer.default_root_dir", str(tmp_path / "runs"),
              "--trainer.enable_progress_bar", "false"]
    _, _, metrics = fit_then_test(tmp_path, *common, fit_args=("--trainer.max_steps", "2"))
    # a loss per source (the eval-only one included) and both protocols of both clip heads
    assert {"test/video/auc", "test/video/loss", "test/temporal/ap@0.5", "test/temporal/loss",
            "test/temporal_full/ap@0.5"} <= set(metrics)
