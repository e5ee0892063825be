"""Engine and session factory. Engines are made on demand, never at import time."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlmodel import Session, create_engine

from kolaq_console.errors import KolaqError


class StorageUnavailable(KolaqError):
    """The database (or queue storage) cannot be reached; the message says which and why."""


class SchemaOutOfDate(KolaqError):
    """The database schema is not at the code's migration head."""


UPGRADE_HINT = "run `kolaq-console db upgrade`"


def normalise_url(url: str) -> URL:
    """postgresql:// means psycopg 3 here (the driver we ship), not psycopg2."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the console read while workers write; NORMAL is durable across app crashes.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


# A pooled server connection idle at least this long is pinged before it is handed out (the
# server may have restarted, or a proxy dropped it, meanwhile); a bad one is replaced
# transparently. One handed back moments ago is not pinged: that is what every checkout of a
# busy worker gets, and pool_pre_ping's round trip on each of them cost ~50 us per transaction.
PING_AFTER_IDLE_SECONDS = 1.0


def _note_checkin(dbapi_conn: Any, record: Any) -> None:
    if record is not None:
        record.info["kolaq_idle_since"] = time.monotonic()


def _ping_if_idle(engine: Engine):
    def checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("kolaq_idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return  # new, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as error:
            # The pool drops this connection and checks out another (a new one if need be).
            raise exc.DisconnectionError(f"stale pooled connection: {error}") from error

    return checkout


def sqlite_path(url: URL | str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory ones)."""
    parsed = normalise_url(str(url)) if isinstance(url, str) else url
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _open_existing(path: Path):
    """Connections that never create the file: only `db upgrade` creates a database (so a
    read-only command or a wrong path does not leave an empty one behind)."""
    uri = f"file:{quote(str(path.resolve()))}?mode=rw"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)

    return connect


def create_sqlite_file(engine: Engine) -> None:
    """Create the SQLite file (and its folder) of `engine` if missing: `db upgrade` only."""
    path = sqlite_path(engine.url)
    if path is not None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        sqlite3.connect(path).close()


def make_engine(url: str, echo: bool = False) -> Engine:
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(parsed)
        extra: dict[str, Any] = {"creator": _open_existing(path)} if path else {}
        engine = create_engine(
            parsed, echo=echo, connect_args={"check_same_thread": False, "timeout": 30},
            **extra,
            # The most recently returned connection first: its page cache is still valid
            # when it made the last write itself (WAL readers re-read after others write).
            pool_use_lifo=True,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(
        parsed,
        echo=echo,
        pool_size=5,
        max_overflow=10,
        connect_args={"connect_timeout": 5},
    )
    event.listen(engine, "checkin", _note_checkin)
    event.listen(engine, "checkout", _ping_if_idle(engine))
    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error. Never share across threads."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def describe(url: str) -> str:
    """The URL without its password, for messages and status output."""
    return normalise_url(url).render_as_string(hide_password=True)


def ping(engine: Engine) -> None:
    """Raise StorageUnavailable with a one-line reason if the database cannot be reached."""
    from sqlalchemy import text

    path = sqlite_path(engine.url)
    if path is not None and not path.is_file():
        raise StorageUnavailable(
            f"database {path} does not exist (if [database] url is right, create it): "
            f"{UPGRADE_HINT}"
        )
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise StorageUnavailable(f"database {describe(str(engine.url))}: {reason}") from exc
