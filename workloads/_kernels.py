"""Single kernels as `Ops`: a GEMM, for microbenchmark comparisons."""

from __future__ import annotations

from perfmodel._ops import Ops, make_ops


def gemm_row(m, n, k, *, bits=16.0, name: str | None = None) -> dict:
    """One ``[m, k] x [k, n]`` GEMM row: B ([k, n]) is the weight operand."""
    b = bits / 8
    return dict(name=name or "gemm", kind="fc", m=m, n=n, k=k, flops=2 * m * n * k,
                weight_bytes=b * k * n, act_in_bytes=b * m * k, act_out_bytes=b * m * n,
                compute_bits=bits)


def gemm(m, n, k, *, bits=16.0) -> Ops:
    """A single GEMM ``[m, k] x [k, n]`` at ``bits``-bit operands (tokens = 1 call)."""
    return make_ops([gemm_row(m, n, k, bits=bits)], tokens=1.0, weight_footprint=0.0,
                    kv_footprint=0.0, phase="kernel", workload=f"gemm-{m}x{n}x{k}")
