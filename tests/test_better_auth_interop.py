"""A real Better Auth server (its JWT plugin, on Node.js) issues tokens that tasktrail accepts.

The server lives in tests/interop/better_auth/. Its packages are installed with npm, without a
lock file, into .interop-cache/ (ignored by git), once per change of its package.json. Without
node or npm, or when the install fails (no registry), the test skips and says why.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import jwt
import pytest
from sqlalchemy import Engine

from tests.conftest import free_tcp_port
from tests.jwks_helpers import bearer, jwks_client
from tests.processes import wait_until_answering

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "interop" / "better_auth"
CACHE = ROOT / ".interop-cache" / "better_auth"
SECRET = "interop-secret-that-is-long-enough-for-better-auth-0123456789"
NPM_INSTALL_SECONDS = 600


def installed_server() -> Path:
    """The cache directory with the server script and its node_modules, installed if need be.

    The suite's processes share the cache: the first to get here installs while the others
    wait on the lock, then find it installed (two npm installs in one directory corrupt it)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Better Auth interop needs node and npm on PATH; they were not found")
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE.parent / "better_auth.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        return _install(npm)


def _install(npm: str) -> Path:
    manifest = (SOURCE / "package.json").read_text()
    stamp = CACHE / "node_modules" / ".tasktrail-installed-from"
    script = (SOURCE / "server.mjs").read_bytes()
    installed = CACHE / "server.mjs"
    # Rewritten only when it changed: a server of another process may be reading it.
    if not installed.exists() or installed.read_bytes() != script:
        installed.write_bytes(script)
    if not stamp.exists() or stamp.read_text() != manifest:
        (CACHE / "package.json").write_text(manifest)
        # Short network timeouts: an offline machine skips in a minute, not in ten.
        install = [npm, "install", "--no-package-lock", "--no-audit", "--no-fund"]
        network = ["--fetch-timeout=30000", "--fetch-retries=1"]
        try:
            result = subprocess.run(
                [*install, *network],
                cwd=CACHE,
                capture_output=True,
                text=True,
                timeout=NPM_INSTALL_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm install of Better Auth took over {NPM_INSTALL_SECONDS} s")
        if result.returncode != 0:
            head = "\n".join(result.stderr.strip().splitlines()[:3])
            pytest.skip(f"npm install of Better Auth failed (is the registry reachable?):\n{head}")
        stamp.write_text(manifest)
    return CACHE


@pytest.fixture(scope="module")
def better_auth() -> Iterator[str]:
    """A Better Auth server with the JWT plugin on a free loopback port; yields its base URL."""
    cache = installed_server()
    port = free_tcp_port()
    base_url = f"http://127.0.0.1:{port}"
    log = cache / f"server-{port}.log"  # one per process of the suite
    with log.open("w") as output:
        process = subprocess.Popen(
            ["node", "server.mjs"],
            cwd=cache,
            env={"PATH": os.environ["PATH"], "PORT": str(port), "BETTER_AUTH_SECRET": SECRET},
            stdout=output,
            stderr=output,
        )
        try:
            wait_until_answering(
                process,
                log,
                lambda: httpx2.get(f"{base_url}/api/auth/jwks", timeout=1).status_code == 200,
                "Better Auth",
            )
            yield base_url
        finally:
            process.terminate()
            process.wait(timeout=10)
    log.unlink()  # what it said is in the assertion that needed it


def signed_in_tokens(base_url: str) -> tuple[str, str, str]:
    """Sign a new user up; their id, the JWT of /api/auth/token and that of `set-auth-jwt`."""
    with httpx2.Client(base_url=base_url, timeout=10) as browser:
        signed_up = browser.post(
            "/api/auth/sign-up/email",
            json={
                "email": f"ada-{time.time_ns()}@example.test",
                "password": "correct-horse-battery-staple",
                "name": "Ada Lovelace",
            },
        )
        assert signed_up.status_code == 200, signed_up.text
        user_id: str = signed_up.json()["user"]["id"]
        issued = browser.get("/api/auth/token")
        assert issued.status_code == 200, issued.text
        session = browser.get("/api/auth/get-session")
        assert session.status_code == 200, session.text
        return user_id, issued.json()["token"], session.headers["set-auth-jwt"]


def test_tasktrail_accepts_the_tokens_of_a_real_better_auth(
    better_auth: str, database_url: str, engine: Engine
) -> None:
    """Both ways a Better Auth frontend gets a JWT give a token that creates and reads tasks."""
    user_id, token, header_token = signed_in_tokens(better_auth)
    assert jwt.get_unverified_header(token).keys() == {"alg", "kid"}
    jwks_url = f"{better_auth}/api/auth/jwks"
    with jwks_client(
        database_url, engine, jwks_url=jwks_url, jwt_issuer=better_auth, jwt_audience=better_auth
    ) as client:
        for each in (token, header_token):
            created = client.post(
                f"/api/{user_id}/tasks", json={"title": "via Better Auth"}, headers=bearer(each)
            )
            assert created.status_code == 201, created.text
            read = client.get(f"/api/{user_id}/tasks/{created.json()['id']}", headers=bearer(each))
            assert read.status_code == 200, read.text
        other = client.get(f"/api/{user_id}-other/tasks", headers=bearer(token))
        assert other.status_code == 403
