"""With the database gone every route that needs it says 503 at once; then the service recovers."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import exc, text

from tasktrail.api.app import create_app
from tasktrail.database import create_database_engine, is_outage
from tasktrail.settings import Settings
from tests.conftest import auth, live_server, make_settings, migrated, service_role_settings
from tests.private_postgres import private_cluster
from tests.sse_client import Message, SseStream

ROUTES = [
    ("GET", "/api/{user}/tasks", None),
    ("POST", "/api/{user}/tasks", {"title": "during the outage"}),
    ("GET", "/api/{user}/tasks/{task}", None),
    ("PATCH", "/api/{user}/tasks/{task}", {"title": "x"}),
    ("PATCH", "/api/{user}/tasks/{task}/complete", None),
    ("DELETE", "/api/{user}/tasks/{task}", None),
    ("GET", "/api/{user}/tasks/{task}/events", None),
    ("GET", "/api/{user}/events", None),
]


def test_a_stopped_database_gives_503_and_a_restarted_one_is_used_again() -> None:
    """Stop our own PostgreSQL: 503 with Retry-After everywhere, /readyz 503, /healthz 200.
    Start it again: the service answers normally without a restart of its own."""
    with private_cluster() as cluster:
        settings = make_settings(
            migrated(cluster.url), pool_size=3, connect_timeout=2, pool_timeout=2
        )
        user = "outage-user"
        headers = auth(user)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            created = client.post(f"/api/{user}/tasks", json={"title": "before"}, headers=headers)
            assert created.status_code == 201
            task = created.json()["id"]

            cluster.stop()
            for method, path, body in ROUTES:
                response = client.request(
                    method, path.format(user=user, task=task), json=body, headers=headers
                )
                assert response.status_code == 503, (method, path, response.text)
                assert response.headers["content-type"] == "application/problem+json"
                assert int(response.headers["retry-after"]) > 0
            assert client.get("/readyz").status_code == 503
            assert client.get("/healthz").status_code == 200

            cluster.start()
            deadline = time.monotonic() + 30
            answers = []
            while time.monotonic() < deadline:
                answers.append(client.get(f"/api/{user}/tasks", headers=headers).status_code)
                if answers[-1] == 200:
                    break
                time.sleep(0.2)
            assert answers[-1] == 200, answers
            assert set(answers) <= {200, 503}  # never a 500 on the way back
            assert client.get("/readyz").status_code == 200
            after = client.post(f"/api/{user}/tasks", json={"title": "after"}, headers=headers)
            assert after.status_code == 201
            listed = client.get(f"/api/{user}/tasks", headers=headers).json()
            assert [item["title"] for item in listed] == ["after", "before"]


def test_a_sqlite_error_in_the_statement_is_not_taken_for_an_outage(tmp_path: Path) -> None:
    """sqlite3 raises OperationalError for a busy database and for a statement it cannot run
    alike; only the first is a 503 to retry. "Expression tree is too large" was answered as
    an outage."""
    engine = create_database_engine(make_settings(migrated(f"sqlite:///{tmp_path / 'x.db'}")))
    too_deep = "SELECT 1 WHERE " + " OR ".join(["1 = 1"] * 1500)
    try:
        for statement in (too_deep, "SELECT * FROM no_such_table"):
            with pytest.raises(exc.OperationalError) as raised, engine.connect() as conn:
                conn.execute(text(statement))
            assert not is_outage(raised.value), raised.value
        blocker = sqlite3.connect(tmp_path / "x.db")
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with engine.connect() as conn:
                conn.execute(text("PRAGMA busy_timeout = 50"))
                with pytest.raises(exc.OperationalError) as raised:
                    conn.execute(text("DELETE FROM idempotency_keys"))
            assert is_outage(raised.value), raised.value
        finally:
            blocker.rollback()
            blocker.close()
    finally:
        engine.dispose()


def _with_short_timeouts(cluster_url: str, **overrides: Any) -> Settings:
    """The service on the private cluster as its own role (migrated first), with timeouts short
    enough for a test to see them run out."""
    return service_role_settings(
        migrated(cluster_url), pool_size=3, connect_timeout=2, pool_timeout=2, **overrides
    )


FREEZE_SECONDS = float(os.environ.get("TASKTRAIL_TEST_FREEZE_SECONDS", "4"))


def test_a_database_that_hangs_gets_503s_in_time_and_the_service_recovers() -> None:
    """The database does not refuse, it hangs (SIGSTOP for FREEZE_SECONDS; 20 to 30 s with
    TASKTRAIL_TEST_FREEZE_SECONDS=25): requests of every kind, sent while it hangs, each get their
    answer (a 503 with Retry-After, never a 500) while it still hangs, through a real server.
    Before, they waited as long as the database did. Then it wakes and the service goes on."""
    with private_cluster() as cluster:
        settings = _with_short_timeouts(cluster.url, database_deadline=2)
        user = "hung-user"
        headers = auth(user)
        with (
            live_server(create_app(settings)) as base_url,
            httpx2.Client(base_url=base_url, headers=headers, timeout=60) as client,
        ):
            created = client.post(f"/api/{user}/tasks", json={"title": "before"})
            assert created.status_code == 201
            task = created.json()["id"]
            answers: list[tuple[str, int, float]] = []

            def ask(method: str, path: str, body: object) -> None:
                response = client.request(method, path.format(user=user, task=task), json=body)
                if response.status_code == 503:
                    assert int(response.headers["retry-after"]) > 0
                    assert response.headers["content-type"] == "application/problem+json"
                answers.append((f"{method} {path}", response.status_code, time.monotonic()))

            with cluster.frozen():
                frozen_at = time.monotonic()
                threads = [
                    threading.Thread(target=ask, args=route)
                    for route in [*ROUTES, *ROUTES, ("GET", "/readyz", None)]
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(FREEZE_SECONDS + 30)
                # Hung for as long as asked, whenever the answers came.
                time.sleep(max(0.0, frozen_at + FREEZE_SECONDS - time.monotonic()))
                thawed_at = time.monotonic()
            assert len(answers) == len(threads)
            assert {status for _, status, _ in answers} == {503}, answers
            late = [(route, at - frozen_at) for route, _, at in answers if at >= thawed_at]
            assert late == [], f"answered only once the database woke up: {late}"

            deadline = time.monotonic() + 30
            while client.get(f"/api/{user}/tasks").status_code != 200:
                assert time.monotonic() < deadline, "the service did not recover"
                time.sleep(0.2)
            after = client.post(f"/api/{user}/tasks", json={"title": "after"})
            assert after.status_code == 201
            titles = [item["title"] for item in client.get(f"/api/{user}/tasks").json()]
            assert "after" in titles
            assert "before" in titles


def test_a_live_stream_keeps_its_heartbeats_while_the_database_hangs_then_catches_up() -> None:
    """A stream's reads during the stream are bounded too: while the database hangs the stream
    goes on with its heartbeats (a silent stream is closed by proxies, and its reads would pile
    up threads), and once the database wakes the events written since arrive, in order."""
    with private_cluster() as cluster:
        settings = _with_short_timeouts(cluster.url, database_deadline=1, sse_heartbeat_seconds=0.3)
        user = "streaming-user"
        headers = auth(user)
        with (
            live_server(create_app(settings)) as base_url,
            httpx2.Client(base_url=base_url, headers=headers, timeout=30) as client,
        ):
            assert client.post(f"/api/{user}/tasks", json={"title": "one"}).status_code == 201
            with SseStream(f"{base_url}/api/{user}/events", headers=headers) as stream:
                assert stream.next_event().id == "1"
                heartbeats = 0
                with cluster.frozen():
                    until = time.monotonic() + 4
                    while time.monotonic() < until:
                        item = stream.next(timeout=3)  # fails when the stream falls silent
                        assert isinstance(item, Message), item
                        heartbeats += item.comments == ["heartbeat"]
                assert heartbeats >= 2
                deadline = time.monotonic() + 30
                while client.post(f"/api/{user}/tasks", json={"title": "two"}).status_code != 201:
                    assert time.monotonic() < deadline, "the service did not recover"
                    time.sleep(0.2)
                assert stream.next_event(timeout=10).id == "2"
