"""Hardware presets: spec files in hardware/presets/, loaded into target modules."""

from __future__ import annotations

import functools
import importlib
import math
import pathlib

import jax.numpy as jnp

from perfmodel._errors import ModelInputError
from perfmodel._spec import SpecReader, closest_names, load_spec_file
from perfmodel.hardware import _technology as tech
from perfmodel.hardware._xpu import (COMPUTE_AREA_7NM, DATATYPE_BITS, LINK_AREA, MMA_M,
                                     SRAM_ARRAY_EFFICIENCY, UNIT_AREA_7NM, XPU, MemoryLevel,
                                     to_odds)

PRESET_DIR = pathlib.Path(__file__).parent / "presets"

#: Interconnect used when a spec has no [interconnect] section: PCIe Gen4 x16,
#: 32 GB/s per direction (PCI-SIG PCIe 4.0 base spec: 16 GT/s x 16 lanes, 128b/130b).
#: Efficiency 0.7, latency 10 us and 10 pJ/bit are assumed. SI units.
DEFAULT_LINK = {"bandwidth": 32e9, "efficiency": 0.7, "latency": 10e-6, "energy": 10e-12}


def _level(r: SpecReader, *path: str, capacity_unit: str = "_GB", efficiency=None) -> MemoryLevel:
    return MemoryLevel(
        bandwidth=jnp.asarray(r.number(*path, "bandwidth", unit="_GB_s")),
        capacity=jnp.asarray(r.number(*path, "capacity", unit=capacity_unit)),
        energy_per_bit=jnp.asarray(r.number(*path, "energy", unit="_pJ_per_bit")),
        odds=jnp.asarray(to_odds(efficiency if efficiency is not None
                                 else r.number(*path, "efficiency", hi=0.999))),
    )


def xpu_from_spec(data: dict, label: str) -> XPU:
    r = SpecReader(data, label)
    peaks = r.section("peak")
    datatypes = tuple(d for d in DATATYPE_BITS if d in peaks)
    unknown = set(peaks) - set(DATATYPE_BITS)
    if unknown:
        raise ModelInputError(
            f"{label}: unknown datatype peak.{sorted(unknown)[0]}; valid: {list(DATATYPE_BITS)}.")
    if "fp32" not in datatypes:
        raise ModelInputError(f"{label}: peak.fp32 is required (the vector datapath).")
    peak = jnp.asarray([r.number("peak", d, unit="") * 1e12 for d in datatypes])
    eff = lambda key, **kw: r.number("efficiency", key, **kw)  # noqa: E731
    offload = None
    kind = ""
    if r.section("offload", required=False) is not None:
        kind = r.raw("offload", "kind", default="host-dram")
        if kind not in ("host-dram", "flash"):
            raise ModelInputError(f"{label}: offload.kind = {kind!r}; valid: host-dram, flash.")
        offload = _level(r, "offload", efficiency=r.number("offload", "efficiency",
                                                           default=0.8, hi=0.999))
    link = lambda key, unit="", **kw: r.number(  # noqa: E731
        "interconnect", key, unit=unit, default=DEFAULT_LINK[key], **kw)
    hw = XPU(
        peak_flops=peak,
        units=jnp.asarray(r.number("compute", "units")),
        tile_m=jnp.asarray(r.number("compute", "tile_m")),
        tile_n=jnp.asarray(r.number("compute", "tile_n")),
        l2_reuse=jnp.asarray(r.number("compute", "l2_reuse", default=1.0)),
        energy_per_flop=jnp.asarray(r.number("compute", "energy", unit="_pJ_per_flop")),
        dram=_level(r, "memory", "dram", efficiency=eff("dram", hi=0.999)),
        l2=_level(r, "memory", "l2", capacity_unit="_MB", efficiency=eff("l2", hi=0.999)),
        offload=offload,
        link_bandwidth=jnp.asarray(link("bandwidth", "_GB_s")),
        link_odds=jnp.asarray(to_odds(link("efficiency", hi=0.999))),
        link_latency=jnp.asarray(link("latency", "_us")),
        link_energy_per_bit=jnp.asarray(link("energy", "_pJ_per_bit")),
        static_power=jnp.asarray(r.number("power", "static", unit="_W")),
        tdp=jnp.asarray(r.number("power", "tdp", unit="_W")),
        compute_odds=jnp.asarray(to_odds(eff("compute", hi=0.999))),
        k_half=jnp.asarray(eff("k_half")),
        launch_overhead=jnp.asarray(eff("launch_overhead", unit="_us")),
        dram_latency=jnp.asarray(eff("dram_latency", unit="_us")),
        datatypes=datatypes,
        offload_kind=kind,
        mma_rows=float(r.number("compute", "mma_rows", default=MMA_M)),
        datapath_scale=_datapath_scale(r, datatypes, eff("compute", hi=0.999)),
        **xpu_area_fields(r),
        **r.identity(),
    )
    r.finish_target()
    return hw


def _datapath_scale(r: SpecReader, datatypes, compute: float) -> tuple:
    """Per datatype, ``efficiency.<datatype>`` (a measured large-GEMM share of that
    datapath's peak) over ``efficiency.compute``; 1 where none is given."""
    out = []
    for d in datatypes:
        share = r.number("efficiency", d, default=0.0, hi=0.999)  # 0: not given
        out.append(float(share) / float(compute) if share > 0 else 1.0)
    return tuple(out) if any(s != 1.0 for s in out) else ()


def technology_fields(r: SpecReader, *, memory: str | None = "ddr5") -> dict:
    """``[technology]``: ``node`` (default 7 nm), ``memory`` (DRAM kind, for PHYs and
    price; default ``memory``) and ``package`` (default by memory kind); validated."""
    node = str(r.raw("technology", "node", default=tech.REFERENCE_NODE))
    tech.node(node)
    out = {"node": node}
    if memory is not None:
        kind = str(r.raw("technology", "memory", default=memory))
        tech.memory_kind(kind)
        out["memory_kind"] = kind
        package = str(r.raw("technology", "package", default=""))
        if package and package not in tech.PACKAGES:
            raise ModelInputError(f"{r.label}: technology.package = {package!r}; valid: "
                                  f"{', '.join(tech.PACKAGES)}.")
        out["package"] = package
    return out


def xpu_area_fields(r: SpecReader) -> dict:
    """The xPU's technology and area coefficients: ``[technology]`` and ``[area]``
    (``spare_fraction`` of harvested resources, and optional coefficients at the
    design's node: ``compute_mm2_per_TFLOPS``, ``unit_mm2``, ``sram_bit_um2``,
    ``phy_mm2``, ``link_mm2_per_GB_s``, ``base_mm2``); unset coefficients are the 7 nm
    defaults moved to the node (docs/cost.md)."""
    out = technology_fields(r)
    f = tech.ratios(tech.REFERENCE_NODE, out["node"])
    mm2 = 1e-6
    num = lambda key, default, **kw: r.number("area", key, default=default, **kw)  # noqa
    out.update(
        compute_area=num("compute_mm2_per_TFLOPS", COMPUTE_AREA_7NM * f["logic"] / mm2
                         * 1e12) * mm2 / 1e12,
        # (a missing key takes its default in SI units)
        unit_area=num("unit", UNIT_AREA_7NM * f["logic"], unit="_mm2"),
        sram_bit_area=num("sram_bit", tech.node(out["node"]).sram_bitcell
                          / SRAM_ARRAY_EFFICIENCY, unit="_um2"),
        link_area=num("link_mm2_per_GB_s", LINK_AREA / mm2 * 1e9) * mm2 / 1e9,
        base_area=num("base", 0.0, unit="_mm2", positive=False, lo=0.0),
        spare_fraction=num("spare_fraction", 0.0, positive=False, lo=0.0, hi=0.9),
    )
    phy = r.number("area", "phy", unit="_mm2", default=-1.0, positive=False)
    out["phy_area"] = None if phy < 0 else phy
    return out


#: Spec ``family`` -> builder ``(data, label) -> target``, or the module that defines
#: ``from_spec(data, label)`` (imported on first use). Adding a family: one module in
#: hardware/ and one line here.
_FAMILIES = {
    "xpu": xpu_from_spec,
    "dram-pim": "perfmodel.hardware._dram_pim",
    "system": "perfmodel.hardware._system",
    "lut": "perfmodel.hardware._lut",
    "cim": "perfmodel.hardware._cim",
    "bonded-3d": "perfmodel.hardware._bonded3d",
    "optical": "perfmodel.hardware._optical",
    "eager-framework": "perfmodel.hardware._framework",
}


def family_builder(family: str):
    builder = _FAMILIES[family]
    if isinstance(builder, str):
        builder = importlib.import_module(builder).from_spec
    return builder


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(
            out.get(k), dict) else v
    return out


def resolve_extends(data: dict, label: str, _seen=()) -> dict:
    """A spec with ``extends = "preset"`` is that preset's spec with this one's fields
    merged over it (tables merge key by key; ``name``, ``title`` and ``bibtex`` are
    this spec's own). Used for variants of a system (e.g. blocked vs concurrent mode)."""
    parent = data.get("extends")
    if parent is None:
        return data
    if parent not in list_presets():
        hint = closest_names(str(parent), list_presets())
        raise ModelInputError(
            f"{label}: extends = {parent!r} is not a hardware preset"
            + (f"; did you mean {', '.join(map(repr, hint))}?" if hint else "."))
    if parent in _seen:
        raise ModelInputError(f"{label}: extends forms a cycle through {parent!r}.")
    base = resolve_extends(load_spec_file(PRESET_DIR / f"{parent}.toml"), parent,
                           _seen + (parent,))
    base = {k: v for k, v in base.items() if k not in ("extends", "sources")}
    merged = _deep_merge(base, {k: v for k, v in data.items() if k != "extends"})
    merged["sources"] = {**spec_sources(parent), **data.get("sources", {})}
    return merged


#: Prices of presets that carry a [cost] section (USD), for tokens-per-dollar metrics.
_PRICES: dict[str, float] = {}


def _take_cost(data: dict, label: str) -> dict:
    """Remove the family-independent [cost] section (price in USD) and record it."""
    cost = data.get("cost")
    if cost is None:
        return data
    r = SpecReader({"cost": cost}, label)
    price = r.number("cost", "price", unit="_usd")
    r.finish()
    _PRICES[str(data.get("name"))] = price
    return {k: v for k, v in data.items() if k != "cost"}


def price(name: str) -> float:
    """Purchase price (USD) of a preset with a [cost] section (tokens-per-dollar claims)."""
    preset(name)
    if name not in _PRICES:
        raise ModelInputError(f"hardware {name!r} has no [cost] price_usd in its spec.")
    return _PRICES[name]


def from_spec(data: dict, label: str = "hardware spec"):
    """Build a target from a parsed spec dict (dispatch on ``family``)."""
    data = dict(_take_cost(resolve_extends(data, label), label))
    overrides = data.pop("overrides", None)
    family = data.get("family")
    valid = ", ".join(sorted(_FAMILIES))
    if family is None:
        raise ModelInputError(f"{label}: missing field family; it must be one of {valid}.")
    if family not in _FAMILIES:
        hint = closest_names(str(family), _FAMILIES, n=1)
        raise ModelInputError(
            f"{label}: family = {family!r} is not a hardware family"
            + (f" (did you mean {hint[0]!r}?)" if hint else "") + f"; valid: {valid}.")
    target = family_builder(family)(data, label)
    return _apply_overrides(target, overrides, label) if overrides else target


def _apply_overrides(target, overrides, label: str):
    """A spec's ``[overrides]`` table: float parameters set by the names
    `perfmodel.sensitivity` reports (``"dram.bandwidth" = 3.2e12``; SI, fractions as
    fractions), after the family's fields are read. Written by `perfmodel.opt` for an
    optimized design that ``extends`` its starting preset."""
    from perfmodel._paths import leaf_table, set_values

    if not isinstance(overrides, dict):
        raise ModelInputError(f"{label}: overrides must be a table of parameter = value.")
    table = leaf_table(target)
    for name, value in overrides.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value) or value <= 0:
            raise ModelInputError(f"{label}: overrides.{name} = {value!r} is invalid; it must "
                                  "be a finite number > 0 (SI units).")
        if name in table and table[name][2] and not value < 1:
            raise ModelInputError(f"{label}: overrides.{name} = {value!r} is invalid; it is "
                                  "a fraction in (0, 1).")
    target = set_values(target, {k: float(v) for k, v in overrides.items()})
    target.check()
    return target


def preset_family(name: str) -> str:
    """The ``family`` of a bundled preset, read from its spec (no model is built)."""
    data = load_spec_file(PRESET_DIR / f"{name}.toml")
    return str(resolve_extends(data, name).get("family", ""))


def load(path):
    """Load a hardware spec file (TOML, docs/spec_format.md) into a target."""
    path = pathlib.Path(path)
    return from_spec(load_spec_file(path), path.name)


def list_presets() -> list[str]:
    """Names of the bundled hardware presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


@functools.lru_cache(maxsize=None)
def _preset_cached(name: str):
    return load(PRESET_DIR / f"{name}.toml")


def preset(name: str):
    """A bundled hardware preset by name (e.g. ``"a100-80gb"``); see `list_presets()`.
    ``"host"`` is this machine (`perfmodel.hardware.host`, read and measured once per
    process)."""
    if name == "host":
        return _host_cached()
    names = list_presets()
    if name not in names:
        hint = closest_names(name, names)
        raise ModelInputError(
            f"unknown hardware {name!r}"
            + (f"; did you mean {', '.join(map(repr, hint))}?" if hint
               else f"; valid: {', '.join(names)}."))
    return _preset_cached(name)


@functools.lru_cache(maxsize=1)
def _host_cached():
    from perfmodel.hardware._host import host

    return host()


def spec_sources(name: str) -> dict:
    """The [sources] table of a preset (its parent's too, when it ``extends`` one):
    where each number comes from."""
    data = load_spec_file(PRESET_DIR / f"{name}.toml")
    if "extends" in data:
        return resolve_extends(data, name)["sources"]
    return data.get("sources", {})
