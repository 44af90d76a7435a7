"""The general calibrator (perfmodel.fit.calibrate, issue 18): synthetic recovery within
the reported uncertainty over 20 seeds, identifiability flags, non-convergence reported,
every bad measurement row named, save -> predict round trip, the CLI's JSON, and the
provenance table in docs/calibration.md kept current.

Every fit here is on one synthetic A100 GEMM table, so the compiled solver is shared
(fits of the same structure reuse it): ~30 s in all."""

import csv
import json
import math

import numpy as np
import pytest

import perfmodel as pm
from conftest import run_cli
from perfmodel._paths import set_values
from perfmodel.fit import MeasurementError, parse_measurements

TRUTH = {"compute_efficiency": 0.8, "dram.efficiency": 0.7, "launch_overhead": 12e-6}
FREE = list(TRUTH)
#: compute-bound, memory-bound and launch-bound GEMMs
SHAPES = [(1, 4096, 4096), (8, 8192, 8192), (16, 4096, 11008), (64, 12288, 12288),
          (256, 4096, 4096), (1024, 8192, 8192), (4096, 4096, 4096), (8192, 12288, 12288),
          (8192, 64, 64), (8192, 256, 256), (2048, 1024, 1024), (1, 1024, 1024),
          (32, 512, 512), (128, 16384, 4096)]
NOISE = 0.05


@pytest.fixture(scope="module")
def true_latency():
    hw = set_values(pm.hardware.preset("a100-80gb"), TRUTH)
    return np.array([float(pm.evaluate(hw, pm.workloads.gemm(m, n, k)).latency)
                     for m, n, k in SHAPES])


def synthetic_rows(true_latency, seed):
    rng = np.random.default_rng(seed)
    values = true_latency * np.exp(NOISE * rng.standard_normal(len(SHAPES)))
    return [dict(hardware="a100-80gb", workload="gemm", m=m, n=n, k=k, metric="latency",
                 value=repr(float(v)), unit="s", source=f"synthetic seed {seed}",
                 group=f"g{i % 3}")
            for i, ((m, n, k), v) in enumerate(zip(SHAPES, values))]


def u(name, x):
    """The fit's unconstrained coordinate: logit of a fraction, log otherwise."""
    return math.log(x / (1 - x)) if "efficiency" in name else math.log(x)


@pytest.fixture(scope="module")
def fits(true_latency):
    """20 fits of the same structure on data with 5 % log-normal noise."""
    return [pm.fit.calibrate("a100-80gb", parse_measurements(synthetic_rows(true_latency, s)),
                             FREE, folds=0) for s in range(20)]


def test_synthetic_recovery_within_reported_uncertainty(fits):
    """Every seed recovers the truth within 4 sigma; over 20 seeds x 3 parameters about
    68 % lie within 1 sigma (measured 60 %: the t-distribution with 11 degrees of
    freedom covers 66 %), checked loosely."""
    within = []
    for res in fits:
        assert res.converged, res.message
        assert all(p.identifiable for p in res.parameters)
        assert 0.02 < res.mape < 0.08            # the 5 % noise, not a misfit
        for p in res.parameters:
            z = abs(u(p.name, p.value) - u(p.name, TRUTH[p.name])) / p.std_u
            assert z < 4, (p.name, p.value, p.std_u)
            within.append(z <= 1)
    assert 0.45 <= np.mean(within) <= 0.9, np.mean(within)


def test_result_reports_errors_uncertainty_and_intervals(fits):
    res = fits[0]
    d = res.to_dict()
    assert {p["name"] for p in d["parameters"]} == set(FREE)
    assert all(p["identifiable"] and p["std"] > 0 for p in d["parameters"])
    launch = next(p for p in d["parameters"] if p["name"] == "launch_overhead")
    assert launch["unit"] == "us" and 8 < launch["value"] < 16   # readable unit
    assert len(d["rows"]) == len(SHAPES) and d["rows"][0]["source"] == "synthetic seed 0"
    assert np.allclose(np.diag(res.correlations), 1.0)
    assert set(res.mape_by_group) == {"g0", "g1", "g2"}
    ops = pm.workloads.gemm(512.0, 4096.0, 4096.0)   # a shape the data do not hold
    pred = res.predict(ops, "latency")
    assert pred.lower < pred.value < pred.upper and 0 < pred.rel_std < 0.2
    wide = res.predict(ops, "latency", level=0.95, noise=True)
    assert wide.lower < pred.lower and wide.upper > pred.upper
    assert pred.value == pytest.approx(float(pm.evaluate(res.target, ops).latency), rel=1e-5)
    fn = res.predict(lambda hw: pm.evaluate(hw, ops, check=False).tokens_per_s)
    assert fn.value == pytest.approx(1.0 / pred.value, rel=1e-4)


def test_unidentifiable_parameters_are_flagged_and_kept(true_latency):
    """DRAM bandwidth and efficiency enter as a product (the later-listed is kept at the
    preset value and says with what it is degenerate); the link bandwidth moves no GEMM."""
    free = ["compute_efficiency", "dram.bandwidth", "dram.efficiency", "launch_overhead",
            "link_bandwidth"]
    res = pm.fit.calibrate("a100-80gb", parse_measurements(synthetic_rows(true_latency, 0)),
                           free, folds=0)
    p = {x.name: x for x in res.parameters}
    preset = pm.hardware.preset("a100-80gb")
    assert not p["dram.efficiency"].identifiable
    assert "dram.bandwidth" in p["dram.efficiency"].reason
    assert p["dram.efficiency"].value == pytest.approx(float(preset.dram.efficiency))
    assert not p["link_bandwidth"].identifiable and "no effect" in p["link_bandwidth"].reason
    assert p["dram.bandwidth"].identifiable and p["compute_efficiency"].identifiable
    # the product is what the data fix: bandwidth absorbs the efficiency change
    eff_bw = p["dram.bandwidth"].value * float(preset.dram.efficiency)
    assert eff_bw == pytest.approx(float(preset.dram.bandwidth) * TRUTH["dram.efficiency"],
                                   rel=0.15)
    assert "NOT IDENTIFIABLE" in res.summary()


def test_bounds_and_priors(fits, true_latency):
    """A bound holds (and the summary says the fit stopped at it); a prior narrows its
    parameter's posterior (same data as fits[0])."""
    res = pm.fit.calibrate("a100-80gb", parse_measurements(synthetic_rows(true_latency, 0)),
                           FREE, folds=0, bounds={"launch_overhead": (5e-6, 11e-6)},
                           priors={"dram.efficiency": (0.7, 0.05)})
    p = {x.name: x for x in res.parameters}
    assert 5e-6 < p["launch_overhead"].value <= 11e-6 * (1 + 1e-5)
    assert p["launch_overhead"].at_bound == "upper" and "AT ITS UPPER BOUND" in res.summary()
    free_fit = {x.name: x for x in fits[0].parameters}
    assert p["dram.efficiency"].std_u < 0.8 * free_fit["dram.efficiency"].std_u
    with pytest.raises(pm.ModelInputError, match="bounds for launch_overhead"):
        pm.fit.calibrate("a100-80gb", parse_measurements(synthetic_rows(true_latency, 0)),
                         FREE, bounds={"launch_overhead": (2e-5, 1e-5)})


def test_non_converging_fit_says_so(true_latency):
    res = pm.fit.calibrate("a100-80gb", parse_measurements(synthetic_rows(true_latency, 1)),
                           FREE, folds=0, max_steps=2)
    assert not res.converged and "maximum number of steps" in res.message
    assert "NOT CONVERGED" in res.summary() and res.steps == 2
    assert len(res.parameters) == 3 and np.all(np.isfinite(res.predicted))


BAD = """hardware,workload,phase,batch,context,m,n,k,metric,value,unit,source,baseline
a100-80gb,gemm,,,,64,64,64,latency,1e-5,s,ok,
a100-80gbb,gemm,,,,64,64,64,latency,1e-5,s,typo in hardware,
a100-80gb,llama-9b,decode,1,128,,,,tokens_per_s,50,tokens/s,unknown workload,
a100-80gb,gemm,,,,64,64,64,latncy,1e-5,s,unknown metric,
a100-80gb,gemm,,,,64,64,64,latency,1e-5,tokens/s,unit mismatch,
a100-80gb,gemm,,,,64,64,64,latency,0,s,zero value,
a100-80gb,gemm,,,,64,64,64,latency,-3,s,negative value,
a100-80gb,llama-2-7b,decode,1,128,,,,speedup,2.0,x,ratio without baseline,
a100-80gb,llama-2-7b,decode,1,,,,,tokens_per_s,50,tokens/s,missing context,
"""


def test_every_bad_row_is_reported_at_once(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(BAD)
    with pytest.raises(MeasurementError) as e:
        pm.fit.load_measurements(path)
    got = {(row, col) for row, col, _ in e.value.errors}
    assert got == {(2, "hardware"), (3, "workload"), (4, "metric"), (5, "unit"),
                   (6, "value"), (7, "value"), (8, "baseline"), (9, "context")}, got
    msg = str(e.value)
    assert "8 bad rows" in msg and "row 2 (line 3), column hardware" in msg
    assert "did you mean 'a100-80gb'" in msg and "'latncy'" in msg and "tokens/s" in msg
    header = tmp_path / "header.csv"
    header.write_text("hardware,workload,metrik,value,unit,source\n")
    with pytest.raises(MeasurementError, match="metrik.*did you mean 'metric'"):
        pm.fit.load_measurements(header)


def test_unknown_free_parameter_is_named(true_latency):
    data = parse_measurements(synthetic_rows(true_latency, 0))
    with pytest.raises(pm.ModelInputError, match="'dram.bandwith'.*'dram.bandwidth'"):
        pm.fit.calibrate("a100-80gb", data, ["compute_efficiency", "dram.bandwith"])
    with pytest.raises(pm.ModelInputError, match="missing: free"):
        pm.fit.calibrate("a100-80gb", data)


def test_no_argument_call_is_the_a100_fit(monkeypatch):
    monkeypatch.setattr(pm.fit._calibrate, "calibrate_a100", lambda: {"a100": True})
    assert pm.fit.calibrate() == {"a100": True}


def test_save_and_predict_round_trip(fits, tmp_path, capsys):
    """The saved spec extends the preset with the fitted values; `perfmodel predict
    --hardware fitted.toml` evaluates the fitted target."""
    res = fits[0]
    path = res.save(tmp_path / "fitted.toml")
    text = path.read_text()
    assert 'extends = "a100-80gb"' in text and "[overrides]" in text
    assert "sha256" in text and "in-sample MAPE" in text and "launch_overhead" in text
    loaded = pm.hardware.load(path)
    for p in res.parameters:
        assert float(pm._paths.get_values(loaded, [p.name])[p.name]) == pytest.approx(
            p.value, rel=1e-5)
    rc, out, err = run_cli(capsys, "predict", "--hardware", path, "--workload", "llama-3.2-1b",
                           "--batch", 8, "--context", 2048, "--json")
    assert rc == 0, err
    ops = pm.workloads.preset("llama-3.2-1b").decode(8.0, 2048.0)
    assert json.loads(out)["latency_s"] == pytest.approx(
        float(pm.evaluate(res.target, ops).latency), rel=1e-5)


def test_cli_json_and_spec(true_latency, tmp_path, capsys):
    data = tmp_path / "measured.csv"
    rows = synthetic_rows(true_latency, 3)
    with data.open("w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out_spec = tmp_path / "fitted.toml"
    rc, out, err = run_cli(capsys, "calibrate", "--data", data, "--free", ",".join(FREE),
                           "--folds", 3, "--out", out_spec, "--json")
    assert rc == 0, err
    d = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert {"parameters", "rows", "mape", "cv_mape"} <= set(d)
    assert all({"name", "value", "std", "unit", "identifiable"} <= set(p)
               for p in d["parameters"])
    assert all({"measured", "predicted", "rel_error", "source", "m", "n", "k"} <= set(r)
               for r in d["rows"])
    assert 0 < d["mape"] < 0.1 and d["mape"] < d["cv_mape"] < 0.2
    assert d["cv_group_mape"] is not None            # groups g0, g1, g2
    assert out_spec.is_file()
    rc, out, err = run_cli(capsys, "calibrate", "--data", data, "--free", "dram.bandwith")
    assert rc == 2 and "dram.bandwith" in err


def test_parity_plot_and_residual_table(fits):
    import matplotlib

    matplotlib.use("Agg")
    fig = fits[0].parity_plot()
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert len(ax.collections) >= 3                  # one scatter per group (+ the band)
    text = fits[0].format_table()
    assert text.count("\n") == len(SHAPES) and "GEMM 8192x64x64" in text


def test_shipped_measurements_validate():
    """Every shipped measurement table loads (all rows valid)."""
    from perfmodel.fit._measurements import shipped_measurements

    assert {"a100_gemm.csv", "tmac_profiling.csv"} <= set(shipped_measurements())
    for name in shipped_measurements():
        data = pm.fit.load_measurements(name)
        assert len(data) and len(data.sha256) == 64
        assert all(r.source for r in data.rows)


def test_provenance_table_is_current():
    """docs/calibration.md's provenance table is the presets' [sources] as they are now
    (regenerate: python -m perfmodel.fit._provenance --write)."""
    from perfmodel.fit._provenance import current_doc_table, provenance_table

    assert current_doc_table() == provenance_table(), (
        "docs/calibration.md's provenance table is stale: run "
        "`.venv/bin/python -m perfmodel.fit._provenance --write`")
