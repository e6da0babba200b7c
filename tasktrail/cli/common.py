"""What the commands share: settings with the secret rule, migrating, progress bars, errors."""

from __future__ import annotations

from typing import NoReturn

import typer
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

from tasktrail.database import create_database_engine
from tasktrail.migrations.runner import upgrade
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
    engine = create_database_engine(settings)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


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
