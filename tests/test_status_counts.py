"""The status counts the overview reads every refresh: what they count, and that they are
grouped by the bare status column, which an index answers (bench/console.py: grouping by an
expression made the database read every row)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, insert
from sqlmodel import Session

from kolaq_console.db import make_engine
from kolaq_console.jobs.failed import count_failed, count_rejected
from kolaq_console.models import EmailOutbox, FailedJob, TextMessage, utcnow
from kolaq_console.payloads import REJECTED_ERROR_TYPE
from kolaq_console.schema import upgrade
from kolaq_console.status import collect, message_counts, outbox_counts


def add_emails(engine, statuses: list[str]) -> None:
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(EmailOutbox.__table__), [
            {"kind": "generic", "to_address": f"c{i}@kolaq.test", "subject": "Hi", "html": "",
             "text": "", "headers": {}, "status": s, "attempts": 0,
             "idempotency_key": f"k{i}", "created_at": now, "updated_at": now}
            for i, s in enumerate(statuses)])


def add_messages(engine, statuses: list[str]) -> None:
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(TextMessage.__table__), [
            {"channel": "sms", "kind": "generic", "to_number": "+2348031234567",
             "from_number": "+2348090000001", "body": "Hi", "content_variables": {},
             "status": s, "attempts": 0, "idempotency_key": f"m{i}", "created_at": now,
             "updated_at": now}
            for i, s in enumerate(statuses)])


def add_failed(engine, rows: list[tuple[str, str]]) -> None:
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(FailedJob.__table__), [
            {"task_id": f"t{i}", "task_name": "tasks.send_email", "queue": "emails",
             "args": [], "kwargs": {}, "status": status, "error_type": error_type,
             "error_message": "boom", "attempts": 1, "created_at": now}
            for i, (status, error_type) in enumerate(rows)])


@contextmanager
def statements(engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(" ".join(statement.split()).lower())

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_outbox_counts_fold_sending_into_queued_and_leave_other_states_out(engine):
    add_emails(engine, ["queued"] * 3 + ["sending"] * 2 + ["sent"] * 4 + ["failed"]
               + ["cancelled"] * 5)
    with Session(engine) as session:
        assert outbox_counts(session) == {"queued": 5, "sent": 4, "failed": 1}


def test_an_empty_outbox_counts_zero_of_each_state(engine):
    with Session(engine) as session:
        assert outbox_counts(session) == {"queued": 0, "sent": 0, "failed": 0}
        assert message_counts(session) == {"queued": 0, "sent": 0, "failed": 0, "unknown": 0}


def test_message_counts_fold_sending_and_cancelled_and_keep_unknown(engine):
    add_messages(engine, ["queued", "sending", "sending", "sent", "failed", "cancelled",
                          "unknown", "unknown"])
    with Session(engine) as session:
        assert message_counts(session) == {"queued": 3, "sent": 1, "failed": 2, "unknown": 2}


@pytest.mark.parametrize(("count", "table"), [(outbox_counts, "email_outbox"),
                                              (message_counts, "text_messages")])
def test_status_counts_group_by_the_bare_status_column(engine, count, table):
    with Session(engine) as session, statements(engine) as seen:
        count(session)
    (query,) = seen
    assert f"group by {table}.status" in query
    assert "case" not in query  # an expression defeats the (status, updated_at) index


def test_open_and_rejected_failed_jobs_are_counted_apart(engine):
    add_failed(engine, [("failed", "ProviderError")] * 3 + [("interrupted", "Interrupted")]
               + [("failed", REJECTED_ERROR_TYPE)] * 2 + [("retried", REJECTED_ERROR_TYPE)]
               + [("discarded", "ProviderError")])
    with Session(engine) as session:
        assert count_failed(session) == 6
        assert count_rejected(session) == 2


@pytest.mark.postgres
def test_rejected_payloads_are_counted_from_the_error_type_index(postgres_url):
    """On PostgreSQL the count is a range of ix_failed_jobs_error_type_status (the planner is
    told not to scan the table, so the plan shows which index serves it)."""
    engine = make_engine(postgres_url)
    upgrade(engine)
    add_failed(engine, [("failed", "ProviderError")] * 50 + [("failed", REJECTED_ERROR_TYPE)])
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE failed_jobs")
        conn.exec_driver_sql("SET enable_seqscan = off")
        with Session(bind=conn) as session, statements(engine) as seen:
            assert count_rejected(session) == 1
        plan = "\n".join(conn.exec_driver_sql(
            "EXPLAIN " + seen[0].replace("%(error_type_1)s", f"'{REJECTED_ERROR_TYPE}'")
        ).scalars())
    engine.dispose()
    assert "ix_failed_jobs_error_type_status" in plan, plan


def test_the_status_snapshot_carries_the_counts(engine, settings):
    add_emails(engine, ["queued", "sending", "sent", "failed"])
    add_messages(engine, ["unknown"])
    add_failed(engine, [("failed", REJECTED_ERROR_TYPE), ("failed", "ProviderError")])
    status = collect(settings, engine, None, "queue not opened in this test")
    assert status.outbox == {"queued": 2, "sent": 1, "failed": 1}
    assert status.messages == {"queued": 0, "sent": 0, "failed": 0, "unknown": 1}
    assert (status.failed_jobs, status.rejected_payloads) == (2, 1)
    assert status.storage["database"] == "ok"
