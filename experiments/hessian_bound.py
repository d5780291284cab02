r"""Experiment C: the curvature bound of Cor 8.2 on LSE layers trained on |x|.

``python -m experiments.hessian_bound [--quick] [--out DIR] [--resume]``

An LSE layer ``f(x) = lse(Wx + b, eps)`` with N = 30 atoms (``hjax.LSELayer``) is fitted to
``|x|`` on 500 uniform points of [-2, 2] (full-batch Adam, 4000 steps, lr 0.01, MSE; the
reference's initialisation W ~ N(0, 0.4²), b ~ N(0, 0.2²)) for
eps ∈ {0.08, 0.12, 0.2, 0.35, 0.6, 1.0} and 3 initialisation seeds. For every fit it
measures ``sup_x ‖∇²f(x)‖`` — the maximum of the closed form ``Cov_π(W)/eps``
(``hjax.lse_layer_hessian``) over a dense grid of [-3, 3], every pairwise tie point
``W_i x + b_i = W_j x + b_j`` (where two-atom curvature peaks, wherever on R that is) and a
fine grid around the best of those, an estimate of the supremum from below — and compares
it with the two bounds of Cor 8.2 (THEORY §8):

    ‖∇²f(x)‖ ≤ D²/(4 eps) ≤ R²/eps,   D = max_ij |W_i − W_j|,  R = max_j |W_j|.

The closed-form Hessian is cross-checked on the grid against an independent NumPy
evaluation and against ``jax.hessian`` of the layer. The test error is the RMSE on 200
separate uniform points of [-2, 2]. Every seed is reported; none is selected (the
reference picked the best seed on its test set).
"""

import functools
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

import hjax
from experiments._common import Run, enable_x64, entry_point, parse_args, plt
from hjax.runner import format_table as table

NAME = "hessian_bound"

#: Reference (REFERENCE.md row C): max‖∇²f‖ / (its bound max_j W_j² / eps), best seed on test.
REFERENCE = {
    "eps": [0.08, 0.12, 0.2, 0.35, 0.6, 1.0],
    "max_hessian": [12.40, 8.38, 5.18, 3.18, 2.13, 1.57],
    "bound_R2_over_eps": [12.59, 8.47, 5.22, 3.19, 2.15, 1.72],
}


def make_config(quick: bool) -> dict:
    return {
        "quick": quick,
        "target": "|x|",
        "n_atoms": 30,
        "n_train": 500,
        "n_test": 200,
        "x_range": [-2.0, 2.0],
        "data_seed": 0,
        "eps": [0.08, 0.12, 0.2, 0.35, 0.6, 1.0],
        "seeds": [0] if quick else [0, 1, 2],
        "steps": 1500 if quick else 4000,
        "lr": 0.01,
        "optimizer": "optax.adam, full batch, MSE",
        "init": "W ~ N(0, 0.4²), b ~ N(0, 0.2²) from numpy default_rng(seed)",
        "init_scale_W": 0.4,
        "init_scale_b": 0.2,
        "grid": [-3.0, 3.0, 6001],
        "refine_points": 401,
    }


def make_data(config: dict) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(config["data_seed"])
    lo, hi = config["x_range"]
    x_train = rng.uniform(lo, hi, config["n_train"])
    x_test = rng.uniform(lo, hi, config["n_test"])
    return {"x_train": x_train, "y_train": np.abs(x_train), "x_test": x_test}


def unit_key(eps: float, seed: int) -> str:
    return f"eps={eps:g}/seed={seed}"


@functools.partial(jax.jit, static_argnames=("steps", "n_grid", "n_fine"))
def _fit_and_measure(W0, b0, eps, lr, x, y, x_test, lo, hi, *, steps, n_grid, n_fine):
    """Train (full-batch Adam on the MSE) one layer from (W0, b0) and measure it.

    eps, lr and the data are traced: the whole sweep compiles once.
    """
    layer = hjax.LSELayer(W0, b0)
    opt = optax.adam(lr)

    def loss(p):
        return jnp.mean((p(x[:, None], eps) - y) ** 2)

    def step(carry, _):
        p, state = carry
        grads = jax.grad(loss)(p)
        updates, state = opt.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), None

    (layer, _), _ = jax.lax.scan(step, (layer, opt.init(layer)), None, length=steps)
    W, b = layer.W, layer.b

    def hessian(points):  # closed form ‖∇²f‖ = Cov_π(W)/eps, d = 1
        return hjax.lse_layer_hessian(points[:, None], W, b, eps)[:, 0, 0]

    grid = jnp.linspace(lo, hi, n_grid)
    autodiff = jax.vmap(jax.hessian(lambda xi: layer(xi, eps)))(grid[:, None])[:, 0, 0]
    # Pairwise tie points w_i x + b_i = w_j x + b_j: two-atom curvature peaks there,
    # wherever on R that is (one point per pair; 0 for parallel pairs).
    i, j = jnp.triu_indices(W.shape[0], 1)
    w = W[:, 0]
    dw = w[i] - w[j]
    ok = jnp.abs(dw) > 1e-12
    ties = jnp.where(ok, (b[j] - b[i]) / jnp.where(ok, dw, jnp.ones_like(dw)), 0.0)
    candidates = jnp.concatenate([grid, ties])
    values = hessian(candidates)
    on_grid = values[:n_grid]
    h = (hi - lo) / (n_grid - 1)
    fine = candidates[jnp.argmax(values)] + jnp.linspace(-2 * h, 2 * h, n_fine)
    candidates = jnp.concatenate([candidates, fine])
    values = jnp.concatenate([values, hessian(fine)])
    k = jnp.argmax(values)
    f_test = layer(x_test[:, None], eps)
    return {
        "W": w,
        "b": b,
        "train_mse": loss(layer),
        "test_rmse": jnp.sqrt(jnp.mean((f_test - jnp.abs(x_test)) ** 2)),
        "max_hessian": values[k],
        "argmax_x": candidates[k],
        "grid": grid,
        "on_grid": on_grid,
        "autodiff": autodiff,
        "bound_D": hjax.lse_layer_hessian_bound(W, eps),
    }


def _numpy_hessian(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    """Independent float64 NumPy ``Var_π(w)/eps`` (1-D)."""
    z = np.outer(x, w) + b
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z / eps)
    p /= p.sum(axis=1, keepdims=True)
    mean = p @ w
    return np.sum(p * (w[None, :] - mean[:, None]) ** 2, axis=1) / eps


def compute_unit(config: dict, data: dict, eps: float, seed: int) -> dict:
    """Train one layer and measure its curvature against the bounds."""
    lo, hi, n_grid = config["grid"]
    rng = np.random.default_rng(seed)
    n = config["n_atoms"]
    W0 = config["init_scale_W"] * rng.standard_normal((n, 1))
    b0 = config["init_scale_b"] * rng.standard_normal(n)
    with jax.numpy_dtype_promotion("standard"):  # optax's internals mix int32/float
        r = _fit_and_measure(
            W0,
            b0,
            eps,
            config["lr"],
            data["x_train"],
            data["y_train"],
            data["x_test"],
            lo,
            hi,
            steps=config["steps"],
            n_grid=int(n_grid),
            n_fine=config["refine_points"],
        )
    r = {k: np.asarray(v) for k, v in r.items()}
    w, b, grid = r["W"], r["b"], r["grid"]
    reference = _numpy_hessian(grid, w, b, eps)
    scale = float(np.max(np.abs(reference)))
    R2 = float(np.max(w**2))
    in_range = (grid >= config["x_range"][0]) & (grid <= config["x_range"][1])
    max_h, bound_D = float(r["max_hessian"]), float(r["bound_D"])
    return {
        "eps": eps,
        "seed": seed,
        "train_mse": float(r["train_mse"]),
        "test_rmse": float(r["test_rmse"]),
        "max_hessian": max_h,
        "argmax_x": float(r["argmax_x"]),
        "max_hessian_on_data_range": float(np.max(r["on_grid"][in_range])),
        "R": float(np.sqrt(R2)),
        "D": float(w.max() - w.min()),
        "bound_D2_over_4eps": bound_D,
        "bound_R2_over_eps": R2 / eps,
        "ratio_to_D_bound": max_h / bound_D,
        "ratio_to_R_bound": max_h / (R2 / eps),
        "closed_vs_numpy_rel": float(np.max(np.abs(r["on_grid"] - reference))) / scale,
        "closed_vs_autodiff_rel": float(np.max(np.abs(r["on_grid"] - r["autodiff"]))) / scale,
        "W": w.tolist(),
        "b": b.tolist(),
    }


def _figure(config: dict, units: list[dict]):
    eps = np.array(config["eps"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ax = axes[0]
    for seed in config["seeds"]:
        us = [u for u in units if u["seed"] == seed]
        ax.loglog(
            [u["eps"] for u in us],
            [u["max_hessian"] for u in us],
            "o",
            ms=4,
            label=f"sup ‖∇²f‖, seed {seed}",
        )
    mean = lambda key: [np.mean([u[key] for u in units if u["eps"] == e]) for e in eps]
    ax.loglog(eps, mean("bound_D2_over_4eps"), "-", label="D²/(4ε) (seed mean)")
    ax.loglog(eps, mean("bound_R2_over_eps"), "--", label="R²/ε (seed mean)")
    ax.loglog(REFERENCE["eps"], REFERENCE["max_hessian"], "kx", label="reference (best seed)")
    ax.set(xlabel="ε", ylabel="curvature", title="Cor 8.2 on trained fits of |x|")
    ax.legend(fontsize=7)
    ax = axes[1]
    x = np.linspace(-3, 3, 1201)
    for e in eps:
        u = next(u for u in units if u["eps"] == e and u["seed"] == config["seeds"][0])
        w, b = np.array(u["W"]), np.array(u["b"])
        ax.semilogy(x, np.maximum(_numpy_hessian(x, w, b, e), 1e-12), label=f"ε={e:g}")
    ax.set(xlabel="x", ylabel="‖∇²f(x)‖", title=f"curvature profile, seed {config['seeds'][0]}")
    ax.set_ylim(1e-4, None)
    ax.legend(fontsize=7)
    ax = axes[2]
    for seed in config["seeds"]:
        us = [u for u in units if u["seed"] == seed]
        ax.loglog(
            [u["eps"] for u in us], [u["test_rmse"] for u in us], "o-", ms=4, label=f"seed {seed}"
        )
    ax.loglog(eps, eps * np.log(2), ":", color="gray", label="ε log 2 (smoothing at 0)")
    ax.set(xlabel="ε", ylabel="test RMSE", title="fit error (no seed selection)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(NAME, __doc__, argv)
    enable_x64()
    config = make_config(args.quick)
    data = make_data(config)
    run = Run(NAME, args, config)
    todo = {unit_key(e, s): (e, s) for e in config["eps"] for s in config["seeds"]}
    run.run_units(list(todo), lambda k: compute_unit(config, data, *todo[k]))
    units = [run.units[k] for k in todo]

    print(
        table(
            ["eps", "seed", "train MSE", "test RMSE", "sup‖∇²f‖", "at x", "D²/(4eps)", "R²/eps"],
            [
                [
                    f"{u['eps']:g}",
                    u["seed"],
                    f"{u['train_mse']:.2e}",
                    f"{u['test_rmse']:.4f}",
                    f"{u['max_hessian']:.4f}",
                    f"{u['argmax_x']:+.3f}",
                    f"{u['bound_D2_over_4eps']:.4f}",
                    f"{u['bound_R2_over_eps']:.4f}",
                ]
                for u in units
            ],
        )
    )
    ratio_D = max(u["ratio_to_D_bound"] for u in units)
    bounds_order = max(u["bound_D2_over_4eps"] / u["bound_R2_over_eps"] for u in units)
    cross = max(max(u["closed_vs_numpy_rel"], u["closed_vs_autodiff_rel"]) for u in units)
    per_eps = {
        f"{e:g}": {
            key: [u[key] for u in units if u["eps"] == e]
            for key in ("max_hessian", "bound_D2_over_4eps", "bound_R2_over_eps", "test_rmse")
        }
        for e in config["eps"]
    }
    summary = {
        "max_ratio_to_D_bound": ratio_D,
        "min_ratio_to_D_bound": min(u["ratio_to_D_bound"] for u in units),
        "max_ratio_to_R_bound": max(u["ratio_to_R_bound"] for u in units),
        "per_eps": per_eps,
    }
    claims = [
        {
            "claim": "sup‖∇²f‖ ≤ D²/(4 eps), every fit (Cor 8.2)",
            "measured": ratio_D,
            "expected": "max ratio ≤ 1 + 1e-9",
            "holds": ratio_D <= 1 + 1e-9,
        },
        {
            "claim": "D²/(4 eps) ≤ R²/eps (Popoviciu, D ≤ 2R)",
            "measured": bounds_order,
            "expected": "max ratio ≤ 1",
            "holds": bounds_order <= 1 + 1e-12,
        },
        {
            "claim": "closed-form Hessian = NumPy = jax.hessian",
            "measured": cross,
            "expected": "rel. diff ≤ 1e-10",
            "holds": cross <= 1e-10,
        },
    ]
    return run.finish(
        summary,
        claims,
        figure=lambda: _figure(config, units),
        extra={"reference": REFERENCE},
    )


if __name__ == "__main__":
    sys.exit(main())
