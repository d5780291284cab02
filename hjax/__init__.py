"""hjax: the Hamilton–Jacobi theory of deep learning, executable.

A log-sum-exp layer is exactly the Hopf–Cole solution of a viscous Hamilton–Jacobi
equation; eps (softmax temperature = viscosity) → 0 is the tropical Hopf–Lax limit.
The mathematics and conventions are in THEORY.md.
"""

__version__ = "0.1.0"

from .hopf_cole import heat_normalization as heat_normalization
from .hopf_cole import hopf_cole as hopf_cole
from .hopf_cole import hopf_lax as hopf_lax
from .hopf_cole import transport_cost as transport_cost
from .semiring import gibbs as gibbs
from .semiring import lse as lse
from .semiring import maxplus_matmul as maxplus_matmul
from .semiring import softplus_eps as softplus_eps
from .semiring import tropical_add as tropical_add
from .semiring import tropical_mul as tropical_mul
