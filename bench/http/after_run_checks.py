"""The operator's checks on what a load run left: the read model is the replay of the log
(`tasktrail projections verify`) and every user's hash chain is whole (`tasktrail audit verify`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

from bench.http.servers import server_environment


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One of the operator's checks, run as the operator runs it, and what it answered."""

    command: str
    exit_code: int
    last_line: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


# What a load run must leave behind: a read model that is the replay of the log, and every
# user's hash chain whole.
AFTER_RUN_CHECKS = (("projections", "verify"), ("audit", "verify"))


def verify_after_run(database_url: str, secret: str) -> list[CheckResult]:
    """`tasktrail projections verify` and `tasktrail audit verify` on the benchmark's database."""
    # `projections verify` reads the log and the table on two connections at once.
    env = server_environment(database_url, secret, 4)
    results = []
    for command in AFTER_RUN_CHECKS:
        began = time.monotonic()
        done = subprocess.run(  # noqa: S603 - our own CLI, with fixed arguments
            [sys.executable, "-m", "tasktrail", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        results.append(
            CheckResult(
                " ".join(("tasktrail", *command)),
                done.returncode,
                lines[-1].strip() if lines else "",
                round(time.monotonic() - began, 1),
            )
        )
    return results
