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
  :func:`hj_gibbs`, :func:`affine_logits`, :func:`normalization`.
* **Blocked reductions over the atoms**: :func:`hj_reduce` and :func:`affine_reduce`
  apply a per-query reduction of the logits (value, Gibbs moments, minimum) to cache-sized
  blocks of queries; :func:`block_rows`, :func:`hj_atoms`, :func:`hj_block_logits` (also
  used by :mod:`hjax.sweep`).
* **Initialization**: :func:`gaussians` (one random draw for many parameter arrays).

"Tilted" logits ``s_j = z_j + eps log w_j`` carry the measure's weights; a masked atom
(``log w_j = -inf``) has ``s_j = -inf`` and contributes nothing, to values and gradients.

**Blocked evaluation and its derivatives.** A batch of B queries against N atoms is
evaluated in blocks of :func:`block_rows` ``(N)`` queries (on CPU ``rows · N ≈ 2^20``
logits, 4 MiB in float32, which stays in the last-level cache while it is reduced — on
XLA:CPU each pass over a block costs about as much as its exps, so fewer, larger blocks are
faster; on an accelerator ``2^24``, wide enough to fill it), with a ``lax.map`` over the
blocks. The
B×N logits and the B×N×d differences are never held: the logits of a block come from one
matrix product in the expanded form

.. math::

    -\frac{|x - y_j|^2}{2t} - g_j = \frac{\tilde x\cdot\tilde y_j}{t}
        - \frac{|\tilde x|^2}{2t} - \frac{|\tilde y_j|^2}{2t} - g_j,
    \qquad \tilde x = x - c,\; \tilde y_j = y_j - c,

shifted by the atoms' mean ``c`` (one shift shared by every block, so a query's value
does not depend on which block it falls in; the shift cancels exactly in real arithmetic
and is held constant under differentiation). The expansion cancels where ``|x − y_j|`` is
small next to ``|x − c| + |y_j − c|``: its absolute logit error is about
``ε (|x̃|² + |ỹ_j|²)/(2t)`` (``ε`` the unit round-off) where the difference form has
``ε |x − y_j| (|x| + |y_j|)/t``; measured in float32 with queries and atoms
standard normal in d = 2 and 8 (t = 0.7, tests/test_kernels.py) it stays below ``1e-5``
in ``u`` against a float64 reference. Small batches (``B · N ≤ 2^16`` logits, as in most
tests of the public modules) use the direct difference form unblocked.

Derivatives in every mode come from JAX itself, not from a ``custom_vjp``: the block body
is a ``jax.checkpoint`` inside the ``lax.map``, so reverse mode stores only the block
inputs (``O(B·d)``) and recomputes each block's logits and Gibbs weights in the backward
pass, accumulating the atoms' cotangents in the scan carry (``O(N·d)``); peak memory is
``O(B·d + N·d + block)``. Forward mode (eps-derivatives, ``jax.hessian``, jvp-of-grad)
goes through the same code, and the custom JVPs of :func:`lse_last` and
:func:`gibbs_last` keep the exact ``eps = 0`` limit, ties and masks in every mode. (A
``custom_vjp`` would have allowed a backward pass that reuses the forward's log-sum-exp,
but it cannot be differentiated in forward mode, which the eps-derivatives need.)

**Fused CPU kernels.** On the CPU, for float32/float64 batches above the direct size
(``B · N > 2^16``), :func:`hj_lse`, :func:`hj_max` and :func:`affine_lse` (the values of
``hopf_cole``, ``hopf_lax`` and ``lse_layer``) call the primitives of :mod:`hjax._native`
instead: the same expanded-form logits, an online log-sum-exp over L1-sized blocks of
atoms, and first derivatives (forward and reverse) from fused kernels that reuse the
log-sum-exp; their rules cover every transformation (module docstring there). Elsewhere
(GPU/TPU, no compiler, other dtypes) the blocked XLA path above is used.
"""

import math

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero
from jax.scipy.linalg import solve_triangular

from . import _native
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


def _lse_last_jvp(primals, tangents):
    """The JVP of :func:`lse_last`; a symbolic-zero tangent skips its term (a gradient in
    the logits alone never evaluates the entropy, one ``log`` per atom)."""
    s, eps = primals
    ds, deps = tangents
    val = lse_last(s, eps)
    pi = gibbs_last(s, eps)
    dval = jnp.zeros_like(val)
    if not isinstance(ds, SymbolicZero):
        dval = dval + jnp.sum(pi * jnp.where(pi > 0, ds, jnp.zeros_like(ds)), axis=-1)
    if not isinstance(deps, SymbolicZero):
        dval = dval + entropy_last(pi) * deps
    return val, dval


lse_last.defjvp(_lse_last_jvp, symbolic_zeros=True)


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
    Evaluated by the fused CPU kernel (:func:`affine_lse`) or block by block
    (:func:`hj_reduce`).
    """
    if _is_one_block(x, y.shape[0]) or not _native.usable(x.dtype):
        return hj_reduce(lambda z: lse_last(tilt(z, eps, log_w), eps), x, y, g, t, chol)
    centre, y_t, bias, t = hj_atoms(whiten(chol, y), g, t)
    x_c = whiten(chol, x).reshape(-1, x.shape[-1]) - centre
    value = _native.affine_lse(x_c, y_t.T, tilt(bias, eps, log_w), eps)
    return (value - jnp.sum(x_c * x_c, axis=-1) / (2 * t)).reshape(x.shape[:-1])


def hj_max(x: Array, y: Array, g: Array, t: Array, chol: Array | None) -> Array:
    r"""``max_j z_j(x) = −min_j [c_t(x, y_j) + g_j]``, shape ``(*batch,)`` (Hopf–Lax, Thm 5.1).

    A max of the logits, no exp: block by block with ``jnp.max`` (whose derivative averages
    over ties), or on the CPU the fused kernel's eps = 0 branch (the same derivative).
    """
    if _is_one_block(x, y.shape[0]) or not _native.usable(x.dtype):
        return hj_reduce(lambda z: jnp.max(z, axis=-1), x, y, g, t, chol)
    return hj_lse(x, y, g, t, jnp.zeros((), x.dtype), chol, None)


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
# Blocked reductions over the atoms (cache-sized blocks of queries; module docstring)
# --------------------------------------------------------------------------------------

#: Logits per block (``rows × N``) and the range of rows (powers of two), per backend. On
#: CPU 2^20 logits (4 MiB in float32) are reduced while still in cache; an accelerator
#: needs wide blocks to fill its cores (2^24 logits, 64 MiB in float32).
_BLOCK_SHAPES = {"cpu": (2**20, 8, 1024)}
_ACCELERATOR_BLOCK_SHAPE = (2**24, 8, 2**16)


def block_rows(n_atoms: int) -> int:
    """Queries per block: the power of two at or below ``logits / N`` within the backend's
    range (``2^20 / N`` in ``[8, 1024]`` on CPU, ``2^24 / N`` in ``[8, 2^16]`` elsewhere)."""
    logits, lo, hi = _BLOCK_SHAPES.get(jax.default_backend(), _ACCELERATOR_BLOCK_SHAPE)
    rows = max(logits // n_atoms, 1)
    return min(hi, max(lo, 1 << (rows.bit_length() - 1)))


def _split_rows(a: Array, rows: int, fill: str) -> Array:
    """``(B, ...)`` → ``(n_blocks, rows, ...)``, padding B up to a multiple of ``rows`` with
    copies of the last row (``fill="edge"``) or zeros (``fill="zeros"``)."""
    pad = -a.shape[0] % rows
    if pad:
        tail = jnp.repeat(a[-1:], pad, axis=0)
        a = jnp.concatenate([a, tail if fill == "edge" else jnp.zeros_like(tail)])
    return a.reshape(-1, rows, *a.shape[1:])


def _over_blocks(block, x: Array, n_atoms: int, row_args: tuple[Array, ...]):
    """``block(x_rows, *row_args_rows)`` over the flattened queries: ``(B, ...)`` outputs.

    ``x``: ``(B, d)``, ``row_args``: arrays with leading axis B. The rows are padded to a
    multiple of :func:`block_rows` by repeating the last row (padded rows are evaluated
    like any other and dropped) and mapped with ``lax.map`` over a ``jax.checkpoint`` ed
    block (reverse mode recomputes the block instead of storing it).
    """
    rows, n = block_rows(n_atoms), x.shape[0]
    blocks = tuple(_split_rows(a, rows, "edge") for a in (x, *row_args))
    out = jax.lax.map(lambda args: jax.checkpoint(block)(*args), blocks)
    return jax.tree.map(lambda o: o.reshape(-1, *o.shape[2:])[:n], out)


def _sum_over_blocks(block, x: Array, n_atoms: int, row_args: tuple[Array, ...]):
    """``Σ_blocks block(x_rows, *row_args_rows)``, accumulated in a ``lax.scan`` carry.

    The padding rows of ``row_args`` are zeros (``x`` repeats its last row): ``block`` must
    give them no weight (e.g. sums weighted by a cotangent among ``row_args``).
    """
    rows = block_rows(n_atoms)
    blocks = (_split_rows(x, rows, "edge"), *(_split_rows(a, rows, "zeros") for a in row_args))
    step = jax.checkpoint(block)
    zero = jax.tree.map(jnp.zeros_like, jax.eval_shape(step, *(b[0] for b in blocks)))
    total, _ = jax.lax.scan(
        lambda acc, args: (jax.tree.map(jnp.add, acc, step(*args)), None), zero, blocks
    )
    return total


#: Up to this many logits (queries × atoms) a batch is evaluated directly, unblocked.
_DIRECT_LOGITS = 2**16


def _is_one_block(x: Array, n_atoms: int) -> bool:
    """Small batches are evaluated directly (module docstring)."""
    return math.prod(x.shape[:-1]) * n_atoms <= _DIRECT_LOGITS


def hj_atoms(y: Array, g: Array, t: Array) -> tuple[Array, Array, Array, Array]:
    """``(c, ỹᵀ/t, −|ỹ|²/(2t) − g, t)`` with ``ỹ = y − c``, ``c`` the atoms' mean: the
    atom-side factors of :func:`hj_block_logits` (computed once, shared by every block).
    ``y`` must be whitened (``L⁻¹y``)."""
    centre = jax.lax.stop_gradient(jnp.mean(y, axis=0))
    y_c = y - centre
    return centre, y_c.T / t, -(jnp.sum(y_c * y_c, axis=-1) / (2 * t) + g), t


def hj_block_logits(x: Array, atoms: tuple[Array, Array, Array, Array]) -> Array:
    r"""Hopf–Cole logits ``−(|x − y_j|²/(2t) + g_j)`` of whitened queries ``(rows, d)`` in
    the expanded form ``x̃·ỹ_j/t − |x̃|²/(2t) − |ỹ_j|²/(2t) − g_j`` (one matrix product;
    the accuracy is discussed in the module docstring). Returns ``(rows, N)``."""
    centre, y_t, bias, t = atoms
    x_c = x - centre
    return x_c @ y_t + bias - (jnp.sum(x_c * x_c, axis=-1) / (2 * t))[:, None]


def hj_reduce(reduce, x: Array, y: Array, g: Array, t: Array, chol: Array | None, *row_args):
    r"""``reduce(z, *row_args)`` of the Hopf–Cole logits ``z_j(x) = −(c_t(x, y_j) + g_j)``,
    block by block.

    ``reduce`` maps logits ``(*rows, N)`` (and ``row_args`` with the same leading axes) to
    a pytree of arrays with leading axes ``*rows``: it must treat every query row on its
    own. ``x``: ``(*batch, d)``; returns the pytree with leading axes ``*batch``. One block
    or less: ``reduce(hj_logits(x, …))`` with the difference form; more: cache-sized blocks
    of the expanded form (:func:`hj_block_logits`), never holding ``B × N``.
    """
    if _is_one_block(x, y.shape[0]):
        return reduce(hj_logits(x, y, g, t, chol), *row_args)
    atoms = hj_atoms(whiten(chol, y), g, t)
    flat, flat_args = _flat_rows(whiten(chol, x), row_args)
    out = _over_blocks(
        lambda xb, *ab: reduce(hj_block_logits(xb, atoms), *ab), flat, y.shape[0], flat_args
    )
    return jax.tree.map(lambda o: o.reshape(*x.shape[:-1], *o.shape[1:]), out)


def _flat_rows(x: Array, row_args: tuple[Array, ...]) -> tuple[Array, tuple[Array, ...]]:
    """``x`` ``(*batch, d)`` → ``(B, d)`` and the row arguments ``(*batch, ...)`` → ``(B, ...)``."""
    n_batch = x.ndim - 1
    flat = x.reshape(-1, x.shape[-1])
    return flat, tuple(a.reshape(flat.shape[0], *a.shape[n_batch:]) for a in row_args)


def affine_reduce(reduce, x: Array, W: Array, b: Array, *row_args):
    r"""``reduce(Wx + b, *row_args)`` block by block: :func:`hj_reduce` for the LSE-layer
    logits :func:`affine_logits` (already a matrix product: the blocks bound the memory
    and keep each block in cache)."""
    if _is_one_block(x, W.shape[0]):
        return reduce(affine_logits(x, W, b), *row_args)
    flat, flat_args = _flat_rows(x, row_args)
    W_t = W.T
    out = _over_blocks(lambda xb, *ab: reduce(xb @ W_t + b, *ab), flat, W.shape[0], flat_args)
    return jax.tree.map(lambda o: o.reshape(*x.shape[:-1], *o.shape[1:]), out)


def affine_lse(x: Array, W: Array, b: Array, eps: Array) -> Array:
    r"""``lse(Wx + b, eps)`` of queries ``(*batch, d)``: :func:`lse_last` of
    :func:`affine_logits`, by the fused CPU kernel (:mod:`hjax._native`) where it is usable
    and the batch is above the direct size, else block by block (:func:`affine_reduce`)."""
    if _is_one_block(x, W.shape[0]) or not _native.usable(x.dtype):
        return affine_reduce(lambda z: lse_last(z, eps), x, W, b)
    flat = x.reshape(-1, x.shape[-1])
    return _native.affine_lse(flat, W, b, eps).reshape(x.shape[:-1])


def affine_sum(reduce, x: Array, W: Array, b: Array, *row_args):
    r"""``reduce(Wx + b, *row_args)`` for a ``reduce`` that sums over the query rows (e.g.
    the parameter gradients of a batch), block by block and accumulated: memory
    ``O(N·d + block)`` whatever the batch. Rows with zero ``row_args`` must add nothing."""
    if _is_one_block(x, W.shape[0]):
        return reduce(affine_logits(x, W, b), *row_args)
    flat, flat_args = _flat_rows(x, row_args)
    W_t = W.T
    return _sum_over_blocks(lambda xb, *ab: reduce(xb @ W_t + b, *ab), flat, W.shape[0], flat_args)


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
