"""Where a request's time goes, by layer, from py-spy's raw (folded) profiles.

    uv run python -m bench.http.profile_layers PROFILE.txt [PROFILE.txt ...]

Each argument is the output of `py-spy record -f raw` (one line per distinct stack: the frames,
outermost first, separated by ";", then the sample count). Files given together are added up,
so the profiles of several workers make one table. Each sample is counted once, for the
innermost frame that belongs to a layer: time in the json module called by structlog is
logging's, time in psycopg called by our query is psycopg's.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

# In order of the table. A frame belongs to the first layer one of whose path fragments its
# file name holds; "the rest" takes a sample none of whose frames belongs to any.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("psycopg (statements, results, pool)", ("/psycopg/", "/psycopg_pool/")),
    (
        "FastAPI dependencies and routing",
        ("/fastapi/routing.py", "/fastapi/dependencies/", "/starlette/routing.py"),
    ),
    (
        "Starlette and FastAPI middleware, responses",
        ("/starlette/", "/fastapi/"),
    ),
    ("uvicorn's HTTP protocol", ("/uvicorn/", "/httptools/")),
    (
        "token, logging and metrics, our middleware",
        (
            "/jwt/",
            "/structlog/",
            "/prometheus_client/",
            "/tasktrail/api/auth/tokens.py",
            "/tasktrail/api/http/request_context.py",
            "/tasktrail/api/http/metrics.py",
            "/tasktrail/api/http/head.py",
            "/tasktrail/logs.py",
        ),
    ),
    (
        "our domain: decide, seal, hash, fold, document",
        (
            "/tasktrail/domain/",
            "/tasktrail/events/",
            "/tasktrail/projections/",
        ),
    ),
    ("request body (pydantic, orjson)", ("/pydantic/", "/pydantic_core/", "/orjson/")),
    ("our route, unit of work, queries", ("/tasktrail/",)),
    ("asyncio, the event loop", ("/asyncio/", "/uvloop/")),
)
REST = "the rest (interpreter, no layer's frame)"
# "function (path/to/file.py:123)" or "function (path/to/file.py)"
_FRAME_FILE = re.compile(r"\(([^()]*?)(?::\d+)?\)$")


def layer_of(stack: Sequence[str]) -> str:
    """The layer of the innermost frame of `stack` (outermost first) that belongs to one."""
    for frame in reversed(stack):
        found = _FRAME_FILE.search(frame)
        if found is None:
            continue
        # py-spy names a module's file from its package root ("psycopg/cursor.py"), or in full
        # for a script: a leading "/" lets every fragment match at a directory's start.
        path = "/" + found.group(1).lstrip("/")
        for layer, fragments in LAYERS:
            if any(fragment in path for fragment in fragments):
                return layer
    return REST


def samples_by_layer(lines: Iterable[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        # py-spy puts the thread first ("process 123:..." / "thread (0x..)") when asked to;
        # those carry no file and fall through layer_of's loop.
        counts[layer_of(stack.split(";"))] += int(count)
    return counts


def shares(paths: Sequence[Path]) -> dict[str, float]:
    counts: Counter[str] = Counter()
    for path in paths:
        with path.open(encoding="utf-8", errors="replace") as profile:
            counts.update(samples_by_layer(profile))
    total = sum(counts.values())
    names = [layer for layer, _ in LAYERS] + [REST]
    return {name: (counts[name] / total if total else 0.0) for name in names}


def table(columns: dict[str, dict[str, float]]) -> str:
    """A markdown table: a row per layer, a column per profile set."""
    names = [layer for layer, _ in LAYERS] + [REST]
    lines = [
        "| layer of a request | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name in names:
        cells = " | ".join(f"{column[name]:.1%}" for column in columns.values())
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profiles", nargs="+", type=Path)
    options = parser.parse_args()
    print(table({"share of samples": shares(options.profiles)}))


if __name__ == "__main__":
    main()
