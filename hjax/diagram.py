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
under test (:mod:`hjax.reference`) and returns a typed, immutable result (a frozen
dataclass of floats and read-only NumPy arrays) that :mod:`hjax.verify.diagram` turns into
rows:

* (i)   :func:`layer_identity_errors` → :class:`LayerIdentity` — the layer is the
  Hopf–Cole solution, exactly; :func:`sweep_errors` → :class:`SweepErrors` — the compiled
  eps × width sweep equals brute-force :func:`hjax.hopf_cole` at every width.
* (ii)  :func:`semigroup_errors` → :class:`SemigroupErrors`, :func:`composition_errors` →
  :class:`CompositionErrors` — ``T_{t2} T_{t1} = T_{t1+t2}`` and the depth-L
  point-evaluation error of Thm E.1.
* (iii) :func:`quadrature_errors` → :class:`QuadratureErrors` — ``u^N_eps → u_eps`` on the
  midpoint grid and the nested Halton rule, with the Hopf–Lax covering bounds of the atoms;
  :func:`shifted_tropical_errors` → :class:`ShiftedTropicalErrors` — the eps = 0 corner
  averaged over random shifts of the nested rule (randomized QMC).
* (iv)  :func:`viscosity_errors` → :class:`ViscosityErrors` — ``u_eps → u_0``.
* (v)   :func:`error_surface` → :class:`ErrorSurface` — ``E(eps, N) = sup_x |u^N_eps − u_0|``
  from one :func:`hjax.sweep.hopf_cole_sweep` call: both iterated limits, the Maslov
  sandwich at fixed N, and the optimal viscosity ``eps*(N)`` of Thm 8.1.

**Covering bounds at eps = 0.** For L-Lipschitz g and a minimiser ``y*`` of the Hopf–Lax
problem at x (so ``|x − y*|/t <= L``), any atom ``y_j = y* + δ`` gives
``u^N_0(x) − u_0(x) <= 2L|δ| + |δ|²/(2t)``; hence with the *dispersion*
``ρ_N = max_x min_j |y*(x) − y_j|`` over the queries,

.. math::

    \sup_x |u^N_0 - u_0| \le 2L\rho_N + \frac{\rho_N^2}{2t},

and for a radial g with a non-decreasing profile and ``x = 0`` among the queries,
``sup_x |u^N_0 − u_0| >= G(ρ⁰_N) − G(0) + (ρ⁰_N)²/(2t)`` with ``ρ⁰_N = min_j |y_j|``.
Both are pure geometry of the atoms: they never evaluate a Hopf–Cole or Hopf–Lax sum.

What the measurements show (recomputed by ``hjax verify``, never assumed): the eps-uniform
quadrature rate is ``N^{-1/d}``, attained at eps = 0 (the kink of g between atoms), while a
fixed eps > 0 converges at ``N^{-(d+1)/d}`` on the midpoint grid once ``h ≪ √(eps t)`` (the
heat-kernel integrand is smooth except at the cone's kink, whose cell costs ``h^{d+1}``);
the viscous bias is ``c·eps·log(1/eps) + O(eps)`` with ``c = d/2`` at a convex kink,
``(d−1)/2`` at the concave cone's sphere of minimisers and 0 for smooth data, well inside the
``√eps`` bound of THEORY §4. Thm 8.1 states ``eps* ≍ N^{-1/d}``; the argmin of the measured
error surface falls like ``N^{-2/d}`` instead (a shallow minimum: with the heat normalization
``E(eps, N) ≈ E(0, N) + eps·log(eps^{d/2}/h^d)`` for ``eps ≪ h``), and the paper's
prescription ``eps = N^{-1/d}`` is compared with the optimum on the same surface.
"""

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from ._types import Array, Bool, Float, Int
from .hopf_cole import hopf_cole
from .layers import hj_to_lse, lse_layer, quadratic_shift
from .measures import grid_measure, nested_measure
from .reference.radial import RadialDatum, hopf_lax_argmin_radial, radial_reference
from .sweep import hopf_cole_sweep

__all__ = [
    "CompositionErrors",
    "ErrorSurface",
    "LayerIdentity",
    "QuadratureErrors",
    "SemigroupErrors",
    "ShiftedTropicalErrors",
    "SweepErrors",
    "ViscosityErrors",
    "composition_errors",
    "error_surface",
    "layer_identity_errors",
    "quadrature_errors",
    "query_points",
    "semigroup_errors",
    "shifted_tropical_errors",
    "sweep_errors",
    "truncation_box",
    "viscosity_errors",
]


#: Lists of numbers as the measurements take them (tuples, lists or 1-D NumPy arrays).
Floats = Sequence[float] | np.ndarray
Ints = Sequence[int] | np.ndarray

#: A continuous-solution reference: ``reference(x (P, d), t, eps (E,)) -> (E, P)`` giving
#: ``u_eps(x, t)`` (``u_0`` where eps = 0). The measurements default to the radial one
#: (:func:`hjax.reference.radial_reference`); pass another (Feynman–Kac, a PDE solver) to
#: cross-check, or a wrong one to see the checks fail.
Reference = Callable[[Array, float, np.ndarray], np.ndarray]


# --------------------------------------------------------------------------------------
# Typed results
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class _Measurement:
    """Base of the results: NumPy fields are copied and made read-only."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.ndarray):
                value = np.array(value)
                value.flags.writeable = False
                object.__setattr__(self, field.name, value)


@dataclasses.dataclass(frozen=True, eq=False)
class LayerIdentity(_Measurement):
    """Thm 7.1(i): ``max_x |layer − hopf_cole|`` for each case (dimension, eps, weights, metric).

    Attributes:
        d, eps, weighted, metric: the case of each entry (``C`` cases).
        errors: the max error over the queries of each case.
    """

    d: Int[np.ndarray, " C"]
    eps: Float[np.ndarray, " C"]
    weighted: Bool[np.ndarray, " C"]
    metric: Bool[np.ndarray, " C"]
    errors: Float[np.ndarray, " C"]

    @property
    def max_error(self) -> float:
        """The largest error over all cases."""
        return float(self.errors.max())


@dataclasses.dataclass(frozen=True, eq=False)
class SweepErrors(_Measurement):
    """The compiled sweep against brute-force :func:`hjax.hopf_cole` at every width.

    Attributes:
        d: space dimension.
        box: half-width of the box of the nested rule.
        widths: the prefix lengths n of the sweep.
        eps: the viscosities (including 0).
        errors: ``errors[e, w] = max_x |sweep[e, w] − hopf_cole(x, y[:n_w], …, eps_e)|``.
    """

    d: int
    box: float
    widths: Int[np.ndarray, " W"]
    eps: Float[np.ndarray, " E"]
    errors: Float[np.ndarray, "E W"]

    @property
    def max_error(self) -> float:
        """The largest error over every eps and width."""
        return float(self.errors.max())


@dataclasses.dataclass(frozen=True, eq=False)
class SemigroupErrors(_Measurement):
    """Thm 7.1(ii) on midpoint grids: two heat steps against one, and against ``u_eps``.

    Attributes:
        datum, d, eps, t1, t2, box: the setting.
        n_atoms: ``N = n^d`` of each grid.
        two_vs_one: ``sup_x |T_{t2} T_{t1} g − T_{t1+t2} g|`` (both on the atoms).
        two_vs_reference: ``sup_x |T_{t2} T_{t1} g − u_eps(·, t1 + t2)|``.
        one_vs_reference: ``sup_x |T_{t1+t2} g − u_eps(·, t1 + t2)|``.
    """

    datum: str
    d: int
    eps: float
    t1: float
    t2: float
    box: float
    n_atoms: Float[np.ndarray, " W"]
    two_vs_one: Float[np.ndarray, " W"]
    two_vs_reference: Float[np.ndarray, " W"]
    one_vs_reference: Float[np.ndarray, " W"]


@dataclasses.dataclass(frozen=True, eq=False)
class CompositionErrors(_Measurement):
    """Thm E.1: depth-L compositions of re-sampled heat steps against ``u_eps(·, T)``.

    Attributes:
        datum, d, eps, total_time, box: the setting.
        n_atoms: ``N = n^d`` of each grid.
        depths: the depths L.
        errors: ``errors[l, w] = sup_x |(depth-L network on N_w atoms) − u_eps(·, T)|``.
    """

    datum: str
    d: int
    eps: float
    total_time: float
    box: float
    n_atoms: Float[np.ndarray, " W"]
    depths: Int[np.ndarray, " L"]
    errors: Float[np.ndarray, "L W"]


@dataclasses.dataclass(frozen=True, eq=False)
class QuadratureErrors(_Measurement):
    """Thm 7.1(iii): ``sup_x |u^N_eps − u_eps|`` for one rule, with the covering bounds.

    Attributes:
        datum, d, rule, t, box, lipschitz: the setting.
        n_atoms: N of each rule.
        eps: the viscosities (0 is the tropical corner ``u^N_0 → u_0``).
        errors: ``errors[e, w] = sup_x |u^{N_w}_{eps_e} − u_{eps_e}|``.
        dispersion: ``ρ_N = max_x min_j |y*(x) − y_j|`` (Hopf–Lax minimisers to atoms).
        kink_gap: ``ρ⁰_N = min_j |y_j|`` (the kink of radial data to the atoms).
        upper: ``2Lρ_N + ρ_N²/(2t)``, an upper bound on ``errors`` at eps = 0.
        lower: ``G(ρ⁰_N) − G(0) + (ρ⁰_N)²/(2t)`` where it is a lower bound on ``errors`` at
            eps = 0 (non-decreasing profile, ``x = 0`` a query), else 0.
    """

    datum: str
    d: int
    rule: str
    t: float
    box: float
    lipschitz: float
    n_atoms: Float[np.ndarray, " W"]
    eps: Float[np.ndarray, " E"]
    errors: Float[np.ndarray, "E W"]
    dispersion: Float[np.ndarray, " W"]
    kink_gap: Float[np.ndarray, " W"]
    upper: Float[np.ndarray, " W"]
    lower: Float[np.ndarray, " W"]

    @property
    def envelope(self) -> Float[np.ndarray, " W"]:
        """``sup_eps errors``: the eps-uniform error of Thm 7.1(iii)."""
        return self.errors.max(axis=0)


@dataclasses.dataclass(frozen=True, eq=False)
class ShiftedTropicalErrors(_Measurement):
    """``sup_x |u^N_0 − u_0|`` of the nested rule under independent random shifts.

    Attributes:
        datum, d, t, box: the setting.
        n_atoms: the prefix lengths N.
        errors: ``errors[r, w]`` for shift r and width w.
    """

    datum: str
    d: int
    t: float
    box: float
    n_atoms: Float[np.ndarray, " W"]
    errors: Float[np.ndarray, "R W"]

    @property
    def mean(self) -> Float[np.ndarray, " W"]:
        """The mean over the shifts: the randomized-QMC error at each width."""
        return self.errors.mean(axis=0)


@dataclasses.dataclass(frozen=True, eq=False)
class ViscosityErrors(_Measurement):
    r"""Thm 7.1(iv): ``sup_x |u_eps − u_0|`` (no atoms) and its Laplace fit.

    Attributes:
        datum, d, t: the setting.
        eps: the viscosities (> 0).
        errors: ``sup_x |u_eps − u_0|``.
        c_log, c_lin: the least-squares fit ``errors ≈ eps (c_log log(1/eps) + c_lin)``.
    """

    datum: str
    d: int
    t: float
    eps: Float[np.ndarray, " E"]
    errors: Float[np.ndarray, " E"]
    c_log: float
    c_lin: float

    @property
    def model_residual(self) -> float:
        """Largest relative residual of the Laplace fit."""
        model = self.eps * (self.c_log * np.log(1 / self.eps) + self.c_lin)
        return float(np.max(np.abs(model - self.errors) / self.errors))


@dataclasses.dataclass(frozen=True, eq=False)
class ErrorSurface(_Measurement):
    r"""Thm 7.1(v) and Thm 8.1: the error surface of the nested rule, from one sweep.

    Attributes:
        datum, d, t, box, lipschitz: the setting.
        eps: the viscosities, increasing, ``eps[0] = 0``.
        n_atoms: the prefix lengths N, increasing.
        errors: ``E(eps, N) = sup_x |u^N_eps − u_0|``.
        quadrature: ``sup_x |u^N_eps − u_eps|`` (Thm 7.1(iii) for the nested rule).
        continuum: ``sup_x |u_eps − u_0|`` (N = ∞).
        maslov_low, maslov_high: ``min_x`` and ``max_x`` of ``u^{N_max}_0 − ũ^{N_max}_eps``,
            ``ũ`` the counting-measure solution (the heat normalization and the weights
            ``vol/N`` removed, THEORY §2); the sandwich of §4 puts it in ``[0, eps log N]``.
        dispersion, kink_gap, upper, lower: the covering geometry of each prefix
            (see :class:`QuadratureErrors`).
        knee_factor: the tolerance factor of :attr:`eps_knee`.
    """

    datum: str
    d: int
    t: float
    box: float
    lipschitz: float
    eps: Float[np.ndarray, " E"]
    n_atoms: Float[np.ndarray, " W"]
    errors: Float[np.ndarray, "E W"]
    quadrature: Float[np.ndarray, "E W"]
    continuum: Float[np.ndarray, " E"]
    maslov_low: Float[np.ndarray, " E"]
    maslov_high: Float[np.ndarray, " E"]
    dispersion: Float[np.ndarray, " W"]
    kink_gap: Float[np.ndarray, " W"]
    upper: Float[np.ndarray, " W"]
    lower: Float[np.ndarray, " W"]
    knee_factor: float

    @property
    def tropical_edge(self) -> Float[np.ndarray, " W"]:
        """``E(0, N)``: the path ``lim_N lim_eps``."""
        return self.errors[0]

    @property
    def viscous_edge(self) -> Float[np.ndarray, " E"]:
        """``E(eps, N_max)``: the path ``lim_eps lim_N`` at the largest width."""
        return self.errors[:, -1]

    @property
    def eps_star(self) -> Float[np.ndarray, " W"]:
        """``argmin_eps E(eps, N)`` at each width (Thm 8.1; 0 when eps = 0 is best)."""
        return self.eps[np.argmin(self.errors, axis=0)]

    @property
    def eps_knee(self) -> Float[np.ndarray, " W"]:
        """The largest eps with ``E(eps, N) <= knee_factor · min_eps E(eps, N)``."""
        ok = self.errors <= self.knee_factor * self.errors.min(axis=0)
        return np.asarray([self.eps[ok[:, w]].max() for w in range(self.n_atoms.size)])

    def prescribed(self, power: float) -> Float[np.ndarray, " W"]:
        """``E(N^power, N)`` at each width: the error of the prescription ``eps = N^power``.

        Raises:
            ValueError: if some ``N^power`` is not one of :attr:`eps` (build the grid with
                those values, e.g. ``np.union1d(grid, widths ** power)``).
        """
        target = self.n_atoms**power
        index = np.searchsorted(self.eps, target).clip(0, self.eps.size - 1)
        if not np.allclose(self.eps[index], target, rtol=1e-12, atol=0):
            raise ValueError(
                f"`eps_values` must contain N^{power:g} for every width; got {self.eps}."
            )
        return self.errors[index, np.arange(self.n_atoms.size)]


# --------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------


def _solver(reference: Reference | None, datum: RadialDatum) -> Reference:
    if reference is None:
        return lambda x, t, eps: radial_reference(x, t, eps, datum)

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


#: Query × atom distances computed at once by :func:`_covering` (bounds host memory).
_COVER_ELEMENTS = 1 << 22


def _covering(
    x: Array, y: np.ndarray, widths: Sequence[int], t: float, datum: RadialDatum
) -> tuple[np.ndarray, np.ndarray]:
    """Dispersion ``max_x min_{j<n} |y*(x) − y_j|`` and kink gap ``min_{j<n} |y_j|`` of
    every prefix ``y[:n]``, ``n`` in ``widths`` (NumPy, by cumulative minima)."""
    y = np.asarray(y, dtype=np.float64)
    xs = np.asarray(x, dtype=np.float64)
    # y*(x) = r*(|x|) x/|x|: the radial minimiser once per distinct norm (one compilation).
    a = np.linalg.norm(xs, axis=-1)
    norms, inverse = np.unique(np.round(a, 14), return_inverse=True)
    on_axis = np.zeros((norms.size, xs.shape[-1]))
    on_axis[:, 0] = norms
    r_star = np.asarray(hopf_lax_argmin_radial(on_axis, t, datum))[:, 0][inverse.reshape(-1)]
    first_axis = np.eye(xs.shape[-1])[0]
    direction = np.where(a[:, None] > 0, xs / np.where(a > 0, a, 1.0)[:, None], first_axis)
    ystar = r_star[:, None] * direction
    cols = np.asarray(widths) - 1
    chunk = max(1, _COVER_ELEMENTS // y.shape[0])
    dispersion = np.zeros(cols.size)
    for start in range(0, ystar.shape[0], chunk):
        q = ystar[start : start + chunk]
        dist = np.sqrt(np.sum((q[:, None, :] - y[None, :, :]) ** 2, axis=-1))
        nearest = np.minimum.accumulate(dist, axis=1)[:, cols]
        dispersion = np.maximum(dispersion, nearest.max(axis=0))
    kink_gap = np.minimum.accumulate(np.linalg.norm(y, axis=-1))[cols]
    return dispersion, kink_gap


def _covering_bounds(
    x: Array, dispersion: np.ndarray, kink_gap: np.ndarray, t: float, datum: RadialDatum
) -> tuple[np.ndarray, np.ndarray]:
    """The eps = 0 error bounds ``(upper, lower)`` of the module docstring."""
    L = _lipschitz(datum)
    upper = 2 * L * dispersion + dispersion**2 / (2 * t)
    has_origin = bool(np.any(np.all(np.asarray(x) == 0, axis=-1)))
    if has_origin and datum.alpha >= 0:  # G(r) = αr + β√(1+r²) + γr²/2 non-decreasing
        g_gap = np.asarray(datum(kink_gap[:, None])) - float(datum(np.zeros(1)))
        lower = g_gap + kink_gap**2 / (2 * t)
    else:
        lower = np.zeros_like(kink_gap)
    return upper, lower


# --------------------------------------------------------------------------------------
# (i) the layer is the Hopf–Cole solution; the sweep is brute-force hopf_cole
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
) -> LayerIdentity:
    r"""Thm 7.1(i) / Thm 4.1, 4.4: ``u^N_eps(x, t) = xᵀA⁻¹x/(2t) − lse(Wx + b, eps)``.

    For random atoms, values and queries in each dimension, four measures/metrics (counting
    or random log-weights, ``A = I`` or a random anisotropic SPD metric) and every eps
    (including the tropical eps = 0): the LSE layer built by :func:`hjax.layers.hj_to_lse`
    (``W_j = A⁻¹y_j/t``, ``b_j = −(y_jᵀA⁻¹y_j/(2t) + g_j) + eps log w_j``, THEORY §3) and
    read through the quadratic shift (Cholesky-solved metric), against
    :func:`hjax.hopf_cole.hopf_cole` (explicit inverse metric, the cost ``c_t`` directly).

    Returns:
        A :class:`LayerIdentity` with one entry per (d, measure, metric, eps).

    Example:
        >>> out = layer_identity_errors(dims=(1,), eps_values=(0.1,))
        >>> out.max_error < 1e-5, out.errors.shape
        (True, (4,))
    """
    eps = np.asarray(eps_values, dtype=np.float64)
    flags = [(weighted, metric) for weighted in (False, True) for metric in (False, True)]
    rng = np.random.default_rng(seed)
    cases: list[tuple[int, float, bool, bool, float]] = []
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
                (int(d), float(e), weighted, metric, float(v))
                for e, v in zip(eps, gaps, strict=True)
            ]
    d_, e_, w_, m_, err = zip(*cases, strict=True)
    return LayerIdentity(
        d=np.asarray(d_),
        eps=np.asarray(e_),
        weighted=np.asarray(w_),
        metric=np.asarray(m_),
        errors=np.asarray(err),
    )


@functools.partial(jax.jit, static_argnames=("datum", "n", "d"))
def _halton_problem(box: Array, key: PRNGKeyArray | None, datum: RadialDatum, n: int, d: int):
    y, log_w = nested_measure(-box, box, n, d, key=key)
    return y, datum(y), log_w


@jax.jit
def _brute_force(x, y, g, t, eps, log_w):
    """Normalized :func:`hjax.hopf_cole` for every eps and every row of ``log_w``:
    ``(E, W, P)`` (one compilation for all widths: atoms beyond a width are masked)."""

    def one(e, lw):
        return hopf_cole(x, y, g, t, e, log_w=lw, normalized=True)

    return jax.vmap(lambda e: jax.vmap(lambda lw: one(e, lw))(log_w))(eps)


def sweep_errors(
    datum: RadialDatum,
    d: int,
    *,
    widths: Ints,
    eps_values: Floats,
    compare_eps: Floats | None = None,
    t: float = 1.0,
    radius: float = 1.5,
    k: int | None = None,
    key: PRNGKeyArray | None = None,
    point_chunk: int | None = None,
) -> SweepErrors:
    r"""The sweep of (v) against brute force: ``hopf_cole_sweep`` vs :func:`hjax.hopf_cole`.

    The nested Halton rule on the :func:`truncation_box` ``[−B, B]^d`` is swept over
    ``eps_values × widths`` with the heat normalization and prefix renormalization, exactly
    as :func:`error_surface` does (the same arguments give the same compiled sweep). At every
    width ``n`` and every eps of ``compare_eps`` it is compared with ``hopf_cole`` for the
    measure of the first n atoms with the weights of an n-point equal-weight rule on the box,
    ``log w_j = d·log(2B) − log n`` for ``j < n`` (from the definition, not from the
    measure), and ``log w_j = −inf`` for ``j >= n`` (THEORY §0: a masked atom contributes
    nothing; one compilation serves every width):

    .. math::

        \text{errors}[e, w] = \max_x \big|\text{sweep}[e, w, x]
            - u^{y_{<n_w}}_{\varepsilon_e}(x, t)\big|.

    Args:
        datum: Lipschitz radial initial data.
        d: space dimension.
        widths: strictly increasing prefix lengths (include small ones: 1, 2, 3, …).
        eps_values: viscosities ``>= 0`` of the sweep.
        compare_eps: the viscosities compared with brute force, each one of ``eps_values``
            (default: all of them).
        t: time ``> 0``.
        radius, k: the queries :func:`query_points` ``(d, k, radius)``.
        key: PRNG key of the rule's random shift (``None``: unshifted).
        point_chunk: the sweep's point chunk.

    Returns:
        A :class:`SweepErrors` (``eps`` = the compared viscosities).

    Example:
        >>> from hjax.reference import CONE
        >>> out = sweep_errors(CONE, 1, widths=(1, 2, 5), eps_values=(0.0, 0.1))
        >>> out.max_error < 1e-12
        True
    """
    widths = tuple(int(n) for n in widths)
    eps = np.asarray(eps_values, dtype=np.float64)
    compare = eps if compare_eps is None else np.asarray(compare_eps, dtype=np.float64)
    index = np.asarray([np.flatnonzero(np.isclose(eps, e, rtol=1e-12, atol=0)) for e in compare])
    if index.shape != (compare.size, 1):
        raise ValueError(
            f"`compare_eps` must be values of `eps_values`; got {compare_eps!r} for {eps}."
        )
    x = query_points(d, _k(d, k), radius)
    box = truncation_box(t, float(eps.max()), radius, lipschitz=_lipschitz(datum))
    y, g, u = _nested_sweep(datum, d, x, t, eps, widths, box, key, point_chunk)
    n = np.asarray(widths)[:, None]
    prefix = np.arange(widths[-1])[None, :] < n
    log_w_n = np.where(prefix, d * math.log(2 * box) - np.log(n), -np.inf)
    brute = _brute_force(x, y, g, t, jnp.asarray(compare, x.dtype), jnp.asarray(log_w_n, x.dtype))
    errors = np.max(np.abs(u[index[:, 0]] - np.asarray(brute)), axis=-1)
    return SweepErrors(d=d, box=box, widths=np.asarray(widths), eps=compare, errors=errors)


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
) -> SemigroupErrors:
    r"""Thm 7.1(ii): the heat semigroup ``T_{t2} T_{t1} = T_{t1+t2}``, as the quadrature refines.

    On the midpoint grid with ``n`` cells per axis (:func:`hjax.measures.grid_measure`,
    heat-normalized, THEORY §2), the solution at time ``t1`` is computed at every atom and
    used as the initial data of a second step of time ``t2``; it is compared with one step
    of time ``t1 + t2`` from the same atoms and with the reference ``u_eps(x, t1 + t2)``
    (:func:`hjax.reference.hopf_cole_radial`). The continuous semigroup property is exact,
    so both gaps close as ``N = n^d → ∞``.

    Args:
        datum: Lipschitz radial initial data.
        d: space dimension (1, 2 or 3).
        sizes: cells per axis of the grids (``N = n^d`` atoms each).
        eps: viscosity ``> 0``.
        t1, t2: the two step times (``> 0``).
        radius: the queries are the grid :func:`query_points` on ``[−radius, radius]^d``.
        k: query points per axis (default 17, 9, 5 for d = 1, 2, 3; odd, so x = 0 is one).
        reference: the continuous solution to measure against (see :data:`Reference`).

    Returns:
        A :class:`SemigroupErrors` (errors are sup over the query grid).

    Example:
        >>> from hjax.reference import CONE, SMOOTH_CONE
        >>> out = semigroup_errors(CONE, 1, sizes=(32, 64), eps=0.5)
        >>> bool(out.two_vs_one[1] < out.two_vs_one[0])
        True
    """
    solve = _solver(reference, datum)
    x = query_points(d, _k(d, k), radius)
    box = truncation_box(t1 + t2, eps, radius, lipschitz=_lipschitz(datum))
    ref = solve(x, t1 + t2, [eps])[0]
    two, one = _compose_on_grids(datum, d, sizes, box, x, eps, [(t1, t2), (t1 + t2,)])
    return SemigroupErrors(
        datum=datum.name,
        d=d,
        eps=float(eps),
        t1=float(t1),
        t2=float(t2),
        box=box,
        n_atoms=np.asarray([float(n**d) for n in sizes]),
        two_vs_one=np.max(np.abs(two - one), axis=-1),
        two_vs_reference=np.max(np.abs(two - ref), axis=-1),
        one_vs_reference=np.max(np.abs(one - ref), axis=-1),
    )


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
) -> CompositionErrors:
    r"""Thm E.1: depth-L point-evaluation composition error, stated ``O(L · N^{-1/d})``.

    A depth-L network of heat steps ``τ = T/L``: each layer evaluates the previous one at
    the N atoms of the midpoint grid (point evaluation, re-sampling) and applies one
    normalized Hopf–Cole step; the output at the queries is compared with the one-step
    continuous solution ``u_eps(x, T)`` (:func:`hjax.reference.hopf_cole_radial`).

    Args:
        datum: Lipschitz radial initial data.
        d: space dimension (1, 2 or 3).
        sizes: cells per axis of the grids (``N = n^d`` atoms each).
        depths: network depths L (``1 <= L <= 16``).
        eps: viscosity ``> 0``.
        total_time: T, split into L equal steps.
        radius: the queries are the grid :func:`query_points` on ``[−radius, radius]^d``.
        k: query points per axis (default 17, 9, 5 for d = 1, 2, 3; odd, so x = 0 is one).
        reference: the continuous solution to measure against (see :data:`Reference`).

    Returns:
        A :class:`CompositionErrors` with the table ``errors[L][N]``.

    Example:
        >>> from hjax.reference import CONE, SMOOTH_CONE
        >>> out = composition_errors(CONE, 1, sizes=(32, 64), depths=(1, 2), eps=0.5)
        >>> out.errors.shape
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
    return CompositionErrors(
        datum=datum.name,
        d=d,
        eps=float(eps),
        total_time=float(total_time),
        box=box,
        n_atoms=np.asarray([float(n**d) for n in sizes]),
        depths=np.asarray([int(L) for L in depths]),
        errors=np.max(np.abs(u - ref), axis=-1),
    )


# --------------------------------------------------------------------------------------
# (iii) quadrature: u^N_eps → u_eps, uniformly in eps
# --------------------------------------------------------------------------------------


def _nested_sweep(datum, d, x, t, eps, widths, box, key, point_chunk):
    """The heat-normalized sweep of the nested rule: ``y (N, d)``, ``g (N,)``, ``u (E, W, P)``."""
    y, g, log_w = _halton_problem(jnp.asarray(box), key, datum, widths[-1], d)
    u = hopf_cole_sweep(
        x,
        y,
        g,
        t,
        jnp.asarray(eps, x.dtype),
        tuple(widths),
        log_w=log_w,
        normalized=True,
        renormalize_prefix=True,
        point_chunk=point_chunk,
    )
    return np.asarray(y), np.asarray(g), np.asarray(u)


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
) -> QuadratureErrors:
    r"""Thm 7.1(iii): ``sup_x |u^N_eps − u_eps|`` against N, for several eps, one rule.

    ``rule="grid"``: the tensor midpoint rule with ``n`` cells per axis for each ``n`` in
    ``sizes`` (``N = n^d``); ``rule="halton"``: the nested Halton rule
    (:func:`hjax.measures.nested_measure`, optionally shifted by ``key``) whose prefixes of
    the lengths in ``sizes`` are evaluated in one :func:`hjax.sweep.hopf_cole_sweep` call.
    Atoms fill the :func:`truncation_box` for ``max(eps_values)``; the solution is
    heat-normalized, so it converges to ``u_eps`` (eps = 0: ``u_0``), the radial reference.
    The covering geometry of the atoms (module docstring) bounds the eps = 0 error from both
    sides; Thm 7.1(iii) states an ``O(N^{-1/d})`` bound with a constant uniform in eps.

    Args:
        datum: Lipschitz radial initial data.
        d: space dimension (1, 2 or 3).
        rule: ``"grid"`` (sizes = cells per axis) or ``"halton"`` (sizes = prefix lengths,
            increasing).
        sizes: the refinement sequence.
        eps_values: viscosities ``>= 0`` (0 is the tropical corner ``u^N_0 → u_0``).
        t: time ``> 0``.
        radius: the queries are the grid :func:`query_points` on ``[−radius, radius]^d``.
        k: query points per axis (default 17, 9, 5 for d = 1, 2, 3; odd, so x = 0 is one).
        key: PRNG key of the Halton rule's random shift (``None``: unshifted).
        point_chunk: queries evaluated at once (bounds memory to ~``E · chunk · N``).
        reference: the continuous solution to measure against (see :data:`Reference`).

    Returns:
        A :class:`QuadratureErrors`.

    Example:
        >>> from hjax.reference import CONE, SMOOTH_CONE
        >>> out = quadrature_errors(CONE, 1, rule="grid", sizes=(16, 32), eps_values=(0.1,))
        >>> bool(out.errors[0, 1] < out.errors[0, 0])
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
    if rule == "grid":
        # Every grid is padded to the finest one with masked atoms: one compilation.
        n_atoms = [n**d for n in sizes]
        ys, gs, log_ws = _grids(datum, box, sizes, d)
        chunk = min(x.shape[0], point_chunk or x.shape[0])
        eps_j = jnp.asarray(eps, x.dtype)
        u = np.stack(
            [
                np.asarray(_on_atoms(x, ys[j], gs[j], log_ws[j], t, eps_j, chunk))
                for j in range(len(sizes))
            ],
            axis=1,
        )
        cover = [_covering(x, ys[j][:n], (n,), t, datum) for j, n in enumerate(n_atoms)]
        dispersion, kink_gap = (np.concatenate(c) for c in zip(*cover, strict=True))
    else:
        n_atoms = sizes
        y, _, u = _nested_sweep(datum, d, x, t, eps, sizes, box, key, point_chunk)
        dispersion, kink_gap = _covering(x, y, sizes, t, datum)
    upper, lower = _covering_bounds(x, dispersion, kink_gap, t, datum)
    return QuadratureErrors(
        datum=datum.name,
        d=d,
        rule=rule,
        t=float(t),
        box=box,
        lipschitz=_lipschitz(datum),
        n_atoms=np.asarray(n_atoms, dtype=np.float64),
        eps=eps,
        errors=np.max(np.abs(u - ref[:, None, :]), axis=-1),
        dispersion=dispersion,
        kink_gap=kink_gap,
        upper=upper,
        lower=lower,
    )


def shifted_tropical_errors(
    datum: RadialDatum,
    d: int,
    *,
    widths: Ints,
    key: PRNGKeyArray,
    n_shifts: int,
    t: float = 1.0,
    eps_max: float = 0.0,
    radius: float = 1.5,
    k: int | None = None,
    reference: Reference | None = None,
) -> ShiftedTropicalErrors:
    r"""The eps = 0 corner of the nested rule under random shifts (randomized QMC).

    For ``n_shifts`` independent Cranley–Patterson shifts (keys split from ``key``) of
    :func:`hjax.measures.nested_measure`, the max-affine layer of every prefix,

    .. math::

        u^N_0(x) = \min_{j < N}\Big[\frac{|x - y_j|^2}{2t} + g(y_j)\Big],

    is evaluated by brute force (a running minimum over the atoms, in NumPy: the definition,
    THEORY §4) and compared with the exact Moreau envelope ``u_0``. A single shift gives a
    staircase in N (the distance of the kink of g to the nearest atom jumps as atoms
    arrive); the mean over shifts is the randomized-QMC error, whose rate in N is the
    dispersion rate ``N^{-1/d}`` (Thm 7.1(v), ``lim_N lim_eps``). The library's own
    eps = 0 path is measured by :func:`sweep_errors` and :func:`error_surface`.

    Args:
        datum: Lipschitz radial initial data.
        d: space dimension.
        widths: increasing prefix lengths.
        key: PRNG key, split into one key per shift.
        n_shifts: number of shifts.
        t: time ``> 0``.
        eps_max: the atoms fill the :func:`truncation_box` for this viscosity (pass that of
            the :func:`error_surface` this accompanies, so both use the same rule).
        radius, k: the queries :func:`query_points` ``(d, k, radius)``.
        reference: the continuous solution to measure against (see :data:`Reference`).

    Returns:
        A :class:`ShiftedTropicalErrors`.

    Example:
        >>> import jax
        >>> from hjax.reference import CONE
        >>> out = shifted_tropical_errors(CONE, 1, widths=(16, 64), key=jax.random.key(0),
        ...                               n_shifts=4)
        >>> bool(out.mean[1] < out.mean[0])
        True
    """
    solve = _solver(reference, datum)
    widths = tuple(int(n) for n in widths)
    x = query_points(d, _k(d, k), radius)
    box = truncation_box(t, eps_max, radius, lipschitz=_lipschitz(datum))
    u0 = solve(x, t, [0.0])[0]
    xs = np.asarray(x, dtype=np.float64)
    cols = np.asarray(widths) - 1
    chunk = max(1, _COVER_ELEMENTS // widths[-1])
    errors = np.zeros((n_shifts, len(widths)))
    for r, sub in enumerate(jax.random.split(key, n_shifts)):
        y, _ = nested_measure(-box, box, widths[-1], d, key=sub)
        y = np.asarray(y, dtype=np.float64)
        g = np.asarray(datum(y), dtype=np.float64)
        for start in range(0, xs.shape[0], chunk):
            q = xs[start : start + chunk]
            cost = np.sum((q[:, None, :] - y[None, :, :]) ** 2, axis=-1) / (2 * t) + g
            u_n = np.minimum.accumulate(cost, axis=1)[:, cols]  # (chunk, W)
            gap = np.max(np.abs(u_n - u0[start : start + chunk, None]), axis=0)
            errors[r] = np.maximum(errors[r], gap)
    return ShiftedTropicalErrors(
        datum=datum.name,
        d=d,
        t=float(t),
        box=box,
        n_atoms=np.asarray(widths, dtype=np.float64),
        errors=errors,
    )


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
) -> ViscosityErrors:
    r"""Thm 7.1(iv): ``sup_x |u_eps − u_0|`` against eps, both continuous (no atoms).

    ``u_eps`` from the radial integral (:func:`hjax.reference.hopf_cole_radial`), ``u_0``
    from the exact Moreau envelope (:func:`hjax.reference.hopf_lax_radial`), and a
    least-squares fit of the Laplace expansion

    .. math::

        \sup_x |u_\varepsilon - u_0| \approx \varepsilon\,\big(c_{\log}\log(1/\varepsilon)
            + c_{\rm lin}\big),

    a Laplace expansion around the Hopf–Lax minimisers: ``c_log = d/2`` at the cone's kink
    (the Gibbs mass of a d-dimensional kink scales as ``eps^d`` against the kernel's
    ``eps^{d/2}``), ``(d−1)/2`` at the concave cone's sphere of minimisers (a transverse mass
    ``eps^{1/2}``) and 0 for smooth data (rate 1). THEORY §4's ``C√(eps t)`` is an upper
    bound; these are the measured leading terms.

    Args:
        datum: radial initial data.
        d: space dimension (1, 2 or 3).
        eps_values: viscosities ``> 0``.
        t: time ``> 0``.
        radius: the queries are the grid :func:`query_points` on ``[−radius, radius]^d``.
        k: query points per axis (default 17, 9, 5 for d = 1, 2, 3; odd, so x = 0 is one).
        reference: the continuous solution to measure against (see :data:`Reference`).

    Returns:
        A :class:`ViscosityErrors`.

    Example:
        >>> from hjax.reference import CONE, SMOOTH_CONE
        >>> out = viscosity_errors(SMOOTH_CONE, 1, eps_values=(1e-3, 1e-2))
        >>> abs(out.c_log) < 0.1
        True
    """
    solve = _solver(reference, datum)
    eps = np.asarray(eps_values, dtype=np.float64)
    if not np.all(eps > 0):
        raise ValueError(f"`eps_values` must all be > 0; got {eps_values!r}.")
    x = query_points(d, _k(d, k), radius)
    u = solve(x, t, np.concatenate([[0.0], eps]))
    errors = np.max(np.abs(u[1:] - u[0][None, :]), axis=1)
    design = np.stack([np.log(1 / eps), np.ones_like(eps)], axis=1)
    (c1, c2), *_ = np.linalg.lstsq(design, errors / eps, rcond=None)
    return ViscosityErrors(
        datum=datum.name,
        d=d,
        t=float(t),
        eps=eps,
        errors=errors,
        c_log=float(c1),
        c_lin=float(c2),
    )


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
) -> ErrorSurface:
    r"""Thm 7.1(v) and Thm 8.1: ``E(eps, N) = sup_x |u^N_eps − u_0|`` from one sweep.

    One :func:`hjax.sweep.hopf_cole_sweep` call evaluates the heat-normalized Hopf–Cole
    solution of the nested Halton measure (prefix n weighted ``vol/n``) for every eps
    (including 0, the exact tropical value ``u^N_0``) and every width; the references
    ``u_eps`` (and ``u_0`` at eps = 0) come from :func:`hjax.reference.radial_reference`.
    Read off the surface (:class:`ErrorSurface`): the path ``lim_N lim_eps`` (the eps = 0
    row), the path ``lim_eps lim_N`` (the largest width, and N = ∞ through ``u_eps``), the
    quadrature error of the nested rule for every eps, the Maslov sandwich at the largest
    width, and the optimal viscosity ``eps*(N) = argmin_eps E`` of Thm 8.1 (with the
    paper's prescription via :meth:`ErrorSurface.prescribed`).

    Args:
        datum: Lipschitz radial initial data.
        d: space dimension (1, 2 or 3).
        eps_values: viscosities ``>= 0``, including 0 (sorted on return).
        widths: increasing prefix lengths N of the nested rule.
        t: time ``> 0``.
        radius: the queries are the grid :func:`query_points` on ``[−radius, radius]^d``.
        k: query points per axis (default 17, 9, 5 for d = 1, 2, 3; odd, so x = 0 is one).
        key: PRNG key of the Halton rule's random shift (``None``: unshifted).
        point_chunk: point chunk of the sweep (bounds memory).
        knee_factor: the tolerance factor defining the knee.
        reference: the continuous solution to measure against (see :data:`Reference`).

    Returns:
        An :class:`ErrorSurface`.

    Example:
        >>> import numpy as np
        >>> from hjax.reference import CONE
        >>> s = error_surface(CONE, 1, eps_values=np.r_[0, np.logspace(-4, 0, 5)],
        ...                   widths=(16, 64, 256))
        >>> bool(s.tropical_edge[-1] < s.tropical_edge[0])
        True
    """
    solve = _solver(reference, datum)
    eps = np.unique(np.asarray(eps_values, dtype=np.float64))
    if eps.ndim != 1 or eps[0] != 0 or np.any(eps < 0):
        raise ValueError(f"`eps_values` must be >= 0 and include 0; got {eps_values!r}.")
    widths = tuple(int(w) for w in widths)
    x = query_points(d, _k(d, k), radius)
    box = truncation_box(t, float(eps.max()), radius, lipschitz=_lipschitz(datum))
    y, _, u = _nested_sweep(datum, d, x, t, eps, widths, box, key, point_chunk)  # (E, W, P)
    ref = solve(x, t, eps)  # (E, P); ref[0] = u_0
    dispersion, kink_gap = _covering(x, y, widths, t, datum)
    upper, lower = _covering_bounds(x, dispersion, kink_gap, t, datum)
    # Maslov at N_max: remove the heat normalization and the weights vol/N (THEORY §2).
    n_max = widths[-1]
    safe = np.where(eps > 0, eps, 1.0)
    shift = eps * (d / 2 * np.log(2 * np.pi * safe * t) - (d * np.log(2 * box) - np.log(n_max)))
    gap = u[0, -1][None, :] - (u[:, -1, :] - shift[:, None])
    return ErrorSurface(
        datum=datum.name,
        d=d,
        t=float(t),
        box=box,
        lipschitz=_lipschitz(datum),
        eps=eps,
        n_atoms=np.asarray(widths, dtype=np.float64),
        errors=np.max(np.abs(u - ref[0][None, None, :]), axis=-1),
        quadrature=np.max(np.abs(u - ref[:, None, :]), axis=-1),
        continuum=np.max(np.abs(ref - ref[0][None, :]), axis=-1),
        maslov_low=gap.min(axis=-1),
        maslov_high=gap.max(axis=-1),
        dispersion=dispersion,
        kink_gap=kink_gap,
        upper=upper,
        lower=lower,
        knee_factor=float(knee_factor),
    )
