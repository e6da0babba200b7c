"""A task's fields, as `TaskState` declares them (state.py), and what derives from them.

Everything that lists a task's fields derives the list from `TASK_FIELDS`, read once from
`TaskState`'s annotations: the served JSON document and its order (document.py), the API's
`TaskOut` schema and so the OpenAPI document (api/contract/schemas.py), the read model's row and
its column order (inline.py), the state a row holds (snapshot.py), the row's digest
(row_digest.py), and for the editable fields what a create's event holds and an update changes
(decide.py), how an event's data folds (evolve.py), and a create's, a PUT's and a merge PATCH's
fields (api/routes/tasks.py). The `tasks` table is their storage, and the request bodies,
`TaskChanges`, `TaskFields` and the events' data their typed forms: tests hold each of those to
this declaration (tests/unit/test_task_fields.py).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tasktrail.domain.encoding import format_timestamp, parse_timestamp
from tasktrail.domain.field_kinds import Kind, TaskField
from tasktrail.domain.state import DERIVED_FIELDS, TaskState

__all__ = [
    "EDITABLE_BY_NAME",
    "EDITABLE_FIELDS",
    "EDITABLE_FORMS",
    "ROW_COLUMNS",
    "ROW_COLUMN_NAMES",
    "SERVED_FIELDS",
    "STATE_FIELDS",
    "TASK_FIELDS",
    "EditableForms",
    "Kind",
    "TaskField",
]


def _declared() -> tuple[TaskField, ...]:
    """`TaskState`'s fields as its annotations declare them, each named, in the contract's
    order, with the served-only fields (`DERIVED_FIELDS`) after the field they derive from."""
    hints = typing.get_type_hints(TaskState, include_extras=True)
    declared: list[TaskField] = []
    for attribute in dataclasses.fields(TaskState):
        (field,) = (extra for extra in hints[attribute.name].__metadata__)
        declared.append(dataclasses.replace(field, name=attribute.name))
        declared += [derived for after, derived in DERIVED_FIELDS if after == attribute.name]
    return tuple(declared)


# In the contract's order: the order of the served document's keys.
TASK_FIELDS: tuple[TaskField, ...] = _declared()
SERVED_FIELDS = tuple(field for field in TASK_FIELDS if field.served)
STATE_FIELDS = tuple(field for field in TASK_FIELDS if field.stored)
EDITABLE_FIELDS = tuple(field for field in TASK_FIELDS if field.editable)


def _same(value: Any) -> Any:
    return value


def _instant_text(value: datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


def _instant(text: str | None) -> datetime | None:
    return None if text is None else parse_timestamp(text)


# An editable field's value in its three forms: the state's (and a command's), the stored one of
# the events' data (an instant as RFC 3339 text, the tags as a list), and a request body's (the
# tags as a list). Chosen by kind, once per field.
_STORED: dict[Kind, Callable[[Any], Any]] = {Kind.INSTANT: _instant_text, Kind.STRINGS: list}
_FROM_STORED: dict[Kind, Callable[[Any], Any]] = {Kind.INSTANT: _instant, Kind.STRINGS: tuple}
_FROM_BODY: dict[Kind, Callable[[Any], Any]] = {Kind.STRINGS: tuple}


@dataclass(frozen=True, slots=True)
class EditableForms:
    """How one editable field's value goes between its forms."""

    name: str
    default: Any
    stored: Callable[[Any], Any]  # state -> events' data
    from_stored: Callable[[Any], Any]  # events' data -> state
    from_body: Callable[[Any], Any]  # request body -> state


EDITABLE_FORMS: tuple[EditableForms, ...] = tuple(
    EditableForms(
        field.name,
        field.default,
        _STORED.get(field.kind, _same),
        _FROM_STORED.get(field.kind, _same),
        _FROM_BODY.get(field.kind, _same),
    )
    for field in EDITABLE_FIELDS
)
EDITABLE_BY_NAME: dict[str, EditableForms] = {forms.name: forms for forms in EDITABLE_FORMS}


def _row_columns() -> tuple[tuple[str, Kind], ...]:
    """The read model's columns in table order: each stored field, its folded copy right after
    it, then the served document and its ETag."""
    columns: list[tuple[str, Kind]] = []
    for field in STATE_FIELDS:
        columns.append((field.name, field.kind))
        if field.folded:
            columns.append((f"{field.name}_folded", field.kind))
    columns += [("body", Kind.TEXT), ("etag", Kind.TEXT)]
    return tuple(columns)


ROW_COLUMNS: tuple[tuple[str, Kind], ...] = _row_columns()
ROW_COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _ in ROW_COLUMNS)
