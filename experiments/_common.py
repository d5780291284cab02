"""Shared plumbing for the experiment scripts: arguments, resumable units, atomic results.

An experiment is a list of independent *units* (one ``(eps, seed)`` fit, one dimension
``d``, …). Each finished unit is written to ``results/<name>/results.json`` at once
(atomically, via :mod:`hjax._io`), so an interrupted run loses at most the unit in
flight, and ``--resume`` skips every unit already stored — provided the stored run used
the same configuration (otherwise the script refuses, rather than mixing two runs).
"""

import argparse
import io
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from hjax._io import atomic_write_bytes, atomic_write_json, provenance, read_json  # noqa: E402

__all__ = [
    "ConfigMismatch",
    "Run",
    "enable_x64",
    "error_by_dimension_figure",
    "parse_args",
    "plt",
    "table",
]


def enable_x64() -> None:
    """Every experiment measures in float64 (identities at round-off need it)."""
    import jax

    jax.config.update("jax_enable_x64", True)


class ConfigMismatch(RuntimeError):
    """``--resume`` found results made with a different configuration."""


def parse_args(name: str, doc: str | None, argv: Sequence[str] | None) -> argparse.Namespace:
    """``--quick``, ``--out DIR`` (default ``results/<name>``) and ``--resume``."""
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{name}",
        description=(doc or "").strip().splitlines()[0] if doc else None,
    )
    parser.add_argument("--quick", action="store_true", help="small setting (CI, < 30 s on CPU)")
    parser.add_argument(
        "--out", type=Path, default=Path("results") / name, help="results folder (created)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="skip units already stored in --out/results.json"
    )
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def _normalised(obj: Any) -> Any:
    """The JSON round trip of ``obj``: what a stored config compares equal to."""
    return json.loads(json.dumps(obj))


class Run:
    """One run of an experiment: its config, its finished units, its results folder.

    Args:
        name: experiment name (``results/<name>``).
        args: parsed arguments (``quick``, ``out``, ``resume``).
        config: every parameter that determines the units' results (JSON-able).
    """

    def __init__(self, name: str, args: argparse.Namespace, config: dict[str, Any]):
        self.name = name
        self.out = Path(args.out)
        self.config = _normalised(config)
        self.units: dict[str, dict[str, Any]] = {}
        self.resumed: list[str] = []
        self.start = time.perf_counter()
        results = self.out / "results.json"
        if args.resume and results.exists():
            stored = read_json(results)
            if stored.get("config") != self.config:
                raise ConfigMismatch(
                    f"--resume: {results} was written with a different configuration; "
                    "run without --resume (to start over) or choose another --out."
                )
            self.units = dict(stored.get("units", {}))
        atomic_write_json(
            self.out / "config.json",
            {"experiment": name, "config": self.config, "argv": args.argv, "quick": args.quick},
        )

    def run_units(self, keys: Sequence[str], compute: Callable[[str], dict[str, Any]]) -> None:
        """Compute every unit not stored yet, saving after each; print progress and ETA."""
        todo = [k for k in keys if k not in self.units]
        self.resumed = [k for k in keys if k in self.units]
        for k in self.resumed:
            print(f"[{self.name}] resumed {k}", flush=True)
        t0 = time.perf_counter()
        for i, key in enumerate(todo, 1):
            start = time.perf_counter()
            result = compute(key)
            seconds = time.perf_counter() - start
            result["seconds"] = seconds
            result["finished_at"] = datetime.now(timezone.utc).isoformat()
            self.units[key] = result
            self._write(complete=False)
            elapsed = time.perf_counter() - t0
            left = elapsed / i * (len(todo) - i)
            print(
                f"[{self.name}] {i}/{len(todo)} {key}: {seconds:.1f} s "
                f"(elapsed {elapsed:.1f} s, ~{left:.0f} s left)",
                flush=True,
            )

    def finish(
        self,
        summary: dict[str, Any],
        claims: list[dict[str, Any]],
        figure: Callable[[], Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> int:
        """Write the final results (and figure); print the claims; 0 iff every claim holds.

        Each claim is ``{"claim": str, "measured": float, "expected": str, "holds": bool}``.
        """
        payload = {"summary": summary, "claims": claims, **(extra or {})}
        if figure is not None:
            fig = figure()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
            plt.close(fig)
            path = atomic_write_bytes(self.out / "figure.png", buf.getvalue())
            payload["figure"] = path.name
        self._write(complete=True, **payload)
        print(table(["claim", "measured", "expected", "verdict"], _claim_rows(claims)))
        ok = all(c["holds"] for c in claims)
        verdict = "all claims hold" if ok else "A CLAIM FAILS"
        print(f"[{self.name}] {verdict}; results in {self.out}/", flush=True)
        return 0 if ok else 1

    def _write(self, complete: bool, **payload: Any) -> None:
        atomic_write_json(
            self.out / "results.json",
            {
                "experiment": self.name,
                "complete": complete,
                "config": self.config,
                "units": self.units,
                "resumed_units": self.resumed,
                "seconds": time.perf_counter() - self.start,
                **payload,
                "provenance": provenance(),
            },
        )


def _claim_rows(claims: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [c["claim"], f"{c['measured']:.4g}", c["expected"], "PASS" if c["holds"] else "FAIL"]
        for c in claims
    ]


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width text table."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*cells[0]), "  ".join("-" * w for w in widths)]
    return "\n".join(lines + [fmt.format(*r) for r in cells[1:]])


def error_by_dimension_figure(
    dims: Sequence[int],
    errors: dict[str, Sequence[float]],
    tolerance: float,
    *,
    xlabel: str,
    ylabel: str,
    title: str,
):
    """Max error per dimension (log-log, base-2 ticks) for each named comparison."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for (label, errs), marker in zip(errors.items(), "osdv^", strict=False):
        ax.semilogy(dims, [max(e, 1e-18) for e in errs], marker + "-", label=label)
    ax.axhline(tolerance, color="k", ls=":", label="tolerance")
    ax.set_xscale("log", base=2)
    ax.minorticks_off()
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
