"""The primitives behind :mod:`hjax._native` and their transformation rules (see there).

Imported on first use by :func:`hjax._native.available`, so that a JAX without these
extension points leaves the fused kernels unavailable instead of breaking ``import hjax``.
"""

import functools
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from .. import _kernels
from .._types import Array
from . import _SUFFIX, available, status

# --------------------------------------------------------------------------------------
# Blocked XLA expressions of the same quantities (second-order derivatives)
# --------------------------------------------------------------------------------------


def _weights(z: Array, eps: Array, lse: Array, lo: Array) -> Array:
    """``π_ij = e^{(z_ij − lse_i − lo_i)/eps}`` (eps > 0), ties of ``lse_i`` (eps = 0), 0 on
    rows with ``lse_i = ±inf``; ``z`` ``(rows, N)``, ``lse`` and ``lo`` ``(rows,)``."""
    lse, lo = lse[:, None], lo[:, None]
    live = jnp.isfinite(lse) & (z > -jnp.inf)  # never -inf / eps: its eps-tangent is NaN
    shifted = jnp.where(live, (z - jnp.where(live, lse, 0)) - lo, 0)
    soft = jnp.where(live, jnp.exp(shifted / _kernels.safe(eps)), 0)
    ties = ((z == lse) & live).astype(z.dtype)
    hard = ties / _kernels._nonzero(jnp.sum(ties, axis=-1, keepdims=True))
    return jnp.where(eps > 0, soft, hard)


def _xla_contract(x, W, b, eps, lse, lo, dx, dW, db):
    def reduce(z, x_r, lse_r, lo_r, dx_r):
        pi = _weights(z, eps, lse_r, lo_r)
        dz = dx_r @ W.T + x_r @ dW.T + db
        return jnp.sum(jnp.where(pi > 0, pi * dz, 0), axis=-1)

    return _kernels.affine_reduce(reduce, x, W, b, x, lse, lo, dx)


def _xla_backprop(x, W, b, eps, lse, lo, c, *, with_dx, with_dW):
    zeros = (jnp.zeros_like(x), jnp.zeros_like(W), jnp.zeros_like(b))
    _, vjp = jax.vjp(lambda dx, dW, db: _xla_contract(x, W, b, eps, lse, lo, dx, dW, db), *zeros)
    dx, dW, db = vjp(c)
    return (dx if with_dx else zeros[0]), (dW if with_dW else zeros[1]), db


def _xla_lse_entropy(x, W, b, eps):
    def reduce(z):
        return _kernels.lse_last(z, eps), _kernels.entropy_last(_kernels.gibbs_last(z, eps))

    return _kernels.affine_reduce(reduce, x, W, b)


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
def _backprop_abstract(x, W, b, eps, lse, lo, c, *, with_dx, with_dW):
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
    # dx and dW cost a multiply-add per coordinate and atom-evaluation each: only if wanted.
    grads = backprop_p.bind(
        *base, ct, with_dx=ad.is_undefined_primal(dx), with_dW=ad.is_undefined_primal(dW)
    )
    return [None] * _BASE + [
        g if ad.is_undefined_primal(a) else None for g, a in zip(grads, lin, strict=True)
    ]


ad.primitive_transposes[contract_p] = _contract_transpose


def _backprop_jvp(primals, tangents, **wanted):
    out = backprop_p.bind(*primals, **wanted)
    base, c = primals[:_BASE], primals[_BASE]
    dbase, dc = tangents[:_BASE], tangents[_BASE]
    dout = [jnp.zeros_like(o) for o in out]
    if not _is_zero(dc):
        dout = list(backprop_p.bind(*base, dc, **wanted))
    rest = _second_order(partial(_xla_backprop, **wanted), base, dbase, (c,))
    if rest is not None:
        dout = [a + r for a, r in zip(dout, rest, strict=True)]
    return out, dout


ad.primitive_jvps[backprop_p] = _backprop_jvp


def _backprop_transpose(cts, x, W, b, eps, lse, lo, c, *, with_dx, with_dW):
    base = (x, W, b, eps, lse, lo)
    if any(ad.is_undefined_primal(a) for a in base):
        raise ValueError("backprop_p is linear in c only")
    # The outputs not asked for are the constant 0: their cotangents do not reach c.
    live = [
        None if _is_zero(ct) or not wanted else ct
        for ct, wanted in zip(cts, (with_dx, with_dW, True), strict=True)
    ]
    if all(t is None for t in live):
        return [None] * _BASE + [ad.Zero(c.aval)]
    gx, gW, gb = (
        jnp.zeros_like(p) if t is None else t for t, p in zip(live, (x, W, b), strict=True)
    )
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
