"""The contract's bounds on what a request carries, stated once for the code that enforces them
and the document that tells clients."""

from __future__ import annotations

MAX_BODY_BYTES = 64 * 1024
# An X-Request-ID the client sends is kept when it is this many of A-Z a-z 0-9 . _ - at most.
REQUEST_ID_MAX_LENGTH = 128
