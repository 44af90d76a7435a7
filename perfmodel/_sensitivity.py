"""`sensitivity`: elasticities of a `Report` metric with respect to every float parameter
of a target, by readable name and in readable units, ranked.

The elasticity of a metric ``M`` with respect to a parameter ``p`` is

    e_p = d log M / d log p = (p / M) dM/dp,

the percentage change of ``M`` per percent change of ``p`` (unit-free, so parameters of
different units rank against each other). Efficiencies live in the pytree as odds
``o = f / (1 - f)``; they are reported as the fraction ``f``, with

    e_f = d log M / d log f = e_o * d log o / d log f = e_o / (1 - f).

All elasticities come from one reverse-mode gradient of ``M`` through
`perfmodel.evaluate` (jitted), with respect to every inexact leaf of the target.
"""

from __future__ import annotations

import dataclasses
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import GetAttrKey, SequenceKey

from perfmodel._errors import ModelInputError
from perfmodel._evaluate import check_ops, evaluate
from perfmodel._ops import Ops
from perfmodel._report import Report
from perfmodel._target import AbstractTarget

# Readable units: (label, SI value of one readable unit).
_GB_S, _GB, _MB, _KB, _B = ("GB/s", 1e9), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1.0)
_PJ_BIT, _FJ_BIT = ("pJ/bit", 1e-12), ("fJ/bit", 1e-15)
_PJ_FLOP, _PJ_MAC, _PJ_OP = ("pJ/FLOP", 1e-12), ("pJ/MAC", 1e-12), ("pJ/op", 1e-12)
_US, _NS = ("us", 1e-6), ("ns", 1e-9)
_MHZ, _GHZ, _GBIT_S = ("MHz", 1e6), ("GHz", 1e9), ("Gbit/s", 1e9)
_TFLOPS, _GFLOPS = ("TFLOP/s", 1e12), ("GFLOP/s", 1e9)
_W, _MM2, _UM2 = ("W", 1.0), ("mm^2", 1e-6), ("um^2", 1e-12)
_UM, _MM, _DB = ("um", 1e-6), ("mm", 1e-3), ("dB", 1.0)
_COUNT, _BITS, _FRACTION = ("", 1.0), ("bits", 1.0), ("fraction", 1.0)

#: Leaf field name -> readable unit, for every family's float leaves (SI inside). The
#: units follow the spec files' suffixes (docs/spec_format.md), one per quantity.
UNITS: dict[str, tuple[str, float]] = {
    # xPU (hardware/_xpu.py) and its MemoryLevel
    "peak_flops": _TFLOPS, "units": _COUNT, "tile_m": _COUNT, "tile_n": _COUNT,
    "l2_reuse": _COUNT, "k_half": _COUNT, "energy_per_flop": _PJ_FLOP,
    "bandwidth": _GB_S, "capacity": _GB, "energy_per_bit": _PJ_BIT,
    "link_bandwidth": _GB_S, "link_latency": _US, "link_energy_per_bit": _PJ_BIT,
    "static_power": _W, "tdp": _W, "launch_overhead": _US, "dram_latency": _US,
    # eager framework (hardware/_framework.py)
    "host_op_time": _US,
    # DRAM-PIM (hardware/_dram_pim.py)
    "channels": _COUNT, "banks": _COUNT, "bank_groups": _COUNT, "units_per_site": _COUNT,
    "mac_lanes": _COUNT, "pim_clock": _MHZ, "column_bits": _BITS, "tccd": _NS,
    "tsv_count": _COUNT, "tsv_rate": _GBIT_S, "row_bytes": _B, "trcd": _NS, "trp": _NS,
    "trfc": _NS, "trefi": _NS, "tokens_per_pass": _COUNT, "channel_bandwidth": _GB_S,
    "stacks": _COUNT, "cell_activate_energy": _PJ_BIT, "cell_read_energy": _PJ_BIT,
    "bank_group_energy": _PJ_BIT, "global_io_energy": _PJ_BIT, "tsv_energy": _PJ_BIT,
    "interposer_energy": _PJ_BIT, "mac_energy": _PJ_MAC, "host_flops": _GFLOPS,
    "host_bandwidth": _GB_S, "host_energy_per_flop": _PJ_FLOP, "area": _MM2,
    # SRAM compute-in-memory (hardware/_cim.py)
    "macros": _COUNT, "rows": _COUNT, "columns": _COUNT, "cell_bits": _BITS,
    "input_bits_per_cycle": _BITS, "columns_per_readout": _COUNT,
    "write_rows_per_cycle": _COUNT, "clock": _MHZ, "cell_energy": ("fJ/cell/cycle", 1e-15),
    "column_energy": ("fJ/readout", 1e-15), "vector_throughput": ("GOP/s", 1e9),
    "vector_energy": _PJ_OP, "dram_bandwidth": _GB_S, "dram_energy": _PJ_BIT,
    "macro_area": _MM2, "sram_bytes": _KB, "sram_bit_area": ("um^2/bit", 1e-12),
    "periphery_area": _MM2,
    # SRAM lookup tables (hardware/_lut.py)
    "lanes": _COUNT, "group_size": _COUNT, "entry_bits": _BITS, "table_capacity": _KB,
    "spill_bandwidth": _GB_S, "spill_energy_per_bit": _PJ_BIT, "core_bandwidth": _GB_S,
    "convert_ops": ("ops", 1.0), "dequant_ops": ("ops", 1.0), "dispatch_overhead": _US,
    "energy_per_lookup": ("pJ/lookup", 1e-12), "energy_per_add": ("pJ/add", 1e-12),
    "base_area": _MM2, "adder_area": _UM2, "mux_area_per_bit": ("um^2/bit", 1e-12),
    "register_area_per_bit": ("um^2/bit", 1e-12), "multiplier_area": _UM2,
    # optical (hardware/_optical.py)
    "modulation_rate": _GHZ, "comb_lines": _COUNT, "cols": _COUNT, "arrays": _COUNT,
    "dac_bits": _BITS, "adc_bits": _BITS, "waveguide_loss": ("dB/cm", 100.0),
    "waveguide_length": _MM, "coupler_loss": _DB, "modulator_loss": _DB, "drop_loss": _DB,
    "ring_through_loss": ("dB/ring", 1.0), "cell_loss": _DB,
    "split_excess_loss": ("dB/stage", 1.0), "pd_sensitivity": ("uW", 1e-6),
    "pd_responsivity": ("A/W", 1.0), "tia_noise": ("pA/sqrt(Hz)", 1e-12),
    "modulator_energy": ("pJ/symbol", 1e-12), "receiver_energy": ("pJ/sample", 1e-12),
    "dac_fom": ("fJ/step", 1e-15), "adc_fom": ("fJ/step", 1e-15), "weight_capacity": _GB,
    "write_rate": ("Gcells/s", 1e9), "memory_bandwidth": _GB_S, "memory_energy": _PJ_BIT,
    "electronic_flops": _GFLOPS, "electronic_energy": _PJ_FLOP, "cell_area": _UM2,
    "converter_area": _UM2,
    # hybrid-bonded 3D (hardware/_bonded3d.py)
    "bond_pitch": _UM, "bonded_area": _MM2, "bond_rate": _GBIT_S,
    "bond_energy_per_bit": _PJ_BIT, "bond_cell_area": _UM2, "array_bandwidth": _GB_S,
    "dram_capacity": _GB, "array_energy_per_bit": _PJ_BIT, "mac_units": _COUNT,
    "slice_bits": _BITS, "energy_per_slice_mac": _PJ_MAC, "logic_area": _MM2,
    "host_power": _W, "power_density_limit": ("W/cm^2", 1e4), "routing_skew": _COUNT,
    "cache_bits": _BITS,
    # heterogeneous systems (hardware/_system.py)
    "op_per_byte_threshold": ("FLOP/B", 1.0),
}

#: (class name or parent field, leaf field) -> unit, where the field name alone is
#: ambiguous across families or memory levels.
UNIT_OVERRIDES: dict[tuple[str, str], tuple[str, float]] = {
    ("CIM", "write_energy"): _FJ_BIT,                         # per streamed weight bit
    ("OpticalAccelerator", "write_energy"): ("pJ/cell", 1e-12),  # per cell programmed
    ("l2", "capacity"): _MB,                                  # on-chip cache
}


def _unit(owner, parent: str, field: str) -> tuple[str, float]:
    for key in ((type(owner).__name__, field), (parent, field)):
        if key in UNIT_OVERRIDES:
            return UNIT_OVERRIDES[key]
    return UNITS.get(field, ("SI", 1.0))


def _fraction_name(owner, field: str) -> str:
    """The readable name of an odds leaf: the owner's property that returns its fraction
    (``compute_odds`` -> ``compute_efficiency``, ``acceptance_odds`` -> ``acceptance``,
    ``odds`` -> ``efficiency``), else ``<stem>_efficiency``."""
    if field == "odds":
        return "efficiency"
    stem = field[: -len("_odds")]
    for cand in (f"{stem}_efficiency", f"{stem}_fraction", stem):
        if isinstance(getattr(type(owner), cand, None), property):
            return cand
    return f"{stem}_efficiency"


def _describe(hardware, path) -> tuple[list[str], object, str, str]:
    """(names of the leaf's parents, module holding the leaf, parent field, leaf field)
    from its pytree path. A `System`'s ``units[i]`` is named by its unit name."""
    parts, obj, holder, parent, field = [], hardware, hardware, "", ""
    for key in path:
        if isinstance(key, GetAttrKey):
            holder, obj = obj, getattr(obj, key.name)
            parent, field = field, key.name
            parts.append(key.name)
        elif isinstance(key, SequenceKey):
            unit_names = getattr(holder, "unit_names", None)
            if parts and parts[-1] == "units" and unit_names is not None:
                parts[-1] = field = unit_names[key.idx]
            else:
                parts[-1] += f"[{key.idx}]"
            obj = obj[key.idx]
        else:  # a dict entry
            holder, obj = obj, obj[key.key]
            parent, field = field, str(key.key)
            parts.append(str(key.key))
    return parts[:-1], holder, parent, field


def _leaves(hardware, params):
    """Per float leaf of ``params`` (the inexact part of ``hardware``), in flatten order:
    (readable name of each of its elements, unit, value in that unit, whether the leaf
    is an efficiency held as odds and shown as its fraction)."""
    out = []
    for path, p in jax.tree_util.tree_flatten_with_path(params)[0]:
        parents, owner, parent, field = _describe(hardware, path)
        p = np.asarray(p, dtype=np.float64)
        odds = field.endswith("odds")
        if odds:
            name, (unit, _) = _fraction_name(owner, field), _FRACTION
            shown = p / (1.0 + p)                 # f = o / (1 + o)
        else:
            unit, per_unit = _unit(owner, parent, field)
            name, shown = field, p / per_unit
        label = ".".join(parents + [name])
        dtypes = getattr(owner, "datatypes", ())
        if p.ndim == 0:
            labels = [label]
        elif p.ndim == 1 and len(dtypes) == p.size:
            labels = [f"{label}.{d}" for d in dtypes]          # peak_flops.fp16
        else:
            labels = [f"{label}[{', '.join(map(str, np.unravel_index(k, p.shape)))}]"
                      for k in range(p.size)]
        out.append((labels, unit, shown, odds))
    return out


def parameter_names(hardware) -> list[str]:
    """Readable names of every scalar float parameter of ``hardware``, in the order of
    ``jax.tree.leaves(eqx.filter(hardware, eqx.is_inexact_array))`` and their elements
    (the names `sensitivity` reports)."""
    params = eqx.filter(hardware, eqx.is_inexact_array)
    return [name for labels, *_ in _leaves(hardware, params) for name in labels]


def metric_names() -> list[str]:
    """The scalar `Report` metrics: fields annotated as scalars (``latency``, ``energy``,
    ``tokens``, ``static_energy``, ``area``) and every property (``tokens_per_s``,
    ``energy_per_token``, ``edp``, ``power``, ...)."""
    fields = [f.name for f in dataclasses.fields(Report)  # Float[Array, ""] (| None)
              if not f.metadata.get("static") and re.search(r"Array, ('|\")\1\]", str(f.type))]
    props = [n for n, v in vars(Report).items() if isinstance(v, property)]
    return sorted(set(fields + props))


@eqx.filter_jit
def _value_and_grad(params, static, ops, mapping, metric: str, hard: bool):
    def fn(p):
        rep = evaluate(eqx.combine(p, static), ops, mapping, hard=hard)
        value = getattr(rep, metric)
        if value is None or jnp.ndim(value) != 0:
            what = (f"not modelled by {rep.target or 'this target'} (None)" if value is None
                    else f"shaped {tuple(jnp.shape(value))}, not a scalar")
            raise ModelInputError(f"metric {metric!r} is {what}; choose another of: "
                                  f"{', '.join(n for n in metric_names() if n != metric)}.")
        return value

    return jax.value_and_grad(fn)(params)


def sensitivity(hardware: AbstractTarget, ops: Ops, metric: str = "latency", mapping=None,
                *, hard: bool = False) -> list[dict]:
    """Elasticity ``d log(metric) / d log(parameter)`` of a `Report` metric with respect
    to every float parameter of ``hardware``, ranked by magnitude.

    ``e = -1`` means 1 % more of the parameter gives 1 % less of the metric (e.g. the
    latency of a purely bandwidth-bound step against DRAM bandwidth); ``e = 0``, that the
    parameter does not act on this workload. Efficiencies (held as odds inside the model)
    are reported and differentiated as fractions: ``e_f = e_odds / (1 - f)``. One jitted
    reverse-mode gradient through `perfmodel.evaluate` gives every elasticity.

    **Main arguments:**

    - ``hardware``: a target (`perfmodel.hardware.preset(...)`, a loaded spec file, or
      any `AbstractTarget`, including a heterogeneous `System`).
    - ``ops``: the workload phase (e.g. ``workload.decode(batch, context)``).
    - ``metric``: a scalar field or property of `Report`: ``latency`` (default),
      ``energy``, ``tokens_per_s``, ``energy_per_token``, ``dynamic_energy_per_token``,
      ``edp``, ``power``, ``area`` (targets with an area model); see `metric_names()`.

    **Other arguments:**

    - ``mapping``: the target's mapping (None: its default); held fixed.
    - ``hard``: differentiate the exact model (``True``) instead of the smooth one.

    **Returns** a list of dicts, one per scalar parameter (each element of an array leaf:
    ``peak_flops.fp16``), sorted by ``|elasticity|`` descending, so parameters that do
    not act (elasticity 0) come last:

    - ``name``: dotted path in the target (``dram.bandwidth``, ``compute_efficiency``,
      ``dram.efficiency``; a `System`'s units by their names: ``pim.channels``), the
      path `eqx.tree_at` reaches, with ``*_odds`` leaves named as their fraction;
    - ``value``: the parameter in ``unit`` (efficiencies as fractions in (0, 1));
    - ``unit``: a readable unit (``GB/s``, ``pJ/bit``, ``us``, ``fraction``; ``""`` for
      counts; ``"SI"`` for a leaf of a user-defined target this module does not know);
    - ``elasticity``: ``d log(metric) / d log(parameter)``, a float.

    Raises `ModelInputError` for an unknown or non-scalar metric, a metric that is zero
    (no elasticity), or invalid hardware / ops (the checks of `evaluate`).
    """
    if not isinstance(hardware, AbstractTarget):
        raise ModelInputError(
            f"hardware must be a perfmodel target (e.g. perfmodel.hardware.preset('a100-80gb')),"
            f" not {type(hardware).__name__}.")
    if not isinstance(ops, Ops):
        raise ModelInputError(f"ops must be a perfmodel.Ops table (e.g. workload.decode(...)),"
                              f" not {type(ops).__name__}.")
    if metric not in metric_names():
        raise ModelInputError(f"metric {metric!r} is not a scalar Report metric; valid: "
                              f"{', '.join(metric_names())}.")
    check_ops(ops)
    hardware.check(ops)
    params, static = eqx.partition(hardware, eqx.is_inexact_array)
    value, grads = _value_and_grad(params, static, ops, mapping, metric, bool(hard))
    value = float(value)
    if value == 0.0 or not np.isfinite(value):
        raise ModelInputError(f"metric {metric!r} is {value} on this design; elasticities "
                              f"(d log metric / d log parameter) need a finite nonzero "
                              f"metric.")
    rows = []
    leaves = jax.tree.leaves(params)
    for (labels, unit, shown, odds), p, g in zip(_leaves(hardware, params), leaves,
                                                 jax.tree.leaves(grads), strict=True):
        p, g = np.asarray(p, dtype=np.float64), np.asarray(g, dtype=np.float64)
        elasticity = g * p / value
        if odds:
            elasticity = elasticity * (1.0 + p)   # e_f = e_o / (1 - f), 1/(1 - f) = 1 + o
        for full, v, e in zip(labels, np.ravel(shown), np.ravel(elasticity)):
            rows.append({"name": full, "value": float(v), "unit": unit,
                         "elasticity": float(e)})
    rows.sort(key=lambda r: -abs(r["elasticity"]) if np.isfinite(r["elasticity"]) else 0.0)
    return rows
