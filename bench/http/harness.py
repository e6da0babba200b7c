"""The measuring of one cell: load client processes, and the CPU counters at the window's edges."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import psycopg

from bench.common.procstat import CpuUsage, take_snapshot, usage_between
from bench.common.progress import progress
from bench.common.stack import backend_pids, free_connections
from bench.http.load_client import CellPlan, CellResult, worker_main
from bench.http.options import CONNECTION_MARGIN, OPEN_LOOP_RATE, Options
from bench.http.pgbench_create import started_pgbench
from bench.http.report import Cell, merge, summarise
from bench.http.scenarios import Scenario, VirtualUser

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


# --- one cell -------------------------------------------------------------------------------


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


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
