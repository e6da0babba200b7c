"""The events of a task's life, as the contract names them, and the shape of a stored event.

What `decide` asks to append, `NewEvent`, pairs each type with its data's shape: event_data.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

# Bump when the shape of an event's `data` changes, and add an upcaster for the old one.
CURRENT_SCHEMA_VERSION = 1

JsonObject = Mapping[str, Any]


class EventType(StrEnum):
    TASK_CREATED = "TaskCreated"
    TASK_UPDATED = "TaskUpdated"
    TASK_COMPLETED = "TaskCompleted"
    TASK_REOPENED = "TaskReopened"
    TASK_DELETED = "TaskDeleted"
    TASK_RESTORED = "TaskRestored"


@dataclass(frozen=True, slots=True)
class Event:
    """An event as stored: every field the contract serves, `position` included once known.

    `position` is None only between building an event and reading it back from the log.
    """

    user_id: str
    seq: int
    task_id: str
    version: int
    type: str
    schema_version: int
    data: JsonObject
    data_hash: str
    occurred_at: datetime
    actor: str
    request_id: str | None
    prev_hash: str
    hash: str
    position: int | None = None


class FoldableEvent(Protocol):
    """What folding an event into a task reads of it: an `Event`, or a leaner row of the log
    that a bulk reader builds (the rebuild reads a million of them)."""

    @property
    def user_id(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def task_id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def schema_version(self) -> int: ...
    @property
    def data(self) -> JsonObject: ...
    @property
    def occurred_at(self) -> datetime: ...
