"""The SQLite adapter of the write port: SQLAlchemy Core statements on the sync engine, in a
worker thread, one transaction per write (`BEGIN IMMEDIATE`: SQLite serialises writers)."""
