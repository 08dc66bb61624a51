"""`tlops cost --png`: the month's spend as a picture. matplotlib is imported here only, when a
chart is asked for; `tlops` without `--png` never loads it.

Bars: each complete day's spend. Line: the month to date, running up to the dashed
projection at the month's end. Horizontal lines: the budget and the kill line.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from pathlib import Path

from tlops.guard.costs import Summary, money


class ChartUnavailable(RuntimeError):
    """matplotlib is not installed; the message says how to get it."""


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ChartUnavailable(
            "--png needs matplotlib (pip install 'matplotlib==3.11.2' into the project's .venv)"
        ) from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def write(summary: Summary, path: Path, *, title: str, label: str = "", kill_percent: float = 105):
    """Write the chart of `summary` to `path` (PNG); `label` says where the figures came from."""
    plt = _pyplot()
    from matplotlib.dates import DateFormatter

    today, unit = summary.today, summary.unit
    first = date(today.year, today.month, 1)
    last = date(today.year, today.month, calendar.monthrange(today.year, today.month)[1])
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 6.4), dpi=110, sharex=True, gridspec_kw={"height_ratios": [3, 1.2]}
    )
    days = [d for d, _ in summary.daily]
    amounts = [a for _, a in summary.daily]
    running, total = [], 0.0
    for amount in amounts:
        total += amount
        running.append(total)

    # Above: where the month stands and where it is heading, against the budget.
    comparable = summary.budget_unit == unit
    kill = summary.budget * kill_percent / 100
    if comparable:
        top.axhline(kill, color="#b22222", linewidth=1.5, linestyle=":", zorder=1,
                    label=f"kill line ({kill_percent:g} %): {money(kill, unit)}")  # fmt: skip
        top.axhline(summary.budget, color="#c77c00", linewidth=2, zorder=1,
                    label=f"budget: {money(summary.budget, unit)}")  # fmt: skip
    if days:
        so_far = f"month to date: {money(summary.month_to_date, unit)}"
        top.plot(days, running, color="#1f4e8c", linewidth=2.6, marker="o", markersize=3.5,
                 zorder=3, label=so_far)  # fmt: skip
    start = days[-1] if days else first
    top.plot([start, last], [running[-1] if running else 0.0, summary.projection],
             color="#1f4e8c", linewidth=2, linestyle="--", zorder=3,
             label=f"projection: {money(summary.projection, unit)}"
             f" ({summary.projection_percent:.0f} %)")  # fmt: skip
    highest = max([summary.projection, kill if comparable else 0.0, *running, 0.01])
    top.set_ylim(0, highest * 1.12)
    top.set_ylabel(f"{unit}, month to date")
    top.legend(loc="lower right", frameon=True, framealpha=0.92, edgecolor="#dddddd", fontsize=9.5)

    # Below: each complete day's spend, on its own scale.
    bottom.bar(days, amounts, width=0.8, color="#9fb8d6", zorder=2)
    bottom.set_ylabel(f"{unit} a day")
    bottom.set_ylim(0, max([*amounts, 0.01]) * 1.25)

    for ax in (top, bottom):
        ax.axvline(today, color="#888888", linewidth=1, linestyle="-.", zorder=0)
        ax.grid(axis="y", color="#e8e8e8", zorder=0)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    early = today.day <= 5  # the label goes where there is room
    top.annotate(f"today ({today:%d %b})", (today, highest * 1.08), fontsize=8.5, color="#666666",
                 ha="left" if early else "right", xytext=(4 if early else -4, 0),
                 textcoords="offset points")  # fmt: skip
    if not days:
        bottom.text(0.5, 0.5, "no complete day of this month yet", transform=bottom.transAxes,
                    ha="center", va="center", fontsize=10, color="#888888")  # fmt: skip
    ticks = [first + timedelta(days=n) for n in (0, 4, 9, 14, 19, 24)] + [last]
    bottom.set_xticks(ticks)
    bottom.xaxis.set_major_formatter(DateFormatter("%d %b"))
    bottom.set_xlim(first - timedelta(hours=18), last + timedelta(hours=18))

    fig.suptitle(title, x=0.01, ha="left", fontsize=13.5, fontweight="bold")
    fig.text(0.01, 0.925, (
        f"month to date {money(summary.month_to_date, unit)} ({summary.percent:.0f} % of the "
        f"budget) · yesterday {money(summary.yesterday_amount, unit)} · projection: the last "
        f"{summary.rate_days} day(s)' mean, {money(summary.rate, unit)} a day"
    ), fontsize=9.5, color="#444444")  # fmt: skip
    if label:
        fig.text(0.99, 0.01, label, ha="right", va="bottom", fontsize=9.5, color="#b22222",
                 fontweight="bold")  # fmt: skip
    fig.tight_layout(rect=(0, 0.03, 1, 0.93))
    fig.savefig(path, format="png")
    plt.close(fig)
