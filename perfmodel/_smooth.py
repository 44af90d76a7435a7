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
    """Minimum of two non-negative quantities: ``a + b - smooth_max(a, b)``."""
    if hard:
        return jnp.minimum(a, b)
    return a + b - smooth_max(a, b, sharpness=sharpness)


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

    Continuous, exact outside a window of width ``ramp`` above each integer >= 1, with
    gradient ``1 / ramp`` inside it and 0 elsewhere (like the exact step, but finite).
    """
    if hard:
        return jnp.ceil(x)
    fl = jnp.floor(x)
    s = fl + jnp.clip((x - fl) / ramp, 0.0, 1.0)
    return jnp.where(x > 0, jnp.maximum(s, 1.0), s)


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
