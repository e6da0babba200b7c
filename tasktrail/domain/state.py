"""A task as the log says it is: the state that `evolve` builds and `decide` reasons about.

Its fields are declared here, once: each attribute's type carries its `TaskField` (kind,
nullability, whether it is served, stored with a folded copy, editable, and its default), and
fields.py derives every list of a task's fields from these annotations, in this order, the order
of the served document's keys. The bounds of its values are stated here too, once: the request
bodies check them (api/contract/schemas.py) and the `tasks` table is sized by them (schema.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from tasktrail.domain.field_kinds import Kind, TaskField

# What a task may hold, in characters after trimming: a title 1 to TITLE_MAX, a description up to
# DESCRIPTION_MAX, each tag 1 to TAG_MAX, and at most TAGS_MAX tags; a priority from PRIORITY_MIN
# to PRIORITY_MAX. The migrations that made the table state them as they were then; a test holds
# the migrated table to these (tests/test_task_bounds.py).
TITLE_MAX = 200
DESCRIPTION_MAX = 1000
TAG_MAX = 50
TAGS_MAX = 20
PRIORITY_MIN = 0
PRIORITY_MAX = 3


@dataclass(frozen=True, slots=True)
class TaskState:
    id: Annotated[str, TaskField(kind=Kind.ID)]
    user_id: Annotated[str, TaskField(kind=Kind.TEXT)]
    title: Annotated[str, TaskField(kind=Kind.TEXT, folded=True, editable=True, default="")]
    description: Annotated[
        str | None, TaskField(kind=Kind.TEXT, nullable=True, folded=True, editable=True)
    ]
    completed: Annotated[bool, TaskField(kind=Kind.FLAG)]
    due_at: Annotated[datetime | None, TaskField(kind=Kind.INSTANT, nullable=True, editable=True)]
    priority: Annotated[int, TaskField(kind=Kind.INTEGER, editable=True, default=0)]
    tags: Annotated[
        tuple[str, ...], TaskField(kind=Kind.STRINGS, folded=True, editable=True, default=())
    ]
    created_at: Annotated[datetime, TaskField(kind=Kind.INSTANT)]
    updated_at: Annotated[datetime, TaskField(kind=Kind.INSTANT)]
    completed_at: Annotated[datetime | None, TaskField(kind=Kind.INSTANT, nullable=True)]
    deleted_at: Annotated[
        datetime | None, TaskField(kind=Kind.INSTANT, nullable=True, served=False)
    ]
    version: Annotated[int, TaskField(kind=Kind.INTEGER)]
    # The user's seq of the last event folded in: tells a paging client's snapshot which tasks
    # changed after it (queries/tasks.py).
    last_seq: Annotated[int, TaskField(kind=Kind.INTEGER, served=False)] = 0

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def status(self) -> str:
        return "completed" if self.completed else "pending"


# Served but not stored: a property of the state, served after the field it derives from.
DERIVED_FIELDS: tuple[tuple[str, TaskField], ...] = (
    (
        "completed",
        TaskField(
            name="status",
            kind=Kind.TEXT,
            stored=False,
            description="`completed` or `pending`, derived from `completed`",
        ),
    ),
)
