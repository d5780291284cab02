"""hjax: the Hamilton–Jacobi theory of deep learning, executable.

A log-sum-exp layer is exactly the Hopf–Cole solution of a viscous Hamilton–Jacobi
equation; eps (softmax temperature = viscosity) → 0 is the tropical Hopf–Lax limit.
The mathematics and conventions are in THEORY.md.
"""

__version__ = "0.1.0"

from .attention import KVState as KVState
from .attention import LSEAttention as LSEAttention
from .attention import LSEFeedForward as LSEFeedForward
from .attention import LSETransformerBlock as LSETransformerBlock
from .attention import attention_sink_bound as attention_sink_bound
from .attention import attention_weights as attention_weights
from .attention import dot_product_attention as dot_product_attention
from .attention import kv_init as kv_init
from .attention import kv_lse as kv_lse
from .attention import kv_update as kv_update
from .attention import l2_attention as l2_attention
from .attention import l2_attention_weights as l2_attention_weights
from .attention import l2_log_partition as l2_log_partition
from .costate import EULER as EULER
from .costate import HEUN as HEUN
from .costate import MIDPOINT as MIDPOINT
from .costate import RK4 as RK4
from .costate import ButcherTableau as ButcherTableau
from .costate import adjoint_gaps as adjoint_gaps
from .costate import bilinear_invariant as bilinear_invariant
from .costate import costate_backward as costate_backward
from .costate import euler_forward as euler_forward
from .costate import hamiltonian as hamiltonian
from .costate import hamiltonian_flow as hamiltonian_flow
from .costate import ode_forward as ode_forward
from .costate import ode_gradient as ode_gradient
from .costate import rk_bilinear_invariant as rk_bilinear_invariant
from .costate import rk_costate_backward as rk_costate_backward
from .costate import rk_forward as rk_forward
from .costate import rk_ode_gradient as rk_ode_gradient
from .costate import theta_path as theta_path
from .diagram import CONCAVE_CONE as CONCAVE_CONE
from .diagram import CONE as CONE
from .diagram import SMOOTH_CONE as SMOOTH_CONE
from .diagram import RadialDatum as RadialDatum
from .diagram import error_surface as error_surface
from .diagram import hopf_cole_radial as hopf_cole_radial
from .diagram import hopf_lax_radial as hopf_lax_radial
from .diagram import plot_commutative_diagram as plot_commutative_diagram
from .diagram import quadratic_datum as quadratic_datum
from .diagram import quadratic_hopf_cole as quadratic_hopf_cole
from .feynman_kac import feynman_kac as feynman_kac
from .hopf_cole import heat_normalization as heat_normalization
from .hopf_cole import hopf_cole as hopf_cole
from .hopf_cole import hopf_cole_grad as hopf_cole_grad
from .hopf_cole import hopf_cole_hessian as hopf_cole_hessian
from .hopf_cole import hopf_lax as hopf_lax
from .hopf_cole import transport_cost as transport_cost
from .layers import DeepLSE as DeepLSE
from .layers import LSEBlock as LSEBlock
from .layers import LSELayer as LSELayer
from .layers import PDMetric as PDMetric
from .layers import affine_pullback as affine_pullback
from .layers import heat_kernel_weights as heat_kernel_weights
from .layers import hj_to_lse as hj_to_lse
from .layers import lse_layer as lse_layer
from .layers import lse_layer_backward as lse_layer_backward
from .layers import lse_layer_gibbs as lse_layer_gibbs
from .layers import lse_layer_grad as lse_layer_grad
from .layers import lse_layer_hessian as lse_layer_hessian
from .layers import lse_layer_hessian_bound as lse_layer_hessian_bound
from .layers import lse_to_hj as lse_to_hj
from .layers import quadratic_shift as quadratic_shift
from .measures import grid_measure as grid_measure
from .measures import nested_measure as nested_measure
from .semiring import gibbs as gibbs
from .semiring import lse as lse
from .semiring import maxplus_matmul as maxplus_matmul
from .semiring import softplus_eps as softplus_eps
from .semiring import tropical_add as tropical_add
from .semiring import tropical_mul as tropical_mul
from .sweep import hopf_cole_sweep as hopf_cole_sweep
