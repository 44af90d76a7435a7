"""EagerFramework: a device driven op by op from a host framework (PyTorch eager)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import perfmodel as pm
from perfmodel import ModelInputError
from perfmodel.hardware import EagerFramework
from perfmodel.hardware._registry import from_spec


@pytest.fixture(scope="module")
def eager():
    return pm.hardware.preset("t4-pytorch-eager")


def _decode(name):
    return pm.workloads.preset(name).decode(1.0, 512.0)


def _host_total(hw, ops):
    return float(np.sum(np.asarray(ops.count) * np.asarray(ops.launches) * hw.host_ops(ops))
                 * float(hw.host_op_time))


def test_small_model_is_host_bound(eager):
    """GPT-2 124M at batch 1: the T4 needs ~1.9 ms, the host ~3.5 ms of dispatch, so the
    step takes the host's time and the device idles at static power meanwhile."""
    ops = _decode("gpt2")
    dev = pm.evaluate(eager.device, ops, hard=True)
    rep = pm.evaluate(eager, ops, hard=True)
    host = _host_total(eager, ops)
    assert host > float(dev.latency)
    np.testing.assert_allclose(float(rep.latency), host, rtol=1e-6)
    np.testing.assert_allclose(float(jnp.sum(rep.op_time)), float(rep.latency), rtol=1e-5)
    static_w = float(dev.static_energy / dev.latency)
    np.testing.assert_allclose(float(rep.energy),
                               float(jnp.sum(dev.energy_terms)) + static_w * host, rtol=1e-5)
    assert rep.components[-1] == "host_dispatch"
    assert "host_dispatch" in rep.bound_names()


def test_large_model_is_device_bound(eager):
    """GPT-2 XL at batch 1: the GEMVs outlast the host's dispatch; the device's roofline
    is the step time (exactly, with hard=True)."""
    ops = _decode("gpt2-xl")
    dev = pm.evaluate(eager.device, ops, hard=True)
    rep = pm.evaluate(eager, ops, hard=True)
    assert _host_total(eager, ops) < float(dev.latency)
    np.testing.assert_allclose(float(rep.latency), float(dev.latency), rtol=1e-6)
    np.testing.assert_allclose(float(rep.energy), float(dev.energy), rtol=1e-6)


def test_smooth_within_ridge_bound_of_exact(eager):
    for w in ("gpt2", "gpt2-medium", "gpt2-xl"):
        ops = _decode(w)
        soft = float(pm.evaluate(eager, ops).latency)
        exact = float(pm.evaluate(eager, ops, hard=True).latency)
        assert exact <= soft * (1 + 1e-6) and soft <= exact * (1 + pm.RIDGE_SHARPNESS)


def test_gradients_finite_and_signed(eager):
    """d latency / d host_op_time > 0 where the host binds; finite w.r.t. every leaf of
    the device too, under vmap over scaled designs."""
    ops = _decode("gpt2")
    g = jax.jit(jax.grad(lambda h: pm.evaluate(h, ops, check=False).latency))(eager)
    assert float(g.host_op_time) > 0
    for leaf in jax.tree.leaves(g):
        assert np.all(np.isfinite(np.asarray(leaf)))
    scales = jnp.asarray([0.5, 1.3, 2.0])
    designs = jax.vmap(lambda s: jax.tree.map(lambda x: x * s, eager))(scales)
    lat, grads = jax.jit(jax.vmap(jax.value_and_grad(
        lambda h: pm.evaluate(h, ops, check=False).latency)))(designs)
    assert np.all(np.isfinite(np.asarray(lat))) and np.all(np.asarray(lat) > 0)
    for leaf in jax.tree.leaves(grads):
        assert np.all(np.isfinite(np.asarray(leaf)))


def test_more_host_time_never_faster(eager):
    ops = _decode("gpt2-medium")
    times = [float(pm.evaluate(eqx.tree_at(lambda h: h.host_op_time, eager,
                                           jnp.asarray(t)), ops).latency)
             for t in (1e-6, 5e-6, 20e-6, 50e-6)]
    assert all(b >= a for a, b in zip(times, times[1:]))


def test_wraps_any_target():
    """The wrapper works around a non-xPU target (a DRAM-PIM device)."""
    pim = pm.hardware.preset("pim-gpt")
    hw = EagerFramework(device=pim, host_op_time=jnp.asarray(10e-6), ops_per_row=(),
                        name="pim-gpt eager", bibtex="")
    ops = _decode("gpt2")
    rep = pm.evaluate(hw, ops, hard=True)
    assert float(rep.latency) >= float(pm.evaluate(pim, ops, hard=True).latency)


def _spec(**framework):
    return {"schema_version": 1, "name": "x", "family": "eager-framework",
            "framework": framework}


def test_bad_input_names_the_field(eager):
    with pytest.raises(ModelInputError, match="framework.ops_per_row.gemm"):
        from_spec(_spec(device="t4", host_op_time_us=20.0, ops_per_row={"gemm": 1.0}), "x")
    with pytest.raises(ModelInputError, match="host_op_time_us"):
        from_spec(_spec(device="t4", host_op_time_us=0.0), "x")
    with pytest.raises(ModelInputError, match="framework.device"):
        from_spec(_spec(host_op_time_us=20.0), "x")
    with pytest.raises(ModelInputError, match="unknown hardware"):
        from_spec(_spec(device="t5", host_op_time_us=20.0), "x")
    bad = eqx.tree_at(lambda h: h.host_op_time, eager, jnp.asarray(-1e-6))
    with pytest.raises(ModelInputError, match="host_op_time"):
        pm.evaluate(bad, _decode("gpt2"))
    # the device's own checks still apply
    bad = eqx.tree_at(lambda h: h.device.dram.bandwidth, eager, jnp.asarray(0.0))
    with pytest.raises(ModelInputError, match="dram.bandwidth"):
        pm.evaluate(bad, _decode("gpt2"))
