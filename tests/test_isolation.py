"""Invariant 6: no request can read or change another user's data, nor learn that it exists."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, func, select

from tasktrail.schema import events
from tests.conftest import Api

# Every task route by name: method, suffix under /api/{user}/tasks ({id}: a task id), JSON body.
Route = tuple[str, str, dict[str, Any] | None]
ROUTES: dict[str, Route] = {
    "list": ("GET", "", None),
    "create": ("POST", "", {"title": "planted"}),
    "get": ("GET", "/{id}", None),
    "put": ("PUT", "/{id}", {"title": "replaced", "priority": 3}),
    "patch": ("PATCH", "/{id}", {"title": "patched"}),
    "complete-toggle": ("PATCH", "/{id}/complete", None),
    "complete-set": ("PATCH", "/{id}/complete", {"completed": True}),
    "delete": ("DELETE", "/{id}", None),
    "restore": ("POST", "/{id}/restore", None),
    "events": ("GET", "/{id}/events", None),
}
ON_A_TASK = [name for name, route in ROUTES.items() if "{id}" in route[1]]
# The routes that may still find a deleted task: writes, and the history.
ON_A_DELETED_TASK = [name for name in ON_A_TASK if ROUTES[name][0] != "GET" or name == "events"]


def routes(names: list[str]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(
        ("method", "suffix", "body"), [ROUTES[name] for name in names], ids=names
    )


def _send(api: Api, method: str, suffix: str, body: dict[str, Any] | None, task_id: str) -> Any:
    return api.request(method, suffix.format(id=task_id), json=body)


def _comparable(response: httpx2.Response, task_id: str) -> dict[str, Any]:
    """What a client could compare: status, headers and body, with the asked id and the
    per-request fields (`request_id`, `instance`, `X-Request-ID`) taken out."""
    body = response.json()
    assert body["instance"] == response.request.url.path
    assert body["request_id"] == response.headers["x-request-id"]
    stripped = {
        key: value.replace(task_id, "<id>") if isinstance(value, str) else value
        for key, value in body.items()
        if key not in ("request_id", "instance")
    }
    headers = {
        name: value for name, value in response.headers.items() if name.lower() != "x-request-id"
    }
    return {"status": response.status_code, "headers": headers, "body": stripped}


def _event_count(engine: Engine, user_id: str) -> int:
    with engine.connect() as conn:
        count = conn.scalar(
            select(func.count()).select_from(events).where(events.c.user_id == user_id)
        )
    assert count is not None
    return count


def _snapshot(api: Api, task_id: str) -> tuple[Any, list[dict[str, Any]]]:
    """A task as its owner sees it (live or not) and its whole history."""
    return api.get(task_id).json(), api.history(task_id)


@pytest.fixture
def owner(api: Api) -> Api:
    """User A, whose data the others try to reach."""
    return api


@pytest.fixture
def other(make_api: Callable[[], Api]) -> Api:
    """User B, with a valid token for B's own path."""
    return make_api()


@routes(ON_A_TASK)
def test_another_users_live_task_is_404_exactly_like_a_task_that_never_existed(
    owner: Api, other: Api, engine: Engine, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    """B asking on B's path for A's live task gets the very same 404 as for a random UUID."""
    task = owner.create(title="A's secret", description="private", tags=["a"])
    owner.request("PATCH", f"/{task['id']}", json={"priority": 2})
    before = _snapshot(owner, task["id"])
    never = str(uuid.uuid4())

    theirs = _send(other, method, suffix, body, task["id"])
    missing = _send(other, method, suffix, body, never)

    assert theirs.status_code == 404, theirs.text
    assert theirs.headers["content-type"] == "application/problem+json"
    assert _comparable(theirs, task["id"]) == _comparable(missing, never)
    assert "A's secret" not in theirs.text
    assert _snapshot(owner, task["id"]) == before
    assert before[1][-1]["version"] == 2
    assert _event_count(engine, other.user_id) == 0


@routes(ON_A_DELETED_TASK)
def test_another_users_deleted_task_is_404_exactly_like_a_task_that_never_existed(
    owner: Api, other: Api, engine: Engine, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    """A's deleted task (restorable and with a history for A) is a plain 404 for B, never a 409."""
    task = owner.create(title="A's deleted one")
    assert owner.request("DELETE", f"/{task['id']}").status_code == 204
    history = owner.history(task["id"])
    never = str(uuid.uuid4())

    theirs = _send(other, method, suffix, body, task["id"])
    missing = _send(other, method, suffix, body, never)

    assert theirs.status_code == 404, theirs.text
    assert _comparable(theirs, task["id"]) == _comparable(missing, never)
    assert owner.history(task["id"]) == history
    assert _event_count(engine, other.user_id) == 0
    restored = owner.request("POST", f"/{task['id']}/restore")
    assert restored.status_code == 200, restored.text
    assert restored.json()["version"] == 3


def test_a_users_list_never_shows_another_users_tasks(owner: Api, other: Api) -> None:
    """B's list, in every status filter, holds B's tasks only and X-Total-Count counts B's only."""
    a_live = owner.create(title="A pending")
    a_done = owner.create(title="A completed", completed=True)
    a_gone = owner.create(title="A deleted")
    assert owner.request("DELETE", f"/{a_gone['id']}").status_code == 204
    b_live = other.create(title="B pending")
    b_done = other.create(title="B completed", completed=True)
    b_gone = other.create(title="B deleted")
    assert other.request("DELETE", f"/{b_gone['id']}").status_code == 204

    expected = {
        "all": {b_live["id"], b_done["id"]},
        "pending": {b_live["id"]},
        "completed": {b_done["id"]},
        "deleted": {b_gone["id"]},
    }
    for status, ids in expected.items():
        response = other.request("GET", params={"status": status})
        assert response.status_code == 200, response.text
        listed = response.json()
        assert {task["id"] for task in listed} == ids, status
        assert {task["user_id"] for task in listed} == {other.user_id}, status
        assert response.headers["X-Total-Count"] == str(len(ids)), status
    a_ids = {a_live["id"], a_done["id"], a_gone["id"]}
    assert a_ids.isdisjoint(task["id"] for task in other.request("GET").json())


def test_a_users_list_is_empty_when_only_others_have_tasks(owner: Api, other: Api) -> None:
    """A user with no tasks sees an empty list and a total of 0, however many others have."""
    for n in range(3):
        owner.create(title=f"A {n}")
    response = other.request("GET")
    assert response.status_code == 200, response.text
    assert response.json() == []
    assert response.headers["X-Total-Count"] == "0"


@routes(list(ROUTES))
def test_a_token_on_another_users_path_is_403_on_every_route(
    owner: Api, other: Api, engine: Engine, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    """A's valid token on B's path is 403 for every task route, and nothing changes for anyone."""
    task = other.create(title="B's task")
    before = _snapshot(other, task["id"])
    b_events = _event_count(engine, other.user_id)
    intruder = Api(other.client, other.user_id)
    intruder.headers = owner.headers

    response = _send(intruder, method, suffix, body, task["id"])

    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 403
    assert problem["instance"] == other.url(suffix.format(id=task["id"]))
    assert "B's task" not in response.text
    assert _snapshot(other, task["id"]) == before
    assert _event_count(engine, other.user_id) == b_events
    assert _event_count(engine, owner.user_id) == 0
    listed = other.request("GET")
    assert [item["id"] for item in listed.json()] == [task["id"]]
    assert listed.headers["X-Total-Count"] == "1"


@routes(ON_A_TASK)
def test_the_403_on_another_users_path_does_not_depend_on_the_task(
    owner: Api, other: Api, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    """A's token on B's path gets the same 403 for B's real task, a random UUID and a non-UUID."""
    task = other.create(title="B's task")
    intruder = Api(other.client, other.user_id)
    intruder.headers = owner.headers
    asked = [task["id"], str(uuid.uuid4()), "not-a-uuid"]

    answers = [_comparable(_send(intruder, method, suffix, body, ask), ask) for ask in asked]

    assert answers[0]["status"] == 403
    assert answers[1] == answers[0]
    assert answers[2]["status"] == answers[0]["status"]
    assert answers[2]["body"] == answers[0]["body"]
