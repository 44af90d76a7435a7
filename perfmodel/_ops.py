"""`Ops`: a workload as a struct-of-arrays table, one row per operator class.

A whole model is a handful of rows (QKV projection, attention score, softmax, attention
value, output projection, FFN up/gate, activation, FFN down, norms, LM head, ...), each
with a `count` (layers x repeats). Targets evaluate all rows at once with array math; no
Python loop over layers or tokens ever runs.

Per-row quantities are *per instance* (one layer's op for the whole batch); multiply by
`count` for the total. Units: FLOP and bytes.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

#: Operator classes a workload may emit. The tag is static (it never changes shapes or
#: values); targets use it for placement (e.g. non-linear ops on a host) and reports.
OP_KINDS = (
    "embed", "qkv_proj", "attn_score", "attn_softmax", "attn_value", "attn_fused",
    "out_proj", "ffn_up", "ffn_act", "ffn_down", "moe_router", "moe_up", "moe_act",
    "moe_down", "norm", "lm_head", "conv", "pool", "fc", "allreduce", "elementwise",
    "ssm_proj", "ssm_scan", "ssm_chunk",
)

_FLOAT_FIELDS = (
    "flops", "m", "n", "k", "groups", "count", "weight_bytes", "act_in_bytes", "act_out_bytes",
    "kv_read_bytes",
    "kv_write_bytes", "comm_bytes", "compute_bits", "weight_bits", "act_bits", "launches",
)


class Ops(eqx.Module):
    """Operator table of a workload phase.

    **Per-row fields** (float arrays of shape ``[rows]``):

    - ``flops``: FLOP of one instance (a multiply-accumulate is 2 FLOP).
    - ``m, n, k``: GEMM shape ``[m, k] x [k, n]`` (tokens x out-features x in-features);
      element-wise ops use ``m = elements, n = k = 1``. Used for efficiency and reuse.
    - ``groups``: independent GEMMs of that shape in one batched kernel (attention heads x
      sequences, experts); 1 for a plain GEMM. ``flops`` covers all groups.
    - ``count``: instances per evaluation (layers x repeats, or quadrature weights).
    - ``weight_bytes``: parameter bytes read (at the weight bit-width).
    - ``act_in_bytes``, ``act_out_bytes``: activation bytes read / written (at the
      activation bit-width). Kept apart because an input is re-read per output tile.
    - ``kv_read_bytes``, ``kv_write_bytes``: KV-cache traffic (at the KV bit-width).
    - ``comm_bytes``: bytes each device sends over the interconnect (collectives).
    - ``compute_bits``: bit-width of the arithmetic (selects the datapath peak).
    - ``weight_bits``, ``act_bits``: the two operand widths (stationary operand: weights,
      or K/V for attention; streamed operand: activations). Bit-serial and lookup-table
      targets scale with them separately. Default: ``compute_bits``.
    - ``launches``: kernel launches (or host dispatches) per instance.

    **Per-workload fields**: ``tokens`` (tokens produced per evaluation, for tokens/s),
    ``weight_footprint`` and ``kv_footprint`` (bytes resident in memory: capacity checks).

    **Static**: ``names`` and ``kinds`` per row, ``phase`` and ``workload`` labels.
    """

    flops: Float[Array, " rows"]
    m: Float[Array, " rows"]
    n: Float[Array, " rows"]
    k: Float[Array, " rows"]
    groups: Float[Array, " rows"]
    count: Float[Array, " rows"]
    weight_bytes: Float[Array, " rows"]
    act_in_bytes: Float[Array, " rows"]
    act_out_bytes: Float[Array, " rows"]
    kv_read_bytes: Float[Array, " rows"]
    kv_write_bytes: Float[Array, " rows"]
    comm_bytes: Float[Array, " rows"]
    compute_bits: Float[Array, " rows"]
    weight_bits: Float[Array, " rows"]
    act_bits: Float[Array, " rows"]
    launches: Float[Array, " rows"]
    tokens: Float[Array, ""]
    weight_footprint: Float[Array, ""]
    kv_footprint: Float[Array, ""]
    names: tuple[str, ...] = eqx.field(static=True)
    kinds: tuple[str, ...] = eqx.field(static=True)
    phase: str = eqx.field(static=True, default="")
    workload: str = eqx.field(static=True, default="")

    @property
    def rows(self) -> int:
        return len(self.names)

    @property
    def dram_bytes(self):
        """Unique bytes each instance moves to/from main memory."""
        return (self.weight_bytes + self.act_in_bytes + self.act_out_bytes + self.kv_read_bytes
                + self.kv_write_bytes)

    @property
    def total_flops(self):
        return jnp.sum(self.flops * self.count, axis=-1)

    @property
    def total_bytes(self):
        return jnp.sum(self.dram_bytes * self.count, axis=-1)

    @property
    def intensity(self):
        """Operational intensity of each row, FLOP per main-memory byte."""
        return self.flops / jnp.maximum(self.dram_bytes, 1.0)

    def scaled(self, factor) -> "Ops":
        """The same ops repeated ``factor`` times (counts, tokens scaled)."""
        return eqx.tree_at(lambda o: (o.count, o.tokens), self,
                           (self.count * factor, self.tokens * factor))

    def select(self, mask) -> "Ops":
        """Rows where the static boolean sequence ``mask`` is true."""
        return self.take(np.flatnonzero(np.asarray(mask, dtype=bool)))

    def take(self, indices) -> "Ops":
        """Rows at the static integer ``indices``, in that order."""
        idx = np.asarray(indices, dtype=int)
        fields = {f: getattr(self, f)[..., idx] for f in _FLOAT_FIELDS}
        return Ops(**fields, tokens=self.tokens, weight_footprint=self.weight_footprint,
                   kv_footprint=self.kv_footprint,
                   names=tuple(self.names[i] for i in idx),
                   kinds=tuple(self.kinds[i] for i in idx), phase=self.phase,
                   workload=self.workload)

    def partition(self, first_kinds) -> tuple["Ops", int, np.ndarray | None]:
        """Rows of ``first_kinds`` first, the others after (a static reorder), as
        ``(ops, n_first, undo)``: ``undo`` is the index array that puts per-row results
        back in table order (e.g. ``cost.take(undo)``), or None when no reorder was needed.

        Targets cost each block of rows with only the terms that apply to it and join the
        blocks by concatenation: the vmapped hot path then has no masks or scatters."""
        first = np.array([k in first_kinds for k in self.kinds], dtype=bool)
        perm = np.concatenate([np.flatnonzero(first), np.flatnonzero(~first)])
        if np.all(perm == np.arange(len(perm))):
            return self, int(first.sum()), None
        return self.take(perm), int(first.sum()), np.argsort(perm)

    def table(self) -> list[dict]:
        """Rows as a list of dicts of Python floats (for printing; not traceable)."""
        out = []
        for i, (name, kind) in enumerate(zip(self.names, self.kinds)):
            row = {"name": name, "kind": kind}
            row.update({f: float(np.asarray(getattr(self, f))[..., i]) for f in _FLOAT_FIELDS})
            out.append(row)
        return out


def make_ops(rows: list[dict], *, tokens, weight_footprint, kv_footprint, phase: str = "",
             workload: str = "", dtype=None) -> Ops:
    """Build `Ops` from a list of per-row dicts (missing numeric fields default to 0,
    ``count`` and ``launches`` to 1, ``n``/``k`` to 1, operand bits to ``compute_bits``).
    Values may be JAX tracers, so a builder stays differentiable in batch, lengths and
    bit-widths."""
    if not rows:
        raise ValueError("make_ops needs at least one row")
    defaults = {f: 0.0 for f in _FLOAT_FIELDS}
    defaults.update(count=1.0, launches=1.0, n=1.0, k=1.0, groups=1.0, compute_bits=16.0)
    for r in rows:
        unknown = set(r) - set(_FLOAT_FIELDS) - {"name", "kind"}
        if unknown:
            raise ValueError(f"unknown Ops field(s) {sorted(unknown)}")
        if r["kind"] not in OP_KINDS:
            raise ValueError(f"op kind {r['kind']!r} is not one of {OP_KINDS}")
    dtype = dtype or jnp.result_type(float)

    def value(r, f):
        if f in ("weight_bits", "act_bits") and f not in r:
            return r.get("compute_bits", defaults["compute_bits"])
        return r.get(f, defaults[f])

    cols = {f: jnp.stack([jnp.asarray(value(r, f), dtype) for r in rows])
            for f in _FLOAT_FIELDS}
    return Ops(**cols, tokens=jnp.asarray(tokens, dtype),
               weight_footprint=jnp.asarray(weight_footprint, dtype),
               kv_footprint=jnp.asarray(kv_footprint, dtype),
               names=tuple(r["name"] for r in rows), kinds=tuple(r["kind"] for r in rows),
               phase=phase, workload=workload)


def concat_ops(parts: list[Ops], *, tokens, weight_footprint, kv_footprint, phase: str,
               workload: str = "") -> Ops:
    """Concatenate the rows of several `Ops` (e.g. prefill then decode) into one table.

    Footprints are given explicitly: they are what is resident at the peak, which only
    the caller knows (e.g. the KV cache at the end of a request)."""
    cols = {f: jnp.concatenate([getattr(p, f) for p in parts], axis=-1)
            for f in _FLOAT_FIELDS}
    return Ops(**cols, tokens=jnp.asarray(tokens), weight_footprint=jnp.asarray(weight_footprint),
               kv_footprint=jnp.asarray(kv_footprint),
               names=sum((p.names for p in parts), ()), kinds=sum((p.kinds for p in parts), ()),
               phase=phase, workload=workload or parts[0].workload)
