"""``scripts/convert_hybridnet.py``: the HybridNet release's names and shapes -> a polyvision
``HybridNet``.

The released file (the MODEL_ZOO of github.com/yuweijiang/HybridNet, ``torch.save(model.state_dict())``
in ``train.py``) is not available here, so :func:`released_state_dict` generates one from the
explicit table :data:`RELEASE_NAMES` of the release's module names and shapes (``model/Model.py``
``HybirdNet`` with ``tgt_emb_prj_weight_sharing=False``; ``model/Decoder.py`` ``Decoder`` /
``RelationalMemory`` / ``MultiHeadedAttention``; ``model/transformer/Transformers.py``
``Encoder_video``; ``Layers.py`` ``DecoderLayer``; ``SubLayers.py``
``MultiHeadAttention_rmatt_ev_cnn`` / ``PositionwiseFeedForward``; ``Modules.py``
``ScaledDotProductAttention_rmatt_ev_cnn``), at small size: d 32, 2 layers, 2 heads of 16.
The converted model is compared with the same weights loaded by hand (:func:`load_by_hand`,
written module by module without the converter's rules).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from polyvision.datamodules.captions.v2c import read_v2c_vocabulary
from polyvision.errors import WeightsError
from polyvision.models.factory import build_from_spec, load_model
from polyvision.scripts.convert_hybridnet import (
    DIFFERENCE_NAMES,
    convert_hybridnet,
    convert_hybridnet_file,
    release_parameter_count,
    word_rows,
)

torch.set_num_threads(1)

# Small sizes. d_model, heads x d_k, d_inner, layers, memory slots, feature widths, word rows
# (len(ix_to_word)), the release's len_max_seq per decoder (opts.py: 28 / 21 / 26 / 8 at paper size).
SIZES = {"d": 32, "h": 2, "dk": 16, "hk": 32, "inner": 64, "layers": 2, "slots": 3, "vis": 24, "i3d": 12, "aud": 10}
MAX_LEN = {"decoder": 8, "cms_decoder_int": 6, "cms_decoder_eff": 7, "cms_decoder_att": 4}

# The release's ix_to_word tables: PAD/UNK/BOS/EOS = 0..3 as Constants.py for the captions; the
# commonsense table in another order (as the synthetic V2C writes it) to show rows are read from
# the table, not assumed.
CAPTION_TABLE = {"0": "<pad>", "1": "<unk>", "2": "<sos>", "3": "<eos>", "4": "a", "5": "b", "6": "c"}
CMS_TABLE = {"0": "<pad>", "1": "<sos>", "2": "<eos>", "3": "<unk>", "4": "x", "5": "y"}
# Our ids (read_v2c_vocabulary): captions ["UNK", "a", "b", "c"] -> ids 1..4, commonsense
# ["UNK", "x", "y"] -> ids 1..3; id 0 takes <sos> in embeddings and <eos> in output layers.
CAPTION_INPUT_ROWS, CAPTION_OUTPUT_ROWS = [2, 1, 4, 5, 6], [3, 1, 4, 5, 6]
CMS_INPUT_ROWS, CMS_OUTPUT_ROWS = [1, 3, 4, 5], [2, 3, 4, 5]

# The release's state-dict names and shapes, written out (sizes by name from SIZES; "V" the
# decoder's vocabulary rows, "P" its position rows = len_max_seq + 1).
ENCODER_NAMES = [
    ("encoder.vih.weight", ("d", "vis")), ("encoder.vih.bias", ("d",)),
    ("encoder.d2h.weight", ("d", "i3d")), ("encoder.d2h.bias", ("d",)),
    ("encoder.a2h.weight", ("d", "aud")), ("encoder.a2h.bias", ("d",)),
    ("encoder.position_enc.weight", (3, "d")),
    *[(f"encoder.{rnn}.{name}", (("3d", "d") if name.startswith("weight") else ("3d",)))
      for rnn in ("rnn_vis", "rnn_i3d", "rnn_aud") for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")],
]
DECODER_NAMES = [
    ("tgt_word_emb.weight", ("V", "d")),
    ("position_enc.weight", ("P", "d")),
    ("cm_cap.attn.linears.0.weight", ("d", "d")), ("cm_cap.attn.linears.0.bias", ("d",)),
    ("cm_cap.attn.linears.1.weight", ("d", "d")), ("cm_cap.attn.linears.1.bias", ("d",)),
    ("cm_cap.attn.linears.2.weight", ("d", "d")), ("cm_cap.attn.linears.2.bias", ("d",)),
    ("cm_cap.attn.linears.3.weight", ("d", "d")), ("cm_cap.attn.linears.3.bias", ("d",)),
    ("cm_cap.mlp.0.weight", ("d", "d")), ("cm_cap.mlp.0.bias", ("d",)),
    ("cm_cap.mlp.2.weight", ("d", "d")), ("cm_cap.mlp.2.bias", ("d",)),
    ("cm_cap.W.weight", ("2d", "d")), ("cm_cap.W.bias", ("2d",)),
    ("cm_cap.U.weight", ("2d", "d")), ("cm_cap.U.bias", ("2d",)),
]
ATTENTION_NAMES = [
    ("w_qs.weight", ("hk", "d")), ("w_qs.bias", ("hk",)),
    ("w_qs_att.weight", ("hk", "slots*d")), ("w_qs_att.bias", ("hk",)),
    ("w_ks.weight", ("hk", "d")), ("w_ks.bias", ("hk",)),
    ("w_vs.weight", ("hk", "d")), ("w_vs.bias", ("hk",)),
    ("attention.att_conv.weight", ("h", "h", 3, 3)),
    ("norm.weight", ("d",)), ("norm.bias", ("d",)),
    ("fc.weight", ("d", "hk")), ("fc.bias", ("d",)),
]
FFN_NAMES = [
    ("pos_ffn.w_1.weight", ("inner", "d", 1)), ("pos_ffn.w_1.bias", ("inner",)),
    ("pos_ffn.w_2.weight", ("d", "inner", 1)), ("pos_ffn.w_2.bias", ("d",)),
    ("pos_ffn.norm.weight", ("d",)), ("pos_ffn.norm.bias", ("d",)),
]
PROJECTION_NAMES = [("cap_word_prj.weight", ("Vcap", "d")), ("cms_word_prj.weight", ("Vcms", "d"))]


def release_shapes(layers: int = SIZES["layers"]) -> dict[str, tuple[int, ...]]:
    s = SIZES
    sizes = {**s, "3d": 3 * s["d"], "2d": 2 * s["d"], "slots*d": s["slots"] * s["d"],
             "Vcap": len(CAPTION_TABLE), "Vcms": len(CMS_TABLE)}
    shapes = {name: tuple(sizes.get(x, x) for x in shape) for name, shape in ENCODER_NAMES + PROJECTION_NAMES}
    for decoder, length in MAX_LEN.items():
        local = {**sizes, "V": len(CAPTION_TABLE if decoder == "decoder" else CMS_TABLE), "P": length + 1}
        for name, shape in DECODER_NAMES:
            shapes[f"{decoder}.{name}"] = tuple(local.get(x, x) for x in shape)
        for layer in range(layers):
            for attention in ("slf_attn", "enc_attn"):
                for name, shape in ATTENTION_NAMES:
                    shapes[f"{decoder}.layer_stack.{layer}.{attention}.{name}"] = tuple(local.get(x, x) for x in shape)
            for name, shape in FFN_NAMES:
                shapes[f"{decoder}.layer_stack.{layer}.{name}"] = tuple(local.get(x, x) for x in shape)
    return shapes


def sinusoid(rows: int, dim: int) -> torch.Tensor:
    """The release's get_sinusoid_encoding_table(rows, dim, padding_idx=0), as it computes it."""
    table = np.array([[p / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)] for p in range(rows)])
    table[:, 0::2], table[:, 1::2] = np.sin(table[:, 0::2]), np.cos(table[:, 1::2])
    table[0] = 0.0
    return torch.FloatTensor(table)


def released_state_dict(seed: int = 0, layers: int = SIZES["layers"]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in release_shapes(layers).items():
        if name.endswith("position_enc.weight") and not name.startswith("encoder"):
            state[name] = sinusoid(*shape)
        else:
            state[name] = 0.3 * torch.randn(shape, generator=generator)
    return state


def small_model(geometry: dict) -> torch.nn.Module:
    """Our HybridNet at the generated release's size, built as the CLI builds it (so its
    checkpoint reloads with ``load_model``)."""
    s = SIZES
    head = {"class_path": "polyvision.heads.commonsense.HybridNetHead",
            "init_args": {"dim": s["d"], "layers": s["layers"], "heads": s["h"], "head_dim": s["dk"], "inner": s["inner"],
                          "memory_slots": s["slots"], "beam_size": 1, "suppress_unk": False,
                          "max_lengths": {"caption": 8, "intention": 4, "effect": 5, "attribute": 2}}}
    neck = {"class_path": "polyvision.models.hybridnet.VideoModalityEncoder",
            "init_args": {"dim": s["d"], "motion_dim": s["i3d"], "audio_dim": s["aud"]}}
    spec = {"class_path": "polyvision.models.hybridnet.HybridNet",
            "init_args": {"heads": {"v2c": head}, "neck": neck, "input_geometry": geometry,
                          "backbone": {"class_path": "polyvision.models.backbones.PrecomputedFeatures",
                                       "init_args": {"channels": s["vis"]}}}}
    return build_from_spec(spec, "test")


def load_by_hand(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """The release's tensors copied into our modules one by one."""
    neck, head = model.neck, model.heads["v2c"]
    with torch.no_grad():
        for ours, release in (("appearance", "vih"), ("motion", "d2h"), ("audio", "a2h")):
            neck.projections[ours][0].weight.copy_(state[f"encoder.{release}.weight"])
            neck.projections[ours][0].bias.copy_(state[f"encoder.{release}.bias"])
        for ours, release in (("appearance", "rnn_vis"), ("motion", "rnn_i3d"), ("audio", "rnn_aud")):
            for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                getattr(neck.recurrent[ours], name).copy_(state[f"encoder.{release}.{name}"])
        neck.modality_embedding.weight.copy_(state["encoder.position_enc.weight"])
        decoders = (("decoder", head.caption_decoder), ("cms_decoder_int", head.cms_decoders["intention"]),
                    ("cms_decoder_eff", head.cms_decoders["effect"]), ("cms_decoder_att", head.cms_decoders["attribute"]))
        for release, decoder in decoders:
            memory, prefix = decoder.memory, f"{release}.cm_cap"
            for field in ("weight", "bias"):
                getattr(memory.attention, f"in_proj_{field}").copy_(
                    torch.cat([state[f"{prefix}.attn.linears.{i}.{field}"] for i in range(3)]))
                getattr(memory.attention.out_proj, field).copy_(state[f"{prefix}.attn.linears.3.{field}"])
                getattr(memory.mlp[0], field).copy_(state[f"{prefix}.mlp.0.{field}"])
                getattr(memory.mlp[2], field).copy_(state[f"{prefix}.mlp.2.{field}"])
                getattr(memory.input_gates, field).copy_(state[f"{prefix}.W.{field}"])
                getattr(memory.memory_gates, field).copy_(state[f"{prefix}.U.{field}"])
            for index, layer in enumerate(decoder.layers):
                prefix = f"{release}.layer_stack.{index}"
                for name, attention in (("slf_attn", layer.self_attention), ("enc_attn", layer.cross_attention)):
                    for module, theirs in ((attention.query, "w_qs"), (attention.key, "w_ks"), (attention.value, "w_vs"),
                                           (attention.memory_query, "w_qs_att"), (attention.output, "fc"),
                                           (attention.norm, "norm")):
                        module.weight.copy_(state[f"{prefix}.{name}.{theirs}.weight"])
                        module.bias.copy_(state[f"{prefix}.{name}.{theirs}.bias"])
                    attention.route.weight.copy_(state[f"{prefix}.{name}.attention.att_conv.weight"])
                for module, theirs in ((layer.feed_forward[0], "w_1"), (layer.feed_forward[2], "w_2")):
                    module.weight.copy_(state[f"{prefix}.pos_ffn.{theirs}.weight"][:, :, 0])
                    module.bias.copy_(state[f"{prefix}.pos_ffn.{theirs}.bias"])
                layer.norm.weight.copy_(state[f"{prefix}.pos_ffn.norm.weight"])
                layer.norm.bias.copy_(state[f"{prefix}.pos_ffn.norm.bias"])
        head.caption_embedding.weight.copy_(state["decoder.tgt_word_emb.weight"][CAPTION_INPUT_ROWS])
        head.caption_projection.weight.copy_(state["cap_word_prj.weight"][CAPTION_OUTPUT_ROWS])
        for kind, release in (("intention", "int"), ("effect", "eff"), ("attribute", "att")):
            head.cms_embeddings[kind].weight.copy_(state[f"cms_decoder_{release}.tgt_word_emb.weight"][CMS_INPUT_ROWS])
        head.cms_projection.weight.copy_(state["cms_word_prj.weight"][CMS_OUTPUT_ROWS])


def convert(state: dict[str, torch.Tensor], **kwargs):
    kwargs.setdefault("accept_differences", True)
    return convert_hybridnet(state, CAPTION_TABLE, CMS_TABLE, build_model=small_model, **kwargs)


def batch(rows: int = 3, seed: int = 1) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {"appearance": torch.randn(rows, 20, SIZES["vis"], generator=generator),
            "motion": torch.randn(rows, 10, SIZES["i3d"], generator=generator),
            "audio": torch.randn(rows, 10, SIZES["aud"], generator=generator),
            "captions": torch.tensor([[[2, 3, 1, 4, 0, 0]], [[1, 0, 0, 0, 0, 0]], [[4, 4, 3, 2, 1, 2]]])[:rows],
            **{kind: torch.tensor([[[1, 2, 3, 0]], [[3, 0, 0, 0]], [[2, 2, 1, 3]]])[:rows]
               for kind in ("intention", "effect", "attribute")},
            "meta": [{}] * rows}


def outputs_of(model: torch.nn.Module, data: dict) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        features = model.extract_features(data)
        forced = model.heads["v2c"](features, data)
        generated = model.generate(data)["v2c"]
    return {**{k: v for k, v in forced.items() if k.endswith("log_probs")}, **generated}


@pytest.fixture(scope="module")
def release_state() -> dict[str, torch.Tensor]:
    return released_state_dict()


@pytest.fixture(scope="module")
def conversion(release_state):
    return convert(release_state)


def test_the_table_is_the_release_layer_list(release_state):
    """Key count and learnable size of the generated release against the release's layer list
    (release_parameter_count, which also gives the paper size)."""
    per_layer = 2 * len(ATTENTION_NAMES) + len(FFN_NAMES)
    assert len(release_state) == len(ENCODER_NAMES) + 4 * (len(DECODER_NAMES) + 2 * per_layer) + 2 == 349
    learnable = sum(t.numel() for k, t in release_state.items() if not (k.endswith("position_enc.weight")
                                                                         and not k.startswith("encoder")))
    s = SIZES
    assert learnable == release_parameter_count(len(CAPTION_TABLE), len(CMS_TABLE), dim=s["d"], inner=s["inner"],
                                                layers=s["layers"], heads=s["h"], head_dim=s["dk"], visual=s["vis"],
                                                motion=s["i3d"], audio=s["aud"])
    # Paper size (opts.py): 130,841,600 before the word layers, as ours; per ix_to_word entry
    # 2 x 512 (caption: embedding, output) and 4 x 512 (commonsense: 3 embeddings, output).
    assert release_parameter_count(0, 0) == 130_841_600
    assert release_parameter_count(1000, 700) == 130_841_600 + 512 * (2 * 1000 + 4 * 700)


def test_every_released_key_is_mapped(release_state, conversion):
    taken = [key for keys in conversion.used.values() for key in keys]
    assert sorted(taken) == sorted(release_state)
    actions = {}
    for rule, keys in conversion.used.items():
        actions[rule.action] = actions.get(rule.action, 0) + len(keys)
    # 4 x 2 layers x 2 Conv1d weights squeezed; 4 x 6 memory q/k/v stacked; 4 embeddings + 2
    # output layers permuted; 4 sinusoid tables checked; the rest renamed.
    assert actions == {"squeezed": 16, "stacked": 24, "words": 6, "checked": 4, "renamed": 349 - 50}
    assert conversion.missing == {}
    assert conversion.release_max_lengths == {"caption": 8, "intention": 4, "effect": 5, "attribute": 2}


def test_word_ids_follow_read_v2c_vocabulary(tmp_path):
    for name, table, rows in (("caption", CAPTION_TABLE, (CAPTION_INPUT_ROWS, CAPTION_OUTPUT_ROWS)),
                              ("cms", CMS_TABLE, (CMS_INPUT_ROWS, CMS_OUTPUT_ROWS))):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"ix_to_word": table}))
        found = word_rows(table, name)
        assert found.words == read_v2c_vocabulary(path).words
        assert (found.input_rows, found.output_rows) == rows
    assert word_rows(CAPTION_TABLE, "caption").left_out("input") == [0, 3]  # <pad>, <eos>
    assert word_rows(CAPTION_TABLE, "caption").left_out("output") == [0, 2]  # <pad>, <sos>


def test_converted_model_computes_as_the_weights_loaded_by_hand(release_state, conversion):
    geometry = conversion.model.hparams["input_geometry"]
    by_hand = small_model(geometry).eval()
    load_by_hand(by_hand, release_state)
    converted = conversion.model
    ours, theirs = converted.state_dict(), by_hand.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    data = batch()
    expected, got = outputs_of(by_hand, data), outputs_of(converted, data)
    assert set(got) == {f"{k}_log_probs" for k in ("caption", "intention", "effect", "attribute")} | {
        "caption", *(f"{t}_{k}" for t in ("generation", "completion") for k in ("intention", "effect", "attribute"))}
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    assert torch.isfinite(got["caption_log_probs"]).all()


def test_refuses_an_unknown_key(release_state):
    for extra in ("decoder.layer_stack.0.slf_attn.extra.weight", "decoder.layer_stack.2.pos_ffn.w_1.bias",
                  "cap_word_prj.bias"):
        state = {**release_state, extra: torch.zeros(3)}
        with pytest.raises(WeightsError, match=f"1 keys match no rule .*first: '{extra}'"):
            convert(state)


def test_refuses_a_wrong_shape_a_missing_key_and_a_wrong_table(release_state):
    wrong = dict(release_state)
    wrong["cms_word_prj.weight"] = torch.zeros(len(CMS_TABLE) + 1, SIZES["d"])
    with pytest.raises(WeightsError, match=r"'cms_word_prj.weight' has shape \(7, 32\), but our "
                                           r"'heads.v2c.cms_projection.weight' needs \(6, 32\) \(rows: the ix_to_word"):
        convert(wrong)
    wrong = {**release_state, "decoder.layer_stack.1.pos_ffn.w_1.weight": torch.zeros(64, 32)}
    with pytest.raises(WeightsError, match=r"pos_ffn.w_1.weight' has shape \(64, 32\), but .* needs \(64, 32, 1\)"):
        convert(wrong)
    wrong = {k: v for k, v in release_state.items() if k != "cms_decoder_eff.cm_cap.attn.linears.1.weight"}
    with pytest.raises(WeightsError, match="the file gives 2 of 3"):
        convert(wrong)
    wrong = {k: v for k, v in release_state.items() if k != "encoder.rnn_aud.bias_hh_l0"}
    with pytest.raises(WeightsError, match="1 weights of our HybridNet are not in the file .*recurrent.audio.bias_hh_l0"):
        convert(wrong)
    wrong = {**release_state, "decoder.position_enc.weight": torch.zeros(9, 32)}
    with pytest.raises(WeightsError, match="not the release's sinusoid table"):
        convert(wrong)
    with pytest.raises(WeightsError, match="has no <sos>"):
        convert_hybridnet(release_state, {k: v for k, v in CAPTION_TABLE.items() if v != "<sos>"} | {"2": "d"},
                          CMS_TABLE, build_model=small_model, accept_differences=True)


def test_refuses_what_computes_differently_unless_accepted(release_state):
    with pytest.raises(WeightsError) as refused:
        convert(release_state, accept_differences=False)
    message = str(refused.value)
    for name in ("commonsense_context", "routing_batch", "special_outputs", "memory_heads"):
        assert name in message
    for name in ("positions", "beam_search", "max_lengths", "suppress_unk", "previous_attention", "unk_without_row"):
        assert f"{name}:" not in message  # beam 1, release lengths, UNK decodable, release maps, an <unk> row
    partial = convert(release_state, accept_differences=["commonsense_context", "routing_batch", "special_outputs",
                                                         "memory_heads"])
    assert [d.name for d in partial.differences] == ["commonsense_context", "routing_batch", "special_outputs",
                                                     "memory_heads"]
    assert set(DIFFERENCE_NAMES) >= {d.name for d in partial.differences}


def test_file_entry_writes_a_checkpoint_load_model_reads(release_state, tmp_path):
    source, out = tmp_path / "hybridnet_release.pth", tmp_path / "hybridnet.ckpt"
    torch.save({f"module.{k}": v for k, v in release_state.items()}, source)  # a DataParallel save
    (tmp_path / "msrvtt_new_info.json").write_text(json.dumps({"ix_to_word": CAPTION_TABLE}))
    (tmp_path / "v2c_info.json").write_text(json.dumps({"ix_to_word": CMS_TABLE}))
    conversion = convert_hybridnet_file(source, out, str(tmp_path), True, build_model=small_model)
    loaded = load_model(out)
    recorded = torch.load(out, weights_only=True)["polyvision"]["converted_from"]
    assert recorded["differences"] == [d.name for d in conversion.differences]
    assert recorded["word_rows"]["caption"] == {"bos_input_row": 2, "eos_output_row": 3, "release_rows": 7, "our_ids": 5}
    assert recorded["word_rows"]["cms"] == {"bos_input_row": 1, "eos_output_row": 2, "release_rows": 6, "our_ids": 4}
    assert loaded.heads["v2c"].vocabulary == ["UNK", "a", "b", "c"]
    data = batch(2)
    expected, got = outputs_of(conversion.model, data), outputs_of(loaded, data)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert not list(Path(tmp_path).glob(".*.tmp"))


def test_polyvision_convert_hybridnet_is_wired_and_says_what_is_missing(tmp_path, capsys):
    from polyvision import cli

    code = cli.main(["convert", "hybridnet", str(tmp_path / "missing.pth"), str(tmp_path / "out.ckpt")])
    error = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(error) == 1 and "missing.pth: file not found" in error[0]
    assert not (tmp_path / "out.ckpt").exists()
