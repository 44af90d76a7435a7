"""Workload builders: parameter counts, KV bytes, Ops structure, phases, knobs, loading.

Published numbers come from the preset JSON files (``published``) and the torchvision
weights table (CNNs); hand-computed numbers are derived in the comments.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import perfmodel as pm
from perfmodel.workloads import EMBED_BITS

LLM_PRESETS = [n for n in pm.workloads.list_presets() if n not in pm.workloads.CNN_PRESETS]


def wl(name):
    return pm.workloads.preset(name)


def total(ops, field, kinds=None):
    """sum(field * count) over rows (optionally only rows of the given kinds)."""
    vals = np.asarray(getattr(ops, field), dtype=np.float64) * np.asarray(ops.count, np.float64)
    if kinds is None:
        return float(vals.sum())
    return float(sum(v for v, k in zip(vals, ops.kinds) if k in kinds))


def row(ops, name):
    """The table row (dict of floats) named ``name``."""
    rows = [r for r in ops.table() if r["name"] == name]
    assert len(rows) == 1, f"expected exactly one {name!r} row, got {ops.names}"
    return rows[0]


@pytest.fixture(scope="module")
def a100():
    return pm.hardware.preset("a100-80gb")


# --------------------------------------------------------------------------- 1. parameters
def test_preset_list_covers_llms_and_cnns():
    names = pm.workloads.list_presets()
    for n in ("gpt2", "llama-2-7b", "llama-3-8b", "mixtral-8x7b", "bitnet-b1.58-3b",
              "opt-13b", "resnet-18", "resnet-50", "vgg-16"):
        assert n in names
    assert names == sorted(names)


@pytest.mark.parametrize("name", pm.workloads.list_presets())
def test_parameter_count_matches_published(name):
    w = wl(name)
    pub = w.published
    got = w.parameter_count()
    assert isinstance(got, int)
    if pub.get("parameters_include_tied_head"):  # a size badge counting the tied copy
        got += w.vocab * w.hidden
    if pub.get("parameters_rounded"):
        assert got == pytest.approx(pub["parameters"], rel=0.015), (name, got)
    elif "parameters_rel_tolerance" in pub:  # a published gap the preset explains
        assert pub["parameters_note"]
        assert got == pytest.approx(pub["parameters"], rel=pub["parameters_rel_tolerance"])
    else:  # exact, up to weights the op table does not model (named in the preset)
        assert got + pub.get("unmodelled_parameters", 0) == pub["parameters"], (
            name, got, pub["parameters"])
    if "non_embedding_parameters" in pub:
        ne = w.parameter_count(embeddings=False)
        if pub.get("non_embedding_parameters_rounded"):
            assert ne == pytest.approx(pub["non_embedding_parameters"], rel=0.002), (name, ne)
        else:
            assert ne == pub["non_embedding_parameters"], (name, ne)


def test_mixtral_active_parameters():
    w = wl("mixtral-8x7b")
    active = w.parameter_count(active=True)
    assert active == pytest.approx(w.published["active_parameters"], rel=0.01)
    # dense share + 2 of 8 experts: the 6 unused experts are exactly the difference
    assert w.parameter_count() - active == w.layers * 6 * (3 * w.hidden * w.ffn)
    # a dense model's active count is its total
    assert wl("llama-2-7b").parameter_count(active=True) == wl("llama-2-7b").parameter_count()


def test_qwen3_moe_config():
    """Qwen-MoE spelling (num_experts, moe_intermediate_size): Qwen3-30B-A3B's published
    3,353,032,704 active parameters exactly, less its 12,288 q/k-norm weights."""
    w = wl("qwen3-30b-a3b")
    assert (w.experts, w.experts_per_token, w.ffn) == (128, 8, 768)
    assert w.parameter_count(active=True) == w.published["active_parameters"]
    cfg = json.loads((pathlib.Path(pm.workloads.__file__).parent / "presets" /
                      "qwen3-30b-a3b.json").read_text())["config"]
    # dense layers: listed in mlp_only_layers, or off the decoder_sparse_step grid
    one = pm.workloads.from_hf_config({**cfg, "mlp_only_layers": [0]}, "q")
    assert (one.dense_layers, one.dense_ffn, one.moe_layers) == (1, 6144, 47)
    assert one.parameter_count() - w.parameter_count() == (
        3 * 2048 * 6144 - (128 * 3 * 2048 * 768 + 2048 * 128))
    half = pm.workloads.from_hf_config({**cfg, "decoder_sparse_step": 2}, "q")
    assert (half.dense_layers, half.moe_layers) == (24, 24)
    counts = dict(zip(half.decode(4, 100).names, half.decode(4, 100).count.tolist()))
    assert counts["moe_up"] == counts["dense_ffn_up"] == 24
    with pytest.raises(pm.ModelInputError, match="shared_expert_intermediate_size"):
        pm.workloads.from_hf_config({**cfg, "shared_expert_intermediate_size": 5632}, "q")


def test_gpt_oss_config():
    """GPT-OSS-20B: exact published total (router and sink parameters included), the
    model card's 3.6B active parameters without the input embedding, every other layer
    windowed to 128 tokens, and MXFP4 experts (4.25 bits) whatever wbits is."""
    w = wl("gpt-oss-20b")
    assert w.parameter_count() == w.published["parameters"]
    active = w.parameter_count(active=True) - w.vocab * w.hidden
    assert active == pytest.approx(w.published["active_parameters"], rel=0.01)
    assert (w.sliding_window, w.sliding_layers, w.expert_bits) == (128, 12, 4.25)
    ops = w.decode(1.0, 1023.0, wbits=8.0)
    rows = dict(zip(ops.names, range(len(ops.names))))
    assert float(ops.weight_bits[rows["moe_up"]]) == 4.25
    assert float(ops.weight_bits[rows["qkv_proj"]]) == 8.0
    # half the layers attend to 1024 tokens, half to the 128-token window
    assert float(w.attended(1024.0)) == pytest.approx((1024 + 128) / 2)
    kv = float(ops.kv_footprint)
    assert kv == pytest.approx((1024 + 128) / 2 * w.kv_bytes_per_token(16), rel=1e-6)
    # weight footprint: experts at 4.25 bits, embeddings at EMBED_BITS, the rest at 8
    experts = w.layers * w.experts * w._expert_params()
    emb = 2 * w.vocab * w.hidden
    assert float(ops.weight_footprint) == pytest.approx(
        (experts * 4.25 + (w.parameter_count() - experts - emb) * 8 + emb * EMBED_BITS) / 8)
    with pytest.raises(pm.ModelInputError, match="sliding_layers"):
        dataclasses.replace(w, sliding_layers=25)


def test_deepseek_v2_lite_mla():
    """DeepSeek-V2-Lite: exact published total; 2.4B activated without the input
    embedding (2.45B computed); MLA caches 512 + 64 values per token and layer; layer 0
    dense, 26 MoE layers with 2 shared experts; absorbed attention FLOPs and reads."""
    w = wl("deepseek-v2-lite")
    assert w.parameter_count() == w.published["parameters"]
    active = w.parameter_count(active=True) - w.vocab * w.hidden
    assert active == pytest.approx(w.published["active_parameters"], rel=0.025)
    assert w.kv_bytes_per_token(16) == 27 * 576 * 2
    B, ctx = 4.0, 1023.0
    ops = w.decode(B, ctx, wbits=8.0)
    rows = dict(zip(ops.names, range(len(ops.names))))
    count = lambda n: float(ops.count[rows[n]])  # noqa: E731
    assert (count("dense_ffn_up"), count("moe_up"), count("shared_ffn_up")) == (1, 26, 26)
    att = rows["attn_fused"]
    L = ctx + 1.0
    assert float(ops.flops[att]) == pytest.approx(
        2 * B * 16 * L * (576 + 512) + 5 * B * 16 * L)
    assert float(ops.kv_read_bytes[att]) == pytest.approx(B * L * 576 * 2)
    # the MLA weights: q_proj + kv_a in qkv_proj, kv_b split over the two absorb rows
    mla = sum(float(ops.weight_bytes[rows[n]]) for n in
              ("qkv_proj", "q_absorb", "v_absorb", "out_proj"))
    assert mla == pytest.approx(w._mla_params() - 512, rel=1e-6)  # less kv_a's norm
    with pytest.raises(pm.ModelInputError, match="tensor_parallel"):
        w.decode(8.0, 512.0, tensor_parallel=2)
    cfg = json.loads((pathlib.Path(pm.workloads.__file__).parent / "presets" /
                      "deepseek-v2-lite.json").read_text())["config"]
    with pytest.raises(pm.ModelInputError, match="moe_layer_freq"):
        pm.workloads.from_hf_config({**cfg, "moe_layer_freq": 2}, "d")


def test_deepseek_v3_config_counts():
    """The DeepSeek-V3 structure (q_lora_rank 1536, 3 dense layers, 256 routed + 1 shared
    experts, 8 per token) gives the 671B total and 37B activated parameters of its
    technical report (arXiv 2412.19437; the multi-token-prediction module excluded);
    MLA configs of other model types are refused."""
    cfg = dict(model_type="deepseek_v3", hidden_size=7168, intermediate_size=18432,
               moe_intermediate_size=2048, num_hidden_layers=61, num_attention_heads=128,
               num_key_value_heads=128, kv_lora_rank=512, q_lora_rank=1536,
               qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
               n_routed_experts=256, n_shared_experts=1, num_experts_per_tok=8,
               first_k_dense_replace=3, moe_layer_freq=1, topk_method="noaux_tc",
               vocab_size=129280, tie_word_embeddings=False, num_nextn_predict_layers=1)
    w = pm.workloads.from_hf_config(cfg, "v3")
    assert w.parameter_count() == pytest.approx(671e9, rel=1e-3)
    assert w.parameter_count(active=True) - w.vocab * w.hidden == pytest.approx(37e9,
                                                                                rel=0.02)
    with pytest.raises(pm.ModelInputError, match="model_type 'kimi_k2' is not supported"):
        pm.workloads.from_hf_config({**cfg, "model_type": "kimi_k2"}, "k")
    with pytest.raises(pm.ModelInputError, match="kv_lora_rank"):
        pm.workloads.from_hf_config({**cfg, "model_type": "llama"}, "k")


def test_glm_47_flash_structure():
    """GLM-4.7-Flash (transformers' glm4_moe_lite defaults): MLA with q_lora_rank, one
    dense layer from mlp_layer_types, router biases; with the named multi-token-prediction
    module the count is exactly the published 31,221,488,576 (the parametrized count test
    checks that); a bad mlp_layer_types entry is refused."""
    w = wl("glm-4.7-flash")
    assert (w.dense_layers, w.moe_layers, w.router_bias, w.q_lora_rank) == (1, 46, True, 768)
    assert w.kv_bytes_per_token(16) == 47 * (512 + 64) * 2
    cfg = json.loads((pathlib.Path(pm.workloads.__file__).parent / "presets" /
                      "glm-4.7-flash.json").read_text())["config"]
    with pytest.raises(pm.ModelInputError, match="mlp_layer_types"):
        pm.workloads.from_hf_config({**cfg, "mlp_layer_types": ["dense", "moe"]}, "g")


# --------------------------------------------------------------------------- 2. KV bytes
def test_kv_bytes_published():
    w = wl("llama-2-7b")
    assert w.kv_bytes_per_token(16) == w.published["kv_cache_bytes_per_token_fp16"] == 524288
    o = wl("opt-13b")
    assert o.kv_bytes_per_token(16) == o.published["kv_cache_bytes_per_token_fp16"] == 819200


def test_kv_bytes_hand_computed_gqa():
    # 2 (K, V) x layers x kv_heads x head_dim x 2 bytes
    assert wl("llama-3-8b").kv_bytes_per_token(16) == 2 * 32 * 8 * 128 * 2 == 131072
    assert wl("llama-2-70b").kv_bytes_per_token(16) == 2 * 80 * 8 * 128 * 2
    assert wl("llama-3.2-1b").kv_bytes_per_token(16) == 2 * 16 * 8 * 64 * 2


@pytest.mark.parametrize("name", ["llama-2-7b", "llama-3-8b", "opt-13b"])
def test_kv_bytes_scale_with_kvbits(name):
    w = wl(name)
    assert w.kv_bytes_per_token(8) == w.kv_bytes_per_token(16) / 2
    assert w.kv_bytes_per_token(4) == w.kv_bytes_per_token(16) / 4
    assert w.kv_bytes_per_token() == w.kv_bytes_per_token(16)  # default is fp16


def test_kv_footprint_of_decode():
    w = wl("llama-3-8b")
    ops = w.decode(4, 1000, kvbits=8)
    # 4 sequences x (1000 + 1) tokens x 65536 bytes
    assert float(ops.kv_footprint) == pytest.approx(4 * 1001 * 65536, rel=1e-6)


# --------------------------------------------------------------------------- 3. structure
DENSE_DECODE = ("qkv_proj", "attn_fused", "out_proj", "ffn_up", "ffn_act", "ffn_down", "norm",
                "embed", "final_norm", "lm_head")


def test_decode_row_names():
    w = wl("llama-2-7b")
    assert w.decode(1, 128).names == DENSE_DECODE
    std = w.decode(1, 128, attention="standard").names
    assert std == ("qkv_proj", "attn_score", "attn_softmax", "attn_value") + DENSE_DECODE[2:]
    moe = wl("mixtral-8x7b").decode(1, 128).names
    assert moe == ("qkv_proj", "attn_fused", "out_proj", "moe_router", "moe_up", "moe_act",
                   "moe_down", "norm", "embed", "final_norm", "lm_head")
    assert w.prefill(1, 128).names == DENSE_DECODE
    for n in std + moe:
        assert n in pm.OP_KINDS or n == "final_norm"


def test_decode_counts():
    w = wl("llama-2-7b")
    ops = w.decode(1, 128)
    c = dict(zip(ops.names, np.asarray(ops.count)))
    for n in ("qkv_proj", "attn_fused", "out_proj", "ffn_up", "ffn_act", "ffn_down"):
        assert c[n] == w.layers
    assert c["norm"] == 2 * w.layers
    assert c["embed"] == c["final_norm"] == c["lm_head"] == 1


def test_decode_weight_bytes_llama2_7b():
    # Decode streams every layer weight once and the whole LM head, but only the B
    # embedding rows of the tokens (not the table); norm weights are not rows with
    # weight bytes. So at 16 bit: 2 * (params - embed table) + B * d * 2, up to the
    # (tiny) norm weights.
    w = wl("llama-2-7b")
    B = 4.0
    ops = w.decode(B, 1024, wbits=16)
    V, d = w.vocab, w.hidden
    got = total(ops, "weight_bytes")
    P = w.parameter_count()
    assert got == pytest.approx((P - V * d) * 2 + B * d * 2, rel=0.01)
    assert got == pytest.approx(w.weight_bytes(16) - V * d * 2 + B * d * 2, rel=0.01)
    # Layer rows exactly: layers x (attention + SwiGLU) x 2 bytes
    layer_params = 4 * d * d + 3 * d * w.ffn
    layer_kinds = ("qkv_proj", "out_proj", "ffn_up", "ffn_down")
    assert total(ops, "weight_bytes", layer_kinds) == pytest.approx(
        w.layers * layer_params * 2, rel=1e-6)
    assert row(ops, "lm_head")["weight_bytes"] == pytest.approx(V * d * EMBED_BITS / 8)
    assert row(ops, "embed")["weight_bytes"] == pytest.approx(B * d * EMBED_BITS / 8)


@pytest.mark.parametrize("name", ["llama-2-7b", "gpt2"])
def test_decode_flops_per_token(name):
    # one token: 2 FLOP per weight (excluding the embedding lookup) + attention
    # (QK^T and PV: 2 x 2 x heads x head_dim x attended length per layer).
    w = wl(name)
    ctx = 1000.0  # within GPT-2's 1024 positions
    ops = w.decode(1, ctx)
    non_embed = w.parameter_count() - (w.vocab + w.positions) * w.hidden
    if w.tie_embeddings:  # the LM head is the embedding table: its matmul still runs
        non_embed += w.vocab * w.hidden
    attn = 4 * w.layers * w.heads * w.head_dim * (ctx + 1)
    assert float(ops.total_flops) == pytest.approx(2 * non_embed + attn, rel=0.01)
    # and batch B costs B times as much
    assert float(w.decode(8, ctx).total_flops) == pytest.approx(8 * float(ops.total_flops),
                                                                rel=1e-5)


# --------------------------------------------------------------------------- 4. GQA
def test_gqa_qkv_width():
    w = wl("llama-3-8b")
    assert (w.heads, w.kv_heads, w.head_dim) == (32, 8, 128)
    ops = w.decode(2, 256)
    r = row(ops, "qkv_proj")
    assert r["n"] == (32 + 2 * 8) * 128
    assert r["k"] == w.hidden
    assert r["weight_bytes"] == pytest.approx((32 + 2 * 8) * 128 * 4096 * 2)
    # KV written for the new tokens: B x 2 x g x dh x 2 bytes
    assert r["kv_write_bytes"] == pytest.approx(2 * 2 * 8 * 128 * 2)


@pytest.mark.parametrize("attention", ["fused", "standard"])
def test_gqa_kv_read_scales_with_kv_heads(attention):
    w8 = wl("llama-3-8b")
    w32 = dataclasses.replace(w8, kv_heads=32)
    w4 = dataclasses.replace(w8, kv_heads=4)
    kinds = ("attn_score", "attn_value", "attn_fused")

    def kv_read(w):
        return total(w.decode(2, 2048, attention=attention), "kv_read_bytes", kinds)

    assert kv_read(w32) == pytest.approx(4 * kv_read(w8), rel=1e-6)
    assert kv_read(w8) == pytest.approx(2 * kv_read(w4), rel=1e-6)
    # decode reads the whole cache once (fused) : B x L x kv bytes/token
    if attention == "fused":
        assert kv_read(w8) == pytest.approx(2 * 2049 * w8.kv_bytes_per_token(16), rel=1e-6)


def test_gqa_invalid_heads_raise():
    w = wl("llama-3-8b")
    with pytest.raises(pm.ModelInputError, match="num_key_value_heads"):
        dataclasses.replace(w, kv_heads=5)
    cfg = dict(model_type="llama", hidden_size=512, intermediate_size=1024,
               num_attention_heads=8, num_key_value_heads=3, num_hidden_layers=2,
               vocab_size=1000)
    with pytest.raises(pm.ModelInputError, match="num_key_value_heads"):
        pm.workloads.from_hf_config(cfg)


# --------------------------------------------------------------------------- 5. MoE
def moe_weight_bytes(w, batch, ctx=128.0):
    ops = w.decode(batch, ctx)
    mask = jnp.asarray([k in ("moe_up", "moe_down") for k in ops.kinds], float)
    return jnp.sum(ops.weight_bytes * ops.count * mask)


def test_moe_experts_touched():
    w = wl("mixtral-8x7b")
    E, k = w.experts, w.experts_per_token
    assert (E, k) == (8, 2)
    expert_bytes = w.layers * 3 * w.hidden * w.ffn * 2  # one expert in every layer, fp16
    assert float(moe_weight_bytes(w, 1.0)) == pytest.approx(2 * expert_bytes, rel=1e-5)
    for T in (1.0, 3.0, 16.0):
        expected = E * (1 - (1 - k / E) ** T)
        assert float(moe_weight_bytes(w, T)) == pytest.approx(expected * expert_bytes,
                                                              rel=1e-5)
        assert row(w.decode(T, 128), "moe_up")["groups"] == pytest.approx(expected, rel=1e-5)
    assert float(moe_weight_bytes(w, 256.0)) == pytest.approx(8 * expert_bytes, rel=1e-5)
    assert float(moe_weight_bytes(w, 256.0)) <= 8 * expert_bytes * (1 + 1e-6)


def test_moe_smooth_and_increasing():
    w = wl("mixtral-8x7b")
    batches = [1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 32.0]
    vals = [float(moe_weight_bytes(w, b)) for b in batches]
    assert all(b > a for a, b in zip(vals, vals[1:])), vals
    g = float(jax.grad(lambda b: moe_weight_bytes(w, b))(1.5))
    assert math.isfinite(g) and g > 0
    # matches the analytic derivative of E (1 - (1 - k/E)^T)
    expert_bytes = w.layers * 3 * w.hidden * w.ffn * 2
    dT = -8 * math.log(0.75) * 0.75 ** 1.5 * expert_bytes
    assert g == pytest.approx(dT, rel=1e-3)
    # MoE flops: each token runs k experts, independent of how many experts are touched
    up = row(w.decode(16, 128), "moe_up")
    assert up["flops"] == pytest.approx(2 * 16 * 2 * (2 * w.ffn) * w.hidden, rel=1e-5)


# --------------------------------------------------------------------------- 6. bits
def test_weight_bytes_linear_in_wbits():
    w = wl("llama-3.2-1b")
    layer_kinds = ("qkv_proj", "out_proj", "ffn_up", "ffn_down")
    base = total(w.decode(1, 64, wbits=16), "weight_bytes", layer_kinds)
    for bits in (1.58, 2, 3, 4, 8):
        got = total(w.decode(1, 64, wbits=bits), "weight_bytes", layer_kinds)
        assert got == pytest.approx(base * bits / 16, rel=1e-5)
    # model weight bytes: affine in wbits, embeddings stay at EMBED_BITS
    wb = [w.weight_bytes(b) for b in (4.0, 8.0, 12.0)]
    assert wb[2] - wb[1] == pytest.approx(wb[1] - wb[0], rel=1e-9)
    assert w.weight_bytes(16) == pytest.approx(w.parameter_count() * 2)
    embed = w.vocab * w.hidden  # tied: counted once
    assert w.weight_bytes(4) == pytest.approx((w.parameter_count() - embed) * 0.5 + embed * 2)


def test_bitnet_default_wbits():
    w = wl("bitnet-b1.58-3b")
    assert w.default_wbits == 1.58
    assert wl("llama-2-7b").default_wbits == 16.0
    ops = w.decode(1, 64)
    r = row(ops, "qkv_proj")
    assert r["weight_bytes"] == pytest.approx(3 * w.hidden * w.hidden * 1.58 / 8, rel=1e-6)
    assert float(ops.total_bytes) == pytest.approx(float(w.decode(1, 64, wbits=1.58).total_bytes))
    assert float(ops.weight_footprint) == pytest.approx(w.weight_bytes(1.58))


@pytest.mark.parametrize("knob", ["wbits", "abits", "kvbits"])
@pytest.mark.parametrize("phase", ["decode", "prefill"])
def test_more_bits_never_less_traffic(knob, phase):
    w = wl("llama-3.2-1b")
    for attention in ("fused", "standard"):
        vals = []
        for bits in (1.0, 1.58, 2.0, 4.0, 8.0, 16.0, 32.0):
            ops = getattr(w, phase)(2, 256, attention=attention, **{knob: bits})
            vals.append(float(ops.total_bytes))
        assert all(b >= a for a, b in zip(vals, vals[1:])), (knob, attention, vals)
        assert vals[-1] > vals[0]


# --------------------------------------------------------------------------- 7. attention
def test_fused_prefill_moves_fewer_bytes():
    w = wl("llama-3.2-1b")
    std = w.prefill(1, 4096, attention="standard")
    fused = w.prefill(1, 4096, attention="fused")
    assert float(fused.total_bytes) < float(std.total_bytes)
    attn = ("attn_score", "attn_softmax", "attn_value", "attn_fused")
    assert total(fused, "dram_bytes", attn) < 0.5 * total(std, "dram_bytes", attn)
    # same non-attention rows
    rest = ("qkv_proj", "out_proj", "ffn_up", "ffn_act", "ffn_down", "norm", "lm_head")
    assert total(fused, "dram_bytes", rest) == pytest.approx(total(std, "dram_bytes", rest))


def test_bad_attention_name():
    w = wl("gpt2")
    for phase in ("decode", "prefill"):
        with pytest.raises(pm.ModelInputError, match="attention"):
            getattr(w, phase)(1, 64, attention="flash")
    with pytest.raises(pm.ModelInputError, match="attention"):
        w.request(1, 64, 8, attention="paged")


# --------------------------------------------------------------------------- 8. request
def test_request_tokens_and_flops():
    w = wl("llama-3.2-1b")
    B, P, G = 2.0, 512.0, 16
    req = w.request(B, P, G)
    assert float(req.tokens) == B * G
    assert req.phase == "request"
    brute = float(w.prefill(B, P).total_flops) + sum(
        float(w.decode(B, P + g).total_flops) for g in range(G))
    assert float(req.total_flops) == pytest.approx(brute, rel=1e-3)
    assert float(req.kv_footprint) == pytest.approx(B * (P + G) * w.kv_bytes_per_token(),
                                                    rel=1e-6)


def test_request_latency_matches_sum_of_steps(a100):
    w = wl("llama-3.2-1b")
    B, P, G = 2.0, 512.0, 16
    ev = lambda ops: float(pm.evaluate(a100, ops, hard=True).latency)  # noqa: E731
    req = ev(w.request(B, P, G))
    brute = ev(w.prefill(B, P)) + sum(ev(w.decode(B, P + g)) for g in range(G))
    assert req == pytest.approx(brute, rel=0.01)
    assert req > ev(w.prefill(B, P))


# --------------------------------------------------------------------------- 9. tokens
def test_phase_tokens():
    w = wl("gpt2")
    assert float(w.decode(3, 100).tokens) == 3
    assert float(w.decode(2.5, 100).tokens) == 2.5
    assert float(w.prefill(3, 100).tokens) == 300
    assert w.decode(1, 1).phase == "decode" and w.prefill(1, 1).phase == "prefill"
    assert w.decode(1, 1).workload == "gpt2"


# --------------------------------------------------------------------------- 10. grads
def test_decode_latency_grad_positive(a100):
    w = wl("llama-3.2-1b")
    f = lambda b, c: pm.evaluate(a100, w.decode(b, c)).latency  # noqa: E731
    gb, gc = jax.grad(f, argnums=(0, 1))(4.0, 1024.0)
    assert np.isfinite(float(gb)) and float(gb) > 0
    assert np.isfinite(float(gc)) and float(gc) > 0
    assert float(f(8.0, 1024.0)) > float(f(4.0, 1024.0))
    assert float(f(4.0, 4096.0)) > float(f(4.0, 1024.0))


# --------------------------------------------------------------------------- 11. bad knobs
@pytest.mark.parametrize("kw, field", [
    (dict(batch=0), "batch"),
    (dict(batch=-2), "batch"),
    (dict(batch=float("nan")), "batch"),
    (dict(batch=float("inf")), "batch"),
    (dict(context=-1), "context"),
    (dict(context=float("nan")), "context"),
    (dict(wbits=0), "wbits"),
    (dict(wbits=40), "wbits"),
    (dict(abits=0.5), "abits"),
    (dict(kvbits=64), "kvbits"),
    (dict(tensor_parallel=5), "tensor_parallel"),  # 12 kv heads
    (dict(tensor_parallel=0), "tensor_parallel"),
])
def test_bad_decode_knobs(kw, field):
    with pytest.raises(pm.ModelInputError, match=field):
        wl("gpt2").decode(**kw)


def test_bad_prefill_and_request_knobs():
    w = wl("gpt2")
    with pytest.raises(pm.ModelInputError, match="prompt"):
        w.prefill(1, 0)
    with pytest.raises(pm.ModelInputError, match="batch"):
        w.prefill(0, 16)
    with pytest.raises(pm.ModelInputError, match="generate"):
        w.request(1, 16, 0)
    with pytest.raises(pm.ModelInputError, match="wbits"):
        w.request(1, 16, 4, wbits=40)
    with pytest.raises(pm.ModelInputError, match="batch"):
        wl("resnet-50").inference(0)


def test_context_zero_is_valid():
    ops = wl("gpt2").decode(1, 0)
    assert float(ops.kv_footprint) == pytest.approx(wl("gpt2").kv_bytes_per_token())


# --------------------------------------------------------------------------- 12. loading
LLAMA_1B_CFG = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "head_dim": 64,
    "hidden_size": 2048, "intermediate_size": 8192, "num_attention_heads": 32,
    "num_hidden_layers": 16, "num_key_value_heads": 8, "tie_word_embeddings": True,
    "vocab_size": 128256, "rope_theta": 500000.0, "torch_dtype": "bfloat16",
}
GPT2_CFG = {
    "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_ctx": 1024, "n_embd": 768,
    "n_head": 12, "n_layer": 12, "n_positions": 1024, "vocab_size": 50257,
}


def test_load_llama_config(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(LLAMA_1B_CFG))
    w = pm.workloads.load(p)
    assert isinstance(w, pm.workloads.LLM)
    assert (w.hidden, w.layers, w.heads, w.kv_heads, w.head_dim, w.ffn, w.vocab) == (
        2048, 16, 32, 8, 64, 8192, 128256)
    assert w.tie_embeddings and w.gated_ffn and not w.is_moe
    assert w.parameter_count() == 1235814400
    assert w.kv_bytes_per_token() == wl("llama-3.2-1b").kv_bytes_per_token()
    assert float(w.decode(2, 300).total_flops) == pytest.approx(
        float(wl("llama-3.2-1b").decode(2, 300).total_flops), rel=1e-6)
    assert pm.workloads.load(str(p)).parameter_count() == 1235814400


def test_load_gpt2_config(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(GPT2_CFG))
    w = pm.workloads.load(p)
    assert (w.hidden, w.layers, w.heads, w.kv_heads, w.head_dim, w.ffn) == (
        768, 12, 12, 12, 64, 3072)
    assert w.positions == 1024 and w.tie_embeddings and not w.gated_ffn
    assert w.parameter_count() == 124439808


def test_load_preset_style_json(tmp_path):
    data = {"schema_version": 1, "name": "my-model", "config": GPT2_CFG,
            "published": {"parameters": 124439808}}
    p = tmp_path / "x.json"
    p.write_text(json.dumps(data))
    w = pm.workloads.load(p)
    assert w.name == "my-model"
    assert w.published["parameters"] == w.parameter_count()


def test_load_errors(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{"model_type": "llama", "hidden_size": 2048,')
    with pytest.raises(pm.ModelInputError, match="malformed"):
        pm.workloads.load(bad)
    with pytest.raises(pm.ModelInputError, match="does not exist"):
        pm.workloads.load(tmp_path / "missing.json")
    missing = tmp_path / "partial.json"
    missing.write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    with pytest.raises(pm.ModelInputError, match="num_attention_heads"):
        pm.workloads.load(missing)


def test_unknown_preset_suggests_close_names():
    with pytest.raises(pm.ModelInputError, match="llama-2-7b") as e:
        pm.workloads.preset("llama2-7b")
    assert "llama2-7b" in str(e.value)
    with pytest.raises(pm.ModelInputError, match="resnet-50"):
        pm.workloads.preset("resnet50")


# --------------------------------------------------------------------------- 13. CNNs
def test_cnn_flops():
    # He et al. 2016: ResNet-50 3.8-4.1 GMACs; the torchvision table's 4.09 GMACs -> 8.2 GFLOP
    r50 = float(wl("resnet-50").inference(1).total_flops)
    assert r50 == pytest.approx(8.2e9, rel=0.05)
    # VGG-16: 15.5 GMACs -> 31 GFLOP
    vgg = float(wl("vgg-16").inference(1).total_flops)
    assert vgg == pytest.approx(31e9, rel=0.05)
    # ResNet-18: 1.8 GMACs -> 3.6 GFLOP
    assert float(wl("resnet-18").inference(1).total_flops) == pytest.approx(3.6e9, rel=0.05)
    # linear in batch; tokens = images
    ops = wl("resnet-50").inference(4)
    assert float(ops.total_flops) == pytest.approx(4 * r50, rel=1e-5)
    assert float(ops.tokens) == 4


def test_cnn_weights():
    c = wl("resnet-50")
    assert c.parameter_count() == 25557032
    ops = c.inference(1, wbits=8)
    # conv/fc weight bytes at 8 bit: roughly one byte per parameter (BN terms excluded)
    assert total(ops, "weight_bytes") == pytest.approx(c.parameter_count(), rel=0.01)
    assert total(c.inference(1, wbits=4), "weight_bytes") == pytest.approx(
        total(ops, "weight_bytes") / 2, rel=1e-6)


@pytest.mark.parametrize("kw, field", [
    (dict(batch=0), "batch"),
    (dict(batch=float("nan")), "batch"),
    (dict(batch=float("inf")), "batch"),
    (dict(wbits=0), "wbits"),
    (dict(wbits=40), "wbits"),
    (dict(abits=0), "abits"),
])
def test_bad_cnn_knobs(kw, field):
    # same contract as the LLM phases: a bad knob is one ModelInputError naming it
    with pytest.raises(pm.ModelInputError, match=field):
        wl("resnet-18").inference(**kw)


def test_mixed_precision_per_weight_group(a100):
    """wbits per group: the mixer's matrices at 8 bits and the FFN's (experts and router
    included) at 3; the same bits in every group equal one number; bad groups refused."""
    w = wl("llama-2-7b")
    one = w.decode(4.0, 1024.0, wbits=4.0)
    same = w.decode(4.0, 1024.0, wbits={"attention": 4.0, "ffn": 4.0})
    for f in ("weight_bytes", "weight_bits", "compute_bits", "flops"):
        np.testing.assert_allclose(np.asarray(getattr(one, f)), np.asarray(getattr(same, f)))
    assert float(one.weight_footprint) == pytest.approx(float(same.weight_footprint))
    mixed = w.decode(4.0, 1024.0, wbits={"attention": 8.0, "ffn": 3.0})
    bits = dict(zip(mixed.names, np.asarray(mixed.weight_bits).tolist()))
    assert (bits["qkv_proj"], bits["out_proj"], bits["ffn_up"], bits["ffn_down"]) == (
        8.0, 8.0, 3.0, 3.0)
    assert bits["lm_head"] == EMBED_BITS
    # footprint: attention (4 d^2 per layer) at 8 bits, the SwiGLU FFN at 3, norms at 8
    d, f, L = 4096, 11008, 32
    expect = (L * (4 * d * d + 2 * d) * 8 + L * 3 * d * f * 3 + d * 8
              + 2 * 32000 * d * EMBED_BITS) / 8
    assert float(mixed.weight_footprint) == pytest.approx(expect, rel=1e-9)
    moe = wl("mixtral-8x7b").decode(1.0, 100.0, wbits={"ffn": 3.0})
    mb = dict(zip(moe.names, np.asarray(moe.weight_bits).tolist()))
    assert mb["moe_up"] == mb["moe_router"] == 3.0 and mb["qkv_proj"] == 16.0
    g = jax.grad(lambda b: pm.evaluate(a100, w.decode(1.0, 1024.0, wbits={
        "attention": 8.0, "ffn": b})).latency)(4.0)
    assert float(g) > 0
    # quality: the noise-power mean of the groups, between the two widths' losses
    q = float(pm.workloads.quality_loss(w, wbits={"attention": 8.0, "ffn": 3.0}))
    assert float(pm.workloads.quality_loss(w, wbits=8.0)) < q < float(
        pm.workloads.quality_loss(w, wbits=3.0))
    with pytest.raises(pm.ModelInputError, match="valid groups: attention, ffn"):
        w.decode(1.0, 10.0, wbits={"attn": 4.0})
    with pytest.raises(pm.ModelInputError, match="wbits\\['ffn'\\]"):
        w.decode(1.0, 10.0, wbits={"ffn": 0.5})
    with pytest.raises(pm.ModelInputError, match="one weight bit-width"):
        w.speculative_decode(1.0, 10.0, wbits={"ffn": 4.0})


def test_fused_prefill_attention_traffic_by_hand():
    """FlashAttention traffic (docs/models.md): K and V streamed once per block of 128
    queries of each head, the causal half; on an xPU its L2 traffic is that stream, not
    the GEMM tiling's re-read per row tile (which charged the prompt length cubed)."""
    w = wl("llama-3-8b")
    ops = w.prefill(1.0, 5000.0)
    r = row(ops, "attn_fused")
    kv = 2 * 8 * 5000 * 128 * 2 * 0.5 * (4 * 5000 / 128)   # 1.6 GB per layer
    assert r["kv_read_bytes"] == pytest.approx(kv, rel=1e-6)
    h100 = pm.hardware.preset("h100-sxm")
    t = {P: dict(zip(w.prefill(1.0, P).names,
                     np.asarray(pm.evaluate(h100, w.prefill(1.0, P)).op_time).tolist())
                 )["attn_fused"] for P in (5000.0, 20000.0)}
    # quadratic in the prompt (L x q / B_q re-reads), not cubic: 16x for 4x the prompt
    assert t[20000.0] / t[5000.0] == pytest.approx(16.0, rel=0.05)


def test_per_head_attention_reads_kv_once_per_query_head():
    """attention="per-head" (a masked-MHA decode kernel without GQA sharing): the fused
    row's K/V reads times r = heads / kv_heads in decode; the same for an MHA model."""
    def kv_read(name, attention, **kw):
        ops = pm.workloads.preset(name).decode(4.0, 1000.0, attention=attention, **kw)
        i = ops.names.index("attn_fused")
        return float(ops.kv_read_bytes[i]), float(ops.flops[i])

    gqa = pm.workloads.preset("llama-2-70b")
    r = gqa.heads // gqa.kv_heads
    assert r == 8
    fused, f_flops = kv_read("llama-2-70b", "fused")
    per_head, p_flops = kv_read("llama-2-70b", "per-head")
    assert per_head == pytest.approx(r * fused, rel=1e-6)
    assert p_flops == pytest.approx(f_flops, rel=1e-6)     # same arithmetic
    # by hand: 2 (K and V) x B x kv_heads x L x head_dim x 2 bytes, x r
    assert per_head == pytest.approx(2 * 4 * 8 * 1001 * 128 * 2 * r, rel=1e-6)
    mha_fused, _ = kv_read("llama-2-7b", "fused")
    mha_per_head, _ = kv_read("llama-2-7b", "per-head")
    assert mha_per_head == pytest.approx(mha_fused, rel=1e-6)
