"""The compiled reader (api/routes/compiled.py) takes each value off a request as FastAPI's
resolution would, validated by the parameter's own declaration, and hands FastAPI every
request it does not take: a missing required value, a value its validator refuses."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.testclient import TestClient
from starlette.responses import JSONResponse, Response

from tasktrail.api.routes.compiled import CompiledRoute, compile_reader


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


calls: list[str] = []


async def who(request: Request, user_id: str) -> str:
    calls.append(user_id)
    return user_id.upper()


async def endpoint(
    request: Request,
    user: Annotated[str, Depends(who)],
    same_user: Annotated[str, Depends(who)],
    colour: Annotated[Colour, Query()] = Colour.RED,
    sort: Annotated[str, Query(pattern=r"^-?(a|b)$")] = "a",
    limit: Annotated[int, Query(ge=1, le=10)] = 5,
    tag: Annotated[list[str] | None, Query()] = None,
    note: Annotated[str | None, Query(max_length=3)] = None,
    agent: Annotated[str | None, Header(alias="X-Agent")] = None,
) -> Response:
    return JSONResponse(
        {
            "user": user,
            "colour": colour,
            "sort": sort,
            "limit": limit,
            "tag": tag,
            "note": note,
            "agent": agent,
        }
    )


def _app(path: str, served_by: Any) -> tuple[FastAPI, CompiledRoute]:
    router = APIRouter(route_class=CompiledRoute)
    router.add_api_route(path, served_by)
    app = FastAPI()
    app.include_router(router)
    route = router.routes[0]
    assert isinstance(route, CompiledRoute)
    return app, route


def _route() -> CompiledRoute:
    _, route = _app("/things/{user_id}", endpoint)
    assert route.is_compiled
    return route


def _read(query: str, headers: dict[str, str] | None = None) -> dict[str, Any] | None:
    route = _route()
    assert route.reader is not None
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/things/ann",
        "path_params": {"user_id": "ann"},
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    reader = route.reader

    async def read() -> dict[str, Any] | None:
        return await reader(Request(scope))

    return asyncio.run(read())


def test_typed_values_are_converted_by_their_declaration() -> None:
    calls.clear()
    arguments = _read("colour=blue&sort=-b&limit=10&tag=x&tag=y&note=abc", {"X-Agent": "cli"})
    assert arguments is not None
    assert arguments["colour"] is Colour.BLUE
    assert (arguments["sort"], arguments["limit"], arguments["tag"]) == ("-b", 10, ["x", "y"])
    assert (arguments["note"], arguments["agent"], arguments["user"]) == ("abc", "cli", "ANN")
    assert calls == ["ann"]  # a dependency used twice is called once, as FastAPI caches it


def test_absent_values_take_their_defaults() -> None:
    arguments = _read("")
    assert arguments is not None
    assert (arguments["colour"], arguments["sort"], arguments["limit"]) == ("red", "a", 5)
    assert arguments["tag"] is None
    assert arguments["agent"] is None


def test_a_repeated_scalar_takes_the_last_value_as_fastapi_does() -> None:
    arguments = _read("limit=2&limit=3")
    assert arguments is not None
    assert arguments["limit"] == 3


def test_refused_values_are_left_to_fastapi() -> None:
    for query in ("colour=green", "sort=c", "limit=0", "limit=11", "limit=x", "note=abcd"):
        assert _read(query) is None, query


def test_what_is_left_to_fastapi_gets_fastapis_own_answer() -> None:
    app, _ = _app("/things/{user_id}", endpoint)
    with TestClient(app) as client:
        taken = client.get("/things/ann?limit=7&tag=z")
        refused = client.get("/things/ann?limit=0")
    assert taken.status_code == 200
    assert taken.json()["limit"] == 7
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["query", "limit"]


def sync_who(user_id: str) -> str:
    return user_id


async def sync_endpoint(user: Annotated[str, Depends(sync_who)]) -> Response:
    return JSONResponse(user)


def test_a_sync_dependency_is_not_compiled() -> None:
    _, route = _app("/s/{user_id}", sync_endpoint)
    assert not route.is_compiled
    assert compile_reader(route.dependant) is None
