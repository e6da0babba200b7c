"""Signing keys, a JWK set served over loopback HTTP, and tokens shaped like Better Auth's."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from sqlalchemy import Engine

from tasktrail.api.app import create_app
from tasktrail.api.auth.jwks_fetch import REFETCH_INTERVAL_SECONDS
from tests.conftest import make_settings

# Better Auth's base URL: its JWT plugin writes it into both iss and aud.
BASE_URL = "https://app.example.test"
PrivateKey = (
    ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
)  # what the tests sign with


@dataclass(frozen=True)
class SigningKey:
    """A private key, its kid and its algorithm, and the public JWK a set publishes for it."""

    kid: str
    algorithm: str
    private: PrivateKey
    jwk: dict[str, Any]

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        """A token in Better Auth's shape: header {"alg", "kid"}, no typ."""
        headers = {"kid": self.kid, "typ": None, **header}
        return jwt.encode(claims, self.private, algorithm=self.algorithm, headers=headers)


def make_key(algorithm: str, *, with_alg: bool = True, rsa_bits: int = 2048) -> SigningKey:
    """A fresh key for this algorithm; `with_alg=False` publishes it without an alg member."""
    private: PrivateKey
    jwk: dict[str, Any]
    match algorithm:
        case "EdDSA":
            private = ed25519.Ed25519PrivateKey.generate()
            jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
        case "ES256" | "ES384" | "ES512":
            curves: dict[str, ec.EllipticCurve] = {
                "ES256": ec.SECP256R1(),
                "ES384": ec.SECP384R1(),
                "ES512": ec.SECP521R1(),
            }
            private = ec.generate_private_key(curves[algorithm])
            jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
        case "RS256" | "PS256":
            private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
            jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
        case _:
            raise ValueError(algorithm)
    kid = f"{algorithm.lower()}-{uuid.uuid4().hex[:8]}"
    jwk = {**jwk, "kid": kid}
    if with_alg:
        jwk["alg"] = algorithm
    return SigningKey(kid=kid, algorithm=algorithm, private=private, jwk=jwk)


def same_kid(named: SigningKey, key: SigningKey) -> SigningKey:
    """`key` published under `named`'s kid, as a set does that replaces a key under its name."""
    return dataclasses.replace(key, kid=named.kid, jwk={**key.jwk, "kid": named.kid})


def jwk_set(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [key.jwk for key in keys]}


def better_auth_claims(user_id: str, **extra: Any) -> dict[str, Any]:
    """The claims Better Auth 1.7's JWT plugin issues for a session, 15 minutes long."""
    now = int(time.time())
    return {
        "name": "Ada Lovelace",
        "email": "ada.lovelace@example.test",
        "emailVerified": True,
        "image": None,
        "createdAt": "2026-11-30T09:00:00.000Z",
        "updatedAt": "2026-11-30T09:00:00.000Z",
        "id": user_id,
        "sub": user_id,
        "iat": now,
        "exp": now + 15 * 60,
        "iss": BASE_URL,
        "aud": BASE_URL,
        **extra,
    }


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hmac_signed(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 token made by hand, keyed with any bytes (PyJWT refuses public keys as secrets)."""
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    parts = (_b64url(json.dumps(part).encode()) for part in (header, claims))
    return ".".join(parts) + "."


@dataclass
class JwksServer:
    """A JWK set on a real loopback HTTP server; the tests change what it serves and count."""

    url: str = ""
    body: bytes = b'{"keys": []}'
    status: int = 200
    delay: float = 0.0
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def stop(self) -> None:
        """Stop answering: the port refuses connections from now on."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def serve(self, document: dict[str, Any]) -> None:
        self.body = json.dumps(document).encode()
        self.status = 200

    def count(self) -> int:
        with self._lock:
            return self.requests


@contextmanager
def jwks_server(document: dict[str, Any] | None = None, port: int = 0) -> Iterator[JwksServer]:
    """Serve `document` at http://127.0.0.1:<port>/api/auth/jwks from a thread (0: a free port)."""
    state = JwksServer()
    if document is not None:
        state.serve(document)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state._lock:
                state.requests += 1
            if state.delay:
                time.sleep(state.delay)
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test's output is not the place for an access log

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/api/auth/jwks"
    state._server = server
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        state.stop()
        thread.join(timeout=5)


@contextmanager
def jwks_client(
    database_url: str,
    engine: Engine,
    *,
    refetch_interval: float = REFETCH_INTERVAL_SECONDS,
    **overrides: Any,
) -> Iterator[TestClient]:
    """A started app (its lifespan fetched the set) with these settings, on the test database."""
    settings = make_settings(database_url, **overrides)
    app = create_app(settings, engine=engine, jwks_refetch_interval=refetch_interval)
    with TestClient(app) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
