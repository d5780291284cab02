r"""Checks for the layer ↔ PDE dictionary and attention (THEORY §3, §5), Prop E.6 (§7).

Group ``foundation``: the dictionary identity (Thm 4.1/4.4) over a random panel of
dimensions, temperatures (eps = 0 included), metrics and weighted/masked measures, the
round trip, derivatives and affine closure, the curvature bound of Cor 8.2 (valid at random
points and attained at its extremal case), attention as ``Vᵀ∇lse`` (autodiff, not a second
softmax), the L2 partition function as the heat solution ``exp(−u/eps)``, the streamed KV
cache, the attention-sink bound (valid, and attained), and Thm 4.1 per sub-layer of an
LSE-transformer block. The library is reached through the public API (``hjax.*``, looked
up at trace time, so that a planted bug reaches every row).
Group ``costate``: Prop E.6, backprop through an LSE layer as the adjoint heat semigroup,
against a Gaussian heat kernel written out in NumPy from the HJ data ``(y, g, t)``.

:func:`block_from_hopf_cole` (the transformer block rebuilt from Hopf–Cole solutions) and
:func:`kv_stream` (keys fed one at a time through the KV cache) are public: the test suite
uses the same references.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

import hjax

from ._core import Row, bound_row, register, tight_row

__all__ = ["block_from_hopf_cole", "kv_stream"]

FOUNDATION, COSTATE = "foundation", "costate"


def _worst(*values: float) -> float:
    """The largest value, NaN if any is NaN (Python's ``max`` drops a NaN not in first place:
    a NaN measurement must fail its row, not vanish)."""
    return float(np.max(np.asarray(values, dtype=float)))


def _spd(rng: np.random.Generator, d: int, cond: float = 10.0) -> np.ndarray:
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (Q * np.geomspace(1.0, cond, d)) @ Q.T


def _np_lse(z: np.ndarray, eps: float) -> np.ndarray:
    m = np.max(z, axis=-1)
    if eps == 0:
        return m
    return m + eps * np.log(np.sum(np.exp((z - m[..., None]) / eps), axis=-1))


# --------------------------------------------------------------------------------------
# Thm 4.1 / 4.4: the dictionary
# --------------------------------------------------------------------------------------


@jax.jit
def _dictionary_gaps(x, y, g, t, eps, A, log_w):
    """(identity gap, round-trip gaps) for one problem; relative where values are large."""
    W, b = hjax.hj_to_lse(y, g, t, A=A, log_w=log_w, eps=eps)
    u = jax.vmap(lambda q: hjax.hopf_cole(q, y, g, t, eps, log_w=log_w, A=A))(x)
    u_layer = hjax.quadratic_shift(x, hjax.lse_layer(x, W, b, eps), t, A=A)
    identity = jnp.max(jnp.abs(u - u_layer) / jnp.maximum(1.0, jnp.abs(u)))
    W0, b0 = hjax.hj_to_lse(y, g, t, A=A)  # counting measure: exact inverse pair
    y2, g2 = hjax.lse_to_hj(W0, b0, t, A=A)
    W3, b3 = hjax.hj_to_lse(y2, g2, t, A=A)
    rel = lambda a, ref: jnp.max(jnp.abs(a - ref)) / jnp.max(jnp.abs(ref))
    trip = jnp.stack([rel(y2, y), rel(g2, g), rel(W3, W0), rel(b3, b0)])
    return identity, jnp.max(trip)


@register(FOUNDATION)
def dictionary_identity(quick: bool) -> list[Row]:
    """u^N_eps = xᵀA⁻¹x/(2t) − lse(Wx + b, eps) with (W, b) = hj_to_lse(y, g, t); round trip."""
    rng = np.random.default_rng(0)
    # One compilation per (d, metric) pair: quick, one metric per dimension; full, both
    # metrics at d = 1 and the two alternating up to d = 16.
    panel = [(2, "identity"), (5, "spd")]
    if not quick:
        panel = [(1, "identity"), (1, "spd"), (2, "spd"), (3, "identity"), (5, "spd")]
        panel += [(8, "identity"), (16, "spd")]
    eps_panel = (1.0, 0.1, 0.01, 0.0)
    n_problems = 2 if quick else 10
    identity = trip = 0.0
    for d, metric in panel:
        for _ in range(n_problems):
            N = 9
            y, g = rng.normal(size=(N, d)), rng.normal(size=N)
            x = 2 * rng.normal(size=(16, d))
            t = float(rng.uniform(0.1, 3.0))
            A = None if metric == "identity" else _spd(rng, d)
            log_w = None
            if metric == "spd":  # weighted measure with two masked atoms
                log_w = np.log(rng.uniform(0.1, 3.0, size=N))
                log_w[rng.choice(N, 2, replace=False)] = -np.inf
            for eps in eps_panel:
                gap, rt = _dictionary_gaps(x, y, g, t, jnp.asarray(eps), A, log_w)
                identity, trip = _worst(identity, float(gap)), _worst(trip, float(rt))
    details = {"d, metric": [f"{d}, {m}" for d, m in panel], "eps": list(eps_panel)}
    return [
        bound_row(
            FOUNDATION,
            "dict.identity",
            "hopf_cole = xᵀA⁻¹x/(2t) − lse(Wx+b) (max rel. error; d, eps incl. 0, A, masks)",
            "Thm 4.1, 4.4",
            identity,
            1e-12,
            **details,
        ),
        bound_row(
            FOUNDATION,
            "dict.round_trip",
            "round trip lse_to_hj∘hj_to_lse and hj_to_lse∘lse_to_hj (max rel. error)",
            "THEORY §3",
            trip,
            1e-13,
            **details,
        ),
    ]


def _naive_lse(z, eps):
    """eps log Σ exp(z/eps) with plain primitives (no custom rule): the autodiff reference."""
    m = jax.lax.stop_gradient(jnp.max(z))
    return m + eps * jnp.log(jnp.sum(jnp.exp((z - m) / eps)))


@jax.jit
def _derivative_gaps(x, W, b, eps, M, c, x2):
    """Closed-form ∇f, ∇²f vs autodiff of the naive layer; affine closure; curvature ratio."""
    naive = lambda x, W, b, eps: _naive_lse(W @ x + b, eps)
    grad_ad = jax.vmap(jax.grad(naive), (0, None, None, None))(x, W, b, eps)
    hess_ad = jax.vmap(jax.hessian(naive), (0, None, None, None))(x, W, b, eps)
    hess = hjax.lse_layer_hessian(x, W, b, eps)
    W2, b2 = hjax.affine_pullback(W, b, M, c)
    affine = hjax.lse_layer(x2, W2, b2, eps) - hjax.lse_layer(x2 @ M.T + c, W, b, eps)
    norms = jnp.linalg.norm(hess, 2, axis=(-2, -1))
    return (
        jnp.max(jnp.abs(hjax.lse_layer_grad(x, W, b, eps) - grad_ad)),
        jnp.max(jnp.abs(hess - hess_ad)) / jnp.maximum(1.0, jnp.max(jnp.abs(hess_ad))),
        jnp.max(jnp.abs(affine)),
        jnp.max(norms) / hjax.lse_layer_hessian_bound(W, eps),
    )


def _worst_ratio(ratios) -> float:
    """The ratio a tightness row must report: one above 1 if any (a violated bound),
    else the smallest (the loosest case)."""
    ratios = np.asarray(ratios, dtype=float)
    if not np.all(np.isfinite(ratios)):
        return math.nan
    return float(np.max(ratios)) if np.max(ratios) > 1 + 1e-12 else float(np.min(ratios))


@jax.jit
@jax.vmap
def _hessian_bound_ratio(x, W, b, eps):
    """‖∇²f(x)‖₂ (autodiff of the plain-primitive layer) / lse_layer_hessian_bound(W, eps),
    for a batch of cases."""
    hess = jax.hessian(lambda q: _naive_lse(W @ q + b, eps))(x)
    return jnp.linalg.norm(hess, 2) / hjax.lse_layer_hessian_bound(W, eps)


def _hessian_extremal_cases(rng: np.random.Generator, eps_panel, n: int = 6, d: int = 3):
    """Extremal cases of Cor 8.2, stacked: the two atoms i, j realising
    ``D = max ‖W_i − W_j‖`` tied at x (π_i = π_j = ½), the others 30 eps below (weight
    e^{−30}), so that ``∇²f = (W_i − W_j)(W_i − W_j)ᵀ/(4 eps) + O(e^{−30})``: the bound is
    attained. Per eps: random W (n, d); W on a line (the 1-D case); two distinct atoms, the
    other rows at their midpoint (the two-atom case)."""
    cases = []
    for eps in eps_panel:
        line = np.outer(rng.normal(size=n), rng.normal(size=d))
        pair = rng.normal(size=(2, d))
        two = np.concatenate([pair, np.repeat(pair.mean(0, keepdims=True), n - 2, 0)])
        for W in (rng.normal(size=(n, d)), line, two):
            x = rng.normal(size=d)
            dist = np.linalg.norm(W[:, None] - W[None], axis=-1)
            i, j = np.unravel_index(np.argmax(dist), dist.shape)
            b = -W @ x - 30.0 * eps
            b[[i, j]] = -W[[i, j]] @ x
            cases.append((x, W, b, eps))
    return tuple(np.stack(a) for a in zip(*cases, strict=True))


@register(FOUNDATION)
def layer_derivatives(quick: bool) -> list[Row]:
    r"""∇f = E_π[W], ∇²f = Cov_π(W)/eps vs autodiff; affine closure; the curvature bound
    ``‖∇²f‖₂ ≤ D²/(4 eps)`` at random points (valid; attained: :func:`hessian_bound_attained`).
    """
    rng = np.random.default_rng(1)
    worst = np.zeros(4)
    for _ in range(2 if quick else 20):
        W, b = rng.normal(size=(7, 3)), 0.3 * rng.normal(size=7)
        x, x2 = rng.normal(size=(32, 3)), rng.normal(size=(32, 2))
        M, c = rng.normal(size=(3, 2)), rng.normal(size=3)
        for eps in (1.0, 0.1, 0.02):
            gaps = _derivative_gaps(x, W, b, jnp.asarray(eps), M, c, x2)
            worst = np.maximum(worst, [float(v) for v in gaps])
    claims = [
        (
            "layer.grad",
            "∇f = E_π[W] (lse_layer_grad) vs autodiff of a plain-primitive LSE layer",
            "THEORY §3",
            1e-12,
        ),
        (
            "layer.hessian",
            "∇²f = Cov_π(W)/eps (lse_layer_hessian) vs autodiff (rel. to max |∇²f|)",
            "Prop E.5(i)",
            1e-11,
        ),
        (
            "layer.affine_closure",
            "f(Mx + c) = lse(WMx + b + Wc) (affine_pullback)",
            "Prop H.2(ii)",
            1e-12,
        ),
        (
            "layer.hessian_bound.random",
            "max ‖∇²f‖₂ / (D²/(4 eps)) over random W, b, x (≤ 1: the bound holds)",
            "Cor 8.2, Prop E.5(ii)",
            1.0,
        ),
    ]
    return [
        bound_row(FOUNDATION, key, claim, thm, value, tol)
        for (key, claim, thm, tol), value in zip(claims, worst, strict=True)
    ]


@register(FOUNDATION)
def hessian_bound_attained(quick: bool) -> list[Row]:
    r"""The curvature bound of Cor 8.2 / Prop E.5(ii) is attained (tight to 1%).

    For unit v, ``vᵀ∇²f v = Var_π(vᵀW)/eps ≤ D²/(4 eps)`` by Popoviciu's inequality,
    ``D = max_{i,j} ‖W_i − W_j‖``; equality iff π puts mass ½ on each of two atoms at
    distance D (v along their difference). At that extremal case ``‖∇²f‖₂`` (autodiff of a
    plain-primitive layer) over :func:`hjax.lse_layer_hessian_bound` must be within 1% of 1:
    a constant too large in the safe direction (``D²/(2 eps)``) fails as surely as a
    violated bound.
    """
    rng = np.random.default_rng(7)
    eps_panel = (1.0, 0.1, 0.02) if quick else (3.0, 1.0, 0.3, 0.1, 0.03, 0.01)
    ratios = np.asarray(_hessian_bound_ratio(*_hessian_extremal_cases(rng, eps_panel)))
    return [
        tight_row(
            FOUNDATION,
            "layer.hessian_bound.tight",
            "‖∇²f‖₂ (autodiff) / lse_layer_hessian_bound = D²/(4 eps) at the extremal case: "
            "the two atoms at distance D tied, the rest e^{−30} below (attained: ratio → 1)",
            "Cor 8.2, Prop E.5(ii)",
            _worst_ratio(ratios),
            ratios=ratios.tolist(),
        )
    ]


# --------------------------------------------------------------------------------------
# §5 attention
# --------------------------------------------------------------------------------------


@jax.jit
def _attention_gap(Q, K, V):
    """Trials (T, n, d): dot_product_attention vs Vᵀ ∇lse(K q_i) at eps = √d_k, where ∇lse is
    jax.grad of a plain-primitive lse (not the library's custom rule, not a softmax)."""
    eps = jnp.sqrt(jnp.asarray(Q.shape[-1], Q.dtype))
    grad_lse = jax.vmap(jax.vmap(jax.grad(_naive_lse), (0, None)), (0, None))
    logits = jnp.einsum("tqd,tkd->tqk", Q, K)
    ref = jnp.einsum("tqk,tkv->tqv", grad_lse(logits, eps), V)
    return jnp.max(jnp.abs(hjax.dot_product_attention(Q, K, V) - ref))


@jax.jit
def _l2_gaps(Q, K, t, eps):
    """eps·log Z vs −u (hopf_cole, g = 0); Z and exp(−u/eps) vs an explicit sum (eps > 0)."""
    free = hjax.l2_log_partition(Q, K, t, eps)
    u = jax.vmap(lambda q: hjax.hopf_cole(q, K, jnp.zeros(K.shape[0], K.dtype), t, eps))(Q)
    safe = jnp.where(eps > 0, eps, 1.0)
    Z = jnp.sum(jnp.exp(-jnp.sum((Q[:, None] - K[None]) ** 2, -1) / (2 * t * safe)), -1)
    z_gap = jnp.maximum(
        jnp.max(jnp.abs(jnp.exp(free / safe) / Z - 1)), jnp.max(jnp.abs(jnp.exp(-u / safe) / Z - 1))
    )
    return jnp.max(jnp.abs(free + u)), jnp.where(eps > 0, z_gap, 0.0)


@register(FOUNDATION)
def attention_is_gibbs_average(quick: bool) -> list[Row]:
    """Attention = Vᵀ∇lse (REFERENCE row D, against autodiff); L2 partition = exp(−u/eps)."""
    rng = np.random.default_rng(2)
    dims, trials = ((4, 64), 8) if quick else ((4, 16, 64), 500)
    worst = 0.0
    for d in dims:
        Q, K = rng.normal(size=(trials, 8, d)), rng.normal(size=(trials, 12, d))
        V = rng.normal(size=(trials, 12, 16))
        worst = _worst(worst, float(_attention_gap(Q, K, V)))
    log_gap = z_gap = 0.0
    for _ in range(1 if quick else 10):
        Q, K, t = rng.normal(size=(8, 3)), rng.normal(size=(12, 3)), rng.uniform(0.2, 2)
        for eps in (1.0, 0.3, 0.0):
            lg, zg = _l2_gaps(Q, K, jnp.asarray(t), jnp.asarray(eps))
            log_gap, z_gap = _worst(log_gap, float(lg)), _worst(z_gap, float(zg))
    return [
        bound_row(
            FOUNDATION,
            "attn.dot_product_is_gibbs",
            "dot-product attention = Vᵀ∇lse(Kq, √d_k) (autodiff of a plain lse), max abs error",
            "eq. 6–7, Prop H.9",
            worst,
            1e-13,
            dims=list(dims),
            trials=trials,
        ),
        bound_row(
            FOUNDATION,
            "attn.l2.log_partition",
            "L2 attention: eps·log Z (l2_log_partition) = −hopf_cole(q, k, g=0, t, eps) "
            "(eps incl. 0)",
            "Thm 4.2",
            log_gap,
            1e-12,
        ),
        bound_row(
            FOUNDATION,
            "attn.l2.partition_sum",
            "L2 attention: Z = exp(−u/eps) = Σ_j exp(−|q−k_j|²/(2t eps)) (rel.)",
            "Thm 4.2",
            z_gap,
            1e-12,
        ),
    ]


@jax.jit
def kv_stream(z, V, eps):
    """Stream keys one at a time through the KV cache (Remark H.11): logits ``z`` ``(n_q, n_k)``,
    values ``V`` ``(n_k, d_v)``; returns ``(lse, mean)`` after each key, ``(n_k, n_q[, d_v])``."""

    def step(state, key):
        z_j, v_j = key
        state = hjax.kv_update(state, z_j, jnp.broadcast_to(v_j, state.mean.shape), eps)
        return state, (hjax.kv_lse(state, eps), state.mean)

    return jax.lax.scan(step, hjax.kv_init(V.shape[1], (z.shape[0],), z.dtype), (z.T, V))[1]


def _np_prefix_attention(z: np.ndarray, V: np.ndarray, eps: float):
    """Full recomputation over every prefix n: (lse_n, Σ π v) with an explicit loop."""
    lses, means = [], []
    for n in range(1, z.shape[1] + 1):
        zn = z[:, :n]
        m = np.max(zn, -1, keepdims=True)
        w = (zn == m).astype(float) if eps == 0 else np.exp((zn - m) / eps)
        lses.append(_np_lse(zn, eps))
        means.append((w @ V[:n]) / w.sum(-1, keepdims=True))
    return np.stack(lses), np.stack(means)


@register(FOUNDATION)
def kv_cache_streaming(quick: bool) -> list[Row]:
    """O(1) KV-cache updates over a sequence equal full recomputation (eps > 0 and = 0)."""
    rng = np.random.default_rng(3)
    worst = 0.0
    for _ in range(2 if quick else 20):
        V = rng.normal(size=(24, 5))
        cases = [
            (rng.normal(size=(6, 24)) * 3, 0.7),
            (rng.normal(size=(6, 24)) * 300, 0.7),  # wide logits: stability
            (rng.normal(size=(6, 24)), 0.0),
            (rng.integers(0, 3, size=(6, 24)).astype(float), 0.0),  # exact ties
        ]
        for z, eps in cases:
            lses, means = (np.asarray(a) for a in kv_stream(z, V, jnp.asarray(eps)))
            ref_l, ref_m = _np_prefix_attention(z, V, eps)
            worst = _worst(
                worst, float(np.max(np.abs(lses - ref_l) / np.maximum(1, np.abs(ref_l))))
            )
            worst = _worst(worst, float(np.max(np.abs(means - ref_m))))
    return [
        bound_row(
            FOUNDATION,
            "attn.kv_cache_stream",
            "KV cache: streamed (max, mass, mean) = full recomputation (ties incl.)",
            "Remark H.11",
            worst,
            1e-12,
        ),
    ]


@jax.jit
def _sink_ratio(z, eps):
    """|lse(z, eps) − max z| / attention_sink_bound(z, eps), row-wise (k = the argmax)."""
    return jnp.abs(hjax.lse(z, eps) - jnp.max(z, -1)) / hjax.attention_sink_bound(z, eps)


@register(FOUNDATION)
def attention_sink(quick: bool) -> list[Row]:
    r"""Attention sink / dominant atom: ``|lse(z) − z_k| ≤ eps (N−1) e^{−Δ/eps}``.

    Remark H.12 / Prop 8.5, ``Δ = z_k − max_{j≠k} z_j``. Since
    ``lse(z) − z_k = eps log(1 + Σ_{j≠k} e^{−(z_k − z_j)/eps}) ≤ eps Σ_{j≠k} e^{−(z_k − z_j)/eps}
    ≤ eps (N−1) e^{−Δ/eps}``, the bound is attained when all N−1 rivals tie at ``z_k − Δ``
    (second inequality) and ``Δ/eps → ∞`` (``log(1+u) ≤ u``): there the ratio is
    ``log1p(u)/u``, ``u = (N−1) e^{−Δ/eps}``. Measured at random logits (valid) and at that
    extremal case with ``Δ = 12 eps`` (tight to 1%: ``N`` in place of ``N − 1`` fails).
    """
    rng = np.random.default_rng(4)
    z = 4 * rng.normal(size=(200 if quick else 20000, 6))
    worst = _worst(*(float(jnp.max(_sink_ratio(z, jnp.asarray(eps)))) for eps in (2.0, 0.5, 0.1)))
    ratios, exact = [], []
    rows = z.shape[0]  # N = 6 reuses the compilation of the random panel
    for n in (6, 33) if quick else (2, 3, 6, 33, 128):
        for eps in (2.0, 0.5, 0.1):
            gap = 12.0 * eps
            z_ext = np.full((rows, n), -gap) + rng.normal(size=(rows, 1))  # offset per row
            k = rng.integers(0, n, size=rows)
            z_ext[np.arange(rows), k] += gap  # the dominant atom, at a random position
            ratios.extend(np.asarray(_sink_ratio(z_ext, jnp.asarray(eps))).tolist())
            u = (n - 1) * math.exp(-gap / eps)
            exact.append(math.log1p(u) / u)
    return [
        bound_row(
            FOUNDATION,
            "attn.sink_bound.random",
            "max |lse(z) − z_k| / (eps (N−1) e^{−Δ/eps}) over random logits (≤ 1: the bound holds)",
            "Remark H.12, Prop 8.5",
            worst,
            1.0,
        ),
        tight_row(
            FOUNDATION,
            "attn.sink_bound.tight",
            "|lse(z) − z_k| / attention_sink_bound at the extremal case: N−1 rivals tied at "
            "z_k − Δ, Δ = 12 eps (attained: ratio = log1p(u)/u ≥ 0.9998)",
            "Remark H.12, Prop 8.5",
            _worst_ratio(ratios),
            min_exact=min(exact),
        ),
    ]


def block_from_hopf_cole(block: hjax.LSETransformerBlock, X, eps, attn_eps, t):
    """An :class:`hjax.LSETransformerBlock`'s output rebuilt from Hopf–Cole solutions.

    Every sub-layer is read as HJ data at gauge time ``t`` and evaluated with
    :func:`hjax.hopf_cole` (Thm 4.1, Prop H.9): each head's weights are
    ``π_j = ∂u/∂g_j`` for its keys' reading ``(y, g) = lse_to_hj(K, 0, t)`` (autodiff, not a
    softmax), each FFN unit is ``|z|²/(2t) − u(z)`` for its ``(y, g) = lse_to_hj(W_k, b_k, t)``.
    Layer norms and the linear maps are the block's own. ``X``: one sequence ``(n, D)``.

    Returns:
        ``(output (n, D), max |lse(K q, attn_eps) − (|q|²/(2t) − u(q))|`` over heads and
        queries``)``.
    """
    attn, ffn = block.attn, block.ffn
    hc = lambda q, y, g, e: hjax.hopf_cole(q, y, g, t, e)
    per_query = jax.vmap(hc, (0, None, None, None))  # u at every token
    per_query_dudg = jax.vmap(jax.grad(hc, 2), (0, None, None, None))  # π_j = ∂u/∂g_j
    Z1 = jax.vmap(block.ln1)(X)

    def head(Wq, Wk, Wv, Wo):
        Q, K, V = Z1 @ Wq, Z1 @ Wk, Z1 @ Wv
        y, g = hjax.lse_to_hj(K, jnp.zeros(K.shape[0], K.dtype), t)  # row log-partition lse(K q)
        u = per_query(Q, y, g, attn_eps)
        gap = jnp.max(jnp.abs(jnp.sum(Q**2, -1) / (2 * t) - u - hjax.lse(Q @ K.T, attn_eps)))
        return per_query_dudg(Q, y, g, attn_eps) @ V @ Wo, gap

    heads, gaps = jax.vmap(head)(attn.Wq, attn.Wk, attn.Wv, attn.Wo)
    X1 = X + jnp.sum(heads, 0)
    Z2 = jax.vmap(block.ln2)(X1)

    def unit(W, b):  # Thm 4.1: unit = |z|²/(2t) − u(z) for its (y, g) reading
        y, g = hjax.lse_to_hj(W, b, t)
        return jnp.sum(Z2**2, -1) / (2 * t) - per_query(Z2, y, g, eps)

    phis = jax.vmap(unit, out_axes=-1)(ffn.hidden.W, ffn.hidden.b)
    return X1 + phis @ ffn.W_out.T + ffn.b_out, jnp.max(gaps)


@jax.jit
def _block_gap(block, X, eps, t):
    """max |block(X) − block_from_hopf_cole| and the attention log-partition gap over trials
    ``X`` ``(T, n, D)``, attention at its default temperature √d_k."""
    a_eps = jnp.sqrt(jnp.asarray(block.attn.Wq.shape[-1], X.dtype))

    def one(X):
        ref, gap = block_from_hopf_cole(block, X, eps, a_eps, t)
        return jnp.max(jnp.abs(block(X, eps) - ref)), gap

    out_gap, attn_gap = jax.vmap(one)(X)
    return jnp.max(out_gap), jnp.max(attn_gap)


@register(FOUNDATION)
def transformer_block_sublayers(quick: bool) -> list[Row]:
    """Thm 4.1 per sub-layer of the pre-norm LSE-transformer block (REFERENCE row G)."""
    rng = np.random.default_rng(5)
    dims, trials = ((8,), 4) if quick else ((4, 16, 64), 100)
    out_gap = attn_gap = 0.0
    for d in dims:
        block = hjax.LSETransformerBlock(
            d, heads=2, d_head=max(d // 2, 2), units=8, atoms=32, key=jax.random.key(d)
        )
        X = rng.normal(size=(trials, 8, d))
        for eps in (0.5, 0.05, 0.0):
            for t in (0.5, 2.0):
                g_out, g_attn = _block_gap(block, X, jnp.asarray(eps), t)
                out_gap, attn_gap = _worst(out_gap, float(g_out)), _worst(attn_gap, float(g_attn))
    return [
        bound_row(
            FOUNDATION,
            "block.output_from_hopf_cole",
            "LSE block output rebuilt from hopf_cole of each sub-layer's (y, g)",
            "Thm 4.1, Prop H.9",
            out_gap,
            1e-12,
            d_model=list(dims),
            trials=trials,
        ),
        bound_row(
            FOUNDATION,
            "block.attn_log_partition",
            "attention row log-partition lse(Kq) = |q|²/(2t) − u(q) (hopf_cole)",
            "Thm 4.1, Prop H.9",
            attn_gap,
            1e-12,
        ),
    ]


# --------------------------------------------------------------------------------------
# Prop E.6 (co-state group)
# --------------------------------------------------------------------------------------


def _np_heat_weights(x, y, g, t, eps, A):
    """π_j ∝ K_{eps t}(x − y_j) exp(−g_j/eps), K the Gaussian of covariance eps t A."""
    d, s = y.shape[1], eps * t
    diff = x[:, None] - y[None]
    quad = np.einsum("bni,ij,bnj->bn", diff, np.linalg.inv(A), diff)
    log_p = -quad / (2 * s) - 0.5 * math.log((2 * math.pi * s) ** d * np.linalg.det(A)) - g / eps
    p = np.exp(log_p - np.max(log_p, -1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


@register(COSTATE)
def backprop_is_adjoint_heat_semigroup(quick: bool) -> list[Row]:
    """jax.grad of L(lse_layer) = L'(f) π(x) [⊗ x], π the heat-kernel weights of (y, g, t)."""
    rng = np.random.default_rng(6)
    loss = lambda f: jnp.sin(f) + f**2 / 2  # L'(f) = cos f + f
    grads = jax.jit(
        jax.grad(lambda W, b, x, e: jnp.sum(loss(hjax.lse_layer(x, W, b, e))), argnums=(0, 1))
    )
    worst = formula = 0.0
    for _ in range(2 if quick else 40):
        d = 3 if quick else int(rng.integers(1, 6))
        W, b = 0.5 * rng.normal(size=(8, d)), rng.normal(size=8)
        x, A, t = rng.normal(size=(16, d)), _spd(rng, d, 3.0), float(rng.uniform(0.2, 2))
        y, g = (np.asarray(a) for a in hjax.lse_to_hj(W, b, t, A=A))
        for eps in (1.0, 0.3):
            dW, db = (np.asarray(a) for a in grads(W, b, x, jnp.asarray(eps)))
            f = _np_lse(x @ W.T + b, eps)
            weighted = (np.cos(f) + f)[:, None] * _np_heat_weights(x, y, g, t, eps, A)
            scale = max(1.0, float(np.max(np.abs(db))))
            worst = _worst(worst, float(np.max(np.abs(db - weighted.sum(0)))) / scale)
            worst = _worst(worst, float(np.max(np.abs(dW - weighted.T @ x))) / scale)
            dW_c, db_c = hjax.lse_layer_backward(x, W, b, eps, np.cos(f) + f)
            formula = _worst(formula, float(np.max(np.abs(np.asarray(db_c) - db))) / scale)
            formula = _worst(formula, float(np.max(np.abs(np.asarray(dW_c) - dW))) / scale)
    return [
        bound_row(
            COSTATE,
            "costate.lse_backprop_heat_kernel",
            "∂L/∂b_j = L'(f)π_j, ∂L/∂W_j = L'(f)π_j x, π ∝ K_{eps t}(x−y_j)e^{−g_j/eps}",
            "Prop E.6",
            worst,
            1e-11,
        ),
        bound_row(
            COSTATE,
            "costate.lse_layer_backward",
            "lse_layer_backward (closed form) = jax.grad",
            "Prop E.6",
            formula,
            1e-12,
        ),
    ]
