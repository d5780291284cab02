"""Backpropagation = Pontryagin co-state (THEORY §6–§7, Thm 8.4).

Independent references: the co-state recursions are compared with ``jax.grad`` of
*unrolled Python loops* written here (not the library's scans); RK blocks with explicit
stage formulas typed out per method; the diffrax Euler/midpoint solvers against the
discrete networks; continuous adjoints against backprop through the solver; the
ResNet against a tight Tsit5 solve; Hamilton's equations against ``H`` itself.
"""

import functools

import chex
import diffrax
import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import raises_naming
from hypothesis import given, settings
from jax.test_util import check_grads

from hjax.costate import (
    EULER,
    HEUN,
    MIDPOINT,
    RK4,
    ButcherTableau,
    adjoint_gaps,
    bilinear_invariant,
    costate_backward,
    euler_forward,
    finite_difference_gradient,
    hamiltonian,
    hamiltonian_flow,
    ode_forward,
    ode_gradient,
    rk_bilinear_invariant,
    rk_costate_backward,
    rk_forward,
    rk_ode_gradient,
    theta_path,
)
from hjax.rates import loglog_fit
from hjax.semiring import lse

D, M = 3, 4  # state dimension, hidden width


# --------------------------------------------------------------------------------------
# Vector fields and an independent, unrolled reference.
# --------------------------------------------------------------------------------------


def tanh_block(x, th):
    return th["W2"] @ jnp.tanh(th["W1"] @ x + th["b1"]) + th["b2"]


def lse_block(x, th):
    # one LSE layer per output coordinate; its temperature eps is a trained leaf.
    return lse(th["W"] @ x + th["b"], th["eps"]) - th["c"]


FIELDS = {"tanh": tanh_block, "lse": lse_block}


def make_theta(kind, key, L):
    k = jax.random.split(key, 4)
    if kind == "tanh":
        return {
            "W1": jax.random.normal(k[0], (L, M, D)),
            "b1": jax.random.normal(k[1], (L, M)),
            "W2": jax.random.normal(k[2], (L, D, M)) / 2,
            "b2": jax.random.normal(k[3], (L, D)) / 2,
        }
    return {
        "W": jax.random.normal(k[0], (L, D, M, D)),
        "b": jax.random.normal(k[1], (L, D, M)),
        "eps": jax.random.uniform(k[2], (L,), minval=0.3, maxval=1.5),
        "c": jax.random.normal(k[3], (L, D)),
    }


def loss(x):
    return jnp.sum(jnp.sin(x)) + 0.5 * jnp.sum(x**2)


def layer(theta, k):
    return jax.tree_util.tree_map(lambda a: a[k], theta)


def midpoint_step(f, x, th, h):
    return x + h * f(x + 0.5 * h * f(x, th), th)


def heun_step(f, x, th, h):
    k1 = f(x, th)
    return x + 0.5 * h * (k1 + f(x + h * k1, th))


def rk4_step(f, x, th, h):
    k1 = f(x, th)
    k2 = f(x + 0.5 * h * k1, th)
    k3 = f(x + 0.5 * h * k2, th)
    k4 = f(x + h * k3, th)
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


STEPS = {
    "euler": lambda f, x, th, h: x + h * f(x, th),
    "midpoint": midpoint_step,
    "heun": heun_step,
    "rk4": rk4_step,
}
TABLEAUS = {"euler": EULER, "midpoint": MIDPOINT, "heun": HEUN, "rk4": RK4}


def reference_grads(f, step, theta, x0, h):
    """jax.grad of Φ(θ, δ) = loss(x_L), δ_l added to x_l so that ∂Φ/∂δ_l = ∂Φ/∂x_l.

    The forward pass is the test's own scan of the explicit step formulas above.
    """
    L = jax.tree_util.tree_leaves(theta)[0].shape[0]

    def phi(theta, deltas):
        def body(x, inputs):
            th, delta = inputs
            return step(f, x + delta, th, h), None

        x, _ = jax.lax.scan(body, x0, (theta, deltas[:-1]))
        return loss(x + deltas[-1])

    return jax.grad(phi, argnums=(0, 1))(theta, jnp.zeros((L + 1,) + x0.shape, x0.dtype))


@functools.partial(jax.jit, static_argnames=("kind", "method"))
def discrete_case(theta, x0, dx0, h, *, kind, method):
    """Library co-states and the reference, in one compilation per case."""
    f = FIELDS[kind]
    g_theta, g_states = reference_grads(f, STEPS[method], theta, x0, h)
    if method == "euler":
        xs = euler_forward(f, theta, x0, h)
        ps, grads = costate_backward(f, theta, xs, jax.grad(loss)(xs[-1]), h)
        inv = bilinear_invariant(f, theta, xs, ps, dx0, h)
    else:
        tab = TABLEAUS[method]
        xs = rk_forward(f, theta, x0, h, tab)
        ps, grads = rk_costate_backward(f, theta, xs, jax.grad(loss)(xs[-1]), h, tab)
        inv = rk_bilinear_invariant(f, theta, xs, ps, dx0, h, tab)
    return {"xs": xs, "ps": ps, "grads": grads, "inv": inv, "ref": (g_theta, g_states)}


def numpy_tanh_block(x, th):
    return th["W2"] @ np.tanh(th["W1"] @ x + th["b1"]) + th["b2"]


def numpy_lse_block(x, th):
    z = (th["W"] @ x + th["b"]) / th["eps"]
    top = np.max(z, axis=-1)
    return th["eps"] * (top + np.log(np.sum(np.exp(z - top[:, None]), axis=-1))) - th["c"]


NUMPY_FIELDS = {"tanh": numpy_tanh_block, "lse": numpy_lse_block}


def numpy_loop_states(kind, step, theta, x0, h):
    """The forward states by a plain Python loop over NumPy arrays (an independent forward)."""
    theta = {k: np.asarray(v) for k, v in theta.items()}
    xs = [np.asarray(x0)]
    for k in range(len(theta[next(iter(theta))])):
        xs.append(step(NUMPY_FIELDS[kind], xs[-1], {n: v[k] for n, v in theta.items()}, h))
    return np.stack(xs)


def rel(a, b):
    """Largest leaf-wise relative error ‖a − b‖ / ‖b‖ (in NumPy: no eager JAX compiles)."""
    errs = jax.tree_util.tree_map(
        lambda u, v: np.linalg.norm(np.asarray(u) - np.asarray(v)) / np.linalg.norm(v), a, b
    )
    return max(float(e) for e in jax.tree_util.tree_leaves(errs))


def spread(v):
    """Relative drift max_l |v_l − v_0| / max_l |v_l| of a sequence that should be constant."""
    v = np.asarray(v)
    return float(np.max(np.abs(v - v[0])) / np.max(np.abs(v)))


def problem(kind, L, seed=0):
    """(θ, x0, δx0, h) drawn with NumPy (no eager JAX compiles); h = 2/L (0.7 for L = 1)."""
    rng = np.random.default_rng(seed)
    if kind == "tanh":
        theta = {
            "W1": rng.normal(size=(L, M, D)),
            "b1": rng.normal(size=(L, M)),
            "W2": rng.normal(size=(L, D, M)) / 2,
            "b2": rng.normal(size=(L, D)) / 2,
        }
    else:
        theta = {
            "W": rng.normal(size=(L, D, M, D)),
            "b": rng.normal(size=(L, D, M)),
            "eps": rng.uniform(0.3, 1.5, size=L),
            "c": rng.normal(size=(L, D)),
        }
    theta = {k: jnp.asarray(v) for k, v in theta.items()}
    x0, dx0 = jnp.asarray(rng.normal(size=D)), jnp.asarray(rng.normal(size=D))
    return theta, x0, dx0, 0.7 if L == 1 else 2.0 / L


# --------------------------------------------------------------------------------------
# Discrete co-state = backprop (Thm 8.4), bilinear invariant.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("L", [1, 7, 64])
@pytest.mark.parametrize("kind", ["tanh", "lse"])
def test_costate_is_backprop(kind, L):
    theta, x0, dx0, h = problem(kind, L)
    out = discrete_case(theta, x0, dx0, h, kind=kind, method="euler")
    g_theta, g_states = out["ref"]
    assert rel(out["grads"], g_theta) <= 1e-12
    assert rel(out["ps"], g_states) <= 1e-12
    assert out["inv"].shape == (L + 1,)
    assert spread(out["inv"]) <= 1e-12
    if L <= 7:  # the forward pass against a Python loop
        assert rel(out["xs"], numpy_loop_states(kind, STEPS["euler"], theta, x0, h)) <= 1e-14


def test_invariant_detects_a_wrong_adjoint():
    """The check can fail: Jacobians at x_{l+1} instead of x_l break p·δx by O(h)."""
    f = tanh_block
    theta, x0, dx0, h = problem("tanh", 7)
    xs = euler_forward(f, theta, x0, h)
    p = jax.grad(loss)(xs[-1])
    wrong = [p]
    for k in reversed(range(7)):
        _, vjp = jax.vjp(lambda x, k=k: f(x, layer(theta, k)), xs[k + 1])
        p = p + h * vjp(p)[0]
        wrong.append(p)
    inv = bilinear_invariant(f, theta, xs, jnp.stack(wrong[::-1]), dx0, h)
    assert spread(inv) > 1e-3


@pytest.mark.parametrize(
    ("name", "L"), [("rk4", 1), ("rk4", 7), ("rk4", 64), ("midpoint", 7), ("heun", 7)]
)
def test_rk_adjoint_is_backprop(name, L):
    theta, x0, dx0, h = problem("tanh", L, seed=1)
    out = discrete_case(theta, x0, dx0, h, kind="tanh", method=name)
    g_theta, g_states = out["ref"]
    assert rel(out["grads"], g_theta) <= 1e-12
    assert rel(out["ps"], g_states) <= 1e-12
    assert spread(out["inv"]) <= 1e-12
    if L == 7:
        assert rel(out["xs"], numpy_loop_states("tanh", STEPS[name], theta, x0, h)) <= 1e-14


#: Kutta's third-order method: a_31 = −1 couples stage 3 to stage 1 (RK4 has a_31 = 0).
KUTTA3 = ButcherTableau(
    "kutta3", ((0.0, 0.0, 0.0), (0.5, 0.0, 0.0), (-1.0, 2.0, 0.0)), (1 / 6, 2 / 3, 1 / 6)
)


def kutta3_step(f, x, th, h):
    k1 = f(x, th)
    k2 = f(x + 0.5 * h * k1, th)
    k3 = f(x - h * k1 + 2 * h * k2, th)
    return x + h * (k1 + 4 * k2 + k3) / 6


def test_any_explicit_tableau_has_its_exact_adjoint():
    """The one tableau-parameterised pass, on a method none of the named ones covers."""
    theta, x0, dx0, h = problem("lse", 5, seed=2)

    @jax.jit
    def run(theta, x0, dx0, h):
        xs = rk_forward(lse_block, theta, x0, h, KUTTA3)
        ps, grads = rk_costate_backward(lse_block, theta, xs, jax.grad(loss)(xs[-1]), h, KUTTA3)
        inv = rk_bilinear_invariant(lse_block, theta, xs, ps, dx0, h, KUTTA3)
        return xs, ps, grads, inv, reference_grads(lse_block, kutta3_step, theta, x0, h)

    xs, ps, grads, inv, (g_theta, g_states) = run(theta, x0, dx0, h)
    assert rel(xs, numpy_loop_states("lse", kutta3_step, theta, x0, h)) <= 1e-14
    assert rel(grads, g_theta) <= 1e-12
    assert rel(ps, g_states) <= 1e-12
    assert spread(inv) <= 1e-12


def test_rk_adjoint_tableau_is_hager_conjugate():
    """Heun (all b_i ≠ 0): Hager's P_i = ν_i / b_i obey ā_ij = b_j a_ji / b_i, here the
    explicit method [[0, 1], [0, 0]] — written out by hand and compared for one layer."""
    f = tanh_block
    theta, x0, _, h = problem("tanh", 1)
    th = layer(theta, 0)
    xs = rk_forward(f, theta, x0, h, HEUN)
    p1 = jnp.arange(1.0, D + 1)
    X1, X2 = x0, x0 + h * f(x0, th)
    jt = lambda X, v: jax.vjp(lambda x: f(x, th), X)[1](v)[0]
    P2 = p1  # ā_2j = 0
    P1 = p1 + h * (0.5 * 1.0 / 0.5) * jt(X2, P2)  # ā_12 = b_2 a_21 / b_1 = 1
    p0 = p1 + h * (0.5 * jt(X1, P1) + 0.5 * jt(X2, P2))
    ps, _ = rk_costate_backward(f, theta, xs, p1, h, HEUN)
    assert rel(ps[0], p0) <= 1e-14


def test_module_theta_with_static_leaves():
    """An eqx.Module stacked with filter_vmap, holding a non-array leaf (the activation)."""

    class Block(eqx.Module):
        W: jax.Array
        b: jax.Array
        act: object

        def __call__(self, x):
            return self.act(self.W @ x + self.b)

    keys = jax.random.split(jax.random.key(3), 5)
    blocks = eqx.filter_vmap(lambda k: Block(jax.random.normal(k, (D, D)), jnp.ones(D), jnp.tanh))(
        keys
    )
    f = lambda x, blk: blk(x)
    x0, h = jnp.linspace(-1.0, 1.0, D), 0.3

    @eqx.filter_grad
    def reference(blocks):
        x = x0
        for k in range(5):
            x = x + h * eqx.tree_at(lambda b: (b.W, b.b), blocks, (blocks.W[k], blocks.b[k]))(x)
        return loss(x)

    xs = euler_forward(f, blocks, x0, h)
    _, grads = costate_backward(f, blocks, xs, jax.grad(loss)(xs[-1]), h)
    expected = reference(blocks)
    assert grads.act is None
    assert rel((grads.W, grads.b), (expected.W, expected.b)) <= 1e-12


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), h=st.floats(0.01, 1.0))
def test_costate_property(seed, h):
    """Any h, any parameters (one compile: h and θ are traced)."""
    g_ref, g_ours = _property_pair(jax.random.key(seed), jnp.asarray(h))
    assert rel(g_ours, g_ref) <= 1e-12


@jax.jit
def _property_pair(key, h):
    theta = make_theta("tanh", key, 5)
    x0 = jnp.linspace(-1.0, 1.0, D)
    g_ref = jax.grad(lambda th: loss(euler_forward(tanh_block, th, x0, h)[-1]))(theta)
    xs = euler_forward(tanh_block, theta, x0, h)
    return g_ref, costate_backward(tanh_block, theta, xs, jax.grad(loss)(xs[-1]), h)[1]


def test_step_size_sweep_compiles_once():
    theta, x0, _, _ = problem("tanh", 7)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def grads(h):
        xs = euler_forward(tanh_block, theta, x0, h)
        return costate_backward(tanh_block, theta, xs, jnp.ones(D), h)[1]

    for h in (0.1, 0.2, 0.5):
        grads(jnp.asarray(h))


def test_vmap_over_inputs():
    """vmap of the co-state over a batch, averaged, equals grad of the batch-mean loss."""
    theta, _, _, h = problem("tanh", 7)
    x0s = jax.random.normal(jax.random.key(5), (4, D))

    def per_example(x0):
        xs = euler_forward(tanh_block, theta, x0, h)
        return costate_backward(tanh_block, theta, xs, jax.grad(loss)(xs[-1]), h)[1]

    def mean_loss(th):
        return jnp.mean(jax.vmap(lambda x: loss(euler_forward(tanh_block, th, x, h)[-1]))(x0s))

    batched = jax.jit(jax.vmap(per_example))(x0s)
    mean_grad = jax.tree_util.tree_map(lambda g: jnp.mean(g, axis=0), batched)
    assert rel(mean_grad, jax.jit(jax.grad(mean_loss))(theta)) <= 1e-12


def test_float32_follows_input():
    theta, x0, dx0, h = problem("tanh", 7)
    theta32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), theta)
    xs = euler_forward(tanh_block, theta32, x0.astype(jnp.float32), h)
    ps, grads = costate_backward(tanh_block, theta32, xs, jnp.ones(D, jnp.float32), h)
    inv = bilinear_invariant(tanh_block, theta32, xs, ps, dx0.astype(jnp.float32), h)
    assert xs.dtype == ps.dtype == inv.dtype == jnp.float32
    assert all(g.dtype == jnp.float32 for g in jax.tree_util.tree_leaves(grads))
    xs64 = euler_forward(tanh_block, theta, x0, h)
    _, grads64 = costate_backward(tanh_block, theta, xs64, jnp.ones(D), h)
    assert rel(jax.tree_util.tree_map(lambda g: g.astype(jnp.float64), grads), grads64) < 1e-5
    assert spread(inv) < 1e-5


def test_hamiltonian_generates_both_passes():
    """∂_p H = f (forward) and ∂_x H = (∂_x f)^T p (backward), by autodiff of H."""
    theta, x0, _, _ = problem("lse", 1)
    th, p = layer(theta, 0), jnp.array([0.3, -1.0, 2.0])

    @jax.jit
    def passes(x, p, th):
        dH = jax.grad(lambda x, p: hamiltonian(lse_block, x, p, th), argnums=(0, 1))(x, p)
        return dH, (jax.jacfwd(lse_block)(x, th).T @ p, lse_block(x, th))

    (dHdx, dHdp), (vjp, f) = passes(x0, p, th)
    assert rel(dHdp, f) <= 1e-15
    assert rel(dHdx, vjp) <= 1e-14


def test_bad_inputs():
    theta, x0, dx0, h = problem("tanh", 3)
    xs = euler_forward(tanh_block, theta, x0, h)
    with raises_naming("h"):
        euler_forward(tanh_block, theta, x0, 0.0)
    with raises_naming("h"):
        costate_backward(tanh_block, theta, xs, jnp.ones(D), -0.1)
    with raises_naming("theta"):
        euler_forward(tanh_block, {**theta, "b2": jnp.ones((4, D))}, x0, h)
    with raises_naming("xs"):
        costate_backward(tanh_block, theta, xs[:-1], jnp.ones(D), h)
    with raises_naming("f"):
        euler_forward(lambda x, th: jnp.ones(D + 1), theta, x0, h)
    with raises_naming("a"):
        ButcherTableau("implicit", ((1.0,),), (1.0,))
    with raises_naming("b"):
        ButcherTableau("inconsistent", ((0.0, 0.0), (1.0, 0.0)), (0.5, 0.6))
    with raises_naming("tableau"):
        rk_forward(tanh_block, theta, x0, h, "rk4")
    with raises_naming("kind"):
        theta_path(theta, 0.1, 1.0, "cubic")
    with raises_naming("adjoint"):  # strings like "backsolve" became diffrax objects
        ode_gradient(tanh_block, theta, x0, 1.0, loss, adjoint="backsolve")
    constant = dict(solver=diffrax.Euler(), stepsize_controller=diffrax.ConstantStepSize())
    with raises_naming("stepsize_controller"):
        ode_forward(tanh_block, theta, x0, 1.0, stepsize_controller="constant", dt0=0.1)
    with raises_naming("T"):
        ode_forward(tanh_block, theta, x0, -1.0, dt0=0.1, **constant)
    with raises_naming("dt0"):
        ode_forward(tanh_block, theta, x0, 1.0, dt0=0.0, **constant)
    with raises_naming("dt0"):
        ode_forward(tanh_block, theta, x0, 1.0, **constant)
    with pytest.raises(Exception, match="`h` must be finite and > 0"):
        jax.jit(lambda h: euler_forward(tanh_block, theta, x0, h))(-1.0).block_until_ready()


# --------------------------------------------------------------------------------------
# The continuous picture (diffrax).
# --------------------------------------------------------------------------------------


def test_theta_path():
    theta = {"w": jnp.array([1.0, 3.0, 7.0]), "v": jnp.array([[0.0], [1.0], [2.0]])}
    at = lambda t, kind: theta_path(theta, t, 3.0, kind)["w"].item()
    # piecewise: right-continuous, layer boundaries snapped within round-off
    assert [at(t, "piecewise") for t in (0.0, 0.999, 1.0, 2.0 - 1e-15, 2.5, 3.0)] == [
        1.0,
        1.0,
        3.0,
        7.0,
        7.0,
        7.0,
    ]
    # linear: nodes at 0, 1.5, 3
    assert [at(t, "linear") for t in (0.0, 0.75, 1.5, 2.25, 3.0)] == [1.0, 2.0, 3.0, 5.0, 7.0]


def test_diffrax_euler_is_the_resnet():
    """diffrax Euler with dt = h and θ(t) piecewise is the ResNet; backprop through the
    solve (RecursiveCheckpointAdjoint and DirectAdjoint) equals the explicit co-state."""
    L = 8
    theta, x0, _, h = problem("tanh", L)
    xs = euler_forward(tanh_block, theta, x0, h)
    _, grads = costate_backward(tanh_block, theta, xs, jax.grad(loss)(xs[-1]), h)
    euler = dict(solver=diffrax.Euler(), stepsize_controller=diffrax.ConstantStepSize(), dt0=h)
    for adjoint in (diffrax.RecursiveCheckpointAdjoint(), diffrax.DirectAdjoint()):
        value, g = ode_gradient(
            tanh_block, theta, x0, L * h, loss, adjoint=adjoint, max_steps=L, **euler
        )
        assert abs(float(value - loss(xs[-1]))) <= 1e-13 * abs(float(value))
        assert rel(g, grads) <= 1e-12
    # the same gradient by the explicit RK co-state on the time-augmented ODE
    _, g = jax.jit(lambda th: rk_ode_gradient(tanh_block, th, x0, L * h, loss, L, EULER))(theta)
    assert rel(g, grads) <= 1e-12


def _smooth_problem():
    """θ(t) affine in t (two nodes, path='linear'): a field smooth in t."""
    theta, x0, _, _ = problem("tanh", 2, seed=4)
    return theta, x0, 1.0


NS = np.array([8, 16, 32, 64, 128])
BACKSOLVE = {"backsolve": diffrax.BacksolveAdjoint()}


@pytest.mark.slow  # the quick verify measures this order in every default run (costate.gap.euler)
def test_backsolve_gap_euler():
    theta, x0, T = _smooth_problem()
    gaps = adjoint_gaps(
        tanh_block, theta, x0, T, loss, T / NS, max_steps=int(NS[-1]), adjoints=BACKSOLVE
    )
    assert abs(loglog_fit(T / NS, gaps["backsolve"]).slope - 1.0) <= 0.3
    assert float(gaps["backsolve"][0]) > 1e-3  # a genuine gap, not round-off


def test_backsolve_gap_midpoint():
    theta, x0, T = _smooth_problem()
    gaps = adjoint_gaps(
        tanh_block,
        theta,
        x0,
        T,
        loss,
        T / NS,
        solver=diffrax.Midpoint(),
        max_steps=int(NS[-1]),
        adjoints=BACKSOLVE,
    )
    assert abs(loglog_fit(T / NS, gaps["backsolve"]).slope - 2.0) <= 0.3


@pytest.mark.slow
def test_backsolve_gap_heun_superconverges():
    """Heun's discrete adjoint is Heun again (ā = [[0, 1], [0, 0]]): the O(h²) terms of the
    two gradients cancel and the gap is O(h³), one order above the solver's. Also: Direct
    and finite differences vs recursive, and rk_ode_gradient vs recursive (Heun, midpoint)."""
    theta, x0, T = _smooth_problem()
    gaps = adjoint_gaps(
        tanh_block,
        theta,
        x0,
        T,
        loss,
        T / NS,
        solver=diffrax.Heun(),
        max_steps=int(NS[-1]),
    )
    assert abs(loglog_fit(T / NS, gaps["backsolve"]).slope - 3.0) <= 0.3
    assert float(jnp.max(gaps["direct"])) <= 1e-10
    for solver, tableau in ((diffrax.Heun(), HEUN), (diffrax.Midpoint(), MIDPOINT)):
        kw = dict(
            path="linear",
            solver=solver,
            stepsize_controller=diffrax.ConstantStepSize(),
            dt0=T / 16,
            max_steps=16,
        )
        _, g_rec = ode_gradient(tanh_block, theta, x0, T, loss, **kw)
        _, g_fd = finite_difference_gradient(tanh_block, theta, x0, T, loss, **kw)
        assert rel(g_fd, g_rec) <= 1e-8
        _, g_rk = rk_ode_gradient(tanh_block, theta, x0, T, loss, 16, tableau, path="linear")
        assert rel(g_rk, g_rec) <= 1e-12


def test_gradients_against_finite_differences():
    theta, x0, T = _smooth_problem()
    kw = dict(
        path="linear",
        solver=diffrax.Euler(),
        stepsize_controller=diffrax.ConstantStepSize(),
        dt0=T / 16,
        max_steps=16,
    )

    def phi(th):
        return loss(ode_forward(tanh_block, th, x0, T, **kw))

    check_grads(jax.jit(phi), (theta,), order=1, modes=["rev"])


@functools.partial(jax.jit, static_argnames="L")
def _resnet_endpoint(theta, x0, T, *, L):
    ts = jnp.arange(L, dtype=x0.dtype) * (T / L)
    theta_l = jax.vmap(lambda t: theta_path(theta, t, T, "linear"))(ts)  # θ_l = θ(l h)
    return euler_forward(tanh_block, theta_l, x0, T / L)[-1]


def test_resnet_converges_to_neural_ode():
    """ResNet with θ_l = θ(l h) (θ(t) affine), h = T/L: |x_L − x(T)| = O(h)."""
    theta, x0, T = _smooth_problem()
    tight = diffrax.PIDController(rtol=1e-12, atol=1e-12)
    x_ref = ode_forward(tanh_block, theta, x0, T, path="linear", stepsize_controller=tight)
    Ls = np.array([8, 16, 32, 64, 128])
    errors = [float(jnp.linalg.norm(_resnet_endpoint(theta, x0, T, L=int(L)) - x_ref)) for L in Ls]
    assert abs(loglog_fit(T / Ls, errors).slope - 1.0) <= 0.3
    assert errors[-1] < errors[0] / 8


@jax.jit
def _flow_and_energy(theta, x0, p0, ts):
    xs, ps = hamiltonian_flow(tanh_block, theta, x0, p0, ts, path="linear")
    T = ts[-1] - ts[0]
    H = jax.vmap(lambda t, x, p: hamiltonian(tanh_block, x, p, theta_path(theta, t, T, "linear")))(
        ts, xs, ps
    )
    return xs, ps, H


def test_hamiltonian_conserved_along_autonomous_flow():
    theta, x0, _, _ = problem("tanh", 1, seed=6)
    p0 = jnp.array([1.0, -0.5, 0.25])
    ts = jnp.linspace(0.0, 2.0, 9)
    # two equal nodes: θ(t) constant, the field is autonomous
    constant = jax.tree_util.tree_map(lambda a: jnp.concatenate([a, a]), theta)
    _, ps, H = _flow_and_energy(constant, x0, p0, ts)
    assert spread(H) <= 1e-8
    # not trivially: the Jacobian is far from zero and p moves by O(1)
    assert float(jnp.linalg.norm(jax.jacfwd(tanh_block)(x0, layer(theta, 0)))) > 0.5
    assert float(jnp.linalg.norm(ps[-1] - p0)) > 0.2 * float(jnp.linalg.norm(p0))
    # control: with θ varying in t, dH/dt = p·∂_t f ≠ 0 and H drifts
    _, _, H2 = _flow_and_energy(_smooth_problem()[0], x0, p0, ts)
    assert spread(H2) > 1e-2


@pytest.mark.slow
def test_backsolve_on_layerwise_theta_is_off_by_order_one():
    """THEORY §7's "gap shrinks at the solver's order" needs t ↦ f(x, θ(t)) smooth on each
    step. For the ResNet's own θ(t) (piecewise constant, one Euler step per layer) the
    backward solve reads the next layer's θ: an O(1) gap, shrinking like O(dt) only with
    several steps per layer."""
    theta, x0, _, _ = problem("tanh", 8, seed=3)
    dts = 1.0 / np.array([8, 16, 32, 64])
    gaps = adjoint_gaps(
        tanh_block,
        theta,
        x0,
        1.0,
        loss,
        dts,
        path="piecewise",
        max_steps=64,
        adjoints=BACKSOLVE,
    )["backsolve"]
    assert float(gaps[0]) > 0.1  # dt = h: O(1)
    assert abs(loglog_fit(dts, gaps).slope - 1.0) <= 0.3


@pytest.mark.parametrize(
    "ts", [[0.0, 1.0, 0.5], [0.0, 0.0, 1.0], [1.0, 0.0], [0.0, np.nan, 1.0], [0.0, 1.0, np.inf]]
)
def test_hamiltonian_flow_rejects_bad_ts_eagerly(ts):
    theta, x0, _, _ = problem("tanh", 1)
    with raises_naming("ts"):
        hamiltonian_flow(tanh_block, theta, x0, x0, jnp.asarray(ts))


def test_hamiltonian_flow_checks_ts_under_jit_and_vmap():
    """The check on ``ts`` survives tracing: eqx.error_if raises at run time, naming ``ts``."""
    theta, x0, _, _ = problem("tanh", 1)
    rk = dict(solver=diffrax.Euler(), stepsize_controller=diffrax.ConstantStepSize(), dt0=0.25)
    flow = jax.jit(lambda ts: hamiltonian_flow(tanh_block, theta, x0, x0, ts, **rk)[0])
    good, bad = jnp.array([0.0, 0.5, 1.0]), jnp.array([0.0, 1.0, 0.5])
    assert flow(good).shape == (3, D)
    with pytest.raises(Exception, match="`ts` must be finite and strictly increasing"):
        flow(bad).block_until_ready()
    batched = jax.jit(jax.vmap(flow))
    assert batched(jnp.stack([good, 2 * good])).shape == (2, 3, D)
    with pytest.raises(Exception, match="`ts` must be finite and strictly increasing"):
        batched(jnp.stack([good, bad])).block_until_ready()
