"""Each user's fair share of a process, through uvicorn on loopback: one user's pile of stuck
requests does not hold up another user, a full line is 429, and the optional rate limit."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, text

from tasktrail.api.app import create_app
from tasktrail.api.http.fair_share import FairShare
from tasktrail.api.services import services_of_app
from tests.conftest import auth, live_server, make_settings, new_user_id
from tests.sse_client import SseStream


@contextmanager
def writes_of_user_stuck(database_url: str, engine: Engine, user_id: str) -> Iterator[None]:
    """Hold what the user's writes must take (their stream row on PostgreSQL, the database's
    write lock on SQLite), so that their writes wait until this block ends."""
    if database_url.startswith("sqlite"):
        blocker = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        blocker.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            blocker.rollback()
            blocker.close()
        return
    with engine.connect() as conn:
        conn.execute(
            text("SELECT 1 FROM user_streams WHERE user_id = :u FOR UPDATE"), {"u": user_id}
        )
        try:
            yield
        finally:
            conn.rollback()


def make_app(database_url: str, engine: Engine, **overrides: Any) -> FastAPI:
    return create_app(make_settings(database_url, **overrides), engine=engine)


def create(base_url: str, user_id: str) -> str:
    response = httpx2.post(
        f"{base_url}/api/{user_id}/tasks", json={"title": "t"}, headers=auth(user_id), timeout=30
    )
    assert response.status_code == 201, response.text
    task_id: str = response.json()["id"]
    return task_id


def test_a_user_with_requests_stuck_does_not_hold_up_another_user(
    database_url: str, engine: Engine
) -> None:
    """Twelve writes of one user wait on that user's lock. Without a share, they took every
    worker thread or pooled connection, and another user's read waited for them (seconds, or
    a 503). With it, three of them wait on the lock, nine wait in the user's line holding
    nothing, and the other user is served while all twelve are still stuck."""
    app = make_app(database_url, engine, user_concurrency=3, user_queue=20)
    share: FairShare = services_of_app(app).fair_share
    greedy, other = new_user_id(), new_user_id()
    with live_server(app) as base_url:
        task_id = create(base_url, greedy)
        other_task = create(base_url, other)
        answers: list[int] = []

        def patch() -> None:
            response = httpx2.patch(
                f"{base_url}/api/{greedy}/tasks/{task_id}",
                json={"priority": 1},
                headers=auth(greedy),
                timeout=60,
            )
            answers.append(response.status_code)

        with writes_of_user_stuck(database_url, engine, greedy):
            threads = [threading.Thread(target=patch) for _ in range(12)]
            for thread in threads:
                thread.start()
            for _ in range(200):  # until the line has formed
                if share.serving(greedy) == 3 and len(share._lines[greedy].waiting) == 9:
                    break
                threading.Event().wait(0.02)
            assert share.serving(greedy) == 3
            read = httpx2.get(
                f"{base_url}/api/{other}/tasks/{other_task}", headers=auth(other), timeout=30
            )
            assert read.status_code == 200
            assert answers == []  # every one of the greedy user's writes is still stuck
        for thread in threads:
            thread.join(60)
        assert sorted(answers) == [200] * 12
        assert share.serving(greedy) == 0  # every place given back


def test_past_the_line_a_user_gets_429_with_the_ratelimit_fields(
    database_url: str, engine: Engine
) -> None:
    app = make_app(database_url, engine, user_concurrency=1, user_queue=1)
    share: FairShare = services_of_app(app).fair_share
    user = new_user_id()
    with live_server(app) as base_url:
        task_id = create(base_url, user)
        url = f"{base_url}/api/{user}/tasks/{task_id}"
        answers: list[int] = []

        def patch() -> None:
            response = httpx2.patch(url, json={"priority": 2}, headers=auth(user), timeout=60)
            answers.append(response.status_code)

        with writes_of_user_stuck(database_url, engine, user):
            first = threading.Thread(target=patch)
            first.start()
            while share.serving(user) < 1:
                threading.Event().wait(0.01)
            second = threading.Thread(target=patch)
            second.start()
            while not share._lines[user].waiting:
                threading.Event().wait(0.01)
            refused = httpx2.get(url, headers=auth(user), timeout=30)
            assert refused.status_code == 429
            assert refused.headers["content-type"] == "application/problem+json"
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.headers["ratelimit-limit"] == "1"
            assert refused.headers["ratelimit-remaining"] == "0"
            assert int(refused.headers["ratelimit-reset"]) >= 1
        first.join(60)
        second.join(60)
        assert sorted(answers) == [200, 200]
        assert share.serving(user) == 0


def test_the_rate_limit_refuses_past_the_burst_and_only_that_user(
    database_url: str, engine: Engine
) -> None:
    app = make_app(database_url, engine, user_rate=0.5, user_burst=3)
    user, other = new_user_id(), new_user_id()
    with live_server(app) as base_url:
        url = f"{base_url}/api/{user}/tasks"
        statuses = [httpx2.get(url, headers=auth(user)).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        refused = httpx2.get(url, headers=auth(user))
        assert refused.status_code == 429
        assert refused.headers["ratelimit-limit"] == "3"
        assert refused.headers["ratelimit-remaining"] == "0"
        assert int(refused.headers["retry-after"]) in (1, 2)
        assert httpx2.get(f"{base_url}/api/{other}/tasks", headers=auth(other)).is_success


def test_a_client_that_leaves_the_line_gives_its_place_back(
    database_url: str, engine: Engine
) -> None:
    app = make_app(database_url, engine, user_concurrency=1, user_queue=5)
    share: FairShare = services_of_app(app).fair_share
    user = new_user_id()
    with live_server(app) as base_url:
        task_id = create(base_url, user)
        url = f"{base_url}/api/{user}/tasks/{task_id}"
        with writes_of_user_stuck(database_url, engine, user):
            stuck = threading.Thread(
                target=lambda: httpx2.patch(url, json={"priority": 3}, headers=auth(user))
            )
            stuck.start()
            while share.serving(user) < 1:
                threading.Event().wait(0.01)
            with pytest.raises(httpx2.ReadTimeout):
                httpx2.get(url, headers=auth(user), timeout=0.5)  # waits in line, gives up
        stuck.join(60)
        for _ in range(200):
            if share.serving(user) == 0:
                break
            threading.Event().wait(0.02)
        assert share.serving(user) == 0
        assert httpx2.get(url, headers=auth(user)).status_code == 200


def test_live_streams_do_not_hold_places(database_url: str, engine: Engine) -> None:
    app = make_app(database_url, engine, user_concurrency=1, sse_heartbeat_seconds=0.3)
    share: FairShare = services_of_app(app).fair_share
    user = new_user_id()
    with live_server(app) as base_url:
        streams = [SseStream(f"{base_url}/api/{user}/events", headers=auth(user)) for _ in range(3)]
        try:
            assert [stream.status for stream in streams] == [200] * 3
            assert share.serving(user) == 0
            assert httpx2.get(f"{base_url}/api/{user}/tasks", headers=auth(user)).is_success
        finally:
            for stream in streams:
                stream.close()
