"""Fuzzing from the served OpenAPI document: no 5xx, no response outside the document, and no
request of user A that reaches user B's data.

Each operation is fuzzed on its own (schemathesis's property-based tests, positive and negative
data), then in workflows that follow the links schemathesis infers between operations (create,
then read, update, complete, delete or restore the task it made). Every request is sent as user A,
with A's token on A's path, while user B has tasks, a deleted task and a feed; after the run B's
tasks, histories and feed are exactly as before.

Bounded by default; `TASKTRAIL_FUZZ_EXAMPLES=500` (examples per operation and workflows) fuzzes
at full size.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.conftest import Api

# Hypothesis warns when the global `random` state moves while it draws an example, taking it for
# a strategy that uses `random`. The app's connection pool moves it from another thread
# (psycopg_pool jitters each new connection's lifetime with `random.random()`), so the warning
# fires, now and then, on a draw that used no `random` at all.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
EXAMPLES = int(os.environ.get("TASKTRAIL_FUZZ_EXAMPLES", "8"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no example database left in the tree; every run starts fresh
    suppress_health_check=list(HealthCheck),
    stateful_step_count=8,
)
FEED_PATH = "/api/{user_id}/events"
FUZZ_CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            # Schemathesis's default, and 412: a well-formed If-Match naming another version of
            # the task is a valid request that the contract answers with 412.
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", 401, 403, 404, 409, 412, 429, "5xx"]
            }
        },
        "operations": [
            {
                # A task's history is served "also after deletion" (api.md): the one read under a
                # deleted task's path that is meant to stay 200. Every other read is still
                # checked to be 404 once the task is deleted.
                "include-path": "/api/{user_id}/tasks/{task_id}/events",
                "checks": {"use_after_free": {"enabled": False}},
            }
        ],
    }
)


def _view(api: Api) -> dict[str, Any]:
    """All that B could see of B's own data: every list, every history and the whole feed."""
    lists = {
        status: api.request("GET", params={"status": status, "limit": 1000}).json()
        for status in ("all", "deleted")
    }
    histories = {task["id"]: api.history(task["id"]) for tasks in lists.values() for task in tasks}
    feed = api.client.get(
        f"/api/{api.user_id}/events",
        params={"limit": 1000},
        headers={**api.headers, "Accept": "application/json"},
    )
    assert feed.status_code == 200, feed.text
    return {"lists": lists, "histories": histories, "feed": feed.json()}


@pytest.fixture
def fuzzer(make_api: Callable[[], Api]) -> Api:
    """User A, who sends every fuzzed request, with a few tasks of A's own to act on."""
    api = make_api()
    api.create(title="A's first", tags=["x"], priority=2)
    done = api.create(title="A's done", completed=True)
    api.request("DELETE", f"/{done['id']}")
    return api


@pytest.fixture
def bystander(make_api: Callable[[], Api]) -> Iterator[Api]:
    """User B, whose data must come out of the run exactly as it went in."""
    api = make_api()
    api.create(title="B's task", description="B's private note", tags=["b"])
    api.create(title="B's done", completed=True, priority=3)
    gone = api.create(title="B's deleted")
    assert api.request("DELETE", f"/{gone['id']}").status_code == 204
    before = _view(api)
    assert len(before["feed"]) == 4
    yield api
    assert _view(api) == before


@pytest.fixture
def fuzz_schema(app: FastAPI, client: TestClient) -> OpenApiSchema:
    """The document the app serves, loaded through the app itself (ASGI, in process)."""
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=FUZZ_CONFIG)


def _task_ids(api: Api) -> list[str]:
    tasks = [*api.request("GET").json(), *api.request("GET", params={"status": "deleted"}).json()]
    return [task["id"] for task in tasks]


def _unfloated(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _drop_query(case: Case[Any], name: str) -> None:
    # A new mapping, not pop(): schemathesis tracks the one it generated and may send it again.
    if case.query and name in case.query:
        case.query = {key: value for key, value in case.query.items() if key != name}


def as_user_a(case: Case[Any], fuzzer: Api, pool: list[str] | None = None) -> None:
    """Make the case A's (A's path; a generated task id may become a real one); A's token goes
    with the call (`headers=`), so that schemathesis knows it for valid and probes without it."""
    if case.path_parameters and "user_id" in case.path_parameters:
        case.path_parameters["user_id"] = fuzzer.user_id
    if pool and case.path_parameters and "task_id" in case.path_parameters:
        # Random UUIDs only ever meet 404s: most become one of A's or B's real task ids.
        generated = str(case.path_parameters["task_id"])
        try:
            index = uuid.UUID(generated).int % (len(pool) + 1)
        except ValueError:
            index = len(pool)
        if index < len(pool):
            case.path_parameters["task_id"] = pool[index]
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if positive:
        # Valid-looking but unknown to the service: a cursor is signed by it (a made-up one is a
        # 422, tested in test_list_sorting_and_paging.py), and a key reused with another body is
        # a 422 (test_idempotency.py). Valid data keeps neither; invalid data keeps both.
        _drop_query(case, "cursor")
        if "Idempotency-Key" in case.headers:
            case.headers["Idempotency-Key"] = uuid.uuid4().hex
        # JSON Schema counts 2.0 as an integer and cannot say otherwise; api.md's strict types
        # do not (`priority: 2.0` is a 422, tested in test_field_validation.py).
        if isinstance(case.body, dict):
            case.body = {key: _unfloated(value) for key, value in case.body.items()}
    if case.operation.path == FEED_PATH:
        # The SSE form never ends; the stream has its own tests (test_live_feed*.py). Its
        # `access_token` belongs to it alone: the JSON form refuses one (422), as api.md says.
        case.headers["Accept"] = "application/json"
        if positive:
            _drop_query(case, "access_token")


def _text_on_the_wire(case: Case[Any]) -> bool:
    """Whether invalid data is only a wrong JSON type for a text query parameter (a number or an
    object for `q` or `tag`): the query string turns it into text, which is valid (api.md: query
    parameters are text and are parsed), so no service could reject it."""
    for parameter in case.operation.iter_parameters():
        if parameter.location != "query" or parameter.name not in (case.query or {}):
            continue
        value = case.query[parameter.name]
        kind = parameter.definition.get("schema", {}).get("type")
        if kind == "string" and not isinstance(value, str):
            return True
        texts = isinstance(value, list) and all(isinstance(item, str) for item in value)
        if kind == "array" and not (isinstance(value, str) or texts):
            return True
    return False


def _truly_invalid_if_invalid(case: Case[Any]) -> bool:
    """Whether a case of invalid data stays invalid once sent as A. Left out: a wrong JSON type
    for a text query parameter (above), and invalid headers, mostly a missing or made-up
    Authorization that A's token sent with the call would mend. Tokens have their own tests
    (test_auth.py, test_attacks_tokens.py), and schemathesis still probes each operation without
    and with a bad token."""
    if case.meta is None or not case.meta.generation.mode.is_negative:
        return True
    return not (_text_on_the_wire(case) or case.meta.is_negative_at(ParameterLocation.HEADER))


def _modes(operation: APIOperation[Any, Any, Any, Any]) -> list[GenerationMode]:
    """Valid and invalid data where invalid data can be sent: in a query or a body. Path
    parameters are free text (and A's own user id), and invalid headers are left out (below)."""
    inputs = [param for param in operation.iter_parameters() if param.location == "query"]
    if inputs or operation.body:
        return list(GenerationMode)
    return [GenerationMode.POSITIVE]


def test_every_operation_survives_fuzzing(
    fuzz_schema: OpenApiSchema, fuzzer: Api, bystander: Api
) -> None:
    """Each operation, fed generated data as A, answers within the document and leaves B alone."""
    pool = _task_ids(fuzzer) + _task_ids(bystander)

    for result in fuzz_schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        for mode in _modes(operation):

            @FUZZ_SETTINGS
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: Case[Any]) -> None:
                assume(_truly_invalid_if_invalid(case))
                as_user_a(case, fuzzer, pool)
                case.call_and_validate(headers=fuzzer.headers)

            check()


def test_workflows_along_the_links_survive_fuzzing(
    fuzz_schema: OpenApiSchema, make_api: Callable[[], Api], bystander: Api
) -> None:
    """Sequences that reuse what earlier responses returned stay within the document, as A only."""
    machine = fuzz_schema.as_state_machine()

    class AsUserA(machine):  # type: ignore[valid-type,misc]
        # A new user A for each scenario: a scenario then starts from the same (empty) state each
        # time, which Hypothesis needs when it replays one; with one user for every scenario the
        # lists a scenario reads grow run after run, and the replay draws other data.
        def setup(self) -> None:
            self.user = make_api()

        def before_call(self, case: Case[Any]) -> None:
            assume(_truly_invalid_if_invalid(case))
            as_user_a(case, self.user)

        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
            return {"headers": self.user.headers}

    AsUserA.run(settings=FUZZ_SETTINGS)
