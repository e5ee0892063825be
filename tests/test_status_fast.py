"""`status --json`'s fast path (statusfast: sqlite3/psycopg/redis-py, no SQLAlchemy or Huey)
prints the same document as the full path (status.collect), and hands over to the full path
whenever something is unusual."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import text
from sqlmodel import Session

from kolaq_console import runtime
from kolaq_console.demo import load_demo
from kolaq_console.models import EmailOutbox, FailedJob, JobRun, TextMessage, Worker, utcnow
from kolaq_console.payloads import REJECTED_ERROR_TYPE
from kolaq_console.status import collect, reading_queue
from kolaq_console.statusfast import fast_document
from kolaq_console.taskqueue import priority_for


def full_document(settings) -> dict:
    return collect(settings, runtime.engine(), reading_queue(settings)).as_dict()


def same_json(a: dict | None, b: dict) -> bool:
    return json.dumps(a, default=str) == json.dumps(b, default=str)


def _seed(cli_run, settings, huey) -> None:
    """The demo shop (without its living present, whose figures move with the clock), plus a
    row in every status the figures bucket, open and rejected failures, a live worker's run
    and a dead one's, and jobs on every queue band."""
    assert cli_run("db", "upgrade")[0] == 0
    engine = runtime.engine()
    load_demo(engine)
    now = utcnow()
    with Session(engine) as s:
        statuses = ("queued", "sending", "sent", "sent", "failed", "cancelled", "unknown", "odd")
        for i, status in enumerate(statuses):
            s.add(TextMessage(channel="sms", kind="k", to_number="+2348000000000",
                              from_number="+1", body="b", status=status,
                              idempotency_key=f"m{i}"))
            s.add(EmailOutbox(kind="k", to_address="a@example.com", subject="s", html="h",
                              text="t", status=status, idempotency_key=f"e{i}"))
        for i, (status, error) in enumerate([("failed", "ValueError"),
                                             ("interrupted", REJECTED_ERROR_TYPE),
                                             ("retried", REJECTED_ERROR_TYPE)]):
            s.add(FailedJob(task_id=f"t{i}", task_name="x", queue="emails", status=status,
                            error_type=error, error_message="boom"))
        s.add(Worker(id="live", host="h", pid=1, heartbeat_at=now))
        s.add(Worker(id="stale", host="h", pid=2, heartbeat_at=now - timedelta(hours=1)))
        s.commit()
        s.add(JobRun(task_id="r1", task_name="x", queue="emails", worker_id="live"))
        s.add(JobRun(task_id="r2", task_name="x", queue="webhooks", worker_id="live"))
        s.add(JobRun(task_id="r3", task_name="x", queue="emails", worker_id="stale"))
        s.commit()
    for queue in ("emails", "inventory", "webhooks"):
        huey.storage.enqueue(b"opaque", priority_for(queue, 5))
    huey.storage.enqueue(b"opaque", 3)  # below every band: counted as inventory


def test_fast_and_full_paths_print_the_same_document(database_url, queue_backend, cli_run,
                                                     settings, huey):
    _seed(cli_run, settings, huey)
    runtime.configure(settings)
    fast = fast_document(settings)
    assert fast is not None, "the fast path declined a healthy system"
    full = full_document(settings)
    assert same_json(fast, full), (fast, full)
    assert fast["queues"]["emails"] == {"pending": 1, "scheduled": 0, "in_flight": 1}
    assert fast["queues"]["inventory"]["pending"] == 2
    assert fast["failed_jobs"] == 2 and fast["rejected_payloads"] == 1
    assert fast["low_stock"], "the demo shop has low stock"
    assert fast["outbox"] == {"queued": 2, "sent": 2, "failed": 1}
    assert fast["messages"] == {"queued": 2, "sent": 2, "failed": 2, "unknown": 1}


def test_the_command_prints_the_fast_document(database_url, queue_backend, cli_run, settings,
                                              huey):
    _seed(cli_run, settings, huey)
    code, out, err = cli_run("status", "--json")
    assert code == 0, err
    runtime.configure(settings)
    assert same_json(json.loads(out), full_document(settings))


def test_scheduled_jobs_go_the_full_way(queue_backend, cli_run, settings, huey):
    """Telling scheduled jobs' queues apart means unpickling them: the full path does it."""
    assert cli_run("db", "upgrade")[0] == 0
    huey.storage.add_to_schedule(b"opaque", utcnow().replace(tzinfo=None) + timedelta(hours=1))
    assert fast_document(settings) is None
    code, out, err = cli_run("status", "--json")
    assert code == 0, err
    assert sum(q["scheduled"] for q in json.loads(out)["queues"].values()) == 1


def test_a_database_behind_the_head_goes_the_full_way(cli_run, settings):
    assert cli_run("db", "upgrade")[0] == 0
    with runtime.engine().begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001_initial'"))
    assert fast_document(settings) is None
    code, out, _ = cli_run("status", "--json")
    assert code == 1
    assert "run `kolaq-console db upgrade`" in json.loads(out)["storage"]["database"]


def test_a_missing_queue_file_goes_the_full_way(cli_run, settings, tmp_path):
    assert cli_run("db", "upgrade")[0] == 0
    (tmp_path / "queue.db").unlink()
    assert fast_document(settings) is None


def test_a_redis_queue_without_a_signing_key_goes_the_full_way(cli_run, settings):
    """The full path refuses it (anyone able to write to Redis could run code in workers)."""
    assert cli_run("db", "upgrade")[0] == 0
    env = {"KOLAQ_QUEUE__BACKEND": "redis", "KOLAQ_SIGNING_KEY": ""}
    code, _, err = cli_run("status", "--json", env=env)
    assert code == 1 and "KOLAQ_SIGNING_KEY is not set" in err
