"""Learnability of CVLNM (``configs/cvlnm/synthetic.yaml``) on the synthetic COCO: cross-entropy
reaches a test CIDEr-D well above what captions blind to the image score, and the config's
short self-critical phase raises it further (slow: 2-3 minutes on 2 CPU cores)."""
from __future__ import annotations

from collections import Counter

import pytest
import pytorch_lightning as pl
import torch
import yaml

from polyvision.datamodules.captions.datamodule import CaptionDataModule
from polyvision.metrics.captioning import cider_d
from polyvision.models.factory import CONFIG_DIR, build_from_spec

CONFIG = CONFIG_DIR / "cvlnm" / "synthetic.yaml"


def blind_cider_d(datamodule: CaptionDataModule) -> float:
    """Test CIDEr-D of the most frequent training caption given for every test image: what a
    captioner that ignores the regions (a language model alone) can reach."""
    counts = Counter(caption.lower().rstrip(".") for captions in datamodule.references("train").values()
                     for caption in captions)
    constant = counts.most_common(1)[0][0]
    references = datamodule.references("test")
    return cider_d({key: [constant] for key in references}, references)


@pytest.mark.slow
def test_synthetic_cvlnm_learns_to_caption_then_self_critical_training_helps(tmp_path):
    """Threshold: test CIDEr-D >= 1.0 after cross-entropy (the issue's floor) and at least twice
    the blind caption's (the most frequent training caption for every image scores 0.64 here:
    the references are six templates per scene, so a fixed template already matches many
    n-grams; twice that needs the right shapes, colours and relations). Measured: blind 0.644,
    cross-entropy 2.536, self-critical 2.580 (2 min 23 s to 2 min 36 s on 2 CPU cores
    shared with other jobs, load 6). Then strictly higher after the self-critical epochs.
    Beam search as configured (3); one thread, seeded."""
    torch.set_num_threads(1)
    config = yaml.safe_load(CONFIG.read_text())
    pl.seed_everything(0)
    model = build_from_spec(config["model"], str(CONFIG))
    datamodule = CaptionDataModule(**{**config["data"]["init_args"], "num_workers": 0,
                                      "cache_dir": str(tmp_path / "data")})
    trainer_settings = {k: v for k, v in config["trainer"].items()
                        if k not in ("callbacks", "max_epochs", "log_every_n_steps")}
    common = dict(trainer_settings, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                  default_root_dir=str(tmp_path / "runs"))
    cross_entropy_epochs = model.self_critical_after
    trainer = pl.Trainer(max_epochs=cross_entropy_epochs, **common)
    trainer.fit(model, datamodule)
    after_cross_entropy = trainer.test(model, datamodule, verbose=False)[0]["test/captions/cider_d"]
    trainer.save_checkpoint(tmp_path / "cross_entropy.ckpt")
    # The rest of the config's run: self-critical epochs, resumed where cross-entropy stopped.
    trainer = pl.Trainer(max_epochs=config["trainer"]["max_epochs"], **common)
    trainer.fit(model, datamodule, ckpt_path=tmp_path / "cross_entropy.ckpt")
    after_self_critical = trainer.test(model, datamodule, verbose=False)[0]["test/captions/cider_d"]
    blind = blind_cider_d(datamodule)
    print(f"\nCVLNM synthetic test CIDEr-D: blind caption {blind:.3f}, cross-entropy {after_cross_entropy:.3f}, "
          f"+ self-critical {after_self_critical:.3f}")
    assert after_cross_entropy >= max(1.0, 2 * blind)
    assert after_self_critical > after_cross_entropy
