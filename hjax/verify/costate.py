r"""Checks for characteristics and co-states: backprop = Pontryagin (THEORY §6–§7).

Group ``costate``. Each row measures a claim of THEORY §7 against a computation that
does not share the library's formula, and every identity comes with a *control* row that
must fail the identity's tolerance — so a check that has silently become insensitive
fails:

* the co-state recursions (:func:`hjax.costate.rk_costate_backward`, Euler and explicit
  RK tableaus) against ``jax.grad`` through a forward scan written here from the explicit
  step formulas (states perturbed by ``δ_l`` so that ``∂Φ/∂δ_l = ∂Φ/∂x_l``);
* the bilinear invariant ``p_l · δx_l`` from Jacobian–vector products; control: a wrong
  adjoint (Jacobians at ``x_{l+1}`` instead of ``x_l``) must drift by at least
  :data:`WRONG_ADJOINT_MIN_DRIFT`;
* diffrax's continuous adjoint (``BacksolveAdjoint``) against the exact discrete gradient
  of the same solver and step (:func:`hjax.costate.rk_ode_gradient`, itself checked
  against diffrax's ``RecursiveCheckpointAdjoint``/``DirectAdjoint`` in full mode), the
  order fitted over the tail of the step sizes (:func:`hjax.loglog_fit`);
* the ResNet against a tight Tsit5 solve of its neural ODE (fitted order); ``H = p · f``
  conserved along the diffrax solution of Hamilton's equations for an autonomous field;
  control: with ``θ`` varying in ``t`` it must drift by at least
  :data:`NON_AUTONOMOUS_MIN_DRIFT`.
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..costate import (
    EULER,
    HEUN,
    MIDPOINT,
    RK4,
    adjoint_gaps,
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
from ..rates import loglog_fit
from ..semiring import lse
from ._core import Row, bound_row, rate_row, register

GROUP = "costate"
_D, _M = 4, 6  # state dimension, hidden width of the test blocks

#: The exact co-state conserves p_l · δx_l to round-off (≤ 1e-12 relative); a wrong adjoint
#: (Jacobians at x_{l+1}) must drift by at least this much, 10⁶ × that tolerance (it
#: drifts by O(h): ~1e-2 at the depths used), or the invariant has lost its power.
WRONG_ADJOINT_MIN_DRIFT = 1e-6
#: H = p · f is conserved along an autonomous flow to ≤ 1e-7 (the solver's tolerance); with
#: θ varying in t, dH/dt = p · ∂_t f must move H by at least this much (10⁴ × that).
NON_AUTONOMOUS_MIN_DRIFT = 1e-3


def _at_least_row(
    key: str, claim: str, theorem: str, measured: float, minimum: float, **details
) -> Row:
    """A control row: passes when ``measured >= minimum`` (NaN fails)."""
    measured = float(measured)
    return Row(
        GROUP, key, claim, theorem, measured, f"≥ {minimum:.0e}", measured >= minimum, details
    )


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


def _euler(f, x, th, h):
    return x + h * f(x, th)


def _midpoint(f, x, th, h):
    return x + h * f(x + 0.5 * h * f(x, th), th)


def _heun(f, x, th, h):
    k1 = f(x, th)
    return x + 0.5 * h * (k1 + f(x + h * k1, th))


def _rk4(f, x, th, h):
    k1 = f(x, th)
    k2 = f(x + 0.5 * h * k1, th)
    k3 = f(x + 0.5 * h * k2, th)
    k4 = f(x + h * k3, th)
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


#: name -> (the step typed out, not from a Butcher tableau; the library's tableau).
_METHODS = {
    "euler": (_euler, EULER),
    "midpoint": (_midpoint, MIDPOINT),
    "heun": (_heun, HEUN),
    "rk4": (_rk4, RK4),
}


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


def _wrong_costate(f, theta, xs, p_final, h):
    """The Euler co-state with the Jacobians taken at x_{l+1} instead of x_l (a control)."""

    def body(p, inputs):
        th, x_next = inputs
        p_prev = p + h * jax.vjp(lambda x: f(x, th), x_next)[1](p)[0]
        return p_prev, p_prev

    _, ps = jax.lax.scan(body, p_final, (theta, xs[1:]), reverse=True)
    return jnp.concatenate([ps, p_final[None]])


def _case(kind: str, method: str, control: bool):
    """Library co-state, reference, invariant — and, if ``control``, the wrong adjoint's
    invariant (Euler only)."""
    f = _FIELDS[kind]
    step, tableau = _METHODS[method]

    def run(theta, x0, dx0, h):
        reference = _reference(f, step, theta, x0, h)
        xs = rk_forward(f, theta, x0, h, tableau)
        ps, grads = rk_costate_backward(f, theta, xs, jax.grad(_loss)(xs[-1]), h, tableau)
        inv = rk_bilinear_invariant(f, theta, xs, ps, dx0, h, tableau)
        wrong = None
        if control:
            wrong_ps = _wrong_costate(f, theta, xs, ps[-1], h)
            wrong = rk_bilinear_invariant(f, theta, xs, wrong_ps, dx0, h, tableau)
        return grads, ps, reference, inv, wrong

    return run


def _measure(cases: tuple[tuple[str, str], ...], depth: int, seed: int) -> list[tuple]:
    """Run every (field, method) case at one depth in a single compilation; the first
    Euler case also runs the wrong-adjoint control."""
    x0, dx0 = _vectors(seed)
    thetas = [_theta(kind, depth, seed=seed) for kind, _ in cases]
    runs = [
        _case(kind, method, i == 0 and method == "euler") for i, (kind, method) in enumerate(cases)
    ]
    h = 0.7 if depth == 1 else 2.0 / depth
    together = jax.jit(
        lambda thetas, h: [run(th, x0, dx0, h) for run, th in zip(runs, thetas, strict=True)]
    )
    return together(thetas, h)


def _rel(a, b) -> float:
    pairs = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    return max(
        float(np.linalg.norm(np.asarray(u) - np.asarray(v)) / np.linalg.norm(np.asarray(v)))
        for u, v in pairs
    )


def _spread(v) -> float:
    v = np.asarray(v)
    return float(np.max(np.abs(v - v[0])) / np.max(np.abs(v)))


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------


@register(GROUP)
def pmp_identity(quick: bool) -> list[Row]:
    """Discrete co-state = backprop at finite h; p_l · δx_l constant (Thm 8.4)."""
    depths = (64,) if quick else (1, 7, 64, 512)
    err = drift = 0.0
    wrong_drift = np.inf
    for depth in depths:
        for grads, ps, (g_theta, g_states), inv, inv_wrong in _measure(
            (("tanh", "euler"), ("lse", "euler")), depth, seed=depth
        ):
            err = max(err, _rel(grads, g_theta), _rel(ps, g_states))
            drift = max(drift, _spread(inv))
            if depth > 1 and inv_wrong is not None:  # one layer: a single step's drift
                wrong_drift = min(wrong_drift, _spread(inv_wrong))
    details = {"depths": list(depths), "fields": ["tanh MLP", "LSE layer (eps trained)"]}
    return [
        bound_row(
            GROUP,
            "costate.pmp.grad",
            "co-state p_l = p_{l+1} + h ∂_xfᵀp_{l+1}, ∂Φ/∂θ_l = h ∂_θfᵀp_{l+1} equal jax.grad "
            "(max relative error over θ-gradients and co-states)",
            "Thm 8.4",
            err,
            1e-12,
            **details,
        ),
        bound_row(
            GROUP,
            "costate.pmp.invariant",
            "bilinear invariant p_l · δx_l of forward Euler + exact co-state constant in l "
            "(relative drift)",
            "Thm 8.4; Sanz-Serna 2016",
            drift,
            1e-12,
            **details,
        ),
        _at_least_row(
            "costate.pmp.wrong_adjoint",
            "control: a wrong adjoint (Jacobians at x_{l+1} instead of x_l; tanh MLP) breaks the "
            f"bilinear invariant, relative drift ≥ {WRONG_ADJOINT_MIN_DRIFT:.0e} (smallest over "
            "depths > 1)",
            "Thm 8.4; Sanz-Serna 2016",
            wrong_drift,
            WRONG_ADJOINT_MIN_DRIFT,
            **details,
        ),
    ]


@register(GROUP)
def rk_adjoint(quick: bool) -> list[Row]:
    """Conjugate partitioned RK adjoint of explicit RK blocks = backprop; invariant kept."""
    depths = (7,) if quick else (1, 7, 64, 256)
    # quick: midpoint (b_1 = 0, the ν form) and RK4 (four stages); Heun in full mode
    methods = ("midpoint", "rk4") if quick else ("midpoint", "heun", "rk4")
    err = drift = 0.0
    for depth in depths:
        cases = tuple(("tanh", method) for method in methods)
        for grads, ps, (g_theta, g_states), inv, _ in _measure(cases, depth, seed=depth + 1):
            err = max(err, _rel(grads, g_theta), _rel(ps, g_states))
            drift = max(drift, _spread(inv))
    details = {"methods": list(methods), "depths": list(depths)}
    return [
        bound_row(
            GROUP,
            "costate.rk.grad",
            "RK adjoint by stage-wise vjps (ν_i = b_i p⁺ + h Σ_j a_ji ℓ_j) equals jax.grad of "
            "the unrolled RK network (max relative error)",
            "Thm 8.4; Hager 2000",
            err,
            1e-12,
            **details,
        ),
        bound_row(
            GROUP,
            "costate.rk.invariant",
            "RK + conjugate adjoint: p_l · δx_l constant in l (relative drift)",
            "Thm 8.4; Sanz-Serna 2016",
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


#: name -> (diffrax solver, the same method as a tableau, the backsolve gap's order).
_SOLVERS = {
    "euler": (diffrax.Euler(), EULER, 1.0),
    "midpoint": (diffrax.Midpoint(), MIDPOINT, 2.0),
    "heun": (diffrax.Heun(), HEUN, 3.0),
}


def _discrete_euler_gradient(theta, x0, T, n, dt, max_steps: int):
    """``jax.grad`` of ``n`` Euler steps of the neural ODE, ``θ`` read at ``t_k = k dt``.

    Written here, independently of the library: a scan of fixed length ``max_steps`` whose
    steps ``k ≥ n`` are the identity (masked), so ``n`` may be traced (one compilation for
    every step size). It is the discrete gradient diffrax's ``Euler`` +
    ``RecursiveCheckpointAdjoint`` computes (the full-mode row ``costate.rk.ode_cross``).
    """

    def phi(theta):
        def body(x, k):
            x_next = x + dt * _tanh_block(x, theta_path(theta, k * dt, T, "linear"))
            return jnp.where(k < n, x_next, x), None

        x, _ = jax.lax.scan(body, x0, jnp.arange(max_steps, dtype=x0.dtype))
        return _loss(x)

    return jax.grad(phi)(theta)


def _euler_backsolve_gaps(steps: tuple[int, ...]) -> np.ndarray:
    """‖g_backsolve − g_discrete‖ / ‖g_discrete‖ per number of Euler steps, one compilation."""
    theta, x0, T = _smooth_problem()
    solve = dict(
        adjoint=diffrax.BacksolveAdjoint(),
        path="linear",
        solver=diffrax.Euler(),
        stepsize_controller=diffrax.ConstantStepSize(),
        max_steps=max(steps),
    )

    @jax.jit
    def gaps(theta, ns):
        def one(n):
            dt = T / n
            _, g_back = ode_gradient(_tanh_block, theta, x0, T, _loss, dt0=dt, **solve)
            g_discrete = _discrete_euler_gradient(theta, x0, T, n, dt, max(steps))
            flat_back, _ = ravel_pytree(g_back)
            flat_discrete, _ = ravel_pytree(g_discrete)
            return jnp.linalg.norm(flat_back - flat_discrete) / jnp.linalg.norm(flat_discrete)

        return jax.lax.map(one, ns)

    return np.asarray(gaps(theta, jnp.asarray(steps, dtype=x0.dtype)))


@register(GROUP)
def adjoint_gap_orders(quick: bool) -> list[Row]:
    """BacksolveAdjoint vs backprop through the solver: gap = O(dt^order) (THEORY §7)."""
    # quick: Euler only (each diffrax solver costs seconds of XLA compilation on a CPU)
    steps = (16, 32, 64) if quick else (8, 16, 32, 64, 128, 256)
    tail = 3 if quick else 4
    names = ("euler",) if quick else ("euler", "midpoint", "heun")
    rows = []
    theta, x0, T = _smooth_problem()
    direct_gap = cross_gap = 0.0
    hs = [T / n for n in steps]
    for name in names:
        solver, tableau, order = _SOLVERS[name]
        if quick:
            gaps = _euler_backsolve_gaps(steps)
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
            solve = dict(
                path="linear",
                solver=solver,
                stepsize_controller=diffrax.ConstantStepSize(),
                dt0=T / steps[1],
                max_steps=steps[1],
            )
            _, g_rec = ode_gradient(_tanh_block, theta, x0, T, _loss, **solve)
            _, g_rk = rk_ode_gradient(
                _tanh_block, theta, x0, T, _loss, steps[1], tableau, path="linear"
            )
            cross_gap = max(cross_gap, _rel(g_rk, g_rec))
        claim = (
            f"{name}: continuous adjoint (BacksolveAdjoint) − backprop gap ∝ dt^q, q fitted "
            f"on the last {tail} step sizes"
        ) + (" (Heun's adjoint is Heun reversed: O(dt²) terms cancel, q = 3)" if order == 3 else "")
        rows.append(
            rate_row(
                GROUP,
                f"costate.gap.{name}",
                claim,
                "THEORY §7",
                loglog_fit(hs, gaps, tail=tail),
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
                "costate.gap.direct",
                "DirectAdjoint = RecursiveCheckpointAdjoint (max relative gap, all dt, solvers)",
                "THEORY §7",
                direct_gap,
                1e-10,
            )
        )
        rows.append(
            bound_row(
                GROUP,
                "costate.rk.ode_cross",
                "explicit RK co-state on the time-augmented ODE (rk_ode_gradient) = backprop "
                "through diffrax (RecursiveCheckpointAdjoint), Euler/midpoint/Heun",
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
    depths = (16, 32, 64) if quick else (8, 16, 32, 64, 128, 256, 512)
    tail = 3 if quick else 4
    # Autonomous: two equal nodes (θ(t) constant); the control varies θ in t.
    constant = {k: jnp.asarray(np.stack([v[0], v[0]])) for k, v in theta.items()}

    @jax.jit
    def flow(params):
        xs, ps = hamiltonian_flow(_tanh_block, params, x0, p0, ts, path="linear")
        energy = jax.vmap(
            lambda t, x, p: hamiltonian(_tanh_block, x, p, theta_path(params, t, T, "linear"))
        )(ts, xs, ps)
        return xs[-1], ps[-1], energy

    @jax.jit
    def resnets(theta):
        """x_L of the ResNets θ_l = θ(l h), h = T / L, for every depth in one scan: depth L
        is padded to max(depths) layers with W2 = b2 = 0 (f ≡ 0, identity layers)."""
        longest = max(depths)

        def layers(depth):
            t_l = jnp.arange(depth, dtype=x0.dtype) * (T / depth)
            theta_l = jax.vmap(lambda t: theta_path(theta, t, T, "linear"))(t_l)
            return {
                k: jnp.concatenate([v, jnp.zeros((longest - depth, *v.shape[1:]), v.dtype)])
                for k, v in theta_l.items()
            }

        stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *map(layers, depths))
        h = jnp.asarray([T / depth for depth in depths], dtype=x0.dtype)
        return jax.vmap(lambda th, h: euler_forward(_tanh_block, th, x0, h)[-1])(stacked, h)

    x_T, _, energy_t = flow(theta)
    _, p_final, energy = flow(constant)
    errors = np.linalg.norm(np.asarray(resnets(theta)) - np.asarray(x_T), axis=1)
    energy, energy_t, p_final = np.asarray(energy), np.asarray(energy_t), np.asarray(p_final)
    hs = [T / depth for depth in depths]
    th0 = {k: np.asarray(v[0]) for k, v in theta.items()}  # ∂_x f at x0 (NumPy, closed form)
    jac = th0["W2"] @ np.diag(1 - np.tanh(th0["W1"] @ np.asarray(x0) + th0["b1"]) ** 2) @ th0["W1"]
    return [
        rate_row(
            GROUP,
            "costate.resnet_ode.order",
            "ResNet x_{l+1} = x_l + h f(x_l, θ(l h)) → neural ODE (Tsit5, rtol 1e-10): "
            f"order of |x_L − x(T)| in h, fitted on the last {tail} depths",
            "Prop 5.2",
            loglog_fit(hs, errors, tail=tail),
            0.7,
            1.3,
            h=hs,
            errors=errors.tolist(),
        ),
        bound_row(
            GROUP,
            "costate.hflow.conserved",
            "H = p · f(x) conserved along ẋ = ∂_pH, ṗ = −∂_xH for an autonomous f "
            "(relative drift; Tsit5, rtol 1e-10)",
            "THEORY §6–§7",
            _spread(energy),
            1e-7,
            jacobian_norm=float(np.linalg.norm(jac)),
            costate_change=float(np.linalg.norm(p_final - np.asarray(p0)) / np.linalg.norm(p0)),
        ),
        _at_least_row(
            "costate.hflow.nonautonomous",
            "control: with θ(t) varying in t, dH/dt = p · ∂_t f ≠ 0 moves H, relative drift ≥ "
            f"{NON_AUTONOMOUS_MIN_DRIFT:.0e}",
            "THEORY §6–§7",
            _spread(energy_t),
            NON_AUTONOMOUS_MIN_DRIFT,
        ),
    ]
