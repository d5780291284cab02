r"""Training sweeps: a whole grid of LSE networks (seeds × eps × widths) in one compiled call.

:func:`train_sweep` fits, by least squares, every network of the grid

.. math::

    f_{s,e,k}(x) = \operatorname{lse}\big(W^{(s,e,k)} x + b^{(s,e,k)},\ \varepsilon_{e,k}\big)
    = \varepsilon_{e,k} \log \sum_{j=1}^{N_k} \exp\Big(\frac{W^{(s,e,k)}_j \cdot x
      + b^{(s,e,k)}_j}{\varepsilon_{e,k}}\Big),
    \qquad W^{(s,e,k)} \in \mathbb{R}^{N_k \times d},

for seeds ``s``, eps rows ``e`` and widths ``N_k`` (the Hopf–Cole reading of THEORY §3: each
network is the viscous HJ solution with ``N_k`` atoms; Thm 8.1 / Prop 8.8 are about how the
fitted error scales with ``N_k`` and ``eps``). Each network minimises its own mean squared
error :math:`L_{s,e,k} = \frac1{|B|}\sum_{i\in B} (f_{s,e,k}(x_i) - y_i)^2` with its own copy
of an optax optimizer, full batch or in minibatches, in a ``lax.scan`` over steps.

How the grid is batched
-----------------------

* **seeds and eps** are ``vmap`` axes. eps is an array leaf, never static: a new eps grid of
  the same shape reuses the compiled code.
* **widths are packed, not padded.** The networks of one ``(seed, eps)`` pair are stored
  as ``K`` blocks of ``N_k`` atoms (``Σ_k N_k`` atoms in all, segment ``k`` holding width
  ``N_k``): the logits of every block are computed once and each block takes its own
  log-sum-exp (segment max, then segment sum of exp), so one step costs exactly
  ``Σ_k N_k`` atom-evaluations per point — the work ratio to training each width alone is
  1.0, where padding every width to ``N_max`` would cost ``K·N_max / Σ_k N_k`` (3.4× for
  experiment B's d = 1 grid). The per-width losses are summed; since the blocks share no
  parameter, the gradient of the sum restricted to block ``k`` is exactly ``∇L_k``, and the
  optimizer state is kept per block (``optimizer.update`` is called on each block
  separately), so every width trains exactly as if alone — for any optax transformation,
  including ones that are not per-coordinate such as ``clip_by_global_norm``. The packed
  step's time against the sum of single-width steps is measured by ``python -m
  benchmarks.train``.
* **one exp per atom-evaluation.** The layer has a custom VJP: the forward pass shifts by
  the row max ``m_i = max_j z_ij``, keeps ``e_ij = exp((z_ij − m_i)/eps)`` and
  ``s_i = Σ_j e_ij``; the backward pass is the closed form of the Gibbs weights
  ``π_ij = e_ij/s_i``,

  .. math::

      \frac{\partial L}{\partial b_j} = \sum_i g_i\, \pi_{ij},\qquad
      \frac{\partial L}{\partial W_j} = \sum_i g_i\, \pi_{ij}\, x_i,
      \qquad g_i = \frac{2}{|B|}\,(f(x_i) - y_i),

  one matrix product ``eᵀ [g/s, (g/s)·x]`` (THEORY §0: ``∇_z lse = π``). At ``eps = 0``
  the weights are uniform over the argmax set (the tropical max-affine network). On the
  CPU the step's losses and gradients come instead from one call of a fused kernel for all
  widths of a ``(seed, eps)`` pair (:func:`hjax._native.packed_mse`: the same formulas, the
  ``e_ij`` of a point kept in L1 from the exp-sum to the accumulation, so nothing
  ``(points, atoms)`` is stored); seeds and eps rows are then mapped one call at a time,
  each call using every core.

The loop runs in compiled chunks of ``chunk`` steps; between chunks the validation RMSE is
measured, progress is shown and, with ``checkpoint=``, the whole training state is written
atomically so that an interrupted sweep resumes from its last chunk.

Initialisation (the reference's): ``W_j ~ N(0, (0.5/√d)² I)``, ``b_j ~ N(0, 0.3²)``, width
``N_k`` of seed ``s`` drawn by ``numpy.random.default_rng([*key_data(key), s, N_k])`` — the
same for every eps row (common random numbers) and independent of which other widths or
seeds are in the sweep, so a sweep and its single-width, single-seed pieces give the same
networks. Minibatches of seed ``s`` use ``fold_in(key, s)``: the same batches for every
width and eps of that seed.
"""

import hashlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Real

from . import LSELayer, _distributed, _native, lse_layer
from .runner import atomic_write_bytes, atomic_write_json

__all__ = ["LSESweep", "scaled_eps", "train_sweep"]

#: Up to this input dimension the logits are an explicit multiply-add chain, which XLA fuses
#: with the exp (no ``(points, atoms)`` logit matrix in memory); above it, a matmul.
_FMA_MAX_D = 8


# --------------------------------------------------------------------------------------
# The kernel: packed LSE blocks with a closed-form backward pass
# --------------------------------------------------------------------------------------


def _logits(x: Array, W: Array, b: Array) -> Array:
    """``z = x Wᵀ + b``: ``(B, d), (n, d), (n,) → (B, n)``."""
    d = x.shape[-1]
    if d > _FMA_MAX_D:
        return x @ W.T + b
    z = b
    for k in range(d):
        z = z + x[:, k : k + 1] * W[:, k]
    return z


@jax.custom_vjp
def _block_lse(x: Array, W: Array, b: Array, eps: Array) -> Array:
    return _block_fwd(x, W, b, eps)[0]


def _block_fwd(x, W, b, eps):
    z = _logits(x, W, b)
    m = jnp.max(z, axis=-1, keepdims=True)
    positive = eps > 0
    safe = jnp.where(positive, eps, jnp.ones_like(eps))
    # Multiply by 1/eps (a division per atom-evaluation costs 25% of a training step).
    e = jnp.where(positive, jnp.exp((z - m) * (1 / safe)), (z == m).astype(z.dtype))
    s = jnp.sum(e, axis=-1)
    f = m[:, 0] + jnp.where(positive, safe * jnp.log(s), jnp.zeros_like(s))
    return f, (x, e, s, eps)


def _block_bwd(residuals, g):
    x, e, s, eps = residuals
    c = (g / s)[:, None]
    v = jnp.concatenate([c, c * x], axis=-1)  # (B, 1 + d)
    o = jnp.einsum("bn,bk->nk", e, v)  # Σ_i π_ij g_i [1, x_i]
    # x and eps enter through stop_gradient (see _lse_block): zero cotangents are exact.
    return jnp.zeros_like(x), o[:, 1:], o[:, 0], jnp.zeros_like(eps)


_block_lse.defvjp(_block_fwd, _block_bwd)


def _lse_block(x: Array, W: Array, b: Array, eps: Array) -> Array:
    """``lse(x Wᵀ + b, eps)`` of one width block, differentiable in ``W`` and ``b``."""
    return _block_lse(jax.lax.stop_gradient(x), W, b, jax.lax.stop_gradient(eps))


def _losses(params, eps_row, x, y):
    """Per-width MSE ``(K,)`` of one ``(seed, eps)`` pair."""
    return jnp.stack(
        [jnp.mean((_lse_block(x, W, b, eps_row[k]) - y) ** 2) for k, (W, b) in enumerate(params)]
    )


def _losses_and_grads(params, eps_row, x, y):
    """Per-width MSE ``(K,)`` of one ``(seed, eps)`` pair and its gradient in ``params``:
    on the CPU one call of the fused kernel for all widths (:func:`hjax._native.packed_mse`,
    one exp per atom-evaluation), else ``jax.value_and_grad`` of :func:`_losses`."""
    if not _native.usable(x.dtype):

        def total(p):
            per_width = _losses(p, eps_row, x, y)
            return jnp.sum(per_width), per_width

        (_, per_width), grads = jax.value_and_grad(total, has_aux=True)(params)
        return per_width, grads
    widths = tuple(W.shape[0] for W, _ in params)
    W = jnp.concatenate([W for W, _ in params])
    b = jnp.concatenate([b for _, b in params])
    per_width, dW, db = _native.packed_mse(x, y, W, b, eps_row, widths)
    cuts = np.cumsum(widths)[:-1]
    return per_width, tuple(zip(jnp.split(dW, cuts), jnp.split(db, cuts), strict=True))


# --------------------------------------------------------------------------------------
# The compiled chunk of training steps
# --------------------------------------------------------------------------------------


def _batch(key, step, x, y, batch_size):
    """Minibatch ``step`` of one seed: epochs of a fresh permutation, remainder dropped."""
    n = x.shape[0]
    per_epoch = n // batch_size
    epoch, i = step // per_epoch, step % per_epoch
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
    return x[idx], y[idx]


@eqx.filter_jit
@eqx.debug.assert_max_traces(max_traces=None)  # counted by the tests (no recompiles)
def _train_chunk(carry, eps, x, y, batch_keys, *, optimizer, n_steps, batch_size):
    """``n_steps`` optimizer steps of every network; returns the carry and the losses."""

    def one(params, state, eps_row, xb, yb):
        per_width, grads = _losses_and_grads(params, eps_row, xb, yb)
        new_params, new_state = [], []
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 counts and floats
            for p_k, g_k, s_k in zip(params, grads, state, strict=True):
                u_k, s_k = optimizer.update(g_k, s_k, p_k)
                new_params.append(optax.apply_updates(p_k, u_k))
                new_state.append(s_k)
        return tuple(new_params), tuple(new_state), per_width

    over_eps = jax.vmap(one, in_axes=(0, 0, 0, None, None))

    def step(carry, _):
        params, state, k = carry
        if batch_size is None:
            out = jax.vmap(over_eps, in_axes=(0, 0, None, None, None))(params, state, eps, x, y)
        else:
            xb, yb = jax.vmap(lambda key: _batch(key, k, x, y, batch_size))(batch_keys)
            out = jax.vmap(over_eps, in_axes=(0, 0, None, 0, 0))(params, state, eps, xb, yb)
        params, state, losses = out
        return (params, state, k + 1), losses

    return jax.lax.scan(step, carry, None, length=n_steps)


@eqx.filter_jit
def _rmse(params, eps, x, y):
    """RMSE ``(S, E, K)`` of every network on ``(x, y)`` (the training kernel's forward)."""

    def one(params, eps_row):
        return jnp.sqrt(_losses(params, eps_row, x, y))

    return jax.vmap(jax.vmap(one, in_axes=(0, 0)), in_axes=(0, None))(params, eps)


@eqx.filter_jit
def _predict(W, b, eps, x):
    """``(S, E, K, n)`` predictions with the library's validated :func:`hjax.lse_layer`."""
    per_seed_eps = jax.vmap(
        jax.vmap(lse_layer, in_axes=(None, 0, 0, 0)), in_axes=(None, 0, 0, None)
    )
    return jnp.stack([per_seed_eps(x, W[k], b[k], eps[:, k]) for k in range(len(W))], axis=2)


# --------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------


class LSESweep(eqx.Module):
    r"""Trained LSE networks of a sweep: seeds × eps rows × widths.

    Width ``widths[k]`` is block ``k``: ``W[k]`` of shape ``(S, E, N_k, d)`` and ``b[k]`` of
    shape ``(S, E, N_k)``; network ``(s, e, k)`` is ``lse(W[k][s, e] x + b[k][s, e],
    eps[e, k])``.

    Attributes:
        W: per-width weights, ``(S, E, N_k, d)`` each.
        b: per-width biases, ``(S, E, N_k)`` each.
        eps: temperatures ``(E, K)``.
        train_loss: training MSE (on the step's batch) before each step, ``(steps, S, E, K)``.
        val_rmse: validation RMSE after each chunk, ``(chunks, S, E, K)`` (``None`` without
            a validation set).
        val_steps: the step count at each row of ``val_rmse``.
        validation_index: with ``validation=<fraction>``, the indices of ``x`` held out.
        widths, seeds: the grid's labels.
        seconds: wall-clock seconds of training (compilation included; this run only).
    """

    W: tuple[Float[Array, "S E _ d"], ...]
    b: tuple[Float[Array, "S E _"], ...]
    eps: Float[Array, "E K"]
    train_loss: Float[Array, "steps S E K"]
    val_rmse: Float[Array, "chunks S E K"] | None
    validation_index: Int[Array, " n_val"] | None
    val_steps: tuple[int, ...] = eqx.field(static=True)
    widths: tuple[int, ...] = eqx.field(static=True)
    seeds: tuple[int, ...] = eqx.field(static=True)
    seconds: float = eqx.field(static=True)

    def _index(self, seed: int, width: int, eps_index: int) -> tuple[int, int, int]:
        if seed not in self.seeds:
            raise ValueError(f"`seed` {seed!r} is not in this sweep's seeds {self.seeds}.")
        if width not in self.widths:
            raise ValueError(f"`width` {width!r} is not in this sweep's widths {self.widths}.")
        E = self.eps.shape[0]
        if not -E <= eps_index < E:
            raise ValueError(f"`eps_index` must be in [0, {E}); got {eps_index!r}.")
        return self.seeds.index(seed), self.widths.index(width), eps_index

    def layer(self, seed: int, width: int, eps_index: int = 0) -> LSELayer:
        """The trained network ``(seed, width, eps row)`` as an :class:`hjax.LSELayer`.

        Evaluate it at ``sweep.eps_of(width, eps_index)``.
        """
        s, k, e = self._index(seed, width, eps_index)
        return LSELayer(self.W[k][s, e], self.b[k][s, e])

    def eps_of(self, width: int, eps_index: int = 0) -> Float[Array, ""]:
        """The temperature network ``(·, width, eps row)`` was trained at."""
        _, k, e = self._index(self.seeds[0], width, eps_index)
        return self.eps[e, k]

    def predict(self, x: Float[ArrayLike, "n d"]) -> Float[Array, "S E K n"]:
        """Every network's prediction at ``x`` (with :func:`hjax.lse_layer`), in this
        sweep's dtype (see :meth:`astype`)."""
        x = jnp.asarray(x, self.eps.dtype)
        d = self.W[0].shape[-1]
        if x.ndim != 2 or x.shape[1] != d:
            raise ValueError(f"`x` must have shape (n, {d}); got {x.shape}.")
        return _predict(self.W, self.b, self.eps, x)

    def astype(self, dtype) -> "LSESweep":
        """The same sweep with its float arrays cast to ``dtype`` (e.g. to evaluate a
        float32 training run in float64)."""
        return jax.tree.map(
            lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, self
        )

    def rmse(self, x: Float[ArrayLike, "n d"], y: Float[ArrayLike, " n"]) -> Float[Array, "S E K"]:
        """Root mean squared error of every network on ``(x, y)``, ``(S, E, K)``."""
        y = jnp.asarray(y, self.eps.dtype)
        pred = self.predict(x)
        if y.shape != pred.shape[-1:]:
            raise ValueError(f"`y` must have shape ({pred.shape[-1]},); got {y.shape}.")
        return jnp.sqrt(jnp.mean((pred - y) ** 2, axis=-1))


# --------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------


def scaled_eps(
    widths: Sequence[int], d: int, scales: Real[ArrayLike, "*E"] | Sequence[float] = 1.0
) -> Float[Array, "E K"]:
    r"""The eps grid ``eps[e, k] = c_e · N_k^{-1/d}`` (Thm 8.1: eps ≍ h ≍ N^{-1/d}).

    Args:
        widths: the widths ``N_k``.
        d: the (intrinsic) dimension.
        scales: the factors ``c_e`` (scalar or 1-D).

    Returns:
        ``(E, K)`` (``E = 1`` for a scalar ``scales``), in the default float dtype.

    Example:
        >>> scaled_eps([1, 4, 16], 2).tolist()
        [[1.0, 0.5, 0.25]]
    """
    widths = _widths(widths)
    if isinstance(d, bool) or not isinstance(d, int | np.integer) or d < 1:
        raise ValueError(f"`d` must be an integer >= 1; got {d!r}.")
    c = np.atleast_1d(np.asarray(scales, dtype=float))
    if c.ndim != 1 or not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError(f"`scales` must be finite, >= 0, scalar or 1-D; got {scales!r}.")
    n = np.asarray(widths, dtype=float)
    return jnp.asarray(c[:, None] * n[None, :] ** (-1.0 / d), jnp.result_type(float))


def _widths(widths) -> tuple[int, ...]:
    try:
        out = tuple(widths)
    except TypeError:
        raise ValueError(f"`widths` must be a sequence of integers >= 1; got {widths!r}.") from None
    if not out or any(
        isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1 for n in out
    ):
        raise ValueError(f"`widths` must be a non-empty sequence of integers >= 1; got {widths!r}.")
    out = tuple(int(n) for n in out)
    if len(set(out)) != len(out):
        raise ValueError(f"`widths` must be distinct; got {out}.")
    return out


def _seeds(seeds) -> tuple[int, ...]:
    if isinstance(seeds, int | np.integer) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"`seeds` must be >= 1 (a count) or a list of seeds; got {seeds}.")
        return tuple(range(int(seeds)))
    try:
        out = tuple(seeds)
    except TypeError:
        raise ValueError(
            f"`seeds` must be a count or a sequence of integers; got {seeds!r}."
        ) from None
    if not out or any(
        isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0 for s in out
    ):
        raise ValueError(f"`seeds` must be non-negative integers; got {seeds!r}.")
    out = tuple(int(s) for s in out)
    if len(set(out)) != len(out):
        raise ValueError(f"`seeds` must be distinct; got {out}.")
    return out


def _positive_int(name: str, value, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1; got {value!r}.")
    return int(value)


def _to_jax(a, dtype) -> Array:
    """``a`` as a JAX array of ``dtype``, converted by NumPy (no tiny compiled casts)."""
    if isinstance(a, jax.Array) and a.dtype == dtype:
        return a
    return jnp.asarray(np.asarray(a, dtype=np.dtype(dtype)))


def _data(x, y, dtype=None, names=("x", "y")):
    nx, ny = names
    x = np.asarray(x)
    y = np.asarray(y)
    if dtype is None:
        dtype = jnp.result_type(x.dtype, y.dtype, float)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"`{nx}` must have shape (n, d) with n, d >= 1; got {x.shape}.")
    if y.shape != x.shape[:1]:
        raise ValueError(f"`{ny}` must have shape ({x.shape[0]},) to match `{nx}`; got {y.shape}.")
    for name, a in ((nx, x), (ny, y)):
        if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
            raise ValueError(f"`{name}` must be real; got dtype {a.dtype}.")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"`{name}` must be finite (no NaN or inf).")
    return _to_jax(x, dtype), _to_jax(y, dtype), dtype


def _eps_grid(eps, K: int, dtype) -> Array:
    try:
        e = np.asarray(eps, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"`eps` must be a real array; got {eps!r}.") from None
    if e.ndim == 0:
        e = np.full((1, K), float(e))
    elif e.ndim == 1:
        e = np.repeat(e[:, None], K, axis=1)
    elif e.ndim == 2 and e.shape[1] in (1, K) and e.shape[0] >= 1:
        e = np.broadcast_to(e, (e.shape[0], K))
    else:
        raise ValueError(
            f"`eps` must be a scalar, a 1-D grid (E,) shared by the widths, or (E, {K}) / "
            f"(E, 1); got shape {e.shape}."
        )
    if e.shape[0] < 1 or not np.all(np.isfinite(e)) or np.any(e < 0):
        raise ValueError(f"`eps` must be finite and >= 0 (non-empty); got {eps!r}.")
    return _to_jax(e, dtype)


def _key(key) -> Array:
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if isinstance(key, jax.Array) and key.dtype == jnp.uint32 and key.shape == (2,):
        return jax.random.wrap_key_data(key)
    raise ValueError(f"`key` must be an int or a PRNG key; got {key!r}.")


def _init(key, seeds, scale_W, scale_b, widths, d, E, dtype):
    """Parameters ``(W_k (S, E, N_k, d), b_k (S, E, N_k))``, drawn with NumPy (no compile).

    Width ``n`` of seed ``s`` is drawn from ``numpy.random.default_rng([*key_data(key), s,
    n])``: the same atoms whatever else is in the sweep.
    """
    words = [int(w) for w in np.asarray(jax.random.key_data(key)).ravel()]
    params = []
    for n in widths:
        z = np.stack(
            [np.random.default_rng([*words, s, n]).standard_normal((n, d + 1)) for s in seeds]
        )
        W = np.broadcast_to(scale_W * z[:, None, :, :d], (len(seeds), E, n, d))
        b = np.broadcast_to(scale_b * z[:, None, :, d], (len(seeds), E, n))
        params.append((_to_jax(W, dtype), _to_jax(b, dtype)))
    return tuple(params)


@eqx.filter_jit
def _init_state(params, key, seeds, *, optimizer):
    """Optimizer states (one per width block) and the per-seed minibatch keys."""
    with jax.numpy_dtype_promotion("standard"):
        state = jax.vmap(jax.vmap(lambda p: tuple(optimizer.init(q) for q in p)))(params)
    batch_keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(seeds)
    return state, batch_keys


def _default_chunk(steps: int) -> int:
    target = max(1, steps // 10)
    divisors = [c for c in range(target, 0, -1) if steps % c == 0]
    best = divisors[0] if divisors else 1
    return best if best * 50 >= steps else math.ceil(steps / 10)


def _fingerprint(arrays, meta) -> str:
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for a in arrays:
        a = np.asarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def train_sweep(
    x: Real[ArrayLike, "n d"],
    y: Real[ArrayLike, " n"],
    widths: Sequence[int],
    eps: Real[ArrayLike, "..."] | Sequence[Any],
    *,
    optimizer: optax.GradientTransformation,
    steps: int,
    seeds: int | Sequence[int] = 1,
    key: int | PRNGKeyArray = 0,
    batch_size: int | None = None,
    validation: float | tuple[Real[ArrayLike, "m d"], Real[ArrayLike, " m"]] | None = None,
    init_scale: tuple[float, float] | None = None,
    chunk: int | None = None,
    progress: bool = False,
    checkpoint: str | os.PathLike | None = None,
    distributed: bool = False,
) -> LSESweep:
    r"""Train a grid of LSE networks ``lse(Wx + b, eps)`` on ``(x, y)`` by least squares.

    Every network of seeds × eps rows × widths is fitted in one compiled ``lax.scan``
    (chunked for progress): seeds and eps are ``vmap`` axes, widths are packed blocks of
    ``Σ_k N_k`` atoms (work ratio 1.0 to separate runs; see the module docstring for the
    kernel and its closed-form gradient ``∂L/∂W_j = Σ_i g_i π_ij x_i``). Each network
    minimises its own MSE with its own optimizer state, exactly as if trained alone.

    Args:
        x: inputs ``(n, d)``; the dtype of ``x`` and ``y`` (at least the default float) is
            the training dtype — float32 data trains in float32.
        y: targets ``(n,)``.
        widths: the widths ``N_k`` (distinct integers ``>= 1``), ``K`` of them.
        eps: temperatures ``>= 0``: a scalar; a 1-D grid ``(E,)`` shared by every width (a
            free sweep axis); or ``(E, K)`` (``(1, K)`` for one eps per width, e.g.
            :func:`scaled_eps`). Traced: a new grid of the same shape does not recompile.
        optimizer: any ``optax.GradientTransformation`` (a new instance recompiles; use
            ``optax.inject_hyperparams`` to vary its hyperparameters without recompiling).
        steps: optimizer steps.
        seeds: a count ``S`` (seeds ``0..S-1``) or the seeds themselves.
        key: PRNG key (or int) for the initialisation and the minibatches.
        batch_size: ``None`` for full batch; else minibatches of this size drawn from a new
            permutation of the training points each epoch (the remainder dropped), per seed.
        validation: ``None``; a fraction in (0, 1) of ``(x, y)`` held out (a random split
            from ``key``, see ``validation_index``); or explicit ``(x_val, y_val)``. Its
            RMSE is measured after every chunk (``val_rmse``).
        init_scale: ``(σ_W, σ_b)``; default ``(0.5/√d, 0.3)`` (the reference's).
        chunk: steps per compiled call (progress, validation and checkpoints in between);
            default about ``steps/10``.
        progress: show progress on stderr (a bar on a terminal, else a line per chunk).
        checkpoint: file to save the training state to after each chunk (atomically, with
            a ``.json`` fingerprint beside it); an existing checkpoint of the same sweep
            (same data, grid, steps, seeds, key, batch size, chunk, init and dtype — the
            optimizer must be the same too, which cannot be checked) is resumed.
        distributed: in a ``jax.distributed`` run, split the seeds across the processes
            (seed ``i`` on process ``i mod P``; ``checkpoint`` gets a ``.process<p>``
            suffix per process) and gather the trained networks at the end: every process
            returns the whole sweep, equal to a single-process run. Without
            ``jax.distributed`` (one process) it changes nothing.

    Returns:
        An :class:`LSESweep`.

    Raises:
        ValueError: a bad argument (the message names it), or a checkpoint of another sweep.
        TypeError: ``optimizer`` is not an optax transformation.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> x = jnp.linspace(-2, 2, 64)[:, None]
        >>> sweep = train_sweep(x, jnp.abs(x[:, 0]), [4, 8], [0.1, 0.3],
        ...                     optimizer=optax.adam(0.01), steps=50, seeds=2)
        >>> sweep.rmse(x, jnp.abs(x[:, 0])).shape   # (seeds, eps, widths)
        (2, 2, 2)
    """
    start = time.perf_counter()
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            f"`optimizer` must be an optax.GradientTransformation; got {type(optimizer)!r}."
        )
    widths = _widths(widths)
    seeds = _seeds(seeds)
    if distributed and jax.process_count() > 1:
        _distributed.connect()
        mine, n_pad = _distributed.process_share(len(seeds))
        # Padding seeds (distinct from every real seed) keep the shares equal; dropped.
        share = [seeds[i] for i in mine] + [max(seeds) + 1 + j for j in range(n_pad)]
        local = train_sweep(
            x, y, widths, eps, optimizer=optimizer, steps=steps, seeds=share, key=key,
            batch_size=batch_size, validation=validation, init_scale=init_scale, chunk=chunk,
            progress=progress and jax.process_index() == 0,
            checkpoint=None if checkpoint is None else
            Path(f"{checkpoint}.process{jax.process_index()}"),
        )  # fmt: skip
        return _gather_seeds(local, seeds, start)
    steps = _positive_int("steps", steps)
    chunk = _positive_int("chunk", chunk, allow_none=True) or _default_chunk(steps)
    chunk = min(chunk, steps)
    batch_size = _positive_int("batch_size", batch_size, allow_none=True)
    key = _key(key)
    x, y, dtype = _data(x, y)
    n, d = x.shape
    eps = _eps_grid(eps, len(widths), dtype)

    validation_index = None
    if validation is None:
        x_val = y_val = None
    elif isinstance(validation, float | int) and not isinstance(validation, bool):
        if not 0 < validation < 1:
            raise ValueError(f"`validation` as a fraction must lie in (0, 1); got {validation}.")
        n_val = int(round(validation * n))
        if not 1 <= n_val < n:
            raise ValueError(
                f"`validation`={validation} of {n} points leaves no training or no "
                "validation point."
            )
        perm = jax.random.permutation(jax.random.fold_in(key, 2**31 - 1), n)
        validation_index = jnp.sort(perm[n - n_val :])
        train_index = jnp.sort(perm[: n - n_val])
        x_val, y_val = x[validation_index], y[validation_index]
        x, y = x[train_index], y[train_index]
        n = x.shape[0]
    elif isinstance(validation, tuple) and len(validation) == 2:
        x_val, y_val, _ = _data(*validation, dtype=dtype, names=("validation[0]", "validation[1]"))
        if x_val.shape[1] != d:
            raise ValueError(
                f"`validation` inputs must have d = {d} columns like `x`; got {x_val.shape}."
            )
    else:
        raise ValueError(
            f"`validation` must be None, a fraction in (0, 1) or (x_val, y_val); got "
            f"{type(validation).__name__}."
        )
    if batch_size is not None and batch_size > n:
        raise ValueError(f"`batch_size` must be <= the {n} training points; got {batch_size}.")

    if init_scale is None:
        init_scale = (0.5 / math.sqrt(d), 0.3)
    try:
        scale_W, scale_b = (float(s) for s in init_scale)
    except (TypeError, ValueError):
        raise ValueError(f"`init_scale` must be a pair (σ_W, σ_b); got {init_scale!r}.") from None
    if not (scale_W >= 0 and scale_b >= 0 and math.isfinite(scale_W + scale_b)):
        raise ValueError(f"`init_scale` must be finite and >= 0; got {init_scale!r}.")

    E = eps.shape[0]
    params = _init(key, seeds, scale_W, scale_b, widths, d, E, dtype)
    state, batch_keys = _init_state(
        params, key, jnp.asarray(seeds, jnp.uint32), optimizer=optimizer
    )
    carry = (params, state, jnp.zeros((), jnp.int32))
    losses: list[np.ndarray] = []
    val_rmse: list[np.ndarray] = []
    val_steps: list[int] = []

    ckpt = ckpt_meta = None
    if checkpoint is not None:
        ckpt = Path(checkpoint)
        meta = {
            "widths": widths,
            "seeds": seeds,
            "steps": steps,
            "chunk": chunk,
            "batch_size": batch_size,
            "init_scale": [scale_W, scale_b],
            "dtype": jnp.dtype(dtype).name,
            "n_val": None if x_val is None else int(x_val.shape[0]),
        }
        arrays = [x, y, eps, jax.random.key_data(key)]
        arrays += [] if x_val is None else [x_val, y_val]
        ckpt_meta = {"schema": "hjax.train_sweep/1", "fingerprint": _fingerprint(arrays, meta)}
        ckpt_meta = json.loads(json.dumps(ckpt_meta))
        carry, losses, val_rmse, val_steps = _load_checkpoint(
            ckpt, ckpt_meta, carry, losses, val_rmse, val_steps
        )

    done = int(carry[2])
    bar = _Progress(progress, steps, done)
    try:
        while done < steps:
            n_steps = min(chunk, steps - done)
            carry, chunk_losses = _train_chunk(
                carry,
                eps,
                x,
                y,
                batch_keys,
                optimizer=optimizer,
                n_steps=n_steps,
                batch_size=batch_size,
            )
            losses.append(np.asarray(chunk_losses))
            done += n_steps
            shown = float(np.median(np.sqrt(losses[-1][-1])))
            if x_val is not None:
                val_rmse.append(np.asarray(_rmse(carry[0], eps, x_val, y_val)))
                val_steps.append(done)
                bar.update(n_steps, shown, float(np.median(val_rmse[-1])))
            else:
                bar.update(n_steps, shown, None)
            if ckpt is not None:
                _save_checkpoint(ckpt, ckpt_meta, carry, losses, val_rmse, val_steps)
    finally:
        bar.close()

    params = carry[0]
    return LSESweep(
        W=tuple(W for W, _ in params),
        b=tuple(b for _, b in params),
        eps=eps,
        train_loss=jnp.asarray(np.concatenate(losses, axis=0)),
        val_rmse=None if x_val is None else jnp.asarray(np.stack(val_rmse)),
        validation_index=validation_index,
        val_steps=tuple(val_steps),
        widths=widths,
        seeds=seeds,
        seconds=time.perf_counter() - start,
    )


def _gather_seeds(local: LSESweep, seeds: tuple[int, ...], start: float) -> LSESweep:
    """The whole sweep from every process's strided share of the seeds (identical everywhere)."""

    def gather(a, axis):
        return jnp.asarray(_distributed.gather_strided(np.asarray(a), len(seeds), axis))

    return LSESweep(
        W=tuple(gather(W, 0) for W in local.W),
        b=tuple(gather(b, 0) for b in local.b),
        eps=local.eps,
        train_loss=gather(local.train_loss, 1),
        val_rmse=None if local.val_rmse is None else gather(local.val_rmse, 1),
        validation_index=local.validation_index,
        val_steps=local.val_steps,
        widths=local.widths,
        seeds=seeds,
        seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------------------
# Progress and checkpoints
# --------------------------------------------------------------------------------------


class _Progress:
    def __init__(self, show: bool, total: int, done: int):
        from tqdm.auto import tqdm

        self.show = show
        self.total = total
        self.done = done
        self.start = time.perf_counter()
        self.bar = tqdm(
            total=total,
            initial=done,
            desc="train_sweep",
            unit="step",
            file=sys.stderr,
            disable=not (show and sys.stderr.isatty()),
        )

    def update(self, n: int, train_rmse: float, val_rmse: float | None) -> None:
        self.done += n
        text = f"train RMSE {train_rmse:.3g}" + (
            "" if val_rmse is None else f", val RMSE {val_rmse:.3g} (medians)"
        )
        self.bar.set_postfix_str(text, refresh=False)
        self.bar.update(n)
        if self.show and self.bar.disable:
            print(
                f"[train_sweep] step {self.done}/{self.total}: {text}; "
                f"{time.perf_counter() - self.start:.1f} s",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        self.bar.close()


def _history_arrays(losses, val_rmse, val_steps) -> dict[str, np.ndarray]:
    return {
        "losses": np.concatenate(losses, axis=0) if losses else np.zeros((0,)),
        "val_rmse": np.stack(val_rmse) if val_rmse else np.zeros((0,)),
        "val_steps": np.asarray(val_steps, dtype=np.int64),
    }


def _save_checkpoint(path: Path, meta, carry, losses, val_rmse, val_steps) -> None:
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, carry)
    hist = io.BytesIO()
    np.savez(hist, **_history_arrays(losses, val_rmse, val_steps))
    atomic_write_json(path.with_name(path.name + ".json"), meta)
    blob = len(buf.getvalue()).to_bytes(8, "little") + buf.getvalue() + hist.getvalue()
    atomic_write_bytes(path, blob)


def _load_checkpoint(path: Path, meta, carry, losses, val_rmse, val_steps):
    side = path.with_name(path.name + ".json")
    if not path.exists():
        return carry, losses, val_rmse, val_steps
    try:
        stored = json.loads(side.read_text())
        blob = path.read_bytes()
        size = int.from_bytes(blob[:8], "little")
        carry = eqx.tree_deserialise_leaves(io.BytesIO(blob[8 : 8 + size]), carry)
        hist = np.load(io.BytesIO(blob[8 + size :]))
    except Exception as e:  # noqa: BLE001 — any unreadable file is reported the same way
        raise ValueError(
            f"`checkpoint` {path} cannot be read ({type(e).__name__}: {e}); delete it or "
            "choose another path."
        ) from None
    if stored != meta:
        raise ValueError(
            f"`checkpoint` {path} holds another sweep (different data, grid or settings); "
            "delete it or choose another path."
        )
    losses = [hist["losses"]] if hist["losses"].size else []
    val_rmse = list(hist["val_rmse"]) if hist["val_rmse"].size else []
    return carry, losses, val_rmse, [int(s) for s in hist["val_steps"]]
