"""The contract every named model and every head keeps, at toy sizes: it builds, trains on a
matching tiny batch with a finite loss, predicts JSON-serialisable records, and comes back
from its checkpoint alone (``polyvision.load_model``) with identical outputs.

Named models keep their configs' necks and heads (paper size is fast enough on tiny inputs)
and get a small backbone. Which tiny batch a source gets follows its input: the ``video``
and ``temporal`` sources of OmniFD read clips, every other OmniFD source images, STATE object
cubes.
"""
from __future__ import annotations

import importlib
import inspect
import json
import math
import pkgutil

import pytest
import torch

import polyvision
import polyvision.heads
from polyvision.heads.base import Head
from polyvision.models.base import MultiTaskModule
from helpers import FORGERY_CLASSES, SMALL_VIDEO_SWIN, TINY_TEMPORAL, hand_batch, image_batch, window_batch

TINY_STATE_ENCODER = {"widths": [4, 8, 16], "num_layers": 1, "num_heads": 2}
# ACR's contract on a small trunk (the paper trunks are counted in tests/models/test_acr.py).
SMALL_HAND_MODEL = {"backbone": "resnet10t", "backbone_kwargs": {"out_indices": [1, 2, 3]}, "mano_dir": "generated"}
CLIP_SOURCES = ("video", "temporal")
# CVLNM's contract on a toy decoder (the paper size is counted in tests/models/test_cvlnm.py):
# 24-d regions, or a ResNet-10 map flattened to a grid for the image config.
CAPTION_WORDS = [f"w{i}" for i in range(1, 24)]
TINY_CAPTION_HEAD = {"class_path": "polyvision.heads.captioning.CVLNMHead",
                     "init_args": {"vocabulary_size": len(CAPTION_WORDS), "rnn_size": 32, "word_size": 16,
                                   "attention_hidden": 16, "memory_size": 12, "controller_heads": 4, "verb_heads": 4,
                                   "verb_feedforward": 32, "beam_size": 3}}


def small_caption_model(name: str) -> dict:
    if name == "cvlnm_swin_t":
        backbone, geometry = {"backbone": "resnet10t", "backbone_kwargs": {"out_indices": [2]}}, {"input": "image"}
    else:
        backbone = {"backbone": {"class_path": "polyvision.models.cvlnm.RegionFeatures", "init_args": {"channels": 24}}}
        geometry = {"input": "regions", "feature_dim": 24}
    return {**backbone, "heads": {"captions": TINY_CAPTION_HEAD},
            "input_geometry": {"captions": {**geometry, "max_length": 16, "vocabulary": CAPTION_WORDS}}}


def caption_batch(model: MultiTaskModule, size: int = 2) -> dict:
    """The caption datamodule's batch: regions (or images), 5 captions and tags per image."""
    generator = torch.Generator().manual_seed(0)
    captions = torch.randint(1, len(CAPTION_WORDS) + 1, (size, 5, 16), generator=generator)
    captions[..., 6:] = 0
    tags = torch.randint(0, 4, (size, 5, 16), generator=generator).masked_fill(captions == 0, -1)
    batch = {"captions": captions, "tags": tags, "source": "captions", "num_skipped": torch.tensor(0),
             "meta": [{"image_id": i, "path": f"{i}.jpg", "references": ["w1 w2 w3", "w4 w5"]} for i in range(size)]}
    if "regions" in model.input_keys and model.input_geometry["captions"]["input"] == "regions":
        batch.update(regions=torch.randn(size, 5, 24, generator=generator), region_mask=torch.ones(size, 5, dtype=torch.bool))
    else:
        batch["image"] = image_batch(size, side=64)["image"]
    return batch


# HybridNet's contract on toy decoders (the paper size is counted in tests/models/test_hybridnet.py).
V2C_WORDS, V2C_CMS_WORDS = [f"c{i}" for i in range(1, 15)], [f"s{i}" for i in range(1, 12)]
TINY_V2C_HEAD = {"class_path": "polyvision.heads.commonsense.HybridNetHead",
                 "init_args": {"dim": 32, "layers": 2, "heads": 2, "head_dim": 16, "inner": 48,
                               "max_lengths": {"caption": 6, "intention": 5, "effect": 5, "attribute": 3}}}
TINY_V2C_NECK = {"class_path": "polyvision.models.hybridnet.VideoModalityEncoder", "init_args": {"dim": 32}}


def small_commonsense_model(name: str) -> dict:
    """A named HybridNet with toy decoders and the vocabularies of a tiny V2C."""
    words = {"vocabulary": V2C_WORDS, "cms_vocabulary": V2C_CMS_WORDS}
    if name == "hybridnet_swin_t":
        return {"backbone_kwargs": dict(SMALL_VIDEO_SWIN), "heads": {"v2c": TINY_V2C_HEAD},
                "neck": {**TINY_V2C_NECK, "init_args": {"dim": 32, "modalities": ["appearance"]}},
                "input_geometry": {"v2c": {"input": "video", **words}}}
    if name == "hybridnet":
        return {"heads": {"v2c": TINY_V2C_HEAD}, "neck": TINY_V2C_NECK, "input_geometry": {"v2c": {"input": "features", **words}}}
    return {"input_geometry": {"v2c": {"input": "features", **words}}}


def v2c_batch(model: MultiTaskModule, size: int = 2) -> dict:
    """The V2C datamodule's batch: features (or a clip), one caption and K = 2 strings per type."""
    generator = torch.Generator().manual_seed(0)
    head = model.heads["v2c"]
    captions = torch.randint(1, head.vocabulary_size + 1, (size, 1, 8), generator=generator)
    captions[..., 5:] = 0
    batch = {"captions": captions, "source": "v2c", "num_skipped": torch.tensor(0), "meta": []}
    for kind in ("intention", "effect", "attribute"):
        rows = torch.randint(1, head.cms_vocabulary_size + 1, (size, 2, 6), generator=generator)
        rows[..., 4:] = 0
        rows[1, 1] = 0  # a missing second string
        batch[kind], batch[f"{kind}_mask"] = rows, torch.tensor([[True, True], [True, False]])
    for i in range(size):
        references = {"caption": ["c1 c2 c3", "c4 c5"], "intention": ["s1 s2"], "effect": ["s3"], "attribute": ["s4"],
                      **{f"generation_{kind}": ["c1 c2 c3 s1 s2", "c4 c5 s3"] for kind in ("intention", "effect", "attribute")}}
        batch["meta"].append({"video_id": i, "caption_index": 0, "path": f"video{i}.mp4", "references": references})
    if "video" in model.input_keys and model.input_geometry["v2c"]["input"] == "video":
        batch["video"] = window_batch(["a", "b"], [0, 1], seed=1)["video"][:size]
    else:
        appearance = model.backbone.channels
        batch.update(appearance=torch.randn(size, 20, appearance, generator=generator),
                     motion=torch.randn(size, 10, 1024, generator=generator),
                     audio=torch.randn(size, 10, 1024, generator=generator))
    return batch


def cube_batch(size: int = 2, side: int = 16, seed: int = 0) -> dict:
    """STATE's batch (``STATEDataModule``): 7-frame object cubes, their flow, frame bookkeeping."""
    generator = torch.Generator().manual_seed(seed)
    return {"video": torch.randint(0, 255, (size, 3, 7, side, side), dtype=torch.uint8, generator=generator),
            "flow": torch.randn(size, 2, 7, side, side, generator=generator),
            "has_object": torch.ones(size, dtype=torch.bool), "label": torch.zeros(size, dtype=torch.long),
            "video_index": torch.zeros(size, dtype=torch.long), "frame_index": torch.arange(size),
            "meta": [{"frame": i} for i in range(size)], "source": "video"}


def omnifd_batch(source: str) -> dict:
    if source in CLIP_SOURCES:
        return dict(window_batch(["a", "b"], [0, 1], seed=1), source=source)
    return dict(image_batch(2, seed=1), source=source)


def tiny_batches(model: MultiTaskModule) -> list[dict]:
    from polyvision.models.acr import ACR
    from polyvision.models.cvlnm import CVLNM
    from polyvision.models.hybridnet import HybridNet
    from polyvision.models.state import STATE

    if isinstance(model, CVLNM):
        return [caption_batch(model)]
    if isinstance(model, HybridNet):
        return [v2c_batch(model)]
    if isinstance(model, STATE):
        return [cube_batch()]
    if isinstance(model, ACR):
        return [hand_batch()]
    sources = sorted({*model.sources, *model.eval_sources}) or ["image"]
    return [omnifd_batch(source) for source in sources]


def save_lightning_checkpoint(model: MultiTaskModule, path) -> None:
    """The parts of a Lightning checkpoint ``load_model`` reads, as ``Trainer.save_checkpoint``
    writes them: weights, ``dict(model.hparams)`` and what ``on_save_checkpoint`` adds."""
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)


def assert_identical(actual, expected, where: str) -> None:
    if isinstance(expected, dict):
        assert set(actual) == set(expected), where
        for key in expected:
            assert_identical(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, torch.Tensor):
        torch.testing.assert_close(actual, expected, rtol=0, atol=0, msg=where)
    else:
        assert actual == expected, where


def check_contract(model: MultiTaskModule, batches: list[dict], tmp_path) -> None:
    for batch in batches:
        model.train()
        losses = model.training_losses(batch)
        assert losses, f"no loss from source {batch['source']}"
        assert all(math.isfinite(float(value.detach())) for value in losses.values()), losses
        model.weighted_total(losses).backward()
        model.eval()
        records = model.predict_step(batch, 0)
        assert len(records) == len(batch["meta"])
        json.dumps(records)
    model.zero_grad(set_to_none=True)
    path = tmp_path / "model.ckpt"
    save_lightning_checkpoint(model, path)
    loaded = polyvision.load_model(path)
    assert type(loaded) is type(model)
    with torch.no_grad():
        for batch in batches:
            assert_identical(loaded(batch), model(batch), "forward")
            assert_identical(loaded.generate(batch), model.generate(batch), "generate")


@pytest.mark.parametrize("name", polyvision.list_models())
def test_named_model_keeps_the_contract(name, tmp_path):
    torch.manual_seed(0)
    if name.startswith("acr"):
        overrides = dict(SMALL_HAND_MODEL) if name != "acr_synthetic" else {}
    elif name.startswith("cvlnm"):
        overrides = small_caption_model(name)
    elif name.startswith("hybridnet"):
        overrides = small_commonsense_model(name)
    else:
        overrides = {"backbone_kwargs": dict(TINY_STATE_ENCODER if name.startswith("state") else SMALL_VIDEO_SWIN)}
    model = polyvision.create_model(name, **overrides)
    check_contract(model, tiny_batches(model), tmp_path)


# ----------------------------------------------------------------------------- every head class

def omnifd_head_model(name: str, head: Head, source: str) -> MultiTaskModule:
    from polyvision.models.omnifd import InteractionNeck

    return MultiTaskModule(heads={name: head}, backbone="swin3d_t", backbone_kwargs=dict(SMALL_VIDEO_SWIN),
                           neck=InteractionNeck(latent_channels=32, num_latents=8, depth=1, heads=2, dim_head=16,
                                                ff_mult=2),
                           sources={source: [name]})


def reconstruction_head_model(name: str, head: Head) -> MultiTaskModule:
    return MultiTaskModule(heads={name: head}, input_keys=["video"],
                           backbone={"class_path": "polyvision.models.state.STATEEncoder",
                                     "init_args": dict(TINY_STATE_ENCODER)})


def head_cases():
    """Head class -> (model holding one such head, its tiny batch)."""
    from polyvision.models.cvlnm import CVLNM
    from polyvision.heads.captioning import CVLNMHead
    from polyvision.heads.classification import ClassificationHead
    from polyvision.heads.hands import TwoHandHead
    from polyvision.models.acr import ACR
    from polyvision.heads.reconstruction import FlowPredictionHead, FrameReconstructionHead
    from polyvision.heads.spatial import SpatialHead
    from polyvision.heads.temporal import TemporalLocalizationHead
    from polyvision.heads.commonsense import HybridNetHead
    from polyvision.models.hybridnet import HybridNet

    return {
        ClassificationHead: lambda: (omnifd_head_model("image", ClassificationHead(FORGERY_CLASSES), "image"),
                                     omnifd_batch("image")),
        SpatialHead: lambda: (omnifd_head_model("spatial", SpatialHead(channels=16, num_latents=8), "image"),
                              omnifd_batch("image")),
        TemporalLocalizationHead: lambda: (omnifd_head_model("temporal", TemporalLocalizationHead(**TINY_TEMPORAL),
                                                             "video"), omnifd_batch("video")),
        FrameReconstructionHead: lambda: (reconstruction_head_model("raw", FrameReconstructionHead(0)), cube_batch()),
        FlowPredictionHead: lambda: (reconstruction_head_model("flow", FlowPredictionHead(1)), cube_batch()),
        CVLNMHead: lambda: caption_head_case(CVLNM, CVLNMHead),
        HybridNetHead: lambda: commonsense_head_case(HybridNet, HybridNetHead),
        TwoHandHead: lambda: (ACR(heads={"hands": TwoHandHead("generated", head_width=16, part_feature_channels=32)},
                                  backbone="resnet10t", backbone_kwargs={"out_indices": [1, 2, 3]}), hand_batch()),
    }


def caption_head_case(model_class: type, head_class: type) -> tuple[MultiTaskModule, dict]:
    settings = {key: value for key, value in small_caption_model("cvlnm").items() if key != "heads"}
    model = model_class(heads={"captions": head_class(**TINY_CAPTION_HEAD["init_args"])}, **settings)
    return model, caption_batch(model)


def commonsense_head_case(model_class: type, head_class: type) -> tuple[MultiTaskModule, dict]:
    from polyvision.models.hybridnet import VideoModalityEncoder

    geometry = small_commonsense_model("hybridnet")["input_geometry"]
    model = model_class(heads={"v2c": head_class(**TINY_V2C_HEAD["init_args"])}, input_geometry=geometry,
                        neck=VideoModalityEncoder(**TINY_V2C_NECK["init_args"]))
    return model, v2c_batch(model)


# Base classes of head families, not heads: they leave abstract methods to their subclasses.
ABSTRACT_HEADS = {"ReconstructionHead", "CaptionHead"}


def head_classes() -> set[type]:
    classes = set()
    for module_info in pkgutil.iter_modules(polyvision.heads.__path__):
        module = importlib.import_module(f"polyvision.heads.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Head) and cls is not Head and cls.__module__ == module.__name__:
                classes.add(cls)
    return {cls for cls in classes if cls.__name__ not in ABSTRACT_HEADS}


def test_every_head_class_has_a_contract_case():
    assert head_classes() == set(head_cases()), "add a case to head_cases() for every new head"


@pytest.mark.parametrize("head_class", sorted(head_classes(), key=lambda cls: cls.__name__), ids=lambda c: c.__name__)
def test_head_keeps_the_contract(head_class, tmp_path):
    torch.manual_seed(0)
    model, batch = head_cases()[head_class]()
    check_contract(model, [batch], tmp_path)
