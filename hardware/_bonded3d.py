"""Hybrid-bonded 3D DRAM-on-logic target (ELMoE-3D, Stratum-style near-memory stacks).

A DRAM die hybrid-bonded face-to-face on a logic die with bit-sliced MAC arrays; an
off-package tier (LPDDR/DDR) holds what does not fit. Per op row and instance (SI):

    bonds      = A_bond / p^2                       (bond density 1/p^2 x bonded area)
    B_bond     = bonds * f_signal * r_bond / 8      (signal bonds x per-bond rate; B/s)
    B_3d       = soft_min(B_bond, B_array) * eta_3d * derate
                 (finer pitch never lowers bandwidth: the DRAM arrays cap it)
    P_dyn_pk   = N_mac * f_clk * e_slice + B_3d_peak * 8 * (e_bond + e_array)
    derate     = soft_min(1, (rho_max * A_stack - P_static) / P_dyn_pk)
                 (clock and bank rate throttled so that stack power <= rho_max * A_stack)
    slices     = ceil(weight_bits / slice_bits)     (bit-sliced weights; 1 for vector ops)
    t_compute  = flops / 2 * slices / (N_mac * f_clk * eta_mac * derate)
    MoE expert cache (kinds moe_up, moe_down), E experts per layer (router width):
      resident   = (1 - s_exp) * W + KV,  s_exp = expert share of the weight bytes
      x          = soft_min(smooth_relu(C_3d - resident) / (s_exp * W), 1)
      hit        = H(x E, s) / H(E, s),  H = generalized harmonic number (Zipf routing
                   with skew s, Euler-Maclaurin form: smooth in the cached count)
      held       = min(cache_bits / weight_bits, 1): the share of a cached expert's
                   bits kept in the stack (ELMoE-3D: its top slice), so the cache
                   covers x = room / (held s_exp W) of the experts; its other bits and
                   the uncached experts live off-package only
      draft rows (``draft:`` prefix, self-speculation) read only cached experts (hit),
      exactly their held bits, from the stack; other expert rows read
      min(hit held, B_3d / (B_3d + B_off)) from the stack and the rest off-package;
      non-expert weights and KV spill f_sp = relu(1 - C_3d / resident) off-package.
    t_3d       = bytes_3d / B_3d,   t_off = bytes_off / (B_off * eta_off)
    t          = smooth_max(t_compute, t_3d, t_off) + launches * t_launch
    E          = flops/2 * slices * e_slice + 8 bytes_3d (e_bond + e_array)
                 + 8 bytes_off e_off + (P_static + P_host) * latency
                 (P_host: static power of the host whose memory is the off-package tier;
                 outside the stack, so not in its power density)
    area       = A_logic + bonds * f_signal * a_cell   (stack footprint, m^2)

Self-speculation as a serving mode of the design (``speculative = True``): a decode
table is run as Elastic-SD (perfmodel.workloads._speculative): per row,
``t = (gamma * t_draft + t_verify) / tau``, ``tau = (1 - alpha^(gamma+1)) / (1 - alpha)``,
the draft reading the held slice of cached experts (only those) and ``draft_fraction``
of the other weight rows' bit-planes, and the verify every bit-plane of the touched
experts for ``gamma + 1`` tokens (the held slice again from the stack, the rest
off-package). The draft's time goes to the report's ``overhead`` column (it does not
overlap the verify). ``smooth_*`` are exact with ``hard=True``. Constants, sources and
limits: docs/families/bonded3d.md.

Peak power and cost (docs/cost.md): ``P_peak = derate P_dyn_pk + 8 B_off e_off + P_static
+ P_host``; ``cost = die_cost(A_logic, node) + C_3d price(stacked DRAM, as HBM3) +
C_off price(memory_kind) + hybrid-bonding package(A_bond)``.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from perfmodel._errors import ModelInputError
from perfmodel._ops import Ops
from perfmodel._report import Cost
from perfmodel._smooth import smooth_ceil, smooth_maximum, smooth_min, smooth_relu
from perfmodel._spec import SpecReader
from perfmodel._target import AbstractUnit, check_positive_leaves, is_traced, check_capacity
from perfmodel.hardware import _technology as tech
from perfmodel.hardware._xpu import MATMUL_KINDS, MemoryLevel, from_odds, to_odds
from perfmodel.workloads import _speculative as spec

#: Kinds whose weights are MoE experts (served through the expert cache).
EXPERT_KINDS = spec.EXPERT_KINDS
#: Default ``moe.cache_bits``: at least any weight format's bits, so that a cached expert
#: is held whole. Bits.
WHOLE_EXPERT_BITS = 32.0
#: Below this |u| the relative exponential expm1(u)/u uses its series (no 0/0).
_EXPREL_SERIES = 1e-4
#: Floor of the power-derating factor (keeps times finite when static power alone
#: exceeds the budget; `check` rejects such designs). Dimensionless, chosen.
_MIN_DERATE = 1e-3

BENCH_CASE = dict(hardware="elmoe-3d", workload="llama-2-7b", phase="decode", batch=1.0,
                  context=1024.0)


#: Ridge sharpness of the held share ``min(cache_bits / weight_bits, 1)``: a cache that
#: holds whole experts of exactly its width sits on the ridge, where the share is 0.1 %
#: below 1 (with the default 0.02 it would be 2 % below, and that 2 % of every hit would
#: be read off-package). Chosen.
COVER_SHARPNESS = 1e-3

#: Exponent of the monotone smooth minimum `soft_min` (1 - 2^(-1/p) = 8.3% below the
#: exact minimum where the arguments tie, < 0.1% at a 2:1 ratio). Chosen.
SOFT_MIN_POWER = 8.0


def soft_min(a, b, *, hard: bool = False):
    """Minimum of two positive quantities, ``(a^-p + b^-p)^(-1/p)``: never above the exact
    minimum and non-decreasing in each argument (the ``a + b - smooth_max`` form falls
    when one argument grows far past the other). Exact with ``hard``."""
    if hard:
        return jnp.minimum(a, b)
    lo = jnp.minimum(a, b)
    r = lo / jnp.maximum(a, b)  # in (0, 1]: scale-free, no overflow
    return lo / (1.0 + r ** SOFT_MIN_POWER) ** (1.0 / SOFT_MIN_POWER)


def _exprel(u):
    """expm1(u) / u, smooth through u = 0."""
    small = jnp.abs(u) < _EXPREL_SERIES
    safe = jnp.where(small, 1.0, u)
    return jnp.where(small, 1.0 + 0.5 * u, jnp.expm1(safe) / safe)


def harmonic(x, s):
    """Generalized harmonic number H(x, s) = sum_{i<=x} i^-s, smooth in real x >= 0:
    Euler-Maclaurin ``(x^(1-s) - 1)/(1-s) + (1 + x^-s)/2 + s/12 (1 - x^(-s-1))`` for
    x >= 1 (exact at integers to < 1% for s <= 2, x >= 2), linear ``x`` below 1."""
    xs = jnp.maximum(x, 1.0)
    lx = jnp.log(xs)
    integral = lx * _exprel((1.0 - s) * lx)
    em = integral + 0.5 * (1.0 + xs ** (-s)) + s / 12.0 * (1.0 - xs ** (-s - 1.0))
    return jnp.where(x < 1.0, x, em)


def zipf_hit_rate(cached, experts, skew):
    """Fraction of expert accesses that hit a cache of the ``cached`` most popular of
    ``experts`` experts under Zipf popularity with exponent ``skew``."""
    return harmonic(cached, skew) / harmonic(experts, skew)


class Bonded3D(AbstractUnit):
    """A hybrid-bonded DRAM-on-logic stack with an off-package memory tier, an MoE
    expert cache and optional self-speculative decoding (Elastic-SD).

    Every float leaf may be scaled by [0.5, 2] and remains a valid design (fractions are
    stored as odds)."""

    bond_pitch: Float[Array, ""]            # m, hybrid-bond pitch
    bonded_area: Float[Array, ""]           # m^2 of bonded face
    bond_rate: Float[Array, ""]             # bit/s per signal bond
    signal_odds: Float[Array, ""]           # signal share of bonds (vs power/ground/spare)
    bond_energy_per_bit: Float[Array, ""]   # J/bit across the bond
    bond_cell_area: Float[Array, ""]        # m^2 of logic per signal bond (driver, ESD)
    array_bandwidth: Float[Array, ""]       # B/s, DRAM bank-array limit of the stack
    dram_capacity: Float[Array, ""]         # B in the stacked DRAM
    array_energy_per_bit: Float[Array, ""]  # J/bit, DRAM cell + local IO (bank-level)
    dram_odds: Float[Array, ""]             # achieved/peak stack bandwidth, odds
    offchip: MemoryLevel                    # off-package tier (bandwidth, capacity, ...)
    mac_units: Float[Array, ""]             # MACs per cycle (one weight slice each)
    clock: Float[Array, ""]                 # Hz
    slice_bits: Float[Array, ""]            # weight bits per slice of the MAC array
    energy_per_slice_mac: Float[Array, ""]  # J per MAC per weight slice
    compute_odds: Float[Array, ""]          # achieved/peak MAC rate, odds
    logic_area: Float[Array, ""]            # m^2 of logic (MAC arrays, SRAM, control)
    static_power: Float[Array, ""]          # W of the stack (in its power density)
    host_power: Float[Array, ""]            # W of the host owning the off-package tier
    power_density_limit: Float[Array, ""]   # W/m^2 of stack footprint
    routing_skew: Float[Array, ""]          # Zipf exponent of expert popularity
    cache_bits: Float[Array, ""]            # bits of each cached expert weight in the stack
    launch_overhead: Float[Array, ""]       # s per op instance (dispatch, sync)
    acceptance_odds: Float[Array, ""]       # speculation: per-token acceptance, odds
    draft_odds: Float[Array, ""]            # speculation: draft bits / weight bits, odds
    name: str = eqx.field(static=True)
    bibtex: str = eqx.field(static=True)
    title: str = eqx.field(static=True, default="")
    speculative: bool = eqx.field(static=True, default=False)
    draft_length: int = eqx.field(static=True, default=4)
    node: str = eqx.field(static=True, default=tech.REFERENCE_NODE)
    memory_kind: str = eqx.field(static=True, default="lpddr5")  # off-package tier

    #: Fields moved by `perfmodel.hardware.rescale_node`.
    NODE_SCALED = {
        "logic": ("logic_area", "bond_cell_area"),
        "energy": ("energy_per_slice_mac", "static_power")}
    #: Price of the hybrid-bonded DRAM die per byte (assumed: as HBM3, a stacked DRAM).
    STACK_DRAM_KIND = "hbm3"

    # ------------------------------------------------------------------ derived
    @property
    def signal_fraction(self):
        return from_odds(self.signal_odds)

    @property
    def acceptance(self):
        return from_odds(self.acceptance_odds)

    @property
    def draft_fraction(self):
        return from_odds(self.draft_odds)

    def bonds(self):
        """Bond count: density 1/pitch^2 times the bonded area (pads tile the area)."""
        return self.bonded_area / (self.bond_pitch * self.bond_pitch)

    def bond_bandwidth(self):
        """B/s the signal bonds can carry."""
        return self.bonds() * self.signal_fraction * self.bond_rate / 8.0

    def peak_bandwidth(self, *, hard: bool = False):
        """Stack bandwidth before efficiency and derating: bonds or DRAM arrays."""
        return soft_min(self.bond_bandwidth(), self.array_bandwidth, hard=hard)

    def area(self):
        """Stack footprint, m^2: logic plus the bond drivers."""
        return self.logic_area + self.bonds() * self.signal_fraction * self.bond_cell_area

    def peak_dynamic_power(self, *, hard: bool = False):
        return (self.mac_units * self.clock * self.energy_per_slice_mac
                + self.peak_bandwidth(hard=hard) * 8.0
                * (self.bond_energy_per_bit + self.array_energy_per_bit))

    def derate(self, *, hard: bool = False):
        """Throughput factor in (0, 1] that keeps stack power under the density limit."""
        budget = self.power_density_limit * self.area() - self.static_power
        p_dyn = self.peak_dynamic_power(hard=hard)
        usable = smooth_relu(budget, p_dyn, hard=hard) + _MIN_DERATE * p_dyn
        return soft_min(usable / p_dyn, 1.0, hard=hard)

    def chip_area(self, mapping=None, *, hard: bool = False):
        """Stack footprint, m^2 (`area`)."""
        return self.area()

    def peak_power(self, mapping=None, *, hard: bool = False):
        """W: the stack's (derated) peak dynamic power, the off-package tier at full
        bandwidth, the stack's and the host's static power."""
        return (self.derate(hard=hard) * self.peak_dynamic_power(hard=hard)
                + 8.0 * self.offchip.bandwidth * self.offchip.energy_per_bit
                + self.static_power + self.host_power)

    def capital_cost(self, mapping=None, *, hard: bool = False):
        """USD: the logic die at ``node``, the bonded DRAM (priced as HBM3), the
        off-package DRAM and the hybrid-bonding assembly."""
        return (tech.die_cost(self.logic_area, self.node)
                + tech.memory_cost(self.dram_capacity, self.STACK_DRAM_KIND)
                + tech.memory_cost(self.offchip.capacity, self.memory_kind)
                + tech.package_cost("3d", self.bonded_area))

    # ------------------------------------------------------------------ validation
    def check(self, ops: Ops | None = None) -> None:
        check_positive_leaves(self, self.name)
        if not isinstance(self.draft_length, int) or self.draft_length < 1:
            raise ModelInputError(f"{self.name}.draft_length = {self.draft_length!r} is "
                                  "invalid; it must be an integer >= 1.")
        if is_traced(self.static_power):
            return
        budget = float(self.power_density_limit * self.area())
        if float(self.static_power) >= budget:
            raise ModelInputError(
                f"{self.name}.static_power = {float(self.static_power):g} W is invalid; it "
                f"must be below power_density_limit x area = {budget:g} W.")
        if ops is not None:
            check_capacity(ops, self.dram_capacity + self.offchip.capacity,
                           f"{self.name}.dram_capacity + offchip.capacity",
                           "reduce batch/context/bits or add capacity")

    # ------------------------------------------------------------------ the model
    def _expert_split(self, ops: Ops, *, hard: bool):
        """(hit rate of expert accesses, spill fraction of non-expert resident bytes,
        share of a cached expert's weight bits held in the stack)."""
        experts = spec.router_width(ops)
        ex = np.array([k in EXPERT_KINDS for k in ops.kinds])
        body = np.array([k in spec.WEIGHT_KINDS for k in ops.kinds])
        if experts is not None and ex.any():
            # expert share of the (body) weight bytes, from the rows: an expert row's
            # weights for all E experts are weight_bytes * E / groups.
            full = ops.weight_bytes * ops.count * jnp.where(ex, experts / ops.groups, 1.0)
            ex_full = jnp.where(ex, full, 0.0)
            share = jnp.sum(ex_full) / jnp.sum(jnp.where(body, full, 0.0))
            bits = jnp.sum(ex_full * ops.weight_bits) / jnp.sum(ex_full)
            held = smooth_min(self.cache_bits / bits, 1.0, hard=hard,
                              sharpness=COVER_SHARPNESS)
        else:
            share, held = jnp.asarray(0.0), jnp.asarray(1.0)
        expert_bytes = share * ops.weight_footprint
        resident = ops.weight_footprint - expert_bytes + ops.kv_footprint + 1.0
        spill = smooth_relu(1.0 - self.dram_capacity / resident, 1.0, hard=hard)
        if experts is None:
            return jnp.asarray(1.0), spill, held
        room = smooth_relu(self.dram_capacity - resident, self.dram_capacity, hard=hard)
        frac = soft_min(room / (held * expert_bytes + 1.0) + 1e-12, 1.0, hard=hard)
        hit = zipf_hit_rate(frac * experts, experts, self.routing_skew)
        return jnp.minimum(hit, 1.0), spill, held

    def _rows(self, ops: Ops, hit, spill, held, *, hard: bool, derate):
        """Per-row time columns (3 x [rows]), overhead [rows], energy columns (3 x
        [rows]); columns, not stacks, so that `Cost.from_columns` can skip the stack.
        ``held``: share of these rows' expert weight bytes that a cached expert keeps in
        the stack (the rest of its bits live off-package only)."""
        mm = np.array([k in MATMUL_KINDS for k in ops.kinds])
        ex = np.array([k in EXPERT_KINDS for k in ops.kinds])
        draft = np.array([n.startswith(spec.DRAFT_PREFIX) for n in ops.names])
        slices = jnp.where(mm, smooth_ceil(ops.weight_bits / self.slice_bits, hard=hard), 1.0)
        macs = 0.5 * ops.flops * slices
        rate = self.mac_units * self.clock * from_odds(self.compute_odds) * derate
        t_compute = macs / rate
        # expert weights: hits from the stack (the held bits; the others off-package);
        # misses off-package (draft: skipped)
        w = ops.weight_bytes
        kv = ops.kv_read_bytes + ops.kv_write_bytes
        act = ops.act_in_bytes + ops.act_out_bytes
        bw_3d = self.peak_bandwidth(hard=hard) * from_odds(self.dram_odds) * derate
        bw_off = self.offchip.bandwidth * self.offchip.efficiency
        # cached experts also live in main memory: reads of them are split so that both
        # tiers finish together (share bw_3d / (bw_3d + bw_off)) when the cache is big
        # enough, so a bigger cache is never slower.
        verify_hit = soft_min(hit * held, bw_3d / (bw_3d + bw_off), hard=hard)
        w_stack = jnp.where(ex, w * jnp.where(draft, hit * held, verify_hit),
                            w * (1.0 - spill))
        w_off = jnp.where(ex, w * jnp.where(draft, hit * (1.0 - held), 1.0 - verify_hit),
                          w * spill)
        bytes_3d = w_stack + kv * (1.0 - spill) + act
        bytes_off = w_off + kv * spill
        t_3d = bytes_3d / bw_3d
        t_off = bytes_off / bw_off
        terms = (t_compute, t_3d, t_off)
        energy = (
            macs * self.energy_per_slice_mac,
            bytes_3d * 8.0 * (self.bond_energy_per_bit + self.array_energy_per_bit),
            bytes_off * 8.0 * self.offchip.energy_per_bit,
        )
        return terms, ops.launches * self.launch_overhead, energy

    def cost(self, ops: Ops, mapping=None, *, hard: bool = False) -> Cost:
        if mapping is not None:
            raise ModelInputError("the bonded-3d target has no mapping choices; pass "
                                  "mapping=None.")
        derate = self.derate(hard=hard)
        hit, spill, held = self._expert_split(ops, hard=hard)
        names = ("compute", "stack_dram", "offchip")
        if self.speculative and ops.phase == "decode":
            g = float(self.draft_length)
            f = self.draft_fraction
            # Elastic-SD: an expert row's draft is the slice the stack holds of it (the
            # cache is the draft); other weight rows read the top f of their bits
            ex = np.array([k in EXPERT_KINDS for k in ops.kinds])
            d_ops = dataclasses.replace(
                spec.draft_ops(ops, jnp.where(ex, held, f) if ex.any() else f),
                names=tuple(spec.DRAFT_PREFIX + n for n in ops.names))
            # the verify reads every bit of the touched experts again: the held top
            # slice from the stack, the rest (and uncached experts) off-package
            v_ops = spec.verify_ops(ops, self.draft_length, 1.0)
            d_t, d_o, d_e = self._rows(d_ops, hit, spill, 1.0, hard=hard, derate=derate)
            v_t, v_o, v_e = self._rows(v_ops, hit, spill, held, hard=hard, derate=derate)
            inv_tau = 1.0 / spec.expected_tokens(self.draft_length, self.acceptance)
            d_max = smooth_maximum(d_t, hard=hard)
            terms = tuple(t * inv_tau for t in v_t)
            overhead = (g * (d_max + d_o) + v_o) * inv_tau
            energy = tuple((g * d + v) * inv_tau for d, v in zip(d_e, v_e))
        else:
            terms, overhead, energy = self._rows(ops, hit, spill, held, hard=hard,
                                                 derate=derate)
        return Cost.from_columns(
            terms, overhead=overhead, energy_columns=energy,
            static_power=self.static_power + self.host_power, area=self.area(),
            components=names, energy_components=names, hard=hard,
            peak_power=self.peak_power(hard=hard), capital_cost=self.capital_cost())


# ---------------------------------------------------------------------- spec files
def _technology(r: SpecReader) -> dict:
    from perfmodel.hardware._registry import technology_fields

    out = technology_fields(r, memory="lpddr5")
    out.pop("package")
    return out


def from_spec(data: dict, label: str) -> Bonded3D:
    """Read a ``family = "bonded-3d"`` spec (format: docs/families/bonded3d.md)."""
    r = SpecReader(data, label)
    n = lambda *p, **kw: jnp.asarray(r.number(*p, **kw))  # noqa: E731
    speculative = r.section("speculation", required=False) is not None
    if speculative:
        speculative = r.raw("speculation", "enabled", default=True)
        if not isinstance(speculative, bool):
            raise ModelInputError(f"{label}: speculation.enabled = {speculative!r} must be "
                                  "true or false.")
    draft_length = 4
    acceptance, draft_fraction = 0.5, 0.5
    if r.section("speculation", required=False) is not None:
        draft_length = r.raw("speculation", "draft_length", required=True)
        if isinstance(draft_length, bool) or not isinstance(draft_length, int) \
                or draft_length < 1:
            raise ModelInputError(f"{label}: speculation.draft_length = {draft_length!r} "
                                  "is invalid; it must be an integer >= 1.")
        acceptance = r.number("speculation", "acceptance", hi=0.999)
        draft_fraction = r.number("speculation", "draft_fraction", hi=0.999)
    pitch = r.number("bond", "pitch", unit="_um")
    hw = Bonded3D(
        bond_pitch=jnp.asarray(pitch),
        bonded_area=n("bond", "area", unit="_mm2"),
        bond_rate=n("bond", "rate", unit="_Gbps"),
        signal_odds=jnp.asarray(to_odds(r.number("bond", "signal_fraction", hi=0.999))),
        bond_energy_per_bit=n("bond", "energy", unit="_pJ_per_bit"),
        bond_cell_area=n("bond", "cell_area", unit="_um2"),
        array_bandwidth=n("dram", "array_bandwidth", unit="_GB_s"),
        dram_capacity=n("dram", "capacity", unit="_GB"),
        array_energy_per_bit=n("dram", "energy", unit="_pJ_per_bit"),
        dram_odds=jnp.asarray(to_odds(r.number("dram", "efficiency", hi=0.999))),
        offchip=MemoryLevel(
            bandwidth=n("offchip", "bandwidth", unit="_GB_s"),
            capacity=n("offchip", "capacity", unit="_GB"),
            energy_per_bit=n("offchip", "energy", unit="_pJ_per_bit"),
            odds=jnp.asarray(to_odds(r.number("offchip", "efficiency", hi=0.999)))),
        mac_units=n("compute", "mac_units"),
        clock=n("compute", "clock", unit="_GHz"),
        slice_bits=n("compute", "slice_bits"),
        energy_per_slice_mac=n("compute", "energy", unit="_pJ_per_mac"),
        compute_odds=jnp.asarray(to_odds(r.number("compute", "efficiency", hi=0.999))),
        logic_area=n("compute", "logic_area", unit="_mm2"),
        static_power=n("power", "static", unit="_W"),
        host_power=n("power", "host", unit="_W"),
        power_density_limit=n("power", "density_limit", unit="_W_per_cm2"),
        routing_skew=n("moe", "routing_skew"),
        cache_bits=n("moe", "cache_bits", default=WHOLE_EXPERT_BITS),
        launch_overhead=n("compute", "launch_overhead", unit="_us"),
        acceptance_odds=jnp.asarray(to_odds(acceptance)),
        draft_odds=jnp.asarray(to_odds(draft_fraction)),
        **r.identity(),
        speculative=speculative,
        draft_length=int(draft_length),
        **_technology(r),
    )
    r.finish_target()
    return hw
