r"""Robustness and the other §8 consequences of the Hopf–Cole reading, as computable quantities.

For an LSE layer ``f(x) = lse(Wx + b, eps)`` (THEORY §3, §8):

* :func:`certified_radius` — the radius within which the decision ``sign(f(x) − θ)`` cannot
  change, provably at least the paper's eq. 15 (:func:`paper_certified_radius`, Cor 8.2).
* :func:`poisoning_shift` — the output shift caused by inserting one atom (Prop E.3, eq. 30).
* :func:`lse_layer_ntk` — the empirical neural tangent kernel (Prop D.3).
* :func:`lse_layer_bias_hessian` — ``∇²_b f = (diag π − ππᵀ)/eps`` (Prop D.2).

The hallucination bound of Prop 8.5 is :func:`hjax.attention_sink_bound` applied to the
logits ``Wx + b`` (the same dominant-atom inequality, one place for it).

Inputs follow :mod:`hjax.layers`: finite ``x``, ``W``; ``b`` finite or ``-inf`` (masked);
``eps >= 0`` a traced-friendly scalar; bad input raises ``ValueError`` naming the argument.
"""

import functools

import jax
import jax.numpy as jnp

from . import _kernels, _validate
from ._types import Array, ArrayLike, Float, ScalarLike

__all__ = [
    "attack_decision",
    "certified_radius",
    "lse_layer_bias_hessian",
    "lse_layer_ntk",
    "paper_certified_radius",
    "poisoning_shift",
]

#: Bisection steps of the per-atom certificate: the bracket shrinks by 2^-64, below the
#: float64 resolution of any radius (the returned end is always the certified one).
_BISECTION_STEPS = 64


def _layer(x, W, b, eps, **extra):
    """Validated ``(x, W, b, eps, dtype)`` (the entry policy of :mod:`hjax.layers`)."""
    dtype = _validate.real_dtype(x=x, W=W, b=b, **extra)
    W = _validate.atoms("W", W, dtype)
    b = _validate.per_atom("b", b, "W", W, masked=True)
    x = _validate.queries("x", x, "W", W)
    return x, W, b, _validate.nonnegative_scalar("eps", eps, dtype), dtype


def _threshold(threshold, batch: tuple[int, ...], dtype) -> Array:
    threshold = jnp.asarray(threshold, dtype)
    try:
        threshold = jnp.broadcast_to(threshold, batch)
    except ValueError:
        raise ValueError(
            f"`threshold` must be a scalar or broadcast to the batch shape {batch} of `x`; "
            f"got shape {threshold.shape}."
        ) from None
    return _validate.finite("threshold", threshold)


def certified_radius(
    x: Float[ArrayLike, "*batch d"],
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    eps: ScalarLike,
    threshold: Float[ArrayLike, "..."] | float = 0.0,
) -> Float[Array, "*batch"]:
    r"""Certified radius of the decision ``sign(f(x) − θ)``, ``f = lse(Wx + b, eps)``.

    Returns ``r`` such that ``sign(f(x + δ) − θ) = sign(f(x) − θ)`` for every ``‖δ‖₂ < r``,
    at least the paper's eq. 15 radius (:func:`paper_certified_radius`), and exact in two
    cases (below). With ``τ = |f(x) − θ|``, ``g = ∇f(x) = E_π[W]``, ``R = max_j ‖W_j‖``,
    ``D = max_ij ‖W_i − W_j‖`` and ``H = D²/(4 eps)`` (Cor 8.2: ``‖∇²f‖₂ ≤ H``):

    **f(x) > θ (the output must fall).** ``f`` is convex (a log-sum-exp of affine maps), so
    ``f(x + δ) ≥ f(x) + g·δ ≥ f(x) − ‖g‖‖δ‖``:

    .. math:: r_+ = \tau / \|g\|  \quad (+\infty \text{ if } g = 0:\ x \text{ minimises } f).

    At eps = 0, g is the mean of the active rows, a subgradient: the bound still holds.

    **f(x) < θ (the output must rise).** The larger of two certificates:

    * curvature: along ``x + sδ̂`` the slope is at most ``min(R, ‖g‖ + H s)`` (a convex
      combination of rows has norm ≤ R; the slope grows at most at rate H), so
      ``f(x + δ) − f(x) ≤ q(‖δ‖) = ∫₀^{‖δ‖} min(R, ‖g‖ + H s) ds`` and ``r_c = q⁻¹(τ)``:
      ``2τ / (‖g‖ + √(‖g‖² + 2Hτ))`` while ``‖g‖ + H r_c ≤ R``, linear in R beyond.
      Since ``‖g‖ ≤ R`` and ``H ≤ R²/eps``, ``q(ρ) ≤ Rρ + R²ρ²/(2 eps)``, the right side
      of eq. 14: ``r_c`` is at least eq. 15.
    * per atom: ``W_j·δ ≤ ‖W_j‖‖δ‖`` and lse is increasing in each logit, so
      ``f(x + δ) ≤ F(‖δ‖) = lse(z + ‖W‖ ‖δ‖, eps)``, ``z = Wx + b``; ``r_a`` solves
      ``F(r_a) = θ`` (bisection, returning the end where ``F < θ``). At eps = 0 this is
      the exact radius ``min_j (θ − z_j)/‖W_j‖`` (the ball first touches a half-space
      ``z_j(x + δ) ≥ θ``).

    ``r_− = max(r_c, r_a)``. At ``f(x) = θ`` the radius is 0; a layer with ``W = 0`` is
    constant and never flips (``+∞``).

    Args:
        x: inputs ``(*batch, d)``.
        W: weights ``(N, d)``; b: biases ``(N,)``; eps: ``>= 0`` (traced-friendly).
        threshold: ``θ``, a scalar or one per input ``(*batch,)``.

    Returns:
        ``r`` of shape ``(*batch,)`` (``+inf`` where no perturbation can flip the sign).

    Example:
        >>> import jax.numpy as jnp
        >>> W, b = jnp.array([[1.0], [-1.0]]), jnp.zeros(2)
        >>> float(certified_radius(jnp.array([2.0]), W, b, 0.0, threshold=1.0))  # |x| > 1
        1.0
        >>> float(certified_radius(jnp.array([0.5]), W, b, 0.0, threshold=1.0))  # |x| < 1
        0.5
    """
    x, W, b, eps, _ = _layer(x, W, b, eps, threshold=threshold)
    return _certified_radius(x, W, b, eps, _threshold(threshold, x.shape[:-1], x.dtype))


@jax.jit
def _certified_radius(x, W, b, eps, theta):
    z = _kernels.affine_logits(x, W, b)
    f = _kernels.lse_last(z, eps)
    tau, above = jnp.abs(f - theta), f > theta
    inf = jnp.full_like(f, jnp.inf)
    g = jnp.linalg.norm(_kernels.gibbs_last(z, eps) @ W, axis=-1)
    norms = jnp.linalg.norm(W, axis=-1)
    R = jnp.max(norms)
    D2 = jnp.max(jnp.sum((W[:, None, :] - W[None, :, :]) ** 2, axis=-1))

    r_pos = jnp.where(g > 0, tau / jnp.where(g > 0, g, 1), inf)

    H = jnp.where(eps > 0, D2 / (4 * _kernels.safe(eps)), jnp.where(D2 > 0, jnp.inf, 0.0))

    # Curvature certificate: the slope bound min(R, ‖g‖ + H s) is quadratic in the
    # displacement until s* = (R − ‖g‖)/H, linear beyond (H = inf at eps = 0 unless every
    # row is the same, H = 0 then: s* = 0, resp. +inf).
    finite_H = jnp.isfinite(H)
    H0 = jnp.where(finite_H, H, 0)
    s_star = jnp.where(finite_H, jnp.where(H > 0, (R - g) / jnp.where(H > 0, H, 1), inf), 0)
    q_star = jnp.where(jnp.isfinite(s_star), g * s_star + H0 * s_star**2 / 2, inf)
    quadratic = 2 * tau / (g + jnp.sqrt(g**2 + 2 * H0 * tau))
    beyond = s_star + (tau - q_star) / jnp.where(R > 0, R, 1)
    linear = jnp.where(jnp.isfinite(q_star), beyond, jnp.zeros_like(beyond))
    r_curv = jnp.where(R > 0, jnp.where(tau <= q_star, quadratic, linear), inf)

    # Per-atom certificate: bisection of F(ρ) = lse(z + ρ‖W‖, eps) = θ on [0, hi].
    reach = (theta[..., None] - z) / jnp.where(norms > 0, norms, 1)
    hi = jnp.min(jnp.where(norms > 0, reach, jnp.inf), axis=-1)
    hi = jnp.where(above, 0.0, hi)  # unused on the other side; keep the loop finite

    def bisect(_, bracket):
        lo, up = bracket
        mid = (lo + up) / 2
        below = _kernels.lse_last(z + mid[..., None] * norms, eps) < theta
        return jnp.where(below, mid, lo), jnp.where(below, up, mid)

    finite_hi = jnp.where(jnp.isfinite(hi), hi, 0.0)
    lo, _ = jax.lax.fori_loop(0, _BISECTION_STEPS, bisect, (jnp.zeros_like(hi), finite_hi))
    r_atom = jnp.where(jnp.isfinite(hi), lo, inf)

    r_neg = jnp.maximum(r_curv, r_atom)
    return jnp.where(tau == 0, jnp.zeros_like(f), jnp.where(above, r_pos, r_neg))


def paper_certified_radius(
    x: Float[ArrayLike, "*batch d"],
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    eps: ScalarLike,
    threshold: Float[ArrayLike, "..."] | float = 0.0,
) -> Float[Array, "*batch"]:
    r"""The paper's certified radius (Cor 8.2, eq. 15) for ``sign(f(x) − θ)``.

    Eq. 14 bounds ``|f(x + δ) − f(x)| ≤ R‖δ‖ + R²‖δ‖²/(2 eps)`` (``‖∇f‖ ≤ R``,
    ``‖∇²f‖₂ ≤ R²/eps``, ``R = max_j ‖W_j‖``); the margin ``τ = |f(x) − θ|`` is safe while
    the right side stays below it:

    .. math:: r = \frac{\varepsilon}{R}\Big(\sqrt{1 + 2\tau/\varepsilon} - 1\Big).

    At eps = 0 the formula's limit is 0 (the curvature bound is infinite); ``+inf`` for
    ``W = 0``. :func:`certified_radius` is never smaller.

    Args:
        x: inputs ``(*batch, d)``; W: ``(N, d)``; b: ``(N,)``; eps: ``>= 0``.
        threshold: ``θ``, scalar or ``(*batch,)``.

    Returns:
        ``r`` of shape ``(*batch,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> W, b = jnp.array([[1.0], [-1.0]]), jnp.zeros(2)
        >>> theta = float(jnp.log(2.0)) + 4.0  # f(0) = log 2, margin τ = 4, R = eps = 1
        >>> round(float(paper_certified_radius(jnp.array([0.0]), W, b, 1.0, theta)), 6)
        2.0
    """
    x, W, b, eps, _ = _layer(x, W, b, eps, threshold=threshold)
    f = _kernels.lse_last(_kernels.affine_logits(x, W, b), eps)
    tau = jnp.abs(f - _threshold(threshold, x.shape[:-1], x.dtype))
    R = jnp.max(jnp.linalg.norm(W, axis=-1))
    safe = _kernels.safe(eps)
    # (eps/R)(√(1 + 2τ/eps) − 1) = 2τ / (R (1 + √(1 + 2τ/eps))), stable for τ ≪ eps.
    r = 2 * tau / (jnp.where(R > 0, R, 1) * (1 + jnp.sqrt(1 + 2 * tau / safe)))
    r = jnp.where(eps > 0, r, jnp.zeros_like(r))
    return jnp.where(R > 0, r, jnp.full_like(r, jnp.inf))


def attack_decision(
    x: Float[ArrayLike, "*batch d"],
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    eps: ScalarLike,
    radius: Float[ArrayLike, "..."] | float,
    threshold: Float[ArrayLike, "..."] | float = 0.0,
    *,
    steps: int = 100,
) -> Float[Array, "*batch d"]:
    r"""An adversarial point ``x + δ``, ``‖δ‖₂ <= radius``, pushing ``f`` towards ``θ``.

    The attack that tests :func:`certified_radius`: it returns the most adversarial point
    it visits (lowest ``f`` if ``f(x) > θ``, highest if ``f(x) < θ``; the decision flipped
    iff ``sign(f(x + δ) − θ)`` differs). ``f`` is convex, and both searches use it:

    * **raising f** (maximising a convex function on a ball: the maximum is on the sphere)
      — the conditional-gradient fixed point ``δ ← radius · ∇f(x + δ)/‖∇f(x + δ)‖``,
      started at ``radius · ∇f(x)/‖∇f(x)‖``; each step is an ascent step, since by
      convexity ``f(x + δ') ≥ f(x + δ) + ∇f(x + δ)·(δ' − δ) ≥ f(x + δ)`` for the maximiser
      δ' of the linear term.
    * **lowering f** (a convex problem) — Frank–Wolfe, ``δ ← δ + γ_k (s_k − δ)`` with
      ``s_k = −radius · ∇f/‖∇f‖`` and ``γ_k = 2/(k + 2)``, which converges to the minimum
      over the ball.

    A search, not a certificate: a flip it finds is real; a miss proves nothing.

    Args:
        x: inputs ``(*batch, d)``; W: ``(N, d)``; b: ``(N,)``; eps: ``>= 0``.
        radius: ``>= 0``, scalar or one per input (``+inf`` is not allowed).
        threshold: ``θ``, scalar or ``(*batch,)``.
        steps: iterations (static).

    Returns:
        The adversarial points ``(*batch, d)``.

    Example:
        >>> import jax.numpy as jnp
        >>> W, b = jnp.array([[1.0], [-1.0]]), jnp.zeros(2)
        >>> attack_decision(jnp.array([0.5]), W, b, 0.0, 0.25, threshold=1.0).tolist()
        [0.75]
    """
    x, W, b, eps, dtype = _layer(x, W, b, eps, radius=radius, threshold=threshold)
    steps = _validate.integer("steps", steps)
    radius = (
        jnp.broadcast_to(jnp.asarray(radius, dtype), x.shape[:-1])
        if jnp.ndim(radius) == 0
        else jnp.asarray(radius, dtype)
    )
    if radius.shape != x.shape[:-1]:
        raise ValueError(
            f"`radius` must be a scalar or have the batch shape {x.shape[:-1]} of `x`; "
            f"got {radius.shape}."
        )
    radius = _validate.nonnegative("radius", radius, finite=True)
    theta = _threshold(threshold, x.shape[:-1], dtype)
    return _attack(x, W, b, eps, radius, theta, steps=steps)


@functools.partial(jax.jit, static_argnames="steps")
def _attack(x, W, b, eps, radius, theta, *, steps):
    dtype = x.dtype
    f = _kernels.lse_last(_kernels.affine_logits(x, W, b), eps)
    sign = jnp.where(f > theta, -1.0, 1.0).astype(dtype)[..., None]  # direction of attack
    rho = radius[..., None]

    def direction(delta):
        g = _kernels.gibbs_last(_kernels.affine_logits(x + delta, W, b), eps) @ W
        norm = jnp.linalg.norm(g, axis=-1, keepdims=True)
        return sign * g / jnp.where(norm > 0, norm, 1)

    def value(delta):  # the attacked objective: higher is more adversarial
        return sign[..., 0] * _kernels.lse_last(_kernels.affine_logits(x + delta, W, b), eps)

    def step(k, carry):
        delta, best, best_value = carry
        s = rho * direction(delta)
        gamma = jnp.where(sign > 0, 1.0, 2.0 / (k + 2.0)).astype(dtype)
        delta = delta + gamma * (s - delta)
        v = value(delta)
        better = (v > best_value)[..., None]
        return delta, jnp.where(better, delta, best), jnp.maximum(v, best_value)

    start = rho * direction(jnp.zeros_like(x))
    carry = (start, start, value(start))
    _, best, _ = jax.lax.fori_loop(0, steps, step, carry)
    return x + best


def poisoning_shift(
    x: Float[ArrayLike, "*batch d"],
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    eps: ScalarLike,
    w_p: Float[ArrayLike, " d"],
    b_p: ScalarLike,
) -> Float[Array, "*batch"]:
    r"""Output shift from inserting a poisoned atom ``(w_p, b_p)`` (Prop E.3, eq. 30).

    With ``z_p = w_p·x + b_p`` and ``f = lse(Wx + b, eps)``, the identity
    ``lse([z, z_p]) = f + lse([0, z_p − f])`` gives

    .. math::

        f'(x) - f(x) = \mathrm{softplus}_\varepsilon(z_p - f)
            = \varepsilon \log\big(1 + e^{(z_p - f)/\varepsilon}\big)
            \in \big[\max(0, z_p - f),\ \max(0, z_p - f) + \varepsilon \log 2\big],

    (i) bounded damage, (ii) a shift above τ iff ``z_p − f > eps log(e^{τ/eps} − 1)``,
    (iii) for ``z_p < f`` at most ``eps e^{−(f − z_p)/eps}`` → 0 as eps → 0.

    Args:
        x: inputs ``(*batch, d)``; W: ``(N, d)``; b: ``(N,)``; eps: ``>= 0``.
        w_p: the poisoned atom's weights ``(d,)``.
        b_p: its bias (scalar).

    Returns:
        The shift ``(*batch,)`` (``>= 0``).

    Example:
        >>> import jax.numpy as jnp
        >>> float(poisoning_shift(jnp.array([1.0]), jnp.array([[1.0]]), jnp.zeros(1), 0.0,
        ...                       jnp.array([3.0]), 0.0))
        2.0
    """
    x, W, b, eps, dtype = _layer(x, W, b, eps, w_p=w_p, b_p=b_p)
    w_p = jnp.asarray(w_p, dtype)
    if w_p.shape != W.shape[1:]:
        raise ValueError(f"`w_p` must have shape (d,) = ({W.shape[1]},); got {w_p.shape}.")
    w_p = _validate.finite("w_p", w_p)
    b_p = _validate.finite("b_p", _validate.as_float_scalar("b_p", b_p, dtype))
    f = _kernels.lse_last(_kernels.affine_logits(x, W, b), eps)
    excess = x @ w_p + b_p - f
    return _kernels.lse_last(jnp.stack([jnp.zeros_like(excess), excess], axis=-1), eps)


def lse_layer_ntk(
    x: Float[ArrayLike, "n d"],
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    eps: ScalarLike,
    *,
    weights: bool = False,
) -> Float[Array, "n n"]:
    r"""Empirical neural tangent kernel of an LSE layer at the inputs ``x`` (Prop D.3).

    ``∂f/∂b_j = π_j(x)`` and ``∂f/∂W_j = π_j(x) x`` (Prop E.6), so the kernel
    ``K(x, x') = ⟨∂_θ f(x), ∂_θ f(x')⟩`` is, in closed form,

    .. math::

        K_b(x, x') = \pi(x)\cdot\pi(x'), \qquad
        K_{W,b}(x, x') = \pi(x)\cdot\pi(x')\,(1 + x\cdot x').

    Prop D.3: for distinct inputs and ``N >= n`` generic atoms, ``K_b`` is positive
    definite (full rank); for ``N < n`` its rank is at most N.

    Args:
        x: inputs ``(n, d)``.
        W: ``(N, d)``; b: ``(N,)``; eps: ``>= 0``.
        weights: also differentiate in W (the full-parameter kernel ``K_{W,b}``); default:
            the biases only (the fixed-support setting of Prop D.2–D.3).

    Returns:
        The Gram matrix ``(n, n)``, symmetric positive semi-definite.

    Example:
        >>> import jax.numpy as jnp
        >>> lse_layer_ntk(jnp.array([[5.0], [-5.0]]), jnp.array([[1.0], [-1.0]]),
        ...               jnp.zeros(2), 0.0).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    x, W, b, eps, _ = _layer(x, W, b, eps)
    if x.ndim != 2:
        raise ValueError(f"`x` must have shape (n, d); got {x.shape}.")
    pi = _kernels.gibbs_last(_kernels.affine_logits(x, W, b), eps)
    K = pi @ pi.T
    return K * (1 + x @ x.T) if weights else K


def lse_layer_bias_hessian(
    x: Float[ArrayLike, "*batch d"],
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    eps: ScalarLike,
) -> Float[Array, "*batch N N"]:
    r"""Hessian of the layer in its biases, ``∇²_b f = (diag π − ππᵀ)/eps`` (Prop D.2).

    ``f`` is convex in b (a log-sum-exp of functions affine in b): this matrix is ``1/eps``
    times the covariance of the one-hot atom indicator under π, positive semi-definite,
    with ``1`` (the all-ones direction) in its kernel. So for a convex non-decreasing loss
    ℓ, ``b ↦ ℓ(f(x; b))`` is convex (Prop D.2). At ``eps = 0`` the almost-everywhere
    Hessian 0 is returned (the max is piecewise affine in b).

    Args:
        x: inputs ``(*batch, d)``; W: ``(N, d)``; b: ``(N,)``; eps: ``>= 0``.

    Returns:
        ``∇²_b f`` of shape ``(*batch, N, N)``.

    Example:
        >>> import jax.numpy as jnp
        >>> lse_layer_bias_hessian(jnp.zeros(1), jnp.zeros((2, 1)), jnp.zeros(2),
        ...                        1.0).tolist()
        [[0.25, -0.25], [-0.25, 0.25]]
    """
    x, W, b, eps, _ = _layer(x, W, b, eps)
    pi = _kernels.gibbs_last(_kernels.affine_logits(x, W, b), eps)
    cov = jnp.einsum("...i,ij->...ij", pi, jnp.eye(W.shape[0], dtype=pi.dtype))
    cov = cov - pi[..., :, None] * pi[..., None, :]
    return jnp.where(eps > 0, cov / _kernels.safe(eps), jnp.zeros_like(cov))
