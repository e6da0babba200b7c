"""Writers that keep at it, and the checks of what they leave behind.

A `Writer` is one client thread of one user: it creates, patches, completes, deletes and
restores tasks of its own through `tasktrail serve` processes, every write with an
`Idempotency-Key` (also sent as `X-Request-ID`, so the events it appends carry the key in
`request_id`). A write that is not acknowledged (the connection broke, the server is down, 409 or
503) is sent again with the same key until it is, within a deadline; any other answer fails the
test. Each write is chosen so that it appends exactly one event, which lets `check_outcome` count
them: every acknowledged key has one event in the log, and the log has nothing else.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx2
from sqlalchemy import select

from tasktrail.database import create_database_engine
from tasktrail.schema import events
from tests.conftest import make_settings, make_token
from tests.processes import run_cli

# Answers that say "not done, try again": the key's first request still runs, or the database
# (or the server, behind a proxy) is not there for now.
RETRY_STATUSES = frozenset({409, 502, 503})
# How long one write may take to be acknowledged, retries included: far beyond any restart.
PATIENCE_SECONDS = 120.0
REQUEST_TIMEOUT_SECONDS = 30.0


class Servers:
    """The base URLs writes go to, swapped by a test as it kills and restarts servers."""

    def __init__(self, urls: Iterable[str] = ()) -> None:
        self._urls = list(urls)
        self._lock = threading.Lock()

    def set(self, urls: Iterable[str]) -> None:
        with self._lock:
            self._urls = list(urls)

    def pick(self, rng: random.Random) -> str:
        with self._lock:
            return rng.choice(self._urls)


@dataclass(frozen=True)
class Answer:
    """One attempt as the client saw it: `status` 0 is a broken connection."""

    status: int
    sent_at: float  # time.monotonic()
    seconds: float
    retry_after: str | None

    @classmethod
    def of(cls, response: httpx2.Response | None, sent_at: float) -> Answer:
        """The answer to a request sent at `sent_at`; None for a broken connection."""
        if response is None:
            return cls(0, sent_at, time.monotonic() - sent_at, None)
        seconds = time.monotonic() - sent_at
        return cls(response.status_code, sent_at, seconds, response.headers.get("retry-after"))


@dataclass(frozen=True)
class Acknowledged:
    """A write and its first 2xx answer."""

    key: str
    method: str
    path: str
    body: dict[str, Any] | None
    status: int
    content: bytes
    replayed: bool
    attempts: int


class Writer:
    """One client thread of one user, writing tasks of its own (so its model of them is exact
    even when other threads write for the same user)."""

    def __init__(self, user_id: str, name: str, seed: int, servers: Servers) -> None:
        self.user_id = user_id
        self.name = name  # unique per user: the prefix of this writer's keys
        self.servers = servers
        self.plan = random.Random(seed)  # what to write: the same for a seed, whatever the timing
        self.route = random.Random(seed + 1)  # which server each attempt goes to
        self.token = make_token(user_id, exp=int(time.time()) + 3600)
        self.tasks: dict[str, dict[str, Any] | None] = {}  # id -> last acknowledged, None: deleted
        self.versions: Counter[str] = Counter()  # id -> events acknowledged on it
        self.acknowledged: list[Acknowledged] = []
        self.answers: list[Answer] = []  # every attempt, acknowledged or not

    def run(self, stop: threading.Event) -> None:
        with httpx2.Client(timeout=REQUEST_TIMEOUT_SECONDS) as client:
            while not stop.is_set():
                self.step(client)

    def step(self, client: httpx2.Client) -> None:
        """One write, chosen from what this writer knows, sent until acknowledged."""
        key = f"{self.name}.{len(self.acknowledged) + 1}"
        tasks = f"/api/{self.user_id}/tasks"
        if not self.tasks or self.plan.random() < 0.25:
            done = self.send(client, key, "POST", tasks, {"title": f"task {key}"})
            created = done_task(done)
            self.tasks[created["id"]] = created
            self.versions[created["id"]] += 1
            return
        task_id = self.plan.choice(sorted(self.tasks))
        task = self.tasks[task_id]
        path = f"{tasks}/{task_id}"
        if task is None:
            self.tasks[task_id] = done_task(self.send(client, key, "POST", f"{path}/restore"))
        else:
            action = self.plan.choices(["patch", "complete", "delete"], weights=[5, 3, 2])[0]
            if action == "patch":  # a new title every time: always one TaskUpdated
                body = {"title": f"title {key}", "priority": self.plan.randint(0, 3)}
                self.tasks[task_id] = done_task(self.send(client, key, "PATCH", path, body))
            elif action == "complete":  # set, not toggle: the opposite of what holds
                body = {"completed": not task["completed"]}
                done = self.send(client, key, "PATCH", f"{path}/complete", body)
                self.tasks[task_id] = done_task(done)
            else:
                self.send(client, key, "DELETE", path)
                self.tasks[task_id] = None
        self.versions[task_id] += 1

    def send(
        self,
        client: httpx2.Client,
        key: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
    ) -> Acknowledged:
        """Send until a 2xx comes back, always with the same key and body."""
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Idempotency-Key": key,
            "X-Request-ID": key,
        }
        deadline = time.monotonic() + PATIENCE_SECONDS
        failures: list[str] = []
        while True:
            base_url = self.servers.pick(self.route)
            sent_at = time.monotonic()
            try:
                response = client.request(method, base_url + path, json=body, headers=headers)
            except httpx2.TransportError as error:
                self.answers.append(Answer.of(None, sent_at))
                failures.append(f"{type(error).__name__} from {base_url}")
            else:
                self.answers.append(Answer.of(response, sent_at))
                if response.is_success:
                    done = Acknowledged(
                        key,
                        method,
                        path,
                        body,
                        response.status_code,
                        response.content,
                        response.headers.get("idempotent-replayed") == "true",
                        len(failures) + 1,
                    )
                    # A key's first attempt cannot find an answer to replay.
                    assert not (done.replayed and done.attempts == 1), done
                    self.acknowledged.append(done)
                    return done
                if response.status_code not in RETRY_STATUSES:
                    raise AssertionError(
                        f"{method} {path} (key {key}, attempt {len(failures) + 1}) answered "
                        f"{response.status_code}: {response.text}; before: {failures}"
                    )
                failures.append(f"{response.status_code} from {base_url}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{method} {path} (key {key}) not acknowledged within {PATIENCE_SECONDS} s: "
                    f"{failures[-5:]}"
                )
            time.sleep(min(0.05 * len(failures), 0.5))

    def check_replays(self, base_url: str, sample: int = 20) -> int:
        """Send again every write that needed a retry and a sample of the others: each must
        replay its first answer and append nothing. Returns how many were sent."""
        retried = [done for done in self.acknowledged if done.attempts > 1]
        others = [done for done in self.acknowledged if done.attempts == 1]
        again = retried + self.plan.sample(others, min(sample, len(others)))
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx2.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_SECONDS) as client:
            for done in again:
                response = client.request(
                    done.method,
                    done.path,
                    json=done.body,
                    headers={**headers, "Idempotency-Key": done.key, "X-Request-ID": "again"},
                )
                assert response.status_code == done.status, (done, response.text)
                assert response.headers.get("idempotent-replayed") == "true", done
                assert response.content == done.content, done
        return len(again)

    def check_served(self, client: httpx2.Client) -> None:
        """The API serves each task as this writer's last acknowledged write left it."""
        headers = {"Authorization": f"Bearer {self.token}"}
        for task_id, task in self.tasks.items():
            response = client.get(f"/api/{self.user_id}/tasks/{task_id}", headers=headers)
            if task is None:
                assert response.status_code == 404, (task_id, response.text)
            else:
                assert response.status_code == 200, (task_id, response.text)
                assert response.json() == task


def done_task(done: Acknowledged) -> dict[str, Any]:
    task: dict[str, Any] = json.loads(done.content)
    return task


def check_outcome(database_url: str, cwd: Path, base_url: str, writers: list[Writer]) -> None:
    """Every acknowledged write is in the log once and in the read model, nothing else is in
    the log, `seq` and `version` are gapless, and both verify commands pass."""
    with httpx2.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_SECONDS) as client:
        for writer in writers:
            writer.check_served(client)
    by_user: dict[str, list[Writer]] = defaultdict(list)
    for writer in writers:
        by_user[writer.user_id].append(writer)
    engine = create_database_engine(make_settings(database_url))
    try:
        with engine.connect() as conn:
            for user_id, mine in by_user.items():
                rows = conn.execute(
                    select(
                        events.c.seq,
                        events.c.task_id,
                        events.c.version,
                        events.c.request_id,
                        events.c.occurred_at,
                    )
                    .where(events.c.user_id == user_id)
                    .order_by(events.c.seq)
                ).all()
                assert [row.seq for row in rows] == list(range(1, len(rows) + 1)), user_id
                assert all(a.occurred_at <= b.occurred_at for a, b in pairwise(rows)), user_id
                # Each acknowledged key appended its one event once; no other write left any.
                logged = Counter(row.request_id for row in rows)
                expected = Counter(done.key for writer in mine for done in writer.acknowledged)
                assert logged == expected, (logged - expected, expected - logged)
                versions: dict[str, list[int]] = defaultdict(list)
                for row in rows:
                    versions[str(row.task_id)].append(row.version)
                wanted = {task: n for writer in mine for task, n in writer.versions.items()}
                assert {task: len(v) for task, v in versions.items()} == wanted, user_id
                for task, numbers in versions.items():
                    assert numbers == list(range(1, len(numbers) + 1)), (user_id, task)
    finally:
        engine.dispose()
    commands = [("audit", "verify"), ("projections", "verify")]
    with ThreadPoolExecutor(len(commands)) as pool:  # two processes that read: side by side
        results = pool.map(
            lambda command: run_cli(*command, cwd=cwd, TASKTRAIL_DATABASE_URL=database_url),
            commands,
        )
        for command, result in zip(commands, results, strict=True):
            assert result.returncode == 0, (command, result.stdout, result.stderr)
