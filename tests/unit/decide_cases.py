"""The givens and whens of the decide tests: a task's events folded to a state, and commands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

from tasktrail.domain.chain import GENESIS_HASH, data_hash
from tasktrail.domain.commands import (
    CommandContext,
    CompleteTask,
    CreateTask,
    DeleteTask,
    ExpectedVersions,
    RestoreTask,
    TaskChanges,
    TaskFields,
    UpdateTask,
)
from tasktrail.domain.event_data import FieldChanges, NewEvent, TaskCreatedData
from tasktrail.domain.events import Event, EventType
from tasktrail.domain.evolve import fold
from tasktrail.domain.state import TaskState

USER = "u_decide"
TASK_ID = "01936d1e-0000-7000-8000-000000000001"
CONTEXT = CommandContext(user_id=USER, actor=USER, request_id="req-decide")
START = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)

DUE = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DUE_TEXT = "2026-12-01T09:00:00.000000Z"
# The same instant as DUE, written in another time zone.
DUE_IN_PARIS = datetime(2026, 12, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))

# The task most cases start from: every editable field set, pending, version 1.
CREATED = NewEvent(
    EventType.TASK_CREATED,
    {
        "title": "Buy milk",
        "description": "2 litres",
        "due_at": DUE_TEXT,
        "priority": 1,
        "tags": ["home", "errands"],
        "completed": False,
    },
)
COMPLETED = NewEvent(EventType.TASK_COMPLETED, {})
REOPENED = NewEvent(EventType.TASK_REOPENED, {})
DELETED = NewEvent(EventType.TASK_DELETED, {})
RESTORED = NewEvent(EventType.TASK_RESTORED, {})
GONE = (CREATED, DELETED)


def updated(**changes: Any) -> NewEvent:
    return NewEvent(EventType.TASK_UPDATED, {"changes": cast(FieldChanges, changes)})


def given(*history: NewEvent) -> TaskState | None:
    """The state that a stream of these events folds to, as the handlers build it."""
    stream = [
        Event(
            user_id=USER,
            seq=number,
            task_id=TASK_ID,
            version=number,
            type=new.type.value,
            schema_version=1,
            data=new.data,
            data_hash=data_hash(new.data),
            occurred_at=START + timedelta(minutes=number),
            actor=USER,
            request_id=None,
            prev_hash=GENESIS_HASH,  # the chain plays no part in deciding
            hash=GENESIS_HASH,
        )
        for number, new in enumerate(history, start=1)
    ]
    return fold(stream)


def create(fields: TaskFields, *, completed: bool = False) -> CreateTask:
    return CreateTask(context=CONTEXT, task_id=TASK_ID, fields=fields, completed=completed)


def put(
    title: str = "Buy milk",
    *,
    description: str | None = None,
    due_at: datetime | None = None,
    priority: int = 0,
    tags: tuple[str, ...] = (),
    completed: bool | None = None,
    expected: ExpectedVersions = None,
) -> UpdateTask:
    """A PUT: every editable field, absent ones at their defaults."""
    fields = TaskFields(
        title=title, description=description, due_at=due_at, priority=priority, tags=tags
    )
    return UpdateTask(
        context=CONTEXT,
        task_id=TASK_ID,
        changes=fields.as_changes(),
        completed=completed,
        expected_versions=expected,
    )


def put_unchanged(
    title: str = "Buy milk",
    *,
    due_at: datetime = DUE,
    completed: bool | None = None,
    expected: ExpectedVersions = None,
) -> UpdateTask:
    """A PUT that sends back the fields of CREATED (title and due_at may be given)."""
    return put(
        title,
        description="2 litres",
        due_at=due_at,
        priority=1,
        tags=("home", "errands"),
        completed=completed,
        expected=expected,
    )


def at(*versions: int) -> frozenset[int]:
    """The versions an If-Match header names."""
    return frozenset(versions)


def task_created(**data: Any) -> NewEvent:
    return NewEvent(EventType.TASK_CREATED, cast(TaskCreatedData, data))


def patch(
    changes: TaskChanges | None = None,
    *,
    completed: bool | None = None,
    expected: ExpectedVersions = None,
) -> UpdateTask:
    """A merge PATCH: only the fields it names (null already turned into the field's default)."""
    return UpdateTask(
        context=CONTEXT,
        task_id=TASK_ID,
        changes={} if changes is None else changes,
        completed=completed,
        expected_versions=expected,
    )


def complete(completed: bool | None = None, *, expected: ExpectedVersions = None) -> CompleteTask:
    return CompleteTask(
        context=CONTEXT, task_id=TASK_ID, completed=completed, expected_versions=expected
    )


def delete(*, expected: ExpectedVersions = None) -> DeleteTask:
    return DeleteTask(context=CONTEXT, task_id=TASK_ID, expected_versions=expected)


def restore() -> RestoreTask:
    return RestoreTask(context=CONTEXT, task_id=TASK_ID)
