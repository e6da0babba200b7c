"""A task's whole history, oldest first, also after it was deleted."""

from __future__ import annotations

from sqlalchemy import Connection

from tasktrail.domain.events import Event
from tasktrail.events.store import read_task_stream


def task_history(conn: Connection, user_id: str, task_id: str) -> list[Event]:
    """Empty when the task never existed for this user (another user's task included)."""
    return read_task_stream(conn, user_id, task_id)
