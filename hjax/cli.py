"""Command line: ``python -m hjax verify`` (also installed as ``hjax``).

``verify`` measures every claim registered in :mod:`hjax.verify`, prints a table — short
claim id, theorem, measured value, tolerance or expected rate, verdict — writes
``results/verify/report.json`` (atomically, with provenance) and a figure of the
commutative diagram. Exit status: 0 when every claim holds (``DIFFERS`` rows — measured
corrections of the paper — included), 1 when a claim fails or a check crashes, 2 on a
usage or I/O error (unknown group, unwritable ``--out``/``--json``, an unusable
``--resume`` store). Finished checks are stored as they finish (:class:`hjax.runner.Runner`),
so ``--resume`` continues an interrupted run: crashed checks are retried, other groups'
finished checks are kept, and results from another version, backend or x64 setting are
refused.
"""

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SCHEMA = "hjax.verify/2"

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hjax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="measure every implemented claim of THEORY.md")
    v.add_argument("--quick", action="store_true", help="small settings (CI: ~2.5 min on 2 cores)")
    v.add_argument("--json", type=Path, help="also write the JSON report to this path")
    v.add_argument("--out", type=Path, default=Path("results/verify"), help="results folder")
    v.add_argument("--only", nargs="+", metavar="GROUP", help="run only these groups")
    v.add_argument("--device", help="JAX platform to run on, e.g. cpu, gpu, tpu")
    v.add_argument("--resume", action="store_true", help="reuse checks finished by a prior run")
    v.add_argument("--no-figure", action="store_true", help="skip the diagram figure")
    v.add_argument("--wide", action="store_true", help="print each claim's full text too")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .runner import ResultsError

    try:
        return _verify(args)
    except ResultsError as e:
        print(f"hjax verify: {e}", file=sys.stderr)
        return 2


def _usage_error(message: str) -> int:
    print(f"hjax verify: {message}", file=sys.stderr)
    return 2


def _verify(args: argparse.Namespace) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    from .runner import Runner, atomic_write_json, ensure_writable, provenance
    from .verify import CHECKS, Row

    groups = list(CHECKS) if args.only is None else list(dict.fromkeys(args.only))
    unknown = sorted(set(groups) - set(CHECKS))
    if unknown:
        return _usage_error(f"unknown group(s) {unknown}; known: {sorted(CHECKS)}")
    if args.device is not None:
        try:
            device = jax.devices(args.device)[0]
        except RuntimeError as e:
            return _usage_error(f"--device {args.device!r} unavailable: {e}")
        jax.config.update("jax_default_device", device)
    report_path = ensure_writable(args.out / "report.json")
    if args.json is not None:
        ensure_writable(args.json)

    checks = {_check_name(check): (group, check) for group in CHECKS for check in CHECKS[group]}
    selected = [name for name, (group, _) in checks.items() if group in groups]
    runner = Runner(
        args.out / ("partial-quick.json" if args.quick else "partial.json"),
        kind="hjax.verify",
        config={"quick": args.quick},
        resume=args.resume,
        label="hjax verify",
    )
    for name in runner.retried:
        print(f"[retrying] {name} crashed in the stored run", file=sys.stderr)

    def measure(name: str) -> dict[str, Any]:
        group, check = checks[name]
        return {"group": group, "rows": [row.to_json() for row in check(args.quick)]}

    start = time.perf_counter()
    units = runner.run(selected, measure, catch=True)
    rows = []
    for name, unit in units.items():
        if unit["error"] is not None:
            crashed = Row(
                checks[name][0],
                _crash_key(name),
                f"{name} raised {unit['error']}",
                "—",
                float("nan"),
                "no error",
                False,
            )
            unit_rows = [crashed.to_json()]
        else:
            unit_rows = unit["rows"]
        rows += [dict(r, check=name) for r in unit_rows]
    _require_unique_keys(rows)

    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("PASS", "FAIL", "DIFFERS")}
    passed = counts["FAIL"] == 0 and bool(rows)
    report = {
        "schema": SCHEMA,
        "quick": args.quick,
        "groups": groups,
        "passed": passed,
        "n_rows": len(rows),
        "n_failed": counts["FAIL"],
        "n_differs": counts["DIFFERS"],
        "seconds": sum(unit["seconds"] for unit in units.values()),
        "wall_seconds": time.perf_counter() - start,
        "resumed_checks": runner.resumed,
        "checks": {k: {"seconds": u["seconds"], "error": u["error"]} for k, u in units.items()},
        "rows": rows,
        "provenance": provenance(),
    }
    print(_table(rows, wide=args.wide))
    if not args.no_figure and any(r["group"] == "diagram" for r in rows):
        from .verify.figure import plot_commutative_diagram

        fields = set(Row.__dataclass_fields__)
        diagram_rows = [
            Row(
                **{k: v for k, v in r.items() if k in fields and k != "measured"},
                measured=float("nan") if r["measured"] is None else r["measured"],
            )
            for r in rows
            if r["group"] == "diagram"
        ]
        report["figure"] = str(plot_commutative_diagram(diagram_rows, args.out / "diagram.png"))
    atomic_write_json(report_path, report)
    if args.json is not None:
        atomic_write_json(args.json, report)
    # The store is only dropped once it holds every registered check, finished without error:
    # a partial or --only run keeps what it has for a later --resume.
    if all(runner.units.get(name, {"error": "missing"})["error"] is None for name in checks):
        runner.path.unlink(missing_ok=True)

    if not rows:
        verdict = "NO CLAIMS WERE MEASURED"
    elif passed:
        verdict = "ALL CLAIMS HOLD"
    else:
        verdict = f"{counts['FAIL']} CLAIM(S) FAIL"
    differs = (
        f", {counts['DIFFERS']} DIFFERS (measured corrections of the paper)"
        if counts["DIFFERS"]
        else ""
    )
    print(
        f"\n{verdict} — {len(rows)} rows: {counts['PASS']} PASS, {counts['FAIL']} FAIL{differs}; "
        f"{report['seconds']:.1f} s of checks ({report['wall_seconds']:.1f} s this run); "
        f"report: {report_path}"
    )
    return 0 if passed else 1


def _check_name(check: Any) -> str:
    return f"{check.__module__.rsplit('.', 1)[-1]}.{check.__name__}"


def _crash_key(name: str) -> str:
    return re.sub(r"[^a-z0-9_.=-]", "_", name.lower())[:32] + ".crashed"


def _require_unique_keys(rows: list[dict[str, Any]]) -> None:
    seen: dict[str, str] = {}
    for r in rows:
        if r["key"] in seen:
            raise RuntimeError(
                f"row key {r['key']!r} is used by both {seen[r['key']]} and {r['check']}"
            )
        seen[r["key"]] = r["check"]


#: Column caps of the claim table: it fits a 120-column terminal (``--wide`` adds the claims).
_CAPS = (40, 24, 10, 20, 7)


def _table(rows: list[dict[str, Any]], *, wide: bool = False) -> str:
    from .runner import format_table

    header = ["key", "theorem", "measured", "expected", "verdict"]
    caps: list[int | None] = list(_CAPS)
    if wide:
        header.append("claim")
        caps.append(None)
    blocks = []
    for group in dict.fromkeys(r["group"] for r in rows):
        lines = [
            [
                r["key"],
                r["theorem"],
                "nan" if r["measured"] is None else f"{r['measured']:.3g}",
                r["expected"],
                r["verdict"],
                *([r["claim"]] if wide else []),
            ]
            for r in rows
            if r["group"] == group
        ]
        blocks.append(f"[{group}]\n" + format_table(header, lines, max_widths=caps))
    return "\n\n".join(blocks)
