"""Smooth primitives: exact with hard=True, within the stated bound when smooth."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import perfmodel as pm

pos = st.floats(1e-9, 1e9, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(pos, pos)
def test_smooth_max_bound(a, b):
    exact = max(a, b)
    s = float(pm.smooth_max(jnp.float32(a), jnp.float32(b)))
    assert s >= exact * (1 - 1e-6)
    assert s <= exact * (1 + pm.RIDGE_SHARPNESS) * (1 + 1e-6)
    assert float(pm.smooth_max(a, b, hard=True)) == pytest.approx(exact, rel=1e-6)


def test_smooth_max_gap_is_small_away_from_ridge():
    # a = 2b: gap = s^2 (a+b)^2 / (4 |a-b|) / a  ~ 0.05 %
    a, b = 2.0, 1.0
    assert float(pm.smooth_max(a, b)) / a - 1 < 1e-3
    # exactly at the ridge the gap is the sharpness
    assert float(pm.smooth_max(1.0, 1.0)) == pytest.approx(1 + pm.RIDGE_SHARPNESS, rel=1e-6)


def test_smooth_min_and_relu():
    assert float(pm.smooth_min(3.0, 5.0, hard=True)) == 3.0
    assert float(pm.smooth_min(3.0, 5.0)) == pytest.approx(3.0, rel=pm.RIDGE_SHARPNESS)
    assert float(pm.smooth_relu(-5.0, 1.0)) < 1e-3
    assert float(pm.smooth_relu(5.0, 1.0)) == pytest.approx(5.0, rel=1e-3)


@pytest.mark.parametrize("x", [0.0, 0.001, 0.3, 1.0, 1.01, 1.5, 7.99, 8.0, 100.2])
def test_smooth_ceil(x):
    exact = np.ceil(x)
    s = float(pm.smooth_ceil(jnp.float32(x)))
    frac = x - np.floor(x)
    if frac == 0 or frac >= pm.CEIL_RAMP or x < 1:
        assert s == pytest.approx(exact)
    else:  # inside the ramp: between floor and ceil
        assert np.floor(x) <= s <= exact
    assert float(pm.smooth_ceil(x, hard=True)) == exact


def test_gradients_finite_at_kinks():
    for f in (lambda x: pm.smooth_max(x, 1.0), lambda x: pm.smooth_ceil(x),
              lambda x: pm.smooth_relu(x - 1.0, 1.0)):
        g = jax.grad(f)(1.0)
        assert np.isfinite(float(g))
    assert np.isfinite(float(jax.grad(lambda x: pm.smooth_max(x, x))(0.0)))


def test_soft_choice():
    logits = jnp.array([0.0, 2.0, 1.0])
    w = pm.soft_choice(logits)
    assert float(w.sum()) == pytest.approx(1.0)
    assert np.argmax(np.asarray(w)) == 1
    np.testing.assert_array_equal(np.asarray(pm.soft_choice(logits, hard=True)), [0, 1, 0])
    # sharper temperature approaches the hard choice
    assert float(pm.soft_choice(logits, temperature=0.01)[1]) > 0.999


def test_cost_from_columns_max_time_is_the_fold():
    """`Cost.from_columns` stacks the columns and, smooth only, folds `smooth_max` over
    them into ``max_time`` (what `report_from_cost` then uses): equal to the generic
    `smooth_maximum` over the stacked terms; scalar columns broadcast."""
    from perfmodel._report import Cost

    t = [jnp.asarray([1.0, 2.0, 3.0]), jnp.asarray([3.0, 2.0, 0.5]), 0.0]
    e = [jnp.asarray([1.0, 1.0, 1.0]), 0.0]
    kw = dict(overhead=jnp.zeros(3), energy_columns=e, static_power=jnp.asarray(1.0),
              area=None, components=("a", "b", "c"), energy_components=("x", "y"))
    smooth = Cost.from_columns(t, hard=False, **kw)
    hard = Cost.from_columns(t, hard=True, **kw)
    assert smooth.time_terms.shape == (3, 3) and smooth.energy_terms.shape == (3, 2)
    np.testing.assert_allclose(smooth.max_time,
                               pm.smooth_maximum(smooth.time_terms, axis=1), rtol=1e-7)
    assert hard.max_time is None
    np.testing.assert_array_equal(hard.component_max(hard=True), [3.0, 2.0, 3.0])


def test_smooth_maximum_of_a_sequence_is_the_stacked_fold():
    cols = [jnp.asarray([1.0, 2.0, 3.0]), jnp.asarray([3.0, 2.0, 0.5]), 0.0]
    stacked = jnp.stack(jnp.broadcast_arrays(*cols))
    for hard in (False, True):
        np.testing.assert_allclose(pm.smooth_maximum(cols, hard=hard),
                                   pm.smooth_maximum(stacked, hard=hard), rtol=1e-7)
