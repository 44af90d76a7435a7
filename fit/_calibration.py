"""Calibration of any target: named free parameters fitted to a measurement table.

``calibrate(target, data, free=[names])`` fits a few float parameters of a target, named
as `perfmodel.sensitivity` names them (``dram.efficiency``, ``lut_efficiency``,
``dispatch_overhead``; SI, fractions as fractions), to measurements (a CSV in the schema
of `perfmodel.fit._measurements`, or published claims). docs/calibration.md has the
equations; in short:

- residuals ``r_i = log(predicted_i / measured_i)`` over the rows (a ratio row predicts
  system / baseline), minimized over ``u`` (``log`` of a positive parameter, ``logit`` of
  a fraction; with bounds, ``u = lo + (hi - lo) sigmoid(z)``), by Levenberg-Marquardt
  (optimistix) by default. Rows whose ops share a structure on the same hardware are
  one vmapped evaluation; the blocks are concatenated into one residual function.
- Free parameters are set on the target wherever it appears in the data (a row's
  hardware or baseline), and on presets that ``extends`` it and inherit the
  parameter's value; other hardware keeps its values.
- Uncertainty: the Laplace approximation ``cov_u = s^2 (J^T J)^-1`` in ``u``, with J the
  Jacobian of the residuals at the optimum, ``s^2 = RSS / (n - p)`` (or ``noise^2`` when
  the measurements' relative error is given), Gaussian priors as extra rows; mapped back
  by the delta method (``std = value * std_u`` for log parameters, ``f (1 - f) std_u``
  for fractions).
- Identifiability: a parameter with no effect on any row, one whose Jacobian column is
  (numerically) a combination of others' (a singular value of the column-normalized J
  below ``svd_rtol`` of the largest: the later-listed of the pair is dropped), or whose
  posterior std exceeds ``max_std`` in ``u`` (or 0.9 of its prior's) is not fitted: it
  stays at its preset value, and the result says why.
- Cross-validation: k-fold and leave-one-group-out, each fold refitted from the preset
  values by the same compiled solver (held-out rows weighted 0).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import pathlib
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from perfmodel._errors import ModelInputError
from perfmodel.fit._measurements import Measurements, load_measurements, metric_value

SOLVERS = ("lm", "dogleg", "gauss-newton", "adam")


# ---------------------------------------------------------------------------- parameters
def parameter_units(hardware) -> dict[str, tuple[str, float]]:
    """Readable name -> (unit label, SI value of one unit) for every float parameter
    (fractions: ``("fraction", 1.0)``), as `perfmodel.sensitivity` shows them."""
    from perfmodel._sensitivity import _leaves

    params = eqx.filter(hardware, eqx.is_inexact_array)
    out = {}
    for (labels, unit, shown, odds), leaf in zip(_leaves(hardware, params),
                                                 jax.tree.leaves(params), strict=True):
        si = np.ravel(np.asarray(leaf, np.float64))
        shown = np.ravel(np.asarray(shown, np.float64))
        for j, name in enumerate(labels):
            per = 1.0 if odds or shown[j] == 0 else float(si[j] / shown[j])
            out[name] = (unit or "", per)
    return out


@dataclasses.dataclass
class FreeParameter:
    """A free parameter of a calibration: its transform to the unconstrained space ``u``
    (logit for a fraction, log otherwise), optional bounds (in ``u``) and Gaussian prior
    (centre and width in ``u``)."""

    name: str
    init: float                                     # the starting value (inside bounds)
    fraction: bool
    unit: str
    per_unit: float
    preset: float = float("nan")                    # the target's own value
    bounds: tuple[float, float] | None = None      # in u
    prior: tuple[float, float] | None = None       # (u0, width) in u

    def to_u(self, x):
        x = jnp.asarray(x, jnp.float32)
        return jnp.log(x) - jnp.log1p(-x) if self.fraction else jnp.log(x)

    def from_u(self, u):
        return jax.nn.sigmoid(u) if self.fraction else jnp.exp(u)

    @property
    def prior_std(self) -> float | None:
        """The prior's std in u: a Gaussian prior's width, or a uniform over the bounds."""
        if self.prior is not None:
            return self.prior[1]
        if self.bounds is not None:
            return (self.bounds[1] - self.bounds[0]) / math.sqrt(12.0)
        return None


def _free_parameters(target, names, bounds, priors) -> list[FreeParameter]:
    from perfmodel._paths import get_values, leaf_table
    from perfmodel._spec import closest_names

    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    if not names:
        raise ModelInputError("free must name at least one parameter to fit.")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ModelInputError(f"free names {', '.join(map(repr, dup))} more than once.")
    table = leaf_table(target)
    bad = [n for n in names if n not in table]
    if bad:
        hints = {n: closest_names(n, list(table), n=3) for n in bad}
        label = getattr(target, "name", "the target")
        raise ModelInputError(
            f"{label} has no parameter " + "; ".join(
                f"{n!r}" + (f" (did you mean {', '.join(map(repr, h))}?)" if h else "")
                for n, h in hints.items())
            + f"; its parameters: {', '.join(table)}.")
    for what, given in (("bounds", bounds), ("priors", priors)):
        extra = sorted(set(given or {}) - set(names))
        if extra:
            raise ModelInputError(f"{what} name {', '.join(map(repr, extra))}, which "
                                  f"{'is' if len(extra) == 1 else 'are'} not free "
                                  f"({', '.join(names)}).")
    units = parameter_units(target)
    values = get_values(target, names)
    out = []
    for n in names:
        fraction = table[n][2]
        unit, per = units.get(n, ("", 1.0))
        p = FreeParameter(n, float(values[n]), fraction, unit, per, float(values[n]))
        if bounds and n in bounds:
            lo, hi = (float(x) for x in bounds[n])
            if not (0 < lo < hi) or (fraction and hi >= 1):
                raise ModelInputError(
                    f"bounds for {n} = ({lo:g}, {hi:g}) are invalid; they must satisfy "
                    f"0 < lo < hi{' < 1 (a fraction)' if fraction else ''} (SI units).")
            p.bounds = (float(p.to_u(lo)), float(p.to_u(hi)))
            if not lo < p.init < hi:
                p.init = float(min(max(p.init, lo + 1e-3 * (hi - lo)), hi - 1e-3 * (hi - lo)))
        if priors and n in priors:
            centre, width = (float(x) for x in priors[n])
            if not (centre > 0 and width > 0) or (fraction and centre >= 1):
                raise ModelInputError(
                    f"prior for {n} = ({centre:g}, {width:g}) is invalid; it is (centre in "
                    "SI units, width > 0 in log units, logit units for a fraction).")
            p.prior = (float(p.to_u(centre)), width)
        out.append(p)
    return out


# ------------------------------------------------------------------------------ target
def _resolve_target(target):
    """(target object, key of the target in measurement tables, preset name or None,
    spec file or None, label)."""
    from perfmodel import hardware
    from perfmodel._target import AbstractTarget

    if isinstance(target, (str, pathlib.Path)):
        ref = str(target)
        if ref in hardware.list_presets() or ref == "host":
            return hardware.preset(ref), ref, ref, None, ref
        p = pathlib.Path(ref)
        if p.is_file():
            return hardware.load(p), str(p.resolve()), None, p.resolve(), p.name
        hardware.preset(ref)  # raises with the closest preset names
    if isinstance(target, AbstractTarget):
        name = getattr(target, "name", "") or ""
        preset = name if name in hardware.list_presets() else None
        return target, preset or "", preset, None, name or type(target).__name__
    raise ModelInputError(f"target must be a hardware preset name, a spec file or a target "
                          f"object, not {type(target).__name__}.")


def _lineage(key: str) -> list[str]:
    """Presets a hardware key extends, nearest first (a preset name or a spec file)."""
    from perfmodel._spec import load_spec_file
    from perfmodel.hardware._registry import PRESET_DIR, list_presets

    out, seen = [], set()
    path = (PRESET_DIR / f"{key}.toml") if key in list_presets() else pathlib.Path(key)
    while path.is_file():
        parent = load_spec_file(path).get("extends")
        if not parent or parent in seen:
            break
        out.append(parent)
        seen.add(parent)
        path = PRESET_DIR / f"{parent}.toml"
    return out


def _moves(data: Measurements, target_key: str, target_preset, free) -> dict[str, list[int]]:
    """hardware key -> indices of the free parameters set on it."""
    from perfmodel._paths import get_values, leaf_table

    target = data.hardware[target_key]
    names = [p.name for p in free]
    tv = {k: float(v) for k, v in get_values(target, names).items()}
    out = {}
    for key, hw in data.hardware.items():
        if key == target_key or hw is target:
            out[key] = list(range(len(free)))
        elif target_preset and target_preset in _lineage(key):
            table = leaf_table(hw)
            own = [n for n in names if n in table]
            v = {k: float(x) for k, x in get_values(hw, own).items()}
            out[key] = [i for i, n in enumerate(names)
                        if n in v and math.isclose(v[n], tv[n], rel_tol=1e-6)]
        else:
            out[key] = []
    return out


# --------------------------------------------------------------------------- prediction
def _normalized(ops):
    """``ops`` with float32 leaves and no workload label (rows of one structure stack)."""
    from perfmodel._ops import _FLOAT_FIELDS, Ops

    f = {k: jnp.asarray(getattr(ops, k), jnp.float32) for k in _FLOAT_FIELDS}
    return Ops(**f, tokens=jnp.asarray(ops.tokens, jnp.float32),
               weight_footprint=jnp.asarray(ops.weight_footprint, jnp.float32),
               kv_footprint=jnp.asarray(ops.kv_footprint, jnp.float32), names=ops.names,
               kinds=ops.kinds, phase=ops.phase, workload="")


def _structure(ops):
    return (ops.names, ops.kinds, ops.phase)


def _set_free(hw, u, indices, free):
    from perfmodel._paths import set_values

    if not indices:
        return hw
    return set_values(hw, {free[i].name: free[i].from_u(u[i]) for i in indices})


def build_predict(data: Measurements, moves: dict, free: list[FreeParameter]):
    """A pure function ``u -> log(predicted metric)`` over the rows of ``data`` (SI), and
    the number of compiled blocks (row structures) in it."""
    from perfmodel import evaluate

    cases, seg, aggs = [], [], []
    for mi, m in enumerate(data.rows):
        for c in m.cases:
            cases.append(c)
            seg.append(mi)
        aggs.append(m.aggregate)
    blocks: dict = {}
    for ci, c in enumerate(cases):
        key = (c.hardware, _structure(c.ops), c.baseline,
               _structure(c.baseline_ops) if c.baseline is not None else None,
               data.rows[seg[ci]].metric)
        blocks.setdefault(key, []).append(ci)
    plan = []
    for (hk, _, bk, _, metric), idx in blocks.items():
        stack = lambda xs: jax.tree.map(lambda *a: jnp.stack(a), *xs)  # noqa: E731
        ops = stack([_normalized(cases[i].ops) for i in idx])
        bops = (stack([_normalized(cases[i].baseline_ops) for i in idx])
                if bk is not None else None)
        plan.append((hk, bk, metric, ops, bops, np.asarray(idx)))
    order = np.concatenate([p[-1] for p in plan])
    inverse = np.argsort(order)
    seg = np.asarray(seg)
    n_rows = len(data.rows)
    counts = np.bincount(seg, minlength=n_rows).astype(np.float32)
    aggs = np.asarray(aggs)

    def predict_log(u):
        parts = []
        for hk, bk, metric, ops, bops, _ in plan:
            hw = _set_free(data.hardware[hk], u, moves[hk], free)
            bhw = _set_free(data.hardware[bk], u, moves[bk], free) if bk is not None else None

            def one(o, bo, hw=hw, bhw=bhw, metric=metric):
                rep = evaluate(hw, o, check=False)
                brep = evaluate(bhw, bo, check=False) if bhw is not None else None
                return metric_value(metric, rep, o, brep, bo)

            parts.append(jax.vmap(one)(ops, bops))
        vals = jnp.concatenate(parts)[inverse]
        if np.all(aggs == "single"):
            return jnp.log(vals)
        logv = jnp.log(vals)
        mean = jax.ops.segment_sum(vals, seg, n_rows) / counts
        geo = jax.ops.segment_sum(logv, seg, n_rows) / counts
        mx = jax.ops.segment_max(vals, seg, n_rows)
        mn = jax.ops.segment_min(vals, seg, n_rows)
        out = jnp.log(mean)
        out = jnp.where(aggs == "geomean", geo, out)
        out = jnp.where(aggs == "max", jnp.log(mx), out)
        return jnp.where(aggs == "min", jnp.log(mn), out)

    return predict_log, len(plan)


def _solver(solver, rtol, atol):
    import optax
    import optimistix as optx

    if isinstance(solver, str):
        if solver == "lm":
            return optx.LevenbergMarquardt(rtol=rtol, atol=atol), "levenberg-marquardt"
        if solver == "dogleg":
            return optx.Dogleg(rtol=rtol, atol=atol), "dogleg"
        if solver == "gauss-newton":
            return optx.GaussNewton(rtol=rtol, atol=atol), "gauss-newton"
        if solver == "adam":
            return optx.OptaxMinimiser(optax.adam(0.05), rtol=rtol, atol=atol), "adam (optax)"
        raise ModelInputError(f"solver = {solver!r}; valid: {', '.join(SOLVERS)}, an "
                              "optimistix solver or an optax GradientTransformation.")
    if isinstance(solver, optax.GradientTransformation):
        return optx.OptaxMinimiser(solver, rtol=rtol, atol=atol), "optax"
    return solver, type(solver).__name__


# ------------------------------------------------------------------------------ result
@dataclasses.dataclass
class FittedParameter:
    """One free parameter after the fit: value and std in SI (fractions as fractions),
    the readable unit, and whether the data identified it (else it kept ``init``)."""

    name: str
    value: float
    init: float
    std: float
    unit: str
    per_unit: float
    identifiable: bool
    reason: str = ""
    std_u: float = float("nan")
    at_bound: str = ""        # "lower" or "upper" when the fit stopped at a given bound

    @property
    def rel_std(self) -> float:
        return self.std / self.value if self.value else float("nan")

    def as_dict(self) -> dict:
        """Value and std in the readable unit (``unit``)."""
        s = self.per_unit
        return {"name": self.name, "value": self.value / s, "std": self.std / s,
                "unit": self.unit, "identifiable": self.identifiable,
                "init": self.init / s, "rel_std": self.rel_std,
                "reason": self.reason or None, "at_bound": self.at_bound or None}


@dataclasses.dataclass
class Prediction:
    """A prediction with its interval from the parameters' uncertainty (delta method in
    log space): ``value`` (SI), ``lower``/``upper`` at ``level``, ``rel_std`` (std of the
    log prediction)."""

    value: float
    lower: float
    upper: float
    rel_std: float
    level: float


@dataclasses.dataclass
class Calibration:
    """The result of `calibrate`: fitted target and parameters, per-row fit, errors,
    uncertainty, identifiability and cross-validation. ``to_dict()`` is the JSON of
    ``perfmodel calibrate --json``; ``save(path)`` writes the fitted spec."""

    target: object
    target_label: str
    preset: str | None
    spec_file: pathlib.Path | None
    parameters: list
    correlations: np.ndarray
    cov_u: np.ndarray
    rows: list
    measured: np.ndarray
    predicted: np.ndarray
    groups: list
    converged: bool
    message: str
    solver: str
    steps: int
    seconds: float
    data_description: str
    data_sha256: str
    noise: float
    dof: int
    cv: dict
    blocks: int
    unaffected_rows: list
    _predict_u: object = dataclasses.field(default=None, repr=False)
    _free: list = dataclasses.field(default_factory=list, repr=False)
    _u: np.ndarray = dataclasses.field(default=None, repr=False)
    _active: np.ndarray = dataclasses.field(default=None, repr=False)

    # -- errors
    @property
    def rel_errors(self) -> np.ndarray:
        return self.predicted / self.measured - 1.0

    @property
    def mape(self) -> float:
        """In-sample mean absolute percentage error, as a fraction."""
        return float(np.mean(np.abs(self.rel_errors)))

    @property
    def mape_by_group(self) -> dict[str, float]:
        g = np.asarray(self.groups)
        return {k: float(np.mean(np.abs(self.rel_errors[g == k])))
                for k in dict.fromkeys(self.groups) if k}

    @property
    def cv_mape(self) -> float | None:
        """k-fold cross-validated MAPE (fraction), None when not run."""
        return self.cv.get("kfold", {}).get("mape")

    @property
    def cv_group_mape(self) -> float | None:
        return self.cv.get("group", {}).get("mape")

    @property
    def values(self) -> dict[str, float]:
        return {p.name: p.value for p in self.parameters}

    @property
    def identified(self) -> list[str]:
        return [p.name for p in self.parameters if p.identifiable]

    # -- predictions with intervals
    def predict(self, what, metric: str = "latency", *, level: float = 0.6827,
                noise: bool = False) -> Prediction:
        """A new prediction with an interval from the fitted parameters' covariance.

        Main arguments:
            what: a `perfmodel.Ops` table (evaluated on the fitted target with ``metric``:
                latency, tokens_per_s, energy, energy_per_token, ...), or a function of the
                fitted target returning a positive scalar.

        Other arguments:
            level: the interval's coverage (0.6827: one sigma).
            noise: add the residual scatter ``s^2`` of the fit (an interval for a new
                measurement rather than for the model's prediction).
        """
        from perfmodel import evaluate
        from perfmodel._ops import Ops

        free, active = self._free, np.flatnonzero(self._active)
        if isinstance(what, Ops):
            self.target.check(what)

            def fn(hw):
                return metric_value(metric, evaluate(hw, what, check=False), what)
        elif callable(what):
            fn = what
        else:
            raise ModelInputError("predict takes a perfmodel.Ops table or a function of the "
                                  "fitted target.")
        u0 = jnp.asarray(self._u, jnp.float32)

        def log_pred(ua):
            u = u0.at[active].set(ua)
            return jnp.log(fn(_set_free(self.target, u, list(range(len(free))), free)))

        ua = u0[active]
        lp, g = jax.jit(jax.value_and_grad(log_pred))(ua)
        value = float(jnp.exp(lp))
        var = 0.0
        if len(active):
            g = np.asarray(g, np.float64)
            var = float(g @ self.cov_u @ g)
        if noise:
            var += self.noise ** 2
        sd = math.sqrt(max(var, 0.0)) if math.isfinite(var) else float("nan")
        zq = statistics.NormalDist().inv_cdf(0.5 + level / 2)
        return Prediction(value, value * math.exp(-zq * sd), value * math.exp(zq * sd), sd,
                          level)

    def check(self, data) -> dict:
        """Predicted vs measured on other data (held-out claims or measurements) with
        the fitted values applied as in the fit: ``{"rows": [...], "mape": fraction}``."""
        if not isinstance(data, Measurements):
            data = _load_data(data, self.target, self.preset or "")
        key = self.preset or ""
        if key not in data.hardware:
            data.hardware[key] = self.target
        moves = _moves(data, key, self.preset, self._free)
        predict, _ = build_predict(data, moves, self._free)
        pred = np.exp(np.asarray(jax.jit(predict)(jnp.asarray(self._u, jnp.float32)),
                                 np.float64))
        rows = _row_dicts(data, pred)
        return {"rows": rows, "mape": float(np.mean([abs(r["rel_error"]) for r in rows]))}

    # -- reporting
    def table(self) -> list[dict]:
        """The residual table: one dict per row (identifiers, measured, predicted in the
        row's unit, rel_error, source, group; held-out predictions when CV ran)."""
        return self.rows

    def format_table(self) -> str:
        """The residual table as text."""
        cv = "kfold" in self.cv
        head = f"{'row':<58} {'measured':>11} {'predicted':>11} {'error':>8}"
        head += f" {'cv error':>9}" if cv else ""
        lines = [head]
        for r in self.rows:
            line = (f"{r['label'][:58]:<58} {r['measured']:>11.4g} {r['predicted']:>11.4g} "
                    f"{r['rel_error'] * 100:>+7.1f}%")
            if cv:
                e = r.get("cv_rel_error")
                line += f" {e * 100:>+8.1f}%" if e is not None else f" {'-':>9}"
            lines.append(line)
        return "\n".join(lines)

    def summary(self) -> str:
        """Parameters, identifiability, errors and convergence as text."""
        lines = [f"calibration of {self.target_label} to {self.data_description} "
                 f"({len(self.rows)} rows, {self.solver}, {self.seconds:.1f} s)"]
        if not self.converged:
            lines.append(f"  NOT CONVERGED after {self.steps} steps: {self.message}")
        for p in self.parameters:
            d = p.as_dict()
            unit = "" if p.unit in ("", "fraction") else f" {p.unit}"
            if p.identifiable:
                sd = (f"+- {d['std']:.3g}{unit} ({p.rel_std * 100:.1f}%)"
                      if math.isfinite(p.std) else "+- ? (no residual degrees of freedom: "
                                                   "give the measurements' relative error,"
                                                   " noise= or --noise)")
                lines.append(f"  {p.name:<24} {d['value']:>12.5g}{unit}  {sd}  "
                             f"(preset {d['init']:.4g})"
                             + (f"  AT ITS {p.at_bound.upper()} BOUND" if p.at_bound else ""))
            else:
                lines.append(f"  {p.name:<24} {d['value']:>12.5g}{unit}  NOT IDENTIFIABLE, "
                             f"kept at the preset value: {p.reason}")
        lines.append(f"  MAPE in-sample {self.mape * 100:.2f}%"
                     + (f", {self.cv['kfold']['k']}-fold CV {self.cv_mape * 100:.2f}%"
                        if self.cv_mape is not None else "")
                     + (f", leave-one-group-out {self.cv_group_mape * 100:.2f}%"
                        if self.cv_group_mape is not None else ""))
        if self.cv.get("skipped"):
            lines.append(f"  cross-validation skipped: {self.cv['skipped']}")
        if self.unaffected_rows:
            lines.append(f"  {len(self.unaffected_rows)} rows depend on no free parameter: "
                         + ", ".join(self.unaffected_rows[:5])
                         + (" ..." if len(self.unaffected_rows) > 5 else ""))
        ident = [p for p in self.parameters if p.identifiable]
        if len(ident) > 1 and np.all(np.isfinite(self.correlations)):
            big = [(ident[i].name, ident[j].name, self.correlations[i, j])
                   for i in range(len(ident)) for j in range(i + 1, len(ident))
                   if abs(self.correlations[i, j]) > 0.9]
            for a, b, c in big:
                lines.append(f"  correlation {a} ~ {b}: {c:+.3f}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready: ``parameters`` (name, value, std, unit, identifiable, init,
        rel_std, reason), ``rows``, ``mape`` and ``cv_mape`` (fractions), and the rest."""
        ident = [p.name for p in self.parameters if p.identifiable]
        return _finite_or_none({
            "target": self.target_label, "data": self.data_description,
            "data_sha256": self.data_sha256,
            "parameters": [p.as_dict() for p in self.parameters],
            "rows": self.rows, "mape": self.mape, "cv_mape": self.cv_mape,
            "cv_group_mape": self.cv_group_mape, "mape_by_group": self.mape_by_group,
            "cv": {k: {kk: vv for kk, vv in v.items() if kk != "rel_errors"}
                   if isinstance(v, dict) else v for k, v in self.cv.items()},
            "correlations": {"names": ident,
                             "matrix": np.where(np.isfinite(self.correlations),
                                                self.correlations, 0.0).tolist()},
            "converged": self.converged, "message": self.message, "solver": self.solver,
            "steps": self.steps, "seconds": self.seconds, "noise": self.noise,
            "dof": self.dof, "unaffected_rows": self.unaffected_rows,
        })

    def parity_plot(self, ax=None, *, title: str | None = None):
        """Predicted vs measured, log-log, coloured by group; returns the figure."""
        return parity_plot(self, ax=ax, title=title)

    # -- save
    def save(self, path, *, name: str | None = None) -> pathlib.Path:
        """Write the fitted target as a spec that ``extends`` its preset with the fitted
        values in ``[overrides]`` (a spec-file target: a copy of the file with them
        merged into its ``[overrides]``); provenance in the header. Parameters the data
        did not identify are not written (the preset's value stands)."""
        path = pathlib.Path(path)
        fitted = {p.name: p.value for p in self.parameters if p.identifiable}
        for k, v in fitted.items():
            if not math.isfinite(v) or v <= 0:
                raise ModelInputError(f"save: fitted {k} = {v} is not a finite positive "
                                      "number.")
        when = datetime.datetime.now().isoformat(timespec="seconds")
        head = [f"# Calibrated with perfmodel.fit.calibrate on {when}",
                f"# data: {self.data_description} (sha256 {self.data_sha256[:16]}), "
                f"{len(self.rows)} rows",
                f"# free: {', '.join(p.name for p in self.parameters)}; solver {self.solver}"
                f", {'converged' if self.converged else 'NOT converged: ' + self.message}"]
        for p in self.parameters:
            d = p.as_dict()
            unit = "" if p.unit in ("", "fraction") else f" {p.unit}"
            if p.identifiable:
                head.append(f"# fitted: {p.name} = {d['value']:.6g}{unit} +- "
                            f"{d['std']:.3g}{unit} (preset {d['init']:.6g})")
            else:
                head.append(f"# not identifiable, kept at the preset value: {p.name} = "
                            f"{d['value']:.6g}{unit} ({p.reason})")
        cv = [f"in-sample MAPE {self.mape * 100:.2f}%"]
        if self.cv_mape is not None:
            cv.append(f"{self.cv['kfold']['k']}-fold cross-validated MAPE "
                      f"{self.cv_mape * 100:.2f}%")
        if self.cv_group_mape is not None:
            cv.append(f"leave-one-group-out MAPE {self.cv_group_mape * 100:.2f}%")
        head.append("# " + "; ".join(cv))
        over = [f'"{k}" = {float(v)!r}' for k, v in fitted.items()]
        if self.preset is not None:
            name = name or f"{self.preset}-calibrated"
            text = "\n".join(head + [
                "schema_version = 1", f'extends = "{self.preset}"', f'name = "{name}"',
                f'title = "{self.preset} calibrated to {self.data_description}"', "",
                "[overrides]", *over]) + "\n"
        elif self.spec_file is not None:
            text = _merge_overrides(self.spec_file.read_text(), fitted, head)
        else:
            raise ModelInputError("save needs a target given as a preset name or a spec "
                                  "file (a Python-built target has no spec to extend).")
        path.write_text(text)
        return path


def _finite_or_none(x):
    """``x`` with every non-finite float replaced by None (strict JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_none(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.ndarray):
        return _finite_or_none(x.tolist())
    return x


def _merge_overrides(text: str, fitted: dict, head: list[str]) -> str:
    """A spec file's text with ``fitted`` merged into its [overrides] table."""
    import re
    import tomllib

    data = tomllib.loads(text)
    merged = {**data.get("overrides", {}), **fitted}
    block = "[overrides]\n" + "\n".join(f'"{k}" = {float(v)!r}' for k, v in merged.items())
    m = re.search(r"(?m)^\[overrides\][^\n]*\n", text)
    if m:
        end = re.search(r"(?m)^\[", text[m.end():])
        stop = m.end() + end.start() if end else len(text)
        text = text[:m.start()] + block + "\n\n" + text[stop:]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    return "\n".join(head) + "\n" + text


def parity_plot(result: Calibration, ax=None, *, title: str | None = None):
    """Predicted vs measured (log-log, one colour per group, the y = x line and a +-10 %
    band); returns the matplotlib figure."""
    if ax is None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 5))
    else:
        fig = ax.figure
    m, p = result.measured, result.predicted
    groups = [g or "(no group)" for g in result.groups]
    for g in dict.fromkeys(groups):
        sel = np.asarray([x == g for x in groups])
        ax.scatter(m[sel], p[sel], label=g, s=24)
    lo, hi = float(min(m.min(), p.min())) / 1.3, float(max(m.max(), p.max())) * 1.3
    xs = np.geomspace(lo, hi, 50)
    ax.plot(xs, xs, "k-", lw=0.8)
    ax.fill_between(xs, xs / 1.1, xs * 1.1, color="0.85", zorder=0, label="+-10%")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured (SI)")
    ax.set_ylabel("predicted (SI)")
    ax.set_title(title or f"{result.target_label}: MAPE {result.mape * 100:.1f}%"
                 + (f", CV {result.cv_mape * 100:.1f}%" if result.cv_mape is not None else ""))
    ax.legend(fontsize=7, loc="upper left")
    return fig


def _row_dicts(data: Measurements, predicted_si: np.ndarray) -> list[dict]:
    from perfmodel.fit._measurements import METRICS

    out = []
    for m, p in zip(data.rows, predicted_si):
        per = METRICS[m.metric].units[m.unit]
        out.append({**m.ids, "label": m.label, "unit": m.unit,
                    "measured": m.value_as_written, "predicted": float(p) / per,
                    "rel_error": float(p) / m.value - 1.0, "source": m.source,
                    "group": m.group})
    return out


def _load_data(data, target, target_key) -> Measurements:
    from perfmodel.fit._measurements import claims_measurements

    if isinstance(data, Measurements):
        return data
    if isinstance(data, str) and data.startswith("claims:"):
        ids = [i.strip() for i in data[len("claims:"):].split(",") if i.strip()]
        return claims_measurements(ids)
    if isinstance(data, (str, pathlib.Path)):
        return load_measurements(data, target=target, target_key=target_key)
    raise ModelInputError("data must be a measurement CSV path, 'claims:ID,ID,...', or "
                          "Measurements.")


# ----------------------------------------------------------------------------- problem
@dataclasses.dataclass
class _Problem:
    predict_log: object
    blocks: int
    solver_name: str
    solve: object      # (z0, active, w, sigma, logy) -> (z, result, steps), jitted
    jac: object        # u -> d log prediction / d u, jitted
    pred_j: object     # u -> log prediction, jitted
    z_to_u: object
    u0: jnp.ndarray
    z_init: jnp.ndarray
    prior_w: np.ndarray


#: Compiled problems by signature (hardware values, ops, free parameters, solver): a refit
#: of the same structure with other measured values (CV folds, repeated synthetic data)
#: reuses the compiled solver.
_PROBLEMS: dict = {}


def _signature(data, moves, free_p, solver, rtol, atol, max_steps) -> str:
    import hashlib

    h = hashlib.sha256()
    add = lambda x: h.update(repr(x).encode())  # noqa: E731
    for key in sorted(data.hardware):
        leaves, treedef = jax.tree.flatten(eqx.filter(data.hardware[key], eqx.is_array))
        add((key, str(treedef)))
        for leaf in leaves:
            h.update(np.asarray(leaf).tobytes())
    for m in data.rows:
        add((m.metric, m.aggregate, len(m.cases)))
        for c in m.cases:
            for o in (c.ops, c.baseline_ops):
                if o is None:
                    continue
                add((c.hardware, c.baseline, _structure(o)))
                for leaf in jax.tree.leaves(o):
                    h.update(np.asarray(leaf, np.float32).tobytes())
    add(sorted(moves.items()))
    add([(p.name, p.init, p.fraction, p.bounds, p.prior) for p in free_p])
    add((solver if isinstance(solver, str) else id(solver), rtol, atol, max_steps))
    return h.hexdigest()


def _problem(data, moves, free_p, solver, rtol, atol, max_steps) -> _Problem:
    import optimistix as optx

    sig = _signature(data, moves, free_p, solver, rtol, atol, max_steps)
    if sig in _PROBLEMS:
        return _PROBLEMS[sig]
    predict_log, n_blocks = build_predict(data, moves, free_p)
    u0 = jnp.asarray([float(x.to_u(x.init)) for x in free_p], jnp.float32)
    lo = np.array([x.bounds[0] if x.bounds else 0.0 for x in free_p], np.float32)
    hi = np.array([x.bounds[1] if x.bounds else 0.0 for x in free_p], np.float32)
    has_b = np.array([x.bounds is not None for x in free_p])
    prior_c = np.array([x.prior[0] if x.prior else 0.0 for x in free_p], np.float32)
    prior_w = np.array([1.0 / x.prior[1] if x.prior else 0.0 for x in free_p], np.float32)

    def z_to_u(z):
        sig = lo + (hi - lo) * jax.nn.sigmoid(z)
        return jnp.where(has_b, sig, z)

    def u_to_z(u):
        u = np.asarray(u, np.float64)
        frac = np.clip((u - lo) / np.where(has_b, hi - lo, 1.0), 1e-6, 1 - 1e-6)
        return np.where(has_b, np.log(frac) - np.log1p(-frac), u).astype(np.float32)

    def residuals(z, args):
        active, w, sigma, logy = args
        u = jnp.where(active, z_to_u(z), u0)
        r = (predict_log(u) - logy) * w
        return jnp.concatenate([r, sigma * prior_w * (u - prior_c) * active])

    optx_solver, solver_name = _solver(solver, rtol, atol)

    @jax.jit
    def solve(z0, active, w, sigma, logy):
        sol = optx.least_squares(residuals, optx_solver, z0, args=(active, w, sigma, logy),
                                 max_steps=max_steps, throw=False)
        return sol.value, sol.result, sol.stats["num_steps"]

    prob = _Problem(predict_log, n_blocks, solver_name, solve,
                    jax.jit(jax.jacfwd(predict_log)), jax.jit(predict_log), z_to_u, u0,
                    jnp.asarray(u_to_z(u0)), prior_w)
    if len(_PROBLEMS) >= 8:
        _PROBLEMS.pop(next(iter(_PROBLEMS)))
    _PROBLEMS[sig] = prob
    return prob


# ----------------------------------------------------------------------------- calibrate
def calibrate_target(target, data, free, *, bounds: dict | None = None,
                     priors: dict | None = None, solver="lm", folds: int | None = 5,
                     noise: float | None = None, max_steps: int = 200, rtol: float = 1e-5,
                     atol: float = 1e-6, svd_rtol: float = 1e-3, max_std: float = 1.0,
                     seed: int = 0) -> Calibration:
    """Fit named free parameters of ``target`` to measurements (see the module docstring).

    Main arguments:
        target: a hardware preset name, a spec file, or a target object.
        data: a measurement CSV (fit/data/measurements/ names work bare), the string
            ``"claims:ID,ID,..."`` for published claims, or `Measurements`.
        free: the parameters to fit, by readable name (``["lut_efficiency",
            "dram.efficiency", "dispatch_overhead"]``; a comma-separated string works).

    Other arguments:
        bounds: name -> (lo, hi) in SI (fractions as fractions): the fit stays inside.
        priors: name -> (centre, width): a Gaussian on log(value) (logit for a fraction)
            with that width (about a relative std).
        solver: "lm" (Levenberg-Marquardt, default), "dogleg", "gauss-newton", "adam"
            (optax), an optimistix least-squares solver, or an optax transformation.
        folds: k of k-fold cross-validation (None or 0: no CV); leave-one-group-out runs
            too when the rows carry two or more groups.
        noise: the measurements' relative error (std of log); default: estimated from
            the residuals, s^2 = RSS / (n - p).
        max_steps, rtol, atol: the solver's step limit and tolerances (in u).
        svd_rtol, max_std: identifiability thresholds (module docstring).
        seed: the k-fold shuffle.
    """
    import optimistix as optx

    t0 = time.perf_counter()
    hw, key, preset, spec_file, label = _resolve_target(target)
    free_p = _free_parameters(hw, free, bounds, priors)
    data = _load_data(data, hw, key)
    if key not in data.hardware or data.hardware[key] is not hw:
        data.hardware[key] = hw
    moves = _moves(data, key, preset, free_p)
    prob = _problem(data, moves, free_p, solver, rtol, atol, max_steps)
    predict_log, n_blocks, solver_name = prob.predict_log, prob.blocks, prob.solver_name
    jac, pred_j, z_to_u, u0 = prob.jac, prob.pred_j, prob.z_to_u, prob.u0
    logy = jnp.asarray(np.log(data.values), jnp.float32)
    n, p = len(data.rows), len(free_p)
    prior_w = prob.prior_w

    def solve(z0, active, w, sigma):
        return prob.solve(z0, active, w, sigma, logy)

    z_init = prob.z_init
    ones = jnp.ones(n, jnp.float32)

    active = np.ones(p, bool)
    reasons = [""] * p
    # 1. parameters with no effect, and degenerate combinations, at the preset values
    J0 = np.asarray(jac(u0), np.float64)
    has_prior = prior_w > 0
    _drop_unidentifiable(J0, active, reasons, free_p, svd_rtol, has_prior)
    sigma = float(noise) if noise else 0.1
    result_ok, message, steps = True, "converged", 0
    z = z_init
    cov = np.full((0, 0), np.nan)
    s = float("nan")
    dof = n - int(active.sum())
    for _ in range(p + 1):
        z, res, nsteps = solve(z_init, jnp.asarray(active), ones, jnp.float32(sigma))
        if not noise and prior_w.any() and dof > 0:  # priors weigh against s: refit once
            r = np.asarray(pred_j(z_to_u(z)) - logy, np.float64)
            sigma = max(math.sqrt(float(r @ r) / dof), 1e-6)
            z, res, nsteps = solve(z_init, jnp.asarray(active), ones, jnp.float32(sigma))
        steps = int(nsteps)
        result_ok = bool(res == optx.RESULTS.successful)
        message = "converged" if result_ok else str(optx.RESULTS[res])
        u = np.where(active, np.asarray(z_to_u(z)), np.asarray(u0))
        if not np.all(np.isfinite(u)):
            result_ok, message = False, "the solver produced non-finite parameters"
            u = np.asarray(u0)
        J = np.asarray(jac(jnp.asarray(u, jnp.float32)), np.float64)
        before = active.copy()
        _drop_unidentifiable(J, active, reasons, free_p, svd_rtol, has_prior, u)
        r = np.asarray(pred_j(jnp.asarray(u, jnp.float32)) - logy, np.float64)
        act = np.flatnonzero(active)
        dof = n - len(act)
        if noise:
            s = float(noise)
        elif dof > 0:
            s = math.sqrt(float(r @ r) / dof)
        else:
            s = float("nan")
        if len(act):
            Ja = J[:, act]
            prec = np.diag((prior_w[act].astype(np.float64)) ** 2)
            if math.isfinite(s) and s > 0:
                H = Ja.T @ Ja / s ** 2 + prec
                cov = np.linalg.pinv(H)
            elif math.isfinite(s):   # a perfect fit: no scatter to propagate
                cov = np.zeros((len(act), len(act)))
            else:
                cov = np.full((len(act), len(act)), np.nan)
            # the worst-determined parameter only: its correlated partners' stds fall
            # once it is fixed
            std_u = np.sqrt(np.clip(np.diag(cov), 0, None))
            limits = np.array([0.9 * free_p[i].prior_std if free_p[i].prior_std is not None
                               else max_std for i in act])
            excess = np.where(np.isfinite(std_u), std_u / limits, 0.0)
            if excess.size and excess.max() > 1.0:
                j = int(np.argmax(excess))
                i = act[j]
                active[i] = False
                what = ("0.9 x its prior's std" if free_p[i].prior_std is not None else
                        "max_std")
                reasons[i] = (f"posterior std {std_u[j]:.3g} in {_u_name(free_p[i])} units "
                              f"exceeds {what} = {limits[j]:.3g}: the data do not pin it")
        else:
            cov = np.full((0, 0), np.nan)
        if np.array_equal(before, active) and active.sum() == len(act):
            break
    act = np.flatnonzero(active)
    std_u = np.sqrt(np.clip(np.diag(cov), 0, None)) if len(act) else np.zeros(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(std_u, std_u) if len(act) else np.zeros((0, 0))
    u_final = np.where(active, u, np.asarray(u0))
    params = []
    for i, fp in enumerate(free_p):
        val = float(fp.from_u(jnp.float32(u_final[i])))
        if active[i]:
            su = float(std_u[list(act).index(i)])
            sd = val * (1 - val) * su if fp.fraction else val * su
        else:
            su, sd = float("nan"), float("nan")
        at = ""
        if active[i] and fp.bounds is not None:
            tol = 1e-3 * (fp.bounds[1] - fp.bounds[0])
            at = ("lower" if u_final[i] <= fp.bounds[0] + tol else
                  "upper" if u_final[i] >= fp.bounds[1] - tol else "")
        if not active[i]:
            val = fp.preset
        params.append(FittedParameter(fp.name, val, fp.preset, sd, fp.unit, fp.per_unit,
                                      bool(active[i]), reasons[i], su, at))
    pred = np.exp(np.asarray(pred_j(jnp.asarray(u_final, jnp.float32)), np.float64))
    rows = _row_dicts(data, pred)
    unaffected = [data.rows[i].label for i in range(n) if np.all(np.abs(J0[i]) < 1e-6)]
    seconds = time.perf_counter() - t0

    # cross-validation: the same compiled solve, held-out rows weighted 0
    cv = {}
    groups = [m.group for m in data.rows]
    if folds and len(act):
        def held_out(masks):
            out = np.full(n, np.nan)
            for test in masks:
                w = jnp.asarray(~test, jnp.float32)
                zf, _, _ = solve(z_init, jnp.asarray(active), w, jnp.float32(sigma))
                uf = np.where(active, np.asarray(z_to_u(zf)), np.asarray(u0))
                pf = np.exp(np.asarray(pred_j(jnp.asarray(uf, jnp.float32)), np.float64))
                out[test] = pf[test]
            return out / data.values - 1.0

        if n >= 3:
            k = min(int(folds), n)
            perm = np.random.default_rng(seed).permutation(n)
            masks = [np.isin(np.arange(n), perm[f::k]) for f in range(k)]
            e = held_out(masks)
            cv["kfold"] = {"k": k, "mape": float(np.mean(np.abs(e))), "rel_errors": e}
            for r, x in zip(rows, e):
                r["cv_rel_error"] = float(x)
        else:
            cv["skipped"] = f"{n} rows are too few for k-fold cross-validation"
        distinct = [g for g in dict.fromkeys(groups) if g]
        if len(distinct) >= 2:
            masks = [np.asarray([g == d for g in groups]) for d in distinct]
            e = held_out(masks)
            ok = np.isfinite(e)
            cv["group"] = {"groups": distinct, "mape": float(np.mean(np.abs(e[ok]))),
                           "mape_by_group": {d: float(np.mean(np.abs(e[m])))
                                             for d, m in zip(distinct, masks)},
                           "rel_errors": e}
            for r, x in zip(rows, e):
                r["cv_group_rel_error"] = float(x)
        cv["seconds"] = time.perf_counter() - t0 - seconds
    elif folds:
        cv["skipped"] = "no identifiable parameter to refit"
    return Calibration(
        target=_set_free(hw, jnp.asarray(u_final, jnp.float32),
                         [int(i) for i in act], free_p),
        target_label=label, preset=preset, spec_file=spec_file, parameters=params,
        correlations=corr, cov_u=cov, rows=rows, measured=data.values, predicted=pred,
        groups=groups, converged=result_ok, message=message, solver=solver_name,
        steps=steps, seconds=seconds, data_description=data.description or "data",
        data_sha256=data.sha256, noise=s, dof=dof, cv=cv, blocks=n_blocks,
        unaffected_rows=unaffected, _predict_u=predict_log, _free=free_p,
        _u=u_final, _active=active)


def _u_name(fp: FreeParameter) -> str:
    return "logit" if fp.fraction else "log"


def _drop_unidentifiable(J, active, reasons, free, svd_rtol, has_prior, u=None) -> None:
    """Deactivate parameters with no effect on any row, then, while the column-normalized
    Jacobian of the active ones has a singular value below ``svd_rtol`` of the largest,
    the later-listed parameter of the degenerate direction. Parameters with a prior are
    regularized by it and exempt. ``u``: the fitted point J was taken at (None: the
    preset values)."""
    for i in np.flatnonzero(active & ~has_prior):
        if np.max(np.abs(J[:, i])) < 1e-4:
            active[i] = False
            if u is None:
                reasons[i] = ("no effect on any row at the preset values (|d log prediction"
                              f" / d {_u_name(free[i])} {free[i].name}| < 1e-4)")
            else:
                fp = free[i]
                v = float(fp.from_u(jnp.float32(u[i])))
                reasons[i] = (f"the fit drove it from {fp.preset / fp.per_unit:.4g} to "
                              f"{v / fp.per_unit:.4g}{'' if fp.fraction else ' ' + fp.unit},"
                              " where no row depends on it any more: the data pull it out "
                              "of the range where the model uses it")
    while (active & ~has_prior).sum() > 1:
        act = np.flatnonzero(active & ~has_prior)
        A = J[:, act] / np.linalg.norm(J[:, act], axis=0)
        _, sv, vt = np.linalg.svd(A, full_matrices=False)
        if sv.size == len(act) and sv[-1] >= svd_rtol * sv[0]:
            break
        v = np.abs(vt[-1])
        if sv.size < len(act):  # more parameters than rows: drop the last-listed
            worst = len(act) - 1
            why = f"the {J.shape[0]} rows cannot separate {len(act)} parameters"
        else:
            worst = int(np.flatnonzero(v >= v.max() - 1e-6)[-1])
            partners = [free[act[j]].name for j in np.flatnonzero(v > 0.3) if j != worst]
            why = (("only its combination with " + ", ".join(partners)) if partners else
                   "only a combination with the others") + (
                   f" is identified by the data (singular value ratio "
                   f"{sv[-1] / sv[0]:.1e} < {svd_rtol:g})")
        i = act[worst]
        active[i] = False
        reasons[i] = why
