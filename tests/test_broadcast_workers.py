"""Broadcasts with real worker processes and the Resend stand-in in its own process: kill -9
mid-broadcast then restart sends everyone exactly once; `broadcast send --yes` follows a
broadcast to its end at the provider's 2 requests/s in 3 requests."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from broadcast_support import seed_customers, subscribers
from email_support import KEY, provider_done
from helpers import run_cli, wait_until
from sqlmodel import Session, select
from stubs.resend_api import ResendStubProcess

from kolaq_console.broadcasts import lifecycle, progress
from kolaq_console.models import Broadcast, EmailOutbox

pytestmark = pytest.mark.slow


def resend_env(url: str, **extra: str) -> dict[str, str]:
    return {"KOLAQ_EMAIL__TRANSPORT": "resend", "RESEND_API_URL": url, "RESEND_API_KEY": KEY,
            "KOLAQ_SHOP__PUBLIC_URL": "https://shop.test",  # workers refuse a local address
            **extra}


def figures(engine, broadcast_id):
    with Session(engine) as s:
        return progress.progress(s, broadcast_id)


def test_kill_9_mid_broadcast_then_restart_sends_everyone_exactly_once(
    queue_backend, sqlite_engine, settings, tasks_module, spawn
):
    people = subscribers(250)
    seed_customers(sqlite_engine, people)
    with ResendStubProcess(api_keys=[KEY]) as stub:
        env = resend_env(stub.url)
        # The first batch request is answered soon, the next two are held until released: a
        # kill lands with one batch sent and others in flight, however loaded the machine is.
        stub.inject(delay=0.3, times=1, path="/emails/batch")
        stub.inject(delay=60, times=2, path="/emails/batch")
        with Session(sqlite_engine, expire_on_commit=False) as s:
            b = lifecycle.submit(s, settings, actor="ops", subject="Harmattan",
                                 body="Three drinks.", audience="subscribers").broadcast
        worker = spawn("worker", "-w", "4", env=env)
        # The batch answered first may be the 50 (batches are formed ahead and claimed in
        # any order): one batch answered, whichever it is.
        wait_until(lambda: len(stub.pending_idempotency_keys()) >= 1
                   and len(stub.deliveries) >= 50, timeout=30, message="batches in flight")
        worker.kill9()
        in_flight = figures(sqlite_engine, b.id)
        assert in_flight.status == "sending" and in_flight.sent < 250
        provider_done(stub)

        spawn("worker", "-w", "4", env=env)

        def finished() -> bool:
            if figures(sqlite_engine, b.id).status == "done":
                return True
            tasks_module.sweep_email_outbox()  # the every-minute sweep and broadcast tending
            time.sleep(0.5)
            return False

        wait_until(finished, timeout=90, interval=0.2, message="the broadcast to finish")
        per_address = Counter(d.to[0] for d in stub.deliveries)
        assert per_address == Counter(people)  # everyone, exactly once
        assert sum(r.replayed for r in stub.requests) >= 1  # a batch in flight was replayed
        assert max(r.emails for r in stub.requests) == 100
    done = figures(sqlite_engine, b.id)
    assert (done.sent, done.failed, done.skipped, done.total) == (250, 0, 0, 250)
    with Session(sqlite_engine) as s:
        assert {r.status for r in s.exec(select(EmailOutbox)).all()} == {"sent"}
        assert max(r.attempts for r in s.exec(select(EmailOutbox)).all()) >= 2


def test_broadcast_send_yes_follows_250_recipients_to_the_end_in_3_requests_at_2_per_second(
    sqlite_engine, settings, tasks_module, spawn, kolaq_env, tmp_path
):
    people = subscribers(250)
    seed_customers(sqlite_engine, people)
    body = tmp_path / "news.md"
    body.write_text("# Harmattan\n\nThree drinks for dry season.", encoding="utf-8")
    with ResendStubProcess(api_keys=[KEY], rate_limit=2) as stub:
        env = resend_env(stub.url, KOLAQ_EMAIL__RATE_LIMIT_PER_SECOND="2")
        spawn("worker", "-w", "4", env=env).wait_for_output("tasks.send_email")
        result = run_cli({**kolaq_env, **env}, "broadcast", "send", "--subject", "Harmattan",
                         "--body-file", str(body), "--audience", "subscribers", "--yes",
                         timeout=120)
        assert result.returncode == 0, result.stderr
        assert "250 recipient(s)" in result.stdout
        assert "done: 250 sent, 0 failed, 0 skipped" in result.stdout
        # batches formed ahead may reach the provider in any order
        assert sorted(r.emails for r in stub.requests) == [50, 100, 100]
        assert stub.max_requests_in_any_second() <= 2
        assert Counter(d.to[0] for d in stub.deliveries) == Counter(people)
    with Session(sqlite_engine) as s:
        assert s.exec(select(Broadcast)).one().status == "done"
