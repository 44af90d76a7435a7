"""`perfmodel measure`: microbenchmarks on the local JAX backend, written as a measurement
table (`perfmodel.fit._measurements` schema) that `perfmodel calibrate` fits.

What runs (fp32, the host's native datapath; each timing is the best of repeats after a
compile and a warm-up, ``block_until_ready`` around the call):

- memory streaming (`measure_stream_bandwidth`): a sum over an array 8x the last-level
  cache; it sets the ``host`` target's DRAM bandwidth, not a table row;
- GEMM sweep ``[m, k] x [k, n]`` over `GEMM_SHAPES` (group ``gemm``), GEMV (m = 1, group
  ``gemv``): rows ``workload = gemm``; each over copies of the weight matrix that exceed
  the last-level cache twice (`measure_gemm`), so the weights stream from memory as in
  inference rather than sit in cache between repeats;
- a decode-attention kernel: one query per sequence against a K/V cache of ``context``
  tokens (`measure_attention`), reported in the summary only: the table schema has no
  attention-kernel workload, and the decode steps below contain it;
- the decode step of a small model (`DECODE_MODEL`, GPT-2 124M: layer norm, fused QKV
  with biases, attention over the cache, GELU MLP, tied LM head; random weights) at
  `DECODE_POINTS` (group ``decode``): rows ``workload = gpt2, phase = decode`` at 32 bits.

Rows name ``hardware = host`` (`perfmodel.hardware.host`, built from the machine the
calibration runs on). The source column records the device and the date.
"""

from __future__ import annotations

import csv
import datetime
import pathlib
import platform
import time

import numpy as np

from perfmodel._errors import ModelInputError

#: (m, n, k) of the GEMM / GEMV sweep: skinny (decode-like) to square, fp32.
GEMM_SHAPES = tuple(
    [(1, n, k) for n, k in ((1024, 1024), (4096, 1024), (1024, 4096), (3072, 768),
                             (768, 3072), (4096, 4096))]
    + [(m, n, k) for m in (8, 64, 256, 1024) for n, k in ((1024, 1024), (3072, 768),
                                                          (768, 3072), (2048, 2048))])
#: The small model whose decode step is measured, and its (batch, context) points.
DECODE_MODEL = "gpt2"
DECODE_POINTS = ((1, 128), (1, 512), (8, 128), (8, 512))
#: Seconds of repeats per timing (after warm-up); at least `MIN_REPEATS` calls.
TIME_BUDGET = 0.25
MIN_REPEATS = 3


def _best_time(fn, *args) -> float:
    """Best wall time of ``fn(*args)`` (a jitted function), after one warm-up call."""
    import jax

    jax.block_until_ready(fn(*args))
    best, spent, n = float("inf"), 0.0, 0
    while n < MIN_REPEATS or spent < TIME_BUDGET:
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        dt = time.perf_counter() - t0
        best, spent, n = min(best, dt), spent + dt, n + 1
        if n >= 200:
            break
    return best


def measure_stream_bandwidth(llc_bytes: float = 32 * 2 ** 20) -> float:
    """Memory read bandwidth in B/s: a jitted sum of an fp32 array of 8x ``llc_bytes``
    (so it streams from DRAM), best of the repeats. A sum, not a copy: a copy's output
    is a fresh allocation per call whose first-touch page faults the timing would
    include."""
    import jax
    import jax.numpy as jnp

    n = int(8 * llc_bytes // 4)
    x = jnp.arange(n, dtype=jnp.float32)
    return 4.0 * n / _best_time(jax.jit(jnp.sum), x)


def measure_gemm(m: int, n: int, k: int, *, cache_bytes: float = 32 * 2 ** 20) -> float:
    """Seconds of one fp32 ``[m, k] x [k, n]`` with its weights from memory, not cache:
    successive calls take distinct copies of the ``[k, n]`` matrix, enough that they
    exceed twice ``cache_bytes``, as an inference step reads weights that no cache
    holds. One jitted call per product (its dispatch included, as in a framework
    step); the time is per product, best of the repeats of a pass over the copies."""
    import jax
    import jax.numpy as jnp

    copies = int(min(64, max(2, np.ceil(2.0 * cache_bytes / (4.0 * k * n)))))
    keys = jax.random.split(jax.random.PRNGKey(0), copies + 1)
    a = jax.random.normal(keys[0], (m, k), jnp.float32)
    bs = [jax.random.normal(kk, (k, n), jnp.float32) for kk in keys[1:]]
    mm = jax.jit(jnp.matmul)

    def rotate(a, bs):
        return [mm(a, b) for b in bs]

    return _best_time(rotate, a, bs) / copies


def measure_attention(batch: int, context: int, heads: int = 12, head_dim: int = 64) -> float:
    """Seconds of one decode attention: ``batch`` queries per head against ``context``
    cached keys and values (fp32)."""
    import jax
    import jax.numpy as jnp

    key = jax.random.PRNGKey(1)
    q = jax.random.normal(key, (batch, heads, head_dim), jnp.float32)
    kv = jax.random.normal(key, (2, batch, context, heads, head_dim), jnp.float32)

    def attend(q, kv):
        s = jnp.einsum("bhd,bchd->bhc", q, kv[0]) / np.sqrt(head_dim)
        return jnp.einsum("bhc,bchd->bhd", jax.nn.softmax(s, axis=-1), kv[1])

    return _best_time(jax.jit(attend), q, kv)


def _decode_step(llm):
    """A jitted GPT-2-style decode step of ``llm``'s shapes (random fp32 weights):
    ``step(params, cache, x) -> logits``."""
    import jax
    import jax.numpy as jnp

    d, h, dh, f, layers = llm.hidden, llm.heads, llm.head_dim, llm.ffn, llm.layers

    def norm(x, g, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / jnp.sqrt(var + 1e-5) * g + b

    def layer(x, p):
        w, cache = p
        y = norm(x, w["ln1_g"], w["ln1_b"])
        qkv = y @ w["qkv"] + w["qkv_b"]
        q, k_new, v_new = jnp.split(qkv, 3, axis=-1)
        B = x.shape[0]
        q = q.reshape(B, h, dh)
        k = jnp.concatenate([cache[0], k_new.reshape(B, 1, h, dh)], axis=1)
        v = jnp.concatenate([cache[1], v_new.reshape(B, 1, h, dh)], axis=1)
        s = jnp.einsum("bhd,bchd->bhc", q, k) / np.sqrt(dh)
        o = jnp.einsum("bhc,bchd->bhd", jax.nn.softmax(s, -1), v).reshape(B, h * dh)
        x = x + o @ w["out"] + w["out_b"]
        y = norm(x, w["ln2_g"], w["ln2_b"])
        x = x + jax.nn.gelu(y @ w["up"] + w["up_b"]) @ w["down"] + w["down_b"]
        return x, None

    def step(params, cache, x):
        # layers unrolled over separate weight buffers: a lax.scan would slice each
        # layer's weights out of stacked arrays, and XLA's CPU backend copies such
        # slices (two extra passes over the weights, a harness artifact)
        for w, c in zip(params["layers"], cache):
            x, _ = layer(x, (w, c))
        x = norm(x, params["lnf_g"], params["lnf_b"])
        return x @ params["embed"].T

    def init(batch, context):
        keys = iter(jax.random.split(jax.random.PRNGKey(2), 16 * layers + 4))
        r = lambda *s: 0.02 * jax.random.normal(next(keys), s, jnp.float32)  # noqa: E731
        params = {
            # vectors as [1, n] rows: they broadcast over the batch without rank promotion
            "layers": [{"ln1_g": jnp.ones((1, d)), "ln1_b": r(1, d), "qkv": r(d, 3 * h * dh),
                        "qkv_b": r(1, 3 * h * dh), "out": r(h * dh, d), "out_b": r(1, d),
                        "ln2_g": jnp.ones((1, d)), "ln2_b": r(1, d), "up": r(d, f),
                        "up_b": r(1, f), "down": r(f, d), "down_b": r(1, d)}
                       for _ in range(layers)],
            "lnf_g": jnp.ones((1, d)), "lnf_b": r(1, d), "embed": r(llm.vocab, d)}
        cache = [r(2, batch, context, h, dh) for _ in range(layers)]
        return params, cache, r(batch, d)

    return jax.jit(step), init


def measure_decode(llm, batch: int, context: int) -> float:
    """Seconds of one decode step of ``llm`` (GPT-2 structure) at ``batch`` sequences
    with ``context`` cached tokens."""
    step, init = _decode_step(llm)
    params, cache, x = init(batch, context)
    return _best_time(step, params, cache, x)


def device_description() -> str:
    import jax

    from perfmodel.hardware._host import _cpuinfo

    dev = jax.devices()[0]
    if dev.platform == "cpu":
        name = _cpuinfo().get("model name") or platform.processor() or platform.machine()
        import os

        return f"{name}, {os.cpu_count()} logical cores (JAX cpu backend)"
    return f"{getattr(dev, 'device_kind', dev.platform)} (JAX {dev.platform} backend)"


def measure(out, *, progress=None, quick: bool = False) -> dict:
    """Run the harness and write the measurement table ``out`` (CSV). Returns a summary:
    ``device``, ``date``, ``stream_bandwidth`` (B/s), ``attention`` (s per point),
    ``rows`` (count), ``out``. ``quick``: a few shapes only (tests)."""
    from perfmodel import workloads

    out = pathlib.Path(out)
    if out.suffix != ".csv":
        raise ModelInputError(f"--out = {str(out)!r} is invalid; it must be a .csv file.")
    llm = workloads.preset(DECODE_MODEL)
    shapes = GEMM_SHAPES[::5] if quick else GEMM_SHAPES
    points = DECODE_POINTS[:1] if quick else DECODE_POINTS
    total = 1 + len(shapes) + 2 * len(points)
    done = 0

    def tick(label):
        nonlocal done
        done += 1
        if progress:
            progress(done, total, label)

    device, today = device_description(), datetime.date.today().isoformat()
    source = f"perfmodel measure on {device}, {today}"
    from perfmodel.hardware._host import _llc_bytes

    bandwidth = measure_stream_bandwidth(_llc_bytes()[0])  # what host() will measure
    tick("stream")
    rows = []
    llc = _llc_bytes()[0]
    for m, n, k in shapes:
        t = measure_gemm(m, n, k, cache_bytes=llc)
        rows.append(dict(hardware="host", workload="gemm", phase="kernel", m=m, n=n, k=k,
                         abits=32, metric="latency", value=f"{t:.6g}", unit="s",
                         source=source, group="gemv" if m == 1 else "gemm"))
        tick(f"gemm {m}x{n}x{k}")
    attention = {}
    for batch, context in points:
        attention[f"b{batch}-c{context}"] = measure_attention(batch, context, llm.heads,
                                                              llm.head_dim)
        tick(f"attention b{batch} c{context}")
        t = measure_decode(llm, batch, context)
        rows.append(dict(hardware="host", workload=DECODE_MODEL, phase="decode",
                         batch=batch, context=context, wbits=32, abits=32, kvbits=32,
                         metric="latency", value=f"{t:.6g}", unit="s", source=source,
                         group="decode"))
        tick(f"{DECODE_MODEL} decode b{batch} c{context}")
    from perfmodel.fit._measurements import COLUMNS

    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in COLUMNS})
    return dict(device=device, date=today, stream_bandwidth=bandwidth,
                attention=attention, rows=len(rows), out=str(out))
