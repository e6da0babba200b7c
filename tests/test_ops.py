"""Health, readiness, and what a request sees when the database is not there."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from tasktrail.api.app import create_app
from tasktrail.migrations.runner import head_revision
from tests.conftest import auth, free_tcp_port, make_settings


def test_healthz_and_readyz_answer_200_on_a_migrated_database(client: TestClient) -> None:
    """A live process on a current schema is healthy and ready, without a token."""
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["schema_revision"] == head_revision()


def test_readyz_says_how_long_an_open_transaction_holds_the_feed_back(
    postgres_url: str, postgres_engine: Engine
) -> None:
    """A writer left open holds back the commit-safe audit feed; /readyz says for how long."""
    with TestClient(create_app(make_settings(postgres_url), engine=postgres_engine)) as client:
        with postgres_engine.connect() as holder:
            holder.execute(text("SELECT pg_current_xact_id()"))  # takes a transaction id
            time.sleep(1.1)
            held = client.get("/readyz").json()["feed_horizon_held_seconds"]
            holder.rollback()
        assert held >= 1.0


def test_readyz_is_503_while_the_schema_is_not_migrated(tmp_path: Path) -> None:
    """An empty database is alive but not ready: the schema is not at the newest revision."""
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'empty.db'}"))
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"].isdigit()
    assert "tasktrail db upgrade" in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("POST", "", {"title": "x"}),
        ("GET", "/01936d1e-0000-7000-8000-000000000000", None),
        ("PATCH", "/01936d1e-0000-7000-8000-000000000000/complete", None),
    ],
    ids=["list", "create", "get", "complete"],
)
def test_a_database_that_does_not_answer_gives_503_with_retry_after(
    method: str, suffix: str, body: dict[str, str] | None
) -> None:
    """No PostgreSQL at the configured address: the API says 503 and when to retry, not 500."""
    url = f"postgresql://postgres@127.0.0.1:{free_tcp_port()}/nothing"
    app = create_app(make_settings(url, connect_timeout=2, pool_timeout=2))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.request(
            method, f"/api/ops-user/tasks{suffix}", json=body, headers=auth("ops-user")
        )
        ready = client.get("/readyz")
        healthy = client.get("/healthz")
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"].isdigit()
    assert ready.status_code == 503
    assert healthy.status_code == 200
