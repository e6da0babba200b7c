"""HTTP semantics of deleting and restoring a task, and the versions and history it leaves."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from tests.conftest import Api
from tests.task_helpers import assert_problem, current, over_writes, types_of

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
