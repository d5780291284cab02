"""hjax.robustness: certified radii attacked, Prop E.3 / D.2 / D.3 quantities against
independent computations (autodiff, NumPy, brute force), float64 (conftest) and float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hjax

EPS_PANEL = (0.0, 0.02, 0.1, 0.5, 2.0, 10.0)


def _np_lse(z: np.ndarray, eps: float) -> np.ndarray:
    """Independent NumPy ``eps log Σ exp(z/eps)`` over the last axis (max at eps = 0)."""
    m = z.max(axis=-1)
    if eps == 0:
        return m
    return m + eps * np.log(np.exp((z - m[..., None]) / eps).sum(axis=-1))


def _layer(seed: int, n: int = 12, d: int = 3, points: int = 64):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=n), rng.normal(size=(points, d))


def _flipped(x_adv, x, W, b, eps, theta):
    before = _np_lse(x @ W.T + b, eps) - theta
    after = _np_lse(np.asarray(x_adv) @ W.T + b, eps) - theta
    return np.sign(after) != np.sign(before)


# --------------------------------------------------------------------------------------
# certified_radius
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", EPS_PANEL)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_certified_balls_survive_the_attack(seed, eps):
    """No attack inside a certified ball flips the decision; outside (×4) most do."""
    W, b, x = _layer(seed)
    theta = float(np.median(_np_lse(x @ W.T + b, eps)))  # half above, half below
    r = np.asarray(hjax.certified_radius(x, W, b, eps, theta))
    assert np.all(np.isfinite(r)) and np.all(r > 0)
    inside = hjax.attack_decision(x, W, b, eps, r * (1 - 1e-9), theta, steps=200)
    assert np.all(np.linalg.norm(np.asarray(inside) - x, axis=-1) <= r * (1 + 1e-12))
    assert not np.any(_flipped(inside, x, W, b, eps, theta))
    outside = hjax.attack_decision(x, W, b, eps, 4 * r, theta, steps=200)
    assert np.mean(_flipped(outside, x, W, b, eps, theta)) > 0.9


@pytest.mark.parametrize("eps", EPS_PANEL)
def test_radius_at_least_eq15(eps):
    """certified_radius ≥ eq. 15 (computed here in NumPy from R = max ‖W_j‖)."""
    W, b, x = _layer(3)
    f = _np_lse(x @ W.T + b, eps)
    theta = float(np.median(f))
    tau = np.abs(f - theta)
    R = np.linalg.norm(W, axis=1).max()
    eq15 = (eps / R) * (np.sqrt(1 + 2 * tau / eps) - 1) if eps > 0 else np.zeros_like(tau)
    paper = np.asarray(hjax.paper_certified_radius(x, W, b, eps, theta))
    np.testing.assert_allclose(paper, eq15, rtol=1e-12, atol=1e-15)
    if eps > 0:  # eq. 14's right side equals τ at the radius
        np.testing.assert_allclose(R * paper + R**2 * paper**2 / (2 * eps), tau, rtol=1e-12)
    r = np.asarray(hjax.certified_radius(x, W, b, eps, theta))
    assert np.all(r >= paper * (1 - 1e-12))


def test_radius_above_threshold_is_margin_over_gradient():
    """f > θ: r = τ/‖∇f(x)‖, ∇f by jax.grad of a plain-primitive layer (convexity)."""
    W, b, x = _layer(4)
    eps = 0.3
    f = _np_lse(x @ W.T + b, eps)
    theta = float(f.min()) - 0.5  # every point above
    grad = jax.vmap(jax.grad(lambda q: eps * jax.nn.logsumexp((W @ q + b) / eps)))(x)
    expected = (f - theta) / np.linalg.norm(np.asarray(grad), axis=-1)
    r = hjax.certified_radius(x, W, b, eps, theta)
    np.testing.assert_allclose(r, expected, rtol=1e-12)


def test_radius_tropical_below_threshold_is_exact():
    """eps = 0, f < θ: the radius is the distance to the nearest half-space z_j ≥ θ, and a
    step 1e-9 beyond it along that atom's W_j flips the decision."""
    W, b, x = _layer(5)
    z = x @ W.T + b
    theta = float(z.max(axis=-1).max()) + 0.7
    reach = (theta - z) / np.linalg.norm(W, axis=-1)
    expected = reach.min(axis=-1)
    r = np.asarray(hjax.certified_radius(x, W, b, 0.0, theta))
    np.testing.assert_allclose(r, expected, rtol=1e-12)
    j = reach.argmin(axis=-1)
    unit = W[j] / np.linalg.norm(W[j], axis=-1, keepdims=True)
    beyond = x + (r * (1 + 1e-9))[:, None] * unit
    assert np.all(_np_lse(beyond @ W.T + b, 0.0) > theta)


def test_radius_one_dimension_brute_force():
    """d = 1: the certified radius never exceeds the distance to the nearest root of
    f − θ, found on a fine grid (an exhaustive search of the line)."""
    rng = np.random.default_rng(6)
    W, b = rng.normal(size=(8, 1)), rng.normal(size=8)
    grid = np.linspace(-8, 8, 160001)
    for eps in EPS_PANEL:
        fg = _np_lse(grid[:, None] @ W.T + b, eps)
        theta = float(np.quantile(fg, 0.4))
        crossings = grid[np.nonzero(np.diff(np.sign(fg - theta)))[0]]
        x = rng.uniform(-3, 3, size=(40, 1))
        r = np.asarray(hjax.certified_radius(x, W, b, eps, theta))
        nearest = np.abs(x - crossings[None, :]).min(axis=-1)
        assert np.all(r <= nearest + 2 * (grid[1] - grid[0]))


def test_radius_affine_layer_is_exact():
    """N = 1 (f affine): both sides are exact, r = |f − θ|/‖w‖."""
    rng = np.random.default_rng(7)
    w, b0, x = rng.normal(size=(1, 4)), rng.normal(size=1), rng.normal(size=(16, 4))
    f = x @ w[0] + b0[0]
    for eps in (0.0, 0.7):
        r = hjax.certified_radius(x, w, b0, eps, 0.1)
        np.testing.assert_allclose(r, np.abs(f - 0.1) / np.linalg.norm(w), rtol=1e-12)


def test_radius_edge_cases():
    """On the threshold: 0; W = 0 (constant layer): +inf; a minimiser of f above θ: +inf."""
    W = np.array([[1.0], [-1.0]])
    b = np.zeros(2)
    f0 = float(hjax.lse_layer(np.zeros(1), W, b, 0.5))
    assert float(hjax.certified_radius(np.zeros(1), W, b, 0.5, f0)) == 0.0
    assert float(hjax.certified_radius(np.zeros(1), np.zeros((2, 1)), b, 0.5, 1.0)) == np.inf
    assert float(hjax.certified_radius(np.zeros(1), W, b, 0.5, f0 - 1)) == np.inf
    assert float(hjax.paper_certified_radius(np.zeros(1), W, b, 0.0, 1.0)) == 0.0


def test_radius_jit_vmap_float32_and_no_recompile():
    """eps traced (no recompile across eps), per-input thresholds, float32 agrees."""
    W, b, x = _layer(8)
    thetas = np.linspace(-1, 3, x.shape[0])

    @jax.jit
    @jax.vmap
    def radius(eps):
        return hjax.certified_radius(x, W, b, eps, thetas)

    eps = jnp.asarray([0.0, 0.1, 1.0])
    batched = np.asarray(radius(eps))
    for i, e in enumerate(eps):
        np.testing.assert_allclose(
            batched[i], hjax.certified_radius(x, W, b, float(e), thetas), rtol=1e-12
        )
    with jax.numpy_dtype_promotion("standard"):
        r32 = hjax.certified_radius(
            x.astype(np.float32),
            W.astype(np.float32),
            b.astype(np.float32),
            0.1,
            thetas.astype(np.float32),
        )
    assert r32.dtype == jnp.float32
    np.testing.assert_allclose(r32, batched[1], rtol=2e-3)
    kernel = hjax.robustness._certified_radius  # eps is an array leaf: one compilation
    hjax.certified_radius(x, W, b, 0.3, thetas)
    before = kernel._cache_size()
    for e in (0.0, 0.7, 5.0):
        hjax.certified_radius(x, W, b, e, thetas)
    assert kernel._cache_size() == before


def test_radius_errors_name_the_argument():
    W, b, x = _layer(9)
    with pytest.raises(ValueError, match="`eps`"):
        hjax.certified_radius(x, W, b, -1.0)
    with pytest.raises(ValueError, match="`threshold`"):
        hjax.certified_radius(x, W, b, 0.1, np.zeros(3))
    with pytest.raises(ValueError, match="`threshold`"):
        hjax.certified_radius(x, W, b, 0.1, np.nan)
    with pytest.raises(ValueError, match="`radius`"):
        hjax.attack_decision(x, W, b, 0.1, -1.0)
    with pytest.raises(ValueError, match="`radius`"):
        hjax.attack_decision(x, W, b, 0.1, np.ones(3))


def test_attack_finds_the_exact_flip_of_an_affine_layer():
    """N = 1: the attack reaches the threshold exactly at r = τ/‖w‖ (both directions)."""
    w, b0 = np.array([[3.0, 4.0]]), np.array([0.0])
    x = np.array([[1.0, 1.0], [-1.0, -1.0]])  # f = 7 and −7
    adv = np.asarray(hjax.attack_decision(x, w, b0, 0.2, 7 / 5, 0.0))
    np.testing.assert_allclose(adv @ w[0], [0.0, 0.0], atol=1e-12)


# --------------------------------------------------------------------------------------
# Prop E.3, D.3, D.2
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", EPS_PANEL)
def test_poisoning_shift_matches_the_augmented_layer(eps):
    """eq. 30 vs the layer with the atom appended (NumPy), and the bounds of Prop E.3(i)."""
    W, b, x = _layer(10)
    rng = np.random.default_rng(11)
    w_p, b_p = 2 * rng.normal(size=3), 0.5
    shift = np.asarray(hjax.poisoning_shift(x, W, b, eps, w_p, b_p))
    W2, b2 = np.vstack([W, w_p]), np.append(b, b_p)
    direct = _np_lse(x @ W2.T + b2, eps) - _np_lse(x @ W.T + b, eps)
    np.testing.assert_allclose(shift, direct, rtol=1e-10, atol=1e-12)
    excess = x @ w_p + b_p - _np_lse(x @ W.T + b, eps)
    assert np.all(shift >= np.maximum(excess, 0) - 1e-12)
    assert np.all(shift <= np.maximum(excess, 0) + eps * np.log(2) + 1e-12)


def test_poisoning_shift_errors():
    W, b, x = _layer(12)
    with pytest.raises(ValueError, match="`w_p`"):
        hjax.poisoning_shift(x, W, b, 0.1, np.full(3, np.nan), 0.0)
    with pytest.raises(ValueError, match="`b_p`"):
        hjax.poisoning_shift(x, W, b, 0.1, np.zeros(3), np.inf)


@pytest.mark.parametrize("weights", [False, True])
def test_ntk_equals_jacobian_gram(weights):
    """Closed-form NTK = J Jᵀ with J = jax.jacrev of the layer in (W, b) or b."""
    W, b, x = _layer(13, n=10, points=7)
    eps = 0.4

    def outputs(params):
        Wp, bp = params
        return eps * jax.nn.logsumexp((x @ Wp.T + bp) / eps, axis=-1)

    jac_W, jac_b = jax.jacrev(outputs)((jnp.asarray(W), jnp.asarray(b)))
    J = np.asarray(jac_b)
    if weights:
        J = np.concatenate([J, np.asarray(jac_W).reshape(x.shape[0], -1)], axis=1)
    K = np.asarray(hjax.lse_layer_ntk(x, W, b, eps, weights=weights))
    np.testing.assert_allclose(K, J @ J.T, rtol=1e-12, atol=1e-14)


def test_ntk_rank_prop_d3():
    """Distinct inputs, N ≥ n generic atoms: full rank; N < n: rank ≤ N."""
    rng = np.random.default_rng(14)
    x = rng.normal(size=(8, 2))
    for n_atoms, expect_full in ((16, True), (5, False)):
        W, b = rng.normal(size=(n_atoms, 2)), rng.normal(size=n_atoms)
        lam = np.linalg.eigvalsh(np.asarray(hjax.lse_layer_ntk(x, W, b, 1.0)))
        if expect_full:
            assert lam[0] > 1e-10 * lam[-1]
        else:
            assert np.sum(lam > 1e-10 * lam[-1]) <= n_atoms


@pytest.mark.parametrize("eps", [0.05, 0.5, 3.0])
def test_bias_hessian_is_autodiff_and_psd(eps):
    """∇²_b f = (diag π − ππᵀ)/eps vs jax.hessian in b; PSD; 1 in its kernel."""
    W, b, x = _layer(15, points=5)
    hess = jax.vmap(
        jax.hessian(lambda bb, q: eps * jax.nn.logsumexp((W @ q + bb) / eps)), in_axes=(None, 0)
    )(jnp.asarray(b), jnp.asarray(x))
    closed = np.asarray(hjax.lse_layer_bias_hessian(x, W, b, eps))
    scale = np.abs(np.asarray(hess)).max()
    np.testing.assert_allclose(closed, hess, rtol=0, atol=1e-12 * scale)
    assert np.linalg.eigvalsh(closed).min() >= -1e-12 * scale
    np.testing.assert_allclose(closed.sum(axis=-1), 0, atol=1e-12 * scale)
    assert np.all(np.asarray(hjax.lse_layer_bias_hessian(x, W, b, 0.0)) == 0)
