"""Search baselines on the same problems, for an honest comparison with `optimize`:
random search, grid, CMA-ES (the ``cma`` package), TPE (``optuna``) and exhaustive
enumeration of small discrete spaces.

Every method samples the same coordinates as the gradient method (`Space`), hardens
each sample the same way and scores it with the same exact model (``hard=True``); the
best *feasible* hardened design counts. Budgets are forward evaluations of a design
(each evaluates every point of the objective's mix); methods run with their libraries'
defaults (CMA-ES: the default population, sigma 0.3 of the box; TPE: optuna's default
sampler with the seed), and stop at the budget or the wall-clock limit.
"""

from __future__ import annotations

import itertools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from perfmodel._errors import ModelInputError
from perfmodel.opt._objective import problem_fn
from perfmodel.opt._space import Choice, Integer, PowerOfTwo, Real

METHODS = ("random", "grid", "cmaes", "tpe", "exhaustive")
#: Penalty per unit of log-violation added to an infeasible sample's loss, so that the
#: searches (CMA-ES, TPE) are steered towards feasibility.
PENALTY = 1e3
#: Most designs an exhaustive enumeration evaluates.
EXHAUSTIVE_MAX = 20_000


class Scorer:
    """Exact scores of batches of coordinate vectors, and the best feasible so far."""

    def __init__(self, space, objective, constraints, batch: int = 256, fn=None):
        self.space, self.batch = space, batch
        self._fn = fn or exact_scores(space, objective, constraints)
        self.evaluations = 0
        self.best_loss, self.best_u = math.inf, None
        self.trace = []  # (evaluations, best feasible loss)

    def __call__(self, u) -> np.ndarray:
        """Penalized losses of the rows of ``u`` (updates the best feasible)."""
        u = np.atleast_2d(np.asarray(u, dtype=np.float64))
        out = []
        for i in range(0, len(u), self.batch):
            chunk = u[i:i + self.batch]
            # padded to a power of two: a few compiled shapes (TPE's 1, CMA-ES's
            # population, the batch), never the batch's work for one design
            pad = (1 << (len(chunk) - 1).bit_length()) - len(chunk)
            x = jnp.asarray(np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
                            if pad else chunk, jnp.result_type(float))
            loss, g = self._fn(x)
            loss, g = np.asarray(loss)[:len(chunk)], np.asarray(g)[:len(chunk)]
            viol = np.maximum(g, 0.0).sum(-1) if g.size else np.zeros(len(chunk))
            feasible = viol <= 1e-6
            for j in np.flatnonzero(feasible & np.isfinite(loss)):
                if loss[j] < self.best_loss:
                    self.best_loss, self.best_u = float(loss[j]), chunk[j]
            self.evaluations += len(chunk)
            self.trace.append((self.evaluations, self.best_loss))
            out.append(np.where(np.isfinite(loss), loss, 1e9) + PENALTY * viol)
        return np.concatenate(out)


def exact_scores(space, objective, constraints):
    """The jitted ``u [n, D] -> (loss [n], violations [n, C])`` of hardened designs on
    the exact model: one compilation that every method of a comparison can share."""
    f = problem_fn(space, objective, tuple(constraints))
    return jax.jit(jax.vmap(lambda u: f(space.harden(u), 1.0, True)[:2]))


def _box_dims(space):
    """(lower, upper) coordinate bounds per coordinate (logit and choice: +-4)."""
    lo, hi = [], []
    for dim in space.dims.values():
        if isinstance(dim, Choice) or (isinstance(dim, Real) and dim.scale == "logit"):
            lo += [-4.0] * dim.size
            hi += [4.0] * dim.size
        else:
            lo.append(0.0)
            hi.append(1.0)
    return np.asarray(lo), np.asarray(hi)


def _levels(dim, n: int) -> list[np.ndarray]:
    """Coordinates of ``n`` levels of one dim (every value of a small discrete one)."""
    if isinstance(dim, Choice):
        return [np.eye(dim.size)[i] * 4.0 for i in range(dim.size)]
    if isinstance(dim, Integer) and dim.scale == "linear" and dim.hi - dim.lo + 1 <= n:
        return [dim.encode(v) for v in np.arange(dim.lo, dim.hi + 1)]
    if isinstance(dim, PowerOfTwo):
        a, b = int(math.log2(dim.lo)), int(math.log2(dim.hi))
        if b - a + 1 <= n:
            return [dim.encode(2.0 ** e) for e in range(a, b + 1)]
    return [np.atleast_1d(np.asarray(t)) if not (isinstance(dim, Real)
                                                 and dim.scale == "logit")
            else np.array([math.log(t / (1 - t))])
            for t in np.linspace(0.0, 1.0, n)] if n > 1 else [np.array([0.5])]


def discrete_size(space) -> int | None:
    """Number of designs of a fully discrete space, or None if a dim is continuous."""
    n = 1
    for dim in space.dims.values():
        if isinstance(dim, Choice):
            n *= dim.size
        elif isinstance(dim, Integer):
            n *= int(dim.hi - dim.lo + 1)
        elif isinstance(dim, PowerOfTwo):
            n *= int(math.log2(dim.hi) - math.log2(dim.lo) + 1)
        else:
            return None
    return n


def run_baseline(method: str, space, objective, constraints=(), *, budget: int,
                 seed: int = 0, wall_s: float | None = None, scores=None) -> dict:
    """Run one baseline until ``budget`` evaluations (or ``wall_s`` seconds).

    ``scores``: a shared `exact_scores` function (else one is compiled). Returns
    ``method``, ``evaluations``, ``wall_s``, ``loss`` (best feasible exact loss, inf if
    none), ``values`` (path -> value of that design) and ``trace``."""
    if method not in METHODS:
        raise ModelInputError(f"method {method!r} is invalid; valid: {', '.join(METHODS)}.")
    score = Scorer(space, objective, constraints, fn=scores)
    t0 = time.perf_counter()
    deadline = t0 + wall_s if wall_s else math.inf
    rng = np.random.default_rng(seed)
    lo, hi = _box_dims(space)
    if method == "random":
        left = budget
        key = jax.random.PRNGKey(seed)
        while left > 0 and time.perf_counter() < deadline:
            key, sub = jax.random.split(key)
            n = min(left, score.batch)
            score(space.sample(sub, n))
            left -= n
    elif method in ("grid", "exhaustive"):
        if method == "exhaustive":
            size = discrete_size(space)
            if size is None or size > EXHAUSTIVE_MAX:
                raise ModelInputError(f"exhaustive enumeration needs a discrete space of at "
                                      f"most {EXHAUSTIVE_MAX} designs; this one has "
                                      f"{size or 'continuous dims'}.")
            per_dim = [_levels(d, 10 ** 9) for d in space.dims.values()]
        else:
            k = max(int(budget ** (1.0 / len(space.dims))), 1)
            per_dim = [_levels(d, k) for d in space.dims.values()]
        batch = []
        for combo in itertools.product(*per_dim):
            if method == "grid" and score.evaluations + len(batch) >= budget:
                break
            batch.append(np.concatenate(combo))
            if len(batch) == score.batch:
                score(np.asarray(batch))
                batch = []
                if time.perf_counter() > deadline:
                    break
        if batch:
            score(np.asarray(batch))
    elif method == "cmaes":
        import cma

        d = len(lo)  # cma needs two dimensions at least: a 1-D space gets an idle one
        blo, bhi = (np.append(lo, 0.0), np.append(hi, 1.0)) if d == 1 else (lo, hi)
        es = cma.CMAEvolutionStrategy((blo + bhi) / 2, 0.3, {
            "bounds": [list(blo), list(bhi)], "seed": seed + 1, "verbose": -9})
        while score.evaluations < budget and time.perf_counter() < deadline:
            xs = es.ask()
            xs = xs[:max(budget - score.evaluations, 1)]
            losses = score(np.asarray(xs)[:, :d])
            if len(xs) == es.popsize:
                es.tell(xs, list(losses))
            else:
                break
    elif method == "tpe":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
        while score.evaluations < budget and time.perf_counter() < deadline:
            trial = study.ask()
            u = np.array([trial.suggest_float(f"u{i}", lo[i], hi[i]) for i in range(len(lo))])
            study.tell(trial, float(score(u[None])[0]))
    wall = time.perf_counter() - t0
    values = ({p: float(v) for p, v in space.values(
        space.harden(jnp.asarray(score.best_u, jnp.result_type(float))), hard=True).items()}
        if score.best_u is not None else {})
    del rng
    return dict(method=method, evaluations=score.evaluations, wall_s=wall,
                loss=score.best_loss, values=values, trace=score.trace)
