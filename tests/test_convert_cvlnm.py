"""``scripts/convert_cvlnm.py``: the CVLNM release's names and shapes -> a polyvision ``CVLNM``.

The released files (``model<id><NNNN>.pth`` = ``torch.save(model.state_dict())``, the memory
``memory_cell<id><NNNN>.npz`` and ``infos_<id>*.pkl``, github.com/GCYZSL/CVLMN ``train.py``) are
not available here, so :func:`released_state_dict` generates a state dict from the explicit table
:data:`RELEASE_NAMES` of the release's module names and shapes (``models/AttModel.py``:
``AttModel``, ``TopDownCore``, ``Attention``, ``Mod_Cont``, ``Rela_Mod``/``Encoder``/
``EncoderLayer``/``SublayerConnection``/``LayerNorm``, ``MultiHeadedAttention``,
``PositionwiseFeedForward``, ``Memory_cell2``) at small size: rnn = input encoding = 16 (the
release needs them equal; its controller hard-codes 1000 = the paper's rnn_size), regions 24,
attention hidden 8, 8 heads (hard-coded in the release), 2 verb layers.

Two checks of the computation: the converted model against the same weights loaded by hand
(:func:`load_by_hand`, module by module without the converter's rules), and against
:func:`release_log_probs`, the release's teacher-forced forward written here from
``TopDownCore.forward`` on the release-named tensors (with the three computation differences
switchable: with ours, equal; with the release's, not), which checks the module orders the
column permutations assume.
"""
from __future__ import annotations

import argparse
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from polyvision.errors import WeightsError
from polyvision.models.factory import build_from_spec, load_model
from polyvision.scripts.convert_cvlnm import (
    DIFFERENCE_NAMES,
    convert_cvlnm,
    convert_cvlnm_file,
    read_infos,
    release_parameter_count,
)

S = {"R": 16, "C": 24, "H": 8, "F": 20, "M": 10, "layers": 2}
# cocotalk ix_to_word: ids 1..V (id 0 is BOS/EOS/padding), UNK last as prepro_labels appends it.
TABLE = {"1": "a", "2": "man", "3": "rides", "4": "red", "5": "horse", "6": "UNK"}
V1 = len(TABLE) + 1

# The release's state-dict names and shapes, written out ("R" rnn_size = input_encoding_size,
# "C" att_feat_size, "H" att_hid_size, "F" the verb transformer's d_ff, "V1" vocabulary + 1).
RELEASE_NAMES = [
    ("embed.0.weight", ("V1", "R")),
    ("fc_embed.0.weight", ("R", "3R")), ("fc_embed.0.bias", ("R",)),
    *[(f"{m}_embed.0.{p}", ("R", "C") if p == "weight" else ("R",)) for m in ("obj", "attr", "rela")
      for p in ("weight", "bias")],
    *[(f"rela_mod.model.layers.{i}.{name}", shape) for i in range(S["layers"]) for name, shape in [
        *[(f"self_attn.linears.{j}.{p}", ("C", "C") if p == "weight" else ("C",)) for j in range(4)
          for p in ("weight", "bias")],
        ("feed_forward.w_1.weight", ("F", "C")), ("feed_forward.w_1.bias", ("F",)),
        ("feed_forward.w_2.weight", ("C", "F")), ("feed_forward.w_2.bias", ("C",)),
        *[(f"sublayer.{j}.norm.{p}", ("C",)) for j in range(2) for p in ("a_2", "b_2")]]],
    ("rela_mod.model.norm.a_2", ("C",)), ("rela_mod.model.norm.b_2", ("C",)),
    ("logit.weight", ("V1", "R")), ("logit.bias", ("V1",)),
    *[(f"ctx2att_{m}.{p}", ("H", "R") if p == "weight" else ("H",)) for m in ("obj", "rela", "attr")
      for p in ("weight", "bias")],
    ("core.att_lstm.weight_ih", ("4R", "3R")), ("core.att_lstm.weight_hh", ("4R", "R")),
    ("core.att_lstm.bias_ih", ("4R",)), ("core.att_lstm.bias_hh", ("4R",)),
    ("core.lang_lstm.weight_ih", ("4R", "6R")), ("core.lang_lstm.weight_hh", ("4R", "R")),
    ("core.lang_lstm.bias_ih", ("4R",)), ("core.lang_lstm.bias_hh", ("4R",)),
    ("core.query_fc.weight", ("R", "3R")), ("core.query_fc.bias", ("R",)),
    *[(f"core.embed{k}", (1, "R")) for k in range(1, 5)],
    ("core.lang_embed.0.weight", ("R", "R")), ("core.lang_embed.0.bias", ("R",)),
    ("core.mem_fc.0.weight", ("R", "5R")), ("core.mem_fc.0.bias", ("R",)),
    *[(f"core.attention_{m}.{name}", shape) for m in ("obj", "attr", "rela") for name, shape in [
        ("h2att.weight", ("H", "R")), ("h2att.bias", ("H",)), ("alpha_net.weight", (1, "H")), ("alpha_net.bias", (1,))]],
    ("core.ssg_mem.W.weight", (1, "H")), ("core.ssg_mem.W.bias", (1,)),
    *[(f"core.controller.attn.linears.{j}.{p}", ("R", "R") if p == "weight" else ("R",)) for j in range(4)
      for p in ("weight", "bias")],
    ("core.controller.ff.w_1.weight", ("R", "R")), ("core.controller.ff.w_1.bias", ("R",)),
    ("core.controller.ff.w_2.weight", ("R", "R")), ("core.controller.ff.w_2.bias", ("R",)),
    ("core.W_cont.weight", (4, "R")), ("core.W_cont.bias", (4,)),
]


def release_shapes() -> dict[str, tuple[int, ...]]:
    r = S["R"]
    sizes = {**S, "V1": V1, "3R": 3 * r, "4R": 4 * r, "5R": 5 * r, "6R": 6 * r}
    return {name: tuple(sizes.get(x, x) for x in shape) for name, shape in RELEASE_NAMES}


def released_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in release_shapes().items():
        if name.endswith(".a_2"):
            state[name] = 1.0 + 0.1 * torch.randn(shape, generator=generator)
        else:
            state[name] = 0.3 * torch.randn(shape, generator=generator)
    return state


def released_memory(seed: int = 1) -> torch.Tensor:
    return torch.rand(S["M"], S["R"], generator=torch.Generator().manual_seed(seed))


def small_model(sizes: dict, geometry: dict, beam_size: int = 1, suppress_unk: bool = False) -> torch.nn.Module:
    """Our CVLNM at the generated release's size, built as the CLI builds it (so its
    checkpoint reloads with ``load_model``)."""
    head = {k: v for k, v in sizes.items() if k != "channels"}
    spec = {"class_path": "polyvision.models.cvlnm.CVLNM",
            "init_args": {"vocabulary_size": sizes["vocabulary_size"], "input_geometry": geometry,
                          "backbone": {"class_path": "polyvision.models.cvlnm.RegionFeatures",
                                       "init_args": {"channels": sizes["channels"]}},
                          "heads": {"captions": {"class_path": "polyvision.heads.captioning.CVLNMHead",
                                                 "init_args": {**head, "max_length": 6, "beam_size": beam_size,
                                                               "suppress_unk": suppress_unk}}}}}
    return build_from_spec(spec, "test")


def load_by_hand(model: torch.nn.Module, state: dict[str, torch.Tensor], memory: torch.Tensor) -> None:
    """The release's tensors copied into our modules one by one (column blocks by name)."""
    head, r = model.heads["captions"], S["R"]

    def blocks(tensor: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        return {name: tensor[:, i * r:(i + 1) * r] for i, name in enumerate(names)}

    with torch.no_grad():
        head.word_embed[0].weight.copy_(state["embed.0.weight"])
        head.logit.weight.copy_(state["logit.weight"])
        head.logit.bias.copy_(state["logit.bias"])
        fc = blocks(state["fc_embed.0.weight"], ["obj", "attr", "rela"])
        head.global_embed[0].weight.copy_(torch.cat([fc["obj"], fc["rela"], fc["attr"]], 1))
        head.global_embed[0].bias.copy_(state["fc_embed.0.bias"])
        for release, ours in (("obj", head.noun), ("attr", head.adjective), ("rela", head.verb)):
            for module, key in ((ours.embed[0], f"{release}_embed.0"), (ours.keys, f"ctx2att_{release}"),
                                (ours.query, f"core.attention_{release}.h2att"),
                                (ours.score, f"core.attention_{release}.alpha_net")):
                module.weight.copy_(state[f"{key}.weight"])
                module.bias.copy_(state[f"{key}.bias"])
        for index, layer in enumerate(head.verb_encoder.layers):
            prefix = f"rela_mod.model.layers.{index}"
            for p in ("weight", "bias"):
                getattr(layer.self_attn, f"in_proj_{p}").copy_(
                    torch.cat([state[f"{prefix}.self_attn.linears.{j}.{p}"] for j in range(3)]))
                getattr(layer.self_attn.out_proj, p).copy_(state[f"{prefix}.self_attn.linears.3.{p}"])
                getattr(layer.linear1, p).copy_(state[f"{prefix}.feed_forward.w_1.{p}"])
                getattr(layer.linear2, p).copy_(state[f"{prefix}.feed_forward.w_2.{p}"])
            for j, norm in enumerate((layer.norm1, layer.norm2)):
                norm.weight.copy_(state[f"{prefix}.sublayer.{j}.norm.a_2"])
                norm.bias.copy_(state[f"{prefix}.sublayer.{j}.norm.b_2"])
        head.verb_encoder.norm.weight.copy_(state["rela_mod.model.norm.a_2"])
        head.verb_encoder.norm.bias.copy_(state["rela_mod.model.norm.b_2"])
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(head.attention_lstm, name).copy_(state[f"core.att_lstm.{name}"])
        lang = blocks(state["core.lang_lstm.weight_ih"], ["obj", "attr", "rela", "lang", "h_att", "mem"])
        head.language_lstm.weight_ih.copy_(torch.cat([lang[k] for k in ("lang", "obj", "rela", "attr", "h_att",
                                                                         "mem")], 1))
        for name in ("weight_hh", "bias_ih", "bias_hh"):
            getattr(head.language_lstm, name).copy_(state[f"core.lang_lstm.{name}"])
        mem = blocks(state["core.mem_fc.0.weight"], ["obj", "attr", "rela", "lang", "h_att"])
        head.memory_query[0].weight.copy_(torch.cat([mem[k] for k in ("lang", "obj", "rela", "attr", "h_att")], 1))
        head.memory_query[0].bias.copy_(state["core.mem_fc.0.bias"])
        head.memory_cell.copy_(memory)
        head.function_word[0].weight.copy_(state["core.lang_embed.0.weight"])
        head.function_word[0].bias.copy_(state["core.lang_embed.0.bias"])
        controller = head.controller
        controller.module_embeddings.copy_(torch.cat([state[f"core.embed{k}"] for k in range(1, 5)]))
        for p in ("weight", "bias"):
            getattr(controller.query, p).copy_(state[f"core.query_fc.{p}"])
            getattr(controller.attention, f"in_proj_{p}").copy_(
                torch.cat([state[f"core.controller.attn.linears.{j}.{p}"] for j in range(3)]))
            getattr(controller.attention.out_proj, p).copy_(state[f"core.controller.attn.linears.3.{p}"])
            getattr(controller.feed_forward[0], p).copy_(state[f"core.controller.ff.w_1.{p}"])
            getattr(controller.feed_forward[3], p).copy_(state[f"core.controller.ff.w_2.{p}"])
            getattr(controller.classify, p).copy_(state[f"core.W_cont.{p}"])


# --------------------------------------------------------------------------- the release's forward
def release_log_probs(state: dict, memory: torch.Tensor, regions: torch.Tensor, mask: torch.Tensor,
                      tokens: torch.Tensor, ours: bool = True) -> torch.Tensor:
    """Teacher-forced log-probs ``(B, T, V+1)`` as ``models/AttModel.py`` computes them in eval
    (``prepare_feats``, ``post_process``, ``TopDownCore.forward`` with cont_ver 1, concat,
    topdown_res 1, relu_mod leaky_relu), from the release-named tensors. ``ours``: torch's
    LayerNorm in the verb transformer instead of the release's."""
    def lin(x, key):
        return F.linear(x, state[f"{key}.weight"], state[f"{key}.bias"])

    def leaky(x):
        return F.leaky_relu(x, 0.1)

    def norm(x, key):
        if ours:
            return F.layer_norm(x, x.shape[-1:], state[f"{key}.a_2"], state[f"{key}.b_2"], eps=1e-5)
        return state[f"{key}.a_2"] * (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-6) + state[f"{key}.b_2"]

    def mha(query, key, value, prefix, key_mask=None):
        b, heads = query.shape[0], 8
        q, k, v = (lin(x, f"{prefix}.linears.{j}").view(b, -1, heads, x.shape[-1] // heads).transpose(1, 2)
                   for j, x in enumerate((query, key, value)))
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None], -1e9)
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, -1, heads * q.shape[-1])
        return lin(out, f"{prefix}.linears.3")

    def lstm(x, h, c, key):
        gates = F.linear(x, state[f"{key}.weight_ih"], state[f"{key}.bias_ih"]) + \
            F.linear(h, state[f"{key}.weight_hh"], state[f"{key}.bias_hh"])
        i, f, g, o = gates.chunk(4, 1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        return o.sigmoid() * c.tanh(), c

    def attend(h, feats, p_feats, name):
        dot = lin(torch.tanh(p_feats + lin(h, f"core.attention_{name}.h2att")[:, None]),
                  f"core.attention_{name}.alpha_net").squeeze(-1)
        weight = dot.softmax(1) * mask.float()
        weight = weight / weight.sum(1, keepdim=True)
        return (weight[:, None] @ feats).squeeze(1)

    x = regions
    for i in range(S["layers"]):
        p = f"rela_mod.model.layers.{i}"
        y = norm(x, f"{p}.sublayer.0.norm")
        x = x + mha(y, y, y, f"{p}.self_attn", mask)
        x = x + lin(F.relu(lin(norm(x, f"{p}.sublayer.1.norm"), f"{p}.feed_forward.w_1")), f"{p}.feed_forward.w_2")
    rela_in = norm(x, "rela_mod.model.norm")
    feats = {"obj": leaky(lin(regions, "obj_embed.0")), "attr": leaky(lin(regions, "attr_embed.0")),
             "rela": leaky(lin(rela_in, "rela_embed.0"))}
    p_feats = {name: lin(value, f"ctx2att_{name}") for name, value in feats.items()}
    count = mask.float().sum(1, keepdim=True)
    fc = torch.cat([(feats[n] * mask[..., None]).sum(1) / count for n in ("obj", "attr", "rela")], 1)
    fc = lin(fc, "fc_embed.0")
    fc = leaky(fc)
    b, r = regions.shape[0], S["R"]
    h_att = c_att = h_lang = c_lang = regions.new_zeros(b, r)
    history = regions.new_zeros(b, 1, r)
    embeddings = torch.cat([state[f"core.embed{k}"] for k in range(1, 5)])
    outputs = []
    for t in range(tokens.shape[1]):
        xt = leaky(F.embedding(tokens[:, t], state["embed.0.weight"]))
        inp = torch.cat([h_lang, fc, xt], 1)
        h_att, c_att = lstm(inp, h_att, c_att, "core.att_lstm")
        att = {n: attend(h_att, feats[n], p_feats[n], n) for n in ("obj", "attr", "rela")}
        att_lang = leaky(lin(c_lang, "core.lang_embed.0"))
        query = lin(inp, "core.query_fc")[:, None]
        hidden = mha(query, history, history, "core.controller.attn")
        hidden = lin(F.relu(lin(hidden, "core.controller.ff.w_1")), "core.controller.ff.w_2").squeeze(1)
        weights = lin(hidden, "core.W_cont").softmax(1)
        history = torch.cat([history, (weights @ embeddings)[:, None]], 1)
        fused = torch.cat([att["obj"] * weights[:, 1:2], att["attr"] * weights[:, 3:4], att["rela"] * weights[:, 2:3],
                           att_lang * weights[:, 0:1]], 1)
        lang_in = torch.cat([fused, h_att], 1)
        query_mem = lin(lang_in, "core.mem_fc.0")
        query_mem = leaky(query_mem)
        read = (query_mem @ memory.t()).softmax(1) @ memory
        h, c = lstm(torch.cat([lang_in, read], 1), h_lang, c_lang, "core.lang_lstm")
        h_lang, c_lang = h + h_att, c + c_att
        outputs.append(F.log_softmax(lin(h_lang, "logit"), dim=1))
    return torch.stack(outputs, 1)


# --------------------------------------------------------------------------- fixtures and helpers
def convert(state, memory=None, **kwargs):
    kwargs.setdefault("accept_differences", True)
    kwargs.setdefault("build_model", small_model)
    return convert_cvlnm(state, TABLE, released_memory() if memory is None else memory, **kwargs)


def batch(rows: int = 3, seed: int = 2) -> dict:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.ones(rows, 5, dtype=torch.bool)
    mask[0, 3:] = False
    regions = torch.randn(rows, 5, S["C"], generator=generator) * mask[..., None]
    captions = torch.tensor([[[1, 2, 3, 1, 4, 5]], [[2, 0, 0, 0, 0, 0]], [[6, 5, 4, 3, 2, 1]]])[:rows]
    return {"regions": regions, "region_mask": mask, "captions": captions, "source": "captions",
            "meta": [{"image_id": i, "references": ["a man"]} for i in range(rows)]}


def outputs_of(model, data) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        forced = model(data)["captions"]
        generated = model.generate(data)["captions"]
    return {"log_probs": forced["log_probs"], "controller_logits": forced["controller_logits"], **generated}


pytestmark = pytest.mark.usefixtures("one_torch_thread_per_module")


@pytest.fixture(scope="module")
def release_state() -> dict[str, torch.Tensor]:
    return released_state_dict()


@pytest.fixture(scope="module")
def conversion(release_state):
    return convert(release_state)


# --------------------------------------------------------------------------- tests
def test_the_table_is_the_release_layer_list(release_state):
    assert len(release_state) == len(RELEASE_NAMES) == 97
    total = sum(t.numel() for t in release_state.values()) + S["M"] * S["R"]
    assert total == release_parameter_count(len(TABLE), rnn=S["R"], regions=S["C"], hidden=S["H"], memory=S["M"],
                                            layers=S["layers"], feedforward=S["F"])
    # Paper size (README command, vocabulary 9487): 140,620,320 in the state dict + the 1000 x 1000
    # memory; ours (141,619,807, tests/models/test_cvlnm.py) lacks only the unused Memory_cell2.W (513).
    assert release_parameter_count(9487) == 141_620_320 == 141_619_807 + 513


def test_every_released_key_is_mapped(release_state, conversion):
    taken = sorted(key for keys in conversion.used.values() for key in keys)
    assert taken == sorted(release_state)
    actions: dict[str, int] = {}
    for rule, keys in conversion.used.items():
        actions[rule.action] = actions.get(rule.action, 0) + len(keys)
    # stacked: 2 layers x 6 + controller 6 q/k/v tensors + 4 module embeddings; columns: global,
    # memory query, language LSTM input; words: embedding, logit weight and bias; unused: ssg_mem.W.
    assert actions == {"stacked": 22, "columns": 3, "words": 3, "unused": 2, "renamed": 97 - 30}
    assert conversion.words == ["a", "man", "rides", "red", "horse", "UNK"]
    assert conversion.opt_source == "README command (assumed)"


def test_converted_model_computes_as_the_weights_loaded_by_hand(release_state, conversion):
    geometry = conversion.model.hparams["input_geometry"]
    by_hand = small_model({**head_sizes(conversion.model), "channels": S["C"]}, geometry).eval()
    load_by_hand(by_hand, release_state, released_memory())
    ours, theirs = conversion.model.state_dict(), by_hand.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    data = batch()
    expected, got = outputs_of(by_hand, data), outputs_of(conversion.model, data)
    assert {"log_probs", "controller_logits", "tokens"} <= set(got)
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    assert torch.isfinite(got["log_probs"]).all()


def head_sizes(model) -> dict:
    head = model.heads["captions"]
    return {"vocabulary_size": head.vocabulary_size, "rnn_size": head.rnn_size, "word_size": head.word_size,
            "attention_hidden": head.attention_hidden, "memory_size": head.memory_size,
            "controller_heads": head.controller_heads, "verb_layers": head.verb_layers, "verb_heads": head.verb_heads,
            "verb_feedforward": head.verb_feedforward, "fusion": head.fusion, "residual": head.residual}


def test_converted_model_computes_as_the_release_forward(release_state, conversion):
    """The release's teacher-forced forward on its own tensors: equal to ours with our one
    difference switched in (so every permutation, module order and activation is the release's);
    with the release's LayerNorm it is not (the difference is real)."""
    data = batch()
    inputs = torch.cat([torch.zeros(3, 1, dtype=torch.long), data["captions"][:, 0]], 1)
    got = outputs_of(conversion.model, data)["log_probs"]
    memory = released_memory()
    with torch.no_grad():
        expected = release_log_probs(release_state, memory, data["regions"], data["region_mask"], inputs)
        release = release_log_probs(release_state, memory, data["regions"], data["region_mask"], inputs, ours=False)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)
    assert (got - release).abs().max() > 1e-3


def test_refuses_an_unknown_key_a_wrong_shape_and_missing_weights(release_state):
    for extra in ("core.controller.extra.weight", "rela_mod.model.layers.0.feed_forward.w_3.bias", "fc_embed.1.weight"):
        with pytest.raises(WeightsError, match=f"1 keys match no rule .*first: '{extra}'"):
            convert({**release_state, extra: torch.zeros(3)})
    # A third verb layer's stray tensor: our model would have 3 layers, the file gives one tensor of it.
    with pytest.raises(WeightsError, match="has shape \\(3,\\), but our 'heads.captions.verb_encoder.layers.2"):
        convert({**release_state, "rela_mod.model.layers.2.feed_forward.w_1.bias": torch.zeros(3)})
    with pytest.raises(WeightsError, match=r"'core.mem_fc.0.weight' has shape \(16, 64\), but our "
                                           r"'heads.captions.memory_query.0.weight' needs \(16, 80\)"):
        convert({**release_state, "core.mem_fc.0.weight": torch.zeros(16, 64)})
    with pytest.raises(WeightsError, match=r"embed.0.weight has 8 rows but ix_to_word has 6 words"):
        convert({**release_state, "embed.0.weight": torch.zeros(8, 16)})
    with pytest.raises(WeightsError, match="the file gives 3 of 4"):
        convert({k: v for k, v in release_state.items() if k != "core.embed3"})
    with pytest.raises(WeightsError, match="1 weights of our CVLNM are not in the file .*attention_lstm.bias_hh"):
        convert({k: v for k, v in release_state.items() if k != "core.att_lstm.bias_hh"})
    with pytest.raises(WeightsError, match=r"memory is 10x12, its rows must be rnn_size \(16\)"):
        convert(release_state, memory=torch.zeros(10, 12))
    with pytest.raises(WeightsError, match="combine_att"):
        convert(release_state, opt={"combine_att": "add"})
    with pytest.raises(WeightsError, match="without gaps"):
        convert_cvlnm(release_state, {**TABLE, "8": "x"}, released_memory(), build_model=small_model,
                      accept_differences=True)


def test_refuses_what_computes_differently_unless_accepted(release_state):
    with pytest.raises(WeightsError) as refused:
        convert(release_state, accept_differences=False,
                build_model=lambda s, g: small_model(s, g, beam_size=2, suppress_unk=True))
    message = str(refused.value)
    for name in ("verb_layer_norm", "beam_search"):
        assert f"{name}:" in message
    # gone (our activations are the release's now), or not applying: relu_mod leaky_relu, UNK last as the release
    for name in ("global_activation", "memory_query_activation", "activations", "unk_suppression"):
        assert f"{name}:" not in message
    partial = convert(release_state, opt={"relu_mod": "relu", "topdown_res": 1},
                      accept_differences=["verb_layer_norm", "activations"])
    assert [d.name for d in partial.differences] == ["verb_layer_norm", "activations"]
    assert partial.opt_source == "infos pickle"
    with pytest.raises(WeightsError, match="unk_suppression"):  # greedy with UNK suppressed: the release decodes it
        convert(release_state, accept_differences=list(set(DIFFERENCE_NAMES) - {"unk_suppression"}),
                build_model=lambda s, g: small_model(s, g, suppress_unk=True))


class _Evil:
    def __reduce__(self):
        import os

        return os.system, ("echo pwned > /dev/null",)


def test_infos_pickle_read_without_building_other_objects(tmp_path):
    opt = argparse.Namespace(caption_model="mcap_rs3_mem_new", topdown_res=1, combine_att="concat", cont_ver=1,
                             relu_mod="leaky_relu", rnn_size=16)
    infos = {"iter": 5000, "epoch": 3, "iterators": {"train": 0}, "split_ix": {"train": [0, 1]},
             "best_val_score": 0, "opt": opt, "vocab": TABLE}
    for protocol in (0, 2):  # 0: train.py's Python 2 cPickle.dump default
        path = tmp_path / f"infos_c1-best.{protocol}.pkl"
        path.write_bytes(pickle.dumps(infos, protocol=protocol))
        read = read_infos(path)
        assert read["vocab"] == TABLE and read["opt"]["relu_mod"] == "leaky_relu"
    evil = tmp_path / "infos_evil.pkl"
    evil.write_bytes(pickle.dumps({"vocab": TABLE, "opt": _Evil()}, protocol=0))
    with pytest.raises(WeightsError, match=r"refused: the infos pickle holds a posix.system object.*cocotalk.json"):
        read_infos(evil)


def test_file_entry_writes_a_checkpoint_load_model_reads(release_state, tmp_path):
    source, out = tmp_path / "modelc10001.pth", tmp_path / "cvlnm.ckpt"
    torch.save({f"module.{k}": v for k, v in release_state.items()}, source)  # a DataParallel save
    np.savez(tmp_path / "memory_cellc10001.npz", memory_cell=released_memory().numpy())  # found next to the model
    vocabulary = tmp_path / "cocotalk.json"
    vocabulary.write_text(json.dumps({"ix_to_word": TABLE, "images": []}))
    conversion = convert_cvlnm_file(source, out, str(vocabulary), True, build_model=small_model)
    loaded = load_model(out)
    recorded = torch.load(out, weights_only=True)["polyvision"]["converted_from"]
    assert recorded["differences"] == [d.name for d in conversion.differences]
    assert recorded["memory"] == "memory_cellc10001.npz" and recorded["vocabulary"] == "cocotalk.json"
    assert recorded["word_rows"]["release_rows"] == recorded["word_rows"]["our_ids"] == 7
    assert loaded.heads["captions"].vocabulary == list(TABLE.values())
    data = batch(2)
    expected, got = outputs_of(conversion.model, data), outputs_of(loaded, data)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert not list(Path(tmp_path).glob(".*.tmp"))
    # model-best.pth has no memory of its own name: refused, nothing written.
    best = tmp_path / "model-best.pth"
    best.write_bytes(source.read_bytes())
    with pytest.raises(WeightsError, match="pass --memory FILE"):
        convert_cvlnm_file(best, tmp_path / "best.ckpt", str(vocabulary), True, build_model=small_model)
    assert not (tmp_path / "best.ckpt").exists()
    # A state dict that needs code to load is refused by weights_only loading.
    torch.save({"embed.0.weight": _Evil()}, tmp_path / "modelbad.pth")
    with pytest.raises(WeightsError, match="refused"):
        convert_cvlnm_file(tmp_path / "modelbad.pth", tmp_path / "bad.ckpt", str(vocabulary), True,
                           build_model=small_model, memory=tmp_path / "memory_cellc10001.npz")
