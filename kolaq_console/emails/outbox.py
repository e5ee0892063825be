"""The email outbox: every email is a row before it is a job.

`add` composes the request (validate, render once), inserts the row (status `queued`, a
deterministic idempotency key), commits, then enqueues a send job carrying only the row id.
The same logical email added twice returns the existing row. The row is the record: a job lost
with a crashed worker is found by `sweep_stale` once its lease has passed, and sent again under
the same key, which the provider deduplicates.

A little over 400 lines: adding, claiming, finishing, sweeping and resending a row are one
state machine over one table, kept together so its transitions read in one place.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, col, select

from kolaq_console import dispatch
from kolaq_console.config import Settings
from kolaq_console.db import session_scope
from kolaq_console.emails.composers import compose, known_kind
from kolaq_console.emails.request import (
    MAX_KEY_LENGTH,
    EmailDraft,
    EmailRequest,
    body_limit_error,
)
from kolaq_console.errors import NotFound, UserError
from kolaq_console.models import (
    NOT_BROADCAST_SQL,
    ActivityLog,
    BatchStatus,
    EmailBatch,
    EmailOutbox,
    EmailStatus,
    utcnow,
)
from kolaq_console.sqlutil import begin_write, upsert_insert

log = logging.getLogger(__name__)

__all__ = ["Added", "add", "body_limit_error", "enqueue_batch", "enqueue_send", "list_emails",
           "resend_email", "row_summary", "sweep_stale"]

OPEN_STATUSES = (EmailStatus.queued.value, EmailStatus.sending.value)
BATCH_OPEN = (BatchStatus.queued.value, BatchStatus.sending.value)


@dataclass
class Added:
    row: EmailOutbox
    created: bool  # False: the same logical email was already in the outbox; this is that row


# --- adding ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _insert_statement(dialect: str):
    table = EmailOutbox.__table__  # type: ignore[attr-defined]
    return (
        upsert_insert(dialect, table)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(table.c.id)
    )


def _insert_ignoring_duplicate(session: Session, values: dict[str, Any]) -> int | None:
    """INSERT ... ON CONFLICT (idempotency_key) DO NOTHING; the new id, or None if the key
    exists. No exception and no rollback on a duplicate, so the caller's transaction is
    untouched. One statement built once per dialect, values bound at execution."""
    stmt = _insert_statement(session.get_bind().dialect.name)
    return session.connection().execute(stmt, values).scalar()


def by_key(session: Session, key: str) -> EmailOutbox | None:
    return session.exec(select(EmailOutbox).where(EmailOutbox.idempotency_key == key)).first()


def add(
    session: Session,
    settings: Settings,
    request: EmailRequest,
    *,
    commit: bool = True,
    enqueue: bool = True,
) -> Added:
    """Compose `request`, store its outbox row, commit, enqueue its send job.

    The same logical email (same idempotency key) added again returns the existing row and
    sends nothing more. Bad input raises UserError/NotFound and writes nothing.
    `commit=False` only flushes (the row joins the caller's transaction) and does not enqueue:
    call `enqueue_send(row.id)` after your commit, or leave it to the sweeper (one lease later).
    """
    draft = compose(session, settings, request)
    now = utcnow()
    values = _row_values(draft, now, settings.email.lease_seconds)
    new_id = _insert_ignoring_duplicate(session, values)
    created = new_id is not None
    if created:
        # What was inserted, attached without reading it back.
        row = EmailOutbox(id=new_id, **values)
        make_transient_to_detached(row)
        session.add(row)
    else:
        row = by_key(session, draft.idempotency_key)
        assert row is not None
    if commit:
        session.commit()
        if created and enqueue:
            enqueue_or_leave(row.id)  # type: ignore[arg-type]
    if created:
        log.info("email #%s queued: %s to %s (key %s)", row.id, draft.kind, row.to_address,
                 row.idempotency_key)
    return Added(row, created)


def _row_values(draft: EmailDraft, now: datetime, lease_seconds: float) -> dict[str, Any]:
    return {
        "kind": draft.kind,
        "to_address": draft.to,
        "subject": draft.subject,
        "html": draft.html,
        "text": draft.text,
        "headers": draft.headers,
        "status": EmailStatus.queued.value,
        "attempts": 0,
        "idempotency_key": draft.idempotency_key,
        "order_id": draft.order_id,
        "broadcast_id": draft.broadcast_id,
        "provider_tagged": True,  # sent with its id as the provider tag (models.OUTBOX_TAG)
        "created_at": now,
        "updated_at": now,
        # Not sent by then (never enqueued, or its job lost): the sweeper sends it.
        "lease_until": now + timedelta(seconds=lease_seconds),
    }


def enqueue_send(row_id: int, *, delay: float | None = None) -> None:
    """Put the send job of outbox row `row_id` on the `emails` queue (tasks.send_email)."""
    dispatch.enqueue("send_email", row_id, delay=delay)


def enqueue_or_leave(row_id: int) -> None:
    """`enqueue_send` after the row's commit; if the queue is down, the row is safe and the
    outbox sweeper sends it after its lease."""
    try:
        enqueue_send(row_id)
    except Exception as exc:
        log.warning("email #%s stored but not enqueued (%s); the outbox sweeper will send it "
                    "after its lease", row_id, exc)


def enqueue_batch(batch_id: int, *, delay: float | None = None) -> None:
    """Put the send job of batch `batch_id` on the `emails` queue (tasks.send_email_batch)."""
    dispatch.enqueue("send_email_batch", batch_id, delay=delay)


SEND_TASK = "send_email"  # the task whose first argument is an outbox row id
RESEND_MARK = "/resend-"
_RESEND_SUFFIX = len(RESEND_MARK) + 12


def later_copy(conn: Connection | Session, row: Any) -> int | None:
    """The id of a later copy of this email (sent again from it, or from another copy of the
    same email), if any: sending it would reach the customer a second time."""
    base = row.idempotency_key.split(RESEND_MARK)[0][: MAX_KEY_LENGTH - _RESEND_SUFFIX]
    o = EmailOutbox
    return conn.execute(
        # By lower(to_address), its index's expression: copies keep the original's address
        # as it is, and an exact `to_address =` beside it would make SQLite substitute the
        # constant into lower() and leave the index (ix_email_outbox_to_address is gone).
        select(o.id).where(func.lower(col(o.to_address)) == func.lower(row.to_address),
                           col(o.kind) == row.kind,
                           col(o.id) > row.id,
                           col(o.idempotency_key).startswith(base + RESEND_MARK,
                                                             autoescape=True))
        .order_by(col(o.id)).limit(1)
    ).scalar()


@dataclass
class Resent:
    row: EmailOutbox  # the new copy
    closed_failed_jobs: list[int]  # ledger entries of the original's sends, now discarded


def resend_email(
    session: Session, settings: Settings, row_id: int, actor: str | None = None
) -> Resent:
    """An operator's explicit "send again": a new row (same content, new key), an activity-log
    line, committed and enqueued. The original row is left as it was, and the open failed-job
    entries of its sends are closed (each noted in the activity log), so a later retry of them
    cannot send a second copy. Refused (nothing written) while the original is queued or being
    sent: it is on its way already."""
    actor = actor or settings.operator()
    now = utcnow()
    try:
        # Lock order, shared with an operator's retry: ledger entries first, then the row.
        from kolaq_console.jobs.failed import close_open_calls

        conn = begin_write(session)
        original = session.exec(select(EmailOutbox).where(col(EmailOutbox.id) == row_id)).first()
        if original is None:
            raise NotFound(f"email #{row_id} not found")
        suffix = f"{RESEND_MARK}{uuid.uuid4().hex[:12]}"
        base = original.idempotency_key.split(RESEND_MARK)[0]
        key = base[: MAX_KEY_LENGTH - len(suffix)] + suffix
        row = EmailOutbox(
            kind=original.kind, to_address=original.to_address, subject=original.subject,
            html=original.html, text=original.text, headers=dict(original.headers or {}),
            # a broadcast copy's body is its broadcast's rendering with this token put in
            unsubscribe_token=original.unsubscribe_token,
            status=EmailStatus.queued.value, idempotency_key=key, order_id=original.order_id,
            broadcast_id=original.broadcast_id, provider_tagged=True, created_at=now,
            updated_at=now,
            lease_until=now + timedelta(seconds=settings.email.lease_seconds),
        )
        session.add(row)
        session.flush()
        closed = close_open_calls(conn, SEND_TASK, row_id, actor,
                                  f"email #{row_id} was sent again as #{row.id}", now)
        status = session.exec(
            select(EmailOutbox.status).where(col(EmailOutbox.id) == row_id).with_for_update()
        ).one()
        if status in OPEN_STATUSES:
            raise UserError(f"email #{row_id} is {status}: it is on its way already; send it "
                            "again once it is sent or has failed")
        session.add(ActivityLog(
            actor=actor, action="email.resend", entity="email_outbox", entity_id=str(row.id),
            details={"original_id": original.id, "kind": original.kind,
                     "to": original.to_address, "idempotency_key": key,
                     "closed_failed_jobs": closed},
            created_at=now,
        ))
        session.commit()
    except BaseException:
        session.rollback()
        raise
    log.info("email #%s: resend of #%s requested by %s%s", row.id, row_id, actor,
             f"; closed failed job(s) {closed}" if closed else "")
    try:
        enqueue_send(row.id)  # type: ignore[arg-type]
    except Exception as exc:
        log.warning("email #%s stored but not enqueued (%s); the sweeper will send it", row.id, exc)
    return Resent(row, closed)


def list_emails(
    session: Session, status: str | None = None, kind: str | None = None, limit: int = 50
) -> list[EmailOutbox]:
    """Most recent outbox rows first."""
    query = select(EmailOutbox)
    if status:
        if status not in {s.value for s in EmailStatus}:
            choices = ", ".join(s.value for s in EmailStatus)
            raise UserError(f"unknown status {status!r}; expected one of: {choices}")
        query = query.where(EmailOutbox.status == status)
    if kind:
        kind = known_kind(kind)
        query = query.where(EmailOutbox.kind == kind)
        if kind != "broadcast":  # as written, so the planner uses ix_email_outbox_kind
            query = query.where(text(NOT_BROADCAST_SQL))
    return list(session.exec(query.order_by(col(EmailOutbox.id).desc()).limit(limit)).all())


def row_summary(row: EmailOutbox) -> dict[str, Any]:
    """One outbox row for `email list --json` and the console (no bodies)."""
    return {
        "id": row.id,
        "kind": row.kind,
        "to": row.to_address,
        "subject": row.subject,
        "status": row.status,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "provider_message_id": row.provider_message_id,
        "idempotency_key": row.idempotency_key,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "sent_at": row.sent_at,
        "next_attempt_at": row.next_attempt_at,
    }


# --- the sweeper -------------------------------------------------------------------------------


def stale_condition(now: datetime):
    return (
        col(EmailOutbox.status).in_(OPEN_STATUSES),
        or_(col(EmailOutbox.lease_until).is_(None), col(EmailOutbox.lease_until) < now),
    )


def sweep_stale(
    engine: Engine, settings: Settings, *, now: datetime | None = None, limit: int = 1000
) -> list[int]:
    """Re-enqueue outbox rows left queued/sending past their lease (their job was lost with a
    worker, or never enqueued). Each swept row is put back to `queued` with a fresh lease in
    one conditional UPDATE, so concurrent sweepers never enqueue a row twice per lease. A row
    in a batch is sent again with its batch (one job per batch: same members, same key), so
    the provider never sends twice even if the old job lives on. The swept row ids."""
    now = now or utcnow()
    lease = timedelta(seconds=settings.email.lease_seconds)
    with session_scope(engine) as session:
        candidates = session.exec(
            select(EmailOutbox.id).where(*stale_condition(now)).order_by(col(EmailOutbox.id))
            .limit(limit)
        ).all()
        if not candidates:
            return []
        swept = session.execute(
            update(EmailOutbox)
            .where(col(EmailOutbox.id).in_(candidates), *stale_condition(now))
            .values(
                status=EmailStatus.queued.value,
                lease_until=now + lease,
                updated_at=now,
                last_error=func.coalesce(EmailOutbox.last_error, "re-enqueued after its lease"),
            )
            .returning(EmailOutbox.id, EmailOutbox.batch_id)
            .execution_options(synchronize_session=False)
        ).all()
        stale_batches = {batch_id for _, batch_id in swept if batch_id is not None}
        if stale_batches:
            # Members and their batch share one lease: a swept member's batch is stale too.
            session.execute(
                update(EmailBatch)
                .where(col(EmailBatch.id).in_(stale_batches),
                       col(EmailBatch.status).in_(BATCH_OPEN))
                .values(status=BatchStatus.queued.value, lease_until=now + lease,
                        next_attempt_at=None, updated_at=now)
                .execution_options(synchronize_session=False)
            )
    swept = sorted(swept)
    rows = [row_id for row_id, batch_id in swept if batch_id is None]
    in_batches = sorted({batch_id for _, batch_id in swept if batch_id is not None})
    for row_id in rows:
        enqueue_send(row_id)
    for batch_id in in_batches:
        enqueue_batch(batch_id)
    if swept:
        shown = ", ".join(f"#{i}" for i, _ in swept[:20]) + (" ..." if len(swept) > 20 else "")
        log.warning("outbox sweeper re-enqueued %d email(s) past their lease (%d batch(es)): %s",
                    len(swept), len(in_batches), shown)
    return [row_id for row_id, _ in swept]


# --- claims of workers that stopped or died ----------------------------------------------------

HANDED_BACK = "handed back: the worker sending it stopped or died mid-send"


def _handed_back(now: datetime, lease_seconds: float) -> dict[str, Any]:
    return {"status": EmailStatus.queued.value, "next_attempt_at": None, "updated_at": now,
            "lease_until": now + timedelta(seconds=lease_seconds), "last_error": HANDED_BACK}


def _batches_handed_back(conn: Connection, batch_ids: set[int], now: datetime,
                         lease_seconds: float) -> None:
    """Their batches go back to `queued` too (same members, same key: a replay if the
    provider had them)."""
    if batch_ids:
        conn.execute(
            update(EmailBatch)
            .where(col(EmailBatch.id).in_(sorted(batch_ids)),
                   col(EmailBatch.status) == BatchStatus.sending.value)
            .values(status=BatchStatus.queued.value, next_attempt_at=None, updated_at=now,
                    lease_until=now + timedelta(seconds=lease_seconds))
        )


def release_claim(conn: Connection, task_id: str, lease_seconds: float) -> bool:
    """Put back to `queued` the rows (and their batch) that the job run `task_id` was sending
    when it was interrupted (shutdown) or lost (its worker died): the job re-enqueued for it can
    claim them at once instead of after the lease. Rows since sent, or claimed by another run,
    stay."""
    now = utcnow()
    released = conn.execute(
        update(EmailOutbox)
        .where(col(EmailOutbox.status) == EmailStatus.sending.value,
               col(EmailOutbox.task_id) == task_id)
        .values(**_handed_back(now, lease_seconds))
        .returning(EmailOutbox.batch_id)
    ).scalars().all()
    _batches_handed_back(conn, {b for b in released if b is not None}, now, lease_seconds)
    return bool(released)


def release_claims_of(engine: Engine, settings: Settings, worker_ids: Sequence[str]
                      ) -> list[int]:
    """Hand back and re-enqueue the rows that workers known to be dead or stopped were
    sending (a row alone gets its send job, a batch one job). One conditional UPDATE per
    chunk: of concurrent callers, one takes each row. The idempotency keys make a send that
    did reach the provider a replay, not a copy."""
    released: list[tuple[int, int | None]] = []
    ids = sorted(set(worker_ids))
    lease = settings.email.lease_seconds
    for i in range(0, len(ids), 500):
        now = utcnow()
        with engine.begin() as conn:
            found = conn.execute(
                update(EmailOutbox)
                .where(col(EmailOutbox.status) == EmailStatus.sending.value,
                       col(EmailOutbox.claimed_by).in_(ids[i:i + 500]))
                .values(**_handed_back(now, lease))
                .returning(EmailOutbox.id, EmailOutbox.batch_id)
            ).all()
            _batches_handed_back(conn, {b for _, b in found if b is not None}, now, lease)
        released += [(row_id, batch_id) for row_id, batch_id in found]
    for row_id in sorted(r for r, b in released if b is None):
        enqueue_send(row_id)
    for batch_id in sorted({b for _, b in released if b is not None}):
        enqueue_batch(batch_id)
    if released:
        shown = ", ".join(f"#{i}" for i, _ in sorted(released)[:20])
        log.warning("handed back %d email(s) of dead or stopped workers: %s%s", len(released),
                    shown, " ..." if len(released) > 20 else "")
    return sorted(r for r, _ in released)
