"""`optimize`: gradient-based co-design over a `Space`, many starts at once.

Per start, a coordinate vector ``u`` (see `perfmodel.opt.Space`) descends the augmented
Lagrangian of the relaxed (smooth) problem

    L(u) = loss(u) + sum_j lambda_j g_j(u) + mu / 2 sum_j max(g_j(u), 0)^2

with any optax transformation (Adam by default), each step projected back into the box
of every dim. Every ``chunk`` steps: the multipliers step, ``lambda_j <- max(0,
lambda_j + mu g_j)``, and a start whose violation did not fall to a quarter grows its
``mu <- growth mu`` (to a cap; the textbook rule); relaxed choices anneal their
temperature geometrically from ``temperature[0]`` to ``temperature[1]``; every start is
hardened (integers rounded, choices made) and re-scored with the exact model
(``hard=True``), and the best feasible hardened point of each start is kept; at the end
the best few are polished by a line search on the exact model. The result
is the best feasible *hardened* design over all starts and checkpoints (or, when none is
feasible, the least violating one, flagged infeasible), re-scored exactly and validated
eagerly (``hardware.check``), with the path of every start.

Starts run as one ``vmap``; on several devices (``jax.devices()``) they are sharded over
them (`jax.sharding.NamedSharding`), the same code a multi-host run uses after
``jax.distributed.initialize()``. Deterministic for a seed; with ``checkpoint=DIR`` the
state after every chunk is written atomically (write then rename) and ``resume=True``
continues from it with the same result as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from perfmodel._errors import ModelInputError
from perfmodel.opt._objective import CONSTRAINT_KEY, Objective, problem_fn

#: Violation (log ratio) below which a constraint counts as met: 1e-6 relative.
FEASIBLE_TOL = 1e-6
#: Log-ratio margin inside each bound that the descent aims for: the augmented
#: Lagrangian approaches a bound from both sides, and a design a hair over it would be
#: scored infeasible.
MARGIN = 1e-4
#: A constraint is reported active when its value is within this log ratio of its limit.
ACTIVE_TOL = 0.02


@dataclasses.dataclass
class Result:
    """What `optimize` found.

    - ``values``: path -> value of the best feasible hardened design;
    - ``hardware``, ``mapping``, ``knobs``: that design as the model's inputs;
    - ``score``: metric -> its exact (``hard=True``) value, the weighted geometric mean
      over the mix (``loss`` is the objective's exact loss);
    - ``constraints``: per constraint ``name``, ``value``, ``limit``, ``active``,
      ``satisfied``; ``feasible``: all satisfied and the eager check passed;
    - ``history``: per chunk and start, the relaxed loss and the hardened exact loss
      (``inf`` where infeasible); ``start_losses``: each start's best hardened loss;
    - ``evaluations``: model evaluations in forward-evaluation equivalents (a
      value-and-gradient counts ``grad_cost`` of them), ``wall_s``, ``seed``, ``steps``,
      ``starts``; ``points``: every hardened point scored (start, step, coordinates,
      loss, feasible).
    """

    space: object
    objective: Objective
    constraints: tuple
    values: dict
    hardware: object
    mapping: object
    knobs: dict
    score: dict
    loss: float
    constraint_report: list
    feasible: bool
    history: dict
    start_losses: np.ndarray
    evaluations: float
    grad_cost: float
    wall_s: float
    seed: int
    steps: int
    starts: int
    points: list = dataclasses.field(default_factory=list, repr=False)
    #: the structural variant (`optimize_problem`): ``hardware``, ``options``, ``label``
    variant: dict | None = None

    @property
    def sense(self):
        return self.objective.sense

    @property
    def best(self) -> float:
        """The objective's exact value in its units (`Objective.value` of the loss: a
        single metric's weighted geometric mean over the mix, or the product of the
        metrics raised to their weights, e.g. EDP)."""
        return self.objective.value(self.loss)

    def summary(self) -> dict:
        """A JSON-ready summary (what `perfmodel optimize --json` prints)."""
        return {"best": {k: float(v) for k, v in self.values.items()},
                "score": {k: float(v) for k, v in self.score.items()},
                "objective": self.objective.describe(), "sense": self.sense,
                "feasible": self.feasible,
                "constraints": self.constraint_report,
                "evaluations": self.evaluations, "wall_s": self.wall_s, "seed": self.seed,
                "steps": self.steps, "starts": self.starts,
                **({"variant": self.variant["label"]} if self.variant else {})}


def optimize(space, objective: Objective, constraints=(), *, starts: int = 16,
             steps: int = 300, optimizer: optax.GradientTransformation | None = None,
             seed: int = 0, chunk: int = 25, temperature=(1.0, 0.05), penalty: float = 10.0,
             penalty_growth: float = 2.0, penalty_max: float = 1e4, progress=None,
             checkpoint=None, resume: bool = False, term_weights=None) -> Result:
    """Co-optimize the moving inputs of ``space`` for ``objective`` under
    ``constraints`` (module docstring).

    **Main arguments:**

    - ``space``: a `perfmodel.opt.Space` (or a named one from `perfmodel.opt.spaces`).
    - ``objective``: a `perfmodel.opt.Objective`.
    - ``constraints``: `perfmodel.opt.Constraint` bounds (area, power, SLOs, quality).

    **Other arguments:**

    - ``starts``: independent starts (one `vmap`; start 0 is the space's starting design,
      the others uniform in the coordinates); ``steps``: gradient steps per start.
    - ``optimizer``: any optax transformation (default Adam, rate 0.05 in the unit
      coordinates with a cosine decay to 1 % over ``steps``); ``seed``.
    - ``chunk``: steps between multiplier updates, annealing, hardening and checkpoints.
    - ``temperature``: (start, end) of the relaxed choices' softmax temperature.
    - ``penalty``, ``penalty_growth``, ``penalty_max``: the augmented Lagrangian's mu.
    - ``progress``: a callable ``(done_steps, total, best)`` or True for a bar on a
      terminal (tqdm); None: a bar only when stderr is a terminal.
    - ``checkpoint``: a directory for the run's state and every hardened point;
      ``resume``: continue from it.
    - ``term_weights``: [starts, metrics] weights of the objective's metrics per start
      (default: the objective's own for every start); `pareto_front` sweeps them.
    """
    t0 = time.perf_counter()
    if starts < 1 or steps < 0 or chunk < 1:
        raise ModelInputError("starts and chunk must be >= 1 and steps >= 0.")
    constraints = tuple(constraints)
    # default: Adam with a cosine decay to 1 % of its rate, so the last steps settle on a
    # bound or an active constraint instead of oscillating around it
    optimizer = optimizer or optax.adam(optax.cosine_decay_schedule(
        0.05, max(steps, 1), alpha=0.01))
    f = problem_fn(space, objective, constraints)
    n_con = len(constraints)

    tw = None if term_weights is None else jnp.asarray(term_weights, jnp.result_type(float))
    if tw is not None and tw.shape != (starts, len(objective.terms)):
        raise ModelInputError(f"term_weights must be [starts, metrics] = [{starts}, "
                              f"{len(objective.terms)}], got {tuple(tw.shape)}.")
    if tw is None:
        tw = jnp.tile(jnp.asarray(list(objective.terms.values()), jnp.result_type(float)),
                      (starts, 1))

    def augmented(u, lam, mu, temp, w):
        loss, g, _ = f(u, temp, False, w)
        g = g + MARGIN  # aim just inside each bound, so that iterates end feasible
        return loss + jnp.sum(lam * g) + 0.5 * mu * jnp.sum(jnp.maximum(g, 0.0) ** 2), g

    grad_fn = jax.vmap(jax.value_and_grad(augmented, has_aux=True),
                       in_axes=(0, 0, 0, None, 0))

    def chunk_fn(u, opt_state, lam, mu, temps):
        def step(carry, temp):
            u, opt_state = carry
            (val, _), grads = grad_fn(u, lam, mu, temp, tw)
            updates, opt_state = optimizer.update(grads, opt_state, u)
            u = space.project(optax.apply_updates(u, updates))
            return (u, opt_state), val

        (u, opt_state), vals = jax.lax.scan(step, (u, opt_state), temps)
        _, g, _ = jax.vmap(lambda y, w: f(y, temps[-1], False, w))(u, tw)
        return u, opt_state, vals, g + MARGIN

    chunk_fn = jax.jit(chunk_fn)
    exact = jax.jit(lambda x: jax.vmap(
        lambda y, w: f(space.harden(y), 1.0, True, w)[:2])(x, tw))

    # ---- initial state (or the checkpoint's)
    ckpt = pathlib.Path(checkpoint) if checkpoint else None
    state = _load(ckpt) if (ckpt and resume) else None
    if state is None:
        key = jax.random.PRNGKey(seed)
        u = space.sample(key, starts)
        u = u.at[0].set(jnp.asarray(space.encode({}), u.dtype))
        u = space.project(u)
        state = dict(u=u, opt_state=optimizer.init(u), lam=jnp.zeros((starts, n_con)),
                     mu=jnp.full((starts,), penalty), viol=jnp.full((starts,), jnp.inf),
                     done=0, relaxed=[], hardened=[], points=[])
    u, opt_state = _shard(state["u"]), state["opt_state"]
    if isinstance(opt_state, _OptLeaves):  # from a checkpoint: the optimizer's tree
        opt_state = jax.tree.unflatten(jax.tree.structure(optimizer.init(u)), opt_state)
    lam, mu, viol = state["lam"], jnp.asarray(state["mu"]), jnp.asarray(state["viol"])
    done = int(state["done"])
    relaxed_hist, hard_hist, points = state["relaxed"], state["hardened"], state["points"]
    if u.shape != (starts, space.size):
        raise ModelInputError(f"the checkpoint in {ckpt} holds {u.shape[0]} starts of "
                              f"{u.shape[1]} coordinates, not {starts} x {space.size}.")
    bar = _progress(progress, steps, done)
    schedule = _temperatures(temperature, steps)
    if done == 0:
        _record(exact, u, points, hard_hist, 0)
    while done < steps:
        n = min(chunk, steps - done)
        temps = jnp.asarray(schedule[done:done + n])
        u, opt_state, vals, g = chunk_fn(u, opt_state, lam, mu, temps)
        lam = jnp.maximum(lam + mu[:, None] * g, 0.0)
        v = jnp.sum(jnp.maximum(g, 0.0), axis=-1)
        mu = jnp.where(v > 0.25 * viol, jnp.minimum(mu * penalty_growth, penalty_max), mu)
        viol = v
        done += n
        relaxed_hist.append(np.asarray(vals[-1]))
        _record(exact, u, points, hard_hist, done)
        if ckpt:
            _save(ckpt, dict(u=u, opt_state=opt_state, lam=lam, mu=mu, viol=viol, done=done,
                             relaxed=relaxed_hist, hardened=hard_hist, points=points))
        bar(done, _best_loss(points))
    bar(None, None)
    line_evals = _line_search(space, f, tw, points, steps)

    best = _choose(space, objective, points, f)
    wall = time.perf_counter() - t0
    # a gradient step's cost in forward evaluations, both batched as the searches batch
    grad_cost = _grad_cost(f, u)
    evals = len(objective.mix) * (steps * starts * grad_cost + len(points) + line_evals)
    return _result(space, objective, constraints, best, f, hist=dict(
        relaxed=np.asarray(relaxed_hist), hardened=np.asarray(hard_hist)),
        points=points, evaluations=evals, grad_cost=grad_cost, wall=wall, seed=seed,
        steps=steps, starts=starts)


# ---------------------------------------------------------------------- pieces
def _temperatures(temperature, steps):
    t0, t1 = temperature
    if t0 <= 0 or t1 <= 0:
        raise ModelInputError("temperatures must be > 0.")
    return np.geomspace(t0, t1, max(steps, 1))


def _record(exact, u, points, hard_hist, step):
    """Harden every start, score it exactly, keep the point."""
    loss, g = exact(u)
    loss, g = np.asarray(loss), np.asarray(g)
    feasible = np.all(g <= FEASIBLE_TOL, axis=-1) if g.size else np.ones(len(loss), bool)
    hard_hist.append(np.where(feasible, loss, np.inf))
    for i in range(len(loss)):
        points.append(dict(step=step, start=i, u=np.asarray(u[i]), loss=float(loss[i]),
                           violation=float(np.max(g[i], initial=0.0)),
                           feasible=bool(feasible[i])))


#: Exact-model line search after the descent: candidates per search, searches, points.
LINE_STEPS, LINE_ROUNDS, LINE_POINTS = 24, 3, 4


def _line_search(space, f, tw, points, step, rounds=LINE_ROUNDS, top=LINE_POINTS):
    """Polish the best feasible hardened points on the exact model: along the exact
    loss's descent direction (the discrete dims do not move: their hardening has no
    gradient), ``LINE_STEPS`` step lengths from 1e-4 to 0.5 of the unit box are scored
    at once and the best feasible one kept, ``rounds`` times. The augmented Lagrangian
    approaches an active bound from both sides and its last feasible checkpoint can sit
    a few percent inside; this lands on the bound to the scorer's precision. Every
    candidate joins ``points``; returns the evaluations spent."""
    feas = sorted((p for p in points if p["feasible"]), key=lambda p: p["loss"])[:top]
    if not feas:
        return 0
    grad = jax.jit(jax.grad(lambda u, w: f(space.harden(u), 1.0, True, w)[0]))
    score = jax.jit(jax.vmap(lambda u, w: f(space.harden(u), 1.0, True, w)[:2],
                             in_axes=(0, None)))
    ts = jnp.geomspace(1e-4, 0.5, LINE_STEPS)
    spent = 0
    for p in feas:
        u, w = jnp.asarray(p["u"]), tw[p["start"]]
        best = p["loss"]
        for _ in range(rounds):
            d = -grad(u, w)
            scale = jnp.max(jnp.abs(d))
            if not bool(jnp.isfinite(scale)) or float(scale) == 0.0:
                break
            cand = jax.vmap(space.project)(u[None] + ts[:, None] * (d / scale)[None])
            loss, g = (np.asarray(x) for x in score(cand, w))
            spent += len(cand)
            ok = np.all(g <= FEASIBLE_TOL, axis=-1) & (loss < best)
            if not ok.any():
                break
            i = int(np.argmin(np.where(ok, loss, np.inf)))
            u, best = cand[i], float(loss[i])
            points.append(dict(step=step, start=p["start"], u=np.asarray(u), loss=best,
                               violation=float(np.max(g[i], initial=0.0)), feasible=True))
    return spent


def _best_loss(points):
    feas = [p["loss"] for p in points if p["feasible"]]
    return min(feas) if feas else None


def _choose(space, objective, points, f):
    """The best feasible hardened point (eagerly validated), else the least violating."""
    order = sorted(points, key=lambda p: (not p["feasible"],
                                          p["loss"] if p["feasible"] else p["violation"]))
    keys = np.round(np.asarray(jax.jit(jax.vmap(space.harden))(
        jnp.asarray(np.stack([p["u"] for p in order])))), 9)
    seen = set()
    for p, key in zip(order, map(tuple, keys)):
        if key in seen:
            continue
        seen.add(key)
        if not p["feasible"]:
            return dict(p, validated=False, error="no feasible hardened design found")
        err = _validate(space, objective, p["u"])
        if err is None:
            return dict(p, validated=True, error=None)
        p["feasible"], p["error"] = False, err
    return dict(order[0], validated=False, error=order[0].get("error"))


def _validate(space, objective, u):
    """Eager check of the hardened design at every mix point (capacity, ranges), as the
    objective evaluates it (an LLM phase through `perfmodel.serve`)."""
    from perfmodel._serve import PHASES, serve

    hw, mapping, knobs = space.design(space.harden(jnp.asarray(u)), hard=True)
    wl, phase = objective.workload, objective.phase
    served = phase in PHASES and hasattr(wl, "kv_bytes_per_token")
    try:
        for point in objective.mix:
            kw = {**objective.options, **point, **_concrete(knobs)}
            if served:
                serve(hw, wl, phase, mapping=mapping, hard=True, check=True, **kw)
            else:
                hw.check(getattr(wl, phase)(**kw))
    except ModelInputError as e:
        return str(e)
    return None


def _result(space, objective, constraints, best, f, *, hist, points, evaluations,
            grad_cost, wall, seed, steps, starts):
    u = space.harden(jnp.asarray(best["u"]))
    loss, g, per_point = jax.jit(lambda x: f(x, 1.0, True))(u)
    hw, mapping, knobs = space.design(u, hard=True)
    w = np.asarray(objective.weights)
    score = {m: float(np.exp(np.sum(w * np.log(np.maximum(np.asarray(v), 1e-300)))))
             for m, v in per_point.items() if not m.startswith(CONSTRAINT_KEY)}
    report = []
    for c, gj in zip(constraints, np.asarray(g)):
        own = CONSTRAINT_KEY + c.name in per_point
        v = np.asarray(per_point[CONSTRAINT_KEY + c.name] if own else per_point[c.metric])
        if c.over == "mean":
            value = float(np.mean(v) if own else np.sum(w * v))
        else:  # the worst point: the largest under a max bound, the smallest under a min
            value = float(np.max(v) if c.max is not None else np.min(v))
        report.append(dict(name=c.name, metric=c.metric, value=value, limit=c.limit,
                           bound="max" if c.max is not None else "min",
                           active=bool(abs(gj) <= ACTIVE_TOL),
                           satisfied=bool(gj <= FEASIBLE_TOL),
                           slack=float(-gj)))
    values = {p: float(v) for p, v in space.values(u, hard=True).items()}
    feasible = bool(best["feasible"] and best.get("validated", True))
    per_start = np.full(starts, np.inf)
    for p in points:
        if p["feasible"]:
            per_start[p["start"]] = min(per_start[p["start"]], p["loss"])
    return Result(space=space, objective=objective, constraints=constraints, values=values,
                  hardware=hw, mapping=mapping,
                  knobs=_concrete(knobs), score=score,
                  loss=float(loss), constraint_report=report, feasible=feasible,
                  history=hist, start_losses=per_start, evaluations=float(evaluations),
                  grad_cost=grad_cost, wall_s=wall, seed=seed, steps=steps, starts=starts,
                  points=points)


def _concrete(knobs: dict) -> dict:
    """Workload knobs as Python floats (a group's weight bits as a dict of floats)."""
    return {k: ({g: float(b) for g, b in v.items()} if isinstance(v, dict) else float(v))
            for k, v in knobs.items()}


def _grad_cost(f, u, batch: int = 1024, repeats: int = 3) -> float:
    """Time of a value-and-gradient over that of a forward evaluation of the same
    ``batch`` designs (vmapped, warm): what one gradient step costs in the currency of
    the search baselines, which score designs in batches."""
    fwd = jax.jit(jax.vmap(lambda x: f(x, 1.0, False)[0]))
    vg = jax.jit(jax.vmap(jax.value_and_grad(lambda x: f(x, 1.0, False)[0])))
    x = jnp.resize(u, (batch,) + u.shape[1:])
    jax.block_until_ready(fwd(x))
    jax.block_until_ready(vg(x))

    def best(fn):
        t = []
        for _ in range(repeats):
            s = time.perf_counter()
            jax.block_until_ready(fn(x))
            t.append(time.perf_counter() - s)
        return min(t)

    return max(best(vg) / max(best(fwd), 1e-9), 1.0)


def _shard(u):
    """Starts split over the local devices (no-op on one)."""
    devices = jax.devices()
    if len(devices) < 2 or u.shape[0] % len(devices):
        return u
    mesh = jax.sharding.Mesh(np.asarray(devices), ("starts",))
    return jax.device_put(u, jax.sharding.NamedSharding(mesh,
                                                        jax.sharding.PartitionSpec("starts")))


def _progress(progress, total, done):
    if progress is None:
        progress = sys.stderr.isatty()
    if callable(progress):
        return lambda d, best: progress(d, total, best) if d is not None else None
    if not progress:
        return lambda d, best: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=done, desc="optimize", unit="step", leave=False)

    def update(d, best):
        if d is None:
            bar.close()
            return
        bar.n = d
        if best is not None:
            bar.set_postfix(best_loss=f"{best:.4g}")
        bar.refresh()

    return update


# ---------------------------------------------------------------------- checkpoints
def _save(directory: pathlib.Path, state: dict) -> None:
    """The run's state, atomically: a temporary file renamed over the last one."""
    directory.mkdir(parents=True, exist_ok=True)
    leaves, _ = jax.tree.flatten(state["opt_state"])
    arrays = {f"opt_{i}": np.asarray(x) for i, x in enumerate(leaves)}
    arrays.update(u=np.asarray(state["u"]), lam=np.asarray(state["lam"]),
                  mu=np.asarray(state["mu"]), viol=np.asarray(state["viol"]),
                  relaxed=np.asarray(state["relaxed"]), hardened=np.asarray(state["hardened"]),
                  points_u=np.asarray([p["u"] for p in state["points"]]))
    meta = dict(done=state["done"],
                points=[{k: v for k, v in p.items() if k != "u"} for p in state["points"]],
                opt_leaves=len(leaves), written=datetime.datetime.now().isoformat())
    tmp = directory / f".state.{os.getpid()}.npz"
    with open(tmp, "wb") as fh:
        np.savez(fh, meta=json.dumps(meta), **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / "state.npz")
    _write_points(directory, state["points"])


def _write_points(directory, points):
    """Every evaluated hardened point, one JSON object per line (rewritten atomically)."""
    tmp = directory / f".points.{os.getpid()}.jsonl"
    with open(tmp, "w") as fh:
        for p in points:
            fh.write(json.dumps({**{k: v for k, v in p.items() if k != "u"},
                                 "u": [float(x) for x in p["u"]]}) + "\n")
    os.replace(tmp, directory / "points.jsonl")


def _load(directory: pathlib.Path) -> dict | None:
    path = directory / "state.npz"
    if not path.is_file():
        return None
    data = np.load(path, allow_pickle=False)
    meta = json.loads(str(data["meta"]))
    return dict(u=jnp.asarray(data["u"]), lam=jnp.asarray(data["lam"]),
                mu=jnp.asarray(data["mu"]), viol=jnp.asarray(data["viol"]),
                done=meta["done"], opt_state=_OptLeaves(
                    [jnp.asarray(data[f"opt_{i}"]) for i in range(meta["opt_leaves"])]),
                relaxed=list(data["relaxed"]), hardened=list(data["hardened"]),
                points=[dict(p, u=u) for p, u in zip(meta["points"], data["points_u"])])


class _OptLeaves(list):
    """Flat optimizer-state leaves from a checkpoint, rebuilt into the optimizer's tree
    on first use (`_restore`)."""
