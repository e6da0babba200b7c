"""The commands: what a user asks for, already validated, as frozen values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict, cast

from tasktrail.domain.fields import EDITABLE_FORMS

# The versions an `If-Match` header accepts; None when the client sent none (or `*`).
ExpectedVersions = frozenset[int] | None


class TaskChanges(TypedDict, total=False):
    """Editable fields a client asked to set, at their values; absent ones are left alone."""

    title: str
    description: str | None
    due_at: datetime | None
    priority: int
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFields:
    """Every editable field, with its default; what a create or a PUT supplies."""

    title: str
    description: str | None = None
    due_at: datetime | None = None
    priority: int = 0
    tags: tuple[str, ...] = ()

    def as_changes(self) -> TaskChanges:
        return cast(
            TaskChanges, {forms.name: getattr(self, forms.name) for forms in EDITABLE_FORMS}
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandContext:
    """Who asks and in which request: recorded on every event the command appends."""

    user_id: str
    actor: str
    request_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateTask:
    context: CommandContext
    task_id: str
    fields: TaskFields
    completed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateTask:
    """PUT sends every editable field; a merge PATCH only those it changes."""

    context: CommandContext
    task_id: str
    changes: TaskChanges = field(default_factory=lambda: TaskChanges())
    completed: bool | None = None
    expected_versions: ExpectedVersions = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CompleteTask:
    """`completed=None` toggles; True or False sets (a retry is harmless)."""

    context: CommandContext
    task_id: str
    completed: bool | None = None
    expected_versions: ExpectedVersions = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteTask:
    context: CommandContext
    task_id: str
    expected_versions: ExpectedVersions = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreTask:
    context: CommandContext
    task_id: str


Command = CreateTask | UpdateTask | CompleteTask | DeleteTask | RestoreTask
