"""Bearer tokens: every refused token is a 401 that says which check failed; `sub` must own the path."""

from __future__ import annotations

import base64
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tasktrail.api.app import create_app
from tasktrail.settings import ConfigurationError
from tests.conftest import SECRET, Api, auth, make_settings, make_token

OTHER_SECRET = "another-secret-that-is-also-long-enough-0123456789"
# RFC 7518 §3.2: an HS512 key as long as the hash (64 bytes), so PyJWT does not warn.
HS512_SECRET = "a-secret-for-hs512-that-is-at-least-sixty-four-bytes-long-0123456789"
LEEWAY = 30
PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "request_id"}


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _json_part(value: dict[str, Any]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


def _hand_made(header: dict[str, Any], payload: dict[str, Any], signature: bytes) -> str:
    """A JWT assembled byte by byte, for algorithms PyJWT will not sign here."""
    return f"{_json_part(header)}.{_json_part(payload)}.{_b64url(signature)}"


def _claims(sub: str, **extra: Any) -> dict[str, Any]:
    return {"sub": sub, "exp": int(time.time()) + 600, **extra}


def _now() -> int:
    return int(time.time())


def _signed_with_default_secret(sub: str, algorithm: str) -> str:
    """A token with the test secret and another HMAC; PyJWT warns that 52 bytes is short for it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return make_token(sub, algorithm=algorithm)


def _bearer(token: str) -> str:
    return f"Bearer {token}"


def assert_unauthorized(response: httpx2.Response, pattern: str) -> None:
    """A 401 problem with the Bearer challenge whose detail matches `pattern` (case-insensitive)."""
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    body = response.json()
    assert set(body) == PROBLEM_KEYS
    assert body["status"] == 401
    assert body["type"] == "urn:tasktrail:problem:unauthorized"
    assert body["instance"] == response.request.url.path
    assert body["request_id"] == response.headers["x-request-id"]
    assert re.search(pattern, body["detail"], re.IGNORECASE), body["detail"]
    assert SECRET not in response.text


# Each case: the Authorization header (None: not sent) built for a user, and what the detail names.
HeaderCase = Callable[[str], str | None]
REFUSED: list[tuple[HeaderCase, str]] = [
    (lambda user: None, r"authorization.*bearer"),
    (lambda user: "", r"malformed"),
    (lambda user: "Basic dXNlcjpwYXNzd29yZA==", r"malformed"),
    (lambda user: "Bearer", r"malformed"),
    (lambda user: "Bearer a b", r"malformed"),
    (lambda user: _bearer("not-a-jwt"), r"malformed|well-formed"),
    (lambda user: _bearer("a.b.c"), r"malformed|well-formed"),
    (lambda user: _bearer(make_token(user, secret=OTHER_SECRET)), r"signature"),
    (lambda user: _bearer(make_token(user)[:-4] + "AAAA"), r"signature"),
    (lambda user: _bearer(make_token(user, exp=_now() - 120)), r"expired"),
    (lambda user: _bearer(make_token(user, nbf=_now() + 120)), r"not valid yet|future"),
    (lambda user: _bearer(make_token(user, iat=_now() + 120)), r"not valid yet|future"),
    (lambda user: _bearer(make_token(user, iat="123")), r"\biat\b"),
    (lambda user: _bearer(make_token(user, exp=str(_now() + 600))), r"\bexp\b"),
    (lambda user: _bearer(make_token(user, nbf=str(_now() - 60))), r"\bnbf\b"),
    (lambda user: _bearer(make_token(None)), r"\bsub\b"),
    (lambda user: _bearer(jwt.encode({"sub": user}, SECRET, algorithm="HS256")), r"\bexp\b"),
    (
        lambda user: _bearer(_hand_made({"alg": "none", "typ": "JWT"}, _claims(user), b"")),
        r"\balg\b.*none|none.*\balg\b",
    ),
    (
        lambda user: _bearer(_hand_made({"alg": "None", "typ": "JWT"}, _claims(user), b"")),
        r"\balg\b.*none|none.*\balg\b",
    ),
    (lambda user: _bearer(_signed_with_default_secret(user, "HS384")), r"HS384"),
    (lambda user: _bearer(_signed_with_default_secret(user, "HS512")), r"HS512"),
    (
        lambda user: _bearer(
            _hand_made({"alg": "RS256", "typ": "JWT"}, _claims(user), os.urandom(256))
        ),
        r"RS256",
    ),
    (
        lambda user: _bearer(
            _hand_made({"alg": "ES256", "typ": "JWT", "kid": "k1"}, _claims(user), os.urandom(64))
        ),
        r"ES256",
    ),
]
REFUSED_IDS = [
    "no-authorization-header",
    "empty-authorization-header",
    "basic-scheme",
    "bearer-without-token",
    "bearer-with-two-tokens",
    "garbage-token",
    "three-garbage-parts",
    "signed-with-another-secret",
    "tampered-signature",
    "expired-beyond-leeway",
    "nbf-in-the-future-beyond-leeway",
    "iat-in-the-future-beyond-leeway",
    "iat-is-a-string",
    "exp-is-a-string",
    "nbf-is-a-string",
    "missing-sub",
    "missing-exp",
    "alg-none",
    "alg-None-capitalised",
    "hs384-when-hs256-is-configured",
    "hs512-when-hs256-is-configured",
    "rs256-with-a-random-signature",
    "es256-with-a-random-signature",
]


@pytest.mark.parametrize(("header", "pattern"), REFUSED, ids=REFUSED_IDS)
def test_a_refused_token_is_401_naming_the_failed_check(
    client: TestClient, user_id: str, header: HeaderCase, pattern: str
) -> None:
    """Each authentication failure is a 401 problem with the Bearer challenge and a precise detail."""
    value = header(user_id)
    headers = {} if value is None else {"Authorization": value}
    response = client.get(f"/api/{user_id}/tasks", headers=headers)
    assert_unauthorized(response, pattern)


BAD_SUBJECTS: list[Any] = [
    "",
    "u" * 129,
    "a b",
    "audit",
    ".",
    "..",
    "user/1",
    "usér",
    42,
    ["u1"],
    "alice\n",  # `$` matched before a final newline: it passed, and slipped past "audit\n"
    "audit\n",
    "alice\r",
]
BAD_SUBJECT_IDS = [
    "empty",
    "129-characters",
    "a-space",
    "reserved-audit",
    "dot",
    "dot-dot",
    "a-slash",
    "non-ascii",
    "a-number",
    "a-list",
    "trailing-newline",
    "reserved-with-newline",
    "trailing-return",
]


@pytest.mark.parametrize("subject", BAD_SUBJECTS, ids=BAD_SUBJECT_IDS)
def test_a_sub_that_is_not_a_valid_user_id_is_401(client: TestClient, subject: Any) -> None:
    """A signed token whose sub is not a valid user id is refused, and the detail names sub."""
    token = jwt.encode({**_claims("placeholder"), "sub": subject}, SECRET, algorithm="HS256")
    response = client.get("/api/someone/tasks", headers={"Authorization": _bearer(token)})
    assert_unauthorized(response, r"\bsub\b")


def test_a_sub_of_128_allowed_characters_is_accepted(client: TestClient) -> None:
    """The longest valid user id, with every allowed punctuation mark, authenticates."""
    user = ("Az09._-@:" * 15)[:128]
    response = client.get(f"/api/{user}/tasks", headers=auth(user))
    assert response.status_code == 200, response.text


ACCEPTED: list[Callable[[], dict[str, Any]]] = [
    dict,
    lambda: {"exp": _now() - 10},
    lambda: {"nbf": _now() + 10},
    lambda: {"iat": _now() + 10},
    lambda: {"iat": _now() - 60, "nbf": _now() - 60},
    lambda: {"role": "auditor"},
    lambda: {"roles": ["auditor"]},
    lambda: {"role": "auditor, something-else"},
]
ACCEPTED_IDS = [
    "plain",
    "exp-10s-ago-within-leeway",
    "nbf-10s-ahead-within-leeway",
    "iat-10s-ahead-within-leeway",
    "iat-and-nbf-in-the-past",
    "role-auditor",
    "roles-list-auditor",
    "role-comma-list",
]


@pytest.mark.parametrize("claims", ACCEPTED, ids=ACCEPTED_IDS)
def test_a_valid_token_opens_the_users_own_routes(
    api: Api, claims: Callable[[], dict[str, Any]]
) -> None:
    """Valid tokens, including those within the clock leeway or with roles, create and read tasks."""
    api.headers = auth(api.user_id, **claims())
    created = api.create(title="mine")
    assert api.get(created["id"]).status_code == 200
    listed = api.request("GET")
    assert listed.status_code == 200
    assert [task["id"] for task in listed.json()] == [created["id"]]


@pytest.mark.parametrize(
    "claims",
    [{"iss": "https://anyone.example.test"}, {"aud": "anything"}, {"aud": ["a", "b"]}],
    ids=["iss", "aud-string", "aud-list"],
)
def test_iss_and_aud_are_not_checked_when_not_configured(
    client: TestClient, user_id: str, claims: dict[str, Any]
) -> None:
    """Without TASKTRAIL_JWT_ISSUER / TASKTRAIL_JWT_AUDIENCE, any iss or aud in the token is fine."""
    response = client.get(f"/api/{user_id}/tasks", headers=auth(user_id, **claims))
    assert response.status_code == 200, response.text


def test_the_bearer_scheme_is_case_insensitive(client: TestClient, user_id: str) -> None:
    """RFC 9110 auth schemes are case-insensitive: `bearer <token>` works like `Bearer <token>`."""
    headers = {"Authorization": f"bearer {make_token(user_id)}"}
    assert client.get(f"/api/{user_id}/tasks", headers=headers).status_code == 200


def test_a_token_for_another_user_is_403(client: TestClient, user_id: str) -> None:
    """A valid token whose sub is not the path's user is 403 (authenticated but not allowed)."""
    response = client.get(f"/api/{user_id}/tasks", headers=auth(f"{user_id}-other"))
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) == PROBLEM_KEYS
    assert body["status"] == 403
    assert body["type"] == "urn:tasktrail:problem:forbidden"
    assert body["instance"] == f"/api/{user_id}/tasks"


def test_authentication_is_checked_before_ownership(client: TestClient, user_id: str) -> None:
    """An invalid token on another user's path is 401, not 403."""
    headers = {"Authorization": _bearer(make_token(user_id, secret=OTHER_SECRET))}
    response = client.get(f"/api/{user_id}-other/tasks", headers=headers)
    assert_unauthorized(response, r"signature")


ROUTES = [
    ("GET", ""),
    ("POST", ""),
    ("GET", "/{id}"),
    ("PUT", "/{id}"),
    ("PATCH", "/{id}"),
    ("PATCH", "/{id}/complete"),
    ("DELETE", "/{id}"),
    ("POST", "/{id}/restore"),
    ("GET", "/{id}/events"),
]
ROUTE_IDS = ["list", "create", "get", "put", "patch", "complete", "delete", "restore", "events"]


@pytest.mark.parametrize(("method", "suffix"), ROUTES, ids=ROUTE_IDS)
def test_every_task_route_needs_a_token(api: Api, method: str, suffix: str) -> None:
    """Without a token every task route is 401, even for a real task and a valid body."""
    task = api.create(title="guarded")
    url = api.url(suffix.format(id=task["id"]))
    body = (
        {"title": "changed"}
        if method in ("POST", "PUT", "PATCH") and suffix in ("", "/{id}")
        else None
    )
    response = api.client.request(method, url, json=body)
    assert_unauthorized(response, r"authorization")
    assert api.get(task["id"]).json() == task
    assert api.request("GET").headers["X-Total-Count"] == "1"


def test_a_missing_token_is_401_before_a_bad_task_id_is_404(client: TestClient) -> None:
    """Authentication comes first: a task id that is not a UUID still gets the 401."""
    assert_unauthorized(client.get("/api/someone/tasks/not-a-uuid"), r"authorization")


@pytest.mark.parametrize("secret", [None, "short", "x" * 31], ids=["missing", "short", "31-bytes"])
def test_a_secret_shorter_than_32_bytes_is_refused_at_start(
    database_url: str, secret: str | None
) -> None:
    """The app factory refuses a missing secret or one under 32 bytes (RFC 7518 §3.2)."""
    with pytest.raises(ConfigurationError, match="32 bytes"):
        create_app(make_settings(database_url, auth_secret=secret))


def test_a_secret_of_exactly_32_bytes_is_accepted(database_url: str, engine: Engine) -> None:
    """32 bytes is the minimum and is enough; tokens signed with it work."""
    secret = "y" * 32
    with _client(database_url, engine, auth_secret=secret) as client:
        response = client.get(
            "/api/u32/tasks", headers={"Authorization": _bearer(make_token("u32", secret=secret))}
        )
    assert response.status_code == 200, response.text


@contextmanager
def _client(database_url: str, engine: Engine, **overrides: Any) -> Iterator[TestClient]:
    """A client of an app with other settings, on the shared test database."""
    app = create_app(make_settings(database_url, **overrides), engine=engine)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def hs512_client(database_url: str, engine: Engine) -> Iterator[TestClient]:
    settings = {"jwt_algorithm": "HS512", "auth_secret": HS512_SECRET}
    with _client(database_url, engine, **settings) as client:
        yield client


def test_hs512_configured_accepts_hs512_tokens(hs512_client: TestClient, user_id: str) -> None:
    """With TASKTRAIL_JWT_ALGORITHM=HS512, HS512 tokens are accepted."""
    headers = auth(user_id, secret=HS512_SECRET, algorithm="HS512")
    assert hs512_client.get(f"/api/{user_id}/tasks", headers=headers).status_code == 200


@pytest.mark.parametrize("algorithm", ["HS256", "HS384"])
def test_hs512_configured_refuses_other_hmac_algorithms(
    hs512_client: TestClient, user_id: str, algorithm: str
) -> None:
    """With HS512 configured, a token signed with the same secret but another HMAC is 401."""
    response = hs512_client.get(
        f"/api/{user_id}/tasks", headers=auth(user_id, secret=HS512_SECRET, algorithm=algorithm)
    )
    assert_unauthorized(response, algorithm)


def test_a_zero_leeway_refuses_a_token_that_expired_seconds_ago(
    database_url: str, engine: Engine, user_id: str
) -> None:
    """TASKTRAIL_JWT_LEEWAY=0 turns the 30 s grace off."""
    headers = auth(user_id, exp=_now() - 5)
    with _client(database_url, engine, jwt_leeway=0) as client:
        response = client.get(f"/api/{user_id}/tasks", headers=headers)
    assert_unauthorized(response, r"expired")


ISSUER = "https://auth.example.test"
AUDIENCE = "tasktrail"


@pytest.fixture
def iss_aud_client(database_url: str, engine: Engine) -> Iterator[TestClient]:
    with _client(database_url, engine, jwt_issuer=ISSUER, jwt_audience=AUDIENCE) as client:
        yield client


@pytest.mark.parametrize(
    ("claims", "pattern"),
    [
        ({"iss": None, "aud": AUDIENCE}, r"\biss\b"),
        ({"iss": "https://evil.example.test", "aud": AUDIENCE}, r"\biss\b"),
        ({"iss": ISSUER, "aud": None}, r"\baud\b"),
        ({"iss": ISSUER, "aud": "someone-else"}, r"\baud\b"),
        ({"iss": ISSUER, "aud": ["someone-else", "another"]}, r"\baud\b"),
    ],
    ids=["missing-iss", "wrong-iss", "missing-aud", "wrong-aud", "aud-list-without-us"],
)
def test_a_wrong_or_missing_issuer_or_audience_is_401(
    iss_aud_client: TestClient, user_id: str, claims: dict[str, Any], pattern: str
) -> None:
    """When issuer and audience are configured, a token must carry both, with the right values."""
    response = iss_aud_client.get(f"/api/{user_id}/tasks", headers=auth(user_id, **claims))
    assert_unauthorized(response, pattern)


@pytest.mark.parametrize(
    "audience", [AUDIENCE, ["other", AUDIENCE]], ids=["aud-string", "aud-list-including-us"]
)
def test_the_right_issuer_and_audience_pass(
    iss_aud_client: TestClient, user_id: str, audience: str | list[str]
) -> None:
    """A token with the configured iss and an aud naming this service is accepted."""
    headers = auth(user_id, iss=ISSUER, aud=audience)
    assert iss_aud_client.get(f"/api/{user_id}/tasks", headers=headers).status_code == 200


def test_a_shared_secret_token_naming_an_unknown_kid_is_refused(api: Api) -> None:
    """An unknown kid is refused: the shared secret has no key id, so a kid names another key."""
    token = jwt.encode(
        {"sub": api.user_id, "exp": int(time.time()) + 600},
        SECRET,
        algorithm="HS256",
        headers={"kid": "nope"},
    )
    response = api.client.get(api.url(), headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert "kid" in response.json()["detail"]
