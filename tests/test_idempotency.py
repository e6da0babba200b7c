"""Idempotency-Key on every write route: replay, refusal of reuse, expiry, concurrency."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update

from tasktrail.api.app import create_app
from tasktrail.pg_pool import conninfo_of
from tasktrail.schema import events, idempotency_keys
from tasktrail.storage.keys import purge_expired
from tests.conftest import Api, auth, live_server, new_user_id, service_role_settings


def event_count(engine: Engine, user_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(events).where(events.c.user_id == user_id)
        ).scalar_one()


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def test_a_retried_create_replays_the_first_answer_and_creates_nothing(
    api: Api, engine: Engine
) -> None:
    """Same key, method, path and body: the first status, headers and body, marked replayed."""
    first = api.request("POST", json={"title": "once"}, headers=keyed("k-1"))
    again = api.request("POST", json={"title": "once"}, headers=keyed("k-1"))
    assert first.status_code == again.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    for header in ("etag", "location", "content-type"):
        assert again.headers[header] == first.headers[header]
    assert api.request("GET").headers["x-total-count"] == "1"
    assert event_count(engine, api.user_id) == 1


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("PUT", "/{id}", {"title": "replaced"}),
        ("PATCH", "/{id}", {"title": "patched"}),
        ("PATCH", "/{id}/complete", None),
        ("DELETE", "/{id}", None),
    ],
    ids=["put", "patch", "toggle", "delete"],
)
def test_every_write_route_replays_a_retry_without_a_second_event(
    api: Api, engine: Engine, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    """A retried update, toggle or delete answers as the first did and appends nothing more."""
    task = api.create(title="t")
    path = suffix.format(id=task["id"])
    first = api.request(method, path, json=body, headers=keyed("same"))
    again = api.request(method, path, json=body, headers=keyed("same"))
    assert first.status_code in (200, 204)
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    assert event_count(engine, api.user_id) == 2  # the create and one change, not two


def test_a_retried_restore_replays_instead_of_409(api: Api) -> None:
    """Restore twice with one key: the second is the first's 200, not 'nothing to restore'."""
    task = api.create()
    assert api.request("DELETE", f"/{task['id']}").status_code == 204
    first = api.request("POST", f"/{task['id']}/restore", headers=keyed("r"))
    again = api.request("POST", f"/{task['id']}/restore", headers=keyed("r"))
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [("POST", "", {"title": "other body"}), ("PATCH", "/{id}", {"title": "x"})],
    ids=["other-body", "other-method-and-path"],
)
def test_a_key_reused_for_another_request_is_422(
    api: Api, engine: Engine, method: str, suffix: str, body: dict[str, Any]
) -> None:
    """The same key with another method, path or body is refused and changes nothing."""
    created = api.request("POST", json={"title": "first"}, headers=keyed("reused"))
    before = event_count(engine, api.user_id)
    response = api.request(
        method, suffix.format(id=created.json()["id"]), json=body, headers=keyed("reused")
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    assert event_count(engine, api.user_id) == before


def test_a_failed_request_is_not_kept_and_may_be_retried_with_its_key(api: Api) -> None:
    """Only 2xx answers are kept: after a 412 the same key can carry the corrected request."""
    task = api.create()
    path = f"/{task['id']}"
    stale = api.request(
        "PATCH", path, json={"title": "new"}, headers={**keyed("fix"), "If-Match": '"9"'}
    )
    assert stale.status_code == 412
    fixed = api.request(
        "PATCH", path, json={"title": "new"}, headers={**keyed("fix"), "If-Match": '"1"'}
    )
    assert fixed.status_code == 200
    assert "idempotent-replayed" not in fixed.headers


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "caf\u00e9", "tab\there"],
    ids=["empty", "too-long", "non-ascii", "control-char"],
)
def test_a_malformed_key_is_422_naming_the_header(api: Api, key: str) -> None:
    """A key must be 1 to 255 printable ASCII characters."""
    response = api.client.post(
        api.url(),
        json={"title": "x"},
        headers=[(name.encode(), value.encode()) for name, value in api.headers.items()]
        + [(b"Idempotency-Key", key.encode())],
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]


def test_a_255_character_key_is_accepted(api: Api) -> None:
    """The longest allowed key works."""
    assert api.request("POST", json={"title": "x"}, headers=keyed("k" * 255)).status_code == 201


def test_keys_belong_to_their_user(api: Api, make_api: Any) -> None:
    """Another user's identical key and body is a request of its own, not a replay."""
    other: Api = make_api()
    mine = api.request("POST", json={"title": "same"}, headers=keyed("shared"))
    theirs = other.request("POST", json={"title": "same"}, headers=keyed("shared"))
    assert mine.status_code == theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers
    assert mine.json()["id"] != theirs.json()["id"]


def test_a_key_expires_after_24_hours(api: Api, engine: Engine) -> None:
    """A key older than 24 h is purged: the same request then runs again."""
    first = api.request("POST", json={"title": "daily"}, headers=keyed("day"))
    with engine.begin() as conn:
        conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.user_id == api.user_id)
            .values(created_at=datetime.now(UTC) - timedelta(hours=24, seconds=1))
        )
    again = api.request("POST", json={"title": "daily"}, headers=keyed("day"))
    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]
    with engine.connect() as conn:
        kept = conn.execute(
            select(func.count())
            .select_from(idempotency_keys)
            .where(idempotency_keys.c.user_id == api.user_id)
        ).scalar_one()
    assert kept == 1  # the expired one was purged


def test_concurrent_duplicates_create_one_task(app: FastAPI, engine: Engine, user_id: str) -> None:
    """Ten simultaneous creates with one new key: one task, every answer the same 201."""

    async def race(base_url: str) -> list[httpx2.Response]:
        headers = {**auth(user_id), **keyed("race")}
        async with httpx2.AsyncClient(base_url=base_url, timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(f"/api/{user_id}/tasks", json={"title": "once"}, headers=headers)
                    for _ in range(10)
                )
            )

    with live_server(app) as base_url:
        responses = asyncio.run(race(base_url))
    assert [response.status_code for response in responses] == [201] * 10
    assert len({response.json()["id"] for response in responses}) == 1
    replayed = [response.headers.get("idempotent-replayed") for response in responses]
    assert replayed.count("true") == 9
    assert event_count(engine, user_id) == 1


def test_the_sweep_purges_expired_keys_of_every_user_and_keeps_fresh_ones(
    engine: Engine, make_api: Any
) -> None:
    """Keys of users who never write again go too, once older than 24 h."""
    gone, kept = make_api(), make_api()
    gone.request("POST", json={"title": "a"}, headers=keyed("old"))
    kept.request("POST", json={"title": "b"}, headers=keyed("new"))
    with engine.begin() as conn:
        conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.user_id == gone.user_id)
            .values(created_at=datetime.now(UTC) - timedelta(days=2))
        )
    assert purge_expired(engine) >= 1
    with engine.connect() as conn:
        left = set(
            conn.scalars(
                select(idempotency_keys.c.user_id).where(
                    idempotency_keys.c.user_id.in_([gone.user_id, kept.user_id])
                )
            )
        )
    assert left == {kept.user_id}


def test_a_duplicate_whose_first_never_ends_is_answered_409_before_the_deadline(
    postgres_url: str, postgres_engine: Engine
) -> None:
    """The key's first request holds its claim in a transaction that does not end: the retry
    waits for it (half the database's deadline), then is answered 409, the contract's "still
    being processed", not 503 by the deadline; nothing is written."""
    settings = service_role_settings(postgres_url)
    user_id = new_user_id()
    with (
        psycopg.connect(conninfo_of(settings)) as first,
        TestClient(create_app(settings)) as client,
    ):
        first.execute(
            "SELECT * FROM tasktrail_claim_key(%s, 'held', %s, interval '24 hours', 1000)",
            (user_id, "0" * 64),
        )
        response = client.post(
            f"/api/{user_id}/tasks",
            json={"title": "waits"},
            headers={**auth(user_id), **keyed("held")},
        )
        first.rollback()
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "still being processed" in response.json()["detail"]
    assert event_count(postgres_engine, user_id) == 0
