"""`serve`: an LLM phase as a serving engine runs it, when memory may not hold the batch.

`evaluate` prices the ops it is given; it has no say over how many sequences share the
device. A serving engine does: it reserves each admitted sequence's KV cache for its
whole length and admits only the sequences whose caches fit beside the weights, running
the rest after them. `serve` applies that rule (docs/models.md, "Memory that does not
fit"), per device (with tensor parallelism the weights and the KV cache are split):

    KV_free   = f_kv (C - W)                       (f_kv = KV_CACHE_FRACTION)
    b_max     = KV_free / kv_seq                   (floored with ``hard=True``)
    waves     = ceil(B / b_max)                    (1 when the batch fits)
    b         = B / waves                          (sequences at once, balanced waves)
    latency   = waves x latency(phase at batch b)  (energy and tokens likewise)

with C the device memory (`AbstractTarget.serving_capacity`), W the weight footprint and
kv_seq one sequence's KV cache (and recurrent state) at its final length: prompt for
prefill, context + 1 for a decode step, prompt + generate for a request (the engine
reserves the whole request's cache at admission, TensorRT-LLM's default
GUARANTEED_NO_EVICT policy). The ``continuous`` phase (steady-state in-flight batching,
`LLM.continuous`) has no waves: ``batch`` is the concurrency asked for, and the server
runs ``min(batch, b_max)`` requests at once (the rest queue).

When a design has an offload tier (an ``[offload]`` section: the user asked for
LLM-in-a-flash / FlexGen-style streaming), `serving_capacity` is None and the phase runs
as one batch with the share that does not fit streamed from that tier. Errors: weights
that do not fit the device, or one sequence whose cache does not fit beside them (no
offload tier), are a `ModelInputError` naming the sizes.

Smooth: ``waves`` is `smooth_ceil` (exactly 1 while the batch fits, so nothing changes
for a batch that fits) and gradients flow to the capacity, the batch and the bits.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from perfmodel._errors import ModelInputError
from perfmodel._evaluate import evaluate
from perfmodel._report import Report
from perfmodel._smooth import smooth_ceil, smooth_min, smooth_relu
from perfmodel._target import AbstractTarget, any_traced, format_bytes

#: Share of the memory left after the weights that a serving engine gives its KV cache
#: (TensorRT-LLM's ``free_gpu_memory_fraction`` default, 0.9,
#: https://nvidia.github.io/TensorRT-LLM/examples/kvcacheconfig.html; the rest holds
#: activations and workspaces). Assumed for every engine.
KV_CACHE_FRACTION = 0.9

_ONE_BYTE = 1.0

#: Phases `serve` runs, and the builder argument holding each one's final length.
PHASES = ("decode", "prefill", "request", "continuous")


def serve(hardware: AbstractTarget, workload, phase: str = "request", *, batch=1.0,
          mapping=None, hard: bool = False, check: bool = True, kv_fraction: float = KV_CACHE_FRACTION,
          **phase_options) -> Report:
    """Evaluate an LLM ``phase`` of ``batch`` sequences as a serving engine runs it: in
    waves of the sequences whose KV cache fits, when the whole batch's does not.

    **Main arguments:**

    - ``hardware``: a target (`perfmodel.hardware.preset(...)`).
    - ``workload``: an `LLM` (`perfmodel.workloads.preset(...)`).
    - ``phase``: ``"request"`` (default), ``"decode"``, ``"prefill"`` or ``"continuous"``.
    - ``batch``: sequences requested (for ``continuous``: the concurrency asked for).
    - ``phase_options``: the phase builder's own arguments (``prompt``, ``context``,
      ``generate``, ``wbits``, ``abits``, ``kvbits``, ``tensor_parallel``, ...).

    **Other arguments:**

    - ``mapping``: the target's mapping choices, as in `evaluate`.
    - ``hard``: exact model (``ceil``/``floor`` of whole sequences) instead of smooth.
    - ``check``: eager validation, as in `evaluate`.
    - ``kv_fraction``: share of the memory left after the weights given to the KV cache
      (default `KV_CACHE_FRACTION`, in (0, 1]).

    Returns the `Report` of the whole batch (latency and energy over every wave, tokens
    of every sequence) with ``batch`` (sequences at once) and ``waves`` set. With
    ``tensor_parallel = N`` it is the report of the group of N devices: energy, area,
    peak power and cost of all N (`evaluate` of the same per-device Ops gives one
    device's), so energy per token and tokens per dollar are the group's.
    """
    if phase not in PHASES:
        raise ModelInputError(f"phase = {phase!r} is invalid; valid: {', '.join(PHASES)}.")
    if not hasattr(workload, phase) or not hasattr(workload, "kv_bytes_per_token"):
        raise ModelInputError(
            f"workload must be an LLM (perfmodel.workloads.preset('llama-2-7b')), not "
            f"{type(workload).__name__}; serve runs its decode, prefill or request phases.")
    if not 0.0 < float(kv_fraction) <= 1.0:
        raise ModelInputError(f"kv_fraction = {kv_fraction!r} is invalid; it must be in (0, 1].")
    build = getattr(workload, phase)
    ops = build(batch, **phase_options)
    devices = int(phase_options.get("tensor_parallel", 1) or 1)
    capacity = hardware.serving_capacity()
    B = jnp.asarray(batch, float)
    if capacity is None:  # an offload tier, or a family with its own capacity rule
        rep = evaluate(hardware, ops, mapping, hard=hard, check=check)
        return _with_waves(_group(rep, devices), B, jnp.asarray(1.0))
    # a design whose weights do not fit (reachable by an optimizer, which skips the
    # eager check) keeps a positive, tiny KV space: many waves, a steep penalty with a
    # gradient towards more capacity
    free = kv_fraction * jnp.maximum(
        smooth_relu(capacity - ops.weight_footprint, capacity, hard=hard), _ONE_BYTE)
    per_seq = ops.kv_footprint / B
    if check and not any_traced((hardware, ops, batch, capacity)):
        _check_fits(hardware, workload, ops, float(capacity),
                    float(kv_fraction) * (float(capacity) - float(ops.weight_footprint)),
                    float(per_seq))
    b_max = free / per_seq
    if hard:
        b_max = jnp.floor(b_max)
    if phase == "continuous":
        # a server admits at most b_max requests; the rest queue (no waves: the step is
        # the steady state of whatever runs)
        running = smooth_min(B, b_max, hard=hard)
        if not any_traced((batch, running)) and float(running) == float(batch):
            run_ops = ops
        else:
            run_ops = build(running, **phase_options)
        rep = evaluate(hardware, run_ops, mapping, hard=hard, check=check)
        return _with_waves(_group(rep, devices), running, jnp.asarray(1.0))
    waves = smooth_ceil(B / b_max, hard=hard)
    if not any_traced((batch, waves)) and float(waves) == 1.0:
        wave_ops = ops  # it fits: the ops already built
    else:
        wave_ops = build(B / waves, **phase_options)
    rep = evaluate(hardware, wave_ops, mapping, hard=hard, check=check)
    return _with_waves(_group(_times(rep, waves), devices), B / waves, waves)


def admitted_batch(hardware: AbstractTarget, workload, phase: str = "request", *,
                   hard: bool = False, kv_fraction: float = KV_CACHE_FRACTION,
                   **phase_options):
    """The most sequences of this phase whose KV caches fit beside the weights at once
    (a real number; whole sequences with ``hard=True``), per the rule of `serve`; inf for
    a design with an offload tier. Arguments as in `serve`."""
    build = getattr(workload, phase)
    ops = build(1.0, **phase_options)
    capacity = hardware.serving_capacity()
    if capacity is None:
        return jnp.asarray(jnp.inf)
    b = kv_fraction * (capacity - ops.weight_footprint) / ops.kv_footprint
    return jnp.floor(b) if hard else b


def _check_fits(hardware, workload, ops, capacity, free, per_seq):
    name = getattr(hardware, "name", type(hardware).__name__)
    weights = float(np.asarray(ops.weight_footprint))
    if weights >= capacity:
        raise ModelInputError(
            f"{workload.name}'s weights need {format_bytes(weights)} per device but "
            f"{name} holds {format_bytes(capacity)}; use more tensor_parallel devices or "
            "fewer weight bits, or add an [offload] tier to the hardware spec.")
    if per_seq > free:
        raise ModelInputError(
            f"one sequence's KV cache needs {format_bytes(per_seq)} per device but only "
            f"{format_bytes(free)} of {name} is left for it beside the weights; shorten "
            "the context, use fewer KV bits or more devices, or add an [offload] tier.")


def _times(rep: Report, n) -> Report:
    """``rep`` run ``n`` times back to back: every total x n, per-instance times kept."""
    return _scaled(rep, runs=n)


def _group(rep: Report, devices: int) -> Report:
    """``rep`` of one device (tensor-parallel Ops are per device) as the report of the
    whole group of ``devices``: energies, area, peak power and cost x devices; latency and
    tokens (the group's) unchanged."""
    return rep if devices == 1 else _scaled(rep, devices=float(devices))


def _scaled(rep: Report, *, runs=1.0, devices=1.0) -> Report:
    """``rep`` repeated ``runs`` times (time, tokens, counts and energy scale) on
    ``devices`` devices at once (energy and the physical figures scale)."""
    def phys(x):
        return None if x is None else x * devices

    e = runs * devices
    return Report(
        latency=rep.latency * runs, energy=rep.energy * e, tokens=rep.tokens * runs,
        op_time=rep.op_time * runs, op_energy=rep.op_energy * e,
        time_terms=rep.time_terms, energy_terms=rep.energy_terms * e,
        static_energy=rep.static_energy * e, bound=rep.bound, area=phys(rep.area),
        names=rep.names, kinds=rep.kinds, components=rep.components,
        energy_components=rep.energy_components, target=rep.target,
        count=None if rep.count is None else rep.count * runs, phase=rep.phase,
        peak_power=phys(rep.peak_power), cost=phys(rep.cost))


def _with_waves(rep: Report, batch, waves) -> Report:
    return eqx.tree_at(lambda r: (r.batch, r.waves), rep, (batch, waves),
                       is_leaf=lambda x: x is None)
