"""Queue depth is sampled once a minute per logical queue, a second sample in the same minute
replaces the first, old samples are pruned; the last hour reads with gaps where nothing was
sampled, and zeros only where a worker was alive to count them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from kolaq_console.jobs.depth import last_hour, sample_queue_depth, write_samples
from kolaq_console.models import JobStat, QueueDepthSample
from kolaq_console.taskqueue import priority_for

NOW = datetime(2026, 11, 28, 17, 2, 30, tzinfo=UTC)


def test_a_sample_counts_each_queue_and_a_second_one_in_the_minute_replaces_it(
        engine, settings, huey):
    @huey.task(priority=priority_for("emails"))
    def send(x):
        pass

    send(1)
    send(2)
    assert sample_queue_depth(engine, huey, 60, 24, NOW) == 3
    send(3)
    sample_queue_depth(engine, huey, 60, 24, NOW + timedelta(seconds=20))
    with Session(engine) as s:
        rows = {r.queue: r for r in s.exec(select(QueueDepthSample)).all()}
    assert set(rows) == {"emails", "inventory", "webhooks"}
    assert rows["emails"].pending == 3 and rows["inventory"].pending == 0


def test_samples_older_than_the_retention_are_pruned(engine, settings, huey):
    write_samples(engine, [{"minute": NOW - timedelta(hours=30), "queue": "emails",
                            "pending": 5, "scheduled": 0, "in_flight": 0}])
    sample_queue_depth(engine, huey, 60, 24, NOW)
    with Session(engine) as s:
        minutes = {r.minute for r in s.exec(select(QueueDepthSample)).all()}
    assert minutes == {NOW.replace(second=0)}


def test_the_last_hour_has_gaps_where_nothing_was_sampled_not_zeros(sqlite_engine):
    minute = NOW.replace(second=0)
    write_samples(sqlite_engine, [
        {"minute": minute - timedelta(minutes=m), "queue": q, "pending": 4, "scheduled": 1,
         "in_flight": None}
        for m in (0, 1, 2) for q in ("emails", "inventory", "webhooks")])
    with Session(sqlite_engine) as s:
        s.add(JobStat(minute=minute - timedelta(minutes=1), queue="emails",
                      task_name="tasks.send_email", completed=7, failed=1))
        s.add(JobStat(minute=minute - timedelta(minutes=30), queue="emails",
                      task_name="tasks.send_email", completed=2))
        s.commit()
        charts = last_hour(s, NOW)
    emails = charts.queues["emails"]
    assert emails.depth[-3:] == [5, 5, 5] and emails.depth[:57] == [None] * 57
    assert emails.completed[-3:] == [0, 7, 0]  # sampled minutes: a worker was alive, 0 is 0
    assert emails.failed[-2] == 1
    assert emails.completed[-31] == 2  # jobs ran: counted, though no depth was sampled
    assert charts.queues["webhooks"].completed[-31] == 0  # and the other queues are 0 there
    assert emails.completed[10] is None  # nothing at all: a gap
