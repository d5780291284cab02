"""Shared plumbing for the experiment scripts: arguments, resumable units, figures.

An experiment is a list of independent *units* (one ``(eps, seed)`` fit, one dimension
``d``, …), computed by :class:`hjax.runner.Runner`: each finished unit is written to
``results/<name>/results.json`` at once (atomically), so an interrupted run loses at most
the unit in flight, and ``--resume`` skips every unit already stored — provided the stored
run used the same configuration, version, backend and x64 setting (otherwise the script
refuses, rather than mixing two runs). A corrupt or unwritable results file is reported
with what to do, and the script exits 2 (:func:`entry_point`).
"""

import argparse
import functools
import io
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from hjax.runner import (  # noqa: E402
    ResultsError,
    Runner,
    atomic_write_bytes,
    atomic_write_json,
    format_table,
)

__all__ = [
    "Run",
    "enable_x64",
    "entry_point",
    "error_by_dimension_figure",
    "parse_args",
    "plt",
]


def enable_x64() -> None:
    """Every experiment measures in float64 (identities at round-off need it)."""
    import jax

    jax.config.update("jax_enable_x64", True)


def entry_point(main: Callable[[Sequence[str] | None], int]):
    """Wrap an experiment's ``main(argv) -> int``: a results error (corrupt or unwritable
    ``results.json``, ``--resume`` of another configuration or setup) is printed with what to
    do, and the exit status is 2 — never a raw traceback."""

    @functools.wraps(main)
    def wrapped(argv: Sequence[str] | None = None) -> int:
        try:
            return main(argv)
        except ResultsError as e:
            prog = main.__module__.replace("__main__", "experiment")
            print(f"python -m {prog}: {e}", file=sys.stderr)
            return 2

    return wrapped


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


class Run:
    """One run of an experiment: its config, its finished units, its results folder.

    Args:
        name: experiment name (``results/<name>``).
        args: parsed arguments (``quick``, ``out``, ``resume``).
        config: every parameter that determines the units' results (JSON-able).

    Raises:
        hjax.runner.ResultsError: unwritable folder; with ``--resume``, a corrupt store or
            one made with another configuration, version, backend or x64 setting.
    """

    def __init__(self, name: str, args: argparse.Namespace, config: dict[str, Any]):
        self.name = name
        self.out = Path(args.out)
        self.runner = Runner(
            self.out / "results.json",
            kind=f"experiments.{name}",
            config=config,
            resume=args.resume,
            label=name,
        )
        self.config = self.runner.config
        atomic_write_json(
            self.out / "config.json",
            {"experiment": name, "config": self.config, "argv": args.argv, "quick": args.quick},
        )

    @property
    def units(self) -> dict[str, dict[str, Any]]:
        """Every stored unit, by key."""
        return self.runner.units

    @property
    def resumed(self) -> list[str]:
        """The units of the last :meth:`run_units` call that were reused from the store."""
        return self.runner.resumed

    def run_units(self, keys: Sequence[str], compute: Callable[[str], dict[str, Any]]) -> None:
        """Compute every unit not stored yet, saving after each, with progress."""
        self.runner.run(keys, compute)
        self._save(complete=False)

    def finish(
        self,
        summary: dict[str, Any],
        claims: list[dict[str, Any]],
        figure: Callable[[], Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> int:
        """Write the final results (and figure); print the claims; 0 iff every check holds.

        Each claim is ``{"claim": str, "measured": float, "expected": str, "holds": bool}``:
        a *check* (``PASS``/``FAIL``; a failure makes the exit status 1). A claim with a
        ``"paper"`` entry (what the paper states) tests the paper's *prediction* instead:
        its verdict is ``AGREES`` or ``DIFFERS`` (the measurement contradicts the paper), and
        it does not change the exit status — a prediction that does not hold is a finding,
        not a bug. Every claim gets its ``"verdict"`` in ``results.json``.
        """
        claims = [{**c, "verdict": _verdict(c)} for c in claims]
        payload = {"summary": summary, "claims": claims, **(extra or {})}
        if figure is not None:
            fig = figure()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
            plt.close(fig)
            path = atomic_write_bytes(self.out / "figure.png", buf.getvalue())
            payload["figure"] = path.name
        self._save(complete=True, **payload)
        print(format_table(["claim", "measured", "expected", "verdict"], _claim_rows(claims)))
        ok = all(c["verdict"] != "FAIL" for c in claims)
        differs = sum(c["verdict"] == "DIFFERS" for c in claims)
        verdict = "all checks hold" if ok else "A CHECK FAILS"
        if differs:
            verdict += f"; {differs} prediction(s) of the paper DIFFER from the measurement"
        print(
            f"[{self.name}] {verdict}; {self.runner.seconds:.1f} s of units; "
            f"results in {self.out}/",
            flush=True,
        )
        return 0 if ok else 1

    def _save(self, complete: bool, **payload: Any) -> None:
        self.runner.save(
            experiment=self.name, complete=complete, resumed_units=self.resumed, **payload
        )


def _verdict(claim: dict[str, Any]) -> str:
    if claim.get("paper"):
        return "AGREES" if claim["holds"] else "DIFFERS"
    return "PASS" if claim["holds"] else "FAIL"


def _claim_rows(claims: list[dict[str, Any]]) -> list[list[str]]:
    return [[c["claim"], f"{c['measured']:.4g}", c["expected"], c["verdict"]] for c in claims]


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
