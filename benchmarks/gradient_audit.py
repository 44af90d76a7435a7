"""Gradient audit of every target family, in float64 (`perfmodel._audit`).

For one preset point per family (and the integer knobs of its workload), every input's
automatic derivative is compared with the finite slopes to its neighbouring integers (or
+-1 %); each input's range ([x/2, 2x], bits [1, 16], mapping bounds) is scanned for
steps. Prints a summary per family and, with ``--rows``, every disagreement.

    python benchmarks/gradient_audit.py [--rows] [--no-scan] [--family NAME]

Used for the before/after table of the gradient issue (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import math
import time

import jax

jax.config.update("jax_enable_x64", True)

import perfmodel as pm  # noqa: E402
from perfmodel._audit import CASES, gradient_audit  # noqa: E402

#: Relative jump (at an interval of ~1e-12 of the range) that counts as a step.
STEP_TOL = 1e-6

def summarize(family, rows, seconds):
    bad = [r for r in rows if r["verdict"] != "ok"]
    mono = [r for r in rows if r["monotone"]
            and any(s is not None and s > 1e-6 for s in (r["forward"], r["backward"],
                                                          r["autodiff"]))]
    steps = [r for r in rows if r.get("jump", 0.0) > STEP_TOL]

    def ratio(r):
        ref = max(abs(s) for s in (r["forward"], r["backward"]) if s is not None)
        return abs(r["autodiff"]) / ref if ref > 0 else math.inf

    worst = max((ratio(r) for r in rows if abs(r["autodiff"]) > 1e-4), default=0.0)
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("sign", "zero", "magnitude")}
    print(f"{family:<20}{len(rows):>4} inputs  ok {len(rows) - len(bad):>3}  "
          f"sign {counts['sign']:>2}  zero {counts['zero']:>2}  magnitude "
          f"{counts['magnitude']:>2}  worst |g|/slope {worst:8.3g}  "
          f"monotone violations {len(mono)}  steps {len(steps)}  ({seconds:.0f} s)",
          flush=True)
    return bad, mono, steps


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", action="store_true", help="print every disagreement")
    p.add_argument("--no-scan", action="store_true", help="skip the step scans")
    p.add_argument("--family", action="append", help="only these families")
    a = p.parse_args()
    for family, case in CASES.items():
        if a.family and not any(f in family for f in a.family):
            continue
        hw_name, wl_name, phase, knobs, mapping = case
        hw = pm.hardware.preset(hw_name)
        t0 = time.perf_counter()
        rows = gradient_audit(hw, pm.workloads.preset(wl_name), phase, scan=not a.no_scan,
                              mapping=hw.default_mapping() if mapping else None, **knobs)
        bad, mono, steps = summarize(family, rows, time.perf_counter() - t0)
        if a.rows:
            for r in bad:
                print(f"    {r['verdict']:<10}{r['name']:<42} x={r['value']:<10.4g} "
                      f"g={r['autodiff']:+.3e}  f={_fmt(r['forward'])}  "
                      f"b={_fmt(r['backward'])}  trend={_fmt(r['trend'])}")
            for r in mono:
                print(f"    monotone  {r['name']:<42} g={r['autodiff']:+.3e}  "
                      f"f={_fmt(r['forward'])}  b={_fmt(r['backward'])}")
            for r in steps:
                print(f"    step      {r['name']:<42} at {r['jump_at']:.6g}: "
                      f"jump {r['jump']:.3g}")


def _fmt(x):
    return "   --    " if x is None else f"{x:+.3e}"


if __name__ == "__main__":
    main()
