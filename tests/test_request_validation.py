"""Input rules of api.md outside the body: ids, query, routes, methods and request ids."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from tests.conftest import Api, auth
from tests.validation_helpers import LIMIT, assert_problem, error_locs, padded, post_raw

NOT_A_UUID = ["not-a-uuid", "123", "01936d1e-0000-7000-8000-00000000000g"]


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


# --- repeated parameters (api.md, "Repeated parameters") ------------------------------------


@pytest.mark.parametrize(
    ("suffix", "query"),
    [
        ("/tasks", "limit=1&limit=2"),
        ("/tasks", "sort=title&sort=-due"),
        ("/tasks", "status=pending&status=completed"),
        ("/events", "after=1&after=0"),
        ("/tasks/{task_id}", "as_of=2026-01-01T00:00:00Z&as_of=2027-01-01T00:00:00Z"),
    ],
)
def test_a_parameter_that_does_not_repeat_given_twice_is_422(
    client: TestClient, api: Api, suffix: str, query: str
) -> None:
    """It silently took its last value: a client that meant both got one of them."""
    task_id = api.create()["id"]
    name = query.split("=", 1)[0]
    path = f"/api/{api.user_id}" + suffix.format(task_id=task_id)
    response = client.get(f"{path}?{query}", headers=auth(api.user_id))
    assert error_locs(response) == [["query", name]]


def test_a_write_with_a_repeated_parameter_is_422_and_changes_nothing(api: Api) -> None:
    task_id = api.create()["id"]
    response = api.request("PATCH", f"/{task_id}?x=1&x=2", json={"title": "changed"})
    assert_problem(response, 422)
    assert api.get(task_id).json()["title"] != "changed"


@pytest.mark.parametrize("count", [51, 1000])
def test_more_than_50_tags_is_422_on_both_engines(api: Api, count: int) -> None:
    """On SQLite about a thousand tags made "Expression tree is too large", answered as an
    outage (503); on PostgreSQL a plan of thousands of terms."""
    query = "&".join(f"tag=t{n}" for n in range(count))
    assert error_locs(api.request("GET", "?" + query)) == [["query", "tag"]]


def test_50_tags_are_accepted(api: Api) -> None:
    api.create(tags=[f"t{n}" for n in range(10)])
    query = "&".join(f"tag=t{n % 10}" for n in range(50))
    response = api.request("GET", "?" + query)
    assert response.status_code == 200
    assert len(response.json()) == 1


def test_the_audit_type_may_repeat_but_not_past_50(client: TestClient) -> None:
    auditor = auth("an-auditor", role="auditor")
    few = "&".join(["type=TaskCreated", "type=TaskDeleted"])
    assert client.get(f"/api/audit/events?{few}&limit=1", headers=auditor).status_code == 200
    many = "&".join(["type=TaskCreated"] * 51)
    response = client.get(f"/api/audit/events?{many}", headers=auditor)
    assert error_locs(response) == [["query", "type"]]
