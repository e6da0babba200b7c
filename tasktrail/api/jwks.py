"""Tokens signed with the keys of a JWK set (RFC 7517), as Better Auth's JWT plugin issues them.

`JwkSetSource` is a key source of `TokenVerifier`: it resolves a token's `kid` in the set it holds,
in memory, and never does I/O. The set comes from `TASKTRAIL_JWKS_FILE` (read once, at start) or
from `TASKTRAIL_JWKS_URL`, which `RemoteJwkSet` fetches off the event loop: at start, every few
minutes, and when a token names a `kid` the set lacks (a key rotation), at most once per 30 s. A
failed or garbled fetch keeps the last good set.

Each key is used with exactly one algorithm (RFC 8725 §3.1): its `alg` when it has one, else the
one its type implies (PyJWT's `PyJWK` rule: OKP Ed25519 is EdDSA, EC P-256 ES256, P-384 ES384,
P-521 ES512, RSA RS256). Keys that cannot verify safely are left out of the set with a warning.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import jwt
import structlog

from tasktrail import __version__
from tasktrail.api.auth import AuthenticationError, VerificationKey
from tasktrail.settings import ConfigurationError, Settings

FETCH_TIMEOUT_SECONDS = 5.0
MAX_JWKS_BYTES = 1024 * 1024
# An unknown kid may trigger a fetch, but no more often than this: a stream of tokens with made-up
# kids must not turn the service into a load generator against the auth server.
REFETCH_INTERVAL_SECONDS = 30.0
REFRESH_PERIOD_SECONDS = 300.0
# Public-key algorithms only: a symmetric ("oct") key in a published set is someone's leaked
# secret, and verifying with it would let anyone who read the set sign tokens.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"EdDSA", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth")
_PUBLIC_KEY_TYPES = frozenset({"OKP", "EC", "RSA"})

_log = structlog.get_logger("tasktrail.jwks")


class JwkSetError(ValueError):
    """The document is not a JWK set with at least one usable key."""


def parse_jwk_set(raw: bytes, origin: str) -> dict[str, VerificationKey]:
    """The usable keys of a JWK set document by kid; each skipped key is logged with its reason."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise JwkSetError(f"{origin} is not JSON ({error})") from None
    except RecursionError:
        raise JwkSetError(f"{origin} is JSON nested too deep to be a JWK set") from None
    members = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(members, list):
        raise JwkSetError(f'{origin} is not a JWK set: it has no "keys" list')
    keys: dict[str, VerificationKey] = {}
    for position, member in enumerate(members):
        kid = member.get("kid") if isinstance(member, dict) else None
        try:
            if not isinstance(member, dict):
                raise JwkSetError("it is not a JSON object")
            key = _usable_key(member)
            if not isinstance(kid, str) or not kid:
                raise JwkSetError("it has no kid, so no token can name it")
            if kid in keys:
                raise JwkSetError("an earlier key has the same kid")
        except (JwkSetError, jwt.PyJWTError) as error:
            _log.warning(
                "a key of the JWK set is skipped",
                origin=origin,
                position=position,
                kid=kid if isinstance(kid, str) else None,
                reason=str(error),
            )
            continue
        keys[kid] = key
    if not keys:
        raise JwkSetError(f"{origin} holds no usable key")
    return keys


def _usable_key(member: dict[str, Any]) -> VerificationKey:
    if member.get("use", "sig") != "sig":
        raise JwkSetError(f"its use is {member.get('use')!r}, not 'sig'")
    if any(name in member for name in _PRIVATE_MEMBERS):
        raise JwkSetError("it holds private key material, which a published set must never hold")
    kty, alg = member.get("kty"), member.get("alg")
    if not isinstance(kty, str) or kty not in _PUBLIC_KEY_TYPES:
        raise JwkSetError(f"its kty {kty!r} is not one of {', '.join(sorted(_PUBLIC_KEY_TYPES))}")
    if alg is not None and (not isinstance(alg, str) or alg not in ASYMMETRIC_ALGORITHMS):
        raise JwkSetError(f"its alg {alg!r} is not a public-key signature algorithm")
    try:
        jwk = jwt.PyJWK(member)  # the key's alg, or the one its kty and crv imply
    except KeyError as missing:  # a member the key type needs, which PyJWT does not check first
        raise JwkSetError(f"it lacks the {missing} member") from None
    if jwk.algorithm_name not in ASYMMETRIC_ALGORITHMS:
        raise JwkSetError(f"its algorithm {jwk.algorithm_name} is not a public-key signature")
    # The checks PyJWT makes at each verification, made once here: an EC key on the curve its
    # algorithm names, an RSA key of 2048 bits or more.
    jwk.Algorithm.prepare_key(jwk.key)
    too_short = jwk.Algorithm.check_key_length(jwk.key)
    if too_short is not None:
        raise JwkSetError(too_short)
    return VerificationKey(jwk, jwk.algorithm_name)


class JwkSetSource:
    """The keys of one JWK set, chosen by the token's `kid`; resolving is a dictionary lookup."""

    def __init__(self, keys: Mapping[str, VerificationKey] | None = None) -> None:
        self._keys: dict[str, VerificationKey] = dict(keys or {})

    @property
    def kids(self) -> list[str]:
        return list(self._keys)

    def replace(self, keys: Mapping[str, VerificationKey]) -> set[str]:
        """Hold this set from now on; returns the kids that are gone."""
        gone = set(self._keys) - set(keys)
        self._keys = dict(keys)  # one assignment: a concurrent resolve sees the old or the new set
        return gone

    def resolve(self, header: dict[str, Any]) -> VerificationKey | None:
        kid = header.get("kid")
        if not isinstance(kid, str):
            return None  # the keys of a set are chosen by kid alone
        key = self._keys.get(kid)
        if key is None:
            return None
        if header.get("alg") != key.algorithm:
            # Pinned: the key's one algorithm, never another (an HMAC keyed with this public
            # key, or another curve's signature).
            raise AuthenticationError(
                f"the token is signed with {header.get('alg')}, but its key (kid {kid!r}) "
                f"verifies {key.algorithm} only"
            )
        return key


def jwk_set_from_file(path: Path) -> JwkSetSource:
    """The set in `TASKTRAIL_JWKS_FILE`; ConfigurationError when it cannot be used."""
    try:
        raw = path.read_bytes()
        keys = parse_jwk_set(raw, origin=str(path))
    except (OSError, JwkSetError) as error:
        raise ConfigurationError(
            f"TASKTRAIL_JWKS_FILE cannot be used: {error}. Point it at a JWK set "
            '({"keys": [...]}) with at least one public signing key.'
        ) from None
    _log.info("loaded the JWK set", origin=str(path), kids=list(keys))
    return JwkSetSource(keys)


def check_jwks_url(url: str) -> None:
    """Only http(s) is fetched (urllib would also open file: and ftp: URLs)."""
    try:
        parts = urllib.parse.urlsplit(url)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError:
        usable = False
    if not usable:
        raise ConfigurationError(
            f"TASKTRAIL_JWKS_URL must be an http(s) URL, e.g. https://app.example.com/api/auth/jwks "
            f"(got {url!r})."
        )


def check_jwks_settings(settings: Settings) -> None:
    """Refuse what create_app would refuse about the JWK set settings, before a server starts."""
    if settings.jwks_url is not None:
        check_jwks_url(settings.jwks_url)
    if settings.jwks_file is not None:
        jwk_set_from_file(settings.jwks_file)


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
        on_keys_removed: Callable[[], None] | None = None,
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
            with anyio.fail_after(self._timeout):
                raw = await anyio.to_thread.run_sync(
                    self._download, abandon_on_cancel=True, limiter=self._limiter
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
        gone = self.source.replace(keys)
        if gone and self._on_keys_removed is not None:
            self._on_keys_removed()  # tokens verified with a withdrawn key are verified again
        if self._loaded_at is None or set(keys) != before:
            _log.info("loaded the JWK set", url=self.url, kids=list(keys), removed=sorted(gone))
        self._loaded_at = time.monotonic()
        return True

    def _download(self) -> bytes:
        request = urllib.request.Request(  # noqa: S310 (check_jwks_url allows http(s) only)
            self.url,
            headers={"Accept": "application/json", "User-Agent": f"tasktrail/{__version__}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                raw: bytes = response.read(self._max_bytes + 1)
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
