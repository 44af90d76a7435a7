"""Spec files that read right: errors that say what is wrong and what is valid, unit
suffixes of the same dimension, and warnings for values outside a family's plausible
range (hardware/_plausible.py)."""

import copy
import pathlib
import warnings

import pytest

import perfmodel as pm
from perfmodel._errors import ModelInputError, PlausibilityWarning
from perfmodel._spec import UNIT_DIMENSIONS, load_spec_file, one_line_warnings
from perfmodel._units import UNIT_SUFFIXES
from perfmodel.hardware import _plausible, _registry

REPO = pathlib.Path(__file__).resolve().parents[1]
PRESETS = REPO / "hardware" / "presets"


def _a100():
    return load_spec_file(PRESETS / "a100-80gb.toml")


def _load(spec, label="my spec"):
    """Build ``spec``; return the target and the PlausibilityWarnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hw = pm.hardware.from_spec(copy.deepcopy(spec), label)
    return hw, [w for w in caught if issubclass(w.category, PlausibilityWarning)]


def _error(spec, label="my spec") -> str:
    with pytest.raises(ModelInputError) as e:
        _load(spec, label)
    return str(e.value)


# ------------------------------------------------------------------- range messages
def test_fraction_out_of_range_says_fraction():
    spec = _a100()
    spec["efficiency"]["dram"] = 77.1
    msg = _error(spec)
    assert msg == ("my spec: efficiency.dram = 77.1 is invalid; it must be a fraction in "
                   "(0, 0.999].")
    assert "None" not in msg


@pytest.mark.parametrize("edit, words", [
    (lambda s: s["power"].__setitem__("tdp_W", -3), ["power.tdp_W = -3", "finite and > 0"]),
    (lambda s: s["memory"]["dram"].__setitem__("bandwidth_GB_s", "fast"),
     ["memory.dram.bandwidth_GB_s = 'fast'", "a number"]),
    (lambda s: s["efficiency"].__setitem__("compute", 0.0), ["efficiency.compute = 0.0",
                                                            "fraction in (0, 0.999]"]),
])
def test_invalid_values_name_field_and_range(edit, words):
    spec = _a100()
    edit(spec)
    msg = _error(spec)
    assert all(w in msg for w in words), msg
    assert "None" not in msg


def test_lower_bound_only_reads_as_inequality():
    """A field with only a lower bound (dram-pim attention_imbalance >= 1) prints it as
    an inequality, not as an interval with a None end."""
    spec = load_spec_file(PRESETS / "attacc-pim-bank.toml")
    spec.setdefault("organization", {})["attention_imbalance"] = 0.5
    msg = _error(spec)
    assert "organization.attention_imbalance = 0.5" in msg and ">= 1" in msg, msg
    assert "None" not in msg


# ------------------------------------------------------------------- family
def test_missing_family_says_missing_and_lists_families():
    spec = _a100()
    del spec["family"]
    msg = _error(spec)
    assert "missing field family" in msg
    for fam in _registry._FAMILIES:
        assert fam in msg, msg
    assert "None" not in msg


def test_unknown_family_suggests_close_one():
    spec = _a100()
    spec["family"] = "xpuu"
    msg = _error(spec)
    assert "family = 'xpuu'" in msg and "did you mean 'xpu'" in msg, msg


# ------------------------------------------------------------------- unit suffixes
def test_every_unit_suffix_has_one_dimension():
    grouped = [s for group in UNIT_DIMENSIONS.values() for s in group]
    assert sorted(grouped) == sorted(UNIT_SUFFIXES), set(grouped) ^ set(UNIT_SUFFIXES)


def test_other_suffix_of_the_same_dimension_is_converted():
    spec = _a100()
    dram = spec["memory"]["dram"]
    ref, _ = _load(spec)
    dram["bandwidth_TB_s"] = dram.pop("bandwidth_GB_s") / 1000.0
    spec["interconnect"]["latency_ns"] = spec["interconnect"].pop("latency_us") * 1000.0
    hw, warned = _load(spec)
    assert not warned
    assert float(hw.dram.bandwidth) == pytest.approx(float(ref.dram.bandwidth), rel=1e-6)
    assert float(hw.link_latency) == pytest.approx(float(ref.link_latency), rel=1e-6)


@pytest.mark.parametrize("key", ["bandwidth_TBps", "bandwidth_Gbps", "bandwidth_tb_s"])
def test_unknown_unit_suffix_lists_valid_ones(key):
    spec = _a100()
    dram = spec["memory"]["dram"]
    dram[key] = dram.pop("bandwidth_GB_s")
    msg = _error(spec)
    assert f"unknown key memory.dram.{key}" in msg, msg
    assert "valid unit suffixes for memory.dram.bandwidth: _GB_s, _TB_s" in msg, msg
    assert "missing" not in msg


def test_unknown_unit_suffix_of_an_optional_field():
    """A field with a default (interconnect) and a key in an unknown unit: the key is
    refused at the end with the valid suffixes, not silently replaced by the default."""
    spec = _a100()
    spec["interconnect"]["latency_sec"] = spec["interconnect"].pop("latency_us") * 1e-6
    msg = _error(spec)
    assert "unknown key interconnect.latency_sec" in msg, msg
    assert "_us" in msg and "_ns" in msg


def test_same_field_twice_is_an_error():
    spec = _a100()
    spec["memory"]["dram"]["bandwidth_TB_s"] = 2.0
    msg = _error(spec)
    assert "memory.dram.bandwidth_GB_s and memory.dram.bandwidth_TB_s" in msg, msg


def test_unknown_field_suggests_close_name():
    spec = _a100()
    spec["compute"]["untis"] = 3
    msg = _error(spec)
    assert "unknown field 'compute.untis'" in msg and "'compute.units'" in msg, msg


# ------------------------------------------------------------------- plausibility
def test_plausibility_warning_is_exported():
    assert issubclass(PlausibilityWarning, UserWarning)
    assert pm.hardware.PlausibilityWarning is PlausibilityWarning


def test_gpu_with_gb_s_instead_of_tb_s_warns():
    spec = _a100()
    spec["memory"]["dram"]["bandwidth_GB_s"] = 3.35
    hw, warned = _load(spec)
    assert float(hw.dram.bandwidth) == pytest.approx(3.35e9)   # still loaded
    assert len(warned) == 1
    msg = str(warned[0].message)
    assert "memory.dram.bandwidth_GB_s = 3.35" in msg and "10 to 20000 GB/s" in msg, msg
    assert "xpu" in msg


def test_plausible_range_shown_in_the_units_written():
    spec = _a100()
    dram = spec["memory"]["dram"]
    del dram["bandwidth_GB_s"]
    dram["bandwidth_TB_s"] = 0.00335
    _, warned = _load(spec)
    assert len(warned) == 1 and "0.01 to 20 TB/s" in str(warned[0].message)


def test_peak_in_gflops_instead_of_tflops_warns():
    spec = _a100()
    spec["peak"]["fp16"] = 312_000.0
    _, warned = _load(spec)
    assert len(warned) == 1 and "peak.fp16 = 312000.0" in str(warned[0].message)


def test_every_preset_loads_without_plausibility_warning():
    for name in pm.hardware.list_presets():
        _, warned = _load(load_spec_file(PRESETS / f"{name}.toml"), name)
        assert not warned, (name, [str(w.message) for w in warned])


def test_presets_sit_well_inside_the_ranges(monkeypatch):
    """The ranges are generous: every preset stays inside them even when each range is
    narrowed 2x at both ends."""
    narrowed = {fam: {k: (e[0] * 2, e[1] / 2) + tuple(e[2:]) for k, e in table.items()}
                for fam, table in _plausible.PLAUSIBLE_RANGES.items()}
    monkeypatch.setattr(_plausible, "PLAUSIBLE_RANGES", narrowed)
    for name in pm.hardware.list_presets():
        _, warned = _load(load_spec_file(PRESETS / f"{name}.toml"), name)
        assert not warned, (name, [str(w.message) for w in warned])


def test_every_range_names_a_field_of_some_preset():
    """No dead entries: each key of the table is read from at least one preset of its
    family (a typo in the table would never warn)."""
    assert set(_plausible.PLAUSIBLE_RANGES) == set(_registry._FAMILIES)
    seen = {fam: set() for fam in _plausible.PLAUSIBLE_RANGES}
    for name in pm.hardware.list_presets():
        data = _registry.resolve_extends(load_spec_file(PRESETS / f"{name}.toml"), name)

        def walk(d, prefix):
            for k, v in d.items():
                if isinstance(v, dict):
                    walk(v, prefix + (k,))
                else:
                    seen[data["family"]].add(".".join(prefix + (k,)))

        walk(data, ())
    for fam, table in _plausible.PLAUSIBLE_RANGES.items():
        dead = set(table) - seen[fam]
        assert not dead, (fam, dead)
        for key, entry in table.items():
            assert 0 < entry[0] < entry[1], (fam, key)


def test_one_line_warnings_format(capsys):
    spec = _a100()
    spec["memory"]["dram"]["bandwidth_GB_s"] = 3.35
    with one_line_warnings():
        pm.hardware.from_spec(spec, "slow.toml")
    err = capsys.readouterr().err
    assert err.startswith("perfmodel: warning: slow.toml: memory.dram.bandwidth_GB_s = 3.35")
    assert len(err.splitlines()) == 1 and "Warning" not in err, err
