"""Health figures are values or unknown with the time of their last good read: real outages
(a throwaway Redis killed, a PostgreSQL database renamed away) read as unknown and stale since
then, never 0, and the next reading after the service is back is whole again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from helpers import wait_until
from sqlmodel import Session
from test_queue_outage import ThrowawayRedis

from kolaq_console.db import make_engine
from kolaq_console.health import JOB_SURPLUS, Figure, Health, HealthTracker, read_health
from kolaq_console.models import EmailOutbox, Worker
from kolaq_console.schema import upgrade
from kolaq_console.taskqueue import make_huey, priority_for

T0 = datetime(2026, 11, 28, 16, 2, tzinfo=UTC)


def _worker(session: Session, name: str, beat: datetime) -> None:
    session.add(Worker(id=name, host=name, pid=1, started_at=beat, heartbeat_at=beat))


def test_workers_live_and_dead_come_from_the_registry_and_outbox_waiting_from_its_rows(
        sqlite_engine, settings, huey):
    with Session(sqlite_engine) as s:
        _worker(s, "alive", T0 - timedelta(seconds=5))
        _worker(s, "silent", T0 - timedelta(hours=1))
        for i in range(3):
            s.add(EmailOutbox(kind="t", to_address=f"a{i}@example.com", subject="s", html="h",
                              text="t", idempotency_key=f"k{i}"))
        s.commit()

    @huey.task(priority=priority_for("emails"))
    def send(row_id):
        pass

    send(1)
    h = read_health(sqlite_engine, huey, 60, T0)
    assert (h.workers_live.value, h.workers_dead.value) == (1, 1)
    assert (h.outbox_waiting.value, h.queue_depth.value) == (3, 1)
    assert h.database.read_at == T0 and h.mismatch is None


def test_waiting_rows_without_a_sending_job_are_a_mismatch_and_so_are_surplus_jobs():
    def health(waiting: int | None, depth: int | None) -> Health:
        ok = Figure("ok", T0)
        return Health(T0, ok, ok, Figure(1, T0), Figure(0, T0), Figure(waiting, T0),
                      Figure(depth, T0))

    assert "no sending job" in (health(4, 0).mismatch or "")
    assert health(4, 1).mismatch is None
    assert health(0, JOB_SURPLUS).mismatch is None
    assert health(0, JOB_SURPLUS + 1).mismatch == f"{JOB_SURPLUS + 1} jobs beyond the waiting rows"
    assert health(None, 0).mismatch is None  # unknown is not a mismatch


@pytest.mark.redis
def test_a_killed_redis_reads_queue_unknown_stale_since_the_last_read_and_recovers(
        tmp_path, make_settings, sqlite_engine):
    server = ThrowawayRedis(tmp_path)
    server.start()
    try:
        settings = make_settings(queue__backend="redis", queue__redis_url=server.url)
        huey = make_huey(settings)
        tracker = HealthTracker()
        first = tracker.read(sqlite_engine, huey, 60, T0)
        assert first.queue.known and first.queue_depth.value == 0

        server.stop()  # kill -9: an outage, not a shutdown
        later = T0 + timedelta(minutes=3)
        down = tracker.read(sqlite_engine, huey, 60, later)
        assert down.queue.value is None and down.queue.stale_since() == T0
        assert down.queue_depth.value is None and down.queue_depth.stale_since() == T0
        assert down.queue_problem and down.database.known  # the database still reads
        assert down.outbox_waiting.value == 0  # a figure of the database, still counted

        server.start()  # the same port: the next readings recover by themselves
        back = wait_until(lambda: (h := tracker.read(sqlite_engine, huey, 60,
                                                     later + timedelta(minutes=1))).queue.known
                          and h, timeout=10, message="the queue to read again")
        assert back.queue_depth.value == 0 and back.queue.read_at == later + timedelta(minutes=1)
    finally:
        server.stop()


@pytest.mark.postgres
def test_a_renamed_postgres_database_reads_db_unknown_stale_since_and_recovers(
        postgres_url, pg_admin, make_settings, huey):
    name = postgres_url.rsplit("/", 1)[1]
    engine = make_engine(postgres_url)
    upgrade(engine)
    tracker = HealthTracker()
    assert tracker.read(engine, huey, 60, T0).workers_live.value == 0

    engine.dispose()
    pg_admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     f"WHERE datname = '{name}'")
    pg_admin.execute(f'ALTER DATABASE "{name}" RENAME TO "{name}_away"')
    try:
        down = tracker.read(engine, huey, 60, T0 + timedelta(minutes=5))
        for figure in (down.database, down.workers_live, down.workers_dead,
                       down.outbox_waiting, down.queue_depth):
            assert figure.value is None and figure.stale_since() == T0  # unknown, never 0
        assert "does not exist" in (down.database_problem or "")
        assert down.queue.known  # the queue still reads
    finally:
        engine.dispose()
        pg_admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         f"WHERE datname = '{name}_away'")
        pg_admin.execute(f'ALTER DATABASE "{name}_away" RENAME TO "{name}"')
    back = tracker.read(engine, huey, 60, T0 + timedelta(minutes=6))
    assert back.database.known and back.workers_live.value == 0
    engine.dispose()


def test_a_figure_never_read_has_no_stale_time(tmp_path, huey):
    broken = make_engine(f"sqlite:///{tmp_path / 'nothing.db'}")  # no tables
    h = HealthTracker().read(broken, huey, 60, T0)
    assert h.database.value is None and h.database.stale_since() is None
    assert h.workers_live.value is None and h.queue.known
