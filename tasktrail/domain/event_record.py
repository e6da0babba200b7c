"""An event as the service hands it out: the fields of the contract, as they were hashed.

`EVENT_FIELDS` declares them once, in the contract's order, with the type each is served as:
the record's keys, the CSV export's columns and the API's `EventOut` schema derive from it.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from tasktrail.domain.encoding import format_timestamp
from tasktrail.domain.events import Event

EVENT_FIELDS: tuple[tuple[str, Any], ...] = (
    ("position", int),
    ("user_id", str),
    ("seq", int),
    ("task_id", str),
    ("version", int),
    ("type", str),
    ("schema_version", int),
    ("data", dict[str, Any]),
    ("data_hash", str),
    ("occurred_at", str),  # RFC 3339, six fractional digits, `Z`: the text that was hashed
    ("actor", str),
    ("request_id", str | None),
    ("prev_hash", str),
    ("hash", str),
)
EVENT_FIELD_NAMES: tuple[str, ...] = tuple(name for name, _ in EVENT_FIELDS)
_FIELD_VALUES = attrgetter(*EVENT_FIELD_NAMES)  # one C call for all of them: exports are long


def event_record(event: Event) -> dict[str, Any]:
    """The event as the API serves it."""
    record = dict(zip(EVENT_FIELD_NAMES, _FIELD_VALUES(event), strict=True))
    record["occurred_at"] = format_timestamp(event.occurred_at)
    return record
