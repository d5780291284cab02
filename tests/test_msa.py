"""PMP training by the extended method of successive approximations (THEORY §7).

E-MSA against Adam on a full task is the experiment ``experiments/msa_vs_backprop.py``
(run by ``tests/test_experiments.py``).
"""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from conftest import raises_naming

from hjax.costate import euler_forward
from hjax.models import ResNet
from hjax.msa import augmented_hamiltonian, msa_init, msa_step, train_msa


def _loss(x_final, y):
    return 0.5 * jnp.mean((x_final[:, -1] - y) ** 2)


def _data(n, d=4, seed=0):
    """Initial states (z, 0, …, 0), z ~ U([−1, 1]²), and ±1 labels (inside a disc or not)."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(-1.0, 1.0, (n, 2))
    labels = np.where(np.sum(z**2, axis=1) < 2 / np.pi, 1.0, -1.0)
    return jnp.asarray(np.concatenate([z, np.zeros((n, d - 2))], axis=1)), jnp.asarray(labels)


def test_augmented_hamiltonian_penalizes_state_and_costate_residuals():
    f = lambda x, a: a * jnp.tanh(x)  # noqa: E731
    x, lam_next = jnp.array([0.3, -0.7]), jnp.array([1.0, 2.0])
    h, a = 0.25, 1.5
    fx = a * jnp.tanh(x)
    x_next = x + h * fx
    lam = lam_next + h * a * (1 - jnp.tanh(x) ** 2) * lam_next  # exact co-state step
    # Consistent states and co-states: both penalties vanish, H̃ = λ_{l+1}·f for any ρ.
    value = augmented_hamiltonian(f, a, x, x_next, lam, lam_next, h, 7.0)
    assert abs(float(value - lam_next @ fx)) <= 1e-15
    # Shifted states: exactly −ρ/2 times the squared residuals.
    dx, dlam = jnp.array([0.1, 0.0]), jnp.array([0.0, -0.2])
    value = augmented_hamiltonian(f, a, x, x_next + dx, lam + dlam, lam_next, h, 7.0)
    expected = lam_next @ fx - 3.5 * (dx @ dx) - 3.5 * (dlam @ dlam)
    assert abs(float(value - expected)) <= 1e-14


def test_one_inner_sgd_step_is_gradient_descent_on_the_loss(key):
    # ∂_θ (1/B)Σ λ·f = −(1/h) ∂loss/∂θ and the penalties are flat at θ: one sgd(α) ascent
    # step is a gradient-descent step of rate α/h, whatever ρ.
    x0, y = _data(16)
    net = ResNet(4, 5, key=jr.fold_in(key, 1), block="mlp", width=6, T=1.0)
    alpha = 0.01
    opt = optax.sgd(alpha)
    theta, _, value = msa_step(
        net.vector_field, net.theta, msa_init(opt, net.theta), x0, y, _loss, net.h,
        optimizer=opt, rho=5.0, inner_steps=1,
    )  # fmt: skip

    def loss_of(th):
        xs = jax.vmap(euler_forward, in_axes=(None, None, 0, None))(net.vector_field, th, x0, net.h)
        return _loss(xs[:, -1], y)

    ref_value, grads = jax.value_and_grad(loss_of)(net.theta)
    assert abs(float(value - ref_value)) <= 1e-14
    expected = jax.tree_util.tree_map(lambda t, g: t - alpha / net.h * g, net.theta, grads)
    for mine, ref in zip(
        jax.tree_util.tree_leaves(theta), jax.tree_util.tree_leaves(expected), strict=True
    ):
        assert float(jnp.max(jnp.abs(mine - ref))) <= 1e-12
    # It moved: the step is not trivially zero.
    moved = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(
            jax.tree_util.tree_leaves(theta), jax.tree_util.tree_leaves(net.theta), strict=True
        )
    )
    assert moved > 1e-4


def test_train_msa_is_msa_steps_with_a_carried_optimizer_state(key):
    """The compiled loop = msa_step iterated by hand, the inner Adam state warm-started."""
    x0, y = _data(8)
    net = ResNet(4, 3, key=key, T=1.0)
    opt = optax.adam(0.05)
    kw = dict(optimizer=opt, rho=2.0, inner_steps=2)
    theta, losses = train_msa(net.vector_field, net.theta, x0, y, _loss, net.h, steps=3, **kw)
    by_hand, state, values = net.theta, msa_init(opt, net.theta), []
    for _ in range(3):
        by_hand, state, value = msa_step(
            net.vector_field, by_hand, state, x0, y, _loss, net.h, **kw
        )
        values.append(float(value))
    assert np.allclose(np.asarray(losses), values, rtol=1e-12, atol=0)
    assert values[-1] < values[0]  # it trains
    for a, b in zip(
        jax.tree_util.tree_leaves(theta), jax.tree_util.tree_leaves(by_hand), strict=True
    ):
        assert float(jnp.max(jnp.abs(a - b))) <= 1e-12


def test_bad_input_is_rejected_by_name(key):
    x0, y = _data(4)
    net = ResNet(4, 2, key=key)
    opt = optax.sgd(0.1)
    state = msa_init(opt, net.theta)
    args = (net.vector_field, net.theta, state, x0, y, _loss, net.h)
    with raises_naming("rho"):
        msa_step(*args, optimizer=opt, rho=-1.0)
    with raises_naming("inner_steps"):
        msa_step(*args, optimizer=opt, inner_steps=0)
    with raises_naming("h"):
        msa_step(*args[:-1], 0.0, optimizer=opt)
    with raises_naming("x0"):
        msa_step(*args[:3], x0[0], *args[4:], optimizer=opt)
    with raises_naming("steps"):
        train_msa(net.vector_field, net.theta, x0, y, _loss, net.h, steps=0, optimizer=opt)
