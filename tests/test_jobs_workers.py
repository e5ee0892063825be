"""The job ledger with real consumer processes (`huey_consumer jobs_tasks.huey`): failures,
retries, kill -9, SIGTERM past the shutdown timeout; on the SQLite and Redis queues."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import jobs_tasks
import pytest
from helpers import wait_until
from sqlalchemy import select
from sqlmodel import Session

from kolaq_console.jobs import failed as ledger_ops
from kolaq_console.jobs import workers
from kolaq_console.jobs.stats import task_timings
from kolaq_console.models import FailedJob, JobAttempt, JobRun, Worker, utcnow

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def runs(tmp_path, monkeypatch):
    path = tmp_path / "runs"
    path.mkdir()
    monkeypatch.setenv("KOLAQ_TEST_RUNS", str(path))
    return path


@pytest.fixture
def start_consumer(spawn, runs):
    def start(workers: int = 2, **env: str):
        return spawn(
            cmd=[sys.executable, "-m", "huey.bin.huey_consumer", "jobs_tasks.huey",
                 "-w", str(workers)],
            env={"PYTHONPATH": str(TESTS), "KOLAQ_TEST_RUNS": str(runs), **env},
            name="consumer",
        )
    return start


def registered(engine, proc) -> Worker:
    """Wait until the consumer process has registered as a worker."""
    def find():
        with Session(engine) as s:
            return s.exec(select(Worker).where(Worker.pid == proc.pid)).scalars().first()
    return wait_until(find, message=f"worker pid {proc.pid} to register")


def entry(engine, task_id: str) -> FailedJob | None:
    with Session(engine) as s:
        return s.exec(select(FailedJob).where(FailedJob.task_id == task_id)).scalars().first()


def all_entries(engine) -> list[FailedJob]:
    with Session(engine) as s:
        return list(s.exec(select(FailedJob).order_by(FailedJob.id)).scalars())


def no_runs_left(engine) -> bool:
    with Session(engine) as s:
        return s.exec(select(JobRun)).first() is None


def timing(engine, task: str):
    with Session(engine) as s:
        found = [t for t in task_timings(s, utcnow().replace(hour=0, minute=0))
                 if t.task_name == task]
    return found[0] if found else None


def test_failed_job_lifecycle_on_real_workers(queue_backend, engine, huey, settings,
                                              start_consumer):
    t = jobs_tasks.register(huey, settings)
    proc = start_consumer()
    registered(engine, proc)
    failing, permanent = t.fail_until.s("life", 4), t.permanent.s("perm")
    huey.enqueue(failing)
    huey.enqueue(permanent)

    row = wait_until(lambda: entry(engine, failing.id), message="the failure in the ledger")
    assert row.status == "failed" and row.queue == "webhooks"
    assert row.attempts == 4  # attempts = executions: the first run and its 3 retries
    assert jobs_tasks.runs("life") == 4
    assert "ValueError: run 4 of life failed on purpose" in row.traceback
    assert row.worker_pid == proc.pid and row.first_attempt_at < row.last_attempt_at
    perm = wait_until(lambda: entry(engine, permanent.id))
    assert perm.attempts == 1 and jobs_tasks.runs("perm") == 1  # not retried

    result = ledger_ops.retry_failed(engine, huey, [row.id], "test-operator")
    [(_, new_id)] = result.retried
    wait_until(lambda: jobs_tasks.runs("life") == 5, message="the retried job to run")
    wait_until(lambda: (timing(engine, "jobs_tasks.fail_until") or None)
               and timing(engine, "jobs_tasks.fail_until").completed == 1)
    rows = all_entries(engine)
    assert len(rows) == 2  # the retry succeeded: no new entry
    assert entry(engine, failing.id).retried_as == new_id
    stats = timing(engine, "jobs_tasks.fail_until")
    assert (stats.failed, stats.completed, stats.runs) == (1, 1, 5)
    assert stats.retried == 4  # 3 automatic retries and the operator's
    wait_until(lambda: no_runs_left(engine))
    with Session(engine) as s:
        assert s.exec(select(JobAttempt)).first() is None
        assert ledger_ops.count_failed(s) == 1


def test_kill9_during_a_long_job_reruns_safe_jobs_and_lists_the_others(
        queue_backend, sqlite_engine, huey, settings, start_consumer):
    engine = sqlite_engine
    t = jobs_tasks.register(huey, settings)
    first = start_consumer()
    registered(engine, first)
    safe, unsafe = t.safe_sleepy.s("safe", 60), t.sleepy.s("unsafe", 60)
    huey.enqueue(safe)
    huey.enqueue(unsafe)

    def running_both():
        with Session(engine) as s:
            running = set(s.exec(select(JobRun.task_id)).scalars())
        return {safe.id, unsafe.id} <= running
    wait_until(running_both, message="both jobs in flight")
    first.kill9()

    second = start_consumer()
    registered(engine, second)
    wait_until(lambda: jobs_tasks.runs("safe") == 2, message="the safe job to run again")
    rerun_pid = int((jobs_tasks.runs_dir() / "safe").read_text().splitlines()[1])
    assert rerun_pid == second.pid
    lost_safe = wait_until(lambda: entry(engine, safe.id))
    assert lost_safe.status == "retried" and lost_safe.resolved_by == "sweeper"
    assert lost_safe.error_type == "WorkerLost" and lost_safe.worker_pid == first.pid
    lost = wait_until(lambda: entry(engine, unsafe.id), message="the unsafe job listed")
    assert lost.status == "interrupted" and lost.worker_pid == first.pid
    assert jobs_tasks.runs("unsafe") == 1  # not run again by itself

    with Session(engine) as s:
        states = {w.pid: w.state for w in workers.list_workers(s, settings.jobs.lease_seconds)}
        assert ledger_ops.count_failed(s) == 1
    assert states == {first.pid: "dead", second.pid: "running"}
    wait_until(lambda: no_runs_left(engine))

    # and the operator can run it again
    ledger_ops.retry_failed(engine, huey, [lost.id], "test-operator")
    wait_until(lambda: jobs_tasks.runs("unsafe") == 2)


def test_sigterm_records_jobs_still_running_at_the_shutdown_timeout(
        sqlite_engine, huey, settings, start_consumer, spawn, runs):
    engine = sqlite_engine
    t = jobs_tasks.register(huey, settings)
    proc = start_consumer(KOLAQ_QUEUE__SHUTDOWN_TIMEOUT="3")
    registered(engine, proc)
    long, short = t.sleepy.s("long", 60), t.gated.s("short")
    huey.enqueue(long)
    huey.enqueue(short)
    wait_until(lambda: jobs_tasks.runs("long") and jobs_tasks.runs("short"))
    huey.enqueue(t.permanent.s("waiting"))  # both workers busy: stays pending

    status = spawn("status", "--json", name="status")
    assert status.popen.wait(30) == 0, status.output()
    doc = json.loads(status.output())
    assert doc["queues"]["inventory"]["in_flight"] == 2
    assert doc["queues"]["emails"]["pending"] == 1
    assert doc["failed_jobs"] == 0

    proc.signal(signal.SIGTERM)
    proc.wait_for_output("Shutting down gracefully")
    (runs / "short.go").touch()  # the short job ends within the shutdown timeout
    proc.popen.wait(20)  # the long one is cut at the timeout

    [row] = all_entries(engine)
    assert row.task_id == long.id and row.status == "interrupted"
    assert row.error_type == "Interrupted" and row.worker_pid == proc.pid
    assert timing(engine, "jobs_tasks.gated").completed == 1  # the short one
    assert jobs_tasks.runs("waiting") == 0
    assert no_runs_left(engine)
    with Session(engine) as s:
        [w] = workers.list_workers(s, settings.jobs.lease_seconds)
    assert w.state == "stopped"

    status = spawn("status", "--json", name="status")
    assert status.popen.wait(30) == 0
    doc = json.loads(status.output())
    assert doc["failed_jobs"] == 1
    assert all(q["in_flight"] == 0 for q in doc["queues"].values())
