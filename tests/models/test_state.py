"""STATE: paper-size architecture and parameter count, the convolutional attention, the
test-time perturbation, score fusion, training statistics in checkpoints, and evaluation
with gradients under a default (inference-mode) Trainer."""
from __future__ import annotations

import warnings

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

import polyvision
from polyvision.errors import ConfigError
from polyvision.heads.reconstruction import FlowPredictionHead, FrameReconstructionHead
from polyvision.models.state import STATE, ConvAttentionHead, count_parameters

TINY = dict(widths=[4, 8, 16], num_layers=1, num_heads=2)
# The released code builds, per head, a FeedForwardNet(32) = Conv3×3(32→32) it never calls
# (official code github.com/wyzjack/MRMGA4VAD, ``module.py``).
UNUSED_HEAD_FFN = 32 * 32 * 9 + 32


def tiny_state(**kwargs) -> STATE:
    return STATE(backbone_kwargs=dict(TINY), **kwargs)


def cube_batch(size: int = 6, side: int = 32, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    video = torch.randint(0, 255, (size, 3, 7, side, side), dtype=torch.uint8, generator=generator)
    flow = torch.randn(size, 2, 7, side, side, generator=generator)
    return {"video": video, "flow": flow, "has_object": torch.ones(size, dtype=torch.bool),
            "label": torch.zeros(size, dtype=torch.long), "video_index": torch.zeros(size, dtype=torch.long),
            "frame_index": torch.arange(size), "meta": [{"frame": i} for i in range(size)], "source": "video"}


def test_paper_models_have_the_paper_architecture_and_size():
    model = polyvision.create_model("state_ped2")
    total = count_parameters(model)
    branch = model.backbone.branches["raw"]
    breakdown = {
        "spatial encoder (per branch)": count_parameters(branch.spatial),
        "temporal encoder, 3 layers (per branch)": count_parameters(branch.temporal),
        "raw decoder": count_parameters(model.heads["raw"]),
        "flow decoder": count_parameters(model.heads["flow"]),
    }
    released_unused = UNUSED_HEAD_FFN * 4 * 3 * 2  # 4 heads × 3 layers × 2 branches
    print(f"\nSTATE 3-layer (Ped2/Avenue): {total:,} parameters; {breakdown}; "
          f"+ {released_unused:,} unused per-head feed-forward parameters of the released code = "
          f"{total + released_unused:,} (≈2.8 M as the released code builds)")
    five = count_parameters(polyvision.create_model("state_shanghaitech"))
    print(f"STATE 5-layer (ShanghaiTech): {five:,} parameters")
    assert total == 2_568_061
    assert abs(total + released_unused - 2.8e6) / 2.8e6 < 0.01
    assert five == 3_464_589
    assert list(model.backbone.branches) == ["raw", "flow"]
    assert model.backbone.out_channels == [128, 128] and model.backbone.strides == [4, 4]
    attention = branch.temporal
    assert len(attention.layers) == 3 and len(attention.layers[0].heads) == 4
    assert attention.position_embedding.weight.shape == (10, 32)
    assert attention.layers[0].norm.num_groups == 4
    assert polyvision.create_model("state_avenue").hparams.epsilon == 0.002
    assert dict(polyvision.create_model("state_avenue").hparams.score_weights) == {"raw": 0.3, "flow": 1.0}
    assert polyvision.create_model("state_shanghaitech").hparams.epsilon == 0.005


def test_forward_shapes_losses_and_optimizer():
    model = tiny_state()
    batch = cube_batch()
    outputs = model(batch)
    assert outputs["raw"]["prediction"].shape == (6, 3, 7, 32, 32)
    assert outputs["flow"]["prediction"].shape == (6, 2, 7, 32, 32)
    # the raw target is the clip the backbone saw, scaled to [0, 1] (STATE's ToTensor, no mean/std)
    assert torch.equal(outputs["raw"]["target"], batch["video"].float() / 255)
    losses = model.compute_losses(outputs, batch)
    assert set(losses) == {"raw/mse", "flow/mse"}
    model.weighted_total(losses).backward()
    assert all(p.grad is not None for p in model.parameters())
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.defaults["eps"] == 1e-7 and optimizer.defaults["lr"] == 1e-3
    assert optimizer.defaults["weight_decay"] == 0.0


def test_conv_attention_equals_the_pairwise_definition():
    torch.manual_seed(0)
    head = ConvAttentionHead(8)
    x, positions = torch.randn(2, 5, 8, 6, 6), torch.randn(5, 8)
    b, t, d, h, w = x.shape

    def act(y):
        return F.leaky_relu(y, 0.2)

    shifted = (x + positions[None, :, :, None, None]).flatten(0, 1)
    q = act(head.query(shifted)).view(b, t, d, h, w)
    k = act(head.key_value(shifted)).view(b, t, d, h, w)
    v = act(head.key_value(x.flatten(0, 1))).view(b, t, d, h, w)
    logits = torch.stack([torch.stack([act(head.similarity(torch.cat([q[:, i], k[:, j]], 1)))[:, 0]
                                       for j in range(t)], 1) for i in range(t)], 1)
    weights = logits.softmax(dim=2)
    expected = torch.stack([(weights[:, i, :, None] * v).sum(1) for i in range(t)], 1)
    torch.testing.assert_close(head(x, positions), expected, atol=1e-5, rtol=1e-5)


def test_perturbation_lowers_the_reconstruction_error_of_the_perturbed_input():
    torch.manual_seed(0)
    model = tiny_state(epsilon=0.01).eval()
    batch = cube_batch(size=8)
    clean = model.normalize(batch["video"])
    perturbed, clean_errors = model.perturb(clean, batch)
    step = (perturbed - clean).abs()
    assert torch.allclose(step[step > 0], torch.tensor(0.01)) and step.gt(0).float().mean() > 0.9
    with torch.no_grad():
        before = model.errors(model.forward_inputs(clean, batch)).sum(dim=1)
        after = model.errors(model.forward_inputs(perturbed, batch)).sum(dim=1)
    print(f"\nSSE per cube, clean {before.mean():.1f} -> perturbed {after.mean():.1f}")
    assert bool((after < before).all())
    torch.testing.assert_close(clean_errors.sum(dim=1), before)
    unperturbed, none = tiny_state(epsilon=0.0).perturb(clean, batch)
    assert torch.equal(unperturbed, clean) and none is None
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode=False"):
        model.perturb(clean, batch)


def test_scores_are_z_scored_fused_and_empty_frames_get_the_training_minimum():
    model = tiny_state(score_weights={"raw": 0.3, "flow": 1.0}, empty_score=None).eval()
    model.train_error_mean.copy_(torch.tensor([10.0, 100.0]))
    model.train_error_std.copy_(torch.tensor([2.0, 50.0]))
    model.train_min_score.fill_(-3.5)
    errors = torch.tensor([[12.0, 150.0], [8.0, 50.0]])
    torch.testing.assert_close(model.fuse(errors), torch.tensor([0.3 * 1 + 1.0, 0.3 * -1 - 1.0]))
    batch = cube_batch(size=4)
    batch["has_object"] = torch.tensor([True, False, True, False])
    scores = model.score_objects(batch)
    assert scores[1] == scores[3] == -3.5
    with torch.no_grad():
        objects = {**batch, "flow": batch["flow"][[0, 2]]}
        perturbed, _ = model.perturb(model.normalize(batch["video"][[0, 2]]), objects)
        expected = model.fuse(model.errors(model.forward_inputs(perturbed, objects)))
    torch.testing.assert_close(scores[[0, 2]], expected)
    assert tiny_state().empty_score() == -1e5  # STATE's default: empty frames rank below every scored one


def test_configuration_errors_name_the_field():
    with pytest.raises(ConfigError, match="model.score_weights"):
        tiny_state(score_weights={"motion": 1.0})
    with pytest.raises(ConfigError, match="model.epsilon"):
        tiny_state(epsilon=-0.1)
    with pytest.raises(ConfigError, match="divisible"):
        STATE(backbone_kwargs=dict(widths=[4, 8, 18], num_layers=1, num_heads=4))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from polyvision.datamodules.anomaly.synthetic import write_synthetic_ped2

    root = tmp_path_factory.mktemp("ped2")
    write_synthetic_ped2(root, num_train=2, num_test=2, num_frames=16, seed=3)
    return root


def tiny_datamodule(root, cache, **kwargs):
    from polyvision.datamodules.anomaly.datamodule import STATEDataModule

    return STATEDataModule(dataset="ped2", root=str(root), cache_dir=str(cache), batch_size=16, num_workers=0,
                           pipeline={"flow_size": None}, progress=False, **kwargs)


def quiet_trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      **kwargs)


def test_fit_stores_training_statistics_and_test_perturbs_under_the_default_trainer(tiny_data, tmp_path):
    datamodule = tiny_datamodule(tiny_data, tmp_path / "cache")
    model = tiny_state()
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2, default_root_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule)
    assert bool(model.statistics_ready)
    # the statistics are those of the final weights on every training cube, numpy's population std
    with torch.no_grad():
        model.eval()
        errors = torch.cat([model.errors(model(b)) for b in datamodule.statistics_dataloader()])
    torch.testing.assert_close(model.train_error_mean, errors.mean(0), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(model.train_error_std, errors.std(0, unbiased=False), rtol=1e-4, atol=1e-3)
    assert model.train_min_score == pytest.approx(float(model.fuse(errors).min()), rel=1e-4)
    assert model.hparams.input_geometry["video"]["object_pipeline"]["flow_size"] is None  # remembers how its cubes were made

    checkpoint = tmp_path / "state.ckpt"
    trainer.save_checkpoint(checkpoint)
    loaded = polyvision.load_model(checkpoint)
    for name in ("train_error_mean", "train_error_std", "train_min_score", "statistics_ready"):
        assert torch.equal(getattr(loaded, name), getattr(model, name))
    assert loaded.input_geometry == model.input_geometry

    # Trainer(inference_mode=True) is the default: STATE's setup() switches the loops to no_grad
    tester = quiet_trainer(inference_mode=True)
    assert tester.test_loop.inference_mode
    results = tester.test(loaded, datamodule)[0]
    assert not tester.test_loop.inference_mode
    assert {"test/frame_auroc_micro", "test/frame_auroc_macro"} <= set(results)
    assert results["test/sse_perturbed"] < results["test/sse_clean"]
    records = [r for batch in tester.predict(loaded, datamodule) for r in batch]
    assert len(records) == len(datamodule.test_dataloader().dataset)
    assert {"video", "frame", "score", "has_object"} <= set(records[0])


def test_test_completes_statistics_missing_from_a_checkpoint(tiny_data, tmp_path):
    datamodule = tiny_datamodule(tiny_data, tmp_path / "cache")
    model = tiny_state()
    assert not bool(model.statistics_ready)
    with pytest.warns(UserWarning, match="no training-error statistics"):
        quiet_trainer().test(model, datamodule)
    assert bool(model.statistics_ready)


def test_reconstruction_heads_need_their_inputs():
    head = FrameReconstructionHead()
    head.bind([16, 16], [4, 4], None)
    features = {"maps": [torch.randn(2, 16, 7, 8, 8)]}
    with pytest.raises(ValueError, match="inputs"):
        head(features, {})
    flow = FlowPredictionHead(feature_index=0)
    flow.bind([16], [4], None)
    outputs = flow(features, {})
    assert outputs["prediction"].shape == (2, 2, 7, 32, 32)
    assert flow.loss(outputs, {}) == {} and flow.errors(outputs) is None
