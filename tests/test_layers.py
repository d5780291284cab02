"""The layer ↔ PDE dictionary (THEORY §3, Thm 4.1/4.4, Prop H.2, Cor 8.2, Prop E.6).

Every formula is checked against an independent computation: ``hopf_cole`` (quadratic costs
of the pairs x − y_j) against the affine LSE layer (W = A⁻¹y/t, b, and the quadratic shift
xᵀA⁻¹x/(2t) formed separately: the identity is the algebra of completing the square), the
metric against NumPy's ``solve``/``inv``, closed-form derivatives against autodiff, Gibbs
weights against an explicit Gaussian heat kernel in NumPy, scanned networks against a NumPy
loop.
"""

import chex
import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import raises_naming
from hypothesis import given, settings

from hjax.hopf_cole import hopf_cole
from hjax.layers import (
    DeepLSE,
    LSELayer,
    PDMetric,
    affine_pullback,
    heat_kernel_weights,
    hj_to_lse,
    lse_layer,
    lse_layer_backward,
    lse_layer_gibbs,
    lse_layer_grad,
    lse_layer_hessian,
    lse_layer_hessian_bound,
    lse_to_hj,
    quadratic_shift,
)

EPS_PANEL = (1.0, 0.1, 0.01, 0.0)


def _spd(rng, d, cond=10.0):
    """Random SPD matrix with eigenvalues in [1, cond]."""
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (Q * np.geomspace(1.0, cond, d)) @ Q.T


def _problem(seed, d, N=7, batch=9):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(N, d))
    g = rng.normal(size=N)
    x = 2 * rng.normal(size=(batch, d))
    t = float(rng.uniform(0.3, 2.0))
    return rng, y, g, x, t


def _np_lse(z, eps, axis=-1):
    m = np.max(z, axis=axis, keepdims=True)
    if eps == 0:
        return np.squeeze(m, axis)
    return np.squeeze(m, axis) + eps * np.log(np.sum(np.exp((z - m) / eps), axis=axis))


# --------------------------------------------------------------------------------------
# Thm 4.1 / 4.4: u^N_eps = xᵀA⁻¹x/(2t) − lse(Wx + b, eps)
# --------------------------------------------------------------------------------------


_identity_u = jax.jit(
    jax.vmap(lambda q, y, g, t, eps, A: hopf_cole(q, y, g, t, eps, A=A), (0,) + 5 * (None,))
)


@jax.jit
def _identity_gap(x, y, g, t, eps, A=None, log_w=None):
    """max_x |hopf_cole − (xᵀA⁻¹x/(2t) − lse_layer)| / max(1, |u|), (W, b) = hj_to_lse(y, g)."""
    W, b = hj_to_lse(y, g, t, A=A, log_w=log_w, eps=eps)
    u = jax.vmap(lambda q: hopf_cole(q, y, g, t, eps, log_w=log_w, A=A))(x)
    u_layer = quadratic_shift(x, lse_layer(x, W, b, eps), t, A=A)
    return jnp.max(jnp.abs(u - u_layer) / jnp.maximum(1.0, jnp.abs(u)))


@pytest.mark.parametrize("d", [1, 2, 5])
@pytest.mark.parametrize("metric", ["identity", "spd"])
def test_hopf_cole_equals_shifted_lse_layer(d, metric):
    rng, y, g, x, t = _problem(d, d)
    A = None if metric == "identity" else _spd(rng, d)
    for eps in EPS_PANEL:
        err = float(_identity_gap(x, y, g, t, eps, A))
        assert err <= 1e-12, (d, metric, eps, err)


def test_identity_at_large_values_is_relative():
    rng, y, g, x, t = _problem(3, 2)
    A = _spd(rng, 2)
    x = 1e4 * x
    assert np.min(np.abs(_identity_u(x, y, g, t, 0.1, A))) > 1e6
    assert float(_identity_gap(x, y, g, t, 0.1, A)) <= 1e-12  # relative: |u| > 1


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    d=st.sampled_from([1, 2, 5]),
    eps=st.sampled_from(EPS_PANEL),
    t=st.floats(0.05, 5.0),
    spd=st.booleans(),
)
def test_identity_property(seed, d, eps, t, spd):
    rng, y, g, x, _ = _problem(seed, d)
    A = _spd(rng, d) if spd else None
    assert float(_identity_gap(x, y, g, t, eps, A)) <= 1e-12


@pytest.mark.parametrize("metric", ["identity", "spd"])
def test_identity_with_weights_and_masked_atoms(metric):
    rng, y, g, x, t = _problem(11, 3)
    A = None if metric == "identity" else _spd(rng, 3)
    log_w = np.log(rng.uniform(0.1, 3.0, size=7))
    log_w[[1, 4]] = -np.inf
    for eps in (1.0, 0.1, 0.0):
        W, b = hj_to_lse(y, g, t, A=A, log_w=log_w, eps=eps)
        b = np.asarray(b)
        assert np.all(np.isneginf(b[[1, 4]])) and np.all(np.isfinite(np.delete(b, [1, 4])))
        assert float(_identity_gap(x, y, g, t, eps, A, log_w)) <= 1e-12
        # the masked atoms are really gone: the layer equals the one without them
        keep = np.isfinite(log_w)
        W_k, b_k = hj_to_lse(y[keep], g[keep], t, A=A, log_w=log_w[keep], eps=eps)
        np.testing.assert_allclose(
            lse_layer(x, W, b, eps), lse_layer(x, W_k, b_k, eps), rtol=1e-13, atol=1e-13
        )


def test_masked_bias_at_eps_zero_avoids_the_nan_trap():
    """The naive bias b + eps·log_w is 0·(−inf) = NaN at eps = 0; hj_to_lse gives −inf."""
    y = np.array([[0.0], [1.0]])
    g = np.zeros(2)
    log_w = np.array([0.0, -np.inf])
    naive = -(y[:, 0] ** 2 / 2 + g) + jnp.asarray(0.0) * log_w
    assert np.isnan(naive[1])
    _, b = hj_to_lse(y, g, 1.0, log_w=log_w, eps=0.0)
    assert b.tolist() == [0.0, -np.inf]
    # gradients through the whole chain are finite, at eps = 0 and eps > 0
    x = np.array([[0.3], [0.9]])

    def total(y, g, log_w, eps):
        W, b = hj_to_lse(y, g, 1.0, log_w=log_w, eps=eps)
        return jnp.sum(lse_layer(x, W, b, eps))

    grad = jax.jit(jax.grad(total, argnums=(0, 1, 2, 3)))
    for eps in (0.0, 0.5):
        grads = grad(y, g, log_w, jnp.asarray(eps))
        assert all(np.all(np.isfinite(gr)) for gr in grads)
        assert np.all(grads[0][1] == 0) and grads[1][1] == 0  # the masked atom is inert


def test_known_values():
    # d = 1, A = 2, t = 0.5: W = y/(A t) = y, b = −(y²/(2At) + g) = −(y²/2 + g).
    W, b = hj_to_lse(np.array([[2.0], [-1.0]]), np.array([1.0, 0.0]), 0.5, A=np.array([[2.0]]))
    np.testing.assert_allclose(W, [[2.0], [-1.0]], rtol=1e-15)
    np.testing.assert_allclose(b, [-3.0, -0.5], rtol=1e-15)
    # log-weights enter as eps·log w
    _, b_w = hj_to_lse(np.array([[0.0]]), np.array([0.0]), 1.0, log_w=np.log([2.0]), eps=0.5)
    np.testing.assert_allclose(b_w, [0.5 * np.log(2.0)], rtol=1e-15)
    # back: y = tAW, g = −b − tWᵀAW/2
    y, g = lse_to_hj(np.array([[2.0]]), np.array([-3.0]), 0.5, A=np.array([[2.0]]))
    np.testing.assert_allclose(y, [[2.0]], rtol=1e-15)
    np.testing.assert_allclose(g, [1.0], rtol=1e-15)


@pytest.mark.parametrize("metric", ["identity", "spd"])
def test_round_trip_both_ways(metric):
    rng, y, g, _, t = _problem(5, 4)
    A = None if metric == "identity" else _spd(rng, 4)
    y2, g2 = lse_to_hj(*hj_to_lse(y, g, t, A=A), t, A=A)
    assert np.max(np.abs(y2 - y)) <= 1e-13 * np.max(np.abs(y))
    assert np.max(np.abs(g2 - g)) <= 1e-13 * np.max(np.abs(g) + np.sum(y**2, -1))
    W = rng.normal(size=(6, 4))
    b = rng.normal(size=6)
    W2, b2 = hj_to_lse(*lse_to_hj(W, b, t, A=A), t, A=A)
    assert np.max(np.abs(W2 - W)) <= 1e-13 * np.max(np.abs(W))
    assert np.max(np.abs(b2 - b)) <= 1e-13 * np.max(np.abs(b) + np.sum(W**2, -1))


def test_gauge_freedom_every_t_reads_the_same_layer():
    """Two readings (t1, t2) of one (W, b) give u's differing by exactly |x|²/(2t1) − |x|²/(2t2)."""
    rng, _, _, x, _ = _problem(6, 3)
    W, b = rng.normal(size=(5, 3)), rng.normal(size=5)
    for eps in (0.3, 0.0):
        (y1, g1), (y2, g2) = lse_to_hj(W, b, 0.4), lse_to_hj(W, b, 3.0)
        f1 = np.sum(x**2, -1) / 0.8 - hopf_cole(x, y1, g1, 0.4, eps)
        f2 = np.sum(x**2, -1) / 6.0 - hopf_cole(x, y2, g2, 3.0, eps)
        np.testing.assert_allclose(f1, f2, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(f1, _np_lse(x @ W.T + b, eps), rtol=1e-12, atol=1e-12)


def test_quadratic_shift_against_numpy_solve_and_involution():
    rng, _, _, x, t = _problem(7, 3)
    A = _spd(rng, 3)
    f = rng.normal(size=x.shape[0])
    ref = np.einsum("bi,bi->b", x, np.linalg.solve(A, x.T).T) / (2 * t) - f
    u = quadratic_shift(x, f, t, A=A)
    np.testing.assert_allclose(u, ref, rtol=1e-13)
    np.testing.assert_allclose(quadratic_shift(x, u, t, A=A), f, rtol=1e-12, atol=1e-13)


# --------------------------------------------------------------------------------------
# Derivatives, affine closure, Cor 8.2
# --------------------------------------------------------------------------------------


def _naive_lse_layer(x, W, b, eps):
    """eps log Σ exp((Wx + b)/eps) from plain primitives: autodiff without any custom rule."""
    z = W @ x + b
    m = jax.lax.stop_gradient(jnp.max(z))
    return m + eps * jnp.log(jnp.sum(jnp.exp((z - m) / eps)))


_autodiff_grad = jax.jit(jax.vmap(jax.grad(_naive_lse_layer), (0, None, None, None)))
_autodiff_hess = jax.jit(jax.vmap(jax.hessian(_naive_lse_layer), (0, None, None, None)))
_library_hess = jax.jit(jax.vmap(jax.hessian(lse_layer), (0, None, None, None)))


@pytest.mark.parametrize("eps", [1.0, 0.1, 0.02])
def test_gradient_and_hessian_closed_forms_match_autodiff(eps):
    rng, _, _, x, _ = _problem(8, 3)
    W, b = rng.normal(size=(7, 3)), 0.3 * rng.normal(size=7)
    grad_ad = _autodiff_grad(x, W, b, jnp.asarray(eps))
    hess_ad = _autodiff_hess(x, W, b, jnp.asarray(eps))
    hess = lse_layer_hessian(x, W, b, eps)
    np.testing.assert_allclose(lse_layer_grad(x, W, b, eps), grad_ad, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(hess, hess_ad, rtol=1e-11, atol=1e-13 * np.max(np.abs(hess_ad)))
    np.testing.assert_allclose(
        hess,
        _library_hess(x, W, b, jnp.asarray(eps)),
        rtol=1e-11,
        atol=1e-13 * np.max(np.abs(hess_ad)),
    )
    assert np.max(np.linalg.norm(hess_ad, axis=(-2, -1))) > 0.1  # a non-trivial check
    assert lse_layer_hessian(x.reshape(3, 3, 3), W, b, eps).shape == (3, 3, 3, 3)


def test_gradient_and_hessian_at_eps_zero():
    """eps = 0: ∇f is the slope of the active affine piece, ∇²f = 0 (as autodiff gives)."""
    rng, _, _, x, _ = _problem(8, 3)
    W, b = rng.normal(size=(7, 3)), 0.3 * rng.normal(size=7)
    active = np.argmax(x @ W.T + b, -1)
    np.testing.assert_array_equal(lse_layer_grad(x, W, b, 0.0), W[active])
    np.testing.assert_array_equal(lse_layer_hessian(x, W, b, 0.0), np.zeros((9, 3, 3)))
    np.testing.assert_array_equal(_library_hess(x, W, b, jnp.asarray(0.0)), np.zeros((9, 3, 3)))


_grad_u = jax.jit(
    jax.vmap(jax.grad(lambda q, y, g, t, eps, A: hopf_cole(q, y, g, t, eps, A=A)),
             (0, None, None, None, None, None))
)  # fmt: skip


def test_grad_u_is_metric_pullback_of_mean_atom():
    """∇u = A⁻¹(x − E_π[y])/t (THEORY §3): ∇u by autodiff of hopf_cole; π the Gaussian heat
    kernel in NumPy (eps > 0) or the Hopf–Lax minimiser (eps = 0); A⁻¹ by NumPy's solve."""
    rng, y, g, x, t = _problem(9, 3)
    A = _spd(rng, 3)
    for eps in (0.5, 0.0):
        grad_u = _grad_u(x, y, g, t, jnp.asarray(eps), A)
        if eps > 0:
            pi = _np_heat_kernel_weights(x, y, g, t, eps, A)
        else:
            cost = np.einsum("bni,ij,bnj->bn", x[:, None] - y, np.linalg.inv(A), x[:, None] - y)
            pi = np.eye(len(g))[np.argmin(cost / (2 * t) + g, -1)]
        ref = np.linalg.solve(A, (x - pi @ y).T).T / t
        np.testing.assert_allclose(grad_u, ref, rtol=1e-11, atol=1e-12)


def test_hessian_bound_holds_and_is_attained_by_two_atoms():
    rng = np.random.default_rng(10)
    W, b = rng.normal(size=(7, 3)), 0.3 * rng.normal(size=7)
    diff = W[:, None] - W[None]
    D2 = np.max(np.sum(diff**2, -1))
    for eps in (2.0, 0.3, 0.05):
        bound = float(lse_layer_hessian_bound(W, eps))
        assert bound == pytest.approx(D2 / (4 * eps), rel=1e-14)
        for _ in range(3):
            hess = lse_layer_hessian(rng.normal(size=(9, 3)), W, b, eps)
            assert np.max(np.linalg.norm(hess, 2, (-2, -1))) <= bound * (1 + 1e-12)
    # two atoms at their tie: π = (½, ½), ∇²f = ΔΔᵀ/(4 eps), norm = D²/(4 eps) exactly
    W2 = np.array([[1.0, 2.0], [-1.0, 0.5]])
    x_tie = np.array([0.3, -0.4])  # b chosen so that both logits are equal at x_tie
    b2 = np.array([0.0, (W2[0] - W2[1]) @ x_tie])
    hess = lse_layer_hessian(x_tie, W2, b2, 0.7)
    assert np.linalg.norm(hess, 2) == pytest.approx(float(lse_layer_hessian_bound(W2, 0.7)), 1e-14)
    assert float(lse_layer_hessian_bound(W2, 0.0)) == np.inf


@pytest.mark.parametrize("eps", [0.3, 0.0])
def test_affine_closure(eps):
    rng = np.random.default_rng(12)
    W, b = rng.normal(size=(7, 3)), rng.normal(size=7)
    M, c = rng.normal(size=(3, 2)), rng.normal(size=3)
    x = rng.normal(size=(9, 2))
    W2, b2 = affine_pullback(W, b, M, c)
    direct = lse_layer(x @ M.T + c, W, b, eps)
    np.testing.assert_allclose(lse_layer(x, W2, b2, eps), direct, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(direct, _np_lse((x @ M.T + c) @ W.T + b, eps), rtol=1e-13)


# --------------------------------------------------------------------------------------
# Prop E.6: backprop through an LSE layer = adjoint heat semigroup at the atoms
# --------------------------------------------------------------------------------------


def _np_heat_kernel_weights(x, y, g, t, eps, A, log_w=None):
    """π_j ∝ w_j K_{eps t}(x − y_j) exp(−g_j/eps), K Gaussian with covariance eps t A."""
    d = y.shape[1]
    s = eps * t
    A_inv = np.linalg.inv(A)
    diff = x[:, None, :] - y[None]
    K = np.exp(-np.einsum("bni,ij,bnj->bn", diff, A_inv, diff) / (2 * s))
    K /= np.sqrt((2 * np.pi * s) ** d * np.linalg.det(A))
    w = np.ones(len(g)) if log_w is None else np.exp(log_w)
    p = w * K * np.exp(-g / eps)
    return p / p.sum(-1, keepdims=True)


@jax.jit
@jax.grad
def _loss_grad(params, x, eps):
    """∂L/∂(W, b) by autodiff for L = Σ ℓ(f), ℓ(f) = sin f + f²/2 (so ℓ' = cos f + f)."""
    f = lse_layer(x, *params, eps)
    return jnp.sum(jnp.sin(f) + f**2 / 2)


@pytest.mark.parametrize("eps", [1.0, 0.3, 0.0])
def test_prop_e6_backward_is_the_heat_kernel_form(eps):
    rng, _, _, x, _ = _problem(13, 3)
    W, b = 0.5 * rng.normal(size=(7, 3)), rng.normal(size=7)
    A, t = _spd(rng, 3, cond=3.0), 0.8

    dW_ad, db_ad = _loss_grad((W, b), x, jnp.asarray(eps))
    f = np.asarray(lse_layer(x, W, b, eps))
    dW, db = lse_layer_backward(x, W, b, eps, np.cos(f) + f)
    np.testing.assert_allclose(db, db_ad, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dW, dW_ad, rtol=1e-12, atol=1e-14)

    # π from the HJ data (y, g, t) — not from (W, b)
    y, g = lse_to_hj(W, b, t, A=A)
    pi_heat = heat_kernel_weights(x, y, g, t, eps, A=A)
    np.testing.assert_allclose(pi_heat, lse_layer_gibbs(x, W, b, eps), rtol=1e-12, atol=1e-14)
    if eps > 0:
        ref = _np_heat_kernel_weights(x, np.asarray(y), np.asarray(g), t, eps, A)
    else:  # Hopf–Lax: the minimiser of c_t(x, y_j) + g_j
        cost = np.einsum("bni,ij,bnj->bn", x[:, None] - y, np.linalg.inv(A), x[:, None] - y)
        ref = np.eye(7)[np.argmin(cost / (2 * t) + g, -1)]
    np.testing.assert_allclose(pi_heat, ref, rtol=1e-11, atol=1e-14)
    # ∂L/∂b_j = Σ ℓ'(f) π_j(x): the adjoint heat semigroup applied at the support points
    np.testing.assert_allclose(db_ad, (np.cos(f) + f) @ ref, rtol=1e-11, atol=1e-13)


def test_heat_kernel_weights_with_log_weights_and_as_dudg():
    rng, y, g, x, t = _problem(14, 3)
    A = _spd(rng, 3, cond=2.0)
    log_w = np.log(rng.uniform(0.2, 2.0, size=7))
    pi = heat_kernel_weights(x, y, g, t, 0.7, log_w=log_w, A=A)
    ref = _np_heat_kernel_weights(x, y, g, t, 0.7, A, log_w)
    np.testing.assert_allclose(pi, ref, rtol=1e-12)
    # π_j = ∂u/∂g_j of the Hopf–Cole solution (autodiff)
    dudg = jax.jit(
        jax.vmap(jax.grad(lambda q, g: hopf_cole(q, y, g, t, 0.7, log_w=log_w, A=A), 1), (0, None))
    )
    np.testing.assert_allclose(pi, dudg(x, g), rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------


def test_lse_layer_module_hj_reading():
    rng, y, g, x, t = _problem(15, 3)
    A = _spd(rng, 3, cond=4.0)
    layer = LSELayer.from_hj(y, g, t, A=A)
    np.testing.assert_allclose(layer.A, A, rtol=1e-13, atol=1e-14)
    y2, g2 = layer.hj_reading(t)
    np.testing.assert_allclose(y2, y, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(g2, g, rtol=1e-12, atol=1e-13)
    for eps in (0.4, 0.0):
        u = layer.hj_value(x, t, eps)
        np.testing.assert_allclose(u, hopf_cole(x, y, g, t, eps, A=A), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(
            layer.gibbs(x, eps), heat_kernel_weights(x, y, g, t, eps, A=A),
            rtol=1e-11, atol=1e-14,
        )  # fmt: skip
    plain = LSELayer.random(jax.random.key(1), 3, 7)
    assert plain.A is None
    np.testing.assert_allclose(plain.hj_reading(2.0)[0], 2.0 * plain.W, rtol=1e-15)


def test_pd_metric_stays_pd_under_large_gradient_steps():
    """A = LLᵀ + δI stays PD while Adam drives it toward a singular target with huge gradients."""
    d, delta = 3, 1e-3
    layer = LSELayer.random(jax.random.key(2), d, 7, metric=True)
    v = np.array([1.0, 2.0, -1.0])
    target = np.outer(v, v)  # rank one: the loss pulls A toward singularity
    x = np.random.default_rng(16).normal(size=(9, d))

    def loss(layer):
        y, _ = layer.hj_reading(1.0)
        u = layer.hj_value(x, 1.0, 0.1)
        return 1e6 * jnp.sum((layer.A - target) ** 2) + 1e4 * jnp.sum(u**2) + jnp.sum(y**2)

    opt = optax.adam(0.3)
    params, static = eqx.partition(layer, eqx.is_inexact_array)

    @jax.jit
    def train(params):
        def step(carry, _):
            params, state = carry
            grads = jax.grad(lambda p: loss(eqx.combine(p, static)))(params)
            updates, state = opt.update(grads, state, params)
            params = optax.apply_updates(params, updates)
            A = eqx.combine(params, static).A
            gnorm = optax.tree.norm(grads)
            return (params, state), (jnp.linalg.eigvalsh(A)[0], gnorm)

        return jax.lax.scan(step, (params, opt.init(params)), None, length=400)

    with jax.numpy_dtype_promotion("standard"):  # optax.adam's bias correction mixes int/float
        (params, _), (min_eigs, gnorms) = train(params)
    trained = eqx.combine(params, static)
    assert np.max(gnorms) > 1e5  # the gradients really were large
    assert np.all(np.isfinite(min_eigs)) and np.min(min_eigs) >= delta * (1 - 1e-6)
    np.linalg.cholesky(np.asarray(trained.A))
    err0 = np.linalg.norm(np.asarray(layer.A) - target)
    assert np.linalg.norm(np.asarray(trained.A) - target) < 0.05 * err0  # A was learned
    # arbitrary (huge) raw parameters still give λ_min ≥ δ
    raw = 1e3 * np.random.default_rng(17).normal(size=(d, d))
    A_big = np.asarray(PDMetric(jnp.asarray(raw), delta).matrix())
    assert np.min(np.linalg.eigvalsh(A_big)) >= delta * (1 - 1e-6)


def _np_deep(net, x, eps):
    """NumPy forward of DeepLSE, an explicit loop over layers and units."""
    net = jax.tree.map(np.asarray, net)
    h = _np_lse(np.einsum("mnd,d->mn", net.first.W, x) + net.first.b, eps)
    for W, b in zip(net.hidden.W, net.hidden.b, strict=True):
        h = np.array([_np_lse(W[k] @ h + b[k], eps) for k in range(W.shape[0])])
    return _np_lse(net.readout.W @ h + net.readout.b, eps)


# Building modules inside jit compiles their random init once (eager init is slow).
_build = eqx.filter_jit(lambda cls, *args, **kwargs: cls(*args, **kwargs))


def test_deep_lse_scan_equals_python_loop_and_compiles_once():
    net = _build(DeepLSE, 3, width=4, depth=3, atoms=5, key=jax.random.key(3))
    assert net.hidden.W.shape == (3, 4, 5, 4)
    x = np.random.default_rng(18).normal(size=3)

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def forward(net, x, eps):
        return net(x, eps)

    for eps in (0.5, 0.05, 0.0):
        out = forward(net, x, jnp.asarray(eps))
        assert abs(float(out) - _np_deep(net, x, eps)) <= 1e-12 * max(1.0, abs(float(out)))
    # a vmapped eps sweep gives the same numbers
    eps_grid = jnp.array([0.5, 0.05, 0.0])
    sweep = eqx.filter_jit(jax.vmap(net, in_axes=(None, 0)))(x, eps_grid)
    np.testing.assert_allclose(sweep, [_np_deep(net, x, float(e)) for e in eps_grid], rtol=1e-12)
    shallow = _build(DeepLSE, 3, width=4, depth=0, atoms=5, key=jax.random.key(3))
    assert shallow.hidden.W.shape == (0, 4, 5, 4)
    value = eqx.filter_jit(shallow)(x, jnp.asarray(0.2))
    assert abs(float(value) - _np_deep(shallow, x, 0.2)) <= 1e-12


def test_lse_layer_eps_sweep_compiles_once():
    rng, _, _, x, _ = _problem(19, 3)
    W, b = rng.normal(size=(7, 3)), rng.normal(size=7)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def f(eps):
        return lse_layer(x, W, b, eps)

    for eps in EPS_PANEL:
        np.testing.assert_allclose(f(jnp.asarray(eps)), _np_lse(x @ W.T + b, eps), rtol=1e-13)


@jax.jit
def _float32_panel(x, y, g, t, A):
    W, b = hj_to_lse(y, g, t, A=A)
    f = lse_layer(x, W, b, 0.1)
    return {
        "W": W,
        "b": b,
        "f": f,
        "u": quadratic_shift(x, f, t, A=A),
        "y": lse_to_hj(W, b, t, A=A)[0],
        "hess": lse_layer_hessian(x, W, b, 0.1),
        "pi": heat_kernel_weights(x, y, g, t, 0.1, A=A),
    }


def test_float32_dtype_follows_input():
    rng, y, g, x, t = _problem(21, 3)
    A = _spd(rng, 3, cond=3.0)
    out = _float32_panel(*(a.astype(np.float32) for a in (x, y, g)), t, A.astype(np.float32))
    ref = _float32_panel(x, y, g, t, A)  # the same panel in float64
    for name, value in out.items():
        assert value.dtype == jnp.float32, name
        scale = max(1.0, float(np.max(np.abs(ref[name]))))
        np.testing.assert_allclose(value, ref[name], rtol=0, atol=2e-5 * scale, err_msg=name)
    np.testing.assert_allclose(out["u"], _identity_u(x, y, g, t, 0.1, A), rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(out["y"], y, rtol=1e-5, atol=1e-5)
    net = _build(DeepLSE, 3, width=3, depth=1, atoms=4, key=jax.random.key(5), dtype=jnp.float32)
    assert eqx.filter_jit(net)(x[0].astype(np.float32), 0.1).dtype == jnp.float32


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


def test_bad_input_is_rejected_with_the_argument_named():
    y, g = np.zeros((3, 2)), np.zeros(3)
    W, b = np.ones((3, 2)), np.zeros(3)
    with raises_naming("W"):
        lse_layer(np.zeros((4, 3)), W, b, 0.1)
    with raises_naming("b"):
        lse_layer(np.zeros(2), W, np.zeros(4), 0.1)
    with raises_naming("eps"):
        lse_layer(np.zeros(2), W, b, -0.1)
    with raises_naming("eps"):
        hj_to_lse(y, g, 1.0, log_w=np.zeros(3))
    with raises_naming("eps"):
        hj_to_lse(y, g, 1.0, log_w=np.zeros(3), eps=-1.0)
    with raises_naming("t"):
        hj_to_lse(y, g, 0.0)
    with raises_naming("t"):
        lse_to_hj(W, b, -1.0)
    with raises_naming("t"):
        quadratic_shift(np.zeros(2), np.zeros(()), 0.0)
    with raises_naming("A"):
        hj_to_lse(y, g, 1.0, A=np.array([[1.0, 2.0], [2.0, 1.0]]))
    with raises_naming("A"):
        lse_to_hj(W, b, 1.0, A=-np.eye(2))
    with raises_naming("A"):
        quadratic_shift(np.zeros(2), np.zeros(()), 1.0, A=np.array([[1.0, 1.0], [0.0, 1.0]]))
    with raises_naming("A"):
        PDMetric.from_matrix(1e-4 * np.eye(2))
    with raises_naming("g"):
        hj_to_lse(y, np.zeros(4), 1.0)
    with raises_naming("cotangent"):
        lse_layer_backward(np.zeros((5, 2)), W, b, 0.1, np.zeros(4))
    with raises_naming("M"):
        affine_pullback(W, b, np.zeros((3, 2)), np.zeros(2))
    with raises_naming("y"):
        heat_kernel_weights(np.zeros(3), y, g, 1.0, 0.1)
    with raises_naming("log_w"):  # every atom masked: no Gibbs weights
        heat_kernel_weights(np.zeros(2), y, g, 1.0, 0.1, log_w=np.full(3, -np.inf))
    with raises_naming("width"):
        DeepLSE(2, width=0, depth=1, atoms=3, key=jax.random.key(0))
    with raises_naming("depth"):
        DeepLSE(2, width=2, depth=-1, atoms=3, key=jax.random.key(0))
    with raises_naming("readout_atoms"):
        DeepLSE(2, width=2, depth=1, atoms=3, key=jax.random.key(0), readout_atoms=0)
    # traced eps < 0 is caught at run time, inside jit
    with pytest.raises(Exception, match="`eps`"):
        jax.jit(lambda e: lse_layer(np.zeros(2), W, b, e))(jnp.asarray(-1.0))
