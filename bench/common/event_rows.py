"""Events as COPY text lines: how a benchmark writes a generated log fast.

The rebuild benchmark loads a million generated events this way, and the HTTP benchmark the
long history of its single-task update row. COPY's text format: tab-separated, `\\N` for NULL, and a
backslash starts an escape, so the JSON escapes inside `data` must have theirs doubled.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from psycopg import sql

from tasktrail.domain.encoding import canonical_json, format_timestamp
from tasktrail.domain.events import Event
from tasktrail.schema import events

# The columns the load writes, in the table's order (schema.py's): position and xact_id are
# filled by their defaults.
EVENT_COLUMNS = tuple(
    column.name for column in events.c if column.name not in {"position", "xact_id"}
)

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _text(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, list | dict):
        value = canonical_json(value).decode()
    return str(value).translate(_COPY_ESCAPES)


def copy_line(values: Sequence[object]) -> str:
    return "\t".join(_text(value) for value in values) + "\n"


def event_line(event: Event) -> str:
    # A million of these: only `data` can hold a character COPY must see escaped; the other
    # fields are ids, numbers, hex digests and timestamps the generator made.
    data = canonical_json(event.data).decode().translate(_COPY_ESCAPES)  # the text hashed
    return (
        f"{event.user_id}\t{event.seq}\t{event.task_id}\t{event.version}\t{event.type}\t"
        f"{event.schema_version}\t{data}\t{event.data_hash}\t"
        f"{format_timestamp(event.occurred_at)}\t{event.actor}\t{event.request_id}\t"
        f"{event.prev_hash}\t{event.hash}\n"
    )


def copy_statement(table: str, columns: Sequence[str]) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
