r"""The figure of Theorem 7.1: the commutative diagram labelled with what ``hjax verify`` measured.

:func:`plot_commutative_diagram` takes the ``diagram`` rows of ``hjax verify``
(:class:`hjax.verify.Row`, looked up by :attr:`~hjax.verify.Row.key`) and draws

* the square ``u^N_eps → u^N_0`` (top, Maslov), ``u^N_eps → u_eps`` (left, quadrature),
  ``u^N_0 → u_0`` (right, eps = 0), ``u_eps → u_0`` (bottom, vanishing viscosity), each
  arrow annotated with its fitted rates and bounds, and below it the identities (i), the
  semigroup (ii), Thm E.1 and Thm 8.1;
* one panel per error surface ``log10 E(eps, N)`` (the eps = 0 column at the left) with the
  argmin ``eps*(N)``, the knee, the paper's prescription ``eps = N^{-1/d}`` and the measured
  ``N^{-2/d}`` law.

Colours give the verdicts: green PASS, red FAIL, amber DIFFERS (holds, contradicts the
paper). Text is laid out line by line at fixed offsets in points, so no two labels overlap
(tested by comparing the drawn extents of every text artist).
"""

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..runner import atomic_write_bytes
from ._core import Row

__all__ = ["commutative_diagram_figure", "plot_commutative_diagram"]

_COLORS = {"PASS": "#1a7f37", "FAIL": "#cf222e", "DIFFERS": "#9a6700"}
_SEVERITY = {"PASS": 0, "DIFFERS": 1, "FAIL": 2}
_FONT = 8.0
_LINE = 1.45 * _FONT  # line height, points
_DIMS = (1, 2, 3)

Line = tuple[str, str]  # (text, verdict)

# The square's corners (axes fractions of its panel), where the blocks of the two vertical
# arrows start (the left one hangs from _LEFT_TOP, the right one stands on _RIGHT_BOTTOM),
# and its panel's share of the figure height (the notes below take 1).
_XL, _XR, _YT, _YB = 0.09, 0.91, 0.76, 0.24
_LEFT_TOP, _RIGHT_BOTTOM = _YT - 0.08, _YB + 0.075
_SQUARE = 2.7


def _worst(rows: Sequence[Row]) -> str:
    return max((r.verdict for r in rows), key=_SEVERITY.__getitem__, default="PASS")


def _num(value: float, spec: str = ".2f") -> str:
    return format(value, spec) if math.isfinite(value) else "nan"


def _power(base: str, slope: float) -> str:
    """``$N^{-1.01}$``: a fitted slope as an exponent (mathtext)."""
    return f"${base}^{{{slope:.2f}}}$" if math.isfinite(slope) else f"{base}^nan"


class _Rows:
    """The rows by key, and per-dimension lines built from them."""

    def __init__(self, rows: Sequence[Row]):
        self.by_key = {r.key: r for r in rows}
        self.dims = [d for d in _DIMS if f"diagram.quad.grid.d{d}.sup" in self.by_key] or [
            d for d in _DIMS if any(k.endswith(f".d{d}") for k in self.by_key)
        ]

    def get(self, key: str) -> Row | None:
        return self.by_key.get(key)

    def line(self, keys: Sequence[str], text: Any) -> list[Line]:
        """``[(text(rows), worst verdict)]`` if every key is present, else ``[]``."""
        found = [self.by_key.get(k) for k in keys]
        if any(r is None for r in found):
            return []
        return [(text(*found), _worst(found))]  # type: ignore[arg-type]

    def per_dim(self, template: str, text: Any, label: str = "d={d}: ") -> list[Line]:
        out: list[Line] = []
        for d in self.dims:
            keys = [k.format(d=d) for k in template.split("|")]
            out += self.line(keys, lambda *rs, d=d: label.format(d=d) + text(*rs))
        return out


def _blocks(r: _Rows) -> dict[str, tuple[str, list[Line]]]:
    """Title and lines of each arrow and of the notes under the square."""

    def largest_eps(d: int) -> Row | None:
        rates = [
            row
            for key, row in r.by_key.items()
            if key.startswith(f"diagram.quad.grid.d{d}.eps=") and row.details.get("eps", 0) > 0
        ]
        return max(rates, key=lambda row: row.details["eps"], default=None)

    left: list[Line] = []
    for d in r.dims:
        big = largest_eps(d)
        extra = [] if big is None else [big.key]
        left += r.line(
            [f"diagram.quad.grid.d{d}.sup", *extra],
            lambda sup, *big, d=d: (
                f"grid d={d}: sup_ε E ∝ {_power('N', sup.measured)}"
                + (
                    f";  ε = {big[0].details['eps']:g}: {_power('N', big[0].measured)}"
                    if big
                    else ""
                )
            ),
        )
    left += r.per_dim(
        "diagram.quad.grid.d{d}.nmax|diagram.quad.halton.d{d}.nmax",
        lambda g, h: f"max_ε E(ε, N_max) / (2Lρ + ρ²/2t) = {_num(g.measured)}, {_num(h.measured)}",
        label="d={d}, grid & Halton: ",
    )
    right: list[Line] = r.per_dim(
        "diagram.quad.grid.d{d}.eps=0|diagram.quad.halton.d{d}.rqmc",
        lambda g, h: f"grid {_power('N', g.measured)}, Halton (RQMC) {_power('N', h.measured)}",
    )
    right += r.per_dim(
        "diagram.quad.grid.d{d}.hl|diagram.quad.halton.d{d}.hl",
        lambda g, h: (
            f"E(0, N_max) = {_num(g.measured, '.1e')}, {_num(h.measured, '.1e')} "
            "within the covering bounds"
        ),
    )
    top: list[Line] = r.per_dim(
        "diagram.maslov.d{d}",
        lambda m: (
            rf"$0 \leq (u^N_0 - \tilde u^N_\varepsilon)\,/\,(\varepsilon \log N) "
            rf"\leq {_num(m.measured)} \leq 1$"
        ),
    )
    bottom: list[Line] = []
    for name, label in (("cone", "|y| (kink)"), ("concave", "−|y| (sphere)")):
        keys = [f"diagram.visc.{name}.d{d}.log" for d in r.dims]
        bottom += r.line(
            keys,
            lambda *rs, label=label: (
                f"{label}: ε log(1/ε) coefficient "
                + ", ".join(_num(x.measured) for x in rs)
                + "  (d = "
                + ", ".join(str(d) for d in r.dims)
                + ")"
            ),
        )
    keys = [f"diagram.visc.smooth.d{d}.rate" for d in r.dims]
    bottom += r.line(
        keys,
        lambda *rs: "√(1+|y|²) (smooth): " + ", ".join(_power("ε", x.measured) for x in rs),
    )
    bottom += r.per_dim(
        "diagram.limit.continuum.d{d}",
        lambda c: (
            f"N = ∞: sup|u_ε − u_0| / ((d/2) ε log(1/ε)) = {_num(c.measured, '.3f')} "
            "at the smallest ε"
        ),
    )

    notes: list[Line] = []
    notes += r.line(["diagram.identity"], lambda i: f"(i) layer = Hopf–Cole: {i.measured:.0e}")
    notes += r.per_dim(
        "diagram.sweep.d{d}", lambda s: f"sweep = hopf_cole at every width: {s.measured:.0e}"
    )
    notes += r.per_dim(
        "diagram.semigroup.gap.d{d}|diagram.semigroup.rate.d{d}",
        lambda g, s: (
            f"T_t2 T_t1 = T_(t1+t2): gap {g.measured:.0e};  → u_ε at {_power('N', s.measured)}"
        ),
        label="(ii) d={d}: ",
    )
    notes += r.per_dim(
        "diagram.depth.rate.d{d}|diagram.depth.growth.d{d}",
        lambda s, g: f"depth L: {_power('N', s.measured)}, err_L / (L·err_1) = {_num(g.measured)}",
        label="Thm E.1, d={d}: ",
    )
    notes += r.per_dim(
        "diagram.limit.viscous.d{d}",
        lambda v: f"min_(ε>0) E(ε, N_max) / (2Lρ + ρ²/2t) = {_num(v.measured)}",
        label="lim_ε lim_N, d={d}: ",
    )
    notes += r.per_dim(
        "diagram.thm81.epsstar.d{d}|diagram.thm81.presc.d{d}",
        lambda s, p: (
            f"ε* = argmin E ∝ {_power('N', s.measured)} = N^({s.measured * s.details['d']:.2f}/d), "
            f"paper N^(−1/d);  E(N^(−1/d), N) / min_ε E = {_num(p.measured)}"
        ),
        label="Thm 8.1, d={d}: ",
    )
    return {
        "top": ("ε → 0 at fixed N  (Maslov sandwich, Thm 3.1)", top),
        "left": ("N → ∞  (quadrature, Thm 7.1(iii))", left),
        "right": ("N → ∞ at ε = 0  (Thm 5.1, 7.1(v))", right),
        "bottom": ("ε → 0  (vanishing viscosity, Thm 7.1(iv))", bottom),
        "notes": ("", notes),
    }


def _text_block(
    ax: Any, x: float, y: float, title: str, lines: list[Line], *, above: bool = False, **kw: Any
) -> None:
    """Title and lines stacked one every ``_LINE`` points from axes point (x, y): downwards
    from it, or (``above``) upwards so that the last line ends just above it."""
    items = ([(title, "")] if title else []) + lines
    for i, (text, verdict) in enumerate(items):
        offset = (len(items) - i) * _LINE if above else -i * _LINE
        ax.annotate(
            text,
            xy=(x, y),
            xycoords="axes fraction",
            xytext=(0, offset),
            textcoords="offset points",
            va="top",
            fontsize=_FONT,
            color=_COLORS.get(verdict, "black"),
            fontweight="bold" if not verdict else "normal",
            **kw,
        )


def _draw_square(ax: Any, blocks: dict[str, tuple[str, list[Line]]]) -> None:
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    xl, xr, yt, yb = _XL, _XR, _YT, _YB
    corners = (
        (xl, yt, "$u^N_\\varepsilon$\nLSE layer"),
        (xr, yt, "$u^N_0$\nmax-affine"),
        (xl, yb, "$u_\\varepsilon$\nviscous HJ"),
        (xr, yb, "$u_0$\nHopf–Lax"),
    )
    for x, y, text in corners:
        ax.text(
            x,
            y,
            text,
            ha="center",
            va="center",
            fontsize=10,
            bbox={"boxstyle": "round,pad=0.4", "fc": "#f6f8fa", "ec": "#57606a"},
        )
    arrow = {"arrowstyle": "-|>", "lw": 1.5, "color": "#24292f", "shrinkA": 0, "shrinkB": 0}
    for start, end in (
        ((xl + 0.08, yt), (xr - 0.08, yt)),
        ((xl + 0.08, yb), (xr - 0.08, yb)),
        ((xl, yt - 0.08), (xl, yb + 0.08)),
        ((xr, yt - 0.08), (xr, yb + 0.08)),
    ):
        ax.annotate("", xy=end, xytext=start, arrowprops=arrow)
    title, lines = blocks["top"]
    _text_block(ax, 0.5, yt + 0.05, title, lines, above=True, ha="center")
    title, lines = blocks["bottom"]
    _text_block(ax, 0.5, yb - 0.05, title, lines, ha="center")
    # The two vertical arrows' blocks: the left one hangs from below the top-left corner,
    # the right one stands on the bottom arrow, so they never share a line of the panel.
    title, lines = blocks["left"]
    _text_block(ax, xl + 0.03, _LEFT_TOP, title, lines, ha="left")
    title, lines = blocks["right"]
    _text_block(ax, xr - 0.03, _RIGHT_BOTTOM, title, lines, above=True, ha="right")


def _draw_surface(fig: Any, ax: Any, s: dict[str, Any]) -> None:
    from matplotlib import patheffects

    eps = np.asarray(s["eps"], dtype=float)
    n_atoms = np.asarray(s["N"], dtype=float)
    E = np.asarray(s["E"], dtype=float)
    d = int(s["d"])
    positive = eps > 0
    log_eps = np.log10(eps[positive])
    step = float(np.median(np.diff(log_eps)))
    # Columns: eps = 0 drawn one (median) step left of the smallest eps, then every eps with
    # cell edges at the geometric midpoints (the grid may be irregular).
    x_cols = np.concatenate([[log_eps[0] - 2 * step], log_eps])
    mids = (x_cols[1:] + x_cols[:-1]) / 2
    edges_x = np.concatenate([[x_cols[0] - step / 2], mids, [x_cols[-1] + step / 2]])
    edges_x[1] = x_cols[0] + step / 2
    log_n = np.log10(n_atoms)
    dn = np.diff(log_n)
    edges_y = np.concatenate(
        [[log_n[0] - dn[0] / 2], log_n[:-1] + dn / 2, [log_n[-1] + dn[-1] / 2]]
    )
    values = np.concatenate([E[~positive][:1], E[positive]], axis=0)
    mesh = ax.pcolormesh(
        edges_x, edges_y, np.log10(np.maximum(values, 1e-16)).T, cmap="viridis", shading="flat"
    )
    fig.colorbar(mesh, ax=ax, label=r"$\log_{10} E(\varepsilon, N)$", shrink=0.85, pad=0.02)

    def column(values: np.ndarray) -> np.ndarray:
        return np.where(values > 0, np.log10(np.where(values > 0, values, 1.0)), x_cols[0])

    outline = [patheffects.withStroke(linewidth=2.6, foreground="black")]
    star = np.asarray(s["eps_star"], dtype=float)
    ax.plot(
        column(star),
        log_n,
        "wo-",
        ms=3.5,
        mec="black",
        lw=1.2,
        path_effects=outline,
        label=r"$\varepsilon^*(N)$ = argmin",
    )
    knee = np.asarray(s["eps_knee"], dtype=float)
    ax.plot(
        column(knee),
        log_n,
        "w^--",
        ms=3.5,
        mec="black",
        lw=1,
        path_effects=outline,
        label=f"knee: E ≤ {s['knee_factor']:g}·min E",
    )
    ax.plot(-log_n / d, log_n, color="#ff8c00", ls=":", lw=1.8, label=rf"paper: $N^{{-1/{d}}}$")
    inside = (star > 0) & (star < eps.max())
    if inside.any():
        anchor = float(np.mean(np.log10(star[inside]) + 2 / d * log_n[inside]))
        ax.plot(anchor - 2 / d * log_n, log_n, "r-.", lw=1.2, label=rf"$\propto N^{{-2/{d}}}$")
    ax.set_xlim(edges_x[0], edges_x[-1])
    ax.set_ylim(edges_y[0], edges_y[-1])
    decades = np.arange(np.ceil(log_eps[0]), log_eps[-1] + 1e-9, 2)
    ticks = [x_cols[0]] + [v for v in decades if v - x_cols[0] >= 1.5]
    ax.set_xticks(ticks, ["0"] + [f"{v:g}" for v in ticks[1:]])
    ax.set_xlabel(r"$\log_{10}\varepsilon$  (left column: $\varepsilon = 0$)", fontsize=9)
    ax.set_ylabel(r"$\log_{10} N$", fontsize=9)
    ax.set_title(
        rf"$E(\varepsilon, N)=\sup_x|u^N_\varepsilon-u_0|$, g = {s['datum']}, d = {d}", fontsize=9
    )
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.11), ncol=2, frameon=False)


def commutative_diagram_figure(rows: Sequence[Row]) -> Any:
    """The figure of :func:`plot_commutative_diagram` as a matplotlib ``Figure`` (Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    table = _Rows(rows)
    blocks = _blocks(table)
    surfaces = [
        table.by_key[f"diagram.thm81.epsstar.d{d}"].details
        for d in _DIMS
        if f"diagram.thm81.epsstar.d{d}" in table.by_key
    ]
    n_notes = len(blocks["notes"][1])
    height = 8.0 + 0.16 * max(0, n_notes - 9)
    fig = Figure(figsize=(8.8 + 5.0 * len(surfaces), height), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        2,
        1 + len(surfaces),
        width_ratios=[8.8] + [5.0] * len(surfaces),
        height_ratios=[_SQUARE, 1],
    )
    square = fig.add_subplot(grid[0, 0])
    _draw_square(square, blocks)
    notes = fig.add_subplot(grid[1, 0])
    notes.set_axis_off()
    _text_block(notes, 0.0, 1.0, "", blocks["notes"][1], ha="left")
    for i, surface in enumerate(surfaces):
        _draw_surface(fig, fig.add_subplot(grid[:, 1 + i]), surface)
    counts = {v: sum(r.verdict == v for r in rows) for v in ("PASS", "DIFFERS", "FAIL")}
    fig.suptitle(
        f"Theorem 7.1, measured: {len(rows)} claims — {counts['PASS']} pass, "
        f"{counts['DIFFERS']} differ from the paper, {counts['FAIL']} fail",
        fontsize=11,
    )
    # The square must be tall enough for the two vertical arrows' blocks (one hanging from
    # under the top-left corner, one standing on the bottom arrow) to stack without meeting,
    # titles and a gap included. The layout's margins depend on the content: measure the
    # square's height once laid out and grow the figure by what is missing.
    n_between = len(blocks["left"][1]) + len(blocks["right"][1]) + 2
    needed = (n_between * _LINE + _FONT) / 72 / (_LEFT_TOP - _RIGHT_BOTTOM)
    fig.get_layout_engine().execute(fig)
    have = square.get_position().height * fig.get_figheight()
    if have < needed:
        fig.set_figheight(fig.get_figheight() + (needed - have) * (_SQUARE + 1) / _SQUARE)
    return fig


def plot_commutative_diagram(rows: Sequence[Row], path: str | os.PathLike) -> Path:
    r"""Draw Theorem 7.1's diagram labelled with the measured rates, and the error surfaces.

    Args:
        rows: the ``diagram`` rows of ``hjax verify`` (:class:`hjax.verify.Row`); rows are
            looked up by key (``diagram.quad.grid.d1.sup``, ``diagram.thm81.epsstar.d2``,
            …), missing ones are left out of the figure.
        path: output file; the format follows the suffix (``.png``, ``.pdf``, ``.svg``).

    Returns:
        The path written (atomically: :func:`hjax.runner.atomic_write_bytes`; the Agg canvas is
        used directly, so no global matplotlib backend is touched).
    """
    path = Path(path)
    fig = commutative_diagram_figure(rows)
    with tempfile.SpooledTemporaryFile() as buffer:
        fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", dpi=130)
        buffer.seek(0)
        data = buffer.read()
    return atomic_write_bytes(path, data)
