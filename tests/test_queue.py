"""The queue on SqliteHuey and Redis, through real consumer processes."""

from __future__ import annotations

import itertools
import pickle
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import ROOT, wait_until
from huey.serializer import SignedSerializer

from kolaq_console.config import Settings
from kolaq_console.taskqueue import (
    PRIORITY_BANDS,
    make_huey,
    pending_by_queue,
    priority_for,
    queue_depths,
    queue_for_priority,
    task_options,
)

TESTS = str(ROOT / "tests")


def consumer_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "huey.bin.huey_consumer", "queue_tasks.huey", *args]


@pytest.fixture
def consumer_env(kolaq_env) -> dict[str, str]:
    return {"PYTHONPATH": f"{ROOT}:{TESTS}"}


@pytest.fixture
def qt(settings, monkeypatch):
    """The queue_tasks module built for this test's settings (in-process producer side)."""
    monkeypatch.syspath_prepend(TESTS)
    sys.modules.pop("queue_tasks", None)
    import queue_tasks

    yield queue_tasks
    sys.modules.pop("queue_tasks", None)


def test_priority_bands_round_trip():
    for name in PRIORITY_BANDS:
        assert queue_for_priority(priority_for(name)) == name
        assert queue_for_priority(priority_for(name, 99)) == name
    with pytest.raises(ValueError, match="unknown logical queue"):
        priority_for("sms")


def test_task_options_carry_the_configured_retry_policy(settings: Settings):
    opts = task_options(settings, "emails")
    assert opts == {"priority": 200, "retries": 3, "retry_delay": 0.05, "retry_backoff": 5.0}
    assert task_options(settings, "webhooks", retry=False) == {"priority": 300}


def test_consumers_poll_at_most_every_configured_interval(settings):
    """An idle queue picks up new work within max_poll_interval, not Huey's 10 s back-off;
    huey_consumer's own flags still win when given."""
    h = make_huey(settings)
    consumer = h.create_consumer()
    assert consumer.worker_threads[0][0].max_delay == settings.queue.max_poll_interval
    assert consumer.workers == settings.queue.workers
    assert consumer.shutdown_timeout == settings.queue.shutdown_timeout
    explicit = h.create_consumer(workers=2, max_delay=3.0)
    assert (explicit.workers, explicit.worker_threads[0][0].max_delay) == (2, 3.0)
    # One thread, chosen on purpose (`kolaq-console worker -w 1`), although Huey's default.
    assert h.create_consumer(workers=1, kolaq_explicit=("workers",)).workers == 1


def test_the_scheduler_looks_for_due_retries_every_configured_interval(make_settings):
    """Below Huey's 1 s floor too: the tests' scaled-down retries are not held a second."""
    consumer = make_huey(make_settings(queue__scheduler_interval="0.1")).create_consumer()
    assert consumer._create_scheduler().interval == 0.1
    consumer = make_huey(make_settings(queue__scheduler_interval="2")).create_consumer()
    assert consumer._create_scheduler().interval == 2.0


def test_depth_per_logical_queue_counts_pending_and_scheduled(queue_backend, qt, tmp_path):
    out = str(tmp_path / "out")
    for _ in range(3):
        qt.record(out, "x")
    qt.flaky(out, 0)
    qt.webhook_noop()
    qt.webhook_noop()
    # What a retry or a consumer-held delayed task looks like: an entry in the schedule.
    later = qt.record.s(out, "later")
    later.eta = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)
    qt.huey.add_schedule(later)
    assert pending_by_queue(qt.huey) == {"emails": 3, "inventory": 1, "webhooks": 2}
    depths = queue_depths(qt.huey, in_flight={"emails": 1})
    assert depths["emails"].scheduled == 1
    assert depths["emails"].in_flight == 1
    assert depths["inventory"].scheduled == 0
    qt.huey.flush()


def test_real_consumer_runs_tasks_and_retries_on_the_backoff(
    queue_backend, qt, spawn, consumer_env, tmp_path
):
    out, attempts = tmp_path / "out", tmp_path / "attempts"
    consumer = spawn(cmd=consumer_cmd(), env=consumer_env, name="consumer")
    for i in range(20):
        qt.record(str(out), str(i))
    qt.flaky(str(attempts), 3)

    wait_until(lambda: out.exists() and len(out.read_text().split()) == 20, message="20 records")
    wait_until(lambda: attempts.exists() and len(attempts.read_text().split()) == 4, timeout=30,
               message="4 attempts of the flaky task")
    assert sorted(out.read_text().split(), key=int) == [str(i) for i in range(20)]

    times = [float(t) for t in attempts.read_text().split()]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 5 s, 25 s, 125 s scaled by 1/100 in tests/fixtures/config.toml. Huey's scheduler ticks
    # once a second, so gaps are lower bounds: no retry may come before its backoff delay (the
    # third gap >= 1.25 s only holds if the delay was multiplied twice).
    for gap, delay in zip(gaps, [0.05, 0.25, 1.25], strict=True):
        assert gap >= delay * 0.95, (gaps, "retried before its backoff delay")
    consumer.stop()


def test_forged_unsigned_payload_is_rejected_not_executed(
    queue_backend, qt, spawn, consumer_env, tmp_path
):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    # What an attacker with write access to Redis/the queue file would push: a bare pickle.
    qt.huey.storage.enqueue(pickle.dumps(Exploit()), priority=200)
    # And a validly signed task after it, to show the consumer survives the forgery.
    out = tmp_path / "out"
    consumer = spawn(cmd=consumer_cmd(), env=consumer_env, name="consumer")
    qt.record(str(out), "legit")
    wait_until(out.exists, message="the legitimate task to run")
    assert not marker.exists()
    consumer.wait_for_output("refused a queue payload of")
    consumer.stop()


def test_a_differently_keyed_producer_cannot_run_tasks(queue_backend, qt, spawn, consumer_env,
                                                       tmp_path):
    rogue = SignedSerializer(secret="someone-else", salt="kolaq")
    message = qt.huey._registry.create_message(qt.record.s(str(tmp_path / "rogue"), "x"))
    msg = rogue.serialize(message)
    qt.huey.storage.enqueue(msg, priority=200)
    consumer = spawn(cmd=consumer_cmd(), env=consumer_env, name="consumer")
    qt.record(str(tmp_path / "ok"), "legit")
    wait_until((tmp_path / "ok").exists, message="the legitimate task")
    assert not Path(tmp_path / "rogue").exists()
    consumer.stop()


def test_the_worker_command_runs_the_number_of_threads_asked_even_one(sqlite_engine, spawn):
    proc = spawn("worker", "-w", "1", "--no-periodic")
    proc.wait_for_output("Huey consumer started with")
    assert "started with 1 thread" in proc.output()
