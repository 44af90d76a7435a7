"""Optical / photonic accelerators (OPIMA-style optical PIM and prior photonic PIMs).

A design has ``arrays`` photonic arrays of ``rows x cols`` weight cells (microrings or
optical phase-change cells), fed by a WDM comb of ``comb_lines`` wavelengths, of which a
mapping uses ``wavelengths`` (continuous, <= comb). Inputs are modulated at
``modulation_rate`` symbols/s by DACs + modulators; each column sums ``rows x
wavelengths`` products on a photodetector (+ TIA) and an ADC samples it. Model, per
op row and instance (SI units; docs/families/optical.md has the derivation):

    peak MAC/s  = f_mod * wavelengths * rows * cols * arrays
    w_slices    = ceil(weight_bits / cell_bits),  a_slices = ceil(act_bits / dac_bits)
    passes      = w_slices * a_slices                      (bit-sliced precision)
    k_tiles     = ceil(k / (rows * wavelengths)),  n_tiles = ceil(n / cols)
    tiles       = groups * k_tiles * n_tiles
    t_compute   = ceil(tiles / arrays) * m * passes / f_mod          (matmul rows)
                = flops / electronic_flops                           (element-wise rows)
    t_memory    = (act_in + act_out + kv + spill) bytes / B_mem
    t_program   = spill_cells / write_rate                (weights reprogrammed into cells)
    spill       = weight_bytes * relu(1 - weight_capacity / weight_footprint)
    t           = smooth_max(t_compute, t_memory, t_program) + launches * t_launch

Link budget and laser (per wavelength, per array):

    IL_dB   = alpha_wg * L_wg + IL_coupler + IL_modulator + IL_drop
              + wavelengths * IL_ring_through + IL_cell
              + 10 log10(cols) + log2(cols) * IL_split_excess
    S       = 10^((6.02 * adc_bits + 1.76) / 10)            (SNR for adc_bits ENOB)
    I_snr   = S q B + sqrt((S q B)^2 + S i_n^2 B),  B = f_mod / 2
              (photocurrent at which shot + TIA noise give SNR S)
    P_rx    = smooth_max(P_sensitivity, I_snr / responsivity)
    P_laser = wavelengths * P_rx * 10^(IL_dB / 10) / eta_wallplug     (W per array)

Energy per matmul row instance:

    slots   = tiles * m * passes                      (array-symbol slots in use)
    E_laser = P_laser * slots / f_mod
    E_in    = m * groups * k * n_tiles * passes * (E_mod + FOM_dac * 2^dac_bits)
    E_out   = m * groups * n * k_tiles * passes * (E_pd_tia + FOM_adc * 2^adc_bits)
    E_mem   = 8 * bytes * e_mem;  E_prog = spill_cells * e_write
    E_ew    = flops * e_electronic                          (element-wise rows)
    static  = P_static (thermal tuning, control, peripherals) * latency

``ceil``, ``max`` and ``relu`` are smooth by default and exact with ``hard=True``.
Requesting more ADC bits raises the laser power (SNR) and the ADC energy (~2^bits);
operand bits beyond ``max_bits`` are rejected by `check`.

Peak power and cost (docs/cost.md): every array lit on all comb lines (``arrays x
P_laser``), every input modulated and every output sampled each symbol, memory at full
bandwidth and the electronic unit at its peak, plus static power; ``cost =
die_cost(area, node) + weight_capacity price(memory_kind) + package``.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from perfmodel._errors import ModelInputError
from perfmodel._ops import Ops
from perfmodel._report import Cost
from perfmodel._smooth import smooth_ceil, smooth_max, smooth_maximum, smooth_relu
from perfmodel._spec import SpecReader
from perfmodel.hardware import _technology as tech
from perfmodel._target import AbstractUnit, check_positive_leaves, is_traced
from perfmodel._units import dbm_to_watts
from perfmodel.hardware._xpu import MATMUL_KINDS, from_odds, to_odds

#: Elementary charge, C (CODATA exact).
ELECTRON_CHARGE = 1.602176634e-19
#: SNR of an ideal b-bit quantizer: SNR_dB = 6.02 b + 1.76 (full-scale sine; Walden 1999).
SNR_DB_PER_BIT = 6.02
SNR_DB_OFFSET = 1.76
#: Guard for divisions by an empty footprint, bytes.
_ONE_BYTE = 1.0


def snr_bits(snr_db):
    """Effective bits a link with ``snr_db`` supports: (SNR_dB - 1.76) / 6.02."""
    return (snr_db - SNR_DB_OFFSET) / SNR_DB_PER_BIT


class OpticalMapping(eqx.Module):
    """Relaxed mapping choice: how many comb wavelengths carry data (continuous,
    1 <= wavelengths <= comb_lines). More wavelengths multiply the MAC rate but add
    microring through-loss (more laser power per line). ``None`` = the whole comb."""

    wavelengths: Float[Array, ""]


class OpticalAccelerator(AbstractUnit):
    """A photonic MAC engine with its optical link budget, converters, main memory and
    an electronic unit for element-wise ops. Build with
    ``perfmodel.hardware.preset("opima")``. Every float leaf may be scaled by [0.5, 2]."""

    # compute organisation
    modulation_rate: Float[Array, ""]      # symbols/s of modulators, DACs and ADCs
    comb_lines: Float[Array, ""]           # wavelengths the laser comb provides
    rows: Float[Array, ""]                 # cells summed per column per wavelength
    cols: Float[Array, ""]                 # columns (photodetectors / ADCs) per array
    arrays: Float[Array, ""]               # arrays computing in parallel
    # precision
    cell_bits: Float[Array, ""]            # weight bits stored per cell (MLC levels)
    dac_bits: Float[Array, ""]             # input bits per modulated symbol
    adc_bits: Float[Array, ""]             # ENOB of each output sample
    # link budget (losses in dB, powers in W)
    waveguide_loss: Float[Array, ""]       # dB/m
    waveguide_length: Float[Array, ""]     # m
    coupler_loss: Float[Array, ""]         # dB
    modulator_loss: Float[Array, ""]       # dB
    drop_loss: Float[Array, ""]            # dB (filter / drop to the photodetector)
    ring_through_loss: Float[Array, ""]    # dB per ring passed off-resonance
    cell_loss: Float[Array, ""]            # dB of the weight cell on each path
    split_excess_loss: Float[Array, ""]    # dB per 1x2 splitter stage
    pd_sensitivity: Float[Array, ""]       # W, minimum received power per wavelength
    pd_responsivity: Float[Array, ""]      # A/W
    tia_noise: Float[Array, ""]            # A/sqrt(Hz), input-referred
    laser_odds: Float[Array, ""]           # wall-plug efficiency as odds
    # energies
    modulator_energy: Float[Array, ""]     # J per modulated symbol
    receiver_energy: Float[Array, ""]      # J per sample (photodetector + TIA)
    dac_fom: Float[Array, ""]              # J per conversion step (E = FOM 2^bits)
    adc_fom: Float[Array, ""]              # J per conversion step (Walden)
    # weights resident in the cells, and their programming
    weight_capacity: Float[Array, ""]      # bytes held in compute cells
    write_rate: Float[Array, ""]           # cells programmed per s
    write_energy: Float[Array, ""]         # J per cell programmed
    # main memory (weights / activations)
    memory_bandwidth: Float[Array, ""]     # B/s
    memory_energy: Float[Array, ""]        # J/bit
    # electronic unit for element-wise rows
    electronic_flops: Float[Array, ""]     # FLOP/s
    electronic_energy: Float[Array, ""]    # J/FLOP
    launch_overhead: Float[Array, ""]      # s per launch (reconfiguration, sync)
    static_power: Float[Array, ""]         # W
    # area
    cell_area: Float[Array, ""]            # m^2 per weight cell (per wavelength)
    converter_area: Float[Array, ""]       # m^2 per ADC or DAC
    periphery_area: Float[Array, ""]       # m^2 (electronic unit, control, laser I/O)
    max_bits: float = eqx.field(static=True)
    name: str = eqx.field(static=True)
    bibtex: str = eqx.field(static=True)
    title: str = eqx.field(static=True, default="")
    node: str = eqx.field(static=True, default="45nm")
    memory_kind: str = eqx.field(static=True, default="ddr5")

    #: Fields moved by `perfmodel.hardware.rescale_node` (the electronics; photonic
    #: cells, lasers and modulators keep their values).
    NODE_SCALED = {
        "logic": ("converter_area", "periphery_area"),
        "energy": ("electronic_energy", "dac_fom", "adc_fom", "static_power")}

    @property
    def laser_efficiency(self):
        """Laser wall-plug efficiency, in (0, 1)."""
        return from_odds(self.laser_odds)

    # ------------------------------------------------------------------ physics
    def default_mapping(self) -> OpticalMapping:
        """Every comb line carries data."""
        return OpticalMapping(wavelengths=self.comb_lines)

    def insertion_loss_db(self, wavelengths):
        """Total insertion loss (dB) from the laser to a photodetector."""
        return (self.waveguide_loss * self.waveguide_length + self.coupler_loss
                + self.modulator_loss + self.drop_loss
                + wavelengths * self.ring_through_loss
                + self.cell_loss
                + 10.0 * jnp.log10(self.cols)
                + jnp.log2(self.cols) * self.split_excess_loss)

    def received_power(self, *, hard: bool = False):
        """Power per wavelength needed at a photodetector (W): the larger of the
        sensitivity and the power at which shot + TIA noise allow ``adc_bits``."""
        snr = 10.0 ** ((SNR_DB_PER_BIT * self.adc_bits + SNR_DB_OFFSET) / 10.0)
        bw = 0.5 * self.modulation_rate
        # I = S q B + sqrt((S q B)^2 + S i_n^2 B), written as sqrt(S B) i_n (u + sqrt(u^2 + 1))
        # with u = q sqrt(S B) / i_n so that no float32 intermediate underflows (q^2).
        root = jnp.sqrt(snr * bw)
        u = ELECTRON_CHARGE * root / self.tia_noise
        current = root * self.tia_noise * (u + jnp.sqrt(u * u + 1.0))
        return smooth_max(self.pd_sensitivity, current / self.pd_responsivity, hard=hard)

    def laser_power(self, wavelengths=None, *, hard: bool = False):
        """Wall-plug laser power of one array (W) for ``wavelengths`` lines."""
        wl = self.comb_lines if wavelengths is None else wavelengths
        loss = 10.0 ** (self.insertion_loss_db(wl) / 10.0)
        return wl * self.received_power(hard=hard) * loss / self.laser_efficiency

    def peak_macs(self, wavelengths=None):
        """Peak MAC/s: f_mod x wavelengths x rows x cols x arrays."""
        wl = self.comb_lines if wavelengths is None else wavelengths
        return self.modulation_rate * wl * self.rows * self.cols * self.arrays

    def area(self):
        """Chip area (m^2): weight cells, converters and periphery."""
        per_array = (self.rows * self.cols * self.comb_lines * self.cell_area
                     + (self.cols + self.rows * self.comb_lines) * self.converter_area)
        return self.arrays * per_array + self.periphery_area

    def chip_area(self, mapping=None, *, hard: bool = False):
        """Chip area, m^2 (`area`)."""
        return self.area()

    def peak_power(self, mapping=None, *, hard: bool = False):
        """W: every array lit on all comb lines, every input modulated and every output
        sampled each symbol, memory at full bandwidth and the electronic unit at its
        peak, plus static power."""
        f = self.modulation_rate
        e_symbol = self.modulator_energy + self.dac_fom * 2.0 ** self.dac_bits
        e_sample = self.receiver_energy + self.adc_fom * 2.0 ** self.adc_bits
        per_array = (self.laser_power(hard=hard)
                     + f * (self.rows * self.comb_lines * e_symbol + self.cols * e_sample))
        return (self.arrays * per_array + 8.0 * self.memory_bandwidth * self.memory_energy
                + self.electronic_flops * self.electronic_energy + self.static_power)

    def capital_cost(self, mapping=None, *, hard: bool = False):
        """USD: the chip at ``node``, the weight memory at the price of ``memory_kind``
        and an organic package."""
        area = self.area()
        return (tech.die_cost(area, self.node)
                + tech.memory_cost(self.weight_capacity, self.memory_kind)
                + tech.package_cost("organic", area))

    # ------------------------------------------------------------------ validation
    def check(self, ops: Ops | None = None, mapping: OpticalMapping | None = None) -> None:
        check_positive_leaves(self, self.name)
        if mapping is not None:
            self._check_mapping(mapping)
        if ops is None:
            return
        for field in ("weight_bits", "act_bits", "compute_bits"):
            bits = getattr(ops, field)
            if is_traced(bits):
                continue
            bits = np.asarray(bits)
            if np.any(bits > self.max_bits):
                raise ModelInputError(
                    f"operand bit-width {field} = {bits.max():g} exceeds what "
                    f"{self.name}.max_bits allows ({self.max_bits:g} bits with bit-slicing "
                    f"over its converters and SNR); bit-widths must be in [1, "
                    f"{self.max_bits:g}].")

    def _check_mapping(self, mapping: OpticalMapping) -> None:
        wl = mapping.wavelengths
        if is_traced(wl) or is_traced(self.comb_lines):
            return
        wl, comb = float(np.asarray(wl)), float(np.asarray(self.comb_lines))
        if not np.isfinite(wl) or wl < 1.0 or wl > comb * (1 + 1e-6):
            raise ModelInputError(
                f"mapping.wavelengths = {wl:g} is invalid for {self.name}; it must be in "
                f"[1, {self.name}.comb_lines = {comb:g}] (the laser comb's line count).")

    # ------------------------------------------------------------------ the model
    def cost(self, ops: Ops, mapping: OpticalMapping | None = None, *,
             hard: bool = False) -> Cost:
        if mapping is None:
            wl = self.comb_lines
        else:
            if not isinstance(mapping, OpticalMapping):
                raise ModelInputError("the optical target's mapping must be an "
                                      "OpticalMapping(wavelengths=...) or None.")
            self._check_mapping(mapping)
            wl = jnp.minimum(mapping.wavelengths, self.comb_lines) if hard else \
                self.comb_lines - smooth_relu(self.comb_lines - mapping.wavelengths,
                                              self.comb_lines, hard=False)
        # Static row partition (as `XPU.cost`): matmul rows first, then element-wise rows;
        # each term is computed only on the rows it applies to, the blocks are joined by
        # a concatenation and the permutation is undone at the end. Reciprocals of
        # per-design scalars are taken once, so each row costs multiplies.
        ops, n_mm, undo = ops.partition(MATMUL_KINDS)
        mm, ew = slice(0, n_mm), slice(n_mm, None)
        inv_mem_bw = 1.0 / self.memory_bandwidth
        e_mem_byte = 8.0 * self.memory_energy
        t_blocks, e_blocks, max_blocks = [], [], []
        if n_mm:
            # ---- matmul rows on the photonic arrays
            f_inv = 1.0 / self.modulation_rate
            m, groups = ops.m[mm], ops.groups[mm]
            k_tiles = smooth_ceil(ops.k[mm] * (1.0 / (self.rows * wl)), hard=hard)
            n_tiles = smooth_ceil(ops.n[mm] * (1.0 / self.cols), hard=hard)
            tiles = groups * k_tiles * n_tiles
            waves = smooth_ceil(tiles * (1.0 / self.arrays), hard=hard)
            passes = (_ceil_rows(ops.weight_bits[mm], 1.0 / self.cell_bits, hard)
                      * _ceil_rows(ops.act_bits[mm], 1.0 / self.dac_bits, hard))
            streamed = m * passes
            t_photonic = waves * streamed * f_inv
            # ---- weights that do not stay resident in the cells are reprogrammed
            spill_frac = smooth_relu(1.0 - self.weight_capacity
                                     / (ops.weight_footprint + _ONE_BYTE), 1.0, hard=hard)
            spill_bytes = spill_frac * ops.weight_bytes[mm]
            spill_cells = spill_bytes * (8.0 / self.cell_bits)
            t_program = spill_cells * (1.0 / self.write_rate)
            mem_bytes = (ops.act_in_bytes[mm] + ops.act_out_bytes[mm] + ops.kv_read_bytes[mm]
                         + ops.kv_write_bytes[mm] + spill_bytes)
            t_memory = mem_bytes * inv_mem_bw
            t_blocks.append(jnp.stack([t_photonic, t_memory, t_program], axis=1))
            if not hard:  # the report's smooth max over the three columns, per block
                max_blocks.append(smooth_maximum((t_photonic, t_memory, t_program)))
            e_laser = tiles * streamed * (self.laser_power(wl, hard=hard) * f_inv)
            e_symbol = self.modulator_energy + self.dac_fom * 2.0 ** self.dac_bits
            e_sample = self.receiver_energy + self.adc_fom * 2.0 ** self.adc_bits
            mgp = m * groups * passes
            e_in = mgp * ops.k[mm] * n_tiles * e_symbol
            e_out = mgp * ops.n[mm] * k_tiles * e_sample
            e_blocks.append(jnp.stack([
                e_laser, e_in, e_out, jnp.zeros_like(e_laser), mem_bytes * e_mem_byte,
                spill_cells * self.write_energy], axis=1))
        if n_mm < ops.rows:
            # ---- element-wise rows on the electronic unit
            flops = ops.flops[ew]
            t_electronic = flops * (1.0 / self.electronic_flops)
            mem_bytes = (ops.act_in_bytes[ew] + ops.act_out_bytes[ew] + ops.kv_read_bytes[ew]
                         + ops.kv_write_bytes[ew] + ops.weight_bytes[ew])
            zero = jnp.zeros_like(t_electronic)
            t_memory = mem_bytes * inv_mem_bw
            t_blocks.append(jnp.stack([t_electronic, t_memory, zero], axis=1))
            if not hard:
                max_blocks.append(smooth_maximum((t_electronic, t_memory, 0.0)))
            e_blocks.append(jnp.stack([zero, zero, zero, flops * self.electronic_energy,
                                       mem_bytes * e_mem_byte, zero], axis=1))
        cost = Cost(
            time_terms=jnp.concatenate(t_blocks), overhead=ops.launches * self.launch_overhead,
            energy_terms=jnp.concatenate(e_blocks), static_power=self.static_power,
            area=self.area(), peak_power=self.peak_power(hard=hard),
            capital_cost=self.capital_cost(), components=("compute", "memory", "program"),
            energy_components=("laser", "modulator_dac", "receiver_adc", "electronic",
                               "memory", "program"),
            max_time=jnp.concatenate(max_blocks) if max_blocks else None)
        return cost if undo is None else cost.take(undo)


def _ceil_rows(bits, inv_width, hard: bool):
    """[rows] ``smooth_ceil(bits * inv_width)``: slices of a ``bits``-wide operand over a
    per-design width. When ``bits`` is concrete and the same on every row (the usual
    case), it is computed once and broadcast (the same values, one row's work)."""
    if not is_traced(bits):
        b = np.asarray(bits)
        if b.ndim == 1 and b.size > 1 and np.all(b == b[0]):
            one = smooth_ceil(bits[0] * inv_width, hard=hard)
            return jnp.broadcast_to(one, bits.shape)
    return smooth_ceil(bits * inv_width, hard=hard)


def _technology(r: SpecReader) -> dict:
    from perfmodel.hardware._registry import technology_fields

    out = technology_fields(r)
    out.pop("package")
    if r.raw("technology", "node") is None:
        out["node"] = "45nm"
    return out


def from_spec(data: dict, label: str) -> OpticalAccelerator:
    """Build an `OpticalAccelerator` from a TOML spec (see hardware/presets/opima.toml)."""
    r = SpecReader(data, label)
    n = lambda *p, **kw: jnp.asarray(r.number(*p, **kw))  # noqa: E731
    max_bits = r.number("precision", "max_bits", lo=1.0, hi=32.0)
    hw = OpticalAccelerator(
        modulation_rate=n("compute", "modulation_rate", unit="_GHz"),
        comb_lines=n("compute", "comb_lines", lo=1.0),
        rows=n("compute", "rows"),
        cols=n("compute", "cols"),
        arrays=n("compute", "arrays"),
        cell_bits=n("precision", "cell_bits"),
        dac_bits=n("precision", "dac_bits"),
        adc_bits=n("precision", "adc_bits"),
        waveguide_loss=n("optics", "waveguide_loss_dB_per_cm", unit="") * 100.0,
        waveguide_length=n("optics", "waveguide_length", unit="_mm"),
        coupler_loss=n("optics", "coupler_loss", unit="_dB"),
        modulator_loss=n("optics", "modulator_loss", unit="_dB"),
        drop_loss=n("optics", "drop_loss", unit="_dB"),
        ring_through_loss=n("optics", "ring_through_loss", unit="_dB"),
        cell_loss=n("optics", "cell_loss", unit="_dB"),
        split_excess_loss=n("optics", "split_excess_loss", unit="_dB"),
        pd_sensitivity=jnp.asarray(dbm_to_watts(r.number(
            "optics", "pd_sensitivity", unit="_dBm", positive=False, lo=-60.0, hi=20.0))),
        pd_responsivity=n("optics", "pd_responsivity_A_per_W"),
        tia_noise=n("optics", "tia_noise_pA_per_rtHz") * 1e-12,
        laser_odds=jnp.asarray(to_odds(r.number("optics", "laser_efficiency", hi=0.999))),
        modulator_energy=n("energy", "modulator", unit="_fJ"),
        receiver_energy=n("energy", "receiver", unit="_pJ"),
        dac_fom=n("energy", "dac_fom", unit="_fJ"),
        adc_fom=n("energy", "adc_fom", unit="_fJ"),
        weight_capacity=n("weights", "capacity", unit="_MB"),
        write_rate=n("weights", "write_rate_cells_per_s"),
        write_energy=n("weights", "write_energy", unit="_pJ"),
        memory_bandwidth=n("memory", "bandwidth", unit="_GB_s"),
        memory_energy=n("memory", "energy", unit="_pJ_per_bit"),
        electronic_flops=n("electronic", "throughput", unit="_TFLOPS"),
        electronic_energy=n("electronic", "energy", unit="_pJ_per_flop"),
        launch_overhead=n("electronic", "launch_overhead", unit="_ns"),
        static_power=n("power", "static", unit="_W"),
        cell_area=n("area", "cell", unit="_um2"),
        converter_area=n("area", "converter", unit="_um2"),
        periphery_area=n("area", "periphery", unit="_mm2"),
        max_bits=max_bits,
        **_technology(r),
        **r.identity(),
    )
    r.finish_target()
    return hw


#: `perfmodel bench --target opima`: ResNet-50 inference, batch 1.
BENCH_CASE = dict(hardware="opima", workload="resnet-50", phase="inference", batch=1.0)
