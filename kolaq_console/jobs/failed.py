"""Failed jobs for operators: list, show, retry and discard (used by the CLI and the console).

Open entries are `failed` (retries exhausted, or a permanent error) and `interrupted` (a
shutdown or a crash with the job unfinished). Retrying or discarding closes an entry; the row
stays, with who closed it and when, and the action goes to the activity log.

Everything shown passes through redaction again on the way out, so a secret that reached a
job's arguments, error or traceback is masked even if it was stored before redaction learnt it.

A little over 400 lines: every operator read and write of the ledger in one place, including
`calls_about` (the entries about an email, an order or a SKU, for lookup and links).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from huey.api import Huey, Task
from sqlalchemy import (
    and_,
    bindparam,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from kolaq_console.db import StorageUnavailable
from kolaq_console.errors import NotFound, UserError
from kolaq_console.jobs.records import CannotRetry, rebuild_task
from kolaq_console.jobs.stats import record_retried
from kolaq_console.models import (
    OPEN_FAILED_STATUSES,
    ActivityLog,
    FailedJob,
    FailedJobStatus,
    utcnow,
)
from kolaq_console.payloads import REJECTED_ERROR_TYPE
from kolaq_console.redact import redact, redact_value
from kolaq_console.taskqueue import LOGICAL_QUEUES

F = FailedJob.__table__
# Literal (not bound) so both databases match it to the partial index ix_failed_jobs_open_id.
OPEN = text("failed_jobs.status IN ('failed', 'interrupted')")
STATUSES = ("open", "all", *(s.value for s in FailedJobStatus))
CHUNK = 500
LOG_IDS = 200  # ids written into one activity-log entry


@dataclass(frozen=True)
class JobFilter:
    """Which ledger entries: open ones by default, narrowed by queue, task, error, time."""

    queue: str | None = None
    task: str | None = None  # full name (tasks.send_email) or the short one (send_email)
    error: str | None = None  # case-insensitive substring of the error type or message
    since: datetime | None = None  # last attempt at or after
    until: datetime | None = None  # last attempt before
    status: str = "open"

    def __post_init__(self) -> None:
        if self.queue is not None and self.queue not in LOGICAL_QUEUES:
            raise UserError(
                f"unknown queue {self.queue!r}; expected one of {', '.join(LOGICAL_QUEUES)}"
            )
        if self.status not in STATUSES:
            raise UserError(
                f"unknown status {self.status!r}; expected one of {', '.join(STATUSES)}"
            )
        if self.since and self.until and self.since >= self.until:
            raise UserError("--since must be earlier than --until")

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("status", "queue", "task", "error", "since", "until"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value.isoformat() if isinstance(value, datetime) else value
        return out

    def clauses(self) -> list[Any]:
        where: list[Any] = []
        if self.status == "open":
            where.append(OPEN)
        elif self.status != "all":
            where.append(F.c.status == self.status)
        if self.queue:
            where.append(F.c.queue == self.queue)
        if self.task:
            where.append(or_(F.c.task_name == self.task,
                             F.c.task_name.endswith("." + self.task, autoescape=True)))
        if self.error:
            needle = self.error.lower()
            where.append(or_(func.lower(F.c.error_type).contains(needle, autoescape=True),
                             func.lower(F.c.error_message).contains(needle, autoescape=True)))
        if self.since:
            where.append(F.c.last_attempt_at >= self.since)
        if self.until:
            where.append(F.c.last_attempt_at < self.until)
        return where


@dataclass
class FailedJobSummary:
    id: int
    task_id: str
    task_name: str
    queue: str
    status: str
    error_type: str
    error_message: str
    attempts: int
    first_attempt_at: datetime | None
    last_attempt_at: datetime | None
    retried_as: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class FailedJobDetail(FailedJobSummary):
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    traceback: str | None = None
    worker_host: str | None = None
    worker_pid: int | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    created_at: datetime | None = None


SUMMARY_PREVIEW = 300  # characters of the error message a list row carries


PAGE_COUNT_CAP = 10_000  # a page says "10,000+" rather than count a huge table every time


def count_failed(session: Session, flt: JobFilter = JobFilter(), cap: int | None = None) -> int:
    """How many entries match; with `cap`, counting stops there (cost bounded by the cap, not
    the table: PostgreSQL reads the heap for rows not yet vacuumed)."""
    if cap is None:
        query = select(func.count()).select_from(F).where(*flt.clauses())
    else:
        capped = select(F.c.id).where(*flt.clauses()).limit(cap).subquery()
        query = select(func.count()).select_from(capped)
    return session.execute(query).scalar_one()


def count_rejected(session: Session) -> int:
    """Open entries for queue payloads a worker refused (bad signature, undecodable)."""
    return session.execute(
        select(func.count()).select_from(F).where(OPEN, F.c.error_type == REJECTED_ERROR_TYPE)
    ).scalar_one()


def list_failed(session: Session, flt: JobFilter = JobFilter(), limit: int = 50,
                before_id: int | None = None) -> list[FailedJobSummary]:
    """A page of entries, newest first; pass the last id seen as `before_id` for the next page
    (keyset paging: every page costs the same however deep)."""
    query = (
        select(F.c.id, F.c.task_id, F.c.task_name, F.c.queue, F.c.status, F.c.error_type,
               func.substr(F.c.error_message, 1, SUMMARY_PREVIEW), F.c.attempts,
               F.c.first_attempt_at, F.c.last_attempt_at, F.c.retried_as)
        .where(*flt.clauses())
        .order_by(F.c.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(F.c.id < before_id)
    return [
        FailedJobSummary(r[0], r[1], r[2], r[3], r[4], r[5], redact(r[6] or ""), *r[7:])
        for r in session.execute(query).all()
    ]


def get_failed(session: Session, job_id: int) -> FailedJobDetail:
    row = session.execute(
        select(*[c for c in F.c if c.name != "payload"]).where(F.c.id == job_id)
    ).first()
    if row is None:
        raise NotFound(f"no failed job #{job_id}")
    m = row._mapping
    return FailedJobDetail(
        id=m["id"], task_id=m["task_id"], task_name=m["task_name"], queue=m["queue"],
        status=m["status"], error_type=m["error_type"],
        error_message=redact(m["error_message"] or ""), attempts=m["attempts"],
        first_attempt_at=m["first_attempt_at"], last_attempt_at=m["last_attempt_at"],
        retried_as=m["retried_as"], args=redact_value(m["args"] or []),
        kwargs=redact_value(m["kwargs"] or {}),
        traceback=redact(m["traceback"]) if m["traceback"] else None,
        worker_host=m["worker_host"], worker_pid=m["worker_pid"],
        resolved_by=m["resolved_by"], resolved_at=m["resolved_at"], created_at=m["created_at"],
    )


def closed_reason(session: Session, job_id: int) -> str | None:
    """Why an entry was closed, when what closed it said so (e.g. its email was sent again)."""
    a = ActivityLog.__table__  # type: ignore[attr-defined]
    details = session.execute(
        select(a.c.details)
        .where(a.c.entity == "failed_jobs", a.c.entity_id == str(job_id))
        .order_by(a.c.id.desc()).limit(1)
    ).scalar()
    return (details or {}).get("reason")


def close_open_calls(conn: Connection, task: str, first_arg: int, operator: str,
                     reason: str, now: datetime | None = None) -> list[int]:
    """Discard the open entries of calls of `task` whose first argument is `first_arg` (e.g.
    the failed sends of one outbox row, when it is sent again), each with an activity-log entry
    giving `reason`. Runs in the caller's transaction; returns the ids closed."""
    now = now or utcnow()
    first = F.c.args[0]
    # PostgreSQL must not cast another task's argument (a SKU, say) to an integer
    matches = (first.as_string() == str(first_arg) if conn.dialect.name == "postgresql"
               else first.as_integer() == first_arg)
    return _discard_with_reason(conn, [_of_task(task), matches], operator, reason, now)


def open_calls(conn: Connection, task: str) -> list[tuple[int, list[Any]]]:
    """(entry id, the call's arguments as shown) of the open entries of `task`."""
    return [(i, list(args or [])) for i, args in conn.execute(
        select(F.c.id, F.c.args).where(OPEN, _of_task(task)).order_by(F.c.id))]


def discard_calls(conn: Connection, ids: Sequence[int], operator: str, reason: str,
                  now: datetime | None = None) -> list[int]:
    """Discard these open entries, each with an activity-log entry giving `reason` (their
    work was done another way). Runs in the caller's transaction; returns the ids closed."""
    if not ids:
        return []
    return _discard_with_reason(conn, [F.c.id.in_(list(ids))], operator, reason,
                                now or utcnow())


def _of_task(task: str) -> Any:
    return or_(F.c.task_name == task, F.c.task_name.endswith("." + task))


def _discard_with_reason(conn: Connection, where: list[Any], operator: str, reason: str,
                         now: datetime) -> list[int]:
    closed = sorted(conn.execute(
        update(F).where(OPEN, *where)
        .values(status=FailedJobStatus.discarded.value, resolved_by=operator, resolved_at=now)
        .returning(F.c.id)
    ).scalars())
    for job_id in closed:
        _log_action(conn, operator, "jobs.discard", [job_id], None, 1,
                    {"ids": [job_id], "reason": reason})
    return closed


def select_ids(session: Session, ids: Sequence[int] = (), flt: JobFilter | None = None
               ) -> list[int]:
    """Ids of open entries to act on: the given ones (each must exist and be open), or all
    matching the filter. What an operator confirms is exactly what is then acted on."""
    if ids:
        found = dict(session.execute(
            select(F.c.id, F.c.status).where(F.c.id.in_(list(ids)))
        ).all())
        for job_id in ids:
            if job_id not in found:
                raise NotFound(f"no failed job #{job_id}")
            if found[job_id] not in OPEN_FAILED_STATUSES:
                why = closed_reason(session, job_id)
                raise UserError(f"failed job #{job_id} is already {found[job_id]}"
                                + (f": {why}" if why else ""))
        return list(dict.fromkeys(ids))
    flt = flt or JobFilter()
    if flt.status not in ("open", *OPEN_FAILED_STATUSES):
        raise UserError(
            f"only open entries (failed, interrupted) can be acted on, not {flt.status}"
        )
    return list(session.execute(
        select(F.c.id).where(*flt.clauses()).order_by(F.c.id)
    ).scalars())


@dataclass
class RetryOutcome:
    retried: list[tuple[int, str]] = field(default_factory=list)  # (entry id, new task id)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (entry id, reason)


def retry_failed(engine: Engine, huey: Huey, ids: Sequence[int], operator: str,
                 flt: JobFilter | None = None) -> RetryOutcome:
    """Re-enqueue exactly the stored call of each open entry, as a new job with a fresh retry
    budget; the entry becomes `retried` and links to the new job (`retried_as`).

    Entries are claimed with an atomic UPDATE ... WHERE status is open, so two operators
    retrying at once never enqueue one job twice. Entries whose task no longer exists or whose
    stored call does not verify are skipped with the reason."""
    outcome = RetryOutcome()
    try:
        for start in range(0, len(ids), CHUNK):
            _retry_chunk(engine, huey, list(ids[start:start + CHUNK]), operator, outcome)
    finally:
        if outcome.retried or outcome.skipped:
            _log_action(engine, operator, "jobs.retry", ids, flt, len(outcome.retried), {
                "retried_as": dict(outcome.retried[:LOG_IDS]),
                "skipped": [f"#{i}: {why}" for i, why in outcome.skipped[:LOG_IDS]],
            })
    return outcome


def _retry_chunk(engine: Engine, huey: Huey, chunk: list[int], operator: str,
                 outcome: RetryOutcome) -> None:
    with engine.connect() as conn:
        rows = conn.execute(
            select(F.c.id, F.c.task_name, F.c.queue, F.c.payload, F.c.status)
            .where(F.c.id.in_(chunk), OPEN)
        ).all()
    prepared: dict[int, tuple[Task, Any]] = {}
    for row in rows:
        try:
            prepared[row.id] = (rebuild_task(huey, row.payload, row.task_name), row)
        except CannotRetry as exc:
            outcome.skipped.append((row.id, str(exc)))
    if not prepared:
        return
    now = utcnow()
    with engine.begin() as conn:
        claimed = list(conn.execute(
            update(F)
            .where(F.c.id.in_(list(prepared)), OPEN)
            .values(status=FailedJobStatus.retried.value, resolved_by=operator, resolved_at=now)
            .returning(F.c.id)
        ).scalars())
        outcome.skipped.extend((i, "no longer open (retried or discarded meanwhile)")
                               for i in sorted(set(prepared) - set(claimed)))
        ready: list[int] = []
        for job_id in sorted(claimed):
            task, _row = prepared[job_id]
            hook = getattr(task, "before_operator_retry", None)
            if hook is not None:
                try:
                    hook(conn, *task.args, **task.kwargs)
                except UserError as exc:  # the task refuses this retry: the entry stays open
                    outcome.skipped.append((job_id, str(exc)))
                    continue
            ready.append(job_id)
        _reopen_entries(conn, [i for i in claimed if i not in ready], prepared)
        if ready:
            conn.execute(
                update(F).where(F.c.id == bindparam("fid")).values(retried_as=bindparam("new")),
                [{"fid": i, "new": prepared[i][0].id} for i in ready],
            )
    # The jobs go on the queue only once their entries and what the hooks reopened are
    # committed: a worker taking one before that would find, e.g., its email still failed.
    enqueued: list[tuple[int, str]] = []
    failure: Exception | None = None
    for job_id in ready:
        task = prepared[job_id][0]
        try:
            huey.enqueue(task)
        except Exception as exc:  # queue unreachable: keep what was done, undo the rest
            failure = exc
            break
        enqueued.append((job_id, task.id))
    not_enqueued = ready[len(enqueued):]
    if enqueued or not_enqueued:
        with engine.begin() as conn:
            if enqueued:
                record_retried(conn, now, [(prepared[i][1].queue, prepared[i][1].task_name)
                                           for i, _ in enqueued])
            _reopen_entries(conn, not_enqueued, prepared)
    outcome.retried.extend(enqueued)
    if failure is not None:
        raise StorageUnavailable(
            f"queue: {redact(str(failure))}; {len(outcome.retried)} job(s) were re-enqueued "
            "before it failed, the rest are still in the failed list (what their retry "
            "reopened, e.g. an email, is sent by the sweepers once the queue is back)"
        )


def _reopen_entries(conn: Connection, ids: Sequence[int],
                    prepared: dict[int, tuple[Task, Any]]) -> None:
    """Put entries claimed for a retry that did not happen back as they were."""
    for job_id in ids:
        conn.execute(update(F).where(F.c.id == job_id).values(
            status=prepared[job_id][1].status, resolved_by=None, resolved_at=None,
            retried_as=None))


def discard_failed(engine: Engine, ids: Sequence[int], operator: str,
                   flt: JobFilter | None = None) -> int:
    """Close open entries without running them again. The rows stay (status `discarded`,
    who and when); the action goes to the activity log."""
    now = utcnow()
    done: list[int] = []
    with engine.begin() as conn:
        for start in range(0, len(ids), CHUNK):
            done.extend(conn.execute(
                update(F)
                .where(F.c.id.in_(list(ids[start:start + CHUNK])), OPEN)
                .values(status=FailedJobStatus.discarded.value, resolved_by=operator,
                        resolved_at=now)
                .returning(F.c.id)
            ).scalars())
        if done:
            _log_action(conn, operator, "jobs.discard", ids, flt, len(done),
                        {"ids": sorted(done)[:LOG_IDS]})
    return len(done)


def _log_action(target: Any, operator: str, action: str, ids: Sequence[int],
                flt: JobFilter | None, count: int, extra: dict[str, Any]) -> None:
    details: dict[str, Any] = {
        "count": count,
        "filter": {"ids": list(ids)[:LOG_IDS]} if flt is None else flt.describe(),
        **extra,
    }
    if len(ids) > LOG_IDS:
        details["ids_truncated"] = len(ids)
    stmt = insert(ActivityLog.__table__).values(
        actor=operator, action=action, entity="failed_jobs",
        entity_id=str(ids[0]) if len(ids) == 1 else None, details=details, created_at=utcnow(),
    )
    if isinstance(target, Engine):
        with target.begin() as conn:
            conn.execute(stmt)
    else:
        target.execute(stmt)


def first_arg(dialect: str) -> Any:
    """The first positional argument of a stored call, as the expression index
    ix_failed_jobs_first_arg is built on (literal SQL, so both databases match it to the
    index): an integer or text on SQLite, text on PostgreSQL."""
    if dialect == "postgresql":
        return literal_column("(failed_jobs.args ->> 0)")
    return literal_column("json_extract(failed_jobs.args, '$[0]')")


def calls_about(session: Session, calls: dict[str, Sequence[int | str]], limit: int = 50
                ) -> list[FailedJobSummary]:
    """Entries (open or closed, newest first) of calls of these tasks whose first argument is
    one of the given values, e.g. `{"send_email": [12, 14], "process_webhook": [41]}`: the
    failed jobs about an email, an order or a product. Index-backed: each value is one probe
    of ix_failed_jobs_first_arg, whatever the ledger's size."""
    dialect = session.get_bind().dialect.name
    arg = first_arg(dialect)
    matches = []
    for task, values in calls.items():
        values = list(dict.fromkeys(values))
        if not values:
            continue
        # PostgreSQL's ->> is text; SQLite's json_extract keeps the JSON type (12 is no '12')
        wanted = [str(v) for v in values] if dialect == "postgresql" else values
        named = or_(F.c.task_name == task, F.c.task_name.endswith("." + task, autoescape=True))
        matches.append(and_(arg.in_(wanted), named))
    if not matches:
        return []
    query = (
        select(F.c.id, F.c.task_id, F.c.task_name, F.c.queue, F.c.status, F.c.error_type,
               func.substr(F.c.error_message, 1, SUMMARY_PREVIEW), F.c.attempts,
               F.c.first_attempt_at, F.c.last_attempt_at, F.c.retried_as)
        .where(or_(*matches))
        .order_by(F.c.id.desc())
        .limit(limit)
    )
    return [
        FailedJobSummary(r[0], r[1], r[2], r[3], r[4], r[5], redact(r[6] or ""), *r[7:])
        for r in session.execute(query).all()
    ]
