"""OmniFD's training augmentation (official code: github.com/haotianll/OmniFD,
``configs_omnifd/_base_/datasets/``) and the paper configs that use it."""
from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
from polyvision.datamodules.forgery.augment import OmniFDClipAugment, omnifd_photometric
from polyvision.datamodules.forgery.images import build_transform
from polyvision.errors import ConfigError
from polyvision.models.factory import CONFIG_DIR


def test_photometric_pipeline_is_the_released_one():
    (outer,) = omnifd_photometric()
    assert outer.p == pytest.approx(0.99)
    (one_of,) = outer.transforms
    assert isinstance(one_of, A.OneOf) and one_of.p == pytest.approx(0.98)
    assert [t.n for t in one_of.transforms] == [2, 3, 4]
    names = {type(t).__name__ for t in one_of.transforms[0].transforms}
    assert names == {"GaussNoise", "Sharpen", "RandomBrightnessContrast", "ImageCompression", "GaussianBlur",
                     "CLAHE", "RandomGamma", "ToGray", "ChannelShuffle"}
    assert all(t.p == 1.0 for t in one_of.transforms[0].transforms)


def test_clip_augment_draws_one_set_of_parameters_per_clip():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    clip = np.repeat(frame[None], 6, axis=0)
    augment = OmniFDClipAugment(size=32)
    changed = 0
    for seed in range(8):
        out = augment(clip, seed)
        assert out.shape == (6, 32, 32, 3) and out.dtype == np.uint8
        assert all(np.array_equal(out[0], out[i]) for i in range(1, 6))  # identical frames stay identical
        changed += not np.array_equal(out, augment(clip, seed + 100))
    assert changed >= 6  # different seeds, different clips
    np.testing.assert_array_equal(augment(clip, 3), augment(clip, 3))  # a seed repeats


def test_image_transform_choices():
    image = np.full((48, 48, 3), 128, np.uint8)
    mask = np.zeros((48, 48), np.uint8)
    for photometric in ("mild", "omnifd"):
        out = build_transform(32, train=True, augment=True, photometric=photometric)(image=image, mask=mask)
        assert out["image"].shape == (32, 32, 3) and out["mask"].shape == (32, 32)
    with pytest.raises(ConfigError, match="photometric must be 'mild' or 'omnifd'"):
        build_transform(32, train=True, augment=True, photometric="heavy")


@pytest.mark.parametrize("name", ["forgerynet_swin_t", "forgerynet_swin_s", "ffpp_swin_t", "ffpp_swin_s", "ffpp_video",
                                  "wilddeepfake", "fmld"])
def test_paper_configs_train_with_omnifd_augmentation(name):
    from polyvision.scripts.leaderboard import build_datamodule

    datamodule = build_datamodule(CONFIG_DIR / "omnifd" / f"{name}.yaml", {})
    sources = getattr(datamodule, "sources", {"only": datamodule})
    eval_only = getattr(datamodule, "eval_only", [])
    for name, source in sources.items():
        if name in eval_only:
            continue
        if hasattr(source, "clip_len"):
            assert isinstance(source.augment, OmniFDClipAugment) and source.augment.size == 224
        else:
            assert source.hparams.photometric == "omnifd"
    if name.startswith("ffpp_swin"):  # the released FF++ sources: images at 224, spatial (masks) at 299
        image, spatial = datamodule.sources["image"], datamodule.sources["spatial"]
        assert image.hparams.class_balance and spatial.hparams.class_balance
        assert (image.hparams.image_size, spatial.hparams.image_size) == (224, 299)
        assert spatial.hparams.train_annotation.endswith("train_spatial.json")
        assert spatial.hparams.test_annotation.endswith("test_spatial.json")


@pytest.mark.parametrize("name", ["forgerynet_swin_t", "forgerynet_swin_s"])
def test_forgerynet_temporal_test_reads_64_snippet_clips(name):
    """The released ForgeryNet test pipelines (OmniFD's ``configs_omnifd/_base_/datasets/``)
    read 32 snippets for video classification and 64 (stride 4, 256 frames) for temporal
    localization."""
    import yaml
    from polyvision.scripts.leaderboard import build_datamodule

    path = CONFIG_DIR / "omnifd" / f"{name}.yaml"
    datamodule = build_datamodule(path, {})
    assert datamodule.eval_only == ["temporal"]
    assert datamodule.sources["temporal"].clip_len == 64 and datamodule.sources["temporal"].frame_interval == 4
    assert datamodule.sources["video"].clip_len == 32
    model = yaml.safe_load(path.read_text())["model"]["init_args"]
    assert model["eval_sources"] == {"video": ["video"], "temporal": ["temporal"]}
    assert model["heads"]["temporal"]["init_args"]["eval_window_size"] == 64
