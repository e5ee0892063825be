"""Delivery through the real `resend` SDK against the strict stand-in: every failure class is
handled as the provider means it, the key travels on every attempt, secrets stay out."""

from __future__ import annotations

import email
import logging
from datetime import timedelta

import pytest
from email_support import KEY, row, seed_order
from huey.exceptions import RetryTask
from sqlalchemy import update
from sqlmodel import Session
from stubs.resend_api import ResendStub

from kolaq_console.emails import EmailRequest, outbox
from kolaq_console.emails.delivery import deliver
from kolaq_console.emails.ratelimit import SqliteRateLimiter
from kolaq_console.emails.transports import (
    DevTransport,
    Message,
    ResendTransport,
    TransientError,
)
from kolaq_console.errors import KolaqError, PermanentJobError
from kolaq_console.models import EmailBatch, EmailOutbox, utcnow


@pytest.fixture
def stub():
    with ResendStub(api_keys={KEY}) as server:
        yield server


@pytest.fixture
def transport(stub):
    return ResendTransport(KEY, stub.url, timeout=5)


@pytest.fixture
def limiter(settings):
    return SqliteRateLimiter(settings.queue.sqlite_path, settings.queue.name, 1000)


@pytest.fixture(autouse=True)
def no_queue(monkeypatch):
    monkeypatch.setattr(outbox, "enqueue_send", lambda row_id, **_: None)


def queued(engine, settings, to="ada@example.com", **kwargs) -> int:
    with Session(engine, expire_on_commit=False) as session:
        request = EmailRequest("generic", to=to, subject=kwargs.pop("subject", "Hello"),
                               body=kwargs.pop("body", "Body"), **kwargs)
        return outbox.add(session, settings, request).row.id


def send(engine, settings, row_id, transport, limiter=None, retries_left=3, retry_delay=0.05):
    return deliver(engine, settings, row_id, transport=transport, limiter=limiter,
                   retries_left=retries_left, retry_delay=retry_delay, task_id="task-1").outcome


def make_due(engine, row_id):
    """As if the retry's delay had passed (for the row and the batch it is retried with)."""
    past = utcnow() - timedelta(seconds=1)
    with Session(engine) as s:
        s.execute(update(EmailOutbox).where(EmailOutbox.id == row_id)
                  .values(next_attempt_at=past))
        batch_id = s.get(EmailOutbox, row_id).batch_id
        s.execute(update(EmailBatch).where(EmailBatch.id == batch_id)
                  .values(next_attempt_at=past))
        s.commit()


def test_a_row_made_before_tags_is_sent_without_one_as_it_first_was(
    engine, settings, stub, transport, limiter
):
    """Rows migration 0018 found (provider_tagged NULL) may have been tried already under
    their key: the same request again (no tag, requests' own JSON), found by provider id."""
    from kolaq_console.emails.http_client import carries_outbox_tags

    seed_order(engine, "KB-1001")
    with Session(engine, expire_on_commit=False) as session:
        request = EmailRequest("order_confirmation", order_number="KB-1001")
        row_id = outbox.add(session, settings, request).row.id
        session.execute(update(EmailOutbox).where(EmailOutbox.id == row_id)
                        .values(provider_tagged=None))
        session.commit()
    assert send(engine, settings, row_id, transport, limiter) == "sent"
    [delivery] = stub.deliveries
    assert "tags" not in delivery.payload and row(engine, row_id).provider_tagged is None
    tag = {"tags": [{"name": "kolaq_outbox_id", "value": "1"}]}
    assert not carries_outbox_tags(delivery.payload)
    assert not carries_outbox_tags([{**delivery.payload, **tag}, delivery.payload])
    assert carries_outbox_tags([{**delivery.payload, **tag}] * 2)


def test_sent_through_the_sdk_with_the_rows_key_and_the_provider_id_recorded(
    engine, settings, stub, transport, limiter
):
    seed_order(engine, "KB-1001")
    with Session(engine, expire_on_commit=False) as session:
        request = EmailRequest("order_confirmation", order_number="KB-1001")
        row_id = outbox.add(session, settings, request).row.id
    assert send(engine, settings, row_id, transport, limiter) == "sent"
    [delivery] = stub.deliveries
    stored = row(engine, row_id)
    assert stored.status == "sent" and stored.attempts == 1 and stored.sent_at is not None
    assert stored.provider_message_id == delivery.id and stored.task_id == "task-1"
    assert delivery.payload["tags"] == [{"name": "kolaq_outbox_id", "value": str(row_id)}]
    assert stored.provider_tagged  # its webhooks find it by that tag
    assert delivery.idempotency_key == "order_confirmation/KB-1001"
    assert delivery.payload["from"] == settings.email.from_address
    assert delivery.payload["to"] == ["ada@example.com"]
    assert delivery.payload["reply_to"] == settings.email.support_email
    assert delivery.payload["html"] == stored.html and delivery.payload["text"] == stored.text
    assert "authorization" not in delivery.headers
    # sent means sent: another job for the same row does nothing
    assert send(engine, settings, row_id, transport, limiter) == "skipped"
    assert len(stub.requests) == 1


@pytest.mark.parametrize("status, name", [(401, "missing_api_key"), (403, "invalid_api_key")])
def test_auth_errors_fail_at_once_with_the_providers_reason(
    sqlite_engine, settings, stub, transport, status, name
):
    row_id = queued(sqlite_engine, settings)
    stub.inject(status, name=name, message="API key is invalid.")
    with pytest.raises(PermanentJobError, match=name):
        send(sqlite_engine, settings, row_id, transport)
    stored = row(sqlite_engine, row_id)
    assert stored.status == "failed" and name in stored.last_error
    assert len(stub.requests) == 1 and stub.deliveries == []


def test_a_key_the_provider_does_not_know_is_403_and_not_retried(sqlite_engine, settings, stub):
    row_id = queued(sqlite_engine, settings)
    with pytest.raises(PermanentJobError, match="403 invalid_api_key"):
        send(sqlite_engine, settings, row_id, ResendTransport("other-key-not-real", stub.url))
    assert row(sqlite_engine, row_id).status == "failed"


def test_the_resend_transport_refuses_to_start_without_a_key():
    with pytest.raises(KolaqError, match="RESEND_API_KEY"):
        ResendTransport("", "http://127.0.0.1:9")


@pytest.mark.parametrize(
    "change, error_name",
    [({"to_address": "not an address"}, "validation_error"),
     ({"subject": ""}, "missing_required_field")],
)
def test_422_for_bad_addresses_and_missing_fields_fails_at_once(
    sqlite_engine, settings, stub, transport, change, error_name
):
    row_id = queued(sqlite_engine, settings)
    with Session(sqlite_engine) as s:  # as if the row had been damaged after validation
        s.execute(update(EmailOutbox).where(EmailOutbox.id == row_id).values(**change))
        s.commit()
    with pytest.raises(PermanentJobError, match=f"422 {error_name}"):
        send(sqlite_engine, settings, row_id, transport)
    assert row(sqlite_engine, row_id).status == "failed"
    assert [r.status for r in stub.requests] == [422]


def test_same_key_with_a_changed_body_is_409_and_permanent(sqlite_engine, settings, stub,
                                                             transport):
    row_id = queued(sqlite_engine, settings)
    send(sqlite_engine, settings, row_id, transport)
    with Session(sqlite_engine) as s:
        s.execute(update(EmailOutbox).where(EmailOutbox.id == row_id)
                  .values(status="queued", batch_id=None, html="<p>changed</p>"))
        s.commit()
    with pytest.raises(PermanentJobError, match="409 invalid_idempotent_request"):
        send(sqlite_engine, settings, row_id, transport)
    assert row(sqlite_engine, row_id).status == "failed" and len(stub.deliveries) == 1


def test_409_concurrent_request_is_transient(sqlite_engine, settings, stub, transport):
    row_id = queued(sqlite_engine, settings)
    stub.inject(409, name="concurrent_idempotent_requests")
    with pytest.raises(TransientError, match="concurrent_idempotent_requests"):
        send(sqlite_engine, settings, row_id, transport)
    stored = row(sqlite_engine, row_id)
    assert stored.status == "queued" and stored.next_attempt_at is not None
    make_due(sqlite_engine, row_id)
    assert send(sqlite_engine, settings, row_id, transport) == "sent"


@pytest.mark.parametrize("fault", [{"status": 500}, {"status": 503}, {"drop": True}])
def test_5xx_and_dropped_connections_retry_and_fail_when_retries_run_out(
    engine, settings, stub, transport, fault
):
    row_id = queued(engine, settings)
    stub.inject(times=2, **fault)
    before = utcnow()
    with pytest.raises(TransientError):
        send(engine, settings, row_id, transport, retries_left=1, retry_delay=30)
    stored = row(engine, row_id)
    assert stored.status == "queued" and stored.last_error
    assert stored.next_attempt_at >= before + timedelta(seconds=29)  # the backoff is recorded
    assert stored.lease_until > stored.next_attempt_at  # the sweeper leaves it alone meanwhile
    make_due(engine, row_id)
    with pytest.raises(TransientError):
        send(engine, settings, row_id, transport, retries_left=0)
    stored = row(engine, row_id)
    assert stored.status == "failed" and "retries exhausted" in stored.last_error
    assert stored.attempts == 2 and stub.deliveries == []


def test_a_response_lost_after_sending_is_replayed_by_the_retry_not_sent_twice(
    engine, settings, stub, transport
):
    row_id = queued(engine, settings)
    stub.inject(drop=True, after_processing=True)
    with pytest.raises(TransientError, match="network"):
        send(engine, settings, row_id, transport)
    make_due(engine, row_id)
    assert send(engine, settings, row_id, transport) == "sent"
    [delivery] = stub.deliveries
    assert row(engine, row_id).provider_message_id == delivery.id
    assert [r.replayed for r in stub.requests] == [False, True]


def test_the_resend_transport_follows_the_environments_proxy_settings(stub, monkeypatch):
    import socket

    with socket.socket() as closed:  # a port nothing listens on: the "proxy"
        closed.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    message = Message("Kolaq <orders@kolaq.test>", "ada@example.com", "Hi", "<p>Hi</p>", "Hi",
                      "proxy-test")
    with pytest.raises(TransientError, match="network"):
        ResendTransport(KEY, stub.url, timeout=5).send(message)  # through the dead proxy
    assert stub.requests == []
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert ResendTransport(KEY, stub.url, timeout=5).send(message).provider_message_id


def test_429_retries_after_retry_after_without_spending_a_retry(
    sqlite_engine, settings, stub, transport, limiter
):
    row_id = queued(sqlite_engine, settings)
    stub.inject(429, headers={"retry-after": "7"})
    with pytest.raises(RetryTask) as info:
        send(sqlite_engine, settings, row_id, transport, limiter, retries_left=0)
    assert info.value.delay == 7.0
    stored = row(sqlite_engine, row_id)
    assert stored.status == "queued" and "429" in stored.last_error  # not failed: no retry spent
    assert 6 < (stored.next_attempt_at - utcnow()).total_seconds() <= 7
    assert 6 < limiter.state()["blocked_for"] <= 7  # every worker now waits too


def test_exhausted_daily_quota_defers_until_reset_and_stops_every_worker(
    sqlite_engine, settings, stub, transport, limiter
):
    first = queued(sqlite_engine, settings)
    stub.set_daily_quota(0)
    with pytest.raises(RetryTask) as info:
        send(sqlite_engine, settings, first, transport, limiter)
    now = utcnow()
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert abs(info.value.delay - (midnight - now).total_seconds()) < 5
    assert "daily_quota_exceeded" in row(sqlite_engine, first).last_error
    second = queued(sqlite_engine, settings, to="b@x.com")
    with pytest.raises(RetryTask):  # deferred without asking the provider again
        send(sqlite_engine, settings, second, transport, limiter)
    assert len(stub.requests) == 1
    assert row(sqlite_engine, second).status == "queued"


def test_provider_ratelimit_headers_lower_the_shared_rate(sqlite_engine, settings, transport,
                                                           stub, limiter):
    stub.set_rate_limit(2)
    send(sqlite_engine, settings, queued(sqlite_engine, settings), transport, limiter)
    assert limiter.state()["interval"] == pytest.approx(1.05 / 2)


def test_secrets_never_reach_the_row_or_the_logs(sqlite_engine, settings, stub, transport,
                                                  monkeypatch, caplog):
    monkeypatch.setenv("RESEND_API_KEY", KEY)
    row_id = queued(sqlite_engine, settings)
    stub.inject(500, message=f"upstream rejected Authorization: Bearer {KEY}")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TransientError) as info:
        send(sqlite_engine, settings, row_id, transport)
    assert KEY not in str(info.value)
    assert KEY not in row(sqlite_engine, row_id).last_error
    assert KEY not in caplog.text and "[REDACTED]" in caplog.text


def test_batch_endpoint_sends_up_to_100_permissively_under_one_key_and_replays(stub, transport):
    messages = [Message("Kolaq <orders@kolaq.example>", f"c{i}@example.com", "News", "<p>x</p>",
                        "x", f"k{i}") for i in range(3)]
    messages[1] = Message("Kolaq <orders@kolaq.example>", "josé@example.com", "News",
                          "<p>x</p>", "x", "k1")  # valid to us, refused by the provider
    first = transport.send_batch(messages, "batch/1")
    again = transport.send_batch(messages, "batch/1")
    assert first == again and sorted(first.accepted) == [0, 2]
    assert list(first.refused) == [1] and "`to`" in first.refused[1]
    assert len(stub.deliveries) == 2 and {d.endpoint for d in stub.deliveries} == {"/emails/batch"}
    assert {r.validation for r in stub.requests} == {"permissive"}
    assert {d.idempotency_key for d in stub.deliveries} == {"batch/1"}
    with pytest.raises(ValueError):
        transport.send_batch(messages * 34, "too-many")


def test_dev_transport_writes_one_eml_per_key_with_both_parts(sqlite_engine, settings, caplog):
    caplog.set_level(logging.INFO)
    row_id = queued(sqlite_engine, settings, subject="Hi <there>", body="Plain & simple")
    dev = DevTransport(settings.email.outbox_dir)
    assert send(sqlite_engine, settings, row_id, dev) == "sent"
    with Session(sqlite_engine) as s:  # sent again (e.g. a re-run): same file, not a second one
        s.execute(update(EmailOutbox).where(EmailOutbox.id == row_id)
                  .values(status="queued", batch_id=None))
        s.commit()
    send(sqlite_engine, settings, row_id, dev)
    [path] = list(__import__("pathlib").Path(settings.email.outbox_dir).glob("*.eml"))
    message = email.message_from_bytes(path.read_bytes())
    stored = row(sqlite_engine, row_id)
    assert message["To"] == "ada@example.com" and message["Subject"] == "Hi <there>"
    assert message["X-Kolaq-Idempotency-Key"] == stored.idempotency_key
    assert [p.get_content_type() for p in message.walk()] == [
        "multipart/alternative", "text/plain", "text/html"]
    assert "Plain &amp; simple" in message.get_payload()[1].get_payload(decode=True).decode()
    assert stored.provider_message_id.startswith("dev-")
    assert sum("dev transport: wrote" in r.getMessage() for r in caplog.records) == 2
