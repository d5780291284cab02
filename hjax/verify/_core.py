"""The verify registry: each claim is a function that *measures* and returns rows.

A check is a function ``check(quick: bool) -> list[Row]`` registered with
:func:`register` under a group (``foundation``, ``costate``, ``diagram``, …). It computes a
quantity from the library and compares it with an independent computation (another
formula, autodiff, a PDE solver, Monte Carlo, a brute-force loop); the row records the
measured value, what was expected, and whether it holds. A check never hard-codes its
measurement.

Verdicts: ``PASS`` (the measurement agrees with the expectation), ``FAIL`` (it does not:
a bug, or a claim that does not hold), and ``DIFFERS`` — the measurement agrees with the
row's expectation, which is *not* what the paper states (``Row.paper`` says what the paper
states). ``DIFFERS`` rows are counted separately and do not change the exit code.
"""

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any, SupportsFloat

from ..rates import LogLogFit

__all__ = [
    "CHECKS",
    "Row",
    "bound_row",
    "interval_row",
    "rate_row",
    "register",
    "tight_row",
]

_KEY = re.compile(r"^[a-z0-9][a-z0-9_.=\-]{0,39}$")


@dataclasses.dataclass(frozen=True)
class Row:
    """One measured claim.

    Attributes:
        group: the check group (``foundation``, ``costate``, ``diagram``, ``attribution``,
            ``robustness``).
        key: a short unique id (``[a-z0-9_.=-]``, at most 40 characters), shown in the table.
        claim: the claim in full (JSON report, ``--wide`` table).
        theorem: where the paper states it.
        measured: the measured number.
        expected: the tolerance or interval, as text.
        passed: whether the measurement meets ``expected``.
        details: further measured numbers (JSON-able).
        paper: non-empty when the paper states something the measurement contradicts
            (``expected`` is then the corrected statement): the verdict is ``DIFFERS``.
    """

    group: str
    key: str
    claim: str
    theorem: str
    measured: float
    expected: str
    passed: bool
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    paper: str = ""

    def __post_init__(self) -> None:
        if not _KEY.match(self.key):
            raise ValueError(
                f"row key {self.key!r} must match {_KEY.pattern} (short, lower case, unique)."
            )

    @property
    def verdict(self) -> str:
        """``PASS``, ``FAIL`` or ``DIFFERS`` (holds, but contradicts the paper)."""
        if not self.passed:
            return "FAIL"
        return "DIFFERS" if self.paper else "PASS"

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["measured"] = None if not math.isfinite(self.measured) else self.measured
        out["verdict"] = self.verdict
        return out


Check = Callable[[bool], list[Row]]

#: group name -> registered checks, in registration order.
CHECKS: dict[str, list[Check]] = {}


def register(group: str) -> Callable[[Check], Check]:
    """Decorator: add ``check(quick) -> list[Row]`` to ``CHECKS[group]``."""

    def decorate(check: Check) -> Check:
        CHECKS.setdefault(group, []).append(check)
        return check

    return decorate


def bound_row(
    group: str,
    key: str,
    claim: str,
    theorem: str,
    measured: SupportsFloat,
    tol: SupportsFloat,
    *,
    paper: str = "",
    **details: Any,
) -> Row:
    """A row that passes when ``measured <= tol`` (NaN fails)."""
    measured, tol = float(measured), float(tol)
    return Row(
        group, key, claim, theorem, measured, f"≤ {tol:.0e}", measured <= tol, details, paper
    )


def interval_row(
    group: str,
    key: str,
    claim: str,
    theorem: str,
    measured: SupportsFloat,
    lo: SupportsFloat,
    hi: SupportsFloat,
    *,
    paper: str = "",
    **details: Any,
) -> Row:
    """A row that passes when ``lo <= measured <= hi`` (NaN fails)."""
    measured, lo, hi = float(measured), float(lo), float(hi)
    return Row(
        group,
        key,
        claim,
        theorem,
        measured,
        f"∈ [{lo:g}, {hi:g}]",
        lo <= measured <= hi,
        details,
        paper,
    )


def tight_row(
    group: str,
    key: str,
    claim: str,
    theorem: str,
    ratio: SupportsFloat,
    *,
    rtol: float = 0.01,
    paper: str = "",
    **details: Any,
) -> Row:
    """A bound checked for validity *and* tightness: ``ratio = measured / bound`` on the
    bound's extremal case must lie in ``[1 − rtol, 1]`` (to round-off: ``1 + 1e-12``).

    A bound that is too loose (a wrong constant in the safe direction) fails as surely as
    one that is violated.
    """
    return interval_row(
        group, key, claim, theorem, ratio, 1 - rtol, 1 + 1e-12, paper=paper, **details
    )


def rate_row(
    group: str,
    key: str,
    claim: str,
    theorem: str,
    fit: LogLogFit,
    lo: float,
    hi: float,
    *,
    paper: str = "",
    **details: Any,
) -> Row:
    """A fitted rate (the slope of :func:`hjax.loglog_fit`) that must lie in ``[lo, hi]``.

    Both ends are finite: a rate row states the rate, not only a lower bound on it. The
    fit's confidence interval and point count go into ``details``.
    """
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"a rate row needs a finite two-sided interval; got [{lo}, {hi}].")
    return Row(
        group,
        key,
        claim,
        theorem,
        float(fit.slope),
        f"∈ [{lo:g}, {hi:g}]",
        lo <= fit.slope <= hi,
        {"fit": fit.as_dict(), **details},
        paper,
    )
