"""Worker processes (registration, heartbeats, who is dead) and the sweeper of lost jobs.

A worker process keeps one `workers` row alive with its heartbeat; the jobs it is running are
`job_runs` rows that point at it. When a process dies without a word (kill -9, out of memory),
its heartbeat stops; once it is older than `[jobs] lease_seconds` the sweeper claims each of its
rows (an atomic DELETE ... RETURNING, so two sweepers never both act on one) and either
re-enqueues the call (tasks declared safe to re-run) or records it as `interrupted` in the
failed-job ledger. Either way a failed_jobs row tells what happened: nothing silently goes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from huey.api import Huey
from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from kolaq_console.jobs.process import provably_gone
from kolaq_console.jobs.records import CannotRetry, failed_row, is_rerun_safe, rebuild_task
from kolaq_console.jobs.stats import record_retried
from kolaq_console.models import (
    ActivityLog,
    FailedJob,
    FailedJobStatus,
    JobAttempt,
    JobRun,
    Worker,
    utcnow,
)
from kolaq_console.sqlutil import upsert_insert

log = logging.getLogger(__name__)

W = Worker.__table__
R = JobRun.__table__
F = FailedJob.__table__
A = JobAttempt.__table__
SWEEPER = "sweeper"


@lru_cache(maxsize=4)
def _worker_upsert(dialect_name: str) -> Any:
    stmt = upsert_insert(dialect_name, W)
    changing = ["heartbeat_at", "threads", "periodic", "queues", "stopped_at",
                "process_started", "pid_scope"]
    return stmt.on_conflict_do_update(
        index_elements=["id"], set_={k: stmt.excluded[k] for k in changing}
    )


def upsert_worker(conn: Connection, row: dict[str, Any]) -> None:
    """Register a worker or refresh its heartbeat (`row` has every column)."""
    conn.execute(_worker_upsert(conn.dialect.name), row)


def mark_stopped(conn: Connection, worker_id: str, now: datetime) -> None:
    conn.execute(update(W).where(W.c.id == worker_id).values(stopped_at=now, heartbeat_at=now))


# --- reading ---------------------------------------------------------------------------------


@dataclass
class RunningJob:
    task_id: str
    task_name: str
    queue: str
    attempt: int
    started_at: datetime


@dataclass
class WorkerInfo:
    id: str
    host: str
    pid: int
    queues: list[str]
    threads: int
    periodic: bool
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    state: str  # running | dead | stopped
    jobs: list[RunningJob] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["jobs"] = [vars(j) for j in self.jobs]
        return d


def worker_state(heartbeat_at: datetime, stopped_at: datetime | None, cutoff: datetime,
                 found_dead_at: datetime | None = None) -> str:
    if stopped_at is not None:
        return "stopped"
    return "dead" if heartbeat_at < cutoff or found_dead_at is not None else "running"


def list_workers(session: Session, lease_seconds: float, now: datetime | None = None,
                 include_stopped: bool = True) -> list[WorkerInfo]:
    """Every known worker process, newest first, with the jobs it is running. A worker whose
    heartbeat is older than the lease is `dead` (its jobs are, or will be, swept)."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=lease_seconds)
    query = select(W).order_by(W.c.started_at.desc())
    if not include_stopped:
        query = query.where(W.c.stopped_at.is_(None))
    workers = [
        WorkerInfo(
            id=r.id, host=r.host, pid=r.pid, queues=list(r.queues or []), threads=r.threads,
            periodic=r.periodic, started_at=r.started_at, heartbeat_at=r.heartbeat_at,
            stopped_at=r.stopped_at,
            state=worker_state(r.heartbeat_at, r.stopped_at, cutoff, r.found_dead_at),
        )
        for r in session.execute(query).all()
    ]
    by_id = {w.id: w for w in workers}
    if by_id:
        runs = session.execute(
            select(R.c.worker_id, R.c.task_id, R.c.task_name, R.c.queue, R.c.attempt,
                   R.c.started_at).order_by(R.c.started_at)
        ).all()
        for r in runs:
            if r.worker_id in by_id:
                by_id[r.worker_id].jobs.append(
                    RunningJob(r.task_id, r.task_name, r.queue, r.attempt, r.started_at)
                )
    return workers


def in_flight_by_queue(session: Session, lease_seconds: float, now: datetime | None = None
                       ) -> dict[str, int]:
    """Jobs running now per logical queue: job_runs rows of live workers (those of dead
    workers are lost, not in flight, and the sweeper turns them into ledger entries)."""
    cutoff = (now or utcnow()) - timedelta(seconds=lease_seconds)
    rows = session.execute(
        select(R.c.queue, func.count())
        .select_from(R.join(W, W.c.id == R.c.worker_id))
        .where(W.c.heartbeat_at >= cutoff, W.c.stopped_at.is_(None),
               W.c.found_dead_at.is_(None))
        .group_by(R.c.queue)
    ).all()
    return {queue: n for queue, n in rows}


# --- the sweeper -----------------------------------------------------------------------------


@dataclass
class SweepResult:
    requeued: list[tuple[str, str]] = field(default_factory=list)  # (old task id, new task id)
    interrupted: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.requeued or self.interrupted)


@dataclass
class LostWorkers:
    gone: list[str] = field(default_factory=list)  # provably gone, heartbeat not yet stale
    newly_gone: list[str] = field(default_factory=list)  # of those, found by this call
    stale: list[str] = field(default_factory=list)  # heartbeat older than the lease, or stopped

    @property
    def all(self) -> list[str]:
        return self.gone + self.stale


def lost_workers(engine: Engine, lease_seconds: float, exclude: str | None = None,
                 now: datetime | None = None) -> LostWorkers:
    """Workers known dead or stopped. A worker that looks alive but provably no longer runs
    (same machine; jobs/process.py) is known at once after a kill -9, and marked
    `found_dead_at`; any other once its heartbeat is older than the lease."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=lease_seconds)
    with engine.connect() as conn:
        rows = conn.execute(
            select(W.c.id, W.c.pid, W.c.heartbeat_at, W.c.stopped_at, W.c.process_started,
                   W.c.pid_scope, W.c.found_dead_at)
        ).all()
    found = LostWorkers()
    for r in rows:
        if r.id == exclude:
            continue
        if r.stopped_at is not None or r.heartbeat_at < cutoff:
            found.stale.append(r.id)
        elif r.found_dead_at is not None:
            found.gone.append(r.id)
        elif provably_gone(r.pid, r.process_started, r.pid_scope):
            found.gone.append(r.id)
            found.newly_gone.append(r.id)
    if found.newly_gone:
        with engine.begin() as conn:
            conn.execute(update(W).where(W.c.id.in_(found.newly_gone),
                                         W.c.found_dead_at.is_(None))
                         .values(found_dead_at=now))
    return found


def sweep_lost_jobs(engine: Engine, huey: Huey, lease_seconds: float,
                    now: datetime | None = None, gone: Sequence[str] = ()) -> SweepResult:
    """Claim jobs whose worker stopped heartbeating (or vanished) for longer than the lease,
    or whose worker is known `gone` (lost_workers): re-enqueue rerun-safe ones, record the
    others as interrupted."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=lease_seconds)
    result = SweepResult()
    lost = or_(W.c.heartbeat_at < cutoff, and_(W.c.id.is_(None), R.c.started_at < cutoff))
    if gone:
        lost = or_(lost, R.c.worker_id.in_(list(gone)))
    with engine.connect() as conn:
        stale = conn.execute(
            select(R, W.c.host, W.c.pid, W.c.heartbeat_at, W.c.stopped_at)
            .select_from(R.outerjoin(W, W.c.id == R.c.worker_id))
            .where(lost)
            .order_by(R.c.started_at)
        ).all()
    for run in stale:
        try:
            _sweep_one(engine, huey, run, now, result, gone=run.worker_id in gone)
        except Exception:
            log.exception("sweeping lost job %s failed; the next sweep tries again", run.task_id)
    if result:
        log.warning(
            "swept lost jobs: %d re-enqueued, %d recorded as interrupted",
            len(result.requeued), len(result.interrupted),
        )
    return result


def _sweep_one(engine: Engine, huey: Huey, run: Any, now: datetime, result: SweepResult,
               gone: bool = False) -> None:
    with engine.begin() as conn:
        claimed = conn.execute(
            delete(R)
            .where(R.c.task_id == run.task_id, R.c.worker_id == run.worker_id)
            .returning(R.c.task_id)
        ).first()
        if claimed is None:
            return  # another sweeper took it, or the job ended meanwhile
        recorded = conn.execute(
            select(F.c.id)
            .where(F.c.task_id == run.task_id, F.c.created_at >= run.started_at)
            .limit(1)
        ).first()
        if recorded is not None:
            return  # its worker recorded the outcome but died before clearing the run
        memo = conn.execute(
            delete(A).where(A.c.task_id == run.task_id).returning(A.c.attempts,
                                                                   A.c.first_attempt_at)
        ).first()
        who = f"{run.host} pid {run.pid}" if run.host else f"worker {run.worker_id}"
        if gone:
            how = "died (its process no longer runs)"
        elif run.stopped_at is not None:
            how = "stopped without finishing it"
        elif run.heartbeat_at is not None:
            how = f"stopped heartbeating at {run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC"
        else:
            how = "is unknown"
        row = failed_row(
            now,
            task_id=run.task_id, task_name=run.task_name, queue=run.queue, args=run.args,
            kwargs=run.kwargs, payload=run.payload, status=FailedJobStatus.interrupted.value,
            error_type="WorkerLost",
            error_message=(
                f"{who} {how} while running this job (started "
                f"{run.started_at:%Y-%m-%d %H:%M:%S} UTC)"
                + ("" if gone else "; presumed lost after the lease")
            ),
            attempts=(memo.attempts if memo else 0) + 1,
            first_attempt_at=memo.first_attempt_at if memo else run.started_at,
            last_attempt_at=run.started_at, worker_host=run.host, worker_pid=run.pid,
        )
        new_id = None
        if is_rerun_safe(huey._registry._registry.get(run.task_name)):
            try:
                task = rebuild_task(huey, run.payload, run.task_name)
            except CannotRetry as exc:
                row["error_message"] += f"; not re-enqueued: {exc}"
            else:
                release = getattr(task, "on_lost", None)
                if release is not None:  # what the lost run held, handed back first
                    release(conn, run.task_id, *task.args, **task.kwargs)
                huey.enqueue(task)
                new_id = task.id
                row.update(status=FailedJobStatus.retried.value, retried_as=new_id,
                           resolved_by=SWEEPER, resolved_at=now)
                record_retried(conn, now, [(run.queue, run.task_name)])
        failed_id = conn.execute(insert(F).values(row).returning(F.c.id)).scalar_one()
        if new_id:
            conn.execute(insert(ActivityLog.__table__).values(
                actor=SWEEPER, action="jobs.requeue_lost", entity="failed_jobs",
                entity_id=str(failed_id), created_at=now,
                details={"task": run.task_name, "task_id": run.task_id, "retried_as": new_id,
                         "reason": row["error_message"]},
            ))
    if new_id:
        result.requeued.append((run.task_id, new_id))
    else:
        result.interrupted.append(run.task_id)


def prune(engine: Engine, retention_hours: int, now: datetime | None = None) -> dict[str, int]:
    """Drop statistics, worker rows and attempt notes older than the retention."""
    from kolaq_console.jobs.stats import prune_stats

    now = now or utcnow()
    cutoff = now - timedelta(hours=retention_hours)
    with engine.begin() as conn:
        stats = prune_stats(conn, retention_hours, now)
        workers = conn.execute(
            delete(W).where(
                W.c.heartbeat_at < cutoff,
                ~select(R.c.task_id).where(R.c.worker_id == W.c.id).exists(),
            )
        ).rowcount or 0
        attempts = conn.execute(delete(A).where(A.c.updated_at < cutoff)).rowcount or 0
    return {"stats": stats, "workers": workers, "attempts": attempts}
