"""Twilio's requests to /webhooks/twilio, on both databases: status callbacks signed with
X-Twilio-Signature move the row's delivery state (forged ones change nothing), inbound STOP
and START are honoured, and order notices go out on every channel the customer allowed."""

from __future__ import annotations

import pytest
from email_support import activity, seed_order
from sms_support import ACCOUNT, ADA_PHONE, TEMPLATE_TEXTS, TOKEN, set_phone, text, texts
from sqlmodel import Session, select
from stubs.twilio_api import TwilioStub, signature

from kolaq_console import dispatch
from kolaq_console.models import Customer, Order, PhoneOptOut
from kolaq_console.sms import outbox
from kolaq_console.sms.delivery import deliver
from kolaq_console.sms.notify import notify_order_status
from kolaq_console.sms.transports import TwilioTransport
from kolaq_console.sms.webhook import handle

BASE = "http://shop.test/webhooks/twilio"


@pytest.fixture
def twilio_settings(make_settings):
    from kolaq_console import runtime

    s = make_settings(TWILIO_AUTH_TOKEN=TOKEN, TWILIO_ACCOUNT_SID=ACCOUNT)
    runtime.configure(s)
    return s


def signed(form, url=BASE, token=TOKEN):
    return {"url": url, "form": form, "signature": signature(token, url, form)}


def status_form(sid, status, **extra):
    return {"AccountSid": ACCOUNT, "MessageSid": sid, "SmsSid": sid, "MessageStatus": status,
            "SmsStatus": status, "To": ADA_PHONE, "From": "+2348090000001",
            "ApiVersion": "2010-04-01", **extra}


def sent_row(engine, settings, stub):
    seed_order(engine, "KB-1001", status="shipped", carrier="GIG", tracking="T1")
    set_phone(engine, sms=True, whatsapp=True)
    with dispatch.recording(), Session(engine, expire_on_commit=False) as s:
        row_id = outbox.queue_message(s, settings, "shipping_notification",
                                      order_number="KB-1001").row.id
    deliver(engine, settings, row_id, transport=TwilioTransport(ACCOUNT, TOKEN, stub.url, 2.0),
            limiter=None)
    return row_id


def test_signed_status_callbacks_move_the_delivery_state_forward_only(engine, twilio_settings):
    with TwilioStub(ACCOUNT, TOKEN) as stub:
        row_id = sent_row(engine, twilio_settings, stub)
    sid = text(engine, row_id).provider_message_id
    url = f"{BASE}?m={row_id}"
    for status in ("sent", "delivered", "sent"):  # the late "sent" must not undo delivered
        answer = handle(engine, twilio_settings, **signed(status_form(sid, status), url))
        assert answer.status == 200
    row = text(engine, row_id)
    assert row.delivery_status == "delivered" and row.delivery_updated_at is not None
    answer = handle(engine, twilio_settings, **signed(status_form(sid, "read"), url))
    assert text(engine, row_id).delivery_status == "read"


def test_undelivered_records_twilios_error_code(engine, twilio_settings):
    with TwilioStub(ACCOUNT, TOKEN) as stub:
        row_id = sent_row(engine, twilio_settings, stub)
    sid = text(engine, row_id).provider_message_id
    handle(engine, twilio_settings, **signed(status_form(sid, "undelivered", ErrorCode="30003")))
    row = text(engine, row_id)
    assert row.delivery_status == "undelivered" and row.error_code == 30003


@pytest.mark.parametrize("forge", ["other token", "changed field", "no header", "other url"])
def test_a_forged_or_unsigned_callback_is_refused_and_changes_nothing(engine, twilio_settings,
                                                                      forge):
    with TwilioStub(ACCOUNT, TOKEN) as stub:
        row_id = sent_row(engine, twilio_settings, stub)
    sid = text(engine, row_id).provider_message_id
    request = signed(status_form(sid, "delivered"))
    if forge == "other token":
        request = signed(status_form(sid, "delivered"), token=TOKEN[::-1])
    elif forge == "changed field":
        request["form"] = {**request["form"], "MessageStatus": "failed"}
    elif forge == "no header":
        request["signature"] = None
    else:
        request["url"] = "http://evil.test/webhooks/twilio"
    answer = handle(engine, twilio_settings, **request)
    assert answer.status == 401 and TOKEN not in answer.body
    assert text(engine, row_id).delivery_status == "queued"


def test_without_the_auth_token_every_request_is_refused(engine, settings):
    answer = handle(engine, settings, **signed(status_form("SM" + "0" * 32, "delivered")))
    assert answer.status == 503 and "TWILIO_AUTH_TOKEN" in answer.body


def test_a_callback_for_a_send_whose_worker_died_records_it_as_sent(engine, twilio_settings):
    """The worker died after Twilio accepted: the row is `sending` without a sid. Twilio's
    callback for that row (its id is in our callback URL) proves the message went out."""
    from kolaq_console.sms.delivery import claim

    with TwilioStub(ACCOUNT, TOKEN) as stub:
        seed_order(engine)
        set_phone(engine)
        with dispatch.recording(), Session(engine, expire_on_commit=False) as s:
            row_id = outbox.queue_message(s, twilio_settings, "order_confirmation",
                                          order_number="KB-1001").row.id
        claimed = claim(engine, row_id, 60)
        sid = TwilioTransport(ACCOUNT, TOKEN, stub.url, 2.0).send(
            claimed.outgoing(twilio_settings)).provider_message_id
    handle(engine, twilio_settings, **signed(status_form(sid, "sent"), f"{BASE}?m={row_id}"))
    row = text(engine, row_id)
    assert row.status == "sent" and row.provider_message_id == sid
    assert row.delivery_status == "sent" and "status callback" in row.last_error


def inbound_form(body, from_=ADA_PHONE, **extra):
    return {"AccountSid": ACCOUNT, "MessageSid": "SM" + "1" * 32, "From": from_,
            "To": "+2348090000001", "Body": body, "NumMedia": "0", "SmsStatus": "received",
            **extra}


def test_inbound_stop_opts_the_number_out_and_start_opts_it_back_in(engine, twilio_settings):
    seed_order(engine)
    set_phone(engine, sms=True, whatsapp=True)
    answer = handle(engine, twilio_settings, **signed(inbound_form("Stop ", OptOutType="STOP")))
    assert answer.status == 200 and answer.content_type == "text/xml"
    answer = handle(engine, twilio_settings, **signed(inbound_form("STOP")))  # a repeat
    with Session(engine) as s:
        [opt] = s.exec(select(PhoneOptOut)).all()
        assert (opt.number, opt.channel, opt.reason) == (ADA_PHONE, "sms", "STOP")
        customer = s.exec(select(Customer)).one()
        assert not customer.sms_consent and customer.whatsapp_opt_in  # WhatsApp untouched
    assert [a.action for a in activity(engine)] == ["consent.sms_opt_out"]
    handle(engine, twilio_settings, **signed(inbound_form("START")))
    with Session(engine) as s:
        assert s.exec(select(PhoneOptOut)).all() == []
        assert s.exec(select(Customer)).one().sms_consent


def test_whatsapp_stop_opts_out_of_whatsapp_only(engine, twilio_settings):
    seed_order(engine)
    set_phone(engine, sms=True, whatsapp=True)
    handle(engine, twilio_settings, **signed(inbound_form("STOP", from_=f"whatsapp:{ADA_PHONE}")))
    with Session(engine) as s:
        customer = s.exec(select(Customer)).one()
        assert customer.sms_consent and not customer.whatsapp_opt_in


def test_a_forged_stop_is_refused(engine, twilio_settings):
    seed_order(engine)
    set_phone(engine)
    request = signed(inbound_form("STOP"), token="not-the-token")
    assert handle(engine, twilio_settings, **request).status == 401
    with Session(engine) as s:
        assert s.exec(select(PhoneOptOut)).all() == []


def test_order_notices_go_on_every_channel_the_customer_allowed(engine, make_settings):
    from kolaq_console import runtime

    settings = make_settings(notifications__shipping_notification="email, sms, whatsapp")
    runtime.configure(settings)
    seed_order(engine, "KB-1001", status="shipped", carrier="GIG", tracking="T1")
    seed_order(engine, "KB-1002", status="shipped", carrier="GIG", tracking="T2",
               email="bola@example.com", name="Bola")
    set_phone(engine, sms=True, whatsapp=True)  # Ada: both
    set_phone(engine, email="bola@example.com", phone="+2348039876543", sms=True,
              whatsapp=False)  # Bola: SMS only
    with Session(engine) as s:
        for number in ("KB-1001", "KB-1002"):
            order = s.exec(select(Order).where(Order.number == number)).one()
            assert notify_order_status(s, settings, order, "shipped")
            assert notify_order_status(s, settings, order, "shipped") == []  # once
        s.commit()
    sent = sorted((r.to_number, r.channel, r.kind) for r in texts(engine))
    assert sent == [("+2348031234567", "sms", "shipping_notification"),
                    ("+2348031234567", "whatsapp", "shipping_notification"),
                    ("+2348039876543", "sms", "shipping_notification")]


def test_a_channel_that_cannot_be_used_is_noted_not_fatal(engine, make_settings):
    """No WhatsApp template for generic-like kinds: here order_status_update's is removed."""
    from kolaq_console import runtime

    settings = make_settings(notifications__order_status_update='["email", "whatsapp"]')
    templates = dict(settings.sms.whatsapp_templates)
    templates.pop("order_status_update")
    settings = settings.model_copy(update={"sms": settings.sms.model_copy(
        update={"whatsapp_templates": templates})})
    runtime.configure(settings)
    seed_order(engine, "KB-1001", status="delivered")
    set_phone(engine, sms=True, whatsapp=True)
    with Session(engine) as s:
        order = s.exec(select(Order)).one()
        assert notify_order_status(s, settings, order, "delivered") == []
        s.commit()
    [note] = [a for a in activity(engine) if a.action == "message.skipped"]
    assert note.details["channel"] == "whatsapp" and "template" in note.details["reason"]


def test_the_stand_ins_callbacks_verify_with_the_sdks_validator(twilio_settings):
    """The stand-in signs as Twilio does: the SDK's RequestValidator accepts its signature."""
    from twilio.request_validator import RequestValidator

    with TwilioStub(ACCOUNT, TOKEN, templates=TEMPLATE_TEXTS):
        form = status_form("SM" + "2" * 32, "delivered")
        assert RequestValidator(TOKEN).validate(f"{BASE}?m=7", form,
                                                signature(TOKEN, f"{BASE}?m=7", form))


def test_the_low_stock_alert_also_texts_the_admin_when_configured_after_commit_only(
    engine, make_settings
):
    from inventory_helpers import add_events, add_products

    from kolaq_console import runtime
    from kolaq_console.inventory.lowstock import send_alerts

    settings = make_settings(notifications__low_stock="email,sms,whatsapp")
    runtime.configure(settings)
    ids = add_products(engine, 2, prefix="LS")
    add_events(engine, [(ids[0], 2), (ids[1], 50)])
    with dispatch.recording() as calls:
        assert send_alerts(engine, settings).queued
        assert send_alerts(engine, settings).queued is False  # once a day
    rows = texts(engine)
    assert sorted((r.channel, r.to_number) for r in rows) == [
        ("sms", "+2348090000009"), ("whatsapp", "+2348090000009")]
    assert all("LS-000" in r.body and r.kind == "low_stock" for r in rows)
    assert sorted(c.task for c in calls) == ["send_email", "send_text", "send_text"]
