"""`decide(state, command) -> events`: the rules, as a pure function of the folded state."""

from __future__ import annotations

from datetime import datetime

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
from tasktrail.domain.encoding import format_timestamp
from tasktrail.domain.errors import NothingToRestore, TaskNotFound, VersionConflict
from tasktrail.domain.event_data import (
    FieldChanges,
    task_completed,
    task_created,
    task_deleted,
    task_reopened,
    task_restored,
    task_updated,
)
from tasktrail.domain.events import NewEvent
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
    fields = command.fields
    return [
        task_created(
            {
                "title": fields.title,
                "description": fields.description,
                "due_at": _instant_text(fields.due_at),
                "priority": fields.priority,
                "tags": list(fields.tags),
                "completed": command.completed,
            }
        )
    ]


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
    changes: FieldChanges = {}
    if "title" in wanted and wanted["title"] != state.title:
        changes["title"] = wanted["title"]
    if "description" in wanted and wanted["description"] != state.description:
        changes["description"] = wanted["description"]
    if "due_at" in wanted:
        due_at = _instant_text(wanted["due_at"])
        if due_at != _instant_text(state.due_at):
            changes["due_at"] = due_at
    if "priority" in wanted and wanted["priority"] != state.priority:
        changes["priority"] = wanted["priority"]
    if "tags" in wanted and tuple(wanted["tags"]) != state.tags:
        changes["tags"] = list(wanted["tags"])
    return changes


def _instant_text(value: datetime | None) -> str | None:
    """An instant as events store it and the API serves it."""
    return None if value is None else format_timestamp(value)
