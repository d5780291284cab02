r"""Theorem 7.1's commutative diagram, measured (THEORY.md §2, §4, §8).

The four corners are one LSE layer read at finite or infinite width N and positive or zero
viscosity eps (quadratic Hamiltonian, ``A = I``, time t):

.. code-block:: text

                 eps → 0 (Maslov dequantization, §4)
      u^N_eps  ──────────────────────────────────────▶  u^N_0    LSE layer / Hopf–Lax
         │                                                │
         │ N → ∞ (quadrature, Thm 7.1(iii))               │ N → ∞
         ▼                                                ▼
      u_eps    ──────────────────────────────────────▶  u_0      viscous / inviscid HJ
                 eps → 0 (vanishing viscosity, Thm 7.1(iv))

Each function here *measures* one arrow against a reference that does not use the quantity
under test, and returns plain numbers (floats, NumPy arrays, dicts) that
:mod:`hjax.verify.diagram` turns into rows and :func:`plot_commutative_diagram` draws:

* (i)   :func:`layer_identity_errors` — the layer is the Hopf–Cole solution, exactly.
* (ii)  :func:`semigroup_errors`, :func:`composition_errors` — the heat semigroup
  ``T_{t2} T_{t1} = T_{t1+t2}`` and the depth-L point-evaluation error of Thm E.1.
* (iii) :func:`quadrature_errors` — ``u^N_eps → u_eps`` on grid (midpoint) and nested
  (Halton) measures, rate and eps-uniform constant.
* (iv)  :func:`viscosity_errors` — ``u_eps → u_0``, fitted rate.
* (v)   :func:`error_surface` — ``E(eps, N) = sup_x |u^N_eps − u_0|`` from one
  :func:`hjax.sweep.hopf_cole_sweep` call: both iterated limits and the optimal viscosity
  ``eps*(N)`` (Thm 8.1).

**References.** The initial data are radial and Lipschitz (:data:`CONE` ``|y|``,
:data:`SMOOTH_CONE` ``√(1+|y|²)``, :data:`CONCAVE_CONE` ``−|y|``), so both continuous solutions
reduce to one-dimensional problems along the ray through x: ``u_0`` is a scalar minimisation
with a closed-form (or bisected) minimiser (:func:`hopf_lax_radial`), and ``u_eps`` is a radial
integral against the angular mean of ``exp(s cos θ)`` (``cosh s``, ``I_0(s)``,
``sinh(s)/s`` in d = 1, 2, 3), computed with graded Gauss–Legendre panels
(:func:`hopf_cole_radial`). Neither is a d-dimensional quadrature of the kind under test.
For quadratic data the Hopf–Cole solution is Gaussian (:func:`quadratic_hopf_cole`).

What the measurements show (they are recomputed, never assumed; see ``hjax verify``):
the uniform-in-eps quadrature rate is exactly ``N^{-1/d}`` (attained as eps → 0 when the
kink of g falls between atoms) while each fixed eps > 0 converges faster (midpoint rule:
``N^{-2/d}`` or better, a cone's isolated kink gives ``h^{d+1}``); the viscous bias of a
Lipschitz kink is ``(d/2)·eps·log(1/eps)``, well inside the ``√eps`` bound of THEORY §4;
and the minimiser of the error surface is ``eps*(N) ∝ N^{-2/d}`` (a shallow minimum, the
heat normalization trading the eps = 0 error ``O(h)`` against ``eps log(eps^{d/2}/h^d)``),
not THEORY §8's ``N^{-1/d}``; what follows the grid spacing is the *knee*, the largest
viscosity that costs no accuracy, which tracks the eps = 0 error ``E(0, N) ∝ h`` up to
logarithms (fitted exponents about ``−1.2/d`` to ``−1.6/d`` on the measured ranges).
"""

import dataclasses
import functools
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import i0e
from jaxtyping import PRNGKeyArray

from . import _validate
from ._types import Array, ArrayLike, Float, ScalarLike
from .hopf_cole import hopf_cole
from .layers import hj_to_lse, lse_layer, quadratic_shift
from .measures import grid_measure, nested_measure
from .sweep import hopf_cole_sweep

__all__ = [
    "CONCAVE_CONE",
    "CONE",
    "DATA",
    "SMOOTH_CONE",
    "RadialDatum",
    "composition_errors",
    "error_surface",
    "hopf_cole_radial",
    "hopf_lax_radial",
    "layer_identity_errors",
    "loglog_slope",
    "plot_commutative_diagram",
    "quadratic_datum",
    "quadratic_hopf_cole",
    "quadrature_errors",
    "query_points",
    "semigroup_errors",
    "truncation_box",
    "viscosity_errors",
]


#: Lists of numbers as the measurements take them (tuples, lists or 1-D NumPy arrays).
Floats = Sequence[float] | np.ndarray
Ints = Sequence[int] | np.ndarray


# --------------------------------------------------------------------------------------
# Radial initial data
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RadialDatum:
    r"""Radial initial data ``g(y) = α|y| + β√(1 + |y|²) + γ|y|²/2`` (``β, γ >= 0``).

    The family holds Theorem 7.1's examples — :data:`CONE` ``|y|`` (convex kink),
    :data:`SMOOTH_CONE` ``√(1+|y|²)`` (smooth), :data:`CONCAVE_CONE` ``−|y|`` (non-convex)
    — and the Gaussian case ``γ|y|²/2`` (:func:`quadratic_datum`). For radial g the
    Hopf–Lax infimum is attained on the ray through x (for ``|y| = r`` fixed, ``|x − y|`` is
    smallest for y parallel to x), so

    .. math::

        u_0(x, t) = \min_{r \ge 0} \varphi(r),\qquad
        \varphi(r) = \frac{(r - |x|)^2}{2t} + \alpha r + \beta\sqrt{1 + r^2}
            + \frac{\gamma r^2}{2},

    a convex problem in r (``β, γ >= 0``) whose minimiser is found by bisection of
    ``φ'`` on ``[0, |x| + t(|α| + β)]``. The coefficients enter compiled code as traced
    numbers: every datum shares one compilation.

    Attributes:
        name: short identifier (``"cone"``).
        alpha: coefficient of ``|y|`` (any sign).
        beta: coefficient of ``√(1 + |y|²)`` (``>= 0``).
        gamma: coefficient of ``|y|²/2`` (``>= 0``; g is Lipschitz iff ``gamma == 0``).

    Example:
        >>> import jax.numpy as jnp
        >>> float(CONE(jnp.array([3.0, 4.0]))), CONE.lipschitz
        (5.0, 1.0)
    """

    name: str
    alpha: float = 0.0
    beta: float = 0.0
    gamma: float = 0.0

    def __post_init__(self):
        for field in ("alpha", "beta", "gamma"):
            value = getattr(self, field)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"`{field}` must be a finite number; got {value!r}.")
        if self.beta < 0 or self.gamma < 0:
            raise ValueError(
                f"`beta` and `gamma` must be >= 0 (a convex radial problem); got "
                f"beta={self.beta!r}, gamma={self.gamma!r}."
            )

    @property
    def lipschitz(self) -> float | None:
        """Lipschitz constant ``|α| + β`` of g, or ``None`` when ``γ > 0``."""
        return None if self.gamma > 0 else abs(self.alpha) + self.beta

    @property
    def label(self) -> str:
        """The formula, for plots and reports (``"|y|"``)."""
        terms = [
            (self.alpha, "|y|"),
            (self.beta, "√(1+|y|²)"),
            (self.gamma, "|y|²/2"),
        ]
        text = ""
        for c, term in terms:
            if c == 0:
                continue
            sign = "−" if c < 0 else ("+" if text else "")
            coeff = "" if abs(c) == 1 else f"{abs(c):g}"
            text += f"{' ' if text else ''}{sign}{' ' if text else ''}{coeff}{term}"
        return text or "0"

    def coefficients(self, dtype=None) -> Float[Array, "3"]:
        """``(α, β, γ)`` as an array (a traced input of the compiled references)."""
        return jnp.asarray([self.alpha, self.beta, self.gamma], dtype=dtype)

    def __call__(self, y: Float[ArrayLike, "*batch d"]) -> Float[Array, "*batch"]:
        """``g(y)`` for points ``y`` of shape ``(*batch, d)``."""
        y = jnp.asarray(y, _validate.float_dtype(y))
        return _profile(_norm(y), self.coefficients(y.dtype))


def _norm(y: Array) -> Array:
    return jnp.sqrt(jnp.sum(y * y, axis=-1))


def _profile(r: Array, c: Array) -> Array:
    """``G(r) = α r + β √(1 + r²) + γ r²/2``."""
    return c[0] * r + c[1] * jnp.sqrt(1 + r * r) + c[2] * r * r / 2


def _minimizer(a: Array, t: Array, c: Array) -> Array:
    """``argmin_{r >= 0} (r − a)²/(2t) + G(r)`` by 80 bisections of the increasing ``φ'``."""

    def slope(r):
        return (r - a) / t + c[0] + c[1] * r / jnp.sqrt(1 + r * r) + c[2] * r

    def step(_, bracket):
        lo, hi = bracket
        mid = (lo + hi) / 2
        up = slope(mid) > 0
        return jnp.where(up, lo, mid), jnp.where(up, mid, hi)

    hi = a + t * (jnp.abs(c[0]) + c[1])
    lo, hi = jax.lax.fori_loop(0, 80, step, (jnp.zeros_like(a), hi))
    return (lo + hi) / 2


def _hopf_lax_of_norm(a: Array, t: Array, c: Array) -> Array:
    r = _minimizer(a, t, c)
    return (r - a) ** 2 / (2 * t) + _profile(r, c)


#: ``g(y) = |y|``: convex, 1-Lipschitz, a kink at 0. ``u_0`` is the Moreau envelope
#: ``|x|²/(2t)`` for ``|x| <= t`` and ``|x| − t/2`` beyond.
CONE = RadialDatum("cone", alpha=1.0)
#: ``g(y) = √(1 + |y|²)``: convex, smooth, 1-Lipschitz.
SMOOTH_CONE = RadialDatum("smooth", beta=1.0)
#: ``g(y) = −|y|``: concave (non-convex), 1-Lipschitz; ``u_0 = −|x| − t/2``, and at
#: ``x = 0`` the whole sphere ``|y| = t`` minimises (a shock of the inviscid solution).
CONCAVE_CONE = RadialDatum("concave", alpha=-1.0)
#: The Lipschitz data of Theorem 7.1, by name.
DATA: dict[str, RadialDatum] = {g.name: g for g in (CONE, SMOOTH_CONE, CONCAVE_CONE)}


def quadratic_datum(curvature: float) -> RadialDatum:
    r"""``g(y) = c|y|²/2`` (not Lipschitz): the Gaussian case (see :func:`quadratic_hopf_cole`).

    Example:
        >>> import jax.numpy as jnp
        >>> float(quadratic_datum(2.0)(jnp.array([3.0, 4.0])))  # 2 · 5² / 2
        25.0
    """
    if not (isinstance(curvature, int | float) and curvature > 0):
        raise ValueError(f"`curvature` must be a number > 0; got {curvature!r}.")
    return RadialDatum(f"quadratic({curvature:g})", gamma=float(curvature))


# --------------------------------------------------------------------------------------
# References: u_0 and u_eps by one-dimensional radial reductions
# --------------------------------------------------------------------------------------


def hopf_lax_radial(
    x: Float[ArrayLike, "*batch d"], t: ScalarLike, datum: RadialDatum
) -> Float[Array, "*batch"]:
    r"""Continuous Hopf–Lax solution (Moreau envelope) of radial data (THEORY §4).

    .. math::

        u_0(x, t) = \inf_y \Big[\frac{|x - y|^2}{2t} + g(y)\Big]
                  = \min_{r \ge 0}\Big[\frac{(r - |x|)^2}{2t} + G(r)\Big],

    minimised along the ray through x by bisection of the (increasing) derivative to
    machine precision (:class:`RadialDatum`). For :data:`CONE` this is ``|x|²/(2t)`` if
    ``|x| <= t`` and ``|x| − t/2`` otherwise; for :data:`CONCAVE_CONE` ``−|x| − t/2``.

    Args:
        x: query points ``(*batch, d)``.
        t: time ``> 0``.
        datum: the radial initial data.

    Returns:
        ``u_0(x, t)`` of shape ``(*batch,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> [round(u, 12) for u in hopf_lax_radial(jnp.array([[0.5], [3.0]]), 1.0, CONE).tolist()]
        [0.125, 2.5]
    """
    x, t = _query_and_time(x, t)
    return _per_norm(_hopf_lax_jit, _norm(x), t, datum.coefficients(x.dtype))


def quadratic_hopf_cole(
    x: Float[ArrayLike, "*batch d"], t: ScalarLike, eps: ScalarLike, curvature: ScalarLike
) -> Float[Array, "*batch"]:
    r"""Analytic Hopf–Cole solution for quadratic data ``g = c|y|²/2`` (a Gaussian integral).

    .. math::

        u_\varepsilon(x, t) = \frac{c\,|x|^2}{2(1 + ct)} + \frac{\varepsilon d}{2}\log(1 + ct),

    the heat-normalized solution of THEORY §2; at eps = 0 the Hopf–Lax value
    ``c|x|²/(2(1+ct))``. The viscous bias ``(eps d/2) log(1 + ct)`` is exactly linear in
    eps: the smooth-data rate of THEORY §4.

    Args:
        x: query points ``(*batch, d)``.
        t: time ``> 0``.
        eps: viscosity ``>= 0``.
        curvature: ``c > 0``.

    Returns:
        ``u_eps(x, t)`` of shape ``(*batch,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> round(float(quadratic_hopf_cole(jnp.array([2.0]), 1.0, 0.0, 1.0)), 12)
        1.0
    """
    x, t = _query_and_time(x, t)
    eps = _validate.nonnegative_scalar("eps", eps, x.dtype)
    c = _validate.positive_scalar("curvature", curvature, x.dtype)
    d = x.shape[-1]
    return c * jnp.sum(x * x, axis=-1) / (2 * (1 + c * t)) + eps * d / 2 * jnp.log1p(c * t)


#: Radial quadrature: Gauss–Legendre nodes per panel, uniform base panels, graded levels.
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(20)
_BASE_PANELS = 16
_GRADED_LEVELS = 40


def _log_sphere_area(d: int) -> float:
    """log of the area of the unit sphere in R^d (2 points for d = 1)."""
    return math.log(2.0) + d / 2 * math.log(math.pi) - math.lgamma(d / 2)


def _log_angular_mean_scaled(s: Array, d: int) -> Array:
    r"""``log(mean over the unit sphere of exp(s cos θ)) − s`` for ``s >= 0``, stably.

    The means are ``cosh s`` (d = 1), ``I_0(s)`` (d = 2) and ``sinh(s)/s`` (d = 3).
    """
    if d == 1:
        return jnp.log1p(jnp.exp(-2 * s)) - math.log(2.0)
    if d == 2:
        return jnp.log(i0e(s))
    small = s < 1e-3
    s_safe = jnp.where(small, jnp.ones_like(s), s)
    big = jnp.log(-jnp.expm1(-2 * s_safe)) - jnp.log(2 * s_safe)
    return jnp.where(small, s * s / 6 - s, big)


def _radial_log_integral(a: Array, t: Array, eps: Array, c: Array, d: int) -> Array:
    """``log ∫ (2π eps t)^{-d/2} exp(−(|x−y|²/(2t) + G(|y|))/eps) dy`` for ``|x| = a``."""
    dtype = a.dtype
    r_star = _minimizer(a, t, c)
    r_max = jnp.maximum(a, r_star) + 14 * jnp.sqrt(eps * t) + 1
    # Panels: a uniform base on [0, r_max], graded geometrically towards 0 (where G may
    # have a kink and r^{d-1} vanishes) and towards the minimiser r* (the Laplace peak).
    steps = r_max * jnp.asarray(2.0 ** -np.arange(1, _GRADED_LEVELS + 1), dtype)
    edges = jnp.sort(
        jnp.concatenate(
            [
                jnp.linspace(0.0, 1.0, _BASE_PANELS + 1, dtype=dtype) * r_max,
                steps,
                jnp.clip(r_star + steps, 0, r_max),
                jnp.clip(r_star - steps, 0, r_max),
                r_star[None],
            ]
        )
    )
    half = (edges[1:] - edges[:-1]) / 2
    mid = (edges[1:] + edges[:-1]) / 2
    r = mid[:, None] + half[:, None] * jnp.asarray(_GL_NODES, dtype)
    w = half[:, None] * jnp.asarray(_GL_WEIGHTS, dtype)
    positive = w > 0
    log_w = jnp.log(jnp.where(positive, w, jnp.ones_like(w)))
    r_safe = jnp.where(r > 0, r, jnp.ones_like(r))
    radial = (d - 1) * jnp.log(r_safe) if d > 1 else jnp.zeros_like(r)
    exponent = (
        radial
        - (r - a) ** 2 / (2 * t * eps)
        - _profile(r, c) / eps
        + _log_angular_mean_scaled(a * r / (t * eps), d)
        + log_w
    )
    exponent = jnp.where(positive, exponent, -jnp.inf)
    peak = jax.lax.stop_gradient(jnp.max(exponent))
    total = peak + jnp.log(jnp.sum(jnp.exp(exponent - peak)))
    return total + _log_sphere_area(d) - d / 2 * jnp.log(2 * jnp.pi * eps * t)


def _radial_solution(a: Array, t: Array, eps: Array, c: Array, d: int) -> Array:
    """``u_eps`` at points with norms ``a`` (any shape); ``u_0`` where eps = 0."""
    safe_eps = jnp.where(eps > 0, eps, jnp.ones_like(eps))
    flat = a.reshape(-1)
    log_i = jax.vmap(lambda ai: _radial_log_integral(ai, t, safe_eps, c, d))(flat)
    u_eps = (-safe_eps * log_i).reshape(a.shape)
    return jnp.where(eps > 0, u_eps, _hopf_lax_of_norm(a, t, c))


def hopf_cole_radial(
    x: Float[ArrayLike, "*batch d"], t: ScalarLike, eps: ScalarLike, datum: RadialDatum
) -> Float[Array, "*batch"]:
    r"""Continuous Hopf–Cole solution of radial data by a 1-D radial integral (THEORY §2).

    .. math::

        u_\varepsilon(x, t) = -\varepsilon\log \int_0^\infty |S^{d-1}|\, r^{d-1}
            (2\pi\varepsilon t)^{-d/2}
            e^{-((r - |x|)^2/(2t) + G(r))/\varepsilon}\;
            \Big\langle e^{s(\cos\theta - 1)}\Big\rangle_{S^{d-1}}\, dr,
        \qquad s = \frac{|x|\,r}{t\varepsilon},

    the d-dimensional heat-kernel integral of THEORY §2 in polar coordinates (the angular
    mean is ``cosh s``, ``I_0(s)``, ``sinh(s)/s`` for d = 1, 2, 3, evaluated scaled by
    ``e^{-s}``). The r-integral uses 24-point Gauss–Legendre panels graded geometrically
    towards ``r = 0`` and the Hopf–Lax minimiser ``r*`` (so a kink at 0 and the Laplace peak
    of width ``√(eps t)`` are resolved at every eps), in the log domain: accurate to
    ~1e-15 absolute for eps from 1e-8 to O(1) in float64. At ``eps = 0`` it returns
    :func:`hopf_lax_radial`. This is the reference ``u_eps`` for Thm 7.1 (iii)–(v): it is
    not a d-dimensional quadrature.

    Args:
        x: query points ``(*batch, d)``, ``d ∈ {1, 2, 3}``.
        t: time ``> 0``.
        eps: viscosity ``>= 0`` (traced: sweeps compile once).
        datum: the radial initial data.

    Returns:
        ``u_eps(x, t)`` of shape ``(*batch,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> q = quadratic_datum(1.0)   # Gaussian case: u = |x|²/4 + (eps/2) log 2 at t = 1
        >>> u = hopf_cole_radial(jnp.array([1.0]), 1.0, 0.5, q)
        >>> bool(abs(u - (0.25 + 0.25 * jnp.log(2.0))) < 1e-6)
        True
    """
    x, t = _query_and_time(x, t)
    d = x.shape[-1]
    if d not in (1, 2, 3):
        raise ValueError(f"`x` must have d ∈ {{1, 2, 3}} (trailing dimension); got d = {d}.")
    eps = _validate.nonnegative_scalar("eps", eps, x.dtype)
    return _per_norm(_radial_jit, _norm(x), t, eps, datum.coefficients(x.dtype), d=d)


_hopf_lax_jit = jax.jit(_hopf_lax_of_norm)
_radial_jit = jax.jit(_radial_solution, static_argnames="d")
#: Norms are padded to a multiple of this length: calls of any size share compilations.
_NORM_BLOCK = 32


def _per_norm(fn: Callable, a: Array, *args: Any, **static: Any) -> Array:
    """``fn(a, *args)`` elementwise in the norms ``a``, compiled once per padded length."""
    flat = a.reshape(-1)
    pad = (-flat.size) % _NORM_BLOCK
    padded = jnp.concatenate([flat, jnp.zeros((pad,), flat.dtype)])
    return fn(padded, *args, **static)[: flat.size].reshape(a.shape)


def _query_and_time(x, t) -> tuple[Array, Array]:
    dtype = _validate.float_dtype(x)
    x = jnp.asarray(x, dtype)
    if x.ndim < 1:
        raise ValueError(f"`x` must have shape (*batch, d); got a scalar {x.shape}.")
    t = _validate.positive_scalar("t", t, dtype)
    return x, t


@functools.partial(jax.jit, static_argnames="d")
def _reference_batch(a: Array, eps: Array, t: Array, c: Array, d: int) -> Array:
    return jax.vmap(lambda e: _radial_solution(a, t, e, c, d))(eps)


#: eps lists and query norms are padded to multiples of these lengths, so that every
#: reference evaluation of a verify run shares a few compilations.
_EPS_BUCKET = 8
_POINT_BUCKET = 32


def _bucket(values: np.ndarray, size: int, fill: float) -> np.ndarray:
    out = np.full(-(-values.size // size) * size, fill)
    out[: values.size] = values
    return out


def _reference(x: Array, t: float, eps_values: Floats, datum: RadialDatum) -> np.ndarray:
    """``u_eps(x, t)`` for every eps (``u_0`` where eps = 0) as an ``(E, P)`` NumPy array.

    Radial: evaluated once per distinct ``|x|``; eps and norms padded to buckets.
    """
    eps = np.asarray(eps_values, dtype=np.float64)
    norms, inverse = np.unique(
        np.round(np.linalg.norm(np.asarray(x, dtype=np.float64), axis=-1), 14),
        return_inverse=True,
    )
    dtype = x.dtype
    a = jnp.asarray(_bucket(norms, _POINT_BUCKET, 0.0), dtype)
    t, c = jnp.asarray(t, dtype), datum.coefficients(dtype)
    chunks = _bucket(eps, _EPS_BUCKET, 0.0).reshape(-1, _EPS_BUCKET)
    u = np.concatenate(
        [np.asarray(_reference_batch(a, jnp.asarray(e, dtype), t, c, x.shape[-1])) for e in chunks]
    )
    return u[: eps.size, : norms.size][:, inverse.reshape(-1)]


# --------------------------------------------------------------------------------------
# Measurement helpers
# --------------------------------------------------------------------------------------

#: A continuous-solution reference: ``reference(x (P, d), t, eps (E,)) -> (E, P)`` giving
#: ``u_eps(x, t)`` (``u_0`` where eps = 0). The measurements default to the radial one.
Reference = Callable[[Array, float, np.ndarray], np.ndarray]


def _solver(reference: Reference | None, datum: RadialDatum) -> Reference:
    if reference is None:
        return lambda x, t, eps: _reference(x, t, eps, datum)

    def solve(x, t, eps):
        eps = np.asarray(eps, dtype=np.float64)
        out = np.asarray(reference(x, t, eps), dtype=np.float64)
        if out.shape != (eps.size, x.shape[0]):
            raise ValueError(
                f"`reference` must return shape (E, P) = ({eps.size}, {x.shape[0]}); "
                f"got {out.shape}."
            )
        return out

    return solve


def query_points(d: int, k: int, radius: float = 1.5, *, dtype=None) -> Float[Array, "P d"]:
    r"""The tensor grid of ``k`` points per axis on ``[−radius, radius]^d`` (``P = k**d``).

    With the default ``radius = 1.5`` and ``t = 1`` it covers both regimes of the cone's
    Hopf–Lax solution (the kink region ``|x| <= t``, whose minimiser is the kink y = 0, and
    the smooth region beyond); an odd ``k`` includes ``x = 0``, where the viscous bias of
    a kink is largest.

    Example:
        >>> query_points(1, 3).tolist()
        [[-1.5], [0.0], [1.5]]
    """
    for name, value in (("d", d), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    if not radius > 0:
        raise ValueError(f"`radius` must be > 0; got {radius!r}.")
    dtype = jnp.zeros(()).dtype if dtype is None else jnp.dtype(dtype)
    axis = np.linspace(-radius, radius, k)
    mesh = np.meshgrid(*([axis] * d), indexing="ij")
    return jnp.asarray(np.stack([m.reshape(-1) for m in mesh], axis=-1), dtype)


def truncation_box(
    t: float, eps_max: float, radius: float, *, lipschitz: float = 1.0, tail: float = 30.0
) -> float:
    r"""Half-width B of a box ``[−B, B]^d`` that holds the heat-kernel mass of every query.

    For ``x`` in ``[−radius, radius]^d`` and y outside the box, ``s = |x − y| >= B − radius``;
    with ``g`` L-Lipschitz, ``g(y) >= g(x) − L s`` and ``u_0(x) <= g(x)``, so the Hopf–Cole
    exponent exceeds its minimum by at least ``s²/(2t) − L s``. Choosing

    .. math::

        B = \text{radius} + tL + \sqrt{t^2L^2 + 2t\,\text{tail}\,\varepsilon_{\max}}

    makes that excess ``>= tail · eps_max``: the truncated mass is below ``e^{-tail}`` (up
    to polynomial factors) for every ``eps <= eps_max``, so quadratures on the box converge
    to the whole-space solution up to ~``eps e^{-tail}``.

    Example:
        >>> round(truncation_box(1.0, 0.25, 1.5), 6)
        6.5
    """
    if not (t > 0 and eps_max >= 0 and radius > 0 and lipschitz >= 0 and tail > 0):
        raise ValueError(
            "`t`, `radius`, `tail` must be > 0 and `eps_max`, `lipschitz` >= 0; got "
            f"t={t!r}, eps_max={eps_max!r}, radius={radius!r}, lipschitz={lipschitz!r}, "
            f"tail={tail!r}."
        )
    reach = t * lipschitz
    return float(radius + reach + math.sqrt(reach**2 + 2 * t * tail * eps_max))


def loglog_slope(x: Floats, y: Floats, *, floor: float = 0.0) -> float:
    r"""Least-squares slope of ``log y`` against ``log x`` over the entries with ``y > floor``.

    A convergence order by regression: ``y ≈ C x^s`` gives ``s``. Entries at or below
    ``floor`` (round-off) or non-finite are left out; NaN when fewer than two remain.

    Example:
        >>> round(loglog_slope([1.0, 2.0, 4.0], [1.0, 0.25, 0.0625]), 12)
        -2.0
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"`x` and `y` must be 1-D of equal length; got {x.shape}, {y.shape}.")
    keep = np.isfinite(y) & (y > floor) & np.isfinite(x) & (x > 0)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


# --------------------------------------------------------------------------------------
# (i) the layer is the Hopf–Cole solution
# --------------------------------------------------------------------------------------


@jax.jit
def _identity_gaps(x, y, g, t, eps, log_w, A):
    """``max_x |layer − hopf_cole|`` for every eps (one measure and metric)."""

    def gap(e):
        W, b = hj_to_lse(y, g, t, A=A, log_w=log_w, eps=e)
        layer = quadratic_shift(x, lse_layer(x, W, b, e), t, A=A)
        return jnp.max(jnp.abs(layer - hopf_cole(x, y, g, t, e, log_w=log_w, A=A)))

    return jax.vmap(gap)(eps)


def layer_identity_errors(
    *,
    seed: int = 0,
    dims: Ints = (1, 2, 3),
    eps_values: Floats = (0.0, 1e-3, 0.1, 1.0),
    n_atoms: int = 16,
    n_points: int = 32,
    t: float = 0.7,
) -> dict[str, Any]:
    r"""Thm 7.1(i) / Thm 4.1, 4.4: ``u^N_eps(x, t) = xᵀA⁻¹x/(2t) − lse(Wx + b, eps)``.

    For random atoms, values and queries in each dimension, four measures/metrics (counting
    or random log-weights, ``A = I`` or a random anisotropic SPD metric) and every eps
    (including the tropical eps = 0): the LSE layer built by :func:`hjax.layers.hj_to_lse`
    (``W_j = A⁻¹y_j/t``, ``b_j = −(y_jᵀA⁻¹y_j/(2t) + g_j) + eps log w_j``, THEORY §3) and
    read through the quadratic shift (Cholesky-solved metric), against
    :func:`hjax.hopf_cole.hopf_cole` (explicit inverse metric, the cost ``c_t`` directly).

    Returns:
        ``{"max_error", "cases": [{"d", "eps", "weighted", "metric", "error"}, …]}``.

    Example:
        >>> out = layer_identity_errors(dims=(1,), eps_values=(0.1,))
        >>> out["max_error"] < 1e-5
        True
    """
    eps = np.asarray(eps_values, dtype=np.float64)
    flags = [(weighted, metric) for weighted in (False, True) for metric in (False, True)]
    rng = np.random.default_rng(seed)
    cases = []
    for d in dims:
        y = rng.standard_normal((n_atoms, d))
        g = rng.standard_normal(n_atoms)
        x = 1.5 * rng.standard_normal((n_points, d))
        noise = rng.standard_normal(n_atoms) - 1.0
        M = rng.standard_normal((d, d))
        aniso = np.eye(d) + 0.5 * M @ M.T / d
        for weighted, metric in flags:
            log_w = noise if weighted else np.zeros_like(noise)
            A = aniso if metric else np.eye(d)
            gaps = np.asarray(_identity_gaps(x, y, g, t, eps, log_w, A))
            cases += [
                {
                    "d": d,
                    "eps": float(e),
                    "weighted": weighted,
                    "metric": metric,
                    "error": float(gap),
                }
                for e, gap in zip(eps_values, gaps, strict=True)
            ]
    return {"max_error": max(c["error"] for c in cases), "cases": cases}


# --------------------------------------------------------------------------------------
# (ii) the heat semigroup: two steps = one step; depth-L composition (Thm E.1)
# --------------------------------------------------------------------------------------

#: Rows of the atoms × atoms cost matrix evaluated at once when a step is re-sampled.
_ATOM_CHUNK_ELEMENTS = 1 << 22


def _step_on_atoms(y: Array, v: Array, log_w: Array, tau: Array, eps: Array) -> Array:
    """One normalized Hopf–Cole step of time tau, evaluated back at the atoms: ``(N,)``."""
    n, d = y.shape
    chunk = max(1, min(n, _ATOM_CHUNK_ELEMENTS // n))
    pad = (-n) % chunk
    queries = jnp.concatenate([y, jnp.zeros((pad, d), y.dtype)]).reshape(-1, chunk, d)
    out = jax.lax.map(lambda q: hopf_cole(q, y, v, tau, eps, log_w=log_w, normalized=True), queries)
    return out.reshape(-1)[:n]


#: Longest composition :func:`_composed` evaluates (step times are padded to this length).
_MAX_DEPTH = 16


@jax.jit
def _composed(x, y, g, log_w, taus, depth, eps):
    """Depth-``depth`` composition of heat steps ``taus[0], taus[1], …`` re-sampled on atoms.

    ``depth`` and the step times are traced: one compilation serves every depth, and the
    atoms may be a padded grid (masked atoms carry ``log_w = -inf``).
    """
    v = jax.lax.fori_loop(0, depth - 1, lambda i, v: _step_on_atoms(y, v, log_w, taus[i], eps), g)
    return hopf_cole(x, y, v, taus[depth - 1], eps, log_w=log_w, normalized=True)


@functools.partial(jax.jit, static_argnames=("datum", "sizes", "d"))
def _grid_stack(box: Array, datum: RadialDatum, sizes: tuple[int, ...], d: int):
    """Midpoint grids with n cells per axis for every n in ``sizes``, each padded to the
    finest one with masked atoms (``log_w = -inf``): ``(W, n_max, d)``, ``(W, n_max)`` ×2.
    """
    n_max = max(sizes) ** d
    ys, logs = [], []
    for n in sizes:
        y, log_w = grid_measure(-box, box, n, d)
        pad = n_max - y.shape[0]
        ys.append(jnp.concatenate([y, jnp.zeros((pad, d), y.dtype)]))
        logs.append(jnp.concatenate([log_w, jnp.full((pad,), -jnp.inf, log_w.dtype)]))
    y = jnp.stack(ys)
    return y, datum(y), jnp.stack(logs)


def _grids(datum: RadialDatum, box: float, sizes: Ints, d: int):
    """:func:`_grid_stack` as host (NumPy) arrays: slicing them compiles nothing."""
    out = _grid_stack(jnp.asarray(box), datum, tuple(int(n) for n in sizes), d)
    return tuple(np.asarray(a) for a in out)


@functools.partial(jax.jit, static_argnames="chunk")
def _on_atoms(x: Array, y: Array, g: Array, log_w: Array, t: Array, eps: Array, chunk: int):
    """Normalized ``hopf_cole`` for every eps at every point, ``chunk`` points at a time."""
    n, d = x.shape
    pad = (-n) % chunk
    blocks = jnp.concatenate([x, jnp.zeros((pad, d), x.dtype)]).reshape(-1, chunk, d)

    def block(xb):
        one = lambda e: hopf_cole(xb, y, g, t, e, log_w=log_w, normalized=True)  # noqa: E731
        return jax.vmap(one)(eps)

    out = jax.lax.map(block, blocks)  # (blocks, E, chunk)
    return jnp.moveaxis(out, 1, 0).reshape(eps.shape[0], -1)[:, :n]


@functools.partial(jax.jit, static_argnames=("datum", "n", "d"))
def _halton_problem(box: Array, key: PRNGKeyArray | None, datum: RadialDatum, n: int, d: int):
    y, log_w = nested_measure(-box, box, n, d, key=key)
    return y, datum(y), log_w


def _compose_on_grids(datum, d, sizes, box, x, eps, schedules) -> np.ndarray:
    """``u`` at ``x`` for every grid size and every step schedule: ``(S, W, P)``."""
    ys, gs, log_ws = _grids(datum, box, sizes, d)
    out = np.zeros((len(schedules), len(sizes), x.shape[0]))
    for j in range(len(sizes)):
        for i, taus in enumerate(schedules):
            padded = np.ones(_MAX_DEPTH)
            padded[: len(taus)] = taus
            out[i, j] = np.asarray(
                _composed(x, ys[j], gs[j], log_ws[j], padded.astype(ys.dtype), len(taus), eps)
            )
    return out


def semigroup_errors(
    datum: RadialDatum,
    d: int,
    *,
    sizes: Ints,
    eps: float,
    t1: float = 0.5,
    t2: float = 0.5,
    radius: float = 1.5,
    k: int | None = None,
    reference: Reference | None = None,
) -> dict[str, Any]:
    r"""Thm 7.1(ii): the heat semigroup ``T_{t2} T_{t1} = T_{t1+t2}``, as the quadrature refines.

    On the midpoint grid with ``n`` cells per axis (:func:`hjax.measures.grid_measure`,
    heat-normalized, THEORY §2), the solution at time ``t1`` is computed at every atom and
    used as the initial data of a second step of time ``t2``; it is compared with one step
    of time ``t1 + t2`` from the same atoms and with the reference ``u_eps(x, t1 + t2)``
    (:func:`hopf_cole_radial`). The continuous semigroup property is exact, so both gaps
    close as ``N = n^d → ∞``; their fitted rates are returned.

    Args:
        datum: Lipschitz radial initial data.
        d: space dimension (1, 2 or 3).
        sizes: cells per axis of the grids (``N = n^d`` atoms each).
        eps: viscosity ``> 0``.
        t1, t2: the two step times (``> 0``).
        radius: the queries are the grid :func:`query_points` on ``[−radius, radius]^d``.
        k: query points per axis (default 17, 9, 5 for d = 1, 2, 3; odd, so x = 0 is one).
        reference: ``reference(x, t, eps_values) -> (E, P)``, the continuous solution
            ``u_eps`` (``u_0`` at eps = 0) to measure against; default the radial
            reference of ``datum`` (:func:`hopf_cole_radial`). Pass another one (Feynman–Kac,
            a PDE solver) to cross-check, or a wrong one to see the checks fail.

    Returns:
        ``{"N", "two_vs_one", "two_vs_reference", "one_vs_reference", "rate_two_vs_one",
        "rate_two_vs_reference", "box", …}`` (errors are sup over the query grid).

    Example:
        >>> out = semigroup_errors(CONE, 1, sizes=(32, 64), eps=0.5)
        >>> out["two_vs_one"][1] < out["two_vs_one"][0]
        True
    """
    solve = _solver(reference, datum)
    x = query_points(d, _k(d, k), radius)
    box = truncation_box(t1 + t2, eps, radius, lipschitz=_lipschitz(datum))
    ref = solve(x, t1 + t2, [eps])[0]
    two, one = _compose_on_grids(datum, d, sizes, box, x, eps, [(t1, t2), (t1 + t2,)])
    n_atoms = [float(n**d) for n in sizes]
    two_one = np.max(np.abs(two - one), axis=-1)
    two_ref = np.max(np.abs(two - ref), axis=-1)
    return {
        "datum": datum.name,
        "d": d,
        "eps": float(eps),
        "t1": float(t1),
        "t2": float(t2),
        "box": box,
        "N": n_atoms,
        "two_vs_one": two_one.tolist(),
        "two_vs_reference": two_ref.tolist(),
        "one_vs_reference": np.max(np.abs(one - ref), axis=-1).tolist(),
        "rate_two_vs_one": -loglog_slope(n_atoms, two_one, floor=1e-13),
        "rate_two_vs_reference": -loglog_slope(n_atoms, two_ref, floor=1e-13),
    }


def composition_errors(
    datum: RadialDatum,
    d: int,
    *,
    sizes: Ints,
    depths: Ints,
    eps: float,
    total_time: float = 1.0,
    radius: float = 1.5,
    k: int | None = None,
    reference: Reference | None = None,
) -> dict[str, Any]:
    r"""Thm E.1: depth-L point-evaluation composition error ``O(L · N^{-1/d})``.

    A depth-L network of heat steps ``τ = T/L``: each layer evaluates the previous one at
    the N atoms of the midpoint grid (point evaluation, re-sampling) and applies one
    normalized Hopf–Cole step; the output at the queries is compared with the one-step
    continuous solution ``u_eps(x, T)`` (:func:`hopf_cole_radial`). Returned: the error
    table ``errors[L][N]``, the fitted rate in N for every depth, the growth exponent in L
    at every N, and the constants ``C_L = max_N error · N^{1/d} / L`` of the bound.

    Args:
        datum: Lipschitz radial initial data.
        d: space dimension (1, 2 or 3).
        sizes: cells per axis of the grids (``N = n^d`` atoms each).
        depths: network depths L (``1 <= L <= 16``).
        eps: viscosity ``> 0``.
        total_time: T, split into L equal steps.
        radius: the queries are the grid :func:`query_points` on ``[−radius, radius]^d``.
        k: query points per axis (default 17, 9, 5 for d = 1, 2, 3; odd, so x = 0 is one).
        reference: ``reference(x, t, eps_values) -> (E, P)``, the continuous solution
            ``u_eps`` (``u_0`` at eps = 0) to measure against; default the radial
            reference of ``datum`` (:func:`hopf_cole_radial`). Pass another one (Feynman–Kac,
            a PDE solver) to cross-check, or a wrong one to see the checks fail.

    Returns:
        A dict of plain floats and lists (see above).

    Example:
        >>> out = composition_errors(CONE, 1, sizes=(32, 64), depths=(1, 2), eps=0.5)
        >>> len(out["errors"]), len(out["errors"][0])
        (2, 2)
    """
    solve = _solver(reference, datum)
    if any(not 1 <= int(L) <= _MAX_DEPTH for L in depths):
        raise ValueError(f"`depths` must lie in [1, {_MAX_DEPTH}]; got {depths!r}.")
    x = query_points(d, _k(d, k), radius)
    box = truncation_box(total_time, eps, radius, lipschitz=_lipschitz(datum))
    ref = solve(x, total_time, [eps])[0]
    schedules = [(total_time / int(L),) * int(L) for L in depths]
    u = _compose_on_grids(datum, d, sizes, box, x, eps, schedules)
    errors = np.max(np.abs(u - ref), axis=-1)  # (L, W)
    n_atoms = np.asarray([n**d for n in sizes], dtype=np.float64)
    depth_arr = np.asarray(depths, dtype=np.float64)
    constants = np.max(errors * n_atoms[None, :] ** (1 / d), axis=1) / depth_arr
    return {
        "datum": datum.name,
        "d": d,
        "eps": float(eps),
        "total_time": float(total_time),
        "box": box,
        "N": n_atoms.tolist(),
        "depths": [int(L) for L in depths],
        "errors": errors.tolist(),
        "rate_in_N": [-loglog_slope(n_atoms, row, floor=1e-13) for row in errors],
        "growth_in_L": [loglog_slope(depth_arr, col, floor=1e-13) for col in errors.T],
        "constants": constants.tolist(),
    }


#: Query points per axis by dimension (odd: x = 0 is a query).
_DEFAULT_K = {1: 17, 2: 9, 3: 5}


def _k(d: int, k: int | None) -> int:
    return _DEFAULT_K.get(d, 3) if k is None else k


def _lipschitz(datum: RadialDatum) -> float:
    if datum.lipschitz is None:
        raise ValueError(
            f"`datum` must be Lipschitz (Theorem 7.1's hypothesis); {datum.name} is not."
        )
    return datum.lipschitz


# --------------------------------------------------------------------------------------
# (iii) quadrature: u^N_eps → u_eps, uniformly in eps
# --------------------------------------------------------------------------------------


def quadrature_errors(
    datum: RadialDatum,
    d: int,
    *,
    rule: str,
    sizes: Ints,
    eps_values: Floats,
    t: float = 1.0,
    radius: float = 1.5,
    k: int | None = None,
    key: PRNGKeyArray | None = None,
    point_chunk: int | None = None,
    reference: Reference | None = None,
) -> dict[str, Any]:
    r"""Thm 7.1(iii): ``sup_x |u^N_eps − u_eps|`` against N, for several eps, one rule.

    ``rule="grid"``: the tensor midpoint rule with ``n`` cells per axis for each ``n`` in
    ``sizes`` (``N = n^d``); ``rule="halton"``: the nested Halton rule
    (:func:`hjax.measures.nested_measure`, optionally shifted by ``key``) whose prefixes of
    the lengths in ``sizes`` are evaluated in one :func:`hjax.sweep.hopf_cole_sweep` call.
    Atoms fill the :func:`truncation_box` for ``max(eps_values)``; the solution is
    heat-normalized, so it converges to ``u_eps`` (eps = 0: ``u_0``), the radial reference.

    Returned rates are ``−slope`` of log error against log N (so the theorem's bound reads
    ``rate >= 1/d``): one per eps, and ``envelope_rate`` for ``sup_eps`` of the errors, the
    theorem's eps-uniform statement. ``constants[e] = max_N error · N^{1/d}`` is the
    smallest C with ``error <= C N^{-1/d}`` on the measured range.

    Args:
        datum: Lipschitz radial initial data.
        d: space dimension (1, 2 or 3).
        rule: ``"grid"`` (sizes = cells per axis) or ``"halton"`` (sizes = prefix lengths,
            increasing).
        sizes: the refinement sequence.
        eps_values: viscosities ``>= 0`` (0 is the tropical corner ``u^N_0 → u_0``).
        t: time ``> 0``.
        key: PRNG key of the Halton rule's random shift (``None``: unshifted).
        point_chunk: queries evaluated at once (bounds memory to ~``E · chunk · N``).
        radius: the queries are the grid :func:`query_points` on ``[−radius, radius]^d``.
        k: query points per axis (default 17, 9, 5 for d = 1, 2, 3; odd, so x = 0 is one).
        reference: ``reference(x, t, eps_values) -> (E, P)``, the continuous solution
            ``u_eps`` (``u_0`` at eps = 0) to measure against; default the radial
            reference of ``datum`` (:func:`hopf_cole_radial`). Pass another one (Feynman–Kac,
            a PDE solver) to cross-check, or a wrong one to see the checks fail.

    Returns:
        A dict of plain floats and lists (see above).

    Example:
        >>> out = quadrature_errors(CONE, 1, rule="grid", sizes=(16, 32), eps_values=(0.1,))
        >>> out["errors"][0][1] < out["errors"][0][0]
        True
    """
    solve = _solver(reference, datum)
    if rule not in ("grid", "halton"):
        raise ValueError(f"`rule` must be 'grid' or 'halton'; got {rule!r}.")
    sizes = [int(s) for s in sizes]
    x = query_points(d, _k(d, k), radius)
    eps = np.asarray(eps_values, dtype=np.float64)
    box = truncation_box(t, float(eps.max()), radius, lipschitz=_lipschitz(datum))
    ref = solve(x, t, eps)
    eps_j = jnp.asarray(eps, x.dtype)
    if rule == "grid":
        # Every grid is padded to the finest one with masked atoms: one compilation.
        n_atoms = [n**d for n in sizes]
        ys, gs, log_ws = _grids(datum, box, sizes, d)
        chunk = min(x.shape[0], point_chunk or x.shape[0])
        u = np.stack(
            [
                np.asarray(_on_atoms(x, ys[j], gs[j], log_ws[j], t, eps_j, chunk))
                for j in range(len(sizes))
            ],
            axis=1,
        )
    else:
        n_atoms = sizes
        y, g, log_w = _halton_problem(jnp.asarray(box), key, datum, sizes[-1], d)
        u = np.asarray(
            hopf_cole_sweep(
                x,
                y,
                g,
                t,
                eps_j,
                tuple(sizes),
                log_w=log_w,
                normalized=True,
                renormalize_prefix=True,
                point_chunk=point_chunk,
            )
        )
    errors = np.max(np.abs(u - ref[:, None, :]), axis=-1)  # (E, W)
    n_arr = np.asarray(n_atoms, dtype=np.float64)
    rates = [-loglog_slope(n_arr, row, floor=1e-13) for row in errors]
    envelope = errors.max(axis=0)
    constants = np.max(errors * n_arr[None, :] ** (1 / d), axis=1)
    return {
        "datum": datum.name,
        "d": d,
        "rule": rule,
        "t": float(t),
        "box": box,
        "N": n_arr.tolist(),
        "eps": eps.tolist(),
        "errors": errors.tolist(),
        "rates": rates,
        "envelope": envelope.tolist(),
        "envelope_rate": -loglog_slope(n_arr, envelope, floor=1e-13),
        "constants": constants.tolist(),
        "constant_ratio": float(constants.max() / constants.min()),
    }


# --------------------------------------------------------------------------------------
# (iv) vanishing viscosity: u_eps → u_0
# --------------------------------------------------------------------------------------


def viscosity_errors(
    datum: RadialDatum,
    d: int,
    *,
    eps_values: Floats,
    t: float = 1.0,
    radius: float = 1.5,
    k: int | None = None,
    reference: Reference | None = None,
) -> dict[str, Any]:
    r"""Thm 7.1(iv): ``sup_x |u_eps − u_0|`` against eps, both continuous (no atoms).

    ``u_eps`` from the radial integral (:func:`hopf_cole_radial`), ``u_0`` from the exact
    Moreau envelope (:func:`hopf_lax_radial`). Returned: the fitted rate (log-log slope in
    eps) and a least-squares fit of ``error ≈ c₁ eps log(1/eps) + c₂ eps``, the Laplace
    expansion for a kink (``c₁ = d/2`` for the cone at x = 0: the Gibbs mass of a
    d-dimensional kink scales as ``eps^d`` against the kernel's ``eps^{d/2}``); smooth data
    give ``c₁ ≈ 0`` (rate 1). THEORY §4's ``C√(eps t)`` is an upper bound.

    Args:
        datum: radial initial data.
        d: space dimension (1, 2 or 3).
        eps_values: viscosities ``> 0``.
        t: time ``> 0``.
        radius: the queries are the grid :func:`query_points` on ``[−radius, radius]^d``.
        k: query points per axis (default 17, 9, 5 for d = 1, 2, 3; odd, so x = 0 is one).
        reference: ``reference(x, t, eps_values) -> (E, P)``, the continuous solution
            ``u_eps`` (``u_0`` at eps = 0) to measure against; default the radial
            reference of ``datum`` (:func:`hopf_cole_radial`). Pass another one (Feynman–Kac,
            a PDE solver) to cross-check, or a wrong one to see the checks fail.

    Returns:
        A dict of plain floats and lists (see above).

    Example:
        >>> out = viscosity_errors(SMOOTH_CONE, 1, eps_values=(1e-3, 1e-2))
        >>> 0.8 < out["rate"] < 1.2
        True
    """
    solve = _solver(reference, datum)
    eps = np.asarray(eps_values, dtype=np.float64)
    if not np.all(eps > 0):
        raise ValueError(f"`eps_values` must all be > 0; got {eps_values!r}.")
    x = query_points(d, _k(d, k), radius)
    u0 = solve(x, t, [0.0])[0]
    errors = np.max(np.abs(solve(x, t, eps) - u0[None, :]), axis=1)
    design = np.stack([np.log(1 / eps), np.ones_like(eps)], axis=1)
    (c1, c2), *_ = np.linalg.lstsq(design, errors / eps, rcond=None)
    model = eps * (c1 * np.log(1 / eps) + c2)
    return {
        "datum": datum.name,
        "d": d,
        "t": float(t),
        "eps": eps.tolist(),
        "errors": errors.tolist(),
        "rate": loglog_slope(eps, errors, floor=1e-14),
        "c_log": float(c1),
        "c_lin": float(c2),
        "model_rel_residual": float(np.max(np.abs(model - errors) / errors)),
    }


# --------------------------------------------------------------------------------------
# (v) both iterated limits, the error surface and the optimal viscosity (Thm 8.1)
# --------------------------------------------------------------------------------------


def error_surface(
    datum: RadialDatum,
    d: int,
    *,
    eps_values: Floats,
    widths: Ints,
    t: float = 1.0,
    radius: float = 1.5,
    k: int | None = None,
    key: PRNGKeyArray | None = None,
    point_chunk: int | None = None,
    knee_factor: float = 2.0,
    reference: Reference | None = None,
) -> dict[str, Any]:
    r"""Thm 7.1(v) and Thm 8.1: ``E(eps, N) = sup_x |u^N_eps − u_0|`` from one sweep.

    One :func:`hjax.sweep.hopf_cole_sweep` call evaluates the heat-normalized Hopf–Cole
    solution of the nested Halton measure (prefix n weighted ``vol/n``) for every eps
    (including 0, the exact tropical value ``u^N_0``) and every width; ``u_0`` is the exact
    Moreau envelope. Read off the surface:

    * ``tropical_edge = E(0, N)``: the path ``lim_N lim_eps`` (``u^N_eps → u^N_0`` is exact
      at fixed N, then ``u^N_0 → u_0``);
    * ``viscous_edge = E(eps, N_max)`` and ``continuum_edge = sup_x |u_eps − u_0|`` (the
      radial reference, N = ∞): the path ``lim_eps lim_N``;
    * ``top_edge = sup_x |u^{N_max}_eps − u^{N_max}_0|``: the Maslov arrow at fixed width;
    * ``eps_star[w] = argmin_eps E(eps, N_w)`` with its log-log slope in N, and the *knee*
      ``eps_knee[w]``, the largest eps with ``E <= knee_factor · min_eps E``: the
      largest viscosity that costs (almost) no accuracy.

    Args:
        datum: Lipschitz radial initial data.
        d: space dimension (1, 2 or 3).
        eps_values: viscosities ``>= 0``, including 0 (at least 32 for Thm 7.1(v)).
        widths: increasing prefix lengths N of the nested rule (at least 10).
        t: time ``> 0``.
        key: PRNG key of the Halton rule's random shift (``None``: unshifted).
        point_chunk: queries evaluated at once by the sweep (bounds memory).
        knee_factor: the tolerance factor defining the knee.
        radius: the queries are the grid :func:`query_points` on ``[−radius, radius]^d``.
        k: query points per axis (default 17, 9, 5 for d = 1, 2, 3; odd, so x = 0 is one).
        reference: ``reference(x, t, eps_values) -> (E, P)``, the continuous solution
            ``u_eps`` (``u_0`` at eps = 0) to measure against; default the radial
            reference of ``datum`` (:func:`hopf_cole_radial`). Pass another one (Feynman–Kac,
            a PDE solver) to cross-check, or a wrong one to see the checks fail.

    Returns:
        A dict of plain lists/floats (the surface as ``E[e][w]``).

    Example:
        >>> import numpy as np
        >>> out = error_surface(CONE, 1, eps_values=np.r_[0, np.logspace(-4, 0, 5)],
        ...                     widths=(16, 64, 256))
        >>> out["tropical_edge"][-1] < out["tropical_edge"][0]
        True
    """
    solve = _solver(reference, datum)
    eps = np.asarray(eps_values, dtype=np.float64)
    if eps.ndim != 1 or not np.any(eps == 0) or np.any(eps < 0):
        raise ValueError(f"`eps_values` must be >= 0 and include 0; got {eps_values!r}.")
    widths = tuple(int(w) for w in widths)
    x = query_points(d, _k(d, k), radius)
    box = truncation_box(t, float(eps.max()), radius, lipschitz=_lipschitz(datum))
    y, g, log_w = _halton_problem(jnp.asarray(box), key, datum, widths[-1], d)
    u = np.asarray(
        hopf_cole_sweep(
            x,
            y,
            g,
            t,
            jnp.asarray(eps, x.dtype),
            widths,
            log_w=log_w,
            normalized=True,
            renormalize_prefix=True,
            point_chunk=point_chunk,
        )
    )  # (E, W, P)
    u0 = solve(x, t, [0.0])[0]
    surface = np.max(np.abs(u - u0), axis=-1)  # (E, W)
    zero = int(np.nonzero(eps == 0)[0][0])
    positive = eps > 0
    continuum = np.zeros_like(eps)
    continuum[positive] = np.max(np.abs(solve(x, t, eps[positive]) - u0[None, :]), axis=1)
    n_arr = np.asarray(widths, dtype=np.float64)
    eps_star = eps[np.argmin(surface, axis=0)]
    knee = np.asarray(
        [eps[surface[:, w] <= knee_factor * surface[:, w].min()].max() for w in range(len(widths))]
    )
    top = np.max(np.abs(u[:, -1, :] - u[zero, -1, :]), axis=-1)
    return {
        "datum": datum.name,
        "d": d,
        "t": float(t),
        "box": box,
        "eps": eps.tolist(),
        "N": n_arr.tolist(),
        "E": surface.tolist(),
        "tropical_edge": surface[zero].tolist(),
        "tropical_rate": -loglog_slope(n_arr, surface[zero], floor=1e-14),
        "viscous_edge": surface[:, -1].tolist(),
        "continuum_edge": continuum.tolist(),
        "top_edge": top.tolist(),
        "top_rate": loglog_slope(eps[positive], top[positive], floor=1e-14),
        "eps_star": eps_star.tolist(),
        "eps_star_slope": loglog_slope(n_arr, eps_star),
        "gain_at_eps_star": (surface.min(axis=0) / surface[zero]).tolist(),
        "knee_factor": float(knee_factor),
        "eps_knee": knee.tolist(),
        "eps_knee_slope": loglog_slope(n_arr, knee),
    }


# --------------------------------------------------------------------------------------
# The figure
# --------------------------------------------------------------------------------------


def _fields(row: Any) -> tuple[dict[str, Any], bool, float, str]:
    """(details, passed, measured, claim) of a verify ``Row`` or its JSON dict."""
    if isinstance(row, dict):
        measured = row.get("measured")
        return (
            row.get("details") or {},
            bool(row.get("passed")),
            float("nan") if measured is None else float(measured),
            str(row.get("claim", "")),
        )
    return row.details or {}, bool(row.passed), float(row.measured), str(row.claim)


def _fmt(value: Any, spec: str = ".2f") -> str:
    value = float("nan") if value is None else float(value)
    return "nan" if not math.isfinite(value) else format(value, spec)


def _edge_labels(rows: Sequence[Any]) -> dict[str, list[tuple[str, bool]]]:
    """Text lines for each arrow of the diagram (and the centre), grouped, with verdicts.

    Rows are matched by ``details["edge"]`` (set by :mod:`hjax.verify.diagram`); every line
    summarises the rows of one group and is marked failed if any of them fails.
    """
    groups: dict[tuple[str, str], list[tuple[str, bool]]] = {}

    def add(where: str, group: str, text: str, ok: bool) -> None:
        groups.setdefault((where, group), []).append((text, ok))

    for row in rows:
        details, ok, measured, claim = _fields(row)
        edge, d = details.get("edge"), details.get("d")
        value = _fmt(measured)
        if edge == "identity":
            add("centre", "i", f"(i) layer = Hopf–Cole: max error {_fmt(measured, '.1e')}", ok)
        elif edge == "semigroup":
            text = f"N^-{value}" if "rate" in details else f"gap {_fmt(measured, '.1e')}"
            add("centre", f"ii{d}", text, ok)
        elif edge == "composition":
            text = f"depth-L N^-{value}" if "rates" in details else f"C_L/C_1 ≤ {value}"
            add("centre", f"ii{d}", text, ok)
        elif edge == "eps_star":
            knee_slope = details.get("knee_slope")
            knee = _fmt(None if knee_slope is None or d is None else knee_slope * d)
            add("centre", f"v{d}", f"eps* = argmin E ∝ N^(s/d), s = {value}; knee s = {knee}", ok)
        elif edge == "quadrature":
            rule = details.get("rule")
            if "constant" in claim:
                add("left", f"{rule}{d}", f"C max/min {_fmt(measured, '.1f')}", ok)
            else:
                env = _fmt(details.get("envelope_rate"))
                add("left", f"{rule}{d}", f"N^-{value} (sup_eps N^-{env})", ok)
        elif edge == "viscosity":
            name = details.get("datum")
            if "kink" in claim:
                add("bottom", f"{name}", f"c/(d/2) = {value} (d={d})", ok)
            else:
                add("bottom", f"{name}", f"eps^{value} (d={d})", ok)
        elif edge in ("viscous", "continuum"):
            label = "min_eps E(eps,N_max)" if edge == "viscous" else "N=∞: sup|u_eps−u_0|"
            add("bottom", f"lim{d}", f"{label} {_fmt(measured, '.0e')}", ok)
        elif edge == "tropical":
            add("right", f"{d}", f"E(0,N) ∝ N^-{value}", ok)
        elif edge == "surface":
            add("right", f"{d}", f"E(0,N_max) = {_fmt(measured, '.1e')}", ok)
            add("top", f"{d}", f"sup|u^N_eps − u^N_0| ∝ eps^{_fmt(details.get('top_rate'))}", ok)

    prefixes = {
        "ii": "(ii) semigroup & Thm E.1, d={}: ",
        "v": "Thm 8.1, d={}: ",
        "grid": "grid, d={}: ",
        "halton": "Halton, d={}: ",
        "lim": "lim_eps lim_N, d={}: ",
    }
    labels: dict[str, list[tuple[str, bool]]] = {}
    for (where, group), items in groups.items():
        head = ""
        for prefix, template in prefixes.items():
            if group.startswith(prefix) and group[len(prefix) :].isdigit():
                head = template.format(group[len(prefix) :])
        if not head and where in ("top", "right"):
            head = f"d={group}: "
        elif not head and where == "bottom":
            head = f"{group}: "
        text = head + ", ".join(t for t, _ in items)
        labels.setdefault(where, []).append((text, all(ok for _, ok in items)))
    return labels


def plot_commutative_diagram(rows: Sequence[Any], path: str | os.PathLike) -> Path:
    r"""Draw Theorem 7.1's diagram labelled with measured rates, and the error surface(s).

    The left panel has the four corners ``u^N_eps``, ``u^N_0`` (top: atoms, the layer),
    ``u_eps``, ``u_0`` (bottom: the continuum); each arrow carries the measurements of the
    ``diagram`` rows of ``hjax verify`` whose ``details["edge"]`` names it (green: the
    claim holds, red: it fails); below it, the exact identity (i), the semigroup (ii) with
    Thm E.1 and the optimal-viscosity slopes (Thm 8.1). One panel per error surface
    ``log10 E(eps, N)`` follows (the eps = 0 column at the left), with ``eps*(N)``, the
    knee and guides ``∝ N^{-1/d}``, ``N^{-2/d}``. The file is written atomically
    (:func:`hjax._io.atomic_write_bytes`); the Agg canvas is used directly, so no global
    matplotlib backend is touched.

    Args:
        rows: ``hjax.verify.Row`` objects of group ``diagram`` (or their JSON dicts).
        path: output file; the format follows the suffix (``.png``, ``.pdf``, ``.svg``).

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ._io import atomic_write_bytes

    path = Path(path)
    surfaces = [_fields(r)[0] for r in rows if _fields(r)[0].get("edge") == "surface"]
    n_s = len(surfaces)
    fig = Figure(figsize=(11 + 4.6 * n_s, 8.5), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 1 + n_s, width_ratios=[11] + [4.6] * n_s, height_ratios=[3, 1])
    labels = _edge_labels(rows)
    _draw_diagram(fig.add_subplot(grid[0, 0]), labels)
    _draw_lines(fig.add_subplot(grid[1, 0]), labels.get("centre", []))
    for i, surface in enumerate(surfaces):
        _draw_surface(fig, fig.add_subplot(grid[:, 1 + i]), surface)
    n_ok = sum(_fields(r)[1] for r in rows)
    fig.suptitle(f"Theorem 7.1, measured: {n_ok}/{len(rows)} diagram claims hold")
    with tempfile.SpooledTemporaryFile() as buffer:
        fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", dpi=110)
        buffer.seek(0)
        data = buffer.read()
    return atomic_write_bytes(path, data)


_PASS_COLOR, _FAIL_COLOR = "#1a7f37", "#cf222e"


def _draw_lines(ax: Any, lines: list[tuple[str, bool]]) -> None:
    ax.set_axis_off()
    for j, (text, ok) in enumerate(lines):
        color = _PASS_COLOR if ok else _FAIL_COLOR
        ax.text(
            0.0,
            1.0 - j * 0.16,
            text,
            ha="left",
            va="top",
            fontsize=8.5,
            color=color,
            transform=ax.transAxes,
        )


def _draw_diagram(ax: Any, labels: dict[str, list[tuple[str, bool]]]) -> None:
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    corners = (
        (0.09, 0.86, "$u^N_\\varepsilon$\nLSE layer"),
        (0.91, 0.86, "$u^N_0$\nmax-affine"),
        (0.09, 0.12, "$u_\\varepsilon$\nviscous HJ"),
        (0.91, 0.12, "$u_0$\nMoreau env."),
    )
    for x, y, text in corners:
        ax.text(
            x,
            y,
            text,
            ha="center",
            va="center",
            fontsize=12,
            bbox={"boxstyle": "round", "fc": "#f4f4f4", "ec": "#555"},
        )
    arrow = {"arrowstyle": "-|>", "lw": 1.6, "color": "#333"}
    for start, end in (
        ((0.18, 0.86), (0.82, 0.86)),
        ((0.18, 0.12), (0.82, 0.12)),
        ((0.09, 0.76), (0.09, 0.22)),
        ((0.91, 0.76), (0.91, 0.22)),
    ):
        ax.annotate("", xy=end, xytext=start, arrowprops=arrow)
    step = 0.045
    blocks = {
        # where: (x, y of the title, alignment, direction of the items, title)
        "top": (0.5, 0.95, "center", -1, "eps → 0 at fixed N (Maslov, exact sandwich)"),
        "bottom": (0.5, 0.03, "center", +1, "eps → 0: vanishing viscosity, Thm 7.1(iv)"),
        "left": (0.12, 0.70, "left", -1, "N → ∞: quadrature, Thm 7.1(iii)"),
        "right": (0.88, 0.70, "right", -1, "N → ∞ at eps = 0, Thm 7.1(v)"),
    }
    for where, (x, y, ha, direction, title) in blocks.items():
        ax.text(x, y, title, ha=ha, va="center", fontsize=9.5, fontweight="bold")
        items = labels.get(where, [])
        first = {"top": 0.80, "bottom": 0.18}.get(where, y - step)
        if where == "bottom":
            items = items[::-1]
        for j, (text, ok) in enumerate(items):
            color = _PASS_COLOR if ok else _FAIL_COLOR
            ax.text(
                x, first + direction * j * step, text, ha=ha, va="center", fontsize=8.5, color=color
            )


def _draw_surface(fig: Any, ax: Any, s: dict[str, Any]) -> None:
    eps = np.asarray(s["eps"], dtype=float)
    n_atoms = np.asarray(s["N"], dtype=float)
    E = np.asarray(s["E"], dtype=float)
    d = s.get("d")
    positive = eps > 0
    order = np.argsort(eps[positive])
    log_eps = np.log10(eps[positive][order])
    step = float(np.median(np.diff(log_eps))) if log_eps.size > 1 else 1.0
    # The eps = 0 column is drawn one step left of the smallest eps, with a gap.
    x_cols = np.concatenate([[log_eps[0] - 2 * step], log_eps])
    values = np.concatenate([E[~positive][:1], E[positive][order]], axis=0)
    edges_x = np.concatenate([x_cols - step / 2, [x_cols[-1] + step / 2]])
    log_n = np.log10(n_atoms)
    dn = np.diff(log_n)
    edges_y = np.concatenate(
        [[log_n[0] - dn[0] / 2], log_n[:-1] + dn / 2, [log_n[-1] + dn[-1] / 2]]
    )
    mesh = ax.pcolormesh(edges_x, edges_y, np.log10(np.maximum(values, 1e-16)).T, cmap="viridis")
    fig.colorbar(mesh, ax=ax, label=r"$\log_{10} E(\varepsilon, N)$", shrink=0.8)
    for key, style, label in (
        ("eps_star", "wo-", r"$\varepsilon^*(N)$ = argmin"),
        ("eps_knee", "w^--", "knee (E ≤ 2 min E)"),
    ):
        vals = np.asarray(s.get(key, []), dtype=float)
        if vals.size == n_atoms.size:
            xs = np.where(vals > 0, np.log10(np.where(vals > 0, vals, 1.0)), x_cols[0])
            ax.plot(xs, log_n, style, ms=3, lw=1, label=label)
    if d:
        for power, style in ((1, ":"), (2, "-.")):
            anchor = (log_eps[0] + log_eps[-1]) / 2
            xs = anchor - power / d * (log_n - log_n[-1])
            ax.plot(xs, log_n, "r" + style, lw=1, label=rf"$\propto N^{{-{power}/{d}}}$")
    ax.set_xlim(edges_x[0], edges_x[-1])
    ax.set_ylim(edges_y[0], edges_y[-1])
    ticks = [x_cols[0]] + [v for v in np.arange(np.ceil(log_eps[0]), log_eps[-1] + 1e-9)]
    ax.set_xticks(ticks, ["0"] + [f"{v:g}" for v in ticks[1:]])
    ax.set_xlabel(r"$\log_{10}\varepsilon$ (left column: $\varepsilon = 0$)")
    ax.set_ylabel(r"$\log_{10} N$")
    ax.set_title(f"E(eps, N) = sup|u^N_eps − u_0|, g = {s.get('datum')}, d = {d}", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
