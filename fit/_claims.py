"""Published claims (fit/data/claims/*.csv) and `reproduce`: predicted vs published.

A claim names a system (a hardware preset), optionally a baseline preset, a workload
phase and a metric. Ratio metrics (``speedup``, ``energy_efficiency_gain``, ...) evaluate
both systems on the same ops; ``dynamic_energy_efficiency_gain`` leaves static energy out,
for papers whose energy model sums per-access and per-operation energies only. Each
claim carries the tolerance its test asserts, the source of the published number and,
when the model is known not to reproduce it, a
``known_miss`` reason with the measured error (the test then expects the miss).

Columns: id, system, baseline, workload, phase, batch, prompt, context, generate, wbits,
abits, kvbits, options, metric, published, unit, tolerance, source, notes, known_miss,
fitted.

- ``fitted`` names the preset parameters that were fitted to this very claim, as
  ``preset:spec.key`` (the key as written in the preset's TOML, e.g.
  ``vitallm:area.periphery_mm2``), several separated by ``|``; empty when nothing was.
  Such a claim is not an independent check: it agrees by construction, or, for a joint
  fit of one parameter to several claims, splits their difference. `load_claims` checks
  that each named key's ``[sources]`` entry in that preset starts with ``fitted`` and
  names the claim id, so the column and the presets cannot drift apart.

- ``workload`` and ``batch`` may list several values separated by ``|``: the claim is
  evaluated on every combination and the per-case metrics are combined by the option
  ``aggregate`` (``mean``, ``geomean``, ``min``, ``max``; default ``mean``). This is how
  "average over 12 models" or "range over batch 1-16" claims are written. ``prompt``,
  ``context`` and ``generate`` may list values too; those lists are zipped (equal
  lengths), so ``(Lin, Lout)`` pairs are one list each, crossed with workloads and
  batches.
- ``options`` is ``key=value;...``: ``m, n, k`` for a single GEMM, ``aggregate``,
  ``baseline_batch`` (ratio claims between systems each run at its own maximum batch,
  e.g. a PIM system that holds 8x the sequences), and any other keyword of the
  workload's phase method (e.g. ``attention=standard``).
- ``phase`` names a method of the workload (``decode``, ``prefill``, ``request``,
  ``inference`` for CNNs, or any other phase method a workload provides), or ``kernel``
  for a single GEMM.
"""

from __future__ import annotations

import dataclasses

import csv
import inspect
import itertools
import math
import pathlib
import re

from perfmodel._errors import ModelInputError

DATA_DIR = pathlib.Path(__file__).parent / "data"
CLAIMS_DIR = DATA_DIR / "claims"

def _peak_tflops(name) -> float:
    from perfmodel import hardware

    target = hardware.preset(name)
    peak = getattr(target, "peak_flops", None)
    if peak is None:
        raise ModelInputError(f"metric peak_tflops needs a target with a peak_flops "
                              f"property; preset {name!r} ({type(target).__name__}) has "
                              f"none.")
    return float(peak) / 1e12


#: metric -> function of (report, ops, system preset name) for a single system.
#: ``achieved_tflops`` is the rate the claim's ops reach; ``peak_tflops`` is the
#: target's MAC peak (the datasheet/paper-title figure), independent of the ops.
SINGLE_METRICS = {
    "achieved_tflops": lambda rep, ops, name: float(ops.total_flops / rep.latency) / 1e12,
    "peak_tflops": lambda rep, ops, name: _peak_tflops(name),
    "latency_ms": lambda rep, ops, name: float(rep.latency) * 1e3,
    "tokens_per_s": lambda rep, ops, name: float(rep.tokens_per_s),
    "tokens_per_j": lambda rep, ops, name: float(1.0 / rep.energy_per_token),
    "energy_per_token_j": lambda rep, ops, name: float(rep.energy_per_token),
    "power_w": lambda rep, ops, name: float(rep.power),
    "area_mm2": lambda rep, ops, name: float(rep.area) * 1e6,
}


def _tokens_per_dollar(rep, name):
    from perfmodel import hardware

    return float(rep.tokens_per_s) / hardware.price(name)


#: metric -> function of (system report, baseline report, system name, baseline name)
RATIO_METRICS = {
    "speedup": lambda s, b, sn, bn: float(s.tokens_per_s / b.tokens_per_s),
    "energy_efficiency_gain": lambda s, b, sn, bn: float(b.energy_per_token
                                                         / s.energy_per_token),
    # papers whose energy model sums per-access and per-operation energies, with no
    # static power (AttAcc's simulator, github:scale-snu/attacc_simulator src/system.py)
    "dynamic_energy_efficiency_gain": lambda s, b, sn, bn: float(
        b.dynamic_energy_per_token / s.dynamic_energy_per_token),
    "area_reduction": lambda s, b, sn, bn: float(b.area / s.area),
    "tokens_per_dollar_gain": lambda s, b, sn, bn: (_tokens_per_dollar(s, sn)
                                                    / _tokens_per_dollar(b, bn)),
}

AGGREGATES = {
    "mean": lambda v: sum(v) / len(v),
    "geomean": lambda v: math.exp(sum(math.log(x) for x in v) / len(v)),
    "min": min,
    "max": max,
}


def load_claims(path=None) -> list[dict]:
    """All claims: every CSV in fit/data/claims/ (or the one file ``path``)."""
    files = [pathlib.Path(path)] if path else sorted(CLAIMS_DIR.glob("*.csv"))
    rows = []
    for f in files:
        with f.open() as fh:
            for row in csv.DictReader(fh):
                row.setdefault("known_miss", "")
                row["fitted"] = row.get("fitted") or ""
                row["file"] = f.name
                rows.append(row)
    ids = [r["id"] for r in rows]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ModelInputError(f"claim ids must be unique; repeated: {dup}.")
    for row in rows:
        _check_fitted(row)
    return rows


def fitted_parameters(row: dict) -> list[str]:
    """The ``preset:spec.key`` entries of a claim's ``fitted`` column ([] if empty)."""
    return [p.strip() for p in (row.get("fitted") or "").split("|") if p.strip()]


def _check_fitted(row: dict) -> None:
    """Each ``fitted`` entry names a preset key whose source says it was fitted to this
    claim (one sentence naming the claim and the entry otherwise)."""
    from perfmodel import hardware

    for entry in fitted_parameters(row):
        preset, sep, key = entry.partition(":")
        where = f"claim {row['id']}: fitted entry {entry!r}"
        if not sep or not key or preset not in hardware.list_presets():
            raise ModelInputError(f"{where} must be 'preset:spec.key' with a hardware preset "
                                  f"name, several separated by '|'.")
        source = str(hardware.spec_sources(preset).get(key, ""))
        if not source.startswith("fitted"):
            raise ModelInputError(f"{where}: preset {preset!r} has no [sources] entry "
                                  f"{key!r} starting with 'fitted'.")
        if not re.search(rf"(?<![\w-]){re.escape(row['id'])}(?![\w-])", source):
            raise ModelInputError(f"{where}: the preset's source for {key!r} does not name "
                                  f"the claim {row['id']!r} it was fitted to.")


def _num(row, key, default=None):
    v = row.get(key, "")
    return float(v) if v not in ("", None) else default


def _options(row) -> dict:
    opts = {}
    for kv in row.get("options", "").split(";"):
        if not kv:
            continue
        key, _, value = kv.partition("=")
        try:
            opts[key] = float(value) if key != "tensor_parallel" else int(value)
        except ValueError:
            opts[key] = value
    return opts


#: Length columns that may list several values; their lists are zipped (one case per
#: position), e.g. prompt "256|1024" with generate "256|1024" is two cases.
LENGTH_KEYS = ("prompt", "context", "generate")


def _length_cases(row) -> list[dict]:
    lists = {k: row[k].split("|") for k in LENGTH_KEYS if "|" in (row.get(k) or "")}
    if not lists:
        return [{}]
    sizes = {len(v) for v in lists.values()}
    if len(sizes) != 1:
        raise ModelInputError(
            f"claim {row['id']}: the lists in {sorted(lists)} must have the same length "
            f"(they are zipped, one case per position); got {[len(v) for v in lists.values()]}.")
    return [{k: v[i] for k, v in lists.items()} for i in range(sizes.pop())]


def _cases(row) -> list[tuple[str, float | None, dict]]:
    workloads = row["workload"].split("|")
    batches = [float(b) for b in row["batch"].split("|")] if row.get("batch") else [None]
    return list(itertools.product(workloads, batches, _length_cases(row)))


def claim_ops(row: dict, workload: str | None = None, batch: float | None = None):
    """The `Ops` a claim is evaluated on (for one of its cases)."""
    from perfmodel import workloads

    opts = {k: v for k, v in _options(row).items() if k not in ("aggregate", "baseline_batch")}
    abits = _num(row, "abits", 16.0)
    workload = workload or row["workload"].split("|")[0]
    if batch is None:
        batch = float(row["batch"].split("|")[0]) if row.get("batch") else 1.0
    if workload == "gemm":
        return workloads.gemm(opts["m"], opts["n"], opts["k"], bits=abits)
    # hardware papers evaluate models at their own lengths, some beyond the trained
    # context (e.g. GPT-3 175B at 2k prompt + generated tokens); the claim reproduces the
    # paper's setting, so the max_position_embeddings check is off here
    wl = workloads.preset(workload)
    if hasattr(wl, "max_context"):
        wl = dataclasses.replace(wl, max_context=0)
    phase = row["phase"]
    if phase == "inference":  # CNN
        return wl.inference(batch, wbits=_num(row, "wbits", 16.0), abits=abits, **opts)
    method = getattr(wl, phase, None)
    if method is None or phase.startswith("_"):
        raise ModelInputError(f"claim {row['id']}: workload {workload!r} has no phase "
                              f"{phase!r}.")
    kw = dict(wbits=_num(row, "wbits"), abits=abits, kvbits=_num(row, "kvbits", 16.0))
    params = inspect.signature(method).parameters
    for key in ("prompt", "context", "generate"):
        if key in params and row.get(key):
            kw[key] = _num(row, key)
    return method(batch, **kw, **opts)


def _metric(row, workload, batch) -> float:
    from perfmodel import evaluate, hardware

    ops = claim_ops(row, workload, batch)
    metric = row["metric"]
    system = hardware.preset(row["system"])
    system.check(ops)
    rep = evaluate(system, ops, hard=True)
    if metric in RATIO_METRICS:
        base_batch = _options(row).get("baseline_batch")
        base_ops = ops if base_batch is None else claim_ops(row, workload, base_batch)
        baseline = hardware.preset(row["baseline"])
        baseline.check(base_ops)
        base_rep = evaluate(baseline, base_ops, hard=True)
        return RATIO_METRICS[metric](rep, base_rep, row["system"], row["baseline"])
    if metric in SINGLE_METRICS:
        return SINGLE_METRICS[metric](rep, ops, row["system"])
    raise ModelInputError(f"claim {row['id']}: unknown metric {metric!r}; valid: "
                          f"{sorted(SINGLE_METRICS) + sorted(RATIO_METRICS)}.")


def evaluate_claim(row: dict) -> dict:
    """Predicted vs published for one claim row (exact mode, ``hard=True``).

    Keys: id, system, baseline, workload, metric, published, predicted, rel_error
    (predicted / published - 1), tolerance, passed, source, known_miss, fitted (the
    ``preset:spec.key`` parameters fitted to this claim, or None) and cases (per-case
    values when the claim lists several workloads, batches or lengths, else None)."""
    agg = _options(row).get("aggregate", "mean")
    if agg not in AGGREGATES:
        raise ModelInputError(f"claim {row['id']}: aggregate = {agg!r}; valid: "
                              f"{sorted(AGGREGATES)}.")
    cases = _cases(row)
    values = [_metric(dict(row, **lengths), w, b) for w, b, lengths in cases]
    predicted = AGGREGATES[agg](values)
    published = float(row["published"])
    rel = predicted / published - 1.0
    tol = float(row["tolerance"])
    return {
        "id": row["id"], "system": row["system"], "baseline": row["baseline"] or None,
        "workload": row["workload"], "metric": row["metric"], "published": published,
        "predicted": predicted, "rel_error": rel, "tolerance": tol,
        "passed": abs(rel) <= tol, "source": row["source"],
        "known_miss": row.get("known_miss", ""),
        "fitted": fitted_parameters(row) or None,
        "cases": [{"workload": w, "batch": b, **lengths, "value": v}
                  for (w, b, lengths), v in zip(cases, values)] if len(cases) > 1 else None,
    }


def reproduce(system: str | None = None, path=None, *, progress=None) -> list[dict]:
    """Evaluate every claim whose system (and baseline) exist as hardware presets.

    Other arguments:
        system: only claims of this system (a preset name).
        path: a claims CSV file instead of fit/data/claims/*.csv.
        progress: called as ``progress(done, total, claim_id)`` after each claim (all 53
            take about a minute on 2 cores: each case runs eagerly in exact mode).
    """
    from perfmodel import hardware

    known = set(hardware.list_presets())
    rows = load_claims(path)
    if system is not None:
        if system not in {r["system"] for r in rows}:
            raise ModelInputError(
                f"no published claims for system {system!r}; systems with claims: "
                f"{', '.join(sorted({r['system'] for r in rows}))}.")
        rows = [r for r in rows if r["system"] == system]
    rows = [row for row in rows
            if row["system"] in known and (not row["baseline"] or row["baseline"] in known)]
    results = []
    for row in rows:  # claims are few and differently shaped: no batching to gain
        results.append(evaluate_claim(row))
        if progress is not None:
            progress(len(results), len(rows), row["id"])
    return results
