"""The audit trail from the command line: check the chains, export the history."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from tasktrail.cli.common import events_progress, owner_engine
from tasktrail.database import snapshot_connection
from tasktrail.domain.chain import RecordedHead
from tasktrail.domain.encoding import parse_timestamp
from tasktrail.domain.events import Event
from tasktrail.export import ExportFormat, write_events
from tasktrail.queries.audit import (
    AuditFilter,
    audit_export,
    count_events,
    users_with_events,
    verify_user,
)
from tasktrail.settings import load_settings

audit_app = typer.Typer(help="The audit trail: check the hash chains.", no_args_is_help=True)


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
    engine = owner_engine(load_settings())
    checked = 0
    try:
        # One snapshot for the whole check: a chain and its recorded head are read together.
        with snapshot_connection(engine) as conn:
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
    engine = owner_engine(load_settings())
    try:
        with engine.connect() as conn:
            total = count_events(conn, search)
        progress = events_progress("exporting")

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
