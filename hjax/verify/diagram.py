r"""Checks for the commutative diagram, Theorem 7.1 (THEORY §8), group ``diagram``.

Every arrow of the diagram is measured by :mod:`hjax.diagram` against references that do not
use the quantity under test (:mod:`hjax.reference`: the radial reductions of ``u_eps`` and
the exact Moreau envelope ``u_0``, for the Lipschitz data ``|y|``, ``√(1+|y|²)``, ``−|y|``)
and turned into rows here. Every rate is the slope of :func:`hjax.loglog_fit` over the
asymptotic tail, checked against a finite two-sided band; every bound that the theory
attains is checked from both sides. Rows (``d`` the dimension):

* (i) ``diagram.identity`` — layer = Hopf–Cole to round-off; ``diagram.sweep.d*`` — the
  sweep of each error surface equals brute-force :func:`hjax.hopf_cole` on the atoms
  ``y[:n]`` at every width n (from 1: the surfaces start at n = 1, 2, 3, 5, 8) for eps ∈
  {0, 1e-8, 1e-3, 0.1, 1}; the full run adds ``diagram.sweep.scan.d1``, the sweep's other
  code path (associative scan, padded point chunks).
* (ii) ``diagram.semigroup.{gap,rate}.d*`` — ``T_{t2}T_{t1} = T_{t1+t2}`` on the atoms, and
  the rate ``N^{-(d+1)/d}`` to ``u_eps`` (midpoint rule at fixed eps);
  ``diagram.depth.{rate,growth}.d*`` — Thm E.1's depth-L composition.
* (iii) ``diagram.quad.grid.d*.eps=*`` — rate per eps: ``N^{-1/d}`` at eps = 0,
  ``N^{-(d+1)/d}`` once the grid resolves the heat kernel, in between otherwise;
  ``….sup`` — the eps-uniform rate ``N^{-1/d}``; ``….hl`` — ``E(0, N_max)`` between the
  covering bounds of the atoms (:mod:`hjax.diagram`); ``….nmax`` — every eps at ``N_max``
  under the eps = 0 covering bound (a wrong constant in the measure fails here even where
  a rate survives); ``diagram.quad.halton.d*.{rqmc,hl,nmax}`` — the same for the nested
  rule, its rate from the mean over random shifts (a single shift is a staircase).
* (iv) ``diagram.visc.<g>.d*.{rate,log}`` — ``u_eps → u_0``: the Laplace coefficient of
  ``eps·log(1/eps)`` (``d/2`` kink, ``(d−1)/2`` concave sphere, 0 smooth) and the rate it
  implies on the fitted range.
* (v) ``diagram.maslov.d*`` — the sandwich ``0 <= u^N_0 − ũ^N_eps <= eps log N`` at
  ``N_max``; ``diagram.limit.viscous.d*`` — ``min_{eps>0} E(eps, N_max)`` under the
  covering bound; ``diagram.limit.continuum.d*`` — ``sup|u_eps − u_0|`` at the smallest eps
  against ``(d/2) eps log(1/eps)``.
* Thm 8.1: ``diagram.thm81.epsstar.d*`` — **DIFFERS**: the argmin ``eps*(N)`` of the error
  surface falls like ``N^{-2/d}``, not the paper's ``N^{-1/d}``;
  ``diagram.thm81.presc.d*`` — the paper's prescription ``eps = N^{-1/d}`` against the best
  eps at ``N_max`` (the minimum is shallow, so the prescription is near-optimal in value).

The row builders (``*_rows``) are pure functions of the typed results of
:mod:`hjax.diagram`, so a test can feed them a measurement made against a deliberately wrong
reference and see them fail. :func:`hjax.verify.figure.plot_commutative_diagram` draws the
rows, looking them up by key.
"""

import functools
import math
from typing import Any

import jax
import numpy as np

from .. import diagram as dg
from ..rates import LogLogFit, loglog_fit
from ..reference.radial import CONCAVE_CONE, CONE, SMOOTH_CONE
from ._core import Row, bound_row, interval_row, rate_row, register

__all__: list[str] = []

GROUP = "diagram"

#: Half-width of every rate band, in units of the exponent of N (or eps).
RATE_SLACK = 0.15
#: Points of the asymptotic tail fitted by every rate row in N.
TAIL = 4
#: Points of the tail of the vanishing-viscosity fits (the smallest eps).
VISCOSITY_TAIL = 5
#: Absolute band of the fitted Laplace coefficient c_log around its predicted value.
LAPLACE_SLACK = 0.1
#: Predicted Laplace coefficient c_log of ``sup|u_eps − u_0| ≈ eps(c_log log(1/eps) + c)``.
LAPLACE: dict[str, Any] = {
    CONE.name: lambda d: d / 2,  # a point kink: Gibbs mass eps^d against eps^{d/2}
    SMOOTH_CONE.name: lambda d: 0.0,  # a non-degenerate minimiser: O(eps)
    CONCAVE_CONE.name: lambda d: (d - 1) / 2,  # a sphere of minimisers at x = 0
}
#: Relative band of ``sup|u_eps − u_0| / ((d/2) eps log(1/eps))`` at the smallest eps.
CONTINUUM_BAND = (0.9, 1.1)
#: eps*(N) slope band, in units of 1/d (measured law N^{-2/d}; the paper states −1/d).
EPS_STAR_SLOPE = (-2.75, -1.5)
#: Largest accepted E(N^{-1/d}, N_max) / min_eps E(eps, N_max).
PRESCRIPTION_FACTOR = 3.0
#: Absolute round-off allowed on the Maslov sandwich (values of u are O(1) in float64).
ROUND_OFF = 1e-12
#: A grid resolves the heat kernel when its spacing is at most this fraction of √(eps t).
RESOLVED = 0.5

_SURFACE_EPS = np.concatenate([[0.0], np.logspace(-8, 0, 33)])
#: The surfaces start at these widths: the sweep rows compare every width with brute force.
_SMALL = (1, 2, 3, 5, 8)
#: The eps of the surface compared with brute force by the sweep rows.
_SWEEP_EPS = (0.0, 1e-8, 1e-3, 0.1, 1.0)

SETTINGS: dict[bool, dict[str, Any]] = {
    True: {
        "identity_dims": (2,),
        # A sweep of its own only in the full run (the surfaces' sweeps are checked always).
        "sweep": {},
        "semigroup": {1: (16, 32, 64, 128, 256), 2: (8, 12, 16, 24, 32)},
        "composition": {1: (16, 32, 64, 128, 256)},
        "semigroup_eps": 0.25,
        "semigroup_tol": 1e-3,
        "depths": (1, 2, 4, 8),
        "grid": {1: (8, 16, 32, 64, 128, 256, 512, 1024), 2: (4, 8, 16, 32, 64, 128)},
        "grid_eps": (0.0, 1e-2, 0.25),
        "viscosity_dims": (1, 2),
        "viscosity_eps": tuple(np.logspace(-5, -1, 9)),
        "surface_widths": {
            1: _SMALL + tuple(int(n) for n in np.geomspace(16, 4096, 11).round()),
            2: _SMALL + tuple(int(n) for n in np.geomspace(16, 16384, 11).round()),
        },
        "shifts": 16,
    },
    False: {
        "identity_dims": (1, 2, 3),
        # W² > N: the sweep's associative scan, with a point chunk that pads the queries
        # (the surfaces have W² <= N: the masked triangular lse).
        "sweep": {1: {"widths": (1, 2, 3, 4, 5, 6, 8, 11, 16, 23, 32, 45, 64), "point_chunk": 5}},
        "semigroup": {1: (16, 32, 64, 128, 256, 512, 1024), 2: (8, 12, 16, 24, 32, 48)},
        # d = 2: the depth-8 error is pre-asymptotic up to N = 48² (each heat step τ = T/8 is
        # narrow next to the grid); the tail from N = 64² on follows −(d+1)/d.
        "composition": {1: (16, 32, 64, 128, 256, 512, 1024), 2: (16, 32, 64, 96, 128)},
        "semigroup_eps": 0.25,
        "semigroup_tol": 1e-4,
        "depths": (1, 2, 4, 8),
        "grid": {
            1: tuple(2**k for k in range(3, 13)),
            2: tuple(2**k for k in range(2, 9)),
            3: (4, 8, 16, 24, 32, 48),
        },
        "grid_eps": (0.0, 1e-3, 1e-2, 0.1, 0.25),
        "viscosity_dims": (1, 2, 3),
        "viscosity_eps": tuple(np.logspace(-6, -1, 11)),
        "surface_widths": {
            1: _SMALL + tuple(int(n) for n in np.geomspace(16, 2**14, 13).round()),
            2: _SMALL + tuple(int(n) for n in np.geomspace(16, 2**16, 13).round()),
            3: _SMALL + tuple(int(n) for n in np.geomspace(64, 2**17, 12).round()),
        },
        "shifts": 32,
    },
}

#: Shift of the nested Halton rule (Cranley–Patterson): the kink of g at 0 then falls
#: between atoms instead of on the base-2 point 1/2 of the unshifted sequence.
_HALTON_SEED = 1
#: Seed of the independent shifts of the randomized-QMC rate.
_SHIFTS_SEED = 100


def _point_chunk(n_eps: int, n_atoms: int) -> int:
    """Points per chunk so that a sweep holds at most 2^26 floats (512 MiB) at once."""
    return max(1, (1 << 26) // (n_eps * n_atoms))


def _band(center: float, slack: float = RATE_SLACK) -> tuple[float, float]:
    return center - slack, center + slack


def _fit_details(x: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    return {"x": np.asarray(x, dtype=float).tolist(), "y": np.asarray(y, dtype=float).tolist()}


def _rate(
    key: str,
    claim: str,
    theorem: str,
    fit: LogLogFit,
    band: tuple[float, float],
    *,
    paper: str = "",
    **details: Any,
) -> Row:
    return rate_row(GROUP, key, claim, theorem, fit, *band, paper=paper, **details)


# --------------------------------------------------------------------------------------
# Row builders: pure functions of the typed results of hjax.diagram
# --------------------------------------------------------------------------------------


def identity_rows(result: dg.LayerIdentity) -> list[Row]:
    """(i): the layer ↔ Hopf–Cole identity, max error over all cases ≤ 1e-12."""
    dims = sorted({int(d) for d in result.d})
    return [
        bound_row(
            GROUP,
            "diagram.identity",
            f"layer = Hopf–Cole: xᵀA⁻¹x/(2t) − lse(Wx+b) vs u^N_eps (d ∈ {dims}, eps ≥ 0 "
            "incl. 0, counting/random weights, A = I/anisotropic)",
            "Thm 7.1(i), Thm 4.1/4.4",
            result.max_error,
            1e-12,
            cases=int(result.errors.size),
        )
    ]


def sweep_rows(result: dg.SweepErrors, key: str | None = None) -> list[Row]:
    """(i) for the sweep: ``hopf_cole_sweep`` = ``hopf_cole`` on ``y[:n]`` at every width."""
    worst = np.unravel_index(np.argmax(result.errors), result.errors.shape)
    return [
        bound_row(
            GROUP,
            key or f"diagram.sweep.d{result.d}",
            f"hopf_cole_sweep (nested rule, normalized, prefix weights vol/n) = brute-force "
            f"hopf_cole on the atoms y[:n] (log w = d·log(2B) − log n; atoms j >= n masked), "
            f"at every width n ∈ "
            f"{result.widths.tolist()} and eps ∈ {result.eps.tolist()} (d={result.d})",
            "Thm 7.1(i), (v)",
            result.max_error,
            1e-12,
            worst_eps=float(result.eps[worst[0]]),
            worst_width=int(result.widths[worst[1]]),
            max_error_per_width=result.errors.max(axis=0).tolist(),
        )
    ]


def semigroup_rows(result: dg.SemigroupErrors, tol: float) -> list[Row]:
    """(ii): two heat steps vs one (finest grid) and the rate to ``u_eps(t1 + t2)``."""
    d = result.d
    fit = loglog_fit(result.n_atoms, result.two_vs_reference, tail=TAIL)
    return [
        bound_row(
            GROUP,
            f"diagram.semigroup.gap.d{d}",
            f"T_t2 T_t1 = T_(t1+t2): two-step vs one-step gap on the finest grid "
            f"(g={result.datum}, d={d}, eps={result.eps:g}, N={int(result.n_atoms[-1])})",
            "Thm 7.1(ii)",
            result.two_vs_one[-1],
            tol,
            N=result.n_atoms.tolist(),
            two_vs_one=result.two_vs_one.tolist(),
        ),
        _rate(
            f"diagram.semigroup.rate.d{d}",
            f"T_t2 T_t1 g on N grid atoms → u_eps(t1+t2): error ∝ N^s, s = −(d+1)/d (midpoint "
            f"rule at fixed eps = {result.eps:g}; the theorem's O(N^(-1/d)) is the eps-uniform "
            f"bound) (d={d})",
            "Thm 7.1(ii)",
            fit,
            _band(-(d + 1) / d),
            **_fit_details(result.n_atoms, result.two_vs_reference),
        ),
    ]


def composition_rows(result: dg.CompositionErrors) -> list[Row]:
    """Thm E.1: the deepest composition's rate in N, and at most linear growth in L."""
    d = result.d
    deepest = int(result.depths[-1])
    fit = loglog_fit(result.n_atoms, result.errors[-1], tail=TAIL - 1)
    growth = result.errors[-1, -1] / (deepest * result.errors[0, -1])
    return [
        _rate(
            f"diagram.depth.rate.d{d}",
            f"depth-{deepest} composition of re-sampled heat steps on N grid atoms → u_eps(T): "
            f"error ∝ N^s, s = −(d+1)/d at fixed eps = {result.eps:g} (Thm E.1 states the "
            f"bound O(L·N^(-1/d))) (d={d})",
            "Thm E.1",
            fit,
            _band(-(d + 1) / d),
            **_fit_details(result.n_atoms, result.errors[-1]),
        ),
        bound_row(
            GROUP,
            f"diagram.depth.growth.d{d}",
            f"error ≤ C·L·N^(-1/d): error(L={deepest}) / ({deepest} · error(L=1)) at "
            f"N={int(result.n_atoms[-1])} (d={d})",
            "Thm E.1",
            growth,
            1.0,
            depths=result.depths.tolist(),
            N=result.n_atoms.tolist(),
            errors=result.errors.tolist(),
        ),
    ]


def _covering_rows(
    rule: str,
    d: int,
    n_atoms: np.ndarray,
    eps: np.ndarray,
    errors: np.ndarray,
    upper: np.ndarray,
    lower: np.ndarray,
    dispersion: np.ndarray,
) -> list[Row]:
    """``E(0, N_max)`` between the covering bounds; every eps > 0 under the upper one."""
    n_max = int(n_atoms[-1])
    positive = eps > 0
    ratios = errors[positive, -1] / upper[-1]
    return [
        interval_row(
            GROUP,
            f"diagram.quad.{rule}.d{d}.hl",
            f"u^N_0 → u_0 ({rule}, d={d}, N={n_max}): sup|u^N_0 − u_0| between the covering "
            f"bounds ρ⁰ + (ρ⁰)²/(2t) (at x = 0) and 2Lρ + ρ²/(2t) (ρ = {dispersion[-1]:.3g}: "
            "minimisers to atoms)",
            "Thm 7.1(iii), (v), Thm 5.1",
            errors[0, -1],
            lower[-1] * (1 - 1e-9),
            upper[-1],
            N=n_atoms.tolist(),
            E0=errors[0].tolist(),
            upper=upper.tolist(),
            lower=lower.tolist(),
        ),
        bound_row(
            GROUP,
            f"diagram.quad.{rule}.d{d}.nmax",
            f"eps-uniform constant ({rule}, d={d}, N={n_max}): max over eps > 0 of "
            "sup|u^N_eps − u_eps| / (2Lρ + ρ²/(2t)), the eps = 0 covering bound",
            "Thm 7.1(iii)",
            ratios.max(),
            1.0,
            eps=eps[positive].tolist(),
            ratios=ratios.tolist(),
        ),
    ]


def quadrature_rows(result: dg.QuadratureErrors) -> list[Row]:
    """(iii) for the midpoint grid: a rate per eps, the eps-uniform rate, the bounds."""
    d, rule = result.d, result.rule
    n = result.n_atoms
    spacing = 2 * result.box / n ** (1 / d)
    tail_spacing = spacing[-TAIL]
    rows = []
    for e, errors in zip(result.eps, result.errors, strict=True):
        if e == 0:
            band, regime = _band(-1 / d), "eps = 0: N^(-1/d), the kink between atoms"
        elif tail_spacing <= RESOLVED * math.sqrt(e * result.t):
            band, regime = _band(-(d + 1) / d), "h ≪ √(eps t): N^(-(d+1)/d)"
        else:
            band = (-(d + 1) / d - RATE_SLACK, -1 / d + RATE_SLACK)
            regime = "h ≳ √(eps t): between N^(-1/d) and N^(-(d+1)/d)"
        rows.append(
            _rate(
                f"diagram.quad.{rule}.d{d}.eps={e:g}",
                f"u^N_eps → u_eps ({rule}, g={result.datum}, d={d}, eps={e:g}): error ∝ N^s, "
                f"{regime}",
                "Thm 7.1(iii)",
                loglog_fit(n, errors, tail=TAIL, floor=1e-13),
                band,
                eps=float(e),
                **_fit_details(n, errors),
            )
        )
    rows.append(
        _rate(
            f"diagram.quad.{rule}.d{d}.sup",
            f"sup over eps ∈ {result.eps.tolist()} of sup|u^N_eps − u_eps| ∝ N^s, s = −1/d "
            f"({rule}, d={d}): the eps-uniform rate",
            "Thm 7.1(iii)",
            loglog_fit(n, result.envelope, tail=TAIL),
            _band(-1 / d),
            **_fit_details(n, result.envelope),
        )
    )
    rows += _covering_rows(
        rule, d, n, result.eps, result.errors, result.upper, result.lower, result.dispersion
    )
    return rows


def nested_rows(surface: dg.ErrorSurface, shifted: dg.ShiftedTropicalErrors) -> list[Row]:
    """(iii) for the nested Halton rule: the randomized-QMC rate and the covering bounds."""
    d = surface.d
    # The mean over random shifts is noisy: fit 7 widths, a factor ~30–60 in N (d ≤ 2). In
    # d = 3 the widths reach ~50 points per axis and that long a tail still holds the ρ²
    # regime (local slopes −0.54 → −0.40 from N = 2^11 to 2^17): fit the last 4 there.
    fit = loglog_fit(shifted.n_atoms, shifted.mean, tail=TAIL + 3 if d <= 2 else TAIL)
    return [
        _rate(
            f"diagram.quad.halton.d{d}.rqmc",
            f"u^N_0 → u_0 (nested Halton, mean over {shifted.errors.shape[0]} random shifts, "
            f"d={d}): error ∝ N^s, s = −1/d (the dispersion rate)",
            "Thm 7.1(iii), (v)",
            fit,
            _band(-1 / d),
            **_fit_details(shifted.n_atoms, shifted.mean),
        ),
        *_covering_rows(
            "halton",
            d,
            surface.n_atoms,
            surface.eps,
            surface.quadrature,
            surface.upper,
            surface.lower,
            surface.dispersion,
        ),
    ]


def viscosity_rows(result: dg.ViscosityErrors) -> list[Row]:
    """(iv): the Laplace coefficient of ``eps log(1/eps)`` and the rate it implies."""
    d, name = result.d, result.datum
    c = LAPLACE[name](d)
    order = np.argsort(result.eps)[::-1]  # decreasing eps: the tail is the smallest
    eps, errors = result.eps[order], result.errors[order]
    fit = loglog_fit(eps, errors, tail=VISCOSITY_TAIL)
    eps_hi = eps[-VISCOSITY_TAIL]
    if c == 0:
        band, law = _band(1.0, 0.05), "1 (c_log = 0)"
    else:
        band = (1 - 1 / math.log(1 / eps_hi) - 0.05, 1.05)
        law = "that of c·eps·log(1/eps) + O(eps) on the fitted range"
    return [
        _rate(
            f"diagram.visc.{name}.d{d}.rate",
            f"u_eps → u_0 (g={name}, d={d}): sup|u_eps − u_0| ∝ eps^s over eps ≤ {eps_hi:.0e}, "
            f"s = {law}; THEORY §4's √eps is an upper bound",
            "Thm 7.1(iv), Thm 5.1",
            fit,
            band,
            **_fit_details(eps, errors),
        ),
        interval_row(
            GROUP,
            f"diagram.visc.{name}.d{d}.log",
            f"u_eps − u_0 ≈ eps·(c_log·log(1/eps) + c) (g={name}, d={d}): Laplace coefficient "
            f"c_log = {c:g} (d/2 kink, (d−1)/2 concave sphere, 0 smooth)",
            "Thm 7.1(iv) (Laplace)",
            result.c_log,
            c - LAPLACE_SLACK,
            c + LAPLACE_SLACK,
            c_lin=result.c_lin,
            model_residual=result.model_residual,
        ),
    ]


def limit_rows(surface: dg.ErrorSurface) -> list[Row]:
    """(v): the Maslov sandwich at N_max and the path ``lim_eps lim_N`` (eps > 0 only)."""
    d = surface.d
    eps = surface.eps
    positive = eps > 0
    n_max = surface.n_atoms[-1]
    scale = eps[positive] * math.log(n_max)
    z_low = surface.maslov_low[positive] / scale
    z_high = surface.maslov_high[positive] / scale
    smallest = int(np.argmin(np.where(positive, eps, np.inf)))
    e_min = float(eps[smallest])
    kink = d / 2 * e_min * math.log(1 / e_min)
    viscous = surface.viscous_edge[positive]
    return [
        Row(
            GROUP,
            f"diagram.maslov.d{d}",
            f"eps → 0 at N = {int(n_max)}: 0 ≤ (u^N_0 − ũ^N_eps)/(eps·log N) ≤ 1 for every eps "
            "> 0 and x (ũ: counting measure, normalization and weights removed); max shown",
            "Thm 3.1, Thm 7.1(v)",
            float(z_high.max()),
            "∈ [0, 1] (min and max over eps, x)",
            bool(
                surface.maslov_low[positive].min() >= -ROUND_OFF
                and np.all(surface.maslov_high[positive] <= scale + ROUND_OFF)
            ),
            {"eps": eps[positive].tolist(), "low": z_low.tolist(), "high": z_high.tolist()},
        ),
        bound_row(
            GROUP,
            f"diagram.limit.viscous.d{d}",
            f"lim_eps lim_N = u_0: min over eps > 0 of E(eps, N_max) / (2Lρ + ρ²/(2t)), the "
            f"covering bound at N_max = {int(n_max)} (d={d})",
            "Thm 7.1(v)",
            viscous.min() / surface.upper[-1],
            1.0,
            eps=eps[positive].tolist(),
            viscous_edge=viscous.tolist(),
            argmin_eps=float(eps[positive][np.argmin(viscous)]),
        ),
        interval_row(
            GROUP,
            f"diagram.limit.continuum.d{d}",
            f"lim_eps lim_N at N = ∞: sup|u_eps − u_0| / ((d/2)·eps·log(1/eps)) at "
            f"eps = {e_min:.0e} (g={surface.datum}, d={d}; kink Laplace term)",
            "Thm 7.1(iv), (v)",
            surface.continuum[smallest] / kink,
            *CONTINUUM_BAND,
            eps=eps[positive].tolist(),
            continuum=surface.continuum[positive].tolist(),
        ),
    ]


def optimal_eps_rows(surface: dg.ErrorSurface) -> list[Row]:
    """Thm 8.1: the argmin ``eps*(N)`` (DIFFERS from the paper) and the prescription."""
    d = surface.d
    eps, n_atoms = surface.eps, surface.n_atoms
    star = surface.eps_star
    inside = (star > 0) & (star < eps.max())
    fit = loglog_fit(n_atoms[inside], star[inside], tail=min(TAIL + 3, int(inside.sum())))
    prescribed = surface.prescribed(-1 / d)
    best = surface.errors.min(axis=0)
    ratio = prescribed / best
    surface_details = {
        "eps": eps.tolist(),
        "N": n_atoms.tolist(),
        "E": surface.errors.tolist(),
        "eps_star": star.tolist(),
        "eps_knee": surface.eps_knee.tolist(),
        "knee_factor": surface.knee_factor,
        "datum": surface.datum,
        "d": d,
    }
    lo, hi = EPS_STAR_SLOPE
    return [
        _rate(
            f"diagram.thm81.epsstar.d{d}",
            f"optimal viscosity eps*(N) = argmin_eps E(eps, N) ∝ N^s on the error surface "
            f"(g={surface.datum}, d={d}, {int(inside.sum())}/{star.size} widths with an interior "
            "optimum): measured s ≈ −2/d; a shallow minimum",
            "Thm 8.1",
            fit,
            (lo / d, hi / d),
            paper="eps* ∝ N^(-1/d)",
            gain_at_eps_star=(best / surface.tropical_edge).tolist(),
            **surface_details,
        ),
        interval_row(
            GROUP,
            f"diagram.thm81.presc.d{d}",
            f"the paper's prescription eps = N^(-1/d): E(N^(-1/d), N) / min_eps E(eps, N) at "
            f"N = {int(n_atoms[-1])} (eps grid up to {eps.max():g}; d={d})",
            "Thm 8.1",
            ratio[-1],
            1.0,
            PRESCRIPTION_FACTOR,
            N=n_atoms.tolist(),
            ratio=ratio.tolist(),
            prescribed=prescribed.tolist(),
            best=best.tolist(),
        ),
    ]


# --------------------------------------------------------------------------------------
# Registered checks
# --------------------------------------------------------------------------------------


def surface_eps(widths: tuple[int, ...], d: int) -> np.ndarray:
    """The eps grid of the error surface: 0, ``logspace(-8, 0, 33)`` and every ``N^{-1/d}``."""
    return np.union1d(_SURFACE_EPS, np.asarray(widths, dtype=np.float64) ** (-1 / d))


@functools.cache
def _surface(d: int, quick: bool) -> dg.ErrorSurface:
    """The (v) error surface of the cone (cached: three checks read it)."""
    widths = SETTINGS[quick]["surface_widths"][d]
    eps = surface_eps(widths, d)
    return dg.error_surface(
        CONE,
        d,
        eps_values=eps,
        widths=widths,
        key=jax.random.key(_HALTON_SEED),
        point_chunk=_point_chunk(eps.size, widths[-1]),
    )


@register(GROUP)
def check_layer_identity(quick: bool) -> list[Row]:
    """Thm 7.1(i): the LSE layer is the Hopf–Cole solution; the sweeps are ``hopf_cole``."""
    s = SETTINGS[quick]
    rows = identity_rows(dg.layer_identity_errors(dims=s["identity_dims"]))
    for d, widths in s["surface_widths"].items():  # the sweeps of the error surfaces
        eps = surface_eps(widths, d)
        rows += sweep_rows(
            dg.sweep_errors(
                CONE,
                d,
                widths=widths,
                eps_values=eps,
                compare_eps=_SWEEP_EPS,
                key=jax.random.key(_HALTON_SEED),
                point_chunk=_point_chunk(eps.size, widths[-1]),
            )
        )
    for d, setting in s["sweep"].items():  # other code paths of the sweep
        rows += sweep_rows(
            dg.sweep_errors(
                CONE,
                d,
                widths=setting["widths"],
                eps_values=_SWEEP_EPS,
                key=jax.random.key(_HALTON_SEED),
                point_chunk=setting["point_chunk"],
            ),
            key=f"diagram.sweep.scan.d{d}",
        )
    return rows


@register(GROUP)
def check_semigroup(quick: bool) -> list[Row]:
    """Thm 7.1(ii) and Thm E.1: the heat semigroup and the depth-L composition error."""
    s = SETTINGS[quick]
    rows = []
    for d, sizes in s["semigroup"].items():
        sg = dg.semigroup_errors(CONE, d, sizes=sizes, eps=s["semigroup_eps"])
        rows += semigroup_rows(sg, s["semigroup_tol"])
    for d, sizes in s["composition"].items():
        comp = dg.composition_errors(
            CONE, d, sizes=sizes, depths=s["depths"], eps=s["semigroup_eps"]
        )
        rows += composition_rows(comp)
    return rows


@register(GROUP)
def check_quadrature(quick: bool) -> list[Row]:
    """Thm 7.1(iii): the midpoint grid and the nested (Halton) rule."""
    s = SETTINGS[quick]
    rows = []
    for d, sizes in s["grid"].items():
        eps = s["grid_eps"]
        grid = dg.quadrature_errors(
            CONE,
            d,
            rule="grid",
            sizes=sizes,
            eps_values=eps,
            point_chunk=_point_chunk(len(eps), max(sizes) ** d),
        )
        rows += quadrature_rows(grid)
    for d, widths in s["surface_widths"].items():
        surface = _surface(d, quick)
        shifted = dg.shifted_tropical_errors(
            CONE,
            d,
            widths=widths,
            key=jax.random.key(_SHIFTS_SEED),
            n_shifts=s["shifts"],
            eps_max=float(surface.eps.max()),
        )
        rows += nested_rows(surface, shifted)
    return rows


@register(GROUP)
def check_vanishing_viscosity(quick: bool) -> list[Row]:
    """Thm 7.1(iv): u_eps → u_0 for the convex kink, the smooth and the concave datum."""
    s = SETTINGS[quick]
    rows = []
    for datum in (CONE, SMOOTH_CONE, CONCAVE_CONE):
        for d in s["viscosity_dims"]:
            rows += viscosity_rows(dg.viscosity_errors(datum, d, eps_values=s["viscosity_eps"]))
    return rows


@register(GROUP)
def check_iterated_limits(quick: bool) -> list[Row]:
    """Thm 7.1(v): the Maslov sandwich and both iterated limits on the error surface."""
    return [r for d in SETTINGS[quick]["surface_widths"] for r in limit_rows(_surface(d, quick))]


@register(GROUP)
def check_optimal_viscosity(quick: bool) -> list[Row]:
    """Thm 8.1: the optimal viscosity eps*(N) and the paper's prescription eps = N^(-1/d)."""
    return [
        r for d in SETTINGS[quick]["surface_widths"] for r in optimal_eps_rows(_surface(d, quick))
    ]
