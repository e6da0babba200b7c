"""The task routes: build a command or a query, run it in one transaction, shape the answer.

No rules live here: `decide` holds them, and domain errors become problems in
api/contract/problems.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast

import uuid_utils
from fastapi import APIRouter, Depends, Header, Query, Request
from sqlalchemy import Engine
from starlette.responses import Response

from tasktrail.api.blocking import in_thread
from tasktrail.api.contract.openapi import answered, json_request_body, problems, reads_body
from tasktrail.api.contract.problems import Problem, task_not_found
from tasktrail.api.contract.representation import task_response
from tasktrail.api.contract.schemas import (
    CompletionSet,
    TaskCreate,
    TaskOut,
    TaskPatch,
    TaskReplace,
)
from tasktrail.api.http.bodies import read_body, require_json_content_type
from tasktrail.api.routes.compiled import CompiledRoute
from tasktrail.api.routes.deps import json_body, parse_entity_tags, validate_json
from tasktrail.api.routes.query import (
    AS_OF_DESCRIPTION,
    TIMESTAMP_SCHEMA,
    OwnTaskDep,
    query_timestamp,
)
from tasktrail.api.routes.write_request import (
    NewTaskWriteDep,
    TaskWriteDep,
    UnconditionalTaskWriteDep,
)
from tasktrail.api.services import services
from tasktrail.api.writes.unit_of_work import Respond, run_write
from tasktrail.database import read_connection
from tasktrail.domain.commands import (
    CompleteTask,
    CreateTask,
    DeleteTask,
    RestoreTask,
    TaskChanges,
    TaskFields,
    UpdateTask,
)
from tasktrail.domain.document import TaskDocument
from tasktrail.domain.errors import TaskNotFound
from tasktrail.domain.fields import EDITABLE_FORMS
from tasktrail.domain.state import TaskState
from tasktrail.queries.as_of import task_as_of
from tasktrail.queries.hot_reads import get_task_document
from tasktrail.queries.tasks import get_task
from tasktrail.storage.port import Outcome

router = APIRouter(tags=["tasks"], route_class=CompiledRoute)

TASKS = "/api/{user_id}/tasks"
TASK = "/api/{user_id}/tasks/{task_id}"
# The statuses of a create and a delete, for their declarations and their answers alike.
_CREATED = 201
_DELETED = 204
_WRITE_PROBLEMS = (401, 403, 404, 408, 409, 412, 413, 415, 422, 503)
# A write that answers the task it left: its ETag, and whether a key replayed it.
_A_TASK_WRITTEN = answered(200, "ETag", "Idempotent-Replayed")


def task_location(task: TaskState) -> str:
    return f"/api/{task.user_id}/tasks/{task.id}"


_create_body = json_body(TaskCreate)


@router.post(
    TASKS,
    status_code=_CREATED,
    response_model=TaskOut,
    summary="Create a task",
    responses={
        **answered(_CREATED, "ETag", "Location", "Idempotent-Replayed"),
        **problems(401, 403, 408, 409, 413, 415, 422, 503),
    },
)
async def create_task(
    request: Request,
    write: NewTaskWriteDep,
    body: Annotated[TaskCreate, Depends(_create_body)],
) -> Response:
    command = CreateTask(
        context=write.context,
        task_id=str(uuid_utils.uuid7()),  # version 7: ids sort by creation time
        fields=_fields_of(body),
        completed=body.completed,
    )

    def respond(outcome: Outcome) -> Response:
        task = _task_of(outcome.state, command.task_id)
        return task_response(outcome.document, _CREATED, {"Location": task_location(task)})

    return await run_write(request, command, write.key, respond)


@router.get(
    TASK,
    response_model=TaskOut,
    summary="Read one live task (or as it was at as_of)",
    responses={**answered(200, "ETag"), **problems(304, 401, 403, 404, 422, 503)},
)
async def read_task(
    request: Request,
    own: OwnTaskDep,
    as_of: Annotated[
        str | None, Query(description=AS_OF_DESCRIPTION, json_schema_extra=TIMESTAMP_SCHEMA)
    ] = None,
    if_none_match: Annotated[
        str | None,
        Header(alias="If-None-Match", description="an ETag you hold; 304 while it is current"),
    ] = None,
) -> Response:
    user_id, task_id = own.user.user_id, own.task_id
    instant = query_timestamp("as_of", as_of)
    if instant is None:
        document = await _stored_document(request, user_id, task_id)
    else:
        engine = services(request).engine
        document = await in_thread(request, _document_as_of, engine, user_id, task_id, instant)
    if document is None:
        raise task_not_found(task_id)
    if _not_modified(if_none_match, document):
        return Response(status_code=304, headers={"ETag": document.etag})
    return task_response(document)


async def _stored_document(request: Request, user_id: str, task_id: str) -> TaskDocument | None:
    """The task as stored: on PostgreSQL one round trip on the event loop, else in a thread."""
    pool = services(request).pool
    if pool is not None:
        async with pool.connection() as conn:
            return await get_task_document(conn, user_id, task_id)
    return await in_thread(request, _document, services(request).engine, user_id, task_id)


def _document(engine: Engine, user_id: str, task_id: str) -> TaskDocument | None:
    with read_connection(engine) as conn:
        return get_task(conn, user_id, task_id)


def _document_as_of(
    engine: Engine, user_id: str, task_id: str, instant: datetime
) -> TaskDocument | None:
    with read_connection(engine) as conn:
        return task_as_of(conn, user_id, task_id, instant)


def _not_modified(header: str | None, document: TaskDocument) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 §13.1.2): the opaque tag, W/ aside."""
    if header is None:
        return False
    tags = parse_entity_tags(header)
    return tags is None or any(f'"{value}"' == document.etag for _, value in tags)


@router.put(
    TASK,
    response_model=TaskOut,
    summary="Replace a task's editable fields",
    responses={**_A_TASK_WRITTEN, **problems(*_WRITE_PROBLEMS)},
)
async def replace_task(
    request: Request,
    write: TaskWriteDep,
    body: Annotated[TaskReplace, Depends(json_body(TaskReplace))],
) -> Response:
    command = UpdateTask(
        context=write.context,
        task_id=write.task_id,
        changes=_fields_of(body).as_changes(),
        completed=body.completed,
        expected_versions=write.expected_versions,
    )
    return await run_write(request, command, write.key, _answering(write.task_id))


_patch_body = json_body(TaskPatch, merge_patch=True)


@router.patch(
    TASK,
    response_model=TaskOut,
    summary="Change some fields (JSON merge patch, RFC 7396)",
    responses={**_A_TASK_WRITTEN, **problems(*_WRITE_PROBLEMS)},
)
async def patch_task(
    request: Request,
    write: TaskWriteDep,
    body: Annotated[TaskPatch, Depends(_patch_body)],
) -> Response:
    command = UpdateTask(
        context=write.context,
        task_id=write.task_id,
        changes=merge_patch_changes(body),
        completed=body.completed,
        expected_versions=write.expected_versions,
    )
    return await run_write(request, command, write.key, _answering(write.task_id))


def merge_patch_changes(body: TaskPatch) -> TaskChanges:
    """RFC 7396 on a task: absent leaves a field, null clears it (title and completed refuse).

    Cleared means the field's default: no description, no due date, no tags, priority 0.
    """
    sent = body.model_fields_set
    for name in ("title", "completed"):
        if name in sent and getattr(body, name) is None:
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
    changes: dict[str, Any] = {}
    for forms in EDITABLE_FORMS:
        if forms.name in sent:
            value = getattr(body, forms.name)
            changes[forms.name] = forms.default if value is None else forms.from_body(value)
    return cast(TaskChanges, changes)


@reads_body(json_request_body(CompletionSet, required=False))
async def completion_wanted(request: Request) -> bool | None:
    """No body, or `{}`, toggles; `{"completed": true|false}` sets."""
    raw = await read_body(request, services(request).settings.body_timeout)
    if not raw:
        return None
    require_json_content_type(request)
    return validate_json(CompletionSet, raw).completed


@router.patch(
    TASK + "/complete",
    response_model=TaskOut,
    summary="Complete or reopen a task",
    description='No body, or an empty object `{}`, toggles completion. `{"completed": true|false}` '
    "sets it: setting what already holds appends nothing and keeps `version` and `completed_at`.",
    responses={**_A_TASK_WRITTEN, **problems(*_WRITE_PROBLEMS)},
)
async def complete_task(
    request: Request,
    write: TaskWriteDep,
    completed: Annotated[bool | None, Depends(completion_wanted)],
) -> Response:
    command = CompleteTask(
        context=write.context,
        task_id=write.task_id,
        completed=completed,
        expected_versions=write.expected_versions,
    )
    return await run_write(request, command, write.key, _answering(write.task_id))


@router.delete(
    TASK,
    status_code=_DELETED,
    summary="Delete a task (its history stays)",
    responses={
        **answered(_DELETED, "Idempotent-Replayed"),
        **problems(401, 403, 404, 409, 412, 422, 503),
    },
)
async def delete_task(request: Request, write: TaskWriteDep) -> Response:
    command = DeleteTask(
        context=write.context, task_id=write.task_id, expected_versions=write.expected_versions
    )
    return await run_write(request, command, write.key, lambda _: Response(status_code=_DELETED))


@router.post(
    TASK + "/restore",
    response_model=TaskOut,
    summary="Undo a delete",
    responses={**_A_TASK_WRITTEN, **problems(401, 403, 404, 409, 422, 503)},
)
async def restore_task(request: Request, write: UnconditionalTaskWriteDep) -> Response:
    command = RestoreTask(context=write.context, task_id=write.task_id)
    return await run_write(request, command, write.key, _answering(write.task_id))


def _answering(task_id: str) -> Respond:
    """The task the write left, as the projector stored it (the outcome's document is the one
    its row holds)."""

    def respond(outcome: Outcome) -> Response:
        _task_of(outcome.state, task_id)
        return task_response(outcome.document)

    return respond


def _fields_of(body: TaskCreate | TaskReplace) -> TaskFields:
    """Every editable field of a create or a PUT (absent ones at their defaults)."""
    return TaskFields(
        **{forms.name: forms.from_body(getattr(body, forms.name)) for forms in EDITABLE_FORMS}
    )


def _task_of(state: TaskState | None, task_id: str) -> TaskState:
    if state is None:
        raise TaskNotFound(task_id)  # answered as task_not_found, by the domain errors' handler
    return state
