"""Decoder-only LLMs from Hugging Face-style configs, as `Ops` tables.

Structure (integers, static) comes from the config; the phase knobs (batch, prompt,
context, generated tokens, bit-widths) are real numbers, so every builder is
differentiable in them. Per layer the rows are:

==============  ======================  =====================================================
row             GEMM shape [m,k]x[k,n]  traffic per instance
==============  ======================  =====================================================
qkv_proj        [T, d] x [d, (h+2g)dh]  weights; x in; q out; K,V written to the cache
attn_score      [r q, dh] x [dh, L]     K cache read; scores written (standard attention)
attn_softmax    element-wise, B h q L   scores read + written
attn_value      [r q, L] x [L, dh]      V cache read; scores read; context out
attn_fused      score+softmax+value     K,V read once per query block; no score traffic
                                        ("per-head": once per query head and block)
out_proj        [T, h dh] x [h dh, d]   weights
ffn_up          [T, d] x [d, f (x2)]    weights (gate and up fused when gated)
ffn_act         element-wise            (SiLU(gate) * up, or GELU)
ffn_down        [T, f] x [f, d]         weights
moe_*           as ffn, per expert      weights of the expected distinct experts touched
norm            element-wise            norms_per_layer per layer (1, 2 or 4)
lm_head         [B, d] x [d, V]         (last token only in prefill)
==============  ======================  =====================================================

with T tokens in the step (B decode, B P prefill), h query heads, g KV heads, r = h/g,
dh head dim, L attended length (context + 1 in decode). Attention GEMMs are batched over
``groups = B g`` (sequences x KV heads; the r query heads of a group share K and V).
MoE: a batch of T tokens, each routed to k of E experts,
touches ``E (1 - (1 - k/E)^T)`` distinct experts in expectation (a smooth function of T).
A whole request integrates decode over the growing context by Gauss-Legendre quadrature
(exact for any polynomial of degree <= 7 in the context; attention cost is affine in it).

Hybrid and state-space models: on the ``ssm.layers`` SSM layers the attention rows are
replaced by the `perfmodel.workloads._ssm` rows (a fixed recurrent state per sequence
instead of a KV cache); each row's ``count`` is layers x the share of layers it occurs
in (attention, SSM, MoE or dense FFN layers), so a hybrid such as Jamba is one table.
"""

from __future__ import annotations

import dataclasses
import warnings

import jax.numpy as jnp
import numpy as np

from perfmodel._errors import ModelInputError, PlausibilityWarning
from perfmodel._ops import Ops, concat_ops, make_ops
from perfmodel.workloads._ssm import SSM, ssm_rows

#: Bits of embeddings and LM head. Assumed: weight-quantization schemes (GPTQ, AWQ,
#: BitNet b1.58) keep them in 16-bit.
EMBED_BITS = 16.0
#: FLOP per element: softmax (max, subtract, exp, sum, divide), a norm (mean, var,
#: scale, shift), an activation (GELU/SiLU ~ 8 with the gate product). Assumed counts.
SOFTMAX_FLOPS = 5.0
NORM_FLOPS = 5.0
ACT_FLOPS = 8.0
#: Bits of a tensor-parallel all-reduce: serving engines all-reduce the activations in
#: the model's 16-bit dtype even when the GEMMs take 8-bit activations (vLLM's and
#: TensorRT-LLM's all-reduce kernels run on bf16/fp16 tensors; FP8 is a GEMM input
#: format). Assumed for every engine.
ALLREDUCE_BITS = 16.0
#: Query rows per FlashAttention block (Dao 2023, FlashAttention-2, block 128); K and V
#: are re-read once per block of queries.
FLASH_BLOCK_Q = 128.0
#: Gauss-Legendre nodes used to integrate decode over the growing context.
QUADRATURE_NODES = 4

ATTENTION_IMPLS = ("standard", "fused", "per-head")
#: Weight groups that may take their own bit-width (`LLM.group_bits`).
WEIGHT_GROUPS = ("attention", "ffn")
_ATTN_KINDS = ("attn_score", "attn_softmax", "attn_value", "attn_fused")


def _positive(name, value, lo=0.0, strict=True):
    """Validate a concrete knob (tracers pass through)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return  # traced or array-valued: validated by the caller's context
    if not np.isfinite(v) or (v <= lo if strict else v < lo):
        rng = f"> {lo:g}" if strict else f">= {lo:g}"
        raise ModelInputError(f"{name} = {value!r} is invalid; it must be finite and {rng}.")


def _as_float(x):
    """A count as a float: Python and NumPy integers become Python floats (exact to
    2^53); arrays and tracers (a `ModelShape`'s float fields) pass through."""
    return float(x) if isinstance(x, (int, np.integer)) else x


def _plus(a, b):
    """a + b for concrete scalars; None when either is traced or an array."""
    try:
        return float(a) + float(b)
    except (TypeError, ValueError):
        return None


def _bits(name, value, lo=1.0, hi=32.0):
    try:
        v = float(value)
    except (TypeError, ValueError):
        return
    if not np.isfinite(v) or v < lo or v > hi:
        raise ModelInputError(f"{name} = {value!r} is invalid; it must be in [{lo:g}, {hi:g}].")


@dataclasses.dataclass(frozen=True)
class LLM:
    """A decoder-only language model's structure (static). Build phases with `decode`,
    `prefill` and `request`; each returns `Ops`.

    Built from a Hugging Face config by `from_hf_config` (one adapter per
    ``model_type``, see `perfmodel.workloads._hf_config`). Every layer has a token mixer
    (attention, or a state-space scan on the ``ssm.layers`` SSM layers) and, unless
    ``ffn`` is 0, an FFN (dense, or MoE on ``moe_layers`` of them)."""

    name: str
    hidden: int
    layers: int
    heads: int                  # attention heads (unused when no layer is attention)
    kv_heads: int
    head_dim: int
    ffn: int                    # FFN (or expert) width; 0 = no FFN (Mamba)
    vocab: int
    gated_ffn: bool = True      # SwiGLU / GeGLU: gate and up matrices
    experts: int = 1
    experts_per_token: int = 1
    tie_embeddings: bool = False
    qkv_bias: bool = False      # biases of the q, k, v projections (GPT-2, NeoX, Qwen2)
    out_bias: bool = False      # bias of the attention output projection
    mlp_bias: bool = False      # biases of the FFN (and expert) projections
    head_bias: bool = False     # bias of the LM head (GPT-J, Phi-2)
    positions: int = 0          # learned position embeddings (0 = rotary, none stored)
    norm: str = "rmsnorm"       # or "layernorm" (weight + bias)
    norms_per_layer: int = 2    # 1: attention and FFN in parallel on one norm (GPT-J,
                                # Phi-2, Falcon-7B, Mamba); 4: pre and post norms (Gemma 2/3)
    qk_norm: bool = False       # per-head norms of queries and keys (Qwen3, Gemma 3)
    sub_norms: bool = False     # BitNet: extra RMSNorms before o_proj and down_proj
    sliding_window: int = 0     # attend to at most this many past tokens (0 = all)
    sliding_layers: int = 0     # attention layers that use the window (0 = all)
    expert_bits: float = 0.0    # native bits of expert weights, kept whatever wbits is
                                # (GPT-OSS: MXFP4); 0 = experts follow wbits
    router_bias: bool = False   # GPT-OSS: the router has a bias
    attention_sinks: bool = False  # GPT-OSS: one learned sink logit per head and layer
    # DeepSeek-V2 multi-head latent attention (MLA; kv_lora_rank 0 = standard attention):
    # head_dim is then the no-rope query/key part, and the KV cache holds one latent
    # vector of kv_lora_rank + qk_rope_dim per token and layer
    kv_lora_rank: int = 0
    q_lora_rank: int = 0        # low-rank query projection (0 = a full q_proj)
    qk_rope_dim: int = 0        # decoupled rotary key/query dims
    v_head_dim: int = 0         # value head dim (MLA)
    shared_ffn: int = 0         # total width of the always-active shared experts
    shared_gate: bool = False   # Qwen2-MoE: a sigmoid gate (hidden -> 1) on the shared expert
    dense_layers: int = 0       # MoE models: layers with a dense FFN of width dense_ffn
    dense_ffn: int = 0
    ssm: SSM | None = None      # state-space mixer of the SSM layers (Mamba, Jamba)
    max_context: int = 0        # longest sequence (prompt + generated) the model was trained
                                # or configured for (max_position_embeddings); 0 = unknown
    default_wbits: float = 16.0
    title: str = ""
    bibtex: str = ""
    published: dict = dataclasses.field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        for f in ("hidden", "layers", "heads", "kv_heads", "head_dim", "vocab", "experts",
                  "experts_per_token", "norms_per_layer"):
            v = getattr(self, f)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ModelInputError(f"{self.name}: {f} = {v!r} must be a positive integer.")
        if not isinstance(self.ffn, (int, np.integer)) or self.ffn < 0 or (
                self.ffn == 0 and self.is_moe):
            raise ModelInputError(f"{self.name}: intermediate_size = {self.ffn!r} must be a "
                                  "non-negative integer (positive for an MoE model).")
        if self.heads % self.kv_heads:
            raise ModelInputError(
                f"{self.name}: num_attention_heads ({self.heads}) must be a multiple of "
                f"num_key_value_heads ({self.kv_heads}); valid kv heads divide {self.heads}.")
        if self.ssm is not None and not 1 <= self.ssm.layers <= self.layers:
            raise ModelInputError(f"{self.name}: SSM layers = {self.ssm.layers!r} must be in "
                                  f"[1, num_hidden_layers = {self.layers}].")
        if not 0 <= self.sliding_layers <= self.attn_layers:
            raise ModelInputError(f"{self.name}: sliding_layers = {self.sliding_layers!r} must "
                                  f"be in [0, attention layers = {self.attn_layers}].")
        if not 0 <= self.dense_layers < self.layers or (self.dense_layers
                                                         and self.dense_ffn < 1):
            raise ModelInputError(
                f"{self.name}: dense (non-MoE) layers = {self.dense_layers!r} must be in "
                f"[0, num_hidden_layers = {self.layers}) with intermediate_size >= 1.")
        if self.kv_lora_rank and (self.v_head_dim < 1 or self.qk_rope_dim < 0):
            raise ModelInputError(f"{self.name}: an MLA model (kv_lora_rank > 0) needs "
                                  "v_head_dim >= 1 and qk_rope_head_dim >= 0.")
        if self.experts_per_token > self.experts:
            raise ModelInputError(
                f"{self.name}: num_experts_per_tok ({self.experts_per_token}) must be in "
                f"[1, num_local_experts = {self.experts}].")

    # ------------------------------------------------------------------ structure
    @property
    def is_moe(self) -> bool:
        return self.experts > 1

    @property
    def has_ffn(self) -> bool:
        """Whether layers have an FFN (Mamba's do not). Structure: the row builders test
        this, never the (possibly traced, `ModelShape`) width itself."""
        return self.ffn > 0

    @property
    def has_attention(self) -> bool:
        """Whether any layer's token mixer is attention."""
        return self.attn_layers > 0

    @property
    def ffn_matrices(self) -> int:
        return 3 if self.gated_ffn else 2

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def attn_layers(self) -> int:
        """Layers whose token mixer is attention (the others are SSM layers)."""
        return self.layers - (self.ssm.layers if self.ssm is not None else 0)

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers if self.is_moe else 0

    def _mla_params(self):
        d, h, hd, rope, lat = (self.hidden, self.heads, self.head_dim, self.qk_rope_dim,
                               self.kv_lora_rank)
        qd = h * (hd + rope)
        q = d * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * qd \
            if self.q_lora_rank else d * qd  # (q_a, its norm, q_b) or q_proj
        kv = d * (lat + rope) + lat + lat * h * (hd + self.v_head_dim)  # kv_a, norm, kv_b
        return q + kv + h * self.v_head_dim * d

    def _attn_params(self):
        """Parameters of one attention mixer (projections, biases, q/k norms, sinks)."""
        if self.is_mla:
            p = self._mla_params()
        else:
            qkv = (self.heads + 2 * self.kv_heads) * self.head_dim
            p = self.hidden * qkv + self.heads * self.head_dim * self.hidden
            p += qkv * self.qkv_bias + self.hidden * self.out_bias
        if self.qk_norm:
            p += 2 * self.head_dim
        if self.attention_sinks:
            p += self.heads
        return p

    def _ffn_params(self, width):
        """Parameters of one dense FFN (or expert) of ``width``."""
        p = self.ffn_matrices * self.hidden * width
        if self.mlp_bias:
            p += (self.ffn_matrices - 1) * width + self.hidden
        return p

    def _expert_params(self):
        return self._ffn_params(self.ffn)

    def _norm_params(self):
        return (2 if self.norm == "layernorm" else 1) * self.hidden

    def _embed_params(self):
        return self.vocab * self.hidden + self.positions * self.hidden

    def _head_params(self):
        return (0 if self.tie_embeddings else self.vocab * self.hidden) \
            + self.vocab * self.head_bias

    def parameter_count(self, *, active: bool = False, embeddings: bool = True) -> int:
        """Total parameters (``active``: those used per token, for MoE); without the
        input and position embeddings and an untied LM head's weights when
        ``embeddings`` is false (the "non-embedding" count of the Pythia and Gemma
        papers)."""
        if not embeddings:
            return (self.parameter_count(active=active) - self._embed_params()
                    - (0 if self.tie_embeddings else self.vocab * self.hidden))
        e = self.experts_per_token if active else self.experts
        mixers = self.attn_layers * self._attn_params()
        if self.ssm is not None:
            mixers += self.ssm.layers * self.ssm.parameters(self.hidden)
        per_layer = self.norms_per_layer * self._norm_params()
        if self.sub_norms:
            per_layer += self.hidden + self.ffn
        return (mixers + self.layers * per_layer + self._ffn_block_params(e)
                + self._embed_params() + self._head_params() + self._norm_params())

    def _ffn_block_params(self, experts=None):
        """Parameters of every layer's FFN: dense FFNs, or experts (``experts`` of them
        per MoE layer, all by default), shared experts, their gate and the router."""
        e = self.experts if experts is None else experts
        if self.is_moe:
            moe = (e * self._expert_params() + self._ffn_params(self.shared_ffn)
                   * bool(self.shared_ffn) + self.hidden * self.shared_gate
                   + (self.hidden + self.router_bias) * self.experts)  # router
            return self.moe_layers * moe + self.dense_layers * self._ffn_params(self.dense_ffn)
        return self.layers * self._ffn_params(self.ffn) if self.has_ffn else 0

    def group_bits(self, wbits):
        """(mixer bits, FFN bits) of a weight bit-width: one number for every weight
        matrix, or per group ``{"attention": 8, "ffn": 3}`` (the token mixer's matrices
        -- attention projections, or an SSM layer's -- and the FFN's, experts and router
        included; a group left out keeps the model's default width). KV-cache bits are
        ``kvbits``; embeddings and the LM head stay at `EMBED_BITS`."""
        if not isinstance(wbits, dict):
            return wbits, wbits
        unknown = set(wbits) - set(WEIGHT_GROUPS)
        if unknown:
            raise ModelInputError(f"wbits has group {sorted(unknown)[0]!r}; valid groups: "
                                  f"{', '.join(WEIGHT_GROUPS)}.")
        return (wbits.get("attention", self.default_wbits),
                wbits.get("ffn", self.default_wbits))

    def kv_bytes_per_token(self, kvbits: float = 16.0) -> float:
        """KV-cache bytes per token (all attention layers): K and V per KV head, or MLA's
        one latent vector (kv_lora_rank + qk_rope_dim). 0 for a pure SSM model."""
        if self.is_mla:
            return self.attn_layers * (self.kv_lora_rank + self.qk_rope_dim) * kvbits / 8
        return 2 * self.attn_layers * self.kv_heads * self.head_dim * kvbits / 8

    def state_bytes_per_sequence(self, kvbits: float = 16.0) -> float:
        """Recurrent state bytes of one sequence (all SSM layers; independent of the
        context), at the KV bit-width. 0 for a transformer."""
        if self.ssm is None:
            return 0.0
        return self.ssm.layers * self.ssm.state_bytes(kvbits)

    def weight_bytes(self, wbits):
        """Bytes of all weights: embeddings and LM head at EMBED_BITS, experts at their
        native `expert_bits` when the model has one, the FFNs at the FFN group's bits and
        the rest (mixers, norms) at the mixer group's (`group_bits`)."""
        wa, wf = self.group_bits(wbits)
        # float counts: a Python int above 2^31 times a traced bit-width overflows
        outer = _as_float(self._embed_params() + self._head_params())
        ffn = _as_float(self._ffn_block_params())
        body = _as_float(self.parameter_count()) - outer - ffn
        experts = _as_float(self.moe_layers * self.experts * self._expert_params()
                            if self.expert_bits else 0)
        return (body * wa + (ffn - experts) * wf + experts * self.expert_bits
                + outer * EMBED_BITS) / 8

    def attended(self, L):
        """Mean over attention layers of the attended length: sliding-window layers see
        at most the window, the others all ``L`` (attention traffic and FLOPs are linear
        in it)."""
        if not self.sliding_window:
            return L
        share = self.sliding_layers / self.attn_layers if self.sliding_layers else 1.0
        return L - share * jnp.maximum(L - float(self.sliding_window), 0.0)

    # ------------------------------------------------------------------ rows
    def _layer_rows(self, *, B, q, L, wbits, abits, kvbits, attention, tp, causal_half):
        """Rows of one layer for B sequences with q new tokens each, attending to L."""
        d, hd = self.hidden, self.head_dim
        h, g = self.heads / tp, self.kv_heads / tp
        r = h / g
        wa, wf = self.group_bits(wbits)   # the mixer's and the FFN's weight bits
        ab, wb, kb = abits / 8, wa / 8, kvbits / 8
        wfb = wf / 8
        T = B * q
        at_bits = jnp.maximum(abits, kvbits)
        rows = []

        def gemm(name, kind, m, n, k, groups=1.0, w=wa, **kw):
            """A GEMM row against a stationary operand of ``w`` bits (default: the
            mixer's weights)."""
            rows.append(dict(name=name, kind=kind, m=m, n=n, k=k, groups=groups,
                             flops=kw.pop("flops", 2 * groups * m * n * k),
                             compute_bits=kw.pop("bits", jnp.maximum(w, abits)),
                             weight_bits=kw.pop("stationary_bits", w), act_bits=abits,
                             **kw))

        def elementwise(name, kind, elements, flops_per, bytes_in, bytes_out, **kw):
            rows.append(dict(name=name, kind=kind, m=elements, flops=flops_per * elements,
                             act_in_bytes=bytes_in, act_out_bytes=bytes_out,
                             compute_bits=abits, **kw))

        def share(first, fraction):
            """Rows from index ``first`` on occur in ``fraction`` of the layers (a
            fraction that is exactly 1 leaves them alone; a traced one always scales)."""
            if not (isinstance(fraction, (int, float)) and fraction == 1.0):
                for row in rows[first:]:
                    row["count"] = row.get("count", 1.0) * fraction

        if self.ssm is not None:
            ssm_rows(self.ssm, gemm, elementwise, hidden=d, B=B, q=q, T=T, ab=ab, wb=wb,
                     sbits=kvbits, norm_flops=NORM_FLOPS, decode=not causal_half)
            share(0, self.ssm.layers / self.layers)
        n_attn = len(rows)
        if self.has_attention and self.is_mla:
            self._mla_rows(gemm, elementwise, rows, B=B, q=q, L=L, T=T, ab=ab, wb=wb,
                           kb=kb, at_bits=at_bits, kvbits=kvbits, abits=abits,
                           attention=attention, causal_half=causal_half)
        elif self.has_attention:
            qkv_n = (h + 2 * g) * hd
            gemm("qkv_proj", "qkv_proj", T, qkv_n, d, weight_bytes=qkv_n * d * wb,
                 act_in_bytes=T * d * ab, act_out_bytes=T * h * hd * ab,
                 kv_write_bytes=T * 2 * g * hd * kb)
            # attended length per query: causal prefill attends to half on average when
            # the implementation skips masked blocks (fused), all of it when it
            # materializes.
            L = self.attended(L)  # window layers' caches hold only the window
            kv_bytes = B * g * L * hd * kb
            if attention == "standard":
                scores = B * h * q * L
                gemm("attn_score", "attn_score", r * q, L, hd, groups=B * g, bits=at_bits,
                     stationary_bits=kvbits,
                     act_in_bytes=T * h * hd * ab, act_out_bytes=scores * ab,
                     kv_read_bytes=kv_bytes)
                elementwise("attn_softmax", "attn_softmax", scores, SOFTMAX_FLOPS,
                            scores * ab, scores * ab)
                gemm("attn_value", "attn_value", r * q, hd, L, groups=B * g, bits=at_bits,
                     stationary_bits=kvbits,
                     act_in_bytes=scores * ab, act_out_bytes=T * h * hd * ab,
                     kv_read_bytes=kv_bytes)
            else:
                frac = 0.5 if causal_half else 1.0
                blocks = jnp.maximum(r * q / FLASH_BLOCK_Q, 1.0)
                if attention == "per-head":
                    # each query head's thread block reads its group's K/V itself (a
                    # masked-MHA decode kernel without GQA sharing): r reads per group
                    blocks = r * jnp.maximum(q / FLASH_BLOCK_Q, 1.0)
                flops = 4 * B * h * q * L * hd * frac + SOFTMAX_FLOPS * B * h * q * L * frac
                rows.append(dict(name="attn_fused", kind="attn_fused", m=r * q, n=L * frac,
                                 k=hd, groups=B * g, flops=flops, compute_bits=at_bits,
                                 weight_bits=kvbits, act_bits=abits,
                                 act_in_bytes=T * h * hd * ab, act_out_bytes=T * h * hd * ab,
                                 kv_read_bytes=2 * kv_bytes * frac * blocks))
            gemm("out_proj", "out_proj", T, d, h * hd, weight_bytes=h * hd * d * wb,
                 act_in_bytes=T * h * hd * ab, act_out_bytes=T * d * ab)
        if self.ssm is not None:
            share(n_attn, self.attn_layers / self.layers)
        if tp > 1:
            rows.append(dict(name="allreduce_attn", kind="allreduce", m=T * d,
                             comm_bytes=2 * (tp - 1) / tp * T * d * ALLREDUCE_BITS / 8, compute_bits=abits))
        f = self.ffn / tp
        up_n = f * (2 if self.gated_ffn else 1)
        n_ffn = len(rows)
        if self.has_ffn and self.is_moe:
            E, k = self.experts, self.experts_per_token
            touched = E * (1 - jnp.maximum(1 - k / E, 0.0) ** T)
            per_expert = T * k / touched
            ebits = self.expert_bits or wf
            eb = ebits / 8
            ex = dict(stationary_bits=ebits, bits=jnp.maximum(ebits, abits))
            gemm("moe_router", "moe_router", T, E, d, w=wf, weight_bytes=E * d * wfb,
                 act_in_bytes=T * d * ab, act_out_bytes=T * E * ab)
            gemm("moe_up", "moe_up", per_expert, up_n, d, groups=touched,
                 weight_bytes=touched * up_n * d * eb, act_in_bytes=T * k * d * ab,
                 act_out_bytes=T * k * up_n * ab, **ex)
            elementwise("moe_act", "moe_act", T * k * f, ACT_FLOPS,
                        T * k * up_n * ab, T * k * f * ab)
            gemm("moe_down", "moe_down", per_expert, d, f, groups=touched,
                 weight_bytes=touched * f * d * eb, act_in_bytes=T * k * f * ab,
                 act_out_bytes=T * k * d * ab, **ex)
            if self.shared_ffn:  # always-active shared experts: a dense FFN
                self._ffn_rows(gemm, elementwise, "shared_", T, self.shared_ffn / tp, ab, wf)
            if self.dense_layers:  # the MoE rows above are for the other layers
                share(n_ffn, self.moe_layers / self.layers)
                n_dense = len(rows)
                self._ffn_rows(gemm, elementwise, "dense_", T, self.dense_ffn / tp, ab, wf)
                share(n_dense, self.dense_layers / self.layers)
        elif self.has_ffn:  # (a Mamba layer has no FFN)
            self._ffn_rows(gemm, elementwise, "", T, f, ab, wf)
        if tp > 1:
            rows.append(dict(name="allreduce_ffn", kind="allreduce", m=T * d,
                             comm_bytes=2 * (tp - 1) / tp * T * d * ALLREDUCE_BITS / 8, compute_bits=abits))
        elementwise("norm", "norm", T * d, NORM_FLOPS, T * d * ab, T * d * ab,
                    count=float(self.norms_per_layer))
        for row in rows:
            row["count"] = row.get("count", 1.0) * self.layers
        return rows

    def _ffn_rows(self, gemm, elementwise, prefix, T, f, ab, wbits):
        """A dense (gated) FFN of width f with ``wbits`` weights: up, activation, down."""
        up_n = f * (2 if self.gated_ffn else 1)
        d, wb = self.hidden, wbits / 8
        gemm(prefix + "ffn_up", "ffn_up", T, up_n, d, w=wbits, weight_bytes=up_n * d * wb,
             act_in_bytes=T * d * ab, act_out_bytes=T * up_n * ab)
        elementwise(prefix + "ffn_act", "ffn_act", T * f, ACT_FLOPS, T * up_n * ab,
                    T * f * ab)
        gemm(prefix + "ffn_down", "ffn_down", T, d, f, w=wbits, weight_bytes=f * d * wb,
             act_in_bytes=T * f * ab, act_out_bytes=T * d * ab)

    def _mla_rows(self, gemm, elementwise, rows, *, B, q, L, T, ab, wb, kb, at_bits,
                  kvbits, abits, attention, causal_half):
        """Multi-head latent attention in its absorbed (weight-merged) form, as serving
        engines run decode: the cache holds one latent vector c = [c_kv (kv_lora_rank),
        k_rope (qk_rope_dim)] per token, shared by all heads (an MQA of head dim
        kv_lora_rank + qk_rope_dim); each query is first mapped into the latent space by
        the K half of kv_b (q_absorb), scores read c, values read its c_kv part, and the
        latent context is mapped back per head by the V half of kv_b (v_absorb)."""
        d, h, hd, rope, lat, vd = (self.hidden, self.heads, self.head_dim, self.qk_rope_dim,
                                   self.kv_lora_rank, self.v_head_dim)
        ql = self.q_lora_rank
        q_w = d * ql + ql * h * (hd + rope) if ql else d * h * (hd + rope)
        gemm("qkv_proj", "qkv_proj", T, h * (hd + rope) + lat + rope, d,
             weight_bytes=(q_w + d * (lat + rope)) * wb,
             act_in_bytes=T * d * ab, act_out_bytes=T * h * (hd + rope) * ab,
             kv_write_bytes=T * (lat + rope) * kb)
        gemm("q_absorb", "qkv_proj", T, lat, hd, groups=h, weight_bytes=h * hd * lat * wb,
             act_in_bytes=T * h * hd * ab, act_out_bytes=T * h * lat * ab)
        kdim = lat + rope
        cache = B * L * kdim * kb
        if attention == "standard":
            scores = B * h * q * L
            gemm("attn_score", "attn_score", h * q, L, kdim, groups=B, bits=at_bits,
                 stationary_bits=kvbits, act_in_bytes=T * h * kdim * ab,
                 act_out_bytes=scores * ab, kv_read_bytes=cache)
            elementwise("attn_softmax", "attn_softmax", scores, SOFTMAX_FLOPS,
                        scores * ab, scores * ab)
            gemm("attn_value", "attn_value", h * q, lat, L, groups=B, bits=at_bits,
                 stationary_bits=kvbits, act_in_bytes=scores * ab,
                 act_out_bytes=T * h * lat * ab, kv_read_bytes=B * L * lat * kb)
        else:
            frac = 0.5 if causal_half else 1.0
            blocks = jnp.maximum(h * q / FLASH_BLOCK_Q, 1.0)
            flops = (2 * B * h * q * L * (kdim + lat) + SOFTMAX_FLOPS * B * h * q * L) * frac
            rows.append(dict(name="attn_fused", kind="attn_fused", m=h * q, n=L * frac,
                             k=kdim, groups=B, flops=flops, compute_bits=at_bits,
                             weight_bits=kvbits, act_bits=abits,
                             act_in_bytes=T * h * kdim * ab, act_out_bytes=T * h * lat * ab,
                             kv_read_bytes=cache * frac * blocks))
        gemm("v_absorb", "out_proj", T, vd, lat, groups=h, weight_bytes=h * lat * vd * wb,
             act_in_bytes=T * h * lat * ab, act_out_bytes=T * h * vd * ab)
        gemm("out_proj", "out_proj", T, d, h * vd, weight_bytes=h * vd * d * wb,
             act_in_bytes=T * h * vd * ab, act_out_bytes=T * d * ab)

    def _head_rows(self, *, B, T, abits, tp):
        d, V = self.hidden, self.vocab / tp
        eb, ab = EMBED_BITS / 8, abits / 8
        return [
            dict(name="embed", kind="embed", m=T * d, act_out_bytes=T * d * ab,
                 weight_bytes=T * d * eb, compute_bits=abits),
            dict(name="final_norm", kind="norm", m=B * d, flops=NORM_FLOPS * B * d,
                 act_in_bytes=B * d * ab, act_out_bytes=B * d * ab, compute_bits=abits),
            dict(name="lm_head", kind="lm_head", m=B, n=V, k=d, flops=2 * B * V * d,
                 weight_bytes=V * d * eb, act_in_bytes=B * d * ab, act_out_bytes=B * V * ab,
                 compute_bits=jnp.maximum(abits, EMBED_BITS), weight_bits=EMBED_BITS,
                 act_bits=abits),
        ]

    def _check(self, attention, tp, **knobs):
        if attention not in ATTENTION_IMPLS:
            raise ModelInputError(
                f"attention = {attention!r} is invalid; valid: {', '.join(ATTENTION_IMPLS)}.")
        if (self.is_mla or self.ssm is not None) and tp != 1:
            what = "multi-head latent attention" if self.is_mla else "a state-space mixer"
            raise ModelInputError(
                f"tensor_parallel = {tp!r} is invalid for {self.name}: {what} is modelled "
                "on one device only (tensor_parallel = 1).")
        if not isinstance(tp, int) or tp < 1 or (tp > 1 and (self.kv_heads % tp
                                                             or self.ffn % tp)):
            raise ModelInputError(
                f"tensor_parallel = {tp!r} is invalid; it must be a positive integer dividing "
                f"num_key_value_heads ({self.kv_heads}) and intermediate_size ({self.ffn}).")
        for k, v in knobs.items():
            if k == "wbits" and isinstance(v, dict):
                self.group_bits(v)  # the group names
                for group, bits in v.items():
                    _bits(f"wbits[{group!r}]", bits)
            elif k.endswith("bits"):
                _bits(k, v)
            elif k == "context":
                _positive(k, v, strict=False)
            else:
                _positive(k, v)

    def _check_context(self, what: str, length) -> None:
        """A concrete sequence length beyond ``max_context``: an error when the model
        stores learned position embeddings (there is no embedding for the position), a
        `PlausibilityWarning` for rotary / position-free models, which engines run past
        their trained length (the cost is modelled; the output quality is not).
        Traced lengths pass: checks are eager."""
        try:
            n = float(length)
        except (TypeError, ValueError):
            return
        if not self.max_context or n <= self.max_context:
            return
        if self.positions:
            raise ModelInputError(
                f"{what} = {n:g} tokens exceeds {self.name}'s {self.positions} learned "
                f"position embeddings; it must be in [1, {self.max_context}].")
        warnings.warn(PlausibilityWarning(
            f"{what} = {n:g} tokens exceeds {self.name}'s maximum context of "
            f"{self.max_context} (max_position_embeddings): the cost is modelled, the "
            "output quality past the trained length is not."), stacklevel=3)

    def _footprints(self, B, L, wbits, kvbits, tp):
        """Resident weight and per-sequence memory (KV cache of the attended length plus
        any recurrent state) per device, bytes."""
        kv = B * (self.attended(L) * self.kv_bytes_per_token(kvbits)
                  + self.state_bytes_per_sequence(kvbits))
        return self.weight_bytes(wbits) / tp, kv / tp

    @staticmethod
    def _apply_launches(rows, launches):
        if launches:
            for row in rows:
                if row["kind"] in launches:
                    row["launches"] = launches[row["kind"]]
        return rows

    # ------------------------------------------------------------------ phases
    def decode(self, batch=1.0, context=1024.0, *, wbits=None, abits=16.0, kvbits=16.0,
               attention: str = "fused", tensor_parallel: int = 1,
               launches: dict | None = None) -> Ops:
        """One decode step: ``batch`` sequences, each with ``context`` tokens already in
        the KV cache, generate one token each (attending to context + 1).

        tokens_per_s of the report = batch / step time.

        Other arguments: ``wbits/abits/kvbits`` bit-widths (weights default to the model's
        native width, 1.58 for ternary models); ``attention`` "fused" (IO-aware,
        FlashAttention-style traffic; the query heads of a GQA group share one read of
        its K/V), "per-head" (fused, but each query head reads its group's K/V itself:
        TensorRT-LLM's masked-MHA decode kernel before XQA) or "standard" (scores
        materialized);
        ``tensor_parallel`` splits heads/FFN over devices and adds all-reduce rows (the
        Ops are per device); ``launches`` overrides kernel launches per op kind.
        """
        wbits = self.default_wbits if wbits is None else wbits
        self._check(attention, tensor_parallel, batch=batch, context=context, wbits=wbits,
                    abits=abits, kvbits=kvbits)
        self._check_context("context + 1", _plus(context, 1.0))
        B, L = jnp.asarray(batch, float), jnp.asarray(context, float) + 1.0
        rows = self._layer_rows(B=B, q=1.0, L=L, wbits=wbits, abits=abits, kvbits=kvbits,
                                attention=attention, tp=tensor_parallel, causal_half=False)
        rows += self._head_rows(B=B, T=B, abits=abits, tp=tensor_parallel)
        wfp, kfp = self._footprints(B, L, wbits, kvbits, tensor_parallel)
        return make_ops(self._apply_launches(rows, launches), tokens=B, weight_footprint=wfp,
                        kv_footprint=kfp, phase="decode", workload=self.name)

    def speculative_decode(self, batch=1.0, context=1024.0, *, draft_length=4,
                           acceptance=0.8, draft_wbits=4.0, wbits=None, abits=16.0,
                           kvbits=16.0, **kw) -> Ops:
        """One self-speculative step: ``draft_length`` draft decode steps reading the
        high ``draft_wbits`` bit-planes, one verify pass over ``draft_length + 1``
        tokens; tokens = batch x expected accepted tokens. See
        `perfmodel.workloads._speculative`."""
        from perfmodel.workloads._speculative import speculative_decode

        return speculative_decode(self, batch, context, draft_length=draft_length,
                                  acceptance=acceptance, draft_wbits=draft_wbits,
                                  wbits=wbits, abits=abits, kvbits=kvbits, **kw)

    def prefill(self, batch=1.0, prompt=512.0, *, wbits=None, abits=16.0, kvbits=16.0,
                attention: str = "fused", tensor_parallel: int = 1,
                launches: dict | None = None) -> Ops:
        """Prefill of ``batch`` prompts of ``prompt`` tokens (causal attention; the
        fused implementation skips the masked half). tokens_per_s = batch x prompt / time.
        Other arguments as in `decode`."""
        wbits = self.default_wbits if wbits is None else wbits
        self._check(attention, tensor_parallel, batch=batch, prompt=prompt, wbits=wbits,
                    abits=abits, kvbits=kvbits)
        self._check_context("prompt", prompt)
        B, P = jnp.asarray(batch, float), jnp.asarray(prompt, float)
        rows = self._layer_rows(B=B, q=P, L=P, wbits=wbits, abits=abits, kvbits=kvbits,
                                attention=attention, tp=tensor_parallel, causal_half=True)
        rows += self._head_rows(B=B, T=B * P, abits=abits, tp=tensor_parallel)
        wfp, kfp = self._footprints(B, P, wbits, kvbits, tensor_parallel)
        return make_ops(self._apply_launches(rows, launches), tokens=B * P,
                        weight_footprint=wfp, kv_footprint=kfp, phase="prefill",
                        workload=self.name)

    def continuous(self, concurrency=64.0, prompt=512.0, generate=128.0, *, wbits=None,
                   abits=16.0, kvbits=16.0, attention: str = "fused",
                   tensor_parallel: int = 1, launches: dict | None = None) -> Ops:
        """One steady-state step of continuous (in-flight) batching with chunked prefill:
        ``concurrency`` requests of ``prompt`` + ``generate`` tokens in flight, each
        finished request replaced at once. Per step every running request decodes one
        token at the mean context ``prompt + generate / 2`` (attention cost is linear in
        it), and the arriving requests' prompts are prefilled at the steady-state rate,
        ``concurrency / generate`` requests (``concurrency x prompt / generate`` tokens)
        per step, in the same batched GEMMs: the projection and FFN rows carry all
        ``concurrency (1 + prompt / generate)`` tokens and read the weights once; the
        attention rows are the decode rows plus the prefill rows (named ``prefill_*``).
        tokens = concurrency (output tokens per step), so tokens_per_s is the output
        throughput and the step time the inter-token latency. The KV footprint is the
        whole requests' (reserved at admission). Other arguments as in `decode`.
        """
        wbits = self.default_wbits if wbits is None else wbits
        self._check(attention, tensor_parallel, concurrency=concurrency, prompt=prompt,
                    generate=generate, wbits=wbits, abits=abits, kvbits=kvbits)
        if self.is_mla or self.ssm is not None:
            raise ModelInputError(
                f"{self.name}: the continuous phase is modelled for attention models "
                "without latent attention or state-space layers.")
        self._check_context("prompt + generate", _plus(prompt, generate))
        C = jnp.asarray(concurrency, float)
        P, G = jnp.asarray(prompt, float), jnp.asarray(generate, float)
        arriving = C / G                     # requests prefilled per step
        tokens = C + arriving * P            # tokens through the weights per step
        kw = dict(wbits=wbits, abits=abits, kvbits=kvbits, attention=attention,
                  tp=tensor_parallel)
        linear = self._layer_rows(B=tokens, q=1.0, L=1.0, causal_half=False, **kw)
        decode = self._layer_rows(B=C, q=1.0, L=P + 0.5 * G + 1.0, causal_half=False, **kw)
        prefill = self._layer_rows(B=arriving, q=P, L=P, causal_half=True, **kw)
        attn = [r for r in decode if r["kind"] in _ATTN_KINDS]
        attn += [dict(r, name="prefill_" + r["name"]) for r in prefill
                 if r["kind"] in _ATTN_KINDS]
        at = next(i for i, r in enumerate(linear) if r["kind"] in _ATTN_KINDS)
        rows = ([r for r in linear[:at]] + attn
                + [r for r in linear[at:] if r["kind"] not in _ATTN_KINDS])
        rows += self._head_rows(B=C + arriving, T=tokens, abits=abits, tp=tensor_parallel)
        wfp, kfp = self._footprints(C, P + G, wbits, kvbits, tensor_parallel)
        return make_ops(self._apply_launches(rows, launches), tokens=C,
                        weight_footprint=wfp, kv_footprint=kfp, phase="continuous",
                        workload=self.name)

    def request(self, batch=1.0, prompt=512.0, generate=128.0, *, wbits=None, abits=16.0,
                kvbits=16.0, attention: str = "fused", tensor_parallel: int = 1,
                launches: dict | None = None) -> Ops:
        """A whole static batch of requests: prefill of ``prompt`` tokens, then
        ``generate`` decode steps over the growing context. tokens_per_s =
        batch x generate / total time.

        Context-independent decode rows are one step x ``generate``; attention rows are
        integrated over context in [prompt, prompt + generate] with Gauss-Legendre
        quadrature (`QUADRATURE_NODES` nodes, rows weighted by count).
        """
        wbits = self.default_wbits if wbits is None else wbits
        kw = dict(wbits=wbits, abits=abits, kvbits=kvbits, attention=attention,
                  tensor_parallel=tensor_parallel, launches=launches)
        _positive("generate", generate)
        self._check_context("prompt + generate", _plus(prompt, generate))
        G = jnp.asarray(generate, float)
        P = jnp.asarray(prompt, float)
        pre = self.prefill(batch, prompt, **kw)
        step = self.decode(batch, P, **kw)  # context-independent rows from here
        is_attn = [k in _ATTN_KINDS for k in step.kinds]
        flat = step.select([not a for a in is_attn]).scaled(G)
        nodes, weights = np.polynomial.legendre.leggauss(QUADRATURE_NODES)
        parts = [pre, flat]
        for x, w in zip(nodes, weights):
            ctx = P + 0.5 * G * (x + 1.0)
            part = self.decode(batch, ctx, **kw).select(is_attn)
            parts.append(part.scaled(0.5 * w * G))
        B = jnp.asarray(batch, float)
        wfp, kfp = self._footprints(B, P + G, wbits, kvbits, tensor_parallel)
        return concat_ops(parts, tokens=B * G, weight_footprint=wfp, kv_footprint=kfp,
                          phase="request", workload=self.name)
