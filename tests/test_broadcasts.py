"""Broadcasts on both databases against the strict Resend stand-in: audiences net of
unsubscribed and suppressed, recipients materialised once, batches of 100 with one-click
unsubscribe, consent withdrawn mid-send honoured, pause / resume / cancel, and progress.

Longer than ~400 lines: the broadcast's whole life, recoveries included (429s, dead workers,
lost jobs, operators' retries), shares this file's stand-in and synchronous workers."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from broadcast_fixtures import resend_stub, resend_workers  # noqa: F401
from broadcast_support import seed_customers, subscribers
from email_support import KEY, seed_order, status_counts
from huey.exceptions import RetryTask
from sqlmodel import Session, select

from kolaq_console import consent, dispatch
from kolaq_console.broadcasts import audience, lifecycle, progress, sending
from kolaq_console.broadcasts.copies import Copies
from kolaq_console.emails import EmailRequest, compose, outbox
from kolaq_console.emails.transports import ResendTransport
from kolaq_console.errors import NotFound, PermanentJobError, UserError
from kolaq_console.models import Broadcast, BroadcastRecipient, EmailOutbox, utcnow

BODY = "# Harmattan cocktails\n\nThree drinks for dry season. **Cheers!**"


def submit(engine, settings, subject="Harmattan cocktails", body=BODY, who="subscribers"):
    with Session(engine, expire_on_commit=False) as s:
        return lifecycle.submit(s, settings, actor="ops", subject=subject, body=body,
                                audience=who)


def first_batch_refused(engine, settings, stub, workers, recipients: int):
    """A broadcast to `recipients` subscribers whose first batch the provider refuses whole
    (a 422): its members fail with it, for good. The broadcast."""
    seed_customers(engine, subscribers(recipients))
    b = submit(engine, settings).broadcast
    stub.inject(422, times=1, path="/emails/batch")
    workers.step()  # send_broadcast starts the batch jobs
    with pytest.raises(PermanentJobError):
        workers.step()
    return b


def figures(engine, broadcast_id) -> dict:
    with Session(engine) as s:
        p = progress.progress(s, broadcast_id)
    return {k: getattr(p, k) for k in ("status", "total", "sent", "failed", "skipped",
                                       "cancelled", "remaining")}


def test_250_subscribers_go_in_3_requests_of_100_100_50_each_with_one_click_unsubscribe(
    engine, settings, stub, workers
):
    seed_customers(engine, subscribers(250))
    b = submit(engine, settings).broadcast
    workers.run()

    assert [(r.path, r.emails, r.validation) for r in stub.requests] == [
        ("/emails/batch", 100, "permissive")] * 2 + [("/emails/batch", 50, "permissive")]
    assert Counter(d.to[0] for d in stub.deliveries) == Counter(subscribers(250))
    assert figures(engine, b.id) == {"status": "done", "total": 250, "sent": 250, "failed": 0,
                                     "skipped": 0, "cancelled": 0, "remaining": 0}
    for delivery in stub.deliveries:
        headers, to = delivery.payload["headers"], delivery.to[0]
        https, mailto = headers["List-Unsubscribe"].split(", ")
        token = https.strip("<>").rsplit("/", 1)[1]
        assert https.startswith(f"<{settings.shop.public_url}/unsubscribe/")
        assert consent.read_token(settings, token) == to  # signed for this recipient
        assert mailto.startswith(f"<mailto:{settings.email.support_email}?subject=unsubscribe")
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert https.strip("<>") in delivery.payload["html"]  # the visible link
        assert https.strip("<>") in delivery.payload["text"]
    # one click on the link: the endpoint reads the token and withdraws consent
    first = stub.deliveries[0]
    token = first.payload["headers"]["List-Unsubscribe"].split(">")[0].rsplit("/", 1)[1]
    with Session(engine) as s:
        assert consent.unsubscribe(s, consent.read_token(settings, token), source="one-click")
        s.commit()
        assert not consent.marketing_allowed(s, first.to[0])


def test_one_address_the_provider_refuses_fails_alone_and_the_rest_are_sent(
    engine, settings, stub, workers
):
    seed_customers(engine, [*subscribers(249), "josé@example.com"])
    b = submit(engine, settings).broadcast
    workers.run()

    assert figures(engine, b.id) == {"status": "done", "total": 250, "sent": 249, "failed": 1,
                                     "skipped": 0, "cancelled": 0, "remaining": 0}
    with Session(engine) as s:
        failed = s.exec(select(EmailOutbox).where(EmailOutbox.status == "failed")).one()
    assert failed.to_address == "josé@example.com"
    assert "Invalid `to` field" in failed.last_error
    assert len(stub.requests) == 3 and len(stub.deliveries) == 249


def test_unsubscribed_and_suppressed_are_left_out_and_so_are_those_who_withdraw_mid_send(
    engine, settings, stub, workers
):
    people = subscribers(300)
    seed_customers(engine, people)
    seed_customers(engine, ["never@example.com"], consent=False)
    with Session(engine) as s:
        consent.unsubscribe(s, people[0], source="link")
        consent.suppress(s, people[1], "bounced", source="resend")
        consent.suppress(s, people[2], "complained", source="resend")
        s.commit()
    with Session(engine) as s:
        assert audience.count(s, settings, audience.parse("subscribers")) == 297
    b = submit(engine, settings).broadcast
    assert b.total == 297

    workers.step()  # send_broadcast starts the batch jobs
    workers.step()  # the first batch is formed and sent
    assert len(stub.deliveries) == 100
    with Session(engine) as s:
        consent.unsubscribe(s, people[150], source="link")  # not in a batch yet
        consent.unsubscribe(s, people[299], source="link")
        s.commit()
    workers.run()

    sent_to = {d.to[0] for d in stub.deliveries}
    assert len(sent_to) == 295 == len(stub.deliveries)
    assert not sent_to & {people[0], people[1], people[2], people[150], people[299],
                          "never@example.com"}
    assert figures(engine, b.id) == {"status": "done", "total": 297, "sent": 295, "failed": 0,
                                     "skipped": 2, "cancelled": 0, "remaining": 0}


def test_the_same_broadcast_submitted_twice_is_sent_once(engine, settings, stub, workers):
    seed_customers(engine, subscribers(20))
    first = submit(engine, settings)
    again = submit(engine, settings)
    assert first.created and not again.created and again.broadcast.id == first.broadcast.id
    with Session(engine, expire_on_commit=False) as s:  # a draft of the same, submitted twice
        draft = lifecycle.save_draft(s, subject="Harmattan cocktails", body=BODY,
                                     audience="subscribers", actor="ops")
        assert not lifecycle.submit(s, settings, actor="ops", broadcast_id=draft.id).created
        other = lifecycle.save_draft(s, subject="Other news", body=BODY,
                                     audience="subscribers", actor="ops")
        assert lifecycle.submit(s, settings, actor="ops", broadcast_id=other.id).created
        assert not lifecycle.submit(s, settings, actor="ops", broadcast_id=other.id).created
    workers.run()
    per_subject = Counter((d.to[0], d.subject) for d in stub.deliveries)
    assert len(per_subject) == 40 and set(per_subject.values()) == {1}
    with Session(engine) as s:
        assert len(s.exec(select(BroadcastRecipient)).all()) == 40  # materialised once each


def test_pause_forms_no_more_batches_and_resume_sends_the_rest_once(
    engine, settings, stub, workers
):
    seed_customers(engine, subscribers(1000))
    b = submit(engine, settings).broadcast
    workers.step()  # starts [email] broadcast_lookahead (8) batch jobs
    workers.step()  # the first forms and sends its batch
    with Session(engine) as s:
        lifecycle.pause(s, b.id, actor="ops")
    workers.run()  # the other batch jobs form nothing
    assert len(stub.deliveries) == 100
    paused = figures(engine, b.id)
    assert paused["status"] == "paused" and paused["sent"] == 100 and paused["remaining"] == 900
    with Session(engine) as s:
        assert status_counts(engine) == {"sent": 100}  # no copy formed after the pause
        with pytest.raises(UserError, match="is paused; it can be paused only when sending"):
            lifecycle.pause(s, b.id, actor="ops")
        lifecycle.resume(s, b.id, actor="ops")
    workers.run()
    assert Counter(d.to[0] for d in stub.deliveries) == Counter(subscribers(1000))
    assert figures(engine, b.id)["status"] == "done"


def test_cancel_sends_nothing_more_and_counts_what_was_not_sent(engine, settings, stub, workers):
    seed_customers(engine, subscribers(450))
    b = submit(engine, settings).broadcast
    workers.step()
    workers.step()  # 100 sent
    with Session(engine) as s:
        lifecycle.cancel(s, b.id, actor="ops")
    workers.run()
    assert len(stub.deliveries) == 100
    assert figures(engine, b.id) == {"status": "cancelled", "total": 450, "sent": 100,
                                     "failed": 0, "skipped": 0, "cancelled": 350,
                                     "remaining": 0}
    with Session(engine) as s, pytest.raises(UserError, match="is cancelled; it can be resumed"):
        lifecycle.resume(s, b.id, actor="ops")  # what was asked, not "it can be sending"


def test_audiences_customers_sku_and_admin(engine, settings):
    seed_order(engine, "KB-1", email="buyer@example.com", status="paid")
    seed_order(engine, "KB-2", email="pending@example.com", status="pending",
               lines=[("KB-OTHER", "Other", 1, 100)])
    seed_customers(engine, ["fan@example.com"])
    with Session(engine) as s:
        consent.unsubscribe(s, "pending@example.com", source="link")
        s.commit()

        def who(name):
            q = audience.query(s, settings, audience.parse(name)).subquery()
            return sorted(s.execute(select(q.c.email)).scalars())

        assert who("customers") == ["buyer@example.com"]  # ordered, not unsubscribed
        assert who("subscribers") == ["fan@example.com"]
        assert who("sku:KB-ORIG-750") == ["buyer@example.com"]
        assert who("sku:KB-OTHER") == []  # its only order is unpaid
        assert who("admin") == [settings.email.admin_email]
        with pytest.raises(NotFound, match="KB-NOPE"):
            who("sku:KB-NOPE")
        with pytest.raises(UserError, match="unknown audience"):
            audience.parse("everyone")


def test_an_empty_audience_or_a_bad_subject_is_refused_and_nothing_is_written(
    engine, settings, workers
):
    with pytest.raises(UserError, match="no one to send to"):
        submit(engine, settings)
    seed_customers(engine, subscribers(3))
    with pytest.raises(UserError, match="one line"):
        submit(engine, settings, subject="two\nlines")
    with pytest.raises(UserError, match="subject and a body"):
        submit(engine, settings, body="  ")
    with Session(engine) as s:
        assert s.exec(select(Broadcast)).all() == [] and workers.calls == []


def test_a_copy_made_once_per_broadcast_equals_what_compose_makes_for_that_recipient(
    engine, settings
):
    copies = Copies.render(settings, 42, "Harmattan cocktails", BODY)
    with Session(engine) as s:
        for address in ("ada@example.com", "o'neil+news@example.com"):
            made = copies.copy(address)
            composed = compose(s, settings, EmailRequest(
                "broadcast", to=address, subject="Harmattan cocktails", body=BODY,
                context={"broadcast_id": 42}))
            assert (made.subject, made.html, made.text, made.headers, made.idempotency_key) == (
                composed.subject, composed.html, composed.text, composed.headers,
                composed.idempotency_key)


def test_progress_reports_rate_and_eta_while_sending(engine, settings, stub, workers):
    seed_customers(engine, subscribers(300))
    b = submit(engine, settings).broadcast
    workers.step()
    workers.step()
    with Session(engine) as s:
        later = utcnow() + timedelta(seconds=10)
        p = progress.progress(s, b.id, now=later)
    assert (p.sent, p.remaining, p.total) == (100, 200, 300)
    assert p.rate == pytest.approx(10.0, rel=0.2)  # 100 sent in the last ~10 s
    assert p.eta_seconds == pytest.approx(20.0, rel=0.2)


def test_a_batch_formed_by_a_worker_that_died_is_handed_back_and_sent_once_under_its_key(
    engine, settings, stub, workers
):
    people = subscribers(150)
    seed_customers(engine, people)
    b = submit(engine, settings).broadcast
    # A worker forms its batch (stored already claimed by it), hands the request to the
    # provider, and is killed before it records the answer.
    claimed = sending.next_claimed(engine, settings, b.id, task_id="t-1",
                                   worker_id="host:1:dead")
    assert claimed is not None and len(claimed.members) == 100 and claimed.attempts == 1
    with Session(engine) as s:
        rows = s.exec(select(EmailOutbox).where(EmailOutbox.batch_id == claimed.batch_id)).all()
    assert {(r.status, r.claimed_by, r.task_id, r.attempts) for r in rows} == {
        ("sending", "host:1:dead", "t-1", 1)}
    ResendTransport(KEY, stub.url, timeout=5).send_batch(claimed.messages(settings),
                                                          claimed.idempotency_key)
    assert len(stub.deliveries) == 100

    handed_back = outbox.release_claims_of(engine, settings, ["host:1:dead"])
    assert sorted(handed_back) == sorted(m.id for m in claimed.members)
    workers.run()

    assert Counter(d.to[0] for d in stub.deliveries) == Counter(people)  # each exactly once
    again = [r for r in stub.requests if r.idempotency_key == claimed.idempotency_key]
    assert [(r.emails, r.replayed) for r in again] == [(100, False), (100, True)]
    assert figures(engine, b.id) == {"status": "done", "total": 150, "sent": 150, "failed": 0,
                                     "skipped": 0, "cancelled": 0, "remaining": 0}


def test_a_batch_released_after_a_429_is_sent_by_the_next_job_with_the_same_members_and_key(
    engine, settings, stub, workers
):
    people = subscribers(150)
    seed_customers(engine, people)
    b = submit(engine, settings).broadcast
    stub.inject(429, times=1, path="/emails/batch")
    workers.step()  # send_broadcast starts the batch jobs
    with pytest.raises(RetryTask):
        workers.step()  # the first batch is formed, claimed and refused with a 429
    workers.calls.append(dispatch.Call("send_broadcast_batch", (b.id,)))  # Huey's retry
    workers.run()

    first, *rest = stub.requests
    assert first.status == 429
    resent = [r for r in rest if r.idempotency_key == first.idempotency_key]
    assert [(r.status, r.emails, r.replayed) for r in resent] == [(200, 100, False)]
    first_hundred = [d.to[0] for d in stub.deliveries
                     if d.idempotency_key == first.idempotency_key]
    assert sorted(first_hundred) == people[:100]  # the same members
    assert Counter(d.to[0] for d in stub.deliveries) == Counter(people)
    assert figures(engine, b.id)["sent"] == 150


def test_tending_restarts_a_broadcast_whose_jobs_were_lost_and_tops_up_to_the_lookahead(
    engine, settings, stub, workers
):
    seed_customers(engine, subscribers(150))
    b = submit(engine, settings).broadcast
    workers.calls.clear()  # its send_broadcast job was lost with the queue
    assert sending.tend(engine) == [b.id]  # nothing on its way: stalled
    claimed = sending.next_claimed(engine, settings, b.id, task_id="t-1", worker_id="w-1")
    assert claimed is not None
    assert sending.tend(engine) == []  # a batch on its way: not stalled
    started = sending.produce(engine, settings, b.id)
    assert started == settings.email.broadcast_lookahead - 1  # one is on its way already
    assert [c.task for c in workers.calls] == ["send_broadcast_batch"] * started


def test_an_operators_retry_of_a_failed_batch_job_resends_the_same_members_under_the_same_key(
    engine, settings, stub, workers
):
    people = subscribers(150)
    b = first_batch_refused(engine, settings, stub, workers, 150)
    workers.calls.clear()  # the failed job waits in the ledger for the operator
    assert status_counts(engine) == {"failed": 100}
    refused = stub.requests[0]

    with engine.begin() as conn:  # what the operator's retry runs before the job again
        assert sending.reopen_failed_batches(conn, b.id, settings.email.lease_seconds)
    workers.calls.append(dispatch.Call("send_broadcast_batch", (b.id,)))
    workers.run()

    resent = [r for r in stub.requests[1:] if r.idempotency_key == refused.idempotency_key]
    assert [(r.status, r.emails) for r in resent] == [(200, 100)]
    assert Counter(d.to[0] for d in stub.deliveries) == Counter(people)
    assert figures(engine, b.id)["sent"] == 150


def test_tending_leaves_a_broadcast_alone_while_its_jobs_only_wait_in_the_queue(
    engine, settings, stub, workers
):
    seed_customers(engine, subscribers(3000))
    b = submit(engine, settings).broadcast
    workers.step()  # send_broadcast starts the lookahead's jobs
    lookahead = settings.email.broadcast_lookahead
    for _ in range(3):  # three minutes' tending while the jobs wait behind other work
        for broadcast_id in sending.tend(engine, quiet_seconds=60):
            workers.calls.append(dispatch.Call("send_broadcast", (broadcast_id,)))
            workers.step()
        for _ in range(5):
            workers.step()
        assert sum(c.task == "send_broadcast_batch" for c in workers.calls) <= lookahead
    later = utcnow() + timedelta(seconds=61)
    workers.calls.clear()  # now its jobs are lost: quiet for the whole period, restarted
    assert sending.tend(engine, quiet_seconds=60, now=later) == [b.id]


def test_a_handed_back_broadcast_batch_is_resent_without_starting_more_jobs(
    engine, settings, stub, workers
):
    seed_customers(engine, subscribers(3000))
    b = submit(engine, settings).broadcast
    workers.step()  # the lookahead's jobs, queued
    assert sending.next_claimed(engine, settings, b.id, task_id="t-dead", worker_id="dead")
    outbox.release_claims_of(engine, settings, ["dead"])  # its batch: send_email_batch
    [swept] = [c for c in workers.calls if c.task == "send_email_batch"]
    workers.calls.remove(swept)
    workers.calls.insert(0, swept)
    workers.step()
    assert sum(c.task == "send_broadcast_batch" for c in workers.calls) == \
        settings.email.broadcast_lookahead
    assert not any(c.task == "send_broadcast" for c in workers.calls)


def test_a_job_on_its_last_retry_gives_a_fresh_batch_all_of_its_retries(engine, settings, stub):
    from kolaq_console.emails.transports import TransientError
    from kolaq_console.models import EmailBatch

    seed_customers(engine, subscribers(150))
    b = submit(engine, settings).broadcast
    stub.inject(500, times=1, path="/emails/batch")
    with pytest.raises(TransientError):
        sending.line_step(engine, settings, b.id,
                             transport=ResendTransport(KEY, stub.url, timeout=5), limiter=None,
                             retries_left=0, max_retries=3, task_id="t", worker_id="w")
    with Session(engine) as s:
        batch = s.exec(select(EmailBatch)).one()
        assert (batch.status, batch.attempts) == ("queued", 1)  # released, not failed
    assert status_counts(engine) == {"queued": 100}


def test_a_broadcast_whose_last_batch_fails_for_good_is_settled_at_once(
    engine, settings, stub, workers
):
    b = first_batch_refused(engine, settings, stub, workers, 100)  # the only batch
    with Session(engine) as s:  # the other jobs have not run: settled by the failing one
        done = s.get(Broadcast, b.id)
        assert (done.status, done.failed, done.sent) == ("done", 100, 0)


def test_an_operators_retry_after_the_broadcast_ended_writes_its_figures_again(
    engine, settings, stub, workers
):
    b = first_batch_refused(engine, settings, stub, workers, 100)  # ended: 100 failed
    workers.calls.clear()

    with engine.begin() as conn:  # the operator retries the failed job
        assert sending.reopen_failed_batches(conn, b.id, settings.email.lease_seconds)
    assert figures(engine, b.id)["status"] == "sending"  # under way again
    workers.calls.append(dispatch.Call("send_broadcast_batch", (b.id,)))
    workers.run()

    with Session(engine) as s:
        again = s.get(Broadcast, b.id)
        assert (again.status, again.sent, again.failed) == ("done", 100, 0)
        assert again.finished_at is not None


def test_an_operators_retry_of_a_cancelled_broadcasts_failed_batch_is_refused(
    engine, settings, stub, workers
):
    b = first_batch_refused(engine, settings, stub, workers, 150)
    with Session(engine) as s:
        lifecycle.cancel(s, b.id, actor="ops")
    before = figures(engine, b.id)

    with engine.begin() as conn, pytest.raises(UserError, match="was cancelled"):
        sending.reopen_failed_batches(conn, b.id, settings.email.lease_seconds)
    assert figures(engine, b.id) == before
    assert status_counts(engine) == {"failed": 100}
