"""Heterogeneous systems (hardware/_system.py): placement policies, blocked vs concurrent
modes, transfers, gradients and bad input. Toy systems of two xPU presets keep these
tests independent of the PIM presets; the published systems are tested in
tests/test_hetero.py."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import perfmodel as pm
from perfmodel import ModelInputError
from perfmodel.hardware import Placement, System

ATTN = ("attn_fused", "attn_score", "attn_softmax", "attn_value")


def toy_spec(**over):
    spec = {
        "schema_version": 1, "name": "toy", "family": "system",
        "units": {"gpu": "a100-80gb", "aux": "t4"},
        "system": {"mode": "blocked", "policy": "kinds"},
        "placement": {"default": "gpu", **{k: "aux" for k in ATTN}},
        "link": {"bandwidth_GB_s": 64.0, "latency_us": 2.0, "energy_pJ_per_bit": 5.0},
    }
    spec.update(over)
    return spec


def _host_offload(hw, bandwidth=16e9):
    """``hw`` with a 512 GB host-DRAM offload tier over PCIe (the T4 preset had one
    before the GPU presets dropped theirs; these tests exercise the spill path)."""
    from perfmodel.hardware._xpu import MemoryLevel, to_odds

    level = MemoryLevel(bandwidth=jnp.asarray(bandwidth), capacity=jnp.asarray(512e9),
                        energy_per_bit=jnp.asarray(20e-12), odds=jnp.asarray(to_odds(0.8)))
    return eqx.tree_at(lambda h: h.offload, hw, level, is_leaf=lambda x: x is None)


def _build(spec):
    """`from_spec`, with the T4 units given their host offload tier."""
    s = pm.hardware.from_spec(spec)
    units = tuple(_host_offload(u) if getattr(u, "name", "") == "t4" else u for u in s.units)
    return eqx.tree_at(lambda x: x.units, s, units)


@pytest.fixture(scope="module")
def toy():
    return _build(toy_spec())


@pytest.fixture(scope="module")
def ops():
    return pm.workloads.preset("llama-2-7b").decode(16.0, 2048.0)


def test_kinds_policy_places_rows(toy, ops):
    p = np.asarray(toy.placement(ops, hard=True))
    for i, kind in enumerate(ops.kinds):
        assert p[i, toy.unit_names.index("aux" if kind in ATTN else "gpu")] == 1.0
    soft = np.asarray(toy.placement(ops))
    np.testing.assert_allclose(soft, p, atol=1e-8)


@pytest.mark.parametrize("mode", ["blocked", "concurrent"])
def test_kinds_policy_costs_each_unit_on_its_rows_only(toy, ops, mode):
    """With the static `kinds` policy each unit is costed on its own rows only (the
    other rows carry a rule weight of ~2e-9): exact with hard=True, within 1e-6 smooth,
    and the gradients agree with the all-rows evaluation."""
    sys_m = toy.with_mode(mode)
    rows = sys_m.static_rows(ops)
    assert rows is not None and sorted(np.concatenate(rows)) == list(range(ops.rows))
    assert sys_m.static_rows(ops, Placement(jnp.zeros((ops.rows, 2)))) is None

    def all_rows(hw, hard):  # the same model, every unit costed on every row
        p = hw.placement(ops, hard=hard)
        t, e, _, _ = hw._times(ops, p, hard=hard)
        return t, e

    for hard in (False, True):
        t_all, e_all = all_rows(sys_m, hard)
        t_own, e_own, _, _ = sys_m._times(ops, sys_m.placement(ops, hard=hard), hard=hard,
                                       static_rows=rows)
        for u, r in enumerate(rows):  # the unit's own rows: identical
            np.testing.assert_allclose(np.asarray(t_own)[r, u], np.asarray(t_all)[r, u],
                                       rtol=1e-6)
            np.testing.assert_allclose(np.asarray(e_own)[r, u], np.asarray(e_all)[r, u],
                                       rtol=1e-6)
    g = jax.jit(jax.grad(lambda h: pm.evaluate(h, ops, check=False).latency))(sys_m)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(g))


def test_blocked_is_sum_of_unit_times_plus_transfers(toy, ops):
    """Blocked mode: T = sum_u L_u + X, computed independently here from the units."""
    rep = pm.evaluate(toy, ops, hard=True)
    p = np.asarray(toy.placement(ops, hard=True))
    busy = 0.0
    # each unit holds the footprint of its rows only: the T4 holds the KV cache (8.6 GB)
    # but not the weights, so it does not spill to its offload tier
    w = np.asarray(ops.count * ops.weight_bytes)
    kv = np.asarray(ops.count * (ops.kv_read_bytes + ops.kv_write_bytes))
    for u, unit in enumerate(toy.units):
        unit_ops = eqx.tree_at(
            lambda o: (o.weight_footprint, o.kv_footprint), ops,
            (ops.weight_footprint * float((w * p[:, u]).sum() / w.sum()),
             ops.kv_footprint * float((kv * p[:, u]).sum() / kv.sum())))
        t = np.asarray(unit.cost(unit_ops, hard=True).op_time(hard=True))
        busy += float(np.sum(np.asarray(ops.count) * p[:, u] * t))
    switch = 1.0 - np.sum(p * np.roll(p, 1, axis=0), axis=1)
    x = switch * (np.asarray(ops.act_in_bytes) / 64e9 + 2e-6)
    want = busy + float(np.sum(np.asarray(ops.count) * x))
    assert float(rep.latency) == pytest.approx(want, rel=1e-5)
    # exactly two switches per layer (to the attention unit and back)
    assert switch.sum() == 2.0
    assert float(jnp.sum(rep.op_time)) == pytest.approx(float(rep.latency), rel=1e-5)
    assert rep.components == ("gpu", "aux", "transfer")


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("batch", [1.0, 16.0, 128.0])
def test_concurrent_never_slower_than_blocked(toy, batch, hard):
    ops = pm.workloads.preset("llama-2-7b").decode(batch, 2048.0)
    blocked = float(pm.evaluate(toy, ops, hard=hard).latency)
    concurrent = float(pm.evaluate(toy.with_mode("concurrent"), ops, hard=hard).latency)
    assert concurrent <= blocked * (1 + 1e-6)
    # and it overlaps: the longest unit's busy time is a lower bound
    assert concurrent < blocked


def test_concurrent_random_designs_never_slower(toy, ops):
    params, static = eqx.partition(toy, eqx.is_inexact_array)
    keys = jax.random.split(jax.random.PRNGKey(3), len(jax.tree.leaves(params)))
    leaves, tree = jax.tree.flatten(params)
    n = 64
    batch = jax.tree.unflatten(tree, [x[None] * jax.random.uniform(k, (n,) + x.shape,
                                                                   minval=0.5, maxval=2.0)
                                      for x, k in zip(leaves, keys)])

    def lat(p, mode):
        return pm.evaluate(eqx.combine(p, static).with_mode(mode), ops, check=False).latency

    b = jax.jit(jax.vmap(lambda p: lat(p, "blocked")))(batch)
    c = jax.jit(jax.vmap(lambda p: lat(p, "concurrent")))(batch)
    assert np.all(np.asarray(c) <= np.asarray(b) * (1 + 1e-6))


def test_gradients_finite_and_jit_matches_eager(toy, ops):
    sys_c = toy.with_mode("concurrent")
    for s in (toy, sys_c):
        eager = float(pm.evaluate(s, ops).latency)
        jitted = float(jax.jit(lambda h: pm.evaluate(h, ops, check=False).latency)(s))
        assert jitted == pytest.approx(eager, rel=1e-5)
        g = jax.jit(jax.grad(lambda h: pm.evaluate(h, ops, check=False).energy))(s)
        leaves = jax.tree.leaves(eqx.filter(g, eqx.is_inexact_array))
        assert leaves and all(np.all(np.isfinite(np.asarray(x))) for x in leaves)


def test_placement_mapping_is_differentiable(toy, ops):
    logits = toy.rule_logits(ops) / 10.0  # softer than the rule
    rep = pm.evaluate(toy, ops, Placement(logits))
    assert math.isfinite(float(rep.latency))
    g = jax.grad(lambda lg: pm.evaluate(toy, ops, Placement(lg), check=False).latency)(logits)
    assert np.all(np.isfinite(np.asarray(g))) and np.any(np.asarray(g) != 0)
    # moving attention from the T4 to the A100 is faster: gradient says so
    i = ops.kinds.index("attn_fused")
    gpu, aux = toy.unit_names.index("gpu"), toy.unit_names.index("aux")
    assert float(g[i, gpu]) < float(g[i, aux])


def test_hard_placement_matches_argmax(toy, ops):
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(ops.rows, 2)))
    rep = pm.evaluate(toy, ops, Placement(logits), hard=True)
    idx = np.argmax(np.asarray(logits), axis=1)
    one_hot = jnp.asarray(np.eye(2)[idx] * 50.0)
    rep2 = pm.evaluate(toy, ops, Placement(one_hot), hard=True)
    assert float(rep.latency) == pytest.approx(float(rep2.latency), rel=1e-6)


def test_op_per_byte_policy(ops):
    """Duplex's policy: low-intensity matmuls on the low unit, the rest on the high one."""
    s = _build(toy_spec(
        system={"policy": "op_per_byte"},
        placement={"low": "aux", "high": "gpu", "threshold": 32.0}))
    p = np.asarray(s.placement(ops, hard=True))
    intensity = np.asarray(ops.flops) / np.maximum(np.asarray(ops.dram_bytes), 1.0)
    mm = np.array([k in pm.hardware.MATMUL_KINDS for k in ops.kinds])
    aux = s.unit_names.index("aux")
    np.testing.assert_array_equal(p[:, aux] == 1.0, mm & (intensity < 32.0))
    # at batch 16 the attention (op/B ~ 1) goes low, the weight GEMMs (op/B ~ 16) too,
    # but prefill GEMMs (op/B in the hundreds) go high
    pre = pm.workloads.preset("llama-2-7b").prefill(4.0, 512.0)
    pp = np.asarray(s.placement(pre, hard=True))
    assert pp[pre.kinds.index("ffn_up"), s.unit_names.index("gpu")] == 1.0


@pytest.mark.parametrize("mode", ["blocked", "concurrent"])
def test_op_per_byte_fast_path_matches_the_general_one(ops, mode, monkeypatch):
    """With two units the op/B placement is a logistic of the margin and each unit is
    costed on the rows it may take (the low unit: eligible matmuls only). Against the
    general path (softmax of [rows, 2] logits, every unit on every row): latency and
    energy within 1e-6 smooth, exact hard, gradients (threshold included) within 1e-4."""
    s = _build(toy_spec(
        system={"policy": "op_per_byte", "mode": mode},
        placement={"low": "aux", "high": "gpu", "threshold": 32.0,
                   "low_kinds": ["attn_fused", "ffn_up"]}))
    rows = s.static_rows(ops)
    aux = s.unit_names.index("aux")
    assert [ops.kinds[i] for i in rows[aux]] == ["attn_fused", "ffn_up"]
    assert list(rows[1 - aux]) == list(range(ops.rows))

    def run(hard):
        rep = pm.evaluate(s, ops, hard=hard, check=False)
        return float(rep.latency), float(rep.energy)

    def grad():  # traced afresh: after the monkeypatch below, through the general path
        return jax.jit(jax.grad(lambda h: pm.evaluate(h, ops, check=False).latency))(s)

    fast = {hard: run(hard) for hard in (False, True)}
    g_fast = grad()
    monkeypatch.setattr(System, "static_rows", lambda self, ops, mapping=None: None)
    monkeypatch.setattr(System, "placement", lambda self, ops, mapping=None, *, hard=False,
                        times=None: pm.soft_choice(self.rule_logits(ops), axis=1,
                                                 hard=hard))
    for hard in (False, True):
        lat, en = run(hard)
        tol = 0.0 if hard else 1e-6
        assert fast[hard][0] == pytest.approx(lat, rel=tol, abs=0.0)
        assert fast[hard][1] == pytest.approx(en, rel=max(tol, 1e-7))
    g_all = grad()
    assert float(g_all.op_per_byte_threshold) != 0.0
    for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_all)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4,
                                   atol=1e-6 * float(np.max(np.abs(np.asarray(b)))) + 1e-30)


def test_fastest_policy_is_never_slower_than_one_unit(ops):
    s = _build(toy_spec(system={"policy": "fastest"}, placement={}))
    t = float(pm.evaluate(s, ops, hard=True).latency)
    gpu_only = float(pm.evaluate(pm.hardware.preset("a100-80gb"), ops, hard=True).latency)
    assert t <= gpu_only * 1.001


def test_faster_link_never_slower(toy, ops):
    fast = eqx.tree_at(lambda s: s.link_bandwidth, toy, toy.link_bandwidth * 4)
    assert float(pm.evaluate(fast, ops).latency) <= float(pm.evaluate(toy, ops).latency)


def test_energy_components_and_static(toy, ops):
    rep = pm.evaluate(toy, ops)
    eb = rep.energy_breakdown()
    assert set(eb) == {"gpu", "aux", "transfer", "static"}
    assert all(v >= 0 for v in eb.values())
    assert sum(eb.values()) == pytest.approx(float(rep.energy), rel=1e-5)


def test_bad_input():
    with pytest.raises(ModelInputError, match=r"placement\.attn_fused = 'pim2'"):
        _build(toy_spec(placement={"attn_fused": "pim2"}))
    with pytest.raises(ModelInputError, match=r"placement\.bogus is not an op kind"):
        _build(toy_spec(placement={"bogus": "gpu"}))
    with pytest.raises(ModelInputError, match="mode"):
        _build(toy_spec(system={"mode": "parallel"}))
    with pytest.raises(ModelInputError, match="not a hardware preset|unknown hardware"):
        _build(toy_spec(units={"gpu": "a100-80gb", "aux": "no-such-chip"}))
    s = _build(toy_spec())
    ops = pm.workloads.preset("gpt2").decode(1.0, 128.0)
    with pytest.raises(ModelInputError, match=r"mapping\.logits has shape"):
        pm.evaluate(s, ops, Placement(jnp.zeros((3, 2))))
    with pytest.raises(ModelInputError, match="link_bandwidth"):
        pm.evaluate(eqx.tree_at(lambda h: h.link_bandwidth, s, jnp.asarray(0.0)), ops)
    assert isinstance(s, System)


def _co_toy(**placement):
    return _build(toy_spec(
        system={"policy": "op_per_byte", "mode": "blocked"},
        placement={"low": "aux", "high": "gpu", "threshold": 1e4,
                   "low_kinds": ["moe_up", "moe_down"], **placement}))


@pytest.fixture(scope="module")
def moe_ops():
    return pm.workloads.preset("mixtral-8x7b").decode(64.0, 2048.0, tensor_parallel=4)


def test_co_processing_splits_work_items(moe_ops):
    """Co-processing (Duplex's expert co-processing): a co row's G work items are split,
    k on the high unit and G - k on the low one at once; the row takes
    min_k max(k/G t_high, (1 - k/G) t_low), checked by brute force, never more than
    either unit alone; the busy and energy shares follow the chosen split."""
    plain, co = _co_toy(), _co_toy(co_kinds=["moe_up", "moe_down"])
    for hard in (True, False):
        t = np.asarray(plain._times(moe_ops, None, hard=hard)[0])
        rep_p = pm.evaluate(plain, moe_ops, hard=hard)
        rep_c = pm.evaluate(co, moe_ops, hard=hard)
        hi, lo = co.unit_names.index("gpu"), co.unit_names.index("aux")
        saved = 0.0
        for i, kind in enumerate(moe_ops.kinds):
            if kind not in ("moe_up", "moe_down"):
                continue
            g = int(round(float(moe_ops.groups[i])))
            best = min(max(k / g * t[i, hi], (1 - k / g) * t[i, lo]) for k in range(g + 1))
            assert best <= min(t[i, hi], t[i, lo]) * (1 + 1e-6)
            c = float(moe_ops.count[i])
            assert float(rep_c.op_time[i]) == pytest.approx(c * best + c * float(
                rep_c.time_terms[i, -1]), rel=1e-5)
            shares = np.asarray(rep_c.time_terms[i, :2]) / t[i, :2]
            assert shares.sum() == pytest.approx(1.0, rel=1e-5)
            assert shares[hi] * g == pytest.approx(round(shares[hi] * g), abs=1e-4)
            saved += float(rep_p.op_time[i]) - float(rep_c.op_time[i])
        assert saved > 0 and float(rep_c.latency) < float(rep_p.latency)
    g = jax.jit(jax.grad(lambda h: pm.evaluate(h, moe_ops, check=False).latency))(co)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(g))


def test_co_processing_bad_input(moe_ops):
    with pytest.raises(ModelInputError, match="co_kinds holds 'norm'"):
        _co_toy(co_kinds=["norm"])
    with pytest.raises(ModelInputError, match='co_kinds needs mode = "blocked"'):
        _build(toy_spec(
            system={"policy": "op_per_byte", "mode": "concurrent"},
            placement={"low": "aux", "high": "gpu", "co_kinds": ["moe_up"]}))


@pytest.mark.parametrize("mode", ["blocked", "concurrent"])
def test_proportional_split(ops, mode):
    """split_kinds (AttAcc's FF split): an FF row is divided so both units finish
    together, t_split = t_high t_low / (t_high + t_low), each unit busy t_split on it;
    in blocked mode the step is never slower than without the split; gradients finite."""
    def system(**placement):
        return _build(toy_spec(
            system={"policy": "op_per_byte", "mode": mode},
            placement={"low": "aux", "high": "gpu", "threshold": 4.0,
                       "low_kinds": ["attn_fused", "attn_score", "attn_value"],
                       **placement}))
    plain, split = system(), system(split_kinds=["ffn_up", "ffn_down"])
    hi, lo = split.unit_names.index("gpu"), split.unit_names.index("aux")
    for hard in (True, False):
        # unit times on the footprint shares of the policy's placement, as evaluate has
        t = np.asarray(plain._times(ops, plain.placement(ops, hard=hard), hard=hard)[0])
        rep = pm.evaluate(split, ops, hard=hard)
        busy = np.asarray(rep.time_terms)
        rows = [i for i, k in enumerate(ops.kinds) if k in ("ffn_up", "ffn_down")]
        assert rows
        for i in rows:
            t_split = t[i, hi] * t[i, lo] / (t[i, hi] + t[i, lo])
            assert busy[i, hi] == pytest.approx(t_split, rel=1e-5)
            assert busy[i, lo] == pytest.approx(t_split, rel=1e-5)
        if mode == "blocked":
            for i in rows:  # the row alone: t_split plus its transfer
                assert float(rep.op_time[i]) == pytest.approx(float(ops.count[i]) * (
                    t[i, hi] * t[i, lo] / (t[i, hi] + t[i, lo]) + busy[i, -1]), rel=1e-5)
            assert float(rep.latency) < float(pm.evaluate(plain, ops, hard=hard).latency)
    g = jax.jit(jax.grad(lambda h: pm.evaluate(h, ops, check=False).latency))(split)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(g))


def test_split_and_co_processing_together(moe_ops):
    """A table with rows of both split_kinds and co_kinds: each kind split its own way,
    in blocked mode never slower than co-processing alone."""
    co = _co_toy(co_kinds=["moe_up", "moe_down"])
    both = _co_toy(co_kinds=["moe_up", "moe_down"], split_kinds=["out_proj"])
    rep_co, rep_both = (pm.evaluate(s, moe_ops, hard=True) for s in (co, both))
    moe = [i for i, k in enumerate(moe_ops.kinds) if k in ("moe_up", "moe_down")]
    out = moe_ops.kinds.index("out_proj")
    np.testing.assert_allclose(np.asarray(rep_both.time_terms)[moe],
                               np.asarray(rep_co.time_terms)[moe], rtol=1e-5)
    busy = np.asarray(rep_both.time_terms)[out, :2]
    assert busy[0] == pytest.approx(busy[1], rel=1e-5)  # both finish together
    assert float(rep_both.latency) < float(rep_co.latency)


def test_proportional_split_bad_input():
    with pytest.raises(ModelInputError, match="split_kinds holds 'norm'"):
        _co_toy(split_kinds=["norm"])
    with pytest.raises(ModelInputError, match="split_kinds holds 'moe_up'"):
        _co_toy(co_kinds=["moe_up"], split_kinds=["moe_up"])
    with pytest.raises(ModelInputError, match="split_kinds needs two units"):
        _build(toy_spec(
            units={"gpu": "a100-80gb", "aux": "t4", "cpu": "neoverse-n1"},
            system={"policy": "kinds", "mode": "blocked"},
            placement={"default": "gpu", "split_kinds": ["ffn_up"]}))


def test_fastest_policy_keeps_collectives_on_the_default_unit():
    """A DRAM-PIM unit's host would count an all-reduce as a local memory pass (no
    network model), so `fastest` would pick it; collectives stay on the default unit."""
    s = _build(toy_spec(
        units={"gpu": "h100-sxm", "pim": "attacc-pim-bank"},
        system={"policy": "fastest"}, placement={"default": "gpu"}))
    ops = pm.workloads.preset("mixtral-8x7b").decode(32.0, 2048.0, tensor_parallel=4)
    p = np.asarray(s.placement(ops, hard=True))
    gpu = s.unit_names.index("gpu")
    t = np.asarray(s._times(ops, None, hard=True)[0])
    for i, kind in enumerate(ops.kinds):
        if kind == "allreduce":
            assert t[i, 1 - gpu] < t[i, gpu]  # what the rule overrides
            assert p[i, gpu] == 1.0
