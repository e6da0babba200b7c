"""HTTP load benchmark of tasktrail on PostgreSQL, one worker, with a trivial reference endpoint.

    uv run python bench/http_load.py [--duration 5] [--out bench/results/http_load.json]

Makes a scratch database, starts `tasktrail serve --workers 1` on it, seeds it through the
service's own command handler, then runs each scenario at each concurrency (a warm-up, then a
measured window) with a load client in a separate process. Prints a table, writes the same as
JSON, stops the server and drops the database (also on Ctrl-C). See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import psycopg
from loadclient import CellPlan, CellResult, worker_main
from procstat import take_snapshot, usage_between
from report import LEGEND, Cell, findings, merge, summarise, table, write_json
from scenarios import (
    CLIENT_CEILING,
    SCENARIOS,
    SCENARIOS_BY_NAME,
    Scenario,
    UserPool,
    VirtualUser,
)
from stack import (
    backend_pids,
    free_tcp_port,
    git_commit,
    libpq_url,
    mint_token,
    postgres_version,
    running_server,
    scratch_database,
    seed_in_parallel,
    task_ids_by_user,
    vacuum_analyze,
)
from stubserver import stub_server

import tasktrail

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
WRITER_PREFIX = "bench-u"  # one per virtual user of the write and get-one scenarios
LISTER_PREFIX = "bench-list-u"  # exactly TASKS_PER_LISTER tasks each, never written to
TASKS_PER_LISTER = 1000
TASKS_PER_WRITER = 10  # so get/update/complete have tasks even when create is not run
POOL_SIZE = 10
TOKEN_LIFETIME = timedelta(hours=2)
SEED_PROCESSES = 2


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


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "http_load.json")
    args = parser.parse_args(argv)
    known = [scenario.name for scenario in SCENARIOS]
    unknown = [name for name in args.scenarios.split(",") if name not in known]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {known}")
    return Options(
        duration=args.duration,
        warmup=args.warmup,
        concurrency=tuple(int(level) for level in args.concurrency.split(",")),
        scenarios=tuple(SCENARIOS_BY_NAME[name] for name in args.scenarios.split(",")),
        list_users=args.list_users,
        client_processes=args.client_processes,
        admin_url=args.postgres_url,
        out=args.out,
    )


# --- the load client processes --------------------------------------------------------------


class LoadClients:
    """Client processes that each run their share of a cell's virtual users."""

    def __init__(self, count: int) -> None:
        # spawn, not fork: the orchestrator holds database connections and threads.
        context = get_context("spawn")
        self._pipes: list[Connection] = []
        self._processes: list[BaseProcess] = []
        for _ in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(target=worker_main, args=(theirs,), daemon=True)
            process.start()
            theirs.close()
            self._pipes.append(ours)
            self._processes.append(process)

    def run(self, plans: Sequence[CellPlan]) -> None:
        for pipe, plan in zip(self._pipes, plans, strict=True):
            pipe.send(plan)

    def results(self, timeout: float) -> list[CellResult]:
        collected: list[CellResult] = []
        for pipe in self._pipes:
            if not pipe.poll(timeout):
                raise RuntimeError(f"a load client gave no result within {timeout:.0f} s")
            collected.append(pipe.recv())
        return collected

    def close(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(OSError):  # that process is gone already
                pipe.send(None)
        for process in self._processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()  # its own pid only
                process.join(timeout=5)


@contextmanager
def load_clients(count: int) -> Iterator[LoadClients]:
    clients = LoadClients(count)
    try:
        yield clients
    finally:
        clients.close()


# --- users ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Population:
    writers: tuple[str, ...]
    listers: tuple[str, ...]
    tokens: dict[str, str]


def make_population(options: Options, secret: str) -> Population:
    writers = tuple(f"{WRITER_PREFIX}{i}" for i in range(max(options.concurrency)))
    listers = tuple(f"{LISTER_PREFIX}{i}" for i in range(options.list_users))
    tokens = {user: mint_token(user, secret, TOKEN_LIFETIME) for user in writers + listers}
    return Population(writers, listers, tokens)


def virtual_users(
    scenario: Scenario,
    concurrency: int,
    population: Population,
    task_ids: dict[str, tuple[str, ...]],
) -> tuple[VirtualUser, ...]:
    if scenario.pool is UserPool.ANONYMOUS:
        return tuple(VirtualUser(i, "", "") for i in range(concurrency))
    if scenario.pool is UserPool.LISTERS:
        # Fewer list users than virtual users: several readers share one (reads take no lock).
        listers = population.listers
        return tuple(
            VirtualUser(i, listers[i % len(listers)], population.tokens[listers[i % len(listers)]])
            for i in range(concurrency)
        )
    writers = population.writers[:concurrency]
    return tuple(
        VirtualUser(i, user, population.tokens[user], task_ids.get(user, ()))
        for i, user in enumerate(writers)
    )


# --- one cell -------------------------------------------------------------------------------


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass(slots=True)
class Harness:
    """What every cell needs, and the cells measured so far."""

    options: Options
    clients: LoadClients
    admin: psycopg.Connection[Any]  # on the admin database: finds the pool's backends
    database: str
    total: int  # cells planned, for the progress lines
    cells: list[Cell] = field(default_factory=list)

    def measure(
        self, scenario: Scenario, users: tuple[VirtualUser, ...], pid: int, port: int
    ) -> None:
        """Run one cell against the server `pid` listening on `port`; keep its summary."""
        cell = self._run_cell(scenario, users, pid, port)
        self.cells.append(cell)
        progress(
            f"[{len(self.cells)}/{self.total}] {cell.label} x{cell.concurrency}: "
            f"{cell.requests_per_second:,.0f} req/s, p99 {cell.p99_ms:.1f} ms, "
            f"{cell.errors} errors"
        )

    def _run_cell(
        self, scenario: Scenario, users: tuple[VirtualUser, ...], pid: int, port: int
    ) -> Cell:
        count = self.options.client_processes
        start_at = time.monotonic() + self.options.warmup
        stop_at = start_at + self.options.duration
        tag = f"x{len(users)}-{int(start_at)}"
        plans = [
            CellPlan(scenario.name, tag, port, users[k::count], start_at, stop_at)
            for k in range(count)
        ]
        self.clients.run(plans)
        # Meanwhile the orchestrator only reads CPU counters at the window's edges, and sleeps.
        sleep_until(start_at)
        before = take_snapshot(pid, backend_pids(self.admin, self.database))
        sleep_until(stop_at)
        after = take_snapshot(pid, backend_pids(self.admin, self.database))
        results = self.clients.results(timeout=plans[0].grace + 60)
        return summarise(
            scenario=scenario.name,
            label=scenario.label,
            concurrency=len(users),
            users_with_data=len({user.user_id for user in users if user.user_id}),
            result=merge(results),
            window_seconds=self.options.duration,
            cpu=usage_between(before, after),
        )


# --- facts about the run --------------------------------------------------------------------


def server_log_summary(path: Path) -> dict[str, Any]:
    """What the server logged: lines by level, 5xx by route, and a few non-JSON complaints."""
    levels: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    complaints: list[str] = []
    with path.open(errors="replace") as log:
        for line in log:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if not isinstance(entry, dict):
                # uvicorn's own lines are text: keep the few that are not routine.
                if any(word in line for word in ("ERROR", "WARNING", "Traceback")):
                    complaints.append(line.strip()[:300])
                continue
            levels[str(entry.get("level"))] += 1
            status = entry.get("status")
            if isinstance(status, int) and status >= 500:
                failures[f"{entry.get('method')} {entry.get('route')} {status}"] += 1
    return {
        "path": str(path),
        "lines_by_level": dict(levels),
        "5xx_by_route": dict(failures),
        "text_complaints": complaints[:10],
    }


def describe_run(options: Options, database_url: str, started: datetime) -> dict[str, Any]:
    return {
        "started_at": started.isoformat(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgresql": postgres_version(database_url),
        "git_commit": git_commit(),
        "tasktrail_version": tasktrail.__version__,
        "server": {"workers": 1, "pool_size": POOL_SIZE, "log_format": "json"},
        "duration_s": options.duration,
        "warmup_s": options.warmup,
        "concurrency": list(options.concurrency),
        "client_processes": options.client_processes,
        "list_users": options.list_users,
        "tasks_per_list_user": TASKS_PER_LISTER,
        "tasks_seeded_per_writer": TASKS_PER_WRITER,
    }


# --- the run --------------------------------------------------------------------------------


def run(options: Options) -> tuple[dict[str, Any], list[Cell]]:
    started = datetime.now(UTC)
    began = time.monotonic()
    secret = secrets.token_urlsafe(48)  # 64 characters
    log_path = options.out.with_name(options.out.stem + "-server.log")
    with ExitStack() as stack:
        database = stack.enter_context(scratch_database(options.admin_url))
        meta = describe_run(options, database.url, started)
        server = stack.enter_context(running_server(database.url, secret, POOL_SIZE, log_path))
        progress(f"server pid {server.pid} on 127.0.0.1:{server.port}, database {database.name}")
        population = make_population(options, secret)
        meta["seed_seconds"] = seed(database.url, secret, population)
        harness = Harness(
            options=options,
            clients=stack.enter_context(load_clients(options.client_processes)),
            admin=stack.enter_context(
                psycopg.connect(libpq_url(options.admin_url), autocommit=True, connect_timeout=5)
            ),
            database=database.name,
            total=1 + len(options.scenarios) * len(options.concurrency),
        )
        measure_client_ceiling(harness)
        for scenario in options.scenarios:
            task_ids: dict[str, tuple[str, ...]] = {}
            if scenario.pool is UserPool.WRITERS and scenario.name != "create":
                # The tasks made by the create cells too: many tasks per user keep each task's
                # history short however many updates a fast virtual user sends.
                task_ids = task_ids_by_user(database.url, secret, population.writers)
            for concurrency in options.concurrency:
                users = virtual_users(scenario, concurrency, population, task_ids)
                harness.measure(scenario, users, server.pid, server.port)
    # The server has stopped: its log is complete.
    meta["server_log"] = server_log_summary(log_path)
    meta["wall_seconds"] = round(time.monotonic() - began, 1)
    return meta, harness.cells


def measure_client_ceiling(harness: Harness) -> None:
    """The reference request at the highest concurrency, against a stub that costs nothing."""
    port = free_tcp_port()
    concurrency = max(harness.options.concurrency)
    users = tuple(VirtualUser(i, "", "") for i in range(concurrency))
    with stub_server(port) as pid:
        harness.measure(CLIENT_CEILING, users, pid, port)


def seed(database_url: str, secret: str, population: Population) -> float:
    began = time.monotonic()
    progress(
        f"seeding {len(population.listers)} users x {TASKS_PER_LISTER} tasks and "
        f"{len(population.writers)} users x {TASKS_PER_WRITER} tasks through the command handler"
    )
    plan = [(population.listers, TASKS_PER_LISTER), (population.writers, TASKS_PER_WRITER)]
    created = seed_in_parallel(database_url, secret, plan, SEED_PROCESSES)
    vacuum_analyze(database_url)
    seconds = round(time.monotonic() - began, 1)
    progress(f"seeded {created} tasks in {seconds} s")
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        meta, cells = run(options)
    except KeyboardInterrupt:
        progress("interrupted: server stopped, scratch database dropped")
        return 130
    notes = findings(cells, os.cpu_count() or 1)
    if options.list_users < max(options.concurrency):
        notes.append(
            f"List scenarios: {options.list_users} users with {TASKS_PER_LISTER} tasks each; "
            f"at {max(options.concurrency)} virtual users, "
            f"{max(options.concurrency) // options.list_users} share each list user."
        )
    log = meta["server_log"]
    notes.append(f"Server log: lines by level {log['lines_by_level']}, 5xx {log['5xx_by_route']}.")
    write_json(options.out, meta, cells, notes)
    print(
        f"\ntasktrail HTTP load, PostgreSQL {meta['postgresql']}, 1 worker, pool {POOL_SIZE}, "
        f"{meta['nproc']} CPUs, {options.duration:g} s per cell after {options.warmup:g} s "
        f"warm-up, commit {(meta['git_commit'] or 'unknown')[:12]}\n"
    )
    print(table(cells))
    print("\n" + textwrap.fill(LEGEND, width=100) + "\n")
    for note in notes:
        print(textwrap.fill(note, width=100, initial_indent="- ", subsequent_indent="  "))
    print(f"\nwall time {meta['wall_seconds']} s; JSON written to {options.out}")
    return 1 if any(cell.errors for cell in cells) else 0  # warm-up errors count too


if __name__ == "__main__":
    sys.exit(main())
