"""HTTP semantics of creating and reading a task, as api.md fixes them: fields, ids, ETags."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import Api
from tests.task_helpers import TIMESTAMP, types_of

EDITABLE = {"title", "description", "completed", "due_at", "priority", "tags"}
READ_ONLY = {"id", "user_id", "status", "created_at", "updated_at", "completed_at", "version"}


# --- create ---------------------------------------------------------------------------------


def test_create_answers_201_with_location_and_etag(api: Api) -> None:
    """POST answers 201, a Location with the task's path and ETag "1"."""
    response = api.request("POST", json={"title": "Buy milk"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/api/{api.user_id}/tasks/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert response.headers["content-type"] == "application/json"


def test_a_created_task_has_every_field_with_its_default(api: Api) -> None:
    """A task created from a title alone has every contract field, with the defaults."""
    body = api.create(title="Buy milk")
    assert set(body) == EDITABLE | READ_ONLY
    assert body["user_id"] == api.user_id
    assert body["title"] == "Buy milk"
    assert body["description"] is None
    assert body["completed"] is False
    assert body["status"] == "pending"
    assert body["due_at"] is None
    assert body["priority"] == 0
    assert body["tags"] == []
    assert body["completed_at"] is None
    assert body["version"] == 1


def test_a_created_task_id_is_a_uuid_version_7(api: Api) -> None:
    """The server makes the id: a canonical UUID of version 7."""
    task_id = api.create()["id"]
    parsed = uuid.UUID(task_id)
    assert parsed.version == 7
    assert str(parsed) == task_id


def test_ids_of_successive_tasks_sort_by_creation(api: Api) -> None:
    """Version 7 ids sort by creation time."""
    ids = [api.create(title=f"t{n}")["id"] for n in range(3)]
    assert ids == sorted(ids)


def test_created_timestamps_have_six_fractional_digits_and_are_equal(api: Api) -> None:
    """created_at and updated_at are RFC 3339 UTC with six fractional digits, equal at create."""
    body = api.create()
    assert TIMESTAMP.match(body["created_at"]), body["created_at"]
    assert body["created_at"] == body["updated_at"]


def test_a_task_created_completed_has_completed_at(api: Api) -> None:
    """POST with completed true makes a completed task with completed_at set."""
    body = api.create(completed=True)
    assert body["completed"] is True
    assert body["status"] == "completed"
    assert body["completed_at"] == body["created_at"]
    assert TIMESTAMP.match(body["completed_at"])
    assert types_of(api, body["id"]) == ["TaskCreated"]


def test_create_keeps_every_editable_field(api: Api) -> None:
    """The fields sent on create come back as sent (due_at in UTC with six digits)."""
    body = api.create(
        title="Plan trip",
        description="book the train",
        due_at="2026-11-24T10:15:00Z",
        priority=3,
        tags=["travel", "home"],
    )
    assert body["description"] == "book the train"
    assert body["due_at"] == "2026-11-24T10:15:00.000000Z"
    assert body["priority"] == 3
    assert body["tags"] == ["travel", "home"]


# --- read, conditional GET ------------------------------------------------------------------


def test_get_answers_the_task_with_its_etag(api: Api) -> None:
    """GET of a live task answers 200, its body and ETag "<version>"."""
    created = api.create(title="Read me")
    response = api.get(created["id"])
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["etag"] == '"1"'


@pytest.mark.parametrize(
    "if_none_match",
    ['"1"', 'W/"1"', "*", '"7", "1"'],
    ids=["strong", "weak", "star", "list"],
)
def test_if_none_match_with_the_current_etag_is_304(api: Api, if_none_match: str) -> None:
    """If-None-Match naming the current ETag (weakly compared) or `*` answers 304, no body."""
    task_id = api.create()["id"]
    response = api.get(task_id, headers={"If-None-Match": if_none_match})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == '"1"'


def test_if_none_match_with_an_old_etag_is_200(api: Api) -> None:
    """If-None-Match with a superseded ETag answers 200 and the current task."""
    task_id = api.create()["id"]
    api.request("PATCH", f"/{task_id}", json={"title": "renamed"})
    response = api.get(task_id, headers={"If-None-Match": '"1"'})
    assert response.status_code == 200
    assert response.headers["etag"] == '"2"'
    assert response.json()["title"] == "renamed"
