r"""The layer ↔ PDE dictionary: LSE layers are Hopf–Cole solutions (THEORY.md §3, §7, §8).

An LSE layer ``f_eps(x) = lse(Wx + b, eps)`` and the discrete-measure Hopf–Cole solution of
``∂_t u + ½∇uᵀA∇u = (eps/2)∇·(A∇u)`` are the same object read in two coordinate systems
(Thm 4.1, Thm 4.4):

.. math::

    W_j = \frac{A^{-1} y_j}{t}, \qquad
    b_j = -\Big(\frac{y_j^\top A^{-1} y_j}{2t} + g_j\Big) + \varepsilon \log w_j, \qquad
    u^N_\varepsilon(x, t) = \frac{x^\top A^{-1} x}{2t} - f_\varepsilon(x),

exactly, for every ``t > 0`` (a gauge choice) and every ``eps >= 0``. The Gibbs weights
``π(x) = gibbs(Wx + b, eps)`` give ``∇f = E_π[W]``, ``∇²f = Cov_π(W)/eps`` and the
backward pass ``∂L/∂b_j = L'(f) π_j(x)`` (Prop E.6), where ``π`` is the adjoint heat
semigroup evaluated at the support points.

Models: :class:`LSELayer` (with an optional learnable metric :class:`PDMetric`),
:class:`LSEBlock` (a vector-valued LSE layer: one LSE unit per output) and :class:`DeepLSE`
(stacked blocks, scan over layers). eps is always a call argument, never a field: a sweep
over eps compiles once.

Inputs (:mod:`hjax._validate`): ``x``, ``W`` (and ``y``, ``g``) must be finite; ``b`` and
``log_w`` may be ``-inf`` (a masked unit / atom) but not NaN or ``+inf``; at least one
unit; real dtypes. Concrete values are checked eagerly (``ValueError`` naming the
argument), traced ones at run time (``eqx.error_if``), so no bad input becomes a silent NaN.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _kernels, _validate
from ._types import Array, ArrayLike, Float, ScalarLike
from .semiring import lse

__all__ = [
    "DeepLSE",
    "LSEBlock",
    "LSELayer",
    "PDMetric",
    "affine_pullback",
    "heat_kernel_weights",
    "hj_to_lse",
    "lse_layer",
    "lse_layer_backward",
    "lse_layer_gibbs",
    "lse_layer_grad",
    "lse_layer_hessian",
    "lse_layer_hessian_bound",
    "lse_to_hj",
    "quadratic_shift",
]


# --------------------------------------------------------------------------------------
# Validation (the kernels are in hjax._kernels)
# --------------------------------------------------------------------------------------


def _layer_params(W, b, **extra):
    """Cast W, b (and the named ``extra`` arrays, for the dtype) to one float dtype.

    ``W``: finite ``(N, d)``, ``N >= 1``; ``b``: ``(N,)``, finite or ``-inf`` (a masked
    unit). Returns ``(W, b, dtype)``.
    """
    dtype = _validate.real_dtype(W=W, b=b, **extra)
    W = _validate.atoms("W", W, dtype)
    return W, _validate.per_atom("b", b, "W", W, masked=True), dtype


def _layer(x, W, b, eps, **extra):
    """Validated ``(x, W, b, eps, dtype)`` of a layer call: :func:`_layer_params`, finite
    ``x`` of shape ``(*batch, d)`` and ``eps >= 0``."""
    W, b, dtype = _layer_params(W, b, x=x, **extra)
    x = _validate.queries("x", x, "W", W)
    return x, W, b, _validate.nonnegative_scalar("eps", eps, dtype), dtype


# --------------------------------------------------------------------------------------
# The dictionary (Thm 4.1, Thm 4.4)
# --------------------------------------------------------------------------------------


def hj_to_lse(
    y: Float[ArrayLike, "N d"],
    g: Float[ArrayLike, " N"],
    t: ScalarLike,
    *,
    A: Float[ArrayLike, "d d"] | None = None,
    log_w: Float[ArrayLike, " N"] | None = None,
    eps: ScalarLike | None = None,
) -> tuple[Float[Array, "N d"], Float[Array, " N"]]:
    r"""HJ data (atoms y, initial values g) → LSE layer (W, b) at gauge time t (Thm 4.1, 4.4).

    .. math::

        W_j = \frac{A^{-1} y_j}{t}, \qquad
        b_j = -\Big(\frac{y_j^\top A^{-1} y_j}{2t} + g_j\Big) + \varepsilon \log w_j .

    Then ``hopf_cole(x, y, g, t, eps, log_w=log_w, A=A) == quadratic_shift(x,
    lse_layer(x, W, b, eps), t, A=A)`` exactly. The weights of the measure enter the bias
    through ``eps · log w_j``, so ``eps`` is required when ``log_w`` is given (and the layer
    is then valid for that eps only).

    Masked atoms (``log_w_j = -inf``) get ``b_j = -inf`` for *every* eps, including
    ``eps = 0``: the atom is removed, matching ``lse(·, 0, log_w=-inf) = max over the
    active atoms`` (the naive ``0 · (−inf)`` would be NaN). For active atoms at ``eps = 0``
    the weight drops out (``b_j = −(yᵀA⁻¹y/(2t) + g_j)``): the tropical limit does not see
    finite weights.

    Args:
        y: atoms ``(N, d)``.
        g: initial values ``(N,)``.
        t: gauge time ``> 0``.
        A: symmetric positive-definite metric ``(d, d)`` (default identity).
        log_w: log-weights ``(N,)``; ``-inf`` masks an atom.
        eps: viscosity ``>= 0``; required with ``log_w``. Checked whenever given, also
            under jit/vmap (at run time).

    Returns:
        ``(W, b)`` of shapes ``(N, d)`` and ``(N,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> W, b = hj_to_lse(jnp.array([[2.0]]), jnp.array([1.0]), 2.0)
        >>> W.tolist(), b.tolist()
        ([[1.0]], [-2.0])
    """
    _, y, g, t, A, log_w, dtype = _validate.hj_inputs(None, y, g, t, A=A, log_w=log_w)
    if log_w is not None and eps is None:
        raise ValueError(
            "`eps` is required when `log_w` is given: the weights enter the bias as "
            "eps·log_w (pass the eps the layer will be evaluated at)."
        )
    chol, _ = _kernels.metric(A, dtype)
    W = _kernels.inv_metric(chol, y) / t
    b = -(jnp.sum(_kernels.whiten(chol, y) ** 2, axis=-1) / (2 * t) + g)
    if eps is None:
        return W, b
    # The run-time check of a traced eps is carried by the outputs themselves: with
    # log_w = None eps does not reach them, and an unused check is dead code under jit.
    eps = _validate.as_float_scalar("eps", eps, dtype)
    W, b, eps = _validate.nonnegative("eps", eps, finite=True, guard=(W, b, eps))
    return W, _kernels.tilt(b, eps, log_w)


def lse_to_hj(
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    t: ScalarLike,
    *,
    A: Float[ArrayLike, "d d"] | None = None,
) -> tuple[Float[Array, "N d"], Float[Array, " N"]]:
    r"""LSE layer (W, b) → HJ data (y, g) at gauge time t: the inverse of :func:`hj_to_lse`.

    .. math::

        y_j = t A W_j, \qquad g_j = -b_j - \frac{t}{2} W_j^\top A W_j
        \qquad (\text{counting measure, } \log w = 0).

    Every ``t > 0`` is a valid reading of the same layer (gauge freedom, THEORY §3). A
    masked unit (``b_j = -inf``) reads as ``g_j = +inf``: an atom that is never selected.

    Args:
        W: weights ``(N, d)``.
        b: biases ``(N,)``.
        t: gauge time ``> 0``.
        A: symmetric positive-definite metric ``(d, d)`` (default identity).

    Returns:
        ``(y, g)`` of shapes ``(N, d)`` and ``(N,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> y, g = lse_to_hj(jnp.array([[1.0]]), jnp.array([-2.0]), 2.0)
        >>> y.tolist(), g.tolist()
        ([[2.0]], [1.0])
    """
    W, b, dtype = _layer_params(W, b)
    t = _validate.positive_scalar("t", t, dtype)
    A = _validate.metric("A", A, W.shape[-1], dtype)
    if A is None:
        return t * W, -b - t * jnp.sum(W * W, axis=-1) / 2
    AW = W @ A  # rows A W_j (A symmetric)
    return t * AW, -b - t * jnp.sum(W * AW, axis=-1) / 2


def lse_layer(
    x: Float[ArrayLike, "*batch d"],
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    eps: ScalarLike,
) -> Float[Array, "*batch"]:
    r"""LSE layer ``f_eps(x) = lse(Wx + b, eps) = eps log Σ_j exp((W_j·x + b_j)/eps)`` (§3).

    At ``eps = 0`` it is the max-affine (tropical) function ``max_j (W_j·x + b_j)``, exactly.
    Units with ``b_j = -inf`` are masked (they contribute nothing, gradients stay finite).

    Args:
        x: inputs ``(*batch, d)``.
        W: weights ``(N, d)``.
        b: biases ``(N,)``.
        eps: temperature ``>= 0`` (traced: sweeps compile once).

    Returns:
        ``f_eps(x)`` of shape ``(*batch,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> float(lse_layer(jnp.array([1.0]), jnp.array([[1.0], [-1.0]]), jnp.zeros(2), 0.0))
        1.0
    """
    x, W, b, eps, _ = _layer(x, W, b, eps)
    return _kernels.affine_lse(x, W, b, eps)


def quadratic_shift(
    x: Float[ArrayLike, "*batch d"],
    f: Float[ArrayLike, "*batch"],
    t: ScalarLike,
    *,
    A: Float[ArrayLike, "d d"] | None = None,
) -> Float[Array, "*batch"]:
    r"""The quadratic shift ``xᵀA⁻¹x/(2t) − f``: layer value → HJ value (Thm 4.1, 4.4).

    .. math::

        u^N_\varepsilon(x, t) = \frac{x^\top A^{-1} x}{2t} - f_\varepsilon(x).

    The map is an involution: applied to ``u`` it gives back ``f``.

    Args:
        x: points ``(*batch, d)``.
        f: values at ``x``, ``(*batch,)`` (e.g. ``lse_layer(x, W, b, eps)``).
        t: gauge time ``> 0``.
        A: symmetric positive-definite metric ``(d, d)`` (default identity).

    Returns:
        ``xᵀA⁻¹x/(2t) − f`` of shape ``(*batch,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> float(quadratic_shift(jnp.array([2.0]), jnp.array(1.0), 1.0))
        1.0
    """
    dtype = _validate.real_dtype(x=x, f=f)
    x = jnp.asarray(x, dtype)
    f = jnp.asarray(f, dtype)
    if x.ndim < 1 or f.shape != x.shape[:-1]:
        raise ValueError(
            f"`f` must have shape (*batch,) = {x.shape[:-1]} to match `x` {x.shape}; got {f.shape}."
        )
    x, f = _validate.finite("x", x), _validate.not_nan("f", f)
    t = _validate.positive_scalar("t", t, dtype)
    chol, _ = _kernels.metric(_validate.metric("A", A, x.shape[-1], dtype), dtype)
    return jnp.sum(_kernels.whiten(chol, x) ** 2, axis=-1) / (2 * t) - f


def affine_pullback(
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    M: Float[ArrayLike, "d k"],
    c: Float[ArrayLike, " d"],
) -> tuple[Float[Array, "N k"], Float[Array, " N"]]:
    r"""Affine closure (Prop H.2(ii)): ``f(Mx + c)`` is the LSE layer ``(W M, b + W c)``.

    .. math::

        \mathrm{lse}(W(Mx + c) + b, \varepsilon) = \mathrm{lse}(W'x + b', \varepsilon),
        \qquad W' = WM,\; b' = b + Wc .

    Args:
        W: weights ``(N, d)``.
        b: biases ``(N,)``.
        M: linear map ``(d, k)`` from the new input space ``R^k``.
        c: offset ``(d,)``.

    Returns:
        ``(W', b')`` of shapes ``(N, k)`` and ``(N,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> W2, b2 = affine_pullback(jnp.ones((1, 1)), jnp.zeros(1), 2 * jnp.ones((1, 1)),
        ...                          jnp.ones(1))
        >>> W2.tolist(), b2.tolist()
        ([[2.0]], [1.0])
    """
    W, b, dtype = _layer_params(W, b, M=M, c=c)
    M = jnp.asarray(M, dtype)
    c = jnp.asarray(c, dtype)
    if M.ndim != 2 or M.shape[0] != W.shape[1]:
        raise ValueError(f"`M` must have shape (d, k) with d = {W.shape[1]}; got {M.shape}.")
    if c.shape != W.shape[1:]:
        raise ValueError(f"`c` must have shape (d,) = ({W.shape[1]},); got {c.shape}.")
    M, c = _validate.finite("M", M), _validate.finite("c", c)
    return W @ M, b + W @ c


# --------------------------------------------------------------------------------------
# Gibbs weights, derivatives, bounds (§3, Cor 8.2)
# --------------------------------------------------------------------------------------


def lse_layer_gibbs(
    x: Float[ArrayLike, "*batch d"],
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    eps: ScalarLike,
) -> Float[Array, "*batch N"]:
    r"""Gibbs (attribution) weights ``π(x) = gibbs(Wx + b, eps) = ∂f/∂b`` (THEORY §3).

    Equal to the Hopf–Cole weights ``gibbs(−(c_t(x, y) + g), eps)`` of the (y, g) reading
    at any t; at ``eps = 0`` the uniform distribution over the active argmax units.

    Args:
        x: inputs ``(*batch, d)``; W: ``(N, d)``; b: ``(N,)``; eps: ``>= 0``.

    Returns:
        ``π`` of shape ``(*batch, N)``, summing to 1 over the last axis.

    Example:
        >>> import jax.numpy as jnp
        >>> lse_layer_gibbs(jnp.array([1.0]), jnp.array([[1.0], [-1.0]]), jnp.zeros(2),
        ...                 0.0).tolist()
        [1.0, 0.0]
    """
    x, W, b, eps, _ = _layer(x, W, b, eps)
    return _kernels.gibbs_last(_kernels.affine_logits(x, W, b), eps)


def lse_layer_grad(
    x: Float[ArrayLike, "*batch d"],
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    eps: ScalarLike,
) -> Float[Array, "*batch d"]:
    r"""Closed-form gradient ``∇f_eps(x) = Σ_j π_j(x) W_j = E_π[W]`` (THEORY §3).

    At ``eps = 0`` (off ties) this is the slope of the active affine piece.

    Args:
        x: inputs ``(*batch, d)``; W: ``(N, d)``; b: ``(N,)``; eps: ``>= 0``.

    Returns:
        ``∇f`` of shape ``(*batch, d)``.

    Example:
        >>> import jax.numpy as jnp
        >>> lse_layer_grad(jnp.array([0.0]), jnp.array([[1.0], [-1.0]]), jnp.zeros(2),
        ...                1.0).tolist()
        [0.0]
    """
    x, W, b, eps, _ = _layer(x, W, b, eps)
    return _kernels.affine_reduce(lambda z: _kernels.gibbs_last(z, eps) @ W, x, W, b)


def lse_layer_hessian(
    x: Float[ArrayLike, "*batch d"],
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    eps: ScalarLike,
) -> Float[Array, "*batch d d"]:
    r"""Closed-form Hessian ``∇²f_eps(x) = Cov_π(W) / eps`` (THEORY §3, Prop E.5).

    .. math::

        \nabla^2 f_\varepsilon(x) = \frac{1}{\varepsilon}
            \sum_j \pi_j (W_j - \bar W)(W_j - \bar W)^\top, \qquad \bar W = E_\pi[W].

    At ``eps = 0`` the layer is piecewise affine: this returns its almost-everywhere
    Hessian, 0 (as ``jax.hessian`` of :func:`lse_layer` does there); on the kinks the true
    second derivative is a singular measure, not a matrix.

    Args:
        x: inputs ``(*batch, d)``; W: ``(N, d)``; b: ``(N,)``; eps: ``>= 0``.

    Returns:
        ``∇²f`` of shape ``(*batch, d, d)``, symmetric positive semi-definite.

    Example:
        >>> import jax.numpy as jnp
        >>> lse_layer_hessian(jnp.array([0.0]), jnp.array([[1.0], [-1.0]]), jnp.zeros(2),
        ...                   0.5).tolist()
        [[2.0]]
    """
    x, W, b, eps, _ = _layer(x, W, b, eps)

    def gibbs_cov(z):
        pi = _kernels.gibbs_last(z, eps)
        centred = W - (pi @ W)[..., None, :]  # (*rows, N, d)
        return jnp.einsum("...n,...ni,...nj->...ij", pi, centred, centred)

    cov = _kernels.affine_reduce(gibbs_cov, x, W, b)
    return jnp.where(eps > 0, cov / _kernels.safe(eps), jnp.zeros_like(cov))


def lse_layer_hessian_bound(W: Float[ArrayLike, "N d"], eps: ScalarLike) -> Float[Array, ""]:
    r"""Curvature bound ``‖∇²f_eps(x)‖₂ ≤ D² / (4 eps)`` for every x (Cor 8.2).

    ``D = max_{i,j} ‖W_i − W_j‖`` (≤ 2R, R = max_j ‖W_j‖), by Popoviciu's inequality
    ``Var_π(vᵀW) ≤ D²/4`` for unit v. Tighter than the paper's ``R²/eps`` and attained by
    two atoms at their tie point. ``+inf`` at ``eps = 0`` unless all rows of W coincide.

    Args:
        W: weights ``(N, d)``.
        eps: temperature ``>= 0``.

    Returns:
        The bound (scalar).

    Example:
        >>> import jax.numpy as jnp
        >>> float(lse_layer_hessian_bound(jnp.array([[1.0], [-1.0]]), 0.5))
        2.0
    """
    dtype = _validate.real_dtype(W=W)
    W = _validate.atoms("W", W, dtype)
    eps = _validate.nonnegative_scalar("eps", eps, dtype)
    diff = W[:, None, :] - W[None, :, :]
    D2 = jnp.max(jnp.sum(diff * diff, axis=-1))
    at_zero = jnp.where(D2 > 0, jnp.full_like(D2, jnp.inf), jnp.zeros_like(D2))
    return jnp.where(eps > 0, D2 / (4 * _kernels.safe(eps)), at_zero)


# --------------------------------------------------------------------------------------
# Backward pass = adjoint heat semigroup (Prop E.6)
# --------------------------------------------------------------------------------------


def lse_layer_backward(
    x: Float[ArrayLike, "*batch d"],
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    eps: ScalarLike,
    cotangent: Float[ArrayLike, "*batch"],
) -> tuple[Float[Array, "N d"], Float[Array, " N"]]:
    r"""Parameter gradients of an LSE layer in closed form (Prop E.6).

    For ``L = Σ_batch ℓ(f_eps(x))`` with ``cotangent = ℓ'(f)``:

    .. math::

        \frac{\partial L}{\partial b_j} = \sum \ell'(f)\, \pi_j(x), \qquad
        \frac{\partial L}{\partial W_j} = \sum \ell'(f)\, \pi_j(x)\, x ,

    where ``π_j(x) ∝ w_j K_{eps t}(x − y_j) e^{−g_j/eps}`` (:func:`heat_kernel_weights`):
    backprop through the layer applies the adjoint heat semigroup at the support points.

    Args:
        x: inputs ``(*batch, d)``.
        W: weights ``(N, d)``; b: biases ``(N,)``; eps: ``>= 0``.
        cotangent: ``ℓ'(f(x))``, shape ``(*batch,)``.

    Returns:
        ``(∂L/∂W, ∂L/∂b)`` of shapes ``(N, d)`` and ``(N,)`` (summed over the batch).

    Example:
        >>> import jax.numpy as jnp
        >>> dW, db = lse_layer_backward(jnp.array([2.0]), jnp.array([[1.0], [-1.0]]),
        ...                             jnp.zeros(2), 0.0, jnp.array(3.0))
        >>> dW.tolist(), db.tolist()
        ([[6.0], [0.0]], [3.0, 0.0])
    """
    x, W, b, eps, dtype = _layer(x, W, b, eps, cotangent=cotangent)
    cotangent = jnp.asarray(cotangent, dtype)
    if cotangent.shape != x.shape[:-1]:
        raise ValueError(
            f"`cotangent` must have shape (*batch,) = {x.shape[:-1]} to match `x`; "
            f"got {cotangent.shape}."
        )
    cotangent = _validate.finite("cotangent", cotangent)

    def sums(z, cot, x):
        """``(Σ ℓ' π_j x, Σ ℓ' π_j)`` over the rows of one block."""
        weighted = (cot[..., None] * _kernels.gibbs_last(z, eps)).reshape(-1, W.shape[0])
        return weighted.T @ x.reshape(-1, W.shape[1]), jnp.sum(weighted, axis=0)

    return _kernels.affine_sum(sums, x, W, b, cotangent, x)


def heat_kernel_weights(
    x: Float[ArrayLike, "*batch d"],
    y: Float[ArrayLike, "N d"],
    g: Float[ArrayLike, " N"],
    t: ScalarLike,
    eps: ScalarLike,
    *,
    log_w: Float[ArrayLike, " N"] | None = None,
    A: Float[ArrayLike, "d d"] | None = None,
) -> Float[Array, "*batch N"]:
    r"""Heat-kernel form of the Gibbs weights, from the HJ data (Prop E.6, THEORY §7).

    .. math::

        \pi_j(x) = \frac{w_j K_{\varepsilon t}(x - y_j) e^{-g_j/\varepsilon}}
                        {\sum_k w_k K_{\varepsilon t}(x - y_k) e^{-g_k/\varepsilon}},
        \qquad K_s(z) = \frac{e^{-z^\top A^{-1} z / (2s)}}{(2\pi s)^{d/2}\sqrt{\det A}} ,

    the Gaussian heat kernel of ``∂_t w = (eps/2)∇·(A∇w)`` at time t. Evaluated in the log
    domain (the prefactor cancels), so ``eps = 0`` gives the Hopf–Lax limit: the uniform
    distribution over ``argmin_j [c_t(x, y_j) + g_j]``. Equals ``lse_layer_gibbs`` of the
    (W, b) reading, and ``∂u/∂g_j`` of :func:`~hjax.hopf_cole.hopf_cole`.

    Args:
        x: query points ``(*batch, d)``.
        y: atoms ``(N, d)``; g: initial values ``(N,)``.
        t: time ``> 0``; eps: viscosity ``>= 0``.
        log_w: log-weights ``(N,)`` (default 0); ``-inf`` masks an atom (at least one
            must stay active: the zero measure has no Gibbs weights).
        A: symmetric positive-definite metric ``(d, d)`` (default identity).

    Returns:
        ``π`` of shape ``(*batch, N)``.

    Example:
        >>> import jax.numpy as jnp
        >>> heat_kernel_weights(jnp.array([0.0]), jnp.array([[-1.0], [1.0]]),
        ...                     jnp.zeros(2), 1.0, 1.0).tolist()
        [0.5, 0.5]
    """
    x, y, g, t, A, log_w, dtype = _validate.hj_inputs(x, y, g, t, A=A, log_w=log_w)
    eps = _validate.nonnegative_scalar("eps", eps, dtype)
    chol, _ = _kernels.metric(A, dtype)
    return _kernels.hj_gibbs(x, y, g, t, eps, chol, _validate.some_atom_active(log_w))


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------


def _softplus_inverse(v: Array) -> Array:
    return v + jnp.log(-jnp.expm1(-v))


class PDMetric(eqx.Module):
    r"""A learnable symmetric positive-definite metric ``A = LLᵀ + δI`` (Thm 4.4).

    ``L`` is lower triangular with diagonal ``softplus(raw_ii) > 0`` and free strict lower
    triangle ``raw_ij`` (i > j); the upper triangle of ``raw`` is unused. Every real ``raw``
    gives ``λ_min(A) ≥ δ = min_eig`` (and ``L`` is nonsingular, so ``A`` stays numerically
    PD even when ``δ`` is below round-off of ``‖LLᵀ‖``): any optimizer step keeps A PD.

    Attributes:
        raw: unconstrained parameters ``(d, d)``.
        min_eig: the floor ``δ > 0`` (static).

    Example:
        >>> import jax.numpy as jnp
        >>> A = PDMetric.from_matrix(2.0 * jnp.eye(2)).matrix()
        >>> bool(jnp.allclose(A, 2.0 * jnp.eye(2)))
        True
    """

    raw: Float[Array, "d d"]
    min_eig: float = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        if self.raw.ndim != 2 or self.raw.shape[0] != self.raw.shape[1]:
            raise ValueError(f"`raw` must be a square (d, d) array; got {self.raw.shape}.")
        if not self.min_eig > 0:
            raise ValueError(f"`min_eig` must be > 0; got {self.min_eig!r}.")

    def factor(self) -> Float[Array, "d d"]:
        """The lower-triangular factor L (positive diagonal)."""
        diag = jax.nn.softplus(jnp.diagonal(self.raw))
        return jnp.tril(self.raw, -1) + jnp.diag(diag)

    def matrix(self) -> Float[Array, "d d"]:
        """``A = LLᵀ + δI`` (exactly symmetric)."""
        L = self.factor()
        A = L @ L.T
        return (A + A.T) / 2 + self.min_eig * jnp.eye(A.shape[0], dtype=A.dtype)

    @classmethod
    def from_matrix(cls, A: Float[ArrayLike, "d d"], min_eig: float = 1e-3) -> "PDMetric":
        """The parametrization of a given SPD ``A`` with ``λ_min(A) > min_eig`` (concrete A)."""
        A = jnp.asarray(A, _validate.float_dtype(A))
        if A.ndim != 2:
            raise ValueError(f"`A` must have shape (d, d); got {A.shape}.")
        A = _validate.positive_definite("A", A, A.shape[0])
        lam = float(np.min(np.linalg.eigvalsh(np.asarray(A))))
        if not lam > min_eig:
            raise ValueError(
                f"`A` must have smallest eigenvalue > min_eig = {min_eig}; got {lam}. "
                "Lower `min_eig` or rescale A."
            )
        L = jnp.linalg.cholesky(A - min_eig * jnp.eye(A.shape[0], dtype=A.dtype))
        raw = jnp.tril(L, -1) + jnp.diag(_softplus_inverse(jnp.diagonal(L)))
        return cls(raw, min_eig)


class LSELayer(eqx.Module):
    r"""LSE layer ``f_eps(x) = lse(Wx + b, eps)`` with an optional learnable metric (§3).

    The metric A does not change ``f``; it fixes the HJ reading ``(y, g)`` at time t
    (:meth:`hj_reading`) and the HJ value ``u = xᵀA⁻¹x/(2t) − f`` (:meth:`hj_value`), so a
    loss on either trains A. A is a :class:`PDMetric` and stays positive definite under any
    gradient step.

    Attributes:
        W: weights ``(N, d)``.
        b: biases ``(N,)``.
        metric: ``None`` (A = I) or a :class:`PDMetric`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> layer = LSELayer.random(jax.random.key(0), d=2, N=4)
        >>> layer(jnp.zeros(2), 0.1).shape
        ()
    """

    W: Float[Array, "N d"]
    b: Float[Array, " N"]
    metric: PDMetric | None = None

    def __check_init__(self):
        if self.W.ndim != 2 or self.b.shape != self.W.shape[:1]:
            raise ValueError(
                f"`W` must be (N, d) and `b` (N,); got {self.W.shape} and {self.b.shape}."
            )
        if self.metric is not None and self.metric.raw.shape[0] != self.W.shape[1]:
            raise ValueError(
                f"`metric` is {self.metric.raw.shape[0]}-dimensional but `W` has d = "
                f"{self.W.shape[1]}."
            )

    def __call__(self, x: Float[ArrayLike, "*batch d"], eps: ScalarLike) -> Float[Array, "*batch"]:
        """``lse(Wx + b, eps)``."""
        return lse_layer(x, self.W, self.b, eps)

    @property
    def A(self) -> Float[Array, "d d"] | None:
        """The metric matrix (``None`` for the identity)."""
        return None if self.metric is None else self.metric.matrix()

    def gibbs(self, x: Float[ArrayLike, "*batch d"], eps: ScalarLike) -> Float[Array, "*batch N"]:
        """Attribution weights ``π(x)``."""
        return lse_layer_gibbs(x, self.W, self.b, eps)

    def hj_reading(self, t: ScalarLike) -> tuple[Float[Array, "N d"], Float[Array, " N"]]:
        """``(y, g) = lse_to_hj(W, b, t, A=A)``: the atoms and initial values at time t."""
        return lse_to_hj(self.W, self.b, t, A=self.A)

    def hj_value(
        self, x: Float[ArrayLike, "*batch d"], t: ScalarLike, eps: ScalarLike
    ) -> Float[Array, "*batch"]:
        """``u^N_eps(x, t) = xᵀA⁻¹x/(2t) − f_eps(x)`` (Thm 4.1)."""
        return quadratic_shift(x, self(x, eps), t, A=self.A)

    @classmethod
    def random(cls, key: Array, d: int, N: int, *, metric: bool = False, dtype=None) -> "LSELayer":
        """Random layer: ``W ~ N(0, 1/d)``, ``b ~ N(0, 1)``; identity metric if requested."""
        W, b = _kernels.gaussians(key, [((N, d), d**-0.5), ((N,), 1.0)], dtype)
        m = PDMetric.from_matrix(jnp.eye(d, dtype=W.dtype)) if metric else None
        return cls(W, b, m)

    @classmethod
    def from_hj(
        cls,
        y: Float[ArrayLike, "N d"],
        g: Float[ArrayLike, " N"],
        t: ScalarLike,
        *,
        A: Float[ArrayLike, "d d"] | None = None,
        min_eig: float = 1e-3,
    ) -> "LSELayer":
        """The layer whose HJ reading at time t is ``(y, g)`` (a learnable metric iff A given)."""
        W, b = hj_to_lse(y, g, t, A=A)
        return cls(W, b, None if A is None else PDMetric.from_matrix(A, min_eig))


class LSEBlock(eqx.Module):
    r"""Vector-valued LSE layer ``R^d → R^m``: one LSE unit with N atoms per output.

    .. math::

        \phi_k(x) = \mathrm{lse}(W_k x + b_k, \varepsilon), \qquad k = 1..m,

    each unit an LSE layer (a Hopf–Cole solution, Thm 4.1) with its own atoms; at
    ``eps = 0`` a maxout unit. The building block of :class:`DeepLSE` and of the
    LSE-transformer's feed-forward layer.

    Attributes:
        W: weights ``(m, N, d)``.
        b: biases ``(m, N)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> LSEBlock.random(jax.random.key(0), d=3, m=2, N=4)(jnp.zeros(3), 0.5).shape
        (2,)
    """

    W: Float[Array, "m N d"]
    b: Float[Array, "m N"]

    def __check_init__(self):
        if self.W.ndim != 3 or self.b.shape != self.W.shape[:2]:
            raise ValueError(
                f"`W` must be (m, N, d) and `b` (m, N); got {self.W.shape} and {self.b.shape}."
            )

    def __call__(self, x: Float[ArrayLike, " d"], eps: ScalarLike) -> Float[Array, " m"]:
        """``φ(x) = lse(W_k x + b_k, eps)`` for every unit k."""
        x = jnp.asarray(x, self.W.dtype)
        return lse(jnp.einsum("mnd,d->mn", self.W, x) + self.b, eps)

    @classmethod
    def random(cls, key: Array, d: int, m: int, N: int, *, dtype=None) -> "LSEBlock":
        """Random block: ``W ~ N(0, 1/d)``, ``b ~ N(0, 1)``."""
        return cls(*_kernels.gaussians(key, [((m, N, d), d**-0.5), ((m, N), 1.0)], dtype))


class DeepLSE(eqx.Module):
    r"""Deep LSE network ``R^d → R``: stacked :class:`LSEBlock` s, scanned over layers.

    .. math::

        h_0 = \phi^{(0)}(x) \in R^{m}, \qquad h_{l} = \phi^{(l)}(h_{l-1}) \;(l = 1..L),
        \qquad F(x) = \mathrm{lse}(W^{out} h_L + b^{out}, \varepsilon),

    every unit of every layer an LSE layer (a Hopf–Cole solution of its own input, Thm 4.1);
    depth reads as composition of heat semigroups (Thm 7.1(ii), exact only in the continuum
    limit, Thm E.1). At ``eps = 0`` the network is a max-affine (maxout) net. The L hidden blocks
    ``R^m → R^m`` are stored stacked on a leading axis and applied with ``lax.scan`` (one
    compiled layer body, whatever the depth).

    Attributes:
        first: input block ``R^d → R^m``.
        hidden: L stacked blocks ``R^m → R^m`` (leaves with a leading axis of size L).
        readout: scalar LSE layer on ``R^m``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> net = DeepLSE(2, width=3, depth=2, atoms=4, key=jax.random.key(0))
        >>> net(jnp.zeros(2), jnp.asarray(0.1)).shape
        ()
    """

    first: LSEBlock
    hidden: LSEBlock
    readout: LSELayer

    def __init__(
        self,
        d: int,
        width: int,
        depth: int,
        atoms: int,
        *,
        key: Array,
        readout_atoms: int | None = None,
        dtype=None,
    ):
        """``depth`` hidden blocks (``>= 0``) of ``width`` units with ``atoms`` atoms each."""
        d, m, depth, atoms = (
            _validate.integer("d", d),
            _validate.integer("width", width),
            _validate.integer("depth", depth, minimum=0),
            _validate.integer("atoms", atoms),
        )
        if readout_atoms is not None:
            readout_atoms = _validate.integer("readout_atoms", readout_atoms)
        n_out = atoms if readout_atoms is None else readout_atoms
        W0, b0, Wh, bh, Wr, br = _kernels.gaussians(
            key,
            [
                ((m, atoms, d), d**-0.5),
                ((m, atoms), 1.0),
                ((depth, m, atoms, m), m**-0.5),
                ((depth, m, atoms), 1.0),
                ((n_out, m), m**-0.5),
                ((n_out,), 1.0),
            ],
            dtype,
        )
        self.first = LSEBlock(W0, b0)
        self.hidden = eqx.filter_vmap(LSEBlock)(Wh, bh)  # stacked on a leading layer axis
        self.readout = LSELayer(Wr, br)

    def __call__(self, x: Float[ArrayLike, " d"], eps: ScalarLike) -> Float[Array, ""]:
        """``F_eps(x)``; eps is an argument (sweeps over eps compile once)."""
        params, static = eqx.partition(self.hidden, eqx.is_array)

        def layer(h, p):
            return eqx.combine(p, static)(h, eps), None

        h, _ = jax.lax.scan(layer, self.first(x, eps), params)
        return self.readout(h, eps)
