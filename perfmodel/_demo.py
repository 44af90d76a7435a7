"""`perfmodel demo`: Llama-2-7B prefill and decode on A100, H100 and an Arm server CPU.

Prints a table (latency, tokens/s, J/token, and the bound of each op class) and writes
a roofline plot of the ops (PNG) to ``out/roofline.png``.
"""

from __future__ import annotations

import pathlib

import numpy as np

HARDWARE = ("a100-80gb", "h100-sxm", "neoverse-n1")
WORKLOAD = "llama-2-7b"
PHASES = {"prefill": dict(batch=1.0, prompt=2048.0), "decode": dict(batch=8.0, context=2048.0)}
_SHORT = {"compute": "C", "dram": "M", "l2": "L2", "offload": "OFF", "interconnect": "NET",
          "overhead": "OH"}


def _evaluate_all():
    from perfmodel import evaluate, hardware, workloads

    wl = workloads.preset(WORKLOAD)
    results = []
    for hname in HARDWARE:
        hw = hardware.preset(hname)
        for phase, knobs in PHASES.items():
            ops = getattr(wl, phase)(**knobs)
            results.append((hw, phase, ops, evaluate(hw, ops)))
    return results


def roofline_plot(results, path):
    """Achieved FLOP/s vs operational intensity of every op, with each device's roof."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    colors = {h: c for h, c in zip(HARDWARE, ("tab:blue", "tab:orange", "tab:green"))}
    seen = set()
    for hw, phase, ops, rep in results:
        peak = float(hw.peak_flops[hw.datatypes.index("fp16")])
        bw = float(hw.dram.bandwidth)
        if hw.name not in seen:
            x = np.logspace(-1, 4, 200)
            ax.loglog(x, np.minimum(peak, x * bw), color=colors[hw.name], lw=1.5,
                      label=f"{hw.name} roof (fp16 peak, DRAM peak)")
            seen.add(hw.name)
        intensity = np.asarray(ops.intensity)
        achieved = np.asarray(ops.flops * ops.count / rep.op_time)
        keep = np.asarray(ops.flops) > 0
        ax.scatter(intensity[keep], achieved[keep], color=colors[hw.name],
                   marker="o" if phase == "decode" else "^", s=28, alpha=0.85)
        if hw.name == HARDWARE[0]:
            for i in np.flatnonzero(keep):
                ax.annotate(ops.names[i], (intensity[i], achieved[i]), fontsize=6,
                            xytext=(3, 2), textcoords="offset points")
    ax.scatter([], [], color="gray", marker="o", label="decode ops (batch 8, ctx 2048)")
    ax.scatter([], [], color="gray", marker="^", label="prefill ops (prompt 2048)")
    ax.set_xlabel("operational intensity (FLOP / DRAM byte)")
    ax.set_ylabel("achieved FLOP/s")
    ax.set_title(f"{WORKLOAD}: ops on the roofline (perfmodel)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="both", alpha=0.25)
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def run(out_dir="out") -> pathlib.Path:
    results = _evaluate_all()
    print(f"{WORKLOAD}: prefill (batch 1, prompt 2048) and decode (batch 8, context 2048), "
          "fp16, smooth model")
    print(f"{'hardware':<12}{'phase':<9}{'latency':>11}{'tokens/s':>11}{'J/token':>10}  "
          "bound per op (C compute, M DRAM, L2, OH launch overhead)")
    for hw, phase, ops, rep in results:
        bounds = " ".join(f"{n}:{_SHORT[b]}" for n, b in zip(rep.names, rep.bound_names())
                          if n not in ("embed", "final_norm"))
        lat = float(rep.latency)
        lat_s = f"{lat * 1e3:.3g} ms" if lat < 1 else f"{lat:.3g} s"
        print(f"{hw.name:<12}{phase:<9}{lat_s:>11}{float(rep.tokens_per_s):>11.4g}"
              f"{float(rep.energy_per_token):>10.3g}  {bounds}")
    path = roofline_plot(results, pathlib.Path(out_dir) / "roofline.png")
    print(f"roofline plot written to {path}")
    return path
