"""The corpus of requests the compiled routes (api/routes/compiled.py) are held to: good, bad and
hostile requests of each route, and the tasks they need.

tests/test_compiled_routes.py sends them through both handlers of each route and requires the
same answers; tests/test_route_answers_golden.py records the app's answers to them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from fastapi.testclient import TestClient

from tests.conftest import Api, auth, make_token

# (method, path and query, headers) of a request without a body.
Request = tuple[str, str, dict[str, str]]

READ_ROUTE = "GET /api/{user_id}/tasks/{task_id}"
LIST_ROUTE = "GET /api/{user_id}/tasks"


def read_tasks(api: Api) -> dict[str, str]:
    """The tasks the single-task read's corpus reads: a live one and a deleted one."""
    live = api.create(title="read me", tags=["a"])
    gone = api.create(title="gone")
    deleted = api.request("DELETE", f"/{gone['id']}")
    assert deleted.status_code == 204, deleted.text
    return {"live": live["id"], "gone": gone["id"]}


def read_requests(api: Api, ids: dict[str, str], other_user: str) -> Iterator[Request]:
    """(method, path and query, headers) of the single-task read: what the routes must agree
    on. `other_user` is a user whose token is not the path's."""
    mine = api.headers
    other = auth(other_user)
    paths = [
        f"/api/{api.user_id}/tasks/{ids['live']}",
        f"/api/{api.user_id}/tasks/{ids['gone']}",
        f"/api/{api.user_id}/tasks/{ids['live'].upper()}",
        f"/api/{api.user_id}/tasks/not-a-uuid",
        f"/api/{api.user_id}/tasks/00000000-0000-0000-0000-000000000000",
        f"/api/someone-else/tasks/{ids['live']}",
        f"/api/audit/tasks/{ids['live']}",
    ]
    queries = [
        "",
        "?as_of=2999-01-01T00:00:00Z",
        "?as_of=2000-01-01T00:00:00Z",
        "?as_of=yesterday",
        "?as_of=",
        "?as_of=2999-01-01T00:00:00Z&as_of=2999-01-01T00:00:00Z",
        "?limit=5",
        "?as_of=%00",
    ]
    headers = [
        mine,
        {**mine, "If-None-Match": '"1"'},
        {**mine, "If-None-Match": 'W/"1", "9"'},
        {**mine, "If-None-Match": "*"},
        {**mine, "If-None-Match": "garbage"},
        other,
        {},
        {"Authorization": "Bearer not.a.token"},
        {"Authorization": "Basic abc"},
        {"Authorization": f"Bearer {make_token(api.user_id, exp=1)}"},
    ]
    for path, query, header in itertools.product(paths, queries, headers):
        yield "GET", path + query, header


# The bodies each compiled write is sent, by "METHOD path template".
WRITE_BODIES = {
    "POST /api/{user_id}/tasks": [
        b'{"title": "new", "tags": ["x"], "priority": 2}',
        b'{"title": "new", "id": "mine", "version": 9, "user_id": "someone"}',
        b'{"title": ""}',
        b'{"title": 5}',
        b'{"titel": "x"}',
        b"",
        b"not json",
    ],
    "PATCH /api/{user_id}/tasks/{task_id}": [
        b'{"title": "patched", "tags": null}',
        b'{"title": null}',
        b'{"due_at": "yesterday"}',
        b"{}",
        b"",
        b"[1]",
    ],
    "PATCH /api/{user_id}/tasks/{task_id}/complete": [
        b"",
        b'{"completed": true}',
        b'{"completed": false}',
        b'{"completed": "yes"}',
    ],
}


def write_headers(api: Api, other_user: str) -> list[dict[str, str]]:
    """The headers each body of WRITE_BODIES is sent with (each pair once); `other_user` is a
    user whose token is not the path's."""
    mine = {**api.headers, "Content-Type": "application/json"}
    return [
        mine,
        {**mine, "Idempotency-Key": "a-key"},
        {**mine, "Idempotency-Key": "k" * 300},
        {**mine, "If-Match": '"1"'},
        {**mine, "If-Match": '"2"'},
        {**mine, "If-Match": "1"},
        {**api.headers, "Content-Type": "text/plain"},
        {**auth(other_user), "Content-Type": "application/json"},
        {"Content-Type": "application/json"},
    ]


def twin_task(api: Api) -> str:
    """A task as each write of a task's route finds it (a fresh one per write, so that one
    write does not change what the next one finds); its id."""
    task_id: str = api.create(title="twin", tags=["t"])["id"]
    return task_id


def list_tasks(api: Api) -> None:
    """The tasks the list's corpus lists: one tagged, one due, one completed."""
    api.create(title="read me", tags=["a", "b"], priority=2)
    api.create(title="another", due_at="2030-01-01T00:00:00Z")
    done = api.create(title="done")
    completed = api.request("PATCH", f"/{done['id']}/complete")
    assert completed.status_code == 200, completed.text


def list_queries(client: TestClient, api: Api) -> list[str]:
    """Queries of the list: plain ones (read by the route itself) and every kind it hands to
    FastAPI's resolution."""
    first = client.get(f"/api/{api.user_id}/tasks?limit=1&sort=title", headers=api.headers)
    link = first.headers["link"]
    next_page = link[link.index("?") : link.index(">")]
    return [
        "",
        "?limit=1",
        "?limit=2&sort=title",
        "?limit=0050&sort=-priority",
        next_page,
        next_page.replace("limit=1", "limit=2"),
        next_page.replace("sort=title", "sort=-title"),
        "?status=completed",
        "?status=deleted",
        "?status=all&sort=due",
        "?status=bogus",
        "?status=ALL",
        "?sort=due%0A",
        "?sort=--due",
        "?q=read",
        "?q=",
        "?q=" + "x" * 200,
        "?q=" + "x" * 201,
        "?q=%00",
        "?tag=a",
        "?tag=a&tag=b",
        "?tag=",
        "?" + "&".join(["tag=a"] * 51),
        "?limit=0",
        "?limit=1001",
        "?limit=%2B5",
        "?limit=1_0",
        "?limit=%D9%A5",
        "?limit=",
        "?limit=1&limit=2",
        "?status=all&status=all",
        "?due_before=2999-01-01T00:00:00Z&due_after=2000-01-01T00:00:00Z",
        "?due_after=bad",
        "?cursor=bogus",
        "?as_of=2999-01-01T00:00:00Z",
        "?as_of=2999-01-01T00:00:00Z&limit=1",
        "?unknown=1",
        "?limit=1&unknown=1",
    ]


def list_requests(api: Api, queries: list[str], other_user: str) -> Iterator[Request]:
    """Each query with each kind of token, on the user's own list and on another's."""
    headers = [api.headers, auth(other_user), {}, {"Authorization": "Bearer x.y.z"}]
    for query, header in itertools.product(queries, headers):
        for user in (api.user_id, "someone-else"):
            yield "GET", f"/api/{user}/tasks{query}", header


def other_requests(api: Api, task_id: str, auditor: dict[str, str]) -> dict[str, list[Request]]:
    """Requests of the other routes, by "METHOD path template": every answer of each is the
    same on a second call (a settled user's events, no stream that would stay open)."""
    mine = api.headers
    tokens = [mine, auth("someone-else"), {}]
    feed = f"/api/{api.user_id}/events"
    feed_queries = [
        "",
        "?after=1&limit=1",
        "?after=-1",
        "?after=abc",
        "?after=99999999999999999999",
        "?limit=0",
        "?limit=1001",
        "?limit=5&limit=6",
        "?access_token=x",
        "?unknown=1",
    ]
    stream = {"Accept": "text/event-stream"}
    history = f"/api/{api.user_id}/tasks/{task_id}/events"
    audit = "/api/audit/events"
    audit_queries = [
        f"?user_id={api.user_id}",
        f"?user_id={api.user_id}&limit=1",
        f"?user_id={api.user_id}&type=task.created&type=task.completed",
        f"?user_id={api.user_id}&task_id={task_id}",
        f"?user_id={api.user_id}&since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z",
        "?type=bogus",
        "?after=-5",
        "?task_id=nope",
        "?since=yesterday",
        "?limit=0",
        "?user_id=",
        "?unknown=1",
    ]
    verify = f"/api/audit/users/{api.user_id}/verify"
    verify_queries = ["", "?expected_head=1:abc", "?expected_head=bad", "?unknown=1"]
    return {
        "GET /api/{user_id}/events": [
            *(("GET", feed + query, header) for query in feed_queries for header in tokens),
            ("GET", f"{feed}?limit=5", {**mine, **stream}),
            ("GET", f"{feed}?after=x", {**mine, **stream}),
            ("GET", feed, stream),
        ],
        "GET /api/{user_id}/tasks/{task_id}/events": [
            *(("GET", history + query, header) for query in ("", "?x=1") for header in tokens),
            ("GET", f"/api/{api.user_id}/tasks/not-a-uuid/events", mine),
        ],
        "GET /api/audit/events": [
            ("GET", audit + query, header)
            for query in audit_queries
            for header in (auditor, mine, {})
        ],
        "GET /api/audit/users/{user_id}/verify": [
            ("GET", verify + query, header)
            for query in verify_queries
            for header in (auditor, mine)
        ],
        # /readyz is left out: it answers how long the database took, never twice the same.
        "GET /healthz": [("GET", "/healthz", {}), ("GET", "/healthz?x=1", {})],
    }
