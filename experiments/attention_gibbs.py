r"""Experiment D: dot-product attention is the Gibbs average ``Vᵀ ∇_z lse(z, √d)`` (Prop H.9).

``python -m experiments.attention_gibbs [--quick] [--out DIR] [--resume]``

For d ∈ {4, 8, 16, 32, 64}, 500 trials each (seed 42): 8 queries, 12 keys, d_v = 16, all
entries N(0, 1), temperature eps = √d. ``hjax.dot_product_attention(Q, K, V)`` is compared
with three computations that do not go through it:

* ``autodiff_lse``: ``Vᵀ · jax.grad(hjax.lse)(K q_i)`` — the eq. (6)/Prop H.9 identity, the
  weights obtained by differentiating the log-partition. hjax's ``lse`` has a custom JVP
  whose tangent is the same ``gibbs`` kernel attention uses, so this one agrees to the last
  bit (it checks the wiring: temperature, contraction, gradient rule);
* ``autodiff_plain``: ``Vᵀ · jax.grad(z ↦ eps·log Σ exp(z/eps))`` — plain JAX autodiff of the
  textbook formula, no hjax code at all;
* ``numpy``: an independent float64 NumPy softmax of the logits, times V.

The last two are the independent checks.

The reference's check compared softmax with itself (error 0 by construction); here every
comparison crosses an implementation boundary, so a wrong temperature, a transposed
contraction or a bad gradient rule would show.
"""

import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

import hjax
from experiments._common import Run, enable_x64, entry_point, error_by_dimension_figure, parse_args
from hjax.runner import format_table as table

NAME = "attention_gibbs"
COMPARISONS = ("autodiff_lse", "autodiff_plain", "numpy")


def make_config(quick: bool) -> dict:
    return {
        "quick": quick,
        "d": [4, 8, 16, 32, 64],
        "trials": 50 if quick else 500,
        "n_queries": 8,
        "n_keys": 12,
        "d_v": 16,
        "eps": "sqrt(d)",
        "seed": 42,
        "rng": "numpy default_rng([seed, d]); Q, K, V ~ N(0, 1)",
        "tolerance": 1e-13,
    }


def unit_key(d: int) -> str:
    return f"d={d}"


@jax.jit
def _compute(Q, K, V):
    """hjax attention and the two autodiff Gibbs averages, for trials stacked on axis 0."""
    eps = jnp.sqrt(jnp.asarray(Q.shape[-1], Q.dtype))
    attn = hjax.dot_product_attention(Q, K, V)  # default temperature √d
    logits = jnp.einsum("tqd,tkd->tqk", Q, K)

    def gibbs_average(log_partition):
        weights = jax.vmap(jax.vmap(jax.grad(log_partition)))(logits)  # (trials, nq, nk)
        return jnp.einsum("tqk,tkv->tqv", weights, V)

    via_lse = gibbs_average(lambda z: hjax.lse(z, eps))
    via_plain = gibbs_average(lambda z: eps * jnp.log(jnp.sum(jnp.exp(z / eps))))
    return attn, via_lse, via_plain


def _numpy_attention(Q: np.ndarray, K: np.ndarray, V: np.ndarray, eps: float) -> np.ndarray:
    """Independent float64 softmax(QKᵀ/eps) V."""
    z = np.einsum("tqd,tkd->tqk", Q, K) / eps
    z -= z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    return np.einsum("tqk,tkv->tqv", p, V)


def compute_unit(config: dict, d: int) -> dict:
    """500 (or --quick 50) trials at dimension d: the three maximal errors."""
    rng = np.random.default_rng([config["seed"], d])
    trials = config["trials"]
    Q = rng.standard_normal((trials, config["n_queries"], d))
    K = rng.standard_normal((trials, config["n_keys"], d))
    V = rng.standard_normal((trials, config["n_keys"], config["d_v"]))
    attn, via_lse, via_plain = map(np.asarray, _compute(Q, K, V))
    via_numpy = _numpy_attention(Q, K, V, float(np.sqrt(d)))
    errors = {
        name: float(np.max(np.abs(attn - other)))
        for name, other in zip(COMPARISONS, (via_lse, via_plain, via_numpy), strict=True)
    }
    return {
        "d": d,
        "eps": float(np.sqrt(d)),
        "max_abs_error": errors,
        "max_abs_output": float(np.max(np.abs(attn))),
        "numpy_vs_autodiff_lse": float(np.max(np.abs(via_numpy - via_lse))),
    }


def _figure(config: dict, units: list[dict]):
    return error_by_dimension_figure(
        [u["d"] for u in units],
        {f"attention vs {name}": [u["max_abs_error"][name] for u in units] for name in COMPARISONS},
        config["tolerance"],
        xlabel="d (eps = √d)",
        ylabel=f"max |error| over {config['trials']} trials",
        title="attention = Vᵀ ∇lse (float64)",
    )


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(NAME, __doc__, argv)
    enable_x64()
    config = make_config(args.quick)
    run = Run(NAME, args, config)
    todo = {unit_key(d): d for d in config["d"]}
    run.run_units(list(todo), lambda k: compute_unit(config, todo[k]))
    units = [run.units[k] for k in todo]

    print(
        table(
            ["d", "eps", *(f"vs {c}" for c in COMPARISONS), "max |out|"],
            [
                [
                    u["d"],
                    f"{u['eps']:.3f}",
                    *(f"{u['max_abs_error'][c]:.2e}" for c in COMPARISONS),
                    f"{u['max_abs_output']:.2f}",
                ]
                for u in units
            ],
        )
    )
    worst = {c: max(u["max_abs_error"][c] for u in units) for c in COMPARISONS}
    tol = config["tolerance"]
    claims = [
        {
            "claim": f"dot_product_attention = Vᵀ·(Gibbs weights via {c})",
            "measured": worst[c],
            "expected": f"max |error| ≤ {tol:g}",
            "holds": worst[c] <= tol,
        }
        for c in COMPARISONS
    ]
    return run.finish(
        {"max_abs_error": worst},
        claims,
        figure=lambda: _figure(config, units),
        extra={"reference": {"reported_error": 0.0, "note": "softmax compared with itself"}},
    )


if __name__ == "__main__":
    sys.exit(main())
