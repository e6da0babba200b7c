"""Listing a user's tasks: order, status filters, limit, keyset paging and X-Total-Count."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tasktrail.database import write_transaction
from tasktrail.domain.commands import CommandContext, CreateTask, TaskFields
from tasktrail.storage.sqlite.transaction import handle
from tests.audit_helpers import settle
from tests.conftest import Api, auth

PROBLEM_JSON = "application/problem+json"
_NEXT_LINK = re.compile(r'^<([^>]+)>; rel="next"$')


def next_url(response: Any) -> str | None:
    """The target of the `Link: <...>; rel="next"` header, or None when there is none."""
    link = response.headers.get("link")
    if link is None:
        return None
    match = _NEXT_LINK.match(link)
    assert match is not None, f"malformed Link header: {link!r}"
    url: str = match.group(1)
    return url


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def follow(api: Api, url: str) -> Any:
    """GET a Link target: the path and query of the absolute URL, with the user's token."""
    parts = urlsplit(url)
    assert parts.path == api.url(), f"the Link points elsewhere: {url}"
    return api.client.get(f"{parts.path}?{parts.query}", headers=api.headers)


def ids(response: Any) -> list[str]:
    return [task["id"] for task in response.json()]


def walk(api: Api, **params: Any) -> tuple[list[str], list[Any]]:
    """Every page from the first to the one without a Link; the ids seen and the responses."""
    response = api.request("GET", params=params)
    responses = [response]
    while (url := next_url(response)) is not None:
        assert response.status_code == 200, response.text
        response = follow(api, url)
        responses.append(response)
    assert response.status_code == 200, response.text
    return [task_id for page in responses for task_id in ids(page)], responses


def create_at(engine: Engine, user_id: str, moment: datetime, task_id: str) -> None:
    """Create a task at an exact instant, through the real command handler with a fixed clock."""
    command = CreateTask(
        context=CommandContext(user_id=user_id, actor=user_id, request_id=None),
        task_id=task_id,
        fields=TaskFields(title=f"tied {task_id[:8]}"),
    )
    with write_transaction(engine) as conn:
        handle(conn, command, clock=lambda: moment)


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def test_an_empty_list_is_200_with_a_total_of_zero_and_no_link(api: Api) -> None:
    """A user without tasks gets 200 [], X-Total-Count 0 and no Link header."""
    response = api.request("GET")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == []
    assert response.headers["x-total-count"] == "0"
    assert "link" not in response.headers


def test_live_tasks_are_listed_newest_first(api: Api) -> None:
    """Without parameters the list holds every live task, by created_at descending."""
    created = [api.create(title=f"task {n}") for n in range(5)]
    response = api.request("GET")
    assert response.status_code == 200
    assert response.json() == list(reversed(created))
    assert response.headers["x-total-count"] == "5"
    assert "link" not in response.headers


def test_tasks_created_at_the_same_instant_are_ordered_by_id_descending(
    api: Api, engine: Engine
) -> None:
    """Ties on created_at are broken by id, descending like the sort."""
    moment = datetime(2031, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    task_ids = [str(uuid.uuid4()) for _ in range(6)]
    for task_id in task_ids:
        create_at(engine, api.user_id, moment, task_id)
    response = api.request("GET")
    assert response.status_code == 200
    assert ids(response) == sorted(task_ids, key=uuid.UUID, reverse=True)
    assert {task["created_at"] for task in response.json()} == {"2031-03-04T05:06:07.123456Z"}


def test_paging_through_tied_created_at_sees_every_task_once_in_order(
    api: Api, engine: Engine
) -> None:
    """The cursor keeps the (created_at, id) position, so a page boundary inside a tie loses nothing."""
    moment = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
    task_ids = [str(uuid.uuid4()) for _ in range(7)]
    for task_id in task_ids:
        create_at(engine, api.user_id, moment, task_id)
    seen, responses = walk(api, limit=2)
    assert seen == sorted(task_ids, key=uuid.UUID, reverse=True)
    assert [len(page.json()) for page in responses] == [2, 2, 2, 1]


@pytest.fixture
def mixed(api: Api) -> dict[str, list[str]]:
    """Two pending, two completed and two deleted tasks (one of each deleted was completed)."""
    pending = [api.create(title=f"pending {n}")["id"] for n in range(2)]
    completed = [api.create(title=f"done {n}", completed=True)["id"] for n in range(2)]
    deleted = [api.create(title="deleted pending")["id"]]
    deleted.append(api.create(title="deleted done", completed=True)["id"])
    for task_id in deleted:
        assert api.request("DELETE", f"/{task_id}").status_code == 204
    return {"pending": pending, "completed": completed, "deleted": deleted}


@pytest.mark.parametrize(
    ("status", "groups"),
    [
        (None, ["pending", "completed"]),
        ("all", ["pending", "completed"]),
        ("pending", ["pending"]),
        ("completed", ["completed"]),
        ("deleted", ["deleted"]),
    ],
    ids=["default-is-all-live", "all-live", "pending", "completed", "deleted-only"],
)
def test_the_status_filter_selects_tasks_and_counts_them(
    api: Api, mixed: dict[str, list[str]], status: str | None, groups: list[str]
) -> None:
    """status=all (the default) lists live tasks, pending/completed filter them, deleted lists only deleted ones."""
    params = {} if status is None else {"status": status}
    response = api.request("GET", params=params)
    assert response.status_code == 200
    expected = {task_id for group in groups for task_id in mixed[group]}
    assert set(ids(response)) == expected
    assert len(ids(response)) == len(expected)
    assert response.headers["x-total-count"] == str(len(expected))
    for task in response.json():
        assert task["status"] == ("completed" if task["completed"] else "pending")


def test_a_restored_task_leaves_the_deleted_list_and_returns_to_the_live_one(api: Api) -> None:
    """After a restore the task is listed as live again and no longer under status=deleted."""
    task = api.create(title="undo me")
    assert api.request("DELETE", f"/{task['id']}").status_code == 204
    assert ids(api.request("GET", params={"status": "deleted"})) == [task["id"]]
    assert api.request("POST", f"/{task['id']}/restore").status_code == 200
    assert ids(api.request("GET", params={"status": "deleted"})) == []
    assert ids(api.request("GET")) == [task["id"]]


def test_limit_caps_the_page_while_the_total_counts_every_match(api: Api) -> None:
    """limit=2 of 5 tasks gives the two newest, X-Total-Count 5 and a next Link."""
    created = [api.create(title=f"task {n}")["id"] for n in range(5)]
    response = api.request("GET", params={"limit": 2})
    assert response.status_code == 200
    assert ids(response) == list(reversed(created))[:2]
    assert response.headers["x-total-count"] == "5"
    assert next_url(response) is not None


def test_a_limit_equal_to_the_count_gives_no_link(api: Api) -> None:
    """When the page holds the last task, no Link header is sent."""
    for n in range(3):
        api.create(title=f"task {n}")
    response = api.request("GET", params={"limit": 3})
    assert response.status_code == 200
    assert len(response.json()) == 3
    assert "link" not in response.headers


def test_every_next_link_is_relative_and_ignores_the_host_header(
    client: TestClient, api: Api
) -> None:
    """A `Link` built from `Host` would point a client (or a cache) at whatever host the request
    named: the targets are relative references."""
    for n in range(3):
        api.create(title=f"task {n}")
    settle(client, api.user_id, 3)  # the audit feed's page below needs them all
    evil = {**auth(api.user_id), "Host": "evil.example"}
    auditor = {**auth("an-auditor", role="auditor"), "Host": "evil.example"}
    pages = [
        client.get(f"/api/{api.user_id}/tasks", params={"limit": 1}, headers=evil),
        client.get(f"/api/{api.user_id}/events", params={"limit": 1}, headers=evil),
        client.get(
            "/api/audit/events", params={"limit": 1, "user_id": api.user_id}, headers=auditor
        ),
    ]
    for page in pages:
        assert page.status_code == 200, page.text
        target = next_url(page)
        assert target is not None
        assert target.startswith("/api/"), target
        assert "evil.example" not in page.headers["link"]
        assert client.get(target, headers=evil if "audit" not in target else auditor).is_success


@pytest.mark.parametrize(
    "limit",
    ["0", "1001", "-1", "ten", "1.5"],
    ids=["zero", "over-max", "negative", "word", "float"],
)
def test_a_limit_outside_one_to_a_thousand_is_422(api: Api, limit: str) -> None:
    """limit must be an integer from 1 to 1000."""
    body = assert_problem(api.request("GET", params={"limit": limit}), 422)
    assert body["errors"]
    assert all(error["loc"] == ["query", "limit"] for error in body["errors"])


def test_an_unknown_status_is_422(api: Api) -> None:
    """status accepts all, pending, completed or deleted only."""
    body = assert_problem(api.request("GET", params={"status": "archived"}), 422)
    assert [error["loc"] for error in body["errors"]] == [["query", "status"]]


def test_paging_with_the_link_cursor_sees_every_task_once_in_order(api: Api) -> None:
    """Following Link until it disappears yields every task exactly once, newest first."""
    created = [api.create(title=f"task {n}")["id"] for n in range(7)]
    seen, responses = walk(api, limit=3)
    assert seen == list(reversed(created))
    assert [len(page.json()) for page in responses] == [3, 3, 1]
    # The total is the number of matching tasks, the same on every page, not the page size.
    assert [page.headers["x-total-count"] for page in responses] == ["7", "7", "7"]
    assert "link" not in responses[-1].headers


def test_the_link_keeps_the_filters_and_pages_within_them(api: Api, mixed: dict[str, Any]) -> None:
    """A walk of status=pending with limit=1 pages through the pending tasks only."""
    seen, responses = walk(api, status="pending", limit=1)
    assert seen == list(reversed(mixed["pending"]))
    assert [page.headers["x-total-count"] for page in responses] == ["2", "2"]
    first_link = next_url(responses[0])
    assert first_link is not None
    assert query_of(first_link)["status"] == ["pending"]


def test_the_limit_may_change_between_pages_of_one_cursor(api: Api) -> None:
    """A cursor taken with limit=2 continues with limit=3: only limit may change."""
    created = list(reversed([api.create(title=f"task {n}")["id"] for n in range(6)]))
    first = api.request("GET", params={"limit": 2})
    url = next_url(first)
    assert url is not None
    cursor = query_of(url)["cursor"][0]
    second = api.request("GET", params={"limit": 3, "cursor": cursor})
    assert second.status_code == 200, second.text
    assert ids(first) + ids(second) == created[:5]
    assert second.headers["x-total-count"] == "6"
    last_url = next_url(second)
    assert last_url is not None
    assert query_of(last_url)["limit"] == ["3"]
    third = follow(api, last_url)
    assert ids(third) == created[5:]
    assert "link" not in third.headers


def test_tasks_created_between_pages_neither_repeat_nor_break_the_walk(api: Api) -> None:
    """A task created mid-walk sorts before the cursor: later pages go on where they were."""
    created = list(reversed([api.create(title=f"task {n}")["id"] for n in range(5)]))
    response = api.request("GET", params={"limit": 2})
    seen = ids(response)
    newcomers: list[str] = []
    while (url := next_url(response)) is not None:
        newcomers.append(api.create(title="created mid-walk")["id"])
        response = follow(api, url)
        assert response.status_code == 200, response.text
        assert response.headers["x-total-count"] == str(len(created) + len(newcomers))
        seen.extend(ids(response))
    assert seen == created
    assert len(newcomers) == 2
    assert ids(api.request("GET", params={"limit": 2})) == list(reversed(newcomers))


def test_a_cursor_used_with_another_status_is_422(api: Api) -> None:
    """A cursor is bound to the parameters it came from; a different status refuses it."""
    for n in range(3):
        api.create(title=f"task {n}")
    url = next_url(api.request("GET", params={"status": "pending", "limit": 1}))
    assert url is not None
    cursor = query_of(url)["cursor"][0]
    for status in ("completed", "all", "deleted"):
        response = api.request("GET", params={"status": status, "limit": 1, "cursor": cursor})
        body = assert_problem(response, 422)
        assert [error["loc"] for error in body["errors"]] == [["query", "cursor"]]


def test_a_cursor_from_the_default_status_is_422_with_an_explicit_one(api: Api) -> None:
    """A cursor made without status is refused when status=pending is added."""
    for n in range(3):
        api.create(title=f"task {n}")
    url = next_url(api.request("GET", params={"limit": 1}))
    assert url is not None
    cursor = query_of(url)["cursor"][0]
    response = api.request("GET", params={"status": "pending", "limit": 1, "cursor": cursor})
    assert_problem(response, 422)


@pytest.mark.parametrize(
    "cursor",
    ["garbage", "", "!!!not-base64!!!", "eyJrIjogMX0", "W10", "eyJrIjpbXSwicCI6IngifQ"],
    ids=["word", "empty", "not-base64", "key-not-a-list", "json-array", "foreign-fingerprint"],
)
def test_a_garbage_cursor_is_422(api: Api, cursor: str) -> None:
    """A cursor this service did not make is a 422 problem naming the cursor."""
    api.create(title="one")
    body = assert_problem(api.request("GET", params={"cursor": cursor}), 422)
    assert [error["loc"] for error in body["errors"]] == [["query", "cursor"]]
    assert body["instance"] == api.url()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_cursor_altered_in_any_way_is_422(api: Api) -> None:
    """Cursors are signed: flipping any character of a real one, or dropping its signature,
    makes it a cursor the service did not issue."""
    for n in range(3):
        api.create(title=f"t{n}")
    target = next_url(api.request("GET", params={"limit": 1}))
    assert target is not None
    real = query_of(target)["cursor"][0]
    assert api.request("GET", params={"limit": 1, "cursor": real}).status_code == 200
    payload, _, tag = real.partition(".")
    altered = [
        payload,  # no signature
        f"{payload}.",
        f"{payload}.{tag[:-2]}",
        f"{payload[:-1]}{'A' if payload[-1] != 'A' else 'B'}.{tag}",
        f"{payload}.{tag[:-1]}{'A' if tag[-1] != 'A' else 'B'}",
        f"{payload[:5]}{'A' if payload[5] != 'A' else 'B'}{payload[6:]}.{tag}",
        f"{payload}.{tag[:5]}{'A' if tag[5] != 'A' else 'B'}{tag[6:]}",
        f"{payload}={'.'}{tag}",
    ]
    for cursor in altered:
        body = assert_problem(api.request("GET", params={"limit": 1, "cursor": cursor}), 422)
        assert [error["loc"] for error in body["errors"]] == [["query", "cursor"]], cursor


@pytest.mark.parametrize(
    "key",
    [
        b'[1180591620717411303424, "00000000-0000-0000-0000-000000000000"]',
        b'["a\\u0000b", "x"]',
        b"[null, null, null]",
    ],
    ids=["past-2-63", "nul-byte", "wrong-shape"],
)
def test_a_forged_cursor_is_422_before_its_content_is_read(api: Api, key: bytes) -> None:
    """Its values never reach a query: integers past 2^63 and NUL bytes were 500s."""
    api.create(title="one")
    payload = b'{"k":' + key + b',"s":1,"p":"0000000000000000"}'
    cursor = f"{_b64(payload)}.{_b64(b'0' * 16)}"
    body = assert_problem(api.request("GET", params={"cursor": cursor}), 422)
    assert [error["loc"] for error in body["errors"]] == [["query", "cursor"]]


def test_a_cursor_of_another_user_is_refused(api: Api, make_api: Any) -> None:
    """A cursor is bound to the path it came from: another user's list refuses it."""
    for n in range(3):
        api.create(title=f"t{n}")
    first = api.request("GET", params={"limit": 1})
    cursor = re.search(r"cursor=([^&>]+)", first.headers["link"])
    assert cursor is not None
    other: Api = make_api()
    response = other.request("GET", params={"limit": 1, "cursor": cursor.group(1)})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "cursor"]
