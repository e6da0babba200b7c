"""Defence in depth on PostgreSQL (migrations 0012 and 0014), as the owner: the migration,
the rebuild and the operator's commands, which run as the tables' owner (tasktrail/row_security.py).

Migration 0014's downgrade takes its row security off and the upgrade puts it back; the rebuild
keeps the grants (an operator's own too), the row security and the policies; `audit verify`
refuses to run as the service's role, and `db upgrade --service-login` makes the service's login
role. What the service's role itself reads and may write is in test_row_security_service_role.py.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command as alembic_command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import make_url

from tasktrail.database import create_database_engine
from tasktrail.migrations import runner
from tasktrail.projections.rebuild import rebuild
from tests.conftest import auth, make_settings
from tests.processes import run_cli
from tests.row_security_helpers import (
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


def test_the_downgrade_of_0014_takes_its_row_security_off_and_the_upgrade_back_on(
    owner_url: str,
) -> None:
    query = (
        "SELECT relname, relrowsecurity,"
        " (SELECT count(*) FROM pg_policies AS p WHERE p.tablename = c.relname)"
        " FROM pg_class AS c WHERE relname = ANY(%s)"
        " AND relnamespace = current_schema()::regnamespace ORDER BY 1"
    )

    def row_security() -> list[tuple[Any, ...]]:
        with psycopg.connect(libpq(owner_url)) as owner:
            return owner.execute(query, (list(PER_USER_TABLES),)).fetchall()

    config = Config()
    config.set_main_option("script_location", str(Path(runner.__file__).parent))
    engine = create_database_engine(make_settings(owner_url))
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            alembic_command.downgrade(config, "0013")
        down = row_security()
        runner.upgrade(engine)
    finally:
        engine.dispose()
    assert down == [
        ("events", True, 2),
        ("idempotency_keys", False, 0),
        ("tasks", True, 1),
        ("user_streams", False, 0),
    ]
    assert row_security() == [
        ("events", True, 2),
        ("idempotency_keys", True, 3),
        ("tasks", True, 1),
        ("user_streams", True, 2),
    ]


def test_the_rebuild_keeps_the_grants_the_row_security_and_the_policies(
    owner_url: str, two_users: tuple[str, str]
) -> None:
    alice, _ = two_users
    query = (
        "SELECT relrowsecurity, relacl::text,"
        " (SELECT array_agg(policyname || ':' || cmd || ':' || coalesce(qual, '') || ':'"
        " || coalesce(with_check, '') ORDER BY policyname) FROM pg_policies"
        " WHERE tablename = 'tasks') FROM pg_class WHERE oid = 'tasks'::regclass"
    )
    with psycopg.connect(libpq(owner_url)) as owner:
        before = owner.execute(query).fetchone()
    engine = create_database_engine(make_settings(owner_url))
    try:
        report = rebuild(engine)
    finally:
        engine.dispose()
    assert report.tasks == 5
    with psycopg.connect(libpq(owner_url)) as owner:
        assert owner.execute(query).fetchone() == before
    with TestClient(service_app(owner_url)) as client:
        response = client.get(f"/api/{alice}/tasks", headers=auth(alice))
        assert response.status_code == 200, response.text
        assert len(response.json()) == 2


def test_the_rebuild_keeps_an_operators_own_grants_with_their_grant_option_and_columns(
    owner_url: str, two_users: tuple[str, str]
) -> None:
    """Grants the migrations never made: a reporting role that may pass its SELECT on, and one
    that may read two columns only. The rebuilt table must give each exactly what it had."""
    suffix = uuid.uuid4().hex[:8]
    reporting, columns_only = f"tasktrail_reporting_{suffix}", f"tasktrail_columns_{suffix}"
    query = (
        "SELECT relacl::text, ARRAY(SELECT attname || '=' || attacl::text FROM pg_attribute"
        " WHERE attrelid = 'tasks'::regclass AND attacl IS NOT NULL ORDER BY attname)"
        " FROM pg_class WHERE oid = 'tasks'::regclass"
    )
    with psycopg.connect(libpq(owner_url), autocommit=True) as owner:
        for role in (reporting, columns_only):
            owner.execute(f"CREATE ROLE {role} NOLOGIN")
        try:
            owner.execute(f"GRANT SELECT ON tasks TO {reporting} WITH GRANT OPTION")
            owner.execute(f"GRANT SELECT (id, title) ON tasks TO {columns_only}")
            before = owner.execute(query).fetchone()
            assert before is not None
            assert f"{reporting}=r*/" in before[0]  # the grant option is in the ACL
            assert len(before[1]) == 2
            engine = create_database_engine(make_settings(owner_url))
            try:
                assert rebuild(engine).tasks == 5
            finally:
                engine.dispose()
            assert owner.execute(query).fetchone() == before
        finally:
            for role in (reporting, columns_only):
                owner.execute(f"DROP OWNED BY {role}")
                owner.execute(f"DROP ROLE {role}")


def test_the_operators_commands_run_as_the_owner_or_refuse(
    tmp_path: Path, owner_url: str, service_url: str, two_users: tuple[str, str]
) -> None:
    """As the service's role, `audit verify` would check no chain at all and pass: refused."""
    refused = run_cli("audit", "verify", cwd=tmp_path, TASKTRAIL_DATABASE_URL=service_url)
    assert refused.returncode == 2
    assert "TASKTRAIL_OWNER_DATABASE_URL" in refused.stderr
    for command in (("audit", "verify"), ("projections", "verify"), ("db", "upgrade")):
        done = run_cli(
            *command,
            cwd=tmp_path,
            TASKTRAIL_DATABASE_URL=service_url,
            TASKTRAIL_OWNER_DATABASE_URL=owner_url,
        )
        assert done.returncode == 0, done.stderr
    verified = run_cli(
        "audit",
        "verify",
        cwd=tmp_path,
        TASKTRAIL_DATABASE_URL=service_url,
        TASKTRAIL_OWNER_DATABASE_URL=owner_url,
    )
    assert "all 2 chains verify" in verified.stdout


def test_db_upgrade_makes_the_services_login_role(tmp_path: Path, owner_url: str) -> None:
    """`db upgrade --service-login NAME`, as compose.yaml's migrate runs it: a login role in
    tasktrail_service, its password from the environment; run again, it sets the password."""
    name = f"tasktrail_login_{uuid.uuid4().hex[:8]}"
    stored_passwords = []
    try:
        for password in ("first 'quoted' password", "second:password%s"):
            done = run_cli(
                "db",
                "upgrade",
                "--service-login",
                name,
                cwd=tmp_path,
                TASKTRAIL_DATABASE_URL=owner_url,
                TASKTRAIL_SERVICE_PASSWORD=password,
            )
            assert done.returncode == 0, done.stderr
            with psycopg.connect(libpq(owner_url)) as owner:
                stored = owner.execute(
                    "SELECT rolcanlogin, pg_has_role(rolname, 'tasktrail_service', 'USAGE'),"
                    " rolpassword FROM pg_authid WHERE rolname = %s",
                    (name,),
                ).fetchone()
            assert stored is not None
            assert stored[:2] == (True, True)
            stored_passwords.append(stored[2])
        assert None not in stored_passwords
        assert stored_passwords[0] != stored_passwords[1]  # the second run set the new one
        login_url = make_url(owner_url).set(username=name).render_as_string(hide_password=False)
        assert as_service_in(login_url, None, "SELECT row_security_active('tasks')") == [(True,)]
        missing = run_cli(
            "db", "upgrade", "--service-login", name, cwd=tmp_path, TASKTRAIL_DATABASE_URL=owner_url
        )
        assert missing.returncode == 2
        assert "TASKTRAIL_SERVICE_PASSWORD" in missing.stderr
        owner_name = make_url(owner_url).username or "postgres"
        refused = run_cli(
            *("db", "upgrade", "--service-login", owner_name),
            cwd=tmp_path,
            TASKTRAIL_DATABASE_URL=owner_url,
            TASKTRAIL_SERVICE_PASSWORD="anything",
        )
        assert refused.returncode == 2
        assert "bound by them" in refused.stderr
    finally:
        with psycopg.connect(libpq(owner_url), autocommit=True) as owner:
            owner.execute(f"DROP ROLE IF EXISTS {name}")
