"""Sending one outbox row: claim it atomically, respect the shared rate limit, send, record.

Outcomes (what the Huey task sees):
- sent: the row is `sent` with the provider's message id;
- 429 rate limit / quota: the row goes back to `queued` and `huey.exceptions.RetryTask(delay)`
  reschedules the job without spending a retry;
- transient (5xx, network, 409 concurrent): the row goes back to `queued` with the error and
  the exception propagates so Huey retries with the configured backoff; on the last attempt
  the row is `failed`;
- permanent (validation, key, idempotency conflict): the row is `failed` with the provider's
  reason and `PermanentJobError` stops the retries.
A row that is already sent, failed, or being sent by another worker is left alone.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from huey.exceptions import RetryTask
from sqlalchemy import bindparam, update
from sqlalchemy.engine import Engine

from kolaq_console.config import Settings
from kolaq_console.emails.outbox import FROM_HEADER, REPLY_TO_HEADER
from kolaq_console.emails.ratelimit import RateLimiter
from kolaq_console.emails.transports import (
    Message,
    PermanentError,
    QuotaExceeded,
    RateLimited,
    SendError,
    TransientError,
    Transport,
)
from kolaq_console.errors import PermanentJobError
from kolaq_console.models import EmailOutbox, EmailStatus, utcnow
from kolaq_console.redact import redact

log = logging.getLogger(__name__)

# A retried job may start a little before the time we recorded for it (clock reads differ).
SCHEDULE_TOLERANCE = timedelta(seconds=1)


@dataclass(frozen=True)
class Claimed:
    id: int
    kind: str
    to_address: str
    subject: str
    html: str
    text: str
    headers: dict[str, Any]
    idempotency_key: str
    attempts: int

    def message(self, settings: Settings) -> Message:
        headers = dict(self.headers or {})
        sender = headers.pop(FROM_HEADER, None) or settings.email.from_address
        reply_to = headers.pop(REPLY_TO_HEADER, None)
        return Message(
            from_address=sender,
            to=self.to_address,
            subject=self.subject,
            html=self.html,
            text=self.text,
            idempotency_key=self.idempotency_key,
            reply_to=reply_to,
            headers={str(k): str(v) for k, v in headers.items()},
        )


@functools.lru_cache(maxsize=1)
def _claim_statement():
    t = EmailOutbox.__table__  # type: ignore[attr-defined]
    return (
        update(t)
        .where(
            t.c.id == bindparam("b_id"),
            (t.c.status == EmailStatus.queued.value)
            | ((t.c.status == EmailStatus.sending.value) & (t.c.lease_until < bindparam("b_now"))),
            t.c.next_attempt_at.is_(None) | (t.c.next_attempt_at <= bindparam("b_due")),
        )
        .values(
            status=EmailStatus.sending.value,
            attempts=t.c.attempts + 1,
            lease_until=bindparam("b_lease"),
            updated_at=bindparam("b_now"),
            task_id=bindparam("b_task"),
            claimed_by=bindparam("b_worker"),
        )
        .returning(
            t.c.id, t.c.kind, t.c.to_address, t.c.subject, t.c.html, t.c.text, t.c.headers,
            t.c.idempotency_key, t.c.attempts,
        )
    )


def claim(
    engine: Engine, row_id: int, lease_seconds: float, task_id: str | None = None,
    now: datetime | None = None, worker_id: str | None = None,
) -> Claimed | None:
    """Atomically take the row for sending: one conditional UPDATE ... RETURNING.

    Only a `queued` row due now, or a `sending` row whose lease ran out (its worker died), can
    be claimed, so two workers never send the same row at once and a `sent` row never again.
    The row notes the claiming worker (`claimed_by`), so that if the worker dies its emails are
    handed back as soon as it is known dead (outbox.release_claims), before the lease ends.
    The statement is built once; each call only binds its values.
    """
    now = now or utcnow()
    params = {
        "b_id": row_id, "b_now": now, "b_due": now + SCHEDULE_TOLERANCE,
        "b_lease": now + timedelta(seconds=lease_seconds), "b_task": task_id,
        "b_worker": worker_id,
    }
    with engine.begin() as conn:
        row = conn.execute(_claim_statement(), params).first()
    return Claimed(*row) if row else None


_OPEN = (EmailStatus.sending.value, EmailStatus.queued.value)
_SENDING = (EmailStatus.sending.value,)


@functools.lru_cache(maxsize=16)
def _update_statement(where_status: tuple[str, ...], columns: tuple[str, ...]):
    """UPDATE email_outbox SET <columns> WHERE id = :b_id AND status IN <where_status>, built
    once per shape; values are bound at execution as b_<column>."""
    t = EmailOutbox.__table__  # type: ignore[attr-defined]
    return (
        update(t)
        .where(t.c.id == bindparam("b_id"), t.c.status.in_(where_status))
        .values({c: bindparam(f"b_{c}") for c in ("updated_at", *columns)})
    )


def _update(engine: Engine, row_id: int, where_status: tuple[str, ...], **values: Any) -> bool:
    stmt = _update_statement(where_status, tuple(values))
    params = {f"b_{k}": v for k, v in values.items()}
    params.update(b_id=row_id, b_updated_at=utcnow())
    with engine.begin() as conn:
        return conn.execute(stmt, params).rowcount == 1


def mark_sent(engine: Engine, row_id: int, provider_message_id: str) -> bool:
    now = utcnow()
    return _update(
        engine, row_id, _OPEN, status=EmailStatus.sent.value,
        provider_message_id=provider_message_id, sent_at=now, last_error=None,
        next_attempt_at=None, lease_until=None,
    )


def mark_failed(engine: Engine, row_id: int, reason: str) -> bool:
    return _update(
        engine, row_id, _OPEN, status=EmailStatus.failed.value, last_error=redact(reason),
        next_attempt_at=None, lease_until=None,
    )


def release(engine: Engine, row_id: int, delay: float, reason: str, lease_seconds: float) -> bool:
    """Back to `queued`, due again in `delay` seconds; its lease covers that wait."""
    due = utcnow() + timedelta(seconds=max(0.0, delay))
    return _update(
        engine, row_id, _SENDING, status=EmailStatus.queued.value,
        last_error=redact(reason), next_attempt_at=due,
        lease_until=due + timedelta(seconds=lease_seconds),
    )


def extend_lease(engine: Engine, row_id: int, seconds: float) -> bool:
    return _update(
        engine, row_id, _SENDING,
        lease_until=utcnow() + timedelta(seconds=seconds),
    )


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
    """Send outbox row `row_id` once; returns "sent" or "skipped", or raises (see module doc).

    `retries_left`/`retry_delay` are the Huey task's remaining retries and the delay before
    its next retry, so the row can say when it will be tried again, or that it has failed.
    """
    lease = settings.email.lease_seconds
    started = time.monotonic()
    row = claim(engine, row_id, lease, task_id, worker_id=worker_id)
    if row is None:
        log.info("email #%s: not claimable (sent, failed, not due, or being sent); skipped",
                 row_id)
        return "skipped"
    log.debug("email #%s %s: attempt %d via %s started", row.id, row.kind, row.attempts,
              transport.name)

    if limiter is not None and getattr(transport, "rate_limited", True):
        grant = limiter.acquire(settings.email.max_limiter_wait)
        if not grant.ok:
            reason = f"deferred {grant.wait:.0f} s: {grant.reason or 'provider limit'}"
            release(engine, row.id, grant.wait, reason, lease)
            log.info("email #%s: %s", row.id, reason)
            raise RetryTask(reason, delay=grant.wait)
        if grant.wait > 0:
            if grant.wait > lease / 4:
                extend_lease(engine, row.id, grant.wait + lease)
            time.sleep(grant.wait)

    try:
        result = transport.send(row.message(settings))
    except RateLimited as exc:
        if limiter is not None:
            limiter.block(exc.retry_after, "rate limited by the provider (429)")
        release(engine, row.id, exc.retry_after, exc.reason, lease)
        log.warning("email #%s: %s; retrying in %.2f s (no retry spent)", row.id, exc.reason,
                    exc.retry_after)
        raise RetryTask(exc.reason, delay=exc.retry_after) from None
    except QuotaExceeded as exc:
        if limiter is not None:
            limiter.block(exc.retry_after, "provider sending quota exhausted")
        release(engine, row.id, exc.retry_after, f"{exc.reason}; deferred until reset", lease)
        log.warning("email #%s: %s; deferred %.0f s until the quota resets", row.id, exc.reason,
                    exc.retry_after)
        raise RetryTask(exc.reason, delay=exc.retry_after) from None
    except PermanentError as exc:
        mark_failed(engine, row.id, exc.reason)
        log.error("email #%s %s failed permanently: %s", row.id, row.kind, exc.reason)
        raise PermanentJobError(f"email #{row.id}: {exc.reason}") from None
    except TransientError as exc:
        if retries_left > 0:
            release(engine, row.id, retry_delay, exc.reason, lease)
            log.warning("email #%s: %s; retry in %.2f s (%d left)", row.id, exc.reason,
                        retry_delay, retries_left, exc_info=True)
        else:
            mark_failed(engine, row.id, f"{exc.reason} (retries exhausted)")
            log.error("email #%s %s failed after %d attempt(s): %s", row.id, row.kind,
                      row.attempts, exc.reason, exc_info=True)
        raise
    except SendError:
        raise
    except Exception as exc:
        # A bug or an unexpected failure: treat as transient, keep the row honest.
        reason = redact(f"{type(exc).__name__}: {exc}")
        if retries_left > 0:
            release(engine, row.id, retry_delay, reason, lease)
        else:
            mark_failed(engine, row.id, f"{reason} (retries exhausted)")
        log.exception("email #%s: unexpected error while sending", row.id)
        raise

    mark_sent(engine, row.id, result.provider_message_id)
    if limiter is not None and result.headers:
        try:
            limiter.observe(result.headers)
        except Exception:
            log.warning("email #%s: could not update the shared rate limiter", row.id,
                        exc_info=True)
    # One INFO line per email sent (Huey logs the job's start and end): attempt and transport
    # are here rather than in a line of their own at the start.
    log.info("email #%s %s sent via %s on attempt %d (provider id %s) in %.3f s", row.id,
             row.kind, transport.name, row.attempts, result.provider_message_id,
             time.monotonic() - started)
    return "sent"
