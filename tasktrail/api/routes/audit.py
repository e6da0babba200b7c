"""The audit API: auditors read the log and check its chains. Nothing here writes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from tasktrail.api.deps import Auditor, EngineDep
from tasktrail.api.openapi import problems
from tasktrail.api.problems import Problem
from tasktrail.api.representation import json_response
from tasktrail.api.schemas import VerifyOut
from tasktrail.database import read_connection
from tasktrail.events.chain import RecordedHead
from tasktrail.queries.audit import verify_user

router = APIRouter(tags=["audit"])


@router.get(
    "/api/audit/users/{user_id}/verify",
    response_model=VerifyOut,
    summary="Check a user's hash chain",
    description="Recomputes every data_hash and hash of the user's events from the stored rows, "
    "checks seq has no gap and that the chain ends at the head recorded in user_streams. With "
    "`expected_head=SEQ:HASH`, a head recorded earlier, the chain must still hold that event "
    "with that hash: a chain rewritten consistently from end to end is caught there.",
    responses=problems(401, 403, 422, 503),
)
def verify_chain_of_user(
    engine: EngineDep,
    _: Auditor,
    user_id: str,
    expected_head: Annotated[
        str | None, Query(description="SEQ:HASH, a head recorded earlier outside the database")
    ] = None,
) -> Response:
    expected = None
    if expected_head is not None:
        try:
            expected = RecordedHead.parse(expected_head)
        except ValueError as error:
            raise Problem(
                422,
                f"Fix the query parameter expected_head: {error}.",
                errors=[
                    {"loc": ["query", "expected_head"], "msg": str(error), "type": "value_error"}
                ],
            ) from None
    with read_connection(engine) as conn:
        report = verify_user(conn, user_id, expected)
    return json_response(
        {
            "user_id": user_id,
            "events": report.events,
            "ok": report.ok,
            "head": report.head,
            "first_bad_seq": report.first_bad_seq,
            "reason": report.reason,
        }
    )
