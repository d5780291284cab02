r"""Backpropagation = Pontryagin co-state (THEORY.md §6–§7, Thm 8.4, Prop E.6).

A residual network ``x_{l+1} = x_l + h f(x_l, θ_l)`` is forward Euler for the
x-characteristic ``ẋ = ∂_p H`` of the Hamiltonian ``H(x, p, θ) = p · f(x, θ)``.
Backpropagation of a loss ``Φ(x_L)`` is, exactly and at finite ``h``, the discrete
co-state recursion

.. math::

    p_L = \nabla Φ(x_L), \qquad
    p_l = p_{l+1} + h\, (\partial_x f(x_l, θ_l))^\top p_{l+1}, \qquad
    \frac{\partial Φ}{\partial θ_l} = h\, (\partial_θ f(x_l, θ_l))^\top p_{l+1},

and the pair (forward Euler, this recursion) conserves the bilinear form
``p_l · δx_l`` for every tangent ``δx`` of the forward map.

The module has three parts:

* ResNet blocks: :func:`euler_forward`, :func:`costate_backward`, :func:`hamiltonian`,
  :func:`bilinear_invariant`;
* explicit Runge–Kutta blocks (:class:`ButcherTableau`; :data:`EULER`, :data:`MIDPOINT`,
  :data:`HEUN`, :data:`RK4`) with their exact discrete adjoint, the conjugate partitioned
  RK scheme: :func:`rk_forward`, :func:`rk_costate_backward`, :func:`rk_bilinear_invariant`;
* the continuous picture with diffrax: ``θ(t)`` from the layers (:func:`theta_path`), the
  neural ODE (:func:`ode_forward`), its gradient by backprop through the solver, by the
  continuous adjoint, or by finite differences (:func:`ode_gradient`,
  :func:`adjoint_gaps`, :func:`rk_ode_gradient`), and Hamilton's equations
  (:func:`hamiltonian_flow`).

Conventions: ``f(x, θ_l) -> dx/dt`` for one layer, ``x`` an array of any shape (the state,
``(d,)`` for a ResNet), ``θ`` a pytree whose array leaves are stacked on axis 0 over the
``L`` layers (the scan-over-layers idiom; non-array leaves, e.g. an activation function
inside an ``eqx.Module``, are carried along unstacked). Gradients have ``θ``'s structure,
with ``None`` on non-differentiable leaves (as ``eqx.filter_grad``).
"""

from collections.abc import Callable
from typing import Any, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import _validate
from ._types import Array, ArrayLike, Float, ScalarLike

__all__ = [
    "EULER",
    "HEUN",
    "MIDPOINT",
    "RK4",
    "ButcherTableau",
    "adjoint_gaps",
    "bilinear_invariant",
    "costate_backward",
    "euler_forward",
    "hamiltonian",
    "hamiltonian_flow",
    "ode_forward",
    "ode_gradient",
    "rk_bilinear_invariant",
    "rk_costate_backward",
    "rk_forward",
    "rk_ode_gradient",
    "theta_path",
]

VectorField = Callable[[Array, Any], Array]


# --------------------------------------------------------------------------------------
# Argument handling shared by the discrete schemes.
# --------------------------------------------------------------------------------------


def _num_layers(theta: Any) -> int:
    """``L``: the common leading axis of the array leaves of ``theta``."""
    leaves = jax.tree_util.tree_leaves(eqx.filter(theta, eqx.is_array))
    if not leaves:
        raise ValueError("`theta` must contain at least one array leaf stacked over layers.")
    sizes = {leaf.shape[0] if leaf.ndim else None for leaf in leaves}
    if None in sizes or len(sizes) != 1:
        shapes = [leaf.shape for leaf in leaves]
        raise ValueError(
            "`theta` must have every array leaf stacked on axis 0 over the same number of "
            f"layers L (e.g. with eqx.filter_vmap or jnp.stack); got leaf shapes {shapes}."
        )
    (num,) = sizes
    if num < 1:
        raise ValueError("`theta` must hold at least one layer (leading axis L >= 1).")
    return num


def _layer(theta: Any, index: int = 0) -> Any:
    """The parameters of one layer: array leaves indexed on axis 0."""
    dynamic, static = eqx.partition(theta, eqx.is_array)
    return eqx.combine(jax.tree_util.tree_map(lambda a: a[index], dynamic), static)


def _step_size(h: ScalarLike, dtype) -> Array:
    return _validate.positive_scalar("h", h, dtype)


def _field(f: VectorField, dtype) -> VectorField:
    """``f`` with its output cast to the state dtype (the scan carry keeps one dtype)."""

    def field(x: Array, theta_l: Any) -> Array:
        return jnp.asarray(f(x, theta_l)).astype(dtype)

    return field


def _check_field(f: VectorField, theta: Any, x: Array) -> None:
    out = eqx.filter_eval_shape(f, x, _layer(theta))
    if getattr(out, "shape", None) != x.shape:
        raise ValueError(
            f"`f` must map (x, theta_l) to dx/dt of the state's shape {x.shape}; "
            f"got {getattr(out, 'shape', type(out).__name__)}."
        )


def _scan_layers(body, init, theta: Any, xs=None, *, reverse: bool = False):
    """``lax.scan`` over layers; ``body(carry, (theta_l, x)) -> (carry, y)``."""
    dynamic, static = eqx.partition(theta, eqx.is_array)

    def scan_body(carry, inputs):
        dyn_l, x = inputs
        return body(carry, (eqx.combine(dyn_l, static), x))

    return jax.lax.scan(scan_body, init, (dynamic, xs), reverse=reverse)


def _scale(h: Array, tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda g: h.astype(g.dtype) * g, tree)


# --------------------------------------------------------------------------------------
# Forward Euler (ResNet) and its exact co-state.
# --------------------------------------------------------------------------------------


def _forward(step, f: VectorField, theta: Any, x0: ArrayLike, h: ScalarLike) -> Array:
    """``xs`` with ``x_{l+1} = step(f, x_l, θ_l, h)`` by a scan over layers (one-step methods)."""
    dtype = _validate.float_dtype(x0)
    x0 = jnp.asarray(x0, dtype=dtype)
    h = _step_size(h, dtype)
    _num_layers(theta)
    _check_field(f, theta, x0)
    field = _field(f, dtype)

    def body(x, inputs):
        theta_l, _ = inputs
        x_next = step(field, x, theta_l, h)
        return x_next, x_next

    _, xs = _scan_layers(body, x0, theta)
    return jnp.concatenate([x0[None], xs], axis=0)


def euler_forward(
    f: VectorField, theta: Any, x0: Float[ArrayLike, "*state"], h: ScalarLike
) -> Float[Array, " n_nodes *state"]:
    r"""ResNet forward pass = forward Euler on ``ẋ = f(x, θ(t))`` (THEORY §6, Prop 5.2).

    .. math::

        x_{l+1} = x_l + h\, f(x_l, θ_l), \qquad l = 0, \dots, L-1,

    computed with ``lax.scan`` over the layers (compile time independent of the depth ``L``).

    Args:
        f: one layer's vector field, ``f(x, theta_l) -> dx/dt`` of ``x``'s shape.
        theta: pytree of parameters, array leaves stacked on axis 0 over ``L`` layers.
        x0: the input state, shape ``(d,)`` (any shape is accepted; it is the state).
        h: step size ``> 0`` (scalar, may be traced: a sweep over ``h`` compiles once).

    Returns:
        ``xs`` of shape ``(L+1, d)``: ``xs[0] = x0``, ``xs[l]`` the state after ``l`` layers.

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda x, th: th["a"] * x
        >>> xs = euler_forward(f, {"a": jnp.ones(3)}, jnp.ones(2), 0.5)
        >>> xs[:, 0].tolist()
        [1.0, 1.5, 2.25, 3.375]
    """
    return _forward(_euler_step, f, theta, x0, h)


def costate_backward(
    f: VectorField,
    theta: Any,
    xs: Float[ArrayLike, " n_nodes *state"],
    p_final: Float[ArrayLike, "*state"],
    h: ScalarLike,
) -> tuple[Float[Array, " n_nodes *state"], Any]:
    r"""Discrete Pontryagin co-state of a ResNet: backprop written out (THEORY §7, Thm 8.4).

    From ``p_L = ∇Φ(x_L)`` (``p_final``), a reverse ``lax.scan`` over the layers computes

    .. math::

        p_l = p_{l+1} + h\,(\partial_x f(x_l, θ_l))^\top p_{l+1}
            = p_{l+1} + h\, \partial_x H(x_l, p_{l+1}, θ_l), \\
        \frac{\partial Φ}{\partial θ_l} = h\,(\partial_θ f(x_l, θ_l))^\top p_{l+1}
            = h\, \partial_θ H(x_l, p_{l+1}, θ_l),

    with ``H(x, p, θ) = p · f(x, θ)``: reverse-time Euler for ``ṗ = -∂_x H`` and the PMP
    gradient condition. Each layer uses one vector–Jacobian product of ``f`` at the stored
    ``x_l`` (not ``jax.grad`` of the unrolled loss); the result equals backpropagation
    exactly, to round-off, for any ``h`` and any ``f``.

    Args:
        f: one layer's vector field ``f(x, theta_l) -> dx/dt``.
        theta: parameters, array leaves stacked on axis 0 over ``L`` layers.
        xs: forward states ``(L+1, d)`` from :func:`euler_forward`.
        p_final: ``p_L = ∇Φ(x_L)``, shape ``(d,)``.
        h: the forward step size ``> 0`` (scalar, may be traced).

    Returns:
        ``(ps, grad_theta)``: co-states ``ps`` of shape ``(L+1, d)`` with ``ps[l] = ∂Φ/∂x_l``
        and ``ps[L] = p_final``; ``grad_theta = ∂Φ/∂θ`` with ``theta``'s structure (``None``
        on non-differentiable leaves).

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda x, th: th * x
        >>> theta = jnp.full((2, 1), 2.0)
        >>> xs = euler_forward(f, theta, jnp.ones(1), 0.5)   # x_l = 2**l
        >>> ps, g = costate_backward(f, theta, xs, jnp.ones(1), 0.5)
        >>> ps[:, 0].tolist(), g[:, 0].tolist()
        ([4.0, 2.0, 1.0], [1.0, 1.0])
    """
    dtype = _validate.float_dtype(xs, p_final)
    xs = jnp.asarray(xs, dtype=dtype)
    p_final = jnp.asarray(p_final, dtype=dtype)
    h = _step_size(h, dtype)
    num = _num_layers(theta)
    _check_states(xs, p_final, num)
    _check_field(f, theta, p_final)
    field = _field(f, dtype)

    def body(p_next, inputs):
        theta_l, x_l = inputs
        _, vjp = eqx.filter_vjp(field, x_l, theta_l)
        gx, gtheta = vjp(p_next)
        p = p_next + h * gx
        return p, (p, _scale(h, gtheta))

    _, (ps, grads) = _scan_layers(body, p_final, theta, xs[:-1], reverse=True)
    return jnp.concatenate([ps, p_final[None]], axis=0), grads


def _check_states(xs: Array, p_final: Array, num: int) -> None:
    if xs.shape[0] != num + 1:
        raise ValueError(
            f"`xs` must hold the L+1 = {num + 1} forward states (L from `theta`); "
            f"got leading axis {xs.shape[0]}."
        )
    if xs.shape[1:] != p_final.shape:
        raise ValueError(
            f"`p_final` must have the state's shape {xs.shape[1:]}; got {p_final.shape}."
        )


def hamiltonian(
    f: VectorField, x: Float[ArrayLike, "*state"], p: Float[ArrayLike, "*state"], theta_l: Any
) -> Float[Array, ""]:
    r"""The control Hamiltonian of one layer, ``H(x, p, θ) = p · f(x, θ)`` (THEORY §6–§7).

    Its partial derivatives generate the two halves of the network: ``∂_p H = f`` (the
    forward characteristic ``ẋ``), ``-∂_x H = -(∂_x f)^T p`` (the co-state ``ṗ``), and
    ``∂_θ H`` gives the PMP gradient (see :func:`costate_backward`).

    Args:
        f: the vector field ``f(x, theta_l)``.
        x: state ``(d,)``.
        p: co-state ``(d,)``.
        theta_l: one layer's parameters (not stacked).

    Returns:
        The scalar ``H``.

    Example:
        >>> import jax.numpy as jnp
        >>> float(hamiltonian(lambda x, a: a * x, jnp.array([1.0, 2.0]), jnp.ones(2), 3.0))
        9.0
    """
    dtype = _validate.float_dtype(x, p)
    x = jnp.asarray(x, dtype=dtype)
    p = jnp.asarray(p, dtype=dtype)
    return jnp.vdot(p, jnp.asarray(f(x, theta_l)).astype(dtype))


def bilinear_invariant(
    f: VectorField,
    theta: Any,
    xs: Float[ArrayLike, " n_nodes *state"],
    ps: Float[ArrayLike, " n_nodes *state"],
    dx0: Float[ArrayLike, "*state"],
    h: ScalarLike,
) -> Float[Array, " n_nodes"]:
    r"""The symplectic invariant ``p_l · δx_l`` of forward Euler + co-state (THEORY §7).

    The tangent ``δx`` is pushed through the linearized ResNet (a Jacobian–vector product
    of ``f`` per layer, independent of the co-state computation),

    .. math::

        δx_{l+1} = δx_l + h\, \partial_x f(x_l, θ_l)\, δx_l ,

    and the function returns ``p_l · δx_l`` for ``l = 0..L``. When ``ps`` is the exact
    discrete co-state (:func:`costate_backward`), this sequence is constant in ``l``
    (Sanz-Serna 2016: forward Euler and its adjoint form a symplectic partitioned pair);
    its drift measures how far ``ps`` is from the true adjoint.

    Args:
        f: one layer's vector field.
        theta: parameters stacked over ``L`` layers.
        xs: forward states ``(L+1, d)``.
        ps: co-states ``(L+1, d)``.
        dx0: initial tangent ``δx_0``, shape ``(d,)``.
        h: step size ``> 0``.

    Returns:
        ``(L+1,)`` values ``p_l · δx_l``.

    Example:
        >>> import jax.numpy as jnp
        >>> f, theta = (lambda x, th: th * x), jnp.full((2, 1), 2.0)
        >>> xs = euler_forward(f, theta, jnp.ones(1), 0.5)
        >>> ps, _ = costate_backward(f, theta, xs, jnp.ones(1), 0.5)
        >>> bilinear_invariant(f, theta, xs, ps, jnp.ones(1), 0.5).tolist()
        [4.0, 4.0, 4.0]
    """
    return _invariant(_euler_step, f, theta, xs, ps, dx0, h)


def _euler_step(field: VectorField, x: Array, theta_l: Any, h: Array) -> Array:
    return x + h * field(x, theta_l)


def _invariant(step, f, theta, xs, ps, dx0, h):
    dtype = _validate.float_dtype(xs, ps, dx0)
    xs = jnp.asarray(xs, dtype=dtype)
    ps = jnp.asarray(ps, dtype=dtype)
    dx0 = jnp.asarray(dx0, dtype=dtype)
    h = _step_size(h, dtype)
    num = _num_layers(theta)
    _check_states(xs, dx0, num)
    if ps.shape != xs.shape:
        raise ValueError(f"`ps` must have the shape of `xs` {xs.shape}; got {ps.shape}.")
    _check_field(f, theta, dx0)
    field = _field(f, dtype)

    def body(dx, inputs):
        theta_l, x_l = inputs
        _, dx_next = jax.jvp(lambda x: step(field, x, theta_l, h), (x_l,), (dx,))
        return dx_next, dx_next

    _, dxs = _scan_layers(body, dx0, theta, xs[:-1])
    dxs = jnp.concatenate([dx0[None], dxs], axis=0)
    return jnp.sum((ps * dxs).reshape(xs.shape[0], -1), axis=1)


# --------------------------------------------------------------------------------------
# Explicit Runge–Kutta blocks and their exact discrete adjoint (conjugate partitioned RK).
# --------------------------------------------------------------------------------------


class ButcherTableau(eqx.Module):
    r"""An explicit Runge–Kutta method ``(A, b, c)`` (static structure, Python floats).

    One step of ``ẋ = f(x, θ_l)`` with ``θ_l`` constant over the step (one layer):

    .. math::

        X_i = x + h \sum_{j<i} a_{ij} k_j, \quad k_i = f(X_i, θ_l), \quad
        x^+ = x + h \sum_i b_i k_i .

    ``c_i = Σ_j a_ij`` are the stage times (used by the diffrax counterparts only).

    Args:
        name: a label.
        a: strictly lower-triangular ``s × s`` coefficients, as nested tuples.
        b: the ``s`` weights (summing to 1).

    Example:
        >>> ButcherTableau("heun", ((0.0, 0.0), (1.0, 0.0)), (0.5, 0.5)).c
        (0.0, 1.0)
    """

    name: str = eqx.field(static=True)
    a: tuple[tuple[float, ...], ...] = eqx.field(static=True)
    b: tuple[float, ...] = eqx.field(static=True)

    def __init__(self, name: str, a, b):
        a = tuple(tuple(float(v) for v in row) for row in a)
        b = tuple(float(v) for v in b)
        stages = len(b)
        if stages < 1 or len(a) != stages or any(len(row) != stages for row in a):
            raise ValueError(f"`a` must be {stages} × {stages} to match `b`; got {a}.")
        if any(a[i][j] != 0.0 for i in range(stages) for j in range(i, stages)):
            raise ValueError(f"`a` must be strictly lower triangular (explicit RK); got {a}.")
        if abs(sum(b) - 1.0) > 1e-12:
            raise ValueError(f"`b` must sum to 1 (consistency); got sum {sum(b)}.")
        self.name = name
        self.a = a
        self.b = b

    @property
    def c(self) -> tuple[float, ...]:
        return tuple(sum(row) for row in self.a)

    @property
    def stages(self) -> int:
        return len(self.b)


#: Forward Euler (order 1): the ResNet block.
EULER = ButcherTableau("euler", ((0.0,),), (1.0,))
#: Explicit midpoint (order 2); note ``b_1 = 0``.
MIDPOINT = ButcherTableau("midpoint", ((0.0, 0.0), (0.5, 0.0)), (0.0, 1.0))
#: Heun's method / explicit trapezoid (order 2).
HEUN = ButcherTableau("heun", ((0.0, 0.0), (1.0, 0.0)), (0.5, 0.5))
#: The classical Runge–Kutta method (order 4).
RK4 = ButcherTableau(
    "rk4",
    ((0.0, 0.0, 0.0, 0.0), (0.5, 0.0, 0.0, 0.0), (0.0, 0.5, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0)),
    (1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0),
)


def _lincomb(coeffs, vectors) -> Array | None:
    """``Σ c_i v_i`` over the nonzero ``c_i`` (None when there are none)."""
    terms = [c * v for c, v in zip(coeffs, vectors, strict=False) if c != 0.0]
    return sum(terms[1:], start=terms[0]) if terms else None


def _rk_stages(
    tableau: ButcherTableau, field: VectorField, x: Array, theta_l: Any, h: Array
) -> tuple[list[Array], list[Array]]:
    """Stage states ``X_i`` and slopes ``k_i`` of one explicit RK step."""
    states: list[Array] = []
    slopes: list[Array] = []
    for row in tableau.a:
        increment = _lincomb(row, slopes)
        state = x if increment is None else x + h * increment
        states.append(state)
        slopes.append(field(state, theta_l))
    return states, slopes


def _rk_step(tableau: ButcherTableau):
    def step(field: VectorField, x: Array, theta_l: Any, h: Array) -> Array:
        _, slopes = _rk_stages(tableau, field, x, theta_l, h)
        return x + h * _lincomb(tableau.b, slopes)

    return step


def rk_forward(
    f: VectorField,
    theta: Any,
    x0: Float[ArrayLike, "*state"],
    h: ScalarLike,
    tableau: ButcherTableau,
) -> Float[Array, " n_nodes *state"]:
    r"""A network of explicit Runge–Kutta blocks, one per layer (THEORY §6–§7).

    Layer ``l`` is one step of ``tableau`` for ``ẋ = f(x, θ_l)`` (``θ_l`` frozen over the
    step): ``X_i = x_l + h Σ_{j<i} a_ij k_j``, ``k_i = f(X_i, θ_l)``,
    ``x_{l+1} = x_l + h Σ_i b_i k_i``. With :data:`EULER` this is the ResNet of
    :func:`euler_forward`; :data:`MIDPOINT`, :data:`HEUN`, :data:`RK4` are higher-order
    blocks whose exact adjoint is :func:`rk_costate_backward`.

    Args:
        f: one layer's vector field ``f(x, theta_l)``.
        theta: parameters, array leaves stacked on axis 0 over ``L`` layers.
        x0: input state ``(d,)``.
        h: step size ``> 0`` (scalar, may be traced).
        tableau: the explicit RK method.

    Returns:
        ``xs`` of shape ``(L+1, d)``.

    Example:
        >>> import jax.numpy as jnp
        >>> xs = rk_forward(lambda x, a: a * x, jnp.ones((1, 1)), jnp.ones(1), 1.0, RK4)
        >>> round(float(xs[-1, 0]), 6)   # 1 + 1 + 1/2 + 1/6 + 1/24
        2.708333
    """
    return _forward(_rk_step(tableau), f, theta, x0, h)


def rk_costate_backward(
    f: VectorField,
    theta: Any,
    xs: Float[ArrayLike, " n_nodes *state"],
    p_final: Float[ArrayLike, "*state"],
    h: ScalarLike,
    tableau: ButcherTableau,
) -> tuple[Float[Array, " n_nodes *state"], Any]:
    r"""Exact discrete adjoint of :func:`rk_forward`: the conjugate partitioned RK scheme.

    Hager (2000), Sanz-Serna (2016); THEORY §7. For each layer, backwards from
    ``p_{l+1}``, the stages are visited in reverse order ``i = s, …, 1``:

    .. math::

        ν_i = b_i\, p_{l+1} + h \sum_{j>i} a_{ji}\, \ell_j, \qquad
        \ell_i = (\partial_x f(X_i, θ_l))^\top ν_i, \\
        p_l = p_{l+1} + h \sum_i \ell_i, \qquad
        \frac{\partial Φ}{\partial θ_l} = h \sum_i (\partial_θ f(X_i, θ_l))^\top ν_i .

    Where all ``b_i ≠ 0`` this is Hager's adjoint RK method with stage co-states
    ``P_i = ν_i / b_i`` and the conjugate tableau ``ā_ij = b_j a_ji / b_i``, ``b̄ = b``
    (together with the forward method a symplectic partitioned RK pair); the ``ν`` form
    above also covers ``b_i = 0`` (explicit midpoint). Each stage uses one vector–Jacobian
    product of ``f`` at its stage state ``X_i`` (recomputed from the stored ``x_l``), not a
    vjp of the whole step. It equals ``jax.grad`` of the unrolled RK loss to round-off.

    Args:
        f: one layer's vector field.
        theta: parameters stacked over ``L`` layers.
        xs: forward states ``(L+1, d)`` from :func:`rk_forward` with the same ``tableau``.
        p_final: ``p_L = ∇Φ(x_L)``, shape ``(d,)``.
        h: the forward step size ``> 0``.
        tableau: the forward method.

    Returns:
        ``(ps, grad_theta)`` as in :func:`costate_backward`.

    Example:
        >>> import jax.numpy as jnp
        >>> theta = jnp.ones((1, 1))
        >>> xs = rk_forward(lambda x, a: a * x, theta, jnp.ones(1), 1.0, MIDPOINT)
        >>> ps, g = rk_costate_backward(lambda x, a: a * x, theta, xs, jnp.ones(1), 1.0, MIDPOINT)
        >>> ps[0, 0].tolist(), g[0, 0].tolist()   # x1 = (1 + a + a²/2) x0
        (2.5, 2.0)
    """
    dtype = _validate.float_dtype(xs, p_final)
    xs = jnp.asarray(xs, dtype=dtype)
    p_final = jnp.asarray(p_final, dtype=dtype)
    h = _step_size(h, dtype)
    num = _num_layers(theta)
    _check_states(xs, p_final, num)
    _check_field(f, theta, p_final)
    field = _field(f, dtype)
    a, b, stages = tableau.a, tableau.b, tableau.stages

    def body(p_next, inputs):
        theta_l, x_l = inputs
        states, _ = _rk_stages(tableau, field, x_l, theta_l, h)
        ells: list[Array | None] = [None] * stages
        grad = None
        for i in reversed(range(stages)):
            coupling = _lincomb([a[j][i] for j in range(i + 1, stages)], ells[i + 1 :])
            nu = b[i] * p_next if coupling is None else b[i] * p_next + h * coupling
            _, vjp = eqx.filter_vjp(field, states[i], theta_l)
            ells[i], g_i = vjp(nu)
            grad = g_i if grad is None else jax.tree_util.tree_map(jnp.add, grad, g_i)
        p = p_next + h * sum(ells)
        return p, (p, _scale(h, grad))

    _, (ps, grads) = _scan_layers(body, p_final, theta, xs[:-1], reverse=True)
    return jnp.concatenate([ps, p_final[None]], axis=0), grads


def rk_bilinear_invariant(
    f: VectorField,
    theta: Any,
    xs: Float[ArrayLike, " n_nodes *state"],
    ps: Float[ArrayLike, " n_nodes *state"],
    dx0: Float[ArrayLike, "*state"],
    h: ScalarLike,
    tableau: ButcherTableau,
) -> Float[Array, " n_nodes"]:
    r"""``p_l · δx_l`` for an RK network, ``δx`` pushed through the linearized RK step.

    ``δx_{l+1} = D_x Ψ_l(x_l) δx_l`` with ``Ψ_l`` one step of ``tableau`` (a jvp through the
    stages). For the exact adjoint co-states of :func:`rk_costate_backward` the values are
    constant in ``l`` — the quadratic invariant preserved by a symplectic partitioned RK
    pair (Sanz-Serna 2016, THEORY §7).

    Args:
        f: one layer's vector field.
        theta: parameters stacked over ``L`` layers.
        xs: forward states ``(L+1, d)``.
        ps: co-states ``(L+1, d)``.
        dx0: initial tangent ``(d,)``.
        h: step size ``> 0``.
        tableau: the forward RK method.

    Returns:
        ``(L+1,)`` values ``p_l · δx_l``.

    Example:
        >>> import jax.numpy as jnp
        >>> f, theta = (lambda x, a: a * x), jnp.ones((3, 1))
        >>> xs = rk_forward(f, theta, jnp.ones(1), 0.5, HEUN)
        >>> ps, _ = rk_costate_backward(f, theta, xs, jnp.ones(1), 0.5, HEUN)
        >>> v = rk_bilinear_invariant(f, theta, xs, ps, jnp.ones(1), 0.5, HEUN)
        >>> bool(jnp.allclose(v, v[0]))
        True
    """
    return _invariant(_rk_step(tableau), f, theta, xs, ps, dx0, h)


# --------------------------------------------------------------------------------------
# The continuous picture: neural ODE, continuous adjoint, Hamiltonian flow (diffrax).
# --------------------------------------------------------------------------------------

PathKind = Literal["piecewise", "linear"]
GradientMethod = Literal["recursive", "backsolve", "direct", "fd"]


def theta_path(theta: Any, t: ScalarLike, T: ScalarLike, kind: PathKind = "piecewise") -> Any:
    r"""Layer parameters as a function of ODE time, ``θ(t)`` on ``[0, T]`` (THEORY §6).

    - ``"piecewise"``: ``θ(t) = θ_l`` for ``t ∈ [l h, (l+1) h)``, ``h = T / L`` — the ResNet's
      own parametrization (forward Euler with step ``h`` reproduces :func:`euler_forward`).
      Layer boundaries are snapped by ``min(10⁻³, √eps_mach · max(1, t/h))`` layer widths, so
      a solver landing on ``l h`` up to (accumulated) round-off reads ``θ_l``; ``t``
      outside ``[0, T)`` reads the first/last layer.
    - ``"linear"``: piecewise-linear interpolation of ``θ_0, …, θ_{L-1}`` placed at the
      nodes ``t_k = k T / (L-1)`` (constant when ``L = 1``). With ``L = 2`` this is the
      smooth ``θ(t) = θ_0 + (t/T)(θ_1 − θ_0)``; in general it is smooth between nodes, so a
      solver whose steps align with the nodes keeps its full order.

    Args:
        theta: parameters stacked on axis 0 over ``L`` layers (or nodes).
        t: time (scalar, may be traced).
        T: final time ``> 0`` (scalar, may be traced).
        kind: ``"piecewise"`` or ``"linear"``.

    Returns:
        One layer's parameters ``θ(t)`` (``theta``'s structure without the layer axis).

    Example:
        >>> import jax.numpy as jnp
        >>> theta = jnp.array([0.0, 2.0])
        >>> float(theta_path(theta, 0.75, 1.0)), float(theta_path(theta, 0.75, 1.0, "linear"))
        (2.0, 1.5)
    """
    num = _num_layers(theta)
    dynamic, static = eqx.partition(theta, eqx.is_array)
    dtype = _validate.float_dtype(t, T)
    t, T = jnp.asarray(t, dtype=dtype), jnp.asarray(T, dtype=dtype)
    if kind == "piecewise":
        s = t * num / T
        snap = jnp.minimum(1e-3, jnp.sqrt(jnp.finfo(dtype).eps) * jnp.maximum(1.0, jnp.abs(s)))
        index = jnp.clip(jnp.floor(s + snap), 0, num - 1).astype(jnp.int32)
        picked = jax.tree_util.tree_map(lambda leaf: leaf[index], dynamic)
    elif kind == "linear":
        if num == 1:
            return _layer(theta)
        s = jnp.clip(t * (num - 1) / T, 0.0, num - 1.0)
        index = jnp.clip(jnp.floor(s), 0, num - 2).astype(jnp.int32)
        w = s - index.astype(dtype)

        def interpolate(leaf):
            if not jnp.issubdtype(leaf.dtype, jnp.inexact):
                return leaf[index]
            w_leaf = w.astype(leaf.dtype)
            return (1 - w_leaf) * leaf[index] + w_leaf * leaf[index + 1]

        picked = jax.tree_util.tree_map(interpolate, dynamic)
    else:
        raise ValueError(f"`kind` must be 'piecewise' or 'linear'; got {kind!r}.")
    return eqx.combine(picked, static)


def _controller(dt, rtol, atol, dtype):
    """(dt0, controller): constant steps when ``dt`` is given, else an adaptive PID."""
    if dt is None:
        return None, diffrax.PIDController(rtol=rtol, atol=atol)
    return _validate.positive_scalar("dt", dt, dtype), (diffrax.ConstantStepSize())


def _default_solver(solver, dt):
    if solver is not None:
        return solver
    return diffrax.Euler() if dt is not None else diffrax.Tsit5()


def ode_forward(
    f: VectorField,
    theta: Any,
    x0: Float[ArrayLike, "*state"],
    T: ScalarLike,
    *,
    path: PathKind = "piecewise",
    solver: diffrax.AbstractSolver | None = None,
    dt: ScalarLike | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-8,
    max_steps: int = 4096,
    adjoint: diffrax.AbstractAdjoint | None = None,
) -> Float[Array, "*state"]:
    r"""The network's neural-ODE limit: ``x(T)`` for ``ẋ = f(x, θ(t))``, ``x(0) = x0``.

    THEORY §6 (Prop 5.2): a ResNet with ``L`` layers of step ``h`` is forward Euler for this
    ODE on ``[0, T = L h]``; ``θ(t)`` is :func:`theta_path` of kind ``path``.

    Args:
        f: one layer's vector field ``f(x, theta_l)``.
        theta: parameters stacked over ``L`` layers (nodes of the path).
        x0: initial state ``(d,)``.
        T: final time ``> 0`` (may be traced).
        path: how ``θ(t)`` is read from ``theta`` (see :func:`theta_path`).
        solver: a diffrax solver; default ``Euler()`` when ``dt`` is given, else ``Tsit5()``.
        dt: constant step (may be traced); ``None`` = adaptive steps with ``rtol``/``atol``.
        rtol, atol: tolerances of the adaptive controller.
        max_steps: static bound on the number of steps (needed for reverse mode).
        adjoint: how reverse mode differentiates the solve; default
            ``RecursiveCheckpointAdjoint()`` (backprop through the solver).

    Returns:
        ``x(T)``, shape ``(d,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> x = ode_forward(lambda x, a: a * x, jnp.ones((1, 1)), jnp.ones(1), 1.0,
        ...                 rtol=1e-10, atol=1e-10)
        >>> round(float(x[0]), 4)   # e
        2.7183
    """
    dtype = _validate.float_dtype(x0)
    x0 = jnp.asarray(x0, dtype=dtype)
    T = _validate.positive_scalar("T", T, dtype)
    _num_layers(theta)
    _check_field(f, theta, x0)
    field = _field(f, dtype)
    dt0, controller = _controller(dt, rtol, atol, dtype)

    def vector_field(t, x, args):
        params, horizon = args
        return field(x, theta_path(params, t, horizon, path))

    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        _default_solver(solver, dt),
        t0=jnp.zeros((), dtype),
        t1=T,
        dt0=dt0,
        y0=x0,
        args=(theta, T),
        saveat=diffrax.SaveAt(t1=True),
        stepsize_controller=controller,
        adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint,
        max_steps=max_steps,
    )
    return solution.ys[0]


def ode_gradient(
    f: VectorField,
    theta: Any,
    x0: Float[ArrayLike, "*state"],
    T: ScalarLike,
    loss: Callable[[Array], Array],
    *,
    method: GradientMethod = "recursive",
    path: PathKind = "piecewise",
    solver: diffrax.AbstractSolver | None = None,
    dt: ScalarLike | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-8,
    max_steps: int = 4096,
    checkpoints: int | None = None,
    fd_step: float | None = None,
) -> tuple[Float[Array, ""], Any]:
    r"""``Φ = loss(x(T))`` and ``∂Φ/∂θ`` for the neural ODE, by one of four methods (THEORY §7).

    - ``"recursive"``: ``RecursiveCheckpointAdjoint`` — backprop through the solver
      (discretise-then-optimise): the exact gradient of the discrete solve.
    - ``"direct"``: ``DirectAdjoint`` — the same discrete gradient by another route
      (nested checkpointed scans); agrees with ``"recursive"`` to round-off.
    - ``"backsolve"``: ``BacksolveAdjoint`` — the continuous co-state
      ``ṗ = −(∂_x f)^T p``, ``∂Φ/∂θ = ∫ (∂_θ f)^T p dt`` solved backwards in time
      (optimise-then-discretise) with the same solver and step; it differs from the
      discrete gradient by the solver's truncation error, ``O(dt^order)``, when
      ``t ↦ f(x, θ(t))`` is smooth on each step. With ``path="piecewise"`` the field jumps
      at every layer boundary and a backward step reads ``θ`` of the layer after it: at
      ``dt = h`` (one step per layer — the ResNet itself) the gradients are off by
      ``O(1)`` (about 50 % for 8 random tanh layers), shrinking only like ``O(dt)`` with
      several steps per layer.
    - ``"fd"``: central finite differences ``(Φ(θ + δ e_i) − Φ(θ − δ e_i)) / 2δ`` in every
      coordinate of the floating leaves of ``θ`` (``O(δ²)`` truncation; one vmapped batch
      of forward solves — for small ``θ`` only).

    Args:
        f, theta, x0, T, path, solver, dt, rtol, atol, max_steps: as in :func:`ode_forward`.
        loss: ``loss(x_T) -> scalar``.
        method: one of ``"recursive"``, ``"backsolve"``, ``"direct"``, ``"fd"``.
        checkpoints: checkpoints of ``RecursiveCheckpointAdjoint`` (default
            ``log(max_steps)``; ``max_steps`` stores every step).
        fd_step: the finite-difference step ``δ`` (default ``eps^{1/3}`` of the dtype).

    Returns:
        ``(Φ, grad_theta)``, ``grad_theta`` with ``theta``'s structure (``None`` on
        non-differentiable leaves).

    Example:
        >>> import jax.numpy as jnp
        >>> f, loss = (lambda x, a: a * x), (lambda x: x[0])
        >>> _, g = ode_gradient(f, jnp.zeros((1, 1)), jnp.ones(1), 1.0, loss)
        >>> round(float(g[0, 0]), 6)   # d/da e^{a} at a = 0
        1.0
    """
    dynamic, static = eqx.partition(theta, eqx.is_inexact_array)
    kwargs = dict(path=path, solver=solver, dt=dt, rtol=rtol, atol=atol, max_steps=max_steps)

    def value(dyn, adjoint=None):
        x_T = ode_forward(f, eqx.combine(dyn, static), x0, T, adjoint=adjoint, **kwargs)
        return jnp.asarray(loss(x_T)).reshape(())

    if method == "fd":
        return value(dynamic), _central_differences(value, dynamic, fd_step)
    adjoints = {
        "recursive": lambda: diffrax.RecursiveCheckpointAdjoint(checkpoints=checkpoints),
        "backsolve": diffrax.BacksolveAdjoint,
        "direct": diffrax.DirectAdjoint,
    }
    if method not in adjoints:
        raise ValueError(
            f"`method` must be one of 'recursive', 'backsolve', 'direct', 'fd'; got {method!r}."
        )
    return jax.value_and_grad(value)(dynamic, adjoints[method]())


def _central_differences(value, dynamic: Any, step: float | None) -> Any:
    flat, unravel = ravel_pytree(dynamic)
    if flat.size == 0:
        raise ValueError("`theta` has no floating-point leaves to differentiate.")
    delta = jnp.finfo(flat.dtype).eps ** (1 / 3) if step is None else step
    delta = jnp.asarray(delta, dtype=flat.dtype)
    basis = jnp.eye(flat.size, dtype=flat.dtype)

    def central(e):
        return (value(unravel(flat + delta * e)) - value(unravel(flat - delta * e))) / (2 * delta)

    return unravel(jax.vmap(central)(basis))


def _relative_gap(a: Any, b: Any) -> Array:
    flat_a, _ = ravel_pytree(a)
    flat_b, _ = ravel_pytree(b)
    return jnp.linalg.norm(flat_a - flat_b) / jnp.linalg.norm(flat_b)


def adjoint_gaps(
    f: VectorField,
    theta: Any,
    x0: Float[ArrayLike, "*state"],
    T: ScalarLike,
    loss: Callable[[Array], Array],
    dts: Float[ArrayLike, " n"],
    *,
    solver: diffrax.AbstractSolver | None = None,
    path: PathKind = "linear",
    max_steps: int = 4096,
    methods: tuple[str, ...] = ("backsolve", "direct"),
) -> dict[str, Float[Array, " n"]]:
    r"""Gradient methods vs backprop through the solver, for constant steps ``dts``.

    THEORY §7: for each step ``dt`` (the same on the forward and the backward solve) and
    each ``method`` of :func:`ode_gradient`,

    .. math::

        \mathrm{gap}_{\mathrm{method}}(dt)
          = \frac{\lVert g_{\mathrm{method}} - g_{\mathrm{recursive}}\rVert}
                 {\lVert g_{\mathrm{recursive}}\rVert} .

    ``"backsolve"`` (continuous adjoint) is ``O(dt^q)``, at most the solver's order ``q``
    (Euler 1, midpoint 2) — when ``t ↦ f(x, θ(t))`` is smooth on each step (use
    ``path="linear"`` with steps aligned to its nodes, e.g. ``L = 2`` nodes: ``θ(t)``
    affine); for Heun the leading terms cancel and the gap is ``O(dt³)``.
    ``"direct"`` is round-off; ``"fd"`` is the ``O(δ²)`` finite-difference truncation.
    The step sizes are looped over with ``lax.map`` (one compilation for all of them).

    Args:
        f, theta, x0, T, loss, path: as in :func:`ode_gradient`.
        dts: constant step sizes ``(n,)``; ``T / dts[i]`` steps each (``≤ max_steps``).
        solver: diffrax solver (default ``Euler()``).
        max_steps: static bound on the number of steps.
        methods: which of ``"backsolve"``, ``"direct"``, ``"fd"`` to compare.

    Returns:
        ``{"dt": dts, method: gaps, ...}``, arrays of shape ``(n,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> gaps = adjoint_gaps(lambda x, a: jnp.tanh(a * x), jnp.ones((2, 1)), jnp.ones(1),
        ...                     1.0, lambda x: x[0], jnp.array([0.1, 0.05]), max_steps=32)
        >>> bool(gaps["backsolve"][1] < gaps["backsolve"][0])
        True
    """
    unknown = set(methods) - {"backsolve", "direct", "fd"}
    if unknown or not methods:
        raise ValueError(
            f"`methods` must be a non-empty subset of ('backsolve', 'direct', 'fd'); "
            f"got {methods!r}."
        )
    dts = jnp.asarray(dts)
    solver = diffrax.Euler() if solver is None else solver
    kwargs = dict(path=path, solver=solver, max_steps=max_steps)

    def gaps(dt):
        _, reference = ode_gradient(f, theta, x0, T, loss, method="recursive", dt=dt, **kwargs)
        return {
            method: _relative_gap(
                ode_gradient(f, theta, x0, T, loss, method=method, dt=dt, **kwargs)[1],
                reference,
            )
            for method in methods
        }

    return {"dt": dts, **jax.lax.map(gaps, dts)}


def rk_ode_gradient(
    f: VectorField,
    theta: Any,
    x0: Float[ArrayLike, "*state"],
    T: ScalarLike,
    loss: Callable[[Array], Array],
    n_steps: int,
    tableau: ButcherTableau,
    *,
    path: PathKind = "piecewise",
) -> tuple[Float[Array, ""], Any]:
    r"""Exact gradient of ``n_steps`` explicit RK steps of the neural ODE, by the co-state.

    The discretise-then-optimise gradient of ``Φ = loss(x_n)`` for ``tableau`` applied with
    step ``h = T / n_steps`` to ``ẋ = f(x, θ(t))`` (stage ``i`` of step ``k`` reads
    ``θ(t_k + c_i h)``, as diffrax's ``Euler``/``Midpoint``/``Heun`` do), computed by
    :func:`rk_costate_backward` on the time-augmented autonomous system
    ``(ẋ, ṫ) = (f(x, θ(t)), 1)`` with ``θ``'s path parameters fed to every step; their
    gradients are summed over the steps (THEORY §7; Sanz-Serna 2016). It equals backprop
    through the diffrax solve (``ode_gradient(method="recursive")``) to round-off, and
    compiles one small scan. Memory holds ``n_steps`` copies of ``θ``: meant for small
    ``θ`` (verification); use :func:`ode_gradient` for large ones.

    Args:
        f, theta, x0, T, loss, path: as in :func:`ode_gradient`.
        n_steps: number of steps (static).
        tableau: the explicit RK method.

    Returns:
        ``(Φ, grad_theta)`` with ``theta``'s structure.

    Example:
        >>> import jax.numpy as jnp
        >>> f, loss = (lambda x, a: a * x), (lambda x: x[0])
        >>> _, g = rk_ode_gradient(f, jnp.zeros((1, 1)), jnp.ones(1), 1.0, loss, 4, EULER)
        >>> float(g[0, 0])   # d/da (1 + a/4)^4 at a = 0
        1.0
    """
    dtype = _validate.float_dtype(x0)
    x0 = jnp.asarray(x0, dtype=dtype)
    T = _validate.positive_scalar("T", T, dtype)
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"`n_steps` must be a positive int; got {n_steps!r}.")
    _num_layers(theta)
    _check_field(f, theta, x0)
    field = _field(f, dtype)

    def augmented(y, params):
        x, t = y[:-1].reshape(x0.shape), y[-1]
        dx = field(x, theta_path(params, t, T, path)).reshape(-1)
        return jnp.concatenate([dx, jnp.ones(1, dtype)])

    dynamic, static = eqx.partition(theta, eqx.is_array)
    copies = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n_steps, *a.shape)), dynamic)
    stacked = eqx.combine(copies, static)
    h = T / n_steps
    y0 = jnp.concatenate([x0.reshape(-1), jnp.zeros(1, dtype)])
    ys = rk_forward(augmented, stacked, y0, h, tableau)
    value, dloss = jax.value_and_grad(lambda x: jnp.asarray(loss(x)).reshape(()))(
        ys[-1, :-1].reshape(x0.shape)
    )
    p_final = jnp.concatenate([dloss.reshape(-1), jnp.zeros(1, dtype)])
    _, grads = rk_costate_backward(augmented, stacked, ys, p_final, h, tableau)
    return value, jax.tree_util.tree_map(lambda g: jnp.sum(g, axis=0), grads)


def hamiltonian_flow(
    f: VectorField,
    theta: Any,
    x0: Float[ArrayLike, "*state"],
    p0: Float[ArrayLike, "*state"],
    ts: Float[ArrayLike, " n"],
    *,
    path: PathKind = "piecewise",
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    max_steps: int = 4096,
) -> tuple[Float[Array, " n *state"], Float[Array, " n *state"]]:
    r"""Hamilton's equations of ``H(x, p, t) = p · f(x, θ(t))``, solved with diffrax.

    THEORY §6–§7:

    .. math::

        \dot x = \partial_p H = f(x, θ(t)), \qquad
        \dot p = -\partial_x H = -(\partial_x f(x, θ(t)))^\top p,

    both right-hand sides taken by ``jax.grad`` of :func:`hamiltonian`; ``θ(t)`` is
    :func:`theta_path` over ``[ts[0], ts[-1]]``. The x-equation is the network's forward
    characteristic and the p-equation its co-state (backprop in continuous time). For an
    autonomous field (one layer, ``L = 1``) ``dH/dt = 0``: ``H`` is conserved along the
    flow; with ``θ`` varying in ``t``, ``dH/dt = p · ∂_t f ≠ 0`` in general.

    Args:
        f: one layer's vector field.
        theta: parameters stacked over ``L`` layers (``L = 1``: autonomous).
        x0: initial state ``(d,)``.
        p0: initial co-state ``(d,)``.
        ts: increasing save times ``(n,)``; the flow runs from ``ts[0]`` to ``ts[-1]``.
        path: how ``θ(t)`` is read from ``theta``.
        solver: diffrax solver, adaptive (default ``Tsit5()``).
        rtol, atol: tolerances.
        max_steps: static bound on the number of steps.

    Returns:
        ``(xs, ps)``, each ``(n, d)``: the flow at ``ts``.

    Example:
        >>> import jax.numpy as jnp
        >>> xs, ps = hamiltonian_flow(lambda x, a: a * x, jnp.ones((1, 1)), jnp.ones(1),
        ...                           jnp.ones(1), jnp.array([0.0, 1.0]))
        >>> round(float(xs[-1, 0] * ps[-1, 0]), 4)   # H = a x p = e · e^{-1}
        1.0
    """
    dtype = _validate.float_dtype(x0, p0)
    x0 = jnp.asarray(x0, dtype=dtype)
    p0 = jnp.asarray(p0, dtype=dtype)
    ts = jnp.asarray(ts, dtype=dtype)
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"`ts` must be 1-D with at least two times; got shape {ts.shape}.")
    if x0.shape != p0.shape:
        raise ValueError(f"`p0` must have the shape of `x0` {x0.shape}; got {p0.shape}.")
    _num_layers(theta)
    _check_field(f, theta, x0)
    t0, t1 = ts[0], ts[-1]
    _validate.positive("ts", t1 - t0)

    def vector_field(t, y, args):
        params, start, horizon = args
        x, p = y
        theta_t = theta_path(params, t - start, horizon, path)
        dx, dp = jax.grad(lambda x_, p_: hamiltonian(f, x_, p_, theta_t), argnums=(0, 1))(x, p)
        return dp, -dx

    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        diffrax.Tsit5() if solver is None else solver,
        t0=t0,
        t1=t1,
        dt0=None,
        y0=(x0, p0),
        args=(theta, t0, t1 - t0),
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
    )
    return solution.ys
