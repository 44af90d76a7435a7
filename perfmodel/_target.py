"""`AbstractTarget`: what every hardware family provides."""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import numpy as np

from perfmodel._errors import ModelInputError
from perfmodel._ops import Ops
from perfmodel._report import Cost, report_from_cost


class AbstractTarget(eqx.Module):
    """A hardware design: float leaves are its continuous parameters (SI units), static
    fields its structure. Concrete families (`perfmodel.hardware.XPU`, ...) are final.

    A family implements `evaluate` (pure, jit/vmap/grad-safe) and `check` (eager
    validation with clear errors; only called on concrete values).
    """

    name: eqx.AbstractVar[str]
    bibtex: eqx.AbstractVar[str]

    @abc.abstractmethod
    def evaluate(self, ops: Ops, mapping=None, *, hard: bool = False):
        """Return a `perfmodel.Report` for ``ops`` on this design."""

    def check(self, ops: Ops | None = None) -> None:
        """Raise `ModelInputError` for invalid parameters or an ops table that cannot run
        here (e.g. it does not fit and no offload tier exists). Default: every float leaf
        must be finite and positive."""
        check_positive_leaves(self, type(self).__name__)

    def serving_capacity(self):
        """Bytes of device memory that hold the weights and the KV cache, for the serving
        engine's admission rule (`perfmodel.serve`); None where the family has its own
        rule for what does not fit (an offload tier, a spill term, or an error from
        `check`). Default: None."""
        return None

    def default_mapping(self):
        """The mapping `evaluate` uses when given None, as an explicit pytree whose float
        leaves an optimizer may move; None for a family without mapping choices."""
        return None


class AbstractUnit(AbstractTarget):
    """A target that runs every row itself (an xPU, a PIM device, a CIM chip...).

    It provides `cost` (per-row time and energy terms); `evaluate` combines them with
    `perfmodel.roofline_report`. A heterogeneous `perfmodel.hardware.System` places rows
    on several units using the same `cost`.
    """

    @abc.abstractmethod
    def cost(self, ops: Ops, mapping=None, *, hard: bool = False) -> Cost:
        """Per-row, per-instance `Cost` of ``ops`` on this unit (pure, traceable)."""

    def evaluate(self, ops: Ops, mapping=None, *, hard: bool = False):
        return report_from_cost(ops, self.cost(ops, mapping, hard=hard), hard=hard,
                                target=self.name)


def _leaf_paths(tree):
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    for path, leaf in flat:
        yield jax.tree_util.keystr(path).lstrip("."), leaf


def check_positive_leaves(tree, label: str) -> None:
    """Every float leaf of ``tree`` finite and > 0."""
    for path, leaf in _leaf_paths(tree):
        if is_traced(leaf):
            continue
        arr = np.asarray(leaf)
        if not np.issubdtype(arr.dtype, np.floating):
            continue
        lo_ok = arr > 0
        if not np.all(np.isfinite(arr)) or not np.all(lo_ok):
            bad = float(arr[~(np.isfinite(arr) & lo_ok)].ravel()[0])
            name = f"{label}.{path}" if path else label
            raise ModelInputError(f"{name} = {bad:.6g} is invalid; it must be finite and > 0.")


def check_capacity(ops: Ops, capacity, field: str, hint: str) -> None:
    """Raise `ModelInputError` when the weights + KV cache of ``ops`` exceed ``capacity``
    (bytes) of the memory named ``field``; ``hint`` says what to change. Skipped for
    traced values (checks are eager)."""
    if is_traced(ops.weight_footprint) or is_traced(ops.kv_footprint) or is_traced(capacity):
        return
    need = float(np.max(np.asarray(ops.weight_footprint + ops.kv_footprint)))
    have = float(np.min(np.asarray(capacity)))
    if need > have:
        raise ModelInputError(
            f"the workload needs {format_bytes(need)} of weights + KV cache but {field} is "
            f"{format_bytes(have)}; {hint}.")


def is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def any_traced(tree) -> bool:
    return any(is_traced(leaf) for leaf in jax.tree_util.tree_leaves(tree))


def format_bytes(b: float) -> str:
    if not math.isfinite(b):
        return str(b)
    for unit, f in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(b) >= f:
            return f"{b / f:.3g} {unit}"
    return f"{b:.3g} B"
