"""The incremental run: fold the events in (checkpoint, H] into the stock cache, set-based,
O(new events), with no per-product work in Python but the summary's list of changes.

SQLite: one write transaction, which BEGIN IMMEDIATE makes exclusive (nothing can interleave):
the lease taken, the checkpoint and H read, one aggregate of the new events per product with
each product's stored stock beside it (events at or below a product's own mark left out), the
new stocks written by primary key, then checkpoint, summary and the lease given back.

PostgreSQL: H needs `LOCK TABLE inventory_events IN SHARE MODE` (stock.py), which must not be
held while waiting for product row locks (an adjustment holds its product's row while it
inserts an event: a deadlock), so the lease, the checkpoint and H come from a first short
transaction (reconcile.py). This module's transaction gives the lease back (fencing: it fails if
the lease was taken over), then one UPDATE ... FROM (the aggregate) moves every touched product
whose mark is at or below the checkpoint, RETURNING the new stock and the sum (old = new - sum).
It locks rows as it goes, in id order; a row a one-product run moved past the checkpoint
meanwhile is skipped by PostgreSQL's re-check of the WHERE, and such products (rare) are then
locked and folded from their own marks.
"""

from __future__ import annotations

import json
from datetime import UTC
from functools import cache
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    ARRAY,
    Integer,
    any_,
    bindparam,
    case,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql import Select, Update

from kolaq_console.inventory.lease import Lease, acquire_stmt
from kolaq_console.inventory.runs import Change, ReconcileResult, finish_run
from kolaq_console.inventory.stock import (
    CHECKPOINT_KEY,
    HWM_LOCK_TIMEOUT,
    EventsBusy,
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


@cache
def _pg_take_lease_sql() -> str:
    """The lease taken: INSERT ... ON CONFLICT, see lease.py."""
    from sqlalchemy.dialects.postgresql.psycopg import dialect

    return str(acquire_stmt("postgresql").compile(dialect=dialect()))


def _pg_state_and_high_water_sql(lock_timeout: float) -> str:
    # One round trip without parameters (the simple query protocol runs several statements);
    # stock.high_water_mark says why the SHARE lock makes the mark safe. The state is read by a
    # statement after the lease's: a statement's snapshot is taken when it starts, and the
    # lease may have been granted only once the previous holder's final transaction (which
    # moved the checkpoint) committed.
    return ("SET LOCAL synchronous_commit = off; "
            f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'; "
            "LOCK TABLE inventory_events IN SHARE MODE; "
            f"SELECT (SELECT value FROM system_state WHERE key = '{CHECKPOINT_KEY}'), "
            "coalesce(max(id), 0) FROM inventory_events")


def postgres_start(engine: Engine, lease: Lease,
                   lock_timeout: float = HWM_LOCK_TIMEOUT) -> tuple[dict[str, Any] | None, int]:
    """The first, short transaction of a PostgreSQL bulk run in two round trips: the lease,
    the state (checkpoint) and the safe high-water mark H. Raises LeaseBusy or EventsBusy."""
    with engine.connect() as conn, conn.begin():
        params = {**lease.acquire_params(), "value_1": "expires_at", "value_2": "owner"}
        params["b_now"] = params["b_now"].astimezone(UTC).replace(tzinfo=None)
        params["b_value"] = json.dumps(params["b_value"])
        if not driver_rows(conn, _pg_take_lease_sql(), params):
            raise lease.busy()
        try:
            [(previous, high_water)] = driver_rows(
                conn, _pg_state_and_high_water_sql(lock_timeout), None, last=True)
        except OperationalError as exc:
            raise EventsBusy(
                "inventory events are being written by a transaction that has stayed open "
                f"more than {lock_timeout:g} s; reconciliation will retry"
            ) from exc
    lease.held = True
    return previous, int(high_water)


# The new events summed per product (a range of the primary key), the products whose cache
# covers the checkpoint (mark <= it: nearly all) moved by that sum, RETURNING the new stock and
# the sum (old = new - sum); then, flagged by a NULL sku, the touched products the UPDATE left
# alone (a zero sum, or a mark past the checkpoint: see `_pg_lock_marked`). One statement: the
# ids never travel to the client and back. `id = ANY(ARRAY(...))` makes the UPDATE read products
# by primary key (a join with the aggregate alone is planned as a scan of every product). The
# UPDATE locks each row as it goes; a row a one-product run moved past the checkpoint before we
# got it is re-checked by PostgreSQL and skipped, and comes back flagged.
_PG_FOLD = """
WITH agg AS MATERIALIZED (
    SELECT product_id, sum(delta) AS delta, count(*) AS n FROM inventory_events
    WHERE id > %(cp)s AND id <= %(hw)s GROUP BY product_id
), moved AS (
    UPDATE products SET stock = products.stock + agg.delta,
        last_reconciled_at = %(now)s, updated_at = %(now)s
    FROM agg
    WHERE products.id = ANY(ARRAY(SELECT product_id FROM agg))
        AND products.id = agg.product_id AND agg.delta != 0
        AND products.stock_event_id <= %(cp)s
    RETURNING products.id, products.sku, products.stock, agg.delta, agg.n
)
SELECT id, sku, stock, delta, n FROM moved
UNION ALL
SELECT product_id, NULL, NULL, NULL, NULL FROM agg
WHERE product_id NOT IN (SELECT id FROM moved)
"""


def _in_ids(name: str) -> Any:
    # `id = ANY(:ids)`: primary-key lookups in id order (an IN (subquery) would be planned as
    # a hash join over a scan of every product)
    return _P.c.id == any_(bindparam(name, type_=ARRAY(Integer)))


@cache
def _pg_lock_marked() -> Select:
    """The touched products a one-product run took past the checkpoint (rare), locked in id
    order; the statement after this one reads their marks as those runs left them."""
    return (select(_P.c.id).where(_in_ids("ids"), _P.c.stock_event_id > bindparam("cp"))
            .order_by(_P.c.id).with_for_update(key_share=True))


@cache
def _pg_fold_marked() -> Update:
    """Locked products moved by the sum of their events above their own mark."""
    x = _E.alias("x")
    past_mark = (x.c.product_id == _P.c.id, x.c.id > _P.c.stock_event_id,
                 x.c.id <= bindparam("hw"))
    delta = select(func.coalesce(func.sum(x.c.delta), 0)).where(*past_mark).scalar_subquery()
    n = select(func.count()).where(*past_mark).scalar_subquery()
    return (
        update(_P)
        .where(_in_ids("marked"), delta != 0)
        .values(stock=_P.c.stock + delta, last_reconciled_at=bindparam("now"),
                updated_at=bindparam("now"))
        .returning(_P.c.id, _P.c.sku, _P.c.stock, delta, n)
    )


def _returned(conn: Any, stmt: Update, params: dict[str, Any]) -> list[tuple]:
    """Run `stmt` on the driver's cursor and return its RETURNING rows as plain tuples (for
    ~1,000 rows a third of the cost of result rows). Its parameters are plain values (ints,
    lists of ints, and `now`, stored as naive UTC like every UTCDateTime column)."""
    sql, literals = _compiled(stmt, conn.dialect)
    values = {**literals, **params}
    if "now" in values:
        values["now"] = values["now"].astimezone(UTC).replace(tzinfo=None)
    return driver_rows(conn, sql, values)


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


@cache
def _compiled(stmt: Update, dialect: Any) -> tuple[str, dict[str, Any]]:
    compiled = stmt.compile(dialect=dialect)
    return str(compiled), dict(compiled.params)


def postgres_fold(engine: Engine, lease: Lease, checkpoint: int, high_water: int,
                  previous: dict[str, Any] | None, actor: str, started: float,
                  max_stock: int | None = None) -> ReconcileResult:
    """The second (and last) transaction of a PostgreSQL incremental run."""
    result = ReconcileResult(mode="incremental")
    params = {"cp": checkpoint, "hw": high_water}
    with write_session(engine, derived=True) as session:
        lease.give_back(session)  # fencing: a run that lost its lease cannot commit
        conn = session.connection()
        now = utcnow()
        naive_now = now.astimezone(UTC).replace(tzinfo=None)  # UTCDateTime's stored form
        found = driver_rows(conn, _PG_FOLD, {**params, "now": naive_now})
        result.checked = len(found)
        rows = [row for row in found if row[1] is not None]
        left = sorted(row[0] for row in found if row[1] is None)
        if left:
            marked = conn.execute(_pg_lock_marked(), {**params, "ids": left}).scalars().all()
            if marked:
                rows += _returned(conn, _pg_fold_marked(),
                                  {**params, "now": now, "marked": marked})
        rows.sort(key=_first)  # RETURNING has no order
        applied = [Change(pid, sku, new - int(delta), new, int(n))
                   for pid, sku, new, delta, n in rows]
        finish_run(conn, result, applied, checkpoint, high_water, previous, actor, started, now,
                   max_stock)
    return result
