r"""Attribution geometry: the entropy of the Gibbs weights and its critical points (§8, App. F).

The Gibbs weights of an LSE layer ``f_eps(x) = lse(Wx + b, eps)`` read as an attribution
(Prop F.1): ``π_j(x) = gibbs(Wx + b, eps)_j`` is the share of atom (training point) j in the
output at x. Its Shannon entropy, the *attribution entropy*

.. math::

    H(x) = -\sum_j \pi_j(x) \log \pi_j(x) \in [0, \log N],

is 0 where one atom explains x (the particle regime, eps → 0 away from ties) and log N where
all atoms share it (the wave regime, eps → ∞). With ``z = Wx + b``, ``∂π_j/∂x =
π_j (W_j − W̄)/eps`` (``W̄ = E_π[W]``) and ``log π_j = z_j/eps − log Z`` give the closed forms
(Gibbs moments; Prop F.1(iii), eq. (38); THEORY §8)

.. math::

    \nabla H = -\frac{1}{\varepsilon}\,\mathrm{Cov}_\pi(W, \log\pi)
             = -\frac{1}{\varepsilon^2}\,\mathrm{Cov}_\pi(W, z), \qquad
    \nabla^2 H = -\frac{1}{\varepsilon^2} \sum_j \pi_j\, (W_j - \bar W)(W_j - \bar W)^\top
                 \Big(1 + \frac{z_j - \bar z}{\varepsilon}\Big),

the Hessian by differentiating the covariance once more: ``∂_x Cov_π(W, z) = Cov_π(W) +
κ₃(W, z, W)/eps`` (``κ₃`` the third central moment). In the Hopf–Cole reading (THEORY §3)
the weights are the heat-kernel weights of the atoms ``y_j`` and ``W_j − W̄ = A⁻¹(y_j −
ȳ)/t``, so ``∇H = −A⁻¹ Cov_π(y, z)/(eps² t)``: the same function, since ``z`` and the
Hopf–Cole logits differ by a term common to all atoms.

**Accuracy.** Everything is computed from logits shifted by the dominant atom k (``s_j =
z_j − z_k <= 0``), as ``H = log1p(Σ_{j≠k} π_j / π_k) + Σ_j π_j (−s_j)/eps`` (a sum of two
non-negative terms) and centred moments whose every term carries a factor ``π_j`` or
``(Σ_{j≠k} π_j)²``: H, ∇H and ∇²H keep full *relative* precision where π is nearly one-hot
(H ~ 1e-40 is computed to round-off, not to 1e-16 absolute), which is what lets a Newton
step tell a genuine minimum deep in an attribution basin from a one-hot plateau.

**eps = 0** (exact): π is uniform over the argmax set, ``H = log k`` on a k-fold tie (0 off
ties); ∇H and ∇²H are 0 there (H is piecewise constant). Masked atoms (``b_j = -inf``) carry
no weight. eps is an array leaf: sweeps over eps never recompile.

**Critical points and folds** (Thm 8.9). :func:`entropy_critical_points` finds critical
points of H by batched Newton steps on ``∇H = 0`` with the closed-form Hessian and rejects
*plateau points* — where ``|∇H|`` is tiny only because π is one-hot, not because x is near a
root — saying why (:class:`CandidateVerdict`). :func:`trace_entropy_branches` follows them
in eps by pseudo-arclength continuation in ``(x, log eps)`` (predictor–corrector on
``eps²∇H = 0``, the eps-derivative ``∂(eps²∇H)/∂log eps = κ₃(W, z, z)/eps`` in closed form
too), through folds, and locates every fold (a sign change of ``det ∇²H`` along the branch)
by bisection refined by Newton's method on the extended system ``(∇H, det ∇²H) = 0``
(:class:`EntropyFold`). :func:`critical_points_at` slices the branches at a given eps.
"""

import dataclasses
import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _kernels, _validate
from ._types import Array, ArrayLike, Bool, Float, Int, ScalarLike
from .layers import _layer, _layer_params

__all__ = [
    "CandidateVerdict",
    "CriticalPointSearch",
    "EntropyBranch",
    "EntropyCriticalPoint",
    "EntropyFold",
    "attribution_entropy",
    "attribution_entropy_grad",
    "attribution_entropy_hessian",
    "classify_candidate",
    "critical_points_at",
    "entropy_critical_points",
    "hopf_cole_entropy",
    "trace_entropy_branches",
]


# --------------------------------------------------------------------------------------
# Kernels (no validation): logits z (*batch, N), W (N, d), eps a 0-d array >= 0
# --------------------------------------------------------------------------------------


def _dominant(z: Array) -> tuple[Array, Array]:
    """``(one-hot of one argmax atom, shifted logits s = z − max z <= 0)``; -inf stays."""
    k = jnp.argmax(z, axis=-1)
    onehot = jax.nn.one_hot(k, z.shape[-1], dtype=bool)
    _, m_fin = _kernels._shifted_max(z)
    return onehot, z - m_fin


def _entropy_kernel(z: Array, eps: Array) -> Array:
    r"""``H = log1p(Σ_{j≠k} π_j/π_k) + Σ_j π_j (−s_j)/eps``, full relative precision.

    ``log Z = log Σ_j e^{s_j/eps} = −log π_k = log1p(Σ_{j≠k} π_j/π_k)``, and ``−log π_j =
    log Z − s_j/eps``; the two terms are non-negative, so nothing cancels. At ``eps = 0``
    the second term vanishes (``π_j > 0`` only where ``s_j = 0``) and the first is log k.
    """
    pi = _kernels.gibbs_last(z, eps)
    onehot, s = _dominant(z)
    pi_k = jnp.sum(jnp.where(onehot, pi, jnp.zeros_like(pi)), axis=-1)
    rest = jnp.sum(jnp.where(onehot, jnp.zeros_like(pi), pi), axis=-1)
    active = pi > 0  # masked atoms: s = -inf, never multiplied (no 0 · inf, in value or JVP)
    energy = pi * -jnp.where(active, s, jnp.zeros_like(s))
    return jnp.log1p(rest / pi_k) + jnp.sum(energy, axis=-1) / _kernels.safe(eps)


def _frame(z: Array, W: Array) -> tuple[Array, Array]:
    r"""``(Q, C)``: an orthonormal frame adapted to the two leading atoms, and the frame
    coordinates ``C_j = Qᵀ(W_j − W_k)`` (k the dominant atom).

    ``Q`` is the Householder reflection whose first column is ``±(W_i − W_k)/|W_i − W_k|``
    (i the runner-up): across an attribution boundary between k and i the curvature of H is
    ``∝ 1/eps²`` and along it ``∝ e^{-Δ/eps}``; summed in x-coordinates the small one drowns in
    the round-off of the large one. In this frame the runner-up's coordinates are set to
    ``(∓|W_i − W_k|, 0, …, 0)`` exactly, so every term of the moments below keeps its
    relative precision and the Hessian's small eigenvalue is resolved. ``Q = I`` when
    ``W_i = W_k`` (or N = 1).
    """
    d = W.shape[-1]
    k = jnp.argmax(z, axis=-1)
    i = jnp.argmax(jnp.where(jax.nn.one_hot(k, z.shape[-1], dtype=bool), -jnp.inf, z), axis=-1)
    a_all = W - W[k][..., None, :]  # (*batch, N, d): W_j − W_k
    a = W[i] - W[k]
    norm = jnp.linalg.norm(a, axis=-1, keepdims=True)
    distinct = norm > 0
    e = a / jnp.where(distinct, norm, jnp.ones_like(norm))
    sign = jnp.where(e[..., :1] >= 0, 1.0, -1.0).astype(W.dtype)
    v = e + sign * jnp.eye(d, dtype=W.dtype)[0]
    reflect = (
        jnp.eye(d, dtype=W.dtype)
        - 2 * v[..., :, None] * v[..., None, :] / jnp.sum(v * v, axis=-1)[..., None, None]
    )
    Q = jnp.where(distinct[..., None], reflect, jnp.eye(d, dtype=W.dtype))
    C = jnp.einsum("...dk,...nd->...nk", Q, a_all)
    runner_up = jnp.concatenate([-sign * norm, jnp.zeros_like(a[..., 1:])], axis=-1)
    is_i = jax.nn.one_hot(i, z.shape[-1], dtype=bool)[..., None] & distinct[..., None]
    return Q, jnp.where(is_i, runner_up[..., None, :], C)


def _centred(z: Array, W: Array, eps: Array) -> tuple[Array, Array, Array, Array]:
    """``(π, Q, Qᵀ(W_j − W̄), z_j − z̄)``, centred through the dominant atom (module doc).

    Shapes ``(*batch, N)``, ``(*batch, d, d)``, ``(*batch, N, d)``, ``(*batch, N)``; masked
    atoms (π_j = 0) get a centred logit of 0, so no ``0 · inf`` is formed.
    """
    pi = _kernels.gibbs_last(z, eps)
    _, s = _dominant(z)
    s = jnp.where(pi > 0, s, jnp.zeros_like(s))
    Q, C = _frame(z, W)
    c_bar = jnp.einsum("...n,...nd->...d", pi, C)
    s_bar = jnp.sum(pi * s, axis=-1, keepdims=True)
    return pi, Q, C - c_bar[..., None, :], s - s_bar


def _moments(z: Array, W: Array, eps: Array) -> tuple[Array, Array, Array, Array]:
    r"""``(Q, g, K, L)`` in the frame Q (x-coordinates: ``Qg``, ``QKQᵀ``, ``QL``):

    * ``g = eps²∇H = −Cov_π(W, z) = −Σ_j π_j δW_j δz_j``;
    * ``K = eps²∇²H = −Σ_j π_j δW_j δW_jᵀ (1 + δz_j/eps)``;
    * ``L = ∂(eps²∇H)/∂log eps = κ₃(W, z, z)/eps = Σ_j π_j δW_j δz_j²/eps`` (x fixed), from
      ``∂π_j/∂eps = −π_j δz_j/eps²`` (the centring terms drop out of a centred moment).
    """
    pi, Q, dW, dz = _centred(z, W, eps)
    safe = _kernels.safe(eps)
    g = -jnp.einsum("...n,...nd->...d", pi * dz, dW)
    K = -jnp.einsum("...n,...ni,...nj->...ij", pi * (1 + dz / safe), dW, dW)
    L = jnp.einsum("...n,...nd->...d", pi * dz * dz, dW) / safe
    return Q, g, K, L


def _to_x(Q: Array, v: Array) -> Array:
    """Frame → x coordinates of vectors ``(..., d)``."""
    return jnp.einsum("...ij,...j->...i", Q, v)


def _at_positive_eps(value: Array, eps: Array) -> Array:
    """``value`` where eps > 0, else 0 (H is piecewise constant at eps = 0)."""
    return jnp.where(eps > 0, value, jnp.zeros_like(value))


# --------------------------------------------------------------------------------------
# Public closed forms
# --------------------------------------------------------------------------------------


def _some_unit_active(b: Array) -> Array:
    """Reject biases that mask every unit: the zero measure has no Gibbs weights."""
    message = "`b` masks every unit (all -inf): the attribution entropy is undefined"
    if _validate.is_traced(b):
        return eqx.error_if(b, jnp.all(b == -jnp.inf), message)
    if np.all(np.asarray(b) == -np.inf):
        raise ValueError(message + "; keep at least one unit with a finite bias.")
    return b


def _layer_logits(x, W, b, eps):
    """Validated ``(z = Wx + b, W, eps)`` of a layer call with at least one active unit."""
    x, W, b, eps, _ = _layer(x, W, b, eps)
    return _kernels.affine_logits(x, W, _some_unit_active(b)), W, eps


def attribution_entropy(
    x: Float[ArrayLike, "*batch d"],
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    eps: ScalarLike,
) -> Float[Array, "*batch"]:
    r"""Attribution entropy ``H(x) = −Σ_j π_j(x) log π_j(x)`` of an LSE layer (Prop F.1, §8).

    ``π(x) = gibbs(Wx + b, eps)`` (:func:`hjax.lse_layer_gibbs`); ``0 <= H <= log N_active``.
    Exact at ``eps = 0``: ``log k`` on a k-fold tie of the max, 0 off ties. Masked units
    (``b_j = -inf``) carry no weight. Computed with full relative precision where π is
    nearly one-hot (module docstring). It is also ``∂f_eps/∂eps``.

    Args:
        x: inputs ``(*batch, d)``.
        W: weights ``(N, d)``.
        b: biases ``(N,)`` (``-inf`` masks a unit; at least one must be finite).
        eps: temperature ``>= 0`` (traced: sweeps compile once).

    Returns:
        ``H(x)`` of shape ``(*batch,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> W = jnp.array([[1.0], [-1.0]])
        >>> round(float(attribution_entropy(jnp.array([0.0]), W, jnp.zeros(2), 0.0)), 6)
        0.693147
    """
    z, _, eps = _layer_logits(x, W, b, eps)
    return _entropy_kernel(z, eps)


def attribution_entropy_grad(
    x: Float[ArrayLike, "*batch d"],
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    eps: ScalarLike,
) -> Float[Array, "*batch d"]:
    r"""Closed-form ``∇_x H`` of the attribution entropy (Prop F.1(iii), eq. (38)).

    .. math::

        \nabla H(x) = -\frac{1}{\varepsilon}\,\mathrm{Cov}_{\pi}(W, \log\pi)
                    = -\frac{1}{\varepsilon^2} \sum_j \pi_j (W_j - \bar W)(z_j - \bar z),
        \qquad z = Wx + b .

    0 at ``eps = 0`` (H is piecewise constant there).

    Args:
        x: inputs ``(*batch, d)``; W: ``(N, d)``; b: ``(N,)``; eps: ``>= 0``.

    Returns:
        ``∇H`` of shape ``(*batch, d)``.

    Example:
        >>> import jax.numpy as jnp
        >>> W = jnp.array([[1.0], [-1.0]])
        >>> attribution_entropy_grad(jnp.array([0.0]), W, jnp.zeros(2), 1.0).tolist()
        [0.0]
    """
    z, W, eps = _layer_logits(x, W, b, eps)
    Q, g, _, _ = _moments(z, W, eps)
    return _to_x(Q, g) / _kernels.safe(eps) ** 2


def attribution_entropy_hessian(
    x: Float[ArrayLike, "*batch d"],
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    eps: ScalarLike,
) -> Float[Array, "*batch d d"]:
    r"""Closed-form Hessian ``∇²_x H`` of the attribution entropy (Thm 8.9's ``∇²H``).

    .. math::

        \nabla^2 H(x) = -\frac{1}{\varepsilon^2}\Big(\mathrm{Cov}_\pi(W)
            + \frac{\kappa_3(W, z, W)}{\varepsilon}\Big)
          = -\frac{1}{\varepsilon^2}\sum_j \pi_j (W_j - \bar W)(W_j - \bar W)^\top
            \Big(1 + \frac{z_j - \bar z}{\varepsilon}\Big).

    0 at ``eps = 0`` (the almost-everywhere Hessian of a piecewise constant function).

    Args:
        x: inputs ``(*batch, d)``; W: ``(N, d)``; b: ``(N,)``; eps: ``>= 0``.

    Returns:
        ``∇²H`` of shape ``(*batch, d, d)``, symmetric.

    Example:
        >>> import jax.numpy as jnp
        >>> W = jnp.array([[1.0], [-1.0]])  # two atoms: H'' = −1/eps² at the tie x = 0
        >>> attribution_entropy_hessian(jnp.array([0.0]), W, jnp.zeros(2), 0.5).tolist()
        [[-4.0]]
    """
    z, W, eps = _layer_logits(x, W, b, eps)
    Q, _, K, _ = _moments(z, W, eps)
    hessian = jnp.einsum("...ij,...jk,...lk->...il", Q, K, Q) / _kernels.safe(eps) ** 2
    return _at_positive_eps(hessian, eps)


def hopf_cole_entropy(
    x: Float[ArrayLike, "*batch d"],
    y: Float[ArrayLike, "N d"],
    g: Float[ArrayLike, " N"],
    t: ScalarLike,
    eps: ScalarLike,
    *,
    log_w: Float[ArrayLike, " N"] | None = None,
    A: Float[ArrayLike, "d d"] | None = None,
) -> Float[Array, "*batch"]:
    r"""Attribution entropy in the Hopf–Cole reading: the entropy of the heat-kernel weights.

    .. math::

        H(x) = -\sum_j \pi_j \log \pi_j, \qquad
        \pi_j(x) \propto w_j \exp\!\Big(-\frac{c_t(x, y_j) + g_j}{\varepsilon}\Big)
        \quad (\text{THEORY §3, Prop E.6}),

    equal to :func:`attribution_entropy` of ``hj_to_lse(y, g, t, A=A, log_w=log_w, eps=eps)``
    (the logits differ by ``xᵀA⁻¹x/(2t)``, common to all atoms). Its derivatives are those
    of that layer (:func:`attribution_entropy_grad`, :func:`attribution_entropy_hessian`),
    ``∇H = −A⁻¹ Cov_π(y, z)/(eps² t)``.

    Args:
        x: query points ``(*batch, d)``.
        y: atoms ``(N, d)``.
        g: initial values ``(N,)``.
        t: time ``> 0``.
        eps: viscosity ``>= 0`` (traced: sweeps compile once).
        log_w: log-weights ``(N,)``; ``-inf`` masks an atom (at least one must stay active).
        A: symmetric positive-definite metric ``(d, d)`` (default identity).

    Returns:
        ``H(x)`` of shape ``(*batch,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> y = jnp.array([[-1.0], [1.0]])
        >>> round(float(hopf_cole_entropy(jnp.array([0.0]), y, jnp.zeros(2), 1.0, 0.3)), 6)
        0.693147
    """
    x, y, g, t, A, log_w, dtype = _validate.hj_inputs(x, y, g, t, A=A, log_w=log_w)
    eps = _validate.nonnegative_scalar("eps", eps, dtype)
    chol, _ = _kernels.metric(A, dtype)
    z = _kernels.tilt(_kernels.hj_logits(x, y, g, t, chol), eps, _validate.some_atom_active(log_w))
    return _entropy_kernel(z, eps)


# --------------------------------------------------------------------------------------
# Typed results
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class _Frozen:
    """Base of the results: NumPy fields are copied and made read-only."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.ndarray):
                value = np.array(value)
                value.flags.writeable = False
                object.__setattr__(self, field.name, value)


_KINDS = {0: "minimum", 1: "saddle"}


def _kind(index: int, d: int) -> str:
    """Morse index → name: minimum (0), maximum (d), saddle (index 1 in d = 2)."""
    if index == d and d > 0:
        return "maximum"
    if index == 0 or d == 2:
        return _KINDS[min(index, 1)]
    return f"index-{index} saddle"


@dataclasses.dataclass(frozen=True, eq=False)
class EntropyCriticalPoint(_Frozen):
    """A critical point of H at one eps, confirmed by a converged Newton iteration.

    Attributes:
        x: location ``(d,)``.
        eps: the temperature.
        entropy: ``H(x)``.
        eigenvalues: of ``∇²H(x)``, ascending ``(d,)``.
        index: Morse index, the number of negative eigenvalues of ``∇²H``; where the
            Hessian is not resolved in float64 (below), inherited along the branch.
        resolved: whether float64 resolves every eigenvalue's sign: condition number of
            ``∇²H`` below ``1e12`` (near a long attribution boundary the curvature along it
            is ``∝ e^{-Δ/eps}``: at small eps it drops below the round-off of the other).
        newton_step: length of the last Newton step (the distance to the root, to first
            order): ``<= tol`` for an accepted point.
        branch: index of the branch it lies on (:func:`critical_points_at`), or -1.
    """

    x: Float[np.ndarray, " d"]
    eps: float
    entropy: float
    eigenvalues: Float[np.ndarray, " d"]
    index: int
    resolved: bool
    newton_step: float
    branch: int = -1

    @property
    def kind(self) -> str:
        """``minimum``, ``saddle`` or ``maximum`` (by the Morse index)."""
        return _kind(self.index, self.x.shape[0])


@dataclasses.dataclass(frozen=True, eq=False)
class CandidateVerdict(_Frozen):
    """Whether a candidate point is a critical point of H, and why (the plateau test).

    A *plateau point* has a tiny gradient only because π is one-hot there
    (``1 − max_j π_j`` tiny): a residual test ``|∇H| < tol`` accepts it, but it is not near
    a root — the Newton step ``|(∇²H)⁻¹∇H|`` is of order eps, not 0, and Newton's method
    started there does not converge to a point nearby.

    Attributes:
        x: the candidate ``(d,)``.
        eps: the temperature.
        gradient_norm: ``|∇H(x)|``.
        one_hot_defect: ``1 − max_j π_j(x)`` (0 would be exactly one-hot).
        newton_step: ``|(∇²H)⁻¹ ∇H|`` at x.
        root_distance: distance from x to the root Newton's method converges to from x
            (``inf`` if it does not converge).
        is_critical: whether x is a critical point (``root_distance <= radius``).
        reason: a sentence saying why.
    """

    x: Float[np.ndarray, " d"]
    eps: float
    gradient_norm: float
    one_hot_defect: float
    newton_step: float
    root_distance: float
    is_critical: bool
    reason: str


@dataclasses.dataclass(frozen=True, eq=False)
class CriticalPointSearch(_Frozen):
    """Multi-start Newton search for the critical points of H at one eps.

    Attributes:
        eps: the temperature.
        points: the distinct accepted critical points, inside the box.
        n_starts: number of starting points.
        n_converged: starts whose Newton iteration converged (inside the box).
        n_plateau: starts that ended on a one-hot plateau (``|∇H| <= plateau_tol`` but no
            converged root): what a residual test would have counted.
        n_other: starts that diverged or left the box.
    """

    eps: float
    points: tuple[EntropyCriticalPoint, ...]
    n_starts: int
    n_converged: int
    n_plateau: int
    n_other: int


@dataclasses.dataclass(frozen=True, eq=False)
class EntropyFold(_Frozen):
    """A fold (saddle-node) of the critical points of H, located on a branch (Thm 8.9).

    At the fold ``∇H = 0`` and ``det ∇²H = 0`` (one zero eigenvalue); along the branch,
    ``det ∇²H`` changes sign: the two critical points that merge have Morse indices
    differing by one.

    Attributes:
        eps: the fold's temperature: the bisection point (on the branch, to 1e-11 of
            arclength) where ``det ∇²H`` changes sign.
        x: the fold's location ``(d,)``.
        eps_uncertainty: ``|eps − eps(σ)|`` over the last bisection points σ on either side
            of the sign change (a bound on the error in eps).
        eigenvalues: of ``∇²H`` at the fold, ascending (one is ~0).
        det_sides: ``det ∇²H`` at the two sides of the fold along the branch ``(2,)``.
        eps_sides: eps at those two sides ``(2,)``.
        indices: Morse indices of the two sides ``(2,)``.
        annihilation: True when the pair exists below the fold's eps and vanishes above it
            (eps has a maximum along the branch there); False for a creation.
        crossing: ``v · ∂(eps²∇H)/∂log eps`` with v the null vector (nonzero: transversal).
        cubic: ``∂³H[v, v, v]`` (nonzero: a nondegenerate fold).
        gradient_norm: ``|∇H|`` at the fold (a corrected point of the branch).
        no_root_beyond: Newton's method at ``eps·(1 ± 1e-6)`` beyond the fold, started at
            the fold, finds no critical point within ``1e-2``.
    """

    eps: float
    x: Float[np.ndarray, " d"]
    eps_uncertainty: float
    eigenvalues: Float[np.ndarray, " d"]
    det_sides: Float[np.ndarray, " 2"]
    eps_sides: Float[np.ndarray, " 2"]
    indices: tuple[int, int]
    annihilation: bool
    crossing: float
    cubic: float
    gradient_norm: float
    no_root_beyond: bool

    @property
    def kinds(self) -> tuple[str, str]:
        """The kinds of the two critical points that merge, e.g. ``(minimum, saddle)``."""
        d = self.x.shape[0]
        lo, hi = sorted(self.indices)
        return _kind(lo, d), _kind(hi, d)

    @property
    def sign_change(self) -> bool:
        """``det ∇²H`` has opposite signs on the two sides."""
        return bool(self.det_sides[0] * self.det_sides[1] < 0)


@dataclasses.dataclass(frozen=True, eq=False)
class EntropyBranch(_Frozen):
    """One connected curve of critical points ``{(x, eps): ∇H(x; eps) = 0}``.

    Traced by pseudo-arclength continuation in ``(x, log eps)``; it turns at folds, so one
    branch carries the two critical points that merge at each of its folds.

    Attributes:
        x: points along the curve ``(n, d)``.
        eps: their temperatures ``(n,)``.
        det: ``det ∇²H`` (scaled by ``eps^{2d}``) at each point ``(n,)``.
        index: Morse index at each point ``(n,)`` (inherited where not resolved).
        resolved: whether float64 resolves the Hessian's signs at each point ``(n,)``.
        entropy: ``H`` at each point ``(n,)``.
        folds: the folds on the curve, in order.
        ends: why the curve stops at each end: ``eps_min``, ``eps_max`` (its last point
            is on that boundary of the eps range), ``box`` (its last point is where it
            crosses the box's boundary), ``closed`` (a loop) or ``stalled`` (no step
            succeeds). Where the arclength steps collapse because ∇²H is not resolved in
            float64, the branch is continued at fixed eps steps (natural parameter: Newton
            in x at each eps), which succeeds only while the branch is a graph over eps (no
            fold): the Morse index is inherited there.
    """

    x: Float[np.ndarray, "n d"]
    eps: Float[np.ndarray, " n"]
    det: Float[np.ndarray, " n"]
    index: Int[np.ndarray, " n"]
    resolved: Bool[np.ndarray, " n"]
    entropy: Float[np.ndarray, " n"]
    folds: tuple[EntropyFold, ...]
    ends: tuple[str, str]


# --------------------------------------------------------------------------------------
# Compiled core: batched Newton (search), one point's local data, the corrector
# --------------------------------------------------------------------------------------


def _problem(W, b):
    """Validated float ``(W, b)`` with at least one active unit."""
    W, b, _ = _layer_params(W, b)
    return W, _some_unit_active(b)


def _box(box, d: int) -> np.ndarray | None:
    """``box`` as a ``(2, d)`` array of lower/upper corners (``None``: unbounded)."""
    if box is None:
        return None
    box = np.asarray(box, dtype=np.float64)
    if box.shape == (2,):
        box = np.repeat(box[:, None], d, axis=1)
    if box.shape != (2, d) or not np.all(box[0] < box[1]):
        raise ValueError(
            f"`box` must be (lo, hi) or a (2, d) array of corners with lo < hi (d = {d}); "
            f"got {box.tolist()}."
        )
    return box


def _inside(x: np.ndarray, box: np.ndarray | None) -> np.ndarray | np.bool_:
    finite = np.all(np.isfinite(x), axis=-1)
    if box is None:
        return finite
    return finite & np.all((x >= box[0]) & (x <= box[1]), axis=-1)


@jax.jit
def _newton(x0, W, b, eps, iterations):
    """Newton iterations on ``eps²∇H = 0`` from ``x0 (P, d)``, steps capped at eps.

    Returns ``(x, length of the last uncapped step, |∇H| at x)``, shapes ``(P, d), (P,),
    (P,)``. Capping at eps (the width of an attribution boundary) keeps a start from jumping
    across basins.
    """

    def step(x):
        Q, g, K, _ = _moments(_kernels.affine_logits(x, W, b), W, eps)
        return _to_x(Q, -jnp.linalg.solve(K, g[..., None])[..., 0]), g

    def body(_, carry):
        x, _ = carry
        dx, _ = step(x)
        norm = jnp.linalg.norm(dx, axis=-1)
        scale = jnp.minimum(1.0, eps / jnp.where(norm > 0, norm, 1.0))
        return x + dx * scale[..., None], norm

    norm0 = jnp.full(x0.shape[:-1], jnp.inf, x0.dtype)
    x, last = jax.lax.fori_loop(0, iterations, body, (x0, norm0))
    _, g = step(x)
    return x, last, jnp.linalg.norm(g, axis=-1) / eps**2


def _system(u, W, b):
    """At ``u = (x, log eps)``: ``(Q, F, J)`` with ``F = eps²∇H`` and its Jacobian
    ``J = [∂F/∂ξ, ∂F/∂log eps]`` ``(d, d + 1)``, in the frame Q (``x = x₀ + Qξ``)."""
    x, eps = u[:-1], jnp.exp(u[-1])
    Q, F, K, L = _moments(_kernels.affine_logits(x, W, b), W, eps)
    return Q, F, jnp.concatenate([K, L[:, None]], 1)


def _frame_normal(Q, normal):
    """A hyperplane normal in ``u = (x, λ)`` coordinates, in frame coordinates ``(ξ, λ)``."""
    return jnp.concatenate([Q.T @ normal[:-1], normal[-1:]])


def _from_frame(Q, du):
    return jnp.concatenate([Q @ du[:-1], du[-1:]])


@jax.jit
def _corrector(u_pred, normal, offset, W, b):
    """Newton on ``F(u) = 0, normal·u = offset`` from ``u_pred``: ``[u, last step, local]``
    with ``local`` the :func:`_local_vector` of the result (tangent oriented along normal)."""

    def cond(carry):
        _, step, it = carry
        return (step > 1e-12) & (it < 40)

    def body(carry):
        u, _, it = carry
        Q, F, J = _system(u, W, b)
        M = jnp.concatenate([J, _frame_normal(Q, normal)[None]], 0)
        rhs = jnp.concatenate([F, (normal @ u - offset)[None]])
        du = _from_frame(Q, -jnp.linalg.solve(M, rhs))
        return u + du, jnp.linalg.norm(du), it + 1

    u, step, _ = jax.lax.while_loop(cond, body, (u_pred, jnp.asarray(jnp.inf, u_pred.dtype), 0))
    return jnp.concatenate([u, step[None], _local_vector(u, normal, W, b)])


def _local_vector(u, previous, W, b):
    """Everything about the point ``u = (x, log eps)``, packed in one vector:

    ``[tangent (d+1), det eps²∇²H, H, |∇H|, Newton step, 1 − max π,
    v·∂(eps²∇H)/∂log eps, eigenvalues of ∇²H (d), null direction v in x (d)]``, the
    tangent (null vector of J, unit, oriented along ``previous``), v the eigenvector of the
    eigenvalue of least modulus.
    """
    Q, F, J = _system(u, W, b)
    x, eps = u[:-1], jnp.exp(u[-1])
    K = J[:, :-1]
    M = jnp.concatenate([J, _frame_normal(Q, previous)[None]], 0)
    e = jnp.zeros(u.shape[0], u.dtype).at[-1].set(1.0)
    tau = _from_frame(Q, jnp.linalg.solve(M, e))
    values, vectors = jnp.linalg.eigh(K)
    v = vectors[:, jnp.argmin(jnp.abs(values))]
    z = _kernels.affine_logits(x, W, b)
    scalars = jnp.stack(
        [
            jnp.linalg.det(K),
            _entropy_kernel(z, eps),
            jnp.linalg.norm(F) / eps**2,
            jnp.linalg.norm(jnp.linalg.solve(K, F)),
            1 - jnp.max(_kernels.gibbs_last(z, eps)),
            v @ J[:, -1],
        ]
    )
    return jnp.concatenate([tau / jnp.linalg.norm(tau), scalars, values / eps**2, Q @ v])


_local = jax.jit(_local_vector)


#: Largest condition number of ∇²H at which float64 resolves the sign of every eigenvalue.
_RESOLVED_COND = 1e12


def _resolved(eigenvalues: np.ndarray) -> bool:
    magnitudes = np.abs(eigenvalues)
    return bool(magnitudes.min() * _RESOLVED_COND > magnitudes.max())


@dataclasses.dataclass(frozen=True)
class _Local:
    """Unpacked :func:`_local`."""

    tangent: np.ndarray
    det: float
    entropy: float
    gradient_norm: float
    newton_step: float
    one_hot_defect: float
    crossing: float
    eigenvalues: np.ndarray
    null: np.ndarray

    @property
    def resolved(self) -> bool:
        return _resolved(self.eigenvalues)

    @property
    def own_index(self) -> int:
        return int(np.sum(self.eigenvalues < 0))


class _Problem:
    """One layer's compiled primitives, called with NumPy points."""

    def __init__(self, W, b, box=None):
        self.W, self.b = W, b
        self.d = W.shape[1]
        self.box = _box(box, self.d)
        self.e = np.zeros(self.d + 1)
        self.e[-1] = 1.0

    def correct(self, u_pred, normal, offset) -> tuple[np.ndarray, bool, _Local]:
        """The corrector: ``(u, converged, local data at u)``."""
        dtype = self.W.dtype
        out = np.asarray(
            _corrector(
                jnp.asarray(u_pred, dtype), jnp.asarray(normal, dtype), offset, self.W, self.b
            )
        )
        n = self.d + 1
        return out[:n], bool(out[n] <= 1e-10), self._unpack(out[n + 1 :])

    def at_eps(self, x, eps) -> tuple[np.ndarray, bool]:
        """Newton's method at fixed eps from x: ``(root, converged)``."""
        lam = math.log(eps)
        u, ok, _ = self.correct(np.append(x, lam), self.e, lam)
        return u[:-1], ok and bool(np.all(np.isfinite(u)))

    def local(self, u, previous=None) -> _Local:
        dtype = self.W.dtype
        previous = self.e if previous is None else previous
        out = _local(jnp.asarray(u, dtype), jnp.asarray(previous, dtype), self.W, self.b)
        return self._unpack(np.asarray(out))

    def _unpack(self, out: np.ndarray) -> _Local:
        d = self.d
        s = out[d + 1 : d + 7]
        return _Local(
            out[: d + 1], *(float(v) for v in s), out[d + 7 : 2 * d + 7], out[2 * d + 7 :]
        )

    def point(self, x, eps, branch=-1, index=None) -> EntropyCriticalPoint:
        """The critical point at x; ``index`` (inherited along a branch) used if unresolved."""
        info = self.local(np.append(x, math.log(eps)))
        return EntropyCriticalPoint(
            x=np.asarray(x, np.float64),
            eps=float(eps),
            entropy=info.entropy,
            eigenvalues=info.eigenvalues,
            index=info.own_index if info.resolved or index is None else int(index),
            resolved=info.resolved,
            newton_step=info.newton_step,
            branch=branch,
        )


def classify_candidate(
    x: Float[ArrayLike, " d"],
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    eps: float,
    *,
    radius: float = 1e-6,
    plateau_tol: float = 1e-6,
) -> CandidateVerdict:
    r"""The plateau test: is ``x`` a critical point of H, or only a point where ``|∇H|`` is
    tiny because π is one-hot?

    Newton's method on ``∇H = 0`` (closed-form Hessian) is run from x; x is a critical point
    iff it converges (last step ``<= 1e-10``) to a root within ``radius`` of x. Otherwise the
    reason says what x is: a one-hot plateau point when ``|∇H(x)| <= plateau_tol`` (what a
    residual test accepts) — the gradient is small because ``1 − max π`` is, while the Newton
    step (the distance to a root, to first order) is not — or simply a non-critical point.

    Args:
        x: the candidate ``(d,)``.
        W, b: the layer ``(N, d)``, ``(N,)``.
        eps: temperature ``> 0``.
        radius: how close the converged root must be to x.
        plateau_tol: the residual tolerance a residual test would use on ``|∇H|``.

    Example:
        >>> import jax.numpy as jnp
        >>> W = jnp.array([[1.0], [-1.0], [0.0]]); b = jnp.array([0.0, 0.0, 0.5])
        >>> classify_candidate(jnp.array([3.0]), W, b, 0.05).is_critical  # deep in a basin
        False
    """
    W, b = _problem(W, b)
    x = np.asarray(_validate.queries("x", x, "W", W), np.float64)
    if x.ndim != 1:
        raise ValueError(f"`x` must be one point of shape (d,); got {x.shape}.")
    if not eps > 0:
        raise ValueError(f"`eps` must be > 0 for the plateau test; got {eps!r}.")
    problem = _Problem(W, b)
    info = problem.local(np.append(x, math.log(eps)))
    root, converged = problem.at_eps(x, eps)
    distance = float(np.linalg.norm(root - x)) if converged else math.inf
    is_critical = distance <= radius
    if is_critical:
        reason = f"critical point: Newton converges to a root {distance:.1e} away"
    elif info.gradient_norm <= plateau_tol:
        where = (
            f"converges to a root {distance:.2g} away"
            if math.isfinite(distance)
            else "does not converge"
        )
        reason = (
            f"one-hot plateau: |∇H| = {info.gradient_norm:.1e} <= {plateau_tol:g} only "
            f"because 1 − max π = {info.one_hot_defect:.1e}; the Newton step is "
            f"{info.newton_step:.1e} and Newton's method {where}"
        )
    else:
        reason = (
            f"not critical: |∇H| = {info.gradient_norm:.1e}, Newton step {info.newton_step:.1e}"
        )
    return CandidateVerdict(
        x=x,
        eps=float(eps),
        gradient_norm=info.gradient_norm,
        one_hot_defect=info.one_hot_defect,
        newton_step=info.newton_step,
        root_distance=distance,
        is_critical=bool(is_critical),
        reason=reason,
    )


def _distinct(points: np.ndarray, tol: float) -> list[int]:
    """Indices of the first point of each cluster of points closer than tol."""
    keep: list[int] = []
    for i, p in enumerate(points):
        if all(np.linalg.norm(p - points[j]) > tol for j in keep):
            keep.append(i)
    return keep


def entropy_critical_points(
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    eps: float,
    starts: Float[ArrayLike, "S d"],
    *,
    box: Float[ArrayLike, "2 d"] | Sequence[float] | None = None,
    tol: float = 1e-11,
    iterations: int = 60,
    plateau_tol: float = 1e-6,
    merge_tol: float = 1e-7,
) -> CriticalPointSearch:
    r"""Critical points of H at one eps by multi-start Newton (closed-form Hessian).

    Each start runs ``iterations`` Newton steps on ``eps²∇H = 0`` (steps capped at eps, the
    width of an attribution boundary); a start is accepted when its last step is ``<= tol``
    (quadratic convergence to a root) and the root is inside ``box``. Roots closer than
    ``merge_tol`` are one point. Starts that end with ``|∇H| <= plateau_tol`` but no
    converged root are counted as plateau points (what a residual test would accept).

    Args:
        W, b: the layer ``(N, d)``, ``(N,)``.
        eps: temperature ``> 0``.
        starts: starting points ``(S, d)``.
        box: domain ``(lo, hi)`` or corners ``(2, d)``; ``None``: all of R^d.
        tol: Newton convergence tolerance (last step length).
        iterations: Newton steps per start.
        plateau_tol: residual tolerance defining a plateau point.
        merge_tol: distance below which two roots are the same point.

    Returns:
        A :class:`CriticalPointSearch`.
    """
    W, b = _problem(W, b)
    if not eps > 0:
        raise ValueError(f"`eps` must be > 0; got {eps!r}.")
    starts = np.asarray(_validate.queries("starts", starts, "W", W), np.float64)
    problem = _Problem(W, b, box)
    x, last, gradient_norm = (
        np.asarray(a)
        for a in _newton(jnp.asarray(starts, W.dtype), W, b, jnp.asarray(eps, W.dtype), iterations)
    )
    finite = np.all(np.isfinite(x), axis=-1)
    converged = finite & (last <= tol) & _inside(x, problem.box)
    plateau = ~converged & finite & (gradient_norm <= plateau_tol)
    roots = x[converged]
    points = tuple(problem.point(roots[i], eps) for i in _distinct(roots, merge_tol))
    return CriticalPointSearch(
        eps=float(eps),
        points=points,
        n_starts=len(starts),
        n_converged=int(converged.sum()),
        n_plateau=int(plateau.sum()),
        n_other=int((~converged & ~plateau).sum()),
    )


# --------------------------------------------------------------------------------------
# Pseudo-arclength continuation in u = (x, log eps)
# --------------------------------------------------------------------------------------


class _Tracer(_Problem):
    """Pseudo-arclength continuation of ``eps²∇H = 0`` for one layer (NumPy driver)."""

    def __init__(self, W, b, eps_range, box, h_max=0.05, max_points=20000):
        super().__init__(W, b, box)
        self.lam_lo, self.lam_hi = (math.log(e) for e in eps_range)
        self.h_max, self.max_points = h_max, max_points

    def _end(self, lam):
        if lam > self.lam_hi:
            return self.lam_hi, "eps_max"
        if lam < self.lam_lo:
            return self.lam_lo, "eps_min"
        return None, None

    def _index(self, info: _Local, previous: int | None) -> int | None:
        return info.own_index if info.resolved else previous

    def half(self, u0, tau0, index0):
        """Trace from u0 along tau0 until an end: ``(points, infos, indices, end reason)``."""
        points, infos, indices = [u0], [self.local(u0, tau0)], [index0]
        tau = infos[0].tangent
        h = self.h_max / 4
        while len(points) < self.max_points:
            u = points[-1]
            u_pred = u + h * tau
            u_new, ok, info = self.correct(u_pred, tau, tau @ u_pred)
            if ok:
                cos = float(info.tangent @ tau)
            if not ok or cos < 0.98:
                h /= 2
                if h < 1e-7:
                    return self.natural(points, infos, indices)
                continue
            bound, end = self._end(u_new[-1])
            if end is not None:  # land exactly on the boundary of the eps range
                w = (bound - u[-1]) / (u_new[-1] - u[-1])
                u_end, ok_end, _ = self.correct(u + w * (u_new - u), self.e, bound)
                if ok_end:
                    points.append(u_end)
                    infos.append(self.local(u_end, tau))
                    indices.append(self._index(infos[-1], indices[-1]))
                return points, infos, indices, end
            if not _inside(u_new[:-1], self.box):
                return self._exit(points, infos, indices, u_new, tau)
            points.append(u_new)
            infos.append(info)
            indices.append(self._index(info, indices[-1]))
            tau = info.tangent
            if len(points) > 20 and np.linalg.norm(u_new - u0) < h and tau @ tau0 > 0:
                return points, infos, indices, "closed"
            if cos > 0.999:
                h = min(1.5 * h, self.h_max)
        return points, infos, indices, "stalled"

    def _exit(self, points, infos, indices, u_out, tau):
        """End at the point where the branch crosses the box's face (on the face, exactly)."""
        u = points[-1]
        lo, hi = self.box
        excess = np.maximum(lo - u_out[:-1], u_out[:-1] - hi)
        k = int(np.argmax(excess))
        face = hi[k] if u_out[k] > hi[k] else lo[k]
        w = (face - u[k]) / (u_out[k] - u[k])
        normal = np.zeros_like(u)
        normal[k] = 1.0
        u_face, ok, _ = self.correct(u + w * (u_out - u), normal, face)
        u_face = u_face.copy()
        if ok:
            u_face[k] = face
            points.append(u_face)
            infos.append(self.local(u_face, tau))
            indices.append(self._index(infos[-1], indices[-1]))
        return points, infos, indices, "box"

    def natural(self, points, infos, indices):
        """Fixed steps in log eps (Newton in x) where the arclength steps collapse: succeeds
        only while the branch is a graph over eps, so no fold is skipped."""
        direction = 1.0 if len(points) < 2 or points[-1][-1] >= points[-2][-1] else -1.0
        step = 0.01
        while len(points) < self.max_points and step > 1e-8:
            u = points[-1]
            prev = points[-2] if len(points) > 1 else u
            lam = u[-1] + direction * step
            bound, end = self._end(lam)
            lam = lam if end is None else bound
            slope = (u[:-1] - prev[:-1]) / (u[-1] - prev[-1]) if u[-1] != prev[-1] else 0.0
            x_pred = u[:-1] + slope * (lam - u[-1])
            u_new, ok, info = self.correct(
                np.append(x_pred, lam), direction * self.e, direction * lam
            )
            if ok:
                both = info.resolved and infos[-1].resolved
                ok = not both or info.det * infos[-1].det > 0
            if not ok or np.linalg.norm(u_new[:-1] - x_pred) > 0.05:
                step /= 2
                continue
            if not _inside(u_new[:-1], self.box):
                return self._exit(points, infos, indices, u_new, direction * self.e)
            points.append(u_new)
            infos.append(info)
            indices.append(self._index(info, indices[-1]))
            if end is not None:
                return points, infos, indices, end
            step = min(2 * step, 0.05)
        return points, infos, indices, "stalled"

    def locate_fold(self, u_a, tau_a, u_b, det_a) -> EntropyFold:
        """Bisection on the arclength between two points where det ∇²H changes sign."""
        chord = u_b - u_a
        length = float(np.linalg.norm(chord))
        normal = chord / length

        def on_branch(sigma):
            return self.correct(u_a + sigma * normal, normal, normal @ u_a + sigma)

        lo, hi = 0.0, length
        ends = {}
        while hi - lo > 1e-11:
            mid = (lo + hi) / 2
            u_mid, ok, info = on_branch(mid)
            if not ok:
                break
            same = np.sign(info.det) == np.sign(det_a)
            lo, hi = (mid, hi) if same else (lo, mid)
            ends["lo" if same else "hi"] = u_mid
        u_fold, _, info = on_branch((lo + hi) / 2)
        eps_fold = math.exp(u_fold[-1])
        lam_ends = [ends[k][-1] for k in ("lo", "hi") if k in ends]
        uncertainty = eps_fold * max((abs(lam - u_fold[-1]) for lam in lam_ends), default=math.inf)
        # the two merging critical points, 1e-4 of arclength either side
        sides_u, _, sides = zip(*(on_branch((lo + hi) / 2 + s) for s in (-1e-4, 1e-4)), strict=True)
        eps_sides = np.exp([u[-1] for u in sides_u])
        annihilation = bool(eps_sides.max() < eps_fold)
        beyond = eps_fold * (1 + 1e-6 if annihilation else 1 - 1e-6)
        root, ok = self.at_eps(u_fold[:-1], beyond)
        near = ok and np.linalg.norm(root - u_fold[:-1]) < 1e-2
        # ∂³H[v, v, v] = d/ds of the small eigenvalue along v (central difference)
        h = 1e-5
        lam_p, lam_m = (
            self.local(np.append(u_fold[:-1] + s * h * info.null, u_fold[-1])).eigenvalues
            for s in (1.0, -1.0)
        )
        k = int(np.argmin(np.abs(info.eigenvalues)))
        return EntropyFold(
            eps=eps_fold,
            x=u_fold[:-1].copy(),
            eps_uncertainty=uncertainty,
            eigenvalues=info.eigenvalues,
            det_sides=np.array([s.det for s in sides]),
            eps_sides=eps_sides,
            indices=(sides[0].own_index, sides[1].own_index),
            annihilation=annihilation,
            crossing=info.crossing,
            cubic=float((lam_p[k] - lam_m[k]) / (2 * h)),
            gradient_norm=info.gradient_norm,
            no_root_beyond=not near,
        )

    def branch(self, x0, eps0) -> EntropyBranch:
        u0 = np.append(np.asarray(x0, np.float64), math.log(eps0))
        first = self.local(u0)
        index0 = first.own_index
        back, back_info, back_index, end0 = self.half(u0, -first.tangent, index0)
        fwd, fwd_info, fwd_index, end1 = self.half(u0, first.tangent, index0)
        points = back[::-1] + fwd[1:]
        infos = back_info[::-1] + fwd_info[1:]
        indices = back_index[::-1] + fwd_index[1:]
        folds = [
            self.locate_fold(points[i], infos[i].tangent, points[i + 1], infos[i].det)
            for i in range(len(points) - 1)
            if infos[i].det * infos[i + 1].det < 0 and infos[i].resolved and infos[i + 1].resolved
        ]
        u = np.array(points)
        return EntropyBranch(
            x=u[:, :-1],
            eps=np.exp(u[:, -1]),
            det=np.array([i.det for i in infos]),
            index=np.array([-1 if i is None else i for i in indices]),
            resolved=np.array([i.resolved for i in infos]),
            entropy=np.array([i.entropy for i in infos]),
            folds=tuple(folds),
            ends=(end0, end1),
        )

    def slice(self, branch: EntropyBranch, eps: float, number: int, near=None):
        """Critical points where the branch crosses ``log eps`` (Newton-corrected).

        ``near``: only crossings whose interpolated point is within 0.05 of it.
        """
        lam = np.log(branch.eps)
        target = math.log(eps)
        side = lam <= target
        out = []
        for i in np.flatnonzero(side[:-1] != side[1:]):
            w = (target - lam[i]) / (lam[i + 1] - lam[i])
            x_pred = (1 - w) * branch.x[i] + w * branch.x[i + 1]
            if near is not None and np.linalg.norm(x_pred - near) > 0.05:
                continue
            x, ok = self.at_eps(x_pred, eps)
            if ok and _inside(x, self.box):
                index = branch.index[i if w < 0.5 else i + 1]
                out.append(self.point(x, eps, number, index))
        return out


def trace_entropy_branches(
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    seeds: Sequence[EntropyCriticalPoint],
    *,
    eps_range: tuple[float, float],
    box: Float[ArrayLike, "2 d"] | Sequence[float] | None = None,
    max_step: float = 0.05,
    max_points: int = 20000,
    match_tol: float = 1e-6,
) -> tuple[EntropyBranch, ...]:
    r"""Branches of critical points of H in eps, by pseudo-arclength continuation (Thm 8.9).

    The curve ``{(x, λ): F(x, λ) = eps²∇H(x; eps) = 0}``, ``λ = log eps``, is followed with
    an Euler predictor along the unit tangent (the null vector of ``[∂_x F, ∂_λ F]``, both
    in closed form) and a Newton corrector on the hyperplane orthogonal to it; the step
    adapts to the corrector's success and the turning of the tangent. The arclength
    parametrization passes through folds, where eps turns back and ``det ∇²H`` changes sign;
    each fold is located (:class:`EntropyFold`). A branch ends when it leaves the eps range
    or the box.

    Each seed not already on a traced branch (a slice of the branches at its eps matches it
    to ``match_tol``) starts a new branch, traced both ways.

    Args:
        W, b: the layer ``(N, d)``, ``(N,)`` (float64 recommended).
        seeds: critical points (e.g. from :func:`entropy_critical_points` at several eps).
        eps_range: ``(eps_min, eps_max)``, ``0 < eps_min < eps_max``.
        box: domain ``(lo, hi)`` or corners ``(2, d)``; ``None``: all of R^d.
        max_step: largest arclength step in ``(x, log eps)``.
        max_points: cap on the points per half-branch.
        match_tol: distance under which a seed is on an existing branch.

    Returns:
        The branches, in the order their seeds were taken.
    """
    W, b = _problem(W, b)
    lo, hi = (float(e) for e in eps_range)
    if not 0 < lo < hi:
        raise ValueError(f"`eps_range` must satisfy 0 < eps_min < eps_max; got {eps_range}.")
    tracer = _Tracer(W, b, (lo, hi), box, max_step, max_points)
    branches: list[EntropyBranch] = []
    for seed in seeds:
        if not lo <= seed.eps <= hi:
            continue
        on = any(
            np.linalg.norm(p.x - seed.x) <= match_tol
            for k, br in enumerate(branches)
            for p in tracer.slice(br, seed.eps, k, near=seed.x)
        )
        if not on:
            branches.append(tracer.branch(seed.x, seed.eps))
    return tuple(branches)


def critical_points_at(
    W: Float[ArrayLike, "N d"],
    b: Float[ArrayLike, " N"],
    branches: Sequence[EntropyBranch],
    eps: float,
    *,
    box: Float[ArrayLike, "2 d"] | Sequence[float] | None = None,
) -> tuple[EntropyCriticalPoint, ...]:
    """The critical points of H at ``eps`` on the traced branches (Newton-corrected slices).

    Each crossing of a branch with the plane ``log eps = const`` is corrected by Newton's
    method at that eps and kept if inside ``box``; ``branch`` names its branch.
    """
    W, b = _problem(W, b)
    tracer = _Tracer(W, b, (eps, eps), box)
    return tuple(p for k, br in enumerate(branches) for p in tracer.slice(br, eps, k))
