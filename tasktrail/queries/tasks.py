"""List and get tasks from the read model, always within one user's rows.

Every sort is a keyset walk over `(sort key, id)`, served by an index that starts with
`user_id`, so a page costs the same on the first page and the thousandth, and a task created or
deleted between pages never shifts the others.

A task edited between pages keeps its place in the walk. The first page notes the user's seq
(the walk's snapshot); a task whose `last_seq` is higher changed since, so its place is its sort
key as of the snapshot, folded from the log, while its body is the current one. So a task that
exists and matches throughout is seen exactly once, whatever is renamed, rescheduled or
reprioritised meanwhile. Case folding (`title`, `q`, `tag`) uses the
`*_folded` columns that the projector fills with Python's `str.casefold()`, so both engines
compare exactly the same text.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    and_,
    exists,
    func,
    literal,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import KeyedColumnElement

from tasktrail.events.store import event_columns, event_from_row
from tasktrail.events.types import Event
from tasktrail.projections.evolve import fold
from tasktrail.projections.state import TaskState
from tasktrail.queries.list_query import (
    KeysetPosition,
    ListTasks,
    Sort,
    SortField,
    StatusFilter,
    TaskPage,
    compare_positions,
    sort_value,
    walk_order,
)
from tasktrail.schema import events, tasks, user_streams

_SORT_COLUMNS: dict[SortField, KeyedColumnElement[Any]] = {
    SortField.CREATED: tasks.c.created_at,
    SortField.UPDATED: tasks.c.updated_at,
    SortField.TITLE: tasks.c.title_folded,
    SortField.DUE: tasks.c.due_at,
    SortField.PRIORITY: tasks.c.priority,
}


def get_task(conn: Connection, user_id: str, task_id: str) -> TaskState | None:
    """One live task of this user; None when it is missing, deleted, or someone else's."""
    row = conn.execute(
        select(tasks).where(
            tasks.c.id == uuid.UUID(task_id),
            tasks.c.user_id == user_id,
            tasks.c.deleted_at.is_(None),
        )
    ).one_or_none()
    return None if row is None else state_from_row(row)


def list_tasks(conn: Connection, query: ListTasks) -> TaskPage:
    snapshot = query.snapshot_seq
    if snapshot is None:
        snapshot = _current_seq(conn, query.user_id)  # read before the rows: see the docstring
    filters = _filters(conn, query)
    column = _SORT_COLUMNS[query.sort.field]
    key = column.desc() if query.sort.descending else column.asc()
    if query.sort.field is SortField.DUE:
        key = key.nulls_last()  # tasks without a due date come last in both directions
    order = (key, tasks.c.id.desc() if query.sort.descending else tasks.c.id.asc())
    # Tasks unchanged since the snapshot: their current key is their key in the walk.
    unchanged = select(tasks).where(*filters, tasks.c.last_seq <= snapshot)
    if query.after is not None:
        unchanged = unchanged.where(_after(column, query.sort, query.after))
    # One row more than asked tells whether another page follows.
    rows = conn.execute(unchanged.order_by(*order).limit(query.limit + 1)).all()
    walk: list[tuple[KeysetPosition, TaskState]] = [
        (KeysetPosition(getattr(row, column.key), str(row.id)), state_from_row(row)) for row in rows
    ]
    changed = _changed_since(conn, query, filters, snapshot)
    if changed:
        # At READ COMMITTED a task may commit a change between the two reads and come back from
        # both; the changed copy is placed by its key as of the snapshot, so it takes the place.
        seen_changed = {state.id for _, state in changed}
        walk = [entry for entry in walk if entry[1].id not in seen_changed]
        walk.extend(changed)
    walk.sort(key=lambda entry: walk_order(entry[0], query.sort))
    del walk[query.limit + 1 :]
    total = conn.execute(select(func.count()).select_from(tasks).where(*filters)).scalar_one()
    next_position = walk[query.limit - 1][0] if len(walk) > query.limit else None
    return TaskPage(
        tasks=[state for _, state in walk[: query.limit]],
        total=total,
        next_position=next_position,
        snapshot_seq=snapshot,
    )


def _current_seq(conn: Connection, user_id: str) -> int:
    seq = conn.execute(
        select(user_streams.c.last_seq).where(user_streams.c.user_id == user_id)
    ).scalar_one_or_none()
    return 0 if seq is None else int(seq)


def _changed_since(
    conn: Connection, query: ListTasks, filters: list[ColumnElement[bool]], snapshot: int
) -> list[tuple[KeysetPosition, TaskState]]:
    """Matching tasks changed after the snapshot, placed by their key as of the snapshot.

    Usually none or a few: only what the user changed while walking.
    """
    rows = conn.execute(select(tasks).where(*filters, tasks.c.last_seq > snapshot)).all()
    if not rows:
        return []
    then = _states_at(conn, query.user_id, [row.id for row in rows], snapshot)
    placed = []
    for row in rows:
        now = state_from_row(row)
        # A task made after the snapshot has no past: it takes its place by its current key.
        position = KeysetPosition(sort_value(then.get(now.id) or now, query.sort.field), now.id)
        if query.after is None or compare_positions(position, query.after, query.sort) > 0:
            placed.append((position, now))
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


def state_from_row(row: Row[Any]) -> TaskState:
    return TaskState(
        id=str(row.id),
        user_id=row.user_id,
        title=row.title,
        description=row.description,
        completed=row.completed,
        due_at=row.due_at,
        priority=row.priority,
        tags=tuple(row.tags),
        created_at=row.created_at,
        updated_at=row.updated_at,
        completed_at=row.completed_at,
        deleted_at=row.deleted_at,
        version=row.version,
        last_seq=row.last_seq,
    )
