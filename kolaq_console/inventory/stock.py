"""Stock is the sum of a product's inventory events; `product_stock.stock` is a cache of it.

The cache's contract (what reconciliation maintains and every query here relies on):

    product_stock.stock = SUM(delta) of the product's events with id <= W(product)
    W(product)          = max(checkpoint, product_stock.stock_event_id)

where `checkpoint` (system_state "inventory.reconcile", value.event_id) is the last event id a
bulk run folded in for every product, and `stock_event_id` is how far a one-product reconcile
(an adjustment, `reconcile --sku`) went past it. Every W is a *safe high-water mark*: all
events with an id at or below it were committed when it was chosen, and none can appear later.

Why that matters: ids are handed out when a row is inserted, not when it commits. On
PostgreSQL a transaction can take id 100, another take 101 and commit first; a reader then sees
101 but not 100. A checkpoint of 101 would skip event 100 forever, and REPEATABLE READ does
not help: it makes one snapshot consistent, not ids and commits agree. `high_water_mark`
therefore takes `LOCK TABLE inventory_events IN SHARE MODE` in a short transaction (the bulk
run's first one, or one of its own): the lock waits for every transaction that has inserted
events to finish (INSERT holds ROW EXCLUSIVE until commit, which conflicts with SHARE; the id
is drawn inside the INSERT, after that lock) and holds new inserts back for the instant it
takes to read MAX(id); after it, every id up to that max is committed or rolled back for good,
and every later insert draws a larger id from the sequence (CACHE 1, the serial default). The
aggregates then bound themselves with `id <= H`, so they need no particular isolation level:
rows at or below H are immutable and visible to any later snapshot; rows above H wait for the
next run. The full run's comparison is one statement, so the cached values and the sums it
compares come from one snapshot, which sees everything at or below H. On SQLite one writer
runs at a time and ids are max(rowid) + 1, so the largest committed id is already safe (and a
run's write transaction, BEGIN IMMEDIATE, sees the latest commit).

An adjustment needs no global mark: it locks its product FOR UPDATE, which conflicts with the
FOR KEY SHARE lock every event insert's foreign-key check holds on its product until commit.
While it holds that lock no event of the product is uncommitted or can be inserted, so its own
event's id is a safe mark for that product, and it folds the product up to it in the same
transaction as the event.

Other areas append events with `record_event` (or any INSERT with the id drawn by the
database) and never write `product_stock` themselves. Readers take a product with its stored
stock from `models.with_stock()` (Core) or `Product.stock_row` (ORM, loaded with the product).

When a product was last reconciled is not stored per row (a timestamp in every row made an
incremental run, which rewrites ~950 of them, dirty twice the pages on SQLite: bench/README.md).
It follows from the contract: a product's stock is verified up to W(product) as of the last
bulk run that moved every product up to the checkpoint (the state's "checkpoint_at"; a run
that refused a product leaves it as it was), or, where its own mark is past the checkpoint,
as of the one-product run that took it there since: that run's time is not kept either, so the
creation time of the event at its mark stands for it (an adjustment's mark is its own event;
`reconcile --sku` marks the newest event of any product, written before the run). Both are
never later than the verification they stand for (`reconciled_times`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Subquery, bindparam, func, literal, text
from sqlalchemy import select as core_select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from kolaq_console.errors import KolaqError
from kolaq_console.models import (
    InventoryEvent,
    ProductStock,
    SystemState,
    utcnow,
)
from kolaq_console.sqlutil import is_postgres, rarely

CHECKPOINT_KEY = "inventory.reconcile"
HWM_LOCK_TIMEOUT = 10.0  # seconds to wait for in-flight event inserts before giving up


class EventsBusy(KolaqError):
    """Event inserts stayed uncommitted too long for a safe checkpoint (retry later)."""


def record_event(session: Session, product_id: int, delta: int, kind: str, *,
                 reference: str | None = None, note: str | None = None,
                 actor: str = "system", created_at: datetime | None = None) -> InventoryEvent:
    """Append one inventory event in the caller's transaction (the stock cache catches up at
    the next reconciliation; `adjust` brings it up to date at once)."""
    event = InventoryEvent(product_id=product_id, delta=delta, kind=kind, reference=reference,
                           note=note, actor=actor, created_at=created_at or utcnow())
    session.add(event)
    session.flush()
    return event


def read_state(session: Session) -> dict[str, Any] | None:
    """The reconciliation state: {"event_id": checkpoint, "at": ..., "full_at": ...} or None
    before the first bulk run."""
    return session.exec(
        select(SystemState.value).where(col(SystemState.key) == CHECKPOINT_KEY)
    ).first()


def checkpoint_of(state: dict[str, Any] | None) -> int:
    return int((state or {}).get("event_id", 0))


def checkpoint_time(state: dict[str, Any] | None) -> datetime | None:
    """When every product was last verified up to the checkpoint (None: never). A state saved
    before "checkpoint_at" existed has its last run's time ("at") in its place."""
    state = state or {}
    value = state.get("checkpoint_at", state.get("at"))
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def reconciled_times(session: Session, state: dict[str, Any] | None,
                     marks: dict[int, int]) -> dict[int, datetime | None]:
    """When each product (product id -> its stock_event_id) was last reconciled, by the rule
    in this module's docstring: the checkpoint's time, or for a product whose mark is past the
    checkpoint (few: adjusted since the last run) the later of that and the creation time of
    the event at its mark (one primary-key lookup for all of them). `state`: `read_state`'s,
    which the caller has read (the console needs it for its own figures too)."""
    checkpoint, at = checkpoint_of(state), checkpoint_time(state)
    past = {mark for mark in marks.values() if mark > checkpoint}
    event_times: dict[int, datetime] = dict(session.exec(  # type: ignore[arg-type]
        select(InventoryEvent.id, InventoryEvent.created_at)
        .where(col(InventoryEvent.id).in_(past))
    ).all()) if past else {}
    times: dict[int, datetime | None] = {}
    for pid, mark in marks.items():
        own = event_times.get(mark) if mark > checkpoint else None
        times[pid] = max(own, at) if own and at else own or at
    return times


def latest_reconciled(session: Session) -> datetime | None:
    """The latest reconciled time of any product (`reconciled_times`), for a shop whose stock
    was folded in without a bulk run (the demo's opening stock): the event at the furthest
    mark. Reads every stock row: only for a shop that has no run state."""
    furthest = select(func.max(ProductStock.stock_event_id)).scalar_subquery()
    return session.exec(select(InventoryEvent.created_at)
                        .where(col(InventoryEvent.id) == furthest)).first()


def checkpoint_expr() -> ColumnElement[int]:
    """The checkpoint as a scalar subquery, so a statement reads it in its own snapshot."""
    value = col(SystemState.value)["event_id"].as_integer()
    sub = select(value).where(col(SystemState.key) == CHECKPOINT_KEY).scalar_subquery()
    return func.coalesce(sub, 0)


def high_water_mark(bind: Session | Connection, lock_timeout: float = HWM_LOCK_TIMEOUT) -> int:
    """The largest event id H such that every event with id <= H is committed (see above),
    inside the caller's transaction. On PostgreSQL that transaction then holds a SHARE lock on
    inventory_events until it ends: keep it short, and hold no product row locks in it (an
    adjustment holds its product's row while it inserts, so that would deadlock)."""
    if is_postgres(bind):
        try:  # one round trip for both statements (no parameters: the simple query protocol)
            bind.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'; "
                              "LOCK TABLE inventory_events IN SHARE MODE"))
        except OperationalError as exc:
            raise EventsBusy(
                "inventory events are being written by a transaction that has stayed open "
                f"more than {lock_timeout:g} s; reconciliation will retry"
            ) from exc
    return int(bind.execute(select(func.coalesce(func.max(InventoryEvent.id), 0))).scalar())


def safe_high_water_mark(engine: Engine, lock_timeout: float = HWM_LOCK_TIMEOUT) -> int:
    """`high_water_mark` in a short transaction of its own."""
    with engine.connect() as conn, conn.begin():
        return high_water_mark(conn, lock_timeout)


def unfolded(checkpoint: ColumnElement[int] | int, high_water: int | None = None,
             name: str = "unfolded") -> Subquery:
    """Per product, the events the cache does not cover yet: id > W(product) (and <= the high
    water mark, when given). Reads the events table by its primary key from the checkpoint on,
    so it costs O(events since the checkpoint), not O(all events)."""
    e, s = InventoryEvent, ProductStock
    cp = checkpoint if isinstance(checkpoint, ColumnElement) else literal(checkpoint)
    stmt = (
        select(
            col(e.product_id).label("product_id"),
            func.sum(e.delta).label("delta"),
            func.count().label("events"),
        )
        .join(s, col(s.product_id) == col(e.product_id))
        .where(rarely(col(e.id) > cp), col(e.id) > col(s.stock_event_id))
        .group_by(col(e.product_id))
    )
    if high_water is not None:
        stmt = stmt.where(col(e.id) <= high_water)
    return stmt.subquery(name)


def above_mark() -> tuple[Any, Any]:
    """(sum, count) of a stock row's events above its own mark and up to :hw, as scalar
    subqueries correlated to product_stock: how a bulk run folds a product that a one-product
    run took past the checkpoint (rare), by the events index of that product."""
    x = InventoryEvent.__table__.alias("x")  # type: ignore[attr-defined]
    s = ProductStock.__table__  # type: ignore[attr-defined]
    past_mark = (x.c.product_id == s.c.product_id, x.c.id > s.c.stock_event_id,
                 x.c.id <= bindparam("hw"))
    return (core_select(func.coalesce(func.sum(x.c.delta), 0)).where(*past_mark)
            .scalar_subquery(),
            core_select(func.count()).where(*past_mark).scalar_subquery())


def current_stock() -> tuple[Subquery, ColumnElement[int]]:
    """Each product's true stock now: the cache plus the events it does not cover yet.

    Returns (subquery, expression); outer-join the subquery on its product_id:
        select(Product.sku, stock).select_from(with_stock().outerjoin(u, u.c.product_id ==
                                                                      Product.id))
    One statement, one snapshot: the checkpoint is read inside it."""
    u = unfolded(checkpoint_expr())
    return u, (col(ProductStock.stock) + func.coalesce(u.c.delta, 0))


def true_stock(session: Session, product_id: int) -> int:
    """SUM(delta) of every event of one product, as this transaction sees them."""
    return int(session.exec(
        select(func.coalesce(func.sum(InventoryEvent.delta), 0))
        .where(col(InventoryEvent.product_id) == product_id)
    ).one())
