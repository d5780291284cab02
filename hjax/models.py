r"""Equinox models whose forward passes are Hamiltonian characteristics (THEORY.md §6–§7).

All models are unbatched ``eqx.Module`` s (``jax.vmap`` over examples is the caller's)
built from the vector fields of :mod:`hjax.characteristics`:

* :class:`ResNet` — ``x_{l+1} = x_l + h f(x_l, θ_l)``, layers stacked with
  ``eqx.filter_vmap`` and run with ``lax.scan``; it exposes its field
  (:meth:`ResNet.vector_field`) and stacked parameters (``ResNet.theta``) so that
  :func:`hjax.costate.euler_forward` / :func:`hjax.costate.costate_backward` apply
  (Prop 5.2, Thm 8.4).
* :class:`NeuralODE` — the same field solved with diffrax on ``[0, T = L h]``
  (``θ(t)`` piecewise constant over the layers), adjoint configurable.
* :class:`RNN`, :class:`SSM` (ZOH, optionally selective), :class:`LSTM` — the recurrent
  characteristics of Prop 5.4 and Remark 5.5, with a linear readout.

:func:`fit` trains any of them with an optax optimizer in one compiled ``lax.scan``.

Temperatures (``eps``) are array leaves — sweeping them never recompiles — and are held
fixed in training (``lax.stop_gradient``): they are hyperparameters, not weights.
"""

import functools
import math
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

from . import _validate
from ._types import Array, Float, ScalarLike
from .characteristics import (
    MLP,
    Activation,
    LSTMCell,
    Maxout,
    Perceptron,
    RNNCell,
    lstm_scan,
    maxout_field,
    mlp_field,
    perceptron_field,
    rnn_scan,
    selective_zoh,
    ssm_scan,
    zoh,
)
from .costate import ode_forward

__all__ = ["LSTM", "RNN", "SSM", "NeuralODE", "ResNet", "fit"]

_BLOCKS = ("perceptron", "mlp", "maxout")


def _frozen(activation: Activation) -> Activation:
    """The activation with its temperature excluded from differentiation."""
    return eqx.tree_at(lambda a: a.eps, activation, jax.lax.stop_gradient(activation.eps))


_CHUNK = 1024


def _standard_normals(key: Array, size: int, dtype) -> Array:
    """``size`` i.i.d. N(0, 1) drawn in fixed-size chunks ``normal(fold_in(key, i), (1024,))``.

    Compiling the PRNG for every new shape costs about a second on CPU; fixed chunks
    compile once per dtype, so building many small models stays cheap.
    """
    count = -(-size // _CHUNK)
    chunks = [jr.normal(jr.fold_in(key, i), (_CHUNK,), dtype) for i in range(count)]
    return (chunks[0] if count == 1 else jnp.concatenate(chunks))[:size]


def _draw(key: Array, shapes: list[tuple[int, ...]], dtype, *, leading: int = 0) -> list[Array]:
    """Standard normals of the given shapes from one flat draw.

    With ``leading > 0`` every array gets that extra leading axis (one row per layer).
    """
    sizes = [math.prod(shape) for shape in shapes]
    lead = (leading,) if leading else ()
    flat = _standard_normals(key, math.prod(lead) * sum(sizes), dtype).reshape(lead + (-1,))
    out, start = [], 0
    for shape, size in zip(shapes, sizes, strict=True):
        out.append(flat[..., start : start + size].reshape(lead + shape))
        start += size
    return out


def _block_shapes(block: str, d: int, width: int) -> list[tuple[int, ...]]:
    if block == "perceptron":
        return [(d, d)]
    if block == "mlp":
        return [(width, d), (width,), (d, width)]
    return [(d, width, d), (d, width)]


def _make_block(block: str, d: int, width: int, scale: float, noise: list[Array]):
    """One layer's parameters from its standard normals."""
    dtype = noise[0].dtype
    if block == "perceptron":
        return Perceptron(scale / d**0.5 * noise[0], jnp.zeros((d,), dtype))
    if block == "mlp":
        W1, b1, W2 = noise
        return MLP(scale / d**0.5 * W1, 0.1 * b1, scale / width**0.5 * W2, jnp.zeros((d,), dtype))
    W, b = noise
    return Maxout(scale / d**0.5 * W, 0.1 * b)


def _block_field(block: str, x: Array, theta_l: Any, activation: Activation) -> Array:
    if block == "perceptron":
        return perceptron_field(x, theta_l, activation)
    if block == "mlp":
        return mlp_field(x, theta_l, activation)
    return maxout_field(x, theta_l, activation.eps)


def _closed_field(block: str, kind: str, x: Array, params_l: tuple[Any, Array]) -> Array:
    """The block field with every array an explicit argument (no closed-over leaves)."""
    theta_l, eps = params_l
    return _block_field(block, x, theta_l, Activation(kind, jax.lax.stop_gradient(eps)))


class ResNet(eqx.Module):
    r"""Residual network ``x_{l+1} = x_l + h f(x_l, θ_l)``: Euler characteristics (Prop 5.2).

    Blocks (``block``): ``"perceptron"`` ``σ(Wx + b)``, ``"mlp"`` ``W₂σ(W₁x + b₁) + b₂``
    (hidden ``width``), ``"maxout"`` ``f_k = lse(W_k x + b_k, eps)`` (``width`` atoms per
    coordinate; only ``eps`` of the activation is used). The ``L = depth`` layers' parameters
    are one stacked pytree ``theta`` (``eqx.filter_vmap`` of the block initializer), and the
    forward pass is a ``lax.scan`` over them. The state space is ``R^d`` (pad or embed the
    input outside, e.g. augmented-ODE zero padding).

    ``euler_forward(model.vector_field, model.theta, x0, model.h)`` is the model's
    trajectory, and ``costate_backward`` on it is backpropagation (Thm 8.4).

    Args:
        d: state dimension.
        depth: number of layers ``L``.
        key: PRNG key.
        block: ``"perceptron"``, ``"mlp"`` or ``"maxout"``.
        width: hidden width (``"mlp"``) or atoms per coordinate (``"maxout"``); default d.
        activation: ``Activation`` kind (``"tanh"``, ``"relu"``, ``"softplus"``, ``"sigmoid"``).
        eps: the activation's temperature (array leaf, not trained).
        T: time horizon; the step is ``h = T / depth``.
        init_scale: scale of the random weights.
        dtype: parameter dtype (default: JAX's default float).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> net = ResNet(2, 4, key=jax.random.key(0))
        >>> net(jnp.ones(2)).shape, net.trajectory(jnp.ones(2)).shape
        ((2,), (5, 2))
    """

    theta: Any
    activation: Activation
    block: str = eqx.field(static=True)
    h: float = eqx.field(static=True)

    def __init__(
        self,
        d: int,
        depth: int,
        *,
        key: Array,
        block: str = "perceptron",
        width: int | None = None,
        activation: str = "tanh",
        eps: ScalarLike = 1.0,
        T: float = 1.0,
        init_scale: float = 1.0,
        dtype=None,
    ):
        if block not in _BLOCKS:
            raise ValueError(f"`block` must be one of {_BLOCKS}; got {block!r}.")
        if depth < 1:
            raise ValueError(f"`depth` must be >= 1; got {depth}.")
        if not T > 0:
            raise ValueError(f"`T` must be > 0; got {T}.")
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        width = d if width is None else width
        noise = _draw(key, _block_shapes(block, d, width), dtype, leading=depth)
        self.theta = eqx.filter_vmap(lambda n: _make_block(block, d, width, init_scale, n))(noise)
        self.activation = Activation(activation, jnp.asarray(eps, dtype))
        self.block = block
        self.h = float(T) / depth

    @property
    def depth(self) -> int:
        return jax.tree_util.tree_leaves(self.theta)[0].shape[0]

    def vector_field(self, x: Float[Array, " d"], theta_l: Any) -> Float[Array, " d"]:
        r"""One layer's ``f(x, θ_l)`` (the signature ``hjax.costate`` takes)."""
        return _block_field(self.block, x, theta_l, _frozen(self.activation))

    def trajectory(self, x0: Float[Array, " d"]) -> Float[Array, "nodes d"]:
        r"""All states ``x_0, …, x_L`` (``lax.scan`` over the stacked layers)."""
        dynamic, static = eqx.partition(self.theta, eqx.is_array)

        def step(x, dyn_l):
            x_next = x + self.h * self.vector_field(x, eqx.combine(dyn_l, static))
            return x_next, x_next

        _, xs = jax.lax.scan(step, x0, dynamic)
        return jnp.concatenate([x0[None], xs], axis=0)

    def __call__(self, x0: Float[Array, " d"]) -> Float[Array, " d"]:
        r"""The flow map ``x_0 ↦ x_L``."""
        return self.trajectory(x0)[-1]


class NeuralODE(eqx.Module):
    r"""The ResNet's continuous-depth limit ``ẋ = f(x, θ(t))`` on ``[0, T]``, by diffrax.

    Prop 5.2: the ResNet of ``resnet`` is forward Euler with step ``h`` for this ODE, with
    ``θ(t) = θ_l`` on ``[l h, (l+1) h)`` (``path="piecewise"``; ``"linear"`` interpolates
    the layers). The solve is :func:`hjax.costate.ode_forward`, configured by diffrax
    objects: ``solver`` (default ``Tsit5()``), ``stepsize_controller`` (default
    ``PIDController(rtol=1e-6, atol=1e-8)``; ``ConstantStepSize()`` with ``dt0 = h`` and
    ``solver=Euler()`` is the ResNet itself), and ``adjoint``, how reverse mode
    differentiates it (default ``RecursiveCheckpointAdjoint()``, i.e. backprop through the
    solver; ``BacksolveAdjoint()`` is the continuous co-state).

    Args:
        resnet: the :class:`ResNet` whose field and parameters are integrated.
        solver, stepsize_controller, dt0, adjoint, max_steps, path: solve configuration.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> net = ResNet(2, 4, key=jax.random.key(0))
        >>> NeuralODE(net)(jnp.ones(2)).shape
        (2,)
    """

    resnet: ResNet
    solver: diffrax.AbstractSolver | None = None
    stepsize_controller: diffrax.AbstractStepSizeController | None = None
    adjoint: diffrax.AbstractAdjoint | None = None
    dt0: float | None = eqx.field(static=True, default=None)
    max_steps: int = eqx.field(static=True, default=4096)
    path: str = eqx.field(static=True, default="piecewise")

    def __call__(self, x0: Float[Array, " d"]) -> Float[Array, " d"]:
        r"""``x(T)`` with ``T = depth · h``."""
        net = self.resnet
        # Parameters (the temperature too, broadcast over layers) travel as explicit
        # arguments: BacksolveAdjoint cannot differentiate closed-over arrays.
        params = (net.theta, jnp.broadcast_to(net.activation.eps, (net.depth,)))
        return ode_forward(
            functools.partial(_closed_field, net.block, net.activation.kind),
            params,
            x0,
            net.h * net.depth,
            path=self.path,
            solver=self.solver,
            stepsize_controller=(
                diffrax.PIDController(rtol=1e-6, atol=1e-8)
                if self.stepsize_controller is None
                else self.stepsize_controller
            ),
            dt0=self.dt0,
            adjoint=self.adjoint,
            max_steps=self.max_steps,
        )


class RNN(eqx.Module):
    r"""RNN ``h_{k+1} = σ(W h_k + U u_k + b)``, ``y_k = C h_{k+1} + c`` (Prop 5.4(a)).

    The recurrence is unit-step Euler of ``ḣ = σ(Wh + Uu(t) + b) − h``
    (:func:`hjax.characteristics.rnn_field`); ``h_0 = 0``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> RNN(1, 4, 1, key=jax.random.key(0))(jnp.ones((5, 1))).shape
        (5, 1)
    """

    cell: RNNCell
    C: Float[Array, "p d"]
    c: Float[Array, " p"]
    activation: Activation

    def __init__(
        self,
        in_size: int,
        hidden: int,
        out_size: int,
        *,
        key: Array,
        activation: str = "tanh",
        eps: ScalarLike = 1.0,
        dtype=None,
    ):
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        W, U, C = _draw(key, [(hidden, hidden), (hidden, in_size), (out_size, hidden)], dtype)
        self.cell = RNNCell(
            0.5 / hidden**0.5 * W, 1.0 / in_size**0.5 * U, jnp.zeros((hidden,), dtype)
        )
        self.C = 1.0 / hidden**0.5 * C
        self.c = jnp.zeros((out_size,), dtype)
        self.activation = Activation(activation, jnp.asarray(eps, dtype))

    def __call__(self, us: Float[Array, "K m"]) -> Float[Array, "K p"]:
        h0 = jnp.zeros(self.cell.b.shape, us.dtype)
        hs = rnn_scan(self.cell, h0, us, _frozen(self.activation))
        return hs[1:] @ self.C.T + self.c


class SSM(eqx.Module):
    r"""Linear SSM ``ẋ = Ax + Bu``, ZOH-discretized, ``y_k = C x_{k+1} + D u_k`` (Prop 5.4(b)).

    ``x_{k+1} = Ā x_k + B̄ u_k`` with ``(Ā, B̄) = zoh(A, B, Δ)``, ``Δ = exp(log_delta)``;
    ``x_0 = 0``. With ``selective=True`` the step is input-dependent (Mamba's selective
    scan), ``Δ_k = softplus(w_Δ · u_k + b_Δ)``, and the characteristics non-autonomous.
    ``A`` is initialised near ``−I`` (stable).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> SSM(1, 3, 1, key=jax.random.key(0), selective=True)(jnp.ones((5, 1))).shape
        (5, 1)
    """

    A: Float[Array, "n n"]
    B: Float[Array, "n m"]
    C: Float[Array, "p n"]
    D: Float[Array, "p m"]
    log_delta: Float[Array, ""]
    w_delta: Float[Array, " m"] | None
    b_delta: Float[Array, ""] | None

    def __init__(
        self,
        in_size: int,
        state: int,
        out_size: int,
        *,
        key: Array,
        selective: bool = False,
        delta: float = 0.5,
        dtype=None,
    ):
        if not delta > 0:
            raise ValueError(f"`delta` must be > 0; got {delta}.")
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        shapes = [(state, state), (state, in_size), (out_size, state), (in_size,)]
        A, B, C, w = _draw(key, shapes, dtype)
        self.A = -jnp.eye(state, dtype=dtype) + 0.2 / state * A
        self.B = 1.0 / in_size**0.5 * B
        self.C = 1.0 / state**0.5 * C
        self.D = jnp.zeros((out_size, in_size), dtype)
        self.log_delta = jnp.log(jnp.asarray(delta, dtype))
        if selective:
            self.w_delta = 0.1 * w
            # softplus(b_delta) = delta at u = 0.
            self.b_delta = jnp.log(jnp.expm1(jnp.asarray(delta, dtype)))
        else:
            self.w_delta = None
            self.b_delta = None

    @property
    def selective(self) -> bool:
        return self.w_delta is not None

    def discretize(
        self, us: Float[Array, "K m"]
    ) -> tuple[Float[Array, "*K n n"], Float[Array, "*K n m"]]:
        r"""``(Ā, B̄)``, per step ``(K, n, ·)`` when selective."""
        if self.w_delta is None:
            return zoh(self.A, self.B, jnp.exp(self.log_delta))
        deltas = jax.nn.softplus(us @ self.w_delta + self.b_delta)
        return selective_zoh(self.A, self.B, deltas)

    def __call__(self, us: Float[Array, "K m"]) -> Float[Array, "K p"]:
        A_bar, B_bar = self.discretize(us)
        xs = ssm_scan(A_bar, B_bar, jnp.zeros(self.A.shape[:1], us.dtype), us)
        return xs[1:] @ self.C.T + us @ self.D.T


class LSTM(eqx.Module):
    r"""LSTM with a linear readout, ``y_k = C h_{k+1} + c`` (Remark 5.5).

    Unit-step partitioned Euler of the continuous-time cell
    ``ċ = (f − 1) ⊙ c + i ⊙ g̃``, ``ḣ = o ⊙ tanh(c) − h``
    (:func:`hjax.characteristics.lstm_scan`); gates ``σ(z/eps)`` are gradients of two-neuron
    LSE layers (eps = 1: the standard LSTM; eps → 0: selectors). ``h_0 = c_0 = 0``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> LSTM(1, 4, 1, key=jax.random.key(0))(jnp.ones((5, 1))).shape
        (5, 1)
    """

    cell: LSTMCell
    C: Float[Array, "p d"]
    c: Float[Array, " p"]
    eps: Float[Array, ""]

    def __init__(
        self,
        in_size: int,
        hidden: int,
        out_size: int,
        *,
        key: Array,
        eps: ScalarLike = 1.0,
        dtype=None,
    ):
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        shapes = [(4, hidden, hidden), (4, hidden, in_size), (out_size, hidden)]
        W, U, C = _draw(key, shapes, dtype)
        # Forget-gate bias 1 (the usual LSTM initialisation: remember by default).
        b = jnp.zeros((4, hidden), dtype).at[0].set(1.0)
        self.cell = LSTMCell(1.0 / hidden**0.5 * W, 1.0 / in_size**0.5 * U, b)
        self.C = 1.0 / hidden**0.5 * C
        self.c = jnp.zeros((out_size,), dtype)
        self.eps = _validate.nonnegative_scalar("eps", eps, dtype)

    def __call__(self, us: Float[Array, "K m"]) -> Float[Array, "K p"]:
        zeros = jnp.zeros(self.cell.b.shape[1:], us.dtype)
        hs, _ = lstm_scan(self.cell, zeros, zeros, us, jax.lax.stop_gradient(self.eps))
        return hs[1:] @ self.C.T + self.c


def _optax_update(
    optimizer: optax.GradientTransformation, grads: Any, state: optax.OptState, params: Any
) -> tuple[Any, optax.OptState]:
    """``optimizer.update`` traced under standard dtype promotion.

    optax's bias corrections raise a Python float to an integer step count, which JAX
    rejects under ``jax_numpy_dtype_promotion="strict"``; hjax's training loops must work
    in either mode.
    """
    with jax.numpy_dtype_promotion("standard"):
        return optimizer.update(grads, state, params)


def fit(
    model: eqx.Module,
    loss: Callable[..., Array],
    optimizer: optax.GradientTransformation,
    steps: int,
    *data: Any,
) -> tuple[eqx.Module, Float[Array, " steps"]]:
    r"""Train ``model`` with ``optimizer`` for ``steps`` full-batch steps (one ``lax.scan``).

    The trainable part is every floating array leaf (``eqx.is_inexact_array``); the loss
    is ``loss(model, *data) -> scalar`` (vmap over examples inside it).

    Returns:
        ``(trained model, losses (steps,))``, ``losses[k]`` the loss before step k.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> net = ResNet(2, 2, key=jax.random.key(0))
        >>> loss = lambda m, x: jnp.mean((jax.vmap(m)(x) - 1.0) ** 2)
        >>> _, losses = fit(net, loss, optax.adam(1e-2), 5, jnp.ones((3, 2)))
        >>> losses.shape
        (5,)
    """
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1; got {steps}.")
    return _fit(model, loss, optimizer, steps, data)


@eqx.filter_jit
def _fit(model, loss, optimizer, steps, data):
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def value(p):
        return loss(eqx.combine(p, static), *data)

    def step(carry, _):
        p, state = carry
        value_k, grads = jax.value_and_grad(value)(p)
        updates, state = _optax_update(optimizer, grads, state, p)
        return (optax.apply_updates(p, updates), state), value_k

    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
    return eqx.combine(params, static), losses
