"""tasktrail: a task service whose source of truth is an append-only, hash-chained event log."""

__version__ = "0.1.0"
