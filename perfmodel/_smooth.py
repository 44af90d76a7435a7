"""Smooth primitives with an exact mode.

Every ``max``, ``min``, ``ceil`` and discrete choice on the hot path goes through one of
these functions. With ``hard=False`` (the default) they are continuous with finite
gradients; with ``hard=True`` they are the exact functions. The smooth versions are
chosen to be cheap (no transcendental functions except in `soft_choice` / `smooth_step`),
because `evaluate` is vmapped over millions of designs.

Bounds (tested in tests/test_smooth.py):

* `smooth_max(a, b)` for a, b >= 0 lies in ``[max(a, b), (1 + RIDGE_SHARPNESS) max(a, b)]``;
  the gap is largest at the ridge ``a == b`` and falls as ``RIDGE_SHARPNESS**2 / 4 * r``
  with ``r = (a + b)^2 / |a - b|`` away from it (0.05 % at a = 2b).
* `smooth_ceil(x)` equals ``ceil(x)`` except within ``CEIL_RAMP`` above an integer
  k >= 1, where it ramps linearly from ``k`` to ``k + 1``.
* `smooth_min(a, b)` lies in ``[min(a, b) / (1 + RIDGE_SHARPNESS), min(a, b)]``.

Gradients of discrete quantities (the rule; docs/architecture.md, "Gradients"). A
rounded quantity's smooth form is continuous and exact at the integers, but its
derivative is that of the *trend* between neighbouring integers, not of the steep ramp
that joins them: `smooth_ceil`'s derivative is that of ``max(x, 1)`` (the count grows
one per unit of its argument: straight-through), `smooth_threshold`'s that of the
linear interpolation between the last integer inside and the first outside. The value
stays within the bounds above; only the gradient is a surrogate (``jax.custom_jvp``).
A clip to a domain (`bounded`) passes the gradient at its bounds, so the derivative
there is the one-sided derivative into the domain.
"""

import functools

import jax
import jax.numpy as jnp

#: Relative overshoot of `smooth_max` at a ridge point (a == b). Dimensionless, chosen.
RIDGE_SHARPNESS = 0.02
#: Width of the linear ramp of `smooth_ceil` above each integer. Dimensionless, chosen.
CEIL_RAMP = 0.02
#: Guard against sqrt(0) in gradients when both arguments are zero.
_TINY = 1e-30


def smooth_max(a, b, *, hard: bool = False, sharpness: float = RIDGE_SHARPNESS):
    """Maximum of two non-negative quantities.

    Smooth form: ``(a + b + sqrt((a - b)^2 + s^2 (a + b)^2)) / 2`` with ``s = sharpness``.
    It is homogeneous of degree one (unit-independent), never below the exact maximum,
    and at most ``s`` (relative) above it.
    """
    if hard:
        return jnp.maximum(a, b)
    total = a + b
    diff = a - b
    return 0.5 * (total + jnp.sqrt(diff * diff + (sharpness * total) ** 2 + _TINY))


def smooth_maximum(values, *, axis: int = 0, hard: bool = False,
                   sharpness: float = RIDGE_SHARPNESS):
    """`smooth_max` folded over an axis of non-negative values (a small, static axis),
    or over a list / tuple of broadcastable arrays (e.g. per-component [rows] columns),
    left to right; the sequence form never stacks, which is cheaper under vmap."""
    if isinstance(values, (list, tuple)):
        if hard:
            return functools.reduce(jnp.maximum, values)
        return functools.reduce(lambda a, b: smooth_max(a, b, sharpness=sharpness), values)
    values = jnp.moveaxis(values, axis, 0)
    if hard:
        return jnp.max(values, axis=0)
    out = values[0]
    for v in values[1:]:  # static, short (number of memory levels), not a hot loop
        out = smooth_max(out, v, sharpness=sharpness)
    return out


def smooth_min(a, b, *, hard: bool = False, sharpness: float = RIDGE_SHARPNESS):
    """Minimum of two non-negative quantities: ``a b / smooth_max(a, b)``.

    Homogeneous of degree one, never above the exact minimum and at most a factor
    ``1 + s`` below it, and non-decreasing in both arguments (``a + b - smooth_max``
    falls in its larger argument and goes negative when one argument is 1/s^2 times
    the other)."""
    if hard:
        return jnp.minimum(a, b)
    return a * b / smooth_max(a, b, sharpness=sharpness)


def smooth_relu(x, scale, *, hard: bool = False, sharpness: float = RIDGE_SHARPNESS):
    """``max(x, 0)`` smoothed over a width ``sharpness * scale`` around zero.

    ``scale`` sets the units (e.g. the capacity when ``x`` is an overflow in bytes).
    """
    if hard:
        return jnp.maximum(x, 0.0)
    return 0.5 * (x + jnp.sqrt(x * x + (sharpness * scale) ** 2 + _TINY))


def smooth_ceil(x, *, hard: bool = False, ramp: float = CEIL_RAMP):
    """Ceiling of a count. Smooth form: ``floor(x) + clip(frac(x) / ramp, 0, 1)``, and
    never below 1 for ``x > 0`` (a positive count of tiles or waves is at least one).

    Continuous and exact outside a window of width ``ramp`` above each integer >= 1.
    Its derivative is the trend's, ``d max(x, 1) / dx`` (1 from x = 1 on, 0 below), at
    every point: never the ramp's ``1 / ramp`` nor the zero between ramps.
    """
    if hard:
        return jnp.ceil(x)
    return _ramp_ceil(x, ramp)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _ramp_ceil(x, ramp):
    fl = jnp.floor(x)
    s = fl + jnp.clip((x - fl) / ramp, 0.0, 1.0)
    return jnp.where(x > 0, jnp.maximum(s, 1.0), s)


@_ramp_ceil.defjvp
def _ramp_ceil_jvp(ramp, primals, tangents):
    (x,), (dx,) = primals, tangents
    return _ramp_ceil(x, ramp), jnp.where(x >= 1.0, dx, jnp.zeros_like(dx))


def smooth_threshold(x, limit, *, hard: bool = False, ramp: float = CEIL_RAMP):
    """Indicator ``x <= limit`` (1 inside, 0 outside) of a quantity that takes integer
    steps, such as a bit-width against the widest a datapath takes.

    Smooth form: 1 up to ``limit``, falling linearly to 0 over ``ramp`` above it (exact
    outside that window); derivative: the trend's, ``-1`` per unit over
    ``[limit, limit + 1)`` (the linear interpolation from the last value inside to the
    first outside), 0 elsewhere."""
    if hard:
        return (jnp.asarray(x) <= limit).astype(jnp.result_type(x, float))
    return _ramp_threshold(x, limit, ramp)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _ramp_threshold(x, limit, ramp):
    return 1.0 - jnp.clip((x - limit) / ramp, 0.0, 1.0)


@_ramp_threshold.defjvp
def _ramp_threshold_jvp(ramp, primals, tangents):
    (x, limit), (dx, dlimit) = primals, tangents
    inside = (x >= limit) & (x < limit + 1.0)
    return _ramp_threshold(x, limit, ramp), jnp.where(inside, dlimit - dx,
                                                      jnp.zeros_like(dx))


@jax.custom_jvp
def bounded(x, lo, hi):
    """``clip(x, lo, hi)`` for a relaxed choice confined to a domain, with the gradient
    of ``x`` passed on the closed domain, bounds included: the derivative at a bound is
    the one-sided derivative into the domain (``jnp.clip`` halves it there), and 0
    outside, where the choice is pinned."""
    return jnp.clip(x, lo, hi)


@bounded.defjvp
def _bounded_jvp(primals, tangents):
    (x, lo, hi), (dx, dlo, dhi) = primals, tangents
    out = jnp.where(x < lo, dlo, jnp.where(x > hi, dhi, dx))
    return bounded(x, lo, hi), out


def smooth_step(x, width, *, hard: bool = False):
    """Heaviside step ``x >= 0``; smooth form is a logistic of width ``width``."""
    if hard:
        return (x >= 0).astype(jnp.result_type(x, float))
    return jax.nn.sigmoid(x / width)


def soft_choice(logits, *, axis: int = -1, hard: bool = False, temperature: float = 1.0):
    """Weights of a discrete choice: softmax of ``logits / temperature``, or one-hot argmax.

    Use the weights to mix the options' costs; `hard=True` scores the hardened choice.
    """
    if hard:
        idx = jnp.argmax(logits, axis=axis)
        return jax.nn.one_hot(idx, logits.shape[axis], axis=axis, dtype=logits.dtype)
    return jax.nn.softmax(logits / temperature, axis=axis)
