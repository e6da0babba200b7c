"""What the write port's tests hand it when they want the outcome itself as the answer."""

from __future__ import annotations

from tasktrail.storage.port import KeptAnswer, Outcome


def the_outcome(outcome: Outcome) -> Outcome:
    """Answers with the outcome: the state the write left and the events it appended."""
    return outcome


def no_key(_: Outcome) -> KeptAnswer:
    """For a write without a key, which keeps no answer: never called."""
    raise AssertionError("a write without a key keeps no answer")
