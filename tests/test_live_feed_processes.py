"""The live feed across processes: `tasktrail serve` as a real process, writes from another one,
a restart mid-stream, and on PostgreSQL one listening connection per process that survives its
own loss."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text

from tasktrail.api.app import create_app
from tests.conftest import (
    SECRET,
    auth,
    make_settings,
    migrated,
    new_user_id,
    scratch_postgres_database,
)
from tests.processes import server_process
from tests.sse_client import Ended, SseStream

STREAM_ENV = {
    "BETTER_AUTH_SECRET": SECRET,
    "TASKTRAIL_SSE_HEARTBEAT_SECONDS": "0.5",
    "TASKTRAIL_SSE_POLL_SECONDS": "0.1",
}


def stream_of(base_url: str, user_id: str, last_event_id: int | None = None) -> SseStream:
    headers = auth(user_id)
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    return SseStream(f"{base_url}/api/{user_id}/events", headers=headers)


def create_in_this_process(client: TestClient, user_id: str, title: str) -> None:
    response = client.post(f"/api/{user_id}/tasks", json={"title": title}, headers=auth(user_id))
    assert response.status_code == 201, response.text


def test_writes_of_another_process_reach_the_stream(
    tmp_path: Path, database_url: str, client: TestClient
) -> None:
    """With a heartbeat too far off to help, only NOTIFY (PostgreSQL) or the poll (SQLite) can
    bring the event within the client's patience."""
    user_id = new_user_id()
    quiet = {**STREAM_ENV, "TASKTRAIL_SSE_HEARTBEAT_SECONDS": "120"}
    with server_process(tmp_path, TASKTRAIL_DATABASE_URL=database_url, **quiet) as server:
        stream = stream_of(server.base_url, user_id)
        assert stream.status == 200
        # The writer is this test's process, through its own app: not the server streaming.
        create_in_this_process(client, user_id, "from elsewhere")
        event = stream.next_event(timeout=20)
        assert event.id == "1"
        assert event.json()["data"]["title"] == "from elsewhere"
        server.stop()  # ends the stream, so that its reader is not left waiting for a line
        stream.close()


def test_a_restart_mid_stream_ends_the_stream_at_once_and_resuming_misses_nothing(
    tmp_path: Path, database_url: str, client: TestClient
) -> None:
    user_id = new_user_id()
    create_in_this_process(client, user_id, "first")
    with server_process(tmp_path, TASKTRAIL_DATABASE_URL=database_url, **STREAM_ENV) as server:
        stream = stream_of(server.base_url, user_id)
        assert stream.next_event().id == "1"
        # uvicorn shuts down, then lets the SIGTERM it caught end the process (-15).
        assert server.stop() in (0, -signal.SIGTERM)
        ended = stream.wait_end()
        stream.close()
    assert isinstance(ended, Ended)
    assert ended.error is None  # the body ended properly, not a reset connection
    log = server.log.read_text()
    # uvicorn would wait out its graceful timeout (10 s) for an open stream, then cancel it.
    assert "timeout graceful shutdown exceeded" not in log, log
    assert "Application shutdown complete" in log, log

    for number in range(3):
        create_in_this_process(client, user_id, f"while down {number}")
    with (
        server_process(tmp_path, TASKTRAIL_DATABASE_URL=database_url, **STREAM_ENV) as server,
        stream_of(server.base_url, user_id, last_event_id=1) as stream,
    ):
        assert [message.id for message in stream.events(3)] == ["2", "3", "4"]
        create_in_this_process(client, user_id, "after the restart")
        assert stream.next_event().id == "5"


def listeners(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = current_database() AND query = 'LISTEN tasktrail_feed'"
                )
            ).scalars()
        )


@pytest.fixture
def own_postgres_database(postgres_url: str) -> Iterator[str]:
    """A database of this test alone, so that its LISTEN connections are the server's."""
    with scratch_postgres_database("tasktrail_listen") as url:
        yield migrated(url)


def test_one_listening_connection_per_process_and_it_comes_back_when_lost(
    own_postgres_database: str, tmp_path: Path
) -> None:
    fresh_database_url = own_postgres_database
    observer = create_engine(fresh_database_url.replace("postgresql://", "postgresql+psycopg://"))
    settings = make_settings(fresh_database_url)
    writer_app = create_app(settings)
    users = [new_user_id() for _ in range(3)]
    try:
        with (
            TestClient(writer_app) as writer,
            server_process(
                tmp_path, TASKTRAIL_DATABASE_URL=fresh_database_url, **STREAM_ENV
            ) as server,
        ):
            assert listeners(observer) == []  # no stream yet: no extra connection
            streams = [stream_of(server.base_url, user_id) for user_id in users]
            try:
                assert all(stream.next().retry for stream in streams)  # type: ignore[union-attr]
                found = listeners(observer)
                assert len(found) == 1, found
                create_in_this_process(writer, users[0], "heard")
                assert streams[0].next_event().json()["data"]["title"] == "heard"

                with observer.connect() as conn:
                    conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": found[0]})
                create_in_this_process(writer, users[1], "after the loss")
                assert streams[1].next_event().json()["data"]["title"] == "after the loss"
                deadline = time.monotonic() + 15
                while len(listeners(observer)) != 1 and time.monotonic() < deadline:
                    time.sleep(0.1)
                again = listeners(observer)
                assert len(again) == 1
                assert again != found
            finally:
                for stream in streams:
                    stream.close()
    finally:
        observer.dispose()


def test_two_workers_with_open_streams_stop_at_once(tmp_path: Path, database_url: str) -> None:
    """Each worker ends its own streams on the SIGTERM its supervisor passes on: no worker
    waits out the graceful timeout, and the streams end cleanly."""
    users = [new_user_id() for _ in range(4)]
    with server_process(
        tmp_path, "--workers", "2", TASKTRAIL_DATABASE_URL=database_url, **STREAM_ENV
    ) as server:
        # Separate connections, so that the kernel spreads them over both workers.
        streams = [stream_of(server.base_url, user_id) for user_id in users]
        try:
            assert all(stream.status == 200 for stream in streams)
            server.stop()
            ended = [stream.wait_end() for stream in streams]
        finally:
            for stream in streams:
                stream.close()
    assert all(isinstance(end, Ended) and end.error is None for end in ended), ended
    log = server.log.read_text()
    assert "timeout graceful shutdown exceeded" not in log, log
