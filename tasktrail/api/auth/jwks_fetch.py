"""Fetching the JWK set at TASKTRAIL_JWKS_URL, off the event loop, and keeping it fresh.

At start, every few minutes, and when a token names a `kid` the set lacks (a key rotation), at
most once per 30 s. A failed or garbled fetch keeps the last good set.
"""

from __future__ import annotations

import http.client
import ipaddress
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

import anyio
import anyio.to_thread
import structlog

from tasktrail import __version__
from tasktrail.api.auth.deadline_get import DeadlineGet
from tasktrail.api.auth.jwks import JwkSetError, JwkSetSource, check_jwks_url, parse_jwk_set

FETCH_TIMEOUT_SECONDS = 5.0
MAX_JWKS_BYTES = 1024 * 1024
# An unknown kid may trigger a fetch, but no more often than this: a stream of tokens with made-up
# kids must not turn the service into a load generator against the auth server.
REFETCH_INTERVAL_SECONDS = 30.0
REFRESH_PERIOD_SECONDS = 300.0

_log = structlog.get_logger("tasktrail.jwks")


class RemoteJwkSet:
    """Keeps a `JwkSetSource` filled from a URL; every fetch runs in a worker thread."""

    def __init__(
        self,
        url: str,
        source: JwkSetSource,
        *,
        timeout: float = FETCH_TIMEOUT_SECONDS,
        max_bytes: int = MAX_JWKS_BYTES,
        refetch_interval: float = REFETCH_INTERVAL_SECONDS,
        refresh_period: float = REFRESH_PERIOD_SECONDS,
        on_keys_removed: Callable[[set[str]], None] | None = None,
    ) -> None:
        check_jwks_url(url)
        self.url = url
        self.source = source
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._refetch_interval = refetch_interval
        self._refresh_period = refresh_period
        self._on_keys_removed = on_keys_removed
        self._last_attempt = -float("inf")
        self._loaded_at: float | None = None
        self._fetching: anyio.Event | None = None
        self._last_fetch_ok = False
        # Fetches run one at a time, outside the threads the database routes wait for.
        self._limiter = anyio.CapacityLimiter(1)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
            _log.warning(
                "TASKTRAIL_JWKS_URL is plain http: anyone on the path could swap the keys; "
                "use https",
                url=url,
            )

    @property
    def loaded(self) -> bool:
        return self._loaded_at is not None

    async def keep_fresh(self) -> None:
        """The background refresh, after the first fetch: every few minutes, every 30 s while
        the fetches fail."""
        while True:
            await anyio.sleep(
                self._refresh_period if self._last_fetch_ok else self._refetch_interval
            )
            await self.refresh()

    async def refresh_for_unknown_kid(self) -> bool:
        """Fetch again for a token whose kid the set lacks, unless a fetch was tried too recently.

        True when a fetch completed successfully meanwhile (the caller verifies once more).
        Requests that arrive while a fetch is under way wait for that one instead of starting
        another.
        """
        if self._fetching is None and (
            time.monotonic() - self._last_attempt < self._refetch_interval
        ):
            return False
        return await self.refresh()

    async def refresh(self) -> bool:
        """Fetch and hold the set now (or wait for the fetch under way); True when it succeeded."""
        if self._fetching is not None:
            await self._fetching.wait()
            return self._last_fetch_ok
        self._fetching = done = anyio.Event()
        self._last_attempt = time.monotonic()
        try:
            # Shielded: a request that gave up must not cancel the fetch others wait for; the
            # timeout still bounds it.
            with anyio.CancelScope(shield=True):
                self._last_fetch_ok = await self._fetch_and_hold()
        finally:
            self._fetching = None
            done.set()
        return self._last_fetch_ok

    async def _fetch_and_hold(self) -> bool:
        try:
            # One deadline for the whole download. At it the fetch stops waiting, and leaving
            # the DeadlineGet shuts its socket down: the thread given up on ends then too,
            # instead of reading on while a server drips its answer.
            with anyio.fail_after(self._timeout), DeadlineGet(self._timeout) as download:
                raw = await anyio.to_thread.run_sync(
                    self._download, download, abandon_on_cancel=True, limiter=self._limiter
                )
            keys = parse_jwk_set(raw, origin=self.url)
        # OSError covers urllib's URLError and HTTPError, ValueError our JwkSetError and a host
        # name that cannot be encoded.
        except (TimeoutError, OSError, ValueError, http.client.HTTPException) as error:
            _log.error(
                "the JWK set could not be fetched; the last good set stays in use"
                if self.loaded
                else "the JWK set could not be fetched; tokens signed with its keys are refused "
                "until it is",
                url=self.url,
                error=str(error) or error.__class__.__name__,
                kids=self.source.kids,
            )
            return False
        before = set(self.source.kids)
        withdrawn = self.source.replace(keys)
        if withdrawn and self._on_keys_removed is not None:
            # Told the kids that are gone or name another key now: tokens they verified are
            # checked afresh, and the live streams opened with those tokens end.
            self._on_keys_removed(withdrawn)
        if self._loaded_at is None or withdrawn or set(keys) != before:
            _log.info(
                "loaded the JWK set", url=self.url, kids=list(keys), removed=sorted(withdrawn)
            )
        self._loaded_at = time.monotonic()
        return True

    def _download(self, download: DeadlineGet) -> bytes:
        request = urllib.request.Request(  # noqa: S310 (check_jwks_url allows http(s) only)
            self.url,
            headers={"Accept": "application/json", "User-Agent": f"tasktrail/{__version__}"},
        )
        try:
            raw = download.run(request, self._max_bytes + 1)
        except urllib.error.HTTPError as error:
            error.close()  # it holds the connection open otherwise
            raise JwkSetError(f"the server answered {error.code} {error.reason}") from None
        if len(raw) > self._max_bytes:
            raise JwkSetError(f"the answer is over {self._max_bytes} bytes")
        return raw


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
