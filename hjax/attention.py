r"""Attention as Gibbs expectations; the LSE transformer block (THEORY.md §5, eq. 6–7, Prop H.9).

Row i of ``softmax(QKᵀ/eps) V`` is the Gibbs average ``E_{π_i}[V]`` with

.. math::

    \pi_i = \mathrm{gibbs}(K q_i, \varepsilon)
          = \nabla_z \mathrm{lse}(z, \varepsilon)\big|_{z = K q_i},

an LSE layer in the query (``W = K``, ``b = 0``; Thm 4.1, Prop H.9). With L2 logits
``−|q − k_j|²/(2t)`` the weights are exactly the Hopf–Cole Gibbs weights of the atoms
``k_j`` with ``g = 0``, and the partition function is ``exp(−u^N_eps(q, t)/eps)``
(Thm 4.2). ``eps → 0`` is hard (argmax / nearest-key) attention, exactly at ``eps = 0``.
The log-partition is a semiring sum, so a running ``(max, mass, mean)`` state absorbs one
key/value at a time (the O(1) KV-cache update, Remark H.11), and a dominant key pins the
output (attention sink, Remark H.12).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _kernels, _validate
from ._types import Array, ArrayLike, Bool, Float, Int, ScalarLike
from .layers import LSEBlock

__all__ = [
    "KVState",
    "LSEAttention",
    "LSEFeedForward",
    "LSETransformerBlock",
    "attention_sink_bound",
    "attention_weights",
    "dot_product_attention",
    "kv_init",
    "kv_lse",
    "kv_update",
    "l2_attention",
    "l2_attention_weights",
    "l2_log_partition",
]


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _qk(Q, K, **extra):
    """Cast Q, K (and the named ``extra`` arrays, for the dtype) to one float dtype.

    Checks the shapes, the key/query dimension, at least one key, finite entries.
    """
    dtype = _validate.real_dtype(Q=Q, K=K, **extra)
    Q = jnp.asarray(Q, dtype)
    K = jnp.asarray(K, dtype)
    if Q.ndim < 2 or K.ndim < 2:
        raise ValueError(
            f"`Q` and `K` must have shapes (*batch, n_q, d_k) and (*batch, n_k, d_k); "
            f"got {Q.shape} and {K.shape}."
        )
    _validate.same_last_dim("Q", Q, "K", K)
    _validate.at_least_one_atom("K", K.shape[-2], K.shape)
    return _validate.finite("Q", Q), _validate.finite("K", K), dtype


def _values(V, K, dtype) -> Array:
    V = jnp.asarray(V, dtype)
    if V.ndim < 2 or V.shape[-2] != K.shape[-2]:
        raise ValueError(
            f"`V` must have shape (*batch, n_k, d_v) with n_k = {K.shape[-2]} keys; got {V.shape}."
        )
    return _validate.finite("V", V)


def _mask_log_w(mask, shape: tuple[int, ...], dtype) -> Array | None:
    """Boolean mask (True = attend) → log-weights 0 / −inf, every query keeping a key."""
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise ValueError(f"`mask` must be boolean (True = attend); got dtype {mask.dtype}.")
    try:
        mask = jnp.broadcast_to(mask, shape)
    except ValueError:
        raise ValueError(
            f"`mask` of shape {mask.shape} does not broadcast to the logits' shape {shape}."
        ) from None
    empty = ~jnp.any(mask, axis=-1)
    message = "`mask` must let every query attend to at least one key"
    if _validate.is_traced(mask):
        mask = eqx.error_if(mask, jnp.any(empty), message)
    elif np.any(np.asarray(empty)):
        raise ValueError(message + ".")
    return jnp.where(mask, jnp.zeros(shape, dtype), jnp.full(shape, -jnp.inf, dtype))


def _l2_logits(Q, K, t, dtype) -> Array:
    """``−|q_i − k_j|²/(2t) = −c_t(q_i, k_j)``: the Hopf–Cole logits of atoms k_j, g = 0."""
    t = _validate.positive_scalar("t", t, dtype)
    diff = Q[..., :, None, :] - K[..., None, :, :]
    return -jnp.sum(diff * diff, axis=-1) / (2 * t)


def _masked(logits, eps, mask, dtype) -> tuple[Array, Array]:
    """(tilted logits with masked keys at ``-inf``, validated eps) for the kernels."""
    eps = _validate.nonnegative_scalar("eps", eps, dtype)
    return _kernels.tilt(logits, eps, _mask_log_w(mask, logits.shape, dtype)), eps


def _dot_weights(Q, K, eps, mask, dtype) -> Array:
    """``gibbs(K q_i, eps)`` for validated Q, K (eps defaults to ``√d_k``)."""
    eps = np.sqrt(Q.shape[-1]) if eps is None else eps
    return _kernels.gibbs_last(*_masked(jnp.einsum("...qd,...kd->...qk", Q, K), eps, mask, dtype))


# --------------------------------------------------------------------------------------
# Dot-product (eq. 6–7, Prop H.9) and L2 attention (Thm 4.2)
# --------------------------------------------------------------------------------------


def attention_weights(
    Q: Float[ArrayLike, "*batch nq dk"],
    K: Float[ArrayLike, "*batch nk dk"],
    eps: ScalarLike | None = None,
    *,
    mask: Bool[ArrayLike, "..."] | None = None,
) -> Float[Array, "*batch nq nk"]:
    r"""Dot-product attention weights ``π_i = gibbs(K q_i, eps) = ∇_z lse(K q_i, eps)`` (eq. 7).

    Args:
        Q: queries ``(*batch, n_q, d_k)``.
        K: keys ``(*batch, n_k, d_k)``.
        eps: temperature ``>= 0``; default ``√d_k`` (``eps = 0``: hard argmax attention).
        mask: optional boolean ``(*batch, n_q, n_k)`` (broadcastable), True = attend.

    Returns:
        ``π`` of shape ``(*batch, n_q, n_k)``, rows summing to 1.

    Example:
        >>> import jax.numpy as jnp
        >>> attention_weights(jnp.ones((1, 1)), jnp.array([[1.0], [0.0]]), 0.0).tolist()
        [[1.0, 0.0]]
    """
    Q, K, dtype = _qk(Q, K)
    return _dot_weights(Q, K, eps, mask, dtype)


def dot_product_attention(
    Q: Float[ArrayLike, "*batch nq dk"],
    K: Float[ArrayLike, "*batch nk dk"],
    V: Float[ArrayLike, "*batch nk dv"],
    eps: ScalarLike | None = None,
    *,
    mask: Bool[ArrayLike, "..."] | None = None,
) -> Float[Array, "*batch nq dv"]:
    r"""Scaled dot-product attention as a Gibbs expectation (eq. 6–7, Prop H.9).

    .. math::

        \mathrm{Attn}(Q, K, V)_i = E_{\pi_i}[V] = V^\top \nabla_z
            \mathrm{lse}(z, \varepsilon)\big|_{z = K q_i}, \qquad \varepsilon = \sqrt{d_k}
            \text{ by default},

    i.e. ``softmax(QKᵀ/eps) V``; at ``eps = 0`` the average of the values of the
    highest-scoring keys (hard attention).

    Args:
        Q: queries ``(*batch, n_q, d_k)``.
        K: keys ``(*batch, n_k, d_k)``.
        V: values ``(*batch, n_k, d_v)``.
        eps: temperature ``>= 0``; default ``√d_k``.
        mask: optional boolean ``(*batch, n_q, n_k)`` (broadcastable), True = attend; every
            query must keep at least one key.

    Returns:
        ``(*batch, n_q, d_v)``.

    Example:
        >>> import jax.numpy as jnp
        >>> dot_product_attention(jnp.ones((1, 1)), jnp.array([[1.0], [0.0]]),
        ...                       jnp.array([[2.0], [4.0]]), 0.0).tolist()
        [[2.0]]
    """
    Q, K, dtype = _qk(Q, K, V=V)
    V = _values(V, K, dtype)
    pi = _dot_weights(Q, K, eps, mask, dtype)
    return jnp.einsum("...qk,...kv->...qv", pi, V)


def l2_attention_weights(
    Q: Float[ArrayLike, "*batch nq d"],
    K: Float[ArrayLike, "*batch nk d"],
    t: ScalarLike,
    eps: ScalarLike,
    *,
    mask: Bool[ArrayLike, "..."] | None = None,
) -> Float[Array, "*batch nq nk"]:
    r"""L2 attention weights ``π_i = gibbs(−|q_i − k|²/(2t), eps)`` (Thm 4.2).

    These are the Hopf–Cole Gibbs weights of atoms ``y_j = k_j`` with ``g = 0`` (the
    heat-kernel weights ``∝ K_{eps t}(q − k_j)``); at ``eps = 0`` the nearest key.

    Args:
        Q: queries ``(*batch, n_q, d)``; K: keys ``(*batch, n_k, d)``.
        t: time ``> 0``; eps: temperature ``>= 0``.
        mask: optional boolean ``(*batch, n_q, n_k)``, True = attend.

    Returns:
        ``π`` of shape ``(*batch, n_q, n_k)``.

    Example:
        >>> import jax.numpy as jnp
        >>> l2_attention_weights(jnp.zeros((1, 1)), jnp.array([[0.1], [2.0]]), 1.0,
        ...                      0.0).tolist()
        [[1.0, 0.0]]
    """
    Q, K, dtype = _qk(Q, K)
    return _kernels.gibbs_last(*_masked(_l2_logits(Q, K, t, dtype), eps, mask, dtype))


def l2_attention(
    Q: Float[ArrayLike, "*batch nq d"],
    K: Float[ArrayLike, "*batch nk d"],
    V: Float[ArrayLike, "*batch nk dv"],
    t: ScalarLike,
    eps: ScalarLike,
    *,
    mask: Bool[ArrayLike, "..."] | None = None,
) -> Float[Array, "*batch nq dv"]:
    r"""L2 (distance) attention ``E_{π_i}[V]``, ``π_i = gibbs(−|q_i − k|²/(2t), eps)`` (Thm 4.2).

    .. math::

        \mathrm{Attn}_{L2}(q) = \sum_j \pi_j(q) v_j, \qquad
        \pi_j(q) \propto \exp\!\Big(-\frac{|q - k_j|^2}{2t\varepsilon}\Big),

    the Hopf–Cole Gibbs average of the values over atoms ``k_j`` (g = 0). ``eps = 0`` is
    nearest-key attention (values of the nearest keys averaged on exact ties).

    Args:
        Q: queries ``(*batch, n_q, d)``; K: keys ``(*batch, n_k, d)``;
        V: values ``(*batch, n_k, d_v)``.
        t: time ``> 0``; eps: temperature ``>= 0``.
        mask: optional boolean ``(*batch, n_q, n_k)``, True = attend.

    Returns:
        ``(*batch, n_q, d_v)``.

    Example:
        >>> import jax.numpy as jnp
        >>> l2_attention(jnp.zeros((1, 1)), jnp.array([[0.1], [2.0]]),
        ...              jnp.array([[5.0], [7.0]]), 1.0, 0.0).tolist()
        [[5.0]]
    """
    Q, K, dtype = _qk(Q, K, V=V)
    V = _values(V, K, dtype)
    pi = _kernels.gibbs_last(*_masked(_l2_logits(Q, K, t, dtype), eps, mask, dtype))
    return jnp.einsum("...qk,...kv->...qv", pi, V)


def l2_log_partition(
    Q: Float[ArrayLike, "*batch nq d"],
    K: Float[ArrayLike, "*batch nk d"],
    t: ScalarLike,
    eps: ScalarLike,
    *,
    mask: Bool[ArrayLike, "..."] | None = None,
) -> Float[Array, "*batch nq"]:
    r"""Eps-scaled log-partition of L2 attention, ``eps log Z(q) = −u^N_eps(q, t)`` (Thm 4.2).

    .. math::

        \varepsilon \log Z(q) = \mathrm{lse}\Big(-\frac{|q - k|^2}{2t}, \varepsilon\Big)
            = -u^N_\varepsilon(q, t)\big|_{y = k,\, g = 0},
        \qquad Z(q) = \sum_j e^{-|q - k_j|^2 / (2t\varepsilon)} = e^{-u/\varepsilon},

    so the partition function is the Hopf–Cole heat solution ``w = exp(−u/eps)``. At
    ``eps = 0`` the value is ``−min_j |q − k_j|²/(2t)`` (Hopf–Lax).

    Args:
        Q: queries ``(*batch, n_q, d)``; K: keys ``(*batch, n_k, d)``.
        t: time ``> 0``; eps: temperature ``>= 0``.
        mask: optional boolean ``(*batch, n_q, n_k)``, True = attend.

    Returns:
        ``eps log Z`` of shape ``(*batch, n_q)``.

    Example:
        >>> import jax.numpy as jnp
        >>> l2_log_partition(jnp.zeros((1, 1)), jnp.array([[1.0], [2.0]]), 0.5, 0.0).tolist()
        [-1.0]
    """
    Q, K, dtype = _qk(Q, K)
    return _kernels.lse_last(*_masked(_l2_logits(Q, K, t, dtype), eps, mask, dtype))


# --------------------------------------------------------------------------------------
# KV cache (Remark H.11) and attention sink (Remark H.12)
# --------------------------------------------------------------------------------------


class KVState(eqx.Module):
    r"""Running state of streamed attention for fixed queries (Remark H.11).

    After keys with logits ``z_1..z_N`` and values ``v_1..v_N``:

    * ``m = max_j z_j``;
    * ``mass = Σ_j exp((z_j − m)/eps)`` (``∈ [1, N]``), and at ``eps = 0`` the number of
      keys tied at the max — the count that keeps the update exact on ties;
    * ``mean = Σ_j π_j v_j``, the attention output.

    ``lse(z_{1..N}, eps) = m + eps log mass`` (:func:`kv_lse`). The empty state is
    ``m = −inf, mass = 0, mean = 0``.
    """

    m: Float[Array, "*batch"]
    mass: Float[Array, "*batch"]
    mean: Float[Array, "*batch dv"]


def kv_init(d_v: int, batch_shape: tuple[int, ...] = (), dtype=None) -> KVState:
    r"""The empty KV state (no keys yet) for queries of shape ``batch_shape`` (Remark H.11).

    Example:
        >>> kv_init(3).mean.shape
        (3,)
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    return KVState(
        jnp.full(batch_shape, -jnp.inf, dtype),
        jnp.zeros(batch_shape, dtype),
        jnp.zeros((*batch_shape, d_v), dtype),
    )


def kv_update(
    state: KVState,
    z: Float[ArrayLike, "*batch"],
    v: Float[ArrayLike, "*batch dv"],
    eps: ScalarLike,
) -> KVState:
    r"""Absorb one key (logit ``z_{N+1}``, value ``v_{N+1}``) in O(1) (Remark H.11).

    Uses ``lse(z_{1..N+1}) = lse([lse(z_{1..N}), z_{N+1}])``: with ``m' = max(m, z)``,
    ``a = exp((m − m')/eps)``, ``c = exp((z − m')/eps)``,

    .. math::

        \mathrm{mass}' = a\,\mathrm{mass} + c, \qquad
        \mathrm{mean}' = \frac{a\,\mathrm{mass}\,\mathrm{mean} + c\, v}{\mathrm{mass}'} .

    At ``eps = 0``, ``a`` and ``c`` are the indicators ``m = m'`` and ``z = m'``: ``mass``
    counts the tied keys and ``mean`` is their average, exactly as ``gibbs(·, 0)``.
    A key with ``z = −inf`` is masked (changes nothing).

    Args:
        state: the :class:`KVState` after N keys.
        z: the new key's logits ``(*batch,)`` (e.g. ``Q @ k_{N+1}``).
        v: the new value, ``(*batch, d_v)``.
        eps: temperature ``>= 0``.

    Returns:
        The state after N + 1 keys.

    Example:
        >>> import jax.numpy as jnp
        >>> s = kv_init(1)
        >>> s = kv_update(s, jnp.array(1.0), jnp.array([2.0]), 0.0)
        >>> s = kv_update(s, jnp.array(1.0), jnp.array([4.0]), 0.0)
        >>> s.mean.tolist(), s.mass.tolist()
        ([3.0], 2.0)
    """
    dtype = state.m.dtype
    _validate.real("z", z)
    _validate.real("v", v)
    z = jnp.asarray(z, dtype)
    v = jnp.asarray(v, dtype)
    if z.shape != state.m.shape or v.shape != state.mean.shape:
        raise ValueError(
            f"`z` and `v` must have shapes {state.m.shape} and {state.mean.shape} to match the "
            f"state; got {z.shape} and {v.shape}."
        )
    eps = _validate.nonnegative_scalar("eps", eps, dtype)
    m_new = jnp.maximum(state.m, z)
    m_fin = jnp.where(jnp.isfinite(m_new), m_new, jnp.zeros_like(m_new))

    def scale(s):
        soft = jnp.exp((s - m_fin) / _kernels.safe(eps))
        hard = (s == m_new).astype(dtype)
        # A key with logit -inf is masked; a NaN logit propagates (it is not a mask).
        return jnp.where(s == -jnp.inf, jnp.zeros_like(s), jnp.where(eps > 0, soft, hard))

    old = scale(state.m) * state.mass
    new = scale(z)
    mass = old + new
    safe_mass = jnp.where(mass > 0, mass, jnp.ones_like(mass))
    mean = (old[..., None] * state.mean + new[..., None] * v) / safe_mass[..., None]
    return KVState(m_new, mass, jnp.where(mass[..., None] > 0, mean, state.mean))


def kv_lse(state: KVState, eps: ScalarLike) -> Float[Array, "*batch"]:
    r"""``lse(z_{1..N}, eps) = m + eps log mass`` from a :class:`KVState` (``m`` at eps = 0).

    Example:
        >>> import jax.numpy as jnp
        >>> s = kv_update(kv_init(1), jnp.array(0.0), jnp.array([1.0]), 1.0)
        >>> s = kv_update(s, jnp.array(0.0), jnp.array([1.0]), 1.0)
        >>> round(float(kv_lse(s, 1.0)), 6)
        0.693147
    """
    eps = _validate.nonnegative_scalar("eps", eps, state.m.dtype)
    has = state.mass > 0
    m_fin = jnp.where(has, state.m, jnp.zeros_like(state.m))
    log_mass = jnp.log(jnp.where(has, state.mass, jnp.ones_like(state.mass)))
    soft = m_fin + eps * log_mass
    value = jnp.where(eps > 0, soft, m_fin)
    return jnp.where(has, value, jnp.full_like(value, -jnp.inf))


def _atom_index(k, z: Array) -> Array:
    """``k`` as integer atom indices of shape ``z.shape[:-1]`` in ``[0, N)``.

    An index out of range would silently select no atom (``z_k`` read as 0): rejected
    eagerly, or at run time when traced.
    """
    k = jnp.asarray(k)
    if not jnp.issubdtype(k.dtype, jnp.integer):
        raise ValueError(f"`k` must hold integer atom indices; got dtype {k.dtype}.")
    if k.shape != z.shape[:-1]:
        raise ValueError(f"`k` must have shape (*batch,) = {z.shape[:-1]}; got {k.shape}.")
    n = z.shape[-1]
    bad = (k < 0) | (k >= n)
    message = f"`k` must be an atom index in [0, {n})"
    if _validate.is_traced(k):
        return eqx.error_if(k, jnp.any(bad), message)
    if np.any(np.asarray(bad)):
        raise ValueError(f"{message}; got {np.asarray(k)!r}.")
    return k


def attention_sink_bound(
    z: Float[ArrayLike, "*batch N"],
    eps: ScalarLike,
    k: Int[ArrayLike, "*batch"] | None = None,
) -> Float[Array, "*batch"]:
    r"""Dominant-atom (attention-sink) bound ``|lse(z, eps) − z_k| ≤ eps (N−1) e^{−Δ/eps}``.

    With ``Δ = z_k − max_{j≠k} z_j`` (Remark H.12, Prop 8.5): a key that wins by a margin
    Δ pins the log-partition — and, with it, the attention output — to its own value,
    exponentially in ``Δ/eps``. Valid for any k (for ``Δ ≤ 0`` it is loose but true). At
    ``eps = 0`` the bound is 0 when k is an argmax and ``+inf`` otherwise.

    Args:
        z: logits ``(*batch, N)``.
        eps: temperature ``>= 0``.
        k: the candidate dominant atom per row (default: the argmax).

    Returns:
        The bound, shape ``(*batch,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> float(attention_sink_bound(jnp.array([0.0, 0.0, 1.0]), 0.0))
        0.0
    """
    dtype = _validate.real_dtype(z=z)
    z = jnp.asarray(z, dtype)
    if z.ndim < 1:
        raise ValueError(f"`z` must have shape (*batch, N); got a scalar {z.shape}.")
    _validate.at_least_one_atom("z", z.shape[-1], z.shape)
    z = _validate.not_nan("z", z)
    eps = _validate.nonnegative_scalar("eps", eps, dtype)
    n = z.shape[-1]
    k = jnp.argmax(z, axis=-1) if k is None else _atom_index(k, z)
    onehot = jnp.arange(n) == k[..., None]
    z_k = jnp.sum(jnp.where(onehot, z, jnp.zeros_like(z)), axis=-1)
    rival = jnp.max(jnp.where(onehot, jnp.full_like(z, -jnp.inf), z), axis=-1)
    gap = z_k - rival  # +inf when N = 1
    safe = _kernels.safe(eps)
    soft = jnp.exp(jnp.log(safe) + float(np.log(max(n - 1, 1))) - gap / safe)
    soft = jnp.where(n > 1, soft, jnp.zeros_like(soft))
    hard = jnp.where(gap >= 0, jnp.zeros_like(gap), jnp.full_like(gap, jnp.inf))
    return jnp.where(eps > 0, soft, hard)


# --------------------------------------------------------------------------------------
# The LSE transformer block (§5)
# --------------------------------------------------------------------------------------


class LSEAttention(eqx.Module):
    r"""Multi-head dot-product self-attention, each head a Gibbs average (eq. 6–7, Prop H.9).

    Head h: ``Q = X W^q_h``, ``K = X W^k_h``, ``V = X W^v_h``; the output is
    ``Σ_h E_{π^h}[V_h] W^o_h`` with ``π^h_i = gibbs(K q_i, eps)`` (default ``eps = √d_k``).
    Each row's log-partition ``lse(K q_i, eps)`` is an LSE layer in ``q_i`` (W = K, b = 0).

    Attributes:
        Wq, Wk: ``(heads, d_model, d_k)``; Wv: ``(heads, d_model, d_v)``;
        Wo: ``(heads, d_v, d_model)``; causal: static flag (query i sees keys ≤ i).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> att = LSEAttention.random(jax.random.key(0), d_model=4, heads=2, d_head=3)
        >>> att(jnp.ones((5, 4))).shape, att.weights(jnp.ones((5, 4)), 0.0).shape
        ((5, 4), (2, 5, 5))
    """

    Wq: Float[Array, "h D dk"]
    Wk: Float[Array, "h D dk"]
    Wv: Float[Array, "h D dv"]
    Wo: Float[Array, "h dv D"]
    causal: bool = eqx.field(static=True, default=False)

    def projections(
        self, X: Float[ArrayLike, "n D"]
    ) -> tuple[Float[Array, "h n dk"], Float[Array, "h n dk"], Float[Array, "h n dv"]]:
        """Per-head queries, keys and values."""
        X = jnp.asarray(X, self.Wq.dtype)
        proj = lambda W: jnp.einsum("nD,hDk->hnk", X, W)
        return proj(self.Wq), proj(self.Wk), proj(self.Wv)

    def _mask(self, n: int) -> Array | None:
        return jnp.tril(jnp.ones((n, n), dtype=bool)) if self.causal else None

    def weights(
        self, X: Float[ArrayLike, "n D"], eps: ScalarLike | None = None
    ) -> Float[Array, "h n n"]:
        """Gibbs weights ``π^h`` of every head."""
        Q, K, _ = self.projections(X)
        return attention_weights(Q, K, eps, mask=self._mask(X.shape[0]))

    def __call__(
        self, X: Float[ArrayLike, "n D"], eps: ScalarLike | None = None
    ) -> Float[Array, "n D"]:
        """``Σ_h Attn(Q_h, K_h, V_h) W^o_h``."""
        Q, K, V = self.projections(X)
        heads = dot_product_attention(Q, K, V, eps, mask=self._mask(X.shape[0]))
        return jnp.einsum("hnv,hvD->nD", heads, self.Wo)

    @classmethod
    def random(
        cls,
        key: Array,
        d_model: int,
        heads: int,
        d_head: int,
        *,
        causal: bool = False,
        dtype=None,
    ) -> "LSEAttention":
        """Gaussian init with variance ``1/fan_in``."""
        specs = cls._init_specs(d_model, heads, d_head)
        return cls(*_kernels.gaussians(key, specs, dtype), causal)

    @staticmethod
    def _init_specs(d_model: int, heads: int, d_head: int) -> list:
        shape, s = (heads, d_model, d_head), d_model**-0.5
        return [
            (shape, s),
            (shape, s),
            (shape, s),
            ((heads, d_head, d_model), (heads * d_head) ** -0.5),
        ]


class LSEFeedForward(eqx.Module):
    r"""Feed-forward layer whose hidden activation is an LSE layer (THEORY §5, Prop H.9).

    .. math::

        \mathrm{FFN}(z) = W^{out} \phi(z) + b^{out}, \qquad
        \phi_k(z) = \mathrm{lse}(W_k z + b_k, \varepsilon),

    every hidden unit ``φ_k`` a Hopf–Cole solution of its own atoms (Thm 4.1).

    Attributes:
        hidden: :class:`~hjax.layers.LSEBlock` ``R^D → R^m``.
        W_out: ``(D, m)``; b_out: ``(D,)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> ffn = LSEFeedForward.random(jax.random.key(0), d_model=4, units=3, atoms=5)
        >>> ffn(jnp.ones(4), 0.5).shape
        (4,)
    """

    hidden: LSEBlock
    W_out: Float[Array, "D m"]
    b_out: Float[Array, " D"]

    def __call__(self, z: Float[ArrayLike, " D"], eps: ScalarLike) -> Float[Array, " D"]:
        """``W_out φ(z) + b_out``."""
        return self.W_out @ self.hidden(z, eps) + self.b_out

    @classmethod
    def random(
        cls, key: Array, d_model: int, units: int, atoms: int, *, dtype=None
    ) -> "LSEFeedForward":
        """Random init (hidden block as :meth:`LSEBlock.random`, ``W_out ~ N(0, 1/units)``)."""
        return cls._from_leaves(
            _kernels.gaussians(key, cls._init_specs(d_model, units, atoms), dtype)
        )

    @staticmethod
    def _init_specs(d_model: int, units: int, atoms: int) -> list:
        return [
            ((units, atoms, d_model), d_model**-0.5),
            ((units, atoms), 1.0),
            ((d_model, units), units**-0.5),
        ]

    @classmethod
    def _from_leaves(cls, leaves: list[Array]) -> "LSEFeedForward":
        W, b, W_out = leaves
        return cls(LSEBlock(W, b), W_out, jnp.zeros(W_out.shape[0], W_out.dtype))


class LSETransformerBlock(eqx.Module):
    r"""Pre-norm LSE-transformer block (THEORY §5, Prop H.9):

    .. math::

        X \leftarrow X + \mathrm{Attn}(\mathrm{LN}_1(X)), \qquad
        X \leftarrow X + \mathrm{FFN}_{lse}(\mathrm{LN}_2(X)),

    applied to a sequence ``X`` of shape ``(n, d_model)``. Both sub-layers are Gibbs
    averages / LSE layers, so Thm 4.1 holds per sub-layer exactly: each head's row
    log-partition and each FFN unit is ``|x|²/(2t) − u^N_eps(x, t)`` for its (y, g) reading.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> blk = LSETransformerBlock(4, heads=2, d_head=2, units=3, atoms=5,
        ...                           key=jax.random.key(0))
        >>> blk(jnp.ones((6, 4)), jnp.asarray(0.5)).shape
        (6, 4)
    """

    ln1: eqx.nn.LayerNorm
    attn: LSEAttention
    ln2: eqx.nn.LayerNorm
    ffn: LSEFeedForward

    def __init__(
        self,
        d_model: int,
        *,
        heads: int,
        d_head: int,
        units: int,
        atoms: int,
        key: Array,
        causal: bool = False,
        dtype=None,
    ):
        """Random block: ``heads`` heads of width ``d_head``; FFN of ``units`` LSE units."""
        dtype = jnp.result_type(float) if dtype is None else dtype
        attn_specs = LSEAttention._init_specs(d_model, heads, d_head)
        ffn_specs = LSEFeedForward._init_specs(d_model, units, atoms)
        leaves = _kernels.gaussians(key, attn_specs + ffn_specs, dtype)  # one random draw
        self.ln1 = eqx.nn.LayerNorm(d_model, dtype=dtype)
        self.attn = LSEAttention(*leaves[: len(attn_specs)], causal)
        self.ln2 = eqx.nn.LayerNorm(d_model, dtype=dtype)
        self.ffn = LSEFeedForward._from_leaves(leaves[len(attn_specs) :])

    def __call__(
        self, X: Float[ArrayLike, "n D"], eps: ScalarLike, attn_eps: ScalarLike | None = None
    ) -> Float[Array, "n D"]:
        """One block; ``eps`` is the FFN temperature, ``attn_eps`` attention's (√d_k)."""
        X = jnp.asarray(X, self.ffn.W_out.dtype)
        X = X + self.attn(jax.vmap(self.ln1)(X), attn_eps)
        ffn = lambda x: self.ffn(self.ln2(x), eps)
        return X + jax.vmap(ffn)(X)
