"""The heat semigroup (THEORY §2–§4): Hopf–Cole / Hopf–Lax against the PDE itself.

References that share no formula with the library: autodiff of the PDE residual,
finite-difference solvers (``_pde_solvers``), closed forms (``erfc``, Moreau envelope),
brute-force NumPy, Monte Carlo.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _pde_solvers import (
    hopf_cole_abs,
    lax_friedrichs_hj,
    mol_viscous_hj,
    moreau_abs,
)
from conftest import raises_naming
from hypothesis import given, settings
from hypothesis import strategies as st

from hjax.feynman_kac import feynman_kac
from hjax.hopf_cole import (
    heat_normalization,
    hopf_cole,
    hopf_cole_grad,
    hopf_cole_hessian,
    hopf_lax,
    transport_cost,
)
from hjax.measures import grid_measure, nested_measure

# Jitted once per shape (eager dispatch would compile every primitive separately).
_hc = jax.jit(hopf_cole, static_argnames="normalized")
_hl = jax.jit(hopf_lax)
_grad = jax.jit(hopf_cole_grad)
_hess = jax.jit(hopf_cole_hessian)
_fk = jax.jit(feynman_kac, static_argnames=("g_fn", "n_samples"))


@jax.jit
def _grads_all(x, y, g, t, eps, log_w, A):
    """Gradients of Σ u w.r.t. (x, y, g, t, eps, log_w)."""
    u = lambda x, y, g, t, eps, log_w: hopf_cole(x, y, g, t, eps, log_w=log_w, A=A).sum()
    return jax.grad(u, argnums=(0, 1, 2, 3, 4, 5))(x, y, g, t, eps, log_w)


def _problem(seed: int, d: int = 2, n: int = 6, batch: tuple[int, ...] = (4,)):
    """Random atoms, data, log-weights, query points and an anisotropic SPD metric."""
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, d))
    g = rng.standard_normal(n)
    log_w = rng.standard_normal(n)
    x = 0.8 * rng.standard_normal((*batch, d))
    m = rng.standard_normal((d, d))
    A = m @ m.T / d + 0.5 * np.eye(d)
    return x, y, g, log_w, A


def _smooth_g(p):
    """Smooth Lipschitz datum at one point ``p`` ``(d,)``."""
    return jnp.sqrt(1.0 + jnp.sum(p**2)) + 0.3 * p[0]


def _abs_g(p):
    """``g(y) = |y₁|`` at one point."""
    return jnp.abs(p[0])


# -- the PDE, by autodiff ------------------------------------------------------------


def _residual(u_fn, x, t, eps, A):
    """u_t + ½∇uᵀA∇u − (eps/2) tr(A∇²u): jax.grad in t, jax.grad / jax.hessian in x."""
    u_t = jax.grad(u_fn, argnums=1)(x, t)
    u_x = jax.grad(u_fn, argnums=0)(x, t)
    u_xx = jax.hessian(u_fn, argnums=0)(x, t)
    A = jnp.eye(x.shape[-1]) if A is None else A
    return u_t + 0.5 * u_x @ A @ u_x - 0.5 * eps * jnp.trace(A @ u_xx)


@jax.jit
def _residuals(x, y, g, log_w, A, t, eps):
    def one(xi):
        norm = lambda x_, t_: hopf_cole(x_, y, g, t_, eps, log_w=log_w, A=A, normalized=True)
        raw = lambda x_, t_: hopf_cole(x_, y, g, t_, eps, log_w=log_w, A=A)
        return _residual(norm, xi, t, eps, A), _residual(raw, xi, t, eps, A)

    return jax.vmap(one)(x)


@pytest.mark.parametrize(("d", "metric"), [(1, False), (2, True), (5, True)])
def test_pde_residual_normalized_zero_unnormalized_constant(d, metric):
    """Normalized: residual 0; counting measure: −eps d/(2t) exactly (THEORY §2)."""
    x, y, g, log_w, A = _problem(d, d)
    A = A if metric else None
    for eps, t in ((0.3, 0.7), (0.05, 1.3), (2.0, 0.2)):
        res, res_raw = _residuals(x, y, g, log_w, A, t, eps)
        assert np.max(np.abs(np.asarray(res))) <= 1e-10
        np.testing.assert_allclose(np.asarray(res_raw), -eps * d / (2 * t), rtol=0, atol=1e-10)


# -- closed-form derivatives -----------------------------------------------------------


@jax.jit
def _autodiff_derivatives(x, y, g, log_w, A, t, eps):
    u = lambda xi: hopf_cole(xi, y, g, t, eps, log_w=log_w, A=A)
    flat = x.reshape(-1, x.shape[-1])
    grad = jax.vmap(jax.grad(u))(flat).reshape(x.shape)
    hess = jax.vmap(jax.hessian(u))(flat).reshape(*x.shape, x.shape[-1])
    return grad, hess


@pytest.mark.parametrize(("d", "metric", "batch"), [(2, True, (4,)), (3, False, (2, 3))])
def test_closed_form_gradient_and_hessian_match_autodiff(d, metric, batch):
    x, y, g, log_w, A = _problem(10 + d, d, batch=batch)
    A = A if metric else None
    for eps in (0.05, 0.4, 3.0):
        t = 0.9
        auto_g, auto_h = _autodiff_derivatives(x, y, g, log_w, A, t, eps)
        closed_g = _grad(x, y, g, t, eps, log_w=log_w, A=A)
        closed_h = _hess(x, y, g, t, eps, log_w=log_w, A=A)
        assert closed_g.shape == (*batch, d) and closed_h.shape == (*batch, d, d)
        np.testing.assert_allclose(np.asarray(closed_g), np.asarray(auto_g), atol=1e-12)
        np.testing.assert_allclose(np.asarray(closed_h), np.asarray(auto_h), atol=1e-10)


def test_closed_form_gradient_matches_finite_differences():
    x, y, g, log_w, A = _problem(20)
    t, eps, h = 0.9, 0.4, 1e-6
    for i in range(2):
        step = h * np.eye(2)[i]
        fd = (
            np.asarray(_hc(x + step, y, g, t, eps, log_w=log_w, A=A, normalized=True))
            - np.asarray(_hc(x - step, y, g, t, eps, log_w=log_w, A=A, normalized=True))
        ) / (2 * h)
        closed = np.asarray(_grad(x, y, g, t, eps, log_w=log_w, A=A))[:, i]
        np.testing.assert_allclose(closed, fd, atol=1e-8)


def test_closed_form_derivatives_at_eps_zero_are_the_active_quadratic_piece():
    """eps = 0: ∇u = A⁻¹(x − y*)/t with y* the brute-force Hopf–Lax minimiser, ∇²u = A⁻¹/t."""
    x, y, g, log_w, A = _problem(30)
    t = 0.8
    A_inv = np.linalg.inv(A)
    grad = np.asarray(_grad(x, y, g, t, 0.0, log_w=log_w, A=A))
    hess = np.asarray(_hess(x, y, g, t, 0.0, log_w=log_w, A=A))
    hl_grad = np.asarray(jax.vmap(jax.grad(lambda xi: hopf_lax(xi, y, g, t, A=A)))(x))
    for i, xi in enumerate(x):
        costs = [(xi - yj) @ A_inv @ (xi - yj) / (2 * t) + gj for yj, gj in zip(y, g, strict=True)]
        star = y[int(np.argmin(costs))]
        np.testing.assert_allclose(grad[i], A_inv @ (xi - star) / t, rtol=1e-13)
        np.testing.assert_allclose(hl_grad[i], grad[i], rtol=1e-13)
        np.testing.assert_allclose(hess[i], A_inv / t, rtol=1e-14)
    # On a tie (x equidistant from two atoms with equal g) the gradient is their average.
    y2 = np.array([[-1.0, 0.0], [1.0, 0.0]])
    tie = _grad(np.zeros((1, 2)), y2, np.zeros(2), 1.0, 0.0)
    np.testing.assert_array_equal(np.asarray(tie), [[0.0, 0.0]])


_dgrad_deps = jax.jit(
    jax.jacfwd(
        lambda x, y, g, t, eps, log_w, A: hopf_cole_grad(x, y, g, t, eps, log_w=log_w, A=A),
        argnums=4,
    )
)


def _tie_problem():
    """x = 0 equidistant from atoms 0 and 1 (equal g): a tie, plus a third, farther atom."""
    y = np.array([[-1.0, 0.0], [1.0, 0.0], [0.3, 1.5], [2.0, -2.0]])
    return np.zeros((1, 2)), y, np.array([0.0, 0.0, -0.2, 0.5]), None, None


@pytest.mark.parametrize("case", ["weighted_metric", "masked", "tied"])
@pytest.mark.parametrize("eps", [0.05, 0.3, 1.0, 3.0])
def test_gradient_eps_derivative(case, eps):
    """∂∇u/∂eps = A⁻¹ Cov_π(y, z)/(eps² t), z_j = −(c_t(x, y_j) + g_j) (differentiate
    ∇u = A⁻¹(x − E_π y)/t with ∂π_j/∂eps = −π_j (z_j − E_π z)/eps²): jax.jacfwd over eps
    against NumPy (explicit A⁻¹) and central differences (h = 1e-5·eps; error budget as in
    test_semiring's eps-derivative tests: ≲ 2e-8 relative, tolerance 1e-7)."""
    if case == "tied":
        x, y, g, log_w, A = _tie_problem()
    else:
        x, y, g, log_w, A = _problem(40)
        if case == "masked":
            log_w, A = np.where(np.arange(len(g)) % 3 == 1, -np.inf, 0.0), None
    t = 0.7
    got = np.asarray(_dgrad_deps(x, y, g, t, eps, log_w, A))
    A_inv = np.eye(2) if A is None else np.linalg.inv(A)
    lw = np.zeros(len(g)) if log_w is None else log_w
    for i, xi in enumerate(x):
        diff = xi - y
        z = -(np.einsum("ni,ij,nj->n", diff, A_inv, diff) / (2 * t) + g)
        active = np.isfinite(lw)
        s = np.where(active, z / eps + np.where(active, lw, 0.0), -np.inf)
        pi = np.exp(s - s.max())
        pi /= pi.sum()
        centred = np.where(active, z - np.sum(pi[active] * z[active]), 0.0)
        cov = (pi * centred) @ y  # Cov_π(y, z) = Σ_j π_j (z_j − E_π z) y_j
        # rounding: δ·max|z|·|y|/(eps² t) from centring z (the kernel shifts by max z)
        np.testing.assert_allclose(
            got[i], A_inv @ cov / (eps**2 * t), rtol=1e-11, atol=1e-13 / eps**2
        )
    h = 1e-5 * eps
    up, down = (np.asarray(_grad(x, y, g, t, eps + s * h, log_w=log_w, A=A)) for s in (1, -1))
    fd = (up - down) / (2 * h)
    assert np.max(np.abs(got - fd)) <= 1e-7 * np.max(np.abs(fd))


# -- eps = 0 and the Hopf–Lax bound ------------------------------------------------------


@pytest.mark.parametrize("metric", [True, False])
def test_eps_zero_equals_hopf_lax_bit_for_bit_with_finite_gradients(metric):
    x, y, g, log_w, A = _problem(40)
    A = A if metric else None
    np.testing.assert_array_equal(
        np.asarray(_hc(x, y, g, 0.7, 0.0, A=A)), np.asarray(_hl(x, y, g, 0.7, A=A))
    )
    # normalized=True adds nothing at eps = 0
    np.testing.assert_array_equal(
        np.asarray(_hc(x, y, g, 0.7, 0.0, A=A, normalized=True)),
        np.asarray(_hl(x, y, g, 0.7, A=A)),
    )
    # Gradients of Σ_x u at eps = 0 against the brute-force Hopf–Lax minimiser j*(x):
    # ∂x = A⁻¹(x − y*)/t, ∂y_j* = −A⁻¹(x − y*)/t, ∂g = counts of j*, ∂t = −Σ c_t(x, y*)/t,
    # ∂eps = −Σ log w_j* (the tilt eps·log w; the argmax entropy is 0), ∂log_w = −eps π = 0.
    t = 0.7
    A_inv = np.eye(2) if A is None else np.linalg.inv(A)
    diff = x[:, None, :] - y[None]  # (B, N, d)
    cost = np.einsum("bni,ij,bnj->bn", diff, A_inv, diff) / (2 * t)
    star = np.argmin(cost + g, axis=1)
    slope = diff[np.arange(len(x)), star] @ A_inv / t  # A⁻¹(x − y*)/t, (B, d)
    dy = np.zeros_like(y)
    np.add.at(dy, star, -slope)
    expected = (
        slope,
        dy,
        np.bincount(star, minlength=len(g)).astype(float),
        -np.sum(cost[np.arange(len(x)), star]) / t,
        -np.sum(log_w[star]),
        np.zeros_like(log_w),
    )
    grads = _grads_all(x, y, g, t, 0.0, log_w, A)
    for name, got, want in zip(("x", "y", "g", "t", "eps", "log_w"), grads, expected, strict=True):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-13, atol=1e-15, err_msg=name)


_N_BOUND = 6
_bound_problem = _problem(50, n=_N_BOUND)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    eps=st.floats(0.0, 5.0),
    t=st.floats(0.05, 3.0),
)
def test_hopf_lax_bound(seed, eps, t):
    """u^N_0 − eps log N ≤ u^N_eps ≤ u^N_0 for the counting measure (Thm 5.1)."""
    rng = np.random.default_rng(seed)
    x, y, _, _, _ = _bound_problem
    g = 3 * rng.standard_normal(_N_BOUND)
    x = x + rng.standard_normal(x.shape)
    u_eps = np.asarray(_hc(x, y, g, t, eps))
    u_0 = np.asarray(_hl(x, y, g, t))
    slack = 1e-12 * (1 + np.abs(u_0))
    assert np.all(u_0 - eps * math.log(_N_BOUND) - slack <= u_eps)
    assert np.all(u_eps <= u_0 + slack)


# -- masked atoms ---------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.4])
def test_masked_atoms_equal_deleted_atoms_with_finite_gradients(eps):
    x, y, g, log_w, A = _problem(60)
    masked = log_w.copy()
    masked[[1, 4]] = -np.inf
    g = g.copy()
    g[[1, 4]] = -10.0  # the masked atoms would otherwise win
    keep = np.isfinite(masked)
    for fn in (_hc, _grad, _hess):
        kwargs = {"normalized": True} if fn is _hc else {}
        np.testing.assert_allclose(
            np.asarray(fn(x, y, g, 0.6, eps, log_w=masked, A=A, **kwargs)),
            np.asarray(fn(x, y[keep], g[keep], 0.6, eps, log_w=log_w[keep], A=A, **kwargs)),
            rtol=1e-13,
            atol=1e-14,
        )
    # Gradients: those of the problem with the masked atoms deleted, and exactly 0 for the
    # masked atoms' y, g, log_w (no 0·inf NaN from the −inf log-weights).
    grads = _grads_all(x, y, g, 0.6, eps, masked, A)
    kept = _grads_all(x, y[keep], g[keep], 0.6, eps, log_w[keep], A)
    for i, (grad, ref) in enumerate(zip(grads, kept, strict=True)):
        grad = np.asarray(grad)
        if i in (1, 2, 5):  # per-atom: y, g, log_w
            np.testing.assert_array_equal(grad[~keep], 0.0)
            grad = grad[keep]
        np.testing.assert_allclose(grad, np.asarray(ref), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("eps", [0.0, 0.4])
def test_every_atom_masked(eps):
    """The zero measure: u = −eps log 0 = +inf; its Gibbs weights, ∇u and ∇²u do not exist,
    so the closed forms refuse it (eagerly, or at run time under jit) instead of returning
    x/t-like numbers."""
    x, y, g, _, A = _problem(61)
    none = np.full(len(g), -np.inf)
    assert np.all(np.asarray(_hc(x, y, g, 0.6, eps, log_w=none, A=A)) == np.inf)
    for fn in (hopf_cole_grad, hopf_cole_hessian):
        with raises_naming("log_w"):
            fn(x, y, g, 0.6, eps, log_w=none, A=A)
    with pytest.raises((RuntimeError, ValueError), match="`log_w` masks every atom"):
        jax.block_until_ready(_grad(x, y, g, 0.6, eps, log_w=none, A=A))


# -- independent PDE solvers ------------------------------------------------------------------


def _slope(h, err):
    return float(np.polyfit(np.log(h), np.log(err), 1)[0])


def test_lax_friedrichs_is_exact_on_affine_data():
    """Reference-solver sanity: g = a·y gives u = a·x − t a²/2 exactly."""
    x, u = lax_friedrichs_hj(lambda y: 0.7 * y, -2.0, 2.0, 40, 1.5)
    np.testing.assert_allclose(u, 0.7 * x - 1.5 * 0.49 / 2, atol=1e-13)


def test_lax_friedrichs_converges_to_hopf_lax_at_first_order():
    """Smooth data that form a shock (g = −cos(πy)/π, t = 1): LxF → hopf_lax at O(Δx)."""
    g = lambda y: -np.cos(np.pi * y) / np.pi
    atoms = np.linspace(-4.0, 4.0, 8001)[:, None]  # fine atom set for the continuous g
    errors, hs = [], []
    for n in (60, 120, 240, 480):
        x, u = lax_friedrichs_hj(g, -3.0, 3.0, n, 1.0)
        inner = np.abs(x) <= 1.0 + 1e-12
        ref = np.asarray(_hl(x[inner][:, None], atoms, g(atoms[:, 0]), 1.0))
        errors.append(np.max(np.abs(u[inner] - ref)))
        hs.append(6.0 / n)
    assert 0.85 <= _slope(hs, errors) <= 1.15
    assert errors[-1] <= hs[-1]


def test_lax_friedrichs_matches_closed_form_moreau_envelope_of_abs():
    """g = |y|: hopf_lax on atoms equals the Huber closed form; LxF → it at O(Δx log 1/Δx).

    The initial convex kink opens a rarefaction fan, where monotone schemes lose a log.
    """
    atoms = np.linspace(-4.0, 4.0, 801)[:, None]  # spacing 0.01: contains every minimiser
    x_aligned = np.linspace(-2.0, 2.0, 401)[:, None]
    np.testing.assert_allclose(
        np.asarray(_hl(x_aligned, atoms, np.abs(atoms[:, 0]), 1.0)),
        moreau_abs(x_aligned[:, 0], 1.0),
        atol=1e-14,
    )
    errors, hs = [], []
    for n in (60, 120, 240, 480, 960):
        x, u = lax_friedrichs_hj(np.abs, -3.0, 3.0, n, 1.0)
        inner = np.abs(x) <= 1.0 + 1e-12
        errors.append(np.max(np.abs(u[inner] - moreau_abs(x[inner], 1.0))))
        hs.append(6.0 / n)
    hs = np.array(hs)
    assert 0.85 <= _slope(hs * np.log(1 / hs), errors) <= 1.15


def test_method_of_lines_matches_hopf_cole_with_quadrature():
    """u_t + ½u_x² = (eps/2)u_xx by MOL (diffrax) vs normalized hopf_cole on a grid measure.

    g = √(1+y²) + 0.3y (smooth, Lipschitz); errors fall at the scheme's second order.
    """
    t, eps = 1.0, 0.5
    g = lambda y: (1.0 + y**2) ** 0.5 + 0.3 * y
    atoms, log_w = grid_measure(-12.0, 12.0, 4800, 1)
    g_atoms = g(np.asarray(atoms[:, 0]))
    errors, hs = [], []
    for n in (80, 160):
        x, u = (np.asarray(a) for a in mol_viscous_hj(g, -8.0, 8.0, n, t, eps))
        inner = np.abs(x) <= 2.0 + 1e-12
        ref = _hc(x[inner][:, None], atoms, g_atoms, t, eps, log_w=log_w, normalized=True)
        errors.append(np.max(np.abs(u[inner] - np.asarray(ref))))
        hs.append(16.0 / n)
    assert 1.8 <= _slope(hs, errors) <= 2.2
    assert errors[-1] <= 0.2 * hs[-1] ** 2


# -- quadrature and Monte Carlo ---------------------------------------------------------------


def test_grid_quadrature_converges_to_the_closed_form_for_abs():
    """g = |y|, continuous-data solution by erfc; midpoint grids: error O(h²) (Claim (iii))."""
    t, eps = 1.0, 0.5
    x = np.linspace(-1.5, 1.5, 7)[:, None]
    exact = hopf_cole_abs(x[:, 0], t, eps)
    ns = [60, 120, 240, 480]
    errors = []
    for n in ns:
        atoms, log_w = grid_measure(-12.0, 12.0, n, 1)
        u = _hc(x, atoms, np.abs(np.asarray(atoms[:, 0])), t, eps, log_w=log_w, normalized=True)
        errors.append(np.max(np.abs(np.asarray(u) - exact)))
    assert -2.2 <= _slope(ns, errors) <= -1.8
    assert errors[-1] < 1e-3


def test_quadrature_converges_in_two_dimensions_grid_and_nested():
    """g = |y₁| + |y₂|: u = u₁(x₁) + u₁(x₂) exactly; grid error O(N^{-2/d}) = O(1/N),
    Halton error ~ (log N)²/N."""
    t, eps = 1.0, 0.5
    x = np.array([[0.3, -0.8], [-1.1, 0.2], [0.0, 0.0]])
    exact = hopf_cole_abs(x[:, 0], t, eps) + hopf_cole_abs(x[:, 1], t, eps)
    g = lambda y: np.sum(np.abs(y), axis=-1)
    sizes, errors = [], []
    for n in (16, 32, 64, 128):
        atoms, log_w = grid_measure(-8.0, 8.0, n, 2)
        u = _hc(x, atoms, g(np.asarray(atoms)), t, eps, log_w=log_w, normalized=True)
        sizes.append(n**2)
        errors.append(np.max(np.abs(np.asarray(u) - exact)))
    assert -1.1 <= _slope(sizes, errors) <= -0.9
    # Halton prefixes of one 2^16-point rule; the tail is masked (log_w = −inf), so every
    # prefix has the same shape and compiles once.
    n_max = 2**16
    atoms, log_w = nested_measure(-6.0, 6.0, n_max, 2)
    g_atoms = g(np.asarray(atoms))
    sizes, errors = [2**k for k in range(8, 17)], []
    for m in sizes:
        prefix = np.where(np.arange(n_max) < m, np.asarray(log_w) + math.log(n_max / m), -np.inf)
        u = _hc(x, atoms, g_atoms, t, eps, log_w=prefix, normalized=True)
        errors.append(np.max(np.abs(np.asarray(u) - exact)))
    assert _slope(sizes, errors) <= -0.75
    assert errors[-1] < 2e-3


@pytest.mark.parametrize("d", [1, 2])
def test_feynman_kac_agrees_with_quadrature_within_4_stderr(d):
    t, eps = 1.0, 0.5
    atoms, log_w = grid_measure(-10.0, 10.0, 2000 if d == 1 else 160, d)
    x = np.linspace(-1.5, 1.5, 5)[:, None] * np.ones(d)
    ref = np.asarray(
        _hc(x, atoms, jax.vmap(_smooth_g)(atoms), t, eps, log_w=log_w, normalized=True)
    )
    u, se = (np.asarray(a) for a in _fk(_smooth_g, x, t, eps, jax.random.key(d), 20_000))
    assert np.all(np.abs(u - ref) <= 4 * se)
    assert np.all(se < 0.01)


def test_feynman_kac_with_metric_agrees_with_quadrature():
    t, eps = 0.8, 0.6
    A = np.array([[1.5, 0.4], [0.4, 0.5]])
    atoms, log_w = grid_measure(-10.0, 10.0, 160, 2)
    x = np.array([[0.5, -0.5], [-1.0, 1.0]])
    ref = np.asarray(
        _hc(x, atoms, jax.vmap(_smooth_g)(atoms), t, eps, log_w=log_w, A=A, normalized=True)
    )
    u, se = (np.asarray(a) for a in _fk(_smooth_g, x, t, eps, jax.random.key(7), 20_000, A=A))
    assert np.all(np.abs(u - ref) <= 4 * se)


def test_feynman_kac_closed_forms_and_calibrated_error_bars():
    t, eps = 1.0, 0.5
    x = np.linspace(-1.5, 1.5, 4)[:, None]
    # g = |y|: the erfc closed form, no quadrature involved.
    u, se = (np.asarray(a) for a in _fk(_abs_g, x, t, eps, jax.random.key(0), 20_000))
    assert np.all(np.abs(u - hopf_cole_abs(x[:, 0], t, eps)) <= 4 * se)
    # g(y) = y near x = 40: u = x − t/2 exactly. At eps = 0.5 the estimate is unbiased ...
    far = x + 40.0
    u, se = (np.asarray(a) for a in _fk(_abs_g, far, t, eps, jax.random.key(1), 20_000))
    assert np.all(np.abs(u - (far[:, 0] - t / 2)) <= 4 * se)
    # ... at eps = 1e-3 it stays finite (exp(−40/1e-3) alone underflows), but the expectation
    # is a large deviation (dominated by Z ≈ √(t/eps)): the documented failure mode, where
    # the error dwarfs the delta-method stderr. Use quadrature (hopf_cole) there.
    u, se = (np.asarray(a) for a in _fk(_abs_g, far, t, 1e-3, jax.random.key(1), 20_000))
    assert np.all(np.isfinite(u)) and np.all(np.isfinite(se))
    assert np.all(np.abs(u - (far[:, 0] - t / 2)) > 10 * se)
    # The delta-method stderr matches the spread of independent replications.
    keys = jax.random.split(jax.random.key(2), 300)
    reps = jax.jit(jax.vmap(lambda k: feynman_kac(_abs_g, np.array([0.4]), t, eps, k, 400)))(keys)
    u_reps, se_reps = np.asarray(reps[0]), np.asarray(reps[1])
    assert 0.8 <= u_reps.std(ddof=1) / se_reps.mean() <= 1.25
    assert abs(
        u_reps.mean() - hopf_cole_abs(np.array([0.4]), t, eps)[0]
    ) <= 4 * se_reps.mean() / math.sqrt(300)


def test_feynman_kac_bad_input():
    g = lambda p: jnp.sum(p)
    with raises_naming("eps"):
        feynman_kac(g, np.zeros(1), 1.0, 0.0, jax.random.key(0), 100)
    with raises_naming("t"):
        feynman_kac(g, np.zeros(1), 0.0, 0.5, jax.random.key(0), 100)
    with raises_naming("n_samples"):
        feynman_kac(g, np.zeros(1), 1.0, 0.5, jax.random.key(0), 1)
    with raises_naming("g_fn"):
        feynman_kac(lambda p: p, np.zeros(2), 1.0, 0.5, jax.random.key(0), 100)
    with raises_naming("A"):
        feynman_kac(g, np.zeros(2), 1.0, 0.5, jax.random.key(0), 100, A=-np.eye(2))
    with pytest.raises((RuntimeError, ValueError), match="`eps` must be"):
        jax.block_until_ready(_fk(g, np.zeros(1), 1.0, jnp.asarray(0.0), jax.random.key(0), 100))


# -- small pieces against brute force ---------------------------------------------------------


def test_transport_cost_and_normalization_against_numpy():
    x, y, g, log_w, A = _problem(70)
    t, eps = 0.7, 0.3
    A_inv = np.linalg.inv(A)
    brute = np.array([[(xi - yj) @ A_inv @ (xi - yj) / (2 * t) for yj in y] for xi in x])
    np.testing.assert_allclose(np.asarray(transport_cost(x, y, t, A=A)), brute, rtol=1e-14)
    expected = eps * math.log(2 * math.pi * eps * t) + eps / 2 * math.log(np.linalg.det(A))  # d=2
    np.testing.assert_allclose(float(heat_normalization(2, t, eps, A=A)), expected, rtol=1e-14)
    assert float(heat_normalization(2, t, 0.0, A=A)) == 0.0
    # Its meaning: the normalized heat kernel integrates to 1, so g = 0 on a fine quadrature
    # grid gives u = −eps log ∫ K_{eps t} = 0 (log det A included) — no formula shared.
    atoms, cell = grid_measure(-6.0, 6.0, 48, 2)
    u0 = _hc(x, atoms, np.zeros(48**2), t, eps, log_w=cell, A=A, normalized=True)
    np.testing.assert_allclose(np.asarray(u0), 0.0, atol=1e-12)
    gap = _hc(x, y, g, t, eps, log_w=log_w, A=A, normalized=True) - _hc(
        x, y, g, t, eps, log_w=log_w, A=A
    )
    np.testing.assert_allclose(np.asarray(gap), expected, rtol=1e-12)
    # u itself against a brute-force log-sum in NumPy
    brute_u = -eps * np.log(np.sum(np.exp(log_w - (brute + g) / eps), axis=-1))
    np.testing.assert_allclose(
        np.asarray(_hc(x, y, g, t, eps, log_w=log_w, A=A)), brute_u, rtol=1e-13
    )


def test_float32_inputs_stay_float32_and_are_accurate():
    x, y, g, log_w, A = _problem(80)
    f32 = lambda a: np.asarray(a, dtype=np.float32)
    for eps in (0.0, 0.3):
        cases = {
            "hopf_cole": (_hc, dict(log_w=log_w, A=A, normalized=True)),
            "grad": (_grad, dict(log_w=log_w, A=A)),
            "hessian": (_hess, dict(log_w=log_w, A=A)),
        }
        for name, (fn, kw) in cases.items():
            kw32 = {k: f32(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
            got = fn(f32(x), f32(y), f32(g), 0.7, eps, **kw32)
            assert got.dtype == jnp.float32, name
            ref = fn(x, y, g, 0.7, eps, **kw)
            np.testing.assert_allclose(
                np.asarray(got), np.asarray(ref), rtol=2e-5, atol=2e-5, err_msg=name
            )
    assert _hl(f32(x), f32(y), f32(g), 0.7, A=f32(A)).dtype == jnp.float32
    assert transport_cost(f32(x), f32(y), 0.7).dtype == jnp.float32


# -- compilation --------------------------------------------------------------------------------


def test_eps_sweep_and_new_t_compile_once():
    x, y, g, log_w, A = _problem(90)

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def solve(t, eps):
        kw = dict(log_w=log_w, A=A)
        return (
            hopf_cole(x, y, g, t, eps, normalized=True, **kw),
            hopf_cole_grad(x, y, g, t, eps, **kw),
            hopf_cole_hessian(x, y, g, t, eps, **kw),
        )

    sweep = np.concatenate([[0.0], np.logspace(-3, 1, 31)])
    f64 = lambda v: jnp.asarray(v, dtype=jnp.float64)  # one (strong) type for every call
    first = [solve(f64(0.5), f64(e))[0] for e in sweep]
    solve(f64(2.0), f64(0.1))  # a change of t: no retrace either
    np.testing.assert_array_equal(np.asarray(first[0]), np.asarray(_hl(x, y, g, 0.5, A=A)))

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def swept(t, eps):
        return jax.vmap(lambda e: hopf_cole(x, y, g, t, e, log_w=log_w, A=A, normalized=True))(eps)

    batched = swept(f64(0.5), f64(sweep))
    np.testing.assert_allclose(
        np.asarray(batched), np.stack([np.asarray(u) for u in first]), rtol=1e-14
    )
    swept(f64(0.9), f64(sweep[::-1]))


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [hopf_cole, hopf_cole_grad, hopf_cole_hessian])
def test_bad_input_raises_naming_the_argument(fn):
    x, y, g = np.zeros((3, 2)), np.ones((4, 2)), np.zeros(4)
    with raises_naming("eps"):
        fn(x, y, g, 1.0, -0.1)
    with raises_naming("eps"):
        fn(x, y, g, 1.0, np.ones(2))
    for t in (0.0, -1.0, float("nan"), float("inf")):
        with raises_naming("t"):
            fn(x, y, g, t, 0.5)
    with raises_naming("eps"):  # inf · log N (or inf · 0 = NaN): never a temperature
        fn(x, y, g, 1.0, float("inf"))
    with raises_naming("y"):
        fn(x, np.ones((4, 3)), g, 1.0, 0.5)
    with raises_naming("g"):
        fn(x, y, np.zeros(5), 1.0, 0.5)
    with raises_naming("log_w"):
        fn(x, y, g, 1.0, 0.5, log_w=np.zeros(3))
    with raises_naming("A"):
        fn(x, y, g, 1.0, 0.5, A=np.array([[1.0, 0.0], [0.0, -1.0]]))  # not PD
    with raises_naming("A"):
        fn(x, y, g, 1.0, 0.5, A=np.array([[1.0, 0.5], [0.0, 1.0]]))  # not symmetric
    with raises_naming("A"):
        fn(x, y, g, 1.0, 0.5, A=np.eye(3))


def test_bad_input_hopf_lax_transport_cost_normalization():
    x, y, g = np.zeros((3, 2)), np.ones((4, 2)), np.zeros(4)
    with raises_naming("t"):
        hopf_lax(x, y, g, 0.0)
    with raises_naming("t"):
        transport_cost(x, y, -1.0)
    with raises_naming("eps"):
        heat_normalization(2, 1.0, -1.0)
    with raises_naming("d"):
        heat_normalization(0, 1.0, 1.0)
    with raises_naming("d"):
        heat_normalization(2.0, 1.0, 1.0)
    with raises_naming("A"):
        hopf_lax(x, y, g, 1.0, A=-np.eye(2))


def test_traced_bad_t_and_eps_raise_at_run_time():
    """Under jit t and eps are tracers: the checks run inside the computation."""
    x, y, g, log_w, A = _problem(100)
    kw = dict(log_w=log_w, A=A, normalized=True)
    assert np.all(np.isfinite(np.asarray(_hc(x, y, g, 1.0, 0.5, **kw))))
    for t, eps, name in ((0.0, 0.5, "t"), (-1.0, 0.5, "t"), (1.0, -0.5, "eps")):
        with pytest.raises((RuntimeError, ValueError), match=f"`{name}` must be"):
            jax.block_until_ready(_hc(x, y, g, t, eps, **kw))
    # A traced metric: an asymmetric A would be silently read through its lower triangle
    # (Cholesky), a non-PD one would give NaN costs.
    for bad in (A + np.array([[0.0, 0.3], [0.0, 0.0]]), -A):
        with pytest.raises((RuntimeError, ValueError), match="`A` must be"):
            jax.block_until_ready(_hc(x, y, g, 1.0, 0.5, log_w=log_w, A=jnp.asarray(bad)))
