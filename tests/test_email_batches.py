"""The batch path against the strict stand-in: rows that wait together go out together (up to 100
per request, permissive, one key per batch), a refused member fails alone, a retried batch
resends the same members under the same key, and the rate limiter counts requests."""

from __future__ import annotations

import pytest
from email_support import KEY, row, rows, status_counts
from huey.exceptions import RetryTask
from sqlalchemy import update
from sqlmodel import Session, select
from stubs.resend_api import ResendStub

from kolaq_console import consent, dispatch
from kolaq_console.emails import EmailRequest, outbox
from kolaq_console.emails.batches import reopen_failed
from kolaq_console.emails.delivery import deliver, deliver_batch
from kolaq_console.emails.ratelimit import SqliteRateLimiter
from kolaq_console.emails.transports import ResendTransport, TransientError
from kolaq_console.models import EmailBatch, EmailOutbox, utcnow


@pytest.fixture
def stub():
    with ResendStub(api_keys={KEY}) as server:
        yield server


@pytest.fixture
def transport(stub):
    return ResendTransport(KEY, stub.url, timeout=5)


@pytest.fixture
def jobs():
    """The send jobs enqueued, in order, as (task name, argument)."""
    with dispatch.recording() as calls:
        yield calls


def add(engine, settings, addresses, commit_each=False) -> list[int]:
    with Session(engine, expire_on_commit=False) as session:
        ids = [outbox.add(session, settings, EmailRequest(
            "generic", to=a, subject="Order news", body=f"Hello {a}"), commit=False).row.id
            for a in addresses]
        session.commit()
    return ids


def run_jobs(engine, settings, transport, row_ids, limiter=None) -> list[str]:
    """What the workers do with one send job per row, in queue order."""
    return [deliver(engine, settings, i, transport=transport, limiter=limiter,
                    retries_left=3, retry_delay=0.05).outcome for i in row_ids]


def addresses(n, prefix="c"):
    return [f"{prefix}{i}@example.com" for i in range(n)]


def test_250_waiting_emails_go_in_3_requests_of_100_100_50_each_batch_under_its_own_key(
    engine, settings, stub, transport
):
    ids = add(engine, settings, addresses(250))
    outcomes = run_jobs(engine, settings, transport, ids)

    assert outcomes.count("sent") == 3 and outcomes.count("skipped") == 247
    assert [(r.path, r.emails, r.validation) for r in stub.requests] == [
        ("/emails/batch", 100, "permissive")] * 2 + [("/emails/batch", 50, "permissive")]
    assert status_counts(engine) == {"sent": 250}
    by_id = {d.id: d for d in stub.deliveries}
    stored = rows(engine)
    assert sorted(d.to[0] for d in stub.deliveries) == sorted(addresses(250))  # once each
    for r in stored:  # each row holds the provider's id of its own copy, sent with its id
        assert by_id[r.provider_message_id].to == [r.to_address]
        assert by_id[r.provider_message_id].payload["tags"] == [
            {"name": "kolaq_outbox_id", "value": str(r.id)}] and r.provider_tagged
    with Session(engine) as s:
        batches = s.exec(select(EmailBatch).order_by(EmailBatch.id)).all()
    assert [(b.size, b.sent, b.status) for b in batches] == [
        (100, 100, "sent"), (100, 100, "sent"), (50, 50, "sent")]
    keys = [b.idempotency_key for b in batches]
    assert len(set(keys)) == 3 and [r.idempotency_key for r in stub.requests] == keys


def test_a_single_waiting_email_goes_alone_at_once_under_its_own_key(
    engine, settings, stub, transport
):
    [only] = add(engine, settings, ["ada@example.com"])
    assert run_jobs(engine, settings, transport, [only]) == ["sent"]
    [request] = stub.requests
    assert (request.path, request.idempotency_key) == ("/emails", row(engine, only).idempotency_key)


def test_one_address_the_provider_refuses_fails_alone_with_its_reason(
    engine, settings, stub, transport
):
    mail = [*addresses(249), "josé@example.com"]  # valid to us, refused by the provider
    ids = add(engine, settings, [*mail[:120], mail[-1], *mail[120:-1]])
    run_jobs(engine, settings, transport, ids)

    assert status_counts(engine) == {"sent": 249, "failed": 1}
    [bad] = [r for r in rows(engine) if r.status == "failed"]
    assert bad.to_address == "josé@example.com" and "Invalid `to` field" in bad.last_error
    assert bad.batch_id is None  # it left its batch: the provider never accepted it
    assert len(stub.requests) == 3 and len(stub.deliveries) == 249
    # an operator's retry sends it alone, under its own key (refused again here)
    with Session(engine) as s:
        assert reopen_failed(s.connection(), bad.id, 60)
        s.commit()
    with pytest.raises(Exception, match="422"):
        run_jobs(engine, settings, transport, [bad.id])
    assert stub.requests[-1].idempotency_key == bad.idempotency_key


def test_a_failed_batch_is_retried_with_the_same_members_under_the_same_key(
    engine, settings, stub, transport
):
    ids = add(engine, settings, addresses(30))
    stub.inject(drop=True, after_processing=True, path="/emails/batch")  # sent, answer lost
    with pytest.raises(TransientError):  # the last row's job forms the batch (any row may)
        run_jobs(engine, settings, transport, ids[-1:])
    assert status_counts(engine) == {"queued": 30}
    # more mail arrives meanwhile: it is not added to the batch being retried
    late = add(engine, settings, addresses(5, "late"))
    with Session(engine, expire_on_commit=False) as s:
        batch = s.exec(select(EmailBatch)).one()
        s.execute(update(EmailBatch).values(next_attempt_at=utcnow()))  # the retry is due
        s.execute(update(EmailOutbox).where(EmailOutbox.batch_id == batch.id)
                  .values(next_attempt_at=utcnow()))
        s.commit()
    assert run_jobs(engine, settings, transport, ids[-1:]) == ["sent"]  # Huey's retry of the job
    first, again = stub.requests[0], stub.requests[1]
    assert first.idempotency_key == again.idempotency_key == batch.idempotency_key
    assert again.replayed and again.emails == 30  # same members: answered from the store
    assert len(stub.deliveries) == 30 and {r.attempts for r in rows(engine)[:30]} == {2}
    run_jobs(engine, settings, transport, late)
    assert status_counts(engine) == {"sent": 35} and len(stub.deliveries) == 35


def test_the_shared_rate_limiter_counts_requests_not_emails(engine, settings, stub, transport):
    class Counting(SqliteRateLimiter):
        acquired = 0

        def acquire(self, max_block_wait):
            Counting.acquired += 1
            return super().acquire(max_block_wait)

    limiter = Counting(settings.queue.sqlite_path, settings.queue.name, 1000)
    ids = add(engine, settings, addresses(250))
    run_jobs(engine, settings, transport, ids, limiter)
    assert Counting.acquired == 3 == len(stub.requests)


def test_a_429_puts_the_whole_batch_back_without_spending_a_retry(
    engine, settings, stub, transport
):
    ids = add(engine, settings, addresses(10))
    stub.inject(429, headers={"retry-after": "3"})
    with pytest.raises(RetryTask) as info:
        run_jobs(engine, settings, transport, ids[:1])
    assert info.value.delay == 3.0
    assert status_counts(engine) == {"queued": 10}
    assert {r.batch_id for r in rows(engine)} == {rows(engine)[0].batch_id}  # membership kept
    assert run_jobs(engine, settings, transport, ids[1:]) == ["skipped"] * 9  # not due yet


def test_suppressed_addresses_are_taken_out_before_the_call(engine, settings, stub, transport):
    ids = add(engine, settings, ["ok@example.com", "gone@example.com", "fine@example.com"])
    with Session(engine) as s:
        consent.suppress(s, "gone@example.com", "bounced", source="test")
        consent.unsubscribe(s, "fine@example.com", source="test")  # transactional: still sent
        s.commit()
    run_jobs(engine, settings, transport, ids)
    by_to = {r.to_address: r for r in rows(engine)}
    assert by_to["gone@example.com"].status == "cancelled"
    assert "suppressed (bounced)" in by_to["gone@example.com"].last_error
    assert sorted(d.to[0] for d in stub.deliveries) == ["fine@example.com", "ok@example.com"]


def test_a_batch_formed_ahead_is_sent_by_its_own_job_and_skipped_once_sent(
    engine, settings, stub, transport
):
    ids = add(engine, settings, addresses(3))
    assert run_jobs(engine, settings, transport, ids[:1]) == ["sent"]
    batch_id = row(engine, ids[0]).batch_id
    again = deliver_batch(engine, settings, batch_id, transport=transport, limiter=None)
    assert again.outcome == "skipped" and len(stub.requests) == 1
