"""Equinox models: forward passes are characteristics, gradients are co-states (§6–§7)."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from conftest import raises_naming
from jax.scipy.linalg import expm

from hjax.costate import RK4, costate_backward, euler_forward, rk_forward
from hjax.models import LSTM, RNN, SSM, NeuralODE, ResNet, fit
from hjax.rates import loglog_fit

D = 3


X0 = jnp.array([0.5, -1.0, 0.25])


@pytest.fixture(scope="module")
def mlp_net():
    return ResNet(D, 6, key=jr.key(3), block="mlp", width=5, activation="softplus", eps=0.5, T=1.5)


def _phi(x_final):
    return jnp.sum(jnp.sin(x_final)) + 0.5 * x_final @ x_final


@eqx.filter_jit
def _model_and_costate(net, x0):
    """(trajectory, grads by backprop) and (euler_forward, costate_backward) on (f, θ)."""
    traj = net.trajectory(x0)
    grads = jax.grad(lambda params: _phi(params[0](params[1])))((net, x0))
    xs = euler_forward(net.vector_field, net.theta, x0, net.h)
    ps, grad_theta = costate_backward(
        net.vector_field, net.theta, xs, jax.grad(_phi)(xs[-1]), net.h
    )
    return traj, grads, xs, ps, grad_theta


def test_resnet_is_euler_and_its_backprop_is_the_costate(mlp_net):
    traj, (g_net, g_x0), xs, ps, grad_theta = _model_and_costate(mlp_net, X0)
    assert float(jnp.max(jnp.abs(traj - xs))) <= 1e-14
    assert float(jnp.max(jnp.abs(xs[-1] - X0))) > 1e-2  # the layers act
    assert float(jnp.max(jnp.abs(ps[0] - g_x0))) <= 1e-12
    for mine, ref in zip(
        jax.tree_util.tree_leaves(grad_theta), jax.tree_util.tree_leaves(g_net.theta), strict=True
    ):
        assert float(jnp.max(jnp.abs(mine - ref))) <= 1e-12
    # The temperature is a hyperparameter held fixed: zero gradient.
    assert float(g_net.activation.eps) == 0.0


def test_eps_sweep_compiles_once(mlp_net):
    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def forward(net, x):
        return net(x)

    outs = []
    for eps in [0.0, 0.1, 0.5]:
        net = eqx.tree_at(lambda m: m.activation.eps, mlp_net, jnp.asarray(eps))
        outs.append(forward(net, X0))
    assert float(jnp.max(jnp.abs(outs[0] - outs[2]))) > 1e-3  # eps matters


def test_resnet_converges_to_its_ode_at_first_order(key):
    net = ResNet(D, 1, key=key, T=1.0, init_scale=2.0)

    def tied(L):
        # The same layer repeated: ẋ = f(x, θ) autonomous, so the limit is depth-independent.
        return jax.tree_util.tree_map(lambda a: jnp.repeat(a, L, axis=0), net.theta)

    # Reference: 256 classical RK4 steps (error ~ 1e-11), an independent integrator.
    reference = rk_forward(net.vector_field, tied(256), X0, 1.0 / 256, RK4)[-1]
    depths = np.array([8, 16, 32, 64])
    errors = [
        float(
            jnp.linalg.norm(
                euler_forward(net.vector_field, tied(int(L)), X0, 1.0 / L)[-1] - reference
            )
        )
        for L in depths
    ]
    slope = loglog_fit(1.0 / depths, errors).slope
    assert 0.95 <= slope <= 1.05, (slope, errors)


def test_neural_ode_with_euler_steps_is_the_resnet_and_backprop_is_the_costate(key):
    net = ResNet(D, 4, key=key, block="perceptron", T=1.0)
    ode = NeuralODE(
        net, solver=diffrax.Euler(), stepsize_controller=diffrax.ConstantStepSize(), dt0=net.h
    )

    def loss(model):
        x_final = model(X0)
        return 0.5 * x_final @ x_final

    value, grads = eqx.filter_jit(eqx.filter_value_and_grad(loss))(ode)
    xs = euler_forward(net.vector_field, net.theta, X0, net.h)
    assert abs(float(value) - 0.5 * float(xs[-1] @ xs[-1])) <= 1e-14
    _, grad_theta = costate_backward(net.vector_field, net.theta, xs, xs[-1], net.h)
    for mine, ref in zip(
        jax.tree_util.tree_leaves(grad_theta),
        jax.tree_util.tree_leaves(grads.resnet.theta),
        strict=True,
    ):
        assert float(jnp.max(jnp.abs(mine - ref))) <= 1e-12


@pytest.mark.slow
def test_neural_ode_backsolve_adjoint_matches_backprop_through_the_solver(key):
    net = ResNet(D, 2, key=key, block="perceptron", T=1.0)

    def loss(model):
        x_final = model(X0)
        return 0.5 * x_final @ x_final

    tight = dict(stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10))
    g_rec = eqx.filter_grad(loss)(NeuralODE(net, **tight))
    g_back = eqx.filter_grad(loss)(NeuralODE(net, adjoint=diffrax.BacksolveAdjoint(), **tight))
    for a, b in zip(
        jax.tree_util.tree_leaves(g_back.resnet.theta),
        jax.tree_util.tree_leaves(g_rec.resnet.theta),
        strict=True,
    ):
        assert float(jnp.max(jnp.abs(a - b))) <= 1e-6


@pytest.mark.slow
def test_selective_ssm_model_equals_an_explicit_zoh_loop(key):
    model = SSM(2, 3, 1, key=key, selective=True)
    us = _uniform(10, 6, 2)
    deltas = np.log1p(np.exp(np.asarray(us @ model.w_delta + model.b_delta)))
    A, B = np.asarray(model.A), np.asarray(model.B)
    x = np.zeros(3)
    ys = []
    for u, delta in zip(np.asarray(us), deltas, strict=True):
        A_bar = np.asarray(expm(delta * model.A))
        B_bar = np.linalg.solve(A, (A_bar - np.eye(3)) @ B)  # THEORY: A⁻¹(Ā − I)B
        x = A_bar @ x + B_bar @ u
        ys.append(np.asarray(model.C) @ x + np.asarray(model.D) @ u)
    assert np.allclose(model(us), np.stack(ys), rtol=0, atol=1e-12)


def _uniform(seed, *shape):
    """Test data from NumPy's generator (no PRNG compile)."""
    return jnp.asarray(np.random.default_rng(seed).uniform(-1.0, 1.0, shape))


def _sequence_task(batch=16, length=12):
    """Targets: an exponentially weighted running sum of the input (a linear filter)."""
    us = _uniform(7, batch, length, 1)

    def filt(u):
        def step(y, u_k):
            y = 0.6 * y + u_k
            return y, y

        return jax.lax.scan(step, jnp.zeros(1), u)[1]

    return us, jax.vmap(filt)(us)


def _seq_loss(model, us, ys):
    return jnp.mean((jax.vmap(model)(us) - ys) ** 2)


@pytest.mark.parametrize(
    "name", ["rnn", pytest.param("ssm", marks=pytest.mark.slow), "lstm"]
)  # the SSM's expm gradient is the slowest compile here
def test_recurrent_models_train_with_optax(key, name):
    us, ys = _sequence_task()
    model = {
        "rnn": lambda: RNN(1, 8, 1, key=key),
        "ssm": lambda: SSM(1, 4, 1, key=key),
        "lstm": lambda: LSTM(1, 8, 1, key=key),
    }[name]()
    trained, losses = fit(model, _seq_loss, optax.adam(2e-2), 150, us, ys)
    assert float(losses[-1]) < 0.25 * float(losses[0]), (losses[0], losses[-1])
    assert abs(float(_seq_loss(trained, us, ys)) - float(losses[-1])) < 0.1 * float(losses[-1])


def test_resnet_trains_with_optax(key):
    x = _uniform(8, 64, 2)
    target = jnp.stack([x[:, 0] + 0.5 * jnp.sin(3 * x[:, 1]), x[:, 1] - 0.3 * x[:, 0] ** 2], 1)
    net = ResNet(2, 6, key=key, block="maxout", width=4, eps=0.3)  # LSE blocks

    def loss(model, x, y):
        return jnp.mean((jax.vmap(model)(x) - y) ** 2)

    trained, losses = fit(net, loss, optax.adam(2e-2), 150, x, target)
    assert float(losses[-1]) < 0.1 * float(losses[0]), (losses[0], losses[-1])
    assert float(trained.activation.eps) == float(net.activation.eps)  # not trained


@pytest.mark.slow
def test_neural_ode_trains_with_optax(key):
    x = _uniform(9, 32, 2)
    target = jnp.stack([x[:, 0] + 0.5 * jnp.sin(3 * x[:, 1]), x[:, 1] - 0.3 * x[:, 0] ** 2], 1)
    ode = NeuralODE(
        ResNet(2, 2, key=key, block="mlp", width=8),
        stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-6),
    )

    def loss(model, x, y):
        return jnp.mean((jax.vmap(model)(x) - y) ** 2)

    _, losses = fit(ode, loss, optax.adam(2e-2), 60, x, target)
    assert float(losses[-1]) < 0.2 * float(losses[0]), (losses[0], losses[-1])


def test_bad_input_is_rejected_by_name(key):
    with raises_naming("block"):
        ResNet(2, 3, key=key, block="conv")
    with raises_naming("depth"):
        ResNet(2, 0, key=key)
    with raises_naming("delta"):
        SSM(1, 2, 1, key=key, delta=0.0)
    with raises_naming("steps"):
        fit(ResNet(2, 1, key=key), lambda m: jnp.zeros(()), optax.sgd(0.1), 0)
