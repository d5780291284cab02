"""Characteristics of ResNets, RNNs, SSMs, LSTMs and HJ equations (THEORY §6).

Every identity is checked against an independent computation: a diffrax ODE solve,
Gauss–Legendre quadrature, jax.grad (backprop), a brute-force max-plus loop, a textbook
LSTM/RNN written here with jax.nn, and brute-force Hopf–Lax minimization.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import raises_naming
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.scipy.linalg import expm
from jax.scipy.special import logsumexp

from hjax.characteristics import (
    Activation,
    LSTMCell,
    Maxout,
    RNNCell,
    gate,
    hamiltonian_characteristics,
    lstm_field,
    lstm_scan,
    maxout_field,
    quadratic_characteristics,
    rnn_field,
    rnn_scan,
    selective_zoh,
    ssm_costate,
    ssm_field,
    ssm_scan,
    tropical_ssm_scan,
    zoh,
)
from hjax.hopf_cole import hopf_lax

N_STATE, N_IN, K = 3, 2, 8


def _normal(seed, *shape):
    """Test data from NumPy's generator (no PRNG compile)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


def _ssm(seed=0):
    A = -jnp.eye(N_STATE) + 0.5 * _normal(seed, N_STATE, N_STATE)
    return (
        A,
        _normal(seed + 1, N_STATE, N_IN),
        _normal(seed + 2, K, N_IN),
        _normal(seed + 3, N_STATE),
    )


@jax.jit
def _ode_piecewise(A, B, x0, us, deltas):
    """ẋ = Ax + Bu_k on consecutive intervals of length deltas[k], by adaptive Tsit5."""
    term = diffrax.ODETerm(lambda t, x, u: ssm_field(x, A, B, u))

    def segment(x, inputs):
        u, delta = inputs
        sol = diffrax.diffeqsolve(
            term,
            diffrax.Tsit5(),
            0.0,
            delta,
            None,
            x,
            args=u,
            stepsize_controller=diffrax.PIDController(rtol=1e-13, atol=1e-13),
            max_steps=10_000,
        )
        return sol.ys[-1], sol.ys[-1]

    _, xs = jax.lax.scan(segment, x0, (us, deltas))
    return jnp.concatenate([x0[None], xs])


# --------------------------------------------------------------------------------------
# SSM: ZOH, selective scan, co-state, tropical limit
# --------------------------------------------------------------------------------------


def test_zoh_scan_equals_ode_solve_with_piecewise_constant_input():
    A, B, us, x0 = _ssm()
    delta = 0.3
    A_bar, B_bar = zoh(A, B, delta)
    xs = ssm_scan(A_bar, B_bar, x0, us)
    reference = _ode_piecewise(A, B, x0, us, jnp.full((K,), delta))
    err = float(jnp.max(jnp.abs(xs - reference)))
    assert err <= 1e-8, err


def test_selective_scan_equals_nonautonomous_ode_solve():
    A, B, us, x0 = _ssm()
    deltas = jax.nn.softplus(us @ jnp.array([1.0, -0.5]))  # input-dependent steps
    A_bars, B_bars = selective_zoh(A, B, deltas)
    xs = ssm_scan(A_bars, B_bars, x0, us)
    reference = _ode_piecewise(A, B, x0, us, deltas)
    err = float(jnp.max(jnp.abs(xs - reference)))
    assert err <= 1e-8, err
    # Genuinely non-autonomous: the steps differ.
    assert float(jnp.ptp(deltas)) > 0.1


@jax.jit
def _gauss_legendre_integral(A, B, delta):
    """∫_0^Δ e^{sA} ds B by 24-node Gauss–Legendre quadrature (round-off for smooth e^{sA})."""
    s, w = np.polynomial.legendre.leggauss(24)
    s = jnp.asarray(0.5 * delta * (s + 1))
    w = jnp.asarray(0.5 * delta * w)
    return jnp.einsum("k,kij->ij", w, jax.vmap(lambda si: expm(si * A))(s)) @ B


def test_zoh_B_bar_equals_integral_and_closed_form(key):
    A, B, _, _ = _ssm()
    delta = 0.7
    A_bar, B_bar = zoh(A, B, delta)
    quad = _gauss_legendre_integral(A, B, delta)
    assert float(jnp.max(jnp.abs(B_bar - quad))) <= 1e-12
    # THEORY's formula A⁻¹(Ā − I)B (A invertible here), by a linear solve.
    closed = jnp.linalg.solve(A, (A_bar - jnp.eye(N_STATE)) @ B)
    assert float(jnp.max(jnp.abs(B_bar - closed))) <= 1e-12


def test_zoh_singular_A_needs_no_inverse(key):
    # Nilpotent shift A: e^{sA} = I + sA + s²A²/2, so B̄ = (ΔI + Δ²A/2 + Δ³A²/6)B while
    # A⁻¹ does not exist.
    A = jnp.eye(N_STATE, k=1)
    B = _normal(5, N_STATE, N_IN)
    delta = 0.5
    A_bar, B_bar = zoh(A, B, delta)
    assert jnp.allclose(A_bar, jnp.eye(N_STATE) + delta * A + delta**2 / 2 * A @ A, atol=1e-15)
    exact = (delta * jnp.eye(N_STATE) + delta**2 / 2 * A + delta**3 / 6 * A @ A) @ B
    assert jnp.allclose(B_bar, exact, rtol=0, atol=1e-15)
    assert jnp.allclose(B_bar, _gauss_legendre_integral(A, B, delta), rtol=0, atol=1e-14)


@pytest.mark.parametrize("selective", [False, True])
def test_ssm_costate_equals_backprop(selective):
    A, B, us, x0 = _ssm()
    if selective:
        A_bar, B_bar = selective_zoh(A, B, jax.nn.softplus(us[:, 0]))
    else:
        A_bar, B_bar = zoh(A, B, 0.4)

    def Phi(x0_, us_):
        x_final = ssm_scan(A_bar, B_bar, x0_, us_)[-1]
        return jnp.sum(jnp.sin(x_final)) + 0.5 * jnp.sum(x_final**2)

    x_final = ssm_scan(A_bar, B_bar, x0, us)[-1]
    p_final = jnp.cos(x_final) + x_final
    ps, grad_us = ssm_costate(A_bar, B_bar, p_final, K)
    g_x0, g_us = jax.grad(Phi, argnums=(0, 1))(x0, us)
    assert float(jnp.max(jnp.abs(ps[0] - g_x0))) <= 1e-12
    # grad_us[k] = B̄_kᵀ p_{k+1}: checks every co-state p_1..p_K.
    assert float(jnp.max(jnp.abs(grad_us - g_us))) <= 1e-12


def _maxplus_brute(A, B, x0, us):
    A, B, x, us = (np.asarray(a) for a in (A, B, x0, us))
    out = [x]
    for u in us:
        x = np.array(
            [
                max(
                    max(A[i, j] + x[j] for j in range(len(x))),
                    max(B[i, k] + u[k] for k in range(len(u))),
                )
                for i in range(len(x))
            ]
        )
        out.append(x)
    return np.stack(out)


def test_tropical_ssm_is_eps_to_zero_limit():
    A, B, us, x0 = _ssm()
    A = A.at[0, 1].set(-jnp.inf)  # the semiring zero: an absent edge
    xs0 = tropical_ssm_scan(A, B, x0, us, 0.0)
    assert np.allclose(np.asarray(xs0), _maxplus_brute(A, B, x0, us), rtol=0, atol=1e-14)
    epss = jnp.array([1.0, 0.3, 0.1, 0.03, 0.01])
    sweep = jax.vmap(tropical_ssm_scan, in_axes=(None, None, None, None, 0))
    gaps = sweep(A, B, x0, us, epss) - xs0  # (eps, K + 1, n)
    # Maslov sandwich per step, non-expansive max-plus maps: 0 <= gap_k <= k eps log(#terms).
    terms = jnp.sum(jnp.isfinite(jnp.concatenate([A, B], axis=1)), axis=1)
    bound = epss[:, None, None] * jnp.arange(K + 1.0)[None, :, None] * jnp.log(terms)
    assert float(jnp.min(gaps)) >= 0.0
    assert bool(jnp.all(gaps <= bound + 1e-12))
    errors = jnp.max(gaps, axis=(1, 2))
    assert bool(jnp.all(errors[1:] < errors[:-1])), errors
    assert float(errors[-1]) <= 0.01 * float(errors[0])


_tropical_jit = jax.jit(tropical_ssm_scan)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), eps=st.floats(0.0, 2.0), scale=st.floats(0.01, 10.0))
def test_tropical_ssm_sandwich_property(seed, eps, scale):
    A, B, us, x0 = (scale * a for a in _ssm(seed))
    gaps = _tropical_jit(A, B, x0, us, eps) - _tropical_jit(A, B, x0, us, 0.0)
    bound = eps * jnp.arange(K + 1.0)[:, None] * np.log(N_STATE + N_IN)
    assert float(jnp.min(gaps)) >= -1e-12 * scale
    assert bool(jnp.all(gaps <= bound + 1e-12 * scale))


def test_tropical_ssm_bound_is_attained_on_ties():
    # All n + m terms tied at every step (inputs grow with the state): each lse adds
    # exactly eps log(n + m), the Maslov bound.
    n, m, steps, eps = 3, 2, 5, 0.2
    level = eps * np.log(n + m)
    us = level * jnp.arange(steps + 0.0)[:, None] * jnp.ones((1, m))
    xs = tropical_ssm_scan(jnp.zeros((n, n)), jnp.zeros((n, m)), jnp.zeros(n), us, eps)
    expected = level * jnp.arange(steps + 1.0)[:, None] * jnp.ones((1, n))
    assert float(jnp.max(jnp.abs(xs - expected))) <= 1e-13


def test_tropical_ssm_eps_sweep_compiles_once():
    A, B, us, x0 = _ssm()

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def run(eps):
        return tropical_ssm_scan(A, B, x0, us, eps)

    for eps in [0.0, 0.1, 0.5, 1.0]:
        run(jnp.asarray(eps))


def test_float32_follows_input():
    A, B, us, x0 = _ssm()
    f32 = [a.astype(jnp.float32) for a in (A, B, us, x0)]
    A_bar, B_bar = zoh(f32[0], f32[1], 0.3)
    xs = ssm_scan(A_bar, B_bar, f32[3], f32[2])
    trop = tropical_ssm_scan(f32[0], f32[1], f32[3], f32[2], 0.1)
    assert A_bar.dtype == B_bar.dtype == xs.dtype == trop.dtype == jnp.float32
    A64, B64 = zoh(A, B, 0.3)
    xs64 = ssm_scan(A64, B64, x0, us)
    assert float(jnp.max(jnp.abs(xs.astype(jnp.float64) - xs64))) <= 1e-4
    trop64 = tropical_ssm_scan(A, B, x0, us, 0.1)
    assert float(jnp.max(jnp.abs(trop.astype(jnp.float64) - trop64))) <= 1e-4


# --------------------------------------------------------------------------------------
# RNN and LSTM
# --------------------------------------------------------------------------------------


def _rnn_cell(d=3, m=2):
    return RNNCell(_normal(10, d, d) / 2, _normal(11, d, m), _normal(12, d))


def test_rnn_is_unit_step_euler_of_its_ode():
    theta = _rnn_cell()
    act = Activation("softplus", 0.5)
    us = _normal(30, K, 2)
    h0 = jnp.zeros(3)
    hs = rnn_scan(theta, h0, us, act)

    def field(t, h, args):
        u = us[jnp.clip(jnp.floor(t).astype(int), 0, K - 1)]  # piecewise-constant input
        return rnn_field(h, theta, u, act)

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Euler(),
        0.0,
        float(K),
        1.0,
        h0,
        saveat=diffrax.SaveAt(ts=jnp.arange(K + 1.0)),
    )
    assert float(jnp.max(jnp.abs(hs - sol.ys))) <= 1e-14


@jax.jit
def _gates_and_references(z, eps):
    via_softplus = jax.vmap(jax.grad(jax.nn.softplus))(z)
    via_lse = jax.vmap(jax.grad(lambda s: logsumexp(jnp.stack([jnp.zeros_like(s), s]))))(z)
    # σ(z/eps) = ∂_z [eps softplus(z/eps)]
    deformed = jax.vmap(jax.grad(lambda s: eps * jax.nn.softplus(s / eps)))(z)
    gates = (gate(z), gate(z, eps), gate(z, 0.0))
    return gates, (via_softplus, via_lse, deformed)


def test_lstm_gates_are_gradients_of_two_neuron_lse():
    z = jnp.linspace(-4.0, 4.0, 17)
    (g1, g_eps, g0), (via_softplus, via_lse, deformed) = _gates_and_references(z, 0.3)
    assert float(jnp.max(jnp.abs(g1 - via_softplus))) <= 1e-15
    assert float(jnp.max(jnp.abs(g1 - via_lse))) <= 1e-15
    assert float(jnp.max(jnp.abs(g_eps - deformed))) <= 1e-15
    # Tropical limit: a Heaviside selector, ½ at the tie.
    assert g0.tolist() == [0.0] * 8 + [0.5] + [1.0] * 8


def _lstm_cell(d=3, m=2):
    return LSTMCell(_normal(20, 4, d, d) / 2, _normal(21, 4, d, m), _normal(22, 4, d))


@jax.jit
def _textbook_lstm(theta, h, c, us):
    sig, tanh = jax.nn.sigmoid, jnp.tanh
    hs, cs = [h], [c]
    for u in us:
        z = [theta.W[k] @ h + theta.U[k] @ u + theta.b[k] for k in range(4)]
        f, i, o, g = sig(z[0]), sig(z[1]), sig(z[2]), tanh(z[3])
        c = f * c + i * g
        h = o * tanh(c)
        hs.append(h)
        cs.append(c)
    return jnp.stack(hs), jnp.stack(cs)


@jax.jit
def _partitioned_euler(theta, h, c, us):
    for u in us:
        _, dc = lstm_field(h, c, theta, u)
        c_next = c + 1.0 * dc
        dh, _ = lstm_field(h, c_next, theta, u)  # gates depend on (h, u) only
        h, c = h + 1.0 * dh, c_next
    return h, c


def test_lstm_continuous_cell_reproduces_discrete_update_at_unit_step():
    theta = _lstm_cell()
    us = _normal(30, K, 2)
    h0, c0 = jnp.zeros(3), 0.5 * jnp.ones(3)
    hs_ref, cs_ref = _textbook_lstm(theta, h0, c0, us)
    # Unit-step partitioned Euler of the continuous field: cell first, then hidden.
    h, c = _partitioned_euler(theta, h0, c0, us)
    assert float(jnp.max(jnp.abs(h - hs_ref[-1]))) <= 1e-14
    assert float(jnp.max(jnp.abs(c - cs_ref[-1]))) <= 1e-14
    hs, cs = lstm_scan(theta, h0, c0, us)
    assert float(jnp.max(jnp.abs(hs - hs_ref))) <= 1e-14
    assert float(jnp.max(jnp.abs(cs - cs_ref))) <= 1e-14


@pytest.mark.slow
def test_lstm_tropical_limit_is_a_switching_automaton():
    theta = _lstm_cell()
    us = _normal(30, K, 2)
    h0, c0 = jnp.zeros(3), 0.5 * jnp.ones(3)
    sweep = jax.vmap(lstm_scan, in_axes=(None, None, None, None, 0))
    hs, cs = sweep(theta, h0, c0, us, jnp.array([0.0, 1e-2, 1e-3]))
    # eps = 0: gates are 0/1 selectors, g̃ and tanh are signs, so h ∈ {−1, 0, 1}.
    assert set(np.unique(np.asarray(hs[0, 1:]))) <= {-1.0, 0.0, 1.0}
    gaps = jnp.max(jnp.abs(cs[1:] - cs[0]), axis=(1, 2))
    assert float(gaps[1]) <= 1e-6, gaps


# --------------------------------------------------------------------------------------
# ResNet blocks
# --------------------------------------------------------------------------------------


def test_maxout_field_is_lse_per_coordinate():
    theta = Maxout(_normal(40, 3, 5, 3), _normal(41, 3, 5))
    x = _normal(42, 3)
    z = np.einsum("knd,d->kn", np.asarray(theta.W), np.asarray(x)) + np.asarray(theta.b)
    assert np.allclose(maxout_field(x, theta, 0.0), z.max(axis=1), rtol=0, atol=1e-14)
    eps = 0.2
    ref = eps * np.log(np.exp(z / eps).sum(axis=1))
    assert np.allclose(maxout_field(x, theta, eps), ref, rtol=0, atol=1e-13)


# --------------------------------------------------------------------------------------
# HJ characteristics
# --------------------------------------------------------------------------------------


def _convex_g(y):
    Q = jnp.array([[1.0, 0.3], [0.3, 0.5]])
    return 0.5 * y @ Q @ y + jnp.array([0.2, -0.1]) @ y + jnp.sum(jnp.logaddexp(0.0, 2 * y))


ATOMS = jnp.stack(jnp.meshgrid(*[jnp.linspace(-2.0, 2.0, 41)] * 2, indexing="ij"), -1).reshape(
    -1, 2
)
FEET = ATOMS[jnp.array([300, 420, 861, 1000, 1300])]  # grid nodes, interior


@jax.jit
def _straight_lines_and_hopf_lax(A, t):
    out = {}
    for name, metric in [("identity", None), ("A", A)]:
        x, p, u = quadratic_characteristics(_convex_g, FEET, t, A=metric)
        u_lax = hopf_lax(x, ATOMS, jax.vmap(_convex_g)(ATOMS), t, A=metric)
        out[name] = (x, p, u, u_lax)
    return out, jax.vmap(jax.grad(_convex_g))(FEET)


def test_quadratic_characteristics_are_straight_lines_and_hopf_lax():
    A, t = jnp.array([[1.5, 0.2], [0.2, 0.7]]), 0.6
    out, grads = _straight_lines_and_hopf_lax(A, t)
    for name, metric in [("identity", jnp.eye(2)), ("A", A)]:
        x, p, u, u_lax = out[name]
        # Straight lines: x − y = t A ∇g(y), p = ∇g(y) (autodiff of g, computed here).
        assert float(jnp.max(jnp.abs(x - FEET - t * grads @ metric.T))) <= 1e-14
        assert float(jnp.max(jnp.abs(p - grads))) <= 1e-14
        # For convex g the foot is the global minimiser of z ↦ c_t(x, z) + g(z), and it is
        # an atom, so the discrete Hopf–Lax min over the grid is exact.
        assert float(jnp.max(jnp.abs(u - u_lax))) <= 1e-12, name


def _H_family(x, p, params):
    """a p²/2 + b sqrt(1 + p²) + ω x²/2: quadratic, relativistic, with a potential."""
    a, b, omega = params
    return a * 0.5 * p @ p + b * jnp.sqrt(1 + p @ p) + omega * 0.5 * x @ x


def _g1(y):
    return 0.5 * y @ y + 0.3 * jnp.sin(y[0])  # convex: g'' >= 0.7


@jax.jit
def _flow(params, y, ts):
    """One compiled characteristics solve for every member of the H family."""
    H = lambda x, p: _H_family(x, p, params)  # noqa: E731
    return hamiltonian_characteristics(H, _g1, y, ts, rtol=1e-12, atol=1e-12)


TS = jnp.linspace(0.0, 1.5, 7)
FOOT = jnp.array([0.4])


def test_characteristics_of_quadratic_H_are_straight_lines():
    a = 1.3
    xs, ps, us = _flow(jnp.array([a, 0.0, 0.0]), FOOT, TS)
    x, p, u = jax.vmap(lambda t: quadratic_characteristics(_g1, FOOT, t, A=jnp.eye(1) * a))(TS)
    assert float(jnp.max(jnp.abs(xs - x))) <= 1e-10
    assert float(jnp.max(jnp.abs(ps - p))) <= 1e-10
    assert float(jnp.max(jnp.abs(us - u))) <= 1e-10


def test_general_H_flow_conserves_H():
    params = jnp.array([0.0, 1.0, 0.3])  # sqrt(1 + p²) + 0.3 x²/2, convex in p
    xs, ps, _ = _flow(params, FOOT, TS)
    H_t = jax.vmap(_H_family, in_axes=(0, 0, None))(xs, ps, params)
    assert float(jnp.max(jnp.abs(H_t - H_t[0]))) <= 1e-9
    assert float(jnp.ptp(xs)) > 0.1 and float(jnp.ptp(ps)) > 0.1  # it moved


@pytest.mark.slow
def test_general_H_characteristics_give_the_hopf_lax_value():
    # H = sqrt(1 + p²) has Lagrangian L(q) = −sqrt(1 − q²), |q| < 1. The value along a
    # characteristic is the Hopf–Lax minimum min_z [t L((x − z)/t) + g(z)] (brute force over
    # a grid containing the foot, which is the exact minimiser for convex g and L).
    grid = jnp.linspace(-3.0, 3.0, 6001)
    foot = grid[3400][None]
    xs, _, us = _flow(jnp.array([0.0, 1.0, 0.0]), foot, TS)
    t = TS[1:, None]
    q = (xs[1:, :1] - grid[None, :]) / t
    inside = jnp.abs(q) < 1
    g_grid = 0.5 * grid**2 + 0.3 * jnp.sin(grid)
    lagrangian = -jnp.sqrt(jnp.where(inside, 1 - q**2, 1.0))
    action = jnp.where(inside, t * lagrangian + g_grid, jnp.inf)
    assert float(jnp.max(jnp.abs(us[1:] - jnp.min(action, axis=1)))) <= 1e-9


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


def test_bad_input_is_rejected_by_name():
    A, B = -jnp.eye(2), jnp.ones((2, 1))
    with raises_naming("delta"):
        zoh(A, B, 0.0)
    with raises_naming("deltas"):
        selective_zoh(A, B, jnp.array([0.1, -0.1]))
    with raises_naming("A"):
        zoh(jnp.ones((2, 3)), B, 0.1)
    with raises_naming("B"):
        zoh(A, jnp.ones((3, 1)), 0.1)
    with raises_naming("eps"):
        tropical_ssm_scan(A, B, jnp.zeros(2), jnp.zeros((3, 1)), -0.1)
    with raises_naming("us"):
        tropical_ssm_scan(A, B, jnp.zeros(2), jnp.zeros((3, 2)), 0.1)
    with raises_naming("kind"):
        Activation("gelu")
    with raises_naming("eps"):
        Activation("softplus", -1.0)
    with raises_naming("t"):
        quadratic_characteristics(_convex_g, jnp.zeros(2), -1.0)
    with raises_naming("A"):
        quadratic_characteristics(_convex_g, jnp.zeros(2), 1.0, A=-jnp.eye(2))
