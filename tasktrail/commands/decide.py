"""`decide(state, command) -> events`: the rules, as a pure function of the folded state."""

from __future__ import annotations

from typing import Any

from tasktrail.commands.errors import NothingToRestore, TaskNotFound, VersionConflict
from tasktrail.commands.types import (
    Command,
    CompleteTask,
    CreateTask,
    DeleteTask,
    ExpectedVersions,
    RestoreTask,
    UpdateTask,
)
from tasktrail.events.encoding import format_timestamp
from tasktrail.events.types import EventType, NewEvent
from tasktrail.projections.state import EDITABLE_FIELDS, TaskState


def decide(state: TaskState | None, command: Command) -> list[NewEvent]:
    match command:
        case CreateTask():
            return _create(state, command)
        case UpdateTask():
            return _update(_live(state, command.task_id, command.expected_versions), command)
        case CompleteTask():
            return _complete(_live(state, command.task_id, command.expected_versions), command)
        case DeleteTask():
            _live(state, command.task_id, command.expected_versions)
            return [NewEvent(EventType.TASK_DELETED, {})]
        case RestoreTask():
            return _restore(state, command)


def _create(state: TaskState | None, command: CreateTask) -> list[NewEvent]:
    if state is not None:
        # Ids are made by the server, so this means a broken id generator, not a user error.
        raise RuntimeError(f"task {command.task_id} already exists")
    data = {name: _to_json(name, value) for name, value in command.fields.as_changes().items()}
    data["completed"] = command.completed
    return [NewEvent(EventType.TASK_CREATED, data)]


def _update(state: TaskState, command: UpdateTask) -> list[NewEvent]:
    events: list[NewEvent] = []
    changes = {
        name: _to_json(name, value)
        for name, value in command.changes.items()
        if name in EDITABLE_FIELDS and _to_json(name, value) != _to_json(name, getattr(state, name))
    }
    if changes:
        events.append(NewEvent(EventType.TASK_UPDATED, {"changes": changes}))
    if command.completed is not None and command.completed != state.completed:
        events.append(_completion_event(command.completed))
    return events


def _complete(state: TaskState, command: CompleteTask) -> list[NewEvent]:
    wanted = (not state.completed) if command.completed is None else command.completed
    if wanted == state.completed:
        return []  # setting what already holds appends nothing, so a retry is harmless
    return [_completion_event(wanted)]


def _restore(state: TaskState | None, command: RestoreTask) -> list[NewEvent]:
    if state is None:
        raise TaskNotFound(command.task_id)
    if not state.deleted:
        raise NothingToRestore(command.task_id)
    return [NewEvent(EventType.TASK_RESTORED, {})]


def _live(state: TaskState | None, task_id: str, expected: ExpectedVersions) -> TaskState:
    """The task, if it exists and is not deleted, at a version the client accepts."""
    if state is None or state.deleted:
        raise TaskNotFound(task_id)
    if expected is not None and state.version not in expected:
        raise VersionConflict(state.version)
    return state


def _completion_event(completed: bool) -> NewEvent:
    return NewEvent(EventType.TASK_COMPLETED if completed else EventType.TASK_REOPENED, {})


def _to_json(name: str, value: Any) -> Any:
    """A field's value as the event stores it and the API serves it."""
    if name == "due_at":
        return None if value is None else format_timestamp(value)
    if name == "tags":
        return list(value)
    return value
