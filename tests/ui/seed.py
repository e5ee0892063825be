"""Fixed data for console tests and snapshots: the demo shop plus outbox rows with set
statuses and times. Times are relative to NOW, the frozen clock the console is given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from kolaq_console.config import Settings
from kolaq_console.demo import load_demo
from kolaq_console.emails.outbox import queue
from kolaq_console.inventory.adjust import adjust
from kolaq_console.inventory.reconcile import reconcile
from kolaq_console.inventory.stock import CHECKPOINT_KEY
from kolaq_console.models import ActivityLog, EmailOutbox, Product, SystemState

NOW = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)


def clock() -> datetime:
    return NOW


# (order number, status, attempts, last error, provider id, minutes before NOW)
EMAILS = [
    ("KB-10002", "sent", 1, None, "msg-0001-test", 95),
    ("KB-10003", "sent", 1, None, "msg-0002-test", 80),
    ("KB-10004", "failed", 4, "422 validation_error: invalid `to` address", None, 61),
    ("KB-10005", "sent", 2, None, "msg-0003-test", 40),
    ("KB-10010", "sending", 1, None, None, 3),
    ("KB-10011", "queued", 0, None, None, 1),
]


def seed_shop(engine: Engine, settings: Settings) -> None:
    """The demo shop, the nightly reconciliation (02:00 in Lagos) and two adjustments, with
    every time fixed."""
    load_demo(engine)
    nightly = NOW - timedelta(hours=10)
    reconcile(engine, actor="scheduler")
    adjust(engine, settings, "KB-BAR-SPOON", 3, "found a box in the back room", actor="ada")
    adjust(engine, settings, "KB-ORNG-375", -2, "two bottles broken in transit", actor="ada")
    with Session(engine) as session:
        session.execute(update(Product).values(last_reconciled_at=nightly))
        session.flush()
        entries = session.exec(
            select(ActivityLog).where(col(ActivityLog.action).startswith("inventory."))
            .order_by(col(ActivityLog.id))
        ).all()
        for n, entry in enumerate(entries):  # the run at 02:00, the rest this morning
            entry.created_at = nightly if n == 0 else NOW - timedelta(minutes=50 - 5 * n)
            if entry.action == "inventory.reconcile":
                session.execute(update(Product).where(col(Product.sku) == entry.entity_id)
                                .values(last_reconciled_at=entry.created_at))
        state = session.get(SystemState, CHECKPOINT_KEY)
        assert state is not None
        state.value = {**state.value, "at": nightly.isoformat(), "full_at": nightly.isoformat()}
        session.commit()


def seed_emails(engine: Engine, settings: Settings) -> list[int]:
    """Order confirmations in every status (not enqueued); their ids, oldest first."""
    ids = []
    with Session(engine) as session:
        for number, status, attempts, error, provider_id, minutes in EMAILS:
            row = queue(session, settings, "order_confirmation", order_number=number,
                        enqueue=False).row
            at = NOW - timedelta(minutes=minutes)
            session.execute(
                update(EmailOutbox).where(EmailOutbox.id == row.id).values(
                    status=status, attempts=attempts, last_error=error,
                    provider_message_id=provider_id, created_at=at,
                    updated_at=at + timedelta(seconds=30 * attempts),
                    sent_at=at + timedelta(seconds=30) if status == "sent" else None,
                    lease_until=NOW + timedelta(hours=1),
                )
            )
            ids.append(row.id)
        session.commit()
    return ids
