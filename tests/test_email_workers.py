"""Real worker processes against the Resend stand-in: the backoff schedule, 429s that spend no
retry, permanent failures that are not retried, kill -9 with emails in flight, and one rate
limit shared by two processes of four threads."""

from __future__ import annotations

import itertools
import time
from collections import Counter

import pytest
from email_support import KEY, reload_tasks, rows, status_counts
from helpers import wait_until
from sqlmodel import Session
from stubs.resend_api import ResendStub, ResendStubProcess

from kolaq_console import runtime
from kolaq_console.emails import queue_email

pytestmark = pytest.mark.slow


@pytest.fixture
def tasks_module(settings):
    """`tasks` rebuilt on this test's queue, so queue_email enqueues where the workers read."""
    module = reload_tasks()
    yield module
    runtime.configure(None)
    reload_tasks()


def resend_env(url: str, **extra: str) -> dict[str, str]:
    return {"KOLAQ_EMAIL__TRANSPORT": "resend", "RESEND_API_URL": url, "RESEND_API_KEY": KEY,
            "KOLAQ_SHOP__PUBLIC_URL": "https://shop.test",  # workers refuse a local address
            **extra}


def queue_generic(engine, settings, n: int, prefix: str = "c") -> list[int]:
    with Session(engine, expire_on_commit=False) as session:
        return [queue_email(session, settings, "generic", to=f"{prefix}{i}@example.com",
                            subject=f"Note {i}", body=f"Hello {i}").id for i in range(n)]


def wait_for_status(engine, row_ids, status, timeout=30.0):
    def done():
        by_id = {r.id: r.status for r in rows(engine)}
        return all(by_id.get(i) == status for i in row_ids)

    wait_until(done, timeout=timeout, message=f"rows {row_ids} to be {status}")


def request_times(stub, key: str) -> list[float]:
    return [r.time for r in stub.requests if r.idempotency_key == key]


def test_retries_follow_the_backoff_429_spends_none_and_permanent_errors_are_not_retried(
    queue_backend, sqlite_engine, settings, tasks_module, spawn
):
    with ResendStub(api_keys={KEY}) as stub:
        worker = spawn("worker", "-w", "2", env=resend_env(stub.url))
        worker.wait_for_output("tasks.send_email")  # consumer up (its banner lists tasks)

        # 5xx three times: retried after 0.05, 0.25 and 1.25 s (5/25/125 s scaled by 1/100).
        stub.inject(500, times=3)
        [a] = queue_generic(sqlite_engine, settings, 1, "backoff")
        wait_for_status(sqlite_engine, [a], "sent")
        key_a = next(r.idempotency_key for r in rows(sqlite_engine) if r.id == a)
        times = request_times(stub, key_a)
        gaps = [b - x for x, b in itertools.pairwise(times)]
        assert len(times) == 4 and len(stub.deliveries) == 1
        for gap, delay in zip(gaps, (0.05, 0.25, 1.25), strict=True):
            assert gap >= delay, gaps

        # 429 four times (more than the 3 retries): each waits retry-after, none is spent.
        stub.inject(429, times=4, headers={"retry-after": "1"})
        [b] = queue_generic(sqlite_engine, settings, 1, "limited")
        wait_for_status(sqlite_engine, [b], "sent", timeout=40)
        key_b = next(r.idempotency_key for r in rows(sqlite_engine) if r.id == b)
        times = request_times(stub, key_b)
        assert [r.status for r in stub.requests if r.idempotency_key == key_b] == [429] * 4 + [200]
        assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(times))

        # 422 and 403 fail at once: one request each, never retried.
        stub.inject(422, name="validation_error", message="Invalid `to` field.")
        [c] = queue_generic(sqlite_engine, settings, 1, "invalid")
        wait_for_status(sqlite_engine, [c], "failed")
        stub.inject(403, name="invalid_api_key", message="API key is invalid.")
        [d] = queue_generic(sqlite_engine, settings, 1, "forbidden")
        wait_for_status(sqlite_engine, [d], "failed")
        time.sleep(1.6)  # longer than the whole scaled retry schedule: a retry would show now
        by_id = {r.id: r for r in rows(sqlite_engine)}
        for row_id, reason in ((c, "422 validation_error"), (d, "403 invalid_api_key")):
            assert reason in by_id[row_id].last_error and by_id[row_id].attempts == 1
            assert len(request_times(stub, by_id[row_id].idempotency_key)) == 1
        assert "PermanentJobError" in worker.output()
        assert KEY not in worker.output()


def test_kill_9_with_100_emails_in_flight_then_restart_delivers_each_exactly_once(
    queue_backend, sqlite_engine, settings, tasks_module, spawn
):
    with ResendStubProcess(api_keys=[KEY]) as stub:
        env = resend_env(stub.url)
        stub.inject(delay=0.4, times=40)  # slow enough that jobs are really in flight
        ids = queue_generic(sqlite_engine, settings, 100)
        worker = spawn("worker", "-w", "8", env=env)
        wait_until(lambda: len(stub.pending_idempotency_keys()) >= 4
                   and len(stub.deliveries) >= 5, timeout=30, message="sends in flight")
        worker.kill9()
        in_flight = status_counts(sqlite_engine).get("sending", 0)
        assert in_flight >= 1, status_counts(sqlite_engine)  # jobs Huey will never run again

        spawn("worker", "-w", "8", env=env)

        def all_sent() -> bool:
            if status_counts(sqlite_engine).get("sent", 0) == 100:
                return True
            tasks_module.sweep_email_outbox()  # what the every-minute schedule does
            time.sleep(0.5)
            return False

        wait_until(all_sent, timeout=60, interval=0.2, message="all 100 emails sent")
        keys = {r.idempotency_key for r in rows(sqlite_engine)}
        per_key = Counter(d.idempotency_key for d in stub.deliveries)
        assert len(ids) == 100 and set(per_key) == keys
        assert set(per_key.values()) == {1}, [k for k, n in per_key.items() if n > 1]
        assert max(r.attempts for r in rows(sqlite_engine)) >= 2  # in-flight rows were re-sent
        # ...and the provider saw their key again and answered from its store, sending nothing
        assert sum(r.replayed for r in stub.requests) >= 1


RATE = 10
EMAILS = 150


def test_two_processes_of_four_threads_share_one_rate_limit(
    queue_backend, sqlite_engine, make_settings, settings, tasks_module, spawn
):
    """150 emails at 10 req/s (the 300 x 2 req/s case scaled to ~15 s)."""
    with ResendStubProcess(api_keys=[KEY], rate_limit=RATE) as stub:
        env = resend_env(stub.url, KOLAQ_EMAIL__RATE_LIMIT_PER_SECOND=str(RATE))
        ids = queue_generic(sqlite_engine, settings, EMAILS)
        spawn("worker", "-w", "4", env=env)
        spawn("worker", "-w", "4", "--no-periodic", env=env)
        wait_for_status(sqlite_engine, ids, "sent", timeout=90)

        requests = stub.requests
        statuses = Counter(r.status for r in requests)
        per_key = Counter(d.idempotency_key for d in stub.deliveries)
        assert len(per_key) == EMAILS and set(per_key.values()) == {1}
        assert stub.max_requests_in_any_second(include_rejected=False) <= RATE
        # Without the shared limiter 8 threads get most requests refused; with it, a 429 is
        # rare (scheduling jitter) and is retried, not failed.
        assert statuses[429] <= EMAILS * 0.05, statuses
        assert status_counts(sqlite_engine) == {"sent": EMAILS}
        limited = {r.idempotency_key for r in requests if r.status == 429}
        assert limited <= set(per_key)


def test_operator_retry_of_a_failed_send_sends_it_once_with_its_key(
    sqlite_engine, settings, tasks_module, spawn, kolaq_env
):
    """A send that failed for good (422) is in the job ledger; once the cause is fixed, the
    operator's `jobs retry` reopens the outbox row and the same idempotency key goes out."""
    from helpers import run_cli

    from kolaq_console.jobs.failed import JobFilter, list_failed

    with ResendStub(api_keys={KEY}) as stub:
        worker = spawn("worker", "-w", "2", env=resend_env(stub.url))
        worker.wait_for_output("tasks.send_email")
        stub.inject(422, name="validation_error", message="The `to` field is invalid.")
        [row_id] = queue_generic(sqlite_engine, settings, 1, "retry")
        wait_for_status(sqlite_engine, [row_id], "failed")

        def failed_entry():
            with Session(sqlite_engine) as session:
                page = list_failed(session, JobFilter(task="send_email"))
                return page[0] if page else None

        entry = wait_until(failed_entry, message="the failed send in the ledger")
        result = run_cli(kolaq_env, "jobs", "retry", str(entry.id), "--yes")
        assert result.returncode == 0, result.stderr
        wait_for_status(sqlite_engine, [row_id], "sent")
        key = next(r.idempotency_key for r in rows(sqlite_engine) if r.id == row_id)
        assert [d.idempotency_key for d in stub.deliveries] == [key]
        # A second retry of the same entry is refused: it is no longer open.
        again = run_cli(kolaq_env, "jobs", "retry", str(entry.id), "--yes")
        assert len(stub.deliveries) == 1, again.stdout
