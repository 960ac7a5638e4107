"""MultiSourceDataModule: one sub-batch per source per step, sources evaluated in turn."""
from __future__ import annotations

import pytest
import pytorch_lightning as pl
from helpers import tiny_omnifd
from polyvision.datamodules.forgery.ffpp import FaceForensicsDataModule
from polyvision.datamodules.multisource import MultiSourceDataModule
from polyvision.errors import ConfigError


def forgery(root, source: str, batch_size: int) -> FaceForensicsDataModule:
    return FaceForensicsDataModule(root=str(root), image_size=64, batch_size=batch_size, num_workers=0, source=source)


def test_every_training_step_sees_every_source_and_evaluation_covers_each(tiny_ffpp, tmp_path):
    data = MultiSourceDataModule({"image": forgery(tiny_ffpp, "image", 4), "extra": forgery(tiny_ffpp, "extra", 2)})
    model = tiny_omnifd("swin3d_t")
    model.sources = {"image": ["image", "spatial"], "extra": ["image"]}
    seen: list[tuple[str, ...]] = []
    original = model.training_step

    def spy(batch, batch_idx):
        seen.append(tuple(sorted(batch)))
        assert batch["image"]["image"].shape[0] == 4 and batch["extra"]["image"].shape[0] == 2
        return original(batch, batch_idx)

    model.training_step = spy
    trainer = pl.Trainer(max_steps=2, limit_val_batches=2, limit_test_batches=2, accelerator="cpu", logger=False,
                         enable_progress_bar=False, enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(model, data)
    assert seen == [("extra", "image"), ("extra", "image")]
    metrics = trainer.test(model, data, verbose=False)
    flat = {k for result in metrics for k in result}
    assert {"test/image/loss", "test/extra/loss", "test/image/auc", "test/spatial/soft_iou"} <= flat


def test_source_names_must_match_the_datamodules(tiny_ffpp):
    with pytest.raises(ConfigError, match="data.sources.video: its datamodule tags batches as 'image'"):
        MultiSourceDataModule({"video": forgery(tiny_ffpp, "image", 2)})


def test_eval_only_sources_are_not_trained_on(tiny_ffpp):
    data = MultiSourceDataModule({"image": forgery(tiny_ffpp, "image", 4), "extra": forgery(tiny_ffpp, "extra", 2)},
                                 eval_only=["extra"])
    data.setup("fit")
    assert set(data.train_dataloader().iterables) == {"image"}
    assert set(data.val_dataloader().iterables) == {"image", "extra"}
    with pytest.raises(ConfigError, match="data.eval_only: 'video' is not one of the sources"):
        MultiSourceDataModule({"image": forgery(tiny_ffpp, "image", 4)}, eval_only=["video"])
    with pytest.raises(ConfigError, match="at least one source must be trained on"):
        MultiSourceDataModule({"image": forgery(tiny_ffpp, "image", 4)}, eval_only=["image"])
