r"""The §8 / App. D–E consequences measured on a trained LSE layer: hallucination (Prop 8.5),
measure poisoning (Prop E.3), NTK rank (Prop D.3), fixed-support convexity (Prop D.2).

``python -m experiments.consequences [--quick] [--out DIR] [--resume]``

One layer ``f = lse(Wx + b, eps)``, N = 32 atoms, eps = 0.1, is trained on ``‖x‖`` over
[−2, 2]² (``hjax.train_sweep``, full-batch Adam). On it:

* **hallucination** — along 32 rays ``x = s v`` leaving the data (s up to 100× the data
  radius): ``|f(x) − z_k(x)|`` (k the dominant atom) against Prop 8.5's
  ``eps (N−1) e^{−Δ(x)/eps}`` (``hjax.attention_sink_bound`` of the logits), and the decay
  rate of the error in s against the predicted ``min_{j≠k} (W_k − W_j)·v / eps``;
* **poisoning** — an atom ``(w_p, b_p)`` inserted with excess ``e = z_p − f`` swept over
  [−2, 2]: the measured shift (the layer with the atom appended, minus the layer) against
  eq. 30 (``hjax.poisoning_shift``) and the bounds (i) ``[max(0, e), max(0, e) + eps log 2]``
  (attained at e = 0), (ii) the shift exceeds τ iff ``e > eps log(e^{τ/eps} − 1)``,
  (iii) for e < 0 the shift vanishes as eps → 0, below ``eps e^{e/eps}``;
* **NTK** — ``λ_min / λ_max`` of the bias NTK ``hjax.lse_layer_ntk`` at n distinct training
  inputs (Prop D.3: full rank for N ≥ n), at the trained parameters and eps from 0.01 to 1;
  rank ≤ N when n > N;
* **convexity in b** — the smallest eigenvalue of ``jax.hessian`` (autodiff, not the closed
  form) of ``b ↦ mean softplus(f(x_i; b) − y_i)`` at the trained and at random biases
  (Prop D.2: ≥ 0), and of the MSE (its remark: not convex; a negative eigenvalue must turn
  up).
"""

import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

import hjax
from experiments._common import Run, enable_x64, entry_point, parse_args, plt
from hjax.runner import format_table as table

NAME = "consequences"


def make_config(quick: bool) -> dict:
    return {
        "quick": quick,
        "n_atoms": 32,
        "eps": 0.1,
        "n_train": 400,
        "box": 2.0,
        "steps": 300 if quick else 3000,
        "lr": 0.01,
        "seed": 0,
        "rays": 32,
        "ray_scales": [1.0, 100.0, 40],
        "poison_excess": [-2.0, 2.0, 401],
        "poison_tau": 0.05,
        "defense_eps": np.logspace(-3, 0, 13).tolist(),
        "ntk_inputs": 24,
        "ntk_eps": [0.01, 0.03, 0.1, 0.3, 1.0],
        "random_biases": 4 if quick else 20,
    }


def _np_lse(z, eps):
    m = z.max(axis=-1)
    return m + eps * np.log(np.exp((z - m[..., None]) / eps).sum(axis=-1))


def train_layer(config: dict):
    rng = np.random.default_rng(config["seed"])
    x = rng.uniform(-config["box"], config["box"], size=(config["n_train"], 2))
    y = np.linalg.norm(x, axis=1)
    sweep = hjax.train_sweep(
        x,
        y,
        [config["n_atoms"]],
        config["eps"],
        optimizer=optax.adam(config["lr"]),
        steps=config["steps"],
    )
    layer = sweep.layer(0, config["n_atoms"])
    return x, y, np.asarray(layer.W), np.asarray(layer.b)


def hallucination(config, x, y, W, b) -> dict:
    eps = config["eps"]
    angles = np.linspace(0, 2 * np.pi, config["rays"], endpoint=False)
    v = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    lo, hi, k = config["ray_scales"]
    s = config["box"] * np.geomspace(lo, hi, int(k))
    pts = s[None, :, None] * v[:, None, :]  # (rays, scales, 2)
    z = pts @ W.T + b
    f = np.asarray(hjax.lse_layer(pts, W, b, eps))
    dominant = z.argmax(axis=-1)
    z_k = np.take_along_axis(z, dominant[..., None], axis=-1)[..., 0]
    error = f - z_k  # ≥ 0
    bound = np.asarray(hjax.attention_sink_bound(z, eps))
    ratio = np.max(error / bound)
    # decay rate on the far half of each ray, where the dominant atom is fixed
    rates, predicted = [], []
    for r in range(len(v)):
        far = slice(3 * int(k) // 4, None)
        kk = dominant[r, -1]
        ok = (dominant[r, far] == kk) & (error[r, far] > 1e-200)
        if ok.sum() < 4:
            continue
        slope = np.polyfit(s[far][ok], np.log(error[r, far][ok]), 1)[0]
        others = np.delete(np.arange(len(W)), kk)
        rates.append(-slope)
        predicted.append(np.min((W[kk] - W[others]) @ v[r]) / eps)
    rates, predicted = np.array(rates), np.array(predicted)
    stable = float(np.mean(dominant[:, int(k) // 2 :] == dominant[:, -1:]))
    return {
        "max_error_over_bound": float(ratio),
        "max_error_at_data_edge": float(error[:, 0].max()),
        "max_error_far": float(error[:, -1].max()),
        "rate_over_predicted": (rates / predicted).tolist(),
        "rays_fitted": int(rates.size),
        "dominant_stable_fraction": stable,
    }


def poisoning(config, x, y, W, b) -> dict:
    eps = config["eps"]
    pts = x[:64]
    f = _np_lse(pts @ W.T + b, eps)
    rng = np.random.default_rng(1)
    w_p = rng.normal(size=2)
    lo, hi, n = config["poison_excess"]
    excess = np.linspace(lo, hi, int(n))
    b_p = excess[:, None] + f[None, :] - (pts @ w_p)[None, :]  # z_p − f = e at every point
    z = pts @ W.T + b
    z_aug = np.concatenate(
        [np.broadcast_to(z, (len(excess),) + z.shape), (excess[:, None] + f[None, :])[..., None]],
        axis=-1,
    )
    measured = _np_lse(z_aug, eps) - f[None, :]  # (E, P): the layer with the atom appended
    shift = jax.vmap(lambda p, bp: hjax.poisoning_shift(p, W, b, eps, w_p, bp))
    eq30 = np.asarray(
        shift(np.broadcast_to(pts, b_p.shape + (2,)).reshape(-1, 2), b_p.reshape(-1))
    ).reshape(b_p.shape)
    identity = float(np.max(np.abs(eq30 - measured)))
    low = np.maximum(excess, 0)[:, None]
    violation = float(max(np.max(low - measured), np.max(measured - low - eps * np.log(2))))
    at_zero = measured[np.argmin(np.abs(excess))] / (eps * np.log(2))
    tau = config["poison_tau"]
    critical = eps * np.log(np.expm1(tau / eps))
    predicted_above = excess[:, None] > critical
    mismatch = int(np.sum((measured > tau) != predicted_above))
    # (iii) viscosity defence: fixed e = −0.5, eps → 0
    e = -0.5
    defense = []
    for de in config["defense_eps"]:
        fe = _np_lse(pts @ W.T + b, de)
        b_p = e + fe - pts @ w_p
        shift = np.asarray(
            jax.vmap(lambda p, bp, de=de: hjax.poisoning_shift(p, W, b, de, w_p, bp))(pts, b_p)
        )
        defense.append([float(shift.max()), de * np.exp(e / de)])
    defense = np.array(defense)
    return {
        "eq30_vs_augmented": identity,
        "bound_violation": violation,
        "tightness_at_zero": [float(at_zero.min()), float(at_zero.max())],
        "threshold": float(critical),
        "threshold_mismatches": mismatch,
        "defense_eps": config["defense_eps"],
        "defense_shift": defense[:, 0].tolist(),
        "defense_bound": defense[:, 1].tolist(),
        "defense_ratio_max": float(np.max(defense[:, 0] / defense[:, 1])),
    }


def ntk(config, x, y, W, b) -> dict:
    pts = x[: config["ntk_inputs"]]
    rng = np.random.default_rng(3)  # Prop D.3's setting: i.i.d. atoms (at initialisation)
    W0, b0 = rng.normal(size=W.shape), rng.normal(size=b.shape)
    ratios, init_ratios, min_eig = [], [], []
    for eps in config["ntk_eps"]:
        for WW, bb, out in ((W, b, ratios), (W0, b0, init_ratios)):
            lam = np.linalg.eigvalsh(np.asarray(hjax.lse_layer_ntk(pts, WW, bb, eps)))
            out.append(float(lam[0] / lam[-1]))
            min_eig.append(float(lam[0] / lam[-1]))
    over = x[: 2 * len(W)]  # n = 2N > N inputs: rank ≤ N
    lam = np.linalg.eigvalsh(np.asarray(hjax.lse_layer_ntk(over, W, b, config["eps"])))
    return {
        "eps": config["ntk_eps"],
        "min_over_max": ratios,
        "init_min_over_max": init_ratios,
        "psd_worst": float(min(min_eig)),
        "rank_when_n_exceeds_N": int(np.sum(lam > 1e-10 * lam[-1])),
        "N": len(W),
    }


def convexity(config, x, y, W, b) -> dict:
    eps = config["eps"]
    xs, ys = jnp.asarray(x[:64]), jnp.asarray(y[:64])

    def loss(bias, kind):
        f = eps * jax.nn.logsumexp((xs @ W.T + bias) / eps, axis=-1)
        r = f - ys
        return jnp.mean(jax.nn.softplus(r)) if kind == "softplus" else jnp.mean(r**2)

    rng = np.random.default_rng(2)
    biases = [b] + [b + rng.normal(size=b.shape) for _ in range(config["random_biases"])]
    out = {}
    for kind in ("softplus", "mse"):
        hess = jax.jit(jax.hessian(lambda bb, kind=kind: loss(bb, kind)))
        lam = [np.linalg.eigvalsh(np.asarray(hess(jnp.asarray(bb)))) for bb in biases]
        out[kind] = {
            "min_eig": float(min(v[0] for v in lam)),
            "max_eig": float(max(v[-1] for v in lam)),
        }
    return out


def _figure(units, config):
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    p = units["poisoning"]
    ax = axes[0]
    ax.loglog(p["defense_eps"], p["defense_shift"], "o-", label="max shift, e = −0.5")
    ax.loglog(p["defense_eps"], p["defense_bound"], "--", label="eps·exp(e/eps)")
    ax.set(xlabel="eps", ylabel="shift", title="poisoning: viscosity defence (Prop E.3 iii)")
    ax.set_ylim(1e-30, None)
    ax.legend(fontsize=7)
    ax = axes[1]
    n = units["ntk"]
    ax.loglog(n["eps"], np.abs(n["min_over_max"]), "o-", label="trained")
    ax.loglog(n["eps"], np.abs(n["init_min_over_max"]), "s-", label="i.i.d. atoms")
    ax.legend(fontsize=7)
    ax.set(xlabel="eps", ylabel="λ_min/λ_max", title="bias NTK at n ≤ N inputs (Prop D.3)")
    ax = axes[2]
    h = units["hallucination"]
    ax.hist(h["rate_over_predicted"], bins=20)
    ax.set(
        xlabel="decay rate / predicted",
        ylabel="rays",
        title="hallucination: exponential pinning (Prop 8.5)",
    )
    fig.tight_layout()
    return fig


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(NAME, __doc__, argv)
    enable_x64()
    config = make_config(args.quick)
    run = Run(NAME, args, config)

    def train(_):
        x, y, W, b = train_layer(config)
        return {
            "W": W.tolist(),
            "b": b.tolist(),
            "train_rmse": float(np.sqrt(np.mean((_np_lse(x @ W.T + b, config["eps"]) - y) ** 2))),
        }

    run.run_units(["train"], train)
    rng = np.random.default_rng(config["seed"])
    x = rng.uniform(-config["box"], config["box"], size=(config["n_train"], 2))
    y = np.linalg.norm(x, axis=1)
    W, b = np.asarray(run.units["train"]["W"]), np.asarray(run.units["train"]["b"])
    measures = {
        "hallucination": hallucination,
        "poisoning": poisoning,
        "ntk": ntk,
        "convexity": convexity,
    }
    run.run_units(list(measures), lambda k: measures[k](config, x, y, W, b))
    u = run.units
    h, p, n, c = u["hallucination"], u["poisoning"], u["ntk"], u["convexity"]
    rate = np.asarray(h["rate_over_predicted"])
    claims = [
        {
            "claim": "Prop 8.5: |f − z_k| ≤ eps (N−1) e^{−Δ/eps} on rays leaving the data",
            "measured": h["max_error_over_bound"],
            "expected": "max ratio ≤ 1",
            "holds": h["max_error_over_bound"] <= 1 + 1e-9,
        },
        {
            "claim": "Prop 8.5: far-field error decays at min_j (W_k − W_j)·v / eps",
            "measured": float(np.max(np.abs(rate - 1))) if rate.size else float("nan"),
            "expected": "|rate/predicted − 1| ≤ 0.05 on every fitted ray",
            "holds": bool(rate.size) and float(np.max(np.abs(rate - 1))) <= 0.05,
        },
        {
            "claim": "Prop E.3 eq. 30 = the layer with the atom appended",
            "measured": p["eq30_vs_augmented"],
            "expected": "≤ 1e-12",
            "holds": p["eq30_vs_augmented"] <= 1e-12,
        },
        {
            "claim": "Prop E.3 (i): max(0,e) ≤ shift ≤ max(0,e) + eps log 2",
            "measured": p["bound_violation"],
            "expected": "violation ≤ 1e-12",
            "holds": p["bound_violation"] <= 1e-12,
        },
        {
            "claim": "Prop E.3 (i) attained at e = 0: shift / (eps log 2)",
            "measured": p["tightness_at_zero"][0],
            "expected": "= 1 to 1e-12",
            "holds": abs(p["tightness_at_zero"][0] - 1) <= 1e-12
            and abs(p["tightness_at_zero"][1] - 1) <= 1e-12,
        },
        {
            "claim": "Prop E.3 (ii): shift > τ iff e > eps log(e^{τ/eps} − 1)",
            "measured": float(p["threshold_mismatches"]),
            "expected": "0 mismatches",
            "holds": p["threshold_mismatches"] == 0,
        },
        {
            "claim": "Prop E.3 (iii): shift ≤ eps e^{e/eps} → 0 as eps → 0 (e < 0)",
            "measured": p["defense_ratio_max"],
            "expected": "max ratio ≤ 1",
            "holds": p["defense_ratio_max"] <= 1 + 1e-9,
        },
        {
            "claim": "bias NTK is PSD (closed form), trained and i.i.d. atoms",
            "measured": n["psd_worst"],
            "expected": "λ_min/λ_max ≥ −1e-12",
            "holds": n["psd_worst"] >= -1e-12,
        },
        {
            "claim": "bias NTK rank ≤ N when n = 2N",
            "measured": float(n["rank_when_n_exceeds_N"]),
            "expected": f"≤ {n['N']}",
            "holds": n["rank_when_n_exceeds_N"] <= n["N"],
        },
        {
            "claim": "Prop D.2: softplus loss convex in b (autodiff Hessian)",
            "measured": c["softplus"]["min_eig"] / c["softplus"]["max_eig"],
            "expected": "λ_min/λ_max ≥ −1e-12",
            "holds": c["softplus"]["min_eig"] >= -1e-12 * c["softplus"]["max_eig"],
        },
        {
            "claim": "Prop D.2 remark: MSE is not convex in b (a negative eigenvalue)",
            "measured": c["mse"]["min_eig"] / c["mse"]["max_eig"],
            "expected": "λ_min/λ_max < −1e-8",
            "holds": c["mse"]["min_eig"] < -1e-8 * c["mse"]["max_eig"],
        },
    ]
    comparisons = [
        {
            "comparison": f"Prop D.3 full rank (λ_min/λ_max > 1e-10), {which}, eps = {e:g}",
            "measured": r,
            "verdict": "AGREES" if r > 1e-10 else "DIFFERS",
        }
        for which, key in (("i.i.d. atoms", "init_min_over_max"), ("trained", "min_over_max"))
        for e, r in zip(n["eps"], n[key], strict=True)
    ]
    print(
        table(
            ["comparison with the paper", "measured", "verdict"],
            [[x["comparison"], f"{x['measured']:.3g}", x["verdict"]] for x in comparisons],
        )
    )
    return run.finish(
        {"train_rmse": u["train"]["train_rmse"], "comparisons": comparisons},
        claims,
        figure=lambda: _figure(u, config),
    )


if __name__ == "__main__":
    sys.exit(main())
