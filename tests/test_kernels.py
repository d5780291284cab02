"""Blocked evaluation (hjax._kernels: hj_reduce, affine_reduce, affine_sum, block_rows).

Batches larger than one block (:func:`hjax._kernels.block_rows`) go through cache-sized
blocks of queries with the expanded (matrix-product) cost. Every check here uses such a
batch, sized from ``block_rows`` so that the last block is ragged, and compares with
references that share no code with the blocks: brute-force NumPy formulas, finite
differences, and the direct path (one query at a time).
"""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hjax import _kernels
from hjax.hopf_cole import hopf_cole, hopf_cole_grad, hopf_cole_hessian, hopf_lax
from hjax.layers import (
    lse_layer,
    lse_layer_backward,
    lse_layer_grad,
    lse_layer_hessian,
)
from hjax.sweep import hopf_cole_sweep

N, D, T = 7, 2, 0.7
ROWS = _kernels.block_rows(N)
B = 2 * ROWS + 37  # three blocks, the last one ragged


def _problem(seed=0, n=N, batch=B, d=D):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, d))
    y = rng.standard_normal((n, d))
    g = rng.standard_normal(n)
    log_w = rng.standard_normal(n)
    log_w[[1, 4]] = -np.inf  # masked atoms
    m = rng.standard_normal((d, d))
    A = m @ m.T / d + 0.5 * np.eye(d)
    return x, y, g, log_w, A


def _numpy_gibbs(x, y, g, t, eps, log_w, A):
    """Brute force: costs, Gibbs weights and u from the difference form, float64."""
    A_inv = np.linalg.inv(A)
    diff = x[:, None, :] - y[None]
    cost = np.einsum("bni,ij,bnj->bn", diff, A_inv, diff) / (2 * t)
    a = cost + g
    active = np.isfinite(log_w)
    if eps == 0:
        a_act = np.where(active, a, np.inf)
        u = a_act.min(axis=1)
        ties = a_act == u[:, None]
        pi = ties / ties.sum(axis=1, keepdims=True)
    else:
        s = np.where(active, -a / eps + np.where(active, log_w, 0.0), -np.inf)
        m = s.max(axis=1, keepdims=True)
        e = np.exp(s - m)
        u = -eps * (m[:, 0] + np.log(e.sum(axis=1)))
        pi = e / e.sum(axis=1, keepdims=True)
    return u, pi, A_inv


def test_block_rows_is_a_power_of_two_in_range():
    for n in (1, 7, 1000, 2**12, 2**14, 2**20):
        rows = _kernels.block_rows(n)
        assert rows & (rows - 1) == 0 and 8 <= rows
    assert _kernels.block_rows(1) >= _kernels.block_rows(2**20)
    assert B > ROWS  # the tests below exercise the blocked path


@pytest.mark.parametrize("eps", [0.0, 0.35])
def test_hopf_cole_value_gradient_hessian_match_brute_force(eps):
    x, y, g, log_w, A = _problem(1)
    u_ref, pi, A_inv = _numpy_gibbs(x, y, g, T, eps, log_w, A)
    u = hopf_cole(x, y, g, T, eps, log_w=log_w, A=A)
    np.testing.assert_allclose(u, u_ref, rtol=1e-13, atol=1e-13)
    grad_ref = (x - pi @ y) @ A_inv / T
    np.testing.assert_allclose(
        hopf_cole_grad(x, y, g, T, eps, log_w=log_w, A=A), grad_ref, rtol=1e-12, atol=1e-12
    )
    mean = pi @ y
    centred = (y[None] - mean[:, None]) @ A_inv  # A⁻¹(y_j − ȳ), (B, N, d)
    cov = np.einsum("bn,bni,bnj->bij", pi, centred, centred)
    hess_ref = A_inv / T - (cov / (eps * T**2) if eps > 0 else np.zeros_like(cov))
    np.testing.assert_allclose(
        hopf_cole_hessian(x, y, g, T, eps, log_w=log_w, A=A), hess_ref, rtol=1e-11, atol=1e-11
    )


def test_batch_shape_and_block_boundaries():
    """Sizes around a block boundary and a (*batch, d) shape give the per-query values."""
    x, y, g, log_w, A = _problem(2)
    one = jax.jit(jax.vmap(lambda xi: hopf_cole(xi, y, g, T, 0.2, log_w=log_w, A=A)))
    blocked = jax.jit(lambda xs: hopf_cole(xs, y, g, T, 0.2, log_w=log_w, A=A))
    for n in (ROWS - 1, ROWS, ROWS + 1, 2 * ROWS):
        np.testing.assert_allclose(blocked(x[:n]), one(x[:n]), rtol=1e-13, atol=1e-15)
    shaped = x[: 2 * ROWS].reshape(2, ROWS, D)
    np.testing.assert_allclose(
        blocked(shaped),
        one(x[: 2 * ROWS]).reshape(2, ROWS),
        rtol=1e-13,
        atol=1e-15,
    )


def test_eps_zero_is_hopf_lax_bit_for_bit_and_ties_are_uniform():
    x, y, g, _, A = _problem(3)
    np.testing.assert_array_equal(hopf_cole(x, y, g, T, 0.0, A=A), hopf_lax(x, y, g, T, A=A))
    # Exact ties in the blocked path: two atoms symmetric about the atoms' mean (the shift
    # of the expanded cost), equal data, every query at that mean: both atoms are nearest.
    y_tie = np.array([[1.0, 0.5], [-1.0, -0.5], [3.0, 3.0], [-3.0, -3.0]])
    g_tie = np.array([0.0, 0.0, 5.0, 5.0])
    x_tie = np.zeros((B, D))
    grad = hopf_cole_grad(x_tie, y_tie, g_tie, T, 0.0)
    np.testing.assert_array_equal(grad, 0.0)  # (x − (y₀ + y₁)/2)/t
    W, b = y_tie, -g_tie
    np.testing.assert_array_equal(lse_layer_grad(x_tie, W, b, 0.0), 0.0)
    np.testing.assert_array_equal(lse_layer(x_tie, W, b, 0.0), 0.0)


def test_masked_atoms_equal_deleted_atoms_with_zero_gradients():
    x, y, g, log_w, A = _problem(4)
    keep = np.isfinite(log_w)

    def loss(y, g, log_w):
        return jnp.sum(hopf_cole(x, y, g, T, 0.4, log_w=log_w, A=A))

    np.testing.assert_allclose(
        hopf_cole(x, y, g, T, 0.4, log_w=log_w, A=A),
        hopf_cole(x, y[keep], g[keep], T, 0.4, log_w=log_w[keep], A=A),
        rtol=1e-13,
    )
    grads = jax.grad(loss, argnums=(0, 1, 2))(y, g, log_w)
    kept = jax.grad(loss, argnums=(0, 1, 2))(y[keep], g[keep], log_w[keep])
    for grad, ref in zip(grads, kept, strict=True):
        grad = np.asarray(grad)
        np.testing.assert_array_equal(grad[~keep], 0.0)
        np.testing.assert_allclose(grad[keep], ref, rtol=1e-12, atol=1e-14)


def test_reverse_mode_gradients_match_closed_forms():
    """∂Σu/∂g_j = Σ_b π_bj, ∂Σu/∂y_j = −Σ_b π_bj A⁻¹(x_b − y_j)/t, ∂u_b/∂x_b = ∇u."""
    x, y, g, log_w, A = _problem(5)
    eps = 0.3
    _, pi, A_inv = _numpy_gibbs(x, y, g, T, eps, log_w, A)

    def loss(x, y, g):
        return jnp.sum(hopf_cole(x, y, g, T, eps, log_w=log_w, A=A))

    dx, dy, dg = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(x, y, g)
    diff = x[:, None, :] - y[None]
    np.testing.assert_allclose(dg, pi.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(
        dy, -np.einsum("bn,bni->ni", pi, diff) @ A_inv / T, rtol=1e-11, atol=1e-12
    )
    np.testing.assert_allclose(dx, (x - pi @ y) @ A_inv / T, rtol=1e-11, atol=1e-12)


def test_forward_mode_eps_and_t_derivatives_match_finite_differences():
    """jvp / jax.hessian in eps and t go through the blocks (custom JVPs inside)."""
    x, y, g, log_w, A = _problem(6)
    eps, h = 0.3, 1e-4

    @jax.jit
    def total(eps, t):
        return jnp.sum(hopf_cole(x, y, g, t, eps, log_w=log_w, A=A))

    d_eps = jax.jvp(lambda e: total(e, T), (eps,), (1.0,))[1]
    fd = (total(eps + h, T) - total(eps - h, T)) / (2 * h)
    np.testing.assert_allclose(d_eps, fd, rtol=1e-7)
    d2_eps = jax.hessian(total)(eps, T)
    fd2 = (total(eps + h, T) - 2 * total(eps, T) + total(eps - h, T)) / h**2
    np.testing.assert_allclose(d2_eps, fd2, rtol=1e-4)
    d_t = jax.grad(total, argnums=1)(eps, T)
    np.testing.assert_allclose(d_t, (total(eps, T + h) - total(eps, T - h)) / (2 * h), rtol=1e-7)


def test_hessian_vector_products_through_the_blocks_match_the_closed_form():
    x, y, g, log_w, A = _problem(7)
    v = np.random.default_rng(0).standard_normal(x.shape)
    grad = jax.grad(lambda x: jnp.sum(hopf_cole(x, y, g, T, 0.4, log_w=log_w, A=A)))
    hvp = jax.jvp(grad, (jnp.asarray(x),), (jnp.asarray(v),))[1]
    hess = hopf_cole_hessian(x, y, g, T, 0.4, log_w=log_w, A=A)
    np.testing.assert_allclose(hvp, np.einsum("bij,bj->bi", hess, v), rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("eps", [0.0, 0.25])
def test_lse_layer_family_matches_brute_force(eps):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((B, 3))
    W = rng.standard_normal((N, 3))
    b = rng.standard_normal(N)
    b[2] = -np.inf
    z = x @ W.T + b
    if eps == 0:
        f_ref = z.max(axis=1)
        pi = (z == f_ref[:, None]).astype(float)
    else:
        m = z.max(axis=1, keepdims=True)
        f_ref = eps * np.log(np.exp((z - m) / eps).sum(axis=1)) + m[:, 0]
        pi = np.exp((z - m) / eps)
    pi /= pi.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(lse_layer(x, W, b, eps), f_ref, rtol=1e-13)
    np.testing.assert_allclose(lse_layer_grad(x, W, b, eps), pi @ W, rtol=1e-12, atol=1e-13)
    centred = W[None] - (pi @ W)[:, None]
    cov = np.einsum("bn,bni,bnj->bij", pi, centred, centred)
    np.testing.assert_allclose(
        lse_layer_hessian(x, W, b, eps),
        cov / eps if eps > 0 else np.zeros_like(cov),
        rtol=1e-11,
        atol=1e-12,
    )
    cot = rng.standard_normal(B)
    dW, db = lse_layer_backward(x, W, b, eps, cot)
    np.testing.assert_allclose(dW, (cot[:, None] * pi).T @ x, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(db, (cot[:, None] * pi).sum(axis=0), rtol=1e-11, atol=1e-12)


def test_float32_blocked_error_against_float64():
    """The expanded cost in float32 (module docstring of hjax._kernels): |Δu| < 1e-5."""
    for d in (2, 8):
        rng = np.random.default_rng(9)
        n = 512
        rows = _kernels.block_rows(n)
        x = rng.standard_normal((3 * rows + 5, d))
        y, g = rng.standard_normal((n, d)), rng.standard_normal(n)
        f32 = lambda a: jnp.asarray(a, jnp.float32)
        for eps in (0.0, 0.3):
            got = hopf_cole(f32(x), f32(y), f32(g), 0.7, eps)
            assert got.dtype == jnp.float32
            ref = hopf_cole(x, y, g, 0.7, eps)
            assert np.max(np.abs(np.asarray(got, np.float64) - ref)) < 1e-5
            grad = hopf_cole_grad(f32(x), f32(y), f32(g), 0.7, eps)
            np.testing.assert_allclose(grad, hopf_cole_grad(x, y, g, 0.7, eps), atol=2e-4)


def test_sweep_in_default_chunks_matches_hopf_cole_with_gradients():
    x, y, g, log_w, _ = _problem(10)
    eps = jnp.array([0.0, 0.3])
    widths = (3, N)
    u = hopf_cole_sweep(x, y, g, T, eps, widths, log_w=log_w)
    for k, n in enumerate(widths):
        for e in range(2):
            ref = hopf_cole(x, y[:n], g[:n], T, eps[e], log_w=log_w[:n])
            np.testing.assert_allclose(u[e, k], ref, rtol=1e-13, atol=1e-13)
    sweep_grad = jax.grad(
        lambda y, g: jnp.sum(hopf_cole_sweep(x, y, g, T, eps[1:], (N,), log_w=log_w)),
        argnums=(0, 1),
    )(y, g)
    _, pi, _ = _numpy_gibbs(x, y, g, T, 0.3, log_w, np.eye(D))
    np.testing.assert_allclose(sweep_grad[1], pi.sum(axis=0), rtol=1e-12, atol=1e-14)


_MEMORY_SCRIPT = """
import resource
import jax, jax.numpy as jnp, numpy as np
from hjax import hopf_cole
n, d = 16384, 8
rng = np.random.default_rng(0)
x, y = (jnp.asarray(rng.standard_normal((n, d)), jnp.float32) for _ in range(2))
g = jnp.asarray(rng.standard_normal(n), jnp.float32)
dy, dg = jax.jit(jax.grad(lambda y, g: jnp.sum(hopf_cole(x, y, g, 0.7, 0.3)), (0, 1)))(y, g)
assert bool(jnp.all(jnp.isfinite(dy))) and abs(float(jnp.sum(dg)) - n) < 1e-2 * n
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # an upper bound
"""


@pytest.mark.slow
def test_gradient_at_16384_squared_stays_within_2_gb():
    """B = N = 16384, d = 8: the unblocked gradient would hold B×N×d floats (8.6 GB)."""
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT], capture_output=True, text=True, check=True
    )
    assert int(proc.stdout.split()[-1]) < 2 * 10**9
