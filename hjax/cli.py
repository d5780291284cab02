"""Command line: ``python -m hjax verify`` (also installed as ``hjax``).

``verify`` measures every claim registered in :mod:`hjax.verify`, prints a table —
claim, theorem, measured value, tolerance or expected rate, verdict — writes
``results/verify/report.json`` (atomically, with provenance) and a figure of the
commutative diagram, and exits 1 if any claim fails (2 on a usage error).
Completed checks are saved as they finish, so ``--resume`` continues an interrupted run.
"""

import argparse
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SCHEMA = "hjax.verify/1"

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hjax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="measure every implemented claim of THEORY.md")
    v.add_argument("--quick", action="store_true", help="small settings (CI: < 2 min on 2 cores)")
    v.add_argument("--json", type=Path, help="also write the JSON report to this path")
    v.add_argument("--out", type=Path, default=Path("results/verify"), help="results folder")
    v.add_argument("--only", nargs="+", metavar="GROUP", help="run only these groups")
    v.add_argument("--device", help="JAX platform to run on, e.g. cpu, gpu, tpu")
    v.add_argument("--resume", action="store_true", help="reuse checks finished by a prior run")
    v.add_argument("--no-figure", action="store_true", help="skip the diagram figure")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return _verify(args)


def _verify(args: argparse.Namespace) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    from . import _io
    from .verify import CHECKS, Row

    groups = list(CHECKS) if args.only is None else args.only
    unknown = sorted(set(groups) - set(CHECKS))
    if unknown:
        print(f"hjax verify: unknown group(s) {unknown}; known: {sorted(CHECKS)}", file=sys.stderr)
        return 2
    if args.device is not None:
        try:
            device = jax.devices(args.device)[0]
        except RuntimeError as e:
            print(f"hjax verify: --device {args.device!r} unavailable: {e}", file=sys.stderr)
            return 2
        jax.config.update("jax_default_device", device)

    partial_path = args.out / ("partial-quick.json" if args.quick else "partial.json")
    done: dict[str, Any] = {}
    if args.resume and partial_path.exists():
        done = _io.read_json(partial_path)["checks"]

    start = time.perf_counter()
    records: dict[str, Any] = {}
    for group in groups:
        for check in CHECKS[group]:
            name = f"{check.__module__.rsplit('.', 1)[-1]}.{check.__name__}"
            if name in done:
                records[name] = done[name]
                print(f"[resumed] {name}", file=sys.stderr)
                continue
            print(f"[running] {name} …", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                rows = [r.to_json() for r in check(args.quick)]
                error = None
            except Exception as e:  # a crashing check is a failed claim, never a lost run
                error = "".join(traceback.format_exception_only(type(e), e)).strip()
                rows = [
                    Row(group, f"{name} raised", "—", float("nan"), "no error", False).to_json()
                ]
                traceback.print_exc(file=sys.stderr)
            records[name] = {"rows": rows, "seconds": time.perf_counter() - t0, "error": error}
            _io.atomic_write_json(partial_path, {"quick": args.quick, "checks": records})

    rows = [dict(r, check=name) for name, rec in records.items() for r in rec["rows"]]
    failed = [r for r in rows if not r["passed"]]
    report = {
        "schema": SCHEMA,
        "quick": args.quick,
        "passed": not failed and bool(rows),
        "n_rows": len(rows),
        "n_failed": len(failed),
        "seconds": time.perf_counter() - start,
        "checks": {k: {"seconds": v["seconds"], "error": v["error"]} for k, v in records.items()},
        "rows": rows,
        "provenance": _io.provenance(),
    }
    print(_table(rows))
    report_path = _io.atomic_write_json(args.out / "report.json", report)
    if args.json is not None:
        _io.atomic_write_json(args.json, report)
    figure = _figure(rows, args) if not args.no_figure else None
    if figure is not None:
        report["figure"] = str(figure)
        _io.atomic_write_json(report_path, report)
    partial_path.unlink(missing_ok=True)
    if not rows:
        verdict = "NO CLAIMS WERE MEASURED"
    else:
        verdict = "ALL CLAIMS HOLD" if report["passed"] else f"{len(failed)} CLAIM(S) FAIL"
    print(f"\n{verdict} — {len(rows)} rows in {report['seconds']:.1f} s; report: {report_path}")
    return 0 if report["passed"] else 1


def _figure(rows: list[dict[str, Any]], args: argparse.Namespace) -> Path | None:
    diagram_rows = [r for r in rows if r["group"] == "diagram"]
    if not diagram_rows:
        return None
    from .diagram import plot_commutative_diagram
    from .verify import Row

    fields = set(Row.__dataclass_fields__)
    as_rows = [Row(**{k: v for k, v in r.items() if k in fields}) for r in diagram_rows]
    return Path(plot_commutative_diagram(as_rows, args.out / "diagram.png"))


def _table(rows: list[dict[str, Any]]) -> str:
    header = ("group", "claim", "theorem", "measured", "expected", "verdict")
    lines = [
        (
            r["group"],
            r["claim"],
            r["theorem"],
            "nan" if r["measured"] is None else f"{r['measured']:.3g}",
            r["expected"],
            "PASS" if r["passed"] else "FAIL",
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt.format(*header), rule, *(fmt.format(*line) for line in lines)])
