r"""Feynman–Kac Monte Carlo for the viscous HJ equation (THEORY §2, Prop E.4(i)).

Hopf–Cole turns the viscous HJ equation into the heat equation for ``w = exp(−u/eps)``,
whose solution is an expectation over Brownian motion at time ``eps t``:

.. math::

    u_\varepsilon(x, t) = -\varepsilon \log
        \mathbb{E}\Big[\exp\!\Big(-\frac{g(x + \sqrt{\varepsilon t}\, L Z)}{\varepsilon}\Big)\Big],
    \qquad Z \sim \mathcal{N}(0, I_d),\quad A = L L^\top .

This is an estimator of the continuous-data solution that uses no quadrature grid:
an independent reference for :func:`hjax.hopf_cole.hopf_cole` with a quadrature measure
(:mod:`hjax.measures`).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from . import _kernels, _validate
from ._types import Array, ArrayLike, Float, ScalarLike

__all__ = ["feynman_kac"]


def feynman_kac(
    g_fn: Callable[[Float[Array, " d"]], Float[ArrayLike, ""]],
    x: Float[ArrayLike, "*batch d"],
    t: ScalarLike,
    eps: ScalarLike,
    key: PRNGKeyArray,
    n_samples: int,
    *,
    A: Float[ArrayLike, "d d"] | None = None,
) -> tuple[Float[Array, "*batch"], Float[Array, "*batch"]]:
    r"""Monte Carlo Feynman–Kac estimate of ``u_eps(x, t)`` and its standard error (Prop E.4(i)).

    .. math::

        \hat u = -\varepsilon\Big(\operatorname{lse}_k\big(-g(x + \sqrt{\varepsilon t}\,L Z_k)
            / \varepsilon\big) - \log n\Big),
        \qquad
        \widehat{\mathrm{se}} = \varepsilon\,\frac{\mathrm{sd}(w)}{\sqrt n\ \overline{w}},

    with ``w_k = exp(−g(x + √(eps t) L Z_k)/eps)`` (the delta method for ``−eps log w̄``;
    the ratio is computed with ``w`` rescaled by its maximum, so nothing overflows however
    small eps is). ``A = L Lᵀ`` is the Hamiltonian metric (default ``I``, the setting of
    Prop E.4(i)); the Brownian increment then has covariance ``eps t A``.

    The same samples ``Z_k`` are used for every query point (common random numbers): the
    estimate is a smooth function of ``x``, and each point's error bar is valid on its own.
    The estimator is biased upward by about ``se²/(2 eps)`` (Jensen; negligible when the
    standard error is small relative to eps). Cost: ``n_samples`` evaluations of ``g`` per
    point, memory ``(*batch, n_samples, d)``.

    **Small eps.** The weights ``w_k`` have relative variance about
    ``exp(t·Lip(g)²/eps) − 1``: once ``t·Lip(g)²/eps`` is more than a few units the
    expectation is a large deviation, dominated by samples ``|Z| ≈ Lip(g)·√(t/eps)`` that
    a feasible ``n`` never draws. The estimate stays finite (log domain) but is biased
    upward by far more than the reported standard error. Use :func:`hjax.hopf_cole.hopf_cole`
    with a quadrature measure (:mod:`hjax.measures`) in that regime.

    Args:
        g_fn: initial datum, ``g_fn(y) -> scalar`` for one point ``y`` of shape ``(d,)``
            (unbatched; it is vmapped here).
        x: query points ``(*batch, d)``, finite.
        t: time ``> 0``.
        eps: viscosity ``> 0`` (the formula has no eps = 0 limit to sample; use
            :func:`hjax.hopf_cole.hopf_lax` there).
        key: PRNG key for the Gaussian samples.
        n_samples: number of samples ``n >= 2`` (static).
        A: symmetric positive-definite metric ``(d, d)`` (default identity).

    Returns:
        ``(u, stderr)``, each of shape ``(*batch,)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> g = lambda y: jnp.sum(y)  # g(y) = y: u(x, t) = x − t/2 exactly, for every eps
        >>> u, se = feynman_kac(g, jnp.array([1.0]), 1.0, 0.5, jax.random.key(0), 4096)
        >>> bool(abs(u - 0.5) < 4 * se)
        True
    """
    n_samples = _validate.integer("n_samples", n_samples, minimum=2)
    dtype = _validate.real_dtype(x=x)
    x = jnp.asarray(x, dtype)
    if x.ndim < 1:
        raise ValueError(f"`x` must have shape (*batch, d); got a scalar {x.shape}.")
    x = _validate.finite("x", x)
    d = x.shape[-1]
    t = _validate.positive_scalar("t", t, dtype)
    eps = _validate.positive_scalar("eps", eps, dtype)
    chol, _ = _kernels.metric(_validate.metric("A", A, d, dtype), dtype)
    out = jax.eval_shape(g_fn, jax.ShapeDtypeStruct((d,), dtype))
    if getattr(out, "shape", None) != ():
        raise ValueError(f"`g_fn` must map one point of shape ({d},) to a scalar; got {out}.")
    z = jax.random.normal(key, (n_samples, d), dtype=dtype)
    if chol is not None:
        z = z @ chol.T  # covariance L Lᵀ = A
    points = x[..., None, :] + jnp.sqrt(eps * t) * z  # (*batch, n, d)
    g_vals = jax.vmap(g_fn)(points.reshape(-1, d))
    a = -jnp.asarray(g_vals, dtype).reshape(points.shape[:-1]) / eps  # log w_k
    m = jax.lax.stop_gradient(jnp.max(a, axis=-1, keepdims=True))
    w = jnp.exp(a - m)  # in (0, 1], max = 1
    mean_w = jnp.mean(w, axis=-1)
    u = -eps * (jnp.squeeze(m, axis=-1) + jnp.log(mean_w))
    sd_w = jnp.std(w, axis=-1, ddof=1)
    stderr = eps * sd_w / (jnp.sqrt(jnp.asarray(n_samples, dtype)) * mean_w)
    return u, stderr
