"""A broadcast job's line of batches: several batches one after another in one job (each next
one claimed in the transaction that records the one before), every batch still recorded
before its request, and pause, cancel, consent withdrawn, 429s and a paced limiter honoured
between two batches of the same job."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from broadcast_fixtures import resend_stub  # noqa: F401
from broadcast_support import Workers, seed_customers, subscribers
from email_support import KEY, status_counts
from huey.exceptions import RetryTask
from sqlalchemy import select
from sqlmodel import Session

from kolaq_console import consent, dispatch
from kolaq_console.broadcasts import lifecycle, sending
from kolaq_console.emails.ratelimit import SqliteRateLimiter
from kolaq_console.emails.transports import ResendTransport
from kolaq_console.models import Broadcast, EmailBatch

PER_JOB = 3


class Hooked(ResendTransport):
    """The real transport, calling `before(request number)` before each batch request."""

    def __init__(self, url: str, before: Callable[[int], None] | None = None) -> None:
        super().__init__(KEY, url, timeout=5)
        self.before = before or (lambda n: None)
        self.requests = 0

    def send_batch(self, messages, idempotency_key):
        self.requests += 1
        self.before(self.requests)
        return super().send_batch(messages, idempotency_key)


@pytest.fixture(autouse=True)
def unhurried(monkeypatch):
    """A slow test machine must not end a line early (the time bound is not tested here)."""
    monkeypatch.setattr(sending, "LINE_SECONDS", 600.0)


@pytest.fixture
def calls():
    with dispatch.recording() as recorded:
        yield recorded


def submit(engine, settings, calls, n: int) -> Broadcast:
    """A broadcast to `n` subscribers, its send_broadcast job left out (the tests run the
    batch jobs themselves)."""
    seed_customers(engine, subscribers(n))
    with Session(engine, expire_on_commit=False) as s:
        b = lifecycle.submit(s, settings, actor="ops", subject="Harmattan cocktails",
                             body="# Three drinks", audience="subscribers").broadcast
    calls.clear()
    return b


def batches(engine) -> list[tuple[str, int]]:
    with Session(engine) as s:
        return [(b.status, b.attempts) for b in s.exec(select(EmailBatch)
                                                       .order_by(EmailBatch.id)).scalars()]


def line(engine, settings, b, transport, limiter=None, retries_left=None):
    email = settings.email.model_copy(update={"broadcast_batches_per_job": PER_JOB})
    retries = settings.queue.retries
    return sending.line_step(engine, settings.model_copy(update={"email": email}), b.id,
                             transport=transport, limiter=limiter, task_id="t-1",
                             worker_id="w-1", max_retries=retries,
                             retries_left=retries if retries_left is None else retries_left)


def test_a_job_sends_its_line_of_batches_each_recorded_before_its_request(
    engine, settings, stub, calls
):
    b = submit(engine, settings, calls, 1000)
    seen: list[list[tuple[str, int]]] = []
    transport = Hooked(stub.url, lambda n: seen.append(batches(engine)))
    done = line(engine, settings, b, transport)

    assert done.outcome == "sent" and len(stub.requests) == PER_JOB
    # At each request its batch was stored claimed (sending) and the one before it sent.
    assert seen == [[("sending", 1)], [("sent", 1), ("sending", 1)],
                    [("sent", 1), ("sent", 1), ("sending", 1)]]
    assert [c.task for c in calls] == ["send_broadcast_batch"]  # the next job carries on
    assert status_counts(engine) == {"sent": 300}

    workers = Workers(engine, settings, transport, calls, batches_per_job=PER_JOB)
    workers.run()
    assert Counter(d.to[0] for d in stub.deliveries) == Counter(subscribers(1000))
    assert len({r.idempotency_key for r in stub.requests}) == 10
    with Session(engine) as s:
        assert s.get(Broadcast, b.id).status == "done"


@pytest.mark.parametrize("action", ["pause", "cancel"])
def test_a_pause_or_cancel_during_a_request_ends_the_line_after_that_batch(
    engine, settings, stub, calls, action
):
    b = submit(engine, settings, calls, 1000)

    def stop(n: int) -> None:
        if n == 1:
            with Session(engine) as s:
                getattr(lifecycle, action)(s, b.id, actor="ops")

    line(engine, settings, b, Hooked(stub.url, stop))
    assert len(stub.requests) == 1 and status_counts(engine) == {"sent": 100}
    assert batches(engine) == [("sent", 1)]  # no further batch formed
    if action == "pause":
        with Session(engine) as s:
            lifecycle.resume(s, b.id, actor="ops")
        Workers(engine, settings, Hooked(stub.url), calls, batches_per_job=PER_JOB).run()
        assert Counter(d.to[0] for d in stub.deliveries) == Counter(subscribers(1000))


def test_consent_withdrawn_during_a_request_is_honoured_by_the_next_batch_of_the_line(
    engine, settings, stub, calls
):
    b = submit(engine, settings, calls, 150)
    people = subscribers(150)

    def withdraw(n: int) -> None:
        if n == 1:
            with Session(engine) as s:
                consent.unsubscribe(s, people[120], source="link")
                s.commit()

    line(engine, settings, b, Hooked(stub.url, withdraw))
    sent_to = [d.to[0] for d in stub.deliveries]
    assert len(sent_to) == 149 and people[120] not in sent_to
    with Session(engine) as s:
        done = s.get(Broadcast, b.id)
        assert (done.status, done.sent, done.skipped) == ("done", 149, 1)  # settled at its end


def test_a_429_on_a_later_batch_releases_it_and_keeps_those_before_it_sent(
    engine, settings, stub, calls
):
    b = submit(engine, settings, calls, 500)
    transport = Hooked(stub.url, lambda n: n == 2 and stub.inject(429, times=1,
                                                                  path="/emails/batch"))
    with pytest.raises(RetryTask):
        line(engine, settings, b, transport)
    assert batches(engine) == [("sent", 1), ("queued", 1)]
    refused = stub.requests[1]
    line(engine, settings, b, transport)  # Huey's retry of the job: that batch first
    assert stub.requests[2].idempotency_key == refused.idempotency_key
    Workers(engine, settings, transport, calls, batches_per_job=PER_JOB).run()
    assert Counter(d.to[0] for d in stub.deliveries) == Counter(subscribers(500))


def test_a_failure_claiming_the_next_batch_still_records_the_batch_that_was_sent(
    engine, settings, stub, calls, monkeypatch
):
    b = submit(engine, settings, calls, 500)
    real, claims = sending._claim_next, []

    def second_fails(*args, **kwargs):
        claims.append(1)
        if len(claims) > 1:  # the claim made in the first batch's recording transaction
            raise RuntimeError("database gone")
        return real(*args, **kwargs)

    monkeypatch.setattr(sending, "_claim_next", second_fails)
    with pytest.raises(RuntimeError):
        line(engine, settings, b, Hooked(stub.url))
    assert batches(engine) == [("sent", 1)] and status_counts(engine) == {"sent": 100}


def test_a_paced_limiter_or_a_block_sends_one_batch_a_job(engine, settings, stub, calls):
    b = submit(engine, settings, calls, 1000)
    paced = SqliteRateLimiter(settings.queue.sqlite_path, settings.queue.name, 1000)
    line(engine, settings, b, Hooked(stub.url), paced)
    assert len(stub.requests) == 1 and [c.task for c in calls] == ["send_broadcast_batch"]

    unpaced = SqliteRateLimiter(settings.queue.sqlite_path, settings.queue.name, 0)
    line(engine, settings, b, Hooked(stub.url), unpaced)
    assert len(stub.requests) == 1 + PER_JOB
    unpaced.block(0.5, "rate limited by the provider (429)")
    line(engine, settings, b, Hooked(stub.url), unpaced)  # waits out the block, then stops
    assert len(stub.requests) == 2 + PER_JOB


def test_a_job_that_spent_a_retry_sends_one_batch_and_hands_the_rest_to_a_fresh_job(
    engine, settings, stub, calls
):
    """A later batch of a line gets every retry (its own attempts); a job already retried has
    fewer, so it must not carry a line: it could fail for good with that batch left queued."""
    assert settings.queue.retries >= 1
    b = submit(engine, settings, calls, 1000)
    done = line(engine, settings, b, Hooked(stub.url), retries_left=settings.queue.retries - 1)
    assert done.outcome == "sent" and len(stub.requests) == 1
    assert batches(engine) == [("sent", 1)]
    assert [c.task for c in calls] == ["send_broadcast_batch"]  # a fresh job carries on


def test_a_batch_whose_limiter_cannot_be_read_goes_back_at_once(engine, settings, stub, calls):
    """The limiter lives in the queue's store; when it cannot be read the claimed batch is
    handed back (queued, due now) for the job's retry instead of waiting out its lease."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from kolaq_console.emails.ratelimit import RedisRateLimiter

    b = submit(engine, settings, calls, 1000)
    # nothing listens on port 1; the client fails at once (redis-py's own default is ten
    # retries with back-off, ~4 s of waiting before the same ConnectionError)
    gone = RedisRateLimiter(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2,
                                        retry=Retry(NoBackoff(), 0)), settings.queue.name, 0)
    with pytest.raises(redis.ConnectionError):
        line(engine, settings, b, Hooked(stub.url), gone)
    assert batches(engine) == [("queued", 1)] and stub.requests == []
    with Session(engine) as s:
        assert "rate limiter unavailable" in s.exec(select(EmailBatch)).scalar_one().last_error
    line(engine, settings, b, Hooked(stub.url))  # the retry: the same batch, sent
    assert batches(engine)[0] == ("sent", 2)
