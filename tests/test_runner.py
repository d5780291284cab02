"""hjax.runner (atomic store, resume rules, tables) and hjax.rates (log-log fits)."""

import json
import os

import numpy as np
import pytest
from scipy import stats

import hjax
from hjax import runner


def test_loglog_fit_matches_an_independent_regression():
    rng = np.random.default_rng(0)
    x = np.geomspace(8, 4096, 9)
    y = 3.0 * x**-0.7 * np.exp(0.05 * rng.normal(size=x.size))
    fit = hjax.loglog_fit(x, y, confidence=0.9)
    ref = stats.linregress(np.log(x), np.log(y))
    half = stats.t.ppf(0.95, x.size - 2) * ref.stderr
    assert fit.slope == pytest.approx(ref.slope, rel=1e-12)
    assert fit.intercept == pytest.approx(ref.intercept, rel=1e-12)
    assert (fit.lo, fit.hi) == pytest.approx((ref.slope - half, ref.slope + half), rel=1e-12)
    assert fit.lo < -0.7 < fit.hi and fit.n == 9
    assert fit(x) == pytest.approx(np.exp(ref.intercept) * x**ref.slope, rel=1e-12)


def test_loglog_fit_tail_and_floor():
    x = np.array([1.0, 2, 4, 8, 16, 32])
    y = np.array([1.0, 1.0, 1 / 4, 1 / 16, 1 / 64, 0.0])  # pre-asymptotic head, a zero at the end
    fit = hjax.loglog_fit(x, y, tail=3)  # the 0 is dropped by the floor, then the last three
    assert fit.slope == pytest.approx(-2.0, abs=1e-12) and fit.n == 3
    assert fit.hi - fit.lo == pytest.approx(0.0, abs=1e-9)  # an exact power law: no spread
    assert hjax.loglog_fit(x[:2], y[:2] + 1).lo == -np.inf  # two points: no interval


@pytest.mark.parametrize(
    "x,y,match",
    [([1, 2], [1, 2, 3], "same length"), ([0, 1], [1, 2], "`x`"), ([1, 2], [0, 0], "2 points")],
)
def test_loglog_fit_rejects_bad_input(x, y, match):
    with pytest.raises(ValueError, match=match):
        hjax.loglog_fit(x, y)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "r.json"
    runner.atomic_write_json(path, {"a": 1.0, "nan": float("nan")})
    assert json.loads(path.read_text()) == {"a": 1.0, "nan": None}
    with pytest.raises(TypeError):
        runner.atomic_write_json(path, {"a": object()})
    assert json.loads(path.read_text())["a"] == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left


def test_runner_saves_each_unit_and_reraises_without_losing_them(tmp_path):
    path = tmp_path / "store.json"
    run = runner.Runner(path, kind="t", config={"n": 2}, resume=False)

    def compute(key):
        if key == "b":
            raise ZeroDivisionError("unit b")
        return {"value": key}

    with pytest.raises(ZeroDivisionError):
        run.run(["a", "b"], compute, progress=False)
    stored = json.loads(path.read_text())
    assert list(stored["units"]) == ["a"] and stored["units"]["a"]["value"] == "a"
    again = runner.Runner(path, kind="t", config={"n": 2}, resume=True)
    units = again.run(["a", "b"], lambda k: {"value": k.upper()}, progress=False)
    assert [u["value"] for u in units.values()] == ["a", "B"] and again.resumed == ["a"]
    assert again.seconds == pytest.approx(sum(u["seconds"] for u in units.values()))


def test_runner_refuses_other_kinds_and_configs(tmp_path):
    path = tmp_path / "store.json"
    runner.Runner(path, kind="t", config={"n": 2}, resume=False).save()
    with pytest.raises(runner.ConfigMismatch):
        runner.Runner(path, kind="t", config={"n": 3}, resume=True)
    with pytest.raises(runner.ResultsError, match="holds results of 't'"):
        runner.Runner(path, kind="u", config={"n": 2}, resume=True)
    path.write_text(json.dumps({"some": "other json"}))
    with pytest.raises(runner.ResultsError, match="not a results store"):
        runner.Runner(path, kind="t", config={"n": 2}, resume=True)
    fresh = runner.Runner(path, kind="t", config={"n": 2}, resume=False)  # no resume: start over
    assert fresh.units == {}


def test_ensure_writable(tmp_path):
    assert runner.ensure_writable(tmp_path / "a" / "b.json").parent.is_dir()
    with pytest.raises(runner.ResultsError, match="is a folder"):
        runner.ensure_writable(tmp_path)
    (tmp_path / "f").write_text("")
    with pytest.raises(runner.ResultsError, match="cannot write"):
        runner.ensure_writable(tmp_path / "f" / "x.json")
    assert sorted(os.listdir(tmp_path / "a")) == []  # the probe file is removed


def test_format_table_truncates_to_caps():
    text = runner.format_table(["k", "v"], [["abcdef", 1], ["a", 22]], max_widths=[4, None])
    lines = text.splitlines()
    assert lines[2] == "abc…  1" and lines[3] == "a     22"
    with pytest.raises(ValueError, match="max_widths"):
        runner.format_table(["k"], [["a"]], max_widths=[1, 2])
