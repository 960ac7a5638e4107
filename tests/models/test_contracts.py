"""The model and head contracts, shown by a toy captioning system built from them alone.

The toy reads region features (``regions`` (B, N, F) float + ``region_mask``), encodes them
with a tiny transformer given to ``MultiTaskModule`` as a ``class_path`` backbone, and
captions them with a head whose ``forward`` is teacher forcing, whose ``generate`` is greedy
decoding and whose ``training_loss`` is self-critical sequence training (Rennie et al.,
"Self-critical Sequence Training for Image Captioning", CVPR 2017: sample a caption, score
it against the greedy caption as baseline, minimise -(r - b)·log p). The module itself is
used as it is: no step method is overridden.
"""
from __future__ import annotations

import json
import math

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchmetrics import MeanMetric, MetricCollection

from polyvision.errors import ConfigError
from polyvision.heads.base import Head
from polyvision.models.base import MultiTaskModule

VOCABULARY = ["<pad>", "<bos>", "<eos>", "red", "green", "blue", "circle", "square", "triangle"]
PAD, BOS, EOS = 0, 1, 2
COLOURS, SHAPES = VOCABULARY[3:6], VOCABULARY[6:9]
FEATURE_DIM = len(COLOURS) + len(SHAPES)


class TinyRegionEncoder(nn.Module):
    """A sequence-encoder backbone: region features (B, N, F) and their mask -> one token set
    (B, N, dim). Padded regions are masked out of the attention."""

    def __init__(self, feature_dim: int = FEATURE_DIM, dim: int = 32, num_heads: int = 2, num_layers: int = 1):
        super().__init__()
        self.project = nn.Linear(feature_dim, dim)
        layer = nn.TransformerEncoderLayer(dim, num_heads, 2 * dim, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.out_channels = [dim]
        self.strides = [1]

    def forward(self, x: Tensor, mask: Tensor | None = None) -> list[Tensor]:
        padding = None if mask is None else ~mask
        return [self.encoder(self.project(x), src_key_padding_mask=padding)]


class ToyCaptionHead(Head):
    """A one-layer transformer decoder over ``features["memory"]``.

    ``forward``: teacher forcing on ``tokens`` ([BOS, words..., EOS], padded, ``token_mask``);
    ``loss``: cross-entropy on real tokens; ``generate``: greedy decoding; ``training_loss``:
    self-critical with the word overlap (F1) against the reference as reward.
    """

    def __init__(self, vocabulary: list[str], max_length: int = 4, num_heads: int = 2):
        super().__init__()
        self.vocabulary = list(vocabulary)
        self.max_length = max_length
        self.num_heads = num_heads

    def bind(self, feature_channels: list[int], feature_strides: list[int], latent_channels: int | None) -> None:
        width = feature_channels[-1]
        self.embed = nn.Embedding(len(self.vocabulary), width)
        self.position = nn.Embedding(self.max_length + 1, width)
        layer = nn.TransformerDecoderLayer(width, self.num_heads, 2 * width, dropout=0.0, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, 1)
        self.out = nn.Linear(width, len(self.vocabulary))

    def logits(self, features: dict, prefix: Tensor) -> Tensor:
        """Next-token logits (B, t, V) after every position of ``prefix`` (B, t)."""
        steps = prefix.shape[1]
        x = self.embed(prefix) + self.position(torch.arange(steps, device=prefix.device))
        causal = nn.Transformer.generate_square_subsequent_mask(steps, device=prefix.device)
        hidden = self.decoder(x, features["memory"], tgt_mask=causal, tgt_is_causal=True,
                              memory_key_padding_mask=~features["memory_mask"])
        return self.out(hidden)

    def forward(self, features: dict, batch: dict) -> dict[str, Tensor]:
        return {"logits": self.logits(features, batch["tokens"][:, :-1])}

    def loss(self, outputs: dict[str, Tensor], batch: dict) -> dict[str, Tensor]:
        if "tokens" not in batch:
            return {}
        target = batch["tokens"][:, 1:].masked_fill(~batch["token_mask"][:, 1:], -100)
        return {"xe": F.cross_entropy(outputs["logits"].flatten(0, 1), target.flatten(), ignore_index=-100)}

    def decode(self, features: dict, greedy: bool) -> tuple[Tensor, Tensor]:
        """Captions (B, max_length) padded after EOS, and each caption's log-probability."""
        memory = features["memory"]
        tokens = torch.full((memory.shape[0], 1), BOS, dtype=torch.long, device=memory.device)
        log_prob = memory.new_zeros(memory.shape[0])
        finished = torch.zeros(memory.shape[0], dtype=torch.bool, device=memory.device)
        for _ in range(self.max_length):
            step = self.logits(features, tokens)[:, -1].log_softmax(dim=-1)
            choice = step.argmax(dim=-1) if greedy else torch.distributions.Categorical(logits=step).sample()
            choice = choice.masked_fill(finished, PAD)
            log_prob = log_prob + step.gather(1, choice[:, None])[:, 0].masked_fill(finished, 0.0)
            tokens = torch.cat([tokens, choice[:, None]], dim=1)
            finished = finished | (choice == EOS)
        return tokens[:, 1:], log_prob

    def generate(self, features: dict, batch: dict) -> dict[str, Tensor]:
        return {"tokens": self.decode(features, greedy=True)[0]}

    def training_loss(self, features: dict, batch: dict) -> dict[str, Tensor]:
        sampled, log_prob = self.decode(features, greedy=False)
        with torch.no_grad():
            baseline = self.reward(self.decode(features, greedy=True)[0], batch)
        advantage = self.reward(sampled, batch) - baseline
        return {"self_critical": -(advantage * log_prob).mean()}

    def words(self, row: list[int]) -> list[str]:
        words = []
        for token in row:
            if token == EOS:
                break
            if token not in (PAD, BOS):
                words.append(self.vocabulary[token])
        return words

    def reward(self, tokens: Tensor, batch: dict) -> Tensor:
        """Word-overlap F1 of each caption with its reference."""
        scores = []
        for caption, reference in zip(tokens.tolist(), batch["tokens"].tolist()):
            said, true = set(self.words(caption)), set(self.words(reference))
            common = len(said & true)
            scores.append(0.0 if not common else 2 * common / (len(said) + len(true)))
        return torch.tensor(scores, device=tokens.device)

    def predict(self, outputs: dict[str, Tensor], batch: dict) -> list[dict]:
        return [{"caption": " ".join(self.words(row))} for row in outputs["tokens"].tolist()]

    def metrics(self) -> MetricCollection:
        return MetricCollection({"overlap": MeanMetric()})

    def metric_inputs(self, outputs: dict[str, Tensor], batch: dict) -> tuple | None:
        if "tokens" not in batch:
            return None
        return (self.reward(outputs["tokens"], batch),)


def toy_samples(count: int, seed: int = 0) -> list[dict]:
    """1-3 regions (one-hot colour + shape) each; the caption names the first region."""
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for index in range(count):
        regions = torch.zeros(int(torch.randint(1, 4, (1,), generator=generator)), FEATURE_DIM)
        colours = torch.randint(0, len(COLOURS), (len(regions),), generator=generator)
        shapes = torch.randint(0, len(SHAPES), (len(regions),), generator=generator)
        regions[torch.arange(len(regions)), colours] = 1.0
        regions[torch.arange(len(regions)), len(COLOURS) + shapes] = 1.0
        caption = [COLOURS[colours[0]], SHAPES[shapes[0]]]
        tokens = [BOS, *(VOCABULARY.index(word) for word in caption), EOS]
        samples.append({"regions": regions, "tokens": torch.tensor(tokens), "meta": {"path": f"toy{index}"}})
    return samples


def collate(samples: list[dict]) -> dict:
    """Pad regions and tokens, with ``region_mask`` and ``token_mask`` marking the real ones."""
    regions = nn.utils.rnn.pad_sequence([s["regions"] for s in samples], batch_first=True)
    tokens = nn.utils.rnn.pad_sequence([s["tokens"] for s in samples], batch_first=True, padding_value=PAD)
    region_mask = torch.zeros(regions.shape[:2], dtype=torch.bool)
    token_mask = torch.zeros(tokens.shape, dtype=torch.bool)
    for index, sample in enumerate(samples):
        region_mask[index, :len(sample["regions"])] = True
        token_mask[index, :len(sample["tokens"])] = True
    return {"regions": regions, "region_mask": region_mask, "tokens": tokens, "token_mask": token_mask,
            "meta": [s["meta"] for s in samples], "source": "caption"}


@pytest.fixture
def trusts_this_module(monkeypatch):
    """Models build only classes under trusted prefixes (polyvision, torch); the toy's
    classes live in this test module, which the tests here trust."""
    import polyvision.models.layers.spec as spec

    monkeypatch.setattr(spec, "TRUSTED_PREFIXES", (*spec.TRUSTED_PREFIXES, f"{__name__}."))


def toy_captioner() -> MultiTaskModule:
    return MultiTaskModule(
        heads={"caption": ToyCaptionHead(VOCABULARY)},
        backbone={"class_path": f"{__name__}.TinyRegionEncoder", "init_args": {"dim": 32}},
        input_keys=["regions"],
        optimizer={"class_path": "torch.optim.Adam", "init_args": {"lr": 3e-3}},
    )


def test_sequence_encoder_features_memory_and_mask(trusts_this_module):
    torch.manual_seed(0)
    model = toy_captioner().eval()
    batch = collate(toy_samples(4))
    features = model.extract_features(batch)
    assert features["memory"].shape == (*batch["region_mask"].shape, 32)
    assert torch.equal(features["memory_mask"], batch["region_mask"])
    assert features["maps"][-1] is features["memory"] and torch.equal(features["inputs"], batch["regions"])
    # the backbone was given the mask: padded regions do not change the real regions' tokens
    noisy = dict(batch, regions=batch["regions"].masked_fill(~batch["region_mask"][..., None], 7.0))
    real = batch["region_mask"]
    torch.testing.assert_close(model.extract_features(noisy)["memory"][real], features["memory"][real])


def test_toy_captioner_trains_self_critically_and_captions(trusts_this_module, tmp_path):
    torch.manual_seed(0)
    model = toy_captioner()
    loader = DataLoader(toy_samples(16), batch_size=8, collate_fn=collate)
    trainer = pl.Trainer(accelerator="cpu", max_steps=4, limit_val_batches=1, num_sanity_val_steps=0,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, loader, loader)
    logged = trainer.callback_metrics
    # the step minimised the head's training_loss (self-critical), not forward + loss
    assert "train/caption/self_critical" in logged and "train/caption/xe" not in logged
    assert math.isfinite(float(logged["train/loss"]))
    # validation: the teacher-forced forward gives the loss, generate feeds the metric
    assert math.isfinite(float(logged["val/loss"]))
    assert 0.0 <= float(logged["val/caption/overlap"]) <= 1.0

    records = [record for batch in trainer.predict(model, loader) for record in batch]
    assert len(records) == 16 and records[0]["path"] == "toy0"
    assert all(set(r["caption"]["caption"].split()) <= set(VOCABULARY[3:]) for r in records)
    json.dumps(records)


def test_a_batch_without_the_declared_input_is_one_clear_error(trusts_this_module):
    model = toy_captioner()
    image_batch = {"image": torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "meta": [{}], "source": "image"}
    with pytest.raises(ConfigError) as error:
        model.training_step(image_batch, 0)
    assert str(error.value) == "MultiTaskModule reads 'regions'; this batch has 'image', 'meta', 'source'"

    from polyvision.models.state import STATE

    state = STATE(backbone_kwargs={"widths": [4, 8, 16], "num_layers": 1, "num_heads": 2})
    with pytest.raises(ConfigError, match=r"^STATE reads 'video'; this batch has 'image', 'meta', 'source'$"):
        state.training_step(image_batch, 0)
    no_source = {"image": image_batch["image"], "meta": [{}]}  # no source key: still one sub-batch
    with pytest.raises(ConfigError, match=r"^STATE reads 'video'; this batch has 'image', 'meta'$"):
        state.training_step(no_source, 0)
