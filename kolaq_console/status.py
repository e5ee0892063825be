"""One snapshot of the system for `status --json`, the console's overview and health checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from huey.api import Huey
from sqlalchemy import case, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from kolaq_console.config import Settings
from kolaq_console.db import StorageUnavailable, ping
from kolaq_console.inventory.lowstock import low_stock_products as inventory_low_stock
from kolaq_console.jobs import failed as failed_jobs
from kolaq_console.jobs import workers
from kolaq_console.models import EmailOutbox, TextMessage
from kolaq_console.taskqueue import LOGICAL_QUEUES, QueueDepth, ping_queue, queue_depths


@dataclass
class Status:
    queues: dict[str, QueueDepth] = field(
        default_factory=lambda: {q: QueueDepth() for q in LOGICAL_QUEUES}
    )
    failed_jobs: int = 0
    low_stock: list[dict[str, Any]] = field(default_factory=list)
    outbox: dict[str, int] = field(default_factory=lambda: {"queued": 0, "sent": 0, "failed": 0})
    # SMS/WhatsApp rows; null (not 0) when the database could not be read.
    messages: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(
        ("queued", "sent", "failed", "unknown")))
    storage: dict[str, str] = field(default_factory=lambda: {"database": "ok", "queue": "ok"})

    @property
    def healthy(self) -> bool:
        return all(v == "ok" for v in self.storage.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "queues": {name: depth.as_dict() for name, depth in self.queues.items()},
            "failed_jobs": self.failed_jobs,
            "low_stock": self.low_stock,
            "outbox": self.outbox,
            "messages": self.messages,
            "storage": self.storage,
        }


def low_stock_products(session: Session, default_threshold: int) -> list[dict[str, Any]]:
    """The inventory's low-stock query (true stock, per-product threshold else the default),
    in the `status --json` shape."""
    return [item.status_dict() for item in inventory_low_stock(session, default_threshold)]


def outbox_counts(session: Session) -> dict[str, int]:
    # queued and sending are both "not yet delivered" for an operator
    bucket = case((col(EmailOutbox.status) == "sending", "queued"), else_=col(EmailOutbox.status))
    rows = session.exec(select(bucket, func.count()).group_by(bucket)).all()
    counts = {"queued": 0, "sent": 0, "failed": 0}
    for status, n in rows:
        if status in counts:
            counts[status] += n
    return counts


def message_counts(session: Session) -> dict[str, int | None]:
    """SMS/WhatsApp rows by status: queued (and sending), sent, failed (and cancelled), and
    unknown (an operator must decide)."""
    t = TextMessage
    bucket = case((col(t.status) == "sending", "queued"), (col(t.status) == "cancelled", "failed"),
                  else_=col(t.status))
    counts: dict[str, int | None] = {"queued": 0, "sent": 0, "failed": 0, "unknown": 0}
    for status, n in session.exec(select(bucket, func.count()).group_by(bucket)).all():
        if status in counts:
            counts[status] = (counts[status] or 0) + n
    return counts


def in_flight_by_queue(session: Session, lease_seconds: float) -> dict[str, int]:
    """Jobs live workers are running now (a dead worker's jobs are lost, not in flight)."""
    return workers.in_flight_by_queue(session, lease_seconds)


def failed_count(session: Session) -> int:
    """Open entries of the failed-job ledger (failed or interrupted, not yet acted on)."""
    return failed_jobs.count_failed(session)


def collect(settings: Settings, engine: Engine, huey: Huey) -> Status:
    """Gather everything; an unreachable store is reported in `storage`, not raised."""
    status = Status()
    in_flight: dict[str, int] = {}
    try:
        ping(engine)
        with Session(engine) as session:
            status.failed_jobs = failed_count(session)
            status.low_stock = low_stock_products(session, settings.inventory.low_stock_threshold)
            status.outbox = outbox_counts(session)
            status.messages = message_counts(session)
            in_flight = in_flight_by_queue(session, settings.jobs.lease_seconds)
    except StorageUnavailable as exc:
        status.storage["database"] = str(exc)
    except Exception as exc:  # e.g. tables missing: still a database problem to report
        status.storage["database"] = f"database error: {str(exc).splitlines()[0]}"
    try:
        ping_queue(huey)
        status.queues = queue_depths(huey, in_flight)
    except StorageUnavailable as exc:
        status.storage["queue"] = str(exc)
    return status
