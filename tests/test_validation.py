"""Input rules of api.md: strict bodies, lengths, timestamps, media types, ids, query, errors."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from tests.conftest import Api, auth

PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance", "request_id"}
NOT_A_UUID = ["not-a-uuid", "123", "01936d1e-0000-7000-8000-00000000000g"]
JSON = {"Content-Type": "application/json"}
MISSING: Any = object()  # a field left out of the body


def assert_problem(response: httpx2.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem of this status, with `errors` exactly on 422."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) == PROBLEM_FIELDS | ({"errors"} if status == 422 else set())
    assert body["status"] == status
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    if status == 422:
        assert body["errors"], "a 422 names at least one error"
        for error in body["errors"]:
            assert set(error) == {"loc", "msg", "type"}
            assert isinstance(error["loc"], list)
    return body


def error_locs(response: httpx2.Response) -> list[list[Any]]:
    body = assert_problem(response, 422)
    return [error["loc"] for error in body["errors"]]


def post_raw(api: Api, content: bytes, content_type: str = "application/json") -> Any:
    return api.request("POST", content=content, headers={"Content-Type": content_type})


# --- strict types ---------------------------------------------------------------------------

STRICT = {
    "title-int": ("title", 5),
    "title-bool": ("title", True),
    "completed-true-string": ("completed", "true"),
    "completed-yes": ("completed", "yes"),
    "completed-one": ("completed", 1),
    "priority-float": ("priority", 1.5),
    "priority-string": ("priority", "2"),
    "priority-bool": ("priority", True),
    "priority-whole-float": ("priority", 2.0),
    "tags-string": ("tags", "x"),
    "tags-of-int": ("tags", [1]),
    "description-int": ("description", 5),
    "due_at-number": ("due_at", 1700000000),
}


@pytest.mark.parametrize("method", ["POST", "PATCH"], ids=["post", "patch"])
@pytest.mark.parametrize(("field", "value"), list(STRICT.values()), ids=list(STRICT))
def test_a_wrongly_typed_field_is_422(api: Api, method: str, field: str, value: Any) -> None:
    """Types are strict on POST and PATCH: no coercion; a patched task stays unchanged."""
    created = api.create()
    suffix = "" if method == "POST" else f"/{created['id']}"
    locs = error_locs(api.request(method, suffix, json={"title": "t", field: value}))
    assert all(loc[:2] == ["body", field] for loc in locs), locs
    assert api.get(created["id"]).json() == created


@pytest.mark.parametrize(
    "body",
    [{"completed": "true"}, {"completed": 1}, {"completed": None}, {}, {"done": True}],
    ids=["string", "int", "null", "empty-object", "unknown-field"],
)
def test_a_bad_completion_body_is_422(api: Api, body: dict[str, Any]) -> None:
    """PATCH .../complete takes exactly {"completed": true|false}."""
    task_id = api.create()["id"]
    assert_problem(api.request("PATCH", f"/{task_id}/complete", json=body), 422)
    assert api.get(task_id).json()["version"] == 1


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"], ids=["post", "put", "patch"])
def test_an_unknown_field_is_422(api: Api, method: str) -> None:
    """A body field the contract does not know is 422, located at the field."""
    suffix = "" if method == "POST" else f"/{api.create()['id']}"
    response = api.request(method, suffix, json={"title": "t", "colour": "red"})
    assert error_locs(response) == [["body", "colour"]]


# --- read-only fields -----------------------------------------------------------------------

READ_ONLY = {
    "id": "not-even-a-uuid",
    "user_id": "someone-else",
    "status": "completed",
    "created_at": "1999-01-01T00:00:00.000000Z",
    "updated_at": "garbage",
    "completed_at": "2000-01-01T00:00:00Z",
    "version": 99,
}


def test_read_only_fields_are_ignored_on_create(api: Api) -> None:
    """POST accepts the read-only fields and ignores them."""
    body = api.create(title="t", **READ_ONLY)
    assert uuid.UUID(body["id"]).version == 7
    assert body["user_id"] == api.user_id
    assert body["status"] == "pending"
    assert body["completed"] is False
    assert body["completed_at"] is None
    assert body["created_at"] != READ_ONLY["created_at"]
    assert body["version"] == 1


def test_a_whole_get_body_can_be_sent_back_with_put(api: Api) -> None:
    """PUT takes back what GET gave, with one field edited."""
    task = api.create(title="t", description="d", tags=["a"], priority=2)
    response = api.request("PUT", f"/{task['id']}", json={**task, "title": "edited"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        **task,
        "title": "edited",
        "version": 2,
        "updated_at": response.json()["updated_at"],
    }


def test_read_only_fields_in_put_and_patch_change_nothing(api: Api) -> None:
    """Read-only fields alone in PUT/PATCH are ignored: no event, status not touched."""
    task = api.create(title="t")
    for method in ("PATCH", "PUT"):
        response = api.request(method, f"/{task['id']}", json={"title": "t", **READ_ONLY})
        assert response.status_code == 200, response.text
        assert response.json() == task
    assert len(api.history(task["id"])) == 1


# --- field rules ----------------------------------------------------------------------------

TWENTY_TAGS = [f"{n:02d}" + "t" * 48 for n in range(20)]
ACCEPTED = {
    "title-trimmed": ("title", "  Buy milk\n\t", "Buy milk"),
    "title-200": ("title", "a" * 200, "a" * 200),
    "title-200-after-trim": ("title", "  " + "a" * 200 + "  ", "a" * 200),
    "title-200-emoji": ("title", "😀" * 200, "😀" * 200),
    "title-200-accented": ("title", "é" * 200, "é" * 200),
    "description-1000": ("description", "ü" * 1000, "ü" * 1000),
    "description-null": ("description", None, None),
    "priority-0": ("priority", 0, 0),
    "priority-3": ("priority", 3, 3),
    "tags-20-of-50": ("tags", TWENTY_TAGS, TWENTY_TAGS),
    "tags-deduplicated": ("tags", ["Home", "work", "home", "WORK", "x"], ["Home", "work", "x"]),
    "tags-casefolded": ("tags", ["Straße", "STRASSE"], ["Straße"]),
    "due_at-utc": ("due_at", "2026-11-24T10:15:00Z", "2026-11-24T10:15:00.000000Z"),
    "due_at-offset": ("due_at", "2026-11-24T12:15:00+02:00", "2026-11-24T10:15:00.000000Z"),
    "due_at-odd-offset": ("due_at", "2026-11-24T10:15:00.5-03:30", "2026-11-24T13:45:00.500000Z"),
    "due_at-six-digits": ("due_at", "2026-11-24T10:15:00.123456Z", "2026-11-24T10:15:00.123456Z"),
    "due_at-year-one": ("due_at", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000Z"),
    "due_at-null": ("due_at", None, None),
}
REJECTED = {
    "title-missing": ("title", MISSING),
    "title-empty": ("title", ""),
    "title-blank": ("title", " \n\t "),
    "title-201": ("title", "a" * 201),
    "title-201-emoji": ("title", "😀" * 201),
    "title-nul": ("title", "a\u0000b"),
    "description-1001": ("description", "d" * 1001),
    "description-nul": ("description", "a\u0000b"),
    "priority-4": ("priority", 4),
    "priority-minus-1": ("priority", -1),
    "priority-huge": ("priority", 2**70),
    "tags-21": ("tags", [f"t{n}" for n in range(21)]),
    "tags-51-chars": ("tags", ["x" * 51]),
    "tags-empty-tag": ("tags", [""]),
    "tags-blank-tag": ("tags", ["   "]),
    "tags-nul": ("tags", ["ok", "a\u0000b"]),
    "due_at-naive": ("due_at", "2026-11-24T10:15:00"),
    "due_at-date-only": ("due_at", "2026-11-24"),
    "due_at-seven-digits": ("due_at", "2026-11-24T10:15:00.1234567Z"),
    "due_at-seven-digits-offset": ("due_at", "2026-11-24T10:15:00.1234567+01:00"),
    "due_at-garbage": ("due_at", "garbage"),
    "due_at-empty": ("due_at", ""),
    "due_at-month-13": ("due_at", "2026-13-01T00:00:00Z"),
    "due_at-feb-30": ("due_at", "2026-02-30T00:00:00Z"),
    "due_at-past-9999-in-utc": ("due_at", "9999-12-31T23:00:00-05:00"),
}


@pytest.mark.parametrize(("field", "sent", "kept"), list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_a_value_within_the_rules_is_stored_normalised(
    api: Api, field: str, sent: Any, kept: Any
) -> None:
    """Values within the rules are accepted: trimmed, deduplicated, due_at in UTC with six digits."""
    fields = {"title": "t", field: sent}
    assert api.create(**fields)[field] == kept


@pytest.mark.parametrize(("field", "value"), list(REJECTED.values()), ids=list(REJECTED))
def test_a_value_outside_the_rules_is_422_at_its_field(api: Api, field: str, value: Any) -> None:
    """Lengths (code points, after trimming), ranges, tags, due_at and NUL are checked: 422."""
    body = {"title": "t", field: value}
    if value is MISSING:
        del body[field]
    locs = error_locs(api.request("POST", json=body))
    assert all(loc[:2] == ["body", field] for loc in locs), locs


def test_put_without_a_title_is_422(api: Api) -> None:
    """PUT replaces, so it needs a title like POST does."""
    task_id = api.create()["id"]
    assert error_locs(api.request("PUT", f"/{task_id}", json={})) == [["body", "title"]]


# --- text the database cannot store ---------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b'{"title": "a\\ud800b"}',
        b'{"title": "a\\udc00"}',
        b'{"title": "t", "description": "\\ud83d"}',
        b'{"title": "t", "tags": ["\\udfff"]}',
    ],
    ids=["title-high", "title-low", "description", "tag"],
)
def test_an_unpaired_surrogate_escape_is_422(api: Api, content: bytes) -> None:
    """A lone UTF-16 surrogate sent as a JSON escape is 422, never stored or replaced."""
    assert_problem(post_raw(api, content), 422)


def test_a_paired_surrogate_escape_is_the_character_it_encodes(api: Api) -> None:
    """A surrogate pair escape decodes to its one character."""
    response = post_raw(api, b'{"title": "\\ud83d\\ude00 party"}')
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "😀 party"


# --- bodies that are not JSON objects -------------------------------------------------------


NOT_A_JSON_OBJECT = {
    "truncated": b'{"title": "t"',
    "single-quotes": b"{'title': 't'}",
    "invalid-utf8": b'{"title": "\xff\xfe"}',
    "latin-1": b'{"title": "caf\xe9"}',
    "list": b'["title"]',
    "string": b'"title"',
    "number": b"42",
    "null": b"null",
    "empty": b"",
    "two-documents": b'{"title": "a"} {"title": "b"}',
}


@pytest.mark.parametrize("content", list(NOT_A_JSON_OBJECT.values()), ids=list(NOT_A_JSON_OBJECT))
def test_a_body_that_is_not_a_utf8_json_object_is_422(api: Api, content: bytes) -> None:
    """Invalid JSON, invalid UTF-8, or JSON that is not an object is 422, never 400."""
    assert_problem(post_raw(api, content), 422)


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "Application/JSON", "application/json;charset=UTF-8"],
    ids=["charset", "upper-case", "charset-no-space"],
)
def test_json_content_types_with_parameters_are_accepted(api: Api, content_type: str) -> None:
    """The media type is compared case-insensitively and parameters do not matter."""
    assert post_raw(api, b'{"title": "t"}', content_type).status_code == 201


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"],
    ids=["missing", "text-plain", "form", "multipart"],
)
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("POST", ""), ("PUT", "/{id}"), ("PATCH", "/{id}"), ("PATCH", "/{id}/complete")],
    ids=["post", "put", "patch", "complete"],
)
def test_a_body_that_is_not_declared_json_is_415(
    api: Api, method: str, suffix: str, content_type: str | None
) -> None:
    """A body with no Content-Type or a non-JSON one is 415."""
    task_id = api.create()["id"]
    headers = {} if content_type is None else {"Content-Type": content_type}
    content = b'{"completed": true}' if "complete" in suffix else b'{"title": "t"}'
    response = api.request(method, suffix.format(id=task_id), content=content, headers=headers)
    assert_problem(response, 415)
    assert api.get(task_id).json()["version"] == 1


# --- size -----------------------------------------------------------------------------------

LIMIT = 64 * 1024


def padded(size: int) -> bytes:
    """A valid create body of exactly `size` bytes (JSON whitespace at the end)."""
    body = b'{"title": "t"}'
    return body + b" " * (size - len(body))


def test_a_body_of_exactly_64_kib_is_accepted(api: Api) -> None:
    """64 KiB is the limit, not over it."""
    assert post_raw(api, padded(LIMIT)).status_code == 201


def test_a_body_over_64_kib_is_413(api: Api) -> None:
    """One byte over 64 KiB is 413."""
    assert_problem(post_raw(api, padded(LIMIT + 1)), 413)


def test_a_chunked_body_over_64_kib_is_413(api: Api) -> None:
    """Without a Content-Length, a body that grows over 64 KiB while read is 413."""

    def chunks() -> Iterator[bytes]:
        data = padded(LIMIT + 1)
        for start in range(0, len(data), 4096):
            yield data[start : start + 4096]

    response = api.request("POST", content=chunks(), headers=JSON)
    assert_problem(response, 413)


# --- task ids and query parameters ----------------------------------------------------------

TASK_ROUTES = [
    ("GET", "", None),
    ("PUT", "", {"title": "t"}),
    ("PATCH", "", {"title": "t"}),
    ("DELETE", "", None),
    ("PATCH", "/complete", None),
    ("POST", "/restore", None),
    ("GET", "/events", None),
]
TASK_ROUTE_IDS = ["get", "put", "patch", "delete", "complete", "restore", "events"]


@pytest.mark.parametrize("task_id", NOT_A_UUID, ids=["words", "number", "bad-hex"])
@pytest.mark.parametrize(("method", "suffix", "body"), TASK_ROUTES, ids=TASK_ROUTE_IDS)
def test_a_task_id_that_is_not_a_uuid_is_404(
    api: Api, method: str, suffix: str, body: dict[str, Any] | None, task_id: str
) -> None:
    """A task id that is not a UUID names no task: 404, not 422."""
    assert_problem(api.request(method, f"/{task_id}{suffix}", json=body), 404)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "", {"title": "t"}),
        ("GET", "", None),
        *((method, "/{id}" + suffix, body) for method, suffix, body in TASK_ROUTES),
    ],
    ids=["create", "list", *TASK_ROUTE_IDS],
)
def test_an_unknown_query_parameter_is_422(
    api: Api, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """Every task route refuses a query parameter it does not know, and changes nothing."""
    task_id = api.create()["id"]
    response = api.request(method, path.format(id=task_id) + "?bogus=1", json=body)
    assert error_locs(response) == [["query", "bogus"]]
    assert api.get(task_id).json()["version"] == 1
    assert len(api.request("GET").json()) == 1


BAD_LIST_QUERIES = {
    "limit-0": "limit=0",
    "limit-1001": "limit=1001",
    "limit-abc": "limit=abc",
    "limit-empty": "limit=",
    "limit-float": "limit=1.5",
    "status": "status=bogus",
    "status-empty": "status=",
}


@pytest.mark.parametrize("query", list(BAD_LIST_QUERIES.values()), ids=list(BAD_LIST_QUERIES))
def test_a_bad_list_parameter_is_422(api: Api, query: str) -> None:
    """limit must be 1..1000 and status one of the four filters."""
    name = query.partition("=")[0]
    assert error_locs(api.request("GET", f"?{query}")) == [["query", name]]


@pytest.mark.parametrize(
    "query",
    ["limit=1", "limit=1000", "status=all", "status=pending", "status=completed", "status=deleted"],
    ids=["limit-1", "limit-1000", "all", "pending", "completed", "deleted"],
)
def test_good_list_parameters_are_accepted(api: Api, query: str) -> None:
    """The bounds of limit and each status filter are accepted."""
    response = api.request("GET", f"?{query}")
    assert response.status_code == 200, response.text
    assert response.json() == []


# --- the framework's own errors -------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/nope", "/api", "/api/{user}/nothing", "/api/{user}/tasks/{id}/nothing"],
    ids=["root", "api", "under-user", "under-task"],
)
def test_an_unknown_route_is_a_404_problem(client: TestClient, user_id: str, path: str) -> None:
    """A path no route matches is a 404 problem, with or without a token."""
    url = path.format(user=user_id, id=uuid.uuid4())
    body = assert_problem(client.get(url, headers=auth(user_id)), 404)
    assert body["instance"] == url
    assert_problem(client.get(url), 404)


WRONG_METHODS = {
    "put-tasks": ("PUT", "/api/{user}/tasks", {"GET", "POST"}),
    "delete-tasks": ("DELETE", "/api/{user}/tasks", {"GET", "POST"}),
    "post-task": ("POST", "/api/{user}/tasks/{id}", {"GET", "PUT", "PATCH", "DELETE"}),
    "post-complete": ("POST", "/api/{user}/tasks/{id}/complete", {"PATCH"}),
    "get-restore": ("GET", "/api/{user}/tasks/{id}/restore", {"POST"}),
    "delete-events": ("DELETE", "/api/{user}/tasks/{id}/events", {"GET"}),
}


@pytest.mark.parametrize(
    ("method", "path", "allowed"), list(WRONG_METHODS.values()), ids=list(WRONG_METHODS)
)
def test_a_wrong_method_is_a_405_problem_with_allow(
    client: TestClient, user_id: str, method: str, path: str, allowed: set[str]
) -> None:
    """A known path with a method it does not take is 405, Allow listing every method it takes."""
    url = path.format(user=user_id, id=uuid.uuid4())
    response = client.request(method, url, headers=auth(user_id))
    assert_problem(response, 405)
    methods = {part.strip() for part in response.headers["allow"].split(",")} - {"HEAD"}
    assert methods == allowed


# --- request ids ----------------------------------------------------------------------------


def _error_responses(api: Api, client: TestClient) -> Iterator[tuple[str, httpx2.Response]]:
    task_id = api.create()["id"]
    yield "401", client.get(api.url())
    yield "403", client.get(api.url(), headers=auth("someone-else"))
    yield "404", api.get(str(uuid.uuid4()))
    yield "405", api.request("PUT")
    yield "409", api.request("POST", f"/{task_id}/restore")
    yield "412", api.request("DELETE", f"/{task_id}", headers={"If-Match": '"9"'})
    yield "413", post_raw(api, padded(LIMIT + 1))
    yield "415", post_raw(api, b'{"title": "t"}', "text/plain")
    yield "422", post_raw(api, b"{")


def test_every_error_carries_its_request_id_in_header_and_body(
    api: Api, client: TestClient
) -> None:
    """Each problem's request_id is the response's X-Request-ID, a fresh UUID when none was sent."""
    seen = set()
    for name, response in _error_responses(api, client):
        assert response.status_code == int(name), (name, response.text)
        body = assert_problem(response, int(name))
        assert uuid.UUID(body["request_id"])
        seen.add(body["request_id"])
    assert len(seen) == 9


def test_a_sane_client_request_id_is_echoed_on_errors_and_successes(api: Api) -> None:
    """A sane X-Request-ID comes back as sent on 201, 304, 204 and in a problem body."""
    sane = {"X-Request-ID": "Abc-1.2_3"}
    created = api.request("POST", json={"title": "t"}, headers=sane)
    task_id = created.json()["id"]
    unchanged = api.get(task_id, headers={**sane, "If-None-Match": '"1"'})
    deleted = api.request("DELETE", f"/{task_id}", headers=sane)
    assert [created.status_code, unchanged.status_code, deleted.status_code] == [201, 304, 204]
    for response in (created, unchanged, deleted):
        assert response.headers["x-request-id"] == "Abc-1.2_3"
    failed = api.request("POST", json={"title": ""}, headers=sane)
    assert assert_problem(failed, 422)["request_id"] == "Abc-1.2_3"


def test_a_request_id_of_128_characters_is_kept(api: Api) -> None:
    """128 characters of the allowed alphabet is still sane."""
    value = "a" * 128
    response = api.request("GET", headers={"X-Request-ID": value})
    assert response.headers["x-request-id"] == value


@pytest.mark.parametrize(
    "value",
    ["a" * 129, "has space", "a/b", "a;b", "<script>", "", "a:b"],
    ids=["129-chars", "space", "slash", "semicolon", "markup", "empty", "colon"],
)
def test_an_insane_request_id_is_replaced_by_a_uuid(api: Api, value: str) -> None:
    """An X-Request-ID outside 1..128 of [A-Za-z0-9._-] is replaced by a new UUID."""
    response = api.request("GET", "/not-a-uuid", headers={"X-Request-ID": value})
    replaced = response.headers["x-request-id"]
    assert replaced != value
    assert str(uuid.UUID(replaced)) == replaced
    assert assert_problem(response, 404)["request_id"] == replaced


def test_a_trailing_slash_is_a_404_problem_not_a_redirect(api: Api) -> None:
    """/api/{u}/tasks/ names no route: 404 problem details, not a redirect built from Host."""
    response = api.client.get(api.url("/"), headers=api.headers, follow_redirects=False)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "after", ["9223372036854775808", "1" * 40, "-1"], ids=["2^63", "huge", "negative"]
)
def test_a_feed_position_out_of_range_is_422(api: Api, after: str) -> None:
    """`after` is a seq: a number beyond 64 bits, or below 0, is a bad parameter, not a 500."""
    response = api.client.get(
        f"/api/{api.user_id}/events", params={"after": after}, headers=api.headers
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "after"]
