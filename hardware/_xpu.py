"""GPU / CPU ("xPU") target: a roofline per op over compute and a memory hierarchy.

Model, per op row and instance (all SI; see docs/models.md for the derivation):

    peak      = peak FLOP/s of the fastest datapath with bits >= compute_bits, times
                its efficiency relative to eta_compute where one is measured
                (``efficiency.fp8``: datapath_scale); matmul rows; element-wise rows
                use the fp32 vector datapath
    tiles     = groups * ceil(m / tile_m) * ceil(n / tile_n)   (output tiles)
    waves     = tiles / units
    pad_eff   = m / (MMA_M * ceil(m / MMA_M))                   (matrix-instruction row padding;
                                                                 MMA_M = mma_rows, 16 on tensor cores)
    split_eff = max_{s in SPLIT_K} q(s * waves) * k_s / (k_s + k_half),  k_s = k / s,
                q(x) = x / ceil(x)     (wave quantization and pipeline fill per tile,
                                        at the best split-K factor s)
    t_compute = flops / (peak * eta_compute * split_eff * pad_eff)
    t_dram    = dram_bytes / (B_dram * eta_dram) + t_dram_latency
    t_l2      = l2_bytes / (B_l2 * eta_l2),
                l2_bytes = [act_in * ceil(n / tile_n) + (weights + kv_read) * ceil(m / tile_m)]
                           / l2_reuse + act_out + kv_write   (inputs re-read per output
                           tile; a cluster of l2_reuse CTAs shares each read by multicast);
                l2_bytes = dram_bytes for fused attention rows (their K/V reads already
                count one per query block: FlashAttention's tiling)
    t_offload = f_over * (weights + kv_read) / (B_off * eta_off),
                f_over = relu(1 - C_dram / (W + KV))            (share that does not fit)
    t_link    = comm_bytes / (B_link * eta_link)
    t         = smooth_max(t_compute, t_dram, t_l2, t_offload, t_link)
                + launches * t_launch + [comm] * t_link_latency
    E         = flops * e_flop * (compute_bits / 16) + 8 * sum_level bytes_level * e_level
                + P_static * latency

``smooth_max`` / ``ceil`` / ``relu`` are exact with ``hard=True``.

Area, peak power and cost (docs/cost.md; static coefficients at the design's ``node``):

    P16       = max_d peak_d x bits_d / 16     (16-bit-equivalent throughput: one matrix
                                                array serves every width)
    n_phy     = B_dram / interface_bandwidth(memory_kind)      (HBM stacks, GDDR devices)
    area      = [a_compute P16 + a_unit units + a_bit 8 C_l2 + a_phy n_phy] / (1 - spare)
                + a_link 2 B_link + a_base
    P_peak    = P16 e_flop + 8 (B_dram e_dram + B_l2 e_l2 + 2 B_link e_link) + P_static
    cost      = die_cost(area, node) + C_dram price(memory_kind) + package
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from perfmodel._errors import ModelInputError
from perfmodel._ops import Ops
from perfmodel._report import Cost
from perfmodel._smooth import smooth_ceil, smooth_relu, smooth_step
from perfmodel._target import AbstractUnit, check_positive_leaves, check_capacity
from perfmodel.hardware import _technology as tech

#: Datapaths a device may have, and their operand bits. A row runs on the fastest
#: datapath whose width holds its `compute_bits`.
DATATYPE_BITS = {"int4": 4.0, "int8": 8.0, "fp8": 8.0, "fp16": 16.0, "fp32": 32.0}
#: Rows of these kinds run on matrix units (tensor cores / SIMD dot products).
MATMUL_KINDS = frozenset({
    "qkv_proj", "attn_score", "attn_value", "attn_fused", "out_proj", "ffn_up", "ffn_down",
    "moe_router", "moe_up", "moe_down", "lm_head", "conv", "fc", "ssm_proj", "ssm_chunk"})
#: Tensor-core MMA row granularity (PTX ``mma.m16n8k16``): a GEMM with m < 16 pads rows.
MMA_M = 16.0
#: Split-K factors a GEMM library may use (cuBLAS/CUTLASS split the inner dimension
#: when there are fewer output tiles than SMs); the best one is taken per row. Assumed
#: candidate set (powers of two up to 8).
SPLIT_K = (1.0, 2.0, 4.0, 8.0)
#: Width (in bits) of the smooth step that decides if a datapath can hold compute_bits.
_BITS_STEP_WIDTH = 0.05
#: Area of the matrix datapaths per 16-bit-equivalent FLOP/s at 7 nm, m^2 s (assumed:
#: 0.5 mm^2 per TFLOP/s, about 8x Horowitz's 45 nm FP16 multiply + add (1640 + 1360 um^2,
#: ISSCC 2014) scaled to 7 nm (x 1/17, Stillmaker & Baas 2017) per FMA at 1.41 GHz, the
#: factor covering operand registers, fp32 accumulation and wiring; of the order of
#: TPUv4i's matrix units).
COMPUTE_AREA_7NM = 0.5e-6 / 1e12
#: Area of one SM / core outside the matrix datapath (register files, L1, schedulers,
#: vector ALUs, its share of the on-chip network) at 7 nm, m^2 (fitted: the remainder of
#: the A100's 826 mm^2 die, https://fudzilla.com/news/ai/50831-nvidia-officially-unveils-
#: the-amper-based-ga100-gpu, after its matrix datapaths, L2, HBM PHYs and NVLink, over
#: its 128 SMs; tests/test_area_power_cost.py reproduces it and predicts the H100).
UNIT_AREA_7NM = 4.12e-6
#: Share of an SRAM macro that is bitcells (assumed 0.5: sense amplifiers, decoders,
#: redundancy and tags take the rest).
SRAM_ARRAY_EFFICIENCY = 0.5
#: Die area of device-to-device links (SerDes + controller) per B/s of bidirectional
#: bandwidth, m^2 s / B (assumed: 0.05 mm^2 per GB/s, 30 mm^2 for NVLink3's 600 GB/s).
LINK_AREA = 0.05e-6 / 1e9
#: Exponent of per-FLOP energy in operand bits (assumed linear: operand delivery
#: dominates datapath energy in GPUs; Horowitz 45 nm multipliers alone scale ~bits^2).
ENERGY_BITS_EXPONENT = 1.0


def to_odds(fraction):
    """Fractions (efficiencies) are stored as odds f / (1 - f) in (0, inf): every float
    leaf can then be scaled by any positive factor and stay a valid design, and the
    fraction never exceeds 1 (roofline bounds hold)."""
    return fraction / (1.0 - fraction)


def from_odds(odds):
    return odds / (1.0 + odds)


class MemoryLevel(eqx.Module):
    """One level of the memory hierarchy (SI units)."""

    bandwidth: Float[Array, ""]        # peak bytes/s
    capacity: Float[Array, ""]         # bytes
    energy_per_bit: Float[Array, ""]   # J/bit
    odds: Float[Array, ""]             # achievable/peak bandwidth as odds (see to_odds)

    @property
    def efficiency(self):
        """Achievable / peak bandwidth, in (0, 1)."""
        return from_odds(self.odds)


class XPU(AbstractUnit):
    """A GPU or CPU: datatype-dependent peaks, a DRAM + L2 hierarchy, an optional offload
    tier (host DRAM or flash) and an interconnect for collectives.

    Build one with `perfmodel.hardware.preset(name)` or `perfmodel.hardware.load(path)`.
    Every float leaf may be scaled by [0.5, 2] and remains a valid design.
    """

    peak_flops: Float[Array, " dtypes"]      # FLOP/s per datatype in `datatypes`
    units: Float[Array, ""]                  # SMs or cores
    tile_m: Float[Array, ""]
    tile_n: Float[Array, ""]
    l2_reuse: Float[Array, ""]               # CTAs sharing one L2 read (cluster multicast)
    energy_per_flop: Float[Array, ""]        # J/FLOP at 16-bit operands
    dram: MemoryLevel
    l2: MemoryLevel
    offload: MemoryLevel | None
    link_bandwidth: Float[Array, ""]         # B/s per direction, per device
    link_odds: Float[Array, ""]              # achieved/peak link bandwidth, as odds
    link_latency: Float[Array, ""]           # s per collective
    link_energy_per_bit: Float[Array, ""]
    static_power: Float[Array, ""]           # W
    tdp: Float[Array, ""]                    # W (reported; for power constraints)
    compute_odds: Float[Array, ""]           # large-GEMM achieved/peak, as odds
    k_half: Float[Array, ""]                 # inner-dimension length of half efficiency
    launch_overhead: Float[Array, ""]        # s per kernel launch
    dram_latency: Float[Array, ""]           # s, fixed ramp of a memory-bound kernel
    datatypes: tuple[str, ...] = eqx.field(static=True)
    name: str = eqx.field(static=True)
    bibtex: str = eqx.field(static=True)
    title: str = eqx.field(static=True, default="")
    offload_kind: str = eqx.field(static=True, default="")
    # rows of one matrix instruction: a GEMM with fewer rows pads to it (16 for tensor
    # cores, `MMA_M`; 1 for a CPU's SIMD FMAs, which broadcast one row at a time)
    mma_rows: float = eqx.field(static=True, default=MMA_M)
    # per datatype (in `datatypes` order), its large-GEMM efficiency over
    # `compute_efficiency` (1 where the datapath reaches the same share of its peak;
    # spec key ``efficiency.<datatype>``: a measured share of that datapath's peak)
    datapath_scale: tuple = eqx.field(static=True, default=())
    # technology, area and cost (static: technology constants, not design knobs; SI at
    # ``node``; docs/cost.md)
    node: str = eqx.field(static=True, default=tech.REFERENCE_NODE)
    memory_kind: str = eqx.field(static=True, default="ddr5")
    package: str = eqx.field(static=True, default="")       # "" -> by memory kind
    compute_area: float = eqx.field(static=True, default=COMPUTE_AREA_7NM)
    unit_area: float = eqx.field(static=True, default=UNIT_AREA_7NM)
    sram_bit_area: float = eqx.field(
        static=True, default=tech.NODES["7nm"].sram_bitcell / SRAM_ARRAY_EFFICIENCY)
    phy_area: float | None = eqx.field(static=True, default=None)  # None -> memory kind's
    link_area: float = eqx.field(static=True, default=LINK_AREA)
    base_area: float = eqx.field(static=True, default=0.0)
    spare_fraction: float = eqx.field(static=True, default=0.0)

    #: Fields moved by `perfmodel.hardware.rescale_node` (logic area, SRAM area, energy
    #: per operation; static power follows energy).
    NODE_SCALED = {
        "logic": ("compute_area", "unit_area", "base_area"),
        "sram": ("sram_bit_area",),
        "energy": ("energy_per_flop", "l2.energy_per_bit", "static_power")}

    @property
    def compute_efficiency(self):
        """Large-GEMM achieved / peak compute, in (0, 1)."""
        return from_odds(self.compute_odds)

    @property
    def link_efficiency(self):
        return from_odds(self.link_odds)

    # ------------------------------------------------------------------ validation
    def check(self, ops: Ops | None = None) -> None:
        check_positive_leaves(self, self.name)
        tech.node(self.node)
        tech.memory_kind(self.memory_kind)
        if "fp32" not in self.datatypes:
            raise ModelInputError(f"{self.name}.peak must include fp32 (the vector datapath).")
        if ops is None:
            return
        widest = max(DATATYPE_BITS[d] for d in self.datatypes)
        bits = np.asarray(ops.compute_bits)
        if np.any(bits > widest):
            raise ModelInputError(
                f"compute bit-width {bits.max():g} exceeds the widest datapath of "
                f"{self.name} ({widest:g} bits); bit-widths must be in [1, {widest:g}].")
        if self.offload is None:
            check_capacity(ops, self.dram.capacity, f"{self.name}.dram.capacity",
                           "no offload tier is configured; reduce batch/context/bits or add "
                           "an [offload] tier")

    def serving_capacity(self):
        """DRAM capacity when there is no offload tier (a serving engine then admits only
        the sequences that fit, `perfmodel.serve`); None with an offload tier, which
        streams what does not fit."""
        return self.dram.capacity if self.offload is None else None

    # ------------------------------------------------------------------ the model
    def datapath_peak(self, compute_bits, *, hard: bool):
        """[rows] peak FLOP/s of the fastest datapath whose operand width holds
        ``compute_bits`` (e.g. 8-bit compute on a V100 uses its fp16 tensor cores, not
        the slower int8 dp4a path).

        Eligibility is a smooth step in bits (exact with ``hard``); the choice among
        eligible datapaths is the exact maximum of their peaks in both modes: it is
        continuous in the parameters (kinks only where two peaks tie) and costs a
        compare per datapath, where a soft-argmax halved the benchmark's throughput."""
        # one [rows] column per datatype, folded pairwise: no [rows, dtypes] array, whose
        # slicing and tie-splitting max gradient cost more than the roofline itself
        scale = self.datapath_scale or (1.0,) * len(self.datatypes)
        peaks = [smooth_step(DATATYPE_BITS[d] - compute_bits + 0.5, _BITS_STEP_WIDTH,
                             hard=hard) * (self.peak_flops[i] * scale[i])  # step: ops only
                 for i, d in enumerate(self.datatypes)]
        return functools.reduce(jnp.maximum, peaks)

    def split_k_efficiency(self, waves, k, *, hard: bool):
        """[rows] wave x pipeline efficiency of the best split of k over `SPLIT_K`.

        Splitting the inner dimension in ``s`` parts (split-K, as cuBLAS does for skinny
        GEMMs with fewer output tiles than SMs) multiplies the work items by ``s`` and
        shortens each tile's k loop: ``eff_s = q(s waves) * (k/s) / (k/s + k_half)``,
        ``q(x) = x / ceil(x)``. The library picks the best ``s``: the exact max over the
        static candidates, in both modes (continuous; kinks where two candidates tie).
        The partial-sum reduction traffic (``s x m x n`` fp32) is not charged."""
        effs = []
        for s in SPLIT_K:  # static, 4 candidates
            w = waves * s
            k_s = k * (1.0 / s)
            effs.append(w / smooth_ceil(w, hard=hard) * (k_s / (k_s + self.k_half)))
        # pairwise maximum, not jnp.max over a stack: the same value, but its gradient
        # is a select per pair where the stacked max's tie-splitting rule costs a
        # reduction and a division per candidate (a third of the vmapped
        # value-and-gradient time on CPU)
        return functools.reduce(jnp.maximum, effs)

    # ------------------------------------------------------------------ area, power, cost
    def peak_16bit_flops(self):
        """16-bit-equivalent peak of the widest-throughput datapath, max_d peak_d x
        bits_d / 16, FLOP/s (exact maximum: one matrix array serves every width)."""
        return functools.reduce(jnp.maximum, [
            self.peak_flops[i] * (DATATYPE_BITS[d] / 16.0)
            for i, d in enumerate(self.datatypes)])

    def memory_interfaces(self):
        """Memory interfaces (HBM stacks, GDDR devices, DDR channels) the DRAM bandwidth
        needs at the memory kind's top rate (real, not rounded)."""
        return self.dram.bandwidth / tech.memory_kind(self.memory_kind).interface_bandwidth

    def area_breakdown(self) -> dict:
        """Die area by part, m^2 (harvested spares included in each part)."""
        phy = (self.phy_area if self.phy_area is not None
               else tech.memory_kind(self.memory_kind).phy_area)
        inv = 1.0 / (1.0 - self.spare_fraction)
        return {
            "compute": self.compute_area * self.peak_16bit_flops() * inv,
            "units": self.unit_area * self.units * inv,
            "l2": self.sram_bit_area * 8.0 * self.l2.capacity * inv,
            "memory_phy": phy * self.memory_interfaces() * inv,
            "links": self.link_area * 2.0 * self.link_bandwidth,
            "base": jnp.asarray(self.base_area),
        }

    def chip_area(self, mapping=None, *, hard: bool = False):
        """Die area, m^2."""
        return sum(self.area_breakdown().values())

    def peak_power(self, mapping=None, *, hard: bool = False):
        """W: every datapath's widest peak, DRAM, L2 and both link directions at full
        rate, plus static power (the offload tier is outside the device)."""
        return (self.peak_16bit_flops() * self.energy_per_flop
                + 8.0 * (self.dram.bandwidth * self.dram.energy_per_bit
                         + self.l2.bandwidth * self.l2.energy_per_bit
                         + 2.0 * self.link_bandwidth * self.link_energy_per_bit)
                + self.static_power)

    def capital_cost(self, mapping=None, *, hard: bool = False):
        """USD: the die, the DRAM at its price per GB, and packaging."""
        area = self.chip_area()
        package = self.package or tech.default_package(self.memory_kind)
        stacks = self.memory_interfaces() if package == "2.5d" else 0.0
        return (tech.die_cost(area, self.node)
                + tech.memory_cost(self.dram.capacity, self.memory_kind)
                + tech.package_cost(package, area, stacks))

    def cost(self, ops: Ops, mapping=None, *, hard: bool = False) -> Cost:
        if mapping is not None:
            raise ModelInputError("the xpu target has no mapping choices; pass mapping=None.")
        # Static row partition: matmul rows first, then element-wise rows, so the
        # GEMM-efficiency terms are computed on matmul rows only and joined by a
        # concatenation (this is the vmapped hot path; no scatter, and reciprocals of
        # per-design scalars are taken once so each row costs multiplies).
        ops, n_mm, undo = ops.partition(MATMUL_KINDS)
        mm, ew = slice(0, n_mm), slice(n_mm, None)
        is_comm = np.array([k == "allreduce" for k in ops.kinds])
        inv_dram = 1.0 / (self.dram.bandwidth * self.dram.efficiency)
        inv_l2 = 1.0 / (self.l2.bandwidth * self.l2.efficiency)
        inv_eff = 1.0 / self.compute_efficiency

        dram_bytes = ops.dram_bytes
        t_dram = dram_bytes * inv_dram + self.dram_latency
        t_parts, l2_parts = [], []
        if n_mm:
            m, n, k = ops.m[mm], ops.n[mm], ops.k[mm]
            peak = self.datapath_peak(ops.compute_bits[mm], hard=hard)
            tiles_m = smooth_ceil(m * (1.0 / self.tile_m), hard=hard)
            tiles_n = smooth_ceil(n * (1.0 / self.tile_n), hard=hard)
            waves = ops.groups[mm] * tiles_m * tiles_n * (1.0 / self.units)
            pad_eff = m / (self.mma_rows * smooth_ceil(m / self.mma_rows, hard=hard))
            t_parts.append(ops.flops[mm] * inv_eff
                           / (peak * pad_eff * self.split_k_efficiency(waves, k, hard=hard)))
            gemm_l2 = ((ops.act_in_bytes[mm] * tiles_n
                        + (ops.weight_bytes[mm] + ops.kv_read_bytes[mm]) * tiles_m)
                       * (1.0 / self.l2_reuse)
                       + ops.act_out_bytes[mm] + ops.kv_write_bytes[mm])
            fused = np.array([k == "attn_fused" for k in ops.kinds[:n_mm]])
            if fused.any():
                # fused (flash) attention: the row's K/V bytes already count one read per
                # query block, through L2 (SRAM within the block); re-reading them per
                # output row tile as a GEMM would charges the prompt length cubed
                gemm_l2 = jnp.where(fused, dram_bytes[mm], gemm_l2)
            l2_parts.append(gemm_l2)
        if n_mm < ops.rows:
            fp32 = self.peak_flops[self.datatypes.index("fp32")]
            t_parts.append(ops.flops[ew] * (inv_eff / fp32))
            l2_parts.append(dram_bytes[ew])
        t_compute = jnp.concatenate(t_parts)
        l2_bytes = jnp.concatenate(l2_parts)
        t_l2 = l2_bytes * inv_l2
        terms = [t_compute, t_dram, t_l2]
        names = ["compute", "dram", "l2"]

        footprint = ops.weight_footprint + ops.kv_footprint
        e_off = jnp.zeros_like(t_dram)
        if self.offload is not None:
            # +1 B keeps an empty footprint finite; the smooth relu's tail is
            # sharpness^2 * footprint / (4 C) there, i.e. negligible.
            frac = smooth_relu(1.0 - self.dram.capacity / (footprint + 1.0), 1.0, hard=hard)
            off_bytes = frac * (ops.weight_bytes + ops.kv_read_bytes)
            terms.append(off_bytes / (self.offload.bandwidth * self.offload.efficiency))
            names.append("offload")
            e_off = off_bytes * 8.0 * self.offload.energy_per_bit
        overhead = ops.launches * self.launch_overhead
        if is_comm.any():
            terms.append(ops.comm_bytes / (self.link_bandwidth * self.link_efficiency))
            names.append("interconnect")
            overhead = overhead + jnp.where(is_comm, self.link_latency, 0.0)

        e_flop = self.energy_per_flop * (ops.compute_bits / 16.0) ** ENERGY_BITS_EXPONENT
        energy_columns = (
            ops.flops * e_flop,
            dram_bytes * 8.0 * self.dram.energy_per_bit,
            l2_bytes * 8.0 * self.l2.energy_per_bit,
            e_off,
            ops.comm_bytes * 8.0 * self.link_energy_per_bit,
        )
        cost = Cost.from_columns(
            terms, overhead=overhead, energy_columns=energy_columns,
            static_power=self.static_power, area=self.chip_area(), components=names,
            energy_components=("compute", "dram", "l2", "offload", "interconnect"),
            hard=hard, peak_power=self.peak_power(), capital_cost=self.capital_cost())
        return cost if undo is None else cost.take(undo)
