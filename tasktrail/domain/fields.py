"""A task's fields, declared once.

Everything that lists a task's fields derives the list from `TASK_FIELDS`: the served JSON
document and its order (document.py), the API's `TaskOut` schema and so the OpenAPI document
(api/contract/schemas.py), the read model's row and its column order (inline.py), the state a
row holds (snapshot.py) and the row's digest (row_digest.py). `TaskState` is the typed form of the
same fields, and the `tasks` table their storage: tests hold both to this declaration.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """How a field's value is held: in the state, in a row, in the document."""

    ID = "id"  # a UUID in the row, its text in the state and the document
    TEXT = "text"
    FLAG = "flag"
    INTEGER = "integer"
    INSTANT = "instant"  # an aware datetime; RFC 3339 text, six fractional digits, in documents
    STRINGS = "strings"  # a tuple of strings in the state; a JSON list in the row and documents


@dataclass(frozen=True, slots=True)
class TaskField:
    name: str
    kind: Kind
    nullable: bool = False
    served: bool = True  # in the task's JSON document and the API's schema
    stored: bool = True  # a field of the state and a column of the read model
    folded: bool = False  # the row keeps a case-folded copy beside it, `<name>_folded`
    description: str | None = None  # for the API's schema


# In the contract's order: the order of the served document's keys.
TASK_FIELDS: tuple[TaskField, ...] = (
    TaskField("id", Kind.ID),
    TaskField("user_id", Kind.TEXT),
    TaskField("title", Kind.TEXT, folded=True),
    TaskField("description", Kind.TEXT, nullable=True, folded=True),
    TaskField("completed", Kind.FLAG),
    TaskField(
        "status",
        Kind.TEXT,
        stored=False,
        description="`completed` or `pending`, derived from `completed`",
    ),
    TaskField("due_at", Kind.INSTANT, nullable=True),
    TaskField("priority", Kind.INTEGER),
    TaskField("tags", Kind.STRINGS, folded=True),
    TaskField("created_at", Kind.INSTANT),
    TaskField("updated_at", Kind.INSTANT),
    TaskField("completed_at", Kind.INSTANT, nullable=True),
    TaskField("deleted_at", Kind.INSTANT, nullable=True, served=False),
    TaskField("version", Kind.INTEGER),
    # The user's seq of the last event folded in: which tasks changed after a list's snapshot.
    TaskField("last_seq", Kind.INTEGER, served=False),
)

SERVED_FIELDS = tuple(field for field in TASK_FIELDS if field.served)
STATE_FIELDS = tuple(field for field in TASK_FIELDS if field.stored)


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
