"""Running the service: serve, migrate, and mint tokens for trying the API by hand."""

from __future__ import annotations

import os
import re
import time
from datetime import timedelta
from typing import Annotated

import jwt
import typer
import uvicorn

from tasktrail.api.auth.jwks import check_jwks_settings
from tasktrail.api.auth.tokens import AUDITOR_ROLE, is_valid_user_id
from tasktrail.api.http.bounded_http import BoundedHttpToolsProtocol
from tasktrail.cli.common import (
    SERVICE_PASSWORD,
    check_service_login,
    ensure_service_login,
    fail,
    migrate,
    service_settings,
)
from tasktrail.cli.listeners import bind_listener, run_server
from tasktrail.cli.multiprocess import metrics_directory
from tasktrail.logs import configure_logging
from tasktrail.row_security import SERVICE_ROLE
from tasktrail.settings import METRICS_PORT, ConfigurationError, load_settings

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="worker processes")] = 1,
    no_migrate: Annotated[
        bool, typer.Option("--no-migrate", help="do not apply pending migrations first")
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="serve /metrics on this port only, not on --port [TASKTRAIL_METRICS_PORT]",
        ),
    ] = None,
    metrics_host: Annotated[
        str | None,
        typer.Option(
            help="address of the metrics port; --host by default [TASKTRAIL_METRICS_HOST]"
        ),
    ] = None,
) -> None:
    """Apply pending migrations, then serve the API."""
    settings = service_settings(development_secret=True)
    configure_logging(settings.effective_log_format)
    try:
        check_jwks_settings(settings)  # a clear refusal here, not a traceback from the workers
    except ConfigurationError as error:
        fail(str(error))
    metrics_port = metrics_port or settings.metrics_port
    if metrics_port is not None and metrics_port == port:
        fail("--metrics-port must differ from --port: /metrics is answered there only")
    if not no_migrate:
        migrate(settings)
    metrics = None
    if metrics_port is not None:
        os.environ[METRICS_PORT] = str(metrics_port)  # the app of every worker reads it
        metrics_host = metrics_host or settings.metrics_host or host
        try:
            metrics = bind_listener(metrics_host, metrics_port)
        except OSError as error:
            fail(f"cannot listen for /metrics on {metrics_host} port {metrics_port}: {error}")
    # Several workers report the whole service through one metrics directory (cli/multiprocess.py).
    with metrics_directory(workers):
        config = uvicorn.Config(
            "tasktrail.api.app:create_app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,  # tasktrail logs each request itself, without the query string
            log_level="info",
            timeout_graceful_shutdown=10,
            # A spawned worker answers the supervisor's ping only once it has imported the app:
            # seconds on a small machine with several workers starting at once. uvicorn's 5 s
            # default killed and restarted workers that were merely starting.
            timeout_worker_healthcheck=30,
            http=BoundedHttpToolsProtocol,  # a bound on each request's head: size and time
            # Each request's task starts in a fresh context: a pipelined request starts from the
            # previous one's response, whose context (its row-security scope) it would copy.
            reset_contextvars=True,
        )
        run_server(config, metrics)


@db_app.command("upgrade")
def db_upgrade(
    service_login: Annotated[
        str | None,
        typer.Option(
            help="then make this login role a member of tasktrail_service (PostgreSQL), its "
            f"password from {SERVICE_PASSWORD}: the role the service connects as"
        ),
    ] = None,
) -> None:
    """Apply pending migrations (as the owner) and exit."""
    settings = load_settings()
    configure_logging(settings.effective_log_format)
    password = os.environ.get(SERVICE_PASSWORD)
    if service_login is not None:
        # Refused before the migrations run: a refusal changes nothing.
        if not password:
            fail(f"--service-login needs its password in {SERVICE_PASSWORD}")
        try:
            check_service_login(settings, service_login)
        except ValueError as error:
            fail(str(error))
    migrate(settings)
    typer.echo("database is at the newest schema revision")
    if service_login is not None and password:
        try:
            ensure_service_login(settings, service_login, password)
        except ValueError as error:
            fail(str(error))
        typer.echo(f"{service_login} may log in as the service (member of {SERVICE_ROLE})")


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
    settings = service_settings(development_secret=True)
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
