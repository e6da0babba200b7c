"""Where a decided write is kept: one port (port.py) and one adapter per engine.

`sqlite/` runs the write as SQLAlchemy Core statements in a worker thread; `postgres/` sends it to
`tasktrail_append`, the database function that applies a whole write in one call. Both keep the
same log, read model and idempotency records; tests/test_write_port.py holds them to one contract.
"""
