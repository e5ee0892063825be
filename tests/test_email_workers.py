"""Real worker processes against the Resend stand-in: the backoff schedule, 429s that spend no
retry, permanent failures that are not retried, kill -9 with batches in flight, and a burst
sent in a handful of requests by two processes sharing one rate limit."""

from __future__ import annotations

import itertools
import time
from collections import Counter

import pytest
from email_support import KEY, provider_done, rows, status_counts
from helpers import wait_until
from sqlmodel import Session
from stubs.resend_api import ResendStub, ResendStubProcess

from kolaq_console.emails import EmailRequest, outbox

pytestmark = pytest.mark.slow


def resend_env(url: str, **extra: str) -> dict[str, str]:
    return {"KOLAQ_EMAIL__TRANSPORT": "resend", "RESEND_API_URL": url, "RESEND_API_KEY": KEY,
            "KOLAQ_SHOP__PUBLIC_URL": "https://shop.test",  # workers refuse a local address
            **extra}


def queue_generic(engine, settings, n: int, prefix: str = "c") -> list[int]:
    with Session(engine, expire_on_commit=False) as session:
        return [outbox.add(session, settings,
                           EmailRequest("generic", to=f"{prefix}{i}@example.com",
                                        subject=f"Note {i}", body=f"Hello {i}")).row.id
                for i in range(n)]


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
        # (0.4 s: short, yet longer than the first two retry delays a spent retry would wait.)
        stub.inject(429, times=4, headers={"retry-after": "0.4"})
        [b] = queue_generic(sqlite_engine, settings, 1, "limited")
        wait_for_status(sqlite_engine, [b], "sent", timeout=40)
        key_b = next(r.idempotency_key for r in rows(sqlite_engine) if r.id == b)
        times = request_times(stub, key_b)
        assert [r.status for r in stub.requests if r.idempotency_key == key_b] == [429] * 4 + [200]
        assert all(later - earlier >= 0.4 for earlier, later in itertools.pairwise(times))

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


def test_kill_9_with_batches_in_flight_then_restart_delivers_each_email_exactly_once(
    queue_backend, sqlite_engine, settings, tasks_module, spawn
):
    """250 emails wait: three batches go out at once, the first answered soon, the others held
    until released; the worker is killed with one batch delivered and others in flight, the
    provider finishes them, and the worker is restarted."""
    with ResendStubProcess(api_keys=[KEY]) as stub:
        env = resend_env(stub.url)
        stub.inject(delay=0.3, times=1, path="/emails/batch")
        stub.inject(delay=60, times=2, path="/emails/batch")
        ids = queue_generic(sqlite_engine, settings, 250)
        worker = spawn("worker", "-w", "4", env=env)
        wait_until(lambda: len(stub.pending_idempotency_keys()) >= 1
                   and len(stub.deliveries) >= 100, timeout=30, message="batches in flight")
        worker.kill9()
        assert status_counts(sqlite_engine).get("sending", 0) >= 100  # Huey will not resume
        provider_done(stub)

        spawn("worker", "-w", "4", env=env)

        def all_sent() -> bool:
            if status_counts(sqlite_engine).get("sent", 0) == 250:
                return True
            tasks_module.sweep_email_outbox()  # what the every-minute schedule does
            time.sleep(0.5)
            return False

        wait_until(all_sent, timeout=60, interval=0.2, message="all 250 emails sent")
        per_address = Counter(d.to[0] for d in stub.deliveries)
        assert len(ids) == 250 and len(per_address) == 250
        assert set(per_address.values()) == {1}, [a for a, n in per_address.items() if n > 1]
        assert max(r.attempts for r in rows(sqlite_engine)) >= 2  # in-flight batches re-sent
        # ...under their batch's key, which the provider answered from its store
        assert sum(r.replayed for r in stub.requests) >= 1
        assert max(r.emails for r in stub.requests) == 100


EMAILS = 300


def test_a_burst_of_300_transactional_emails_at_2_requests_a_second_goes_in_a_handful(
    queue_backend, sqlite_engine, settings, tasks_module, spawn
):
    """The sale case: 300 order emails arrive at once; two worker processes of four threads
    share the provider's 2 requests/s."""
    with ResendStubProcess(api_keys=[KEY], rate_limit=2) as stub:
        env = resend_env(stub.url, KOLAQ_EMAIL__RATE_LIMIT_PER_SECOND="2")
        spawn("worker", "-w", "4", env=env).wait_for_output("tasks.send_email")
        spawn("worker", "-w", "4", "--no-periodic", env=env)
        with Session(sqlite_engine, expire_on_commit=False) as session:
            ids = [outbox.add(session, settings, EmailRequest(
                "generic", to=f"buyer{i}@example.com", subject="Your order",
                body=f"Order {i}"), commit=False).row.id for i in range(EMAILS)]
            session.commit()
        for row_id in ids:
            outbox.enqueue_send(row_id)
        wait_for_status(sqlite_engine, ids, "sent", timeout=90)

        requests = [r for r in stub.requests if r.status == 200]
        per_address = Counter(d.to[0] for d in stub.deliveries)
        assert len(per_address) == EMAILS and set(per_address.values()) == {1}
        assert len(requests) <= 5, [r.emails for r in requests]  # 100/100/100 when undisturbed
        assert stub.max_requests_in_any_second(include_rejected=False) <= 2
        assert status_counts(sqlite_engine) == {"sent": EMAILS}


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
