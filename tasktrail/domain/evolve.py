"""`evolve(state, event) -> state`: the one definition of how events become a task.

It must replay any history ever written, so it validates nothing: `decide` made sure of the
rules when the event was appended, and an event type it does not know leaves the task unchanged
except for its version (a newer writer's event must not stop an older reader's replay). Every
event is read through the upcasters first, so old shapes of data fold like the current one.

What an event does is written once, as the fields it sets (`_created`, `_effect`); `evolve`
applies one event to a state, `fold` a whole stream.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from tasktrail.domain.event_data import FieldChanges, created_data, updated_data
from tasktrail.domain.events import EventType, FoldableEvent, JsonObject
from tasktrail.domain.fields import EDITABLE_BY_NAME, EDITABLE_FORMS
from tasktrail.domain.state import TaskState
from tasktrail.domain.upcasting import upcast_data


def evolve(state: TaskState | None, event: FoldableEvent) -> TaskState | None:
    if state is None:
        fields = _created(event)
        return None if fields is None else TaskState(**fields)
    return dataclasses.replace(state, **_effect(event))


def fold(events: Iterable[FoldableEvent]) -> TaskState | None:
    """`evolve` applied left to right from None, with the state built once, at the end.

    That is the same thing because an event's effect depends only on whether there is a task
    yet, never on its fields: the effects can be merged first. It matters for the rebuild,
    which folds a million events, and a frozen state costs more to copy than its events to read.
    """
    fields: dict[str, Any] | None = None
    for event in events:
        if fields is None:
            fields = _created(event)
        else:
            fields.update(_effect(event))
    return None if fields is None else TaskState(**fields)


def _created(event: FoldableEvent) -> dict[str, Any] | None:
    """Every field of a new task, or None: a stream that does not start with a creation
    describes no task (until a creation comes)."""
    if event.type != EventType.TASK_CREATED:
        return None
    data: Mapping[str, Any] = created_data(_data(event))
    completed = bool(data.get("completed", False))
    at = event.occurred_at
    return {
        **{
            forms.name: forms.from_stored(data.get(forms.name, forms.default))
            for forms in EDITABLE_FORMS
        },
        "id": event.task_id,
        "user_id": event.user_id,
        "completed": completed,
        "created_at": at,
        "updated_at": at,
        "completed_at": at if completed else None,
        "deleted_at": None,
        "version": event.version,
        "last_seq": event.seq,
    }


def _effect(event: FoldableEvent) -> dict[str, Any]:
    """The fields an event sets on an existing task: what every event changes, plus its own."""
    at = event.occurred_at
    changes: dict[str, Any] = {"updated_at": at, "version": event.version, "last_seq": event.seq}
    match event.type:
        case EventType.TASK_UPDATED:
            changes.update(_field_values(updated_data(_data(event)).get("changes", {})))
        case EventType.TASK_COMPLETED:
            changes["completed"], changes["completed_at"] = True, at
        case EventType.TASK_REOPENED:
            changes["completed"], changes["completed_at"] = False, None
        case EventType.TASK_DELETED:
            changes["deleted_at"] = at
        case EventType.TASK_RESTORED:
            changes["deleted_at"] = None
    return changes


def _data(event: FoldableEvent) -> JsonObject:
    """The event's data in its current shape (an old event is folded like a new one)."""
    data, _ = upcast_data(event.type, event.schema_version, event.data)
    return data


def _field_values(changes: FieldChanges) -> dict[str, Any]:
    """The state's values for the fields an event changed, in the state's own types (a field
    this version does not know is left out)."""
    return {
        name: EDITABLE_BY_NAME[name].from_stored(value)
        for name, value in changes.items()
        if name in EDITABLE_BY_NAME
    }
