r"""Private numerical kernels shared by the public modules (THEORY.md §0–§3).

Every public function of :mod:`hjax.semiring`, :mod:`hjax.hopf_cole`, :mod:`hjax.layers`,
:mod:`hjax.sweep`, :mod:`hjax.feynman_kac` and :mod:`hjax.attention` is a thin boundary —
cast to one float dtype and check the arguments (:mod:`hjax._validate`) — around the kernels
below. The kernels do no validation: they take arrays of one floating dtype (and return
that dtype), the atom axis last, ``eps`` a 0-d array ``>= 0`` and ``t`` a 0-d array
``> 0``, and they are pure, jit/vmap/grad-safe functions. Four groups:

* **Semiring on the last axis** (§0–§1, Thm 3.1): :func:`lse_last`, :func:`gibbs_last`
  (custom JVPs, exact at ``eps = 0``, finite on masked atoms), :func:`entropy_last`, and
  the helpers :func:`safe`, :func:`mask`, :func:`tilt`.
* **Metric** ``A = LLᵀ`` (§2, Thm 4.4): :func:`metric`, :func:`whiten`,
  :func:`inv_metric` — every use of A goes through its Cholesky factor.
* **Hopf–Cole** (§2–§3, Thm 4.1): :func:`cost`, :func:`hj_logits`, :func:`hj_lse`,
  :func:`hj_gibbs`, :func:`affine_logits`, :func:`normalization`. :func:`hj_lse` and
  :func:`hj_gibbs` are the two reductions over the atoms (value and Gibbs weights of the
  discrete-measure solution), the units a blocked implementation would replace.
* **Initialization**: :func:`gaussians` (one random draw for many parameter arrays).

"Tilted" logits ``s_j = z_j + eps log w_j`` carry the measure's weights; a masked atom
(``log w_j = -inf``) has ``s_j = -inf`` and contributes nothing, to values and gradients.
"""

import math

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from ._types import Array

# --------------------------------------------------------------------------------------
# Semiring kernels on tilted logits s (masked entries -inf), atom axis last (§0–§1)
# --------------------------------------------------------------------------------------


def safe(eps: Array) -> Array:
    """``eps`` where ``eps > 0``, else 1: the divisor of the eps > 0 branch, which is
    evaluated but discarded at ``eps = 0`` (never ``x / 0``, so never a NaN gradient)."""
    return jnp.where(eps > 0, eps, jnp.ones_like(eps))


def _nonzero(v: Array) -> Array:
    """1 where v == 0, else v (NaN stays NaN): a denominator for sums that may be empty."""
    return jnp.where(v == 0, jnp.ones_like(v), v)


def mask(log_w: Array) -> tuple[Array, Array]:
    """``(active, log_w with masked entries replaced by 0)``: never forms ``0 · (−inf)``.

    An atom is masked iff its log-weight is exactly ``-inf``; a NaN log-weight stays active
    (the API boundary rejects it), so a NaN could never silently remove an atom.
    """
    active = log_w != -jnp.inf
    return active, jnp.where(active, log_w, jnp.zeros_like(log_w))


def tilt(z: Array, eps: Array, log_w: Array | None) -> Array:
    r"""Tilted logits ``s_j = z_j + eps log w_j`` on active atoms, ``-inf`` on masked ones.

    Then ``lse(z, eps; w) = eps log Σ_j w_j e^{z_j/eps} = eps log Σ_j e^{s_j/eps}``. The
    ``where`` selects between finite branches only (``log w`` replaced by 0 on masked atoms),
    so the derivative in eps is never ``0 · (−inf)`` (JAX issue 6811). ``None``: ``s = z``.
    """
    if log_w is None:
        return z
    active, log_w_fin = mask(log_w)
    return jnp.where(active, z + eps * log_w_fin, jnp.full_like(z, -jnp.inf))


def _shifted_max(s: Array) -> tuple[Array, Array]:
    """(max, finite max) over the last axis, keepdims. The finite one is 0 if all masked."""
    m = jnp.max(s, axis=-1, keepdims=True)
    return m, jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m))


@jax.custom_jvp
def gibbs_last(s: Array, eps: Array) -> Array:
    r"""Gibbs weights over the last axis; the argmax weights at ``eps = 0`` (§0, §3).

    .. math::

        \pi_j = \frac{e^{(s_j - m)/\varepsilon}}{\sum_k e^{(s_k - m)/\varepsilon}},
        \quad m = \max_k s_k \;(\varepsilon > 0), \qquad
        \pi_j = \frac{[s_j = m]}{\#\{k : s_k = m\}} \;(\varepsilon = 0).

    Masked entries (``s_j = -inf``) get ``π_j = 0``; if every entry is masked (the zero
    measure) all weights are 0, for every eps. If some entries are ``+inf`` the weights
    are uniform over them, for every eps (the limit of finite logits growing to ``+inf``),
    with derivative 0.

    Derivatives (custom JVP; :func:`lse_last` is their potential, ``π = ∂lse/∂s``):

    .. math::

        d\pi_j = \frac{\pi_j}{\varepsilon}\big(ds_j - \langle\pi, ds\rangle\big)
               - \frac{\pi_j}{\varepsilon^2}\big(s_j - \langle\pi, s\rangle\big)\, d\varepsilon,

    i.e. ``∂π/∂s = (diag π − ππᵀ)/eps`` (Prop D.2) and ``∂π_j/∂eps = −π_j (s_j − E_π s)/eps²``
    (a hotter temperature moves mass from above-average to below-average atoms). Masked
    entries are replaced by 0 in both centrings (``π_j = 0`` there), so no ``0 · inf`` is
    formed. At ``eps = 0`` the weights are piecewise constant in ``s`` and the derivative is
    taken to be 0 (the one-sided limit in eps is not; see :func:`lse_last`).
    """
    m, m_fin = _shifted_max(s)
    e = jnp.exp((s - jax.lax.stop_gradient(m_fin)) / safe(eps))
    soft = e / _nonzero(jnp.sum(e, axis=-1, keepdims=True))
    ties = ((s == m) & (s > -jnp.inf)).astype(s.dtype)
    hard = ties / _nonzero(jnp.sum(ties, axis=-1, keepdims=True))
    return jnp.where((eps > 0) & (m < jnp.inf), soft, hard)


@gibbs_last.defjvp
def _gibbs_last_jvp(primals, tangents):
    s, eps = primals
    ds, deps = tangents
    pi = gibbs_last(s, eps)
    safe_eps = safe(eps)
    m, m_fin = _shifted_max(s)
    smooth = (eps > 0) & (m < jnp.inf)  # else piecewise constant: derivative 0
    s0 = jnp.where(smooth & (pi > 0), s - m_fin, jnp.zeros_like(s))
    centred_ds = ds - jnp.sum(pi * ds, axis=-1, keepdims=True)
    centred_s = s0 - jnp.sum(pi * s0, axis=-1, keepdims=True)
    dpi = pi * (centred_ds / safe_eps - centred_s * deps / safe_eps**2)
    return pi, jnp.where(smooth, dpi, jnp.zeros_like(dpi))


def entropy_last(pi: Array) -> Array:
    r"""Shannon entropy ``H(π) = −Σ_j π_j log π_j`` over the last axis (``0 log 0 = 0``).

    The eps-derivative of :func:`lse_last` (Prop F.1's attribution entropy): ``0 <= H <=
    log N``, ``log k`` for the uniform weights on a k-fold tie.
    """
    pi_safe = jnp.where(pi > 0, pi, jnp.ones_like(pi))
    return -jnp.sum(jnp.where(pi > 0, pi * jnp.log(pi_safe), jnp.zeros_like(pi)), axis=-1)


@jax.custom_jvp
def lse_last(s: Array, eps: Array) -> Array:
    r"""``eps log Σ_j exp(s_j/eps)`` over the last axis; ``max_j s_j`` at eps = 0 (Thm 3.1).

    Shifted by ``m = max s``. For two atoms (:func:`hjax.softplus_eps`,
    :func:`hjax.tropical_add`, log-add-exp) the closed form
    ``m + eps log1p(exp((min s − m)/eps))`` keeps full relative precision in ``lse − m``
    however small it is (``log(1 + r)`` rounds ``r < 1e-16`` to 0: ``softplus_eps(-40, 1)``
    would be 0 instead of ``4.25e-18``). For ``N > 2`` it is
    ``m + eps log Σ_j exp((s_j − m)/eps)``, one pass over the atoms, accurate to the
    rounding of ``m``: a log1p form would need the number of tied maxima, a second pass
    over the atoms (measured 40–90% slower for ``hopf_cole`` on B×N pairs on XLA:CPU).
    ``m = ±inf`` (every atom masked, or an infinite logit) is returned as is.

    Derivatives (custom JVP), with ``π = gibbs_last(s, eps)``:

    .. math::

        d\,\mathrm{lse} = \langle \pi, ds\rangle + H(\pi)\, d\varepsilon,
        \qquad H(\pi) = -\sum_j \pi_j \log \pi_j = \frac{\mathrm{lse} - \langle\pi, s\rangle}
        {\varepsilon} \ge 0,

    so lse is nondecreasing in eps, and ``∂²lse/∂eps² = Var_π(s)/eps³ ≥ 0`` (through the
    JVP of :func:`gibbs_last`). At ``eps = 0`` the eps-derivative is the one-sided limit
    ``log k`` for a k-fold tie of the max (0 without ties). Masked entries contribute 0
    (``ds`` is read only where ``π > 0``).
    """
    m, m_fin = _shifted_max(s)
    safe_eps = safe(eps)
    if s.shape[-1] == 2:
        lo = jnp.min(s, axis=-1, keepdims=True)
        log_sum = jnp.log1p(jnp.exp((lo - m_fin) / safe_eps))
    else:
        log_sum = jnp.log(jnp.sum(jnp.exp((s - m_fin) / safe_eps), axis=-1, keepdims=True))
    soft = m_fin + safe_eps * log_sum
    return jnp.squeeze(jnp.where((eps > 0) & jnp.isfinite(m), soft, m), axis=-1)


@lse_last.defjvp
def _lse_last_jvp(primals, tangents):
    s, eps = primals
    ds, deps = tangents
    pi = gibbs_last(s, eps)
    dval = jnp.sum(pi * jnp.where(pi > 0, ds, jnp.zeros_like(ds)), axis=-1)
    return lse_last(s, eps), dval + entropy_last(pi) * deps


# --------------------------------------------------------------------------------------
# The metric A = LLᵀ (Thm 4.4)
# --------------------------------------------------------------------------------------


def metric(A: Array | None, dtype) -> tuple[Array | None, Array]:
    r"""``(L, log det A)`` for a validated symmetric positive-definite ``A = LLᵀ``.

    ``L`` is the lower Cholesky factor (``None`` for the identity, ``A = None``) and
    ``log det A = 2 Σ_i log L_ii`` (0 for the identity). Every use of A goes through L
    (:func:`whiten`, :func:`inv_metric`): triangular solves, never an explicit inverse.
    """
    if A is None:
        return None, jnp.zeros((), dtype)
    chol = jnp.linalg.cholesky(A)
    return chol, 2 * jnp.sum(jnp.log(jnp.diagonal(chol)))


def whiten(chol: Array | None, v: Array) -> Array:
    """``L⁻¹ v`` row-wise for ``v`` of shape (..., d), so that ``|L⁻¹v|² = vᵀA⁻¹v``."""
    if chol is None:
        return v
    flat = v.reshape(-1, v.shape[-1])
    return solve_triangular(chol, flat.T, lower=True).T.reshape(v.shape)


def inv_metric(chol: Array | None, v: Array) -> Array:
    """``A⁻¹ v = L⁻ᵀ L⁻¹ v`` row-wise for ``v`` of shape (..., d)."""
    if chol is None:
        return v
    flat = whiten(chol, v).reshape(-1, v.shape[-1])
    return solve_triangular(chol.T, flat.T, lower=False).T.reshape(v.shape)


# --------------------------------------------------------------------------------------
# Hopf–Cole (§2–§3, Thm 4.1, Thm 4.4)
# --------------------------------------------------------------------------------------


def cost(x: Array, y: Array, t: Array, chol: Array | None) -> Array:
    r"""Transport cost ``c_t(x, y_j) = (x − y_j)ᵀA⁻¹(x − y_j)/(2t) = |L⁻¹x − L⁻¹y_j|²/(2t)``.

    ``x``: ``(*batch, d)``, ``y``: ``(N, d)``; returns ``(*batch, N)``.
    """
    diff = whiten(chol, x)[..., None, :] - whiten(chol, y)  # (*batch, N, d)
    return jnp.sum(diff * diff, axis=-1) / (2 * t)


def hj_logits(x: Array, y: Array, g: Array, t: Array, chol: Array | None) -> Array:
    r"""Hopf–Cole logits ``z_j(x) = −(c_t(x, y_j) + g_j)``, shape ``(*batch, N)`` (Thm 4.1).

    ``u^N_eps(x, t) = −lse(z(x), eps; w)``, and ``z_j(x) = W_j·x + b_j − xᵀA⁻¹x/(2t)`` for the
    layer reading ``W_j = A⁻¹y_j/t``, ``b_j = −(y_jᵀA⁻¹y_j/(2t) + g_j)`` (THEORY §3).
    """
    return -(cost(x, y, t, chol) + g)


def hj_lse(
    x: Array, y: Array, g: Array, t: Array, eps: Array, chol: Array | None, log_w: Array | None
) -> Array:
    r"""``eps log Σ_j w_j exp(−(c_t(x, y_j) + g_j)/eps) = −u^N_eps(x, t)``, shape ``(*batch,)``.

    The value reduction of the discrete-measure Hopf–Cole solution (THEORY §2); at
    ``eps = 0`` exactly ``−min_{j active} [c_t(x, y_j) + g_j]`` (Hopf–Lax, Thm 5.1).
    """
    return lse_last(tilt(hj_logits(x, y, g, t, chol), eps, log_w), eps)


def hj_gibbs(
    x: Array, y: Array, g: Array, t: Array, eps: Array, chol: Array | None, log_w: Array | None
) -> Array:
    r"""Hopf–Cole Gibbs weights ``π_j(x) ∝ w_j exp(−(c_t(x, y_j) + g_j)/eps)``, ``(*batch, N)``.

    The normalized heat-kernel weights ``∝ w_j K_{eps t}(x − y_j) e^{−g_j/eps}`` (Prop E.6),
    the gradient of :func:`hj_lse` in the logits; uniform over the Hopf–Lax minimisers at
    ``eps = 0``.
    """
    return gibbs_last(tilt(hj_logits(x, y, g, t, chol), eps, log_w), eps)


def affine_logits(x: Array, W: Array, b: Array) -> Array:
    """LSE-layer pre-activations ``z_j = W_j·x + b_j``: ``(*batch, d)`` → ``(*batch, N)``."""
    return jnp.einsum("...d,nd->...n", x, W) + b


def normalization(d: int, t: Array, eps: Array, logdet_A: Array) -> Array:
    r"""Heat-kernel normalization ``(eps d/2) log(2π eps t) + (eps/2) log det A`` (§2).

    ``−eps log`` of the Gaussian prefactor ``(2π eps t)^{−d/2} det(A)^{−1/2}``; 0 at
    ``eps = 0`` (its limit, ``eps log eps → 0``), with finite derivatives there.
    """
    safe_eps = safe(eps)
    term = safe_eps * (d / 2 * jnp.log(2 * jnp.pi * safe_eps * t) + logdet_A / 2)
    return jnp.where(eps > 0, term, jnp.zeros_like(term))


# --------------------------------------------------------------------------------------
# Initialization
# --------------------------------------------------------------------------------------


def gaussians(key: Array, specs: list[tuple[tuple[int, ...], float]], dtype) -> list[Array]:
    """Independent ``scale · N(0, 1)`` arrays of the given ``(shape, scale)`` specs.

    One draw (not one per leaf) keeps initialization to a single RNG kernel to compile.
    ``dtype=None`` is the default float dtype.
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    sizes = [math.prod(shape) for shape, _ in specs]
    z = jax.random.normal(key, (sum(sizes),), dtype)
    out, start = [], 0
    for (shape, scale), size in zip(specs, sizes, strict=True):
        out.append(z[start : start + size].reshape(shape) * scale)
        start += size
    return out
