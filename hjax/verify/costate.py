r"""Checks for characteristics and co-states: backprop = Pontryagin (THEORY §6–§7).

Group ``costate``. Each row measures a claim of THEORY §7 against a computation that
does not share the library's formula:

* the co-state recursions (:func:`hjax.costate.costate_backward`,
  :func:`hjax.costate.rk_costate_backward`) against ``jax.grad`` through a forward scan
  written here from the explicit step formulas (states perturbed by ``δ_l`` so that
  ``∂Φ/∂δ_l = ∂Φ/∂x_l``);
* the bilinear invariant ``p_l · δx_l`` from Jacobian–vector products, with the drift of a
  deliberately wrong adjoint (Jacobians at ``x_{l+1}``) reported next to it;
* diffrax's continuous adjoint (``BacksolveAdjoint``) against the exact discrete gradient
  of the same solver and step (:func:`hjax.costate.rk_ode_gradient`, itself checked
  against diffrax's ``RecursiveCheckpointAdjoint``/``DirectAdjoint`` in full mode), the
  order fitted by regression over step sizes;
* the ResNet against a tight Tsit5 solve of its neural ODE; ``H = p · f`` along the
  diffrax solution of Hamilton's equations.
"""

import math

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from ..costate import (
    EULER,
    HEUN,
    MIDPOINT,
    RK4,
    adjoint_gaps,
    bilinear_invariant,
    costate_backward,
    euler_forward,
    hamiltonian,
    hamiltonian_flow,
    ode_gradient,
    rk_bilinear_invariant,
    rk_costate_backward,
    rk_forward,
    rk_ode_gradient,
    theta_path,
)
from ..semiring import lse
from ._core import Row, bound_row, interval_row, register

GROUP = "costate"
_D, _M = 4, 6  # state dimension, hidden width of the test blocks


# --------------------------------------------------------------------------------------
# Test problems and an independent reference (a scan written from the step formulas).
# --------------------------------------------------------------------------------------


def _tanh_block(x, th):
    return th["W2"] @ jnp.tanh(th["W1"] @ x + th["b1"]) + th["b2"]


def _lse_block(x, th):
    return lse(th["W"] @ x + th["b"], th["eps"]) - th["c"]


_FIELDS = {"tanh": _tanh_block, "lse": _lse_block}


def _theta(kind: str, num: int, seed: int) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    if kind == "tanh":
        theta = {
            "W1": rng.normal(size=(num, _M, _D)),
            "b1": rng.normal(size=(num, _M)),
            "W2": rng.normal(size=(num, _D, _M)) / 2,
            "b2": rng.normal(size=(num, _D)) / 2,
        }
    else:
        theta = {
            "W": rng.normal(size=(num, _D, _M, _D)),
            "b": rng.normal(size=(num, _D, _M)),
            "eps": rng.uniform(0.3, 1.5, size=num),
            "c": rng.normal(size=(num, _D)),
        }
    return {k: jnp.asarray(v) for k, v in theta.items()}


def _vectors(seed: int) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed + 1000)
    return jnp.asarray(rng.normal(size=_D)), jnp.asarray(rng.normal(size=_D))


def _loss(x):
    return jnp.sum(jnp.sin(x)) + 0.5 * jnp.sum(x**2)


def _step_formula(name: str):
    """Explicit step formulas, typed out (not from the Butcher tableau)."""

    def euler(f, x, th, h):
        return x + h * f(x, th)

    def midpoint(f, x, th, h):
        return x + h * f(x + 0.5 * h * f(x, th), th)

    def heun(f, x, th, h):
        k1 = f(x, th)
        return x + 0.5 * h * (k1 + f(x + h * k1, th))

    def rk4(f, x, th, h):
        k1 = f(x, th)
        k2 = f(x + 0.5 * h * k1, th)
        k3 = f(x + 0.5 * h * k2, th)
        k4 = f(x + h * k3, th)
        return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    return {"euler": euler, "midpoint": midpoint, "heun": heun, "rk4": rk4}[name]


def _reference(f, step, theta, x0, h):
    """jax.grad through a scan of ``step``; δ_l added to x_l gives ∂Φ/∂x_l."""
    num = jax.tree_util.tree_leaves(theta)[0].shape[0]

    def phi(theta, deltas):
        def body(x, inputs):
            th, delta = inputs
            return step(f, x + delta, th, h), None

        x, _ = jax.lax.scan(body, x0, (theta, deltas[:-1]))
        return _loss(x + deltas[-1])

    return jax.grad(phi, argnums=(0, 1))(theta, jnp.zeros((num + 1, *x0.shape), x0.dtype))


_TABLEAUS = {"euler": EULER, "midpoint": MIDPOINT, "heun": HEUN, "rk4": RK4}


def _case(kind: str, method: str):
    f, step, tableau = _FIELDS[kind], _step_formula(method), _TABLEAUS[method]

    def run(theta, x0, dx0, h):
        g_theta, g_states = _reference(f, step, theta, x0, h)
        if method == "euler":
            xs = euler_forward(f, theta, x0, h)
            ps, grads = costate_backward(f, theta, xs, jax.grad(_loss)(xs[-1]), h)
            inv = bilinear_invariant(f, theta, xs, ps, dx0, h)
            # a wrong adjoint for contrast: Jacobians at x_{l+1} instead of x_l
            wrong = jax.lax.scan(
                lambda p, inp: _wrong_step(f, p, inp, h), ps[-1], (theta, xs[1:]), reverse=True
            )[1]
            inv_wrong = bilinear_invariant(f, theta, xs, jnp.concatenate([wrong, ps[-1:]]), dx0, h)
        else:
            xs = rk_forward(f, theta, x0, h, tableau)
            ps, grads = rk_costate_backward(f, theta, xs, jax.grad(_loss)(xs[-1]), h, tableau)
            inv = rk_bilinear_invariant(f, theta, xs, ps, dx0, h, tableau)
            inv_wrong = None
        return grads, ps, (g_theta, g_states), inv, inv_wrong

    return run


def _measure(cases: tuple[tuple[str, str], ...], depth: int, seed: int) -> list[tuple]:
    """Run every (field, method) case at one depth in a single compilation."""
    x0, dx0 = _vectors(seed)
    thetas = [_theta(kind, depth, seed=seed) for kind, _ in cases]
    runs = [_case(kind, method) for kind, method in cases]
    h = 0.7 if depth == 1 else 2.0 / depth
    together = jax.jit(
        lambda thetas, h: [run(th, x0, dx0, h) for run, th in zip(runs, thetas, strict=True)]
    )
    return together(thetas, h)


def _wrong_step(f, p, inputs, h):
    th, x_next = inputs
    p_prev = p + h * jax.vjp(lambda x: f(x, th), x_next)[1](p)[0]
    return p_prev, p_prev


def _rel(a, b) -> float:
    pairs = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    return max(
        float(np.linalg.norm(np.asarray(u) - np.asarray(v)) / np.linalg.norm(np.asarray(v)))
        for u, v in pairs
    )


def _spread(v) -> float:
    v = np.asarray(v)
    return float(np.max(np.abs(v - v[0])) / np.max(np.abs(v)))


def _slope(hs, errors) -> float:
    hs, errors = np.asarray(hs, dtype=float), np.asarray(errors, dtype=float)
    if not np.all(np.isfinite(errors)) or np.any(errors <= 0):
        return math.nan
    return float(np.polyfit(np.log(hs), np.log(errors), 1)[0])


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------


@register(GROUP)
def pmp_identity(quick: bool) -> list[Row]:
    """Discrete co-state = backprop at finite h; p_l · δx_l constant (Thm 8.4)."""
    depths = (64,) if quick else (1, 7, 64, 512)
    err = drift = 0.0
    wrong_drift = math.inf
    for depth in depths:
        for grads, ps, (g_theta, g_states), inv, inv_wrong in _measure(
            (("tanh", "euler"), ("lse", "euler")), depth, seed=depth
        ):
            err = max(err, _rel(grads, g_theta), _rel(ps, g_states))
            drift = max(drift, _spread(inv))
            if depth > 1:
                wrong_drift = min(wrong_drift, _spread(inv_wrong))
    details = {"depths": list(depths), "fields": ["tanh MLP", "LSE layer (eps trained)"]}
    return [
        bound_row(
            GROUP,
            "co-state p_l = p_{l+1} + h ∂_xfᵀp_{l+1}, ∂Φ/∂θ_l = h ∂_θfᵀp_{l+1} equal jax.grad "
            "(max relative error over θ-gradients and co-states)",
            "Thm 8.4",
            err,
            1e-12,
            **details,
        ),
        bound_row(
            GROUP,
            "bilinear invariant p_l · δx_l constant in l (relative drift); a wrong adjoint "
            "(Jacobians at x_{l+1}) drifts by wrong_adjoint_drift",
            "Thm 8.4 (Sanz-Serna 2016)",
            drift,
            1e-12,
            wrong_adjoint_drift=wrong_drift,
            **details,
        ),
    ]


@register(GROUP)
def rk_adjoint(quick: bool) -> list[Row]:
    """Conjugate partitioned RK adjoint of explicit RK blocks = backprop; invariant kept."""
    depths = (7,) if quick else (1, 7, 64, 256)
    err = drift = 0.0
    for depth in depths:
        for grads, ps, (g_theta, g_states), inv, _ in _measure(
            (("tanh", "midpoint"), ("tanh", "heun"), ("tanh", "rk4")), depth, seed=depth + 1
        ):
            err = max(err, _rel(grads, g_theta), _rel(ps, g_states))
            drift = max(drift, _spread(inv))
    details = {"methods": ["midpoint", "heun", "rk4"], "depths": list(depths)}
    return [
        bound_row(
            GROUP,
            "RK adjoint by stage-wise vjps (ν_i = b_i p⁺ + h Σ_j a_ji ℓ_j) equals jax.grad of "
            "the unrolled RK network (max relative error)",
            "Thm 8.4 (Hager 2000)",
            err,
            1e-12,
            **details,
        ),
        bound_row(
            GROUP,
            "RK + conjugate adjoint: p_l · δx_l constant in l (relative drift)",
            "Thm 8.4 (Sanz-Serna 2016)",
            drift,
            1e-12,
            **details,
        ),
    ]


def _smooth_problem():
    """θ(t) affine in t on [0, 1] (two nodes, path='linear'): a field smooth in t."""
    theta = _theta("tanh", 2, seed=11)
    x0, _ = _vectors(11)
    return theta, x0, 1.0


_SOLVERS = {
    "euler": (diffrax.Euler(), EULER, 1.0),
    "midpoint": (diffrax.Midpoint(), MIDPOINT, 2.0),
    "heun": (diffrax.Heun(), HEUN, 3.0),
}


def _backsolve_gaps(name: str, steps: tuple[int, ...]) -> np.ndarray:
    """‖g_backsolve − g_discrete‖ / ‖g_discrete‖ per number of steps (quick mode)."""
    solver, tableau, _ = _SOLVERS[name]
    theta, x0, T = _smooth_problem()

    @jax.jit
    def backsolve(dts):
        def one(dt):
            kw = dict(method="backsolve", path="linear", solver=solver, dt=dt)
            return ode_gradient(_tanh_block, theta, x0, T, _loss, max_steps=max(steps), **kw)[1]

        return jax.lax.map(one, dts)

    g_back = backsolve(jnp.asarray([T / n for n in steps]))
    gaps = []
    for i, n in enumerate(steps):
        discrete = jax.jit(
            lambda th, n=n: rk_ode_gradient(
                _tanh_block, th, x0, T, _loss, n, tableau, path="linear"
            )
        )(theta)[1]
        g_i = jax.tree_util.tree_map(lambda g, i=i: g[i], g_back)
        gaps.append(_norm_gap(g_i, discrete))
    return np.asarray(gaps)


def _norm_gap(a, b) -> float:
    flat_a = np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(a)])
    flat_b = np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(b)])
    return float(np.linalg.norm(flat_a - flat_b) / np.linalg.norm(flat_b))


@register(GROUP)
def adjoint_gap_orders(quick: bool) -> list[Row]:
    """BacksolveAdjoint vs backprop through the solver: gap = O(dt^order) (THEORY §7)."""
    # quick: Euler only (each diffrax solver costs seconds of XLA compilation on a CPU)
    steps = (16, 32, 64) if quick else (8, 16, 32, 64, 128, 256)
    names = ("euler",) if quick else ("euler", "midpoint", "heun")
    rows = []
    theta, x0, T = _smooth_problem()
    direct_gap = cross_gap = 0.0
    for name in names:
        solver, tableau, order = _SOLVERS[name]
        hs = [T / n for n in steps]
        if quick:
            gaps = _backsolve_gaps(name, steps)
        else:
            out = adjoint_gaps(
                _tanh_block,
                theta,
                x0,
                T,
                _loss,
                jnp.asarray(hs),
                solver=solver,
                path="linear",
                max_steps=max(steps),
            )
            gaps = np.asarray(out["backsolve"])
            direct_gap = max(direct_gap, float(np.max(out["direct"])))
            kw = dict(path="linear", solver=solver, dt=T / steps[1], max_steps=steps[1])
            _, g_rec = ode_gradient(_tanh_block, theta, x0, T, _loss, method="recursive", **kw)
            _, g_rk = rk_ode_gradient(
                _tanh_block, theta, x0, T, _loss, steps[1], tableau, path="linear"
            )
            cross_gap = max(cross_gap, _rel(g_rk, g_rec))
        measured = _slope(hs, gaps)
        claim = f"{name}: continuous adjoint (BacksolveAdjoint) − backprop gap ∝ dt^q, fitted q" + (
            " (Heun's adjoint is Heun reversed: O(dt²) terms cancel, q = 3)" if order == 3 else ""
        )
        rows.append(
            interval_row(
                GROUP,
                claim,
                "THEORY §7",
                measured,
                order - 0.3,
                order + 0.3,
                dt=hs,
                gaps=gaps.tolist(),
            )
        )
    if not quick:
        rows.append(
            bound_row(
                GROUP,
                "DirectAdjoint = RecursiveCheckpointAdjoint (max relative gap, all dt, solvers)",
                "THEORY §7",
                direct_gap,
                1e-10,
            )
        )
        rows.append(
            bound_row(
                GROUP,
                "explicit RK co-state on the time-augmented ODE (rk_ode_gradient) = backprop "
                "through diffrax (RecursiveCheckpointAdjoint)",
                "Thm 8.4",
                cross_gap,
                1e-12,
            )
        )
    return rows


@register(GROUP)
def continuous_limit(quick: bool) -> list[Row]:
    """ResNet → neural ODE at O(h); H = p · f conserved along autonomous Hamiltonian flow."""
    theta, x0, T = _smooth_problem()
    p0, _ = _vectors(12)
    ts = jnp.linspace(0.0, T, 5)

    @jax.jit
    def flow(theta):
        xs, ps = hamiltonian_flow(_tanh_block, theta, x0, p0, ts, path="linear")
        energy = jax.vmap(
            lambda t, x, p: hamiltonian(_tanh_block, x, p, theta_path(theta, t, T, "linear"))
        )(ts, xs, ps)
        return xs, ps, energy

    # (1) ResNet with θ_l = θ(l h), h = T/L, against the Tsit5 solve (the x-part of the flow).
    x_ref = flow(theta)[0][-1]
    depths = (16, 32, 64) if quick else (8, 16, 32, 64, 128, 256, 512)
    errors = []
    for depth in depths:

        @jax.jit
        def resnet(theta, depth=depth):
            t_l = jnp.arange(depth, dtype=x0.dtype) * (T / depth)
            theta_l = jax.vmap(lambda t: theta_path(theta, t, T, "linear"))(t_l)
            return euler_forward(_tanh_block, theta_l, x0, T / depth)[-1]

        errors.append(float(np.linalg.norm(np.asarray(resnet(theta) - x_ref))))
    hs = [T / depth for depth in depths]

    # (2) H along the flow: autonomous (two equal nodes) vs θ varying in t (control).
    constant = jax.tree_util.tree_map(lambda a: jnp.stack([a[0], a[0]]), theta)
    _, ps, energy = flow(constant)
    _, _, energy_t = flow(theta)
    jac = jax.jacfwd(_tanh_block)(x0, jax.tree_util.tree_map(lambda a: a[0], theta))
    return [
        interval_row(
            GROUP,
            "ResNet x_{l+1} = x_l + h f(x_l, θ(l h)) → neural ODE (Tsit5, rtol 1e-10): "
            "fitted order of |x_L − x(T)| in h",
            "Prop 5.2",
            _slope(hs, errors),
            0.7,
            1.3,
            h=hs,
            errors=errors,
        ),
        bound_row(
            GROUP,
            "H = p · f(x) conserved along ẋ = ∂_pH, ṗ = −∂_xH (autonomous f; relative drift; "
            "non-autonomous control drifts by drift_time_dependent)",
            "THEORY §6–§7",
            _spread(energy),
            1e-7,
            drift_time_dependent=_spread(energy_t),
            jacobian_norm=float(np.linalg.norm(np.asarray(jac))),
            costate_change=float(np.linalg.norm(np.asarray(ps[-1] - p0)) / np.linalg.norm(p0)),
        ),
    ]
