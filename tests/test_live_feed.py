"""The live feed: `GET /api/{user_id}/events` as Server-Sent Events, through uvicorn on loopback.

Each test streams over a real connection (tests/sse_client.py) from a real server, on both
engines: replay, then live events, heartbeats, resuming with `Last-Event-ID`, the query token,
the per-user limit, HEAD, and concurrent writers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx2
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine

from tasktrail.api.app import create_app
from tasktrail.api.services import services_of_app
from tests.conftest import auth, live_server, make_settings, make_token, new_user_id
from tests.sse_client import Ended, Message, SseStream

HEARTBEAT_SECONDS = 0.3
STREAMS_PER_USER = 3


@pytest.fixture(scope="module")
def stream_app(database_url: str, engine: Engine) -> FastAPI:
    settings = make_settings(
        database_url,
        sse_heartbeat_seconds=HEARTBEAT_SECONDS,
        sse_poll_seconds=0.05,
        sse_streams_per_user=STREAMS_PER_USER,
    )
    return create_app(settings, engine=engine)


@pytest.fixture(scope="module")
def base_url(stream_app: FastAPI) -> Iterator[str]:
    with live_server(stream_app) as url:
        yield url


class User:
    """A user of the live server: writes over HTTP, opens streams."""

    def __init__(self, base_url: str) -> None:
        self.id = new_user_id()
        self.base_url = base_url
        self.headers = auth(self.id)

    def create(self, title: str = "a task") -> dict[str, Any]:
        response = httpx2.post(
            f"{self.base_url}/api/{self.id}/tasks", json={"title": title}, headers=self.headers
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def complete(self, task_id: str) -> None:
        response = httpx2.patch(
            f"{self.base_url}/api/{self.id}/tasks/{task_id}/complete",
            json={"completed": True},
            headers=self.headers,
        )
        assert response.status_code == 200, response.text

    def feed_json(self, after: int = 0) -> list[dict[str, Any]]:
        response = httpx2.get(
            f"{self.base_url}/api/{self.id}/events",
            params={"after": after, "limit": 1000},
            headers=self.headers,
        )
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()
        return events

    def stream(self, headers: dict[str, str] | None = None, **params: Any) -> SseStream:
        return SseStream(
            f"{self.base_url}/api/{self.id}/events",
            headers={**self.headers, **(headers or {})},
            params=params,
        )


@pytest.fixture
def user(base_url: str) -> User:
    return User(base_url)


def seqs(messages: list[Message]) -> list[int]:
    return [int(message.id or "0") for message in messages]


def test_replays_then_streams_each_event_as_the_json_feed_serves_it(user: User) -> None:
    first = user.create("before the stream")
    with user.stream() as stream:
        assert stream.status == 200
        assert stream.response_headers is not None
        assert stream.response_headers["content-type"].startswith("text/event-stream")
        assert stream.response_headers["cache-control"] == "no-cache"
        replayed = stream.next_event()
        user.complete(first["id"])
        second = user.create("during the stream")
        live = stream.events(2)
    messages = [replayed, *live]
    feed = user.feed_json()
    assert seqs(messages) == [1, 2, 3]
    assert [message.event for message in messages] == [
        "TaskCreated",
        "TaskCompleted",
        "TaskCreated",
    ]
    # The data is the JSON feed's event, byte for byte (keys sorted, one line).
    assert [message.data for message in messages] == [
        orjson.dumps(event, option=orjson.OPT_SORT_KEYS).decode() for event in feed
    ]
    assert messages[2].json()["task_id"] == second["id"]


def test_the_stream_starts_with_a_retry_hint_and_sends_heartbeats_in_silence(user: User) -> None:
    with user.stream() as stream:
        opening = stream.next()
        assert isinstance(opening, Message)
        assert opening.retry is not None
        assert int(opening.retry) > 0
        heartbeat = stream.next(timeout=HEARTBEAT_SECONDS * 20)
        assert isinstance(heartbeat, Message)
        assert heartbeat.comments == ["heartbeat"]
        assert heartbeat.data_lines == []


def test_after_and_last_event_id_resume_after_that_seq(user: User) -> None:
    for number in range(5):
        user.create(f"task {number}")
    with user.stream(after=3) as stream:
        assert seqs(stream.events(2)) == [4, 5]
    # Last-Event-ID (what a browser sends when it reconnects) wins over the URL's `after`.
    with user.stream(headers={"Last-Event-ID": "2"}, after=0) as stream:
        assert seqs(stream.events(3)) == [3, 4, 5]
        user.create("live")
        assert seqs([stream.next_event()]) == [6]


@pytest.mark.parametrize("value", ["x", "-1", "1.5", "٣".encode(), "9" * 30, "9223372036854775808"])
def test_a_last_event_id_that_is_no_seq_is_422(user: User, value: str | bytes) -> None:
    headers = [
        (name.encode(), header.encode())
        for name, header in {**user.headers, "Accept": "text/event-stream"}.items()
    ]
    raw = value if isinstance(value, bytes) else value.encode()
    response = httpx2.get(
        f"{user.base_url}/api/{user.id}/events", headers=[*headers, (b"Last-Event-ID", raw)]
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["header", "Last-Event-ID"]


def test_a_reconnect_with_last_event_id_misses_nothing_and_repeats_nothing(user: User) -> None:
    """Writers keep committing while the client drops the stream and comes back."""
    writers_done = threading.Event()
    written: list[int] = []

    def write() -> None:
        for number in range(40):
            written.append(number)
            user.create(f"task {number}")
        writers_done.set()

    received: list[Message] = []
    with user.stream() as stream:
        writer = threading.Thread(target=write)
        writer.start()
        received.extend(stream.events(10))
    last_id = received[-1].id
    assert last_id is not None
    with user.stream(headers={"Last-Event-ID": last_id}) as stream:
        received.extend(stream.events(30, timeout=30))
        writer.join(30)
        assert writers_done.is_set()
    assert seqs(received) == list(range(1, 41))


def test_concurrent_writers_of_one_user_reach_the_stream_in_seq_order_once_each(
    user: User,
) -> None:
    """Many writers of the same user commit in any order among themselves; the stream still
    sends 1, 2, 3... without a hole and without a repeat."""
    writers, each = 6, 8

    def write(worker: int) -> None:
        for number in range(each):
            user.create(f"worker {worker} task {number}")

    with user.stream() as stream:
        threads = [threading.Thread(target=write, args=(worker,)) for worker in range(writers)]
        for thread in threads:
            thread.start()
        received = stream.events(writers * each, timeout=30)
        for thread in threads:
            thread.join(30)
        assert seqs(received) == list(range(1, writers * each + 1))
        extra = stream.next(timeout=HEARTBEAT_SECONDS * 10)
        assert isinstance(extra, Message)
        assert extra.data_lines == []  # a heartbeat, not an event sent twice


def test_a_browser_may_give_the_token_as_access_token(user: User) -> None:
    user.create()
    with SseStream(
        f"{user.base_url}/api/{user.id}/events", params={"access_token": make_token(user.id)}
    ) as stream:
        assert stream.status == 200
        assert seqs([stream.next_event()]) == [1]


def test_access_token_is_read_by_the_stream_only(user: User) -> None:
    response = httpx2.get(
        f"{user.base_url}/api/{user.id}/events", params={"access_token": make_token(user.id)}
    )
    assert response.status_code == 401  # the JSON feed wants the header
    response = httpx2.get(
        f"{user.base_url}/api/{user.id}/events",
        params={"access_token": make_token(user.id)},
        headers=user.headers,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "access_token"]


def test_a_bad_query_token_is_401_and_a_token_sent_twice_is_422(user: User) -> None:
    url = f"{user.base_url}/api/{user.id}/events"
    with SseStream(url, params={"access_token": "not-a-jwt"}) as stream:
        assert stream.status == 401
        assert stream.response_headers is not None
        assert stream.response_headers["www-authenticate"] == 'Bearer error="invalid_token"'
    with SseStream(url, params={"access_token": make_token(new_user_id())}) as stream:
        assert stream.status == 403
    with SseStream(url, headers=user.headers, params={"access_token": make_token(user.id)}) as s:
        assert s.status == 422
        assert s.problem()["errors"][0]["loc"] == ["query", "access_token"]


def test_a_user_past_the_stream_limit_gets_429_and_others_are_not_limited(
    user: User, base_url: str
) -> None:
    streams = [user.stream() for _ in range(STREAMS_PER_USER)]
    try:
        assert [stream.status for stream in streams] == [200] * STREAMS_PER_USER
        with user.stream() as refused:
            assert refused.status == 429
            assert refused.response_headers is not None
            assert int(refused.response_headers["retry-after"]) > 0
            assert refused.problem()["status"] == 429
        with User(base_url).stream() as other:
            assert other.status == 200
    finally:
        for stream in streams:
            stream.close()
    # Hung-up streams free their places (the server notices within a heartbeat or two).
    for _ in range(100):
        with user.stream() as again:
            if again.status == 200:
                break
    assert again.status == 200


def test_unknown_parameters_of_the_stream_are_422(user: User) -> None:
    with user.stream(limit=10) as stream:
        assert stream.status == 422
        assert stream.problem()["errors"][0]["loc"] == ["query", "limit"]


def test_head_on_the_stream_answers_at_once_and_keeps_the_connection(user: User) -> None:
    with httpx2.Client(timeout=10) as client:
        head = client.head(
            f"{user.base_url}/api/{user.id}/events",
            headers={**user.headers, "Accept": "text/event-stream"},
        )
        assert head.status_code == 200
        assert head.headers["content-type"].startswith("text/event-stream")
        assert head.content == b""
        after = client.get(f"{user.base_url}/api/{user.id}/events", headers=user.headers)
        assert after.status_code == 200


def test_the_open_streams_gauge_counts_streams(user: User) -> None:
    def gauge() -> float:
        text = httpx2.get(f"{user.base_url}/metrics").text
        for line in text.splitlines():
            if line.startswith("tasktrail_sse_streams_open "):
                return float(line.split()[1])
        raise AssertionError("no tasktrail_sse_streams_open in /metrics")

    before = gauge()
    with user.stream() as stream:
        assert stream.next().retry is not None  # type: ignore[union-attr]
        assert gauge() == before + 1
    for _ in range(100):
        if gauge() == before:
            break
        threading.Event().wait(0.05)
    assert gauge() == before


def test_a_stream_ends_cleanly_when_the_server_stops(database_url: str, engine: Engine) -> None:
    """A server of its own: stopping it ends the stream at once, with the chunked body closed
    properly (no protocol error on the client)."""
    app = create_app(make_settings(database_url, sse_heartbeat_seconds=5), engine=engine)
    with live_server(app) as url:
        user = User(url)
        user.create()
        stream = user.stream()
        assert seqs([stream.next_event()]) == [1]
        services_of_app(
            app
        ).feed_hub.stop_streams()  # what SIGTERM does (tested on a real process too)
        ended = stream.wait_end(timeout=10)
        stream.close()
    assert isinstance(ended, Ended)
    assert ended.error is None
