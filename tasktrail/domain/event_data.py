"""The shape of each event type's `data`: what `decide` writes and `evolve` reads.

One TypedDict per shape, and `NewEvent`'s constructor pairs each event type with its shape (one
overload per pairing), so mypy refuses an event made with another type's data. `evolve` reads an
event's data (upcast to the current schema version) through the readers below. Values are in their stored form: timestamps as RFC 3339 text (six
fractional digits, `Z`), tags as a list. Changing a shape means a new schema version and an
upcaster (domain/upcasting.py).
"""

from __future__ import annotations

from typing import Literal, TypedDict, cast, overload

from tasktrail.domain.events import EventType, JsonObject


class TaskCreatedData(TypedDict):
    """Every editable field of the new task, and whether it starts completed."""

    title: str
    description: str | None
    due_at: str | None
    priority: int
    tags: list[str]
    completed: bool


class FieldChanges(TypedDict, total=False):
    """The editable fields an update changed, each at its new value; absent ones unchanged."""

    title: str
    description: str | None
    due_at: str | None
    priority: int
    tags: list[str]


class TaskUpdatedData(TypedDict):
    changes: FieldChanges


class NoData(TypedDict):
    """TaskCompleted, TaskReopened, TaskDeleted and TaskRestored: the type says it all."""


_DATALESS = Literal[
    EventType.TASK_COMPLETED,
    EventType.TASK_REOPENED,
    EventType.TASK_DELETED,
    EventType.TASK_RESTORED,
]


class NewEvent:
    """What `decide` asks to append: an event type and its data, paired by the overloads below
    (the store gives the event its place in the log)."""

    __slots__ = ("data", "type")

    @overload
    def __init__(self, type: Literal[EventType.TASK_CREATED], data: TaskCreatedData) -> None: ...
    @overload
    def __init__(self, type: Literal[EventType.TASK_UPDATED], data: TaskUpdatedData) -> None: ...
    @overload
    def __init__(self, type: _DATALESS, data: NoData) -> None: ...
    def __init__(self, type: EventType, data: JsonObject) -> None:
        self.type = type
        self.data = data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NewEvent):
            return NotImplemented
        return (self.type, self.data) == (other.type, other.data)

    def __hash__(self) -> int:
        return hash(self.type)

    def __repr__(self) -> str:
        return f"NewEvent({self.type!r}, {self.data!r})"


def task_created(data: TaskCreatedData) -> NewEvent:
    return NewEvent(EventType.TASK_CREATED, data)


def task_updated(changes: FieldChanges) -> NewEvent:
    data: TaskUpdatedData = {"changes": changes}
    return NewEvent(EventType.TASK_UPDATED, data)


def _without_data(kind: _DATALESS) -> NewEvent:
    data: NoData = {}
    return NewEvent(kind, data)


def task_completed() -> NewEvent:
    return _without_data(EventType.TASK_COMPLETED)


def task_reopened() -> NewEvent:
    return _without_data(EventType.TASK_REOPENED)


def task_deleted() -> NewEvent:
    return _without_data(EventType.TASK_DELETED)


def task_restored() -> NewEvent:
    return _without_data(EventType.TASK_RESTORED)


# The readers. Stored data is JSON that the log has kept since it was written; once upcast to
# the current schema version it has the shape above, which is what these declare. They check
# nothing at run time: `evolve` must replay any history ever written, and the rebuild reads a
# million events.


def created_data(data: JsonObject) -> TaskCreatedData:
    return cast(TaskCreatedData, data)


def updated_data(data: JsonObject) -> TaskUpdatedData:
    return cast(TaskUpdatedData, data)
