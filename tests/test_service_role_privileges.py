"""What the service's PostgreSQL role holds, read from the catalog, and what it no longer holds
(migration 0015): it appends to the log without choosing an event's place in the commit order,
and it reads no other role's sessions, while /readyz still sees them hold the audit feed back.

The listing is exhaustive on purpose: a grant that any migration adds, to any table, column,
sequence, function or role, fails `test_the_service_role_holds_exactly_these_privileges` until
this file says why the service needs it.
"""

from __future__ import annotations

import contextvars
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from alembic import command as alembic_command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import make_url, select, text

from tasktrail.api.app import create_app
from tasktrail.database import create_database_engine, write_transaction
from tasktrail.domain.chain import verify_chain
from tasktrail.domain.commands import CommandContext, CreateTask, TaskFields, UpdateTask
from tasktrail.events.store import event_columns, event_from_row
from tasktrail.migrations import runner
from tasktrail.row_security import DatabaseScope, scope_to_user
from tasktrail.schema import events
from tasktrail.storage.port import Write, Written
from tasktrail.storage.postgres.adapter import write_under_the_lock
from tasktrail.storage.sqlite.transaction import handle
from tests.conftest import (
    SERVICE_LOGIN,
    auth,
    make_settings,
    new_user_id,
)
from tests.row_security_helpers import INSUFFICIENT_PRIVILEGE, as_service_in, libpq
from tests.write_port_helpers import no_key, the_outcome

ROLE = "tasktrail_service"


# --- The commit order is the database's ---------------------------------------------------------

# Every column an append names (events/store.py's event_row); the values make a valid first event.
_APPENDED = (
    "user_id, seq, task_id, version, type, schema_version, data, data_hash, occurred_at, actor,"
    " prev_hash, hash"
)
_VALUES = "%s, 1, gen_random_uuid(), 1, 'TaskCreated', 1, '{}', 'x', now(), %s, 'x', 'x'"


@pytest.mark.parametrize(
    "statement",
    [
        # A huge id: the event stays above the feed's horizon, out of the audit feed for good.
        f"INSERT INTO events ({_APPENDED}, xact_id) VALUES ({_VALUES}, '9223372036854775807')",
        # A small one: it sorts before what a tailing auditor has already read.
        f"INSERT INTO events ({_APPENDED}, xact_id) VALUES ({_VALUES}, '3')",
        # Even the true one: the column is the database's to fill.
        f"INSERT INTO events ({_APPENDED}, xact_id) VALUES ({_VALUES}, pg_current_xact_id())",
        f"INSERT INTO events (position, {_APPENDED}) OVERRIDING SYSTEM VALUE VALUES (1, {_VALUES})",
    ],
    ids=["huge-xact-id", "small-xact-id", "own-xact-id", "position"],
)
def test_the_service_role_may_not_choose_an_events_place_in_the_commit_order(
    service_url: str, owner_url: str, statement: str
) -> None:
    user = new_user_id()
    with pytest.raises(psycopg.Error) as refused:
        as_service_in(service_url, DatabaseScope(user_id=user), statement, (user, user))
    assert refused.value.sqlstate == INSUFFICIENT_PRIVILEGE
    with psycopg.connect(libpq(owner_url)) as owner:
        assert owner.execute("SELECT count(*) FROM events").fetchone() == (0,)


def _context(user_id: str) -> CommandContext:
    return CommandContext(user_id=user_id, actor=user_id, request_id=None)


def _rename(user_id: str, task_id: str, title: str) -> UpdateTask:
    return UpdateTask(
        context=_context(user_id),
        task_id=task_id,
        changes={"title": title},
        completed=None,
        expected_versions=None,
    )


def test_every_write_path_of_the_service_appends_as_the_service_role(
    owner_url: str, service_url: str
) -> None:
    """The call in one round trip (tasktrail_append), the long way (the stream taken first,
    then the same call) and the sync engine's SQLAlchemy Core insert (SQLite's adapter, which
    tests and benchmarks also run on PostgreSQL) all name only the columns the role may write:
    each appends, and the database fills position and xact_id."""
    user = new_user_id()
    settings = make_settings(service_url, owner_database_url=owner_url)
    with TestClient(create_app(settings)) as client:
        created = client.post(f"/api/{user}/tasks", json={"title": "first"}, headers=auth(user))
        assert created.status_code == 201, created.text
    task_id = created.json()["id"]

    async def the_long_way() -> None:
        async with await psycopg.AsyncConnection.connect(
            libpq(service_url), autocommit=True
        ) as conn:
            written = await write_under_the_lock(
                conn, Write(_rename(user, task_id, "second"), None, the_outcome, no_key)
            )
            assert isinstance(written, Written)
            assert [event.version for event in written.answer.events] == [2]

    anyio.run(the_long_way)

    engine = create_database_engine(settings)

    def on_the_sync_engine() -> None:
        scope_to_user(user)  # as authentication does, in this context only
        with write_transaction(engine) as conn:
            handle(conn, _rename(user, task_id, "third"))
            other = str(uuid.uuid4())
            handle(
                conn,
                CreateTask(context=_context(user), task_id=other, fields=TaskFields(title="x")),
            )

    try:
        contextvars.copy_context().run(on_the_sync_engine)
    finally:
        engine.dispose()

    with psycopg.connect(libpq(owner_url)) as owner:
        filled = owner.execute(
            "SELECT xact_id::text::bigint FROM events WHERE user_id = %s ORDER BY seq", (user,)
        ).fetchall()
        latest = owner.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
    # Three transactions, the last with two events: each its own id, one already handed out.
    assert latest is not None
    assert len(filled) == 4
    (first,), (second,), (third,), (fourth,) = filled
    assert first < second < third == fourth < latest[0]
    owner_engine = create_database_engine(make_settings(owner_url))
    try:
        with owner_engine.connect() as conn:
            rows = conn.execute(
                select(*event_columns()).where(events.c.user_id == user).order_by(events.c.seq)
            )
            assert verify_chain([event_from_row(row._mapping) for row in rows]).ok
    finally:
        owner_engine.dispose()


# --- Exactly these privileges ---------------------------------------------------------------------

# Table privileges, held on every column too. Every table of the schema is named, with nothing if
# the service may not touch it: a new table must be placed here.
TABLE_PRIVILEGES: dict[str, frozenset[str]] = {
    "alembic_version": frozenset({"SELECT"}),  # /readyz reads the schema's revision
    "events": frozenset({"SELECT"}),  # and INSERT on some columns: COLUMN_PRIVILEGES_BUT
    "idempotency_keys": frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"}),
    "rebuild_progress": frozenset({"SELECT"}),  # /metrics reads the rebuild's progress
    "tasks": frozenset({"SELECT", "INSERT", "UPDATE"}),
    "user_streams": frozenset({"SELECT", "INSERT", "UPDATE"}),
}
# Privileges on some columns only: (table, privilege) -> the columns it is NOT held on.
COLUMN_PRIVILEGES_BUT: dict[tuple[str, str], frozenset[str]] = {
    # The commit order: the database fills both (migration 0015).
    ("events", "INSERT"): frozenset({"position", "xact_id"}),
}
# EXECUTE: the hot calls and /readyz's measure. The trigger's function keeps PUBLIC's default:
# PostgreSQL refuses to call a trigger function as anything but a trigger.
FUNCTIONS = frozenset(
    {
        "tasktrail_append",
        "tasktrail_claim_key",
        "tasktrail_feed_horizon_held_seconds",
        "tasktrail_refuse_event_change",
        "tasktrail_task_document",
    }
)
_TABLE_KINDS = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
_COLUMN_KINDS = ("SELECT", "INSERT", "UPDATE", "REFERENCES")


_RELATIONS = (
    "c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
)


@dataclass(frozen=True)
class Held:
    """What a role may do in the database's schema."""

    tables: dict[str, frozenset[str]]
    columns: dict[tuple[str, str], frozenset[str]]
    sequences: frozenset[str]
    functions: frozenset[str]
    creates: tuple[bool, bool]  # in the schema, in the database


def held_by(conn: psycopg.Connection[Any], role: str) -> tuple[Held, dict[str, frozenset[str]]]:
    """The role's privileges, from the catalog, and every column of every table."""
    tables: dict[str, set[str]] = {}
    for table, kind, held in conn.execute(
        f"SELECT c.relname, p.kind, has_table_privilege(%s, c.oid, p.kind) FROM pg_class AS c"
        f" CROSS JOIN unnest(%s::text[]) AS p(kind) WHERE {_RELATIONS}",
        (role, list(_TABLE_KINDS)),
    ):
        tables.setdefault(table, set())
        if held:
            tables[table].add(kind)
    columns: dict[tuple[str, str], set[str]] = {}
    every_column: dict[str, set[str]] = {}
    for table, column, kind, held in conn.execute(
        f"SELECT c.relname, a.attname, p.kind, has_column_privilege(%s, c.oid, a.attnum, p.kind)"
        f" FROM pg_class AS c JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0"
        f" AND NOT a.attisdropped CROSS JOIN unnest(%s::text[]) AS p(kind) WHERE {_RELATIONS}",
        (role, list(_COLUMN_KINDS)),
    ):
        every_column.setdefault(table, set()).add(column)
        if held:
            columns.setdefault((table, kind), set()).add(column)
    sequences = conn.execute(
        "SELECT DISTINCT c.relname FROM pg_class AS c"
        " CROSS JOIN unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) AS p(kind)"
        " WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'S'"
        " AND has_sequence_privilege(%s, c.oid, p.kind)",
        (role,),
    ).fetchall()
    functions = conn.execute(
        "SELECT proname FROM pg_proc WHERE pronamespace = current_schema()::regnamespace"
        " AND has_function_privilege(%s, oid, 'EXECUTE')",
        (role,),
    ).fetchall()
    creates = conn.execute(
        "SELECT has_schema_privilege(%s, current_schema(), 'CREATE'),"
        " has_database_privilege(%s, current_database(), 'CREATE')",
        (role, role),
    ).fetchone()
    assert creates is not None
    held = Held(
        tables={table: frozenset(kinds) for table, kinds in tables.items()},
        columns={key: frozenset(names) for key, names in columns.items()},
        sequences=frozenset(name for (name,) in sequences),
        functions=frozenset(name for (name,) in functions),
        creates=(creates[0], creates[1]),
    )
    return held, {table: frozenset(names) for table, names in every_column.items()}


def expected_of_the_service(every_column: dict[str, frozenset[str]]) -> Held:
    columns: dict[tuple[str, str], frozenset[str]] = {}
    for table, kinds in TABLE_PRIVILEGES.items():
        for kind in kinds & set(_COLUMN_KINDS):
            columns[(table, kind)] = every_column[table]
    for (table, kind), but in COLUMN_PRIVILEGES_BUT.items():
        columns[(table, kind)] = every_column[table] - but
    return Held(
        tables=TABLE_PRIVILEGES,
        columns=columns,
        sequences=frozenset(),
        functions=FUNCTIONS,
        creates=(False, False),
    )


def memberships(conn: psycopg.Connection[Any], role: str) -> list[str]:
    """Every role whose privileges `role` may use or take on, itself included (directly or
    through other roles: pg_monitor would bring pg_read_all_stats)."""
    rows = conn.execute(
        "SELECT rolname FROM pg_roles WHERE pg_has_role(%s, oid, 'MEMBER') ORDER BY 1", (role,)
    ).fetchall()
    return [name for (name,) in rows]


def test_the_service_role_holds_exactly_these_privileges(owner_url: str, service_url: str) -> None:
    """Table by table, column by column, and the roles it is in: only what the service uses.
    No predefined role (pg_read_all_stats, pg_read_all_data, pg_monitor...): they reach other
    roles' statements and other databases."""
    del service_url  # only to make the login role, in tasktrail_service
    with psycopg.connect(libpq(owner_url)) as owner:
        held, every_column = held_by(owner, ROLE)
        service_roles = memberships(owner, ROLE)
        login_roles = memberships(owner, SERVICE_LOGIN)
        attributes = owner.execute(
            "SELECT rolsuper, rolcanlogin, rolcreaterole, rolcreatedb, rolreplication,"
            " rolbypassrls FROM pg_roles WHERE rolname = %s",
            (ROLE,),
        ).fetchone()
        # Who may call /readyz's measure, which runs with the owner's rights: not PUBLIC.
        callers = owner.execute(
            "SELECT coalesce(r.rolname, 'PUBLIC'), p.prosecdef, p.proconfig FROM pg_proc AS p"
            " CROSS JOIN aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a"
            " LEFT JOIN pg_roles AS r ON r.oid = a.grantee"
            " WHERE p.oid = to_regprocedure('tasktrail_feed_horizon_held_seconds()')"
            " AND a.grantee <> p.proowner AND a.privilege_type = 'EXECUTE'"
        ).fetchall()
    assert set(held.tables) == set(TABLE_PRIVILEGES), "a table the service's grants do not name"
    assert held == expected_of_the_service(every_column)
    assert service_roles == [ROLE]
    assert login_roles == sorted([ROLE, SERVICE_LOGIN])
    assert attributes == (False, False, False, False, False, False)
    assert callers == [(ROLE, True, ["search_path=pg_catalog, pg_temp"])]


# --- /readyz without reading other sessions ------------------------------------------------------


def test_readyz_sees_another_roles_writer_that_the_service_role_cannot_see(
    owner_url: str, service_url: str
) -> None:
    """A writer's transaction held open by a role that is neither the owner nor the service:
    the service's role sees the session but not when its transaction began (nor its statement),
    and /readyz still says how long it has held the audit feed back."""
    other = f"tasktrail_other_{uuid.uuid4().hex[:8]}"
    other_url = make_url(owner_url).set(username=other, password=None)
    with psycopg.connect(libpq(owner_url), autocommit=True) as owner:
        owner.execute(f"CREATE ROLE {other} LOGIN")
    try:
        settings = make_settings(service_url, owner_database_url=owner_url)
        with (
            psycopg.connect(libpq(other_url.render_as_string(hide_password=False))) as writer,
            psycopg.connect(libpq(service_url), autocommit=True) as service,
            TestClient(create_app(settings)) as client,
        ):
            writers_pid = writer.execute("SELECT pg_backend_pid()").fetchone()
            writer.execute("SELECT pg_current_xact_id()")  # a transaction id, held open
            time.sleep(0.5)
            seen = service.execute(
                "SELECT backend_xid IS NOT NULL, xact_start, query FROM pg_stat_activity"
                " WHERE pid = %s",
                writers_pid,
            ).fetchone()
            body = client.get("/readyz").json()
            writer.rollback()
    finally:
        with psycopg.connect(libpq(owner_url), autocommit=True) as owner:
            owner.execute(f"DROP ROLE {other}")
    assert seen == (True, None, "<insufficient privilege>")
    assert body["feed_horizon_held_seconds"] >= 0.5, body


# --- 0015 down and up ----------------------------------------------------------------------------


def _migrate(owner_url: str, step: str, target: str, first: str | None = None) -> None:
    """`alembic upgrade` or `downgrade` to the target, as the owner; `first` in the same
    transaction, before it."""
    config = Config()
    config.set_main_option("script_location", str(Path(runner.__file__).parent))
    engine = create_database_engine(make_settings(owner_url))
    try:
        with engine.begin() as conn:
            if first is not None:
                conn.execute(text(first))
            config.attributes["connection"] = conn
            move = alembic_command.upgrade if step == "upgrade" else alembic_command.downgrade
            move(config, target)
    finally:
        engine.dispose()


def _events_insert_and_measure(owner_url: str) -> tuple[Any, ...]:
    with psycopg.connect(libpq(owner_url)) as owner:
        found = owner.execute(
            "SELECT has_table_privilege(%s, 'events', 'INSERT'),"
            " has_column_privilege(%s, 'events', 'xact_id', 'INSERT'),"
            " has_column_privilege(%s, 'events', 'position', 'INSERT'),"
            " has_column_privilege(%s, 'events', 'hash', 'INSERT'),"
            " to_regprocedure('tasktrail_feed_horizon_held_seconds()') IS NOT NULL",
            (ROLE,) * 4,
        ).fetchone()
    assert found is not None
    return tuple(found)


def test_the_downgrade_of_0015_gives_the_table_insert_back_and_the_upgrade_takes_it(
    owner_url: str,
) -> None:
    """Down to 0014: INSERT on the whole of `events` again, no measure. Down to 0011 (0012's
    downgrade): nothing on `events`. Up again: the privileges of head, exactly; and a role
    that 0012 once put in pg_read_all_stats is taken out of it."""
    _migrate(owner_url, "downgrade", "0014")
    at_0014 = _events_insert_and_measure(owner_url)
    _migrate(owner_url, "downgrade", "0011")
    at_0011 = _events_insert_and_measure(owner_url)
    _migrate(owner_url, "upgrade", "0014")
    # As 0012 did until 0015: a database at 0014 has its role in pg_read_all_stats. Granted in
    # the upgrade's own transaction: roles belong to the whole cluster, and no other test may
    # see the service's role in it.
    _migrate(owner_url, "upgrade", "head", first=f"GRANT pg_read_all_stats TO {ROLE}")
    at_head = _events_insert_and_measure(owner_url)
    with psycopg.connect(libpq(owner_url)) as owner:
        held, every_column = held_by(owner, ROLE)
        roles = memberships(owner, ROLE)
    assert at_0014 == (True, True, True, True, False)
    assert at_0011 == (False, False, False, False, False)
    assert at_head == (False, False, False, True, True)
    assert held == expected_of_the_service(every_column)
    assert roles == [ROLE]
