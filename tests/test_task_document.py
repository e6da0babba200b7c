"""The stored document is the task's JSON, byte for byte as the API has always sent it."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from sqlalchemy import Engine, select

from tasktrail.domain.document import task_document
from tasktrail.domain.encoding import format_timestamp
from tasktrail.domain.state import TaskState
from tasktrail.schema import tasks
from tests.conftest import Api

KEYS = ["id", "user_id", "title", "description", "completed", "status", "due_at", "priority",
        "tags", "created_at", "updated_at", "completed_at", "version"]  # fmt: skip
AWKWARD_FIELDS: list[dict[str, Any]] = [
    {"title": "Ünïcödé ☕ 🎉𝄞 e\u0301", "description": None, "tags": []},
    {
        "title": 'quotes " and \\ backslash',
        "description": "tab\t new\nline \x1f </script>",
        "tags": ["ü", "🎉", 'a"b', "c\\d"],
        "priority": 3,
    },
    {"title": "due", "due_at": "2031-01-01T00:00:00+01:00", "tags": ["home"], "priority": 1},
    {"title": "x" * 200, "description": "é" * 1000, "due_at": "0999-03-04T05:06:07.000008Z"},
]


def stored(engine: Engine, task_id: str) -> tuple[str, str]:
    with engine.connect() as conn:
        row = conn.execute(
            select(tasks.c.body, tasks.c.etag).where(tasks.c.id == uuid.UUID(task_id))
        ).one()
    return row.body, row.etag


def previous_task_json(task: TaskState) -> bytes:
    """How the API serialised a task before documents were stored (api/contract/representation.py),
    kept here as the reference the stored bytes must still equal."""

    def moment(value: datetime | None) -> str | None:
        return None if value is None else format_timestamp(value)

    return orjson.dumps(
        {
            "id": task.id,
            "user_id": task.user_id,
            "title": task.title,
            "description": task.description,
            "completed": task.completed,
            "status": task.status,
            "due_at": moment(task.due_at),
            "priority": task.priority,
            "tags": list(task.tags),
            "created_at": format_timestamp(task.created_at),
            "updated_at": format_timestamp(task.updated_at),
            "completed_at": moment(task.completed_at),
            "version": task.version,
        }
    )


@pytest.mark.parametrize("fields", AWKWARD_FIELDS, ids=["unicode", "escapes", "due", "longest"])
def test_every_answer_sends_the_stored_document_and_etag(
    api: Api, engine: Engine, fields: dict[str, Any]
) -> None:
    """Create, get, list, update and complete send exactly the row's document and ETag."""
    created = api.request("POST", json=fields)
    task_id = created.json()["id"]
    assert (created.content.decode(), created.headers["ETag"]) == stored(engine, task_id)
    got = api.get(task_id)
    assert (got.content.decode(), got.headers["ETag"]) == stored(engine, task_id)
    assert got.headers["content-type"] == "application/json"
    listed = api.request("GET")
    assert listed.content == f"[{stored(engine, task_id)[0]}]".encode()
    for method, suffix, body in (("PATCH", "", {"priority": 2}), ("PATCH", "/complete", None)):
        changed = api.request(method, f"/{task_id}{suffix}", json=body)
        assert (changed.content.decode(), changed.headers["ETag"]) == stored(engine, task_id)


@pytest.mark.parametrize("fields", AWKWARD_FIELDS, ids=["unicode", "escapes", "due", "longest"])
def test_a_tasks_json_keeps_its_keys_order_and_values(api: Api, fields: dict[str, Any]) -> None:
    """The keys in the contract's order, the values as given, timestamps with six digits and Z."""
    task = api.create(**fields)
    body = api.get(task["id"]).content
    served = orjson.loads(body)
    assert list(served) == KEYS
    assert served["title"] == fields["title"]
    assert served["description"] == fields.get("description")
    assert served["tags"] == fields.get("tags", [])
    assert served["priority"] == fields.get("priority", 0)
    assert (served["completed"], served["status"], served["version"]) == (False, "pending", 1)
    assert served["completed_at"] is None
    due = fields.get("due_at")
    expected_due = None if due is None else format_timestamp(datetime.fromisoformat(due))
    assert served["due_at"] == expected_due
    assert served["created_at"] == served["updated_at"]
    assert datetime.fromisoformat(served["created_at"]).tzinfo == UTC
    assert len(served["created_at"]) == len("2026-11-24T10:15:00.000000Z")
    # Compact, non-ASCII raw: the bytes orjson writes for the same values.
    assert body == orjson.dumps(served)


def a_state(**changes: Any) -> TaskState:
    fields: dict[str, Any] = {
        "id": "0193a3c2-7f00-7000-8000-0000000000aa",
        "user_id": "user@example.com",
        "title": 'Ünïcödé "quoted" \\ ☕',
        "description": None,
        "completed": True,
        "due_at": datetime(2031, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=1))),
        "priority": 2,
        "tags": ("home", "🎉"),
        "created_at": datetime(2026, 11, 24, 10, 15, tzinfo=UTC),
        "updated_at": datetime(2026, 11, 24, 10, 15, 0, 1, tzinfo=UTC),
        "completed_at": datetime(2026, 11, 24, 10, 15, 0, 1, tzinfo=UTC),
        "deleted_at": None,
        "version": 12,
    }
    fields.update(changes)
    return TaskState(**fields)


@pytest.mark.parametrize(
    "state",
    [
        a_state(),
        a_state(completed=False, completed_at=None, due_at=None, tags=(), description="d\x00"),
        a_state(created_at=datetime(1, 1, 1, tzinfo=UTC), title="", version=1),
    ],
    ids=["completed", "pending", "year-1"],
)
def test_the_document_is_the_json_the_api_sent_before(state: TaskState) -> None:
    """The projector's document equals the previous serialisation, and the ETag the version."""
    document = task_document(state)
    assert document.body.encode() == previous_task_json(state)
    assert document.etag == f'"{state.version}"'


INSTANTS = [
    datetime(2026, 11, 24, 10, 15, 0, 123456, tzinfo=UTC),
    datetime(2026, 11, 24, 10, 15, tzinfo=UTC),
    datetime(2026, 11, 24, 10, 15, 0, 1, tzinfo=ZoneInfo("Etc/UTC")),  # what psycopg hands back
    datetime(2026, 11, 24, 10, 15, 0, 10, tzinfo=timezone(timedelta(0))),
    datetime(1, 1, 1, 0, 0, 0, 5, tzinfo=UTC),
    datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 1, 1, 0, 30, 0, 500, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(2026, 3, 29, 1, 0, 0, 7, tzinfo=ZoneInfo("Europe/Paris")),
    datetime(2026, 3, 29, 1, 0, tzinfo=timezone(timedelta(hours=-9))),
]


def random_instants(count: int) -> list[datetime]:
    rng = random.Random(7)
    start = datetime(1, 1, 2, tzinfo=UTC)
    span = int((datetime(9999, 12, 30, tzinfo=UTC) - start).total_seconds())
    return [
        start
        + timedelta(
            seconds=rng.randrange(span), microseconds=rng.randrange(2) * rng.randrange(10**6)
        )
        for _ in range(count)
    ]


def test_the_documents_timestamps_are_format_timestamps_text() -> None:
    """Whatever the offset, zone, year or fraction, every timestamp of a document is the text
    `format_timestamp` writes (the document leaves UTC instants to orjson's own formatting)."""
    for moment in [*INSTANTS, *random_instants(2_000)]:
        state = a_state(due_at=moment, created_at=moment, updated_at=moment, completed_at=moment)
        served = orjson.loads(task_document(state).body)
        expected = format_timestamp(moment)
        assert [
            served[name] for name in ("due_at", "created_at", "updated_at", "completed_at")
        ] == [expected] * 4, moment


def test_a_naive_timestamp_has_no_document() -> None:
    """A naive datetime is refused, as format_timestamp refuses it."""
    naive = datetime(2026, 1, 1, 0, 0, 0, 1)  # noqa: DTZ001 (the naive datetime under test)
    with pytest.raises(ValueError, match="naive"):
        task_document(a_state(due_at=naive))


def test_as_of_sends_the_document_of_the_folded_state(api: Api, engine: Engine) -> None:
    """Time travel serialises the folded state with the projector's function: at the present
    instant its bytes are the stored document's."""
    task = api.create(title="then", tags=["a"])
    api.request("PATCH", f"/{task['id']}", json={"title": "now ☕"})
    now = format_timestamp(datetime.now(UTC) + timedelta(seconds=1))
    past = api.get(task["id"], params={"as_of": now})
    assert (past.content.decode(), past.headers["ETag"]) == stored(engine, task["id"])
    listed = api.request("GET", params={"as_of": now})
    assert listed.content == f"[{stored(engine, task['id'])[0]}]".encode()


def test_a_datetime_subclass_is_written_like_a_datetime() -> None:
    """orjson formats `datetime` only: a subclass's instant (freezegun's) gets the same text."""

    class Instant(datetime):
        pass

    moment = Instant(2026, 11, 24, 10, 15, 0, 123456, tzinfo=UTC)
    served = orjson.loads(task_document(a_state(created_at=moment)).body)
    assert served["created_at"] == "2026-11-24T10:15:00.123456Z"
