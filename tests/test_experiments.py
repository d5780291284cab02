"""The experiment scripts (experiments/): quick runs in-process, their files, their claims, resume.

Each quick run writes ``config.json``, ``results.json`` and ``figure.png`` atomically; the
measured values are re-checked here from the stored results (not from the scripts'
verdicts), partly against independent recomputations from the stored parameters.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` (unlike `python -m pytest`) does not add the cwd
    sys.path.insert(0, str(ROOT))

from experiments import (  # noqa: E402
    attention_gibbs,
    hessian_bound,
    initial_data_recovery,
    transformer_identity,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run_quick(module, out: Path, *extra: str) -> dict:
    """``main(["--quick", "--out", out])``: exit 0, the three files there and parseable."""
    assert module.main(["--quick", "--out", str(out), *extra]) == 0
    config = json.loads((out / "config.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert config["experiment"] == results["experiment"] == module.NAME
    assert config["config"] == results["config"]
    assert results["config"]["quick"] is True
    assert results["complete"] is True
    assert results["provenance"]["x64"] is True
    assert {"jax", "hjax", "backend", "devices"} <= set(results["provenance"])
    assert all(c["verdict"] != "FAIL" for c in results["claims"])
    assert all(c["holds"] for c in results["claims"] if not c.get("paper"))
    assert (out / "figure.png").read_bytes()[:8] == PNG_MAGIC
    assert not list(out.glob(".*.tmp"))  # no temp files left behind
    return results


@pytest.fixture(scope="module")
def attention_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("attention_gibbs")
    return out, _run_quick(attention_gibbs, out)


def test_attention_gibbs(attention_results):
    """Attention = Vᵀ∇lse: vs hjax autodiff, plain JAX autodiff and NumPy, ≤ 1e-13, every d."""
    _, results = attention_results
    units = results["units"]
    assert sorted(u["d"] for u in units.values()) == [4, 8, 16, 32, 64]
    for u in units.values():
        assert u["eps"] == pytest.approx(np.sqrt(u["d"]))
        assert set(u["max_abs_error"]) == set(attention_gibbs.COMPARISONS)
        for err in u["max_abs_error"].values():
            assert 0.0 <= err <= 1e-13
        assert u["max_abs_output"] > 0.5  # outputs are O(1): the errors are not vacuous


def test_hessian_bound(tmp_path):
    """Cor 8.2 on trained fits: sup‖∇²f‖ ≤ D²/(4 eps) ≤ R²/eps, bounds recomputed from W."""
    results = _run_quick(hessian_bound, tmp_path)
    config = results["config"]
    units = list(results["units"].values())
    assert len(units) == len(config["eps"]) * len(config["seeds"])
    for u in units:
        w, eps = np.array(u["W"]), u["eps"]
        assert w.shape == (config["n_atoms"],)
        D2_4eps = (w.max() - w.min()) ** 2 / (4 * eps)  # independent of hjax's bound
        assert u["bound_D2_over_4eps"] == pytest.approx(D2_4eps, rel=1e-12)
        assert u["bound_R2_over_eps"] == pytest.approx(np.max(w**2) / eps, rel=1e-12)
        assert u["max_hessian"] <= u["bound_D2_over_4eps"] * (1 + 1e-9)
        assert u["bound_D2_over_4eps"] <= u["bound_R2_over_eps"] * (1 + 1e-12)
        assert u["max_hessian"] >= u["max_hessian_on_data_range"] > 0
        assert u["closed_vs_numpy_rel"] <= 1e-10 and u["closed_vs_autodiff_rel"] <= 1e-10
        assert np.isfinite(u["test_rmse"]) and u["test_rmse"] < 0.5
    # The fit is real: at the smallest eps the kink of |x| is resolved and the curvature
    # peak sits at the kink, close to the two-atom maximum (W = ±1 → 1/eps).
    sharp = min(units, key=lambda u: u["eps"])
    assert abs(sharp["argmax_x"]) < 0.1
    assert sharp["max_hessian"] > 0.5 / sharp["eps"]


def test_transformer_identity(tmp_path):
    """Thm 4.1 per sub-layer of an LSE-transformer block, u from hopf_cole: ≤ 1e-12."""
    results = _run_quick(transformer_identity, tmp_path)
    units = list(results["units"].values())
    assert [u["d_model"] for u in units] == results["config"]["d_model"]
    for u in units:
        assert set(u["max_abs_error"]) == set(transformer_identity.CHECKS)
        for err in u["max_abs_error"].values():
            assert 0.0 <= err <= 1e-12
        assert u["max_ffn_scale"] > 1.0  # the identity is tested on non-trivial values


def test_initial_data_recovery(tmp_path):
    """Identifiable design; recovery error of (y, g) decreases as eps decreases."""
    results = _run_quick(initial_data_recovery, tmp_path)
    design = results["design"]
    assert min(design["samples_per_atom"]) >= results["config"]["min_samples_per_atom"]
    assert design["reference_atoms_ever_minimiser"] == 2  # REFERENCE.md: only ±0.29
    assert sorted(design["reference_identifiable_atoms"]) == pytest.approx([-2 / 7, 2 / 7])
    eps = results["config"]["eps"]
    errors = results["summary"]["tropical"]["median_recovery_error"]
    by_eps = [e for _, e in sorted(zip(eps, errors, strict=True), reverse=True)]
    assert all(b < a for a, b in zip(by_eps, by_eps[1:], strict=False))
    assert by_eps[-1] < 0.05  # at eps = 0.04 every atom is recovered closely
    for u in results["units"].values():  # the kept restart has the lowest training loss
        assert u["train_mse"] == min(u["restart_train_mse"])


def test_matching_is_optimal():
    """The atom matching recovers a known permutation and beats every other one."""
    rng = np.random.default_rng(0)
    y, g = rng.normal(size=6), rng.normal(size=6)
    perm = rng.permutation(6)
    y_fit, g_fit = y[perm] + 1e-3, g[perm] - 1e-3  # fitted atom i is true atom perm[i]
    found = initial_data_recovery.match(y_fit, g_fit, y, g)
    assert np.array_equal(perm[found], np.arange(6))
    r = initial_data_recovery.recovery(y_fit, g_fit, y, g)
    assert r["recovery_error"] == pytest.approx(np.sqrt(2) * 1e-3)


def test_resume_skips_finished_units(attention_results, monkeypatch):
    """--resume recomputes nothing finished; after an interruption, only what is missing."""
    out, first = attention_results
    calls = []
    compute = attention_gibbs.compute_unit

    def counting(config, d):
        calls.append(d)
        return compute(config, d)

    monkeypatch.setattr(attention_gibbs, "compute_unit", counting)
    second = _run_quick(attention_gibbs, out, "--resume")
    assert calls == []
    assert second["units"] == first["units"]  # same timestamps: nothing recomputed
    assert sorted(second["resumed_units"]) == sorted(first["units"])

    # Simulate a run interrupted before its last unit: drop it from the stored results.
    path = out / "results.json"
    stored = json.loads(path.read_text())
    del stored["units"]["d=64"]
    stored["complete"] = False
    path.write_text(json.dumps(stored))
    third = _run_quick(attention_gibbs, out, "--resume")
    assert calls == [64]
    for key, unit in first["units"].items():
        if key != "d=64":
            assert third["units"][key]["finished_at"] == unit["finished_at"]
    assert third["units"]["d=64"]["finished_at"] != first["units"]["d=64"]["finished_at"]


def test_resume_refuses_another_config(attention_results, capsys):
    """--resume with a different configuration (full vs quick) refuses to mix the runs: exit 2."""
    out, _ = attention_results
    assert attention_gibbs.main(["--out", str(out), "--resume"]) == 2
    assert "different configuration" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b'{"schema": "hjax.runner/1", "units": {"d=4"', b"\xff"])
def test_corrupt_results_are_named_and_exit_two(tmp_path, capsys, content):
    """A truncated, empty or garbage results.json: a clear message naming it, exit 2, kept."""
    path = tmp_path / "results.json"
    path.write_bytes(content)
    assert attention_gibbs.main(["--quick", "--out", str(tmp_path), "--resume"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err
    assert path.read_bytes() == content


def test_unwritable_out_exits_two(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert attention_gibbs.main(["--quick", "--out", str(blocker / "sub")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_msa_vs_backprop_experiment(tmp_path):
    """E-MSA vs Adam (Li et al. 2018): claims re-checked from the stored curves, and the common
    starting loss recomputed by a NumPy forward-Euler loop on independently regenerated data."""
    from experiments import msa_vs_backprop

    results = _run_quick(msa_vs_backprop, tmp_path)
    config = results["config"]
    units = list(results["units"].values())
    assert [u["seed"] for u in units] == config["seeds"]
    n, d, depth = config["n"], config["d"], config["depth"]
    for u in units:
        msa, adam = np.array(u["msa"]), np.array(u["backprop"])
        assert msa.shape == adam.shape == (config["steps"],)
        assert msa[0] == adam[0]  # one network, two trainings
        assert msa[-1] < 0.5 * msa[0]
        assert msa[-1] <= 2.0 * adam[-1]
        rng = np.random.default_rng(u["seed"])
        z = rng.uniform(-1.0, 1.0, (n, 2))
        y = np.where(np.sum(z**2, axis=1) < 2 / np.pi, 1.0, -1.0)
        y = np.where(rng.uniform(size=n) < config["label_noise"], -y, y)
        x = np.concatenate([z, np.zeros((n, d - 2))], axis=1)
        W, b = np.array(u["initial_W"]), np.array(u["initial_b"])
        assert W.shape == (depth, d, d) and b.shape == (depth, d)
        h = config["T"] / depth
        for layer in range(depth):
            x = x + h * np.tanh(x @ W[layer].T + b[layer])
        assert 0.5 * np.mean((x[:, -1] - y) ** 2) == pytest.approx(msa[0], rel=1e-12)


def _numpy_lse(x, W, b, eps):
    z = x @ W.T + b
    m = z.max(axis=1)
    return m + eps * np.log(np.exp((z - m[:, None]) / eps).sum(axis=1))


def test_scaling_law(tmp_path):
    """Experiment B (quick): every (d, N, seed) RMSE stored and re-evaluated with NumPy from the
    stored networks on regenerated test data; α̂ refitted from all seeds (none selected);
    eps*(N) re-read from the stored validation RMSEs; resume reuses both units."""
    from experiments import scaling_law

    results = _run_quick(scaling_law, tmp_path)
    config = results["config"]
    (d,) = config["dims"]
    unit = results["units"][f"d={d}"]
    widths, S = unit["widths"], config["seeds"]
    test = np.array(unit["test_rmse"])
    assert test.shape == (S, 1, len(widths)) and np.all(np.isfinite(test))
    data = scaling_law.make_data(config, d)
    rng = np.random.default_rng([config["data_seed"], d])  # the draws, regenerated by hand
    for split in ("train", "val", "test"):
        x = rng.uniform(-2.0, 2.0, (config[f"n_{split}"], d))
        np.testing.assert_array_equal(x, data[f"x_{split}"])
    x, y = data["x_test"], np.linalg.norm(data["x_test"], axis=1)
    for k, n in enumerate(widths):
        W, b = np.array(unit["params"]["W"][k]), np.array(unit["params"]["b"][k])
        assert W.shape == (S, 1, n, d)
        for s in range(S):
            rmse = np.sqrt(np.mean((_numpy_lse(x, W[s, 0], b[s, 0], n ** (-1 / d)) - y) ** 2))
            assert test[s, 0, k] == pytest.approx(rmse, rel=1e-10)
    # Training reduced the error well below that of the constant predictor mean(y).
    assert test.max() < 0.25 * np.std(y)
    # α̂ from every (N, seed) point: least squares of log RMSE on log N, by hand.
    slope = np.polyfit(np.log(np.tile(widths, S)), np.log(test[:, 0, :].ravel()), 1)[0]
    summary = results["summary"]
    assert summary["alpha"][str(d)] == pytest.approx(-slope, rel=1e-10)
    lo, hi = summary["alpha_interval"][str(d)]
    assert lo < -slope < hi and np.isfinite(hi - lo)
    assert summary["seconds"] > 0
    # eps*(N): the stored validation RMSE's minimum over the eps grid, seed mean.
    free = results["units"][f"d={d}/eps-free"]
    grid = np.array(free["eps_grid"])
    val = np.array(free["val_rmse"]).mean(axis=0)
    for k, row in enumerate(summary["eps_free"][str(d)]["per_width"]):
        i = int(np.argmin(val[:, k]))
        assert row["bracketed"] == (0 < i < len(grid) - 1)
        assert grid[max(i - 1, 0)] <= row["eps_star"] <= grid[min(i + 1, len(grid) - 1)]
    # The manifold: points lie on the curve x = Q (u, 0.5 sin 1.5u), Q orthonormal, so the
    # target ‖x‖ equals ‖(u, 0.5 sin 1.5u)‖ and x has no component outside span(Q).
    (k,) = config["manifold_dims"]
    m = scaling_law.make_manifold_data(config, k)
    Q = m["Q"]
    np.testing.assert_allclose(Q.T @ Q, np.eye(2 * k), atol=1e-12)
    np.testing.assert_allclose(m["x_test"] - m["x_test"] @ Q @ Q.T, 0, atol=1e-12)
    z = m["x_test"] @ Q
    np.testing.assert_allclose(z[:, k:], 0.5 * np.sin(1.5 * z[:, :k]), atol=1e-12)
    assert summary["manifold_alpha"][str(k)]["D"] == config["ambient_dim"] == Q.shape[0]
    verdicts = {c["claim"]: c["verdict"] for c in results["claims"]}
    assert {v for c, v in verdicts.items() if "(Thm 8.1)" in c} <= {"AGREES", "DIFFERS"}
    again = _run_quick(scaling_law, tmp_path, "--resume")
    assert sorted(again["resumed_units"]) == sorted(results["units"])
    assert again["summary"]["alpha"] == summary["alpha"]


def test_scaling_law_eps_star_rows():
    """eps*(N): a slope row when >= 3 optima lie inside the grid; otherwise a DIFFERS row
    with the share of widths whose optimum is the grid's smallest eps."""
    from experiments import scaling_law

    grid = np.geomspace(1e-3, 1.0, 6)
    widths = [10, 20, 40, 80]
    # Validation RMSE minimal at the smallest eps for widths 10, 20, 40, inside for 80.
    val = np.stack([np.abs(np.log(grid / (1e-3 if n < 80 else 0.1))) + 1 for n in widths], 1)
    unit = {"d": 1, "widths": widths, "eps_grid": grid.tolist()}
    unit |= {"val_rmse": val[None].tolist(), "test_rmse": val[None].tolist()}
    summary = scaling_law.summarize_eps_free(unit)
    assert summary["slope"] is None and summary["bracketed_widths"] == 1
    (row,) = scaling_law.eps_free_claims({1: summary})
    assert row["measured"] == 0.75 and row["holds"] is False and row["paper"]
    # log RMSE parabolas in log eps with minima at eps* = 3/N (times a factor off the power law,
    # so the fit has an interval): the refined optima are exact, the slope row holds −1.
    star = 3 / np.asarray(widths) * np.array([1.0, 1.1, 0.9, 1.0])
    val = np.stack([np.exp(np.log(grid / e) ** 2) for e in star], 1)
    unit |= {"val_rmse": val[None].tolist(), "test_rmse": val[None].tolist()}
    summary = scaling_law.summarize_eps_free(unit)
    np.testing.assert_allclose([r["eps_star"] for r in summary["per_width"]], star, rtol=1e-12)
    slope = np.polyfit(np.log(widths), np.log(star), 1)[0]
    (row,) = scaling_law.eps_free_claims({1: summary})
    assert summary["bracketed_widths"] == 4 and row["holds"]
    assert row["measured"] == pytest.approx(slope, rel=1e-10)
    # Optima on eps* = 0.3/√N: the slope −1/2 excludes −1, the row does not hold.
    star = 0.3 / np.sqrt(widths) * np.array([1.0, 1.1, 0.9, 1.0])
    val = np.stack([np.exp(np.log(grid / e) ** 2) for e in star], 1)
    unit |= {"val_rmse": val[None].tolist(), "test_rmse": val[None].tolist()}
    (row,) = scaling_law.eps_free_claims({1: scaling_law.summarize_eps_free(unit)})
    assert row["measured"] == pytest.approx(-0.5, abs=0.15) and not row["holds"]
