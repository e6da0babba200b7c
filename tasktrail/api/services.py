"""What one app is made of, typed: the parts every layer of the API reaches through the request.

`create_app` builds them once and keeps them as `app.state.services`; a route, a dependency or a
middleware reads them with `services(request)`, by name and with their types, instead of picking
untyped attributes off Starlette's `State`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from starlette.applications import Starlette
    from starlette.requests import HTTPConnection

    from tasktrail.api.auth.jwks_fetch import RemoteJwkSet
    from tasktrail.api.auth.tokens import TokenVerifier
    from tasktrail.api.http.fair_share import FairShare
    from tasktrail.api.http.metrics import Metrics
    from tasktrail.api.live.hub import FeedHub
    from tasktrail.pg_pool import AsyncPool
    from tasktrail.settings import Settings
    from tasktrail.storage.port import WritePort


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    settings: Settings
    engine: Engine  # the sync engine: SQLite, and PostgreSQL's routes off the hot path
    pool: AsyncPool | None  # PostgreSQL's async pool for the hot path; None on SQLite
    writes: WritePort  # where a write is kept: the engine's adapter
    verifier: TokenVerifier
    cursor_key: bytes  # signs the list's cursors (derived from the secret, never the secret)
    feed_hub: FeedHub
    fair_share: FairShare
    remote_jwks: RemoteJwkSet | None  # TASKTRAIL_JWKS_URL's set, kept fresh
    metrics: Metrics


def services(connection: HTTPConnection) -> Services:
    """The app's parts, for a request (or any connection) it serves."""
    found: Services = connection.app.state.services
    return found


def services_of_app(app: Starlette) -> Services:
    """The same, for the app itself (tests, and what runs outside a request)."""
    found: Services = app.state.services
    return found
