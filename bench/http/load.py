"""HTTP load benchmark of tasktrail on PostgreSQL, measured against the machine in the same run.

    uv run --group bench python -m bench.http.load [--runs 3] [--duration 5] [--workers 1]

Makes a scratch database, starts `tasktrail serve` on it, seeds it through the SQLite adapter's
transaction body (`handle`, run here on PostgreSQL's tables), then runs each scenario at each
concurrency (a warm-up, then a measured window) with a load client in a separate process, beside
reference rows measured the same way: a bare FastAPI read of one task (the yardstick every ratio
divides by), the same read as a sync route, pgbench writing a create's rows in plain statements
(not the service's `tasktrail_append` call), and an open-loop run (100 users at 1 request per
second each, then one user alone). Then runs `tasktrail projections verify` and `tasktrail audit
verify` on what the load left (the exit status is 1 if either fails, or if any request failed).
Prints a table, writes it as JSON and a chart, stops the servers and drops the database
(also on Ctrl-C). See bench/README.md.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench.common.progress import progress
from bench.common.stack import libpq_url, scratch_database, vacuum_analyze
from bench.http import chart
from bench.http.after_run_checks import verify_after_run
from bench.http.harness import Harness, load_clients
from bench.http.options import (
    FRESH_USER,
    HISTORY_USER,
    OPEN_LOOP_RATE,
    POOL_SIZE,
    SEED_PROCESSES,
    TASKS_PER_LISTER,
    TASKS_PER_WRITER,
    Options,
    levels_of,
    parse_args,
    run_order,
)
from bench.http.pgbench_create import create_script, remove_pgbench_rows
from bench.http.population import Population, make_population, virtual_users
from bench.http.report import (
    LEGEND,
    Cell,
    combine,
    findings,
    open_loop_summary,
    ratio_to_bare,
    table,
    targets,
    write_json,
    yardstick_of,
)
from bench.http.run_facts import describe_run, server_log_summary
from bench.http.scenarios import (
    CLIENT_CEILING,
    OPEN_LOOP_WRITE_SHARE,
    SCENARIOS,
    Kind,
    Scenario,
    UserPool,
    VirtualUser,
)
from bench.http.seeding import seed_in_parallel, task_ids_by_user
from bench.http.servers import Server, free_tcp_port, running_bare_app, running_server
from bench.http.single_tasks import create_task, seed_long_history
from bench.http.stub_server import stub_server


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
    with ExitStack() as stack:
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
    options = parse_args(argv, __doc__.split("\n\n")[0])
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
