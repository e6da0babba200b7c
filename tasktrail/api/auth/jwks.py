"""Tokens signed with the keys of a JWK set (RFC 7517), as Better Auth's JWT plugin issues them.

`JwkSetSource` is a key source of `TokenVerifier`: it resolves a token's `kid` in the set it holds,
in memory, and never does I/O. The set comes from `TASKTRAIL_JWKS_FILE` (read once, at start) or
from `TASKTRAIL_JWKS_URL`, which `RemoteJwkSet` (jwks_fetch.py) keeps fresh.

Each key is used with exactly one algorithm (RFC 8725 §3.1): its `alg` when it has one, else the
one its type implies (PyJWT's `PyJWK` rule: OKP Ed25519 is EdDSA, EC P-256 ES256, P-384 ES384,
P-521 ES512, RSA RS256). Keys that cannot verify safely are left out of the set with a warning.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
import structlog
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tasktrail.api.auth.tokens import AuthenticationError, VerificationKey
from tasktrail.settings import ConfigurationError, Settings

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
        """Hold this set from now on; returns the kids withdrawn: gone, or now naming another key.

        A kid republished with other key material is a withdrawal too (a compromised key
        replaced under its name): tokens the old key verified must not stay verified.
        """
        withdrawn = {
            kid
            for kid, key in self._keys.items()
            if kid not in keys or not _same_key(key, keys[kid])
        }
        self._keys = dict(keys)  # one assignment: a concurrent resolve sees the old or the new set
        return withdrawn

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


def _same_key(held: VerificationKey, published: VerificationKey) -> bool:
    """The same algorithm and the same public key (its DER SubjectPublicKeyInfo, which is the
    same bytes for the same key however its JWK was written)."""
    return held.algorithm == published.algorithm and _public_key_der(held) == _public_key_der(
        published
    )


def _public_key_der(key: VerificationKey) -> bytes:
    der: bytes = key.key.key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return der


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
