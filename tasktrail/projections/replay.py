"""Replay the log in bulk: every task's events, in (task, version) order, folded into its row.

The rebuild and the catch-ups under its fence read through here. Reading a million events is
its cost, so on PostgreSQL it goes straight to the driver with a server-side cursor and asks for
text where Python would otherwise build objects it does not need (the task id as text, not a
UUID; the data as JSON text for orjson). Events are read as `LoggedChange`, the columns that
folding reads and no more, and folded with the projector's own `fold`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from itertools import groupby
from operator import itemgetter
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, select

from tasktrail.domain.events import JsonObject
from tasktrail.domain.evolve import fold
from tasktrail.domain.state import TaskState
from tasktrail.schema import events

# A share of the tasks, by the last byte of their id (random in a UUIDv7, and in any other).
_PART_FILTER = "WHERE get_byte(uuid_send(task_id), 15) % {parts} = {part}"


class LoggedChange(NamedTuple):
    """An event as folding sees it (a `FoldableEvent`): cheaper to build than an `Event`."""

    task_id: str
    user_id: str
    seq: int
    version: int
    type: str
    schema_version: int
    data: JsonObject
    occurred_at: datetime


# Each of LoggedChange's fields (in its order) as COPY's binary format reads it: binary values
# carry no type, and a smallint read as int4 would be a wrong number, not an error. The query
# casts every column to it. tests/test_replay_reader.py holds the keys to LoggedChange.
_POSTGRES_TYPES = {
    "task_id": "text",
    "user_id": "text",
    "seq": "int8",
    "version": "int4",
    "type": "text",
    "schema_version": "int4",
    "data": "text",
    "occurred_at": "timestamptz",
}
_CAST_COLUMNS = ", ".join(f"{column}::{kind}" for column, kind in _POSTGRES_TYPES.items())
_POSTGRES_QUERY = (
    f"SELECT {_CAST_COLUMNS} FROM events {{where}} "  # noqa: S608 - names of our own, no input
    "ORDER BY events.task_id, events.version"
)


def replayed_tasks(
    conn: Connection,
    task_ids: Sequence[str] | None = None,
    *,
    part: tuple[int, int] = (0, 1),
) -> Iterator[tuple[str, TaskState | None, int]]:
    """(task id, its folded state or None, how many events it has), task by task.

    The tasks of `task_ids`, or else all of them, or on PostgreSQL the share `part` = (k, n)
    of them (one of n disjoint shares, for n readers at once); as of the connection's snapshot.
    """
    by_task = itemgetter(0)  # a LoggedChange's task_id
    for task_id, stream in groupby(logged_changes(conn, task_ids, part=part), by_task):
        history = list(stream)
        yield task_id, fold(history), len(history)


def logged_changes(
    conn: Connection, task_ids: Sequence[str] | None = None, *, part: tuple[int, int] = (0, 1)
) -> Iterator[LoggedChange]:
    """The events `replayed_tasks` folds, in (task, version) order, as `LoggedChange`s."""
    if conn.dialect.name != "postgresql":
        return _portable_changes(conn, task_ids)
    if task_ids is not None:
        return _postgres_changes_of(conn, task_ids)
    return _postgres_log(conn, part)


def _postgres_log(conn: Connection, part: tuple[int, int]) -> Iterator[LoggedChange]:
    """A share of the whole log through COPY TO in binary: the server streams it while Python
    folds (a server-side cursor would make each wait for the other at every batch), in memory
    that does not grow, and the driver parses the binary in C."""
    k, n = part
    where = "" if n == 1 else _PART_FILTER.format(parts=int(n), part=int(k))
    driver: Any = conn.connection.driver_connection
    with (
        driver.cursor() as cursor,
        cursor.copy(
            f"COPY ({_POSTGRES_QUERY.format(where=where)}) TO STDOUT (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(list(_POSTGRES_TYPES.values()))
        yield from _from_postgres(copy.rows())


def _postgres_changes_of(conn: Connection, task_ids: Sequence[str]) -> Iterator[LoggedChange]:
    driver: Any = conn.connection.driver_connection
    with driver.cursor() as cursor:
        cursor.execute(
            _POSTGRES_QUERY.format(where="WHERE task_id = ANY(%s::uuid[])"), (list(task_ids),)
        )
        yield from _from_postgres(cursor)


def _from_postgres(rows: Iterable[tuple[Any, ...]]) -> Iterator[LoggedChange]:
    """Rows of `_POSTGRES_QUERY` as changes: the data is JSON text, parsed in one C call."""
    loads = orjson.loads
    for task_id, user_id, seq, version, kind, schema_version, data, at in rows:
        yield LoggedChange(task_id, user_id, seq, version, kind, schema_version,
                           loads(data), at)  # fmt: skip


def _portable_changes(conn: Connection, task_ids: Iterable[str] | None) -> Iterator[LoggedChange]:
    query = select(*(events.c[name] for name in LoggedChange._fields)).order_by(
        events.c.task_id, events.c.version
    )
    if task_ids is not None:
        query = query.where(events.c.task_id.in_([uuid.UUID(task) for task in task_ids]))
    rows = conn.execution_options(yield_per=5_000).execute(query)
    for task_id, *rest in rows:
        yield LoggedChange(str(task_id), *rest)
