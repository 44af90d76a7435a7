"""Quantization quality proxy: perplexity increase as a smooth function of W/A/KV bits.

Co-design that only counts bytes and FLOPs wins by driving bit-widths to zero. This module
prices that: the WikiText-2 perplexity increase over the 16-bit model (ΔPPL) of a
quantized decoder LLM, calibrated to published numbers (``fit/data/quality/*.csv``, one
row per published cell, each with its paper, table and arXiv id), pure JAX and
differentiable in every bit-width. docs/quality.md has the data, the equation, the
fitted constants and the errors.

Model (constants in ``fit/data/quality/quality_fit.json``, written by `fit_quality`)::

    n(b)   = 4^-b - 4^-16  for b < 16, else 0   (quantization noise power, exactly 0 at 16)
    n_w    = s(g) n(wbits),  s(g) = (g / 128)^gamma   (group size g; per-channel: g = 4096)
    E      = f_family (P / 7e9)^-alpha  sum_k c_k(method_k) (n_k + beta_k n_k^2),
             k in {weights, activations, KV cache}
    E'     = E / (1 + E / E_MAX)                   (saturation, E_MAX = 10 nats)
    ΔPPL   = PPL_16(model) (exp(E') - 1)

E is the increase of the log-perplexity (nats per token): a second-order expansion of the
loss in the quantization noise power of each tensor class (the linear term is the
Hessian-weighted noise, ``½ tr(H Σ)``; the quadratic one the compounding of errors through
the layers), scaled by the model size and a per-family sensitivity. PPL_16 is the model's
own 16-bit perplexity (``base_ppl``), by default a size law fitted to the baselines of
the data.

Main entry points: `quality_loss` (a plain JAX array, for ``jit``/``grad``/``vmap``),
`quality_report` (the same value with the data range it rests on and any extrapolation
stated), `quality_methods`, `load_quality_data` (the validated rows) and `fit_quality`
(refits and rewrites the constants file).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import functools
import hashlib
import json
import math
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np

from perfmodel._errors import ModelInputError

DATA_DIR = pathlib.Path(__file__).resolve().parents[1] / "fit" / "data" / "quality"
CONSTANTS_FILE = DATA_DIR / "quality_fit.json"

KINDS = ("w", "a", "kv")                    # weights, activations, KV cache
KIND_FIELDS = {"w": "wbits", "a": "abits", "kv": "kvbits"}
KIND_NAMES = {"w": "weights", "a": "activations", "kv": "KV cache"}
#: methods the data may name; each is fitted for the tensor classes it has rows for
METHODS = ("rtn", "gptq", "awq", "omniquant", "quip-sharp", "bitmod", "smoothquant", "quarot",
           "kivi", "kvquant", "bitnet-b1.58")
#: method families of the error report
METHOD_FAMILIES = ("weight-only", "weight-activation", "kv-cache", "native-low-bit")
#: model families of the data (sensitivity factor; "llama-2" is the reference, 1)
FAMILIES = ("llama-1", "llama-2", "llama-3", "opt", "mistral", "bitnet")
REFERENCE_FAMILY = "llama-2"
#: tensor classes a method has no rows for borrow another method's term (stated in reports)
FALLBACK = {"w": "rtn", "a": "smoothquant", "kv": "rtn"}
#: (method, kind) whose coefficient is not identifiable from the data, tied to another:
#: SmoothQuant's rows all have wbits = abits (its weights are plain per-channel RTN);
#: BitNet's 8-bit activations are the native recipe of every BitNet row.
TIES = {("smoothquant", "w"): ("rtn", "w"), ("bitnet-b1.58", "a"): ("smoothquant", "a")}

#: natively trained low-bit methods and the bit-widths they are trained at, per tensor
#: class: their own size exponent (the gap to FP16 closes with scale by capacity, not by
#: noise averaging), and no cost for a class at or above its native bits (the noise of a
#: class counts from there: max(n(b) - n(b_native), 0))
NATIVE = {"bitnet-b1.58": {"a": 8.0}}

BITS_RANGE = (1.0, 16.0)      # valid bit-widths; >= 16 is lossless (ΔPPL = 0)
G_CHANNEL = 4096.0            # per-channel weight scales counted as this group size
SIZE_REF_B = 7.0              # model size of the reference (billions of parameters)
E_MAX = 10.0                  # bound of the log-perplexity increase (nats; ~ ln(vocab/PPL))
COLLAPSE = 10.0               # rows with PPL >= COLLAPSE x PPL_16 are collapsed, not recorded
DATASETS = ("wikitext2", "unstated")
COLUMNS = ("model", "params_b", "family", "method", "wbits", "abits", "kvbits", "group_size",
           "dataset", "ppl", "ppl_fp16", "c4_ppl", "c4_ppl_fp16", "source", "table", "arxiv",
           "url", "notes")
CV_FOLDS = 10
CV_SEED = 0
PRIOR_SIGMA_LOGC = 4.0        # weak pull of each log c to its class median (stabilizes CV
                              # folds); not applied to natively trained methods
PRIOR_SIGMA_FAMILY = 1.0      # weak pull of each family log-factor to 0 (the reference)
LM_MAX_STEPS = 200            # Levenberg-Marquardt step limit per stage (converges in < 60)


# ---------------------------------------------------------------------------- data
def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _data_files(paths=None) -> list[pathlib.Path]:
    if paths is None:
        return sorted(DATA_DIR.glob("*.csv"))
    return [pathlib.Path(p) for p in ([paths] if isinstance(paths, (str, pathlib.Path))
                                      else paths)]


def load_quality_data(paths=None) -> list[dict]:
    """The published quality rows, validated: every CSV in fit/data/quality/ (or the
    file(s) ``paths``). Lines starting with ``#`` are comments.

    Each row must name a known method, bit-widths in [1, 16] with at least one below 16,
    a group size (positive integer, ``channel`` or empty), positive perplexities below
    the collapse threshold, its FP16 baseline, and its source (paper, table, arXiv id,
    URL). All bad rows are reported at once in one `ModelInputError` (file, line, column,
    reason). Returned rows carry parsed values plus ``file``, ``line``, ``delta`` (ΔPPL)
    and ``resolution`` (one unit of the last printed digit)."""
    files = _data_files(paths)
    if not files:
        raise ModelInputError(f"no quality data: no *.csv in {DATA_DIR}.")
    rows, bad = [], []
    for f in files:
        with f.open(newline="") as fh:
            numbered = [(i + 1, line) for i, line in enumerate(fh)
                        if line.strip() and not line.lstrip().startswith("#")]
        if not numbered:
            bad.append(f"{f.name}: no header")
            continue
        reader = csv.DictReader([line for _, line in numbered])
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            bad.append(f"{f.name}:{numbered[0][0]}: header: missing column(s) "
                       f"{', '.join(missing)}")
            continue
        for (lineno, _), raw in zip(numbered[1:], reader):
            row, errs = _parse_row(raw)
            where = f"{f.name}:{lineno}"
            bad += [f"{where}: {col}: {why}" for col, why in errs]
            if not errs:
                row.update(file=f.name, line=lineno)
                rows.append(row)
    if bad:
        raise ModelInputError(f"{len(bad)} bad quality row(s): " + "; ".join(bad) + ".")
    return rows


def _parse_row(raw: dict) -> tuple[dict, list[tuple[str, str]]]:
    errs = []
    out = {k: (raw.get(k) or "").strip() for k in COLUMNS}

    def number(col, lo=None, hi=None, positive=False):
        text = out[col]
        try:
            v = float(text)
        except ValueError:
            errs.append((col, f"{text!r} is not a number"))
            return None
        if not math.isfinite(v) or (positive and v <= 0):
            errs.append((col, f"{text} must be a positive finite number"))
            return None
        if lo is not None and not lo <= v <= hi:
            errs.append((col, f"{text} is outside [{lo:g}, {hi:g}]"))
            return None
        return v

    if not out["model"]:
        errs.append(("model", "empty"))
    params = number("params_b", positive=True)
    if out["family"] not in FAMILIES:
        errs.append(("family", f"{out['family']!r} is not one of {', '.join(FAMILIES)}"))
    if out["method"] not in METHODS:
        errs.append(("method", f"{out['method']!r} is not one of {', '.join(METHODS)}"))
    bits = {k: number(KIND_FIELDS[k], *BITS_RANGE) for k in KINDS}
    if all(b is not None for b in bits.values()) and min(bits.values()) >= 16:
        errs.append(("wbits", "no tensor class is quantized (all bit-widths are 16)"))
    g = out["group_size"]
    if g not in ("", "channel") and not (g.isdigit() and int(g) > 0):
        errs.append(("group_size", f"{g!r} must be a positive integer, 'channel' or empty"))
    elif g and bits["w"] is not None and bits["w"] >= 16:
        errs.append(("group_size", f"{g!r} given but the weights are not quantized"))
    if out["dataset"] not in DATASETS:
        errs.append(("dataset", f"{out['dataset']!r} is not one of {', '.join(DATASETS)}"))
    ppl = number("ppl", positive=True)
    base = number("ppl_fp16", positive=True)
    if ppl is not None and base is not None and ppl >= COLLAPSE * base:
        errs.append(("ppl", f"{out['ppl']} is >= {COLLAPSE:g}x the FP16 baseline {out['ppl_fp16']} "
                     "(a collapsed model: not recorded)"))
    c4 = [out["c4_ppl"], out["c4_ppl_fp16"]]
    if any(c4):
        if not all(c4):
            errs.append(("c4_ppl", "C4 perplexity and its FP16 baseline go together"))
        else:
            number("c4_ppl", positive=True)
            number("c4_ppl_fp16", positive=True)
    for col in ("source", "table"):
        if not out[col]:
            errs.append((col, "empty: every row cites its paper and table"))
    if not re.fullmatch(r"\d{4}\.\d{4,5}", out["arxiv"]):
        errs.append(("arxiv", f"{out['arxiv']!r} is not an arXiv id like 2210.17323"))
    if not out["url"].startswith(("https://", "http://")):
        errs.append(("url", f"{out['url']!r} is not a URL"))
    if errs:
        return {}, errs
    row = dict(out, params_b=params, ppl=ppl, ppl_fp16=base,
               wbits=bits["w"], abits=bits["a"], kvbits=bits["kv"],
               group=(G_CHANNEL if g == "channel" else float(g) if g else None),
               delta=ppl - base,
               resolution=10.0 ** -max(_decimals(out["ppl"]), _decimals(out["ppl_fp16"])),
               method_family=_method_family(out["method"], bits))
    return row, errs


def _method_family(method, bits) -> str:
    if method == "bitnet-b1.58":
        return "native-low-bit"
    if bits["a"] < 16:
        return "weight-activation"
    if bits["w"] < 16:
        return "weight-only"
    return "kv-cache"


def data_hash(paths=None) -> str:
    """SHA-256 over the data files (sorted by name, name and bytes of each)."""
    h = hashlib.sha256()
    for f in sorted(_data_files(paths), key=lambda p: p.name):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------- model
def _noise(bits):
    """Quantization noise power relative to the signal, 4^-b, shifted so that it is
    exactly 0 at (and above) 16 bits; strictly decreasing below 16."""
    bits = jnp.asarray(bits, dtype=jnp.result_type(float))
    return jnp.where(bits < 16.0, jnp.exp2(-2.0 * bits) - 2.0 ** -32, 0.0)


def _log_increase(c, beta, n, scale):
    """E' of the module docstring for per-class coefficients ``c[k]``, curvatures
    ``beta[k]`` and noise powers ``n[k]`` (k = w, a, kv); ``scale`` = f_family (P/P0)^-a."""
    e = scale * sum(c[k] * (n[k] + beta[k] * n[k] * n[k]) for k in KINDS)
    # two exact forms of E / (1 + E / E_MAX): precise for small E, and, once saturated,
    # one whose float rounding stays monotone (E_MAX - E_MAX^2 / (E_MAX + E))
    return jnp.where(e < E_MAX, e / (1.0 + e / E_MAX), E_MAX - E_MAX ** 2 / (E_MAX + e))


def _group_factor(group, gamma):
    return (jnp.asarray(group, dtype=jnp.result_type(float)) / 128.0) ** gamma


# ---------------------------------------------------------------------------- fit
def _coefficient_keys(rows) -> list[tuple[str, str]]:
    present = {(r["method"], k) for r in rows for k in KINDS if r[KIND_FIELDS[k]] < 16}
    return sorted(present - set(TIES))


def _resolve(method, kind, free) -> tuple[str, str]:
    """The fitted coefficient a (method, kind) uses: its own, a tie, or the fallback."""
    key = (method, kind)
    if key in TIES:
        key = TIES[key]
    if key not in free:
        key = (FALLBACK[kind], kind)
        key = TIES.get(key, key)
    return key


def _design(rows, free, fams):
    """Arrays of the rows for the vectorized model."""
    idx = {k: i for i, k in enumerate(free)}
    # natively trained methods are not pulled toward the post-training ones
    sigma = [1e3 if m in NATIVE else PRIOR_SIGMA_LOGC for m, _ in free]
    d = {f"bits_{k}": np.array([r[KIND_FIELDS[k]] for r in rows]) for k in KINDS}
    d.update({f"ci_{k}": np.array([idx[_resolve(r["method"], k, free)] for r in rows])
              for k in KINDS})
    d["group"] = np.array([r["group"] if r["group"] is not None else 128.0 for r in rows])
    d["has_group"] = np.array([r["group"] is not None for r in rows])
    d["size"] = np.array([r["params_b"] for r in rows])
    d["native"] = np.array([r["method"] in NATIVE for r in rows])
    d["floor_a"] = np.array([NATIVE.get(r["method"], {}).get("a", 16.0) for r in rows])
    fi = {f: i for i, f in enumerate(fams)}
    d["fam"] = np.array([fi.get(r["family"], -1) for r in rows])
    d["base"] = np.array([r["ppl_fp16"] for r in rows])
    d["delta"] = np.array([max(r["delta"], 0.0) for r in rows])
    d["u"] = np.array([r["resolution"] for r in rows])
    d["prior_sigma"] = np.array(sigma)
    return d


# parameter vector: log c (n_free) | alpha | gamma | log beta_w, beta_a, beta_kv |
# alpha_native | log f (n_fam)
NG = 6


def _unpack(theta, n_free, n_fam):
    logc = theta[:n_free]
    alpha, gamma = theta[n_free], theta[n_free + 1]
    beta = {k: jnp.exp(theta[n_free + 2 + i]) for i, k in enumerate(KINDS)}
    alpha_native = theta[n_free + 5]
    logf = theta[n_free + NG:n_free + NG + n_fam]
    return logc, alpha, gamma, beta, alpha_native, logf


def _predict_rows(theta, d, n_free, n_fam):
    """ΔPPL of the rows of design ``d`` for parameter vector ``theta``: the runtime
    formula `_delta_ppl_core` with per-row constants."""
    logc, alpha, gamma, beta, alpha_native, logf = _unpack(theta, n_free, n_fam)
    logf_row = jnp.where(d["fam"] >= 0, jnp.concatenate([logf, jnp.zeros(1)])[d["fam"]], 0.0)
    return _delta_ppl_core(
        {"gamma": gamma, "beta": beta, "size_ref_b": SIZE_REF_B},
        wbits=d["bits_w"], abits=d["bits_a"], kvbits=d["bits_kv"],
        c={k: jnp.exp(logc)[d[f"ci_{k}"]] for k in KINDS},
        group=jnp.where(d["has_group"], d["group"], 128.0),
        alpha=jnp.where(d["native"], alpha_native, alpha), floor_a=d["floor_a"],
        size_b=d["size"], family_factor=jnp.exp(logf_row), base_ppl=d["base"])


def _residuals(theta, d, n_free, n_fam, prior_mu, mask):
    pred = _predict_rows(theta, d, n_free, n_fam)
    r = (jnp.log(pred + d["u"]) - jnp.log(d["delta"] + d["u"])) * mask
    prior = jnp.concatenate([(theta[:n_free] - prior_mu) / d["prior_sigma"],
                             theta[n_free + NG:] / PRIOR_SIGMA_FAMILY])
    return jnp.concatenate([r, prior])


def _levenberg_marquardt(res_jac, res, theta, max_steps=LM_MAX_STEPS, rtol=1e-12):
    """Minimize 0.5 |r(theta)|^2 by Levenberg-Marquardt with Marquardt's diagonal
    scaling; ``res_jac(theta)`` returns (r, dr/dtheta), ``res(theta)`` r (both jitted
    JAX functions); a step is accepted only when it lowers the cost; stops when the cost
    no longer falls by ``rtol`` relative or the damping exceeds 1e10."""
    r, J = (np.asarray(x) for x in res_jac(theta))
    cost, lam = 0.5 * float(r @ r), 1e-2
    eye = np.eye(theta.size)
    for _ in range(max_steps):
        H = J.T @ J
        step = np.linalg.solve(H + lam * (np.diag(np.diag(H)) + 1e-12 * eye), -(J.T @ r))
        trial = theta + step
        r_new = np.asarray(res(trial))
        c_new = 0.5 * float(r_new @ r_new)
        if np.isfinite(c_new) and c_new < cost:
            converged = cost - c_new <= rtol * cost
            theta, cost, lam = trial, c_new, max(lam * 0.3, 1e-10)
            if converged:
                break
            r, J = (np.asarray(x) for x in res_jac(theta))
        else:
            lam *= 10.0
            if lam > 1e10:
                break
    return theta, cost


def _fit_theta(rows, free, fams, masks):
    """Least squares of log(ΔPPL_pred + u) - log(ΔPPL + u) over the rows (u = the printed
    resolution) plus weak priors (PRIOR_SIGMA_*), by Levenberg-Marquardt on the JAX
    residuals and their forward-mode Jacobian (float64): a first stage with the
    coefficient priors at ln 10, a second with each centred on the median of its tensor
    class. One fit per 0/1 row mask in ``masks`` (the training rows); the residual and
    Jacobian are compiled once for all. Returns the parameter vectors (numpy)."""
    n_free, n_fam = len(free), len(fams)
    kind_idx = [np.flatnonzero([k == kind and m not in NATIVE for m, k in free])
                for kind in KINDS]
    out = []
    with jax.enable_x64(True):
        d = {k: jnp.asarray(v) for k, v in _design(rows, free, fams).items()}
        res = jax.jit(lambda t, mu, m: _residuals(t, d, n_free, n_fam, mu, m))
        res_jac = jax.jit(lambda t, mu, m: (res(t, mu, m), jax.jacfwd(res)(t, mu, m)))
        theta0 = np.concatenate([np.full(n_free, np.log(10.0)), [0.2, 0.3],
                                 np.log([16.0, 16.0, 16.0]), [2.0], np.zeros(n_fam)])
        for mask in masks:
            m = jnp.asarray(np.asarray(mask, dtype=float))
            mu = np.full(n_free, np.log(10.0))
            theta = theta0
            for _ in range(2):
                theta, _ = _levenberg_marquardt(lambda t: res_jac(t, mu, m),
                                                lambda t: res(t, mu, m), theta)
                for idx in kind_idx:
                    if idx.size:
                        mu[idx] = np.median(theta[idx])
            out.append(theta)
    return out


def _log_errors(rows, pred) -> np.ndarray:
    """Per-row error of the fit's objective: log(ΔPPL_pred + u) - log(ΔPPL + u)."""
    d = np.array([max(r["delta"], 0.0) for r in rows])
    u = np.array([r["resolution"] for r in rows])
    return np.log(np.asarray(pred) + u) - np.log(d + u)


def _error_stats(err) -> dict:
    a = np.abs(np.asarray(err))
    return {"rows": int(a.size), "rms_log": round(float(np.sqrt(np.mean(a ** 2))), 4),
            "median_factor": round(float(np.exp(np.median(a))), 4),
            "p90_factor": round(float(np.exp(np.quantile(a, 0.9))), 4),
            "max_factor": round(float(np.exp(a.max())), 3)}


def _grouped_stats(rows, err) -> dict:
    out = {"all": _error_stats(err)}
    for fam in METHOD_FAMILIES:
        m = [i for i, r in enumerate(rows) if r["method_family"] == fam]
        if m:
            out[fam] = _error_stats(np.asarray(err)[m])
    for meth in METHODS:
        m = [i for i, r in enumerate(rows) if r["method"] == meth]
        if m:
            out[f"method:{meth}"] = _error_stats(np.asarray(err)[m])
    return out


def _config_key(r):
    return (r["model"], r["method"], r["wbits"], r["abits"], r["kvbits"], r["group"])


def _folds(rows, folds=CV_FOLDS, seed=CV_SEED) -> np.ndarray:
    keys = sorted({_config_key(r) for r in rows}, key=repr)
    perm = np.random.default_rng(seed).permutation(len(keys))
    fold_of = {k: int(perm[i] % folds) for i, k in enumerate(keys)}
    return np.array([fold_of[_config_key(r)] for r in rows])


def _fit_all(rows, folds):
    """The full fit and (``folds`` > 0) the cross-validation fits, in one compiled call.
    Returns (free, fams, theta, [(fold index array, theta of the other folds)])."""
    free, fams = _coefficient_keys(rows), _fitted_families(rows)
    fold = _folds(rows, folds) if folds else np.zeros(len(rows), dtype=int)
    masks = [np.ones(len(rows))] + [fold != j for j in range(folds)]
    thetas = _fit_theta(rows, free, fams, masks)
    return free, fams, thetas[0], [(np.flatnonzero(fold == j), thetas[1 + j])
                                   for j in range(folds)]


def _cv_errors(rows, free, fams, cv) -> np.ndarray:
    err = np.zeros(len(rows))
    for test, theta in cv:     # all rows each time: equal shapes reuse the compiled ops
        err[test] = _log_errors(rows, _predict_table(_constants(theta, free, fams), rows))[test]
    return err


def cross_validate(rows=None, folds: int = CV_FOLDS):
    """Held-out errors: the rows are split into ``folds`` groups by configuration (model,
    method, bits, group size: the same cell published by two papers is held out
    together; fixed seed), each group is predicted by a fit to the others (a coefficient
    whose rows are all held out is then set by its prior, the median of its tensor
    class). Returns the per-row held-out log errors (in row order) and their statistics
    per method family and method."""
    rows = load_quality_data() if rows is None else rows
    free, fams, _, cv = _fit_all(rows, folds)
    err = _cv_errors(rows, free, fams, cv)
    return err, _grouped_stats(rows, err)


def _fitted_families(rows) -> list[str]:
    """Families with their own sensitivity factor: all but the reference and BitNet
    (whose only method is BitNet: the two are not separable)."""
    return sorted({r["family"] for r in rows} - {REFERENCE_FAMILY, "bitnet"})


def _constants(theta, free, fams) -> dict:
    theta = np.asarray(theta, dtype=float)
    n_free = len(free)
    coef = {}
    for (m, k), v in zip(free, np.exp(theta[:n_free])):
        coef.setdefault(m, {})[k] = float(v)
    fam = {REFERENCE_FAMILY: 1.0, "bitnet": 1.0}
    fam.update({f: float(np.exp(v)) for f, v in zip(fams, theta[n_free + NG:])})
    return {"alpha": float(theta[n_free]), "alpha_native": float(theta[n_free + 5]),
            "native_methods": {m: dict(v) for m, v in NATIVE.items()},
            "gamma": float(theta[n_free + 1]),
            "beta": {k: float(np.exp(theta[n_free + 2 + i])) for i, k in enumerate(KINDS)},
            "coefficients": coef, "family_factor": fam,
            "ties": {f"{m}.{k}": f"{tm}.{tk}" for (m, k), (tm, tk) in TIES.items()},
            "fallback": dict(FALLBACK), "e_max": E_MAX, "g_channel": G_CHANNEL,
            "size_ref_b": SIZE_REF_B}


@jax.jit
def _predict_batch(numbers, arrays):
    return _delta_ppl_core(numbers, **arrays)


def _predict_table(consts, rows) -> np.ndarray:
    """ΔPPL of data rows (each with its own baseline) from a constants dict: the runtime
    formula `_delta_ppl_core`, evaluated once (compiled) over arrays of the rows."""
    terms = [_terms(consts, _methods_for(consts, r["method"], None, None), r["group"])
             for r in rows]
    col = lambda f: np.array([f(r, t) for r, t in zip(rows, terms)], dtype=np.float32)
    arrays = dict(
        wbits=col(lambda r, t: r["wbits"]), abits=col(lambda r, t: r["abits"]),
        kvbits=col(lambda r, t: r["kvbits"]), c={k: col(lambda r, t: t[0][k]) for k in KINDS},
        group=col(lambda r, t: t[1]), alpha=col(lambda r, t: t[2]),
        floor_a=col(lambda r, t: t[3]), size_b=col(lambda r, t: r["params_b"]),
        family_factor=col(lambda r, t: consts["family_factor"].get(r["family"], 1.0)),
        base_ppl=col(lambda r, t: r["ppl_fp16"]))
    numbers = {k: consts[k] for k in ("gamma", "beta", "size_ref_b")}
    return np.asarray(_predict_batch(numbers, arrays), dtype=float)


def _fit_base_law(rows) -> dict:
    """16-bit perplexities: per model of the data, the median over its sources of each
    source's baseline (the papers differ in context length), and for other models a size
    law PPL_16 = A_family (P / 7e9)^-b fitted to the WikiText-2 ones (shared exponent b,
    per-family prefactor)."""
    per_model = {}
    for r in rows:
        per_model.setdefault(r["model"], {}).setdefault(r["source"], r)
    models = {m: float(np.median([r["ppl_fp16"] for r in by_src.values()]))
              for m, by_src in per_model.items()}
    pts = [(next(iter(by_src.values())), models[m]) for m, by_src in per_model.items()
           if all(r["dataset"] == "wikitext2" for r in by_src.values())]
    fams = sorted({r["family"] for r, _ in pts})
    X = np.zeros((len(pts), len(fams) + 1))
    y = np.zeros(len(pts))
    for i, (r, b) in enumerate(pts):
        X[i, fams.index(r["family"])] = 1.0
        X[i, -1] = -np.log(r["params_b"] / SIZE_REF_B)
        y[i] = np.log(b)
    sol, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ sol
    return {"models": {m: round(v, 4) for m, v in sorted(models.items())},
            "exponent": round(float(sol[-1]), 5),
            "prefactor": {f: round(float(np.exp(v)), 5) for f, v in zip(fams, sol[:-1])},
            "rms_log": round(float(np.sqrt(np.mean(resid ** 2))), 4)}


def _data_range(rows) -> dict:
    rng = {}
    for m in METHODS:
        mr = [r for r in rows if r["method"] == m]
        if not mr:
            continue
        entry = {"rows": len(mr), "size_b": [min(r["params_b"] for r in mr),
                                             max(r["params_b"] for r in mr)]}
        for k in KINDS:
            b = [r[KIND_FIELDS[k]] for r in mr if r[KIND_FIELDS[k]] < 16]
            if b:
                entry[k] = [min(b), max(b)]
        g = [r["group"] for r in mr if r["group"] is not None]
        entry["group"] = [min(g), max(g)] if g else None
        rng[m] = entry
    return rng


def fit_quality(rows=None, *, path=CONSTANTS_FILE, write: bool = True,
                cross_validation: bool = True) -> dict:
    """Fit the proxy to the data and (``write``) store the constants, with provenance
    (data files, their SHA-256, the date) and the in-sample and cross-validated errors
    per method family, in ``path`` (fit/data/quality/quality_fit.json). The runtime
    reads that file; it never refits at import. Returns the stored dict.

    Main arguments: ``rows`` (default: `load_quality_data()`). Other arguments: ``path``,
    ``write``, ``cross_validation`` (the 10-fold grouped CV of `cross_validate`)."""
    from_files = rows is None
    rows = load_quality_data() if rows is None else rows
    free, fams, theta, cv = _fit_all(rows, CV_FOLDS if cross_validation else 0)
    consts = _constants(theta, free, fams)
    consts["base_ppl"] = _fit_base_law(rows)
    pred = _predict_table(consts, rows)
    out = {
        "schema_version": 1,
        "model": ("dppl = ppl16 * expm1(E/(1 + E/E_MAX)); E = family_factor * "
                  "(P/7e9)^-alpha * sum_k c_k*(n_k + beta_k*n_k^2); n(b) = 4^-b - 4^-16 "
                  "(0 at b >= 16); n_w *= (g/128)^gamma"),
        "provenance": {
            "fit_function": "perfmodel.workloads._quality.fit_quality",
            "optimizer": "Levenberg-Marquardt on JAX residuals and Jacobian (float64; "
                         "two stages: priors at ln 10, then at the class medians), objective "
                         "log(dppl_pred + u) - log(dppl + u), u = printed resolution",
            "date": datetime.date.today().isoformat(),
            "data_files": sorted({r["file"] for r in rows}),
            "data_sha256": data_hash() if from_files else None,
            "rows": len(rows),
        },
        "constants": consts,
        "data_range": _data_range(rows),
        "errors": {"in_sample": _grouped_stats(rows, _log_errors(rows, pred))},
    }
    if cross_validation:
        out["errors"]["cross_validation"] = _grouped_stats(rows, _cv_errors(rows, free, fams, cv))
        out["errors"]["cross_validation_scheme"] = (
            f"{CV_FOLDS}-fold, grouped by configuration (model, method, bits, group), "
            f"seed {CV_SEED}")
    if write:
        pathlib.Path(path).write_text(json.dumps(out, indent=1, sort_keys=False) + "\n")
        quality_constants.cache_clear()
    return out


# ---------------------------------------------------------------------------- runtime
@functools.lru_cache(maxsize=None)
def quality_constants() -> dict:
    """The stored fit (fit/data/quality/quality_fit.json), read once on first use."""
    if not CONSTANTS_FILE.is_file():
        raise ModelInputError(f"quality constants {CONSTANTS_FILE} are missing; run "
                              "perfmodel.workloads.fit_quality() to create them.")
    return json.loads(CONSTANTS_FILE.read_text())


def quality_methods() -> list[str]:
    """Methods the proxy is calibrated for (each for the tensor classes it has data on;
    see `quality_report` for the others)."""
    return sorted(quality_constants()["data_range"])


def _methods_for(consts, method, a_method, kv_method) -> dict:
    """Which fitted coefficient serves each tensor class: ``method`` where it has one
    (or a documented tie), else the explicit ``a_method``/``kv_method``, else the
    fallback."""
    coef = consts["coefficients"]
    ties = {tuple(k.split(".")): tuple(v.split(".")) for k, v in consts["ties"].items()}
    chosen = {}
    for k, explicit in (("w", None), ("a", a_method), ("kv", kv_method)):
        m = explicit or method
        key = ties.get((m, k), (m, k))
        if key[1] not in coef.get(key[0], {}):
            key = (consts["fallback"][k], k)
            key = ties.get(key, key)
        chosen[k] = key
    return chosen


def _terms(consts, methods, group):
    """Per-class coefficients, the group size (128, i.e. a group factor of 1, when the
    weights' method has no groups), the size exponent and the native activation bits
    (16 unless the weights' method is trained at lower ones) for ``methods``."""
    coef = consts["coefficients"]
    c = {k: coef[methods[k][0]][methods[k][1]] for k in KINDS}
    native = consts["native_methods"].get(methods["w"][0])
    alpha = consts["alpha_native" if native is not None else "alpha"]
    floor_a = (native or {}).get("a", 16.0)
    return c, (128.0 if group is None else group), alpha, floor_a


def _delta_ppl_core(consts, *, wbits, abits, kvbits, c, group, alpha, size_b, family_factor,
                    base_ppl, floor_a=16.0):
    """ΔPPL = PPL_16 (exp(E') - 1) of the module docstring; every argument may be an
    array (broadcast together). ``group`` 128 gives the group factor 1; ``floor_a`` is the
    activation bit-width a native method is trained at (no cost at or above it)."""
    f = jnp.result_type(float)
    n = {"w": _noise(wbits) * _group_factor(group, consts["gamma"]),
         "a": jnp.maximum(_noise(abits) - _noise(floor_a), 0.0), "kv": _noise(kvbits)}
    scale = jnp.asarray(family_factor, dtype=f) * (
        jnp.asarray(size_b, dtype=f) / consts["size_ref_b"]) ** (-jnp.asarray(alpha, dtype=f))
    e = _log_increase({k: jnp.asarray(c[k], dtype=f) for k in KINDS}, consts["beta"], n, scale)
    return jnp.asarray(base_ppl, dtype=f) * jnp.expm1(e)


def _delta_ppl(consts, *, wbits, abits, kvbits, methods, group, size_b, family_factor,
               base_ppl):
    c, group, alpha, floor_a = _terms(consts, methods, group)
    numbers = {k: consts[k] for k in ("gamma", "beta", "size_ref_b")}
    # one compiled computation (also inside the caller's jit/grad/vmap: it inlines)
    return _predict_batch(numbers, dict(wbits=wbits, abits=abits, kvbits=kvbits, c=c,
                                        group=group, alpha=alpha, size_b=size_b,
                                        family_factor=family_factor, base_ppl=base_ppl,
                                        floor_a=floor_a))


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _family_of(name: str) -> str | None:
    name = name.lower()
    for prefix, fam in (("llama-1", "llama-1"), ("llama-2", "llama-2"), ("llama-3", "llama-3"),
                        ("opt-", "opt"), ("mistral", "mistral"), ("bitnet", "bitnet")):
        if name.startswith(prefix):
            return fam
    return None


@dataclasses.dataclass(frozen=True)
class _Inputs:
    size_b: object
    family: str
    family_inferred: bool
    methods: dict
    group: object
    base_ppl: object
    base_from_law: bool


def _prepare(workload, wbits, abits, kvbits, method, group_size, a_method, kv_method,
             family, base_ppl) -> _Inputs:
    consts = quality_constants()
    valid = quality_methods()
    for field, m in (("method", method), ("a_method", a_method), ("kv_method", kv_method)):
        if m is not None and m not in valid:
            raise ModelInputError(f"quality {field} {m!r} is unknown; valid: "
                                  f"{', '.join(valid)}.")
    for field, b in (("wbits", wbits), ("abits", abits), ("kvbits", kvbits)):
        if _is_concrete(b):
            v = np.asarray(b, dtype=float)
            if not np.all(np.isfinite(v)) or np.any(v < BITS_RANGE[0]):
                raise ModelInputError(
                    f"{field} = {b!r} must be a number >= {BITS_RANGE[0]:g} (the proxy "
                    f"covers [{BITS_RANGE[0]:g}, {BITS_RANGE[1]:g}]; >= 16 is lossless).")
    from perfmodel.workloads._llm import LLM

    name = ""
    if isinstance(workload, LLM):
        size_b = workload.parameter_count() / 1e9
        name = workload.name
    elif isinstance(workload, (int, float, np.ndarray, jax.Array, np.number)):
        if _is_concrete(workload):
            v = np.asarray(workload, dtype=float)
            if not np.all(np.isfinite(v)) or np.any(v < 1e6):
                raise ModelInputError(
                    f"workload = {workload!r} must be an LLM or its parameter count "
                    "(a number >= 1e6).")
        size_b = workload / 1e9
    else:
        raise ModelInputError(
            f"quality proxy: workload {getattr(workload, 'name', workload)!r} is not a "
            "decoder LLM or a parameter count; the proxy is calibrated on LLMs only.")
    fam_inferred = family is None
    if family is None:
        family = _family_of(name) or REFERENCE_FAMILY
    elif family not in consts["constants"]["family_factor"]:
        raise ModelInputError(f"quality family {family!r} is unknown; valid: "
                              f"{', '.join(sorted(consts['constants']['family_factor']))}.")
    if group_size is None:
        group = consts["constants"]["g_channel"]
    else:
        if _is_concrete(group_size) and not np.all(np.asarray(group_size, dtype=float) >= 1):
            raise ModelInputError(f"group_size = {group_size!r} must be >= 1 (weights per "
                                  "scale) or None for per-channel scales.")
        group = group_size
    methods = _methods_for(consts["constants"], method, a_method, kv_method)
    wm = methods["w"][0]
    if consts["data_range"].get(wm, {}).get("group") is None:
        group = None            # the method's own granularity (codebooks, native ternary)
    bl = consts["constants"]["base_ppl"]
    law = base_ppl is None and name not in bl["models"]
    if base_ppl is None and not law:
        base_ppl = bl["models"][name]
    elif law:
        pref = bl["prefactor"].get(family, bl["prefactor"][REFERENCE_FAMILY])
        base_ppl = pref * (jnp.asarray(size_b, dtype=jnp.result_type(float))
                           / SIZE_REF_B) ** (-bl["exponent"])
    elif _is_concrete(base_ppl) and not np.all(np.asarray(base_ppl, dtype=float) > 0):
        raise ModelInputError(f"base_ppl = {base_ppl!r} must be a positive perplexity.")
    return _Inputs(size_b, family, fam_inferred, methods, group, base_ppl, law)


def effective_wbits(workload, wbits):
    """One weight bit-width for weights quantized per group (``{"attention": 8, "ffn":
    3}``, `LLM.group_bits`): the width whose quantization-noise power 4^-b equals the
    parameter-weighted mean of the groups' (noise adds over the weights; assumed, as
    the published rows quantize every matrix alike). A number passes through."""
    if not isinstance(wbits, dict):
        return wbits
    if not hasattr(workload, "group_bits"):
        raise ModelInputError("wbits per group needs an LLM (its parameter split), not a "
                              "parameter count.")
    wa, wf = workload.group_bits(wbits)
    ffn = float(workload._ffn_block_params())
    mixer = float(workload.parameter_count(embeddings=False)) - ffn
    share = ffn / (ffn + mixer)
    noise = (1.0 - share) * 4.0 ** (-jnp.asarray(wa, float)) + share * 4.0 ** (
        -jnp.asarray(wf, float))
    return -jnp.log(noise) / jnp.log(4.0)


def quality_loss(workload, *, wbits, abits=16.0, kvbits=16.0, method: str = "gptq",
                 group_size=128, a_method: str | None = None, kv_method: str | None = None,
                 family: str | None = None, base_ppl=None):
    """WikiText-2 perplexity increase (ΔPPL) of ``workload`` quantized to ``wbits`` /
    ``abits`` / ``kvbits``, a plain JAX array: pure, jit/vmap-able, differentiable in
    every bit-width (non-increasing, strictly decreasing below 16, exactly 0 at 16 and
    above). Use it as an objective term or a constraint (``quality_loss(...) <= 0.5``).

    Main arguments:
        workload: an `LLM` (its total parameter count and name are used) or a parameter
            count (number, may be traced).
        wbits, abits, kvbits: bit-widths in [1, 16] (arrays allowed).
        method: the quantization method (`quality_methods()`); it serves every tensor
            class it has data for, the others use ``a_method``/``kv_method`` or the
            fallback (activations: smoothquant, KV cache: rtn; weights: rtn).
        group_size: weights per scale (a number, may be traced) or None for per-channel;
            ignored by methods without groups (quip-sharp, bitnet-b1.58, KV methods).

    Other arguments:
        a_method, kv_method: methods for the activations and the KV cache.
        family: model family for the sensitivity factor (llama-1, llama-2, llama-3, opt,
            mistral, bitnet); default inferred from the LLM's name, else llama-2.
        base_ppl: the model's own 16-bit WikiText-2 perplexity; default the size law of
            the fit (per family).

    Bits below the data's range for a method, sizes outside it and inferred families are
    extrapolations: `quality_report` states them. Bits below 1, an unknown method or
    family raise `ModelInputError`."""
    wbits = effective_wbits(workload, wbits)
    p = _prepare(workload, wbits, abits, kvbits, method, group_size, a_method, kv_method,
                 family, base_ppl)
    consts = quality_constants()["constants"]
    return _delta_ppl(consts, wbits=wbits, abits=abits, kvbits=kvbits, methods=p.methods,
                      group=p.group, size_b=p.size_b,
                      family_factor=consts["family_factor"][p.family], base_ppl=p.base_ppl)


@dataclasses.dataclass(frozen=True)
class QualityReport:
    """`quality_loss` with its footing: the value, the 16-bit and quantized perplexity,
    which fitted method serves each quantized tensor class, whether (and why) the point is
    an extrapolation beyond the published data, and the modelling assumptions it uses
    (terms borrowed from another method, an inferred family, a perplexity from the size
    law)."""

    delta_ppl: float
    ppl_fp16: float
    ppl: float
    methods: dict
    family: str
    extrapolated: bool
    reasons: tuple
    assumptions: tuple
    expected_error_factor: float     # cross-validated median error factor of its family

    def __str__(self):
        flag = ("extrapolated: " + "; ".join(self.reasons)) if self.extrapolated else \
            "within the data's range"
        extra = ("; assumes: " + "; ".join(self.assumptions)) if self.assumptions else ""
        return (f"ΔPPL {self.delta_ppl:.3g} (WikiText-2 {self.ppl_fp16:.3g} -> {self.ppl:.3g}; "
                f"typical error x{self.expected_error_factor:.2g}); {flag}{extra}")


SIZE_SLACK = 1.1    # sizes within 10 % of the data's range are not flagged


def quality_report(workload, *, wbits, abits=16.0, kvbits=16.0, method: str = "gptq",
                   group_size=128, a_method: str | None = None, kv_method: str | None = None,
                   family: str | None = None, base_ppl=None) -> QualityReport:
    """`quality_loss` for concrete inputs, with the data range it rests on. The result is
    ``extrapolated`` (``reasons`` say why) when a bit-width is below the lowest published
    one for the method serving that tensor class (for a natively trained method: any
    weight bit-width but its own), or the model size or group size is outside that
    method's data. ``assumptions`` lists a tensor class served by another method's term
    (fallback or tie), an inferred or unknown family and a 16-bit perplexity from the
    size law. Same arguments as `quality_loss`."""
    wbits = effective_wbits(workload, wbits)
    kw = dict(wbits=wbits, abits=abits, kvbits=kvbits, method=method, group_size=group_size,
              a_method=a_method, kv_method=kv_method, family=family, base_ppl=base_ppl)
    p = _prepare(workload, **kw)
    value = float(quality_loss(workload, **kw))
    stored = quality_constants()
    consts, rng = stored["constants"], stored["data_range"]
    native = consts["native_methods"].get(p.methods["w"][0], {})
    bits = {k: float(v) for k, v in (("w", wbits), ("a", abits), ("kv", kvbits))}
    quantized = [k for k in KINDS if bits[k] < native.get(k, 16.0)]
    reasons, assumptions = [], []
    for k in quantized:
        m, mk = p.methods[k]
        asked = {"w": method, "a": a_method or method, "kv": kv_method or method}[k]
        if m != asked:
            assumptions.append(f"{KIND_NAMES[k]}: {asked} has no {KIND_NAMES[k]} term of "
                               f"its own, the {m} term is used")
        lo, hi = rng.get(m, {}).get(mk, [None, None])
        if lo is not None and (bits[k] < lo or (m in consts["native_methods"]
                                                and not lo <= bits[k] <= hi)):
            reasons.append(f"{KIND_FIELDS[k]} = {bits[k]:g} is outside the {m} data "
                           f"({lo:g}-{hi:g} bits)")
    used = {p.methods[k][0] for k in quantized}
    size = float(p.size_b)
    if used:
        lo = min(rng[m]["size_b"][0] for m in used)
        hi = max(rng[m]["size_b"][1] for m in used)
        if not lo / SIZE_SLACK <= size <= hi * SIZE_SLACK:
            reasons.append(f"{size:.3g}B parameters is outside the data ({lo:g}-{hi:g}B)")
    wm = p.methods["w"][0]
    g = rng.get(wm, {}).get("group")
    if "w" in quantized and p.group is not None and g is not None and not (
            g[0] <= float(p.group) <= g[1]):
        reasons.append(f"group size {float(p.group):g} is outside the {wm} data "
                       f"({g[0]:g}-{g[1]:g})")
    name = getattr(workload, "name", "")
    if p.family_inferred and _family_of(name) is None:
        assumptions.append(f"model family unknown: the {REFERENCE_FAMILY} sensitivity")
    if p.base_from_law:
        law = p.family if p.family in consts["base_ppl"]["prefactor"] else REFERENCE_FAMILY
        assumptions.append(f"16-bit perplexity {float(p.base_ppl):.3g} from the size law of "
                           f"the {law} family (pass base_ppl)")
    cv = stored["errors"].get("cross_validation") or stored["errors"]["in_sample"]
    fams = {_method_family(p.methods[k][0], bits) for k in quantized} or {"weight-only"}
    factor = max(cv.get(f, cv["all"])["median_factor"] for f in fams)
    base = float(p.base_ppl)
    return QualityReport(delta_ppl=value, ppl_fp16=base, ppl=base + value,
                         methods={KIND_NAMES[k]: p.methods[k][0] for k in quantized},
                         family=p.family, extrapolated=bool(reasons), reasons=tuple(reasons),
                         assumptions=tuple(assumptions), expected_error_factor=factor)
