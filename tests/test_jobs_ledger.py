"""The job ledger in one process: Huey's own execute() path with the ledger installed, on
SQLite and PostgreSQL. Consumers in real processes are in test_jobs_workers.py.

Longer than ~400 lines: the ledger's in-process behaviours and its CLI, sharing fixtures.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import jobs_tasks
import pytest
from helpers import wait_until
from sqlalchemy import select, update
from sqlmodel import Session

from kolaq_console.cli import main
from kolaq_console.db import StorageUnavailable
from kolaq_console.jobs import failed as ledger_ops
from kolaq_console.jobs import install_ledger, workers
from kolaq_console.jobs.failed import JobFilter
from kolaq_console.jobs.stats import (
    HISTOGRAM_BUCKETS,
    bucket_for,
    percentile_ms,
    task_timings,
    throughput,
    totals_by_queue,
)
from kolaq_console.models import ActivityLog, FailedJob, JobAttempt, JobRun, JobStat, Worker, utcnow
from kolaq_console.status import collect
from kolaq_console.taskqueue import make_huey

SECRET = "test-key-not-real-0451"


@pytest.fixture
def runs(tmp_path, monkeypatch):
    path = tmp_path / "runs"
    path.mkdir()
    monkeypatch.setenv("KOLAQ_TEST_RUNS", str(path))
    return path


@pytest.fixture
def jobs(huey, settings, engine, runs):
    """The test tasks on this test's Huey, with the ledger installed."""
    ns = jobs_tasks.register(huey, settings)
    ns.huey = huey
    ns.ledger = install_ledger(huey, settings)
    ns.engine = engine
    return ns


def run_until_done(huey, task) -> int:
    """Execute a job like a worker would, retries included (due or not); returns executions."""
    huey.execute(task)
    executions = 1
    while True:
        due = [t for t in huey.read_schedule(utcnow() + timedelta(days=1)) if t.id == task.id]
        if not due:
            return executions
        huey.execute(due[0], timestamp=due[0].eta)  # as if its retry delay had passed
        executions += 1


def failed_rows(engine) -> list[FailedJob]:
    with Session(engine) as s:
        return list(s.exec(select(FailedJob).order_by(FailedJob.id)).scalars())


def test_a_failing_job_lands_once_with_every_attempt_and_its_traceback(jobs):
    task = jobs.fail_until.s("m", 10, api_key="x")
    assert run_until_done(jobs.huey, task) == 4  # the first run and 3 retries

    [row] = failed_rows(jobs.engine)
    assert row.task_id == task.id
    assert row.task_name == "jobs_tasks.fail_until"
    assert row.queue == "webhooks"
    assert row.status == "failed"
    assert row.attempts == 4
    assert row.first_attempt_at < row.last_attempt_at
    assert row.error_type == "ValueError"
    assert "run 4 of m failed on purpose" in row.error_message
    assert 'fail_until' in row.traceback and "ValueError" in row.traceback
    assert row.args == ["m", 10]
    assert row.worker_pid is not None and row.worker_host
    with Session(jobs.engine) as s:
        assert s.exec(select(JobAttempt)).first() is None  # the attempt note went with the job


def test_a_terminal_failure_is_in_the_database_when_execute_returns(jobs):
    jobs.huey.execute(jobs.permanent.s("p"))  # PermanentJobError: no retries
    [row] = failed_rows(jobs.engine)  # no flush happened: written synchronously
    assert row.attempts == 1
    assert row.error_type == "kolaq_console.errors.PermanentJobError"
    assert jobs.huey.scheduled_count() == 0


def test_short_jobs_cost_no_run_rows_and_are_counted_at_flush(jobs):
    for _ in range(20):
        jobs.huey.execute(jobs.noop.s())
    run_until_done(jobs.huey, jobs.fail_until.s("m", 1))  # fails once, then succeeds
    with Session(jobs.engine) as s:
        assert s.exec(select(JobStat)).first() is None  # buffered until the flush
    jobs.ledger.flush()
    with Session(jobs.engine) as s:
        assert s.exec(select(JobRun)).first() is None
        totals = totals_by_queue(s, utcnow() - timedelta(hours=1))
        timings = {t.task_name: t for t in task_timings(s, utcnow() - timedelta(hours=1))}
        minutes = throughput(s, utcnow() - timedelta(hours=1))
    assert totals["inventory"] == {"completed": 20, "failed": 0, "retried": 0}
    assert totals["webhooks"] == {"completed": 1, "failed": 0, "retried": 1}
    assert timings["jobs_tasks.noop"].runs == 20
    assert timings["jobs_tasks.noop"].p95_ms is not None
    assert sum(m.completed for m in minutes) == 21
    assert failed_rows(jobs.engine) == []  # a retry that then succeeds is not a failure


def test_a_running_job_is_in_flight_until_it_ends(jobs, settings):
    release = threading.Event()

    @jobs.huey.task(priority=205)
    def wait_for_release() -> None:
        release.wait(10)

    task = wait_for_release.s()
    runner = threading.Thread(target=jobs.huey.execute, args=(task,))
    runner.start()
    try:
        def flushed_run():
            jobs.ledger.flush()
            with Session(jobs.engine) as s:
                return s.get(JobRun, task.id)
        run = wait_until(flushed_run, message="the run row")
        assert run.queue == "emails" and run.worker_id == jobs.ledger.worker_id
        jobs.ledger.heartbeat()  # registers this process as a live worker
        snapshot = collect(settings, jobs.engine, jobs.huey)
        assert snapshot.queues["emails"].in_flight == 1
    finally:
        release.set()
        runner.join()
    jobs.ledger.flush()
    with Session(jobs.engine) as s:
        assert s.get(JobRun, task.id) is None


def _lost_runs(jobs, *tasks):
    """Make `tasks` look like jobs of a worker that died: run rows, and a stale heartbeat."""
    for task in tasks:
        jobs.ledger.on_executing("executing", task)
    jobs.ledger.flush()
    jobs.ledger.heartbeat()
    with Session(jobs.engine) as s:
        s.execute(update(Worker).values(heartbeat_at=utcnow() - timedelta(minutes=5)))
        s.commit()


def test_sweeper_reruns_safe_jobs_and_lists_the_others_as_interrupted(jobs, settings):
    safe, unsafe = jobs.safe_sleepy.s("a", 0), jobs.sleepy.s("b", 0)
    _lost_runs(jobs, safe, unsafe)
    with Session(jobs.engine) as s:
        [dead] = workers.list_workers(s, settings.jobs.lease_seconds)
    assert dead.state == "dead" and {j.task_id for j in dead.jobs} == {safe.id, unsafe.id}

    result = workers.sweep_lost_jobs(jobs.engine, jobs.huey, settings.jobs.lease_seconds)
    again = workers.sweep_lost_jobs(jobs.engine, jobs.huey, settings.jobs.lease_seconds)
    assert not again  # claimed once

    [(old_id, new_id)] = result.requeued
    assert old_id == safe.id and result.interrupted == [unsafe.id]
    [pending] = jobs.huey.pending()
    assert pending.id == new_id and pending.args == ("a", 0) and pending.retries == 3
    rows = {r.task_id: r for r in failed_rows(jobs.engine)}
    assert rows[safe.id].status == "retried" and rows[safe.id].retried_as == new_id
    assert rows[safe.id].resolved_by == "sweeper"
    assert rows[unsafe.id].status == "interrupted" and rows[unsafe.id].error_type == "WorkerLost"
    with Session(jobs.engine) as s:
        assert s.exec(select(JobRun)).first() is None
        [entry] = s.exec(select(ActivityLog)).scalars()
    assert entry.action == "jobs.requeue_lost" and entry.details["retried_as"] == new_id


def test_a_job_presumed_lost_that_finishes_after_all_is_marked_completed(jobs, settings):
    task = jobs.sleepy.s("c", 0)
    _lost_runs(jobs, task)
    workers.sweep_lost_jobs(jobs.engine, jobs.huey, settings.jobs.lease_seconds)
    assert failed_rows(jobs.engine)[0].status == "interrupted"
    jobs.ledger.after_execute(task, None, None)  # its worker was only slow
    jobs.ledger.flush()
    [row] = failed_rows(jobs.engine)
    assert row.status == "completed" and row.resolved_by == "ledger"


def _failures(jobs) -> dict[str, list]:
    """Failed entries of several tasks and queues."""
    made = {
        "fail_a": [jobs.fail_until.s(f"a{i}", 99, secret="alpha") for i in range(3)],
        "fail_b": [jobs.fail_until.s(f"b{i}", 99, secret="beta") for i in range(2)],
        "perm": [jobs.permanent.s(f"p{i}") for i in range(2)],
    }
    for tasks in made.values():
        for task in tasks:
            run_until_done(jobs.huey, task)
    return made


def test_retry_all_with_a_filter_retries_exactly_the_matching_jobs(jobs, settings):
    made = _failures(jobs)
    flt = JobFilter(task="fail_until", error="a1 failed")
    with Session(jobs.engine) as s:
        ids = ledger_ops.select_ids(s, flt=flt)
    assert len(ids) == 1
    flt = JobFilter(queue="webhooks", task="fail_until")
    with Session(jobs.engine) as s:
        ids = ledger_ops.select_ids(s, flt=flt)
    assert len(ids) == 5

    result = ledger_ops.retry_failed(jobs.engine, jobs.huey, ids, "test-operator", flt)

    assert sorted(i for i, _ in result.retried) == sorted(ids) and not result.skipped
    rows = {r.id: r for r in failed_rows(jobs.engine)}
    pending = {t.id: t for t in jobs.huey.pending()}
    assert set(pending) == {rows[i].retried_as for i in ids}  # nothing else was enqueued
    for i in ids:
        row, new = rows[i], pending[rows[i].retried_as]
        original = next(t for ts in made.values() for t in ts if t.id == row.task_id)
        assert (new.args, new.kwargs) == (original.args, original.kwargs)  # the same call
        assert new.retries == 3 and new.priority == original.priority  # fresh budget
        assert row.status == "retried" and row.resolved_by == "test-operator"
    assert {r.status for r in rows.values() if r.id not in ids} == {"failed"}
    with Session(jobs.engine) as s:
        [entry] = s.exec(select(ActivityLog)).scalars()
        assert ledger_ops.count_failed(s) == 2
    assert entry.actor == "test-operator" and entry.action == "jobs.retry"
    assert entry.details["count"] == 5
    assert entry.details["filter"] == {"status": "open", "queue": "webhooks", "task": "fail_until"}


def test_a_retried_job_that_fails_again_is_a_new_entry_with_fresh_attempts(jobs):
    run_until_done(jobs.huey, jobs.fail_until.s("r", 5))  # 4 failures
    [first] = failed_rows(jobs.engine)
    ledger_ops.retry_failed(jobs.engine, jobs.huey, [first.id], "op")
    [task] = jobs.huey.pending()
    jobs.huey.dequeue()
    assert run_until_done(jobs.huey, task) == 2  # run 5 fails, run 6 succeeds
    assert [r.status for r in failed_rows(jobs.engine)] == ["retried"]


def test_an_entry_is_retried_once_even_when_asked_twice(jobs):
    jobs.huey.execute(jobs.permanent.s("p"))
    [row] = failed_rows(jobs.engine)
    first = ledger_ops.retry_failed(jobs.engine, jobs.huey, [row.id], "op")
    second = ledger_ops.retry_failed(jobs.engine, jobs.huey, [row.id], "op")
    assert len(first.retried) == 1 and second.retried == []
    assert jobs.huey.pending_count() == 1


def test_a_retried_job_reaches_the_queue_only_after_its_entry_is_committed(jobs, monkeypatch):
    """A worker may take the job the moment it is enqueued: by then the entry (and what the
    task's retry hook reopened) must be visible to any other connection."""
    jobs.huey.execute(jobs.permanent.s("p"))
    [row] = failed_rows(jobs.engine)
    seen: list[tuple[str, str | None]] = []
    enqueue = jobs.huey.enqueue

    def enqueue_and_look(task):
        entry = failed_rows(jobs.engine)[0]  # a connection of its own, as a worker's
        seen.append((entry.status, entry.retried_as))
        return enqueue(task)

    monkeypatch.setattr(jobs.huey, "enqueue", enqueue_and_look)
    result = ledger_ops.retry_failed(jobs.engine, jobs.huey, [row.id], "op")
    [(_, new_id)] = result.retried
    assert seen == [("retried", new_id)]


def test_a_queue_that_fails_mid_retry_leaves_the_rest_open_and_counts_only_the_enqueued(
        jobs, monkeypatch):
    for name in ("p1", "p2", "p3"):
        jobs.huey.execute(jobs.permanent.s(name))
    ids = [r.id for r in failed_rows(jobs.engine)]
    enqueue, calls = jobs.huey.enqueue, []

    def enqueue_once(task):
        calls.append(task.id)
        if len(calls) > 1:
            raise ConnectionError("redis went away")
        return enqueue(task)

    monkeypatch.setattr(jobs.huey, "enqueue", enqueue_once)
    since = utcnow() - timedelta(minutes=1)
    with pytest.raises(StorageUnavailable, match="1 job\\(s\\) were re-enqueued"):
        ledger_ops.retry_failed(jobs.engine, jobs.huey, ids, "op")

    rows = failed_rows(jobs.engine)
    assert [(r.status, r.retried_as) for r in rows] == [
        ("retried", calls[0]), ("failed", None), ("failed", None)]
    assert [t.id for t in jobs.huey.pending()] == [calls[0]]
    with Session(jobs.engine) as s:
        assert totals_by_queue(s, since)[rows[0].queue]["retried"] == 1
        [entry] = s.exec(select(ActivityLog)).scalars()
    assert entry.details["count"] == 1


def test_an_altered_stored_call_is_refused_not_run(jobs):
    jobs.huey.execute(jobs.permanent.s("p"))
    [row] = failed_rows(jobs.engine)
    with Session(jobs.engine) as s:
        tampered = row.payload.replace(b"p", b"q")
        s.execute(update(FailedJob).values(payload=tampered))
        s.commit()
    result = ledger_ops.retry_failed(jobs.engine, jobs.huey, [row.id], "op")
    assert result.retried == [] and "does not verify" in result.skipped[0][1]
    assert jobs.huey.pending_count() == 0
    assert failed_rows(jobs.engine)[0].status == "failed"


def test_discard_closes_entries_and_leaves_the_audit_trail(jobs):
    _failures(jobs)
    with Session(jobs.engine) as s:
        ids = ledger_ops.select_ids(s, flt=JobFilter(queue="emails"))
    assert ledger_ops.discard_failed(jobs.engine, ids, "test-operator", JobFilter(queue="emails"))
    rows = [r for r in failed_rows(jobs.engine) if r.id in ids]
    assert len(rows) == 2  # kept
    assert {(r.status, r.resolved_by) for r in rows} == {("discarded", "test-operator")}
    with Session(jobs.engine) as s:
        [entry] = s.exec(select(ActivityLog)).scalars()
        assert ledger_ops.count_failed(s, JobFilter(queue="emails")) == 0
        assert ledger_ops.count_failed(s, JobFilter(status="discarded")) == 2
    assert entry.action == "jobs.discard" and entry.details["count"] == 2
    assert entry.details["filter"]["queue"] == "emails"
    assert jobs.huey.pending_count() == 0


# --- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def cli(jobs, monkeypatch, capsys):
    """Run `kolaq-console ...` in this process against the test's Huey."""
    from kolaq_console.cli import common

    monkeypatch.setattr(common, "huey", lambda: jobs.huey)

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()  # only what this command prints
        code = 0
        try:
            main(list(argv))
        except SystemExit as exc:
            code = exc.code or 0
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_a_secret_argument_never_appears_in_show_or_json(jobs, cli, monkeypatch):
    monkeypatch.setenv("RESEND_API_KEY", SECRET)  # a secret the system knows
    # Known to the system (env), named as a secret, shaped like a credential:
    task = jobs.fail_until.s("s", 99, SECRET, api_key="test-token-not-real",
                             note="Authorization: Bearer test-bearer-not-real")
    run_until_done(jobs.huey, task)
    [row] = failed_rows(jobs.engine)
    assert SECRET in jobs.huey.deserialize_task(row.payload).args  # the exact call is kept

    outputs = [cli("jobs", "show", str(row.id)), cli("jobs", "show", str(row.id), "--json"),
               cli("jobs", "failed", "--json"), cli("jobs", "failed")]
    for code, out, err in outputs:
        assert code == 0, err
        for secret in (SECRET, "test-token-not-real", "test-bearer-not-real"):
            assert secret not in out + err
    assert "[REDACTED]" in outputs[0][1]

    code, out, err = cli("jobs", "retry", str(row.id))  # the retry still sends the real call
    assert code == 0, err
    [pending] = jobs.huey.pending()
    assert pending.args == ("s", 99, SECRET)
    assert pending.kwargs == {"api_key": "test-token-not-real",
                              "note": "Authorization: Bearer test-bearer-not-real"}


def test_bulk_actions_without_yes_refuse_and_change_nothing(jobs, cli):
    _failures(jobs)
    for verb in ("retry", "discard"):
        code, out, err = cli("jobs", verb, "--all", "--queue", "webhooks")
        assert code == 1 and "without --yes" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("jobs", "retry", "1", "2")
    assert code == 1 and "without --yes" in err
    code, _, err = cli("jobs", "retry", "--all", "--error", "a1 failed")  # matches one
    assert code == 1 and "refusing to retry 1 failed job matching" in err
    assert jobs.huey.pending_count() == 0
    assert {r.status for r in failed_rows(jobs.engine)} == {"failed"}

    code, out, err = cli("jobs", "retry", "--all", "--queue", "webhooks", "--yes")
    assert code == 0, err
    assert "retried 5 job(s)" in out
    code, out, err = cli("jobs", "discard", "--all", "--yes")
    assert code == 0, err
    assert "discarded 2 job(s)" in out


def test_cli_errors_are_one_line_and_change_nothing(jobs, cli):
    jobs.huey.execute(jobs.permanent.s("p"))
    for argv, reason in [
        (("jobs", "show", "999"), "no failed job #999"),
        (("jobs", "retry", "999"), "no failed job #999"),
        (("jobs", "retry"), "name the job ids"),
        (("jobs", "retry", "1", "--queue", "emails"), "not both"),
        (("jobs", "failed", "--queue", "sms"), "unknown queue 'sms'"),
        (("jobs", "failed", "--since", "yesterday"), "--since 'yesterday'"),
    ]:
        code, _out, err = cli(*argv)
        assert code == 1 and reason in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert jobs.huey.pending_count() == 0


def test_jobs_failed_lists_newest_first_a_page_at_a_time(jobs, cli):
    for i in range(5):
        jobs.huey.execute(jobs.permanent.s(f"p{i}"))
    _, out, _ = cli("jobs", "failed", "--json", "--limit", "2")
    page = __import__("json").loads(out)
    assert page["total"] == 5 and [j["id"] for j in page["jobs"]] == [5, 4]
    _code, out, _ = cli("jobs", "failed", "--json", "--limit", "2", "--before", "4")
    assert [j["id"] for j in __import__("json").loads(out)["jobs"]] == [3, 2]


# --- statistics ------------------------------------------------------------------------------


def test_histogram_buckets_and_p95_estimate():
    assert [bucket_for(us) for us in (0, 999, 1000, 1999, 2000, 10**12)] == [
        0, 0, 1, 1, 2, HISTOGRAM_BUCKETS - 1]
    hist = [0] * HISTOGRAM_BUCKETS
    hist[bucket_for(5_000)] += 95  # 95 runs of ~5 ms (bucket 4-8 ms)
    hist[bucket_for(300_000)] += 5  # 5 runs of ~300 ms (bucket 256-512 ms)
    assert 4 <= percentile_ms(hist, 0.95) <= 8
    assert 256 <= percentile_ms(hist, 0.99) <= 512
    assert percentile_ms([0] * HISTOGRAM_BUCKETS, 0.95) is None


def test_stats_from_several_workers_merge_into_one_row_and_old_rows_are_pruned(jobs, settings):
    other = install_ledger(make_huey(settings, name=jobs.huey.name + "-2"), settings)
    jobs_tasks.register(other.huey, settings)
    for ledger, hue in ((jobs.ledger, jobs.huey), (other, other.huey)):
        for _ in range(3):
            hue.execute(hue._registry.string_to_task("jobs_tasks.noop")())
        ledger.flush()
    with Session(jobs.engine) as s:
        rows = list(s.exec(select(JobStat).where(JobStat.task_name == "jobs_tasks.noop"))
                    .scalars())
        assert len(rows) == 1 and rows[0].completed == 6  # merged, not duplicated
        s.execute(update(JobStat).values(minute=utcnow() - timedelta(hours=30)))
        s.commit()
    pruned = workers.prune(jobs.engine, settings.jobs.stats_retention_hours)
    assert pruned["stats"] == 1


def test_a_failure_that_cannot_be_written_waits_and_is_written_at_the_next_flush(
        jobs, make_settings, tmp_path):
    good = jobs.ledger.settings
    jobs.ledger.settings = make_settings(database__url="sqlite:////proc/no-such-dir/k.db")
    run_until_done(jobs.huey, jobs.fail_until.s("down", 1, api_key="x"))  # retry note lost
    jobs.huey.execute(jobs.permanent.s("down"))
    assert failed_rows(jobs.engine) == []
    jobs.ledger.flush()  # still unreachable: kept
    jobs.ledger.settings = good
    jobs.ledger.flush()
    [row] = failed_rows(jobs.engine)
    assert row.task_name == "jobs_tasks.permanent" and row.attempts == 1


def test_immediate_mode_records_nothing(jobs):
    jobs.huey.immediate = True
    jobs.permanent("p")  # runs inline, fails
    jobs.ledger.flush()
    jobs.huey.immediate = False
    assert failed_rows(jobs.engine) == []


def test_jobs_workers_stats_and_sweep_commands(jobs, cli, settings):
    for _ in range(3):
        jobs.huey.execute(jobs.noop.s())
    jobs.huey.execute(jobs.permanent.s("p"))
    _lost_runs(jobs, jobs.sleepy.s("w", 0))

    code, out, err = cli("jobs", "workers", "--json")
    assert code == 0, err
    [worker] = __import__("json").loads(out)["workers"]
    assert worker["state"] == "dead" and worker["jobs"][0]["task_name"] == "jobs_tasks.sleepy"
    code, out, err = cli("jobs", "workers")
    assert code == 0 and "DEAD" in out and "1 dead worker(s)" in out

    code, out, err = cli("jobs", "sweep")
    assert code == 0 and "0 re-enqueued, 1 recorded as interrupted" in out, err

    code, out, err = cli("jobs", "stats", "--json", "--per-minute")
    doc = __import__("json").loads(out)
    assert doc["queues"]["inventory"]["completed"] == 3
    assert doc["queues"]["emails"]["failed"] == 1
    noop = next(t for t in doc["tasks"] if t["task_name"] == "jobs_tasks.noop")
    assert noop["runs"] == 3 and noop["p95_ms"] is not None
    assert sum(m["completed"] for m in doc["per_minute"]) == 3
    code, out, err = cli("jobs", "stats")
    assert code == 0 and "jobs_tasks.noop" in out
