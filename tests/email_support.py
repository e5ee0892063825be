"""Helpers shared by the email tests: seed orders, read the outbox, point `tasks` at a test."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Any

from helpers import wait_until
from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from kolaq_console.models import (
    ActivityLog,
    Customer,
    EmailOutbox,
    FailedJob,
    Order,
    OrderLine,
    Product,
    utcnow,
)

FIXED_TIME = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
KEY = "test-key-not-real"


def seed_order(
    engine: Engine,
    number: str = "KB-1001",
    *,
    name: str = "Ada Okafor",
    email: str = "ada@example.com",
    status: str = "paid",
    carrier: str | None = None,
    tracking: str | None = None,
    tracking_url: str | None = None,
    address: dict[str, Any] | None = None,
    lines: list[tuple[str, str, int, int]] | None = None,
) -> int:
    """An order with its customer and products; returns the order id."""
    lines = lines or [
        ("KB-ORIG-750", "Kolaq Original Bitters 750 ml", 2, 1_250_000),
        ("KB-BAR-SPOON", "Bar Spoon", 1, 450_000),
    ]
    with Session(engine) as s:
        customer = s.exec(select(Customer).where(Customer.email == email)).first()
        if customer is None:
            customer = Customer(email=email, name=name, created_at=FIXED_TIME)
            s.add(customer)
            s.flush()
        subtotal = sum(q * p for _, _, q, p in lines)
        order = Order(
            number=number, customer_id=customer.id, status=status, currency="NGN",
            subtotal_minor=subtotal, shipping_minor=250_000, total_minor=subtotal + 250_000,
            shipping_address=address or {"name": name, "line1": "12 Marina Road",
                                         "city": "Lagos", "state": "LA", "country": "NG"},
            carrier=carrier, tracking_number=tracking, tracking_url=tracking_url,
            created_at=FIXED_TIME, updated_at=FIXED_TIME,
        )
        s.add(order)
        s.flush()
        for sku, pname, qty, price in lines:
            product = s.exec(select(Product).where(Product.sku == sku)).first()
            if product is None:
                product = Product(sku=sku, name=pname, price_minor=price)
                s.add(product)
                s.flush()
            s.add(OrderLine(order_id=order.id, product_id=product.id, sku=sku, name=pname,
                            quantity=qty, unit_price_minor=price))
        s.commit()
        return order.id  # type: ignore[return-value]


def rows(engine: Engine) -> list[EmailOutbox]:
    with Session(engine) as s:
        return list(s.exec(select(EmailOutbox).order_by(EmailOutbox.id)).all())


def row(engine: Engine, row_id: int) -> EmailOutbox:
    with Session(engine) as s:
        found = s.get(EmailOutbox, row_id)
        assert found is not None
        return found


def count(engine: Engine, model: type = EmailOutbox) -> int:
    with Session(engine) as s:
        return s.exec(select(func.count()).select_from(model)).one()


def activity(engine: Engine) -> list[ActivityLog]:
    with Session(engine) as s:
        return list(s.exec(select(ActivityLog).order_by(ActivityLog.id)).all())


def status_counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as s:
        result = s.exec(
            select(EmailOutbox.status, func.count()).group_by(EmailOutbox.status)
        ).all()
    return dict(result)


def reload_tasks():
    """Rebuild `tasks` (its Huey) from the current runtime settings: the test's queue."""
    import tasks

    return importlib.reload(tasks)


def queue_one(engine, settings, to: str = "ada@example.com") -> int:
    """One generic email queued (and enqueued, if tasks is wired); its row id."""
    from kolaq_console.emails import EmailRequest, outbox

    with Session(engine, expire_on_commit=False) as session:
        request = EmailRequest("generic", to=to, subject="Your note", body="Hello")
        return outbox.add(session, settings, request).row.id


def record_failed_send(engine, row_id: int, huey, status: str = "failed") -> int:
    """A failed-send ledger entry for `row_id` (what a worker records when a send fails)."""
    from tasks import send_email

    task = send_email.s(row_id)
    with engine.begin() as conn:
        conn.execute(update(EmailOutbox).where(col(EmailOutbox.id) == row_id)
                     .values(status="failed", last_error="422 validation_error"))
    with Session(engine) as session:
        entry = FailedJob(task_id=task.id, task_name="tasks.send_email", queue="emails",
                          args=[row_id], payload=huey.serialize_task(task), status=status,
                          error_type="PermanentJobError", error_message="422", attempts=1,
                          last_attempt_at=utcnow())
        session.add(entry)
        session.commit()
        return entry.id  # type: ignore[return-value]


def entry_status(engine, entry_id: int) -> str:
    with Session(engine) as session:
        return session.exec(select(FailedJob.status).where(col(FailedJob.id) == entry_id)).one()


def provider_done(stub) -> None:
    """Let the provider finish the requests of the worker that went away, as it soon does in
    production, and wait until it has; a request with the same key meanwhile gets a 409, which
    the tests' scaled-down retry schedule (1.55 s in all) would not outlast."""
    stub.release_delays()
    wait_until(lambda: not stub.pending_idempotency_keys(), message="the provider done")


def updated_at_on_shop_clock(engine, table: str, settings) -> str:
    """Stores one UTC moment as every row's updated_at in `table`; returns it as the shop's
    clock prints it, to the second (the shop's zone is off UTC, so the check means something)."""
    from datetime import UTC, datetime

    from sqlalchemy import text

    stored = datetime(2026, 3, 1, 23, 30, 5)  # UTC, as stored
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {table} SET updated_at = :t"), {"t": stored.isoformat()})
    local = stored.replace(tzinfo=UTC).astimezone(settings.shop.zone)
    assert local.utcoffset()
    return f"{local:%Y-%m-%d %H:%M:%S}"
