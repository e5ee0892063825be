"""Low stock: which products are at or below their threshold, and the daily alert to the admin.

One query (`low_stock_products`) serves the alert, `inventory low-stock`, `status --json` and
the console, so they always agree: active products whose true stock (the cache plus events it
does not cover yet) is at or below the product's own threshold, else the global default.

Alerts: at most one per local day for a given set of products. Each alert is a guard row in
`schedule_runs` (job "inventory.low_stock_alert", slot "<local date>/<n>") listing its SKUs,
inserted in the same transaction as its outbox row. A run alerts only the products no alert
of the day listed yet: the first alert of the day is the consolidated one; a product that
falls low later gets one follow-up listing only the newcomers. Concurrent runs on several
consumers race for the same (job, slot) and exactly one wins.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from kolaq_console.config import Settings
from kolaq_console.inventory.stock import current_stock
from kolaq_console.models import (
    ActivityLog,
    InventoryEvent,
    Product,
    ScheduleRun,
    utcnow,
    with_stock,
)
from kolaq_console.schedules import as_utc, local_date, slot_rows
from kolaq_console.sqlutil import insert_or_ignore, write_session

log = logging.getLogger(__name__)

SALES_WINDOW_DAYS = 7
CHECK_JOB = "inventory.low_stock_check"
ALERT_JOB = "inventory.low_stock_alert"


@dataclass
class LowStockItem:
    product_id: int
    sku: str
    name: str
    stock: int
    threshold: int
    sold_7d: int = 0
    days_of_cover: float | None = None  # stock / average daily sales over 7 days; None: no sales

    def status_dict(self) -> dict[str, Any]:
        """The `status --json` shape (contract keys)."""
        return {"sku": self.sku, "name": self.name, "stock": self.stock,
                "threshold": self.threshold}

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("product_id")
        return d


def days_of_cover(stock: int, sold: int, days: int = SALES_WINDOW_DAYS) -> float | None:
    if sold <= 0:
        return None
    return round(max(stock, 0) / (sold / days), 1)


def low_stock_products(session: Session, default_threshold: int, *, with_sales: bool = False,
                       now: datetime | None = None) -> list[LowStockItem]:
    """Active products at or below their threshold, lowest stock first."""
    u, stock = current_stock()
    threshold = func.coalesce(col(Product.low_stock_threshold), default_threshold)
    rows = session.exec(
        select(Product.id, Product.sku, Product.name, stock, threshold)
        .select_from(with_stock().outerjoin(u, u.c.product_id == col(Product.id)))
        .where(col(Product.active).is_(True), stock <= threshold)
        .order_by(stock, col(Product.sku))
    ).all()
    items = [LowStockItem(pid, sku, name, int(st), int(th)) for pid, sku, name, st, th in rows]
    if with_sales and items:
        since = as_utc(now or utcnow()) - timedelta(days=SALES_WINDOW_DAYS)
        sold = units_sold(session, [i.product_id for i in items], since)
        for item in items:
            item.sold_7d = sold.get(item.product_id, 0)
            item.days_of_cover = days_of_cover(item.stock, item.sold_7d)
    return items


def units_sold(session: Session, product_ids: list[int], since: datetime) -> dict[int, int]:
    e = InventoryEvent
    rows = session.exec(
        select(e.product_id, func.sum(e.delta))
        .where(col(e.kind) == "sale", col(e.created_at) >= since,
               col(e.product_id).in_(product_ids))
        .group_by(col(e.product_id))
    ).all()
    return {pid: -int(total) for pid, total in rows}


@dataclass
class AlertOutcome:
    queued: bool
    reason: str
    key: str | None = None
    outbox_id: int | None = None
    follow_up: bool = False
    skus: list[str] = field(default_factory=list)
    low: int = 0  # products low right now

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _next_n(slots: list[str]) -> int:
    ns = [int(s.rsplit("/", 1)[1]) for s in slots if s.rsplit("/", 1)[-1].isdigit()]
    return max(ns, default=0) + 1


def send_alerts(engine: Engine, settings: Settings, *, now: datetime | None = None,
                actor: str = "system", to: str | None = None) -> AlertOutcome:
    """Alert the admin (or `to`) about low products that no alert listed today (see module
    doc). Every road to a low-stock email comes here (the 08:00 check, its follow-ups,
    `inventory low-stock --send`, `email queue low_stock`), so each alert counts for the day."""
    now = now or utcnow()
    day = local_date(now, settings.shop.zone)
    with Session(engine) as session:  # read-only first: most runs have nothing to send
        quiet = _nothing_new(session, settings, day, now)
    if quiet is not None:
        return quiet
    with write_session(engine) as session:
        items = low_stock_products(session, settings.inventory.low_stock_threshold,
                                   with_sales=True, now=now)
        today = slot_rows(session, ALERT_JOB, day)
        alerted = {sku for row in today for sku in row.details.get("skus", [])}
        new = [i for i in items if i.sku not in alerted]
        if not new:  # another run alerted them between the two reads
            return AlertOutcome(False, "another run sent this alert", low=len(items))
        n = _next_n([row.slot for row in today])
        slot = f"{day.isoformat()}/{n}"
        skus = [i.sku for i in new]
        details: dict[str, Any] = {"skus": skus, **({"to": to} if to else {})}
        guard = {"job": ALERT_JOB, "slot": slot, "details": details,
                 "started_at": now, "finished_at": now}
        table = ScheduleRun.__table__  # type: ignore[attr-defined]
        if not insert_or_ignore(session, table, guard):
            return AlertOutcome(False, "another run sent this alert", low=len(items))
        key = f"low_stock/{day.isoformat()}/{n}"
        from kolaq_console.inventory import alert  # the email side, only when one goes out

        outbox_id = alert.send_low_stock_alert(session, settings, new, key, follow_up=n > 1,
                                               as_of=day.isoformat(), to=to)
        session.add(ActivityLog(actor=actor, action="inventory.low_stock.alert",
                                entity="email_outbox", entity_id=str(outbox_id),
                                details={"idempotency_key": key, "skus": skus,
                                         "follow_up": n > 1}, created_at=now))
    log.info("low-stock alert %s queued for %d product(s)", key, len(new))
    return AlertOutcome(True, "queued", key, outbox_id, n > 1, skus, len(items))


def _nothing_new(session: Session, settings: Settings, day: date,
                 now: datetime) -> AlertOutcome | None:
    items = low_stock_products(session, settings.inventory.low_stock_threshold, now=now)
    if not items:
        return AlertOutcome(False, "no product is at or below its threshold")
    alerted = {sku for row in slot_rows(session, ALERT_JOB, day)
               for sku in row.details.get("skus", [])}
    if all(i.sku in alerted for i in items):
        return AlertOutcome(False, "every low product was already alerted today",
                            low=len(items))
    return None


def check_ran_today(session: Session, settings: Settings, now: datetime) -> bool:
    return bool(slot_rows(session, CHECK_JOB, local_date(now, settings.shop.zone)))


def follow_up(engine: Engine, settings: Settings, *, now: datetime | None = None,
              actor: str = "system") -> AlertOutcome:
    """After today's scheduled check has run: alert products that fell low since. Before it,
    do nothing (the check will list them in the day's consolidated alert)."""
    now = now or utcnow()
    with Session(engine) as session:
        if not check_ran_today(session, settings, now):
            return AlertOutcome(False, "today's low-stock check has not run yet")
    return send_alerts(engine, settings, now=now, actor=actor)
