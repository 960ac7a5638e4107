"""CVLNM (``polyvision.models.cvlnm``) and its caption heads (``polyvision.heads.captioning``)
at toy sizes on batches that follow the caption datamodule's contract; the paper size is
counted once."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import polyvision
from polyvision.errors import ConfigError
from polyvision.heads.captioning import MODULE_NAMES, CaptionHead, CVLNMHead
from polyvision.models.cvlnm import CVLNM
from polyvision.models.layers.decoding import caption_mask

VOCABULARY = [f"w{i}" for i in range(1, 24)]
REGION_WIDTH = 24
TINY_HEAD = dict(vocabulary_size=len(VOCABULARY), rnn_size=32, word_size=16, attention_hidden=16, memory_size=12,
                 controller_heads=4, verb_heads=4, verb_feedforward=32)
TINY_REGIONS = {"class_path": "polyvision.models.cvlnm.RegionFeatures", "init_args": {"channels": REGION_WIDTH}}
GEOMETRY = {"captions": {"input": "regions", "feature_dim": REGION_WIDTH, "max_length": 16, "vocabulary": VOCABULARY}}


# Decoders run many small operations: one thread is faster than two on shared cores.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def caption_batch(size: int = 3, regions: int = 6, seed: int = 0) -> dict:
    """A batch as ``CaptionDataModule`` gives it: padded regions, 5 captions of up to 16 words
    with their module tags (-1 on padding), all raw references in ``meta``."""
    generator = torch.Generator().manual_seed(seed)
    captions = torch.randint(1, len(VOCABULARY) + 1, (size, 5, 16), generator=generator)
    lengths = torch.randint(3, 17, (size, 5), generator=generator)
    captions[torch.arange(16)[None, None] >= lengths[..., None]] = 0
    tags = torch.randint(0, 4, (size, 5, 16), generator=generator).masked_fill(captions == 0, -1)
    region_mask = torch.ones(size, regions, dtype=torch.bool)
    region_mask[0, regions // 2:] = False
    features = torch.randn(size, regions, REGION_WIDTH, generator=generator) * region_mask[..., None]
    meta = [{"image_id": i, "file_name": f"{i}.jpg", "path": f"{i}.jpg",
             "references": [" ".join(VOCABULARY[t - 1] for t in row if t) for row in captions[i].tolist()]}
            for i in range(size)]
    return {"regions": features, "region_mask": region_mask, "captions": captions, "tags": tags, "meta": meta,
            "source": "captions"}


def tiny_model(**head_overrides) -> CVLNM:
    torch.manual_seed(0)
    head = CVLNMHead(**{**TINY_HEAD, **head_overrides})
    return CVLNM(heads={"captions": head}, backbone=TINY_REGIONS, input_geometry=GEOMETRY)


def test_teacher_forcing_shapes_and_region_mask():
    model, batch = tiny_model().eval(), caption_batch()
    with torch.no_grad():
        outputs = model(batch)["captions"]
        assert outputs["log_probs"].shape == (3 * 5, 17, len(VOCABULARY) + 1)
        assert outputs["controller_logits"].shape == (3 * 5, 17, 4)
        # Padded regions are never read: changing them changes nothing.
        changed = dict(batch, regions=batch["regions"].clone())
        changed["regions"][0, 3:] = 100.0
        torch.testing.assert_close(model(changed)["captions"]["log_probs"], outputs["log_probs"])


def test_losses_finite_and_syntax_loss_zero_weighted_after_its_epochs():
    model, batch = tiny_model(), caption_batch()
    model.train()
    model.set_epoch(0)
    torch.manual_seed(1)
    early = model.training_losses(batch)
    assert set(early) == {"captions/caption", "captions/syntax"}
    assert all(math.isfinite(float(v.detach())) and float(v.detach()) > 0 for v in early.values())
    model.set_epoch(model.syntax_epochs)
    torch.manual_seed(1)
    late = model.training_losses(batch)
    assert float(late["captions/syntax"].detach()) == 0.0
    torch.testing.assert_close(late["captions/caption"], early["captions/caption"])


def test_missing_caption_rows_and_padding_are_not_counted():
    head = tiny_model().heads["captions"]
    batch = caption_batch()
    log_probs = torch.log_softmax(torch.randn(15, 17, len(VOCABULARY) + 1), -1)
    full = head.loss({"log_probs": log_probs}, batch)["caption"]
    # Hand computation: words and the first EOS of every caption row.
    rows = batch["captions"].reshape(15, 16)
    targets = torch.cat([rows, torch.zeros(15, 1, dtype=torch.long)], 1)
    mask = caption_mask(targets)
    expected = -(log_probs.gather(2, targets[..., None]).squeeze(2) * mask).sum() / mask.sum()
    torch.testing.assert_close(full, expected)
    # An all-zero caption row (a missing caption) adds nothing.
    emptied = dict(batch, captions=batch["captions"].clone())
    emptied["captions"][1, 4] = 0
    keep = torch.ones(15, dtype=torch.bool)
    keep[1 * 5 + 4] = False
    only_kept = -(log_probs.gather(2, targets[..., None]).squeeze(2) * (mask & keep[:, None])).sum() / \
        (mask & keep[:, None]).sum()
    torch.testing.assert_close(head.loss({"log_probs": log_probs}, emptied)["caption"], only_kept)


def test_syntax_loss_matches_a_hand_computed_case():
    head = tiny_model().heads["captions"]
    # One image, one caption "w3 w5" (then EOS) with tags noun, verb; other rows empty.
    captions = torch.zeros(1, 5, 16, dtype=torch.long)
    captions[0, 0, :2] = torch.tensor([3, 5])
    tags = torch.full((1, 5, 16), -1)
    tags[0, 0, :2] = torch.tensor([1, 2])
    logits = torch.zeros(5, 17, 4)
    logits[0, 0] = torch.tensor([0.0, 2.0, 0.0, 0.0])  # step 0 -> w3 (noun)
    logits[0, 1] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # step 1 -> w5 (verb)
    logits[0, 2] = torch.tensor([0.0, 0.0, 0.0, 3.0])  # step 2 -> EOS: a function word
    logits[1:] = 50.0 * torch.randn(4, 17, 4)  # rows without a caption: ignored
    expected = -(math.log(math.exp(2) / (math.exp(2) + 3)) + math.log(1 / (math.e + 3))
                 + math.log(1 / (math.exp(3) + 3))) / 3
    value = head.syntax_loss(logits, {"captions": captions, "tags": tags})
    assert float(value) == pytest.approx(expected, rel=1e-6)


def test_controller_weights_sum_to_one_and_predictions_name_modules():
    model, batch = tiny_model(beam_size=3).eval(), caption_batch()
    with torch.no_grad():
        outputs = model.generate(batch)["captions"]
    weights = outputs["module_weights"]
    assert weights.shape[0] == 3 and weights.shape[2] == 4
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:2]))
    records = model.predict_step(batch, 0)
    for record in records:
        caption = record["captions"]
        assert all(word in VOCABULARY for word in caption["caption"].split())
        assert len(caption["modules"]) == len(caption["tokens"]) and set(caption["modules"]) <= set(MODULE_NAMES)
        assert len(caption["region_attention"]) == len(caption["tokens"])
    # Attention over the real regions only (image 0 has 3 of 6), a distribution per word.
    for index, record in enumerate(records):
        for row in record["captions"]["region_attention"]:
            assert len(row) == (3 if index == 0 else 6) and sum(row) == pytest.approx(1.0, abs=1e-4)


def test_memory_init_from_file(tmp_path):
    cell = np.random.default_rng(0).normal(size=(12, 32)).astype(np.float32)
    np.savez(tmp_path / "kg.npz", memory_cell=cell)
    model = tiny_model(memory_init=str(tmp_path / "kg.npz"))
    np.testing.assert_array_equal(model.heads["captions"].memory_cell.detach().numpy(), cell)
    np.savez(tmp_path / "wrong.npz", memory_cell=cell[:5])
    with pytest.raises(ConfigError, match="wrong.npz: memory_cell is 5x32"):
        tiny_model(memory_init=str(tmp_path / "wrong.npz"))
    np.savez(tmp_path / "other.npz", cell=cell)
    with pytest.raises(ConfigError, match="no 'memory_cell'"):
        tiny_model(memory_init=str(tmp_path / "other.npz"))


def test_vocabulary_size_is_checked_against_the_data():
    with pytest.raises(ConfigError, match="vocabulary_size is 23 but .* has 5 words"):
        CVLNM(heads={"captions": CVLNMHead(**TINY_HEAD)}, backbone=TINY_REGIONS,
              input_geometry={"captions": {"input": "regions", "vocabulary": ["a", "b", "c", "d", "e"]}})


class UnigramHead(CaptionHead):
    """A decoder whose every step draws from one learned word distribution."""

    def bind(self, feature_channels, feature_strides, latent_channels):
        self.logits = torch.nn.Parameter(torch.zeros(self.vocabulary_size + 1))

    def decoder_inputs(self, features, batch):
        return None, {"rows": features["memory"][:, 0]}

    def step(self, tokens, state, context):
        return torch.log_softmax(self.logits, 0).expand(tokens.shape[0], -1), state


class FirstWordReward:
    """Reward 1 for a caption that starts with 'good', else 0."""

    def scores(self, hypotheses, references):
        return np.array([1.0 if words[:1] == ["good"] else 0.0 for words in hypotheses])


def test_self_critical_loss_raises_the_better_samples_probability():
    head = UnigramHead(vocabulary_size=3, max_length=3, scst_samples=64)
    head.bind([4], [1], None)
    head.set_vocabulary(["good", "bad", "ugly"])
    head.reward_scorer = FirstWordReward()
    head.self_critical = True
    with torch.no_grad():
        head.logits.copy_(torch.tensor([0.0, 0.5, 1.0, 0.0]))  # greedy says "bad": baseline 0
    features = {"memory": torch.zeros(2, 1, 4), "memory_mask": torch.ones(2, 1, dtype=torch.bool)}
    batch = {"meta": [{"references": ["good"]}, {"references": ["good"]}]}
    torch.manual_seed(0)
    loss = head.training_loss(features, batch)["self_critical"]
    loss.backward()
    assert head.logits.grad[1] < 0  # gradient descent raises the logit of "good"
    before = torch.softmax(head.logits.detach(), 0)[1]
    with torch.no_grad():
        head.logits -= 0.5 * head.logits.grad
    assert torch.softmax(head.logits, 0)[1] > before
    assert head.last_reward["greedy"] == 0.0 and head.last_reward["sample"] > 0


def test_beam_search_batched_equals_per_image():
    model, batch = tiny_model(beam_size=5).eval(), caption_batch(size=4)
    with torch.no_grad():
        together = model.generate(batch)["captions"]
        for image in range(4):
            alone = model.generate({key: (value[image:image + 1] if isinstance(value, torch.Tensor) else value)
                                    for key, value in batch.items()})["captions"]
            assert torch.equal(together["tokens"][image], alone["tokens"][0])
            torch.testing.assert_close(together["scores"][image], alone["scores"][0])


def test_checkpoint_round_trip_decodes_identical_captions(tmp_path):
    cell = np.random.default_rng(1).normal(size=(12, 32)).astype(np.float32)
    np.savez(tmp_path / "kg.npz", memory_cell=cell)
    model, batch = tiny_model(memory_init=str(tmp_path / "kg.npz")).eval(), caption_batch()
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "cvlnm.ckpt")
    (tmp_path / "kg.npz").unlink()  # the weights hold the memory: the file is not needed any more
    loaded = polyvision.load_model(tmp_path / "cvlnm.ckpt")
    assert loaded.heads["captions"].vocabulary == VOCABULARY
    assert model.hparams["heads"]["captions"]["init_args"]["memory_init"]  # the model's own record is kept
    with torch.no_grad():
        assert model.predict_step(batch, 0) == loaded.predict_step(batch, 0)


def test_memory_keeps_its_rate_while_the_rest_decays():
    model = tiny_model()
    optimizer = model.configure_optimizers()
    optimizer, scheduler = optimizer["optimizer"], optimizer["lr_scheduler"]["scheduler"]
    memory_group = [g for g in optimizer.param_groups if any(p is model.heads["captions"].memory_cell
                                                              for p in g["params"])]
    assert len(memory_group) == 1 and len(memory_group[0]["params"]) == 1 and memory_group[0]["weight_decay"] == 0
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    rates = [group["lr"] for group in optimizer.param_groups]
    assert memory_group[0]["lr"] == pytest.approx(5e-4)
    assert min(rates) == pytest.approx(5e-4 * 0.8 ** 2)


def test_grid_features_are_flattened_to_regions():
    head = CVLNMHead(**TINY_HEAD)
    head.bind([REGION_WIDTH], [32], None)
    head.eval()
    grid = torch.randn(2, REGION_WIDTH, 3, 4)
    with torch.no_grad():
        state, context = head.decoder_inputs({"maps": [grid]}, {})
    assert context["mask"].shape == (2, 12) and bool(context["mask"].all())
    assert context["noun"][0].shape == (2, 12, 32)


def test_paper_size_parameter_count(capsys):
    """``create_model("cvlnm")``: the release's sizes (rnn 1000, attention 512, memory 1000×1000,
    8 controller heads, a 2-layer 2048-wide verb transformer, 9487 words)."""
    model = polyvision.create_model("cvlnm")
    head = model.heads["captions"]
    parts = {name: sum(p.numel() for p in module.parameters()) for name, module in head.named_children()}
    parts["memory_cell"] = head.memory_cell.numel()
    total = sum(p.numel() for p in model.parameters())
    with capsys.disabled():
        print(f"\nCVLNM paper size: {total / 1e6:.2f} M parameters; "
              + ", ".join(f"{name} {count / 1e6:.2f} M" for name, count in parts.items()))
    assert sum(parts.values()) == total
    assert parts["memory_cell"] == 1000 * 1000
    assert parts["logit"] == 1000 * 9488 + 9488
    assert parts["language_lstm"] == 4 * 1000 * (6000 + 1000) + 8 * 1000
    assert parts["attention_lstm"] == 4 * 1000 * (3000 + 1000) + 8 * 1000
    assert 130e6 < total < 160e6


def test_unk_is_never_generated():
    words = VOCABULARY[:-1] + ["UNK"]
    model = tiny_model(beam_size=2)
    model.heads["captions"].set_vocabulary(words)
    with torch.no_grad():
        model.heads["captions"].logit.bias[len(words)] = 100.0  # UNK would win every step
    model.eval()
    with torch.no_grad():
        tokens = model.generate(caption_batch())["captions"]["tokens"]
    assert not bool((tokens == len(words)).any())
    model.heads["captions"].suppress_unk = False
    with torch.no_grad():
        assert bool((model.generate(caption_batch())["captions"]["tokens"] == len(words)).any())


def test_reward_prefers_the_caption_of_the_references():
    head = tiny_model().heads["captions"]
    head.set_reward_corpus({1: ["w1 w2 w3 w4", "w1 w2 w5"], 2: ["w6 w7 w8", "w6 w9 w8"], 3: ["w10 w11"]})
    references = [head.reward_references(["w1 w2 w3 w4", "w1 w2 w5"])]
    right = torch.tensor([[1, 2, 3, 4, 0, 0], [6, 7, 8, 0, 0, 0]])
    rewards = head.rewards(right, references, per_image=2)
    assert float(rewards[0]) > float(rewards[1]) >= 0.0


def test_region_features_check_their_width():
    model = tiny_model()
    with pytest.raises(ConfigError, match="the regions are 7-d, the model reads 24-d"):
        model.extract_features({"regions": torch.zeros(1, 3, 7), "region_mask": torch.ones(1, 3, dtype=torch.bool)})


def test_teacher_forcing_scores_the_decoded_caption_as_decoding_did():
    """Reading the greedy caption back with teacher forcing gives the log-probs greedy decoding
    summed: one step function, one state, both ways."""
    model, batch = tiny_model(beam_size=1).eval(), caption_batch(size=2)
    with torch.no_grad():
        decoded = model.generate(batch)["captions"]
        captions = torch.zeros(2, 5, 16, dtype=torch.long)
        captions[:, 0] = decoded["tokens"]
        log_probs = model(dict(batch, captions=captions))["captions"]["log_probs"][::5]
    targets = torch.cat([decoded["tokens"], torch.zeros(2, 1, dtype=torch.long)], 1)
    mask = caption_mask(targets)
    mask[:, -1] = False  # a caption that ran to max_length was never given its EOS by decoding
    read_back = (log_probs.gather(2, targets[..., None]).squeeze(2) * mask).sum(1)
    torch.testing.assert_close(read_back, decoded["scores"], rtol=1e-5, atol=1e-5)
