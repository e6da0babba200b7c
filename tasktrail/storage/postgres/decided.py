"""A command decided on PostgreSQL, ready for `tasktrail_append`: on a snapshot, or under the lock.

A write is first decided on the task's row read without a lock (`on_snapshot`): one statement,
none for a create, whose id is new. The function it is sent to checks that the snapshot still
holds: the task's last version is the one decided on, and the stream's last event is not later
than this write's clock, so `occurred_at` never decreases along `seq`. When it does not (another
write of the same task, or of the same user with a later clock, came first), nothing is written
and the write is decided again `under_the_lock`: in a transaction that has taken the user's
stream, on the row when it is the fold of the log and on the fold otherwise. Either way the
events go to the database numbered but not linked (`numbered_events`): it links and hashes them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row, namedtuple_row
from sqlalchemy import bindparam, select

from tasktrail.domain.chain import GENESIS_HASH
from tasktrail.domain.commands import Command, CreateTask
from tasktrail.domain.evolve import fold
from tasktrail.domain.state import TaskState
from tasktrail.events.store import (
    StreamHead,
    event_columns,
    event_from_row,
    lock_statement,
)
from tasktrail.pg_pool import AsyncConnection, compile_statement, in_scope
from tasktrail.projections.snapshot import snapshot_statement, state_from_row
from tasktrail.row_security import DatabaseScope
from tasktrail.schema import events
from tasktrail.storage.decision import decision
from tasktrail.storage.port import Clock, Outcome, system_clock

_SNAPSHOT = compile_statement(snapshot_statement())
_LOCK = compile_statement(lock_statement("postgresql"))
_TASK_STREAM = compile_statement(
    select(*event_columns())
    .where(events.c.task_id == bindparam("task_id"), events.c.user_id == bindparam("user_id"))
    .order_by(events.c.version)
)
# Where a snapshot's events are numbered from: the database renumbers them after the real head.
_UNKNOWN_HEAD_SEQ = 0


@dataclass(frozen=True, slots=True)
class Decided:
    """A command decided: the state before, the events to append (numbered, not linked), and
    the outcome the answer is made from (its state's `last_seq` is the database's to set; the
    document does not depend on it)."""

    command: Command
    before: TaskState | None
    outcome: Outcome


async def on_snapshot(
    conn: AsyncConnection, command: Command, clock: Clock = system_clock
) -> Decided | None:
    """Read the task (no lock), decide and fold. None when the row is not the fold of the log
    (a drifted read model, or a task with no row): deciding under the lock folds the stream.
    Domain errors are raised as `decide` raises them."""
    before: TaskState | None = None
    if not isinstance(command, CreateTask):
        user_id = command.context.user_id
        cursor = conn.cursor(row_factory=namedtuple_row)
        async with in_scope(conn, DatabaseScope(user_id=user_id)):
            await cursor.execute(_SNAPSHOT.sql, _task_of(command))
        row: Any = await cursor.fetchone()  # a named tuple of the snapshot's columns
        # No row (no task of this user's, or a task whose row is missing) or a row that is not
        # the fold of the log: under the lock, the log tells them apart.
        if row is None or row.version != row.stream_version:
            return None
        before = state_from_row(row)
    head = StreamHead(command.context.user_id, _UNKNOWN_HEAD_SEQ, GENESIS_HASH, None)
    return _decided(command, before, head, clock)


async def under_the_lock(
    conn: AsyncConnection, command: Command, clock: Clock = system_clock
) -> Decided:
    """Take the user's stream, read the task, decide. Call it in a transaction, in a pipeline,
    after the user's scope is set: the lock and the row go in one round trip, and the lock is
    held until the transaction ends, so the decision still holds when `tasktrail_append` runs."""
    user_id = command.context.user_id
    lock = await conn.execute(_LOCK.sql, _LOCK.params({"user_id": user_id}))
    snapshot = None
    if not isinstance(command, CreateTask):
        snapshot = conn.cursor(row_factory=namedtuple_row)
        await snapshot.execute(_SNAPSHOT.sql, _task_of(command))
    locked = await lock.fetchone()
    if locked is None:
        raise RuntimeError("the stream upsert returned no row")
    head = StreamHead(user_id, locked[0], locked[1], locked[2])
    before = None if snapshot is None else await _current(conn, await snapshot.fetchone(), command)
    return _decided(command, before, head, clock)


def _decided(command: Command, before: TaskState | None, head: StreamHead, clock: Clock) -> Decided:
    # The clock is read after the lock, when there is one.
    return Decided(command, before, decision(command, before, head, clock()))


def _task_of(command: Command) -> dict[str, Any]:
    return _SNAPSHOT.params(
        {"task_id": uuid.UUID(command.task_id), "user_id": command.context.user_id}
    )


async def _current(conn: AsyncConnection, row: Any, command: Command) -> TaskState | None:
    """The row when it is the fold of the log (its version is the stream's), else the fold."""
    if row is not None and row.version == row.stream_version:
        return state_from_row(row)
    stream = conn.cursor(row_factory=dict_row)
    await stream.execute(
        _TASK_STREAM.sql,
        _TASK_STREAM.params(
            {"task_id": uuid.UUID(command.task_id), "user_id": command.context.user_id}
        ),
    )
    return fold(event_from_row(each) for each in await stream.fetchall())
