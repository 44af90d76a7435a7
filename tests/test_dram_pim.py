"""DRAM-PIM family (hardware/_dram_pim.py): claims, physics properties, jit/vmap/grad,
bad input. Measured errors are stated next to each claim (fit/data/claims/dram_pim.csv)."""

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import perfmodel as pm
from claim_cache import ROWS, claim_result
from perfmodel import ModelInputError
from perfmodel._bench import random_designs
from perfmodel.hardware._dram_pim import ENERGY_COMPONENTS, DramPim, DramPimMapping

PRESETS = ["hbm-pim", "hbm-pim-x4", "aim", "pim-gpt", "attacc-pim-bank", "attacc-pim-bg",
           "attacc-pim-buffer", "duplex-logic-pim"]
CLAIMS = {i: r for i, r in ROWS.items() if r["file"] == "dram_pim.csv"}


def _ops(name="gpt2", batch=1.0, context=512.0):
    return pm.workloads.preset(name).decode(batch, context)


# ---------------------------------------------------------------------------- claims
# Measured (hard mode, 2026-11-29): pimgpt-gpu-speedup-min 41.1x vs 41x (+0.1 %, channels
# fitted to it); hbmpim-peak-tflops 1.23 vs 1.2 TFLOPS and aim-peak-tflops 16.4 vs 16
# TFLOPS (+2.4 % each; both titles are MAC peaks, metric peak_tflops). Known misses
# (known_miss column): pimgpt-gpu-speedup-max -30.5 %, pimgpt-cpu-speedup-min/max
# -93.3 / -94.6 %, pimgpt-gpu-energy-min/max -82.6 / -89.2 %, pimgpt-cpu-energy-min/max
# -79.0 / -87.3 %, hbmpim-gemv-gpu-speedup -29.1 %.
@pytest.mark.parametrize("claim_id", sorted(CLAIMS))
def test_claim(claim_id):
    row = CLAIMS[claim_id]
    res = claim_result(claim_id)
    print(f"{claim_id}: predicted {res['predicted']:.4g} vs published {res['published']:.4g} "
          f"({res['rel_error']:+.1%}, tolerance {res['tolerance']:.0%})")
    if not row["known_miss"]:
        assert res["passed"], res
    else:  # the recorded miss is the measured one (within 3 percentage points)
        recorded = float(row["known_miss"].split("measured ")[1].split("%")[0]) / 100
        assert abs(res["rel_error"] - recorded) < 0.03, (res["rel_error"], recorded)


def test_peaks_match_datasheets():
    """HBM-PIM 1.2 TFLOPS per cube; AiM 1 TFLOPS per chip (16 chips); AttAcc internal
    bandwidth 16 / 8 / 1 x the 670.4 GB/s per stack external."""
    assert pm.hardware.preset("hbm-pim").peak_flops / 1e12 == pytest.approx(1.2, rel=0.05)
    assert pm.hardware.preset("aim").peak_flops / 16 / 1e12 == pytest.approx(1.0, rel=0.05)
    ext = 5 * 670.4e9
    for name, scale in (("attacc-pim-bank", 16), ("attacc-pim-bg", 8),
                        ("attacc-pim-buffer", 1)):
        hw = pm.hardware.preset(name)
        assert hw.internal_bandwidth / ext == pytest.approx(scale, rel=0.02)
        assert hw.external_bandwidth / ext == pytest.approx(1.0, rel=0.02)


def test_gemv_reaches_a_fraction_of_peak():
    """The peak rows compare MAC peaks; a large GEMV reaches less: HBM-PIM 1.10 of 1.23
    TFLOPS (refresh, command overheads), AiM 8.5 of 16.4 (all-bank ACT/PRE per 2 KB row
    read in 64 ns). Neither fraction is published; the bounds pin the model's story."""
    for name, n, low, high in (("hbm-pim", 8192, 0.85, 0.95), ("aim", 16384, 0.45, 0.60)):
        hw = pm.hardware.preset(name)
        ops = pm.workloads.gemm(1, n, n, bits=16)
        rep = pm.evaluate(hw, ops, hard=True)
        frac = float(ops.total_flops / rep.latency / hw.peak_flops)
        assert low < frac < high, (name, frac)


# ---------------------------------------------------------------------------- transforms
def test_jit_equals_eager():
    hw, ops = pm.hardware.preset("pim-gpt"), _ops()
    for hard in (False, True):
        eager = pm.evaluate(hw, ops, hard=hard)
        jitted = jax.jit(lambda h, o: pm.evaluate(h, o, hard=hard, check=False))(hw, ops)
        np.testing.assert_allclose(float(jitted.latency), float(eager.latency), rtol=1e-5)
        np.testing.assert_allclose(float(jitted.energy), float(eager.energy), rtol=1e-5)


def test_vmap_and_finite_gradients_over_random_designs():
    ops = _ops("llama-2-7b", 4.0, 1024.0)
    for name in ("attacc-pim-bank", "duplex-logic-pim"):
        hw = pm.hardware.preset(name)
        params, static = random_designs(hw, 32, jax.random.PRNGKey(0))

        @jax.jit
        def tokens_per_j(p):
            rep = pm.evaluate(eqx.combine(p, static), ops, check=False)
            return rep.tokens / rep.energy

        vals, grads = jax.jit(jax.vmap(jax.value_and_grad(tokens_per_j)))(params)
        assert vals.shape == (32,) and np.all(np.isfinite(vals)) and np.all(vals > 0)
        for g in jax.tree.leaves(grads):
            assert np.all(np.isfinite(np.asarray(g)))
        if name != "attacc-pim-bank":
            continue
        for i in (0, 17):  # vmap equals a loop
            one = jax.tree.map(lambda x: x[i], params)
            np.testing.assert_allclose(float(tokens_per_j(one)), float(vals[i]), rtol=1e-5)


def test_mapping_gradient_and_hardening():
    hw, ops = pm.hardware.preset("aim"), _ops("gpt2-medium")

    @functools.partial(jax.jit, static_argnums=1)
    def lat(s, hard=False):
        return pm.evaluate(hw, ops, DramPimMapping(k_split_log2=s), hard=hard,
                           check=False).latency

    g = jax.grad(lat)(jnp.asarray(1.3))
    assert np.isfinite(float(g))
    # hard mode rounds the split: 1.3 -> 1
    assert float(lat(jnp.asarray(1.3), True)) == pytest.approx(float(lat(jnp.asarray(1.0),
                                                                         True)))
    # splitting k multiplies the partial sums read out over the bus (more bits cross
    # to the host side) while it shortens per-bank rows: a real trade-off
    def crossing(s):
        rep = pm.evaluate(hw, ops, DramPimMapping(k_split_log2=jnp.asarray(s)), hard=True)
        return rep.energy_breakdown()["interposer"]

    assert crossing(4.0) > crossing(0.0)
    assert float(lat(jnp.asarray(4.0), True)) != float(lat(jnp.asarray(0.0), True))


# ---------------------------------------------------------------------------- physics
def _scaled(hw, field, factor):
    return eqx.tree_at(lambda h: getattr(h, field), hw, getattr(hw, field) * factor)


@pytest.mark.parametrize("name", ["aim", "attacc-pim-bg", "duplex-logic-pim"])
def test_more_banks_and_faster_clock_never_slower(name):
    hw, ops = pm.hardware.preset(name), _ops("gpt2-medium")
    for field in ("banks", "pim_clock"):
        lats = [float(pm.evaluate(_scaled(hw, field, f), ops, hard=hard).latency)
                for hard in (False, True) for f in (0.5, 0.75, 1.0, 1.5, 2.0)]
        for mode in (lats[:5], lats[5:]):
            assert all(b <= a * (1 + 1e-6) for a, b in zip(mode, mode[1:])), (field, mode)


def test_batch_crossover_gpu_wins_at_high_batch():
    """PIM re-streams weights per token (op/B = batch): its tokens/s advantage over an
    A100 shrinks with batch and the GPU wins at large batch."""
    pim, gpu = pm.hardware.preset("attacc-pim-bank"), pm.hardware.preset("a100-80gb")
    wl = pm.workloads.preset("llama-2-7b")
    ratios = []
    for b in (1.0, 4.0, 16.0, 64.0):
        ops = wl.decode(b, 512.0)
        ratios.append(float(pm.evaluate(pim, ops, hard=True).tokens_per_s
                            / pm.evaluate(gpu, ops, hard=True).tokens_per_s))
    assert ratios[0] > 1.0, ratios
    assert all(b < a for a, b in zip(ratios, ratios[1:])), ratios
    assert ratios[-1] < 1.0, ratios


def test_energy_split_by_dram_level():
    for name, far in (("aim", False), ("attacc-pim-bg", False), ("attacc-pim-buffer", True)):
        rep = pm.evaluate(pm.hardware.preset(name), _ops(), hard=True)
        e = rep.energy_breakdown()
        assert set(ENERGY_COMPONENTS) <= set(e)
        assert all(v >= 0 for v in e.values())
        assert e["cell"] > 0 and e["mac"] > 0 and e["host"] > 0 and e["interposer"] > 0
    # the farther the PIM units sit, the more each streamed bit costs
    per_bit = {}
    for name in ("attacc-pim-bank", "attacc-pim-bg", "attacc-pim-buffer"):
        rep = pm.evaluate(pm.hardware.preset(name), _ops(), hard=True)
        per_bit[name] = float(jnp.sum(rep.energy_terms[:, :4]))
    assert per_bit["attacc-pim-bank"] < per_bit["attacc-pim-bg"] < per_bit["attacc-pim-buffer"]


def test_smooth_close_to_hard():
    for name in PRESETS:
        hw, ops = pm.hardware.preset(name), _ops()
        s = pm.evaluate(hw, ops).latency
        h = pm.evaluate(hw, ops, hard=True).latency
        assert abs(float(s / h) - 1.0) < 0.03, name


# ---------------------------------------------------------------------------- bad input
def test_zero_banks_is_a_clear_error():
    hw = eqx.tree_at(lambda h: h.banks, pm.hardware.preset("aim"), jnp.asarray(0.0))
    with pytest.raises(ModelInputError, match="banks"):
        pm.evaluate(hw, _ops())


def test_zero_banks_in_spec_is_a_clear_error():
    import tomllib

    from perfmodel.hardware._registry import PRESET_DIR, from_spec
    data = tomllib.loads((PRESET_DIR / "aim.toml").read_text())
    data["organization"]["banks"] = 0
    with pytest.raises(ModelInputError, match="banks"):
        from_spec(data, "aim.toml")


def test_matrix_that_does_not_fit_names_capacity():
    with pytest.raises(ModelInputError, match="capacity"):
        pm.evaluate(pm.hardware.preset("hbm-pim"), _ops("llama-2-7b"))


def test_bad_placement_and_bits():
    hw = pm.hardware.preset("aim")
    with pytest.raises(ModelInputError, match="placement"):
        dataclasses.replace(hw, placement="subarray").check()
    with pytest.raises(ModelInputError, match="bit-width"):
        pm.evaluate(hw, pm.workloads.gemm(1.0, 64.0, 64.0, bits=32.0))
    assert isinstance(hw, DramPim)


def test_logic_die_input_crosses_each_stack_once():
    """Input broadcast (overhead term): in-bank PIM sends a one-group GEMV's input over
    every channel bus (act_in / B_channel); logic-die PIM over each stack's interface
    once (act_in x stacks / channels / B_channel), so more stacks cost more bus time."""
    ops = pm.workloads.gemm(1.0, 4096.0, 4096.0, bits=16)   # groups = 1
    act_in = float(ops.act_in_bytes[0])

    def bus(hw):  # overhead minus launches and the readout
        c = hw.cost(ops, hard=True)
        readout = float(ops.act_out_bytes[0] + ops.kv_write_bytes[0]) / float(hw.channels)
        return (float(c.overhead[0]) - float(ops.launches[0] * hw.launch_overhead)
                - readout / float(hw.channel_bandwidth))

    bank, logic = pm.hardware.preset("attacc-pim-bank"), pm.hardware.preset("attacc-pim-buffer")
    b_ch = float(bank.channel_bandwidth)
    assert bus(bank) == pytest.approx(act_in / b_ch, rel=1e-5)
    assert bus(logic) == pytest.approx(act_in * 5 / 160 / b_ch, rel=1e-5)
    two = eqx.tree_at(lambda h: h.stacks, logic, jnp.asarray(10.0))
    assert bus(two) == pytest.approx(2 * bus(logic), rel=1e-5)


def test_more_stacks_than_channels_is_a_clear_error():
    hw = eqx.tree_at(lambda h: h.stacks, pm.hardware.preset("attacc-pim-buffer"),
                     jnp.asarray(200.0))
    with pytest.raises(ModelInputError, match=r"stacks = 200 .*channels = 160"):
        hw.check()


def test_attention_imbalance_slows_attention_rows_only():
    """organization.attention_imbalance divides the utilisation of attention rows only
    (the busiest channel sets their time); other rows and all energies are unchanged,
    and a value below 1 is refused, naming the field."""
    from perfmodel._spec import load_spec_file
    from perfmodel.hardware._registry import PRESET_DIR

    pim = pm.hardware.preset("neupims-pim")
    flat = dataclasses.replace(pim, attention_imbalance=1.0)
    ops = pm.workloads.preset("gpt3-6.7b").decode(64.0, 512.0, attention="standard")
    a, b = (pm.evaluate(h, ops, hard=True) for h in (pim, flat))
    attn = np.array([k in ("attn_score", "attn_value") for k in ops.kinds])
    ta, tb = np.asarray(a.time_terms), np.asarray(b.time_terms)
    np.testing.assert_allclose(ta[attn][:, :3], pim.attention_imbalance * tb[attn][:, :3],
                               rtol=1e-6)
    assert pim.attention_imbalance > 1.0
    np.testing.assert_allclose(ta[~attn], tb[~attn], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(a.energy_terms), np.asarray(b.energy_terms),
                               rtol=1e-6)
    spec = load_spec_file(PRESET_DIR / "neupims-pim.toml")
    spec["organization"] = {**spec["organization"], "attention_imbalance": 0.9}
    with pytest.raises(pm.ModelInputError, match="attention_imbalance"):
        pm.hardware.from_spec(spec, "x")
