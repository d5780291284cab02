r"""The eps-deformed max-plus semiring (THEORY.md §0–§1, Thm 3.1, Remark 3.2).

Every kernel here takes ``eps`` as an array argument (never static: a sweep over eps
compiles once) and is exact at ``eps = 0``, the tropical limit:

.. math::

    \mathrm{lse}(z, \varepsilon) = \varepsilon \log \sum_j w_j e^{z_j/\varepsilon}
    \xrightarrow{\varepsilon \to 0} \max_{j : w_j > 0} z_j .

Atoms with log-weight ``-inf`` are masked: they contribute nothing, and all values and
gradients stay finite (the ``0 · inf`` trap of a naive ``where`` is avoided by custom
JVP rules that never form it). At ``eps = 0`` the gradient of :func:`lse` is the uniform
distribution over the argmax set, i.e. ``gibbs(z, 0)``, and its derivative in eps is the
entropy of the Gibbs weights (``log k`` for a k-fold tie, the one-sided limit).
"""

import jax
import jax.numpy as jnp

from . import _validate
from ._types import Array, ArrayLike, Float, ScalarLike

__all__ = [
    "gibbs",
    "lse",
    "maxplus_matmul",
    "softplus_eps",
    "tropical_add",
    "tropical_mul",
]


# --------------------------------------------------------------------------------------
# Core kernels on "tilted" logits s (masked entries are -inf), axis already last.
# --------------------------------------------------------------------------------------


def _safe(eps: Array) -> Array:
    """eps where eps > 0, else 1: the branch evaluated but discarded at eps = 0."""
    return jnp.where(eps > 0, eps, jnp.ones_like(eps))


def _nonzero(v: Array) -> Array:
    """1 where v == 0, else v (NaN stays NaN): a denominator for sums that may be empty."""
    return jnp.where(v == 0, jnp.ones_like(v), v)


def _mask(log_w: Array) -> tuple[Array, Array]:
    """(active, log_w with masked entries replaced by 0): never forms ``0 · (−inf)``.

    An atom is masked iff its log-weight is exactly ``-inf``; a NaN log-weight stays active,
    so the NaN reaches the result instead of silently removing the atom.
    """
    active = log_w != -jnp.inf
    return active, jnp.where(active, log_w, jnp.zeros_like(log_w))


def _shifted_max(s: Array) -> tuple[Array, Array]:
    """(max, finite max) over the last axis, keepdims. The finite one is 0 if all masked."""
    m = jnp.max(s, axis=-1, keepdims=True)
    return m, jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m))


@jax.custom_jvp
def _gibbs_last(s: Array, eps: Array) -> Array:
    m, m_fin = _shifted_max(s)
    e = jnp.exp((s - jax.lax.stop_gradient(m_fin)) / _safe(eps))
    soft = e / _nonzero(jnp.sum(e, axis=-1, keepdims=True))
    ties = ((s == m) & (s > -jnp.inf)).astype(s.dtype)
    hard = ties / _nonzero(jnp.sum(ties, axis=-1, keepdims=True))
    # Every atom masked (the zero measure): all weights 0, for every eps.
    return jnp.where(eps > 0, soft, hard)


@_gibbs_last.defjvp
def _gibbs_last_jvp(primals, tangents):
    s, eps = primals
    ds, deps = tangents
    pi = _gibbs_last(s, eps)
    safe_eps = _safe(eps)
    # d pi = pi * (ds - <pi, ds>) / eps - pi * (s - <pi, s>) deps / eps^2, with masked
    # entries (pi = 0, s = -inf) replaced by 0 so no 0 * inf is ever formed.
    _, m_fin = _shifted_max(s)
    s0 = jnp.where(pi > 0, s - m_fin, jnp.zeros_like(s))
    centred_ds = ds - jnp.sum(pi * ds, axis=-1, keepdims=True)
    centred_s = s0 - jnp.sum(pi * s0, axis=-1, keepdims=True)
    dpi = pi * (centred_ds / safe_eps - centred_s * deps / safe_eps**2)
    # eps = 0: the argmax indicator is piecewise constant, derivative 0 off ties.
    return pi, jnp.where(eps > 0, dpi, jnp.zeros_like(dpi))


def _entropy_last(pi: Array) -> Array:
    pi_safe = jnp.where(pi > 0, pi, jnp.ones_like(pi))
    return -jnp.sum(jnp.where(pi > 0, pi * jnp.log(pi_safe), jnp.zeros_like(pi)), axis=-1)


@jax.custom_jvp
def _lse_last(s: Array, eps: Array) -> Array:
    r"""``eps log Σ_j exp(s_j/eps)`` over the last axis; ``max`` at eps = 0.

    Shifted by ``m = max s``. For two atoms (:func:`softplus_eps`, :func:`tropical_add`,
    log-add-exp) the closed form ``m + eps log1p(exp((min s − m)/eps))`` keeps full relative
    precision in ``lse − m`` however small it is (``log(1 + r)`` rounds ``r < 1e-16`` to
    0: ``softplus_eps(-40, 1)`` would be 0 instead of ``4.25e-18``). For ``N > 2`` it is
    ``m + eps log Σ_j exp((s_j − m)/eps)``, one pass over the atoms, accurate to the
    rounding of ``m``: a log1p form would need the number of tied maxima, a second pass
    over the atoms (measured 40–90% slower for ``hopf_cole`` on B×N pairs on XLA:CPU).
    ``m = ±inf`` (every atom masked, or an infinite logit) is returned as is.
    """
    m, m_fin = _shifted_max(s)
    safe_eps = _safe(eps)
    if s.shape[-1] == 2:
        lo = jnp.min(s, axis=-1, keepdims=True)
        log_sum = jnp.log1p(jnp.exp((lo - m_fin) / safe_eps))
    else:
        log_sum = jnp.log(jnp.sum(jnp.exp((s - m_fin) / safe_eps), axis=-1, keepdims=True))
    soft = m_fin + safe_eps * log_sum
    return jnp.squeeze(jnp.where((eps > 0) & jnp.isfinite(m), soft, m), axis=-1)


@_lse_last.defjvp
def _lse_last_jvp(primals, tangents):
    s, eps = primals
    ds, deps = tangents
    pi = _gibbs_last(s, eps)
    # d lse = <pi, ds> + H(pi) deps   (H = entropy; (lse - <pi,s>)/eps for eps > 0).
    dval = jnp.sum(pi * jnp.where(pi > 0, ds, jnp.zeros_like(ds)), axis=-1)
    return _lse_last(s, eps), dval + _entropy_last(pi) * deps


def _tilt(z: Array, eps: Array, log_w: Array | None) -> Array:
    """s_j = z_j + eps log w_j on active atoms, -inf on masked ones (log w_j = -inf)."""
    if log_w is None:
        return z
    active, log_w_fin = _mask(log_w)
    return jnp.where(active, z + eps * log_w_fin, jnp.full_like(z, -jnp.inf))


def _prepare(z, eps, axis, log_w):
    dtype = _validate.float_dtype(z) if log_w is None else _validate.float_dtype(z, log_w)
    z = jnp.asarray(z, dtype=dtype)
    eps = _validate.nonnegative_scalar("eps", eps, dtype)
    if log_w is not None:
        log_w = jnp.asarray(log_w, dtype=dtype)
        try:
            z, log_w = jnp.broadcast_arrays(z, log_w)
        except ValueError:
            raise ValueError(
                f"`log_w` of shape {log_w.shape} does not broadcast against `z` of shape {z.shape}."
            ) from None
    z = jnp.moveaxis(z, axis, -1)
    if log_w is not None:
        log_w = jnp.moveaxis(log_w, axis, -1)
    return _tilt(z, eps, log_w), eps


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def lse(
    z: Float[ArrayLike, "*shape"],
    eps: ScalarLike,
    axis: int = -1,
    *,
    log_w: Float[ArrayLike, "..."] | None = None,
) -> Float[Array, "*reduced"]:
    r"""Log-sum-exp at temperature eps, exact max at eps = 0 (THEORY §0, Thm 3.1).

    .. math::

        \mathrm{lse}(z, \varepsilon) = \varepsilon \log \sum_j w_j \exp(z_j / \varepsilon),
        \qquad \mathrm{lse}(z, 0) = \max_{j:\, w_j > 0} z_j .

    Maslov sandwich (counting measure, N atoms):
    ``max z <= lse(z, eps) <= max z + eps log N``. Accurate to the rounding of ``max z``;
    for two atoms ``lse − max`` also keeps full relative precision (log-add-exp form,
    e.g. ``softplus_eps(-40, 1) = 4.25e-18``).

    Args:
        z: logits; reduced over ``axis``.
        eps: temperature ``>= 0``, finite (scalar; may be traced — vmap over it for sweeps).
        axis: the atom axis.
        log_w: optional log-weights ``log w_j`` (broadcast against ``z``); ``-inf``
            masks an atom exactly, with finite gradients.

    Returns:
        ``z`` reduced over ``axis`` (``-inf`` where every atom is masked).

    Gradients: ``∂lse/∂z = gibbs(z, eps)``; ``∂lse/∂eps`` = entropy of the Gibbs weights.

    Example:
        >>> import jax.numpy as jnp
        >>> float(lse(jnp.array([0.0, 1.0]), 0.0))
        1.0
    """
    s, eps = _prepare(z, eps, axis, log_w)
    return _lse_last(s, eps)


def gibbs(
    z: Float[ArrayLike, "*shape"],
    eps: ScalarLike,
    axis: int = -1,
    *,
    log_w: Float[ArrayLike, "..."] | None = None,
) -> Float[Array, "*shape"]:
    r"""Gibbs (attribution) weights ``softmax(z/eps + log w)``; argmax weights at eps = 0.

    .. math::

        \pi_j = \frac{w_j e^{z_j/\varepsilon}}{\sum_k w_k e^{z_k/\varepsilon}}
        = \partial_{z_j} \mathrm{lse}(z, \varepsilon),

    and at eps = 0 the uniform distribution over ``argmax_{j: w_j>0} z_j``. Masked
    atoms (``log_w = -inf``) get weight exactly 0. THEORY §0, §3.

    Args:
        z: logits.
        eps: temperature ``>= 0``, finite (scalar, may be traced).
        axis: the atom axis.
        log_w: optional log-weights broadcast against ``z``.

    Returns:
        Weights of ``z``'s (broadcast) shape, summing to 1 along ``axis`` (all 0 where every
        atom is masked: the weights of the zero measure).

    Example:
        >>> import jax.numpy as jnp
        >>> gibbs(jnp.array([1.0, 1.0, 0.0]), 0.0).tolist()
        [0.5, 0.5, 0.0]
    """
    s, eps = _prepare(z, eps, axis, log_w)
    return jnp.moveaxis(_gibbs_last(s, eps), -1, axis)


def softplus_eps(z: Float[ArrayLike, "*shape"], eps: ScalarLike) -> Float[Array, "*shape"]:
    r"""``softplus_eps(z) = lse([0, z], eps) = eps log(1 + exp(z/eps))`` (THEORY §1, Remark 3.2).

    Tends to ``ReLU(z)`` as eps → 0 with maximal error ``eps log 2`` (at ``z = 0``);
    its derivative is ``sigmoid(z/eps)`` (Heaviside at eps = 0). Accurate to relative
    rounding also in the tail ``z ≪ −eps``, where it is ``≈ eps e^{z/eps}``.

    Example:
        >>> float(softplus_eps(-1.0, 0.0)), float(softplus_eps(2.0, 0.0))
        (0.0, 2.0)
    """
    z = jnp.asarray(z, dtype=_validate.float_dtype(z))
    return lse(jnp.stack([jnp.zeros_like(z), z], axis=-1), eps, axis=-1)


def tropical_add(
    a: Float[ArrayLike, "*shape"], b: Float[ArrayLike, "*shape"], eps: ScalarLike = 0.0
) -> Float[Array, "*shape"]:
    r"""``a ⊕_eps b = eps log(e^{a/eps} + e^{b/eps})``; ``max(a, b)`` at eps = 0 (Thm 3.1).

    Elementwise (``a`` and ``b`` broadcast); ``-inf`` is the neutral element.

    Example:
        >>> round(float(tropical_add(0.0, 0.0, 1.0)), 6), float(tropical_add(0.0, -1.0))
        (0.693147, 0.0)
    """
    dtype = _validate.float_dtype(a, b)
    a, b = jnp.broadcast_arrays(jnp.asarray(a, dtype), jnp.asarray(b, dtype))
    return lse(jnp.stack([a, b], axis=-1), eps, axis=-1)


def tropical_mul(
    a: Float[ArrayLike, "*shape"], b: Float[ArrayLike, "*shape"]
) -> Float[Array, "*shape"]:
    r"""``a ⊗ b = a + b``: the semiring product, the same for every eps (Thm 3.1).

    Example:
        >>> float(tropical_mul(2.0, -0.5))
        1.5
    """
    dtype = _validate.float_dtype(a, b)
    return jnp.add(jnp.asarray(a, dtype), jnp.asarray(b, dtype))


def maxplus_matmul(
    A: Float[ArrayLike, "m n"], B: Float[ArrayLike, "n k"], eps: ScalarLike = 0.0
) -> Float[Array, "m k"]:
    r"""Max-plus matrix product, eps-deformed: ``(A ⊗ B)_ik = ⊕_j (A_ij + B_jk)`` (§1).

    At eps = 0 this is ``max_j (A_ij + B_jk)``; for eps > 0 the max becomes
    ``lse(·, eps)``. ``-inf`` entries are the semiring zero and are handled exactly.

    Example:
        >>> import jax.numpy as jnp
        >>> maxplus_matmul(jnp.array([[0.0, 1.0]]), jnp.array([[2.0], [0.0]])).tolist()
        [[2.0]]
    """
    dtype = _validate.float_dtype(A, B)
    A = jnp.asarray(A, dtype)
    B = jnp.asarray(B, dtype)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[0]:
        raise ValueError(
            f"`A` {A.shape} and `B` {B.shape} must be matrices with A.shape[1] == B.shape[0]."
        )
    return lse(A[:, :, None] + B[None, :, :], eps, axis=1)
