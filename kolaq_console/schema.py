"""Schema versioning with Alembic: upgrade, and refuse to run on an out-of-date database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from kolaq_console.db import (
    UPGRADE_HINT,
    SchemaOutOfDate,
    create_sqlite_file,
    describe,
    ping,
)

MIGRATIONS = Path(__file__).parent / "migrations"
__all__ = ["UPGRADE_HINT", "current_revision", "head_revision", "require_current", "upgrade"]


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Bring the schema to `revision`, creating a SQLite file first if need be (the only place
    that creates one); returns (before, after)."""
    create_sqlite_file(engine)
    ping(engine)
    before = current_revision(engine)
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
