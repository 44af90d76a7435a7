"""`Report`: what `evaluate` returns, and the roofline combination that builds it."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from perfmodel._ops import Ops
from perfmodel._smooth import smooth_maximum

#: Name of the per-op fixed cost (launch/sync) in `Report.components` order.
OVERHEAD = "overhead"


class Report(eqx.Module):
    """Result of `perfmodel.evaluate`: a pytree, so it passes through jit/vmap/grad.

    Main fields (SI units):

    - ``latency`` (s) and ``energy`` (J) of one evaluation of the ops (one decode step,
      one prefill, or one whole request);
    - ``tokens``: tokens produced, so ``tokens_per_s = tokens / latency``;
    - ``op_time`` (s), ``op_energy`` (J): per row, summed over its ``count`` instances;
    - ``time_terms`` (s): per row and per instance, the time each component alone would
      take (``components`` names the columns: compute, memory levels, interconnect,
      overhead); the op's time is their smooth max plus the overhead;
    - ``energy_terms`` (J): per row (count included), by ``energy_components``;
    - ``static_energy`` (J): static power x latency;
    - ``bound``: per row, index into ``components`` of the largest time term;
    - ``area`` (m^2): silicon area of the design (docs/cost.md; None where a family has
      no area model);
    - ``peak_power`` (W): dynamic power with compute and memory at their peak rates plus
      static power, the power a supply and cooler must be sized for (None where not
      modelled);
    - ``cost`` (USD): capital cost of the hardware: dies (wafer price / (dies per wafer x
      yield)), memory at its price per GB and packaging (None where not modelled);
      `perfmodel.hardware.tokens_per_dollar` adds the energy over a lifetime;
    - ``count``: per row, the instances ``op_time`` sums (the ops' ``count``: layers x
      repeats, or quadrature weights), or None where a target does not pass it;
    - ``phase``: the ops' phase label (``decode``, ``prefill``, ``request``, ...);
    - ``batch`` and ``waves`` (`perfmodel.serve` only, else None): the sequences run at
      once and the number of such waves the requested batch took, when the KV cache of
      the whole batch does not fit beside the weights (``waves == 1``: it fits).
    """

    latency: Float[Array, ""]
    energy: Float[Array, ""]
    tokens: Float[Array, ""]
    op_time: Float[Array, " rows"]
    op_energy: Float[Array, " rows"]
    time_terms: Float[Array, "rows comp"]
    energy_terms: Float[Array, "rows ecomp"]
    static_energy: Float[Array, ""]
    bound: Int[Array, " rows"]
    area: Float[Array, ""] | None
    names: tuple[str, ...] = eqx.field(static=True)
    kinds: tuple[str, ...] = eqx.field(static=True)
    components: tuple[str, ...] = eqx.field(static=True)
    energy_components: tuple[str, ...] = eqx.field(static=True)
    target: str = eqx.field(static=True, default="")
    count: Float[Array, " rows"] | None = None
    phase: str = eqx.field(static=True, default="")
    peak_power: Float[Array, ""] | None = None
    cost: Float[Array, ""] | None = None
    batch: Float[Array, ""] | None = None
    waves: Float[Array, ""] | None = None

    @property
    def tokens_per_s(self):
        return self.tokens / self.latency

    @property
    def energy_per_token(self):
        """Joules per token."""
        return self.energy / self.tokens

    @property
    def dynamic_energy_per_token(self):
        """Joules per token without the static energy (what simulators that sum
        per-access and per-operation energies report, e.g. AttAcc's)."""
        return (self.energy - self.static_energy) / self.tokens

    @property
    def edp(self):
        """Energy-delay product, J s."""
        return self.energy * self.latency

    @property
    def power(self):
        """Average power over the evaluation, W."""
        return self.energy / self.latency

    @property
    def tokens_per_dollar(self):
        """Tokens per USD of total cost of ownership with the default lifetime (4 years),
        utilization (1) and energy price (EIA, $0.0895/kWh); None without a cost model.
        `perfmodel.hardware.tokens_per_dollar` takes other values (docs/cost.md)."""
        from perfmodel.hardware._technology import tokens_per_dollar

        return tokens_per_dollar(self)

    def bound_names(self) -> list[str]:
        """The bounding component of each row, by name (not traceable)."""
        return [self.components[int(i)] for i in np.asarray(self.bound)]

    def row_phases(self) -> tuple[str, ...]:
        """Per row, the phase it belongs to (`row_phases`): a request's rows are labelled
        ``prefill`` or ``decode``."""
        return row_phases(self.names, self.phase)

    def breakdown(self) -> list[dict]:
        """Per-row summary as Python floats, for tables and JSON (not traceable).

        Each row: ``name``, ``kind``, ``phase`` (``prefill`` / ``decode`` for the rows of
        a request, else the ops' phase); ``count``, the instances of the row in one
        evaluation (layers x repeats; fractional for a request's decode attention rows,
        which are quadrature nodes over the growing context); ``time_s`` and ``energy_j``
        summed over those ``count`` instances (they add up to the latency and the energy);
        ``time_per_instance_s`` = ``time_s / count``; ``bound``; and ``time_terms_s``, the
        time each component alone would take for one instance. ``count`` and
        ``time_per_instance_s`` are None where the target did not report counts.
        """
        tt = np.asarray(self.time_terms)
        count = None if self.count is None else np.asarray(self.count)
        phases = self.row_phases()
        rows = []
        for i, name in enumerate(self.names):
            t = float(self.op_time[i])
            n = None if count is None else float(count[i])
            rows.append({
                "name": name,
                "kind": self.kinds[i],
                "phase": phases[i],
                "count": n,
                "time_s": t,
                "time_per_instance_s": t / n if n else None,
                "energy_j": float(self.op_energy[i]),
                "bound": self.components[int(self.bound[i])],
                "time_terms_s": {c: float(tt[i, j]) for j, c in enumerate(self.components)},
            })
        return rows

    def energy_breakdown(self) -> dict[str, float]:
        """Total energy by component (J), static included (not traceable)."""
        out = {c: float(jnp.sum(self.energy_terms[:, j]))
               for j, c in enumerate(self.energy_components)}
        out["static"] = float(self.static_energy)
        return out

    def to_dict(self) -> dict:
        """Headline numbers and breakdowns as plain Python (the CLI's JSON)."""
        bounds = self.bound_names()
        time_by_bound: dict[str, float] = {}
        for b, t in zip(bounds, np.asarray(self.op_time)):
            time_by_bound[b] = time_by_bound.get(b, 0.0) + float(t)
        overall = max(time_by_bound, key=time_by_bound.get)
        d = {
            "target": self.target,
            "latency_s": float(self.latency),
            "energy_j": float(self.energy),
            "tokens": float(self.tokens),
            "tokens_per_s": float(self.tokens_per_s),
            "energy_per_token_j": float(self.energy_per_token),
            "edp_js": float(self.edp),
            "power_w": float(self.power),
            "bound": overall,
            "energy_breakdown_j": self.energy_breakdown(),
            "breakdown": self.breakdown(),
        }
        d["area_mm2"] = None if self.area is None else float(self.area) * 1e6
        d["peak_power_w"] = None if self.peak_power is None else float(self.peak_power)
        d["cost_usd"] = None if self.cost is None else float(self.cost)
        if self.waves is not None:  # `perfmodel.serve`: the memory rule's outcome
            d["fits"] = bool(float(self.waves) <= 1.0)
            d["concurrent_batch"] = float(self.batch)
            d["waves"] = float(self.waves)
        return d


class Cost(eqx.Module):
    """Per-row cost of an ops table on one unit, before the rows are combined.

    What a roofline target computes and what a heterogeneous `System` needs from each
    of its units to place ops: per row and *per instance* (``count`` not applied),

    - ``time_terms`` [rows, C] (s): time each overlapping component alone would take;
    - ``overhead`` [rows] (s): time that does not overlap (launch, sync, latency);
    - ``energy_terms`` [rows, E] (J): dynamic energy by component;

    and per design ``static_power`` (W), ``area`` (m^2, or None), and optionally
    ``peak_power`` (W) and ``capital_cost`` (USD) of the unit (docs/cost.md).

    Optionally ``max_time`` [rows] (s): the smooth maximum of ``time_terms`` over the
    components, when the unit computes it more cheaply than the generic fold (e.g. per
    block of rows, skipping columns it knows are zero). It must equal
    ``smooth_maximum(time_terms, axis=1)``; it is used in smooth mode only.
    """

    time_terms: Float[Array, "rows comp"]
    overhead: Float[Array, " rows"]
    energy_terms: Float[Array, "rows ecomp"]
    static_power: Float[Array, ""]
    area: Float[Array, ""] | None
    components: tuple[str, ...] = eqx.field(static=True)
    energy_components: tuple[str, ...] = eqx.field(static=True)
    max_time: Float[Array, " rows"] | None = None
    peak_power: Float[Array, ""] | None = None
    capital_cost: Float[Array, ""] | None = None

    @classmethod
    def from_columns(cls, time_columns, *, overhead, energy_columns, static_power, area,
                     components, energy_components, hard: bool, peak_power=None,
                     capital_cost=None) -> "Cost":
        """A `Cost` from per-component [rows] arrays: stacks them into ``time_terms``
        and ``energy_terms`` and, in smooth mode, folds `smooth_max` over the unstacked
        time columns into ``max_time``. A caller that needs only the latency (a vmapped
        gradient sweep) then never materialises the [rows, C] stack: XLA drops it, and
        with it the transposes and pads that stacking costs on CPU."""
        time_terms = jnp.stack(jnp.broadcast_arrays(*time_columns), axis=1)
        energy_terms = jnp.stack(jnp.broadcast_arrays(*energy_columns), axis=1)
        max_time = None
        if not hard:
            max_time = jnp.broadcast_to(smooth_maximum(tuple(time_columns)),
                                        time_terms.shape[:1])
        return cls(time_terms=time_terms, overhead=overhead, energy_terms=energy_terms,
                   static_power=static_power, area=area, components=tuple(components),
                   energy_components=tuple(energy_components), max_time=max_time,
                   peak_power=peak_power, capital_cost=capital_cost)

    def component_max(self, *, hard: bool):
        """[rows] seconds per instance: the smooth (exact if ``hard``) max of the
        components."""
        if self.max_time is not None and not hard:
            return self.max_time
        return smooth_maximum(self.time_terms, axis=1, hard=hard)

    def op_time(self, *, hard: bool):
        """[rows] seconds per instance: smooth max of the components plus overhead."""
        return self.component_max(hard=hard) + self.overhead

    def op_energy(self):
        """[rows] dynamic joules per instance."""
        return jnp.sum(self.energy_terms, axis=1)

    def take(self, indices) -> "Cost":
        """Rows at the static ``indices`` (e.g. to undo an internal row permutation)."""
        idx = np.asarray(indices, dtype=int)
        return dataclasses.replace(
            self, time_terms=self.time_terms[idx], overhead=self.overhead[idx],
            energy_terms=self.energy_terms[idx],
            max_time=None if self.max_time is None else self.max_time[idx])


def report_from_cost(ops: Ops, cost: Cost, *, hard: bool, target: str = "") -> Report:
    """The `Report` of a single unit running every row: `roofline_report` of ``cost``."""
    return roofline_report(
        ops, time_terms=cost.time_terms, components=cost.components, overhead=cost.overhead,
        energy_terms=ops.count[:, None] * cost.energy_terms,
        energy_components=cost.energy_components, static_power=cost.static_power,
        hard=hard, area=cost.area, target=target,
        max_time=None if hard else cost.max_time, peak_power=cost.peak_power,
        capital_cost=cost.capital_cost)


def roofline_report(ops: Ops, *, time_terms, components, overhead, energy_terms,
                    energy_components, static_power, hard: bool, area=None,
                    target: str = "", max_time=None, peak_power=None,
                    capital_cost=None) -> Report:
    """Combine per-row component times into a `Report` (shared by all roofline targets).

    Per row and instance: ``t = smooth_max_c(time_terms[:, c]) + overhead`` (the
    components overlap, the overhead does not). Total: ``latency = sum(count * t)``,
    ``energy = sum(energy_terms) + static_power * latency``.

    Main arguments:
        time_terms: [rows, C] per-instance seconds for each overlapping component.
        components: names of those C components.
        overhead: [rows] per-instance seconds that do not overlap (launch, sync).
        energy_terms: [rows, E] joules per row with ``count`` already applied.

    Other arguments:
        max_time: [rows] precomputed ``smooth_maximum(time_terms, axis=1)`` (see `Cost`).
        area, peak_power, capital_cost: of the design (m^2, W, USD), or None.
    """
    if max_time is None:
        max_time = smooth_maximum(time_terms, axis=1, hard=hard)
    t_op = max_time + overhead
    op_time = ops.count * t_op
    latency = jnp.sum(op_time)
    static_energy = static_power * latency
    all_terms = jnp.concatenate([time_terms, overhead[:, None]], axis=1)
    return Report(
        latency=latency,
        energy=jnp.sum(energy_terms) + static_energy,
        tokens=ops.tokens,
        op_time=op_time,
        op_energy=jnp.sum(energy_terms, axis=1) + static_power * op_time,
        time_terms=all_terms,
        energy_terms=energy_terms,
        static_energy=static_energy,
        bound=jnp.argmax(all_terms, axis=1),
        area=area,
        names=ops.names,
        kinds=ops.kinds,
        components=tuple(components) + (OVERHEAD,),
        energy_components=tuple(energy_components),
        target=target,
        count=ops.count,
        phase=ops.phase,
        peak_power=peak_power,
        cost=capital_cost,
    )


def row_phases(names: tuple[str, ...], phase: str) -> tuple[str, ...]:
    """Per row, ``phase``; for a ``request`` (`LLM.request`: the prefill rows, then the
    decode rows: context-independent rows once, attention rows once per quadrature node),
    ``prefill`` up to the first row whose name repeats and ``decode`` from there (a
    phase's own row names are distinct; tests/test_cli_usability.py checks it for every
    LLM preset)."""
    if phase != "request":
        return (phase,) * len(names)
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            return ("prefill",) * i + ("decode",) * (len(names) - i)
        seen.add(name)
    return (phase,) * len(names)
