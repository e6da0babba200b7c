"""The read model from the command line: rebuild it from the log, verify it against the log."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from tasktrail.cli.common import events_progress, owner_engine
from tasktrail.projections.rebuild import RebuildAborted, rebuild
from tasktrail.projections.verify import VerifyCount, diff_read_model
from tasktrail.queries.audit import AuditFilter, count_events
from tasktrail.settings import load_settings

projections_app = typer.Typer(
    help="The read model, as a projection of the log.", no_args_is_help=True
)


@projections_app.command("rebuild")
def projections_rebuild(
    batch_size: Annotated[
        int, typer.Option(min=100, help="events read and rows written at a time")
    ] = 5_000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="processes folding the log at once, on PostgreSQL (SQLite uses one); "
            "default: one a CPU, at most 8 (each scans the whole log for its share)",
        ),
    ] = min(os.cpu_count() or 1, 8),
    json_summary: Annotated[
        bool, typer.Option("--json", help="print a machine-readable summary")
    ] = False,
) -> None:
    """Rebuild the tasks table from the log, blue/green, verified before the swap."""
    # Long statements (building indexes, reading the log) are this command's job: no service
    # statement timeout applies. The fence sets its own short lock_timeout.
    settings = load_settings().model_copy(update={"statement_timeout_ms": 24 * 3_600_000})
    engine = owner_engine(settings)
    try:
        with engine.connect() as conn:
            total = count_events(conn, AuditFilter())
        progress = events_progress("replaying", disable=json_summary)
        with progress:
            bar = progress.add_task("rebuild", total=total)
            report = rebuild(
                engine,
                batch_size=batch_size,
                workers=workers,
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
        "workers": report.workers,
        "phases": {name: round(seconds, 3) for name, seconds in report.phases.items()},
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
    # The log and the table are read side by side, on two connections, whatever the
    # service's own pool size.
    settings = settings.model_copy(update={"pool_size": max(settings.pool_size, 2)})
    engine = owner_engine(settings)
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
