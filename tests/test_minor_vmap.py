"""`minor_vmap` / `sweep(layout="minor")` against `jax.vmap`: same values and gradients on
every target family's bench case, on hand-made functions that use each special rule and
the fallback, and with differentiation through it (custom_jvp rules kept)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import perfmodel as pm
from perfmodel import _bench
from perfmodel._minor_vmap import minor_vmap


def _bench_case(name):
    case = next(c for c in _bench.bench_cases() if c["hardware"] == name)
    hw = pm.hardware.preset(name)
    return hw, _bench.case_ops(case)


#: The system (gather, scatter-add, stack, squeeze on the hot path) and the LUT target;
#: `perfmodel bench` prints every case's agreement too (its "minor_vs_major" figure).
CASES = ["neupims", "sail"]


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("hard", [False])
def test_bench_case_matches_vmap(name, hard):
    """Latency and its elasticities d log(latency) / d log(leaf) over 256 random designs
    agree with a plain vmap to float32 rounding: 1e-5 relative on latency, 1e-5 absolute
    on elasticities (a gradient itself can be ~1e-22 on a capacity leaf far from its
    bound, where rounding dominates either way)."""
    hw, ops = _bench_case(name)
    designs, static = _bench.random_designs(hw, 256, jax.random.PRNGKey(7))

    def latency(p):
        return pm.evaluate(eqx.combine(p, static), ops, check=False, hard=hard).latency

    vg = jax.value_and_grad(latency)
    want = jax.jit(jax.vmap(vg))(designs)
    got = jax.jit(lambda d: pm.sweep(vg, d, chunk=128))(designs)
    agree = _bench.layout_agreement(got, want, designs)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(got))
    assert agree["latency_rel"] < 1e-5 and agree["elasticity_abs"] < 1e-5, agree


@jax.custom_jvp
def _odd_derivative(x):
    """x**2 with a deliberately wrong derivative (3x), to see which rule is used."""
    return x * x


_odd_derivative.defjvp(lambda p, t: (p[0] * p[0], 3.0 * p[0] * t[0]))


def _every_rule(p):
    """Uses each special rule and the jax.vmap fallback (cumsum, argmax, cond, sort)."""
    rows = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])
    a, b = p["a"], p["b"]
    x = a * rows + b                                   # broadcast_in_dim, elementwise
    y = jnp.stack([x, rows, x * x])                    # stack (one operand unbatched)
    z = jnp.concatenate([x, rows[:2]])                 # concatenate (fallback)
    g = x[jnp.array([4, 0, 2])]                        # gather at shared indices
    s = jnp.zeros(5).at[jnp.array([1, 1, 3])].add(g)   # scatter-add
    r = jnp.reshape(y, (15,))[None]                    # reshape, then squeeze below
    out = {
        "sum": jnp.sum(y, axis=(0, 1)) + jnp.sum(z),
        "max": jnp.max(y, axis=1), "min": jnp.min(x),
        "scatter": s, "squeezed": jnp.squeeze(r, 0)[::4],
        "cumsum": jnp.cumsum(x), "argmax": jnp.argmax(x * jnp.cos(x)),
        "cond": jax.lax.cond(a > 1.5, lambda: a * 2.0, lambda: b),
        "sorted": jnp.sort(x * jnp.sin(x)),
        "softplus": jax.nn.softplus(x - 3.0), "odd": _odd_derivative(a),
        "const": jnp.float32(7.0), "b_only": b * 2.0,
    }
    return out


def _designs(n=6):
    return {"a": jnp.linspace(0.5, 2.5, n), "b": jnp.linspace(-1.0, 1.0, n)}


def test_every_rule_matches_vmap():
    """Each output of a function touching every rule equals jax.vmap's, eagerly and
    under jit, including an output that depends on no input; to 1e-5, since sin and cos
    are vectorized differently in the two layouts (3e-5 relative seen near a zero)."""
    d = _designs()
    want = jax.vmap(_every_rule)(d)
    for got in (minor_vmap(_every_rule)(d), jax.jit(minor_vmap(_every_rule))(d)):
        assert jax.tree.structure(got) == jax.tree.structure(want)
        for k in want:
            assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype, k
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5, err_msg=k)


def _some_rules(p):
    """A smaller mix of rules, for the gradient test."""
    rows = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])
    x = p["a"] * rows + p["b"]
    y = jnp.stack([x, rows])
    s = jnp.zeros(5).at[jnp.array([1, 1, 3])].add(x[jnp.array([4, 0, 2])])
    return (jnp.sum(y * y) + jnp.sum(s * x) + jnp.max(x) + jnp.sum(jax.nn.softplus(x - 3.0))
            + _odd_derivative(p["a"]))


def test_gradients_through_minor_vmap():
    """Differentiating through minor_vmap gives jax.vmap's gradient, and a custom_jvp
    function keeps its own rule (3x, not the primal's 2x)."""
    d = _designs()
    want = jax.jit(jax.grad(lambda d: jnp.sum(jax.vmap(_some_rules)(d))))(d)
    got = jax.jit(jax.grad(lambda d: jnp.sum(minor_vmap(_some_rules)(d))))(d)
    for k in d:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5, err_msg=k)
    odd = jax.grad(lambda d: jnp.sum(minor_vmap(lambda p: _odd_derivative(p["a"]))(d)))(d)
    np.testing.assert_allclose(odd["a"], 3.0 * d["a"], rtol=1e-6)


@pytest.mark.parametrize("n,chunk", [(10, 4), (3, None)])
def test_sweep_paths_agree(n, chunk):
    """`sweep` gives jax.vmap's result on each of its paths: concrete designs (one jitted
    minor chunk dispatched per chunk, the last one padded), traced designs (one
    minor_vmap, or a lax.map loop), and the major layout."""
    d = _designs(n)
    want = jax.vmap(_every_rule)(d)
    paths = {
        "dispatched": pm.sweep(_every_rule, d, chunk=chunk),
        "traced": jax.jit(lambda d: pm.sweep(_every_rule, d, chunk=chunk))(d),
        "major": jax.jit(lambda d: pm.sweep(_every_rule, d, chunk=chunk, layout="major"))(d),
    }
    for path, got in paths.items():
        for k in want:
            assert got[k].shape == want[k].shape, (path, k)
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{path} {k}")


def test_sweep_reuses_the_chunk_compilation():
    """The dispatched path compiles once per function and chunk shape: new values, and
    another number of designs cut into chunks of the same size, reuse it."""
    from perfmodel._evaluate import _jitted_chunk

    def f(p):
        return p["a"] * 2.0

    first = pm.sweep(f, _designs(12), chunk=4)
    run = _jitted_chunk(f)
    second = pm.sweep(f, jax.tree.map(lambda x: x + 1.0, _designs(12)), chunk=4)
    pm.sweep(f, _designs(16), chunk=4)
    assert _jitted_chunk(f) is run and run._cache_size() == 1
    np.testing.assert_allclose(second, first + 2.0, rtol=1e-6)


@pytest.mark.parametrize("kwargs,field", [({"layout": "columns"}, "layout"),
                                          ({"chunk": 0}, "chunk"),
                                          ({"designs": {}}, "designs"),
                                          ({"designs": {"a": 1.0}}, "designs")])
def test_sweep_rejects_bad_input(kwargs, field):
    """One sentence naming the argument, not a trace from inside JAX."""
    kwargs = {"designs": _designs(), **kwargs}
    with pytest.raises(pm.ModelInputError, match=field):
        pm.sweep(_every_rule, **kwargs)
