"""List and get tasks from the read model, always within one user's rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, func, literal, select, tuple_

from tasktrail.projections.state import TaskState
from tasktrail.schema import tasks


class StatusFilter(StrEnum):
    ALL = "all"
    PENDING = "pending"
    COMPLETED = "completed"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class ListTasks:
    """A page of a user's live (or deleted) tasks, newest first; `after` is the last seen (created_at, id)."""

    user_id: str
    status: StatusFilter = StatusFilter.ALL
    limit: int = 100
    after: tuple[datetime, str] | None = None


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: list[TaskState]
    total: int
    has_more: bool


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
    filters = _filters(query)
    statement = select(tasks).where(*filters)
    if query.after is not None:
        created_at, task_id = query.after
        statement = statement.where(
            # A row-value comparison, which both engines answer from ix_tasks_user_created.
            tuple_(tasks.c.created_at, tasks.c.id)
            < tuple_(
                literal(created_at, tasks.c.created_at.type),
                literal(uuid.UUID(task_id), tasks.c.id.type),
            )
        )
    # One row more than asked tells whether another page follows.
    statement = statement.order_by(tasks.c.created_at.desc(), tasks.c.id.desc()).limit(
        query.limit + 1
    )
    rows = conn.execute(statement).all()
    total = conn.execute(select(func.count()).select_from(tasks).where(*filters)).scalar_one()
    return TaskPage(
        tasks=[state_from_row(row) for row in rows[: query.limit]],
        total=total,
        has_more=len(rows) > query.limit,
    )


def _filters(query: ListTasks) -> list[ColumnElement[bool]]:
    if query.status is StatusFilter.DELETED:
        return [tasks.c.user_id == query.user_id, tasks.c.deleted_at.is_not(None)]
    filters = [tasks.c.user_id == query.user_id, tasks.c.deleted_at.is_(None)]
    if query.status is StatusFilter.PENDING:
        filters.append(tasks.c.completed.is_(False))
    elif query.status is StatusFilter.COMPLETED:
        filters.append(tasks.c.completed.is_(True))
    return filters


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
    )
