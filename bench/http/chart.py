"""The run as a picture: req/s and p95 per scenario and concurrency, with the bare read marked.

matplotlib with the Agg backend: it draws into a file and needs no display.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display, wherever the benchmark runs

import matplotlib.pyplot as plt  # after matplotlib.use: the backend is chosen first
from matplotlib.axes import Axes

from bench.http.report import Cell

# Not drawn: the stub measures the load client, not a server.
_LEFT_OUT = frozenset({"client_ceiling"})


def draw(cells: Sequence[Cell], yardstick: Mapping[int, float], title: str, path: Path) -> None:
    """Two panels: req/s (bars, log scale; the bare read's level as a dashed line in each group)
    and p95 latency (bars, log scale), grouped by concurrency; the open loop's p95s as their own
    group on the right of the second panel."""
    closed = [c for c in cells if c.scenario not in _LEFT_OUT and c.scenario != "open_loop"]
    loops = sorted((c for c in cells if c.scenario == "open_loop"), key=lambda c: c.concurrency)
    levels = sorted({c.concurrency for c in closed})
    labels = list(dict.fromkeys(c.label for c in closed))  # run order, each once
    colours = plt.colormaps["tab20"].resampled(max(len(labels), 1))
    figure, (rates, tails) = plt.subplots(2, 1, figsize=(13, 10), layout="constrained")
    width = 0.8 / max(len(labels), 1)

    for group, level in enumerate(levels):
        for index, label in enumerate(labels):
            cell = next((c for c in closed if c.label == label and c.concurrency == level), None)
            if cell is None:
                continue
            x = group + (index - (len(labels) - 1) / 2) * width
            # Each scenario once in the legend, at the first concurrency it was measured at.
            bar_label = label if _first_level(closed, label) == level else None
            rates.bar(x, max(cell.requests_per_second, 0.1), width, color=colours(index),
                      label=bar_label)  # fmt: skip
            tails.bar(x, max(cell.p95_ms, 0.01), width, color=colours(index))
        bare = yardstick.get(level)
        if bare:
            rates.hlines(bare, group - 0.45, group + 0.45, colors="black", linestyles="dashed",
                         label="bare read (yardstick)" if group == 0 else None)  # fmt: skip

    if loops:
        group = len(levels)
        for offset, cell in enumerate(loops):
            x = group + (offset - (len(loops) - 1) / 2) * 0.3
            tails.bar(x, max(cell.p95_ms, 0.01), 0.28, color="grey" if offset else "dimgrey")
            tails.annotate(f"{cell.concurrency} user{'s' if cell.concurrency > 1 else ''}",
                           (x, max(cell.p95_ms, 0.01)), ha="center", va="bottom", fontsize=8)  # fmt: skip

    ticks = [f"{level} user{'s' if level > 1 else ''}" for level in levels]
    _axes(rates, ticks, "requests per second (log)")
    _axes(tails, ticks + (["open loop, 1 req/s each"] if loops else []), "p95 ms (log)")
    rates.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    figure.suptitle(textwrap.fill(title, 110), fontsize=10)
    rates.set_title("requests per second (dashed: the bare read, the yardstick)", fontsize=10)
    tails.set_title(
        "p95 latency per request (open loop: from the scheduled send time)", fontsize=10
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _first_level(cells: Sequence[Cell], label: str) -> int:
    return min(c.concurrency for c in cells if c.label == label)


def _axes(axes: Axes, ticks: Sequence[str], ylabel: str) -> None:
    axes.set_yscale("log")
    axes.set_xticks(range(len(ticks)), ticks)
    axes.set_ylabel(ylabel)
    axes.grid(axis="y", which="both", alpha=0.3)
    axes.set_xlim(-0.5, len(ticks) - 0.5)
