"""Attention as Gibbs expectations and the LSE transformer block (THEORY §5, Thm 4.2, H.9–H.12).

References are independent: autodiff of ``lse`` / ``hopf_cole`` (never a second softmax),
explicit NumPy loops, and full recomputation for the streamed KV cache.
"""

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import raises_naming
from hypothesis import given, settings

from hjax.attention import (
    LSEAttention,
    LSETransformerBlock,
    attention_sink_bound,
    attention_weights,
    dot_product_attention,
    kv_init,
    kv_lse,
    kv_update,
    l2_attention,
    l2_attention_weights,
    l2_log_partition,
)
from hjax.hopf_cole import hopf_cole
from hjax.layers import lse_to_hj
from hjax.semiring import lse
from hjax.verify.dictionary import block_from_hopf_cole, kv_stream

N_Q, N_K, D_V = 8, 12, 16  # REFERENCE row D: 8 queries, 12 keys, d_v = 16

# ∇_z lse(z, eps) row by row, by autodiff (the reference for "attention = Vᵀ ∇lse"): of the
# library's lse (whose JVP is a custom rule) and of a plain-primitive lse (no custom rule).
_grad_lse = jax.jit(jax.vmap(jax.grad(lse), (0, None)))


def _naive_lse(z, eps):
    m = jax.lax.stop_gradient(jnp.max(z))
    return m + eps * jnp.log(jnp.sum(jnp.exp((z - m) / eps)))


_grad_naive_lse = jax.jit(jax.vmap(jax.grad(_naive_lse), (0, None)))
# ∂u/∂g_j of the Hopf–Cole solution = the Gibbs weight of atom j; u itself, per query.
_hc = lambda q, y, g, t, eps: hopf_cole(q, y, g, t, eps)
_dudg = jax.jit(jax.vmap(jax.grad(_hc, argnums=2), (0, None, None, None, None)))
_u = jax.jit(jax.vmap(_hc, (0, None, None, None, None)))


def _qkv(seed, d, n_q=N_Q, n_k=N_K, d_v=D_V):
    rng = np.random.default_rng(seed)
    return rng, rng.normal(size=(n_q, d)), rng.normal(size=(n_k, d)), rng.normal(size=(n_k, d_v))


def _np_softmax_attention(logits, V, eps, mask=None):
    """Explicit loop: out_i = Σ_j exp(s_ij/eps) v_j / Σ_j exp(s_ij/eps) over allowed j."""
    out = np.zeros((logits.shape[0], V.shape[1]))
    for i in range(logits.shape[0]):
        allowed = [j for j in range(logits.shape[1]) if mask is None or mask[i, j]]
        m = max(logits[i, j] for j in allowed)
        if eps == 0:
            top = [j for j in allowed if logits[i, j] == m]
            out[i] = sum(V[j] for j in top) / len(top)
            continue
        w = {j: np.exp((logits[i, j] - m) / eps) for j in allowed}
        out[i] = sum(w[j] * V[j] for j in allowed) / sum(w.values())
    return out


# --------------------------------------------------------------------------------------
# eq. 6, Thm 4.2: attention = Vᵀ ∇lse
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [4, 8, 16])
def test_dot_product_attention_is_V_times_grad_lse(d):
    _, Q, K, V = _qkv(d, d)
    eps = np.sqrt(d)
    out = dot_product_attention(Q, K, V)  # default temperature √d_k
    logits = Q @ K.T
    np.testing.assert_allclose(out, _grad_lse(logits, eps) @ V, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(out, _grad_naive_lse(logits, eps) @ V, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(out, _np_softmax_attention(logits, V, eps), rtol=1e-12, atol=1e-13)


_masked_attention_grads = jax.jit(
    jax.grad(
        lambda Q, K, V, eps, mask: jnp.sum(dot_product_attention(Q, K, V, eps, mask=mask)),
        (0, 1, 2),
    )
)


@pytest.mark.parametrize("eps", [0.3, 0.0])
def test_dot_product_attention_explicit_eps_and_causal_mask(eps):
    _, Q, K, V = _qkv(1, 4, n_q=N_K)
    mask = np.tril(np.ones((N_K, N_K), bool))
    out = dot_product_attention(Q, K, V, eps, mask=mask)
    ref = _np_softmax_attention(Q @ K.T, V, eps, mask)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-13)
    pi = attention_weights(Q, K, eps, mask=mask)
    assert np.all(np.asarray(pi)[~mask] == 0)
    np.testing.assert_allclose(np.sum(pi, -1), 1.0, rtol=1e-14)
    # Gradients through masked entries (the JAX #6811 trap), against known values: ∂/∂V_j is
    # Σ_i π_ij; at eps = 0 the argmax weights are locally constant, so ∂/∂Q = ∂/∂K = 0;
    # for eps > 0 ∂/∂Q, ∂/∂K equal autodiff of jax.nn.softmax with masked logits set to a
    # large finite negative number (no custom rule, no −inf).
    dQ, dK, dV = _masked_attention_grads(Q, K, V, jnp.asarray(eps), mask)
    np.testing.assert_allclose(dV, np.broadcast_to(np.sum(pi, 0)[:, None], V.shape), rtol=1e-13)
    if eps == 0:
        np.testing.assert_array_equal(dQ, 0.0)
        np.testing.assert_array_equal(dK, 0.0)
    else:
        dQ_ref, dK_ref = _finite_mask_grad_qk((Q, K), V, eps, mask)
        np.testing.assert_allclose(dQ, dQ_ref, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(dK, dK_ref, rtol=1e-11, atol=1e-13)


@jax.jit
@jax.grad
def _finite_mask_grad_qk(QK, V, eps, mask):
    logits = jnp.where(mask, QK[0] @ QK[1].T, -1e30)
    return jnp.sum(jax.nn.softmax(logits / eps, axis=-1) @ V)


def test_attention_logpartition_is_an_lse_layer_of_the_query():
    """lse(K q, eps) is the LSE layer W = K, b = 0 (Thm 4.2): its (y, g) reading at any t
    gives |q|²/(2t) − u(q) with u from hopf_cole, and the weights are ∂u/∂g_j."""
    _, Q, K, _ = _qkv(2, 4)
    t, eps = 0.7, 2.0
    y, g = lse_to_hj(K, np.zeros(N_K), t)
    u = _u(Q, y, g, t, eps)
    np.testing.assert_allclose(
        np.sum(Q**2, -1) / (2 * t) - u, lse(Q @ K.T, eps), rtol=1e-13, atol=1e-13
    )
    np.testing.assert_allclose(
        attention_weights(Q, K, eps), _dudg(Q, y, g, t, eps), rtol=1e-12, atol=1e-15
    )


# --------------------------------------------------------------------------------------
# L2 attention (Prop H.9): Hopf–Cole weights, partition = exp(−u/eps), eps → 0
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [1.0, 0.3, 0.0])
def test_l2_attention_is_hopf_cole(eps):
    _, Q, K, V = _qkv(3, 4)
    t = 0.8
    u = _u(Q, K, np.zeros(N_K), t, eps)
    free = l2_log_partition(Q, K, t, eps)
    np.testing.assert_allclose(free, -u, rtol=1e-13, atol=1e-13)
    if eps > 0:  # Z = Σ_j exp(−|q − k_j|²/(2t eps)) = exp(−u/eps)
        Z_loop = np.array(
            [sum(np.exp(-np.sum((q - k) ** 2) / (2 * t * eps)) for k in K) for q in Q]
        )
        np.testing.assert_allclose(np.exp(free / eps), Z_loop, rtol=1e-12)
        np.testing.assert_allclose(np.exp(-u / eps), Z_loop, rtol=1e-12)
    pi = l2_attention_weights(Q, K, t, eps)
    np.testing.assert_allclose(pi, _dudg(Q, K, np.zeros(N_K), t, eps), rtol=1e-12, atol=1e-15)
    logits = -np.sum((Q[:, None] - K[None]) ** 2, -1) / (2 * t)
    ref = _np_softmax_attention(logits, V, eps)
    np.testing.assert_allclose(l2_attention(Q, K, V, t, eps), ref, rtol=1e-12, atol=1e-13)


def test_eps_to_zero_is_nearest_key_attention():
    _, Q, K, V = _qkv(4, 3)
    t = 0.5
    nearest = np.argmin(np.sum((Q[:, None] - K[None]) ** 2, -1), -1)
    np.testing.assert_array_equal(l2_attention(Q, K, V, t, 0.0), V[nearest])
    best = np.argmax(Q @ K.T, -1)
    np.testing.assert_array_equal(dot_product_attention(Q, K, V, 0.0), V[best])
    # eps → 0: |out_i − v_k| ≤ (1 − π_k) max_j |v_j − v_k| ≤ (N−1) e^{−Δ_i/eps} max_j |v_j − v_k|,
    # Δ_i the logit gap between the nearest and the second-nearest key
    logits = np.sort(-np.sum((Q[:, None] - K[None]) ** 2, -1) / (2 * t), -1)
    gap = logits[:, -1] - logits[:, -2]
    spread = np.max(np.abs(V[None] - V[nearest][:, None]), axis=(1, 2))
    errs = []
    for eps in (0.3, 0.1, 0.03, 0.01):
        err = np.max(np.abs(l2_attention(Q, K, V, t, eps) - V[nearest]), -1)
        assert np.all(err <= (N_K - 1) * np.exp(-gap / eps) * spread * (1 + 1e-12))
        errs.append(np.max(err))
    assert all(b < a for a, b in zip(errs, errs[1:], strict=False)), errs


# --------------------------------------------------------------------------------------
# KV cache (Remark H.11)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["eps>0", "eps>0 wide", "eps=0", "eps=0 ties"])
def test_kv_cache_streaming_equals_full_recomputation(case):
    rng, Q, K, V = _qkv(5, 4)
    z = Q @ K.T
    eps = 0.0 if case.startswith("eps=0") else 0.7
    if case == "eps>0 wide":
        z = 50 * z
    if case == "eps=0 ties":
        z = rng.integers(0, 3, size=z.shape).astype(float)  # many exact ties
    z[:, 3] = -np.inf  # a masked key changes nothing
    z[0, :5] = -np.inf  # query 0 sees nothing for the first keys
    lses, means = kv_stream(z, V, jnp.asarray(eps))
    for n in range(1, N_K + 1):
        for i in range(N_Q):
            zi = z[i, :n]
            if np.all(np.isneginf(zi)):
                assert np.isneginf(lses[n - 1, i])
                continue
            live = zi[np.isfinite(zi)]
            ref_lse = np.max(live) + (
                eps * np.log(np.sum(np.exp((live - np.max(live)) / eps))) if eps else 0.0
            )
            ref_mean = _np_softmax_attention(zi[None], V[:n], eps, np.isfinite(zi)[None])[0]
            assert abs(float(lses[n - 1, i]) - ref_lse) <= 1e-12 * max(1.0, abs(ref_lse))
            np.testing.assert_allclose(means[n - 1, i], ref_mean, rtol=1e-12, atol=1e-13)


def test_kv_cache_known_values():
    s = kv_init(1)
    s = kv_update(s, 1.0, np.array([2.0]), 0.0)
    s = kv_update(s, 1.0, np.array([4.0]), 0.0)
    s = kv_update(s, 0.0, np.array([100.0]), 0.0)
    assert s.mean.tolist() == [3.0] and float(s.mass) == 2.0 and float(kv_lse(s, 0.0)) == 1.0
    s = kv_update(kv_init(1), 0.0, np.array([1.0]), 1.0)
    s = kv_update(s, 0.0, np.array([3.0]), 1.0)
    assert float(kv_lse(s, 1.0)) == pytest.approx(np.log(2.0), rel=1e-15)
    assert s.mean.tolist() == [2.0]


# --------------------------------------------------------------------------------------
# Attention sink / dominant atom (Remark H.12)
# --------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    z=st.lists(st.floats(-20, 20), min_size=1, max_size=6),
    eps=st.one_of(st.just(0.0), st.floats(1e-3, 5.0)),
    data=st.data(),
)
def test_attention_sink_bound_holds(z, eps, data):
    z = np.array(z)
    k = data.draw(st.integers(0, len(z) - 1))
    bound = float(attention_sink_bound(z, eps, k))
    gap = abs(float(lse(z, eps)) - z[k])
    assert gap <= bound * (1 + 1e-12) + 1e-12 * (1 + np.max(np.abs(z)))


def test_attention_sink_bound_is_tight_and_exact_at_zero():
    # Two atoms, z_k = 0 (no cancellation in lse − z_k): lse = eps log(1 + e^{−Δ/eps}) and the
    # bound eps e^{−Δ/eps} is tight to a factor 1 − O(e^{−Δ/eps}), also deep in the tail
    # (lse's two-atom log-add-exp form keeps lse − max to full relative precision there).
    for delta_over_eps in (3.0, 5.0, 10.0, 20.0, 40.0, 300.0):
        eps = 0.1
        z = np.array([0.0, -delta_over_eps * eps])
        gap = float(lse(z, eps))
        ratio = gap / float(attention_sink_bound(z, eps))
        assert 1 - np.exp(-delta_over_eps) - 1e-14 < ratio <= 1.0 + 1e-14, (delta_over_eps, ratio)
    z = np.array([0.0, 3.0, 1.0])
    assert float(attention_sink_bound(z, 0.0)) == 0.0  # default k = argmax
    assert float(attention_sink_bound(z, 0.0, 0)) == np.inf  # k not an argmax
    assert float(attention_sink_bound(np.array([2.0]), 0.5)) == 0.0  # N = 1
    np.testing.assert_allclose(
        attention_sink_bound(np.array([[3.0, 1.0, 0.0], [0.0, 0.0, 2.0]]), 0.5),
        [0.5 * 2 * np.exp(-2.0 / 0.5), 0.5 * 2 * np.exp(-2.0 / 0.5)],
        rtol=1e-14,
    )


# --------------------------------------------------------------------------------------
# The LSE transformer block: Thm 4.1 per sub-layer, with u from hopf_cole
# --------------------------------------------------------------------------------------

D_MODEL, HEADS, D_HEAD, UNITS, ATOMS, SEQ = 8, 2, 4, 6, 5, 7
_build = eqx.filter_jit(lambda cls, *args, **kwargs: cls(*args, **kwargs))


def _np_layer_norm(X, ln):
    mu = X.mean(-1, keepdims=True)
    out = (X - mu) / np.sqrt(X.var(-1, keepdims=True) + ln.eps)
    return out * np.asarray(ln.weight) + np.asarray(ln.bias)


# The reference rebuild (each sub-layer from hopf_cole of its (y, g) reading) is the one
# `hjax verify` measures with; one definition for both.
_block_from_hopf_cole = jax.jit(block_from_hopf_cole)


@pytest.mark.parametrize(("eps", "attn_eps"), [(0.3, None), (0.0, 0.0), (1.0, 0.5)])
def test_transformer_block_thm41_per_sublayer(eps, attn_eps):
    block = _build(
        LSETransformerBlock, D_MODEL, heads=HEADS, d_head=D_HEAD, units=UNITS, atoms=ATOMS,
        key=jax.random.key(0),
    )  # fmt: skip
    X = np.random.default_rng(6).normal(size=(SEQ, D_MODEL))
    a_eps = np.sqrt(D_HEAD) if attn_eps is None else attn_eps
    out = eqx.filter_jit(block)(X, jnp.asarray(eps), attn_eps)
    for t in (0.5, 2.0):  # any gauge t reads the same block
        ref, hj_gap = _block_from_hopf_cole(block, X, jnp.asarray(eps), jnp.asarray(a_eps), t)
        assert float(hj_gap) <= 1e-12
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    # layer norm and attention sub-layer against NumPy
    Z1 = _np_layer_norm(X, block.ln1)
    att = block.attn
    heads = [
        _np_softmax_attention((Z1 @ att.Wq[h]) @ (Z1 @ att.Wk[h]).T, Z1 @ att.Wv[h], a_eps)
        @ np.asarray(att.Wo[h])
        for h in range(HEADS)
    ]
    np.testing.assert_allclose(block.attn(Z1, attn_eps), sum(heads), rtol=1e-12, atol=1e-12)


def test_causal_block_ignores_the_future_and_compiles_once():
    block = _build(
        LSETransformerBlock, D_MODEL, heads=HEADS, d_head=D_HEAD, units=UNITS, atoms=ATOMS,
        key=jax.random.key(1), causal=True,
    )  # fmt: skip
    X = np.random.default_rng(7).normal(size=(SEQ, D_MODEL))
    X2 = X.copy()
    X2[4:] += 10.0

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def run(block, X, eps):
        return block(X, eps)

    for eps in (1.0, 0.1, 0.0):
        a, b = run(block, X, jnp.asarray(eps)), run(block, X2, jnp.asarray(eps))
        np.testing.assert_allclose(a[:4], b[:4], rtol=1e-13, atol=1e-13)
        assert np.max(np.abs(a[4:] - b[4:])) > 1.0
    pi = block.attn.weights(jax.vmap(block.ln1)(X))
    assert pi.shape == (HEADS, SEQ, SEQ) and np.all(np.triu(np.asarray(pi), 1) == 0)


@eqx.filter_jit
def _attention_panel(Q, K, V, att):
    return {
        "dot": dot_product_attention(Q, K, V),
        "l2": l2_attention(Q, K, V, 1.0, 0.5),
        "free": l2_log_partition(Q, K, 1.0, 0.5),
        "module": att(Q),
    }


def test_float32_dtype_follows_input_and_matches_float64():
    _, Q, K, V = _qkv(8, 4)
    att = _build(LSEAttention.random, jax.random.key(2), 4, 2, 3, dtype=jnp.float32)
    out32 = _attention_panel(*(a.astype(np.float32) for a in (Q, K, V)), att)
    out64 = _attention_panel(Q, K, V, jax.tree.map(lambda a: a.astype(np.float64), att))
    for name, value in out32.items():
        assert value.dtype == jnp.float32, name
        np.testing.assert_allclose(value, out64[name], rtol=1e-5, atol=1e-5, err_msg=name)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


def test_bad_input_is_rejected_with_the_argument_named():
    Q, K, V = np.zeros((2, 3)), np.zeros((4, 3)), np.zeros((4, 5))
    with raises_naming("K"):
        dot_product_attention(Q, np.zeros((4, 2)), V)
    with raises_naming("V"):
        dot_product_attention(Q, K, np.zeros((3, 5)))
    with raises_naming("eps"):
        dot_product_attention(Q, K, V, -1.0)
    with raises_naming("t"):
        l2_attention(Q, K, V, 0.0, 0.1)
    with raises_naming("t"):
        l2_log_partition(Q, K, -1.0, 0.1)
    with raises_naming("eps"):
        l2_attention_weights(Q, K, 1.0, -0.1)
    with raises_naming("mask"):
        dot_product_attention(Q, K, V, mask=np.array([[True] * 4, [False] * 4]))
    with raises_naming("mask"):
        dot_product_attention(Q, K, V, mask=np.ones((2, 4)))
    with raises_naming("mask"):
        attention_weights(Q, K, mask=np.ones((3, 4), bool))
    state = kv_init(5, (2,))
    with raises_naming("z"):
        kv_update(state, np.zeros(3), np.zeros((2, 5)), 0.1)
    with raises_naming("eps"):
        kv_update(state, np.zeros(2), np.zeros((2, 5)), -0.1)
    with raises_naming("k"):
        attention_sink_bound(np.zeros((2, 3)), 0.1, np.zeros(3, int))
    with raises_naming("k"):  # out of range: would silently read z_k as 0
        attention_sink_bound(np.array([0.0, 1.0, 5.0]), 0.5, 7)
    with raises_naming("k"):
        attention_sink_bound(np.array([0.0, 1.0, 5.0]), 0.5, -1)
    with raises_naming("k"):
        attention_sink_bound(np.array([0.0, 1.0, 5.0]), 0.5, 1.0)
    with pytest.raises(Exception, match="`k`"):  # traced: caught at run time
        jax.jit(attention_sink_bound)(np.zeros(3), 0.5, 3)
    with raises_naming("eps"):
        attention_sink_bound(np.zeros(3), -1.0)
    with pytest.raises(Exception, match="`mask`"):  # traced: caught at run time
        jax.jit(lambda m: attention_weights(Q, K, mask=m))(np.zeros((2, 4), bool))
