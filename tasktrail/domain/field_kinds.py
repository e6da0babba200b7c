"""What a task's field is declared with: its kind and its options (`TaskField`).

`TaskState` (state.py) declares each field once, its type annotated with a `TaskField`;
fields.py reads the declaration and derives every list of the fields from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """How a field's value is held: in the state, in a row, in the document."""

    ID = "id"  # a UUID in the row, its text in the state and the document
    TEXT = "text"
    FLAG = "flag"
    INTEGER = "integer"
    INSTANT = "instant"  # an aware datetime; RFC 3339 text, six fractional digits, in documents
    STRINGS = "strings"  # a tuple of strings in the state; a JSON list in the row and documents


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskField:
    kind: Kind
    nullable: bool = False
    served: bool = True  # in the task's JSON document and the API's schema
    stored: bool = True  # a field of the state and a column of the read model
    folded: bool = False  # the row keeps a case-folded copy beside it, `<name>_folded`
    description: str | None = None  # for the API's schema
    # A client sets it: in a create, a PUT and a merge PATCH, in `TaskChanges`, in the events'
    # data. Its `default` is what a create or a PUT that leaves it out, a PATCH that clears it
    # (null) and an event that lacks it give it (the API requires a title).
    editable: bool = False
    default: Any = None
    name: str = ""  # the attribute's name, filled in by fields.py
