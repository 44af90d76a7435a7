"""SRAM compute-in-memory ("cim") target: weight-stationary macros, bit-serial inputs.

A chip holds ``M`` macros of ``R`` rows (word lines: inputs) x ``C`` columns (bit lines),
each column storing ``b_cell`` weight bits per cell, a small digital vector unit for the
non-matmul rows, and a DRAM interface. EdgeCIM (arXiv:2604.11512) and VitaLLM
(arXiv:2604.27396, 2605.00320) are presets. Per matmul row (stationary operand: weights,
or K/V for attention rows) and instance, all SI:

    cpw      = ceil(weight_bits / b_cell)                     columns per weight
    tiles    = groups * ceil(k / R) * ceil(n * cpw / C)       macro-sized weight tiles
    rounds   = ceil(tiles / M);  util = tiles / (M * rounds)  (pipeline balance over macros)
    cycles   = ceil(act_bits / b_in) * C_adc                  cycles per input vector per tile
               (bit-serial input: b_in input bits per cycle; C_adc columns share one
               ADC / adder-tree readout)
    t_macro  = rounds * m * cycles / f                        (m input vectors: tokens)
    f_over   = relu(1 - M R C b_cell / 8 / W)                 share of the weight footprint W
                                                              that does not fit in the macros
    stream   = f_over * weight_bytes + kv_read_bytes          bytes streamed from DRAM
    t_write  = s * rounds * R / (r_w * f),  s = stream / (weight_bytes + kv_read_bytes)
                                                              (reloading the streamed tiles,
                                                              r_w rows written per cycle)
    t_dram   = (stream + kv_write_bytes) / (B_dram * eta_dram)
    t        = smooth_max(t_macro, t_write, t_dram)           (double-buffered tiles: loads
                                                              overlap compute)

Non-matmul rows (softmax, norms, activations, embedding lookups) run on the vector unit:
``t = smooth_max(flops / P_vec, (weight_bytes + kv bytes) / (B_dram eta_dram))``.
Activations stay on chip. Energy per instance:

    E_macro  = in_cycles * (m groups k n cpw * e_cell + m groups ceil(k/R) n cpw * e_col)
    E_write  = 8 * stream * e_write      (DRAM interface -> on-chip transfer -> macro write)
    E_dram   = 8 * (stream + kv_write) * e_dram * [include_dram]
    E_vector = flops * e_vec;            P_static * latency on top
    area     = M * A_macro + sram_bytes * 8 * A_bit + A_periphery

``include_dram`` (static) selects the energy boundary: papers that report accelerator
power (EdgeCIM, VitaLLM) exclude the DRAM device. ``ceil`` and ``relu`` are smooth
(perfmodel._smooth) and exact with ``hard=True``.

Peak power and cost (docs/cost.md): every macro evaluating a full tile each readout
period, ``P_macro = M C (R e_cell + e_col) f / C_adc``, the DRAM interface streaming
weights at full bandwidth into the macros (``8 B_dram (e_write + e_dram [include_dram])``)
and the vector unit at its peak, plus static power; ``cost = die_cost(area, node) +
package`` (the external DRAM device is outside the chip, as the energy boundary).
"""

from __future__ import annotations


import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from perfmodel._errors import ModelInputError
from perfmodel._ops import Ops
from perfmodel._report import Cost
from perfmodel._smooth import smooth_ceil, smooth_relu
from perfmodel._spec import SpecReader
from perfmodel._target import AbstractUnit, check_positive_leaves
from perfmodel.hardware import _technology as tech
from perfmodel.hardware._xpu import MATMUL_KINDS, from_odds, to_odds

#: Guard (bytes) against an empty stationary operand when forming the reload share.
_BYTES_GUARD = 1.0

#: Benchmark case of this family (`perfmodel bench --target edgecim`): Llama-2-7B INT4
#: decode does not fit on chip, so its weights stream from DRAM every token.
BENCH_CASE = dict(hardware="edgecim", workload="llama-2-7b", phase="decode", batch=1.0,
                  context=1024.0, wbits=4.0, abits=4.0, kvbits=4.0)


class CIM(AbstractUnit):
    """A chip of SRAM compute-in-memory macros, a vector unit and a DRAM interface.

    Build one with `perfmodel.hardware.preset("edgecim")` / `preset("vitallm")` or
    `perfmodel.hardware.load(path)`. Every float leaf may be scaled by [0.5, 2] and
    remains a valid design (counts are relaxed to reals; ``hard=True`` rounds tiles,
    rounds and cycles up exactly).
    """

    macros: Float[Array, ""]               # macro count M
    rows: Float[Array, ""]                 # word lines (inputs) per macro R
    columns: Float[Array, ""]              # bit lines per macro C
    cell_bits: Float[Array, ""]            # weight bits stored per cell b_cell
    input_bits_per_cycle: Float[Array, ""]  # input bits applied per cycle b_in
    columns_per_readout: Float[Array, ""]  # columns sharing one ADC / adder-tree readout
    write_rows_per_cycle: Float[Array, ""]  # rows written per cycle when reloading a tile
    clock: Float[Array, ""]                # Hz
    cell_energy: Float[Array, ""]          # J per cell per input cycle (AND + tree leaf)
    column_energy: Float[Array, ""]        # J per column readout per input cycle
    write_energy: Float[Array, ""]         # J per streamed weight bit into a macro
    vector_throughput: Float[Array, ""]    # FLOP/s of the vector unit
    vector_energy: Float[Array, ""]        # J per vector-unit FLOP
    dram_bandwidth: Float[Array, ""]       # B/s peak
    dram_odds: Float[Array, ""]            # achieved/peak DRAM bandwidth, as odds
    dram_energy: Float[Array, ""]          # J/bit (device + interface)
    static_power: Float[Array, ""]         # W
    macro_area: Float[Array, ""]           # m^2 per macro
    sram_bytes: Float[Array, ""]           # on-chip buffer SRAM (activations, KV tiles)
    sram_bit_area: Float[Array, ""]        # m^2 per buffer bit (array incl. periphery)
    periphery_area: Float[Array, ""]       # m^2: vector unit, control, NoC, IO
    max_weight_bits: int = eqx.field(static=True)
    include_dram: bool = eqx.field(static=True)
    name: str = eqx.field(static=True)
    bibtex: str = eqx.field(static=True)
    title: str = eqx.field(static=True, default="")
    node: str = eqx.field(static=True, default=tech.REFERENCE_NODE)

    #: Fields moved by `perfmodel.hardware.rescale_node`.
    NODE_SCALED = {
        "logic": ("macro_area", "periphery_area"),
        "sram": ("sram_bit_area",),
        "energy": ("cell_energy", "column_energy", "write_energy", "vector_energy",
                   "static_power")}

    @property
    def dram_efficiency(self):
        return from_odds(self.dram_odds)

    @property
    def capacity(self):
        """Bytes of weights the macros hold at once."""
        return self.macros * self.rows * self.columns * self.cell_bits / 8.0

    @property
    def area(self):
        return (self.macros * self.macro_area + self.sram_bytes * 8.0 * self.sram_bit_area
                + self.periphery_area)

    def chip_area(self, mapping=None, *, hard: bool = False):
        """Die area, m^2 (`area`)."""
        return self.area

    def peak_power(self, mapping=None, *, hard: bool = False):
        """W: every macro evaluating a full tile per readout period, weights streaming
        from DRAM into the macros at full bandwidth, the vector unit at its peak, plus
        static power (the DRAM device only with ``include_dram``)."""
        macro = (self.macros * self.columns
                 * (self.rows * self.cell_energy + self.column_energy)
                 * self.clock / self.columns_per_readout)
        dram = 8.0 * self.dram_bandwidth * (
            self.write_energy + self.dram_energy * (1.0 if self.include_dram else 0.0))
        return (macro + dram + self.vector_throughput * self.vector_energy
                + self.static_power)

    def capital_cost(self, mapping=None, *, hard: bool = False):
        """USD: the die at ``node`` and an organic package."""
        return (tech.die_cost(self.area, self.node)
                + tech.package_cost("organic", self.area))

    def peak_macs(self, weight_bits=4.0, act_bits=8.0):
        """Peak MAC/s at the given operand widths (exact ceilings)."""
        cpw = np.ceil(weight_bits / float(self.cell_bits))
        cycles = np.ceil(act_bits / float(self.input_bits_per_cycle)) * float(
            self.columns_per_readout)
        return float(self.macros * self.rows * self.columns / cpw * self.clock / cycles)

    # ------------------------------------------------------------------ validation
    def check(self, ops: Ops | None = None) -> None:
        check_positive_leaves(self, self.name)
        if ops is None:
            return
        mm = np.array([k in MATMUL_KINDS for k in ops.kinds])
        bits = np.asarray(ops.weight_bits)[..., mm]
        if bits.size and np.any(bits > self.max_weight_bits):
            raise ModelInputError(
                f"weight bit-width {bits.max():g} cannot be represented by the macros of "
                f"{self.name} (macro.max_weight_bits = {self.max_weight_bits}); weight, KV and "
                f"LM-head bits must be in [1, {self.max_weight_bits}].")

    # ------------------------------------------------------------------ the model
    def cost(self, ops: Ops, mapping=None, *, hard: bool = False) -> Cost:
        if mapping is not None:
            raise ModelInputError("the cim target has no mapping choices; pass mapping=None.")
        # Static row partition: matmul rows first (macro path), then element-wise rows
        # (vector path), joined by a concatenation and put back in table order.
        ops, n_mm, undo = ops.partition(MATMUL_KINDS)
        mm, ew = slice(0, n_mm), slice(n_mm, None)
        inv_f = 1.0 / self.clock
        inv_dram = 1.0 / (self.dram_bandwidth * self.dram_efficiency)
        over = smooth_relu(1.0 - self.capacity / (ops.weight_footprint + _BYTES_GUARD), 1.0,
                           hard=hard)
        zeros_ew = jnp.zeros_like(ops.m[ew])
        t_macro, t_write, stream, e_macro = [], [], [], []
        if n_mm:
            m, k, n, groups = ops.m[mm], ops.k[mm], ops.n[mm], ops.groups[mm]
            wb, kv = ops.weight_bytes[mm], ops.kv_read_bytes[mm]
            cpw = smooth_ceil(ops.weight_bits[mm] * (1.0 / self.cell_bits), hard=hard)
            row_tiles = smooth_ceil(k * (1.0 / self.rows), hard=hard)
            col_tiles = smooth_ceil(n * cpw * (1.0 / self.columns), hard=hard)
            rounds = smooth_ceil(groups * row_tiles * col_tiles * (1.0 / self.macros),
                                 hard=hard)
            in_cycles = smooth_ceil(ops.act_bits[mm] * (1.0 / self.input_bits_per_cycle),
                                    hard=hard)
            t_macro.append(rounds * m * in_cycles * (self.columns_per_readout * inv_f))
            s_mm = over * wb + kv
            stream.append(s_mm)
            t_write.append(s_mm / (wb + kv + _BYTES_GUARD) * rounds
                           * (self.rows * inv_f / self.write_rows_per_cycle))
            per_vector = m * groups * n * cpw * in_cycles
            e_macro.append(per_vector * (k * self.cell_energy + row_tiles * self.column_energy))
        if n_mm < ops.rows:
            t_macro.append(zeros_ew)
            t_write.append(zeros_ew)
            stream.append(ops.weight_bytes[ew] + ops.kv_read_bytes[ew])
            e_macro.append(zeros_ew)
        t_macro, t_write = jnp.concatenate(t_macro), jnp.concatenate(t_write)
        stream, e_macro = jnp.concatenate(stream), jnp.concatenate(e_macro)
        is_mm_f = jnp.asarray(np.arange(ops.rows) < n_mm, stream.dtype)  # static
        flops_ew = ops.flops * (1.0 - is_mm_f)
        t_vector = flops_ew / self.vector_throughput
        dram_bytes = stream + ops.kv_write_bytes
        t_dram = dram_bytes * inv_dram
        e_write = is_mm_f * stream * (8.0 * self.write_energy)
        e_dram = dram_bytes * (8.0 * self.dram_energy * (1.0 if self.include_dram else 0.0))
        e_vector = flops_ew * self.vector_energy
        cost = Cost.from_columns(
            (t_macro, t_write, t_dram, t_vector), overhead=jnp.zeros_like(t_macro),
            energy_columns=(e_macro, e_write, e_dram, e_vector),
            static_power=self.static_power, area=self.area,
            components=("macro", "write", "dram", "vector"),
            energy_components=("macro", "write", "dram", "vector"), hard=hard,
            peak_power=self.peak_power(), capital_cost=self.capital_cost())
        return cost if undo is None else cost.take(undo)


def from_spec(data: dict, label: str) -> CIM:
    """A `CIM` from a parsed spec (family = "cim"); see docs/families/cim.md."""
    from perfmodel.hardware._registry import technology_fields

    r = SpecReader(data, label)
    num = lambda *p, **kw: jnp.asarray(r.number(*p, **kw))  # noqa: E731
    max_bits = r.raw("macro", "max_weight_bits", required=True)
    if isinstance(max_bits, bool) or not isinstance(max_bits, int) or not 1 <= max_bits <= 32:
        raise ModelInputError(f"{label}: macro.max_weight_bits = {max_bits!r} must be an "
                              "integer in [1, 32].")
    include = r.raw("power", "include_dram", default=True)
    if not isinstance(include, bool):
        raise ModelInputError(f"{label}: power.include_dram = {include!r} must be true or "
                              "false.")
    hw = CIM(
        macros=num("macro", "count"),
        rows=num("macro", "rows"),
        columns=num("macro", "columns"),
        cell_bits=num("macro", "cell_bits"),
        input_bits_per_cycle=num("macro", "input_bits_per_cycle"),
        columns_per_readout=num("macro", "columns_per_readout"),
        write_rows_per_cycle=num("macro", "write_rows_per_cycle"),
        clock=num("macro", "clock", unit="_MHz"),
        cell_energy=num("macro", "cell_energy", unit="_fJ"),
        column_energy=num("macro", "column_energy", unit="_fJ"),
        write_energy=num("macro", "write_energy", unit="_fJ_per_bit"),
        vector_throughput=num("vector", "throughput", unit="_GOPS"),
        vector_energy=num("vector", "energy", unit="_pJ"),
        dram_bandwidth=num("memory", "dram", "bandwidth", unit="_GB_s"),
        dram_odds=jnp.asarray(to_odds(r.number("memory", "dram", "efficiency", hi=0.999))),
        dram_energy=num("memory", "dram", "energy", unit="_pJ_per_bit"),
        static_power=num("power", "static", unit="_mW"),
        macro_area=num("area", "macro", unit="_mm2"),
        sram_bytes=num("area", "sram", unit="_KB"),
        sram_bit_area=num("area", "sram_bit", unit="_um2"),
        periphery_area=num("area", "periphery", unit="_mm2"),
        max_weight_bits=int(max_bits),
        include_dram=include,
        **technology_fields(r, memory=None),
        **r.identity(),
    )
    r.finish_target()
    return hw
