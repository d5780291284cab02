r"""Convergence rates by log-log regression, with a two-sided confidence interval.

Every rate hjax reports — quadrature orders in N, vanishing-viscosity rates in eps, adjoint
gap orders in the step size, scaling-law exponents — is the slope ``s`` of the least-squares
line through ``(log x_i, log y_i)``:

.. math::

    \log y_i = a + s \log x_i + e_i, \qquad
    \hat s \pm t_{n-2,\,(1+c)/2}\ \mathrm{se}(\hat s),

the interval being the usual Student-t interval for a regression slope (``n`` points,
confidence ``c``). Only the asymptotic *tail* should be fitted (``tail=k`` keeps the last k
points in the order given), since pre-asymptotic points bias the slope towards whatever the
first few points happen to do.
"""

import dataclasses
import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["LogLogFit", "loglog_fit"]


@dataclasses.dataclass(frozen=True)
class LogLogFit:
    """A fitted power law ``y ≈ exp(intercept) · x^slope``.

    Attributes:
        slope: the fitted exponent ``ŝ``.
        intercept: ``log`` of the fitted constant.
        lo, hi: the two-sided confidence interval for the slope (``±inf`` with 2 points).
        n: number of points fitted (after the tail and floor were applied).
        confidence: the interval's confidence level.
    """

    slope: float
    intercept: float
    lo: float
    hi: float
    n: int
    confidence: float

    def __call__(self, x: ArrayLike) -> np.ndarray:
        """The fitted line evaluated at ``x``."""
        return np.exp(self.intercept) * np.asarray(x, dtype=float) ** self.slope

    def as_dict(self) -> dict[str, float]:
        """The fit as plain numbers (for JSON results)."""
        return dataclasses.asdict(self)


def loglog_fit(
    x: ArrayLike,
    y: ArrayLike,
    *,
    tail: int | None = None,
    floor: float = 0.0,
    confidence: float = 0.95,
) -> LogLogFit:
    r"""Least-squares slope of ``log y`` against ``log x`` with a Student-t interval.

    Args:
        x: positive abscissae (N, h, eps, …).
        y: the measured quantity (errors, RMSEs); points with ``y <= floor`` or a
            non-finite value are dropped first (an error at round-off has no rate).
        tail: fit only the last ``tail`` of the remaining points (the asymptotic regime).
        floor: drop points at or below this value.
        confidence: level of the two-sided interval, in (0, 1).

    Returns:
        A :class:`LogLogFit`.

    Raises:
        ValueError: mismatched lengths, non-positive x, fewer than 2 usable points.

    Example:
        >>> fit = loglog_fit([1, 2, 4, 8], [1.0, 0.25, 0.0625, 0.015625])
        >>> round(fit.slope, 12), fit.lo <= -2 <= fit.hi
        (-2.0, True)
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"`x` and `y` must have the same length; got {x.size} and {y.size}.")
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must lie in (0, 1); got {confidence!r}.")
    if np.any(~(x > 0)) or np.any(~np.isfinite(x)):
        raise ValueError(f"`x` must be finite and > 0 for a log-log fit; got {x!r}.")
    keep = np.isfinite(y) & (y > floor)
    x, y = x[keep], y[keep]
    if tail is not None:
        if tail < 2:
            raise ValueError(f"`tail` must be >= 2; got {tail!r}.")
        x, y = x[-tail:], y[-tail:]
    n = x.size
    if n < 2:
        raise ValueError(f"a log-log fit needs at least 2 points above floor={floor}; got {n}.")
    lx, ly = np.log(x), np.log(y)
    mx = lx.mean()
    sxx = float(np.sum((lx - mx) ** 2))
    if sxx == 0:
        raise ValueError("`x` must take at least two distinct values.")
    slope = float(np.sum((lx - mx) * (ly - ly.mean())) / sxx)
    intercept = float(ly.mean() - slope * mx)
    if n == 2:
        lo, hi = -math.inf, math.inf
    else:
        from scipy.stats import t as student_t

        resid = ly - (intercept + slope * lx)
        se = math.sqrt(float(np.sum(resid**2)) / (n - 2) / sxx)
        half = float(student_t.ppf((1 + confidence) / 2, n - 2)) * se
        lo, hi = slope - half, slope + half
    return LogLogFit(slope, intercept, lo, hi, n, confidence)
