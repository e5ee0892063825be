"""The demo is a living shop on first launch: history ending today (sales this week, so days
of cover mean something), a real reconcile run, email sent, failed with failed-job rows and
bare reasons, and in retry backoff, a finished broadcast, texts, webhook events, activity and
the last hour of job statistics and queue depth. Loading it twice changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from kolaq_console.demo import load_demo
from kolaq_console.demo_live import load_live
from kolaq_console.inventory.lowstock import low_stock_products
from kolaq_console.inventory.stock import read_state
from kolaq_console.jobs.depth import last_hour
from kolaq_console.models import (
    ActivityLog,
    Broadcast,
    EmailOutbox,
    FailedJob,
    JobStat,
    Order,
    QueueDepthSample,
    TextMessage,
    WebhookEvent,
)

NOW = datetime(2026, 12, 1, 17, 2, tzinfo=UTC)
TABLES = (ActivityLog, Broadcast, EmailOutbox, FailedJob, JobStat, Order, QueueDepthSample,
          TextMessage, WebhookEvent)


def counts(engine) -> dict[str, int]:
    with Session(engine) as s:
        return {t.__tablename__: s.exec(select(func.count()).select_from(t)).one()
                for t in TABLES}


def load(engine, settings, now=NOW, **options):
    load_demo(engine, now=now)
    return load_live(engine, settings, now, **options)


def test_every_screen_has_something_true_to_show(engine, settings):
    load(engine, settings)
    week = NOW - timedelta(days=7)
    with Session(engine) as s:
        low = low_stock_products(s, settings.inventory.low_stock_threshold, with_sales=True,
                                 now=NOW)
        assert any(item.sold_7d and item.days_of_cover is not None for item in low)
        assert (read_state(s) or {}).get("at")  # a real reconcile run, not "never reconciled"
        failed = s.exec(select(FailedJob)).all()
        reasons = {f.error_message for f in failed if f.task_name == "tasks.send_email"}
        assert any(r.startswith("403 invalid_api_key") for r in reasons)
        rows = s.exec(select(EmailOutbox)).all()
        assert {"sent", "failed", "queued"} <= {r.status for r in rows}
        backoff = [r for r in rows if r.status == "queued"]
        assert backoff and all(r.attempts == 2 and r.next_attempt_at > NOW for r in backoff)
        assert s.exec(select(Broadcast).where(Broadcast.status == "done")).first()
        assert {t.channel for t in s.exec(select(TextMessage)).all()} == {"sms", "whatsapp"}
        assert s.exec(select(Order).where(col(Order.created_at) >= week)).first()
        assert s.exec(select(WebhookEvent).where(col(WebhookEvent.received_at) >= week)).first()
        actions = {a.action for a in s.exec(select(ActivityLog)).all()}
        assert {"order.status", "inventory.adjust", "inventory.reconcile.run"} <= actions
        charts = last_hour(s, NOW)
    emails = charts.queues["emails"]
    assert None not in emails.depth and sum(emails.completed) > 0 and sum(emails.failed) > 0


def test_loading_the_demo_twice_changes_nothing(engine, settings):
    first = load(engine, settings)
    assert first.changed
    before = counts(engine)
    again = load(engine, settings)
    assert not again.changed and counts(engine) == before


def test_an_hour_later_only_the_new_minutes_of_jobs_and_depth_are_added(engine, settings):
    load(engine, settings)
    before = counts(engine)
    later = load(engine, settings, NOW + timedelta(minutes=5))
    after = counts(engine)
    assert later.samples == 15 and after["queue_depth_samples"] == before[
        "queue_depth_samples"] + 15
    changed = {name for name in before if before[name] != after[name]}
    assert changed <= {"queue_depth_samples", "job_stats"}


def test_failed_demo_jobs_carry_a_call_to_retry_when_the_queue_is_given(engine, settings):
    calls = []
    scheduled = []

    def payload(name, args):
        calls.append((name, args))
        return b"signed call"

    load(engine, settings, payload=payload, enqueue=lambda row, delay: scheduled.append(row))
    with Session(engine) as s:
        emails = s.exec(select(FailedJob).where(FailedJob.task_name == "tasks.send_email")).all()
        backoff = s.exec(select(EmailOutbox.id).where(EmailOutbox.status == "queued")).all()
    assert emails and all(f.payload == b"signed call" for f in emails)
    assert sorted(scheduled) == sorted(backoff)  # outbox and queue agree


def test_the_demos_delivery_webhooks_were_processed_against_the_emails_they_name(engine,
                                                                                 settings):
    load(engine, settings)
    with Session(engine) as s:
        events = s.exec(select(WebhookEvent).where(WebhookEvent.provider == "resend",
                                                   WebhookEvent.event_type == "email.delivered")
                        ).all()
        assert events
        for event in events:
            row = s.exec(select(EmailOutbox).where(
                EmailOutbox.provider_message_id == event.payload["data"]["email_id"])).one()
            assert event.status == "processed" and row.delivery_status == "delivered"
            assert event.order_id is not None and event.error is None
            # the row it names by its id tag, as a real event would be filed
            assert event.email_id == row.id == int(event.payload["data"]["tags"][
                "kolaq_outbox_id"])


def test_the_demos_failed_webhook_quotes_the_lock_error_of_the_database_it_runs_on(engine,
                                                                                   settings):
    load(engine, settings)
    with Session(engine) as s:
        event = s.exec(select(WebhookEvent).where(WebhookEvent.status == "failed")).one()
        job = s.exec(select(FailedJob).where(
            FailedJob.task_name == "tasks.process_webhook")).one()
    expected = {"sqlite": "database is locked",
                "postgresql": 'could not obtain lock on row in relation "orders"'}
    assert event.error == job.error_message == expected[engine.dialect.name]
