"""Published claims (fit/data/claims.csv) and `reproduce`: predicted vs published.

A claim names a system (a hardware preset), optionally a baseline, a workload phase
and a metric. Ratio metrics (``speedup``, ``energy_efficiency_gain``) evaluate both
systems on the same workload. Each claim carries the tolerance its test asserts and the
source of the published number.
"""

from __future__ import annotations

import csv
import pathlib

from perfmodel._errors import ModelInputError

DATA_DIR = pathlib.Path(__file__).parent / "data"
CLAIMS_FILE = DATA_DIR / "claims.csv"

#: metric -> (function of (report, ops) for a single system, is it a ratio of two)
SINGLE_METRICS = {
    "achieved_tflops": lambda rep, ops: float(ops.total_flops / rep.latency) / 1e12,
    "latency_ms": lambda rep, ops: float(rep.latency) * 1e3,
    "tokens_per_s": lambda rep, ops: float(rep.tokens_per_s),
    "tokens_per_j": lambda rep, ops: float(1.0 / rep.energy_per_token),
    "energy_per_token_j": lambda rep, ops: float(rep.energy_per_token),
}
RATIO_METRICS = {
    "speedup": lambda s, b: float(s.tokens_per_s / b.tokens_per_s),
    "energy_efficiency_gain": lambda s, b: float(b.energy_per_token / s.energy_per_token),
}


def load_claims(path=None) -> list[dict]:
    with pathlib.Path(path or CLAIMS_FILE).open() as f:
        return list(csv.DictReader(f))


def _num(row, key, default=None):
    v = row.get(key, "")
    return float(v) if v not in ("", None) else default


def claim_ops(row: dict):
    """The `Ops` a claim is evaluated on."""
    from perfmodel import workloads

    opts = dict(kv.split("=", 1) for kv in row.get("options", "").split(";") if kv)
    abits = _num(row, "abits", 16.0)
    if row["workload"] == "gemm":
        return workloads.gemm(float(opts["m"]), float(opts["n"]), float(opts["k"]), bits=abits)
    wl = workloads.preset(row["workload"])
    bits = dict(wbits=_num(row, "wbits"), abits=abits, kvbits=_num(row, "kvbits", 16.0))
    extra = {}
    if "attention" in opts:
        extra["attention"] = opts["attention"]
    if "tensor_parallel" in opts:
        extra["tensor_parallel"] = int(opts["tensor_parallel"])
    phase = row["phase"]
    b = _num(row, "batch", 1.0)
    if phase == "decode":
        return wl.decode(b, _num(row, "context"), **bits, **extra)
    if phase == "prefill":
        return wl.prefill(b, _num(row, "prompt"), **bits, **extra)
    if phase == "request":
        return wl.request(b, _num(row, "prompt"), _num(row, "generate"), **bits, **extra)
    if phase == "inference":
        return wl.inference(b, wbits=bits["wbits"] or 16.0, abits=abits)
    raise ModelInputError(f"claim {row['id']}: phase {phase!r} is not supported.")


def evaluate_claim(row: dict) -> dict:
    from perfmodel import evaluate, hardware

    ops = claim_ops(row)
    metric = row["metric"]
    sys_rep = evaluate(hardware.preset(row["system"]), ops, hard=True)
    if metric in RATIO_METRICS:
        base_rep = evaluate(hardware.preset(row["baseline"]), ops, hard=True)
        predicted = RATIO_METRICS[metric](sys_rep, base_rep)
    elif metric in SINGLE_METRICS:
        predicted = SINGLE_METRICS[metric](sys_rep, ops)
    else:
        raise ModelInputError(f"claim {row['id']}: unknown metric {metric!r}; valid: "
                              f"{sorted(SINGLE_METRICS) + sorted(RATIO_METRICS)}.")
    published = float(row["published"])
    rel = predicted / published - 1.0
    tol = float(row["tolerance"])
    return {
        "id": row["id"], "system": row["system"], "baseline": row["baseline"] or None,
        "workload": row["workload"], "metric": metric, "published": published,
        "predicted": predicted, "rel_error": rel, "tolerance": tol,
        "passed": abs(rel) <= tol, "source": row["source"],
    }


def reproduce(system: str | None = None, path=None) -> list[dict]:
    """Evaluate every claim whose system (and baseline) exist as hardware presets.

    Other arguments:
        system: only claims of this system (a preset name).
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
    out = []
    for row in rows:
        if row["system"] in known and (not row["baseline"] or row["baseline"] in known):
            out.append(evaluate_claim(row))
    return out
