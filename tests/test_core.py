"""evaluate(): jit/vmap/grad contracts, smooth-vs-exact bound, physics properties."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import perfmodel as pm
from perfmodel._bench import layout_agreement, random_designs
from perfmodel.hardware._xpu import MATMUL_KINDS, MMA_M, SPLIT_K


def _to64(tree):
    return jax.tree.map(lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x, tree)


def test_report_fields(a100, decode_ops):
    rep = pm.evaluate(a100, decode_ops)
    assert rep.op_time.shape == (decode_ops.rows,)
    assert float(rep.latency) == pytest.approx(float(rep.op_time.sum()), rel=1e-6)
    assert float(rep.energy) == pytest.approx(
        float(rep.energy_terms.sum() + rep.static_energy), rel=1e-5)
    assert float(rep.tokens_per_s) == pytest.approx(8.0 / float(rep.latency), rel=1e-6)
    assert float(rep.edp) == pytest.approx(float(rep.energy * rep.latency), rel=1e-6)
    d = rep.to_dict()
    assert d["bound"] == "dram"  # batch-8 decode of a 7B model is memory-bound
    assert {"latency_s", "energy_j", "tokens_per_s", "energy_per_token_j", "breakdown"} <= set(d)


def test_roofline_bounds_never_exceeded(a100, llama7b):
    """No op runs faster than its peak compute or its DRAM bytes at peak bandwidth."""
    for ops in (llama7b.decode(8.0, 2048.0), llama7b.prefill(2.0, 1024.0)):
        rep = pm.evaluate(a100, ops, hard=True)
        t = np.asarray(rep.op_time / ops.count)
        peak = float(a100.peak_flops.max())
        assert np.all(t >= np.asarray(ops.flops) / peak * (1 - 1e-6))
        assert np.all(t >= np.asarray(ops.dram_bytes) / float(a100.dram.bandwidth) * (1 - 1e-6))


def test_jit_equals_eager(a100, decode_ops):
    eager = pm.evaluate(a100, decode_ops)
    jitted = jax.jit(lambda h, o: pm.evaluate(h, o))(a100, decode_ops)
    np.testing.assert_allclose(np.asarray(jitted.op_time), np.asarray(eager.op_time), rtol=1e-5)
    assert float(jitted.energy) == pytest.approx(float(eager.energy), rel=1e-5)


def test_vmap_equals_loop(a100, decode_ops):
    batch, static = random_designs(a100, 16, jax.random.PRNGKey(0))
    f = lambda p: pm.evaluate(eqx.combine(p, static), decode_ops).latency  # noqa: E731
    vm = np.asarray(jax.vmap(f)(batch))
    loop = np.array([float(f(jax.tree.map(lambda x: x[i], batch))) for i in range(16)])
    np.testing.assert_allclose(vm, loop, rtol=1e-5)


def test_vmap_over_workloads(a100, llama7b):
    lat = jax.vmap(lambda b: pm.evaluate(a100, llama7b.decode(b, 1024.0)).latency)(
        jnp.array([1.0, 4.0, 16.0, 64.0]))
    assert np.all(np.diff(np.asarray(lat)) > 0)


def test_no_retrace_when_values_change(a100, decode_ops):
    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def f(hw, ops):
        return pm.evaluate(hw, ops).latency

    for s in (0.5, 1.0, 1.7):
        f(jax.tree.map(lambda x: x * s, a100), decode_ops)
    llama = pm.workloads.preset("llama-2-7b")
    f(a100, llama.decode(3.0, 100.0))  # other batch/context values: same trace


@pytest.mark.parametrize("field", ["dram.bandwidth", "peak_flops", "launch_overhead",
                                   "compute_odds", "l2.bandwidth"])
def test_gradient_matches_finite_differences(field, llama7b):
    """Leaves that enter through continuous terms: the exact derivative of the smooth
    model. (A leaf that enters through a rounded count, such as tile_n, has the count's
    trend as its derivative instead: tests/test_gradients.py audits those.)"""
    with jax.enable_x64(True):
        hw = _to64(pm.hardware.preset("a100-80gb"))
        ops = llama7b.prefill(1.0, 700.0) if field in ("peak_flops", "tile_n") else \
            llama7b.decode(8.0, 2048.0)
        get = lambda h: eval(f"h.{field}")  # noqa: E731,S307 - test helper on our own names

        def loss(x):
            return jnp.log(pm.evaluate(eqx.tree_at(get, hw, x), ops).latency)

        x0 = get(hw)
        g = jax.grad(loss)(x0)
        direction = jnp.ones_like(x0)
        h = 1e-7 * x0  # small: the smooth ceil is piecewise linear (finite kinks)
        fd = (loss(x0 + h * direction) - loss(x0 - h * direction)) / 2
        analytic = jnp.sum(g * h * direction)
        assert np.isfinite(float(analytic))
        assert float(analytic) == pytest.approx(float(fd), rel=1e-4, abs=1e-12)


def _ceil_args(hw, ops):
    mm = np.array([k in MATMUL_KINDS for k in ops.kinds])
    m, n = np.asarray(ops.m)[mm], np.asarray(ops.n)[mm]
    tm, tn = np.ceil(m / float(hw.tile_m)), np.ceil(n / float(hw.tile_n))
    waves = np.asarray(ops.groups)[mm] * tm * tn / float(hw.units)
    split_waves = [waves * s for s in SPLIT_K]  # the split-K candidates' wave counts
    return np.concatenate([m / float(hw.tile_m), n / float(hw.tile_n), *split_waves,
                           m / MMA_M])


def test_smooth_within_bound_of_exact(a100, llama7b):
    """Away from the ceil ramps (CEIL_RAMP above each integer of a tile or wave count),
    the smooth model is within 3% of the exact one (RIDGE_SHARPNESS at ridge points)."""
    tested = 0
    for ops in (llama7b.decode(8.0, 2048.0), llama7b.prefill(1.0, 2048.0),
                pm.workloads.gemm(1000.0, 3000.0, 4096.0)):
        batch, static = random_designs(a100, 400, jax.random.PRNGKey(3))
        smooth, exact = (np.asarray(_over_designs(_latency, batch, static, ops, hard))
                         for hard in (False, True))
        host = jax.tree.map(np.asarray, batch)  # per-design slicing on the host
        for i in range(400):
            hw_i = eqx.combine(jax.tree.map(lambda x: x[i], host), static)
            args = _ceil_args(hw_i, ops)
            frac = args - np.floor(args)
            if np.any((frac > 0) & (frac < pm.CEIL_RAMP)):
                continue
            tested += 1
            assert -1e-5 <= smooth[i] / exact[i] - 1 <= 0.03
    assert tested > 300  # enough random designs lie away from the ramps


@eqx.filter_jit
def _over_designs(fn, batch, static, *args):
    """``fn(hardware, *args)`` over the designs of ``batch``; compiled once per ``fn`` and
    shapes, so a property test's examples share one compilation."""
    return jax.vmap(lambda p: fn(eqx.combine(p, static), *args))(batch)


def _latency(hw, ops, hard):
    return pm.evaluate(hw, ops, hard=hard).latency


def _latency_grad(hw, ops):
    return eqx.filter_grad(lambda h: pm.evaluate(h, ops).latency)(hw)


def _latency_more_bandwidth(hw, ops, factor, hard):
    hw = eqx.tree_at(lambda x: (x.dram.bandwidth, x.l2.bandwidth), hw,
                     (hw.dram.bandwidth * factor, hw.l2.bandwidth * factor))
    return pm.evaluate(hw, ops, hard=hard).latency


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_gradients_finite_over_random_designs(seed):
    hw = pm.hardware.preset("a100-80gb")
    ops = pm.workloads.preset("llama-3.2-1b").decode(4.0, 512.0)
    batch, static = random_designs(hw, 8, jax.random.PRNGKey(seed))
    g = _over_designs(_latency_grad, batch, static, ops)
    for leaf in jax.tree.leaves(g):
        assert np.all(np.isfinite(np.asarray(leaf)))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(1.01, 4.0))
def test_more_bandwidth_is_never_slower(seed, factor):
    hw = pm.hardware.preset("h100-sxm")
    ops = pm.workloads.preset("llama-3.2-1b").prefill(2.0, 256.0)
    batch, static = random_designs(hw, 8, jax.random.PRNGKey(seed))
    for hard in (False, True):
        base, more = (np.asarray(_over_designs(_latency_more_bandwidth, batch, static, ops,
                                               jnp.float32(f), hard))
                      for f in (1.0, factor))
        assert np.all(more <= base * (1 + 1e-6))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_energy_never_negative(seed):
    hw = pm.hardware.preset("t4")
    ops = pm.workloads.preset("gpt2").request(2.0, 64.0, 32.0)
    batch, static = random_designs(hw, 8, jax.random.PRNGKey(seed))
    rep = _over_designs(pm.evaluate, batch, static, ops)
    assert np.all(np.asarray(rep.energy_terms) >= 0)
    assert np.all(np.asarray(rep.energy) > 0)


def test_float64_path(llama7b):
    with jax.enable_x64(True):
        hw = _to64(pm.hardware.preset("a100-80gb"))
        rep = pm.evaluate(hw, llama7b.decode(8.0, 2048.0))
        assert rep.latency.dtype == jnp.float64
        ref = pm.evaluate(pm.hardware.preset("a100-80gb"), llama7b.decode(8.0, 2048.0))
    assert float(rep.latency) == pytest.approx(float(ref.latency), rel=1e-5)


def test_datatype_peak_selection(a100):
    """W4A16 runs on fp16 tensor cores; W8A8 on int8; W4A4 on int4; on a V100 8- and 4-bit
    compute use the fp16 tensor cores (125 TFLOPS), faster than its int8 dp4a path."""
    def t(hw, bits):
        ops = pm.workloads.gemm(4096.0, 4096.0, 4096.0, bits=bits)
        return float(pm.evaluate(hw, ops, hard=True).time_terms[0, 0])
    assert t(a100, 8.0) == pytest.approx(t(a100, 16.0) / 2, rel=1e-5)
    assert t(a100, 4.0) == pytest.approx(t(a100, 16.0) / 4, rel=1e-5)
    v100 = pm.hardware.preset("v100")  # fp32, fp16 tensor, int8 dp4a only
    assert t(v100, 4.0) == pytest.approx(t(v100, 8.0), rel=1e-5)
    assert t(v100, 8.0) == pytest.approx(t(v100, 16.0), rel=1e-5)
    # smooth mode agrees (smooth eligibility in bits), ties included (H100 int8 = fp8)
    h100 = pm.hardware.preset("h100-sxm")
    for hw in (a100, v100, h100):
        for bits in (4.0, 8.0, 16.0):
            ops = pm.workloads.gemm(4096.0, 4096.0, 4096.0, bits=bits)
            smooth = float(hw.datapath_peak(ops.compute_bits, hard=False)[0])
            exact = float(hw.datapath_peak(ops.compute_bits, hard=True)[0])
            assert smooth == pytest.approx(exact, rel=1e-4)


def test_offload_tier_used_when_model_does_not_fit():
    hw = pm.hardware.preset("a100-80gb-offload")
    wl = pm.workloads.preset("llama-2-70b")
    rep = pm.evaluate(hw, wl.decode(1.0, 128.0))
    assert "offload" in rep.bound_names()
    fits = pm.evaluate(pm.hardware.preset("h200"), wl.decode(1.0, 128.0))
    assert float(rep.latency) > 10 * float(fits.latency)


@pytest.mark.parametrize("n,chunk", [(10, 4), (7, None)])
def test_sweep_equals_vmap(n, chunk):
    """`sweep` (equal chunks, padded with the last design, padding dropped) returns what
    one vmap returns, for pytree inputs and outputs (value and gradient)."""
    hw = pm.hardware.preset("a100-80gb")
    ops = pm.workloads.preset("gpt2").decode(1.0, 128.0)
    params, static = eqx.partition(hw, eqx.is_inexact_array)
    scale = jnp.linspace(0.5, 2.0, n)
    designs = jax.tree.map(lambda x: x[None] * scale.reshape((n,) + (1,) * x.ndim), params)

    def f(p):
        return pm.evaluate(eqx.combine(p, static), ops, check=False).latency

    vg = jax.value_and_grad(f)
    want = jax.jit(jax.vmap(vg))(designs)
    got = jax.jit(lambda d: pm.sweep(vg, d, chunk=chunk))(designs)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert a.shape == b.shape
    # float32: another layout and fusion round differently; compared as elasticities
    # (a capacity gradient is ~1e-22 s/B away from its bound, rounding noise either way)
    agree = layout_agreement(got, want, designs)
    assert agree["latency_rel"] < 1e-5 and agree["elasticity_abs"] < 1e-5, agree


def test_dynamic_energy_leaves_static_out():
    """`dynamic_energy_per_token` is the energy without static power x latency: it does
    not move when static power does (the claim metric dynamic_energy_efficiency_gain)."""
    hw = pm.hardware.preset("a100-80gb")
    ops = pm.workloads.preset("llama-2-7b").decode(8.0, 1024.0)
    rep = pm.evaluate(hw, ops)
    assert float(rep.dynamic_energy_per_token * rep.tokens + rep.static_energy) == \
        pytest.approx(float(rep.energy), rel=1e-6)
    hot = eqx.tree_at(lambda h: h.static_power, hw, hw.static_power * 3.0)
    rep3 = pm.evaluate(hot, ops)
    assert float(rep3.energy_per_token) > float(rep.energy_per_token)
    assert float(rep3.dynamic_energy_per_token) == pytest.approx(
        float(rep.dynamic_energy_per_token), rel=1e-6)
