"""The quantization quality proxy (perfmodel.workloads._quality, docs/quality.md).

Fast: one refit (full fit and 10-fold cross-validation in one compiled call) checks the
stored constants and the measured errors; the rest evaluates the stored model.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import perfmodel as pm
from perfmodel import ModelInputError
from perfmodel.workloads import _quality as q

# Measured with fit_quality() on the committed data (quality_fit.json, docs/quality.md):
# per method family, the median and 90th-percentile error factors exp|e| and the rms of
# e = log(ΔPPL_pred + u) - log(ΔPPL + u) (u: the printed resolution); the tests assert
# these numbers (rounded up in the last digit).
#                      median  p90   rms
IN_SAMPLE = {"all": (1.43, 2.74, 0.65), "weight-only": (1.43, 2.73, 0.67),
             "weight-activation": (1.55, 3.15, 0.66), "kv-cache": (1.32, 1.81, 0.52),
             "native-low-bit": (1.02, 1.07, 0.05)}
CROSS_VALIDATED = {"all": (1.46, 2.79, 0.68), "weight-only": (1.46, 2.74, 0.70),
                   "weight-activation": (1.62, 3.25, 0.70), "kv-cache": (1.34, 2.24, 0.58),
                   "native-low-bit": (2.14, 4.93, 1.14)}


@pytest.fixture(scope="module")
def rows():
    return q.load_quality_data()


@pytest.fixture(scope="module")
def stored():
    return q.quality_constants()


@pytest.fixture(scope="module")
def refit(rows):
    return q.fit_quality(write=False)


def _loss(r, **kw):
    """quality_loss at a data row, with the row's own 16-bit perplexity."""
    return q.quality_loss(r["params_b"] * 1e9, wbits=r["wbits"], abits=r["abits"],
                          kvbits=r["kvbits"], method=r["method"],
                          group_size=None if r["group"] == q.G_CHANNEL else r["group"],
                          family=r["family"], base_ppl=r["ppl_fp16"], **kw)


# ------------------------------------------------------------------------------ data
def test_loader_reports_every_bad_row_at_once(tmp_path):
    good = ("llama-2-7b,6.74,llama-2,gptq,4,16,16,128,wikitext2,5.61,5.47,,,"
            "GPTQ paper,Table 1,2210.17323,https://arxiv.org/abs/2210.17323,")
    head, tail = "llama-2-7b,6.74,llama-2,", ",S,T,2210.17323,https://x.org,"
    bad = [head + body for body in (
        "magicquant,4,16,16,128,wikitext2,5.61,5.47,," + tail,
        "gptq,0.5,16,16,128,wikitext2,5.61,5.47,," + tail,
        "gptq,4,16,16,128,wikitext2,-5.61,5.47,," + tail,
        "gptq,4,16,16,128,wikitext2,5.61,,," + tail,
        "gptq,4,16,16,128,wikitext2,5.61,5.47,,,,T,2210.17323,https://x.org,",
        "gptq,4,16,16,128,wikitext2,5.61,5.47,,,S,T,GPTQ,https://x.org,",
        "gptq,16,16,16,,wikitext2,5.61,5.47,," + tail,
        "gptq,4,16,16,g128,wikitext2,5.61,5.47,," + tail,
        "gptq,2,16,16,128,wikitext2,4200,5.47,," + tail)]
    f = tmp_path / "bad.csv"
    f.write_text("# a comment line\n" + ",".join(q.COLUMNS) + "\n" + good + "\n"
                 + "\n".join(bad) + "\n")
    with pytest.raises(ModelInputError) as exc:
        q.load_quality_data(f)
    msg = str(exc.value)
    assert msg.startswith(f"{len(bad)} bad quality row(s)")
    expected = ["bad.csv:4: method: 'magicquant' is not one of",
                "bad.csv:5: wbits: 0.5 is outside [1, 16]",
                "bad.csv:6: ppl: -5.61 must be a positive",
                "bad.csv:7: ppl_fp16: '' is not a number",
                "bad.csv:8: source: empty",
                "bad.csv:9: arxiv: 'GPTQ' is not an arXiv id",
                "bad.csv:10: wbits: no tensor class is quantized",
                "bad.csv:11: group_size: 'g128' must be",
                "bad.csv:12: ppl: 4200 is >= 10x the FP16 baseline"]
    for e in expected:
        assert e in msg, e
    assert len(q.load_quality_data(_only_good(tmp_path, good))) == 1


def _only_good(tmp_path, good):
    f = tmp_path / "good.csv"
    f.write_text(",".join(q.COLUMNS) + "\n" + good + "\n")
    return f


def test_every_row_cites_its_source_and_names_presets_consistently(rows):
    assert len(rows) >= 60
    for r in rows:
        assert r["source"] and r["table"] and r["url"].startswith("https://")
        assert re.fullmatch(r"\d{4}\.\d{4,5}", r["arxiv"])
        assert r["family"] == q._family_of(r["model"])
    presets = set(pm.workloads.list_presets())
    named = {r["model"]: r["params_b"] for r in rows if r["model"] in presets}
    assert {"llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3-8b", "llama-3-70b",
            "mistral-7b", "opt-1.3b", "opt-6.7b", "opt-13b", "opt-30b"} <= set(named)
    for name, params_b in named.items():   # a preset row's size is the preset's own
        assert params_b == pytest.approx(pm.workloads.preset(name).parameter_count() / 1e9,
                                         rel=0.01), name
    by_method = {m: sum(r["method"] == m for r in rows) for m in q.METHODS}
    assert all(by_method.values()), by_method
    assert sorted(q.quality_methods()) == sorted(q.METHODS)


def test_stored_constants_are_from_this_data(stored, refit):
    prov = stored["provenance"]
    assert prov["data_sha256"] == q.data_hash(), "data changed: run fit_quality()"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", prov["date"])
    assert prov["rows"] == refit["provenance"]["rows"]
    a, b = stored["constants"], refit["constants"]
    for key in ("alpha", "alpha_native", "gamma"):
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6)
    for m, ks in b["coefficients"].items():
        for k, v in ks.items():
            assert a["coefficients"][m][k] == pytest.approx(v, rel=1e-3), (m, k)
    assert a["family_factor"] == pytest.approx(b["family_factor"], rel=1e-4)
    for sec in ("in_sample", "cross_validation"):
        for fam, st in refit["errors"][sec].items():
            assert stored["errors"][sec][fam] == pytest.approx(st, rel=2e-3), (sec, fam)


# ------------------------------------------------------------------------------ model
def test_exactly_zero_at_16_bits_and_above():
    wl = pm.workloads.preset("llama-2-7b")
    b = jnp.array([16.0, 16.5, 32.0])
    for m in q.quality_methods():
        assert np.all(np.asarray(q.quality_loss(wl, wbits=b, abits=b, kvbits=b, method=m)) == 0)
    g = jax.grad(lambda b: q.quality_loss(wl, wbits=b, abits=b, kvbits=b))(16.0)
    assert float(g) == 0.0


def test_monotone_decreasing_with_finite_gradients_on_1_to_16(stored):
    """Every method, tensor class and size (0.125B-70B), bits 1..16: finite values and
    gradients, never increasing, strictly decreasing below 12 bits: one compiled sweep
    of the formula quality_loss evaluates; the public function at a few points."""
    consts = stored["constants"]
    grid = np.linspace(1.0, 16.0, 61)
    cases = [(kind, m, size) for kind in q.KINDS for m in q.quality_methods()
             for size in (0.125, 7.0, 70.0)]
    terms = [q._terms(consts, q._methods_for(consts, m, None, None), None)
             for _, m, _ in cases]
    col = lambda f: jnp.asarray([[f(c, t)] for c, t in zip(cases, terms)])   # (cases, 1)
    is_kind = {k: col(lambda c, t, k=k: float(c[0] == k)) for k in q.KINDS}

    def sweep(b):        # b: (cases, bits) -> ΔPPL, elementwise in b
        bits = {k: jnp.where(is_kind[k] > 0, b, 16.0) for k in q.KINDS}
        return q._delta_ppl_core(
            consts, wbits=bits["w"], abits=bits["a"], kvbits=bits["kv"],
            c={k: col(lambda c, t, k=k: t[0][k]) for k in q.KINDS}, group=128.0,
            alpha=col(lambda c, t: t[2]), floor_a=col(lambda c, t: t[3]),
            size_b=col(lambda c, t: c[2]), family_factor=1.0, base_ppl=5.0)

    b = jnp.broadcast_to(jnp.asarray(grid)[None, :], (len(cases), grid.size))
    (_, v), g = jax.jit(jax.value_and_grad(lambda b: (jnp.sum(sweep(b)), sweep(b)),
                                           has_aux=True))(b)
    g, v = np.asarray(g), np.asarray(v)
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(g))
    for i, (kind, m, size) in enumerate(cases):
        assert np.all(np.diff(v[i]) <= 0) and v[i, -1] == 0, cases[i]
        assert np.all(g[i, :-1] <= 0) and g[i, -1] == 0, cases[i]
        if not (m in q.NATIVE and kind == "a"):     # native: free down to its 8 bits
            assert np.all(g[i, grid < 12] < 0), cases[i]
    wl = pm.workloads.preset("llama-2-7b")
    for kind, m in (("wbits", "gptq"), ("abits", "quarot"), ("kvbits", "kvquant")):
        f = lambda b: q.quality_loss(wl, method=m, **{"wbits": 16.0, kind: b})
        gs = [float(jax.grad(f)(b)) for b in (1.0, 2.0, 3.5, 6.0, 15.0)]
        assert all(np.isfinite(gs)) and all(x < 0 for x in gs), (kind, m, gs)


def test_agrees_with_the_published_points_within_the_stated_error(rows, stored):
    consts = stored["constants"]
    pred = q._predict_table(consts, rows)
    for i in range(0, len(rows), 37):     # the public path is the same formula
        assert float(_loss(rows[i])) == pytest.approx(pred[i], rel=1e-5, abs=1e-9)
    err = q._log_errors(rows, pred)
    stats = q._grouped_stats(rows, err)
    for fam, (median, p90, rms) in IN_SAMPLE.items():
        assert stats[fam]["median_factor"] <= median, fam
        assert stats[fam]["p90_factor"] <= p90, fam
        assert stats[fam]["rms_log"] <= rms, fam
    for fam, st in stats.items():
        assert stored["errors"]["in_sample"][fam] == pytest.approx(st, rel=2e-3), fam


def test_cross_validated_error_per_method_family(refit):
    cv = refit["errors"]["cross_validation"]
    for fam, (median, p90, rms) in CROSS_VALIDATED.items():
        assert cv[fam]["median_factor"] <= median, fam
        assert cv[fam]["p90_factor"] <= p90, fam
        assert cv[fam]["rms_log"] <= rms, fam
    assert cv["all"]["rows"] == refit["provenance"]["rows"]


def test_a_larger_model_loses_less_at_the_same_bits():
    sizes = [pm.workloads.preset(n) for n in ("llama-2-7b", "llama-2-13b", "llama-2-70b")]
    for m in ("rtn", "gptq", "awq", "omniquant", "quip-sharp", "quarot"):
        for b in (2.0, 3.0, 4.0):
            losses = [float(q.quality_loss(wl, wbits=b, method=m)) for wl in sizes]
            assert losses[0] > losses[1] > losses[2], (m, b, losses)
    kv = [float(q.quality_loss(wl, wbits=16, kvbits=2, method="kvquant")) for wl in sizes]
    assert kv[0] > kv[1] > kv[2]
    # the same, by parameter count alone (size law for the 16-bit perplexity)
    counts = [float(q.quality_loss(p, wbits=3.0)) for p in (1e9, 7e9, 70e9, 400e9)]
    assert all(a > b for a, b in zip(counts, counts[1:]))


def test_jit_and_vmap_agree_with_eager():
    wl = pm.workloads.preset("llama-3-8b")
    f = lambda w, a, kv: q.quality_loss(wl, wbits=w, abits=a, kvbits=kv, method="quarot")
    eager = float(f(4.0, 6.0, 4.0))
    assert float(jax.jit(f)(4.0, 6.0, 4.0)) == pytest.approx(eager, rel=1e-6)
    grid = jax.vmap(f, in_axes=(0, None, None))(jnp.array([3.0, 4.0, 8.0]), 8.0, 8.0)
    assert grid.shape == (3,) and float(grid[0]) > float(grid[1]) > float(grid[2]) > 0


# ------------------------------------------------------------------------------ errors
def test_unknown_method_and_bad_input_raise():
    wl = pm.workloads.preset("llama-2-7b")
    with pytest.raises(ModelInputError, match=r"method 'magicquant' is unknown; valid: awq,"):
        q.quality_loss(wl, wbits=4, method="magicquant")
    with pytest.raises(ModelInputError, match=r"kv_method 'int2' is unknown"):
        q.quality_loss(wl, wbits=4, kvbits=2, kv_method="int2")
    with pytest.raises(ModelInputError, match=r"wbits = 0.5 must be a number >= 1"):
        q.quality_loss(wl, wbits=0.5)
    with pytest.raises(ModelInputError, match=r"kvbits"):
        q.quality_loss(wl, wbits=4, kvbits=float("nan"))
    with pytest.raises(ModelInputError, match=r"not a decoder LLM"):
        q.quality_loss(pm.workloads.preset("resnet-50"), wbits=4)
    with pytest.raises(ModelInputError, match=r"parameter count"):
        q.quality_loss(100.0, wbits=4)
    with pytest.raises(ModelInputError, match=r"family 'gpt5' is unknown"):
        q.quality_loss(wl, wbits=4, family="gpt5")
    with pytest.raises(ModelInputError, match=r"group_size = 0"):
        q.quality_loss(wl, wbits=4, group_size=0)


def test_report_states_extrapolation_and_assumptions():
    wl = pm.workloads.preset("llama-2-7b")
    inside = q.quality_report(wl, wbits=3, method="gptq")
    assert not inside.extrapolated and inside.assumptions == ()
    assert inside.delta_ppl == pytest.approx(float(q.quality_loss(wl, wbits=3)))
    assert inside.ppl_fp16 == 5.47 and inside.methods == {"weights": "gptq"}
    low = q.quality_report(wl, wbits=1.5, method="gptq")
    assert low.extrapolated and any("wbits = 1.5 is outside the gptq data (2-4 bits)" in r
                                    for r in low.reasons)
    mixed = q.quality_report(wl, wbits=4, abits=8, kvbits=4, method="gptq")
    assert mixed.methods == {"weights": "gptq", "activations": "smoothquant",
                             "KV cache": "rtn"}
    assert any("activations: gptq has no activations term" in a for a in mixed.assumptions)
    other = q.quality_report(pm.workloads.preset("qwen2-7b"), wbits=4)
    assert any("family unknown" in a for a in other.assumptions)
    assert any("size law" in a for a in other.assumptions)
    assert "ΔPPL" in str(other)
