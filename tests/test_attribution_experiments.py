"""Experiments H (phase_diagram) and I (bifurcation): quick runs, their files and claims, and
the stored measurements re-checked independently (NumPy / plain autodiff, not the scripts)."""

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments import bifurcation, phase_diagram  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run_quick(module, out: Path) -> dict:
    assert module.main(["--quick", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert config["experiment"] == results["experiment"] == module.NAME
    assert config["config"] == results["config"]
    assert results["config"]["quick"] is True and results["complete"] is True
    assert results["provenance"]["x64"] is True
    assert all(c["holds"] for c in results["claims"])
    assert (out / "figure.png").read_bytes()[:8] == PNG_MAGIC
    assert not list(out.glob(".*.tmp"))
    return results


def _layer():
    y, g = phase_diagram.reference_atoms()
    t = 2.0
    return y, g, y / t, -(np.sum(y * y, axis=1) / (2 * t) + g)  # W = y/t, b (THEORY §3)


def _gibbs(x, W, b, eps):
    z = x @ W.T + b
    p = np.exp((z - z.max(-1, keepdims=True)) / eps)
    return p / p.sum(-1, keepdims=True), z


def _naive_entropy(x, W, b, eps):
    log_pi = jax.nn.log_softmax((W @ x + b) / eps)
    return -jnp.sum(jnp.exp(log_pi) * log_pi)


def test_reference_atoms():
    y, g = phase_diagram.reference_atoms()
    legacy = np.random.RandomState(42)
    expected = np.vstack([legacy.randn(8, 2) * 0.4 - 1.0, legacy.randn(8, 2) * 0.4 + 1.0])
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(g, [0.0] * 8 + [1.0] * 8)


@pytest.mark.slow
def test_phase_diagram(tmp_path):
    results = _run_quick(phase_diagram, tmp_path)
    u = results["units"]["maps"]
    config = results["config"]
    _, _, W, b = _layer()
    lo, hi = config["box"]
    axis = np.linspace(lo, hi, config["grid"])
    x = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    for k in (0, 25, 59):
        eps = u["eps"][k]
        p, z = _gibbs(x, W, b, eps)
        H = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), -1)
        assert u["normalized_mean_entropy"][k] == pytest.approx(H.mean() / np.log(16), rel=1e-9)
        var = np.sum(p * (z - np.sum(p * z, -1, keepdims=True)) ** 2, -1)
        assert u["mean_capacity"][k] == pytest.approx((var / eps**2).mean(), rel=1e-9)
        assert u["one_atom_share"][k] == pytest.approx((p.max(-1) > 0.5).mean())
    assert np.all(np.diff(u["normalized_mean_entropy"]) > 0)
    # each regime-change eps is a local maximum of the NumPy mean heat capacity
    for peak in u["peaks"]:
        caps = []
        for eps in peak["eps"] * np.exp([-0.05, 0.0, 0.05]):
            p, z = _gibbs(x, W, b, eps)
            caps.append(
                np.mean(np.sum(p * (z - np.sum(p * z, -1, keepdims=True)) ** 2, -1)) / eps**2
            )
        assert caps[1] > caps[0] and caps[1] > caps[2]
        assert peak["capacity"] == pytest.approx(caps[1], rel=1e-9)
    assert results["summary"]["regime_change_eps"] == [p["eps"] for p in u["peaks"]]


@pytest.mark.slow
def test_bifurcation(tmp_path):
    results = _run_quick(bifurcation, tmp_path)
    summary = results["summary"]
    cont = results["units"]["continuation"]
    _, _, W, b = _layer()
    explained = summary["explained"]
    assert [[r["eps"], r["count"]] for r in explained] == summary["critical_points"]
    hess = jax.hessian(_naive_entropy)
    grad = jax.grad(_naive_entropy)
    for r in explained:
        kinds = [p["kind"] for p in r["points"]]
        assert r["count"] == len(r["points"])
        assert (r["minima"], r["saddles"], r["maxima"]) == (
            kinds.count("minimum"),
            kinds.count("saddle"),
            kinds.count("maximum"),
        )
        assert r["index_sum"] == r["minima"] + r["maxima"] - r["saddles"]
        for p in r["points"]:
            x = np.asarray(p["x"])
            assert np.all(np.abs(x) <= 3.0)
            h = np.asarray(hess(x, W, b, r["eps"]))
            g = np.asarray(grad(x, W, b, r["eps"]))
            # a root: the Newton step of the independent autodiff system is tiny, up to the
            # round-off of the naive −Σπ log π (absolute ~1e-16/eps in ∇H) over the smallest
            # curvature — deep in a basin (H ~ 1e-7) that naive reference is the coarser one
            if p["resolved"]:
                step = np.linalg.norm(np.linalg.solve(h, g))
                floor = 1e-14 / (r["eps"] * np.min(np.abs(np.linalg.eigvalsh(h))))
                assert step < 1e-9 + floor
            if p["resolved"]:
                n_neg = int(np.sum(np.linalg.eigvalsh(h) < 0))
                assert {0: "minimum", 1: "saddle", 2: "maximum"}[n_neg] == p["kind"]
    # folds: ∇H = 0 and det ∇²H = 0 (relative), independent autodiff
    assert summary["n_folds"] == len(cont["folds"]) > 0
    for f in cont["folds"]:
        x, eps = np.asarray(f["x"]), f["eps"]
        h = np.asarray(hess(x, W, b, eps))
        ev = np.linalg.eigvalsh(h)
        assert np.min(np.abs(ev)) < 1e-5 * np.max(np.abs(ev))
        assert np.linalg.norm(grad(x, W, b, eps)) < 1e-8 * max(1.0, np.max(np.abs(ev)))
        assert f["det_sides"][0] * f["det_sides"][1] < 0
        assert f["eps_uncertainty"] <= 1e-6
    # every change of count between neighbouring eps is accounted for by the stored events
    for a, c in zip(explained[:-1], explained[1:], strict=True):
        folds = [f for f in cont["folds"] if a["eps"] < f["eps"] <= c["eps"]]
        cross = [x for x in cont["box_crossings"] if a["eps"] < x["eps"] <= c["eps"]]
        predicted = sum(-2 if f["annihilation"] else 2 for f in folds) + sum(
            x["change"] for x in cross
        )
        assert c["count"] - a["count"] == predicted
    assert explained[-1]["count"] == 1 and explained[-1]["maxima"] == 1
