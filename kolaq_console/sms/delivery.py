"""Sending one message row: claim it, look before sending again, send, record.

Twilio has no idempotency key, so exactly-once rests on the row: it is claimed (`sending`,
`attempt_started_at`) before the call and its provider id stored right after. An attempt whose
outcome is not known (its worker died between the two, or the call timed out after the
request left) leaves `doubt_since`; the next attempt first asks Twilio's message list for a
message to this number from this sender, since then, with this content:
- exactly one that no other row owns: it went out; the row is `sent` with that id;
- none: it did not; send now;
- several, or a list too long to read: `unknown`, for an operator to decide (never a silent
  second send).
Outcomes otherwise as for email: 429 reschedules without spending a retry; 5xx and network
errors retry with the backoff; invalid number, auth and other 4xx fail at once (21610 also
records the opt-out); a recipient who opted out after queueing is `cancelled`, not sent.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, NoReturn

from huey.exceptions import RetryTask
from sqlalchemy import bindparam, func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from kolaq_console import channel_consent
from kolaq_console.config import Settings
from kolaq_console.emails.ratelimit import RateLimiter
from kolaq_console.errors import PermanentJobError
from kolaq_console.models import Customer, PhoneOptOut, TextMessage, TextStatus, utcnow
from kolaq_console.redact import redact
from kolaq_console.sms.outbox import doubt_of_lapsed_attempt
from kolaq_console.sms.transports import (
    InDoubt,
    LookupUnanswerable,
    OptedOut,
    Outgoing,
    PermanentError,
    RateLimited,
    SendError,
    TransientError,
    Transport,
    error_code,
)

log = logging.getLogger(__name__)

SCHEDULE_TOLERANCE = timedelta(seconds=1)
# Twilio's clock and ours may differ; the list is searched from this long before the doubt.
LOOKUP_SKEW = timedelta(minutes=5)
CALLBACK_PATH = "/webhooks/twilio"

_T = TextMessage.__table__  # type: ignore[attr-defined]
_OPEN = (TextStatus.sending.value, TextStatus.queued.value)
_SENDING = (TextStatus.sending.value,)


@dataclass(frozen=True)
class Claimed:
    id: int
    channel: str
    kind: str
    to_number: str
    from_number: str
    body: str
    content_sid: str | None
    content_variables: dict[str, Any]
    idempotency_key: str
    attempts: int
    doubt_since: datetime | None
    customer_id: int | None
    # Consent as the claim's transaction saw it (see `_refusal`).
    opted_out: str | None = None
    sms_consent: bool | None = None
    whatsapp_opt_in: bool | None = None

    def outgoing(self, settings: Settings) -> Outgoing:
        callback = None
        if settings.sms.status_callback:
            callback = f"{settings.shop.public_url.rstrip('/')}{CALLBACK_PATH}?m={self.id}"
        return Outgoing(
            row_id=self.id, channel=self.channel, kind=self.kind, to=self.to_number,
            from_number=self.from_number, body=self.body, idempotency_key=self.idempotency_key,
            content_sid=self.content_sid,
            content_variables={str(k): str(v) for k, v in (self.content_variables or {}).items()},
            status_callback=callback,
        )


@functools.lru_cache(maxsize=1)
def _claim_statement():
    t = _T
    return (
        update(t)
        .where(
            t.c.id == bindparam("b_id"),
            (t.c.status == TextStatus.queued.value)
            | ((t.c.status == TextStatus.sending.value) & (t.c.lease_until < bindparam("b_now"))),
            t.c.next_attempt_at.is_(None) | (t.c.next_attempt_at <= bindparam("b_due")),
        )
        .values(
            status=TextStatus.sending.value,
            attempts=t.c.attempts + 1,
            lease_until=bindparam("b_lease"),
            updated_at=bindparam("b_now"),
            attempt_started_at=bindparam("b_now"),
            task_id=bindparam("b_task"),
            claimed_by=bindparam("b_worker"),
            # Taking over a lapsed `sending` row: its worker died, maybe after Twilio answered.
            doubt_since=func.coalesce(t.c.doubt_since, doubt_of_lapsed_attempt()),
        )
        .returning(
            t.c.id, t.c.channel, t.c.kind, t.c.to_number, t.c.from_number, t.c.body,
            t.c.content_sid, t.c.content_variables, t.c.idempotency_key, t.c.attempts,
            t.c.doubt_since, t.c.customer_id,
        )
    )


@functools.lru_cache(maxsize=1)
def _consent_statement():
    """One round trip: is the number opted out of the channel, and has the customer (if any)
    consented to SMS / opted in to WhatsApp?"""
    opt = PhoneOptOut.__table__  # type: ignore[attr-defined]
    cust = Customer.__table__  # type: ignore[attr-defined]
    opted = (select(opt.c.reason).where(opt.c.number == bindparam("b_number"),
                                        opt.c.channel == bindparam("b_channel"))
             .limit(1).scalar_subquery())
    consent = select(cust.c.sms_consent, cust.c.whatsapp_opt_in).where(
        cust.c.id == bindparam("b_customer"))
    return select(opted.label("opted"), consent.with_only_columns(cust.c.sms_consent)
                  .scalar_subquery().label("sms"),
                  consent.with_only_columns(cust.c.whatsapp_opt_in).scalar_subquery()
                  .label("whatsapp"))


def claim(engine: Engine, row_id: int, lease_seconds: float, task_id: str | None = None,
          now: datetime | None = None, worker_id: str | None = None) -> Claimed | None:
    """Atomically take the row for sending (one conditional UPDATE ... RETURNING): a `queued`
    row due now, or a `sending` row whose lease ran out. Never a sent/failed/unknown row."""
    now = now or utcnow()
    params = {"b_id": row_id, "b_now": now, "b_due": now + SCHEDULE_TOLERANCE,
              "b_lease": now + timedelta(seconds=lease_seconds), "b_task": task_id,
              "b_worker": worker_id}
    with engine.begin() as conn:
        row = conn.execute(_claim_statement(), params).first()
        if row is None:
            return None
        claimed = Claimed(*row)
        consent = conn.execute(_consent_statement(), {
            "b_number": claimed.to_number, "b_channel": claimed.channel,
            "b_customer": claimed.customer_id}).one()
    return replace(claimed, opted_out=consent[0], sms_consent=consent[1],
                   whatsapp_opt_in=consent[2])


@functools.lru_cache(maxsize=32)
def _update_statement(where_status: tuple[str, ...], columns: tuple[str, ...]):
    return (
        update(_T)
        .where(_T.c.id == bindparam("b_id"), _T.c.status.in_(where_status))
        .values({c: bindparam(f"b_{c}") for c in ("updated_at", *columns)})
    )


def _update(engine: Engine, row_id: int, where_status: tuple[str, ...], **values: Any) -> bool:
    stmt = _update_statement(where_status, tuple(values))
    params = {f"b_{k}": v for k, v in values.items()}
    params.update(b_id=row_id, b_updated_at=utcnow())
    with engine.begin() as conn:
        return conn.execute(stmt, params).rowcount == 1


@functools.lru_cache(maxsize=1)
def _sent_statement():
    return (
        update(_T)
        .where(_T.c.id == bindparam("b_id"), _T.c.status.in_(_OPEN))
        .values(status=TextStatus.sent.value, provider_message_id=bindparam("b_sid"),
                sent_at=bindparam("b_now"), updated_at=bindparam("b_now"),
                last_error=bindparam("b_note"), error_code=None, next_attempt_at=None,
                lease_until=None, doubt_since=None,
                # A status callback may have come first: keep what it said.
                delivery_status=func.coalesce(_T.c.delivery_status, bindparam("b_state")))
    )


def mark_sent(engine: Engine, row_id: int, provider_message_id: str,
              provider_status: str | None = None, note: str | None = None) -> bool:
    params = {"b_id": row_id, "b_sid": provider_message_id, "b_now": utcnow(),
              "b_note": note, "b_state": provider_status}
    with engine.begin() as conn:
        return conn.execute(_sent_statement(), params).rowcount == 1


def mark_failed(engine: Engine, row_id: int, reason: str, code: int | None = None,
                status: str = TextStatus.failed.value) -> bool:
    return _update(engine, row_id, _OPEN, status=status, last_error=redact(reason),
                   error_code=code, next_attempt_at=None, lease_until=None)


def mark_unknown(engine: Engine, row_id: int, reason: str) -> bool:
    return _update(engine, row_id, _OPEN, status=TextStatus.unknown.value,
                   last_error=redact(reason), next_attempt_at=None, lease_until=None)


def release(engine: Engine, row_id: int, delay: float, reason: str, lease_seconds: float, *,
            in_doubt: bool = False) -> bool:
    """Back to `queued`, due in `delay` seconds; `in_doubt`: this attempt may have sent it."""
    due = utcnow() + timedelta(seconds=max(0.0, delay))
    values: dict[str, Any] = dict(
        status=TextStatus.queued.value, last_error=redact(reason), next_attempt_at=due,
        lease_until=due + timedelta(seconds=lease_seconds), updated_at=utcnow(),
    )
    if in_doubt:
        values["doubt_since"] = func.coalesce(_T.c.doubt_since, _T.c.attempt_started_at)
    stmt = update(_T).where(_T.c.id == row_id, _T.c.status.in_(_SENDING)).values(values)
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount == 1


def extend_lease(engine: Engine, row_id: int, seconds: float) -> bool:
    return _update(engine, row_id, _SENDING, lease_until=utcnow() + timedelta(seconds=seconds))


def _refusal(engine: Engine, row: Claimed) -> str | None:
    """Consent, again at send time: a STOP may have arrived since the message was queued.
    The claim read it in its own transaction; the wording comes from channel_consent."""
    consented = row.sms_consent if row.channel == "sms" else row.whatsapp_opt_in
    allowed = row.opted_out is None and (row.customer_id is None or bool(consented))
    if allowed:
        return None
    with Session(engine) as session:
        customer = session.get(Customer, row.customer_id) if row.customer_id else None
        return channel_consent.refusal(session, row.channel, row.to_number, customer) or \
            "consent withdrawn"


def _owned_elsewhere(engine: Engine, row_id: int, sids: list[str]) -> set[str]:
    with Session(engine) as session:
        return set(session.exec(
            select(TextMessage.provider_message_id)
            .where(col(TextMessage.provider_message_id).in_(sids), TextMessage.id != row_id)
        ).all())


def _record_opt_out(engine: Engine, row: Claimed, exc: SendError) -> None:
    with Session(engine) as session:
        channel_consent.record_opt_out(session, row.to_number, row.channel,
                                       reason="twilio 21610", source=f"message #{row.id}",
                                       actor="twilio")
        session.commit()


def _transient(engine: Engine, row: Claimed, exc: SendError, retries_left: int,
               retry_delay: float, lease: float, in_doubt: bool) -> str:
    """A failure a later attempt may fix. Raises for Huey to retry; on the last attempt the
    row is `failed`, or `unknown` if the message may have gone out."""
    if retries_left > 0:
        release(engine, row.id, retry_delay, exc.reason, lease, in_doubt=in_doubt)
        log.warning("message #%s: %s; retry in %.2f s (%d left)", row.id, exc.reason,
                    retry_delay, retries_left)
        raise exc
    if in_doubt or row.doubt_since is not None:
        mark_unknown(engine, row.id, f"{exc.reason} (retries exhausted; it may have been sent)")
        log.error("message #%s %s: outcome unknown after %d attempt(s): %s", row.id, row.kind,
                  row.attempts, exc.reason)
        return "unknown"
    mark_failed(engine, row.id, f"{exc.reason} (retries exhausted)", error_code(exc))
    log.error("message #%s %s failed after %d attempt(s): %s", row.id, row.kind, row.attempts,
              exc.reason)
    raise exc


def _rate_limited(engine: Engine, row: Claimed, exc: RateLimited, limiter: RateLimiter | None,
                  lease: float, in_doubt: bool = False) -> NoReturn:
    if limiter is not None:
        limiter.block(exc.retry_after, "rate limited by Twilio (429)")
    release(engine, row.id, exc.retry_after, exc.reason, lease, in_doubt=in_doubt)
    log.warning("message #%s: %s; retrying in %.2f s (no retry spent)", row.id, exc.reason,
                exc.retry_after)
    raise RetryTask(exc.reason, delay=exc.retry_after) from None


def _look_before_sending(engine: Engine, row: Claimed, message: Outgoing, transport: Transport,
                         limiter: RateLimiter | None, retries_left: int, retry_delay: float,
                         lease: float) -> str | None:
    """Did an earlier attempt send it? "sent"/"unknown" when settled, None to send now."""
    assert row.doubt_since is not None
    try:
        found = transport.candidates(message, row.doubt_since - LOOKUP_SKEW)
    except LookupUnanswerable as exc:
        mark_unknown(engine, row.id, str(exc))
        log.error("message #%s: %s; marked unknown for an operator", row.id, exc)
        return "unknown"
    except RateLimited as exc:
        _rate_limited(engine, row, exc, limiter, lease, in_doubt=True)
    except TransientError as exc:
        reason = f"could not read Twilio's message list: {exc.reason}"
        return _transient(engine, row, TransientError(reason), retries_left, retry_delay, lease,
                          in_doubt=True)
    except PermanentError as exc:
        mark_unknown(engine, row.id, f"could not read Twilio's message list: {exc.reason}")
        raise PermanentJobError(f"message #{row.id}: {exc.reason}") from None
    others = _owned_elsewhere(engine, row.id, [c.provider_message_id for c in found])
    ours = [c for c in found if c.provider_message_id not in others]
    if len(ours) == 1:
        note = "found in Twilio's message list after an interrupted attempt; not sent again"
        mark_sent(engine, row.id, ours[0].provider_message_id, ours[0].status, note)
        log.warning("message #%s: %s (%s)", row.id, note, ours[0].provider_message_id)
        return "sent"
    if len(ours) > 1:
        sids = ", ".join(c.provider_message_id for c in ours)
        mark_unknown(engine, row.id, f"{len(ours)} messages in Twilio's list match an "
                                     f"interrupted attempt ({sids}); which one is this?")
        log.error("message #%s: several candidates in Twilio's list; marked unknown", row.id)
        return "unknown"
    log.info("message #%s: not in Twilio's list; the interrupted attempt did not send it",
             row.id)
    return None


def deliver(
    engine: Engine,
    settings: Settings,
    row_id: int,
    *,
    transport: Transport,
    limiter: RateLimiter | None,
    retries_left: int = 0,
    retry_delay: float = 0.0,
    task_id: str | None = None,
    worker_id: str | None = None,
) -> str:
    """Send message `row_id` once: "sent", "skipped", "cancelled" or "unknown", or raises for
    Huey to retry (see the module docstring)."""
    lease = settings.sms.lease_seconds
    started = time.monotonic()
    row = claim(engine, row_id, lease, task_id, worker_id=worker_id)
    if row is None:
        log.info("message #%s: not claimable (sent, failed, unknown, not due, or being sent); "
                 "skipped", row_id)
        return "skipped"
    refusal = _refusal(engine, row)
    if refusal:
        mark_failed(engine, row.id, f"not sent: {refusal}", status=TextStatus.cancelled.value)
        log.warning("message #%s cancelled: %s", row.id, refusal)
        return "cancelled"
    message = row.outgoing(settings)
    if row.doubt_since is not None:
        settled = _look_before_sending(engine, row, message, transport, limiter, retries_left,
                                       retry_delay, lease)
        if settled is not None:
            return settled

    if limiter is not None and transport.rate_limited:
        grant = limiter.acquire(settings.sms.max_limiter_wait)
        if not grant.ok:
            reason = f"deferred {grant.wait:.0f} s: {grant.reason or 'provider limit'}"
            release(engine, row.id, grant.wait, reason, lease)
            raise RetryTask(reason, delay=grant.wait)
        if grant.wait > 0:
            if grant.wait > lease / 4:
                extend_lease(engine, row.id, grant.wait + lease)
            time.sleep(grant.wait)

    try:
        result = transport.send(message)
    except RateLimited as exc:
        _rate_limited(engine, row, exc, limiter, lease)
    except OptedOut as exc:
        _record_opt_out(engine, row, exc)
        mark_failed(engine, row.id, exc.reason, error_code(exc))
        log.error("message #%s: recipient opted out (21610); recorded", row.id)
        raise PermanentJobError(f"message #{row.id}: {exc.reason}") from None
    except PermanentError as exc:
        mark_failed(engine, row.id, exc.reason, error_code(exc))
        log.error("message #%s %s failed permanently: %s", row.id, row.kind, exc.reason)
        raise PermanentJobError(f"message #{row.id}: {exc.reason}") from None
    except InDoubt as exc:
        return _transient(engine, row, exc, retries_left, retry_delay, lease, in_doubt=True)
    except TransientError as exc:
        return _transient(engine, row, exc, retries_left, retry_delay, lease, in_doubt=False)
    except Exception as exc:
        # A bug or an unexpected answer after the request may have left: never assume not.
        log.exception("message #%s: unexpected error while sending", row.id)
        doubt = InDoubt(redact(f"{type(exc).__name__}: {exc}"))
        return _transient(engine, row, doubt, retries_left, retry_delay, lease, in_doubt=True)

    mark_sent(engine, row.id, result.provider_message_id, result.provider_status)
    log.info("message #%s %s %s sent via %s on attempt %d (provider id %s) in %.3f s", row.id,
             row.channel, row.kind, transport.name, row.attempts, result.provider_message_id,
             time.monotonic() - started)
    return "sent"
