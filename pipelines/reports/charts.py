"""Trend charts for the emails, drawn as PNG bytes by matplotlib's Agg backend (no browser, no display).

Every chart is exactly ``WIDTH`` x ``HEIGHT`` pixels, so the ``<img>`` tag's
``width``/``height`` attributes match it and Outlook cannot rescale it. The
images travel inside the email as related MIME parts, referenced by ``cid:``.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass

WIDTH, HEIGHT, DPI = 560, 200, 100
INK, ACCENT, GRID = "#1f2937", "#4f46e5", "#e5e7eb"


@dataclass(frozen=True)
class Chart:
    """One PNG and how the email refers to it."""

    cid: str  # Content-ID without angle brackets
    title: str
    png: bytes
    width: int = WIDTH
    height: int = HEIGHT


def trend_chart(cid: str, title: str, days: list[str], values: list[float | None], *, highlight_last: bool = True,
                value_format: str = "{:,.0f}") -> Chart:
    """A 14-day bar chart of ``values`` with the report day (the last bar) highlighted."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # never a GUI backend, whatever the environment says
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    figure = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
    axes = figure.add_axes((0.07, 0.2, 0.91, 0.66))
    numbers = [0.0 if v is None else float(v) for v in values]
    colours = [ACCENT if highlight_last and i == len(numbers) - 1 else "#a5b4fc" for i in range(len(numbers))]
    axes.bar(range(len(numbers)), numbers, color=colours, width=0.7)
    # Every other day is labelled, counting back from the report day so that it always is.
    labels = [dt.date.fromisoformat(d).strftime("%d %b") if (len(days) - 1 - i) % 2 == 0 else ""
              for i, d in enumerate(days)]
    axes.set_xticks(range(len(numbers)), labels, fontsize=7, color=INK)
    axes.tick_params(axis="y", labelsize=7, colors=INK)
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _compact(v)))
    axes.grid(axis="y", color=GRID, linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right", "left"):
        axes.spines[side].set_visible(False)
    axes.spines["bottom"].set_color(GRID)
    if numbers:
        axes.annotate(value_format.format(numbers[-1]), (len(numbers) - 1, numbers[-1]), ha="center", va="bottom",
                      fontsize=7, color=INK, xytext=(0, 2), textcoords="offset points")
    figure.text(0.07, 0.9, title, fontsize=9, color=INK, weight="bold")
    buffer = io.BytesIO()
    # No bbox "tight": it would change the pixel size the HTML promises.
    figure.savefig(buffer, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return Chart(cid=cid, title=title, png=buffer.getvalue())


def _compact(value: float) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}{suffix}".replace(".0", "")
    return f"{value:,.0f}"
