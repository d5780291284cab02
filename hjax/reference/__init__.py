r"""Reference solutions of the Hamilton–Jacobi problems, independent of the layer under test.

The checks of :mod:`hjax.diagram` and :mod:`hjax.verify` compare the LSE layer / Hopf–Cole
quadrature with solutions computed by *other* means:

* :mod:`hjax.reference.radial` — radial data: the Hopf–Lax solution by a scalar
  minimisation and the Hopf–Cole solution by a one-dimensional radial integral
  (THEORY.md §2, §4); the Gaussian closed form for quadratic data.
"""

from .pde import hj_residual as hj_residual
from .pde import lax_friedrichs_hj as lax_friedrichs_hj
from .pde import mol_viscous_hj as mol_viscous_hj
from .radial import CONCAVE_CONE as CONCAVE_CONE
from .radial import CONE as CONE
from .radial import DATA as DATA
from .radial import SMOOTH_CONE as SMOOTH_CONE
from .radial import RadialDatum as RadialDatum
from .radial import hopf_cole_radial as hopf_cole_radial
from .radial import hopf_lax_argmin_radial as hopf_lax_argmin_radial
from .radial import hopf_lax_radial as hopf_lax_radial
from .radial import quadratic_datum as quadratic_datum
from .radial import quadratic_hopf_cole as quadratic_hopf_cole
from .radial import radial_reference as radial_reference
