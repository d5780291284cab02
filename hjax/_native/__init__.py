r"""Fused CPU kernels for the affine log-sum-exp, as JAX primitives (XLA FFI).

.. math::

    \mathrm{lse}_i = \varepsilon \log \sum_j \exp\big((x_i\cdot W_j + b_j)/\varepsilon\big),
    \qquad \mathrm{lse}_i = \max_j (x_i\cdot W_j + b_j) \;\; (\varepsilon = 0),

for ``x`` ``(B, k)``, ``W`` ``(N, k)``, ``b`` ``(N,)`` (``b_j = -inf`` masks atom j) and a
0-d ``eps >= 0`` — the value of :func:`hjax.lse_layer` and, with ``x̃ = x − c``,
``W = ỹ/t``, ``b = −|ỹ|²/(2t) − g``, of the Hopf–Cole solution (Thm 4.1; the row term
``−|x̃|²/(2t)`` is added outside). XLA:CPU needs a pass over a block of logits for the max
and another for the exp-sum, each costing about as much as the exps, and reverse mode
several more; ``affine_lse.cc`` forms the logits in registers, keeps the row's logits in L1
between the max and the exp-sum, and its backward reuses the forward's log-sum-exp
(``π_ij = e^{(z_ij − lse_i)/eps}``, no max pass). Memory is ``O(B + N·k)`` in every mode.

Three primitives, with the derivative rules that make every JAX transformation work:

* ``lse_p(x, W, b, eps) -> (lse, lo, H)``: ``lo`` the rounding error of ``lse`` (so that
  ``lse + lo`` holds it to twice the working precision: the weights
  ``e^{(z − lse − lo)/eps}`` would otherwise be off by ``ulp(lse)/eps``, 2e-3 in float32 at
  ``|lse| = 20``, eps = 1e-3; its tangent is 0), ``H`` the entropy of the Gibbs weights
  (computed only when asked, ``entropy=True``, for the eps-tangent). JVP (Thm 3.1, Prop
  F.1): ``d lse = contract(dx, dW, db) + H d eps``.
* ``contract_p(x, W, b, eps, lse, lo, dx, dW, db) = Σ_j π_ij (dx_i·W_j + x_i·dW_j + db_j)``,
  linear in ``(dx, dW, db)``; its transpose is
* ``backprop_p(x, W, b, eps, lse, lo, c) = (c_i Σ_j π_ij W_j, Σ_i c_i π_ij x_i,
  Σ_i c_i π_ij)``, linear in ``c``, whose transpose is ``contract_p`` again.

So forward mode, reverse mode and their compositions run the fused kernels at first order;
the derivatives of ``contract_p``/``backprop_p`` in their non-linear arguments and of ``H``
(second order: ``jax.hessian``, d²/deps²) are those of the blocked XLA expressions below,
with ``π_ij = e^{(z_ij − lse_i − lo_i)/eps}`` written in terms of the ``lse`` argument, so that
``∂π/∂lse = −π/eps`` and the chain through ``d lse`` gives ``dπ = π(dz − ⟨π, dz⟩)/eps``.
At ``eps = 0`` the weights are the argmax indicator averaged over ties and their derivative
is 0, as for :func:`hjax._kernels.gibbs_last`. ``vmap``: batching only the query rows folds
the batch into the rows; anything else maps the primitive over the batch.

The library is compiled on first use with ``$CXX`` (default ``g++``) for the host CPU into
``$HJAX_NATIVE_CACHE`` (default ``~/.cache/hjax``), keyed by the source, the flags, the
compiler, the jaxlib headers and the CPU, and written atomically. Where it cannot be built
(no compiler, ``HJAX_NATIVE=0``) :func:`available` is false, a warning says why once, and
the callers keep the XLA kernels.
"""

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from .._types import Array

_SOURCE = Path(__file__).with_name("affine_lse.cc")
_FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w")
_TARGETS = ("hjax_lse", "hjax_contract", "hjax_backprop", "hjax_packed_mse")
_SUFFIX = {jnp.dtype(jnp.float32): "f32", jnp.dtype(jnp.float64): "f64"}

_lock = threading.Lock()
_state: dict = {}


def _cpu_key() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))][:2]
        return "".join(lines)
    except OSError:
        return platform.processor() or platform.machine()


def _build() -> Path:
    """Compile ``affine_lse.cc`` (or reuse the cached library); returns its path."""
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise RuntimeError(f"no C++ compiler {cxx!r} on PATH (set $CXX)")
    include = jax.ffi.include_dir()
    digest = hashlib.sha256()
    for part in (
        _SOURCE.read_bytes(),
        " ".join(_FLAGS).encode(),
        cxx.encode(),
        include.encode(),
        jax.__version__.encode(),
        _cpu_key().encode(),
    ):
        digest.update(part)
    cache = Path(os.environ.get("HJAX_NATIVE_CACHE") or Path.home() / ".cache" / "hjax")
    target = cache / f"affine_lse-{digest.hexdigest()[:16]}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=cache)
    os.close(fd)
    try:
        cmd = [cxx, *_FLAGS, "-I", include, str(_SOURCE), "-o", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target


def _load() -> None:
    lib = ctypes.cdll.LoadLibrary(str(_build()))
    for name in _TARGETS:
        for suffix in _SUFFIX.values():
            symbol = f"{name}_{suffix}"
            jax.ffi.register_ffi_target(
                symbol, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu"
            )


def available() -> bool:
    """Whether the fused CPU kernels are built and registered (built on the first call)."""
    with _lock:
        if "ok" not in _state:
            if os.environ.get("HJAX_NATIVE", "1") == "0":
                _state.update(ok=False, why="disabled by HJAX_NATIVE=0")
            else:
                try:
                    _load()
                    _state.update(ok=True, why="")
                except Exception as e:  # noqa: BLE001 - any failure means: keep XLA
                    _state.update(ok=False, why=f"{type(e).__name__}: {e}")
                    warnings.warn(
                        "hjax: the fused CPU kernels are unavailable, using the XLA kernels "
                        f"({_state['why']})",
                        RuntimeWarning,
                        stacklevel=2,
                    )
        return _state["ok"]


def status() -> str:
    """``"available"`` or why the fused CPU kernels are not used."""
    return "available" if available() else _state["why"]


def usable(dtype) -> bool:
    """Whether a computation in ``dtype`` traced now would run the fused kernels: float32
    or float64, the default backend is the CPU, and the library is :func:`available`."""
    return jnp.dtype(dtype) in _SUFFIX and jax.default_backend() == "cpu" and available()


# --------------------------------------------------------------------------------------
# Blocked XLA expressions of the same quantities (second-order derivatives)
# --------------------------------------------------------------------------------------


def _weights(z: Array, eps: Array, lse: Array, lo: Array) -> Array:
    """``π_ij = e^{(z_ij − lse_i − lo_i)/eps}`` (eps > 0), ties of ``lse_i`` (eps = 0), 0 on
    rows with ``lse_i = ±inf``; ``z`` ``(rows, N)``, ``lse`` and ``lo`` ``(rows,)``."""
    from .._kernels import _nonzero, safe

    lse, lo = lse[:, None], lo[:, None]
    live = jnp.isfinite(lse) & (z > -jnp.inf)  # never -inf / eps: its eps-tangent is NaN
    shifted = jnp.where(live, (z - jnp.where(live, lse, 0)) - lo, 0)
    soft = jnp.where(live, jnp.exp(shifted / safe(eps)), 0)
    ties = ((z == lse) & live).astype(z.dtype)
    hard = ties / _nonzero(jnp.sum(ties, axis=-1, keepdims=True))
    return jnp.where(eps > 0, soft, hard)


def _xla_contract(x, W, b, eps, lse, lo, dx, dW, db):
    from .._kernels import affine_reduce

    def reduce(z, x_r, lse_r, lo_r, dx_r):
        pi = _weights(z, eps, lse_r, lo_r)
        dz = dx_r @ W.T + x_r @ dW.T + db
        return jnp.sum(jnp.where(pi > 0, pi * dz, 0), axis=-1)

    return affine_reduce(reduce, x, W, b, x, lse, lo, dx)


def _xla_backprop(x, W, b, eps, lse, lo, c):
    zeros = (jnp.zeros_like(x), jnp.zeros_like(W), jnp.zeros_like(b))
    _, vjp = jax.vjp(lambda dx, dW, db: _xla_contract(x, W, b, eps, lse, lo, dx, dW, db), *zeros)
    return vjp(c)


def _xla_lse_entropy(x, W, b, eps):
    from .._kernels import affine_reduce, entropy_last, gibbs_last, lse_last

    return affine_reduce(lambda z: (lse_last(z, eps), entropy_last(gibbs_last(z, eps))), x, W, b)


# --------------------------------------------------------------------------------------
# Primitives
# --------------------------------------------------------------------------------------

lse_p = Primitive("hjax_affine_lse")
lse_p.multiple_results = True
contract_p = Primitive("hjax_affine_lse_contract")
backprop_p = Primitive("hjax_affine_lse_backprop")
backprop_p.multiple_results = True


@functools.cache
def _compiled(prim, params: tuple) -> Callable:
    return jax.jit(partial(prim.bind, **dict(params)))


def _impl(prim, *args, **params):
    """Eager application: the primitive alone under ``jit`` (one compilation per primitive
    and parameters, cached)."""
    return _compiled(prim, tuple(sorted(params.items())))(*args)


for _p in (lse_p, contract_p, backprop_p):
    _p.def_impl(partial(_impl, _p))


@lse_p.def_abstract_eval
def _lse_abstract(x, W, b, eps, *, entropy):
    row = x.update(shape=x.shape[:1])
    return row, row, row


@contract_p.def_abstract_eval
def _contract_abstract(x, W, b, eps, lse, lo, dx, dW, db):
    return x.update(shape=x.shape[:1])


@backprop_p.def_abstract_eval
def _backprop_abstract(x, W, b, eps, lse, lo, c):
    return x, W, b


def _lowering(name):
    def rule(ctx, *args, **params):
        if not available():  # builds and registers the handlers on first use
            raise RuntimeError(f"hjax: the fused CPU kernels are unavailable: {status()}")
        suffix = _SUFFIX[jnp.dtype(ctx.avals_in[0].dtype)]
        return jax.ffi.ffi_lowering(f"{name}_{suffix}")(ctx, *args, **params)

    return rule


mlir.register_lowering(lse_p, _lowering("hjax_lse"), platform="cpu")
mlir.register_lowering(contract_p, _lowering("hjax_contract"), platform="cpu")
mlir.register_lowering(backprop_p, _lowering("hjax_backprop"), platform="cpu")


def _is_zero(t) -> bool:
    return type(t) is ad.Zero


def _inst(t, like):
    return jnp.zeros_like(like) if _is_zero(t) else t


def _lse_jvp(primals, tangents, *, entropy):
    x, W, b, eps = primals
    dx, dW, db, deps = tangents
    lse, lo, H = lse_p.bind(x, W, b, eps, entropy=entropy or not _is_zero(deps))
    dlse = jnp.zeros_like(lse)
    if not (_is_zero(dx) and _is_zero(dW) and _is_zero(db)):
        lin = (_inst(dx, x), _inst(dW, W), _inst(db, b))
        dlse = dlse + contract_p.bind(x, W, b, eps, lse, lo, *lin)
    if not _is_zero(deps):
        dlse = dlse + H * deps
    if entropy:
        dH = _second_order(lambda *a: _xla_lse_entropy(*a)[1], primals, tangents, ())
    else:
        dH = jnp.zeros_like(H)
    return (lse, lo, H), (dlse, jnp.zeros_like(lo), dH)


ad.primitive_jvps[lse_p] = _lse_jvp


def _second_order(xla_fn, primals, tangents, fixed):
    """Tangent of ``xla_fn(*primals, *fixed)`` in ``primals`` (or None if all are zero)."""
    if all(_is_zero(t) for t in tangents):
        return None
    tan = [_inst(t, p) for t, p in zip(tangents, primals, strict=True)]
    return jax.jvp(lambda *a: xla_fn(*a, *fixed), tuple(primals), tuple(tan))[1]


#: contract_p and backprop_p take (x, W, b, eps, lse, lo) and then their linear arguments.
_BASE = 6


def _contract_jvp(primals, tangents):
    out = contract_p.bind(*primals)
    base, lin = primals[:_BASE], primals[_BASE:]
    dbase, dlin = tangents[:_BASE], tangents[_BASE:]
    dout = jnp.zeros_like(out)
    if not all(_is_zero(t) for t in dlin):
        dout = dout + contract_p.bind(*base, *(_inst(t, p) for t, p in zip(dlin, lin, strict=True)))
    rest = _second_order(_xla_contract, base, dbase, lin)
    return out, dout if rest is None else dout + rest


ad.primitive_jvps[contract_p] = _contract_jvp


def _contract_transpose(ct, x, W, b, eps, lse, lo, dx, dW, db):
    base, lin = (x, W, b, eps, lse, lo), (dx, dW, db)
    if any(ad.is_undefined_primal(a) for a in base):
        raise ValueError("contract_p is linear in (dx, dW, db) only")
    if _is_zero(ct):
        return [None] * _BASE + [
            ad.Zero(a.aval) if ad.is_undefined_primal(a) else None for a in lin
        ]
    grads = backprop_p.bind(*base, ct)
    return [None] * _BASE + [
        g if ad.is_undefined_primal(a) else None for g, a in zip(grads, lin, strict=True)
    ]


ad.primitive_transposes[contract_p] = _contract_transpose


def _backprop_jvp(primals, tangents):
    out = backprop_p.bind(*primals)
    base, c = primals[:_BASE], primals[_BASE]
    dbase, dc = tangents[:_BASE], tangents[_BASE]
    dout = [jnp.zeros_like(o) for o in out]
    if not _is_zero(dc):
        dout = list(backprop_p.bind(*base, dc))
    rest = _second_order(_xla_backprop, base, dbase, (c,))
    if rest is not None:
        dout = [a + r for a, r in zip(dout, rest, strict=True)]
    return out, dout


ad.primitive_jvps[backprop_p] = _backprop_jvp


def _backprop_transpose(cts, x, W, b, eps, lse, lo, c):
    base = (x, W, b, eps, lse, lo)
    if any(ad.is_undefined_primal(a) for a in base):
        raise ValueError("backprop_p is linear in c only")
    if all(_is_zero(t) for t in cts):
        return [None] * _BASE + [ad.Zero(c.aval)]
    gx, gW, gb = (_inst(t, p) for t, p in zip(cts, (x, W, b), strict=True))
    return [None] * _BASE + [contract_p.bind(*base, gx, gW, gb)]


ad.primitive_transposes[backprop_p] = _backprop_transpose


# --------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------

#: Per primitive, the positions of the query-row arguments (leading axis B).
_ROW_ARGS = {lse_p: (0,), contract_p: (0, 4, 5, 6), backprop_p: (0, 4, 5, 6)}


def _fold(a: Array, mapped: bool, size: int) -> Array:
    """A row argument ``(size, B, ...)`` (mapped) or ``(B, ...)`` as ``(size·B, ...)``."""
    if not mapped:
        a = jnp.broadcast_to(a, (size, *a.shape))
    return a.reshape(-1, *a.shape[2:])


def _batch(prim, args, dims, **params):
    mapped = [d is not None for d in dims]
    size = next(a.shape[d] for a, d in zip(args, dims, strict=True) if d is not None)
    moved = [a if d is None else jnp.moveaxis(a, d, 0) for a, d in zip(args, dims, strict=True)]
    rows = _ROW_ARGS[prim]
    if prim is not backprop_p and all(i in rows for i, m in enumerate(mapped) if m):
        # Only query rows are batched: fold the batch into the rows.
        folded = [
            _fold(a, m, size) if i in rows else a
            for i, (a, m) in enumerate(zip(moved, mapped, strict=True))
        ]
        out = prim.bind(*folded, **params)
        unfold = lambda o: o.reshape(size, -1, *o.shape[1:])  # noqa: E731
        return (
            ([unfold(o) for o in out], [0] * len(out))
            if prim.multiple_results
            else (unfold(out), 0)
        )
    # Otherwise (atoms, eps or backprop's per-batch atom sums): one call per batch element.
    idx = [i for i, m in enumerate(mapped) if m]

    def one(sliced):
        full = list(moved)
        for i, a in zip(idx, sliced, strict=True):
            full[i] = a
        return prim.bind(*full, **params)

    out = jax.lax.map(one, [moved[i] for i in idx])
    return (out, [0] * len(out)) if prim.multiple_results else (out, 0)


for _p in (lse_p, contract_p, backprop_p):
    batching.primitive_batchers[_p] = partial(_batch, _p)


def affine_lse(x: Array, W: Array, b: Array, eps: Array) -> Array:
    """``eps log Σ_j exp((x_i·W_j + b_j)/eps)`` (``max`` at eps = 0), ``x`` ``(B, k)``."""
    return lse_p.bind(x, W, b, eps, entropy=False)[0]


def packed_mse(
    x: Array, y: Array, W: Array, b: Array, eps: Array, widths: tuple[int, ...]
) -> tuple[Array, Array, Array]:
    r"""Least squares of packed LSE networks and its gradient, in one fused pass.

    Segment ``s`` of the atoms (``widths[s]`` consecutive rows of ``W``, ``b``) is a network
    ``f_s(x) = lse(W_s x + b_s, eps_s)``; returns the losses ``L_s = mean_i (f_s(x_i) −
    y_i)²`` ``(S,)`` and ``(∂L_s/∂W_s, ∂L_s/∂b_s)`` stacked like ``W`` and ``b``:
    ``∂L_s/∂b_j = Σ_i g_is π_ij``, ``∂L_s/∂W_j = Σ_i g_is π_ij x_i`` with
    ``g_is = 2(f_s(x_i) − y_i)/B`` and the Gibbs weights ``π`` (THEORY §0: ``∇_z lse = π``),
    uniform on the ties at eps = 0. One exp per atom-evaluation (the training step of
    :func:`hjax.train_sweep`; not differentiable itself). ``vmap`` maps it sequentially.
    """
    if not available():
        raise RuntimeError(f"hjax: the fused CPU kernels are unavailable: {status()}")
    offsets = np.cumsum((0, *widths)).astype(np.int32)
    out = (
        jax.ShapeDtypeStruct((len(widths),), x.dtype),
        jax.ShapeDtypeStruct(W.shape, x.dtype),
        jax.ShapeDtypeStruct(b.shape, x.dtype),
    )
    call = jax.ffi.ffi_call(
        f"hjax_packed_mse_{_SUFFIX[jnp.dtype(x.dtype)]}", out, vmap_method="sequential"
    )
    return call(x, y, W, b, eps, jnp.asarray(offsets))
