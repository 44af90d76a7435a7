"""`perfmodel.sensitivity`: elasticities by readable name and unit, ranked; checked against
an identity of dimensional analysis and against finite differences in float64."""

import functools
import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_cli

import perfmodel as pm
from perfmodel._sensitivity import _describe, _unit
from perfmodel._spec import load_spec_file
from perfmodel.hardware._registry import PRESET_DIR

RATE_UNITS = ("/s", "Hz")   # GB/s, TFLOP/s, Gbit/s, GOP/s, MHz, GHz: 1 / time
TIME_UNITS = ("us", "ns")


def _a100_decode():
    return pm.workloads.preset("llama-2-7b").decode(1.0, 1024.0)


@functools.cache
def _rows(preset, metric="latency"):
    """Rows of one (preset, metric) on a small decode, computed once per process."""
    if preset == "a100-80gb":
        ops = _a100_decode()
    elif preset == "neupims":
        ops = pm.workloads.preset("gpt3-6.7b").decode(32.0, 256.0)
    else:
        ops = pm.workloads.preset("gpt2").decode(1.0, 512.0)
    return pm.sensitivity(pm.hardware.preset(preset), ops, metric)


def _by_name(rows):
    return {r["name"]: r for r in rows}


def _euler(rows):
    """sum of rate elasticities - sum of time elasticities."""
    rates = sum(r["elasticity"] for r in rows if r["unit"].endswith(RATE_UNITS))
    times = sum(r["elasticity"] for r in rows if r["unit"] in TIME_UNITS)
    return rates - times


def test_memory_bound_decode_on_a100():
    """Batch-1 decode streams the weights: DRAM bandwidth and efficiency lead with equal
    elasticities (they act only as their product), near -1; the per-kernel fixed times
    take the rest, so the three sum to -1."""
    rows = _rows("a100-80gb")
    assert {rows[0]["name"], rows[1]["name"]} == {"dram.bandwidth", "dram.efficiency"}
    e = _by_name(rows)
    bw = e["dram.bandwidth"]["elasticity"]
    assert -1.0 < bw < -0.75
    assert e["dram.efficiency"]["elasticity"] == pytest.approx(bw, rel=1e-4)
    fixed = e["launch_overhead"]["elasticity"] + e["dram_latency"]["elasticity"]
    assert bw - fixed == pytest.approx(-1.0, abs=0.01)
    # zero elasticities last, ranked by magnitude before them
    mags = [abs(r["elasticity"]) for r in rows]
    assert mags == sorted(mags, reverse=True)
    assert e["energy_per_flop"]["elasticity"] == 0.0 and rows[-1]["elasticity"] == 0.0


@pytest.mark.parametrize("preset", ["a100-80gb", "aim", "neupims"])
def test_latency_is_homogeneous_in_time(preset):
    """Dimensional analysis: scaling every rate (B/s, FLOP/s, Hz) by s and every time
    parameter by 1/s scales latency by 1/s, so sum(e_rate) - sum(e_time) = -1 exactly
    (Euler's theorem). Holds only if every rate and time leaf carries its unit."""
    assert _euler(_rows(preset)) == pytest.approx(-1.0, abs=1e-4)


def test_values_in_readable_units_and_names():
    """Values are the spec file's numbers (GB/s, fractions as written, not odds)."""
    spec = load_spec_file(PRESET_DIR / "a100-80gb.toml")
    e = _by_name(_rows("a100-80gb"))
    assert e["dram.bandwidth"]["unit"] == "GB/s"
    assert e["dram.bandwidth"]["value"] == pytest.approx(spec["memory"]["dram"]["bandwidth_GB_s"],
                                                         rel=1e-6)
    assert e["dram.efficiency"]["unit"] == "fraction"
    assert e["dram.efficiency"]["value"] == pytest.approx(spec["efficiency"]["dram"], rel=1e-5)
    assert e["compute_efficiency"]["value"] == pytest.approx(spec["efficiency"]["compute"],
                                                             rel=1e-5)
    assert e["launch_overhead"]["unit"] == "us"
    assert e["launch_overhead"]["value"] == pytest.approx(
        spec["efficiency"]["launch_overhead_us"], rel=1e-6)
    assert e["peak_flops.fp16"]["value"] == pytest.approx(spec["peak"]["fp16"], rel=1e-6)
    assert not any("odds" in n for n in e)


def _to64(tree):
    return jax.tree.map(lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x, tree)


def test_elasticities_match_finite_differences_float64():
    """In float64, the elasticity to DRAM bandwidth and to the DRAM efficiency (as a
    fraction: f -> f (1 +- h), odds recomputed) equal central differences of log latency
    in log parameter to 1e-3."""
    with jax.enable_x64(True):
        hw = _to64(pm.hardware.preset("a100-80gb"))
        ops = _a100_decode()
        e = _by_name(pm.sensitivity(hw, ops))
        h = 1e-4
        f = hw.dram.efficiency
        designs = [eqx.tree_at(lambda t: t.dram.bandwidth, hw, hw.dram.bandwidth * (1 + s * h))
                   for s in (1, -1)]
        designs += [eqx.tree_at(lambda t: t.dram.odds, hw,
                                f * (1 + s * h) / (1 - f * (1 + s * h))) for s in (1, -1)]
        params = [eqx.partition(d, eqx.is_inexact_array)[0] for d in designs]
        static = eqx.partition(hw, eqx.is_inexact_array)[1]
        stacked = jax.tree.map(lambda *x: jnp.stack(x), *params)
        lat = jax.jit(jax.vmap(lambda p: pm.evaluate(eqx.combine(p, static), ops).latency))(
            stacked)
        log_lat = np.log(np.asarray(lat))
        step = math.log1p(h) - math.log1p(-h)
        assert e["dram.bandwidth"]["elasticity"] == pytest.approx(
            (log_lat[0] - log_lat[1]) / step, abs=1e-3)
        assert e["dram.efficiency"]["elasticity"] == pytest.approx(
            (log_lat[2] - log_lat[3]) / step, abs=1e-3)
        assert e["dram.efficiency"]["value"] == pytest.approx(float(f), rel=1e-12)


def test_system_units_are_named():
    """A heterogeneous System's leaves carry their unit's name; both units act."""
    rows = _rows("neupims")
    names = {r["name"] for r in rows}
    assert {"npu.dram.bandwidth", "pim.channels", "pim.bandwidth_efficiency",
            "link_bandwidth"} <= names
    assert all(n.split(".")[0] in ("npu", "pim") or "." not in n for n in names)
    assert any(r["name"].startswith("pim.") and r["elasticity"] != 0 for r in rows)
    assert all(math.isfinite(r["elasticity"]) for r in rows)


def test_dram_pim_preset():
    rows = _rows("aim")
    e = _by_name(rows)
    assert e["channels"]["unit"] == "" and e["tccd"]["unit"] == "ns"
    assert e["pim_clock"]["unit"] == "MHz"
    assert 0 < e["bandwidth_efficiency"]["value"] < 1
    assert all(math.isfinite(r["elasticity"]) for r in rows)


def test_every_preset_leaf_has_a_unit():
    """No leaf of any preset falls back to SI (an unknown name): the unit table covers
    every family, and the Euler test above relies on it."""
    unknown = {}
    for name in pm.hardware.list_presets():
        hw = pm.hardware.preset(name)
        params = eqx.partition(hw, eqx.is_inexact_array)[0]
        for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
            _, owner, parent, field = _describe(hw, path)
            if not field.endswith("odds") and _unit(owner, parent, field)[0] == "SI":
                unknown.setdefault(field, name)
    assert not unknown


def test_unknown_metric_is_one_sentence():
    hw, ops = pm.hardware.preset("a100-80gb"), _a100_decode()
    with pytest.raises(pm.ModelInputError, match=r"metric 'latncy'.*valid: .*latency"):
        pm.sensitivity(hw, ops, "latncy")
    with pytest.raises(pm.ModelInputError, match=r"metric 'op_time'"):
        pm.sensitivity(hw, ops, "op_time")


# --------------------------------------------------------------------------- CLI


def test_cli_json(capsys):
    rc, out, err = run_cli(capsys, "sensitivity", "--hardware", "a100-80gb", "--workload",
                        "llama-2-7b", "--context", "1024", "--top", "5", "--json")
    assert rc == 0, err
    rows = json.loads(out)
    assert len(rows) == 5 and all(set(r) == {"name", "value", "unit", "elasticity"}
                                  for r in rows)
    assert {rows[0]["name"], rows[1]["name"]} == {"dram.bandwidth", "dram.efficiency"}
    rc, out, err = run_cli(capsys, "sensitivity", "--hardware", "a100-80gb", "--workload",
                        "llama-2-7b", "--context", "1024", "--top", "3")
    assert rc == 0, err
    assert "dram.bandwidth" in out and "GB/s" in out and "elasticity" in out


def test_cli_bad_metric_exits_2(capsys):
    rc, out, err = run_cli(capsys, "sensitivity", "--hardware", "a100-80gb", "--workload",
                        "llama-2-7b", "--metric", "speed")
    assert rc == 2 and out == ""
    assert len(err.splitlines()) == 1 and "'speed'" in err and "Traceback" not in err
