"""A route's parameters read from its own declaration, without FastAPI's per-request walk.

FastAPI resolves an endpoint's parameters anew for every request: it walks the dependency tree
and validates each path, query and header parameter through pydantic (on the single-task read
that walk was a quarter of the request's CPU, docs/performance.md). The endpoint's signature is
the route's one declaration: FastAPI builds the OpenAPI entry from its `Dependant`, and here the
same `Dependant` is compiled once, at start-up, into a flat reader.

A route is compiled when every parameter of its tree is text that needs no validation (`str` or
`str | None` of the path, the query or a header, without constraints), and every dependency is
an async callable taking such parameters, the request and other dependencies. The reader takes
each value off the request as FastAPI's resolution does (the same keys, the last value of a
repeated query parameter, headers by their alias), then calls the dependencies in FastAPI's order
(depth first, each call once per request when cached). A request that lacks a required parameter
is handed to FastAPI's own handler of the route, so its answer is FastAPI's by construction; so
is every request of a route that is not compiled. tests/test_handled_routes.py and the golden
answers hold the two to the same bytes.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import params
from fastapi.dependencies.models import Dependant
from starlette.requests import Request

# A request's keyword arguments for the endpoint, or None: hand the request to FastAPI.
Reader = Callable[[Request], Awaitable[dict[str, Any] | None]]

_TEXT = (str, str | None)


@dataclass(frozen=True, slots=True)
class _Parameter:
    name: str
    where: str  # "path", "query" or "header"
    key: str  # what the request names it by
    required: bool
    default: Any


@dataclass(frozen=True, slots=True)
class _Node:
    call: Callable[..., Awaitable[Any]] | None  # None for the endpoint itself
    name: str | None  # the parameter the value goes to, in the node above
    parameters: tuple[_Parameter, ...]
    dependencies: tuple[_Node, ...]
    request_name: str | None
    cached: bool


def compile_reader(dependant: Dependant) -> Reader | None:
    """The endpoint's arguments read off a request, or None when the route cannot be compiled."""
    root = _node(dependant, call=None)
    if root is None:
        return None
    parameters = _every_parameter(root)

    async def read(request: Request) -> dict[str, Any] | None:
        values: dict[int, Any] = {}
        for parameter in parameters:
            value = _raw(request, parameter)
            if value is None:
                if parameter.required:
                    return None  # FastAPI's answer: its own 422
                value = parameter.default
            values[id(parameter)] = value
        cache: dict[Any, Any] = {}
        return await _solve(root, request, values, cache)

    return read


def _node(dependant: Dependant, call: Callable[..., Awaitable[Any]] | None) -> _Node | None:
    if (
        dependant.cookie_params
        or dependant.body_params
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
    ):
        return None
    parameters: list[_Parameter] = []
    for where, fields in (
        ("path", dependant.path_params),
        ("query", dependant.query_params),
        ("header", dependant.header_params),
    ):
        for field in fields:
            info = field.field_info
            if info.annotation not in _TEXT or info.metadata:
                return None  # a value FastAPI must convert or check
            key = field.alias
            if isinstance(info, params.Header) and info.convert_underscores and key == field.name:
                key = key.replace("_", "-")
            parameters.append(_Parameter(field.name, where, key, info.is_required(), field.default))
    dependencies: list[_Node] = []
    for sub in dependant.dependencies:
        if sub.call is None or not _is_async(sub.call):
            return None
        compiled = _node(sub, sub.call)
        if compiled is None:
            return None
        dependencies.append(compiled)
    return _Node(
        call,
        dependant.name,
        tuple(parameters),
        tuple(dependencies),
        dependant.request_param_name,
        dependant.use_cache,
    )


def _is_async(call: Callable[..., Any]) -> bool:
    if inspect.isroutine(call):
        return inspect.iscoroutinefunction(call)
    return inspect.iscoroutinefunction(getattr(call, "__call__", None))  # noqa: B004


def _every_parameter(root: _Node) -> tuple[_Parameter, ...]:
    found: list[_Parameter] = []

    def visit(node: _Node) -> None:
        for dependency in node.dependencies:
            visit(dependency)
        found.extend(node.parameters)

    visit(root)
    return tuple(found)


def _raw(request: Request, parameter: _Parameter) -> str | None:
    if parameter.where == "path":
        value: str | None = request.path_params.get(parameter.key)
        return value
    if parameter.where == "query":
        if not request.scope.get("query_string"):
            return None  # most requests have none: no parsing at all
        return request.query_params.get(parameter.key)
    return request.headers.get(parameter.key)


async def _solve(
    node: _Node,
    request: Request,
    values: dict[int, Any],
    cache: dict[Any, Any],
) -> dict[str, Any]:
    """The node's keyword arguments: its dependencies called first, in order, then its own
    parameters' values."""
    arguments: dict[str, Any] = {}
    for dependency in node.dependencies:
        if dependency.cached and dependency.call in cache:
            value = cache[dependency.call]
        else:
            assert dependency.call is not None  # noqa: S101 - compiled dependencies have one
            sub_arguments = await _solve(dependency, request, values, cache)
            value = await dependency.call(**sub_arguments)
            if dependency.cached:
                cache[dependency.call] = value
        if dependency.name is not None:
            arguments[dependency.name] = value
    for parameter in node.parameters:
        arguments[parameter.name] = values[id(parameter)]
    if node.request_name is not None:
        arguments[node.request_name] = request
    return arguments
