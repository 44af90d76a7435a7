"""DRAM processing-in-memory target: in-bank, bank-group and logic-die (buffer-die) PIM.

One final class, `DramPim`, covers Samsung HBM-PIM (Aquabolt-XL), SK hynix GDDR6-AiM,
PIM-GPT, AttAcc's bank / bank-group / buffer-die HBM3-PIM and Duplex's Logic-PIM through
a static ``placement`` in {"bank", "bank_group", "logic_die"}: where the MAC units sit,
hence which bandwidth feeds them and how far each bit travels. Docs:
docs/families/dram_pim.md.

Model, per op row and instance (SI units). A *site* is where one group of PIM units
sits: a bank, a bank group, or a channel's slice of the logic die.

    sites     = channels x {banks | bank_groups | 1}                (by placement)
    peak      = 2 x sites x units_per_site x mac_lanes x f_pim      (FLOP/s)
    B_int     = eta x {channels x banks x column_bits / 8 / tCCD          (bank)
                       channels x bank_groups x column_bits / 8 / tCCD    (bank group)
                       tsv_count x tsv_rate / 8}                          (logic die)
    mapping   : the matrix (n_tot = n x groups output rows, k inputs) is split over
                split_k = 2^s sites along k and split_n = sites / split_k along n
                (s = mapping.k_split_log2 in [0, floor(log2(sites))], rounded with
                hard=True;
                relaxed as the expected value over the two neighbouring integer splits,
                cost(s) = (1 - t) cost(s0) + t cost(s0 + 1), t = s - s0: exact at
                integers, its derivative the finite difference to the next split)
    util      = q(n_tot / split_n) x q(k / split_k),  q(x) = x / ceil(x)
                (share of the sites' slots holding work: quantization over sites)
    passes    = ceil(m / tokens_per_pass)   (batch > 1 re-streams the stationary operand
                once per group of tokens the lanes' input registers hold: op/B ~ batch)
    bytes_int = (weight_bytes + kv_read_bytes) x passes
    t_compute = refresh x flops / (peak x util)
    t_stream  = refresh x bytes_int / (B_int x util)
    pad       = ceil(x) / x,  x = smooth_max(k / split_k x weight_bits / 8 / row_bytes, 1)
    rows_bank = bytes_int x pad / (row_bytes x channels x banks x util)   (rows per bank)
    t_act     = refresh x rows_bank x (tRCD + tRP)
    t_memory  = t_stream + t_act  (bank: all banks step in lockstep, ACT/PRE stall them)
                t_stream          (bank group, logic die: bank interleaving hides ACT/PRE,
                                   t_act is its own overlapping term)
    refresh   = tREFI / (tREFI - tRFC)                              (time lost to refresh)
    t_bus     = [act_in / fan + act_out x split_k / channels
                 + kv_write / channels] / B_channel   (input broadcast, partial-sum
                 readout, KV append over each channel's external bus; serial with the
                 GEMV, so it is part of the non-overlapping overhead)
    fan       = min(groups, channels)                   (bank, bank group: a channel's
                 banks hear only its own bus, so each group's input crosses every
                 channel holding that group)
                min(groups, stacks) x channels / stacks (logic die: the input crosses
                 each stack's interface once, all its channels in parallel, and the
                 logic die forwards it to the stack's slices)
    host rows (softmax, norms, activations, embed, all-reduce, ...) run on the host /
    ASIC:  t_host_compute = flops / F_host,  t_host_memory = dram_bytes / B_host
    t         = smooth_max(t_compute, t_memory, t_act, t_host_compute, t_host_memory)
                + launches x t_launch + t_bus

Energy per bit by how far data travels (O'Connor et al., MICRO 2017 via the AttAcc
simulator): every stationary bit read pays the cell read leg, every opened row pays
activate/precharge for row_bytes x 8 bits; bank-group PIM adds the bank-group mux leg,
logic-die PIM adds global IO and TSV legs; bits that cross to the host (broadcast,
readout, KV writes, host rows' operands) pay every leg up to the interposer / board IO.
Plus MAC energy (per 16-bit MAC, scaled by compute_bits / 16), host energy per FLOP,
and static power x latency. ``smooth_*`` are exact with ``hard=True``.

Area, peak power and cost (docs/cost.md; the host / ASIC is outside the device):

    lanes     = sites x units_per_site x mac_lanes
    A_pim     = lanes x a_lane    (a_lane: DRAM array displaced per lane, in-bank / bank
                                   group; a logic lane at ``node`` on the logic die)
    area      = 8 C a_bit + A_pim
    stream    = soft_min(B_int, MAC/s x datapath_bits / 8)   (bytes the lanes can take)
    P_pim     = 8 stream e_stationary + MAC/s e_mac (datapath_bits / 16)
    P_normal  = 8 channels B_channel (every leg to the interposer)
    P_peak    = max(P_pim, P_normal) + P_static     (the two modes are exclusive)
    cost      = price(dram_kind) x (C + A_pim,in-DRAM / (8 a_bit)) [+ die_cost(A_pim, node)]
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from perfmodel._errors import ModelInputError
from perfmodel._ops import Ops
from perfmodel._report import Cost
from perfmodel._smooth import bounded, smooth_ceil, smooth_max, smooth_maximum
from perfmodel._spec import SpecReader
from perfmodel._target import AbstractUnit, check_positive_leaves, is_traced, check_capacity
from perfmodel.hardware import _technology as tech
from perfmodel.hardware._bonded3d import soft_min
from perfmodel.hardware._xpu import COMPUTE_AREA_7NM

#: Rows of these kinds run on the PIM MAC units (GEMV/GEMM against a stationary operand
#: held in DRAM: weights or the KV cache); every other kind runs on the host / ASIC.
#: `perfmodel.hardware.MATMUL_KINDS` (hardware/_xpu.py) less Mamba-2's chunked SSD
#: (``ssm_chunk``), whose operands are all activations: nothing stationary in DRAM.
PIM_KINDS = frozenset({
    "qkv_proj", "attn_score", "attn_value", "attn_fused", "out_proj", "ffn_up", "ffn_down",
    "moe_router", "moe_up", "moe_down", "lm_head", "conv", "fc", "ssm_proj"})
#: Attention kinds: their stationary operand is a request's KV cache, held in one channel.
ATTENTION_KINDS = frozenset({"attn_score", "attn_value", "attn_fused"})
#: Placements of the PIM compute units, nearest the cells first.
PLACEMENTS = ("bank", "bank_group", "logic_die")
#: Energy components reported, by how far the data travels (then MAC and host work).
ENERGY_COMPONENTS = ("cell", "bank_group", "global_io", "tsv", "interposer", "mac", "host")
#: Time components (overlapping); the bus transfers and launches are the overhead.
TIME_COMPONENTS = ("pim_compute", "pim_memory", "row_activation", "host_compute",
                   "host_memory")
#: MAC energy is given per 16-bit MAC; other widths scale linearly (assumed, as the
#: xPU family's ENERGY_BITS_EXPONENT).
MAC_REFERENCE_BITS = 16.0
#: Refresh may take at most this share of time (guards tREFI - tRFC > 0 when leaves are
#: scaled; real parts lose 5-10 %). Dimensionless, chosen.
MAX_REFRESH_SHARE = 0.9
#: DRAM array displaced per in-bank / bank-group MAC lane, in bits of the device's own
#: array (fitted: Samsung's HBM-PIM PIM dies hold 4 Gb instead of 8 Gb because the PCUs
#: take the space of the other half of the banks' cells,
#: https://www.times24h.com/samsung-creates-ram-with-integrated-ai-processing-hardware/
#: (from its ISSCC 2021 presentation); 4 pseudo-channels x 8 PCUs x 16 lanes = 512 lanes
#: per PIM die: 4 Gb / 512 = 2^23 bits per lane; tests/test_area_power_cost.py).
LANE_DRAM_BITS = 2.0 ** 23
#: A MAC lane on a logic die at 7 nm, m^2: the xPU's matrix-datapath area per FLOP/s
#: (`perfmodel.hardware._xpu.COMPUTE_AREA_7NM`) x 2 FLOP x 1.41 GHz (an A100 clock).
LANE_AREA_LOGIC_7NM = COMPUTE_AREA_7NM * 2.0 * 1.41e9


class DramPimMapping(eqx.Module):
    """Relaxed mapping of matrices onto the PIM sites.

    ``k_split_log2``: log2 of the number of sites that split each matrix along its input
    (k) dimension; the remaining sites split the output rows. 0 (default) keeps whole
    weight rows in one bank (best row-buffer locality, one partial sum per output);
    larger values shorten per-bank rows and multiply the partial sums read out over the
    channel bus. Continuous while optimizing, rounded to an integer with ``hard=True``,
    clipped to [0, floor(log2(sites))] (the power-of-two splits that fit the sites).
    """

    k_split_log2: Float[Array, ""]


def default_mapping() -> DramPimMapping:
    return DramPimMapping(k_split_log2=jnp.asarray(0.0))


class DramPim(AbstractUnit):
    """A DRAM-PIM device (or a set of identical stacks/chips acting as one device).

    Build one with `perfmodel.hardware.preset("hbm-pim")` (or "aim", "pim-gpt",
    "attacc-pim-bank", ...). Float leaves are SI; every one may be scaled by [0.5, 2]
    and remains a valid design. ``placement`` (static) selects the bandwidth source and
    the energy legs; ``tsv_count`` / ``tsv_rate`` are used by "logic_die" only.
    """

    channels: Float[Array, ""]              # (pseudo-)channels in the device
    banks: Float[Array, ""]                 # banks per channel
    bank_groups: Float[Array, ""]           # bank groups per channel
    units_per_site: Float[Array, ""]        # PIM compute units per site (0.5: 1 per 2 banks)
    mac_lanes: Float[Array, ""]             # MAC lanes per unit (SIMD width)
    pim_clock: Float[Array, ""]             # Hz
    column_bits: Float[Array, ""]           # bits per column access (prefetch width)
    tccd: Float[Array, ""]                  # s between column accesses at one site
    tsv_count: Float[Array, ""]             # data TSVs of the device (logic die)
    tsv_rate: Float[Array, ""]              # bits/s per TSV (logic die)
    bandwidth_odds: Float[Array, ""]        # achieved / peak internal bandwidth, as odds
    row_bytes: Float[Array, ""]             # DRAM page (row buffer) per bank, bytes
    trcd: Float[Array, ""]                  # s, activate to column command
    trp: Float[Array, ""]                   # s, precharge
    trfc: Float[Array, ""]                  # s, refresh cycle
    trefi: Float[Array, ""]                 # s, refresh interval
    tokens_per_pass: Float[Array, ""]       # input vectors held per weight read
    channel_bandwidth: Float[Array, ""]     # B/s external bus per channel
    stacks: Float[Array, ""]                # stacks / chips sharing the channels (logic die:
                                            # one input broadcast per stack interface)
    capacity: Float[Array, ""]              # bytes
    cell_activate_energy: Float[Array, ""]  # J/bit of an opened row (activate+precharge)
    cell_read_energy: Float[Array, ""]      # J/bit, cell to bank edge
    bank_group_energy: Float[Array, ""]     # J/bit, column decoder -> bank-group mux
    global_io_energy: Float[Array, ""]      # J/bit, bank-group mux -> global IO
    tsv_energy: Float[Array, ""]            # J/bit, TSV (or on-die path to the pads)
    interposer_energy: Float[Array, ""]     # J/bit, interposer / board IO to the host
    mac_energy: Float[Array, ""]            # J per 16-bit MAC
    host_flops: Float[Array, ""]            # FLOP/s of the host / ASIC (non-linear rows)
    host_bandwidth: Float[Array, ""]        # B/s host <-> PIM memory
    host_energy_per_flop: Float[Array, ""]  # J/FLOP on the host / ASIC
    static_power: Float[Array, ""]          # W (background DRAM + PIM logic + ASIC)
    launch_overhead: Float[Array, ""]       # s per PIM kernel / host dispatch
    area: Float[Array, ""] | None           # m^2 (PIM logic area) where the paper gives it
    placement: str = eqx.field(static=True)
    name: str = eqx.field(static=True)
    bibtex: str = eqx.field(static=True)
    datapath_bits: float = eqx.field(static=True, default=16.0)
    # max over mean of the channels' attention work (each request's KV lives in one
    # channel, so uneven context lengths leave some channels busier); a property of the
    # request mix and the channel-assignment policy, not a design knob: static
    attention_imbalance: float = eqx.field(static=True, default=1.0)
    title: str = eqx.field(static=True, default="")
    # technology (static; docs/cost.md): the DRAM kind (price, bit area), the logic die's
    # node (logic-die placement), and area coefficients (None -> defaults)
    dram_kind: str = eqx.field(static=True, default="hbm2")
    node: str = eqx.field(static=True, default="12nm")
    dram_bit_area: float | None = eqx.field(static=True, default=None)
    lane_area: float | None = eqx.field(static=True, default=None)

    #: Fields moved by `perfmodel.hardware.rescale_node` (logic-die placement only).
    NODE_SCALED = {"logic": ("lane_area",), "energy": ("mac_energy",)}

    # ------------------------------------------------------------------ derived
    @property
    def bandwidth_efficiency(self):
        return self.bandwidth_odds / (1.0 + self.bandwidth_odds)

    def default_mapping(self) -> DramPimMapping:
        return default_mapping()

    @property
    def sites_per_channel(self):
        if self.placement == "bank":
            return self.banks
        if self.placement == "bank_group":
            return self.bank_groups
        return jnp.ones_like(self.channels)

    @property
    def sites(self):
        return self.channels * self.sites_per_channel

    @property
    def peak_flops(self):
        """Peak PIM FLOP/s (a MAC is 2 FLOP)."""
        return 2.0 * self.sites * self.units_per_site * self.mac_lanes * self.pim_clock

    @property
    def internal_bandwidth(self):
        """Peak bandwidth feeding the PIM units, B/s (before ``bandwidth_efficiency``)."""
        if self.placement == "logic_die":
            return self.tsv_count * self.tsv_rate / 8.0
        return self.sites * self.column_bits / 8.0 / self.tccd

    @property
    def external_bandwidth(self):
        return self.channels * self.channel_bandwidth

    @property
    def refresh_factor(self):
        """Time stretch from refresh: tREFI / (tREFI - tRFC)."""
        share = jnp.minimum(self.trfc / self.trefi, MAX_REFRESH_SHARE)
        return 1.0 / (1.0 - share)

    def energy_legs(self):
        """J/bit of a stationary bit read into the PIM units, per leg (cell read,
        bank-group mux, global IO, TSV), by placement (static)."""
        bg = 1.0 if self.placement in ("bank_group", "logic_die") else 0.0
        far = 1.0 if self.placement == "logic_die" else 0.0
        return bg, far

    # ------------------------------------------------------------------ area, power, cost
    @property
    def bit_area(self) -> float:
        """m^2 of DRAM array per bit (periphery included)."""
        if self.dram_bit_area is not None:
            return self.dram_bit_area
        return tech.DRAM_BIT_AREA[self.dram_kind]

    @property
    def mac_lane_area(self) -> float:
        """m^2 per MAC lane: DRAM array displaced (bank, bank group) or logic at
        ``node`` (logic die)."""
        if self.lane_area is not None:
            return self.lane_area
        if self.placement == "logic_die":
            return LANE_AREA_LOGIC_7NM * tech.node(self.node).logic_area
        return LANE_DRAM_BITS * self.bit_area

    def pim_area(self):
        """m^2 of the PIM units (the spec's ``area.pim_logic`` when given)."""
        if self.area is not None:
            return self.area
        return self.sites * self.units_per_site * self.mac_lanes * self.mac_lane_area

    def chip_area(self, mapping=None, *, hard: bool = False):
        """Silicon of the device, m^2: DRAM arrays for the capacity plus the PIM units."""
        return 8.0 * self.capacity * self.bit_area + self.pim_area()

    def peak_power(self, mapping=None, *, hard: bool = False):
        """W: the larger of PIM mode (stationary operands streamed at the rate the lanes
        consume, capped by the internal bandwidth, plus the MACs) and normal mode (every
        channel reading over its bus), plus static power."""
        p_pim, p_normal = self.mode_powers(hard=hard)
        return jnp.maximum(p_pim, p_normal) + self.static_power

    def mode_powers(self, *, hard: bool = False):
        """(PIM-mode, normal-mode) dynamic power at their peak rates, W."""
        macs = 0.5 * self.peak_flops
        stream = soft_min(self.internal_bandwidth, macs * (self.datapath_bits / 8.0),
                          hard=hard)
        bg, far = self.energy_legs()
        e_stat = (self.cell_read_energy + self.cell_activate_energy
                  + bg * self.bank_group_energy
                  + far * (self.global_io_energy + self.tsv_energy))
        p_pim = (8.0 * stream * e_stat
                 + macs * self.mac_energy * (self.datapath_bits / MAC_REFERENCE_BITS))
        e_all = (self.cell_read_energy + self.cell_activate_energy + self.bank_group_energy
                 + self.global_io_energy + self.tsv_energy + self.interposer_energy)
        p_normal = 8.0 * self.external_bandwidth * e_all
        return p_pim, p_normal

    def capital_cost(self, mapping=None, *, hard: bool = False):
        """USD: the DRAM (and, in-bank / bank-group, the array the PIM units displace) at
        the kind's price per byte; logic-die PIM units as silicon at ``node``."""
        price = tech.memory_kind(self.dram_kind).price
        if self.placement == "logic_die":
            return (self.capacity * price
                    + tech.die_cost(self.pim_area(), self.node))
        return (self.capacity + self.pim_area() / (8.0 * self.bit_area)) * price

    # ------------------------------------------------------------------ validation
    def check(self, ops: Ops | None = None) -> None:
        check_positive_leaves(self, self.name)
        tech.node(self.node)
        tech.memory_kind(self.dram_kind)
        if self.placement not in PLACEMENTS:
            raise ModelInputError(
                f"{self.name}.placement = {self.placement!r} is invalid; valid: "
                f"{', '.join(PLACEMENTS)}.")
        if not is_traced(self.trfc) and float(self.trfc) >= float(self.trefi):
            raise ModelInputError(
                f"{self.name}.trfc = {float(self.trfc):.3g} s must be below trefi = "
                f"{float(self.trefi):.3g} s (refresh would take all the time).")
        if not is_traced(self.stacks) and float(self.stacks) > float(self.channels):
            raise ModelInputError(
                f"{self.name}.stacks = {float(self.stacks):g} is invalid; it must be in "
                f"(0, channels = {float(self.channels):g}] (each stack has its channels).")
        if ops is None:
            return
        bits = np.asarray(ops.compute_bits)
        pim = np.array([k in PIM_KINDS for k in ops.kinds])
        if pim.any() and np.any(bits[..., pim] > self.datapath_bits):
            raise ModelInputError(
                f"compute bit-width {bits[..., pim].max():g} exceeds the PIM datapath of "
                f"{self.name} ({self.datapath_bits:g} bits); bit-widths must be in "
                f"[1, {self.datapath_bits:g}].")
        check_capacity(ops, self.capacity, f"{self.name}.capacity",
                       "the matrices must fit in the PIM capacity (use more channels/stacks "
                       "or fewer bits)")

    def _pim_block(self, ops, pm, split_k, bg, far, hard):
        """(time terms, their smooth max or None, overhead, energy terms) of the PIM rows
        ``pm`` with each matrix split over ``split_k`` sites along k."""
        sites = self.sites
        refresh = self.refresh_factor
        inv_channels = 1.0 / self.channels
        inv_split_k = 1.0 / split_k
        m, k, groups = ops.m[pm], ops.k[pm], ops.groups[pm]
        occ_n = ops.n[pm] * groups * (split_k / sites)         # n_tot / split_n
        occ_k = k * inv_split_k
        inv_util = ((smooth_ceil(occ_n, hard=hard) / occ_n)
                    * (smooth_ceil(occ_k, hard=hard) / occ_k))
        if self.attention_imbalance != 1.0:
            # the busiest channel sets the time of an attention row
            attn = [kind in ATTENTION_KINDS for kind in ops.kinds[pm]]
            inv_util = inv_util * np.where(attn, self.attention_imbalance, 1.0)
        passes = smooth_ceil(m * (1.0 / self.tokens_per_pass), hard=hard)
        bytes_int = (ops.weight_bytes[pm] + ops.kv_read_bytes[pm]) * passes
        flops = ops.flops[pm]
        t_compute = flops * inv_util * (refresh / self.peak_flops)
        b_int = self.internal_bandwidth * self.bandwidth_efficiency
        t_stream = bytes_int * inv_util * (refresh / b_int)
        inv_row = 1.0 / self.row_bytes
        x = occ_k * (ops.weight_bits[pm] / 8.0) * inv_row
        x_eff = smooth_max(x, jnp.ones_like(x), hard=hard)
        pad = smooth_ceil(x_eff, hard=hard) / x_eff
        rows_opened = bytes_int * pad * inv_row                 # over the whole device
        rows_per_bank = rows_opened * inv_util * (inv_channels / self.banks)
        t_act = rows_per_bank * ((self.trcd + self.trp) * refresh)
        t_memory = t_stream + t_act if self.placement == "bank" else t_stream
        zero = jnp.zeros_like(t_compute)
        t_stack = jnp.stack([t_compute, t_memory, t_act, zero, zero], axis=1)
        # the generic fold over the five columns, without the stack
        t_max = None if hard else smooth_maximum((t_compute, t_memory, t_act, 0.0, 0.0))

        # external channel bus: input broadcast, partial-sum readout, KV append
        act_in, act_out, kv_write = (ops.act_in_bytes[pm], ops.act_out_bytes[pm],
                                     ops.kv_write_bytes[pm])
        readout_total = act_out * split_k
        if self.placement == "logic_die":
            fan = jnp.minimum(groups, self.stacks) * (self.channels / self.stacks)
        else:
            fan = jnp.minimum(groups, self.channels)
        bus_bytes = act_in / fan + (readout_total + kv_write) * inv_channels
        over = (ops.launches[pm] * self.launch_overhead
                + bus_bytes * (1.0 / self.channel_bandwidth))

        # energy (J per instance) by DRAM level
        cross_bits = 8.0 * (act_in + readout_total + kv_write)  # bits reaching the host
        read_bits = 8.0 * bytes_int
        e_cell = (rows_opened * (self.row_bytes * 8.0 * self.cell_activate_energy)
                  + read_bits * self.cell_read_energy)
        e_bg = ((read_bits + cross_bits) if bg else cross_bits) * self.bank_group_energy
        far_bits = (read_bits + cross_bits) if far else cross_bits
        e_gio = far_bits * self.global_io_energy
        e_tsv = far_bits * self.tsv_energy
        e_ip = cross_bits * self.interposer_energy
        e_mac = flops * ops.compute_bits[pm] * (0.5 / MAC_REFERENCE_BITS
                                                 * self.mac_energy)
        e_stack = jnp.stack([e_cell, e_bg, e_gio, e_tsv, e_ip, e_mac, zero], axis=1)
        return t_stack, t_max, over, e_stack

    # ------------------------------------------------------------------ the model
    def cost(self, ops: Ops, mapping: DramPimMapping | None = None, *,
             hard: bool = False) -> Cost:
        mapping = default_mapping() if mapping is None else mapping
        if not isinstance(mapping, DramPimMapping):
            raise ModelInputError(
                "mapping must be a perfmodel.hardware.DramPimMapping (or None for the "
                f"default), not {type(mapping).__name__}.")
        # Static row partition (as `XPU.cost`): PIM rows first, then host rows, so each
        # term is computed only on the rows it applies to and the blocks are joined by a
        # concatenation; reciprocals of per-design scalars are taken once, so each row
        # costs multiplies. The permutation is undone at the end.
        ops, n_pim, undo = ops.partition(PIM_KINDS)
        n_host = ops.rows - n_pim
        pm, hs = slice(0, n_pim), slice(n_pim, None)
        refresh = self.refresh_factor
        bg, far = self.energy_legs()
        t_blocks, e_blocks, over_blocks, max_blocks = [], [], [], []

        if n_pim:
            if mapping is None:  # the default split: whole weight rows per bank
                blocks = self._pim_block(ops, pm, 1.0, bg, far, hard)
            else:
                # k-split as an expected value over the neighbouring integer splits:
                # exact at integers, with the finite difference to the next split as
                # its derivative (one-sided, into the domain, at either bound)
                s_max = jnp.floor(jnp.log2(self.sites))  # splits that fit the sites
                s = bounded(mapping.k_split_log2, 0.0, s_max)
                if hard:
                    s = jnp.floor(s + 0.5)
                s0 = jnp.clip(jnp.floor(s), 0.0, jnp.maximum(s_max - 1.0, 0.0))
                w = s - s0  # in [0, 1]: s0 <= s <= s0 + 1
                lo = self._pim_block(ops, pm, 2.0 ** s0, bg, far, hard)
                hi = self._pim_block(ops, pm, 2.0 ** (s0 + 1.0), bg, far, hard)
                blocks = jax.tree.map(lambda a, b: a + w * (b - a), lo, hi)
            for out, block in zip((t_blocks, max_blocks, over_blocks, e_blocks), blocks):
                if block is not None:
                    out.append(block)

        if n_host:
            # host rows (softmax, norms, activations, ...) run on the host / ASIC
            flops = ops.flops[hs]
            host_bytes = ops.dram_bytes[hs]
            t_host_compute = flops * (1.0 / self.host_flops)
            t_host_memory = host_bytes * (1.0 / self.host_bandwidth)
            zero = jnp.zeros_like(t_host_compute)
            t_blocks.append(jnp.stack([zero, zero, zero, t_host_compute, t_host_memory],
                                      axis=1))
            if not hard:  # the generic fold over the five columns, without the stack
                max_blocks.append(smooth_maximum((0.0, 0.0, 0.0, t_host_compute,
                                                  t_host_memory)))
            over_blocks.append(ops.launches[hs] * self.launch_overhead)
            cross_bits = 8.0 * host_bytes
            e_cell = cross_bits * (self.cell_read_energy + self.cell_activate_energy)
            e_blocks.append(jnp.stack([
                e_cell, cross_bits * self.bank_group_energy,
                cross_bits * self.global_io_energy, cross_bits * self.tsv_energy,
                cross_bits * self.interposer_energy, zero,
                flops * self.host_energy_per_flop], axis=1))

        cost = Cost(time_terms=jnp.concatenate(t_blocks), overhead=jnp.concatenate(over_blocks),
                    energy_terms=jnp.concatenate(e_blocks), static_power=self.static_power,
                    area=self.chip_area(), components=TIME_COMPONENTS,
                    energy_components=ENERGY_COMPONENTS,
                    max_time=jnp.concatenate(max_blocks) if max_blocks else None,
                    peak_power=self.peak_power(hard=hard),
                    capital_cost=self.capital_cost())
        return cost if undo is None else cost.take(undo)


# ---------------------------------------------------------------------- spec loading
def from_spec(data: dict, label: str) -> DramPim:
    """Build a `DramPim` from a parsed TOML spec (see docs/families/dram_pim.md)."""
    r = SpecReader(data, label)
    placement = r.raw("organization", "placement", required=True)
    if placement not in PLACEMENTS:
        raise ModelInputError(
            f"{label}: organization.placement = {placement!r}; valid: {', '.join(PLACEMENTS)}.")
    a = lambda *p, **kw: jnp.asarray(r.number(*p, **kw))  # noqa: E731
    logic = placement == "logic_die"
    eff = r.number("organization", "bandwidth_efficiency", hi=0.999)
    pim_logic = r.number("area", "pim_logic", unit="_mm2", default=-1.0, positive=False)
    hw = DramPim(
        channels=a("organization", "channels"),
        banks=a("organization", "banks"),
        bank_groups=a("organization", "bank_groups"),
        units_per_site=a("pim", "units_per_site"),
        mac_lanes=a("pim", "mac_lanes"),
        pim_clock=a("pim", "clock", unit="_MHz"),
        column_bits=a("organization", "column_bits"),
        tccd=a("timing", "tccd", unit="_ns"),
        # TSVs matter for logic-die PIM only; other placements carry a neutral default
        tsv_count=a("tsv", "count", default=None if logic else 1024.0),
        tsv_rate=a("tsv", "rate", unit="_Gbps", default=None if logic else 1.0),
        bandwidth_odds=jnp.asarray(eff / (1.0 - eff)),
        row_bytes=a("organization", "row", unit="_KB"),
        trcd=a("timing", "trcd", unit="_ns"),
        trp=a("timing", "trp", unit="_ns"),
        trfc=a("timing", "trfc", unit="_ns"),
        trefi=a("timing", "trefi", unit="_us"),
        tokens_per_pass=a("pim", "tokens_per_pass"),
        channel_bandwidth=a("organization", "channel_bandwidth", unit="_GB_s"),
        stacks=a("organization", "stacks", default=1.0),
        attention_imbalance=r.number("organization", "attention_imbalance", default=1.0,
                                     lo=1.0),
        capacity=a("organization", "capacity", unit="_GB"),
        cell_activate_energy=a("energy", "cell_activate", unit="_pJ_per_bit"),
        cell_read_energy=a("energy", "cell_read", unit="_pJ_per_bit"),
        bank_group_energy=a("energy", "bank_group", unit="_pJ_per_bit"),
        global_io_energy=a("energy", "global_io", unit="_pJ_per_bit"),
        tsv_energy=a("energy", "tsv", unit="_pJ_per_bit"),
        interposer_energy=a("energy", "interposer", unit="_pJ_per_bit"),
        mac_energy=a("energy", "mac", unit="_pJ_per_mac"),
        host_flops=a("host", "throughput", unit="_TFLOPS"),
        host_bandwidth=a("host", "bandwidth", unit="_GB_s"),
        host_energy_per_flop=a("host", "energy", unit="_pJ_per_flop"),
        static_power=a("power", "static", unit="_W"),
        launch_overhead=a("power", "launch_overhead", unit="_us"),
        area=(None if pim_logic < 0 else jnp.asarray(pim_logic)),
        placement=str(placement),
        datapath_bits=r.number("pim", "datapath_bits", default=16.0),
        **_technology(r, placement),
        **r.identity(),
    )
    r.finish_target()
    return hw


def _technology(r: SpecReader, placement: str) -> dict:
    """``[technology]``: ``memory`` (the DRAM kind; default hbm2), ``node`` (of the logic
    die; default 12 nm); optional ``[area]`` ``dram_bit_um2`` and ``mac_lane_um2``."""
    node = str(r.raw("technology", "node", default="12nm"))
    tech.node(node)
    kind = str(r.raw("technology", "memory", default="hbm2"))
    tech.memory_kind(kind)
    bit = r.number("area", "dram_bit", unit="_um2", default=-1.0, positive=False)
    lane = r.number("area", "mac_lane", unit="_um2", default=-1.0, positive=False)
    return dict(node=node, dram_kind=kind, dram_bit_area=None if bit < 0 else bit,
                lane_area=None if lane < 0 else lane)


#: `perfmodel bench` case for this family: Llama-2-7B decode on one AttAcc HBM3-PIM
#: device (5 stacks, 80 GB), bank-level PIM.
BENCH_CASE = dict(hardware="attacc-pim-bank", workload="llama-2-7b", phase="decode",
                  batch=1.0, context=1024.0)
