"""Hardware presets: they load, every number is sourced, datasheet peaks are right, and
every float leaf can be scaled by [0.5, 2] and stays a valid design."""

import copy
import math
import pathlib

import equinox as eqx
import jax
import numpy as np
import pytest

import perfmodel as pm
from perfmodel import ModelInputError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PRESET_DIR = pathlib.Path(pm.hardware.__file__).parent / "presets"
NAMES = pm.hardware.list_presets()
XPU_NAMES = [n for n in NAMES if isinstance(pm.hardware.preset(n), pm.hardware.XPU)]
SOURCE_PREFIXES = ("http", "github:", "assumed", "fitted")


def _spec(name):
    return tomllib.loads((PRESET_DIR / f"{name}.toml").read_text())


def _resolved_spec(name):
    """The spec with its ``extends`` parent merged in (what the loader sees)."""
    from perfmodel.hardware._registry import resolve_extends
    return resolve_extends(_spec(name), name)


def _small_ops():
    """A workload every preset can hold (GPT-2 124M decode): for generic checks."""
    return pm.workloads.preset("gpt2").decode(1.0, 512.0)


def _numeric_leaves(d, prefix=()):
    for k, v in d.items():
        path = prefix + (k,)
        if path == ("sources",):
            continue
        if isinstance(v, dict):
            yield from _numeric_leaves(v, path)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            yield ".".join(path), v


def test_presets_exist():
    assert {"a100-40gb", "a100-80gb", "h100-sxm", "h200", "neoverse-n1", "t4",
            "v100"} <= set(NAMES)
    assert NAMES == sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


@pytest.mark.parametrize("name", NAMES)
def test_preset_loads(name):
    hw = pm.hardware.preset(name)
    assert isinstance(hw, pm.AbstractTarget)
    assert hw.name == name
    assert _spec(name)["name"] == name  # the file's own name field equals its stem
    assert hw.title
    if isinstance(hw, pm.hardware.XPU):
        assert "fp32" in hw.datatypes
        assert hw.peak_flops.shape == (len(hw.datatypes),)
    # load() of the file path gives the same design as preset()
    again = pm.hardware.load(PRESET_DIR / f"{name}.toml")
    for a, b in zip(jax.tree.leaves(hw), jax.tree.leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", NAMES)
def test_every_number_has_a_source(name):
    spec = _resolved_spec(name)
    sources = spec.get("sources", {})
    assert sources, f"{name}: no [sources] table"
    values = dict(_numeric_leaves(spec))
    # schema_version is the file format's version, not a hardware quantity
    values.pop("schema_version")
    assert values
    missing = sorted(k for k in values if k not in sources)
    assert not missing, f"{name}: numbers without a [sources] entry: {missing}"
    bad = {k: sources[k] for k in values
           if not (isinstance(sources[k], str) and sources[k].startswith(SOURCE_PREFIXES))}
    assert not bad, f"{name}: sources must start with {SOURCE_PREFIXES}: {bad}"
    stale = sorted(k for k in sources if k not in values)
    assert not stale, f"{name}: [sources] entries for values that do not exist: {stale}"
    assert pm.hardware.spec_sources(name) == sources


def _peaks(hw):
    return {d: float(p) for d, p in zip(hw.datatypes, np.asarray(hw.peak_flops))}


MiB, GiB = 1024.0 ** 2, 1024.0 ** 3
# Dense (not sparse) datasheet values, SI: FLOP/s (or OP/s), B/s, B. DRAM capacities as
# the device reports them (nvidia-smi's total, binary MiB), not the marketed decimal "GB"
# (an "80 GB" A100 holds 81920 MiB); 40 GiB, 16 GiB and 48 GiB are assumed binary alike.
DATASHEET = {
    "a100-80gb": dict(fp32=19.5e12, fp16=312e12, int8=624e12, int4=1248e12,
                      dram_bw=2039e9, dram_cap=81920 * MiB, units=108),
    "a100-40gb": dict(fp32=19.5e12, fp16=312e12, int8=624e12, dram_bw=1555e9,
                      dram_cap=40 * GiB, units=108),
    "h100-sxm": dict(fp32=66.9e12, fp16=989.4e12, fp8=1978.9e12, int8=1978.9e12,
                     dram_bw=3350e9, dram_cap=81559 * MiB, units=132),
    "h200": dict(fp16=989.4e12, fp8=1978.9e12, dram_bw=4.8e12, dram_cap=143771 * MiB,
             units=132),
    "v100": dict(fp32=15.7e12, fp16=125e12, dram_bw=900e9, dram_cap=16 * GiB, units=80),
    "t4": dict(fp32=8.1e12, fp16=65e12, int8=130e12, int4=260e12, dram_bw=320e9,
               dram_cap=15360 * MiB, units=40),
    "rtx-a6000": dict(fp16=154.8e12, dram_bw=768e9, dram_cap=48 * GiB, units=84),
    "neoverse-n1": dict(dram_bw=204.8e9, units=80),
}


@pytest.mark.parametrize("name", sorted(DATASHEET))
def test_datasheet_values(name):
    hw = pm.hardware.preset(name)
    peaks = _peaks(hw)
    for key, want in DATASHEET[name].items():
        if key == "dram_bw":
            got = float(hw.dram.bandwidth)
        elif key == "dram_cap":
            got = float(hw.dram.capacity)
        elif key == "units":
            got = float(hw.units)
        else:
            assert key in peaks, f"{name} has no {key} datapath"
            got = peaks[key]
        assert got == pytest.approx(want, rel=1e-6), (name, key, got, want)


def test_datapaths():
    assert "int4" not in pm.hardware.preset("h100-sxm").datatypes  # Hopper: no INT4 tensor
    assert "int4" not in pm.hardware.preset("h200").datatypes
    assert "fp8" not in pm.hardware.preset("a100-80gb").datatypes  # Ampere: no FP8
    assert "fp8" not in pm.hardware.preset("v100").datatypes


@pytest.mark.parametrize("name", XPU_NAMES)
def test_peak_sanity(name):
    """Narrow datapaths beat fp32; physical ordering of the memory hierarchy."""
    hw = pm.hardware.preset(name)
    peaks = _peaks(hw)
    # every narrower datapath beats the fp32 vector path (not necessarily fp16: the V100
    # runs int8 as DP4A on CUDA cores, slower than its fp16 tensor cores)
    for d, p in peaks.items():
        assert p >= peaks["fp32"], (name, d)
    if "int4" in peaks and "int8" in peaks:
        assert peaks["int4"] >= peaks["int8"]
    assert float(hw.l2.bandwidth) > float(hw.dram.bandwidth)
    assert float(hw.l2.capacity) < float(hw.dram.capacity)
    assert float(hw.static_power) < float(hw.tdp)
    if hw.offload is not None:
        assert float(hw.offload.bandwidth) < float(hw.dram.bandwidth)
    for frac in (hw.compute_efficiency, hw.dram.efficiency, hw.l2.efficiency,
                 hw.link_efficiency):
        assert 0.0 < float(frac) < 1.0


@pytest.mark.parametrize("name", NAMES)
def test_citation(name):
    hw = pm.hardware.preset(name)
    wl = pm.workloads.preset("llama-2-7b")
    assert hw.bibtex.lstrip().startswith("@") and wl.bibtex.lstrip().startswith("@")
    text = pm.citation(hw, wl)
    assert hw.bibtex in text
    assert wl.bibtex in text
    assert "@software{perfmodel" in text
    assert pm.citation(hw, hw, wl).count(hw.bibtex) == 1  # deduplicated


def test_citation_keys():
    text = pm.citation(pm.hardware.preset("a100-80gb"), pm.workloads.preset("llama-2-7b"))
    assert "@manual{nvidia2020a100" in text and "@article{touvron2023llama2" in text


@pytest.mark.parametrize("name", NAMES)
def test_check_passes(name):
    hw = pm.hardware.preset(name)
    hw.check()
    hw.check(_small_ops())
    if name in XPU_NAMES:
        hw.check(pm.workloads.preset("llama-2-7b").decode(1.0, 1024.0))


@pytest.mark.parametrize("scale", [0.5, 2.0])
@pytest.mark.parametrize("name", NAMES)
def test_scaled_design_stays_valid_any_family(name, scale):
    """Design-guide contract: every float leaf scaled by [0.5, 2] is a valid design and
    evaluates to finite, positive figures (smooth and exact)."""
    hw = pm.hardware.preset(name)
    scaled = jax.tree.map(lambda x: x * scale, hw)
    scaled.check()
    for hard in (False, True):
        d = pm.evaluate(scaled, _small_ops(), hard=hard).to_dict()
        for k in ("latency_s", "energy_j", "tokens_per_s", "energy_per_token_j"):
            assert math.isfinite(d[k]) and d[k] > 0, (name, scale, hard, k, d[k])


@pytest.mark.parametrize("scale", [0.5, 2.0])
@pytest.mark.parametrize("name", XPU_NAMES)
def test_scaled_design_stays_valid(name, scale):
    hw = pm.hardware.preset(name)
    scaled = jax.tree.map(lambda x: x * scale, hw)
    leaves, ref = jax.tree.leaves(scaled), jax.tree.leaves(hw)
    assert leaves and len(leaves) == len(ref)
    for a, b in zip(leaves, ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b) * scale, rtol=1e-6)
    scaled.check()
    # served as an engine would: a halved memory runs the batch in waves (a GPU preset
    # has no offload tier, so plain `evaluate` of a batch that does not fit is refused)
    rep = pm.serve(scaled, pm.workloads.preset("llama-3.2-1b"), "decode", batch=64.0,
                   context=2048.0)
    d = rep.to_dict()
    for k in ("latency_s", "energy_j", "tokens_per_s", "energy_per_token_j"):
        assert math.isfinite(d[k]) and d[k] > 0, (name, scale, k, d[k])
    for frac in (scaled.compute_efficiency, scaled.dram.efficiency, scaled.l2.efficiency):
        assert 0.0 < float(frac) < 1.0


def test_check_rejects_bad_leaf():
    hw = pm.hardware.preset("a100-80gb")
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        broken = eqx.tree_at(lambda h: h.dram.bandwidth, hw, hw.dram.bandwidth * 0 + bad)
        with pytest.raises(ModelInputError, match="dram.bandwidth"):
            broken.check()


def test_from_spec_unknown_family():
    spec = _spec("a100-80gb")
    good = pm.hardware.from_spec(copy.deepcopy(spec), "a100 copy")
    assert good.name == "a100-80gb"
    spec["family"] = "gpu"
    with pytest.raises(ModelInputError, match="family") as e:
        pm.hardware.from_spec(spec, "my spec")
    assert "'gpu'" in str(e.value) and "xpu" in str(e.value)
    del spec["family"]
    with pytest.raises(ModelInputError, match="family"):
        pm.hardware.from_spec(spec)


def test_from_spec_minimal_hand_made():
    """A hand-written dict (no sources, no offload/interconnect) builds a valid design."""
    spec = {
        "schema_version": 1, "name": "toy", "family": "xpu",
        "peak": {"fp32": 10.0, "fp16": 100.0},
        "compute": {"units": 32, "tile_m": 64.0, "tile_n": 64.0, "energy_pJ_per_flop": 0.5},
        "memory": {"dram": {"bandwidth_GB_s": 1000.0, "capacity_GB": 32.0,
                            "energy_pJ_per_bit": 4.0},
                   "l2": {"bandwidth_GB_s": 4000.0, "capacity_MB": 8.0,
                          "energy_pJ_per_bit": 0.3}},
        "power": {"static_W": 50.0, "tdp_W": 300.0},
        "efficiency": {"compute": 0.9, "dram": 0.8, "l2": 0.7, "k_half": 200.0,
                       "launch_overhead_us": 4.0, "dram_latency_us": 2.0},
    }
    hw = pm.hardware.from_spec(spec)
    assert hw.name == "toy" and hw.offload is None and hw.datatypes == ("fp16", "fp32")
    assert float(hw.dram.bandwidth) == pytest.approx(1e12)
    hw.check()
    rep = pm.evaluate(hw, pm.workloads.preset("llama-2-7b").decode(1.0, 512.0))
    assert math.isfinite(float(rep.latency)) and float(rep.latency) > 0
    spec["peak"]["fp64"] = 5.0
    with pytest.raises(ModelInputError, match="fp64"):
        pm.hardware.from_spec(spec)
