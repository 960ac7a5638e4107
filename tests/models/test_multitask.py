"""MultiTaskModule: swappable heads, multi-source batches, loss weights, predict, parameter counts."""
from __future__ import annotations

import pytest
import torch
from pytorch_lightning.utilities import CombinedLoader

import polyvision
from polyvision.errors import ConfigError
from polyvision.heads.classification import ClassificationHead
from polyvision.models.base import MultiTaskModule
from helpers import image_batch, tiny_omnifd


def train_steps(model, batch, steps: int) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(steps):
        loss = model.weighted_total(model.compute_losses(model(batch), batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("backbone,kwargs", [
    ("swin3d_t", {}),
    ("swin_tiny_patch4_window7_224", {"backbone_kwargs": dict(img_size=64, window_size=4, embed_dim=16,
                                                              depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4))}),
])
def test_same_heads_train_on_two_backbones(backbone, kwargs):
    torch.manual_seed(0)
    model = tiny_omnifd(backbone, **kwargs)
    losses = train_steps(model, image_batch(8), steps=15)
    assert losses[-1] < 0.7 * losses[0], losses


def test_heads_work_without_a_neck():
    model = tiny_omnifd("swin3d_t", with_neck=False)
    outputs = model(image_batch(2))
    assert set(outputs) == {"image", "spatial"}


def test_combined_loader_batches_run_each_source_through_its_heads():
    model = tiny_omnifd("swin3d_t")
    model.sources = {"image": ["image", "spatial"], "extra": ["image"]}
    class Batches:  # an opaque iterable, as a DataLoader is to CombinedLoader
        def __init__(self, *batches):
            self.batches = batches

        def __iter__(self):
            return iter(self.batches)

        def __len__(self):
            return len(self.batches)

    for sub_batch in (first := image_batch(4, seed=1)), (second := image_batch(2, seed=2)):
        del sub_batch["source"]  # CombinedLoader's keys name the sources
    loader = CombinedLoader({"image": Batches(first), "extra": Batches(second)}, mode="max_size_cycle")
    combined, _, _ = next(iter(loader))
    seen = []
    original = model.training_losses

    def spy(sub_batch):
        losses = original(sub_batch)
        seen.append((sub_batch["source"], sorted({key.split("/")[0] for key in losses})))
        return losses

    model.training_losses = spy
    model.log = lambda *a, **k: None
    loss = model.training_step(combined, 0)
    assert loss is not None and loss.requires_grad
    assert seen == [("image", ["image", "spatial"]), ("extra", ["image"])]


def test_loss_weights_scale_each_task():
    model = tiny_omnifd("swin3d_t")
    batch = image_batch(4)
    losses = model.compute_losses(model(batch), batch)
    model.loss_weights = {"image": 0.25, "spatial": 2.0}
    expected = 0.25 * losses["image/ce"] + 2.0 * losses["spatial/bce"]
    torch.testing.assert_close(model.weighted_total(losses), expected)


def test_predict_step_gives_one_record_per_sample():
    model = tiny_omnifd("swin3d_t").eval()
    records = model.predict_step(image_batch(3), 0)
    assert [r["path"] for r in records] == ["sample0.png", "sample1.png", "sample2.png"]
    assert set(records[0]) == {"path", "image", "spatial"}


def test_uint8_inputs_are_normalised_on_the_device():
    model = tiny_omnifd("swin3d_t")
    image = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    expected = (1.0 - torch.tensor(model.hparams.mean)) / torch.tensor(model.hparams.std)
    torch.testing.assert_close(model.normalize(image)[0, :, 0, 0], expected)
    clip = torch.zeros((1, 3, 2, 4, 4), dtype=torch.uint8)
    assert model.normalize(clip).shape == clip.shape


def test_no_weight_decay_on_norms_biases_and_position_tables():
    model = tiny_omnifd("swin3d_t")
    decay, no_decay = model.parameter_groups()
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = [names[id(p)] for p in no_decay["params"]]
    assert any("relative_position_bias_table" in n for n in no_decay_names)
    assert any(n.endswith(".bias") for n in no_decay_names)
    assert all(names[id(p)].endswith("weight") or "latents" in names[id(p)] or "stage_embed" in names[id(p)]
               for p in decay["params"])


def test_bad_head_configuration_is_a_config_error():
    with pytest.raises(ConfigError, match="model.heads: at least one head"):
        MultiTaskModule(heads={})
    with pytest.raises(ConfigError, match="model.sources.image: unknown head 'mask'"):
        MultiTaskModule(heads={"image": ClassificationHead()}, backbone="resnet18", sources={"image": ["mask"]})


def test_paper_parameter_counts():
    """Trunk ≈27.9 M (T) / ≈49.5 M (S), interaction ≈10.6 M, spatial ≈5.6 M, estimated from
    the module shapes of OmniFD's official code (github.com/haotianll/OmniFD)."""
    def count(module):
        return sum(p.numel() for p in module.parameters())

    for name, trunk in (("omnifd_ffpp_swin_t", 27.9e6), ("omnifd_ffpp_swin_s", 49.5e6)):
        model = polyvision.create_model(name)
        parts = {"total": count(model), "trunk": count(model.backbone), "neck": count(model.neck),
                 "spatial": count(model.heads["spatial"]), "image": count(model.heads["image"])}
        print(f"{name}: " + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in parts.items()))
        assert parts["trunk"] == pytest.approx(trunk, rel=0.01)
        assert parts["neck"] == pytest.approx(10.6e6, rel=0.01)
        assert parts["spatial"] == pytest.approx(5.6e6, rel=0.01)
        assert parts["image"] == 512 * 2 + 2
        assert parts["total"] == sum(v for k, v in parts.items() if k != "total")


def test_list_and_create_models():
    assert {"omnifd_swin_t", "omnifd_swin_s", "omnifd_ffpp_swin_t", "omnifd_lavdf", "omnifd_wilddeepfake", "omnifd_fmld",
            "omnifd_synthetic"} <= set(polyvision.list_models())
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        polyvision.create_model("nope")
    model = polyvision.create_model("omnifd_synthetic")
    # the input geometry comes from the data, when a trainer sets the model up with it
    assert model.input_geometry is None and "image_size" not in model.hparams


def test_single_task_paper_configs_build_with_gradient_checkpointing():
    fmld = polyvision.create_model("omnifd_fmld")
    assert list(fmld.heads) == ["spatial"] and fmld.backbone.grad_checkpointing
    wild = polyvision.create_model("omnifd_wilddeepfake")
    assert list(wild.heads) == ["video"] and wild.backbone.grad_checkpointing
    assert not polyvision.create_model("omnifd_swin_t").backbone.grad_checkpointing  # unified: with_cp off
