r"""Reference solvers of the Hamilton–Jacobi PDE itself (THEORY §2, §4): no Hopf–Cole formula.

These discretize the equation, so they are independent of :func:`hjax.hopf_cole` and
:func:`hjax.hopf_lax` (which evaluate its explicit solution formulas); ``hjax verify`` and
the test suite measure the library against them.

* :func:`lax_friedrichs_hj` — monotone Lax–Friedrichs finite differences (NumPy, 1-D) for
  the inviscid equation ``u_t + ½u_x² = 0``; first order in ``Δx`` (Crandall–Lions), the
  reference for Hopf–Lax (Thm 5.1).
* :func:`mol_viscous_hj` — method of lines (central differences in x, adaptive Tsit5 in t,
  diffrax, 1-D) for the viscous equation ``u_t + ½u_x² = (eps/2)u_xx``; second order in
  ``Δx``, the reference for Hopf–Cole with a quadrature measure (Thm 4.1, Claim (iii)).
* :func:`hj_residual` — the viscous HJ residual ``u_t + ½∇uᵀA∇u − (eps/2)∇·(A∇u)`` of any
  scalar ``u(x, t)`` by forward-mode autodiff (exact up to round-off, any d and metric A).
"""

import math
from collections.abc import Callable
from functools import partial

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = ["hj_residual", "lax_friedrichs_hj", "mol_viscous_hj"]


def lax_friedrichs_hj(
    g: Callable[[np.ndarray], np.ndarray],
    lower: float,
    upper: float,
    n_cells: int,
    t: float,
    *,
    cfl: float = 0.9,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Monotone Lax–Friedrichs scheme for ``u_t + ½ u_x² = 0``, ``u(·, 0) = g`` (NumPy).

    .. math::

        u_i^{k+1} = u_i^k - \Delta t\,\Big[\tfrac12\Big(\frac{p^-_i + p^+_i}{2}\Big)^2
            - \frac{\alpha}{2}\,(p^+_i - p^-_i)\Big],
        \qquad p^-_i = \frac{u^k_i - u^k_{i-1}}{\Delta x},\quad
        p^+_i = \frac{u^k_{i+1} - u^k_i}{\Delta x},

    the Lax–Friedrichs numerical Hamiltonian with ``α = max |g'|`` on the grid (≥ max |H'(u_x)|
    for all time: the discrete Lipschitz constant does not grow) and ``α Δt/Δx ≤ cfl ≤ 1``,
    the monotonicity condition.

    Order of accuracy: monotone, consistent schemes converge to the viscosity solution
    (Crandall–Lions 1984) with error ``O(√Δx)`` in general, first order ``O(Δx)`` for
    semiconcave data whose solution develops shocks (e.g. ``−cos(πy)/π``), and
    ``O(Δx log(1/Δx))`` where an initial convex kink opens a rarefaction fan (``|y|``).
    ``hjax verify`` measures the order against :func:`hjax.hopf_lax` (Thm 5.1).

    Boundaries: ghost nodes by linear extrapolation, consistent where the solution is
    affine near the edges; results are reliable at distance ``≥ α t`` from them.

    Args:
        g: initial datum, vectorized over a NumPy array of nodes.
        lower, upper: the interval.
        n_cells: number of cells (``n_cells + 1`` nodes).
        t: final time ``> 0``.
        cfl: Courant number ``α Δt/Δx`` (``≤ 1``).

    Returns:
        ``(x, u)``: the nodes and the solution at time ``t``, float64 ``(n_cells + 1,)``.

    Example:
        >>> x, u = lax_friedrichs_hj(lambda y: 0.5 * y, -1.0, 1.0, 20, 1.0)
        >>> bool(np.allclose(u, 0.5 * x - 0.125))  # affine data: u = g − t|g'|²/2, exactly
        True
    """
    x = np.linspace(lower, upper, n_cells + 1)
    dx = (upper - lower) / n_cells
    u = np.asarray(g(x), dtype=np.float64)
    alpha = max(float(np.max(np.abs(np.diff(u)))) / dx, 1e-12)
    n_steps = math.ceil(t * alpha / (cfl * dx))
    dt = t / n_steps
    for _ in range(n_steps):
        ue = np.concatenate([[2 * u[0] - u[1]], u, [2 * u[-1] - u[-2]]])
        p_minus = (ue[1:-1] - ue[:-2]) / dx
        p_plus = (ue[2:] - ue[1:-1]) / dx
        flux = 0.5 * (0.5 * (p_minus + p_plus)) ** 2 - 0.5 * alpha * (p_plus - p_minus)
        u = u - dt * flux
    return x, u


def _mol_rhs(s, u, args):
    """Semi-discrete right-hand side ``−½(D₀u)² + (eps/2) D₊D₋u`` with linear ghost nodes."""
    dx, eps = args
    ue = jnp.concatenate([2 * u[:1] - u[1:2], u, 2 * u[-1:] - u[-2:-1]])
    ux = (ue[2:] - ue[:-2]) / (2 * dx)
    uxx = (ue[2:] - 2 * ue[1:-1] + ue[:-2]) / dx**2
    return -0.5 * ux**2 + 0.5 * eps * uxx


def mol_viscous_hj(
    g: Callable[[jax.Array], jax.Array],
    lower: float,
    upper: float,
    n_cells: int,
    t: float,
    eps: float,
    *,
    rtol: float = 1e-9,
    atol: float = 1e-9,
) -> tuple[jax.Array, jax.Array]:
    r"""Method of lines for ``u_t + ½ u_x² = (eps/2) u_xx``, ``u(·, 0) = g`` (diffrax).

    Central differences on ``n_cells + 1`` nodes,

    .. math::

        \dot u_i = -\tfrac12\Big(\frac{u_{i+1} - u_{i-1}}{2\Delta x}\Big)^2
            + \frac{\varepsilon}{2}\,\frac{u_{i+1} - 2u_i + u_{i-1}}{\Delta x^2},

    integrated in time by adaptive Tsit5 (``rtol``, ``atol``) so that the spatial error
    dominates. Order of accuracy: both difference quotients are second order, so for smooth
    solutions (eps > 0 keeps them smooth, with derivatives growing like ``1/eps`` near a
    would-be shock) the error is ``O(Δx²)`` once ``Δx ≪ eps``; ``hjax verify`` measures it
    against :func:`hjax.hopf_cole` on a fine grid measure (Thm 4.1, Claim (iii)).

    Ghost nodes by linear extrapolation (``u_xx = 0`` at the edges), exact for data that are
    asymptotically affine with outgoing characteristics (e.g. ``√(1+y²)``); results are
    reliable away from the edges. Needs float64 for tight tolerances.

    Args:
        g: initial datum, vectorized over a JAX array of nodes.
        lower, upper: the interval.
        n_cells: number of cells.
        t: final time ``> 0``.
        eps: viscosity ``> 0``.
        rtol, atol: time-integration tolerances.

    Returns:
        ``(x, u)``: the nodes and the solution at time ``t``.
    """
    x = jnp.asarray(np.linspace(lower, upper, n_cells + 1))
    dx = (upper - lower) / n_cells
    return x, _mol_solve(g, x, dx, t, eps, rtol, atol)


@partial(jax.jit, static_argnums=(0, 5, 6))
def _mol_solve(g, x, dx, t, eps, rtol, atol):
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_mol_rhs),
        diffrax.Tsit5(),
        0.0,
        t,
        None,
        g(x),
        args=(jnp.asarray(dx, x.dtype), jnp.asarray(eps, x.dtype)),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        saveat=diffrax.SaveAt(t1=True),
        max_steps=1_000_000,
    )
    return sol.ys[0]


def hj_residual(
    u_fn: Callable[[jax.Array, jax.Array], ArrayLike],
    x: ArrayLike,
    t: ArrayLike,
    eps: ArrayLike,
    A: ArrayLike | None = None,
) -> jax.Array:
    r"""The viscous HJ residual of ``u_fn`` at one point, by forward-mode autodiff (THEORY §2).

    .. math::

        R(x, t) = \partial_t u + \tfrac12 \nabla u^\top A \nabla u
            - \tfrac{\varepsilon}{2}\,\mathrm{tr}(A\,\nabla^2 u),

    zero for a solution of ``u_t + ½∇uᵀA∇u = (eps/2)∇·(A∇u)`` (``A`` constant, so
    ``∇·(A∇u) = tr(A∇²u)``). ``u_fn(x, t)`` is a scalar function of a point ``x`` ``(d,)``
    and a time ``t``; the derivatives are ``jax.jacfwd`` in t and x and ``jacfwd ∘ jacfwd``
    in x: exact up to round-off, no discretization. Forward over forward compiles faster
    here than ``jax.hessian`` (forward over reverse) and exercises the other mode of the
    kernels' custom JVPs.

    Args:
        u_fn: ``u(x, t)`` → scalar.
        x: the point ``(d,)``.
        t: the time (scalar).
        eps: the viscosity (scalar).
        A: the metric ``(d, d)`` (default identity).

    Returns:
        The residual (scalar).

    Example:
        >>> u = lambda x, t: jnp.sum(x**2) / (2 * (1 + t)) + 0.5 * jnp.log(1 + t)  # eps = 1
        >>> abs(float(hj_residual(u, jnp.array([0.3]), jnp.asarray(0.5), 1.0))) < 1e-12
        True
    """
    x, t = jnp.asarray(x), jnp.asarray(t)
    d = x.shape[-1]
    A = jnp.eye(d, dtype=x.dtype) if A is None else jnp.asarray(A)
    u_t = jax.jacfwd(u_fn, argnums=1)(x, t)
    u_x = jax.jacfwd(u_fn, argnums=0)(x, t)
    u_xx = jax.jacfwd(jax.jacfwd(u_fn, argnums=0), argnums=0)(x, t)
    return u_t + 0.5 * u_x @ A @ u_x - 0.5 * eps * jnp.trace(A @ u_xx)
