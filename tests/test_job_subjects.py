"""Who a failed job was for (read from its arguments) and its bare reason."""

from __future__ import annotations

from sqlmodel import Session

from kolaq_console.demo import load_demo
from kolaq_console.emails import EmailRequest, outbox
from kolaq_console.jobs.subjects import (
    Target,
    bare_reason,
    open_jobs_for_email,
    resends_email,
    subjects_for,
    subjects_of_ids,
    target_of,
)
from kolaq_console.models import FailedJob


def queue_confirmation(engine, settings, number: str) -> tuple[int, str]:
    with Session(engine) as session:
        row = outbox.add(session, settings, EmailRequest("order_confirmation",
                                                         order_number=number),
                         enqueue=False).row
        assert row.id is not None
        return row.id, row.to_address


def test_an_email_send_is_for_its_order_and_recipient(sqlite_engine, settings):
    load_demo(sqlite_engine)
    email_id, to = queue_confirmation(sqlite_engine, settings, "KB-10004")
    with Session(sqlite_engine) as session:
        [subject] = subjects_for(session, [(1, "tasks.send_email", [email_id])]).values()
    assert subject.order == "KB-10004" and subject.recipient == to
    assert subject.email_id == email_id
    assert subject.label == f"KB-10004 {to}"


def test_other_tasks_name_what_they_were_about(sqlite_engine):
    jobs = [(1, "tasks.reconcile_inventory", ["KB-ORNG-375"]),
            (2, "tasks.reconcile_inventory", []),
            (3, "tasks.send_email", [999]),
            (4, "tasks.send_broadcast", [7]),
            (5, "tasks.something_else", ["x"])]
    with Session(sqlite_engine) as session:
        labels = {i: s.label for i, s in subjects_for(session, jobs).items()}
    assert labels == {1: "KB-ORNG-375", 2: "all products", 3: "email #999 (gone)",
                      4: "broadcast #7", 5: "-"}


def test_subjects_of_ledger_entries_read_their_arguments(sqlite_engine, settings):
    load_demo(sqlite_engine)
    email_id, _to = queue_confirmation(sqlite_engine, settings, "KB-10002")
    with Session(sqlite_engine) as session:
        job = FailedJob(task_id="t-1", task_name="tasks.send_email", queue="emails",
                        args=[email_id], error_type="x.TransientError", error_message="boom")
        session.add(job)
        session.commit()
        assert job.id is not None
        subjects = subjects_of_ids(session, [job.id])
        assert subjects[job.id].order == "KB-10002"
        assert open_jobs_for_email(session, email_id) == [job.id]
        assert open_jobs_for_email(session, email_id + 1) == []


def test_the_bare_reason_drops_the_exception_class():
    assert bare_reason("kolaq_console.emails.transports.PermanentError",
                       "403 invalid_api_key") == "403 invalid_api_key"
    assert bare_reason("ValueError", "ValueError: 403 invalid_api_key\ntraceback") == \
        "403 invalid_api_key"
    assert bare_reason("x.TransientError", "x.TransientError: 503 busy") == "503 busy"
    assert bare_reason("kolaq_console.inventory.lease.LeaseBusy", "") == "LeaseBusy"
    assert bare_reason("", "") == "unknown error"


def test_only_jobs_that_send_email_count_as_resending_one():
    assert resends_email("tasks.send_email") and resends_email("send_broadcast")
    assert not resends_email("tasks.reconcile_inventory")
    assert not resends_email("tasks.send_text")


def test_a_calls_target_is_the_record_its_first_id_names():
    assert target_of("tasks.send_email", [12]) == Target("email", 12)
    assert target_of("process_webhook", [41, 42]) == Target("webhook", 41)
    assert target_of("tasks.send_email_batch", [3]) == Target("batch", 3)
    assert target_of("tasks.reconcile_inventory", ["KB-ORNG-375"]) == Target("product",
                                                                             "KB-ORNG-375")
    assert target_of("tasks.reconcile_inventory", []) == Target("product", None)
    assert target_of("tasks.send_email", []) is None
    assert target_of("tasks.jobs_housekeeping", []) is None
