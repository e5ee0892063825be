"""Sending message rows through the real `twilio` SDK against the strict stand-in, on both
databases: each kind on each channel, Twilio's errors classified, and exactly once without an
idempotency key (an attempt whose outcome is unknown is looked up in the message list before
anything is sent again; what the list cannot answer becomes `unknown`)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from email_support import activity, seed_order
from huey.exceptions import RetryTask
from sms_support import ACCOUNT, ADA_PHONE, TEMPLATE_TEXTS, TOKEN, set_phone, text
from sqlalchemy import update
from sqlmodel import Session, select
from stubs.twilio_api import TwilioStub

from kolaq_console import dispatch
from kolaq_console.emails.transports import TransientError
from kolaq_console.errors import PermanentJobError
from kolaq_console.models import Customer, PhoneOptOut, TextMessage, utcnow
from kolaq_console.sms import outbox
from kolaq_console.sms.delivery import claim, deliver
from kolaq_console.sms.transports import DevTransport, TwilioTransport

LOW = {"products": [{"sku": "KB-ORIG-750", "stock": 3, "threshold": 10}]}
KIND_ARGS = {
    "order_confirmation": {"order_number": "KB-1001"},
    "shipping_notification": {"order_number": "KB-1001"},
    "order_status_update": {"order_number": "KB-1001"},
    "low_stock": {"context": LOW},
    "generic": {"to": ADA_PHONE, "body": "Your bottle is ready for pickup."},
}


@pytest.fixture
def stub():
    with TwilioStub(ACCOUNT, TOKEN, templates=TEMPLATE_TEXTS) as s:
        yield s


@pytest.fixture
def twilio(stub):
    return TwilioTransport(ACCOUNT, TOKEN, stub.url, timeout=2.0)


@pytest.fixture
def shop(engine):
    seed_order(engine, "KB-1001", status="shipped", carrier="GIG Logistics", tracking="GIG123",
               tracking_url="https://track.example/GIG123")
    set_phone(engine, sms=True, whatsapp=True)
    return engine


def queue(engine, settings, kind="generic", **kwargs):
    if not kwargs:
        kwargs = dict(KIND_ARGS[kind])
    with dispatch.recording(), Session(engine, expire_on_commit=False) as session:
        return outbox.queue_message(session, settings, kind, **kwargs).row.id


def send(engine, settings, row_id, transport, retries_left=3):
    return deliver(engine, settings, row_id, transport=transport, limiter=None,
                   retries_left=retries_left, retry_delay=0.0)


def make_due(engine, row_id):
    """Skip the scheduled retry delay (the worker tests prove the delays)."""
    with Session(engine) as s:
        s.execute(update(TextMessage).where(TextMessage.id == row_id)
                  .values(next_attempt_at=None))
        s.commit()


# generic has no WhatsApp template: refused before anything is stored (test_sms_outbox).
@pytest.mark.parametrize(("kind", "channel"), [(k, c) for k in KIND_ARGS for c in
                                               ("sms", "whatsapp") if (k, c) !=
                                               ("generic", "whatsapp")])
def test_each_kind_on_each_channel_reaches_twilio_once(shop, settings, stub, twilio, kind,
                                                      channel):
    row_id = queue(shop, settings, kind, channel=channel, **KIND_ARGS[kind])
    assert send(shop, settings, row_id, twilio) == "sent"
    [msg] = stub.messages
    row = text(shop, row_id)
    assert row.status == "sent" and row.provider_message_id == msg["sid"]
    assert row.delivery_status == "queued" and row.attempts == 1 and row.doubt_since is None
    prefix = "whatsapp:" if channel == "whatsapp" else ""
    assert msg["to"] == prefix + row.to_number and msg["from"] == prefix + "+2348090000001"
    if channel == "sms":
        assert msg["body"] == row.body and int(msg["num_segments"]) == row.segments
    else:  # the approved template, filled in by Twilio: never free text
        assert msg["body"] != row.body and msg["status"] != "failed"
        assert all(v in msg["body"] for v in row.content_variables.values())
    # a second delivery of the same row (a re-run job) sends nothing
    assert send(shop, settings, row_id, twilio) == "skipped"
    assert len(stub.messages) == 1


def test_invalid_number_fails_at_once_with_twilios_reason(shop, settings, stub, twilio):
    stub.configure(invalid_numbers=[ADA_PHONE])
    row_id = queue(shop, settings, "generic")
    with pytest.raises(PermanentJobError, match="21211"):
        send(shop, settings, row_id, twilio)
    row = text(shop, row_id)
    assert row.status == "failed" and row.error_code == 21211 and row.attempts == 1
    assert "Invalid 'To' Phone Number" in row.last_error and stub.messages == []


def test_unsubscribed_recipient_fails_at_once_and_records_the_opt_out(shop, settings, stub,
                                                                      twilio):
    stub.opt_out(ADA_PHONE)
    row_id = queue(shop, settings, "order_confirmation")
    with pytest.raises(PermanentJobError, match="21610"):
        send(shop, settings, row_id, twilio)
    assert text(shop, row_id).status == "failed" and text(shop, row_id).error_code == 21610
    with Session(shop) as s:
        [opt] = s.exec(select(PhoneOptOut)).all()
        assert (opt.number, opt.channel, opt.reason) == (ADA_PHONE, "sms", "twilio 21610")
        assert not s.exec(select(Customer)).one().sms_consent
    assert "consent.sms_opt_out" in [a.action for a in activity(shop)]


def test_auth_failure_fails_at_once_naming_the_settings_without_the_token(shop, settings,
                                                                          stub):
    wrong = TwilioTransport(ACCOUNT, TOKEN[::-1], stub.url, timeout=2.0)
    row_id = queue(shop, settings, "generic")
    with pytest.raises(PermanentJobError, match="20003"):
        send(shop, settings, row_id, wrong)
    row = text(shop, row_id)
    assert row.status == "failed" and "TWILIO_AUTH_TOKEN" in row.last_error
    assert TOKEN not in row.last_error and TOKEN[::-1] not in row.last_error


def test_rate_limit_reschedules_without_spending_a_retry(shop, settings, stub, twilio):
    stub.inject(429)
    row_id = queue(shop, settings, "generic")
    with pytest.raises(RetryTask):
        send(shop, settings, row_id, twilio, retries_left=0)
    row = text(shop, row_id)
    assert row.status == "queued" and "20429" in row.last_error and row.doubt_since is None
    make_due(shop, row_id)
    assert send(shop, settings, row_id, twilio, retries_left=0) == "sent"
    assert len(stub.messages) == 1


def test_server_errors_retry_and_fail_only_when_retries_run_out(shop, settings, stub, twilio):
    stub.inject(500, times=2)
    row_id = queue(shop, settings, "generic")
    with pytest.raises(TransientError):
        send(shop, settings, row_id, twilio, retries_left=1)
    assert text(shop, row_id).status == "queued" and text(shop, row_id).doubt_since is None
    make_due(shop, row_id)
    with pytest.raises(TransientError):
        send(shop, settings, row_id, twilio, retries_left=0)
    row = text(shop, row_id)
    assert row.status == "failed" and "retries exhausted" in row.last_error
    assert stub.messages == []


def test_a_lost_answer_is_looked_up_before_sending_again_and_not_sent_twice(
    shop, settings, stub, twilio
):
    """Twilio created the message but the answer never came: the next attempt finds it in
    the message list and records it instead of sending a second one."""
    stub.inject(drop=True, after_processing=True)
    row_id = queue(shop, settings, "shipping_notification")
    with pytest.raises(TransientError, match="may have been sent"):
        send(shop, settings, row_id, twilio)
    row = text(shop, row_id)
    assert row.status == "queued" and row.doubt_since is not None
    make_due(shop, row_id)
    assert send(shop, settings, row_id, twilio) == "sent"
    [msg] = stub.messages
    row = text(shop, row_id)
    assert row.provider_message_id == msg["sid"] and "not sent again" in row.last_error
    assert [r.method for r in stub.requests] == ["POST", "GET"]


def test_a_lost_request_is_looked_up_then_sent_once(shop, settings, stub, twilio):
    """The connection dropped before Twilio created anything: the list says so; send now."""
    stub.inject(drop=True)
    row_id = queue(shop, settings, "generic")
    with pytest.raises(TransientError):
        send(shop, settings, row_id, twilio)
    make_due(shop, row_id)
    assert send(shop, settings, row_id, twilio) == "sent"
    assert len(stub.messages) == 1
    assert [r.method for r in stub.requests] == ["POST", "GET", "POST"]


def lapse(engine, row_id):
    """What a worker killed mid-send leaves: `sending`, its lease run out, no provider id."""
    with Session(engine) as s:
        s.execute(update(TextMessage).where(TextMessage.id == row_id)
                  .values(lease_until=utcnow() - timedelta(seconds=1)))
        s.commit()


@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
def test_a_worker_killed_after_twilio_accepted_leaves_a_row_the_next_attempt_settles(
    shop, settings, stub, twilio, channel
):
    row_id = queue(shop, settings, "order_confirmation", channel=channel,
                   order_number="KB-1001")
    claimed = claim(shop, row_id, settings.sms.lease_seconds)  # the dead worker's claim...
    twilio.send(claimed.outgoing(settings))  # ...and its call, whose answer was never stored
    lapse(shop, row_id)
    assert send(shop, settings, row_id, twilio) == "sent"
    [msg] = stub.messages
    assert text(shop, row_id).provider_message_id == msg["sid"]
    assert text(shop, row_id).attempts == 2


def test_a_worker_killed_before_its_call_leaves_a_row_that_is_sent_once(shop, settings, stub,
                                                                       twilio):
    row_id = queue(shop, settings, "generic")
    claim(shop, row_id, settings.sms.lease_seconds)
    lapse(shop, row_id)
    assert send(shop, settings, row_id, twilio) == "sent"
    assert len(stub.messages) == 1


def test_two_matching_messages_in_the_list_make_the_row_unknown_never_a_third(
    shop, settings, stub, twilio
):
    row_id = queue(shop, settings, "generic")
    claimed = claim(shop, row_id, settings.sms.lease_seconds)
    twilio.send(claimed.outgoing(settings))
    twilio.send(claimed.outgoing(settings))
    lapse(shop, row_id)
    assert send(shop, settings, row_id, twilio) == "unknown"
    row = text(shop, row_id)
    assert row.status == "unknown" and "2 messages" in row.last_error
    assert len(stub.messages) == 2
    assert send(shop, settings, row_id, twilio) == "skipped"  # unknown is not claimable


def test_a_message_another_row_owns_is_not_taken_for_this_one(shop, settings, stub, twilio):
    """Same text to the same number a minute earlier, sent by another row: not ours."""
    first = queue(shop, settings, "generic")
    assert send(shop, settings, first, twilio) == "sent"
    with Session(shop, expire_on_commit=False) as s, dispatch.recording():
        again = outbox.resend_message(s, settings, first)
    claim(shop, again.id, settings.sms.lease_seconds)
    lapse(shop, again.id)
    assert send(shop, settings, again.id, twilio) == "sent"
    assert len(stub.messages) == 2
    assert text(shop, again.id).provider_message_id != text(shop, first).provider_message_id


def test_a_history_longer_than_the_lookup_limit_makes_the_row_unknown(shop, settings, stub):
    small = TwilioTransport(ACCOUNT, TOKEN, stub.url, timeout=2.0, lookup_limit=10)
    for i in range(10):
        small.send(outbox_message(i))
    row_id = queue(shop, settings, "generic")
    claim(shop, row_id, settings.sms.lease_seconds)
    lapse(shop, row_id)
    assert send(shop, settings, row_id, small) == "unknown"
    assert "lookup_limit" in text(shop, row_id).last_error
    assert len(stub.messages) == 10


def outbox_message(i):
    from kolaq_console.sms.transports import Outgoing

    return Outgoing(0, "sms", "generic", ADA_PHONE, "+2348090000001", f"older {i}", f"k{i}")


def test_an_unknown_row_is_decided_by_an_operator(shop, settings, stub, twilio):
    row_id = queue(shop, settings, "generic")
    with Session(shop) as s:
        s.execute(update(TextMessage).where(TextMessage.id == row_id)
                  .values(status="unknown", last_error="?"))
        s.commit()
    with Session(shop) as s, pytest.raises(Exception, match="may already have been delivered"):
        outbox.retry_message(s, settings, row_id)
    with Session(shop) as s, dispatch.recording() as calls:
        outbox.retry_message(s, settings, row_id, accept_duplicate=True)
    assert [c.args for c in calls] == [(row_id,)]
    assert send(shop, settings, row_id, twilio) == "sent" and len(stub.messages) == 1
    assert activity(shop)[-1].action == "message.retry"


def test_a_stop_after_queueing_cancels_the_send(shop, settings, stub, twilio):
    from kolaq_console import channel_consent

    row_id = queue(shop, settings, "order_confirmation")
    with Session(shop) as s:
        channel_consent.record_opt_out(s, ADA_PHONE, "sms", reason="stop", source="test")
        s.commit()
    assert send(shop, settings, row_id, twilio) == "cancelled"
    assert text(shop, row_id).status == "cancelled" and stub.messages == []


def test_the_dev_transport_writes_one_readable_file_per_message(shop, settings, tmp_path):
    dev = DevTransport(tmp_path / "outbox")
    sms = queue(shop, settings, "shipping_notification")
    wa = queue(shop, settings, "order_confirmation", channel="whatsapp", order_number="KB-1001")
    assert send(shop, settings, sms, dev) == "sent" and send(shop, settings, wa, dev) == "sent"
    files = sorted((tmp_path / "outbox").glob("*.txt"))
    assert len(files) == 2
    sms_text = next(f for f in files if f.name.startswith("sms_")).read_text()
    assert "To: +2348031234567" in sms_text and "Segments: 1 segment (GSM7" in sms_text
    assert "GIG Logistics" in sms_text
    wa_text = next(f for f in files if f.name.startswith("whatsapp_")).read_text()
    assert "To: whatsapp:+2348031234567" in wa_text and "Template: HX" in wa_text
    # a dev send interrupted after writing is found by its file, not written twice
    generic = queue(shop, settings, "generic")
    claimed = claim(shop, generic, settings.sms.lease_seconds)
    dev.send(claimed.outgoing(settings))
    lapse(shop, generic)
    assert send(shop, settings, generic, dev) == "sent"
    assert "not sent again" in text(shop, generic).last_error
    assert len(list((tmp_path / "outbox").glob("*.txt"))) == 3


def test_messages_of_a_dead_worker_are_handed_back_in_doubt_and_sent_once(shop, settings,
                                                                        stub, twilio):
    """A worker known dead (kill -9) held two messages: one Twilio had accepted, one it never
    got. Both come back at once; the list settles the first, the second is sent."""
    accepted = queue(shop, settings, "generic", to=ADA_PHONE, body="accepted")
    never = queue(shop, settings, "generic", to=ADA_PHONE, body="never")
    first = claim(shop, accepted, 60, worker_id="host:1:dead")
    claim(shop, never, 60, worker_id="host:1:dead")
    twilio.send(first.outgoing(settings))
    with dispatch.recording() as calls:
        assert outbox.release_claims_of(shop, settings, ["host:1:dead"]) == [accepted, never]
    assert [c.args for c in calls] == [(accepted,), (never,)]
    assert all(text(shop, i).doubt_since is not None for i in (accepted, never))
    assert send(shop, settings, accepted, twilio) == "sent"
    assert send(shop, settings, never, twilio) == "sent"
    assert sorted(m["body"] for m in stub.messages) == ["accepted", "never"]
