"""Emails that send themselves: what order changes, webhooks and alerts queue, in the caller's
transaction, and enqueue only after it commits.

The one seam between these automatic notifications and the email outbox: switching to another
email API is an edit here. A crash between the commit and the enqueue loses nothing (the
outbox sweeper sends rows whose lease ran out).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlmodel import Session

from kolaq_console import consent
from kolaq_console.config import Settings
from kolaq_console.emails import enqueue_send
from kolaq_console.emails.outbox import queue as queue_outbox
from kolaq_console.models import ActivityLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Queued:
    row_id: int | None  # None: not queued (the address is blocked)
    created: bool  # False: this email was queued before (same key), or not at all


def queue_order_email(session: Session, settings: Settings, kind: str, order_number: str, *,
                      to: str, actor: str) -> Queued:
    """Queue the customer email `kind` of an order (its key makes it once per order/status),
    unless the address bounced or complained: then an activity entry says it was skipped."""
    blocked = consent.is_blocked(session, to)
    if blocked:
        session.add(ActivityLog(actor=actor, action="email.skipped", entity="order",
                                entity_id=order_number,
                                details={"kind": kind, "to": to, "reason": blocked}))
        log.info("order %s: %s to %s not queued (address %s)", order_number, kind, to, blocked)
        return Queued(None, False)
    result = queue_outbox(session, settings, kind, order_number=order_number,
                          commit=False, enqueue=False)
    return Queued(result.row.id, result.created)


def queue_admin_email(session: Session, settings: Settings, *, subject: str, body: str,
                      key: str) -> Queued:
    """Queue a plain-text email to the admin under `key` (one per key, ever)."""
    result = queue_outbox(session, settings, "generic", to=settings.email.admin_email,
                          subject=subject, body=body, idempotency_key=key,
                          commit=False, enqueue=False)
    return Queued(result.row.id, result.created)


def enqueue_after_commit(row_ids: Iterable[int | None]) -> None:
    """Enqueue the send jobs of rows a committed transaction created."""
    for row_id in row_ids:
        if row_id is None:
            continue
        try:
            enqueue_send(row_id)
        except Exception as exc:  # the row is committed: the outbox sweeper sends it
            log.warning("email #%s stored but not enqueued (%s); the outbox sweeper will "
                        "send it after its lease", row_id, exc)
