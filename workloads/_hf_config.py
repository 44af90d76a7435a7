"""Hugging Face ``config.json`` -> `LLM`: one small adapter per architecture family.

`ARCHITECTURES` maps each supported ``model_type`` to an adapter that reads that
family's field names (with the defaults of its ``transformers`` configuration class,
which a published ``config.json`` may leave out) and returns the shared structure as
`LLM` keyword arguments. A ``model_type`` that is not in the table is refused with the
list of supported ones: a config is never silently modelled as another architecture.

What each family adds to the shared structure (transformers' ``modeling_<type>.py``):

=============  ==========================================================================
model_type     structure
=============  ==========================================================================
gpt2           learned positions, LayerNorm, biases everywhere, tied embeddings, GELU MLP
opt            as GPT-2 (positions offset by 2)
gptj           parallel attention + MLP on one LayerNorm, MLP and LM-head biases only
gpt_neox       LayerNorm, q/k/v/o and MLP biases, untied (Pythia, GPT-NeoX-20B)
falcon         multi-query (1 KV head) or grouped (new decoder architecture), parallel
               attention on one (or two) LayerNorms, optional biases, tied embeddings
llama,         RMSNorm, SwiGLU, ``attention_bias`` / ``mlp_bias``; Mistral/Mixtral: a
mistral,       sliding window on every layer; Mixtral: experts; SmolLM3: Llama
mixtral,
smollm3
qwen2          q/k/v biases; window only with ``use_sliding_window`` above
               ``max_window_layers``
qwen2_moe      Qwen2 + experts, a gated shared expert, ``mlp_only_layers`` /
               ``decoder_sparse_step`` dense layers; its own window rule
qwen3(_moe)    Qwen2 without q/k/v biases, per-head q/k RMSNorms
phi            Phi-2: parallel attention + MLP on one LayerNorm, biases everywhere,
               LM-head bias
phi3           Llama-like (fused qkv and gate/up), window on every layer
gemma          GeGLU, explicit head_dim, tied embeddings
gemma2         + pre/post norms (4 per layer), a window on every other layer (even
               layers) when ``layer_types`` is absent; logit soft-capping has no cost
gemma3_text,   + per-head q/k norms, a window on 5 of every 6 layers
gemma3         (``sliding_window_pattern``); ``gemma3`` reads its ``text_config``: the
               language model only (the vision tower is not modelled)
starcoder2     LayerNorm, GELU MLP, ``use_bias`` on every linear, window on every layer
bitnet         BitNet b1.58: ternary weights, sub-norms before o_proj and down_proj
gpt_oss        experts in MXFP4, router and expert biases, attention sinks, alternate
               128-token windows
deepseek_v2,   multi-head latent attention, routed + shared experts, leading dense
deepseek_v3,   layers
glm4_moe_lite
mamba          Mamba-1 selective SSM mixer, no attention, no MLP (`_ssm`)
mamba2         Mamba-2 (SSD) mixer
jamba          Mamba-1 layers with dt/B/C norms, attention every ``attn_layer_period``
               layers, MoE every ``expert_layer_period`` layers
=============  ==========================================================================
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Callable

from perfmodel._errors import ModelInputError
from perfmodel.workloads._llm import LLM
from perfmodel.workloads._ssm import SSM

#: Bits per weight of MXFP4 (OCP Microscaling: 4-bit E2M1 elements with one 8-bit E8M0
#: scale per block of 32), the native format of GPT-OSS expert weights.
MXFP4_BITS = 4.0 + 8.0 / 32.0
#: Weight bits of ternary models (BitNet b1.58: log2(3) rounded as the paper does).
TERNARY_BITS = 1.58
#: Model types built with multi-head latent attention, routed + shared experts and
#: leading dense layers (the DeepSeek-V2 structure).
MLA_MODEL_TYPES = ("deepseek_v2", "deepseek_v3", "glm4_moe_lite")
#: Entries of a config's ``layer_types`` list that the op table models.
LAYER_TYPES = ("full_attention", "sliding_attention")


class ConfigReader:
    """A config dict with errors that name the model, its ``model_type`` and the field
    (and the other spellings accepted for it)."""

    def __init__(self, cfg: dict, name: str, model_type: str, defaults: dict | None = None):
        self.cfg, self.name, self.model_type = cfg, name, model_type
        self.defaults = defaults or {}

    def get(self, *keys, default=None):
        """The first of ``keys`` set in the config; ``default`` (what the modelling code
        does with None) when a key is present but null; the family's transformers
        configuration-class default when no key is present at all."""
        for k in keys:
            if self.cfg.get(k) is not None:
                return self.cfg[k]
        if any(k in self.cfg for k in keys):
            return default
        for k in keys:
            if self.defaults.get(k) is not None:
                return self.defaults[k]
        return default

    def need(self, *keys):
        v = self.get(*keys)
        if v is None:
            also = f" (or {', '.join(map(repr, keys[1:]))})" if len(keys) > 1 else ""
            raise ModelInputError(f"{self.name}: a {self.model_type} config needs "
                                  f"{keys[0]!r}{also}; it is missing.")
        return v

    def int(self, *keys, default=None) -> int:
        v = self.get(*keys, default=default) if default is not None else self.need(*keys)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v < 0:
            raise ModelInputError(f"{self.name}: {keys[0]} = {v!r} is invalid; it must be a "
                                  "non-negative integer.")
        return int(v)

    def flag(self, key, default: bool) -> bool:
        return bool(self.get(key, default=default))

    def refuse(self, key, why: str):
        """Refuse a config that sets ``key`` (to anything but a null/empty/false)."""
        if self.cfg.get(key):
            raise ModelInputError(f"{self.name}: {key} = {self.cfg[key]!r} is not supported "
                                  f"for model_type {self.model_type!r}: {why}.")


Adapter = Callable[[ConfigReader], dict]
#: model_type -> adapter returning `LLM` keyword arguments (filled below).
ARCHITECTURES: dict[str, Adapter] = {}
#: Defaults of transformers' configuration classes for fields a published config.json
#: may omit (only the structural ones; from configuration_<type>.py).
CONFIG_DEFAULTS: dict[str, dict] = {
    "mistral": {"sliding_window": 4096},
    # Gemma3TextConfig: gemma-3-{4b,12b,27b} config.json list only non-default fields
    "gemma3_text": {"vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216,
                    "num_hidden_layers": 26, "num_attention_heads": 8,
                    "num_key_value_heads": 4, "head_dim": 256, "sliding_window": 4096,
                    "sliding_window_pattern": 6, "tie_word_embeddings": True},
    "gemma2": {"sliding_window": 4096, "head_dim": 256, "tie_word_embeddings": True},
    "gemma": {"head_dim": 256, "tie_word_embeddings": True},
    "qwen2": {"max_window_layers": 28},
    "qwen2_moe": {"max_window_layers": 28, "decoder_sparse_step": 1,
                  "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632,
                  "num_experts": 60, "num_experts_per_tok": 4},
    "qwen3": {"max_window_layers": 28},
    "qwen3_moe": {"max_window_layers": 28, "decoder_sparse_step": 1},
    "starcoder2": {"tie_word_embeddings": True},
    "falcon": {"tie_word_embeddings": True},
    "mamba": {"tie_word_embeddings": True, "expand": 2, "conv_kernel": 4,
              "state_size": 16},
    "mamba2": {"expand": 2, "conv_kernel": 4, "state_size": 128, "n_groups": 8,
               "head_dim": 64, "chunk_size": 256},
    "jamba": {"attn_layer_period": 8, "attn_layer_offset": 4, "expert_layer_period": 2,
              "expert_layer_offset": 1, "mamba_d_state": 16, "mamba_d_conv": 4,
              "mamba_expand": 2},
}


def architecture(*model_types: str):
    """Register an adapter for ``model_types``."""
    def register(fn: Adapter) -> Adapter:
        for t in model_types:
            ARCHITECTURES[t] = fn
        return fn
    return register


def supported_model_types() -> list[str]:
    return sorted(ARCHITECTURES)


# ---------------------------------------------------------------------- shared parts
def _decoder(c: ConfigReader, *, gated=True, norm="rmsnorm", bias=False) -> dict:
    """Fields every Llama-style config spells the same way (hidden_size, heads, ...);
    ``bias``: every linear of attention and MLP has a bias by default."""
    d = c.int("hidden_size")
    heads = c.int("num_attention_heads")
    attn_bias = c.flag("attention_bias", bias)
    return dict(hidden=d, layers=c.int("num_hidden_layers"), heads=heads,
                kv_heads=c.int("num_key_value_heads", default=heads),
                head_dim=c.int("head_dim", default=d // heads),
                ffn=c.int("intermediate_size"), vocab=c.int("vocab_size"), gated_ffn=gated,
                tie_embeddings=c.flag("tie_word_embeddings", False), norm=norm,
                qkv_bias=attn_bias, out_bias=attn_bias, mlp_bias=c.flag("mlp_bias", bias))


def _sliding(c: ConfigReader, layers: int, rule: str) -> dict:
    """Sliding-window attention: the window and how many layers use it, from
    ``layer_types`` when the config lists it, else by the family's ``rule``: "all",
    "even" (layers 0, 2, ...: Gemma 2, GPT-OSS), "pattern" (all but every
    ``sliding_window_pattern``-th: Gemma 3), "above" (layers >= ``max_window_layers``
    when ``use_sliding_window``: Qwen2/3) or "odd_below" (layers 0, 2, ... below
    ``max_window_layers`` when ``use_sliding_window``: Qwen2-MoE)."""
    window = c.get("sliding_window")
    if not window or (rule in ("above", "odd_below")
                      and not c.flag("use_sliding_window", False)):
        return {}
    types = c.cfg.get("layer_types")
    if types is not None:
        bad = [t for t in types if t not in LAYER_TYPES]
        if len(types) != layers or bad:
            raise ModelInputError(
                f"{c.name}: layer_types must list {layers} entries of "
                f"{', '.join(map(repr, LAYER_TYPES))}"
                + (f"; {bad[0]!r} is not supported." if bad else f"; it has {len(types)}."))
        n = sum(t == "sliding_attention" for t in types)
    elif rule == "all":
        n = layers
    elif rule == "even":
        n = (layers + 1) // 2
    elif rule == "pattern":
        n = layers - layers // c.int("sliding_window_pattern")
    elif rule == "odd_below":  # Qwen2-MoE: even layers below max_window_layers
        n = sum((i + 1) % 2 == 1 and i < c.int("max_window_layers") for i in range(layers))
    else:  # "above"
        n = max(layers - c.int("max_window_layers"), 0)
    return dict(sliding_window=c.int("sliding_window"), sliding_layers=n) if n else {}


def _experts(c: ConfigReader, count_key: str) -> dict:
    experts = c.int(count_key, default=1)
    if experts <= 1:
        return {}
    return dict(experts=experts, experts_per_token=c.int("num_experts_per_tok"))


def _qwen_dense_layers(c: ConfigReader, layers: int) -> dict:
    """Qwen-MoE: layer i is MoE unless listed in ``mlp_only_layers`` or
    ``(i + 1) % decoder_sparse_step != 0``; the others have a dense FFN of
    ``intermediate_size``."""
    step = c.int("decoder_sparse_step", default=1)
    only = set(c.get("mlp_only_layers", default=[]) or [])
    if step < 1 or not all(isinstance(i, int) and 0 <= i < layers for i in only):
        raise ModelInputError(f"{c.name}: decoder_sparse_step must be >= 1 and "
                              f"mlp_only_layers entries in [0, {layers}).")
    moe = sum(i not in only and (i + 1) % step == 0 for i in range(layers))
    if not moe:
        raise ModelInputError(f"{c.name}: mlp_only_layers and decoder_sparse_step leave no "
                              "MoE layer; give the model as a dense config instead.")
    dense = layers - moe
    return dict(dense_layers=dense, dense_ffn=c.int("intermediate_size")) if dense else {}


# ---------------------------------------------------------------------- adapters
@architecture("gpt2")
def _gpt2(c):
    d, heads = c.int("n_embd", "hidden_size"), c.int("n_head", "num_attention_heads")
    return dict(hidden=d, layers=c.int("n_layer", "num_hidden_layers"), heads=heads,
                kv_heads=heads, head_dim=d // heads, ffn=c.int("n_inner", default=4 * d),
                vocab=c.int("vocab_size"), gated_ffn=False, tie_embeddings=True,
                qkv_bias=True, out_bias=True, mlp_bias=True,
                positions=c.int("n_positions", "max_position_embeddings"), norm="layernorm")


@architecture("opt")
def _opt(c):
    d, heads = c.int("hidden_size"), c.int("num_attention_heads")
    if c.get("word_embed_proj_dim", default=d) != d:
        raise ModelInputError(f"{c.name}: OPT with word_embed_proj_dim != hidden_size "
                              "(OPT-350m) is not supported.")
    bias = c.flag("enable_bias", True)
    return dict(hidden=d, layers=c.int("num_hidden_layers"), heads=heads, kv_heads=heads,
                head_dim=d // heads, ffn=c.int("ffn_dim"), vocab=c.int("vocab_size"),
                gated_ffn=False, tie_embeddings=c.flag("tie_word_embeddings", True),
                qkv_bias=bias, out_bias=bias, mlp_bias=bias,
                positions=c.int("max_position_embeddings") + 2, norm="layernorm")


@architecture("gptj")
def _gptj(c):
    d, heads = c.int("n_embd", "hidden_size"), c.int("n_head", "num_attention_heads")
    return dict(hidden=d, layers=c.int("n_layer", "num_hidden_layers"), heads=heads,
                kv_heads=heads, head_dim=d // heads, ffn=c.int("n_inner", default=4 * d),
                vocab=c.int("vocab_size"), gated_ffn=False,
                tie_embeddings=c.flag("tie_word_embeddings", False), mlp_bias=True,
                head_bias=True, norm="layernorm", norms_per_layer=1)


@architecture("gpt_neox")
def _gpt_neox(c):
    return _decoder(c, gated=False, norm="layernorm", bias=True)


@architecture("falcon")
def _falcon(c):
    d, heads = c.int("hidden_size", "n_embed"), c.int("num_attention_heads", "n_head")
    new = c.flag("new_decoder_architecture", False)
    kv = c.int("num_kv_heads", "n_head_kv", default=heads)
    if not new and c.flag("multi_query", True):
        kv = 1
    if new:
        norms = 2 if c.int("num_ln_in_parallel_attn", default=2) == 2 else 1
    else:
        norms = 1 if c.flag("parallel_attn", True) else 2
    bias = c.flag("bias", False)
    return dict(hidden=d, layers=c.int("num_hidden_layers", "n_layer"), heads=heads,
                kv_heads=kv, head_dim=d // heads, ffn=c.int("ffn_hidden_size", default=4 * d),
                vocab=c.int("vocab_size"), gated_ffn=False,
                tie_embeddings=c.flag("tie_word_embeddings", True), qkv_bias=bias,
                out_bias=bias, mlp_bias=bias, norm="layernorm", norms_per_layer=norms)


@architecture("llama", "smollm3")
def _llama(c):
    kw = _decoder(c)
    if "BitnetForCausalLM" in (c.cfg.get("architectures") or ()):
        kw["sub_norms"] = True  # 1bitLLM's BitNet b1.58 reproductions
    if str(c.cfg.get("quantization", "")).startswith("ternary"):
        kw["default_wbits"] = TERNARY_BITS
    if c.model_type == "smollm3":
        kw.update(_sliding(c, kw["layers"], "above"))
    return kw


@architecture("mistral", "mixtral", "phi3")
def _mistral(c):
    kw = _decoder(c)
    kw.update(_experts(c, "num_local_experts"))
    kw.update(_sliding(c, kw["layers"], "all"))
    return kw


@architecture("bitnet")
def _bitnet(c):
    return dict(_decoder(c), sub_norms=True, default_wbits=TERNARY_BITS)


@architecture("qwen2", "qwen2_moe", "qwen3", "qwen3_moe")
def _qwen(c):
    kw = _decoder(c)
    if c.model_type.startswith("qwen2"):
        kw.update(qkv_bias=c.flag("qkv_bias", True), out_bias=False)
    else:
        kw["qk_norm"] = True
    kw.update(_sliding(c, kw["layers"], "odd_below" if c.model_type == "qwen2_moe"
                       else "above"))
    if c.model_type.endswith("_moe"):
        kw.update(_experts(c, "num_experts"), ffn=c.int("moe_intermediate_size"))
        kw.update(_qwen_dense_layers(c, kw["layers"]))
        if c.model_type == "qwen2_moe":
            shared = c.int("shared_expert_intermediate_size", default=0)
            kw.update(shared_ffn=shared, shared_gate=bool(shared))
        else:
            c.refuse("shared_expert_intermediate_size", "Qwen3-MoE has no shared expert")
    return kw


@architecture("phi")
def _phi(c):
    kw = _decoder(c, gated=False, norm="layernorm", bias=True)
    if c.flag("qk_layernorm", False):
        raise ModelInputError(f"{c.name}: qk_layernorm = true is not supported for phi.")
    return dict(kw, head_bias=True, norms_per_layer=1)


@architecture("gemma", "gemma2", "gemma3_text")
def _gemma(c):
    kw = _decoder(c)  # GeGLU: gated like SwiGLU
    if c.model_type == "gemma2":
        kw.update(_sliding(c, kw["layers"], "even"), norms_per_layer=4)
    elif c.model_type == "gemma3_text":
        kw.update(_sliding(c, kw["layers"], "pattern"), norms_per_layer=4, qk_norm=True)
    return kw


@architecture("gemma3")
def _gemma3(c):
    text = c.cfg.get("text_config")
    if not isinstance(text, dict):
        raise ModelInputError(f"{c.name}: a gemma3 config needs a 'text_config' object "
                              "(the language model; the vision tower is not modelled).")
    return _gemma(ConfigReader(text, c.name, "gemma3_text", CONFIG_DEFAULTS["gemma3_text"]))


@architecture("starcoder2")
def _starcoder2(c):
    kw = _decoder(c, gated=False, norm="layernorm")
    bias = c.flag("use_bias", True)
    kw.update(qkv_bias=bias, out_bias=bias, mlp_bias=bias)
    kw.update(_sliding(c, kw["layers"], "all"))
    return kw


@architecture("gpt_oss")
def _gpt_oss(c):
    kw = _decoder(c, bias=True)
    kw.update(_experts(c, "num_local_experts"), mlp_bias=True, router_bias=True,
              attention_sinks=True)
    kw.update(_sliding(c, kw["layers"], "even"))
    quant = c.cfg.get("quantization_config") or {}
    if quant.get("quant_method") == "mxfp4":
        kw["expert_bits"] = MXFP4_BITS  # experts stored in MXFP4, the rest unconverted
    return kw


@architecture(*MLA_MODEL_TYPES)
def _deepseek(c):
    """DeepSeek-V2/V3 structure: MLA attention, routed + shared experts, leading dense
    layers (every later layer MoE). V3's multi-token-prediction module
    (num_nextn_predict_layers) is not part of the op table or the parameter count."""
    freq = c.get("moe_layer_freq", default=1)
    if freq != 1:
        raise ModelInputError(f"{c.name}: moe_layer_freq = {freq!r} is not supported; only 1 "
                              "(every layer after first_k_dense_replace is MoE) is.")
    kw = _decoder(c)
    moe_ffn = c.int("moe_intermediate_size")
    kw.update(kv_lora_rank=c.int("kv_lora_rank"), q_lora_rank=c.int("q_lora_rank", default=0),
              qk_rope_dim=c.int("qk_rope_head_dim"), v_head_dim=c.int("v_head_dim"),
              head_dim=c.int("qk_nope_head_dim"), experts=c.int("n_routed_experts"),
              experts_per_token=c.int("num_experts_per_tok"), ffn=moe_ffn,
              dense_ffn=c.int("intermediate_size"), dense_layers=_mla_dense_layers(c),
              shared_ffn=c.int("n_shared_experts", default=0) * moe_ffn,
              kv_heads=1,  # one latent KV vector per token, shared by all heads
              # aux-loss-free routing (DeepSeek-V3 noaux_tc, GLM-MoE) adds a per-expert
              # bias to the router
              router_bias=(c.get("topk_method") == "noaux_tc"
                           or c.model_type == "glm4_moe_lite"))
    return kw


def _mla_dense_layers(c: ConfigReader) -> int:
    """Layers with a dense FFN: DeepSeek's first_k_dense_replace, or GLM's
    mlp_layer_types list of "dense" / "sparse"."""
    types = c.cfg.get("mlp_layer_types")
    if types is None:
        return c.int("first_k_dense_replace", default=0)
    unknown = set(types) - {"dense", "sparse"}
    if unknown:
        raise ModelInputError(f"{c.name}: mlp_layer_types has {sorted(unknown)[0]!r}; valid "
                              "entries: 'dense', 'sparse'.")
    return sum(t == "dense" for t in types)


def _mamba1(c: ConfigReader, d: int, layers: int, prefix: str = "") -> SSM:
    """A Mamba-1 mixer; Jamba spells its fields ``mamba_d_state`` etc. (``prefix``)."""
    names = (dict(state="mamba_d_state", conv="mamba_d_conv", expand="mamba_expand",
                  rank="mamba_dt_rank", conv_bias="mamba_conv_bias",
                  proj_bias="mamba_proj_bias") if prefix else
             dict(state="state_size", conv="conv_kernel", expand="expand",
                  rank="time_step_rank", conv_bias="use_conv_bias", proj_bias="use_bias"))
    rank = c.get(names["rank"], default="auto")
    rank = math.ceil(d / 16) if rank == "auto" else c.int(names["rank"])
    return SSM(version=1, inner=c.int(names["expand"]) * d, state=c.int(names["state"]),
               conv_kernel=c.int(names["conv"]), dt_rank=rank, layers=layers,
               conv_bias=c.flag(names["conv_bias"], True),
               proj_bias=c.flag(names["proj_bias"], False), inner_norms=bool(prefix))


def _ssm_only(c: ConfigReader, ssm: SSM, d: int, layers: int) -> dict:
    """A pure SSM model: one norm and one mixer per layer, no attention, no MLP (the
    attention fields are placeholders: no layer uses them)."""
    return dict(hidden=d, layers=layers, heads=1, kv_heads=1, head_dim=1, ffn=0,
                vocab=c.int("vocab_size"), tie_embeddings=c.flag("tie_word_embeddings", False),
                norms_per_layer=1, ssm=ssm)


@architecture("mamba")
def _mamba(c):
    d, layers = c.int("hidden_size"), c.int("num_hidden_layers")
    return _ssm_only(c, _mamba1(c, d, layers), d, layers)


@architecture("mamba2")
def _mamba2(c):
    d, layers = c.int("hidden_size"), c.int("num_hidden_layers")
    inner = c.int("expand") * d
    heads = c.int("num_heads", default=inner // c.int("head_dim"))
    if heads * c.int("head_dim") != inner:
        raise ModelInputError(f"{c.name}: mamba2 num_heads x head_dim = "
                              f"{heads} x {c.int('head_dim')} must equal expand x "
                              f"hidden_size = {inner}.")
    ssm = SSM(version=2, inner=inner, state=c.int("state_size"),
              conv_kernel=c.int("conv_kernel"), groups=c.int("n_groups"), heads=heads,
              chunk=c.int("chunk_size"), layers=layers,
              conv_bias=c.flag("use_conv_bias", True), proj_bias=c.flag("use_bias", False))
    return _ssm_only(c, ssm, d, layers)


@architecture("jamba")
def _jamba(c):
    kw = _decoder(c)
    layers = kw["layers"]
    period, offset = c.int("attn_layer_period"), c.int("attn_layer_offset")
    attn = sum(i % period == offset for i in range(layers))
    eperiod, eoffset = c.int("expert_layer_period"), c.int("expert_layer_offset")
    moe = sum(i % eperiod == eoffset for i in range(layers))
    if not attn or attn == layers:
        raise ModelInputError(f"{c.name}: attn_layer_period/offset must leave both "
                              "attention and Mamba layers.")
    kw.update(ssm=_mamba1(c, kw["hidden"], layers - attn, prefix="mamba_"),
              **_experts(c, "num_experts"))
    if kw.get("experts", 1) > 1 and moe < layers:
        kw.update(dense_layers=layers - moe, dense_ffn=kw["ffn"])
    return kw


# ---------------------------------------------------------------------- entry points
def from_hf_config(cfg: dict, name: str = "custom", **meta) -> LLM:
    """An `LLM` from a Hugging Face ``config.json`` dict, by its ``model_type`` (see
    `supported_model_types`); ``meta`` (title, bibtex, published) is passed on."""
    if not isinstance(cfg, dict):
        raise ModelInputError(f"{name}: a config must be a JSON object.")
    mt = cfg.get("model_type")
    supported = ", ".join(supported_model_types())
    if mt is None:
        raise ModelInputError(f"{name}: the config has no 'model_type'; add the "
                              f"architecture's, one of: {supported}.")
    if mt not in ARCHITECTURES:
        raise ModelInputError(f"{name}: model_type {mt!r} is not supported; supported: "
                              f"{supported}.")
    reader = ConfigReader(cfg, name, mt, CONFIG_DEFAULTS.get(mt))
    kw = ARCHITECTURES[mt](reader)
    if mt not in MLA_MODEL_TYPES:  # fields of another family: a mislabelled config
        for key in ("kv_lora_rank", "n_routed_experts"):
            reader.refuse(key, "latent attention (kv_lora_rank) and routed/shared experts "
                               f"(n_routed_experts) are read for {', '.join(MLA_MODEL_TYPES)}")
    if "max_context" not in meta:  # a preset may state its own (GPT-3: unchecked)
        kw.setdefault("max_context", _max_context(reader))
    return LLM(name=name, **kw, **meta)


def _max_context(c: ConfigReader) -> int:
    """The configured maximum sequence length (0 when the config states none: Falcon,
    Mamba and other position-free configs)."""
    v = c.get("max_position_embeddings", "n_positions", "n_ctx", "seq_length",
              "max_sequence_length")
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else 0


def load_config(path, name: str | None = None) -> LLM:
    """An `LLM` from a local Hugging Face ``config.json`` (or a preset-style JSON with a
    ``config`` key)."""
    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelInputError(f"config file {str(path)!r} does not exist.") from None
    except ValueError as e:
        raise ModelInputError(f"config file {str(path)!r} is malformed: {e}.") from None
    if "config" in data and isinstance(data["config"], dict):
        return from_hf_config(data["config"], name or data.get("name", path.stem),
                              title=data.get("title", ""), bibtex=data.get("bibtex", ""),
                              published=data.get("published", {}))
    return from_hf_config(data, name or path.stem)
