r"""Checks for the semiring and the heat semigroup (THEORY §1, §2, §4), group ``foundation``.

Each check measures a claim of the library (reached through the public API, ``hjax.*``)
against a computation that does not share its formula: autodiff of the PDE, the reference
PDE solvers of :mod:`hjax.reference.pde`, Monte Carlo, central differences, NumPy brute
force. Rows:

* ``semiring.*`` — Maslov sandwich, eps = 0 exactness, softplus tail (Thm 3.1); ∇lse = gibbs
  and the eps-derivatives of the Gibbs weights and of lse (d gibbs/d eps, d²lse/d eps²,
  d lse/d eps = entropy) against central differences and NumPy.
* ``heat.*`` — the viscous HJ residual of Hopf–Cole by autodiff (Thm 4.1), its closed-form
  derivatives, the normalized solution with a metric A ≠ I against an explicit heat-kernel
  sum and the heat-kernel mass, d∇u/d eps, and the library against the reference solvers
  (Lax–Friedrichs → Hopf–Lax, method of lines → Hopf–Cole, Feynman–Kac).

The reference solvers used to live here; they are :mod:`hjax.reference.pde` now (the names
below stay importable from this module for old imports).
"""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import hjax

from ..reference.pde import hj_residual, lax_friedrichs_hj, mol_viscous_hj
from ._core import Row, bound_row, rate_row, register

__all__: list[str] = []

GROUP = "foundation"


def _worst(*values: float) -> float:
    """The largest value, NaN if any is NaN (Python's ``max`` drops a NaN not in first place:
    a NaN measurement must fail its row, not vanish)."""
    return float(np.max(np.asarray(values, dtype=float)))


# Jitted entry points (one compilation per shape). They look the library up at trace time
# through ``hjax.*`` so that a planted bug (monkeypatch) reaches them.
@partial(jax.jit, static_argnames="normalized")
def _hopf_cole(x, y, g, t, eps, log_w=None, A=None, normalized=False):
    return hjax.hopf_cole(x, y, g, t, eps, log_w=log_w, A=A, normalized=normalized)


@jax.jit
def _hopf_lax(x, y, g, t):
    return hjax.hopf_lax(x, y, g, t)


@partial(jax.jit, static_argnames=("n", "d"))
def _grid(lower, upper, n, d):
    return hjax.grid_measure(lower, upper, n, d)


@partial(jax.jit, static_argnames=("g_fn", "n_samples"))
def _feynman_kac(g_fn, x, t, eps, key, n_samples):
    return hjax.feynman_kac(g_fn, x, t, eps, key, n_samples)


def _random_problem(seed: int, d: int, n: int):
    """Random atoms, data, log-weights, 4 query points and an anisotropic, non-diagonal SPD
    metric (NumPy: generating data costs no compilation)."""
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, d))
    g = rng.standard_normal(n)
    log_w = rng.standard_normal(n)
    x = 0.8 * rng.standard_normal((4, d))
    m = rng.standard_normal((d, d))
    A = m @ m.T / d + 0.5 * np.eye(d)
    return x, y, g, log_w, A


# Central differences in eps on the 5-point stencil e + h·(−2, −1, 0, 1, 2), h = 1e-3 e:
# f'(e) = (f₋₂ − 8f₋₁ + 8f₁ − f₂)/(12h) + O(h⁴), f''(e) = (−f₋₂ + 16f₋₁ − 30f₀ + 16f₁ − f₂)/(12h²)
# + O(h⁴).
_FD_STEPS = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
_FD1 = np.array([1.0, -8.0, 0.0, 8.0, -1.0]) / 12.0
_FD2 = np.array([-1.0, 16.0, -30.0, 16.0, -1.0]) / 12.0
_FD_REL_STEP = 1e-3


def _stencil(eps: np.ndarray) -> np.ndarray:
    """The stencil points ``(len(eps), 5)``: ``e + 1e-3 e · (−2, −1, 0, 1, 2)``."""
    eps = np.asarray(eps, dtype=float)
    return eps[:, None] * (1.0 + _FD_REL_STEP * _FD_STEPS)


def _fd(values: np.ndarray, eps: np.ndarray, order: int) -> np.ndarray:
    """Central difference of order 1 or 2 from values on :func:`_stencil` ``(E, 5, ...)``."""
    h = _FD_REL_STEP * np.asarray(eps, dtype=float)
    coefs = _FD1 if order == 1 else _FD2
    out = np.einsum("es...,s->e...", values, coefs)
    return out / h.reshape((-1,) + (1,) * (out.ndim - 1)) ** order


# --------------------------------------------------------------------------------------
# §1 the semiring
# --------------------------------------------------------------------------------------


@register(GROUP)
def semiring_sandwich(quick: bool) -> list[Row]:
    """Maslov sandwich max ≤ lse ≤ max + eps log N; eps = 0 is max exactly, grad finite;
    two-atom lse (softplus_eps) to relative precision in its tail (Thm 3.1, Remark 3.2)."""
    rng = np.random.default_rng(0)
    n_draws = 20 if quick else 500
    eps_grid = np.concatenate([[0.0], np.logspace(-4, 1, 15)])
    lse_grid = jax.jit(
        jax.vmap(jax.vmap(lambda z, e: hjax.lse(z, e), in_axes=(None, 0)), in_axes=(0, None))
    )
    grad0 = jax.jit(jax.vmap(jax.grad(lambda z, e: hjax.lse(z, e)), in_axes=(0, None)))
    violation = exact_gap = grad_gap = 0.0
    for n in (2, 7, 64):
        z = 3.0 * rng.standard_normal((n_draws, n))
        z[::2, 1] = z[::2, 0]  # plant a tie between atoms 0 and 1 in half the draws
        m = np.max(z, axis=-1, keepdims=True)
        vals = np.asarray(lse_grid(z, eps_grid))  # (n_draws, n_eps)
        upper = m + eps_grid * math.log(n)
        violation = _worst(violation, float(np.max(m - vals)), float(np.max(vals - upper)))
        exact_gap = _worst(exact_gap, float(np.max(np.abs(vals[:, 0] - m[:, 0]))))
        ties = (z == m).astype(np.float64)
        g0 = np.asarray(grad0(z, 0.0))
        grad_gap = _worst(grad_gap, float(np.max(np.abs(g0 - ties / ties.sum(-1, keepdims=True)))))
        if not np.all(np.isfinite(g0)):
            grad_gap = math.inf
    # Two atoms: softplus_eps(z) = lse([0, z], eps) = eps log1p(e^{z/eps}), relative error in
    # the tail (where a log(1 + tiny) form returns 0) against math.log1p.
    ratios = -np.logspace(-1, math.log10(700.0), 8 if quick else 200)
    eps = 0.5
    tail = np.asarray(jax.jit(lambda z, e: hjax.softplus_eps(z, e))(ratios * eps, eps))
    exact = np.array([eps * math.log1p(math.exp(r)) for r in ratios])
    tail_err = float(np.max(np.abs(tail / exact - 1)))
    return [
        bound_row(
            GROUP,
            "semiring.sandwich",
            "Maslov sandwich max z ≤ lse(z, eps) ≤ max z + eps log N (largest violation; "
            "N = 2, 7, 64, ties planted, eps ∈ {0} ∪ [1e-4, 10])",
            "Thm 3.1",
            violation,
            1e-12,
        ),
        bound_row(
            GROUP,
            "semiring.lse_eps0_is_max",
            "lse(z, 0) = max z bit-for-bit",
            "Thm 3.1",
            exact_gap,
            0.0,
        ),
        bound_row(
            GROUP,
            "semiring.grad_eps0_ties",
            "∇lse(z, 0) = uniform weights on the argmax set (ties planted), finite",
            "Remark 3.2",
            grad_gap,
            0.0,
        ),
        bound_row(
            GROUP,
            "semiring.softplus_tail",
            "softplus_eps(z) = eps log1p(e^{z/eps}) to relative precision, z/eps ∈ [−700, −0.1]",
            "THEORY §1",
            tail_err,
            1e-15,
        ),
    ]


@register(GROUP)
def gibbs_is_gradient(quick: bool) -> list[Row]:
    """∇_z lse = gibbs against central finite differences in z (eps > 0)."""
    z = np.random.default_rng(3).standard_normal(9)
    h = 1e-6
    steps = h * np.eye(z.shape[0])

    @jax.jit
    def gap(eps):
        lse_at = jax.vmap(lambda dz: hjax.lse(z + dz, eps))
        fd = (lse_at(steps) - lse_at(-steps)) / (2 * h)
        return jnp.max(jnp.abs(hjax.gibbs(z, eps) - fd))

    worst = _worst(*(float(gap(eps)) for eps in (0.05, 0.3, 2.0)))
    return [
        bound_row(
            GROUP,
            "semiring.gibbs_is_grad_lse",
            "gibbs(z, eps) = ∇_z lse(z, eps) against central differences in z",
            "THEORY §0",
            worst,
            1e-8,
        )
    ]


def _eps_panel(rng: np.random.Generator, n_rows: int, n: int):
    """Logits and log-weights ``(n_rows, n)``: counting measure, planted ties, masked atoms
    (``-inf``, the max atom included), general weights with masks — in turn."""
    z = 1.5 * rng.standard_normal((n_rows, n))
    log_w = np.zeros((n_rows, n))
    z[1::4, 1] = z[1::4, 0] = np.max(z[1::4], -1)  # a tie at the top
    masked = np.zeros((n_rows, n), bool)
    rows = np.arange(2, n_rows, 4)
    masked[rows, np.argmax(z[rows], -1)] = True  # the would-be winner masked
    masked[2::4, -2:] = masked[3::4, -2:] = True
    log_w[3::4] = rng.standard_normal(log_w[3::4].shape)
    log_w[masked] = -np.inf
    return z, log_w


def _np_gibbs(z: np.ndarray, log_w: np.ndarray, eps: float) -> np.ndarray:
    """π ∝ w e^{z/eps} row-wise (NumPy); at eps = 0 uniform over the active argmax set."""
    active = log_w > -np.inf
    if eps == 0:
        top = np.where(active, z, -np.inf)
        ties = (top == np.max(top, -1, keepdims=True)).astype(float)
        return ties / ties.sum(-1, keepdims=True)
    a = np.where(active, z / eps + np.where(active, log_w, 0.0), -np.inf)
    p = np.exp(a - np.max(a, -1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


def _np_entropy_term(z: np.ndarray, log_w: np.ndarray, eps: float) -> np.ndarray:
    """∂lse/∂eps in NumPy: H(π) + E_π[log w] = −Σ π log(π/w) (the entropy H(π) for the
    counting measure with masks)."""
    p = _np_gibbs(z, log_w, eps)
    on = p > 0
    log_p, log_w_on = np.log(np.where(on, p, 1.0)), np.where(on, log_w, 0.0)
    return np.sum(np.where(on, p * (log_w_on - log_p), 0.0), -1)


def _np_d2lse(z: np.ndarray, log_w: np.ndarray, eps: float) -> np.ndarray:
    """∂²lse/∂eps² = Var_π(z)/eps³, π ∝ w e^{z/eps} (NumPy; d/deps of log Z − ⟨π, z⟩/eps)."""
    p = _np_gibbs(z, log_w, eps)
    zc = np.where(p > 0, z - np.sum(np.where(p > 0, p * z, 0.0), -1, keepdims=True), 0.0)
    return np.sum(p * zc**2, -1) / eps**3


@jax.jit
def _gibbs_eps_tangents(z, log_w, points, hc):
    """At every stencil point (``points``, ``(E, 5)``): the Gibbs weights and ∇u of
    ``hc = (x, y, g, t, log_w, A)`` with their eps-tangents (``jax.jvp`` through the custom
    JVPs), in one compilation; the caller forms central differences from the values."""
    x, y, g, t, lw_hc, A = hc
    gib = lambda e: hjax.gibbs(z, e, log_w=log_w)
    grad_u = lambda e: hjax.hopf_cole_grad(x, y, g, t, e, log_w=lw_hc, A=A)
    tangent = lambda f: lambda e: jax.jvp(f, (e,), (jnp.ones_like(e),))
    return jax.vmap(lambda e: (tangent(gib)(e), tangent(grad_u)(e)))(points.ravel())


@jax.jit
def _lse_eps_derivatives(z, log_w, points, eps):
    """lse and ``∂lse/∂eps`` (``jax.value_and_grad``) at every stencil point and at eps = 0
    (appended last), and ``∂²lse/∂eps²`` (``grad ∘ grad``) at each ``eps``, row-wise."""
    lse_row = lambda zr, lw, e: hjax.lse(zr, e, log_w=lw)
    lse_d1 = jax.vmap(jax.value_and_grad(lse_row, 2), (0, 0, None))
    flat = jnp.concatenate([points.ravel(), jnp.zeros(1, points.dtype)])
    d2 = jax.vmap(jax.vmap(jax.grad(jax.grad(lse_row, 2), 2), (0, 0, None)), (None, None, 0))
    return jax.vmap(lambda e: lse_d1(z, log_w, e))(flat), d2(z, log_w, eps)


def _rel_gap(ad, fd) -> float:
    """max |ad − fd| / max |fd| (NaN propagates: a NaN derivative fails the row)."""
    return float(np.max(np.abs(ad - fd)) / np.max(np.abs(fd)))


def _eps_setup(quick: bool):
    """The panel of :func:`gibbs_eps_derivatives` / :func:`lse_eps_derivatives`: eps values,
    their stencils, logits and log-weights (ties, masks, weights)."""
    rng = np.random.default_rng(11)
    eps = np.asarray((0.25, 1.0, 4.0) if quick else (0.1, 0.25, 0.5, 1.0, 2.0, 4.0))
    z, log_w = _eps_panel(rng, 8 if quick else 64, 7)
    return eps, _stencil(eps), z, log_w


def _on_stencil(a: np.ndarray, n_eps: int) -> np.ndarray:
    """Values at the flattened stencil points ``(5 E [+1], ...)`` as ``(E, 5, ...)``."""
    return a[: 5 * n_eps].reshape((n_eps, 5) + a.shape[1:])


@register(GROUP)
def gibbs_eps_derivatives(quick: bool) -> list[Row]:
    r"""The eps-derivatives of the Gibbs weights and of ∇u (THEORY §0, §3).

    ``∂π_j/∂eps = −π_j (s_j − ⟨π, s⟩)/eps²`` and ``∂_eps ∇u = −A⁻¹ ∂_eps E_π[y]/t``, taken by
    autodiff through the library's custom JVP rules, against central differences of the
    library's *values* in eps (4-point, ``h = 1e-3 eps``), which no derivative rule touches.
    Panel: several eps > 0, tied logits, masked atoms (``log w = −inf``, the max atom
    included), weighted measures; for ∇u an SPD non-diagonal A, masks and a tie point.
    """
    eps, points, z, log_w = _eps_setup(quick)
    x, y, g, lw, A = _random_problem(12, 3, 8)
    g[1] = g[0]
    lw[-2:] = -np.inf
    x = np.concatenate([x, 0.5 * (y[:1] + y[1:2])])  # equidistant from atoms 0, 1: a tie
    out = _gibbs_eps_tangents(z, log_w, points, (x, y, g, 0.8, lw, A))
    (gib, dgib), (gu, dgu) = jax.tree.map(lambda a: _on_stencil(np.asarray(a), len(eps)), out)
    dg_fd, du_fd = _fd(gib, eps, 1), _fd(gu, eps, 1)
    gap_gibbs = _worst(*(_rel_gap(dgib[i, 2], dg_fd[i]) for i in range(len(eps))))
    gap_grad = _worst(*(_rel_gap(dgu[i, 2], du_fd[i]) for i in range(len(eps))))
    details = {"eps": eps.tolist(), "fd_step": f"{_FD_REL_STEP} eps"}
    return [
        bound_row(
            GROUP,
            "semiring.dgibbs_deps",
            "∂gibbs/∂eps (jvp through the custom JVP) vs 4-point central differences of "
            "gibbs in eps: ties, masked atoms, weights (max error / max |∂gibbs/∂eps|)",
            "THEORY §0, §3",
            gap_gibbs,
            1e-9,
            **details,
        ),
        bound_row(
            GROUP,
            "heat.dgrad_deps",
            "∂∇u/∂eps (jvp of hopf_cole_grad) vs central differences in eps: A SPD, "
            "masked atoms, a tie point (relative)",
            "THEORY §3",
            gap_grad,
            1e-9,
            **details,
        ),
    ]


@register(GROUP)
def lse_eps_derivatives(quick: bool) -> list[Row]:
    r"""The first and second eps-derivatives of lse (THEORY §0, Prop F.1).

    ``∂lse/∂eps = H(π) + E_π[log w]`` (the entropy of the Gibbs weights for the counting
    measure, ≥ 0; ``log k`` at eps = 0 for a k-fold tie, one-sided) by ``jax.grad`` against
    NumPy; ``∂²lse/∂eps² = Var_π(z)/eps³`` by ``grad ∘ grad`` (which differentiates the
    Gibbs weights in eps) against the 5-point second difference of lse's values and
    against NumPy. Same panel as :func:`gibbs_eps_derivatives`.
    """
    eps, points, z, log_w = _eps_setup(quick)
    (lse_v, d1), d2 = jax.tree.map(np.asarray, _lse_eps_derivatives(z, log_w, points, eps))
    d2_fd = _fd(_on_stencil(lse_v, len(eps)), eps, 2)
    d2_np = [_np_d2lse(z, log_w, e) for e in eps]
    gap_d2 = _worst(*(_rel_gap(d2[i], d2_fd[i]) for i in range(len(eps))))
    gap_d2_np = _worst(*(_rel_gap(d2[i], d2_np[i]) for i in range(len(eps))))
    # At eps = 0 only the rows without general weights: there the one-sided derivative is
    # log Σ_{ties} w_j, while gibbs(z, 0) is uniform on the ties (a convention, THEORY §0).
    unweighted = np.all(np.isin(log_w, (0.0, -np.inf)), -1)
    gaps = [np.abs(d1[-1] - _np_entropy_term(z, log_w, 0.0))[unweighted]]
    gaps += [np.abs(d1[5 * i + 2] - _np_entropy_term(z, log_w, e)) for i, e in enumerate(eps)]
    gap_h = float(np.max(np.concatenate(gaps)))
    details = {"eps": eps.tolist(), "fd_step": f"{_FD_REL_STEP} eps"}
    return [
        bound_row(
            GROUP,
            "semiring.dlse_deps_entropy",
            "∂lse/∂eps (jax.grad) = entropy H(π) ≥ 0 of the Gibbs weights (+ E_π log w for "
            "weights) from NumPy; eps = 0: log k for a k-fold tie (one-sided)",
            "THEORY §0, Prop F.1",
            gap_h,
            1e-12,
            **details,
        ),
        bound_row(
            GROUP,
            "semiring.d2lse_deps2",
            "∂²lse/∂eps² (grad∘grad) vs 5-point second differences of lse in eps "
            "(relative to max |∂²lse/∂eps²|)",
            "THEORY §0",
            gap_d2,
            1e-6,
            **details,
        ),
        bound_row(
            GROUP,
            "semiring.d2lse_deps2.numpy",
            "∂²lse/∂eps² (grad∘grad) = Var_π(z)/eps³ computed in NumPy (relative)",
            "THEORY §0",
            gap_d2_np,
            1e-10,
            **details,
        ),
    ]


# --------------------------------------------------------------------------------------
# §2 the viscous HJ equation and Hopf–Cole
# --------------------------------------------------------------------------------------


@register(GROUP)
def heat_equation_autodiff(quick: bool) -> list[Row]:
    """Hopf–Cole solves the viscous HJ PDE; its closed-form derivatives match autodiff.

    Normalized: residual 0; counting measure: residual −eps d/(2t) (THEORY §2). Closed
    forms ∇u = A⁻¹(x − E_π y)/t and ∇²u = A⁻¹/t − A⁻¹Cov_π(y)A⁻¹/(eps t²) (THEORY §3)
    against forward-mode autodiff of ``hopf_cole`` — random atoms, weights, anisotropic
    non-diagonal SPD A.
    """
    dims = (3,) if quick else (1, 2, 8)  # one compilation per dimension
    eps, t = 0.3, 0.7
    worst = dict.fromkeys(("norm", "raw", "grad", "hess"), 0.0)
    for d in dims:
        x, y, g, log_w, A = _random_problem(d, d, 6)

        @jax.jit
        def measure(x, y=y, g=g, log_w=log_w, A=A):
            def u_norm(x_, t_):
                return hjax.hopf_cole(x_, y, g, t_, eps, log_w=log_w, A=A, normalized=True)

            def u_raw(x_, t_):
                return hjax.hopf_cole(x_, y, g, t_, eps, log_w=log_w, A=A)

            t_ = jnp.asarray(t)
            res = jax.vmap(lambda xi: hj_residual(u_norm, xi, t_, eps, A))(x)
            res_raw = jax.vmap(lambda xi: hj_residual(u_raw, xi, t_, eps, A))(x)
            auto_g = jax.vmap(jax.jacfwd(u_raw), in_axes=(0, None))(x, t_)
            auto_h = jax.vmap(jax.jacfwd(jax.jacfwd(u_raw)), in_axes=(0, None))(x, t_)
            closed_g = hjax.hopf_cole_grad(x, y, g, t_, eps, log_w=log_w, A=A)
            closed_h = hjax.hopf_cole_hessian(x, y, g, t_, eps, log_w=log_w, A=A)
            return res, res_raw, closed_g - auto_g, closed_h - auto_h

        res, res_raw, gap_g, gap_h = (np.asarray(a) for a in measure(x))
        worst["norm"] = _worst(worst["norm"], float(np.max(np.abs(res))))
        worst["raw"] = _worst(worst["raw"], float(np.max(np.abs(res_raw + eps * d / (2 * t)))))
        worst["grad"] = _worst(worst["grad"], float(np.max(np.abs(gap_g))))
        worst["hess"] = _worst(worst["hess"], float(np.max(np.abs(gap_h))))
    claims = [
        (
            "norm",
            "heat.pde_residual.normalized",
            "normalized Hopf–Cole, A SPD non-diagonal, weighted atoms: "
            "|u_t + ½∇uᵀA∇u − (eps/2)∇·(A∇u)| by autodiff",
            "Thm 4.1, 4.4",
            1e-10,
        ),
        (
            "raw",
            "heat.pde_residual.counting",
            "counting measure: |PDE residual + eps d/(2t)| by autodiff",
            "Thm 4.1",
            1e-10,
        ),
        (
            "grad",
            "heat.grad_closed_form",
            "∇u closed form A⁻¹(x − E_π y)/t (hopf_cole_grad) vs autodiff of hopf_cole",
            "THEORY §3",
            1e-12,
        ),
        (
            "hess",
            "heat.hessian_closed_form",
            "∇²u closed form A⁻¹/t − A⁻¹Cov_π(y)A⁻¹/(eps t²) (hopf_cole_hessian) vs autodiff",
            "Prop E.5",
            1e-11,
        ),
    ]
    return [
        bound_row(GROUP, key, claim, thm, worst[k], tol, dims=list(dims), eps=eps, t=t)
        for k, key, claim, thm, tol in claims
    ]


def _np_normalized_u(x, y, g, t, eps, log_w, A):
    r"""``−eps log Σ_j w_j (2π eps t)^{−d/2} det(A)^{−1/2} exp(−(c_t(x, y_j) + g_j)/eps)`` in
    NumPy: the heat kernel of covariance ``eps t A`` written out (``np.linalg.solve``,
    ``np.linalg.det``; no Cholesky factor, no library code)."""
    d = y.shape[1]
    diff = x[:, None, :] - y[None]
    quad = np.einsum("bni,bni->bn", diff, np.linalg.solve(A, diff[..., None])[..., 0])
    log_kernel = (
        -quad / (2 * t * eps)
        - d / 2 * math.log(2 * math.pi * eps * t)
        - 0.5 * math.log(np.linalg.det(A))
    )
    a = log_w + log_kernel - g / eps
    m = np.max(a, -1)
    return -eps * (m + np.log(np.sum(np.exp(a - m[:, None]), -1)))


@register(GROUP)
def normalized_metric_value(quick: bool) -> list[Row]:
    r"""``hopf_cole(..., A, normalized=True)`` is the heat-kernel solution, prefactor included.

    The PDE residual (``heat.pde_residual.normalized``) cannot see an additive constant such as
    a wrong ``log det A`` term; these rows check the value itself (THEORY §2):

    * against the explicit sum ``−eps log Σ_j w_j (2π eps t)^{−d/2} det(A)^{−1/2}
      e^{−(c_t(x, y_j) + g_j)/eps}`` in NumPy (A SPD non-diagonal, det A ≠ 1);
    * the heat kernel has unit mass: with ``g = 0`` and a fine grid measure (midpoint rule,
      spectrally accurate for a Gaussian) the normalized solution is ``−eps log 1 = 0``.
    """
    rng = np.random.default_rng(21)
    # d = 2, A rotated with eigenvalues (0.6, 2.5) (det A = 1.5: a sign error in log det A
    # shows), atoms on the grid [−12, 12]² with h = 0.2; queries near the origin.
    theta = 0.4
    R = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    A = R @ np.diag([0.6, 2.5]) @ R.T
    y, lw_grid = (np.asarray(a) for a in _grid(-12.0, 12.0, 120, 2))
    x = rng.uniform(-1.0, 1.0, size=(4, 2))
    # Unit mass (eps t = 0.5): the midpoint rule is spectrally accurate for the Gaussian.
    zero = np.zeros(y.shape[0])
    mass = float(np.max(np.abs(_hopf_cole(x, y, zero, 1.0, 0.5, lw_grid, A, normalized=True))))
    # Value: random data and weights, 10% of the atoms masked, two (eps, t).
    g = 0.5 * rng.standard_normal(y.shape[0])
    log_w = lw_grid + 0.3 * rng.standard_normal(y.shape[0])
    log_w[rng.random(y.shape[0]) < 0.1] = -np.inf
    gap = 0.0
    for eps, t in ((0.2, 0.6), (1.0, 1.5)):
        u = np.asarray(_hopf_cole(x, y, g, t, eps, log_w, A, normalized=True))
        ref = _np_normalized_u(x, y, g, t, eps, log_w, A)
        gap = _worst(gap, float(np.max(np.abs(u - ref) / np.maximum(1.0, np.abs(ref)))))
    return [
        bound_row(
            GROUP,
            "heat.normalized_value.numpy",
            "hopf_cole(normalized=True), d = 2, A SPD non-diagonal (det 1.5), weights + masks = "
            "−eps log Σ w_j (2π eps t)^{−d/2} det(A)^{−1/2} e^{−(c_t+g_j)/eps} in NumPy (rel.)",
            "Thm 4.1, 4.4",
            gap,
            1e-12,
        ),
        bound_row(
            GROUP,
            "heat.normalized_value.kernel_mass",
            "heat kernel of covariance eps t A has unit mass: normalized hopf_cole with g = 0 on "
            "a fine grid measure = 0 (d = 2, A rotated, det A = 1.5)",
            "THEORY §2",
            mass,
            1e-10,
        ),
    ]


# --------------------------------------------------------------------------------------
# The library against the reference PDE solvers (hjax.reference.pde)
# --------------------------------------------------------------------------------------


def _g_shock(y: np.ndarray) -> np.ndarray:
    """Smooth Lipschitz datum whose Hopf–Lax solution has shocks at x = ±1 for t > 1/π."""
    return -np.cos(np.pi * y) / np.pi


@register(GROUP)
def lax_friedrichs_vs_hopf_lax(quick: bool) -> list[Row]:
    """The monotone LxF reference solver of u_t + ½u_x² = 0 converges to hopf_lax at first
    order (Thm 5.1): a wrong hopf_lax leaves an O(1) error, hence order ≈ 0."""
    t = 1.0
    levels = (60, 120, 240) if quick else (60, 120, 240, 480, 960, 1920)
    atoms = np.linspace(-4.0, 4.0, 16001)[:, None]  # fine atom set: g is continuous
    # hopf_lax once, at the finest grid's nodes (every coarser grid's nodes are among them).
    fine = np.linspace(-3.0, 3.0, levels[-1] + 1)
    ref = np.asarray(_hopf_lax(fine[:, None], atoms, _g_shock(atoms[:, 0]), t))
    errors, hs = [], []
    for n in levels:
        x, u = lax_friedrichs_hj(_g_shock, -3.0, 3.0, n, t)
        inner = np.abs(x) <= 1.0 + 1e-12
        errors.append(float(np.max(np.abs(u - ref[:: levels[-1] // n])[inner])))
        hs.append(6.0 / n)
    fit = hjax.loglog_fit(hs, errors, tail=4)
    return [
        bound_row(
            GROUP,
            "heat.lxf_vs_hopf_lax.error",
            f"Lax–Friedrichs (Δx = {hs[-1]:.3g}) vs hopf_lax, g = −cos(πy)/π, t = 1: "
            "max error on [−1, 1] ≤ 2Δx",
            "Thm 5.1",
            errors[-1],
            2.0 * hs[-1],
            errors=errors,
            dx=hs,
        ),
        rate_row(
            GROUP,
            "heat.lxf_vs_hopf_lax.order",
            "Lax–Friedrichs → hopf_lax: fitted order in Δx (tail of the refinement)",
            "Thm 5.1",
            fit,
            0.85,
            1.15,
            errors=errors,
            dx=hs,
        ),
    ]


def _g_smooth_lipschitz(y):
    """The 1-D case of :func:`_g_point`, elementwise (operators only: NumPy or JAX)."""
    return (1.0 + y**2) ** 0.5 + 0.3 * y


@register(GROUP)
def mol_vs_hopf_cole(quick: bool) -> list[Row]:
    """The method-of-lines reference solve of the viscous PDE converges at second order to
    hopf_cole with a fine grid measure (Thm 4.1, Claim (iii))."""
    t, eps = 1.0, 0.5
    levels = (80, 160) if quick else (80, 160, 320, 640)  # a compilation per level
    y, log_w = _grid(-12.0, 12.0, 4800, 1)
    g_atoms = _g_smooth_lipschitz(np.asarray(y[:, 0]))
    # hopf_cole once, at the finest grid's nodes (every coarser grid's nodes are among them).
    fine = np.linspace(-8.0, 8.0, levels[-1] + 1)
    ref = np.asarray(_hopf_cole(fine[:, None], y, g_atoms, t, eps, log_w, normalized=True))
    errors, hs = [], []
    for n in levels:
        x, u = (np.asarray(a) for a in mol_viscous_hj(_g_smooth_lipschitz, -8.0, 8.0, n, t, eps))
        inner = np.abs(x) <= 2.0 + 1e-12
        errors.append(float(np.max(np.abs(u - ref[:: levels[-1] // n])[inner])))
        hs.append(16.0 / n)
    fit = hjax.loglog_fit(hs, errors, tail=3)
    return [
        bound_row(
            GROUP,
            "heat.mol_vs_hopf_cole.error",
            f"method of lines (Δx = {hs[-1]:.3g}) vs normalized hopf_cole on a grid measure, "
            "g = √(1+y²) + 0.3y, eps = 0.5: max error on [−2, 2] ≤ 0.2Δx²",
            "Thm 4.1, Claim (iii)",
            errors[-1],
            0.2 * hs[-1] ** 2,
            errors=errors,
            dx=hs,
        ),
        rate_row(
            GROUP,
            "heat.mol_vs_hopf_cole.order",
            "method of lines → hopf_cole: fitted order in Δx (tail of the refinement)",
            "Thm 4.1",
            fit,
            1.8,
            2.2,
            errors=errors,
            dx=hs,
        ),
    ]


@partial(jax.jit, static_argnums=0)
def _quadrature_u(g_point, x, y, log_w, t, eps):
    """``u_eps(x, t)`` for the datum ``g_point`` by normalized Hopf–Cole on atoms ``y``."""
    return hjax.hopf_cole(x, y, jax.vmap(g_point)(y), t, eps, log_w=log_w, normalized=True)


def _g_point(p):
    """Smooth Lipschitz datum at one point ``p`` ``(d,)``: √(1 + |p|²) + 0.3 p₁."""
    return jnp.sqrt(1.0 + jnp.sum(p**2)) + 0.3 * p[0]


@register(GROUP)
def feynman_kac_vs_quadrature(quick: bool) -> list[Row]:
    """Feynman–Kac Monte Carlo (hjax.feynman_kac) agrees with quadrature Hopf–Cole within
    4 standard errors (Prop E.4(i)): two library paths to u_eps, no shared formula."""
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
                f"heat.feynman_kac.d={d}",
                f"Feynman–Kac vs quadrature Hopf–Cole, d = {d}: max |Δu| / stderr (5 points)",
                "Prop E.4(i)",
                z,
                4.0,
                n_samples=n_samples,
                max_stderr=float(np.max(se)),
            )
        )
    return rows
