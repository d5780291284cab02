r"""Quadrature measures: continuous initial data as weighted atoms (THEORY §2, Claim (iii)).

A continuous datum g on a box ``[lower, upper]^d`` enters the Hopf–Cole formula through
a quadrature of the heat-kernel integral,

.. math::

    u_\varepsilon(x, t) = -\varepsilon \log \int (2\pi\varepsilon t)^{-d/2}
        e^{-(|x-y|^2/(2t) + g(y))/\varepsilon}\, dy
    \;\approx\; -\varepsilon \log \sum_j w_j\, (2\pi\varepsilon t)^{-d/2}
        e^{-(|x-y_j|^2/(2t) + g(y_j))/\varepsilon},

which is exactly ``hopf_cole(x, y, g(y), t, eps, log_w=log_w, normalized=True)`` for
the atoms ``y`` and log-weights ``log_w`` returned here. As the measure refines, the
atoms' solution converges to the continuous one (Thm 7.1(iii); the grid's rate is
measured in ``tests/test_hopf_cole.py``).

Two families, both returning ``(y: (M, d), log_w: (M,))``:

* :func:`grid_measure`: the tensor midpoint rule, ``n`` cells per axis (``M = n**d``).
* :func:`nested_measure`: a Halton sequence, nested (every prefix is a valid rule) and
  optionally randomly shifted for randomized-QMC error bars.
"""

import math
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from . import _validate
from ._types import Array, Float, ScalarLike

__all__ = ["grid_measure", "nested_measure"]


def _box(lower: ScalarLike, upper: ScalarLike, n: int, d: int, dtype) -> tuple[Array, Array]:
    """Validated ``(lower, upper − lower)`` as 0-d arrays of ``dtype`` (a finite box)."""
    _validate.integer("n", n)
    _validate.integer("d", d)
    lower = _validate.as_float_scalar("lower", lower, dtype)
    upper = _validate.as_float_scalar("upper", upper, dtype)
    width = upper - lower
    message = "must be finite and greater than `lower` (the box is [lower, upper]^d)"
    bad = ~((width > 0) & (width < np.inf))  # also catches an infinite or NaN end
    if _validate.is_traced(width):
        width = eqx.error_if(width, bad, f"`upper` {message}")
    elif bad:
        raise ValueError(f"`upper` {message}; got lower={lower!r}, upper={upper!r}.")
    return lower, width


def _dtype(dtype, *args):
    dtype = _validate.float_dtype(*args) if dtype is None else jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"`dtype` must be a floating dtype; got {dtype}.")
    return jax.dtypes.canonicalize_dtype(dtype)


def grid_measure(
    lower: ScalarLike,
    upper: ScalarLike,
    n: int,
    d: int,
    *,
    dtype=None,
) -> tuple[Float[Array, "M d"], Float[Array, " M"]]:
    r"""Tensor midpoint rule on ``[lower, upper]^d``: atoms and log cell volumes.

    .. math::

        y_{i_1 \dots i_d} = \big(\ell + (i_k + \tfrac12) h\big)_{k=1}^d,\quad
        \log w = d \log h,\qquad h = \frac{u - \ell}{n},\quad i_k = 0, \dots, n-1,

    so that ``Σ_j w_j f(y_j) ≈ ∫_{[ℓ,u]^d} f`` with error ``O(h²)`` for ``f ∈ C²`` (for
    ``f = |y|²`` on the unit cube it is exactly ``−d h²/12``). Used with ``hopf_cole(...,
    normalized=True)`` it approximates the continuous-data solution (THEORY §2, Claim (iii)).

    Args:
        lower: lower end of the box (scalar).
        upper: upper end of the box (scalar, ``> lower``).
        n: cells per axis (static).
        d: space dimension (static).
        dtype: float dtype of the output (default: the default float dtype, or that of a
            0-d array given as ``lower``/``upper``).

    Returns:
        ``(y, log_w)`` of shapes ``(n**d, d)`` and ``(n**d,)``; atoms in C (row-major)
        order, the last coordinate varying fastest.

    Example:
        >>> y, log_w = grid_measure(0.0, 1.0, 2, 1)  # log_w = log(1/2)
        >>> y[:, 0].tolist()
        [0.25, 0.75]
    """
    dtype = _dtype(dtype, lower, upper)
    lower, width = _box(lower, upper, n, d, dtype)
    return _grid(lower, width, n, d)


@partial(jax.jit, static_argnums=(2, 3))
def _grid(lower: Array, width: Array, n: int, d: int) -> tuple[Array, Array]:
    # (ℓ (n − i − ½) + u (i + ½)) / n: exactly mirror-symmetric when ℓ = −u.
    frac = jnp.arange(n, dtype=lower.dtype) + 0.5
    axis = (lower * (n - frac) + (lower + width) * frac) / n
    mesh = jnp.meshgrid(*([axis] * d), indexing="ij")
    y = jnp.stack([m.reshape(-1) for m in mesh], axis=-1)
    log_w = jnp.full((n**d,), d * jnp.log(width / n), dtype=lower.dtype)
    return y, log_w


def _first_primes(d: int) -> list[int]:
    primes: list[int] = []
    candidate = 2
    while len(primes) < d:
        if all(candidate % p for p in primes if p * p <= candidate):
            primes.append(candidate)
        candidate += 1
    return primes


def _halton(n: int, d: int) -> np.ndarray:
    """Points 1..n of the Halton sequence in the first d primes, float64 ``(n, d)``.

    Radical inverse ``φ_b(i) = Σ_k a_k b^{−k−1}`` of ``i = Σ_k a_k b^k``, by exact integer
    digit extraction. Index 0 (the origin, a corner of the box) is skipped.
    """
    index = np.arange(1, n + 1, dtype=np.int64)
    points = np.zeros((n, d))
    for k, base in enumerate(_first_primes(d)):
        i = index.copy()
        scale = 1.0 / base
        while np.any(i > 0):
            points[:, k] += (i % base) * scale
            i //= base
            scale /= base
    return points


def nested_measure(
    lower: ScalarLike,
    upper: ScalarLike,
    n: int,
    d: int,
    *,
    key: PRNGKeyArray | None = None,
    dtype=None,
) -> tuple[Float[Array, "n d"], Float[Array, " n"]]:
    r"""Nested quasi-Monte Carlo rule on ``[lower, upper]^d``: Halton atoms, equal weights.

    .. math::

        y_i = \ell + (u - \ell)\,\big(\{\phi(i) + \Delta\}\big),\qquad
        \phi(i) = \big(\phi_2(i), \phi_3(i), \phi_5(i), \dots\big),\qquad
        \log w_i = \log\frac{(u - \ell)^d}{n},

    for ``i = 1..n``: ``φ_b`` is the base-b radical inverse (the Halton sequence in the
    first d primes; index 0, the corner, is skipped), ``Δ ~ U[0,1)^d`` an optional random
    shift taken modulo 1 (Cranley–Patterson rotation; ``Δ = 0`` without ``key``). The
    integration error is ``O((log n)^d / n)`` (Koksma–Hlawka) for integrands of bounded
    variation; independent keys give independent unbiased estimates, whose spread is an
    error bar (randomized QMC).

    **Nested:** the sequence does not depend on ``n``, so the first ``m`` atoms of an
    ``n``-point rule are exactly the ``m``-point rule (same ``key``). Their log-weights
    are then ``log(volume/m) = log_w + log(n/m)``: add ``log(n/m)`` to a prefix.

    Args:
        lower: lower end of the box (scalar).
        upper: upper end of the box (scalar, ``> lower``).
        n: number of atoms (static).
        d: space dimension (static).
        key: optional PRNG key for the random shift.
        dtype: float dtype of the output (default: the default float dtype, or that of a
            0-d array given as ``lower``/``upper``).

    Returns:
        ``(y, log_w)`` of shapes ``(n, d)`` and ``(n,)``.

    Example:
        >>> y, log_w = nested_measure(0.0, 1.0, 4, 1)  # log_w = log(1/4)
        >>> y[:, 0].tolist()
        [0.5, 0.25, 0.75, 0.125]
    """
    dtype = _dtype(dtype, lower, upper)
    lower, width = _box(lower, upper, n, d, dtype)
    return _nested(jnp.asarray(_halton(n, d), dtype=dtype), lower, width, key)


@jax.jit
def _nested(unit: Array, lower: Array, width: Array, key) -> tuple[Array, Array]:
    n, d = unit.shape
    if key is not None:
        # Cranley–Patterson rotation: shift, then wrap into [0, 1).
        unit = unit + jax.random.uniform(key, (d,), dtype=unit.dtype)
        unit = unit - jnp.floor(unit)
    y = lower + width * unit
    log_w = jnp.full((n,), d * jnp.log(width) - math.log(n), dtype=unit.dtype)
    return y, log_w
