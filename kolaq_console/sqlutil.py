"""Small SQL helpers that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import NullType
from sqlmodel import Session


@contextmanager
def write_session(engine: Engine, *, derived: bool = False) -> Iterator[Session]:
    """A unit of work that is going to write, committed on success.

    SQLite: the transaction starts with BEGIN IMMEDIATE, so it holds the database's write lock
    from its first statement; every read inside it sees the latest commit and nothing can
    interleave (pysqlite would otherwise start a deferred transaction at the first write, after
    reads taken from an older snapshot). PostgreSQL: READ COMMITTED; writers that must not
    interleave lock the rows they read (`with_for_update(key_share=True)`).

    `derived=True` is for work that can be recomputed, like the stock cache and a lease: on
    PostgreSQL the commit does not wait for its WAL flush (synchronous_commit off for this
    transaction only). A crash can lose such a transaction, never part of one.
    """
    with Session(engine, expire_on_commit=False) as session:
        try:
            conn = session.connection()
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif derived:
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def upsert_insert(dialect: str | Engine | Connection | Session, table: Any) -> Any:
    """`INSERT INTO table` in the form that has `.on_conflict_do_nothing()`,
    `.on_conflict_do_update()` and `.excluded`: PostgreSQL's or SQLite's, the two dialects we
    run on (the one place that chooses; both render the same ON CONFLICT clause). `dialect` is
    a dialect name or anything bound to one."""
    name = dialect if isinstance(dialect, str) else _bind(dialect).dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def _bind(bind: Engine | Connection | Session) -> Engine | Connection:
    return bind.get_bind() if isinstance(bind, Session) else bind


def begin_write(session: Session) -> Connection:
    """Make the session's transaction a writer from here on, as `write_session` does: on SQLite
    BEGIN IMMEDIATE (unless the driver already began one), so reads that precede its writes
    cannot be from a snapshot another writer has since moved past. Returns the connection."""
    conn = session.connection()
    if conn.dialect.name == "sqlite" and not conn.connection.dbapi_connection.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    return conn


def insert_or_ignore(conn: Connection | Session, table: Table, values: Mapping[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when the row was inserted.

    Unlike catching IntegrityError, this leaves a PostgreSQL transaction usable.
    """
    key = next(iter(table.primary_key.columns))
    # RETURNING rather than rowcount: psycopg reports -1 for a single-row INSERT here.
    stmt = upsert_insert(conn, table).values(**values).on_conflict_do_nothing().returning(key)
    return conn.execute(stmt).first() is not None


def is_postgres(bind: Engine | Connection | Session) -> bool:
    return _bind(bind).dialect.name == "postgresql"


class rarely(ColumnElement[bool]):
    """A WHERE term that few rows satisfy, such as `id > :checkpoint` on an append-only table.

    SQLite's planner cannot tell how selective `id > ?` is and prefers scanning a covering
    index over a primary-key range; `likelihood(term, 0.001)` tells it. PostgreSQL estimates
    it from statistics, so the term is rendered as is there.
    """

    type = NullType()  # a Boolean type would make SQLite render "likelihood(...) = 1"
    inherit_cache = True
    _traverse_internals = [("clause", InternalTraversal.dp_clauseelement)]

    def __init__(self, clause: ColumnElement[bool]) -> None:
        self.clause = clause


@compiles(rarely)
def _rarely_default(element: rarely, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clause, **kw)


@compiles(rarely, "sqlite")
def _rarely_sqlite(element: rarely, compiler: Any, **kw: Any) -> str:
    return f"likelihood({compiler.process(element.clause, **kw)}, 0.001)"
