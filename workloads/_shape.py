"""Continuous model shape: an LLM's size descriptors as float leaves, a scaling-law
quality model, and hardening back to an exact `LLM` (docs/workloads.md, "Continuous model
shape").

`ModelShape.from_llm(llm)` keeps the model's structure (gating, norms, biases, tied
embeddings, windows, MLA, shared and dense-layer experts) static and turns its size
descriptors into float leaves::

    hidden, ffn, layers, heads, kv_heads, head_dim, vocab, experts, experts_per_token

``decode``, ``prefill``, ``request`` and ``speculative_decode`` build `perfmodel.Ops`
with the very row builder of `LLM` (run on the float fields), so `jax.jit`, `jax.vmap`
and `jax.grad` pass through the shape; at the integer values of a preset the Ops are
those of the preset (tests/test_shape.py). ``head_dim`` is ``None`` ("tied") when the
base model's heads split its width (``heads x head_dim = hidden``): it is then
``hidden / heads`` and moves with both; otherwise (Gemma, MLA) it is a leaf of its own.

A smaller model is not free: `scaling_loss` is the Chinchilla pretraining loss
``L(N, D) = E + A / N^alpha + B / D^beta`` (Hoffmann et al. 2022), differentiable in the
parameter count N (`ModelShape.parameter_count`), and `perplexity_ratio` turns a loss
difference into the ratio of perplexities ``exp(dL)``.

`harden_shape(shape, multiple=128)` rounds a shape to the nearest valid `LLM`: integer
heads that divide the width (``head_dim = hidden / heads``), KV heads that divide the
heads, width and FFN width multiples of ``multiple``, integer layers and experts, and
``1 <= experts_per_token <= experts``.
"""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from perfmodel._errors import ModelInputError
from perfmodel._ops import Ops
from perfmodel.workloads._llm import LLM

#: The float leaves of a `ModelShape` (``head_dim`` is None when tied to hidden / heads).
SHAPE_FIELDS = ("hidden", "ffn", "layers", "heads", "kv_heads", "head_dim", "vocab",
                "experts", "experts_per_token")


# ---------------------------------------------------------------------------- scaling law
#: Fits of the Chinchilla parametric loss L(N, D) = E + A / N^alpha + B / D^beta:
#: pretraining cross-entropy in nats per token on MassiveText (Gopher's corpus), N the
#: parameter count, D the training tokens.
SCALING_FITS = {
    "hoffmann2022": dict(
        E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28,
        source="Hoffmann et al. 2022, Training Compute-Optimal Large Language Models, "
               "arXiv:2203.15556, Approach 3 (Section 3.3, eq. 10)"),
    "besiroglu2024": dict(
        E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658,
        source="Besiroglu, Erdil, Barnett & You 2024, Chinchilla Scaling: A replication "
               "attempt, arXiv:2404.10102 (Approach 3 refitted to data reconstructed "
               "from Hoffmann et al.'s Figure 4)"),
}


def scaling_loss(parameters, tokens, *, fit: str = "hoffmann2022"):
    """Chinchilla pretraining loss ``E + A / N^alpha + B / D^beta`` in nats per token
    (not a WikiText-2 perplexity) of a model of ``parameters`` (N, total) trained on
    ``tokens`` (D). Pure JAX: arrays and tracers pass, decreasing in both, differentiable.

    ``fit``: ``"hoffmann2022"`` (the published constants, default) or
    ``"besiroglu2024"`` (the replication's refit); see `SCALING_FITS`."""
    if fit not in SCALING_FITS:
        raise ModelInputError(f"fit = {fit!r} is invalid; valid: {', '.join(SCALING_FITS)}.")
    c = SCALING_FITS[fit]
    for name, v in (("parameters", parameters), ("tokens", tokens)):
        try:
            bad = not np.all(np.asarray(v, float) > 0)
        except (TypeError, jax.errors.ConcretizationTypeError,
                jax.errors.TracerArrayConversionError):
            continue  # traced: validated by the caller's context
        if bad:
            raise ModelInputError(f"{name} = {v!r} is invalid; it must be > 0.")
    n = jnp.asarray(parameters, float)
    d = jnp.asarray(tokens, float)
    return c["E"] + c["A"] * n ** -c["alpha"] + c["B"] * d ** -c["beta"]


def perplexity_ratio(delta_loss):
    """Ratio of perplexities ``exp(delta_loss)`` of two models whose losses (nats per
    token) differ by ``delta_loss``: 0.05 nats more is a 5.1 % higher perplexity."""
    return jnp.exp(jnp.asarray(delta_loss, float))


# ---------------------------------------------------------------------------- the shape
class _ShapedLLM(LLM):
    """An `LLM` whose size fields are floats (possibly traced), built without the integer
    validation of `LLM.__post_init__`; its structural predicates are the base model's."""

    @property
    def is_moe(self) -> bool:
        return self._structure["moe"]

    @property
    def has_ffn(self) -> bool:
        return self._structure["ffn"]

    @property
    def has_attention(self) -> bool:
        return self._structure["attention"]

    def _check(self, attention, tp, **knobs):
        # continuous heads and widths need not divide tensor_parallel
        if not isinstance(tp, int) or tp < 1:
            raise ModelInputError(
                f"tensor_parallel = {tp!r} is invalid; it must be a positive integer.")
        if self.is_mla and tp != 1:
            super()._check(attention, tp, **knobs)  # raises its own message
        super()._check(attention, 1, **knobs)  # (tp = 1 divides everything)


def _float_leaf(x):
    return None if x is None else jnp.asarray(x, dtype=float)


class ModelShape(eqx.Module):
    """A transformer LLM's size as float leaves over the static structure of ``base``.

    Build it with `ModelShape.from_llm`; move it with `eqx.tree_at` or
    ``jax.tree.map``; every builder is a pure function of the leaves. Build an exact
    model back with `harden_shape` (or `.harden()`)."""

    hidden: jax.Array
    ffn: jax.Array
    layers: jax.Array
    heads: jax.Array
    kv_heads: jax.Array
    head_dim: jax.Array | None
    vocab: jax.Array
    experts: jax.Array
    experts_per_token: jax.Array
    base: LLM = eqx.field(static=True)

    def __init__(self, base: LLM, *, hidden, ffn, layers, heads, kv_heads, vocab,
                 experts=1.0, experts_per_token=1.0, head_dim=None):
        self.base = base
        self.hidden = _float_leaf(hidden)
        self.ffn = _float_leaf(ffn)
        self.layers = _float_leaf(layers)
        self.heads = _float_leaf(heads)
        self.kv_heads = _float_leaf(kv_heads)
        self.head_dim = _float_leaf(head_dim)
        self.vocab = _float_leaf(vocab)
        self.experts = _float_leaf(experts)
        self.experts_per_token = _float_leaf(experts_per_token)

    def __check_init__(self):
        if not isinstance(self.base, LLM):
            raise ModelInputError(f"ModelShape.base must be an LLM, not {self.base!r}.")
        for f in SHAPE_FIELDS:
            v = getattr(self, f)
            if v is None or isinstance(v, jax.core.Tracer):
                continue
            a = np.asarray(v)
            zero_ok = f == "ffn" and not self.base.has_ffn
            if not np.all(np.isfinite(a)) or not np.all(a >= 0 if zero_ok else a > 0):
                raise ModelInputError(
                    f"{self.base.name}: shape.{f} = {a.tolist()!r} is invalid; it must be "
                    f"finite and > 0.")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_llm(cls, llm: LLM, *, tie_head_dim: bool | None = None) -> ModelShape:
        """The shape of an exact `LLM` (its integers as floats). ``tie_head_dim``:
        head_dim follows hidden / heads (default: when the model's heads split its width
        and it has no latent attention)."""
        if not isinstance(llm, LLM):
            raise ModelInputError(f"ModelShape.from_llm needs an LLM, not {type(llm).__name__}.")
        if llm.ssm is not None:
            raise ModelInputError(
                f"{llm.name}: a model with state-space layers (Mamba, Jamba) has no "
                "continuous shape; its SSM structure is static.")
        natural = llm.heads * llm.head_dim == llm.hidden and not llm.is_mla
        tie = natural if tie_head_dim is None else bool(tie_head_dim)
        if tie and llm.is_mla:
            raise ModelInputError(f"{llm.name}: latent attention keeps its own head_dim; "
                                  "tie_head_dim must be False.")
        return cls(llm, hidden=llm.hidden, ffn=llm.ffn, layers=llm.layers, heads=llm.heads,
                   kv_heads=llm.kv_heads, vocab=llm.vocab, experts=llm.experts,
                   experts_per_token=llm.experts_per_token,
                   head_dim=None if tie else llm.head_dim)

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def tied_head_dim(self) -> bool:
        return self.head_dim is None

    def llm(self) -> LLM:
        """The base model's structure with this shape's float sizes: an `LLM` whose
        builders (``decode``, ``parameter_count``, ...) run on the floats. It is not
        validated as an exact model; use `harden_shape` for one."""
        base = self.base
        view = object.__new__(_ShapedLLM)
        for f in dataclasses.fields(LLM):
            object.__setattr__(view, f.name, getattr(base, f.name))
        head_dim = self.hidden / self.heads if self.head_dim is None else self.head_dim
        for f, v in (("hidden", self.hidden), ("ffn", self.ffn), ("layers", self.layers),
                     ("heads", self.heads), ("kv_heads", self.kv_heads),
                     ("head_dim", head_dim), ("vocab", self.vocab),
                     ("experts", self.experts),
                     ("experts_per_token", self.experts_per_token)):
            object.__setattr__(view, f, v)
        object.__setattr__(view, "_structure", dict(
            moe=base.is_moe, ffn=base.has_ffn, attention=base.has_attention))
        return view

    # ------------------------------------------------------------------ quantities
    def parameter_count(self, *, active: bool = False, embeddings: bool = True):
        """Parameters (a float array; differentiable), as `LLM.parameter_count`."""
        return jnp.asarray(self.llm().parameter_count(active=active, embeddings=embeddings),
                           float)

    def kv_bytes_per_token(self, kvbits=16.0):
        return jnp.asarray(self.llm().kv_bytes_per_token(kvbits), float)

    def weight_bytes(self, wbits):
        return jnp.asarray(self.llm().weight_bytes(wbits), float)

    def pretraining_loss(self, tokens, *, fit: str = "hoffmann2022"):
        """`scaling_loss` of this shape's total parameter count trained on ``tokens``."""
        return scaling_loss(self.parameter_count(), tokens, fit=fit)

    # ------------------------------------------------------------------ phases
    def decode(self, batch=1.0, context=1024.0, **kw) -> Ops:
        """`LLM.decode` on this shape."""
        return self.llm().decode(batch, context, **kw)

    def prefill(self, batch=1.0, prompt=512.0, **kw) -> Ops:
        """`LLM.prefill` on this shape."""
        return self.llm().prefill(batch, prompt, **kw)

    def request(self, batch=1.0, prompt=512.0, generate=128.0, **kw) -> Ops:
        """`LLM.request` on this shape."""
        return self.llm().request(batch, prompt, generate, **kw)

    def speculative_decode(self, batch=1.0, context=1024.0, **kw) -> Ops:
        """`LLM.speculative_decode` on this shape."""
        return self.llm().speculative_decode(batch, context, **kw)

    def harden(self, *, multiple: int = 128, name: str | None = None) -> LLM:
        """`harden_shape` of this shape."""
        return harden_shape(self, multiple=multiple, name=name)


# ---------------------------------------------------------------------------- hardening
def _scalar(shape, f) -> float:
    v = getattr(shape, f)
    if isinstance(v, jax.core.Tracer):
        raise ModelInputError(f"harden_shape needs concrete values; shape.{f} is traced.")
    a = np.asarray(v, float)
    if a.size != 1:
        raise ModelInputError(f"harden_shape takes one shape; shape.{f} has shape {a.shape} "
                              "(harden each design of a batch separately).")
    x = float(a.reshape(()))
    if not math.isfinite(x):
        raise ModelInputError(f"shape.{f} = {x!r} is invalid; it must be finite.")
    return x


def _round(x: float, lo: int = 1) -> int:
    return max(lo, int(math.floor(x + 0.5)))


def _round_multiple(x: float, step: int) -> int:
    return step * max(1, int(math.floor(x / step + 0.5)))


def _nearest_divisor(n: int, x: float) -> int:
    """The divisor of n nearest to x (the larger one on a tie)."""
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - x), -d))


def _tied_width(heads: int, hidden: float, multiple: int) -> int:
    """Nearest width that ``heads`` divide and that is a multiple of ``multiple``."""
    step = multiple // math.gcd(heads, multiple)  # head_dim steps keeping the multiple
    return heads * _round_multiple(hidden / heads, step)


def harden_shape(shape: ModelShape, *, multiple: int = 128, name: str | None = None) -> LLM:
    """The nearest exact `LLM` to a (concrete, unbatched) `ModelShape`:

    - heads: an integer >= 1; with a tied head_dim, (heads, hidden) is the pair among
      heads within 2 of the rounded value that is closest in log space to the shape,
      with hidden a multiple of ``multiple`` that heads divide (head_dim = hidden /
      heads); an untied head_dim rounds to an integer on its own and hidden to a
      multiple;
    - kv_heads: the divisor of heads nearest to the shape's value;
    - ffn: a multiple of ``multiple`` (0 stays 0 for a model without an FFN);
    - layers, vocab: integers >= 1; the base's window layers keep their share of the
      layers, its leading dense layers stay below the layer count;
    - experts: an integer >= 2 for an MoE base (1 for a dense one), experts_per_token
      in [1, experts].

    The result passes `LLM`'s validation. A shape whose values are already valid (the
    shape of a preset) gives the base model back, name and metadata included; another
    gets a name that states its sizes."""
    if not isinstance(shape, ModelShape):
        raise ModelInputError(f"harden_shape needs a ModelShape, not {type(shape).__name__}.")
    if not isinstance(multiple, (int, np.integer)) or multiple < 1:
        raise ModelInputError(f"multiple = {multiple!r} is invalid; it must be a positive "
                              "integer (64 or 128 are usual).")
    multiple = int(multiple)
    base = shape.base
    v = {f: _scalar(shape, f) for f in SHAPE_FIELDS if getattr(shape, f) is not None}
    for f, x in v.items():
        if x <= 0 and not (f == "ffn" and not base.has_ffn):
            raise ModelInputError(f"shape.{f} = {x!r} is invalid; it must be > 0.")

    h0 = _round(v["heads"])
    if shape.tied_head_dim:
        def err(h):
            return math.log(h / v["heads"]) ** 2 + math.log(
                _tied_width(h, v["hidden"], multiple) / v["hidden"]) ** 2
        heads = min(range(max(1, h0 - 2), h0 + 3), key=lambda h: (err(h), abs(h - h0)))
        hidden = _tied_width(heads, v["hidden"], multiple)
        head_dim = hidden // heads
    else:
        heads = h0
        hidden = _round_multiple(v["hidden"], multiple)
        head_dim = _round(v["head_dim"])
    kv_heads = _nearest_divisor(heads, v["kv_heads"])
    ffn = _round_multiple(v["ffn"], multiple) if base.has_ffn else 0
    layers = _round(v["layers"])
    vocab = _round(v["vocab"])
    if base.is_moe:
        experts = _round(v["experts"], lo=2)
        experts_per_token = min(_round(v["experts_per_token"]), experts)
    else:
        experts = experts_per_token = 1
    fields = dict(hidden=hidden, ffn=ffn, layers=layers, heads=heads, kv_heads=kv_heads,
                  head_dim=head_dim, vocab=vocab, experts=experts,
                  experts_per_token=experts_per_token)
    if base.sliding_layers:
        fields["sliding_layers"] = min(layers, _round(
            base.sliding_layers * layers / base.attn_layers, lo=0))
    if base.dense_layers:
        fields["dense_layers"] = min(base.dense_layers, layers - 1)
    unchanged = all(getattr(base, f) == x for f, x in fields.items())
    if name is None:
        name = base.name if unchanged else (
            f"{base.name}~d{hidden}-f{ffn}-L{layers}-h{heads}-kv{kv_heads}-hd{head_dim}"
            + (f"-E{experts}k{experts_per_token}" if base.is_moe else "") + f"-V{vocab}")
    extra = {} if unchanged else dict(published={}, title=f"{base.title or base.name}, "
                                      "resized (harden_shape)")
    return dataclasses.replace(base, name=name, **fields, **extra)
