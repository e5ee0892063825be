"""`kolaq-console db ...`: schema upgrades."""

from __future__ import annotations

import typer

from kolaq_console.cli.common import out

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Create or upgrade the database schema, and the SQLite queue's file (safe to run at every
    deploy). The only command that creates storage: read-only ones never do."""
    from kolaq_console import runtime, schema
    from kolaq_console.db import describe

    engine = runtime.engine()
    before, after = schema.upgrade(engine, revision)
    where = describe(str(engine.url))
    if before == after:
        out.print(f"{where}: already at {after}")
    else:
        out.print(f"{where}: upgraded {before or 'empty'} -> {after}")
    settings = runtime.settings()
    if settings.queue.backend == "sqlite":
        from kolaq_console.taskqueue import make_huey

        make_huey(settings).storage.close()  # creates the file and Huey's tables if missing
        out.print(f"queue {settings.queue.sqlite_path}: ready")


@app.command("current")
def current() -> None:
    """Print the schema revision of the database and the one this version needs."""
    from kolaq_console import runtime, schema
    from kolaq_console.db import ping

    engine = runtime.engine()
    ping(engine)  # one line, and no file created, when there is no database
    current_rev = schema.current_revision(engine) or "empty"
    out.print(f"database: {current_rev}  code: {schema.head_revision()}")
