"""What the email tasks in tasks.py run: process-wide transport and limiter, made once."""

from __future__ import annotations

import threading

from sqlalchemy.engine import Connection

from kolaq_console import runtime
from kolaq_console.config import Settings
from kolaq_console.emails.delivery import deliver
from kolaq_console.emails.outbox import (
    release_claim,
    release_claims_of,
    reopen_failed,
    sweep_stale,
)
from kolaq_console.emails.ratelimit import RateLimiter, make_limiter
from kolaq_console.emails.transports import make_transport

_limiters: dict[tuple, RateLimiter] = {}
_lock = threading.Lock()


def limiter_for(settings: Settings) -> RateLimiter:
    """One limiter per process and configuration (connections are made once, per thread)."""
    q = settings.queue
    key = (q.backend, q.redis_url, q.sqlite_path, q.name, settings.email.rate_limit_per_second)
    with _lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = make_limiter(settings)
        return limiter


def send(row_id: int, retries_left: int = 0, retry_delay: float = 0.0,
         task_id: str | None = None, worker_id: str | None = None) -> str:
    settings = runtime.settings()
    transport = make_transport(settings)
    limiter = limiter_for(settings) if transport.rate_limited else None
    return deliver(
        runtime.engine(), settings, row_id, transport=transport, limiter=limiter,
        retries_left=retries_left, retry_delay=retry_delay, task_id=task_id, worker_id=worker_id,
    )


def release_lost(conn: Connection, task_id: str, row_id: int, task: object = None) -> bool:
    """The send job's hook when its run was interrupted or lost with its worker: the row goes
    back to `queued` at once (if that run still holds it), for the job re-enqueued after."""
    return release_claim(conn, row_id, task_id, runtime.settings().email.lease_seconds)


def release_claims(worker_ids: list[str]) -> list[int]:
    """The ledger's hook for workers known dead: their emails go back and are re-enqueued."""
    return release_claims_of(runtime.engine(), runtime.settings(), worker_ids)


def reopen(conn: Connection, row_id: int, task: object = None) -> bool:
    """The send job's operator-retry hook: a `failed` outbox row goes back to `queued`."""
    return reopen_failed(conn, row_id, runtime.settings().email.lease_seconds)


def sweep() -> list[int]:
    return sweep_stale(runtime.engine(), runtime.settings())
