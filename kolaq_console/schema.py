"""Schema versioning with Alembic: upgrade, and refuse to run on an out-of-date database.

Checking the revision does not import Alembic: every command checks it before it starts, and
importing Alembic and loading the migration scripts costs more than the rest of `status`. The
head is read from the scripts' `revision`/`down_revision` lines (tests/test_schema.py proves it
is Alembic's head), the database's revision from its alembic_version table. Alembic runs the
upgrades.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from kolaq_console.db import (
    UPGRADE_HINT,
    SchemaOutOfDate,
    create_sqlite_file,
    describe,
    ping,
)
from kolaq_console.schemahead import MIGRATIONS, head_revision

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["UPGRADE_HINT", "current_revision", "head_revision", "require_current", "upgrade"]


def alembic_config(engine: Engine | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(versions) > 1:
        raise SchemaOutOfDate(f"database {describe(str(engine.url))} has several schema "
                              f"revisions ({', '.join(sorted(versions))}): {UPGRADE_HINT}")
    return versions[0] if versions else None


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Bring the schema to `revision`, creating a SQLite file first if need be (the only place
    that creates one); returns (before, after)."""
    create_sqlite_file(engine)
    ping(engine)
    before = current_revision(engine)
    from alembic import command

    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return before, current_revision(engine) or ""


def require_current(engine: Engine) -> None:
    """Raise SchemaOutOfDate unless the database is at the migration head."""
    ping(engine)
    current, head = current_revision(engine), head_revision()
    if current != head:
        state = "has no schema yet" if current is None else f"is at revision {current}"
        raise SchemaOutOfDate(
            f"database {describe(str(engine.url))} {state}, this version needs {head}: "
            f"{UPGRADE_HINT}"
        )
