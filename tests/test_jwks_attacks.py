"""The known attacks on JWK set verification each end in a 401 that names the failed check."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.conftest import new_user_id
from tests.jwks_helpers import (
    BASE_URL,
    SigningKey,
    bearer,
    better_auth_claims,
    hmac_signed,
    jwk_set,
    jwks_client,
    jwks_server,
    make_key,
    unsigned,
)
from tests.test_auth import assert_unauthorized


class Keys:
    """The published keys, a short RSA key the set also lists, and a key it never published."""

    def __init__(self) -> None:
        self.eddsa = make_key("EdDSA")
        self.es256 = make_key("ES256")
        self.rs256 = make_key("RS256")
        self.ps256 = make_key("PS256")
        self.short_rsa = make_key("RS256", rsa_bits=1024)
        self.unpublished = make_key("EdDSA")
        # A symmetric key in the set would be a leaked secret: it must never verify anything.
        self.oct = {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAxMjM", "kid": "oct"}

    def document(self) -> dict[str, Any]:
        published = jwk_set(self.eddsa, self.es256, self.rs256, self.ps256, self.short_rsa)
        return {"keys": [*published["keys"], self.oct]}


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def client(sqlite_url: str, sqlite_engine: Engine, keys: Keys) -> Iterator[TestClient]:
    """The service with the set on a loopback server; iss and aud must be the base URL.

    SQLite alone: every case here is refused before the database is touched.
    """
    with (
        jwks_server(keys.document()) as server,
        jwks_client(
            sqlite_url,
            sqlite_engine,
            jwks_url=server.url,
            jwt_issuer=BASE_URL,
            jwt_audience=BASE_URL,
        ) as client,
    ):
        yield client


def _pem(key: SigningKey) -> bytes:
    return key.private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def _jwk_bytes(key: SigningKey) -> bytes:
    return json.dumps(key.jwk).encode()


def _hs256(key: SigningKey, secret: bytes, *, with_kid: bool = True) -> Callable[[str], str]:
    header = {"alg": "HS256", **({"kid": key.kid} if with_kid else {})}
    return lambda user: hmac_signed(header, better_auth_claims(user), secret)


Attack = Callable[[Keys], Callable[[str], str]]
ATTACKS: dict[str, tuple[Attack, str]] = {
    "hs256-keyed-with-the-rsa-public-pem": (
        lambda k: _hs256(k.rs256, _pem(k.rs256)),
        r"HS256.*RS256",
    ),
    "hs256-keyed-with-the-ec-public-pem": (
        lambda k: _hs256(k.es256, _pem(k.es256)),
        r"HS256.*ES256",
    ),
    "hs256-keyed-with-the-ed25519-public-pem": (
        lambda k: _hs256(k.eddsa, _pem(k.eddsa)),
        r"HS256.*EdDSA",
    ),
    "hs256-keyed-with-the-rsa-jwk-bytes": (
        lambda k: _hs256(k.rs256, _jwk_bytes(k.rs256)),
        r"HS256.*RS256",
    ),
    "hs256-keyed-with-the-rsa-public-pem-without-kid": (
        lambda k: _hs256(k.rs256, _pem(k.rs256), with_kid=False),
        r"signature",
    ),
    "hs256-keyed-with-the-published-oct-key": (
        lambda k: (
            lambda user: hmac_signed(
                {"alg": "HS256", "kid": "oct"}, better_auth_claims(user), b"secret-secret-secret"
            )
        ),
        r"kid 'oct'",
    ),
    "alg-none-with-a-published-kid": (
        lambda k: (
            lambda user: unsigned({"alg": "none", "kid": k.eddsa.kid}, better_auth_claims(user))
        ),
        r"alg none",
    ),
    "alg-None-capitalised": (
        lambda k: (
            lambda user: unsigned({"alg": "None", "kid": k.eddsa.kid}, better_auth_claims(user))
        ),
        r"alg none",
    ),
    "unknown-kid": (
        lambda k: lambda user: k.unpublished.sign(better_auth_claims(user)),
        r"kid 'eddsa-",
    ),
    "es256-header-naming-an-ed25519-key": (
        lambda k: lambda user: k.es256.sign(better_auth_claims(user), kid=k.eddsa.kid),
        r"ES256.*EdDSA",
    ),
    "rs256-header-naming-a-ps256-key": (
        lambda k: lambda user: k.rs256.sign(better_auth_claims(user), kid=k.ps256.kid),
        r"RS256.*PS256",
    ),
    "ps256-signed-under-an-rs256-key": (
        lambda k: lambda user: k.rs256.sign(better_auth_claims(user), alg="PS256"),
        r"PS256.*RS256",
    ),
    "signed-by-another-key-under-a-published-kid": (
        lambda k: lambda user: k.unpublished.sign(better_auth_claims(user), kid=k.eddsa.kid),
        r"signature",
    ),
    "tampered-payload": (
        lambda k: lambda user: _tampered(k.eddsa.sign(better_auth_claims(user))),
        r"signature",
    ),
    "rsa-key-under-2048-bits": (
        lambda k: lambda user: _signed_with_short_key(k.short_rsa, user),
        r"no key.*kid",
    ),
    "expired": (
        lambda k: (
            lambda user: k.eddsa.sign(better_auth_claims(user, iat=_now() - 3600, exp=_now() - 120))
        ),
        r"expired",
    ),
    "wrong-issuer": (
        lambda k: (
            lambda user: k.eddsa.sign(better_auth_claims(user, iss="https://evil.example.test"))
        ),
        r"\biss\b",
    ),
    "wrong-audience": (
        lambda k: (
            lambda user: k.eddsa.sign(
                better_auth_claims(user, aud="https://other-app.example.test")
            )
        ),
        r"\baud\b",
    ),
    "missing-audience": (
        lambda k: lambda user: k.eddsa.sign(better_auth_claims(user, aud=None)),
        r"\baud\b",
    ),
}


def _now() -> int:
    return int(time.time())


def _signed_with_short_key(key: SigningKey, user: str) -> str:
    """PyJWT warns when it signs with an RSA key under 2048 bits; that is the point here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return key.sign(better_auth_claims(user))


def _tampered(token: str) -> str:
    """The same signature over a payload that names another user."""
    header, _, signature = token.split(".")
    forged = hmac_signed({}, better_auth_claims("mallory"), b"x").split(".")[1]
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize(("attack", "pattern"), ATTACKS.values(), ids=ATTACKS.keys())
def test_an_attack_on_the_jwk_set_is_401(
    client: TestClient, keys: Keys, attack: Attack, pattern: str
) -> None:
    """Forged, unsigned, mis-keyed, weak-keyed, expired or misaddressed tokens are all 401."""
    user = new_user_id()
    token = attack(keys)(user)
    for method, body in (("GET", None), ("POST", {"title": "forged"})):
        response = client.request(method, f"/api/{user}/tasks", json=body, headers=bearer(token))
        assert_unauthorized(response, pattern)


def test_the_published_keys_do_verify_their_own_tokens(client: TestClient, keys: Keys) -> None:
    """The control: the same set accepts tokens signed properly with each published key."""
    user = new_user_id()
    for key in (keys.eddsa, keys.es256, keys.rs256, keys.ps256):
        response = client.get(
            f"/api/{user}/tasks", headers=bearer(key.sign(better_auth_claims(user)))
        )
        assert response.status_code == 200, (key.algorithm, response.text)
