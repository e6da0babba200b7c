"""The task routes: build a command or a query, run it in one transaction, shape the answer.

No rules live here: `decide` holds them, and domain errors become problems in api/problems.py.
"""

from __future__ import annotations

from typing import Annotated, Any

import uuid_utils
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from tasktrail.api.deps import (
    ContextDep,
    CurrentUser,
    EngineDep,
    IfMatch,
    TaskId,
    json_body,
    parse_entity_tags,
    read_body,
    require_json_content_type,
    validate_json,
)
from tasktrail.api.openapi import json_request_body, problems
from tasktrail.api.problems import Problem, task_not_found
from tasktrail.api.representation import etag, json_response, task_body
from tasktrail.api.routes.query import only_parameters
from tasktrail.api.schemas import (
    CompletionSet,
    TaskCreate,
    TaskOut,
    TaskPatch,
    TaskReplace,
)
from tasktrail.commands import handlers
from tasktrail.commands.types import (
    CompleteTask,
    CreateTask,
    DeleteTask,
    RestoreTask,
    TaskFields,
    UpdateTask,
)
from tasktrail.database import read_connection, write_transaction
from tasktrail.events.encoding import format_timestamp, parse_timestamp
from tasktrail.projections.state import TaskState
from tasktrail.queries.cursor import InvalidCursor, decode_cursor, encode_cursor, fingerprint
from tasktrail.queries.tasks import ListTasks, StatusFilter, get_task, list_tasks

router = APIRouter(tags=["tasks"])

TASKS = "/api/{user_id}/tasks"
TASK = "/api/{user_id}/tasks/{task_id}"
_WRITE_PROBLEMS = (401, 403, 404, 412, 413, 415, 422, 503)


def task_location(task: TaskState) -> str:
    return f"/api/{task.user_id}/tasks/{task.id}"


def task_response(task: TaskState, status_code: int = 200, **headers: str) -> Response:
    return json_response(task_body(task), status_code, {"ETag": etag(task), **headers})


@router.post(
    TASKS,
    status_code=201,
    response_model=TaskOut,
    summary="Create a task",
    responses=problems(401, 403, 413, 415, 422, 503),
    openapi_extra=json_request_body(TaskCreate),
    dependencies=[Depends(only_parameters())],
)
def create_task(
    engine: EngineDep,
    context: ContextDep,
    body: Annotated[TaskCreate, Depends(json_body(TaskCreate))],
) -> Response:
    command = CreateTask(
        context=context,
        task_id=str(uuid_utils.uuid7()),  # version 7: ids sort by creation time
        fields=TaskFields(
            title=body.title,
            description=body.description,
            due_at=body.due_at,
            priority=body.priority,
            tags=tuple(body.tags),
        ),
        completed=body.completed,
    )
    with write_transaction(engine) as conn:
        task = _task_of(handlers.create_task(conn, command).state, command.task_id)
    return task_response(task, 201, Location=task_location(task))


@router.get(
    TASKS,
    response_model=list[TaskOut],
    summary="List tasks, newest first",
    responses=problems(401, 403, 422, 503),
)
def list_user_tasks(
    request: Request,
    engine: EngineDep,
    user: CurrentUser,
    _: Annotated[None, Depends(only_parameters("status", "limit", "cursor"))],
    status: Annotated[
        StatusFilter,
        Query(description="all (default: every live task), pending, completed, or deleted"),
    ] = StatusFilter.ALL,
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 100,
    cursor: Annotated[str | None, Query(description="opaque; take it from the Link header")] = None,
) -> Response:
    bound_to = fingerprint(
        {name: request.query_params.getlist(name) for name in request.query_params}
    )
    after = None
    if cursor is not None:
        after = _keyset_position(cursor, bound_to)
    query = ListTasks(user_id=user.user_id, status=status, limit=limit, after=after)
    with read_connection(engine) as conn:
        page = list_tasks(conn, query)
    headers = {"X-Total-Count": str(page.total)}
    if page.has_more:
        last = page.tasks[-1]
        token = encode_cursor([format_timestamp(last.created_at), last.id], bound_to)
        headers["Link"] = f'<{request.url.include_query_params(cursor=token)}>; rel="next"'
    return json_response([task_body(task) for task in page.tasks], 200, headers)


def _keyset_position(cursor: str, bound_to: str) -> tuple[Any, str]:
    try:
        created_at, task_id = decode_cursor(cursor, bound_to)
        return parse_timestamp(created_at), str(task_id)
    except (InvalidCursor, ValueError, TypeError) as error:
        raise Problem(
            422,
            f"The cursor is not valid here: {error}.",
            errors=[{"loc": ["query", "cursor"], "msg": str(error), "type": "value_error"}],
        ) from None


@router.get(
    TASK,
    response_model=TaskOut,
    summary="Read one live task",
    responses=problems(304, 401, 403, 404, 422, 503),
    dependencies=[Depends(only_parameters())],
)
def read_task(request: Request, engine: EngineDep, user: CurrentUser, task_id: TaskId) -> Response:
    with read_connection(engine) as conn:
        task = get_task(conn, user.user_id, task_id)
    if task is None:
        raise task_not_found(task_id)
    if _not_modified(request.headers.get("if-none-match"), task):
        return Response(status_code=304, headers={"ETag": etag(task)})
    return task_response(task)


def _not_modified(header: str | None, task: TaskState) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 §13.1.2)."""
    if header is None:
        return False
    tags = parse_entity_tags(header)
    return tags is None or any(value == str(task.version) for _, value in tags)


@router.put(
    TASK,
    response_model=TaskOut,
    summary="Replace a task's editable fields",
    responses=problems(*_WRITE_PROBLEMS),
    openapi_extra=json_request_body(TaskReplace),
    dependencies=[Depends(only_parameters())],
)
def replace_task(
    engine: EngineDep,
    context: ContextDep,
    task_id: TaskId,
    if_match: IfMatch,
    body: Annotated[TaskReplace, Depends(json_body(TaskReplace))],
) -> Response:
    fields = TaskFields(
        title=body.title,
        description=body.description,
        due_at=body.due_at,
        priority=body.priority,
        tags=tuple(body.tags),
    )
    command = UpdateTask(
        context=context,
        task_id=task_id,
        changes=fields.as_changes(),
        completed=body.completed,
        expected_versions=if_match,
    )
    with write_transaction(engine) as conn:
        task = _task_of(handlers.update_task(conn, command).state, task_id)
    return task_response(task)


@router.patch(
    TASK,
    response_model=TaskOut,
    summary="Change some fields (JSON merge patch, RFC 7396)",
    responses=problems(*_WRITE_PROBLEMS),
    openapi_extra=json_request_body(TaskPatch, merge_patch=True),
    dependencies=[Depends(only_parameters())],
)
def patch_task(
    engine: EngineDep,
    context: ContextDep,
    task_id: TaskId,
    if_match: IfMatch,
    body: Annotated[TaskPatch, Depends(json_body(TaskPatch))],
) -> Response:
    command = UpdateTask(
        context=context,
        task_id=task_id,
        changes=merge_patch_changes(body),
        completed=body.completed,
        expected_versions=if_match,
    )
    with write_transaction(engine) as conn:
        task = _task_of(handlers.update_task(conn, command).state, task_id)
    return task_response(task)


_CLEARED: dict[str, Any] = {"description": None, "due_at": None, "tags": (), "priority": 0}


def merge_patch_changes(body: TaskPatch) -> dict[str, Any]:
    """RFC 7396 on a task: absent leaves a field, null clears it (title and completed refuse)."""
    changes: dict[str, Any] = {}
    for name in body.model_fields_set:
        value = getattr(body, name)
        if name in ("title", "completed") and value is None:
            raise Problem(
                422,
                f"Fix the body: {name} cannot be null; leave it out to keep it as it is.",
                errors=[
                    {
                        "loc": ["body", name],
                        "msg": f"{name} cannot be null",
                        "type": "null_not_allowed",
                    }
                ],
            )
        if name in _CLEARED or name == "title":
            changes[name] = _CLEARED.get(name) if value is None else value
    if "tags" in changes:
        changes["tags"] = tuple(changes["tags"])
    return changes


async def completion_wanted(request: Request) -> bool | None:
    """No body toggles; `{"completed": true|false}` sets."""
    raw = await read_body(request)
    if not raw:
        return None
    require_json_content_type(request)
    return validate_json(CompletionSet, raw).completed


@router.patch(
    TASK + "/complete",
    response_model=TaskOut,
    summary="Complete or reopen a task",
    description='No body toggles completion. `{"completed": true|false}` sets it: setting what '
    "already holds appends nothing and keeps `version` and `completed_at`.",
    responses=problems(*_WRITE_PROBLEMS),
    openapi_extra=json_request_body(CompletionSet, required=False),
    dependencies=[Depends(only_parameters())],
)
def complete_task(
    engine: EngineDep,
    context: ContextDep,
    task_id: TaskId,
    if_match: IfMatch,
    completed: Annotated[bool | None, Depends(completion_wanted)],
) -> Response:
    command = CompleteTask(
        context=context, task_id=task_id, completed=completed, expected_versions=if_match
    )
    with write_transaction(engine) as conn:
        task = _task_of(handlers.complete_task(conn, command).state, task_id)
    return task_response(task)


@router.delete(
    TASK,
    status_code=204,
    summary="Delete a task (its history stays)",
    responses=problems(401, 403, 404, 412, 422, 503),
    dependencies=[Depends(only_parameters())],
)
def delete_task(
    engine: EngineDep, context: ContextDep, task_id: TaskId, if_match: IfMatch
) -> Response:
    command = DeleteTask(context=context, task_id=task_id, expected_versions=if_match)
    with write_transaction(engine) as conn:
        handlers.delete_task(conn, command)
    return Response(status_code=204)


@router.post(
    TASK + "/restore",
    response_model=TaskOut,
    summary="Undo a delete",
    responses=problems(401, 403, 404, 409, 422, 503),
    dependencies=[Depends(only_parameters())],
)
def restore_task(engine: EngineDep, context: ContextDep, task_id: TaskId) -> Response:
    command = RestoreTask(context=context, task_id=task_id)
    with write_transaction(engine) as conn:
        task = _task_of(handlers.restore_task(conn, command).state, task_id)
    return task_response(task)


def _task_of(state: TaskState | None, task_id: str) -> TaskState:
    if state is None:
        raise task_not_found(task_id)
    return state
