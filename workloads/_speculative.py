"""Self-speculative decoding with bit-nested draft models, as `Ops` transforms.

One speculative step of ``batch`` sequences (Leviathan et al. 2023, arXiv:2211.17192;
bit-nested self-drafts as in ELMoE-3D, arXiv:2604.14626):

* ``gamma`` draft decode steps of the *same* model reading only the high bit-planes of
  its weights: ``draft_wbits`` of ``wbits`` (weight bytes and stationary operand width
  scaled by ``f = draft_wbits / wbits``);
* one verify pass of the full model over ``gamma + 1`` tokens per sequence that reads
  the remaining ``wbits - draft_wbits`` low bit-planes (the high planes were read by the
  draft; assumed held by the bit-sliced datapath) and computes at ``wbits``;
* expected tokens per sequence and step, with a per-token acceptance rate ``alpha``::

      tau(gamma, alpha) = (1 - alpha^(gamma + 1)) / (1 - alpha)    (in [1, gamma + 1])

The verify pass of a decode row with ``T = B`` tokens has ``T' = (gamma + 1) B``: GEMM
rows scale ``m``, FLOP and activation traffic by ``gamma + 1``; dense weights are read
once; MoE layers touch ``E (1 - (1 - k/E)^T')`` distinct experts, obtained from the decode
row's ``groups = E (1 - (1 - k/E)^T)`` as ``E (1 - (1 - groups/E)^(T'/T))`` with ``E``
the router's output width, so the transform needs only the decode `Ops`. KV traffic of
attention is read once per step (exact while ``heads/kv_heads (gamma+1) <= 128``, one
FlashAttention query block).

`speculative_ops` returns one table: draft rows (prefix ``draft:``, ``count x gamma``)
then verify rows (prefix ``verify:``), ``tokens = B tau``. Everything is pure jnp, so a
hardware target may also apply `draft_ops` / `verify_ops` inside its ``cost`` with traced
acceptance and bit fractions.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from perfmodel._errors import ModelInputError
from perfmodel._ops import Ops, concat_ops

#: Row kinds whose stationary operand is the model's weights at ``wbits`` (embeddings and
#: LM head stay at EMBED_BITS; attention's stationary operand is the KV cache).
WEIGHT_KINDS = frozenset({"qkv_proj", "out_proj", "ffn_up", "ffn_down", "moe_router",
                          "moe_up", "moe_down", "ssm_proj"})
#: Rows holding expert weights (one GEMM group per touched expert).
EXPERT_KINDS = frozenset({"moe_up", "moe_down"})
DRAFT_PREFIX = "draft:"
VERIFY_PREFIX = "verify:"
#: Guard for alpha -> 1 and for a division by (1 - groups/E) at groups == E.
_EPS = 1e-9


def expected_tokens(draft_length, acceptance):
    """Expected tokens per sequence per speculative step, ``(1 - a^(g+1)) / (1 - a)``.

    Written as ``sum_{i=0..g} a^i`` for integer ``g`` (exact and smooth at ``a -> 1``);
    the closed form otherwise."""
    a = jnp.asarray(acceptance, float)
    if isinstance(draft_length, (int, np.integer)):
        return sum(a ** i for i in range(int(draft_length) + 1))
    g = jnp.asarray(draft_length, float)
    return (1.0 - a ** (g + 1.0)) / jnp.maximum(1.0 - a, _EPS)


def check_speculation(draft_length, acceptance, draft_wbits=None, wbits=None) -> None:
    """Eager validation; tracers pass through. Errors name the field and valid range."""
    def concrete(x):
        try:
            return float(x)
        except (TypeError, ValueError):
            return None

    g = concrete(draft_length)
    if g is not None and not (np.isfinite(g) and g >= 1):
        raise ModelInputError(f"draft_length = {draft_length!r} is invalid; it must be >= 1.")
    a = concrete(acceptance)
    if a is not None and not (np.isfinite(a) and 0.0 <= a < 1.0):
        raise ModelInputError(f"acceptance = {acceptance!r} is invalid; it must be in [0, 1).")
    d, w = concrete(draft_wbits), concrete(wbits)
    if d is not None and w is not None and not (np.isfinite(d) and 1.0 <= d < w):
        raise ModelInputError(
            f"draft_wbits = {draft_wbits!r} is invalid; it must be in [1, wbits = {w:g}).")


def _weight_mask(ops: Ops) -> np.ndarray:
    return np.array([k in WEIGHT_KINDS for k in ops.kinds])


def _replace(ops: Ops, **fields) -> Ops:
    return dataclasses.replace(ops, **fields)


def draft_ops(ops: Ops, draft_fraction) -> Ops:
    """One draft decode step: weight rows read ``draft_fraction`` of their bit-planes."""
    w = _weight_mask(ops)
    f = jnp.where(w, draft_fraction, 1.0)
    wbits = ops.weight_bits * f
    return _replace(ops, weight_bytes=ops.weight_bytes * f, weight_bits=wbits,
                    compute_bits=jnp.where(w, jnp.maximum(wbits, ops.act_bits),
                                           ops.compute_bits))


def router_width(ops: Ops):
    """Experts per MoE layer (the router GEMM's n), or None for a dense model."""
    idx = [i for i, k in enumerate(ops.kinds) if k == "moe_router"]
    return ops.n[idx[0]] if idx else None


def verify_ops(ops: Ops, draft_length, residual_fraction) -> Ops:
    """The verify pass over ``draft_length + 1`` tokens per sequence of a decode table,
    reading ``residual_fraction`` of the weight rows' bit-planes."""
    q = jnp.asarray(draft_length, float) + 1.0
    w = _weight_mask(ops)
    experts = router_width(ops)
    groups, weight_bytes, m = ops.groups, ops.weight_bytes, ops.m * q
    if experts is not None:
        ex = np.array([k in EXPERT_KINDS for k in ops.kinds])
        untouched = jnp.clip(1.0 - ops.groups / experts, _EPS, 1.0)
        touched = experts * (1.0 - untouched ** q)
        growth = jnp.where(ex, touched / ops.groups, 1.0)
        groups = ops.groups * growth
        weight_bytes = weight_bytes * growth
        m = m / growth  # tokens per touched expert
    weight_bytes = weight_bytes * jnp.where(w, residual_fraction, 1.0)
    embed = np.array([k == "embed" for k in ops.kinds])  # gathers one row per token
    weight_bytes = jnp.where(embed, weight_bytes * q, weight_bytes)
    return _replace(ops, m=m, groups=groups, flops=ops.flops * q, weight_bytes=weight_bytes,
                    act_in_bytes=ops.act_in_bytes * q, act_out_bytes=ops.act_out_bytes * q,
                    kv_write_bytes=ops.kv_write_bytes * q)


def _prefixed(ops: Ops, prefix: str) -> Ops:
    return _replace(ops, names=tuple(prefix + n for n in ops.names))


def speculative_ops(ops: Ops, *, draft_length, acceptance, draft_fraction) -> Ops:
    """One speculative step built from a decode table ``ops`` (module docstring).

    Arguments: ``draft_length`` (gamma, >= 1), ``acceptance`` (alpha in [0, 1)),
    ``draft_fraction`` (draft_wbits / wbits, in (0, 1))."""
    if ops.phase != "decode":
        raise ModelInputError(f"speculative decoding needs a decode table; got phase "
                              f"{ops.phase!r}.")
    check_speculation(draft_length, acceptance)
    g = jnp.asarray(draft_length, float)
    draft = _prefixed(draft_ops(ops, draft_fraction), DRAFT_PREFIX)
    draft = _replace(draft, count=draft.count * g)
    verify = _prefixed(verify_ops(ops, draft_length, 1.0 - draft_fraction), VERIFY_PREFIX)
    tau = expected_tokens(draft_length, acceptance)
    return concat_ops([draft, verify], tokens=ops.tokens * tau,
                      weight_footprint=ops.weight_footprint, kv_footprint=ops.kv_footprint,
                      phase="speculative_decode", workload=ops.workload)


def speculative_decode(llm, batch=1.0, context=1024.0, *, draft_length=4, acceptance=0.8,
                       draft_wbits=4.0, wbits=None, abits=16.0, kvbits=16.0, **kw) -> Ops:
    """One self-speculative step of ``llm`` (see `LLM.speculative_decode`)."""
    wbits = llm.default_wbits if wbits is None else wbits
    if isinstance(wbits, dict):
        raise ModelInputError("speculative decoding takes one weight bit-width (the draft "
                              "reads its top draft_wbits bit-planes); wbits per group is "
                              "not supported here.")
    check_speculation(draft_length, acceptance, draft_wbits, wbits)
    ops = llm.decode(batch, context, wbits=wbits, abits=abits, kvbits=kvbits, **kw)
    return speculative_ops(ops, draft_length=draft_length, acceptance=acceptance,
                           draft_fraction=jnp.asarray(draft_wbits, float) / wbits)
