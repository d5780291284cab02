"""The verify registry: each claim is a function that *measures* and returns rows.

A check is a function ``check(quick: bool) -> list[Row]`` registered with
:func:`register` under a group (``foundation``, ``costate``, ``diagram``). It computes a
quantity from the library and compares it with an independent computation (another
formula, autodiff, a PDE solver, Monte Carlo, a brute-force loop); the row records the
measured value, what was expected, and whether it holds. A check never hard-codes its
measurement.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

__all__ = ["CHECKS", "Row", "bound_row", "interval_row", "register"]


@dataclasses.dataclass(frozen=True)
class Row:
    """One measured claim."""

    group: str
    claim: str
    theorem: str
    measured: float
    expected: str
    passed: bool
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["measured"] = None if not math.isfinite(self.measured) else self.measured
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
    group: str, claim: str, theorem: str, measured: float, tol: float, **details: Any
) -> Row:
    """A row that passes when ``measured <= tol`` (NaN fails)."""
    measured = float(measured)
    return Row(group, claim, theorem, measured, f"≤ {tol:.0e}", measured <= tol, details)


def interval_row(
    group: str, claim: str, theorem: str, measured: float, lo: float, hi: float, **details: Any
) -> Row:
    """A row that passes when ``lo <= measured <= hi`` (a fitted rate or slope)."""
    measured = float(measured)
    return Row(
        group, claim, theorem, measured, f"∈ [{lo:g}, {hi:g}]", lo <= measured <= hi, details
    )
