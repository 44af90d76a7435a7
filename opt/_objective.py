"""Objectives and constraints of a co-design problem, as pure functions of a design.

An `Objective` scores a design over a workload *mix* (points of the phase builder's
knobs, e.g. batch {1, 8, 32} x context {512, 4096}, with weights): the weighted mean over
the points of ``sense x log(metric)`` (for a weighted combination of metrics, the sum of
their weighted log terms). Logs make the score unit-free and turn products (EDP,
tokens/J) into sums; the exact score reported back is the weighted geometric mean of
each metric over the mix, in its own units.

A `Constraint` bounds one quantity: a `Report` metric aggregated over the mix (the worst
point by default: an SLO must hold at every point), ``power_density`` (W/m^2, from the
report's power and area), or ``quality_loss`` (perplexity increase on WikiText-2 over
16 bits, `perfmodel.workloads.quality_loss`). Its violation is ``log(value / max)`` (or
``log(min / value)``): feasible when <= 0, unit-free for the augmented Lagrangian.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from perfmodel._errors import ModelInputError

#: Report metrics to maximize; every other metric is minimized.
MAXIMIZE = frozenset({"tokens_per_s", "tokens", "tokens_per_dollar", "tokens_per_joule"})
#: Prefix of a constraint's values in ``problem_fn``'s metrics when the constraint has
#: its own phase or mix (their points are not the objective's).
CONSTRAINT_KEY = "constraint:"
#: Constraint quantities that are not Report fields.
DERIVED = ("power_density", "quality_loss")


def _report_metrics() -> list[str]:
    from perfmodel._sensitivity import metric_names

    return metric_names()


def _check_metric(name: str, what: str):
    valid = _report_metrics()
    if name not in valid:
        raise ModelInputError(f"{what} {name!r} is not a scalar Report metric; valid: "
                              f"{', '.join(valid)}.")


def mix_grid(**knobs) -> tuple[dict, ...]:
    """The product of knob values as mix points: ``mix_grid(batch=[1, 8, 32],
    context=[512, 4096])`` gives six points."""
    names = list(knobs)
    return tuple(dict(zip(names, vals)) for vals in itertools.product(*knobs.values()))


@dataclasses.dataclass(frozen=True)
class Objective:
    """What to optimize.

    **Main arguments:**

    - ``workload``: an `LLM` or `CNN` (`perfmodel.workloads.preset(...)`).
    - ``metric``: a scalar `Report` metric (``tokens_per_s``, ``latency``,
      ``energy_per_token``, ``edp``, ...), or ``{metric: weight}`` for a weighted
      combination (of the metrics' logs; each maximized or minimized by its sense).

    **Other arguments:** ``phase`` (the builder: ``decode``, ``prefill``, ``request``,
    ``inference``), ``mix`` (knob points, e.g. `mix_grid(batch=[1, 8, 32])`; default one
    point of the builder's defaults), ``weights`` (per point; default equal),
    ``options`` (fixed, structural keywords of the builder, e.g.
    ``{"tensor_parallel": 4}``: they change the rows, so they cannot be moved; a
    problem's ``[structure]`` enumerates them, `perfmodel.opt.optimize_problem`).
    """

    workload: object
    metric: str | dict = "tokens_per_s"
    phase: str = "decode"
    mix: tuple = ({},)
    weights: tuple | None = None
    options: dict = dataclasses.field(default_factory=dict, hash=False)

    def __post_init__(self):
        terms = self.terms
        for m in terms:
            _check_metric(m, "objective metric")
        if not hasattr(self.workload, self.phase):
            raise ModelInputError(f"phase {self.phase!r} is not a builder of "
                                  f"{getattr(self.workload, 'name', 'the workload')}.")
        if not self.mix:
            raise ModelInputError("the objective's mix must hold at least one point.")
        keys = set(self.mix[0])
        if any(set(p) != keys for p in self.mix):
            raise ModelInputError("every mix point must set the same knobs "
                                  f"({sorted(keys)}).")
        w = self.weights or (1.0,) * len(self.mix)
        if len(w) != len(self.mix) or any(x < 0 for x in w) or sum(w) <= 0:
            raise ModelInputError(f"weights must be {len(self.mix)} non-negative numbers "
                                  "with a positive sum.")
        object.__setattr__(self, "weights", tuple(float(x) / sum(w) for x in w))
        object.__setattr__(self, "mix", tuple(dict(p) for p in self.mix))

    @property
    def terms(self) -> dict:
        return {self.metric: 1.0} if isinstance(self.metric, str) else dict(self.metric)

    @property
    def sense(self) -> str:
        """"max" for a single metric to maximize, else "min" (the loss is minimized)."""
        return "max" if isinstance(self.metric, str) and self.metric in MAXIMIZE else "min"

    def value(self, loss: float) -> float:
        """The objective in its own units from a loss: the weighted geometric mean of a
        single metric over the mix, or for a combination the geometric mean of the
        product of the metrics raised to their weights (e.g. latency x energy: EDP)."""
        return math.exp(-loss) if self.sense == "max" else math.exp(loss)

    def describe(self) -> str:
        what = (self.metric if isinstance(self.metric, str) else
                " + ".join(f"{w:g} log {m}" for m, w in self.terms.items()))
        return (f"{self.sense} {what} of {getattr(self.workload, 'name', '')} {self.phase} "
                f"over {len(self.mix)} point(s)")


@dataclasses.dataclass(frozen=True)
class Constraint:
    """An upper (``max``) or lower (``min``) bound on a quantity of the design.

    ``metric``: a scalar `Report` metric (``area`` in m^2, ``power`` in W, ``latency``
    in s, ``energy_per_token`` in J, ...), ``power_density`` (W/m^2) or ``quality_loss``
    (perplexity increase, needs ``workload.wbits`` etc. in the space or mix).
    ``over``: how the mix points combine, ``"max"`` (every point; default) or
    ``"mean"`` (weighted). ``quant_method``: the quantization method a ``quality_loss``
    bound assumes (`perfmodel.workloads.quality_methods()`). ``phase`` and ``mix``
    evaluate this bound on its own builder and knob points instead of the objective's:
    a time-to-first-token SLO is ``Constraint("latency", max=0.5, phase="prefill",
    mix=({"batch": 1, "prompt": 2048},))`` beside a decode objective.
    """

    metric: str
    max: float | None = None
    min: float | None = None
    over: str = "max"
    name: str = ""
    quant_method: str = "gptq"
    phase: str | None = None
    mix: tuple | None = None

    def __post_init__(self):
        if self.metric not in DERIVED:
            _check_metric(self.metric, "constraint metric")
        if (self.max is None) == (self.min is None):
            raise ModelInputError(f"constraint {self.metric!r} needs exactly one of max or "
                                  "min.")
        limit = self.max if self.max is not None else self.min
        if not np.isfinite(limit) or limit <= 0:
            raise ModelInputError(f"constraint {self.metric!r}: the limit must be finite and "
                                  f"> 0, got {limit!r}.")
        if self.over not in ("max", "mean"):
            raise ModelInputError(f"constraint over = {self.over!r} is invalid; valid: max, "
                                  "mean.")
        if self.mix is not None:
            object.__setattr__(self, "mix", tuple(dict(p) for p in self.mix))
            if not self.mix or any(set(p) != set(self.mix[0]) for p in self.mix):
                raise ModelInputError(f"constraint {self.metric!r}: mix must hold points "
                                      "that set the same knobs.")
        if not self.name:
            where = f" ({self.phase or ''}{' mix' if self.mix else ''})".replace(" ()", "") \
                if (self.phase or self.mix) else ""
            object.__setattr__(self, "name", f"{self.metric}{where} "
                               f"{'<=' if self.max is not None else '>='} {limit:g}")

    @property
    def limit(self) -> float:
        return self.max if self.max is not None else self.min

    def violation(self, value):
        """log(value / max) or log(min / value): feasible when <= 0."""
        value = jnp.maximum(value, 1e-300)
        return jnp.log(value / self.max) if self.max is not None else \
            jnp.log(self.min / value)


def _quantity(c, rep, workload, knobs):
    name = c.metric
    if name == "power_density":
        if rep.area is None:
            raise ModelInputError(f"constraint power_density: {rep.target} has no area "
                                  "model.")
        return rep.power / rep.area
    if name == "quality_loss":
        from perfmodel.workloads import quality_loss

        bits = {k: knobs[k] for k in ("abits", "kvbits") if k in knobs}
        wbits = knobs.get("wbits", getattr(workload, "default_wbits", 16.0))
        return quality_loss(workload, wbits=wbits, method=c.quant_method, **bits)
    value = getattr(rep, name)
    if value is None:
        raise ModelInputError(f"constraint {name!r}: {rep.target} does not model it.")
    return value


def _evaluator(objective, workload_phase, mix, metrics, derived, own_mix=False):
    """``(hw, mapping, knobs, hard) -> {quantity: [points]}`` for one builder and mix,
    the points evaluated with ``vmap`` (their knobs are arrays)."""
    from perfmodel._evaluate import evaluate
    from perfmodel._serve import PHASES, serve

    builder = getattr(objective.workload, workload_phase)
    # an LLM phase runs as a serving engine runs it (`perfmodel.serve`): a design whose
    # memory cannot hold the batch's KV cache pays for the extra waves
    served = workload_phase in PHASES and hasattr(objective.workload, "kv_bytes_per_token")
    names = sorted(mix[0])
    points = {k: jnp.asarray([float(p[k]) for p in mix]) for k in names}

    def run(hw, mapping, knobs, hard):
        def at_point(point):
            # a constraint's own mix (a TTFT SLO at batch 1) wins over the moving knobs;
            # the objective's mix and its dims set different knobs
            kw = ({**objective.options, **knobs, **point} if own_mix
                  else {**objective.options, **point, **knobs})
            if served:
                rep = serve(hw, objective.workload, workload_phase, mapping=mapping,
                            hard=hard, check=False, **kw)
            else:
                rep = evaluate(hw, builder(**kw), mapping, hard=hard, check=False)
            return {**{m: getattr(rep, m) for m in metrics},
                    **{c.metric: _quantity(c, rep, objective.workload, kw) for c in derived}}

        return jax.vmap(at_point)(points) if names else \
            jax.tree.map(lambda x: x[None], at_point({}))

    return run


def _needs(constraints):
    """Report metrics these constraints read (power density reads power and area)."""
    out = {c.metric for c in constraints if c.metric not in DERIVED}
    if any(c.metric == "power_density" for c in constraints):
        out |= {"power", "area"}
    return out


def problem_fn(space, objective: Objective, constraints=()):
    """``f(u, temperature, hard) -> (loss, violations [C], metrics {name: [points]})``:
    the objective's loss (to minimize) and each constraint's violation for one
    coordinate vector ``u`` of ``space``; pure, for ``jit``/``vmap``/``grad``. The mix
    points are evaluated with ``vmap`` (their knobs are arrays); a constraint with its
    own ``phase``/``mix`` (a TTFT bound on prefill beside a decode objective) is
    evaluated on its own."""
    weights = jnp.asarray(objective.weights)
    terms = objective.terms
    shared = [c for c in constraints if c.phase is None and c.mix is None]
    own = [c for c in constraints if not (c.phase is None and c.mix is None)]
    main = _evaluator(objective, objective.phase, objective.mix,
                      sorted(set(terms) | _needs(shared)),
                      [c for c in shared if c.metric in DERIVED])
    separate = {id(c): _evaluator(objective, c.phase or objective.phase,
                                  c.mix or objective.mix, sorted(_needs([c])),
                                  [c] if c.metric in DERIVED else [],
                                  own_mix=c.mix is not None) for c in own}

    def f(u, temperature=1.0, hard=False, term_weights=None):
        """``term_weights`` [terms] replaces the objective's weights of its metrics (a
        Pareto sweep gives each start its own)."""
        hw, mapping, knobs = space.design(u, temperature=temperature, hard=hard)
        per_point = main(hw, mapping, knobs, hard)
        loss = 0.0
        for i, (m, w) in enumerate(terms.items()):
            if term_weights is not None:
                w = term_weights[i]
            sign = -1.0 if m in MAXIMIZE else 1.0
            loss = loss + w * sign * jnp.sum(weights * jnp.log(
                jnp.maximum(per_point[m], 1e-300)))
        viol = []
        for c in constraints:
            if id(c) in separate:
                values = separate[id(c)](hw, mapping, knobs, hard)[c.metric]
                per_point = {**per_point, CONSTRAINT_KEY + c.name: values}
                w = jnp.full(values.shape, 1.0 / values.shape[0])
            else:
                values, w = per_point[c.metric], weights
            g = c.violation(values)
            viol.append(jnp.max(g) if c.over == "max" else jnp.sum(w * g))
        viol = jnp.stack(viol) if viol else jnp.zeros((0,), jnp.result_type(float))
        return loss, viol, per_point

    return f
