"""Processing one stored event: its effects and its new status in one transaction.

The transaction's first statement claims the row (`UPDATE ... WHERE status = 'received'`),
which takes its row lock (PostgreSQL) or the write lock (SQLite): a second job for the same
event waits, then finds it no longer `received` and does nothing. The effects and the final
status commit together, so a worker killed half-way leaves the event `received` with nothing
applied, and the sweeper (or the job ledger) runs it again. The emails it queued are enqueued
after the commit.

Outcomes (what the Huey task sees): the event's new status ("processed", "ignored",
"flagged"), "skipped" when it was not `received`; an exception is recorded on the row and
re-raised for Huey's retries, and after the last one the event is `failed`.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from kolaq_console import notify
from kolaq_console.config import Settings
from kolaq_console.models import WebhookEvent, WebhookStatus, utcnow
from kolaq_console.redact import redact
from kolaq_console.webhooks.effects import apply
from kolaq_console.webhooks.verify import Event

log = logging.getLogger(__name__)


def process_event(engine: Engine, settings: Settings, row_id: int, *, retries_left: int = 0,
                  retry_delay: float = 0.0) -> str:
    now = utcnow()
    table = WebhookEvent.__table__  # type: ignore[attr-defined]
    try:
        with Session(engine, expire_on_commit=False) as session:
            claimed = session.execute(
                update(table)
                .where(table.c.id == row_id, table.c.status == WebhookStatus.received.value)
                .values(attempts=table.c.attempts + 1, processed_at=now)
                .returning(table.c.provider, table.c.event_id, table.c.event_type,
                           table.c.payload)
            ).first()
            if claimed is None:
                session.rollback()
                log.info("webhook event #%s: not received (already processed?); skipped", row_id)
                return "skipped"
            event = Event(claimed.provider, claimed.event_id, claimed.event_type,
                          dict(claimed.payload or {}))
            outcome = apply(session, settings, event)
            session.execute(
                update(table).where(table.c.id == row_id)
                .values(status=outcome.status, error=outcome.note, lease_until=None,
                        order_id=outcome.order_id, email_id=outcome.email_id)
            )
            session.commit()
    except Exception as exc:
        _record_failure(engine, row_id, exc, retries_left, retry_delay,
                        settings.webhooks.lease_seconds)
        raise
    notify.enqueue_after_commit(outcome.emails)
    log.info("webhook event #%s %s %s: %s%s", row_id, event.provider, event.event_type,
             outcome.status, f" ({outcome.note})" if outcome.note else "")
    return outcome.status


def _record_failure(engine: Engine, row_id: int, exc: BaseException, retries_left: int,
                    retry_delay: float, lease_seconds: float) -> None:
    reason = redact(f"{type(exc).__name__}: {exc}")[:2000]
    final = retries_left <= 0
    values: dict = {"attempts": col(WebhookEvent.attempts) + 1, "error": reason}
    if final:
        values.update(status=WebhookStatus.failed.value, lease_until=None)
    else:  # Huey retries it; the sweeper leaves it alone until well after that retry is due
        values["lease_until"] = utcnow() + timedelta(seconds=retry_delay + lease_seconds)
    try:
        with Session(engine) as session:
            session.execute(
                update(WebhookEvent)
                .where(col(WebhookEvent.id) == row_id,
                       col(WebhookEvent.status) == WebhookStatus.received.value)
                .values(**values).execution_options(synchronize_session=False)
            )
            session.commit()
    except Exception:
        log.exception("webhook event #%s: could not record its failure", row_id)
    if final:
        log.error("webhook event #%s failed for good: %s", row_id, reason)
    else:
        log.warning("webhook event #%s: %s; retry in %.2f s (%d left)", row_id, reason,
                    retry_delay, retries_left)


def process_events(engine: Engine, settings: Settings, row_ids: tuple[int, ...], *,
                   retries_left: int = 0, retry_delay: float = 0.0) -> list[str]:
    """Process each event of one job (a batch the server committed together) in its own
    transaction; if any raised, the first error is re-raised after the others ran, so Huey
    retries the job and the events already done are skipped."""
    outcomes: list[str] = []
    first_error: Exception | None = None
    for row_id in row_ids:
        try:
            outcomes.append(process_event(engine, settings, row_id, retries_left=retries_left,
                                          retry_delay=retry_delay))
        except Exception as exc:
            outcomes.append("error")
            first_error = first_error or exc
    if first_error is not None:
        raise first_error
    return outcomes
