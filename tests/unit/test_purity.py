"""The domain modules import no web, database or token library (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The libraries that must stay out of the pure core, and the impure parts of tasktrail itself.
FORBIDDEN = ("fastapi", "starlette", "sqlalchemy", "psycopg", "jwt", "alembic", "uvicorn")
IMPURE_TASKTRAIL = (
    "tasktrail.api",
    "tasktrail.storage",
    "tasktrail.projections",
    "tasktrail.events",
    "tasktrail.database",
    "tasktrail.schema",
    "tasktrail.settings",
    "tasktrail.migrations",
    "tasktrail.queries",
)

# Every module of the domain package, found on disk: a module added there is checked too.
PURE_MODULES = sorted(
    f"tasktrail.domain.{path.stem}"
    for path in (ROOT / "tasktrail" / "domain").glob("*.py")
    if path.stem != "__init__"
)


def modules_loaded_by(module: str) -> list[str]:
    """Import `module` alone in a fresh interpreter and list the forbidden modules it loaded."""
    probe = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        f"forbidden = {FORBIDDEN!r}\n"
        f"impure = {IMPURE_TASKTRAIL!r}\n"
        "print(json.dumps(sorted(\n"
        "    name for name in sys.modules\n"
        "    if name.split('.')[0] in forbidden\n"
        "    or any(name == part or name.startswith(part + '.') for part in impure)\n"
        ")))\n"
    )
    # A fixed interpreter and a fixed script: nothing here comes from outside the test.
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(result.stdout)
    return loaded


@pytest.mark.parametrize(
    "module", PURE_MODULES, ids=[m.removeprefix("tasktrail.") for m in PURE_MODULES]
)
def test_a_domain_module_loads_no_web_database_or_token_library(module: str) -> None:
    """Importing a pure module loads none of fastapi, starlette, sqlalchemy, psycopg, jwt..."""
    assert modules_loaded_by(module) == []


def test_the_probe_sees_a_database_library_when_one_is_imported() -> None:
    """The check can fail: importing the SQLite adapter's transaction does load sqlalchemy."""
    loaded = modules_loaded_by("tasktrail.storage.sqlite.transaction")
    assert "sqlalchemy" in loaded
    assert "tasktrail.storage.sqlite.transaction" in loaded
