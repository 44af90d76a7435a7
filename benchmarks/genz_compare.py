"""Wall-clock cost of one GenZ decode prediction, for speed comparison with perfmodel.

Measures how long GenZ (PyPI ``genz-llm``) takes to evaluate ONE decode step of
Llama-2-7B (default batch 8, context 2048, 16-bit weights/activations) on its
built-in ``A100_80GB_GPU`` system (312 TFLOPS, 2039 GB/s, 80 GB), single device.
The call is ``GenZ.decode_moddeling(model="llama2_7b", batch_size=batch,
input_tokens=context, output_tokens=0, Bb=1, system_name="A100_80GB_GPU",
bits="bf16")``. GenZ has no "fp16" key; "bf16" is its 2-byte format, with the same
byte and FLOP cost. ``Bb=1`` turns off the default beam size of 4. Each call writes two
layer CSV files under /tmp/genz/data/model/. The function deletes the ones it
created.

GenZ: A. Bambhaniya et al., "Demystifying AI Platform Design for Distributed
Inference of Next-Generation LLM models", arXiv:2406.01698 (2024).
"""
from __future__ import annotations

import contextlib
import io
import os
import statistics
import time
import warnings

_GENZ_MODEL_DIR = "/tmp/genz/data/model"


def time_genz_decode(batch: int = 8, context: int = 2048, repeats: int = 5) -> dict | None:
    """Return the median seconds per GenZ decode evaluation and GenZ's predicted latency.

    Returns None (and prints nothing) when genz-llm is not installed or the call fails.
    """
    sink = io.StringIO()
    before = set(os.listdir(_GENZ_MODEL_DIR)) if os.path.isdir(_GENZ_MODEL_DIR) else set()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from importlib.metadata import version

            from GenZ import decode_moddeling

            kw = dict(model="llama2_7b", batch_size=batch, input_tokens=context,
                      output_tokens=0, Bb=1, system_name="A100_80GB_GPU", bits="bf16")
            out = decode_moddeling(**kw)  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                out = decode_moddeling(**kw)
                times.append(time.perf_counter() - t0)
        return {
            "seconds_per_eval": statistics.median(times),
            "latency_s": float(out["Latency"]) / 1e3,  # GenZ reports msec
            "genz_version": version("genz-llm"),
            "call": "GenZ.decode_moddeling(model='llama2_7b', batch_size=%d, input_tokens=%d, "
                    "output_tokens=0, Bb=1, system_name='A100_80GB_GPU', bits='bf16')"
                    % (batch, context),
        }
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            for name in set(os.listdir(_GENZ_MODEL_DIR)) - before:
                os.remove(os.path.join(_GENZ_MODEL_DIR, name))


if __name__ == "__main__":
    print(time_genz_decode())
