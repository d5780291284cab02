r"""Checks for the attribution entropy and its fold bifurcations (§8, App. F), group
``attribution``.

The library is reached through the public API (``hjax.*``, looked up at trace time, so that a
planted bug reaches every row). References never share the closed forms' formulas:

* ``attribution.grad`` / ``.hessian`` — ``hjax.attribution_entropy_grad`` / ``_hessian``
  (Gibbs moments, Prop F.1 eq. (38)) against ``jax.grad`` / ``jax.hessian`` of a plain
  ``−Σ softmax · log softmax`` and against central differences of ``hjax.attribution_entropy``;
* ``attribution.ties`` — eps = 0 is exact: ``H = log k`` on a k-fold tie of the max;
* ``attribution.small_eps`` — at a unique argmax, ``H / Σ_{j≠k} e^{−Δ_j/eps}(1 + Δ_j/eps) → 1``
  (at ``Δ_min/eps = 40``, H ≈ 1e-16: a naive ``−Σ π log π`` rounds the dominant term away);
* ``attribution.large_eps`` — ``(log N − H)·2eps²/Var_unif(z) → 1`` as eps → ∞;
* ``attribution.fold`` — a fold of the critical points of H (d = 1, three atoms) located by
  ``hjax.trace_entropy_branches`` against Newton's method on the extended system
  ``(H', H'') = 0`` in ``(x, eps)`` with plain autodiff;
* ``attribution.fold_sign`` — ``det ∇²H`` changes sign across that fold along the branch, and
  no critical point remains just beyond it (Thm 8.9's saddle-node).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

import hjax

from ._core import Row, bound_row, interval_row, register

__all__: list[str] = []

GROUP = "attribution"


@jax.jit
def _entropy(x, W, b, eps):
    return hjax.attribution_entropy(x, W, b, eps)


def _naive_entropy(x, W, b, eps):
    """``−Σ π log π`` with ``π = softmax((Wx + b)/eps)``: plain primitives, one point."""
    log_pi = jax.nn.log_softmax((W @ x + b) / eps)
    return -jnp.sum(jnp.exp(log_pi) * log_pi)


@jax.jit
def _derivative_gaps(x, W, b, eps):
    """Closed forms vs autodiff of the naive entropy and vs central differences."""
    grad = hjax.attribution_entropy_grad(x, W, b, eps)
    hess = hjax.attribution_entropy_hessian(x, W, b, eps)
    grad_ad = jax.vmap(jax.grad(_naive_entropy), (0, None, None, None))(x, W, b, eps)
    hess_ad = jax.vmap(jax.hessian(_naive_entropy), (0, None, None, None))(x, W, b, eps)
    h = 1e-5 * eps
    eye = jnp.eye(x.shape[-1], dtype=x.dtype)
    H = lambda p: hjax.attribution_entropy(p, W, b, eps)
    fd = jnp.stack([(H(x + h * e) - H(x - h * e)) / (2 * h) for e in eye], -1)
    scale_g = jnp.maximum(1.0, jnp.max(jnp.abs(grad_ad)))
    scale_h = jnp.maximum(1.0, jnp.max(jnp.abs(hess_ad)))
    return (
        jnp.max(jnp.abs(grad - grad_ad)) / scale_g,
        jnp.max(jnp.abs(hess - hess_ad)) / scale_h,
        jnp.max(jnp.abs(grad - fd)) / scale_g,
    )


@register(GROUP)
def derivatives(quick: bool) -> list[Row]:
    """∇H and ∇²H in closed form vs autodiff and central differences (random layers)."""
    rng = np.random.default_rng(0)
    grad_err = hess_err = fd_err = 0.0
    panel = [(2, 7), (3, 9)] if quick else [(1, 5), (2, 7), (3, 9), (5, 16)]
    for d, n in panel:
        W = rng.normal(size=(n, d))
        b = rng.normal(size=n)
        x = rng.normal(size=(12, d))
        for eps in (0.05, 0.3, 2.0):
            g, h, f = (float(v) for v in _derivative_gaps(x, W, b, jnp.asarray(eps)))
            grad_err, hess_err, fd_err = max(grad_err, g), max(hess_err, h), max(fd_err, f)
    details = {"d, N": [list(p) for p in panel], "eps": [0.05, 0.3, 2.0]}
    return [
        bound_row(
            GROUP,
            "attribution.grad",
            "∇H = −Cov_π(W, z)/eps² vs jax.grad of −Σπ log π (rel.)",
            "Prop F.1(iii) (38)",
            grad_err,
            1e-10,
            central_differences=fd_err,
            **details,
        ),
        bound_row(
            GROUP,
            "attribution.grad_fd",
            "∇H closed form vs central differences of H (rel.)",
            "Prop F.1(iii) (38)",
            fd_err,
            1e-6,
            **details,
        ),
        bound_row(
            GROUP,
            "attribution.hessian",
            "∇²H = −Σπ δWδWᵀ(1 + δz/eps)/eps² vs jax.hessian (rel.)",
            "Thm 8.9",
            hess_err,
            1e-9,
            **details,
        ),
    ]


@register(GROUP)
def limits(quick: bool) -> list[Row]:
    """eps = 0 ties (log k), eps → 0 at a unique argmax, eps → ∞ (log N)."""
    del quick
    rng = np.random.default_rng(1)
    # k-fold ties at x = 0: k units with bias 0, the others below
    tie_err = 0.0
    for k in (1, 2, 3, 5):
        b = np.concatenate([np.zeros(k), -1.0 - rng.uniform(size=3)])
        W = rng.normal(size=(k + 3, 2))
        H = float(_entropy(np.zeros(2), W, b, 0.0))
        tie_err = max(tie_err, abs(H - math.log(k)))
    # small eps at a unique argmax, Δ_min/eps = 40
    W = rng.normal(size=(8, 2))
    b = rng.normal(size=8)
    x = rng.normal(size=2)
    z = W @ x + b
    delta = z.max() - z
    eps = np.sort(delta)[1] / 40
    r = np.exp(-delta / eps)
    lead = np.sum(np.where(delta > 0, r * (1 + delta / eps), 0.0))
    small = float(_entropy(x, W, b, eps)) / lead
    # large eps
    big = 1e3 * float(np.ptp(z))
    large = (math.log(8) - float(_entropy(x, W, b, big))) * 2 * big**2 / z.var()
    return [
        bound_row(
            GROUP,
            "attribution.ties",
            "eps = 0: H = log k on a k-fold tie of the max (k = 1, 2, 3, 5)",
            "§8 (particle limit)",
            tie_err,
            1e-15,
        ),
        interval_row(
            GROUP,
            "attribution.small_eps",
            "eps → 0: H / Σ e^{−Δ/eps}(1 + Δ/eps) at Δ_min/eps = 40 (H ≈ 1e-16)",
            "§8 (particle limit)",
            small,
            1 - 1e-9,
            1 + 1e-9,
            entropy=float(_entropy(x, W, b, eps)),
        ),
        interval_row(
            GROUP,
            "attribution.large_eps",
            "eps → ∞: (log N − H)·2eps²/Var_unif(z) at eps = 1e3·range(z)",
            "§8 (wave limit)",
            large,
            0.999,
            1.001,
        ),
    ]


#: A three-atom layer in d = 1 with a fold of the critical points of H (asymmetric, so the
#: minimum of the middle cell merges with one maximum: a saddle-node, not a pitchfork).
_FOLD_W = np.array([[-1.0], [0.3], [1.0]])
_FOLD_B = np.array([0.0, 0.5, 0.0])


def _fold_extended_newton(x0: float, eps0: float) -> tuple[float, float]:
    """Newton on ``(H'(x), H''(x)) = 0`` in ``(x, log eps)``, naive autodiff: ``(x, eps)``."""
    W, b = jnp.asarray(_FOLD_W), jnp.asarray(_FOLD_B)

    def system(v):
        H = lambda s: _naive_entropy(jnp.stack([s]), W, b, jnp.exp(v[1]))
        return jnp.stack([jax.grad(H)(v[0]), jax.grad(jax.grad(H))(v[0])])

    v = jnp.array([x0 + 0.02, math.log(eps0 * 1.05)])  # start off the located fold
    for _ in range(30):
        v = v - jnp.linalg.solve(jax.jacfwd(system)(v), system(v))
    return float(v[0]), float(jnp.exp(v[1]))


@register(GROUP)
def fold(quick: bool) -> list[Row]:
    """A fold located by continuation vs the extended system; det changes sign across it."""
    starts = np.linspace(-2.0, 2.0, 41)[:, None]
    seed_eps = (0.03,) if quick else (0.02, 0.05, 0.1)
    seeds = [
        p
        for eps in seed_eps
        for p in hjax.entropy_critical_points(_FOLD_W, _FOLD_B, eps, starts).points
    ]
    branches = hjax.trace_entropy_branches(_FOLD_W, _FOLD_B, seeds, eps_range=(0.02, 3.0))
    folds = [f for br in branches for f in br.folds]
    if len(folds) != 1:
        return [
            bound_row(
                GROUP,
                "attribution.fold",
                "fold eps: continuation vs extended-system Newton",
                "Thm 8.9",
                math.inf,
                1e-8,
                folds_found=len(folds),
            )
        ]
    f = folds[0]
    x_ref, eps_ref = _fold_extended_newton(float(f.x[0]), f.eps)
    product = float(f.det_sides[0] * f.det_sides[1])
    return [
        bound_row(
            GROUP,
            "attribution.fold",
            "fold eps: continuation vs extended-system Newton (|Δeps|, naive autodiff)",
            "Thm 8.9",
            abs(f.eps - eps_ref),
            1e-8,
            eps_fold=f.eps,
            eps_reference=eps_ref,
            x_gap=abs(float(f.x[0]) - x_ref),
            eps_uncertainty=f.eps_uncertainty,
        ),
        bound_row(
            GROUP,
            "attribution.fold_sign",
            "det ∇²H changes sign across the fold (product of the two sides; < 0)",
            "Thm 8.9",
            product if f.no_root_beyond else math.inf,
            -1e-300,
            det_sides=f.det_sides.tolist(),
            kinds=list(f.kinds),
            no_root_beyond=f.no_root_beyond,
        ),
    ]
