"""What the commands share: settings with the secret rule, migrating, progress bars, errors."""

from __future__ import annotations

from typing import Any, NoReturn

import psycopg
import typer
from psycopg import sql
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from sqlalchemy import Engine, text

from tasktrail.database import create_database_engine
from tasktrail.migrations.runner import upgrade
from tasktrail.pg_pool import conninfo_of
from tasktrail.row_security import SERVICE_ROLE
from tasktrail.settings import (
    DEV_SECRET_FILE,
    ConfigurationError,
    Settings,
    load_settings,
    with_development_secret,
)


def fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def service_settings(*, development_secret: bool) -> Settings:
    """The settings, with a usable secret or a clear refusal (exit 2)."""
    settings = load_settings()
    if development_secret:
        settings, created = with_development_secret(settings)
        if created:
            typer.secho(
                f"No BETTER_AUTH_SECRET set: made a development secret in {DEV_SECRET_FILE} "
                "(mode 0600). Set BETTER_AUTH_SECRET for anything but trying tasktrail out.",
                err=True,
                fg=typer.colors.YELLOW,
            )
    try:
        settings.secret_bytes()
    except ConfigurationError as error:
        fail(str(error))
    return settings


def migrate(settings: Settings) -> None:
    engine = create_database_engine(settings.as_owner())
    try:
        upgrade(engine)
    finally:
        engine.dispose()


SERVICE_PASSWORD = "TASKTRAIL_SERVICE_PASSWORD"  # noqa: S105  the variable's name, no secret


def check_service_login(settings: Settings, name: str) -> None:
    """Refuse (ValueError) a login the service must not connect as, before anything changes.

    What the login reaches through tasktrail_service is left to the check made after the
    migrations, with the change: they are what set that role's memberships (0012 put it in
    pg_read_all_stats, 0015 takes it out), so before them it may still hold what they remove.
    """
    owner = service_login_owner(settings)
    with psycopg.connect(conninfo_of(owner), connect_timeout=owner.connect_timeout) as conn:
        refuse_unbound_login(conn, name, not_through=SERVICE_ROLE)


def ensure_service_login(settings: Settings, name: str, password: str) -> None:
    """A login role `name` with this password, member of tasktrail_service (migration 0012):
    made, or given the password again. Needs a database owner allowed to create roles, and
    refuses (ValueError, nothing changed) a role row security would not bind."""
    owner = service_login_owner(settings)
    with psycopg.connect(conninfo_of(owner), connect_timeout=owner.connect_timeout) as conn:
        # One transaction: the check and the change, or nothing (a refusal rolls it back).
        exists = refuse_unbound_login(conn, name)
        conn.execute(service_login_statement(conn, name, password, exists=exists))
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(SERVICE_ROLE), sql.Identifier(name))
        )


def service_login_owner(settings: Settings) -> Settings:
    owner = settings.as_owner()
    if not owner.is_postgres:
        raise ValueError("--service-login is for PostgreSQL: SQLite has no roles")
    return owner


# Every role the login is or is a member of, directly or through other roles, whether it inherits
# their privileges or may only SET ROLE to them (pg_has_role's MEMBER), but not through the role
# named `not_through` (None: through any).
_REACHED = """
WITH RECURSIVE reached(oid) AS (
    SELECT oid FROM pg_roles WHERE rolname = %(name)s
    UNION
    SELECT m.roleid FROM pg_auth_members AS m
    JOIN reached AS r ON m.member = r.oid
    JOIN pg_roles AS g ON g.oid = m.roleid
    WHERE g.rolname IS DISTINCT FROM %(not_through)s
)
"""

# Of those, the first that row security does not bind: a superuser, a role that bypasses row
# security, the role migrating or the tables' owner (the login itself first).
_UNBOUND_LOGIN_SQL = (
    _REACHED  # noqa: S608 - two constants of this module; the name is a bound parameter
    + """
SELECT rolname FROM pg_roles
WHERE oid IN (SELECT oid FROM reached)
  AND (rolsuper OR rolbypassrls OR rolname = current_user
       OR rolname IN (SELECT tableowner FROM pg_tables WHERE schemaname = current_schema()))
ORDER BY rolname = %(name)s DESC, rolname
LIMIT 1
"""
)


# And the predefined roles (every pg_* role: no other may be named so) the login must not be a
# member of either: pg_write_all_data writes every table, events.xact_id included,
# pg_read_all_data reads every user's rows, and others read the server's files or signal its
# backends, none of which row security or the service's grants bound. Not pg_database_owner:
# only the database's owner is a member of it, implicitly, and PostgreSQL refuses to make anyone
# else one.
_PREDEFINED_ROLE_SQL = (
    _REACHED  # noqa: S608 - two constants of this module; the name is a bound parameter
    + """
SELECT rolname FROM pg_roles
WHERE oid IN (SELECT oid FROM reached)
  AND rolname LIKE 'pg\\_%%' AND rolname <> 'pg_database_owner'
ORDER BY rolname
LIMIT 1
"""
)


def refuse_unbound_login(
    conn: psycopg.Connection[Any], name: str, *, not_through: str | None = None
) -> bool:
    """Whether the role `name` exists; ValueError when row security would not bind it (what it
    reaches through the role `not_through` aside)."""
    if conn.execute("SELECT FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is None:
        return False
    names = {"name": name, "not_through": not_through}
    unbound = conn.execute(_UNBOUND_LOGIN_SQL, names).fetchone()
    if unbound is not None:
        what = (
            f"{name} is" if unbound[0] == name else f"{name} is a member of {unbound[0]}, which is"
        )
        raise ValueError(
            f"{what} a superuser, a role that bypasses row security, the role migrating or the "
            "tables' owner: the service must connect as a role bound by them; name another"
        )
    predefined = conn.execute(_PREDEFINED_ROLE_SQL, names).fetchone()
    if predefined is not None:
        raise ValueError(
            f"{name} is a member of the predefined role {predefined[0]}, whose privileges row "
            "security and the service's grants do not bound: revoke that membership or name "
            "another login"
        )
    return True


def service_login_statement(
    conn: psycopg.Connection[Any], name: str, password: str, *, exists: bool
) -> sql.Composed:
    """CREATE or ALTER ROLE with the password's SCRAM-SHA-256 verifier, computed here by libpq
    (PQencryptPasswordConn, as psql's \\password does it). PostgreSQL stores a verifier it is
    sent as it is; the password itself never reaches the server, where a statement may be
    logged (log_statement, an error's STATEMENT line) or read in pg_stat_activity."""
    verifier = conn.pgconn.encrypt_password(password.encode(), name.encode(), b"scram-sha-256")
    verb = sql.SQL("ALTER" if exists else "CREATE")
    # Names and verifiers cannot be bound parameters of DDL: psycopg quotes them.
    return sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
        verb, sql.Identifier(name), sql.Literal(verifier.decode())
    )


def owner_engine(settings: Settings) -> Engine:
    """The engine of an operator's command, which reads (or rebuilds) every user's rows: as
    the tables' owner. A role bound by row-level security would see no row at all, and a check
    of nothing would pass: refused (exit 2) instead."""
    engine = create_database_engine(settings.as_owner())
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            bound = conn.execute(text("SELECT row_security_active('events')")).scalar_one()
        if bound:
            engine.dispose()
            fail(
                "this command reads every user's rows: connect as the tables' owner "
                "(set TASKTRAIL_OWNER_DATABASE_URL); the service's role sees one user's only"
            )
    return engine


class EventRate(ProgressColumn):
    """Events per second, as rich measures the task's speed."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:>9,.0f} events/s")


def events_progress(verb: str, *, disable: bool = False) -> Progress:
    """A bar on standard error (only on a terminal): events done, events/s and time left."""
    return Progress(
        TextColumn(verb),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        EventRate(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=disable,
    )
