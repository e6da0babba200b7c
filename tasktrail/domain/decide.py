"""`decide(state, command) -> events`: the rules, as a pure function of the folded state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from tasktrail.domain.commands import (
    Command,
    CompleteTask,
    CreateTask,
    DeleteTask,
    ExpectedVersions,
    RestoreTask,
    TaskChanges,
    UpdateTask,
)
from tasktrail.domain.errors import NothingToRestore, TaskNotFound, VersionConflict
from tasktrail.domain.event_data import (
    FieldChanges,
    NewEvent,
    TaskCreatedData,
    task_completed,
    task_created,
    task_deleted,
    task_reopened,
    task_restored,
    task_updated,
)
from tasktrail.domain.fields import EDITABLE_FORMS
from tasktrail.domain.state import TaskState


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
            return [task_deleted()]
        case RestoreTask():
            return _restore(state, command)


def _create(state: TaskState | None, command: CreateTask) -> list[NewEvent]:
    if state is not None:
        # Ids are made by the server, so this means a broken id generator, not a user error.
        raise RuntimeError(f"task {command.task_id} already exists")
    fields: Mapping[str, Any] = command.fields.as_changes()
    data: dict[str, Any] = {
        forms.name: forms.stored(fields[forms.name]) for forms in EDITABLE_FORMS
    }
    data["completed"] = command.completed
    return [task_created(cast(TaskCreatedData, data))]


def _update(state: TaskState, command: UpdateTask) -> list[NewEvent]:
    events: list[NewEvent] = []
    changes = _changed_fields(state, command.changes)
    if changes:
        events.append(task_updated(changes))
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
    return [task_restored()]


def _live(state: TaskState | None, task_id: str, expected: ExpectedVersions) -> TaskState:
    """The task, if it exists and is not deleted, at a version the client accepts."""
    if state is None or state.deleted:
        raise TaskNotFound(task_id)
    if expected is not None and state.version not in expected:
        raise VersionConflict(state.version)
    return state


def _completion_event(completed: bool) -> NewEvent:
    return task_completed() if completed else task_reopened()


def _changed_fields(state: TaskState, wanted: TaskChanges) -> FieldChanges:
    """The fields whose stored form the command changes, at their new stored values (an
    instant is compared as the text the event would hold, so another offset is no change)."""
    asked: Mapping[str, Any] = wanted
    changes: dict[str, Any] = {}
    for forms in EDITABLE_FORMS:
        if forms.name in asked:
            stored = forms.stored(asked[forms.name])
            if stored != forms.stored(getattr(state, forms.name)):
                changes[forms.name] = stored
    return cast(FieldChanges, changes)
