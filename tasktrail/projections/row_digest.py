"""The digest of a `tasks` row, computed alike from the fold (in Python) and from the stored row
(in PostgreSQL's SQL), so the rebuild can check a table of millions of rows without reading it
back: the sums of the digests of both sides must be equal.

The row is written as text, one field after the other, each followed by `|`: NULL as `~`, text
(the id too) as `<length in characters>:<text>`, booleans as `1`/`0`, integers in decimal,
instants as microseconds since 1970-01-01 UTC, a JSON list of strings as PostgreSQL prints a
jsonb array. Text carries its length, so no value can pass for another. The digest is the
first 60 bits of the SHA-256 of that text's UTF-8: a sum of a few million of them stays exact in
PostgreSQL's numeric and in Python's int, and is an order-independent checksum of the table.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from tasktrail.domain.fields import ROW_COLUMNS, STATE_FIELDS, Kind

_ESCAPED = re.compile(r'["\\\x00-\x1f]')
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _text(value: object) -> str:
    text = str(value)  # the id arrives as a UUID or as its text
    return f"{len(text)}:{text}"


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _instant(value: datetime) -> str:
    return str((value - _EPOCH) // _MICROSECOND)


def _strings(value: Sequence[str]) -> str:
    """A list of strings as PostgreSQL writes a jsonb array: `["a", "b"]`. It escapes `"`,
    backslash and control characters as JSON does, alike with json.dumps; other text is raw."""
    if not value:
        return "[]"
    # The values alone are searched: the separator's own quotes would send every list of two
    # or more down the slow path.
    if _ESCAPED.search("".join(value)):
        return json.dumps(list(value), ensure_ascii=False)
    joined = '", "'.join(value)
    return f'["{joined}"]'


# Per kind of column: how Python writes a value, and how PostgreSQL writes the column `{}`.
_KINDS: dict[str, tuple[Callable[[Any], str], str]] = {
    "text": (_text, "length({0}::text) || ':' || {0}::text"),
    "flag": (_flag, "CASE WHEN {0} THEN '1' ELSE '0' END"),
    "integer": (str, "{0}::text"),
    "instant": (_instant, "(extract(epoch FROM {0}) * 1000000)::bigint::text"),
    "strings": (_strings, "{0}::text"),
}

# The columns of `tasks`, in table order, and their kinds (fields.py); an id is written as text.
COLUMN_KINDS: tuple[tuple[str, str], ...] = tuple(
    (name, Kind.TEXT.value if kind is Kind.ID else kind.value) for name, kind in ROW_COLUMNS
)
_WRITERS = tuple(_KINDS[kind][0] for _, kind in COLUMN_KINDS)


# The columns that may hold NULL: the nullable fields and their folded copies.
_NULLABLE = frozenset(
    name
    for field in STATE_FIELDS
    if field.nullable
    for name in (field.name, f"{field.name}_folded")
)


def _value_text(kind: Kind, name: str) -> str:
    """The f-string piece that writes column `name` (a local of that name), its `|` included:
    each kind's writer of `_KINDS`, inlined where it is an expression."""
    if name in _NULLABLE:
        return f"{{_maybe(_KINDS[{kind.value!r}][0], {name})}}"
    return {
        Kind.ID: f"{{len({name})}}:{{{name}}}|",
        Kind.TEXT: f"{{len({name})}}:{{{name}}}|",
        Kind.FLAG: f"{{'1' if {name} else '0'}}|",
        Kind.INTEGER: f"{{{name}}}|",
        Kind.INSTANT: f"{{_instant({name})}}|",
        Kind.STRINGS: f"{{_strings({name})}}|",
    }[kind]


def _compiled_row_digest() -> Callable[[Sequence[Any]], int]:
    """`looped_row_digest` written out column by column, from `ROW_COLUMNS`, once at import.

    The rebuild digests every task, and the loop costs twice as much as the written-out form;
    generating that form from the declaration keeps one list of the columns (a test holds the
    two to the same digests)."""
    names = [name for name, _ in ROW_COLUMNS]
    ids = [name for name, kind in ROW_COLUMNS if kind is Kind.ID]
    text = "".join(_value_text(kind, name) for name, kind in ROW_COLUMNS)
    source = (
        "def row_digest(values):\n"
        f"    ({', '.join(names)},) = values\n"
        + "".join(f"    {name} = str({name})\n" for name in ids)
        + f'    text = f"""{text}"""\n'
        "    return int.from_bytes(_sha256(text.encode()).digest()[:8]) >> 4\n"
    )
    namespace: dict[str, Any] = {
        "_maybe": _maybe,
        "_KINDS": _KINDS,
        "_instant": _instant,
        "_strings": _strings,
        "_sha256": hashlib.sha256,
    }
    exec(compile(source, f"<row_digest of {__name__}>", "exec"), namespace)  # noqa: S102
    digest: Callable[[Sequence[Any]], int] = namespace["row_digest"]
    return digest


def looped_row_digest(values: Sequence[Any]) -> int:
    """`row_digest` from `COLUMN_KINDS`, for the test that they agree."""
    text = "".join(
        "~|" if value is None else f"{write(value)}|"
        for write, value in zip(_WRITERS, values, strict=True)
    )
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8]) >> 4


def _maybe(write: Callable[[Any], str], value: Any) -> str:
    return "~|" if value is None else f"{write(value)}|"


def sql_row_digest() -> str:
    """The same digest as a PostgreSQL expression over the columns of the table in FROM."""
    fields = " || ".join(
        f"coalesce({_KINDS[kind][1].format(name)} || '|', '~|')" for name, kind in COLUMN_KINDS
    )
    return (
        f"('x' || left(encode(sha256(convert_to({fields}, 'UTF8')), 'hex'), 15))::bit(60)::bigint"
    )


# The digest of a row given as its values in `COLUMN_KINDS` order (the id as text or UUID).
row_digest = _compiled_row_digest()
