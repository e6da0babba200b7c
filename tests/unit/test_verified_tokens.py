"""A verified token is kept until it expires: later requests skip the decode, never a check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from freezegun import freeze_time

from tasktrail.api.auth.tokens import (
    AuthenticationError,
    SharedSecret,
    TokenVerifier,
    VerificationKey,
)

SECRET = b"unit-test-secret-that-is-long-enough-0123456789"
START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LEEWAY = 30


class CountingSource:
    """The shared secret, counting how often a token's key was looked up (once per decode)."""

    def __init__(self) -> None:
        self.inner = SharedSecret(SECRET, "HS256")
        self.lookups = 0

    def resolve(self, header: dict[str, Any]) -> VerificationKey | None:
        self.lookups += 1
        return self.inner.resolve(header)


def token(sub: str, expires_in: int = 600, **claims: Any) -> str:
    payload = {"sub": sub, "exp": int(START.timestamp()) + expires_in, **claims}
    return jwt.encode(payload, SECRET, algorithm="HS256")


def verifier(source: CountingSource, keep: int = 100) -> TokenVerifier:
    return TokenVerifier([source], issuer=None, audience=None, leeway=LEEWAY, keep=keep)


@freeze_time(START)
def test_a_token_seen_again_is_not_decoded_again() -> None:
    """The second request with the same token is answered from what the first one verified."""
    source = CountingSource()
    check = verifier(source)
    first = check.verify(token("alice", role="auditor"))
    again = check.verify(token("alice", role="auditor"))
    assert first == again
    assert again.user_id == "alice"
    assert again.is_auditor
    assert source.lookups == 1


def test_a_kept_token_is_refused_once_it_expires() -> None:
    """Kept means until exp plus the leeway, exactly as long as the decode would accept it."""
    source = CountingSource()
    check = verifier(source)
    kept = token("alice", expires_in=60)
    with freeze_time(START) as clock:
        check.verify(kept)
        clock.tick(timedelta(seconds=60 + LEEWAY - 1))
        assert check.verify(kept).user_id == "alice"
        clock.tick(timedelta(seconds=2))
        with pytest.raises(AuthenticationError, match="expired"):
            check.verify(kept)


@freeze_time(START)
def test_a_token_altered_after_a_good_one_was_kept_is_still_refused() -> None:
    """The whole token is the key: a changed signature or claim is decoded, and fails."""
    check = verifier(CountingSource())
    good = token("alice")
    check.verify(good)
    header, payload, signature = good.split(".")
    forged_signature = (
        f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    )
    other_payload = token("mallory").split(".")[1]
    with pytest.raises(AuthenticationError, match="signature"):
        check.verify(forged_signature)
    with pytest.raises(AuthenticationError, match="signature"):
        check.verify(f"{header}.{other_payload}.{signature}")


@freeze_time(START)
def test_a_refused_token_is_not_kept() -> None:
    """Each try of a bad token is checked afresh."""
    source = CountingSource()
    check = verifier(source)
    bad = jwt.encode({"sub": "audit", "exp": int(START.timestamp()) + 60}, SECRET)
    for _ in range(2):
        with pytest.raises(AuthenticationError, match="sub"):
            check.verify(bad)
    assert source.lookups == 2


@freeze_time(START)
def test_the_kept_tokens_are_bounded_and_the_oldest_goes_first() -> None:
    """Past the bound the oldest token is forgotten and decoded again when it comes back."""
    source = CountingSource()
    check = verifier(source, keep=2)
    first, second, third = (token(name) for name in ("u1", "u2", "u3"))
    for each in (first, second, third):
        check.verify(each)
    assert source.lookups == 3
    check.verify(third)
    check.verify(second)
    assert source.lookups == 3  # still kept
    check.verify(first)
    assert source.lookups == 4  # forgotten, decoded again
