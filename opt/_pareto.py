"""Pareto fronts by a vmapped sweep of scalarization weights.

`pareto_front` runs `optimize` once with one start per weight ``w`` of the objective's
two metrics (``w log m1 + (1 - w) log m2``, each by its sense), all starts vmapped;
every feasible hardened point any start visited is re-scored exactly and the
non-dominated ones form the front. Its hypervolume is measured in log space (unit-free):
the area dominated by the front up to a reference point 10 % beyond the worst of each
metric over the front, in the log of the metric (negated for a metric to maximize).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from perfmodel._errors import ModelInputError
from perfmodel.opt._objective import MAXIMIZE, Objective, problem_fn
from perfmodel.opt._optimize import optimize


@dataclasses.dataclass
class Front:
    """``metrics`` (the two names), ``points`` (non-dominated designs: ``values`` and
    ``scores`` (metric -> exact geometric mean over the mix), sorted by the first
    metric), ``hypervolume`` (log space), ``reference`` and the sweep's ``result``."""

    metrics: tuple
    points: list
    hypervolume: float
    reference: tuple
    result: object

    def plot(self, ax=None, **kw):
        """Scatter the front on matplotlib axes (log-log)."""
        import matplotlib.pyplot as plt

        ax = ax or plt.gca()
        a, b = self.metrics
        xs = [p["scores"][a] for p in self.points]
        ys = [p["scores"][b] for p in self.points]
        ax.plot(xs, ys, "o-", **kw)
        ax.set(xscale="log", yscale="log", xlabel=a, ylabel=b)
        return ax


def _minimized(scores, metrics):
    """Log of each metric, negated for one to maximize: lower is better in both."""
    return np.array([(-1.0 if m in MAXIMIZE else 1.0) * np.log(scores[m]) for m in metrics])


def non_dominated(costs: np.ndarray) -> np.ndarray:
    """Indices of the rows of ``costs`` [n, 2] (minimized) that no other row dominates."""
    order = np.lexsort((costs[:, 1], costs[:, 0]))
    keep, best = [], np.inf
    for i in order:
        if costs[i, 1] < best - 1e-12:
            keep.append(i)
            best = costs[i, 1]
    return np.asarray(keep, dtype=int)


def hypervolume(costs: np.ndarray, reference) -> float:
    """Area dominated by the minimized 2-D points ``costs`` up to ``reference``."""
    pts = costs[non_dominated(costs)]
    pts = pts[np.argsort(pts[:, 0])]
    area, prev_y = 0.0, reference[1]
    for x, y in pts:
        if x < reference[0] and y < prev_y:
            area += (reference[0] - x) * (prev_y - y)
            prev_y = y
    return float(area)


def pareto_front(space, objective: Objective, constraints=(), *, points: int = 16,
                 steps: int = 300, seed: int = 0, **kw) -> Front:
    """The trade-off between the two metrics of ``objective`` (given as
    ``{m1: 1, m2: 1}``): one vmapped `optimize` run whose starts sweep the weight of
    ``m1`` over [0, 1] (module docstring). Other keyword arguments go to `optimize`."""
    terms = list(objective.terms)
    if len(terms) != 2:
        raise ModelInputError(f"a Pareto front needs an objective of two metrics, e.g. "
                              f"{{'tokens_per_s': 1, 'area': 1}}; got {terms}.")
    w = np.linspace(0.0, 1.0, points)
    tw = np.stack([w, 1.0 - w], axis=1)
    r = optimize(space, objective, constraints, starts=points, steps=steps, seed=seed,
                 term_weights=tw, **kw)
    f = problem_fn(space, objective, tuple(constraints))
    feas = [p for p in r.points if p["feasible"]]
    if not feas:
        raise ModelInputError("no feasible hardened design: loosen the constraints.")
    us = jnp.asarray(np.stack([p["u"] for p in feas]))
    per_point = jax.jit(jax.vmap(lambda u: f(space.harden(u), 1.0, True)[2]))(us)
    mw = np.asarray(objective.weights)
    scores = [{m: float(np.exp(np.sum(mw * np.log(np.maximum(np.asarray(per_point[m][i]),
                                                                   1e-300)))))
               for m in terms} for i in range(len(feas))]
    costs = np.stack([_minimized(s, terms) for s in scores])
    keep = non_dominated(costs)
    ref = costs[keep].max(axis=0) + 0.1 * np.maximum(np.ptp(costs[keep], axis=0), 1e-3)
    front = []
    seen = set()
    for i in keep:
        vals = {p: float(v) for p, v in space.values(space.harden(us[i]), hard=True).items()}
        key = tuple(sorted(vals.items()))
        if key not in seen:
            seen.add(key)
            front.append(dict(values=vals, scores=scores[i]))
    front.sort(key=lambda p: p["scores"][terms[0]])
    return Front(metrics=tuple(terms), points=front,
                 hypervolume=hypervolume(costs[keep], ref), reference=tuple(ref), result=r)
