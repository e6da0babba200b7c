"""Time travel: a user's tasks as they were at an instant, folded from the log with `evolve`.

An event belongs to the past of `instant` when its `occurred_at` is at or before it. The list
rules (filters, order, keyset paging) are the same as on the read model, applied in Python
(queries/list_query.py) to the folded states. The answer is what the API sends, as for the read
model: each folded state as the projector's own document (domain/document.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, select

from tasktrail.domain.document import TaskDocument, task_document
from tasktrail.domain.events import Event
from tasktrail.domain.evolve import fold
from tasktrail.domain.state import TaskState
from tasktrail.events.store import event_columns, event_from_row
from tasktrail.queries.list_query import (
    ListTasks,
    compare_positions,
    matches,
    position_of,
    walk_order,
)
from tasktrail.queries.tasks import DocumentPage
from tasktrail.schema import events


def task_as_of(
    conn: Connection, user_id: str, task_id: str, instant: datetime
) -> TaskDocument | None:
    """The task at `instant`, as the API sends it; None if it did not exist yet, or was deleted
    then."""
    rows = conn.execute(
        select(*event_columns())
        .where(
            events.c.user_id == user_id,
            events.c.task_id == uuid.UUID(task_id),
            events.c.occurred_at <= instant,
        )
        .order_by(events.c.version)
    )
    state = fold(event_from_row(row._mapping) for row in rows)
    return None if state is None or state.deleted else task_document(state)


def list_as_of(conn: Connection, query: ListTasks, instant: datetime) -> DocumentPage:
    """A page of the list as it was at `instant`."""
    rows = conn.execute(
        select(*event_columns())
        .where(events.c.user_id == query.user_id, events.c.occurred_at <= instant)
        .order_by(events.c.seq)
    )
    states = _fold_by_task(event_from_row(row._mapping) for row in rows)
    matching = [state for state in states if matches(state, query)]
    if query.after is not None:
        after = query.after
        matching_after = [
            state
            for state in matching
            if compare_positions(position_of(state, query.sort), after, query.sort) > 0
        ]
    else:
        matching_after = matching
    matching_after.sort(key=lambda state: walk_order(position_of(state, query.sort), query.sort))
    page = matching_after[: query.limit]
    more = len(matching_after) > query.limit
    return DocumentPage(
        documents=",".join(task_document(state).body for state in page),
        total=len(matching),
        next_position=position_of(page[-1], query.sort) if more else None,
        snapshot_seq=0,  # the past does not move: no snapshot to keep
    )


def _fold_by_task(history: Iterable[Event]) -> list[TaskState]:
    streams: dict[str, list[Event]] = {}
    for event in history:
        streams.setdefault(event.task_id, []).append(event)
    folded = (fold(stream) for stream in streams.values())
    return [state for state in folded if state is not None]
