"""The JWK set at TASKTRAIL_JWKS_URL follows key rotations and survives its server's outages."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import anyio
import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tasktrail.api.app import create_app
from tasktrail.api.auth.jwks import JwkSetSource
from tasktrail.api.auth.jwks_fetch import MAX_JWKS_BYTES, REFETCH_INTERVAL_SECONDS, RemoteJwkSet
from tests.conftest import auth, free_tcp_port, live_server, make_settings, new_user_id
from tests.jwks_helpers import (
    JwksServer,
    SigningKey,
    bearer,
    better_auth_claims,
    jwk_set,
    jwks_client,
    jwks_server,
    make_key,
    same_kid,
)
from tests.test_auth import assert_unauthorized


@pytest.fixture(scope="module")
def old() -> SigningKey:
    """The key in use before the rotation: an ES256 key, as an older Better Auth set had."""
    return make_key("ES256")


@pytest.fixture(scope="module")
def new() -> SigningKey:
    return make_key("EdDSA")


@pytest.fixture
def server(old: SigningKey) -> Iterator[JwksServer]:
    with jwks_server(jwk_set(old)) as server:
        yield server


def status(client: TestClient, key: SigningKey) -> int:
    """The status of a list request with a fresh token signed by `key` (never one kept verified)."""
    user = new_user_id()
    response = client.get(f"/api/{user}/tasks", headers=bearer(key.sign(better_auth_claims(user))))
    return response.status_code


def test_a_token_under_a_new_kid_works_without_a_restart(
    database_url: str, engine: Engine, server: JwksServer, old: SigningKey, new: SigningKey
) -> None:
    """After a rotation the unknown kid makes the service fetch the set again; both keys verify."""
    with jwks_client(database_url, engine, refetch_interval=0.0, jwks_url=server.url) as client:
        assert status(client, old) == 200
        assert server.count() == 1  # the fetch at start
        server.serve(jwk_set(old, new))  # Better Auth lists keys oldest first
        assert status(client, new) == 200
        assert server.count() == 2
        assert status(client, old) == 200  # the old key is still in the set: its tokens work
        assert status(client, new) == 200
        assert server.count() == 2


def test_a_key_withdrawn_from_the_set_stops_verifying_tokens_it_verified(
    database_url: str, engine: Engine, server: JwksServer, old: SigningKey, new: SigningKey
) -> None:
    """Once a fetch drops a key, even a token already verified with it is refused."""
    user = new_user_id()
    token = old.sign(better_auth_claims(user))
    server.serve(jwk_set(old, new))
    with jwks_client(database_url, engine, refetch_interval=0.0, jwks_url=server.url) as client:
        assert client.get(f"/api/{user}/tasks", headers=bearer(token)).status_code == 200
        server.serve(jwk_set(new))
        assert status(client, make_key("EdDSA")) == 401  # an unknown kid: the set is fetched
        assert server.count() == 2
        response = client.get(f"/api/{user}/tasks", headers=bearer(token))
        assert_unauthorized(response, r"no key.*kid")
        assert status(client, new) == 200


def test_a_key_replaced_under_its_kid_stops_verifying_tokens_the_old_one_verified(
    database_url: str, engine: Engine, server: JwksServer, old: SigningKey
) -> None:
    """The set republishes a kid with another key (a compromised key replaced): a token the
    old key verified, kept verified since, is refused once the set is fetched again."""
    user = new_user_id()
    token = old.sign(better_auth_claims(user))
    replacement = same_kid(old, make_key("ES256"))
    with jwks_client(database_url, engine, refetch_interval=0.0, jwks_url=server.url) as client:
        assert client.get(f"/api/{user}/tasks", headers=bearer(token)).status_code == 200
        server.serve(jwk_set(replacement))
        assert status(client, make_key("EdDSA")) == 401  # an unknown kid: the set is fetched
        assert server.count() == 2
        response = client.get(f"/api/{user}/tasks", headers=bearer(token))
        assert_unauthorized(response, r"signature")
        assert status(client, replacement) == 200


def test_an_unknown_kid_triggers_at_most_one_fetch_per_interval(
    sqlite_url: str, sqlite_engine: Engine, server: JwksServer
) -> None:
    """Tokens with made-up kids cause one fetch per refetch interval, however many arrive."""
    stranger = make_key("EdDSA")
    with jwks_client(
        sqlite_url, sqlite_engine, refetch_interval=1.0, jwks_url=server.url
    ) as client:
        assert [status(client, stranger) for _ in range(5)] == [401] * 5
        assert server.count() == 1  # the fetch at start was under 1 s ago
        time.sleep(1.1)
        assert [status(client, stranger) for _ in range(5)] == [401] * 5
        assert server.count() == 2
        time.sleep(1.1)
        assert status(client, stranger) == 401
        assert server.count() == 3


def test_by_default_an_unknown_kid_refetches_at_most_once_per_30_seconds(
    sqlite_url: str, sqlite_engine: Engine, server: JwksServer
) -> None:
    """With the default interval, a second of unknown kids after the start fetch fetches nothing."""
    assert REFETCH_INTERVAL_SECONDS == 30
    app = create_app(make_settings(sqlite_url, jwks_url=server.url), engine=sqlite_engine)
    stranger = make_key("EdDSA")
    with TestClient(app) as client:
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            assert status(client, stranger) == 401
    assert server.count() == 1


def test_the_default_interval_lets_the_first_unknown_kid_fetch_and_no_other(
    server: JwksServer,
) -> None:
    """A RemoteJwkSet that never fetched fetches for the first unknown kid, then waits 30 s."""
    remote = RemoteJwkSet(server.url, JwkSetSource())

    async def ask_five_times() -> list[bool]:
        return [await remote.refresh_for_unknown_kid() for _ in range(5)]

    assert anyio.run(ask_five_times) == [True, False, False, False, False]
    assert server.count() == 1


def test_concurrent_requests_with_a_new_kid_share_one_fetch(
    sqlite_url: str, sqlite_engine: Engine, server: JwksServer, old: SigningKey, new: SigningKey
) -> None:
    """Requests that arrive while the set is being fetched wait for that fetch and all pass."""
    settings = make_settings(sqlite_url, jwks_url=server.url)
    app = create_app(settings, engine=sqlite_engine, jwks_refetch_interval=0.0)
    user = new_user_id()
    headers = bearer(new.sign(better_auth_claims(user)))
    with live_server(app) as base_url:
        assert server.count() == 1
        server.serve(jwk_set(old, new))
        server.delay = 0.5  # every request below arrives while the fetch is under way

        def get(_: int) -> int:
            return httpx2.get(
                f"{base_url}/api/{user}/tasks", headers=headers, timeout=10
            ).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(get, range(8)))
    assert statuses == [200] * 8
    assert server.count() == 2


def test_the_last_good_set_keeps_working_while_its_server_is_down(
    database_url: str, engine: Engine, server: JwksServer, old: SigningKey, new: SigningKey
) -> None:
    """With the JWKS server gone, known keys still verify; an unknown kid is a 401, not a hang."""
    with jwks_client(database_url, engine, refetch_interval=0.0, jwks_url=server.url) as client:
        assert status(client, old) == 200
        server.stop()
        assert status(client, old) == 200
        assert status(client, new) == 401  # the fetch it triggers fails at once
        assert status(client, old) == 200


BAD_ANSWERS = {
    "server-error": (500, b'{"error": "down"}'),
    "not-json": (200, b"<html>maintenance</html>"),
    "no-keys": (200, b'{"keys": []}'),
    "not-a-set": (200, b'["keys"]'),
}


@pytest.mark.parametrize(("code", "body"), BAD_ANSWERS.values(), ids=BAD_ANSWERS.keys())
def test_a_bad_answer_keeps_the_last_good_set(
    sqlite_url: str,
    sqlite_engine: Engine,
    server: JwksServer,
    old: SigningKey,
    new: SigningKey,
    code: int,
    body: bytes,
) -> None:
    """An error status or a body that is no usable JWK set changes nothing: old keys verify."""
    with jwks_client(
        sqlite_url, sqlite_engine, refetch_interval=0.0, jwks_url=server.url
    ) as client:
        server.status, server.body = code, body
        assert status(client, new) == 401
        assert server.count() == 2
        assert status(client, old) == 200


def test_an_answer_over_1_mib_is_refused_and_the_last_good_set_kept(
    sqlite_url: str, sqlite_engine: Engine, server: JwksServer, old: SigningKey, new: SigningKey
) -> None:
    """A set padded past the size cap is not read, even though it would list the new key."""
    with jwks_client(
        sqlite_url, sqlite_engine, refetch_interval=0.0, jwks_url=server.url
    ) as client:
        server.serve(jwk_set(old, new))
        server.body += b" " * MAX_JWKS_BYTES
        assert status(client, new) == 401
        assert status(client, old) == 200
        server.serve(jwk_set(old, new))
        assert status(client, new) == 200


def test_the_service_starts_while_the_jwks_url_is_down_and_loads_the_set_later(
    sqlite_url: str, sqlite_engine: Engine, old: SigningKey
) -> None:
    """A JWKS server down at start: shared-secret tokens work, and JWKS tokens once it is up."""
    port = free_tcp_port()
    url = f"http://127.0.0.1:{port}/api/auth/jwks"
    with jwks_client(sqlite_url, sqlite_engine, refetch_interval=0.0, jwks_url=url) as client:
        user = new_user_id()
        assert client.get(f"/api/{user}/tasks", headers=auth(user)).status_code == 200
        assert status(client, old) == 401
        with jwks_server(jwk_set(old), port=port):
            assert status(client, old) == 200


def test_a_fetch_that_hangs_is_cut_off_at_the_timeout(server: JwksServer) -> None:
    """A JWKS server that does not answer costs the waiting request the timeout, no more."""
    server.delay = 3.0
    remote = RemoteJwkSet(server.url, JwkSetSource(), timeout=0.3)
    started = time.monotonic()
    assert anyio.run(remote.refresh) is False
    assert time.monotonic() - started < 1.5


def test_the_set_is_refreshed_in_the_background(
    server: JwksServer, old: SigningKey, new: SigningKey
) -> None:
    """Without any token asking, the set is fetched again every refresh period."""
    source = JwkSetSource()
    remote = RemoteJwkSet(server.url, source, refresh_period=0.1)

    async def run_for_a_while() -> None:
        assert await remote.refresh()
        server.serve(jwk_set(old, new))
        with anyio.move_on_after(0.35):
            await remote.keep_fresh()

    anyio.run(run_for_a_while)
    assert server.count() >= 3
    assert source.kids == [old.kid, new.kid]
