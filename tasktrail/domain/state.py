"""A task as the log says it is: the state that `evolve` builds and `decide` reasons about."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class TaskState:
    id: str
    user_id: str
    title: str
    description: str | None
    completed: bool
    due_at: datetime | None
    priority: int
    tags: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    deleted_at: datetime | None
    version: int
    # The user's seq of the last event folded in: tells a paging client's snapshot which tasks
    # changed after it (queries/tasks.py).
    last_seq: int = 0

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def status(self) -> str:
        return "completed" if self.completed else "pending"
