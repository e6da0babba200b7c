"""A list query as values, and its rules in plain Python: what matches, and in which order.

The SQL in queries/list_sql.py applies the same rules to the read model; time travel
(queries/as_of.py) and a walk's snapshot apply them to states folded from the log. Tests hold the
two to the same answers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cmp_to_key, partial
from typing import TYPE_CHECKING, Any

from tasktrail.domain.encoding import format_timestamp, parse_timestamp
from tasktrail.domain.state import TaskState

if TYPE_CHECKING:
    from _typeshed import SupportsAllComparisons


# A page of any listing (tasks, a feed, an audit search): this many items unless asked, and at
# most this many.
PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class StatusFilter(StrEnum):
    ALL = "all"
    PENDING = "pending"
    COMPLETED = "completed"
    DELETED = "deleted"


class SortField(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    TITLE = "title"
    DUE = "due"
    PRIORITY = "priority"


@dataclass(frozen=True, slots=True)
class Sort:
    field: SortField = SortField.CREATED
    descending: bool = True

    @classmethod
    def parse(cls, text: str) -> Sort:
        """`created`, `-created`, ... ; ValueError for anything else."""
        descending = text.startswith("-")
        return cls(SortField(text.removeprefix("-")), descending)


@dataclass(frozen=True, slots=True)
class ListTasks:
    """A page of a user's tasks. `after` is the keyset position of the last task already seen."""

    user_id: str
    status: StatusFilter = StatusFilter.ALL
    sort: Sort = field(default_factory=Sort)
    q: str | None = None
    tags: tuple[str, ...] = ()
    due_before: datetime | None = None
    due_after: datetime | None = None
    limit: int = PAGE_SIZE
    after: KeysetPosition | None = None
    # The user's seq when the walk began; None on a first page, which takes the current one.
    snapshot_seq: int | None = None


@dataclass(frozen=True, slots=True)
class KeysetPosition:
    """Where a page ended: the last task's sort value and id."""

    value: Any
    task_id: str

    def to_json(self) -> list[Any]:
        value = format_timestamp(self.value) if isinstance(self.value, datetime) else self.value
        return [value, self.task_id]

    @classmethod
    def from_json(cls, sort: Sort, key: list[Any]) -> KeysetPosition:
        """Read back what `to_json` wrote for this sort; ValueError if it cannot be."""
        if len(key) != 2 or not isinstance(key[1], str):
            raise ValueError("the cursor's position is malformed")
        value, task_id = key
        task_id = str(uuid.UUID(task_id))
        if sort.field in (SortField.CREATED, SortField.UPDATED):
            return cls(parse_timestamp(_text(value)), task_id)
        if sort.field is SortField.DUE:
            return cls(None if value is None else parse_timestamp(_text(value)), task_id)
        if sort.field is SortField.TITLE:
            return cls(_text(value), task_id)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError("the cursor's position is malformed")
        return cls(value, task_id)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("the cursor's position is malformed")
    return value


def matches(state: TaskState, query: ListTasks) -> bool:
    """Whether a task belongs in the list: the filters of the contract, case folded in Python."""
    if query.status is StatusFilter.DELETED:
        if not state.deleted:
            return False
    elif state.deleted or (
        (query.status is StatusFilter.PENDING and state.completed)
        or (query.status is StatusFilter.COMPLETED and not state.completed)
    ):
        return False
    if query.q:
        needle = query.q.casefold()
        in_description = state.description is not None and needle in state.description.casefold()
        if needle not in state.title.casefold() and not in_description:
            return False
    folded_tags = {tag.casefold() for tag in state.tags}
    if any(tag.casefold() not in folded_tags for tag in query.tags):
        return False
    if query.due_after is not None and (state.due_at is None or state.due_at < query.due_after):
        return False
    return query.due_before is None or (
        state.due_at is not None and state.due_at < query.due_before
    )


def position_of(state: TaskState, sort: Sort) -> KeysetPosition:
    return KeysetPosition(sort_value(state, sort.field), state.id)


def sort_value(state: TaskState, field: SortField) -> Any:
    match field:
        case SortField.CREATED:
            return state.created_at
        case SortField.UPDATED:
            return state.updated_at
        case SortField.TITLE:
            return state.title.casefold()  # what the projector stores in title_folded
        case SortField.DUE:
            return state.due_at
        case SortField.PRIORITY:
            return state.priority


def compare_positions(a: KeysetPosition, b: KeysetPosition, sort: Sort) -> int:
    """Negative when `a` comes first in the walk: the SQL order, in Python.

    Ties go by id in the sort's direction; tasks without a due date come last either way.
    Titles compare by code point, as both engines do (PostgreSQL through COLLATE "C").
    """
    if (a.value is None) != (b.value is None):
        return 1 if a.value is None else -1
    first: tuple[Any, ...] = (uuid.UUID(a.task_id),)
    second: tuple[Any, ...] = (uuid.UUID(b.task_id),)
    if a.value is not None:
        first, second = (a.value, *first), (b.value, *second)
    order = (first > second) - (first < second)
    return -order if sort.descending else order


def walk_order(position: KeysetPosition, sort: Sort) -> SupportsAllComparisons:
    return cmp_to_key(partial(compare_positions, sort=sort))(position)
