"""Reading a JWK set: usable keys by kid, each with its one algorithm; anything else is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tasktrail.api.auth.jwks import JwkSetError, parse_jwk_set
from tests.jwks_helpers import make_key

Member = dict[str, Any]


def _ed25519(**changes: Any) -> Member:
    member = make_key("EdDSA").jwk
    member.update(changes)
    return {name: value for name, value in member.items() if value is not None}


def _document(*members: Any) -> bytes:
    return json.dumps({"keys": list(members)}).encode()


@pytest.mark.parametrize(
    ("algorithm", "with_alg"),
    [
        ("EdDSA", True),
        ("EdDSA", False),
        ("ES256", True),
        ("ES256", False),
        ("ES384", False),
        ("ES512", False),
        ("RS256", False),
        ("PS256", True),
    ],
)
def test_a_key_gets_its_alg_or_the_one_its_type_implies(algorithm: str, with_alg: bool) -> None:
    """The key's alg when present, else OKP Ed25519 EdDSA, EC by curve, RSA RS256."""
    key = make_key(algorithm, with_alg=with_alg)
    keys = parse_jwk_set(_document(key.jwk), "test")
    assert list(keys) == [key.kid]
    assert keys[key.kid].algorithm == algorithm


SKIPPED: dict[str, Callable[[], Any]] = {
    "not-an-object": lambda: "a key",
    "no-kid": lambda: _ed25519(kid=None),
    "empty-kid": lambda: _ed25519(kid=""),
    "encryption-key": lambda: _ed25519(use="enc"),
    "private-part": lambda: _ed25519(d="AAAA"),
    "symmetric": lambda: {"kty": "oct", "k": "c2VjcmV0", "kid": "oct"},
    "symmetric-without-k": lambda: {"kty": "oct", "alg": "HS256", "kid": "oct"},
    "unknown-kty": lambda: _ed25519(kty="XYZ"),
    "kty-not-a-string": lambda: _ed25519(kty={"a": 1}),
    "alg-none": lambda: _ed25519(alg="none"),
    "alg-hmac": lambda: _ed25519(alg="HS256"),
    "alg-of-another-key-type": lambda: _ed25519(alg="RS256"),
    "alg-not-a-string": lambda: _ed25519(alg=["EdDSA"]),
    "x25519-curve": lambda: _ed25519(crv="X25519"),
    "missing-x": lambda: _ed25519(x=None),
    "es256-on-p521": lambda: {**make_key("ES512", with_alg=False).jwk, "alg": "ES256"},
    "rsa-without-n": lambda: {
        name: value for name, value in make_key("RS256").jwk.items() if name != "n"
    },
    "rsa-1024-bits": lambda: make_key("RS256", rsa_bits=1024).jwk,
}


@pytest.mark.parametrize("member", SKIPPED.values(), ids=SKIPPED.keys())
def test_an_unusable_key_is_skipped_and_the_rest_kept(member: Callable[[], Any]) -> None:
    """A key that cannot verify safely is left out; a usable key beside it stays."""
    good = make_key("EdDSA")
    keys = parse_jwk_set(_document(member(), good.jwk), "test")
    assert list(keys) == [good.kid]


def test_a_repeated_kid_keeps_the_first_key() -> None:
    """Two keys under one kid: the first listed is used, the second skipped."""
    first, second = make_key("EdDSA"), make_key("ES256")
    duplicate = {**second.jwk, "kid": first.kid}
    keys = parse_jwk_set(_document(first.jwk, duplicate), "test")
    assert keys[first.kid].algorithm == "EdDSA"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", r"not JSON"),
        (b"\xff\xfe\x00", r"not JSON"),
        (b"[" * 100_000, r"nested too deep"),
        (b"null", r'no "keys" list'),
        (b'{"keys": {}}', r'no "keys" list'),
        (b'{"keys": []}', r"no usable key"),
        (_document({"kty": "oct", "k": "c2VjcmV0", "kid": "oct"}), r"no usable key"),
    ],
    ids=["empty", "not-utf", "deep-nesting", "null", "keys-not-a-list", "no-keys", "only-oct"],
)
def test_a_document_without_a_usable_key_is_refused(raw: bytes, reason: str) -> None:
    """JwkSetError names what is wrong with the document; nothing else escapes."""
    with pytest.raises(JwkSetError, match=reason):
        parse_jwk_set(raw, "test")
