"""Experiments E, F and the §8 consequences: quick runs, their files, their stored values
re-checked from the stored parameters (not from the scripts' verdicts)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments import (  # noqa: E402
    consequences,
    generalization,
    robustness_cifar,
    robustness_mnist,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run_quick(module, out: Path, *extra: str) -> dict:
    """``main(["--quick", "--out", out, *extra])``: exit 0, the three files, parseable."""
    assert module.main(["--quick", "--out", str(out), *extra]) == 0
    config = json.loads((out / "config.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert config["experiment"] == results["experiment"] == module.NAME
    assert config["config"] == results["config"]
    assert results["config"]["quick"] is True and results["complete"] is True
    assert results["provenance"]["x64"] is True
    assert all(c["holds"] for c in results["claims"])
    assert (out / "figure.png").read_bytes()[:8] == PNG_MAGIC
    return results


def _np_lse(z, eps):
    m = z.max(axis=-1)
    return m + eps * np.log(np.exp((z - m[..., None]) / eps).sum(axis=-1))


def test_cifar_without_data_says_so_and_exits_2(tmp_path, capsys):
    """No offline CIFAR-10: exit 2 with how to supply it, nothing written."""
    assert robustness_cifar.main(["--quick", "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "not available offline" in err and "--data" in err
    assert not (tmp_path / "f").exists()


def test_cifar_rejects_a_folder_without_batches(tmp_path):
    with pytest.raises(SystemExit, match="cifar-10-batches-py"):
        robustness_cifar.main(["--quick", "--out", str(tmp_path / "f"), "--data", str(tmp_path)])


def _mnist_source(tmp_path: Path) -> list[str]:
    """The packaged MNIST if installed (or cached); else a small synthetic stand-in."""
    try:
        import pureml  # noqa: F401

        return []
    except ImportError:
        if robustness_mnist.CACHE.exists():
            return []
    rng = np.random.default_rng(0)
    proto = rng.uniform(0, 255, size=(10, 8, 8))
    y = rng.integers(0, 10, size=5000)
    yt = rng.integers(0, 10, size=500)
    noisy = lambda lab: np.clip(proto[lab] + 40 * rng.normal(size=(lab.size, 8, 8)), 0, 255)
    path = tmp_path / "standin.npz"
    np.savez(path, x_train=noisy(y), y_train=y, x_test=noisy(yt), y_test=yt)
    return ["--data", str(path)]


@pytest.mark.slow
def test_mnist_quick(tmp_path):
    """Experiment E: bounds recomputed from the stored W and readout; no certified ball
    flipped; flips found only outside; radii ≥ eq. 15."""
    results = _run_quick(robustness_mnist, tmp_path / "e", *_mnist_source(tmp_path))
    config, units = results["config"], results["units"]
    trained = units["train"]
    for i, eps in enumerate(config["eps"]):
        u = units[f"eps={eps:g}"]
        W = np.asarray(trained["W"][i])
        assert W.shape == (config["n_atoms"], config["pca"])
        D = np.max(np.linalg.norm(W[:, None] - W[None], axis=-1))
        R = np.linalg.norm(W, axis=1).max()
        a = abs(u["readout_a"])
        assert u["bound_D"] == pytest.approx(a * D**2 / (4 * eps), rel=1e-10)
        assert u["bound_R"] == pytest.approx(a * R**2 / eps, rel=1e-10)
        assert u["hessian_test_max"] <= u["hessian_sup_found"] <= u["bound_D"] * (1 + 1e-9)
        assert u["attacks_inside_flipped"] == 0
        ff = np.asarray(u["flip_factor"], dtype=float)
        assert np.all(ff[np.isfinite(ff)] >= 1)
        assert u["radius_over_paper_min"] >= 1 - 1e-12
        assert np.all(np.asarray(u["radii"]) > 0)


@pytest.mark.slow
def test_generalization_quick(tmp_path):
    """Thm 8.1 / Prop E.5 quick run: eps* on the grid, the comparisons carry verdicts."""
    results = _run_quick(generalization, tmp_path / "g")
    config = results["config"]
    for d in config["eps_star"]["dims"]:
        u = results["units"][f"eps_star/d={d}"]
        val = np.asarray(u["val_rmse"])
        eps = np.asarray(config["eps_star"]["eps"])
        np.testing.assert_array_equal(u["eps_star"], eps[np.argmin(val, axis=0)])
        assert set(u["quadrature_eps_star"]) <= set(np.union1d([0.0], eps))
    verdicts = {c["verdict"] for c in results["summary"]["comparisons"]}
    assert verdicts <= {"AGREES", "DIFFERS", "n/a"}


@pytest.mark.slow
def test_consequences_quick(tmp_path):
    """Hallucination bound recomputed on the stored layer far from the data; NTK PSD."""
    results = _run_quick(consequences, tmp_path / "c")
    config = results["config"]
    W = np.asarray(results["units"]["train"]["W"])
    b = np.asarray(results["units"]["train"]["b"])
    eps = config["eps"]
    x = 50 * np.array([[1.0, 0.3], [-0.2, 1.0]])
    z = x @ W.T + b
    zs = np.sort(z, axis=-1)
    err = _np_lse(z, eps) - zs[:, -1]
    assert np.all(err <= eps * (len(W) - 1) * np.exp(-(zs[:, -1] - zs[:, -2]) / eps) + 1e-15)
    p = results["units"]["poisoning"]
    assert p["eq30_vs_augmented"] <= 1e-12 and p["threshold_mismatches"] == 0
    n = results["units"]["ntk"]
    assert n["rank_when_n_exceeds_N"] <= len(W)
