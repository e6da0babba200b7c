"""Rebuild the read model from the log, blue/green, while the service keeps serving.

1. Replay the log at a snapshot into a shadow table, in batches (streamed out and in with COPY
   on PostgreSQL), task by task with the same `evolve` as the live projector; on PostgreSQL in
   `workers` processes, each a share of the tasks, all at the same snapshot (fill.py).
2. Catch up, without fencing anyone, with what committed since: the tasks that have events the
   snapshot could not see are folded again. PostgreSQL tells those events by their writing
   transaction (`pg_visible_in_snapshot`), not by position: a lower position can commit after
   a higher one. SQLite serialises writers, so there position order is commit order.
3. Check the shadow table against the fold: its row count and an order-independent checksum
   (the sum of each row's digest, row_digest.py; PostgreSQL computes it over the stored rows)
   must equal those of the replayed states. Then build its indexes and ANALYZE it.
4. Fence writers with the swap's own LOCK TABLE under a short lock_timeout (retried), catch up
   once more with the little that committed meanwhile, check those rows, and swap the tables
   in that same transaction. Writers wait milliseconds; a writer blocked by the fence writes its
   row into the new table once the swap commits. On any mismatch nothing is swapped and the live
   table stays as it was.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, delete, func, select, text
from sqlalchemy.exc import DBAPIError

from tasktrail.database import writing
from tasktrail.projections import shadow
from tasktrail.projections.fill import READING_TIME_ZONE, fill_in_processes, fill_share
from tasktrail.projections.inline import task_values
from tasktrail.projections.progress import REBUILD_LOCK_KEY, ProgressRecorder
from tasktrail.projections.replay import replayed_tasks
from tasktrail.projections.row_digest import row_digest
from tasktrail.projections.shadow import RebuildAborted as RebuildAborted  # part of its API
from tasktrail.schema import events

_MAX_CATCH_UPS = 5
_SWAP_ATTEMPTS = 20
_FENCE_LOCK_TIMEOUT_MS = 200


@dataclass
class RebuildReport:
    events: int = 0
    tasks: int = 0
    caught_up_tasks: int = 0
    swap_attempts: int = 0
    fence_ms: float = 0.0
    seconds: float = 0.0
    checksum: str = ""
    workers: int = 1
    # Seconds per phase, in order: replay, catch-up, check, indexes, fence and swap.
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


@dataclass
class _Expected:
    """What the fold says the shadow table must hold: one row digest (row_digest.py) per task,
    by the task's id as text."""

    digests: dict[str, int] = field(default_factory=dict)
    # Rows in the shadow table: counted once in full before the fence, then kept up to date
    # from the row counts of our own catch-ups, so the fence never scans the table.
    stored_rows: int = 0

    def checksum(self) -> int:
        return sum(self.digests.values())


def rebuild(
    engine: Engine,
    *,
    batch_size: int = 5_000,
    workers: int = 1,
    on_events: Callable[[int], None] = lambda _: None,
) -> RebuildReport:
    started = time.perf_counter()
    report = RebuildReport(workers=workers)
    expected = _Expected()
    progress = ProgressRecorder(engine)

    def counted(done: int) -> None:
        progress.events(done)
        on_events(done)

    with _only_rebuild(engine):
        progress.start()
        shadow.create_shadow(engine)
        try:
            _rebuild(engine, batch_size, workers, counted, expected, report, progress)
        except BaseException as error:
            with writing(engine).begin() as conn:
                conn.execute(text(f"DROP TABLE IF EXISTS {shadow.SHADOW}"))
            progress.finish("aborted" if isinstance(error, RebuildAborted) else "failed")
            raise
        progress.finish("swapped")
    report.tasks = len(expected.digests)
    report.checksum = f"{expected.checksum():x}"
    report.seconds = time.perf_counter() - started
    return report


def _rebuild(
    engine: Engine,
    batch_size: int,
    workers: int,
    on_events: Callable[[int], None],
    expected: _Expected,
    report: RebuildReport,
    progress: ProgressRecorder,
) -> None:
    with _phase(report, progress, "replay"):
        marker = _replay(engine, batch_size, workers, expected, report, on_events)
    with _phase(report, progress, "catch-up"):
        for _ in range(_MAX_CATCH_UPS):
            with writing(engine).begin() as conn:
                changed, marker = _catch_up(conn, marker, expected, repeatable=True)
            report.caught_up_tasks += len(changed)
            if not changed:
                break
    with _phase(report, progress, "check"):
        _check_whole(engine, expected)
    with _phase(report, progress, "indexes"):
        indexes = shadow.build_indexes(engine)
    with _phase(report, progress, "fence and swap"):
        _fence_and_swap(engine, marker, indexes, expected, report)


@contextmanager
def _phase(report: RebuildReport, progress: ProgressRecorder, name: str) -> Iterator[None]:
    progress.phase(name)
    started = time.perf_counter()
    try:
        yield
    finally:
        report.phases[name] = time.perf_counter() - started


@contextmanager
def _only_rebuild(engine: Engine) -> Iterator[None]:
    """One rebuild at a time, run by the table's owner (on PostgreSQL)."""
    with engine.connect() as conn:
        if not _postgres(conn):
            yield  # SQLite's rebuild runs inside the service's one file: one operator at a time
            return
        owner, me = conn.execute(
            text(
                "SELECT tableowner, current_user FROM pg_tables "
                "WHERE schemaname = current_schema() AND tablename = 'tasks'"
            )
        ).one()
        if owner != me:
            # The swapped-in table belongs to whoever creates it, without the old one's grants.
            raise RebuildAborted(f"run the rebuild as {owner}, the owner of tasks (not {me})")
        if not conn.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": REBUILD_LOCK_KEY}
        ).scalar():
            raise RebuildAborted("another rebuild is running")
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": REBUILD_LOCK_KEY})
            conn.commit()


# --- replay -----------------------------------------------------------------------------------


def _replay(
    engine: Engine,
    batch_size: int,
    workers: int,
    expected: _Expected,
    report: RebuildReport,
    on_events: Callable[[int], None],
) -> str | int:
    """Fold the whole log as of one snapshot into the shadow table; returns that snapshot."""
    with engine.connect() as reader:
        if _postgres(reader):
            reader.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            reader.execute(text(f"SET LOCAL TIME ZONE '{READING_TIME_ZONE}'"))  # fill.py says why
            marker: str | int = reader.execute(
                text("SELECT pg_current_snapshot()::text")
            ).scalar_one()
        else:
            marker = reader.execute(
                select(func.coalesce(func.max(events.c.position), 0))
            ).scalar_one()
        if workers > 1 and _postgres(reader):
            filled = fill_in_processes(engine, reader, workers, batch_size, on_events)
        else:  # SQLite has one writer at a time: more folding processes would only queue
            report.workers = 1
            filled = fill_share(engine, reader, batch_size, on_events=on_events)
        reader.rollback()
    report.events += filled.events
    expected.digests.update(filled.digests)
    return marker


# --- catch up ---------------------------------------------------------------------------------


def _catch_up(
    conn: Connection, marker: str | int, expected: _Expected, *, repeatable: bool
) -> tuple[list[str], str | int]:
    """Fold again every task with events the marker's snapshot did not see.

    Returns those tasks and the snapshot (or, on SQLite, the position) this catch-up saw.
    """
    if _postgres(conn):
        if repeatable:  # one snapshot for the list of tasks and their events alike
            conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        now = conn.execute(text("SELECT pg_current_snapshot()::text")).scalar_one()
        changed = (
            conn.execute(
                text(
                    "SELECT DISTINCT task_id::text FROM events "
                    "WHERE xact_id >= pg_snapshot_xmin(CAST(:seen AS pg_snapshot)) "
                    "AND NOT pg_visible_in_snapshot(xact_id, CAST(:seen AS pg_snapshot))"
                ),
                {"seen": marker},
            )
            .scalars()
            .all()
        )
    else:
        now = conn.execute(select(func.coalesce(func.max(events.c.position), 0))).scalar_one()
        changed = (
            conn.execute(select(events.c.task_id).where(events.c.position > marker).distinct())
            .scalars()
            .all()
        )
    task_ids = [str(uuid.UUID(str(task_id))) for task_id in changed]  # one spelling: the UUID's
    if task_ids:
        _refold(conn, task_ids, expected)
    return task_ids, now


def _refold(conn: Connection, task_ids: list[str], expected: _Expected) -> None:
    rows = [task_values(state) for _, state, _ in replayed_tasks(conn, task_ids) if state]
    removed = conn.execute(
        delete(shadow.shadow_tasks).where(
            shadow.shadow_tasks.c.id.in_([uuid.UUID(task) for task in task_ids])
        )
    ).rowcount
    shadow.write_rows(conn, rows)
    expected.stored_rows += len(rows) - removed
    for task_id in task_ids:
        expected.digests.pop(task_id, None)  # a stream that folds to no task has no row
    for row in rows:
        expected.digests[row[0]] = row_digest(row)


# --- checks -------------------------------------------------------------------------------------


def _check_whole(engine: Engine, expected: _Expected) -> None:
    """The whole shadow table: its row count and checksum must be the fold's."""
    with engine.connect() as conn:
        if _postgres(conn):  # PostgreSQL digests its rows itself: nothing is read back
            count, total = conn.execute(
                text(f"SELECT count(*), coalesce(sum({shadow.SQL_DIGEST}), 0) FROM {shadow.SHADOW}")  # noqa: S608
            ).one()
        else:
            digests = list(shadow.stored_digests(conn, None))
            count, total = len(digests), sum(digest for _, digest in digests)
    expected.stored_rows = count
    if count != len(expected.digests) or total != expected.checksum():
        raise RebuildAborted(
            f"the shadow table has {count} rows (checksum {int(total):x}); the fold has "
            f"{len(expected.digests)} (checksum {expected.checksum():x}): nothing swapped"
        )


def _check_rows(conn: Connection, task_ids: list[str], expected: _Expected) -> None:
    """Under the fence: the rows caught up there, and the count, must be the fold's."""
    stored = dict(shadow.stored_digests(conn, task_ids))
    if stored != {task: expected.digests[task] for task in task_ids if task in expected.digests}:
        raise RebuildAborted("rows caught up under the fence do not match the fold")
    if expected.stored_rows != len(expected.digests):
        raise RebuildAborted(
            f"the shadow table has {expected.stored_rows} rows, the fold {len(expected.digests)}"
        )


# --- fence and swap ---------------------------------------------------------------------------


def _fence_and_swap(
    engine: Engine,
    marker: str | int,
    indexes: list[tuple[str, str]],
    expected: _Expected,
    report: RebuildReport,
) -> None:
    for attempt in range(1, _SWAP_ATTEMPTS + 1):
        report.swap_attempts = attempt
        try:
            # On SQLite this transaction begins with BEGIN IMMEDIATE: the write lock is the fence.
            with writing(engine).begin() as conn:
                fenced = time.perf_counter()
                _fence(conn)
                # Under the fence nothing that writes tasks can commit: read committed is enough.
                changed, _ = _catch_up(conn, marker, expected, repeatable=False)
                report.caught_up_tasks += len(changed)
                _check_rows(conn, changed, expected)
                shadow.swap(conn, indexes)
                report.fence_ms = (time.perf_counter() - fenced) * 1000
            return
        except DBAPIError as error:
            if not _lock_refused(error) or attempt == _SWAP_ATTEMPTS:
                raise
            time.sleep(0.05 * attempt)  # readers or writers hold the table: try again shortly


def _fence(conn: Connection) -> None:
    if _postgres(conn):
        # The swap's own lock, taken first: writers (and, for these milliseconds, readers) wait
        # on it; if it is not granted quickly the attempt gives up and is retried.
        conn.execute(text(f"SET LOCAL lock_timeout = '{_FENCE_LOCK_TIMEOUT_MS}ms'"))
        conn.execute(text("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE"))


def _lock_refused(error: DBAPIError) -> bool:
    return getattr(error.orig, "sqlstate", None) == "55P03" or "locked" in str(error.orig)


def _postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"
