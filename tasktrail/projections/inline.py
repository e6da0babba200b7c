"""The inline projector: the only writer of the `tasks` read model on the request path.

It writes the whole row from the state that `evolve` folded, in the transaction of the append, so
the read model never holds anything a replay of the log would not give.
"""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any

from sqlalchemy import Connection, Insert

from tasktrail.database import dialect_insert
from tasktrail.projections.state import TaskState
from tasktrail.schema import tasks


def task_row(state: TaskState) -> dict[str, Any]:
    """The `tasks` row for a state, folded columns included (str.casefold, on both engines)."""
    return {
        "id": uuid.UUID(state.id),
        "user_id": state.user_id,
        "title": state.title,
        "title_folded": state.title.casefold(),
        "description": state.description,
        "description_folded": None if state.description is None else state.description.casefold(),
        "completed": state.completed,
        "due_at": state.due_at,
        "priority": state.priority,
        "tags": list(state.tags),
        "tags_folded": [tag.casefold() for tag in state.tags],
        "created_at": state.created_at,
        "updated_at": state.updated_at,
        "completed_at": state.completed_at,
        "deleted_at": state.deleted_at,
        "version": state.version,
        "last_seq": state.last_seq,
    }


def apply(conn: Connection, state: TaskState) -> None:
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
