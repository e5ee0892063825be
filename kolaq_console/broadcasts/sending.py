"""Turning a broadcast's pending recipients into batches, a few at a time, and noticing the end.

`produce` (the `send_broadcast` job) forms batches of up to 100 copies while fewer than
`[email] broadcast_lookahead` of this broadcast's batches wait to be sent, each in one
transaction: the recipients are locked, checked again (consent withdrawn since the submit,
suppressed, invalid: skipped with the reason), their copies stored as outbox rows of a new
batch, and the batch's send job enqueued after the commit. Every batch sent asks for another
run (tasks.py), so the queue stays fed without holding a worker thread for the whole list.
The broadcast row is read FOR SHARE while a batch is formed, so a pause or cancel (which
updates that row) waits for it and then sees the batch to withdraw.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy import bindparam, exists, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from kolaq_console import consent
from kolaq_console.broadcasts.audience import parse
from kolaq_console.broadcasts.copies import Copies
from kolaq_console.broadcasts.progress import counts
from kolaq_console.config import Settings
from kolaq_console.emails.batches import MAX_MEMBERS
from kolaq_console.emails.outbox import enqueue_batch
from kolaq_console.models import (
    BatchStatus,
    Broadcast,
    BroadcastRecipient,
    BroadcastStatus,
    EmailBatch,
    EmailOutbox,
    EmailStatus,
    RecipientStatus,
    utcnow,
)
from kolaq_console.sqlutil import write_session

log = logging.getLogger(__name__)

_R = BroadcastRecipient.__table__  # type: ignore[attr-defined]
_OPEN = (EmailStatus.queued.value, EmailStatus.sending.value)


def produce(engine: Engine, settings: Settings, broadcast_id: int) -> int:
    """Form batches of this broadcast up to the lookahead; the number formed. Ends by settling
    the broadcast when nothing of it is left to send."""
    formed = 0
    copies: Copies | None = None
    while True:
        with write_session(engine) as session:
            b = session.execute(
                select(Broadcast).where(col(Broadcast.id) == broadcast_id)
                .with_for_update(read=True)
            ).scalar_one_or_none()
            if b is None or b.status != BroadcastStatus.sending.value:
                break
            if _waiting_batches(session, broadcast_id) >= settings.email.broadcast_lookahead:
                return formed
            pending = session.execute(
                select(_R.c.id, _R.c.email)
                .where(_R.c.broadcast_id == broadcast_id,
                       _R.c.status == RecipientStatus.pending.value)
                .order_by(_R.c.id).limit(MAX_MEMBERS).with_for_update(skip_locked=True)
            ).all()
            if not pending:
                break
            copies = copies or Copies.stored(session, settings, broadcast_id, b.subject,
                                             b.body_markdown)
            batch_id = _form(session, settings, b, copies, pending)
        if batch_id is not None:
            enqueue_batch(batch_id)
            formed += 1
    settle(engine, broadcast_id)
    return formed


def _waiting_batches(session: Session, broadcast_id: int) -> int:
    return session.execute(
        select(func.count()).select_from(EmailBatch).where(
            col(EmailBatch.broadcast_id) == broadcast_id,
            col(EmailBatch.status) == BatchStatus.queued.value,
            col(EmailBatch.attempts) == 0,
        )
    ).scalar_one()


def _form(session: Session, settings: Settings, b: Broadcast, copies: Copies,
          pending: list) -> int | None:
    """One batch of these recipients' copies (those who may still be written to); None if
    every one of them was skipped."""
    who = parse(b.audience)
    addresses = [email for _, email in pending]
    refused = consent.refusals(session, addresses, marketing=addresses,
                               consent_required=who.kind == "subscribers")
    # Addresses are not validated again here: one the provider refuses fails alone, with its
    # reason (permissive batches), and checking 10,000 of them costs more than sending them.
    keep: list[tuple[int, str]] = []
    skipped: list[dict] = []
    for recipient_id, email in pending:
        reason = refused.get(email)
        if reason:
            skipped.append({"rid": recipient_id, "why": reason[:300]})
        else:
            keep.append((recipient_id, email))
    now = utcnow()
    if skipped:
        session.execute(
            update(_R).where(_R.c.id == bindparam("rid"))
            .values(status=RecipientStatus.skipped.value, reason=bindparam("why")),
            skipped,
        )
    if not keep:
        return None
    lease = now + timedelta(seconds=settings.email.lease_seconds)
    batch_id = session.execute(
        insert(EmailBatch).values(
            idempotency_key=f"batch/{uuid.uuid4().hex}", status=BatchStatus.queued.value,
            attempts=0, size=len(keep), broadcast_id=b.id, created_at=now, updated_at=now,
            lease_until=lease,
        ).returning(EmailBatch.id)
    ).scalar_one()
    rows = [
        {**copies.row_values(email), "status": EmailStatus.queued.value, "attempts": 0,
         "batch_id": batch_id, "created_at": now, "updated_at": now, "lease_until": lease}
        for _, email in keep
    ]
    table = EmailOutbox.__table__  # type: ignore[attr-defined]
    # Ids matched by key, not by order: asking for parameter order makes SQLAlchemy insert
    # one row per statement (no sentinel column), 100 statements instead of one.
    ids = dict(session.execute(
        insert(table).returning(table.c.idempotency_key, table.c.id), rows
    ).all())
    session.execute(
        update(_R).where(_R.c.id == bindparam("rid"))
        .values(status=RecipientStatus.queued.value, outbox_id=bindparam("oid")),
        [{"rid": rid, "oid": ids[row["idempotency_key"]]}
         for (rid, _), row in zip(keep, rows, strict=True)],
    )
    return batch_id


def settle(engine: Engine, broadcast_id: int) -> bool:
    """If nothing of the broadcast is pending or on its way, write its final figures (and
    `done` if it was sending); True when it did."""
    with write_session(engine) as session:
        b = session.execute(
            select(Broadcast).where(col(Broadcast.id) == broadcast_id).with_for_update()
        ).scalar_one_or_none()
        final = (BroadcastStatus.sending.value, BroadcastStatus.cancelled.value)
        if b is None or b.status not in final or b.finished_at is not None:
            return False
        pending = session.execute(select(exists().where(
            _R.c.broadcast_id == broadcast_id,
            _R.c.status == RecipientStatus.pending.value))).scalar()
        open_rows = session.execute(select(exists().where(
            col(EmailOutbox.broadcast_id) == broadcast_id,
            col(EmailOutbox.status).in_(_OPEN)))).scalar()
        if pending or open_rows:
            return False
        figures = counts(session, broadcast_id)
        b.sent, b.failed, b.skipped = figures["sent"], figures["failed"], figures["skipped"]
        b.cancelled, b.total = figures["cancelled"], figures["total"]
        if b.status == BroadcastStatus.sending.value:
            b.status = BroadcastStatus.done.value
        b.finished_at = b.updated_at = utcnow()
        session.add(b)
    log.info("broadcast #%s %s: %d sent, %d failed, %d skipped, %d cancelled of %d",
             broadcast_id, b.status, b.sent, b.failed, b.skipped, b.cancelled, b.total)
    return True


def tend(engine: Engine) -> list[int]:
    """The periodic check: settle broadcasts that have ended; the ids of sending ones with
    pending recipients and no batch waiting (their job was lost): enqueue them again."""
    with Session(engine) as session:
        running = session.execute(
            select(Broadcast.id, Broadcast.status).where(
                col(Broadcast.status).in_((BroadcastStatus.sending.value,
                                           BroadcastStatus.cancelled.value)),
                col(Broadcast.finished_at).is_(None),
            )
        ).all()
        stalled = []
        for broadcast_id, status in running:
            if status == BroadcastStatus.sending.value and not _waiting_batches(
                    session, broadcast_id):
                stalled.append(broadcast_id)
    for broadcast_id, _ in running:
        settle(engine, broadcast_id)
    return stalled
