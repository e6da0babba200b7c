"""`tasktrail serve --workers 2` against one worker: get one at 10 users, with wrk.

    uv run --group bench python -m bench.http.workers [--rounds 3] [--duration 10]
        [--connections 10]

wrk (Debian's package) is the load: it costs a fraction of the Python load client's CPU per
request, and on a 2-core machine every microsecond the client spends is taken from the servers
being compared. Each round serves the same seeded database with one worker, then two, then the
bare single-row read (bench/http/bare_app.py) as the same run's yardstick, so that the machine's
drift over minutes falls on all three alike. Per cell it prints req/s and where the CPU went (the
server's processes, PostgreSQL's backends, wrk, the rest of the machine), per request; then the
medians, the ratio of two workers to one, and the ceiling that CPU accounting puts on that ratio:

    two workers can serve at most (2 cores) / (CPU per request of everything on the machine),
    one worker at most 1 core / (its own CPU per request),

so two workers can be at most 2 x (one worker's CPU per request) / (the machine's CPU per
request with two workers) times one: the more of a request's CPU is spent outside the workers
(PostgreSQL, the client, the kernel), the less a second worker can add on 2 cores.

On a virtual machine the host may take a core that one worker leaves part idle: /proc/stat's
steal time, printed beside the rest (it overlaps the processes' own CPU, which counts the ticks
stolen while they ran). A round where either cell lost over 5 % of a core to it measures the
host, not the servers, and the summary says which rounds those were.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psycopg

from bench.common.procstat import children_cpu_seconds, take_snapshot, usage_between
from bench.common.stack import (
    DEFAULT_ADMIN_URL,
    backend_pids,
    libpq_url,
    scratch_database,
    vacuum_analyze,
)
from bench.http.profile_layers import shares, table
from bench.http.seeding import mint_token, seed_tasks, task_ids_by_user
from bench.http.servers import Server, running_bare_app, running_server, service_login

USERS = 10
TASKS_EACH = 10
POOL_SIZE = 10  # per worker, as bench.http.load
WARMUP_SECONDS = 3
_REQUESTS_PER_SECOND = re.compile(rb"Requests/sec:\s+([\d.]+)")
_NON_2XX = re.compile(rb"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(rb"Socket errors:.*")
_LATENCY_PERCENTILE = re.compile(rb"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNIT_MS = {b"us": 0.001, b"ms": 1.0, b"s": 1000.0}
# Steal time, in cores, above which a cell measured the virtual machine's host more than the
# servers: one worker leaves a core part idle, and a busy host takes it and more (seen: 18-41 %
# of a core in every one-worker cell of a run, 3-6 % in its two-worker cells, 2.00x "measured").
STEAL_DISTURBS = 0.05


@dataclass(frozen=True, slots=True)
class Cell:
    """One measured wrk run against one server."""

    target: str
    round: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: str  # "" when every response was 2xx and no socket failed
    server_cores: float  # share of one core, 1.0 = one core busy for the whole window
    postgres_cores: float
    wrk_cores: float
    machine_cores: float
    # Inside machine_cores, and not apart from the processes': the guest charges a stolen tick
    # to whatever ran on that core (seen: "other" below zero when steal was subtracted).
    steal_cores: float

    def per_request_us(self, cores: float) -> float:
        return cores / self.requests_per_second * 1e6


def lua_script(paths_and_tokens: Sequence[tuple[str, str]]) -> str:
    """A wrk script walking round every (path, token): each request reads another user's task."""
    rows = ",\n".join(f'  {{"{path}", "{token}"}}' for path, token in paths_and_tokens)
    return f"""
local targets = {{
{rows}
}}
local i = 0
request = function()
  i = i % #targets + 1
  local target = targets[i]
  if target[2] == "" then
    return wrk.format("GET", target[1])
  end
  return wrk.format("GET", target[1], {{["Authorization"] = "Bearer " .. target[2]}})
end
"""


def run_wrk(port: int, script: Path, connections: int, seconds: int) -> tuple[bytes, float]:
    """wrk's report and the CPU seconds wrk used (its own rusage, from wait4)."""
    command = [
        *("wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"),
        *("-s", str(script), f"http://127.0.0.1:{port}"),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # noqa: S603
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{output.decode()}")
    return output, usage.ru_utime + usage.ru_stime


def worker_pids(server: Server) -> list[int]:
    """The processes that serve requests: with one worker uvicorn serves in the process itself;
    with several, in its spawned children (not multiprocessing's resource tracker)."""
    spawned = [
        pid
        for pid in children_cpu_seconds(server.pid)
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    return spawned or [server.pid]


def profile(server: Server, script: Path, options: argparse.Namespace, name: str) -> None:
    """py-spy on every worker while wrk sends the same load: once sampling only the thread that
    holds the GIL (CPU in Python), once every running thread (wall time, idle left out)."""
    for mode, flags in (("gil", ["--gil"]), ("wall", [])):
        recorders = [
            subprocess.Popen(  # noqa: S603 - py-spy from the bench group, fixed arguments
                [
                    *("py-spy", "record", "--pid", str(pid), "-d", str(options.duration)),
                    *("-f", "raw", "--nonblocking", *flags),
                    *("-o", str(options.profile / f"{name}-{mode}-{pid}.txt")),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for pid in worker_pids(server)
        ]
        run_wrk(server.port, script, options.connections, options.duration)
        for recorder in recorders:
            output, _ = recorder.communicate(timeout=60)
            if recorder.returncode != 0:
                raise RuntimeError(f"py-spy failed ({recorder.returncode}):\n{output.decode()}")


def measure(
    target: str,
    round_: int,
    server: Server,
    admin: psycopg.Connection[object],
    database: str,
    script: Path,
    options: argparse.Namespace,
) -> Cell:
    run_wrk(server.port, script, options.connections, WARMUP_SECONDS)
    before = take_snapshot(server.pid, backend_pids(admin, database))
    output, wrk_seconds = run_wrk(server.port, script, options.connections, options.duration)
    # Listed again: a backend the pool opened inside the window counts from its start.
    after = take_snapshot(server.pid, backend_pids(admin, database))
    usage = usage_between(before, after)
    found = _REQUESTS_PER_SECOND.search(output)
    if found is None:
        raise RuntimeError(f"no Requests/sec in wrk's report:\n{output.decode()}")
    latency = {
        percentile: float(value) * _UNIT_MS[unit]
        for percentile, value, unit in _LATENCY_PERCENTILE.findall(output)
    }
    errors = [
        match.group(0).decode().strip()
        for match in (_NON_2XX.search(output), _SOCKET_ERRORS.search(output))
        if match is not None
    ]
    return Cell(
        target=target,
        round=round_,
        requests_per_second=float(found.group(1)),
        p50_ms=latency.get(b"50", float("nan")),
        p99_ms=latency.get(b"99", float("nan")),
        errors="; ".join(errors),
        server_cores=usage.server,
        postgres_cores=usage.postgres,
        wrk_cores=wrk_seconds / usage.seconds,
        machine_cores=usage.host,
        steal_cores=usage.steal,
    )


def print_cell(cell: Cell) -> None:
    other = cell.machine_cores - cell.server_cores - cell.postgres_cores - cell.wrk_cores
    print(
        f"{cell.target:<10} {cell.round:>5} {cell.requests_per_second:>8,.0f}"
        f" {cell.p50_ms:>7.2f} {cell.p99_ms:>7.2f}"
        f" {cell.server_cores:>6.0%} {cell.postgres_cores:>5.0%} {cell.wrk_cores:>5.0%}"
        f" {other:>5.0%} {cell.steal_cores:>5.0%} {cell.machine_cores:>6.0%}"
        f" {cell.per_request_us(cell.server_cores):>7.0f}"
        f" {cell.per_request_us(cell.machine_cores):>8.0f}"
        f"  {cell.errors or 'none'}",
        flush=True,
    )


HEADER = (
    f"{'target':<10} {'round':>5} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}"
    f" {'server':>6} {'pg':>5} {'wrk':>5} {'other':>5} {'steal':>5} {'all':>6}"
    f" {'sv µs':>7} {'all µs':>8}  errors"
)


def of(cells: Sequence[Cell], target: str) -> list[Cell]:
    return [cell for cell in cells if cell.target == target]


def summary(cells: Sequence[Cell]) -> None:
    """Ratios within each round (the machine's speed drifts between rounds), then medians."""
    one, two, bare = of(cells, "1 worker"), of(cells, "2 workers"), of(cells, "bare")
    ratios = [b.requests_per_second / a.requests_per_second for a, b in zip(one, two, strict=True)]
    # The ceiling of each round from its own CPU accounting (module docstring).
    cores = os.cpu_count() or 1
    ceilings = [
        cores * a.per_request_us(a.server_cores) / b.per_request_us(b.machine_cores)
        for a, b in zip(one, two, strict=True)
    ]

    def rate(group: list[Cell]) -> float:
        return statistics.median(cell.requests_per_second for cell in group)

    print()
    print(
        f"medians: 1 worker {rate(one):,.0f} req/s, 2 workers {rate(two):,.0f},"
        f" bare read {rate(bare):,.0f}"
    )
    print(
        f"2 workers / 1 worker, median of the rounds: {statistics.median(ratios):.2f}x"
        f" (per round {', '.join(f'{ratio:.2f}x' for ratio in ratios)}); target 1.5x"
    )
    print(
        f"ceiling from CPU per request on {cores} cores, median: {statistics.median(ceilings):.2f}x"
        f" (per round {', '.join(f'{ceiling:.2f}x' for ceiling in ceilings)})"
    )
    disturbed = [
        round_ + 1
        for round_, cells_of_round in enumerate(zip(one, two, strict=True))
        if any(cell.steal_cores > STEAL_DISTURBS for cell in cells_of_round)
    ]
    if disturbed:
        clean = [ratio for round_, ratio in enumerate(ratios) if round_ + 1 not in disturbed]
        print(
            f"rounds {', '.join(map(str, disturbed))}: the hypervisor took over"
            f" {STEAL_DISTURBS:.0%} of a core in a cell (steal), so their ratio measures the host;"
            + (
                f" the others' median: {statistics.median(clean):.2f}x"
                if clean
                else " no round was clean"
            )
        )
    print(
        f"vs the bare read: 1 worker {rate(one) / rate(bare):.2f}x, 2 workers {rate(two) / rate(bare):.2f}x"
    )


@contextlib.contextmanager
def seeded(admin_url: str, secret: str) -> Iterator[tuple[str, dict[str, tuple[str, ...]]]]:
    with scratch_database(admin_url) as database:
        service_login(database.url, secret)  # migrates the scratch database as its owner
        users = [f"bench-worker-user-{i}" for i in range(USERS)]
        seed_tasks(database.url, secret, users, TASKS_EACH)
        vacuum_analyze(database.url)
        yield database.url, task_ids_by_user(database.url, secret, users)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per cell")
    parser.add_argument("--connections", type=int, default=USERS, help="wrk -c")
    parser.add_argument(
        "--pool-size", type=int, default=POOL_SIZE, help="TASKTRAIL_POOL_SIZE of each worker"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="a directory: after the last round's cells of the service, profile its workers with"
        " py-spy (--gil, then wall) under the same load, and print where the time goes by layer",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TASKTRAIL_TEST_POSTGRES_URL", DEFAULT_ADMIN_URL),
    )
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")
    if options.profile is not None:
        if shutil.which("py-spy") is None:
            parser.error("--profile needs py-spy (pip install py-spy)")
        options.profile.mkdir(parents=True, exist_ok=True)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    secret = secrets.token_urlsafe(48)
    cells: list[Cell] = []
    with contextlib.ExitStack() as stack:
        url, task_ids = stack.enter_context(seeded(options.postgres_url, secret))
        database = str(psycopg.conninfo.conninfo_to_dict(libpq_url(url))["dbname"])
        admin = stack.enter_context(
            psycopg.connect(libpq_url(options.postgres_url), autocommit=True)
        )
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-workers-")))
        served = [
            (f"/api/{user}/tasks/{task}", mint_token(user, secret, timedelta(hours=2)))
            for user, tasks in task_ids.items()
            for task in tasks
        ]
        service = workdir / "service.lua"
        service.write_text(lua_script(served))
        (workdir / "bare.lua").write_text(
            lua_script([(f"/tasks/{p.rsplit('/', 1)[1]}", "") for p, _ in served])
        )
        print(HEADER, flush=True)
        for round_ in range(1, options.rounds + 1):
            for workers in (1, 2):
                target = f"{workers} worker{'s' if workers > 1 else ''}"
                log = workdir / f"serve-{workers}.log"
                with running_server(url, secret, options.pool_size, log, workers) as server:
                    cell = measure(target, round_, server, admin, database, service, options)
                    if options.profile is not None and round_ == options.rounds:
                        profile(server, service, options, f"{workers}w")
                cells.append(cell)
                print_cell(cell)
            with running_bare_app(url, "create_async_app", POOL_SIZE, workdir / "bare.log") as bare:
                cell = measure("bare", round_, bare, admin, database, workdir / "bare.lua", options)
            cells.append(cell)
            print_cell(cell)
        summary(cells)
    if options.profile is not None:
        print()
        print(
            table(
                {
                    f"{workers}w, {mode}": shares(
                        sorted(options.profile.glob(f"{workers}w-{mode}-*.txt"))
                    )
                    for workers in (1, 2)
                    for mode in ("gil", "wall")
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
