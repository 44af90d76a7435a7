"""Design spaces: which inputs of a design move, within which bounds, how they are
relaxed for the gradient and hardened for scoring.

A `Space` names moving inputs by path:

- ``hardware.<name>``: a float parameter of the target, by the name
  `perfmodel.sensitivity` reports (``dram.bandwidth``, ``mac_lanes``, ``dram.efficiency``
  as a fraction, a `System` unit's ``pim.channels``); SI units;
- ``mapping.<field>``: a float leaf of the target's mapping (``k_split_log2``,
  ``group_size``, ``wavelengths``);
- ``workload.<knob>``: an argument of the workload's phase builder (``wbits``,
  ``abits``, ``kvbits``, ``batch``, ``context``...), or one weight group's bits
  (``wbits.attention``, ``wbits.ffn``: mixed precision, `LLM.group_bits`).

Each has a `Dim` that maps an unconstrained-or-box coordinate ``u`` to the value:

==============  ==========================  =============================================
dim             coordinate u                value
==============  ==========================  =============================================
Real(log)       [0, 1] (projected)          lo (hi / lo)^u
Real(linear)    [0, 1] (projected)          lo + (hi - lo) u
Real(logit)     unbounded                   lo + (hi - lo) sigmoid(u)
Integer         [0, 1] (projected)          as Real; hardened to the nearest integer
PowerOfTwo      [0, 1] (projected)          2^e, e over [log2 lo, log2 hi]; hardened to
                                            an integer e
Choice(values)  k logits                    relaxed: softmax(u / T) . values; hardened:
                                            the value of the largest logit
==============  ==========================  =============================================

Box coordinates keep every value inside its bounds (gradient steps are projected back),
so an optimum at a bound is reached exactly; all coordinates have comparable scales, so
one learning rate fits every dim.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from perfmodel._errors import ModelInputError
from perfmodel._paths import leaf_table, set_values
from perfmodel._spec import closest_names

GROUPS = ("hardware", "mapping", "workload")
#: Workload knobs a dim may move (arguments of the phase builders).
KNOBS = ("batch", "prompt", "context", "generate", "wbits", "abits", "kvbits",
         "wbits.attention", "wbits.ffn")


class Dim(eqx.Module):
    """One moving input: its coordinate's size, relaxed value, hardening and bounds."""

    @property
    def size(self) -> int:
        """Length of its coordinate (1; a Choice has one logit per value)."""
        return 1

    def value(self, u, temperature=1.0):
        raise NotImplementedError

    def harden(self, u):
        """The coordinate of the nearest valid discrete value (identity for reals)."""
        return u

    def hard_value(self, u):
        """The hardened value: exactly a valid discrete value."""
        return self.value(self.harden(u))

    def project(self, u):
        return jnp.clip(u, 0.0, 1.0)

    def encode(self, x) -> np.ndarray:
        """The coordinate of a value (a start at a known design)."""
        raise NotImplementedError

    def sample(self, key, n: int):
        return jax.random.uniform(key, (n, self.size))

    def describe(self) -> str:
        return type(self).__name__


def _check_bounds(lo, hi, what):
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        raise ModelInputError(f"{what}: low = {lo!r} must be below high = {hi!r} (both "
                              "finite).")


class _Box(Dim):
    """A value in [lo, hi] over a box coordinate (or a logit one); `Real` and `Integer`
    differ in hardening only."""

    lo: eqx.AbstractVar[float]
    hi: eqx.AbstractVar[float]
    scale: eqx.AbstractVar[str]

    def __check_init__(self):
        _check_bounds(self.lo, self.hi, type(self).__name__)
        if self.scale not in ("log", "linear", "logit"):
            raise ModelInputError(f"scale = {self.scale!r} is invalid; valid: log, linear, "
                                  "logit.")
        if self.scale == "log" and self.lo <= 0:
            raise ModelInputError(f"a log-scaled dim needs low > 0, got {self.lo!r}.")

    def value(self, u, temperature=1.0):
        u = u[..., 0]
        if self.scale == "log":
            return self.lo * (self.hi / self.lo) ** u
        if self.scale == "logit":
            return self.lo + (self.hi - self.lo) * jax.nn.sigmoid(u)
        return self.lo + (self.hi - self.lo) * u

    def project(self, u):
        return u if self.scale == "logit" else jnp.clip(u, 0.0, 1.0)

    def encode(self, x):
        x = float(np.clip(x, self.lo, self.hi))
        if self.scale == "log":
            return np.array([math.log(x / self.lo) / math.log(self.hi / self.lo)])
        t = (x - self.lo) / (self.hi - self.lo)
        if self.scale == "logit":
            t = min(max(t, 1e-6), 1 - 1e-6)
            return np.array([math.log(t / (1 - t))])
        return np.array([t])

    def sample(self, key, n):
        if self.scale == "logit":
            return jax.random.logistic(key, (n, 1))
        return jax.random.uniform(key, (n, 1))

    def describe(self):
        return f"{self.scale} in [{self.lo:g}, {self.hi:g}]"


class Real(_Box):
    """A continuous value in [lo, hi]: ``scale`` "log" (positive scales: bandwidths,
    clocks, energies), "linear", or "logit" (fractions: an unbounded coordinate through
    a sigmoid, never at a bound)."""

    lo: float = eqx.field(static=True, default=0.0)
    hi: float = eqx.field(static=True, default=1.0)
    scale: str = eqx.field(static=True, default="log")


class Integer(_Box):
    """An integer in [lo, hi] (unit counts, bit-widths, batch), relaxed to the reals
    between; ``scale`` "linear" (default) or "log"."""

    lo: float = eqx.field(static=True, default=0.0)
    hi: float = eqx.field(static=True, default=1.0)
    scale: str = eqx.field(static=True, default="linear")

    def __check_init__(self):
        super().__check_init__()
        if self.scale == "logit":
            raise ModelInputError("an Integer dim's scale must be linear or log.")
        if self.lo != int(self.lo) or self.hi != int(self.hi):
            raise ModelInputError(f"Integer bounds must be whole numbers, got "
                                  f"[{self.lo!r}, {self.hi!r}].")

    def hard_value(self, u):
        return jnp.round(self.value(u))

    def harden(self, u):
        x = jnp.round(self.value(u))
        if self.scale == "log":
            return (jnp.log(x / self.lo) / math.log(self.hi / self.lo))[..., None]
        return ((x - self.lo) / (self.hi - self.lo))[..., None]

    def describe(self):
        return f"integer in [{self.lo:g}, {self.hi:g}]"


class PowerOfTwo(Dim):
    """A power of two in [lo, hi] (both powers of two): relaxed over the exponent."""

    lo: float = eqx.field(static=True, default=1.0)
    hi: float = eqx.field(static=True, default=2.0)

    def __check_init__(self):
        _check_bounds(self.lo, self.hi, "PowerOfTwo")
        for v in (self.lo, self.hi):
            if v <= 0 or not math.log2(v).is_integer():
                raise ModelInputError(f"PowerOfTwo bounds must be powers of two, got {v!r}.")

    @property
    def _span(self):
        return math.log2(self.lo), math.log2(self.hi)

    def value(self, u, temperature=1.0):
        a, b = self._span
        return 2.0 ** (a + (b - a) * u[..., 0])

    def harden(self, u):
        a, b = self._span
        e = jnp.round(a + (b - a) * u)
        return (e - a) / (b - a)

    def hard_value(self, u):
        a, b = self._span
        return 2.0 ** jnp.round(a + (b - a) * u[..., 0])

    def encode(self, x):
        a, b = self._span
        return np.array([(math.log2(float(np.clip(x, self.lo, self.hi))) - a) / (b - a)])

    def describe(self):
        return f"power of two in [{self.lo:g}, {self.hi:g}]"


class Choice(Dim):
    """One of ``values`` (numbers): k logits, relaxed to the softmax-weighted mean of the
    values at temperature T (annealed by the optimizer), hardened to the largest."""

    values: tuple = eqx.field(static=True)

    def __init__(self, values):
        values = tuple(float(v) for v in values)
        if len(values) < 2:
            raise ModelInputError(f"a Choice needs at least two values, got {values!r}.")
        self.values = values

    @property
    def size(self) -> int:
        return len(self.values)

    def value(self, u, temperature=1.0):
        w = jax.nn.softmax(u / temperature, axis=-1)
        return w @ jnp.asarray(self.values, w.dtype)

    def harden(self, u):
        return jax.nn.one_hot(jnp.argmax(u, axis=-1), self.size, dtype=u.dtype) * 20.0

    def hard_value(self, u):
        return jnp.asarray(self.values, u.dtype)[jnp.argmax(u, axis=-1)]

    def project(self, u):
        return u

    def encode(self, x):
        i = int(np.argmin(np.abs(np.asarray(self.values) - float(x))))
        return np.eye(self.size)[i] * 4.0

    def sample(self, key, n):
        return jax.random.normal(key, (n, self.size))

    def describe(self):
        return f"one of {', '.join(f'{v:g}' for v in self.values)}"


@dataclasses.dataclass(frozen=True)
class Space:
    """The moving inputs of a design and everything else held fixed.

    **Main arguments:**

    - ``hardware``: the starting design (a preset or any target); its other parameters
      stay fixed.
    - ``dims``: path -> `Dim` (``"hardware.mac_lanes": Integer(8, 64)``,
      ``"workload.wbits": Integer(2, 16)``, ``"mapping.k_split_log2": Integer(0, 4)``).

    **Other arguments:** ``mapping`` (the starting mapping; default: the target's own),
    ``name`` (for reports and written specs).
    """

    hardware: object
    dims: dict
    mapping: object = None
    name: str = ""

    def __post_init__(self):
        if not self.dims:
            raise ModelInputError(f"space {self.name or ''!r} moves nothing; give at least one "
                                  "dim (e.g. 'hardware.<parameter>': Real(lo, hi)).")
        if self.mapping is None:
            object.__setattr__(self, "mapping", self.hardware.default_mapping())
        table = leaf_table(self.hardware)
        mfields = self.mapping_fields()
        for path, dim in self.dims.items():
            if not isinstance(dim, Dim):
                raise ModelInputError(f"dim {path!r} must be a perfmodel.opt Dim (Real, "
                                      f"Integer, PowerOfTwo, Choice), not {dim!r}.")
            group, _, name = path.partition(".")
            if group not in GROUPS or not name:
                raise ModelInputError(f"dim path {path!r} must start with one of "
                                      f"{', '.join(g + '.' for g in GROUPS)}.")
            valid = (list(table) if group == "hardware" else
                     mfields if group == "mapping" else list(KNOBS))
            if name not in valid:
                fixed = group == "hardware" and _is_static(self.hardware, name)
                hint = closest_names(name, valid, n=3)
                raise ModelInputError(
                    f"dim {path!r}: "
                    + (f"{name!r} is fixed structure of {self.hardware.name}, not a "
                       "parameter; it cannot move" if fixed else
                       f"{self.hardware.name if group != 'workload' else 'the workload'} "
                       f"has no {group} input {name!r}")
                    + (f"; closest valid paths: "
                       f"{', '.join(repr(group + '.' + h) for h in hint)}." if hint else
                       f"; valid: {', '.join(group + '.' + v for v in valid) or 'none'}."))

    # ------------------------------------------------------------------ structure
    def mapping_fields(self) -> list[str]:
        if self.mapping is None:
            return []
        return [f.name for f in dataclasses.fields(self.mapping)
                if eqx.is_inexact_array(getattr(self.mapping, f.name))]

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(self.dims)

    @property
    def size(self) -> int:
        """Length of the coordinate vector."""
        return sum(d.size for d in self.dims.values())

    def _slices(self):
        out, i = {}, 0
        for path, dim in self.dims.items():
            out[path] = slice(i, i + dim.size)
            i += dim.size
        return out

    # ------------------------------------------------------------------ coordinates
    def values(self, u, *, temperature=1.0, hard: bool = False) -> dict:
        """path -> value of one coordinate vector ``u`` (relaxed, or hardened)."""
        out = {}
        for path, sl in self._slices().items():
            dim = self.dims[path]
            ui = u[..., sl]
            out[path] = dim.hard_value(ui) if hard else dim.value(ui, temperature)
        return out

    def harden(self, u):
        return jnp.concatenate([self.dims[p].harden(u[..., sl])
                                for p, sl in self._slices().items()], axis=-1)

    def project(self, u):
        return jnp.concatenate([self.dims[p].project(u[..., sl])
                                for p, sl in self._slices().items()], axis=-1)

    def encode(self, values: dict) -> np.ndarray:
        """The coordinate vector of given values (missing paths: the starting design)."""
        start = self.start_values()
        return np.concatenate([self.dims[p].encode(values.get(p, start[p]))
                               for p in self.dims])

    def start_values(self) -> dict:
        """path -> the starting design's value (the workload's knob defaults are the
        midpoint of a dim whose knob the objective's mix does not set)."""
        from perfmodel._paths import get_values

        out = {}
        hw_names = [p.split(".", 1)[1] for p in self.dims if p.startswith("hardware.")]
        hv = get_values(self.hardware, hw_names)
        for path, dim in self.dims.items():
            group, _, name = path.partition(".")
            if group == "hardware":
                out[path] = float(np.asarray(hv[name]))
            elif group == "mapping":
                out[path] = float(np.asarray(getattr(self.mapping, name)))
            else:
                out[path] = float(np.asarray(dim.value(jnp.full((dim.size,), 0.5))))
        return out

    def sample(self, key, n: int):
        keys = jax.random.split(key, len(self.dims))
        return jnp.concatenate([d.sample(k, n) for d, k in zip(self.dims.values(), keys)],
                               axis=-1)

    # ------------------------------------------------------------------ designs
    def design(self, u, *, temperature=1.0, hard: bool = False):
        """(hardware, mapping, workload knobs) of coordinate vector ``u`` (traceable)."""
        vals = self.values(u, temperature=temperature, hard=hard)
        hw = set_values(self.hardware, {p.split(".", 1)[1]: v for p, v in vals.items()
                                        if p.startswith("hardware.")})
        mapping = self.mapping
        for p, v in vals.items():
            if p.startswith("mapping."):
                field = p.split(".", 1)[1]
                mapping = eqx.tree_at(lambda m, f=field: getattr(m, f), mapping,
                                      jnp.asarray(v, jnp.result_type(getattr(mapping, field))))
        knobs = {p.split(".", 1)[1]: v for p, v in vals.items() if p.startswith("workload.")}
        groups = {k.split(".", 1)[1]: knobs.pop(k) for k in list(knobs) if "." in k}
        if groups:  # mixed precision: the weight bits per group (`LLM.group_bits`)
            knobs["wbits"] = groups
        return hw, mapping, knobs

    def describe(self) -> list[str]:
        return [f"{p}: {d.describe()}" for p, d in self.dims.items()]


def _is_static(hardware, name: str) -> bool:
    obj = hardware
    for part in name.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return not eqx.is_inexact_array(obj)


# ---------------------------------------------------------------------- TOML spaces
_DIM_TYPES = {"real": Real, "integer": Integer, "power_of_two": PowerOfTwo,
              "choice": Choice}


def dim_from_dict(path: str, d: dict) -> Dim:
    """A `Dim` from a TOML table: ``{type = "real", low = 1e11, high = 4e12, scale =
    "log"}``, ``{type = "integer", low = 2, high = 16}``, ``{type = "power_of_two", ...}``,
    ``{type = "choice", values = [...]}``."""
    kind = d.get("type", "real")
    if kind not in _DIM_TYPES:
        raise ModelInputError(f"dims.{path!r}.type = {kind!r} is invalid; valid: "
                              f"{', '.join(_DIM_TYPES)}.")
    unknown = set(d) - {"type", "low", "high", "scale", "values"}
    if unknown:
        raise ModelInputError(f"dims.{path!r} has unknown key {sorted(unknown)[0]!r}; valid: "
                              "type, low, high, scale, values.")
    if kind == "choice":
        if "values" not in d:
            raise ModelInputError(f"dims.{path!r}: a choice needs values = [...].")
        return Choice(d["values"])
    for k in ("low", "high"):
        if not isinstance(d.get(k), (int, float)) or isinstance(d.get(k), bool):
            raise ModelInputError(f"dims.{path!r}.{k} must be a number.")
    kw = {"scale": d["scale"]} if "scale" in d else {}
    if kind == "power_of_two":
        return PowerOfTwo(lo=float(d["low"]), hi=float(d["high"]))
    return _DIM_TYPES[kind](lo=float(d["low"]), hi=float(d["high"]), **kw)


def load_space_spec(path) -> dict:
    """Parse a space TOML file (docs/codesign.md) into a dict of its tables."""
    from perfmodel._spec import load_spec_file

    return load_spec_file(pathlib.Path(path))
