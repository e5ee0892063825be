"""The outbox on both databases: one row per logical email, nothing written on bad input, atomic
claims, an operator's explicit resend, and the sweeper that finds rows whose job was lost."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from email_support import activity, count, row, rows, seed_order
from sqlalchemy import update
from sqlmodel import Session, col

from kolaq_console import dispatch
from kolaq_console.emails import EmailRequest, outbox
from kolaq_console.emails.batches import Claimed, claim_for_row, finish
from kolaq_console.errors import NotFound, UserError
from kolaq_console.models import ActivityLog, EmailOutbox, utcnow
from kolaq_console.status import outbox_counts


@pytest.fixture
def enqueued():
    """Row ids handed to the queue as send_email jobs (the queue itself is exercised by the
    worker tests); send_email_batch jobs are recorded as ("batch", id)."""
    ids: list = []

    def record(call):
        ids.append(call.args[0] if call.task == "send_email" else ("batch", call.args[0]))

    with dispatch.recording(record):
        yield ids


def queue(engine, settings, kind="generic", **kwargs):
    kwargs.setdefault("to", "ada@example.com")
    kwargs.setdefault("subject", "Hello")
    kwargs.setdefault("body", "Body")
    if kind != "generic":
        for name in ("to", "subject", "body"):
            if kwargs[name] in ("ada@example.com", "Hello", "Body"):
                kwargs.pop(name)
    with Session(engine, expire_on_commit=False) as session:
        return outbox.add(session, settings, EmailRequest(kind, **kwargs))


def claim(engine, row_id, lease, task_id=None, now=None):
    """The row's send job's claim; the claimed row (attempts, key) or None."""
    claimed = claim_for_row(engine, row_id, lease, task_id, now)
    return claimed.members[0] if claimed else None


def mark_sent(engine, row_id, provider_id):
    """What the provider's acceptance does to the row (through its batch)."""
    with Session(engine) as s:
        batch_id = s.get(EmailOutbox, row_id).batch_id
    finish(engine, Claimed(batch_id, "", 1, None, ()), {row_id: provider_id}, {})


def test_queueing_stores_the_rendered_row_commits_then_enqueues_only_its_id(
    engine, settings, enqueued
):
    seed_order(engine, "KB-1001")
    result = queue(engine, settings, "order_confirmation", order_number="KB-1001")
    assert result.created
    stored = row(engine, result.row.id)
    assert stored.status == "queued" and stored.attempts == 0
    assert stored.kind == "order_confirmation" and stored.to_address == "ada@example.com"
    assert stored.idempotency_key == "order_confirmation/KB-1001"
    assert "KB-1001" in stored.subject and "₦32,000.00" in stored.html and stored.text
    assert stored.headers["From"] == settings.email.from_address
    assert stored.lease_until is not None and stored.lease_until > utcnow()
    assert enqueued == [stored.id]


def test_the_same_logical_email_queued_twice_is_one_row_and_one_job(engine, settings, enqueued):
    seed_order(engine, "KB-1001")
    first = queue(engine, settings, "order_confirmation", order_number="KB-1001")
    second = queue(engine, settings, "order_confirmation", order_number="KB-1001")
    assert not second.created and second.row.id == first.row.id
    assert count(engine) == 1 and enqueued == [first.row.id]
    g1 = queue(engine, settings, to="b@example.com", subject="S", body="B")
    g2 = queue(engine, settings, to="b@example.com", subject="S", body="B")
    g3 = queue(engine, settings, to="b@example.com", subject="S", body="other")
    assert g2.row.id == g1.row.id and g3.row.id != g1.row.id


@pytest.mark.parametrize(
    "kind, kwargs, message",
    [
        ("generic", {"to": "not-an-address"}, "invalid recipient address"),
        ("generic", {"to": "a@b@example.com"}, "invalid recipient address"),
        ("generic", {"to": ""}, "address is missing"),
        ("order_confirmation", {"order_number": "KB-404"}, "order 'KB-404' not found"),
        ("order_confirmation", {"order_number": "KB-1001", "to": "x@"}, "invalid recipient"),
        ("generic", {"subject": ""}, "needs a subject"),
        ("broadcast", {"to": "a@example.com", "subject": "S", "body": " ",
                       "context": {"test": True}}, "needs a subject"),
        ("broadcast", {"to": "a@example.com", "subject": "S", "body": "B"}, "broadcast send"),
        ("low_stock", {"context": {"products": []}}, "non-empty list"),
        ("sms", {}, "unknown email kind"),
        ("generic", {"idempotency_key": "k" * 300}, "idempotency key"),
    ],
)
def test_bad_input_is_refused_with_a_reason_and_writes_nothing(
    engine, settings, enqueued, kind, kwargs, message
):
    seed_order(engine, "KB-1001")
    with pytest.raises(UserError, match=message):
        queue(engine, settings, kind, **kwargs)
    assert count(engine) == 0 and enqueued == []


def test_unknown_order_is_not_found(engine, settings, enqueued):
    with pytest.raises(NotFound):
        queue(engine, settings, "order_status_update", order_number="nope")
    assert count(engine) == 0


def test_low_stock_takes_the_inventory_checks_products_and_key(engine, settings, enqueued):
    products = [{"sku": "KB-ORIG-750", "name": "Original", "stock": 3, "threshold": 10,
                 "units_sold_7d": 21, "days_of_cover": 1.0}]
    with Session(engine, expire_on_commit=False) as session:
        request = EmailRequest("low_stock", context={"products": products},
                               idempotency_key="low_stock/2026-11-20")
        first = outbox.add(session, settings, request).row
        again = outbox.add(session, settings, request).row
    assert first.id == again.id and first.to_address == settings.email.admin_email
    assert "KB-ORIG-750" in first.text and enqueued == [first.id]


def test_commit_false_joins_the_callers_transaction_and_enqueues_nothing(
    engine, settings, enqueued
):
    with Session(engine) as session:
        request = EmailRequest("generic", to="a@example.com", subject="S", body="B")
        row_ = outbox.add(session, settings, request, commit=False).row
        assert row_.id is not None
        session.rollback()
    assert count(engine) == 0 and enqueued == []


def set_sent(engine, row_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(update(EmailOutbox).where(col(EmailOutbox.id) == row_id)
                     .values(status="sent"))


def test_operator_resend_creates_a_new_row_with_a_new_key_and_an_activity_line(
    engine, settings, enqueued
):
    original = queue(engine, settings).row
    set_sent(engine, original.id)  # send again is for an email that was sent (or failed)
    with Session(engine, expire_on_commit=False) as session:
        again = outbox.resend_email(session, settings, original.id, "ops@kolaq").row
        set_sent(engine, again.id)
        third = outbox.resend_email(session, settings, again.id, "ops@kolaq").row
    assert len({original.idempotency_key, again.idempotency_key, third.idempotency_key}) == 3
    assert again.idempotency_key.startswith(original.idempotency_key + "/resend-")
    assert third.idempotency_key.count("/resend-") == 1
    assert again.html == original.html and again.status == "queued"
    assert enqueued == [original.id, again.id, third.id]
    lines = [a for a in activity(engine) if a.action == "email.resend"]
    assert [(a.actor, a.details["original_id"]) for a in lines] == [
        ("ops@kolaq", original.id), ("ops@kolaq", again.id)]
    with Session(engine) as session, pytest.raises(NotFound):
        outbox.resend_email(session, settings, 999_999)
    assert count(engine, ActivityLog) == 2


def test_concurrent_claims_of_one_row_succeed_exactly_once(engine, settings, enqueued):
    row_id = queue(engine, settings).row.id
    barrier = threading.Barrier(8)
    results: list[object] = []

    def worker():
        barrier.wait()
        results.append(claim(engine, row_id, 60, task_id="t"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [r for r in results if r is not None]
    assert len(won) == 1 and won[0].attempts == 1
    assert row(engine, row_id).status == "sending"


def test_a_sent_row_is_never_claimed_again_and_a_dead_workers_row_is(engine, settings, enqueued):
    sent_id = queue(engine, settings, to="a@example.com").row.id
    assert claim(engine, sent_id, 60) is not None
    mark_sent(engine, sent_id, "provider-1")
    assert claim(engine, sent_id, 60, now=utcnow() + timedelta(days=1)) is None
    assert row(engine, sent_id).provider_message_id == "provider-1"

    stuck_id = queue(engine, settings, to="b@example.com").row.id
    assert claim(engine, stuck_id, 60) is not None  # its worker then dies mid-send
    assert claim(engine, stuck_id, 60) is None  # lease still running: nobody else sends it
    later = utcnow() + timedelta(seconds=61)
    again = claim(engine, stuck_id, 60, now=later)
    assert again is not None and again.attempts == 2


def test_a_row_due_later_is_not_claimed_early(engine, settings, enqueued):
    row_id = queue(engine, settings).row.id
    with Session(engine) as s:
        s.execute(update(EmailOutbox).where(EmailOutbox.id == row_id)
                  .values(next_attempt_at=utcnow() + timedelta(seconds=30)))
        s.commit()
    assert claim(engine, row_id, 60) is None
    assert claim(engine, row_id, 60, now=utcnow() + timedelta(seconds=31)) is not None


def test_sweeper_requeues_rows_past_their_lease_once_per_lease(engine, settings, enqueued):
    done = queue(engine, settings, to="d@example.com").row.id
    claim(engine, done, 1)
    mark_sent(engine, done, "p")
    lost_sending = queue(engine, settings, to="c@example.com").row.id
    claim(engine, lost_sending, 1)  # alone: nothing else waits; then its worker dies
    lost_queued = queue(engine, settings, to="b@example.com").row.id
    fresh = queue(engine, settings, to="a@example.com").row.id
    past = utcnow() - timedelta(seconds=5)
    with Session(engine) as s:
        s.execute(update(EmailOutbox).where(EmailOutbox.id.in_([lost_queued, lost_sending]))
                  .values(lease_until=past))
        s.commit()
    enqueued.clear()

    results: list[list[int]] = []
    sweepers = [threading.Thread(target=lambda: results.append(
        outbox.sweep_stale(engine, settings))) for _ in range(3)]
    for t in sweepers:
        t.start()
    for t in sweepers:
        t.join()
    assert sorted(i for r in results for i in r) == sorted([lost_queued, lost_sending])
    batch_id = row(engine, lost_sending).batch_id
    # the row without a batch gets its own job; the one in a batch is sent with its batch
    assert sorted(enqueued, key=str) == sorted([lost_queued, ("batch", batch_id)], key=str)
    assert row(engine, lost_sending).status == "queued"
    assert outbox.sweep_stale(engine, settings) == []  # fresh leases now
    assert fresh not in enqueued
    # the swept "sending" row is claimable again, and is sent under its old key
    assert claim(engine, lost_sending, 60).idempotency_key == row(engine, lost_sending
                                                                  ).idempotency_key


def test_the_list_filtered_by_kind_finds_that_kind_only_broadcast_copies_included(
    engine, settings, enqueued
):
    generic = queue(engine, settings, to="a@example.com").row.id
    with Session(engine) as session:
        copy = EmailOutbox(kind="broadcast", to_address="b@example.com", subject="News",
                           html="", text="", idempotency_key="broadcast/1/b@example.com")
        session.add(copy)
        session.commit()
        copy_id = copy.id
    with Session(engine) as session:
        assert [r.id for r in outbox.list_emails(session, kind="generic")] == [generic]
        assert [r.id for r in outbox.list_emails(session, kind="broadcast")] == [copy_id]


def test_list_and_status_counts_reflect_the_outbox(engine, settings, enqueued):
    a = queue(engine, settings, to="a@example.com").row.id
    claim(engine, a, 60)
    mark_sent(engine, a, "p")
    b = queue(engine, settings, to="b@example.com").row.id
    claim(engine, b, 60)
    queue(engine, settings, to="c@example.com")
    with Session(engine) as session:
        assert [r.id for r in outbox.list_emails(session, status="sent")] == [a]
        assert len(outbox.list_emails(session)) == 3
        assert outbox_counts(session) == {"queued": 2, "sent": 1, "failed": 0}
        with pytest.raises(UserError, match="unknown status"):
            outbox.list_emails(session, status="lost")
    assert len(rows(engine)) == 3
