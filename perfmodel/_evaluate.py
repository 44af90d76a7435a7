"""`evaluate`: the one entry point from (hardware, ops, mapping) to a `Report`."""

from __future__ import annotations

import numpy as np

from perfmodel._errors import ModelInputError
from perfmodel._ops import Ops, _FLOAT_FIELDS
from perfmodel._report import Report
from perfmodel._target import AbstractTarget, any_traced


def check_ops(ops: Ops) -> None:
    """Eager validation of an ops table: finite, non-negative, positive tokens."""
    for f in _FLOAT_FIELDS + ("tokens", "weight_footprint", "kv_footprint"):
        arr = np.asarray(getattr(ops, f))
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ModelInputError(
                f"ops.{f} has a negative or non-finite value; it must be finite and >= 0.")
    if np.any(np.asarray(ops.tokens) <= 0):
        raise ModelInputError("ops.tokens must be > 0 (the batch and lengths must be > 0).")


def evaluate(hardware: AbstractTarget, ops: Ops, mapping=None, *, hard: bool = False,
             check: bool = True) -> Report:
    """Predict latency, energy and their breakdown of ``ops`` on ``hardware``.

    Pure and smooth: ``jax.jit``, ``jax.vmap`` (over designs, workloads or both) and
    ``jax.grad`` all work through it.

    **Main arguments:**

    - ``hardware``: a target design (`perfmodel.hardware.preset(...)`, or any
      `AbstractTarget`).
    - ``ops``: the workload phase (`perfmodel.workloads.preset(...).decode(...)`).
    - ``mapping``: the target's relaxed mapping choices, or None for its default.

    **Other arguments:**

    - ``hard``: False (default) uses the smooth model (finite gradients everywhere, within
      the bounds stated in `perfmodel._smooth`); True uses exact max/ceil/choices.
    - ``check``: validate inputs eagerly and raise `ModelInputError` with one sentence
      naming the bad field. Skipped automatically when any input is a tracer (under jit,
      vmap or grad), where Python control flow on values is impossible; validate
      concrete designs once before tracing, e.g. with ``hardware.check(ops)``.
    """
    if not isinstance(hardware, AbstractTarget):
        raise ModelInputError(
            f"hardware must be a perfmodel target (e.g. perfmodel.hardware.preset('a100-80gb')),"
            f" not {type(hardware).__name__}.")
    if not isinstance(ops, Ops):
        raise ModelInputError(
            f"ops must be a perfmodel.Ops table (e.g. workload.decode(...)), "
            f"not {type(ops).__name__}.")
    if check and not any_traced((hardware, ops, mapping)):
        check_ops(ops)
        hardware.check(ops)
    return hardware.evaluate(ops, mapping, hard=hard)


#: Chunk sizes of `sweep` are multiples of this many designs (vector-width friendly).
_CHUNK_ALIGN = 64


def sweep(fn, designs, *, chunk: int | None = 8192, layout: str = "minor"):
    """``jax.vmap(fn)(designs)`` evaluated in chunks of ``chunk`` designs, with the design
    axis kept innermost in memory. Call it under ``jax.jit``.

    **Main arguments:**

    - ``fn``: a pure function of one design (a pytree of arrays), e.g.
      ``lambda p: evaluate(eqx.combine(p, static), ops).latency`` or its
      ``jax.value_and_grad``.
    - ``designs``: the same pytree with a leading designs axis on every leaf.

    **Other arguments:**

    - ``chunk``: designs per vmapped chunk (None: one vmap). On CPU, one vmap over 1e5+
      designs materializes every intermediate for all designs at once (memory-bound);
      chunks of ~1e4 stay in cache. The designs are split into equal chunks of at most
      ``chunk`` (padded with copies of the last design, whose results are dropped): a
      ragged remainder chunk costs up to 3x more per design than the full ones.
    - ``layout``: ``"minor"`` (default) evaluates each chunk with `minor_vmap`, which keeps
      the designs axis last in every intermediate, where XLA's CPU loops vectorize; on
      the bench cases it runs 1.3-3x faster than ``"major"``, a plain ``jax.vmap``
      (designs axis first, the per-design [rows] axis innermost), with the same values
      up to float rounding (benchmarks/RESULTS.md).
    """
    import math

    import jax
    import jax.numpy as jnp

    from perfmodel._minor_vmap import minor_vmap

    if layout not in ("minor", "major"):
        raise ModelInputError(f"layout is {layout!r}; it must be 'minor' or 'major'.")
    batched = minor_vmap(fn) if layout == "minor" else jax.vmap(fn)
    n = jax.tree.leaves(designs)[0].shape[0]
    if chunk is None or n <= chunk:
        return batched(designs)
    chunks = math.ceil(n / chunk)
    # a multiple of the SIMD-friendly _CHUNK_ALIGN, so no fused loop has a ragged tail
    size = min(chunk, _CHUNK_ALIGN * math.ceil(n / chunks / _CHUNK_ALIGN))
    chunks = math.ceil(n / size)
    pad = chunks * size - n
    if pad:
        designs = jax.tree.map(
            lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]), designs)
    designs = jax.tree.map(lambda x: x.reshape((chunks, size) + x.shape[1:]), designs)
    out = jax.lax.map(batched, designs)
    return jax.tree.map(lambda y: y.reshape((chunks * size,) + y.shape[2:])[:n], out)
