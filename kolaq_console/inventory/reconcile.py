"""Reconciliation: bring the stock cache in line with the event log, with an audit trail.

Three kinds of run (see stock.py for the cache's contract and the safe high-water mark H):

- incremental (nightly): the events in (checkpoint, H], read by primary key (O(new events)),
  summed per product and added to the cached stock of the products they touch, set-based
  (one UPDATE ... FROM the aggregate); checkpoint := H.
- full (weekly, `--full`): every product's sum of all its events, in the same statement as the
  cached values it is compared with, so it also finds drift no event explains (a stock edited
  by hand, a bug); it folds new events like an incremental run and sets checkpoint := H.
- one product (`--sku`, adjustments): the product's whole sum, with its stock row locked;
  records how far it folded in product_stock.stock_event_id. Needs no lease; it is safe next
  to bulk runs.

The audit trail. Folding events into the cache is not a correction: the events are their own
audit trail (each has its kind, reference, actor and note). So a run writes ONE summary entry
(action "inventory.reconcile.run": mode, checked, changed, events_folded, unexplained,
checkpoint_from, checkpoint_to = the high-water mark, duration_ms, and "changes": the products
changed as [sku, old, new], at most SUMMARY_CHANGES of them, "more" counting the rest), and
no entry per product for what it folded. A product whose cached stock disagrees with its true
stock at the run's high-water mark once the events it has not folded yet are accounted for -
drift no event explains - is a correction: it gets its own entry (action
"inventory.reconcile", entity the product: old -> new, drift, reason "reconciliation", mode,
folded_events, unexplained). Only the full and one-product runs can see such drift; an
incremental run reads new events only. A one-product run writes its summary when asked to
(`reconcile --sku`), not when an adjustment calls it (the adjustment logs itself).

The cache is the narrow table product_stock (models.ProductStock: one row per product), so a run
writes no `products` row. Bulk runs hold a lease (two never overlap). The incremental run is in
incremental.py (SQLite: one transaction) and incremental_pg.py (PostgreSQL: two). The full run
takes the lease, the checkpoint and H in a first short transaction, aggregates without locks,
and writes everything in one last transaction that first gives the lease back (so a run whose
lease lapsed and was taken over cannot commit: fencing), locks the stock rows it changes, writes
their stock, the correction entries, the checkpoint and the summary entry. Each row it changes
is re-checked under the lock: a one-product run may have moved it meanwhile, and then that
product is recomputed under the lock. A crash before the last commit changes nothing (the lease
expires after its TTL); events inserted during a run are above H (left for the next run) or at
or below it (counted exactly once).

A bad product never fails the run for the others. If the set-based statements hit a data error
(an overflowing sum, say), the run starts over product by product, each in a savepoint
(fold.py): a product that still fails is reported in `refused` and left as it was, every other
one is folded up to H with its own mark (stock_event_id = H); the checkpoint stays where it was
while any product is refused, so the refused product's events stay unfolded, not lost. Products
whose new stock is beyond +/-`max_stock` are folded (the cache must tell the truth) and listed
in `out_of_range` for an operator to look at.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import bindparam, case, exists, func, insert, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select

from kolaq_console.errors import NotFound
from kolaq_console.inventory import incremental, incremental_pg
from kolaq_console.inventory.fold import (
    Unreconcilable,
    fold_locked,
    fold_one,
    fold_product,
    is_product_data_error,
    reason_of,
)
from kolaq_console.inventory.lease import Lease
from kolaq_console.inventory.runs import (
    ACTION_PRODUCT,
    ACTION_REFUSED,
    ACTION_RUN,
    SUMMARY_CHANGES,
    Change,
    ReconcileResult,
    correction_rows,
    finish_run,
)
from kolaq_console.inventory.stock import (
    checkpoint_of,
    high_water_mark,
    read_state,
    safe_high_water_mark,
)
from kolaq_console.models import (
    ActivityLog,
    InventoryEvent,
    Product,
    ProductStock,
    utcnow,
    with_stock,
)
from kolaq_console.sqlutil import rarely, write_session

__all__ = [
    "ACTION_PRODUCT", "ACTION_REFUSED", "ACTION_RUN", "LEASE_NAME", "SUMMARY_CHANGES", "Change",
    "ReconcileResult", "Unreconcilable", "fold_product", "reconcile", "reconcile_product",
]

log = logging.getLogger(__name__)

LEASE_NAME = "inventory.reconcile"
BATCH = 500

Progress = Callable[[str, int, int], None]


def _noop(_stage: str, _done: int, _total: int) -> None:
    pass


def _chunks(items: list[Change], size: int) -> Iterator[list[Change]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --- planning (reads only, no locks) ---------------------------------------------------------


def _plan_full(engine: Engine, checkpoint: int, high_water: int) -> tuple[int, list[Change]]:
    """One statement, one snapshot: every product's cached value next to the sum of all its
    events (an index-only range of ix_inventory_events_product_delta per product, which both
    SQLite and PostgreSQL run about as fast as the bare GROUP BY over the whole index), and the
    part of that sum the cache does not cover yet, split at H."""
    e, p, s = InventoryEvent, Product, ProductStock
    total = (
        select(func.coalesce(func.sum(e.delta), 0))
        .where(col(e.product_id) == col(p.id))
        .correlate(p)  # type: ignore[arg-type]
        .scalar_subquery()
    )
    above_h = col(e.id) > high_water
    pending = (
        select(
            col(e.product_id).label("product_id"),
            func.sum(case((above_h, 0), else_=col(e.delta))).label("fold"),
            func.sum(case((above_h, col(e.delta)), else_=0)).label("later"),
            func.count(case((above_h, None), else_=1)).label("n"),
        )
        .join(s, col(s.product_id) == col(e.product_id))
        .where(rarely(col(e.id) > checkpoint), col(e.id) > col(s.stock_event_id))
        .group_by(col(e.product_id))
        .subquery("pending")
    )
    compared = (
        select(
            col(p.id).label("id"), col(p.sku).label("sku"), col(s.stock).label("stock"),
            col(s.stock_event_id).label("mark"), total.label("total"),
            func.coalesce(pending.c.fold, 0).label("fold"),
            func.coalesce(pending.c.later, 0).label("later"),
            func.coalesce(pending.c.n, 0).label("n"),
        )
        .select_from(with_stock())
        .outerjoin(pending, pending.c.product_id == col(p.id))
        .subquery("compared")
    )
    c = compared.c
    # Only the products to change leave the database (the sum for the others is computed
    # and compared there).
    stmt = select(compared).where(c.total - c.later != c.stock).order_by(c.id)
    changes = []
    with engine.connect() as conn:
        checked = int(conn.execute(select(func.count()).select_from(p)).scalar_one())
        for pid, sku, stock, mark, total_, fold, later, n in conn.execute(stmt):
            covered = total_ - fold - later  # what the cache should hold
            changes.append(Change(pid, sku, stock, int(total_ - later), int(n),
                                  int(covered - stock), mark))
    return checked, changes


# --- writing ---------------------------------------------------------------------------------


def _apply(engine: Engine, lease: Lease, result: ReconcileResult, changes: list[Change],
           checkpoint: int, high_water: int, previous: dict[str, Any] | None, actor: str,
           started: float, progress: Progress, max_stock: int | None) -> None:
    s = ProductStock
    with write_session(engine, derived=True) as session:
        lease.give_back(session)  # fencing: a run that lost its lease cannot commit
        now = utcnow()
        conn = session.connection()  # Core executemany for the bulk writes
        stocks = ProductStock.__table__  # type: ignore[attr-defined]
        activity_table = ActivityLog.__table__  # type: ignore[attr-defined]
        set_stock = (update(stocks).where(stocks.c.product_id == bindparam("pid"))
                     .values(stock=bindparam("new")))
        applied: list[Change] = []
        done = 0
        for batch in _chunks(changes, BATCH):
            ids = [c.product_id for c in batch]
            current = {
                pid: (stock, mark)
                for pid, stock, mark in session.exec(
                    select(s.product_id, s.stock, s.stock_event_id)
                    .where(col(s.product_id).in_(ids))
                    .order_by(col(s.product_id))
                    .with_for_update(key_share=True)
                )
            }
            for c in batch:
                if c.product_id not in current:
                    continue  # deleted meanwhile
                stock, mark = current[c.product_id]
                if (stock, mark) != (c.old, c.seen_mark):
                    # a one-product reconcile moved it after the plan: recompute under the lock
                    new, _mark, n, unexplained = fold_one(
                        session, c.product_id, stock, mark, checkpoint, high_water)
                    c.old, c.new, c.folded_events, c.unexplained = stock, new, n, unexplained
                if c.new != c.old:
                    applied.append(c)
            rows = [{"pid": c.product_id, "new": c.new} for c in batch if c.new != c.old]
            if rows:
                conn.execute(set_stock, rows)
            done += len(batch)
            progress("applying", done, len(changes))
        corrections = correction_rows(applied, actor, result.mode, None, now)
        if corrections:
            conn.execute(insert(activity_table), corrections)
        finish_run(conn, result, applied, checkpoint, high_water, previous, actor, started, now,
                   max_stock)


def _reconcile_each(engine: Engine, lease: Lease, result: ReconcileResult, checkpoint: int,
                    high_water: int, previous: dict[str, Any] | None, actor: str,
                    started: float, progress: Progress, max_stock: int | None) -> None:
    """The fallback after a data error: every product the run covers, one at a time (each in a
    savepoint, BATCH per transaction), so one bad product is refused and the rest folded."""
    e, p = InventoryEvent, Product
    with engine.connect() as conn:
        if result.mode == "full":
            ids = list(conn.execute(select(p.id).order_by(col(p.id))).scalars())
        else:
            ids = list(conn.execute(
                select(e.product_id).where(rarely(col(e.id) > checkpoint),
                                           col(e.id) <= high_water)
                .distinct().order_by(col(e.product_id))).scalars())
    result.checked = len(ids)
    applied: list[Change] = []
    done = 0
    for start in range(0, len(ids), BATCH):
        with write_session(engine, derived=True) as session:
            lease.renew(session)  # fencing
            now = utcnow()
            batch_changes: list[Change] = []
            for pid in ids[start:start + BATCH]:
                try:
                    with session.begin_nested():
                        folded = fold_locked(session, pid, checkpoint, high_water)
                except DBAPIError as exc:
                    if not is_product_data_error(exc):
                        raise
                    sku = session.execute(select(p.sku).where(col(p.id) == pid)).scalar()
                    result.refused.append([str(sku), reason_of(exc)])
                    continue
                if folded is not None and folded[0].drift:
                    batch_changes.append(folded[0])
            corrections = correction_rows(batch_changes, actor, result.mode, None, now)
            if corrections:
                session.execute(insert(ActivityLog), corrections)
            applied.extend(batch_changes)
        done += len(ids[start:start + BATCH])
        progress("applying", done, len(ids))
    with write_session(engine, derived=True) as session:
        lease.give_back(session)  # fencing, and the lease given back with the last commit
        now = utcnow()
        if result.refused:
            session.execute(insert(ActivityLog), [
                {"actor": actor, "action": ACTION_REFUSED, "entity": "product",
                 "entity_id": sku, "details": {"reason": why, "mode": result.mode},
                 "created_at": now}
                for sku, why in result.refused])
        finish_run(session.connection(), result, applied, checkpoint, high_water, previous,
                   actor, started, now, max_stock)


def reconcile(engine: Engine, *, full: bool = False, actor: str = "system",
              lease_ttl: float = 600.0, progress: Progress | None = None,
              max_stock: int | None = None) -> ReconcileResult:
    """Reconcile every product, incrementally or in full. Raises LeaseBusy when another bulk
    run holds the lease and EventsBusy when a safe checkpoint cannot be taken yet (both are
    worth retrying). The first run ever is a full one. A product that cannot be folded is
    refused and reported (`result.refused`), never the run; `max_stock` names the products
    changed to a stock beyond it (`result.out_of_range`).

    Two write transactions: one takes the lease, reads the checkpoint and takes the safe
    high-water mark H; the last writes everything and gives the lease back. (An incremental
    run on SQLite is one transaction: incremental.py; on PostgreSQL both transactions are run
    by incremental_pg.postgres_run, in two round trips.)"""
    report = progress or _noop
    started = time.perf_counter()
    lease = Lease(engine, LEASE_NAME, lease_ttl)
    one_by_one = False
    if not full and engine.dialect.name == "sqlite":
        try:
            done = incremental.sqlite_run(engine, lease, actor, started, max_stock)
        except DBAPIError as exc:
            if not is_product_data_error(exc):
                raise
            _going_one_by_one("incremental", exc)
            one_by_one = True
        else:
            if done is not None:
                return done
    result: ReconcileResult | None = None
    try:
        if not full and engine.dialect.name == "postgresql":
            # two round trips, the fold in the first (incremental_pg); the rest done here
            begun = incremental_pg.postgres_run(engine, lease, actor, started, max_stock)
            if isinstance(begun, ReconcileResult):
                return begun
            previous, high_water, failure = begun  # the lease held
            if failure is not None:
                _going_one_by_one("incremental", failure)
                one_by_one = True
        else:
            with write_session(engine, derived=True) as session:
                if not lease.acquire(session):
                    raise lease.busy()
                previous = read_state(session)
                high_water = high_water_mark(session)
        checkpoint = checkpoint_of(previous)
        high_water = max(high_water, checkpoint)
        mode = "incremental" if not (full or previous is None) else "full"
        if mode == "full":
            _add_missing_stock_rows(engine)
        if not one_by_one:  # a full run (incremental ones are done above)
            try:
                report("computing stock", 0, 0)
                result = ReconcileResult(mode="full")
                result.checked, changes = _plan_full(engine, checkpoint, high_water)
                lease.renew()
                report("applying", 0, len(changes))
                _apply(engine, lease, result, changes, checkpoint, high_water, previous,
                       actor, started, report, max_stock)
            except DBAPIError as exc:
                if not is_product_data_error(exc):
                    raise
                _going_one_by_one(mode, exc)
                result = None
        if result is None:
            result = ReconcileResult(mode=mode)
            _reconcile_each(engine, lease, result, checkpoint, high_water, previous, actor,
                            started, report, max_stock)
        lease.held = False  # released in the final transaction, which committed
        if result.refused:
            log.error("reconciliation refused %d product(s): %s", len(result.refused),
                      "; ".join(f"{sku}: {why}" for sku, why in result.refused[:20]))
        return result
    finally:
        if lease.held:  # failed before that commit
            lease.release()


def _add_missing_stock_rows(engine: Engine) -> int:
    """Give every product without a stock row one (stock 0, nothing folded yet), for this
    full run to fold all its events into. Products made through models.Product get theirs in
    the same flush; a row inserted some other way (SQL by hand, an import) would otherwise be
    left out of every run and every list that joins the stock. Returns how many were added."""
    p, s = Product.__table__, ProductStock.__table__  # type: ignore[attr-defined]
    with write_session(engine, derived=True) as session:
        # Counted from RETURNING: a driver may give -1 as the rowcount of INSERT ... SELECT.
        added = len(session.execute(insert(s).from_select(
            ["product_id", "sku"],
            select(p.c.id, p.c.sku).where(~exists().where(s.c.product_id == p.c.id)),
        ).returning(s.c.product_id)).all())
    if added:
        log.warning("%d product(s) had no stock row: added, and folded by this full run", added)
    return added


def _going_one_by_one(mode: str, exc: BaseException) -> None:
    log.warning("reconciliation (%s) hit a data error (%s); going product by product",
                mode, reason_of(exc))


def reconcile_product(engine: Engine, sku: str, *, actor: str = "system",
                      trigger: str | None = None, summary: bool = True,
                      max_stock: int | None = None) -> ReconcileResult:
    """Bring one product's cache up to date with all its events (row-locked; no lease).

    Drift no event explains gets a correction entry; folding events gets none (an adjustment
    logs itself). With `summary`, a summary entry records the run (and the change, if any)."""
    started = time.perf_counter()
    high_water = safe_high_water_mark(engine)
    with write_session(engine, derived=True) as session:
        pid = session.execute(select(Product.id).where(col(Product.sku) == sku)).scalar()
        if pid is None:
            raise NotFound(f"unknown SKU {sku!r}")
        result = fold_product(session, pid, high_water, actor=actor, trigger=trigger,
                              started=started, max_stock=max_stock)
        if summary:
            session.add(ActivityLog(actor=actor, action=ACTION_RUN, entity="product",
                                    entity_id=sku, details=result.log_details(),
                                    created_at=utcnow()))
    return result
