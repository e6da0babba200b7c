"""The canonical encoding: the bytes that are hashed, and the timestamp text the service writes.

Canonical JSON is `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
encoded as UTF-8: keys sorted at every depth, no spaces, non-ASCII as raw UTF-8. Event data holds
no floats, so for every event this equals RFC 8785 (JCS), and an auditor can reproduce it in any
language. Timestamps are always written with exactly six fractional digits and a `Z`, so the text
that is served and the text that is hashed are the same bytes.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

_TIMESTAMP_FORMAT = "%m-%dT%H:%M:%S.%fZ"  # the year is written apart, see format_timestamp

# RFC 3339 date-time with a mandatory offset and at most six fractional digits.
RFC3339_PATTERN = (
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$"
)
_RFC3339 = re.compile(RFC3339_PATTERN)


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with six fractional digits: `2026-11-24T10:15:00.000000Z`."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no place in the log; give it a time zone")
    utc = moment.astimezone(UTC)
    # Not strftime("%Y"): glibc does not pad years before 1000 to four digits.
    return f"{utc.year:04d}-{utc.strftime(_TIMESTAMP_FORMAT)}"


def parse_timestamp(text: str) -> datetime:
    """Read an RFC 3339 timestamp with an offset; raise ValueError with a reason otherwise."""
    match = _RFC3339.match(text)
    if match is None:
        if re.search(r"\.\d{7,}", text):
            raise ValueError("timestamps carry at most six fractional digits (microseconds)")
        raise ValueError(
            "expected an RFC 3339 timestamp with a time zone, like 2026-11-24T10:15:00Z"
        )
    normalised = text.upper().replace(" ", "T")
    if normalised.endswith("Z"):
        normalised = normalised[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(normalised)
    except ValueError as error:
        raise ValueError(f"not a valid date and time: {error}") from None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("the instant lies outside years 1 to 9999 in UTC") from None
