"""jaxtyping aliases shared across hjax.

Shapes follow THEORY.md §0: ``d`` is the space dimension, ``N`` the number of atoms
(support points / neurons), ``*batch`` any leading query dimensions.
"""

from jaxtyping import Array, ArrayLike, Bool, Float, Int, Real

__all__ = ["Array", "ArrayLike", "Bool", "Float", "Int", "Real", "Scalar", "ScalarLike"]

#: A real scalar given as a Python number or a 0-d array (eps, t, ...); may be traced.
ScalarLike = Real[ArrayLike, ""]
#: A 0-d float array.
Scalar = Float[Array, ""]
