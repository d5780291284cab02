"""The eps-deformed max-plus semiring (THEORY §0–§1): every kernel against an independent
computation — NumPy sums, finite differences, autodiff, brute-force loops."""

import itertools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import raises_at_run_time, raises_naming
from hypothesis import given, settings
from hypothesis import strategies as st

from hjax.semiring import gibbs, lse, maxplus_matmul, softplus_eps, tropical_add, tropical_mul

N_ATOMS = 12
# Jitted once per shape: eager op-by-op dispatch would compile every primitive separately.
_lse = jax.jit(lse, static_argnames="axis")
_gibbs = jax.jit(gibbs, static_argnames="axis")
_grad_z = jax.jit(jax.grad(lse))
_grad_eps = jax.jit(jax.grad(lse, argnums=1))
_hessian_z = jax.jit(jax.hessian(lse))
_sigmoid = jax.jit(jax.vmap(jax.grad(softplus_eps), in_axes=(0, None)))
_softplus = jax.jit(softplus_eps)
_tadd = jax.jit(tropical_add)
_tmul = jax.jit(tropical_mul)
_mm = jax.jit(maxplus_matmul)


def _softmax_np(z, eps, log_w=None):
    """Gibbs weights in NumPy (independent of the library's kernels)."""
    s = np.asarray(z, dtype=np.float64) / eps
    if log_w is not None:
        s = s + np.asarray(log_w)
    e = np.exp(s - np.max(s))
    return e / e.sum()


# -- Maslov sandwich ---------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    z=st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=N_ATOMS, max_size=N_ATOMS),
    n_active=st.integers(1, N_ATOMS),
    eps=st.one_of(st.just(0.0), st.floats(1e-6, 50.0)),
)
def test_maslov_sandwich(z, n_active, eps):
    """max z ≤ lse(z, eps) ≤ max z + eps log N over the N active atoms (Thm 3.1)."""
    z = np.array(z)
    log_w = np.where(np.arange(N_ATOMS) < n_active, 0.0, -np.inf)  # N = n_active
    value = float(_lse(z, eps, log_w=log_w))
    m = float(np.max(z[:n_active]))
    slack = 1e-13 * (1 + abs(m))
    assert m - slack <= value <= m + eps * math.log(n_active) + slack


def test_sandwich_upper_bound_is_attained_by_equal_logits():
    z = np.full(7, 0.3)
    for eps in (0.01, 1.0, 5.0):
        np.testing.assert_allclose(float(_lse(z, eps)), 0.3 + eps * math.log(7), rtol=1e-15)


# -- eps = 0: exact max, argmax gradients -------------------------------------------


def test_eps_zero_is_max_bit_for_bit():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 4, N_ATOMS))
    z[..., 3] = z[..., 7]  # ties
    for axis in (0, 1, -1):
        got = np.asarray(_lse(z, 0.0, axis=axis))
        np.testing.assert_array_equal(got, np.max(z, axis=axis))


def test_eps_zero_gradient_is_uniform_over_ties_and_finite():
    z = np.array([0.5, 2.0, -1.0, 2.0, 2.0, 1.9])
    grad = np.asarray(_grad_z(z, 0.0))
    np.testing.assert_array_equal(grad, [0, 1 / 3, 0, 1 / 3, 1 / 3, 0])
    np.testing.assert_array_equal(np.asarray(_gibbs(z, 0.0)), grad)
    # d lse / d eps at 0 is the entropy of the argmax weights: log 3 for a 3-fold tie.
    np.testing.assert_allclose(float(_grad_eps(z, 0.0)), math.log(3), rtol=1e-15)
    assert float(_grad_eps(np.array([1.0, 0.0]), 0.0)) == 0.0


# -- eps > 0: gradients against finite differences and closed forms -------------------


@pytest.mark.parametrize("eps", [0.05, 0.7, 3.0])
def test_gradient_is_gibbs_and_matches_finite_differences(eps):
    rng = np.random.default_rng(1)
    z = rng.standard_normal(N_ATOMS)
    grad = np.asarray(_grad_z(z, eps))
    np.testing.assert_allclose(grad, _softmax_np(z, eps), rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(np.asarray(_gibbs(z, eps)), _softmax_np(z, eps), rtol=1e-13)
    h = 1e-6
    fd = [
        (float(_lse(z + h * e, eps)) - float(_lse(z - h * e, eps))) / (2 * h)
        for e in np.eye(N_ATOMS)
    ]
    np.testing.assert_allclose(grad, fd, atol=1e-9)


@pytest.mark.parametrize("eps", [0.05, 0.7, 3.0])
def test_eps_gradient_is_entropy_and_matches_finite_differences(eps):
    rng = np.random.default_rng(2)
    z = rng.standard_normal(N_ATOMS)
    pi = _softmax_np(z, eps)
    entropy = -np.sum(pi * np.log(pi))
    got = float(_grad_eps(z, eps))
    np.testing.assert_allclose(got, entropy, rtol=1e-12)
    h = 1e-6 * eps
    fd = (float(_lse(z, eps + h)) - float(_lse(z, eps - h))) / (2 * h)
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("eps", [0.1, 1.5])
def test_hessian_is_gibbs_covariance_over_eps(eps):
    """∇²lse = (diag π − ππᵀ)/eps (Prop D.2) against jax.hessian."""
    rng = np.random.default_rng(3)
    z = rng.standard_normal(6)
    pi = _softmax_np(z, eps)
    expected = (np.diag(pi) - np.outer(pi, pi)) / eps
    np.testing.assert_allclose(np.asarray(_hessian_z(z, eps)), expected, atol=1e-13)


def test_log_weights_match_explicit_sum():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((3, N_ATOMS))
    w = rng.uniform(0.1, 3.0, N_ATOMS)
    for eps in (0.3, 2.0):
        expected = [
            eps * math.log(sum(wj * math.exp(zj / eps) for zj, wj in zip(row, w, strict=True)))
            for row in z
        ]
        got = np.asarray(_lse(z, eps, log_w=np.log(w)))
        np.testing.assert_allclose(got, expected, rtol=1e-14)
        pi = np.asarray(_gibbs(z, eps, log_w=np.log(w)))
        np.testing.assert_allclose(pi[0], _softmax_np(z[0], eps, np.log(w)), rtol=1e-13)


# -- masked atoms (log_w = -inf) --------------------------------------------------------

_MASK = np.array([0.0, -np.inf, 0.0, 0.0, -np.inf, 0.0])
_Z = np.array([0.3, 5.0, -1.2, 0.8, 2.0, 0.1])  # the masked atoms would dominate


_all_grads = jax.jit(jax.grad(lambda z, eps, log_w: lse(z, eps, log_w=log_w), argnums=(0, 1, 2)))


@pytest.mark.parametrize("eps", [0.0, 0.4])
def test_masked_atoms_equal_deleted_atoms_with_finite_gradients(eps):
    kept = np.isfinite(_MASK)
    np.testing.assert_allclose(
        float(_lse(_Z, eps, log_w=_MASK)), float(_lse(_Z[kept], eps)), rtol=1e-15
    )
    gz, geps, gw = _all_grads(_Z, eps, _MASK)
    for g in (gz, geps, gw):
        assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_array_equal(np.asarray(gz)[~kept], 0.0)
    np.testing.assert_array_equal(np.asarray(gw)[~kept], 0.0)
    gz_kept, geps_kept = _grad_z(_Z[kept], eps), _grad_eps(_Z[kept], eps)
    np.testing.assert_allclose(np.asarray(gz)[kept], np.asarray(gz_kept), rtol=1e-14)
    np.testing.assert_allclose(float(geps), float(geps_kept), rtol=1e-14, atol=1e-300)
    assert np.all(np.asarray(_gibbs(_Z, eps, log_w=_MASK))[~kept] == 0.0)


@pytest.mark.parametrize("eps", [0.0, 0.5])
def test_all_atoms_masked_is_the_zero_measure(eps):
    """lse = log 0 = −inf; the Gibbs weights of the zero measure are all 0 (not NaN, and at
    eps = 0 not a uniform distribution over masked atoms); gradients are 0."""
    none = np.full(6, -np.inf)
    assert float(_lse(_Z, eps, log_w=none)) == -np.inf
    np.testing.assert_array_equal(np.asarray(_gibbs(_Z, eps, log_w=none)), 0.0)
    for grad in _all_grads(_Z, eps, none):
        np.testing.assert_array_equal(np.asarray(grad), 0.0)


def test_nan_log_weight_is_rejected_instead_of_masking():
    """Only log_w = −inf masks: a NaN log-weight must not silently delete its atom (nor
    yield a silent NaN): eagerly a ValueError, under jit a run-time error."""
    log_w = np.array([0.0, np.nan, 0.0, 0.0, 0.0, 0.0])
    with raises_naming("log_w"):
        lse(_Z, 0.4, log_w=log_w)
    for fn in (_lse, _gibbs):
        with raises_at_run_time("log_w"):
            jax.block_until_ready(fn(_Z, 0.4, log_w=log_w))


@pytest.mark.parametrize("eps", [0.0, 0.4])
def test_plus_inf_logits_take_all_the_weight(eps):
    """+inf logits are allowed (only NaN is rejected): lse = +inf and the Gibbs weights are
    uniform over the +inf entries (the limit of finite logits growing without bound) — not
    the inf/inf = NaN of the shifted softmax — with zero, finite derivatives."""
    z = np.array([np.inf, 1.0, np.inf, -np.inf])
    assert float(_lse(z, eps)) == np.inf
    np.testing.assert_array_equal(np.asarray(_gibbs(z, eps)), [0.5, 0.0, 0.5, 0.0])
    jac = jax.jit(jax.jacfwd(gibbs, argnums=(0, 1)))(z, eps)
    for d in jac:
        np.testing.assert_array_equal(np.asarray(d), 0.0)


def test_naive_where_masking_is_nan_the_trap_these_kernels_avoid():
    """JAX issue 6811: a ``where`` forms 0·inf in the backward pass (eps · log_w = −inf)."""

    def naive(z, eps, log_w):
        active = log_w > -jnp.inf
        s = jnp.where(active, z + eps * log_w, -jnp.inf)
        return eps * jax.nn.logsumexp(s / eps)

    eps = 0.4
    value, grads = jax.jit(jax.value_and_grad(naive, argnums=(0, 1, 2)))(_Z, eps, _MASK)
    np.testing.assert_allclose(float(value), float(_lse(_Z, eps, log_w=_MASK)), rtol=1e-15)
    assert np.isnan(float(grads[1]))  # d/d eps: 0 · (−inf)
    ours = _all_grads(_Z, eps, _MASK)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in ours)
    # ... and the naive eps → 0 formula is 0 · inf = NaN where lse is the exact max.
    naive_lse = jax.jit(lambda z, eps: eps * jax.nn.logsumexp(z / eps))
    assert np.isnan(float(naive_lse(_Z, 0.0)))
    assert float(_lse(_Z, 0.0)) == 5.0


# -- eps-derivatives of the Gibbs weights (second order in eps) --------------------------
#
# Central differences in eps with step h = 1e-5·eps. For f(eps) = F(z/eps) the k-th
# derivative is about |f'|·(r/eps)^(k-1) (r: spread of z/eps over the active atoms, here
# ≤ ~30), so the truncation error h²/6·|f'''| is ≈ 1.7e-11·r²·|f'| ≤ 2e-8·|f'|, and the
# rounding error δ·|f|/h (δ = 2^-53) is ≈ 1.1e-11·|f|/eps ≤ 1e-9·|f'| here. The tolerance
# 1e-7·max|f'| (norm-wise: single components may vanish) leaves a 5x margin; a dropped or
# sign-flipped term is an O(1) relative error.

_FD_RTOL = 1e-7
_EPS_GRID = [0.05, 0.3, 1.0, 3.0]
# Three cases: generic logits, masked atoms that would dominate, a 3-fold tie at the max.
_EPS_CASES = {
    "plain": (np.array([0.3, -0.2, 0.8, 0.1, -1.0, 0.5]), None),
    "masked": (_Z, _MASK),
    "tied": (np.array([0.5, 0.9, -0.3, 0.9, 0.9, 0.2]), None),
}
_dgibbs_deps = jax.jit(jax.jacfwd(lambda z, eps, log_w: gibbs(z, eps, log_w=log_w), argnums=1))
_dlse_deps = jax.jit(jax.grad(lambda z, eps, log_w: lse(z, eps, log_w=log_w), argnums=1))
_d2lse_deps2 = jax.jit(
    jax.grad(jax.grad(lambda z, eps, log_w: lse(z, eps, log_w=log_w), argnums=1), argnums=1)
)


def _gibbs_moments_np(z, eps, log_w):
    """(π, z − E_π z) in NumPy; masked atoms get π = 0 and centred z = 0."""
    active = np.ones(z.shape, bool) if log_w is None else np.isfinite(log_w)
    pi = np.zeros_like(z)
    pi[active] = _softmax_np(z[active], eps, None if log_w is None else log_w[active])
    centred = np.where(active, z - np.sum(pi[active] * z[active]), 0.0)
    return pi, centred


def _fd_error(got, fd) -> float:
    """``max |got − fd| / max |fd|``: the norm-wise relative gap to central differences."""
    got, fd = np.asarray(got), np.asarray(fd)
    return float(np.max(np.abs(got - fd)) / np.max(np.abs(fd)))


@pytest.mark.parametrize("case", sorted(_EPS_CASES))
@pytest.mark.parametrize("eps", _EPS_GRID)
def test_gibbs_eps_derivative(case, eps):
    """∂π_j/∂eps = −π_j (z_j − E_π z)/eps² for π = softmax(z/eps + log w): jax.jacfwd
    against a NumPy closed form and against central differences of gibbs itself."""
    z, log_w = _EPS_CASES[case]
    got = np.asarray(_dgibbs_deps(z, eps, log_w))
    pi, centred = _gibbs_moments_np(z, eps, log_w)
    np.testing.assert_allclose(got, -pi * centred / eps**2, rtol=1e-12, atol=1e-14 / eps**2)
    h = 1e-5 * eps
    up, down = (np.asarray(_gibbs(z, eps + s * h, log_w=log_w)) for s in (1, -1))
    assert _fd_error(got, (up - down) / (2 * h)) <= _FD_RTOL
    if log_w is not None:
        np.testing.assert_array_equal(got[np.isneginf(log_w)], 0.0)  # masked: exactly 0
    assert abs(float(np.sum(got))) <= 1e-12 * float(np.max(np.abs(got)))  # Σ π = 1 ∀ eps


@pytest.mark.parametrize("case", sorted(_EPS_CASES))
@pytest.mark.parametrize("eps", _EPS_GRID)
def test_lse_second_eps_derivative(case, eps):
    """∂²lse/∂eps² = ∂H(π)/∂eps = Var_π(z)/eps³ (jax.grad of jax.grad): against NumPy and
    against central differences of the first derivative (itself checked against central
    differences of lse in test_eps_gradient_is_entropy_and_matches_finite_differences)."""
    z, log_w = _EPS_CASES[case]
    got = float(_d2lse_deps2(z, eps, log_w))
    pi, centred = _gibbs_moments_np(z, eps, log_w)
    np.testing.assert_allclose(got, np.sum(pi * centred**2) / eps**3, rtol=1e-12)
    h = 1e-5 * eps
    up, down = (float(_dlse_deps(z, eps + s * h, log_w)) for s in (1, -1))
    assert _fd_error(got, (up - down) / (2 * h)) <= _FD_RTOL


@pytest.mark.parametrize("case", sorted(_EPS_CASES))
def test_lse_eps_derivative_is_the_nonnegative_entropy(case):
    """∂lse/∂eps = H(π) = −Σ π log π ≥ 0 (counting measure): lse is nondecreasing in eps.

    At eps = 0 the one-sided limit log k for a k-fold tie of the max; for eps > 0 positive,
    equal to the NumPy entropy and to central differences of lse (rounding δ·|lse|/h ≲ 1e-9
    relative here, truncation ≲ 1e-8).
    """
    z, log_w = _EPS_CASES[case]
    ties = 3 if case == "tied" else 1
    assert float(_dlse_deps(z, 0.0, log_w)) == pytest.approx(math.log(ties), abs=1e-15)
    for eps in _EPS_GRID:
        got = float(_dlse_deps(z, eps, log_w))
        pi, _ = _gibbs_moments_np(z, eps, log_w)
        entropy = -np.sum(pi[pi > 0] * np.log(pi[pi > 0]))
        assert got > 0
        np.testing.assert_allclose(got, entropy, rtol=1e-12)
        h = 1e-5 * eps
        up, down = (float(_lse(z, eps + s * h, log_w=log_w)) for s in (1, -1))
        assert _fd_error(got, (up - down) / (2 * h)) <= _FD_RTOL


# -- softplus, sigmoid, tanh ----------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.01, 0.5, 2.0])
def test_softplus_tends_to_relu_with_max_error_eps_log2_at_zero(eps):
    z = np.linspace(-5, 5, 1001)  # contains 0
    err = np.asarray(_softplus(z, eps)) - np.maximum(z, 0.0)
    assert np.all(err >= 0)
    np.testing.assert_allclose(np.max(err), eps * math.log(2), rtol=1e-15, atol=0)
    if eps > 0:
        assert z[np.argmax(err)] == 0.0


def test_two_atom_lse_keeps_relative_precision_in_the_tail():
    """lse − max for two atoms (softplus_eps, tropical_add) to full relative precision.

    softplus_eps(z) = eps log1p(e^{z/eps}), by math.log1p. The plain shifted form
    eps·log(1 + e^{z/eps}) loses it once e^{z/eps} nears the rounding unit: relative error
    ~1e-8 at z/eps = −20, 100 % (it returns 0) at −40 (``naive`` below).
    """
    eps = 0.5
    ratios = np.array([-5.0, -20.0, -40.0, -100.0, -700.0])
    z = ratios * eps
    exact = np.array([eps * math.log1p(math.exp(r)) for r in ratios])
    naive = eps * np.log(1.0 + np.exp(ratios))  # m = 0: the shifted one-pass form
    assert np.abs(naive[1] / exact[1] - 1) > 1e-9 and naive[2] == 0.0
    for got in (
        _softplus(z, eps),
        _tadd(z, np.zeros_like(z), eps),
        _lse(np.stack([z, 0 * z], -1), eps),
    ):
        np.testing.assert_allclose(np.asarray(got), exact, rtol=4e-16, atol=0)
    # float32: the same in single precision (e^{-20} ≈ 2e-9 is below float32's rounding unit;
    # e^{-100} underflows float32 altogether)
    got32 = _softplus(z.astype(np.float32), np.float32(eps))
    assert got32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got32)[:3], exact[:3], rtol=3e-7, atol=0)
    # ... and ties: two equal atoms give max + eps log 2 exactly as before
    assert float(_tadd(0.3, 0.3, eps)) == 0.3 + eps * math.log(2)


@pytest.mark.parametrize("eps", [0.05, 1.0])
def test_sigmoid_is_derivative_of_softplus(eps):
    z = np.linspace(-3, 3, 13)
    sig = np.asarray(_sigmoid(z, eps))
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(-z / eps)), rtol=1e-14)


def test_heaviside_at_eps_zero_and_tanh_identity():
    z = np.array([-1.0, 0.0, 2.0])
    heaviside = np.asarray(_sigmoid(z, 0.0))
    np.testing.assert_array_equal(heaviside, [0.0, 0.5, 1.0])
    z = np.linspace(-4, 4, 17)
    sigmoid_2z = np.asarray(_sigmoid(2 * z, 1.0))
    np.testing.assert_allclose(2 * sigmoid_2z - 1, np.tanh(z), atol=1e-15)


# -- tropical algebra ------------------------------------------------------------------


def _oplus(a, b, eps):
    """a ⊕_eps b, brute force in Python."""
    if eps == 0:
        return max(a, b)
    m = max(a, b)
    return m + eps * math.log(math.exp((a - m) / eps) + math.exp((b - m) / eps))


def _matmul_brute(A, B, eps):
    m, n = A.shape
    k = B.shape[1]
    out = np.empty((m, k))
    for i, j in itertools.product(range(m), range(k)):
        acc = A[i, 0] + B[0, j]
        for r in range(1, n):
            acc = _oplus(acc, A[i, r] + B[r, j], eps)
        out[i, j] = acc
    return out


@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_tropical_ops_and_matmul_match_brute_force(eps):
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((2, N_ATOMS))
    expected = [_oplus(x, y, eps) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(np.asarray(_tadd(a, b, eps)), expected, rtol=1e-14)
    np.testing.assert_array_equal(np.asarray(_tmul(a, b)), a + b)
    A, B = rng.standard_normal((2, 4, 4))
    np.testing.assert_allclose(
        np.asarray(_mm(A, B, eps)), _matmul_brute(A, B, eps), rtol=1e-14, atol=1e-15
    )


def test_semiring_laws_exact_at_eps_zero():
    """Integer-valued data: the tropical laws hold bit-for-bit at eps = 0."""
    rng = np.random.default_rng(6)
    a, b, c = rng.integers(-9, 10, (3, N_ATOMS)).astype(np.float64)
    add = lambda x, y: np.asarray(_tadd(x, y, 0.0))
    np.testing.assert_array_equal(add(add(a, b), c), add(a, add(b, c)))  # associative
    np.testing.assert_array_equal(add(a, b), add(b, a))  # commutative
    np.testing.assert_array_equal(a + add(b, c), add(a + b, a + c))  # ⊗ distributes over ⊕
    np.testing.assert_array_equal(add(a, np.full(N_ATOMS, -np.inf)), a)  # −inf is the zero
    A, B, C = rng.integers(-9, 10, (3, 4, 4)).astype(np.float64)
    mm = lambda X, Y: np.asarray(_mm(X, Y, 0.0))
    np.testing.assert_array_equal(mm(mm(A, B), C), mm(A, mm(B, C)))
    identity = np.where(np.eye(4, dtype=bool), 0.0, -np.inf)
    np.testing.assert_array_equal(mm(identity, B), B)


def test_semiring_laws_hold_for_eps_positive():
    """⊕_eps is associative and ⊗ distributes over it for every eps (to round-off)."""
    rng = np.random.default_rng(7)
    a, b, c = rng.standard_normal((3, N_ATOMS))
    eps = 0.6
    add = lambda x, y: np.asarray(_tadd(x, y, eps))
    np.testing.assert_allclose(add(add(a, b), c), add(a, add(b, c)), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(a + add(b, c), add(a + b, a + c), rtol=1e-14, atol=1e-15)
    A, B, C = rng.standard_normal((3, 4, 4))
    mm = lambda X, Y: np.asarray(_mm(X, Y, eps))
    np.testing.assert_allclose(mm(mm(A, B), C), mm(A, mm(B, C)), rtol=1e-14)
    identity = np.where(np.eye(4, dtype=bool), 0.0, -np.inf)
    np.testing.assert_array_equal(mm(identity, B), B)


# -- dtypes, compilation, bad input --------------------------------------------------------


@jax.jit
def _all_kernels(z, eps):
    return {
        "lse": lse(z, eps),
        "gibbs": gibbs(z, eps),
        "grad": jax.grad(lambda z_: lse(z_, eps).sum())(z),
        "softplus": softplus_eps(z, eps),
        "tropical_add": tropical_add(z, z[::-1], eps),
        "maxplus_matmul": maxplus_matmul(z[:, :4], z[:, 4:8].T, eps),
    }


def test_float32_stays_float32_and_is_accurate():
    rng = np.random.default_rng(8)
    z64 = rng.standard_normal((4, N_ATOMS))
    z32 = z64.astype(np.float32)
    for eps in (0.0, 0.05, 1.0):
        got, ref = _all_kernels(z32, eps), _all_kernels(z64, eps)
        for name in got:
            assert got[name].dtype == jnp.float32, name
            np.testing.assert_allclose(
                np.asarray(got[name]), np.asarray(ref[name]), rtol=3e-6, atol=2e-6, err_msg=name
            )
        np.testing.assert_allclose(
            np.asarray(ref["maxplus_matmul"]), _matmul_brute(z64[:, :4], z64[:, 4:8].T, eps)
        )
    # large logits at small eps: no overflow in float32
    big = np.array([80.0, 79.0], dtype=np.float32)
    np.testing.assert_allclose(float(_lse(big, 0.01)), 80.0, rtol=1e-6)


def test_eps_sweep_compiles_once():
    z = np.random.default_rng(9).standard_normal(N_ATOMS)

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def kernels(z, eps):
        return lse(z, eps), gibbs(z, eps), jax.grad(lse, argnums=(0, 1))(z, eps)

    sweep = np.concatenate([[0.0], np.logspace(-3, 1, 31)])
    values = [float(kernels(z, jnp.asarray(e))[0]) for e in sweep]
    assert values[0] == np.max(z)
    assert np.all(np.diff(values) >= 0)  # lse is nondecreasing in eps (entropy ≥ 0)

    @jax.jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def batched(z, eps):
        return jax.vmap(lambda e: lse(z, e))(eps)

    np.testing.assert_allclose(np.asarray(batched(z, jnp.asarray(sweep))), values, rtol=1e-15)
    batched(z, jnp.asarray(sweep[::-1]))  # new values, same shape: no retrace


def test_bad_eps_raises_naming_eps():
    z = np.zeros(3)
    with raises_naming("eps"):
        lse(z, -0.1)
    with raises_naming("eps"):
        lse(z, np.ones(2))
    with raises_naming("eps"):
        gibbs(z, float("nan"))
    with raises_naming("eps"):
        maxplus_matmul(np.zeros((2, 2)), np.zeros((2, 2)), -1.0)
    with raises_naming("eps"):  # lse(z, inf) is +inf (N > 1) or inf·0 = NaN (N = 1)
        lse(np.zeros(1), np.inf)


def test_traced_negative_eps_raises_at_run_time():
    f = jax.jit(lse)
    assert float(f(np.zeros(2), 1.0)) == math.log(2)
    with pytest.raises((RuntimeError, ValueError), match="`eps` must be"):
        jax.block_until_ready(f(np.zeros(2), -1.0))
