"""`db upgrade --service-login NAME`: the login the service connects as, made by the owner.

Its password reaches PostgreSQL only as a SCRAM-SHA-256 verifier (checked in the server's own
log, on a cluster of the test's own that logs every statement and asks every role but its
superuser for a SCRAM password), and a role row security would not bind (a member, however
indirect, of the tables' owner or of a predefined role such as pg_write_all_data) is refused
before anything changes. compose.yaml's database init script (an ordinary owner with CREATEROLE)
is run here too, as the postgres image would.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from sqlalchemy import URL, create_engine, make_url

from tests.conftest import scratch_postgres_database
from tests.private_postgres import PrivateCluster, private_cluster
from tests.processes import run_cli
from tests.test_document_migration import migrate

ROOT = Path(__file__).resolve().parent.parent
INIT_SCRIPT = ROOT / "deploy" / "postgres-initdb.sh"

# The superuser connects without a password (the tests' own connections); every other role
# must authenticate with SCRAM, so a login works only with its real password.
HBA = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


@pytest.fixture(scope="module")
def scram_cluster() -> Iterator[PrivateCluster]:
    with private_cluster() as cluster:
        (cluster.data_dir / "pg_hba.conf").write_text(HBA)
        with psycopg.connect(cluster.url, autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET log_statement = 'all'")
            admin.execute("SELECT pg_reload_conf()")
        yield cluster


def server_log(cluster: PrivateCluster) -> str:
    return (cluster.data_dir / "server.log").read_text(errors="replace")


def conninfo(cluster: PrivateCluster, user: str, password: str, dbname: str) -> str:
    return make_conninfo(
        host="127.0.0.1", port=cluster.port, user=user, password=password, dbname=dbname
    )


def url_of(cluster: PrivateCluster, user: str, password: str, dbname: str) -> str:
    return (
        make_url(f"postgresql://127.0.0.1:{cluster.port}/{dbname}")
        .set(username=user, password=password)
        .render_as_string(hide_password=False)
    )


def stored_password(cluster: PrivateCluster, name: str) -> str | None:
    with psycopg.connect(cluster.url) as admin:
        row = admin.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name,))
        found = row.fetchone()
    assert found is not None, f"no role {name}"
    return found[0]  # type: ignore[no-any-return]


def assert_nothing_changed(admin: psycopg.Connection[Any], database: URL, roles: list[str]) -> None:
    """A refused --service-login: none of `roles` joined tasktrail_service or got a password,
    and the database was not migrated."""
    memberships = admin.execute(
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
        " WHERE r.rolname = 'tasktrail_service'"
        " AND m.member IN (SELECT oid FROM pg_roles WHERE rolname = ANY(%s))",
        (roles,),
    ).fetchone()
    assert memberships == (0,)
    passwords = admin.execute(
        "SELECT count(rolpassword) FROM pg_authid WHERE rolname = ANY(%s)", (roles,)
    ).fetchone()
    assert passwords == (0,)
    with psycopg.connect(database.render_as_string(hide_password=False)) as in_database:
        tables = in_database.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
    assert tables == (0,), "migrated before refusing"


def test_the_password_reaches_postgresql_only_as_a_scram_verifier(
    tmp_path: Path, scram_cluster: PrivateCluster
) -> None:
    """The statement the server logs carries the verifier, never the password; the stored
    verifier is PostgreSQL's SCRAM-SHA-256 format; the login works with the password over SCRAM
    authentication, and not with another. Run again, the new password replaces the old."""
    database = f"tasktrail_scram_{uuid.uuid4().hex[:8]}"
    name = f"tasktrail_login_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(scram_cluster.url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    owner_url = f"postgresql://postgres@127.0.0.1:{scram_cluster.port}/{database}"
    for password in (f"first-{uuid.uuid4().hex}", f"second 'quoted' {uuid.uuid4().hex}"):
        done = run_cli(
            *("db", "upgrade", "--service-login", name),
            cwd=tmp_path,
            TASKTRAIL_DATABASE_URL=owner_url,
            TASKTRAIL_SERVICE_PASSWORD=password,
        )
        assert done.returncode == 0, done.stderr
        log = server_log(scram_cluster)
        assert password not in log
        assert password.replace("'", "''") not in log
        logged = [line for line in log.splitlines() if f'ROLE "{name}" LOGIN PASSWORD' in line]
        assert logged, "the role's statement is not in the server's log"
        assert all("'SCRAM-SHA-256$4096:" in line for line in logged), logged
        verifier = stored_password(scram_cluster, name)
        assert verifier is not None
        assert verifier.startswith("SCRAM-SHA-256$4096:")
        assert verifier in logged[-1]  # stored as it was sent
        with psycopg.connect(conninfo(scram_cluster, name, password, database)) as login:
            assert login.execute("SELECT row_security_active('tasks')").fetchone() == (True,)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(conninfo(scram_cluster, name, "not-" + password, database))


def test_a_member_of_the_tables_owner_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    """The tables' owner is an ordinary role (as in compose.yaml). A login that is a member of
    it, directly or through another role, would act as the owner (SET ROLE, or its inherited
    privileges) and bypass row security: refused before the migrations run, its password and
    memberships untouched, the database still empty. The owner itself is refused too."""
    suffix = uuid.uuid4().hex[:8]
    owner, group, direct, indirect = (
        f"tasktrail_{kind}_{suffix}" for kind in ("owner", "group", "direct", "indirect")
    )
    with scratch_postgres_database("tasktrail_login") as admin_url:
        admin_info = make_url(admin_url).set(drivername="postgresql")
        maintenance = admin_info.set(database="postgres").render_as_string(hide_password=False)
        with psycopg.connect(maintenance, autocommit=True) as admin:
            database = admin_info.database
            admin.execute(f"CREATE ROLE {owner} LOGIN CREATEROLE")
            admin.execute(f'ALTER DATABASE "{database}" OWNER TO {owner}')
            admin.execute(f"CREATE ROLE {group} NOLOGIN IN ROLE {owner}")
            admin.execute(f"CREATE ROLE {direct} LOGIN IN ROLE {owner}")
            admin.execute(f"CREATE ROLE {indirect} LOGIN IN ROLE {group}")
            try:
                owner_url = admin_info.set(
                    drivername="postgresql", username=owner, password=None
                ).render_as_string(hide_password=False)
                for name, through in ((direct, owner), (indirect, owner), (owner, None)):
                    refused = run_cli(
                        *("db", "upgrade", "--service-login", name),
                        cwd=tmp_path,
                        TASKTRAIL_DATABASE_URL=owner_url,
                        TASKTRAIL_SERVICE_PASSWORD="never set",
                    )
                    assert refused.returncode == 2, (name, refused.stdout, refused.stderr)
                    assert "bound by them" in refused.stderr
                    if through is not None:
                        assert f"member of {through}" in refused.stderr
                    assert "newest schema revision" not in refused.stdout
                assert_nothing_changed(admin, admin_info, [direct, indirect, owner])
            finally:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                for role in (indirect, direct, group, owner):
                    admin.execute(f"DROP ROLE IF EXISTS {role}")


def test_a_member_of_a_predefined_role_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    """A login in pg_write_all_data (directly, or through another role in pg_read_all_data)
    holds privileges row security and the service's grants do not bound (pg_write_all_data may
    insert events.xact_id): refused before the migrations run, its password and memberships
    untouched, the database still empty."""
    suffix = uuid.uuid4().hex[:8]
    group, direct, indirect = (
        f"tasktrail_{kind}_{suffix}" for kind in ("readers", "writer", "reader")
    )
    with scratch_postgres_database("tasktrail_login") as admin_url:
        admin_info = make_url(admin_url).set(drivername="postgresql")
        maintenance = admin_info.set(database="postgres").render_as_string(hide_password=False)
        with psycopg.connect(maintenance, autocommit=True) as admin:
            admin.execute(f"CREATE ROLE {direct} LOGIN IN ROLE pg_write_all_data")
            admin.execute(f"CREATE ROLE {group} NOLOGIN IN ROLE pg_read_all_data")
            admin.execute(f"CREATE ROLE {indirect} LOGIN IN ROLE {group}")
            try:
                for name, through in (
                    (direct, "pg_write_all_data"),
                    (indirect, "pg_read_all_data"),
                ):
                    refused = run_cli(
                        *("db", "upgrade", "--service-login", name),
                        cwd=tmp_path,
                        TASKTRAIL_DATABASE_URL=admin_info.render_as_string(hide_password=False),
                        TASKTRAIL_SERVICE_PASSWORD="never set",
                    )
                    assert refused.returncode == 2, (name, refused.stdout, refused.stderr)
                    assert f"member of the predefined role {through}" in refused.stderr
                    assert "Traceback" not in refused.stderr
                    assert "newest schema revision" not in refused.stdout
                assert_nothing_changed(admin, admin_info, [direct, indirect])
            finally:
                for role in (indirect, direct, group):
                    admin.execute(f"DROP ROLE IF EXISTS {role}")


def test_compose_init_script_makes_an_ordinary_owner_that_migrates_and_makes_the_login(
    tmp_path: Path, scram_cluster: PrivateCluster
) -> None:
    """deploy/postgres-initdb.sh, run as the postgres image runs it (as its superuser, with
    compose's environment): the role `tasktrail` owns the database `tasktrail`, is no superuser
    and does not bypass row security; as it, compose's migrate command (`db upgrade
    --service-login tasktrail_api`) succeeds, and the api's login works with its password."""
    owner_password, api_password = uuid.uuid4().hex, uuid.uuid4().hex
    bin_dir = scram_cluster.bin_dir
    environment = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(scram_cluster.port),
        "POSTGRES_USER": "postgres",
        "TASKTRAIL_OWNER_PASSWORD": owner_password,
    }
    init = subprocess.run(
        ["sh", str(INIT_SCRIPT)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    with psycopg.connect(scram_cluster.url) as admin:
        owner = admin.execute(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb,"
            " (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'tasktrail')"
            " FROM pg_roles WHERE rolname = 'tasktrail'"
        ).fetchone()
        stats = admin.execute("SELECT pg_has_role('tasktrail', 'pg_read_all_stats', 'USAGE')")
        reads_all_stats = stats.fetchone()
    assert owner == (False, False, True, False, "tasktrail")
    assert reads_all_stats == (True,)  # for /readyz's view of other roles' transactions
    migrate = run_cli(
        *("db", "upgrade", "--service-login", "tasktrail_api"),
        cwd=tmp_path,
        TASKTRAIL_DATABASE_URL=url_of(scram_cluster, "tasktrail", owner_password, "tasktrail"),
        TASKTRAIL_SERVICE_PASSWORD=api_password,
    )
    assert migrate.returncode == 0, migrate.stderr
    with psycopg.connect(conninfo(scram_cluster, "tasktrail", owner_password, "tasktrail")) as conn:
        owners = conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    assert owners == [("tasktrail",)]
    with psycopg.connect(
        conninfo(scram_cluster, "tasktrail_api", api_password, "tasktrail")
    ) as api:
        assert api.execute(
            "SELECT row_security_active('tasks'), pg_has_role('tasktrail_service', 'MEMBER')"
        ).fetchone() == (True, True)


def test_a_deploy_onto_a_database_0012_put_in_pg_read_all_stats_upgrades_and_keeps_its_login(
    tmp_path: Path, scram_cluster: PrivateCluster
) -> None:
    """compose's migrate runs `db upgrade --service-login tasktrail_api` at every deploy. On a
    database at 0014, whose tasktrail_service 0012 put in pg_read_all_stats, the login reaches
    that role through tasktrail_service until 0015 takes it out: refused before migrating, the
    deploy would never get to 0015. It migrates, then checks: the role is out, the login in."""
    database = f"tasktrail_old_{uuid.uuid4().hex[:8]}"
    name = f"tasktrail_api_{uuid.uuid4().hex[:8]}"
    password = f"api-{uuid.uuid4().hex}"
    with psycopg.connect(scram_cluster.url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    owner_url = f"postgresql://postgres@127.0.0.1:{scram_cluster.port}/{database}"

    def deploy() -> subprocess.CompletedProcess[str]:
        return run_cli(
            *("db", "upgrade", "--service-login", name),
            cwd=tmp_path,
            TASKTRAIL_DATABASE_URL=owner_url,
            TASKTRAIL_SERVICE_PASSWORD=password,
        )

    assert deploy().returncode == 0
    engine = create_engine(make_url(owner_url).set(drivername="postgresql+psycopg"))
    try:
        with engine.begin() as conn:
            migrate(conn, "downgrade", "0014")
            conn.exec_driver_sql("GRANT pg_read_all_stats TO tasktrail_service")  # as 0012 did
    finally:
        engine.dispose()

    again = deploy()
    assert again.returncode == 0, again.stderr
    with psycopg.connect(scram_cluster.url) as admin:
        still = admin.execute(
            "SELECT pg_has_role('tasktrail_service', 'pg_read_all_stats', 'MEMBER'),"
            " pg_has_role(%s, 'tasktrail_service', 'MEMBER')",
            (name,),
        ).fetchone()
    assert still == (False, True)
    with psycopg.connect(conninfo(scram_cluster, name, password, database)) as login:
        assert login.execute("SELECT row_security_active('tasks')").fetchone() == (True,)
