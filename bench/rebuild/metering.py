"""What each measurement of the rebuild benchmark records: its time, and the CPU it took where.

Python is this process and the children it waited for; PostgreSQL is the whole cluster; other is
the rest of the machine, all in % of one core (2 cores: at most 200 together).
"""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.common.procstat import (
    children_cpu_seconds,
    host_busy_seconds,
    parent_pid,
    reaped_children_cpu_seconds,
)


@dataclass(frozen=True, slots=True)
class _Counters:
    at: float
    python: float
    backends: dict[int, float]
    reaped: float  # the postmaster's reaped children
    host: float


@dataclass(frozen=True, slots=True)
class Cpu:
    """Shares of one core (100 = one core busy) over a measurement; 2 cores give at most 200."""

    python_pct: float  # this process and its workers: the rebuild's, verify's, audit's Python
    postgres_pct: float  # the PostgreSQL cluster (see CpuMeter)
    host_pct: float  # the whole machine

    @property
    def other_pct(self) -> float:
        """Anything else that ran: PostgreSQL's own background processes, and other programs
        (a test suite running beside the benchmark shows here)."""
        return self.host_pct - self.python_pct - self.postgres_pct


class CpuMeter:
    """Reads CPU counters around a measurement. Python is this process and the children it
    waited for (the rebuild's workers). PostgreSQL is the whole cluster: every child of the
    postmaster, plus what the postmaster reaped meanwhile (backends and parallel helpers that
    came and went: the workers' connections, parallel index builds), less what those had used
    before the measurement. On a quiet machine that is this benchmark's database alone."""

    def __init__(self, admin: psycopg.Connection[Any], database: str) -> None:
        del database  # the cluster is measured whole
        row = admin.execute("SELECT pg_backend_pid()").fetchone()
        self._postmaster = (parent_pid(int(row[0])) if row else None) or 0

    def _read(self) -> _Counters:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return _Counters(
            time.perf_counter(),
            time.process_time() + children.ru_utime + children.ru_stime,
            children_cpu_seconds(self._postmaster),
            reaped_children_cpu_seconds(self._postmaster),
            host_busy_seconds(),
        )

    @contextlib.contextmanager
    def measuring(self, into: list[Cpu]) -> Iterator[None]:
        before = self._read()
        yield
        after = self._read()
        seconds = after.at - before.at
        backends = sum(cpu - before.backends.get(pid, 0.0) for pid, cpu in after.backends.items())
        # A process that ended was reaped with all its CPU: take off what it had used before.
        gone = sum(cpu for pid, cpu in before.backends.items() if pid not in after.backends)
        backends += after.reaped - before.reaped - gone
        into.append(
            Cpu(
                python_pct=100 * (after.python - before.python) / seconds,
                postgres_pct=100 * backends / seconds,
                host_pct=100 * (after.host - before.host) / seconds,
            )
        )


@dataclass(slots=True)
class Measurement:
    name: str
    events: int | None
    seconds: float
    cpu: Cpu | None = None
    note: str = ""

    @property
    def events_per_second(self) -> float | None:
        return self.events / self.seconds if self.events and self.seconds else None
