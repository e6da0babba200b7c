"""List and get tasks from the read model, always within one user's rows.

Every sort is a keyset walk over `(sort key, id)`, served by an index that starts with
`user_id`, so a page costs the same on the first page and the thousandth, and a task created or
deleted between pages never shifts the others.

A task edited between pages keeps its place in the walk. The first page notes the user's seq
(the walk's snapshot); a task whose `last_seq` is higher changed since, so its place is its sort
key as of the snapshot, folded from the log, while its document is the current one. So a task
that exists and matches throughout is seen exactly once, whatever is renamed, rescheduled or
reprioritised meanwhile. Case folding (`title`, `q`, `tag`) uses the
`*_folded` columns that the projector fills with Python's `str.casefold()`, so both engines
compare exactly the same text.

Which rows a list selects, their order and where a later page resumes are `queries.list_sql`'s
conditions, with every value a bind parameter; PostgreSQL's one-statement list
(`queries.hot_list`) is built from the same ones. `list_tasks` builds its statements once per
shape of query and engine and reuses them, so a request only supplies the parameters.

What is sent is what the projector stored: each task's JSON document (`tasks.body`) and ETag.
A read selects the columns that place a task and the document, and builds nothing per task.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Dialect, Result, Select, bindparam, func, select, type_coerce
from sqlalchemy.sql.elements import ColumnElement, KeyedColumnElement
from sqlalchemy.types import NullType

from tasktrail.domain.document import TaskDocument
from tasktrail.domain.events import Event
from tasktrail.domain.evolve import fold
from tasktrail.domain.state import TaskState
from tasktrail.events.store import event_columns, event_from_row
from tasktrail.queries.list_query import (
    KeysetPosition,
    ListTasks,
    compare_positions,
    sort_value,
    walk_order,
)
from tasktrail.queries.list_sql import (
    SORT_COLUMNS,
    ListShape,
    after,
    filters,
    shape_of,
    values,
    walk_order_by,
)
from tasktrail.schema import events, tasks, user_streams


def get_task(conn: Connection, user_id: str, task_id: str) -> TaskDocument | None:
    """One live task of this user, as the API sends it (its stored document and ETag); None
    when it is missing, deleted, or someone else's."""
    row = conn.execute(
        select(tasks.c.body, tasks.c.etag).where(
            tasks.c.id == uuid.UUID(task_id),
            tasks.c.user_id == user_id,
            tasks.c.deleted_at.is_(None),
        )
    ).one_or_none()
    return None if row is None else TaskDocument(row.body, row.etag)


@dataclass(frozen=True, slots=True)
class DocumentPage:
    """A page of the list: each task's JSON document, in the walk's order, and where it ends."""

    # The page's task documents in the walk's order, joined by commas: the inside of the JSON
    # array the API sends (PostgreSQL's native list has the database join them).
    documents: str
    total: int
    next_position: KeysetPosition | None
    snapshot_seq: int


def list_tasks(conn: Connection, query: ListTasks) -> DocumentPage:
    """A page of the user's tasks: stored documents, placed in the walk by their sort key."""
    snapshot = query.snapshot_seq
    if snapshot is None:
        snapshot = _current_seq(conn, query.user_id)  # read before the rows: see the docstring
    statements = _statements(shape_of(query), conn.dialect.name)
    parameters = values(query)
    parameters["snapshot"] = snapshot
    rows = conn.execute(statements.unchanged, parameters).all()
    place = placer(conn.dialect, SORT_COLUMNS[query.sort.field])
    changed = _changed_since(conn, query, conn.execute(statements.changed, parameters), snapshot)
    total = conn.execute(statements.total, parameters).scalar_one()
    if changed:
        walk = _merged([(place(row), row[2]) for row in rows], changed, query)
        bodies = [body for _, body in walk[: query.limit]]
        ends_page = walk[query.limit - 1][0] if len(walk) > query.limit else None
    else:  # the usual page: SQL's order is the walk's, only the last row's place is needed
        bodies = [row[2] for row in rows[: query.limit]]
        ends_page = place(rows[query.limit - 1]) if len(rows) > query.limit else None
    return DocumentPage(",".join(bodies), total, next_position=ends_page, snapshot_seq=snapshot)


@dataclass(frozen=True, slots=True)
class _Statements:
    """`list_tasks`'s statements for one shape of query, with `queries.list_sql`'s parameters
    and `snapshot`, the walk's snapshot."""

    # Tasks unchanged since the snapshot, from where the page resumes, one row more than the
    # page shows: their current key is their key in the walk. What places a task (its key and
    # id) and what is sent (its document) is all that is read.
    unchanged: Select[Any, Any, str]
    # Every matching task changed since the snapshot, wherever it stands in the walk: its key
    # as of the snapshot decides that.
    changed: Select[Any, uuid.UUID, str]
    total: Select[int]


@lru_cache(maxsize=256)
def _statements(shape: ListShape, dialect_name: str) -> _Statements:
    """The statements of one shape of query on one engine, built on its first request: the
    statement objects are reused, so SQLAlchemy finds their compiled form in its cache without
    building them or their cache key again."""
    conditions = filters(shape, dialect_name)
    column = SORT_COLUMNS[shape.sort.field]
    snapshot = bindparam("snapshot", type_=tasks.c.last_seq.type)
    unchanged = select(as_read(column), as_read(tasks.c.id), tasks.c.body).where(
        *conditions, tasks.c.last_seq <= snapshot
    )
    if shape.resume != "start":
        unchanged = unchanged.where(after(shape))
    return _Statements(
        unchanged=unchanged.order_by(*walk_order_by(shape.sort)).limit(bindparam("limit")),
        changed=select(column, tasks.c.id, tasks.c.body).where(
            *conditions, tasks.c.last_seq > snapshot
        ),
        total=select(func.count()).select_from(tasks).where(*conditions),
    )


# A task in the walk: where it stands, and its document.
_Placed = tuple[KeysetPosition, str]


def as_read(column: KeyedColumnElement[Any]) -> ColumnElement[Any]:
    """The column as the driver hands it over, without its type's result processing: converting
    the key and id of every row of a page was most of its Python time, and the walk needs the
    place of one row (the last), or of every row only when changed tasks are merged in."""
    return type_coerce(column, NullType())


def placer(
    dialect: Dialect, column: KeyedColumnElement[Any]
) -> Callable[[Sequence[Any]], KeysetPosition]:
    """A row's place in the walk from its key and id as `as_read` read them, converted by the
    columns' own types (aware UTC datetimes, UUIDs; on SQLite, from their text)."""
    key = _processor(dialect, column)
    task_id = _processor(dialect, tasks.c.id)
    return lambda row: KeysetPosition(key(row[0]), str(task_id(row[1])))


def _processor(dialect: Dialect, column: KeyedColumnElement[Any]) -> Callable[[Any], Any]:
    processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
    return processor if processor is not None else _unchanged


def _unchanged(value: Any) -> Any:
    return value


def _merged(unchanged: list[_Placed], changed: list[_Placed], query: ListTasks) -> list[_Placed]:
    """The walk with the changed tasks in it, in the sort's order.

    At READ COMMITTED a task may commit a change between the two reads and come back from both;
    the changed copy is placed by its key as of the snapshot, so it takes the place.
    """
    seen_changed = {position.task_id for position, _ in changed}
    walk = [entry for entry in unchanged if entry[0].task_id not in seen_changed]
    walk.extend(changed)
    walk.sort(key=lambda entry: walk_order(entry[0], query.sort))
    return walk


def _current_seq(conn: Connection, user_id: str) -> int:
    seq = conn.execute(
        select(user_streams.c.last_seq).where(user_streams.c.user_id == user_id)
    ).scalar_one_or_none()
    return 0 if seq is None else int(seq)


def _changed_since(
    conn: Connection, query: ListTasks, result: Result[Any, uuid.UUID, str], snapshot: int
) -> list[_Placed]:
    """The matching tasks changed after the snapshot (`result`) that follow where the page
    resumes, placed by their key as of the snapshot.

    Usually none or a few: only what the user changed while walking.
    """
    rows = result.all()
    if not rows:
        return []
    then = _states_at(conn, query.user_id, [row.id for row in rows], snapshot)
    placed: list[_Placed] = []
    for current_value, task_id, body in rows:
        past = then.get(str(task_id))
        # A task made after the snapshot has no past: it takes its place by its current key.
        value = current_value if past is None else sort_value(past, query.sort.field)
        position = KeysetPosition(value, str(task_id))
        if query.after is None or compare_positions(position, query.after, query.sort) > 0:
            placed.append((position, body))
    return placed


def _states_at(
    conn: Connection, user_id: str, task_ids: list[uuid.UUID], seq: int
) -> dict[str, TaskState]:
    """The tasks as the log had them at the user's `seq` (absent: they did not exist yet)."""
    history = conn.execute(
        select(*event_columns())
        .where(events.c.user_id == user_id, events.c.task_id.in_(task_ids), events.c.seq <= seq)
        .order_by(events.c.task_id, events.c.version)
    ).all()
    streams: dict[str, list[Event]] = {}
    for row in history:
        event = event_from_row(row._mapping)
        streams.setdefault(event.task_id, []).append(event)
    states = {task_id: fold(stream) for task_id, stream in streams.items()}
    return {task_id: state for task_id, state in states.items() if state is not None}
