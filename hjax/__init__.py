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
from .attribution import CandidateVerdict as CandidateVerdict
from .attribution import CriticalPointSearch as CriticalPointSearch
from .attribution import EntropyBranch as EntropyBranch
from .attribution import EntropyCriticalPoint as EntropyCriticalPoint
from .attribution import EntropyFold as EntropyFold
from .attribution import attribution_entropy as attribution_entropy
from .attribution import attribution_entropy_grad as attribution_entropy_grad
from .attribution import attribution_entropy_hessian as attribution_entropy_hessian
from .attribution import classify_candidate as classify_candidate
from .attribution import critical_points_at as critical_points_at
from .attribution import entropy_critical_points as entropy_critical_points
from .attribution import hopf_cole_entropy as hopf_cole_entropy
from .attribution import trace_entropy_branches as trace_entropy_branches
from .characteristics import MLP as MLP
from .characteristics import Activation as Activation
from .characteristics import LSTMCell as LSTMCell
from .characteristics import Maxout as Maxout
from .characteristics import Perceptron as Perceptron
from .characteristics import RNNCell as RNNCell
from .characteristics import gate as gate
from .characteristics import hamiltonian_characteristics as hamiltonian_characteristics
from .characteristics import lstm_field as lstm_field
from .characteristics import lstm_gates as lstm_gates
from .characteristics import lstm_scan as lstm_scan
from .characteristics import maxout_field as maxout_field
from .characteristics import mlp_field as mlp_field
from .characteristics import perceptron_field as perceptron_field
from .characteristics import quadratic_characteristics as quadratic_characteristics
from .characteristics import rnn_field as rnn_field
from .characteristics import rnn_scan as rnn_scan
from .characteristics import selective_zoh as selective_zoh
from .characteristics import ssm_costate as ssm_costate
from .characteristics import ssm_field as ssm_field
from .characteristics import ssm_scan as ssm_scan
from .characteristics import tropical_ssm_scan as tropical_ssm_scan
from .characteristics import zoh as zoh
from .costate import EULER as EULER
from .costate import HEUN as HEUN
from .costate import MIDPOINT as MIDPOINT
from .costate import RK4 as RK4
from .costate import ButcherTableau as ButcherTableau
from .costate import adjoint_gaps as adjoint_gaps
from .costate import bilinear_invariant as bilinear_invariant
from .costate import costate_backward as costate_backward
from .costate import euler_forward as euler_forward
from .costate import finite_difference_gradient as finite_difference_gradient
from .costate import hamiltonian as hamiltonian
from .costate import hamiltonian_flow as hamiltonian_flow
from .costate import ode_forward as ode_forward
from .costate import ode_gradient as ode_gradient
from .costate import rk_bilinear_invariant as rk_bilinear_invariant
from .costate import rk_costate_backward as rk_costate_backward
from .costate import rk_forward as rk_forward
from .costate import rk_ode_gradient as rk_ode_gradient
from .costate import theta_path as theta_path
from .diagram import error_surface as error_surface
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
from .models import LSTM as LSTM
from .models import RNN as RNN
from .models import SSM as SSM
from .models import NeuralODE as NeuralODE
from .models import ResNet as ResNet
from .models import fit as fit
from .msa import augmented_hamiltonian as augmented_hamiltonian
from .msa import msa_init as msa_init
from .msa import msa_step as msa_step
from .msa import train_backprop as train_backprop
from .msa import train_msa as train_msa
from .rates import LogLogFit as LogLogFit
from .rates import loglog_fit as loglog_fit
from .reference import CONCAVE_CONE as CONCAVE_CONE
from .reference import CONE as CONE
from .reference import SMOOTH_CONE as SMOOTH_CONE
from .reference import RadialDatum as RadialDatum
from .reference import hopf_cole_radial as hopf_cole_radial
from .reference import hopf_lax_radial as hopf_lax_radial
from .reference import quadratic_datum as quadratic_datum
from .reference import quadratic_hopf_cole as quadratic_hopf_cole
from .robustness import attack_decision as attack_decision
from .robustness import certified_radius as certified_radius
from .robustness import lse_layer_bias_hessian as lse_layer_bias_hessian
from .robustness import lse_layer_ntk as lse_layer_ntk
from .robustness import paper_certified_radius as paper_certified_radius
from .robustness import poisoning_shift as poisoning_shift
from .semiring import gibbs as gibbs
from .semiring import lse as lse
from .semiring import maxplus_matmul as maxplus_matmul
from .semiring import softplus_eps as softplus_eps
from .semiring import tropical_add as tropical_add
from .semiring import tropical_mul as tropical_mul
from .sweep import hopf_cole_sweep as hopf_cole_sweep
from .train import LSESweep as LSESweep
from .train import scaled_eps as scaled_eps
from .train import train_sweep as train_sweep
from .verify.figure import plot_commutative_diagram as plot_commutative_diagram

__all__ = [
    "__version__",
    "Activation",
    "adjoint_gaps",
    "affine_pullback",
    "attack_decision",
    "attention_sink_bound",
    "attention_weights",
    "attribution_entropy",
    "attribution_entropy_grad",
    "attribution_entropy_hessian",
    "augmented_hamiltonian",
    "bilinear_invariant",
    "ButcherTableau",
    "CandidateVerdict",
    "certified_radius",
    "classify_candidate",
    "CONCAVE_CONE",
    "CONE",
    "costate_backward",
    "critical_points_at",
    "CriticalPointSearch",
    "DeepLSE",
    "dot_product_attention",
    "entropy_critical_points",
    "EntropyBranch",
    "EntropyCriticalPoint",
    "EntropyFold",
    "error_surface",
    "EULER",
    "euler_forward",
    "feynman_kac",
    "finite_difference_gradient",
    "fit",
    "gate",
    "gibbs",
    "grid_measure",
    "hamiltonian",
    "hamiltonian_characteristics",
    "hamiltonian_flow",
    "heat_kernel_weights",
    "heat_normalization",
    "HEUN",
    "hj_to_lse",
    "hopf_cole",
    "hopf_cole_entropy",
    "hopf_cole_grad",
    "hopf_cole_hessian",
    "hopf_cole_radial",
    "hopf_cole_sweep",
    "hopf_lax",
    "hopf_lax_radial",
    "kv_init",
    "kv_lse",
    "kv_update",
    "KVState",
    "l2_attention",
    "l2_attention_weights",
    "l2_log_partition",
    "loglog_fit",
    "LogLogFit",
    "lse",
    "lse_layer",
    "lse_layer_backward",
    "lse_layer_bias_hessian",
    "lse_layer_gibbs",
    "lse_layer_grad",
    "lse_layer_hessian",
    "lse_layer_hessian_bound",
    "lse_layer_ntk",
    "lse_to_hj",
    "LSEAttention",
    "LSEBlock",
    "LSEFeedForward",
    "LSELayer",
    "LSESweep",
    "LSETransformerBlock",
    "LSTM",
    "lstm_field",
    "lstm_gates",
    "lstm_scan",
    "LSTMCell",
    "Maxout",
    "maxout_field",
    "maxplus_matmul",
    "MIDPOINT",
    "MLP",
    "mlp_field",
    "msa_init",
    "msa_step",
    "nested_measure",
    "NeuralODE",
    "ode_forward",
    "ode_gradient",
    "paper_certified_radius",
    "PDMetric",
    "Perceptron",
    "perceptron_field",
    "plot_commutative_diagram",
    "poisoning_shift",
    "quadratic_characteristics",
    "quadratic_datum",
    "quadratic_hopf_cole",
    "quadratic_shift",
    "RadialDatum",
    "ResNet",
    "RK4",
    "rk_bilinear_invariant",
    "rk_costate_backward",
    "rk_forward",
    "rk_ode_gradient",
    "RNN",
    "rnn_field",
    "rnn_scan",
    "RNNCell",
    "scaled_eps",
    "selective_zoh",
    "SMOOTH_CONE",
    "softplus_eps",
    "SSM",
    "ssm_costate",
    "ssm_field",
    "ssm_scan",
    "theta_path",
    "trace_entropy_branches",
    "train_backprop",
    "train_msa",
    "train_sweep",
    "transport_cost",
    "tropical_add",
    "tropical_mul",
    "tropical_ssm_scan",
    "zoh",
]
