"""Sending a broadcast's pending recipients in batches, a few at a time, and noticing the end.

`produce` (the `send_broadcast` job: submit, resume, the periodic tending) starts up to
`[email] broadcast_lookahead` `send_broadcast_batch` jobs. Each (`line_step`) forms one
batch of up to 100 copies and sends it in the same job: in one transaction the recipients are
locked, checked again (consent withdrawn since the submit, suppressed: skipped with the
reason) and their copies stored as a batch already claimed by that job (as any claim stores
it: `sending`, attempt 1, lease, task and worker), so one job, not two, and one consent
check per copy; then the request, then the outcome. A job that sent asks for the next one:
the jobs of a line of batches follow one another, and a line ends when nothing
is pending or enough batches are already on their way. While no limiter paces the requests a
job sends up to `[email] broadcast_batches_per_job` batches itself, each next one claimed in
the transaction that records the one before (one commit and one queue round trip fewer per
batch); it is still stored claimed before its request, as a job of its own would store it.
A batch released for a retry or handed back from a dead worker is sent first by the next job
of its broadcast (or by its own send job).
The broadcast row is read FOR SHARE while a batch is formed, so a pause or cancel (which
updates that row) waits for it; the batch formed is sent, no further one is formed.

Longer than ~400 lines: a job's line of batches claims each next batch inside the transaction
that records the one before, so the line, the claim and the forming share one module.
"""
from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, exists, func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col

from kolaq_console import consent, dispatch
from kolaq_console.broadcasts.audience import parse
from kolaq_console.broadcasts.copies import Copies
from kolaq_console.broadcasts.progress import counts
from kolaq_console.config import Settings
from kolaq_console.emails import batches
from kolaq_console.emails.batches import MAX_MEMBERS, Claimed, Member, claim_params
from kolaq_console.emails.delivery import SKIPPED, Delivered, send_claimed
from kolaq_console.emails.ratelimit import RateLimiter
from kolaq_console.emails.transports import Transport
from kolaq_console.models import (
    BatchStatus,
    Broadcast,
    BroadcastRecipient,
    BroadcastStatus,
    EmailBatch,
    EmailOutbox,
    EmailStatus,
    RecipientStatus,
    UTCDateTime,
    utcnow,
)
from kolaq_console.sqlutil import write_session

log = logging.getLogger(__name__)

_R = BroadcastRecipient.__table__  # type: ignore[attr-defined]
_O = EmailOutbox.__table__  # type: ignore[attr-defined]
_B = EmailBatch.__table__  # type: ignore[attr-defined]
_OPEN = (EmailStatus.queued.value, EmailStatus.sending.value)
_BATCH_OPEN = (BatchStatus.queued.value, BatchStatus.sending.value)


def produce(engine: Engine, settings: Settings, broadcast_id: int) -> int:
    """Start (or top up) the broadcast's sending: enqueue `send_broadcast_batch` jobs until
    `[email] broadcast_lookahead` of its batches are on their way; the number enqueued. Ends
    by settling the broadcast when nothing of it is left to send."""
    with Session(engine) as session:
        b = session.get(Broadcast, broadcast_id)
        running = b is not None and b.status == BroadcastStatus.sending.value
        if not running or not _has_pending(session, broadcast_id):
            started = 0
        else:
            started = max(0, settings.email.broadcast_lookahead
                          - _open_batches(session, broadcast_id))
    for _ in range(started):
        dispatch.enqueue("send_broadcast_batch", broadcast_id)
    if not started:
        settle(engine, broadcast_id)
    return started


def _has_pending(session: Session, broadcast_id: int) -> bool:
    return bool(session.execute(select(exists().where(
        _R.c.broadcast_id == broadcast_id,
        _R.c.status == RecipientStatus.pending.value))).scalar())


def _open_batches(session: Session, broadcast_id: int) -> int:
    """The broadcast's batches on their way (formed and not finished)."""
    return session.execute(
        select(func.count()).select_from(EmailBatch).where(
            col(EmailBatch.broadcast_id) == broadcast_id,
            col(EmailBatch.status).in_(_BATCH_OPEN),
        )
    ).scalar_one()


# A job's batches stop after this long (a slow provider), whatever their number.
LINE_SECONDS = 1.0


def line_step(
    engine: Engine,
    settings: Settings,
    broadcast_id: int,
    *,
    transport: Transport,
    limiter: RateLimiter | None,
    retries_left: int = 0,
    retry_delay: float = 0.0,
    task_id: str | None = None,
    worker_id: str | None = None,
    max_retries: int | None = None,
) -> Delivered:
    """A `send_broadcast_batch` job: the line's batches one after another (`next_claimed`'s
    claim, then the send; each next batch claimed in the transaction that records the one
    before), up to `[email] broadcast_batches_per_job` or LINE_SECONDS while nothing paces or
    holds the requests; then the line's next job, or its end. Every batch is claimed, with its
    consent check, pause and cancel honoured, just before it is sent, as in a job of its own.
    The broadcast is settled whenever a line stops, a failure included (its last batch may
    have failed for good: then nothing else would settle it until tending).

    With `max_retries`, a batch's retries left are (max_retries - its earlier attempts), not
    the job's: a job retried after its batch was taken over by another job may form a fresh
    batch, which must get every retry, not fail on its first error. So only a job that has
    spent none of its own retries sends a line: a retried one sends its batch and hands the
    rest to a fresh job, or a later batch could keep retries its job no longer has (its job
    failed, the batch left queued for the sweep)."""
    started = time.monotonic()
    done = SKIPPED
    may_chain = max_retries is None or retries_left >= max_retries
    try:
        kept: dict[int, Copies] = {}
        claimed = next_claimed(engine, settings, broadcast_id, task_id, worker_id, kept)
        count = 0
        while claimed is not None:
            count += 1
            following: list[Claimed | None] = []
            then = None
            if (may_chain and count < settings.email.broadcast_batches_per_job
                    and time.monotonic() - started < LINE_SECONDS and _unhindered(limiter)):
                def then(session: Session, into: list = following) -> None:
                    into.append(_claim_next(session, settings, broadcast_id,
                                            claim_params(settings.email.lease_seconds,
                                                         task_id, None, worker_id), kept))
            if max_retries is not None:
                retries_left = max(0, max_retries - (claimed.attempts - 1))
            done = send_claimed(engine, settings, claimed, transport=transport,
                                limiter=limiter, retries_left=retries_left,
                                retry_delay=retry_delay, then=then)
            if not following:  # this job's share is sent: the next job carries on
                dispatch.enqueue("send_broadcast_batch", broadcast_id)
                return done
            claimed = following[0]
    except BaseException:
        settle(engine, broadcast_id)
        raise
    settle(engine, broadcast_id)  # nothing left to form here: this line of batches ends
    return done


def _unhindered(limiter: RateLimiter | None) -> bool:
    """May the next batch follow at once? Not through a paced limiter (each request reserves
    a slot: the next job asks for its own), nor while a 429 or quota block holds the sends
    (an unpaced limiter answers that from what it knows, without a round trip)."""
    if limiter is None:
        return True
    if getattr(limiter, "paced", True):
        return False
    try:
        grant = limiter.acquire(0.0)
    except Exception:  # unreadable: the batch's own send meets it and hands the batch back
        return False
    return grant.ok and grant.wait <= 0


@dataclass(frozen=True)
class _Statements:
    broadcast: Any
    open_batches: Any
    pending: Any
    batch: Any


@functools.lru_cache(maxsize=1)
def _statements() -> _Statements:
    """Built once: a statement object reused keeps its cache key (SQLAlchemy's per-call
    construction and key were a good part of each batch's cost)."""
    bc = Broadcast.__table__  # type: ignore[attr-defined]
    return _Statements(
        broadcast=select(bc.c.status, bc.c.audience, bc.c.subject, bc.c.body_markdown)
        .where(bc.c.id == bindparam("b")).with_for_update(read=True),
        open_batches=select(_B.c.id, _B.c.status, _B.c.next_attempt_at)
        .where(_B.c.broadcast_id == bindparam("b"), _B.c.status.in_(_BATCH_OPEN))
        .order_by(_B.c.id),
        pending=select(_R.c.id, _R.c.email)
        .where(_R.c.broadcast_id == bindparam("b"),
               _R.c.status == RecipientStatus.pending.value)
        .order_by(_R.c.id).limit(MAX_MEMBERS).with_for_update(skip_locked=True),
        batch=insert(_B).returning(_B.c.id),
    )


def next_claimed(engine: Engine, settings: Settings, broadcast_id: int,
                 task_id: str | None = None, worker_id: str | None = None,
                 kept: dict[int, Copies] | None = None) -> Claimed | None:
    """The broadcast's next batch, claimed by this job, in one transaction: one of its
    batches that may be sent again (released for a retry and due, or handed back), else the
    next one formed from its pending recipients, claimed as it is stored (status `sending`,
    attempt 1, lease, task and worker noted as any claim notes them, so the sweeper,
    `release_claims_of` and retries treat it like any claimed batch). The consent check in
    the transaction that forms the batch is its only one: it is sent right after the commit.
    None when there is nothing to send now (paused, cancelled, none pending, or enough
    batches on their way)."""
    params = claim_params(settings.email.lease_seconds, task_id, None, worker_id)
    with write_session(engine) as session:
        return _claim_next(session, settings, broadcast_id, params, kept)


def _claim_next(session: Session, settings: Settings, broadcast_id: int,
                params: dict[str, Any], kept: dict[int, Copies] | None = None
                ) -> Claimed | None:
    """`next_claimed` inside the caller's write transaction. `kept`: the broadcast's Copies
    from an earlier batch of the same job (its stored rendering never changes)."""
    st = _statements()
    conn = session.connection()
    b = conn.execute(st.broadcast, {"b": broadcast_id}).first()
    on_their_way = conn.execute(st.open_batches, {"b": broadcast_id}).all()
    for batch_id, status, not_before in on_their_way:
        if status == BatchStatus.queued.value and (not_before is None
                                                   or not_before <= params["b_due"]):
            claimed = batches.claim_in(session, batch_id, params)
            if claimed is not None:
                return claimed
    if b is None or b.status != BroadcastStatus.sending.value:
        return None
    if len(on_their_way) >= settings.email.broadcast_lookahead:
        return None  # enough on their way: this job's line of batches ends
    copies: Copies | None = None if kept is None else kept.get(broadcast_id)
    while True:
        pending = conn.execute(st.pending, {"b": broadcast_id}).all()
        if not pending:
            return None
        if copies is None:
            copies = Copies.stored(conn, settings, broadcast_id, b.subject, b.body_markdown)
            if kept is not None:
                kept[broadcast_id] = copies
        claimed = _form(conn, broadcast_id, b.audience, copies, pending, params)
        if claimed is not None:
            return claimed


def _form(conn: Connection, broadcast_id: int, audience: str, copies: Copies, pending: list,
          params: dict[str, Any]) -> Claimed | None:
    """One claimed batch of these recipients' copies (those who may still be written to);
    None if every one of them was skipped."""
    who = parse(audience)
    addresses = [email for _, email in pending]
    refused = consent.refusals(conn, addresses, marketing=addresses,
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
    if skipped:
        conn.execute(
            update(_R).where(_R.c.id == bindparam("rid"))
            .values(status=RecipientStatus.skipped.value, reason=bindparam("why")),
            skipped,
        )
    if not keep:
        return None
    now, lease, task_id = params["b_now"], params["b_lease"], params["b_task"]
    key = f"batch/{uuid.uuid4().hex}"
    batch_id = conn.execute(_statements().batch, {
        "idempotency_key": key, "status": BatchStatus.sending.value, "attempts": 1,
        "size": len(keep), "broadcast_id": broadcast_id, "created_at": now,
        "updated_at": now, "lease_until": lease, "task_id": task_id,
    }).scalar_one()
    parts = [(rid, email, *copies.part(email)) for rid, email in keep]
    dialect = "postgresql" if conn.dialect.name == "postgresql" else "sqlite"
    # One INSERT ... SELECT over the copies' parts as one JSON parameter: what is the same for
    # every copy is bound once, not 100 times (SQLAlchemy's per-value work was most of it).
    ids = dict(conn.execute(_copies_statement(dialect), {
        "data": json.dumps([{"t": email, "k": token, "h": headers, "i": key}
                            for _, email, token, headers, key in parts]),
        "subject": copies.rendering.subject, "broadcast": broadcast_id, "batch": batch_id,
        "task": task_id, "worker": params["b_worker"], "now": now, "lease": lease,
    }).all())
    if dialect == "postgresql":
        queued = {"rids": [rid for rid, *_ in parts], "oids": [ids[p[-1]] for p in parts]}
    else:
        queued = {"data": json.dumps([{"rid": rid, "oid": ids[key]}
                                      for rid, _, _, _, key in parts])}
    conn.execute(_queued_statement(dialect), queued)
    # Request order is id order, as for any batch (a retry sends the same request).
    subject = copies.rendering.subject
    members = sorted(
        (Member(ids[key], KIND, email, subject, "", "", headers, key, 1, broadcast_id, token,
                True)
         for _, email, token, headers, key in parts),
        key=lambda m: m.id)
    return Claimed(batch_id, key, 1, broadcast_id, tuple(members),
                   {broadcast_id: copies.rendering})


KIND = "broadcast"
_COPIES_SQL = {
    "sqlite": """
        INSERT INTO email_outbox (kind, to_address, subject, html, text, headers,
            unsubscribe_token, status, attempts, idempotency_key, broadcast_id, batch_id,
            task_id, claimed_by, created_at, updated_at, lease_until, provider_tagged)
        SELECT 'broadcast', json_extract(j.value, '$.t'), :subject, '', '',
            json_extract(j.value, '$.h'), json_extract(j.value, '$.k'), 'sending', 1,
            json_extract(j.value, '$.i'), :broadcast, :batch, :task, :worker, :now, :now,
            :lease, TRUE
        FROM json_each(:data) AS j
        RETURNING idempotency_key, id""",
    "postgresql": """
        INSERT INTO email_outbox (kind, to_address, subject, html, text, headers,
            unsubscribe_token, status, attempts, idempotency_key, broadcast_id, batch_id,
            task_id, claimed_by, created_at, updated_at, lease_until, provider_tagged)
        SELECT 'broadcast', j.t, :subject, '', '', j.h, j.k, 'sending', 1, j.i, :broadcast,
            :batch, :task, :worker, :now, :now, :lease, TRUE
        FROM json_to_recordset(CAST(:data AS json)) AS j(t text, k text, h json, i text)
        RETURNING idempotency_key, id""",
}


@functools.lru_cache(maxsize=2)
def _copies_statement(dialect: str):
    return text(_COPIES_SQL[dialect]).bindparams(
        bindparam("now", type_=UTCDateTime()), bindparam("lease", type_=UTCDateTime()))


# The recipients of a formed batch, `queued` with their copy's row, in one statement (not one
# per recipient). SQLite: the + keeps the JSON the outer loop (see emails.batches._SENT_SQL).
# PostgreSQL: the ids as arrays, so the rows are found by primary key whatever the planner's
# statistics say (joined with a JSON record set, with `status = 'pending'` misestimated, it
# chose a nested loop over every pending recipient: O(pending) per batch, 47 ms at 2,900).
_QUEUED_SQL = {
    "sqlite": """
        UPDATE broadcast_recipients SET status = 'queued',
            outbox_id = json_extract(j.value, '$.oid')
        FROM json_each(:data) AS j
        WHERE broadcast_recipients.id = json_extract(j.value, '$.rid')
          AND +broadcast_recipients.status = 'pending'""",
    "postgresql": """
        UPDATE broadcast_recipients SET status = 'queued',
            outbox_id = (CAST(:oids AS integer[]))[array_position(CAST(:rids AS integer[]), id)]
        WHERE id = ANY(CAST(:rids AS integer[])) AND status = 'pending'""",
}


@functools.lru_cache(maxsize=2)
def _queued_statement(dialect: str):
    return text(_QUEUED_SQL[dialect])


def reopen_failed_batches(conn: Connection, broadcast_id: int, lease_seconds: float) -> bool:
    """An operator's retry of a failed `send_broadcast_batch` job: the broadcast's batches
    that failed for good go back to `queued` (same members, same key; emails.batches
    .reopen_batch), for the re-run job to send first. True if any was reopened."""
    failed = conn.execute(
        select(_B.c.id).where(_B.c.broadcast_id == broadcast_id,
                              _B.c.status == BatchStatus.failed.value).order_by(_B.c.id)
    ).scalars().all()
    return [batches.reopen_batch(conn, i, lease_seconds) for i in failed].count(True) > 0


def open_copies(broadcast_id: int):
    """Are any of the broadcast's copies queued or being sent? Found through the status index
    (the few open rows), not the broadcast's (every copy, most of them sent): "+ 0" keeps the
    planners off the latter. SQLite chose it: 6 ms at 30,000 copies against 0.09 ms, and a
    broadcast is settled whenever a line of batches ends."""
    return select(exists().where((col(EmailOutbox.broadcast_id) + 0) == broadcast_id,
                                 col(EmailOutbox.status).in_(_OPEN)))


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
        open_rows = session.execute(open_copies(broadcast_id)).scalar()
        if open_rows or _has_pending(session, broadcast_id):
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


def tend(engine: Engine, quiet_seconds: float = 0.0, now: datetime | None = None
         ) -> list[int]:
    """The periodic check: settle broadcasts that have ended; the ids of sending ones with
    no batch on its way and none formed or finished for `quiet_seconds` (their jobs were
    lost): enqueue them again (`produce` ends those with nothing pending, and starts no more
    than the lookahead). The quiet time keeps a tick from starting more jobs beside live ones
    whose next job merely waits in the queue (each line's next job is not counted anywhere)."""
    cutoff = (now or utcnow()) - timedelta(seconds=quiet_seconds)
    with Session(engine) as session:
        running = session.execute(
            select(Broadcast.id, Broadcast.status, Broadcast.started_at).where(
                col(Broadcast.status).in_((BroadcastStatus.sending.value,
                                           BroadcastStatus.cancelled.value)),
                col(Broadcast.finished_at).is_(None),
            )
        ).all()
        stalled = []
        for broadcast_id, status, started_at in running:
            if status != BroadcastStatus.sending.value or _open_batches(session, broadcast_id):
                continue
            last = session.execute(select(func.max(EmailBatch.updated_at)).where(
                col(EmailBatch.broadcast_id) == broadcast_id)).scalar_one() or started_at
            if last is None or last <= cutoff:
                stalled.append(broadcast_id)
    for broadcast_id, *_ in running:
        settle(engine, broadcast_id)
    return stalled
