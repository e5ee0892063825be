"""Operator adjustments (append an event, never edit stock) and a product's history."""

from __future__ import annotations

import difflib
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from kolaq_console.config import Settings
from kolaq_console.errors import NotFound, UserError
from kolaq_console.inventory.lowstock import AlertOutcome, follow_up
from kolaq_console.inventory.reconcile import ReconcileResult, fold_product
from kolaq_console.inventory.stock import (
    read_state,
    reconciled_times,
    record_event,
    true_stock,
)
from kolaq_console.models import ActivityLog, InventoryEvent, InventoryEventKind, Product
from kolaq_console.sqlutil import write_session

MAX_REASON = 500
ACTION_ADJUST = "inventory.adjust"
# inventory_events.delta is a 32-bit integer on PostgreSQL; [inventory] max_adjustment and
# max_stock are bounded by this too (config.py).
DELTA_COLUMN_LIMIT = 2_000_000_000


def unknown_sku(session: Session, sku: str) -> NotFound:
    skus = list(session.exec(select(Product.sku)).all())
    close = difflib.get_close_matches(sku, skus, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return NotFound(f"unknown SKU {sku!r}{hint}")


def shown(number: int | str) -> str:
    """A number for a one-line message, however many digits it has."""
    digits = str(number)
    return digits if len(digits) <= 16 else f"{digits[:12]}... ({len(digits.lstrip('+-'))} digits)"


def parse_delta(text: str) -> int:
    """DELTA from the command line: a non-zero whole number such as 5, +5 or -3."""
    text = text.strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        raise UserError(f"DELTA must be a whole number such as 5 or -3, got {shown(text)!r}")
    if len(text.lstrip("+-0")) > len(str(DELTA_COLUMN_LIMIT)):
        raise UserError(f"DELTA {shown(text)} is far too large for a stock adjustment "
                        f"(at most {DELTA_COLUMN_LIMIT:,} units)")
    value = int(text)
    if value == 0:
        raise UserError("DELTA must not be zero: an adjustment of 0 changes nothing")
    return value


def check_reason(reason: str | None) -> str:
    """The reason an adjustment is recorded with, trimmed; refuses an empty or too long one."""
    reason = (reason or "").strip()
    if not reason:
        raise UserError("--reason is required: say why the stock changed")
    if len(reason) > MAX_REASON:
        raise UserError(f"--reason is {len(reason)} characters; at most {MAX_REASON}")
    return reason


@dataclass
class AdjustResult:
    sku: str
    delta: int
    stock_before: int
    stock_after: int
    event_id: int
    threshold: int
    reconcile: ReconcileResult
    alert: AlertOutcome | None = None

    @property
    def low(self) -> bool:
        return self.stock_after <= self.threshold

    def as_dict(self) -> dict[str, Any]:
        return {
            "sku": self.sku, "delta": self.delta, "stock_before": self.stock_before,
            "stock_after": self.stock_after, "event_id": self.event_id,
            "threshold": self.threshold, "low": self.low,
            "alert": self.alert.as_dict() if self.alert else None,
        }


def _check_bounds(settings: Settings, sku: str, before: int, delta: int) -> None:
    """Refuse a delta or a resulting stock beyond [inventory] max_adjustment / max_stock. A
    correction that brings an out-of-range stock back towards the range is always allowed."""
    limits = settings.inventory
    after = before + delta
    correcting = abs(before) > limits.max_stock and abs(after) < abs(before)
    if abs(delta) > limits.max_adjustment and not correcting:
        raise UserError(
            f"DELTA {shown(delta)} is too large: one adjustment moves at most "
            f"{limits.max_adjustment:,} units ([inventory] max_adjustment)"
        )
    if abs(after) > limits.max_stock and not correcting:
        bound = "at most " if after > 0 else "at least -"
        raise UserError(
            f"{sku}: stock would be {shown(after)} ({before} {delta:+d}); a product holds "
            f"{bound}{limits.max_stock:,} units ([inventory] max_stock)"
        )


def adjust(engine: Engine, settings: Settings, sku: str, delta: int, reason: str, *,
           allow_negative: bool = False, actor: str | None = None,
           now: datetime | None = None) -> AdjustResult:
    """Append an adjustment event for `sku`, audit it, and bring the product's stored stock up
    to date, all in one transaction. Refuses (writing nothing) an unknown SKU, a zero or
    non-integer delta, an empty reason, a delta or a resulting stock beyond the configured
    bounds, and a result below zero unless `allow_negative`."""
    started = time.perf_counter()
    if isinstance(delta, bool) or not isinstance(delta, int):
        raise UserError(f"DELTA must be a whole number, got {delta!r:.40}")
    if delta == 0:
        raise UserError("DELTA must not be zero: an adjustment of 0 changes nothing")
    if abs(delta) > DELTA_COLUMN_LIMIT:
        raise UserError(f"DELTA {shown(delta)} is far too large for a stock adjustment "
                        f"(at most {DELTA_COLUMN_LIMIT:,} units)")
    reason = check_reason(reason)
    actor = actor or settings.operator()

    with write_session(engine) as session:
        # FOR UPDATE (not the key-share variant): every event insert's foreign-key check holds
        # FOR KEY SHARE on its product until it commits, so this waits out the uncommitted
        # events of this product and holds back new ones. Every event of the product at or
        # below ours is then committed: our event's id is a safe mark for this product, and the
        # stored stock is brought up to it in this same transaction.
        product = session.exec(
            select(Product).where(col(Product.sku) == sku).with_for_update(of=Product)
        ).first()
        if product is None:
            raise unknown_sku(session, sku)
        assert product.id is not None
        before = true_stock(session, product.id)
        after = before + delta
        _check_bounds(settings, sku, before, delta)
        if after < 0 and not allow_negative:
            raise UserError(
                f"{sku}: stock would go below zero ({before} {delta:+d} = {after}); "
                "use --allow-negative to record it anyway"
            )
        event = record_event(session, product.id, delta, InventoryEventKind.adjustment.value,
                             note=reason, actor=actor)
        assert event.id is not None
        session.add(ActivityLog(
            actor=actor, action=ACTION_ADJUST, entity="product", entity_id=sku,
            details={"delta": delta, "reason": reason, "event_id": event.id,
                     "stock_before": before, "stock_after": after,
                     "allow_negative": allow_negative},
        ))
        threshold = (product.low_stock_threshold if product.low_stock_threshold is not None
                     else settings.inventory.low_stock_threshold)
        active = product.active
        rec = fold_product(session, product.id, event.id, actor=actor,
                           trigger=f"adjust event {event.id}", started=started,
                           max_stock=settings.inventory.max_stock)

    result = AdjustResult(sku, delta, before, after, event.id, threshold, rec)
    if active and result.low:
        # Low-stock rules: before today's check it will be in the check's alert; after it, a
        # follow-up lists it (once).
        result.alert = follow_up(engine, settings, now=now, actor=actor)
    return result


def history(session: Session, sku: str, limit: int = 50) -> dict[str, Any]:
    """The product, its latest events (newest first, with the stock after each) and the latest
    activity-log entries about it."""
    product = session.exec(select(Product).where(col(Product.sku) == sku)).first()
    if product is None:
        raise unknown_sku(session, sku)
    assert product.id is not None
    total = running = true_stock(session, product.id)
    events = session.exec(
        select(InventoryEvent)
        .where(col(InventoryEvent.product_id) == product.id)
        .order_by(col(InventoryEvent.id).desc())
        .limit(limit)
    ).all()
    rows = []
    for e in events:
        rows.append({"id": e.id, "at": e.created_at, "kind": e.kind, "delta": e.delta,
                     "stock_after": running, "actor": e.actor, "reference": e.reference,
                     "note": e.note})
        running -= e.delta
    activity = session.exec(
        select(ActivityLog)
        .where(col(ActivityLog.entity) == "product", col(ActivityLog.entity_id) == sku)
        .order_by(col(ActivityLog.id).desc())
        .limit(limit)
    ).all()
    reconciled = reconciled_times(session, read_state(session),
                                  {product.id: product.stock_row.stock_event_id})
    return {
        "sku": product.sku, "name": product.name, "stock": total,
        "stored_stock": product.stock_row.stock, "threshold": product.low_stock_threshold,
        "active": product.active, "last_reconciled_at": reconciled[product.id],
        "events": rows,
        "activity": [{"id": a.id, "at": a.created_at, "actor": a.actor, "action": a.action,
                      "details": a.details} for a in activity],
    }
