"""Gradient-based co-optimization of hardware, mapping and workload parameters.

Not implemented yet: design spaces (which leaves move, log/sigmoid transforms and
bounds), objectives with constraints, vmapped multi-start optax loops, hardening and
exact re-scoring, and the random/grid/evolution-strategy baselines are the subject of
the co-optimization issue. What already works for optimization today lives in the core:
`perfmodel.evaluate` is differentiable in every float leaf of a design, and
`perfmodel.fit.fit_least_squares` shows the unconstrained-parameter pattern (log for
positive values, logit for fractions) with optax.
"""

__all__: list[str] = []
