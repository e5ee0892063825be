"""Health in one reading: database, queue, workers live and dead (the worker registry), outbox
rows waiting against the email queue's depth, and whether the two disagree.

Every figure is a value or UNKNOWN (None), with the time it was last read: during an outage a
figure is unknown "stale since" its last good read, never a 0 nobody counted. `HealthTracker`
keeps those times across readings, so a reading after the outage simply shows values again.
Nothing here writes, and nothing raises: what cannot be read is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from huey.api import Huey
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from kolaq_console.db import StorageUnavailable, sqlite_path
from kolaq_console.jobs.workers import in_flight_by_queue
from kolaq_console.models import EmailOutbox, EmailStatus, TextMessage, TextStatus, Worker
from kolaq_console.taskqueue import pending_by_queue, ping_queue, scheduled_by_queue

T = TypeVar("T")
UNKNOWN = None
"""A figure that could not be read: shown as unknown, never as 0."""
SENDING_QUEUE = "emails"  # emails and SMS/WhatsApp are sent by jobs on this logical queue
JOB_SURPLUS = 100
"""Jobs beyond the waiting rows tolerated before it is flagged: one provider batch takes up to
100 rows, so the jobs of the other 99 find their row sent and end at once."""
WAITING = (EmailStatus.queued.value, EmailStatus.sending.value)
TEXT_WAITING = (TextStatus.queued.value, TextStatus.sending.value)


@dataclass(frozen=True)
class Figure(Generic[T]):
    """A value, or UNKNOWN (None); `read_at`: when it was last read (this time when known,
    the last good read when unknown, None when it never was)."""

    value: T | None
    read_at: datetime | None = None

    @property
    def known(self) -> bool:
        return self.value is not None

    def stale_since(self) -> datetime | None:
        return None if self.known else self.read_at


@dataclass(frozen=True)
class Health:
    at: datetime
    database: Figure[str]  # "ok" or UNKNOWN; database_problem says why
    queue: Figure[str]
    workers_live: Figure[int]
    workers_dead: Figure[int]
    outbox_waiting: Figure[int]  # email and text rows queued or sending
    queue_depth: Figure[int]  # jobs on the sending queue: pending, scheduled, in flight
    embedded: bool | None = None  # the console's own worker; None: it has none (read-only)
    database_problem: str | None = None
    queue_problem: str | None = None

    @property
    def mismatch(self) -> str | None:
        """Outbox and queue disagree: rows waiting with no job to send them, or far more jobs
        than rows. None when they agree or either is unknown."""
        waiting, depth = self.outbox_waiting.value, self.queue_depth.value
        if waiting is None or depth is None:
            return None
        if waiting and not depth:
            return "no sending job queued"
        if depth > waiting + JOB_SURPLUS:
            return f"{depth - waiting} jobs beyond the waiting rows"
        return None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]


def _read_database(engine: Engine, lease_seconds: float, now: datetime
                   ) -> tuple[int, int, int, dict[str, int]]:
    """Live and dead workers, waiting outbox rows, in flight per queue: one connection."""
    w = Worker.__table__.c
    cutoff = now - timedelta(seconds=lease_seconds)
    alive = (w.heartbeat_at >= cutoff) & w.found_dead_at.is_(None)
    path = sqlite_path(engine.url)
    if path is not None and not path.is_file():  # an open SQLite handle outlives its file
        raise StorageUnavailable(f"database {path} does not exist")
    with engine.connect() as conn:
        live, dead = conn.execute(
            select(func.count().filter(alive), func.count().filter(~alive))
            .where(w.stopped_at.is_(None))
        ).one()
        emails = conn.execute(select(func.count()).select_from(EmailOutbox.__table__)
                              .where(EmailOutbox.__table__.c.status.in_(WAITING))).scalar_one()
        texts = conn.execute(select(func.count()).select_from(TextMessage.__table__)
                             .where(TextMessage.__table__.c.status.in_(TEXT_WAITING))
                             ).scalar_one()
        with Session(bind=conn) as session:
            in_flight = in_flight_by_queue(session, lease_seconds, now)
    return int(live or 0), int(dead or 0), int(emails) + int(texts), in_flight


def _read_queue(huey: Huey) -> int:
    """Pending and scheduled jobs of the sending queue."""
    ping_queue(huey)
    return pending_by_queue(huey)[SENDING_QUEUE] + scheduled_by_queue(huey)[SENDING_QUEUE]


def read_health(engine: Engine, huey: Huey | None, lease_seconds: float, now: datetime,
                *, embedded: bool | None = None, queue_problem: str | None = None) -> Health:
    """One reading, each figure known (read now) or UNKNOWN with no time: `HealthTracker`
    fills in when each was last read."""
    db_ok = queue_ok = None
    db_problem = None
    live = dead = waiting = None
    in_flight: dict[str, int] | None = None
    try:
        live, dead, waiting, in_flight = _read_database(engine, lease_seconds, now)
        db_ok = "ok"
    except Exception as exc:
        db_problem = _first_line(exc)
    queued: int | None = None
    problem = queue_problem or ("queue storage not available" if huey is None else None)
    if huey is not None:
        try:
            queued = _read_queue(huey)
            queue_ok, problem = "ok", None
        except Exception as exc:
            problem = _first_line(exc)
    depth = (None if queued is None or in_flight is None
             else queued + in_flight.get(SENDING_QUEUE, 0))

    def figure(value: T | None) -> Figure[T]:
        return Figure(value, now if value is not None else None)

    return Health(at=now, database=figure(db_ok), queue=figure(queue_ok),
                  workers_live=figure(live), workers_dead=figure(dead),
                  outbox_waiting=figure(waiting), queue_depth=figure(depth),
                  embedded=embedded, database_problem=db_problem, queue_problem=problem)


FIGURES = ("database", "queue", "workers_live", "workers_dead", "outbox_waiting", "queue_depth")


class HealthTracker:
    """Remembers when each figure was last read, so an unknown one says since when."""

    def __init__(self) -> None:
        self.last: Health | None = None

    def update(self, reading: Health) -> Health:
        if self.last is not None:
            changes = {}
            for name in FIGURES:
                now, before = getattr(reading, name), getattr(self.last, name)
                if not now.known:
                    changes[name] = Figure(None, before.read_at)
            reading = replace(reading, **changes)
        self.last = reading
        return reading

    def read(self, engine: Engine, huey: Huey | None, lease_seconds: float, now: datetime,
             *, embedded: bool | None = None, queue_problem: str | None = None) -> Health:
        return self.update(read_health(engine, huey, lease_seconds, now, embedded=embedded,
                                       queue_problem=queue_problem))
