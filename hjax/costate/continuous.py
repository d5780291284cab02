r"""The neural-ODE limit and its gradients, solved with diffrax (THEORY §6–§7).

A ResNet with ``L`` layers of step ``h`` is forward Euler for ``ẋ = f(x, θ(t))`` on
``[0, T = L h]`` (Prop 5.2), ``θ(t)`` read from the layers by :func:`theta_path`. The
gradient of ``Φ = loss(x(T))`` has two readings (THEORY §7):

* *discretise-then-optimise*: backprop through the solver — diffrax's
  ``RecursiveCheckpointAdjoint`` (the default) or ``DirectAdjoint``; for an explicit RK
  solver with constant steps it is exactly the discrete co-state of
  :mod:`hjax.costate.discrete` (:func:`rk_ode_gradient`, Thm 8.4);
* *optimise-then-discretise*: the continuous co-state (Pontryagin's adjoint equation)

  .. math::

      \dot p = -(\partial_x f(x, θ(t)))^\top p,\quad p(T) = \nabla \mathrm{loss}(x(T)),
      \qquad \frac{\partial Φ}{\partial θ} = \int_0^T (\partial_θ f(x, θ(t)))^\top p\, dt,

  solved backwards in time — diffrax's ``BacksolveAdjoint``. It differs from the discrete
  gradient by the solver's truncation error, ``O(dt^q)`` for a method of order ``q`` when
  ``t ↦ f(x, θ(t))`` is smooth on each step (:func:`adjoint_gaps` measures it).

Solves are configured by diffrax objects — ``solver``, ``stepsize_controller`` (with
``dt0``), ``adjoint`` — as in ``diffrax.diffeqsolve``. Central finite differences
(:func:`finite_difference_gradient`) are a separate reference, not an adjoint.
"""

from collections.abc import Callable, Mapping
from typing import Any, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .. import _validate
from .._types import Array, ArrayLike, Float, ScalarLike
from ._layers import VectorField, cast_field, check_field, layer, num_layers
from .discrete import ButcherTableau, rk_costate_backward, rk_forward

__all__ = [
    "adjoint_gaps",
    "finite_difference_gradient",
    "ode_forward",
    "ode_gradient",
    "rk_ode_gradient",
    "theta_path",
]

PathKind = Literal["piecewise", "linear"]
Loss = Callable[[Array], Array]


def theta_path(theta: Any, t: ScalarLike, T: ScalarLike, kind: PathKind = "piecewise") -> Any:
    r"""Layer parameters as a function of ODE time, ``θ(t)`` on ``[0, T]`` (THEORY §6).

    - ``"piecewise"``: ``θ(t) = θ_l`` for ``t ∈ [l h, (l+1) h)``, ``h = T / L`` — the ResNet's
      own parametrization (forward Euler with step ``h`` reproduces the ResNet).
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
    num = num_layers(theta)
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
            return layer(theta)
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


def solve_config(
    solver: Any, stepsize_controller: Any, dt0: Any, dtype, *, tol: float
) -> tuple[diffrax.AbstractSolver, diffrax.AbstractStepSizeController, Array | None]:
    """Checked ``(solver, stepsize_controller, dt0)``; defaults ``Tsit5`` and a PID
    controller with ``rtol = atol = tol``. ``ConstantStepSize`` needs ``dt0``."""
    solver = diffrax.Tsit5() if solver is None else solver
    if not isinstance(solver, diffrax.AbstractSolver):
        raise ValueError(
            f"`solver` must be a diffrax solver (e.g. diffrax.Euler()); got {solver!r}."
        )
    if stepsize_controller is None:
        stepsize_controller = diffrax.PIDController(rtol=tol, atol=tol)
    if not isinstance(stepsize_controller, diffrax.AbstractStepSizeController):
        raise ValueError(
            "`stepsize_controller` must be a diffrax step-size controller (e.g. "
            f"diffrax.ConstantStepSize() with dt0, or diffrax.PIDController(rtol=..., atol=...)); "
            f"got {stepsize_controller!r}."
        )
    if dt0 is None:
        if isinstance(stepsize_controller, diffrax.ConstantStepSize):
            raise ValueError("`dt0` must be given with diffrax.ConstantStepSize (the step).")
        return solver, stepsize_controller, None
    return solver, stepsize_controller, _validate.positive_scalar("dt0", dt0, dtype)


def _check_adjoint(adjoint: Any) -> diffrax.AbstractAdjoint:
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
    if not isinstance(adjoint, diffrax.AbstractAdjoint):
        raise ValueError(
            "`adjoint` must be a diffrax.AbstractAdjoint (e.g. diffrax.BacksolveAdjoint(), "
            f"diffrax.RecursiveCheckpointAdjoint()); got {adjoint!r}."
        )
    return adjoint


def ode_forward(
    f: VectorField,
    theta: Any,
    x0: Float[ArrayLike, "*state"],
    T: ScalarLike,
    *,
    path: PathKind = "piecewise",
    solver: diffrax.AbstractSolver | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    dt0: ScalarLike | None = None,
    adjoint: diffrax.AbstractAdjoint | None = None,
    max_steps: int = 4096,
) -> Float[Array, "*state"]:
    r"""The network's neural-ODE limit: ``x(T)`` for ``ẋ = f(x, θ(t))``, ``x(0) = x0``.

    THEORY §6 (Prop 5.2): a ResNet with ``L`` layers of step ``h`` is forward Euler for this
    ODE on ``[0, T = L h]``; ``θ(t)`` is :func:`theta_path` of kind ``path``. With
    ``solver=diffrax.Euler()``, ``stepsize_controller=diffrax.ConstantStepSize()``,
    ``dt0=h`` and ``path="piecewise"`` it is the ResNet itself.

    Args:
        f: one layer's vector field ``f(x, theta_l)``.
        theta: parameters stacked over ``L`` layers (nodes of the path).
        x0: initial state ``(d,)``.
        T: final time ``> 0`` (may be traced).
        path: how ``θ(t)`` is read from ``theta`` (see :func:`theta_path`).
        solver: a diffrax solver (default ``Tsit5()``).
        stepsize_controller: a diffrax step-size controller (default
            ``PIDController(rtol=1e-8, atol=1e-8)``); ``ConstantStepSize()`` needs ``dt0``.
        dt0: the (initial) step, ``> 0``, may be traced.
        adjoint: how reverse mode differentiates the solve (default
            ``RecursiveCheckpointAdjoint()``: backprop through the solver).
        max_steps: static bound on the number of steps (needed for reverse mode).

    Returns:
        ``x(T)``, shape ``(d,)``.

    Example:
        >>> import diffrax, jax.numpy as jnp
        >>> pid = diffrax.PIDController(rtol=1e-10, atol=1e-10)
        >>> x = ode_forward(lambda x, a: a * x, jnp.ones((1, 1)), jnp.ones(1), 1.0,
        ...                 stepsize_controller=pid)
        >>> round(float(x[0]), 4)   # e
        2.7183
    """
    dtype = _validate.float_dtype(x0)
    x0 = jnp.asarray(x0, dtype=dtype)
    T = _validate.positive_scalar("T", T, dtype)
    solver, controller, dt0 = solve_config(solver, stepsize_controller, dt0, dtype, tol=1e-8)
    adjoint = _check_adjoint(adjoint)
    num_layers(theta)
    check_field(f, theta, x0)
    field = cast_field(f, dtype)

    def vector_field(t, x, args):
        params, horizon = args
        return field(x, theta_path(params, t, horizon, path))

    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        solver,
        t0=jnp.zeros((), dtype),
        t1=T,
        dt0=dt0,
        y0=x0,
        args=(theta, T),
        saveat=diffrax.SaveAt(t1=True),
        stepsize_controller=controller,
        adjoint=adjoint,
        max_steps=max_steps,
    )
    return solution.ys[0]


def _scalar_loss(loss: Loss) -> Callable[[Array], Array]:
    return lambda x: jnp.asarray(loss(x)).reshape(())


def ode_gradient(
    f: VectorField,
    theta: Any,
    x0: Float[ArrayLike, "*state"],
    T: ScalarLike,
    loss: Loss,
    *,
    adjoint: diffrax.AbstractAdjoint | None = None,
    path: PathKind = "piecewise",
    solver: diffrax.AbstractSolver | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    dt0: ScalarLike | None = None,
    max_steps: int = 4096,
) -> tuple[Float[Array, ""], Any]:
    r"""``Φ = loss(x(T))`` and ``∂Φ/∂θ`` for the neural ODE, by the diffrax ``adjoint``.

    THEORY §7. The ``adjoint`` object says which gradient:

    - ``diffrax.RecursiveCheckpointAdjoint()`` (default; its ``checkpoints`` set the memory):
      backprop through the solver — the exact gradient of the discrete solve
      (discretise-then-optimise; Thm 8.4: the discrete co-state of the solver's steps);
    - ``diffrax.DirectAdjoint()``: the same discrete gradient by another route;
    - ``diffrax.BacksolveAdjoint()``: the continuous co-state
      ``ṗ = −(∂_x f)^T p``, ``∂Φ/∂θ = ∫ (∂_θ f)^T p dt`` solved backwards in time with the
      same solver and steps (optimise-then-discretise). It differs from the discrete
      gradient by ``O(dt^q)`` when ``t ↦ f(x, θ(t))`` is smooth on each step. With
      ``path="piecewise"`` the field jumps at every layer boundary and a backward step
      reads ``θ`` of the layer after it: at ``dt = h`` (one step per layer — the ResNet
      itself) the gradients are off by ``O(1)`` (about 50 % for 8 random tanh layers),
      shrinking only like ``O(dt)`` with several steps per layer.

    Args:
        f, theta, x0, T, path, solver, stepsize_controller, dt0, max_steps: as in
            :func:`ode_forward`.
        loss: ``loss(x_T) -> scalar``.
        adjoint: a ``diffrax.AbstractAdjoint`` (default ``RecursiveCheckpointAdjoint()``).

    Returns:
        ``(Φ, grad_theta)``, ``grad_theta`` with ``theta``'s structure (``None`` on
        non-differentiable leaves).

    Example:
        >>> import diffrax, jax.numpy as jnp
        >>> f, loss = (lambda x, a: a * x), (lambda x: x[0])
        >>> _, g = ode_gradient(f, jnp.zeros((1, 1)), jnp.ones(1), 1.0, loss,
        ...                     adjoint=diffrax.BacksolveAdjoint())
        >>> round(float(g[0, 0]), 6)   # d/da e^{a} at a = 0
        1.0
    """
    adjoint = _check_adjoint(adjoint)
    dynamic, static = eqx.partition(theta, eqx.is_inexact_array)
    solve = dict(
        path=path,
        solver=solver,
        stepsize_controller=stepsize_controller,
        dt0=dt0,
        max_steps=max_steps,
        adjoint=adjoint,
    )

    def value(dyn):
        return _scalar_loss(loss)(ode_forward(f, eqx.combine(dyn, static), x0, T, **solve))

    return jax.value_and_grad(value)(dynamic)


def finite_difference_gradient(
    f: VectorField,
    theta: Any,
    x0: Float[ArrayLike, "*state"],
    T: ScalarLike,
    loss: Loss,
    *,
    step: float | None = None,
    path: PathKind = "piecewise",
    solver: diffrax.AbstractSolver | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    dt0: ScalarLike | None = None,
    max_steps: int = 4096,
) -> tuple[Float[Array, ""], Any]:
    r"""Central finite differences of ``Φ = loss(x(T))``: a reference, not an adjoint.

    .. math::

        \frac{\partial Φ}{\partial θ_i} \approx
        \frac{Φ(θ + δ e_i) - Φ(θ - δ e_i)}{2δ} \qquad (O(δ^2) \text{ truncation}),

    in every coordinate of the floating leaves of ``θ``, as one vmapped batch of forward
    solves — for small ``θ`` only. With the same solver and steps it approximates the
    *discrete* gradient (:func:`ode_gradient` with ``RecursiveCheckpointAdjoint``).

    Args:
        f, theta, x0, T, loss, path, solver, stepsize_controller, dt0, max_steps: as in
            :func:`ode_gradient`.
        step: ``δ`` (default ``eps_mach^{1/3}`` of the dtype, balancing truncation and
            round-off).

    Returns:
        ``(Φ, grad_theta)`` with ``theta``'s structure.

    Example:
        >>> import jax.numpy as jnp
        >>> f, loss = (lambda x, a: a * x), (lambda x: x[0])
        >>> _, g = finite_difference_gradient(f, jnp.zeros((1, 1)), jnp.ones(1), 1.0, loss)
        >>> round(float(g[0, 0]), 4)   # d/da e^{a} at a = 0, up to O(δ²)
        1.0
    """
    dynamic, static = eqx.partition(theta, eqx.is_inexact_array)
    solve = dict(
        path=path,
        solver=solver,
        stepsize_controller=stepsize_controller,
        dt0=dt0,
        max_steps=max_steps,
    )

    def value(dyn):
        return _scalar_loss(loss)(ode_forward(f, eqx.combine(dyn, static), x0, T, **solve))

    flat, unravel = ravel_pytree(dynamic)
    if flat.size == 0:
        raise ValueError("`theta` has no floating-point leaves to differentiate.")
    delta = jnp.finfo(flat.dtype).eps ** (1 / 3) if step is None else step
    delta = _validate.positive_scalar("step", delta, flat.dtype)
    basis = jnp.eye(flat.size, dtype=flat.dtype)

    def central(e):
        return (value(unravel(flat + delta * e)) - value(unravel(flat - delta * e))) / (2 * delta)

    return value(dynamic), unravel(jax.vmap(central)(basis))


def _relative_gap(a: Any, b: Any) -> Array:
    flat_a, _ = ravel_pytree(a)
    flat_b, _ = ravel_pytree(b)
    return jnp.linalg.norm(flat_a - flat_b) / jnp.linalg.norm(flat_b)


def adjoint_gaps(
    f: VectorField,
    theta: Any,
    x0: Float[ArrayLike, "*state"],
    T: ScalarLike,
    loss: Loss,
    dts: Float[ArrayLike, " n"],
    *,
    adjoints: Mapping[str, diffrax.AbstractAdjoint] | None = None,
    solver: diffrax.AbstractSolver | None = None,
    path: PathKind = "linear",
    max_steps: int = 4096,
) -> dict[str, Float[Array, " n"]]:
    r"""Gradients by diffrax ``adjoints`` vs backprop through the solver, for constant steps.

    THEORY §7: for each constant step ``dt`` (``ConstantStepSize``, the same on the forward
    and the backward solve) and each named adjoint,

    .. math::

        \mathrm{gap}(dt)
          = \frac{\lVert g_{\mathrm{adjoint}} - g_{\mathrm{recursive}}\rVert}
                 {\lVert g_{\mathrm{recursive}}\rVert},

    ``g_recursive`` by ``RecursiveCheckpointAdjoint``. ``BacksolveAdjoint`` (the continuous
    co-state) is ``O(dt^q)``, at most the solver's order ``q`` (Euler 1, midpoint 2) when
    ``t ↦ f(x, θ(t))`` is smooth on each step (use ``path="linear"`` with steps aligned to
    its nodes, e.g. ``L = 2`` nodes: ``θ(t)`` affine); for Heun the leading terms cancel
    (its conjugate method is Heun again) and the gap is ``O(dt³)``. ``DirectAdjoint`` is
    round-off. The steps are looped over with ``lax.map`` (one compilation for all).

    Args:
        f, theta, x0, T, loss, path: as in :func:`ode_gradient`.
        dts: constant step sizes ``(n,)``; ``T / dts[i]`` steps each (``≤ max_steps``).
        adjoints: ``{name: diffrax adjoint}`` to compare (default ``{"backsolve":
            BacksolveAdjoint(), "direct": DirectAdjoint()}``).
        solver: diffrax solver (default ``Euler()``).
        max_steps: static bound on the number of steps.

    Returns:
        ``{"dt": dts, name: gaps, ...}``, arrays of shape ``(n,)``.

    Example:
        >>> import diffrax, jax.numpy as jnp
        >>> gaps = adjoint_gaps(lambda x, a: jnp.tanh(a * x), jnp.ones((2, 1)), jnp.ones(1),
        ...                     1.0, lambda x: x[0], jnp.array([0.1, 0.05]), max_steps=32,
        ...                     adjoints={"backsolve": diffrax.BacksolveAdjoint()})
        >>> bool(gaps["backsolve"][1] < gaps["backsolve"][0])
        True
    """
    if adjoints is None:
        adjoints = {"backsolve": diffrax.BacksolveAdjoint(), "direct": diffrax.DirectAdjoint()}
    adjoints = dict(adjoints)
    if not adjoints or "dt" in adjoints:
        raise ValueError(
            f"`adjoints` must be a non-empty {{name: adjoint}} mapping without the name 'dt'; "
            f"got {adjoints!r}."
        )
    for adjoint in adjoints.values():
        _check_adjoint(adjoint)
    dts = jnp.asarray(dts)
    solve = dict(
        path=path,
        solver=diffrax.Euler() if solver is None else solver,
        stepsize_controller=diffrax.ConstantStepSize(),
        max_steps=max_steps,
    )

    def gaps(dt):
        _, reference = ode_gradient(f, theta, x0, T, loss, dt0=dt, **solve)
        return {
            name: _relative_gap(
                ode_gradient(f, theta, x0, T, loss, adjoint=adjoint, dt0=dt, **solve)[1],
                reference,
            )
            for name, adjoint in adjoints.items()
        }

    return {"dt": dts, **jax.lax.map(gaps, dts)}


def rk_ode_gradient(
    f: VectorField,
    theta: Any,
    x0: Float[ArrayLike, "*state"],
    T: ScalarLike,
    loss: Loss,
    n_steps: int,
    tableau: ButcherTableau,
    *,
    path: PathKind = "piecewise",
) -> tuple[Float[Array, ""], Any]:
    r"""Exact gradient of ``n_steps`` explicit RK steps of the neural ODE, by the co-state.

    The discretise-then-optimise gradient of ``Φ = loss(x_n)`` for ``tableau`` applied with
    step ``h = T / n_steps`` to ``ẋ = f(x, θ(t))`` (stage ``i`` of step ``k`` reads
    ``θ(t_k + c_i h)``, as diffrax's ``Euler``/``Midpoint``/``Heun`` do), computed by
    :func:`hjax.costate.rk_costate_backward` on the time-augmented autonomous system
    ``(ẋ, ṫ) = (f(x, θ(t)), 1)`` with ``θ``'s path parameters fed to every step; their
    gradients are summed over the steps (Thm 8.4; Sanz-Serna 2016). It equals backprop
    through the diffrax solve (:func:`ode_gradient` with ``RecursiveCheckpointAdjoint``)
    to round-off, and compiles one small scan. Memory holds ``n_steps`` copies of ``θ``:
    meant for small ``θ`` (verification); use :func:`ode_gradient` for large ones.

    Args:
        f, theta, x0, T, loss, path: as in :func:`ode_gradient`.
        n_steps: number of steps (static).
        tableau: the explicit RK method.

    Returns:
        ``(Φ, grad_theta)`` with ``theta``'s structure.

    Example:
        >>> import jax.numpy as jnp
        >>> from hjax.costate import EULER
        >>> f, loss = (lambda x, a: a * x), (lambda x: x[0])
        >>> _, g = rk_ode_gradient(f, jnp.zeros((1, 1)), jnp.ones(1), 1.0, loss, 4, EULER)
        >>> float(g[0, 0])   # d/da (1 + a/4)^4 at a = 0
        1.0
    """
    dtype = _validate.float_dtype(x0)
    x0 = jnp.asarray(x0, dtype=dtype)
    T = _validate.positive_scalar("T", T, dtype)
    n_steps = _validate.integer("n_steps", n_steps)
    num_layers(theta)
    check_field(f, theta, x0)
    field = cast_field(f, dtype)

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
    value, dloss = jax.value_and_grad(_scalar_loss(loss))(ys[-1, :-1].reshape(x0.shape))
    p_final = jnp.concatenate([dloss.reshape(-1), jnp.zeros(1, dtype)])
    _, grads = rk_costate_backward(augmented, stacked, ys, p_final, h, tableau)
    return value, jax.tree_util.tree_map(lambda g: jnp.sum(g, axis=0), grads)
