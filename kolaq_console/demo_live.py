"""What a running shop has on top of the demo's catalogue and orders, so that every console
screen shows something true on first launch: a real reconcile run and two stock adjustments,
order emails sent, failed (with failed-job rows and their bare reasons) and in retry backoff, a
finished broadcast, SMS and WhatsApp messages, order activity, and the last hour of job
statistics and queue-depth samples.

Idempotent: the one-time part is written once (a system_state marker says it was), and the
last hour's statistics and samples are inserted only where that minute has none.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from kolaq_console.config import Settings
from kolaq_console.emails import EmailRequest, outbox
from kolaq_console.inventory.adjust import adjust
from kolaq_console.inventory.reconcile import reconcile
from kolaq_console.inventory.stock import read_state
from kolaq_console.jobs.depth import write_samples
from kolaq_console.jobs.stats import minute_of
from kolaq_console.models import (
    OUTBOX_TAG,
    ActivityLog,
    Broadcast,
    Customer,
    EmailOutbox,
    FailedJob,
    JobStat,
    Order,
    SystemState,
    TextMessage,
    WebhookEvent,
    utcnow,
)
from kolaq_console.sqlutil import upsert_insert

MARKER = "demo.live"
SEED = 20261201
SEND_EMAIL = "tasks.send_email"
# (reason the provider gave, attempts): bare reasons, as an operator reads them
FAILED_EMAILS = [("403 invalid_api_key: API key is invalid", 3),
                 ("422 validation_error: invalid `to` address", 1)]
RETRYING = "429 rate_limit_exceeded: too many requests"
Payload = Callable[[str, tuple], bytes | None]  # (task name, args) -> the signed Huey call
Enqueue = Callable[[int, float], None]  # (outbox row id, delay in seconds)


@dataclass
class LiveResult:
    reconciled: bool = False
    emails: int = 0
    failed_jobs: int = 0
    texts: int = 0
    broadcasts: int = 0
    activity: int = 0
    stats: int = 0
    samples: int = 0

    @property
    def changed(self) -> bool:
        return any(vars(self).values())


def load_live(engine: Engine, settings: Settings, now: datetime | None = None, *,
              payload: Payload | None = None, enqueue: Enqueue | None = None,
              actor: str = "demo") -> LiveResult:
    """Add the running shop to a loaded demo (see the module). `payload` makes the failed
    jobs retryable (the CLI passes tasks.py's calls); `enqueue` schedules the retries of the
    emails in backoff, so outbox and queue agree."""
    now = now or utcnow()
    result = LiveResult()
    with Session(engine) as session:
        first_time = session.get(SystemState, MARKER) is None
        never_run = not (read_state(session) or {}).get("at")
    if first_time:
        if never_run:
            reconcile(engine, actor="scheduler")  # a real run: "last reconcile" is true
            result.reconciled = True
        for sku, delta, reason in (("KB-BAR-SPOON", 4, "found a box in the back room"),
                                   ("KB-ORNG-375", -2, "two bottles broken in transit")):
            adjust(engine, settings, sku, delta, reason, actor="ada", allow_negative=True,
                   now=now - timedelta(hours=3))
            result.activity += 1
        retrying = _one_time(engine, settings, now, result, payload, actor)
        if enqueue is not None:
            for row_id, at in retrying:
                enqueue(row_id, max((at - utcnow()).total_seconds(), 1.0))
    result.stats = _last_hour_stats(engine, now)
    result.samples = _last_hour_samples(engine, now)
    return result


def _one_time(engine: Engine, settings: Settings, now: datetime, result: LiveResult,
              payload: Payload | None, actor: str) -> list[tuple[int, datetime]]:
    """Emails, failed jobs, a broadcast, texts and activity; the rows in retry backoff."""
    retrying: list[tuple[int, datetime]] = []
    with Session(engine) as session:
        orders = list(session.exec(
            select(Order).where(col(Order.paid_at).is_not(None))
            .where(col(Order.created_at) <= now)
            .order_by(col(Order.created_at).desc()).limit(12)).all())
        emails = {c.id: c for c in session.exec(select(Customer)).all()}
        for n, order in enumerate(reversed(orders)):
            row = outbox.add(session, settings,
                             EmailRequest("order_confirmation", order_number=order.number),
                             commit=False).row
            at = order.created_at + timedelta(minutes=1)
            values: dict = {"created_at": at, "updated_at": at, "attempts": 1}
            if n < len(FAILED_EMAILS):  # failed within the last hour: an incident, today
                reason, attempts = FAILED_EMAILS[n]
                at = now - timedelta(minutes=50 - 20 * n)
                values.update(status="failed", attempts=attempts, last_error=reason,
                              created_at=at, updated_at=at + timedelta(minutes=2 * attempts))
                session.add(_failed_job(row.id, reason, attempts, at, payload))  # type: ignore[arg-type]
                result.failed_jobs += 1
            elif n < len(FAILED_EMAILS) + 2:  # in backoff: the next try in a few minutes
                later = now + timedelta(minutes=4 + 3 * n)
                values.update(status="queued", attempts=2, last_error=RETRYING,
                              created_at=now - timedelta(minutes=9 + n),
                              updated_at=now - timedelta(minutes=2), next_attempt_at=later,
                              lease_until=later + timedelta(seconds=settings.email.lease_seconds))
                retrying.append((row.id, later))  # type: ignore[arg-type]
            else:
                values.update(status="sent", sent_at=at + timedelta(seconds=3),
                              provider_message_id=f"demo-{order.number}",
                              delivery_status="delivered" if n % 3 else None,
                              delivery_updated_at=at + timedelta(minutes=1) if n % 3 else None)
                if n % 3:  # the webhook that said so, processed against this very row
                    _delivered_event(session, order, emails, row.id,
                                     at + timedelta(minutes=1))
            session.execute(update(EmailOutbox).where(col(EmailOutbox.id) == row.id)
                            .values(**values))
            result.emails += 1
        # Retries ran out waiting for a lock; worded as this database words it.
        unknown = ("database is locked" if session.get_bind().dialect.name == "sqlite"
                   else 'could not obtain lock on row in relation "orders"')
        event = WebhookEvent(  # the event the failed job below was processing
            provider="paystack", event_id="charge.success:demo-lock-timeout",
            event_type="charge.success", status="failed", error=unknown, attempts=4,
            payload={"event": "charge.success", "data": {
                "id": 9_999_999, "status": "success", "reference": "PSK-128-10090",
                "amount": 1_500_000, "currency": "NGN"}},
            received_at=now - timedelta(minutes=41), processed_at=now - timedelta(minutes=41))
        session.add(event)
        session.flush()
        session.add(FailedJob(
            task_id="demo-webhook-0001", task_name="tasks.process_webhook", queue="webhooks",
            args=[event.id], error_type="OperationalError", attempts=4, error_message=unknown,
            first_attempt_at=now - timedelta(minutes=41), last_attempt_at=now - timedelta(
                minutes=41), worker_host="demo", created_at=now - timedelta(minutes=41)))
        result.failed_jobs += 1
        done = now - timedelta(days=2, hours=3)
        session.add(Broadcast(
            subject="New: Hibiscus bitters", body_markdown="Our **Hibiscus** is here.",
            audience="subscribers", status="done", idempotency_key="broadcast/demo-hibiscus",
            total=118, sent=115, failed=1, skipped=2, created_by="ada", created_at=done,
            started_at=done, finished_at=done + timedelta(minutes=3), updated_at=done))
        result.broadcasts = 1
        result.texts = _texts(session, settings, orders, emails)
        for order in orders[:4]:
            session.add(ActivityLog(actor="ada", action="order.status", entity="order",
                                    entity_id=order.number, created_at=order.created_at
                                    + timedelta(hours=2),
                                    details={"from": "paid", "to": "processing",
                                             "source": "console"}))
            result.activity += 1
        session.add(SystemState(key=MARKER, value={"at": now.isoformat(), "actor": actor}))
        session.commit()
    return retrying


def _failed_job(row_id: int, reason: str, attempts: int, at: datetime,
                payload: Payload | None) -> FailedJob:
    last = at + timedelta(minutes=2 * (attempts - 1))
    return FailedJob(
        task_id=f"demo-email-{row_id:08d}", task_name=SEND_EMAIL, queue="emails", args=[row_id],
        payload=payload(SEND_EMAIL, (row_id,)) if payload else None,
        error_type="kolaq_console.errors.PermanentJobError", error_message=reason,
        attempts=attempts, first_attempt_at=at, last_attempt_at=last, worker_host="demo",
        worker_pid=4242, created_at=last)


def _texts(session: Session, settings: Settings, orders: list[Order],
           customers: dict) -> int:
    """Order texts by SMS and WhatsApp: sent and delivered, one refused by the carrier."""
    sender = settings.sms.from_number or "+2348000000000"
    added = 0
    for n, order in enumerate(orders[:5]):
        channel = "whatsapp" if n % 2 else "sms"
        customer = customers.get(order.customer_id)
        name = customer.name.split()[0] if customer else "there"
        at = order.created_at + timedelta(minutes=2)
        failed = n == 3
        session.add(TextMessage(
            channel=channel, kind="order_confirmation", to_number=f"+23480{31000000 + n:08d}",
            from_number=settings.sms.whatsapp_from or sender if channel == "whatsapp"
            else sender,
            body=f"{settings.shop.name}: thanks {name}, order {order.number} is confirmed.",
            encoding="gsm7" if channel == "sms" else None,
            segments=1 if channel == "sms" else None,
            status="failed" if failed else "sent",
            delivery_status=None if failed else "delivered",
            error_code=21610 if failed else None,
            last_error="21610 unsubscribed recipient" if failed else None,
            attempts=1, provider_message_id=None if failed else f"SMdemo{order.id:08d}",
            idempotency_key=f"demo/text/{order.number}", order_id=order.id,
            customer_id=order.customer_id, created_at=at, updated_at=at,
            sent_at=None if failed else at + timedelta(seconds=2),
            delivery_updated_at=None if failed else at + timedelta(seconds=30)))
        added += 1
    return added


def _last_hour_stats(engine: Engine, now: datetime) -> int:
    """Per-minute job counts for the last hour where a minute has none (never added twice)."""
    rng = random.Random(SEED)
    first = minute_of(now) - timedelta(minutes=59)
    rows = []
    for i in range(60):
        minute = first + timedelta(minutes=i)
        busy = 6 if 35 <= i <= 44 else 0  # a little rush twenty minutes ago
        rows.append({"minute": minute, "queue": "emails", "task_name": SEND_EMAIL,
                     "completed": rng.randint(1, 5) + busy,
                     "failed": 1 if i in (23, 51) else 0, "retried": 1 if i in (22, 50) else 0,
                     "runtime_us_total": 0, "runtime_us_max": 0})
        if i % 5 == 0:
            rows.append({"minute": minute, "queue": "webhooks",
                         "task_name": "tasks.process_webhook", "completed": rng.randint(1, 3),
                         "failed": 0, "retried": 0, "runtime_us_total": 0,
                         "runtime_us_max": 0})
        if i % 15 == 0:
            rows.append({"minute": minute, "queue": "inventory",
                         "task_name": "tasks.reconcile_inventory", "completed": 1, "failed": 0,
                         "retried": 0, "runtime_us_total": 0, "runtime_us_max": 0})
    with engine.begin() as conn:
        stmt = upsert_insert(conn.dialect.name, JobStat.__table__).on_conflict_do_nothing(
            index_elements=["minute", "queue", "task_name"])
        # Counted, not rowcount: psycopg reports none for an upsert that inserted.
        total = select(func.count()).select_from(JobStat.__table__)
        before = conn.execute(total).scalar_one()
        conn.execute(stmt, rows)
        return conn.execute(total).scalar_one() - before


def _last_hour_samples(engine: Engine, now: datetime) -> int:
    """An hour of queue depth, one sample a minute and queue, with a rush twenty minutes ago
    (inserted only where a minute has none)."""
    rng = random.Random(SEED + 1)
    first = minute_of(now) - timedelta(minutes=59)
    rows = [
        {"minute": first + timedelta(minutes=i), "queue": queue, "pending": pending,
         "scheduled": 2 if queue == "emails" and i >= 55 else 0, "in_flight": 0}
        for i in range(60)
        for queue, pending in (("emails", rng.randint(0, 4) + (14 if 35 <= i <= 40 else 0)),
                               ("inventory", 1 if i % 15 == 0 else 0),
                               ("webhooks", rng.randint(0, 1)))
    ]
    return write_samples(engine, rows)


def _delivered_event(session: Session, order: Order, customers: dict, row_id: int,
                     at: datetime) -> None:
    """Resend's `email.delivered` for the order email (row `row_id`, its id sent as the tag
    OUTBOX_TAG) with provider id `demo-<number>`."""
    event_id = f"msg_demo_delivered_{order.number}"
    known = select(WebhookEvent.id).where(col(WebhookEvent.provider) == "resend",
                                          col(WebhookEvent.event_id) == event_id)
    if session.exec(known).first():
        return  # a demo loaded by an earlier version has it already
    customer = customers.get(order.customer_id)
    session.add(WebhookEvent(
        provider="resend", event_id=event_id, event_type="email.delivered",
        payload={"type": "email.delivered",
                 "data": {"email_id": f"demo-{order.number}",
                          "to": [customer.email if customer else ""],
                          "tags": {OUTBOX_TAG: str(row_id)}}},
        status="processed", attempts=1, order_id=order.id, email_id=row_id, received_at=at,
        processed_at=at + timedelta(seconds=2)))
