"""Theorem 7.1's commutative diagram, measured (hjax.diagram, hjax.verify.diagram).

The references are checked against each other first (analytic Moreau envelope vs
brute-force Hopf–Lax on a fine grid; the radial Hopf–Cole integral vs the erf closed form
in 1-D, the analytic Gaussian solution for quadratic data, a fine d-dimensional quadrature
and Feynman–Kac). Then the diagram's claims are measured with small settings: the
quadrature rate (iii) is ``>= 1/d − 0.15``, both iterated limits (v) reach ``u_0``, the
semigroup gap (ii) closes under refinement, and a deliberately wrong reference makes the
corresponding verify rows fail. The optimal-viscosity test documents where THEORY §8's
``eps* ≍ N^{-1/d}`` does and does not describe the measured error surface.
"""

import math

import chex
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import raises_naming
from hypothesis import given, settings

from hjax import diagram as dg
from hjax.feynman_kac import feynman_kac
from hjax.hopf_cole import hopf_cole, hopf_lax
from hjax.measures import grid_measure
from hjax.verify import diagram as vd

T = 1.0
#: u_eps for a vector of eps in one compiled call (x, t, eps (E,), datum) -> (E, P).
radial_sweep = jax.jit(
    jax.vmap(dg.hopf_cole_radial, in_axes=(None, None, 0, None)), static_argnums=3
)
jit_hopf_lax = jax.jit(hopf_lax)
jit_feynman_kac = jax.jit(feynman_kac, static_argnames=("g_fn", "n_samples"))
SURFACE_EPS = np.concatenate([[0.0], np.logspace(-8, -1, 33)])
SURFACE_WIDTHS_1D = tuple(int(n) for n in np.geomspace(16, 4096, 11).round())


def cone_1d_closed_form(x: np.ndarray, t: float, eps: float) -> np.ndarray:
    """u_eps for g = |y| in 1-D: two Gaussian half-line integrals (erfc, pure Python)."""
    out = []
    for xi in np.asarray(x, dtype=float):
        s = math.sqrt(eps * t)

        def log_phi(z):
            return math.log(0.5 * math.erfc(-z / math.sqrt(2)))

        a = -(xi - t / 2) / eps + log_phi((xi - t) / s)
        b = (xi + t / 2) / eps + log_phi((-xi - t) / s)
        m = max(a, b)
        out.append(-eps * (m + math.log(math.exp(a - m) + math.exp(b - m))))
    return np.asarray(out)


def moreau_cone(x: np.ndarray, t: float) -> np.ndarray:
    """Analytic Moreau envelope of |y|: |x|²/(2t) for |x| <= t, |x| − t/2 beyond."""
    r = np.linalg.norm(x, axis=-1)
    return np.where(r <= t, r**2 / (2 * t), r - t / 2)


# --------------------------------------------------------------------------------------
# References, checked against each other
# --------------------------------------------------------------------------------------


def test_radial_hopf_cole_matches_erf_closed_form_in_1d():
    x = np.linspace(-2.0, 2.0, 21)[:, None]
    for eps in (1.0, 0.1, 0.03):
        u = np.asarray(dg.hopf_cole_radial(x, T, eps, dg.CONE))
        np.testing.assert_allclose(u, cone_1d_closed_form(x[:, 0], T, eps), rtol=0, atol=1e-12)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_radial_hopf_cole_matches_analytic_gaussian(d):
    x = np.random.default_rng(d).standard_normal((7, d))
    q = dg.quadratic_datum(1.5)
    for eps in (0.5, 1e-3, 0.0):
        u = dg.hopf_cole_radial(x, 0.7, eps, q)
        exact = dg.quadratic_hopf_cole(x, 0.7, eps, 1.5)
        np.testing.assert_allclose(u, exact, rtol=0, atol=1e-12)


def test_analytic_gaussian_matches_fine_quadrature():
    # Quadratic g on a midpoint grid (heat-normalized): the integrand is a Gaussian, the
    # midpoint rule is spectrally accurate, so the analytic formula is reproduced closely.
    y, log_w = grid_measure(-8.0, 8.0, 160, 2)
    g = 0.75 * jnp.sum(y * y, axis=-1)
    x = jnp.array([[0.0, 0.0], [0.7, -0.4], [1.5, 1.0]])
    for eps in (0.5, 0.1):
        quad = hopf_cole(x, y, g, T, eps, log_w=log_w, normalized=True)
        np.testing.assert_allclose(quad, dg.quadratic_hopf_cole(x, T, eps, 1.5), atol=1e-10)


@pytest.mark.parametrize("datum", [dg.CONE, dg.CONCAVE_CONE], ids=["cone", "concave"])
def test_radial_hopf_cole_matches_fine_quadrature_in_2d(datum):
    box = dg.truncation_box(T, 0.5, 1.5)
    y, log_w = grid_measure(-box, box, 600, 2)
    x = dg.query_points(2, 3)
    quad = hopf_cole(x, y, datum(y), T, 0.5, log_w=log_w, normalized=True)
    # Midpoint rule with h ≈ 0.03 on a Lipschitz-kinked integrand: O(h²)-accurate.
    np.testing.assert_allclose(quad, dg.hopf_cole_radial(x, T, 0.5, datum), atol=2e-5)


def test_radial_hopf_cole_matches_feynman_kac_in_3d(key):
    x = jnp.array([[0.0, 0.0, 0.0], [0.6, -0.3, 0.9]])
    u_mc, se = jit_feynman_kac(dg.SMOOTH_CONE, x, T, 0.5, key, 20000)
    u = dg.hopf_cole_radial(x, T, 0.5, dg.SMOOTH_CONE)
    assert np.all(np.abs(np.asarray(u_mc - u)) <= 5 * np.asarray(se) + 1e-4)


def test_moreau_envelope_analytic_vs_brute_force_hopf_lax():
    # Brute-force Hopf–Lax (min over a fine grid, hjax.hopf_lax) against the analytic
    # envelope and against the bisection-based hopf_lax_radial, in 2-D.
    axis = jnp.linspace(-4.0, 4.0, 401)  # contains 0: the kink minimiser is a node
    y = jnp.stack(jnp.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    x = dg.query_points(2, 5, 2.0)
    h = float(axis[1] - axis[0])
    brute = jit_hopf_lax(x, y, dg.CONE(y), T)
    exact = moreau_cone(np.asarray(x), T)
    assert np.max(np.abs(np.asarray(brute) - exact)) <= h**2
    np.testing.assert_allclose(dg.hopf_lax_radial(x, T, dg.CONE), exact, atol=1e-14)
    concave = jit_hopf_lax(x, y, dg.CONCAVE_CONE(y), T)
    np.testing.assert_allclose(concave, -np.linalg.norm(x, axis=-1) - T / 2, atol=h**2)
    np.testing.assert_allclose(dg.hopf_lax_radial(x, T, dg.CONCAVE_CONE), concave, atol=h**2)


@settings(max_examples=15, deadline=None)
@given(
    a=st.floats(0.0, 3.0),
    t=st.floats(0.2, 2.0),
    name=st.sampled_from(sorted(dg.DATA)),
)
def test_hopf_lax_radial_is_the_minimum_over_the_ray(a, t, name):
    datum = dg.DATA[name]
    r = np.linspace(0.0, 8.0, 400_001)
    profile = datum.alpha * r + datum.beta * np.sqrt(1 + r * r)
    brute = np.min((r - a) ** 2 / (2 * t) + profile)
    u0 = float(dg.hopf_lax_radial(np.array([a]), t, datum))
    assert brute - 1e-9 <= u0 + 1e-12 and u0 <= brute + 1e-12
    assert u0 <= float(datum(np.array([a]))) + 1e-12  # an envelope lies below g


def test_reference_float32_follows_dtype():
    x = np.array([[0.3], [1.7]], dtype=np.float32)
    u = dg.hopf_cole_radial(x, np.float32(1.0), np.float32(0.1), dg.CONE)
    assert u.dtype == jnp.float32
    np.testing.assert_allclose(u, cone_1d_closed_form(x[:, 0], T, 0.1), atol=2e-5)


def test_eps_sweep_of_the_reference_compiles_once():
    x = dg.query_points(2, 3)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def u(eps):
        return dg.hopf_cole_radial(x, T, eps, dg.SMOOTH_CONE)

    values = [u(e) for e in (1e-4, 1e-2, 0.3)]
    assert values[0][0] < values[1][0] < values[2][0]  # the viscous bias grows with eps


# --------------------------------------------------------------------------------------
# The diagram, measured
# --------------------------------------------------------------------------------------


def test_layer_is_hopf_cole_exactly():
    out = dg.layer_identity_errors(dims=(1, 3))
    assert out["max_error"] <= 1e-12
    assert len(out["cases"]) == 2 * 4 * 4
    assert all(r.passed for r in vd.identity_rows(out))


def test_semigroup_gap_decreases_under_refinement():
    out = dg.semigroup_errors(dg.CONE, 1, sizes=(8, 16, 32, 64), eps=0.25)
    gaps = np.asarray(out["two_vs_one"])
    assert np.all(np.diff(gaps) < 0) and gaps[-1] < 1e-8 < gaps[0]
    assert out["rate_two_vs_reference"] >= 1 - 0.15  # → u_eps(t1 + t2), at rate ≈ 2
    assert all(r.passed for r in vd.semigroup_rows(out, 1e-3))
    comp = dg.composition_errors(dg.CONE, 1, sizes=(8, 16, 32, 64), depths=(1, 2, 4), eps=0.25)
    assert min(comp["rate_in_N"]) >= 1 - 0.15
    assert all(r.passed for r in vd.composition_rows(comp))


@pytest.mark.parametrize("d", [1, 2])
def test_quadrature_rate_is_at_least_one_over_d(d):
    sizes = {1: (8, 16, 32, 64, 128, 256, 512), 2: (4, 8, 16, 32, 64)}[d]
    eps = (0.0, 1e-3, 0.1, 0.25)
    grid = dg.quadrature_errors(dg.CONE, d, rule="grid", sizes=sizes, eps_values=eps)
    assert min(grid["rates"]) >= 1 / d - 0.15
    # The eps-uniform rate is exactly 1/d (attained as eps → 0: the kink between atoms)...
    assert 1 / d - 0.15 <= grid["envelope_rate"] <= 1 / d + 0.3
    # ...while a fixed eps > 0 converges faster (midpoint rule; the cone's kink: h^(d+1)).
    assert grid["rates"][-1] >= (d + 1) / d - 0.3
    assert all(r.passed for r in vd.quadrature_rows(grid))
    # Nested Halton prefixes (one sweep): the dispersion around the kink decreases in a
    # staircase, so the fit needs about three decades of N.
    prefixes = {1: tuple(2**k for k in range(3, 13)), 2: tuple(4**k for k in range(2, 8))}[d]
    halton = dg.quadrature_errors(
        dg.CONE, d, rule="halton", sizes=prefixes, eps_values=eps, key=jax.random.key(1)
    )
    assert halton["envelope_rate"] >= 1 / d - 0.15
    assert all(r.passed for r in vd.quadrature_rows(halton))


@pytest.fixture(scope="module")
def surface_1d():
    return dg.error_surface(
        dg.CONE, 1, eps_values=SURFACE_EPS, widths=SURFACE_WIDTHS_1D, key=jax.random.key(1)
    )


def test_both_iterated_limits_reach_u0(surface_1d):
    s = surface_1d
    tropical = np.asarray(s["tropical_edge"])  # lim_N lim_eps: u^N_0 → u_0
    assert tropical[-1] < 1e-2 and tropical[-1] < tropical[0] / 50
    assert np.all(np.diff(tropical) <= 1e-15)  # nested atoms: the min can only decrease
    viscous = np.asarray(s["viscous_edge"])  # eps → 0 at N_max: down to the tropical floor
    assert viscous.min() < 1e-2 and viscous[-1] > 10 * viscous.min()
    continuum = np.asarray(s["continuum_edge"])  # lim_eps lim_N with N = ∞: u_eps → u_0
    positive = np.asarray(s["eps"]) > 0
    assert continuum[positive][0] < 1e-6 and np.all(np.diff(continuum[positive]) > 0)
    assert all(r.passed for r in vd.limit_rows(s, 1e-2))


def test_optimal_viscosity_scales_like_n_to_minus_two_over_d(surface_1d):
    # THEORY §8 states eps* ≍ N^(-1/d). On the heat-normalized error surface the argmin
    # falls like N^(-2/d): E(eps, N) ≈ E(0, N) + eps·log(eps^(d/2)/h^d), minimal at
    # eps ~ h², with a shallow minimum (E(eps*)/E(0) → 1); what scales like the grid
    # spacing N^(-1/d) is the largest eps that keeps E within a factor 2 of its minimum.
    s = surface_1d
    star = np.asarray(s["eps_star"])
    assert -2.75 <= dg.loglog_slope(s["N"], star) <= -1.5  # not −1 (THEORY's reading)
    assert min(s["gain_at_eps_star"][-3:]) >= 0.95
    rows = vd.optimal_eps_rows(s)
    assert all(r.passed for r in rows)


def test_vanishing_viscosity_rates():
    cone = dg.viscosity_errors(dg.CONE, 2, eps_values=np.logspace(-5, -1, 9))
    # A convex kink: (d/2)·eps·log(1/eps) + O(eps), a rate ≈ 0.85 on this range — well
    # inside THEORY §4's √(eps t) bound.
    assert 0.75 <= cone["rate"] <= 0.95 and abs(cone["c_log"] - 1.0) < 0.1
    errors = np.asarray(cone["errors"])
    assert np.all(errors <= np.sqrt(np.asarray(cone["eps"]) * T))
    smooth = dg.viscosity_errors(dg.SMOOTH_CONE, 2, eps_values=np.logspace(-5, -1, 9))
    assert abs(smooth["rate"] - 1.0) < 0.02  # smooth data: O(eps)
    assert all(r.passed for r in vd.viscosity_rows(cone) + vd.viscosity_rows(smooth))


# --------------------------------------------------------------------------------------
# The checks can fail
# --------------------------------------------------------------------------------------


def _shifted(datum, shift):
    def reference(x, t, eps):
        u = np.asarray(radial_sweep(x, t, jnp.asarray(eps), datum))
        return u + shift * (np.asarray(eps) > 0)[:, None]

    return reference


def test_wrong_quadrature_reference_fails_the_rate_row():
    out = dg.quadrature_errors(
        dg.CONE,
        1,
        rule="grid",
        sizes=(8, 16, 32, 64, 128, 256, 512),
        eps_values=(0.0, 1e-3, 0.1, 0.25),
        reference=_shifted(dg.CONE, 0.05),
    )
    rate_row = vd.quadrature_rows(out)[0]
    assert not rate_row.passed and rate_row.measured < 0.85


def test_wrong_viscosity_reference_fails():
    out = dg.viscosity_errors(
        dg.CONE, 1, eps_values=np.logspace(-5, -1, 9), reference=_shifted(dg.CONE, 1e-2)
    )
    assert not any(r.passed for r in vd.viscosity_rows(out))


def test_reference_in_the_authors_time_convention_fails_the_limits():
    # THEORY §9: the authors' code uses |x − y|²/(4t), i.e. our time 2t. A u_0 in that
    # convention is a wrong reference for (v): the tropical edge stalls.
    def u0_at_2t(x, t, eps):
        return np.asarray(radial_sweep(x, 2 * t, jnp.asarray(eps), dg.CONE))

    out = dg.error_surface(
        dg.CONE,
        1,
        eps_values=SURFACE_EPS,
        widths=SURFACE_WIDTHS_1D,
        key=jax.random.key(1),
        reference=u0_at_2t,
    )
    rows = vd.limit_rows(out, 1e-2)
    assert not rows[0].passed and not rows[1].passed


# --------------------------------------------------------------------------------------
# The figure, and bad input
# --------------------------------------------------------------------------------------


def test_plot_commutative_diagram_writes_a_png(tmp_path, surface_1d):
    rows = vd.limit_rows(surface_1d, 1e-2) + vd.optimal_eps_rows(surface_1d)
    rows += vd.identity_rows({"max_error": 1e-15, "cases": [{"d": 1}]})
    path = dg.plot_commutative_diagram(rows, tmp_path / "out" / "diagram.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # JSON-shaped rows (NaN written as null) draw too.
    as_json = [r.to_json() for r in rows]
    as_json[0]["details"]["E"][0][0] = None
    dg.plot_commutative_diagram(as_json, tmp_path / "again.svg")
    assert (tmp_path / "again.svg").read_text().lstrip().startswith("<?xml")
    assert not list(tmp_path.glob("**/*.tmp"))


def test_bad_input_is_rejected_by_name():
    with raises_naming("x"):
        dg.hopf_cole_radial(np.zeros((2, 4)), T, 0.1, dg.CONE)
    with raises_naming("t"):
        dg.hopf_lax_radial(np.zeros((2, 1)), 0.0, dg.CONE)
    with raises_naming("eps"):
        dg.hopf_cole_radial(np.zeros((2, 1)), T, -0.1, dg.CONE)
    with raises_naming("beta"):
        dg.RadialDatum("bad", beta=-1.0)
    with raises_naming("curvature"):
        dg.quadratic_datum(0.0)
    with raises_naming("rule"):
        dg.quadrature_errors(dg.CONE, 1, rule="monte-carlo", sizes=(8,), eps_values=(0.1,))
    with raises_naming("eps_values"):
        dg.error_surface(dg.CONE, 1, eps_values=(0.1, 0.2), widths=(4, 8))
    with raises_naming("datum"):  # Theorem 7.1 needs Lipschitz data (the box bound too)
        dg.quadrature_errors(dg.quadratic_datum(1.0), 1, rule="grid", sizes=(8,), eps_values=(0.1,))
