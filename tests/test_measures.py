"""Quadrature measures (THEORY §2, Claim (iii)): known integrals at the expected order."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import raises_naming

from hjax.measures import grid_measure, nested_measure
from hjax.rates import loglog_fit

# ∫_0^1 exp(−x²/2) dx, from the error function (not from any quadrature).
GAUSS_01 = math.sqrt(math.pi / 2) * math.erf(1 / math.sqrt(2))


def _integrate(measure, f):
    y, log_w = (np.asarray(a) for a in measure)
    return float(np.sum(np.exp(log_w) * f(y)))


def _gauss(y):
    return np.exp(-0.5 * np.sum(y**2, axis=-1))


# -- grid (midpoint) ---------------------------------------------------------------


def test_grid_points_and_weights_are_the_midpoint_rule():
    y, log_w = grid_measure(-1.0, 2.0, 3, 2)
    expected = [[a, b] for a in (-0.5, 0.5, 1.5) for b in (-0.5, 0.5, 1.5)]  # C order
    np.testing.assert_allclose(np.asarray(y), expected, atol=1e-15)
    np.testing.assert_allclose(np.asarray(log_w), np.full(9, 0.0), atol=1e-15)  # h = 1
    assert y.shape == (9, 2) and log_w.shape == (9,)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_grid_midpoint_error_is_exactly_minus_d_h2_over_12_for_squared_norm(d):
    """Σ_j w_j |y_j|² = d/3 − d h²/12 on [0, 1]^d: the midpoint rule's exact error."""
    for n in (3, 8):
        got = _integrate(grid_measure(0.0, 1.0, n, d), lambda y: np.sum(y**2, axis=-1))
        np.testing.assert_allclose(got - d / 3, -d / (12 * n**2), rtol=1e-10, atol=1e-15)


def test_grid_is_exact_for_affine_functions():
    for d in (1, 3):
        got = _integrate(grid_measure(-2.0, 1.0, 5, d), lambda y: 1 + np.sum(y, axis=-1))
        np.testing.assert_allclose(got, 3.0**d * (1 - 0.5 * d), rtol=1e-13)


@pytest.mark.parametrize("d", [1, 2])
def test_grid_converges_at_second_order_on_a_gaussian(d):
    ns = [4, 8, 16, 32, 64]
    errors = [abs(_integrate(grid_measure(0.0, 1.0, n, d), _gauss) - GAUSS_01**d) for n in ns]
    assert -2.05 <= loglog_fit(ns, errors, tail=4).slope <= -1.95  # O(h²) = O(N^{-2/d})


@pytest.mark.parametrize("measure", [grid_measure, nested_measure])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_weights_sum_to_the_volume(measure, d):
    _, log_w = measure(-1.5, 0.5, 7, d)
    np.testing.assert_allclose(np.sum(np.exp(np.asarray(log_w))), 2.0**d, rtol=1e-13)


# -- nested (Halton) --------------------------------------------------------------------


def _radical_inverse(i: int, base: int) -> float:
    """Pure-Python van der Corput radical inverse (the definition, digit by digit)."""
    out, scale = 0.0, 1.0 / base
    while i:
        i, digit = divmod(i, base)
        out += digit * scale
        scale /= base
    return out


def test_nested_is_the_halton_sequence_in_the_first_primes():
    y, log_w = nested_measure(0.0, 1.0, 50, 5)
    expected = [[_radical_inverse(i, b) for b in (2, 3, 5, 7, 11)] for i in range(1, 51)]
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-15, atol=0)
    np.testing.assert_allclose(np.asarray(log_w), np.full(50, -math.log(50)), rtol=1e-15)
    np.testing.assert_allclose(np.asarray(y[:4, 0]), [0.5, 0.25, 0.75, 0.125])
    np.testing.assert_allclose(np.asarray(y[:3, 1]), [1 / 3, 2 / 3, 1 / 9])


@pytest.mark.parametrize("key", [None, 3])
def test_nested_prefix_property(key):
    key = None if key is None else jax.random.key(key)
    y_big, log_w_big = nested_measure(-2.0, 1.0, 200, 3, key=key)
    for m in (1, 17, 64):
        y_m, log_w_m = nested_measure(-2.0, 1.0, m, 3, key=key)
        np.testing.assert_array_equal(np.asarray(y_m), np.asarray(y_big[:m]))
        np.testing.assert_allclose(
            np.asarray(log_w_m), np.asarray(log_w_big[:m]) + math.log(200 / m), rtol=1e-14
        )


def test_nested_points_stay_in_the_box_and_shifts_differ():
    a, _ = nested_measure(-2.0, 1.0, 500, 4, key=jax.random.key(0))
    b, _ = nested_measure(-2.0, 1.0, 500, 4, key=jax.random.key(1))
    for y in (np.asarray(a), np.asarray(b)):
        assert np.all((y >= -2.0) & (y < 1.0))
    assert not np.allclose(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("d", [1, 2, 3])
def test_nested_converges_like_qmc_not_like_mc(d):
    """Error of Halton prefixes ~ (log N)^d / N: a slope between −1 and −1 + d/log N on the
    tail (the log factor), well below Monte Carlo's −1/2."""
    n_max = 2**13
    y, log_w = nested_measure(0.0, 1.0, n_max, d)
    f = _gauss(np.asarray(y))
    ns = [2**k for k in range(6, 14)]
    errors = [abs(np.mean(f[:n]) - GAUSS_01**d) for n in ns]
    assert -1.05 <= loglog_fit(ns, errors, tail=5).slope <= -0.7
    np.testing.assert_allclose(float(np.exp(log_w[0])) * np.sum(f), np.mean(f), rtol=1e-12)


def test_randomly_shifted_nested_rule_is_unbiased():
    """Randomized QMC: independent shifts give unbiased estimates; their spread is an error bar."""
    estimates = []
    for k in range(24):
        estimates.append(
            _integrate(nested_measure(0.0, 1.0, 256, 2, key=jax.random.key(k)), _gauss)
        )
    estimates = np.array(estimates)
    stderr = estimates.std(ddof=1) / math.sqrt(len(estimates))
    assert abs(estimates.mean() - GAUSS_01**2) <= 4 * stderr
    assert stderr < 1e-3  # far below plain MC at n = 256 (sd/√n ≈ 0.01)


# -- dtypes, tracing, bad input ------------------------------------------------------


def test_dtype_default_and_keyword():
    for measure in (grid_measure, nested_measure):
        y, log_w = measure(0.0, 1.0, 4, 2)
        assert y.dtype == log_w.dtype == jnp.float64  # x64 enabled in tests
        y, log_w = measure(0.0, 1.0, 4, 2, dtype=jnp.float32)
        assert y.dtype == log_w.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(y), np.asarray(measure(0.0, 1.0, 4, 2)[0]), rtol=1e-7)
    y, _ = nested_measure(0.0, 1.0, 4, 2, key=jax.random.key(0), dtype=jnp.float32)
    assert y.dtype == jnp.float32


def test_box_may_be_traced():
    f = jax.jit(grid_measure, static_argnames=("n", "d"))
    y, log_w = f(jnp.asarray(-1.0), jnp.asarray(1.0), n=4, d=1)
    np.testing.assert_allclose(np.asarray(y[:, 0]), [-0.75, -0.25, 0.25, 0.75])
    with pytest.raises((RuntimeError, ValueError), match="`upper`"):
        jax.block_until_ready(f(jnp.asarray(1.0), jnp.asarray(1.0), n=4, d=1))


@pytest.mark.parametrize("measure", [grid_measure, nested_measure])
def test_bad_input_raises_naming_the_argument(measure):
    with raises_naming("upper"):
        measure(1.0, 1.0, 4, 2)
    with raises_naming("upper"):
        measure(1.0, 0.0, 4, 2)
    with raises_naming("upper"):  # an infinite box: atoms at ±inf/NaN, log_w = inf
        measure(-np.inf, 0.0, 4, 2)
    with raises_naming("n"):
        measure(0.0, 1.0, 0, 2)
    with raises_naming("d"):
        measure(0.0, 1.0, 4, 0)
    with raises_naming("n"):
        measure(0.0, 1.0, 4.0, 2)
    with raises_naming("lower"):
        measure(np.zeros(2), 1.0, 4, 2)
    with raises_naming("dtype"):
        measure(0.0, 1.0, 4, 2, dtype=jnp.int32)
