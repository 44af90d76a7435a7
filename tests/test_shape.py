"""Continuous model shape (perfmodel.workloads._shape, docs/workloads.md "Continuous model
shape"): ModelShape reproduces the exact LLM's Ops, passes jit/vmap/grad, hardens back to
valid LLMs, and the Chinchilla scaling loss."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import perfmodel as pm
from perfmodel import ModelInputError
from perfmodel._ops import _FLOAT_FIELDS
from perfmodel.workloads import (LLM, SCALING_FITS, ModelShape, harden_shape,
                                 perplexity_ratio, scaling_loss)

#: dense GQA, dense MHA, MoE, biases + learned positions + tied embeddings, an untied
#: head_dim (Gemma), latent attention with shared experts and a dense layer (DeepSeek-V2),
#: windows on every layer (Mistral) and on half of them (Gemma 2)
PRESETS = ["llama-2-7b", "llama-3-8b", "mixtral-8x7b", "gpt2", "gemma-7b",
           "deepseek-v2-lite", "mistral-7b", "gemma-2-9b"]
PHASES = {"decode": (8, 1000), "prefill": (2, 512), "request": (4, 256, 64)}  # within GPT-2's 1024
OPS_FIELDS = _FLOAT_FIELDS + ("tokens", "weight_footprint", "kv_footprint")


def _shape(name):
    return ModelShape.from_llm(pm.workloads.preset(name))


# ---------------------------------------------------------------------------- identity
@pytest.mark.parametrize("name", PRESETS)
def test_shape_of_a_preset_gives_its_ops(name):
    llm = pm.workloads.preset(name)
    shape = ModelShape.from_llm(llm)
    for phase, args in PHASES.items():
        for kw in (dict(wbits=4, kvbits=8), dict(attention="standard")):
            exact = getattr(llm, phase)(*args, **kw)
            cont = getattr(shape, phase)(*args, **kw)
            assert cont.names == exact.names and cont.kinds == exact.kinds
            assert cont.phase == exact.phase and cont.workload == exact.workload
            for f in OPS_FIELDS:
                np.testing.assert_allclose(np.asarray(getattr(cont, f)),
                                           np.asarray(getattr(exact, f)), rtol=1e-6,
                                           err_msg=f"{name} {phase} {kw} {f}")
    for kw in (dict(), dict(active=True), dict(embeddings=False)):
        np.testing.assert_allclose(float(shape.parameter_count(**kw)),
                                   llm.parameter_count(**kw), rtol=1e-6)
    np.testing.assert_allclose(float(shape.kv_bytes_per_token(8.0)),
                               llm.kv_bytes_per_token(8.0), rtol=1e-6)
    np.testing.assert_allclose(float(shape.weight_bytes(4.0)), llm.weight_bytes(4.0),
                               rtol=1e-6)
    # and the same latency on a GPU
    hw = pm.hardware.preset("a100-80gb")
    ops = dict(batch=1, context=1000, wbits=4)
    np.testing.assert_allclose(float(pm.evaluate(hw, shape.decode(**ops)).latency),
                               float(pm.evaluate(hw, llm.decode(**ops)).latency), rtol=1e-6)


def test_speculative_decode_of_a_shape_matches():
    llm = pm.workloads.preset("llama-2-7b")
    a = llm.speculative_decode(4, 1024, wbits=8)
    b = ModelShape.from_llm(llm).speculative_decode(4, 1024, wbits=8)
    for f in OPS_FIELDS:
        np.testing.assert_allclose(np.asarray(getattr(b, f)), np.asarray(getattr(a, f)),
                                   rtol=1e-6)


def test_head_dim_is_tied_when_heads_split_the_width():
    assert _shape("llama-2-7b").tied_head_dim
    assert not _shape("gemma-7b").tied_head_dim        # 16 heads x 256 != 3072
    assert not _shape("deepseek-v2-lite").tied_head_dim  # latent attention
    untied = ModelShape.from_llm(pm.workloads.preset("llama-2-7b"), tie_head_dim=False)
    assert float(untied.head_dim) == 128.0


# ---------------------------------------------------------------------------- jax
@pytest.mark.parametrize("name", ["llama-2-7b", "mixtral-8x7b"])
def test_latency_gradient_wrt_size_is_finite_and_positive(name):
    hw = pm.hardware.preset("a100-80gb")
    shape = _shape(name)

    @jax.jit
    @jax.grad
    def grad(s):
        return pm.evaluate(hw, s.decode(8, 2048, wbits=4)).latency

    g = grad(shape)
    for f in ("hidden", "ffn", "layers", "vocab", "kv_heads"):
        v = float(getattr(g, f))
        assert math.isfinite(v) and v > 0, (f, v)
    if shape.base.is_moe:
        assert float(g.experts) > 0 and float(g.experts_per_token) > 0
    for leaf in jax.tree.leaves(g):
        assert np.all(np.isfinite(np.asarray(leaf)))


def test_vmap_over_shapes_matches_each_shape():
    hw = pm.hardware.preset("a100-80gb")
    shape = _shape("llama-3-8b")
    scale = jnp.array([0.5, 0.8, 1.0, 1.3])
    batch = jax.tree.map(lambda x: x * scale, shape)  # every size scaled together

    def latency(s):
        return pm.evaluate(hw, s.decode(4, 1024, wbits=8)).latency

    got = jax.jit(jax.vmap(latency))(batch)
    for i, c in enumerate(np.asarray(scale)):
        one = jax.tree.map(lambda x, c=c: x * c, shape)
        np.testing.assert_allclose(float(got[i]), float(latency(one)), rtol=1e-5)
    assert np.all(np.diff(np.asarray(got)) > 0)


def test_parameter_count_gradient_is_the_per_layer_count():
    llm = pm.workloads.preset("llama-2-7b")
    shape = ModelShape.from_llm(llm)
    g = jax.grad(lambda s: s.parameter_count())(shape)
    per_layer = (pm.workloads.preset("llama-2-7b").parameter_count()
                 - harden_shape(ModelShape(llm, hidden=4096, ffn=11008, layers=31, heads=32,
                                           kv_heads=32, vocab=32000)).parameter_count())
    np.testing.assert_allclose(float(g.layers), per_layer, rtol=1e-6)
    assert float(g.hidden) > 0 and float(g.ffn) == pytest.approx(3 * 4096 * 32, rel=1e-6)


def test_shapes_with_ssm_layers_and_bad_values_are_refused():
    for name in ("mamba-2.8b", "jamba-v0.1"):
        with pytest.raises(ModelInputError, match="state-space"):
            _shape(name)
    base = pm.workloads.preset("llama-2-7b")
    with pytest.raises(ModelInputError, match="hidden"):
        ModelShape(base, hidden=-1.0, ffn=11008, layers=32, heads=32, kv_heads=32,
                   vocab=32000)
    with pytest.raises(ModelInputError, match="layers"):
        ModelShape(base, hidden=4096, ffn=11008, layers=float("nan"), heads=32,
                   kv_heads=32, vocab=32000)
    with pytest.raises(ModelInputError, match="tensor_parallel"):
        ModelShape.from_llm(base).decode(tensor_parallel=0)


# ---------------------------------------------------------------------------- hardening
@pytest.mark.parametrize("name,multiple", [
    ("llama-2-7b", 128), ("llama-3-8b", 128), ("mixtral-8x7b", 128), ("gpt2", 128),
    ("mistral-7b", 128), ("qwen2-7b", 128), ("gemma-7b", 128), ("gemma-2-9b", 128),
    ("deepseek-v2-lite", 128), ("phi-2", 128), ("qwen1.5-moe-a2.7b", 128),
    ("falcon-7b", 64)])
def test_hardening_a_presets_shape_gives_the_preset(name, multiple):
    llm = pm.workloads.preset(name)
    assert harden_shape(ModelShape.from_llm(llm), multiple=multiple) == llm


def test_hardening_a_near_integer_shape_rounds_to_the_preset():
    llm = pm.workloads.preset("mixtral-8x7b")
    s = ModelShape.from_llm(llm)
    # counts 0.4 off, widths 40 off (under half a step of 128)
    nudged = ModelShape(llm, hidden=s.hidden + 40, ffn=s.ffn - 40, layers=s.layers + 0.4,
                        heads=s.heads - 0.4, kv_heads=s.kv_heads + 0.4, vocab=s.vocab - 0.4,
                        experts=s.experts + 0.4, experts_per_token=s.experts_per_token - 0.4)
    assert harden_shape(nudged) == llm


def test_a_resized_shape_gets_its_own_name():
    llm = pm.workloads.preset("llama-2-7b")
    s = ModelShape(llm, hidden=3000.0, ffn=8000.0, layers=24.4, heads=25.0, kv_heads=5.0,
                   vocab=32000.0)
    hard = s.harden()
    assert hard.name.startswith("llama-2-7b~") and hard.published == {}
    assert hard.hidden % 128 == 0 and hard.hidden % hard.heads == 0
    assert hard.heads % hard.kv_heads == 0 and hard.layers == 24
    assert abs(math.log(hard.hidden / 3000.0)) < 0.1


def _check_valid(llm: LLM, shape: ModelShape, multiple: int):
    ints = ("hidden", "ffn", "layers", "heads", "kv_heads", "head_dim", "vocab", "experts",
            "experts_per_token")
    for f in ints:
        assert isinstance(getattr(llm, f), int), f
    assert llm.hidden % multiple == 0 and llm.ffn % multiple == 0
    assert llm.heads >= 1 and llm.heads % llm.kv_heads == 0
    if shape.tied_head_dim:
        assert llm.heads * llm.head_dim == llm.hidden
    assert 1 <= llm.experts_per_token <= llm.experts
    assert llm.is_moe == shape.base.is_moe
    assert llm.layers >= 1 and 0 <= llm.dense_layers < llm.layers
    assert 0 <= llm.sliding_layers <= llm.attn_layers


_BASES = {n: pm.workloads.preset(n) for n in ("llama-2-7b", "mixtral-8x7b", "gemma-7b",
                                              "gemma-2-9b", "deepseek-v2-lite")}
_pos = st.floats(0.01, 1e5, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(base=st.sampled_from(sorted(_BASES)), hidden=_pos, ffn=_pos,
       layers=st.floats(0.01, 200), heads=st.floats(0.01, 200), kv_heads=st.floats(0.01, 300),
       head_dim=st.floats(0.01, 512), vocab=_pos, experts=st.floats(0.01, 300),
       k=st.floats(0.01, 300), multiple=st.sampled_from([64, 128]))
def test_hardening_always_yields_a_valid_llm(base, hidden, ffn, layers, heads, kv_heads,
                                             head_dim, vocab, experts, k, multiple):
    llm = _BASES[base]
    tied = ModelShape.from_llm(llm).tied_head_dim
    shape = ModelShape(llm, hidden=hidden, ffn=ffn, layers=layers, heads=heads,
                       kv_heads=kv_heads, vocab=vocab, experts=experts,
                       experts_per_token=k, head_dim=None if tied else head_dim)
    hard = harden_shape(shape, multiple=multiple)   # LLM.__post_init__ validated it
    _check_valid(hard, shape, multiple)


def test_hardening_random_shapes_numpy_and_their_ops_build():
    rng = np.random.default_rng(0)
    llm = _BASES["llama-2-7b"]
    for _ in range(50):
        v = np.exp(rng.uniform(np.log(0.3), np.log(3.0), 7)) * np.array(
            [4096, 11008, 32, 32, 8, 32000, 1])
        shape = ModelShape(llm, hidden=v[0], ffn=v[1], layers=v[2], heads=v[3],
                           kv_heads=v[4], vocab=v[5])
        hard = harden_shape(shape)
        _check_valid(hard, shape, 128)
        ops = hard.decode(2, 128)
        assert np.all(np.isfinite(np.asarray(ops.flops)))


def test_hardening_refuses_batched_and_traced_shapes():
    s = _shape("llama-2-7b")
    with pytest.raises(ModelInputError, match="one shape"):
        harden_shape(jax.tree.map(lambda x: jnp.stack([x, x]), s))
    with pytest.raises(ModelInputError, match="multiple"):
        harden_shape(s, multiple=0)


# ---------------------------------------------------------------------------- scaling law
def test_scaling_loss_at_chinchilla_70b():
    # L(70e9, 1.4e12) = 1.69 + 406.4 / N^0.34 + 410.7 / D^0.28 = 1.937 (Hoffmann et al.)
    assert float(scaling_loss(70e9, 1.4e12)) == pytest.approx(1.94, rel=0.01)
    assert float(scaling_loss(70e9, 1.4e12)) == pytest.approx(1.93665, rel=1e-4)
    # the replication's refit (Besiroglu et al. 2024): 1.974
    assert float(scaling_loss(70e9, 1.4e12, fit="besiroglu2024")) == pytest.approx(
        1.97388, rel=1e-4)
    assert set(SCALING_FITS) == {"hoffmann2022", "besiroglu2024"}


def test_scaling_loss_decreases_in_parameters_and_tokens():
    n = jnp.logspace(7, 12, 11)
    d = jnp.logspace(9, 14, 11)
    assert np.all(np.diff(np.asarray(scaling_loss(n, 1e12))) < 0)
    assert np.all(np.diff(np.asarray(scaling_loss(7e9, d))) < 0)
    for fit in SCALING_FITS:
        gn = jax.grad(lambda x: scaling_loss(x, 2e12, fit=fit))(7e9)
        gd = jax.grad(lambda x: scaling_loss(7e9, x, fit=fit))(2e12)
        assert float(gn) < 0 and float(gd) < 0
    # far from free: the irreducible E is the limit
    assert float(scaling_loss(1e15, 1e18)) == pytest.approx(1.69, abs=0.01)


def test_shape_pretraining_loss_is_differentiable():
    s = _shape("llama-2-7b")
    g = jax.grad(lambda s: s.pretraining_loss(2e12))(s)
    assert float(g.hidden) < 0 and float(g.layers) < 0 and float(g.ffn) < 0
    np.testing.assert_allclose(float(s.pretraining_loss(2e12)),
                               float(scaling_loss(6738415616.0, 2e12)), rtol=1e-6)


def test_perplexity_ratio_and_errors():
    assert float(perplexity_ratio(0.0)) == 1.0
    assert float(perplexity_ratio(0.05)) == pytest.approx(math.exp(0.05))
    with pytest.raises(ModelInputError, match="fit"):
        scaling_loss(1e9, 1e10, fit="kaplan")
    with pytest.raises(ModelInputError, match="parameters"):
        scaling_loss(0.0, 1e10)
    with pytest.raises(ModelInputError, match="tokens"):
        scaling_loss(1e9, -1.0)
