"""Prometheus metrics: requests by route template and status, latency, events, pool use.

Each app has its own registry (several apps in one process, as in the tests, never collide).
With several workers each process reports its own numbers; scrape them per process or put the
workers behind a collector that sums them.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool

from tasktrail.pg_pool import AsyncPool

# Unmatched paths share one label, so a scanner cannot blow up the number of series.
UNMATCHED_ROUTE = "unmatched"


class PoolCollector(Collector):
    """Reads the pools at scrape time: connections in use and the pools' size, the sync engine's
    and, on PostgreSQL, the async pool's (labelled by `pool`)."""

    def __init__(self, engine: Engine, pool: AsyncPool | None) -> None:
        self._engine = engine
        self._pool = pool

    def collect(self) -> Iterator[Metric]:
        pool = self._engine.pool
        in_use = GaugeMetricFamily(
            "tasktrail_db_pool_connections_in_use",
            "Database connections checked out now",
            labels=["pool"],
        )
        size = GaugeMetricFamily(
            "tasktrail_db_pool_size", "Database connections the pool may hold", labels=["pool"]
        )
        if isinstance(pool, QueuePool):
            in_use.add_metric(["sync"], pool.checkedout())
            size.add_metric(["sync"], pool.size())
        if self._pool is not None:
            checked_out, pool_size = self._pool.in_use()
            in_use.add_metric(["async"], checked_out)
            size.add_metric(["async"], pool_size)
        yield in_use
        yield size


class Metrics:
    def __init__(self, engine: Engine, pool: AsyncPool | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tasktrail_http_requests",
            "HTTP requests by method, route template and status code",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tasktrail_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.events_appended = Counter(
            "tasktrail_events_appended", "Events appended to the log", registry=self.registry
        )
        self.streams_open = Gauge(
            "tasktrail_sse_streams_open",
            "Live feed (Server-Sent Events) streams open now",
            registry=self.registry,
        )
        self.registry.register(PoolCollector(engine, pool))

    def stream_opened(self) -> None:
        self.streams_open.inc()

    def stream_closed(self) -> None:
        self.streams_open.dec()

    def observe_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        label = route or UNMATCHED_ROUTE
        self.requests.labels(method, label, str(status)).inc()
        self.latency.labels(method, label).observe(seconds)
