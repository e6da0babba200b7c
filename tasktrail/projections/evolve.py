"""`evolve(state, event) -> state`: the one definition of how events become a task.

It must replay any history ever written, so it validates nothing: `decide` made sure of the
rules when the event was appended, and an event type it does not know leaves the task unchanged
except for its version (a newer writer's event must not stop an older reader's replay). Every
event is read through the upcasters first, so old shapes of data fold like the current one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from tasktrail.events.encoding import parse_timestamp
from tasktrail.events.types import Event, EventType, JsonObject
from tasktrail.events.upcasting import upcast
from tasktrail.projections.state import TaskState


def evolve(state: TaskState | None, event: Event) -> TaskState | None:
    event = upcast(event)  # an old event is folded in the current shape of its data
    at = event.occurred_at
    if state is None:
        if event.type != EventType.TASK_CREATED:
            return None  # a stream that does not start with a creation describes no task
        return _created(event)
    # One replace per event (it is the fold's hot spot): what every event changes, plus its own.
    changes: dict[str, Any]
    match event.type:
        case EventType.TASK_UPDATED:
            changes = _field_values(event.data.get("changes", {}))
        case EventType.TASK_COMPLETED:
            changes = {"completed": True, "completed_at": at}
        case EventType.TASK_REOPENED:
            changes = {"completed": False, "completed_at": None}
        case EventType.TASK_DELETED:
            changes = {"deleted_at": at}
        case EventType.TASK_RESTORED:
            changes = {"deleted_at": None}
        case _:
            changes = {}
    return dataclasses.replace(
        state, updated_at=at, version=event.version, last_seq=event.seq, **changes
    )


def fold(events: Iterable[Event]) -> TaskState | None:
    state: TaskState | None = None
    for event in events:
        state = evolve(state, event)
    return state


def _created(event: Event) -> TaskState:
    data = event.data
    completed = bool(data.get("completed", False))
    at = event.occurred_at
    return TaskState(
        id=event.task_id,
        user_id=event.user_id,
        title=data.get("title", ""),
        description=data.get("description"),
        completed=completed,
        due_at=_timestamp_or_none(data.get("due_at")),
        priority=data.get("priority", 0),
        tags=tuple(data.get("tags", ())),
        created_at=at,
        updated_at=at,
        completed_at=at if completed else None,
        deleted_at=None,
        version=event.version,
        last_seq=event.seq,
    )


def _field_values(changes: JsonObject) -> dict[str, Any]:
    """The state's values for the fields an event changed, in the state's own types."""
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "due_at":
            values[name] = _timestamp_or_none(value)
        elif name == "tags":
            values[name] = tuple(value)
        elif name in ("title", "description", "priority"):
            values[name] = value
    return values


def _timestamp_or_none(text: str | None) -> datetime | None:
    return None if text is None else parse_timestamp(text)
