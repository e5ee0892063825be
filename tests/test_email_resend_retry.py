"""Send again + retry never makes two copies: sending an email again closes its failed send job,
and a retry of a send whose email was sent again, or was sent, is refused with the reason."""

from __future__ import annotations

import pytest
from email_support import (
    KEY,
    activity,
    entry_status,
    queue_one,
    record_failed_send,
    rows,
)
from helpers import run_cli, wait_until
from sqlalchemy import update
from sqlmodel import Session, col
from stubs.resend_api import ResendStub

from kolaq_console.emails import outbox
from kolaq_console.errors import UserError
from kolaq_console.jobs.failed import JobFilter, list_failed, retry_failed, select_ids
from kolaq_console.models import EmailOutbox, FailedJob, FailedJobStatus, utcnow


def test_send_again_closes_the_failed_send_and_a_retry_of_it_is_refused_with_the_reason(
        engine, settings, tasks_module):
    row_id = queue_one(engine, settings)
    entry = record_failed_send(engine, row_id, tasks_module.huey)
    other = record_failed_send(engine, queue_one(engine, settings, "bo@example.com"),
                               tasks_module.huey)

    with Session(engine, expire_on_commit=False) as session:
        resent = outbox.resend_email(session, settings, row_id, "ops")

    assert resent.closed_failed_jobs == [entry]
    assert entry_status(engine, entry) == FailedJobStatus.discarded.value
    assert entry_status(engine, other) == FailedJobStatus.failed.value  # another email's
    closing = [a for a in activity(engine) if a.action == "jobs.discard"]
    assert [(a.entity_id, a.actor, a.details["reason"]) for a in closing] == [
        (str(entry), "ops", f"email #{row_id} was sent again as #{resent.row.id}")]
    with Session(engine) as session, pytest.raises(
            UserError, match=rf"already discarded: email #{row_id} was sent again as "
                             rf"#{resent.row.id}"):
        select_ids(session, [entry])  # what `jobs retry ID` and the console act on


def test_retry_is_refused_when_the_email_was_sent_again_or_sent(engine, settings,
                                                                 tasks_module):
    """Entries left open (recorded before a resend closed them, or an interrupted send whose
    email went out after all): the retry is refused with the reason, the entry stays open."""
    first = queue_one(engine, settings)
    again_entry = record_failed_send(engine, first, tasks_module.huey)
    with engine.begin() as conn:  # a copy exists, as an older version's resend left it
        conn.execute(update(EmailOutbox).where(col(EmailOutbox.id) == first)
                     .values(status="sent"))
    with Session(engine, expire_on_commit=False) as session:
        copy = outbox.resend_email(session, settings, first, "ops").row
    with engine.begin() as conn:
        conn.execute(update(FailedJob).where(col(FailedJob.id) == again_entry)
                     .values(status="failed"))
    sent = queue_one(engine, settings, "cy@example.com")
    sent_entry = record_failed_send(engine, sent, tasks_module.huey, status="interrupted")
    with engine.begin() as conn:
        conn.execute(update(EmailOutbox).where(col(EmailOutbox.id) == sent)
                     .values(status="sent", sent_at=utcnow()))
    queued_before = len(tasks_module.huey.pending())

    outcome = retry_failed(engine, tasks_module.huey, [again_entry, sent_entry], "ops")

    assert outcome.retried == []
    reasons = dict(outcome.skipped)
    assert reasons[again_entry].startswith(f"email #{first} was sent again as #{copy.id}")
    assert reasons[sent_entry].startswith(f"email #{sent} was already sent at ")
    assert "discard this entry" in reasons[sent_entry]
    assert entry_status(engine, again_entry) == "failed"
    assert entry_status(engine, sent_entry) == "interrupted"
    assert {r.id: r.status for r in rows(engine)}[sent] == "sent"
    assert len(tasks_module.huey.pending()) == queued_before  # nothing enqueued


def test_send_again_is_refused_while_the_email_is_on_its_way(engine, settings, tasks_module):
    row_id = queue_one(engine, settings)
    before = len(rows(engine))
    with Session(engine) as session, pytest.raises(UserError, match="is queued: it is on its"):
        outbox.resend_email(session, settings, row_id, "ops")
    assert len(rows(engine)) == before and activity(engine) == []


@pytest.mark.slow
def test_end_to_end_send_again_then_retry_reaches_the_customer_once(
        sqlite_engine, settings, tasks_module, spawn, kolaq_env):
    """A real worker and the provider's stand-in: a send fails for good (422), the operator
    sends it again from the CLI, then tries `jobs retry` on the original failure."""
    with ResendStub(api_keys={KEY}) as stub:
        env = {"KOLAQ_EMAIL__TRANSPORT": "resend", "RESEND_API_URL": stub.url,
               "RESEND_API_KEY": KEY,
               "KOLAQ_SHOP__PUBLIC_URL": "https://shop.test"}  # workers refuse a local address
        worker = spawn("worker", "-w", "1", env=env)  # one thread: jobs run in queue order
        worker.wait_for_output("tasks.send_email")
        stub.inject(422, name="validation_error", message="The `to` field is invalid.")
        row_id = queue_one(sqlite_engine, settings, "dee@example.com")

        def failed_entry():
            with Session(sqlite_engine) as session:
                page = list_failed(session, JobFilter(task="send_email"))
                return page[0] if page else None

        entry = wait_until(failed_entry, message="the failed send in the ledger")
        cli_env = {**kolaq_env, **env}

        resend = run_cli(cli_env, "email", "resend", str(row_id))
        assert resend.returncode == 0, resend.stderr
        assert f"closed failed job #{entry.id} of email #{row_id}" in resend.stdout
        wait_until(lambda: len(stub.deliveries) == 1, message="the copy delivered")

        retry = run_cli(cli_env, "jobs", "retry", str(entry.id), "--yes")

        assert retry.returncode == 1
        (line,) = retry.stderr.strip().splitlines()
        assert f"failed job #{entry.id} is already discarded: email #{row_id} was sent again" \
            in line
        # A marker email queued now runs after anything the retry could have enqueued.
        marker = queue_one(sqlite_engine, settings, "marker@example.com")
        # its row is marked sent once the provider's answer is back, just after the delivery
        wait_until(lambda: any(r.id == marker and r.status == "sent" for r in rows(sqlite_engine)),
                   message="the marker sent")
        assert [d.to for d in stub.deliveries] == [["dee@example.com"],
                                                   ["marker@example.com"]]
        statuses = {r.id: r.status for r in rows(sqlite_engine)}
        assert statuses[row_id] == "failed"
        assert sorted(statuses.values()) == ["failed", "sent", "sent"]
