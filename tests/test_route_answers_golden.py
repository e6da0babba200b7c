"""The answers of the compiled routes (api/routes/compiled.py) to their corpus of requests
(tests/route_corpus.py), recorded as golden files: one JSON Lines file per route under
tests/golden/routes/, each line a request (method, path and query, the headers the corpus
sets, body) and the app's answer (status, headers, body). The test sends the corpus again through
the app as it serves requests (a test client over an app and a database of each test's own, on
both engines) and requires the same answers, byte for byte, from one set of files for both engines.

To record the answers of today's code afresh (after a change that means to change them):

    TASKTRAIL_TEST_REGENERATE_GOLDEN=1 uv run pytest -n 0 tests/test_route_answers_golden.py

which writes the files instead of comparing (each engine writes the same files; the variable
has the TASKTRAIL_TEST_ prefix because tests/conftest.py drops other TASKTRAIL_ variables), then
run the test again without it: both engines must match what was written.

What would differ from one run to the next is made the same instead:

- time: frozen (freezegun) at FROZEN_AT and moved on by STEP before every request the test
  sends, its setup's included, so every timestamp an answer holds and every token's expiry
  are the same each run. FROZEN_AT lies in the past on purpose: on PostgreSQL an idempotency
  key stored in one round trip gets the database's own clock (now(), migration 0013), and the
  service drops a user's keys older than 24 h by the frozen clock; a frozen instant after the
  real one would drop them there and not on SQLite.
- task ids: the server makes them with uuid_utils.uuid7(); here each route's test takes them
  from a counter (`fixed_task_ids`), in the order the tasks are created.
- users: each route's test has its own fixed user ids (tests share a database, never a user).

What cannot be made the same is replaced by a placeholder (`normalised`): the request id the
service makes for each request (a random UUID, sent as X-Request-Id and in a problem's
`request_id`) becomes "<request-id>", only where that very value stands. Nothing else is masked:
status, every other header, and the body as sent. A UUID of version 4 anywhere else in an answer
fails the test: it would be a value made at random that nothing here makes the same.
"""

from __future__ import annotations

import base64
import difflib
import itertools
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import uuid_utils
from fastapi.testclient import TestClient
from freezegun import freeze_time

from tasktrail.api.app import create_app
from tests.conftest import Api, service_role_settings
from tests.route_corpus import (
    LIST_ROUTE,
    READ_ROUTE,
    WRITE_BODIES,
    list_queries,
    list_requests,
    list_tasks,
    read_requests,
    read_tasks,
    twin_task,
    write_headers,
)

GOLDEN = Path(__file__).resolve().parent / "golden" / "routes"
REGENERATE = os.environ.get("TASKTRAIL_TEST_REGENERATE_GOLDEN") == "1"

FROZEN_AT = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
STEP = timedelta(milliseconds=100)  # ~1,100 requests: 2 minutes, within the tokens' 10
# The test client's own machinery (event loop, transport), the database driver's timeouts and
# the pool's timers keep the real clock.
FREEZEGUN_IGNORE = ["anyio", "starlette", "httpx2", "httpx", "psycopg", "psycopg_pool"]

# A user whose token is valid but not the path's (it never writes).
STRANGER = "golden-stranger"
_REQUEST_ID = "<request-id>"
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass(frozen=True, slots=True)
class Sent:
    """One request of a corpus, as sent."""

    method: str
    target: str  # path and query
    headers: dict[str, str]
    body: bytes | None

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "target": self.target,
            "headers": self.headers,
            "body": None if self.body is None else self.body.decode(),
        }


# --- the corpus of each route, sent in this order ----------------------------------------------


def _read_corpus(client: TestClient) -> Iterator[Sent]:
    api = Api(client, "golden-reader")
    ids = read_tasks(api)
    for method, target, headers in read_requests(api, ids, STRANGER):
        yield Sent(method, target, headers, None)


def _list_corpus(client: TestClient) -> Iterator[Sent]:
    api = Api(client, "golden-lister")
    list_tasks(api)
    for method, target, headers in list_requests(api, list_queries(client, api), STRANGER):
        yield Sent(method, target, headers, None)


def _write_corpus(route: str, user_id: str) -> Callable[[TestClient], Iterator[Sent]]:
    """Each body with each header set; a route of a task gets a fresh task for each (made just
    before the request is sent)."""
    method, template = route.split(" ")

    def corpus(client: TestClient) -> Iterator[Sent]:
        api = Api(client, user_id)
        for body, headers in itertools.product(WRITE_BODIES[route], write_headers(api, STRANGER)):
            task = twin_task(api) if "{task_id}" in template else ""
            path = template.replace("{user_id}", api.user_id).replace("{task_id}", task)
            yield Sent(method, path, headers, body)

    return corpus


_CREATE, _PATCH, _COMPLETE = WRITE_BODIES


@dataclass(frozen=True, slots=True)
class Corpus:
    number: int  # in the fixed task ids: each route's tasks are its own
    requests: Callable[[TestClient], Iterator[Sent]]
    size: int  # as tests/test_compiled_routes.py counts it


CORPORA = {
    READ_ROUTE: Corpus(1, _read_corpus, 560),
    LIST_ROUTE: Corpus(2, _list_corpus, 38 * 8),
    _CREATE: Corpus(3, _write_corpus(_CREATE, "golden-creator"), 7 * 9),
    _PATCH: Corpus(4, _write_corpus(_PATCH, "golden-patcher"), 6 * 9),
    _COMPLETE: Corpus(5, _write_corpus(_COMPLETE, "golden-completer"), 4 * 9),
}


def golden_file(route: str) -> Path:
    """tests/golden/routes/<METHOD>_<path with its braces dropped, / as _>.jsonl"""
    method, path = route.split(" ")
    slug = re.sub(r"[{}]", "", path).strip("/").replace("/", "_")
    return GOLDEN / f"{method}_{slug}.jsonl"


# --- what is made the same ---------------------------------------------------------------------


def fixed_task_ids(number: int) -> Callable[[], uuid.UUID]:
    """Version-7-shaped ids in creation order: 0000000<number>-0000-7000-a000-<counter>."""
    counter = itertools.count(1)
    return lambda: uuid.UUID(f"0000000{number}-0000-7000-a000-{next(counter):012d}")


@contextmanager
def deterministic(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, number: int
) -> Iterator[None]:
    """Time frozen and moved on by STEP before each request the client sends; fixed task ids."""
    monkeypatch.setattr(uuid_utils, "uuid7", fixed_task_ids(number))
    hooks = client.event_hooks
    with freeze_time(FROZEN_AT, ignore=FREEZEGUN_IGNORE, real_asyncio=True) as frozen:

        def tick(_: object) -> None:
            frozen.tick(STEP)

        client.event_hooks = {**hooks, "request": [*hooks["request"], tick]}
        try:
            yield
        finally:
            client.event_hooks = hooks


def normalised(response: Any) -> dict[str, Any]:
    """The answer as recorded: status, headers sorted (names in lower case) and the body.

    The one replacement: the request id the service made for this request (a version-4 UUID in
    X-Request-Id; the corpus sends none) becomes "<request-id>", in that header and wherever the
    same value stands in the body (a problem's `request_id`). The body is kept as sent: as `json`
    when it is JSON that orjson writes back to exactly the same bytes, else as `text` (UTF-8),
    else as `base64`; each of the three gives back the bytes as sent.
    """
    content: bytes = response.content
    headers = sorted((name.lower(), value) for name, value in response.headers.multi_items())
    request_id = response.headers.get("x-request-id")
    if request_id is not None and _UUID.fullmatch(request_id):
        assert uuid.UUID(request_id).version == 4, request_id
        content = content.replace(request_id.encode(), _REQUEST_ID.encode())
        headers = [
            (name, _REQUEST_ID if name == "x-request-id" else value) for name, value in headers
        ]
    answer: dict[str, Any] = {"status": response.status_code, "headers": headers}
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        parsed = None
    else:
        if orjson.dumps(parsed) == content:
            answer["json"] = parsed
            return answer
    try:
        answer["text"] = content.decode()
    except UnicodeDecodeError:
        answer["base64"] = base64.b64encode(content).decode()
    return answer


def _random_uuids(answer: dict[str, Any]) -> list[str]:
    text = orjson.dumps(answer).decode()
    return [found for found in _UUID.findall(text) if uuid.UUID(found).version == 4]


# --- recording and comparing -------------------------------------------------------------------


def answers(client: TestClient, corpus: Corpus) -> list[str]:
    """Each request of the corpus sent through the app, in order; the lines of its golden file
    (sorted by request)."""
    lines: dict[str, str] = {}
    for order, sent in enumerate(corpus.requests(client)):
        response = client.request(
            sent.method,
            sent.target,
            headers=sent.headers,
            content=sent.body,
            follow_redirects=False,
        )
        answer = normalised(response)
        assert not _random_uuids(answer), (sent, answer)
        request = orjson.dumps(sent.as_json()).decode()
        assert request not in lines, f"the corpus sends {request} twice"
        lines[request] = orjson.dumps(
            {"request": sent.as_json(), "answer": answer, "order": order}
        ).decode()
    return [lines[request] for request in sorted(lines)]


def _differences(expected: list[str], actual: list[str], shown: int = 3) -> str:
    """The requests one side lacks, and each of the first `shown` differing answers: its
    request and a diff of the recorded and the new answer."""

    def by_request(lines: list[str]) -> dict[str, dict[str, Any]]:
        parsed = (orjson.loads(line) for line in lines)
        return {orjson.dumps(entry["request"]).decode(): entry for entry in parsed}

    recorded, now = by_request(expected), by_request(actual)
    report = []
    missing = [request for request in recorded if request not in now]
    new = [request for request in now if request not in recorded]
    if missing:
        report.append(f"{len(missing)} recorded requests are no longer sent, e.g. {missing[0]}")
    if new:
        report.append(f"{len(new)} requests sent are not recorded, e.g. {new[0]}")
    differing = [r for r in recorded if r in now and recorded[r] != now[r]]
    report.append(f"{len(differing)} of {len(now)} answers differ" + (":" if differing else "."))
    for request in differing[:shown]:
        report.append(f"\n{request}")
        before = orjson.dumps(recorded[request], option=orjson.OPT_INDENT_2).decode()
        after = orjson.dumps(now[request], option=orjson.OPT_INDENT_2).decode()
        diff = difflib.unified_diff(
            before.splitlines(), after.splitlines(), "recorded", "answered now", lineterm=""
        )
        report.append("\n".join(diff))
    return "\n".join(report)


@pytest.mark.parametrize("route", list(CORPORA), ids=lambda route: golden_file(route).stem)
def test_the_compiled_routes_answer_their_corpus_as_recorded(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    # A database and an app of this test alone: no other test's connections, locks or rows
    # are in the way of answers that must not change by a byte.
    app = create_app(service_role_settings(fresh_database_url))
    corpus = CORPORA[route]
    with TestClient(app) as client, deterministic(client, monkeypatch, corpus.number):
        actual = answers(client, corpus)
    assert len(actual) == corpus.size
    path = golden_file(route)
    if REGENERATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        written = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        written.write_text("".join(f"{line}\n" for line in actual), encoding="utf-8")
        written.replace(path)  # at once: the other engine may write the same file meanwhile
        return
    assert path.exists(), f"{path} is missing: TASKTRAIL_TEST_REGENERATE_GOLDEN=1 records it"
    expected = path.read_text(encoding="utf-8").splitlines()
    if expected != actual:
        pytest.fail(f"{path.name}: {_differences(expected, actual)}", pytrace=False)
