"""Attacks on the bearer token, after RFC 8725 (JWT best current practices) and OWASP API2/API5.

test_auth.py holds the plain refusals (alg none, HS384/HS512/RS256/ES256 when HS256 is pinned,
missing or expired claims, bad `sub` shapes); this file adds what an attacker tries beyond them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import SECRET, auth, live_server, make_token, new_user_id
from tests.test_auth import assert_unauthorized

ATTACKER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER_PUBLIC_PEM = ATTACKER_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _part(value: Any) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


def _hmac_signed(header: dict[str, Any], payload: dict[str, Any], key: bytes) -> str:
    """A token whose header says anything at all, signed with HMAC-SHA256 under `key`."""
    signing_input = f"{_part(header)}.{_part(payload)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def _claims(sub: str, **extra: Any) -> dict[str, Any]:
    return {"sub": sub, "exp": int(time.time()) + 600, **extra}


def _get(client: TestClient, user: str, token: str) -> httpx2.Response:
    return client.get(f"/api/{user}/tasks", headers={"Authorization": f"Bearer {token}"})


# Each case builds, for a user, a token signed with the real secret (or as noted) whose header
# or claims carry the attack: every one is a 401 whose detail names the failed check.
FORGED: dict[str, tuple[Any, str]] = {
    # alg none spelled other ways, with the real signature kept (RFC 8725 §2.1, §3.1).
    "alg-none-with-a-valid-signature": (
        lambda u: _hmac_signed({"alg": "none"}, _claims(u), SECRET.encode()),
        r"\balg\b",
    ),
    "alg-NONE-uppercase": (
        lambda u: _hmac_signed({"alg": "NONE"}, _claims(u), SECRET.encode()),
        r"\balg\b",
    ),
    "alg-missing-from-the-header": (
        lambda u: _hmac_signed({"typ": "JWT"}, _claims(u), SECRET.encode()),
        r"\balg\b|malformed|well-formed",
    ),
    "alg-is-a-list": (
        lambda u: _hmac_signed({"alg": ["HS256"]}, _claims(u), SECRET.encode()),
        r"\balg\b|malformed|well-formed",
    ),
    "alg-is-null": (
        lambda u: _hmac_signed({"alg": None}, _claims(u), SECRET.encode()),
        r"\balg\b|malformed|well-formed",
    ),
    # Algorithm confusion (RFC 8725 §2.1): an attacker's public key used as the HMAC secret,
    # with the key embedded or pointed to in the header (jwk/jku/x5u are never followed).
    "hs256-keyed-with-an-attackers-public-key": (
        lambda u: _hmac_signed({"alg": "HS256"}, _claims(u), ATTACKER_PUBLIC_PEM),
        r"signature",
    ),
    "rs256-by-an-attacker-with-the-key-embedded-as-jwk": (
        lambda u: jwt.encode(
            _claims(u),
            ATTACKER_KEY,
            algorithm="RS256",
            headers={
                "jwk": json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(ATTACKER_KEY.public_key()))
            },
        ),
        r"RS256",
    ),
    "hs256-pointing-at-an-attackers-jku": (
        lambda u: _hmac_signed(
            {"alg": "HS256", "jku": "http://127.0.0.1:9/jwks.json"}, _claims(u), b"attacker"
        ),
        r"signature",
    ),
    "hs256-with-an-x5u": (
        lambda u: _hmac_signed(
            {"alg": "HS256", "x5u": "http://127.0.0.1:9/cert.pem"}, _claims(u), b"attacker"
        ),
        r"signature",
    ),
    # kid injection: a path or SQL in `kid` selects nothing (the shared secret names no kid).
    "kid-with-a-path-traversal": (
        lambda u: _hmac_signed({"alg": "HS256", "kid": "../../../../dev/null"}, _claims(u), b""),
        r"\bkid\b|signature",
    ),
    "kid-with-sql": (
        lambda u: _hmac_signed({"alg": "HS256", "kid": "' OR 1=1 --"}, _claims(u), SECRET.encode()),
        r"\bkid\b",
    ),
    # Claims of the wrong type or range (RFC 8725 §3.10): never a 500.
    "exp-is-true": (lambda u: make_token(u, exp=True), r"\bexp\b|expired"),
    "exp-is-null": (lambda u: make_token(u, exp=None), r"\bexp\b"),
    "exp-is-a-list": (lambda u: make_token(u, exp=[int(time.time()) + 600]), r"\bexp\b"),
    "iat-ten-years-ahead": (
        lambda u: make_token(u, iat=int(time.time()) + 10 * 365 * 86400),
        r"not valid yet|future",
    ),
    "iat-past-any-date": (lambda u: make_token(u, iat=10**30), r"\biat\b|not valid yet|future"),
    "nbf-past-any-date": (lambda u: make_token(u, nbf=10**30), r"\bnbf\b|not valid yet|future"),
    "iat-is-infinity-text": (lambda u: make_token(u, iat="Infinity"), r"\biat\b"),
    "exp-before-the-epoch": (lambda u: make_token(u, exp=-(10**12)), r"expired"),
}


@pytest.mark.parametrize(("forge", "pattern"), list(FORGED.values()), ids=list(FORGED))
def test_a_forged_token_is_401_naming_the_check(
    client: TestClient, forge: Any, pattern: str
) -> None:
    """Each forged token is a 401 problem with the Bearer challenge, never a 200 or a 500."""
    user = new_user_id()
    assert_unauthorized(_get(client, user, forge(user)), pattern)


def test_a_refused_token_leaves_no_trace_as_a_user(client: TestClient) -> None:
    """A write with a forged token appends nothing: the real user's list stays empty."""
    user = new_user_id()
    forged = _hmac_signed({"alg": "none"}, _claims(user), b"")
    response = client.post(
        f"/api/{user}/tasks",
        json={"title": "planted"},
        headers={"Authorization": f"Bearer {forged}"},
    )
    assert response.status_code == 401
    listed = client.get(f"/api/{user}/tasks", headers=auth(user))
    assert listed.json() == []


ODD_SUBJECTS = {
    "cyrillic-a-lookalike": "\u0430lice",
    "fullwidth-audit": "\uff41\uff55\uff44\uff49\uff54",
    "zero-width-joiner": "ali\u200dce",
    "right-to-left-override": "ali\u202ece",
    "nul": "alice\x00",
    "tab": "ali\tce",
    "delete-character": "alice\x7f",
    "escape-sequence": "\x1b[31malice",
    "10000-characters": "a" * 10_000,
    "percent-encoded-slash": "a%2Fb",
    "sql": "' OR 1=1 --",
    "null-text": "null",  # valid characters: accepted, and a user like any other
}


@pytest.mark.parametrize("subject", list(ODD_SUBJECTS.values()), ids=list(ODD_SUBJECTS))
def test_an_odd_sub_is_refused_or_is_exactly_its_own_user(client: TestClient, subject: str) -> None:
    """A sub outside the user-id alphabet is 401 naming sub; none is mistaken for another user."""
    token = make_token(subject)
    response = client.get("/api/alice/tasks", headers={"Authorization": f"Bearer {token}"})
    if subject == "null":
        assert response.status_code == 403, response.text
        own = client.get("/api/null/tasks", headers={"Authorization": f"Bearer {token}"})
        assert own.status_code == 200, own.text
        return
    assert_unauthorized(response, r"\bsub\b")
    assert len(response.content) < 1000  # the refused sub is not echoed back


@pytest.mark.parametrize(
    ("token_user", "path_user"),
    [("Alice", "alice"), ("alice", "alice."), ("alice", "alice%20"), ("user-1", "user-01")],
    ids=["case", "trailing-dot", "encoded-space", "leading-zero"],
)
def test_a_sub_that_only_resembles_the_path_user_is_403(
    client: TestClient, token_user: str, path_user: str
) -> None:
    """User ids compare exactly: no case folding, trimming or number parsing grants access."""
    response = client.get(f"/api/{path_user}/tasks", headers=auth(token_user))
    assert response.status_code == 403, response.text


@pytest.mark.parametrize(
    "claims",
    [
        {"role": "Auditor"},
        {"role": "auditors"},
        {"role": "not-auditor"},
        {"roles": "auditor"},
        {"role": ["auditor"]},
        {"roles": ["Auditor"]},
        {"roles": [["auditor"]]},
        {"roles": {"auditor": True}},
        {"role": "admin"},
        {"scope": "auditor"},
        {"auditor": True},
    ],
    ids=lambda claims: json.dumps(claims),
)
def test_no_lookalike_role_opens_the_audit_api(client: TestClient, claims: dict[str, Any]) -> None:
    """OWASP API5: only the exact role `auditor` (in `role` text or the `roles` list) opens audit."""
    user = new_user_id()
    for path in ("/api/audit/events", f"/api/audit/users/{user}/verify"):
        response = client.get(path, headers=auth(user, **claims))
        assert response.status_code == 403, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"


GARBAGE_100_KB = "A" * 100_000


def test_a_100_kb_token_in_process_is_401(client: TestClient) -> None:
    """A 100 KB token that is not a JWT is refused as malformed, not parsed at length or a 500."""
    response = _get(client, "alice", GARBAGE_100_KB)
    assert_unauthorized(response, r"malformed|well-formed")
    assert GARBAGE_100_KB not in response.text


@pytest.fixture(scope="module")
def server(app: FastAPI) -> Iterator[str]:
    with live_server(app) as url:
        yield url


@pytest.mark.parametrize(
    "token",
    [GARBAGE_100_KB, make_token("alice", padding="x" * 100_000)],
    ids=["garbage", "validly-signed"],
)
def test_a_100_kb_token_on_the_wire_is_431(server: str, token: str) -> None:
    """Over the served head limit the server answers 431 before any token check, never 500."""
    response = httpx2.get(
        f"{server}/api/alice/tasks", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 431, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_a_token_just_under_the_head_limit_still_works(server: str) -> None:
    """A large but legal head (a 40 KB claim) is served: the limit is not a refusal of big tokens."""
    user = new_user_id()
    token = make_token(user, padding="x" * 40_000)
    response = httpx2.get(
        f"{server}/api/{user}/tasks", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text


def _signed_text(payload: str) -> str:
    """A correctly signed token around a payload written as raw text (what json.dumps won't)."""
    signing_input = f"{_part({'alg': 'HS256', 'typ': 'JWT'})}.{_b64url(payload.encode())}"
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


LATER = "9999999999"
RAW_PAYLOADS = {
    "exp-infinity": ('{"sub":"%s","exp":Infinity}', r"\bexp\b"),
    "exp-minus-infinity": ('{"sub":"%s","exp":-Infinity}', r"\bexp\b"),
    "exp-nan": ('{"sub":"%s","exp":NaN}', r"\bexp\b"),
    "exp-1e400": ('{"sub":"%s","exp":1e400}', r"\bexp\b"),
    "exp-5000-digits": ('{"sub":"%s","exp":' + "9" * 5000 + "}", r"malformed|well-formed|\bexp\b"),
    "iat-infinity": ('{"sub":"%s","exp":' + LATER + ',"iat":Infinity}', r"\biat\b"),
    "nbf-nan": ('{"sub":"%s","exp":' + LATER + ',"nbf":NaN}', r"\bnbf\b"),
    "payload-is-an-array": ('["%s"]', r"malformed|well-formed"),
}


@pytest.mark.parametrize(
    ("payload", "pattern"), list(RAW_PAYLOADS.values()), ids=list(RAW_PAYLOADS)
)
def test_a_signed_payload_of_non_standard_json_is_401(
    client: TestClient, payload: str, pattern: str
) -> None:
    """Signed but hostile claims text (Infinity, NaN, huge numbers, deep nesting) is a 401."""
    user = new_user_id()
    assert_unauthorized(_get(client, user, _signed_text(payload % user)), pattern)


def test_a_signed_payload_nested_5000_deep_is_no_500(client: TestClient) -> None:
    """Claims nested 5000 deep, signed with the service's own secret: Python 3.11's json refuses
    that depth (a 401, the token is malformed), 3.13's parses it (valid claims from a holder of
    the secret, so 200). Either way an answer, never a 500 or a crash."""
    user = new_user_id()
    payload = f'{{"sub":"{user}","exp":{LATER},"x":' + "[" * 5000 + "]" * 5000 + "}"
    response = _get(client, user, _signed_text(payload))
    assert response.status_code in (200, 401), response.text
    if response.status_code == 401:
        assert_unauthorized(response, r"malformed|well-formed")


def test_a_duplicated_sub_is_read_as_its_last_value_only(client: TestClient) -> None:
    """RFC 7519 §4: with `sub` twice the last one counts; the first user's path stays closed."""
    first, last = new_user_id(), new_user_id()
    token = _signed_text(f'{{"sub":"{first}","sub":"{last}","exp":{LATER}}}')
    assert _get(client, first, token).status_code == 403
    assert _get(client, last, token).status_code == 200
