"""Replaying the log: `projections rebuild` on a generated log, and the checks that read it."""
