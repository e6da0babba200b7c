"""The `tasktrail` command: serve, migrate, and mint tokens for trying the API by hand."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import jwt
import typer
import uvicorn
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

from tasktrail.api.auth import AUDITOR_ROLE, is_valid_user_id
from tasktrail.database import create_database_engine
from tasktrail.events.chain import RecordedHead
from tasktrail.events.encoding import parse_timestamp
from tasktrail.events.types import Event
from tasktrail.export import ExportFormat, write_events
from tasktrail.logs import configure_logging
from tasktrail.migrations.runner import upgrade
from tasktrail.projections.rebuild import RebuildAborted, rebuild
from tasktrail.projections.verify import VerifyCount, diff_read_model
from tasktrail.queries.audit import (
    AuditFilter,
    audit_export,
    count_events,
    users_with_events,
    verify_user,
)
from tasktrail.settings import (
    DEV_SECRET_FILE,
    ConfigurationError,
    Settings,
    load_settings,
    with_development_secret,
)

# No locals in tracebacks: a local may hold the secret or a token.
app = typer.Typer(
    help="tasktrail: tasks with an append-only, hash-chained event log.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
audit_app = typer.Typer(help="The audit trail: check the hash chains.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
projections_app = typer.Typer(
    help="The read model, as a projection of the log.", no_args_is_help=True
)
app.add_typer(projections_app, name="projections")

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class EventRate(ProgressColumn):
    """Events per second, as rich measures the task's speed."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:>9,.0f} events/s")


def _settings(*, development_secret: bool) -> Settings:
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
        typer.secho(str(error), err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    return settings


def _migrate(settings: Settings) -> None:
    engine = create_database_engine(settings)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="worker processes")] = 1,
    no_migrate: Annotated[
        bool, typer.Option("--no-migrate", help="do not apply pending migrations first")
    ] = False,
) -> None:
    """Apply pending migrations, then serve the API."""
    settings = _settings(development_secret=True)
    configure_logging(settings.effective_log_format)
    if not no_migrate:
        _migrate(settings)
    uvicorn.run(
        "tasktrail.api.app:create_app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # tasktrail logs each request itself, without the query string
        log_level="info",
        timeout_graceful_shutdown=10,
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations and exit."""
    settings = load_settings()
    configure_logging(settings.effective_log_format)
    _migrate(settings)
    typer.echo("database is at the newest schema revision")


@app.command()
def token(
    user_id: Annotated[str, typer.Argument(help="the user the token speaks for (its sub)")],
    role: Annotated[
        list[str] | None, typer.Option(help=f"a role to grant, e.g. {AUDITOR_ROLE}")
    ] = None,
    ttl: Annotated[str, typer.Option(help="lifetime: 90s, 30m, 1h, 7d")] = "1h",
) -> None:
    """Print a token signed with the configured secret, for trying the API by hand."""
    if not is_valid_user_id(user_id):
        typer.secho(
            "A user id is 1 to 128 of A-Z a-z 0-9 . _ - @ : and not audit, . or ..",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(2)
    match = _DURATION.match(ttl)
    if match is None:
        typer.secho(
            "--ttl takes a number and a unit: 90s, 30m, 1h or 7d", err=True, fg=typer.colors.RED
        )
        raise typer.Exit(2)
    lifetime = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    settings = _settings(development_secret=True)
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": user_id,
        "iat": now,
        "exp": now + int(lifetime.total_seconds()),
    }
    if role:
        claims["role"] = ",".join(role)
    if settings.jwt_issuer is not None:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience is not None:
        claims["aud"] = settings.jwt_audience
    typer.echo(jwt.encode(claims, settings.secret_bytes(), algorithm=settings.jwt_algorithm))


@audit_app.command("verify")
def audit_verify(
    user: Annotated[
        str | None, typer.Option(help="check this user only (default: every user)")
    ] = None,
    expected_head: Annotated[
        str | None,
        typer.Option(help="SEQ:HASH recorded earlier; the chain must still hold it (needs --user)"),
    ] = None,
) -> None:
    """Recompute every data_hash and chain from the stored rows; exit 1 at the first break."""
    expected = None
    if expected_head is not None:
        if user is None:
            typer.secho(
                "--expected-head belongs to one user's chain: give --user too",
                err=True,
                fg=typer.colors.RED,
            )
            raise typer.Exit(2)
        try:
            expected = RecordedHead.parse(expected_head)
        except ValueError as error:
            typer.secho(f"--expected-head: {error}", err=True, fg=typer.colors.RED)
            raise typer.Exit(2) from None
    settings = load_settings()
    engine = create_database_engine(settings)
    checked = 0
    try:
        with engine.connect() as conn:
            users = [user] if user is not None else users_with_events(conn)
            for user_id in users:
                report = verify_user(conn, user_id, expected)
                checked += 1
                if not report.ok:
                    typer.secho(
                        f"BROKEN {user_id}: first bad seq {report.first_bad_seq}: {report.reason} "
                        f"({report.events} events verified before it, head {report.head})",
                        fg=typer.colors.RED,
                    )
                    raise typer.Exit(1)
                typer.echo(f"ok {user_id}: {report.events} events, head {report.head}")
    finally:
        engine.dispose()
    typer.echo(f"all {checked} chains verify")


@audit_app.command("export")
def audit_export_command(
    user: Annotated[str | None, typer.Option(help="only this user's events")] = None,
    since: Annotated[str | None, typer.Option(help="occurred_at at or after (RFC 3339)")] = None,
    until: Annotated[str | None, typer.Option(help="occurred_at before (RFC 3339)")] = None,
    format: Annotated[ExportFormat, typer.Option("--format", help="ndjson or csv")] = (
        ExportFormat.NDJSON
    ),
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="a file (default: standard output)")
    ] = None,
) -> None:
    """Stream the history out in commit-safe order, in constant memory, with a progress bar."""
    try:
        search = AuditFilter(
            user_id=user,
            since=None if since is None else parse_timestamp(since),
            until=None if until is None else parse_timestamp(until),
        )
    except ValueError as error:
        typer.secho(f"--since/--until: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    engine = create_database_engine(load_settings())
    try:
        with engine.connect() as conn:
            total = count_events(conn, search)
        progress = Progress(
            TextColumn("exporting"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("events"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )

        def counted(events: Iterator[Event]) -> Iterator[Event]:
            for event in events:
                yield event
                progress.advance(task)

        with (
            progress,
            output.open("w", encoding="utf-8") if output else nullcontext(sys.stdout) as out,
        ):
            task = progress.add_task("export", total=total)
            write_events(counted(audit_export(engine, search)), out, format)
    finally:
        engine.dispose()


@projections_app.command("rebuild")
def projections_rebuild(
    batch_size: Annotated[
        int, typer.Option(min=100, help="events read and rows written at a time")
    ] = 5_000,
    json_summary: Annotated[
        bool, typer.Option("--json", help="print a machine-readable summary")
    ] = False,
) -> None:
    """Rebuild the tasks table from the log, blue/green, verified before the swap."""
    # Long statements (building indexes, reading the log) are this command's job: no service
    # statement timeout applies. The fence sets its own short lock_timeout.
    settings = load_settings().model_copy(update={"statement_timeout_ms": 24 * 3_600_000})
    engine = create_database_engine(settings)
    try:
        with engine.connect() as conn:
            total = count_events(conn, AuditFilter())
        progress = Progress(
            TextColumn("replaying"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("events"),
            EventRate(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
            disable=json_summary,
        )
        with progress:
            bar = progress.add_task("rebuild", total=total)
            report = rebuild(
                engine,
                batch_size=batch_size,
                on_events=lambda done: progress.update(bar, completed=done),
            )
    except RebuildAborted as error:
        typer.secho(
            f"rebuild aborted, the live table is unchanged: {error}", err=True, fg=typer.colors.RED
        )
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    summary = {
        "events": report.events,
        "tasks": report.tasks,
        "seconds": round(report.seconds, 3),
        "events_per_second": round(report.events_per_second),
        "caught_up_tasks": report.caught_up_tasks,
        "swap_attempts": report.swap_attempts,
        "fence_ms": round(report.fence_ms, 3),
        "checksum": report.checksum,
    }
    if json_summary:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(
            f"rebuilt {report.tasks} tasks from {report.events} events in {report.seconds:.1f} s "
            f"({report.events_per_second:,.0f} events/s); writers fenced {report.fence_ms:.1f} ms"
        )


@projections_app.command("verify")
def projections_verify() -> None:
    """Replay the log and diff it with the tasks table; exit 1 on any drift, naming it."""
    settings = load_settings()
    engine = create_database_engine(settings)
    count = VerifyCount()
    drifts = 0
    try:
        for drift in diff_read_model(engine, count):
            drifts += 1
            typer.secho(drift.describe(), fg=typer.colors.RED)
    finally:
        engine.dispose()
    if drifts:
        typer.secho(f"{drifts} of {count.tasks} tasks differ from the log", fg=typer.colors.RED)
        raise typer.Exit(1)
    typer.echo(f"the read model matches the log: {count.tasks} tasks")


def main() -> None:
    app()
