"""On an accelerator, the compiled kernels agree with the CPU float64 results."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hjax

pytestmark = pytest.mark.gpu


def _accelerator():
    return next(d for d in jax.devices() if d.platform in ("gpu", "tpu"))


def test_sweep_on_accelerator_matches_cpu():
    key_y, key_x = jax.random.split(jax.random.key(0))
    y = jax.random.normal(key_y, (4096, 2))
    x = jax.random.normal(key_x, (256, 2))
    g = jnp.linalg.norm(y, axis=-1)
    eps = jnp.concatenate([jnp.zeros(1), jnp.logspace(-3, 0, 31)])
    widths = tuple(2**k for k in range(3, 13))
    cpu = hjax.hopf_cole_sweep(x, y, g, 1.0, eps, widths, point_chunk=64)
    args = jax.device_put((x, y, g, eps), _accelerator())
    on_device = hjax.hopf_cole_sweep(*args[:3], 1.0, args[3], widths, point_chunk=64)
    assert on_device.devices() == {_accelerator()}
    np.testing.assert_allclose(np.asarray(on_device), np.asarray(cpu), rtol=1e-12, atol=1e-12)


def test_costate_on_accelerator_matches_autodiff():
    L, d = 64, 16
    key_w, key_x = jax.random.split(jax.random.key(1))
    theta = {"W": 0.3 * jax.random.normal(key_w, (L, d, d)), "b": jnp.zeros((L, d))}

    def f(x, th):
        return jnp.tanh(th["W"] @ x + th["b"])

    with jax.default_device(_accelerator()):
        x0 = jax.random.normal(key_x, (d,))
        h = 1.0 / L
        xs = hjax.euler_forward(f, theta, x0, h)
        _, grads = hjax.costate_backward(f, theta, xs, xs[-1], h)

        def loss(th):
            return 0.5 * jnp.sum(hjax.euler_forward(f, th, x0, h)[-1] ** 2)

        expected = jax.grad(loss)(theta)
    for leaf, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(leaf), np.asarray(ref), rtol=1e-10, atol=1e-12)
