"""A route served by its compiled reader (api/routes/compiled.py) answers exactly as FastAPI's own
resolution of its declared parameters would: a corpus of requests, good, bad and hostile, goes
through both handlers of each such route, and every answer must be the same, byte for byte.
Both engines.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import MutableMapping
from contextlib import AsyncExitStack
from typing import Any

import orjson
import pytest
from fastapi import FastAPI, params
from fastapi._compat import field_annotation_is_sequence
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import request_response
from fastapi.testclient import TestClient
from starlette.routing import Match

from tasktrail.api.http.fair_share import FairShare
from tasktrail.api.routes.compiled import CompiledRoute, Handler
from tasktrail.api.routes.query import REPEATABLE_PARAMETERS
from tasktrail.api.services import services_of_app
from tests.audit_helpers import auditor, settle
from tests.conftest import Api, new_user_id
from tests.route_corpus import (
    LIST_ROUTE,
    READ_ROUTE,
    WRITE_BODIES,
    list_queries,
    list_requests,
    list_tasks,
    other_requests,
    read_requests,
    read_tasks,
    twin_task,
    write_headers,
)

# Headers that differ between any two answers, whoever makes them.
_UNSTABLE = {"date", "x-request-id"}


def compiled_routes(app: FastAPI) -> dict[str, CompiledRoute]:
    """Every compiled route of the app, by "METHOD path" (the routers' own routes included)."""
    routes = list(app.routes)
    for router in filter(None, (getattr(r, "original_router", None) for r in app.router.routes)):
        routes += router.routes
    return {
        f"{method} {route.path}": route
        for route in routes
        if isinstance(route, CompiledRoute) and route.is_compiled
        for method in route.methods or ()
    }


async def answer(app: FastAPI, route: CompiledRoute, handler: Handler, request: Any) -> Any:
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
    return read_tasks(api)


def test_the_single_task_read_answers_as_fastapis_resolution_of_its_parameters(
    app: FastAPI, client: TestClient, api: Api, task_urls: dict[str, str]
) -> None:
    route = compiled_routes(app)[READ_ROUTE]
    portal = client.portal
    assert portal is not None  # the client's lifespan runs: the app's pool and state are up
    compared = 0
    for method, target, headers in read_requests(api, task_urls, new_user_id()):
        request = client.build_request(method, target, headers=headers)
        direct = portal.call(answer, app, route, route.get_route_handler(), request)
        resolved = portal.call(answer, app, route, route.resolved_handler(), request)
        assert direct == resolved, (target, headers)
        compared += 1
    assert compared == 560


_TIMESTAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


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


def test_the_compiled_writes_answer_as_fastapis_resolution_of_their_parameters(
    app: FastAPI, client: TestClient, api: Api
) -> None:
    """Each request goes to each handler on a twin of its own (two tasks made alike, each
    handler's own idempotency key), so that the first write does not change what the second
    finds; answers must agree once the twins' ids and the instants are masked."""
    routes = compiled_routes(app)
    portal = client.portal
    assert portal is not None
    assert set(WRITE_BODIES) <= set(routes)
    compared = 0
    for name, bodies in WRITE_BODIES.items():
        route = routes[name]
        method, template = name.split(" ")
        for body, headers in itertools.product(bodies, write_headers(api, new_user_id())):
            answers = []
            for handler, suffix in (
                (route.get_route_handler(), "d"),
                (route.resolved_handler(), "r"),
            ):
                task = twin_task(api) if "{task_id}" in template else None
                path = template.replace("{user_id}", api.user_id)
                path = path.replace("{task_id}", task or "")
                keyed = {
                    k: (f"{v}-{suffix}" if k == "Idempotency-Key" else v)
                    for k, v in headers.items()
                }
                request = client.build_request(method, path, content=body, headers=keyed)
                answered = portal.call(answer, app, route, handler, request)
                answers.append(_same_for_both(answered, task))
            assert answers[0] == answers[1], (name, body, headers)
            compared += 1
    assert compared == 9 * sum(len(bodies) for bodies in WRITE_BODIES.values())


def test_the_list_answers_as_fastapis_resolution_of_its_parameters(
    app: FastAPI, client: TestClient, api: Api
) -> None:
    """Queries whose values their validators take are read by the compiled reader; the others
    are handed to FastAPI's resolution: the answers must be the same either way."""
    list_tasks(api)
    route = compiled_routes(app)[LIST_ROUTE]
    portal = client.portal
    assert portal is not None
    queries = list_queries(client, api)
    compared = 0
    for method, target, header in list_requests(api, queries, new_user_id()):
        request = client.build_request(method, target, headers=header)
        direct = portal.call(answer, app, route, route.get_route_handler(), request)
        resolved = portal.call(answer, app, route, route.resolved_handler(), request)
        assert direct == resolved, (target, header)
        compared += 1
    assert compared == len(queries) * 8


def test_every_other_route_answers_as_fastapis_resolution_of_its_parameters(
    app: FastAPI, client: TestClient, api: Api
) -> None:
    """The feed, a task's history, the audit routes and the probes are compiled too: a corpus
    of each, through both handlers."""
    task = api.create(title="audited", tags=["a"])["id"]
    completed = api.request("PATCH", f"/{task}/complete")
    assert completed.status_code == 200, completed.text
    settle(client, api.user_id, 2)
    routes = compiled_routes(app)
    portal = client.portal
    assert portal is not None
    compared = 0
    for name, requests in other_requests(api, task, auditor()).items():
        route = routes[name]
        for method, target, header in requests:
            request = client.build_request(method, target, headers=header)
            direct = portal.call(answer, app, route, route.get_route_handler(), request)
            resolved = portal.call(answer, app, route, route.resolved_handler(), request)
            assert direct == resolved, (target, header)
            compared += 1
    assert compared == 33 + 7 + 36 + 8 + 2


def test_every_route_of_the_app_is_compiled(app: FastAPI) -> None:
    """No route is left to FastAPI's per-request walk: a route whose declaration stops
    compiling (a sync dependency, a body parameter) shows here, not as a slower service."""
    documented = {
        f"{method.upper()} {path}"
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    assert "GET /api/{user_id}/tasks" in documented
    assert documented <= set(compiled_routes(app))


def test_the_repeatable_parameters_are_the_ones_declared_as_lists(app: FastAPI) -> None:
    """api.md's rule (only `tag` and the audit `type` repeat), which a 422 states, is what the
    routes declare: a list parameter added or removed shows here."""
    declared_as_lists = {
        field.alias
        for route in compiled_routes(app).values()
        for field in get_flat_params(route.dependant)
        if isinstance(field.field_info, params.Query)
        and field_annotation_is_sequence(field.field_info.annotation)
    }
    assert declared_as_lists == REPEATABLE_PARAMETERS
