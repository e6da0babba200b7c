"""Opaque keyset cursors, bound to the query parameters they were made for.

A cursor is base64url JSON of the last row's sort key, the user's seq when the walk began (its
snapshot), and a fingerprint of the path and parameters (all but `limit`, which may change
between pages), followed by an HMAC of that JSON under a key derived from the service's secret.
A cursor the service did not make, or one altered in any way, is refused before its content is
read: its key values never reach a query (a forged one held integers past 2^63 and NUL bytes,
which were 500s). Given with other parameters, it is refused too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson


class InvalidCursor(ValueError):
    """The cursor is not one of ours, or belongs to other parameters."""


def fingerprint(path: str, parameters: Mapping[str, Sequence[str]]) -> str:
    """What a cursor is bound to: the path (so the user) and every parameter but limit."""
    canonical = orjson.dumps(
        {
            "path": path,
            "parameters": {
                name: sorted(values)
                for name, values in parameters.items()
                if name not in ("limit", "cursor")
            },
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a walk stands: the last key handed out, and the user's seq when it began."""

    key: list[Any]
    snapshot_seq: int


_TAG_BYTES = 16  # 128 bits of HMAC-SHA256: forging one is out of reach, and the URL stays short


def cursor_key(secret: bytes) -> bytes:
    """The cursors' own key, derived from the service's secret: never the secret itself."""
    return hmac.new(secret, b"tasktrail list cursor v1", hashlib.sha256).digest()


def encode_cursor(cursor: Cursor, parameters_fingerprint: str, key: bytes) -> str:
    payload = orjson.dumps({"k": cursor.key, "s": cursor.snapshot_seq, "p": parameters_fingerprint})
    tag = hmac.new(key, payload, hashlib.sha256).digest()[:_TAG_BYTES]
    return f"{_b64(payload)}.{_b64(tag)}"


def decode_cursor(text: str, parameters_fingerprint: str, key: bytes) -> Cursor:
    not_ours = InvalidCursor(
        "the cursor is not one this service made, or it was altered; take it from the Link header"
    )
    encoded_payload, dot, encoded_tag = text.partition(".")
    if not dot:
        raise not_ours
    try:
        payload_bytes = _unb64(encoded_payload)
        tag = _unb64(encoded_tag)
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise not_ours from None
    expected = hmac.new(key, payload_bytes, hashlib.sha256).digest()[:_TAG_BYTES]
    if not hmac.compare_digest(tag, expected):
        raise not_ours
    try:
        payload = orjson.loads(payload_bytes)
    except orjson.JSONDecodeError:
        raise not_ours from None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("k"), list)
        or not isinstance(payload.get("s"), int)
        or isinstance(payload.get("s"), bool)
        or payload["s"] < 0
    ):
        raise not_ours
    if payload.get("p") != parameters_fingerprint:
        raise InvalidCursor(
            "the cursor was made for other query parameters; only limit may change between pages"
        )
    return Cursor(list(payload["k"]), payload["s"])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Strict: only the one spelling `_b64` gives. Base64's last character carries spare bits,
    so "...A" and "...B" can decode alike; such a twin is an altered cursor all the same."""
    decoded = base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode("ascii"))
    if _b64(decoded) != text:
        raise ValueError("not the canonical base64url of its bytes")
    return decoded
