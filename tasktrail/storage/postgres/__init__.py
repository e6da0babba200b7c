"""The PostgreSQL adapter of the write port: psycopg's async pool on the event loop, and one
database function, `tasktrail_append`, that applies a decided write in one call."""
