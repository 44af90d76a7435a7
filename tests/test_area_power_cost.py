"""Area, peak power and cost of every family (docs/cost.md): reproduction of published die
areas and powers, the technology table and node rescaling, the cost model, and the
contracts (finite, differentiable, valid over [0.5, 2]-scaled designs)."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import perfmodel as pm
from perfmodel import ModelInputError
from perfmodel.hardware import _technology as tech
from perfmodel.hardware import physical, rescale_node

NAMES = pm.hardware.list_presets()
#: One preset per family (and per DRAM-PIM placement) for the costlier checks.
FAMILY_PRESETS = ["a100-80gb", "hbm-pim", "attacc-pim-bg", "attacc-pim-buffer", "sail",
                  "ternary-lut", "edgecim", "elmoe-3d", "opima", "neupims",
                  "t4-pytorch-eager"]

GA100 = "https://fudzilla.com/news/ai/50831-nvidia-officially-unveils-the-amper-based-ga100-gpu"
THG_PIM = ("https://www.times24h.com/samsung-creates-ram-with-integrated-ai-processing-"
           "hardware/ (from Samsung's ISSCC 2021 presentation)")


def _mm2(name):
    return float(physical(pm.hardware.preset(name))["area"]) * 1e6


def _watts(name):
    return float(physical(pm.hardware.preset(name))["peak_power"])


def _hbm_pim_displaced_share(name="hbm-pim"):
    """Share of a PIM die's 8 Gb array that its PIM units take (4 PIM dies per cube)."""
    hw = pm.hardware.preset(name)
    return float(hw.pim_area()) / 4.0 / (2.0 ** 33 * hw.bit_area)


def _hbm_pim_mode_ratio(name="hbm-pim"):
    """Chip power in PIM mode over normal (HBM2) mode, static power included."""
    hw = pm.hardware.preset(name)
    p_pim, p_normal = hw.mode_powers()
    return float((p_pim + hw.static_power) / (p_normal + hw.static_power))


def _sail_overhead():
    """SAIL's LUT hardware as a share of the CPU die it is added to."""
    hw = pm.hardware.preset("sail")
    return float((hw.chip_area() - hw.base_area) / hw.base_area)


def _missing():
    raise AssertionError("no published value to compare with")


#: (id, model value, published value, source, how it is obtained, known miss or None).
#: ``fitted``: a coefficient was fitted to this number, so it reproduces by construction.
REPRODUCTIONS = [
    ("a100-80gb area (mm^2)", lambda: _mm2("a100-80gb"), 826.0, GA100,
     "fitted: UNIT_AREA_7NM (per-SM area) to this die", None),
    ("a100-80gb peak power (W)", lambda: _watts("a100-80gb"), 400.0,
     "https://glennklockwood.com/garden/processors/A100 (SXM4 max power)",
     "predicted; energy_per_flop was derived from the TDP (preset source)", None),
    ("h100-sxm area (mm^2)", lambda: _mm2("h100-sxm"), 814.0,
     "https://www.mooreslawisdead.com/post/the-economics-of-chiplets (H100: 814 mm^2)",
     "predicted from the A100's coefficients moved to N5 by the node table", None),
    ("h100-sxm peak power (W)", lambda: _watts("h100-sxm"), 700.0,
     "https://archive-lib.hpctech.co.jp/gpuproduct/nvidia-h100.html (SXM TDP)",
     "predicted; energy_per_flop was derived from the TDP (preset source)", None),
    ("rtx-a6000 area (mm^2)", lambda: _mm2("rtx-a6000"), 628.0,
     "https://servethehome.com/nvidia-rtx-a6000-48gb-gpu-drops-quadro-designation (GA102)",
     "predicted (Samsung 8 nm row of the node table)", None),
    ("rtx-a6000 peak power (W)", lambda: _watts("rtx-a6000"), 300.0,
     "https://servethehome.com/nvidia-rtx-a6000-48gb-gpu-drops-quadro-designation",
     "predicted; energy_per_flop was derived from the TDP (preset source)", None),
    ("v100 area (mm^2)", lambda: _mm2("v100"), 815.0,
     "https://wccftech.com/nvidia-ampere-ga100-gpu-7nm-architecture-specifications-"
     "performance-deep-dive/ (GV100: 815 mm^2)", "predicted",
     "+69%: the node table's 16/12 nm -> 7 nm logic-area factor (3.2x, Stillmaker & Baas) "
     "overstates chip-level scaling: GV100 -> GA100 transistor density rose 2.5x "
     "(21.1e9 / 815 mm^2 -> 54.2e9 / 826 mm^2); a per-chip-class density factor is the "
     "missing input"),
    ("hbm-pim PIM units' share of a PIM die", _hbm_pim_displaced_share, 0.5,
     THG_PIM + " (PIM dies hold 4 Gb instead of 8 Gb: the PCUs take the space)",
     "fitted: LANE_DRAM_BITS to this share", None),
    ("hbm-pim power, PIM mode / normal mode", _hbm_pim_mode_ratio, 1.0,
     THG_PIM + " (the same power consumption per chip)",
     "predicted (static power assumed 5 W in both; the dynamic parts alone differ by "
     "-18%)", None),
    ("aim area / power", _missing, None, "github:arkhadem/aim_simulator README refs "
     "(ISSCC 2022 / JSSC 2023 titles); https://www.tweaktown.com/news/84615/",
     "-", "no die area or chip power in the sources read (press: 1.25 V, 'power reduced "
     "by 80%' at system level); the ISSCC paper's die photo is the missing input"),
    ("sail LUT hardware overhead (share of the CPU die)", _sail_overhead, 0.02,
     "https://arxiv.org/abs/2509.25853v1 (abstract: 2% hardware overhead)",
     "predicted by the LUT area model",
     "+126%: the preset's adder / mux / register areas are Horowitz 45 nm figures "
     "(assumed) on a 7 nm die; moved to 7 nm by the node table (x1/17) the overhead is "
     "0.27% (-87%); the paper's per-unit areas (gem5/CACTI configuration) are the "
     "missing input"),
    ("edgecim area / peak power", _missing, None,
     "https://arxiv.org/html/2604.11512v1 (abstract)", "-",
     "the abstract gives no area or peak power (its averages imply 336.42 tokens/s / "
     "173.02 tokens/J = 1.94 W; the model's peak, 3.9 W, lies above that); the paper "
     "body is the missing input"),
    ("vitallm area (mm^2)", lambda: _mm2("vitallm"), 0.223,
     "https://arxiv.org/html/2604.27396v1 (abstract: 0.223 mm^2)",
     "fitted: area.periphery_mm2 (claim vitallm-area)", None),
    ("vitallm power (mW)", lambda: _watts("vitallm") * 1e3, 65.97,
     "https://arxiv.org/html/2604.27396v1 (abstract: 65.97 mW)", "predicted peak",
     "+40%: the paper's 65.97 mW is its power running BitNet decode, which the model's "
     "average power reproduces (claim vitallm-power, write energy fitted); the peak, with "
     "the TINT cores and the weight stream both at full rate, is higher and no peak "
     "figure is published"),
    ("elmoe-3d area / power", _missing, None,
     "https://arxiv.org/abs/2604.14626 and github:uni042/llm-paper-summary@549bf414 "
     "(summary)", "-", "the synthesized logic-die area and power were not readable (only "
     "the abstract and a secondary summary); the preset's 100 mm^2 logic die is assumed"),
    ("opima area / power", _missing, None,
     "https://huggingface.datasetlab.ai/papers/2407.08205.md (abstract)", "-",
     "the paper body (device table, power breakdown) was not retrieved; the preset's "
     "areas are assumed"),
]


def _params():
    for rid, fn, published, source, how, miss in REPRODUCTIONS:
        marks = [pytest.mark.xfail(strict=True, reason=miss)] if miss else []
        yield pytest.param(fn, published, id=rid, marks=marks)


@pytest.mark.parametrize("model, published", list(_params()))
def test_reproduces_published_area_and_power(model, published):
    """Within +-15% of the published figure (misses are strict xfails with the measured
    error and the missing input; docs/cost.md has the table)."""
    value = model()
    assert published is not None
    err = value / published - 1.0
    assert abs(err) <= 0.15, f"model {value:.4g} vs published {published:.4g}: {err:+.1%}"


def test_reproduction_errors_are_the_documented_ones():
    """The errors quoted in the xfail reasons are the measured ones (to 1 point)."""
    assert _mm2("v100") / 815.0 - 1.0 == pytest.approx(0.69, abs=0.01)
    assert _sail_overhead() / 0.02 - 1.0 == pytest.approx(1.26, abs=0.01)
    assert _watts("vitallm") * 1e3 / 65.97 - 1.0 == pytest.approx(0.40, abs=0.01)
    hw = pm.hardware.preset("hbm-pim")
    p_pim, p_normal = hw.mode_powers()
    assert float(p_pim / p_normal) - 1.0 == pytest.approx(-0.18, abs=0.01)


# ------------------------------------------------------------------------ every target
@pytest.fixture(scope="module")
def small_ops():
    """One GEMV-like row (every family runs it; evaluating it eagerly is cheap)."""
    from perfmodel.workloads._kernels import gemm

    return gemm(8.0, 4096.0, 4096.0)


@pytest.mark.parametrize("name", FAMILY_PRESETS)
def test_report_carries_area_power_cost(name, small_ops):
    hw = pm.hardware.preset(name)
    rep = pm.evaluate(hw, small_ops)
    ph = physical(hw)
    for key, field in (("area", rep.area), ("peak_power", rep.peak_power),
                       ("cost", rep.cost)):
        assert field is not None, (name, key)
        assert float(field) == pytest.approx(float(ph[key]), rel=1e-6), (name, key)
    d = rep.to_dict()
    assert d["area_mm2"] == pytest.approx(float(rep.area) * 1e6)
    assert d["peak_power_w"] == pytest.approx(float(rep.peak_power))
    assert d["cost_usd"] == pytest.approx(float(rep.cost))
    # average power never exceeds the peak
    assert float(rep.power) <= float(rep.peak_power) * (1 + 1e-6), name


def test_every_preset_has_finite_positive_figures_scaled():
    """Every preset, and every float leaf scaled by 0.5 or 2: area, peak power and cost
    are finite and positive (the [0.5, 2] contract)."""
    for name in NAMES:
        hw = pm.hardware.preset(name)
        for scale in (1.0, 0.5, 2.0):
            ph = physical(jax.tree.map(lambda x: x * scale, hw))
            for key, v in ph.items():
                assert v is not None and math.isfinite(float(v)) and float(v) > 0, (
                    name, scale, key, v)


@pytest.mark.parametrize("name", FAMILY_PRESETS)
def test_gradients_finite_for_every_leaf(name):
    """jax.jacrev of (area, peak power, cost) w.r.t. every float leaf: finite."""
    hw = pm.hardware.preset(name)
    params, static = eqx.partition(hw, eqx.is_inexact_array)

    def f(p):
        d = physical(eqx.combine(p, static))
        return jnp.stack([d["area"], d["peak_power"], d["cost"]])

    jac = jax.jacrev(f)(params)
    for leaf in jax.tree.leaves(jac):
        assert np.all(np.isfinite(np.asarray(leaf))), name


def test_more_bandwidth_and_lanes_cost_something():
    """The trade an optimizer needs: more DRAM bandwidth, peak FLOP/s or MAC lanes raise
    area, peak power and cost (one reverse pass per output)."""
    for name, paths in (("a100-80gb", (lambda h: h.dram.bandwidth, lambda h: h.peak_flops)),
                        ("aim", (lambda h: h.mac_lanes,))):
        hw = pm.hardware.preset(name)

        def f(xs, hw=hw, paths=paths):
            moved = eqx.tree_at(lambda h: [p(h) for p in paths], hw, list(xs))
            d = physical(moved)
            return jnp.stack([d["area"], d["peak_power"], d["cost"]])

        jac = jax.jacrev(f)([p(hw) for p in paths])
        for path_jac in jac:          # [3, ...] per moved leaf
            per_output = np.asarray(path_jac).reshape(3, -1).sum(axis=1)
            assert per_output[0] > 0 and per_output[2] > 0, (name, per_output)
            assert per_output[1] >= 0, (name, per_output)   # lanes: MAC power only in PIM mode


# ------------------------------------------------------------------------ technology
def test_node_table_is_sourced_and_monotone():
    order = ["65nm", "45nm", "32nm", "20nm", "16nm", "10nm", "7nm", "5nm", "3nm"]
    for a, b in zip(order, order[1:]):
        na, nb = tech.node(a), tech.node(b)
        assert nb.logic_area < na.logic_area and nb.sram_bitcell < na.sram_bitcell
        assert nb.energy < na.energy and nb.wafer_price > na.wafer_price, (a, b)
    for n in tech.NODES.values():
        assert n.sources and n.defect_density > 0
    assert tech.node("7nm").logic_area == 1.0 and tech.node("7nm").energy == 1.0


def test_unknown_node_lists_valid_ones():
    with pytest.raises(ModelInputError, match="2nm") as e:
        rescale_node(pm.hardware.preset("a100-80gb"), "2nm")
    assert "7nm" in str(e.value) and "3nm" in str(e.value)
    spec = {"schema_version": 1, "name": "toy", "family": "xpu",
            "peak": {"fp32": 10.0, "fp16": 100.0},
            "compute": {"units": 32, "tile_m": 64.0, "tile_n": 64.0,
                        "energy_pJ_per_flop": 0.5},
            "memory": {"dram": {"bandwidth_GB_s": 1000.0, "capacity_GB": 32.0,
                                "energy_pJ_per_bit": 4.0},
                       "l2": {"bandwidth_GB_s": 4000.0, "capacity_MB": 8.0,
                              "energy_pJ_per_bit": 0.3}},
            "power": {"static_W": 50.0, "tdp_W": 300.0},
            "efficiency": {"compute": 0.9, "dram": 0.8, "l2": 0.7, "k_half": 200.0,
                           "launch_overhead_us": 4.0, "dram_latency_us": 2.0},
            "technology": {"node": "6nm"}}
    with pytest.raises(ModelInputError, match="valid: 65nm"):
        pm.hardware.from_spec(spec)
    spec["technology"] = {"node": "5nm", "memory": "hbm9"}
    with pytest.raises(ModelInputError, match="hbm3e"):
        pm.hardware.from_spec(spec)


def test_rescale_node(small_ops):
    a100 = pm.hardware.preset("a100-80gb")
    at5 = rescale_node(a100, "5nm")
    assert at5.node == "5nm"
    r = tech.ratios("7nm", "5nm")
    assert float(at5.energy_per_flop) == pytest.approx(float(a100.energy_per_flop) * 0.7)
    assert at5.unit_area == pytest.approx(a100.unit_area * r["logic"])
    assert at5.sram_bit_area == pytest.approx(a100.sram_bit_area * r["sram"])
    assert float(at5.dram.energy_per_bit) == float(a100.dram.energy_per_bit)  # off-chip
    assert float(physical(at5)["area"]) < float(physical(a100)["area"])
    assert float(physical(at5)["peak_power"]) < float(physical(a100)["peak_power"])
    # the same throughput: latency unchanged; energy lower
    r7, r5 = pm.evaluate(a100, small_ops), pm.evaluate(at5, small_ops)
    assert float(r5.latency) == pytest.approx(float(r7.latency), rel=1e-6)
    assert float(r5.energy) < float(r7.energy)
    assert rescale_node(at5, "7nm").unit_area == pytest.approx(a100.unit_area)
    with pytest.raises(ModelInputError, match="DRAM process"):
        rescale_node(pm.hardware.preset("hbm-pim"), "5nm")
    system = rescale_node(pm.hardware.preset("neupims"), "5nm")
    assert [getattr(u, "node") for u in system.units] == ["5nm", "12nm"]  # PIM unchanged
    for name in ("sail", "edgecim", "elmoe-3d", "opima", "attacc-pim-buffer",
                 "t4-pytorch-eager"):
        moved = rescale_node(pm.hardware.preset(name), "5nm")
        assert math.isfinite(float(physical(moved)["area"])), name


# ------------------------------------------------------------------------ cost model
def test_yield_and_die_cost():
    areas = jnp.asarray([1e-6, 100e-6, 400e-6, 800e-6])
    y = tech.die_yield(areas, tech.node("7nm").defect_density)
    assert np.all(np.diff(np.asarray(y)) < 0) and float(y[0]) > 0.99
    # Murphy at A D0 = 0.72 (800 mm^2 x 0.09 /cm^2)
    x = 8.0 * 0.09
    assert float(y[3]) == pytest.approx(((1 - math.exp(-x)) / x) ** 2, rel=1e-5)
    assert float(tech.die_yield(jnp.asarray(0.0), 900.0)) == pytest.approx(1.0)
    cost = tech.die_cost(areas, "7nm")
    assert np.all(np.diff(np.asarray(cost)) > 0)
    # cost per area rises with area (fewer dies, lower yield)
    per = np.asarray(cost / areas)
    assert np.all(np.diff(per) > 0)
    g = jax.grad(lambda a: tech.die_cost(a, "5nm"))(jnp.asarray(300e-6))
    assert math.isfinite(float(g)) and float(g) > 0
    assert float(tech.memory_cost(80e9, "hbm2e")) == pytest.approx(80 * 7.0)


def test_tokens_per_dollar(small_ops):
    rep = pm.evaluate(pm.hardware.preset("h100-sxm"), small_ops)
    life = 3 * 365.25 * 86400.0
    got = float(pm.hardware.tokens_per_dollar(rep, lifetime_s=life, utilization=0.5,
                                              energy_price=0.12))
    idle = float(rep.static_energy / rep.latency)
    kwh = life * (0.5 * float(rep.power) + 0.5 * idle) / 3.6e6
    want = life * 0.5 * float(rep.tokens_per_s) / (float(rep.cost) + 0.12 * kwh)
    assert got == pytest.approx(want, rel=1e-5)
    # dearer energy: fewer tokens per dollar; the property uses the defaults
    dear = pm.hardware.tokens_per_dollar(rep, lifetime_s=life, utilization=0.5,
                                         energy_price=0.5)
    assert float(dear) < got
    assert float(rep.tokens_per_dollar) == pytest.approx(
        float(pm.hardware.tokens_per_dollar(rep)))
    g = jax.grad(lambda bw: pm.hardware.tokens_per_dollar(pm.evaluate(
        eqx.tree_at(lambda h: h.dram.bandwidth, pm.hardware.preset("h100-sxm"), bw),
        small_ops)))(jnp.asarray(3.35e12))
    assert math.isfinite(float(g))


def test_system_sums_units_plus_link():
    system = pm.hardware.preset("neupims")
    ph = physical(system)
    units = [physical(u) for u in system.units]
    assert float(ph["area"]) == pytest.approx(sum(float(u["area"]) for u in units))
    assert float(ph["cost"]) == pytest.approx(sum(float(u["cost"]) for u in units))
    link = 8.0 * float(system.link_bandwidth * system.link_energy_per_bit)
    assert float(ph["peak_power"]) == pytest.approx(
        sum(float(u["peak_power"]) for u in units) + link)
