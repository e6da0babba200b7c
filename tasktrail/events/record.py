"""An event as the service hands it out: the fields of the contract, as they were hashed."""

from __future__ import annotations

from typing import Any

from tasktrail.events.encoding import format_timestamp
from tasktrail.events.types import Event


def event_record(event: Event) -> dict[str, Any]:
    """The event as the API serves it."""
    return {
        "position": event.position,
        "user_id": event.user_id,
        "seq": event.seq,
        "task_id": event.task_id,
        "version": event.version,
        "type": event.type,
        "schema_version": event.schema_version,
        "data": event.data,
        "data_hash": event.data_hash,
        "occurred_at": format_timestamp(event.occurred_at),
        "actor": event.actor,
        "request_id": event.request_id,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }
