"""Configuration, read once at start from the environment (and a `.env` file)."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///tasktrail.db"
DEV_SECRET_FILE = Path(".tasktrail-secret")
MIN_SECRET_BYTES = 32
# RFC 7518 §3.2: an HMAC key MUST be at least as long as the hash output.
SECRET_BYTES_FOR = {"HS256": 32, "HS384": 48, "HS512": 64}
METRICS_PORT = "TASKTRAIL_METRICS_PORT"


class ConfigurationError(Exception):
    """The configuration cannot work; the message says what to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, populate_by_name=True
    )

    database_url: str = Field(DEFAULT_DATABASE_URL, validation_alias="TASKTRAIL_DATABASE_URL")
    # The tables' owner, on PostgreSQL: migrations and the operator's commands (rebuild, verify,
    # export) connect with it, the service with `database_url` (a member of tasktrail_service,
    # bound by row-level security). Unset, both use `database_url`.
    owner_database_url: str | None = Field(None, validation_alias="TASKTRAIL_OWNER_DATABASE_URL")
    auth_secret: SecretStr | None = Field(None, validation_alias="BETTER_AUTH_SECRET")
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = Field(
        "HS256", validation_alias="TASKTRAIL_JWT_ALGORITHM"
    )
    jwt_issuer: str | None = Field(None, validation_alias="TASKTRAIL_JWT_ISSUER")
    jwt_audience: str | None = Field(None, validation_alias="TASKTRAIL_JWT_AUDIENCE")
    jwt_leeway: int = Field(30, ge=0, validation_alias="TASKTRAIL_JWT_LEEWAY")
    jwks_url: str | None = Field(None, validation_alias="TASKTRAIL_JWKS_URL")
    jwks_file: Path | None = Field(None, validation_alias="TASKTRAIL_JWKS_FILE")
    cors_origins: str | None = Field(None, validation_alias="TASKTRAIL_CORS_ORIGINS")
    pool_size: int = Field(10, ge=1, le=200, validation_alias="TASKTRAIL_POOL_SIZE")
    log_format: Literal["text", "json"] | None = Field(
        None, validation_alias="TASKTRAIL_LOG_FORMAT"
    )
    # Seconds; every wait on the database is bounded so that an outage is a 503, not a hang.
    pool_timeout: float = Field(5.0, gt=0, validation_alias="TASKTRAIL_POOL_TIMEOUT")
    connect_timeout: int = Field(5, ge=1, validation_alias="TASKTRAIL_CONNECT_TIMEOUT")
    body_timeout: float = Field(30.0, gt=0, validation_alias="TASKTRAIL_BODY_TIMEOUT")
    statement_timeout_ms: int = Field(
        10_000, ge=100, validation_alias="TASKTRAIL_STATEMENT_TIMEOUT_MS"
    )
    # Seconds a request may wait on the database, counted on this side: a database that hangs
    # (a partition, a stopped server) sends no error, so past this the connection is cut and the
    # answer is 503. statement_timeout is the server's own bound, useless when it does not run.
    database_deadline: float = Field(5.0, gt=0, validation_alias="TASKTRAIL_DATABASE_DEADLINE")
    # The live feed (Server-Sent Events): a comment every so many seconds keeps proxies from
    # closing an idle stream; each user may hold this many streams per process; SQLite's
    # streams learn of new events by polling this often (PostgreSQL's are woken by NOTIFY).
    sse_heartbeat_seconds: float = Field(
        15.0, gt=0, validation_alias="TASKTRAIL_SSE_HEARTBEAT_SECONDS"
    )
    sse_streams_per_user: int = Field(5, ge=1, validation_alias="TASKTRAIL_SSE_STREAMS_PER_USER")
    sse_poll_seconds: float = Field(0.5, gt=0, validation_alias="TASKTRAIL_SSE_POLL_SECONDS")
    # Each user's fair share of a process (api/http/fair_share.py): requests served at once, more
    # waiting in line, and an optional rate (requests a second; 0 is none) with its burst.
    # Each request's line and headers: at most so many bytes (431), complete within so many
    # seconds of the connection or of their first byte (408). api/http/bounded_http.py.
    header_bytes: int = Field(64 * 1024, ge=4096, validation_alias="TASKTRAIL_HEADER_BYTES")
    header_timeout: float = Field(10.0, gt=0, validation_alias="TASKTRAIL_HEADER_TIMEOUT")
    user_concurrency: int = Field(6, ge=1, validation_alias="TASKTRAIL_USER_CONCURRENCY")
    user_queue: int = Field(64, ge=0, validation_alias="TASKTRAIL_USER_QUEUE")
    user_rate: float = Field(0.0, ge=0, validation_alias="TASKTRAIL_USER_RATE")
    user_burst: int | None = Field(None, ge=1, validation_alias="TASKTRAIL_USER_BURST")
    # /metrics needs no token: set a port of its own and it is answered there only (a 404 on the
    # API's port), to keep it off a published port. The host defaults to serve's --host.
    metrics_port: int | None = Field(None, ge=1, le=65535, validation_alias=METRICS_PORT)
    metrics_host: str | None = Field(None, validation_alias="TASKTRAIL_METRICS_HOST")

    @field_validator("database_url", "owner_database_url")
    @classmethod
    def _normalise_database_url(cls, url: str | None) -> str | None:
        """Both `postgres://` and `postgresql://` mean psycopg 3 (SQLAlchemy may pick psycopg2)."""
        if url is None:
            return None
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    def as_owner(self) -> Settings:
        """These settings, connecting as the tables' owner."""
        if self.owner_database_url is None:
            return self
        return self.model_copy(update={"database_url": self.owner_database_url})

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")

    @property
    def cors_origin_list(self) -> list[str]:
        """`TASKTRAIL_CORS_ORIGINS`, comma separated, e.g. `https://app.example.com`."""
        if not self.cors_origins:
            return []
        return [
            origin.strip().rstrip("/") for origin in self.cors_origins.split(",") if origin.strip()
        ]

    @property
    def uses_embedded_default(self) -> bool:
        return self.database_url == DEFAULT_DATABASE_URL

    @property
    def effective_log_format(self) -> Literal["text", "json"]:
        if self.log_format is not None:
            return self.log_format
        return "text" if sys.stderr.isatty() else "json"

    def secret_bytes(self) -> bytes:
        """The shared secret, checked; `ConfigurationError` says what to do when it is unusable."""
        if self.auth_secret is None:
            raise ConfigurationError(
                "BETTER_AUTH_SECRET is not set: set it to the secret your auth system signs "
                f"tokens with ({MIN_SECRET_BYTES} bytes or more)."
            )
        secret = self.auth_secret.get_secret_value().encode()
        needed = SECRET_BYTES_FOR[self.jwt_algorithm]
        if len(secret) < needed:
            raise ConfigurationError(
                f"BETTER_AUTH_SECRET is {len(secret)} bytes long; with {self.jwt_algorithm} it "
                f"must be at least {needed} bytes (RFC 7518 §3.2). Generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(64))'`."
            )
        return secret


def load_settings() -> Settings:
    return Settings()


def with_development_secret(settings: Settings) -> tuple[Settings, bool]:
    """On the embedded default only, fill a missing secret from `.tasktrail-secret`.

    Returns the settings and whether the secret file was created just now. A newcomer gets a
    working service with one command; a real deployment (any other database) must say its secret.
    """
    if settings.auth_secret is not None or not settings.uses_embedded_default:
        return settings, False
    created = False
    if not DEV_SECRET_FILE.exists():
        try:
            fd = os.open(DEV_SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it between our check and our open: use theirs
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(64))  # long enough for HS512 too
            created = True
    secret = DEV_SECRET_FILE.read_text().strip()
    return settings.model_copy(update={"auth_secret": SecretStr(secret)}), created
