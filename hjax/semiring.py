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

Inputs: the elements of the semiring are ``R ∪ {−inf}`` (and ``+inf`` passes through), so
logits may be infinite but NaN is rejected — eagerly with a ``ValueError`` naming the
argument, under jit at run time — as are complex inputs and an empty atom axis. The
kernels themselves live in :mod:`hjax._kernels`.
"""

import jax.numpy as jnp

from . import _kernels, _validate
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
# Boundary: validate, then reduce over the last axis with the kernels of hjax._kernels
# --------------------------------------------------------------------------------------


def _prepare(z, eps, axis, log_w):
    """Validated tilted logits ``s = z + eps log w`` (atom axis last) and eps.

    ``z`` may hold ``±inf`` (``-inf`` is the semiring zero) but not NaN; ``log_w`` may be
    ``-inf`` (a mask) but not NaN or ``+inf``; the atom axis must be non-empty.
    """
    dtype = _validate.real_dtype(z=z, log_w=log_w)
    z = jnp.asarray(z, dtype=dtype)
    if z.ndim == 0:
        raise ValueError(f"`z` must have an atom axis; got a scalar {z.shape}.")
    eps = _validate.nonnegative_scalar("eps", eps, dtype)
    if log_w is not None:
        log_w = jnp.asarray(log_w, dtype=dtype)
        try:
            z, log_w = jnp.broadcast_arrays(z, log_w)
        except ValueError:
            raise ValueError(
                f"`log_w` of shape {log_w.shape} does not broadcast against `z` of shape {z.shape}."
            ) from None
    shape = z.shape
    z = jnp.moveaxis(_validate.not_nan("z", z), axis, -1)
    _validate.at_least_one_atom("z", z.shape[-1], shape)
    if log_w is not None:
        log_w = jnp.moveaxis(_validate.finite_or_masked("log_w", log_w), axis, -1)
    return _kernels.tilt(z, eps, log_w), eps


def _operand(name: str, value, dtype) -> Array:
    """A semiring element array (``±inf`` allowed, NaN rejected) of ``dtype``."""
    return _validate.not_nan(name, jnp.asarray(value, dtype))


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
        z: logits; reduced over ``axis`` (at least one atom). Entries may be ``±inf``
            (``-inf`` is the semiring zero); NaN is rejected (eagerly, or at run time
            under jit).
        eps: temperature ``>= 0``, finite (scalar; may be traced — vmap over it for sweeps).
        axis: the atom axis.
        log_w: optional log-weights ``log w_j`` (broadcast against ``z``); ``-inf``
            masks an atom exactly, with finite gradients; NaN and ``+inf`` are rejected.

    Returns:
        ``z`` reduced over ``axis`` (``-inf`` where every atom is masked).

    Gradients: ``∂lse/∂z = π = gibbs(z, eps)``; ``∂lse/∂eps = H(π) + E_π[log w]``, the
    entropy ``H(π) = −Σ π_j log π_j ≥ 0`` for the counting measure (lse is nondecreasing in
    eps; ``log k`` at eps = 0 on a k-fold tie, the one-sided limit);
    ``∂²lse/∂eps² = Var_π(z)/eps³ ≥ 0``.

    Example:
        >>> import jax.numpy as jnp
        >>> float(lse(jnp.array([0.0, 1.0]), 0.0))
        1.0
    """
    s, eps = _prepare(z, eps, axis, log_w)
    return _kernels.lse_last(s, eps)


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
        z: logits (at least one atom along ``axis``; ``±inf`` allowed — ``+inf`` entries
            share all the weight uniformly — NaN rejected).
        eps: temperature ``>= 0``, finite (scalar, may be traced).
        axis: the atom axis.
        log_w: optional log-weights broadcast against ``z`` (``-inf`` masks; NaN and
            ``+inf`` rejected).

    Derivative in eps: ``∂π_j/∂eps = −π_j (z_j − E_π z)/eps²``.

    Returns:
        Weights of ``z``'s (broadcast) shape, summing to 1 along ``axis`` (all 0 where every
        atom is masked: the weights of the zero measure).

    Example:
        >>> import jax.numpy as jnp
        >>> gibbs(jnp.array([1.0, 1.0, 0.0]), 0.0).tolist()
        [0.5, 0.5, 0.0]
    """
    s, eps = _prepare(z, eps, axis, log_w)
    return jnp.moveaxis(_kernels.gibbs_last(s, eps), -1, axis)


def softplus_eps(z: Float[ArrayLike, "*shape"], eps: ScalarLike) -> Float[Array, "*shape"]:
    r"""``softplus_eps(z) = lse([0, z], eps) = eps log(1 + exp(z/eps))`` (THEORY §1, Remark 3.2).

    Tends to ``ReLU(z)`` as eps → 0 with maximal error ``eps log 2`` (at ``z = 0``);
    its derivative is ``sigmoid(z/eps)`` (Heaviside at eps = 0). Accurate to relative
    rounding also in the tail ``z ≪ −eps``, where it is ``≈ eps e^{z/eps}``.

    Example:
        >>> float(softplus_eps(-1.0, 0.0)), float(softplus_eps(2.0, 0.0))
        (0.0, 2.0)
    """
    dtype = _validate.real_dtype(z=z)
    z = _operand("z", z, dtype)
    eps = _validate.nonnegative_scalar("eps", eps, dtype)
    return _kernels.lse_last(jnp.stack([jnp.zeros_like(z), z], axis=-1), eps)


def tropical_add(
    a: Float[ArrayLike, "*shape"], b: Float[ArrayLike, "*shape"], eps: ScalarLike = 0.0
) -> Float[Array, "*shape"]:
    r"""``a ⊕_eps b = eps log(e^{a/eps} + e^{b/eps})``; ``max(a, b)`` at eps = 0 (Thm 3.1).

    Elementwise (``a`` and ``b`` broadcast); ``-inf`` is the neutral element.

    Example:
        >>> round(float(tropical_add(0.0, 0.0, 1.0)), 6), float(tropical_add(0.0, -1.0))
        (0.693147, 0.0)
    """
    dtype = _validate.real_dtype(a=a, b=b)
    a, b = jnp.broadcast_arrays(_operand("a", a, dtype), _operand("b", b, dtype))
    eps = _validate.nonnegative_scalar("eps", eps, dtype)
    return _kernels.lse_last(jnp.stack([a, b], axis=-1), eps)


def tropical_mul(
    a: Float[ArrayLike, "*shape"], b: Float[ArrayLike, "*shape"]
) -> Float[Array, "*shape"]:
    r"""``a ⊗ b = a + b``: the semiring product, the same for every eps (Thm 3.1).

    Example:
        >>> float(tropical_mul(2.0, -0.5))
        1.5
    """
    dtype = _validate.real_dtype(a=a, b=b)
    return jnp.add(_operand("a", a, dtype), _operand("b", b, dtype))


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
    dtype = _validate.real_dtype(A=A, B=B)
    A = jnp.asarray(A, dtype)
    B = jnp.asarray(B, dtype)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[0]:
        raise ValueError(
            f"`A` {A.shape} and `B` {B.shape} must be matrices with A.shape[1] == B.shape[0]."
        )
    _validate.at_least_one_atom("A", A.shape[1], A.shape)  # the summed index j
    A, B = _validate.not_nan("A", A), _validate.not_nan("B", B)
    eps = _validate.nonnegative_scalar("eps", eps, dtype)
    return _kernels.lse_last(A[:, None, :] + B.T[None, :, :], eps)  # (m, k, n), j last
