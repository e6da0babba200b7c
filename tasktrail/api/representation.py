"""What the API sends: tasks and events as JSON, timestamps with six fractional digits."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from starlette.responses import Response

from tasktrail.events.encoding import format_timestamp
from tasktrail.events.record import event_record
from tasktrail.events.types import Event
from tasktrail.projections.state import TaskState


def _moment(value: datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


def task_body(task: TaskState) -> dict[str, Any]:
    return {
        "id": task.id,
        "user_id": task.user_id,
        "title": task.title,
        "description": task.description,
        "completed": task.completed,
        "status": task.status,
        "due_at": _moment(task.due_at),
        "priority": task.priority,
        "tags": list(task.tags),
        "created_at": format_timestamp(task.created_at),
        "updated_at": format_timestamp(task.updated_at),
        "completed_at": _moment(task.completed_at),
        "version": task.version,
    }


def event_body(event: Event) -> dict[str, Any]:
    """An event exactly as written: the served text is the text that was hashed."""
    return event_record(event)


def etag(task: TaskState) -> str:
    return f'"{task.version}"'


def json_response(
    body: Any,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    *,
    sort_keys: bool = False,
) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SORT_KEYS if sort_keys else 0),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def events_response(events: list[Event], headers: Mapping[str, str] | None = None) -> Response:
    """Events with their keys sorted at every depth, as hashed: the same bytes on both engines
    (PostgreSQL's jsonb keeps its own key order)."""
    return json_response([event_body(event) for event in events], 200, headers, sort_keys=True)
