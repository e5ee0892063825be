"""Seeding and reading helpers for the inventory tests."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from kolaq_console.inventory.stock import CHECKPOINT_KEY, checkpoint_of
from kolaq_console.models import (
    ActivityLog,
    EmailOutbox,
    InventoryEvent,
    Product,
    ProductStock,
    ScheduleRun,
    SystemState,
    utcnow,
)


def add_products(engine: Engine, n: int, *, prefix: str = "SKU", threshold: int | None = None,
                 stock: int = 0, active: bool = True) -> list[int]:
    with Session(engine) as session:
        products = [Product(sku=f"{prefix}-{i:03d}", name=f"Product {prefix} {i}",
                            stock_row=ProductStock(stock=stock),
                            low_stock_threshold=threshold, active=active) for i in range(n)]
        session.add_all(products)
        session.commit()
        return [p.id for p in products]  # type: ignore[misc]


def add_events(engine: Engine, pairs: Iterable[tuple[int, int]], *, kind: str = "restock",
               created_at: datetime | None = None) -> None:
    rows = [{"product_id": pid, "delta": d, "kind": kind, "actor": "test",
             "created_at": created_at or utcnow()} for pid, d in pairs]
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(InventoryEvent), rows)


def stocks(engine: Engine) -> dict[int, int]:
    with Session(engine) as session:
        return dict(session.exec(  # type: ignore[arg-type]
            select(ProductStock.product_id, ProductStock.stock)).all())


def truth(engine: Engine) -> dict[int, int]:
    """SUM(delta) per product computed by the database, zero for products without events."""
    with Session(engine) as session:
        sums = dict(session.exec(
            select(InventoryEvent.product_id, func.sum(InventoryEvent.delta))
            .group_by(InventoryEvent.product_id)
        ).all())
        ids = session.exec(select(Product.id)).all()
    return {pid: int(sums.get(pid, 0)) for pid in ids}


def covered(engine: Engine) -> dict[int, int]:
    """Per product, SUM(delta) of the events the cache claims to cover (id <= W(product))."""
    with Session(engine) as session:
        state = session.exec(
            select(SystemState.value).where(col(SystemState.key) == CHECKPOINT_KEY)).first()
        cp = checkpoint_of(state)
        out = {}
        marks = session.exec(select(ProductStock.product_id, ProductStock.stock_event_id)).all()
        for pid, mark in marks:
            out[pid] = int(session.exec(
                select(func.coalesce(func.sum(InventoryEvent.delta), 0))
                .where(col(InventoryEvent.product_id) == pid,
                       col(InventoryEvent.id) <= max(cp, mark))
            ).one())
    return out


def checkpoint(engine: Engine) -> int:
    with Session(engine) as session:
        return checkpoint_of(session.exec(
            select(SystemState.value).where(col(SystemState.key) == CHECKPOINT_KEY)).first())


def activity(engine: Engine, action: str | None = None) -> list[ActivityLog]:
    with Session(engine) as session:
        stmt = select(ActivityLog).order_by(col(ActivityLog.id))
        if action:
            stmt = stmt.where(col(ActivityLog.action) == action)
        return list(session.exec(stmt).all())


def outbox(engine: Engine) -> list[EmailOutbox]:
    with Session(engine) as session:
        return list(session.exec(select(EmailOutbox).order_by(col(EmailOutbox.id))).all())


def schedule_rows(engine: Engine, job: str | None = None) -> list[ScheduleRun]:
    with Session(engine) as session:
        stmt = select(ScheduleRun).order_by(col(ScheduleRun.id))
        if job:
            stmt = stmt.where(col(ScheduleRun.job) == job)
        return list(session.exec(stmt).all())


def counts(engine: Engine) -> dict[str, int]:
    """Row counts of everything an inventory command may write."""
    with Session(engine) as session:
        return {
            model.__tablename__: session.exec(select(func.count()).select_from(model)).one()
            for model in (InventoryEvent, ActivityLog, EmailOutbox, ScheduleRun)
        } | {"stock": sum(stocks(engine).values())}


def reset(engine: Engine) -> None:
    with engine.begin() as conn:
        for model in (ActivityLog, EmailOutbox, ScheduleRun, SystemState, InventoryEvent,
                      ProductStock, Product):
            conn.execute(delete(model))  # type: ignore[arg-type]


def corrupt(engine: Engine, product_id: int, by: int) -> None:
    """Edit stored stock behind reconciliation's back (what the full run must catch)."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE product_stock SET stock = stock + :by WHERE product_id = :id"),
                     {"by": by, "id": product_id})


def details(entries: list[ActivityLog]) -> list[dict[str, Any]]:
    return [e.details for e in entries]
