"""`python -m hjax verify`: schema, exit codes, verdicts, the table, and reliable resumes."""

import json
import subprocess
import sys

import pytest

from hjax import cli, runner
from hjax.verify import CHECKS, bound_row, interval_row


def _holds(quick: bool):
    return [bound_row("fake", "fake.holds", "a claim that holds", "Thm 0", 1e-15, 1e-12)]


def _broken(quick: bool):
    return [bound_row("fake", "fake.broken", "a deliberately broken claim", "Thm 0", 2.0, 1e-12)]


def _differs(quick: bool):
    return [
        interval_row(
            "fake", "fake.differs", "eps* ∝ N^(-2/d)", "Thm 8.1", -2.1, -2.5, -1.5,
            paper="eps* ∝ N^(-1/d)",
        )
    ]  # fmt: skip


def _other(quick: bool):
    return [bound_row("other", "other.holds", "another group's claim", "Thm 0", 0.0, 1e-12)]


def _crashes(quick: bool):
    raise FloatingPointError("boom")


@pytest.fixture
def fake_checks(monkeypatch):
    """Replace the registry by fake groups (the real checks are never run here)."""

    def install(**groups):
        monkeypatch.setattr(cli, "_check_name", lambda check: f"t.{check.__name__}")
        for name in list(CHECKS):
            monkeypatch.delitem(CHECKS, name)
        for name, checks in groups.items():
            monkeypatch.setitem(CHECKS, name, checks)

    return install


def _run(tmp_path, *extra, out=None):
    out = tmp_path / "out" if out is None else out
    code = cli.main(["verify", "--quick", "--no-figure", "--out", str(out), *extra])
    report = out / "report.json"
    return code, json.loads(report.read_text()) if report.exists() else None


def test_all_pass_exits_zero_with_schema(tmp_path, fake_checks):
    fake_checks(fake=[_holds])
    code, report = _run(tmp_path, "--json", str(tmp_path / "r.json"))
    assert code == 0
    assert report["schema"] == cli.SCHEMA and report["passed"] and report["quick"]
    assert report["n_rows"] == 1 and report["n_failed"] == 0 and report["n_differs"] == 0
    (row,) = report["rows"]
    assert set(row) >= {"group", "key", "claim", "theorem", "measured", "expected", "verdict"}
    assert row["measured"] == 1e-15 and row["passed"] is True and row["verdict"] == "PASS"
    assert {"jax", "backend", "devices", "x64"} <= set(report["provenance"])
    assert json.loads((tmp_path / "r.json").read_text())["rows"] == report["rows"]


def test_broken_claim_exits_one(tmp_path, fake_checks, capsys):
    fake_checks(fake=[_holds, _broken])
    code, report = _run(tmp_path)
    assert code == 1
    assert not report["passed"] and report["n_failed"] == 1
    assert [r["verdict"] for r in report["rows"]] == ["PASS", "FAIL"]
    assert "FAIL" in capsys.readouterr().out


def test_differs_is_counted_apart_and_keeps_exit_zero(tmp_path, fake_checks, capsys):
    fake_checks(fake=[_holds, _differs])
    code, report = _run(tmp_path)
    assert code == 0 and report["passed"]
    assert report["n_differs"] == 1 and report["n_failed"] == 0
    assert report["rows"][1]["paper"] == "eps* ∝ N^(-1/d)"
    out = capsys.readouterr().out
    assert "DIFFERS" in out and "1 DIFFERS" in out


def test_a_row_measured_as_nan_fails():
    assert not bound_row("g", "k", "c", "T", float("nan"), 1.0).passed
    assert not interval_row("g", "k", "c", "T", float("nan"), 0.0, 1.0).passed


def test_crashing_check_is_a_failure_and_the_rest_still_run(tmp_path, fake_checks):
    fake_checks(fake=[_crashes, _holds])
    code, report = _run(tmp_path)
    assert code == 1
    errors = [c["error"] for c in report["checks"].values()]
    assert any("FloatingPointError: boom" in (e or "") for e in errors)
    assert [r["passed"] for r in report["rows"]] == [False, True]


def test_no_rows_is_not_a_pass(tmp_path, fake_checks):
    fake_checks(fake=[])
    code, report = _run(tmp_path)
    assert code == 1 and not report["passed"]


def test_unknown_group_is_a_usage_error(tmp_path):
    assert cli.main(["verify", "--only", "no-such-group", "--out", str(tmp_path)]) == 2


def test_table_fits_120_columns_and_wide_shows_claims(tmp_path, fake_checks, capsys):
    def long_claim(quick: bool):
        return [
            bound_row("fake", "fake.long", "x" * 300, "Thm 7.1(iii), Thm 4.1/4.4 and more", 0, 1)
        ]

    fake_checks(fake=[long_claim, _holds, _differs])
    assert _run(tmp_path)[0] == 0
    table = capsys.readouterr().out.split("\n\nALL")[0]
    assert max(len(line) for line in table.splitlines()) <= 120
    assert "x" * 50 not in table
    assert _run(tmp_path, "--wide")[0] == 0
    assert "x" * 300 in capsys.readouterr().out


def test_row_keys_must_be_short_and_unique(tmp_path, fake_checks):
    with pytest.raises(ValueError, match="row key"):
        bound_row("g", "Not A Key!", "c", "T", 0, 1)

    def _holds_again(quick: bool):
        return _holds(quick)

    fake_checks(fake=[_holds, _holds_again])  # two checks, one key
    with pytest.raises(RuntimeError, match="fake.holds"):
        _run(tmp_path)


# --------------------------------------------------------------------------------------
# Reliability: unwritable outputs, corrupt stores, crashed checks, --only, provenance.
# --------------------------------------------------------------------------------------


def _counted(calls):
    def counted(quick: bool):
        calls.append("counted")
        return [bound_row("fake", "fake.counted", "a counted claim", "Thm 0", 0.0, 1.0)]

    return counted


def _interrupted(quick: bool):
    raise KeyboardInterrupt


def test_resume_reuses_finished_checks_and_adds_their_seconds(tmp_path, fake_checks):
    calls = []
    fake_checks(fake=[_counted(calls), _interrupted])
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path)
    partial = tmp_path / "out" / "partial-quick.json"
    assert calls == ["counted"] and partial.exists()
    first_seconds = json.loads(partial.read_text())["units"]["t.counted"]["seconds"]
    fake_checks(fake=[_counted(calls), _holds])
    code, report = _run(tmp_path, "--resume")
    assert code == 0 and calls == ["counted"], "the finished check ran again"
    assert report["resumed_checks"] == ["t.counted"]
    assert report["seconds"] >= first_seconds
    assert report["checks"]["t.counted"]["seconds"] == first_seconds
    assert not partial.exists(), "a complete run drops its store"


@pytest.mark.parametrize(
    "content", [b"", b'{"schema": "hjax.runner/1", "units": {', b"\x00\xffgarbage", b"[1, 2]"]
)
def test_corrupt_store_is_named_and_exits_two(tmp_path, fake_checks, capsys, content):
    calls = []
    fake_checks(fake=[_counted(calls)])
    partial = tmp_path / "out" / "partial-quick.json"
    partial.parent.mkdir()
    partial.write_bytes(content)
    code, _ = _run(tmp_path, "--resume")
    err = capsys.readouterr().err
    assert code == 2 and calls == []
    assert str(partial) in err and "Traceback" not in err
    assert "delete" in err.lower() or "without --resume" in err
    assert partial.read_bytes() == content, "the corrupt file is left for the user to inspect"


def test_crashed_check_is_retried_on_resume(tmp_path, fake_checks):
    fake_checks(fake=[_crashes, _interrupted])
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path)
    calls = []

    def fixed(quick: bool):
        calls.append("retried")
        return _holds(quick)

    fixed.__name__ = "_crashes"  # the same check, now fixed
    fake_checks(fake=[fixed, _other])
    code, report = _run(tmp_path, "--resume")
    assert code == 0 and calls == ["retried"]
    assert all(c["error"] is None for c in report["checks"].values())


def test_resume_only_keeps_other_groups(tmp_path, fake_checks):
    calls = []
    fake_checks(fake=[_counted(calls)], other=[_interrupted])
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path)
    fake_checks(fake=[_counted(calls)], other=[_other], third=[_holds])
    code, report = _run(tmp_path, "--resume", "--only", "other")
    assert code == 0 and [r["group"] for r in report["rows"]] == ["other"]
    partial = tmp_path / "out" / "partial-quick.json"
    assert "t.counted" in json.loads(partial.read_text())["units"], "--only dropped a group"
    code, report = _run(tmp_path, "--resume")
    assert code == 0 and calls == ["counted"]
    assert sorted(report["resumed_checks"]) == ["t._other", "t.counted"]
    assert not partial.exists()


@pytest.mark.parametrize("key,value", [("jax", "0.0.1"), ("backend", "tpu"), ("x64", False)])
def test_resume_refuses_another_setup(tmp_path, fake_checks, capsys, key, value):
    calls = []
    fake_checks(fake=[_counted(calls), _interrupted])
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path)
    partial = tmp_path / "out" / "partial-quick.json"
    stored = json.loads(partial.read_text())
    stored["provenance"][key] = value
    partial.write_text(json.dumps(stored))
    code, _ = _run(tmp_path, "--resume")
    assert code == 2 and calls == ["counted"]
    assert key in capsys.readouterr().err


def test_resume_refuses_a_full_store_for_a_quick_run(tmp_path, fake_checks, capsys):
    fake_checks(fake=[_interrupted])
    out = tmp_path / "out"
    path = out / "partial-quick.json"
    runner.Runner(path, kind="hjax.verify", config={"quick": False}, resume=False).save()
    assert _run(tmp_path, "--resume")[0] == 2
    assert "different configuration" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--out", "--json"])
def test_unwritable_destination_exits_two_before_any_work(tmp_path, fake_checks, capsys, flag):
    calls = []
    fake_checks(fake=[_counted(calls)])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    target = blocker / "sub" / ("report.json" if flag == "--json" else "")
    extra = ["--json", str(target)] if flag == "--json" else []
    out = target if flag == "--out" else tmp_path / "out"
    code, _ = _run(tmp_path, *extra, out=out)
    assert code == 2 and calls == []
    assert "cannot write" in capsys.readouterr().err


def test_module_entry_point_runs():
    """The installed entry point answers --help without importing the checks' heavy paths."""
    proc = subprocess.run(
        [sys.executable, "-m", "hjax", "verify", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "--quick" in proc.stdout and "--wide" in proc.stdout
