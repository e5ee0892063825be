"""One product folded under its row lock: the one-product run (`reconcile --sku`, adjustments),
the bulk runs' re-check of a row that moved, and their product-by-product fallback; and the data
errors that make one product unreconcilable (never the whole run).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import case, func, insert, update
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlmodel import Session, col, select

from kolaq_console.errors import KolaqError, NotFound
from kolaq_console.inventory.runs import Change, ReconcileResult, correction_rows
from kolaq_console.inventory.stock import checkpoint_of, read_state
from kolaq_console.models import (
    ActivityLog,
    InventoryEvent,
    Product,
    ProductStock,
    utcnow,
)


class Unreconcilable(KolaqError):
    """One product's events cannot be folded into its stored stock (e.g. their sum overflows)."""


def is_product_data_error(exc: BaseException) -> bool:
    """A database error caused by one product's values (an out-of-range number, an overflowing
    sum), as opposed to the database being unreachable or busy."""
    if isinstance(exc, DataError):
        return True
    return isinstance(exc, OperationalError) and "overflow" in str(exc.orig).lower()


def reason_of(exc: BaseException) -> str:
    orig = getattr(exc, "orig", exc)
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


def fold_one(session: Session, product_id: int, stock: int, mark: int, checkpoint: int,
             high_water: int) -> tuple[int, int, int, int]:
    """Under the product's row lock: (new stock, new mark, events folded, unexplained)."""
    covered_to = max(checkpoint, mark)
    target = max(high_water, covered_to)
    e = InventoryEvent
    newer = col(e.id) > covered_to
    total, fold, n = session.exec(
        select(
            func.coalesce(func.sum(e.delta), 0),
            func.coalesce(func.sum(case((newer, col(e.delta)), else_=0)), 0),
            func.count(case((newer, 1), else_=None)),
        ).where(col(e.product_id) == product_id, col(e.id) <= target)
    ).one()
    total, fold, n = int(total), int(fold), int(n)
    return total, target, n, (total - fold) - stock


def fold_locked(session: Session, product_id: int, checkpoint: int,
                high_water: int) -> tuple[Change, int] | None:
    """Lock one product's row and bring its cache up to `high_water` (or further, if its mark
    already is), recording the new mark: (the change, with the old mark as seen_mark; the new
    mark). None if the product no longer exists."""
    s = ProductStock
    row = session.execute(  # the stock row: what bulk runs update
        select(s.sku, s.stock, s.stock_event_id).where(col(s.product_id) == product_id)
        .with_for_update(key_share=True)
    ).first()
    if row is None:
        return None
    sku, stock, mark = row
    new, new_mark, n, unexplained = fold_one(session, product_id, stock, mark, checkpoint,
                                             high_water)
    values: dict[str, Any] = {"stock_event_id": new_mark}
    if new != stock:
        values["stock"] = new
    session.execute(update(s).where(col(s.product_id) == product_id).values(**values))
    return Change(product_id, sku, stock, new, n, unexplained, mark), new_mark


def fold_product(session: Session, product_id: int, high_water: int, *, actor: str,
                 trigger: str | None, started: float,
                 max_stock: int | None = None) -> ReconcileResult:
    """The one-product reconcile inside the caller's transaction: fold the product's events up
    to `high_water` (a mark that is safe for this product), log unexplained drift. Raises
    Unreconcilable (the transaction is then unusable: roll it back) on a data error."""
    result = ReconcileResult(mode="product", checked=1)
    # Lock first, then read the checkpoint: a bulk run that folded this product commits its
    # stock and checkpoint together, so both are seen or neither.
    session.execute(select(ProductStock.product_id)
                    .where(col(ProductStock.product_id) == product_id)
                    .with_for_update(key_share=True))
    checkpoint = checkpoint_of(read_state(session))
    now = utcnow()
    try:
        folded = fold_locked(session, product_id, checkpoint, high_water)
    except DBAPIError as exc:
        if not is_product_data_error(exc):
            raise
        sku = session.execute(select(Product.sku).where(col(Product.id) == product_id)).scalar()
        raise Unreconcilable(
            f"{sku}: cannot be reconciled ({reason_of(exc)}); its stored stock is left as it "
            "was"
        ) from None
    if folded is None:
        raise NotFound(f"product #{product_id} no longer exists")
    change, new_mark = folded
    if change.drift:
        corrections = correction_rows([change], actor, "product", trigger, now)
        if corrections:
            session.execute(insert(ActivityLog), corrections)
        result.changes = [change]
        result.changed = 1
        result.events_folded = change.folded_events
        result.unexplained = int(bool(change.unexplained))
        result.note_out_of_range(max_stock)
    result.checkpoint_from = max(checkpoint, change.seen_mark)
    result.checkpoint_to = new_mark
    result.duration_ms = int((time.perf_counter() - started) * 1000)
    return result
