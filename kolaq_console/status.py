"""One snapshot of the system for `status --json`, the console's overview and health checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huey.api import Huey
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from kolaq_console.config import Settings
from kolaq_console.db import UPGRADE_HINT, SchemaOutOfDate, StorageUnavailable
from kolaq_console.inventory.lowstock import low_stock_products as inventory_low_stock
from kolaq_console.jobs import failed as failed_jobs
from kolaq_console.jobs import workers
from kolaq_console.models import EmailOutbox, TextMessage
from kolaq_console.schema import require_current
from kolaq_console.taskqueue import LOGICAL_QUEUES, QueueDepth, ping_queue, queue_depths


@dataclass
class Status:
    """What could be read. None (JSON null) is unknown: never shown as 0, and `storage` says
    why."""

    queues: dict[str, QueueDepth] = field(
        default_factory=lambda: {q: QueueDepth() for q in LOGICAL_QUEUES}
    )
    failed_jobs: int | None = None
    rejected_payloads: int | None = None  # of failed_jobs: queue payloads a worker refused
    low_stock: list[dict[str, Any]] | None = None
    outbox: dict[str, int] | None = None
    messages: dict[str, int] | None = None  # SMS/WhatsApp rows by status
    storage: dict[str, str] = field(default_factory=lambda: {"database": "ok", "queue": "ok"})
    queue_backend: str = "sqlite"

    @property
    def healthy(self) -> bool:
        return all(v == "ok" for v in self.storage.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "queues": {name: depth.as_dict() for name, depth in self.queues.items()},
            "failed_jobs": self.failed_jobs,
            "rejected_payloads": self.rejected_payloads,
            "low_stock": self.low_stock,
            "outbox": self.outbox,
            "messages": self.messages,
            "storage": self.storage,
            "queue_backend": self.queue_backend,
        }


def low_stock_products(session: Session, default_threshold: int) -> list[dict[str, Any]]:
    """The inventory's low-stock query (true stock, per-product threshold else the default),
    in the `status --json` shape."""
    return [item.status_dict() for item in inventory_low_stock(session, default_threshold)]


def counts_by_status(session: Session, column: Any, shown: tuple[str, ...],
                     fold: dict[str, str] | None = None) -> dict[str, int]:
    """Rows per status, grouped by the bare status column: an index whose first column is the
    status answers it (on PostgreSQL an index-only scan, in status order). Grouping by an
    expression of it (a CASE folding `sending` into `queued`) made the database read and hash
    every row instead, so statuses are folded here, on the handful of groups. Statuses
    neither shown nor folded into one are left out."""
    counts = dict.fromkeys(shown, 0)
    fold = fold or {}
    for status, n in session.execute(select(column, func.count()).group_by(column)).all():
        status = fold.get(status, status)
        if status in counts:
            counts[status] += n
    return counts


def outbox_counts(session: Session) -> dict[str, int]:
    """Emails by status; queued and sending are both "not yet delivered" for an operator
    (ix_email_outbox_status_updated)."""
    return counts_by_status(session, col(EmailOutbox.status), ("queued", "sent", "failed"),
                            {"sending": "queued"})


def message_counts(session: Session) -> dict[str, int]:
    """SMS/WhatsApp rows by status: queued (and sending), sent, failed (and cancelled), and
    unknown (an operator must decide) (ix_text_messages_status_updated)."""
    return counts_by_status(session, col(TextMessage.status),
                            ("queued", "sent", "failed", "unknown"),
                            {"sending": "queued", "cancelled": "failed"})


def in_flight_by_queue(session: Session, lease_seconds: float) -> dict[str, int]:
    """Jobs live workers are running now (a dead worker's jobs are lost, not in flight)."""
    return workers.in_flight_by_queue(session, lease_seconds)


def failed_count(session: Session) -> int:
    """Open entries of the failed-job ledger (failed or interrupted, not yet acted on)."""
    return failed_jobs.count_failed(session)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]


def collect(settings: Settings, engine: Engine, huey: Huey | None,
            queue_problem: str | None = None) -> Status:
    """Gather everything that can be read; what cannot stays None and `storage` says why.
    Nothing here writes: an unmigrated database is reported, not created. `huey` None: the
    queue cannot be read (`queue_problem` says why)."""
    status = Status(queue_backend=settings.queue.backend)
    in_flight: dict[str, int] | None = None
    try:
        require_current(engine)  # reachable, and at the schema these queries expect
    except (StorageUnavailable, SchemaOutOfDate) as exc:
        status.storage["database"] = str(exc)
    except Exception as exc:
        status.storage["database"] = f"database error: {_first_line(exc)}"
    else:
        problems: list[str] = []
        with Session(engine) as session:
            # Each figure on its own: one that fails is unknown, the others are still shown.
            for name, read in (
                ("failed_jobs", lambda: failed_count(session)),
                ("rejected_payloads", lambda: failed_jobs.count_rejected(session)),
                ("low_stock", lambda: low_stock_products(
                    session, settings.inventory.low_stock_threshold)),
                ("outbox", lambda: outbox_counts(session)),
                ("messages", lambda: message_counts(session)),
                ("in_flight", lambda: in_flight_by_queue(session, settings.jobs.lease_seconds)),
            ):
                try:
                    value = read()
                except Exception as exc:
                    session.rollback()
                    problems.append(f"{name.replace('_', ' ')}: {_first_line(exc)}")
                    continue
                if name == "in_flight":
                    in_flight = value
                else:
                    setattr(status, name, value)
        if problems:
            status.storage["database"] = "database error: " + "; ".join(problems)
    problem = queue_problem or "queue storage not available"
    if huey is not None:
        try:
            ping_queue(huey)
            status.queues = queue_depths(huey, in_flight)
            return status
        except StorageUnavailable as exc:
            problem = str(exc)
        except Exception as exc:
            problem = f"queue error: {_first_line(exc)}"
    status.storage["queue"] = problem
    status.queues = {q: QueueDepth(None, None, None if in_flight is None else in_flight.get(q, 0))
                     for q in LOGICAL_QUEUES}
    return status


def reading_queue(settings: Settings) -> Huey:
    """The configured queue, opened only to read it (status, the read-only console): a SQLite
    queue file that does not exist is reported (StorageUnavailable), never created, and no
    table is created in one that does. Importing tasks.py would create both."""
    from kolaq_console.taskqueue import make_huey

    if settings.queue.backend == "sqlite":
        path = Path(settings.queue.sqlite_path)
        if not path.is_file():
            raise StorageUnavailable(
                f"queue storage {path} does not exist (if [queue] sqlite_path is right, "
                f"create it): {UPGRADE_HINT}"
            )
        return make_huey(settings, create_tables=False)
    return make_huey(settings)
