"""HybridNet: the paper size counted from the architecture, the decoders' pieces against hand
computations (memory-routed attention, label smoothing, the schedule), causality of the
decoders, prefix decoding against teacher forcing, vocabularies from the data, clear errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import polyvision
from polyvision.errors import ConfigError
from polyvision.heads.commonsense import (
    HybridNetHead,
    MemoryRoutedAttention,
    MemoryTransformerDecoder,
    RelationalMemory,
    label_smoothed_loss,
)
from polyvision.models.hybridnet import HybridNet, VideoModalityEncoder


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def linear(inputs: int, outputs: int, bias: bool = True) -> int:
    return inputs * outputs + (outputs if bias else 0)


def test_paper_config_has_the_release_architecture_at_full_size():
    """Counted from the release's layer list (README, HybridNet): d 512, 8 heads of 64, inner
    1024, 6 layers, 3 memory slots, four decoders, the three-modality GRU encoder."""
    d, inner, slots = 512, 1024, 3
    gru = 3 * (2 * d * d + 2 * d)
    encoder = linear(2048, d) + 2 * linear(1024, d) + 3 * gru + 3 * d
    mmha = 4 * linear(d, d) + linear(slots * d, d) + 8 * 8 * 9 + 2 * d  # q, k, v, out; memory query; routing conv; norm
    layer = 2 * mmha + linear(d, inner) + linear(inner, d) + 2 * d
    memory = (3 * d * d + 3 * d) + linear(d, d) + 2 * linear(d, d) + 2 * linear(d, 2 * d)
    decoder = 6 * layer + memory
    model = polyvision.create_model("hybridnet")
    head = model.heads["v2c"]
    assert count(model.neck) == encoder == 6_828_032
    assert count(head.caption_decoder) == decoder == 31_003_392
    assert all(count(head.cms_decoders[kind]) == decoder for kind in ("intention", "effect", "attribute"))
    assert count(model) == encoder + 4 * decoder == 130_841_600
    # The word layers follow the data's vocabularies: per caption word an embedding and an
    # output row (2 x 512), per commonsense word three embeddings and the shared output row.
    words, cms_words = [f"w{i}" for i in range(1000)], [f"c{i}" for i in range(700)]
    model.give_vocabularies({"v2c": {"vocabulary": words, "cms_vocabulary": cms_words}}, "test")
    assert count(model) == 130_841_600 + 2 * d * 1001 + 4 * d * 701
    print(f"HybridNet paper size: {count(model.neck):,} encoder + 4 x {decoder:,} decoders = 130,841,600 parameters "
          f"before the word layers (+1,024 per caption word, +2,048 per commonsense word)")


def test_memory_routed_attention_mixes_logits_as_the_release():
    """One head, identity projections, a routing kernel that reads the cell above-left: the
    mixed logits by hand, for self-attention (shift down-right) and cross-attention (down)."""
    torch.manual_seed(0)
    dim, length = 4, 3
    for causal in (True, False):
        attention = MemoryRoutedAttention(dim, heads=1, head_dim=dim, memory_dim=dim, causal_shift=causal,
                                          dropout=0.0, previous_attention="logits").eval()
        with torch.no_grad():
            for projection in (attention.query, attention.key, attention.value, attention.memory_query):
                projection.weight.copy_(torch.eye(dim))
                projection.bias.zero_()
            attention.route.weight.zero_()
            attention.route.weight[0, 0, 1, 1] = 2.0  # the centre cell, doubled
        queries, memory = torch.randn(1, length, dim), torch.randn(1, length, dim)
        keys = queries if causal else torch.randn(1, 4, dim)
        mask = (torch.ones(length, length).tril() if causal else torch.ones(length, 4)).bool()[None, None]
        previous = torch.randn(1, 1, length, keys.shape[1])
        _, mixed = attention(queries, keys, memory, mask, previous)
        q, k, m = queries[0].numpy(), keys[0].numpy(), memory[0].numpy()
        plain, from_memory = q @ k.T / 2.0, m @ k.T / 2.0  # sqrt(head_dim) = 2
        conv = np.maximum(2.0 * np.where(mask[0, 0].numpy(), from_memory, 0.0), 0.0)
        routed = from_memory.copy()
        for i in range(1, length):
            for j in range(keys.shape[1]):
                if causal and j >= 1:
                    routed[i, j] = conv[i - 1, j - 1]
                elif not causal:
                    routed[i, j] = conv[i - 1, j]
        expected = 0.4 * (0.1 * routed + 0.9 * from_memory) + 0.6 * plain
        expected = 0.1 * previous[0, 0].numpy() + 0.9 * expected
        np.testing.assert_allclose(mixed[0, 0].detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_previous_attention_options_hand_on_different_maps():
    torch.manual_seed(0)
    outputs = {}
    for option in ("probabilities", "logits", "none"):
        torch.manual_seed(1)
        decoder = MemoryTransformerDecoder(dim=16, layers=2, heads=2, head_dim=8, inner=32, dropout=0.0,
                                           previous_attention=option).eval()
        words, context = torch.randn(2, 5, 16), torch.randn(2, 4, 16)
        outputs[option] = decoder(words, context, torch.ones(2, 4, dtype=torch.bool))
    assert not torch.allclose(outputs["probabilities"], outputs["logits"])
    assert not torch.allclose(outputs["probabilities"], outputs["none"])
    with pytest.raises(ConfigError, match="previous_attention is one of probabilities, logits, none"):
        HybridNetHead(previous_attention="softmax")


def test_decoder_and_memory_are_causal():
    """Position t never reads a later word: the memory's state, the self-attention's mask and
    the routing's shifts all look back only."""
    torch.manual_seed(0)
    decoder = MemoryTransformerDecoder(dim=16, layers=2, heads=2, head_dim=8, inner=32, dropout=0.0).eval()
    words, context = torch.randn(1, 7, 16), torch.randn(1, 5, 16)
    mask = torch.ones(1, 5, dtype=torch.bool)
    changed = words.clone()
    changed[:, 4] += 1.0
    before, after = decoder(words, context, mask), decoder(changed, context, mask)
    torch.testing.assert_close(before[:, :4], after[:, :4])
    assert (before[:, 4:] - after[:, 4:]).abs().amax(-1).min() > 1e-4
    memory = RelationalMemory(dim=16, slots=3, heads=2).eval()
    states = memory(words)
    assert states.shape == (1, 7, 48)
    torch.testing.assert_close(memory(changed)[:, :4], states[:, :4])


def test_relational_memory_starts_from_identity_rows_and_gates_the_update():
    memory = RelationalMemory(dim=6, slots=3, heads=2).eval()
    assert torch.equal(memory.initial, torch.cat([torch.eye(3), torch.zeros(3, 3)], 1))
    with torch.no_grad():  # forget gate shut (-inf), input gate open: the next memory is tanh(M~)
        memory.input_gates.weight.zero_()
        memory.memory_gates.weight.zero_()
        memory.input_gates.bias.copy_(torch.cat([torch.full((6,), 50.0), torch.full((6,), -50.0)]))
        memory.memory_gates.bias.zero_()
    word = torch.randn(1, 1, 6)
    keys = torch.cat([memory.initial[None], word], 1)
    candidate = memory.initial[None] + memory.attention(memory.initial[None], keys, keys, need_weights=False)[0]
    candidate = candidate + memory.mlp(candidate)
    torch.testing.assert_close(memory(word)[0, 0], torch.tanh(candidate).reshape(-1), rtol=1e-5, atol=1e-6)


def test_label_smoothed_loss_by_hand():
    probabilities = torch.tensor([[[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]]])
    targets = torch.tensor([[0, 2]])
    # the target gets 0.9, each other class 0.1 / 3; the second token is padding
    expected = -(0.9 * math.log(0.7) + 0.1 * math.log(0.1))
    value = label_smoothed_loss(probabilities.log(), targets, torch.tensor([[True, False]]), 0.1)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    both = label_smoothed_loss(probabilities.log(), targets, torch.tensor([[True, True]]), 0.1)
    assert both.item() == pytest.approx((expected - math.log(0.25)) / 2, rel=1e-6)
    assert label_smoothed_loss(probabilities.log(), targets, torch.tensor([[True, False]]), 0.0).item() == \
        pytest.approx(-math.log(0.7), rel=1e-6)


def test_noam_decay_is_the_release_schedule():
    from polyvision.models.schedules import NoamDecay

    optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = NoamDecay(optimizer, dim=512, warmup_steps=5000, exponent=0.8)
    factor = schedule.lr_lambdas[0]

    def release(step: int) -> float:  # 512^-0.5 * min(s^-0.8, s * 5000^-1.8)
        return 512 ** -0.5 * min(step ** -0.8, step * 5000 ** -1.8)

    assert optimizer.param_groups[0]["lr"] == pytest.approx(release(1))
    for step in (1, 100, 4999, 5000, 5001, 50_000):
        assert factor(step - 1) == pytest.approx(release(step), rel=1e-12)
    assert factor(4999) == pytest.approx(4.9e-5, rel=1e-2)  # the peak at step 5000 (about 4.9e-5)
    assert factor(49_999) == pytest.approx(7.7e-6, rel=2e-2)


def small_model(**head_args) -> HybridNet:
    head = HybridNetHead(dim=16, layers=2, heads=2, head_dim=8, inner=32, beam_size=1,
                         max_lengths={"caption": 6, "intention": 5, "effect": 5, "attribute": 3}, **head_args)
    return HybridNet(heads={"v2c": head}, backbone={"class_path": "polyvision.models.backbones.PrecomputedFeatures",
                                                   "init_args": {"channels": 12}},
                     neck=VideoModalityEncoder(dim=16, modalities=["appearance", "motion"], motion_dim=6))


GEOMETRY = {"v2c": {"input": "features", "vocabulary": ["a", "b", "c", "UNK"], "cms_vocabulary": ["x", "y", "z"]}}


def test_vocabularies_come_from_the_data_or_are_checked_against_it():
    model = small_model()
    with pytest.raises(ConfigError, match="vocabulary sizes are not known yet"):
        model.generate({"appearance": torch.randn(1, 4, 12), "motion": torch.randn(1, 3, 6), "meta": [{}]})
    model.give_vocabularies(GEOMETRY, "the data")
    head = model.heads["v2c"]
    assert (head.vocabulary_size, head.cms_vocabulary_size, head.unk_ids["caption"]) == (4, 3, 4)
    fixed = small_model(vocabulary_size=5, cms_vocabulary_size=3)
    with pytest.raises(ConfigError, match=r"vocabulary_size is 5 but the data \(v2c\) has 4 words \(set the head's "
                                          r"vocabulary_size to 4\)"):
        fixed.give_vocabularies(GEOMETRY, "the data")


def test_neck_names_a_missing_modality():
    model = small_model()
    model.give_vocabularies(GEOMETRY, "the data")
    with pytest.raises(ConfigError, match="encodes motion but the batch has no 'motion' features .*use_motion"):
        model.generate({"appearance": torch.randn(1, 4, 12), "meta": [{}]})


def test_prefix_decoding_agrees_with_teacher_forcing():
    """Greedy decoding (each step re-reads the prefix) picks, at every step, the word the
    teacher-forced pass over the decoded caption ranks first."""
    torch.manual_seed(0)
    model = small_model()
    model.give_vocabularies(GEOMETRY, "the data")
    model.eval()
    head = model.heads["v2c"]
    head.suppress_unk = False
    batch = {"appearance": torch.randn(3, 4, 12), "motion": torch.randn(3, 3, 6), "meta": [{}] * 3}
    with torch.no_grad():
        video = head.video_context(model.extract_features(batch))
        tokens = head.decode_caption(video)
        inputs = torch.cat([torch.zeros(3, 1, dtype=torch.long), tokens[:, :-1]], 1)
        log_probs, _ = head.caption_log_probs(inputs, video)
    best = log_probs.argmax(-1)
    for row in range(3):
        length = int((tokens[row] != 0).sum()) + 1 if (tokens[row] == 0).any() else tokens.shape[1]
        assert torch.equal(best[row, :length], tokens[row, :length])


def test_generation_scores_each_video_once_and_completion_each_entry():
    model = small_model()
    model.give_vocabularies(GEOMETRY, "the data")
    model.eval()
    references = {"caption": ["a b"], "intention": ["x"], "effect": ["y"], "attribute": ["z"],
                  **{f"generation_{kind}": ["a b x"] for kind in ("intention", "effect", "attribute")}}
    batch = {"appearance": torch.randn(2, 4, 12), "motion": torch.randn(2, 3, 6),
             "captions": torch.tensor([[[1, 2, 0]], [[2, 0, 0]]]),
             "meta": [{"video_id": 7, "references": references}, {"video_id": 7, "references": references}]}
    with torch.no_grad():
        outputs = model.generate(batch)["v2c"]
    inputs = model.heads["v2c"].metric_inputs(outputs, batch)
    assert len(inputs["completion_intention"]) == 2  # no video ids: every entry counts
    assert inputs["generation_intention"][2] == [7, 7] and inputs["caption"][2] == [7, 7]
    collection = model.heads["v2c"].metrics()
    for name, pair in inputs.items():
        collection[name].update(*pair)
    values = collection.compute()
    assert set(values) >= {"generation_effect_cider_d", "completion_attribute_bleu_1", "caption_rouge_l"}
    once = model.heads["v2c"].metrics()["generation_effect"]
    hypotheses, refs, videos = inputs["generation_effect"]
    once.update(hypotheses[:1], refs[:1], videos[:1])  # the video's second entry adds nothing
    assert {k: float(v) for k, v in once.compute().items()} == \
        {k[len("generation_effect_"):]: float(v) for k, v in values.items() if k.startswith("generation_effect_")}
