"""Tokens signed with the keys of a JWK set (Better Auth's JWT plugin) open the API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tasktrail.api.app import create_app
from tasktrail.settings import ConfigurationError
from tests.conftest import SECRET, auth, free_tcp_port, make_settings, new_user_id
from tests.jwks_helpers import (
    BASE_URL,
    SigningKey,
    bearer,
    better_auth_claims,
    jwk_set,
    jwks_client,
    jwks_server,
    make_key,
)
from tests.processes import run_cli

ALGORITHMS = ["EdDSA", "ES256", "ES512", "RS256", "PS256"]
# PS256 shares RSA keys with RS256, so a PS256 key must say its alg; the others may leave it out.
INFERRED = ["EdDSA", "ES256", "ES512", "RS256"]


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    """One key of each kind, published with its alg."""
    return {algorithm: make_key(algorithm) for algorithm in ALGORITHMS}


@pytest.fixture(scope="module")
def keys_without_alg() -> dict[str, SigningKey]:
    """Keys published as Better Auth publishes some: no alg member, only kty and crv."""
    return {algorithm: make_key(algorithm, with_alg=False) for algorithm in INFERRED}


@pytest.fixture
def client(
    database_url: str,
    engine: Engine,
    keys: dict[str, SigningKey],
    keys_without_alg: dict[str, SigningKey],
) -> Iterator[TestClient]:
    """The service with TASKTRAIL_JWKS_URL on a loopback server and iss/aud set as Better Auth's."""
    document = jwk_set(*keys.values(), *keys_without_alg.values())
    with (
        jwks_server(document) as server,
        jwks_client(
            database_url, engine, jwks_url=server.url, jwt_issuer=BASE_URL, jwt_audience=BASE_URL
        ) as client,
    ):
        yield client


@pytest.mark.parametrize("with_alg", [True, False], ids=["key-with-alg", "key-without-alg"])
def test_a_better_auth_token_creates_and_reads_the_users_tasks(
    client: TestClient,
    keys: dict[str, SigningKey],
    keys_without_alg: dict[str, SigningKey],
    with_alg: bool,
) -> None:
    """An EdDSA token in Better Auth's exact shape (no typ, iss == aud == base URL) opens the routes."""
    key = (keys if with_alg else keys_without_alg)["EdDSA"]
    user = new_user_id()
    token = key.sign(better_auth_claims(user))
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": key.kid}
    headers = bearer(token)
    created = client.post(f"/api/{user}/tasks", json={"title": "from Better Auth"}, headers=headers)
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    read = client.get(f"/api/{user}/tasks/{task_id}", headers=headers)
    assert read.status_code == 200, read.text
    assert read.json()["title"] == "from Better Auth"
    listed = client.get(f"/api/{user}/tasks", headers=headers)
    assert [task["id"] for task in listed.json()] == [task_id]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_each_key_type_is_accepted_with_its_algorithm(
    client: TestClient, keys: dict[str, SigningKey], algorithm: str
) -> None:
    """EdDSA, ES256, ES512, RS256 and PS256 keys each verify tokens signed with their algorithm."""
    user = new_user_id()
    token = keys[algorithm].sign(better_auth_claims(user))
    response = client.get(f"/api/{user}/tasks", headers=bearer(token))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("algorithm", INFERRED)
def test_a_key_without_alg_verifies_the_algorithm_its_type_implies(
    client: TestClient, keys_without_alg: dict[str, SigningKey], algorithm: str
) -> None:
    """Without alg: OKP Ed25519 is EdDSA, EC P-256 ES256, EC P-521 ES512, RSA RS256."""
    user = new_user_id()
    token = keys_without_alg[algorithm].sign(better_auth_claims(user))
    assert client.get(f"/api/{user}/tasks", headers=bearer(token)).status_code == 200


def test_roles_in_a_jwks_token_open_the_audit_api(
    client: TestClient, keys: dict[str, SigningKey]
) -> None:
    """The role claim works the same whichever key signed the token."""
    token = keys["EdDSA"].sign(better_auth_claims(new_user_id(), role="auditor"))
    response = client.get("/api/audit/events?limit=1", headers=bearer(token))
    assert response.status_code == 200, response.text


def test_the_shared_secret_keeps_working_beside_the_jwk_set(client: TestClient) -> None:
    """An HS256 token signed with BETTER_AUTH_SECRET (no kid) is accepted as before."""
    user = new_user_id()
    headers = auth(user, iss=BASE_URL, aud=BASE_URL)
    assert client.get(f"/api/{user}/tasks", headers=headers).status_code == 200


def test_a_jwk_set_in_a_file_verifies_tokens(
    database_url: str, engine: Engine, keys: dict[str, SigningKey], tmp_path: Path
) -> None:
    """TASKTRAIL_JWKS_FILE: the set is read at start, and its keys verify tokens."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwk_set(keys["ES256"], keys["EdDSA"])))
    user = new_user_id()
    with jwks_client(database_url, engine, jwks_file=path) as client:
        for algorithm in ("ES256", "EdDSA"):
            token = keys[algorithm].sign(better_auth_claims(user))
            response = client.get(f"/api/{user}/tasks", headers=bearer(token))
            assert response.status_code == 200, response.text
        token = keys["RS256"].sign(better_auth_claims(user))
        assert client.get(f"/api/{user}/tasks", headers=bearer(token)).status_code == 401


def test_the_file_and_the_url_can_be_used_together(
    database_url: str, engine: Engine, keys: dict[str, SigningKey], tmp_path: Path
) -> None:
    """With both set, the keys of the file and those of the URL all verify tokens."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwk_set(keys["ES256"])))
    user = new_user_id()
    with (
        jwks_server(jwk_set(keys["EdDSA"])) as server,
        jwks_client(database_url, engine, jwks_file=path, jwks_url=server.url) as client,
    ):
        for algorithm in ("ES256", "EdDSA"):
            token = keys[algorithm].sign(better_auth_claims(user))
            assert client.get(f"/api/{user}/tasks", headers=bearer(token)).status_code == 200


BAD_FILES = {
    "missing": None,
    "not-json": "{keys",
    "not-a-set": '{"kty": "OKP"}',
    "empty-set": '{"keys": []}',
    "only-unusable-keys": '{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}]}',
}


@pytest.mark.parametrize("content", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_an_unusable_jwks_file_refuses_to_start(
    database_url: str, engine: Engine, tmp_path: Path, content: str | None
) -> None:
    """A missing file, or one without a usable key, is a ConfigurationError at start."""
    path = tmp_path / "jwks.json"
    if content is not None:
        path.write_text(content)
    settings = make_settings(database_url, jwks_file=path)
    with pytest.raises(ConfigurationError, match="TASKTRAIL_JWKS_FILE"):
        create_app(settings, engine=engine)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://auth.example.test/jwks",
        "https://",
        "http://[::1/jwks",
        "https://auth.example.test:99999/jwks",
    ],
    ids=str,
)
def test_a_jwks_url_that_is_not_a_usable_http_url_refuses_to_start(
    database_url: str, engine: Engine, url: str
) -> None:
    """Only well-formed http(s) URLs are fetched: anything else is a ConfigurationError at start."""
    with pytest.raises(ConfigurationError, match="TASKTRAIL_JWKS_URL"):
        create_app(make_settings(database_url, jwks_url=url), engine=engine)


def test_a_verified_token_is_not_verified_again(
    client: TestClient, keys: dict[str, SigningKey]
) -> None:
    """The same EdDSA token twice: both accepted (the second from the kept verification)."""
    user = new_user_id()
    token = keys["EdDSA"].sign(better_auth_claims(user, exp=int(time.time()) + 60))
    for _ in range(2):
        assert client.get(f"/api/{user}/tasks", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("TASKTRAIL_JWKS_FILE", "missing.json", "TASKTRAIL_JWKS_FILE cannot be used"),
        ("TASKTRAIL_JWKS_URL", "file:///etc/passwd", "TASKTRAIL_JWKS_URL must be an http(s) URL"),
    ],
    ids=["missing-file", "file-url"],
)
def test_serve_refuses_an_unusable_jwk_set_setting_with_a_message(
    tmp_path: Path, setting: str, value: str, message: str
) -> None:
    """`tasktrail serve` exits 2 and says what to fix, before any server starts."""
    env = {"BETTER_AUTH_SECRET": SECRET, setting: value}
    result = run_cli("serve", "--port", str(free_tcp_port()), cwd=tmp_path, **env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
