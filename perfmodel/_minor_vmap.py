"""`minor_vmap`: ``jax.vmap`` over designs with the design axis kept minor (last).

Why: ``jax.vmap`` puts the batch axis first, so a per-design [rows] array becomes
[designs, rows] in row-major memory, with the short rows axis (5-24 op classes)
innermost. XLA's CPU emitters vectorize along the innermost axis: measured on the 2-core
CI-class VM (2026-11-29, jax 0.10.2), ``a * b + a / b`` on f32[8192, 5] takes 150 us and
on f32[5, 8192] 18 us, and a sum over the 5-wide axis 300 us against 20-60 us for the
same sum written as a [5] x [5, 8192] product. The model's vmapped gradient is such
[designs, rows] element-wise work and per-parameter row sums, so the layout, not the
arithmetic, sets its speed.

How: the function is traced once for one design (`jax.make_jaxpr`) and its jaxpr is
evaluated here on arrays that carry the design axis last. Element-wise primitives,
``broadcast_in_dim``, ``stack``, ``squeeze``, ``reshape``, ``gather`` and ``scatter-add``
at shared indices, ``reduce_max`` / ``reduce_min`` (a tree of element-wise max / min) and
float ``reduce_sum`` (as a product with a ones
vector, which XLA neither fuses into long recomputed chains nor runs as a slow minor-axis
reduction) have rules that keep that axis last; nested ``jit`` calls are inlined; every
other primitive is batched by ``jax.vmap`` itself with ``in_axes=-1, out_axes=-1``
(correct for any primitive; at worst a transpose). ``custom_jvp`` functions keep their
derivative rule: the primal runs on this path, the rule under ``jax.vmap``.

Same values as ``jax.vmap`` up to float reassociation (tests/test_minor_vmap.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore

#: Primitives that act element by element on operands of one shape (after
#: ``broadcast_in_dim``), so any axis appended to all operands passes through.
ELEMENTWISE = frozenset("""
    abs acos acosh add add_any and asin asinh atan atan2 atanh cbrt ceil clamp
    convert_element_type copy copy_p cos cosh div eq erf erf_inv erfc exp exp2 expm1
    floor ge gt imag integer_pow is_finite le lgamma digamma log log1p logistic lt max
    min mul ne neg nextafter not or pow real reduce_precision rem round rsqrt select_n
    sign sin sinh sqrt square sub tan tanh xor
""".split())

#: Call primitives whose body is evaluated inline.
_INLINE_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call", "remat",
                           "checkpoint"})


def minor_vmap(fn):
    """``jax.vmap(fn)`` (batch axis 0 in and out) computed with the batch axis last in
    every intermediate; see the module docstring for why and how.

    **Main arguments:**

    - ``fn``: a pure function of one pytree of arrays (one design).

    Returns a function of the batched pytree (every leaf with the same leading size).
    """

    def batched(designs):
        leaves, treedef = jax.tree.flatten(designs)
        if not leaves:
            raise ValueError("minor_vmap needs at least one array leaf to batch over.")
        n = int(np.shape(leaves[0])[0])
        one = jax.tree.unflatten(
            treedef, [jax.ShapeDtypeStruct(np.shape(x)[1:], jnp.result_type(x))
                      for x in leaves])
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(one)
        args = [(jnp.moveaxis(jnp.asarray(x), 0, -1), True) for x in leaves]
        outs = _eval_jaxpr(closed.jaxpr, closed.consts, args, n)
        outs = [jnp.moveaxis(x, -1, 0) if b else jnp.broadcast_to(x, (n,) + np.shape(x))
                for x, b in outs]
        return jax.tree.unflatten(jax.tree.structure(out_shape), outs)

    return batched


def _eval_jaxpr(jaxpr, consts, args, n):
    """Evaluate ``jaxpr`` on ``args``: (value, batched) pairs, batched values carrying a
    trailing axis of size ``n``. Returns the outputs as (value, batched) pairs."""
    env = {}

    def read(v):
        return (v.val, False) if isinstance(v, jcore.Literal) else env[v]

    for v, c in zip(jaxpr.constvars, consts):
        env[v] = (c, False)
    for v, a in zip(jaxpr.invars, args):
        env[v] = a
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        if any(b for _, b in ins):
            outs = _batched_eqn(eqn, ins, n)
        else:
            res = _bind(eqn, *[x for x, _ in ins])
            outs = [(r, False) for r in (res if eqn.primitive.multiple_results else [res])]
        for v, out in zip(eqn.outvars, outs):
            env[v] = out
    return [read(v) for v in jaxpr.outvars]


def _batched_eqn(eqn, ins, n):
    """One equation with at least one batched input; (value, batched) outputs."""
    prim, params = eqn.primitive, eqn.params
    name = prim.name
    if name in _INLINE_CALLS and "jaxpr" in params:
        sub = params["jaxpr"]
        return _eval_jaxpr(sub.jaxpr, sub.consts, ins, n)
    if name == "custom_jvp_call":
        return _custom_jvp(eqn, ins, n)
    if name in ELEMENTWISE:
        shape = tuple(eqn.outvars[0].aval.shape)
        xs = [_to_batched(x, b, var.aval.dtype, shape, n)
              for (x, b), var in zip(ins, eqn.invars)]
        return [(prim.bind(*xs, **params), True)]
    if name == "broadcast_in_dim":
        x = ins[0][0]
        shape = tuple(params["shape"]) + (n,)
        dims = tuple(params["broadcast_dimensions"]) + (len(params["shape"]),)
        return [(lax.broadcast_in_dim(x, shape, dims), True)]
    if name == "stack":
        dtype = eqn.outvars[0].aval.dtype
        xs = [_to_batched(x, b, dtype, tuple(var.aval.shape), n)
              for (x, b), var in zip(ins, eqn.invars)]
        return [(_bind(eqn, *xs), True)]
    if name == "squeeze":
        return [(lax.squeeze(ins[0][0], params["dimensions"]), True)]
    if name == "reshape" and len(ins) == 1 and params.get("dimensions") is None:
        return [(lax.reshape(ins[0][0], tuple(params["new_sizes"]) + (n,)), True)]
    if name == "gather" and not ins[1][1]:
        return [(_gather(eqn, ins[0][0], ins[1][0], n), True)]
    if name == "scatter-add" and not ins[1][1]:
        return [(_scatter_add(eqn, ins, n), True)]
    if name in ("reduce_max", "reduce_min") and len(ins) == 1:
        return [(_fold_leading(ins[0][0], tuple(params["axes"]),
                               lax.max if name == "reduce_max" else lax.min), True)]
    if (name == "reduce_sum" and len(ins) == 1
            and jnp.issubdtype(eqn.invars[0].aval.dtype, jnp.floating)):
        return [(_sum_leading(ins[0][0], tuple(params["axes"])), True)]
    return _vmapped(eqn, ins, n)


def _bind(eqn, *args):
    """Apply ``eqn``'s primitive to ``args`` as `jax.core.eval_jaxpr` does (call-like
    primitives take their bodies as wrapped functions)."""
    return eqn.primitive.bind(*args, **eqn.primitive.get_bind_params(eqn.params))


def _to_batched(x, batched, dtype, shape, n):
    """``x`` (batched: shape ``s + (n,)``; else ``s``) broadcast to ``shape + (n,)``,
    aligned right as NumPy broadcasting does."""
    x = jnp.asarray(x, dtype=dtype)
    nd = x.ndim - 1 if batched else x.ndim
    if batched and x.shape[:-1] == shape:
        return x
    dims = tuple(range(len(shape) - nd, len(shape)))
    return lax.broadcast_in_dim(x, shape + (n,), dims + ((len(shape),) if batched else ()))


def _sum_leading(x, axes):
    """Sum of ``x`` over ``axes`` (never its trailing design axis), as one product with
    a ones vector."""
    if not axes:
        return x
    x = _leading(x, axes)
    return jnp.tensordot(jnp.ones(x.shape[0], x.dtype), x, axes=1)


def _gather(eqn, operand, indices, n):
    """``gather`` of a batched operand at shared indices: the trailing axis becomes one
    more full-size offset dimension, last in the output."""
    params = dict(eqn.params)
    dn = params.pop("dimension_numbers")
    out_rank = len(eqn.outvars[0].aval.shape)
    dn = dn._replace(offset_dims=tuple(dn.offset_dims) + (out_rank,))
    params["slice_sizes"] = tuple(params["slice_sizes"]) + (n,)
    return eqn.primitive.bind(operand, indices, dimension_numbers=dn, **params)


def _scatter_add(eqn, ins, n):
    """``scatter-add`` at shared indices: the trailing axis becomes one more update
    window dimension (operand and updates broadcast to batched first)."""
    (operand, ob), (indices, _), (updates, ub) = ins
    op_var, _, up_var = eqn.invars
    operand = _to_batched(operand, ob, op_var.aval.dtype, tuple(op_var.aval.shape), n)
    updates = _to_batched(updates, ub, up_var.aval.dtype, tuple(up_var.aval.shape), n)
    params = dict(eqn.params)
    dn = params.pop("dimension_numbers")
    dn = dn._replace(
        update_window_dims=tuple(dn.update_window_dims) + (len(up_var.aval.shape),))
    return eqn.primitive.bind(operand, indices, updates, dimension_numbers=dn,
                              **eqn.primitive.get_bind_params(params))


def _leading(x, axes):
    """``x`` with ``axes`` moved to the front and merged into one."""
    rest = [a for a in range(x.ndim) if a not in axes]
    k = int(np.prod([x.shape[a] for a in axes]))
    return jnp.transpose(x, axes + tuple(rest)).reshape(
        (k,) + tuple(x.shape[a] for a in rest))


def _fold_leading(x, axes, op):
    """Reduction of ``x`` over ``axes`` as a balanced tree of element-wise ``op``."""
    if not axes:
        return x
    x = _leading(x, axes)
    parts = [x[i] for i in range(x.shape[0])]
    while len(parts) > 1:
        parts = [op(*parts[i:i + 2]) if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    return parts[0]


def _vmapped(eqn, ins, n):
    """Any primitive, batched by ``jax.vmap`` along the trailing axis."""
    out = jax.vmap(lambda *a: _bind(eqn, *a),
                   in_axes=[-1 if b else None for _, b in ins], out_axes=-1,
                   axis_size=n)(*[x for x, _ in ins])
    return [(o, True) for o in (out if eqn.primitive.multiple_results else [out])]


def _custom_jvp(eqn, ins, n):
    """A ``custom_jvp_call``: primal evaluated on this path, tangent by the function's own
    rule under ``jax.vmap``, so differentiating through `minor_vmap` keeps the rule."""
    sub = eqn.params["call_jaxpr"]
    xs = [_to_batched(x, b, var.aval.dtype, tuple(var.aval.shape), n)
          for (x, b), var in zip(ins, eqn.invars)]

    @jax.custom_jvp
    def call(*args):
        outs = _eval_jaxpr(sub.jaxpr, sub.consts, [(a, True) for a in args], n)
        return [_to_batched(x, b, var.aval.dtype, tuple(var.aval.shape), n)
                for (x, b), var in zip(outs, eqn.outvars)]

    @call.defjvp
    def call_jvp(primals, tangents):
        def rule(p, t):
            return jax.jvp(lambda *a: _bind(eqn, *a), p, t)
        out, tan = jax.vmap(rule, in_axes=-1, out_axes=-1)(tuple(primals), tuple(tangents))
        return list(out), list(tan)

    return [(o, True) for o in call(*xs)]
