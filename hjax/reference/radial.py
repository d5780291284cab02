r"""Reference solutions for radial initial data: ``u_0`` and ``u_eps`` without d-D quadrature.

The measurements of Theorem 7.1 (:mod:`hjax.diagram`) need continuous solutions that do not
use the quantity under test (a d-dimensional quadrature of the heat kernel). For radial
data ``g(y) = G(|y|)`` both reduce to one-dimensional problems along the ray through x
(THEORY.md §2, §4):

* the Hopf–Lax solution (Moreau envelope, Thm 5.1) is a scalar convex minimisation,
  solved by bisection (:func:`hopf_lax_radial`, minimiser :func:`hopf_lax_argmin_radial`);
* the heat-normalized Hopf–Cole solution (Thm 4.1/4.4) is a radial integral against the
  angular mean of ``exp(s cos θ)`` (``cosh s``, ``I_0(s)``, ``sinh(s)/s`` in d = 1, 2, 3),
  computed with graded Gauss–Legendre panels (:func:`hopf_cole_radial`,
  :func:`radial_reference` for an eps × points table);
* for quadratic data the Hopf–Cole solution is Gaussian, in closed form
  (:func:`quadratic_hopf_cole`).

The data family :class:`RadialDatum` holds Theorem 7.1's Lipschitz examples
:data:`CONE` ``|y|``, :data:`SMOOTH_CONE` ``√(1+|y|²)``, :data:`CONCAVE_CONE` ``−|y|``.
"""

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import i0e

from .. import _validate
from .._types import Array, ArrayLike, Float, ScalarLike

__all__ = [
    "CONCAVE_CONE",
    "CONE",
    "DATA",
    "SMOOTH_CONE",
    "RadialDatum",
    "hopf_cole_radial",
    "hopf_lax_argmin_radial",
    "hopf_lax_radial",
    "quadratic_datum",
    "quadratic_hopf_cole",
    "radial_reference",
]


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


def hopf_lax_argmin_radial(
    x: Float[ArrayLike, "*batch d"], t: ScalarLike, datum: RadialDatum
) -> Float[Array, "*batch d"]:
    r"""A minimiser ``y*(x)`` of the Hopf–Lax problem of radial data (THEORY §4, Thm 5.1).

    .. math::

        y^*(x) = r^*(|x|)\,\frac{x}{|x|},\qquad
        r^*(a) = \operatorname*{argmin}_{r \ge 0}\Big[\frac{(r - a)^2}{2t} + G(r)\Big],

    so that ``u_0(x, t) = |x − y*|²/(2t) + g(y*)`` and ``(x − y*)/t ∈ ∂g(y*)``. At
    ``x = 0`` the direction is arbitrary (the first axis is returned): for :data:`CONE`
    ``y*(0) = 0``; for :data:`CONCAVE_CONE` every point of the sphere ``|y| = t`` minimises.
    For :data:`CONE`, ``y* = x · max(0, 1 − t/|x|)`` (soft thresholding).

    Args:
        x: query points ``(*batch, d)``.
        t: time ``> 0``.
        datum: the radial initial data.

    Returns:
        ``y*(x)`` of shape ``(*batch, d)``.

    Example:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> y = hopf_lax_argmin_radial(jnp.array([[0.5, 0.0], [3.0, 4.0]]), 1.0, CONE)
        >>> np.round(np.asarray(y), 12).tolist()
        [[0.0, 0.0], [2.4, 3.2]]
    """
    x, t = _query_and_time(x, t)
    a = _norm(x)
    r = _per_norm(_minimizer_jit, a, t, datum.coefficients(x.dtype))
    first_axis = jnp.zeros_like(x).at[..., 0].set(1)
    direction = jnp.where(a[..., None] > 0, x / jnp.where(a > 0, a, 1)[..., None], first_axis)
    return r[..., None] * direction


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
    ``e^{-s}``). The r-integral uses 20-point Gauss–Legendre panels graded geometrically
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
_minimizer_jit = jax.jit(_minimizer)
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


def radial_reference(
    x: Float[ArrayLike, "P d"],
    t: float,
    eps_values: Sequence[float] | np.ndarray,
    datum: RadialDatum,
) -> Float[np.ndarray, "E P"]:
    r"""``u_eps(x, t)`` for every eps of a list, as an ``(E, P)`` NumPy table (float64 input).

    Row e is :func:`hopf_cole_radial` at ``eps_values[e]`` (:func:`hopf_lax_radial` where
    it is 0). Radial: each distinct ``|x|`` is evaluated once; eps and norms are padded to
    fixed buckets so that every call of a verify run shares a few compilations.

    Args:
        x: query points ``(P, d)``, ``d ∈ {1, 2, 3}``.
        t: time ``> 0``.
        eps_values: viscosities ``>= 0``.
        datum: the radial initial data.

    Returns:
        ``u[e, p] = u_{eps_e}(x_p, t)``.

    Example:
        >>> import numpy as np
        >>> u = radial_reference(np.array([[0.0], [3.0]]), 1.0, [0.0, 0.5], CONE)
        >>> u.shape, [round(float(v), 12) for v in u[0]]
        ((2, 2), [0.0, 2.5])
    """
    x, t_arr = _query_and_time(x, t)
    d = x.shape[-1]
    if x.ndim != 2 or d not in (1, 2, 3):
        raise ValueError(f"`x` must have shape (P, d) with d ∈ {{1, 2, 3}}; got {x.shape}.")
    eps = np.asarray(eps_values, dtype=np.float64).reshape(-1)
    if not np.all(eps >= 0):
        raise ValueError(f"`eps_values` must all be >= 0; got {eps_values!r}.")
    norms, inverse = np.unique(
        np.round(np.linalg.norm(np.asarray(x, dtype=np.float64), axis=-1), 14),
        return_inverse=True,
    )
    dtype = x.dtype
    a = jnp.asarray(_bucket(norms, _POINT_BUCKET, 0.0), dtype)
    c = datum.coefficients(dtype)
    chunks = _bucket(eps, _EPS_BUCKET, 0.0).reshape(-1, _EPS_BUCKET)
    u = np.concatenate(
        [np.asarray(_reference_batch(a, jnp.asarray(e, dtype), t_arr, c, d)) for e in chunks]
    )
    return u[: eps.size, : norms.size][:, inverse.reshape(-1)]
