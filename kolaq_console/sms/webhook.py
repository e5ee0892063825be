"""Twilio's requests to the shop, verified with `X-Twilio-Signature` (the SDK's
RequestValidator): delivery states of our messages, and inbound messages (STOP / START).

Framework-free: the webhook server hands over the URL Twilio requested (as Twilio saw it:
[shop] public_url + path + query), the form fields and the signature header, and sends back
the `Answer`. Every change is idempotent, so Twilio's retries and replays are harmless:
delivery states only move forward (queued < sending < sent < delivered | undelivered | failed
< read), STOP and START set a state rather than toggle it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from kolaq_console import channel_consent
from kolaq_console.config import Settings
from kolaq_console.models import TextMessage, TextStatus, utcnow
from kolaq_console.sms.phone import strip_channel

log = logging.getLogger(__name__)

PATH = "/webhooks/twilio"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
RANK = {"accepted": 0, "scheduled": 0, "queued": 0, "sending": 1, "sent": 2, "delivered": 3,
        "undelivered": 3, "failed": 3, "read": 4, "canceled": 3}


@dataclass(frozen=True)
class Answer:
    status: int
    body: str = ""
    content_type: str = "text/plain; charset=utf-8"


def verify(settings: Settings, url: str, form: Mapping[str, str],
           signature: str | None) -> Answer | None:
    """None if Twilio signed this request; else the answer refusing it."""
    token = settings.secrets.twilio_auth_token
    if token is None:
        return Answer(503, "TWILIO_AUTH_TOKEN is not set on this server; no Twilio request is "
                           "accepted until it is")
    from twilio.request_validator import RequestValidator

    if not signature or not RequestValidator(token.get_secret_value()).validate(
            url, dict(form), signature):
        log.warning("twilio request refused (401): bad or missing X-Twilio-Signature for %s",
                    urlsplit(url).path)
        return Answer(401, "invalid signature")
    return None


def handle(engine: Engine, settings: Settings, *, url: str, form: Mapping[str, str],
           signature: str | None) -> Answer:
    """One request from Twilio to /webhooks/twilio: a status callback or an inbound message."""
    refused = verify(settings, url, form, signature)
    if refused is not None:
        return refused
    if form.get("MessageStatus"):
        return status_callback(engine, url, form)
    if form.get("From") and ("Body" in form or form.get("OptOutType")):
        return inbound(engine, form)
    return Answer(400, "neither a status callback nor an inbound message")


def _row_id(url: str) -> int | None:
    values = parse_qs(urlsplit(url).query).get("m")
    return int(values[0]) if values and values[0].isdigit() else None


def status_callback(engine: Engine, url: str, form: Mapping[str, str]) -> Answer:
    sid, new = form.get("MessageSid", ""), form.get("MessageStatus", "").lower()
    if not sid or new not in RANK:
        return Answer(400, f"unexpected MessageSid/MessageStatus {sid!r}/{new!r}")
    code = form.get("ErrorCode")
    now = utcnow()
    with Session(engine) as session:
        row = None
        row_id = _row_id(url)
        if row_id is not None:
            row = session.get(TextMessage, row_id)
            if row is not None and row.provider_message_id not in (None, sid):
                row = None  # the id in our URL and Twilio's sid disagree: trust the sid
        if row is None:
            row = session.exec(select(TextMessage)
                               .where(TextMessage.provider_message_id == sid)).first()
        if row is None:
            log.info("twilio status %s for unknown message %s ignored", new, sid)
            return Answer(200)
        if row.provider_message_id is None and row.status in (
                TextStatus.queued.value, TextStatus.sending.value, TextStatus.unknown.value):
            # Twilio reports on a message our worker never recorded (it died after the call):
            # the callback itself proves it went out.
            row.provider_message_id, row.status, row.sent_at = sid, TextStatus.sent.value, now
            row.last_error = "confirmed by Twilio's status callback after an interrupted send"
            row.lease_until = row.next_attempt_at = row.doubt_since = None
        if RANK[new] >= RANK.get(row.delivery_status or "queued", 0) and not (
                row.delivery_status in ("delivered", "undelivered", "failed")
                and RANK[new] == 3):
            row.delivery_status = new
            row.delivery_updated_at = now
            if code and code.isdigit():
                row.error_code = int(code)
        row.updated_at = now
        session.add(row)
        session.commit()
        log.info("message #%s: %s (%s)", row.id, new, sid)
    return Answer(200)


def inbound(engine: Engine, form: Mapping[str, str]) -> Answer:
    """A message to the shop's number. STOP (or Twilio's OptOutType) opts the sender out of
    that channel, START back in; anything else is acknowledged and left to people."""
    channel, number = strip_channel(form["From"])
    word = (form.get("OptOutType") or form.get("Body", "")).strip().upper()
    with Session(engine) as session:
        if word in channel_consent.STOP_WORDS:
            channel_consent.record_opt_out(session, number, channel, reason="STOP",
                                           source="twilio inbound", actor="recipient")
            log.info("%s opted out of %s (STOP)", number, channel)
        elif word in channel_consent.START_WORDS:
            channel_consent.record_opt_in(session, number, channel, source="twilio inbound")
            log.info("%s opted back in to %s (START)", number, channel)
        session.commit()
    return Answer(200, EMPTY_TWIML, "text/xml")
