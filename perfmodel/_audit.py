"""`gradient_audit`: do the model's gradients point the way its finite trends do?

For one design (hardware, workload phase, mapping), every scalar input that can move —
each float leaf of the hardware, each numeric workload knob (batch, lengths, bit-widths)
and each float leaf of the mapping — is moved by one step ``h`` (1 for integer-valued
inputs such as unit counts, bit-widths and batch; ``rel_step`` of the value otherwise),
and the automatic derivative is compared with the finite slopes to both neighbours, all
as the relative change of the metric per step:

    g = (dM/dx) h / M,   f = (M(x + h) - M(x)) / M,   b = (M(x) - M(x - h)) / M.

The derivative *agrees* when it lies between the two one-sided slopes, widened by a
factor ``FACTOR`` in magnitude and by ``ATOL`` (at a bound only the slope into the
domain counts), or near the secant over a few quantization periods (``trend``: the
slope over +-``TREND_STEPS`` steps or +-``TREND_REL`` of the value, for sawtooth
quantities that are flat from one integer to the next and fall over a few). A
disagreement is classed ``sign`` (opposite to every slope above
``ATOL``), ``zero`` (flat where the trend is not) or ``magnitude``. `step_scan` looks
for discontinuities along one input; `MONOTONE` names the inputs whose physics makes the
latency non-increasing (more bandwidth, clock, peak or efficiency is never slower).

This is the audit the design guide asks of every family (docs/architecture.md,
"Gradients"); tests/test_gradients.py runs it on one preset of each.
"""

from __future__ import annotations

import math
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from perfmodel._evaluate import evaluate
from perfmodel._sensitivity import parameter_names

#: Widening of the one-sided slopes' range within which a derivative agrees, in
#: magnitude (a derivative 3x the larger slope, or a third of the smaller, still agrees).
FACTOR = 3.0
#: Relative change per step below which a slope or derivative counts as flat.
ATOL = 1e-4
#: Inputs (by the last part of their name) whose increase never slows the model down:
#: rates and capacities of a resource. Units and sizes are not listed: quantization
#: (waves, tiles) may legitimately make one more unit no faster.
MONOTONE = re.compile(r"(bandwidth|clock|_rate|^rate|peak_flops|_flops|efficiency|"
                      r"throughput)(\.|$)")
#: One preset point per family that the audit checks (tests/test_gradients.py and
#: benchmarks/gradient_audit.py): family -> (hardware, workload, phase, knobs, whether to
#: audit the target's default mapping too).
CASES = {
    "xpu": ("a100-80gb", "llama-2-7b", "decode",
            dict(batch=1, context=1024, wbits=16, abits=16, kvbits=16), False),
    "dram-pim": ("hbm-pim", "gpt2-xl", "decode",
                 dict(batch=1, context=512, wbits=16, abits=16, kvbits=16), True),
    "dram-pim (pim-gpt)": ("pim-gpt", "gpt2-xl", "decode",
                           dict(batch=1, context=512, wbits=16, abits=16, kvbits=16), True),
    "lut": ("tmac-m2-ultra", "llama-2-7b", "decode",
            dict(batch=1, context=1024, wbits=4, abits=16, kvbits=16), True),
    "lut (sail)": ("sail", "llama-2-7b", "decode",
                   dict(batch=1, context=1024, wbits=4, abits=16, kvbits=16), True),
    "cim": ("edgecim", "llama-2-7b", "decode",
            dict(batch=1, context=1024, wbits=4, abits=4, kvbits=4), False),
    "bonded-3d": ("elmoe-3d", "llama-2-7b", "decode",
                  dict(batch=1, context=1024, wbits=16, abits=16, kvbits=16), False),
    "optical": ("opima", "resnet-50", "inference", dict(batch=1, wbits=8, abits=8), True),
    "system": ("neupims", "llama-2-7b", "decode",
               dict(batch=8, context=2048, wbits=16, abits=16, kvbits=16), False),
    "eager-framework": ("t4-pytorch-eager", "gpt2", "decode",
                        dict(batch=1, context=512, wbits=16, abits=16, kvbits=16), False),
}
#: Knob bounds (inclusive): a step that would leave them is not taken.
KNOB_BOUNDS = {"batch": (1.0, math.inf), "prompt": (1.0, math.inf),
               "generate": (1.0, math.inf), "context": (0.0, math.inf),
               "wbits": (1.0, 32.0), "abits": (1.0, 32.0), "kvbits": (1.0, 32.0),
               "draft_length": (1.0, math.inf)}


def _mapping_bounds(hardware, field: str) -> tuple[float, float]:
    """Domain of a mapping leaf (inclusive), from the family's documented range."""
    if field == "k_split_log2":
        return 0.0, float(np.floor(np.log2(np.asarray(hardware.sites))))
    if field == "group_size":
        return 1.0, math.inf
    if field == "wavelengths":
        return 1.0, float(np.asarray(hardware.comb_lines))
    return -math.inf, math.inf


#: Integer-valued inputs up to this size move by 1 (unit counts, bits, batch); larger ones
#: (bytes, lengths) by ``rel_step``.
UNIT_STEP_MAX = 256.0
#: Half-width of the secant that measures the trend over a quantization period (a
#: sawtooth such as ``x / ceil(x)`` can be flat from one integer to the next and still
#: fall over a few): ``TREND_STEPS`` steps or ``TREND_REL`` of the value, the larger.
TREND_STEPS, TREND_REL = 4.0, 0.1


def _step(x: float, lo: float, rel_step: float) -> float:
    if float(x).is_integer() and 1.0 <= abs(x) <= UNIT_STEP_MAX:
        return 1.0
    return rel_step * abs(x) if x else rel_step


def _within(g: float, slopes) -> bool:
    lo, hi = min(slopes), max(slopes)
    lo_w = (lo * FACTOR if lo < 0 else lo / FACTOR) - ATOL
    hi_w = (hi * FACTOR if hi > 0 else hi / FACTOR) + ATOL
    return lo_w <= g <= hi_w


def _verdict(g: float, f: float | None, b: float | None, trend: float | None) -> str:
    slopes = [s for s in (f, b) if s is not None]
    if _within(g, slopes) or (trend is not None and _within(g, [trend])):
        return "ok"
    big = [s for s in slopes if abs(s) > ATOL]
    if abs(g) <= ATOL:
        return "zero"
    if big and all(np.sign(s) != np.sign(g) for s in big):
        return "sign"
    return "magnitude"


def _metric_fn(hardware, workload, phase, knob_names, mapping, metric, hard):
    params, static = eqx.partition(hardware, eqx.is_inexact_array)
    m_params, m_static = eqx.partition(mapping, eqx.is_inexact_array)

    @jax.jit
    def fn(p, knobs, mp):
        ops = getattr(workload, phase)(**dict(zip(knob_names, knobs)))
        mp_full = None if mapping is None else eqx.combine(mp, m_static)
        rep = evaluate(eqx.combine(p, static), ops, mp_full, hard=hard, check=False)
        return getattr(rep, metric)

    return fn, params, m_params


#: Ranges scanned for steps along the workload knobs (the hardware's float leaves are
#: scanned over [x/2, 2x], the "every leaf may be scaled by [0.5, 2]" contract).
SCAN_RANGES = {"batch": (1.0, 64.0), "context": (0.0, 4096.0), "prompt": (1.0, 4096.0),
               "generate": (1.0, 1024.0), "wbits": (1.0, 16.0), "abits": (1.0, 16.0),
               "kvbits": (1.0, 16.0)}


def gradient_audit(hardware, workload, phase: str = "decode", *, mapping=None,
                   metric: str = "latency", hard: bool = False, rel_step: float = 0.01,
                   scan: bool | tuple[str, ...] = False, **knobs) -> list[dict]:
    """Automatic derivatives against finite slopes to the neighbouring integer (or
    ``rel_step``) for every input of one design (module docstring).

    **Main arguments:**

    - ``hardware``: a target; ``workload``: an `LLM` or `CNN`; ``phase``: the builder
      to call (``decode``, ``prefill``, ``request``, ``inference``...).
    - ``knobs``: the builder's numeric arguments (``batch=1, context=1024, wbits=4``);
      each one given is audited.

    **Other arguments:** ``mapping`` (audited when given), ``metric`` (a scalar
    `Report` field or property), ``hard`` (audit the exact model instead), ``rel_step``,
    ``scan``: also look for a step along each input (`step_scan` over [x/2, 2x] for
    hardware leaves, `SCAN_RANGES` for knobs, the domain for mapping leaves) and report
    it as ``jump`` (the largest relative discontinuity) and ``jump_at``; True for every
    input, or a tuple of the groups to scan (``("workload", "mapping")``).

    **Returns** one dict per scalar input: ``name`` (``hardware.dram.bandwidth``,
    ``workload.wbits``, ``mapping.k_split_log2``), ``value``, ``step``, ``autodiff``
    (g), ``forward`` (f or None at an upper bound), ``backward`` (b or None at a lower
    bound), ``trend`` (the secant slope per step, or None), ``verdict`` (``ok``,
    ``sign``, ``zero``, ``magnitude``) and ``monotone``
    (whether the physics says the latency cannot rise with it)."""
    names = [k for k, v in knobs.items() if isinstance(v, (int, float))]
    fn, params, m_params = _metric_fn(hardware, workload, phase, names, mapping, metric,
                                      hard)
    k0 = tuple(float(knobs[k]) for k in names)
    # strongly typed arrays of the default float (float64 under x64, whatever the
    # preset was loaded as), so that a moved input never retraces `fn`
    dtype = jnp.result_type(float)
    params, k0, m_params = jax.tree.map(lambda x: jnp.array(np.asarray(x), dtype),
                                        (params, k0, m_params))
    m0 = float(fn(params, k0, m_params))
    grads = jax.jit(jax.grad(fn, argnums=(0, 1, 2)))(params, k0, m_params)

    coords = []  # (name, group, leaf index, element index, value, bounds)
    for i, (name, (leaf, elem)) in enumerate(zip(parameter_names(hardware),
                                                 _elements(params))):
        coords.append(("hardware." + name, 0, leaf, elem, (0.0, math.inf)))
    for i, k in enumerate(names):
        coords.append(("workload." + k, 1, i, None, KNOB_BOUNDS.get(k, (0.0, math.inf))))
    if mapping is not None:
        paths = jax.tree_util.tree_flatten_with_path(m_params)[0]
        for leaf, elem in _elements(m_params):
            field = jax.tree_util.keystr(paths[leaf][0]).strip(".")
            coords.append(("mapping." + field + ("" if elem is None else str(elem)), 2,
                           leaf, elem, _mapping_bounds(hardware, field)))

    inputs = [params, k0, m_params]
    rows = []
    for name, group, leaf, elem, (lo, hi) in coords:
        x = _get(inputs[group], leaf, elem)
        h = _step(x, lo, rel_step)
        g = _get(grads[group], leaf, elem) * h / m0

        def at(v):
            moved = list(inputs)
            moved[group] = _set(inputs[group], leaf, elem, v)
            return float(fn(*moved))

        inside = (lambda v: v > lo) if group == 0 else (lambda v: v >= lo)
        f = (at(x + h) - m0) / m0 if x + h <= hi else None
        b = (m0 - at(x - h)) / m0 if inside(x - h) else None
        if f is None and b is None:
            continue
        w = max(TREND_STEPS * h, TREND_REL * abs(x))
        up = min(x + w, hi)
        down = x - w if inside(x - w) else x    # one-sided at a bound
        trend = ((at(up) - at(down)) / m0 * h / (up - down)
                 if up - down > h else None)
        row = dict(name=name, value=x, step=h, autodiff=g, forward=f, backward=b,
                   trend=trend, verdict=_verdict(g, f, b, trend),
                   monotone=bool(MONOTONE.search(name.split(".", 1)[1])))
        groups = ("hardware", "workload", "mapping") if scan is True else (scan or ())
        if name.split(".")[0] in groups:
            if group == 0:
                a, z = 0.5 * x, 2.0 * x
            elif group == 1:
                a, z = SCAN_RANGES.get(name.split(".")[1], (0.5 * x, 2.0 * x))
            else:
                a, z = max(lo, -abs(x) - 4.0), min(hi, abs(x) + 4.0)
            row["jump_at"], row["jump"] = step_scan(at, x, a, z)
        rows.append(row)
    return rows


def step_scan(fn, x0: float, lo: float, hi: float, *, points: int = 65,
              candidates: int = 6, refine: int = 40) -> tuple[float, float]:
    """The largest discontinuity of ``fn`` (a scalar function of one float) on
    ``[lo, hi]``: each of the grid's ``candidates`` largest relative changes is bisected
    ``refine`` times towards the half holding the larger change; a continuous
    function's change vanishes with the interval, a step's does not. The limits from
    either side of ``x0`` and of every integer in range are compared as well. Returns
    ``(where, relative jump)`` of the largest."""
    xs = np.linspace(lo, hi, points)
    ys = np.array([float(fn(x)) for x in xs])
    rel = np.abs(np.diff(ys)) / np.maximum(np.abs(ys[:-1]), 1e-300)
    best = (x0, 0.0)
    # thresholds sit at integers (bit-widths, counts) and at the design point: compare
    # the limits from either side there, where a bisection may follow a steeper ramp
    integers = range(math.ceil(lo), math.floor(hi) + 1) if hi - lo <= 256 else ()
    special = [x0] + [float(k) for k in integers]
    for x in special:
        eps = 1e-10 * (abs(x) or 1.0)
        if lo <= x - eps and x + eps <= hi:
            left, right = float(fn(x - eps)), float(fn(x + eps))
            jump = abs(right - left) / max(abs(left), 1e-300)
            if jump > best[1]:
                best = (x, jump)
    for i in np.argsort(rel)[::-1][:candidates]:
        a, b, fa, fb = xs[i], xs[i + 1], ys[i], ys[i + 1]
        for _ in range(refine):
            mid = 0.5 * (a + b)
            fm = float(fn(mid))
            if abs(fm - fa) >= abs(fb - fm):
                b, fb = mid, fm
            else:
                a, fa = mid, fm
        jump = abs(fb - fa) / max(abs(fa), 1e-300)
        if jump > best[1]:
            best = (0.5 * (a + b), jump)
    return best


# ---------------------------------------------------------------------- pytree access
def _elements(tree):
    """(leaf index, element index or None) of every scalar in a pytree of arrays."""
    out = []
    for i, leaf in enumerate(jax.tree.leaves(tree)):
        if np.ndim(leaf) == 0:
            out.append((i, None))
        else:
            out.extend((i, j) for j in range(np.size(leaf)))
    return out


def _get(tree, leaf, elem) -> float:
    x = jax.tree.leaves(tree)[leaf]
    return float(np.ravel(np.asarray(x))[elem] if elem is not None else np.asarray(x))


def _set(tree, leaf, elem, value):
    leaves, treedef = jax.tree.flatten(tree)
    x = leaves[leaf]
    if elem is None:
        leaves[leaf] = jnp.array(np.asarray(value, np.asarray(x).dtype))
    else:
        flat = jnp.ravel(jnp.asarray(x)).at[elem].set(value)
        leaves[leaf] = flat.reshape(jnp.shape(x))
    return jax.tree.unflatten(treedef, leaves)
