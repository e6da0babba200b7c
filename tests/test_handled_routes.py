"""A route that reads its own request (api/routes/handled.py) answers exactly as FastAPI's own
resolution of its declared parameters would: a corpus of requests, good, bad and hostile, goes
through both handlers of each such route, and every answer must be the same, byte for byte.
Both engines.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, MutableMapping
from contextlib import AsyncExitStack
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.routing import request_response
from fastapi.testclient import TestClient
from starlette.routing import Match

from tasktrail.api.http.fair_share import FairShare
from tasktrail.api.routes.handled import HandledRoute, Handler
from tasktrail.api.services import services_of_app
from tests.conftest import Api, auth, make_token, new_user_id

# Headers that differ between any two answers, whoever makes them.
_UNSTABLE = {"date", "x-request-id"}


def handled_routes(app: FastAPI) -> dict[str, HandledRoute]:
    """Every handled route of the app, by "METHOD path" (the routers' own routes included)."""
    routes = list(app.routes)
    for router in filter(None, (getattr(r, "original_router", None) for r in app.router.routes)):
        routes += router.routes
    return {
        f"{method} {route.path}": route
        for route in routes
        if isinstance(route, HandledRoute) and route.is_handled
        for method in route.methods or ()
    }


async def answer(app: FastAPI, route: HandledRoute, handler: Handler, request: Any) -> Any:
    """What `handler` answers to `request` as the route serves it (FastAPI's request_response,
    with the app's exception handlers), the request's place in its user's fair share given back
    as the app's middleware would."""
    scope: dict[str, Any] = {
        "type": "http",
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
        "path": request.url.path,
        "raw_path": request.url.raw_path.split(b"?")[0],
        "query_string": request.url.query,
        "headers": [(k.lower(), v) for k, v in request.headers.raw],
        "app": app,
        "state": {"request_id": "equivalence"},  # as RequestContextMiddleware sets it
        "starlette.exception_handlers": (app.exception_handlers, {}),
    }
    match, child = route.matches(scope)
    assert match is Match.FULL, (request.url, route.path)
    scope.update(child)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": request.content, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    try:
        async with AsyncExitStack() as stack:
            scope["fastapi_middleware_astack"] = stack
            await request_response(handler)(scope, receive, send)
    finally:
        fair_share: FairShare = services_of_app(app).fair_share
        fair_share.leave(scope["state"])
    head, *body = sent
    headers = sorted(
        (name.decode(), value.decode())
        for name, value in head["headers"]
        if name.decode() not in _UNSTABLE
    )
    return head["status"], headers, b"".join(part.get("body", b"") for part in body)


@pytest.fixture
def task_urls(client: TestClient, api: Api) -> dict[str, str]:
    live = api.create(title="read me", tags=["a"])
    gone = api.create(title="gone")
    assert api.request("DELETE", f"/{gone['id']}").status_code == 204
    return {"live": live["id"], "gone": gone["id"]}


def _corpus(api: Api, ids: dict[str, str]) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(method, path and query, headers): what the routes must agree on."""
    mine = api.headers
    other = auth(new_user_id())
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


def test_the_single_task_read_answers_as_fastapis_resolution_of_its_parameters(
    app: FastAPI, client: TestClient, api: Api, task_urls: dict[str, str]
) -> None:
    route = handled_routes(app)["GET /api/{user_id}/tasks/{task_id}"]
    portal = client.portal
    assert portal is not None  # the client's lifespan runs: the app's pool and state are up
    compared = 0
    for method, target, headers in _corpus(api, task_urls):
        request = client.build_request(method, target, headers=headers)
        direct = portal.call(answer, app, route, route.get_route_handler(), request)
        resolved = portal.call(answer, app, route, route.resolved_handler(), request)
        assert direct == resolved, (target, headers)
        compared += 1
    assert compared == 560


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
_TIMESTAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def _write_headers(api: Api) -> list[dict[str, str]]:
    mine = {**api.headers, "Content-Type": "application/json"}
    return [
        mine,
        {**mine, "Idempotency-Key": "a-key"},
        {**mine, "Idempotency-Key": "k" * 300},
        {**mine, "If-Match": '"1"'},
        {**mine, "If-Match": '"2"'},
        {**mine, "If-Match": "1"},
        {**api.headers, "Content-Type": "text/plain"},
        {**auth(new_user_id()), "Content-Type": "application/json"},
        {"Content-Type": "application/json"},
    ]


def _same_for_both(answered: Any, own_id: str | None) -> Any:
    """An answer with what must differ between two writes masked: the task's id and the
    instants the write took."""
    status, headers, body = answered
    ids = {own_id} if own_id else set()
    if status == 201:
        ids.add(orjson.loads(body)["id"])
    for task_id in filter(None, ids):
        body = body.replace(task_id.encode(), b"<id>")
        headers = [(k, v.replace(task_id, "<id>")) for k, v in headers]
    return status, headers, _TIMESTAMP.sub(b"<instant>", body)


def test_the_handled_writes_answer_as_fastapis_resolution_of_their_parameters(
    app: FastAPI, client: TestClient, api: Api
) -> None:
    """Each request goes to each handler on a twin of its own (two tasks made alike, each
    handler's own idempotency key), so that the first write does not change what the second
    finds; answers must agree once the twins' ids and the instants are masked."""
    routes = handled_routes(app)
    portal = client.portal
    assert portal is not None
    assert set(WRITE_BODIES) <= set(routes)
    compared = 0
    for name, bodies in WRITE_BODIES.items():
        route = routes[name]
        method, template = name.split(" ")
        for body, headers in itertools.product(bodies, _write_headers(api)):
            answers = []
            for handler, suffix in (
                (route.get_route_handler(), "d"),
                (route.resolved_handler(), "r"),
            ):
                task = api.create(title="twin", tags=["t"]) if "{task_id}" in template else None
                path = template.replace("{user_id}", api.user_id)
                path = path.replace("{task_id}", task["id"] if task else "")
                keyed = {
                    k: (f"{v}-{suffix}" if k == "Idempotency-Key" else v)
                    for k, v in headers.items()
                }
                request = client.build_request(method, path, content=body, headers=keyed)
                answered = portal.call(answer, app, route, handler, request)
                answers.append(_same_for_both(answered, task["id"] if task else None))
            assert answers[0] == answers[1], (name, body, headers)
            compared += 1
    assert compared == 9 * sum(len(bodies) for bodies in WRITE_BODIES.values())


def _list_queries(client: TestClient, api: Api) -> list[str]:
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


def test_the_list_answers_as_fastapis_resolution_of_its_parameters(
    app: FastAPI, client: TestClient, api: Api
) -> None:
    """Plain queries are read by the route itself; the others are handed to FastAPI's
    resolution: the answers must be the same either way."""
    api.create(title="read me", tags=["a", "b"], priority=2)
    api.create(title="another", due_at="2030-01-01T00:00:00Z")
    done = api.create(title="done")
    assert api.request("PATCH", f"/{done['id']}/complete").status_code == 200
    route = handled_routes(app)["GET /api/{user_id}/tasks"]
    portal = client.portal
    assert portal is not None
    headers = [api.headers, auth(new_user_id()), {}, {"Authorization": "Bearer x.y.z"}]
    queries = _list_queries(client, api)
    compared = 0
    for query, header in itertools.product(queries, headers):
        for user in (api.user_id, "someone-else"):
            request = client.build_request("GET", f"/api/{user}/tasks{query}", headers=header)
            direct = portal.call(answer, app, route, route.get_route_handler(), request)
            resolved = portal.call(answer, app, route, route.resolved_handler(), request)
            assert direct == resolved, (query, header)
            compared += 1
    assert compared == len(queries) * 8
