"""A broadcast's life: draft, submit (its recipients materialised once), pause, resume, cancel,
and a test copy to the admin. Each change is one transaction with an activity-log line; jobs
are enqueued only after the commit (if that fails, the periodic tending picks it up).

Submitting is idempotent: a broadcast's key is a digest of subject, body and audience, so the
same broadcast submitted twice (two presses, two scripts) is one broadcast, sent once.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from kolaq_console import dispatch
from kolaq_console.broadcasts import audience as audiences
from kolaq_console.broadcasts.sending import settle
from kolaq_console.config import Settings
from kolaq_console.emails import EmailRequest, outbox
from kolaq_console.emails.composers.broadcast import content
from kolaq_console.emails.request import digest
from kolaq_console.errors import NotFound, UserError
from kolaq_console.models import (
    ActivityLog,
    BatchStatus,
    Broadcast,
    BroadcastRecipient,
    BroadcastStatus,
    EmailBatch,
    EmailOutbox,
    RecipientStatus,
    utcnow,
)

log = logging.getLogger(__name__)

@dataclass
class Submitted:
    broadcast: Broadcast
    created: bool  # False: this broadcast was already submitted; nothing new was sent


def check(settings: Settings, subject: str | None, body: str | None, audience: str | None):
    """(subject, body, audience) as they will be sent, or a UserError naming the problem."""
    subject, body = content(subject, body, settings.email.max_body_bytes)
    return subject, body, audiences.parse(audience)


def content_key(subject: str, body: str, audience: str) -> str:
    return f"broadcast/{digest(subject, body, audience, length=32)}"


def _audit(session: Session, actor: str, action: str, b: Broadcast, **details: object) -> None:
    session.add(ActivityLog(actor=actor, action=f"broadcast.{action}", entity="broadcast",
                            entity_id=str(b.id), details={"subject": b.subject, **details}))


def get(session: Session, broadcast_id: int) -> Broadcast:
    b = session.get(Broadcast, broadcast_id)
    if b is None:
        raise NotFound(f"broadcast #{broadcast_id} not found")
    return b


def save_draft(session: Session, *, subject: str, body: str, audience: str, actor: str,
               broadcast_id: int | None = None) -> Broadcast:
    """Create or update a draft (the composer saves as the operator types). Committed."""
    if len(subject) > 300:
        raise UserError("the subject must be at most 300 characters")
    if broadcast_id is None:
        b = Broadcast(subject=subject, body_markdown=body, audience=audience[:80],
                      idempotency_key=f"draft/{uuid.uuid4().hex}", created_by=actor,
                      updated_at=utcnow())
    else:
        b = get(session, broadcast_id)
        if b.status != BroadcastStatus.draft.value:
            raise UserError(f"broadcast #{b.id} is {b.status}: only a draft can be edited")
        b.subject, b.body_markdown, b.audience = subject, body, audience[:80]
        b.updated_at = utcnow()
    session.add(b)
    session.commit()
    return b


def submit(session: Session, settings: Settings, *, actor: str,
           broadcast_id: int | None = None, subject: str | None = None,
           body: str | None = None, audience: str | None = None) -> Submitted:
    """Send a broadcast: a saved draft (`broadcast_id`) or the given content. Its recipients
    are materialised now (net of unsubscribed and suppressed addresses) and its sending job is
    enqueued. The same broadcast submitted again returns the first and sends nothing."""
    draft = None
    if broadcast_id is not None:
        draft = get(session, broadcast_id)
        if draft.status != BroadcastStatus.draft.value:
            return Submitted(draft, False)
        subject, body, audience = draft.subject, draft.body_markdown, draft.audience
    subject, body, who = check(settings, subject, body, audience)
    key = content_key(subject, body, who.name)
    same = session.execute(
        select(Broadcast).where(col(Broadcast.idempotency_key) == key)
    ).scalar_one_or_none()
    if same is not None:
        return Submitted(same, False)

    now = utcnow()
    b = draft or Broadcast(subject=subject, body_markdown=body, audience=who.name,
                           idempotency_key=key, created_by=actor, created_at=now)
    b.subject, b.body_markdown, b.audience = subject, body, who.name
    b.idempotency_key, b.status = key, BroadcastStatus.sending.value
    b.started_at = b.updated_at = now
    session.add(b)
    try:
        session.flush()
    except IntegrityError:  # submitted at the same moment elsewhere: that one stands
        session.rollback()
        return Submitted(session.execute(select(Broadcast).where(
            col(Broadcast.idempotency_key) == key)).scalar_one(), False)
    query = audiences.query(session, settings, who).subquery()
    session.execute(insert(BroadcastRecipient).from_select(
        ["broadcast_id", "email", "customer_id", "status"],
        select(literal(b.id), query.c.email, query.c.customer_id,
               literal(RecipientStatus.pending.value))
        # In address order: batches are formed in id order, so the copies' keys (the address,
        # emails.composers.broadcast.copy_key) and lower(to_address) are written in order.
        .order_by(query.c.email),
    ))
    b.total = session.execute(select(func.count()).select_from(BroadcastRecipient).where(
        col(BroadcastRecipient.broadcast_id) == b.id)).scalar_one()
    if b.total == 0:
        session.rollback()
        raise UserError(f"audience {who.name} has no one to send to (net of unsubscribed "
                        "and suppressed addresses); nothing was sent")
    _audit(session, actor, "submit", b, audience=who.name, recipients=b.total)
    session.commit()
    log.info("broadcast #%s submitted by %s: %r to %s (%d recipients)", b.id, actor,
             b.subject, who.name, b.total)
    _enqueue(b.id)  # type: ignore[arg-type]
    return Submitted(b, True)


def _enqueue(broadcast_id: int) -> None:
    try:
        dispatch.enqueue("send_broadcast", broadcast_id)
    except Exception as exc:  # the queue is down: the periodic tending enqueues it later
        log.warning("broadcast #%s: not enqueued (%s); the outbox sweeper will start it",
                    broadcast_id, exc)


def _transition(session: Session, broadcast_id: int, allowed: tuple[str, ...],
                to: str, verb: str) -> Broadcast:
    """Move the broadcast to `to` if it is in `allowed` (one conditional UPDATE, which also
    waits for a sending job forming a batch of it); a UserError otherwise, naming what the
    operator asked for (`verb`: "resumed", not the status it leads to)."""
    now = utcnow()
    changed = session.execute(
        update(Broadcast).where(col(Broadcast.id) == broadcast_id,
                                col(Broadcast.status).in_(allowed))
        .values(status=to, updated_at=now).execution_options(synchronize_session=False)
    ).rowcount
    b = get(session, broadcast_id)
    session.refresh(b)
    if changed != 1:
        raise UserError(f"broadcast #{broadcast_id} is {b.status}; it can be {verb} only when "
                        f"{' or '.join(allowed)}")
    return b


def _withdraw_unsent(session: Session, broadcast_id: int, recipients_to: str) -> int:
    """Take back the copies formed but never handed to the provider (batches not yet
    claimed): their rows and batches go, their recipients become `recipients_to`. Batches
    already claimed or retried go on: the provider may have them."""
    unsent = session.execute(
        select(EmailBatch.id).where(
            col(EmailBatch.broadcast_id) == broadcast_id,
            col(EmailBatch.status) == BatchStatus.queued.value,
            col(EmailBatch.attempts) == 0,
        ).with_for_update()
    ).scalars().all()
    if not unsent:
        return 0
    rows = select(EmailOutbox.id).where(col(EmailOutbox.batch_id).in_(unsent))
    taken = session.execute(
        update(BroadcastRecipient).where(col(BroadcastRecipient.outbox_id).in_(rows))
        .values(status=recipients_to, outbox_id=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.execute(delete(EmailOutbox).where(col(EmailOutbox.batch_id).in_(unsent))
                    .execution_options(synchronize_session=False))
    session.execute(delete(EmailBatch).where(col(EmailBatch.id).in_(unsent))
                    .execution_options(synchronize_session=False))
    return taken


def pause(session: Session, broadcast_id: int, *, actor: str) -> Broadcast:
    """Stop forming batches; copies not yet handed to the provider go back to pending."""
    b = _transition(session, broadcast_id, (BroadcastStatus.sending.value,),
                    BroadcastStatus.paused.value, "paused")
    back = _withdraw_unsent(session, broadcast_id, RecipientStatus.pending.value)
    _audit(session, actor, "pause", b, withdrawn=back)
    session.commit()
    log.info("broadcast #%s paused by %s (%d queued copies withdrawn)", broadcast_id, actor, back)
    return b


def resume(session: Session, broadcast_id: int, *, actor: str) -> Broadcast:
    b = _transition(session, broadcast_id, (BroadcastStatus.paused.value,),
                    BroadcastStatus.sending.value, "resumed")
    _audit(session, actor, "resume", b)
    session.commit()
    log.info("broadcast #%s resumed by %s", broadcast_id, actor)
    _enqueue(broadcast_id)
    return b


def cancel(session: Session, broadcast_id: int, *, actor: str) -> Broadcast:
    """Nothing more is sent: unsent copies and pending recipients are cancelled (batches the
    provider may already have finish and are counted)."""
    b = _transition(session, broadcast_id,
                    (BroadcastStatus.sending.value, BroadcastStatus.paused.value,
                     BroadcastStatus.draft.value),
                    BroadcastStatus.cancelled.value, "cancelled")
    _withdraw_unsent(session, broadcast_id, RecipientStatus.cancelled.value)
    stopped = session.execute(
        update(BroadcastRecipient)
        .where(col(BroadcastRecipient.broadcast_id) == broadcast_id,
               col(BroadcastRecipient.status) == RecipientStatus.pending.value)
        .values(status=RecipientStatus.cancelled.value, reason="broadcast cancelled")
        .execution_options(synchronize_session=False)
    ).rowcount
    _audit(session, actor, "cancel", b, not_sent=stopped)
    session.commit()
    settle(session.get_bind(), broadcast_id)  # type: ignore[arg-type]
    log.info("broadcast #%s cancelled by %s", broadcast_id, actor)
    return b


def send_test(session: Session, settings: Settings, *, subject: str, body: str,
              actor: str) -> EmailOutbox:
    """One copy to the admin, as a recipient would see it (a new copy at every call), with
    its line in the activity log."""
    subject, body = content(subject, body, settings.email.max_body_bytes)
    request = EmailRequest("broadcast", to=settings.email.admin_email, subject=subject,
                           body=body, context={"test": True})
    row = outbox.add(session, settings, request, commit=False).row
    session.add(ActivityLog(actor=actor, action="broadcast.test", entity="email_outbox",
                            entity_id=str(row.id),
                            details={"subject": subject, "to": row.to_address}))
    session.commit()
    outbox.enqueue_or_leave(row.id)  # type: ignore[arg-type]
    log.info("broadcast test copy #%s sent to the admin by %s", row.id, actor)
    return row
