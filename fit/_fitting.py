"""Least-squares calibration of a few named parameters, with Laplace uncertainty.

A fit minimizes the mean squared log-ratio between predictions and measurements over
parameters that live in an unconstrained space (``log`` for positive quantities,
``logit`` for fractions in (0, 1)), with optax's Adam and then Gauss-Newton polishing.
Uncertainty is the Laplace approximation at the optimum: with J the Jacobian of the
log-residuals in the unconstrained space and s^2 = RSS / (n - p), ``cov = s^2 (J^T J)^-1``;
the reported relative standard error of a ``log`` parameter is sqrt(cov_ii) (delta method).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

TRANSFORMS = {
    "log": (jnp.log, jnp.exp),
    "logit": (lambda p: jnp.log(p) - jnp.log1p(-p), jax.nn.sigmoid),
}


@dataclasses.dataclass(frozen=True)
class Parameter:
    """A free parameter: its name, starting value, transform, and meaning."""

    name: str
    init: float
    transform: str = "log"   # "log" (positive) or "logit" (in (0, 1))
    unit: str = ""
    doc: str = ""


@dataclasses.dataclass
class FitResult:
    values: dict[str, float]
    rel_stderr: dict[str, float]      # standard error relative to the value (delta method)
    predictions: np.ndarray
    measurements: np.ndarray
    labels: list[str]
    steps: int

    @property
    def rel_errors(self) -> np.ndarray:
        return self.predictions / self.measurements - 1.0

    @property
    def mape(self) -> float:
        """Mean absolute percentage error, in percent."""
        return float(np.mean(np.abs(self.rel_errors)) * 100)

    def mape_of(self, mask) -> float:
        return float(np.mean(np.abs(self.rel_errors[np.asarray(mask)])) * 100)

    def table(self) -> list[dict]:
        return [{"label": l, "measured": float(m), "predicted": float(p),
                 "rel_error": float(p / m - 1)}
                for l, m, p in zip(self.labels, self.measurements, self.predictions)]


def fit_least_squares(predict: Callable[[dict], jnp.ndarray], params: list[Parameter],
                      measurements, labels=None, *, steps: int = 1500,
                      learning_rate: float = 0.05, gauss_newton_steps: int = 10) -> FitResult:
    """Fit ``params`` so that ``predict(values) ~ measurements`` in log space.

    Main arguments:
        predict: pure function from a dict of parameter values (SI) to predictions, [n].
        params: the free parameters.
        measurements: [n] positive measured values.

    Other arguments:
        steps, learning_rate: Adam iterations on the unconstrained parameters.
        gauss_newton_steps: damped Gauss-Newton refinements after Adam.
    """
    y = jnp.log(jnp.asarray(measurements, float))

    def unpack(z):
        return {p.name: TRANSFORMS[p.transform][1](z[i]) for i, p in enumerate(params)}

    def residuals(z):
        return jnp.log(predict(unpack(z))) - y

    def loss(z):
        r = residuals(z)
        return jnp.mean(r * r)

    z0 = jnp.asarray([float(TRANSFORMS[p.transform][0](jnp.asarray(p.init))) for p in params])
    opt = optax.adam(learning_rate)

    @jax.jit
    def run(z):
        def body(carry, _):
            z, state = carry
            g = jax.grad(loss)(z)
            upd, state = opt.update(g, state, z)
            return (optax.apply_updates(z, upd), state), None

        (z, _), _ = jax.lax.scan(body, (z, opt.init(z)), None, length=steps)
        return z

    z = run(z0)
    jac = jax.jit(jax.jacfwd(residuals))
    res = jax.jit(residuals)
    for _ in range(gauss_newton_steps):  # Levenberg-style damping keeps it stable
        J, r = jac(z), res(z)
        H = J.T @ J
        step = jnp.linalg.solve(H + 1e-6 * jnp.trace(H) / len(params) * jnp.eye(len(params)),
                                J.T @ r)
        z_new = z - step
        if float(loss(z_new)) < float(loss(z)):
            z = z_new
    J, r = np.asarray(jac(z)), np.asarray(res(z))
    n, p = len(r), len(params)
    s2 = float(r @ r) / max(n - p, 1)
    cov = s2 * np.linalg.pinv(J.T @ J)
    values = {k: float(v) for k, v in unpack(z).items()}
    rel = {}
    for i, prm in enumerate(params):
        sd = float(np.sqrt(max(cov[i, i], 0.0)))
        # log: d value / value = dz;  logit: d value / value = (1 - value) dz
        rel[prm.name] = sd if prm.transform == "log" else sd * (1 - values[prm.name])
    pred = np.asarray(predict(unpack(z)))
    return FitResult(values=values, rel_stderr=rel, predictions=pred,
                     measurements=np.asarray(measurements, float),
                     labels=list(labels) if labels is not None else [str(i) for i in range(n)],
                     steps=steps)
