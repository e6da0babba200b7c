"""A task's served JSON document and its ETag: made once, by the projector, stored with its row.

The read model holds the answer a read sends, so a read does no work per task: the projector
writes each task's document (the exact text of the API's task JSON) and ETag in the transaction
of the append, the rebuild writes them from the fold, `projections verify` and the rebuild's
checksum hold them to the log, and `as_of` serialises a folded state with this same function.

The document is orjson's compact JSON (non-ASCII raw, UTF-8) of the task's fields in the
contract's order, every timestamp RFC 3339 in UTC with six fractional digits and `Z`: the bytes
the API has always sent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

import orjson

from tasktrail.events.encoding import format_timestamp
from tasktrail.projections.state import TaskState

_UTC_OFFSET = timedelta(0)


class TaskDocument(NamedTuple):
    """What the API sends for a task: its JSON, as text, and its ETag (`"<version>"`)."""

    body: str
    etag: str


def task_document(task: TaskState) -> TaskDocument:
    """The task's JSON document and ETag, exactly as the API serves them."""
    body = orjson.dumps(
        {
            "id": task.id,
            "user_id": task.user_id,
            "title": task.title,
            "description": task.description,
            "completed": task.completed,
            "status": task.status,
            "due_at": _instant(task.due_at),
            "priority": task.priority,
            "tags": task.tags,  # a tuple: a JSON array, as a list would be
            "created_at": _instant(task.created_at),
            "updated_at": _instant(task.updated_at),
            "completed_at": _instant(task.completed_at),
            "version": task.version,
        },
        default=_other_value,
        option=orjson.OPT_UTC_Z,
    )
    return TaskDocument(body.decode(), f'"{task.version}"')


def _instant(moment: datetime | None) -> datetime | str | None:
    """A timestamp as the document holds it: `format_timestamp`'s text (six fractional digits,
    `Z`). An instant in UTC with a fraction is left to orjson, which writes exactly that text in
    C (`OPT_UTC_Z`) at a fifth of the cost: the rebuild writes a document for every task, and
    formatting its timestamps in Python was most of it. orjson drops a zero fraction and keeps
    other offsets, so those go through `format_timestamp`. A test holds the two to one text."""
    if moment is None:
        return None
    if moment.microsecond and moment.utcoffset() == _UTC_OFFSET:
        return moment
    return format_timestamp(moment)


def _other_value(value: object) -> str:
    """What orjson leaves to Python: it writes `datetime` itself, not its subclasses (freezegun's
    FakeDatetime, in tests), which get `format_timestamp`'s text like any other instant."""
    if isinstance(value, datetime):
        return format_timestamp(value)
    raise TypeError(f"a task document holds no {type(value).__name__}")
