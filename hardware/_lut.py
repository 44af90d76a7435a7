"""SRAM lookup-table (LUT) GEMV target: T-MAC on CPUs, SAIL's C-SRAM next to the LLC,
and LUT-based ternary accelerators (Geens et al.), with a multiplier-based mode for their
baselines (llama.cpp dequantize-then-multiply, multiplier arrays).

Per weight-GEMM row (kinds in `LUT_KINDS`) and instance, with g the activation group
size (mapping; continuous, rounded with ``hard=True``), G = ``groups``, [m, k] x [k, n]:

    entries   = 2^g / (2 if mirror)            (bit-serial weights; T-MAC mirror consolidation)
              = (3^g - 1) / 2                  (ternary encoding: one lookup per group of g
                                                trits, symmetric half stored)
    planes    = ceil(weight_bits)              (bit-serial: one lookup per weight bit plane;
                                                ternary 1.58-bit weights take 2 planes)
              = 1                              (ternary encoding)
    groups_k  = k / g                          (ceil with hard=True)
    lookups   = G m n groups_k planes          (each lookup is accumulated by its lane)
    builds    = G m groups_k entries           (one add per entry; once per token, reused
                                                by all n output rows)
    combine   = G m n planes                   (shift-add of the bit-plane partial sums)
    convert   = G (m k + m n) convert_ops      (activation quantization, output dequant)
    lane_ops  = lookups + builds + combine + convert        (LUT mode)
              = G m n k + G n k dequant_ops / 1 + convert   (MAC mode: dequantize each
                                                weight once per GEMM, i.e. amortized over
                                                the m tokens of a batch, then multiply)
    t_lut     = lane_ops / (units lanes clock eta_lut)
    tables    = m groups_k entries entry_bits / 8 / (units if k_split else 1)   bytes
    spill     = relu(tables - C_table) / tables          (share of lookups missing SRAM)
    t_spill   = spill lookups line / B_spill     (a spilled lookup gathers one 64 B line)
    t_dram    = dram_bytes / min(B_dram eta_dram, cores B_core)    (weights at b bits)

Weight rows whose weight_bits exceed what the tables take (``max_weight_bits``, log2(3)
for ternary) fall back to the host, as T-MAC falls back to llama.cpp kernels (the share
on the tables is `smooth_threshold(weight_bits, max_weight_bits)`: continuous, exact at
whole bit-widths, with the 1-bit trend as its gradient). Other rows
(attention, norms, softmax, LM head at 16 bits) run on the host:
``t_host = flops / F_host``. Every row: ``t = smooth_max(t_lut, t_spill, t_dram, t_host)
+ launches t_dispatch``.

Energy: lookups e_lookup + (lookups + builds + combine) e_add + convert e_add
(MAC mode: MACs (e_mul + e_add)) + host flops e_flop + 8 B_dram e_dram + 8 B_spill e_spill,
plus static power x latency.

Area: base + units (entries entry_bits a_reg + entries a_add) + units lanes (a_fetch + a_add)
with a_fetch = (entries - 1) entry_bits a_mux (an entries:1 mux of entry_bits) in LUT
mode; base + units lanes (a_mul + a_add) in MAC mode.

``smooth_max`` / ``ceil`` / ``relu`` / the rounding of g are exact with ``hard=True``.

Peak power and cost (docs/cost.md): ``P_peak = units lanes clock (e_lookup + e_add)
+ F_host e_flop + 8 (B_dram e_dram + B_spill e_spill) + P_static``; ``cost =
die_cost(area, node) + C_dram price(memory_kind) + package``.
"""

from __future__ import annotations


import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from perfmodel._errors import ModelInputError
from perfmodel._ops import Ops
from perfmodel._report import Cost
from perfmodel._smooth import smooth_ceil, smooth_min, smooth_relu, smooth_threshold
from perfmodel._spec import SpecReader
from perfmodel._target import AbstractUnit, check_positive_leaves, is_traced, check_capacity
from perfmodel.hardware import _technology as tech
from perfmodel.hardware._xpu import MemoryLevel, from_odds, to_odds

#: Rows whose stationary operand is a weight matrix: they run as LUT-GEMV (or on the
#: multiplier datapath in MAC mode). Attention (K/V operands), the LM head and the
#: element-wise rows run on the host vector units (T-MAC keeps the LM head and
#: embeddings in fp16, README "token-embed remaining un-quantized").
LUT_KINDS = frozenset({"qkv_proj", "out_proj", "ffn_up", "ffn_down", "moe_router", "moe_up",
                       "moe_down", "conv", "fc", "ssm_proj"})
#: Bytes moved per spilled lookup: a spilled lookup is a random gather of one cache line
#: from the spill level (64 B lines in Arm and Apple cores; assumed for accelerators).
SPILL_LINE_BYTES = 64.0
#: Weight encodings: bit-serial planes (T-MAC, SAIL) or base-3 groups (ternary LUT).
ENCODINGS = ("bit-serial", "ternary")
#: Datapaths: table lookup, or multiply-accumulate (the dequantize-then-multiply baseline).
DATAPATHS = ("lut", "mac")
#: Bits of information in one ternary weight: log2(3) (BitNet b1.58).
TERNARY_BITS = float(np.log2(3.0))
#: Horowitz ISSCC 2014 (45 nm) operation areas in um^2 (Fig. "Area" table: 8-bit add 36,
#: 32-bit add 137, 16-bit FP add 1360, 8-bit multiply 282, 16-bit FP multiply 1640);
#: used by presets and by the data-type study in tests/docs.
HOROWITZ_AREA_UM2 = {"int8_add": 36.0, "int32_add": 137.0, "fp16_add": 1360.0,
                     "int8_mul": 282.0, "fp16_mul": 1640.0}
#: Horowitz ISSCC 2014 (45 nm) operation energies in pJ.
HOROWITZ_ENERGY_PJ = {"int8_add": 0.03, "int16_add": 0.05, "int32_add": 0.1,
                      "fp16_add": 0.4, "int8_mul": 0.2, "fp16_mul": 1.1}


class LUTMapping(eqx.Module):
    """The LUT design knob of a mapping: activation group size g (continuous; rounded to
    the nearest integer with ``hard=True``). Must be >= 1."""

    group_size: Float[Array, ""]


class LUT(AbstractUnit):
    """A lookup-table GEMV engine with a host CPU for the other rows.

    Build one with `perfmodel.hardware.preset(name)` (e.g. ``"sail"``, ``"tmac-m2-ultra"``,
    ``"ternary-lut"``). Every float leaf may be scaled by [0.5, 2] and stays valid.
    """

    name: str = eqx.field(static=True)
    bibtex: str = eqx.field(static=True)
    clock: Float[Array, ""]                 # Hz of the lookup engine
    units: Float[Array, ""]                 # parallel tables: cores, C-SRAM arrays, LUTs
    lanes: Float[Array, ""]                 # lookups (or MACs) per unit per cycle
    lut_odds: Float[Array, ""]              # achieved / peak lane throughput, as odds
    group_size: Float[Array, ""]            # default activation group size g
    entry_bits: Float[Array, ""]            # bits of one table entry (or MAC operand)
    table_capacity: Float[Array, ""]        # bytes of table SRAM per unit (or in total if k_split)
    spill_bandwidth: Float[Array, ""]       # B/s of the level tables spill to
    spill_energy_per_bit: Float[Array, ""]  # J/bit
    dram: MemoryLevel                       # weights stream from here
    core_bandwidth: Float[Array, ""]        # B/s one core (unit) can stream from DRAM
    convert_ops: Float[Array, ""]           # lane-ops per converted element (de/quant)
    dequant_ops: Float[Array, ""]           # lane-ops per weight to dequantize (MAC mode)
    host_flops: Float[Array, ""]            # achieved FLOP/s of the host for other rows
    host_energy_per_flop: Float[Array, ""]  # J/FLOP
    dispatch_overhead: Float[Array, ""]     # s per launch (thread barrier / dispatch)
    energy_per_lookup: Float[Array, ""]     # J per table read (MAC mode: per multiply)
    energy_per_add: Float[Array, ""]        # J per accumulate / build add
    static_power: Float[Array, ""]          # W
    base_area: Float[Array, ""]             # m^2 of everything but the LUT datapath
    adder_area: Float[Array, ""]            # m^2 per adder at the activation format
    mux_area_per_bit: Float[Array, ""]      # m^2 per 2:1 mux bit
    register_area_per_bit: Float[Array, ""]  # m^2 per table register bit
    multiplier_area: Float[Array, ""]       # m^2 per multiplier (MAC mode)
    max_weight_bits: float = eqx.field(static=True)
    max_act_bits: float = eqx.field(static=True)
    encoding: str = eqx.field(static=True, default="bit-serial")
    datapath: str = eqx.field(static=True, default="lut")
    mirror: bool = eqx.field(static=True, default=False)
    k_split: bool = eqx.field(static=True, default=False)
    title: str = eqx.field(static=True, default="")
    node: str = eqx.field(static=True, default=tech.REFERENCE_NODE)
    memory_kind: str = eqx.field(static=True, default="ddr5")
    package: str = eqx.field(static=True, default="")

    #: Fields moved by `perfmodel.hardware.rescale_node`.
    NODE_SCALED = {
        "logic": ("base_area", "adder_area", "mux_area_per_bit", "register_area_per_bit",
                  "multiplier_area"),
        "energy": ("energy_per_lookup", "energy_per_add", "host_energy_per_flop",
                   "spill_energy_per_bit", "static_power")}

    @property
    def lut_efficiency(self):
        return from_odds(self.lut_odds)

    @property
    def representable_weight_bits(self) -> float:
        """Widest weight the tables take: max_weight_bits, or log2(3) for ternary."""
        if self.encoding == "ternary":
            return min(self.max_weight_bits, TERNARY_BITS + 1e-3)
        return self.max_weight_bits

    def default_mapping(self) -> LUTMapping:
        return LUTMapping(group_size=self.group_size)

    # ------------------------------------------------------------------ validation
    def check(self, ops: Ops | None = None, mapping: LUTMapping | None = None) -> None:
        check_positive_leaves(self, self.name)
        for label, g in (("group_size", self.group_size),
                         ("mapping.group_size", None if mapping is None else mapping.group_size)):
            if g is None or is_traced(g):
                continue
            if not np.all(np.asarray(g) >= 1.0):
                raise ModelInputError(
                    f"{self.name}.{label} = {float(np.min(np.asarray(g))):g} is invalid; the "
                    f"activation group size must be >= 1.")
        if ops is None or is_traced(ops.weight_bits):
            return
        lut_rows = np.array([k in LUT_KINDS for k in ops.kinds])
        if lut_rows.any():
            ab = np.asarray(ops.act_bits)[..., lut_rows]
            if np.any(ab > self.max_act_bits):
                raise ModelInputError(
                    f"act_bits = {float(ab.max()):g} exceeds the table entry format of "
                    f"{self.name}; act_bits must be in [1, {self.max_act_bits:g}].")
        check_capacity(ops, self.dram.capacity, f"{self.name}.dram.capacity",
                       "reduce batch, context or bits")

    # ------------------------------------------------------------------ the model
    def table_entries(self, g):
        """Entries of one table for a group of g activations."""
        if self.encoding == "ternary":
            return 0.5 * (3.0 ** g - 1.0)
        return 2.0 ** g * (0.5 if self.mirror else 1.0)

    def datapath_area(self, mapping: LUTMapping | None = None, *, hard: bool = False):
        """Area (m^2) of the lookup (or multiplier) datapath plus the base area."""
        g = self._group_size(mapping, hard)
        lanes_total = self.units * self.lanes
        if self.datapath == "mac":
            return self.base_area + lanes_total * (self.multiplier_area + self.adder_area)
        entries = self.table_entries(g)
        table = self.units * entries * (self.entry_bits * self.register_area_per_bit
                                        + self.adder_area)
        fetch = lanes_total * (jnp.maximum(entries - 1.0, 0.0) * self.entry_bits
                               * self.mux_area_per_bit + self.adder_area)
        return self.base_area + table + fetch

    def chip_area(self, mapping: LUTMapping | None = None, *, hard: bool = False):
        """Die area, m^2 (`datapath_area`: the LUT datapath plus the base area)."""
        return self.datapath_area(mapping, hard=hard)

    def peak_power(self, mapping=None, *, hard: bool = False):
        """W: every lane looking up and adding each cycle, the host at its FLOP rate,
        DRAM and the spill level at full bandwidth, plus static power."""
        lane_rate = self.units * self.lanes * self.clock
        return (lane_rate * (self.energy_per_lookup + self.energy_per_add)
                + self.host_flops * self.host_energy_per_flop
                + 8.0 * (self.dram.bandwidth * self.dram.energy_per_bit
                         + self.spill_bandwidth * self.spill_energy_per_bit)
                + self.static_power)

    def capital_cost(self, mapping: LUTMapping | None = None, *, hard: bool = False):
        """USD: the die (``datapath_area``, base included), DRAM and packaging."""
        area = self.datapath_area(mapping, hard=hard)
        package = self.package or tech.default_package(self.memory_kind)
        return (tech.die_cost(area, self.node)
                + tech.memory_cost(self.dram.capacity, self.memory_kind)
                + tech.package_cost(package, area))

    def _group_size(self, mapping, hard):
        g = (mapping or self.default_mapping()).group_size
        return jnp.round(g) if hard else g

    def cost(self, ops: Ops, mapping: LUTMapping | None = None, *, hard: bool = False) -> Cost:
        if mapping is not None and not isinstance(mapping, LUTMapping):
            raise ModelInputError(f"{self.name}: mapping must be a LUTMapping or None.")
        g = self._group_size(mapping, hard)
        # weight GEMMs run on the tables when the weights fit the encoding; wider weights
        # (e.g. 16-bit) fall back to the host, as T-MAC falls back to llama.cpp kernels
        lut = np.array([k in LUT_KINDS for k in ops.kinds], dtype=float) * smooth_threshold(
            ops.weight_bits, self.representable_weight_bits, hard=hard)
        host = 1.0 - lut
        G, m, n, k = ops.groups, ops.m, ops.n, ops.k
        rate = self.units * self.lanes * self.clock * self.lut_efficiency
        entries = self.table_entries(g)
        groups_k = smooth_ceil(k / g, hard=hard) if hard else k / g
        if self.encoding == "ternary":
            planes = jnp.ones_like(ops.weight_bits)
        else:
            planes = smooth_ceil(ops.weight_bits, hard=hard)
        convert = G * m * (k + n) * self.convert_ops
        if self.datapath == "mac":
            macs = G * m * n * k
            lane_ops = macs + G * n * k * self.dequant_ops + convert
            lookups = jnp.zeros_like(macs)
            e_dp = macs * (self.energy_per_lookup + self.energy_per_add)
        else:
            lookups = G * m * n * groups_k * planes
            builds = G * m * groups_k * entries
            combine = G * m * n * planes
            lane_ops = lookups + builds + combine + convert
            e_dp = (lookups * self.energy_per_lookup
                    + (lookups + builds + combine) * self.energy_per_add)
        e_dp = e_dp + convert * self.energy_per_add
        t_lut = lut * lane_ops / rate
        # tables of the m tokens live while each weight is read once (batch reuse)
        share = self.units if self.k_split else 1.0
        tables = m * groups_k * entries * self.entry_bits / 8.0 / share
        # share of lookups whose table is not resident (dimensionless, so the smooth
        # tail is negligible when the tables fit: ~1e-4 / (C / tables))
        spill = smooth_relu(1.0 - self.table_capacity / (tables + 1.0), 1.0, hard=hard)
        spill_bytes = lut * spill * lookups * SPILL_LINE_BYTES
        t_spill = spill_bytes / self.spill_bandwidth
        dram_bw = smooth_min(self.dram.bandwidth * self.dram.efficiency,
                             self.units * self.core_bandwidth, hard=hard)
        dram_bytes = ops.dram_bytes
        t_dram = dram_bytes / dram_bw
        t_host = host * ops.flops / self.host_flops
        overhead = ops.launches * self.dispatch_overhead
        energy_columns = (
            lut * e_dp,
            host * ops.flops * self.host_energy_per_flop,
            dram_bytes * 8.0 * self.dram.energy_per_bit,
            spill_bytes * 8.0 * self.spill_energy_per_bit,
        )
        return Cost.from_columns(
            (t_lut, t_spill, t_dram, t_host), overhead=overhead,
            energy_columns=energy_columns, static_power=self.static_power,
            area=self.datapath_area(mapping, hard=hard),
            components=("lut", "spill", "dram", "host"),
            energy_components=("lut", "host", "dram", "spill"), hard=hard,
            peak_power=self.peak_power(),
            capital_cost=self.capital_cost(mapping, hard=hard))


#: Benchmark case for `perfmodel bench --target sail`.
BENCH_CASE = dict(hardware="sail", workload="llama-2-7b", phase="decode", batch=1.0,
                  context=1024.0, wbits=4.0)


def from_spec(data: dict, label: str) -> LUT:
    from perfmodel.hardware._registry import technology_fields

    r = SpecReader(data, label)
    encoding = r.raw("lut", "encoding", default="bit-serial")
    if encoding not in ENCODINGS:
        raise ModelInputError(f"{label}: lut.encoding = {encoding!r}; valid: {list(ENCODINGS)}.")
    datapath = r.raw("lut", "datapath", default="lut")
    if datapath not in DATAPATHS:
        raise ModelInputError(f"{label}: lut.datapath = {datapath!r}; valid: {list(DATAPATHS)}.")
    num = lambda *p, **kw: jnp.asarray(r.number(*p, **kw))  # noqa: E731
    um2 = 1e-12
    hw = LUT(
        clock=num("lut", "clock", unit="_GHz"),
        units=num("lut", "units"),
        lanes=num("lut", "lanes"),
        lut_odds=jnp.asarray(to_odds(r.number("lut", "efficiency", hi=0.999))),
        group_size=num("lut", "group_size", lo=1.0),
        entry_bits=num("lut", "entry_bits"),
        table_capacity=num("lut", "table_capacity", unit="_KB"),
        spill_bandwidth=num("spill", "bandwidth", unit="_GB_s"),
        spill_energy_per_bit=num("spill", "energy", unit="_pJ_per_bit"),
        dram=MemoryLevel(
            bandwidth=num("memory", "dram", "bandwidth", unit="_GB_s"),
            capacity=num("memory", "dram", "capacity", unit="_GB"),
            energy_per_bit=num("memory", "dram", "energy", unit="_pJ_per_bit"),
            odds=jnp.asarray(to_odds(r.number("memory", "dram", "efficiency", hi=0.999)))),
        core_bandwidth=num("memory", "dram", "core_bandwidth", unit="_GB_s"),
        convert_ops=num("lut", "convert_ops"),
        dequant_ops=num("lut", "dequant_ops", default=1.0),
        host_flops=jnp.asarray(r.number("host", "flops_gflops") * 1e9),
        host_energy_per_flop=num("host", "energy", unit="_pJ_per_flop"),
        dispatch_overhead=num("host", "dispatch_overhead", unit="_us"),
        energy_per_lookup=num("energy", "lookup", unit="_pJ"),
        energy_per_add=num("energy", "add", unit="_pJ"),
        static_power=num("power", "static", unit="_W"),
        base_area=num("area", "base", unit="_mm2"),
        adder_area=jnp.asarray(r.number("area", "adder_um2") * um2),
        mux_area_per_bit=jnp.asarray(r.number("area", "mux_per_bit_um2") * um2),
        register_area_per_bit=jnp.asarray(r.number("area", "register_per_bit_um2") * um2),
        multiplier_area=jnp.asarray(r.number("area", "multiplier_um2") * um2),
        max_weight_bits=r.number("lut", "max_weight_bits"),
        max_act_bits=r.number("lut", "max_act_bits"),
        encoding=encoding,
        datapath=datapath,
        mirror=bool(r.raw("lut", "mirror", default=False)),
        k_split=bool(r.raw("lut", "k_split", default=False)),
        **technology_fields(r),
        **r.identity(),
    )
    r.finish_target()
    return hw
