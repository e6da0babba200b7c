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

What is sent is what the projector stored: each task's JSON document (`tasks.body`) and ETag.
A read selects the columns that place a task and the document, and builds nothing per task.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    and_,
    exists,
    func,
    literal,
    or_,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import KeyedColumnElement
from sqlalchemy.types import NullType

from tasktrail.domain.document import TaskDocument
from tasktrail.domain.events import Event
from tasktrail.domain.evolve import fold
from tasktrail.domain.state import TaskState
from tasktrail.events.store import event_columns, event_from_row
from tasktrail.queries.list_query import (
    KeysetPosition,
    ListTasks,
    Sort,
    SortField,
    StatusFilter,
    compare_positions,
    sort_value,
    walk_order,
)
from tasktrail.schema import events, tasks, user_streams

SORT_COLUMNS: dict[SortField, KeyedColumnElement[Any]] = {
    SortField.CREATED: tasks.c.created_at,
    SortField.UPDATED: tasks.c.updated_at,
    SortField.TITLE: tasks.c.title_folded,
    SortField.DUE: tasks.c.due_at,
    SortField.PRIORITY: tasks.c.priority,
}


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
    filters = _filters(conn, query)
    column = SORT_COLUMNS[query.sort.field]
    # Tasks unchanged since the snapshot: their current key is their key in the walk. What
    # places a task (its key and id) and what is sent (its document) is all that is read.
    unchanged = select(as_read(column), as_read(tasks.c.id), tasks.c.body).where(
        *filters, tasks.c.last_seq <= snapshot
    )
    if query.after is not None:
        unchanged = unchanged.where(_after(column, query.sort, query.after))
    # One row more than asked tells whether another page follows.
    rows = conn.execute(unchanged.order_by(*walk_order_by(query.sort)).limit(query.limit + 1)).all()
    place = placer(conn.dialect, column)
    changed = _changed_since(conn, query, filters, column, snapshot)
    total = conn.execute(select(func.count()).select_from(tasks).where(*filters)).scalar_one()
    if changed:
        walk = _merged([(place(row), row[2]) for row in rows], changed, query)
        bodies = [body for _, body in walk[: query.limit]]
        ends_page = walk[query.limit - 1][0] if len(walk) > query.limit else None
    else:  # the usual page: SQL's order is the walk's, only the last row's place is needed
        bodies = [row[2] for row in rows[: query.limit]]
        ends_page = place(rows[query.limit - 1]) if len(rows) > query.limit else None
    return DocumentPage(",".join(bodies), total, next_position=ends_page, snapshot_seq=snapshot)


# A task in the walk: where it stands, and its document.
_Placed = tuple[KeysetPosition, str]


def walk_order_by(sort: Sort) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """The walk's order in SQL: the sort key, then the id in the same direction."""
    column = SORT_COLUMNS[sort.field]
    key = column.desc() if sort.descending else column.asc()
    if sort.field is SortField.DUE:
        key = key.nulls_last()  # tasks without a due date come last in both directions
    return key, tasks.c.id.desc() if sort.descending else tasks.c.id.asc()


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
    conn: Connection,
    query: ListTasks,
    filters: list[ColumnElement[bool]],
    column: KeyedColumnElement[Any],
    snapshot: int,
) -> list[_Placed]:
    """Matching tasks changed after the snapshot, placed by their key as of the snapshot.

    Usually none or a few: only what the user changed while walking.
    """
    rows = conn.execute(
        select(column, tasks.c.id, tasks.c.body).where(*filters, tasks.c.last_seq > snapshot)
    ).all()
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


def _after(
    column: KeyedColumnElement[Any], sort: Sort, position: KeysetPosition
) -> ColumnElement[bool]:
    """The rows that follow `position` in the sort order (ties broken by id, same direction)."""
    task_id = literal(uuid.UUID(position.task_id), tasks.c.id.type)
    id_follows = tasks.c.id < task_id if sort.descending else tasks.c.id > task_id
    if position.value is None:  # only `due` has nulls: the last group, ordered by id
        return and_(column.is_(None), id_follows)
    value = literal(position.value, column.type)
    # A row-value comparison, which both engines answer from the (user_id, key, id) index.
    pair = tuple_(column, tasks.c.id)
    follows = pair < tuple_(value, task_id) if sort.descending else pair > tuple_(value, task_id)
    if sort.field is SortField.DUE:
        return or_(follows, column.is_(None))
    return follows


def _filters(conn: Connection, query: ListTasks) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = [tasks.c.user_id == query.user_id]
    if query.status is StatusFilter.DELETED:
        filters.append(tasks.c.deleted_at.is_not(None))
    else:
        filters.append(tasks.c.deleted_at.is_(None))
    if query.status is StatusFilter.PENDING:
        filters.append(tasks.c.completed.is_(False))
    elif query.status is StatusFilter.COMPLETED:
        filters.append(tasks.c.completed.is_(True))
    if query.q:
        needle = query.q.casefold()
        filters.append(
            or_(
                tasks.c.title_folded.contains(needle, autoescape=True),
                tasks.c.description_folded.contains(needle, autoescape=True),
            )
        )
    filters.extend(_has_tag(conn, tag.casefold()) for tag in query.tags)
    if query.due_after is not None:
        filters.append(tasks.c.due_at >= query.due_after)  # inclusive
    if query.due_before is not None:
        filters.append(tasks.c.due_at < query.due_before)  # exclusive
    return filters


def _has_tag(conn: Connection, folded_tag: str) -> ColumnElement[bool]:
    if conn.dialect.name == "postgresql":
        # jsonb containment, checked on the user's own rows that the user_id index found.
        return tasks.c.tags_folded.op("@>")(literal([folded_tag], JSONB))
    elements = func.json_each(tasks.c.tags_folded).table_valued("value")
    return exists(select(1).select_from(elements).where(elements.c.value == folded_tag))
