"""PostgreSQL databases for tests: created to commit without waiting for the WAL flush, and
a pool of migrated ones reused test after test (emptied, not re-created)."""

from __future__ import annotations

import queue
import threading
import uuid

from kolaq_console.db import make_engine
from kolaq_console.schema import head_revision, upgrade

HEAD = head_revision()


def create_pg_database(admin, name: str) -> None:
    admin.execute(f'CREATE DATABASE "{name}"')
    # A commit need not wait for the WAL to reach the disk: only a server crash could lose
    # one, and no test crashes the server.
    admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')


class BackgroundDropper:
    """Drops the test databases of this process in a thread of its own, on a connection of its
    own. Every DROP DATABASE makes the server checkpoint (flush and fsync every database's
    dirty pages, one checkpoint at a time server-wide: ~0.3-1.5 s, longer under load), which
    the test that used the database need not wait for. `finish` waits for the last drop and
    raises the first failure."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.names: queue.Queue[str | None] = queue.Queue()
        self.failures: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="pg-dropper", daemon=True)
        self.thread.start()

    def drop(self, name: str) -> None:
        self.names.put(name)

    def _run(self) -> None:
        import psycopg

        conn = None
        while (name := self.names.get()) is not None:
            try:
                conn = conn or psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5)
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as exc:  # reported by finish()
                self.failures.append(exc)
        if conn is not None:
            conn.close()

    def finish(self) -> None:
        self.names.put(None)
        self.thread.join()
        if self.failures:
            raise RuntimeError(f"could not drop a test database: {self.failures[0]!r}")


class MigratedPool:
    """Migrated PostgreSQL databases of this test process, reused test after test: creating,
    migrating and dropping one costs ~2 s, emptying one ~0.02 s. A database is handed out
    emptied (every table but alembic_version emptied, identities restarted) after any
    connection a previous test left (a killed worker's) is closed, so it is as good as new."""

    def __init__(self, admin, admin_url: str) -> None:
        self.admin = admin
        self.base = admin_url.rsplit("/", 1)[0]
        self.free: list[str] = []
        self.all: list[str] = []
        self.tables: list[str] = []

    def take(self) -> str:
        while self.free:
            name = self.free.pop()
            if self._emptied(name):
                return name
        name = f"kolaq_t_{uuid.uuid4().hex[:12]}"
        create_pg_database(self.admin, name)
        self.all.append(name)
        eng = make_engine(self.url(name))
        upgrade(eng)
        eng.dispose()
        self.tables = self.tables or self._tables(name)
        return name

    def _tables(self, name: str) -> list[str]:
        eng = make_engine(self.url(name))
        with eng.connect() as conn:
            tables = sorted(conn.exec_driver_sql(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'").scalars().all())
        eng.dispose()
        return tables

    def _emptied(self, name: str) -> bool:
        """Empty a used database; False (and it is dropped) if the test that had it changed
        its schema, which a fresh one must then replace."""
        self.admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        eng = make_engine(self.url(name))
        try:
            with eng.begin() as conn:
                at_head = conn.exec_driver_sql(
                    "SELECT version_num FROM alembic_version").scalars().all() == [HEAD]
                if at_head and self._tables(name) == self.tables:
                    # Only the tables the test wrote to (TRUNCATE costs ~5 ms a table, finding
                    # them ~10 ms in all), then every sequence back to 1.
                    used = conn.exec_driver_sql(" UNION ALL ".join(
                        f"(SELECT '{t}' FROM {t} LIMIT 1)" for t in self.tables)).scalars().all()
                    if used:
                        conn.exec_driver_sql(
                            f"TRUNCATE {', '.join(used)} RESTART IDENTITY CASCADE")
                    conn.exec_driver_sql(
                        "SELECT setval((quote_ident(schemaname) || '.' || "
                        "quote_ident(sequencename))::regclass, 1, false) FROM pg_sequences "
                        "WHERE schemaname = 'public' AND last_value IS NOT NULL")
                    return True
        except Exception:  # e.g. alembic_version dropped: not reusable
            pass
        finally:
            eng.dispose()
        self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.all.remove(name)
        return False

    def give_back(self, name: str) -> None:
        self.free.append(name)

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def drop_all(self) -> None:
        for name in self.all:
            self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
