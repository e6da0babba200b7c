"""HTTP semantics of changing a task, as api.md fixes them: PUT, PATCH, If-Match, completion."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api
from tests.task_helpers import TIMESTAMP, assert_problem, current, over_writes, types_of

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
    [
        ('W/"1"', 412),
        ("1", 412),
        ("garbage", 412),
        ("*", 200),
        ('"7", "1"', 200),
        ('"01"', 412),  # not "1": strong comparison is of the exact text
        ('"1 "', 412),
        ('"+1"', 412),
        ('"' + "9" * 5000 + '"', 412),  # past int()'s digit limit: was a 500
        ('"' + "0" * 4999 + '1"', 412),
    ],
    ids=[
        "weak",
        "unquoted",
        "garbage",
        "star",
        "list",
        "leading-zero",
        "space",
        "plus",
        "many-digits",
        "many-zeros",
    ],
)
def test_if_match_compares_strongly(api: Api, if_match: str, status: int) -> None:
    """If-Match uses the strong comparison: a weak or unparsable tag never matches, `*` does."""
    task_id = api.create()["id"]
    response = api.request(
        "PATCH", f"/{task_id}", json={"priority": 1}, headers={"If-Match": if_match}
    )
    assert response.status_code == status, response.text
    assert current(api, task_id)["version"] == (2 if status == 200 else 1)


@pytest.mark.parametrize("tag", [b'"\xb2"', b'"\xd9\xa3"', b'"1\xb9"'])
def test_if_match_with_digits_that_are_not_ascii_is_412(api: Api, tag: bytes) -> None:
    """Latin-1 superscripts pass str.isdigit() and then fail int(): that was a 500."""
    task_id = api.create()["id"]
    response = api.request("PATCH", f"/{task_id}", json={"priority": 1}, headers={"If-Match": tag})
    assert_problem(response, 412)
    assert api.get(task_id).json()["priority"] == 0


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


def test_complete_with_an_empty_object_toggles_there_and_back(api: Api) -> None:
    """`{}` is what frontends written for "toggle completion" send: it toggles, as no body does."""
    task_id = api.create()["id"]
    first = api.request("PATCH", f"/{task_id}/complete", json={})
    assert first.status_code == 200, first.text
    assert first.json()["completed"] is True
    assert first.json()["version"] == 2
    second = api.request("PATCH", f"/{task_id}/complete", json={})
    assert second.status_code == 200, second.text
    assert second.json()["completed"] is False
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
