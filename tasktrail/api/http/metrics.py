"""Prometheus metrics: requests by route template and status, latency, events, pool use, open
SSE streams, and the progress of a rebuild run elsewhere.

One process (the default, and the tests' many apps in one process): each app has its own
registry, so apps never collide. Several workers (`serve --workers N`, or whenever the operator
sets PROMETHEUS_MULTIPROC_DIR): prometheus-client's multiprocess mode. Every process writes its
values into files of that directory and /metrics, whichever worker answers, adds up the files
of all of them (MultiProcessCollector). prometheus-client picks the mode when it is first
imported, from the environment: `serve` sets the directory before it starts the workers.

Two kinds of series are read at scrape time instead: the pools (only the answering process's
pools can be read, so in multiprocess mode they carry its `pid`: a sample of one worker, not of
the service), and the rebuild's progress, from its row in the database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, exc, text
from sqlalchemy.pool import QueuePool

from tasktrail.database import DatabaseUnavailable, read_connection
from tasktrail.pg_pool import AsyncPool
from tasktrail.projections.progress import RebuildProgress, read_progress

# Unmatched paths share one label, so a scanner cannot blow up the number of series.
UNMATCHED_ROUTE = "unmatched"
MULTIPROCESS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"
# The rebuild's row is read at every scrape: a database slower than this skips those series.
REBUILD_QUERY_TIMEOUT_MS = 1_000
_log = structlog.get_logger("tasktrail.metrics")


def multiprocess_directory() -> str | None:
    """The directory of multiprocess mode, or None for one process."""
    directory = os.environ.get(MULTIPROCESS_DIRECTORY)
    if not directory:
        return None
    if values.ValueClass is values.MutexValue:
        # The values would stay in this process's memory while /metrics reads the files.
        raise RuntimeError(
            f"{MULTIPROCESS_DIRECTORY} was set after prometheus_client was imported; "
            "set it in the environment before the process starts"
        )
    return directory


def reap_dead_processes(directory: str) -> None:
    """Drop the live gauges of processes that are gone (a worker that crashed or was killed
    and that uvicorn replaced): their open streams are closed. Their counters stay: a total
    does not go down because a worker exited."""
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        if not _alive(pid):
            with suppress(FileNotFoundError):  # another worker reaped it first
                _mark_process_dead(pid, directory)


def _mark_process_dead(pid: int, directory: str) -> None:
    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A worker that died but that its supervisor has not reaped yet. uvicorn's reaps only
    between health checks, each waiting up to timeout_worker_healthcheck (30 s) for a worker
    that may have died mid-check: a dead worker's streams would count as open all that time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc (not Linux), or reaped meanwhile: kill(0) decides
    # The state follows the command name, which is in parentheses and may hold anything.
    return stat[stat.rindex(")") + 2 :].startswith("Z")


class PoolCollector(Collector):
    """Reads the pools at scrape time: connections in use and the pools' size, the sync engine's
    and, on PostgreSQL, the async pool's (labelled by `pool`), and, in multiprocess mode, by the
    `pid` of the process they belong to."""

    def __init__(self, engine: Engine, pool: AsyncPool | None, *, by_pid: bool) -> None:
        self._engine = engine
        self._pool = pool
        self._by_pid = by_pid

    def collect(self) -> Iterator[Metric]:
        labels = ["pool", "pid"] if self._by_pid else ["pool"]
        extra = [str(os.getpid())] if self._by_pid else []
        pool = self._engine.pool
        in_use = GaugeMetricFamily(
            "tasktrail_db_pool_connections_in_use",
            "Database connections checked out now",
            labels=labels,
        )
        size = GaugeMetricFamily(
            "tasktrail_db_pool_size", "Database connections the pool may hold", labels=labels
        )
        if isinstance(pool, QueuePool):
            in_use.add_metric(["sync", *extra], pool.checkedout())
            size.add_metric(["sync", *extra], pool.size())
        if self._pool is not None:
            checked_out, pool_size = self._pool.in_use()
            in_use.add_metric(["async", *extra], checked_out)
            size.add_metric(["async", *extra], pool_size)
        yield in_use
        yield size


class RebuildCollector(Collector):
    """The latest rebuild's progress, read from its row at scrape time (the rebuild is another
    process). When the row cannot be read in time the series are left out; the scrape goes on."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        try:
            progress = self._read()
        except (DatabaseUnavailable, exc.SQLAlchemyError) as error:
            _log.warning("rebuild progress not read for /metrics", error=str(error))
            return
        if progress is not None:
            yield from _rebuild_metrics(progress)

    def _read(self) -> RebuildProgress | None:
        with read_connection(self._engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text(f"SET LOCAL statement_timeout = {REBUILD_QUERY_TIMEOUT_MS}"))
            return read_progress(conn)


def _rebuild_metrics(progress: RebuildProgress) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "tasktrail_rebuild_running",
        "1 while a projections rebuild runs, else 0",
        value=1 if progress.running else 0,
    )
    yield InfoMetricFamily(
        "tasktrail_rebuild_phase",
        "The phase the latest rebuild is in, or ended in",
        value={"phase": progress.phase},
    )
    yield GaugeMetricFamily(
        "tasktrail_rebuild_events_done",
        "Events the latest rebuild has replayed",
        value=progress.events_done,
    )
    yield GaugeMetricFamily(
        "tasktrail_rebuild_events_total",
        "Events in the log when the latest rebuild started",
        value=progress.events_total,
    )
    yield GaugeMetricFamily(
        "tasktrail_rebuild_started_timestamp_seconds",
        "When the latest rebuild started",
        value=progress.started_at.timestamp(),
    )
    yield GaugeMetricFamily(
        "tasktrail_rebuild_updated_timestamp_seconds",
        "When the latest rebuild last recorded its progress",
        value=progress.updated_at.timestamp(),
    )
    if progress.finished_at is not None:
        finished = GaugeMetricFamily(
            "tasktrail_rebuild_last_finished_timestamp_seconds",
            "When the latest rebuild ended, by outcome: swapped, aborted (the live table "
            "kept) or failed",
            labels=["outcome"],
        )
        finished.add_metric([progress.outcome or "unknown"], progress.finished_at.timestamp())
        yield finished


class Metrics:
    def __init__(self, engine: Engine, pool: AsyncPool | None = None) -> None:
        self.directory = multiprocess_directory()
        self.registry = CollectorRegistry()
        # In multiprocess mode the values live in the directory's files and are collected from
        # there; registering them here too would count this process's share twice.
        own = self.registry if self.directory is None else None
        self.requests = Counter(
            "tasktrail_http_requests",
            "HTTP requests by method, route template and status code",
            ["method", "route", "status"],
            registry=own,
        )
        self.latency = Histogram(
            "tasktrail_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=own,
        )
        self.events_appended = Counter(
            "tasktrail_events_appended", "Events appended to the log", registry=own
        )
        # Summed over the live processes: a worker that exits takes its streams with it.
        self.sse_streams = Gauge(
            "tasktrail_sse_streams_open",
            "Server-sent event streams open now",
            multiprocess_mode="livesum",
            registry=own,
        )
        if self.directory is not None:
            # Unannotated in prometheus-client, like mark_process_dead.
            multiprocess.MultiProcessCollector(self.registry, path=self.directory)  # type: ignore[no-untyped-call]
        self.registry.register(PoolCollector(engine, pool, by_pid=self.directory is not None))
        self.registry.register(RebuildCollector(engine))

    def observe_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        label = route or UNMATCHED_ROUTE
        self.requests.labels(method, label, str(status)).inc()
        self.latency.labels(method, label).observe(seconds)

    def stream_opened(self) -> None:
        self.sse_streams.inc()

    def stream_closed(self) -> None:
        self.sse_streams.dec()

    def render(self) -> bytes:
        """The text exposition; blocking (it may read files and the database)."""
        if self.directory is not None:
            reap_dead_processes(self.directory)
        return generate_latest(self.registry)

    def process_exiting(self) -> None:
        """This worker stops: its live gauges stop counting at once."""
        if self.directory is not None:
            _mark_process_dead(os.getpid(), self.directory)
