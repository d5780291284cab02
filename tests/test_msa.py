"""PMP training by the extended method of successive approximations (THEORY §7)."""

import jax
import jax.numpy as jnp
import jax.random as jr
import optax
from conftest import raises_naming

from hjax.costate import euler_forward
from hjax.models import ResNet
from hjax.msa import (
    augmented_hamiltonian,
    compare_msa_backprop,
    msa_init,
    msa_step,
    toy_problem,
    train_msa,
)


def _loss(x_final, y):
    return 0.5 * jnp.mean((x_final[:, -1] - y) ** 2)


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
    x0, y = toy_problem(key, 16)
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


def test_msa_converges_within_twice_the_adam_loss(key):
    curves = compare_msa_backprop(jr.key(0), steps=200)
    msa, adam = curves["msa"], curves["backprop"]
    print(
        f"MSA loss {float(msa[0]):.4f} -> {float(msa[-1]):.4f}; "
        f"Adam loss {float(adam[0]):.4f} -> {float(adam[-1]):.4f}"
    )
    assert float(msa[0]) == float(adam[0])  # same start
    assert float(msa[-1]) < 0.5 * float(msa[0])  # it trains
    assert float(msa[-1]) <= 2.0 * float(adam[-1])


def test_bad_input_is_rejected_by_name(key):
    x0, y = toy_problem(key, 4)
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
    with raises_naming("label_noise"):
        toy_problem(key, 4, label_noise=1.5)
