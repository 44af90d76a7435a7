"""Calibrating the xPU efficiency model to measured A100 kernels.

Data: fit/data/a100_kernels.csv, from the LLMCompass artifact
(github:PrincetonUniversity/LLMCompass@2e015fd2): 20 cuBLAS GEMM
latencies (M sweep at K = N = 12288, and K = N sweep at M = 8192) and 24 per-operator
latencies of one GPT-3 175B decoder layer (tensor parallel 4, batch 8; prefill of 2048
tokens and a decode step at KV length 3072), PyTorch eager on A100 80GB.

How those numbers were measured (read from LLMCompass' software_model/*.py): each op is
timed with ``time.time()`` around the op and ``torch.cuda.synchronize()``, median of 50,
so every sample includes host dispatch and sync; Q_K_V is one Q-projection GEMM timed
and tripled (3 launches); LayerNorm and GELU are ``torch.compile`` functions. That host
cost is a property of the *measurement harness*, not of the GPU, so the fit gives it
its own parameters (`HARNESS_PARAMETERS`): a per-launch host overhead and launch
multipliers for softmax, norm and activation relative to a GEMM. Presets keep a device
launch overhead instead (see docs/models.md).

Hardware parameters fitted (`DEVICE_PARAMETERS`): compute efficiency ceiling, DRAM and
L2 bandwidth efficiencies, the inner-dimension half-efficiency length ``k_half``, the
NVLink efficiency and collective latency, and the fixed ramp time of a memory-bound
kernel (DRAM latency plus the time to fill the memory pipeline).
"""

from __future__ import annotations

import csv
import functools
import pathlib

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from perfmodel._ops import concat_ops, make_ops
from perfmodel.fit._fitting import FitResult, Parameter, fit_least_squares
from perfmodel.hardware._xpu import to_odds
from perfmodel.workloads._kernels import gemm_row

DATA_DIR = pathlib.Path(__file__).parent / "data"

#: LLMCompass op name -> our row name in the GPT-3 layer table.
LAYER_OP_ROWS = {
    "Q_K_V": "qkv_proj", "Q_mul_K": "attn_score", "A_mul_V": "attn_value",
    "Wo_proj": "out_proj", "W1_proj": "ffn_up", "W2_proj": "ffn_down",
    "Softmax": "attn_softmax", "LayerNorm_MHA": "norm", "LayerNorm_FFN": "norm",
    "GeLU": "ffn_act", "AllReduce_MHA": "allreduce_attn", "AllReduce_FFN": "allreduce_ffn",
}
#: Launches per op in the LLMCompass harness that are known from its code, not fitted:
#: Q_K_V times one Q-projection GEMM and triples it; the all-reduce latencies are typed
#: into the artifact's CSV (no PyTorch dispatch in them), so they carry no harness cost.
HARNESS_FIXED_LAUNCHES = {"qkv_proj": 3.0, "allreduce": 0.0}

DEVICE_PARAMETERS = [
    Parameter("compute_efficiency", 0.9, "logit", "", "large-GEMM achieved / peak"),
    Parameter("dram_efficiency", 0.85, "logit", "", "achievable / peak HBM bandwidth"),
    Parameter("l2_efficiency", 0.8, "logit", "", "achievable / peak L2 bandwidth"),
    Parameter("k_half", 150.0, "log", "elements", "inner dim at half pipeline efficiency"),
    Parameter("link_efficiency", 0.7, "logit", "", "achieved / peak NVLink bandwidth"),
    Parameter("link_latency", 10e-6, "log", "s", "fixed latency of one all-reduce"),
    Parameter("dram_latency", 2e-6, "log", "s", "fixed ramp of a memory-bound kernel"),
]
HARNESS_PARAMETERS = [
    Parameter("harness_overhead", 20e-6, "log", "s", "host dispatch + sync per GEMM launch"),
    Parameter("launches_attn_softmax", 0.6, "log", "", "softmax cost in GEMM launches"),
    Parameter("launches_norm", 2.0, "log", "", "torch.compile LayerNorm, in GEMM launches"),
    Parameter("launches_ffn_act", 2.0, "log", "", "torch.compile GELU, in GEMM launches"),
]


def load_kernels(path=None) -> list[dict]:
    path = pathlib.Path(path or DATA_DIR / "a100_kernels.csv")
    with path.open() as f:
        return list(csv.DictReader(f))


def measurement_ops(rows: list[dict]):
    """One `Ops` table with a row per measurement (count 1), and the labels.

    GEMM rows are bf16 ``[M,K] x [K,N]``; layer rows come from the gpt3-175b preset with
    tensor_parallel=4, standard (materialized) attention, fp16. Footprints are zero: the
    harness allocates only the op's own tensors, so no capacity limit applies.
    """
    from perfmodel import workloads

    parts, labels = [], []
    gemms = [r for r in rows if r["set"] == "gemm"]
    if gemms:
        grows = []
        for r in gemms:
            m, n, k = float(r["m"]), float(r["n"]), float(r["k"])
            grows.append(gemm_row(m, n, k, bits=16.0, name=f"gemm_{int(m)}x{int(n)}x{int(k)}"))
            labels.append(f"GEMM M={int(m)} N={int(n)} K={int(k)}")
        parts.append(make_ops(grows, tokens=1.0, weight_footprint=0.0, kv_footprint=0.0))
    gpt3 = workloads.preset("gpt3-175b")
    for phase in ("prefill", "decode"):
        sel = [r for r in rows if r["set"] == "layer" and r["phase"] == phase]
        if not sel:
            continue
        kw = dict(attention="standard", tensor_parallel=4)
        ops = (gpt3.prefill(8.0, 2048.0, **kw) if phase == "prefill"
               else gpt3.decode(8.0, float(sel[0]["length"]), **kw))
        idx = [ops.names.index(LAYER_OP_ROWS[r["op"]]) for r in sel]
        picked = ops.select(np.isin(np.arange(ops.rows), idx))
        # select keeps table order; reorder to the measurement order, count 1 each
        order = [picked.names.index(LAYER_OP_ROWS[r["op"]]) for r in sel]
        picked = picked.take(order)
        parts.append(picked)
        labels += [f"GPT-3 layer {phase} {r['op']}" for r in sel]
    ops = concat_ops(parts, tokens=1.0, weight_footprint=0.0, kv_footprint=0.0,
                     phase="measurements", workload="a100-kernels")
    ops = eqx.tree_at(lambda o: o.count, ops, jnp.ones_like(ops.count))
    return ops, labels


def with_device_parameters(hw, values: dict):
    """The design ``hw`` with fitted device parameters substituted (SI)."""
    odds = lambda k: jnp.asarray(to_odds(values[k]))  # noqa: E731
    return eqx.tree_at(
        lambda h: (h.compute_odds, h.dram.odds, h.l2.odds, h.k_half, h.link_odds,
                   h.link_latency, h.dram_latency),
        hw,
        (odds("compute_efficiency"), odds("dram_efficiency"), odds("l2_efficiency"),
         jnp.asarray(values["k_half"]), odds("link_efficiency"),
         jnp.asarray(values["link_latency"]), jnp.asarray(values["dram_latency"])))


def harness_launches(ops, values: dict):
    """Launch counts of the LLMCompass harness per row (fitted and known multipliers)."""
    per_key = dict(HARNESS_FIXED_LAUNCHES)  # keyed by row name or op kind
    for key in ("attn_softmax", "norm", "ffn_act"):
        per_key[key] = values[f"launches_{key}"]
    launches = [per_key.get(name, per_key.get(kind, 1.0))
                for name, kind in zip(ops.names, ops.kinds)]
    return jnp.stack([jnp.asarray(x, float) for x in launches])


def predict_kernels(hw, ops, values: dict):
    """Predicted latency (s) of each measurement row under the harness."""
    from perfmodel import evaluate

    hw = with_device_parameters(hw, values)
    hw = eqx.tree_at(lambda h: h.launch_overhead, hw, jnp.asarray(values["harness_overhead"]))
    ops = eqx.tree_at(lambda o: o.launches, ops, harness_launches(ops, values))
    return evaluate(hw, ops, check=False).op_time


@functools.lru_cache(maxsize=2)
def fit_a100(steps: int = 1500) -> tuple[FitResult, tuple[str, ...]]:
    """Fit device + harness parameters of a100-80gb to all 44 kernel measurements.

    Returns the fit and each row's set ("gemm" or "layer")."""
    from perfmodel import hardware

    rows = load_kernels()
    ops, labels = measurement_ops(rows)
    hw = hardware.preset("a100-80gb")
    measured = np.array([float(r["latency_s"]) for r in rows])
    params = DEVICE_PARAMETERS + HARNESS_PARAMETERS
    result = fit_least_squares(lambda v: predict_kernels(hw, ops, v), params, measured,
                               labels, steps=steps)
    return result, tuple(r["set"] for r in rows)
