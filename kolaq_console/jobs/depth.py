"""Queue depth over time: one sample per minute and logical queue (the `sample_queue_depth`
periodic task), and the last hour of samples and job statistics as chart series.

A series holds one value per minute, oldest first, or None where nothing was sampled: the
charts draw a gap there, not a 0. Completed and failed come from job_stats, which has rows only
for minutes in which jobs ran, so a minute without a row counts as 0 only if a worker was alive
then — which the depth sample of that minute (taken by a worker) proves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from huey.api import Huey
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from kolaq_console.jobs.stats import minute_of, throughput
from kolaq_console.jobs.workers import in_flight_by_queue
from kolaq_console.models import QueueDepthSample
from kolaq_console.sqlutil import upsert_insert
from kolaq_console.taskqueue import LOGICAL_QUEUES, queue_depths

S = QueueDepthSample.__table__
METRICS = ("depth", "completed", "failed")


def sample_queue_depth(engine: Engine, huey: Huey, lease_seconds: float,
                       retention_hours: int, now: datetime) -> int:
    """Write this minute's depth of every logical queue (a second sample in the same minute,
    from another worker, replaces it) and drop samples past the retention. Returns the
    number of rows written."""
    with Session(engine) as session:
        in_flight = in_flight_by_queue(session, lease_seconds, now)
    depths = queue_depths(huey, in_flight)
    minute = minute_of(now)
    rows = [{"minute": minute, "queue": q, "pending": d.pending or 0,
             "scheduled": d.scheduled or 0, "in_flight": d.in_flight}
            for q, d in depths.items()]
    with engine.begin() as conn:
        stmt = upsert_insert(conn.dialect.name, S)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["minute", "queue"],
            set_={k: stmt.excluded[k] for k in ("pending", "scheduled", "in_flight")}), rows)
        conn.execute(delete(S).where(S.c.minute < now - timedelta(hours=retention_hours)))
    return len(rows)


def write_samples(engine: Engine, rows: list[dict]) -> int:
    """Insert samples whose minute and queue have none yet (the demo's hour of history);
    returns how many were new."""
    with engine.begin() as conn:
        stmt = upsert_insert(conn.dialect.name, S).on_conflict_do_nothing(
            index_elements=["minute", "queue"])
        # Counted, not rowcount: psycopg reports none for an upsert that inserted.
        before = conn.execute(select(func.count()).select_from(S)).scalar_one()
        if rows:
            conn.execute(stmt, rows)
        return conn.execute(select(func.count()).select_from(S)).scalar_one() - before


@dataclass
class QueueSeries:
    """One queue's last `minutes`, oldest first; None: no sample that minute."""

    depth: list[int | None] = field(default_factory=list)
    completed: list[int | None] = field(default_factory=list)
    failed: list[int | None] = field(default_factory=list)


@dataclass
class Charts:
    first: datetime  # the oldest minute shown
    minutes: int
    queues: dict[str, QueueSeries]

    @property
    def empty(self) -> bool:
        return all(v is None for s in self.queues.values()
                   for m in METRICS for v in getattr(s, m))


def last_hour(session: Session, now: datetime, minutes: int = 60) -> Charts:
    """Depth, completed and failed per queue and minute, the current minute last."""
    first = minute_of(now) - timedelta(minutes=minutes - 1)
    series = {q: QueueSeries([None] * minutes, [None] * minutes, [None] * minutes)
              for q in LOGICAL_QUEUES}
    sampled: set[int] = set()  # minutes in which a worker was alive (it took a sample)

    def index(minute: datetime) -> int:
        return int((minute - first).total_seconds() // 60)

    for minute, queue, pending, scheduled, in_flight in session.execute(
            select(S.c.minute, S.c.queue, S.c.pending, S.c.scheduled, S.c.in_flight)
            .where(S.c.minute >= first)).all():
        i = index(minute)
        if 0 <= i < minutes and queue in series:
            series[queue].depth[i] = pending + scheduled + (in_flight or 0)
            sampled.add(i)
    counts = [(index(m.minute), m) for m in throughput(session, first)]
    # A minute with a sample or any job counted had a worker alive: no row there is a 0.
    for i in sampled | {i for i, _ in counts}:
        if 0 <= i < minutes:
            for s in series.values():
                s.completed[i], s.failed[i] = 0, 0
    for i, m in counts:
        if 0 <= i < minutes and m.queue in series:
            s = series[m.queue]
            s.completed[i] = (s.completed[i] or 0) + m.completed
            s.failed[i] = (s.failed[i] or 0) + m.failed
    return Charts(first, minutes, series)
