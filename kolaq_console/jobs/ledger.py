"""The job ledger inside each worker process: Huey's signals and hooks -> the database.

`install_ledger(huey, settings)` (one call in tasks.py) connects:

- SIGNAL_EXECUTING: the job is noted in memory as running in this process.
- a post-execute hook, which sees every outcome with its exception, after Huey (and taskqueue.py's
  PermanentJobError handler) decided whether it will be retried. Huey emits different signals
  per failure kind (error, timeout, locked, rate-limited, none for RetryTask) and none that
  says "final", so the hook is where a terminal failure is recognised: an exception and no
  retries left. A terminal failure is written at once, synchronously, with task name, logical
  queue, the call (redacted view + exact signed payload), error, traceback, attempts (total
  executions, the first included), first/last attempt and worker host/pid. A failure Huey will
  retry bumps the job's attempt count (`job_attempts`, one small upsert).
- SIGNAL_INTERRUPTED (graceful shutdown, or a hard stop, with the job unfinished): recorded at
  once as `interrupted`; tasks declared safe to re-run are re-enqueued instead (and recorded
  as `retried`).
- on_startup / on_shutdown (they run per worker thread; the ledger acts once per process):
  start one background flusher thread, which at once registers the worker and sweeps lost
  jobs; final flush and "stopped" when the last worker thread ends or the process exits.

Everything else is buffered and written by the flusher every `[jobs] flush_seconds` in one
transaction: the `job_runs` row of each job still running (a job that starts and ends between
two flushes costs no row at all), the deletion of rows of jobs that ended, and per-minute
statistics. Every `heartbeat_seconds` it refreshes the worker's heartbeat and sweeps the
jobs of dead workers: those whose heartbeat is older than the lease, and at once those of this
machine whose process is provably gone (see workers.py, process.py); `when_workers_lost` hooks
hand back what such workers held (tasks.py: the emails they were sending). If the database is
unreachable, writes stay buffered (terminal failures included) and are retried each flush.

Limits, by design: a worker killed within `flush_seconds` of starting a job leaves no run row
for it (the price of not writing per job; email sends are covered by the outbox row's own
claim, which names the worker); a failure buffered because the database was down is lost if
the process then dies before the database comes back (its run row, if flushed, still becomes an
`interrupted` entry). Immediate mode (tests, development) records nothing.

Longer than ~400 lines: one class bound to Huey's signals and hooks whose buffers and locks
all its methods share; split, one state machine would be spread over several files.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from huey.api import Huey, Task, TaskWrapper
from huey.exceptions import CancelExecution
from huey.signals import SIGNAL_EXECUTING, SIGNAL_INTERRUPTED
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from kolaq_console.config import Settings
from kolaq_console.jobs import workers as wk
from kolaq_console.jobs.process import ProcessIdentity, this_process
from kolaq_console.jobs.records import (
    display_call,
    error_fields,
    exact_call,
    failed_row,
    fresh_copy,
    is_rerun_safe,
    logical_queue,
    task_name,
)
from kolaq_console.jobs.stats import StatDelta, merge_into, write_stats
from kolaq_console.models import FailedJob, FailedJobStatus, JobAttempt, JobRun, utcnow
from kolaq_console.payloads import REJECTED_ERROR_TYPE, REJECTED_TASK_NAME, RejectedPayload
from kolaq_console.redact import redact
from kolaq_console.runtime import engine_for
from kolaq_console.sqlutil import upsert_insert
from kolaq_console.taskqueue import LOGICAL_QUEUES, queue_for_priority

log = logging.getLogger(__name__)

F = FailedJob.__table__
R = JobRun.__table__
A = JobAttempt.__table__
CHUNK = 500


def rerun_safe(wrapper: TaskWrapper) -> TaskWrapper:
    """Declare a task safe to run again (idempotent: e.g. an email send through the outbox,
    a reconciliation). A job of such a task that is lost with its worker, or interrupted by a
    shutdown, is re-enqueued automatically instead of waiting in the failed list.

        @rerun_safe
        @huey.task(**_opts("emails"))
        def send_email(outbox_id: int): ...

    (`@huey.task(rerun_safe=True, ...)` does the same.)"""
    cls = getattr(wrapper, "task_class", None)
    if cls is None:
        raise TypeError("@rerun_safe goes above @huey.task(...)")
    cls.rerun_safe = True
    return wrapper


def on_operator_retry(wrapper: TaskWrapper, hook: Callable[..., Any]) -> TaskWrapper:
    """Run `hook(conn, *args, **kwargs)` (the failed job's own arguments) in the transaction
    that claims its ledger entry for an operator's retry, before the job is enqueued again.

    For tasks whose failure left state behind that would make the re-run a no-op, e.g. a
    failed email send whose outbox row is `failed`: the hook reopens the row. A hook refuses a
    retry that must not happen (the email was sent meanwhile) by raising UserError: the entry
    stays open and the operator is told the reason."""
    cls = getattr(wrapper, "task_class", None)
    if cls is None:
        raise TypeError("on_operator_retry takes the function @huey.task(...) returned")
    cls.before_operator_retry = staticmethod(hook)
    return wrapper


def on_job_lost(wrapper: TaskWrapper, hook: Callable[..., Any]) -> TaskWrapper:
    """Run `hook(conn, task_id, *args, **kwargs)` when a run of this task is interrupted by a
    shutdown or lost with its worker, before the job is re-enqueued (rerun-safe tasks): it
    hands back what the run held, e.g. the outbox row an email send had claimed, so the new
    job can take it at once. `task_id` is the lost run's."""
    cls = getattr(wrapper, "task_class", None)
    if cls is None:
        raise TypeError("on_job_lost takes the function @huey.task(...) returned")
    cls.on_lost = staticmethod(hook)
    return wrapper


class _Run:
    """A job running in this process (a slotted object: made and dropped for every job)."""

    __slots__ = ("flushed", "mono", "task", "wall")

    def __init__(self, task: Task, mono: float, wall: float) -> None:
        self.task = task
        self.mono = mono
        self.wall = wall
        self.flushed = False

    @property
    def started(self) -> datetime:
        return datetime.fromtimestamp(self.wall, UTC)


@dataclass
class _Pending:
    """A ledger entry whose synchronous write failed; the flusher retries it."""

    row: dict[str, Any]
    task_id: str
    had_run_row: bool


class Ledger:
    def __init__(self, huey: Huey, settings: Settings) -> None:
        self.huey = huey
        self.settings = settings
        self.host = socket.gethostname()
        self._lock = threading.Lock()  # guards the buffers below
        self._flush_lock = threading.Lock()  # one flush at a time
        self._state_lock = threading.RLock()  # process start/stop
        self._running: dict[str, _Run] = {}
        self._done: dict[str, str] = {}  # task id -> outcome: run rows to delete at next flush
        self._forget: set[str] = set()  # attempt notes of jobs that ended
        self._stats: dict[tuple[int, str, str], StatDelta] = {}  # (epoch minute, queue, task)
        self._pending: list[_Pending] = []
        self._interrupted: set[str] = set()  # recorded interrupted here; may still finish
        self._idents: dict[tuple[type, Any], tuple[str, str]] = {}
        self._pid: int | None = None
        self._worker_id: str | None = None
        self._started_at: datetime | None = None
        self._threads: set[int] = set()
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self._consumer: dict[str, Any] = {}
        self._atexit = False
        self._process: ProcessIdentity | None = None
        self._lost_hooks: list[Callable[[list[str]], Any]] = []

    # --- identity ---------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        db = self.settings.database
        return engine_for(db.url, db.echo)

    @property
    def worker_id(self) -> str:
        """host:pid:start of this process (a restarted container reusing pid 1 is new)."""
        if self._worker_id is None or self._pid != os.getpid():
            with self._state_lock:
                if self._worker_id is None or self._pid != os.getpid():
                    self._new_identity()
        return self._worker_id  # type: ignore[return-value]

    def _new_identity(self) -> None:
        self._pid = os.getpid()
        self._started_at = utcnow()
        self._worker_id = f"{self.host}:{self._pid}:{self._started_at:%Y%m%dT%H%M%S.%f}"

    def _ident(self, task: Task) -> tuple[str, str]:
        """(logical queue, task name), cached per task class and priority."""
        key = (type(task), task.priority)
        ident = self._idents.get(key)
        if ident is None:
            ident = self._idents[key] = (logical_queue(task), task_name(self.huey, task))
        return ident

    def _count(self, wall: float, ident: tuple[str, str]) -> StatDelta:
        """The statistics of this minute, queue and task (call with the lock held)."""
        key = (int(wall // 60), *ident)
        delta = self._stats.get(key)
        if delta is None:
            delta = self._stats[key] = StatDelta()
        return delta

    # --- signal and hook receivers (hot path: a few microseconds per job) --------------------

    def on_executing(self, signal: str, task: Task, *args: Any) -> None:
        if self.huey.immediate:
            return
        run = _Run(task, time.monotonic(), time.time())
        with self._lock:
            self._running[task.id] = run

    def after_execute(self, task: Task, value: Any, exc: BaseException | None) -> None:
        if self.huey.immediate:
            return
        end, wall = time.monotonic(), time.time()
        ident = self._ident(task)
        if exc is None:
            with self._lock:
                run = self._running.pop(task.id, None)
                delta = self._count(wall, ident)
                delta.completed += 1
                if run is not None:
                    delta.add_run(int((end - run.mono) * 1_000_000))
                    if run.flushed:
                        self._done[task.id] = "completed"
                if task.retries != type(task).default_retries or task.eta is not None:
                    self._forget.add(task.id)  # it may have been retried: drop its count
            if self._interrupted and task.id in self._interrupted:
                self._resolve_interrupted([(task.id, "completed")])
            return
        with self._lock:
            run = self._running.pop(task.id, None)
        now = datetime.fromtimestamp(wall, UTC)
        started = run.started if run else now
        if task.retries:
            outcome = "retrying"  # Huey schedules another attempt after this hook
        elif isinstance(exc, CancelExecution):
            outcome = "cancelled"  # the task chose to stop; not a failure
        else:
            outcome = "failed"
        had_row = bool(run and run.flushed)
        clear_row = had_row
        if outcome == "retrying":
            self._note_attempt(task.id, started, now)
        elif outcome == "failed":
            # If this write fails the entry waits in memory, and its run row stays until the
            # entry is written: a crash meanwhile still leaves a trace for the sweeper.
            written = self._record(self._failure_row(task, exc, started, now), task.id, had_row)
            clear_row = had_row and written
        with self._lock:
            delta = self._count(wall, ident)
            if run is not None:
                delta.add_run(int((end - run.mono) * 1_000_000))
            if outcome == "failed":
                delta.failed += 1
            elif outcome == "retrying":
                delta.retried += 1
            else:
                self._forget.add(task.id)
            if clear_row:
                self._done[task.id] = outcome
        if self._interrupted and task.id in self._interrupted:
            self._resolve_interrupted([(task.id, outcome)])

    def on_interrupted(self, signal: str, task: Task, *args: Any) -> None:
        if self.huey.immediate:
            return
        now = utcnow()
        with self._lock:
            run = self._running.pop(task.id, None)
            self._interrupted.add(task.id)
        started = run.started if run else now
        queue, name = self._ident(task)
        args_view, kwargs_view = display_call(task)
        row = failed_row(
            now,
            task_id=task.id, task_name=name, queue=queue, args=args_view, kwargs=kwargs_view,
            payload=exact_call(self.huey, task), status=FailedJobStatus.interrupted.value,
            error_type="Interrupted",
            error_message=(
                f"worker {self.host} pid {os.getpid()} stopped before the job finished "
                f"(it had run {(now - started).total_seconds():.1f}s)"
            ),
            first_attempt_at=started, last_attempt_at=started, worker_host=self.host,
            worker_pid=os.getpid(),
        )
        if is_rerun_safe(task):
            copy = fresh_copy(task)
            release = getattr(task, "on_lost", None)
            if release is not None:  # hand back what this run held, for the copy
                try:
                    with self.engine.begin() as conn:
                        release(conn, task.id, *task.args, **_call_kwargs(task))
                except Exception as exc:  # what it held then waits for its own lease
                    log.warning("job %s %s: handing back what it held failed: %s", name,
                                task.id, redact(str(exc)).splitlines()[0])
            try:
                self.huey.enqueue(copy)
            except Exception as exc:
                row["error_message"] += f"; re-enqueueing failed: {redact(str(exc))}"
            else:
                row.update(status=FailedJobStatus.retried.value, retried_as=copy.id,
                           resolved_by="shutdown", resolved_at=now)
                with self._lock:
                    self._count(now.timestamp(), (queue, name)).retried += 1
        had_row = bool(run and run.flushed)
        if self._record(row, task.id, had_row) and had_row:
            with self._lock:
                self._done[task.id] = "interrupted"
        log.warning("job %s %s interrupted: %s", name, task.id,
                    "re-enqueued as " + row["retried_as"] if row["retried_as"] else "recorded")
        if not self._flusher_alive():
            self.flush()  # an embedded consumer stopped: nobody else will write it

    def on_rejected(self, rejected: RejectedPayload) -> None:
        """A payload the queue refused (bad signature, undecodable): a failed-list entry with
        the reason and size; its content is never kept (it is untrusted)."""
        if self.huey.immediate:
            return
        queue = "unknown" if rejected.priority is None else queue_for_priority(rejected.priority)
        task_id = f"rejected-{uuid.uuid4().hex[:24]}"
        row = failed_row(
            rejected.at,
            task_id=task_id, task_name=REJECTED_TASK_NAME, queue=queue,
            error_type=REJECTED_ERROR_TYPE,
            error_message=f"{rejected.reason}; {rejected.size} bytes, taken off the queue unread",
            attempts=0, last_attempt_at=rejected.at, worker_host=self.host,
            worker_pid=os.getpid(),
        )
        self._record(row, task_id, had_row=False)
        with self._lock:
            self._count(rejected.at.timestamp(), (queue, REJECTED_TASK_NAME)).failed += 1

    # --- synchronous writes ------------------------------------------------------------------

    def _failure_row(self, task: Task, exc: BaseException, started: datetime, now: datetime
                     ) -> dict[str, Any]:
        args_view, kwargs_view = display_call(task)
        queue, name = self._ident(task)
        return failed_row(
            now,
            task_id=task.id, task_name=name, queue=queue,
            args=args_view, kwargs=kwargs_view, payload=exact_call(self.huey, task),
            first_attempt_at=started, last_attempt_at=started, worker_host=self.host,
            worker_pid=os.getpid(), **error_fields(exc, task),
        )

    def _record(self, row: dict[str, Any], task_id: str, had_row: bool) -> bool:
        """Write a ledger entry now; on failure keep it for the flusher (never dropped).
        Returns whether it was written (its run row may then be cleared)."""
        try:
            with self.engine.begin() as conn:
                _insert_entry(conn, row)
            return True
        except Exception as exc:
            log.error("could not record %s job %s (%s); kept in memory, retried at each flush",
                      row["status"], task_id, redact(str(exc)).splitlines()[0])
            with self._lock:
                self._pending.append(_Pending(row, task_id, had_row))
            return False

    def _note_attempt(self, task_id: str, started: datetime, now: datetime) -> None:
        try:
            with self.engine.begin() as conn:
                stmt = upsert_insert(conn, A).values(
                    task_id=task_id, attempts=1, first_attempt_at=started, updated_at=now
                )
                conn.execute(stmt.on_conflict_do_update(
                    index_elements=["task_id"],
                    set_={"attempts": A.c.attempts + 1, "updated_at": now},
                ))
        except Exception as exc:
            log.warning("could not count the attempt of job %s: %s", task_id,
                        redact(str(exc)).splitlines()[0])

    def _resolve_interrupted(self, ended: Iterable[tuple[str, str]]) -> None:
        """Jobs recorded as interrupted/lost that finished after all: say so in the ledger."""
        ended = list(ended)
        try:
            with self.engine.begin() as conn:
                _resolve_interrupted(conn, ended, utcnow())
        except Exception as exc:
            log.warning("could not update interrupted jobs %s: %s", [t for t, _ in ended],
                        redact(str(exc)).splitlines()[0])
        with self._lock:
            self._interrupted.difference_update(t for t, _ in ended)

    # --- the flusher -------------------------------------------------------------------------

    def flush(self) -> None:
        """Write what is buffered, in one transaction. Safe to call from any thread."""
        with self._flush_lock:
            with self._lock:
                inserts = [r for r in self._running.values() if not r.flushed]
                for r in inserts:
                    r.flushed = True
                done, self._done = self._done, {}
                forget, self._forget = self._forget, set()
                stats, self._stats = self._stats, {}
                pending, self._pending = self._pending, []
            if not (inserts or done or forget or stats or pending):
                return
            try:
                worker_id = self.worker_id
                rows = [self._run_row(r, worker_id) for r in inserts]
                with self.engine.begin() as conn:
                    for p in pending:
                        _insert_entry(conn, p.row)
                        if p.had_run_row:
                            done[p.task_id] = p.row["status"]
                    if done:
                        self._delete_runs(conn, worker_id, done)
                    if rows:
                        _upsert_runs(conn, rows)
                    for chunk in _chunks(sorted(forget)):
                        conn.execute(delete(A).where(A.c.task_id.in_(chunk)))
                    write_stats(conn, {
                        (datetime.fromtimestamp(m * 60, UTC), q, t): d
                        for (m, q, t), d in stats.items()
                    })
            except Exception as exc:
                log.warning("ledger flush failed, will retry: %s", redact(str(exc)).splitlines()[0])
                with self._lock:
                    for r in inserts:
                        r.flushed = False
                    for task_id, outcome in done.items():
                        self._done.setdefault(task_id, outcome)
                    self._forget |= forget
                    merge_into(self._stats, stats)
                    self._pending[:0] = pending

    def _run_row(self, run: _Run, worker_id: str) -> dict[str, Any]:
        task = run.task
        args_view, kwargs_view = display_call(task)
        default = type(task).default_retries or 0
        queue, name = self._ident(task)
        return {
            "task_id": task.id, "task_name": name, "queue": queue,
            "args": args_view, "kwargs": kwargs_view, "payload": exact_call(self.huey, task),
            "attempt": 1 + max(0, default - (task.retries or 0)), "worker_id": worker_id,
            "started_at": run.started,
        }

    def _delete_runs(self, conn: Connection, worker_id: str, done: dict[str, str]) -> None:
        gone: set[str] = set()
        for chunk in _chunks(sorted(done)):
            gone.update(conn.execute(
                delete(R)
                .where(R.c.worker_id == worker_id, R.c.task_id.in_(chunk))
                .returning(R.c.task_id)
            ).scalars())
        missing = [(t, o) for t, o in done.items() if t not in gone and o != "interrupted"]
        if missing:  # a sweeper took us for dead and claimed them: correct its verdict
            _resolve_interrupted(conn, missing, utcnow())

    def heartbeat(self) -> None:
        """Refresh this worker's row; drop run rows of ours no longer running (self-healing)."""
        now = utcnow()
        with self._flush_lock:
            with self._lock:  # rows of jobs still running, or ended and not yet cleared
                live = [t for t, r in self._running.items() if r.flushed] + list(self._done)
            with self.engine.begin() as conn:
                wk.upsert_worker(conn, self._worker_row(now))
                stale = delete(R).where(R.c.worker_id == self.worker_id)
                if live:
                    stale = stale.where(R.c.task_id.not_in(live))
                conn.execute(stale)

    def _worker_row(self, now: datetime) -> dict[str, Any]:
        if self._process is None or self._process.pid != os.getpid():
            self._process = this_process()
        return {
            "id": self.worker_id, "host": self.host, "pid": os.getpid(),
            "queues": list(LOGICAL_QUEUES),
            "threads": self._consumer.get("workers") or max(len(self._threads), 1),
            "periodic": bool(self._consumer.get("periodic", False)),
            "started_at": self._started_at, "heartbeat_at": now, "stopped_at": None,
            "process_started": self._process.started, "pid_scope": self._process.scope,
        }

    def when_workers_lost(self, hook: Callable[[list[str]], Any]) -> None:
        """Call `hook(worker_ids)` at each sweep with the workers known dead or stopped (e.g.
        to hand back the emails they were sending); it must be idempotent."""
        self._lost_hooks.append(hook)

    def sweep(self) -> wk.SweepResult:
        """Jobs and claims of dead workers: those provably gone from this machine at once,
        any other once its heartbeat is older than the lease."""
        lease = self.settings.jobs.lease_seconds
        lost = wk.lost_workers(self.engine, lease, exclude=self.worker_id)
        if lost.newly_gone:
            log.warning("worker(s) %s no longer run on this machine: taking over their work now",
                        ", ".join(lost.newly_gone))
        for hook in self._lost_hooks if lost.all else ():
            try:
                hook(lost.all)
            except Exception as exc:
                log.warning("handing back the work of lost workers failed: %s",
                            redact(str(exc)).splitlines()[0])
        return wk.sweep_lost_jobs(self.engine, self.huey, lease, gone=lost.gone)

    def housekeeping(self) -> None:
        """The periodic task: sweep lost jobs, prune old statistics and worker rows."""
        self.sweep()
        wk.prune(self.engine, self.settings.jobs.stats_retention_hours)

    def _loop(self, stop: threading.Event) -> None:
        """The flusher thread: register and sweep at start, then flush / beat / sweep."""
        jobs = self.settings.jobs
        # Sweep at every heartbeat: a dead worker's jobs and emails are taken over within one
        # heartbeat of its own going stale (a few indexed reads when there is nothing to do).
        sweep_every = jobs.heartbeat_seconds
        next_beat = next_sweep = 0.0
        while True:
            now = time.monotonic()
            try:
                if now >= next_beat:
                    next_beat = now + jobs.heartbeat_seconds
                    self.heartbeat()  # the first one registers this worker
                if now >= next_sweep:
                    next_sweep = now + sweep_every
                    self.sweep()  # the first one is the start-up sweep
            except Exception as exc:
                log.warning("ledger heartbeat/sweep failed: %s", redact(str(exc)).splitlines()[0])
            if stop.wait(jobs.flush_seconds) or self._flusher is not threading.current_thread():
                return  # stopped (stop() writes the final flush), or replaced
            self.flush()

    def _flusher_alive(self) -> bool:
        return self._flusher is not None and self._flusher.is_alive()

    # --- process lifecycle -------------------------------------------------------------------

    def on_worker_startup(self) -> None:
        with self._state_lock:
            if self._pid != os.getpid():  # first thread of this process, or a forked child
                self._threads = set()
                self._flusher = None
            self._threads.add(threading.get_ident())
            if self._flusher_alive():
                return
            self._new_identity()  # a new run of the consumer is a new worker
            try:  # registered before any job starts, so its claims can be traced to it
                self.heartbeat()
            except Exception as exc:
                log.warning("could not register worker %s yet: %s", self.worker_id,
                            redact(str(exc)).splitlines()[0])
            self._stop = stop = threading.Event()
            self._flusher = threading.Thread(
                target=self._loop, args=(stop,), name="kolaq-ledger", daemon=True
            )
            self._flusher.start()
            if not self._atexit:
                atexit.register(self.stop)
                self._atexit = True
            log.info("job ledger: worker %s started", self.worker_id)

    def on_worker_shutdown(self) -> None:
        with self._state_lock:
            self._threads.discard(threading.get_ident())
            last = not self._threads
        if last:
            self.stop()

    def stop(self) -> None:
        """Final flush and mark this worker stopped (last worker thread, or process exit)."""
        with self._state_lock:
            flusher, self._flusher = self._flusher, None
            self._stop.set()
            if flusher is None or self._pid != os.getpid():
                return
        flusher.join(timeout=10)
        if flusher.is_alive():
            log.warning("ledger flusher of %s still busy after 10 s; stopping anyway",
                        self.worker_id)
        self.flush()
        try:
            with self.engine.begin() as conn:
                wk.mark_stopped(conn, self.worker_id, utcnow())
        except Exception as exc:
            log.warning("could not mark worker %s stopped: %s", self.worker_id,
                        redact(str(exc)).splitlines()[0])

    def consumer_created(self, options: dict[str, Any]) -> None:
        self._consumer = options


def _call_kwargs(task: Task) -> dict[str, Any]:
    """The task's keyword arguments without the context task Huey injects (context=True)."""
    return {k: v for k, v in (task.kwargs or {}).items() if v is not task}


def _chunks(items: list[str], size: int = CHUNK) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _insert_entry(conn: Connection, row: dict[str, Any]) -> None:
    """Insert a ledger entry, completing attempts/first attempt from the job's attempt note
    (the note goes: the job has ended)."""
    memo = conn.execute(
        delete(A).where(A.c.task_id == row["task_id"])
        .returning(A.c.attempts, A.c.first_attempt_at)
    ).first()
    if memo is not None:
        row = {**row, "attempts": memo.attempts + 1, "first_attempt_at": memo.first_attempt_at}
    conn.execute(insert(F).values(row))


RUN_COLUMNS = ("task_name", "queue", "args", "kwargs", "payload", "attempt", "worker_id",
               "started_at")


@lru_cache(maxsize=4)
def _runs_upsert(dialect_name: str) -> Any:
    """Insert run rows, taking over a row a previous attempt of the job left (same task id)."""
    stmt = upsert_insert(dialect_name, R)
    return stmt.on_conflict_do_update(
        index_elements=["task_id"], set_={k: stmt.excluded[k] for k in RUN_COLUMNS}
    )


def _upsert_runs(conn: Connection, rows: list[dict[str, Any]]) -> None:
    retried = [r["task_id"] for r in rows if r["attempt"] > 1]
    if retried:
        counts = dict(conn.execute(
            select(A.c.task_id, A.c.attempts).where(A.c.task_id.in_(retried))
        ).all())
        for r in rows:
            if r["task_id"] in counts:
                r["attempt"] = counts[r["task_id"]] + 1
    rows.sort(key=lambda r: r["task_id"])
    conn.execute(_runs_upsert(conn.dialect.name), rows)


_AFTER_ALL = {
    "completed": "its worker finished it after all",
    "failed": "its worker recorded its failure in another entry",
    "retrying": "its worker was alive; the job failed and Huey retries it",
    "cancelled": "its worker cancelled it",
}


def _resolve_interrupted(conn: Connection, ended: list[tuple[str, str]], now: datetime) -> None:
    """Entries that said "interrupted" for jobs whose worker then reported an outcome: closed
    as `completed` (it ran to the end) or `discarded` (another entry or Huey has it)."""
    for task_id, outcome in ended:
        status = "completed" if outcome == "completed" else "discarded"
        note = f" ({_AFTER_ALL.get(outcome, outcome)}, {now:%Y-%m-%d %H:%M:%S} UTC)"
        conn.execute(
            update(F)
            .where(F.c.task_id == task_id, F.c.status == FailedJobStatus.interrupted.value)
            .values(status=status, resolved_by="ledger", resolved_at=now,
                    error_message=F.c.error_message + note)
        )


def install_ledger(huey: Huey, settings: Settings) -> Ledger:
    """Connect the job ledger to `huey` (idempotent). Call once in tasks.py, which also declares
    the periodic `jobs_housekeeping` task calling `ledger.housekeeping()`."""
    existing = getattr(huey, "kolaq_ledger", None)
    if existing is not None:
        return existing
    ledger = Ledger(huey, settings)
    huey.signal(SIGNAL_EXECUTING)(ledger.on_executing)
    huey.signal(SIGNAL_INTERRUPTED)(ledger.on_interrupted)
    huey.post_execute("kolaq_ledger")(ledger.after_execute)
    huey.on_startup("kolaq_ledger")(ledger.on_worker_startup)
    if hasattr(huey, "on_rejected"):
        huey.on_rejected(ledger.on_rejected)
    huey.on_shutdown("kolaq_ledger")(ledger.on_worker_shutdown)

    create_consumer = huey.create_consumer

    def create_consumer_noting_options(**options: Any) -> Any:
        consumer = create_consumer(**options)
        ledger.consumer_created({"workers": consumer.workers, "periodic": consumer.periodic})
        return consumer

    huey.create_consumer = create_consumer_noting_options  # type: ignore[method-assign]

    huey.kolaq_ledger = ledger  # type: ignore[attr-defined]
    return ledger
