"""The incremental run: fold the events in (checkpoint, H] into the stock cache, set-based,
O(new events), with no per-product work in Python but the summary's list of changes.

SQLite: one write transaction, which BEGIN IMMEDIATE makes exclusive (nothing can interleave):
the lease taken, the checkpoint and H read, one aggregate of the new events per product with
each product's stored stock beside it (events at or below a product's own mark left out), the
new stocks written by primary key, then checkpoint, summary and the lease given back.

PostgreSQL's incremental run is in incremental_pg.py (two transactions, three round trips).
"""

from __future__ import annotations

from functools import cache
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    bindparam,
    case,
    func,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from kolaq_console.inventory.lease import Lease
from kolaq_console.inventory.runs import Change, ReconcileResult, finish_run
from kolaq_console.inventory.stock import (
    checkpoint_of,
    high_water_mark,
    read_state,
)
from kolaq_console.models import InventoryEvent, Product, utcnow
from kolaq_console.sqlutil import rarely, write_session

_E = InventoryEvent.__table__  # type: ignore[attr-defined]
_P = Product.__table__  # type: ignore[attr-defined]
_first = itemgetter(0)


def _new_events() -> tuple[Any, Any]:
    return rarely(_E.c.id > bindparam("cp")), _E.c.id <= bindparam("hw")


def _new_per_product() -> Any:  # SQLite; PostgreSQL's is written out in _PG_FOLD
    """The new events summed per product (a range of the primary key)."""
    return (
        select(_E.c.product_id.label("product_id"), func.sum(_E.c.delta).label("delta"),
               func.count().label("n"))
        .where(*_new_events())
        .group_by(_E.c.product_id)
        .subquery("agg")
    )


def _uncovered(agg: Any) -> tuple[Any, Any]:
    """(sum, count) of a product's new events its cache does not cover yet: the aggregate's,
    except for a product a one-product run took past the checkpoint (its mark above it: rare),
    whose events above its own mark are summed again by index."""
    x = _E.alias("x")
    past_mark = (x.c.product_id == _P.c.id, x.c.id > _P.c.stock_event_id,
                 x.c.id <= bindparam("hw"))
    marked = _P.c.stock_event_id > bindparam("cp")
    delta = case((marked, select(func.coalesce(func.sum(x.c.delta), 0)).where(*past_mark)
                  .scalar_subquery()), else_=agg.c.delta)
    n = case((marked, select(func.count()).where(*past_mark).scalar_subquery()),
             else_=agg.c.n)
    return delta, n


@cache
def _sqlite_fold() -> tuple[str, dict[str, Any]]:
    """Per touched product: id, sku, stored stock, and the sum and count of its new events
    not covered yet; as SQLite text with named parameters (and the values of its literals), run
    on the driver's cursor: 950 plain tuples cost a third of what as many result rows do."""
    from sqlalchemy.dialects.sqlite import dialect

    agg = _new_per_product()
    delta, n = _uncovered(agg)
    stmt = (select(_P.c.id, _P.c.sku, _P.c.stock, delta, n)
            .select_from(agg.join(_P, _P.c.id == agg.c.product_id)).order_by(_P.c.id))
    compiled = stmt.compile(dialect=dialect(paramstyle="named"))
    return str(compiled), dict(compiled.params)


# Run through the driver's executemany with the timestamp converted once: SQLAlchemy would run
# the timestamp's bind processors for every row (about as long as the rest of the run).
_SET_STOCK_SQLITE = ("UPDATE products SET stock = ?, last_reconciled_at = ?, updated_at = ? "
                     "WHERE id = ?")


def sqlite_run(engine: Engine, lease: Lease, actor: str, started: float,
               max_stock: int | None = None) -> ReconcileResult | None:
    """The whole incremental run in one transaction; None (and nothing done) before the first
    bulk run, which must be a full one."""
    try:
        with write_session(engine, derived=True) as session:
            if not lease.acquire(session):
                raise lease.busy()
            previous = read_state(session)
            if previous is None:
                lease.give_back(session)
                return None
            conn = session.connection()
            checkpoint = checkpoint_of(previous)
            high_water = max(high_water_mark(session), checkpoint)
            sql, literals = _sqlite_fold()
            rows = driver_rows(conn, sql, {**literals, "cp": checkpoint, "hw": high_water})
            now = utcnow()
            applied = [Change(pid, sku, stock, stock + delta, n)
                       for pid, sku, stock, delta, n in rows if delta]
            if applied:
                when = _P.c.updated_at.type.dialect_impl(conn.dialect).bind_processor(
                    conn.dialect)(now)  # the stored text form, made once
                conn.exec_driver_sql(_SET_STOCK_SQLITE,
                                     [(c.new, when, when, c.product_id) for c in applied])
            lease.give_back(session)
            result = ReconcileResult(mode="incremental", checked=len(rows))
            finish_run(conn, result, applied, checkpoint, high_water, previous, actor, started,
                       now, max_stock)
        return result
    finally:
        lease.held = False  # given back in the commit, or never taken (rolled back)


def driver_rows(conn: Connection, sql: str, params: dict[str, Any] | None,
                last: bool = False) -> list[tuple]:
    """Rows of `sql` as the driver returns them (plain tuples), on the connection's transaction;
    a driver error is raised as SQLAlchemy's (DataError, OperationalError...), as
    `conn.execute` would. `last`: `sql` is several statements, the rows are the last one's."""
    dbapi_error = conn.dialect.loaded_dbapi.Error
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
        while last and cursor.nextset():
            pass
        return cursor.fetchall()
    except dbapi_error as exc:
        raise DBAPIError.instance(sql, params, exc, dbapi_error) from exc
    finally:
        cursor.close()
