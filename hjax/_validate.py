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


def nonnegative(name: str, value: Array, *, finite: bool = False) -> Array:
    """``value >= 0`` (NaN rejected; ``inf`` too when ``finite``)."""
    if finite:
        return _check(
            name, value, lambda v: ~((v >= 0) & (v < np.inf)), "must be finite and ≥ 0 (not NaN)"
        )
    return _check(name, value, lambda v: ~(v >= 0), "must be ≥ 0 (and not NaN)")


def positive(name: str, value: Array, *, finite: bool = False) -> Array:
    """``value > 0`` (NaN rejected; ``inf`` too when ``finite``)."""
    if finite:
        return _check(
            name, value, lambda v: ~((v > 0) & (v < np.inf)), "must be finite and > 0 (not NaN)"
        )
    return _check(name, value, lambda v: ~(v > 0), "must be > 0 (and not NaN)")


def nonnegative_scalar(name: str, value: ArrayLike, dtype) -> Array:
    """A finite scalar ``>= 0`` (eps-like) as a 0-d array of ``dtype``.

    Rejects non-scalars, negative values, NaN and ``inf`` (``lse(z, inf)`` is ``+inf`` or
    ``inf · 0 = NaN``, never a useful temperature): eagerly with a ``ValueError`` naming the
    argument, or at run time when ``value`` is traced.
    """
    return nonnegative(name, as_float_scalar(name, value, dtype), finite=True)


def positive_scalar(name: str, value: ArrayLike, dtype) -> Array:
    """A finite scalar ``> 0`` (time-like) as a 0-d array of ``dtype`` (see
    :func:`nonnegative_scalar`)."""
    return positive(name, as_float_scalar(name, value, dtype), finite=True)


def integer(name: str, value: object, minimum: int = 1) -> int:
    """A static Python/NumPy integer ``>= minimum`` (sizes, counts), as an ``int``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    return int(value)


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

    The shape is checked eagerly; symmetry (to ``rtol = 1e-6``) and positive definiteness
    (Cholesky) eagerly for concrete ``A``, and with ``eqx.error_if`` when traced — a Cholesky
    factorization reads one triangle only, so an asymmetric A would otherwise be silently
    replaced by the matrix its lower triangle defines.
    """
    if A.shape != (d, d):
        raise ValueError(f"`{name}` must have shape ({d}, {d}) to match d={d}; got {A.shape}.")
    if is_traced(A):
        scale = jnp.max(jnp.abs(A))
        A = eqx.error_if(
            A, jnp.max(jnp.abs(A - A.T)) > 1e-6 * scale + 1e-12, f"`{name}` must be symmetric"
        )
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
