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
(:func:`hopf_cole_grad`, :func:`hopf_cole_hessian`). The metric enters only through its
Cholesky factor ``A = LLᵀ`` (``c_t = |L⁻¹x − L⁻¹y|²/(2t)``, ``A⁻¹v`` by two triangular
solves, ``log det A = 2 Σ log L_ii``), never an explicit inverse (the kernels of
:mod:`hjax._kernels`, shared with :mod:`hjax.layers`, :mod:`hjax.sweep` and
:mod:`hjax.feynman_kac`).

Inputs (:mod:`hjax._validate`): ``x``, ``y``, ``g`` must be finite (NaN and ``±inf``
rejected: mask an atom with ``log_w = -inf`` instead of ``g = +inf``), ``log_w`` finite or
``-inf``, at least one atom, real dtypes; concrete values are checked eagerly
(``ValueError`` naming the argument), traced ones at run time (``eqx.error_if``).
"""

import jax.numpy as jnp

from . import _kernels, _validate
from ._types import Array, ArrayLike, Float, ScalarLike

__all__ = [
    "heat_normalization",
    "hopf_cole",
    "hopf_cole_grad",
    "hopf_cole_hessian",
    "hopf_lax",
    "transport_cost",
]


def _prepare(x, y, g, t, A, log_w=None):
    """Validated inputs (:func:`hjax._validate.hj_inputs`) and the metric's factor.

    Returns ``(x, y, g, t, chol, logdet_A, log_w, dtype)``, ``chol`` the Cholesky factor
    of A (None for the identity).
    """
    x, y, g, t, A, log_w, dtype = _validate.hj_inputs(x, y, g, t, A=A, log_w=log_w)
    chol, logdet_A = _kernels.metric(A, dtype)
    return x, y, g, t, chol, logdet_A, log_w, dtype


def _gibbs_moments(moments, x, y, g, t, eps, A, log_w):
    """Validated inputs and ``moments(π, y)`` of the Hopf–Cole Gibbs weights (§3).

    ``π_j(x) = gibbs(−(c_t(x, y) + g), eps; log w)_j``: the normalized heat-kernel weights
    ``∝ w_j K_{eps t}(x − y_j) e^{−g_j/eps}``. ``moments(π, y, chol)`` maps ``π``
    ``(*rows, N)``, the atoms and the metric's factor to per-query arrays; it is applied
    block by block (:func:`hjax._kernels.hj_reduce`), so the B×N weights are never held.
    Returns ``(x, t, eps, chol, moments)``.
    """
    x, y, g, t, chol, _, log_w, dtype = _prepare(x, y, g, t, A, log_w)
    eps = _validate.nonnegative_scalar("eps", eps, dtype)
    log_w = _validate.some_atom_active(log_w)

    def reduce(z):
        return moments(_kernels.gibbs_last(_kernels.tilt(z, eps, log_w), eps), y, chol)

    return x, t, eps, chol, _kernels.hj_reduce(reduce, x, y, g, t, chol)


def _gibbs_mean(pi, y):
    """The Gibbs mean ``E_π[y] = Σ_j π_j y_j`` (the "soft nearest atom"), ``(*rows, d)``."""
    return jnp.einsum("...n,nd->...d", pi, y)


def _whitened_gibbs_cov(pi, y, chol):
    """``A⁻¹ Cov_π(y) A⁻¹ = Σ_j π_j (A⁻¹(y_j − ȳ))(A⁻¹(y_j − ȳ))ᵀ``: symmetric PSD by
    construction, ``(*rows, d, d)``."""
    centred = _kernels.inv_metric(chol, y - _gibbs_mean(pi, y)[..., None, :])  # (*rows, N, d)
    return jnp.einsum("...n,...ni,...nj->...ij", pi, centred, centred)


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
    x, y, _, t, chol, _, _, _ = _prepare(x, y, None, t, A)
    return _kernels.cost(x, y, t, chol)


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
    d = _validate.integer("d", d)
    dtype = _validate.real_dtype(t=t, eps=eps, A=A)
    t = _validate.positive_scalar("t", t, dtype)
    eps = _validate.nonnegative_scalar("eps", eps, dtype)
    _, logdet_A = _kernels.metric(_validate.metric("A", A, d, dtype), dtype)
    return _kernels.normalization(d, t, eps, logdet_A)


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
        log_w: log-weights of the atoms (default 0: counting measure); ``-inf`` masks
            (every atom masked: ``u = +inf``, the zero measure).
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
    x, y, g, t, chol, logdet_A, log_w, dtype = _prepare(x, y, g, t, A, log_w)
    eps = _validate.nonnegative_scalar("eps", eps, dtype)
    u = -_kernels.hj_lse(x, y, g, t, eps, chol, log_w)
    if normalized:
        u = u + _kernels.normalization(y.shape[-1], t, eps, logdet_A)
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
    convolution of g with the transport cost. Computed with a plain ``min``, no exp (on the
    CPU, for large batches, by the fused kernel's eps = 0 branch); its gradient averages
    over tied minimisers.

    Example:
        >>> import jax.numpy as jnp
        >>> y = jnp.array([[0.0], [1.0]]); g = jnp.array([0.0, -1.0])
        >>> float(hopf_lax(jnp.array([0.5]), y, g, 1.0))
        -0.875
    """
    x, y, g, t, chol, _, _, _ = _prepare(x, y, g, t, A)
    # min_j [c_t + g_j] = −max_j z_j of the logits z = −(c_t + g), exactly (negation).
    return -_kernels.hj_max(x, y, g, t, chol)


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
        log_w: log-weights ``(N,)``; ``-inf`` masks an atom (at least one must stay
            active: the zero measure has no Gibbs weights).
        A: symmetric positive-definite metric ``(d, d)`` (default identity).

    Returns:
        ``∇_x u(x, t)`` of shape ``(*batch, d)``.

    Example:
        >>> import jax.numpy as jnp
        >>> y = jnp.array([[0.0], [1.0]]); g = jnp.array([0.0, -1.0])
        >>> hopf_cole_grad(jnp.array([0.5]), y, g, 1.0, 0.0).tolist()
        [-0.5]
    """
    x, t, _, chol, mean = _gibbs_moments(
        lambda pi, y, _: _gibbs_mean(pi, y), x, y, g, t, eps, A, log_w
    )
    return _kernels.inv_metric(chol, x - mean) / t


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
        log_w: log-weights ``(N,)``; ``-inf`` masks an atom (at least one must stay
            active: the zero measure has no Gibbs weights).
        A: symmetric positive-definite metric ``(d, d)`` (default identity).

    Returns:
        ``∇²_x u(x, t)`` of shape ``(*batch, d, d)``.

    Example:
        >>> import jax.numpy as jnp
        >>> y = jnp.array([[-1.0], [1.0]]); g = jnp.zeros(2)
        >>> hopf_cole_hessian(jnp.array([0.0]), y, g, 1.0, 0.5).tolist()  # 1 − 1/0.5
        [[-1.0]]
    """
    x, t, eps, chol, cov = _gibbs_moments(_whitened_gibbs_cov, x, y, g, t, eps, A, log_w)
    A_inv = _kernels.inv_metric(chol, jnp.eye(x.shape[-1], dtype=x.dtype))
    A_inv = (A_inv + A_inv.T) / 2
    shock = jnp.where(eps > 0, cov / (_kernels.safe(eps) * t**2), jnp.zeros_like(cov))
    return A_inv / t - shock
