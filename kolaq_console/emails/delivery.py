"""Sending a batch: claim it atomically, respect the shared rate limit, one request, record.

`deliver(row_id)` is a row's send job: the row goes out with whatever else waits (up to 100 in
one POST /emails/batch), or alone through POST /emails, as ever, when nothing else waits.
`deliver_batch(batch_id)` sends a batch formed ahead (a broadcast's) or swept.

Outcomes (what the Huey task sees):
- sent: accepted members are `sent` with their provider ids; members the provider refused are
  `failed` with its reason (alone: the job still succeeds);
- 429 rate limit / quota: the batch goes back to `queued` and `huey.exceptions.RetryTask(delay)`
  reschedules the job without spending a retry;
- transient (5xx, network, 409 concurrent): the batch goes back to `queued` with the error and
  the exception propagates so Huey retries with the configured backoff; on the last attempt
  its members are `failed`;
- permanent (auth, a request the provider refuses whole): the members are `failed` with the
  provider's reason and `PermanentJobError` stops the retries.
A row or batch that is already sent, failed, or being sent by another worker is left alone.
The shared rate limiter is asked once per request, whatever the number of emails in it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from huey.exceptions import RetryTask
from sqlalchemy.engine import Engine
from sqlmodel import Session

from kolaq_console.config import Settings
from kolaq_console.emails import batches
from kolaq_console.emails.batches import Claimed
from kolaq_console.emails.ratelimit import RateLimiter
from kolaq_console.emails.transports import (
    PermanentError,
    QuotaExceeded,
    RateLimited,
    SendError,
    TransientError,
    Transport,
)
from kolaq_console.errors import PermanentJobError
from kolaq_console.redact import redact
from kolaq_console.sqlutil import write_session

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivered:
    """What one job did: `outcome` is "sent" or "skipped" (nothing to send now)."""

    outcome: str
    batch_id: int | None = None
    broadcast_id: int | None = None
    sent: int = 0
    refused: int = 0


SKIPPED = Delivered("skipped")


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
) -> Delivered:
    """Send outbox row `row_id` (and whatever waits with it) once; see the module doc.

    `retries_left`/`retry_delay` are the Huey task's remaining retries and the delay before
    its next retry, so the rows can say when they will be tried again, or that they failed.
    """
    claimed = batches.claim_for_row(engine, row_id, settings.email.lease_seconds, task_id,
                                    worker_id=worker_id)
    if claimed is None:
        log.info("email #%s: not claimable (sent, failed, not due, or being sent); skipped",
                 row_id)
        return SKIPPED
    return send_claimed(engine, settings, claimed, transport=transport, limiter=limiter,
                        retries_left=retries_left, retry_delay=retry_delay)


def deliver_batch(
    engine: Engine,
    settings: Settings,
    batch_id: int,
    *,
    transport: Transport,
    limiter: RateLimiter | None,
    retries_left: int = 0,
    retry_delay: float = 0.0,
    task_id: str | None = None,
    worker_id: str | None = None,
) -> Delivered:
    """Send batch `batch_id` (formed ahead, or swept) once; see the module doc."""
    claimed = batches.claim_batch(engine, batch_id, settings.email.lease_seconds, task_id,
                                  worker_id=worker_id)
    if claimed is None:
        log.info("batch #%s: not claimable (sent, failed, not due, or being sent); skipped",
                 batch_id)
        return SKIPPED
    return send_claimed(engine, settings, claimed, transport=transport, limiter=limiter,
                        retries_left=retries_left, retry_delay=retry_delay)


def _name(claimed: Claimed) -> str:
    single = claimed.single
    if single is not None:
        return f"email #{single.id} {single.kind}"
    return f"batch #{claimed.batch_id} of {len(claimed.members)}"


def _wait_for_slot(engine: Engine, settings: Settings, claimed: Claimed,
                   limiter: RateLimiter) -> None:
    lease = settings.email.lease_seconds
    try:
        grant = limiter.acquire(settings.email.max_limiter_wait)
    except Exception as exc:
        # Its store (the queue's) unreadable: the batch goes back at once, not left claimed
        # until its lease runs out; the job's retry sends it.
        batches.release(engine, claimed, 0.0, f"rate limiter unavailable: {exc}", lease)
        raise
    if not grant.ok:
        reason = f"deferred {grant.wait:.0f} s: {grant.reason or 'provider limit'}"
        batches.release(engine, claimed, grant.wait, reason, lease)
        log.info("%s: %s", _name(claimed), reason)
        raise RetryTask(reason, delay=grant.wait)
    if grant.wait > 0:
        if grant.wait > lease / 4:
            batches.extend_lease(engine, claimed, grant.wait + lease)
        time.sleep(grant.wait)


def send_claimed(
    engine: Engine,
    settings: Settings,
    claimed: Claimed,
    *,
    transport: Transport,
    limiter: RateLimiter | None,
    retries_left: int = 0,
    retry_delay: float = 0.0,
    then: Callable[[Session], object] | None = None,
) -> Delivered:
    """Send a batch this worker has claimed (see the module doc for the outcomes). `then`, if
    given, runs in the transaction that records the batch as sent (a broadcast's job claims
    its next batch there: one transaction a batch, not two); if it raises, the outcome is
    recorded alone and the error propagates."""
    lease = settings.email.lease_seconds
    name = _name(claimed)
    started = time.monotonic()
    log.debug("%s: attempt %d via %s started", name, claimed.attempts, transport.name)
    if limiter is not None and getattr(transport, "rate_limited", True):
        _wait_for_slot(engine, settings, claimed, limiter)

    single = claimed.single
    try:
        if single is not None:
            result = transport.send(single.message(settings, claimed.rendered))
            accepted, refused = {single.id: result.provider_message_id}, {}
            headers = result.headers
        else:
            answer = transport.send_batch(
                claimed.messages(settings), claimed.idempotency_key
            )
            ids = [m.id for m in claimed.members]
            accepted = {ids[i]: pid for i, pid in answer.accepted.items()}
            refused = {ids[i]: reason for i, reason in answer.refused.items()}
            headers = answer.headers
    except RateLimited as exc:
        if limiter is not None:
            limiter.block(exc.retry_after, "rate limited by the provider (429)")
        batches.release(engine, claimed, exc.retry_after, exc.reason, lease)
        log.warning("%s: %s; retrying in %.2f s (no retry spent)", name, exc.reason,
                    exc.retry_after)
        raise RetryTask(exc.reason, delay=exc.retry_after) from None
    except QuotaExceeded as exc:
        if limiter is not None:
            limiter.block(exc.retry_after, "provider sending quota exhausted")
        batches.release(engine, claimed, exc.retry_after,
                        f"{exc.reason}; deferred until reset", lease)
        log.warning("%s: %s; deferred %.0f s until the quota resets", name, exc.reason,
                    exc.retry_after)
        raise RetryTask(exc.reason, delay=exc.retry_after) from None
    except PermanentError as exc:
        batches.fail(engine, claimed, exc.reason)
        log.error("%s failed permanently: %s", name, exc.reason)
        raise PermanentJobError(f"{name}: {exc.reason}") from None
    except TransientError as exc:
        _transient(engine, claimed, exc.reason, retries_left, retry_delay, lease)
        raise
    except SendError:
        raise
    except Exception as exc:
        # A bug or an unexpected failure: treat as transient, keep the rows honest.
        _transient(engine, claimed, redact(f"{type(exc).__name__}: {exc}"), retries_left,
                   retry_delay, lease)
        raise

    if then is None:
        batches.finish(engine, claimed, accepted, refused)
    else:
        try:
            with write_session(engine) as session:
                batches.finish_in(session.connection(), claimed, accepted, refused)
                then(session)
        except Exception:
            batches.finish(engine, claimed, accepted, refused)  # sent: recorded whatever
            raise
    if limiter is not None and headers:
        try:
            limiter.observe(headers)
        except Exception:
            log.warning("%s: could not update the shared rate limiter", name, exc_info=True)
    elapsed = time.monotonic() - started
    if single is not None:
        # One INFO line per email sent alone (Huey logs the job's start and end).
        log.info("email #%s %s sent via %s on attempt %d (provider id %s) in %.3f s",
                 single.id, single.kind, transport.name, claimed.attempts,
                 accepted[single.id], elapsed)
    else:
        log.info("batch #%s: %d email(s) sent via %s in one request on attempt %d (#%s-#%s), "
                 "%d refused, in %.3f s", claimed.batch_id, len(accepted), transport.name,
                 claimed.attempts, claimed.members[0].id, claimed.members[-1].id,
                 len(refused), elapsed)
    for row_id, reason in refused.items():
        log.warning("email #%s in batch #%s failed alone: %s", row_id, claimed.batch_id, reason)
    return Delivered("sent", claimed.batch_id, claimed.broadcast_id, len(accepted),
                     len(refused))


def _transient(engine: Engine, claimed: Claimed, reason: str, retries_left: int,
               retry_delay: float, lease: float) -> None:
    name = _name(claimed)
    if retries_left > 0:
        batches.release(engine, claimed, retry_delay, reason, lease)
        log.warning("%s: %s; retry in %.2f s (%d left)", name, reason, retry_delay,
                    retries_left, exc_info=True)
    else:
        batches.fail(engine, claimed, f"{reason} (retries exhausted)")
        log.error("%s failed after %d attempt(s): %s", name, claimed.attempts, reason,
                  exc_info=True)
