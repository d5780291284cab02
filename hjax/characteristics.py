r"""Hamiltonian vector fields: ResNets, RNNs, SSMs, LSTMs and HJ characteristics.

THEORY.md §6 (Prop 5.2, Prop 5.4, Remark 5.5). Every architecture below integrates
the x-equation of Hamilton's system for a Hamiltonian of the form
``H(x, p, θ(t)) = p · f(x, θ(t))``:

.. math::

    \dot x = \partial_p H = f(x, \theta(t)), \qquad
    \dot p = -\partial_x H = -(\partial_x f)^\top p .

* ResNet ``x_{l+1} = x_l + h f(x_l, θ_l)``: forward Euler, global error ``O(h)``
  (Prop 5.2). Blocks: :func:`perceptron_field` ``σ(Wx + b)``, :func:`mlp_field`
  ``W₂ σ(W₁x + b₁) + b₂`` and :func:`maxout_field`, whose k-th coordinate is an LSE
  layer ``lse(W_k x + b_k, eps)`` (a maxout/tropical block at eps = 0).
* RNN ``h_{k+1} = σ(W h_k + U u_k + b)``: *unit-step* Euler of
  ``ḣ = σ(Wh + Uu(t) + b) − h`` (:func:`rnn_field`, :func:`rnn_scan`).
* Linear SSM ``ẋ = Ax + Bu(t)``: exact zero-order-hold discretization
  ``Ā = e^{ΔA}``, ``B̄ = A⁻¹(Ā − I)B`` (:func:`zoh`, :func:`ssm_scan`); input-dependent
  Δ (selective scan) makes the characteristics non-autonomous (:func:`selective_zoh`);
  the co-state obeys ``p_k = Āᵀ p_{k+1}`` (:func:`ssm_costate`); the tropical SSM
  ``x_{k+1} = Ā ⊗ x_k ⊕ B̄ ⊗ u_k`` and its eps-deformation (:func:`tropical_ssm_scan`).
* LSTM: gates ``σ(z) = ∂_z softplus(z) = ∂_z lse([0, z], 1)`` are gradients of
  two-neuron LSE layers (:func:`gate`); cell ``ċ = (f − 1) ⊙ c + i ⊙ g̃`` and hidden
  state ``ḣ = o ⊙ tanh(c) − h`` (:func:`lstm_field`); the LSTM is the unit step of the
  partitioned Euler scheme of this field (:func:`lstm_scan`).
* HJ characteristics: for ``H(p) = ½ pᵀAp`` straight lines ``x(t) = y + tA∇g(y)``,
  ``p ≡ ∇g(y)`` (:func:`quadratic_characteristics`); for a general ``H(x, p)`` Hamilton's
  equations with the action ``u̇ = p·∂_pH − H`` solved with diffrax
  (:func:`hamiltonian_characteristics`).

``H = p · f`` itself, the ResNet pass and its co-state (backprop) live in
:mod:`hjax.costate` (``hamiltonian``, ``euler_forward``, ``costate_backward``,
``hamiltonian_flow``); the ResNet fields here take ``f(x, θ, activation)``: bind the
activation with ``functools.partial`` to get the ``f(x, θ_l)`` those functions take.
"""

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from . import _validate
from ._types import Array, ArrayLike, Float, ScalarLike
from .semiring import gibbs, lse, maxplus_matmul, softplus_eps

__all__ = [
    "Activation",
    "LSTMCell",
    "MLP",
    "Maxout",
    "Perceptron",
    "RNNCell",
    "hamiltonian_characteristics",
    "gate",
    "lstm_field",
    "lstm_gates",
    "lstm_scan",
    "maxout_field",
    "mlp_field",
    "perceptron_field",
    "quadratic_characteristics",
    "rnn_field",
    "rnn_scan",
    "selective_zoh",
    "ssm_costate",
    "ssm_field",
    "ssm_scan",
    "tropical_ssm_scan",
    "zoh",
]

_ACTIVATIONS = ("tanh", "relu", "softplus", "sigmoid")


# --------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------


def gate(z: Float[ArrayLike, "*shape"], eps: ScalarLike = 1.0) -> Float[Array, "*shape"]:
    r"""Gate ``σ(z/eps) = ∂_z softplus_eps(z) = ∂_z lse([0, z], eps)`` (Remark 5.5).

    Computed as the Gibbs weight of the second atom of the two-neuron LSE layer
    ``lse([0, z], eps)``; at eps = 1 it is the logistic sigmoid, at eps = 0 the exact
    Heaviside selector (value ½ at the tie ``z = 0``), with finite gradients.

    Args:
        z: pre-activations, any shape.
        eps: temperature ``>= 0`` (may be traced).

    Example:
        >>> float(gate(0.0)), float(gate(-2.0, 0.0))
        (0.5, 0.0)
    """
    z = jnp.asarray(z, dtype=_validate.float_dtype(z))
    return gibbs(jnp.stack([jnp.zeros_like(z), z], axis=-1), eps, axis=-1)[..., 1]


class Activation(eqx.Module):
    r"""Elementwise activation with a temperature eps carried as an array leaf.

    ``kind``: ``"tanh"`` (``tanh(z)``), ``"relu"``, ``"softplus"``
    (``softplus_eps(z) = lse([0, z], eps)``, ReLU at eps = 0, THEORY §1) or
    ``"sigmoid"`` (:func:`gate`, ``σ(z/eps)``). eps is a leaf, so passing an
    ``Activation`` through ``jax.jit``/``eqx.filter_jit`` and sweeping eps compiles once;
    it is only used by the eps-deformed kinds.

    Example:
        >>> import jax.numpy as jnp
        >>> act = Activation("softplus", 0.0)
        >>> float(act(jnp.asarray(-1.0))), float(act(jnp.asarray(2.0)))
        (0.0, 2.0)
    """

    kind: str = eqx.field(static=True)
    eps: Float[Array, ""]

    def __init__(self, kind: str = "tanh", eps: ScalarLike = 1.0):
        if kind not in _ACTIVATIONS:
            raise ValueError(f"`kind` must be one of {_ACTIVATIONS}; got {kind!r}.")
        self.kind = kind
        dtype = _validate.float_dtype(eps)
        self.eps = _validate.nonnegative_scalar("eps", eps, dtype)

    def __call__(self, z: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        if self.kind == "tanh":
            return jnp.tanh(z)
        if self.kind == "relu":
            return jax.nn.relu(z)
        if self.kind == "softplus":
            return softplus_eps(z, self.eps)
        return gate(z, self.eps)


# --------------------------------------------------------------------------------------
# ResNet blocks (Prop 5.2)
# --------------------------------------------------------------------------------------


class Perceptron(eqx.Module):
    """Parameters ``θ = (W, b)`` of the block ``f(x) = σ(Wx + b)``."""

    W: Float[Array, "d d"]
    b: Float[Array, " d"]


class MLP(eqx.Module):
    """Parameters ``θ = (W1, b1, W2, b2)`` of the block ``f(x) = W2 σ(W1 x + b1) + b2``."""

    W1: Float[Array, "m d"]
    b1: Float[Array, " m"]
    W2: Float[Array, "d m"]
    b2: Float[Array, " d"]


class Maxout(eqx.Module):
    """Parameters ``θ = (W, b)`` of the LSE block ``f_k(x) = lse(W_k x + b_k, eps)``."""

    W: Float[Array, "d N d"]
    b: Float[Array, "d N"]


def perceptron_field(
    x: Float[Array, " d"], theta: Perceptron, activation: Activation
) -> Float[Array, " d"]:
    r"""ResNet block ``f(x, θ) = σ(Wx + b)`` (Prop 5.2; Li et al. 2018's residual block).

    Args:
        x: state ``(d,)``.
        theta: :class:`Perceptron` with ``W (d, d)``, ``b (d,)``.
        activation: the elementwise ``σ``.

    Example:
        >>> import jax.numpy as jnp
        >>> th = Perceptron(jnp.eye(2), jnp.zeros(2))
        >>> perceptron_field(jnp.zeros(2), th, Activation("tanh")).tolist()
        [0.0, 0.0]
    """
    return activation(theta.W @ x + theta.b)


def mlp_field(x: Float[Array, " d"], theta: MLP, activation: Activation) -> Float[Array, " d"]:
    r"""Two-layer ResNet block ``f(x, θ) = W₂ σ(W₁x + b₁) + b₂`` (Prop 5.2).

    Args:
        x: state ``(d,)``.
        theta: :class:`MLP` with ``W1 (m, d)``, ``b1 (m,)``, ``W2 (d, m)``, ``b2 (d,)``.
        activation: the hidden ``σ``.

    Example:
        >>> import jax.numpy as jnp
        >>> th = MLP(jnp.ones((3, 2)), jnp.zeros(3), jnp.ones((2, 3)), jnp.ones(2))
        >>> mlp_field(jnp.zeros(2), th, Activation("relu")).tolist()
        [1.0, 1.0]
    """
    return theta.W2 @ activation(theta.W1 @ x + theta.b1) + theta.b2


def maxout_field(x: Float[Array, " d"], theta: Maxout, eps: ScalarLike) -> Float[Array, " d"]:
    r"""LSE ResNet block: ``f_k(x) = lse(W_k x + b_k, eps)``, one LSE layer per coordinate.

    Each coordinate is a Hopf–Cole solution (Thm 4.1); at eps = 0 it is a maxout unit
    ``max_j (W_kj · x + b_kj)``, and the residual step a tropical residual (§5, Prop 5.2).

    Args:
        x: state ``(d,)``.
        theta: :class:`Maxout` with ``W (d, N, d)``, ``b (d, N)``.
        eps: temperature ``>= 0`` (may be traced).

    Example:
        >>> import jax.numpy as jnp
        >>> th = Maxout(jnp.zeros((1, 2, 1)), jnp.array([[0.0, 1.0]]))
        >>> maxout_field(jnp.zeros(1), th, 0.0).tolist()
        [1.0]
    """
    return lse(theta.W @ x + theta.b, eps, axis=-1)


# --------------------------------------------------------------------------------------
# RNN (Prop 5.4(a))
# --------------------------------------------------------------------------------------


class RNNCell(eqx.Module):
    """Parameters of ``h_{k+1} = σ(W h_k + U u_k + b)``."""

    W: Float[Array, "d d"]
    U: Float[Array, "d m"]
    b: Float[Array, " d"]


def rnn_field(
    h: Float[Array, " d"], theta: RNNCell, u: Float[Array, " m"], activation: Activation
) -> Float[Array, " d"]:
    r"""RNN vector field ``ḣ = σ(Wh + Uu(t) + b) − h`` (Prop 5.4(a)).

    Its Hamiltonian is ``H = p · (σ(Wh + Uu + b) − h)``; the discrete RNN
    ``h_{k+1} = σ(W h_k + U u_k + b) = h_k + 1 · ḣ`` is its *unit-step* Euler scheme
    with the input held constant over each step.

    Args:
        h: hidden state ``(d,)``.
        theta: :class:`RNNCell` (``W (d, d)``, ``U (d, m)``, ``b (d,)``).
        u: input at time t, ``(m,)``.
        activation: ``σ``.

    Example:
        >>> import jax.numpy as jnp
        >>> th = RNNCell(jnp.zeros((1, 1)), jnp.zeros((1, 1)), jnp.zeros(1))
        >>> rnn_field(jnp.ones(1), th, jnp.zeros(1), Activation("tanh")).tolist()
        [-1.0]
    """
    return activation(theta.W @ h + theta.U @ u + theta.b) - h


def rnn_scan(
    theta: RNNCell, h0: Float[Array, " d"], us: Float[Array, "K m"], activation: Activation
) -> Float[Array, "K+1 d"]:
    r"""The discrete RNN ``h_{k+1} = σ(W h_k + U u_k + b)`` over a sequence (Prop 5.4(a)).

    Equal to unit-step Euler of :func:`rnn_field` with piecewise-constant input.

    Args:
        theta: :class:`RNNCell`.
        h0: initial hidden state ``(d,)``.
        us: inputs ``(K, m)``.
        activation: ``σ``.

    Returns:
        ``hs`` of shape ``(K + 1, d)`` with ``hs[0] = h0``.

    Example:
        >>> import jax.numpy as jnp
        >>> th = RNNCell(jnp.zeros((1, 1)), jnp.ones((1, 1)), jnp.zeros(1))
        >>> rnn_scan(th, jnp.zeros(1), jnp.zeros((2, 1)), Activation("tanh")).shape
        (3, 1)
    """

    def step(h, u):
        h_next = activation(theta.W @ h + theta.U @ u + theta.b)
        return h_next, h_next

    _, hs = jax.lax.scan(step, h0, us)
    return jnp.concatenate([h0[None], hs], axis=0)


# --------------------------------------------------------------------------------------
# Linear, selective and tropical SSMs (Prop 5.4(b))
# --------------------------------------------------------------------------------------


def _check_ssm_shapes(A: Array, B: Array) -> None:
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"`A` must be a square (n, n) matrix; got shape {A.shape}.")
    if B.ndim != 2 or B.shape[0] != A.shape[0]:
        raise ValueError(f"`B` must have shape (n, m) = ({A.shape[0]}, m); got {B.shape}.")


def ssm_field(
    x: Float[Array, " n"], A: Float[Array, "n n"], B: Float[Array, "n m"], u: Float[Array, " m"]
) -> Float[Array, " n"]:
    r"""Linear SSM vector field ``ẋ = Ax + Bu(t)``; ``H = pᵀ(Ax + Bu)``, ``ṗ = −Aᵀp``.

    Prop 5.4(b). With an input-dependent step Δ (selective scan) the index-time field is
    ``Δ(s) (A x + B u(s))``: time-dependent matrices, non-autonomous characteristics.

    Example:
        >>> import jax.numpy as jnp
        >>> ssm_field(jnp.ones(1), -jnp.eye(1), jnp.ones((1, 1)), jnp.ones(1)).tolist()
        [0.0]
    """
    return A @ x + B @ u


def zoh(
    A: Float[ArrayLike, "n n"], B: Float[ArrayLike, "n m"], delta: ScalarLike
) -> tuple[Float[Array, "n n"], Float[Array, "n m"]]:
    r"""Zero-order-hold discretization of ``ẋ = Ax + Bu``: ``Ā = e^{ΔA}``, ``B̄ = A⁻¹(Ā − I)B``.

    Prop 5.4(b). With the input held at ``u_k`` over a step of length Δ the exact
    solution is ``x_{k+1} = Ā x_k + B̄ u_k`` with ``B̄ = ∫₀^Δ e^{sA} ds B``, which equals
    ``A⁻¹(e^{ΔA} − I)B`` when A is invertible. A is never inverted: both blocks come from
    one exponential of the augmented matrix (Van Loan's block trick)

    .. math::

        \exp\!\Big(\Delta \begin{bmatrix} A & B \\ 0 & 0 \end{bmatrix}\Big)
        = \begin{bmatrix} \bar A & \bar B \\ 0 & I \end{bmatrix},

    (differentiate ``t ↦ exp(tM)``: the top-right block solves ``Ẏ = AY + B``, ``Y(0) = 0``),
    so singular or ill-conditioned A (integrators, ``A = 0`` gives ``B̄ = ΔB``) is exact.
    ``jax.scipy.linalg.expm`` (Padé, scaling and squaring) is differentiable.

    Args:
        A: state matrix ``(n, n)``.
        B: input matrix ``(n, m)``.
        delta: step ``Δ > 0`` (may be traced).

    Returns:
        ``(A_bar (n, n), B_bar (n, m))``.

    Example:
        >>> import jax.numpy as jnp
        >>> A_bar, B_bar = zoh(jnp.zeros((1, 1)), jnp.ones((1, 1)), 0.5)
        >>> float(A_bar[0, 0]), float(B_bar[0, 0])
        (1.0, 0.5)
    """
    dtype = _validate.float_dtype(A, B)
    A = jnp.asarray(A, dtype)
    B = jnp.asarray(B, dtype)
    _check_ssm_shapes(A, B)
    delta = _validate.positive_scalar("delta", delta, dtype)
    n, m = B.shape
    top = jnp.concatenate([A, B], axis=1)
    M = jnp.concatenate([top, jnp.zeros((m, n + m), dtype)], axis=0)
    E = jsl.expm(delta * M)
    E = eqx.error_if(
        E,
        ~jnp.all(jnp.isfinite(E)),
        "zoh: exp(delta·[[A, B], [0, 0]]) is not finite; reduce `delta` or the scale of `A`",
    )
    return E[:n, :n], E[:n, n:]


def selective_zoh(
    A: Float[ArrayLike, "n n"], B: Float[ArrayLike, "n m"], deltas: Float[ArrayLike, " K"]
) -> tuple[Float[Array, "K n n"], Float[Array, "K n m"]]:
    r"""Per-step ZOH with input-dependent steps ``Δ_k`` (selective scan, Prop 5.4(b)).

    ``Ā_k = e^{Δ_k A}``, ``B̄_k = ∫₀^{Δ_k} e^{sA} ds B``: step k integrates
    ``ẋ = Ax + Bu_k`` over a time Δ_k chosen by the input (Mamba), i.e. in index time the
    non-autonomous field ``Δ(s)(Ax + Bu(s))``. Feed the result to :func:`ssm_scan`.

    Args:
        A: ``(n, n)``; B: ``(n, m)``; deltas: steps ``(K,)``, each ``> 0``.

    Returns:
        ``(A_bars (K, n, n), B_bars (K, n, m))``.

    Example:
        >>> import jax.numpy as jnp
        >>> A_bars, _ = selective_zoh(-jnp.eye(1), jnp.ones((1, 1)), jnp.array([0.1, 1.0]))
        >>> A_bars.shape
        (2, 1, 1)
    """
    dtype = _validate.float_dtype(A, B, deltas)
    A = jnp.asarray(A, dtype)
    B = jnp.asarray(B, dtype)
    _check_ssm_shapes(A, B)
    deltas = _validate.positive("deltas", jnp.asarray(deltas, dtype))
    if deltas.ndim != 1:
        raise ValueError(f"`deltas` must have shape (K,); got {deltas.shape}.")
    return jax.vmap(zoh, in_axes=(None, None, 0))(A, B, deltas)


def _per_step(name: str, M: Array, K: int, ndim: int) -> Array:
    """Broadcast a time-invariant matrix to K steps, or check a per-step stack."""
    if M.ndim == ndim:
        return jnp.broadcast_to(M, (K,) + M.shape)
    if M.ndim == ndim + 1 and M.shape[0] == K:
        return M
    raise ValueError(
        f"`{name}` must be one matrix or a stack of K = {K} per-step matrices; got {M.shape}."
    )


def ssm_scan(
    A_bar: Float[Array, "n n"] | Float[Array, "K n n"],
    B_bar: Float[Array, "n m"] | Float[Array, "K n m"],
    x0: Float[Array, " n"],
    us: Float[Array, "K m"],
) -> Float[Array, "K+1 n"]:
    r"""Discrete linear SSM ``x_{k+1} = Ā_k x_k + B̄_k u_k`` (Prop 5.4(b)).

    With ``(Ā, B̄) = zoh(A, B, Δ)`` this is the exact solution at times ``kΔ`` of
    ``ẋ = Ax + Bu`` with the input held constant on each step; with per-step matrices
    from :func:`selective_zoh` it is the selective (input-dependent Δ) scan.

    Args:
        A_bar: ``(n, n)`` or per-step ``(K, n, n)``.
        B_bar: ``(n, m)`` or per-step ``(K, n, m)``.
        x0: initial state ``(n,)``.
        us: inputs ``(K, m)``.

    Returns:
        ``xs (K + 1, n)`` with ``xs[0] = x0``.

    Example:
        >>> import jax.numpy as jnp
        >>> ssm_scan(jnp.eye(1), jnp.ones((1, 1)), jnp.zeros(1), jnp.ones((3, 1)))[:, 0].tolist()
        [0.0, 1.0, 2.0, 3.0]
    """
    K = us.shape[0]
    A_bar = _per_step("A_bar", A_bar, K, 2)
    B_bar = _per_step("B_bar", B_bar, K, 2)

    def step(x, inputs):
        A_k, B_k, u_k = inputs
        x_next = A_k @ x + B_k @ u_k
        return x_next, x_next

    _, xs = jax.lax.scan(step, x0, (A_bar, B_bar, us))
    return jnp.concatenate([x0[None], xs], axis=0)


def ssm_costate(
    A_bar: Float[Array, "n n"] | Float[Array, "K n n"],
    B_bar: Float[Array, "n m"] | Float[Array, "K n m"],
    p_final: Float[Array, " n"],
    num_steps: int,
) -> tuple[Float[Array, "nodes n"], Float[Array, "steps m"]]:
    r"""Co-state of the discrete SSM: ``p_k = Ā_kᵀ p_{k+1}``, ``∂Φ/∂u_k = B̄_kᵀ p_{k+1}``.

    The discrete Hamiltonian ``H_k = pᵀ(Ā_k x + B̄_k u)`` gives ``p_k = ∂_x H_k(p_{k+1})``:
    with ``p_K = ∇Φ(x_K)`` this is backpropagation through :func:`ssm_scan`
    (THEORY §7, Prop 5.4(b)); in continuous time ``ṗ = −Aᵀp``.

    Args:
        A_bar: ``(n, n)`` or per-step ``(K, n, n)``.
        B_bar: ``(n, m)`` or per-step ``(K, n, m)``.
        p_final: ``∇Φ(x_K)``, ``(n,)``.
        num_steps: K.

    Returns:
        ``(ps (K + 1, n), grad_us (K, m))`` with ``ps[k] = ∂Φ/∂x_k``.

    Example:
        >>> import jax.numpy as jnp
        >>> ps, _ = ssm_costate(2 * jnp.eye(1), jnp.ones((1, 1)), jnp.ones(1), 2)
        >>> ps[:, 0].tolist()
        [4.0, 2.0, 1.0]
    """
    A_bar = _per_step("A_bar", A_bar, num_steps, 2)
    B_bar = _per_step("B_bar", B_bar, num_steps, 2)

    def step(p_next, mats):
        A_k, B_k = mats
        return A_k.T @ p_next, (A_k.T @ p_next, B_k.T @ p_next)

    _, (ps, grad_us) = jax.lax.scan(step, p_final, (A_bar, B_bar), reverse=True)
    return jnp.concatenate([ps, p_final[None]], axis=0), grad_us


def tropical_ssm_scan(
    A: Float[ArrayLike, "n n"],
    B: Float[ArrayLike, "n m"],
    x0: Float[ArrayLike, " n"],
    us: Float[ArrayLike, "K m"],
    eps: ScalarLike = 0.0,
) -> Float[Array, "K+1 n"]:
    r"""Tropical SSM ``x_{k+1} = A ⊗ x_k ⊕ B ⊗ u_k`` and its eps-deformation (Prop 5.4(b)).

    .. math::

        x_{k+1,i} = \mathrm{lse}_\varepsilon\big(\{A_{ij} + x_{k,j}\}_j \cup
                                              \{B_{il} + u_{k,l}\}_l\big)

    (max-plus at eps = 0: the max-plus linear systems of scheduling and discrete-event
    systems). ``⊕_eps`` is associative, so this is ``[A B] ⊗ [x; u]`` with
    :func:`hjax.semiring.maxplus_matmul`. By the Maslov sandwich and the sup-norm
    non-expansiveness of max-plus linear maps, ``0 ≤ x^eps_k − x^0_k ≤ k eps log(n + m)``
    (``n + m`` finite terms per row); ``-inf`` entries are the semiring zero.

    Args:
        A: max-plus state matrix ``(n, n)``.
        B: max-plus input matrix ``(n, m)``.
        x0: initial state ``(n,)``.
        us: inputs ``(K, m)``.
        eps: temperature ``>= 0`` (may be traced; 0 = tropical).

    Returns:
        ``xs (K + 1, n)``.

    Example:
        >>> import jax.numpy as jnp
        >>> A = jnp.array([[0.0, -1.0], [-1.0, 0.0]]); B = jnp.zeros((2, 1))
        >>> tropical_ssm_scan(A, B, jnp.array([1.0, 0.0]), jnp.zeros((1, 1)))[1].tolist()
        [1.0, 0.0]
    """
    dtype = _validate.float_dtype(A, B, x0, us)
    A, B, x0, us = (jnp.asarray(a, dtype) for a in (A, B, x0, us))
    _check_ssm_shapes(A, B)
    if x0.shape != A.shape[:1]:
        raise ValueError(f"`x0` must have shape ({A.shape[0]},) to match `A`; got {x0.shape}.")
    if us.ndim != 2 or us.shape[1] != B.shape[1]:
        raise ValueError(f"`us` must have shape (K, {B.shape[1]}) to match `B`; got {us.shape}.")
    eps = _validate.nonnegative_scalar("eps", eps, dtype)
    AB = jnp.concatenate([A, B], axis=1)

    def step(x, u):
        x_next = maxplus_matmul(AB, jnp.concatenate([x, u])[:, None], eps)[:, 0]
        return x_next, x_next

    _, xs = jax.lax.scan(step, x0, us)
    return jnp.concatenate([x0[None], xs], axis=0)


# --------------------------------------------------------------------------------------
# LSTM (Remark 5.5)
# --------------------------------------------------------------------------------------


class LSTMCell(eqx.Module):
    """LSTM parameters, gates stacked in the order (forget, input, output, cell)."""

    W: Float[Array, "4 d d"]
    U: Float[Array, "4 d m"]
    b: Float[Array, "4 d"]


def lstm_gates(
    h: Float[Array, " d"], theta: LSTMCell, u: Float[Array, " m"], eps: ScalarLike = 1.0
) -> tuple[Float[Array, " d"], Float[Array, " d"], Float[Array, " d"], Float[Array, " d"]]:
    r"""LSTM gates ``f, i, o = σ(z/eps)`` and cell candidate ``g̃ = tanh(z/eps)`` (Remark 5.5).

    ``z_· = W_· h + U_· u + b_·``. Each gate is :func:`gate`, the gradient of the
    two-neuron LSE layer ``lse([0, z], eps)``; ``tanh(z/eps) = 2σ(2z/eps) − 1``. At
    eps = 1 this is the standard LSTM; at eps = 0 the gates are Heaviside selectors
    and ``g̃ = sign`` (the max-plus switching automaton).

    Returns:
        ``(f, i, o, g̃)``, each ``(d,)``.
    """
    z = theta.W @ h + theta.U @ u + theta.b  # (4, d)
    sig = gate(z[:3], eps)
    g_tilde = 2 * gate(2 * z[3], eps) - 1
    return sig[0], sig[1], sig[2], g_tilde


def lstm_field(
    h: Float[Array, " d"],
    c: Float[Array, " d"],
    theta: LSTMCell,
    u: Float[Array, " m"],
    eps: ScalarLike = 1.0,
) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
    r"""Continuous-time LSTM: ``ḣ = o ⊙ tanh(c) − h``, ``ċ = (f − 1) ⊙ c + i ⊙ g̃``.

    Remark 5.5: gated, time-dependent characteristics of
    ``H = p_h · ḣ + p_c · ċ``, gates evaluated at ``(h, u(t))`` (:func:`lstm_gates`;
    ``tanh`` deformed as ``tanh(·/eps)``). The discrete LSTM is the unit step of the
    partitioned Euler scheme (cell first, then the hidden state with the new cell):
    ``c_{k+1} = c_k + ċ = f ⊙ c_k + i ⊙ g̃``, ``h_{k+1} = o ⊙ tanh(c_{k+1})``.

    Returns:
        ``(ḣ, ċ)``, each ``(d,)``.
    """
    return _lstm_rates(lstm_gates(h, theta, u, eps), h, c, eps)


def _lstm_rates(gates, h: Array, c: Array, eps: ScalarLike) -> tuple[Array, Array]:
    f, i, o, g_tilde = gates
    return o * (2 * gate(2 * c, eps) - 1) - h, (f - 1) * c + i * g_tilde


def lstm_scan(
    theta: LSTMCell,
    h0: Float[Array, " d"],
    c0: Float[Array, " d"],
    us: Float[Array, "K m"],
    eps: ScalarLike = 1.0,
) -> tuple[Float[Array, "K+1 d"], Float[Array, "K+1 d"]]:
    r"""LSTM over a sequence as unit-step partitioned Euler of :func:`lstm_field`.

    Step k: ``c_{k+1} = c_k + ċ(h_k, c_k, u_k)``, then
    ``h_{k+1} = h_k + ḣ(h_k, c_{k+1}, u_k)`` (gates frozen at ``(h_k, u_k)``), which is
    the textbook update ``c_{k+1} = f ⊙ c_k + i ⊙ g̃``, ``h_{k+1} = o ⊙ tanh(c_{k+1})``
    (Remark 5.5).

    Returns:
        ``(hs, cs)``, each ``(K + 1, d)``.

    Example:
        >>> import jax.numpy as jnp
        >>> th = LSTMCell(jnp.zeros((4, 1, 1)), jnp.zeros((4, 1, 1)), jnp.zeros((4, 1)))
        >>> hs, cs = lstm_scan(th, jnp.zeros(1), jnp.ones(1), jnp.zeros((1, 1)))
        >>> float(cs[1, 0])
        0.5
    """

    def step(state, u):
        h, c = state
        gates = lstm_gates(h, theta, u, eps)
        _, dc = _lstm_rates(gates, h, c, eps)
        c_next = c + dc
        dh, _ = _lstm_rates(gates, h, c_next, eps)
        h_next = h + dh
        return (h_next, c_next), (h_next, c_next)

    _, (hs, cs) = jax.lax.scan(step, (h0, c0), us)
    return jnp.concatenate([h0[None], hs]), jnp.concatenate([c0[None], cs])


# --------------------------------------------------------------------------------------
# Characteristics of the HJ equation (§6)
# --------------------------------------------------------------------------------------


def quadratic_characteristics(
    g: Callable[[Array], Array],
    y: Float[ArrayLike, "*batch d"],
    t: ScalarLike,
    *,
    A: Float[ArrayLike, "d d"] | None = None,
) -> tuple[Float[Array, "*batch d"], Float[Array, "*batch d"], Float[Array, "*batch"]]:
    r"""Characteristics of ``∂_t u + ½∇uᵀA∇u = 0``: straight lines (THEORY §6).

    From the foot ``y`` with ``p₀ = ∇g(y)``, Hamilton's equations for ``H = ½pᵀAp``
    give ``ṗ = 0`` and ``ẋ = Ap``, and the action ``u̇ = p·ẋ − H = ½pᵀAp``:

    .. math::

        x(t) = y + tA\nabla g(y), \quad p \equiv \nabla g(y), \quad
        u(x(t), t) = g(y) + \tfrac{t}{2}\nabla g(y)^\top A \nabla g(y).

    Before characteristics cross (always, for convex g) ``u`` is the Hopf–Lax value
    ``min_z [c_t(x, z) + g(z)]`` (Thm 5.1).

    Args:
        g: initial datum ``g(y)`` for one point ``(d,) -> ()``.
        y: feet of the characteristics ``(*batch, d)``.
        t: time ``>= 0`` (may be traced).
        A: Hamiltonian metric ``(d, d)``, symmetric positive definite (default I).

    Returns:
        ``(x, p, u)`` of shapes ``(*batch, d)``, ``(*batch, d)``, ``(*batch,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> x, p, u = quadratic_characteristics(lambda y: 0.5 * y @ y, jnp.ones(1), 2.0)
        >>> x.tolist(), p.tolist(), float(u)
        ([3.0], [1.0], 1.5)
    """
    dtype = _validate.float_dtype(y)
    y = jnp.asarray(y, dtype)
    if y.ndim < 1:
        raise ValueError(f"`y` must have shape (*batch, d); got a scalar {y.shape}.")
    t = _validate.nonnegative_scalar("t", t, dtype)
    g_val, p = jnp.vectorize(jax.value_and_grad(g), signature="(d)->(),(d)")(y)
    if A is None:
        Ap = p
    else:
        A = _validate.positive_definite("A", jnp.asarray(A, dtype), y.shape[-1])
        Ap = p @ A.T
    return y + t * Ap, p, g_val + t / 2 * jnp.sum(p * Ap, axis=-1)


def hamiltonian_characteristics(
    H: Callable[[Array, Array], Array],
    g: Callable[[Array], Array],
    y: Float[ArrayLike, " d"],
    ts: Float[ArrayLike, " T"],
    *,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 4096,
    adjoint: diffrax.AbstractAdjoint | None = None,
) -> tuple[Float[Array, "T d"], Float[Array, "T d"], Float[Array, " T"]]:
    r"""Characteristics of ``∂_t u + H(x, ∇u) = 0`` for a general H, solved with diffrax.

    Hamilton's equations with the action (THEORY §6, Prop 5.2), derivatives of the
    user's ``H`` by autodiff:

    .. math::

        \dot x = \partial_p H, \quad \dot p = -\partial_x H, \quad
        \dot u = p\cdot\partial_p H - H, \qquad
        x(0) = y,\; p(0) = \nabla g(y),\; u(0) = g(y).

    ``H`` is conserved along the flow; before characteristics cross, ``u(x(t), t)`` is
    the solution (for H convex in p, the Hopf–Lax value with Lagrangian ``H*``).

    Args:
        H: Hamiltonian ``H(x, p) -> ()`` for ``x, p`` of shape ``(d,)``.
        g: initial datum ``(d,) -> ()``.
        y: foot of the characteristic ``(d,)`` (vmap over feet).
        ts: increasing save times ``(T,)``, ``ts >= 0`` (the flow starts at t = 0).
        solver: a diffrax solver (default ``Tsit5()``).
        rtol, atol: tolerances of the adaptive ``PIDController``.
        max_steps: diffrax's step budget.
        adjoint: diffrax adjoint for gradients (default ``RecursiveCheckpointAdjoint``).

    Returns:
        ``(xs (T, d), ps (T, d), us (T,))`` at ``ts``.

    Example:
        >>> import jax.numpy as jnp
        >>> H = lambda x, p: 0.5 * p @ p
        >>> g = lambda y: y @ y
        >>> xs, ps, us = hamiltonian_characteristics(H, g, jnp.ones(1), jnp.array([1.0]))
        >>> round(float(xs[0, 0]), 6)
        3.0
    """
    dtype = _validate.float_dtype(y, ts)
    y = jnp.asarray(y, dtype)
    ts = jnp.asarray(ts, dtype)
    if y.ndim != 1:
        raise ValueError(f"`y` must have shape (d,) (vmap over feet); got {y.shape}.")
    if ts.ndim != 1 or ts.shape[0] < 1:
        raise ValueError(f"`ts` must have shape (T,) with T >= 1; got {ts.shape}.")
    ts = _validate.nonnegative("ts", ts)

    def vector_field(t, state, args):
        x, p, _ = state
        H_val, (H_x, H_p) = jax.value_and_grad(H, argnums=(0, 1))(x, p)
        return H_p, -H_x, jnp.vdot(p, H_p) - H_val

    g0, p0 = jax.value_and_grad(g)(y)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        diffrax.Tsit5() if solver is None else solver,
        t0=jnp.zeros((), dtype),
        t1=ts[-1],
        dt0=None,
        y0=(y, p0, g0),
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
        adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint,
    )
    xs, ps, us = sol.ys
    return xs, ps, us
