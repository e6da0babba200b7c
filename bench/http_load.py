"""HTTP load benchmark of tasktrail on PostgreSQL, measured against the machine in the same run.

    uv run --group bench python bench/http_load.py [--runs 3] [--duration 5] [--workers 1]

Makes a scratch database, starts `tasktrail serve` on it, seeds it through the service's own
command handler, then runs each scenario at each concurrency (a warm-up, then a measured window)
with a load client in a separate process, beside reference rows measured the same way: a bare
FastAPI read of one task (the yardstick every ratio divides by), the same read as a sync route,
pgbench running the service's create transaction, and an open-loop run (100 users at 1 request
per second each, then one user alone). Then runs `tasktrail projections verify` and `tasktrail
audit verify` on what the load left (the exit status is 1 if either fails, or if any request
failed). Prints a table, writes it as JSON and a chart, stops the servers and drops the database
(also on Ctrl-C). See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import secrets
import signal
import sys
import tempfile
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

import chart
import psycopg
from history import create_task, seed_long_history
from loadclient import CellPlan, CellResult, worker_main
from pgbench_create import create_script, remove_pgbench_rows, started_pgbench
from procstat import CpuUsage, take_snapshot, usage_between
from report import (
    LEGEND,
    Cell,
    combine,
    findings,
    merge,
    open_loop_summary,
    ratio_to_bare,
    summarise,
    table,
    targets,
    write_json,
    yardstick_of,
)
from scenarios import (
    BARE_READ,
    CLIENT_CEILING,
    OPEN_LOOP_WRITE_SHARE,
    SCENARIOS,
    SCENARIOS_BY_NAME,
    Kind,
    Scenario,
    UserPool,
    VirtualUser,
)
from stack import (
    Server,
    backend_pids,
    free_connections,
    free_tcp_port,
    git_changed_files,
    git_commit,
    libpq_url,
    mint_token,
    postgres_version,
    running_bare_app,
    running_server,
    scratch_database,
    seed_in_parallel,
    task_ids_by_user,
    vacuum_analyze,
    verify_after_run,
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
    parser.add_argument(
        "--out",
        type=Path,
        default=BENCH_DIR / "results" / "http_load.json",
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


@dataclass(slots=True)
class Population:
    writers: tuple[str, ...]
    listers: tuple[str, ...]
    tokens: dict[str, str]
    # The one task of bench-history and of bench-fresh (a new one before each fresh cell).
    single_tasks: dict[str, str] = field(default_factory=dict)


def make_population(options: Options, secret: str) -> Population:
    count = max(options.concurrency)
    if any(scenario.kind is Kind.OPEN_LOOP for scenario in options.scenarios):
        count = max(count, OPEN_LOOP_USERS)
    writers = tuple(f"{WRITER_PREFIX}{i}" for i in range(count))
    listers = tuple(f"{LISTER_PREFIX}{i}" for i in range(options.list_users))
    users = writers + listers + (HISTORY_USER, FRESH_USER)
    tokens = {user: mint_token(user, secret, TOKEN_LIFETIME) for user in users}
    return Population(writers, listers, tokens)


def virtual_users(
    scenario: Scenario,
    concurrency: int,
    population: Population,
    task_ids: dict[str, tuple[str, ...]],
) -> tuple[VirtualUser, ...]:
    if scenario.pool is UserPool.ANONYMOUS:
        return tuple(VirtualUser(i, "", "") for i in range(concurrency))
    if scenario.pool in (UserPool.HISTORY, UserPool.FRESH):
        user = HISTORY_USER if scenario.pool is UserPool.HISTORY else FRESH_USER
        task = (population.single_tasks[user],)
        return tuple(
            VirtualUser(i, user, population.tokens[user], task) for i in range(concurrency)
        )
    if scenario.pool is UserPool.BARE:
        # get one's users and tasks; the bare app needs no token.
        return tuple(
            VirtualUser(i, user, "", task_ids.get(user, ()))
            for i, user in enumerate(population.writers[:concurrency])
        )
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
    """What every cell needs, and the cells measured so far (one list per run)."""

    options: Options
    clients: LoadClients
    admin: psycopg.Connection[Any]  # on the admin database: finds the pool's backends
    database: str
    database_url: str
    total: int  # cells planned, for the progress lines
    workdir: Path  # pgbench's script and logs
    runs: list[list[Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    done: int = 0

    def measure(
        self,
        scenario: Scenario,
        users: tuple[VirtualUser, ...],
        pid: int,
        port: int,
        *,
        open_loop_seed: int | None = None,
    ) -> None:
        """Run one cell against the server `pid` listening on `port`; keep its summary."""
        self._keep(self._run_cell(scenario, users, pid, port, open_loop_seed))

    def _keep(self, cell: Cell) -> None:
        self.runs[-1].append(cell)
        self.done += 1
        progress(
            f"[{self.done}/{self.total}] run {len(self.runs)}: {cell.label} x{cell.concurrency}: "
            f"{cell.requests_per_second:,.0f} req/s, p95 {cell.p95_ms:.1f} ms, "
            f"p99 {cell.p99_ms:.1f} ms, {cell.errors} errors"
        )

    def _run_cell(
        self,
        scenario: Scenario,
        users: tuple[VirtualUser, ...],
        pid: int,
        port: int,
        open_loop_seed: int | None,
    ) -> Cell:
        count = self.options.client_processes
        duration = self.options.duration
        rate = None
        if open_loop_seed is not None:
            duration, rate = self.options.open_loop_duration, OPEN_LOOP_RATE
        start_at = time.monotonic() + self.options.warmup
        stop_at = start_at + duration
        tag = f"x{len(users)}-{int(start_at)}"
        plans = [
            CellPlan(
                scenario.name,
                tag,
                port,
                users[k::count],
                start_at,
                stop_at,
                rate=rate,
                seed=open_loop_seed or 0,
            )
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
            window_seconds=duration,
            cpu=usage_between(before, after),
        )

    def measure_pgbench(self, scenario: Scenario, script: str, level: int) -> None:
        """pgbench with `level` clients (fewer if the PostgreSQL server has fewer connections
        free), for the cell's duration rounded up to whole seconds."""
        clients = min(level, free_connections(self.admin) - CONNECTION_MARGIN)
        if clients < 1:
            self.notes.append(f"pgbench x{level} skipped: no PostgreSQL connection free.")
            return
        # Fewer clients than users are said in a note (pgbench_notes), from the cell's
        # users_with_data.
        seconds = max(1, math.ceil(self.options.duration))
        with started_pgbench(self.database_url, script, clients, seconds, self.workdir) as bench:
            began = time.monotonic()
            # Inside its run: connected (a few ms), not yet finishing.
            sleep_until(began + min(0.25, seconds / 4))
            before = take_snapshot(bench.pid, backend_pids(self.admin, self.database))
            sleep_until(began + seconds - min(0.1, seconds / 4))
            after = take_snapshot(bench.pid, backend_pids(self.admin, self.database))
            outcome = bench.finish()
        cpu = usage_between(before, after)
        # The measured process is pgbench, the client: no application server in this row.
        result = CellResult(
            latencies=outcome.latencies,
            transport_errors=outcome.failed + (1 if outcome.exit_code else 0),
            cpu_seconds=cpu.server * cpu.seconds,
            window_seconds=cpu.seconds,
            samples=[outcome.output_tail] if outcome.exit_code or outcome.failed else [],
        )
        cell = summarise(
            scenario=scenario.name,
            label=scenario.label,
            concurrency=level,
            users_with_data=clients,
            result=result,
            window_seconds=seconds,
            cpu=CpuUsage(cpu.seconds, 0.0, cpu.postgres, cpu.host),
        )
        # pgbench's own figure: transactions over its run, connection time left out.
        self._keep(
            dataclasses.replace(
                cell, requests=outcome.processed, requests_per_second=round(outcome.tps, 1)
            )
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


def _proc_field(path: str, name: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    return None


def describe_run(options: Options, database_url: str, started: datetime) -> dict[str, Any]:
    memory = _proc_field("/proc/meminfo", "MemTotal")  # "24570124 kB"
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        row = conn.execute("SHOW max_connections").fetchone()
    return {
        "started_at": started.isoformat(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "nproc": os.cpu_count(),
        "cpu_model": _proc_field("/proc/cpuinfo", "model name"),
        "memory_gib": round(int(memory.split()[0]) / 2**20, 1) if memory else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgresql": postgres_version(database_url),
        "max_connections": int(row[0]) if row else None,
        "git_commit": git_commit(),
        # The run measures the service as it is on disk: files that differ from the commit.
        "uncommitted_service_files": git_changed_files(),
        "tasktrail_version": tasktrail.__version__,
        "server": {"workers": options.workers, "pool_size": POOL_SIZE, "log_format": "json"},
        "bare_app": {"workers": 1, "pool_size": POOL_SIZE, "loop": "uvloop", "http": "httptools"},
        "runs": options.runs,
        "duration_s": options.duration,
        "warmup_s": options.warmup,
        "concurrency": list(options.concurrency),
        "open_loop": {
            "users": OPEN_LOOP_USERS,
            "rate_per_user": OPEN_LOOP_RATE,
            "arrivals": "poisson",
            "duration_s": options.open_loop_duration,
            "write_share": round(OPEN_LOOP_WRITE_SHARE, 3),
        },
        "history_events": options.history_events,
        "client_processes": options.client_processes,
        "list_users": options.list_users,
        "tasks_per_list_user": TASKS_PER_LISTER,
        "tasks_seeded_per_writer": TASKS_PER_WRITER,
    }


# --- the run --------------------------------------------------------------------------------


def run(options: Options) -> tuple[dict[str, Any], list[list[Cell]], list[str]]:
    started = datetime.now(UTC)
    began = time.monotonic()
    secret = secrets.token_urlsafe(48)  # 64 characters
    log_path = options.out.with_name(options.out.stem + "-server.log")
    with ExitStack() as stack:
        database = stack.enter_context(scratch_database(options.admin_url))
        meta = describe_run(options, database.url, started)
        server = stack.enter_context(
            running_server(database.url, secret, POOL_SIZE, log_path, options.workers)
        )
        progress(f"server pid {server.pid} on 127.0.0.1:{server.port}, database {database.name}")
        population = make_population(options, secret)
        meta["seed_seconds"] = seed(database.url, secret, population, options)
        harness = Harness(
            options=options,
            clients=stack.enter_context(load_clients(options.client_processes)),
            admin=stack.enter_context(
                psycopg.connect(libpq_url(options.admin_url), autocommit=True, connect_timeout=5)
            ),
            database=database.name,
            database_url=database.url,
            total=options.runs
            * (1 + sum(len(levels_of(scenario, options)) for scenario in options.scenarios)),
            workdir=Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pgbench-"))),
        )
        for _ in range(options.runs):
            harness.runs.append([])
            measure_client_ceiling(harness)
            for scenario in run_order(options):
                run_scenario(harness, scenario, server, population, secret)
        removed = remove_pgbench_rows(database.url)
        progress(
            f"removed pgbench's {removed:,} events (not service writes); checking the log and "
            "the read model the run left (projections verify, audit verify)"
        )
        meta["pgbench_events_removed_before_checks"] = removed
        meta["after_run_checks"] = [
            dataclasses.asdict(check) | {"ok": check.ok}
            for check in verify_after_run(database.url, secret)
        ]
    # The server has stopped: its log is complete.
    meta["server_log"] = server_log_summary(log_path)
    meta["wall_seconds"] = round(time.monotonic() - began, 1)
    return meta, harness.runs, harness.notes


def run_scenario(
    harness: Harness, scenario: Scenario, server: Server, population: Population, secret: str
) -> None:
    """Every cell of one scenario, in one run."""
    options, url = harness.options, harness.database_url
    levels = levels_of(scenario, options)
    if scenario.kind is Kind.PGBENCH:
        script = create_script()
        for level in levels:
            harness.measure_pgbench(scenario, script, level)
        return
    task_ids: dict[str, tuple[str, ...]] = {}
    if scenario.pool in (UserPool.WRITERS, UserPool.BARE) and scenario.name != "create":
        # The tasks made by the create cells too: many tasks per user keep each task's
        # history short however many updates a fast virtual user sends.
        task_ids = task_ids_by_user(url, secret, population.writers)
    if scenario.pool is UserPool.FRESH:
        population.single_tasks[FRESH_USER] = create_task(url, secret, FRESH_USER, "Water plants")
    if scenario.pool in (UserPool.HISTORY, UserPool.FRESH):
        # The two single-task rows are compared with each other: each starts from a vacuumed
        # database, so that autovacuum catching up on the cells before (thousands of updates)
        # does not run during one of them only.
        vacuum_analyze(url)
    if scenario.kind is Kind.OPEN_LOOP:
        for seed, level in enumerate(levels, start=len(harness.runs) * len(levels)):
            users = virtual_users(scenario, level, population, task_ids)
            harness.measure(scenario, users, server.pid, server.port, open_loop_seed=seed)
        return
    with contextlib.ExitStack() as stack:
        target = server
        if scenario.kind in (Kind.BARE_ASYNC, Kind.BARE_SYNC):
            # Up only for its own cells: its pool's connections are free for pgbench after.
            factory = "create_async_app" if scenario.kind is Kind.BARE_ASYNC else "create_sync_app"
            log = harness.options.out.with_name(f"{options.out.stem}-{scenario.name}.log")
            target = stack.enter_context(running_bare_app(url, factory, POOL_SIZE, log))
        for level in levels:
            users = virtual_users(scenario, level, population, task_ids)
            harness.measure(scenario, users, target.pid, target.port)


def measure_client_ceiling(harness: Harness) -> None:
    """The reference request at the highest concurrency, against a stub that costs nothing."""
    port = free_tcp_port()
    concurrency = max(harness.options.concurrency)
    users = tuple(VirtualUser(i, "", "") for i in range(concurrency))
    with stub_server(port) as pid:
        harness.measure(CLIENT_CEILING, users, pid, port)


def seed(database_url: str, secret: str, population: Population, options: Options) -> float:
    began = time.monotonic()
    progress(
        f"seeding {len(population.listers)} users x {TASKS_PER_LISTER} tasks and "
        f"{len(population.writers)} users x {TASKS_PER_WRITER} tasks through the command handler"
    )
    plan = [(population.listers, TASKS_PER_LISTER), (population.writers, TASKS_PER_WRITER)]
    created = seed_in_parallel(database_url, secret, plan, SEED_PROCESSES)
    if any(scenario.pool is UserPool.HISTORY for scenario in options.scenarios):
        population.single_tasks[HISTORY_USER] = seed_long_history(
            database_url, secret, HISTORY_USER, options.history_events
        )
        progress(f"seeded a task of {HISTORY_USER} with {options.history_events:,} events")
    vacuum_analyze(database_url)
    seconds = round(time.monotonic() - began, 1)
    progress(f"seeded {created} tasks in {seconds} s")
    return seconds


# Table order: the references first, then the API, as in scenarios.SCENARIOS.
_DISPLAY = {
    name: index
    for index, name in enumerate(["client_ceiling", *(scenario.name for scenario in SCENARIOS)])
}


def medians(runs: Sequence[Sequence[Cell]]) -> list[Cell]:
    """Each cell once, the median of its runs, in table order."""
    grouped: dict[tuple[str, int], list[Cell]] = {}
    for cells in runs:
        for cell in cells:
            grouped.setdefault((cell.scenario, cell.concurrency), []).append(cell)
    ordered = sorted(
        grouped,
        key=lambda key: (_DISPLAY.get(key[0], 99), -key[1] if key[0] == "open_loop" else key[1]),
    )
    return [combine(grouped[key]) for key in ordered]


def pgbench_notes(runs: Sequence[Sequence[Cell]]) -> list[str]:
    """pgbench cells that ran with fewer clients than users, and with how many."""
    used: dict[int, list[int]] = {}
    for cells in runs:
        for cell in cells:
            if cell.scenario == "pgbench_create" and cell.users_with_data < cell.concurrency:
                used.setdefault(cell.concurrency, []).append(cell.users_with_data)
    return [
        f"pgbench create x{level} ran with {'/'.join(map(str, clients))} clients (per run): "
        "the PostgreSQL server had no more connections free (max_connections, minus the "
        "service's pool and other programs' connections)."
        for level, clients in sorted(used.items())
    ]


def _interrupt(_signal: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    # SIGTERM as Ctrl-C: the servers stop and the scratch database is dropped either way.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        meta, runs, run_notes = run(options)
    except KeyboardInterrupt:
        progress("interrupted: servers stopped, scratch database dropped")
        return 130
    cells = medians(runs)
    yardstick = yardstick_of(cells)
    notes = findings(cells, os.cpu_count() or 1) + run_notes + pgbench_notes(runs)
    if options.list_users < max(options.concurrency):
        notes.append(
            f"List scenarios: {options.list_users} users with {TASKS_PER_LISTER} tasks each; "
            f"at {max(options.concurrency)} virtual users, "
            f"{max(options.concurrency) // options.list_users} share each list user."
        )
    loop = open_loop_summary(cells)
    if loop:
        notes.append(
            f"Open loop ({OPEN_LOOP_RATE:g} req/s per user, Poisson, "
            f"{OPEN_LOOP_WRITE_SHARE:.0%} writes): {loop['crowd']['users']} users "
            f"p50/p95/p99 {loop['crowd']['p50_ms']:.2f}/{loop['crowd']['p95_ms']:.2f}/"
            f"{loop['crowd']['p99_ms']:.2f} ms; 1 user alone {loop['alone']['p50_ms']:.2f}/"
            f"{loop['alone']['p95_ms']:.2f}/{loop['alone']['p99_ms']:.2f} ms "
            f"({loop['alone']['requests']} requests a run: its p95 is a high rank of few "
            f"samples); p95 ratio {loop['p95_ratio']}. The client sent at most "
            f"{max(loop['crowd']['send_lag_max_ms'], loop['alone']['send_lag_max_ms']):.1f} ms "
            "after a scheduled time."
        )
    if meta["uncommitted_service_files"]:
        notes.append(
            "Measured the working tree: files differing from the commit: "
            + ", ".join(meta["uncommitted_service_files"])
            + "."
        )
    log = meta["server_log"]
    notes.append(f"Server log: lines by level {log['lines_by_level']}, 5xx {log['5xx_by_route']}.")
    checks = meta["after_run_checks"]
    notes.append(
        "After the run: "
        + "; ".join(
            f"{check['command']}: exit {check['exit_code']} in {check['seconds']:g} s "
            f"({check['last_line']})"
            for check in checks
        )
        + "."
    )
    judged = targets(cells, yardstick)
    png = options.out.with_suffix(".png")
    workers = f"{options.workers} worker{'s' if options.workers > 1 else ''}"
    runs_text = f"medians of {options.runs} runs" if options.runs > 1 else "1 run"
    header = (
        f"tasktrail HTTP load, PostgreSQL {meta['postgresql']}, {workers}, pool {POOL_SIZE}, "
        f"{meta['nproc']} CPUs, {options.duration:g} s per cell after {options.warmup:g} s "
        f"warm-up, {runs_text}, commit {(meta['git_commit'] or 'unknown')[:12]}"
        + (" + uncommitted changes" if meta["uncommitted_service_files"] else "")
    )
    chart.draw(cells, yardstick, header, png)
    write_json(
        options.out,
        {
            "meta": meta,
            "notes": notes,
            "targets": judged,
            "yardstick_bare_read_req_per_s": yardstick,
            "open_loop": loop,
            "cells": [
                {
                    **dataclasses.asdict(cell),
                    "ratio_to_bare_read": ratio_to_bare(cell, yardstick),
                    "runs": [
                        dataclasses.asdict(c)
                        for cells_of_run in runs
                        for c in cells_of_run
                        if (c.scenario, c.concurrency) == (cell.scenario, cell.concurrency)
                    ],
                }
                for cell in cells
            ],
        },
    )
    print(f"\n{header}\n")
    print(table(cells, yardstick))
    print("\n" + textwrap.fill(LEGEND, width=100) + "\n")
    for note in notes:
        print(textwrap.fill(note, width=100, initial_indent="- ", subsequent_indent="  "))
    if judged:
        print("\nTargets (ratios to the bare async read at the same users):")
        for target in judged:
            verdict = "met   " if target.met else "MISSED"
            print(f"  {verdict} {target.name}: {target.measured}; target {target.goal}")
    print(f"\nwall time {meta['wall_seconds']} s; JSON {options.out}; chart {png}")
    errors = any(cell.errors for cells_of_run in runs for cell in cells_of_run)
    broken = not all(check["ok"] for check in checks)
    return 1 if errors or broken else 0


if __name__ == "__main__":
    sys.exit(main())
