"""The task routes: build a command or a query, run it in one transaction, shape the answer.

No rules live here: `decide` holds them, and domain errors become problems in api/problems.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import uuid_utils
from fastapi import APIRouter, Depends, Header, Query, Request
from sqlalchemy import Connection
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
from tasktrail.api.idempotency import IdempotencyKeyDep, Written, run_write
from tasktrail.api.openapi import json_request_body, problems
from tasktrail.api.problems import Problem, task_not_found
from tasktrail.api.representation import etag, json_response, task_body
from tasktrail.api.routes.query import AS_OF_DESCRIPTION, only_parameters, query_timestamp
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
from tasktrail.database import read_connection
from tasktrail.projections.state import TaskState
from tasktrail.queries.as_of import task_as_of
from tasktrail.queries.tasks import get_task

router = APIRouter(tags=["tasks"])

TASKS = "/api/{user_id}/tasks"
TASK = "/api/{user_id}/tasks/{task_id}"
_WRITE_PROBLEMS = (401, 403, 404, 408, 409, 412, 413, 415, 422, 503)


def task_location(task: TaskState) -> str:
    return f"/api/{task.user_id}/tasks/{task.id}"


def task_response(task: TaskState, status_code: int = 200, **headers: str) -> Response:
    return json_response(task_body(task), status_code, {"ETag": etag(task), **headers})


@router.post(
    TASKS,
    status_code=201,
    response_model=TaskOut,
    summary="Create a task",
    responses=problems(401, 403, 408, 409, 413, 415, 422, 503),
    openapi_extra=json_request_body(TaskCreate),
    dependencies=[Depends(only_parameters())],
)
def create_task(
    request: Request,
    engine: EngineDep,
    context: ContextDep,
    key: IdempotencyKeyDep,
    body: Annotated[TaskCreate, Depends(json_body(TaskCreate))],
) -> Response:
    command = CreateTask(
        context=context,
        task_id=str(uuid_utils.uuid7()),  # version 7: ids sort by creation time
        fields=_fields_of(body),
        completed=body.completed,
    )

    def write(conn: Connection) -> Written:
        outcome = handlers.create_task(conn, command)
        task = _task_of(outcome.state, command.task_id)
        return Written(task_response(task, 201, Location=task_location(task)), len(outcome.events))

    return run_write(request, engine, context.user_id, key, write)


@router.get(
    TASK,
    response_model=TaskOut,
    summary="Read one live task (or as it was at as_of)",
    responses=problems(304, 401, 403, 404, 422, 503),
    dependencies=[Depends(only_parameters("as_of"))],
)
def read_task(
    engine: EngineDep,
    user: CurrentUser,
    task_id: TaskId,
    as_of: Annotated[str | None, Query(description=AS_OF_DESCRIPTION)] = None,
    if_none_match: Annotated[
        str | None,
        Header(alias="If-None-Match", description="an ETag you hold; 304 while it is current"),
    ] = None,
) -> Response:
    instant = query_timestamp("as_of", as_of)
    with read_connection(engine) as conn:
        if instant is None:
            task = get_task(conn, user.user_id, task_id)
        else:
            task = task_as_of(conn, user.user_id, task_id, instant)
    if task is None:
        raise task_not_found(task_id)
    if _not_modified(if_none_match, task):
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
    request: Request,
    engine: EngineDep,
    context: ContextDep,
    key: IdempotencyKeyDep,
    task_id: TaskId,
    if_match: IfMatch,
    body: Annotated[TaskReplace, Depends(json_body(TaskReplace))],
) -> Response:
    command = UpdateTask(
        context=context,
        task_id=task_id,
        changes=_fields_of(body).as_changes(),
        completed=body.completed,
        expected_versions=if_match,
    )
    return run_write(request, engine, context.user_id, key, _updating(command))


@router.patch(
    TASK,
    response_model=TaskOut,
    summary="Change some fields (JSON merge patch, RFC 7396)",
    responses=problems(*_WRITE_PROBLEMS),
    openapi_extra=json_request_body(TaskPatch, merge_patch=True),
    dependencies=[Depends(only_parameters())],
)
def patch_task(
    request: Request,
    engine: EngineDep,
    context: ContextDep,
    key: IdempotencyKeyDep,
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
    return run_write(request, engine, context.user_id, key, _updating(command))


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
    request: Request,
    engine: EngineDep,
    context: ContextDep,
    key: IdempotencyKeyDep,
    task_id: TaskId,
    if_match: IfMatch,
    completed: Annotated[bool | None, Depends(completion_wanted)],
) -> Response:
    command = CompleteTask(
        context=context, task_id=task_id, completed=completed, expected_versions=if_match
    )

    def write(conn: Connection) -> Written:
        return _answer(handlers.complete_task(conn, command), task_id)

    return run_write(request, engine, context.user_id, key, write)


@router.delete(
    TASK,
    status_code=204,
    summary="Delete a task (its history stays)",
    responses=problems(401, 403, 404, 409, 412, 422, 503),
    dependencies=[Depends(only_parameters())],
)
def delete_task(
    request: Request,
    engine: EngineDep,
    context: ContextDep,
    key: IdempotencyKeyDep,
    task_id: TaskId,
    if_match: IfMatch,
) -> Response:
    command = DeleteTask(context=context, task_id=task_id, expected_versions=if_match)

    def write(conn: Connection) -> Written:
        outcome = handlers.delete_task(conn, command)
        return Written(Response(status_code=204), len(outcome.events))

    return run_write(request, engine, context.user_id, key, write)


@router.post(
    TASK + "/restore",
    response_model=TaskOut,
    summary="Undo a delete",
    responses=problems(401, 403, 404, 409, 422, 503),
    dependencies=[Depends(only_parameters())],
)
def restore_task(
    request: Request,
    engine: EngineDep,
    context: ContextDep,
    key: IdempotencyKeyDep,
    task_id: TaskId,
) -> Response:
    command = RestoreTask(context=context, task_id=task_id)

    def write(conn: Connection) -> Written:
        return _answer(handlers.restore_task(conn, command), task_id)

    return run_write(request, engine, context.user_id, key, write)


def _updating(command: UpdateTask) -> Callable[[Connection], Written]:
    def write(conn: Connection) -> Written:
        return _answer(handlers.update_task(conn, command), command.task_id)

    return write


def _answer(outcome: handlers.Outcome, task_id: str) -> Written:
    return Written(task_response(_task_of(outcome.state, task_id)), len(outcome.events))


def _fields_of(body: TaskCreate | TaskReplace) -> TaskFields:
    """Every editable field of a create or a PUT (absent ones at their defaults)."""
    return TaskFields(
        title=body.title,
        description=body.description,
        due_at=body.due_at,
        priority=body.priority,
        tags=tuple(body.tags),
    )


def _task_of(state: TaskState | None, task_id: str) -> TaskState:
    if state is None:
        raise task_not_found(task_id)
    return state
