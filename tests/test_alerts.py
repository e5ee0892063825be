"""The admin's alert emails: a reconciliation report when drift no event explains is found, a
system notification when jobs keep failing; each at most once per configured period."""

from __future__ import annotations

from datetime import timedelta

from inventory_helpers import add_events, add_products, corrupt, outbox
from sqlmodel import Session

from kolaq_console import alerts, dispatch
from kolaq_console.inventory.periodic import reconcile_now
from kolaq_console.models import FailedJob, utcnow


def test_a_reconciliation_with_unexplained_drift_emails_the_admin_once_per_period(
        engine, settings):
    ids = add_products(engine, 3)
    add_events(engine, [(ids[0], 10), (ids[1], 5), (ids[2], 7)])
    with dispatch.recording() as calls:
        reconcile_now(engine, settings, full=True)  # folds the events: explained, no email
        assert outbox(engine) == []
        corrupt(engine, ids[1], by=3)  # stock edited behind the event log's back
        reconcile_now(engine, settings, full=True)
        [email] = outbox(engine)
        assert (email.kind, email.to_address) == ("generic", settings.email.admin_email)
        assert "1 unexplained stock correction" in email.subject
        assert "SKU-001: stock 8 -> 5" in email.text
        assert [c.args for c in calls] == [(email.id,)]

        corrupt(engine, ids[2], by=-2)  # more drift in the same period: no second email
        reconcile_now(engine, settings, full=True)
        assert len(outbox(engine)) == 1


def test_the_next_period_may_report_again_and_zero_hours_never_reports(engine, make_settings):
    from kolaq_console.inventory.reconcile import Change, ReconcileResult

    result = ReconcileResult(mode="full", changes=[Change(1, "SKU-1", 8, 5, 0, -3)])
    now = utcnow()
    with dispatch.recording():
        settings = make_settings()
        first = alerts.reconciliation_report(engine, settings, result, now=now)
        assert first is not None
        assert alerts.reconciliation_report(engine, settings, result, now=now) is None
        later = now + timedelta(hours=settings.alerts.reconciliation_report_hours)
        assert alerts.reconciliation_report(engine, settings, result, now=later) is not None
        off = make_settings(alerts__reconciliation_report_hours="0")
        assert alerts.reconciliation_report(engine, off, result, now=later + timedelta(
            days=2)) is None
    assert len(outbox(engine)) == 2


def failures(engine, n: int, when=None) -> None:
    when = when or utcnow()
    with Session(engine) as s:
        for i in range(n):
            s.add(FailedJob(task_id=f"t{i}-{when.timestamp()}", task_name="tasks.send_email",
                            queue="emails", error_type="TransientError",
                            error_message=f"provider 503 #{i}", attempts=4,
                            last_attempt_at=when))
        s.commit()


def test_jobs_failing_past_the_hourly_threshold_notify_the_admin_once_per_period(
        engine, make_settings):
    settings = make_settings(alerts__failed_jobs_per_hour="3")
    with dispatch.recording():
        failures(engine, 2)
        failures(engine, 5, when=utcnow() - timedelta(hours=2))  # older: not counted
        assert alerts.failing_jobs(engine, settings) is None
        failures(engine, 1)
        row_id = alerts.failing_jobs(engine, settings)
        assert row_id is not None
        failures(engine, 10)
        assert alerts.failing_jobs(engine, settings) is None  # same period
    [email] = outbox(engine)
    assert email.subject == "System: 3 failed jobs in the last hour"
    assert "tasks.send_email: 3" in email.text and "provider 503" in email.text
