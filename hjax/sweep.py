r"""Sweeps of the Hopf–Cole solution over eps × width × points, compiled once (THEORY §2, §4, §8).

The commutative diagram of Theorem 7.1 is a statement about a grid: the discrete solution

.. math::

    u^{n}_\varepsilon(x, t) = -\varepsilon \log \sum_{j < n} w_j
        \exp\!\Big(-\frac{c_t(x, y_j) + g_j}{\varepsilon}\Big)

for many viscosities ``eps`` (claim (iv), eps → 0, including the Hopf–Lax value at
eps = 0, Thm 5.1), many widths ``n`` (claim (iii), N → ∞) and many query points ``x``.
:func:`hopf_cole_sweep` evaluates the whole grid in one jitted call:

* **Widths cost nothing extra.** Widths are prefixes of one atom sequence (nested
  quadrature), so the atom axis is split into the segments ``[n_{w-1}, n_w)``; each
  segment is reduced once per (eps, point) by a shifted log-sum-exp, and the W segment
  values are combined by a cumulative ``⊕_eps`` (log-add-exp; ``max`` at eps = 0). Work
  is ``O(E·P·N)``, not ``O(E·P·W·N)``.
* **Shared work across eps.** The cost matrix of a chunk of points and the segment
  shifts (max of the logits and of the log-weights per segment) do not depend on eps:
  they are computed once per chunk, and each eps costs one ``exp``-and-add per atom.
  (When the log-weights inside a segment span more than about half the float exponent
  range, an eps-independent shift could underflow; the sweep then shifts per eps, as
  :func:`hjax.lse` does.)
* **Compiled once.** eps and t are traced arrays; only the widths and the options are
  static, so new eps grids or times never recompile.
* **Bounded memory, cache-sized chunks.** The points are evaluated in chunks (a
  ``lax.map`` over a padded point axis; by default :func:`hjax._kernels.block_rows` points,
  a ``chunk × N`` cost matrix of about 2^20 entries on CPU, which stays in cache across
  the eps loop): the cost matrix of a chunk is the largest array, computed as one matrix
  product (no ``chunk × N × d`` differences), with at most ``E × chunk × N`` in flight
  where XLA vectorizes over eps. Reverse mode recomputes each chunk (``jax.checkpoint``)
  instead of storing it. On the CPU the segments come from the fused kernels of
  :mod:`hjax._native` (per eps and segment, log-weights tilted exactly, no cost matrix
  held at all), and by default all points form one chunk.
* **Sharded.** ``sharded=True`` splits the point axis over this process's devices with
  :func:`jax.shard_map` on a one-axis :class:`jax.sharding.Mesh`; each device runs the
  same per-point computation, so the result equals the single-device one.
* **Progress.** ``progress=True`` runs the chunks as successive calls of the same
  compiled function and reports ``chunk i/n``, the elapsed time and an estimate of the
  time left.
"""

import functools
import operator
import sys
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as PSpec

from . import _distributed, _kernels, _native, _validate
from ._types import Array, ArrayLike, Float, Real, ScalarLike

__all__ = ["hopf_cole_sweep"]

_AXIS = "points"
#: With ``progress=True`` and no ``point_chunk``, the points are split into this many chunks.
_PROGRESS_CHUNKS = 10


def _check_widths(widths: Sequence[int], n_atoms: int) -> tuple[int, ...]:
    """Widths as a tuple of Python ints: non-empty, strictly increasing, in [1, N]."""
    try:
        ws = tuple(operator.index(w) for w in widths)
    except TypeError:
        raise ValueError(f"`widths` must be a sequence of integers; got {widths!r}.") from None
    if not ws:
        raise ValueError("`widths` must contain at least one width.")
    if ws[0] < 1:
        raise ValueError(f"`widths` must be >= 1; got {ws}.")
    if any(b <= a for a, b in zip(ws, ws[1:], strict=False)):
        raise ValueError(f"`widths` must be strictly increasing (nested prefixes); got {ws}.")
    if ws[-1] > n_atoms:
        raise ValueError(
            f"`widths` must not exceed the number of atoms N = {n_atoms} (rows of `y`); got {ws}."
        )
    return ws


def _check_chunk(point_chunk: int | None) -> int | None:
    if point_chunk is None:
        return None
    try:
        chunk = operator.index(point_chunk)
    except TypeError:
        raise ValueError(
            f"`point_chunk` must be a positive integer; got {point_chunk!r}."
        ) from None
    if chunk < 1:
        raise ValueError(f"`point_chunk` must be a positive integer; got {chunk}.")
    return chunk


def _loop_over_eps() -> bool:
    """Run the eps axis as a loop (CPU) rather than a vmap (GPU/TPU); see _chunk_values."""
    return jax.default_backend() == "cpu"


@functools.cache
def _mesh(devices: tuple) -> Mesh:
    return Mesh(np.asarray(devices), (_AXIS,))


def _log_add(eps: Array, a: Array, b: Array) -> Array:
    """``a ⊕_eps b`` elementwise (``max`` at eps = 0; ``-inf`` is the neutral element)."""
    return _kernels.lse_last(jnp.stack([a, b], axis=-1), eps)


def _prefix_log_add(eps: Array, seg: Array, n_max: int) -> Array:
    """Cumulative ``⊕_eps`` along the last (width) axis: ``out_w = ⊕_{k<=w} seg_k``.

    For ``W² <= n_max`` (then no dearer than the pass over the atoms) this is one masked
    log-sum-exp over the lower-triangular ``(W, W)`` array, which compiles and
    differentiates fastest; otherwise a ``lax.associative_scan`` (``O(W)`` work).
    """
    W = seg.shape[-1]
    if W * W <= n_max:
        lower = np.tril(np.ones((W, W), dtype=bool))
        return _kernels.lse_last(jnp.where(lower, seg[..., None, :], -jnp.inf), eps)
    return jax.lax.associative_scan(functools.partial(_log_add, eps), seg, axis=-1)


def _bounds(widths: tuple[int, ...]) -> list[tuple[int, int]]:
    """The atom segments ``[n_{w-1}, n_w)`` (``n_0 = 0``)."""
    return list(zip((0,) + widths[:-1], widths, strict=True))


def _max_log_w_spread(log_w, widths: tuple[int, ...], xp=jnp):
    """Largest ``max - min`` of the active log-weights within one segment (0 if none).

    ``xp`` is ``numpy`` for concrete log-weights (decided before compiling) or
    ``jax.numpy`` for traced ones (decided at run time).
    """
    active = log_w != -xp.inf
    hi = xp.where(active, log_w, -xp.inf)
    lo = xp.where(active, log_w, xp.inf)
    spreads = xp.stack([xp.max(hi[a:b]) - xp.min(lo[a:b]) for a, b in _bounds(widths)])
    return xp.max(xp.where(xp.isfinite(spreads), spreads, xp.zeros_like(spreads)))


def _spread_limit(dtype) -> float:
    """Log-weight spread below which the eps-independent shift cannot underflow."""
    return -0.5 * float(np.log(np.finfo(dtype).tiny))


def _shared_shift_prep(z, log_w, widths):
    """The eps-independent part of :func:`_segments_shared_shift`, computed once per chunk.

    Returns the logits with masked atoms at ``-inf``, the segment maxima ``m`` ``(C, W)``
    (``-inf`` for a fully masked segment), their finite version used as the shift, the
    log-weights relative to their segment maximum ``(N,)`` and those maxima ``(W,)``.
    """
    bounds = _bounds(widths)
    lw_rel = top = None
    if log_w is not None:
        active, _ = _kernels.mask(log_w)
        z = jnp.where(active, z, jnp.full_like(z, -jnp.inf))
        lw = jnp.where(active, log_w, jnp.full_like(log_w, -jnp.inf))
        top = jnp.stack([jnp.max(lw[a:b]) for a, b in bounds])
        top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, jnp.zeros_like(top)))
        lw_rel = jnp.concatenate([lw[a:b] - top[k] for k, (a, b) in enumerate(bounds)])
    m = jnp.stack([jnp.max(z[:, a:b], axis=-1) for a, b in bounds], axis=-1)
    shift = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m)))
    return z, m, shift, lw_rel, top


def _segments_shared_shift(prep, e, widths):
    r"""Segment log-sum-exps ``(C, W)`` at one eps, with an eps-independent shift.

    For segment k, with ``m_k = max_{j∈k active} z_j`` and ``ℓ_k = max_{j∈k} log w_j``,

    .. math::

        \varepsilon\log\sum_{j\in k} w_j e^{z_j/\varepsilon}
        = m_k + \varepsilon\Big(\ell_k + \log\sum_{j\in k}
          e^{(z_j - m_k)/\varepsilon + \log w_j - \ell_k}\Big).

    Every exponent is ``<= 0`` and the term of the atom attaining ``m_k`` is at least
    ``exp(-(ℓ_k - min log w))``, so the sum neither overflows nor underflows while the
    log-weight spread stays below :func:`_spread_limit`. The shifts come from
    :func:`_shared_shift_prep` (once per chunk, not once per eps), and at eps = 0 the
    value is ``m_k`` exactly.
    """
    z, m, shift, lw_rel, top = prep
    safe = _kernels.safe(e)
    sums = []
    for k, (a, b) in enumerate(_bounds(widths)):
        expo = (z[:, a:b] - shift[:, k : k + 1]) / safe
        if lw_rel is not None:
            expo = expo + lw_rel[a:b]
        sums.append(jnp.sum(jnp.exp(expo), axis=-1))
    sums = jnp.stack(sums, axis=-1)  # 0 only for a fully masked segment
    pos = sums > 0
    log_sum = jnp.log(jnp.where(pos, sums, jnp.ones_like(sums)))
    if top is not None:
        log_sum = log_sum + top
    soft = jnp.where(pos, shift + safe * log_sum, jnp.full_like(sums, -jnp.inf))
    return jnp.where(e > 0, soft, m)


def _segments_per_eps_shift(z, log_w, e, widths):
    """Segment log-sum-exps ``(C, W)`` at one eps, shifted by the max as :func:`hjax.lse`."""
    s = _kernels.tilt(z, e, log_w)
    return jnp.stack([_kernels.lse_last(s[:, a:b], e) for a, b in _bounds(widths)], axis=-1)


def _native_segments(xc, atoms, eps, log_w, widths):
    """Segment log-sum-exps ``(E, C, W)`` by the fused CPU kernel (:mod:`hjax._native`): for
    each eps (a loop) and segment, the affine log-sum-exp of the expanded-form logits of
    :func:`hjax._kernels.hj_block_logits` with the log-weights tilted in exactly (any
    spread), its derivatives from the kernel's rules."""
    centre, y_t, bias, t = atoms
    x_c = xc - centre
    row = jnp.sum(x_c * x_c, axis=-1, keepdims=True) / (2 * t)
    W = y_t.T

    def segments(e):
        b = _kernels.tilt(bias, e, log_w)
        parts = [_native.affine_lse(x_c, W[lo:hi], b[lo:hi], e) for lo, hi in _bounds(widths)]
        return jnp.stack(parts, axis=-1) - row

    return jax.lax.map(segments, eps)


def _chunk_values(xc, atoms, eps, log_w, widths, shift, eps_loop):
    """``u[e, w, c] = -⊕_{eps_e, j<n_w} (−c_t(x_c, y_j) − g_j + eps_e log w_j)``: ``(E, W, C)``.

    ``shift`` picks the segment kernel: ``"shared"`` (eps-independent shift), ``"per_eps"``
    (exact for any log-weights) or ``"auto"`` (decided at run time from the log-weights).
    On the CPU the segments come from the fused kernel (:func:`_native_segments`; ``shift``
    and ``eps_loop`` then do not apply). ``eps_loop`` runs the eps axis as a loop
    (``lax.map``) instead of a ``vmap``: with the XLA kernels on CPU the loop keeps the cost
    matrix and the shifts as loop invariants computed once per chunk, whereas under
    ``vmap`` XLA:CPU may fuse the cost into every eps reduction (recomputing it per eps) or
    materialize ``E × C × segment`` broadcasts (measured 2-10x slower). On
    GPU/TPU the ``vmap`` gives one wide kernel per segment. ``xc`` and the atoms
    (:func:`hjax._kernels.hj_atoms`) come whitened (``L⁻¹x``, ``L⁻¹y`` for ``A = LLᵀ``), so
    the cost is the Euclidean one, in the expanded matrix-product form of
    :func:`hjax._kernels.hj_block_logits` (no ``C × N × d`` differences).
    """
    if _native.usable(xc.dtype):
        seg = _native_segments(xc, atoms, eps, log_w, widths)
        cum = jax.vmap(functools.partial(_prefix_log_add, n_max=widths[-1]))(eps, seg)
        return -jnp.swapaxes(cum, 1, 2)
    z = _kernels.hj_block_logits(xc, atoms)  # (C, N), shared by every eps
    prep = None if shift == "per_eps" else _shared_shift_prep(z, log_w, widths)

    def segments(e):
        if shift == "shared" or log_w is None:
            return _segments_shared_shift(prep, e, widths)
        if shift == "per_eps":
            return _segments_per_eps_shift(z, log_w, e, widths)
        return jax.lax.cond(
            _max_log_w_spread(log_w, widths) <= _spread_limit(z.dtype),
            lambda e: _segments_shared_shift(prep, e, widths),
            lambda e: _segments_per_eps_shift(z, log_w, e, widths),
            e,
        )

    seg = jax.lax.map(segments, eps) if eps_loop else jax.vmap(segments)(eps)  # (E, C, W)
    cum = jax.vmap(functools.partial(_prefix_log_add, n_max=widths[-1]))(eps, seg)
    return -jnp.swapaxes(cum, 1, 2)


@functools.partial(
    jax.jit,
    static_argnames=(
        "widths",
        "shift",
        "eps_loop",
        "chunk",
        "n_atoms",
        "normalized",
        "renorm",
        "mesh",
    ),
)
def _sweep(
    x,
    y,
    g,
    t,
    eps,
    log_w,
    logdet_A,
    *,
    widths,
    shift,
    eps_loop,
    chunk,
    n_atoms,
    normalized,
    renorm,
    mesh,
):
    """The compiled sweep over padded, whitened points ``x`` (length a multiple of devices ×
    chunk) and whitened atoms ``y``."""
    d = x.shape[-1]
    E, W = eps.shape[0], len(widths)
    replicated = (y, g, t, eps, log_w)

    def local(xl, y, g, t, eps, log_w):
        values = functools.partial(
            _chunk_values,
            atoms=_kernels.hj_atoms(y, g, t),
            eps=eps,
            log_w=log_w,
            widths=widths,
            shift=shift,
            eps_loop=eps_loop,
        )
        if xl.shape[0] == chunk:
            return values(xl)
        # Reverse mode recomputes each chunk instead of storing its E × chunk × N weights.
        out = jax.lax.map(jax.checkpoint(values), xl.reshape(-1, chunk, d))
        return jnp.moveaxis(out, 0, 2).reshape(E, W, xl.shape[0])

    if mesh is None:
        u = local(x, *replicated)
    else:
        in_specs = (PSpec(_AXIS),) + jax.tree.map(lambda _: PSpec(), replicated)
        u = jax.shard_map(local, mesh=mesh, in_specs=in_specs, out_specs=PSpec(None, None, _AXIS))(
            x, *replicated
        )
    if renorm:
        log_ratio = jnp.asarray(np.log(n_atoms / np.asarray(widths, dtype=np.float64)), u.dtype)
        u = u - eps[:, None, None] * log_ratio[None, :, None]
    if normalized:
        u = u + _kernels.normalization(d, t, eps, logdet_A)[:, None, None]
    return u


def hopf_cole_sweep(
    x: Float[ArrayLike, "P d"],
    y: Float[ArrayLike, "N d"],
    g: Float[ArrayLike, " N"],
    t: ScalarLike,
    eps: Real[ArrayLike, " E"],
    widths: Sequence[int],
    *,
    log_w: Float[ArrayLike, " N"] | None = None,
    A: Float[ArrayLike, "d d"] | None = None,
    normalized: bool = False,
    renormalize_prefix: bool = False,
    point_chunk: int | None = None,
    sharded: bool = False,
    distributed: bool = False,
    progress: bool = False,
) -> Float[Array, "E W P"]:
    r"""Hopf–Cole solutions for every (eps, width, point) of a grid, in one compiled call.

    .. math::

        u[e, w, p] = -\varepsilon_e \log \sum_{j < n_w} w^{(w)}_j
            \exp\!\Big(-\frac{c_t(x_p, y_j) + g_j}{\varepsilon_e}\Big)
        \;[+\; \tfrac{\varepsilon_e d}{2}\log(2\pi\varepsilon_e t)
              + \tfrac{\varepsilon_e}{2}\log\det A],

    i.e. ``hopf_cole(x[p], y[:n_w], g[:n_w], t, eps[e], log_w=log_w[:n_w], A=A,
    normalized=normalized)`` (THEORY §2, Thm 4.1/4.4), and at ``eps = 0`` the Hopf–Lax
    value ``min_{j<n_w} [c_t(x_p, y_j) + g_j]`` over the active atoms (§4, Thm 5.1). With
    ``renormalize_prefix=True`` width n uses ``log w^{(n)}_j = log_w_j + log(N/n)``: an
    equal-weight nested quadrature (``log_w = log(vol/N)``) whose prefix of length n
    has weights ``vol/n`` — the grid for Theorem 7.1's claims (iii)–(v) (THEORY §8).

    Widths are nested prefixes, so the atom axis is reduced once per (eps, point) in
    segments ``[n_{w-1}, n_w)`` combined by a cumulative ``⊕_eps``: ``O(E·P·N)`` work.
    eps and t are traced: new eps grids or times reuse the compiled function.

    Args:
        x: query points ``(P, d)``, finite.
        y: atoms ``(N, d)``, finite, ordered so that every width is a prefix.
        g: initial values ``g(y_j)``, ``(N,)``, finite (mask with ``log_w``, not ``+inf``).
        t: time ``> 0``.
        eps: viscosities ``(E,)``, each ``>= 0`` (0 is the exact tropical limit).
        widths: static, strictly increasing prefix lengths ``1 <= n_1 < … < n_W <= N``.
        log_w: log-weights ``(N,)`` (default 0, counting measure); ``-inf`` masks an atom.
        A: symmetric positive-definite metric ``(d, d)`` (default identity).
        normalized: add the heat-kernel normalization (THEORY §2).
        renormalize_prefix: width n gets ``log_w + log(N/n)``.
        point_chunk: evaluate at most this many points at a time (per device); memory
            grows like ``point_chunk · N`` (up to ``E · point_chunk · N`` where XLA
            vectorizes over eps). ``None``: with the fused CPU kernels all points at once
            (they hold ``O(points)`` per call), else cache-sized chunks
            (:func:`hjax._kernels.block_rows` of the widest prefix).
        sharded: split the point axis over this process's devices
            (``jax.local_devices()``: all of them in a single-process run), padding it to
            a multiple of the device count; the result is identical.
        distributed: in a ``jax.distributed`` run, split the points across the processes
            (point ``p`` on process ``p mod P``, each process sharding its share over its
            own devices with ``sharded=True``) and gather the values at the end: every
            process returns the whole grid, equal to a single-process run. Needs concrete
            inputs. Without ``jax.distributed`` (one process) it changes nothing.
        progress: print ``chunk i/n``, the elapsed time and the estimated time left to
            stderr after every chunk (the chunks then run as successive calls of one
            compiled function; with ``point_chunk=None`` the points are split into 10
            chunks). Needs concrete (non-traced) inputs. Silent by default.

    Returns:
        ``u`` of shape ``(E, W, P)``: ``u[e, w, p] = u^{n_w}_{eps_e}(x_p, t)``.

    Example:
        >>> import jax.numpy as jnp
        >>> y = jnp.array([[0.0], [1.0]]); g = jnp.array([0.0, -1.0])
        >>> u = hopf_cole_sweep(jnp.array([[0.5]]), y, g, 1.0, jnp.array([0.0]), [1, 2])
        >>> u[0, :, 0].tolist()
        [0.125, -0.875]
    """
    x, y, g, t, A, log_w, dtype = _validate.hj_inputs(x, y, g, t, A=A, log_w=log_w)
    chol, logdet_A = _kernels.metric(A, dtype)
    if x.ndim != 2:
        raise ValueError(f"`x` must have shape (P, d); got {x.shape}.")
    if x.shape[0] == 0:
        raise ValueError("`x` must contain at least one point; got shape (0, d).")
    if distributed and jax.process_count() > 1:
        kwargs = dict(
            log_w=log_w,
            A=A,
            normalized=normalized,
            renormalize_prefix=renormalize_prefix,
            point_chunk=point_chunk,
            sharded=sharded,
            progress=progress,
        )
        return _sweep_across_processes(x, (y, g, t, eps, widths), kwargs)
    _validate.real("eps", eps)
    eps = jnp.asarray(eps, dtype)
    if eps.ndim != 1 or eps.shape[0] == 0:
        raise ValueError(
            f"`eps` must be a non-empty 1-D array of viscosities (E,); got shape {eps.shape}."
        )
    eps = _validate.nonnegative("eps", eps, finite=True)
    n_atoms = y.shape[0]
    widths = _check_widths(widths, n_atoms)
    chunk = _check_chunk(point_chunk)
    # Only the widest prefix is ever read.
    n_max = widths[-1]
    y, g = y[:n_max], g[:n_max]
    log_w = None if log_w is None else log_w[:n_max]
    # c_t(x, y) = |L⁻¹x − L⁻¹y|²/(2t): whiten once, then every chunk uses Euclidean costs.
    x, y = _kernels.whiten(chol, x), _kernels.whiten(chol, y)

    devices = tuple(jax.local_devices()) if sharded else None
    n_dev = 1 if devices is None else len(devices)
    n_points = x.shape[0]
    per_device = -(-n_points // n_dev)
    if chunk is None and progress:
        chunk = -(-per_device // _PROGRESS_CHUNKS)
    elif chunk is None:
        # The fused kernel holds O(points) per call: one chunk; else cache-sized chunks.
        chunk = per_device if _native.usable(dtype) else _kernels.block_rows(n_max)
    chunk = min(chunk, per_device)
    n_chunks = -(-per_device // chunk)
    padded = n_dev * n_chunks * chunk
    # Devices hold contiguous blocks of n_chunks * chunk points; padding goes at the end.
    if padded > n_points:
        x = jnp.concatenate([x, jnp.zeros((padded - n_points, x.shape[1]), dtype)], axis=0)
    if log_w is None:
        shift = "shared"
    elif _validate.is_traced(log_w):
        shift = "auto"
    else:
        spread = float(_max_log_w_spread(np.asarray(log_w), widths, xp=np))
        shift = "shared" if spread <= _spread_limit(dtype) else "per_eps"
    static = dict(
        widths=widths,
        shift=shift,
        eps_loop=_loop_over_eps(),
        n_atoms=n_atoms,
        normalized=bool(normalized),
        renorm=bool(renormalize_prefix),
        mesh=None if devices is None else _mesh(devices),
    )
    args = (y, g, t, eps, log_w, logdet_A)
    if not progress:
        u = _sweep(x, *args, chunk=chunk, **static)
        return u if padded == n_points else u[:, :, :n_points]
    return _sweep_with_progress(x, args, n_points, n_dev, chunk, n_chunks, static)


def _sweep_across_processes(x: Array, args: tuple, kwargs: dict) -> Array:
    """Every process sweeps its strided share of the points; the shares are gathered."""
    if any(_validate.is_traced(a) for a in jax.tree.leaves((x, args[:4], kwargs))):
        raise ValueError(
            "`distributed` (=True) gathers the processes' results on the host and needs "
            "concrete inputs; call hopf_cole_sweep outside jit (or set distributed=False)."
        )
    _distributed.connect()
    n_points = x.shape[0]
    mine, n_pad = _distributed.process_share(n_points)
    # Padding points (copies of the first) keep the shares equal; they are dropped.
    share = x[jnp.asarray(mine + [0] * n_pad, dtype=jnp.int32)]
    local = hopf_cole_sweep(share, *args, **kwargs)
    return jnp.asarray(_distributed.gather_strided(np.asarray(local), n_points, axis=2))


def _sweep_with_progress(x_pad, args, n_points, n_dev, chunk, n_chunks, static):
    """Run the chunks as separate calls of one compiled function, reporting after each."""
    if any(_validate.is_traced(a) for a in jax.tree.leaves((x_pad, args))):
        raise ValueError(
            "`progress` (=True) reports wall-clock time and needs concrete inputs; "
            "call hopf_cole_sweep outside jit (or set progress=False)."
        )
    # Device k's chunk i holds points [k * n_chunks * chunk + i * chunk, ... + chunk).
    blocks = x_pad.reshape(n_dev, n_chunks, chunk, -1)
    start = time.perf_counter()
    outs = []
    for i in range(n_chunks):
        block = blocks[:, i].reshape(n_dev * chunk, -1)
        out = _sweep(block, *args, chunk=chunk, **static)
        outs.append(out.block_until_ready())
        elapsed = time.perf_counter() - start
        if i == 0:
            first = elapsed  # includes compiling: later chunks set the pace
        per_chunk = first if i == 0 else (elapsed - first) / i
        left = per_chunk * (n_chunks - i - 1)
        print(
            f"hopf_cole_sweep: chunk {i + 1}/{n_chunks} done, {elapsed:.2f} s elapsed, "
            f"~{left:.2f} s left",
            file=sys.stderr,
            flush=True,
        )
    u = jnp.stack(outs, axis=2)  # (E, W, n_chunks, n_dev * chunk)
    E, W = u.shape[:2]
    u = u.reshape(E, W, n_chunks, n_dev, chunk).transpose(0, 1, 3, 2, 4)
    return u.reshape(E, W, -1)[:, :, :n_points]
