"""The `tasktrail` command: serve, migrate, tokens, the audit trail and the read model."""

from __future__ import annotations

import typer

from tasktrail.cli.audit import audit_app
from tasktrail.cli.projections import projections_app
from tasktrail.cli.service import db_app, serve, token

# No locals in tracebacks: a local may hold the secret or a token.
app = typer.Typer(
    help="tasktrail: tasks with an append-only, hash-chained event log.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command()(serve)
app.command()(token)
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(projections_app, name="projections")


def main() -> None:
    app()
