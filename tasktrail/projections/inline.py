"""The inline projector: the only writer of the `tasks` read model on the request path.

It writes the whole row from the state that `evolve` folded, in the transaction of the append, so
the read model never holds anything a replay of the log would not give: the columns that queries
filter and sort on, and the task's served JSON document and ETag (document.py), which reads send
as they are.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import cache
from operator import attrgetter
from typing import Any

from sqlalchemy import Connection, Insert

from tasktrail.database import dialect_insert
from tasktrail.domain.document import TaskDocument, task_document
from tasktrail.domain.fields import ROW_COLUMN_NAMES, ROW_COLUMNS, Kind
from tasktrail.domain.state import TaskState
from tasktrail.schema import tasks

# The columns of `tasks` in table order: the order of `task_values` (fields.py declares them).
TASK_COLUMNS: tuple[str, ...] = ROW_COLUMN_NAMES


def _column_value(name: str, kind: Kind) -> Callable[[TaskState], Any]:
    """How a column's value is taken from the state: as it is, a list for the tags, or the
    case-folded copy of a `_folded` column (str.casefold, on both engines)."""
    if name.endswith("_folded"):
        source = attrgetter(name.removesuffix("_folded"))
        if kind is Kind.STRINGS:
            return lambda state: [tag.casefold() for tag in source(state)]
        return lambda state: None if (text := source(state)) is None else text.casefold()
    value = attrgetter(name)
    if kind is Kind.STRINGS:
        return lambda state: list(value(state))
    return value


# Every column but the document and its ETag, which are made together, last.
_COLUMN_VALUES = tuple(_column_value(name, kind) for name, kind in ROW_COLUMNS[:-2])


def task_values(state: TaskState, document: TaskDocument | None = None) -> tuple[Any, ...]:
    """The `tasks` row for a state, in `TASK_COLUMNS` order, folded columns included, its
    document and ETag last (`document`, when the caller made it already). The id is text; the
    lists are lists."""
    body, etag = task_document(state) if document is None else document
    return (*(value(state) for value in _COLUMN_VALUES), body, etag)


def task_row(state: TaskState, document: TaskDocument | None = None) -> dict[str, Any]:
    """The `tasks` row for a state, by column name, as SQLAlchemy writes it (the id a UUID)."""
    row = dict(zip(TASK_COLUMNS, task_values(state, document), strict=True))
    row["id"] = uuid.UUID(state.id)
    return row


def apply(conn: Connection, state: TaskState, document: TaskDocument | None = None) -> None:
    """Write the task's whole row (insert or replace), in the caller's transaction."""
    conn.execute(_upsert(conn.dialect.name), task_row(state, document))


@cache
def _upsert(dialect: str) -> Insert:
    """The whole row, inserted or replaced; built once per engine kind, reused with new values."""
    insert = dialect_insert(dialect, tasks)
    return insert.on_conflict_do_update(
        index_elements=[tasks.c.id],
        set_={
            column.name: insert.excluded[column.name] for column in tasks.c if column.name != "id"
        },
    )


def upsert_statement(dialect: str) -> Insert:
    """The projector's upsert (parameters: `task_row`), for a caller that compiles it itself:
    the pgbench benchmark (bench/http/pgbench_create.py) writes it into its script. The service's
    own writes use `apply`, or on PostgreSQL `tasktrail_append`'s upsert of the row."""
    return _upsert(dialect)
