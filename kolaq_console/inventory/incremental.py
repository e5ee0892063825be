"""The incremental run: fold the events in (checkpoint, H] into the stock cache, set-based,
O(new events), with no per-product work in Python but the summary's list of changes.

SQLite: one write transaction, which BEGIN IMMEDIATE makes exclusive (nothing can interleave):
the lease taken, the checkpoint and H read, one aggregate of the new events per product with
each product's stored stock beside it (events at or below a product's own mark left out), the
new stocks written by primary key, then checkpoint, summary and the lease given back.

PostgreSQL's incremental run is in incremental_pg.py (two transactions, three round trips).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from functools import cache
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    bindparam,
    case,
    func,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from kolaq_console.inventory.lease import Lease, LeaseLost, acquire_stmt, give_back_stmt
from kolaq_console.inventory.runs import (
    ChangeRows,
    ReconcileResult,
    close_run,
    save_state_stmt,
    summary_stmt,
)
from kolaq_console.inventory.stock import CHECKPOINT_KEY, above_mark, checkpoint_of
from kolaq_console.models import InventoryEvent, ProductStock, utcnow
from kolaq_console.sqlutil import rarely

_E = InventoryEvent.__table__  # type: ignore[attr-defined]
_S = ProductStock.__table__  # type: ignore[attr-defined]
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
    marked = _S.c.stock_event_id > bindparam("cp")
    marked_delta, marked_n = above_mark()
    return (case((marked, marked_delta), else_=agg.c.delta),
            case((marked, marked_n), else_=agg.c.n))


@cache
def _sqlite_fold() -> tuple[str, dict[str, Any]]:
    """Per touched product: id, sku, stored stock, and the sum and count of its new events
    not covered yet; as SQLite text with named parameters (and the values of its literals), run
    on the driver's cursor: 950 plain tuples cost a third of what as many result rows do."""
    from sqlalchemy.dialects.sqlite import dialect

    agg = _new_per_product()
    delta, n = _uncovered(agg)
    # No ORDER BY: SQLite would sort the rows again although they come out of the GROUP BY
    # in product order; the caller sorts them (in order already: one pass).
    stmt = (select(_S.c.product_id, _S.c.sku, _S.c.stock, delta, n)
            .select_from(agg.join(_S, _S.c.product_id == agg.c.product_id)))
    compiled = stmt.compile(dialect=dialect(paramstyle="named"))
    # CROSS JOIN (SQLite: an inner join in the order written) lets SQLite read the aggregate
    # as a co-routine, row by row, instead of first copying its ~950 rows to a temporary
    # table (the query plan's MATERIALIZE): ~6% of the statement. Core cannot spell it; were
    # the join rendered otherwise, the inner join stays (the same rows; a test checks this).
    sql = str(compiled)
    joined = " AS agg JOIN product_stock ON "
    if sql.count(joined) == 1:
        sql = sql.replace(joined, " AS agg CROSS JOIN product_stock ON ")
    return sql, dict(compiled.params)


# Run through the driver's executemany (SQLAlchemy's per-row work would be about as long as the
# rest of the run). The stock alone: a product's reconciled time is the run's, from the state
# (stock.reconciled_times), so no row carries one (narrower rows: fewer pages dirtied).
_SET_STOCK_SQLITE = "UPDATE product_stock SET stock = ? WHERE product_id = ?"
_STATE_SQLITE = f"SELECT value FROM system_state WHERE key = '{CHECKPOINT_KEY}'"
_HIGH_WATER_SQLITE = "SELECT coalesce(max(id), 0) FROM inventory_events"


@cache
def _sqlite_form(stmt: Any) -> tuple[str, dict[str, Any], dict[str, Callable[[Any], Any]]]:
    """A Core statement as SQLite text with named parameters, the values of its literals and
    the bind processors of its parameters (JSON, timestamps, JSON paths)."""
    from sqlalchemy.dialects.sqlite import dialect

    d = dialect(paramstyle="named")
    compiled = stmt.compile(dialect=d)
    processors = {}
    for name, bind in compiled.binds.items():
        process = bind.type.dialect_impl(d).bind_processor(d)
        if process is not None:
            processors[name] = process
    return str(compiled), dict(compiled.params), processors


def _run_sqlite(cursor: Any, stmt: Any, params: dict[str, Any]) -> Any:
    """Run a Core statement on the driver's cursor, its parameters bound as SQLAlchemy
    would (without SQLAlchemy's per-execution work: a fifth of a run's CPU)."""
    sql, literals, processors = _sqlite_form(stmt)
    values = {**literals, **params}
    for name, process in processors.items():
        if values.get(name) is not None:
            values[name] = process(values[name])
    return cursor.execute(sql, values)


def sqlite_run(engine: Engine, lease: Lease, actor: str, started: float,
               max_stock: int | None = None) -> ReconcileResult | None:
    """The whole incremental run in one transaction, on the driver's connection; None (and
    nothing done) before the first bulk run, which must be a full one."""
    # The pool's connection itself: a Connection around it cost ~0.035 ms a run, unused but
    # for wrapping a failure to connect as SQLAlchemy's error, which this does as it would.
    try:
        pooled = engine.raw_connection()
    except sqlite3.Error as exc:
        raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc
    try:
        raw = pooled.driver_connection
        cursor = raw.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE")
            if not _run_sqlite(cursor, acquire_stmt("sqlite"), lease.acquire_params()).fetchall():
                raw.rollback()
                raise lease.busy()
            [(stored,)] = cursor.execute(_STATE_SQLITE).fetchall() or [(None,)]
            if stored is None:
                raw.rollback()  # the lease is free again: nothing was written
                return None
            previous = json.loads(stored)
            checkpoint = checkpoint_of(previous)
            high_water = max(cursor.execute(_HIGH_WATER_SQLITE).fetchone()[0], checkpoint)
            sql, literals = _sqlite_fold()
            rows = cursor.execute(sql, {**literals, "cp": checkpoint,
                                        "hw": high_water}).fetchall()
            rows.sort(key=_first)
            now = utcnow()
            applied = [row for row in rows if row[3]]  # (pid, sku, stock, delta, n)
            if applied:
                cursor.executemany(_SET_STOCK_SQLITE, [(stock + delta, pid) for pid, _sku,
                                                       stock, delta, _n in applied])
            if _run_sqlite(cursor, give_back_stmt(), lease.give_back_params()).rowcount != 1:
                raise LeaseLost(f"lease {lease.name!r} expired and was taken by another run")
            result = ReconcileResult(mode="incremental", checked=len(rows))
            state = close_run(result, ChangeRows(applied), checkpoint, high_water, previous,
                              started, now, max_stock)
            _run_sqlite(cursor, save_state_stmt("sqlite"),
                        {"b_key": CHECKPOINT_KEY, "b_value": state, "b_now": now})
            _run_sqlite(cursor, summary_stmt(), {"actor": actor, "b_now": now,
                                                 "details": result.log_details()})
            raw.commit()
            return result
        except sqlite3.Error as exc:
            raw.rollback()
            raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc
        except BaseException:
            raw.rollback()
            raise
        finally:
            cursor.close()
            lease.held = False  # given back in the commit, or never taken (rolled back)
    finally:
        pooled.close()

