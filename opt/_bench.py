"""`perfmodel bench codesign`: the gradient method beside the search baselines on the
shipped problems, at equal evaluation budgets (a value-and-gradient counted at its
measured cost in forward evaluations) and under a wall-clock cap."""

from __future__ import annotations

import math

from perfmodel.opt._baselines import METHODS, discrete_size, exact_scores, run_baseline
from perfmodel.opt._optimize import optimize
from perfmodel.opt._problems import load_problem

#: The benchmark problems among the shipped spaces: DRAM-PIM, GPU+PIM system, CIM for
#: BitNet, hybrid-bonded MoE, a GPU for tokens/$, and an 18-dimensional GPU.
BENCH_SPACES = ("dram-pim", "system", "cim", "bonded-3d", "xpu", "xpu-wide")


def codesign_benchmark(spaces=BENCH_SPACES, *, methods=METHODS, starts: int = 16,
                       steps: int = 200, seed: int = 0, wall_factor: float = 3.0,
                       progress=None) -> list[dict]:
    """One row per space and method: ``space``, ``method``, ``budget`` (forward
    evaluations used), ``wall_s``, ``best`` (the objective's exact value of the best
    feasible hardened design, in its units; None if none), ``sense``, ``stopped``
    ("budget", "wall" or "done"). Baselines get the gradient run's budget and at most
    ``wall_factor`` times its wall-clock."""
    rows = []
    for name in spaces:
        p = load_problem(name)
        r = optimize(p.space, p.objective, p.constraints, starts=starts, steps=steps,
                     seed=seed, progress=False)
        budget = int(math.ceil(r.evaluations / len(p.objective.mix)))
        sense = p.objective.sense
        rows.append(dict(space=name, method="gradient", budget=budget, wall_s=r.wall_s,
                         best=r.best if r.feasible else None, sense=sense, stopped="done"))
        if progress:
            progress(rows[-1])
        scores = exact_scores(p.space, p.objective, p.constraints)  # compiled once
        for m in methods:
            if m == "exhaustive" and (discrete_size(p.space) or math.inf) > 20_000:
                continue
            cap = max(wall_factor * r.wall_s, 10.0)
            b = run_baseline(m, p.space, p.objective, p.constraints, budget=budget,
                             seed=seed, wall_s=cap, scores=scores)
            best = p.objective.value(b["loss"]) if math.isfinite(b["loss"]) else None
            stopped = ("done" if m in ("exhaustive", "grid") and b["wall_s"] < cap else
                       "wall" if b["evaluations"] < budget else "budget")
            rows.append(dict(space=name, method=m, budget=b["evaluations"],
                             wall_s=b["wall_s"], best=best, sense=sense, stopped=stopped))
            if progress:
                progress(rows[-1])
    return rows
