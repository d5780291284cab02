"""Argument checks at the API boundary.

Concrete (non-traced) values are checked eagerly with a ``ValueError`` that names the
argument. Traced values are checked with ``eqx.error_if`` when the check is an
elementwise comparison (cheap: one reduction per array); the error is then raised at
run time (``EquinoxRuntimeError``, or ``XlaRuntimeError`` under ``jax.jit``, naming the
argument), so a bad value never becomes a silent NaN. Shapes, dtypes and the number of
atoms are static and always checked eagerly.

Entry policy for data arrays (THEORY §0): points, atoms, initial values and weights
(``x``, ``y``, ``g``, ``W``) must be finite; log-weights and biases (``log_w``, ``b``) may
be ``-inf`` (a masked atom, the semiring zero) but not NaN or ``+inf``; raw logits ``z``
of the semiring kernels may be ``±inf`` but not NaN (NaN is no element of the semiring).
Complex inputs are rejected everywhere.
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
    real(name, value)
    if jnp.ndim(value) != 0:
        raise ValueError(
            f"`{name}` must be a scalar, got shape {jnp.shape(value)}; "
            f"to sweep over {name}, jax.vmap over it (it never triggers a recompile)."
        )
    return jnp.asarray(value, dtype=dtype)


def _check(name: str, value: Array, bad, message: str, guard=None):
    """Reject ``value`` where ``bad(value)``; return ``value`` (or ``guard``) with the check.

    Traced: ``eqx.error_if`` on ``guard`` (default ``value``), whose returned copy must be
    used downstream — under jit a check whose result is unused is dead code.
    """
    if is_traced(value):
        return eqx.error_if(value if guard is None else guard, bad(value), f"`{name}` {message}")
    if np.any(bad(np.asarray(value))):
        raise ValueError(f"`{name}` {message}; got {np.asarray(value)!r}.")
    return value if guard is None else guard


def nonnegative(name: str, value: Array, *, finite: bool = False, guard=None):
    """``value >= 0`` (NaN rejected; ``inf`` too when ``finite``).

    ``guard``: a pytree to carry the run-time check instead of ``value`` (and be returned),
    for an argument whose value does not otherwise reach the outputs.
    """
    if finite:
        return _check(
            name,
            value,
            lambda v: ~((v >= 0) & (v < np.inf)),
            "must be finite and ≥ 0 (not NaN)",
            guard,
        )
    return _check(name, value, lambda v: ~(v >= 0), "must be ≥ 0 (and not NaN)", guard)


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


# --------------------------------------------------------------------------------------
# Data arrays: dtype, entries, shapes (the HJ data x, y, g, log_w and the layer W, b)
# --------------------------------------------------------------------------------------


def real(name: str, value: object) -> None:
    """Reject a complex argument (hjax works over the reals)."""
    if value is not None and jnp.iscomplexobj(value):
        raise ValueError(
            f"`{name}` must be real; got complex dtype {jnp.result_type(value)} "
            "(hjax works over the reals: pass the real part, or split it off yourself)."
        )


def real_dtype(**arrays: ArrayLike | None):
    """:func:`float_dtype` of the named inputs (``None`` skipped), rejecting complex ones by
    name."""
    present = {name: value for name, value in arrays.items() if value is not None}
    for name, value in present.items():
        real(name, value)
    return float_dtype(*present.values())


def _entries(name: str, value: Array, bad, message: str) -> Array:
    """Reject an array with any entry where ``bad`` (one elementwise test + one reduction).

    Concrete: ``ValueError`` naming the argument, the first bad entry and its index.
    Traced: ``eqx.error_if`` (use the returned array downstream).
    """
    if is_traced(value):
        return eqx.error_if(value, jnp.any(bad(value)), f"`{name}` {message}")
    v = np.asarray(value)
    flags = bad(v)
    if np.any(flags):
        first = tuple(int(i) for i in np.unravel_index(np.argmax(flags), v.shape))
        count = int(np.count_nonzero(flags))
        raise ValueError(
            f"`{name}` {message}; got {v[first]} at index {first} "
            f"({count} bad of {v.size} entries)."
        )
    return value


def finite(name: str, value: Array) -> Array:
    """Every entry finite: NaN and ``±inf`` rejected (points, atoms, initial values, W)."""
    return _entries(
        name, value, lambda v: ~((v > -np.inf) & (v < np.inf)), "must be finite (no NaN or ±inf)"
    )


def finite_or_masked(name: str, value: Array) -> Array:
    """Every entry finite or ``-inf`` (a masked atom): NaN and ``+inf`` rejected (log_w, b)."""
    return _entries(
        name,
        value,
        lambda v: ~(v < np.inf),
        "must be finite or -inf (-inf masks an atom); NaN and +inf are rejected",
    )


def not_nan(name: str, value: Array) -> Array:
    """No NaN entry (``±inf`` allowed: ``-inf`` is the semiring zero); raw logits ``z``."""
    return _entries(name, value, lambda v: v != v, "must not contain NaN")


def at_least_one_atom(name: str, n_atoms: int, shape: tuple[int, ...]) -> None:
    """Reject an empty atom axis (static): the empty measure has no Gibbs weights."""
    if n_atoms == 0:
        raise ValueError(
            f"`{name}` has no atoms (shape {shape}): at least one atom (N >= 1) is needed; "
            "the empty measure has no Gibbs weights."
        )


def atoms(name: str, value: ArrayLike, dtype) -> Array:
    """An ``(N, d)`` array of ``dtype`` (atoms ``y`` or weights ``W``), ``N >= 1``, finite."""
    value = jnp.asarray(value, dtype)
    if value.ndim != 2:
        raise ValueError(f"`{name}` must have shape (N, d); got {value.shape}.")
    at_least_one_atom(name, value.shape[0], value.shape)
    return finite(name, value)


def per_atom(
    name: str, value: ArrayLike, atoms_name: str, atom_array: Array, *, masked: bool = False
) -> Array:
    """A per-atom array (``g``, ``log_w``, ``b``) of shape ``(N,)`` matching ``atom_array``.

    Finite, or with ``masked=True`` finite or ``-inf`` (log-weights and biases).
    """
    value = jnp.asarray(value, atom_array.dtype)
    if value.shape != atom_array.shape[:1]:
        raise ValueError(
            f"`{name}` must have shape (N,) = ({atom_array.shape[0]},) to match "
            f"`{atoms_name}`; got {value.shape}."
        )
    return finite_or_masked(name, value) if masked else finite(name, value)


def queries(name: str, value: ArrayLike, atoms_name: str, atom_array: Array) -> Array:
    """Finite query points ``(*batch, d)`` of ``atom_array``'s dtype and space dimension."""
    value = jnp.asarray(value, atom_array.dtype)
    if value.ndim < 1:
        raise ValueError(f"`{name}` must have shape (*batch, d); got a scalar {value.shape}.")
    same_last_dim(name, value, atoms_name, atom_array)
    return finite(name, value)


def metric(name: str, A: ArrayLike | None, d: int, dtype) -> Array | None:
    """A finite symmetric positive-definite ``(d, d)`` metric of ``dtype`` (``None``: A = I)."""
    if A is None:
        return None
    real(name, A)
    A = jnp.asarray(A, dtype)
    if A.shape == (d, d):
        A = finite(name, A)
    return positive_definite(name, A, d)


def hj_inputs(x, y, g, t, *, A=None, log_w=None):
    """The Hopf–Cole data, cast to one float dtype and validated (THEORY §0, §2).

    ``x`` (finite ``(*batch, d)``; ``None`` if absent), ``y`` (finite ``(N, d)``, N >= 1),
    ``g`` (finite ``(N,)``; ``None`` if absent), ``t > 0``, ``A`` (SPD or ``None``),
    ``log_w`` (``(N,)``, finite or ``-inf``; ``None`` if absent).

    Returns ``(x, y, g, t, A, log_w, dtype)``.
    """
    dtype = real_dtype(x=x, y=y, g=g, log_w=log_w)
    y = atoms("y", y, dtype)
    if x is not None:
        x = queries("x", x, "y", y)
    if g is not None:
        g = per_atom("g", g, "y", y)
    if log_w is not None:
        log_w = per_atom("log_w", log_w, "y", y, masked=True)
    t = positive_scalar("t", t, dtype)
    return x, y, g, t, metric("A", A, y.shape[-1], dtype), log_w, dtype


def some_atom_active(log_w: Array | None) -> Array | None:
    """Reject log-weights that mask every atom: the zero measure has no Gibbs weights."""
    if log_w is None:
        return None
    message = (
        "`log_w` masks every atom (all -inf): the Gibbs weights, ∇u and ∇²u of the zero "
        "measure are undefined (u itself is +inf)"
    )
    if is_traced(log_w):
        return eqx.error_if(log_w, jnp.all(log_w == -jnp.inf), message)
    if np.all(np.asarray(log_w) == -np.inf):
        raise ValueError(message + ".")
    return log_w
