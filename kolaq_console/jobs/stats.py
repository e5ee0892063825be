"""Per-minute job statistics: what workers add, and what the console and CLI read.

Workers accumulate counters in memory and merge them into `job_stats` in batches with one
atomic upsert per batch (`c = c + excluded.c` for every column), so any number of worker
processes can write the same minute. Reading a day is a couple of GROUP BY queries over at most
(minutes x queues x tasks) rows; old rows are pruned past `[jobs] stats_retention_hours`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import case, delete, func, select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from kolaq_console.models import HISTOGRAM_BUCKETS, JobStat
from kolaq_console.sqlutil import upsert_insert

BUCKET_COLUMNS = [f"h{i:02d}" for i in range(HISTOGRAM_BUCKETS)]
COUNTERS = ["completed", "failed", "retried", "runtime_us_total"]


def bucket_for(duration_us: int) -> int:
    """Histogram bucket of a run time: i such that 2**(i-1) ms <= run < 2**i ms (0: < 1 ms)."""
    ms = duration_us // 1000
    return min(int(ms).bit_length(), HISTOGRAM_BUCKETS - 1)


def bucket_bounds_ms(i: int) -> tuple[float, float]:
    low = 0.0 if i == 0 else float(2 ** (i - 1))
    return low, float(2**i)


def percentile_ms(histogram: list[int], q: float, max_ms: float | None = None) -> float | None:
    """Estimate the q-quantile (0-1) from a bucket histogram, interpolating inside the bucket."""
    total = sum(histogram)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(histogram):
        if n and seen + n >= rank:
            low, high = bucket_bounds_ms(i)
            if i == HISTOGRAM_BUCKETS - 1 and max_ms is not None:
                high = max(max_ms, low)
            value = low + (high - low) * (rank - seen) / n
            return min(value, max_ms) if max_ms is not None else value
        seen += n
    return max_ms


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


@dataclass
class StatDelta:
    """Counters for one (minute, queue, task) accumulated in a worker between flushes."""

    completed: int = 0
    failed: int = 0
    retried: int = 0
    runtime_us_total: int = 0
    runtime_us_max: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * HISTOGRAM_BUCKETS)

    def add_run(self, duration_us: int) -> None:
        self.runtime_us_total += duration_us
        if duration_us > self.runtime_us_max:
            self.runtime_us_max = duration_us
        self.histogram[bucket_for(duration_us)] += 1

    def merge(self, other: StatDelta) -> None:
        self.completed += other.completed
        self.failed += other.failed
        self.retried += other.retried
        self.runtime_us_total += other.runtime_us_total
        self.runtime_us_max = max(self.runtime_us_max, other.runtime_us_max)
        self.histogram = [a + b for a, b in zip(self.histogram, other.histogram, strict=True)]


StatKey = tuple[datetime, str, str]  # (minute, queue, task_name)


def merge_into(target: dict[StatKey, StatDelta], source: Mapping[StatKey, StatDelta]) -> None:
    for key, delta in source.items():
        if key in target:
            target[key].merge(delta)
        else:
            target[key] = delta


@lru_cache(maxsize=4)
def _upsert(dialect_name: str) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE adding every counter; built once, so cached compiled."""
    table = JobStat.__table__
    stmt = upsert_insert(dialect_name, table)
    ex = stmt.excluded
    updates: dict[str, Any] = {
        name: table.c[name] + ex[name] for name in [*COUNTERS, *BUCKET_COLUMNS]
    }
    updates["runtime_us_max"] = case(
        (ex.runtime_us_max > table.c.runtime_us_max, ex.runtime_us_max),
        else_=table.c.runtime_us_max,
    )
    return stmt.on_conflict_do_update(
        index_elements=["minute", "queue", "task_name"], set_=updates
    )


def write_stats(conn: Connection, deltas: Mapping[StatKey, StatDelta]) -> None:
    """Merge counters into job_stats with one atomic upsert (SQLite and PostgreSQL)."""
    if not deltas:
        return
    rows = []
    for (minute, queue, task), d in sorted(deltas.items()):  # fixed order: no upsert deadlocks
        row = {
            "minute": minute, "queue": queue, "task_name": task,
            "completed": d.completed, "failed": d.failed, "retried": d.retried,
            "runtime_us_total": d.runtime_us_total, "runtime_us_max": d.runtime_us_max,
        }
        row.update(zip(BUCKET_COLUMNS, d.histogram, strict=True))
        rows.append(row)
    conn.execute(_upsert(conn.dialect.name), rows)


def record_retried(conn: Connection, now: datetime, counts: Iterable[tuple[str, str]]) -> None:
    """Count operator or sweeper re-enqueues as `retried` in the current minute."""
    deltas: dict[StatKey, StatDelta] = {}
    for queue, task in counts:
        deltas.setdefault((minute_of(now), queue, task), StatDelta()).retried += 1
    write_stats(conn, deltas)


def prune_stats(conn: Connection, retention_hours: int, now: datetime) -> int:
    cutoff = now - timedelta(hours=retention_hours)
    return conn.execute(delete(JobStat).where(JobStat.minute < cutoff)).rowcount or 0


# --- reading ---------------------------------------------------------------------------------


@dataclass
class MinuteCounts:
    minute: datetime
    queue: str
    completed: int
    failed: int
    retried: int


@dataclass
class TaskTiming:
    task_name: str
    queue: str
    runs: int
    completed: int
    failed: int
    retried: int
    avg_ms: float | None
    p95_ms: float | None
    max_ms: float | None

    def as_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in vars(self).items()}


def throughput(session: Session, since: datetime, until: datetime | None = None
               ) -> list[MinuteCounts]:
    """Completed / failed / retried per minute per logical queue, oldest first."""
    c = JobStat.__table__.c
    query = (
        select(c.minute, c.queue, func.sum(c.completed), func.sum(c.failed), func.sum(c.retried))
        .where(c.minute >= minute_of(since))
        .group_by(c.minute, c.queue)
        .order_by(c.minute, c.queue)
    )
    if until is not None:
        query = query.where(c.minute <= until)
    return [
        MinuteCounts(m, q, int(a), int(b), int(r))
        for m, q, a, b, r in session.execute(query).all()
    ]


def totals_by_queue(session: Session, since: datetime) -> dict[str, dict[str, int]]:
    c = JobStat.__table__.c
    rows = session.execute(
        select(c.queue, func.sum(c.completed), func.sum(c.failed), func.sum(c.retried))
        .where(c.minute >= minute_of(since))
        .group_by(c.queue)
    ).all()
    return {
        q: {"completed": int(a), "failed": int(b), "retried": int(r)} for q, a, b, r in rows
    }


def task_timings(session: Session, since: datetime) -> list[TaskTiming]:
    """Average and p95 run time per task (every execution, successful or not), busiest first."""
    c = JobStat.__table__.c
    sums = [func.sum(c[name]) for name in BUCKET_COLUMNS]
    rows = session.execute(
        select(
            c.task_name, func.min(c.queue), func.sum(c.completed), func.sum(c.failed),
            func.sum(c.retried), func.sum(c.runtime_us_total), func.max(c.runtime_us_max), *sums,
        )
        .where(c.minute >= minute_of(since))
        .group_by(c.task_name)
    ).all()
    out = []
    for name, queue, done, failed, retried, total_us, max_us, *hist in rows:
        histogram = [int(h or 0) for h in hist]
        runs = sum(histogram)
        max_ms = (max_us or 0) / 1000
        out.append(TaskTiming(
            task_name=name, queue=queue, runs=runs, completed=int(done), failed=int(failed),
            retried=int(retried),
            avg_ms=(int(total_us) / runs / 1000) if runs else None,
            p95_ms=percentile_ms(histogram, 0.95, max_ms) if runs else None,
            max_ms=max_ms if runs else None,
        ))
    out.sort(key=lambda t: (-t.runs, t.task_name))
    return out
