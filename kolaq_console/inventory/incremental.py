"""The incremental run: fold the events in (checkpoint, H] into the stock cache, set-based,
O(new events), with no per-product work in Python but the summary's list of changes.

SQLite: one write transaction, which BEGIN IMMEDIATE makes exclusive (nothing can interleave):
the lease taken, the checkpoint and H read, one aggregate of the new events per product with
each product's stored stock beside it (events at or below a product's own mark left out), the
new stocks written by primary key, then checkpoint, summary and the lease given back.

PostgreSQL: H needs `LOCK TABLE inventory_events IN SHARE MODE` (stock.py), which must not be
held while waiting for product row locks (an adjustment holds its product's row while it
inserts an event: a deadlock), so the lease, the checkpoint and H come from a first short
transaction (reconcile.py). This module's transaction then gives the lease back (fencing: it
fails if the lease was taken over), locks the touched products in id order (a one-product run
that moved a mark meanwhile has committed by then, and the next statement reads the mark it
left), and runs one UPDATE ... FROM (the aggregate) RETURNING the new stock and the delta, so
the old stock is new - delta: both from the one aggregate.
"""

from __future__ import annotations

from functools import cache
from operator import itemgetter
from typing import Any

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.sql import Select, Update

from kolaq_console.inventory.lease import Lease
from kolaq_console.inventory.runs import Change, ReconcileResult, finish_run
from kolaq_console.inventory.stock import checkpoint_of, high_water_mark, read_state
from kolaq_console.models import InventoryEvent, Product, utcnow
from kolaq_console.sqlutil import rarely, write_session

_E = InventoryEvent.__table__  # type: ignore[attr-defined]
_P = Product.__table__  # type: ignore[attr-defined]
_first = itemgetter(0)


def _new_events() -> tuple[Any, Any]:
    return rarely(_E.c.id > bindparam("cp")), _E.c.id <= bindparam("hw")


@cache
def _sqlite_fold() -> Select:
    """Per touched product: id, sku, stored stock, the sum and count of its new events above
    its own mark."""
    above_mark = _E.c.id > _P.c.stock_event_id
    return (
        select(_P.c.id, _P.c.sku, _P.c.stock,
               func.sum(case((above_mark, _E.c.delta), else_=0)),
               func.count(case((above_mark, 1), else_=None)))
        .select_from(_E.join(_P, _P.c.id == _E.c.product_id))
        .where(*_new_events())
        .group_by(_P.c.id)
        .order_by(_P.c.id)
    )


# Run through the driver's executemany with the timestamp converted once: SQLAlchemy would run
# the timestamp's bind processors for every row (about as long as the rest of the run).
_SET_STOCK_SQLITE = ("UPDATE products SET stock = ?, last_reconciled_at = ?, updated_at = ? "
                     "WHERE id = ?")


def sqlite_run(engine: Engine, lease: Lease, actor: str, started: float
               ) -> ReconcileResult | None:
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
            rows = conn.execute(_sqlite_fold(), {"cp": checkpoint, "hw": high_water}).all()
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
                       now)
        return result
    finally:
        lease.held = False  # given back in the commit, or never taken (rolled back)


@cache
def _pg_lock_touched() -> Select:
    touched = select(_E.c.product_id).where(*_new_events()).distinct()
    return (select(_P.c.id).where(_P.c.id.in_(touched)).order_by(_P.c.id)
            .with_for_update(key_share=True))


@cache
def _pg_fold() -> Update:
    # each event's product mark by primary key (a join would hash all the products)
    mark = (select(_P.c.stock_event_id).where(_P.c.id == _E.c.product_id)
            .correlate(_E).scalar_subquery())
    agg = (
        select(_E.c.product_id.label("product_id"), func.sum(_E.c.delta).label("delta"),
               func.count().label("n"))
        .where(*_new_events(), _E.c.id > mark)
        .group_by(_E.c.product_id)
        .subquery("agg")
    )
    return (
        update(_P)
        .where(_P.c.id == agg.c.product_id, agg.c.delta != 0)
        .values(stock=_P.c.stock + agg.c.delta, last_reconciled_at=bindparam("now"),
                updated_at=bindparam("now"))
        .returning(_P.c.id, _P.c.sku, _P.c.stock, agg.c.delta, agg.c.n)
    )


def postgres_fold(engine: Engine, lease: Lease, checkpoint: int, high_water: int,
                  previous: dict[str, Any] | None, actor: str, started: float
                  ) -> ReconcileResult:
    """The second (and last) transaction of a PostgreSQL incremental run."""
    result = ReconcileResult(mode="incremental")
    params = {"cp": checkpoint, "hw": high_water}
    with write_session(engine, derived=True) as session:
        lease.give_back(session)  # fencing: a run that lost its lease cannot commit
        conn = session.connection()
        now = utcnow()
        result.checked = len(conn.execute(_pg_lock_touched(), params).all())
        rows = conn.execute(_pg_fold(), {**params, "now": now}).all()
        rows.sort(key=_first)  # RETURNING has no order
        applied = [Change(pid, sku, new - int(delta), new, int(n))
                   for pid, sku, new, delta, n in rows]
        finish_run(conn, result, applied, checkpoint, high_water, previous, actor, started, now)
    return result
