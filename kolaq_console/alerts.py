"""The admin's alert emails beyond low stock, each at most once per configured period:

- a reconciliation report when a run finds drift no event explains (stock edited outside the
  event log), listing those products; `[alerts] reconciliation_report_hours`;
- a system notification when jobs keep failing: `[alerts] failed_jobs_per_hour` jobs failed for
  good within the last hour; `[alerts] failed_jobs_alert_hours`.

"Once per period" is the outbox's unique idempotency key, `<alert>/<period number>`: however
many runs or consumers find the condition, one email per period is queued.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from kolaq_console import notify
from kolaq_console.config import Settings
from kolaq_console.models import OPEN_FAILED_STATUSES, FailedJob, utcnow

log = logging.getLogger(__name__)

REPORT_LINES = 50


def period_key(alert: str, hours: float, now: datetime) -> str:
    return f"{alert}/{int(now.timestamp() // (hours * 3600))}"


def _queue(engine: Engine, settings: Settings, subject: str, body: str, key: str) -> int | None:
    with Session(engine) as session:
        queued = notify.queue_admin_email(session, settings, subject=subject, body=body, key=key)
        session.commit()
    if not queued.created:
        return None
    notify.enqueue_after_commit([queued.row_id])
    log.warning("alert emailed to the admin: %s", subject)
    return queued.row_id


def reconciliation_report(engine: Engine, settings: Settings, result: Any,
                          now: datetime | None = None) -> int | None:
    """Email the admin the products whose stock drifted with no event to explain it (a
    ReconcileResult); the new outbox row id, or None (no such drift, or already sent)."""
    hours = settings.alerts.reconciliation_report_hours
    drifted = [c for c in result.changes if c.unexplained]
    if not drifted or hours <= 0:
        return None
    now = now or utcnow()
    lines = [f"  {c.sku}: stock {c.old} -> {c.new} ({c.drift:+d}; {c.unexplained:+d} not "
             f"explained by any inventory event)" for c in drifted[:REPORT_LINES]]
    if len(drifted) > REPORT_LINES:
        lines.append(f"  ... and {len(drifted) - REPORT_LINES} more")
    local = now.astimezone(settings.shop.zone).strftime("%Y-%m-%d %H:%M %Z")
    body = "\n".join([
        f"The {result.mode} inventory reconciliation of {local} corrected {len(drifted)} "
        "product(s) whose stored stock did not match their inventory events:",
        "",
        *lines,
        "",
        "Stock changed outside the event log (a manual database edit, an import?). The event "
        "log is the truth and the stock now follows it. `kolaq-console inventory history SKU` "
        "shows each product's events.",
        f"(At most one such report every {hours:g} hours.)",
    ])
    return _queue(engine, settings, f"Inventory reconciliation: {len(drifted)} unexplained "
                  "stock correction(s)", body, period_key("reconciliation_report", hours, now))


def failing_jobs(engine: Engine, settings: Settings, now: datetime | None = None) -> int | None:
    """Email the admin when at least [alerts] failed_jobs_per_hour jobs failed for good in the
    last hour; the new outbox row id, or None."""
    threshold = settings.alerts.failed_jobs_per_hour
    if threshold <= 0:
        return None
    now = now or utcnow()
    since = now - timedelta(hours=1)
    with Session(engine) as session:
        by_task = session.exec(
            select(FailedJob.task_name, func.count())
            .where(col(FailedJob.last_attempt_at) >= since,
                   col(FailedJob.status).in_(OPEN_FAILED_STATUSES))
            .group_by(FailedJob.task_name).order_by(func.count().desc())
        ).all()
        total = sum(n for _, n in by_task)
        if total < threshold:
            return None
        latest = session.exec(
            select(FailedJob).where(col(FailedJob.last_attempt_at) >= since,
                                    col(FailedJob.status).in_(OPEN_FAILED_STATUSES))
            .order_by(col(FailedJob.id).desc()).limit(5)
        ).all()
        recent = [f"  #{j.id} {j.task_name}: {j.error_type}: {j.error_message[:160]}"
                  for j in latest]
    hours = settings.alerts.failed_jobs_alert_hours
    body = "\n".join([
        f"{total} job(s) failed for good in the last hour (alert threshold: {threshold}).",
        "",
        "By task:",
        *[f"  {task}: {n}" for task, n in by_task],
        "",
        "Most recent:",
        *recent,
        "",
        "Look at them with `kolaq-console jobs failed` (or the console's Failed jobs screen); "
        "retry with `kolaq-console jobs retry ID`.",
        f"(At most one such notification every {hours:g} hours.)",
    ])
    return _queue(engine, settings, f"System: {total} failed jobs in the last hour", body,
                  period_key("jobs_failing", hours, now))
