"""Shutdown and crash recovery with real worker processes: SIGINT is graceful like SIGTERM (a
second signal forces), an email cut off by a shutdown is handed back at once, and after a
kill -9 the dead worker's emails are taken over at once on its machine, or once its heartbeat
is stale elsewhere; never sent twice.

Outbox leases are set far beyond the tests' timeouts, so only the mechanism under test can
explain an email sent in time."""

from __future__ import annotations

import signal
import sys
import time
from collections import Counter
from pathlib import Path

import jobs_tasks
import pytest
from email_support import KEY, provider_done, rows, status_counts
from helpers import run_cli, wait_until
from sqlalchemy import select, update
from sqlmodel import Session
from stubs.resend_api import ResendStubProcess

from kolaq_console.emails import EmailRequest, outbox
from kolaq_console.emails.outbox import HANDED_BACK
from kolaq_console.models import FailedJob, Worker

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
LONG = "600"  # seconds: a lease no test waits out


def resend_env(url: str, **extra: str) -> dict[str, str]:
    return {"KOLAQ_EMAIL__TRANSPORT": "resend", "RESEND_API_URL": url, "RESEND_API_KEY": KEY,
            "KOLAQ_SHOP__PUBLIC_URL": "https://shop.test", "KOLAQ_EMAIL__LEASE_SECONDS": LONG,
            **extra}


def queue_emails(engine, settings, n: int) -> None:
    """What `kolaq-console email queue generic` does, in this process (the `tasks_module`
    fixture points the send jobs at this test's queue)."""
    with Session(engine) as session:
        for i in range(n):
            outbox.add(session, settings, EmailRequest(
                "generic", to=f"c{i}@example.com", subject=f"Note {i}", body="Hello"))


def status_counts_of(env: dict[str, str], kolaq_env: dict[str, str]) -> dict[str, int]:
    from kolaq_console.db import make_engine

    engine = make_engine(kolaq_env["KOLAQ_DATABASE__URL"])
    try:
        return status_counts(engine)
    finally:
        engine.dispose()


def worker_row(engine, pid: int) -> Worker:
    def find():
        with Session(engine) as s:
            return s.exec(select(Worker).where(Worker.pid == pid)).scalars().first()
    return wait_until(find, message=f"worker pid {pid} registered")


def each_sent_once(engine, stub) -> None:
    """Every row's recipient got exactly one copy (emails that waited together went in one
    batch request, under the batch's key)."""
    addresses = {r.to_address for r in rows(engine)}
    per_address = Counter(d.to[0] for d in stub.deliveries)
    assert set(per_address) == addresses and set(per_address.values()) == {1}, per_address


# --- signals ---------------------------------------------------------------------------------


@pytest.fixture
def runs(tmp_path, monkeypatch):
    path = tmp_path / "runs"
    path.mkdir()
    monkeypatch.setenv("KOLAQ_TEST_RUNS", str(path))
    return path


def consumer(spawn, runs, **env: str):
    return spawn(cmd=[sys.executable, "-m", "huey.bin.huey_consumer", "jobs_tasks.huey", "-w",
                      "2"],
                 env={"PYTHONPATH": str(TESTS), "KOLAQ_TEST_RUNS": str(runs), **env},
                 name="consumer")


def test_sigint_lets_running_jobs_finish_and_a_second_signal_forces(
        sqlite_engine, huey, settings, spawn, runs):
    t = jobs_tasks.register(huey, settings)
    # graceful stops would wait past the gate's own 30 s limit: only a forced stop is quick
    env = {"KOLAQ_QUEUE__SHUTDOWN_TIMEOUT": "120"}

    first = consumer(spawn, runs, **env)
    worker_row(sqlite_engine, first.pid)
    huey.enqueue(t.gated.s("one"))
    wait_until(lambda: jobs_tasks.runs("one") == 1, message="the job to start")
    first.signal(signal.SIGINT)
    first.wait_for_output("Shutting down gracefully")
    assert first.popen.poll() is None  # still running: waiting for the job
    (runs / "one.go").touch()
    assert first.popen.wait(30) == 0
    with Session(sqlite_engine) as s:
        assert s.exec(select(FailedJob)).first() is None  # it finished: nothing interrupted

    second = consumer(spawn, runs, **env)
    worker_row(sqlite_engine, second.pid)
    job = t.gated.s("two")
    huey.enqueue(job)
    wait_until(lambda: jobs_tasks.runs("two") == 1, message="the job to start")
    second.signal(signal.SIGINT)
    second.wait_for_output("Shutting down gracefully")
    second.signal(signal.SIGTERM)  # either signal, the second time, forces
    assert second.popen.wait(20) == 0
    assert "Received request to shut down now" in second.output()
    with Session(sqlite_engine) as s:
        [entry] = s.exec(select(FailedJob)).scalars().all()
    assert entry.task_id == job.id and entry.status == "interrupted"


def test_an_email_cut_off_by_a_shutdown_is_handed_back_at_once(
        queue_backend, sqlite_engine, settings, tasks_module, spawn):
    with ResendStubProcess(api_keys=[KEY]) as stub:
        env = resend_env(stub.url, KOLAQ_QUEUE__SHUTDOWN_TIMEOUT="0.3")
        stub.inject(delay=30, times=1)  # the first send is held at the provider
        first = spawn("worker", "-w", "1", "--no-periodic", env=env)
        queue_emails(sqlite_engine, settings, 1)
        wait_until(stub.pending_idempotency_keys, message="the send in flight")
        first.signal(signal.SIGTERM)
        assert first.popen.wait(30) == 0

        [row] = rows(sqlite_engine)
        assert (row.status, row.last_error) == ("queued", HANDED_BACK)  # not held for its lease
        provider_done(stub)
        spawn("worker", "-w", "1", "--no-periodic", env=env)
        wait_until(lambda: status_counts(sqlite_engine) == {"sent": 1}, timeout=60,
                   message="the email sent by the next worker")
        each_sent_once(sqlite_engine, stub)


# --- kill -9 -----------------------------------------------------------------------------------


def kill_with_sends_in_flight(spawn, stub, env, kolaq_env, engine, settings, n: int):
    stub.inject(delay=30, times=n)  # every first attempt is held: in flight when killed
    queue_emails(engine, settings, n)
    dead = spawn("worker", "-w", str(n), "--no-periodic", env=env, name="dead")
    # the n emails waited together: they are in flight in one batch request
    wait_until(lambda: len(stub.pending_idempotency_keys()) >= 1
               and status_counts_of(env, kolaq_env) == {"sending": n}, timeout=30,
               message="every send in flight")
    dead.kill9()
    provider_done(stub)
    return dead


def test_after_kill_9_a_worker_on_the_same_machine_takes_its_emails_over_at_once(
        queue_backend, sqlite_engine, kolaq_env, settings, tasks_module, spawn):
    with ResendStubProcess(api_keys=[KEY]) as stub:
        env = resend_env(stub.url, KOLAQ_JOBS__LEASE_SECONDS=LONG)
        dead = kill_with_sends_in_flight(spawn, stub, env, kolaq_env, sqlite_engine, settings, 3)
        assert status_counts(sqlite_engine) == {"sending": 3}

        heir = spawn("worker", "-w", "2", "--no-periodic", env=env, name="heir")
        wait_until(lambda: status_counts(sqlite_engine) == {"sent": 3}, timeout=60,
                   message="the dead worker's emails sent")
        each_sent_once(sqlite_engine, stub)
        assert "no longer run on this machine" in heir.output()
        assert worker_row(sqlite_engine, dead.pid).found_dead_at is not None
        listed = run_cli(kolaq_env, "jobs", "workers")
        assert "dead" in listed.stdout, listed.stdout


def test_after_kill_9_elsewhere_its_emails_are_sent_once_its_heartbeat_is_stale(
        queue_backend, sqlite_engine, kolaq_env, settings, tasks_module, spawn):
    lease = 3.0
    with ResendStubProcess(api_keys=[KEY]) as stub:
        env = resend_env(stub.url, KOLAQ_JOBS__LEASE_SECONDS=str(lease))
        dead = kill_with_sends_in_flight(spawn, stub, env, kolaq_env, sqlite_engine, settings, 3)
        killed_at = time.time()
        # What a worker of another machine leaves: nothing here can prove its process gone.
        with Session(sqlite_engine) as s:
            s.exec(update(Worker).where(Worker.pid == dead.pid)
                   .values(host="elsewhere", pid_scope="another-boot/pid:[1]"))
            s.commit()
        last_beat = worker_row(sqlite_engine, dead.pid).heartbeat_at.timestamp()
        assert last_beat <= killed_at

        heir = spawn("worker", "-w", "2", "--no-periodic", env=env, name="heir")
        wait_until(lambda: status_counts(sqlite_engine) == {"sent": 3}, timeout=60,
                   message="the dead worker's emails sent")
        each_sent_once(sqlite_engine, stub)
        # taken over through the stale heartbeat, not the same-machine proof...
        assert "no longer run on this machine" not in heir.output()
        assert worker_row(sqlite_engine, dead.pid).found_dead_at is None
        # ...so never before the heartbeat was older than the lease
        resent = [r.time for r in stub.requests if r.time > killed_at]
        assert resent and min(resent) >= last_beat + lease
