r"""Training by the Pontryagin maximum principle: the extended method of successive approximations.

THEORY.md §7 (Thm 8.4): the forward pass of a ResNet ``x_{l+1} = x_l + h f(x_l, θ_l)``
and its backward pass are Hamilton's equations for ``H(x, p, θ) = p · f(x, θ)``. The
maximum principle (PMP) asks, in addition, that each ``θ_l`` maximize the Hamiltonian
summed over the training set. Li, Chen, Tai & E (2018), "Maximum principle based algorithms
for deep learning" (JMLR 18(165)), turn this into a training algorithm, E-MSA. Each
iteration:

1. forward states ``x^i_l`` (:func:`hjax.costate.euler_forward`, vmapped over the
   ``B`` samples);
2. backward co-states ``λ^i_l`` (:func:`hjax.costate.costate_backward`) from
   ``λ^i_L = −∂ℓ_i/∂x^i_L`` — the PMP sign, ``λ = −p`` with ``p`` THEORY's co-state, so
   that the optimal θ *maximizes* H (``ℓ_i`` is sample i's loss, ``loss = mean_i ℓ_i``);
3. each layer's ``θ_l`` takes a few ascent steps on the augmented Hamiltonian

.. math::

    \tilde H_l(θ) = \frac1B\sum_i \Big[ λ^i_{l+1}\cdot f(x^i_l, θ)
        - \tfrac{ρ}{2}\lVert x^i_{l+1} - x^i_l - h f(x^i_l, θ)\rVert^2
        - \tfrac{ρ}{2}\lVert λ^i_l - λ^i_{l+1} - h\,\partial_x H(x^i_l, λ^i_{l+1}, θ)\rVert^2
      \Big],

   with the states and co-states held fixed. The penalties vanish at the current θ and
   keep the maximization from leaving the region where the forward (x) and backward (λ)
   equations stay satisfied; ρ = 0 is the basic MSA. All layers are maximized at once:
   ``H̃_l`` depends only on ``θ_l``, so one gradient of ``Σ_l H̃_l`` with respect to the
   stacked θ holds every layer's ascent direction (vectorized over layers).

The inner ascent is any optax transformation, its state carried from one iteration to
the next (warm start). Since ``∂_θ [(1/B)Σ_i λ^i_{l+1}·f] = −(1/h) ∂ loss/∂θ_l`` and both
penalties have zero gradient at the current θ, one inner step of ``optax.sgd(α)`` is
exactly gradient descent on the loss with rate ``α/h``, and one step of a scale-invariant
optimizer (Adam) is that optimizer on backprop's gradient; further inner steps, on the
frozen states and co-states, are what makes MSA a different algorithm.
:func:`train_backprop` is the baseline (optax on ``jax.grad`` of the same loss).
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from . import _validate
from ._types import Array, ArrayLike, Float, ScalarLike
from .costate import costate_backward, euler_forward
from .models import _optax_update

__all__ = [
    "augmented_hamiltonian",
    "msa_init",
    "msa_step",
    "train_backprop",
    "train_msa",
]

VectorField = Callable[[Array, Any], Array]
Loss = Callable[[Array, Any], Array]


def augmented_hamiltonian(
    f: VectorField,
    theta_l: Any,
    x: Float[ArrayLike, " d"],
    x_next: Float[ArrayLike, " d"],
    lam: Float[ArrayLike, " d"],
    lam_next: Float[ArrayLike, " d"],
    h: ScalarLike,
    rho: ScalarLike,
) -> Float[Array, ""]:
    r"""E-MSA's augmented Hamiltonian of one layer and one sample (Li et al. 2018, §3).

    .. math::

        \tilde H(θ) = λ_{l+1}\cdot f(x_l, θ)
            - \tfrac{ρ}{2}\lVert x_{l+1} - x_l - h f(x_l, θ)\rVert^2
            - \tfrac{ρ}{2}\lVert λ_l - λ_{l+1} - h (\partial_x f(x_l, θ))^\top λ_{l+1}\rVert^2 .

    The two penalties are the residuals of the forward (state) and backward (co-state)
    equations at θ: both vanish when ``x``, ``λ`` were computed with θ itself.

    Args:
        f: one layer's field ``f(x, θ_l)``.
        theta_l: one layer's parameters.
        x, x_next: states ``x_l``, ``x_{l+1}``, each ``(d,)``.
        lam, lam_next: co-states ``λ_l``, ``λ_{l+1}``, each ``(d,)``.
        h: step size.
        rho: penalty ``ρ >= 0``.

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda x, a: a * x
        >>> x, lam = jnp.ones(1), jnp.ones(1)
        >>> float(augmented_hamiltonian(f, 2.0, x, 1.5 * x, lam, 2 * lam, 0.25, 1.0))
        2.0
    """
    dtype = _validate.float_dtype(x, x_next, lam, lam_next)
    x, x_next, lam, lam_next = (jnp.asarray(a, dtype) for a in (x, x_next, lam, lam_next))
    h = _validate.as_float_scalar("h", h, dtype)
    rho = _validate.as_float_scalar("rho", rho, dtype)
    fx, vjp = jax.vjp(lambda x_: jnp.asarray(f(x_, theta_l), dtype), x)
    (H_x,) = vjp(lam_next)
    state_residual = x_next - x - h * fx
    costate_residual = lam - lam_next - h * H_x
    return (
        jnp.vdot(lam_next, fx)
        - rho / 2 * jnp.vdot(state_residual, state_residual)
        - rho / 2 * jnp.vdot(costate_residual, costate_residual)
    )


def _forward_backward(f, theta, x0, targets, loss, h):
    """States (B, L+1, d), PMP co-states λ = −B ∂loss/∂x (B, L+1, d) and the loss."""
    xs = jax.vmap(euler_forward, in_axes=(None, None, 0, None))(f, theta, x0, h)
    value, grad_final = jax.value_and_grad(loss)(xs[:, -1], targets)
    lam_final = -x0.shape[0] * grad_final
    lams, _ = jax.vmap(costate_backward, in_axes=(None, None, 0, 0, None))(
        f, theta, xs, lam_final, h
    )
    return xs, lams, value


def _check(x0: Array, h, rho, inner_steps: int, dtype) -> tuple[Array, Array]:
    if x0.ndim != 2:
        raise ValueError(f"`x0` must have shape (B, d): a batch of initial states; got {x0.shape}.")
    if inner_steps < 1:
        raise ValueError(f"`inner_steps` must be >= 1; got {inner_steps}.")
    h = _validate.positive_scalar("h", h, dtype)
    rho = _validate.nonnegative_scalar("rho", rho, dtype)
    return h, rho


def _msa_update(f, theta, opt_state, x0, targets, loss, h, rho, optimizer, inner_steps):
    xs, lams, value = _forward_backward(f, theta, x0, targets, loss, h)
    dynamic, static = eqx.partition(theta, eqx.is_inexact_array)
    # Per-layer data, layer axis first: (L, B, d).
    x_l, x_next = jnp.swapaxes(xs[:, :-1], 0, 1), jnp.swapaxes(xs[:, 1:], 0, 1)
    lam_l, lam_next = jnp.swapaxes(lams[:, :-1], 0, 1), jnp.swapaxes(lams[:, 1:], 0, 1)
    per_sample = jax.vmap(augmented_hamiltonian, in_axes=(None, None, 0, 0, 0, 0, None, None))

    def total(dyn):
        def layer(dyn_l, x, xn, lam, lamn):
            theta_l = eqx.combine(dyn_l, static)
            return jnp.mean(per_sample(f, theta_l, x, xn, lam, lamn, h, rho))

        return jnp.sum(jax.vmap(layer)(dyn, x_l, x_next, lam_l, lam_next))

    def ascent(carry, _):
        dyn, state = carry
        grads = jax.tree_util.tree_map(jnp.negative, jax.grad(total)(dyn))
        updates, state = _optax_update(optimizer, grads, state, dyn)
        return (optax.apply_updates(dyn, updates), state), None

    (dynamic, opt_state), _ = jax.lax.scan(ascent, (dynamic, opt_state), None, length=inner_steps)
    return eqx.combine(dynamic, static), opt_state, value


_msa_update_jit = eqx.filter_jit(_msa_update)


def msa_init(optimizer: optax.GradientTransformation, theta: Any) -> optax.OptState:
    """The inner optimizer's initial state for the floating leaves of ``theta``."""
    return optimizer.init(eqx.filter(theta, eqx.is_inexact_array))


def msa_step(
    f: VectorField,
    theta: Any,
    opt_state: optax.OptState,
    x0: Float[ArrayLike, "B d"],
    targets: Any,
    loss: Loss,
    h: ScalarLike,
    *,
    optimizer: optax.GradientTransformation,
    rho: ScalarLike = 0.0,
    inner_steps: int = 1,
) -> tuple[Any, optax.OptState, Float[Array, ""]]:
    r"""One E-MSA iteration: forward states, backward co-states, maximize ``H̃`` per layer.

    See the module docstring (Li, Chen, Tai & E 2018; THEORY §7). The maximization runs
    ``inner_steps`` steps of ``optimizer`` on ``−Σ_l H̃_l`` (all layers at once), starting
    from ``opt_state`` (:func:`msa_init`; carry it between iterations).

    Args:
        f: one layer's field ``f(x, θ_l)``.
        theta: parameters stacked over ``L`` layers.
        opt_state: the inner optimizer's state.
        x0: initial states ``(B, d)``.
        targets: anything ``loss`` needs besides the final states.
        loss: ``loss(x_L (B, d), targets) -> scalar``, the mean of per-sample losses.
        h: step size ``> 0``.
        optimizer: optax transformation for the inner ascent.
        rho: penalty ``ρ >= 0`` (0: basic MSA).
        inner_steps: ascent steps per iteration, ``>= 1``.

    Returns:
        ``(new theta, new opt_state, loss at the old theta)``.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> f = lambda x, a: a * x
        >>> loss = lambda xL, y: jnp.mean((xL - y) ** 2)
        >>> theta, opt = jnp.zeros((2, 1)), optax.sgd(0.1)
        >>> theta, state, value = msa_step(f, theta, msa_init(opt, theta), jnp.ones((3, 1)),
        ...                                2.0, loss, 0.5, optimizer=opt)
        >>> float(value)
        1.0
    """
    dtype = _validate.float_dtype(x0)
    x0 = jnp.asarray(x0, dtype)
    h, rho = _check(x0, h, rho, inner_steps, dtype)
    return _msa_update_jit(f, theta, opt_state, x0, targets, loss, h, rho, optimizer, inner_steps)


def train_msa(
    f: VectorField,
    theta: Any,
    x0: Float[ArrayLike, "B d"],
    targets: Any,
    loss: Loss,
    h: ScalarLike,
    *,
    steps: int,
    optimizer: optax.GradientTransformation,
    rho: ScalarLike = 0.0,
    inner_steps: int = 1,
) -> tuple[Any, Float[Array, " steps"]]:
    r"""``steps`` iterations of :func:`msa_step` in one compiled ``lax.scan``.

    The inner optimizer's state starts at :func:`msa_init` and is carried across
    iterations.

    Returns:
        ``(theta, losses)``, ``losses[k]`` the loss before iteration k.
    """
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1; got {steps}.")
    dtype = _validate.float_dtype(x0)
    x0 = jnp.asarray(x0, dtype)
    h, rho = _check(x0, h, rho, inner_steps, dtype)
    return _train_msa(f, theta, x0, targets, loss, h, rho, optimizer, inner_steps, steps)


@eqx.filter_jit
def _train_msa(f, theta, x0, targets, loss, h, rho, optimizer, inner_steps, steps):
    def outer(carry, _):
        th, state = carry
        th, state, value = _msa_update(
            f, th, state, x0, targets, loss, h, rho, optimizer, inner_steps
        )
        return (th, state), value

    (theta, _), losses = jax.lax.scan(
        outer, (theta, msa_init(optimizer, theta)), None, length=steps
    )
    return theta, losses


def train_backprop(
    f: VectorField,
    theta: Any,
    x0: Float[ArrayLike, "B d"],
    targets: Any,
    loss: Loss,
    h: ScalarLike,
    *,
    steps: int,
    optimizer: optax.GradientTransformation,
) -> tuple[Any, Float[Array, " steps"]]:
    r"""Baseline: ``optimizer`` on ``jax.grad`` (backprop) of the same loss, full batch.

    Returns:
        ``(theta, losses)``, ``losses[k]`` the loss before step k.
    """
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1; got {steps}.")
    dtype = _validate.float_dtype(x0)
    x0 = jnp.asarray(x0, dtype)
    h = _validate.positive_scalar("h", h, dtype)
    return _train_backprop(f, theta, x0, targets, loss, h, optimizer, steps)


@eqx.filter_jit
def _train_backprop(f, theta, x0, targets, loss, h, optimizer, steps):
    dynamic, static = eqx.partition(theta, eqx.is_inexact_array)

    def value(dyn):
        xs = jax.vmap(euler_forward, in_axes=(None, None, 0, None))(
            f, eqx.combine(dyn, static), x0, h
        )
        return loss(xs[:, -1], targets)

    def step(carry, _):
        dyn, state = carry
        value_k, grads = jax.value_and_grad(value)(dyn)
        updates, state = _optax_update(optimizer, grads, state, dyn)
        return (optax.apply_updates(dyn, updates), state), value_k

    (dynamic, _), losses = jax.lax.scan(
        step, (dynamic, optimizer.init(dynamic)), None, length=steps
    )
    return eqx.combine(dynamic, static), losses
