"""hjax.attribution: the attribution entropy, its closed-form derivatives, the plateau test and
the continuation of its critical points (float64; references never share the closed forms)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hjax
from tests.conftest import raises_naming


def _naive_entropy(x, W, b, eps):
    """Plain ``−Σ softmax log softmax`` for one point (autodiff reference)."""
    log_pi = jax.nn.log_softmax((W @ x + b) / eps)
    return -jnp.sum(jnp.exp(log_pi) * log_pi)


def _numpy_entropy(x, W, b, eps):
    z = x @ W.T + b
    z = (z - z.max(-1, keepdims=True)) / eps
    p = np.exp(z)
    p /= p.sum(-1, keepdims=True)
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=-1)


@pytest.fixture
def layer():
    rng = np.random.default_rng(3)
    return rng.normal(size=(9, 3)), rng.normal(size=9), rng.normal(size=(5, 4, 3))


@pytest.mark.parametrize("eps", [0.03, 0.3, 3.0])
def test_entropy_value_and_derivatives(layer, eps):
    W, b, x = layer
    H = hjax.attribution_entropy(x, W, b, eps)
    assert H.shape == (5, 4)
    np.testing.assert_allclose(H, _numpy_entropy(x, W, b, eps), rtol=1e-12, atol=1e-14)
    flat = x.reshape(-1, 3)
    grad_ad = jax.vmap(jax.grad(_naive_entropy), (0, None, None, None))(flat, W, b, eps)
    hess_ad = jax.vmap(jax.hessian(_naive_entropy), (0, None, None, None))(flat, W, b, eps)
    grad = hjax.attribution_entropy_grad(x, W, b, eps)
    hess = hjax.attribution_entropy_hessian(x, W, b, eps)
    assert grad.shape == (5, 4, 3) and hess.shape == (5, 4, 3, 3)
    scale_g, scale_h = np.abs(grad_ad).max(), np.abs(hess_ad).max()
    np.testing.assert_allclose(grad.reshape(-1, 3), grad_ad, atol=1e-12 * max(1, scale_g))
    np.testing.assert_allclose(hess.reshape(-1, 3, 3), hess_ad, atol=1e-11 * max(1, scale_h))
    np.testing.assert_allclose(hess, np.swapaxes(hess, -1, -2), atol=1e-13 * max(1, scale_h))
    # central differences of the library's own H and ∇H
    h = 1e-6
    for i in range(3):
        e = np.eye(3)[i] * h
        fd_g = (_numpy_entropy(x + e, W, b, eps) - _numpy_entropy(x - e, W, b, eps)) / (2 * h)
        np.testing.assert_allclose(grad[..., i], fd_g, atol=1e-6 * max(1, scale_g))
        fd_h = (
            hjax.attribution_entropy_grad(x + e, W, b, eps)
            - hjax.attribution_entropy_grad(x - e, W, b, eps)
        ) / (2 * h)
        np.testing.assert_allclose(hess[..., i], fd_h, atol=1e-5 * max(1, scale_h))


def test_gradient_is_covariance_with_log_pi(layer):
    """Prop F.1 eq. (38): ∇H = −Cov_π(W, log π)/eps (NumPy, from π directly)."""
    W, b, x = layer
    eps = 0.4
    z = x @ W.T + b
    p = np.exp((z - z.max(-1, keepdims=True)) / eps)
    p /= p.sum(-1, keepdims=True)
    logp = np.log(p)
    cov = np.einsum("...n,...nd->...d", p * (logp - np.sum(p * logp, -1, keepdims=True)), W)
    np.testing.assert_allclose(hjax.attribution_entropy_grad(x, W, b, eps), -cov / eps, atol=1e-12)


def test_eps_zero_ties_masks_and_finiteness():
    W = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.0, 0.0]])
    b = np.array([0.0, 0.0, 0.0, 0.0, -1.0])
    x = np.zeros(2)  # 4-fold tie of the max
    assert float(hjax.attribution_entropy(x, W, b, 0.0)) == pytest.approx(math.log(4), abs=1e-15)
    assert float(hjax.attribution_entropy(np.array([1.0, 0.0]), W, b, 0.0)) == 0.0
    assert np.all(hjax.attribution_entropy_grad(x, W, b, 0.0) == 0)
    assert np.all(hjax.attribution_entropy_hessian(x, W, b, 0.0) == 0)
    g = jax.grad(lambda e: hjax.attribution_entropy(x, W, b, e))(0.0)
    assert np.isfinite(g)
    # a masked unit contributes nothing, with finite derivatives
    masked = np.append(b[:4], -np.inf)
    for eps in (0.0, 0.2):
        assert float(hjax.attribution_entropy(x, W, masked, eps)) == pytest.approx(
            float(hjax.attribution_entropy(x, W[:4], b[:4], eps)), abs=1e-15
        )
        assert np.all(np.isfinite(hjax.attribution_entropy_hessian(x, W, masked, eps)))
    dx = jax.grad(lambda p: hjax.attribution_entropy(p, W, masked, 0.2))(np.array([0.1, 0.2]))
    assert np.all(np.isfinite(dx))


def test_limits_relative_precision():
    """eps → 0 at a unique argmax: H ≈ Σ e^{−Δ/eps}(1 + Δ/eps) to full relative precision
    (H ≈ 1e-40, where −Σπ log π in float64 returns about 1e-42·log terms only); eps → ∞:
    log N − H ≈ Var_unif(z)/(2 eps²)."""
    W = np.array([[1.0], [-1.0], [0.0]])
    b = np.array([0.0, 0.0, -0.5])
    x = np.array([1.0])  # z = (1, -1, -0.5): Δ = 2, 1.5
    eps = 1.5 / 90
    delta = np.array([2.0, 1.5])
    lead = np.sum(np.exp(-delta / eps) * (1 + delta / eps))
    H = float(hjax.attribution_entropy(x, W, b, eps))
    assert H == pytest.approx(lead, rel=1e-12)
    assert H < 1e-36
    z = np.array([1.0, -1.0, -0.5])
    big = 1e4
    deficit = math.log(3) - float(hjax.attribution_entropy(x, W, b, big))
    assert deficit * 2 * big**2 / z.var() == pytest.approx(1, rel=1e-3)


def test_monotone_in_eps(layer):
    """dH/deps = Var_π(z)/eps³ >= 0: autodiff in eps vs the variance (independent)."""
    W, b, x = layer
    flat = x.reshape(-1, 3)
    for eps in (0.05, 0.5, 5.0):
        d = jax.vmap(jax.grad(hjax.attribution_entropy, argnums=3), (0, None, None, None))(
            flat, W, b, eps
        )
        z = flat @ W.T + b
        p = np.asarray(hjax.lse_layer_gibbs(flat, W, b, eps))
        var = np.sum(p * (z - np.sum(p * z, -1, keepdims=True)) ** 2, -1)
        np.testing.assert_allclose(d, var / eps**3, rtol=1e-10, atol=1e-14)
        assert np.all(d >= 0)


def test_hopf_cole_reading():
    rng = np.random.default_rng(5)
    y, g = rng.normal(size=(6, 2)), rng.normal(size=6)
    x = rng.normal(size=(7, 2))
    A = np.array([[2.0, 0.3], [0.3, 0.5]])
    log_w = np.log(rng.uniform(0.2, 2.0, 6))
    log_w[2] = -np.inf
    t, eps = 0.7, 0.3
    H = hjax.hopf_cole_entropy(x, y, g, t, eps, log_w=log_w, A=A)
    W, b = hjax.hj_to_lse(y, g, t, A=A, log_w=log_w, eps=eps)
    np.testing.assert_allclose(H, hjax.attribution_entropy(x, W, b, eps), atol=1e-13)
    # heat-kernel weights written out in NumPy
    d = x[:, None, :] - y
    cost = np.einsum("pni,ij,pnj->pn", d, np.linalg.inv(A), d) / (2 * t)
    logits = np.where(np.isfinite(log_w), log_w - (cost + g) / eps, -np.inf)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ref = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), -1)
    np.testing.assert_allclose(H, ref, atol=1e-13)
    # ∇H = −A⁻¹ Cov_π(y, z)/(eps² t) in the Hopf–Cole reading
    grad = hjax.attribution_entropy_grad(x, W, b, eps)
    z = np.where(np.isfinite(logits), logits * eps, 0.0)
    zc = z - np.sum(p * z, -1, keepdims=True)
    yc = y[None] - (p @ y)[:, None, :]
    cov = np.einsum("pn,pn,pni->pi", p, zc, yc)
    expected = -np.einsum("ij,pj->pi", np.linalg.inv(A), cov) / (eps**2 * t)
    np.testing.assert_allclose(grad, expected, atol=1e-10)


def test_float32():
    rng = np.random.default_rng(2)
    W, b, x = (rng.normal(size=s).astype(np.float32) for s in ((6, 2), (6,), (4, 2)))
    for fn in (
        hjax.attribution_entropy,
        hjax.attribution_entropy_grad,
        hjax.attribution_entropy_hessian,
    ):
        out32 = fn(x, W, b, np.float32(0.5))
        assert out32.dtype == jnp.float32
        out64 = fn(x.astype(np.float64), W.astype(np.float64), b.astype(np.float64), 0.5)
        np.testing.assert_allclose(out32, out64, rtol=2e-4, atol=2e-5)


def test_eps_sweep_compiles_once(layer):
    W, b, x = layer

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def f(eps):
        return hjax.attribution_entropy_hessian(x, W, b, eps)

    for eps in (0.1, 0.2, 0.0, 3.0):
        f(jnp.asarray(eps))
    v = jax.vmap(lambda e: hjax.attribution_entropy(x, W, b, e))(jnp.array([0.1, 1.0]))
    assert v.shape == (2, 5, 4)


def test_bad_input(layer):
    W, b, x = layer
    with raises_naming("eps"):
        hjax.attribution_entropy(x, W, b, -0.1)
    with raises_naming("b"):
        hjax.attribution_entropy(x, W, np.full(9, -np.inf), 0.1)
    with raises_naming("x"):
        hjax.attribution_entropy(np.zeros(2), W, b, 0.1)
    with raises_naming("t"):
        hjax.hopf_cole_entropy(x, W, b, 0.0, 0.1)
    with pytest.raises(ValueError, match="eps"):
        hjax.entropy_critical_points(W, b, 0.0, x[0])
    with pytest.raises(ValueError, match="box"):
        hjax.entropy_critical_points(W, b, 0.1, x[0], box=(1.0, -1.0))
    with pytest.raises(ValueError, match="eps_range"):
        hjax.trace_entropy_branches(W, b, [], eps_range=(1.0, 0.5))


def test_plateau_test():
    """Deep in a basin |∇H| is tiny (one-hot π) but the point is no critical point; a true
    critical point (the tie of two symmetric atoms, a maximum) is accepted."""
    W = np.array([[1.0], [-1.0], [0.0]])
    b = np.array([0.0, 0.0, -3.0])
    eps = 0.05
    plateau = hjax.classify_candidate(np.array([2.5]), W, b, eps)
    assert not plateau.is_critical
    assert plateau.gradient_norm < 1e-6 and plateau.one_hot_defect < 1e-20
    assert "plateau" in plateau.reason and plateau.newton_step > 1e-3
    tie = hjax.classify_candidate(np.array([1e-9]), W, b, eps)
    assert tie.is_critical and "critical point" in tie.reason
    search = hjax.entropy_critical_points(W, b, eps, np.linspace(-3, 3, 61)[:, None])
    assert [p.kind for p in search.points] == ["maximum"]
    assert search.points[0].x == pytest.approx([0.0], abs=1e-12)
    assert search.n_plateau > 0


def _extended_newton(W, b, x0, eps0):
    """Fold of d = 1 critical points: Newton on (H', H'') = 0, naive autodiff."""

    def system(v):
        H = lambda s: _naive_entropy(jnp.stack([s]), W, b, jnp.exp(v[1]))
        return jnp.stack([jax.grad(H)(v[0]), jax.grad(jax.grad(H))(v[0])])

    v = jnp.array([x0, math.log(eps0)])
    for _ in range(30):
        v = v - jnp.linalg.solve(jax.jacfwd(system)(v), system(v))
    return float(v[0]), float(jnp.exp(v[1]))


@pytest.mark.slow
def test_continuation_locates_fold():
    W = np.array([[-1.0], [0.3], [1.0]])
    b = np.array([0.0, 0.5, 0.0])
    starts = np.linspace(-2, 2, 41)[:, None]
    seeds = list(hjax.entropy_critical_points(W, b, 0.03, starts).points)
    assert sorted(p.kind for p in seeds) == ["maximum", "maximum", "minimum"]
    branches = hjax.trace_entropy_branches(W, b, seeds, eps_range=(0.02, 3.0))
    folds = [f for br in branches for f in br.folds]
    assert len(branches) == 2 and len(folds) == 1
    f = folds[0]
    x_ref, eps_ref = _extended_newton(W, b, float(f.x[0]) + 0.02, f.eps * 1.05)
    assert f.eps == pytest.approx(eps_ref, abs=1e-10)
    assert f.x[0] == pytest.approx(x_ref, abs=1e-7)
    assert f.sign_change and f.annihilation and f.no_root_beyond
    assert sorted(f.kinds) == ["maximum", "minimum"]
    # below the fold: three critical points, above it one
    below = hjax.critical_points_at(W, b, branches, f.eps * 0.99)
    above = hjax.critical_points_at(W, b, branches, f.eps * 1.01)
    assert len(below) == 3 and len(above) == 1
    for p in below:  # each a root of the independent naive gradient
        g = jax.grad(_naive_entropy)(p.x, W, b, p.eps)
        assert float(np.abs(g).max()) < 1e-9
