"""What the service logs about JWK set tokens: never a name, an email or the token itself."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import httpx2
import jwt

from tests.conftest import SECRET
from tests.jwks_helpers import (
    BASE_URL,
    bearer,
    better_auth_claims,
    hmac_signed,
    jwk_set,
    jwks_server,
    make_key,
)
from tests.processes import served

NAME = "Ada Lovelace"
EMAIL = "ada.lovelace@example.test"


def test_names_emails_and_tokens_never_reach_the_log(tmp_path: Path) -> None:
    """A served instance logs its key set and each request, but no claim besides sub, nor tokens."""
    key, stranger, short = make_key("EdDSA"), make_key("EdDSA"), make_key("RS256", rsa_bits=1024)
    user = "user-logged"
    claims = better_auth_claims(user)
    assert (claims["name"], claims["email"]) == (NAME, EMAIL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        weak = short.sign(claims)
    tokens = [
        key.sign(claims),  # accepted
        key.sign(better_auth_claims(user, exp=int(time.time()) - 3600)),  # expired
        key.sign(better_auth_claims(user, aud="https://elsewhere.example.test")),
        stranger.sign(claims),  # an unknown kid
        key.sign(claims, kid=stranger.kid),
        hmac_signed({"alg": "HS256", "kid": key.kid}, claims, json.dumps(key.jwk).encode()),
        weak,  # its key was skipped when the set was loaded
        "Bearer-garbage." + EMAIL,
    ]
    with jwks_server(jwk_set(key, short)) as server:
        env = {
            "BETTER_AUTH_SECRET": SECRET,
            "TASKTRAIL_JWKS_URL": server.url,
            "TASKTRAIL_JWT_ISSUER": BASE_URL,
            "TASKTRAIL_JWT_AUDIENCE": BASE_URL,
        }
        with served(tmp_path, **env) as (base_url, log_file, _):
            statuses = [
                httpx2.get(f"{base_url}/api/{user}/tasks", headers=bearer(token)).status_code
                for token in tokens
            ]
    assert statuses == [200] + [401] * (len(tokens) - 1)
    log = log_file.read_text()
    events = [json.loads(line)["event"] for line in log.splitlines() if line.startswith("{")]
    assert "loaded the JWK set" in events
    assert "a key of the JWK set is skipped" in events
    assert events.count("request") >= len(tokens)
    for secret in (NAME, EMAIL, "Lovelace", "ada.lovelace", SECRET):
        assert secret not in log
    for token in tokens:
        for part in token.split("."):
            if len(part) > 8:
                assert part not in log, token
