"""Opaque keyset cursors, bound to the query parameters they were made for.

A cursor is base64url JSON of the last row's sort key, the user's seq when the walk began (its
snapshot), and a fingerprint of the path and parameters (all but `limit`, which may change
between pages). Given with other parameters, it is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
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


def encode_cursor(cursor: Cursor, parameters_fingerprint: str) -> str:
    payload = orjson.dumps({"k": cursor.key, "s": cursor.snapshot_seq, "p": parameters_fingerprint})
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


def decode_cursor(text: str, parameters_fingerprint: str) -> Cursor:
    not_ours = InvalidCursor(
        "the cursor is not one this service made; take it from the Link header"
    )
    try:
        padded = text + "=" * (-len(text) % 4)
        payload = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeEncodeError, orjson.JSONDecodeError):
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
