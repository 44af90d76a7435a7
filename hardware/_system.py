"""Heterogeneous systems: several units (xPU, NPU, PIM, ...) that ops are placed on.

NeuPIMs (NPU + in-bank PIM), AttAcc (GPU + HBM-PIM) and Duplex (xPU + Logic-PIM) are
systems of this kind. Every unit computes its per-row cost (`perfmodel.Cost`); the system
places each row on the units and combines. Per row r (``count`` c_r) and unit u:

    t[r, u]   = seconds of one instance of row r on unit u (its roofline, `Cost.op_time`)
    p[r, u]   = placement weights: softmax(logits[r] / temperature), one-hot argmax if hard
    switch[r] = 1 - sum_u p[r, u] p[r-1, u]   (probability the producer of row r's input
                ran on another unit; rows are in layer order, row 0 follows the last row)
    x[r]      = switch[r] * (act_in_bytes[r] / B_link + t_link)    (transfer between units)
    L_u       = sum_r c_r p[r, u] t[r, u]                             (busy time of unit u)
    X         = sum_r c_r x[r]

    blocked:    T = sum_u L_u + X              (one unit at a time: the naive NPU+PIM
                                                system where PIM mode blocks the memory)
    concurrent: T = min(blocked, max_u L_u + (sum_u L_u - max_u L_u) / (S * n_layers) + X)
                (dual row buffers + S sub-batches interleaved: the units work in parallel
                on different sub-batches; the pipeline fills once per step; a scheduler
                never does worse than running blocked, hence the min)

    E = sum_r c_r sum_u p[r, u] e[r, u] + 8 X_bytes e_link + sum_u P_static,u T

Area, peak power and cost (docs/cost.md): the sum over the units, plus the link at full
rate in the peak power (``8 B_link e_link``); the link's silicon and cost are not modelled.

Co-processing (``co_kinds``, blocked mode, two units; Duplex's expert co-processing):
a row of those kinds holds G = ``groups`` independent work items (experts, sliced over
the tensor-parallel devices); k of them run on the ``high`` unit while the other G - k
run on the ``low`` unit at the same time, k chosen to finish first:

    t_co[r] = min_{k=0..G} max(k/G t[r, high], (1 - k/G) t[r, low])
    p[r, high] = k*/G,  p[r, low] = 1 - k*/G    (energy and busy shares)

(work assumed linear in the items; the min over static candidates is exact in both
modes: continuous, with kinks where two candidates tie, like the xPU's split-K). In
blocked mode the row then takes t_co instead of the sum of the two shares.

Proportional split (``split_kinds``, either mode, two units; AttAcc's FF split): a row
of those kinds is divided between ``high`` and ``low`` so both shares finish together,

    f[r] = t[r, high] / (t[r, high] + t[r, low])        (the low unit's share)
    t_split[r] = t[r, high] t[r, low] / (t[r, high] + t[r, low])

(work assumed linear in the share; smooth, and exact in both modes). Each unit is busy
t_split on the row, so in concurrent mode the low unit's share adds to its own stream.

``max`` is `perfmodel.smooth_maximum` (exact with ``hard=True``). Placement policies
(the default mapping; a `Placement` of logits overrides them):

- ``kinds``: a static table op kind -> unit (e.g. NeuPIMs: attention on PIM, the rest on
  the NPU), with ``default`` for the kinds not listed;
- ``op_per_byte`` (Duplex's policy): a matmul row whose operational intensity (FLOP per
  byte of memory traffic) is below ``threshold`` goes to the ``low`` unit (the PIM), the
  rest to the ``high`` unit (the xPU); smooth in log-intensity. ``low_kinds`` (optional)
  restricts the rows that may go to the low unit to those op kinds;
- ``fastest``: each row on the unit where it alone is fastest (a greedy baseline);
  collectives (all-reduce) stay on the ``default`` unit, which models the network.

Footprints: for the capacity-dependent terms of each unit (e.g. the xPU's offload tier),
each unit sees the share of the weight and KV footprint of the rows placed on it; with
``shared_memory`` (the PIM *is* the xPU's memory: NeuPIMs, Duplex) every unit sees the
whole footprint, which must fit the one pool.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from perfmodel._errors import ModelInputError
from perfmodel._ops import OP_KINDS, Ops
from perfmodel._report import Report
from perfmodel._smooth import smooth_maximum, soft_choice
from perfmodel._target import AbstractTarget, AbstractUnit, check_positive_leaves
from perfmodel.hardware._xpu import MATMUL_KINDS

#: Placement policies of a system (see the module docstring).
POLICIES = ("kinds", "op_per_byte", "fastest")
#: Op kinds that cross the inter-device network: the ``fastest`` policy keeps them on the
#: ``default`` unit (units such as DRAM-PIM do not model the network).
COMM_KINDS = frozenset({"allreduce"})
#: Execution modes: one unit at a time, or units overlapped on interleaved sub-batches.
MODES = ("blocked", "concurrent")
#: Logit margin of a rule-based placement: softmax weight 1 - 2e-9 on the chosen unit
#: (chosen: the smooth and exact models then agree to 1e-8).
RULE_LOGIT = 20.0
#: Sharpness of the op/B and fastest policies, in logits per e-fold of intensity or time
#: (chosen: a row at 2x the threshold goes to the high unit with weight 0.94).
POLICY_SHARPNESS = 4.0


class Placement(eqx.Module):
    """Relaxed placement of rows on units: ``logits`` [rows, units]; the weights are
    ``softmax(logits / temperature)`` (one-hot argmax with ``hard=True``)."""

    logits: Float[Array, "rows units"]
    temperature: float = eqx.field(static=True, default=1.0)


class System(AbstractTarget):
    """A heterogeneous system of named units with a link between them.

    Main fields: ``units`` (targets that provide `cost`), ``unit_names``, ``mode``
    (``"blocked"`` or ``"concurrent"``), ``policy`` and its settings, the link
    (``link_bandwidth`` B/s, ``link_latency`` s per transfer, ``link_energy_per_bit`` J),
    and ``sub_batches`` (interleaved sub-batches in concurrent mode).
    """

    units: tuple[AbstractUnit, ...]
    link_bandwidth: Float[Array, ""]
    link_latency: Float[Array, ""]
    link_energy_per_bit: Float[Array, ""]
    op_per_byte_threshold: Float[Array, ""]
    unit_names: tuple[str, ...] = eqx.field(static=True)
    mode: str = eqx.field(static=True)
    policy: str = eqx.field(static=True)
    name: str = eqx.field(static=True)
    bibtex: str = eqx.field(static=True)
    kind_units: tuple[tuple[str, str], ...] = eqx.field(static=True, default=())
    default_unit: str = eqx.field(static=True, default="")
    low_unit: str = eqx.field(static=True, default="")
    high_unit: str = eqx.field(static=True, default="")
    low_kinds: tuple[str, ...] = eqx.field(static=True, default=())
    co_kinds: tuple[str, ...] = eqx.field(static=True, default=())
    split_kinds: tuple[str, ...] = eqx.field(static=True, default=())
    sub_batches: int = eqx.field(static=True, default=2)
    shared_memory: bool = eqx.field(static=True, default=False)
    title: str = eqx.field(static=True, default="")

    # ------------------------------------------------------------------ validation
    def check(self, ops: Ops | None = None, mapping=None) -> None:
        check_positive_leaves(self, self.name)
        if self.mode not in MODES:
            raise ModelInputError(f"{self.name}.mode = {self.mode!r}; valid: {list(MODES)}.")
        if self.policy not in POLICIES:
            raise ModelInputError(
                f"{self.name}.policy = {self.policy!r}; valid: {list(POLICIES)}.")
        names = set(self.unit_names)
        for field, unit in ([(f"placement.{k}", u) for k, u in self.kind_units]
                            + [("placement.default", self.default_unit),
                               ("placement.low", self.low_unit),
                               ("placement.high", self.high_unit)]):
            if unit and unit not in names:
                raise ModelInputError(
                    f"{self.name}: {field} = {unit!r} is not a unit of this system; "
                    f"units: {list(self.unit_names)}.")
        for k, _ in self.kind_units:
            if k not in OP_KINDS:
                raise ModelInputError(f"{self.name}: placement.{k} is not an op kind; "
                                      f"valid kinds: {list(OP_KINDS)}.")
        for k in self.low_kinds:
            if k not in MATMUL_KINDS:
                raise ModelInputError(
                    f"{self.name}: placement.low_kinds holds {k!r}, which is not a matmul "
                    f"kind; valid: {sorted(MATMUL_KINDS)}.")
        for k in self.co_kinds:
            if k not in MATMUL_KINDS:
                raise ModelInputError(
                    f"{self.name}: placement.co_kinds holds {k!r}, which is not a matmul "
                    f"kind; valid: {sorted(MATMUL_KINDS)}.")
        if self.co_kinds and (self.mode != "blocked" or len(self.units) != 2
                              or self.low_unit == self.high_unit):
            raise ModelInputError(
                f"{self.name}: placement.co_kinds needs mode = \"blocked\" and two units "
                f"named by placement.low and placement.high (mode = {self.mode!r}, "
                f"{len(self.units)} units); co-processing inside the sub-batch overlap of "
                f"concurrent mode is not modelled.")
        for k in self.split_kinds:
            if k not in MATMUL_KINDS or k in self.co_kinds:
                raise ModelInputError(
                    f"{self.name}: placement.split_kinds holds {k!r}, which is not a matmul "
                    f"kind or is also in co_kinds; valid: {sorted(MATMUL_KINDS)}.")
        if self.split_kinds and (len(self.units) != 2 or self.low_unit == self.high_unit):
            raise ModelInputError(
                f"{self.name}: placement.split_kinds needs two units named by "
                f"placement.low and placement.high ({len(self.units)} units).")
        if ops is None:
            for unit in self.units:
                unit.check()
            return
        if mapping is not None:
            self._check_mapping(ops, mapping)
        p = np.asarray(self.placement(ops, mapping, hard=True))
        for u, unit in enumerate(self.units):
            rows = p[:, u] > 0.5
            if rows.any():
                unit.check(self._unit_ops(ops, jnp.asarray(p))[u].select(rows))

    def _check_mapping(self, ops, mapping):
        if not isinstance(mapping, Placement):
            raise ModelInputError(
                f"mapping for the system {self.name} must be a hardware.Placement, "
                f"not {type(mapping).__name__}.")
        shape = tuple(np.shape(mapping.logits))
        if shape != (ops.rows, len(self.units)):
            raise ModelInputError(
                f"mapping.logits has shape {shape}; it must be (rows, units) = "
                f"({ops.rows}, {len(self.units)}) for units {list(self.unit_names)}.")

    # ------------------------------------------------------------------ placement
    def unit(self, name: str) -> AbstractUnit:
        """The unit called ``name``."""
        if name not in self.unit_names:
            raise ModelInputError(f"{self.name} has no unit {name!r}; units: "
                                  f"{list(self.unit_names)}.")
        return self.units[self.unit_names.index(name)]

    def _low_eligible(self, ops: Ops):
        """[rows] bool (static): rows the ``op_per_byte`` policy may give the low unit."""
        eligible = frozenset(self.low_kinds) or MATMUL_KINDS
        return np.array([k in eligible for k in ops.kinds])

    def _op_per_byte_margin(self, ops: Ops):
        """[rows] logit(low) - logit(high) of the ``op_per_byte`` policy: > 0 where the
        intensity is below the threshold (-> the low, PIM unit); -RULE_LOGIT on rows the
        low unit may not take."""
        intensity = ops.flops / jnp.maximum(ops.dram_bytes, 1.0)
        margin = POLICY_SHARPNESS * (jnp.log(self.op_per_byte_threshold)
                                     - jnp.log(jnp.maximum(intensity, 1e-6)))
        return jnp.where(self._low_eligible(ops), margin, -RULE_LOGIT)

    def rule_logits(self, ops: Ops):
        """[rows, units] logits of the ``kinds`` or ``op_per_byte`` policy (cost-free)."""
        n_units = len(self.units)
        if self.policy == "kinds":
            table = dict(self.kind_units)
            idx = [self.unit_names.index(table.get(k, self.default_unit)) for k in ops.kinds]
            return jnp.asarray(RULE_LOGIT * np.eye(n_units)[idx])
        if self.policy == "op_per_byte":
            lo, hi = self.unit_names.index(self.low_unit), self.unit_names.index(self.high_unit)
            margin = self._op_per_byte_margin(ops)
            logits = jnp.zeros((ops.rows, n_units))
            logits = logits.at[:, lo].set(margin / 2).at[:, hi].set(-margin / 2)
            others = [u for u in range(n_units) if u not in (lo, hi)]
            return logits.at[:, others].set(-RULE_LOGIT) if others else logits
        return None

    def placement(self, ops: Ops, mapping=None, *, hard: bool = False, times=None):
        """[rows, units] placement weights (rows sum to 1)."""
        if mapping is not None:
            return soft_choice(mapping.logits, axis=1, hard=hard,
                               temperature=mapping.temperature)
        if self.policy == "op_per_byte" and len(self.units) == 2:
            # the softmax of two logits is a logistic of their difference: the same
            # weights without the [rows, 2] scatter and softmax (which dominate the
            # vmapped gradient); on a tie, argmax's first-index rule is kept
            lo, hi = self.unit_names.index(self.low_unit), self.unit_names.index(self.high_unit)
            margin = self._op_per_byte_margin(ops)
            cols = [None, None]
            if hard:
                cols[lo] = jnp.where((margin > 0) | ((margin == 0) & (lo < hi)), 1.0, 0.0)
                cols[hi] = 1.0 - cols[lo]
            else:
                cols[lo], cols[hi] = jax.nn.sigmoid(margin), jax.nn.sigmoid(-margin)
            return jnp.stack(cols, axis=1)
        logits = self.rule_logits(ops)
        if logits is None:  # fastest
            if times is None:
                times = self._times(ops, None, hard=hard)[0]
            logits = -POLICY_SHARPNESS * jnp.log(times)
            # collectives cross the inter-device network, which only the default unit
            # models (a PIM's host would count an all-reduce as a local memory pass)
            comm = np.array([k in COMM_KINDS for k in ops.kinds])
            if comm.any():
                rule = RULE_LOGIT * np.eye(len(self.units))[
                    self.unit_names.index(self.default_unit)]
                logits = jnp.where(comm[:, None], rule[None, :], logits)
        return soft_choice(logits, axis=1, hard=hard)

    def _unit_ops(self, ops: Ops, p) -> list[Ops]:
        """Per unit, ``ops`` with the weight and KV footprints of the rows placed on it
        (with ``shared_memory``, every unit sees the whole footprint: one memory pool)."""
        if self.shared_memory:
            return [ops] * len(self.units)
        w = ops.count * ops.weight_bytes
        kv = ops.count * (ops.kv_read_bytes + ops.kv_write_bytes)
        out = []
        for u in range(len(self.units)):
            w_share = jnp.sum(w * p[:, u]) / jnp.maximum(jnp.sum(w), 1.0)
            kv_share = jnp.sum(kv * p[:, u]) / jnp.maximum(jnp.sum(kv), 1.0)
            out.append(eqx.tree_at(lambda o: (o.weight_footprint, o.kv_footprint), ops,
                                   (ops.weight_footprint * w_share,
                                    ops.kv_footprint * kv_share)))
        return out

    def _times(self, ops, p, *, hard, static_rows=None):
        """([rows, units] seconds per instance, [rows, units] joules, costs, blocks).

        ``static_rows`` (per unit, the static indices of the rows the policy may place on
        it) costs each unit on those rows only; its other entries are 0, where the rule's
        weight is ~2e-9 (exactly 0 with ``hard``), and ``blocks`` holds each unit's
        seconds per instance on its rows (else None)."""
        unit_ops = self._unit_ops(ops, p) if p is not None else [ops] * len(self.units)
        if static_rows is None:
            costs = [unit.cost(o, None, hard=hard) for unit, o in zip(self.units, unit_ops)]
            t = jnp.stack([c.op_time(hard=hard) for c in costs], axis=1)
            e = jnp.stack([c.op_energy() for c in costs], axis=1)
            return t, e, costs, None
        costs = [unit.cost(o if len(rows) == ops.rows else o.take(rows), None, hard=hard)
                 for unit, o, rows in zip(self.units, unit_ops, static_rows)]

        def columns(blocks):  # each block back to table order, zeros on the other rows
            cols = []
            for rows, block in zip(static_rows, blocks):
                if len(rows) == ops.rows:
                    cols.append(block)
                    continue
                where = np.full(ops.rows, len(rows))  # -> the appended zero
                where[rows] = np.arange(len(rows))
                cols.append(jnp.concatenate([block, jnp.zeros(1, block.dtype)])[where])
            return jnp.stack(cols, axis=1)

        blocks = [c.op_time(hard=hard) for c in costs]
        t = columns(blocks)
        e = columns([c.op_energy() for c in costs])
        return t, e, costs, blocks

    def static_rows(self, ops: Ops, mapping=None):
        """Per unit, the static (ascending) indices of the rows the rule policy may place on
        it; on every other row the unit's weight is at most ~2e-9 (e^-RULE_LOGIT), exactly
        0 with ``hard``. ``kinds``: each row belongs to one unit. ``op_per_byte`` (two
        units): the low unit may take the eligible matmul rows (the threshold is a design
        leaf, so those stay soft), the high unit any row. None for ``fastest``, for an
        explicit mapping, or when a unit would get no row."""
        if mapping is not None:
            return None
        if self.policy == "kinds":
            table = dict(self.kind_units)
            owner = np.array([self.unit_names.index(table.get(k, self.default_unit))
                              for k in ops.kinds])
            rows = [np.flatnonzero(owner == u) for u in range(len(self.units))]
        elif self.policy == "op_per_byte" and len(self.units) == 2:
            rows = [np.arange(ops.rows)] * 2
            rows[self.unit_names.index(self.low_unit)] = np.flatnonzero(
                self._low_eligible(ops))
        else:
            return None
        co = self._co_rows(ops)
        if co.size:  # co-processed rows are costed on both units
            rows = [np.union1d(r, co) for r in rows]
        return rows if all(len(r) for r in rows) else None

    def _co_rows(self, ops: Ops):
        """Static indices of the rows split between the two units (``co_kinds`` and
        ``split_kinds``)."""
        return np.flatnonzero([k in self.co_kinds or k in self.split_kinds
                               for k in ops.kinds])

    def _co_process(self, ops: Ops, p, t):
        """(placement with the split rows' shares, [rows] seconds per instance that
        running the two shares at once saves against running them one after the other):
        ``split_kinds`` rows split in proportion, ``co_kinds`` rows by work items."""
        lo, hi = self.unit_names.index(self.low_unit), self.unit_names.index(self.high_unit)
        saving = jnp.zeros(ops.rows, t.dtype)
        idx = np.flatnonzero([k in self.split_kinds for k in ops.kinds])
        if idx.size:
            t_hi, t_lo = t[idx, hi], t[idx, lo]
            f = t_lo / (t_hi + t_lo)  # the high unit's share: both finish together
            p = p.at[idx, hi].set(f).at[idx, lo].set(1.0 - f)
            saving = saving.at[idx].set(f * t_hi)  # 2 t_split - t_split
        idx = np.flatnonzero([k in self.co_kinds for k in ops.kinds])
        if not idx.size:
            return p, saving
        try:
            groups = np.asarray(ops.groups)[idx]
        except jax.errors.TracerArrayConversionError:
            raise ModelInputError(
                f"{self.name}: placement.co_kinds needs concrete ops (their work-item "
                "counts, ops.groups, set the split candidates); evaluate under "
                "jit/vmap over designs, not over ops.") from None
        g = np.maximum(np.round(groups), 1.0)
        share = np.minimum(np.arange(int(g.max()) + 1)[None, :] / g[:, None], 1.0)
        t_hi, t_lo = t[idx, hi], t[idx, lo]
        cand = jnp.maximum(share * t_hi[:, None], (1.0 - share) * t_lo[:, None])
        f = jnp.take_along_axis(jnp.asarray(share, t.dtype),
                                jnp.argmin(cand, axis=1)[:, None], axis=1)[:, 0]
        f = jax.lax.stop_gradient(f)  # piecewise constant: the chosen split
        p = p.at[idx, hi].set(f).at[idx, lo].set(1.0 - f)
        serial = f * t_hi + (1.0 - f) * t_lo
        saving = saving.at[idx].set(serial - jnp.min(cand, axis=1))
        return p, saving

    # ------------------------------------------------------------------ the model
    def evaluate(self, ops: Ops, mapping=None, *, hard: bool = False) -> Report:
        if mapping is not None:
            self._check_mapping(ops, mapping)  # shapes are static: safe under tracing
        if self.policy == "fastest" and mapping is None:
            p = self.placement(ops, None, hard=hard)  # from full-footprint unit times
            t, e, costs, blocks = self._times(ops, None, hard=hard)
        else:
            p = self.placement(ops, mapping, hard=hard)
            rows = self.static_rows(ops, mapping)
            t, e, costs, blocks = self._times(ops, jax.lax.stop_gradient(p) if hard else p,
                                              hard=hard, static_rows=rows)
        c = ops.count
        saving = None
        if (self.co_kinds or self.split_kinds) and self._co_rows(ops).size:
            p, saving = self._co_process(ops, p, t)
            blocks = None  # the shares changed: sum the busy table
        switch = 1.0 - jnp.sum(p * jnp.roll(p, 1, axis=0), axis=1)
        x_bytes = switch * ops.act_in_bytes
        x_time = x_bytes / self.link_bandwidth + switch * self.link_latency
        busy = c[:, None] * p * t                          # [rows, units]
        if blocks is None:
            per_unit = jnp.sum(busy, axis=0)
        else:  # the same sums from each unit's own rows: the latency then never needs
            # the assembled [rows, units] table (XLA drops it when only latency is used)
            per_unit = jnp.stack([jnp.sum(c[r] * p[r, u] * b)
                                  for u, (r, b) in enumerate(zip(rows, blocks))])
        transfer = jnp.sum(c * x_time)
        blocked = jnp.sum(per_unit) + transfer
        if saving is not None:  # co-processed rows: both shares at once
            blocked = blocked - jnp.sum(c * saving)
        if self.mode == "concurrent":
            layers = jnp.max(c)
            longest = smooth_maximum(per_unit, axis=0, hard=hard)
            fill = (jnp.sum(per_unit) - jnp.max(per_unit)) / (self.sub_batches * layers)
            latency = jnp.minimum(longest + fill + transfer, blocked)
        else:
            latency = blocked
        row_time = jnp.sum(busy, axis=1) + c * x_time
        if saving is not None:
            row_time = row_time - c * saving
        row_time = row_time * (latency / blocked)  # concurrent: rows share the overlap
        static_power = sum(cost.static_power for cost in costs)
        energy_terms = jnp.concatenate(
            [c[:, None] * p * e, (c * x_bytes * 8.0 * self.link_energy_per_bit)[:, None]],
            axis=1)
        static_energy = static_power * latency
        time_terms = jnp.concatenate([p * t, x_time[:, None]], axis=1)
        areas = [cost.area for cost in costs if cost.area is not None]
        powers = [cost.peak_power for cost in costs if cost.peak_power is not None]
        capital = [cost.capital_cost for cost in costs if cost.capital_cost is not None]
        # the link between the units at full rate adds to the units' peak power
        link_power = 8.0 * self.link_bandwidth * self.link_energy_per_bit
        return Report(
            latency=latency,
            energy=jnp.sum(energy_terms) + static_energy,
            tokens=ops.tokens,
            op_time=row_time,
            op_energy=jnp.sum(energy_terms, axis=1) + static_power * row_time,
            time_terms=time_terms,
            energy_terms=energy_terms,
            static_energy=static_energy,
            bound=jnp.argmax(time_terms, axis=1),
            area=sum(areas) if areas else None,
            names=ops.names, kinds=ops.kinds,
            components=self.unit_names + ("transfer",),
            energy_components=self.unit_names + ("transfer",),
            target=self.name, count=ops.count, phase=ops.phase,
            peak_power=sum(powers) + link_power if powers else None,
            cost=sum(capital) if capital else None)

    def with_mode(self, mode: str) -> "System":
        """The same system in another execution mode (``"blocked"`` / ``"concurrent"``)."""
        if mode not in MODES:
            raise ModelInputError(f"mode = {mode!r}; valid: {list(MODES)}.")
        return dataclasses.replace(self, mode=mode)


# ---------------------------------------------------------------------- spec loading
def from_spec(data: dict, label: str) -> System:
    """Build a `System` from a spec: ``[units]`` maps unit names to hardware presets,
    ``[system]`` holds mode / policy / sub_batches, ``[placement]`` the policy's table,
    ``[link]`` the link between units (docs/families/system.md)."""
    from perfmodel._spec import SpecReader
    from perfmodel.hardware._registry import preset

    r = SpecReader(data, label)
    units_tab = r.section("units")
    if not isinstance(units_tab, dict) or not units_tab:
        raise ModelInputError(f"{label}: [units] must map unit names to hardware presets.")
    names, units = [], []
    for unit_name in units_tab:
        target = preset(str(r.raw("units", unit_name)))
        if not isinstance(target, AbstractUnit):
            raise ModelInputError(f"{label}: units.{unit_name} = {target.name!r} is not a "
                                  "single unit (a system cannot contain a system).")
        names.append(unit_name)
        units.append(target)
    mode = str(r.raw("system", "mode", default="blocked"))
    policy = str(r.raw("system", "policy", default="kinds"))
    placement = r.section("placement", required=False) or {}
    kind_units = tuple((k, str(r.raw("placement", k))) for k in placement
                       if k not in ("default", "low", "high", "threshold", "low_kinds",
                                    "co_kinds", "split_kinds"))
    system = System(
        units=tuple(units),
        link_bandwidth=jnp.asarray(r.number("link", "bandwidth", unit="_GB_s")),
        link_latency=jnp.asarray(r.number("link", "latency", unit="_us")),
        link_energy_per_bit=jnp.asarray(r.number("link", "energy", unit="_pJ_per_bit")),
        op_per_byte_threshold=jnp.asarray(r.number("placement", "threshold", default=8.0)),
        unit_names=tuple(names),
        mode=mode,
        policy=policy,
        kind_units=kind_units,
        default_unit=str(r.raw("placement", "default", default=names[0])),
        low_unit=str(r.raw("placement", "low", default=names[-1])),
        high_unit=str(r.raw("placement", "high", default=names[0])),
        low_kinds=tuple(str(k) for k in r.raw("placement", "low_kinds", default=[])),
        co_kinds=tuple(str(k) for k in r.raw("placement", "co_kinds", default=[])),
        split_kinds=tuple(str(k) for k in r.raw("placement", "split_kinds", default=[])),
        sub_batches=int(r.number("system", "sub_batches", default=2.0, lo=1.0)),
        shared_memory=bool(r.raw("system", "shared_memory", default=False)),
        **r.identity(),
    )
    r.finish_target()
    system.check()
    return system


BENCH_CASE = dict(hardware="neupims", workload="llama-2-7b", phase="decode", batch=8.0,
                  context=2048.0)
