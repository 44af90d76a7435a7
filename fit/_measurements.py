"""Measurement tables for calibration: the CSV schema, a loader that validates every row
(and reports every bad row at once), and published claims as measurements.

Schema (one measured number per row; docs/calibration.md). Columns, in any order; only
``workload, metric, value, unit, source`` are required, a missing optional column is
empty everywhere:

- ``hardware``: a hardware preset name or a spec file (a path relative to the CSV's
  folder, or to the working directory); empty = the target being calibrated.
- ``baseline``: for a ratio metric, the hardware it is measured against (preset or file).
- ``workload``: ``gemm`` (a single ``[m, k] x [k, n]`` GEMM: columns ``m, n, k`` and
  ``abits`` for its operand width, default 16) or a workload preset / HF ``config.json``.
- ``phase``: ``decode`` (uses ``batch, context``), ``prefill`` (``batch, prompt``),
  ``request`` (``batch, prompt, generate``), ``inference`` for a CNN (``batch``), ``kernel``
  or empty for a GEMM. The lengths a phase uses are required; others must be empty.
- ``wbits, abits, kvbits``: bit-widths (empty: the workload's defaults).
- ``options``: ``key=value;...`` keywords of the phase method (``attention=standard``,
  ``tensor_parallel=4``).
- ``metric`` and ``unit``: see `METRICS` (``latency`` in s/ms/us/ns, ``tokens_per_s`` in
  tokens/s, ``energy`` in J/mJ/uJ, ``energy_per_token`` in J/token, mJ/token, ...; ratios
  ``speedup`` and ``energy_efficiency_gain`` against ``baseline``, unit ``x``).
- ``value``: the measured number in ``unit``, finite and > 0.
- ``source``: where the number comes from (a URL, ``github:owner/repo@commit:path``, or
  the harness and date that measured it).
- ``group``: optional label for leave-one-group-out cross-validation and per-group error
  (device, model, sweep); ``notes``: free text.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import math
import pathlib

import numpy as np

from perfmodel._errors import ModelInputError
from perfmodel._spec import closest_names

DATA_DIR = pathlib.Path(__file__).parent / "data" / "measurements"

COLUMNS = ("hardware", "baseline", "workload", "phase", "m", "n", "k", "batch", "prompt",
           "context", "generate", "wbits", "abits", "kvbits", "options", "metric", "value",
           "unit", "source", "group", "notes")
REQUIRED = ("workload", "metric", "value", "unit", "source")

#: Length columns each phase uses (all required for that phase; the others must be empty).
PHASE_COLUMNS = {"decode": ("batch", "context"), "prefill": ("batch", "prompt"),
                 "request": ("batch", "prompt", "generate"), "inference": ("batch",),
                 "kernel": ("m", "n", "k")}
SHAPE_COLUMNS = ("m", "n", "k", "batch", "prompt", "context", "generate")
BIT_COLUMNS = ("wbits", "abits", "kvbits")

_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_ENERGY = {"J": 1.0, "mJ": 1e-3, "uJ": 1e-6, "nJ": 1e-9}


@dataclasses.dataclass(frozen=True)
class Metric:
    """A measurable quantity: its units (label -> SI value of one), whether it is a ratio
    against a baseline, and what it is."""

    name: str
    units: dict
    ratio: bool
    doc: str


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("latency", _TIME, False, "time of one evaluation of the ops (s)"),
    Metric("tokens_per_s", {"tokens/s": 1.0}, False, "tokens produced per second"),
    Metric("energy", _ENERGY, False, "energy of one evaluation (J)"),
    Metric("energy_per_token", {f"{k}/token": v for k, v in _ENERGY.items()}, False,
           "energy per token produced"),
    Metric("tokens_per_j", {"tokens/J": 1.0}, False, "tokens per joule"),
    Metric("power", {"W": 1.0, "mW": 1e-3}, False, "average power over the evaluation"),
    Metric("area", {"mm2": 1e-6, "mm^2": 1e-6, "um2": 1e-12}, False, "silicon area"),
    Metric("achieved_flops", {"FLOP/s": 1.0, "GFLOPS": 1e9, "TFLOPS": 1e12}, False,
           "FLOP of the ops per second of latency"),
    Metric("speedup", {"x": 1.0}, True, "tokens/s over the baseline's tokens/s"),
    Metric("energy_efficiency_gain", {"x": 1.0}, True,
           "baseline energy per token over this energy per token"),
    Metric("dynamic_energy_efficiency_gain", {"x": 1.0}, True,
           "as energy_efficiency_gain, static energy left out"),
    Metric("area_reduction", {"x": 1.0}, True, "baseline area over this area"),
)}


def metric_value(metric: str, rep, ops, base_rep=None, base_ops=None):
    """The metric (SI) from a `Report` (and the baseline's for a ratio); traceable."""
    if metric == "latency":
        return rep.latency
    if metric == "tokens_per_s":
        return rep.tokens_per_s
    if metric == "energy":
        return rep.energy
    if metric == "energy_per_token":
        return rep.energy_per_token
    if metric == "tokens_per_j":
        return 1.0 / rep.energy_per_token
    if metric == "power":
        return rep.power
    if metric == "area":
        return rep.area
    if metric == "achieved_flops":
        return ops.total_flops / rep.latency
    if metric == "speedup":
        return rep.tokens_per_s / base_rep.tokens_per_s
    if metric == "energy_efficiency_gain":
        return base_rep.energy_per_token / rep.energy_per_token
    if metric == "dynamic_energy_efficiency_gain":
        return base_rep.dynamic_energy_per_token / rep.dynamic_energy_per_token
    if metric == "area_reduction":
        return base_rep.area / rep.area
    raise ModelInputError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}.")


@dataclasses.dataclass
class Case:
    """One evaluation behind a measurement: ops on a hardware (by its key in
    `Measurements.hardware`), and the baseline's for a ratio."""

    hardware: str
    ops: object
    baseline: str | None = None
    baseline_ops: object = None


@dataclasses.dataclass
class Measurement:
    """One measured number: what was measured (``ids``: the row's identifying columns),
    its value (SI and as written), source, group, and the evaluation(s) that predict it
    (several cases combined by ``aggregate`` for a published claim over a case list)."""

    label: str
    ids: dict
    metric: str
    unit: str
    value_as_written: float
    source: str
    group: str
    cases: list
    aggregate: str = "single"

    @property
    def value(self) -> float:
        """The measured value in SI units."""
        return self.value_as_written * METRICS[self.metric].units[self.unit]


@dataclasses.dataclass
class Measurements:
    """A validated measurement table: rows, the hardware they name (key -> target;
    ``""`` is the calibration target), and the file it came from with its hash."""

    rows: list
    hardware: dict
    path: str | None = None
    sha256: str = ""
    description: str = ""

    def __len__(self):
        return len(self.rows)

    @property
    def values(self) -> np.ndarray:
        return np.array([r.value for r in self.rows], float)

    @property
    def groups(self) -> list[str]:
        return [r.group for r in self.rows]


class MeasurementError(ModelInputError):
    """Bad measurement rows: ``errors`` lists (row, column, reason) for every one, and
    the message names them all (row 1 is the first data row, line 2 of the file)."""

    def __init__(self, where: str, errors: list[tuple[int, str, str]]):
        self.errors = errors
        rows = sorted({r for r, _, _ in errors})
        lines = [f"{where}: {len(rows)} bad row{'s' if len(rows) != 1 else ''} "
                 f"({len(errors)} problem{'s' if len(errors) != 1 else ''}):"]
        for row, column, reason in errors:
            at = "header" if row == 0 else f"row {row} (line {row + 1})"
            lines.append(f"  {at}, column {column}: {reason}")
        super().__init__("\n".join(lines))


def _parse_options(text: str) -> dict:
    opts = {}
    for kv in (text or "").split(";"):
        kv = kv.strip()
        if not kv:
            continue
        key, sep, value = kv.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{kv!r} is not key=value")
        key, value = key.strip(), value.strip()
        if key == "tensor_parallel":
            opts[key] = int(value)
        else:
            try:
                opts[key] = float(value)
            except ValueError:
                opts[key] = value
    return opts


class _Resolver:
    """Hardware and workloads named in a table, loaded once each."""

    def __init__(self, folder: pathlib.Path | None, target=None, target_key: str = ""):
        self.folder = folder
        self.hardware = {}
        self.workloads = {}
        if target is not None:
            self.hardware[target_key] = target

    def _path(self, ref: str) -> pathlib.Path | None:
        for base in ([self.folder] if self.folder else []) + [pathlib.Path.cwd()]:
            p = (base / ref)
            if p.is_file():
                return p.resolve()
        return None

    def hardware_key(self, ref: str) -> str:
        """The key of a hardware reference (a preset name, or a file's absolute path);
        loads it. Raises ModelInputError with the closest preset names."""
        from perfmodel import hardware

        ref = ref.strip()
        if ref in self.hardware:
            return ref
        if ref in hardware.list_presets():
            self.hardware[ref] = hardware.preset(ref)
            return ref
        path = self._path(ref) if ref.endswith(".toml") or "/" in ref else None
        if path is None:
            hint = closest_names(ref, hardware.list_presets())
            raise ModelInputError(
                f"unknown hardware {ref!r}: not a preset nor a spec file"
                + (f"; did you mean {', '.join(map(repr, hint))}?" if hint else "."))
        key = str(path)
        if key not in self.hardware:
            self.hardware[key] = hardware.load(path)
        return key

    def workload(self, ref: str):
        from perfmodel import workloads

        ref = ref.strip()
        if ref not in self.workloads:
            if ref.endswith(".json") or "/" in ref:
                path = self._path(ref)
                if path is None:
                    raise ModelInputError(f"workload file {ref!r} not found.")
                self.workloads[ref] = workloads.load(path)
            else:
                self.workloads[ref] = workloads.preset(ref)
        return self.workloads[ref]


def _number(row: dict, col: str, errors: list, i: int, *, least: float = 0.0,
            strict: bool = True) -> float | None:
    text = (row.get(col) or "").strip()
    if not text:
        return None
    try:
        v = float(text)
    except ValueError:
        errors.append((i, col, f"{text!r} is not a number"))
        return None
    if not math.isfinite(v) or (v <= least if strict else v < least):
        errors.append((i, col, f"{text} must be finite and {'>' if strict else '>='} "
                               f"{least:g}"))
        return None
    return v


def _row_ops(row: dict, i: int, errors: list, res: _Resolver):
    """The row's `Ops` (None after recording errors)."""
    from perfmodel.workloads import CNN, gemm

    n_err = len(errors)
    wl_ref = (row.get("workload") or "").strip()
    phase = (row.get("phase") or "").strip()
    shape = {c: _number(row, c, errors, i, least=0.0, strict=(c != "context"))
             for c in SHAPE_COLUMNS}
    bits = {c: _number(row, c, errors, i) for c in BIT_COLUMNS}
    try:
        opts = _parse_options(row.get("options", ""))
    except ValueError as e:
        errors.append((i, "options", f"{e}; write key=value;key=value"))
        opts = {}
    if len(errors) > n_err:
        return None
    if wl_ref == "gemm":
        if phase not in ("", "kernel"):
            errors.append((i, "phase", f"{phase!r} is not a GEMM phase; write kernel or "
                                       "leave it empty"))
        phase = "kernel"
        wl = None
    else:
        try:
            wl = res.workload(wl_ref)
        except ModelInputError as e:
            errors.append((i, "workload", str(e).rstrip(".")))
            return None
        valid = ("inference",) if isinstance(wl, CNN) else ("decode", "prefill", "request")
        if phase not in valid:
            errors.append((i, "phase", (f"{phase!r} is not" if phase else "empty; it must be")
                           + f" a phase of {wl_ref} ({', '.join(valid)})"))
            return None
    used = PHASE_COLUMNS[phase]
    for c in SHAPE_COLUMNS:
        if c in used and shape[c] is None:
            errors.append((i, c, f"empty; phase {phase} needs {', '.join(used)}"))
        elif c not in used and shape[c] is not None:
            errors.append((i, c, f"not used by phase {phase} (it uses {', '.join(used)}); "
                                 "leave it empty"))
    if phase == "kernel":
        for c in ("wbits", "kvbits"):
            if bits[c] is not None:
                errors.append((i, c, "not used by a GEMM row (abits is its operand width)"))
        if opts:
            errors.append((i, "options", "a GEMM row takes no options"))
    if len(errors) > n_err:
        return None
    try:
        if phase == "kernel":
            return gemm(shape["m"], shape["n"], shape["k"], bits=bits["abits"] or 16.0)
        kw = {c: v for c, v in bits.items() if v is not None}
        if phase == "inference":
            kw.pop("kvbits", None)
            return wl.inference(shape["batch"], **kw, **opts)
        lengths = {c: shape[c] for c in used if c != "batch"}
        return getattr(wl, phase)(shape["batch"], **lengths, **kw, **opts)
    except ModelInputError as e:
        errors.append((i, "workload", str(e).rstrip(".")))
    except TypeError as e:
        errors.append((i, "options", f"{e}"))
    return None


def _label(ids: dict) -> str:
    hw = ids.get("hardware") or "target"
    if ids.get("workload") == "gemm":
        what = f"GEMM {ids['m']}x{ids['n']}x{ids['k']}"
    else:
        shape = " ".join(f"{c}={ids[c]}" for c in ("batch", "prompt", "context", "generate")
                         if ids.get(c))
        bits = " ".join(f"{c[0].upper()}{ids[c]}" for c in BIT_COLUMNS if ids.get(c))
        what = " ".join(x for x in (ids.get("workload"), ids.get("phase"), shape, bits) if x)
    base = f" vs {ids['baseline']}" if ids.get("baseline") else ""
    return f"{hw}{base}: {what} {ids['metric']}"


def parse_measurements(rows: list[dict], *, where: str = "measurements", folder=None,
                       target=None, target_key: str = "", header=None) -> Measurements:
    """Validate rows (dicts of the schema's columns, as read by ``csv.DictReader``)
    into `Measurements`; raise `MeasurementError` naming every bad row."""
    errors: list[tuple[int, str, str]] = []
    header = list(header if header is not None else (rows[0].keys() if rows else []))
    unknown = [c for c in header if c not in COLUMNS]
    for c in unknown:
        hint = closest_names(c, COLUMNS, n=1)
        errors.append((0, c, "not a column of the schema"
                       + (f" (did you mean {hint[0]!r}?)" if hint else "")
                       + f"; valid: {', '.join(COLUMNS)}"))
    for c in REQUIRED:
        if c not in header:
            errors.append((0, c, "required column missing"))
    if errors:
        raise MeasurementError(where, errors)
    if not rows:
        raise MeasurementError(where, [(0, "-", "the table has no data rows")])
    res = _Resolver(pathlib.Path(folder) if folder else None, target, target_key)
    out = []
    for i, row in enumerate(rows, start=1):
        row = {c: ("" if row.get(c) is None else str(row.get(c))).strip() for c in COLUMNS}
        n_err = len(errors)
        # hardware
        hw_key = None
        if row["hardware"]:
            try:
                hw_key = res.hardware_key(row["hardware"])
            except ModelInputError as e:
                errors.append((i, "hardware", str(e).rstrip(".")))
        elif target is None:
            errors.append((i, "hardware", "empty, and no calibration target was given "
                                          "(name a preset or spec file)"))
        else:
            hw_key = target_key
        # metric, unit, value, baseline
        metric = METRICS.get(row["metric"])
        if metric is None:
            hint = closest_names(row["metric"], METRICS, n=1)
            errors.append((i, "metric", f"unknown metric {row['metric']!r}"
                           + (f" (did you mean {hint[0]!r}?)" if hint else "")
                           + f"; valid: {', '.join(METRICS)}"))
        elif row["unit"] not in metric.units:
            errors.append((i, "unit", f"{row['unit']!r} does not match metric "
                                      f"{metric.name}; valid: {', '.join(metric.units)}"))
        value = _number(row, "value", errors, i)
        if value is None and not row["value"]:
            errors.append((i, "value", "empty; the measured number is required"))
        base_key = None
        if metric is not None and metric.ratio:
            if not row["baseline"]:
                errors.append((i, "baseline", f"empty; the ratio metric {metric.name} needs "
                                              "the baseline hardware it is measured against"))
            else:
                try:
                    base_key = res.hardware_key(row["baseline"])
                except ModelInputError as e:
                    errors.append((i, "baseline", str(e).rstrip(".")))
        elif row["baseline"] and metric is not None:
            errors.append((i, "baseline", f"given, but {metric.name} is not a ratio metric "
                                          "(speedup, energy_efficiency_gain, ...)"))
        if not row["source"]:
            errors.append((i, "source", "empty; say where the number comes from"))
        ops = _row_ops(row, i, errors, res)
        if len(errors) > n_err:
            continue
        for key, col in ((hw_key, "hardware"), (base_key, "baseline")):
            if key is None:
                continue
            try:
                res.hardware[key].check(ops)
            except ModelInputError as e:
                errors.append((i, col, str(e).rstrip(".")))
        if len(errors) > n_err:
            continue
        ids = {c: row[c] for c in ("hardware", "baseline", "workload", "phase", *SHAPE_COLUMNS,
                                   *BIT_COLUMNS, "options", "metric") if row[c]}
        ids.setdefault("hardware", "")
        out.append(Measurement(
            label=_label(ids), ids=ids, metric=metric.name, unit=row["unit"],
            value_as_written=value, source=row["source"], group=row["group"],
            cases=[Case(hw_key, ops, base_key, ops if base_key is not None else None)]))
    if errors:
        raise MeasurementError(where, errors)
    return Measurements(out, res.hardware)


def load_measurements(path, *, target=None, target_key: str = "") -> Measurements:
    """Read and validate a measurement CSV (see the module docstring for the schema).

    Main arguments:
        path: the CSV file, or a file name in fit/data/measurements/.
        target: the calibration target (a target object) that rows with an empty
            ``hardware`` column refer to; without one such rows are errors.
        target_key: the target's key in the table (its preset name, so that rows naming
            the preset are the same hardware).

    Raises `MeasurementError` (a `ModelInputError`) listing every bad row: row number,
    column and reason (unknown hardware or workload, unknown metric, unit that does not
    match the metric, zero or negative value, ratio without a baseline, ...).
    """
    p = pathlib.Path(path)
    if not p.is_file() and (DATA_DIR / p.name).is_file() and len(p.parts) == 1:
        p = DATA_DIR / p.name
    if not p.is_file():
        shipped = sorted(f.name for f in DATA_DIR.glob("*.csv"))
        raise ModelInputError(f"measurement file {str(path)!r} not found; shipped: "
                              f"{', '.join(shipped)}.")
    raw = p.read_bytes()
    text = raw.decode("utf-8")
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    data = parse_measurements(rows, where=str(path), folder=p.parent, target=target,
                              target_key=target_key, header=reader.fieldnames or [])
    data.path = str(p)
    data.sha256 = hashlib.sha256(raw).hexdigest()
    data.description = _display_path(p)
    return data


def _display_path(p: pathlib.Path) -> str:
    p = p.resolve()
    root = pathlib.Path(__file__).resolve().parent.parent
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)


def shipped_measurements() -> list[str]:
    """Measurement files shipped in fit/data/measurements/."""
    return sorted(f.name for f in DATA_DIR.glob("*.csv"))


def shipped_data_for(hardware_name: str) -> list[str]:
    """Shipped measurement files with a row on ``hardware_name`` (or a baseline of it)."""
    found = []
    for name in shipped_measurements():
        with (DATA_DIR / name).open() as f:
            if any(hardware_name in ((r.get("hardware") or "").strip(),
                                     (r.get("baseline") or "").strip())
                   for r in csv.DictReader(f)):
                found.append(name)
    return found


# ----------------------------------------------------------------- claims as measurements
#: claims metric -> (measurement metric, unit)
CLAIM_METRICS = {
    "achieved_tflops": ("achieved_flops", "TFLOPS"), "latency_ms": ("latency", "ms"),
    "tokens_per_s": ("tokens_per_s", "tokens/s"), "tokens_per_j": ("tokens_per_j", "tokens/J"),
    "energy_per_token_j": ("energy_per_token", "J/token"), "power_w": ("power", "W"),
    "area_mm2": ("area", "mm2"), "speedup": ("speedup", "x"),
    "energy_efficiency_gain": ("energy_efficiency_gain", "x"),
    "dynamic_energy_efficiency_gain": ("dynamic_energy_efficiency_gain", "x"),
    "area_reduction": ("area_reduction", "x"),
}


def claims_measurements(ids=None, *, path=None) -> Measurements:
    """Published claims (fit/data/claims/*.csv) as measurements: one row per claim, its
    cases (workload x batch x length lists) combined by the claim's ``aggregate``, the
    baseline at ``baseline_batch`` where the claim says so. ``ids``: claim ids (all
    claims when None). Claims on a metric the calibrator cannot differentiate
    (``peak_tflops``, ``tokens_per_dollar_gain``) are refused by name."""
    from perfmodel import hardware
    from perfmodel.fit._claims import _cases, _options, claim_ops, load_claims

    rows = load_claims(path)
    by_id = {r["id"]: r for r in rows}
    if ids is None:
        ids = list(by_id)
    missing = [i for i in ids if i not in by_id]
    if missing:
        hints = {i: closest_names(i, by_id, n=1) for i in missing}
        raise ModelInputError("unknown claim " + ", ".join(
            f"{i!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for i, h in hints.items())
            + ".")
    hw = {}
    out = []
    texts = []
    for cid in ids:
        row = by_id[cid]
        if row["metric"] not in CLAIM_METRICS:
            raise ModelInputError(f"claim {cid}: metric {row['metric']} cannot be calibrated "
                                  f"against; valid: {', '.join(CLAIM_METRICS)}.")
        metric, unit = CLAIM_METRICS[row["metric"]]
        for name in (row["system"], row["baseline"]):
            if name and name not in hw:
                hw[name] = hardware.preset(name)
        opts = _options(row)
        agg = opts.get("aggregate", "mean")
        cases = []
        for w, b, lengths in _cases(row):
            r = dict(row, **lengths)
            ops = claim_ops(r, w, b)
            base_ops = None
            if row["baseline"]:
                bb = opts.get("baseline_batch")
                base_ops = ops if bb is None else claim_ops(r, w, bb)
            cases.append(Case(row["system"], ops, row["baseline"] or None, base_ops))
        ids_ = {"claim": cid, "hardware": row["system"], "baseline": row["baseline"],
                "workload": row["workload"], "phase": row["phase"], "metric": metric}
        out.append(Measurement(
            label=cid, ids=ids_, metric=metric, unit=unit,
            value_as_written=float(row["published"]), source=row["source"],
            group=row["file"].removesuffix(".csv"), cases=cases,
            aggregate=agg if len(cases) > 1 else "single"))
        texts.append(",".join(str(row.get(k, "")) for k in sorted(row)))
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    return Measurements(out, hw, path=None, sha256=digest,
                        description="claims " + ", ".join(ids))
