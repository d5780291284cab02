"""Argument handling shared by the co-state modules: layers stacked on axis 0, scans over them.

``θ`` is a pytree whose array leaves are stacked on axis 0 over the ``L`` layers (the
scan-over-layers idiom); non-array leaves (an activation inside an ``eqx.Module``) are
carried along unstacked.
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .. import _validate
from .._types import Array, ScalarLike

#: One layer's vector field ``f(x, θ_l) -> dx/dt`` (``x``'s shape).
VectorField = Callable[[Array, Any], Array]


def num_layers(theta: Any) -> int:
    """``L``: the common leading axis of the array leaves of ``theta``."""
    leaves = jax.tree_util.tree_leaves(eqx.filter(theta, eqx.is_array))
    if not leaves:
        raise ValueError("`theta` must contain at least one array leaf stacked over layers.")
    sizes = {leaf.shape[0] if leaf.ndim else None for leaf in leaves}
    if None in sizes or len(sizes) != 1:
        shapes = [leaf.shape for leaf in leaves]
        raise ValueError(
            "`theta` must have every array leaf stacked on axis 0 over the same number of "
            f"layers L (e.g. with eqx.filter_vmap or jnp.stack); got leaf shapes {shapes}."
        )
    (num,) = sizes
    if num < 1:
        raise ValueError("`theta` must hold at least one layer (leading axis L >= 1).")
    return num


def layer(theta: Any, index: int = 0) -> Any:
    """The parameters of one layer: array leaves indexed on axis 0."""
    dynamic, static = eqx.partition(theta, eqx.is_array)
    return eqx.combine(jax.tree_util.tree_map(lambda a: a[index], dynamic), static)


def step_size(name: str, h: ScalarLike, dtype) -> Array:
    """A finite step ``> 0`` as a 0-d array (checked eagerly, or at run time when traced)."""
    return _validate.positive_scalar(name, h, dtype)


def cast_field(f: VectorField, dtype) -> VectorField:
    """``f`` with its output cast to the state dtype (the scan carry keeps one dtype)."""

    def field(x: Array, theta_l: Any) -> Array:
        return jnp.asarray(f(x, theta_l)).astype(dtype)

    return field


def check_field(f: VectorField, theta: Any, x: Array) -> None:
    """``f(x, θ_l)`` must have the state's shape (checked abstractly, no FLOPs)."""
    out = eqx.filter_eval_shape(f, x, layer(theta))
    if getattr(out, "shape", None) != x.shape:
        raise ValueError(
            f"`f` must map (x, theta_l) to dx/dt of the state's shape {x.shape}; "
            f"got {getattr(out, 'shape', type(out).__name__)}."
        )


def check_states(xs: Array, state: Array, num: int, name: str = "p_final") -> None:
    """``xs`` holds ``L+1`` states of the shape of ``state`` (named ``name``)."""
    if xs.shape[0] != num + 1:
        raise ValueError(
            f"`xs` must hold the L+1 = {num + 1} forward states (L from `theta`); "
            f"got leading axis {xs.shape[0]}."
        )
    if xs.shape[1:] != state.shape:
        raise ValueError(f"`{name}` must have the state's shape {xs.shape[1:]}; got {state.shape}.")


def scan_layers(body, init, theta: Any, xs=None, *, reverse: bool = False):
    """``lax.scan`` over layers; ``body(carry, (theta_l, x)) -> (carry, y)``."""
    dynamic, static = eqx.partition(theta, eqx.is_array)

    def scan_body(carry, inputs):
        dyn_l, x = inputs
        return body(carry, (eqx.combine(dyn_l, static), x))

    return jax.lax.scan(scan_body, init, (dynamic, xs), reverse=reverse)
