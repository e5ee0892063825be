"""Batches: outbox rows sent in one provider request, and every change of their state.

A batch is fixed in the database before any call: its row (idempotency key, attempt, lease)
and its members (`email_outbox.batch_id`). From then on the batch is the unit that is claimed,
released for a retry or finished, so a retried or swept batch resends the same members under
the same key and the provider answers it from its idempotency store instead of sending twice.
A member the provider refused leaves its batch (failed alone): the provider never accepted it.

Three ways in: `claim_for_row` (a row's send job: that row first, then up to 99 more waiting
rows, in one statement), `claim_batch` / `claim_in` (a batch released for a retry, handed back
or swept, or one formed ahead by an earlier version), and a broadcast's job, which stores its
batch already claimed (broadcasts.sending, with `claim_params`' values). On the first attempt
of the first two, members whose address may no longer be written to are taken out
(`consent.refusals`) before the membership is final; a broadcast's job checks its copies in
the transaction that forms them.

Longer than ~400 lines: every state change of a batch (form, claim, release, finish, hand
back, sweep) is here together, because each must keep the same members-under-one-key rule.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, insert, or_, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from kolaq_console import consent
from kolaq_console.config import Settings
from kolaq_console.emails.bodies import Rendering, assembled, renderings
from kolaq_console.emails.request import FROM_HEADER, REPLY_TO_HEADER
from kolaq_console.emails.transports import Message
from kolaq_console.errors import UserError
from kolaq_console.models import (
    BatchStatus,
    Broadcast,
    BroadcastStatus,
    EmailBatch,
    EmailOutbox,
    EmailStatus,
    UTCDateTime,
    utcnow,
)
from kolaq_console.redact import redact
from kolaq_console.sqlutil import write_session

MAX_MEMBERS = 100  # the provider's limit per request
# A retried job may start a little before the time we recorded for it (clock reads differ).
SCHEDULE_TOLERANCE = timedelta(seconds=1)

_T = EmailOutbox.__table__  # type: ignore[attr-defined]
_B = EmailBatch.__table__  # type: ignore[attr-defined]
_QUEUED, _SENDING = EmailStatus.queued.value, EmailStatus.sending.value
_OPEN = (_QUEUED, _SENDING)
_MEMBER_COLUMNS = (
    _T.c.id, _T.c.kind, _T.c.to_address, _T.c.subject, _T.c.html, _T.c.text, _T.c.headers,
    _T.c.idempotency_key, _T.c.attempts, _T.c.broadcast_id, _T.c.unsubscribe_token,
    _T.c.provider_tagged,
)


@dataclass(frozen=True)
class Member:
    id: int
    kind: str
    to_address: str
    subject: str
    html: str
    text: str
    headers: dict[str, Any]
    idempotency_key: str
    attempts: int
    broadcast_id: int | None
    unsubscribe_token: str | None = None
    tagged: bool | None = None  # the row's provider_tagged: send its id as the tag

    def message(self, settings: Settings,
                rendered: Mapping[int, Rendering] | None = None) -> Message:
        """What is sent; a broadcast copy's body is its broadcast's rendering (`rendered`,
        by broadcast id) with this copy's token put in (emails.bodies)."""
        html, text_ = self.html, self.text
        if assembled(self.broadcast_id, self.unsubscribe_token):
            html, text_ = (rendered or {})[self.broadcast_id].body(self.unsubscribe_token)
        # The sender and reply-to travel in the stored headers; the rest are sent as headers.
        sender = reply_to = None
        headers: dict[str, str] = {}
        for name, value in (self.headers or {}).items():
            if name == FROM_HEADER:
                sender = value
            elif name == REPLY_TO_HEADER:
                reply_to = value
            else:
                headers[str(name)] = str(value)
        return Message(sender or settings.email.from_address, self.to_address, self.subject,
                       html, text_, self.idempotency_key, reply_to, headers,
                       self.id if self.tagged else None)


@dataclass(frozen=True)
class Claimed:
    """A batch this worker may send now: members in request order, the batch's key."""

    batch_id: int
    idempotency_key: str
    attempts: int
    broadcast_id: int | None
    members: tuple[Member, ...]
    # The renderings the members' bodies are put together from, by broadcast id.
    rendered: Mapping[int, Rendering] = field(default_factory=dict)

    def messages(self, settings: Settings) -> list[Message]:
        return [m.message(settings, self.rendered) for m in self.members]

    @property
    def single(self) -> Member | None:
        """The member of a batch of one: it is sent alone under its own key, as ever."""
        return self.members[0] if len(self.members) == 1 else None


def _due(column, params_due: str = "b_due"):
    return or_(column.is_(None), column <= bindparam(params_due))


# --- claiming ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _claim_waiting_statement():
    """Up to MAX_MEMBERS waiting rows, the anchor first then oldest first, into batch b_batch.
    PostgreSQL skips rows another claim holds (SKIP LOCKED); SQLite's write lock serialises.
    The pick is a materialised CTE: as an IN (subquery) PostgreSQL may run it again per row,
    and each run would skip the rows this statement has just locked, taking more."""
    waiting = (
        select(_T.c.id)
        .where(_T.c.status == _QUEUED, _T.c.batch_id.is_(None), _due(_T.c.next_attempt_at))
        .order_by(case((_T.c.id == bindparam("b_anchor"), 0), else_=1), _T.c.id)
        .limit(MAX_MEMBERS)
        .with_for_update(skip_locked=True)
        .cte("picked")
        .prefix_with("MATERIALIZED")
    )
    return (
        update(_T)
        .where(_T.c.id.in_(select(waiting.c.id)), _T.c.status == _QUEUED,
               _T.c.batch_id.is_(None))
        .values(status=_SENDING, batch_id=bindparam("b_batch"), attempts=_T.c.attempts + 1,
                lease_until=bindparam("b_lease"), updated_at=bindparam("b_now"),
                next_attempt_at=None, task_id=bindparam("b_task"),
                claimed_by=bindparam("b_worker"))
        .returning(*_MEMBER_COLUMNS)
    )


@functools.lru_cache(maxsize=1)
def _claim_batch_statements():
    batch = (
        update(_B)
        .where(
            _B.c.id == bindparam("b_batch"),
            or_(
                and_(_B.c.status == BatchStatus.queued.value, _due(_B.c.next_attempt_at)),
                and_(_B.c.status == BatchStatus.sending.value,
                     _B.c.lease_until < bindparam("b_now")),
            ),
        )
        .values(status=BatchStatus.sending.value, attempts=_B.c.attempts + 1,
                lease_until=bindparam("b_lease"), updated_at=bindparam("b_now"),
                next_attempt_at=None, task_id=bindparam("b_task"))
        .returning(_B.c.idempotency_key, _B.c.attempts, _B.c.broadcast_id)
    )
    members = (
        update(_T)
        .where(_T.c.batch_id == bindparam("b_batch"), _T.c.status.in_(_OPEN))
        .values(status=_SENDING, attempts=_T.c.attempts + 1, lease_until=bindparam("b_lease"),
                updated_at=bindparam("b_now"), next_attempt_at=None,
                task_id=bindparam("b_task"), claimed_by=bindparam("b_worker"))
        .returning(*_MEMBER_COLUMNS)
    )
    return batch, members


def claim_params(lease_seconds: float, task_id: str | None, now: datetime | None,
                 worker_id: str | None = None) -> dict[str, Any]:
    """The claim's values; the members note the claiming worker (`claimed_by`), so that if it
    dies they are handed back as soon as it is known dead (outbox.release_claims_of)."""
    now = now or utcnow()
    return {"b_now": now, "b_due": now + SCHEDULE_TOLERANCE, "b_task": task_id,
            "b_lease": now + timedelta(seconds=lease_seconds), "b_worker": worker_id}


def claim_for_row(
    engine: Engine, row_id: int, lease_seconds: float,
    task_id: str | None = None, now: datetime | None = None, worker_id: str | None = None,
) -> Claimed | None:
    """The send job of row `row_id`: if the row waits, claim it and up to 99 more waiting rows
    as a new batch; if it belongs to a batch that may be sent now (released for a retry, or
    its worker's lease ran out), claim that batch; otherwise None (sent, failed, not due, or
    being sent by another worker)."""
    params = claim_params(lease_seconds, task_id, now, worker_id)
    with write_session(engine) as session:
        conn = session.connection()
        anchor = conn.execute(
            select(_T.c.status, _T.c.batch_id, _T.c.next_attempt_at).where(_T.c.id == row_id)
        ).first()
        if anchor is None:
            return None
        if anchor.batch_id is not None:
            return claim_in(session, anchor.batch_id, params)
        due = anchor.next_attempt_at is None or anchor.next_attempt_at <= params["b_due"]
        if anchor.status != _QUEUED or not due:
            return None
        key = f"batch/{uuid.uuid4().hex}"
        batch_id = conn.execute(
            insert(_B).values(idempotency_key=key, status=BatchStatus.sending.value,
                              attempts=1, created_at=params["b_now"],
                              updated_at=params["b_now"], lease_until=params["b_lease"],
                              task_id=task_id).returning(_B.c.id)
        ).scalar_one()
        rows = conn.execute(_claim_waiting_statement(),
                            {**params, "b_anchor": row_id, "b_batch": batch_id}).all()
        # Request order is id order, on every attempt: a retry under the batch's key must
        # send byte for byte the same request, whichever row's job formed the batch.
        members = sorted((Member(*r) for r in rows), key=lambda m: m.id)
        members = _take_out_refused(session, batch_id, members)
        if not members:
            session.rollback()
            return None
        conn.execute(update(_B).where(_B.c.id == batch_id).values(size=len(members)))
        return Claimed(batch_id, key, 1, None, tuple(members), _rendered(conn, members))


def claim_batch(
    engine: Engine, batch_id: int, lease_seconds: float,
    task_id: str | None = None, now: datetime | None = None, worker_id: str | None = None,
) -> Claimed | None:
    """Claim batch `batch_id` with its unsent members, or None if it may not be sent now."""
    with write_session(engine) as session:
        params = claim_params(lease_seconds, task_id, now, worker_id)
        return claim_in(session, batch_id, params)


def claim_in(session: Session, batch_id: int, params: dict[str, Any]) -> Claimed | None:
    """`claim_batch` inside the caller's write transaction (`params`: `claim_params`)."""
    conn = session.connection()
    batch_stmt, members_stmt = _claim_batch_statements()
    batch = conn.execute(batch_stmt, {**params, "b_batch": batch_id}).first()
    if batch is None:
        return None
    rows = conn.execute(members_stmt, {**params, "b_batch": batch_id}).all()
    members = sorted((Member(*r) for r in rows), key=lambda m: m.id)
    if batch.attempts == 1:  # never sent: the membership may still change
        kept = _take_out_refused(session, batch_id, members)
        if len(kept) != len(members):
            conn.execute(update(_B).where(_B.c.id == batch_id).values(size=len(kept)))
        members = kept
    if not members:  # every member taken out (or withdrawn): nothing left to send
        conn.execute(update(_B).where(_B.c.id == batch_id).values(
            status=BatchStatus.sent.value, lease_until=None, finished_at=params["b_now"]))
        return None
    return Claimed(batch_id, batch.idempotency_key, batch.attempts, batch.broadcast_id,
                   tuple(members), _rendered(conn, members))


def _rendered(conn: Connection, members: list[Member]) -> dict[int, Rendering]:
    return renderings(conn, [m.broadcast_id for m in members  # type: ignore[misc]
                             if assembled(m.broadcast_id, m.unsubscribe_token)])


def _take_out_refused(session: Session, batch_id: int, members: list[Member]) -> list[Member]:
    """Members whose address may not be written to now (suppressed; for marketing copies also
    unsubscribed) leave the batch as `cancelled` with the reason, before any call."""
    if not members:
        return members
    refused = consent.refusals(
        session,
        [m.to_address for m in members],
        marketing=[m.to_address for m in members if m.broadcast_id is not None],
    )
    if not refused:
        return members
    out = [m for m in members if consent.normalise(m.to_address) in refused]
    now = utcnow()
    for member in out:
        session.connection().execute(
            update(_T).where(_T.c.id == member.id, _T.c.batch_id == batch_id).values(
                status=EmailStatus.cancelled.value, batch_id=None, lease_until=None,
                updated_at=now, next_attempt_at=None,
                last_error=f"not sent: {refused[consent.normalise(member.to_address)]}")
        )
    return [m for m in members if m not in out]


# --- outcomes ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _batch_update():
    """UPDATE email_batches SET (the parameters' columns) WHERE id = :b_id, built once."""
    return update(_B).where(_B.c.id == bindparam("b_id"))


def _update_batch(conn: Connection, batch_id: int, **values: Any) -> None:
    conn.execute(_batch_update(), {"b_id": batch_id, "updated_at": utcnow(), **values})


def release(engine: Engine, claimed: Claimed, delay: float, reason: str,
            lease_seconds: float) -> None:
    """Back to `queued`, due again in `delay` seconds, same members; its lease covers that."""
    due = utcnow() + timedelta(seconds=max(0.0, delay))
    lease = due + timedelta(seconds=lease_seconds)
    reason = redact(reason)
    with write_session(engine) as session:
        conn = session.connection()
        _update_batch(conn, claimed.batch_id, status=BatchStatus.queued.value,
                      next_attempt_at=due, lease_until=lease, last_error=reason)
        conn.execute(
            update(_T).where(_T.c.batch_id == claimed.batch_id, _T.c.status == _SENDING)
            .values(status=_QUEUED, next_attempt_at=due, lease_until=lease, last_error=reason,
                    updated_at=utcnow())
        )


def extend_lease(engine: Engine, claimed: Claimed, seconds: float) -> None:
    until = utcnow() + timedelta(seconds=seconds)
    with write_session(engine) as session:
        conn = session.connection()
        _update_batch(conn, claimed.batch_id, lease_until=until)
        conn.execute(update(_T).where(_T.c.batch_id == claimed.batch_id,
                                      _T.c.status == _SENDING).values(lease_until=until))


def fail(engine: Engine, claimed: Claimed, reason: str) -> None:
    """The request failed for good: every unsent member fails with it (keeping its batch, so
    an operator's retry resends the same members under the same key)."""
    reason = redact(reason)
    now = utcnow()
    with write_session(engine) as session:
        conn = session.connection()
        _update_batch(conn, claimed.batch_id, status=BatchStatus.failed.value,
                      failed=len(claimed.members), lease_until=None, next_attempt_at=None,
                      last_error=reason, finished_at=now)
        conn.execute(
            update(_T).where(_T.c.batch_id == claimed.batch_id, _T.c.status.in_(_OPEN))
            .values(status=EmailStatus.failed.value, last_error=reason, lease_until=None,
                    next_attempt_at=None, updated_at=now)
        )


# SQLite: the unary + keeps the planner off the batch_id and status indexes, so it walks the
# JSON once and finds each row by its id; driven from the batch_id index it re-read the whole
# JSON array per member (100 x 100 json_extract calls, ~9 ms a batch, 10x this plan).
_SENT_SQL = {
    "sqlite": """
        UPDATE email_outbox SET status = 'sent',
            provider_message_id = json_extract(j.value, '$.pid'), sent_at = :now,
            updated_at = :now, last_error = NULL, next_attempt_at = NULL, lease_until = NULL
        FROM json_each(:data) AS j
        WHERE email_outbox.id = json_extract(j.value, '$.id') AND +email_outbox.batch_id = :batch
          AND +email_outbox.status IN ('sending', 'queued')""",
    # The ids as arrays (by primary key whatever the statistics; see broadcasts.sending).
    "postgresql": """
        UPDATE email_outbox SET status = 'sent',
            provider_message_id = (CAST(:pids AS text[]))[
                array_position(CAST(:ids AS integer[]), id)],
            sent_at = :now, updated_at = :now, last_error = NULL, next_attempt_at = NULL,
            lease_until = NULL
        WHERE id = ANY(CAST(:ids AS integer[])) AND batch_id = :batch
          AND status IN ('sending', 'queued')""",
}
_REFUSED_SQL = {
    "sqlite": """
        UPDATE email_outbox SET status = 'failed', last_error = json_extract(j.value, '$.reason'),
            batch_id = NULL, updated_at = :now, next_attempt_at = NULL, lease_until = NULL
        FROM json_each(:data) AS j
        WHERE email_outbox.id = json_extract(j.value, '$.id') AND +email_outbox.batch_id = :batch
          AND +email_outbox.status IN ('sending', 'queued')""",
    "postgresql": """
        UPDATE email_outbox SET status = 'failed', last_error = j.reason,
            batch_id = NULL, updated_at = :now, next_attempt_at = NULL, lease_until = NULL
        FROM json_to_recordset(CAST(:data AS json)) AS j(id integer, reason text)
        WHERE email_outbox.id = j.id AND email_outbox.batch_id = :batch
          AND email_outbox.status IN ('sending', 'queued')""",
}


@functools.lru_cache(maxsize=8)
def _statement(sql: str):
    return text(sql).bindparams(bindparam("now", type_=UTCDateTime()))


def finish(engine: Engine, claimed: Claimed, accepted: Mapping[int, str],
           refused: Mapping[int, str]) -> None:
    """The provider answered: accepted members (row id -> provider id) are marked sent in one
    statement, refused ones (row id -> reason) fail alone and leave the batch."""
    with write_session(engine) as session:
        finish_in(session.connection(), claimed, accepted, refused)


def finish_in(conn: Connection, claimed: Claimed, accepted: Mapping[int, str],
              refused: Mapping[int, str]) -> None:
    """`finish` inside the caller's write transaction."""
    now = utcnow()
    dialect = "postgresql" if conn.dialect.name == "postgresql" else "sqlite"
    if accepted:
        if dialect == "postgresql":
            sent: dict[str, Any] = {"ids": list(accepted), "pids": list(accepted.values())}
        else:
            sent = {"data": json.dumps([{"id": i, "pid": p} for i, p in accepted.items()])}
        conn.execute(_statement(_SENT_SQL[dialect]),
                     {**sent, "now": now, "batch": claimed.batch_id})
    if refused:
        data = json.dumps([{"id": i, "reason": redact(r)} for i, r in refused.items()])
        conn.execute(_statement(_REFUSED_SQL[dialect]),
                     {"data": data, "now": now, "batch": claimed.batch_id})
    _update_batch(conn, claimed.batch_id, status=BatchStatus.sent.value,
                  sent=len(accepted), failed=len(refused), lease_until=None,
                  next_attempt_at=None, finished_at=now, updated_at=now,
                  last_error=None if not refused else f"{len(refused)} refused")


# --- operators' retries ------------------------------------------------------------------------


def reopen_failed(conn: Connection, row_id: int, lease_seconds: float) -> bool:
    """An operator's retry of the send job of row `row_id`: a `failed` row goes back to
    `queued` (True). Refused (UserError, nothing changed) when the email was sent, was sent
    again (a later copy exists) or was cancelled: the retry would reach the customer twice.
    A queued or sending row is left as it is (False): its claim makes a second send a no-op.

    A row that failed with its whole batch reopens the batch (same key: if the provider did
    accept an earlier attempt it replays that answer instead of sending again); a row that
    failed alone, or was never in a batch, reopens alone under its own key."""
    from kolaq_console.emails.outbox import later_copy

    row = conn.execute(
        select(_T.c.id, _T.c.status, _T.c.sent_at, _T.c.idempotency_key, _T.c.to_address,
               _T.c.kind, _T.c.batch_id, _T.c.broadcast_id)
        .where(_T.c.id == row_id).with_for_update()
    ).first()
    if row is None:
        raise UserError(f"email #{row_id} no longer exists")
    copy = later_copy(conn, row)
    if copy is not None:
        raise UserError(f"email #{row_id} was sent again as #{copy}; retrying would send it "
                        "twice: discard this entry")
    if row.status == EmailStatus.sent.value:
        at = f" at {row.sent_at:%Y-%m-%d %H:%M} UTC" if row.sent_at else ""
        raise UserError(f"email #{row_id} was already sent{at}; retrying would send it "
                        "twice: discard this entry")
    if row.status == EmailStatus.cancelled.value:
        raise UserError(f"email #{row_id} was cancelled: discard this entry")
    if row.status != EmailStatus.failed.value:
        return False
    if row.batch_id is not None:
        return reopen_batch(conn, row.batch_id, lease_seconds)
    now = utcnow()
    if row.broadcast_id is not None:
        _reopen_broadcast(conn, row.broadcast_id, now)
    return conn.execute(
        update(_T).where(_T.c.id == row_id, _T.c.status == EmailStatus.failed.value)
        .values(status=_QUEUED, next_attempt_at=None, updated_at=now,
                lease_until=now + timedelta(seconds=lease_seconds))
    ).rowcount == 1


def reopen_batch(conn: Connection, batch_id: int, lease_seconds: float) -> bool:
    """Put a failed batch and its failed members back to `queued` (same key, same members).
    A member sent again meanwhile (a later copy exists) stays out: it is cancelled, so the
    retry cannot reach that customer twice (if the provider had stored the batch, the smaller
    batch is then refused under its key, which sends nothing).

    A broadcast's batch reopens its broadcast too if it had ended (its figures are written
    again when it ends again); a cancelled broadcast's batch is refused (UserError, nothing
    changed): cancelling promised that nothing more of it is sent."""
    from kolaq_console.emails.outbox import later_copy

    now = utcnow()
    lease = now + timedelta(seconds=lease_seconds)
    owner = conn.execute(select(_B.c.broadcast_id).where(
        _B.c.id == batch_id, _B.c.status == BatchStatus.failed.value)).first()
    if owner is not None and owner.broadcast_id is not None:
        _reopen_broadcast(conn, owner.broadcast_id, now)
    reopened = conn.execute(
        update(_B).where(_B.c.id == batch_id, _B.c.status == BatchStatus.failed.value)
        .values(status=BatchStatus.queued.value, next_attempt_at=None, lease_until=lease,
                updated_at=now, finished_at=None, failed=0)
    ).rowcount == 1
    if not reopened:
        return False
    members = conn.execute(
        select(_T.c.id, _T.c.idempotency_key, _T.c.to_address, _T.c.kind)
        .where(_T.c.batch_id == batch_id, _T.c.status == EmailStatus.failed.value)
    ).all()
    for member in members:
        copy = later_copy(conn, member)
        if copy is not None:
            conn.execute(update(_T).where(_T.c.id == member.id).values(
                status=EmailStatus.cancelled.value, batch_id=None, updated_at=now,
                last_error=f"not retried: sent again as #{copy}"))
    conn.execute(
        update(_T).where(_T.c.batch_id == batch_id, _T.c.status == EmailStatus.failed.value)
        .values(status=_QUEUED, next_attempt_at=None, updated_at=now, lease_until=lease)
    )
    return True


def _reopen_broadcast(conn: Connection, broadcast_id: int, now: datetime) -> None:
    """An ended broadcast whose failed batch is retried is sending again (finished_at
    cleared, so settling writes its figures anew)."""
    bc = Broadcast.__table__  # type: ignore[attr-defined]
    status = conn.execute(select(bc.c.status).where(bc.c.id == broadcast_id)
                          .with_for_update()).scalar()
    if status == BroadcastStatus.cancelled.value:
        raise UserError(f"broadcast #{broadcast_id} was cancelled: its failed copies are not "
                        "sent again; discard this entry")
    conn.execute(update(bc).where(bc.c.id == broadcast_id, bc.c.finished_at.is_not(None))
                 .values(finished_at=None, updated_at=now, status=case(
                     (bc.c.status == BroadcastStatus.done.value,
                      BroadcastStatus.sending.value), else_=bc.c.status)))
