r"""Checks for the semiring and the heat semigroup (THEORY §1, §2, §4), group ``foundation``.

Each check measures a claim against a computation that does not share the library's
formula: autodiff of the PDE, a finite-difference/finite-volume PDE solver written here,
Monte Carlo, brute force. The two reference PDE solvers are public in this module (the
test suite imports them through ``tests/_pde_solvers.py``):

* :func:`lax_friedrichs_hj` — monotone Lax–Friedrichs scheme (NumPy) for the inviscid
  equation ``u_t + ½ u_x² = 0`` in 1-D (first order; reference for Hopf–Lax, Thm 5.1);
* :func:`mol_viscous_hj` — method of lines (central differences, diffrax Tsit5) for the
  viscous equation ``u_t + ½ u_x² = (eps/2) u_xx`` in 1-D (second order in space;
  reference for Hopf–Cole with a quadrature measure, Thm 4.1 + Claim (iii));
* :func:`hj_residual` — the residual ``u_t + ½∇uᵀA∇u − (eps/2) tr(A∇²u)`` by autodiff.
"""

import math
from collections.abc import Callable
from functools import partial

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from ..feynman_kac import feynman_kac
from ..hopf_cole import hopf_cole, hopf_cole_grad, hopf_cole_hessian, hopf_lax
from ..measures import grid_measure
from ..semiring import gibbs, lse, softplus_eps
from ._core import Row, bound_row, interval_row, register

__all__ = ["hj_residual", "lax_friedrichs_hj", "mol_viscous_hj"]

GROUP = "foundation"

# Jitted entry points: one compilation per shape instead of op-by-op dispatch.
_hopf_cole = jax.jit(hopf_cole, static_argnames="normalized")
_hopf_lax = jax.jit(hopf_lax)
_grid = jax.jit(grid_measure, static_argnames=("n", "d"))
_feynman_kac = jax.jit(feynman_kac, static_argnames=("g_fn", "n_samples"))


# --------------------------------------------------------------------------------------
# Independent reference solvers
# --------------------------------------------------------------------------------------


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
        \qquad p^\mp_i = \pm\frac{u^k_{i\pm1} - u^k_i}{\Delta x}\ (\text{one-sided}),

    with ``α = max |g'|`` on the grid (≥ max |H'(u_x)| for all time: the discrete
    Lipschitz constant does not grow) and ``α Δt/Δx ≤ cfl ≤ 1``, the monotonicity
    condition; the scheme converges to the viscosity solution at first order
    (Crandall–Lions; ``O(Δx log(1/Δx))`` where an initial convex kink opens a fan).
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

    Central differences on ``n_cells + 1`` nodes (second order in ``Δx``),

    .. math::

        \dot u_i = -\tfrac12\Big(\frac{u_{i+1} - u_{i-1}}{2\Delta x}\Big)^2
            + \frac{\varepsilon}{2}\,\frac{u_{i+1} - 2u_i + u_{i-1}}{\Delta x^2},

    integrated in time by adaptive Tsit5 (``rtol``, ``atol``) so that the spatial error
    dominates. Ghost nodes by linear extrapolation (``u_xx = 0`` at the edges), exact for
    data that are asymptotically affine with outgoing characteristics (e.g. ``√(1+y²)``);
    results are reliable away from the edges. Needs float64 for tight tolerances.

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
    u_fn: Callable[[jax.Array, jax.Array], jax.Array],
    x: jax.Array,
    t: jax.Array,
    eps: jax.Array,
    A: jax.Array | None = None,
) -> jax.Array:
    r"""``∂_t u + ½∇uᵀA∇u − (eps/2) tr(A ∇²u)`` at one point, by forward-mode autodiff.

    ``u_fn(x, t)`` is a scalar function of a point ``x`` ``(d,)`` and a time ``t``; the
    derivatives are ``jax.jacfwd`` in t and x and ``jacfwd ∘ jacfwd`` in x (THEORY §2). Forward
    over forward compiles faster here than ``jax.hessian`` (forward over reverse), and it
    exercises the other mode of the kernels' custom JVPs; the tests use ``jax.grad`` /
    ``jax.hessian``.
    """
    d = x.shape[-1]
    A = jnp.eye(d, dtype=x.dtype) if A is None else A
    u_t = jax.jacfwd(u_fn, argnums=1)(x, t)
    u_x = jax.jacfwd(u_fn, argnums=0)(x, t)
    u_xx = jax.jacfwd(jax.jacfwd(u_fn, argnums=0), argnums=0)(x, t)
    return u_t + 0.5 * u_x @ A @ u_x - 0.5 * eps * jnp.trace(A @ u_xx)


def _slope(h, err) -> float:
    """Least-squares slope of log(err) against log(h): the observed order."""
    return float(np.polyfit(np.log(np.asarray(h)), np.log(np.asarray(err)), 1)[0])


def _random_problem(seed: int, d: int, n: int):
    """Random atoms, data, log-weights, 4 query points and an anisotropic SPD metric (NumPy:
    generating data costs no compilation)."""
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, d))
    g = rng.standard_normal(n)
    log_w = rng.standard_normal(n)
    x = 0.8 * rng.standard_normal((4, d))
    m = rng.standard_normal((d, d))
    A = m @ m.T / d + 0.5 * np.eye(d)
    return x, y, g, log_w, A


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------


@register(GROUP)
def semiring_sandwich(quick: bool) -> list[Row]:
    """Maslov sandwich max ≤ lse ≤ max + eps log N; eps = 0 is max exactly, grad finite;
    two-atom lse (softplus_eps) to relative precision in its tail."""
    rng = np.random.default_rng(0)
    n_draws = 20 if quick else 500
    eps_grid = np.concatenate([[0.0], np.logspace(-4, 1, 15)])
    lse_grid = jax.jit(jax.vmap(jax.vmap(lse, in_axes=(None, 0)), in_axes=(0, None)))
    grad0 = jax.jit(jax.vmap(jax.grad(lse), in_axes=(0, None)))
    violation = exact_gap = grad_gap = 0.0
    for n in (2, 7, 64):
        z = 3.0 * rng.standard_normal((n_draws, n))
        z[::2, 1] = z[::2, 0]  # plant a tie between atoms 0 and 1 in half the draws
        m = np.max(z, axis=-1, keepdims=True)
        vals = np.asarray(lse_grid(z, eps_grid))  # (n_draws, n_eps)
        upper = m + eps_grid * math.log(n)
        violation = max(violation, float(np.max(m - vals)), float(np.max(vals - upper)))
        exact_gap = max(exact_gap, float(np.max(np.abs(vals[:, 0] - m[:, 0]))))
        ties = (z == m).astype(np.float64)
        g0 = np.asarray(grad0(z, 0.0))
        grad_gap = max(grad_gap, float(np.max(np.abs(g0 - ties / ties.sum(-1, keepdims=True)))))
        if not np.all(np.isfinite(g0)):
            grad_gap = math.inf
    # Two atoms: softplus_eps(z) = lse([0, z], eps) = eps log1p(e^{z/eps}), relative error in
    # the tail (where a log(1 + tiny) form returns 0) against math.log1p.
    ratios = -np.logspace(-1, math.log10(700.0), 8 if quick else 200)
    eps = 0.5
    tail = np.asarray(jax.jit(softplus_eps)(ratios * eps, eps))
    exact = np.array([eps * math.log1p(math.exp(r)) for r in ratios])
    tail_err = float(np.max(np.abs(tail / exact - 1)))
    return [
        bound_row(
            GROUP,
            "Maslov sandwich max z ≤ lse(z, eps) ≤ max z + eps log N (largest violation)",
            "Thm 3.1",
            violation,
            1e-12,
        ),
        bound_row(GROUP, "lse(z, 0) = max z bit-for-bit", "Thm 3.1", exact_gap, 0.0),
        bound_row(
            GROUP,
            "∇lse(z, 0) = uniform weights on the argmax set (ties planted), finite",
            "Remark 3.2",
            grad_gap,
            0.0,
        ),
        bound_row(
            GROUP,
            "softplus_eps(z) = eps log1p(e^{z/eps}) to relative precision, z/eps ∈ [−700, −0.1]",
            "THEORY §1",
            tail_err,
            1e-15,
        ),
    ]


@register(GROUP)
def heat_equation_autodiff(quick: bool) -> list[Row]:
    """Hopf–Cole solves the viscous HJ PDE; its closed-form derivatives match autodiff.

    Normalized: residual 0; counting measure: residual −eps d/(2t) (THEORY §2). Closed
    forms ∇u = A⁻¹(x − E_π y)/t and ∇²u = A⁻¹/t − A⁻¹Cov_π(y)A⁻¹/(eps t²) (THEORY §3)
    against forward-mode autodiff of ``hopf_cole`` — random atoms, weights, anisotropic A.
    """
    dims = (1, 5) if quick else (1, 2, 3, 5, 8)
    eps, t = 0.3, 0.7
    worst = dict.fromkeys(("norm", "raw", "grad", "hess"), 0.0)
    for d in dims:
        x, y, g, log_w, A = _random_problem(d, d, 6)

        @jax.jit
        def measure(x, y=y, g=g, log_w=log_w, A=A):
            def u_norm(x_, t_):
                return hopf_cole(x_, y, g, t_, eps, log_w=log_w, A=A, normalized=True)

            def u_raw(x_, t_):
                return hopf_cole(x_, y, g, t_, eps, log_w=log_w, A=A)

            t_ = jnp.asarray(t)
            res = jax.vmap(lambda xi: hj_residual(u_norm, xi, t_, eps, A))(x)
            res_raw = jax.vmap(lambda xi: hj_residual(u_raw, xi, t_, eps, A))(x)
            auto_g = jax.vmap(jax.jacfwd(u_raw), in_axes=(0, None))(x, t_)
            auto_h = jax.vmap(jax.jacfwd(jax.jacfwd(u_raw)), in_axes=(0, None))(x, t_)
            closed_g = hopf_cole_grad(x, y, g, t_, eps, log_w=log_w, A=A)
            closed_h = hopf_cole_hessian(x, y, g, t_, eps, log_w=log_w, A=A)
            return res, res_raw, closed_g - auto_g, closed_h - auto_h

        res, res_raw, gap_g, gap_h = (np.asarray(a) for a in measure(x))
        worst["norm"] = max(worst["norm"], float(np.max(np.abs(res))))
        worst["raw"] = max(worst["raw"], float(np.max(np.abs(res_raw + eps * d / (2 * t)))))
        worst["grad"] = max(worst["grad"], float(np.max(np.abs(gap_g))))
        worst["hess"] = max(worst["hess"], float(np.max(np.abs(gap_h))))
    claims = [
        ("norm", "normalized Hopf–Cole: |u_t + ½∇uᵀA∇u − (eps/2)∇·(A∇u)|", "Thm 4.1", 1e-10),
        ("raw", "counting measure: |PDE residual + eps d/(2t)|", "Thm 4.1", 1e-10),
        ("grad", "∇u closed form A⁻¹(x − E_π y)/t vs autodiff", "THEORY §3", 1e-12),
        ("hess", "∇²u closed form A⁻¹/t − A⁻¹Cov_π(y)A⁻¹/(eps t²) vs autodiff", "Prop E.5", 1e-11),
    ]
    return [
        bound_row(GROUP, claim, thm, worst[k], tol, dims=list(dims), eps=eps, t=t)
        for k, claim, thm, tol in claims
    ]


def _g_shock(y: np.ndarray) -> np.ndarray:
    """Smooth Lipschitz datum whose Hopf–Lax solution has shocks at x = ±1 for t > 1/π."""
    return -np.cos(np.pi * y) / np.pi


@register(GROUP)
def lax_friedrichs_vs_hopf_lax(quick: bool) -> list[Row]:
    """A monotone LxF solver of u_t + ½u_x² = 0 converges to hopf_lax at first order."""
    t = 1.0
    levels = (60, 120, 240) if quick else (60, 120, 240, 480, 960, 1920)
    atoms = np.linspace(-4.0, 4.0, 16001)[:, None]  # fine atom set: g is continuous
    g_atoms = _g_shock(atoms[:, 0])
    errors, hs = [], []
    for n in levels:
        x, u = lax_friedrichs_hj(_g_shock, -3.0, 3.0, n, t)
        inner = np.abs(x) <= 1.0 + 1e-12
        ref = np.asarray(_hopf_lax(x[inner][:, None], atoms, g_atoms, t))
        errors.append(float(np.max(np.abs(u[inner] - ref))))
        hs.append(6.0 / n)
    order = _slope(hs, errors)
    return [
        bound_row(
            GROUP,
            f"LxF (Δx = {hs[-1]:.3g}) vs hopf_lax, g = −cos(πy)/π, t = 1: max error on [−1, 1]",
            "Thm 5.1",
            errors[-1],
            2.0 * hs[-1],
            errors=errors,
            dx=hs,
        ),
        interval_row(
            GROUP, "LxF → hopf_lax: fitted order in Δx", "Thm 5.1", order, 0.85, 1.15, dx=hs
        ),
    ]


def _g_smooth_lipschitz(y):
    """The 1-D case of :func:`_g_point`, elementwise (operators only: NumPy or JAX)."""
    return (1.0 + y**2) ** 0.5 + 0.3 * y


@register(GROUP)
def mol_vs_hopf_cole(quick: bool) -> list[Row]:
    """A method-of-lines solve of the viscous PDE matches hopf_cole with a fine grid measure."""
    t, eps = 1.0, 0.5
    levels = (80, 160) if quick else (80, 160, 320, 640)
    y, log_w = _grid(-12.0, 12.0, 4800, 1)
    g_atoms = _g_smooth_lipschitz(np.asarray(y[:, 0]))
    errors, hs = [], []
    for n in levels:
        x, u = mol_viscous_hj(_g_smooth_lipschitz, -8.0, 8.0, n, t, eps)
        x, u = np.asarray(x), np.asarray(u)
        inner = np.abs(x) <= 2.0 + 1e-12
        ref = _hopf_cole(x[inner][:, None], y, g_atoms, t, eps, log_w=log_w, normalized=True)
        errors.append(float(np.max(np.abs(u[inner] - np.asarray(ref)))))
        hs.append(16.0 / n)
    order = _slope(hs, errors)
    return [
        bound_row(
            GROUP,
            f"MOL (Δx = {hs[-1]:.3g}) vs normalized hopf_cole on a grid measure, "
            "g = √(1+y²) + 0.3y, eps = 0.5: max error on [−2, 2]",
            "Thm 4.1, Claim (iii)",
            errors[-1],
            0.2 * hs[-1] ** 2,
            errors=errors,
            dx=hs,
        ),
        interval_row(
            GROUP, "MOL → hopf_cole: fitted order in Δx", "Thm 4.1", order, 1.8, 2.2, dx=hs
        ),
    ]


@partial(jax.jit, static_argnums=0)
def _quadrature_u(g_point, x, y, log_w, t, eps):
    """``u_eps(x, t)`` for the datum ``g_point`` by normalized Hopf–Cole on atoms ``y``."""
    return hopf_cole(x, y, jax.vmap(g_point)(y), t, eps, log_w=log_w, normalized=True)


def _g_point(p):
    """Smooth Lipschitz datum at one point ``p`` ``(d,)``: √(1 + |p|²) + 0.3 p₁."""
    return jnp.sqrt(1.0 + jnp.sum(p**2)) + 0.3 * p[0]


@register(GROUP)
def feynman_kac_vs_quadrature(quick: bool) -> list[Row]:
    """Feynman–Kac Monte Carlo agrees with quadrature Hopf–Cole within 4 standard errors."""
    t, eps = 1.0, 0.5
    n_samples = 20_000 if quick else 400_000
    rows = []
    for d, n_grid in ((1, 2000), (2, 160)):
        y, log_w = _grid(-10.0, 10.0, n_grid, d)
        x = np.linspace(-1.5, 1.5, 5)[:, None] * np.ones(d)
        ref = _quadrature_u(_g_point, x, y, log_w, t, eps)
        u, se = _feynman_kac(_g_point, x, t, eps, jax.random.key(d), n_samples)
        z = float(np.max(np.abs(np.asarray(u) - np.asarray(ref)) / np.asarray(se)))
        rows.append(
            bound_row(
                GROUP,
                f"Feynman–Kac vs quadrature Hopf–Cole, d = {d}: max |Δu| / stderr (5 points)",
                "Prop E.4(i)",
                z,
                4.0,
                n_samples=n_samples,
                max_stderr=float(np.max(se)),
            )
        )
    return rows


@register(GROUP)
def gibbs_is_gradient(quick: bool) -> list[Row]:
    """∇_z lse = gibbs against central finite differences (eps > 0)."""
    z = np.random.default_rng(3).standard_normal(9)
    h = 1e-6
    steps = h * np.eye(z.shape[0])

    @jax.jit
    def gap(eps):
        lse_at = jax.vmap(lambda dz: lse(z + dz, eps))
        fd = (lse_at(steps) - lse_at(-steps)) / (2 * h)
        return jnp.max(jnp.abs(gibbs(z, eps) - fd))

    worst = max(float(gap(eps)) for eps in (0.05, 0.3, 2.0))
    return [bound_row(GROUP, "gibbs = ∇lse (central differences)", "THEORY §0", worst, 1e-8)]
