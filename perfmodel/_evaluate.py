"""`evaluate`: the one entry point from (hardware, ops, mapping) to a `Report`."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from perfmodel._errors import ModelInputError
from perfmodel._minor_vmap import minor_vmap
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


def sweep(fn, designs, *, chunk: int | None = None, layout: str = "minor"):
    """``jax.vmap(fn)(designs)``, evaluated chunk by chunk with the designs axis kept
    innermost in memory.

    **Main arguments:**

    - ``fn``: a pure function of one design (a pytree of arrays), e.g.
      ``lambda p: evaluate(eqx.combine(p, static), ops).latency`` or its
      ``jax.value_and_grad``.
    - ``designs``: the same pytree with a leading designs axis on every leaf.

    **Other arguments:**

    - ``layout``: ``"minor"`` (default) evaluates each chunk with `minor_vmap`, which keeps
      the designs axis last in every intermediate, where XLA's CPU loops vectorize; on
      the bench cases it runs up to 3x faster than ``"major"``, a plain ``jax.vmap``
      (designs axis first, the per-design [rows] axis innermost), with the same values to
      float rounding (benchmarks/RESULTS.md).
    - ``chunk``: designs per chunk (default 16384 for ``"minor"``, 8192 for ``"major"``;
      None with ``"major"``: one vmap). One vmap over 1e5+ designs materializes every
      intermediate for all of them (memory-bound); a chunk of ~1e4 stays in cache. A
      ragged last chunk overlaps the one before it (concrete designs) or is padded with
      copies of the last design (traced); the extra results are dropped.

    How the chunks run: called on concrete arrays, ``"minor"`` jits one chunk's
    evaluation (kept for the last 16 functions, per chunk shape: pass the same function
    object to reuse the compilation), cuts the designs into chunk buffers and
    dispatches the chunks one after another, the fastest path. Under ``jax.jit`` the
    designs are traced: up to one chunk is one `minor_vmap`; more run in a ``lax.map``
    loop with the ``"major"`` layout (chunks of at most 8192), because a loop body reads
    its chunk as a dynamic slice fused into the evaluation, which XLA's CPU emitter
    vectorizes poorly in the minor layout (3-4x slower than the same chunk as its own
    buffer; jax 0.10.2).
    ``"major"`` always loops with ``lax.map``.
    """
    if layout not in ("minor", "major"):
        raise ModelInputError(f"layout is {layout!r}; it must be 'minor' or 'major'.")
    if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
        raise ModelInputError(f"chunk is {chunk!r}; it must be a positive integer or None.")
    leaves = jax.tree.leaves(designs)
    if not leaves or np.ndim(leaves[0]) == 0:
        raise ModelInputError(
            "designs must hold at least one array with a leading designs axis.")
    n = leaves[0].shape[0]
    if layout == "minor":
        chunk = chunk or _MINOR_CHUNK
        if not any_traced(designs):
            return _sweep_dispatched(fn, designs, chunk)
        if n <= chunk:
            return minor_vmap(fn)(designs)
        chunk = min(chunk, _MAJOR_CHUNK)
    if chunk is None or n <= chunk:
        return jax.vmap(fn)(designs)
    size, chunks = _chunking(n, chunk)
    designs = _pad_designs(designs, chunks * size - n)
    out = jax.lax.map(fn, designs, batch_size=size)
    return jax.tree.map(lambda y: y[:n], out)


#: Default chunk sizes of `sweep` per layout (designs); see benchmarks/RESULTS.md.
_MINOR_CHUNK = 16384
_MAJOR_CHUNK = 8192


def _chunking(n: int, chunk: int) -> tuple[int, int]:
    """(chunk size, number of chunks): equal chunks of at most ``chunk``, each a multiple
    of the SIMD-friendly _CHUNK_ALIGN so no fused loop has a ragged tail."""
    chunks = math.ceil(n / chunk)
    size = min(chunk, _CHUNK_ALIGN * math.ceil(n / chunks / _CHUNK_ALIGN))
    return size, math.ceil(n / size)


def _pad_designs(designs, pad: int):
    """``designs`` with ``pad`` copies of the last design appended."""
    if not pad:
        return designs
    return jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]),
                        designs)


def _sweep_dispatched(fn, designs, chunk: int):
    """`sweep` on concrete designs: one jitted `minor_vmap` chunk, dispatched per chunk.

    The chunks are cut in one jitted call into separate buffers, the last one ending at
    the last design (overlapping the one before it rather than padded), and the results
    are joined in one jitted call: per-leaf eager slicing and joining cost more than the
    model here, and a chunk sliced inside the evaluation (a fused dynamic-slice) ran 3x
    slower than the same chunk as its own buffer."""
    n = jax.tree.leaves(designs)[0].shape[0]
    run = _jitted_chunk(fn)
    if n <= chunk:
        return run(designs)
    size, chunks = _chunking(n, chunk)
    starts = tuple(i * size for i in range(chunks - 1)) + (n - size,)
    return _join(tuple(run(part) for part in _split(designs, starts, size)),
                 chunks * size - n)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _split(designs, starts: tuple, size: int):
    """``designs`` cut into chunks of ``size`` from each of ``starts``."""
    return tuple(jax.tree.map(lambda x: x[s:s + size], designs) for s in starts)


@functools.partial(jax.jit, static_argnums=1)
def _join(outs, overlap: int):
    """Chunk results joined along the designs axis, dropping the first ``overlap``
    results of the last chunk (already in the one before it)."""
    return jax.tree.map(lambda *ys: jnp.concatenate(ys[:-1] + (ys[-1][overlap:],)), *outs)


def _jitted_chunk(fn):
    """``jax.jit(minor_vmap(fn))``, reused for the same function object (the last
    _CHUNK_CACHE_SIZE functions; a function that cannot be hashed is not cached)."""
    try:
        return _jitted_chunk_cached(fn)
    except TypeError:
        return jax.jit(minor_vmap(fn))


#: Functions whose compiled chunk `sweep` keeps. A bounded LRU, not a weak-keyed cache:
#: the compiled chunk refers to its function, so a weak key would never be freed.
_CHUNK_CACHE_SIZE = 16


@functools.lru_cache(maxsize=_CHUNK_CACHE_SIZE)
def _jitted_chunk_cached(fn):
    return jax.jit(minor_vmap(fn))
