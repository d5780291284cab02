r"""The heat semigroup: Hopf–Cole and Hopf–Lax solutions (THEORY.md §2, §4).

Viscous HJ equation with Hamiltonian ``H(p) = ½ pᵀAp`` and viscosity eps:

.. math::

    \partial_t u + \tfrac12 \nabla u^\top A \nabla u = \tfrac{\varepsilon}{2}\nabla\cdot(A\nabla u),
    \qquad u(\cdot, 0) = g .

For the initial-data measure ``μ = Σ_j w_j δ_{y_j}`` (Thm 4.1, Thm 4.4):

.. math::

    u^N_\varepsilon(x, t) = -\varepsilon \log \sum_j w_j
        \exp\!\Big(-\frac{c_t(x, y_j) + g_j}{\varepsilon}\Big),
    \qquad c_t(x, y) = \frac{(x-y)^\top A^{-1}(x-y)}{2t},

and at eps = 0 the Hopf–Lax formula ``u^N_0 = min_j [c_t(x, y_j) + g_j]`` (Thm 5.1).
Its spatial derivatives are Gibbs moments of the atoms (THEORY §3),
``∇u = A⁻¹(x − E_π[y])/t`` and ``∇²u = A⁻¹/t − A⁻¹ Cov_π(y) A⁻¹/(eps t²)``
(:func:`hopf_cole_grad`, :func:`hopf_cole_hessian`).
"""

import jax.numpy as jnp

from . import _validate
from ._types import Array, ArrayLike, Float, ScalarLike
from .semiring import gibbs, lse

__all__ = [
    "heat_normalization",
    "hopf_cole",
    "hopf_cole_grad",
    "hopf_cole_hessian",
    "hopf_lax",
    "transport_cost",
]


def _metric(A: ArrayLike | None, d: int, dtype) -> tuple[Array | None, Array]:
    """(A⁻¹ or None for the identity, log det A), validated."""
    if A is None:
        return None, jnp.zeros((), dtype)
    A = _validate.positive_definite("A", jnp.asarray(A, dtype=dtype), d)
    _, logdet = jnp.linalg.slogdet(A)
    return jnp.linalg.inv(A), logdet


def _cost(x: Array, y: Array, t: Array, A_inv: Array | None) -> Array:
    diff = x[..., None, :] - y  # (*batch, N, d)
    if A_inv is None:
        quad = jnp.sum(diff * diff, axis=-1)
    else:
        quad = jnp.einsum("...i,ij,...j->...", diff, A_inv, diff)
    return quad / (2 * t)


def _prepare(x, y, g, t, A, log_w=None):
    """Cast to one float dtype and validate shapes, t > 0 and A ≻ 0 (``g=None``: no g)."""
    arrays = [a for a in (x, y, g, log_w) if a is not None]
    dtype = _validate.float_dtype(*arrays)
    x = jnp.asarray(x, dtype)
    y = jnp.asarray(y, dtype)
    if x.ndim < 1:
        raise ValueError(f"`x` must have shape (*batch, d); got a scalar {x.shape}.")
    if y.ndim != 2:
        raise ValueError(f"`y` must have shape (N, d); got {y.shape}.")
    _validate.same_last_dim("x", x, "y", y)
    if g is not None:
        g = jnp.asarray(g, dtype)
        if g.shape != y.shape[:1]:
            raise ValueError(
                f"`g` must have shape (N,) = ({y.shape[0]},) to match `y`; got {g.shape}."
            )
    if log_w is not None:
        log_w = jnp.asarray(log_w, dtype)
        if log_w.shape != y.shape[:1]:
            raise ValueError(
                f"`log_w` must have shape (N,) = ({y.shape[0]},) to match `y`; got {log_w.shape}."
            )
    t = _validate.positive("t", _validate.as_float_scalar("t", t, dtype))
    A_inv, logdet_A = _metric(A, y.shape[-1], dtype)
    return x, y, g, t, A_inv, logdet_A, log_w, dtype


def transport_cost(
    x: Float[ArrayLike, "*batch d"],
    y: Float[ArrayLike, "N d"],
    t: ScalarLike,
    *,
    A: Float[ArrayLike, "d d"] | None = None,
) -> Float[Array, "*batch N"]:
    r"""``c_t(x, y_j) = (x − y_j)ᵀ A⁻¹ (x − y_j) / (2t)``, the Lagrangian action (THEORY §2).

    The action of the straight characteristic from ``y_j`` to ``x`` in time t for the
    Lagrangian ``L(q) = ½ qᵀA⁻¹q``, the Legendre dual of ``H(p) = ½ pᵀAp``.

    Args:
        x: query points ``(*batch, d)``.
        y: atoms ``(N, d)``.
        t: time ``> 0``.
        A: symmetric positive-definite metric ``(d, d)`` (default identity).

    Returns:
        Costs of shape ``(*batch, N)``.

    Example:
        >>> import jax.numpy as jnp
        >>> transport_cost(jnp.array([1.0, 0.0]), jnp.zeros((1, 2)), 0.5).tolist()
        [1.0]
    """
    x, y, _, t, A_inv, _, _, _ = _prepare(x, y, None, t, A)
    return _cost(x, y, t, A_inv)


def heat_normalization(
    d: int, t: ScalarLike, eps: ScalarLike, *, A: Float[ArrayLike, "d d"] | None = None
) -> Float[Array, ""]:
    r"""``(eps d/2) log(2π eps t) + (eps/2) log det A``: the heat-kernel prefactor's term.

    Added to ``u^N_eps`` it turns the counting-measure solution into one that solves the
    viscous HJ equation exactly (THEORY §2): it is ``−eps log`` of the Gaussian heat-kernel
    prefactor ``(2π eps t)^{−d/2} det(A)^{−1/2}``. It is 0 at eps = 0.

    Args:
        d: space dimension.
        t: time ``> 0``.
        eps: viscosity ``>= 0``.
        A: symmetric positive-definite metric ``(d, d)`` (default identity).

    Example:
        >>> round(float(heat_normalization(1, 1.0, 1.0)), 6)  # ½ log(2π)
        0.918939
    """
    dtype = _validate.float_dtype(t, eps)
    t = _validate.positive("t", _validate.as_float_scalar("t", t, dtype))
    eps = _validate.nonnegative("eps", _validate.as_float_scalar("eps", eps, dtype))
    _, logdet_A = _metric(A, d, dtype)
    return _normalization(d, t, eps, logdet_A)


def _normalization(d: int, t: Array, eps: Array, logdet_A: Array) -> Array:
    safe_eps = jnp.where(eps > 0, eps, jnp.ones_like(eps))
    term = safe_eps * (d / 2 * jnp.log(2 * jnp.pi * safe_eps * t) + logdet_A / 2)
    return jnp.where(eps > 0, term, jnp.zeros_like(term))


def hopf_cole(
    x: Float[ArrayLike, "*batch d"],
    y: Float[ArrayLike, "N d"],
    g: Float[ArrayLike, " N"],
    t: ScalarLike,
    eps: ScalarLike,
    *,
    log_w: Float[ArrayLike, " N"] | None = None,
    A: Float[ArrayLike, "d d"] | None = None,
    normalized: bool = False,
) -> Float[Array, "*batch"]:
    r"""Hopf–Cole solution of the viscous HJ equation from a discrete measure (Thm 4.1, 4.4).

    .. math::

        u^N_\varepsilon(x, t) = -\varepsilon\log\sum_j w_j
            \exp\!\Big(-\frac{c_t(x,y_j) + g_j}{\varepsilon}\Big)
        \;[+\; \tfrac{\varepsilon d}{2}\log(2\pi\varepsilon t) + \tfrac{\varepsilon}{2}\log\det A]

    The bracket is added when ``normalized=True``; then ``u`` solves
    ``u_t + ½∇uᵀA∇u = (eps/2)∇·(A∇u)`` exactly, while without it the residual is
    ``−eps d/(2t)``. At eps = 0 this is exactly :func:`hopf_lax` over the active atoms.

    Args:
        x: query points ``(*batch, d)``.
        y: atoms (support points) ``(N, d)``.
        g: initial values ``g(y_j)``, ``(N,)``.
        t: time ``> 0``.
        eps: viscosity ``>= 0`` (traced: sweeps compile once).
        log_w: log-weights of the atoms (default 0: counting measure); ``-inf`` masks.
        A: symmetric positive-definite metric ``(d, d)`` (default identity).
        normalized: add the Gaussian heat-kernel normalization.

    Returns:
        ``u(x, t)`` of shape ``(*batch,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> y = jnp.array([[0.0], [1.0]]); g = jnp.array([0.0, -1.0])
        >>> float(hopf_cole(jnp.array([0.5]), y, g, 1.0, 0.0))
        -0.875
    """
    x, y, g, t, A_inv, logdet_A, log_w, dtype = _prepare(x, y, g, t, A, log_w)
    eps = _validate.nonnegative("eps", _validate.as_float_scalar("eps", eps, dtype))
    u = -lse(-(_cost(x, y, t, A_inv) + g), eps, axis=-1, log_w=log_w)
    if normalized:
        u = u + _normalization(y.shape[-1], t, eps, logdet_A)
    return u


def hopf_lax(
    x: Float[ArrayLike, "*batch d"],
    y: Float[ArrayLike, "N d"],
    g: Float[ArrayLike, " N"],
    t: ScalarLike,
    *,
    A: Float[ArrayLike, "d d"] | None = None,
) -> Float[Array, "*batch"]:
    r"""Hopf–Lax (tropical, eps = 0) solution ``min_j [c_t(x, y_j) + g_j]`` (Thm 5.1).

    The inviscid limit of :func:`hopf_cole`: a max-plus inner product / min-plus
    convolution of g with the transport cost. Computed with a plain ``min``,
    independently of the log-sum-exp kernel.

    Example:
        >>> import jax.numpy as jnp
        >>> y = jnp.array([[0.0], [1.0]]); g = jnp.array([0.0, -1.0])
        >>> float(hopf_lax(jnp.array([0.5]), y, g, 1.0))
        -0.875
    """
    x, y, g, t, A_inv, _, _, _ = _prepare(x, y, g, t, A)
    return jnp.min(_cost(x, y, t, A_inv) + g, axis=-1)


def _gibbs_moments(x, y, g, t, eps, A, log_w):
    """Validated inputs, Gibbs weights π(x) over the atoms and the Gibbs mean E_π[y]."""
    x, y, g, t, A_inv, _, log_w, dtype = _prepare(x, y, g, t, A, log_w)
    eps = _validate.nonnegative("eps", _validate.as_float_scalar("eps", eps, dtype))
    pi = gibbs(-(_cost(x, y, t, A_inv) + g), eps, axis=-1, log_w=log_w)  # (*batch, N)
    mean = jnp.einsum("...n,nd->...d", pi, y)
    return x, y, t, eps, A_inv, pi, mean


def hopf_cole_grad(
    x: Float[ArrayLike, "*batch d"],
    y: Float[ArrayLike, "N d"],
    g: Float[ArrayLike, " N"],
    t: ScalarLike,
    eps: ScalarLike,
    *,
    log_w: Float[ArrayLike, " N"] | None = None,
    A: Float[ArrayLike, "d d"] | None = None,
) -> Float[Array, "*batch d"]:
    r"""Closed-form spatial gradient of the Hopf–Cole solution (THEORY §3, Thm 4.1).

    .. math::

        \nabla_x u^N_\varepsilon(x, t) = \frac{A^{-1}\,(x - \mathbb{E}_{\pi(x)}[y])}{t},
        \qquad \pi_j(x) = \mathrm{gibbs}\big(-(c_t(x, y) + g), \varepsilon;\ \log w\big)_j .

    The Gibbs mean ``E_π[y]`` is the "soft nearest atom"; the gradient is the same with or
    without the heat normalization (which does not depend on x). At eps = 0 the weights are
    uniform over the Hopf–Lax minimisers, so away from ties this is the gradient of
    :func:`hopf_lax`, ``A⁻¹(x − y_{j*})/t``; on a tie it is the average of the one-sided
    gradients (an element of the Clarke superdifferential of the min).

    Args:
        x: query points ``(*batch, d)``.
        y: atoms ``(N, d)``.
        g: initial values ``(N,)``.
        t: time ``> 0``.
        eps: viscosity ``>= 0`` (traced: sweeps compile once).
        log_w: log-weights ``(N,)``; ``-inf`` masks an atom.
        A: symmetric positive-definite metric ``(d, d)`` (default identity).

    Returns:
        ``∇_x u(x, t)`` of shape ``(*batch, d)``.

    Example:
        >>> import jax.numpy as jnp
        >>> y = jnp.array([[0.0], [1.0]]); g = jnp.array([0.0, -1.0])
        >>> hopf_cole_grad(jnp.array([0.5]), y, g, 1.0, 0.0).tolist()
        [-0.5]
    """
    x, _, t, _, A_inv, _, mean = _gibbs_moments(x, y, g, t, eps, A, log_w)
    r = x - mean
    if A_inv is not None:
        r = r @ A_inv  # A⁻¹ is symmetric
    return r / t


def hopf_cole_hessian(
    x: Float[ArrayLike, "*batch d"],
    y: Float[ArrayLike, "N d"],
    g: Float[ArrayLike, " N"],
    t: ScalarLike,
    eps: ScalarLike,
    *,
    log_w: Float[ArrayLike, " N"] | None = None,
    A: Float[ArrayLike, "d d"] | None = None,
) -> Float[Array, "*batch d d"]:
    r"""Closed-form spatial Hessian of the Hopf–Cole solution (THEORY §3, Prop E.5).

    .. math::

        \nabla_x^2 u^N_\varepsilon(x, t) = \frac{A^{-1}}{t}
            - \frac{A^{-1}\,\mathrm{Cov}_{\pi(x)}(y)\,A^{-1}}{\varepsilon\, t^2},

    with ``π(x)`` the Gibbs weights of :func:`hopf_cole_grad`. The covariance term is
    the "shock" curvature: it is largest where two atoms compete (Prop E.5), and the
    Laplacian ``tr(A ∇²u)`` it yields is what the viscosity ``(eps/2)∇·(A∇u)`` balances.

    At eps = 0 this returns ``A⁻¹/t``: the Hessian of the active quadratic piece, which is
    the true Hessian of :func:`hopf_lax` almost everywhere (off the shock set where two
    minimisers tie; there the eps → 0 limit blows up like ``1/eps``, and ``u_0`` has a kink).

    Args:
        x: query points ``(*batch, d)``.
        y: atoms ``(N, d)``.
        g: initial values ``(N,)``.
        t: time ``> 0``.
        eps: viscosity ``>= 0`` (traced: sweeps compile once).
        log_w: log-weights ``(N,)``; ``-inf`` masks an atom.
        A: symmetric positive-definite metric ``(d, d)`` (default identity).

    Returns:
        ``∇²_x u(x, t)`` of shape ``(*batch, d, d)``.

    Example:
        >>> import jax.numpy as jnp
        >>> y = jnp.array([[-1.0], [1.0]]); g = jnp.zeros(2)
        >>> hopf_cole_hessian(jnp.array([0.0]), y, g, 1.0, 0.5).tolist()  # 1 − 1/0.5
        [[-1.0]]
    """
    x, y, t, eps, A_inv, pi, mean = _gibbs_moments(x, y, g, t, eps, A, log_w)
    d = y.shape[-1]
    centred = y - mean[..., None, :]  # (*batch, N, d)
    cov = jnp.einsum("...n,...ni,...nj->...ij", pi, centred, centred)
    if A_inv is None:
        A_inv = jnp.eye(d, dtype=y.dtype)
    else:
        cov = A_inv @ cov @ A_inv
    safe_eps = jnp.where(eps > 0, eps, jnp.ones_like(eps))
    shock = jnp.where(eps > 0, cov / (safe_eps * t**2), jnp.zeros_like(cov))
    return A_inv / t - shock
