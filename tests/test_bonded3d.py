"""Hybrid-bonded 3D DRAM-on-logic family (ELMoE-3D): headlines, physics, JAX properties."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import perfmodel as pm
from claim_cache import ROWS, claim_result
from perfmodel.hardware._bonded3d import Bonded3D, harmonic, zipf_hit_rate
from perfmodel.workloads._speculative import expected_tokens

CLAIMS = {i: r for i, r in ROWS.items() if r["file"] == "bonded3d.csv"}
HW = pm.hardware.preset("elmoe-3d")
MOE = pm.workloads.preset("qwen3-30b-a3b")
OPS = MOE.decode(4.0, 1024.0, wbits=8.0)


def _claim(cid):
    res = claim_result(cid)
    print(f"{cid}: published {res['published']} predicted {res['predicted']:.3f} "
          f"error {res['rel_error']:+.1%} (tolerance {res['tolerance']:.0%})")
    return res


def test_energy_vs_prior_accelerator():
    """Mean over batch 1-16 on the paper's four models (Qwen3-30B-A3B, GLM-4.7-Flash,
    DeepSeek-V2-Lite at W8A8, GPT-OSS-20B with MXFP4 experts), within 20%: energy vs prior
    (HB-xPU) 1.4x -> 1.21x (-13.4%). Nothing is fitted."""
    res = _claim("elmoe3d-energy-vs-prior")
    assert abs(res["rel_error"]) <= res["tolerance"]
    assert res["rel_error"] == pytest.approx(-0.134, abs=0.02)


@pytest.mark.parametrize("cid,error", [("elmoe3d-speedup-vs-xpu", -0.372),
                                       ("elmoe3d-energy-vs-xpu", -0.224),
                                       ("elmoe3d-speedup-vs-prior", -0.424)])
def test_known_misses(cid, error):
    """Known misses (recorded in bonded3d.csv with reasons): speedup vs xPU 6.6x -> 4.15x
    (-37.2%); energy vs xPU 4.4x -> 3.41x (-22.4%); speedup vs prior 2.2x -> 1.27x
    (-42.4%). The test pins the measured error so a change is noticed."""
    res = _claim(cid)
    assert CLAIMS[cid]["known_miss"]
    assert res["rel_error"] == pytest.approx(error, abs=0.02)


def test_verify_reads_low_bits_off_package():
    """A cache that holds only the top 4 of 8 weight bits serves at most half of a
    cached expert's bytes from the stack, even when every expert fits: plain decode with
    all experts cached still reads the other half from LPDDR (a whole-expert cache reads
    only the bandwidth-balancing share there)."""
    ops = MOE.decode(1.0, 1024.0, wbits=8.0, abits=8.0)
    big = eqx.tree_at(lambda h: h.dram_capacity, pm.hardware.preset("elmoe-3d-nmp"),
                      jnp.asarray(64e9))
    half = eqx.tree_at(lambda h: h.cache_bits, big, jnp.asarray(4.0))  # of 8 bits
    ex = np.array([k in ("moe_up", "moe_down") for k in ops.kinds])
    expert_bytes = float(np.sum(np.asarray(ops.weight_bytes * ops.count)[ex]))
    off = {}
    for name, hw in (("whole", big), ("half", half)):
        rep = pm.evaluate(hw, ops, hard=True)
        off[name] = float(rep.energy_terms[:, 2].sum()) / (8.0 * float(hw.offchip.energy_per_bit))
    # whole experts: reads split so both tiers finish together (the LPDDR's share)
    bw_3d = float(big.array_bandwidth * big.dram_odds / (1 + big.dram_odds) * big.derate())
    bw_off = float(big.offchip.bandwidth * big.offchip.efficiency)
    assert off["whole"] == pytest.approx(expert_bytes * bw_off / (bw_3d + bw_off), rel=0.05)
    assert off["half"] == pytest.approx(0.5 * expert_bytes, rel=0.02)


def _scaled(hw, key):
    leaves, tree = jax.tree_util.tree_flatten(hw)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(tree, [
        leaf * jax.random.uniform(k, (), minval=0.5, maxval=2.0) for leaf, k in
        zip(leaves, keys)])


def _latency(hw, ops=OPS, hard=False):
    return pm.evaluate(hw, ops, hard=hard, check=False).latency


def test_finite_gradients_over_random_designs():
    grad = jax.jit(jax.grad(lambda h: _latency(h) + pm.evaluate(h, OPS, check=False).energy))
    for i in range(5):
        hw = _scaled(HW, jax.random.PRNGKey(i))
        hw.check(OPS)
        g = grad(hw)
        assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(g))


def test_finer_pitch_never_less_bandwidth():
    pitches = jnp.geomspace(40e-6, 0.5e-6, 40)
    bw = jax.vmap(lambda p: eqx.tree_at(lambda h: h.bond_pitch, HW, p).peak_bandwidth())(
        pitches)
    assert np.all(np.diff(np.asarray(bw)) >= -1e-6 * np.asarray(bw[:-1]))
    lat = [float(_latency(eqx.tree_at(lambda h: h.bond_pitch, HW, p))) for p in pitches[::8]]
    assert np.all(np.diff(lat) <= 1e-9)


def test_bigger_expert_cache_never_slower():
    """Plain decode (the draft of Elastic-SD reads the cached experts, so with a fixed
    acceptance a bigger cache makes the draft slower; see docs/families/bonded3d.md)."""
    ops = MOE.decode(1.0, 1024.0, wbits=8.0)
    nmp = pm.hardware.preset("elmoe-3d-nmp")
    caps = jnp.linspace(5e9, 60e9, 30)
    lat = jax.vmap(lambda c: _latency(eqx.tree_at(lambda h: h.dram_capacity, nmp, c), ops))(
        caps)
    assert np.all(np.diff(np.asarray(lat)) <= 1e-9)
    assert float(lat[-1]) < float(lat[0])
    hits = zipf_hit_rate(jnp.linspace(0.0, 8.0, 50), 8.0, 1.2)
    assert np.all(np.diff(np.asarray(hits)) > 0) and float(hits[-1]) == pytest.approx(1.0)
    assert float(harmonic(10.0, 1.0)) == pytest.approx(sum(1 / i for i in range(1, 11)),
                                                       rel=0.01)


def test_power_density_limit_respected():
    for scale in (1.0, 4.0, 16.0):  # more MACs -> more throttling, never more power
        hw = eqx.tree_at(lambda h: h.mac_units, HW, HW.mac_units * scale)
        hw = pm.hardware._bonded3d.Bonded3D(**{**{f: getattr(hw, f) for f in
                                                  hw.__dataclass_fields__},
                                               "speculative": False})
        for hard in (False, True):
            rep = pm.evaluate(hw, OPS, hard=hard)
            stack_energy = (float(jnp.sum(rep.energy_terms[:, :2]))
                            + float(hw.static_power * rep.latency))
            density = stack_energy / float(rep.latency) / float(hw.area())
            assert density <= float(hw.power_density_limit) * 1.001
    assert float(HW.derate()) <= 1.0


def test_speculation_tokens_and_zero_acceptance():
    for g in (1, 4, 7):
        for a in (0.0, 0.5, 0.9):
            assert float(expected_tokens(g, a)) == pytest.approx((1 - a ** (g + 1)) / (1 - a))
    plain = MOE.decode(2.0, 512.0, wbits=8.0)
    spec = MOE.speculative_decode(2.0, 512.0, wbits=8.0, draft_wbits=2.0, draft_length=4,
                                  acceptance=0.7)
    assert float(spec.tokens) == pytest.approx(2.0 * (1 - 0.7 ** 5) / 0.3, rel=1e-5)
    spec0 = MOE.speculative_decode(2.0, 512.0, wbits=8.0, draft_wbits=2.0, draft_length=4,
                                   acceptance=0.0)
    nmp = pm.hardware.preset("elmoe-3d-nmp")
    for hw in (nmp, pm.hardware.preset("elmoe-3d-xpu")):
        assert float(pm.evaluate(hw, spec0).tokens_per_s) <= float(
            pm.evaluate(hw, plain).tokens_per_s)
    zero = eqx.tree_at(lambda h: h.acceptance_odds, HW, jnp.asarray(1e-9))
    assert float(pm.evaluate(zero, plain).tokens_per_s) <= float(
        pm.evaluate(nmp, plain).tokens_per_s)


def test_jit_equals_eager_and_vmap():
    eager = pm.evaluate(HW, OPS)
    jitted = jax.jit(lambda h: pm.evaluate(h, OPS, check=False))(HW)
    assert float(jitted.latency) == pytest.approx(float(eager.latency), rel=1e-5)
    assert float(jitted.energy) == pytest.approx(float(eager.energy), rel=1e-5)
    designs = jax.vmap(lambda k: _scaled(HW, k))(jax.random.split(jax.random.PRNGKey(3), 8))
    lat = jax.vmap(lambda h: _latency(h))(designs)
    one = _latency(jax.tree_util.tree_map(lambda x: x[2], designs))
    assert lat.shape == (8,) and float(lat[2]) == pytest.approx(float(one), rel=1e-5)


def test_smooth_close_to_hard():
    """Measured +0.03% (Qwen3-30B-A3B, batch 1 and 16). The bound is the worst case of
    soft_min (8.3% below the minimum at a tie): the cached-expert split
    soft_min(hit x held, balanced share) sat near its tie with Mixtral-8x7B (+7.5%)."""
    for b in (1.0, 16.0):
        ops = MOE.decode(b, 1024.0, wbits=8.0)
        s, h = float(_latency(HW, ops)), float(_latency(HW, ops, hard=True))
        assert s == pytest.approx(h, rel=0.09)


def test_bad_input_errors_name_the_field():
    with pytest.raises(pm.ModelInputError, match="bond_pitch"):
        eqx.tree_at(lambda h: h.bond_pitch, HW, jnp.asarray(0.0)).check()
    with pytest.raises(pm.ModelInputError, match="bond_pitch"):
        eqx.tree_at(lambda h: h.bond_pitch, HW, jnp.asarray(-1e-6)).check()
    with pytest.raises(pm.ModelInputError, match="cache_bits"):
        eqx.tree_at(lambda h: h.cache_bits, HW, jnp.asarray(0.0)).check()
    with pytest.raises(pm.ModelInputError, match="draft_length"):
        MOE.speculative_decode(1.0, 512.0, wbits=8.0, draft_length=0)
    for a in (-0.1, 1.0, 1.5):
        with pytest.raises(pm.ModelInputError, match="acceptance"):
            MOE.speculative_decode(1.0, 512.0, wbits=8.0, acceptance=a)
    with pytest.raises(pm.ModelInputError, match="draft_wbits"):
        MOE.speculative_decode(1.0, 512.0, wbits=8.0, draft_wbits=8.0)
    with pytest.raises(pm.ModelInputError, match="pitch"):
        pm.hardware.from_spec({**_spec(), "bond": {**_spec()["bond"], "pitch_um": 0.0}},
                              "x")
    assert isinstance(HW, Bonded3D)


def _spec():
    from perfmodel._spec import load_spec_file
    from perfmodel.hardware._registry import PRESET_DIR

    return load_spec_file(PRESET_DIR / "elmoe-3d.toml")
