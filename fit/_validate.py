"""`validate`: the GPU model against published serving measurements it was never fitted
to (fit/data/serving/, its README for the sources and columns).

Each static-batch row is rebuilt from its conditions and evaluated with the exact model
(``hard=True``) on one device of its tensor-parallel group (the Ops are per device), by
`perfmodel.serve` (a batch whose KV cache does not fit runs in waves):

=====================  ==================================================================
metric                 model
=====================  ==================================================================
e2e_s                  ``request(B, P, G)`` latency
tokens_per_s_per_gpu   ``B G / latency / TP`` of the same request
output_tokens_per_s    ``B G / latency``
ttft_s                 ``prefill(B, P)`` latency plus one decode step at context P
power_w                the request's energy / latency (one GPU)
=====================  ==================================================================

The decode-attention kernel follows the engine version (`TRTLLM_XQA_VERSION`:
TensorRT-LLM before XQA reads each GQA group's K/V once per query head).
Rows whose batch the engine chose (continuous or saturated serving: ``batching`` other
than ``static``) are listed as not evaluated: continuous batching is not modelled yet.
Rows tagged ``software-anomaly`` (a slow software path, per the source's own sibling
rows) are predicted and listed but not averaged.
The summary gives the mean absolute percentage error per framework and GPU, per kind of
metric (latency, throughput, power), and the worst rows.
"""

from __future__ import annotations

import csv
import math
import pathlib
import warnings

import numpy as np

from perfmodel._errors import ModelInputError, PlausibilityWarning

SERVING_DIR = pathlib.Path(__file__).parent / "data" / "serving"
#: metric -> what it measures, for the summary's split
KIND = {"e2e_s": "latency", "ttft_s": "latency", "itl_s": "latency",
        "tokens_per_s_per_gpu": "throughput", "output_tokens_per_s": "throughput",
        "power_w": "power", "energy_per_token_j": "energy"}


def load_serving(paths=None) -> list[dict]:
    """The rows of every CSV in fit/data/serving/ (or ``paths``)."""
    paths = [pathlib.Path(p) for p in paths] if paths else sorted(SERVING_DIR.glob("*.csv"))
    if not paths:
        raise ModelInputError(f"no serving measurements in {SERVING_DIR}.")
    rows = []
    for p in paths:
        with open(p, newline="") as fh:
            for r in csv.DictReader(fh):
                r["file"] = p.name
                rows.append(r)
    return rows


#: TensorRT-LLM releases before this one decode grouped-query attention with the masked
#: multi-head attention kernel: one thread block per query head, each reading its
#: group's K/V (`attention="per-head"`). The XQA kernel that shares the reads arrived
#: with the v0.7 pre-release H200 measurements (2,941 tok/s/GPU for Llama-70B 128/2048
#: on one H200 "with XQA", 1,227 without: github:NVIDIA/TensorRT-LLM@585c7565:docs/
#: source/blogs/XQA-kernel.md, "reducing data loading"; released in v0.8).
TRTLLM_XQA_VERSION = (0, 7)


def _attention(r) -> str:
    """The decode-attention kernel the row's engine ran (`TRTLLM_XQA_VERSION`)."""
    if r["framework"] == "tensorrt-llm":
        head = r["framework_version"].split()[0].rstrip("abcdefghijklmnopqrstuvwxyz")
        parts = tuple(int(p) for p in head.split(".")[:2] if p.isdigit())
        if parts and parts < TRTLLM_XQA_VERSION:
            return "per-head"
    return "fused"


def _row_inputs(r):
    """(hardware, workload, tensor-parallel degree, `serve` keywords: bits, degree,
    attention kernel, exact model) of a serving row."""
    from perfmodel import hardware, workloads

    tp = int(float(r["tensor_parallel"] or 1))
    kw = dict(wbits=_bits(r, "wbits"), abits=_bits(r, "abits"), kvbits=_bits(r, "kvbits"),
              tensor_parallel=tp, attention=_attention(r), hard=True)
    return hardware.preset(r["hardware"]), workloads.preset(r["workload"]), tp, kw


def _bits(r, key):
    v = r.get(key) or ""
    return float(v) if v else 16.0


def predict_row(r: dict):
    """The model's value of one static-batch row (exact model), or None with a reason."""
    from perfmodel import serve

    if r["batching"] == "continuous-saturated" and r["metric"] in (
            "output_tokens_per_s", "tokens_per_s_per_gpu"):
        return _saturated(r), None
    if r["batching"] != "static" or not r.get("batch"):
        return None, "continuous serving at a request rate (arrivals and queueing are not modelled)"
    if r["metric"] not in KIND or r["metric"] == "itl_s":
        return None, f"metric {r['metric']} has no static-batch model"
    hw, wl, tp, kw = _row_inputs(r)
    B, P, G = (float(r["batch"]), float(r["prompt"]), float(r["generate"]))
    # a static-batch benchmark (TensorRT-LLM's gptSessionBenchmark, vLLM's offline
    # batch) allocates the batch's own KV cache, not a share of free memory: the whole
    # memory after the weights (the source's batch ran)
    kw.update(batch=B, kv_fraction=1.0)
    with warnings.catch_warnings():
        # engines run rotary models past max_position_embeddings (GPT-J at 2048 + 128)
        warnings.simplefilter("ignore", PlausibilityWarning)
        if r["metric"] == "ttft_s":
            t = (serve(hw, wl, "prefill", prompt=P, **kw).latency
                 + serve(hw, wl, "decode", context=P, **kw).latency)
            return float(t), None
        rep = serve(hw, wl, "request", prompt=P, generate=G, **kw)
    lat = float(rep.latency)
    value = {"e2e_s": lat, "tokens_per_s_per_gpu": B * G / lat / tp,
             "output_tokens_per_s": B * G / lat,
             "power_w": float(rep.power) / tp}[r["metric"]]  # serve reports the group
    return value, None


#: Requests offered to a saturated server: every request of the run is queued at once, so
#: the server runs as many as its KV cache admits (`perfmodel.serve`, continuous phase).
SATURATED_OFFER = 1e6


def _saturated(r) -> float:
    """Output throughput of a saturated server: the steady-state continuous-batching step
    (`LLM.continuous`) at the concurrency the KV cache admits (TensorRT-LLM's default 90 %
    of the free memory, reserved per request at its full length)."""
    from perfmodel import serve

    hw, wl, tp, kw = _row_inputs(r)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlausibilityWarning)
        rep = serve(hw, wl, "continuous", batch=SATURATED_OFFER, prompt=float(r["prompt"]),
                    generate=float(r["generate"]), **kw)
    tps = float(rep.tokens_per_s)
    return tps / tp if r["metric"] == "tokens_per_s_per_gpu" else tps


def validate(paths=None, *, progress=None) -> dict:
    """Every serving row predicted and compared (module docstring). Returns ``rows``
    (each with ``predicted``, ``rel_error`` or ``skipped``), ``summary`` (MAPE per
    framework x GPU and per metric kind, counts) and ``worst`` (the ten largest
    |errors|)."""
    rows = load_serving(paths)
    out = []
    for i, r in enumerate(rows):
        try:
            pred, why = predict_row(r)
        except ModelInputError as e:
            pred, why = None, str(e)
        row = {k: r[k] for k in ("id", "hardware", "tensor_parallel", "framework",
                                 "workload", "precision", "batch", "prompt", "generate",
                                 "metric", "unit", "caveat", "source")}
        row["measured"] = float(r["value"])
        if pred is None:
            row["skipped"] = why
        else:
            row["predicted"] = pred
            row["rel_error"] = pred / row["measured"] - 1.0
        out.append(row)
        if progress:
            progress(i + 1, len(rows), r["id"])
    # a row tagged software-anomaly measures a slow software path (its source's sibling
    # rows show it), not the hardware: listed, not averaged
    done = [r for r in out if "rel_error" in r and r["caveat"] != "software-anomaly"]

    def mape(sel):
        return float(np.mean([abs(r["rel_error"]) for r in sel])) if sel else math.nan

    groups = {}
    for r in done:
        groups.setdefault((r["framework"], r["hardware"]), []).append(r)
    kinds = {}
    for r in done:
        kinds.setdefault(KIND[r["metric"]], []).append(r)
    summary = {
        "rows": len(out), "evaluated": len(done),
        "skipped": sum("skipped" in r for r in out),
        "software_anomaly": sum(r["caveat"] == "software-anomaly" for r in out),
        "mape": mape(done),
        "median_ratio": float(np.median([1 + r["rel_error"] for r in done])) if done
        else math.nan,
        "by_framework_gpu": [dict(framework=f, hardware=h, rows=len(v), mape=mape(v))
                             for (f, h), v in sorted(groups.items())],
        "by_kind": {k: dict(rows=len(v), mape=mape(v)) for k, v in sorted(kinds.items())},
    }
    worst = sorted(done, key=lambda r: -abs(r["rel_error"]))[:10]
    return {"rows": out, "summary": summary, "worst": worst}
