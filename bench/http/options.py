"""The HTTP load benchmark's command line, and the fixed sizes of a run (users, pools, rates)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bench.common.stack import DEFAULT_ADMIN_URL, REPO_DIR
from bench.http.scenarios import BARE_READ, SCENARIOS, SCENARIOS_BY_NAME, Kind, Scenario

WRITER_PREFIX = "bench-u"  # one per virtual user of the write and get-one scenarios
LISTER_PREFIX = "bench-list-u"  # exactly TASKS_PER_LISTER tasks each, never written to
TASKS_PER_LISTER = 1000
TASKS_PER_WRITER = 10  # so get/update/complete have tasks even when create is not run
POOL_SIZE = 10  # tasktrail's TASKTRAIL_POOL_SIZE, and the bare apps' pools (min = max)
TOKEN_LIFETIME = timedelta(hours=2)
SEED_PROCESSES = 2
HISTORY_USER = "bench-history"  # one task with --history-events events
FRESH_USER = "bench-fresh"  # one task created just before each of its cells
OPEN_LOOP_USERS = 100  # bench-u0..99
OPEN_LOOP_RATE = 1.0  # requests per second of each open-loop user
# Connections left to others (the admin connection, tests running beside) when sizing pgbench.
CONNECTION_MARGIN = 5


@dataclass(frozen=True, slots=True)
class Options:
    duration: float
    warmup: float
    concurrency: tuple[int, ...]
    scenarios: tuple[Scenario, ...]
    list_users: int
    client_processes: int
    admin_url: str
    out: Path
    runs: int
    workers: int
    open_loop_duration: float
    history_events: int


def parse_args(argv: Sequence[str] | None, description: str) -> Options:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--concurrency", default="1,10,100", help="virtual users, e.g. 1,10,100")
    parser.add_argument(
        "--scenarios",
        default=",".join(scenario.name for scenario in SCENARIOS),
        help="comma separated, in the order to run (default: all)",
    )
    parser.add_argument(
        "--list-users",
        type=int,
        default=10,
        help=f"users seeded with {TASKS_PER_LISTER} tasks each (~3 ms per task to seed)",
    )
    parser.add_argument(
        "--client-processes", type=int, default=1, help="load client processes (default 1)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TASKTRAIL_TEST_POSTGRES_URL", DEFAULT_ADMIN_URL),
        help="a server where the benchmark may create a database "
        "(default: $TASKTRAIL_TEST_POSTGRES_URL or %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_DIR / "bench" / "results" / "http_load.json",
        help="the JSON; the chart is written beside it (same name, .png)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="measure every cell this many times (same server and data); the table shows "
        "medians, the JSON every run",
    )
    parser.add_argument("--workers", type=int, default=1, help="tasktrail serve --workers N")
    parser.add_argument(
        "--open-loop-duration",
        type=float,
        default=30.0,
        help="measured seconds of each open-loop phase (100 users, then 1 user at 1 req/s)",
    )
    parser.add_argument(
        "--history-events",
        type=int,
        default=10_000,
        help="events of the long-history task of 'update, 10k-event task'",
    )
    args = parser.parse_args(argv)
    known = [scenario.name for scenario in SCENARIOS]
    named = [name for name in args.scenarios.split(",") if name]
    unknown = [name for name in named if name not in known]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {known}")
    if BARE_READ not in named:
        named.insert(0, BARE_READ)  # every ratio divides by it
    if args.runs < 1 or args.workers < 1:
        parser.error("--runs and --workers take a positive number")
    return Options(
        duration=args.duration,
        warmup=args.warmup,
        concurrency=tuple(int(level) for level in args.concurrency.split(",")),
        scenarios=tuple(SCENARIOS_BY_NAME[name] for name in named),
        list_users=args.list_users,
        client_processes=args.client_processes,
        admin_url=args.postgres_url,
        out=args.out,
        runs=args.runs,
        workers=args.workers,
        open_loop_duration=args.open_loop_duration,
        history_events=args.history_events,
    )


def levels_of(scenario: Scenario, options: Options) -> tuple[int, ...]:
    if scenario.kind is Kind.OPEN_LOOP:
        return (OPEN_LOOP_USERS, 1)
    return scenario.levels or options.concurrency


def run_order(options: Options) -> list[Scenario]:
    """As asked, but pgbench last: its hundred thousand creates would otherwise sit in the
    tables the next scenarios read."""
    return sorted(options.scenarios, key=lambda scenario: scenario.kind is Kind.PGBENCH)
