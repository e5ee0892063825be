"""The Huey consumer our queues create (`huey_consumer tasks.huey` included): Huey's, with
two operator-facing changes.

- SIGINT (Ctrl-C) stops gracefully like SIGTERM: running jobs get the shutdown timeout to
  finish. A second SIGINT or SIGTERM stops at once (running jobs are then recorded as
  interrupted, and rerun-safe ones handed back and re-enqueued by the job ledger).
- When the queue storage (Redis, the SQLite file) cannot be reached, Huey logs a traceback per
  worker thread per poll (dozens a second). Here the consumer logs one line when it is lost and
  one when it is back, and its threads pause with a growing delay between attempts.
"""

from __future__ import annotations

import gc
import logging
import signal
import sqlite3
import threading
import time
from typing import Any

import redis.exceptions
from huey.consumer import Consumer, Scheduler, Worker
from huey.consumer import WorkerRecycle as _Recycle

from kolaq_console.redact import redact

log = logging.getLogger("kolaq_console.taskqueue")
# What the storage raises when it cannot be reached (Redis down, the SQLite file locked or gone).
STORAGE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                  sqlite3.OperationalError)


class QueueOutage:
    """Shared by a consumer's threads: whether the queue storage is reachable, and how long to
    pause before the next attempt while it is not.

    Threads see the storage fail and recover in slightly different orders (a reply already in
    a socket's buffer, a pooled connection broken by the last outage), so an attempt counts
    only for the state at its start: one that began before the outage was noticed does not
    end it, and one that began before the storage came back does not start a new one."""

    def __init__(self, first_delay: float, max_delay: float) -> None:
        self.first_delay = min(first_delay, max_delay)
        self.max_delay = max_delay
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._up_since = 0.0
        self._delay = self.first_delay
        self._next_attempt = 0.0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def call(self, fn: Any) -> Any:
        """`fn()`, tried a second time at once if it fails while the storage is thought up: a
        client connection broken by an earlier outage fails once, then is replaced."""
        try:
            return fn()
        except Exception:
            if self.down:
                raise
        return fn()

    def failed(self, exc: BaseException, started: float | None = None) -> float:
        """Note an attempt (begun at `started`, monotonic) that failed; returns the seconds to
        pause before the next one."""
        with self._lock:
            now = time.monotonic()
            if self._down_since is None:
                if started is not None and started < self._up_since:
                    return self.first_delay  # a leftover of the outage that just ended
                self._down_since = now
                self._delay = self.first_delay
                reason = redact(f"{type(exc).__name__}: {exc}").splitlines()[0]
                log.error("queue storage unreachable (%s); retrying with backoff up to %g s, "
                          "one line when it is back", reason, self.max_delay)
            else:
                self._delay = min(self._delay * 2, self.max_delay)
                log.debug("queue storage still unreachable; next attempt in %.2f s",
                          self._delay)
            self._next_attempt = now + self._delay
            return self._delay

    def succeeded(self, started: float) -> None:
        """Note an attempt begun at `started` (monotonic) that succeeded."""
        if self._down_since is None:  # the common case: no lock
            return
        with self._lock:
            if self._down_since is not None and started >= self._down_since:
                now = time.monotonic()
                log.warning("queue storage reachable again after %.1f s",
                            now - self._down_since)
                self._down_since = None
                self._up_since = now

    def wait_before_attempt(self) -> float:
        """Seconds until the next attempt is due (0 when the storage is up)."""
        if self._down_since is None:
            return 0.0
        return max(0.0, self._next_attempt - time.monotonic())


class KolaqWorker(Worker):
    outage: QueueOutage

    def loop(self, now: Any = None) -> None:
        # Huey 3.5's Worker.loop, with the outage handling in place of a traceback per poll.
        started = time.monotonic()
        try:
            task = self.outage.call(self.huey.dequeue)
        except Exception as exc:
            self.stop_flag.wait(self.outage.failed(exc, started))
            return
        self.outage.succeeded(started)
        if task is not None:
            self.delay = self.default_delay
            self.task_count += 1
            try:
                self.huey.execute(task, now)
            except STORAGE_ERRORS as exc:
                # Huey reads and writes the storage around a job (revocation, retries): a job
                # caught by the outage gets a line of its own, not a traceback.
                self.outage.failed(exc)
                self._logger.warning("job %s: the queue storage failed while handling it; "
                                     "it may not have run", task)
            except Exception:
                self._logger.exception("Unhandled error during execution of task %s.",
                                       task.id)
            if self.max_tasks and self.task_count >= self.max_tasks:
                self._logger.info("Worker reached max tasks (%d), exiting.", self.max_tasks)
                raise _Recycle()
        elif not self.huey.storage.blocking:
            self.sleep()


class KolaqScheduler(Scheduler):
    outage: QueueOutage

    def loop(self, now: Any = None) -> None:
        # Huey 3.5's Scheduler.loop, with the outage handling in place of tracebacks.
        wait = self.outage.wait_before_attempt()
        if wait > 0:  # the storage is down: wait for the next attempt the backoff allows
            self.stop_flag.wait(min(wait, self.interval))
            self._next_loop = time.monotonic()
            return
        current = self._next_loop
        self._next_loop += self.interval
        if self._next_loop < time.monotonic():
            self._next_loop = time.monotonic()
            return
        due = self._attempt(lambda: self.huey.read_schedule(now)) or []
        for i, task in enumerate(due):
            if not self._attempt(lambda t=task: self.huey.enqueue(t) or True):
                # Taken off the schedule, not back on the queue: the outbox and the job
                # ledger's sweepers find what these were doing.
                log.warning("%d due job(s) (retries, delayed) could not be enqueued",
                            len(due) - i)
                break
        if self.periodic and self._next_periodic <= time.monotonic():
            while self._next_periodic <= time.monotonic():  # skip slots missed in a stall
                self._next_periodic += self.periodic_task_seconds
            self.enqueue_periodic_tasks(now)
        self.sleep_for_interval(current, self.interval)

    def enqueue_periodic_tasks(self, now: Any) -> None:
        for task in self.huey.read_periodic(now):
            self._logger.info("Enqueueing periodic task %s.", task)
            if not self._attempt(lambda t=task: self.huey.enqueue(t) or True):
                return  # the storage is down: the others would fail the same way

    def _attempt(self, call: Any) -> Any:
        started = time.monotonic()
        try:
            result = self.outage.call(call)
        except Exception as exc:
            self.outage.failed(exc, started)
            return None
        self.outage.succeeded(started)
        return result


class KolaqConsumer(Consumer):
    worker_class = KolaqWorker
    scheduler_class = KolaqScheduler

    def __init__(self, huey: Any, *, outage_max_delay: float = 10.0,
                 kolaq_scheduler_interval: float | None = None, **options: Any) -> None:
        self.outage = QueueOutage(options.get("max_delay", 1.0), outage_max_delay)
        # Huey clamps its scheduler_interval to whole seconds >= 1; ours is set on the
        # scheduler itself (KolaqScheduler.loop takes any positive interval).
        self._kolaq_scheduler_interval = kolaq_scheduler_interval
        super().__init__(huey, **options)
        graceful = (False, True)  # (restart, graceful)
        self._signal_actions[signal.SIGINT] = graceful
        self._signal_actions[signal.SIGTERM] = graceful

    def run(self) -> None:
        freeze_startup_objects()
        super().run()

    def _create_worker(self) -> Worker:
        worker = super()._create_worker()
        worker.outage = self.outage  # type: ignore[attr-defined]
        return worker

    def _create_scheduler(self) -> Scheduler:
        scheduler = super()._create_scheduler()
        scheduler.outage = self.outage  # type: ignore[attr-defined]
        if self._kolaq_scheduler_interval is not None:
            scheduler.interval = self._kolaq_scheduler_interval
        return scheduler

    def _handle_signal(self, signum: int, frame: Any) -> None:
        first = self._signum is None
        super()._handle_signal(signum, frame)
        if first and self._graceful and not self._restart:
            # Either signal, a second time, interrupts the graceful stop (Huey re-arms only
            # the one received).
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.default_int_handler)


# Young-generation collections every 700 allocations (Python's default) ran ~100 times a
# batch of 100 emails; fewer, bigger ones cost less CPU per email, for a few MB more.
GC_THRESHOLDS = (20_000, 20, 20)


def freeze_startup_objects() -> None:
    """A worker's modules, settings and caches live as long as the process: moved out of the
    collector's generations once started (gc.freeze), no collection walks them again, and
    collections run less often (GC_THRESHOLDS)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
