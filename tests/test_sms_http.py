"""Done-when, over real HTTP: an order shipped by an operator reaches a consenting customer by
email and SMS once each; Twilio's delivery states arrive at /webhooks/twilio on the real
receiver (uvicorn) signed by the stand-in, a forged one is refused, and an inbound STOP is
honoured. SQLite and PostgreSQL."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

import pytest
from email_support import rows, seed_order
from sms_support import ACCOUNT, ADA_PHONE, TOKEN, set_phone, texts
from sqlmodel import Session, select
from stubs.twilio_api import TwilioStub, signature
from webhook_support import ServerThread

from kolaq_console import dispatch, runtime
from kolaq_console.models import Customer
from kolaq_console.orders.lifecycle import set_status
from kolaq_console.sms.delivery import deliver
from kolaq_console.sms.transports import TwilioTransport
from kolaq_console.webhooks.server import make_app


@pytest.fixture
def served(engine, make_settings):
    """The receiver on a free port, and settings whose public_url is that server."""
    srv = ServerThread(None)
    s = make_settings(shop__public_url=srv.url, TWILIO_AUTH_TOKEN=TOKEN,
                      TWILIO_ACCOUNT_SID=ACCOUNT)
    runtime.configure(s)
    srv.server.config.app = make_app(s, engine)
    with srv:
        yield srv, s
    runtime.configure(None)


def post(url: str, form: dict, sig: str | None) -> int:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if sig:
        headers["x-twilio-signature"] = sig
    request = urllib.request.Request(url, urllib.parse.urlencode(form).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_a_shipped_order_reaches_the_customer_by_email_and_sms_once_with_delivery_states(
    engine, served
):
    srv, settings = served
    seed_order(engine, "KB-1001", status="paid")
    set_phone(engine, sms=True)
    with dispatch.recording() as calls, Session(engine) as session:
        set_status(session, settings, "KB-1001", "shipped", actor="ops", carrier="GIG",
                   tracking="GIG123")
        set_status(session, settings, "KB-1001", "shipped", actor="ops", carrier="GIG",
                   tracking="GIG123")  # the same change again: nothing more
    [email] = [r for r in rows(engine) if r.kind == "shipping_notification"]
    [sms] = texts(engine)
    assert sorted(c.task for c in calls) == ["send_email", "send_text"]
    assert email.to_address == "ada@example.com" and sms.to_number == ADA_PHONE

    with TwilioStub(ACCOUNT, TOKEN, inbound_url=f"{srv.url}/webhooks/twilio") as stub:
        transport = TwilioTransport(ACCOUNT, TOKEN, stub.url, 2.0)
        assert deliver(engine, settings, sms.id, transport=transport, limiter=None) == "sent"
        [msg] = stub.messages
        assert stub.advance(msg["sid"], "sent") == 200
        assert stub.advance(msg["sid"], "delivered") == 200
        row = texts(engine)[0]
        assert row.status == "sent" and row.delivery_status == "delivered"
        assert len(stub.sent_to(ADA_PHONE)) == 1

        # A forged callback (wrong key) is refused and changes nothing.
        url = f"{srv.url}/webhooks/twilio?m={sms.id}"
        form = {"MessageSid": msg["sid"], "MessageStatus": "failed", "AccountSid": ACCOUNT}
        assert post(url, form, signature("not-the-token", url, form)) == 401
        assert post(url, form, None) == 401
        assert texts(engine)[0].delivery_status == "delivered"

        # The customer replies STOP: opted out, and nothing more goes to them by SMS.
        assert stub.inbound(ADA_PHONE, "STOP") == 200
    with Session(engine) as session:
        assert not session.exec(select(Customer)).one().sms_consent
        set_status(session, settings, "KB-1001", "delivered", actor="ops")
    assert [r.kind for r in texts(engine)] == ["shipping_notification"]
    assert "order_status_update" in [r.kind for r in rows(engine)]  # email still goes
