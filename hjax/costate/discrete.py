r"""Discrete networks of explicit Runge–Kutta blocks and their exact co-state (THEORY §6–§7).

One tableau-parameterised pass does everything: :func:`rk_forward` (layer ``l`` = one step
of an explicit RK method for ``ẋ = f(x, θ_l)``), :func:`rk_costate_backward` (its exact
discrete adjoint = backpropagation) and :func:`rk_bilinear_invariant` (the quadratic
invariant that certifies it). The ResNet is the one-stage case, the tableau
:data:`EULER`; :func:`euler_forward`, :func:`costate_backward` and
:func:`bilinear_invariant` are those calls under the names of THEORY §7.

Thm 8.4 (backprop = Pontryagin co-state). With ``Ψ_l`` the step of layer ``l``,
``x_{l+1} = Ψ_l(x_l)``, and a loss ``Φ(x_L)``, the co-state ``p_l = ∂Φ/∂x_l`` obeys
``p_L = ∇Φ(x_L)``, ``p_l = (D_x Ψ_l)^T p_{l+1}``, ``∂Φ/∂θ_l = (D_θ Ψ_l)^T p_{l+1}``. For
an explicit RK step this transpose is again a Runge–Kutta scheme — the *conjugate*
(adjoint) method of Hager (2000) — and the forward method together with it is a
symplectic partitioned RK pair (Sanz-Serna 2016). Consequently, for every tangent
``δx_{l+1} = D_x Ψ_l δx_l`` of the forward map the bilinear form ``p_l · δx_l`` is exactly
constant in ``l``, as ``d/dt (p · δx) = 0`` for ``δẋ = ∂_x f δx``, ``ṗ = −(∂_x f)^T p``.
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .. import _validate
from .._types import Array, ArrayLike, Float, ScalarLike
from ._layers import (
    VectorField,
    cast_field,
    check_field,
    check_states,
    num_layers,
    scan_layers,
    step_size,
)

__all__ = [
    "EULER",
    "HEUN",
    "MIDPOINT",
    "RK4",
    "ButcherTableau",
    "bilinear_invariant",
    "costate_backward",
    "euler_forward",
    "rk_bilinear_invariant",
    "rk_costate_backward",
    "rk_forward",
]


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


# --------------------------------------------------------------------------------------
# One step, its stages, and its transpose (the conjugate RK step).
# --------------------------------------------------------------------------------------


def _lincomb(coeffs, vectors) -> Array | None:
    """``Σ c_i v_i`` over the nonzero ``c_i`` (None when there are none; ``1 · v`` is ``v``)."""
    terms = [v if c == 1.0 else c * v for c, v in zip(coeffs, vectors, strict=False) if c != 0.0]
    return sum(terms[1:], start=terms[0]) if terms else None


def _stages(
    tableau: ButcherTableau, field: VectorField, x: Array, theta_l: Any, h: Array, *, last: bool
) -> tuple[list[Array], list[Array]]:
    """Stage states ``X_i`` and slopes ``k_i`` of one step (``k_s`` only when ``last``)."""
    states: list[Array] = []
    slopes: list[Array] = []
    for i, row in enumerate(tableau.a):
        increment = _lincomb(row[:i], slopes)
        states.append(x if increment is None else x + h * increment)
        if last or i < tableau.stages - 1:
            slopes.append(field(states[-1], theta_l))
    return states, slopes


def _step(tableau: ButcherTableau, field: VectorField, x: Array, theta_l: Any, h: Array) -> Array:
    """``Ψ_l(x) = x + h Σ_i b_i k_i``."""
    _, slopes = _stages(tableau, field, x, theta_l, h, last=True)
    return x + h * _lincomb(tableau.b, slopes)


def _transposed_step(
    tableau: ButcherTableau, field: VectorField, x: Array, theta_l: Any, p_next: Array, h: Array
) -> tuple[Array, Any]:
    """``((D_x Ψ_l)^T p_{l+1}, (D_θ Ψ_l)^T p_{l+1})`` by one vjp of ``f`` per stage."""
    a, b, stages = tableau.a, tableau.b, tableau.stages
    states, _ = _stages(tableau, field, x, theta_l, h, last=False)
    ells: list[Array] = [jnp.zeros_like(p_next)] * stages
    grad = None
    for i in reversed(range(stages)):
        direct = _lincomb((b[i],), (p_next,))
        coupling = _lincomb([a[j][i] for j in range(i + 1, stages)], ells[i + 1 :])
        if coupling is None:
            nu = jnp.zeros_like(p_next) if direct is None else direct
        else:
            nu = h * coupling if direct is None else direct + h * coupling
        _, vjp = eqx.filter_vjp(field, states[i], theta_l)
        ells[i], g_i = vjp(nu)
        grad = g_i if grad is None else jax.tree_util.tree_map(jnp.add, grad, g_i)
    p = p_next + h * sum(ells[1:], start=ells[0])
    return p, jax.tree_util.tree_map(lambda g: h.astype(g.dtype) * g, grad)


def _check_tableau(tableau: Any) -> ButcherTableau:
    if not isinstance(tableau, ButcherTableau):
        raise ValueError(
            "`tableau` must be a ButcherTableau (e.g. hjax.EULER, hjax.RK4); "
            f"got {type(tableau).__name__}."
        )
    return tableau


# --------------------------------------------------------------------------------------
# The one forward pass, the one co-state pass, the one invariant.
# --------------------------------------------------------------------------------------


def rk_forward(
    f: VectorField,
    theta: Any,
    x0: Float[ArrayLike, "*state"],
    h: ScalarLike,
    tableau: ButcherTableau = EULER,
) -> Float[Array, " n_nodes *state"]:
    r"""A network of explicit Runge–Kutta blocks, one per layer (THEORY §6, Prop 5.2).

    Layer ``l`` is one step of ``tableau`` for ``ẋ = f(x, θ_l)`` (``θ_l`` frozen over the
    step), computed with ``lax.scan`` over the layers (compile time independent of ``L``):

    .. math::

        X_i = x_l + h \sum_{j<i} a_{ij} k_j, \qquad k_i = f(X_i, θ_l), \qquad
        x_{l+1} = x_l + h \sum_i b_i k_i .

    With :data:`EULER` (the default) this is the ResNet ``x_{l+1} = x_l + h f(x_l, θ_l)``;
    :data:`MIDPOINT`, :data:`HEUN`, :data:`RK4` are higher-order blocks. The exact adjoint
    of any of them is :func:`rk_costate_backward` with the same tableau.

    Args:
        f: one layer's vector field ``f(x, theta_l) -> dx/dt`` of ``x``'s shape.
        theta: parameters, array leaves stacked on axis 0 over ``L`` layers.
        x0: input state ``(d,)`` (any shape is accepted; it is the state).
        h: step size ``> 0`` (scalar, may be traced: a sweep over ``h`` compiles once).
        tableau: the explicit RK method (default :data:`EULER`).

    Returns:
        ``xs`` of shape ``(L+1, d)``: ``xs[0] = x0``, ``xs[l]`` the state after ``l`` layers.

    Example:
        >>> import jax.numpy as jnp
        >>> xs = rk_forward(lambda x, a: a * x, jnp.ones((1, 1)), jnp.ones(1), 1.0, RK4)
        >>> round(float(xs[-1, 0]), 6)   # 1 + 1 + 1/2 + 1/6 + 1/24
        2.708333
    """
    tableau = _check_tableau(tableau)
    dtype = _validate.float_dtype(x0)
    x0 = jnp.asarray(x0, dtype=dtype)
    h = step_size("h", h, dtype)
    num_layers(theta)
    check_field(f, theta, x0)
    field = cast_field(f, dtype)

    def body(x, inputs):
        theta_l, _ = inputs
        x_next = _step(tableau, field, x, theta_l, h)
        return x_next, x_next

    _, xs = scan_layers(body, x0, theta)
    return jnp.concatenate([x0[None], xs], axis=0)


def rk_costate_backward(
    f: VectorField,
    theta: Any,
    xs: Float[ArrayLike, " n_nodes *state"],
    p_final: Float[ArrayLike, "*state"],
    h: ScalarLike,
    tableau: ButcherTableau = EULER,
) -> tuple[Float[Array, " n_nodes *state"], Any]:
    r"""Exact discrete co-state of :func:`rk_forward`: the conjugate partitioned RK scheme.

    Thm 8.4; Hager (2000), Sanz-Serna (2016); THEORY §7. From ``p_L = ∇Φ(x_L)``
    (``p_final``) a reverse ``lax.scan`` over the layers visits, for each layer, the stages
    in reverse order ``i = s, …, 1``:

    .. math::

        ν_i = b_i\, p_{l+1} + h \sum_{j>i} a_{ji}\, \ell_j, \qquad
        \ell_i = (\partial_x f(X_i, θ_l))^\top ν_i, \\
        p_l = p_{l+1} + h \sum_i \ell_i, \qquad
        \frac{\partial Φ}{\partial θ_l} = h \sum_i (\partial_θ f(X_i, θ_l))^\top ν_i .

    Where all ``b_i ≠ 0`` this is Hager's adjoint RK method with stage co-states
    ``P_i = ν_i / b_i`` and the conjugate tableau ``ā_ij = b_j a_ji / b_i``, ``b̄ = b``,
    which satisfies the symplecticity condition ``b_i ā_ij + b̄_j a_ji − b_i b̄_j = 0``
    with ``a`` — so that (forward, adjoint) is a symplectic partitioned RK pair; the
    ``ν`` form also covers ``b_i = 0`` (explicit midpoint). For :data:`EULER` (one stage,
    ``ν = p_{l+1}``) it is the ResNet co-state

    .. math::

        p_l = p_{l+1} + h\,(\partial_x f(x_l, θ_l))^\top p_{l+1}
            = p_{l+1} + h\, \partial_x H(x_l, p_{l+1}, θ_l), \qquad
        \frac{\partial Φ}{\partial θ_l} = h\, \partial_θ H(x_l, p_{l+1}, θ_l),

    with ``H(x, p, θ) = p · f(x, θ)``: reverse-time Euler for ``ṗ = −∂_x H`` and the PMP
    gradient condition. Each stage costs one vector–Jacobian product of ``f`` at its stage
    state ``X_i`` (recomputed from the stored ``x_l``), not a vjp of the unrolled loss; the
    result equals backpropagation to round-off, for any ``h`` and any ``f``.

    Args:
        f: one layer's vector field.
        theta: parameters stacked over ``L`` layers.
        xs: forward states ``(L+1, d)`` from :func:`rk_forward` with the same ``tableau``.
        p_final: ``p_L = ∇Φ(x_L)``, shape ``(d,)``.
        h: the forward step size ``> 0`` (scalar, may be traced).
        tableau: the forward method (default :data:`EULER`).

    Returns:
        ``(ps, grad_theta)``: co-states ``ps`` of shape ``(L+1, d)`` with ``ps[l] = ∂Φ/∂x_l``
        and ``ps[L] = p_final``; ``grad_theta = ∂Φ/∂θ`` with ``theta``'s structure (``None``
        on non-differentiable leaves, as ``eqx.filter_grad``).

    Example:
        >>> import jax.numpy as jnp
        >>> theta = jnp.ones((1, 1))
        >>> xs = rk_forward(lambda x, a: a * x, theta, jnp.ones(1), 1.0, MIDPOINT)
        >>> ps, g = rk_costate_backward(lambda x, a: a * x, theta, xs, jnp.ones(1), 1.0, MIDPOINT)
        >>> ps[0, 0].tolist(), g[0, 0].tolist()   # x1 = (1 + a + a²/2) x0
        (2.5, 2.0)
    """
    tableau = _check_tableau(tableau)
    dtype = _validate.float_dtype(xs, p_final)
    xs = jnp.asarray(xs, dtype=dtype)
    p_final = jnp.asarray(p_final, dtype=dtype)
    h = step_size("h", h, dtype)
    check_states(xs, p_final, num_layers(theta))
    check_field(f, theta, p_final)
    field = cast_field(f, dtype)

    def body(p_next, inputs):
        theta_l, x_l = inputs
        p, grad = _transposed_step(tableau, field, x_l, theta_l, p_next, h)
        return p, (p, grad)

    _, (ps, grads) = scan_layers(body, p_final, theta, xs[:-1], reverse=True)
    return jnp.concatenate([ps, p_final[None]], axis=0), grads


def rk_bilinear_invariant(
    f: VectorField,
    theta: Any,
    xs: Float[ArrayLike, " n_nodes *state"],
    ps: Float[ArrayLike, " n_nodes *state"],
    dx0: Float[ArrayLike, "*state"],
    h: ScalarLike,
    tableau: ButcherTableau = EULER,
) -> Float[Array, " n_nodes"]:
    r"""``p_l · δx_l``, the tangent ``δx`` pushed through the linearised network (THEORY §7).

    .. math::

        δx_{l+1} = D_x Ψ_l(x_l)\, δx_l
        \qquad (\text{Euler: } δx_l + h\,\partial_x f(x_l, θ_l)\,δx_l),

    one Jacobian–vector product through the stages of ``tableau`` per layer — a forward
    computation independent of the co-state's transposes. For the exact co-states of
    :func:`rk_costate_backward` the values are constant in ``l``: the quadratic invariant
    of a symplectic partitioned RK pair (Sanz-Serna 2016, Thm 8.4), since
    ``p_l · δx_l = p_{l+1} · D_xΨ_l δx_l = p_{l+1} · δx_{l+1}``. Its drift measures how far
    ``ps`` is from the true adjoint (e.g. Jacobians taken at ``x_{l+1}`` drift by ``O(h)``).

    Args:
        f: one layer's vector field.
        theta: parameters stacked over ``L`` layers.
        xs: forward states ``(L+1, d)``.
        ps: co-states ``(L+1, d)``.
        dx0: initial tangent ``δx_0``, shape ``(d,)``.
        h: step size ``> 0``.
        tableau: the forward RK method (default :data:`EULER`).

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
    tableau = _check_tableau(tableau)
    dtype = _validate.float_dtype(xs, ps, dx0)
    xs = jnp.asarray(xs, dtype=dtype)
    ps = jnp.asarray(ps, dtype=dtype)
    dx0 = jnp.asarray(dx0, dtype=dtype)
    h = step_size("h", h, dtype)
    check_states(xs, dx0, num_layers(theta), "dx0")
    if ps.shape != xs.shape:
        raise ValueError(f"`ps` must have the shape of `xs` {xs.shape}; got {ps.shape}.")
    check_field(f, theta, dx0)
    field = cast_field(f, dtype)

    def body(dx, inputs):
        theta_l, x_l = inputs
        _, dx_next = jax.jvp(lambda x: _step(tableau, field, x, theta_l, h), (x_l,), (dx,))
        return dx_next, dx_next

    _, dxs = scan_layers(body, dx0, theta, xs[:-1])
    dxs = jnp.concatenate([dx0[None], dxs], axis=0)
    return jnp.sum((ps * dxs).reshape(xs.shape[0], -1), axis=1)


# --------------------------------------------------------------------------------------
# The ResNet (THEORY §7's names): the one-stage case.
# --------------------------------------------------------------------------------------


def euler_forward(
    f: VectorField, theta: Any, x0: Float[ArrayLike, "*state"], h: ScalarLike
) -> Float[Array, " n_nodes *state"]:
    r"""ResNet forward pass = forward Euler on ``ẋ = f(x, θ(t))`` (THEORY §6, Prop 5.2).

    .. math::

        x_{l+1} = x_l + h\, f(x_l, θ_l), \qquad l = 0, \dots, L-1,

    i.e. :func:`rk_forward` with :data:`EULER`.

    Args:
        f: one layer's vector field, ``f(x, theta_l) -> dx/dt`` of ``x``'s shape.
        theta: pytree of parameters, array leaves stacked on axis 0 over ``L`` layers.
        x0: the input state, shape ``(d,)``.
        h: step size ``> 0`` (scalar, may be traced).

    Returns:
        ``xs`` of shape ``(L+1, d)``: ``xs[0] = x0``, ``xs[l]`` the state after ``l`` layers.

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda x, th: th["a"] * x
        >>> xs = euler_forward(f, {"a": jnp.ones(3)}, jnp.ones(2), 0.5)
        >>> xs[:, 0].tolist()
        [1.0, 1.5, 2.25, 3.375]
    """
    return rk_forward(f, theta, x0, h, EULER)


def costate_backward(
    f: VectorField,
    theta: Any,
    xs: Float[ArrayLike, " n_nodes *state"],
    p_final: Float[ArrayLike, "*state"],
    h: ScalarLike,
) -> tuple[Float[Array, " n_nodes *state"], Any]:
    r"""Discrete Pontryagin co-state of a ResNet: backprop written out (THEORY §7, Thm 8.4).

    From ``p_L = ∇Φ(x_L)`` (``p_final``), backwards over the layers,

    .. math::

        p_l = p_{l+1} + h\,(\partial_x f(x_l, θ_l))^\top p_{l+1}
            = p_{l+1} + h\, \partial_x H(x_l, p_{l+1}, θ_l), \\
        \frac{\partial Φ}{\partial θ_l} = h\,(\partial_θ f(x_l, θ_l))^\top p_{l+1}
            = h\, \partial_θ H(x_l, p_{l+1}, θ_l),

    with ``H(x, p, θ) = p · f(x, θ)``: reverse-time Euler for ``ṗ = −∂_x H`` and the PMP
    gradient condition, exactly equal to backpropagation at any ``h``. This is
    :func:`rk_costate_backward` with :data:`EULER` (one vjp of ``f`` per layer at the
    stored ``x_l``).

    Args:
        f: one layer's vector field ``f(x, theta_l) -> dx/dt``.
        theta: parameters, array leaves stacked on axis 0 over ``L`` layers.
        xs: forward states ``(L+1, d)`` from :func:`euler_forward`.
        p_final: ``p_L = ∇Φ(x_L)``, shape ``(d,)``.
        h: the forward step size ``> 0`` (scalar, may be traced).

    Returns:
        ``(ps, grad_theta)``: ``ps`` of shape ``(L+1, d)`` with ``ps[l] = ∂Φ/∂x_l``;
        ``grad_theta = ∂Φ/∂θ`` with ``theta``'s structure (``None`` on non-differentiable
        leaves).

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda x, th: th * x
        >>> theta = jnp.full((2, 1), 2.0)
        >>> xs = euler_forward(f, theta, jnp.ones(1), 0.5)   # x_l = 2**l
        >>> ps, g = costate_backward(f, theta, xs, jnp.ones(1), 0.5)
        >>> ps[:, 0].tolist(), g[:, 0].tolist()
        ([4.0, 2.0, 1.0], [1.0, 1.0])
    """
    return rk_costate_backward(f, theta, xs, p_final, h, EULER)


def bilinear_invariant(
    f: VectorField,
    theta: Any,
    xs: Float[ArrayLike, " n_nodes *state"],
    ps: Float[ArrayLike, " n_nodes *state"],
    dx0: Float[ArrayLike, "*state"],
    h: ScalarLike,
) -> Float[Array, " n_nodes"]:
    r"""The symplectic invariant ``p_l · δx_l`` of forward Euler + co-state (THEORY §7).

    :func:`rk_bilinear_invariant` with :data:`EULER`: ``δx_{l+1} = δx_l + h ∂_x f(x_l, θ_l)
    δx_l`` by Jacobian–vector products, and ``p_l · δx_l`` for ``l = 0..L`` — constant in
    ``l`` when ``ps`` is the exact co-state of :func:`costate_backward` (Sanz-Serna 2016).

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
    return rk_bilinear_invariant(f, theta, xs, ps, dx0, h, EULER)
