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
"""

import jax.numpy as jnp

from . import _validate
from ._types import Array, ArrayLike, Float, ScalarLike
from .semiring import lse

__all__ = ["heat_normalization", "hopf_cole", "hopf_lax", "transport_cost"]


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
    """Cast to one float dtype and validate shapes, t > 0 and A ≻ 0."""
    arrays = [x, y, g] + ([] if log_w is None else [log_w])
    dtype = _validate.float_dtype(*arrays)
    x = jnp.asarray(x, dtype)
    y = jnp.asarray(y, dtype)
    g = jnp.asarray(g, dtype)
    if x.ndim < 1:
        raise ValueError(f"`x` must have shape (*batch, d); got a scalar {x.shape}.")
    if y.ndim != 2:
        raise ValueError(f"`y` must have shape (N, d); got {y.shape}.")
    _validate.same_last_dim("x", x, "y", y)
    if g.shape != y.shape[:1]:
        raise ValueError(f"`g` must have shape (N,) = ({y.shape[0]},) to match `y`; got {g.shape}.")
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
    r"""``c_t(x, y_j) = (x − y_j)ᵀ A⁻¹ (x − y_j) / (2t)``, the Lagrangian action (THEORY §2)."""
    x, y, _, t, A_inv, _, _, _ = _prepare(x, y, jnp.zeros(jnp.shape(y)[:1]), t, A)
    return _cost(x, y, t, A_inv)


def heat_normalization(
    d: int, t: ScalarLike, eps: ScalarLike, *, A: Float[ArrayLike, "d d"] | None = None
) -> Float[Array, ""]:
    r"""``(eps d/2) log(2π eps t) + (eps/2) log det A``: the heat-kernel prefactor's term.

    Added to ``u^N_eps`` it turns the counting-measure solution into one that solves the
    viscous HJ equation exactly (THEORY §2). It is 0 at eps = 0.
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
