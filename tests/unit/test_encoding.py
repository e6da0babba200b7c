"""The canonical encoding: the bytes that are hashed and the timestamp text the service writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tasktrail.domain.encoding import canonical_json, format_timestamp, parse_timestamp


def api_md_one_liner(value: Any) -> bytes:
    """The canonical encoding exactly as api.md "Exact rules" writes it in Python."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# canonical_json


def test_canonical_json_sorts_keys_at_every_depth_without_spaces() -> None:
    """Keys are sorted in nested objects and in objects inside lists, with `,` and `:` only."""
    value = {"b": {"d": 1, "c": [{"f": True, "e": None}]}, "a": [3, 1, 2], "A": "x y"}
    assert canonical_json(value) == b'{"A":"x y","a":[3,1,2],"b":{"c":[{"e":null,"f":true}],"d":1}}'


def test_canonical_json_does_not_depend_on_insertion_order() -> None:
    """Two equal objects built in different key orders encode to the same bytes."""
    first = {"title": "t", "tags": ["a"], "due_at": None}
    second = {"due_at": None, "tags": ["a"], "title": "t"}
    assert canonical_json(first) == canonical_json(second)


@pytest.mark.parametrize(
    "text",
    ["Café", "日本語のタスク", "☕ and 🥛", "Ελληνικά"],
    ids=["latin", "cjk", "astral-emoji", "greek"],
)
def test_canonical_json_writes_non_ascii_as_raw_utf8(text: str) -> None:
    """Non-ASCII characters are written as their UTF-8 bytes, never as \\u escapes."""
    encoded = canonical_json({"title": text})
    assert encoded == b'{"title":"' + text.encode("utf-8") + b'"}'
    assert b"\\u" not in encoded


@pytest.mark.parametrize(
    "value",
    [
        {},
        [],
        None,
        {"changes": {"tags": ["home", "Café"], "due_at": "2026-11-24T10:15:00.000000Z"}},
        {"title": 'quote " and backslash \\ and newline \n', "priority": 3, "completed": False},
        {"z": {"y": {"x": {"w": [{"b": 1, "a": 2}]}}}},
        {"user_id": "u_8f3", "seq": 17, "request_id": None, "actor": "ü@example.org"},
        ["b", "a", {"d": -1, "c": 0}],
    ],
    ids=[
        "empty-object",
        "empty-list",
        "null",
        "update-changes",
        "escapes",
        "deep-nesting",
        "event-fields",
        "list-at-top",
    ],
)
def test_canonical_json_equals_the_api_md_python_one_liner(value: Any) -> None:
    """canonical_json gives the same bytes as the one-liner auditors are told to use."""
    assert canonical_json(value) == api_md_one_liner(value)


def test_canonical_json_returns_bytes() -> None:
    """The encoding is bytes, ready for hashing."""
    assert isinstance(canonical_json({"a": 1}), bytes)


# format_timestamp


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 11, 24, 10, 15, tzinfo=UTC), "2026-11-24T10:15:00.000000Z"),
        (datetime(2026, 11, 24, 10, 15, 0, 123456, tzinfo=UTC), "2026-11-24T10:15:00.123456Z"),
        (datetime(2026, 11, 24, 10, 15, 7, 42, tzinfo=UTC), "2026-11-24T10:15:07.000042Z"),
        (
            datetime(2026, 11, 24, 15, 45, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            "2026-11-24T10:15:00.000000Z",
        ),
        (
            datetime(2026, 11, 23, 22, 30, 1, 500000, tzinfo=timezone(timedelta(hours=-8))),
            "2026-11-24T06:30:01.500000Z",
        ),
        (
            datetime(2027, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),
            "2026-12-31T23:30:00.000000Z",
        ),
    ],
    ids=[
        "whole-seconds",
        "microseconds",
        "leading-zero-microseconds",
        "positive-offset",
        "negative-offset-crossing-midnight",
        "offset-crossing-the-year",
    ],
)
def test_format_timestamp_writes_utc_with_six_fractional_digits_and_z(
    moment: datetime, text: str
) -> None:
    """Any aware moment is written in UTC, with exactly six fractional digits and a Z."""
    assert format_timestamp(moment) == text


def test_format_timestamp_refuses_a_naive_datetime() -> None:
    """A datetime without a time zone is refused, not guessed."""
    with pytest.raises(ValueError, match="naive"):
        format_timestamp(datetime(2026, 11, 24, 10, 15))  # noqa: DTZ001 - naive on purpose


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), "0999-01-02T03:04:05.000000Z"),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00.000000Z"),
    ],
    ids=["year-999", "year-1"],
)
def test_format_timestamp_writes_a_four_digit_year(moment: datetime, text: str) -> None:
    """RFC 3339 years have four digits, so years before 1000 are zero-padded."""
    assert format_timestamp(moment) == text


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 24, 10, 15, 0, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(999, 12, 31, tzinfo=UTC),
    ],
    ids=["2026", "max", "epoch", "year-999"],
)
def test_parse_timestamp_reads_back_what_format_timestamp_writes(moment: datetime) -> None:
    """What the service writes, it can read again as the same instant."""
    assert parse_timestamp(format_timestamp(moment)) == moment


# parse_timestamp


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-11-24T10:15:00Z", datetime(2026, 11, 24, 10, 15, tzinfo=UTC)),
        ("2026-11-24T10:15:00.123456Z", datetime(2026, 11, 24, 10, 15, 0, 123456, tzinfo=UTC)),
        ("2026-11-24T10:15:00.5Z", datetime(2026, 11, 24, 10, 15, 0, 500000, tzinfo=UTC)),
        ("2026-11-24T10:15:00+00:00", datetime(2026, 11, 24, 10, 15, tzinfo=UTC)),
        ("2026-11-24T10:15:00-00:00", datetime(2026, 11, 24, 10, 15, tzinfo=UTC)),
        ("2026-11-24T15:45:00+05:30", datetime(2026, 11, 24, 10, 15, tzinfo=UTC)),
        ("2026-11-23T22:15:00.25-12:00", datetime(2026, 11, 24, 10, 15, 0, 250000, tzinfo=UTC)),
        ("2026-11-24t10:15:00z", datetime(2026, 11, 24, 10, 15, tzinfo=UTC)),
    ],
    ids=[
        "z",
        "six-digits",
        "one-digit",
        "plus-zero",
        "minus-zero",
        "positive-offset",
        "negative-offset-previous-day",
        "lowercase-t-and-z",
    ],
)
def test_parse_timestamp_accepts_z_and_offsets_as_the_same_utc_instant(
    text: str, moment: datetime
) -> None:
    """An RFC 3339 timestamp with Z or any offset reads as that instant, in UTC."""
    parsed = parse_timestamp(text)
    assert parsed == moment
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    ["2026-11-24T10:15:00", "2026-11-24T10:15:00.123456", "2026-11-24 10:15:00"],
    ids=["whole-seconds", "fraction", "space-separator"],
)
def test_parse_timestamp_refuses_a_naive_timestamp(text: str) -> None:
    """A timestamp without Z or an offset is refused with a reason that asks for a time zone."""
    with pytest.raises(ValueError, match="time zone"):
        parse_timestamp(text)


@pytest.mark.parametrize(
    "text",
    ["2026-11-24T10:15:00.1234567Z", "2026-11-24T10:15:00.123456789+02:00"],
    ids=["seven-digits-z", "nine-digits-offset"],
)
def test_parse_timestamp_refuses_more_than_six_fractional_digits(text: str) -> None:
    """More than six fractional digits is refused, not rounded or truncated."""
    with pytest.raises(ValueError, match="six fractional digits"):
        parse_timestamp(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tomorrow",
        "1732443300",
        "2026-11-24",
        "2026-11-24T10:15Z",
        "2026-11-24T10:15:00+0530",
        "2026-11-24T10:15:00+05",
        "2026-11-24T10:15:00 Z",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-11-24T25:00:00Z",
        "2026-11-24T10:60:00Z",
        "2026-11-24T10:15:60Z",
        "2026-11-24T10:15:00+24:00",
        "2026-11-24T10:15:00.Z",
        " 2026-11-24T10:15:00Z",
        "2026-11-24T10:15:00Z\n",
        "\uff12\uff10\uff12\uff16-11-24T10:15:00Z",  # fullwidth digits
    ],
    ids=[
        "empty",
        "word",
        "epoch-number",
        "date-only",
        "no-seconds",
        "offset-without-colon",
        "offset-hours-only",
        "space-before-z",
        "month-13",
        "february-30",
        "hour-25",
        "minute-60",
        "second-60",
        "offset-24-hours",
        "empty-fraction",
        "leading-space",
        "trailing-newline",
        "fullwidth-digits",
    ],
)
def test_parse_timestamp_refuses_garbage_with_a_value_error(text: str) -> None:
    """Anything that is not a valid RFC 3339 timestamp raises ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - the reason varies; ValueError is the contract
        parse_timestamp(text)


@pytest.mark.parametrize(
    "text",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"],
    ids=["before-year-1-in-utc", "after-year-9999-in-utc"],
)
def test_parse_timestamp_refuses_an_instant_outside_the_representable_range(text: str) -> None:
    """A well-formed timestamp whose UTC instant falls outside years 1..9999 raises ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - the docstring promises ValueError, not which
        parse_timestamp(text)
