"""Attacks after the OWASP API Security Top 10 (2023) on every route of the served document:
BOLA (API1), mass assignment and data exposure (API3), resource limits (API4), function-level
authorization (API5), injection through every string field and parameter, and misconfiguration
leaks (API8). Both engines.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
from fastapi.testclient import TestClient

from tests.conftest import Api

TASK_FIELDS = {
    "id", "user_id", "title", "description", "completed", "status", "due_at", "priority",
    "tags", "created_at", "updated_at", "completed_at", "version",
}  # fmt: skip
PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance", "request_id"}


@pytest.fixture
def alice(api: Api) -> Api:
    """The attacker: a valid token of her own."""
    return api


@pytest.fixture
def bob(make_api: Callable[[], Api]) -> Api:
    """The victim, with a live task, a completed one and a deleted one."""
    victim = make_api()
    victim.create(title="Bob's secret", description="bob-private-note", tags=["bob-tag"])
    victim.create(title="Bob's done", completed=True)
    gone = victim.create(title="Bob's deleted")
    assert victim.request("DELETE", f"/{gone['id']}").status_code == 204
    return victim


def _everything_of(api: Api) -> dict[str, Any]:
    """Bob's whole view of his data: lists, histories, feed."""
    lists = {s: api.request("GET", params={"status": s}).json() for s in ("all", "deleted")}
    ids = [task["id"] for tasks in lists.values() for task in tasks]
    feed = api.client.get(f"/api/{api.user_id}/events", headers=api.headers).json()
    return {"lists": lists, "histories": {i: api.history(i) for i in ids}, "feed": feed}


def _task_ids(api: Api) -> list[str]:
    return [
        t["id"] for s in ("all", "deleted") for t in api.request("GET", params={"status": s}).json()
    ]


def _user_operations(client: TestClient) -> list[tuple[str, str]]:
    """Every (method, path) of the served document under /api/{user_id}/, HEAD for each GET."""
    document = client.get("/openapi.json").json()
    found = []
    for path, operations in document["paths"].items():
        if path.startswith("/api/{user_id}/"):
            for method in operations:
                found.append((method.upper(), path))
                if method == "get":
                    found.append(("HEAD", path))
    return found


def _body(method: str, path: str) -> dict[str, Any] | None:
    if path.endswith("/complete"):
        return {"completed": True}
    if method in ("PUT", "PATCH") or (method == "POST" and path.endswith("/tasks")):
        return {"title": "intruder"}
    return None


def _send(api: Api, method: str, path: str, user_id: str, task_id: str) -> httpx2.Response:
    url = path.replace("{user_id}", user_id).replace("{task_id}", task_id)
    headers = {**api.headers, "Accept": "application/json"}
    return api.client.request(method, url, headers=headers, json=_body(method, path))


def test_every_user_route_of_the_document_is_403_on_another_users_path(
    client: TestClient, alice: Api, bob: Api
) -> None:
    """API1: Alice's token on Bob's path is 403 for every method and path, and Bob is unchanged."""
    before = _everything_of(bob)
    operations = _user_operations(client)
    assert len(operations) >= 14  # 10 task operations, the feed, and HEAD on the 4 GETs
    for method, path in operations:
        for task_id in _task_ids(bob):
            response = _send(alice, method, path, bob.user_id, task_id)
            assert response.status_code == 403, (method, path, response.text)
            if method != "HEAD":
                assert response.headers["content-type"] == "application/problem+json"
                assert "Bob's" not in response.text
                assert "bob-" not in response.text
    assert _everything_of(bob) == before
    assert alice.request("GET").json() == []


def test_every_audit_route_of_the_document_is_403_without_the_auditor_role(
    client: TestClient, alice: Api, bob: Api
) -> None:
    """API5: Alice (no role) asking the audit routes about Bob, his task or herself is 403."""
    document = client.get("/openapi.json").json()
    audit = [path for path in document["paths"] if path.startswith("/api/audit/")]
    assert len(audit) >= 2
    bob_task = _task_ids(bob)[0]
    for path in audit:
        for user in (bob.user_id, alice.user_id):
            url = path.replace("{user_id}", user)
            params = {"user_id": user, "task_id": bob_task} if "{" not in path else {}
            for method in ("GET", "HEAD"):
                response = client.request(method, url, params=params, headers=alice.headers)
                assert response.status_code == 403, (method, url, response.text)
                assert bob.user_id.encode() not in response.content.replace(url.encode(), b"")


def _comparable(response: httpx2.Response, asked: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and raw body with the per-request parts (request id, instance) and the
    asked id blanked: what must not tell a stranger's task from one that never existed."""
    headers = {k: v for k, v in response.headers.items() if k.lower() != "x-request-id"}
    body = response.content
    for part in (response.headers.get("x-request-id", ""), response.request.url.path, asked):
        if part:
            body = body.replace(part.encode(), b"<>")
            body = body.replace(json.dumps(part)[1:-1].encode(), b"<>")
    headers.pop("content-length", None)
    return response.status_code, headers, body


def test_bobs_task_ids_under_alices_own_path_are_404_byte_for_byte_like_none(
    client: TestClient, alice: Api, bob: Api
) -> None:
    """API1: every operation on a task of Bob's under Alice's path is the very 404 of a random id."""
    before = _everything_of(bob)
    on_a_task = [(m, p) for m, p in _user_operations(client) if "{task_id}" in p]
    assert len(on_a_task) >= 9  # 7 operations, HEAD on the 2 GETs
    for method, path in on_a_task:
        for theirs in _task_ids(bob):
            never = str(uuid.uuid4())
            got = _send(alice, method, path, alice.user_id, theirs)
            missing = _send(alice, method, path, alice.user_id, never)
            assert got.status_code == 404, (method, path, got.text)
            assert _comparable(got, theirs) == _comparable(missing, never), (method, path)
    assert _everything_of(bob) == before


READ_ONLY = {
    "id": "{bob_task}",
    "user_id": "{bob}",
    "version": 99,
    "created_at": "2000-01-01T00:00:00Z",
    "updated_at": "2000-01-01T00:00:00Z",
    "completed_at": "2000-01-01T00:00:00Z",
    "status": "completed",
}


@pytest.mark.parametrize("field", list(READ_ONLY))
@pytest.mark.parametrize("write", ["post", "put", "patch"])
def test_read_only_fields_in_a_body_are_ignored_and_never_take_effect(
    alice: Api, bob: Api, field: str, write: str
) -> None:
    """API3 mass assignment: id, user_id, version, timestamps and status are accepted and ignored
    (api.md), so Alice can neither plant a task as Bob, nor take Bob's id, nor fake history."""
    bob_task = _task_ids(bob)[0]
    value = READ_ONLY[field]
    if isinstance(value, str):
        value = value.format(bob=bob.user_id, bob_task=bob_task)
    before = _everything_of(bob)
    mine = alice.create(title="mine")
    if write == "post":
        response = alice.request("POST", json={"title": "t", field: value})
        assert response.status_code == 201, response.text
    else:
        method = write.upper()
        response = alice.request(method, f"/{mine['id']}", json={"title": "t", field: value})
        assert response.status_code == 200, response.text
    task = response.json()
    assert set(task) == TASK_FIELDS
    assert task["user_id"] == alice.user_id
    assert task["id"] != bob_task
    assert task["version"] == (1 if write == "post" else 2)
    assert task["completed"] is False
    assert task["status"] == "pending"
    assert task["completed_at"] is None
    assert not task["created_at"].startswith("2000")
    assert not task["updated_at"].startswith("2000")
    history = alice.history(task["id"])
    assert field not in json.dumps([event["data"] for event in history]).replace('"title"', "")
    assert _everything_of(bob) == before


INJECTIONS = ["' OR 1=1 --", '"; DROP TABLE tasks; --', "\\", "%", "_", "a%b_c\\d", "';--\\'"]


@pytest.mark.parametrize("text", INJECTIONS, ids=[f"i{n}" for n in range(len(INJECTIONS))])
def test_sql_meta_characters_in_every_body_field_are_stored_literally(
    alice: Api, bob: Api, text: str
) -> None:
    """Injection: title, description and tags keep the exact text and reach nothing else."""
    before = _everything_of(bob)
    task = alice.create(title=f"t{text}", description=text, tags=[text, f"x{text}"])
    assert (task["title"], task["description"], task["tags"]) == (
        f"t{text}",
        text,
        [text, f"x{text}"],
    )
    patched = alice.request("PATCH", f"/{task['id']}", json={"description": f"{text}!"})
    assert patched.json()["description"] == f"{text}!"
    replaced = alice.request("PUT", f"/{task['id']}", json={"title": text, "tags": [text]})
    assert (replaced.json()["title"], replaced.json()["tags"]) == (text, [text])
    assert alice.get(task["id"]).json() == replaced.json()
    assert _everything_of(bob) == before


def test_like_wildcards_in_q_and_tag_match_only_themselves(alice: Api) -> None:
    """Injection: `%`, `_` and `\\` in q or tag are literal characters, not patterns."""
    for title in ("100% done", "snake_case", "back\\slash", "plain words", "percentless"):
        alice.create(title=title, tags=[title.split()[0]])
    expected = {"%": ["100% done"], "_": ["snake_case"], "\\": ["back\\slash"], "%%": []}
    for q, titles in expected.items():
        response = alice.request("GET", params={"q": q})
        assert response.status_code == 200, response.text
        assert sorted(t["title"] for t in response.json()) == titles, q
    for tag, titles in {"100%": ["100% done"], "1_0%": [], "%": [], "_": []}.items():
        response = alice.request("GET", params={"tag": tag})
        assert sorted(t["title"] for t in response.json()) == titles, tag


QUERY_ATTACKS = {
    "status": INJECTIONS[:2],
    "sort": ["title; DROP TABLE tasks", "title,(SELECT 1)", "-created--"],
    "q": INJECTIONS,
    "tag": INJECTIONS,
    "due_before": INJECTIONS[:2],
    "due_after": ["2026-01-01T00:00:00Z' OR '1'='1"],
    "as_of": ["2026-01-01T00:00:00Z; DROP TABLE events"],
    "cursor": INJECTIONS[:2],
    "limit": ["1 OR 1=1", "1;", "%"],
}


@pytest.mark.parametrize("name", list(QUERY_ATTACKS))
def test_sql_meta_characters_in_every_list_parameter_are_200_or_422(
    alice: Api, bob: Api, name: str
) -> None:
    """Injection: each list parameter answers 200 with Alice's tasks only, or 422; never 500."""
    alice.create(title="alice's")
    for value in QUERY_ATTACKS[name]:
        response = alice.request("GET", params={name: value})
        assert response.status_code in (200, 422), (value, response.text)
        if response.status_code == 200:
            assert {t["user_id"] for t in response.json()} <= {alice.user_id}
        else:
            assert set(response.json()) == PROBLEM_FIELDS | {"errors"}
    assert len(_task_ids(bob)) == 3


@pytest.mark.parametrize("text", [*INJECTIONS, "a\x00b"], ids=[*map(str, range(7)), "nul"])
def test_meta_characters_in_headers_and_path_never_reach_the_database(
    alice: Api, text: str
) -> None:
    """Injection through If-Match (412: matches nothing), Idempotency-Key, feed `after` and a task id."""
    task = alice.create(title="guarded")
    if "\x00" not in text:
        stale = alice.request(
            "PATCH", f"/{task['id']}", json={"title": "x"}, headers={"If-Match": text}
        )
        assert stale.status_code == 412, stale.text
        keyed = alice.request("POST", json={"title": "keyed"}, headers={"Idempotency-Key": text})
        assert keyed.status_code in (201, 422), keyed.text
    feed = alice.client.get(
        f"/api/{alice.user_id}/events", params={"after": text}, headers=alice.headers
    )
    assert feed.status_code == 422, feed.text
    by_id = alice.request("GET", f"/{quote(text, safe='')}")
    assert by_id.status_code in (404, 422), by_id.text
    assert alice.get(task["id"]).json()["version"] == 1


def test_nul_in_any_body_string_is_422_and_nothing_is_stored(alice: Api) -> None:
    """A NUL (which PostgreSQL cannot store) is a 422 wherever a body string holds it."""
    task = alice.create(title="t")
    for body in (
        {"title": "a\x00"},
        {"title": "t", "description": "\x00"},
        {"title": "t", "tags": ["\x00"]},
    ):
        assert alice.request("POST", json=body).status_code == 422
        assert alice.request("PATCH", f"/{task['id']}", json=body).status_code == 422
    assert alice.request("GET", params={"q": "\x00"}).status_code == 422
    assert alice.request("GET", params={"tag": "a\x00"}).status_code == 422
    assert alice.request("GET").headers["x-total-count"] == "1"


def _raw(api: Api, method: str, suffix: str, payload: bytes) -> httpx2.Response:
    headers = {"Content-Type": "application/json"}
    response: httpx2.Response = api.request(method, suffix, content=payload, headers=headers)
    return response


NESTED = {
    "10000-arrays": b"[" * 10_000 + b"]" * 10_000,
    "10000-arrays-unclosed": b"[" * 10_000,
    "10000-objects-unclosed": b'{"a":' * 10_000,
    "deep-in-a-read-only-field": b'{"title": "x", "id": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    "deep-in-tags": b'{"title": "x", "tags": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
}


@pytest.mark.parametrize("payload", list(NESTED.values()), ids=list(NESTED))
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("POST", ""), ("PUT", "/{id}"), ("PATCH", "/{id}"), ("PATCH", "/{id}/complete")],
)
def test_deeply_nested_json_is_422_on_every_write(
    alice: Api, payload: bytes, method: str, suffix: str
) -> None:
    """API4: 10,000 levels of nesting anywhere in a body is a 422 problem, never a 500 or a crash."""
    task = alice.create(title="kept")
    response = _raw(alice, method, suffix.format(id=task["id"]), payload)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert alice.get(task["id"]).json() == task
    assert alice.request("GET").headers["x-total-count"] == "1"


OVERSIZED = {
    "over-64-kib-of-title": json.dumps({"title": "x" * 70_000}).encode(),
    "over-64-kib-of-whitespace": b'{"title": "x"' + b" " * 70_000 + b"}",
    "over-64-kib-in-an-ignored-field": json.dumps({"title": "x", "id": "y" * 70_000}).encode(),
    "a-megabyte-of-tags": json.dumps({"title": "x", "tags": ["t"] * 300_000}).encode(),
}


@pytest.mark.parametrize("payload", list(OVERSIZED.values()), ids=list(OVERSIZED))
def test_an_oversized_body_is_413_on_every_write(alice: Api, payload: bytes) -> None:
    """API4: a body over 64 KiB is a 413 whatever it holds, and nothing is written."""
    task = alice.create(title="kept")
    for method, suffix in (("POST", ""), ("PUT", f"/{task['id']}"), ("PATCH", f"/{task['id']}")):
        response = _raw(alice, method, suffix, payload)
        assert response.status_code == 413, (method, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert alice.get(task["id"]).json() == task


@pytest.mark.parametrize(
    "payload",
    [
        b'{"title": "x", "priority": 1e400}',
        b'{"title": "x", "priority": ' + b"9" * 5000 + b"}",
        b'{"title": "x", "version": ' + b"9" * 5000 + b"}",
        b'{"title": "x", "priority": NaN}',
        b'{"title": "x", "title": "y"}',
    ],
    ids=["huge-float", "5000-digit-integer", "5000-digit-read-only", "nan", "duplicate-key"],
)
def test_hostile_numbers_and_keys_are_422_or_plain(alice: Api, payload: bytes) -> None:
    """Numbers past any range, NaN and a repeated key are refused or read plainly; never 500."""
    response = _raw(alice, "POST", "", payload)
    assert response.status_code in (201, 422), response.text
    if response.status_code == 201:
        assert response.json()["title"] in ("x", "y")


def test_responses_carry_no_internal_fields_or_other_users_data(
    client: TestClient, alice: Api, bob: Api
) -> None:
    """API3 data exposure: Alice's tasks and events hold documented fields of hers only."""
    task = alice.create(title="a", description="d", tags=["t"])
    alice.request("PATCH", f"/{task['id']}/complete")
    listed = alice.request("GET").json()
    assert [set(t) for t in listed] == [TASK_FIELDS]
    assert set(alice.get(task["id"]).json()) == TASK_FIELDS
    document = client.get("/openapi.json").json()
    event_fields = set(document["components"]["schemas"]["EventOut"]["properties"])
    feed = client.get(f"/api/{alice.user_id}/events", headers=alice.headers).json()
    assert {e["user_id"] for e in feed} == {alice.user_id}
    assert {e["actor"] for e in feed} == {alice.user_id}
    assert all(set(e) == event_fields for e in feed)
    assert "xid" not in json.dumps(feed)
    assert "bob" not in json.dumps(feed).lower()
    for event in alice.history(task["id"]):
        assert set(event) == event_fields


def test_error_bodies_carry_no_stack_trace_sql_or_secret(alice: Api) -> None:
    """API8: refusals are plain problem bodies with a human detail, nothing of the inside."""
    responses = [
        alice.request("POST", content=b"{", headers={"Content-Type": "application/json"}),
        alice.request("GET", params={"cursor": "' OR 1=1 --"}),
        alice.request("GET", params={"sort": "title; DROP TABLE tasks"}),
        alice.request("GET", f"/{uuid.uuid4()}"),
        alice.client.get(f"/api/{alice.user_id}/tasks", headers={"Authorization": "Bearer x.y.z"}),
    ]
    for response in responses:
        assert response.status_code in (401, 404, 422), response.text
        text = response.text
        assert not re.search(r"Traceback|File \"|sqlalchemy|psycopg|sqlite3|SELECT |\.py\b", text)
        assert set(response.json()) >= PROBLEM_FIELDS


def test_a_method_override_header_is_ignored(alice: Api) -> None:
    """API5: X-HTTP-Method-Override and friends never turn a POST or GET into a DELETE."""
    task = alice.create(title="stays")
    for header in ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"):
        got = alice.get(task["id"], headers={header: "DELETE"})
        assert got.status_code == 200
    assert alice.get(task["id"]).json() == task


def test_a_task_id_in_another_spelling_is_the_same_task_for_its_owner_only(
    alice: Api, bob: Api
) -> None:
    """A UUID written in upper case or with braces names the same task, and still only for Bob."""
    theirs = _task_ids(bob)[0]
    for spelling in (theirs.upper(), "{" + theirs + "}", theirs.replace("-", "")):
        assert alice.get(spelling).status_code == 404
        own = bob.get(spelling)
        assert own.status_code == 200, own.text
        assert own.json()["id"] == theirs
