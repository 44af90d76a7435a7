"""Technology nodes, silicon and memory cost, and the cost of ownership (docs/cost.md).

Everything a family needs to turn its design parameters into silicon area, dollars and
lifetime cost, as plain tables with a source for every number (or ``assumed``):

- `NODES`: per process node, the area of the same logic relative to 7 nm, the 6T SRAM
  bitcell, the switching energy per operation relative to 7 nm, the foundry wafer price
  and the defect density; `node` looks one up (an unknown name is a `ModelInputError`
  that lists the valid ones) and `rescale_node` moves a design to another node.
- `die_cost`: wafer price / (dies per wafer x Murphy yield).
- `MEMORY_KINDS`: price per GB and per-interface bandwidth of HBM / GDDR / LPDDR / DDR.
- `PACKAGES`: packaging and assembly (assumed).
- `tokens_per_dollar`, `total_cost_of_ownership`: capital cost of a `Report` plus the
  energy it draws over a lifetime at an energy price.

Functions of arrays are pure JAX and differentiable (area, capacity, bandwidth are float
leaves of the designs); the tables are static Python.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

from perfmodel._errors import ModelInputError

# ---------------------------------------------------------------------------- sources
#: Stillmaker & Baas, "Scaling equations for the accurate prediction of CMOS device
#: performance from 180 nm to 7 nm", Integration, the VLSI Journal 58 (2017) 74-81,
#: doi:10.1016/j.vlsi.2017.02.002; tables as transcribed in github:wromaszkan/nodeScale
#: @a912c607:nodeScale.py (areaDict row '7', HP energy polynomial coefficients).
STILLMAKER = ("Stillmaker & Baas 2017 (doi:10.1016/j.vlsi.2017.02.002), tables in "
              "github:wromaszkan/nodeScale@a912c607:nodeScale.py")
#: CSET, "AI Chips: What They Are and Why They Matter" (Khan & Mann, 2020), foundry sale
#: price per 300 mm wafer by node in 2020 (TSMC-based model).
CSET = ("https://cset.georgetown.edu/wp-content/uploads/AI-Chips—What-They-Are-and-Why-"
        "They-Matter.pdf (foundry sale price per wafer, 2020; table reproduced at "
        "https://worldbestnews.info/analysts-believe-that-a-single-tsmc-5nm-wafer-costs-17000/"
        " and https://gadgetcrutches.com/technology/tsmc-wafer-prices-leaked-one-wafer-5nm-"
        "costs-16988/)")
#: WikiChip's TSMC high-density 6T bitcell table (22 nm 0.092, 16 nm 0.074, 14 nm 0.064,
#: 10 nm 0.042, 7 nm 0.027, 5 nm 0.021 um^2), https://fuse.wikichip.org/news/3398/tsmc-
#: details-5-nm/, as transcribed in a public cost model (code search: "sram_area_scaling").
WIKICHIP_SRAM = "https://fuse.wikichip.org/news/3398/tsmc-details-5-nm/"
#: TSMC defect density: N7 0.09 /cm^2 three quarters after volume ramp, N5 0.10-0.11 /cm^2
#: going below 0.10, https://www.anandtech.com/show/16028/better-yield-on-5nm-than-7nm-
#: tsmc-update-on-defect-rates-for-n5
ANANDTECH_D0 = "https://www.anandtech.com/show/16028/better-yield-on-5nm-than-7nm-tsmc-update-on-defect-rates-for-n5"


@dataclasses.dataclass(frozen=True)
class Node:
    """One process node. SI units; relative factors are to 7 nm (`REFERENCE_NODE`).

    ``logic_area``: area of the same logic relative to 7 nm; ``sram_bitcell``: m^2 per
    high-density 6T bit (bitcell only); ``energy``: switching energy per operation
    relative to 7 nm; ``wafer_price``: USD per 300 mm wafer; ``defect_density``: defects
    per m^2 (D0); ``sources``: where each number comes from.
    """

    name: str
    logic_area: float
    sram_bitcell: float
    energy: float
    wafer_price: float
    defect_density: float
    sources: str


def _stillmaker_energy(c4, c5, c6, vdd):
    """Stillmaker & Baas HP energy factor ``c4 V^2 + c5 V + c6`` at the nominal Vdd."""
    return c4 * vdd * vdd + c5 * vdd + c6


#: Nominal supply voltages at which the energy polynomials are evaluated (assumed: the
#: Predictive Technology Model's nominal Vdd of each high-performance node, ptm.asu.edu:
#: 65 nm 1.1 V, 45 nm 1.0 V, 32 nm 0.9 V, 20 nm 0.9 V, 16 nm 0.85 V, 14 nm 0.8 V,
#: 10 nm 0.75 V, 7 nm 0.7 V).
_E = {
    "65nm": _stillmaker_energy(3.755, -4.398, 1.975, 1.1),
    "45nm": _stillmaker_energy(1.018, -0.3107, 0.1539, 1.0),
    "32nm": _stillmaker_energy(0.8367, -0.4341, 0.1701, 0.9),
    "20nm": _stillmaker_energy(0.373, -0.1582, 0.04104, 0.9),
    "16nm": _stillmaker_energy(0.2958, -0.1241, 0.03024, 0.85),
    "14nm": _stillmaker_energy(0.2363, -0.09675, 0.02239, 0.8),
    "10nm": _stillmaker_energy(0.2068, -0.09311, 0.02375, 0.75),
    "7nm": _stillmaker_energy(0.1776, -0.09097, 0.02447, 0.7),
}
_E = {k: v / _E["7nm"] for k, v in _E.items()}
#: TSMC's node-to-node claims: N5 needs 30% less power than N7 at the same speed with up
#: to 1.8x logic density; N3 25-30% less power than N5 (27.5% taken) with 1.7x logic
#: density (https://www.anandtech.com/show/16024/tsmc-details-3nm-process-technology-
#: details-full-node-scaling-for-2h22, quoted at https://forum.beyond3d.com/posts/2157644/;
#: N5: https://www.anandtech.com/show/16028/ (the same symposium)).
N5_POWER, N5_DENSITY = 0.70, 1.8
N3_POWER, N3_DENSITY = 0.725, 1.7
_UM2 = 1e-12
_PER_CM2 = 1e4          # defects per cm^2 -> per m^2
#: Defect density of nodes without a published figure (assumed: 0.1 /cm^2, the level
#: TSMC reports for its ramped N7/N5 and mature nodes run at or below).
D0_ASSUMED = 0.10

_S = STILLMAKER
NODES: dict[str, Node] = {n.name: n for n in (
    Node("65nm", 25.0, 0.52 * _UM2, _E["65nm"], 1937.0, D0_ASSUMED * _PER_CM2,
         f"area, energy: {_S}; bitcell assumed (TSMC 65 nm 0.52 um^2 class); wafer: {CSET}; "
         "D0 assumed"),
    Node("45nm", 17.0, 0.346 * _UM2, _E["45nm"], 2274.0, D0_ASSUMED * _PER_CM2,
         f"area, energy: {_S}; bitcell assumed (Intel 45 nm 0.346 um^2); wafer: CSET's "
         f"40 nm price, the nearest node in {CSET}; D0 assumed"),
    Node("32nm", 7.8, 0.171 * _UM2, _E["32nm"], 2891.0, D0_ASSUMED * _PER_CM2,
         f"area, energy: {_S}; bitcell assumed (Intel 32 nm 0.171 um^2); wafer: CSET's "
         f"28 nm price, the nearest node in {CSET}; D0 assumed"),
    Node("20nm", 3.6, 0.081 * _UM2, _E["20nm"], 3677.0, D0_ASSUMED * _PER_CM2,
         f"area, energy: {_S}; bitcell assumed (TSMC 20SoC 0.081 um^2); wafer: {CSET}; "
         "D0 assumed"),
    Node("16nm", 3.2, 0.074 * _UM2, _E["16nm"], 3984.0, D0_ASSUMED * _PER_CM2,
         f"area, energy: {_S}; bitcell: {WIKICHIP_SRAM}; wafer: {CSET} (16/12 nm); "
         "D0 assumed"),
    Node("14nm", 2.9, 0.064 * _UM2, _E["14nm"], 3984.0, D0_ASSUMED * _PER_CM2,
         f"area, energy: {_S}; bitcell: {WIKICHIP_SRAM}; wafer: CSET's 16/12 nm price "
         f"({CSET}); D0 assumed"),
    Node("12nm", 3.2, 0.074 * _UM2, _E["16nm"], 3984.0, D0_ASSUMED * _PER_CM2,
         "assumed: TSMC 12FFN/12FFC are 16 nm-family processes, so 16 nm's area, bitcell "
         f"and energy ({_S}; {WIKICHIP_SRAM}); wafer: {CSET} (16/12 nm); D0 assumed"),
    Node("10nm", 1.7, 0.042 * _UM2, _E["10nm"], 5992.0, D0_ASSUMED * _PER_CM2,
         f"area, energy: {_S}; bitcell: {WIKICHIP_SRAM}; wafer: {CSET}; D0 assumed"),
    Node("8nm", 1.7 * 0.9, 0.040 * _UM2, _E["10nm"], 5992.0, D0_ASSUMED * _PER_CM2,
         "assumed: Samsung 8LPP, a 10 nm-class process about 10% denser than 10 nm "
         f"({_S} 10 nm area x 0.9; 10 nm energy; bitcell 0.040 um^2 assumed); wafer: "
         f"CSET's 10 nm price ({CSET}); D0 assumed"),
    Node("7nm", 1.0, 0.027 * _UM2, 1.0, 9346.0, 0.09 * _PER_CM2,
         f"reference node; bitcell: {WIKICHIP_SRAM}; wafer: {CSET}; D0: {ANANDTECH_D0}"),
    Node("5nm", 1.0 / N5_DENSITY, 0.021 * _UM2, N5_POWER, 16988.0, 0.10 * _PER_CM2,
         "TSMC N5 vs N7: 1.8x logic density, -30% power at iso-speed "
         f"({ANANDTECH_D0}); bitcell: {WIKICHIP_SRAM}; wafer: {CSET}; D0: {ANANDTECH_D0}"),
    Node("4nm", 1.0 / N5_DENSITY, 0.021 * _UM2, N5_POWER, 16988.0, 0.10 * _PER_CM2,
         "assumed: TSMC N4 / NVIDIA 4N are N5-family processes, so 5 nm's row "
         f"({ANANDTECH_D0}; {WIKICHIP_SRAM}; {CSET})"),
    Node("3nm", 1.0 / (N5_DENSITY * N3_DENSITY), 0.0199 * _UM2, N5_POWER * N3_POWER,
         20000.0, D0_ASSUMED * _PER_CM2,
         "TSMC N3 vs N5: 1.7x logic density, -25-30% power "
         "(https://forum.beyond3d.com/posts/2157644/ quoting AnandTech); bitcell assumed "
         "(N3B 0.0199 um^2); wafer: ~$20,000 (DigiTimes via "
         "https://www.taiwannews.com.tw/en/news/4728367); D0 assumed"),
)}
REFERENCE_NODE = "7nm"


def node(name: str) -> Node:
    """The `Node` called ``name``; `ModelInputError` listing the valid names if unknown."""
    if name not in NODES:
        raise ModelInputError(
            f"technology node {name!r} is not in the table; valid: {', '.join(NODES)}.")
    return NODES[name]


# ---------------------------------------------------------------------------- silicon
#: 300 mm wafers: diameter (m) and edge exclusion (assumed 3 mm).
WAFER_DIAMETER = 0.300
EDGE_EXCLUSION = 0.003


def dies_per_wafer(area):
    """Gross dies per 300 mm wafer for a die of ``area`` m^2 (square dies): the usual
    ``pi (d/2)^2 / A - pi d / sqrt(2 A)`` over the usable diameter (e.g. Hennessy &
    Patterson, Computer Architecture 5th ed., ch. 1); at least 1."""
    d = WAFER_DIAMETER - 2.0 * EDGE_EXCLUSION
    n = math.pi * (0.5 * d) ** 2 / area - math.pi * d / jnp.sqrt(2.0 * area)
    return jnp.maximum(n, 1.0)


def _one_minus_exp_over(x):
    """(1 - e^-x) / x, smooth through x = 0."""
    small = x < 1e-4
    safe = jnp.where(small, 1.0, x)
    return jnp.where(small, 1.0 - 0.5 * x, -jnp.expm1(-safe) / safe)


def die_yield(area, defect_density):
    """Murphy's yield model ``Y = ((1 - e^{-A D0}) / (A D0))^2`` (Murphy, Proc. IEEE 52,
    1964): the fraction of dies without a killer defect. Smooth in area; 1 at A = 0.
    Harvesting (disabling a defective unit, as GPUs ship with spare SMs) would raise it;
    not modelled."""
    return _one_minus_exp_over(area * defect_density) ** 2


def die_cost(area, node_name: str):
    """USD per good die of ``area`` m^2 at ``node_name``: wafer price / (dies per wafer x
    yield)."""
    n = node(node_name)
    return n.wafer_price / (dies_per_wafer(area) * die_yield(area, n.defect_density))


# ---------------------------------------------------------------------------- memory
@dataclasses.dataclass(frozen=True)
class MemoryKind:
    """A DRAM kind: ``price`` USD per byte, ``interface_bandwidth`` B/s of one interface
    (an HBM stack, a GDDR x32 device, an LPDDR x16 or DDR x64 channel) at the kind's top
    JEDEC rate, ``phy_area`` m^2 of one interface's PHY + controller on the host die."""

    name: str
    price: float
    interface_bandwidth: float
    phy_area: float
    sources: str


_GB = 1e9
_MM2 = 1e-6
#: DDR5 $1.50-2 per GB and HBM3E $8-10 per GB (https://asiatechfeed.com/explainers/what-
#: is-hbm-memory/), midpoints taken; the other kinds from the relative cost per GB of
#: https://ainews.cool/article/20260526-ai-memory-tax-hbm-smartphone-costs (DDR5 1x,
#: LPDDR5X 1.2x, HBM2e 4x, HBM3 6x, HBM3e 7x; the direct HBM3E figure is used for HBM3E).
DDR_PRICE = 1.75 / _GB
_PRICES = ("https://asiatechfeed.com/explainers/what-is-hbm-memory/ (DDR5 $1.50-2/GB, "
           "HBM3E $8-10/GB) and https://ainews.cool/article/20260526-ai-memory-tax-hbm-"
           "smartphone-costs (relative $/GB: DDR5 1x, LPDDR5X 1.2x, HBM2e 4x, HBM3 6x)")
_PHY = "phy_area assumed (no published PHY areas found; HBM stack PHY+controller 12 mm^2, "\
       "GDDR x32 3 mm^2, LPDDR x16 1 mm^2, DDR x64 3 mm^2)"
MEMORY_KINDS: dict[str, MemoryKind] = {m.name: m for m in (
    MemoryKind("hbm2", 4.0 * DDR_PRICE, 307e9, 12.0 * _MM2,
               f"price {_PRICES}; 2.4 Gb/s x 1024 bits (JEDEC JESD235B; Samsung Aquabolt); "
               f"{_PHY}"),
    MemoryKind("hbm2e", 4.0 * DDR_PRICE, 460e9, 12.0 * _MM2,
               f"price {_PRICES}; 3.6 Gb/s x 1024 bits "
               f"(https://www.rambus.com/blogs/hbm2e-data-rate/); {_PHY}"),
    MemoryKind("hbm3", 6.0 * DDR_PRICE, 819e9, 12.0 * _MM2,
               f"price {_PRICES}; 6.4 Gb/s x 1024 bits (JEDEC JESD238); {_PHY}"),
    MemoryKind("hbm3e", 9.0 / _GB, 1229e9, 12.0 * _MM2,
               f"price {_PRICES}; 9.6 Gb/s x 1024 bits; {_PHY}"),
    MemoryKind("gddr6", 1.5 * DDR_PRICE, 64e9, 3.0 * _MM2,
               "price assumed (1.5x DDR5, no source found); 16 Gb/s x 32 bits "
               f"(http://www.8bubian.site/products/graphics-memory); {_PHY}"),
    MemoryKind("gddr6x", 1.5 * DDR_PRICE, 84e9, 3.0 * _MM2,
               "price assumed (as GDDR6); 21 Gb/s x 32 bits "
               f"(http://www.kylolab.com/ultra-bandwidth-solutions.html); {_PHY}"),
    MemoryKind("lpddr4x", 1.2 * DDR_PRICE, 8.5e9, 1.0 * _MM2,
               f"price {_PRICES} (LPDDR 1.2x); 4266 MT/s x 16 bits; {_PHY}"),
    MemoryKind("lpddr5", 1.2 * DDR_PRICE, 12.8e9, 1.0 * _MM2,
               f"price {_PRICES} (LPDDR 1.2x); 6400 MT/s x 16 bits; {_PHY}"),
    MemoryKind("ddr4", DDR_PRICE, 25.6e9, 3.0 * _MM2,
               f"price {_PRICES} (DDR5 price assumed for DDR4); 3200 MT/s x 64 bits; {_PHY}"),
    MemoryKind("ddr5", DDR_PRICE, 38.4e9, 3.0 * _MM2,
               f"price {_PRICES}; 4800 MT/s x 64 bits (https://origin-www.synopsys.com/blogs/"
               f"chip-design/designing-hbm3-high-bandwidth-memory-interfaces.html); {_PHY}"),
)}


#: DRAM array area per bit, periphery included, m^2 (assumed, no die sizes retrieved:
#: an 8 Gb 20 nm-class HBM2 core die ~92 mm^2, a 16 Gb HBM3 core die ~110 mm^2, an 8 Gb
#: 1y nm GDDR6 die ~60 mm^2; the others as the nearest). Used by DRAM-PIM devices.
DRAM_BIT_AREA = {"hbm2": 0.0107e-12, "hbm2e": 0.0080e-12, "hbm3": 0.0064e-12,
                 "hbm3e": 0.0064e-12, "gddr6": 0.0070e-12, "gddr6x": 0.0070e-12,
                 "lpddr4x": 0.0070e-12, "lpddr5": 0.0060e-12, "ddr4": 0.0070e-12,
                 "ddr5": 0.0060e-12}


def memory_kind(name: str) -> MemoryKind:
    if name not in MEMORY_KINDS:
        raise ModelInputError(f"memory kind {name!r} is unknown; valid: "
                              f"{', '.join(MEMORY_KINDS)}.")
    return MEMORY_KINDS[name]


def memory_cost(capacity, kind: str):
    """USD of ``capacity`` bytes of DRAM of ``kind`` (packaged parts, market price)."""
    return capacity * memory_kind(kind).price


# ---------------------------------------------------------------------------- packages
#: Packaging, assembly and test (all assumed; no public figures were found):
#: ``organic``: flip-chip BGA on an organic substrate, $20 + $0.02/mm^2 of die;
#: ``2.5d``: silicon interposer (CoWoS-class), $100 assembly and test + $0.05 per mm^2 of
#: interposer, the interposer covering 1.2 x (die + 100 mm^2 per memory stack);
#: ``3d``: hybrid-bonded die stack, $50 + $0.10 per mm^2 of bonded face.
PACKAGES = ("organic", "2.5d", "3d")
ORGANIC_BASE, ORGANIC_PER_M2 = 20.0, 0.02 / _MM2
INTERPOSER_BASE, INTERPOSER_PER_M2, INTERPOSER_MARGIN = 100.0, 0.05 / _MM2, 1.2
STACK_FOOTPRINT = 100.0 * _MM2
BOND_BASE, BOND_PER_M2 = 50.0, 0.10 / _MM2


def package_cost(kind: str, die_area, stacks=0.0):
    """USD of packaging a die of ``die_area`` m^2 (with ``stacks`` memory stacks on an
    interposer for ``2.5d``; the bonded face for ``3d``)."""
    if kind == "organic":
        return ORGANIC_BASE + ORGANIC_PER_M2 * die_area
    if kind == "2.5d":
        return INTERPOSER_BASE + INTERPOSER_PER_M2 * INTERPOSER_MARGIN * (
            die_area + STACK_FOOTPRINT * stacks)
    if kind == "3d":
        return BOND_BASE + BOND_PER_M2 * die_area
    raise ModelInputError(f"package {kind!r} is unknown; valid: {', '.join(PACKAGES)}.")


def default_package(memory: str) -> str:
    """HBM sits on an interposer; other memories are separate packages on the board."""
    return "2.5d" if memory.startswith("hbm") else "organic"


# ---------------------------------------------------------------------------- operating
#: USD per kWh: average commercial-sector revenue per kWh in Virginia (the largest US
#: data-centre market), 2023: 8.95 cents (EIA Electric Power Annual 2023,
#: https://www.eia.gov/electricity/annual/secrev-map.php).
ENERGY_PRICE_PER_KWH = 0.0895
#: Default lifetime of the hardware, s (assumed: 4 years, a typical depreciation period).
LIFETIME_S = 4.0 * 365.25 * 86400.0
#: Default share of the lifetime spent serving (assumed: 1, serving continuously).
UTILIZATION = 1.0
#: Default power usage effectiveness of the facility (assumed: 1, the device alone).
PUE = 1.0
_J_PER_KWH = 3.6e6


def total_cost_of_ownership(report, *, lifetime_s=LIFETIME_S, utilization=UTILIZATION,
                            energy_price=ENERGY_PRICE_PER_KWH, pue=PUE):
    """USD over ``lifetime_s``: the report's capital ``cost`` plus the energy drawn,
    ``lifetime x (u P_busy + (1 - u) P_idle) x PUE`` at ``energy_price`` USD/kWh, with
    P_busy the report's average power and P_idle its static power. None if the target
    has no cost model."""
    if report.cost is None:
        return None
    busy = report.power
    idle = report.static_energy / report.latency
    joules = lifetime_s * (utilization * busy + (1.0 - utilization) * idle) * pue
    return report.cost + joules * (energy_price / _J_PER_KWH)


def tokens_per_dollar(report, *, lifetime_s=LIFETIME_S, utilization=UTILIZATION,
                      energy_price=ENERGY_PRICE_PER_KWH, pue=PUE):
    """Tokens produced over the lifetime per USD of total cost of ownership:
    ``lifetime x u x tokens_per_s / TCO`` (`total_cost_of_ownership`). None if the
    target has no cost model. Pure and differentiable."""
    tco = total_cost_of_ownership(report, lifetime_s=lifetime_s, utilization=utilization,
                                  energy_price=energy_price, pue=pue)
    if tco is None:
        return None
    return lifetime_s * utilization * report.tokens_per_s / tco


# ---------------------------------------------------------------------------- per design
def physical(target, mapping=None, *, hard: bool = False) -> dict:
    """``{"area": m^2, "peak_power": W, "cost": USD}`` of a design without evaluating a
    workload (the same values `perfmodel.evaluate` puts in its `Report`; None where a
    family has no model). A `System` sums its units and adds its link at full rate to the
    peak power; an `EagerFramework` is its device. Pure and differentiable."""
    units = getattr(target, "units", None)
    if isinstance(units, tuple):  # a System
        parts = [physical(u, hard=hard) for u in units]
        out = {}
        for key in ("area", "peak_power", "cost"):
            vals = [p[key] for p in parts if p[key] is not None]
            out[key] = sum(vals) if vals else None
        if out["peak_power"] is not None:
            out["peak_power"] = out["peak_power"] + (
                8.0 * target.link_bandwidth * target.link_energy_per_bit)
        return out
    device = getattr(target, "device", None)
    if device is not None and not hasattr(target, "chip_area"):  # EagerFramework
        return physical(device, mapping, hard=hard)
    return {"area": target.chip_area(mapping, hard=hard),
            "peak_power": target.peak_power(mapping, hard=hard),
            "cost": target.capital_cost(mapping, hard=hard)}


# ---------------------------------------------------------------------------- rescaling
def ratios(src: str, dst: str) -> dict[str, float]:
    """Factors that move a design from node ``src`` to ``dst``: ``logic`` (area of the
    same logic), ``sram`` (bitcell area), ``energy`` (energy per operation)."""
    a, b = node(src), node(dst)
    return {"logic": b.logic_area / a.logic_area, "sram": b.sram_bitcell / a.sram_bitcell,
            "energy": b.energy / a.energy}


def _scale_fields(target, fields: dict, r: dict):
    """Multiply each named field (dotted path; a float leaf or a static float) by its
    group's ratio."""
    import equinox as eqx

    for group, names in fields.items():
        for name in names:
            parts = name.split(".")
            holder = target
            for p in parts[:-1]:
                holder = getattr(holder, p)
            value = getattr(holder, parts[-1])
            if value is None:
                continue
            new = value * r[group]
            static = any(f.name == parts[-1] and f.metadata.get("static")
                         for f in dataclasses.fields(holder))
            if static:
                new_holder = dataclasses.replace(holder, **{parts[-1]: float(new)})
                if len(parts) == 1:
                    target = new_holder
                else:
                    target = eqx.tree_at(lambda t, ps=parts[:-1]: _get(t, ps), target,
                                         new_holder)
            else:
                target = eqx.tree_at(lambda t, ps=parts: _get(t, ps), target, new)
    return target


def _get(obj, parts):
    for p in parts:
        obj = getattr(obj, p)
    return obj


def rescale_node(target, new_node: str):
    """``target`` moved to ``new_node``: its logic-area, SRAM-area and per-operation
    energy parameters (each family's ``NODE_SCALED`` table) multiplied by the `NODES`
    ratios, static power by the energy ratio (assumed: leakage tracks switching energy),
    and its ``node`` set. Off-chip interfaces (DRAM, links), DRAM cells and optics keep
    their values. A `System` rescales its units that are built on a logic node (in-bank
    DRAM-PIM units stay in their DRAM process); an `EagerFramework` its device.
    Unknown nodes raise `ModelInputError` with the valid names."""
    node(new_node)
    units = getattr(target, "units", None)
    if isinstance(units, tuple):  # a System
        return dataclasses.replace(
            target, units=tuple(rescale_node(u, new_node) if _rescalable(u) else u
                                for u in units))
    device = getattr(target, "device", None)
    if device is not None and not hasattr(target, "NODE_SCALED"):  # EagerFramework
        return dataclasses.replace(target, device=rescale_node(device, new_node))
    if not _rescalable(target):
        raise ModelInputError(
            f"{getattr(target, 'name', type(target).__name__)} is built in a DRAM process "
            "(in-bank / bank-group PIM); node rescaling applies to logic dies only.")
    r = ratios(target.node, new_node)
    target = _scale_fields(target, target.NODE_SCALED, r)
    return dataclasses.replace(target, node=new_node)


def _rescalable(target) -> bool:
    scaled = getattr(target, "NODE_SCALED", None)
    return scaled is not None and getattr(target, "node", None) is not None and (
        getattr(target, "placement", "logic_die") == "logic_die")
