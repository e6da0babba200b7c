"""The long way of a write on PostgreSQL's async pool: the same transaction in two round trips.

A write first tries in_one_round_trip.py (decided on the unlocked row, applied by one database
call); it comes here when that row moved meanwhile, when the row is not the fold of the log, or
when a keyed write is refused and its key may hold an answer to replay.

`handlers.handle` runs a write on a SQLAlchemy connection in a worker thread, one statement per
round trip. This is the same work, in the same order and under the same lock, on the event loop
through psycopg (tasktrail/pg_pool.py), written to run inside a pipeline (`conn.pipeline()`):
statements whose answers are not needed yet are queued, not awaited. So a write costs two round
trips: one that takes the user's stream and reads the task's row, and the commit, which carries
the appended events, the new head and the task's row. `decide`, the hash chain (`seal_events`)
and `evolve` are the very functions the other path calls.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from functools import reduce
from typing import Any

from psycopg.rows import dict_row, namedtuple_row
from psycopg.types.json import Jsonb
from sqlalchemy import JSON, Table, bindparam, select

from tasktrail.commands.decide import decide
from tasktrail.commands.handlers import Clock, Outcome, system_clock
from tasktrail.commands.types import Command, CreateTask
from tasktrail.events.store import (
    StreamHead,
    event_columns,
    event_from_row,
    event_row,
    lock_statement,
    move_head_statement,
    moved_head,
    seal_events,
)
from tasktrail.pg_pool import AsyncConnection, CompiledStatement, compile_statement
from tasktrail.projections import inline
from tasktrail.projections.evolve import evolve, fold
from tasktrail.projections.snapshot import snapshot_statement, state_from_row
from tasktrail.projections.state import TaskState
from tasktrail.schema import events, tasks

_LOCK = compile_statement(lock_statement("postgresql"))
_SNAPSHOT = compile_statement(snapshot_statement())
# The columns an append writes (`event_row`); position and xact_id are the database's to fill.
_APPENDED_COLUMNS = tuple(
    column.name for column in events.c if column.name not in ("position", "xact_id")
)
_APPEND = compile_statement(
    events.insert().values({name: bindparam(name) for name in _APPENDED_COLUMNS})
)
_MOVE_HEAD = compile_statement(move_head_statement())
_PROJECT = compile_statement(inline.upsert_statement("postgresql"))
_TASK_STREAM = compile_statement(
    select(*event_columns())
    .where(events.c.task_id == bindparam("task_id"), events.c.user_id == bindparam("user_id"))
    .order_by(events.c.version)
)


def _json_columns(table: Table) -> frozenset[str]:
    return frozenset(column.name for column in table.c if isinstance(column.type, JSON))


# psycopg sends a Python list as a PostgreSQL array; these columns are jsonb, so their values go
# wrapped. (SQLAlchemy's engine does this by column type; here it is done by name, once.)
_EVENT_JSON = _json_columns(events)
_TASK_JSON = _json_columns(tasks)


def _with_json(row: Mapping[str, Any], json_columns: frozenset[str]) -> dict[str, Any]:
    return {name: Jsonb(value) if name in json_columns else value for name, value in row.items()}


async def _run(
    conn: AsyncConnection, statement: CompiledStatement, values: Mapping[str, Any]
) -> None:
    """Queue a statement whose answer nobody reads (in a pipeline, it goes with the next sync)."""
    await conn.execute(statement.sql, statement.params(values))


async def handle_on_postgres(
    conn: AsyncConnection, command: Command, clock: Clock = system_clock
) -> Outcome:
    """`handlers.handle` on psycopg: call it inside `conn.transaction()`, in a pipeline."""
    context = command.context
    lock = await conn.execute(_LOCK.sql, _LOCK.params({"user_id": context.user_id}))
    snapshot = None
    if not isinstance(command, CreateTask):  # a new task's id was made a moment ago
        snapshot = conn.cursor(row_factory=namedtuple_row)
        await snapshot.execute(
            _SNAPSHOT.sql,
            _SNAPSHOT.params({"task_id": uuid.UUID(command.task_id), "user_id": context.user_id}),
        )
    # The first round trip: the lock and the row, sent together, read here.
    locked = await lock.fetchone()
    if locked is None:
        raise RuntimeError("the stream upsert returned no row")
    head = StreamHead(context.user_id, locked[0], locked[1], locked[2])
    now = clock()  # after the lock, so that occurred_at follows the order writes are applied in
    state = (
        None
        if snapshot is None
        else await _current_state(conn, await snapshot.fetchone(), context.user_id, command)
    )
    new_events = decide(state, command)
    if not new_events:
        return Outcome(state, [])
    appended = seal_events(
        head,
        task_id=command.task_id,
        base_version=0 if state is None else state.version,
        new_events=new_events,
        now=now,
        actor=context.actor,
        request_id=context.request_id,
    )
    after = reduce(evolve, appended, state)
    if after is None:
        raise RuntimeError(f"events {appended} fold to no task")  # decide never asks for that
    # Queued, not awaited: they travel with the COMMIT.
    cursor = conn.cursor()
    await cursor.executemany(
        _APPEND.sql, [_APPEND.params(_with_json(event_row(each), _EVENT_JSON)) for each in appended]
    )
    await _run(conn, _MOVE_HEAD, moved_head(appended[-1]))
    await _run(conn, _PROJECT, _with_json(inline.task_row(after), _TASK_JSON))
    return Outcome(after, appended)


async def _current_state(
    conn: AsyncConnection, row: Any, user_id: str, command: Command
) -> TaskState | None:
    """The row when it is the fold of the log (its version is the stream's), else the fold."""
    if row is not None and row.version == row.stream_version:
        return state_from_row(row)
    stream = conn.cursor(row_factory=dict_row)
    await stream.execute(
        _TASK_STREAM.sql,
        _TASK_STREAM.params({"task_id": uuid.UUID(command.task_id), "user_id": user_id}),
    )
    return fold(event_from_row(each) for each in await stream.fetchall())
