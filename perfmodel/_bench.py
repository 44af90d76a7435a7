"""Speed benchmark: vmapped design evaluations per second, with and without gradients.

The workload is a full Llama-2-7B decode step (batch 8, context 2048, fp16) on the
a100-80gb xPU preset. Designs: every float leaf of the hardware scaled by an independent
random factor in [0.5, 2]. Reported: evaluations/s of the jitted, vmapped model (in
cache-sized chunks with `perfmodel.sweep`, and as one plain vmap), the same for
value-and-gradient w.r.t. all hardware leaves (in `sweep`'s default minor layout, and
in the plain-vmap major layout with the agreement of the two), and jit compile times. Also,
when the optional `genz-llm` package is installed, the time of one GenZ evaluation of
the same decode step (Bambhaniya et al., arXiv:2406.01698) and the speed ratio.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
import warnings

import equinox as eqx
import jax
import numpy as np

from perfmodel._evaluate import _MINOR_CHUNK


#: Designs per chunk of the plain-vmap (major layout) value-and-gradient comparison: on 2
#: cores it runs ~2x faster in chunks of 8192 than as one vmap. `sweep`'s own minor
#: layout uses its default chunk; the forward pass is also timed as one plain vmap, and
#: the faster of the two is reported.
CHUNK_GRAD = 8192


def random_designs(hw, n: int, key, lo: float = 0.5, hi: float = 2.0):
    """``n`` designs: each float leaf of ``hw`` times its own U[lo, hi] factor.
    Returns (batched float leaves, static part) for `eqx.combine`."""
    params, static = eqx.partition(hw, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    scaled = [leaf[None] * jax.random.uniform(k, (n,) + leaf.shape, leaf.dtype, lo, hi)
              for leaf, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, scaled), static


def _time(fn, *args, repeats: int):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def time_genz_decode(batch: int = 8, context: int = 2048, repeats: int = 5) -> dict | None:
    """Seconds per GenZ evaluation of a Llama-2-7B decode step on its A100_80GB_GPU
    preset (bf16), or None when genz-llm is not installed or fails. GenZ writes layer
    CSV files per call under /tmp/genz; they are removed."""
    try:
        import glob
        import os

        with contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from GenZ import decode_moddeling

            def call():
                before = set(glob.glob("/tmp/genz/data/model/*"))
                out = decode_moddeling(model="llama2_7b", batch_size=batch,
                                       input_tokens=context, output_tokens=0, Bb=1,
                                       system_name="A100_80GB_GPU", bits="bf16")
                for f in set(glob.glob("/tmp/genz/data/model/*")) - before:
                    os.remove(f)
                return out

            out = call()
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                call()
                times.append(time.perf_counter() - t0)
        from importlib.metadata import version

        return {"seconds_per_eval": float(np.median(times)),
                "latency_s": float(out["Latency"]) / 1e3, "genz_version": version("genz-llm")}
    except Exception:  # noqa: BLE001 - optional comparison; any failure means "not available"
        return None


#: The default case: Llama-2-7B decode, batch 8, context 2048, on the A100 xPU.
DEFAULT_CASE = dict(hardware="a100-80gb", workload="llama-2-7b", phase="decode",
                    batch=8.0, context=2048.0)


def bench_cases() -> list[dict]:
    """One benchmark case per target family: the xPU default, plus each family module's
    ``BENCH_CASE`` (a dict of hardware preset, workload, phase and its arguments)."""
    import importlib

    from perfmodel.hardware._registry import _FAMILIES

    cases = [DEFAULT_CASE]
    for family, builder in _FAMILIES.items():
        if isinstance(builder, str):
            try:
                mod = importlib.import_module(builder)
            except ModuleNotFoundError:
                continue
            case = getattr(mod, "BENCH_CASE", None)
            if case is not None:
                cases.append(dict(case))
    return cases


def case_ops(case: dict):
    """The `Ops` of a benchmark case."""
    from perfmodel import workloads

    wl = workloads.preset(case["workload"])
    kw = {k: v for k, v in case.items()
          if k not in ("hardware", "workload", "phase", "batch")}
    return getattr(wl, case.get("phase", "decode"))(case.get("batch", 1.0), **kw)


def case_label(case: dict) -> str:
    extra = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                      for k, v in case.items() if k not in ("hardware", "workload", "phase"))
    return f"{case['workload']} {case.get('phase', 'decode')} ({extra})"


def layout_agreement(got, want, batch) -> dict:
    """How far `sweep`'s minor layout is from a plain vmap on the bench designs: the
    largest relative latency difference, and the largest absolute difference of an
    elasticity d log(latency) / d log(leaf) (dimensionless, so a leaf whose gradient is
    ~1e-22 far from its bound does not blow up a relative measure)."""
    lat = np.asarray(want[0])
    rel = float(np.max(np.abs(np.asarray(got[0]) - lat) / lat))
    worst = 0.0
    for a, b, p in zip(jax.tree.leaves(got[1]), jax.tree.leaves(want[1]),
                       jax.tree.leaves(batch)):
        scale = np.asarray(p) / lat.reshape((-1,) + (1,) * (np.ndim(p) - 1))
        worst = max(worst, float(np.max(np.abs((np.asarray(a) - np.asarray(b)) * scale))))
    return {"latency_rel": rel, "elasticity_abs": worst}


def run(designs: int = 100_000, repeats: int = 3, *, case: dict | None = None,
        genz: bool = True, seed: int = 0) -> dict:
    """Run the benchmark of one case (default `DEFAULT_CASE`); returns a JSON-ready dict
    of figures."""
    from perfmodel import evaluate, hardware as hw_mod, sweep

    case = dict(case or DEFAULT_CASE)
    hardware = case["hardware"]
    hw = hw_mod.preset(hardware)
    ops = case_ops(case)
    hw.check(ops)
    batch, static = random_designs(hw, designs, jax.random.PRNGKey(seed))

    def latency(p):
        return evaluate(eqx.combine(p, static), ops, check=False).latency

    vg = jax.value_and_grad(latency)
    f_plain = jax.jit(jax.vmap(latency))
    # sweep on concrete designs: one jitted minor-layout chunk, dispatched per chunk
    def f(b):
        return sweep(latency, b)

    def g(b):
        return sweep(vg, b)

    g_major = jax.jit(lambda b: sweep(vg, b, chunk=CHUNK_GRAD, layout="major"))
    t0 = time.perf_counter()
    jax.block_until_ready(f(batch))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = jax.block_until_ready(g(batch))
    compile_grad_s = time.perf_counter() - t0
    want = jax.block_until_ready(g_major(batch))
    jax.block_until_ready(f_plain(batch))
    t = _time(f, batch, repeats=repeats)
    tg = _time(g, batch, repeats=repeats)
    tg_major = _time(g_major, batch, repeats=repeats)
    t_plain = _time(f_plain, batch, repeats=repeats)
    lat = np.asarray(f(batch))
    single = jax.jit(latency)
    one = jax.tree.map(lambda x: x[0], batch)
    jax.block_until_ready(single(one))
    t_single = _time(single, one, repeats=50)
    out = {
        "hardware": hardware, "workload": case_label(case),
        "rows": ops.rows, "designs": designs, "device": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(),
        "evals_per_s": max(designs / t, designs / t_plain), "evals_per_s_grad": designs / tg,
        "evals_per_s_grad_major": designs / tg_major,
        "evals_per_s_single_vmap": designs / t_plain, "evals_per_s_chunked": designs / t,
        "chunk": _MINOR_CHUNK, "chunk_grad": _MINOR_CHUNK, "chunk_grad_major": CHUNK_GRAD,
        "compile_s": compile_s, "compile_grad_s": compile_grad_s,
        "single_eval_s": t_single, "all_finite": bool(np.all(np.isfinite(lat))),
        "latency_s_median": float(np.median(lat)),
        "minor_vs_major": layout_agreement(got, want, batch),
    }
    if genz and case == DEFAULT_CASE:
        gz = time_genz_decode()
        out["genz"] = gz
        if gz is not None:
            out["speedup_vs_genz_single"] = gz["seconds_per_eval"] / t_single
            out["speedup_vs_genz_vmapped"] = gz["seconds_per_eval"] * designs / t
    return out
