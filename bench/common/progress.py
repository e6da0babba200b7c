"""Progress lines of a benchmark run: on stderr, so that stdout holds the results alone."""

from __future__ import annotations

import sys


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
