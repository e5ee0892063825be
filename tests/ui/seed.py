"""Fixed data for console tests and snapshots: the demo shop plus outbox rows with set
statuses and times. Times are relative to NOW, the frozen clock the console is given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from kolaq_console.config import Settings
from kolaq_console.demo import load_demo
from kolaq_console.emails import EmailRequest, outbox
from kolaq_console.inventory.adjust import adjust
from kolaq_console.inventory.reconcile import reconcile
from kolaq_console.inventory.stock import CHECKPOINT_KEY
from kolaq_console.models import (
    ActivityLog,
    EmailOutbox,
    FailedJob,
    InventoryEvent,
    JobStat,
    SystemState,
    Worker,
)

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

DELIVERY = {"msg-0001-test": "delivered", "msg-0003-test": "bounced"}
# queued again after failed tries: (attempts, minutes until the next try, last error)
BACKOFF = {"KB-10011": (2, 8, "503 service_unavailable: try again later")}


def seed_shop(engine: Engine, settings: Settings) -> None:
    """The demo shop, the nightly reconciliation (02:00 in Lagos) and two adjustments, with
    every time fixed."""
    load_demo(engine, now=NOW)
    nightly = NOW - timedelta(hours=10)
    reconcile(engine, actor="scheduler")
    adjust(engine, settings, "KB-BAR-SPOON", 3, "found a box in the back room", actor="ada")
    adjust(engine, settings, "KB-ORNG-375", -2, "two bottles broken in transit", actor="ada")
    with Session(engine) as session:
        entries = session.exec(
            select(ActivityLog).where(col(ActivityLog.action).startswith("inventory."))
            .order_by(col(ActivityLog.id))
        ).all()
        for n, entry in enumerate(entries):  # the run at 02:00, the rest this morning
            entry.created_at = nightly if n == 0 else NOW - timedelta(minutes=50 - 5 * n)
        # the demo's own entries (its load, consent) and the adjustments' events (the adjusted
        # products' reconciled times): fixed too
        session.execute(update(ActivityLog)
                        .where(~col(ActivityLog.action).startswith("inventory."))
                        .values(created_at=NOW - timedelta(days=1)))
        for n, event in enumerate(session.exec(
                select(InventoryEvent).where(InventoryEvent.kind == "adjustment")
                .order_by(col(InventoryEvent.id))).all()):
            event.created_at = NOW - timedelta(minutes=40 - 5 * n)
        state = session.get(SystemState, CHECKPOINT_KEY)
        assert state is not None
        state.value = {**state.value, **dict.fromkeys(("at", "full_at", "checkpoint_at"),
                                                      nightly.isoformat())}
        session.commit()


def seed_emails(engine: Engine, settings: Settings) -> list[int]:
    """Order confirmations in every status (not enqueued); their ids, oldest first."""
    ids = []
    with Session(engine) as session:
        for number, status, attempts, error, provider_id, minutes in EMAILS:
            request = EmailRequest("order_confirmation", order_number=number)
            row = outbox.add(session, settings, request, enqueue=False).row
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
            if number in BACKOFF:
                tries, wait, last = BACKOFF[number]
                session.execute(update(EmailOutbox).where(EmailOutbox.id == row.id).values(
                    attempts=tries, last_error=last,
                    next_attempt_at=NOW + timedelta(minutes=wait)))
            ids.append(row.id)
        for provider_id, state in DELIVERY.items():  # what Resend's webhooks reported
            session.execute(update(EmailOutbox)
                            .where(EmailOutbox.provider_message_id == provider_id)
                            .values(delivery_status=state, delivery_updated_at=NOW))
        session.commit()
    return ids


# (task, queue, error type, message, attempts, minutes before NOW, args)
FAILED = [
    ("tasks.send_email", "emails", "kolaq_console.emails.transports.TransientError",
     "network error talking to Resend: connection refused", 4, 95, [12]),
    ("tasks.reconcile_inventory", "inventory", "kolaq_console.inventory.lease.LeaseBusy",
     "another reconciliation holds the lease (until 11:02)", 4, 58, []),
    ("tasks.process_webhook", "webhooks", "ValueError",
     "paystack event evt_000123: unknown order KB-99999", 1, 31, [41]),
    ("tasks.send_email", "emails", "kolaq_console.errors.PermanentJobError",
     "422 validation_error: invalid `to` address", 1, 12, [3]),
]
TRACEBACK = """Traceback (most recent call last):
  File "tasks.py", line 31, in send_email
    return email_jobs.send(row_id)
  File "kolaq_console/emails/delivery.py", line 88, in send
    raise PermanentJobError(reason)
kolaq_console.errors.PermanentJobError: 422 validation_error: invalid `to` address
"""


def seed_ledger(engine: Engine) -> None:
    """Open failed jobs, a live and a dead worker, and 30 minutes of throughput."""
    with Session(engine) as session:
        for n, (task, queue_name, etype, message, attempts, minutes, args) in enumerate(FAILED):
            last = NOW - timedelta(minutes=minutes)
            session.add(FailedJob(
                task_id=f"00000000-0000-4000-8000-{n:012d}", task_name=task, queue=queue_name,
                args=args, error_type=etype, error_message=message, traceback=TRACEBACK,
                attempts=attempts, first_attempt_at=last - timedelta(seconds=155 * (attempts - 1)),
                last_attempt_at=last, worker_host="shop-1", worker_pid=4242, created_at=last,
            ))
        session.add(Worker(id="shop-1:4242:1", host="shop-1", pid=4242, threads=4,
                           queues=["emails", "inventory", "webhooks"], periodic=True,
                           started_at=NOW - timedelta(hours=6),
                           heartbeat_at=NOW - timedelta(seconds=4)))
        session.add(Worker(id="shop-2:977:1", host="shop-2", pid=977, threads=2,
                           queues=["emails"], started_at=NOW - timedelta(hours=3),
                           heartbeat_at=NOW - timedelta(minutes=7)))
        first = NOW.replace(second=0, microsecond=0) - timedelta(minutes=29)
        for i in range(30):
            done = (i * 7) % 11 + (4 if 12 <= i <= 18 else 0)
            session.add(JobStat(minute=first + timedelta(minutes=i), queue="emails",
                                task_name="tasks.send_email", completed=done,
                                failed=1 if i in (17, 28) else 0, retried=2 if i == 17 else 0))
            if i % 10 == 0:
                session.add(JobStat(minute=first + timedelta(minutes=i), queue="inventory",
                                    task_name="tasks.reconcile_inventory", completed=1))
        session.commit()


def seed_depth_samples(engine: Engine) -> None:
    """An hour of queue-depth samples with a 10-minute gap (no worker sampled then)."""
    from kolaq_console.jobs.depth import write_samples

    first = NOW.replace(second=0, microsecond=0) - timedelta(minutes=59)
    write_samples(engine, [
        {"minute": first + timedelta(minutes=i), "queue": queue, "pending": pending,
         "scheduled": 1 if queue == "emails" and i % 9 == 0 else 0, "in_flight": 0}
        for i in range(60) if not 20 <= i < 30
        for queue, pending in (("emails", (i * 5) % 17 + (12 if 40 <= i <= 48 else 0)),
                               ("inventory", 1 if i % 10 == 0 else 0), ("webhooks", 0))
    ])


def seed_broadcasts(engine: Engine, settings: Settings) -> None:
    """One broadcast done three days ago, one sending now (60 of 120 sent over the last
    minute, 2 failed, 3 skipped) and a draft, all at fixed times."""
    from kolaq_console.broadcasts.copies import Copies
    from kolaq_console.models import Broadcast, BroadcastRecipient, Customer

    with Session(engine) as session:
        addresses = [c.email.lower() for c in session.exec(
            select(Customer).order_by(col(Customer.id))).all()]
        done_at = NOW - timedelta(days=3)
        session.add(Broadcast(
            subject="November tasting notes", body_markdown="Three new pairings.",
            audience="subscribers", status="done", idempotency_key="broadcast/seed-1",
            total=48, sent=46, failed=1, skipped=1, created_by="ada", created_at=done_at,
            started_at=done_at, finished_at=done_at + timedelta(minutes=2)))
        running = Broadcast(
            subject="Harmattan cocktails", body_markdown="# Three drinks\n\nFor dry season.",
            audience="customers", status="sending", idempotency_key="broadcast/seed-2",
            created_by="ada", created_at=NOW - timedelta(minutes=2),
            started_at=NOW - timedelta(minutes=2))
        session.add(running)
        session.flush()
        copies = Copies.stored(session, settings, running.id, running.subject,
                               running.body_markdown)
        for n, address in enumerate(addresses[:120]):
            recipient = BroadcastRecipient(broadcast_id=running.id, email=address)
            if n < 62:
                status = "sent" if n < 60 else "failed"
                sent_at = NOW - timedelta(seconds=59 - n) if n < 60 else None
                row = EmailOutbox(**copies.row_values(address), status=status, attempts=1,
                                  sent_at=sent_at, created_at=NOW - timedelta(seconds=90),
                                  updated_at=NOW - timedelta(seconds=30),
                                  last_error=None if n < 60 else "resend refused it: Invalid `to`")
                session.add(row)
                session.flush()
                recipient.status, recipient.outbox_id = "queued", row.id
            elif n < 65:
                recipient.status, recipient.reason = "skipped", "unsubscribed"
            session.add(recipient)
        session.add(Broadcast(
            subject="Festive boxes are back", audience="sku:KB-GIFT-XMAS", status="draft",
            body_markdown="## Gift a bottle of Lagos\n\nOur **Festive Box** is back: three "
                          "bitters, a bar spoon and a card.\n\n- Order by 18 December\n"
                          "- Free delivery in Lagos",
            idempotency_key="draft/seed-3", created_by="ada", created_at=NOW - timedelta(hours=1),
            updated_at=NOW - timedelta(hours=1)))
        session.commit()


def seed_incidents(engine: Engine) -> None:
    """For the record screens: KB-10004's customer bounced (suppressed), and a reconcile of
    KB-ORNG-375 that failed."""
    from kolaq_console.consent import suppress
    from kolaq_console.models import Customer, Order

    with Session(engine) as session:
        order = session.exec(select(Order).where(col(Order.number) == "KB-10004")).one()
        customer = session.get(Customer, order.customer_id)
        assert customer is not None
        suppress(session, customer.email, "bounced", source="resend:msg-seed", actor="resend")
        last = NOW - timedelta(minutes=20)
        session.add(FailedJob(
            task_id="00000000-0000-4000-8000-00000000abcd", task_name="tasks.reconcile_inventory",
            queue="inventory", args=["KB-ORNG-375"], error_type="LeaseBusy",
            error_message="another reconciliation holds the lease", attempts=4,
            first_attempt_at=last - timedelta(minutes=5), last_attempt_at=last,
            worker_host="shop-1", worker_pid=4242, created_at=last))
        for entry in session.exec(select(ActivityLog).where(
                col(ActivityLog.action) == "consent.suppress")).all():
            entry.created_at = NOW - timedelta(minutes=30)
        # seed_shop's two adjustments, at the times of their activity entries
        session.execute(update(InventoryEvent).where(col(InventoryEvent.actor) == "ada")
                        .values(created_at=NOW - timedelta(minutes=40)))
        session.commit()
