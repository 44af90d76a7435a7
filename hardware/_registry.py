"""Hardware presets: spec files in hardware/presets/, loaded into target modules."""

from __future__ import annotations

import functools
import pathlib

import jax.numpy as jnp

from perfmodel._errors import ModelInputError
from perfmodel._spec import SpecReader, closest_names, load_spec_file
from perfmodel.hardware._xpu import DATATYPE_BITS, XPU, MemoryLevel, to_odds

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
        name=str(r.raw("name", required=True)),
        title=str(r.raw("title", default="")),
        offload_kind=kind,
        bibtex=str(r.raw("bibtex", default="")),
    )
    r.raw("family")
    r.raw("schema_version")
    r.finish()
    return hw


_FAMILIES = {"xpu": xpu_from_spec}


def from_spec(data: dict, label: str = "hardware spec"):
    """Build a target from a parsed spec dict (dispatch on ``family``)."""
    family = data.get("family")
    if family not in _FAMILIES:
        raise ModelInputError(
            f"{label}: family = {family!r} is not supported; valid: {sorted(_FAMILIES)}.")
    return _FAMILIES[family](data, label)


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
    """A bundled hardware preset by name (e.g. ``"a100-80gb"``); see `list_presets()`."""
    names = list_presets()
    if name not in names:
        hint = closest_names(name, names)
        raise ModelInputError(
            f"unknown hardware {name!r}"
            + (f"; did you mean {', '.join(map(repr, hint))}?" if hint
               else f"; valid: {', '.join(names)}."))
    return _preset_cached(name)


def spec_sources(name: str) -> dict:
    """The [sources] table of a preset: where each number comes from."""
    return load_spec_file(PRESET_DIR / f"{name}.toml").get("sources", {})
