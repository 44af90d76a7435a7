"""Float parameters of a target by readable name: read and set them.

The names are those `perfmodel.sensitivity` reports (``dram.bandwidth``,
``compute_efficiency``, ``peak_flops.fp16``, a `System`'s ``pim.channels``): the dotted
path in the target, with efficiencies held as odds named as their fraction. Values are
SI; a fraction is set as a fraction (stored as odds). `set_values` is traceable, so a
design optimizer sets moving parameters inside ``jit``/``vmap``/``grad``, and a spec
file's ``[overrides]`` table sets them by the same names.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from perfmodel._errors import ModelInputError
from perfmodel._spec import closest_names


def leaf_table(hardware) -> dict[str, tuple[int, int | None, bool]]:
    """name -> (index of its leaf among the target's float leaves, element index in that
    leaf or None for a scalar, whether the leaf holds odds of a fraction)."""
    from perfmodel._sensitivity import _leaves

    params = eqx.filter(hardware, eqx.is_inexact_array)
    table = {}
    for i, ((labels, _unit, _shown, odds), leaf) in enumerate(
            zip(_leaves(hardware, params), jax.tree.leaves(params), strict=True)):
        scalar = np.ndim(leaf) == 0
        for j, name in enumerate(labels):
            table[name] = (i, None if scalar else j, odds)
    return table


def check_names(hardware, names, what: str = "parameter") -> None:
    """Raise `ModelInputError` for a name the target does not have, with the closest
    valid names."""
    table = leaf_table(hardware)
    for name in names:
        if name not in table:
            hint = closest_names(name, list(table), n=3)
            raise ModelInputError(
                f"{getattr(hardware, 'name', 'hardware')} has no {what} {name!r}"
                + (f"; did you mean {', '.join(map(repr, hint))}?" if hint else
                   f"; valid: {', '.join(sorted(table))}."))


def get_values(hardware, names) -> dict:
    """The parameters ``names`` (SI; fractions as fractions)."""
    check_names(hardware, names)
    table = leaf_table(hardware)
    leaves = jax.tree.leaves(eqx.filter(hardware, eqx.is_inexact_array))
    out = {}
    for name in names:
        i, j, odds = table[name]
        x = leaves[i] if j is None else jnp.ravel(leaves[i])[j]
        out[name] = x / (1.0 + x) if odds else x
    return out


def set_values(hardware, values: dict):
    """A copy of ``hardware`` with the parameters in ``values`` (name -> SI value, a
    fraction for an efficiency) replaced; values may be JAX tracers."""
    if not values:
        return hardware
    check_names(hardware, values)
    table = leaf_table(hardware)
    params, static = eqx.partition(hardware, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    for name, value in values.items():
        i, j, odds = table[name]
        v = jnp.asarray(value, jnp.result_type(leaves[i]))
        if odds:
            v = v / (1.0 - v)
        if j is None:
            leaves[i] = v
        else:
            leaves[i] = jnp.ravel(leaves[i]).at[j].set(v).reshape(jnp.shape(leaves[i]))
    return eqx.combine(jax.tree.unflatten(treedef, leaves), static)
