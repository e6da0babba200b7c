"""Helpers of the row-level security tests: one transaction as the service's role, two users."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import make_url

from tasktrail.api.app import create_app
from tasktrail.row_security import DatabaseScope
from tests.conftest import as_service, auth, make_settings, new_user_id

INSUFFICIENT_PRIVILEGE = "42501"


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def service_app(owner_url: str) -> FastAPI:
    return create_app(make_settings(as_service(owner_url), owner_database_url=owner_url))


def create_tasks(client: TestClient, user_id: str, count: int) -> list[str]:
    """Each with an Idempotency-Key: the user then has keys, a stream and tasks."""
    ids = []
    for number in range(count):
        response = client.post(
            f"/api/{user_id}/tasks",
            json={"title": f"task {number}"},
            headers={**auth(user_id), "Idempotency-Key": f"create-{number}"},
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def alice_and_bob(owner_url: str) -> tuple[str, str]:
    """Alice with two tasks (and two keys), Bob with three, written through the service."""
    alice, bob = new_user_id(), new_user_id()
    with TestClient(service_app(owner_url)) as client:
        create_tasks(client, alice, 2)
        create_tasks(client, bob, 3)
    return alice, bob


def as_service_in(
    service_url: str, scope: DatabaseScope | None, statement: str, params: tuple[Any, ...] = ()
) -> list[tuple[Any, ...]]:
    """One transaction as the service's role, in the scope (or none), running `statement`."""
    with psycopg.connect(libpq(service_url)) as conn:
        if scope is not None:
            conn.execute(
                "SELECT set_config('tasktrail.user_id', %s, true),"
                " set_config('tasktrail.audit', %s, true)",
                scope.parameters(),
            )
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


# Every table that holds rows of one user: row security binds the service's role on each.
PER_USER_TABLES = ("tasks", "events", "user_streams", "idempotency_keys")
