"""`perfmodel measure` and the `host` target: the harness writes a valid measurement table,
the host target states what it read and what it assumed, and calibrate closes the loop."""

import math
import os

import pytest

import perfmodel as pm
from perfmodel.fit import _measure
from perfmodel.hardware._host import FMA_PIPES, host_spec


def test_host_spec_reads_the_machine_and_says_what_it_assumed():
    spec = host_spec(bandwidth=20e9)
    src = spec["sources"]
    assert src["compute.units"].startswith("read:")
    assert spec["compute"]["units"] == float(os.cpu_count())
    assert src["memory.dram.bandwidth_GB_s"].startswith("given")
    assert spec["memory"]["dram"]["bandwidth_GB_s"] == pytest.approx(20.0)
    assert "assumed" in src["peak.fp32"] and f"{FMA_PIPES} FMA pipes" in src["peak.fp32"]
    # every number of the spec has a source line
    numbers = [f"{sec}.{k}" for sec in ("peak", "compute", "power", "efficiency")
               for k in spec[sec]]
    numbers += [f"memory.{lvl}.{k}" for lvl in ("dram", "l2") for k in spec["memory"][lvl]]
    assert sorted(set(numbers) - set(src)) == []
    hw = pm.hardware.from_spec(spec)
    assert isinstance(hw, pm.hardware.XPU) and hw.mma_rows == 1.0
    assert float(hw.peak_flops[0]) > 1e9  # at least a GFLOP/s


def test_host_preset_measures_its_bandwidth():
    hw = pm.hardware.preset("host")
    assert hw is pm.hardware.preset("host")  # read and measured once per process
    assert 1e8 < float(hw.dram.bandwidth) < 1e13


def test_measure_writes_a_table_that_calibrate_fits(tmp_path, monkeypatch):
    monkeypatch.setattr(_measure, "GEMM_SHAPES", ((1, 256, 256), (64, 256, 256)))
    monkeypatch.setattr(_measure, "DECODE_POINTS", ((1, 16),))
    monkeypatch.setattr(_measure, "TIME_BUDGET", 0.02)
    seen = []
    out = tmp_path / "m.csv"
    s = _measure.measure(out, progress=lambda d, t, label: seen.append((d, t)))
    # stream, 2 GEMMs, the attention kernel and the decode step
    assert s["rows"] == 3 and seen[-1][0] == seen[-1][1] == 5
    assert s["stream_bandwidth"] > 1e8 and s["attention"]["b1-c16"] > 0
    from perfmodel.fit._measurements import load_measurements

    data = load_measurements(out, target=pm.hardware.preset("host"), target_key="host")
    assert len(data.rows) == 3
    from perfmodel.fit._calibration import calibrate_target

    result = calibrate_target("host", str(out), ["launch_overhead"], folds=0)
    assert all(math.isfinite(r["predicted"]) for r in result.rows)
    assert math.isfinite(result.mape)


def test_measure_refuses_a_bad_output_path(tmp_path):
    with pytest.raises(pm.ModelInputError, match="--out .* .csv"):
        _measure.measure(tmp_path / "m.txt")
