"""Real worker processes against the Twilio stand-in running as its own process: kill -9 of the
worker between Twilio's acceptance and the row update, then a restart, on both databases and
both queue backends. Twilio has no idempotency key: what proves "not sent twice" is the
stand-in's own message list."""

from __future__ import annotations

from collections import Counter

import pytest
from helpers import wait_until
from sms_support import ACCOUNT, TEMPLATE_TEXTS, TOKEN, texts, twilio_env
from sqlmodel import Session
from stubs.twilio_api import TwilioStubProcess

from kolaq_console.sms import outbox

pytestmark = pytest.mark.slow

NUMBERS = [f"+23480312345{i:02d}" for i in range(6)]


def queue_generic(engine, settings, numbers, channel="sms"):
    with Session(engine, expire_on_commit=False) as session:
        return [outbox.queue_message(session, settings, "generic", to=n, channel=channel,
                                     body=f"Your Kolaq order note for {n}").row.id
                for n in numbers]


def lapse_leases(engine):
    """Move the dead worker's leases into the past instead of waiting them out."""
    from datetime import timedelta

    from sqlalchemy import update

    from kolaq_console.models import TextMessage, utcnow

    with Session(engine) as s:
        s.execute(update(TextMessage).where(TextMessage.status == "sending")
                  .values(lease_until=utcnow() - timedelta(seconds=1)))
        s.commit()


def statuses(engine):
    return Counter(r.status for r in texts(engine))


def test_kill_9_between_twilios_answer_and_the_row_update_never_sends_twice(
    database_url, queue_backend, engine, settings, tasks_module, spawn
):
    with TwilioStubProcess(ACCOUNT, TOKEN, templates=TEMPLATE_TEXTS) as stub:
        env = twilio_env(stub.url)
        # Twilio creates each message, then its answer is held: the worker is killed while
        # every message exists at Twilio and no row has its provider id.
        stub.inject(delay=30, after_processing=True, method="POST", times=len(NUMBERS))
        ids = queue_generic(engine, settings, NUMBERS)
        # This worker waits for Twilio's answer as long as production would (30 s).
        patient = {**env, "KOLAQ_SMS__REQUEST_TIMEOUT": "30", "KOLAQ_SMS__LEASE_SECONDS": "60"}
        worker = spawn("worker", "-w", "8", env=patient, name="first")
        wait_until(lambda: len(stub.messages) == len(NUMBERS), timeout=30,
                   message="every message created at Twilio")
        worker.kill9()
        rows = texts(engine)
        assert {r.status for r in rows} == {"sending"}
        assert all(r.provider_message_id is None for r in rows)
        lapse_leases(engine)  # the minute that passes before anyone notices

        spawn("worker", "-w", "4", env=env, name="second")

        def all_sent() -> bool:
            if statuses(engine).get("sent", 0) == len(ids):
                return True
            tasks_module.sweep_text_outbox()  # what the every-minute schedule does
            return False

        wait_until(all_sent, timeout=60, interval=0.5, message="every message sent")
        messages = stub.messages
        assert len(messages) == len(NUMBERS)  # nothing was sent a second time
        by_number = {m["to"]: m["sid"] for m in messages}
        assert Counter(m["to"] for m in messages) == Counter(NUMBERS)
        for row in texts(engine):
            assert row.provider_message_id == by_number[row.to_number]
            assert "not sent again" in (row.last_error or "")
        lookups = [r for r in stub.requests if r.method == "GET"]
        assert len(lookups) >= len(NUMBERS)  # each re-attempt looked before sending


def test_kill_9_before_twilio_created_anything_sends_each_once_after_restart(
    sqlite_engine, settings, tasks_module, spawn
):
    """The opposite crash: the requests were held before Twilio acted (a slow network), the
    worker is killed, so nothing exists at Twilio; the restarted worker looks, finds nothing
    and sends each message once. WhatsApp messages go through their templates."""
    from email_support import seed_order
    from sms_support import set_phone

    with TwilioStubProcess(ACCOUNT, TOKEN, templates=TEMPLATE_TEXTS) as stub:
        env = twilio_env(stub.url)
        seed_order(sqlite_engine, "KB-1001")
        set_phone(sqlite_engine, sms=True, whatsapp=True)
        with Session(sqlite_engine, expire_on_commit=False) as session:
            wa = outbox.queue_message(session, settings, "order_confirmation",
                                      order_number="KB-1001", channel="whatsapp").row.id
        ids = [wa, *queue_generic(sqlite_engine, settings, NUMBERS[:3])]
        stub.inject(delay=30, method="POST", times=len(ids))  # held before processing
        patient = {**env, "KOLAQ_SMS__REQUEST_TIMEOUT": "30", "KOLAQ_SMS__LEASE_SECONDS": "60"}
        worker = spawn("worker", "-w", "8", env=patient, name="first")
        wait_until(lambda: statuses(sqlite_engine).get("sending", 0) == len(ids), timeout=30,
                   message="every message in flight")
        worker.kill9()
        assert stub.messages == []
        lapse_leases(sqlite_engine)
        spawn("worker", "-w", "4", env=env, name="second")

        def all_sent() -> bool:
            if statuses(sqlite_engine).get("sent", 0) == len(ids):
                return True
            tasks_module.sweep_text_outbox()
            return False

        wait_until(all_sent, timeout=60, interval=0.5, message="every message sent")
        messages = stub.messages
        assert len(messages) == len(ids)
        [whatsapp] = [m for m in messages if m["to"].startswith("whatsapp:")]
        assert whatsapp["status"] != "failed" and "KB-1001" in whatsapp["body"]
