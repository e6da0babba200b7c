"""A task's served JSON document and its ETag: made once, by the projector, stored with its row.

The read model holds the answer a read sends, so a read does no work per task: the projector
writes each task's document (the exact text of the API's task JSON) and ETag in the transaction
of the append, the rebuild writes them from the fold, `projections verify` and the rebuild's
checksum hold them to the log, and `as_of` serialises a folded state with this same function.

The document is orjson's compact JSON (non-ASCII raw, UTF-8) of the task's served fields in the
contract's order (fields.py), every timestamp RFC 3339 in UTC with six fractional digits and `Z`: the bytes
the API has always sent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from operator import attrgetter
from typing import NamedTuple

import orjson

from tasktrail.domain.encoding import format_timestamp
from tasktrail.domain.fields import SERVED_FIELDS, Kind
from tasktrail.domain.state import TaskState

_UTC_OFFSET = timedelta(0)
# The served fields in the contract's order, and those of them that are instants.
_SERVED_NAMES = tuple(field.name for field in SERVED_FIELDS)
_served_values = attrgetter(*_SERVED_NAMES)
_INSTANTS = tuple(field.name for field in SERVED_FIELDS if field.kind is Kind.INSTANT)


class TaskDocument(NamedTuple):
    """What the API sends for a task: its JSON, as text, and its ETag (`"<version>"`)."""

    body: str
    etag: str


def task_document(task: TaskState) -> TaskDocument:
    """The task's JSON document and ETag, exactly as the API serves them."""
    # One C call for the values, then the instants made text (the tags, a tuple, are an array).
    document = dict(zip(_SERVED_NAMES, _served_values(task), strict=True))
    for name in _INSTANTS:
        document[name] = _instant(document[name])
    body = orjson.dumps(document, default=_other_value, option=orjson.OPT_UTC_Z)
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
