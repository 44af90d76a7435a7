"""LUT family (hardware/_lut.py): headline claims, physics properties, contracts."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import perfmodel as pm
from claim_cache import ROWS, claim_result
from perfmodel.hardware._lut import HOROWITZ_AREA_UM2, LUTMapping

CLAIMS = {i: r for i, r in ROWS.items() if r["file"] == "lut.csv"}


def _claim(cid):
    res = claim_result(cid)
    print(f"{cid}: published {res['published']:.4g}, predicted {res['predicted']:.4g}, "
          f"error {res['rel_error']:+.1%} (tolerance {res['tolerance']:.0%})")
    return res


# ---------------------------------------------------------------- headline claims
# Measured errors (hard=True): M2-Ultra 1 core 30 -> 29.9 tok/s (-0.2%, fitted row);
# 8 cores 71 -> 76.2 (+7.4%); Raspberry Pi 5 11 -> 11.4 (+3.4%); AGX Orin W2 15.62 ->
# 13.7 (-12.1%); Snapdragon X Elite W4 18.7 -> 17.1 (-8.5%), W2 28.4 -> 26.0 (-8.4%);
# ternary LUT area reduction 2.2 -> 2.01 (-8.6%).
@pytest.mark.parametrize("cid", [
    "tmac-m2-ultra-1t-bitnet", "tmac-m2-ultra-8t-bitnet", "tmac-raspberry-pi-5-bitnet",
    "tmac-jetson-agx-orin-llama2-w2", "tmac-snapdragon-x-elite-llama2-w4",
    "tmac-snapdragon-x-elite-llama2-w2", "ternary-lut-area"])
def test_headline_within_tolerance(cid):
    res = _claim(cid)
    assert abs(res["rel_error"]) <= res["tolerance"]


# Known misses (recorded in lut.csv known_miss): SAIL speedup 10.7 -> 3.43 (-68%),
# tokens/$ vs N1 19.9 -> 3.37 (-83%), vs V100 7.04 -> 1.03 (-85%); T-MAC over llama.cpp
# 4.0 -> 4.85 (+21%). The test pins the measured values so a change is noticed.
@pytest.mark.parametrize("cid,measured", [
    ("sail-speedup-n1", 3.43), ("sail-tpd-n1", 3.37), ("sail-tpd-v100", 1.03),
    ("tmac-speedup-llamacpp", 4.85)])
def test_known_misses_stay_put(cid, measured):
    res = _claim(cid)
    assert CLAIMS[cid]["known_miss"]
    assert res["predicted"] == pytest.approx(measured, rel=0.03)
    assert res["predicted"] > 1.0  # the LUT design still wins


def _area_ratio(fmt_add, fmt_bits):
    """Multiplier-based / LUT area for a ternary core with activations of one format."""
    lut, mac = pm.hardware.preset("ternary-lut"), pm.hardware.preset("ternary-mac")

    def fmt(hw):
        return eqx.tree_at(
            lambda h: (h.adder_area, h.entry_bits, h.multiplier_area), hw,
            (jnp.asarray(HOROWITZ_AREA_UM2[fmt_add] * 1e-12), jnp.asarray(float(fmt_bits)),
             jnp.asarray(2.0 * fmt_bits * float(hw.mux_area_per_bit))))
    return float(fmt(mac).datapath_area() / fmt(lut).datapath_area())


def test_lut_reuse_pays_off_for_fp16_not_small_ints():
    """Geens et al.: LUT reuse wins for FP16 activations, much less for small integers.
    Measured area ratio MAC/LUT: fp16 2.01x, int8 0.41x (LUT loses); datapath energy
    MAC/LUT (Horowitz adds, reads scaled by bits): see the printed numbers."""
    fp16 = _area_ratio("fp16_add", 16)
    int8 = _area_ratio("int8_add", 8)
    print(f"MAC/LUT area: fp16 {fp16:.2f}x, int8 {int8:.2f}x")
    assert fp16 > 1.5 and int8 < 1.0 and fp16 > 2 * int8
    # energy: the LUT saves adds (expensive in fp16); compare per-token datapath energy
    ops = pm.workloads.preset("bitnet-b1.58-3b").decode(1.0, 256.0, wbits=1.58)

    def e(name, add_pj, bits):
        hw = pm.hardware.preset(name)
        hw = eqx.tree_at(lambda h: (h.energy_per_add, h.energy_per_lookup), hw,
                         (jnp.asarray(add_pj * 1e-12), hw.energy_per_lookup * bits / 16.0))
        return float(pm.evaluate(hw, ops, hard=True).energy_breakdown()["lut"])
    gain16 = e("ternary-mac", 0.4, 16) / e("ternary-lut", 0.4, 16)
    gain8 = e("ternary-mac", 0.03, 8) / e("ternary-lut", 0.03, 8)
    print(f"MAC/LUT datapath energy: fp16 {gain16:.2f}x, int8 {gain8:.2f}x")
    assert gain16 > gain8


# ---------------------------------------------------------------- properties
@pytest.fixture(scope="module")
def ops7b():
    return pm.workloads.preset("llama-2-7b").decode(1.0, 1024.0, wbits=4.0)


def _tps(hw, ops, **kw):
    return float(pm.evaluate(hw, ops, **kw).tokens_per_s)


@pytest.mark.parametrize("name", ["sail", "tmac-m2-ultra", "ternary-lut"])
def test_gradients_finite_over_random_designs(name):
    hw = pm.hardware.preset(name)
    ops = pm.workloads.preset("bitnet-b1.58-3b").decode(4.0, 512.0, wbits=1.58)
    params, static = eqx.partition(hw, eqx.is_inexact_array)
    leaves, tdef = jax.tree.flatten(params)
    rng = np.random.default_rng(0)

    @jax.jit
    def grad(p):
        return jax.grad(lambda q: pm.evaluate(eqx.combine(q, static), ops).latency)(p)
    for _ in range(5):
        p = jax.tree.unflatten(tdef, [x * rng.uniform(0.5, 2.0) for x in leaves])
        g = grad(p)
        assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(g))


def test_tables_that_do_not_fit_cost_more():
    """Shrinking table SRAM is never faster; at batch 32 with g = 8 the tables spill."""
    # spilled lookups become gathers from L2: take a slow spill level to make it visible
    hw = eqx.tree_at(lambda h: h.spill_bandwidth, pm.hardware.preset("tmac-m2-ultra"),
                     jnp.asarray(20e9))
    ops = pm.workloads.preset("llama-2-7b").decode(32.0, 256.0, wbits=2.0)
    m = LUTMapping(group_size=jnp.asarray(8.0))
    times = []
    for cap in [1e3, 1e4, 1e5, 1e6, 1e7]:
        h = eqx.tree_at(lambda h: h.table_capacity, hw, jnp.asarray(cap))
        for hard in (False, True):
            times.append((cap, hard, float(pm.evaluate(h, ops, m, hard=hard).latency)))
    for hard in (False, True):
        t = [x[2] for x in times if x[1] == hard]
        assert all(a >= b * (1 - 1e-9) for a, b in zip(t, t[1:]))
        assert t[0] > 1.2 * t[-1]


@pytest.mark.parametrize("name", ["sail", "tmac-m2-ultra-1t"])
def test_more_weight_bits_never_faster(name):
    hw = pm.hardware.preset(name)
    wl = pm.workloads.preset("llama-2-7b")
    t = [float(pm.evaluate(hw, wl.decode(1.0, 256.0, wbits=b), hard=True).latency)
         for b in (1.0, 1.58, 2.0, 3.0, 4.0)]
    assert all(b >= a for a, b in zip(t, t[1:])), t
    assert t[-1] > t[0]


def test_group_size_trades_tables_for_lookups():
    """Larger g: fewer lookups, exponentially more table entries (a sweet spot exists)."""
    hw = pm.hardware.preset("tmac-m2-ultra-1t")
    ops = pm.workloads.preset("llama-2-7b").decode(8.0, 256.0, wbits=4.0)
    t = {g: float(pm.evaluate(hw, ops, LUTMapping(group_size=jnp.asarray(float(g))),
                              hard=True).latency) for g in (1, 2, 4, 8, 16)}
    best = min(t, key=t.get)
    assert best not in (1, 16), t


def test_jit_equals_eager_and_vmap(ops7b):
    hw = pm.hardware.preset("sail")
    eager = pm.evaluate(hw, ops7b).latency
    jitted = jax.jit(lambda h: pm.evaluate(h, ops7b).latency)(hw)
    np.testing.assert_allclose(float(eager), float(jitted), rtol=1e-5)
    params, static = eqx.partition(hw, eqx.is_inexact_array)
    batch = jax.tree.map(lambda x: jnp.stack([x, 2 * x, 0.5 * x]), params)
    lat = jax.vmap(lambda p: pm.evaluate(eqx.combine(p, static), ops7b).latency)(batch)
    assert lat.shape == (3,) and np.all(np.isfinite(np.asarray(lat)))
    np.testing.assert_allclose(float(lat[0]), float(eager), rtol=1e-5)


@pytest.mark.parametrize("name", ["sail", "tmac-jetson-agx-orin", "ternary-lut"])
def test_smooth_close_to_hard(name, ops7b):
    hw = pm.hardware.preset(name)
    ops = (pm.workloads.preset("bitnet-b1.58-3b").decode(1.0, 1024.0, wbits=1.58)
           if name == "ternary-lut" else ops7b)
    s, h = _tps(hw, ops), _tps(hw, ops, hard=True)
    assert s == pytest.approx(h, rel=0.05)


def test_bad_inputs_name_the_field():
    hw = pm.hardware.preset("tmac-m2-ultra")
    ops = pm.workloads.preset("llama-2-7b").decode(1.0, 256.0, wbits=2.0)
    with pytest.raises(pm.ModelInputError, match="group_size"):
        hw.check(ops, LUTMapping(group_size=jnp.asarray(0.5)))
    with pytest.raises(pm.ModelInputError, match="group_size"):
        eqx.tree_at(lambda h: h.group_size, hw, jnp.asarray(0.0)).check()
    with pytest.raises(pm.ModelInputError, match="act_bits"):
        pm.hardware.preset("ternary-lut").check(
            pm.workloads.preset("bitnet-b1.58-3b").decode(1.0, 256.0, wbits=1.58, abits=32.0))
    with pytest.raises(pm.ModelInputError, match="capacity"):
        pm.hardware.preset("tmac-raspberry-pi-5").check(
            pm.workloads.preset("llama-2-70b").decode(1.0, 256.0, wbits=4.0))
    with pytest.raises(pm.ModelInputError, match="lut.encoding"):
        pm.hardware.from_spec({**_spec("ternary-lut"), "lut": {
            **_spec("ternary-lut")["lut"], "encoding": "base-5"}}, "x")


def test_wide_weights_fall_back_to_host():
    """16-bit weights cannot be bit-planes of T-MAC's <= 4-bit tables: they run on the
    host vector units instead (no lookups)."""
    hw = pm.hardware.preset("tmac-m2-ultra-1t")
    ops = pm.workloads.preset("llama-2-7b").decode(1.0, 256.0, wbits=16.0)
    rep = pm.evaluate(hw, ops, hard=True)
    assert "lut" not in rep.bound_names()
    assert float(rep.energy_breakdown()["lut"]) == 0.0


def _spec(name):
    from perfmodel._spec import load_spec_file
    from perfmodel.hardware._registry import PRESET_DIR
    return load_spec_file(PRESET_DIR / f"{name}.toml")


def test_dataclass_fields_static():
    hw = pm.hardware.preset("ternary-lut")
    assert hw.encoding == "ternary" and hw.datapath == "lut"
    assert dataclasses.is_dataclass(hw)
