r"""Backpropagation = Pontryagin co-state (THEORY.md §6–§7, Thm 8.4, Prop E.6).

A residual network ``x_{l+1} = x_l + h f(x_l, θ_l)`` is forward Euler for the
x-characteristic ``ẋ = ∂_p H`` of the Hamiltonian ``H(x, p, θ) = p · f(x, θ)``.
Backpropagation of a loss ``Φ(x_L)`` is, exactly and at finite ``h``, the discrete
co-state recursion

.. math::

    p_L = \nabla Φ(x_L), \qquad
    p_l = p_{l+1} + h\, (\partial_x f(x_l, θ_l))^\top p_{l+1}, \qquad
    \frac{\partial Φ}{\partial θ_l} = h\, (\partial_θ f(x_l, θ_l))^\top p_{l+1},

and the pair (forward Euler, this recursion) conserves the bilinear form
``p_l · δx_l`` for every tangent ``δx`` of the forward map.

The subpackage has three modules:

* :mod:`hjax.costate.discrete` — one tableau-parameterised pass for networks of explicit
  Runge–Kutta blocks (:class:`ButcherTableau`; :data:`EULER`, :data:`MIDPOINT`,
  :data:`HEUN`, :data:`RK4`): :func:`rk_forward`, its exact adjoint (the conjugate
  partitioned RK scheme, Hager 2000 / Sanz-Serna 2016) :func:`rk_costate_backward`, and
  :func:`rk_bilinear_invariant`; the ResNet names :func:`euler_forward`,
  :func:`costate_backward`, :func:`bilinear_invariant` are its one-stage case;
* :mod:`hjax.costate.continuous` — the neural ODE with diffrax: ``θ(t)`` from the layers
  (:func:`theta_path`), the solve (:func:`ode_forward`), its gradient by a diffrax
  adjoint object (:func:`ode_gradient`, :func:`adjoint_gaps`), by the explicit RK
  co-state (:func:`rk_ode_gradient`), and the finite-difference reference
  (:func:`finite_difference_gradient`);
* :mod:`hjax.costate.hamiltonian` — :func:`hamiltonian` and Hamilton's equations
  (:func:`hamiltonian_flow`).

Conventions: ``f(x, θ_l) -> dx/dt`` for one layer, ``x`` an array of any shape (the state,
``(d,)`` for a ResNet), ``θ`` a pytree whose array leaves are stacked on axis 0 over the
``L`` layers (non-array leaves, e.g. an activation inside an ``eqx.Module``, are carried
along unstacked). Gradients have ``θ``'s structure, with ``None`` on non-differentiable
leaves (as ``eqx.filter_grad``).
"""

from .continuous import adjoint_gaps as adjoint_gaps
from .continuous import finite_difference_gradient as finite_difference_gradient
from .continuous import ode_forward as ode_forward
from .continuous import ode_gradient as ode_gradient
from .continuous import rk_ode_gradient as rk_ode_gradient
from .continuous import theta_path as theta_path
from .discrete import EULER as EULER
from .discrete import HEUN as HEUN
from .discrete import MIDPOINT as MIDPOINT
from .discrete import RK4 as RK4
from .discrete import ButcherTableau as ButcherTableau
from .discrete import bilinear_invariant as bilinear_invariant
from .discrete import costate_backward as costate_backward
from .discrete import euler_forward as euler_forward
from .discrete import rk_bilinear_invariant as rk_bilinear_invariant
from .discrete import rk_costate_backward as rk_costate_backward
from .discrete import rk_forward as rk_forward
from .hamiltonian import hamiltonian as hamiltonian
from .hamiltonian import hamiltonian_flow as hamiltonian_flow

__all__ = [
    "EULER",
    "HEUN",
    "MIDPOINT",
    "RK4",
    "ButcherTableau",
    "adjoint_gaps",
    "bilinear_invariant",
    "costate_backward",
    "euler_forward",
    "finite_difference_gradient",
    "hamiltonian",
    "hamiltonian_flow",
    "ode_forward",
    "ode_gradient",
    "rk_bilinear_invariant",
    "rk_costate_backward",
    "rk_forward",
    "rk_ode_gradient",
    "theta_path",
]
