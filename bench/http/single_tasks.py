"""Tasks for the update scenarios at one user: one with a long history, one fresh.

The long history is written in seconds instead of minutes: the task is created through `handle`
(storage/sqlite/transaction.py, the SQLite adapter's transaction body, which the service runs
only on SQLite; here it writes PostgreSQL's same tables), and its next events are generated with
the rebuild benchmark's mix (`bench.common.task_mix`: title and priority changes, toggles,
deletes and restores, each event hashed and chained with `tasktrail.domain.chain`) and loaded
with COPY (`bench.common.event_rows`), in the same transaction, after which the projector writes
the task's row (`fold`, then `inline.apply`) and the stream's head moves to the last event: the
state as many writes through `handle` would have left, but the events' times are a minute apart,
ending before the benchmark sends its first PATCH.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import psycopg
import uuid_utils
from sqlalchemy import Connection, update

from bench.common.event_rows import EVENT_COLUMNS, copy_statement, event_line
from bench.common.task_mix import Draft, change
from bench.http.seeding import bench_settings
from tasktrail.database import create_database_engine, write_transaction
from tasktrail.domain.chain import data_hash, recompute_hash
from tasktrail.domain.commands import CommandContext, CreateTask, TaskFields
from tasktrail.domain.events import CURRENT_SCHEMA_VERSION, Event
from tasktrail.domain.evolve import fold
from tasktrail.events.store import read_task_stream
from tasktrail.projections import inline
from tasktrail.schema import user_streams
from tasktrail.storage.sqlite.transaction import handle

EVENT_SPACING = timedelta(minutes=1)


def create_task(database_url: str, secret: str, user_id: str, title: str) -> str:
    """One task, created through `handle` now; its id."""
    engine = create_database_engine(bench_settings(database_url, secret))
    try:
        with write_transaction(engine) as conn:
            return _create(conn, user_id, title, clock=lambda: datetime.now(UTC))
    finally:
        engine.dispose()


def _create(conn: Connection, user_id: str, title: str, clock: Callable[[], datetime]) -> str:
    task_id = str(uuid_utils.uuid7())  # as the API makes them
    command = CreateTask(
        context=CommandContext(user_id=user_id, actor=user_id, request_id=None),
        task_id=task_id,
        fields=TaskFields(title=title),
    )
    handle(conn, command, clock)
    return task_id


def seed_long_history(
    database_url: str, secret: str, user_id: str, events_total: int, seed: int = 1
) -> str:
    """A task of `user_id` with `events_total` events (its creation included), live at the end;
    its id. The user must have no events yet: its log is this task's."""
    rng = random.Random(seed)
    # The whole history in the past, a minute between events: the benchmark's PATCHes follow.
    first_at = datetime.now(UTC) - EVENT_SPACING * (events_total + 2)
    engine = create_database_engine(bench_settings(database_url, secret))
    try:
        with write_transaction(engine) as conn:
            task_id = _create(conn, user_id, "Renew the passport", clock=lambda: first_at)
            history = read_task_stream(conn, user_id, task_id)
            draft = Draft(
                task_id, version=1, title="Renew the passport", priority=0, completed=False
            )
            # One more event when the last one deleted the task: a PATCH needs a live task.
            while len(history) < events_total or draft.deleted:
                kind, data = change(draft, rng)  # the rebuild benchmark's mix; it updates the draft
                draft.version += 1
                previous = history[-1]
                unsealed = Event(
                    user_id=user_id,
                    seq=previous.seq + 1,
                    task_id=task_id,
                    version=draft.version,
                    type=kind,
                    schema_version=CURRENT_SCHEMA_VERSION,
                    data=data,
                    data_hash=data_hash(data),
                    occurred_at=first_at + EVENT_SPACING * len(history),
                    actor=user_id,
                    request_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    prev_hash=previous.hash,
                    hash="",
                )
                history.append(dataclasses.replace(unsealed, hash=recompute_hash(unsealed)))
            _copy_events(conn, history[1:])  # the first is the handler's, already written
            last = history[-1]
            conn.execute(
                update(user_streams)
                .where(user_streams.c.user_id == user_id)
                .values(last_seq=last.seq, head_hash=last.hash, last_occurred_at=last.occurred_at)
            )
            state = fold(history)
            assert state is not None
            assert not state.deleted
            inline.apply(conn, state)
        return task_id
    finally:
        engine.dispose()


def _copy_events(conn: Connection, new_events: list[Event]) -> None:
    # The driver's own connection, inside the transaction SQLAlchemy began: COPY is all or
    # nothing with the rest of the seed.
    raw = cast(psycopg.Connection[Any], conn.connection.dbapi_connection)
    with raw.cursor() as cursor, cursor.copy(copy_statement("events", EVENT_COLUMNS)) as copy:
        copy.write("".join(event_line(event) for event in new_events))
