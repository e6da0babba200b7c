"""The rebuild's progress in one row of `rebuild_progress`, for the service's /metrics.

`projections rebuild` runs as a process of its own, possibly in another container, so the
service cannot see its memory; the database is what both see. The rebuild writes the row in short
transactions of their own: at the start, at each phase, at most once a second while events are
replayed, and at the end. A write that fails is logged and the rebuild goes on: the row is for
watching, never a reason to abort.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, delete, exc, func, insert, select, text, update

from tasktrail.database import writing
from tasktrail.schema import events, rebuild_progress

PROGRESS_INTERVAL_SECONDS = 1.0
# The advisory lock every rebuild takes on PostgreSQL ("taskrebu"): any fixed number they share.
REBUILD_LOCK_KEY = 0x7461736B72656275
_ROW = 1
_log = structlog.get_logger("tasktrail.rebuild")


@dataclass(frozen=True)
class RebuildProgress:
    """The latest rebuild, as its row says."""

    phase: str
    events_done: int
    events_total: int
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    outcome: str | None  # "swapped", "aborted" (the live table kept) or "failed"
    running: bool


class ProgressRecorder:
    """Writes the row as a rebuild goes; never raises for a failed write."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = writing(engine)
        self._clock = clock
        self._written_at = float("-inf")
        self._done = 0
        self._working = True

    def start(self) -> None:
        now = datetime.now(UTC)
        with self._failures_logged(), self._engine.begin() as conn:
            total = conn.execute(select(func.count()).select_from(events)).scalar_one()
            conn.execute(delete(rebuild_progress))
            conn.execute(
                insert(rebuild_progress).values(
                    id=_ROW,
                    phase="starting",
                    events_done=0,
                    events_total=total,
                    started_at=now,
                    updated_at=now,
                )
            )
        self._written_at = self._clock()

    def phase(self, name: str) -> None:
        self._write(phase=name, events_done=self._done)

    def events(self, done: int) -> None:
        """Events replayed so far; written when a second has passed since the last write."""
        self._done = done
        if self._clock() - self._written_at >= PROGRESS_INTERVAL_SECONDS:
            self._write(events_done=done)

    def finish(self, outcome: str) -> None:
        """The end: "swapped", or "aborted" or "failed" in the phase that stopped it."""
        values: dict[str, Any] = {"outcome": outcome, "finished_at": datetime.now(UTC)}
        if outcome == "swapped":
            values["phase"] = "finished"
        self._write(events_done=self._done, **values)

    def _write(self, **values: Any) -> None:
        if not self._working:
            return
        with self._failures_logged(), self._engine.begin() as conn:
            conn.execute(
                update(rebuild_progress)
                .where(rebuild_progress.c.id == _ROW)
                .values(updated_at=datetime.now(UTC), **values)
            )
        self._written_at = self._clock()

    @contextmanager
    def _failures_logged(self) -> Iterator[None]:
        try:
            yield
        except exc.SQLAlchemyError as error:
            _log.warning("rebuild progress not recorded; the rebuild goes on", error=str(error))
            self._working = False


def read_progress(conn: Connection) -> RebuildProgress | None:
    """The latest rebuild, or None before the first. On PostgreSQL `running` also needs the
    rebuild's advisory lock to be held (in this database), so a rebuild that was killed does not run for ever; on
    SQLite it is the row's word alone."""
    row = conn.execute(select(rebuild_progress).where(rebuild_progress.c.id == _ROW)).first()
    if row is None:
        return None
    running = row.finished_at is None
    if running and conn.dialect.name == "postgresql":
        running = bool(
            conn.execute(
                text(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                    "AND classid = CAST(:high AS oid) AND objid = CAST(:low AS oid) "
                    "AND objsubid = 1 AND granted "
                    "AND database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database()))"
                ),
                {"high": REBUILD_LOCK_KEY >> 32, "low": REBUILD_LOCK_KEY & 0xFFFFFFFF},
            ).scalar_one()
        )
    return RebuildProgress(
        phase=row.phase,
        events_done=row.events_done,
        events_total=row.events_total,
        started_at=row.started_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
        outcome=row.outcome,
        running=running,
    )
