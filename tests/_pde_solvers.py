"""Independent references for the heat-semigroup tests: PDE solvers and closed forms.

The two PDE solvers live in :mod:`hjax.verify.heat` (``python -m hjax verify`` measures
the same claims and must run from an installed package, without ``tests/``); they are
re-exported here so test files import them from one place. Neither uses the Hopf–Cole
or Hopf–Lax formula: they discretize the PDE itself.

* :func:`lax_friedrichs_hj` — monotone Lax–Friedrichs, ``u_t + ½u_x² = 0`` (NumPy, 1-D).
* :func:`mol_viscous_hj` — method of lines, ``u_t + ½u_x² = (eps/2)u_xx`` (diffrax, 1-D).
* :func:`hj_residual` — the viscous HJ residual by forward-mode autodiff.

Closed forms (pure Python ``math``, no JAX):

* :func:`moreau_abs` — Hopf–Lax solution for ``g = |y|`` (the Huber function).
* :func:`hopf_cole_abs` — viscous solution for ``g = |y|`` via ``erfc``.
"""

import math

import numpy as np

from hjax.verify.heat import hj_residual, lax_friedrichs_hj, mol_viscous_hj

__all__ = [
    "hj_residual",
    "hopf_cole_abs",
    "lax_friedrichs_hj",
    "moreau_abs",
    "mol_viscous_hj",
]


def moreau_abs(x: np.ndarray, t: float) -> np.ndarray:
    """``inf_y |x − y|²/(2t) + |y|``: ``x²/(2t)`` for ``|x| ≤ t``, ``|x| − t/2`` beyond."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.abs(x) <= t, x**2 / (2 * t), np.abs(x) - t / 2)


def _log_erfc_term(a: float, b: float) -> float:
    """``log(exp(a) · erfc(b))``, stable for large positive b (asymptotic expansion)."""
    if b < 5.0:
        return a + math.log(math.erfc(b))
    # erfc(b) = exp(−b²)/(b√π) · (1 − 1/(2b²) + 3/(4b⁴) − 15/(8b⁶) + …)
    series = 1 - 1 / (2 * b**2) + 3 / (4 * b**4) - 15 / (8 * b**6) + 105 / (16 * b**8)
    return a - b * b - math.log(b * math.sqrt(math.pi)) + math.log(series)


def hopf_cole_abs(x: np.ndarray, t: float, eps: float) -> np.ndarray:
    r"""``u_eps(x, t) = −eps log ∫ (2π eps t)^{−½} exp(−((x−y)²/(2t) + |y|)/eps) dy``, exactly.

    Completing the square on each half-line (``σ² = eps t``):

    .. math::

        e^{-u/\varepsilon} = \tfrac12\Big[e^{(t/2 - x)/\varepsilon}
            \operatorname{erfc}\Big(\frac{t - x}{\sigma\sqrt2}\Big)
            + e^{(t/2 + x)/\varepsilon}\operatorname{erfc}\Big(\frac{t + x}{\sigma\sqrt2}\Big)\Big].
    """
    sigma = math.sqrt(eps * t)
    out = []
    for xi in np.ravel(np.asarray(x, dtype=np.float64)):
        a = _log_erfc_term((t / 2 - xi) / eps, (t - xi) / (sigma * math.sqrt(2)))
        b = _log_erfc_term((t / 2 + xi) / eps, (t + xi) / (sigma * math.sqrt(2)))
        m = max(a, b)
        out.append(-eps * (m + math.log(math.exp(a - m) + math.exp(b - m)) - math.log(2)))
    return np.reshape(np.array(out), np.shape(x))
