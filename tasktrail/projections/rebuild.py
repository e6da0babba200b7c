"""Rebuild the read model from the log, blue/green, while the service keeps serving.

1. Replay the log at a snapshot into a shadow table, in batches (a server-side cursor; COPY on
   PostgreSQL), task by task with the same `evolve` as the live projector.
2. Catch up, without fencing anyone, with what committed since: the tasks that have events the
   snapshot could not see are folded again. PostgreSQL tells those events by their writing
   transaction (`pg_visible_in_snapshot`), not by position: a lower position can commit after
   a higher one. SQLite serialises writers, so there position order is commit order.
3. Check the shadow table against the fold: its row count and an order-independent checksum
   (the sum of each row's SHA-256) must equal those of the replayed states.
4. Fence writers with the swap's own LOCK TABLE under a short lock_timeout (retried), catch up
   once more with the little that committed meanwhile, check those rows, and swap the tables
   in that same transaction. Writers wait milliseconds; a writer blocked by the fence writes its
   row into the new table once the swap commits. On any mismatch nothing is swapped and the live
   table stays as it was.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, MetaData, Table, delete, func, select, text
from sqlalchemy.exc import DBAPIError

from tasktrail.database import writing
from tasktrail.events.store import event_columns, event_from_row
from tasktrail.events.types import Event
from tasktrail.projections.evolve import fold
from tasktrail.projections.inline import task_row
from tasktrail.schema import events, tasks

SHADOW = "tasks_shadow"
RETIRED = "tasks_retired"
shadow_tasks: Table = tasks.to_metadata(MetaData(), name=SHADOW)
_COLUMNS = [column.name for column in tasks.c]
_MAX_CATCH_UPS = 5
_SWAP_ATTEMPTS = 20
_FENCE_LOCK_TIMEOUT_MS = 200
_LOCK_KEY = 0x7461736B72656275  # "taskrebu": any fixed number all rebuilds share


class RebuildAborted(Exception):
    """The shadow table did not match the fold; the live table was left as it was."""


@dataclass
class RebuildReport:
    events: int = 0
    tasks: int = 0
    caught_up_tasks: int = 0
    swap_attempts: int = 0
    fence_ms: float = 0.0
    seconds: float = 0.0
    checksum: str = ""

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


@dataclass
class _Expected:
    """What the fold says the shadow table must hold: one digest per task."""

    digests: dict[uuid.UUID, int] = field(default_factory=dict)
    # Rows in the shadow table: counted once in full before the fence, then kept up to date
    # from the row counts of our own catch-ups, so the fence never scans the table.
    stored_rows: int = 0

    def checksum(self) -> int:
        return sum(self.digests.values()) % (1 << 256)


def rebuild(
    engine: Engine,
    *,
    batch_size: int = 5_000,
    on_events: Callable[[int], None] = lambda _: None,
) -> RebuildReport:
    started = time.perf_counter()
    report = RebuildReport()
    expected = _Expected()
    with _only_rebuild(engine):
        _create_shadow(engine)
        try:
            _rebuild(engine, batch_size, on_events, expected, report)
        except BaseException:
            with writing(engine).begin() as conn:
                conn.execute(text(f"DROP TABLE IF EXISTS {SHADOW}"))
            raise
    report.tasks = len(expected.digests)
    report.checksum = f"{expected.checksum():064x}"
    report.seconds = time.perf_counter() - started
    return report


def _rebuild(
    engine: Engine,
    batch_size: int,
    on_events: Callable[[int], None],
    expected: _Expected,
    report: RebuildReport,
) -> None:
    marker = _replay(engine, batch_size, expected, report, on_events)
    for _ in range(_MAX_CATCH_UPS):
        with writing(engine).begin() as conn:
            changed, marker = _catch_up(conn, marker, expected, repeatable=True)
        report.caught_up_tasks += len(changed)
        if not changed:
            break
    _check_whole(engine, expected)
    _fence_and_swap(engine, marker, expected, report)


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
        if not conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": _LOCK_KEY}).scalar():
            raise RebuildAborted("another rebuild is running")
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
            conn.commit()


# --- the shadow table ---------------------------------------------------------------------


def _create_shadow(engine: Engine) -> None:
    with writing(engine).begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {SHADOW}"))
        if _postgres(conn):
            # Columns, types, collations, defaults and checks as the live table has them today
            # (whatever migrations did); the primary key and indexes come after the load.
            conn.execute(
                text(f"CREATE TABLE {SHADOW} (LIKE tasks INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
            )
        else:
            ddl = conn.execute(
                text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'tasks'")
            ).scalar_one()
            conn.execute(text(re.sub(r'^CREATE TABLE\s+"?tasks"?', f"CREATE TABLE {SHADOW}", ddl)))


def _index_definitions(conn: Connection) -> list[tuple[str, str]]:
    """The live table's secondary indexes: (name, CREATE INDEX statement)."""
    if _postgres(conn):
        rows = conn.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "AND tablename = 'tasks' AND indexname <> 'tasks_pkey'"
            )
        )
    else:
        rows = conn.execute(
            text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks' "
                "AND sql IS NOT NULL"
            )
        )
    return [(row[0], row[1]) for row in rows]


# --- replay -----------------------------------------------------------------------------------


def _replay(
    engine: Engine,
    batch_size: int,
    expected: _Expected,
    report: RebuildReport,
    on_events: Callable[[int], None],
) -> str | int:
    """Fold the whole log as of one snapshot into the shadow table; returns that snapshot."""
    with engine.connect() as reader:
        if _postgres(reader):
            reader.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            marker: str | int = reader.execute(
                text("SELECT pg_current_snapshot()::text")
            ).scalar_one()
        else:
            marker = reader.execute(
                select(func.coalesce(func.max(events.c.position), 0))
            ).scalar_one()
        rows = reader.execution_options(yield_per=batch_size).execute(
            select(*event_columns()).order_by(events.c.task_id, events.c.version)
        )
        batch: list[dict[str, Any]] = []
        for state_row, count in _folded_rows(event_from_row(row._mapping) for row in rows):
            report.events += count
            expected.digests[state_row["id"]] = _digest(state_row)
            batch.append(state_row)
            if len(batch) >= batch_size:
                _write_batch(engine, batch)
                on_events(report.events)
                batch.clear()
        _write_batch(engine, batch)
        on_events(report.events)
        reader.rollback()
    return marker


def _folded_rows(history: Iterable[Event]) -> Iterator[tuple[dict[str, Any], int]]:
    """Each task's row from its events (read in task, version order), and how many there were."""
    for _, stream in groupby(history, lambda event: event.task_id):
        folded = list(stream)
        state = fold(folded)
        if state is not None:
            yield task_row(state), len(folded)


def _write_batch(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """One short transaction a batch: on SQLite the write lock is held for a batch only, so the
    service's writers go on between batches."""
    with writing(engine).begin() as writer:
        _write_rows(writer, rows)


def _write_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if not _postgres(conn):
        conn.execute(shadow_tasks.insert(), rows)
        return
    from psycopg.types.json import Jsonb  # the driver's own COPY: the fastest way in

    json_columns = {"tags", "tags_folded"}
    raw: Any = conn.connection.driver_connection
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {SHADOW} ({', '.join(_COLUMNS)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(
                [Jsonb(row[name]) if name in json_columns else row[name] for name in _COLUMNS]
            )


# --- catch up ---------------------------------------------------------------------------------


def _catch_up(
    conn: Connection, marker: str | int, expected: _Expected, *, repeatable: bool
) -> tuple[list[uuid.UUID], str | int]:
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
                    "SELECT DISTINCT task_id FROM events "
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
    task_ids = [uuid.UUID(str(task_id)) for task_id in changed]
    if task_ids:
        _refold(conn, task_ids, expected)
    return task_ids, now


def _refold(conn: Connection, task_ids: list[uuid.UUID], expected: _Expected) -> None:
    history = conn.execute(
        select(*event_columns())
        .where(events.c.task_id.in_(task_ids))
        .order_by(events.c.task_id, events.c.version)
    )
    rows = [row for row, _ in _folded_rows(event_from_row(r._mapping) for r in history)]
    removed = conn.execute(delete(shadow_tasks).where(shadow_tasks.c.id.in_(task_ids))).rowcount
    if rows:
        conn.execute(shadow_tasks.insert(), rows)
    expected.stored_rows += len(rows) - removed
    for task_id in task_ids:
        expected.digests.pop(task_id, None)  # a stream that folds to no task has no row
    for row in rows:
        expected.digests[row["id"]] = _digest(row)


# --- checks -------------------------------------------------------------------------------------


# Column names read back are SQLAlchemy's quoted_name, a str subclass orjson will not take as is.
_DIGEST_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _digest(row: dict[str, Any]) -> int:
    """A row's SHA-256. Both sides (the fold, the table read back) hold the same Python types
    (UUID, aware UTC datetimes, lists), which orjson writes alike."""
    return int.from_bytes(hashlib.sha256(orjson.dumps(row, option=_DIGEST_OPTIONS)).digest())


def _check_whole(engine: Engine, expected: _Expected) -> None:
    """Read the whole shadow table back: count and checksum must be the fold's."""
    count, total = 0, 0
    with engine.connect() as conn:
        for row in conn.execution_options(yield_per=10_000).execute(select(shadow_tasks)):
            count += 1
            total = (total + _digest(dict(row._mapping))) % (1 << 256)
    expected.stored_rows = count
    if count != len(expected.digests) or total != expected.checksum():
        raise RebuildAborted(
            f"the shadow table has {count} rows (checksum {total:064x}); the fold has "
            f"{len(expected.digests)} (checksum {expected.checksum():064x}): nothing swapped"
        )


def _check_rows(conn: Connection, task_ids: list[uuid.UUID], expected: _Expected) -> None:
    """Under the fence: the rows caught up there, and the count, must be the fold's."""
    stored = conn.execute(select(shadow_tasks).where(shadow_tasks.c.id.in_(task_ids))).all()
    if len(stored) != len({task for task in task_ids if task in expected.digests}) or any(
        _digest(dict(row._mapping)) != expected.digests.get(row.id) for row in stored
    ):
        raise RebuildAborted("rows caught up under the fence do not match the fold")
    if expected.stored_rows != len(expected.digests):
        raise RebuildAborted(
            f"the shadow table has {expected.stored_rows} rows, the fold {len(expected.digests)}"
        )


# --- fence and swap ---------------------------------------------------------------------------


def _fence_and_swap(
    engine: Engine, marker: str | int, expected: _Expected, report: RebuildReport
) -> None:
    with engine.connect() as conn:
        indexes = _index_definitions(conn)
        if _postgres(conn):
            # Build the shadow's indexes before the fence, under names of their own.
            for name, definition in indexes:
                conn.execute(text(_on_shadow(definition, name)))
            conn.execute(
                text(f"ALTER TABLE {SHADOW} ADD CONSTRAINT {SHADOW}_pkey PRIMARY KEY (id)")
            )
            conn.commit()
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
                _swap(conn, indexes)
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


def _swap(conn: Connection, indexes: list[tuple[str, str]]) -> None:
    conn.execute(text(f"ALTER TABLE tasks RENAME TO {RETIRED}"))
    conn.execute(text(f"ALTER TABLE {SHADOW} RENAME TO tasks"))
    conn.execute(text(f"DROP TABLE {RETIRED}"))
    if _postgres(conn):
        conn.execute(text(f"ALTER TABLE tasks RENAME CONSTRAINT {SHADOW}_pkey TO tasks_pkey"))
        for name, _ in indexes:
            conn.execute(text(f"ALTER INDEX {name}_shadow RENAME TO {name}"))
    else:
        for _, definition in indexes:
            conn.execute(text(definition))


def _on_shadow(definition: str, name: str) -> str:
    """The live index's definition, for the shadow table under a name of its own.

    pg_indexes qualifies the table with its schema, whichever it is (public or another).
    """
    renamed, found = re.subn(
        rf"INDEX {re.escape(name)} ON ((?:\S+\.)?)tasks ",
        rf"INDEX {name}_shadow ON \g<1>{SHADOW} ",
        definition,
        count=1,
    )
    if not found:
        raise RebuildAborted(f"cannot read the definition of index {name}: {definition}")
    return renamed


def _lock_refused(error: DBAPIError) -> bool:
    return getattr(error.orig, "sqlstate", None) == "55P03" or "locked" in str(error.orig)


def _postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"
