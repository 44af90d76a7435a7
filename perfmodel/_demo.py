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


def _clusters(points, dx=0.15, dy=0.3):
    """Group (x, y, name, phase) points of one phase that lie within ``dx`` decades in x
    and ``dy`` in y of a group's first point (ops of the same shape sit on top of each
    other)."""
    groups = []
    for x, y, name, phase in sorted(points, key=lambda p: (p[0], -p[1])):
        lx, ly = np.log10(x), np.log10(y)
        for g in groups:
            if g["phase"] == phase and abs(g["lx"] - lx) < dx and abs(g["ly"] - ly) < dy:
                if name not in g["names"]:
                    g["names"].append(name)
                g["pts"].append((x, y))
                break
        else:
            groups.append({"lx": lx, "ly": ly, "names": [name], "pts": [(x, y)],
                           "phase": phase})
    return groups


def _label_clusters(fig, ax, points, avoid):
    """One label per cluster of nearby points (names joined, two per line) with a leader
    line, placed greedily: the first of a list of spots around its points that stays
    inside the axes and clear of the labels placed so far, of every plotted point
    (``avoid``, data coordinates) and of the legend."""
    fig.canvas.draw()                         # fixes the limits and the legend's place
    renderer = fig.canvas.get_renderer()
    px_per_pt = fig.dpi / 72.0
    frame = ax.get_window_extent(renderer)
    legend = ax.get_legend().get_window_extent(renderer)
    marks = ax.transData.transform(np.asarray(avoid, dtype=float))
    r = 4.0 * px_per_pt                       # marker radius
    placed, texts = [], []

    def clear(x0, y0, x1, y1):
        if x0 < frame.x0 or x1 > frame.x1 or y0 < frame.y0 or y1 > frame.y1:
            return False
        if not (x1 < legend.x0 or x0 > legend.x1 or y1 < legend.y0 or y0 > legend.y1):
            return False
        if np.any((marks[:, 0] > x0 - r) & (marks[:, 0] < x1 + r)
                  & (marks[:, 1] > y0 - r) & (marks[:, 1] < y1 + r)):
            return False
        return all(x1 < a0 or x0 > a1 or y1 < b0 or y0 > b1 for a0, b0, a1, b1 in placed)

    style = dict(fontsize=6.5, bbox=dict(boxstyle="round,pad=0.25", fc="white", ec="0.7",
                                         lw=0.4, alpha=0.9))
    for g in sorted(_clusters(points), key=lambda g: -g["ly"]):
        xs, ys = zip(*g["pts"])
        x, y = float(np.exp(np.mean(np.log(xs)))), float(np.max(ys))
        label = "\n".join(", ".join(g["names"][i:i + 2])
                          for i in range(0, len(g["names"]), 2))
        probe = ax.text(0, 0, label, fontsize=style["fontsize"])
        size = probe.get_window_extent(renderer)
        probe.remove()
        pad = 0.25 * style["fontsize"] * px_per_pt      # the bbox's pad on each side
        w, h = size.width + 2 * pad, size.height + 2 * pad
        px, py = ax.transData.transform((x, y))
        gap = 6 * px_per_pt
        # spots around the points, nearest first: right/left by growing steps, and
        # above/below by half label heights
        steps = [k * 18 * px_per_pt for k in (0, 1, 2, 3, 4, 6)]
        lefts = [px + gap + d for d in steps] + [px - gap - w - d for d in steps]
        bottoms = ([py + gap + j * h / 2 for j in range(10)]
                   + [py - gap - h - j * h / 2 for j in range(10)])
        spots = [(a, b) for a in lefts for b in bottoms]
        spots.sort(key=lambda s: np.hypot(s[0] + w / 2 - px, s[1] + h / 2 - py))
        x0, y0 = next(((a, b) for a, b in spots if clear(a, b, a + w, b + h)),
                      (px + gap, py + gap))
        placed.append((x0, y0, x0 + w, y0 + h))
        texts.append(ax.annotate(
            label, (x, y), xytext=((x0 + pad - px) / px_per_pt, (y0 + pad - py) / px_per_pt),
            textcoords="offset points", ha="left", va="bottom", zorder=5,
            arrowprops=dict(arrowstyle="-", lw=0.5, color="0.35"), **style))
    return texts


def roofline_plot(results, path):
    """Achieved FLOP/s vs operational intensity of every op, with each device's roof
    (PNG at ``path``)."""
    import matplotlib.pyplot as plt

    fig, _ = roofline_figure(results)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def roofline_figure(results):
    """The roofline figure and its op labels (matplotlib ``Figure``, list of
    ``Annotation``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    colors = {h: c for h, c in zip(HARDWARE, ("tab:blue", "tab:orange", "tab:green"))}
    seen = set()
    labelled = []   # (intensity, FLOP/s, name, phase) of the first device's points
    avoid = []      # every plotted point
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
        avoid += list(zip(intensity[keep], achieved[keep]))
        if hw.name == HARDWARE[0]:
            labelled += [(intensity[i], achieved[i], ops.names[i], phase)
                         for i in np.flatnonzero(keep)]
    ax.scatter([], [], color="gray", marker="o", label="decode ops (batch 8, ctx 2048)")
    ax.scatter([], [], color="gray", marker="^", label="prefill ops (prompt 2048)")
    ax.set_xlabel("operational intensity (FLOP / DRAM byte)")
    ax.set_ylabel("achieved FLOP/s")
    ax.set_title(f"{WORKLOAD}: ops on the roofline (perfmodel; op names at the "
                 f"{HARDWARE[0]} points)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="both", alpha=0.25)
    fig.tight_layout()
    return fig, _label_clusters(fig, ax, labelled, avoid)


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
