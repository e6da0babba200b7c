"""Each user's fair share of a process: a few requests at once, the rest in line, and a rate.

One user must not take the workers and the database connections from everyone else: twelve
slow requests of one user (a list of thousands of tags, or writes queued behind that user's own
stream lock) made another user's read wait seconds. So, per user and process:

- at most `TASKTRAIL_USER_CONCURRENCY` of their requests are served at once; the next ones wait
  in the user's own line, in order, and hold nothing while they wait (no thread, no connection);
  past `TASKTRAIL_USER_QUEUE` waiting, the answer is 429. A client that sends ten requests at
  once is served, only not all at the same moment; another user's request never waits for them.
- with `TASKTRAIL_USER_RATE` set, a token bucket (`TASKTRAIL_USER_BURST` deep) bounds the user's
  requests per second; past it, 429 with `Retry-After` and the `RateLimit-*` fields of the IETF
  draft. It is off by default: one process serves a few thousand requests a second, and a rate
  a real client never reaches would only refuse a benchmark.

The share is taken once the token names the user (api/routes/deps.py) and given back when the
response has been sent (request_context.py), or when a live stream starts: a stream lasts hours
and has its own limit (api/live/hub.py).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tasktrail.api.contract.problems import Problem

_HELD = "fair_share_user"  # the key, in the request's state, of the user whose share it holds


@dataclass(slots=True)
class _Line:
    """One user's requests in this process: those being served, and those waiting."""

    serving: int = 0
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class FairShare:
    def __init__(self, *, concurrency: int, queue: int, rate: float, burst: int) -> None:
        self.concurrency = concurrency
        self.queue = queue
        self.rate = rate
        self.burst = burst
        self._lines: dict[str, _Line] = {}
        self._buckets: dict[str, _Bucket] = {}

    def enter_now(self, user_id: str, state: dict[str, Any]) -> bool:
        """Take one of the user's places if one is free (the usual case, without a coroutine);
        False when the request must wait in line (`wait_in_line`); a 429 past the rate."""
        if _HELD in state:
            return True  # this request holds its place already
        if self.rate > 0:
            self._spend_token(user_id)
        line = self._lines.get(user_id)
        if line is None:
            self._lines[user_id] = _Line(serving=1)
        elif line.serving < self.concurrency:
            line.serving += 1
        else:
            return False
        state[_HELD] = user_id
        return True

    async def wait_in_line(self, user_id: str, state: dict[str, Any]) -> None:
        """After `enter_now` said no: wait in the user's line for a place, or a 429 if the line
        is full."""
        line = self._lines.setdefault(user_id, _Line())
        if line.serving < self.concurrency:
            line.serving += 1
        else:
            if len(line.waiting) >= self.queue:
                raise self._too_many(
                    f"This user already has {self.concurrency} requests being served and "
                    f"{len(line.waiting)} waiting here; send fewer at once.",
                    limit=self.concurrency,
                    remaining=0,
                    reset=1,
                )
            turn = asyncio.get_running_loop().create_future()
            line.waiting.append(turn)
            try:
                await turn  # `leave` hands its place over: `serving` does not change
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._release(user_id)  # handed a place just as the client went away
                elif turn in line.waiting:
                    line.waiting.remove(turn)
                raise
        state[_HELD] = user_id

    def leave(self, state: dict[str, Any]) -> None:
        """Give back the place this request holds, if it holds one (once only)."""
        user_id = state.pop(_HELD, None)
        if user_id is not None:
            self._release(user_id)

    def serving(self, user_id: str) -> int:
        line = self._lines.get(user_id)
        return 0 if line is None else line.serving

    def _release(self, user_id: str) -> None:
        line = self._lines[user_id]
        while line.waiting:
            turn = line.waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        line.serving -= 1
        if line.serving == 0:
            del self._lines[user_id]  # an idle user costs no memory

    def _spend_token(self, user_id: str) -> None:
        now = time.monotonic()
        bucket = self._buckets.get(user_id)
        if bucket is None:
            if len(self._buckets) >= 100_000:
                self._forget_full_buckets(now)
            bucket = self._buckets[user_id] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < 1:
            raise self._too_many(
                f"This user is over {self.rate:g} requests a second here; slow down.",
                limit=self.burst,
                remaining=0,
                reset=math.ceil((1 - bucket.tokens) / self.rate),
            )
        bucket.tokens -= 1

    def _forget_full_buckets(self, now: float) -> None:
        """A bucket that has refilled says nothing a new one would not: drop them all."""
        full_after = self.burst / self.rate
        for user_id in [u for u, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[user_id]

    @staticmethod
    def _too_many(detail: str, *, limit: int, remaining: int, reset: int) -> Problem:
        reset = max(1, reset)
        return Problem(
            429,
            detail,
            headers={
                "Retry-After": str(reset),
                "RateLimit-Limit": str(limit),
                "RateLimit-Remaining": str(remaining),
                "RateLimit-Reset": str(reset),
            },
        )
