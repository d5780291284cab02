r"""Experiment H: the attribution phase diagram, particle (eps → 0) to wave (eps → ∞).

``python -m experiments.phase_diagram [--quick] [--out DIR] [--resume]``

Setting (REFERENCE row H): d = 2, N = 16 atoms in two clusters of 8 (σ = 0.4) around
(−1, −1) with g = 0 and (1, 1) with g = 1, drawn as the reference draws them (legacy NumPy
seed 42); the reference's t = 1 (cost |x − y|²/(4t)) is our t = 2. For 60 values of eps in
logspace(−2, 1) (one compiled call: eps is an array leaf) it maps over [−3, 3]²:

* the attribution entropy ``H(x) = −Σ π_j log π_j`` (``hjax.attribution_entropy``);
* the dominant-atom partition ``argmax_j π_j(x)`` (the power diagram of the atoms: the same
  for every eps) and its *strength*, the share of the domain where one atom explains more
  than half of the output (``max_j π_j > 1/2``);
* the cluster attribution ``ŷ(x) = Σ_j π_j g_j`` (Prop F.1's soft prediction, here the
  weight of cluster 2).

The eps at which the attribution changes regime is *measured* as the peaks of the
domain-averaged heat capacity ``C(eps) = dH/d log eps = Var_π(z)/eps²`` (z the logits; the
entropy's susceptibility, largest where attribution mass moves fastest between atoms),
located by golden-section search on the closed form and cross-checked with central
differences of H in log eps. Also measured: ``0 <= H <= log N``; ``H`` non-decreasing in
eps at every point (``dH/d eps = Var_π(z)/eps³ >= 0``); the limits ``H → 0`` at a unique
argmax as eps → 0 and ``log N − H ≈ Var_unif(z)/(2 eps²)`` as eps → ∞; and the entropy at
three query points (the cluster centres and the midpoint), as in the reference's panel (a).
"""

import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize_scalar

import hjax
from experiments._common import Run, enable_x64, entry_point, parse_args, plt
from hjax.runner import format_table as table

NAME = "phase_diagram"

#: REFERENCE.md row H (reference's t = 1 in |x−y|²/(4t) = our t = 2).
REFERENCE = {"eps_star": 0.25, "frames": 60, "eps_range": [0.01, 10.0], "t_reference": 1.0}

CENTRES = ((-1.0, -1.0), (1.0, 1.0))


def reference_atoms() -> tuple[np.ndarray, np.ndarray]:
    """The reference's two-cluster support: ``(y (16, 2), g (16,))``.

    ``numpy.random.seed(42)`` then two ``randn(8, 2)`` draws (the same stream as one
    ``RandomState(42).standard_normal((16, 2))``), scaled by 0.4 and shifted to the centres;
    g = 0 on the first cluster, 1 on the second.
    """
    noise = np.random.RandomState(42).standard_normal((16, 2)) * 0.4
    y = noise + np.repeat(np.array(CENTRES), 8, axis=0)
    return y, np.repeat([0.0, 1.0], 8)


def make_config(quick: bool) -> dict:
    return {
        "quick": quick,
        "d": 2,
        "n_atoms": 16,
        "t": 2.0,
        "box": [-3.0, 3.0],
        "grid": 61 if quick else 201,
        "eps": np.logspace(-2, 1, 60).tolist(),
        "queries": [[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]],
        "limit_eps": {"small_gap_fractions": [10.0, 20.0, 40.0], "large": [100.0, 1000.0]},
        "fd_step_log_eps": 1e-4,
    }


@jax.jit
def _maps(x, W, b, g, eps):
    """Per eps: H, max π, ŷ = π·g and the heat capacity Var_π(z)/eps² on the grid x."""

    def one(e):
        pi = hjax.lse_layer_gibbs(x, W, b, e)
        z = x @ W.T + b
        mean = jnp.sum(pi * z, axis=-1, keepdims=True)
        capacity = jnp.sum(pi * (z - mean) ** 2, axis=-1) / e**2
        return hjax.attribution_entropy(x, W, b, e), pi.max(-1), pi @ g, capacity

    return jax.lax.map(one, eps)


def _mean_capacity(x, W, b, g, log_eps):
    return float(jnp.mean(_maps(x, W, b, g, jnp.exp(jnp.asarray([log_eps])))[3]))


def compute(config: dict) -> dict:
    y, g = reference_atoms()
    W, b = hjax.hj_to_lse(y, g, config["t"])
    lo, hi = config["box"]
    axis = np.linspace(lo, hi, config["grid"])
    x = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    eps = np.asarray(config["eps"])
    H, top, yhat, capacity = (np.asarray(a) for a in _maps(x, W, b, g, eps))
    n = len(y)
    log_n = float(np.log(n))
    mean_H = H.mean(axis=1)
    mean_C = capacity.mean(axis=1)
    # regime changes: interior local maxima of the mean heat capacity, refined on log eps
    peaks = []
    log_eps = np.log(eps)
    for k in range(1, len(eps) - 1):
        if mean_C[k] >= mean_C[k - 1] and mean_C[k] >= mean_C[k + 1]:
            res = minimize_scalar(
                lambda s: -_mean_capacity(x, W, b, g, s),
                bracket=(log_eps[k - 1], log_eps[k], log_eps[k + 1]),
                tol=1e-10,
            )
            h = config["fd_step_log_eps"]
            fd = (
                np.mean(np.asarray(hjax.attribution_entropy(x, W, b, np.exp(res.x + h))))
                - np.mean(np.asarray(hjax.attribution_entropy(x, W, b, np.exp(res.x - h))))
            ) / (2 * h)
            peaks.append(
                {"eps": float(np.exp(res.x)), "capacity": float(-res.fun), "fd": float(fd)}
            )
    # closed form C vs central differences of H at every frame (independent check)
    h = config["fd_step_log_eps"]
    H_plus = np.asarray(_maps(x, W, b, g, eps * np.exp(h))[0])
    H_minus = np.asarray(_maps(x, W, b, g, eps * np.exp(-h))[0])
    fd_error = float(np.max(np.abs((H_plus - H_minus) / (2 * h) - capacity)) / np.max(capacity))
    # limits at the query points (unique argmax there)
    q = np.asarray(config["queries"])
    z = q @ np.asarray(W).T + np.asarray(b)
    zs = np.sort(z, axis=1)
    gap = zs[:, -1] - zs[:, -2]
    small = []
    delta = zs[:, -1:] - z  # gaps to the dominant atom (0 for it)
    for fraction in config["limit_eps"]["small_gap_fractions"]:
        e = gap / fraction  # one eps per query: Δ_min/eps = fraction
        Hq = np.array(
            [float(hjax.attribution_entropy(qi, W, b, ei)) for qi, ei in zip(q, e, strict=True)]
        )
        # leading term Σ_{j≠k} e^{-Δ_j/eps}(1 + Δ_j/eps); the next is O(e^{-2Δ_min/eps})
        r = np.exp(-delta / e[:, None])
        lead = np.sum(np.where(delta > 0, r * (1 + delta / e[:, None]), 0.0), axis=1)
        small.append(
            {
                "gap_over_eps": fraction,
                "eps": e.tolist(),
                "H": Hq.tolist(),
                "ratio_to_leading": (Hq / lead).tolist(),
            }
        )
    large = []
    var_unif = z.var(axis=1)
    for e in config["limit_eps"]["large"]:
        Hq = np.asarray(hjax.attribution_entropy(q, W, b, e))
        large.append(
            {
                "eps": e,
                "deficit": (log_n - Hq).tolist(),
                "ratio": ((log_n - Hq) * 2 * e**2 / var_unif).tolist(),
            }
        )
    dominant = np.asarray(hjax.lse_layer_gibbs(x, W, b, 0.0)).argmax(-1)
    return {
        "eps": eps.tolist(),
        "mean_entropy": mean_H.tolist(),
        "normalized_mean_entropy": (mean_H / log_n).tolist(),
        "one_atom_share": (top > 0.5).mean(axis=1).tolist(),
        "mean_capacity": mean_C.tolist(),
        "H_min": float(H.min()),
        "H_max": float(H.max()),
        "log_n": log_n,
        "max_decrease_in_eps": float(np.max(H[:-1] - H[1:])),
        "capacity_fd_rel_error": fd_error,
        "peaks": peaks,
        "query_entropy": np.asarray(_maps(q, W, b, g, eps)[0]).T.tolist(),
        "query_gap": gap.tolist(),
        "small_eps": small,
        "large_eps": large,
        "dominant_atom_counts": np.bincount(dominant, minlength=n).tolist(),
        "H_frames": {
            str(k): H[k].reshape(len(axis), len(axis)).tolist() for k in (0, 20, 30, 40, 59)
        },
        "yhat_frames": {
            str(k): yhat[k].reshape(len(axis), len(axis)).tolist() for k in (0, 20, 30, 40, 59)
        },
        "dominant": dominant.reshape(len(axis), len(axis)).tolist(),
    }


def _figure(config: dict, r: dict):
    y, _ = reference_atoms()
    lo, hi = config["box"]
    eps = np.asarray(r["eps"])
    fig = plt.figure(figsize=(15, 8.6))
    grid = fig.add_gridspec(2, 4)
    for col, k in enumerate(("0", "30", "40", "59")):
        ax = fig.add_subplot(grid[0, col])
        im = ax.imshow(
            np.asarray(r["H_frames"][k]),
            origin="lower",
            extent=(lo, hi, lo, hi),
            cmap="magma_r",
            vmin=0,
            vmax=r["log_n"],
        )
        ax.contour(
            np.linspace(lo, hi, len(r["dominant"])),
            np.linspace(lo, hi, len(r["dominant"])),
            np.asarray(r["dominant"]),
            levels=np.arange(17) - 0.5,
            colors="w",
            linewidths=0.4,
        )
        ax.scatter(y[:8, 0], y[:8, 1], c="#00a8d6", s=12, edgecolors="k", linewidths=0.3)
        ax.scatter(
            y[8:, 0], y[8:, 1], c="#e85d26", marker="^", s=12, edgecolors="k", linewidths=0.3
        )
        ax.set_title(f"H(x), ε = {eps[int(k)]:.3g} (white: dominant-atom cells)", fontsize=8)
        ax.set(xlabel="$x_1$", ylabel="$x_2$")
    fig.colorbar(im, ax=ax, fraction=0.046, label="H")
    ax = fig.add_subplot(grid[1, 0:2])
    ax.semilogx(eps, r["normalized_mean_entropy"], "k-", label="mean H / log N over [−3, 3]²")
    ax.semilogx(eps, r["one_atom_share"], "-", color="#1565C0", label="share with max π > 1/2")
    for (label, color), Hq in zip(
        (("x = (−1, −1)", "#00a8d6"), ("x = (0, 0)", "#E65100"), ("x = (1, 1)", "#B71C1C")),
        r["query_entropy"],
        strict=True,
    ):
        ax.semilogx(
            eps, np.asarray(Hq) / r["log_n"], "--", color=color, lw=1, label=f"H/log N at {label}"
        )
    for p in r["peaks"]:
        ax.axvline(p["eps"], color="green", ls=":", lw=1.5)
    ax.axvline(REFERENCE["eps_star"], color="gray", ls="-.", lw=1, label="reference ε* = 0.25")
    ax.set(xlabel="ε", ylabel="fraction", title="particle → wave")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(grid[1, 2])
    ax.semilogx(eps, r["mean_capacity"], "g-")
    for p in r["peaks"]:
        ax.axvline(p["eps"], color="green", ls=":", lw=1.5)
        ax.annotate(f"ε = {p['eps']:.3g}", (p["eps"], p["capacity"]), fontsize=7)
    ax.set(
        xlabel="ε", ylabel="mean dH/d log ε = Var_π(z)/ε²", title="heat capacity: regime changes"
    )
    ax = fig.add_subplot(grid[1, 3])
    im = ax.imshow(
        np.asarray(r["yhat_frames"]["30"]),
        origin="lower",
        extent=(lo, hi, lo, hi),
        cmap="RdBu_r",
        vmin=0,
        vmax=1,
    )
    fig.colorbar(im, ax=ax, fraction=0.046, label="ŷ = Σ π_j g_j")
    ax.set_title(f"cluster attribution, ε = {eps[30]:.3g}", fontsize=8)
    fig.tight_layout()
    return fig


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(NAME, __doc__, argv)
    enable_x64()
    config = make_config(args.quick)
    run = Run(NAME, args, config)
    run.run_units(["maps"], lambda _: compute(config))
    r = run.units["maps"]
    print(
        table(
            ["eps", "mean H / log N", "share max π > 1/2", "mean dH/dlog eps"],
            [
                [f"{e:.3g}", f"{h:.3f}", f"{s:.3f}", f"{c:.3f}"]
                for e, h, s, c in zip(
                    r["eps"],
                    r["normalized_mean_entropy"],
                    r["one_atom_share"],
                    r["mean_capacity"],
                    strict=True,
                )
            ][::6],
        )
    )
    small_ratio = max(abs(v - 1) for row in r["small_eps"][-1:] for v in row["ratio_to_leading"])
    large_ratio = max(abs(v - 1) for row in r["large_eps"][-1:] for v in row["ratio"])
    peak_fd = max(
        (abs(p["fd"] - p["capacity"]) / p["capacity"] for p in r["peaks"]), default=np.inf
    )
    summary = {
        "regime_change_eps": [p["eps"] for p in r["peaks"]],
        "peaks": r["peaks"],
        "normalized_mean_entropy": [
            [e, h] for e, h in zip(r["eps"], r["normalized_mean_entropy"], strict=True)
        ],
        "one_atom_share": [[e, s] for e, s in zip(r["eps"], r["one_atom_share"], strict=True)],
        "eps_half_entropy": float(np.interp(0.5, r["normalized_mean_entropy"], r["eps"])),
        "reference_eps_star": REFERENCE["eps_star"],
    }
    claims = [
        {
            "claim": "0 ≤ H ≤ log N on the grid, every eps",
            "measured": r["H_max"] - r["log_n"],
            "expected": "H_max − log N ≤ 0 and H_min ≥ 0",
            "holds": r["H_max"] <= r["log_n"] + 1e-12 and r["H_min"] >= 0,
        },
        {
            "claim": "H non-decreasing in eps at every point (dH/deps = Var_π(z)/eps³)",
            "measured": r["max_decrease_in_eps"],
            "expected": "max decrease ≤ 1e-12",
            "holds": r["max_decrease_in_eps"] <= 1e-12,
        },
        {
            "claim": "dH/dlog eps = Var_π(z)/eps² vs central differences (rel.)",
            "measured": r["capacity_fd_rel_error"],
            "expected": "≤ 1e-6",
            "holds": r["capacity_fd_rel_error"] <= 1e-6,
        },
        {
            "claim": "eps → 0, unique argmax: H / Σ e^{−Δ/eps}(1 + Δ/eps) → 1 (H ≈ 1e-16)",
            "measured": small_ratio,
            "expected": "|ratio − 1| ≤ 1e-9 at eps = Δ_min/40",
            "holds": small_ratio <= 1e-9,
        },
        {
            "claim": "eps → ∞: (log N − H)·2eps²/Var_unif(z) → 1",
            "measured": large_ratio,
            "expected": "|ratio − 1| ≤ 1e-3 at eps = 1000",
            "holds": large_ratio <= 1e-3,
        },
        {
            "claim": "regime change: peaks of the mean heat capacity, golden section = FD",
            "measured": peak_fd,
            "expected": "≥ 1 peak; rel. diff ≤ 1e-5",
            "holds": bool(r["peaks"]) and peak_fd <= 1e-5,
        },
    ]
    return run.finish(
        summary, claims, figure=lambda: _figure(config, r), extra={"reference": REFERENCE}
    )


if __name__ == "__main__":
    sys.exit(main())
