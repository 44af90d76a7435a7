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


def sweep(fn, designs, *, chunk: int | None = 8192):
    """``jax.vmap(fn)(designs)`` evaluated in chunks of ``chunk`` designs.

    On CPU, one vmap over 1e5+ designs materializes every intermediate for all designs
    at once (memory-bound); chunks of ~1e4 keep them in cache and run 2-3x faster, more
    with gradients (see benchmarks/). Same result as a plain vmap; ``chunk=None`` is one.
    Call it under ``jax.jit``.

    The designs are split into equal chunks of at most ``chunk`` (padded with copies of
    the last design, whose results are dropped): a ragged remainder chunk costs up to 3x
    more per design than the full ones on CPU.
    """
    import math

    import jax
    import jax.numpy as jnp

    n = jax.tree.leaves(designs)[0].shape[0]
    if chunk is None or n <= chunk:
        return jax.vmap(fn)(designs)
    chunks = math.ceil(n / chunk)
    # a multiple of the SIMD-friendly _CHUNK_ALIGN, so no fused loop has a ragged tail
    size = min(chunk, _CHUNK_ALIGN * math.ceil(n / chunks / _CHUNK_ALIGN))
    chunks = math.ceil(n / size)
    pad = chunks * size - n
    if pad:
        designs = jax.tree.map(
            lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]), designs)
    out = jax.lax.map(fn, designs, batch_size=size)
    return jax.tree.map(lambda y: y[:n], out) if pad else out
