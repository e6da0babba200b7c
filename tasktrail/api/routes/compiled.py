"""A route's parameters read from its own declaration, without FastAPI's per-request walk.

FastAPI resolves an endpoint's parameters anew for every request: it walks the dependency tree
and validates each path, query and header parameter through pydantic (on the single-task read
that walk was a quarter of the request's CPU, docs/performance.md). The endpoint's signature is
the route's one declaration: FastAPI builds the OpenAPI entry from its `Dependant`, and here the
same `Dependant` is compiled once, at start-up, into a flat reader.

A route is compiled when each parameter of its tree is a path, query or header parameter (a
query parameter may be a list) and each dependency is an async callable taking such parameters,
the request and other dependencies. The reader takes each value off the request as FastAPI's
resolution does (the same keys, the last value of a repeated query parameter, every value of a
list, headers by their alias). Text without constraints is taken as it is; any other value goes
through the parameter's own pydantic validator, the one FastAPI's resolution calls, so it is
converted and bounded by its declaration alone. Then the reader calls the dependencies in
FastAPI's order (depth first, each call once per request when cached).

Every route of the app is a `CompiledRoute`: it keeps everything of FastAPI but the
per-request parameter walk (matching, the OpenAPI entry, the exception handlers). A request
that lacks a required parameter, or whose value its validator refuses, is handed to FastAPI's
own handler of the route, so its answer (a 422 in FastAPI's words) is FastAPI's by
construction; so is every request of a route whose declaration does not compile (a sync
endpoint or dependency, a dependency with `yield`, a body parameter, an endpoint that answers
something other than a Response). `resolved_handler` keeps FastAPI's own handler at hand:
tests/test_compiled_routes.py sends a corpus of requests (good, bad, hostile) through both
handlers of each compiled route, and the golden answers (tests/golden/routes/) hold every
answer to what it was before routes were compiled.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Coroutine
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

from fastapi import params
from fastapi._compat import ModelField, field_annotation_is_sequence
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import APIRoute
from pydantic import Json
from starlette.requests import Request
from starlette.responses import Response

from tasktrail.api.contract.openapi import documented_body

# A request's keyword arguments for the endpoint, or None: hand the request to FastAPI.
Reader = Callable[[Request], Awaitable[dict[str, Any] | None]]
Handler = Callable[[Request], Coroutine[Any, Any, Response]]

_TEXT = (str, str | None)
# Defaults that no endpoint can change: used as they are; any other is copied per request, as
# FastAPI does.
_IMMUTABLE = (str, int, float, bool, type(None), tuple, frozenset)


@dataclass(frozen=True, slots=True)
class _Parameter:
    name: str
    where: str  # "path", "query" or "header"
    key: str  # what the request names it by
    required: bool
    default: Any
    many: bool  # a list: every value given, not the last
    # The declaration's own validator, or None for text taken as it is.
    field: ModelField | None

    def missing(self) -> Any:
        return self.default if isinstance(self.default, _IMMUTABLE) else deepcopy(self.default)


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
                value = parameter.missing()
            elif parameter.field is not None:
                value, errors = parameter.field.validate(
                    value, {}, loc=(parameter.where, parameter.key)
                )
                if errors:
                    return None  # FastAPI's answer: its own 422
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
            parameter = _parameter(field, where)
            if parameter is None:
                return None
            parameters.append(parameter)
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


def _parameter(field: ModelField, where: str) -> _Parameter | None:
    """How to read one parameter; None for a kind this reader leaves to FastAPI (a model of
    parameters, JSON, a validation alias, a list outside the query, a validated default)."""
    info = field.field_info
    if info.validation_alias not in (None, field.alias) or info.validate_default:
        return None
    many = field_annotation_is_sequence(info.annotation)
    if many and where != "query":
        return None
    plain = info.annotation in _TEXT and not info.metadata
    if not plain and not _validates_alone(field):
        return None
    key = field.alias
    if isinstance(info, params.Header) and info.convert_underscores and key == field.name:
        key = key.replace("_", "-")
    return _Parameter(
        field.name,
        where,
        key,
        info.is_required(),
        field.default,
        many,
        None if plain else field,
    )


def _validates_alone(field: ModelField) -> bool:
    """Whether FastAPI's resolution hands a value of this field straight to `field.validate`:
    not when it is a model of parameters (which FastAPI flattens into its fields) or JSON."""
    not_a_model = get_flat_params(Dependant(query_params=[field])) == [field]
    return not_a_model and not any(type(item) is Json for item in field.field_info.metadata)


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


def _raw(request: Request, parameter: _Parameter) -> str | list[str] | None:
    if parameter.where == "path":
        value: str | None = request.path_params.get(parameter.key)
        return value
    if parameter.where == "query":
        if not request.scope.get("query_string"):
            return None  # most requests have none: no parsing at all
        if parameter.many:
            return request.query_params.getlist(parameter.key) or None
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


class CompiledRoute(APIRoute):
    """An APIRoute whose declaration, when it compiles, is read by its compiled reader."""

    reader: Reader | None  # set by get_route_handler, which APIRoute's __init__ calls

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The query parameters the route accepts (api/routes/query.py refuses any other).
        self.query_parameters = query_parameters_of(self.dependant)
        # A body read by a dependency of its own is documented by that dependency's mark.
        for dependant in _every_dependant(self.dependant):
            body = None if dependant.call is None else documented_body(dependant.call)
            if body is not None:
                self.openapi_extra = {**body, **(self.openapi_extra or {})}

    def get_route_handler(self) -> Handler:
        resolved = super().get_route_handler()
        self.reader = reader = self._reader()
        if reader is None:
            return resolved
        endpoint = self.endpoint

        async def read_and_call(request: Request) -> Response:
            arguments = await reader(request)
            if arguments is None:
                return await resolved(request)
            response: Response = await endpoint(**arguments)
            return response

        return read_and_call

    def _reader(self) -> Reader | None:
        """The compiled reader of an async endpoint that answers a Response, if it compiles."""
        if not inspect.iscoroutinefunction(self.endpoint):
            return None
        answers = typing.get_type_hints(self.endpoint).get("return")
        if not (isinstance(answers, type) and issubclass(answers, Response)):
            return None
        return compile_reader(self.dependant)

    def resolved_handler(self) -> Handler:
        """FastAPI's own handler of this route, resolving the declared parameters."""
        return super().get_route_handler()

    @property
    def is_compiled(self) -> bool:
        """Served by its compiled reader, not by FastAPI's walk."""
        return self.reader is not None


def _every_dependant(dependant: Dependant) -> list[Dependant]:
    found = [dependant]
    for sub in dependant.dependencies:
        found.extend(_every_dependant(sub))
    return found


def query_parameters_of(dependant: Dependant) -> tuple[str, ...]:
    """The query parameters a declaration names, in their order there."""
    fields = get_flat_params(dependant)
    return tuple(field.alias for field in fields if isinstance(field.field_info, params.Query))
