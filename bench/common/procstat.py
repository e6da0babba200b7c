"""CPU time of processes and of the whole machine, read from /proc (Linux only).

The benchmark reads these at the edges of each measured window: the difference, divided by the
window's length, is how much of a core a process used while the load ran. The kernel counts in
clock ticks (usually 10 ms), so over a 5 s window the figures are good to about half a percent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")

# In /proc/<pid>/stat, utime and stime are fields 14 and 15 (1-based). Counting from the field
# after the command name (the state, field 3), they are at 11 and 12.
_UTIME_AFTER_COMM = 11
_STIME_AFTER_COMM = 12
# The parent's pid (field 4), and cutime, cstime (16, 17): the CPU of children it has reaped.
_PPID_AFTER_COMM = 1
_CUTIME_AFTER_COMM = 13
_CSTIME_AFTER_COMM = 14


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or parentheses:
    # split only what follows the last ")".
    return raw[raw.rindex(b")") + 2 :].split()


def parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[_PPID_AFTER_COMM])


def children_cpu_seconds(parent: int) -> dict[int, float]:
    """CPU so far of every live child of `parent`, by pid."""
    children = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and int(fields[_PPID_AFTER_COMM]) == parent:
            ticks = int(fields[_UTIME_AFTER_COMM]) + int(fields[_STIME_AFTER_COMM])
            children[int(entry.name)] = ticks / CLOCK_TICKS_PER_SECOND
    return children


def reaped_children_cpu_seconds(pid: int) -> float:
    """User + system CPU of the children `pid` has waited for (for PostgreSQL's postmaster:
    every backend and helper that came and went); 0 if the process is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[_CUTIME_AFTER_COMM]) + int(fields[_CSTIME_AFTER_COMM])
    return ticks / CLOCK_TICKS_PER_SECOND


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of every thread of `pid` so far; None if the process is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    ticks = int(fields[_UTIME_AFTER_COMM]) + int(fields[_STIME_AFTER_COMM])
    return ticks / CLOCK_TICKS_PER_SECOND


def _host_columns() -> list[int]:
    """/proc/stat's first line: "cpu  user nice system idle iowait irq softirq steal guest
    guest_nice", in ticks since boot; guest time is already inside user, so the first eight
    columns are the whole of it."""
    with open("/proc/stat", "rb") as stat:
        return [int(value) for value in stat.readline().split()[1:9]]


def host_busy_seconds() -> float:
    """CPU seconds all cores together spent on anything but idling, since boot."""
    columns = _host_columns()
    idle, iowait = columns[3], columns[4]
    return (sum(columns) - idle - iowait) / CLOCK_TICKS_PER_SECOND


def host_steal_seconds() -> float:
    """CPU seconds the hypervisor gave this machine's cores to someone else while they had work
    (inside `host_busy_seconds`): on a virtual machine, time no process here used."""
    return _host_columns()[7] / CLOCK_TICKS_PER_SECOND


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """CPU counters taken at one moment (`at`, time.monotonic())."""

    at: float
    server: float
    postgres: Mapping[int, float]  # per backend pid: a backend may appear between snapshots
    host: float
    steal: float = 0.0


def take_snapshot(server_pid: int, postgres_pids: Iterable[int]) -> CpuSnapshot:
    """The server is the process and its live children: with `--workers N`, uvicorn's
    supervisor and its N worker processes."""
    postgres = {
        pid: seconds for pid in postgres_pids if (seconds := process_cpu_seconds(pid)) is not None
    }
    server = (process_cpu_seconds(server_pid) or 0.0) + sum(
        children_cpu_seconds(server_pid).values()
    )
    return CpuSnapshot(
        at=time.monotonic(),
        server=server,
        postgres=postgres,
        host=host_busy_seconds(),
        steal=host_steal_seconds(),
    )


@dataclass(frozen=True, slots=True)
class CpuUsage:
    """Share of one core (1.0 = one core fully busy) used between two snapshots."""

    seconds: float
    server: float
    postgres: float
    host: float
    steal: float = 0.0  # inside host


def usage_between(before: CpuSnapshot, after: CpuSnapshot) -> CpuUsage:
    seconds = after.at - before.at
    # A backend first seen in `after` was opened inside the window: all its CPU belongs to it.
    postgres = sum(used - before.postgres.get(pid, 0.0) for pid, used in after.postgres.items())
    return CpuUsage(
        seconds=seconds,
        server=(after.server - before.server) / seconds,
        postgres=postgres / seconds,
        host=(after.host - before.host) / seconds,
        steal=(after.steal - before.steal) / seconds,
    )
