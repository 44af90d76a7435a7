"""A device driven op by op from an eager host framework (PyTorch eager, HF transformers).

Many published baselines are not a device's roofline but a device under a Python
framework: every op is dispatched by the host (Python, the framework's dispatcher, the
driver's launch call) before the device can run it. For small models at batch 1 the host,
not the device, sets the pace. `EagerFramework` wraps any target (the *device*) and adds
that host stream. Docs: docs/families/eager_framework.md.

Model (SI units). The host dispatches each row's framework ops in order, asynchronously:
the device queue lets the host run ahead while long kernels execute, and the step ends
when both streams are done (decode syncs on the sampled token), so

    t_host,i  = launches_i x ops_per_row(kind_i) x host_op_time       (per instance)
    T_host    = sum_i count_i x t_host,i
    T_device  = latency of the wrapped device alone
    latency   = smooth_max(T_device, T_host)
    op_time_i = op_time_device,i x latency / T_device    (the host-bound stall is spread
                                                           over the rows in proportion)
    energy    = E_dynamic,device + P_static,device x latency

The device idles at its static power while it waits for the host; the host CPU's own
energy is not counted (published GPU baselines report board power). With ``hard=True``
the max is exact. The per-row host time is reported as an extra time component,
``host_dispatch``, so `Report.bound` shows which rows are host-bound.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from perfmodel._errors import ModelInputError
from perfmodel._ops import OP_KINDS, Ops
from perfmodel._report import Report
from perfmodel._smooth import smooth_max
from perfmodel._spec import SpecReader
from perfmodel._target import AbstractTarget, check_positive_leaves

#: Name of the host stream's time component in the report.
HOST_COMPONENT = "host_dispatch"


class EagerFramework(AbstractTarget):
    """``device`` run op by op from a host framework.

    Build one with `perfmodel.hardware.preset("t4-pytorch-eager")`, or wrap any target:
    ``EagerFramework(device=preset("a100-80gb"), host_op_time=jnp.asarray(23e-6),
    ops_per_row=(("norm", 2.0),), name="a100 eager", bibtex="")``.

    Main fields:

    - ``device``: the target that executes the kernels (any `AbstractTarget`).
    - ``host_op_time`` (s): host time to dispatch one framework op (Python, dispatcher,
      launch call).
    - ``ops_per_row`` (static): framework ops the host dispatches per row of a kind, as
      ``((kind, ops), ...)``; kinds not listed dispatch one op per launch.
    """

    device: AbstractTarget
    host_op_time: Float[Array, ""]
    ops_per_row: tuple[tuple[str, float], ...] = eqx.field(static=True)
    name: str = eqx.field(static=True)
    bibtex: str = eqx.field(static=True)
    title: str = eqx.field(static=True, default="")

    def host_ops(self, ops: Ops) -> np.ndarray:
        """[rows] framework ops per launch of each row (static: from the row kinds)."""
        table = dict(self.ops_per_row)
        return np.array([table.get(k, 1.0) for k in ops.kinds])

    def serving_capacity(self):
        """The wrapped device's (`perfmodel.serve`)."""
        return self.device.serving_capacity()

    def check(self, ops: Ops | None = None) -> None:
        check_positive_leaves(self.host_op_time, f"{self.name}.host_op_time")
        for kind, n in self.ops_per_row:
            if not (np.isfinite(n) and n >= 0):
                raise ModelInputError(
                    f"{self.name}.ops_per_row[{kind!r}] = {n!r} is invalid; it must be "
                    "finite and >= 0.")
        self.device.check(ops)

    def evaluate(self, ops: Ops, mapping=None, *, hard: bool = False) -> Report:
        rep = self.device.evaluate(ops, mapping, hard=hard)
        t_host = ops.launches * self.host_ops(ops) * self.host_op_time   # per instance
        host_total = jnp.sum(ops.count * t_host)
        latency = smooth_max(rep.latency, host_total, hard=hard)
        stretch = latency / rep.latency
        static_power = rep.static_energy / rep.latency
        static_energy = static_power * latency
        op_time = rep.op_time * stretch
        op_energy = jnp.sum(rep.energy_terms, axis=1) + static_power * op_time
        time_terms = jnp.concatenate([rep.time_terms, t_host[:, None]], axis=1)
        return Report(
            latency=latency,
            energy=jnp.sum(rep.energy_terms) + static_energy,
            tokens=rep.tokens,
            op_time=op_time,
            op_energy=op_energy,
            time_terms=time_terms,
            energy_terms=rep.energy_terms,
            static_energy=static_energy,
            bound=jnp.argmax(time_terms, axis=1),
            area=rep.area,
            names=rep.names,
            kinds=rep.kinds,
            components=rep.components + (HOST_COMPONENT,),
            energy_components=rep.energy_components,
            target=self.name,
            count=rep.count,
            phase=rep.phase,
            peak_power=rep.peak_power,
            cost=rep.cost,
        )


# ---------------------------------------------------------------------- spec loading
def from_spec(data: dict, label: str) -> EagerFramework:
    """Build an `EagerFramework` from a spec: ``[framework] device`` names the hardware
    preset that runs the kernels, ``host_op_time_us`` the host time per framework op,
    ``[framework.ops_per_row]`` the framework ops per row by op kind
    (docs/families/eager_framework.md)."""
    from perfmodel.hardware._registry import preset

    r = SpecReader(data, label)
    device = preset(str(r.raw("framework", "device", required=True)))
    table = r.section("framework", "ops_per_row", required=False) or {}
    unknown = [k for k in table if k not in OP_KINDS]
    if unknown:
        raise ModelInputError(
            f"{label}: framework.ops_per_row.{unknown[0]} is not an op kind; valid: "
            f"{', '.join(OP_KINDS)}.")
    per_row = tuple((str(kind), r.number("framework", "ops_per_row", kind, positive=False,
                                         lo=0.0))
                    for kind in table)
    hw = EagerFramework(
        device=device,
        host_op_time=jnp.asarray(r.number("framework", "host_op_time", unit="_us")),
        ops_per_row=per_row,
        **r.identity(),
    )
    r.finish_target()
    return hw


#: `perfmodel bench` case for this family: GPT-2 (124M) decode at batch 1 on a T4 under
#: PyTorch eager, where the host stream bounds the step.
BENCH_CASE = dict(hardware="t4-pytorch-eager", workload="gpt2", phase="decode",
                  batch=1.0, context=512.0)
