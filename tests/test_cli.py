"""`python -m hjax verify`: schema, exit codes, failures that are reported, resume."""

import json
import subprocess
import sys

import pytest

from hjax import cli
from hjax.verify import CHECKS, bound_row


def _holds(quick: bool):
    return [bound_row("fake", "a claim that holds", "Thm 0", 1e-15, 1e-12)]


def _broken(quick: bool):
    return [bound_row("fake", "a deliberately broken claim", "Thm 0", 2.0, 1e-12)]


def _crashes(quick: bool):
    raise FloatingPointError("boom")


def _run(tmp_path, monkeypatch, checks, *extra):
    monkeypatch.setitem(CHECKS, "fake", checks)
    out = tmp_path / "out"
    code = cli.main(["verify", "--quick", "--only", "fake", "--out", str(out), *extra])
    return code, json.loads((out / "report.json").read_text())


def test_all_pass_exits_zero_with_schema(tmp_path, monkeypatch):
    code, report = _run(tmp_path, monkeypatch, [_holds], "--json", str(tmp_path / "r.json"))
    assert code == 0
    assert report["schema"] == cli.SCHEMA and report["passed"] and report["quick"]
    assert report["n_rows"] == 1 and report["n_failed"] == 0
    (row,) = report["rows"]
    assert set(row) >= {"group", "claim", "theorem", "measured", "expected", "passed", "check"}
    assert row["measured"] == 1e-15 and row["passed"] is True
    assert {"jax", "backend", "devices", "x64"} <= set(report["provenance"])
    assert json.loads((tmp_path / "r.json").read_text())["rows"] == report["rows"]


def test_broken_claim_exits_nonzero(tmp_path, monkeypatch, capsys):
    code, report = _run(tmp_path, monkeypatch, [_holds, _broken])
    assert code == 1
    assert not report["passed"] and report["n_failed"] == 1
    assert [r["passed"] for r in report["rows"]] == [True, False]
    assert "FAIL" in capsys.readouterr().out


def test_crashing_check_is_a_failure_and_the_rest_still_run(tmp_path, monkeypatch):
    code, report = _run(tmp_path, monkeypatch, [_crashes, _holds])
    assert code == 1
    errors = [c["error"] for c in report["checks"].values()]
    assert any("FloatingPointError: boom" in (e or "") for e in errors)
    assert [r["passed"] for r in report["rows"]] == [False, True]


def test_no_rows_is_not_a_pass(tmp_path, monkeypatch):
    code, report = _run(tmp_path, monkeypatch, [])
    assert code == 1 and not report["passed"]


def test_unknown_group_is_a_usage_error(tmp_path):
    assert cli.main(["verify", "--only", "no-such-group", "--out", str(tmp_path)]) == 2


def test_resume_reuses_finished_checks(tmp_path, monkeypatch):
    calls = []

    def counted(quick: bool):
        calls.append(quick)
        return _holds(quick)

    def interrupted(quick: bool):
        raise KeyboardInterrupt

    monkeypatch.setitem(CHECKS, "fake", [counted, interrupted])
    out = tmp_path / "out"
    argv = ["verify", "--quick", "--only", "fake", "--out", str(out)]
    with pytest.raises(KeyboardInterrupt):
        cli.main(argv)
    assert calls == [True] and (out / "partial-quick.json").exists()
    monkeypatch.setitem(CHECKS, "fake", [counted, _holds])
    assert cli.main([*argv, "--resume"]) == 0
    assert calls == [True], "the finished check ran again"
    assert not (out / "partial-quick.json").exists()


def test_module_entry_point_runs(tmp_path):
    """The installed entry point answers --help without importing the checks' heavy paths."""
    proc = subprocess.run(
        [sys.executable, "-m", "hjax", "verify", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "--quick" in proc.stdout
