"""Apply the Alembic history, once, from wherever the package is installed."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

# Any fixed 64-bit number; every tasktrail process that migrates takes the same one.
_MIGRATION_LOCK_KEY = 0x7461736B74726169  # "tasktrai"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    return config


@cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError("the migration history is empty")
    return head


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Migrate to the newest revision; on PostgreSQL under an advisory lock.

    Several workers or replicas may start at once: the lock makes them migrate one after the
    other, and the later ones find nothing left to do.
    """
    config = _config()
    with engine.connect() as lock_conn:
        postgres = lock_conn.dialect.name == "postgresql"
        if postgres:
            lock_conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            lock_conn.commit()
        try:
            with engine.begin() as conn:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
        finally:
            if postgres:
                lock_conn.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
                lock_conn.commit()
