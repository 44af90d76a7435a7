"""Published heterogeneous systems: NeuPIMs (NPU + PIM), AttAcc (GPU + HBM-PIM) and
Duplex (xPU + Logic-PIM). Their headline claims are rows of fit/data/claims/hetero.csv,
asserted in tests/test_fit.py (measured errors in the known_miss column and below);
here: the op/B figures Duplex states, the placements, the modes, and gradients."""

import math

import equinox as eqx
import jax
import numpy as np
import pytest

import perfmodel as pm
from claim_cache import claim_result

SYSTEMS = ("neupims", "neupims-blocked", "attacc", "duplex", "duplex-pe")


def test_neupims_over_npu_only():
    """NeuPIMs' 2.4x over NPU-only: predicted 2.29x at batch 512 (-4.6%, tolerance 20%)."""
    r = claim_result("neupims-vs-npu-only")
    assert abs(r["rel_error"]) <= r["tolerance"], r


@pytest.mark.parametrize("claim_id,lo,hi", [
    # measured at the time of writing (2026-11-29); causes are in hetero.csv
    ("neupims-vs-gpu", 2.0, 3.0),        # 2.23x vs 3x (-25.6%)
    ("neupims-vs-blocked", 1.05, 1.6),   # 1.27x vs 1.6x (-20.4%)
    ("attacc-throughput", 1.5, 2.81),    # 1.99x vs 2.81x (-29.4%)
    ("attacc-energy", 1.2, 2.67),        # dynamic energy: 1.62x vs 2.67x (-39.5%)
    ("duplex-bankpim-b32-4096", 1.1, 2.17),  # 1.37x vs 2.17x (-36.7%)
])
def test_known_misses_keep_direction(claim_id, lo, hi):
    """The missed headlines still show the published direction (a gain > 1, below the
    published figure): if one of these moves out of its band, the model changed."""
    r = claim_result(claim_id)
    assert r["known_miss"]
    assert lo <= r["predicted"] <= hi, r


@pytest.mark.parametrize("workload,group", [("mixtral-8x7b", 4), ("llama-3-70b", 8)])
def test_duplex_gqa_attention_op_per_byte(workload, group):
    """Duplex: GQA attention has op/B 4-8 (FLOP per byte of KV at fp16 = the group size)."""
    ops = pm.workloads.preset(workload).decode(64.0, 4096.0)
    op_b = float(ops.intensity[ops.names.index("attn_fused")])
    assert op_b == pytest.approx(group, rel=0.05)
    assert 4.0 * 0.95 <= op_b <= 8.0 * 1.05


@pytest.mark.parametrize("batch", [1.0, 32.0, 128.0])
def test_duplex_moe_op_per_byte_at_least_one(batch):
    """Duplex: MoE expert layers have op/B >= 1 under continuous batching (1 at batch 1:
    each touched expert sees one token), growing with batch x top-k / experts."""
    ops = pm.workloads.preset("mixtral-8x7b").decode(batch, 2048.0)
    for name in ("moe_up", "moe_down"):
        op_b = float(ops.intensity[ops.names.index(name)])
        assert op_b >= 0.95
    # 2 experts per token over 8 experts: ~ batch / 4 tokens per touched expert
    assert float(ops.intensity[ops.names.index("moe_up")]) >= 0.9 * batch / 4.0


def test_duplex_places_decode_moe_and_attention_on_logic_pim():
    """Duplex: 'The low-Op/B unit handles the MoE layers during the decoding-only stage as
    well as the attention layers of the decoding-only stage' (op/B 1-32); prefill MoE,
    the dense FC layers and element-wise rows stay on the xPU."""
    s = pm.hardware.preset("duplex")
    pim = s.unit_names.index("pim")
    for batch in (32.0, 64.0, 120.0):
        dec = pm.workloads.preset("mixtral-8x7b").decode(batch, 4096.0, tensor_parallel=4)
        p = np.asarray(s.placement(dec, hard=True))
        on_pim = {k for k, row in zip(dec.kinds, p) if row[pim] == 1.0}
        assert {"moe_up", "moe_down", "attn_fused"} <= on_pim, batch
        assert not on_pim & {"qkv_proj", "out_proj", "norm", "allreduce", "lm_head"}
    pre = pm.workloads.preset("mixtral-8x7b").prefill(8.0, 1024.0, tensor_parallel=4)
    pp = np.asarray(s.placement(pre, hard=True))
    assert all(row[pim] == 0.0 for k, row in zip(pre.kinds, pp) if k.startswith("moe_"))


def test_duplex_pe_splits_decode_experts_between_xpu_and_logic_pim():
    """Duplex+PE+ET: each decode MoE row's 8 tensor-parallel expert slices are split
    between the xPU and the Logic-PIM (both get a share at Mixtral batch 64: the
    Logic-PIM alone is ~2.2x faster, not 8x), the step is faster than plain Duplex's and
    the other rows are placed as in plain Duplex (their transfer terms follow the split
    of the row before)."""
    dec = pm.workloads.preset("mixtral-8x7b").decode(64.0, 4096.0, tensor_parallel=4)
    plain, pe = pm.hardware.preset("duplex"), pm.hardware.preset("duplex-pe")
    r_plain, r_pe = (pm.evaluate(s, dec, hard=True) for s in (plain, pe))
    xpu, pim = pe.unit_names.index("xpu"), pe.unit_names.index("pim")
    tt = np.asarray(r_pe.time_terms)
    for i, kind in enumerate(dec.kinds):
        if kind in ("moe_up", "moe_down"):
            assert tt[i, xpu] > 0 and tt[i, pim] > 0, kind
        else:
            np.testing.assert_allclose(tt[i, :2], np.asarray(r_plain.time_terms)[i, :2],
                                       rtol=1e-6)  # units; transfers follow the split
    assert 1.05 < float(r_plain.latency) / float(r_pe.latency) < 1.36


def test_attacc_places_decode_attention_on_pim():
    s = pm.hardware.preset("attacc")
    dec = pm.workloads.preset("gpt3-175b").decode(32.0, 2048.0, tensor_parallel=8)
    p = np.asarray(s.placement(dec, hard=True))
    pim = s.unit_names.index("pim")
    for i, kind in enumerate(dec.kinds):
        assert p[i, pim] == (1.0 if kind == "attn_fused" else 0.0), kind
    pre = pm.workloads.preset("gpt3-175b").prefill(4.0, 2048.0, tensor_parallel=8)
    pp = np.asarray(s.placement(pre, hard=True))
    attn = [i for i, k in enumerate(pre.kinds) if k.startswith("attn")]
    assert np.all(pp[attn, pim] == 0.0)  # compute-bound prefill attention stays on the GPU


def test_neupims_places_attention_gemvs_on_pim():
    s = pm.hardware.preset("neupims")
    ops = pm.workloads.preset("gpt3-6.7b").decode(256.0, 256.0, attention="standard",
                                                  tensor_parallel=4)
    p = np.asarray(s.placement(ops, hard=True))
    on_pim = {k for k, row in zip(ops.kinds, p) if row[s.unit_names.index("pim")] == 1.0}
    assert on_pim == {"attn_score", "attn_value"}


@pytest.mark.parametrize("batch", [64.0, 256.0, 512.0])
def test_neupims_concurrent_never_slower_than_blocked(batch):
    ops = pm.workloads.preset("gpt3-6.7b").decode(batch, 256.0, attention="standard",
                                                  tensor_parallel=4)
    c = pm.evaluate(pm.hardware.preset("neupims"), ops, hard=True)
    b = pm.evaluate(pm.hardware.preset("neupims-blocked"), ops, hard=True)
    assert float(c.latency) < float(b.latency)
    assert float(c.energy) <= float(b.energy)  # same work, less static time


@pytest.mark.parametrize("name", SYSTEMS)
def test_gradients_finite_over_random_designs(name):
    hw = pm.hardware.preset(name)
    ops = pm.workloads.preset("llama-2-7b").decode(8.0, 1024.0)
    params, static = eqx.partition(hw, eqx.is_inexact_array)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(0), len(leaves))
    n = 16
    batch = jax.tree.unflatten(tree, [x[None] * jax.random.uniform(k, (n,) + x.shape,
                                                                   minval=0.5, maxval=2.0)
                                      for x, k in zip(leaves, keys)])

    def tok_per_j(p):
        return 1.0 / pm.evaluate(eqx.combine(p, static), ops, check=False).energy_per_token

    val, grads = jax.jit(jax.vmap(jax.value_and_grad(tok_per_j)))(batch)
    assert np.all(np.isfinite(np.asarray(val))) and np.all(np.asarray(val) > 0)
    for g in jax.tree.leaves(grads):
        assert np.all(np.isfinite(np.asarray(g))), name


@pytest.mark.parametrize("name", SYSTEMS)
def test_predict_json_works(name):
    rep = pm.evaluate(pm.hardware.preset(name), pm.workloads.preset("llama-2-7b").decode(
        4.0, 1024.0)).to_dict()
    assert math.isfinite(rep["latency_s"]) and rep["latency_s"] > 0
    assert rep["bound"] in pm.hardware.preset(name).unit_names + ("transfer",)
