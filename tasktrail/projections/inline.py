"""The inline projector: the only writer of the `tasks` read model on the request path.

It writes the whole row from the state that `evolve` folded, in the transaction of the append, so
the read model never holds anything a replay of the log would not give: the columns that queries
filter and sort on, and the task's served JSON document and ETag (document.py), which reads send
as they are.
"""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any

from sqlalchemy import Connection, Insert

from tasktrail.database import dialect_insert
from tasktrail.projections.document import task_document
from tasktrail.projections.state import TaskState
from tasktrail.schema import tasks

# The columns of `tasks` in table order: the order of `task_values`.
TASK_COLUMNS: tuple[str, ...] = tuple(column.name for column in tasks.c)


def task_values(state: TaskState) -> tuple[Any, ...]:
    """The `tasks` row for a state, in `TASK_COLUMNS` order, folded columns included
    (str.casefold, on both engines), its document and ETag last. The id is text; the lists are
    lists."""
    description = state.description
    body, etag = task_document(state)
    return (
        state.id,
        state.user_id,
        state.title,
        state.title.casefold(),
        description,
        None if description is None else description.casefold(),
        state.completed,
        state.due_at,
        state.priority,
        list(state.tags),
        [tag.casefold() for tag in state.tags],
        state.created_at,
        state.updated_at,
        state.completed_at,
        state.deleted_at,
        state.version,
        state.last_seq,
        body,
        etag,
    )


def task_row(state: TaskState) -> dict[str, Any]:
    """The `tasks` row for a state, by column name, as SQLAlchemy writes it (the id a UUID)."""
    row = dict(zip(TASK_COLUMNS, task_values(state), strict=True))
    row["id"] = uuid.UUID(state.id)
    return row


def apply(conn: Connection, state: TaskState) -> None:
    """Write the task's whole row (insert or replace), in the caller's transaction."""
    conn.execute(_upsert(conn.dialect.name), task_row(state))


@cache
def _upsert(dialect: str) -> Insert:
    """The whole row, inserted or replaced; built once per engine kind, reused with new values."""
    insert = dialect_insert(dialect, tasks)
    return insert.on_conflict_do_update(
        index_elements=[tasks.c.id],
        set_={
            column.name: insert.excluded[column.name] for column in tasks.c if column.name != "id"
        },
    )


def upsert_statement(dialect: str) -> Insert:
    """The projector's upsert (parameters: `task_row`), for the async write path to compile."""
    return _upsert(dialect)
