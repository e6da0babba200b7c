"""The app factory: one engine, one token verifier, the routers and the error handlers."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from sqlalchemy import Engine, exc, text

from tasktrail import __version__
from tasktrail.api.auth.jwks import JwkSetSource, jwk_set_from_file
from tasktrail.api.auth.jwks_fetch import REFETCH_INTERVAL_SECONDS, RemoteJwkSet
from tasktrail.api.auth.tokens import KeySource, SharedSecret, TokenVerifier
from tasktrail.api.contract.openapi import finish_document
from tasktrail.api.contract.problems import install_problem_handlers
from tasktrail.api.http.fair_share import FairShare
from tasktrail.api.http.head import HeadAsGetMiddleware
from tasktrail.api.http.metrics import Metrics
from tasktrail.api.http.metrics_listener import MetricsListenerMiddleware
from tasktrail.api.http.request_context import RequestContextMiddleware, UnhandledErrorMiddleware
from tasktrail.api.http.supervisor_watch import stopping_when_the_supervisor_is_gone
from tasktrail.api.live.hub import (
    FeedHub,
    end_streams_on_shutdown,
    postgres_announcer,
    postgres_listener,
    sqlite_poller,
)
from tasktrail.api.routes import audit, events, health, task_list, tasks
from tasktrail.api.routes import metrics as metrics_route
from tasktrail.api.services import Services
from tasktrail.database import DatabaseUnavailable, create_database_engine, read_connection
from tasktrail.logs import configure_logging
from tasktrail.pg_pool import AsyncPool, conninfo_of
from tasktrail.queries.cursor import cursor_key
from tasktrail.row_security import ROLE_CHECK_SQL, role_problem
from tasktrail.settings import Settings, load_settings, with_development_secret
from tasktrail.storage.keys import purge_expired
from tasktrail.storage.port import key_wait_ms
from tasktrail.storage.postgres.adapter import PostgresWrites
from tasktrail.storage.sqlite.adapter import SqliteWrites

SWEEP_SECONDS = 600
_log = structlog.get_logger("tasktrail.app")

# What a browser's script may read of a response (CORS hides everything else).
EXPOSED_HEADERS = (
    "ETag",
    "Link",
    "Location",
    "X-Total-Count",
    "X-Request-ID",
    "Idempotent-Replayed",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
)

DESCRIPTION = """\
Tasks whose every change is an event in an append-only, per-user hash-chained log.

Every `/api/...` route needs `Authorization: Bearer <JWT>`: HS256 with the shared secret, or,
when a JWK set is configured, signed by one of its keys (chosen by `kid`, as Better Auth's JWT
plugin issues them). Errors are RFC 9457 problem details (`application/problem+json`); there is
no 400. Single-task responses carry `ETag: "<version>"`; writes take `If-Match`.
"""


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    jwks_refetch_interval: float = REFETCH_INTERVAL_SECONDS,
) -> FastAPI:
    """Build the service. Refuses to start (ConfigurationError) without a usable secret, or
    with a TASKTRAIL_JWKS_FILE that holds no usable key."""
    sources: list[KeySource] = [SharedSecret(settings.secret_bytes(), settings.jwt_algorithm)]
    if settings.jwks_file is not None:
        sources.append(jwk_set_from_file(settings.jwks_file))
    fetched_keys = JwkSetSource()  # empty until the lifespan fetches TASKTRAIL_JWKS_URL
    if settings.jwks_url is not None:
        sources.append(fetched_keys)
    verifier = TokenVerifier(
        sources,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway=settings.jwt_leeway,
    )

    def keys_withdrawn(kids: set[str]) -> None:
        # Tokens these keys verified are checked afresh, and the live streams they opened end
        # (feed_hub is made below; a refresh runs only once the app is serving).
        verifier.forget_verified()
        feed_hub.end_streams_of_keys(kids)

    remote_jwks = (
        None
        if settings.jwks_url is None
        else RemoteJwkSet(
            settings.jwks_url,
            fetched_keys,
            refetch_interval=jwks_refetch_interval,
            on_keys_removed=keys_withdrawn,
        )
    )
    own_engine = engine is None
    database = create_database_engine(settings) if engine is None else engine
    # PostgreSQL's hot path runs on the event loop through psycopg's async pool (pg_pool.py);
    # the rest, and everything on SQLite, runs on the sync engine in worker threads.
    pool = AsyncPool(settings) if settings.is_postgres else None
    feed_hub = FeedHub(
        postgres_listener(conninfo_of(settings), settings.connect_timeout)
        if settings.is_postgres
        else sqlite_poller(database, settings.sse_poll_seconds),
        announcer=None if pool is None else postgres_announcer(pool),
        streams_per_user=settings.sse_streams_per_user,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # As many threads for the blocking routes as the pool has connections: a request that
        # gets a thread gets a connection at once, and the rest wait in line for a thread
        # instead of timing out on the pool while forty threads share one GIL.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.pool_size + 2
        end_streams_on_shutdown(feed_hub)
        with stopping_when_the_supervisor_is_gone():
            if remote_jwks is not None:
                # Fetched before the first request; when the URL does not answer, the service
                # starts anyway (shared-secret tokens work) and keeps trying in the background.
                await remote_jwks.refresh()
            async with anyio.create_task_group() as background:
                background.start_soon(sweep_idempotency_keys, database)
                if settings.is_postgres:
                    background.start_soon(warn_of_the_database_role, database)
                if remote_jwks is not None:
                    background.start_soon(remote_jwks.keep_fresh)
                yield
                background.cancel_scope.cancel()
        await feed_hub.aclose()
        if pool is not None:
            await pool.close()
        if own_engine:
            database.dispose()
        metrics.process_exiting()

    app = FastAPI(
        title="tasktrail",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # /api/u/tasks/ is not /api/u/tasks: a 404 problem, not a redirect built from Host.
        redirect_slashes=False,
    )
    cursor_signing_key = cursor_key(settings.secret_bytes())
    fair_share = FairShare(
        concurrency=settings.user_concurrency,
        queue=settings.user_queue,
        rate=settings.user_rate,
        # Two seconds' worth by default: a page load's burst of requests passes.
        burst=settings.user_burst or max(1, math.ceil(settings.user_rate * 2)),
    )
    metrics = Metrics(database, pool)
    # The audit routes first: /api/audit/events must not be read as the feed of a user "audit".
    routers = (
        health.router,
        metrics_route.router,
        audit.router,
        task_list.router,
        tasks.router,
        events.router,
    )
    for router in routers:
        app.include_router(router)
    install_problem_handlers(app, [route for router in routers for route in router.routes])
    app.state.services = Services(
        settings=settings,
        engine=database,
        pool=pool,
        writes=(
            SqliteWrites(database, settings.database_deadline)
            if pool is None
            else PostgresWrites(pool, wait_ms=key_wait_ms(settings.database_deadline))
        ),
        verifier=verifier,
        cursor_key=cursor_signing_key,
        feed_hub=feed_hub,
        fair_share=fair_share,
        remote_jwks=remote_jwks,
        metrics=metrics,
    )
    # Added innermost first. From the outside: request id and log line (every response has an
    # id), then CORS (so errors, 500s included, carry its headers), then the last-resort 500,
    # then HEAD served as a GET without its body, then (with a metrics port) /metrics reached
    # on that port only.
    if settings.metrics_port is not None:
        app.add_middleware(MetricsListenerMiddleware, port=settings.metrics_port)
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(UnhandledErrorMiddleware)
    origins = settings.cors_origin_list
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "If-Match",
                "If-None-Match",
                "Idempotency-Key",
                "X-Request-ID",
                "Last-Event-ID",
            ],
            expose_headers=list(EXPOSED_HEADERS),
            max_age=600,
        )
    app.add_middleware(RequestContextMiddleware, metrics=metrics, fair_share=fair_share)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            finish_document(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


async def warn_of_the_database_role(engine: Engine) -> None:
    """Say at start when the service's PostgreSQL role bypasses row security (the owner's) or
    is not in tasktrail_service (and so sees nothing): both work, silently, otherwise."""
    try:
        bound, member = await anyio.to_thread.run_sync(_role_facts, engine)
    except (DatabaseUnavailable, exc.DBAPIError) as error:
        _log.warning("could not check the database role", error=str(error))
        return
    problem = role_problem(bound, member)
    if problem is not None:
        _log.warning(problem)


def _role_facts(engine: Engine) -> tuple[bool, bool | None]:
    with read_connection(engine) as conn:
        bound, member = conn.execute(text(ROLE_CHECK_SQL)).one()
        return bool(bound), member


async def sweep_idempotency_keys(engine: Engine) -> None:
    """Purge expired idempotency keys now and then, off the event loop; survive outages."""
    while True:
        try:
            purged = await anyio.to_thread.run_sync(purge_expired, engine)
        except (DatabaseUnavailable, exc.DBAPIError) as error:
            _log.warning("idempotency key sweep failed; retrying later", error=str(error))
        else:
            if purged:
                _log.info("purged expired idempotency keys", count=purged)
        await anyio.sleep(SWEEP_SECONDS)


def create_app_from_environment() -> FastAPI:
    """uvicorn's factory: settings from the environment, each worker with its own engine."""
    settings, _ = with_development_secret(load_settings())
    configure_logging(settings.effective_log_format)
    return create_app(settings)
