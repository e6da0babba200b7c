"""HTTP semantics of the task routes, as api.md fixes them: statuses, headers, bodies, history."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from tests.conftest import Api

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance", "request_id"}
EDITABLE = {"title", "description", "completed", "due_at", "priority", "tags"}
READ_ONLY = {"id", "user_id", "status", "created_at", "updated_at", "completed_at", "version"}
WRITES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "put": ("PUT", "", {"title": "new"}),
    "patch": ("PATCH", "", {"title": "new"}),
    "toggle": ("PATCH", "/complete", None),
    "complete": ("PATCH", "/complete", {"completed": True}),
    "delete": ("DELETE", "", None),
}


def over_writes(*names: str) -> pytest.MarkDecorator:
    """Parametrize a test over some of the task writes: (method, suffix, body)."""
    return pytest.mark.parametrize(
        ("method", "suffix", "body"), [WRITES[name] for name in names], ids=list(names)
    )


def assert_problem(response: httpx2.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem of this status, without `errors` unless 422."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    expected = PROBLEM_FIELDS | ({"errors"} if status == 422 else set())
    assert set(body) == expected
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def types_of(api: Api, task_id: str) -> list[str]:
    return [event["type"] for event in api.history(task_id)]


def current(api: Api, task_id: str) -> dict[str, Any]:
    response = api.get(task_id)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


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


# --- PUT ------------------------------------------------------------------------------------


def test_put_replaces_fields_and_resets_the_absent_ones(api: Api) -> None:
    """PUT sets what it sends and resets absent optional fields to their defaults."""
    created = api.create(
        title="old", description="d", due_at="2026-01-01T00:00:00Z", priority=2, tags=["a"]
    )
    response = api.request("PUT", f"/{created['id']}", json={"title": "new", "priority": 1})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["title"] == "new"
    assert body["priority"] == 1
    assert body["description"] is None
    assert body["due_at"] is None
    assert body["tags"] == []
    assert body["version"] == 2
    assert response.headers["etag"] == '"2"'
    assert body["created_at"] == created["created_at"]
    assert TIMESTAMP.match(body["updated_at"])
    assert body["updated_at"] >= created["updated_at"]
    assert current(api, created["id"]) == body


def test_put_without_completed_leaves_completion_alone(api: Api) -> None:
    """A PUT that does not mention `completed` keeps a completed task completed."""
    created = api.create(completed=True)
    body = api.request("PUT", f"/{created['id']}", json={"title": "still done"}).json()
    assert body["completed"] is True
    assert body["completed_at"] == created["completed_at"]
    assert types_of(api, created["id"]) == ["TaskCreated", "TaskUpdated"]


def test_put_with_completed_appends_updated_then_completed(api: Api) -> None:
    """PUT changing fields and completion appends TaskUpdated, then TaskCompleted."""
    task_id = api.create(title="old")["id"]
    response = api.request("PUT", f"/{task_id}", json={"title": "new", "completed": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["completed"] is True
    assert body["status"] == "completed"
    assert body["completed_at"] is not None
    assert body["version"] == 3
    history = api.history(task_id)
    assert [event["type"] for event in history] == ["TaskCreated", "TaskUpdated", "TaskCompleted"]
    assert history[1]["data"] == {"changes": {"title": "new"}}


# --- PATCH ----------------------------------------------------------------------------------


def test_patch_leaves_absent_fields_unchanged(api: Api) -> None:
    """A merge patch changes only the fields it names."""
    created = api.create(title="t", description="d", priority=2, tags=["x"])
    body = api.request("PATCH", f"/{created['id']}", json={"priority": 3}).json()
    assert body["priority"] == 3
    assert body["title"] == "t"
    assert body["description"] == "d"
    assert body["tags"] == ["x"]
    assert api.history(created["id"])[-1]["data"] == {"changes": {"priority": 3}}


@pytest.mark.parametrize(
    ("field", "cleared"),
    [("description", None), ("due_at", None), ("tags", []), ("priority", 0)],
    ids=["description", "due_at", "tags", "priority"],
)
def test_patch_null_clears_a_field(api: Api, field: str, cleared: Any) -> None:
    """null in a merge patch clears description/due_at and resets tags and priority."""
    created = api.create(
        title="t", description="d", due_at="2026-05-01T08:00:00Z", priority=2, tags=["x"]
    )
    response = api.request("PATCH", f"/{created['id']}", json={field: None})
    assert response.status_code == 200, response.text
    assert response.json()[field] == cleared
    assert response.json()["version"] == 2


def test_patch_title_null_is_422(api: Api) -> None:
    """title cannot be cleared: null is 422 and the task is unchanged."""
    task_id = api.create(title="keep")["id"]
    body = assert_problem(api.request("PATCH", f"/{task_id}", json={"title": None}), 422)
    assert [error["loc"] for error in body["errors"]] == [["body", "title"]]
    assert current(api, task_id)["title"] == "keep"


def test_patch_accepts_merge_patch_content_type(api: Api) -> None:
    """PATCH takes application/merge-patch+json as well as application/json."""
    task_id = api.create()["id"]
    response = api.request(
        "PATCH",
        f"/{task_id}",
        content=b'{"title": "merged"}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["title"] == "merged"


@pytest.mark.parametrize(
    "patch",
    [{}, {"title": "same"}, {"description": None}, {"tags": ["a"], "priority": 1}],
    ids=["empty", "same-title", "null-on-null", "same-values"],
)
def test_a_patch_that_changes_nothing_appends_nothing(api: Api, patch: dict[str, Any]) -> None:
    """A patch that changes nothing is 200 with the same version and no new event."""
    created = api.create(title="same", tags=["a"], priority=1)
    response = api.request("PATCH", f"/{created['id']}", json=patch)
    assert response.status_code == 200, response.text
    assert response.json() == created
    assert response.headers["etag"] == '"1"'
    assert types_of(api, created["id"]) == ["TaskCreated"]


# --- If-Match -------------------------------------------------------------------------------


@over_writes("put", "patch", "toggle")
def test_if_match_with_the_current_etag_succeeds(
    api: Api, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    """A write with If-Match naming the current ETag goes through."""
    task_id = api.create()["id"]
    response = api.request(method, f"/{task_id}{suffix}", json=body, headers={"If-Match": '"1"'})
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2


@over_writes("put", "patch", "toggle", "complete", "delete")
def test_a_stale_if_match_is_412_and_changes_nothing(
    api: Api, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    """If-Match with a superseded ETag is a 412 problem and the task stays as it was."""
    task_id = api.create(title="v1")["id"]
    api.request("PATCH", f"/{task_id}", json={"title": "v2"})
    before = current(api, task_id)
    response = api.request(method, f"/{task_id}{suffix}", json=body, headers={"If-Match": '"1"'})
    assert_problem(response, 412)
    assert current(api, task_id) == before
    assert types_of(api, task_id) == ["TaskCreated", "TaskUpdated"]


@pytest.mark.parametrize(
    ("if_match", "status"),
    [('W/"1"', 412), ("1", 412), ("garbage", 412), ("*", 200), ('"7", "1"', 200)],
    ids=["weak", "unquoted", "garbage", "star", "list"],
)
def test_if_match_compares_strongly(api: Api, if_match: str, status: int) -> None:
    """If-Match uses the strong comparison: a weak or unparsable tag never matches, `*` does."""
    task_id = api.create()["id"]
    response = api.request(
        "PATCH", f"/{task_id}", json={"priority": 1}, headers={"If-Match": if_match}
    )
    assert response.status_code == status, response.text
    assert current(api, task_id)["version"] == (2 if status == 200 else 1)


def test_delete_with_the_current_if_match_is_204(api: Api) -> None:
    """DELETE with If-Match naming the current ETag deletes."""
    task_id = api.create()["id"]
    response = api.request("DELETE", f"/{task_id}", headers={"If-Match": '"1"'})
    assert response.status_code == 204
    assert api.get(task_id).status_code == 404


# --- completion -----------------------------------------------------------------------------


def test_complete_without_a_body_toggles_there_and_back(api: Api) -> None:
    """PATCH .../complete with no body completes, and a second one reopens."""
    task_id = api.create()["id"]
    first = api.request("PATCH", f"/{task_id}/complete")
    assert first.status_code == 200, first.text
    done = first.json()
    assert done["completed"] is True
    assert done["status"] == "completed"
    assert TIMESTAMP.match(done["completed_at"])
    assert first.headers["etag"] == '"2"'
    second = api.request("PATCH", f"/{task_id}/complete")
    assert second.status_code == 200, second.text
    reopened = second.json()
    assert reopened["completed"] is False
    assert reopened["status"] == "pending"
    assert reopened["completed_at"] is None
    assert reopened["version"] == 3
    assert types_of(api, task_id) == ["TaskCreated", "TaskCompleted", "TaskReopened"]


@pytest.mark.parametrize("completed", [True, False], ids=["complete", "reopen"])
def test_complete_with_a_body_sets_completion(api: Api, completed: bool) -> None:
    """{"completed": x} sets completion to x whatever it was."""
    task_id = api.create(completed=not completed)["id"]
    response = api.request("PATCH", f"/{task_id}/complete", json={"completed": completed})
    assert response.status_code == 200, response.text
    assert response.json()["completed"] is completed
    assert (response.json()["completed_at"] is not None) is completed
    assert response.json()["version"] == 2


@pytest.mark.parametrize("completed", [True, False], ids=["completed", "pending"])
def test_setting_the_completion_a_task_has_is_a_harmless_no_op(api: Api, completed: bool) -> None:
    """Setting the completion that already holds is 200 with version, completed_at, no event."""
    created = api.create(completed=completed)
    response = api.request("PATCH", f"/{created['id']}/complete", json={"completed": completed})
    assert response.status_code == 200, response.text
    assert response.json() == created
    assert response.headers["etag"] == '"1"'
    assert types_of(api, created["id"]) == ["TaskCreated"]


# --- delete and restore ---------------------------------------------------------------------


def test_delete_answers_204_without_a_body(api: Api) -> None:
    """DELETE of a live task answers 204 with an empty body."""
    task_id = api.create()["id"]
    response = api.request("DELETE", f"/{task_id}")
    assert response.status_code == 204
    assert response.content == b""


def test_a_deleted_task_is_404_on_get(api: Api) -> None:
    """After DELETE, GET of the task is a 404 problem."""
    task_id = api.create()["id"]
    api.request("DELETE", f"/{task_id}")
    assert_problem(api.get(task_id), 404)


@over_writes("delete", "put", "patch", "toggle", "complete")
def test_writes_to_a_deleted_task_are_404(
    api: Api, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    """A deleted task cannot be deleted again, replaced, patched or completed: 404."""
    task_id = api.create()["id"]
    assert api.request("DELETE", f"/{task_id}").status_code == 204
    assert_problem(api.request(method, f"/{task_id}{suffix}", json=body), 404)
    assert types_of(api, task_id) == ["TaskCreated", "TaskDeleted"]


def test_history_stays_readable_after_delete(api: Api) -> None:
    """GET .../events still answers after deletion, TaskDeleted last."""
    task_id = api.create()["id"]
    api.request("PATCH", f"/{task_id}/complete")
    api.request("DELETE", f"/{task_id}")
    response = api.request("GET", f"/{task_id}/events")
    assert response.status_code == 200
    assert [event["type"] for event in response.json()] == [
        "TaskCreated",
        "TaskCompleted",
        "TaskDeleted",
    ]


def test_restore_brings_a_deleted_task_back(api: Api) -> None:
    """restore answers 200 with the task as it was, one version later, and GET finds it again."""
    created = api.create(title="undo me", tags=["x"], completed=True)
    api.request("DELETE", f"/{created['id']}")
    response = api.request("POST", f"/{created['id']}/restore")
    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["etag"] == '"3"'
    assert body["version"] == 3
    unchanged = ("id", "title", "tags", "completed", "completed_at", "created_at")
    assert {name: body[name] for name in unchanged} == {name: created[name] for name in unchanged}
    assert current(api, created["id"]) == body
    assert types_of(api, created["id"])[-1] == "TaskRestored"


def test_restore_of_a_live_task_is_409(api: Api) -> None:
    """restore of a task that is not deleted is a 409 problem and appends nothing."""
    task_id = api.create()["id"]
    assert_problem(api.request("POST", f"/{task_id}/restore"), 409)
    assert types_of(api, task_id) == ["TaskCreated"]


def test_restore_of_a_task_that_never_existed_is_404(api: Api) -> None:
    """restore of an id no task ever had is a 404 problem."""
    assert_problem(api.request("POST", f"/{uuid.uuid4()}/restore"), 404)


def test_restore_of_another_users_deleted_task_is_404(
    api: Api, make_api: Callable[[], Api]
) -> None:
    """Another user's deleted task is 404 to restore, like one that never existed."""
    other = make_api()
    task_id = other.create()["id"]
    other.request("DELETE", f"/{task_id}")
    assert_problem(api.request("POST", f"/{task_id}/restore"), 404)


# --- versions and the log -------------------------------------------------------------------


def test_version_grows_by_one_per_event(api: Api) -> None:
    """Each event adds exactly one to the version, and the history numbers them 1, 2, 3..."""
    task_id = api.create()["id"]
    writes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("PATCH", "", {"title": "b"}),
        ("PATCH", "/complete", None),
        ("PUT", "", {"title": "c", "completed": False}),
        ("DELETE", "", None),
        ("POST", "/restore", None),
    ]
    for method, suffix, body in writes:
        response = api.request(method, f"/{task_id}{suffix}", json=body)
        assert response.status_code in (200, 204), response.text
    history = api.history(task_id)
    assert [event["version"] for event in history] == list(range(1, len(history) + 1))
    assert [event["type"] for event in history] == [
        "TaskCreated",
        "TaskUpdated",
        "TaskCompleted",
        "TaskUpdated",
        "TaskReopened",
        "TaskDeleted",
        "TaskRestored",
    ]
    assert current(api, task_id)["version"] == len(history)


def test_events_carry_the_request_id_the_client_sent(api: Api) -> None:
    """The event a write appends records the X-Request-ID the response echoes."""
    response = api.request("POST", json={"title": "t"}, headers={"X-Request-ID": "req-abc.1_2"})
    assert response.headers["x-request-id"] == "req-abc.1_2"
    assert api.history(response.json()["id"])[0]["request_id"] == "req-abc.1_2"


def test_updated_at_follows_the_last_event(api: Api) -> None:
    """updated_at is the time of the task's last event, created_at stays."""
    created = api.create()
    body = api.request("PATCH", f"/{created['id']}", json={"title": "later"}).json()
    assert body["created_at"] == created["created_at"]
    assert body["updated_at"] == api.history(created["id"])[-1]["occurred_at"]
