"""Selective state-space mixers (Mamba, Mamba-2) as `Ops` rows.

A state-space layer replaces attention's growing KV cache by a fixed-size recurrent
state per sequence: ``d_inner x state`` values (plus the last ``conv_kernel - 1`` inputs
of a short causal convolution). Decode cost is therefore independent of the context,
and the per-sequence memory is constant. Per SSM layer, with T tokens in the step
(B sequences x q new tokens each), d the model width, di = expand d, N the state size:

==============  =======================  ============================================
row             GEMM shape / elements    traffic per instance
==============  =======================  ============================================
ssm_in_proj     [T, d] x [d, p_in]       weights; x in; (x, z[, B, C, dt]) out
ssm_conv        T c elements             conv state read + written (decode), written
                                         once (prefill); c = conv channels
ssm_x_proj      [T, di] x [di, r + 2N]   Mamba-1 only: dt (rank r), B, C
ssm_dt_proj     [T, r] x [r, di]         Mamba-1 only
ssm_scan        T di N elements          recurrent state read + written (decode);
                                         written once (prefill); x, dt, B, C, z in
ssm_norm        T di elements            Mamba-2's gated RMSNorm
ssm_out_proj    [T, di] x [di, d]        weights
==============  =======================  ============================================

Mamba-1 (Gu & Dao 2023, arXiv:2312.00752): p_in = 2 di, c = di; one state update per
state element costs ``SCAN_FLOPS_V1`` FLOP (exp(dt A), dt B x, A h + B x, C h).
Mamba-2 (Dao & Gu 2024, arXiv:2405.21060): p_in = 2 di + 2 G N + H (G groups of B/C,
H heads of head dim P = di / H), c = di + 2 G N; A is a scalar per head, so a decode
update costs ``SCAN_FLOPS_V2`` FLOP per state element. Prefill uses the chunked SSD
algorithm (chunk Q): per token and head, the intra-chunk quadratic part costs
``Q' (N + P)`` FLOP (causal half of the chunk, Q' = min(Q, q)) and the chunk states
``SSD_STATE_FLOPS N P``.

The state is kept at the KV-cache bit-width (``kvbits``) and counted as KV traffic and
KV footprint, so capacity checks and KV-quantization knobs apply to it as to a cache.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from perfmodel._errors import ModelInputError

#: FLOP per state element of one Mamba-1 recurrent update: dA = exp(dt A) (2),
#: dt B x (2), dA h + dBx (2), C h accumulated (2). Counted from the recurrence of
#: Gu & Dao 2023, eq. 2a-2b (discretized); exp counted as one FLOP as elsewhere here.
SCAN_FLOPS_V1 = 8.0
#: FLOP per state element of one Mamba-2 update: dt B x (2), dA h + (2), C h (2);
#: dA is one scalar per head (Dao & Gu 2024, sec. 7).
SCAN_FLOPS_V2 = 6.0
#: SSD chunk-state FLOP per token, head and (N x P) element: B^T x into the chunk
#: state (2) and C times the carried state (2) (Dao & Gu 2024, sec. 6, SSD algorithm).
SSD_STATE_FLOPS = 4.0
#: FLOP per element of the causal depthwise convolution per kernel tap (multiply-add),
#: plus the SiLU after it (counted like the FFN activation).
CONV_ACT_FLOPS = 8.0


@dataclasses.dataclass(frozen=True)
class SSM:
    """Structure of a model's state-space mixer (static).

    ``version`` 1 (Mamba) or 2 (Mamba-2); ``inner`` = expand x hidden; ``state`` N;
    ``conv_kernel`` the causal convolution width; Mamba-1: ``dt_rank``; Mamba-2:
    ``groups`` (B/C groups), ``heads`` (inner / head dim), ``chunk`` (SSD chunk);
    ``conv_bias`` / ``proj_bias`` biases of the convolution and of the in/out
    projections; ``inner_norms`` RMSNorms on dt, B and C (Jamba); ``layers`` how many
    of the model's layers are SSM mixers (the others are attention)."""

    version: int
    inner: int
    state: int
    conv_kernel: int
    layers: int
    dt_rank: int = 0
    groups: int = 1
    heads: int = 0
    chunk: int = 256
    conv_bias: bool = True
    proj_bias: bool = False
    inner_norms: bool = False

    def __post_init__(self):
        if self.version not in (1, 2):
            raise ModelInputError(f"ssm version = {self.version!r} is invalid; valid: 1, 2.")
        need = ["inner", "state", "conv_kernel", "layers", "groups", "chunk"]
        need.append("dt_rank" if self.version == 1 else "heads")
        for f in need:
            v = getattr(self, f)
            if not isinstance(v, int) or v < 1:
                raise ModelInputError(f"ssm {f} = {v!r} is invalid; it must be a positive "
                                      "integer.")
        if self.version == 2 and self.inner % self.heads:
            raise ModelInputError(f"mamba2 num_heads = {self.heads} must divide the inner "
                                  f"width expand x hidden_size = {self.inner}.")

    @property
    def in_width(self) -> int:
        """Output features of the input projection."""
        if self.version == 1:
            return 2 * self.inner
        return 2 * self.inner + 2 * self.groups * self.state + self.heads

    @property
    def conv_channels(self) -> int:
        return self.inner if self.version == 1 else self.inner + 2 * self.groups * self.state

    def parameters(self, hidden: int) -> int:
        """Parameters of one mixer (without the layer's pre-norm)."""
        di, N, c = self.inner, self.state, self.conv_channels
        p = hidden * self.in_width + di * hidden                      # in_proj, out_proj
        if self.proj_bias:
            p += self.in_width + hidden
        p += c * self.conv_kernel + (c if self.conv_bias else 0)      # depthwise conv
        if self.version == 1:
            r = self.dt_rank
            p += di * (r + 2 * N) + r * di + di                       # x_proj, dt_proj(+b)
            p += di * N + di                                          # A_log, D
            if self.inner_norms:
                p += r + 2 * N
        else:
            p += 3 * self.heads + di                                  # dt_bias, A, D; norm
        return p

    def state_bytes(self, bits) -> float:
        """Recurrent + convolution state of one sequence in one layer, bytes."""
        return (self.inner * self.state
                + self.conv_channels * (self.conv_kernel - 1)) * bits / 8


def ssm_rows(ssm: SSM, gemm, elementwise, *, hidden, B, q, T, ab, wb, sbits, norm_flops,
             decode: bool):
    """Append one SSM layer's rows (per instance) through the builders ``gemm`` and
    ``elementwise`` of `LLM._layer_rows`: ``q`` new tokens for each of ``B`` sequences
    (T = B q), ``ab``/``wb`` activation and weight bytes per value, ``sbits`` the state
    bit-width; ``decode`` steps read and rewrite the state, prefill writes it once."""
    d, di, N, c = hidden, ssm.inner, ssm.state, ssm.conv_channels
    sb = sbits / 8
    # decode reads and rewrites the state; prefill starts from zero and writes it once
    conv_state = B * c * (ssm.conv_kernel - 1) * sb
    scan_state = B * di * N * sb
    gemm("ssm_in_proj", "ssm_proj", T, ssm.in_width, d, weight_bytes=ssm.in_width * d * wb,
         act_in_bytes=T * d * ab, act_out_bytes=T * ssm.in_width * ab)
    elementwise("ssm_conv", "ssm_scan", T * c, CONV_ACT_FLOPS + 2 * ssm.conv_kernel,
                T * c * ab, T * c * ab, kv_read_bytes=conv_state if decode else 0.0,
                kv_write_bytes=conv_state)
    if ssm.version == 1:
        r = ssm.dt_rank
        gemm("ssm_x_proj", "ssm_proj", T, r + 2 * N, di, weight_bytes=(r + 2 * N) * di * wb,
             act_in_bytes=T * di * ab, act_out_bytes=T * (r + 2 * N) * ab)
        gemm("ssm_dt_proj", "ssm_proj", T, di, r, weight_bytes=r * di * wb,
             act_in_bytes=T * r * ab, act_out_bytes=T * di * ab)
        elementwise("ssm_scan", "ssm_scan", T * di * N, SCAN_FLOPS_V1,
                    T * (3 * di + 2 * N) * ab, T * di * ab,          # x, dt, z; B, C in
                    kv_read_bytes=scan_state if decode else 0.0, kv_write_bytes=scan_state)
    else:
        H, P = ssm.heads, di / ssm.heads
        scan_in = T * (2 * di + H + 2 * ssm.groups * N) * ab           # x, z, dt; B, C
        if decode:
            elementwise("ssm_scan", "ssm_scan", T * di * N, SCAN_FLOPS_V2, scan_in,
                        T * di * ab, kv_read_bytes=scan_state, kv_write_bytes=scan_state)
        else:  # chunked SSD: batched matmuls per chunk and head (tensor cores on GPUs)
            chunk = jnp.minimum(float(ssm.chunk), q)
            gemm("ssm_chunk", "ssm_chunk", chunk, P, N, groups=B * H * q / chunk,
                 flops=T * H * (chunk * (N + P) + SSD_STATE_FLOPS * N * P),
                 act_in_bytes=scan_in, act_out_bytes=T * di * ab,
                 kv_write_bytes=scan_state)
    if ssm.version == 2:
        elementwise("ssm_norm", "norm", T * di, norm_flops, T * 2 * di * ab, T * di * ab)
    gemm("ssm_out_proj", "ssm_proj", T, d, di, weight_bytes=di * d * wb,
         act_in_bytes=T * di * ab, act_out_bytes=T * d * ab)

