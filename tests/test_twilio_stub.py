"""The Twilio stand-in, driven by the real `twilio` SDK: what the SMS code relies on it to model
(Twilio's error codes, the message list with its filters and pages, signed callbacks, opt-outs),
in-process and as its own process."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import pytest
from sms_support import ACCOUNT, TEMPLATE_TEXTS, TOKEN
from stubs.twilio_api import TwilioStub, TwilioStubProcess
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from kolaq_console.sms.transports import _routed_http_client

SHOP = "+2348090000001"
ADA = "+2348031234567"


def client(url: str, token: str = TOKEN) -> Client:
    return Client(ACCOUNT, token, http_client=_routed_http_client(url, 5.0))


@pytest.fixture
def stub():
    with TwilioStub(ACCOUNT, TOKEN, templates=TEMPLATE_TEXTS) as s:
        yield s


def error_of(call) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as info:
        call()
    return info.value


def test_create_answers_201_with_a_queued_message_not_sent_yet(stub):
    msg = client(stub.url).messages.create(to=ADA, from_=SHOP, body="Hello")
    assert msg.sid.startswith("SM") and len(msg.sid) == 34
    assert msg.status == "queued" and msg.date_sent is None and msg.num_segments == "1"
    assert [r.status for r in stub.requests] == [201]


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"to": "+234803", "from_": SHOP, "body": "x"}, 400, 21211),
    ({"to": "08031234567", "from_": SHOP, "body": "x"}, 400, 21211),  # not E.164
    ({"to": ADA, "from_": SHOP}, 400, 21602),
    ({"to": ADA, "body": "x"}, 400, 21603),
    ({"to": ADA, "from_": SHOP, "body": "x" * 1601}, 400, 21617),
    ({"to": f"whatsapp:{ADA}", "from_": SHOP, "body": "x"}, 400, 21910),
    ({"to": f"whatsapp:{ADA}", "from_": f"whatsapp:{SHOP}", "content_sid": "HX" + "f" * 32},
     400, 21655),
    ({"to": f"whatsapp:{ADA}", "from_": f"whatsapp:{SHOP}",
      "content_sid": "HX0000000000000000000000000000c001", "content_variables": "[1]"},
     400, 21656),
])
def test_invalid_requests_get_twilios_error_codes(stub, kwargs, status, code):
    err = error_of(lambda: client(stub.url).messages.create(**kwargs))
    assert (err.status, err.code) == (status, code)
    assert stub.messages == []


def test_wrong_credentials_are_401_20003(stub):
    err = error_of(lambda: client(stub.url, token="wrong").messages.create(
        to=ADA, from_=SHOP, body="x"))
    assert (err.status, err.code) == (401, 20003)


def test_the_rate_limit_answers_429_20429(stub):
    stub.configure(rate_limit=2)
    c = client(stub.url)
    c.messages.create(to=ADA, from_=SHOP, body="1")
    c.messages.create(to=ADA, from_=SHOP, body="2")
    err = error_of(lambda: c.messages.create(to=ADA, from_=SHOP, body="3"))
    assert (err.status, err.code) == (429, 20429) and len(stub.messages) == 2


def test_an_opted_out_recipient_gets_21610_until_start(stub):
    received = []
    with _Receiver(received) as url:
        stub.configure(inbound_url=url)
        assert stub.inbound(ADA, "stop") == 200
        err = error_of(lambda: client(stub.url).messages.create(to=ADA, from_=SHOP, body="x"))
        assert (err.status, err.code) == (400, 21610)
        # WhatsApp is another channel: still open
        client(stub.url).messages.create(to=f"whatsapp:{ADA}", from_=f"whatsapp:{SHOP}",
                                         content_sid="HX0000000000000000000000000000c001",
                                         content_variables=json.dumps({"1": "Ada", "2": "K",
                                                                       "3": "N"}))
        stub.inbound(ADA, "START")
        client(stub.url).messages.create(to=ADA, from_=SHOP, body="x")
    assert [f["OptOutType"] for f, _ in received] == ["STOP", "START"]


def test_templates_are_rendered_and_free_whatsapp_text_fails_with_63016(stub):
    c = client(stub.url)
    ok = c.messages.create(to=f"whatsapp:{ADA}", from_=f"whatsapp:{SHOP}",
                           content_sid="HX0000000000000000000000000000c002",
                           content_variables=json.dumps({"1": "KB-1", "2": "GIG", "3": "u"}))
    assert ok.body == "Order KB-1 shipped with GIG: u" and ok.status == "queued"
    free = c.messages.create(to=f"whatsapp:{ADA}", from_=f"whatsapp:{SHOP}", body="hi")
    assert free.status == "failed" and free.error_code == 63016


def test_the_list_filters_by_recipient_sender_and_date_sent_and_pages(stub):
    c = client(stub.url)
    for i in range(7):
        c.messages.create(to=ADA, from_=SHOP, body=f"m{i}")
    c.messages.create(to="+2348039876543", from_=SHOP, body="other")
    listed = c.messages.list(to=ADA, from_=SHOP, page_size=3)  # 3 pages through next_page_uri
    assert [m.body for m in listed] == [f"m{i}" for i in reversed(range(7))]
    assert len([r for r in stub.requests if r.method == "GET"]) == 3
    # a message not sent yet has no date_sent: date filters never match it
    since = datetime.now(UTC) - timedelta(hours=1)
    assert c.messages.list(to=ADA, date_sent_after=since) == []
    first = stub.messages[0]["sid"]
    stub.advance(first, "sent")
    assert [m.sid for m in c.messages.list(to=ADA, date_sent_after=since)] == [first]
    assert c.messages.list(to=ADA, date_sent_before=since) == []


def test_advance_posts_a_status_callback_the_sdk_validator_accepts(stub):
    received = []
    with _Receiver(received) as url:
        callback = f"{url}/webhooks/twilio?m=7"
        msg = client(stub.url).messages.create(to=ADA, from_=SHOP, body="x",
                                                status_callback=callback)
        assert stub.advance(msg.sid, "sent") == 200
        assert stub.advance(msg.sid, "undelivered", error_code=30003) == 200
    [(form, sig), (form2, _)] = received
    assert form["MessageStatus"] == "sent" and form["MessageSid"] == msg.sid
    assert form2["ErrorCode"] == "30003"
    assert RequestValidator(TOKEN).validate(callback, form, sig)
    assert not RequestValidator("other").validate(callback, form, sig)


def test_after_processing_faults_create_the_message_and_lose_the_answer(stub):
    import requests

    stub.inject(drop=True, after_processing=True)
    with pytest.raises(requests.ConnectionError):
        client(stub.url).messages.create(to=ADA, from_=SHOP, body="x")
    assert len(stub.messages) == 1


def test_process_mode_offers_the_same_inspection():
    with TwilioStubProcess(ACCOUNT, TOKEN, templates=TEMPLATE_TEXTS) as stub:
        c = client(stub.url)
        c.messages.create(to=ADA, from_=SHOP, body="hello")
        stub.inject(500)
        err = error_of(lambda: c.messages.create(to=ADA, from_=SHOP, body="again"))
        assert err.status == 500
        assert [m["body"] for m in stub.messages] == ["hello"]
        assert [r.status for r in stub.requests] == [201, 500]


class _Receiver:
    """A tiny HTTP endpoint recording (form, X-Twilio-Signature) of what the stand-in posts."""

    def __init__(self, received: list) -> None:
        self.received = received

    def __enter__(self) -> str:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["content-length"]))
                received.append((dict(parse_qsl(raw.decode())),
                                 self.headers["x-twilio-signature"]))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
