"""The migration head, read from the migration scripts with the standard library only.

`status --json`'s fast path checks the database is at this head without importing Alembic or
SQLAlchemy; `schema.require_current` uses the same function (tests/test_schema.py proves it is
Alembic's head).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

MIGRATIONS = Path(__file__).parent / "migrations"
_ASSIGNED = re.compile(r"^(down_revision|revision)\b[^=\n]*=(.*)$", re.M)
_QUOTED = re.compile(r"""['"]([^'"]+)['"]""")


@functools.cache  # read once a process: the console checks the schema every refresh
def head_revision() -> str:
    """The one revision no migration script names as its down_revision."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        for name, value in _ASSIGNED.findall(script.read_text(encoding="utf-8")):
            found = _QUOTED.findall(value)
            (revisions.update if name == "revision" else parents.update)(found)
    heads = sorted(revisions - parents)
    if len(heads) != 1:
        raise RuntimeError(f"the migrations must have one head, they have {heads or 'none'}")
    return heads[0]
