"""How far a broadcast has got: sent / failed / skipped / cancelled of total, rate and ETA.

While a broadcast runs its figures are counted from its recipients and their outbox rows (one
grouped query); when it ends they are written on its row. A recipient whose copy was taken
out of its batch before the call (unsubscribed meanwhile) counts as skipped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from kolaq_console.errors import NotFound
from kolaq_console.models import (
    Broadcast,
    BroadcastRecipient,
    BroadcastStatus,
    EmailOutbox,
    EmailStatus,
    RecipientStatus,
    utcnow,
)

RATE_WINDOW = timedelta(seconds=60)
FINAL = (BroadcastStatus.done.value, BroadcastStatus.cancelled.value)


@dataclass
class Progress:
    id: int
    subject: str
    audience: str
    status: str
    total: int
    sent: int
    failed: int
    skipped: int
    cancelled: int
    remaining: int
    rate: float | None  # emails sent per second over the last minute; None: not measurable
    eta_seconds: float | None  # None: unknown (nothing sent lately, or paused)
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped + self.cancelled

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def duration(seconds: float) -> str:
    """A span for people: `45s`, `3m05s`, `2h10m`."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def counts(session: Session, broadcast_id: int) -> dict[str, int]:
    """sent, failed, skipped, cancelled, remaining and total, counted now."""
    r, o = BroadcastRecipient, EmailOutbox
    rows = session.execute(
        select(r.status, o.status, func.count())
        .select_from(r)
        .outerjoin(o, col(o.id) == col(r.outbox_id))
        .where(col(r.broadcast_id) == broadcast_id)
        .group_by(r.status, o.status)
    ).all()
    out = dict.fromkeys(("sent", "failed", "skipped", "cancelled", "remaining", "total"), 0)
    for recipient, email, n in rows:
        out["total"] += n
        if recipient == RecipientStatus.skipped.value:
            out["skipped"] += n
        elif recipient == RecipientStatus.cancelled.value:
            out["cancelled"] += n
        elif email == EmailStatus.sent.value:
            out["sent"] += n
        elif email == EmailStatus.failed.value:
            out["failed"] += n
        elif email == EmailStatus.cancelled.value:  # taken out of its batch: consent withdrawn
            out["skipped"] += n
        else:
            out["remaining"] += n
    return out


def _rate(session: Session, b: Broadcast, now: datetime) -> float | None:
    if b.started_at is None:
        return None
    since = max(b.started_at, now - RATE_WINDOW)
    seconds = (now - since).total_seconds()
    if seconds < 1:
        return None
    sent = session.execute(
        select(func.count()).select_from(EmailOutbox).where(
            col(EmailOutbox.broadcast_id) == b.id, col(EmailOutbox.sent_at) >= since)
    ).scalar_one()
    return sent / seconds


def progress(session: Session, broadcast_id: int, now: datetime | None = None) -> Progress:
    b = session.get(Broadcast, broadcast_id)
    if b is None:
        raise NotFound(f"broadcast #{broadcast_id} not found")
    return of(session, b, now)


def of(session: Session, b: Broadcast, now: datetime | None = None) -> Progress:
    now = now or utcnow()
    if b.status in FINAL or b.status == BroadcastStatus.draft.value:
        figures = {"sent": b.sent, "failed": b.failed, "skipped": b.skipped,
                   "cancelled": b.cancelled, "total": b.total,
                   "remaining": max(0, b.total - b.sent - b.failed - b.skipped - b.cancelled)}
        rate = eta = None
    else:
        figures = counts(session, b.id)  # type: ignore[arg-type]
        rate = _rate(session, b, now)
        running = b.status == BroadcastStatus.sending.value
        eta = figures["remaining"] / rate if running and rate else None
        if running and figures["remaining"] == 0:
            eta = 0.0
    return Progress(
        id=b.id, subject=b.subject, audience=b.audience, status=b.status,  # type: ignore[arg-type]
        rate=rate, eta_seconds=eta, created_by=b.created_by, created_at=b.created_at,
        started_at=b.started_at, finished_at=b.finished_at, **figures,
    )


def recent(session: Session, limit: int = 50) -> list[Progress]:
    """Broadcasts, newest first, with their figures."""
    rows = session.execute(
        select(Broadcast).order_by(col(Broadcast.id).desc()).limit(limit)
    ).scalars().all()
    return [of(session, b) for b in rows]
