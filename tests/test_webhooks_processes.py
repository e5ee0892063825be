"""`kolaq-console webhooks serve` and `worker` as real processes: a payment acknowledged with a
2xx survives a worker killed with -9 before it processed it, and takes effect once (SQLite
database + SQLite queue, PostgreSQL + Redis); the server stops gracefully on SIGTERM."""

from __future__ import annotations

import signal
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from email_support import rows, seed_order
from helpers import wait_until
from sqlmodel import Session, select
from webhook_support import (
    make_secrets,
    paystack_charge,
    post_event,
    request,
    served_url,
)

from kolaq_console.models import InventoryEvent, Order, WebhookEvent
from kolaq_console.taskqueue import pending_by_queue

pytestmark = pytest.mark.slow

TOTAL = 2 * 1_250_000 + 450_000 + 250_000


@pytest.fixture
def queue_backend(database_url):
    """SQLite database with the SQLite queue; PostgreSQL with Redis (the production pair)."""
    return "redis" if database_url.startswith("postgresql") else "sqlite"


@pytest.fixture
def secrets_env():
    return make_secrets()


@pytest.fixture
def tasks_module(engine, tasks_module):
    return tasks_module  # conftest's, on this test's queue (so it can read its depth), after engine


def start_server(spawn, secrets_env):
    proc = spawn("webhooks", "serve", "--port", "0", env=secrets_env, name="server")
    wait_until(lambda: served_url(proc.output()) or proc.popen.poll() is not None,
               message="the server to announce its address")
    url = served_url(proc.output())
    assert url, proc.output()
    return proc, url


def freeze(worker, settings) -> None:
    """SIGSTOP the worker, but not inside a write: on SQLite a frozen writer (its heartbeat,
    a periodic task) would hold the database's write lock and block the receiver's insert."""
    url = settings.database.url
    for _ in range(100):
        worker.signal(signal.SIGSTOP)
        if url.startswith("postgresql"):
            return  # row locks on other tables do not block the receiver's insert
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0.2,
                               isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # frozen mid-write: let it finish, try again
            worker.signal(signal.SIGCONT)
            time.sleep(0.05)
        finally:
            conn.close()
    raise AssertionError("the worker kept the SQLite write lock for 100 tries")


@contextmanager
def holding_the_order(settings, number: str):
    """Keep the worker from finishing: PostgreSQL, the order's row lock; SQLite, the write
    lock. The worker's job waits inside its transaction, having left the queue."""
    url = settings.database.url
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
            conn.execute("SELECT id FROM orders WHERE number = %s FOR UPDATE", (number,))
            yield
            conn.rollback()
    else:
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30,
                               isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()


def snapshot(engine, number="KB-1001"):
    with Session(engine) as s:
        order = s.exec(select(Order).where(Order.number == number)).one()
        sales = s.exec(select(InventoryEvent).where(InventoryEvent.reference == number)).all()
        events = s.exec(select(WebhookEvent)).all()
        return order, list(sales), list(events)


def test_worker_killed_between_the_2xx_and_processing_then_restart_processes_the_payment_once(
        engine, settings, tasks_module, spawn, secrets_env):
    order_id = seed_order(engine, "KB-1001", status="pending")
    with Session(engine) as s:
        o = s.get(Order, order_id)
        o.payment_reference, o.payment_status = "PSK-REF-1", "unpaid"
        s.add(o)
        s.commit()
    server, url = start_server(spawn, secrets_env)
    payment = paystack_charge("PSK-REF-1", TOTAL)
    huey = tasks_module.huey
    # No periodic tasks: one due while the lock is held would take the other thread (and
    # sweep_webhooks would sit on the webhooks queue the test waits to see empty).
    worker = spawn("worker", "-w", "2", "--no-periodic", env=secrets_env, name="worker")
    worker.wait_for_output("job ledger: worker")  # registered: it takes jobs from now on
    freeze(worker, settings)  # so the job waits for it in the queue

    reply = post_event(url, "paystack", payment, secrets_env)
    assert reply.status == 200 and reply.json()["status"] == "accepted"
    with holding_the_order(settings, "KB-1001"):
        worker.signal(signal.SIGCONT)
        wait_until(lambda: pending_by_queue(huey)["webhooks"] == 0,
                   message="the worker to take the job off the queue")
        time.sleep(0.5)  # let it reach the blocked statement (not an assertion)
        worker.kill9()
    order, sales, [event] = snapshot(engine)
    assert (order.status, sales, event.status) == ("pending", [], "received")

    # The provider retries meanwhile: a duplicate, acknowledged, no new job.
    assert post_event(url, "paystack", payment, secrets_env).json()["status"] == "duplicate"

    spawn("worker", "-w", "2", env=secrets_env, name="worker")

    def processed() -> bool:
        if snapshot(engine)[2][0].status == "processed":
            return True
        tasks_module.sweep_webhooks()  # what the every-minute schedule does
        time.sleep(0.3)
        return False

    wait_until(processed, timeout=60, interval=0.2, message="the event to be processed")
    order, sales, [event] = snapshot(engine)
    assert (order.status, order.payment_status) == ("paid", "paid")
    assert sorted(e.delta for e in sales) == [-2, -1]  # each line's stock moved once
    [confirmation] = [r for r in rows(engine) if r.order_id == order.id]
    assert confirmation.kind == "order_confirmation"
    wait_until(lambda: [r.status for r in rows(engine) if r.order_id == order.id] == ["sent"],
               message="the confirmation sent")
    written = [p for p in Path(settings.email.outbox_dir).glob("*.eml")
               if "KB-1001" in p.read_text(errors="replace")]
    assert len(written) == 1
    assert server.popen.poll() is None


def test_serve_answers_health_and_stops_gracefully_on_sigterm(engine, settings, spawn,
                                                              secrets_env):
    server, url = start_server(spawn, secrets_env)
    health = request(url, "GET", "/health")
    assert health.status == 200 and health.json()["providers"]["paystack"] is True
    server.signal(signal.SIGTERM)
    assert server.popen.wait(20) == 0
    out = server.output()
    assert "Finished server process" in out
    assert '"path":"/health","status":200' in out  # the structured access line
    for secret in secrets_env.values():
        assert secret not in out


def test_serve_refuses_the_redis_queue_without_a_signing_key(engine, settings, spawn):
    proc = spawn("webhooks", "serve", "--port", "0", name="server",
                 env={"KOLAQ_SIGNING_KEY": "", "KOLAQ_QUEUE__BACKEND": "redis"})
    assert proc.popen.wait(30) == 1
    assert "KOLAQ_SIGNING_KEY is not set" in proc.output()
