r"""The control Hamiltonian ``H(x, p, θ) = p · f(x, θ)`` and its flow (THEORY §6–§7).

``∂_p H = f`` generates the network's forward characteristic, ``−∂_x H = −(∂_x f)^T p`` its
co-state (backprop, Thm 8.4), ``∂_θ H`` the PMP gradient; :func:`hamiltonian_flow` solves
Hamilton's equations with diffrax.
"""

from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from .._types import Array, ArrayLike, Float, ScalarLike
from ._layers import VectorField, check_field, num_layers
from .continuous import PathKind, solve_config, theta_path

__all__ = ["hamiltonian", "hamiltonian_flow"]


def hamiltonian(
    f: VectorField, x: Float[ArrayLike, "*state"], p: Float[ArrayLike, "*state"], theta_l: Any
) -> Float[Array, ""]:
    r"""The control Hamiltonian of one layer, ``H(x, p, θ) = p · f(x, θ)`` (THEORY §6–§7).

    Its partial derivatives generate the two halves of the network: ``∂_p H = f`` (the
    forward characteristic ``ẋ``), ``-∂_x H = -(∂_x f)^T p`` (the co-state ``ṗ``), and
    ``∂_θ H`` gives the PMP gradient (see :func:`hjax.costate.costate_backward`).

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


_TS_MESSAGE = "`ts` must be finite and strictly increasing (save times t_0 < t_1 < ...)"


def _increasing_times(ts: Array) -> Array:
    """``ts`` checked finite and strictly increasing: eagerly (``ValueError``), or at run
    time with ``eqx.error_if`` when traced (under ``jit``/``vmap`` the check holds too)."""
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"`ts` must be 1-D with at least two times; got shape {ts.shape}.")
    if _validate.is_traced(ts):
        ok = jnp.all(jnp.isfinite(ts)) & jnp.all(jnp.diff(ts) > 0)
        return eqx.error_if(ts, ~ok, _TS_MESSAGE)
    values = np.asarray(ts)
    if not (np.all(np.isfinite(values)) and np.all(np.diff(values) > 0)):
        raise ValueError(f"{_TS_MESSAGE}; got {values!r}.")
    return ts


def hamiltonian_flow(
    f: VectorField,
    theta: Any,
    x0: Float[ArrayLike, "*state"],
    p0: Float[ArrayLike, "*state"],
    ts: Float[ArrayLike, " n"],
    *,
    path: PathKind = "piecewise",
    solver: diffrax.AbstractSolver | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    dt0: ScalarLike | None = None,
    max_steps: int = 4096,
) -> tuple[Float[Array, " n *state"], Float[Array, " n *state"]]:
    r"""Hamilton's equations of ``H(x, p, t) = p · f(x, θ(t))``, solved with diffrax.

    THEORY §6–§7:

    .. math::

        \dot x = \partial_p H = f(x, θ(t)), \qquad
        \dot p = -\partial_x H = -(\partial_x f(x, θ(t)))^\top p,

    both right-hand sides taken by ``jax.grad`` of :func:`hamiltonian`; ``θ(t)`` is
    :func:`hjax.costate.theta_path` over ``[ts[0], ts[-1]]``. The x-equation is the
    network's forward characteristic and the p-equation its co-state (backprop in
    continuous time). Along the flow ``dH/dt = ∂_t H = p · ∂_t f``: for an autonomous field
    (one layer, ``L = 1``, or equal nodes) ``H`` is conserved; with ``θ`` varying in ``t``
    it drifts in general.

    ``ts`` must be finite and strictly increasing; the check also holds under ``jax.jit``
    and ``jax.vmap`` (``eqx.error_if``: a run-time error naming ``ts``).

    Args:
        f: one layer's vector field.
        theta: parameters stacked over ``L`` layers (``L = 1``: autonomous).
        x0: initial state ``(d,)``.
        p0: initial co-state ``(d,)``.
        ts: strictly increasing save times ``(n,)``, ``n ≥ 2``; the flow runs from
            ``ts[0]`` to ``ts[-1]``.
        path: how ``θ(t)`` is read from ``theta``.
        solver: diffrax solver (default ``Tsit5()``).
        stepsize_controller: diffrax controller (default
            ``PIDController(rtol=1e-10, atol=1e-10)``); ``ConstantStepSize()`` needs ``dt0``.
        dt0: the (initial) step, ``> 0``.
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
    ts = _increasing_times(jnp.asarray(ts, dtype=dtype))
    if x0.shape != p0.shape:
        raise ValueError(f"`p0` must have the shape of `x0` {x0.shape}; got {p0.shape}.")
    solver, controller, dt0 = solve_config(solver, stepsize_controller, dt0, dtype, tol=1e-10)
    num_layers(theta)
    check_field(f, theta, x0)
    t0, t1 = ts[0], ts[-1]

    def vector_field(t, y, args):
        params, start, horizon = args
        x, p = y
        theta_t = theta_path(params, t - start, horizon, path)
        dx, dp = jax.grad(lambda x_, p_: hamiltonian(f, x_, p_, theta_t), argnums=(0, 1))(x, p)
        return dp, -dx

    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        solver,
        t0=t0,
        t1=t1,
        dt0=dt0,
        y0=(x0, p0),
        args=(theta, t0, t1 - t0),
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=controller,
        max_steps=max_steps,
    )
    return solution.ys
