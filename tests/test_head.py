"""HEAD wherever GET is served: the GET's status and headers, and no body."""

from __future__ import annotations

import socket
import uuid

import httpx2
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import Api, auth, live_server
from tests.test_metrics import sample

# Headers that may differ between two responses to the same request.
_PER_RESPONSE = {"x-request-id", "date"}


def _same_headers(
    head: httpx2.Response, get: httpx2.Response
) -> dict[str, tuple[str | None, str | None]]:
    """The headers where a HEAD and a GET differ, (head, get) by name."""
    head_headers = {k: v for k, v in head.headers.items() if k not in _PER_RESPONSE}
    get_headers = {k: v for k, v in get.headers.items() if k not in _PER_RESPONSE}
    return {
        name: (head_headers.get(name), get_headers.get(name))
        for name in head_headers.keys() | get_headers.keys()
        if head_headers.get(name) != get_headers.get(name)
    }


def test_head_of_healthz_is_its_get_without_a_body(client: TestClient) -> None:
    """A load balancer's HEAD probe gets 200 and the GET's headers, Content-Length included."""
    head, get = client.head("/healthz"), client.get("/healthz")
    assert (head.status_code, head.content) == (200, b"")
    assert get.content != b""
    assert _same_headers(head, get) == {}


def test_head_of_a_task_gives_its_etag_and_honours_if_none_match(api: Api) -> None:
    task = api.create(title="probed")
    get = api.get(task["id"])
    head = api.request("HEAD", f"/{task['id']}")
    assert (head.status_code, head.content) == (200, b"")
    assert _same_headers(head, get) == {}
    again = api.request("HEAD", f"/{task['id']}", headers={"If-None-Match": get.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")


def test_head_of_a_list_gives_the_lists_headers(api: Api) -> None:
    for n in range(3):
        api.create(title=f"listed {n}")
    get = api.request("GET", "?limit=2")
    head = api.request("HEAD", "?limit=2")
    assert (head.status_code, head.content) == (200, b"")
    assert "link" in get.headers
    assert _same_headers(head, get) == {}


def test_head_is_authenticated_like_get(client: TestClient, user_id: str) -> None:
    """No token, no answer: 401 with its challenge, still without a body."""
    response = client.head(f"/api/{user_id}/tasks")
    assert (response.status_code, response.content) == (401, b"")
    assert response.headers["www-authenticate"].startswith("Bearer")
    other = client.head(f"/api/{user_id}/tasks", headers=auth("someone-else"))
    assert other.status_code == 403


def test_head_where_no_get_is_served_is_a_405_naming_the_methods(api: Api) -> None:
    response = api.request("HEAD", f"/{uuid.uuid4()}/complete")
    assert response.status_code == 405
    assert {part.strip() for part in response.headers["allow"].split(",")} == {"PATCH"}


def test_an_allow_header_names_head_beside_get(api: Api) -> None:
    response = api.request("DELETE")  # the list path takes GET and POST
    assert response.status_code == 405
    assert {part.strip() for part in response.headers["allow"].split(",")} == {
        "GET",
        "HEAD",
        "POST",
    }


def test_head_requests_are_counted_as_head(client: TestClient) -> None:
    labels = {"method": "HEAD", "route": "/healthz", "status": "200"}
    before = sample(client.get("/metrics").text, "tasktrail_http_requests_total", **labels)
    client.head("/healthz")
    after = sample(client.get("/metrics").text, "tasktrail_http_requests_total", **labels)
    assert after == before + 1


def _read_response(sock: socket.socket, buffer: bytearray, *, head: bool) -> tuple[int, bytes]:
    """One HTTP/1.1 response off a raw socket: its status, and its body (none for a HEAD)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the server closed the connection; got {bytes(buffer)!r}")
        buffer.extend(chunk)
    header_bytes, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = header_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(
        int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")
    )
    body_length = 0 if head else length
    while len(rest) < body_length:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("the server closed the connection inside a body")
        rest += chunk
    buffer[:] = rest[body_length:]
    return status, rest[:body_length]


def test_head_keeps_the_connection_usable_under_uvicorn(app: FastAPI, user_id: str) -> None:
    """Through a real server: a HEAD of each kind of GET route, then a GET, on one connection.
    uvicorn reset the connection after a HEAD whose Content-Length was not zero."""
    token = auth(user_id)["Authorization"]
    paths = ["/healthz", f"/api/{user_id}/tasks", f"/api/{user_id}/events", "/openapi.json"]
    with live_server(app) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            buffer = bytearray()
            for path in paths:
                for method in ("HEAD", "GET"):
                    sock.sendall(
                        f"{method} {path} HTTP/1.1\r\nHost: t\r\nAuthorization: {token}\r\n\r\n".encode()
                    )
                    status, body = _read_response(sock, buffer, head=method == "HEAD")
                    assert status == 200, (method, path, status)
                    assert (body == b"") == (method == "HEAD")
