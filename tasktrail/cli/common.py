"""What the commands share: settings with the secret rule, migrating, progress bars, errors."""

from __future__ import annotations

from typing import NoReturn

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


def ensure_service_login(settings: Settings, name: str, password: str) -> None:
    """A login role `name` with this password, member of tasktrail_service (migration 0012):
    made, or given the password again. Needs a database owner allowed to create roles."""
    owner = settings.as_owner()
    if not owner.is_postgres:
        raise ValueError("--service-login is for PostgreSQL: SQLite has no roles")
    # Names and passwords cannot be bound parameters of DDL: psycopg quotes them.
    role, secret = sql.Identifier(name), sql.Literal(password)
    with psycopg.connect(conninfo_of(owner), connect_timeout=owner.connect_timeout) as conn:
        exists = conn.execute(
            "SELECT rolsuper OR rolbypassrls OR rolname = (SELECT tableowner FROM pg_tables"
            " WHERE schemaname = current_schema() AND tablename = 'tasks')"
            " FROM pg_roles WHERE rolname = %s",
            (name,),
        ).fetchone()
        if exists is not None and exists[0]:
            raise ValueError(
                f"{name} is a superuser, bypasses row security or owns the tables: the service "
                "must connect as a role bound by them; name another"
            )
        verb = sql.SQL("ALTER" if exists else "CREATE")
        conn.execute(sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(verb, role, secret))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(SERVICE_ROLE), role))


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
