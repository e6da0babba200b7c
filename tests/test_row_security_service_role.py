"""Defence in depth on PostgreSQL (migrations 0012 and 0014), as the service's role: its
privileges, and row-level security keyed by the transaction's scope (tasktrail/row_security.py).

Every API test on PostgreSQL already runs as the service's role (conftest's `app`). These tests
go behind the API on purpose: queries that forgot their `WHERE user_id`, writes the service never
makes, the sweep of expired keys, the audit scope and the scope the service's own connections
carry. What runs as the owner is in test_row_security_owner.py.
"""

from __future__ import annotations

import contextvars
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, make_url, text

from tasktrail.api.services import services_of_app
from tasktrail.database import create_database_engine, read_connection
from tasktrail.pg_pool import AsyncPool, in_scope
from tasktrail.row_security import SET_SWEEP_SQL, DatabaseScope, scope_to_audit, scope_to_user
from tasktrail.storage.keys import purge_expired
from tests.conftest import SECRET, SERVICE_LOGIN, auth, make_settings, new_user_id
from tests.processes import served
from tests.row_security_helpers import (
    INSUFFICIENT_PRIVILEGE,
    PER_USER_TABLES,
    alice_and_bob,
    as_service_in,
    libpq,
    service_app,
)


@pytest.fixture
def two_users(owner_url: str) -> tuple[str, str]:
    """Alice with two tasks (and two keys), Bob with three (alice_and_bob)."""
    return alice_and_bob(owner_url)


def test_the_service_connects_as_its_own_role_and_is_bound_by_row_security(
    service_url: str,
) -> None:
    bound = ", ".join(f"row_security_active('{table}')" for table in PER_USER_TABLES)
    rows = as_service_in(service_url, None, f"SELECT current_user, {bound}")
    assert rows == [(SERVICE_LOGIN, *(True for _ in PER_USER_TABLES))]


def test_the_tests_service_runs_as_the_service_role(app: FastAPI, postgres_url: str) -> None:
    """conftest's `app` (behind every API test) connects as the service's role on PostgreSQL,
    on both of its pools."""
    del postgres_url  # only to skip without PostgreSQL
    if not services_of_app(app).settings.is_postgres:
        pytest.skip("the SQLite half of the app fixture")
    engine: Engine = services_of_app(app).engine
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar_one() == SERVICE_LOGIN
    assert make_url(services_of_app(app).settings.database_url).username == SERVICE_LOGIN


def test_readyz_sees_a_transaction_of_the_owner_holding_the_feed_back(owner_url: str) -> None:
    """pg_stat_activity hides another role's transaction start from the service's role: the
    owner's function of migration 0015 sees it, or the service would report 0 s."""
    with psycopg.connect(libpq(owner_url)) as owner, TestClient(service_app(owner_url)) as client:
        owner.execute("SELECT pg_current_xact_id()")  # a writer's transaction id, held open
        time.sleep(0.3)
        body = client.get("/readyz").json()
        owner.rollback()
    assert body["feed_horizon_held_seconds"] >= 0.3, body


def test_the_service_warns_at_start_when_its_role_is_not_bound(
    tmp_path: Path, owner_url: str, service_url: str
) -> None:
    """As the owner, everything works and no policy applies: `serve` says so at start. As the
    service's role, it says nothing."""
    for url, warned in ((owner_url, True), (service_url, False)):
        with served(
            tmp_path, "--no-migrate", TASKTRAIL_DATABASE_URL=url, BETTER_AUTH_SECRET=SECRET
        ) as (
            base_url,
            log,
            _,
        ):
            assert httpx2.get(base_url + "/readyz", timeout=10).status_code == 200
            deadline = time.monotonic() + (10 if warned else 2)
            while "row-level security does not bind" not in log.read_text():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert ("row-level security does not bind" in log.read_text()) is warned


def test_a_query_that_forgot_its_user_sees_only_the_scopes_rows(
    service_url: str, two_users: tuple[str, str]
) -> None:
    """No `WHERE user_id` at all: the policy adds it."""
    alice, bob = two_users
    for user, tasks_of_user in ((alice, 2), (bob, 3)):
        scope = DatabaseScope(user_id=user)
        assert as_service_in(
            service_url, scope, "SELECT user_id, count(*) FROM tasks GROUP BY 1"
        ) == [(user, tasks_of_user)]
        for table in ("events", "user_streams", "idempotency_keys"):
            seen = as_service_in(service_url, scope, f"SELECT DISTINCT user_id FROM {table}")
            assert seen == [(user,)], table
        assert as_service_in(service_url, scope, "SELECT count(*) FROM idempotency_keys") == [
            (tasks_of_user,)
        ]


def test_a_transaction_without_a_scope_sees_nothing_and_a_scope_ends_with_its_transaction(
    service_url: str, two_users: tuple[str, str]
) -> None:
    for table in PER_USER_TABLES:
        assert as_service_in(service_url, None, f"SELECT count(*) FROM {table}") == [(0,)], table
    with psycopg.connect(libpq(service_url), autocommit=True) as conn:
        conn.execute("SELECT set_config('tasktrail.user_id', %s, true)", (two_users[0],))
        # That statement was a transaction of its own: the next one has no scope.
        assert conn.execute("SELECT count(*) FROM tasks").fetchone() == (0,)


def test_the_hot_calls_scope_themselves_to_the_user_they_name_and_no_further(
    owner_url: str, service_url: str, two_users: tuple[str, str]
) -> None:
    """tasktrail_task_document (migration 0013) reads in the scope of the user it is given,
    only that user's live row, and its scope ends with the call: the next statement on the
    same connection sees nothing."""
    alice, bob = two_users
    with psycopg.connect(libpq(owner_url)) as owner:
        ids: dict[uuid.UUID, str] = dict(owner.execute("SELECT id, user_id FROM tasks").fetchall())
    alices = [task for task, user in ids.items() if user == alice]
    bobs = [task for task, user in ids.items() if user == bob]
    read = "SELECT etag FROM tasktrail_task_document(%s, %s)"
    with psycopg.connect(libpq(service_url), autocommit=True) as conn:
        assert conn.execute(read, (alice, alices[0])).fetchall() == [('"1"',)]
        # Bob's task under Alice's name, and Alice's task under Bob's: nothing.
        assert conn.execute(read, (alice, bobs[0])).fetchall() == []
        assert conn.execute(read, (bob, alices[0])).fetchall() == []
        assert conn.execute("SELECT count(*) FROM tasks").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)


def test_the_audit_scope_reads_every_users_log_and_writes_nothing(
    service_url: str, two_users: tuple[str, str]
) -> None:
    audit = DatabaseScope(audit=True)
    # The log and its recorded heads (the chain check reads both), and no one's keys.
    for table in ("events", "user_streams"):
        users = as_service_in(
            service_url, audit, f"SELECT DISTINCT user_id FROM {table} ORDER BY 1"
        )
        assert users == sorted((user,) for user in two_users), table
    assert as_service_in(service_url, audit, "SELECT count(*) FROM idempotency_keys") == [(0,)]
    moved = "UPDATE user_streams SET last_seq = 0 RETURNING user_id"
    assert as_service_in(service_url, audit, moved) == []
    with pytest.raises(psycopg.Error) as refused:
        as_service_in(
            service_url,
            audit,
            "INSERT INTO events (user_id, seq, task_id, version, type, schema_version, data,"
            " data_hash, occurred_at, actor, prev_hash, hash) SELECT user_id, seq + 1000,"
            " task_id, version + 1000, type, schema_version, data, data_hash, occurred_at,"
            " actor, prev_hash, hash FROM events LIMIT 1",
        )
    assert refused.value.sqlstate == INSUFFICIENT_PRIVILEGE


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET actor = 'mallory'",
        "DELETE FROM events",
        "TRUNCATE events",
        "DELETE FROM tasks",
        "DROP TABLE tasks",
        "ALTER TABLE events DISABLE ROW LEVEL SECURITY",
    ],
)
def test_the_service_role_may_not_change_the_log_or_drop_the_read_model(
    service_url: str, two_users: tuple[str, str], statement: str
) -> None:
    with pytest.raises(psycopg.Error) as refused:
        as_service_in(service_url, DatabaseScope(user_id=two_users[0]), statement)
    assert refused.value.sqlstate == INSUFFICIENT_PRIVILEGE


def test_the_service_role_holds_only_the_privileges_it_needs(owner_url: str) -> None:
    """The grants themselves (migration 0001's trigger also refuses changes to the log: this
    checks the privileges, not the trigger). INSERT on `events` is held on some columns only
    (test_service_role_privileges.py lists every privilege)."""
    checks = {
        ("events", "SELECT"): True,
        ("events", "INSERT"): False,
        ("events", "UPDATE"): False,
        ("events", "DELETE"): False,
        ("events", "TRUNCATE"): False,
        ("tasks", "UPDATE"): True,
        ("tasks", "DELETE"): False,
        ("tasks", "TRUNCATE"): False,
        ("user_streams", "DELETE"): False,
        ("rebuild_progress", "UPDATE"): False,
    }
    with psycopg.connect(libpq(owner_url)) as owner:
        held = {
            check: owner.execute(
                "SELECT has_table_privilege('tasktrail_service', %s, %s)", check
            ).fetchone()
            for check in checks
        }
        creates = owner.execute(
            "SELECT has_schema_privilege('tasktrail_service', current_schema(), 'CREATE')"
        ).fetchone()
    assert held == {check: (allowed,) for check, allowed in checks.items()}
    assert creates == (False,)


def test_a_write_into_another_users_rows_is_refused_or_reaches_nothing(
    service_url: str, owner_url: str, two_users: tuple[str, str]
) -> None:
    alice, bob = two_users
    scope = DatabaseScope(user_id=alice)
    with pytest.raises(psycopg.Error) as refused:
        as_service_in(
            service_url,
            scope,
            "INSERT INTO events (user_id, seq, task_id, version, type, schema_version, data,"
            " data_hash, occurred_at, actor, prev_hash, hash) VALUES (%s, 99, gen_random_uuid(),"
            " 1, 'TaskCreated', 1, '{}', 'x', now(), %s, 'x', 'x')",
            (bob, alice),
        )
    assert refused.value.sqlstate == INSUFFICIENT_PRIVILEGE
    as_service_in(service_url, scope, "UPDATE tasks SET title = 'renamed'")  # no WHERE at all
    with psycopg.connect(libpq(owner_url)) as owner:
        titles = owner.execute(
            "SELECT user_id, count(*) FILTER (WHERE title = 'renamed') FROM tasks GROUP BY 1"
        ).fetchall()
    assert dict(titles) == {alice: 2, bob: 0}


def keys_and_streams(owner_url: str) -> list[tuple[Any, ...]]:
    """Every idempotency key and every stream, as the owner sees them."""
    with psycopg.connect(libpq(owner_url)) as owner:
        keys = owner.execute(
            "SELECT 'key', user_id, key, fingerprint, status_code, body, created_at"
            " FROM idempotency_keys"
        ).fetchall()
        streams = owner.execute(
            "SELECT 'stream', user_id, last_seq, head_hash FROM user_streams"
        ).fetchall()
    return sorted(keys + streams, key=repr)


def test_another_users_keys_and_stream_are_out_of_reach(
    service_url: str, owner_url: str, two_users: tuple[str, str]
) -> None:
    """In Alice's scope, Bob's idempotency keys and stream cannot be read, changed or deleted
    (the statements reach no row), nor written under his name (refused)."""
    alice, bob = two_users
    scope = DatabaseScope(user_id=alice)
    before = keys_and_streams(owner_url)
    for statement in (
        "SELECT key FROM idempotency_keys WHERE user_id = %s",
        "SELECT last_seq FROM user_streams WHERE user_id = %s",
        "UPDATE idempotency_keys SET body = 'forged' WHERE user_id = %s RETURNING key",
        "DELETE FROM idempotency_keys WHERE user_id = %s RETURNING key",
        "UPDATE user_streams SET last_seq = 0 WHERE user_id = %s RETURNING last_seq",
    ):
        assert as_service_in(service_url, scope, statement, (bob,)) == [], statement
    for statement, user in (
        # A stored answer under Bob's name: his next request with that key would replay it.
        (
            "INSERT INTO idempotency_keys (user_id, key, fingerprint, status_code, headers,"
            " body, created_at) VALUES (%s, 'create-9', 'f', 201, '{}', 'forged', now())",
            bob,
        ),
        # The write path's own take of the stream, under Bob's name, and for a new user.
        *(
            (
                "INSERT INTO user_streams (user_id, last_seq, head_hash) VALUES (%s, 0,"
                " repeat('0', 64)) ON CONFLICT (user_id) DO UPDATE SET last_seq = 0",
                user,
            )
            for user in (bob, new_user_id())
        ),
    ):
        with pytest.raises(psycopg.Error) as refused:
            as_service_in(service_url, scope, statement, (user,))
        assert refused.value.sqlstate == INSUFFICIENT_PRIVILEGE, statement
    assert keys_and_streams(owner_url) == before
    as_service_in(service_url, scope, "DELETE FROM idempotency_keys")  # no WHERE at all
    assert keys_and_streams(owner_url) == [row for row in before if row[:2] != ("key", alice)]


def aged(owner_url: str, condition: str, params: tuple[Any, ...]) -> None:
    """Make keys two days old (the owner may)."""
    with psycopg.connect(libpq(owner_url)) as owner:
        owner.execute(
            "UPDATE idempotency_keys SET created_at = now() - interval '2 days' WHERE " + condition,
            params,
        )


def test_the_sweep_deletes_every_users_expired_keys_as_the_service_role(
    owner_url: str, service_url: str, two_users: tuple[str, str]
) -> None:
    """`purge_expired` runs outside any request, so with no user's scope: it still reaches the
    expired keys of every user, and leaves the live ones."""
    alice, bob = two_users
    aged(owner_url, "user_id = %s OR key = 'create-0'", (bob,))
    engine = create_database_engine(make_settings(service_url))
    try:
        assert purge_expired(engine) == 4  # Bob's three and Alice's first
    finally:
        engine.dispose()
    with psycopg.connect(libpq(owner_url)) as owner:
        left = owner.execute("SELECT user_id, key FROM idempotency_keys").fetchall()
    assert left == [(alice, "create-1")]


def test_the_sweeps_setting_reaches_expired_keys_only(
    owner_url: str, service_url: str, two_users: tuple[str, str]
) -> None:
    """The sweep's transaction sees, and may delete, expired keys and no live one; a request's
    scope sees no other user's key, expired or not, and no scope sees none."""
    alice, bob = two_users
    aged(owner_url, "user_id = %s AND key = 'create-0'", (bob,))
    assert as_service_in(
        service_url, DatabaseScope(user_id=alice), "SELECT DISTINCT user_id FROM idempotency_keys"
    ) == [(alice,)]
    assert as_service_in(service_url, None, "SELECT count(*) FROM idempotency_keys") == [(0,)]
    with psycopg.connect(libpq(service_url)) as conn:
        conn.execute(SET_SWEEP_SQL)
        seen = conn.execute("SELECT user_id, key FROM idempotency_keys").fetchall()
        changed = conn.execute("UPDATE idempotency_keys SET body = 'x' RETURNING key").fetchall()
        deleted = conn.execute("DELETE FROM idempotency_keys RETURNING user_id, key").fetchall()
    assert seen == deleted == [(bob, "create-0")]
    assert changed == []


def test_the_audit_apis_chain_check_reads_every_users_recorded_head(
    owner_url: str, two_users: tuple[str, str]
) -> None:
    """The check holds each chain to the head recorded in user_streams, read in the auditor's
    scope: without that head, every chain would end beyond it."""
    auditor = auth("an-auditor", roles=["auditor"])
    with TestClient(service_app(owner_url)) as client:
        for user, events in zip(two_users, (2, 3), strict=True):
            response = client.get(f"/api/audit/users/{user}/verify", headers=auditor)
            assert response.status_code == 200, response.text
            assert (response.json()["ok"], response.json()["events"]) == (True, events)


def test_the_services_own_connections_carry_the_requests_scope(
    owner_url: str, service_url: str, two_users: tuple[str, str]
) -> None:
    """The sync engine's transactions and the async pool's statements, each with a query that
    forgot its user: the scope of the request (set by authentication) decides."""
    alice, bob = two_users
    settings = make_settings(service_url)
    engine = create_database_engine(settings)

    def as_a_request(scope: Callable[[], None], statement: str) -> list[Any]:
        # A context of its own, as each request has: the scope set here ends with it.
        def run() -> list[Any]:
            scope()
            with read_connection(engine) as conn:
                return list(conn.execute(text(statement)).all())

        return contextvars.copy_context().run(run)

    try:
        assert as_a_request(lambda: scope_to_user(bob), "SELECT DISTINCT user_id FROM tasks") == [
            (bob,)
        ]
        seen = as_a_request(scope_to_audit, "SELECT DISTINCT user_id FROM events ORDER BY 1")
        assert seen == sorted((user,) for user in two_users)
        with read_connection(engine) as conn:  # outside any request: no scope, no rows
            assert conn.execute(text("SELECT count(*) FROM events")).scalar_one() == 0
    finally:
        engine.dispose()

    async def on_the_pool() -> list[tuple[Any, ...]]:
        pool = AsyncPool(settings)
        try:
            async with pool.connection() as conn, in_scope(conn, DatabaseScope(user_id=alice)):
                cursor = await conn.execute("SELECT DISTINCT user_id FROM tasks")
                return await cursor.fetchall()
        finally:
            await pool.close()

    assert anyio.run(on_the_pool) == [(alice,)]
