"""Argument checks at the API boundary.

Concrete (non-traced) values are checked eagerly with a ``ValueError`` that names the
argument. Traced values are checked with ``eqx.error_if`` when the check is an
elementwise comparison (cheap); the error is then raised at run time.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._types import Array, ArrayLike


def is_traced(x: object) -> bool:
    """True when ``x`` is a JAX tracer (inside jit/vmap/grad), i.e. has no concrete value."""
    return isinstance(x, jax.core.Tracer)


def as_float_scalar(name: str, value: ArrayLike, dtype) -> Array:
    """Convert a scalar argument to a 0-d array of ``dtype``, rejecting non-scalars."""
    if jnp.ndim(value) != 0:
        raise ValueError(
            f"`{name}` must be a scalar, got shape {jnp.shape(value)}; "
            f"to sweep over {name}, jax.vmap over it (it never triggers a recompile)."
        )
    return jnp.asarray(value, dtype=dtype)


def _check(name: str, value: Array, bad, message: str) -> Array:
    if is_traced(value):
        return eqx.error_if(value, bad(value), f"`{name}` {message}")
    if np.any(bad(np.asarray(value))):
        raise ValueError(f"`{name}` {message}; got {np.asarray(value)!r}.")
    return value


def nonnegative(name: str, value: Array) -> Array:
    """``value >= 0`` (NaN rejected)."""
    return _check(name, value, lambda v: ~(v >= 0), "must be ≥ 0 (and not NaN)")


def positive(name: str, value: Array) -> Array:
    """``value > 0`` (NaN rejected)."""
    return _check(name, value, lambda v: ~(v > 0), "must be > 0 (and not NaN)")


def float_dtype(*arrays: ArrayLike):
    """The floating dtype the inputs compute in (input dtype; Python scalars stay weak)."""
    return jnp.result_type(*arrays, float)


def same_last_dim(name_a: str, a: Array, name_b: str, b: Array) -> None:
    """Raise unless ``a`` and ``b`` share their trailing (space) dimension ``d``."""
    if a.shape[-1:] != b.shape[-1:]:
        raise ValueError(
            f"`{name_a}` has trailing dimension {a.shape[-1:]} but `{name_b}` has "
            f"{b.shape[-1:]}: both must end in the space dimension d."
        )


def positive_definite(name: str, A: Array, d: int) -> Array:
    """Check ``A`` is a symmetric positive-definite ``(d, d)`` matrix.

    Shape and symmetry are checked eagerly; positive definiteness eagerly for concrete
    ``A`` (Cholesky) and with ``eqx.error_if`` on a NaN Cholesky factor when traced.
    """
    if A.shape != (d, d):
        raise ValueError(f"`{name}` must have shape ({d}, {d}) to match d={d}; got {A.shape}.")
    if is_traced(A):
        chol = jnp.linalg.cholesky(A)
        return eqx.error_if(A, ~jnp.all(jnp.isfinite(chol)), f"`{name}` must be positive definite")
    A_np = np.asarray(A)
    if not np.allclose(A_np, A_np.T, rtol=1e-6, atol=1e-12):
        raise ValueError(f"`{name}` must be symmetric; got {A_np!r}.")
    try:
        np.linalg.cholesky(A_np)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"`{name}` must be positive definite (eigenvalues {np.linalg.eigvalsh(A_np)})."
        ) from None
    return A
