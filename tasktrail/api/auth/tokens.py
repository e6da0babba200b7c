"""Bearer token verification: which key, which algorithm, which claims.

`TokenVerifier` asks its key sources, in order, for the key that matches a token's header. The
shared secret is one source; a JWK set (asymmetric keys chosen by `kid`, jwks.py) is another.
Verification itself is pure CPU (about 25 µs for HS256), so it runs on the event loop; a source
that must fetch keys does so ahead of time, never inside `resolve`.

A client sends the same token with every request until it expires, so a verified token is kept,
bounded, until its `exp` (plus the leeway) has passed: a hit costs a dictionary lookup instead of
a base64 decode, a JSON parse and an HMAC.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import jwt

from tasktrail.schema import USER_ID_LENGTH

USER_ID_PATTERN = re.compile(rf"[A-Za-z0-9._@:-]{{1,{USER_ID_LENGTH}}}")
RESERVED_USER_IDS = frozenset({"audit", ".", ".."})
AUDITOR_ROLE = "auditor"
# Tokens kept verified per process: a few MB at most, and more distinct live tokens than one
# process sees in 15 minutes (the usual lifetime) at thousands of requests per second.
VERIFIED_TOKENS_KEPT = 4096


def is_valid_user_id(value: str) -> bool:
    # fullmatch: with match and `$`, "alice\n" passed (`$` matches before a final newline).
    return bool(USER_ID_PATTERN.fullmatch(value)) and value not in RESERVED_USER_IDS


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for, and what bounds its use beyond this request.

    Built once per token (the verified-token cache hands out the same one until it expires), so
    its fields cost nothing per request. A live stream outlives the request that verified it:
    it ends at `refused_after` and when the JWK set drops the key `kid`
    (api/routes/event_stream.py).
    """

    user_id: str
    roles: frozenset[str]
    # Unix time after which the token is refused: its exp plus the leeway.
    refused_after: float
    # The kid of the JWK-set key that verified the token; None for the shared secret.
    kid: str | None

    @property
    def is_auditor(self) -> bool:
        return AUDITOR_ROLE in self.roles


class AuthenticationError(Exception):
    """The token is refused; the message says which check failed, never the key."""


class UnknownKeyId(AuthenticationError):
    """The token names a `kid` that no source holds (yet: a JWK set may have rotated since)."""


@dataclass(frozen=True, slots=True)
class VerificationKey:
    key: Any
    algorithm: str


class KeySource(Protocol):
    def resolve(self, header: dict[str, Any]) -> VerificationKey | None:
        """The key for a token with this header; None when this source does not sign such tokens."""
        ...


@runtime_checkable
class KeySet(Protocol):
    """A key source whose keys are named by kid (a JWK set), and may be withdrawn."""

    @property
    def kids(self) -> list[str]: ...


class SharedSecret:
    """The secret shared with the frontend's auth, used with exactly one HMAC algorithm."""

    def __init__(self, secret: bytes, algorithm: str) -> None:
        self._key = VerificationKey(secret, algorithm)

    def resolve(self, header: dict[str, Any]) -> VerificationKey | None:
        algorithm = header.get("alg")
        if "kid" in header:
            return None  # the shared secret has no key id: a kid names a key it is not
        if algorithm == self._key.algorithm:
            return self._key
        if isinstance(algorithm, str) and algorithm.startswith("HS"):
            # Pinned (RFC 8725 §3.1): the one configured algorithm, never another HMAC.
            raise AuthenticationError(
                f"the token is signed with {algorithm}, but this service accepts shared-secret "
                f"tokens signed with {self._key.algorithm} only"
            )
        return None


class TokenVerifier:
    def __init__(
        self,
        sources: Sequence[KeySource],
        *,
        issuer: str | None,
        audience: str | None,
        leeway: int,
        keep: int = VERIFIED_TOKENS_KEPT,
    ) -> None:
        self._sources = tuple(sources)
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._keep = keep
        # token -> its principal, kept until its `refused_after` (when PyJWT would call it
        # expired). Only tokens that passed every check are kept; nbf and iat were in the past
        # then, and stay there.
        self._verified: dict[str, Principal] = {}

    def verify(self, token: str) -> Principal:
        kept = self._verified.get(token)
        if kept is not None:
            if time.time() < kept.refused_after:
                return kept
            self._verified.pop(token, None)
        header = _header(token)
        key = self._key_for(header)
        claims = self._decode(token, key)
        # A kid in the header means a JWK-set key verified the token: the shared secret
        # resolves no token that names a kid.
        kid = header.get("kid")
        principal = Principal(
            user_id=_subject(claims),
            roles=_roles(claims),
            refused_after=float(claims["exp"]) + self._leeway,
            kid=kid if isinstance(kid, str) else None,
        )
        self._remember(token, principal)
        return principal

    def holds_key(self, kid: str) -> bool:
        """Whether a JWK set of this verifier still holds the key named `kid`."""
        return any(isinstance(source, KeySet) and kid in source.kids for source in self._sources)

    def forget_verified(self) -> None:
        """Check every token afresh: a key was withdrawn, and tokens it verified are kept here."""
        self._verified.clear()

    def _remember(self, token: str, principal: Principal) -> None:
        if len(self._verified) >= self._keep:
            # The oldest entry goes (dicts keep insertion order): a bound, not an LRU, which
            # costs nothing on a hit.
            self._verified.pop(next(iter(self._verified)), None)
        self._verified[token] = principal

    def _key_for(self, header: dict[str, Any]) -> VerificationKey:
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm.lower() == "none":
            raise AuthenticationError("unsigned tokens (alg none) are refused: sign the token")
        for source in self._sources:
            key = source.resolve(header)
            if key is not None:
                return key
        kid = header.get("kid")
        if isinstance(kid, str):
            raise UnknownKeyId(
                f"no key of this service verifies tokens signed with {algorithm} and kid {kid!r}"
            )
        raise AuthenticationError(f"no key of this service verifies tokens signed with {algorithm}")

    def _decode(self, token: str, key: VerificationKey) -> dict[str, Any]:
        options: Any = {"require": ["exp", "sub"]}
        if self._issuer is not None:
            options["require"].append("iss")
        if self._audience is not None:
            options["require"].append("aud")
        else:
            options["verify_aud"] = False  # aud is checked only when an audience is configured
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                options=options,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
            )
        except jwt.PyJWTError as error:
            raise AuthenticationError(_explain(error)) from None
        for claim in ("exp", "nbf", "iat"):
            # PyJWT takes "123" for 123; a JWT's NumericDate is a JSON number (RFC 7519 §2).
            if claim in claims and not _is_number(claims[claim]):
                raise AuthenticationError(f"the {claim} claim must be a number (NumericDate)")
        return claims


def _header(token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthenticationError("the bearer token is not a well-formed JWT") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _subject(claims: dict[str, Any]) -> str:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not is_valid_user_id(subject):
        raise AuthenticationError(
            "the sub claim is not a valid user id (1 to 128 of A-Z a-z 0-9 . _ - @ :, "
            "not 'audit', '.' or '..')"
        )
    return subject


def _roles(claims: dict[str, Any]) -> frozenset[str]:
    roles: set[str] = set()
    role = claims.get("role")
    if isinstance(role, str):
        roles.update(part.strip() for part in role.split(",") if part.strip())
    listed = claims.get("roles")
    if isinstance(listed, list):
        roles.update(item for item in listed if isinstance(item, str))
    return frozenset(roles)


def _explain(error: jwt.PyJWTError) -> str:
    match error:
        case jwt.ExpiredSignatureError():
            return "the token has expired: get a new one"
        case jwt.ImmatureSignatureError():
            claim = "iat" if "iat" in str(error) else "nbf"
            return f"the token is not valid yet (its {claim} lies in the future)"
        case jwt.InvalidSignatureError():
            return "the token's signature does not verify"
        case jwt.MissingRequiredClaimError():
            return f"the token lacks the required {error.claim} claim"
        case jwt.InvalidIssuedAtError():
            return "the iat claim must be a number (NumericDate)"
        case jwt.InvalidAudienceError():
            return "the token's aud claim does not name this service"
        case jwt.InvalidIssuerError():
            return "the token's iss claim is not the expected issuer"
        case jwt.exceptions.InvalidSubjectError():
            return "the sub claim must be a string user id"
        case jwt.InvalidAlgorithmError():
            return "the token's algorithm is not accepted"
        case jwt.DecodeError():
            if "must be an integer" in str(error):
                return "the exp and nbf claims must be numbers (NumericDate)"
            return "the bearer token is not a well-formed JWT"
        case _:
            return "the token is invalid"
