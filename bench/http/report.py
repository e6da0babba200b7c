"""Turn the raw results of the cells into the table and the JSON document."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common.procstat import CpuUsage
from bench.http.load_client import CellResult
from bench.http.scenarios import BARE_READ, REFERENCES


@dataclass(frozen=True, slots=True)
class Cell:
    """One (scenario, concurrency) cell, summarised. CPU figures are % of one core."""

    scenario: str
    label: str
    concurrency: int
    users_with_data: int  # distinct users the virtual users spread over
    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # every failure of the cell: non-2xx (also outside the window), transport, hung
    statuses: dict[str, int]
    transport_errors: int
    hung: int
    errors_outside_window: int
    mean_body_bytes: int
    server_cpu_pct: float
    postgres_cpu_pct: float  # the backends of the service's pool only
    client_cpu_pct: float  # all client processes together
    host_cpu_pct: float  # every process on the machine (at most nproc x 100)
    other_cpu_pct: float  # host minus the three above: other processes, PostgreSQL's own
    client_us_per_request: float
    server_us_per_request: float
    error_samples: list[str]
    # Open loop: the latest a request left the client after its scheduled time. Its latency
    # includes that wait; a large figure means the client, not the server, was late.
    send_lag_max_ms: float = 0.0


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0.0 when it is empty)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def merge(results: Iterable[CellResult]) -> CellResult:
    merged = CellResult()
    for part in results:
        merged.latencies += part.latencies
        merged.statuses.update(part.statuses)
        merged.transport_errors += part.transport_errors
        merged.hung += part.hung
        merged.errors_outside_window += part.errors_outside_window
        merged.body_bytes += part.body_bytes
        merged.cpu_seconds += part.cpu_seconds
        # The processes measure the same window; keep the longest as the common one.
        merged.window_seconds = max(merged.window_seconds, part.window_seconds)
        merged.samples += part.samples
        merged.max_send_lag = max(merged.max_send_lag, part.max_send_lag)
    return merged


def summarise(
    *,
    scenario: str,
    label: str,
    concurrency: int,
    users_with_data: int,
    result: CellResult,
    window_seconds: float,
    cpu: CpuUsage,
) -> Cell:
    ordered = sorted(result.latencies)
    requests = len(ordered)
    non_2xx = sum(count for status, count in result.statuses.items() if not 200 <= status < 300)
    client_share = result.cpu_seconds / result.window_seconds if result.window_seconds else 0.0
    served = max(requests, 1)
    return Cell(
        scenario=scenario,
        label=label,
        concurrency=concurrency,
        users_with_data=users_with_data,
        requests=requests,
        seconds=round(window_seconds, 3),
        requests_per_second=round(requests / window_seconds, 1),
        p50_ms=_ms(percentile(ordered, 0.50)),
        p95_ms=_ms(percentile(ordered, 0.95)),
        p99_ms=_ms(percentile(ordered, 0.99)),
        max_ms=_ms(ordered[-1] if ordered else 0.0),
        errors=non_2xx + result.errors_outside_window + result.transport_errors + result.hung,
        statuses={str(status): count for status, count in sorted(result.statuses.items())},
        transport_errors=result.transport_errors,
        hung=result.hung,
        errors_outside_window=result.errors_outside_window,
        mean_body_bytes=result.body_bytes // served,
        server_cpu_pct=_pct(cpu.server),
        postgres_cpu_pct=_pct(cpu.postgres),
        client_cpu_pct=_pct(client_share),
        host_cpu_pct=_pct(cpu.host),
        other_cpu_pct=_pct(cpu.host - cpu.server - cpu.postgres - client_share),
        client_us_per_request=round(result.cpu_seconds / served * 1e6, 1),
        server_us_per_request=round(cpu.server * window_seconds / served * 1e6, 1),
        error_samples=result.samples,
        send_lag_max_ms=_ms(result.max_send_lag),
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


# Counts that add up over runs; every other number of a cell is the median of its runs.
_SUMMED = frozenset({"errors", "transport_errors", "hung", "errors_outside_window"})


def combine(runs: Sequence[Cell]) -> Cell:
    """One cell from the same cell of several runs: the median of each figure (req/s, each
    percentile, CPU), errors added up, statuses added up, a few error samples of any run."""
    if len(runs) == 1:
        return runs[0]
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(Cell):
        column = [getattr(cell, spec.name) for cell in runs]
        if spec.name in _SUMMED:
            values[spec.name] = sum(column)
        elif spec.name == "statuses":
            total: Counter[str] = Counter()
            for statuses in column:
                total.update(statuses)
            values[spec.name] = dict(sorted(total.items()))
        elif spec.name == "error_samples":
            values[spec.name] = [sample for samples in column for sample in samples][:5]
        elif isinstance(column[0], int | float) and not isinstance(column[0], bool):
            median = statistics.median(column)
            values[spec.name] = type(column[0])(median)
        else:
            values[spec.name] = column[0]
    return Cell(**values)


def yardstick_of(cells: Iterable[Cell]) -> dict[int, float]:
    """The bare read's req/s at each concurrency: what every ratio divides by."""
    return {
        cell.concurrency: cell.requests_per_second for cell in cells if cell.scenario == BARE_READ
    }


# Rows whose req/s is set by their own schedule, not by what the server can do: no ratio.
_UNRATED = frozenset({"open_loop"})


def ratio_to_bare(cell: Cell, yardstick: Mapping[int, float]) -> float | None:
    bare = yardstick.get(cell.concurrency)
    if cell.scenario in _UNRATED or not bare:
        return None
    return round(cell.requests_per_second / bare, 3)


def _pct(share: float) -> float:
    return round(share * 100, 1)


# --- the table ------------------------------------------------------------------------------

_COLUMNS: tuple[tuple[str, int], ...] = (
    ("scenario", 24),
    ("users", 5),
    ("req/s", 8),
    ("vs bare", 7),
    ("p50 ms", 7),
    ("p95 ms", 7),
    ("p99 ms", 7),
    ("errors", 6),
    ("server", 6),
    ("pg", 5),
    ("client", 6),
    ("other", 5),
    ("cl us/req", 9),
    ("sv us/req", 9),
)


def table(cells: Sequence[Cell], yardstick: Mapping[int, float]) -> str:
    header = "  ".join(_align(name, width, index) for index, (name, width) in enumerate(_COLUMNS))
    lines = [header, "-" * len(header)]
    previous = None
    for cell in cells:
        label = cell.label if cell.scenario != previous else ""
        previous = cell.scenario
        ratio = ratio_to_bare(cell, yardstick)
        values = (
            label,
            str(cell.concurrency),
            f"{cell.requests_per_second:,.0f}",
            "-" if ratio is None else f"{ratio:.2f}x",
            f"{cell.p50_ms:.2f}",
            f"{cell.p95_ms:.2f}",
            f"{cell.p99_ms:.2f}",
            str(cell.errors),
            f"{cell.server_cpu_pct:.0f}%",
            f"{cell.postgres_cpu_pct:.0f}%",
            f"{cell.client_cpu_pct:.0f}%",
            f"{max(cell.other_cpu_pct, 0.0):.0f}%",
            f"{cell.client_us_per_request:.0f}",
            f"{cell.server_us_per_request:.0f}",
        )
        lines.append(
            "  ".join(
                _align(value, width, index)
                for index, (value, (_, width)) in enumerate(zip(values, _COLUMNS, strict=True))
            )
        )
    return "\n".join(lines)


def _align(text: str, width: int, index: int) -> str:
    return text.ljust(width) if index == 0 else text.rjust(width)


LEGEND = (
    "users = concurrent virtual users (one keep-alive connection each); vs bare = req/s divided "
    "by the bare read's at the same users (the yardstick, measured in the same run); latencies "
    "per request, measured by the client (pgbench's: per transaction, from its log; open loop: "
    "from each request's scheduled time); errors = every non-2xx of the cell (warm-up and requests finishing "
    "after the window included) + transport errors + hung requests. CPU columns are % of one "
    "core over the window: server = the tasktrail process, pg = the PostgreSQL "
    "backends of its pool, client = the load client process(es), other = the rest of the "
    "machine. cl/sv us/req = CPU microseconds per request of the client / the server."
)


# --- findings -------------------------------------------------------------------------------


def findings(cells: Sequence[Cell], cores: int) -> list[str]:
    """Short sentences on what the table shows: reference, client headroom, errors, noise."""
    ceiling = [cell for cell in cells if cell.scenario == "client_ceiling"]
    service = [cell for cell in cells if cell.scenario != "client_ceiling"]
    notes = _reference_and_client(service, ceiling)
    notes += _noise(cells, cores)
    failing = [cell for cell in service if cell.errors]
    if not failing:
        notes.append("Errors: none (every response of the service was 2xx).")
    for cell in failing:
        notes.append(
            f"Errors in {cell.label} x{cell.concurrency}: statuses {cell.statuses}, "
            f"{cell.transport_errors} transport, {cell.hung} hung, "
            f"{cell.errors_outside_window} non-2xx outside the measured window; "
            f"e.g. {cell.error_samples[:2]}"
        )
    return notes


def _reference_and_client(service: Sequence[Cell], ceiling: Sequence[Cell]) -> list[str]:
    notes: list[str] = []
    reference = [cell for cell in service if cell.scenario == "healthz"]
    api = [cell for cell in service if cell.scenario not in REFERENCES]
    # pgbench's rows have no load client: their "client" CPU is pgbench's.
    service = [cell for cell in service if cell.scenario != "pgbench_create"]
    best_ref = max(reference, key=lambda cell: cell.requests_per_second, default=None)
    if best_ref and api:
        best_api = max(api, key=lambda cell: cell.requests_per_second)
        ratio = best_ref.requests_per_second / max(best_api.requests_per_second, 1.0)
        notes.append(
            f"Reference: /healthz peaks at {best_ref.requests_per_second:,.0f} req/s "
            f"(x{best_ref.concurrency}), {ratio:.1f}x the fastest API cell "
            f"({best_api.label} x{best_api.concurrency}, "
            f"{best_api.requests_per_second:,.0f} req/s)."
        )
    for cell in ceiling:
        versus = (
            f", {cell.requests_per_second / best_ref.requests_per_second:.1f}x what tasktrail's "
            "/healthz reached"
            if best_ref
            else ""
        )
        notes.append(
            f"Client ceiling: against a stub that answers canned bytes, the same client drove "
            f"{cell.requests_per_second:,.0f} req/s at x{cell.concurrency} using "
            f"{cell.client_cpu_pct:.0f}% of a core{versus}."
        )
    if service:
        busiest = max(service, key=lambda cell: cell.client_cpu_pct)
        notes.append(
            f"Client against tasktrail: at most {busiest.client_cpu_pct:.0f}% of one core "
            f"({busiest.label} x{busiest.concurrency}); "
            f"{min(c.client_us_per_request for c in service):.0f}-"
            f"{max(c.client_us_per_request for c in service):.0f} us of CPU per request, against "
            f"{min(c.server_us_per_request for c in service):.0f}-"
            f"{max(c.server_us_per_request for c in service):.0f} us in the server."
        )
        saturated = [cell for cell in service if cell.client_cpu_pct >= 80]
        if saturated:
            notes.append(
                "WARNING: the client used 80% of a core or more in "
                + ", ".join(f"{c.label} x{c.concurrency}" for c in saturated)
                + ": those cells may measure the client; try --client-processes 2."
            )
    return notes


def _noise(cells: Sequence[Cell], cores: int) -> list[str]:
    noisy = [cell for cell in cells if cell.other_cpu_pct >= 25]
    if not noisy:
        return []
    return [
        f"Noise: other processes (not the server, its backends or the client) took 25% of a core or more (of {cores * 100}%) "
        f"in {len(noisy)} of {len(cells)} cells (max {max(c.other_cpu_pct for c in noisy):.0f}%)"
        ": something else ran on the machine; compare figures within this run only."
    ]


# --- targets --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    goal: str
    measured: str
    met: bool


def _cell(cells: Sequence[Cell], scenario: str, concurrency: int) -> Cell | None:
    return next((c for c in cells if c.scenario == scenario and c.concurrency == concurrency), None)


def targets(cells: Sequence[Cell], yardstick: Mapping[int, float]) -> list[Target]:
    """The performance targets this run can judge (the others need their cells)."""
    found: list[Target] = []
    ratio_goals = (
        ("get one", "get_one", 10, 0.5),
        ("create", "create", 100, 0.25),
        ("update", "update", 10, 0.2),
        ("complete", "complete", 10, 0.2),
        ("list 50 of 1000", "list_50", 10, 0.3),
        ("list 1000 of 1000", "list_1000", 10, 0.07),
    )
    for name, scenario, concurrency, goal in ratio_goals:
        cell = _cell(cells, scenario, concurrency)
        ratio = None if cell is None else ratio_to_bare(cell, yardstick)
        if cell is None or ratio is None:
            continue
        measured = f"{ratio:.2f}x ({cell.requests_per_second:,.0f} req/s)"
        met = ratio >= goal
        goal_text = f">= {goal:g}x the bare read at {concurrency} users"
        if scenario == "list_1000":
            measured += f", p95 {cell.p95_ms:.1f} ms"
            met = met and cell.p95_ms < 50
            goal_text += ", p95 < 50 ms"
        found.append(Target(f"{name} x{concurrency}", goal_text, measured, met))
    long, fresh = _cell(cells, "update_history", 1), _cell(cells, "update_fresh", 1)
    if long and fresh and fresh.requests_per_second:
        ratio = long.requests_per_second / fresh.requests_per_second
        found.append(
            Target(
                "update, 10k-event task vs fresh task",
                ">= 0.9x (within 10%) the fresh task's req/s, 1 user",
                f"{ratio:.2f}x ({long.requests_per_second:,.0f} vs "
                f"{fresh.requests_per_second:,.0f} req/s; p50 {long.p50_ms:.2f} vs "
                f"{fresh.p50_ms:.2f} ms)",
                ratio >= 0.9,
            )
        )
    crowd, alone = _open_loop_pair(cells)
    if crowd and alone and alone.p95_ms:
        ratio = crowd.p95_ms / alone.p95_ms
        errors = crowd.errors + alone.errors
        found.append(
            Target(
                "open loop: p95 with 100 users / p95 alone",
                "<= 1.1, no error",
                f"{ratio:.2f} ({crowd.p95_ms:.2f} / {alone.p95_ms:.2f} ms), {errors} errors",
                ratio <= 1.1 and errors == 0,
            )
        )
    return found


def _open_loop_pair(cells: Sequence[Cell]) -> tuple[Cell | None, Cell | None]:
    loops = sorted((c for c in cells if c.scenario == "open_loop"), key=lambda c: c.concurrency)
    if len(loops) < 2:
        return None, None
    return loops[-1], loops[0]


def open_loop_summary(cells: Sequence[Cell]) -> dict[str, Any] | None:
    crowd, alone = _open_loop_pair(cells)
    if crowd is None or alone is None:
        return None

    def figures(cell: Cell) -> dict[str, Any]:
        return {
            "users": cell.concurrency,
            "requests": cell.requests,
            "p50_ms": cell.p50_ms,
            "p95_ms": cell.p95_ms,
            "p99_ms": cell.p99_ms,
            "max_ms": cell.max_ms,
            "errors": cell.errors,
            "send_lag_max_ms": cell.send_lag_max_ms,
        }

    return {
        "crowd": figures(crowd),
        "alone": figures(alone),
        "p95_ratio": round(crowd.p95_ms / alone.p95_ms, 3) if alone.p95_ms else None,
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=_plain) + "\n")


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
