"""`perfmodel.serve`: the serving engine's memory rule (admit what fits, run in waves),
context limits, and the opt-in offload tier."""

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import perfmodel as pm

GiB = 2.0 ** 30


def test_gpu_presets_have_no_offload_tier_unless_asked():
    for name in ("a100-40gb", "a100-80gb", "h100-sxm", "h200", "v100", "t4", "rtx-a6000"):
        assert pm.hardware.preset(name).offload is None, name
    assert pm.hardware.preset("a100-80gb-offload").offload is not None


def test_admitted_batch_by_hand(a100, llama7b):
    """b_max = f (C - W) / kv_seq with kv_seq the cache of prompt + generate tokens."""
    P, G = 128.0, 2048.0
    weights = 2.0 * llama7b.parameter_count()                 # 16-bit
    kv_seq = (P + G) * llama7b.kv_bytes_per_token(16.0)       # 2 x 32 x 4096 x 2 B/token
    assert llama7b.kv_bytes_per_token(16.0) == 2 * 32 * 4096 * 2
    expected = pm.KV_CACHE_FRACTION * (80 * GiB - weights) / kv_seq
    got = float(pm.admitted_batch(a100, llama7b, prompt=P, generate=G))
    assert got == pytest.approx(expected, rel=1e-5)
    assert float(pm.admitted_batch(a100, llama7b, prompt=P, generate=G, hard=True)) \
        == math.floor(expected)


def test_batch_that_fits_is_unchanged(a100, llama7b):
    kw = dict(prompt=512.0, generate=128.0)
    for hard in (False, True):
        rep = pm.serve(a100, llama7b, batch=8.0, hard=hard, **kw)
        ref = pm.evaluate(a100, llama7b.request(8.0, **kw), hard=hard)
        assert float(rep.waves) == 1.0 and float(rep.batch) == 8.0
        assert float(rep.latency) == pytest.approx(float(ref.latency), rel=1e-6)
        assert float(rep.energy) == pytest.approx(float(ref.energy), rel=1e-6)


def test_batch_that_does_not_fit_runs_in_waves(a100, llama7b):
    """The issue's case: batch 60, prompt 128, generate 2048 on an A100 80GB. The engine
    admits 57 whole requests, so two balanced waves of 30; no offload term anywhere."""
    kw = dict(prompt=128.0, generate=2048.0)
    rep = pm.serve(a100, llama7b, batch=60.0, hard=True, **kw)
    assert float(rep.waves) == 2.0 and float(rep.batch) == 30.0
    one = pm.evaluate(a100, llama7b.request(30.0, **kw), hard=True)
    assert float(rep.latency) == pytest.approx(2 * float(one.latency), rel=1e-6)
    assert float(rep.energy) == pytest.approx(2 * float(one.energy), rel=1e-6)
    assert float(rep.tokens) == pytest.approx(60 * 2048.0)
    assert "offload" not in rep.components
    # the smooth model agrees away from the ramp and has a finite gradient in capacity
    smooth = pm.serve(a100, llama7b, batch=60.0, **kw)
    assert float(smooth.latency) == pytest.approx(float(rep.latency), rel=0.03)

    def latency(cap):
        hw = eqx.tree_at(lambda h: h.dram.capacity, a100, cap)
        return pm.serve(hw, llama7b, batch=60.0, check=False, **kw).latency

    g = jax.jit(jax.grad(latency))(a100.dram.capacity)
    assert jnp.isfinite(g)


def test_more_waves_when_memory_shrinks(a100, llama7b):
    kw = dict(prompt=128.0, generate=2048.0, hard=True)
    small = eqx.tree_at(lambda h: h.dram.capacity, a100, jnp.asarray(40 * GiB))
    big = pm.serve(a100, llama7b, batch=60.0, **kw)
    little = pm.serve(small, llama7b, batch=60.0, **kw)
    assert float(little.waves) > float(big.waves)
    assert float(little.latency) > float(big.latency)


def test_weights_that_do_not_fit_are_an_error(a100):
    wl = pm.workloads.preset("llama-2-70b")
    with pytest.raises(pm.ModelInputError, match="weights need .* tensor_parallel"):
        pm.serve(a100, wl, batch=1.0)
    # two devices hold the 16-bit weights
    rep = pm.serve(a100, wl, batch=1.0, tensor_parallel=2)
    assert float(rep.waves) == 1.0


def test_one_sequence_that_does_not_fit_is_an_error(a100, llama7b):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pm.PlausibilityWarning)
        with pytest.raises(pm.ModelInputError, match="one sequence's KV cache"):
            pm.serve(a100, llama7b, "decode", batch=1.0, context=10e6)


def test_offload_tier_streams_instead_of_waves(llama7b):
    hw = pm.hardware.preset("a100-80gb-offload")
    # 12.6 GiB of weights + 80 x 1.06 GiB of KV cache: 97 GiB in an 80 GiB device
    rep = pm.serve(hw, llama7b, batch=80.0, prompt=128.0, generate=2048.0, hard=True)
    assert float(rep.waves) == 1.0 and "offload" in rep.bound_names()


def test_context_limits(llama7b):
    # learned position embeddings: no embedding past the last position
    gpt2 = pm.workloads.preset("gpt2")
    assert gpt2.max_context == 1024
    with pytest.raises(pm.ModelInputError, match="learned position embeddings"):
        gpt2.prefill(1.0, 1025.0)
    # rotary models run past max_position_embeddings in engines: a warning, not an error
    assert llama7b.max_context == 4096
    with pytest.warns(pm.PlausibilityWarning, match="maximum context of 4096"):
        llama7b.request(1.0, 4000.0, 200.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        llama7b.request(1.0, 3000.0, 1000.0)  # within: silent


def test_serve_refuses_bad_input(a100, llama7b):
    with pytest.raises(pm.ModelInputError, match="phase"):
        pm.serve(a100, llama7b, "train")
    with pytest.raises(pm.ModelInputError, match="kv_fraction"):
        pm.serve(a100, llama7b, kv_fraction=1.5)
    with pytest.raises(pm.ModelInputError, match="LLM"):
        pm.serve(a100, pm.workloads.preset("resnet-50"))


def test_continuous_step_by_hand():
    """One steady-state step: C decode tokens plus C P / G prompt tokens through the
    weights once; decode attention at the mean context, prefill attention of C / G
    prompts; C output tokens."""
    wl = pm.workloads.preset("llama-2-7b")
    C, P, G = 64.0, 512.0, 256.0
    ops = wl.continuous(C, P, G)
    dec = wl.decode(C, P + G / 2)
    pre = wl.prefill(C / G, P)
    assert float(ops.tokens) == C
    i = ops.names.index("ffn_up")
    assert float(ops.m[i]) == pytest.approx(C * (1 + P / G))
    assert float(ops.weight_bytes[i]) == pytest.approx(
        float(dec.weight_bytes[dec.names.index("ffn_up")]))
    for name, ref in (("attn_fused", dec), ("prefill_attn_fused", pre)):
        j, k = ops.names.index(name), ref.names.index("attn_fused")
        assert float(ops.kv_read_bytes[j]) == pytest.approx(float(ref.kv_read_bytes[k]),
                                                            rel=1e-6)
        assert float(ops.flops[j]) == pytest.approx(float(ref.flops[k]), rel=1e-6)
    # the KV cache reserved for whole requests
    assert float(ops.kv_footprint) == pytest.approx(
        C * (P + G) * wl.kv_bytes_per_token(16.0), rel=1e-6)


def test_continuous_serve_caps_concurrency_at_the_kv_cache(a100, llama7b):
    kw = dict(prompt=1024.0, generate=1024.0, hard=True)
    cap = float(pm.admitted_batch(a100, llama7b, "continuous", **kw))
    rep = pm.serve(a100, llama7b, "continuous", batch=10 * cap, **kw)
    assert float(rep.batch) == cap and float(rep.waves) == 1.0
    small = pm.serve(a100, llama7b, "continuous", batch=8.0, **kw)
    assert float(small.batch) == 8.0
    # more requests in flight: more output tokens per second, up to the cap
    assert float(rep.tokens_per_s) > float(small.tokens_per_s)


def test_tensor_parallel_report_is_the_group(a100):
    """serve with tensor_parallel = N: latency and tokens of the group, energy, cost,
    area and peak power of all N devices (evaluate of the per-device Ops: one device)."""
    wl = pm.workloads.preset("llama-2-70b")
    kw = dict(batch=8.0, context=1024.0, tensor_parallel=4)
    rep = pm.serve(a100, wl, "decode", hard=True, **kw)
    one = pm.evaluate(a100, wl.decode(8.0, 1024.0, tensor_parallel=4), hard=True)
    assert float(rep.latency) == pytest.approx(float(one.latency), rel=1e-6)
    assert float(rep.tokens) == pytest.approx(float(one.tokens))
    for field in ("energy", "static_energy", "cost", "area", "peak_power"):
        assert float(getattr(rep, field)) == pytest.approx(
            4 * float(getattr(one, field)), rel=1e-6), field
    assert float(rep.energy_per_token) == pytest.approx(4 * float(one.energy_per_token),
                                                        rel=1e-6)
