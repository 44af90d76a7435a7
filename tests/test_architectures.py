"""Hugging Face architectures: every supported model_type right (published parameter
count, KV bytes per token derived by hand from the config), every other one refused.

KV bytes per token at 16 bits = 2 (K and V) x attention layers x KV heads x head_dim x 2 B.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

import perfmodel as pm
from perfmodel.workloads import ARCHITECTURES, supported_model_types

PRESETS = pathlib.Path(pm.workloads.__file__).parent / "presets"

#: preset -> (KV bytes per token at 16 bits, state bytes per sequence at 16 bits),
#: derived by hand from the config.
KV_BY_HAND = {
    "gpt-j-6b": (2 * 28 * 16 * 256 * 2, 0),        # 16 heads of 4096/16
    "gpt-neox-20b": (2 * 44 * 64 * 96 * 2, 0),
    "pythia-1b": (2 * 16 * 8 * 256 * 2, 0),
    "pythia-6.9b": (2 * 32 * 32 * 128 * 2, 0),
    "falcon-7b": (2 * 32 * 1 * 64 * 2, 0),         # multi-query: 8 KiB, not 582 KB
    "falcon-40b": (2 * 60 * 8 * 64 * 2, 0),
    "gemma-2b": (2 * 18 * 1 * 256 * 2, 0),
    "gemma-7b": (2 * 28 * 16 * 256 * 2, 0),
    "gemma-2-2b": (2 * 26 * 4 * 256 * 2, 0),
    "gemma-2-9b": (2 * 42 * 8 * 256 * 2, 0),
    "gemma-3-1b": (2 * 26 * 1 * 256 * 2, 0),
    "gemma-3-4b": (2 * 34 * 4 * 256 * 2, 0),
    "phi-2": (2 * 32 * 32 * 80 * 2, 0),
    "phi-3-mini-4k": (2 * 32 * 32 * 96 * 2, 0),
    "starcoder2-3b": (2 * 30 * 2 * 128 * 2, 0),
    "starcoder2-7b": (2 * 32 * 4 * 128 * 2, 0),
    "qwen2-7b": (2 * 28 * 4 * 128 * 2, 0),
    "qwen1.5-moe-a2.7b": (2 * 24 * 16 * 128 * 2, 0),
    # Mamba-1: per layer d_inner x N scan state + d_inner x (conv - 1) conv state
    "mamba-2.8b": (0, 64 * (5120 * 16 + 5120 * 3) * 2),
    # Mamba-2: scan state d_inner x N; conv over d_inner + 2 G N channels
    "mamba-codestral-7b": (0, 64 * (8192 * 128 + (8192 + 2 * 8 * 128) * 3) * 2),
    # Jamba: 4 attention layers with 8 KV heads of 128; 28 Mamba-1 layers (8192 x 16)
    "jamba-v0.1": (2 * 4 * 8 * 128 * 2, 28 * (8192 * 16 + 8192 * 3) * 2),
}


def preset_config(name):
    return json.loads((PRESETS / f"{name}.json").read_text())["config"]


@pytest.mark.parametrize("name", sorted(KV_BY_HAND))
def test_published_count_and_kv_bytes(name):
    w = pm.workloads.preset(name)
    pub = w.published
    got = w.parameter_count() + (w.vocab * w.hidden
                                 if pub.get("parameters_include_tied_head") else 0)
    assert got == pytest.approx(pub["parameters"], rel=0.01), (name, got)
    if "active_parameters" in pub:
        assert w.parameter_count(active=True) == pytest.approx(pub["active_parameters"],
                                                               rel=0.01)
    kv, state = KV_BY_HAND[name]
    assert w.kv_bytes_per_token(16) == kv
    assert w.state_bytes_per_sequence(16) == state
    assert w.kv_bytes_per_token(8) == kv / 2
    ops = w.decode(2.0, 1000.0)
    rep = pm.evaluate(pm.hardware.preset("h200"), ops)
    assert np.isfinite(float(rep.latency)) and float(rep.latency) > 0
    assert float(ops.kv_footprint) == pytest.approx(
        2 * (float(w.attended(1001.0)) * kv + state), rel=1e-6)


def test_every_model_type_is_covered():
    """Each adapter is exercised by a preset or by a named test below."""
    in_presets = {preset_config(p.stem).get("model_type") for p in PRESETS.glob("*.json")}
    tested_here = {"bitnet", "deepseek_v3"}  # test_bitnet_config, test_workloads.py
    assert set(supported_model_types()) <= in_presets | tested_here
    assert supported_model_types() == sorted(ARCHITECTURES)


def test_unknown_or_missing_model_type_is_refused():
    cfg = preset_config("llama-2-7b")
    with pytest.raises(pm.ModelInputError) as e:
        pm.workloads.from_hf_config({**cfg, "model_type": "rwkv"}, "m")
    msg = str(e.value)
    assert "model_type 'rwkv' is not supported" in msg
    for t in ("gptj", "falcon", "gemma2", "mamba", "llama"):
        assert t in msg
    no_type = {k: v for k, v in cfg.items() if k != "model_type"}
    with pytest.raises(pm.ModelInputError, match="no 'model_type'"):
        pm.workloads.from_hf_config(no_type, "m")


def test_field_names_of_each_family():
    """GPT-J's n_embd is read (it used to ask for hidden_size), Falcon needs no
    intermediate_size and Mamba no num_attention_heads; a missing field is named with
    the spellings accepted for it."""
    gptj = preset_config("gpt-j-6b")
    assert "hidden_size" not in gptj and "intermediate_size" not in preset_config("falcon-7b")
    assert "num_attention_heads" not in preset_config("mamba-2.8b")
    with pytest.raises(pm.ModelInputError, match="'n_embd' \\(or 'hidden_size'\\)"):
        pm.workloads.from_hf_config({k: v for k, v in gptj.items() if k != "n_embd"}, "j")


def test_falcon_multi_query_survives_extra_fields():
    """Adding intermediate_size (read by no Falcon code) or a serialized num_kv_heads
    does not undo multi-query attention; without multi_query every head has K/V."""
    cfg = preset_config("falcon-7b")
    w = pm.workloads.from_hf_config({**cfg, "intermediate_size": 18176,
                                     "num_kv_heads": 71}, "f")
    assert (w.kv_heads, w.ffn, w.norms_per_layer) == (1, 4 * 4544, 1)
    assert w.kv_bytes_per_token(16) == 8192
    mha = pm.workloads.from_hf_config({**cfg, "multi_query": False,
                                       "parallel_attn": False}, "f")
    assert (mha.kv_heads, mha.norms_per_layer) == (71, 2)


def test_sliding_layers_by_family():
    """Gemma 2 windows every other layer when layer_types is absent (it used to window
    all 42); Gemma 3 five of six; layer_types overrides; Qwen2 only with
    use_sliding_window (its configs carry a window that is off)."""
    g2 = preset_config("gemma-2-9b")
    assert "layer_types" not in g2
    assert pm.workloads.preset("gemma-2-9b").sliding_layers == 21
    full = pm.workloads.from_hf_config({**g2, "layer_types": ["full_attention"] * 42}, "g")
    assert full.sliding_window == 0
    assert float(full.attended(8192.0)) == 8192.0
    assert float(pm.workloads.preset("gemma-2-9b").attended(8192.0)) == (8192 + 4096) / 2
    with pytest.raises(pm.ModelInputError, match="layer_types"):
        pm.workloads.from_hf_config({**g2, "layer_types": ["linear_attention"] * 42}, "g")
    with pytest.raises(pm.ModelInputError, match="42 entries"):
        pm.workloads.from_hf_config({**g2, "layer_types": ["full_attention"]}, "g")
    assert pm.workloads.preset("gemma-3-1b").sliding_layers == 22
    q2 = preset_config("qwen2-7b")
    assert q2["sliding_window"] and pm.workloads.preset("qwen2-7b").sliding_window == 0
    on = pm.workloads.from_hf_config({**q2, "use_sliding_window": True,
                                      "max_window_layers": 20}, "q")
    assert (on.sliding_window, on.sliding_layers) == (131072, 8)
    moe = pm.workloads.from_hf_config({**preset_config("qwen1.5-moe-a2.7b"),
                                       "use_sliding_window": True}, "q")
    assert moe.sliding_layers == 11  # layers 0, 2, ..., 20 below max_window_layers 21


def test_gemma3_multimodal_reads_text_config_defaults():
    w = pm.workloads.preset("gemma-3-4b")
    assert (w.heads, w.kv_heads, w.head_dim, w.vocab, w.layers) == (8, 4, 256, 262208, 34)
    assert w.qk_norm and w.tie_embeddings and w.norms_per_layer == 4
    with pytest.raises(pm.ModelInputError, match="text_config"):
        pm.workloads.from_hf_config({"model_type": "gemma3"}, "g")


def test_parallel_block_norm_rows():
    """One norm per layer for parallel attention + MLP (GPT-J, Phi-2), four for Gemma 2."""
    for name, per_layer in (("gpt-j-6b", 1), ("phi-2", 1), ("gemma-2-2b", 4),
                            ("gpt-neox-20b", 2)):
        w = pm.workloads.preset(name)
        ops = w.decode(1.0, 10.0)
        assert float(ops.count[ops.names.index("norm")]) == per_layer * w.layers


def test_qwen2_moe_shared_expert_rows():
    w = pm.workloads.preset("qwen1.5-moe-a2.7b")
    assert (w.shared_ffn, w.shared_gate, w.experts, w.ffn) == (5632, True, 60, 1408)
    ops = w.decode(1.0, 100.0)
    i = ops.names.index("shared_ffn_up")
    assert float(ops.weight_bytes[i]) == 2 * 5632 * 2048 * 2  # gate + up at 16 bits


def test_bitnet_config():
    """microsoft/bitnet-b1.58-2B-4T (model_type bitnet): ternary weights by default,
    sub-norms before o_proj and down_proj, tied embeddings from the config. Count by
    hand: 30 x (attention 2 x 2560^2 + 2 x 2560 x 640 + MLP 3 x 2560 x 6912 + norms
    2 x 2560 + sub-norms 2560 + 6912) + embedding 128256 x 2560 + final norm 2560."""
    cfg = dict(model_type="bitnet", hidden_size=2560, intermediate_size=6912,
               num_attention_heads=20, num_key_value_heads=5, num_hidden_layers=30,
               vocab_size=128256, hidden_act="relu2", tie_word_embeddings=True)
    w = pm.workloads.from_hf_config(cfg, "bitnet")
    layer = (2 * 2560 ** 2 + 2 * 2560 * 640 + 3 * 2560 * 6912 + 2 * 2560 + 2560 + 6912)
    assert w.parameter_count() == 30 * layer + 128256 * 2560 + 2560 == 2_412_820_480
    assert w.default_wbits == 1.58 and w.sub_norms


def test_mamba_decode_is_independent_of_context():
    """A pure SSM: no attention rows, the same traffic at any context (state read and
    rewritten once per step), the state as the per-sequence footprint."""
    w = pm.workloads.preset("mamba-2.8b")
    short, long = w.decode(4.0, 100.0), w.decode(4.0, 100_000.0)
    assert not any(k.startswith("attn") for k in short.kinds)
    assert {"ssm_proj", "ssm_scan"} <= set(short.kinds)
    assert float(short.total_bytes) == float(long.total_bytes)
    assert float(short.kv_footprint) == float(long.kv_footprint) == 4 * 12_451_840
    i = short.names.index("ssm_scan")
    assert float(short.kv_read_bytes[i]) == float(short.kv_write_bytes[i]) == 4 * 5120 * 16 * 2
    a100 = pm.hardware.preset("a100-80gb")
    for ops in (short, w.prefill(1.0, 2048.0), w.request(1.0, 512.0, 128.0)):
        assert np.isfinite(float(pm.evaluate(a100, ops).latency))
    with pytest.raises(pm.ModelInputError, match="state-space"):
        w.decode(1.0, 10.0, tensor_parallel=2)


def test_mamba2_prefill_chunked_ssd_flops():
    """Mamba-2 prefill: the SSD as batched matmuls (tensor-core rows), per token and
    head Q (N + P) + 4 N P FLOP with chunk Q = 256, N = 128, P = 64."""
    w = pm.workloads.preset("mamba-codestral-7b")
    ops = w.prefill(2.0, 1024.0)
    i = ops.names.index("ssm_chunk")
    per_token_head = 256 * (128 + 64) + 4 * 128 * 64
    assert float(ops.flops[i]) == 2 * 1024 * 128 * per_token_head
    assert "ssm_chunk" in pm.hardware.MATMUL_KINDS
    assert "ssm_chunk" not in w.decode(1.0, 10.0).names  # decode: a recurrent update


def test_jamba_layer_shares():
    """Jamba-v0.1: 4 attention and 28 Mamba layers, 16 MoE and 16 dense FFNs, two norms
    per layer: each row's count is the number of layers it occurs in."""
    w = pm.workloads.preset("jamba-v0.1")
    ops = w.decode(1.0, 1000.0)
    count = dict(zip(ops.names, np.asarray(ops.count).tolist()))
    assert count["qkv_proj"] == count["attn_fused"] == count["out_proj"] == 4
    assert count["ssm_in_proj"] == count["ssm_scan"] == count["ssm_out_proj"] == 28
    assert count["moe_up"] == count["dense_ffn_up"] == 16
    assert count["norm"] == 64


def test_predict_echoes_parameters_kv_and_conditions(capsys):
    """`perfmodel predict` states what it evaluated: parameter count, KV bytes per token
    at the evaluated KV bits (and the recurrent state of an SSM), and the conditions."""
    from perfmodel._cli import main

    assert main(["predict", "--hardware", "a100-80gb", "--workload", "falcon-7b",
                 "--batch", "4", "--context", "2048", "--kvbits", "8", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["parameters"] == 6_921_720_704
    assert d["kv_bytes_per_token"] == 2 * 32 * 64 * 1      # one KV head, 8 bits
    assert d["conditions"] == dict(phase="decode", batch=4.0, context=2048.0, wbits=16.0,
                                   abits=16.0, kvbits=8.0, attention="fused", devices=1,
                                   tensor_parallel=1, pipeline_parallel=1)
    assert main(["predict", "--hardware", "a100-80gb", "--workload", "mamba-2.8b",
                 "--phase", "prefill", "--prompt", "256", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["kv_bytes_per_token"] == 0 and d["state_bytes_per_sequence"] == 12_451_840
    assert d["conditions"]["prompt"] == 256 and "context" not in d["conditions"]
    assert main(["predict", "--hardware", "a100-80gb", "--workload", "gemma-2-2b"]) == 0
    out = capsys.readouterr().out
    assert "parameters     2.614 B, KV cache 104 KiB/token" in out
    assert "conditions     decode: batch 1, context 1024; W/A/KV bits 16/16/16" in out


def test_predict_reports_quality_loss(capsys):
    """`predict --json` gives quality_loss (perplexity increase on WikiText-2, 0 at 16
    bits) with its footing; fewer bits lose more; a bad group size exits 2."""
    from perfmodel._cli import main

    def q(*args):
        assert main(["predict", "--hardware", "a100-80gb", "--workload", "llama-2-7b",
                     "--json", *args]) == 0
        return json.loads(capsys.readouterr().out)

    assert q()["quality_loss"] == 0.0
    w4, w3 = q("--wbits", "4"), q("--wbits", "3")
    assert 0 < w4["quality_loss"] < w3["quality_loss"]
    assert w4["quality"]["method"] == "gptq" and w4["quality"]["dataset"] == "wikitext2"
    assert q("--wbits", "4", "--quant-method", "awq")["quality"]["method"] == "awq"
    assert main(["predict", "--hardware", "a100-80gb", "--workload", "llama-2-7b",
                 "--group-size", "12x"]) == 2
    assert "--group-size" in capsys.readouterr().err
    assert main(["predict", "--hardware", "a100-80gb", "--workload", "resnet-50",
                 "--json"]) == 0
    assert "quality_loss" not in json.loads(capsys.readouterr().out)
